/* A device on a PC that takes files the console pushes, built from the
 * benchlink C library and POSIX sockets (tests/sdk.rs runs it):
 *
 *   host_receiver HOST PORT ID DIR [WINDOW [drop-at BYTES]]
 *
 * Connects and says HELLO (with max_frame for its 1 KiB receive buffer), then
 * writes each pushed file into DIR through the library's callbacks, as a flash
 * writer would (a write at an offset; the library checks the CRC-32 before
 * SAVED). Prints "RECEIVED <name> <size>" and exits 0 after the first file,
 * 1 if it failed, 2 on a timeout. With drop-at, the link drops once BYTES have
 * been written: the console pushes again when it is back, and the library
 * resumes the same file from where it stopped. */
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../benchlink.h"

static int sock = -1;
static FILE *out;
static char dir[512], name[128], path[700];
static int outcome = -1;
static long drop_at = -1;
static int drop_now;
static bl_dev dev;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint32_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)(ts.tv_sec * 1000u + ts.tv_nsec / 1000000u);
}

static size_t dev_write(void *ctx, const uint8_t *p, size_t n) {
    (void)ctx;
    if (sock < 0) return 0;
    ssize_t w = send(sock, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    return w > 0 ? (size_t)w : 0;
}

static size_t dev_read(void *ctx, uint32_t offset, uint8_t *p, size_t n) {
    (void)ctx; (void)offset; (void)p; (void)n;
    return 0;
}

static int file_begin(void *ctx, const char *n, size_t len, uint32_t size) {
    (void)ctx;
    if (len >= sizeof name || memchr(n, '/', len)) return 1;
    memcpy(name, n, len);
    name[len] = 0;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (out) fclose(out);
    out = fopen(path, "wb");
    printf("BEGIN %s %u\n", name, (unsigned)size);
    fflush(stdout);
    return out ? 0 : 1;
}

static int file_write(void *ctx, uint32_t offset, const uint8_t *p, size_t n) {
    (void)ctx;
    if (!out || fseek(out, (long)offset, SEEK_SET) != 0) return 1;
    if (fwrite(p, 1, n, out) != n) return 1;
    fflush(out);
    if (drop_at >= 0 && (long)(offset + n) >= drop_at && sock >= 0) {
        /* The adapter is pulled: the link is gone mid-file, and what the socket
         * still holds is lost with it (the main loop closes it at once). */
        drop_at = -1;
        drop_now = 1;
        printf("DROPPED at %lu\n", (unsigned long)(offset + n));
        fflush(stdout);
    }
    return 0;
}

static void file_end(void *ctx, int ok, uint32_t size) {
    (void)ctx;
    if (out) fclose(out);
    out = NULL;
    if (ok) {
        printf("RECEIVED %s %u\n", name, (unsigned)size);
        outcome = 0;
    } else {
        printf("BAD %s %u\n", name, (unsigned)size);
        remove(path);
        outcome = 1;
    }
    fflush(stdout);
}

static void on_event(void *ctx, int ev, uint32_t value, const uint8_t *p, size_t n) {
    (void)ctx; (void)value;
    if (ev == BL_EV_READY) {
        printf("READY %.*s\n", (int)n, (const char *)p);
        fflush(stdout);
    }
}

static int connect_to(const char *host, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) return -1;
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        close(s);
        return -1;
    }
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: host_receiver HOST PORT ID DIR [WINDOW [drop-at BYTES]]\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[4]);
    if (argc > 7 && strcmp(argv[6], "drop-at") == 0) drop_at = atol(argv[7]);
    /* A small board: 1 KiB of file data per frame. */
    static uint8_t rx[1024 + 12 + 14], tx[256];
    bl_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.id = argv[3];
    cfg.window = argc > 5 ? (uint32_t)atoi(argv[5]) : 0;
    cfg.rx_buf = rx;
    cfg.rx_cap = sizeof rx;
    cfg.tx_buf = tx;
    cfg.tx_cap = sizeof tx;
    cfg.write = dev_write;
    cfg.read = dev_read;
    cfg.event = on_event;
    cfg.file_begin = file_begin;
    cfg.file_write = file_write;
    cfg.file_end = file_end;
    bl_init(&dev, &cfg);

    uint32_t started = now_ms();
    while (outcome < 0) {
        if (now_ms() - started > 60000u) {
            fprintf(stderr, "host_receiver: timed out\n");
            return 2;
        }
        if (sock < 0) {
            sock = connect_to(argv[1], atoi(argv[2]));
            if (sock < 0) {
                sleep_ms(100);
                continue;
            }
            bl_connected(&dev, now_ms());
        }
        struct pollfd pfd = {sock, POLLIN, 0};
        if (poll(&pfd, 1, 5) > 0) {
            uint8_t buf[1500];
            ssize_t r = recv(sock, buf, sizeof buf, 0);
            if (r <= 0) {
                close(sock);
                sock = -1;
                bl_disconnected(&dev);
                continue;
            }
            bl_feed(&dev, buf, (size_t)r, now_ms());
            if (drop_now) {
                drop_now = 0;
                close(sock);
                sock = -1;
                bl_disconnected(&dev);
                continue;
            }
        }
        bl_poll(&dev, now_ms());
    }
    for (int i = 0; i < 40; i++) {
        bl_poll(&dev, now_ms());
        sleep_ms(5);
    }
    return outcome;
}
