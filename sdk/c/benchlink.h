/* benchlink device library: the device side of the benchlink frame protocol
 * (docs/protocol.md, 1.0 and 1.1). Portable C99: no malloc, no stdio, no OS calls,
 * no global state. Every buffer belongs to the caller; time comes from the caller.
 *
 * Use:
 *   bl_init(&dev, &cfg);
 *   bl_connected(&dev, now);            after the transport (socket, UART link) is up
 *   loop: bl_feed(&dev, bytes, n, now)  with whatever arrived (any amounts)
 *         bl_poll(&dev, now)            often (sends, retries, timeouts)
 *   bl_text(), bl_upload(), bl_ping(), bl_bye() from the application.
 * Events (texts, saved files, failures, BYE, ERROR) arrive through cfg.event. */
#ifndef BENCHLINK_H
#define BENCHLINK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Frame types. */
#define BL_HELLO 0x01
#define BL_WELCOME 0x02
#define BL_BYE 0x03
#define BL_TEXT 0x10
#define BL_FILE_BEGIN 0x20
#define BL_FILE_DATA 0x21
#define BL_FILE_END 0x22
#define BL_FILE_ACK 0x23
#define BL_PING 0x30
#define BL_PONG 0x31
#define BL_ERROR 0x7F

/* FILE_ACK statuses. */
#define BL_ACK_SAVED 0
#define BL_ACK_RESUME 1
#define BL_ACK_CRC_MISMATCH 2
#define BL_ACK_SIZE_MISMATCH 3
#define BL_ACK_REFUSED 4
#define BL_ACK_PROGRESS 5
/* Not on the wire: the read callback returned fewer bytes than asked. */
#define BL_FAIL_READ 0xFF

/* Events handed to cfg.event(ctx, ev, value, bytes, n). */
enum bl_event {
    BL_EV_READY = 1, /* WELCOME: bytes = the console's name for us, value = 1 if it is not our id */
    BL_EV_TEXT,      /* TEXT from the console (the operator's command), not 0-terminated */
    BL_EV_PONG,      /* PONG: bytes = the echoed payload */
    BL_EV_BYE,       /* BYE: bytes = reason; the console closes the connection */
    BL_EV_ERROR,     /* ERROR: value = code (1 oversize, 2 protocol, 3 auth), bytes = message */
    BL_EV_SAVED,     /* upload done: value = size, bytes = path relative to the console's --dir */
    BL_EV_FAILED,    /* upload given up: value = status << 8 | REFUSED reason code, bytes = detail */
    BL_EV_RETRY,     /* REFUSED for now (busy, disk full, too many files): value = reason; retried later */
    BL_EV_LINK,      /* nothing heard for a while: HELLO + PING probes until the console answers */
    BL_EV_FRAME      /* only with -DBL_TEST_HOOKS: every frame decoded, value = type << 8 | flags */
};

/* Return values. */
#define BL_OK 0
#define BL_BUSY (-1)   /* the previous frame is still being written, or an upload is under way */
#define BL_NOLINK (-2) /* no WELCOME yet (or the link is being probed) */
#define BL_TOOBIG (-3) /* does not fit in tx_buf */

#define BL_RETRY_MS 2000u     /* first retry of an unanswered FILE_END / FILE_BEGIN+RESUME */
#define BL_RETRY_MAX_MS 16000u
#define BL_SILENCE_MS 2000u   /* nothing heard this long: probe with HELLO + PING */
#define BL_PARTIAL_MS 250u    /* a partial frame without new bytes this long is abandoned */

typedef struct {
    const char *id;    /* HELLO id (required) */
    const char *token; /* or NULL */
    const char *info;  /* more HELLO lines, each "key=value\n" (e.g. "fw=1.0\n"), or NULL */
    uint32_t window;   /* at most this many unacknowledged bytes (0 = no limit) */
    uint8_t *rx_buf;   /* holds one incoming frame: 14 + the largest payload accepted */
    size_t rx_cap;
    uint8_t *tx_buf; /* holds one outgoing frame (FILE_DATA chunk = tx_cap - 26) */
    size_t tx_cap;
    /* Writes up to n bytes; returns how many it took (0 if none now). */
    size_t (*write)(void *ctx, const uint8_t *p, size_t n);
    /* Reads n bytes of the file being uploaded at offset; returns how many it read. */
    size_t (*read)(void *ctx, uint32_t offset, uint8_t *p, size_t n);
    void (*event)(void *ctx, int ev, uint32_t value, const uint8_t *p, size_t n);
    void *ctx;
    /* Files the console pushes (/push), one at a time. Leave NULL to refuse them.
     * file_begin: a file of `size` bytes called name (not 0-terminated) starts;
     * return 0 to take it (e.g. erase the flash it goes to), nonzero to refuse. */
    int (*file_begin)(void *ctx, const char *name, size_t name_len, uint32_t size);
    /* file_write: n bytes at offset, always in order (offset = bytes written so
     * far; a rewind repeats nothing); return 0 when written (e.g. a flash writer). */
    int (*file_write)(void *ctx, uint32_t offset, const uint8_t *p, size_t n);
    /* file_end: ok = 1 when all bytes arrived and their CRC-32 matched the
     * console's (the library checks it before it answers SAVED), 0 otherwise. */
    void (*file_end)(void *ctx, int ok, uint32_t size);
} bl_config;

typedef struct {
    const bl_config *cfg;
    uint32_t now, heard, rx_ms, probe_at, probe_wait, max_data;
    size_t rx_len, tx_len, tx_off;
    uint8_t link, v11, up, fresh, rewinding, end_since, probe_out, restarts;
    /* One upload at a time. */
    const char *name;
    uint32_t file_id, size, pos, acked, crc, crc_upto, rewind_at, sent_at, wait, progress_ms;
    /* One pushed file at a time (the console's /push). */
    uint8_t in_active, in_gap_set, ack_pending, ack_status;
    uint32_t in_id, in_size, in_held, in_crc, in_name, in_gap, in_acked;
    uint32_t ack_id, ack_value;
} bl_dev;

void bl_init(bl_dev *d, const bl_config *cfg);
/* A new transport connection: forget partial frames, say HELLO. An upload under
 * way resumes (FILE_BEGIN+RESUME) after WELCOME. */
void bl_connected(bl_dev *d, uint32_t now);
/* The transport is gone (nothing is sent until bl_connected). */
void bl_disconnected(bl_dev *d);
void bl_feed(bl_dev *d, const uint8_t *p, size_t n, uint32_t now);
void bl_poll(bl_dev *d, uint32_t now);
int bl_ready(const bl_dev *d);
int bl_text(bl_dev *d, const char *text, size_t n);
int bl_ping(bl_dev *d, const uint8_t *p, size_t n);
int bl_bye(bl_dev *d, const char *reason);
/* Starts uploading `size` bytes from cfg.read as `name` (kept by the caller until
 * BL_EV_SAVED or BL_EV_FAILED). */
int bl_upload(bl_dev *d, const char *name, uint32_t size);
int bl_uploading(const bl_dev *d);
void bl_cancel(bl_dev *d);

/* The codec, for tests and tools. */
uint16_t bl_crc16(const uint8_t *p, size_t n);
uint32_t bl_crc32(uint32_t crc, const uint8_t *p, size_t n); /* like zlib's crc32() */
/* Writes a whole frame into out (14 + n bytes); returns its length, 0 if cap is too small. */
size_t bl_encode(uint8_t *out, size_t cap, uint8_t type, uint8_t flags, const uint8_t *payload, size_t n);

#ifdef __cplusplus
}
#endif
#endif
