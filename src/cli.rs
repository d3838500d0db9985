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
    /// lines, frames. Repeat for several. [default: 0.0.0.0:9999]
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LineEndingArg {
    None,
    Lf,
    Crlf,
}

/// Sizes in human forms: `65536`, `64KiB`, `2GB`, `1 MiB`.
pub fn parse_size_arg(text: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .parse_size(text.trim())
        .map_err(|_| format!("cannot read {text:?} as a size; write it like 65536, 64KiB or 2GB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_human_forms() {
        assert_eq!(parse_size_arg("65536"), Ok(65536));
        assert_eq!(parse_size_arg("64KiB"), Ok(65536));
        assert_eq!(parse_size_arg("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size_arg("2GB"), Ok(2_000_000_000));
        assert!(parse_size_arg("lots").is_err());
    }
}
