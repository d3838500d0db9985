//! What the engine tells its front ends. The JSON form (`--json`) is a public
//! interface: names and fields here are documented in docs/usage.md.

use chrono::{DateTime, Local, SecondsFormat};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A connection's number, unique for the console's lifetime.
pub type ConnId = u64;

/// Events also read back from JSON: `benchlink watch` takes them from a broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
    pub ts: DateTime<Local>,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    pub fn now(kind: EventKind) -> Self {
        Self {
            ts: Local::now(),
            kind,
        }
    }
}

fn rfc3339<S: Serializer>(ts: &DateTime<Local>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::Millis, false))
}

fn from_rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Local>, D::Error> {
    let text = String::deserialize(d)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Local))
        .map_err(serde::de::Error::custom)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Device to console.
    #[default]
    In,
    /// Console to device.
    Out,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub conn: ConnId,
    pub device: String,
    pub protocol: String,
    pub peer: String,
    pub connected_secs: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The line ending chosen with `/eol`, if any (else `--line-ending`'s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eol: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnCounters {
    pub conn: ConnId,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Frames or YMODEM blocks dropped for a bad CRC on this connection.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crc_errors: u64,
    /// Rewinds the console asked of the device (a gap, or data missing at FILE_END).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rewinds: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    Listening {
        addr: String,
        protocol: String,
        /// Where received files go (absolute).
        dir: String,
    },
    Connected {
        conn: ConnId,
        device: String,
        peer: String,
        protocol: String,
    },
    Text {
        conn: ConnId,
        device: String,
        direction: Direction,
        text: String,
        /// The bytes as they were on the wire (for a hex view); `text` is
        /// what they read as. Not in the JSON output, which has `text`.
        #[serde(skip)]
        raw: Option<bytes::Bytes>,
    },
    /// Lines that arrived together (one read of a lines device): one event
    /// inside the engine, so a device streaming text costs one event per read,
    /// not per line. Front ends receive them as `Text` events, one per line
    /// ([`EventReceiver::recv`](super::event_queue::EventReceiver::recv) hands
    /// them out so); never serialised as such.
    #[serde(skip)]
    Texts(std::sync::Arc<TextBatch>),
    FileStarted {
        conn: ConnId,
        device: String,
        name: String,
        size: Option<u64>,
        /// A resume: the bytes the console already held (native frames).
        #[serde(skip_serializing_if = "Option::is_none")]
        resumed_from: Option<u64>,
    },
    FileProgress {
        conn: ConnId,
        device: String,
        name: String,
        bytes: u64,
    },
    FileSaved {
        conn: ConnId,
        device: String,
        name: String,
        path: String,
        size: u64,
        crc32: u32,
        seconds: f64,
        /// Saved because the connection closed and the format carries no length.
        ended_by_close: bool,
    },
    FileFailed {
        conn: ConnId,
        device: String,
        name: String,
        reason: String,
        /// Where the incomplete data was kept, if anywhere.
        #[serde(skip_serializing_if = "Option::is_none")]
        part: Option<String>,
    },
    /// A file the console sends to a device (`/sz`, YMODEM) has started: the
    /// receiver took its header.
    FilePushStarted {
        conn: ConnId,
        device: String,
        name: String,
        size: u64,
        /// How: `ymodem`.
        via: String,
    },
    /// Bytes of it the device has acknowledged (a few per second at most).
    FilePushProgress {
        conn: ConnId,
        device: String,
        name: String,
        bytes: u64,
    },
    /// The device acknowledged all of it.
    FilePushed {
        conn: ConnId,
        device: String,
        name: String,
        size: u64,
        seconds: f64,
    },
    /// Sending stopped before the end.
    FilePushFailed {
        conn: ConnId,
        device: String,
        name: String,
        reason: String,
    },
    /// An unfinished file (`.part` and its sidecar) removed to keep a device
    /// folder within `--max-parts`.
    PartRemoved {
        device: String,
        path: String,
        reason: String,
    },
    Disconnected {
        conn: ConnId,
        device: String,
        reason: String,
        /// Final byte counts of the connection (exact, unlike the last `stats`).
        bytes_in: u64,
        bytes_out: u64,
        /// Final counts of damaged frames or blocks, and of rewinds asked for.
        #[serde(default, skip_serializing_if = "is_zero")]
        crc_errors: u64,
        #[serde(default, skip_serializing_if = "is_zero")]
        rewinds: u64,
    },
    /// A serial port or outgoing link is down and will be tried again after
    /// `delay_ms` (1 s doubling to 30 s, with jitter). It keeps its `conn` and
    /// name, so it comes back as the same device.
    Reconnecting {
        conn: ConnId,
        device: String,
        /// The port's path or the address connected to.
        peer: String,
        reason: String,
        delay_ms: u64,
        /// Failed attempts in a row.
        attempt: u32,
    },
    /// A serial port or outgoing link was closed by the operator (`/close`): no
    /// more retries.
    LinkClosed {
        conn: ConnId,
        device: String,
    },
    Error {
        message: String,
    },
    Reply {
        command: String,
        ok: bool,
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        devices: Option<Vec<DeviceInfo>>,
        /// Set for a command that came with one (over MQTT): which it answers.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Byte counters of every connected device, once a second while they change:
    /// front ends derive rates from these.
    Stats {
        devices: Vec<ConnCounters>,
    },
    /// Events the front end was too slow to take (texts, progress, stats) were
    /// dropped: this many, holding about this many bytes. Texts are still in each
    /// device's conversation.log.
    Dropped {
        events: u64,
        bytes: u64,
    },
    /// The MQTT broker link (`--mqtt`): `connected`, or `down` with why.
    Broker {
        state: String,
        detail: String,
    },
    /// The engine has stopped; front ends exit after this.
    Stopped {
        reason: String,
    },
}

/// Texts of one device in one direction, gathered: the lines side by side in
/// one string, with where each ends. The first line carries the raw bytes of
/// them all (what a hex view shows), as a `Text` event would.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextBatch {
    pub conn: ConnId,
    pub device: String,
    pub direction: Direction,
    text: String,
    /// Where each line ends in `text`.
    ends: Vec<u32>,
    raw: Option<bytes::Bytes>,
}

impl TextBatch {
    pub fn new(conn: ConnId, device: String, direction: Direction) -> Self {
        Self {
            conn,
            device,
            direction,
            ..Self::default()
        }
    }

    /// Room for about `bytes` of text in lines of typical length, so gathering
    /// a read does not grow the buffers again and again.
    pub fn reserve(&mut self, bytes: usize) {
        self.text.reserve(bytes);
        self.ends.reserve(bytes / 32);
    }

    /// Appends a line of device bytes, decoded as [`from_device`](crate::text::from_device)
    /// does (without an allocation for plain text); returns the line as text.
    pub fn push_from_device(&mut self, bytes: &[u8]) -> &str {
        let start = self.text.len();
        match crate::text::printable(bytes).or_else(|| crate::text::plain(bytes)) {
            Some(text) => self.text.push_str(text),
            None => self.text.push_str(&crate::text::from_device(bytes)),
        }
        self.ends.push(self.text.len() as u32);
        &self.text[start..]
    }

    pub fn set_raw(&mut self, raw: Option<bytes::Bytes>) {
        self.raw = raw;
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of text held.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    pub fn raw_len(&self) -> usize {
        self.raw.as_ref().map_or(0, |r| r.len())
    }

    /// The `n`th line.
    pub fn line(&self, n: usize) -> Option<&str> {
        let end = *self.ends.get(n)? as usize;
        let start = n.checked_sub(1).map_or(0, |before| self.ends[before] as usize);
        Some(&self.text[start..end])
    }

    pub fn lines(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).filter_map(|n| self.line(n))
    }

    /// The `n`th line as the `Text` event it stands for.
    pub fn event(&self, n: usize) -> Option<EventKind> {
        Some(EventKind::Text {
            conn: self.conn,
            device: self.device.clone(),
            direction: self.direction,
            text: self.line(n)?.to_string(),
            raw: if n == 0 { self.raw.clone() } else { None },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_keeps_each_line_decoded_as_a_text_event_would_be() {
        let mut batch = TextBatch::new(2, "cam".into(), Direction::In);
        assert!(batch.is_empty());
        batch.push_from_device(b"temp=21.5");
        batch.push_from_device(b"");
        // UTF-8, an invalid byte and ESC.
        batch.push_from_device(b"caf\xc3\xa9 \xff\x1b[1m");
        let lines: Vec<&str> = batch.lines().collect();
        assert_eq!(lines, ["temp=21.5", "", "café \\xff\u{1b}[1m"]);
        for (n, line) in lines.iter().enumerate() {
            match batch.event(n) {
                Some(EventKind::Text { text, conn: 2, .. }) => {
                    assert_eq!(text, crate::text::from_device(line.as_bytes()))
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(batch.event(3), None);
    }
}
