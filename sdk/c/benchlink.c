/* benchlink device library; see benchlink.h and docs/protocol.md. */
#include "benchlink.h"

#include <string.h>

enum { L_DOWN, L_PROBE, L_READY };
enum { U_IDLE, U_BEGIN, U_WAIT_BEGIN, U_SEND, U_WAIT_END, U_LATER };

#define ACTIVE(d) ((d)->up != U_IDLE)

uint16_t bl_crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0;
    int i;
    while (n--) {
        crc ^= (uint16_t)(*p++ << 8);
        for (i = 0; i < 8; i++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

#ifdef BL_CRC_TABLE
/* 1 KiB of table for about 8x the speed. */
static uint32_t crc_table[256];
static void crc_init(void)
{
    uint32_t i, c;
    int k;
    for (i = 0; i < 256; i++) {
        for (c = i, k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
        crc_table[i] = c;
    }
}
uint32_t bl_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    if (!crc_table[1])
        crc_init();
    crc = ~crc;
    while (n--)
        crc = (crc >> 8) ^ crc_table[(crc ^ *p++) & 0xFF];
    return ~crc;
}
#else
uint32_t bl_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    int i;
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (i = 0; i < 8; i++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}
#endif

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Header and CRC around a payload already at out + 10. */
static size_t seal(uint8_t *out, uint8_t type, uint8_t flags, size_t n)
{
    uint16_t h;
    out[0] = 0xA5;
    out[1] = 0x5A;
    out[2] = type;
    out[3] = flags;
    put32(out + 4, (uint32_t)n);
    h = bl_crc16(out + 2, 6);
    out[8] = (uint8_t)h;
    out[9] = (uint8_t)(h >> 8);
    put32(out + 10 + n, n ? bl_crc32(0, out + 10, n) : 0);
    return n + 14;
}

size_t bl_encode(uint8_t *out, size_t cap, uint8_t type, uint8_t flags, const uint8_t *payload, size_t n)
{
    if (cap < 14 || n > cap - 14)
        return 0;
    memmove(out + 10, payload, n);
    return seal(out, type, flags, n);
}

/* ---- sending: frames are built in tx_buf and written as the transport takes them ---- */

static void flush(bl_dev *d)
{
    while (d->tx_off < d->tx_len) {
        size_t k = d->cfg->write(d->cfg->ctx, d->cfg->tx_buf + d->tx_off, d->tx_len - d->tx_off);
        if (!k)
            return;
        d->tx_off += k;
    }
    d->tx_len = d->tx_off = 0;
}

/* Room for a payload after what is queued (0 while a frame is half written). */
static uint8_t *payload_at(bl_dev *d, size_t *room)
{
    size_t used = d->tx_len;
    *room = (d->tx_off || used + 14 > d->cfg->tx_cap) ? 0 : d->cfg->tx_cap - used - 14;
    return d->cfg->tx_buf + used + 10;
}

static void queue(bl_dev *d, uint8_t type, uint8_t flags, size_t n)
{
    d->tx_len += seal(d->cfg->tx_buf + d->tx_len, type, flags, n);
}

static int send(bl_dev *d, uint8_t type, uint8_t flags, const void *p, size_t n)
{
    size_t room;
    uint8_t *at = payload_at(d, &room);
    if (d->tx_len)
        return BL_BUSY;
    if (n > room)
        return BL_TOOBIG;
    memcpy(at, p, n);
    queue(d, type, flags, n);
    flush(d);
    return BL_OK;
}

static size_t append(uint8_t *at, size_t at_len, size_t room, const char *s)
{
    size_t n = strlen(s);
    if (at_len + n > room)
        n = room - at_len;
    memcpy(at + at_len, s, n);
    return at_len + n;
}

static size_t append_u32(uint8_t *at, size_t at_len, size_t room, uint32_t v)
{
    char digits[11];
    char *s = digits + 10;
    *s = 0;
    do
        *--s = (char)('0' + v % 10);
    while (v /= 10);
    return append(at, at_len, room, s);
}

/* HELLO + PING: a fresh connection answers WELCOME, a live session PONG. */
static void probe(bl_dev *d)
{
    const bl_config *c = d->cfg;
    size_t room, n = 0;
    uint8_t *at = payload_at(d, &room);
    if (d->tx_len || room < 14)
        return;
    room -= 14; /* the PING */
    n = append(at, n, room, "id=");
    n = append(at, n, room, c->id);
    if (c->token) {
        n = append(at, n, room, "\ntoken=");
        n = append(at, n, room, c->token);
    }
    n = append(at, n, room, "\n");
    if (c->info)
        n = append(at, n, room, c->info);
    if (c->window) {
        n = append(at, n, room, "window=");
        n = append_u32(at, n, room, c->window);
        n = append(at, n, room, "\n");
    }
    if (c->file_begin && c->rx_cap > 14) {
        /* Pushed files come in frames that fit rx_buf. */
        n = append(at, n, room, "max_frame=");
        n = append_u32(at, n, room, (uint32_t)(c->rx_cap - 14));
        n = append(at, n, room, "\n");
    }
    queue(d, BL_HELLO, 0, n);
    queue(d, BL_PING, 0, 0);
    flush(d);
    d->probe_at = d->now;
}

/* ---- the upload ---- */

static void emit(bl_dev *d, int ev, uint32_t value, const uint8_t *p, size_t n)
{
    d->cfg->event(d->cfg->ctx, ev, value, p, n);
}

static void fail(bl_dev *d, uint32_t why, const uint8_t *p, size_t n)
{
    d->up = U_IDLE;
    emit(d, BL_EV_FAILED, why, p, n);
}

/* From the start, under a new file_id (after CRC_MISMATCH, REFUSED 8). */
static void restart(bl_dev *d, uint8_t fresh)
{
    d->file_id++;
    d->up = U_BEGIN;
    d->fresh = fresh;
    d->pos = d->acked = d->crc = d->crc_upto = 0;
    d->wait = BL_RETRY_MS;
}

int bl_upload(bl_dev *d, const char *name, uint32_t size)
{
    if (ACTIVE(d))
        return BL_BUSY;
    d->name = name;
    d->size = size;
    d->restarts = 0;
    restart(d, 0);
    return BL_OK;
}

int bl_uploading(const bl_dev *d)
{
    return ACTIVE(d);
}

void bl_cancel(bl_dev *d)
{
    d->up = U_IDLE;
}

static void send_begin(bl_dev *d)
{
    size_t room, n = strlen(d->name);
    uint8_t *at = payload_at(d, &room);
    if (d->tx_len || 12 + n > room)
        return;
    put32(at, d->file_id);
    put32(at + 4, d->size);
    put32(at + 8, 0);
    memcpy(at + 12, d->name, n);
    queue(d, BL_FILE_BEGIN, (uint8_t)!d->fresh, 12 + n);
    flush(d);
    d->up = d->fresh ? U_SEND : U_WAIT_BEGIN;
    d->sent_at = d->progress_ms = d->now;
}

static void send_end(bl_dev *d)
{
    uint8_t p[8];
    put32(p, d->file_id);
    put32(p + 4, d->crc);
    if (send(d, BL_FILE_END, 0, p, 8) == BL_OK) {
        d->end_since = 1;
        d->sent_at = d->now;
    }
}

/* One step of the upload: at most one frame (or one CRC catch-up read). */
static void upload_step(bl_dev *d)
{
    const bl_config *c = d->cfg;
    size_t room, n;
    uint8_t *at = payload_at(d, &room);
    uint32_t k, unacked = d->pos - d->acked;

    if (d->tx_len)
        return;
    switch (d->up) {
    case U_BEGIN:
        send_begin(d);
        return;
    case U_WAIT_BEGIN:
    case U_WAIT_END:
    case U_LATER:
        if (d->now - d->sent_at < d->wait)
            return;
        if (d->up == U_LATER)
            d->up = U_BEGIN;
        else if (d->up == U_WAIT_BEGIN)
            send_begin(d);
        else
            send_end(d);
        if (d->wait < BL_RETRY_MAX_MS)
            d->wait *= 2;
        return;
    case U_SEND:
        break;
    default:
        return;
    }
    if (d->crc_upto < d->pos) {
        /* The console holds more than we sent on this run: the whole-file CRC needs those bytes too. */
        k = d->pos - d->crc_upto;
        n = room < k ? room : k;
        if (c->read(c->ctx, d->crc_upto, at, n) != n) {
            fail(d, BL_FAIL_READ, 0, 0);
            return;
        }
        d->crc = bl_crc32(d->crc, at, n);
        d->crc_upto += (uint32_t)n;
        return;
    }
    if (d->pos >= d->size) {
        d->wait = BL_RETRY_MS;
        send_end(d);
        d->up = U_WAIT_END;
        return;
    }
    if (c->window && unacked >= c->window) {
        /* Window full. A 1.0 console sends no PROGRESS; a FILE_END with bytes missing
         * is always answered RESUME = bytes held, which serves as the acknowledgement. */
        if ((!d->v11 || d->now - d->progress_ms >= BL_RETRY_MS) &&
            (!d->probe_out || d->now - d->sent_at >= BL_RETRY_MS)) {
            send_end(d);
            d->probe_out = 1;
        }
        return;
    }
    n = d->max_data;
    if (room < 12 + n)
        n = room - 12;
    if (n > d->size - d->pos)
        n = d->size - d->pos;
    if (c->window && n > c->window - unacked)
        n = c->window - unacked;
    if (c->read(c->ctx, d->pos, at + 12, n) != n) {
        fail(d, BL_FAIL_READ, 0, 0);
        return;
    }
    if (d->pos + n > d->crc_upto) {
        k = d->crc_upto - d->pos; /* bytes of this chunk already in the CRC (after a rewind) */
        d->crc = bl_crc32(d->crc, at + 12 + k, n - k);
        d->crc_upto = d->pos + (uint32_t)n;
    }
    put32(at, d->file_id);
    put32(at + 4, d->pos);
    put32(at + 8, 0);
    queue(d, BL_FILE_DATA, 0, 12 + n);
    flush(d);
    d->pos += (uint32_t)n;
}

static void on_ack(bl_dev *d, const uint8_t *p, size_t n)
{
    uint8_t status = p[4];
    uint32_t value = get32(p + 5);
    if (get32(p) != d->file_id || !ACTIVE(d))
        return; /* an answer about an earlier file */
    if (get32(p + 9))
        value = 0xFFFFFFFFu;
    p += 13;
    n -= 13;
    switch (status) {
    case BL_ACK_SAVED:
        d->up = U_IDLE;
        emit(d, BL_EV_SAVED, value, p, n);
        return;
    case BL_ACK_PROGRESS:
        if (value <= d->pos && value > d->acked)
            d->acked = value;
        d->progress_ms = d->now;
        return;
    case BL_ACK_RESUME:
        if (value > d->size)
            break;
        d->probe_out = 0;
        d->progress_ms = d->now;
        /* The duplicate RESUME rule: the answer to a FILE_END sent before we saw the first one. */
        if (d->up == U_SEND && d->rewinding && value == d->rewind_at && !d->end_since)
            return;
        d->rewinding = d->up != U_WAIT_BEGIN;
        d->rewind_at = d->pos = d->acked = value;
        d->end_since = 0;
        d->up = U_SEND;
        return;
    case BL_ACK_CRC_MISMATCH:
        if (d->restarts++ < 1) {
            restart(d, 1);
            return;
        }
        break;
    case BL_ACK_REFUSED:
        if (value == 1) { /* unknown file_id: its FILE_BEGIN was lost */
            d->up = U_BEGIN;
            d->fresh = 0;
            return;
        }
        if (value == 8 && d->restarts++ < 1) {
            restart(d, 1);
            return;
        }
        if (value == 2 || value == 3 || value == 7) {
            d->up = U_LATER;
            d->sent_at = d->now;
            if (d->wait < BL_RETRY_MAX_MS)
                d->wait *= 2;
            emit(d, BL_EV_RETRY, value, p, n);
            return;
        }
        break;
    default:
        break;
    }
    fail(d, (uint32_t)status << 8 | (value & 0xFF), p, n);
}

/* ---- receiving ---- */

static uint32_t number(const uint8_t *p, size_t n)
{
    uint32_t v = 0;
    while (n-- && *p >= '0' && *p <= '9')
        v = v * 10 + (uint32_t)(*p++ - '0');
    return v;
}

static void on_welcome(bl_dev *d, const uint8_t *p, size_t n)
{
    const uint8_t *name = 0, *end = p + n, *eol, *eq;
    size_t name_len = 0, idn = strlen(d->cfg->id);
    uint32_t max = 1048576;
    d->v11 = 0;
    for (; p < end; p = eol + 1) {
        for (eol = p; eol < end && *eol != '\n'; eol++)
            ;
        for (eq = p; eq < eol && *eq != '='; eq++)
            ;
        if (eq == eol)
            continue;
        eq++;
        if (eq - p == 5 && !memcmp(p, "name=", 5)) {
            name = eq;
            name_len = (size_t)(eol - eq);
            if (name_len && eq[name_len - 1] == '\r')
                name_len--;
        } else if (eq - p == 10 && !memcmp(p, "max_frame=", 10)) {
            max = number(eq, (size_t)(eol - eq));
        } else if (eq - p == 9 && !memcmp(p, "protocol=", 9)) {
            d->v11 = eol - eq >= 3 && !memcmp(eq, "1.1", 3);
        }
    }
    d->max_data = max > 12 ? max - 12 : 1;
    if (ACTIVE(d)) {
        /* A new session: the console knows nothing of our file_id. */
        d->up = U_BEGIN;
        d->fresh = 0;
        d->wait = BL_RETRY_MS;
    }
    emit(d, BL_EV_READY, name && (name_len != idn || memcmp(name, d->cfg->id, idn)), name, name_len);
}

/* ---- files the console pushes ---- */

/* FILE_ACK to the console; kept and sent again from bl_poll if the transport
 * is busy now (without its detail text). */
static void file_ack(bl_dev *d, uint32_t id, uint8_t status, uint32_t value, const void *detail, size_t dn)
{
    uint8_t a[13 + 64];
    if (dn > 64)
        dn = 64;
    put32(a, id);
    a[4] = status;
    put32(a + 5, value);
    put32(a + 9, 0);
    if (dn)
        memcpy(a + 13, detail, dn);
    if (send(d, BL_FILE_ACK, 0, a, 13 + dn) == BL_OK) {
        d->ack_pending = 0;
        return;
    }
    d->ack_pending = 1;
    d->ack_id = id;
    d->ack_status = status;
    d->ack_value = value;
}

static void in_begin(bl_dev *d, uint8_t flags, const uint8_t *p, size_t n)
{
    const bl_config *c = d->cfg;
    uint32_t id = get32(p), size = get32(p + 4), name = bl_crc32(0, p + 12, n - 12);
    if (!c->file_begin || get32(p + 8)) { /* no receiver, or over 4 GiB */
        file_ack(d, id, BL_ACK_REFUSED, 1, "this device takes no files", 26);
        return;
    }
    /* The same file again after a reconnect: resume where it stopped. */
    if (!(d->in_active && d->in_name == name && d->in_size == size && (flags & 1))) {
        if (c->file_begin(c->ctx, (const char *)p + 12, n - 12, size)) {
            file_ack(d, id, BL_ACK_REFUSED, 2, "refused by the device", 21);
            return;
        }
        d->in_active = 1;
        d->in_held = d->in_crc = d->in_acked = 0;
        d->in_name = name;
        d->in_size = size;
    }
    d->in_id = id;
    d->in_gap_set = 0;
    d->in_acked = d->in_held;
    if (flags & 1)
        file_ack(d, id, BL_ACK_RESUME, d->in_held, 0, 0);
}

static void in_data(bl_dev *d, const uint8_t *p, size_t n)
{
    const bl_config *c = d->cfg;
    uint32_t id = get32(p), off = get32(p + 4), skip, len;
    if (!d->in_active || id != d->in_id || get32(p + 8))
        return;
    if (off > d->in_held) { /* a frame before this one was lost: rewind, once per gap */
        if (!(d->in_gap_set && d->in_gap == d->in_held)) {
            d->in_gap_set = 1;
            d->in_gap = d->in_held;
            file_ack(d, id, BL_ACK_RESUME, d->in_held, "gap", 3);
        }
        return;
    }
    skip = d->in_held - off;
    if (skip >= n - 12)
        return; /* held already */
    len = (uint32_t)(n - 12) - skip;
    if (d->in_held + len > d->in_size) {
        file_ack(d, id, BL_ACK_SIZE_MISMATCH, d->in_held, 0, 0);
        return;
    }
    if (c->file_write(c->ctx, d->in_held, p + 12 + skip, len)) {
        d->in_active = 0;
        c->file_end(c->ctx, 0, d->in_held);
        file_ack(d, id, BL_ACK_REFUSED, 3, "write failed", 12);
        return;
    }
    d->in_crc = bl_crc32(d->in_crc, p + 12 + skip, len);
    d->in_held += len;
    d->in_gap_set = 0;
    if (c->window && d->in_held - d->in_acked >= (c->window / 2 ? c->window / 2 : 1)) {
        d->in_acked = d->in_held;
        file_ack(d, id, BL_ACK_PROGRESS, d->in_held, 0, 0);
    }
}

static void in_end(bl_dev *d, const uint8_t *p)
{
    const bl_config *c = d->cfg;
    uint32_t id = get32(p), crc = get32(p + 4);
    if (!d->in_active || id != d->in_id)
        return;
    if (d->in_held < d->in_size || d->in_gap_set) { /* bytes missing: repair, every time */
        d->in_gap_set = 1;
        d->in_gap = d->in_held;
        file_ack(d, id, BL_ACK_RESUME, d->in_held, "missing data", 12);
        return;
    }
    d->in_active = 0;
    if (crc != d->in_crc) {
        c->file_end(c->ctx, 0, d->in_held);
        file_ack(d, id, BL_ACK_CRC_MISMATCH, d->in_crc, 0, 0);
        return;
    }
    c->file_end(c->ctx, 1, d->in_held);
    file_ack(d, id, BL_ACK_SAVED, d->in_held, 0, 0);
}

static void handle(bl_dev *d, uint8_t type, uint8_t flags, const uint8_t *p, size_t n)
{
    d->heard = d->now;
#ifdef BL_TEST_HOOKS
    emit(d, BL_EV_FRAME, (uint32_t)type << 8 | flags, p, n);
#endif
    if (d->link == L_DOWN)
        return;
    if (type == BL_WELCOME) {
        d->link = L_READY;
        on_welcome(d, p, n);
        return;
    }
    d->link = L_READY; /* the session is alive (an answer to a probe) */
    switch (type) {
    case BL_TEXT:
        emit(d, BL_EV_TEXT, 0, p, n);
        break;
    case BL_PING:
        send(d, BL_PONG, 0, p, n);
        break;
    case BL_PONG:
        emit(d, BL_EV_PONG, 0, p, n);
        break;
    case BL_FILE_ACK:
        if (n >= 13)
            on_ack(d, p, n);
        break;
    case BL_FILE_BEGIN:
        if (n >= 12)
            in_begin(d, flags, p, n);
        break;
    case BL_FILE_DATA:
        if (n >= 12)
            in_data(d, p, n);
        break;
    case BL_FILE_END:
        if (n >= 8)
            in_end(d, p);
        break;
    case BL_BYE:
        d->link = L_DOWN;
        emit(d, BL_EV_BYE, 0, p, n);
        break;
    case BL_ERROR:
        if (n >= 2) {
            if (p[0] == 3)
                d->link = L_DOWN;
            emit(d, BL_EV_ERROR, (uint32_t)p[0] | (uint32_t)p[1] << 8, p + 2, n - 2);
        }
        break;
    default:
        break; /* unknown types are ignored */
    }
}

static void drop(bl_dev *d, size_t n)
{
    d->rx_len -= n;
    memmove(d->cfg->rx_buf, d->cfg->rx_buf + n, d->rx_len);
}

/* The decoder rules of docs/protocol.md, with 1.1's resync: anything wrong drops one byte. */
static void parse(bl_dev *d)
{
    uint8_t *b = d->cfg->rx_buf;
    size_t i, len;
    for (;;) {
        for (i = 0; i < d->rx_len; i++)
            if (b[i] == 0xA5 && (i + 1 == d->rx_len || b[i + 1] == 0x5A))
                break;
        drop(d, i);
        if (d->rx_len < 10)
            return;
        len = get32(b + 4);
        if (bl_crc16(b + 2, 6) != (uint16_t)(b[8] | b[9] << 8) || len > d->cfg->rx_cap - 14) {
            drop(d, 1);
            continue;
        }
        if (d->rx_len < len + 14)
            return;
        if ((len ? bl_crc32(0, b + 10, len) : 0) != get32(b + 10 + len)) {
            drop(d, 1);
            continue;
        }
        handle(d, b[2], b[3], b + 10, len);
        drop(d, len + 14);
    }
}

void bl_feed(bl_dev *d, const uint8_t *p, size_t n, uint32_t now)
{
    size_t k;
    d->now = now;
    while (n) {
        d->rx_ms = now;
        k = d->cfg->rx_cap - d->rx_len;
        if (k > n)
            k = n;
        memcpy(d->cfg->rx_buf + d->rx_len, p, k);
        d->rx_len += k;
        p += k;
        n -= k;
        parse(d);
    }
}

/* ---- the rest ---- */

void bl_init(bl_dev *d, const bl_config *cfg)
{
    memset(d, 0, sizeof *d);
    d->cfg = cfg;
    d->max_data = 1048576 - 12;
}

void bl_connected(bl_dev *d, uint32_t now)
{
    d->now = d->heard = now;
    d->rx_len = d->tx_len = d->tx_off = 0;
    d->ack_pending = 0; /* an answer for the old connection: the console asks again */
    d->link = L_PROBE;
    d->probe_wait = 0;
    bl_poll(d, now);
}

void bl_disconnected(bl_dev *d)
{
    d->link = L_DOWN;
    d->tx_len = d->tx_off = 0;
    d->ack_pending = 0;
}

void bl_poll(bl_dev *d, uint32_t now)
{
    d->now = now;
    flush(d);
    if (d->rx_len && now - d->rx_ms >= BL_PARTIAL_MS) {
        drop(d, 1);
        parse(d);
    }
    if (d->link == L_DOWN || d->tx_len)
        return;
    if (d->ack_pending && d->link == L_READY) {
        file_ack(d, d->ack_id, d->ack_status, d->ack_value, 0, 0);
        if (d->ack_pending)
            return;
    }
    if (d->link == L_READY && now - d->heard >= BL_SILENCE_MS) {
        d->link = L_PROBE;
        d->probe_wait = 0;
        emit(d, BL_EV_LINK, 0, 0, 0);
    }
    if (d->link == L_PROBE) {
        if (now - d->probe_at >= d->probe_wait) {
            probe(d);
            d->probe_wait = d->probe_wait ? (d->probe_wait < 8000 ? d->probe_wait * 2 : 8000) : BL_RETRY_MS;
        }
        return;
    }
    upload_step(d);
}

int bl_ready(const bl_dev *d)
{
    return d->link == L_READY;
}

static int send_ready(bl_dev *d, uint8_t type, const void *p, size_t n)
{
    return d->link == L_READY ? send(d, type, 0, p, n) : BL_NOLINK;
}

int bl_text(bl_dev *d, const char *text, size_t n)
{
    return send_ready(d, BL_TEXT, text, n);
}

int bl_ping(bl_dev *d, const uint8_t *p, size_t n)
{
    return send_ready(d, BL_PING, p, n);
}

int bl_bye(bl_dev *d, const char *reason)
{
    int r = send_ready(d, BL_BYE, reason, strlen(reason));
    if (r == BL_OK)
        d->link = L_DOWN;
    return r;
}
