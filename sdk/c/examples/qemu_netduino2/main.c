/* A camera board in QEMU (netduino2, an STM32F205): the benchlink C library on
 * bare metal, talking through USART1, which QEMU connects to the console
 * (-serial tcp:HOST:PORT). It says HELLO, sends a 16 KiB test picture, then
 * answers the operator's commands ("ping" -> "pong", else "ok: <command>").
 * tests/sdk.rs builds it with arm-none-eabi-gcc and checks the picture. */
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

#define PICTURE_SIZE 16384u

static volatile uint32_t ms;
static bl_dev dev;
static int sent;

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

/* The "picture": a pattern the test can recompute (byte i = (i * 7 + 3) % 251). */
static size_t picture_read(void *ctx, uint32_t offset, uint8_t *p, size_t n) {
    (void)ctx;
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(((offset + i) * 7u + 3u) % 251u);
    return n;
}

static void on_event(void *ctx, int ev, uint32_t value, const uint8_t *p, size_t n) {
    (void)ctx;
    (void)value;
    if (ev == BL_EV_READY && !sent) {
        bl_text(&dev, "qemu board up", 13);
        bl_upload(&dev, "picture.raw", PICTURE_SIZE);
        sent = 1;
    } else if (ev == BL_EV_SAVED) {
        bl_text(&dev, "picture saved", 13);
    } else if (ev == BL_EV_TEXT) {
        static uint8_t reply[80];
        size_t len = 0;
        if (n == 4 && memcmp(p, "ping", 4) == 0) {
            memcpy(reply, "pong", 4);
            len = 4;
        } else {
            memcpy(reply, "ok: ", 4);
            len = 4 + (n > 70 ? 70 : n);
            memcpy(reply + 4, p, len - 4);
        }
        bl_text(&dev, (const char *)reply, len);
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
    cfg.id = "qemu-board";
    cfg.info = "board=netduino2\n";
    cfg.rx_buf = rx;
    cfg.rx_cap = sizeof rx;
    cfg.tx_buf = tx;
    cfg.tx_cap = sizeof tx;
    cfg.write = uart_write;
    cfg.read = picture_read;
    cfg.event = on_event;
    bl_init(&dev, &cfg);
    bl_connected(&dev, ms);
    for (;;) {
        if (USART_SR & SR_RXNE) {
            uint8_t b = (uint8_t)USART_DR;
            bl_feed(&dev, &b, 1, ms);
        }
        bl_poll(&dev, ms);
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

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))&_stack_top, reset, hang, hang, hang, hang, hang, 0, 0, 0, 0, hang, hang, 0, hang, systick,
};
