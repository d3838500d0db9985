//! Pure protocol codecs: bytes in, messages out. No sockets, files or clocks here,
//! so every codec can be tested byte by byte and fuzzed.

pub mod carve;
pub mod cf;
pub mod frames;
pub mod lines;
pub mod receiving;
pub mod sending;
pub mod sniff;
pub mod ymodem;

use std::fmt;

/// The protocol a listener speaks, as written in `--listen PROTO://HOST:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenProtocol {
    /// Decide per connection: a first byte 0xA5 means native frames, any other first
    /// byte means lines, and a device that stays silent gets the cf greeting.
    Auto,
    Cf,
    Lines,
    Frames,
    /// Receive by YMODEM from each device that connects, then lines.
    Ymodem,
}

impl ListenProtocol {
    pub const NAMES: &'static [&'static str] = &["auto", "cf", "lines", "frames", "ymodem"];

    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "cf" => Some(Self::Cf),
            "lines" => Some(Self::Lines),
            "frames" => Some(Self::Frames),
            "ymodem" => Some(Self::Ymodem),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Cf => "cf",
            Self::Lines => "lines",
            Self::Frames => "frames",
            Self::Ymodem => "ymodem",
        }
    }
}

impl fmt::Display for ListenProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The first byte of a native frame (`A5 5A`): reserved in auto detection.
pub const FRAME_MAGIC_FIRST: u8 = 0xA5;

/// What an auto listener decides from the first bytes a device sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Lines,
    /// Native frames (0xA5 first).
    Frames,
}

/// Auto detection when the device spoke first.
pub fn detect_first_bytes(first: &[u8]) -> Detected {
    match first.first() {
        Some(&FRAME_MAGIC_FIRST) => Detected::Frames,
        _ => Detected::Lines,
    }
}

/// How operator commands are terminated on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    None,
    Lf,
    CrLf,
    Cr,
}

impl LineEnding {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "lf" => Some(Self::Lf),
            "crlf" => Some(Self::CrLf),
            "cr" => Some(Self::Cr),
            _ => None,
        }
    }

    pub fn bytes(self) -> &'static [u8] {
        match self {
            Self::None => b"",
            Self::Lf => b"\n",
            Self::CrLf => b"\r\n",
            Self::Cr => b"\r",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lf => "lf",
            Self::CrLf => "crlf",
            Self::Cr => "cr",
        }
    }
}
