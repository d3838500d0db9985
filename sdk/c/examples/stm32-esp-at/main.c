/* A sketch for a real board (not built in CI): an STM32 whose USART2 is wired to
 * an ESP8266/ESP32 running the ESP-AT firmware, sending camera pictures to the
 * benchlink console through the ESP's transparent mode.
 *
 * Wiring: STM32 USART2 TX -> ESP RX, USART2 RX <- ESP TX, common GND, 3.3 V.
 * If the ESP firmware and your board support it, also wire RTS/CTS and enable
 * hardware flow control on both sides (AT+UART_CUR=921600,8,1,0,3): then the
 * ESP stops the UART instead of dropping bytes when Wi-Fi stalls. Without it,
 * give the library a window below the ESP's buffer (window = 3072 for 4 KiB).
 *
 * The HAL calls (uart_*, millis, camera_*) are yours: CubeMX, libopencm3, or
 * registers. Only the benchlink calls are the library's. */
#include <stdint.h>
#include <string.h>

#include "benchlink.h"

/* Your board's functions. */
extern void uart_init(uint32_t baud);
extern size_t uart_write_some(const uint8_t *p, size_t n); /* what the TX FIFO takes now */
extern size_t uart_read_some(uint8_t *p, size_t n);        /* what has arrived, maybe 0 */
extern uint32_t millis(void);
extern int camera_take(uint32_t *size);                     /* 1 when a picture is ready */
extern size_t camera_read(uint32_t offset, uint8_t *p, size_t n);

static bl_dev dev;

/* Sends an AT command and waits for one of the expected answers (simplified). */
static int at(const char *cmd, const char *want, uint32_t timeout_ms) {
    char seen[128];
    size_t len = 0;
    uint32_t start = millis();
    uart_write_some((const uint8_t *)cmd, strlen(cmd));
    while (millis() - start < timeout_ms) {
        uint8_t b;
        if (uart_read_some(&b, 1) == 1) {
            if (len + 1 < sizeof seen) seen[len++] = (char)b;
            seen[len] = 0;
            if (strstr(seen, want)) return 1;
        }
    }
    return 0;
}

/* Once: join Wi-Fi and make the ESP open a transparent TCP link to the console
 * at every boot by itself (AT+SAVETRANSLINK), long before this board speaks:
 * give the console a frames:// listener, or rely on its late HELLO detection. */
static void esp_setup_once(void) {
    at("AT+CWMODE=1\r\n", "OK", 1000);
    at("AT+CWJAP=\"lab-wifi\",\"secret\"\r\n", "OK", 15000);
    at("AT+SAVETRANSLINK=1,\"192.168.1.10\",9999,\"TCP\"\r\n", "OK", 2000);
    at("AT+RST\r\n", "ready", 5000);
}

/* Or each time, without saving: connect, then enter passthrough. */
static void esp_connect(void) {
    at("AT+CIPSTART=\"TCP\",\"192.168.1.10\",9999\r\n", "CONNECT", 10000);
    at("AT+CIPMODE=1\r\n", "OK", 1000);
    at("AT+CIPSEND\r\n", ">", 1000);
    /* From here every UART byte goes to the console, and back. */
}

static size_t lib_write(void *ctx, const uint8_t *p, size_t n) {
    (void)ctx;
    return uart_write_some(p, n);
}

static size_t lib_read(void *ctx, uint32_t offset, uint8_t *p, size_t n) {
    (void)ctx;
    return camera_read(offset, p, n);
}

static void on_event(void *ctx, int ev, uint32_t value, const uint8_t *p, size_t n) {
    (void)ctx;
    (void)value;
    if (ev == BL_EV_TEXT && n == 7 && memcmp(p, "capture", 7) == 0) {
        uint32_t size;
        if (camera_take(&size)) bl_upload(&dev, "capture.jpg", size);
    }
}

int main(void) {
    static uint8_t rx[1024 + 14], tx[1024];
    static const bl_config cfg = {
        .id = "cam-1", .info = "board=stm32f4\n", .window = 3072,
        .rx_buf = rx, .rx_cap = sizeof rx, .tx_buf = tx, .tx_cap = sizeof tx,
        .write = lib_write, .read = lib_read, .event = on_event,
    };
    uart_init(115200);
    (void)esp_setup_once; /* run once per ESP, e.g. behind a button */
    esp_connect();
    bl_init(&dev, &cfg);
    bl_connected(&dev, millis());
    for (;;) {
        uint8_t buf[64];
        size_t n = uart_read_some(buf, sizeof buf);
        if (n) bl_feed(&dev, buf, n, millis());
        bl_poll(&dev, millis()); /* probes a silent link, retries, resumes */
    }
}
