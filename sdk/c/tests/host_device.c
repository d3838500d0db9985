/* A device on a PC, built from the benchlink C library and POSIX sockets: the
 * library's end-to-end test against the real console (tests/sdk.rs runs it).
 *
 *   host_device HOST PORT ID FILE [WINDOW [drop-saved]]
 *
 * Connects, says HELLO, sends one TEXT, uploads FILE, answers the console's TEXT
 * commands with "ok: <command>", and exits 0 once the file is SAVED (printing
 * "SAVED <size> <path>"), 1 if it failed, 2 on a timeout or a socket error.
 * When the connection drops it reconnects, and the upload resumes. With
 * drop-saved, the link drops right after the first FILE_END goes out, so its
 * SAVED is lost: the library must find out on the next connection (1.1). */
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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
static FILE *file;
static const char *upload_name;
static uint32_t upload_size;
static int outcome = -1;
static int drop_saved;
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

/* Like a UART driver with a small FIFO: takes what the socket takes now. */
static size_t dev_write(void *ctx, const uint8_t *p, size_t n) {
    (void)ctx;
    if (sock < 0) return 0;
    if (drop_saved && n >= 22 && p[0] == 0xA5 && p[1] == 0x5A && p[2] == 0x22) {
        /* The whole FILE_END, then the link is gone before SAVED can come back. */
        size_t done = 0;
        while (done < 22) {
            ssize_t w = send(sock, p + done, 22 - done, MSG_NOSIGNAL);
            if (w <= 0) break;
            done += (size_t)w;
        }
        shutdown(sock, SHUT_RDWR);
        drop_saved = 0;
        printf("DROPPED after FILE_END\n");
        fflush(stdout);
        return done;
    }
    ssize_t w = send(sock, p, n > 512 ? 512 : n, MSG_NOSIGNAL | MSG_DONTWAIT);
    return w > 0 ? (size_t)w : 0;
}

static size_t dev_read(void *ctx, uint32_t offset, uint8_t *p, size_t n) {
    (void)ctx;
    if (fseek(file, (long)offset, SEEK_SET) != 0) return 0;
    return fread(p, 1, n, file);
}

static void on_event(void *ctx, int ev, uint32_t value, const uint8_t *p, size_t n) {
    (void)ctx;
    switch (ev) {
    case BL_EV_READY:
        printf("READY %.*s\n", (int)n, (const char *)p);
        bl_text(&dev, "hello from C", 12);
        if (!bl_uploading(&dev) && outcome < 0) bl_upload(&dev, upload_name, upload_size);
        break;
    case BL_EV_TEXT: {
        char reply[300];
        int len = snprintf(reply, sizeof reply, "ok: %.*s", (int)(n > 250 ? 250 : n), (const char *)p);
        bl_text(&dev, reply, (size_t)len);
        break;
    }
    case BL_EV_SAVED:
        printf("SAVED %u %.*s\n", (unsigned)value, (int)n, (const char *)p);
        outcome = 0;
        break;
    case BL_EV_FAILED:
        printf("FAILED %u %.*s\n", (unsigned)value, (int)n, (const char *)p);
        outcome = 1;
        break;
    case BL_EV_ERROR:
        printf("ERROR %u %.*s\n", (unsigned)value, (int)n, (const char *)p);
        break;
    default:
        break;
    }
    fflush(stdout);
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
        fprintf(stderr, "usage: host_device HOST PORT ID FILE [WINDOW]\n");
        return 2;
    }
    file = fopen(argv[4], "rb");
    if (!file) {
        perror(argv[4]);
        return 2;
    }
    fseek(file, 0, SEEK_END);
    upload_size = (uint32_t)ftell(file);
    upload_name = strrchr(argv[4], '/') ? strrchr(argv[4], '/') + 1 : argv[4];

    static uint8_t rx[4096 + 14], tx[2048];
    bl_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.id = argv[3];
    cfg.info = "board=host\n";
    cfg.window = argc > 5 ? (uint32_t)atoi(argv[5]) : 0;
    drop_saved = argc > 6 && strcmp(argv[6], "drop-saved") == 0;
    cfg.rx_buf = rx;
    cfg.rx_cap = sizeof rx;
    cfg.tx_buf = tx;
    cfg.tx_cap = sizeof tx;
    cfg.write = dev_write;
    cfg.read = dev_read;
    cfg.event = on_event;
    bl_init(&dev, &cfg);

    uint32_t started = now_ms();
    while (outcome < 0) {
        if (now_ms() - started > 60000u) {
            fprintf(stderr, "host_device: timed out\n");
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
            uint8_t buf[1024];
            ssize_t r = recv(sock, buf, sizeof buf, 0);
            if (r <= 0) {
                close(sock);
                sock = -1;
                bl_disconnected(&dev);
                continue;
            }
            bl_feed(&dev, buf, (size_t)r, now_ms());
        }
        bl_poll(&dev, now_ms());
    }
    /* Let the last frames go out. */
    for (int i = 0; i < 20; i++) {
        bl_poll(&dev, now_ms());
        sleep_ms(5);
    }
    return outcome;
}
