/* A camera board in QEMU (netduino2, an STM32F205): the benchlink C library on
 * bare metal, talking through USART1, which QEMU connects to the console
 * (-serial tcp:HOST:PORT), as an ESP8266 in transparent mode would.
 *
 * It says HELLO (id netduino2, window 2048) and a TEXT starting with "boot",
 * then serves the operator: "ping" -> "pong"; "led on" / "led off" -> "led is
 * on" / "led is off"; "capture" -> uploads a generated 64x64 24-bit BMP as
 * capture-NNNN.bmp, then a TEXT saying it is done; "quit" -> BYE and a
 * semihosting exit. A dropped link is noticed by the library's probes, and
 * after the console's BYE the board starts again a second later; QEMU's
 * reconnect=1 brings the link back and the upload resumes. */
#include <stddef.h>
#include <stdint.h>

#include "../../benchlink.h"

#define REG(addr) (*(volatile uint32_t *)(addr))
#define USART1 0x40011000u
#define USART_SR REG(USART1 + 0x00)
#define USART_DR REG(USART1 + 0x04)
#define USART_CR1 REG(USART1 + 0x0C)
#define SR_TXE (1u << 7)
#define SR_RXNE (1u << 5)
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)

/* 64x64 pixels, 24 bits, rows of 192 bytes (already a multiple of 4). */
#define BMP_W 64u
#define BMP_H 64u
#define BMP_HEADER 54u
#define BMP_SIZE (BMP_HEADER + BMP_W * BMP_H * 3u)

static volatile uint32_t ms;
static bl_dev dev;
static int led;
static unsigned captures;
static char capture_name[20];
static int quitting;
/* After the console's BYE (it stopped, or kicked us): start again this much
 * later; QEMU's reconnect=1 (an ESP in transparent mode) brings the link back. */
static uint32_t restart_at;
#define RESTART_AFTER_MS 1000u

void systick(void) { ms++; }

/* The library needs only these from <string.h>; bare metal has no C library. */
void *memcpy(void *d, const void *s, size_t n) {
    uint8_t *dp = d;
    const uint8_t *sp = s;
    while (n--) *dp++ = *sp++;
    return d;
}
void *memmove(void *d, const void *s, size_t n) {
    uint8_t *dp = d;
    const uint8_t *sp = s;
    if (dp < sp) {
        while (n--) *dp++ = *sp++;
    } else {
        while (n--) dp[n] = sp[n];
    }
    return d;
}
void *memset(void *d, int c, size_t n) {
    uint8_t *dp = d;
    while (n--) *dp++ = (uint8_t)c;
    return d;
}
int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x - *y;
    return 0;
}
size_t strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

/* A UART with a one-byte data register: takes what it can now. */
static size_t uart_write(void *ctx, const uint8_t *p, size_t n) {
    (void)ctx;
    size_t done = 0;
    while (done < n && (USART_SR & SR_TXE)) USART_DR = p[done++];
    return done;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Byte `at` of the capture: a BMP header, then a gradient that moves with
 * every capture (so two captures differ). */
static uint8_t bmp_byte(uint32_t at) {
    if (at < BMP_HEADER) {
        uint8_t h[BMP_HEADER] = {'B', 'M'};
        put32(h + 2, BMP_SIZE);
        put32(h + 10, BMP_HEADER);
        put32(h + 14, 40);
        put32(h + 18, BMP_W);
        put32(h + 22, BMP_H);
        h[26] = 1;  /* planes */
        h[28] = 24; /* bits per pixel */
        put32(h + 34, BMP_W * BMP_H * 3u);
        return h[at];
    }
    uint32_t i = at - BMP_HEADER, px = i / 3u, x = px % BMP_W, y = px / BMP_W;
    switch (i % 3u) {
    case 0: return (uint8_t)(x * 4u);
    case 1: return (uint8_t)(y * 4u);
    default: return (uint8_t)(captures * 40u);
    }
}

static size_t capture_read(void *ctx, uint32_t offset, uint8_t *p, size_t n) {
    (void)ctx;
    for (size_t i = 0; i < n; i++) p[i] = bmp_byte(offset + (uint32_t)i);
    return n;
}

static void say(const char *text) { bl_text(&dev, text, strlen(text)); }

static int is(const uint8_t *p, size_t n, const char *word) {
    return n == strlen(word) && memcmp(p, word, n) == 0;
}

/* ARM semihosting SYS_EXIT (QEMU with -semihosting-config enable=on). */
static void semihosting_exit(void) {
    register uint32_t r0 __asm__("r0") = 0x18;
    register uint32_t r1 __asm__("r1") = 0x20026;
    __asm__ volatile("bkpt 0xAB" : : "r"(r0), "r"(r1) : "memory");
}

static void on_event(void *ctx, int ev, uint32_t value, const uint8_t *p, size_t n) {
    (void)ctx;
    (void)value;
    if (ev == BL_EV_BYE && !quitting) {
        restart_at = ms + RESTART_AFTER_MS;
    } else if (ev == BL_EV_READY) {
        say("boot: netduino2 camera, 64x64 BMP, commands: ping, led on, led off, capture, quit");
    } else if (ev == BL_EV_SAVED) {
        say("capture done");
    } else if (ev == BL_EV_FAILED) {
        say("capture failed");
    } else if (ev == BL_EV_TEXT) {
        if (is(p, n, "ping")) {
            say("pong");
        } else if (is(p, n, "led on")) {
            led = 1;
            say("led is on");
        } else if (is(p, n, "led off")) {
            led = 0;
            say("led is off");
        } else if (is(p, n, "capture")) {
            if (bl_uploading(&dev)) {
                say("busy: a capture is on its way");
                return;
            }
            captures++;
            memcpy(capture_name, "capture-0000.bmp", 17);
            for (unsigned v = captures, i = 11; i >= 8; i--, v /= 10) capture_name[i] = (char)('0' + v % 10);
            bl_upload(&dev, capture_name, BMP_SIZE);
        } else if (is(p, n, "quit")) {
            bl_bye(&dev, "quit");
            quitting = 1;
        } else {
            say("unknown command; try ping, led on, led off, capture, quit");
        }
    }
}

int main(void) {
    static uint8_t rx[1024 + 14], tx[1024];
    /* 1 ms ticks from the 120 MHz processor clock. */
    SYST_RVR = 120000u - 1u;
    SYST_CVR = 0;
    SYST_CSR = 7;
    /* Receiver and transmitter on before anything is sent: QEMU drops bytes
     * that arrive while the USART is off. */
    USART_CR1 = (1u << 13) | (1u << 3) | (1u << 2);
    bl_config cfg = {0};
    cfg.id = "netduino2";
    cfg.info = "board=netduino2\n";
    cfg.window = 2048;
    cfg.rx_buf = rx;
    cfg.rx_cap = sizeof rx;
    cfg.tx_buf = tx;
    cfg.tx_cap = sizeof tx;
    cfg.write = uart_write;
    cfg.read = capture_read;
    cfg.event = on_event;
    bl_init(&dev, &cfg);
    bl_connected(&dev, ms);
    for (;;) {
        if (USART_SR & SR_RXNE) {
            uint8_t b = (uint8_t)USART_DR;
            bl_feed(&dev, &b, 1, ms);
        }
        bl_poll(&dev, ms);
        if (restart_at && (int32_t)(ms - restart_at) >= 0) {
            restart_at = 0;
            bl_connected(&dev, ms); /* HELLO again; an upload under way resumes */
        }
        /* After our own BYE: let it go out, then leave. */
        if (quitting && ++quitting > 200000) semihosting_exit();
    }
}

/* Start-up: copy .data, clear .bss, run main. */
extern uint32_t _data_load, _data, _edata, _bss, _ebss, _stack_top;

void reset(void) {
    uint32_t *src = &_data_load, *dst = &_data;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_bss; dst < &_ebss;) *dst++ = 0;
    main();
    for (;;) {
    }
}

static void hang(void) {
    for (;;) {
    }
}

/* The vector table: the initial stack pointer, then the handlers. */
struct vectors {
    void *stack;
    void (*handler[15])(void);
};

__attribute__((section(".vectors"), used)) static const struct vectors vectors = {
    &_stack_top,
    {reset, hang, hang, hang, hang, hang, 0, 0, 0, 0, hang, hang, 0, hang, systick},
};
