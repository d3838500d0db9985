//! The command line. Every setting here can also come from config.toml; see
//! [`crate::config::Settings::resolve`] for how the two are merged.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Debug, Parser, Default)]
#[command(
    name = "benchlink",
    version,
    about = "A console for lab PCs that embedded devices talk to over TCP.",
    long_about = "A console for lab PCs that embedded devices talk to over TCP: it accepts many \
devices at once (text lines, the cf protocol of the classic STM32 + ESP8266 image article), \
shows what they say, saves the files they send and sends them commands."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Subcommand>,

    /// Run without the full-screen interface: events to stdout, commands from stdin.
    #[arg(long)]
    pub no_tui: bool,

    /// Print events as JSON objects, one per line (headless: with --no-tui, or when
    /// stdout is not a terminal).
    #[arg(long)]
    pub json: bool,

    /// Where to accept devices: HOST:PORT or PROTO://HOST:PORT, PROTO one of auto, cf,
    /// lines, frames, udp. Repeat for several. [default: 0.0.0.0:9999]
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,

    /// Open a serial port: [PROTO://]PATH[@BAUD], PROTO lines (default), frames or auto,
    /// e.g. /dev/ttyUSB0@115200. Reopened when it comes back. Repeat for several.
    #[arg(long, value_name = "PORT")]
    pub serial: Vec<String>,

    /// Publish every event to an MQTT broker: mqtt://[USER[:PASS]@]HOST[:PORT], or
    /// mqtts:// for TLS (topics benchlink/BENCH/DEVICE/KIND; see docs/scale-out.md).
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,

    /// Take command lines from the broker (benchlink/BENCH/cmd and
    /// benchlink/BENCH/DEVICE/cmd): whoever can publish there commands the boards.
    #[arg(long)]
    pub mqtt_commands: bool,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<String>,

    /// A web server's address for the received folder (e.g. http://bench-3:8000/):
    /// file_saved messages to the broker then carry the file's URL.
    #[arg(long, value_name = "URL")]
    pub files_url: Option<String>,

    /// This bench's name in MQTT topics [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub bench: Option<String>,

    /// Connect to a device that listens: [PROTO://]HOST:PORT (an ESP's AT+CIPSERVER),
    /// retried until it answers. Repeat for several.
    #[arg(long, value_name = "ADDR")]
    pub connect: Vec<String>,

    /// Folder for received files [default: the platform data folder's benchlink/received].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Most devices connected at once [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Longest text line kept whole, e.g. 64KiB; longer lines are cut [default: 64KiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_size_arg)]
    pub max_line: Option<u64>,

    /// Largest file accepted, e.g. 2GB [default: 4GiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_size_arg)]
    pub max_file_size: Option<u64>,

    /// Size at which a device's conversation.log is rotated to conversation.log.1 [default: 16MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_size_arg)]
    pub max_log_size: Option<u64>,

    /// Unfinished files (.part) kept per device for resuming; the oldest go first [default: 64].
    #[arg(long, value_name = "N")]
    pub max_parts: Option<usize>,

    /// Close any connection silent this long, e.g. 10m (off by default: quiet boards are normal).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub idle_timeout: Option<std::time::Duration>,

    /// Bytes of events that may wait for a slow output before texts are dropped (they stay in conversation.log) [default: 64MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_size_arg)]
    pub event_queue: Option<u64>,

    /// Read settings from this file instead of the platform config folder's config.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What cf devices are greeted with [default: "hello client"].
    #[arg(long, value_name = "TEXT")]
    pub greeting: Option<String>,

    /// Line ending added to commands sent to devices [default: none for cf, crlf for lines].
    #[arg(long, value_enum, value_name = "ENDING")]
    pub line_ending: Option<LineEndingArg>,

    /// How long an auto listener waits for a device to speak before greeting it as cf
    /// [default: 300].
    #[arg(long, value_name = "MS")]
    pub auto_delay_ms: Option<u64>,

    /// Do not append each device's conversation to DIR/DEVICE/conversation.log.
    #[arg(long)]
    pub no_log: bool,

    /// Do not cut JPEG, PNG and BMP images out of text streams (lines devices).
    #[arg(long)]
    pub no_carve: bool,

    /// Native-frame devices must send this token in HELLO. Auto listeners then refuse
    /// cf and lines devices (they cannot authenticate); name them with cf:// or lines://.
    #[arg(long, value_name = "SECRET")]
    pub token: Option<String>,

    /// Colour theme: default, light, high-contrast, a name in the config folder's
    /// themes/, or a path to a .toml file [default: default].
    #[arg(long, value_name = "NAME|PATH")]
    pub theme: Option<String>,

    /// Largest native frame payload accepted, e.g. 1MiB [default: 1MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_size_arg)]
    pub max_frame: Option<u64>,
}

/// Tools that act as a device, for trying the console without hardware.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Subcommand {
    /// Act as a device once: send texts and files to a console, print its answers.
    Send(crate::device::send::SendArgs),
    /// Run a simulated camera board that answers commands and sends images.
    Device(crate::device::simulator::DeviceArgs),
    /// Emulate a UART-to-Wi-Fi bridge with a small buffer and stalls, between a
    /// device and the console (console-to-device bytes are just passed on).
    Bridge(crate::device::bridge::BridgeArgs),
    /// Watch every bench through an MQTT broker: the console on the events their
    /// consoles publish (--mqtt), and commands back (their --mqtt-commands).
    Watch(crate::watch::WatchArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LineEndingArg {
    None,
    Lf,
    Crlf,
    Cr,
}

/// Sizes in human forms: `65536`, `64KiB`, `2GB`, `1 MiB`.
pub fn parse_size_arg(text: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .parse_size(text.trim())
        .map_err(|_| format!("cannot read {text:?} as a size; write it like 65536, 64KiB or 2GB"))
}

/// Durations as people write them: `90s`, `10m`, `2h`, `500ms`, or plain seconds.
pub fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let bad = || format!("cannot read {text:?} as a duration; write it like 90s, 10m or 2h");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.saturating_mul(1000),
        "m" | "min" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        _ => return Err(bad()),
    };
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_human_forms() {
        use std::time::Duration;
        assert_eq!(parse_duration_arg("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration_arg("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration_arg("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration_arg("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration_arg("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration_arg("ten").is_err());
        assert!(parse_duration_arg("5 years").is_err());
    }

    #[test]
    fn sizes_accept_human_forms() {
        assert_eq!(parse_size_arg("65536"), Ok(65536));
        assert_eq!(parse_size_arg("64KiB"), Ok(65536));
        assert_eq!(parse_size_arg("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size_arg("2GB"), Ok(2_000_000_000));
        assert!(parse_size_arg("lots").is_err());
    }
}
