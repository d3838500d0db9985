/* The C library against tests/vectors/frames.txt, the vectors the Rust codec
 * and the Python module check too (so the three cannot drift): every vector
 * re-encodes to the same bytes with bl_encode, and the decoder finds exactly
 * that one frame however the bytes are split, also after noise.
 *
 *   vectors PATH/frames.txt     (build with -DBL_TEST_HOOKS)
 * Prints one line per failure and "N vectors, M splits: ok" on success. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../benchlink.h"

static int frames_seen, last_type;
static size_t last_len;

static size_t no_write(void *ctx, const uint8_t *p, size_t n) {
    (void)ctx;
    (void)p;
    return n;
}

static void on_event(void *ctx, int ev, uint32_t value, const uint8_t *p, size_t n) {
    (void)ctx;
    (void)p;
    if (ev == BL_EV_FRAME) {
        frames_seen++;
        last_type = (int)(value >> 8);
        last_len = n;
    }
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: vectors frames.txt\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    static char line[8192];
    static uint8_t frame[4096], again[4096], rx[4096 + 14], tx[64];
    int vectors = 0, splits = 0, failures = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char *hex = strchr(line, ' ');
        if (!hex) continue;
        hex++;
        size_t n = 0;
        while (hexval(hex[0]) >= 0 && hexval(hex[1]) >= 0 && n < sizeof frame) {
            frame[n++] = (uint8_t)(hexval(hex[0]) << 4 | hexval(hex[1]));
            hex += 2;
        }
        vectors++;
        /* Re-encoding the payload gives the same bytes. */
        size_t payload = n - 14;
        size_t m = bl_encode(again, sizeof again, frame[2], frame[3], frame + 10, payload);
        if (m != n || memcmp(again, frame, n) != 0) {
            printf("FAIL re-encode: %.*s", (int)(strchr(line, ' ') - line), line);
            failures++;
        }
        /* Decoded once, in every split, after a little noise. */
        for (size_t cut = 0; cut <= n; cut++) {
            bl_config cfg;
            memset(&cfg, 0, sizeof cfg);
            cfg.id = "v";
            cfg.rx_buf = rx;
            cfg.rx_cap = sizeof rx;
            cfg.tx_buf = tx;
            cfg.tx_cap = sizeof tx;
            cfg.write = no_write;
            cfg.event = on_event;
            bl_dev d;
            bl_init(&d, &cfg);
            bl_connected(&d, 0);
            frames_seen = 0;
            static const uint8_t noise[] = {0x00, 0xA5, 0x13, 0xA5};
            bl_feed(&d, noise, sizeof noise, 1);
            bl_feed(&d, frame, cut, 1);
            bl_feed(&d, frame + cut, n - cut, 1);
            splits++;
            if (frames_seen != 1 || last_type != frame[2] || last_len != payload) {
                printf("FAIL decode at split %zu of %.*s: %d frames\n", cut, (int)(strchr(line, ' ') - line), line,
                       frames_seen);
                failures++;
                break;
            }
        }
    }
    fclose(f);
    if (failures || vectors == 0) {
        printf("%d failures in %d vectors\n", failures, vectors);
        return 1;
    }
    printf("%d vectors, %d splits: ok\n", vectors, splits);
    return 0;
}
