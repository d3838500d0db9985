//! The native benchlink frame codec: pure byte shuffling, no I/O, no clock.
//!
//! Wire layout (all integers little-endian; see `docs/protocol.md`):
//!
//! ```text
//! magic A5 5A | type u8 | flags u8 | len u32 | hcrc u16 | payload[len] | crc u32
//! ```
//!
//! `hcrc` is CRC-16/XMODEM over the 6 bytes `type..len`, `crc` is CRC-32
//! (zlib/IEEE) over the payload. The header has its own CRC so that `len` is
//! never trusted before it is known to be real: a false magic in line noise
//! then costs one byte of rescanning instead of swallowing the frames behind it.
//!
//! [`FrameDecoder`] turns a byte stream into [`Decoded`] outcomes; [`Message`]
//! gives frames their typed meaning.

use std::fmt;
use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// First two bytes of every frame.
pub const MAGIC: [u8; 2] = [0xA5, 0x5A];
/// magic(2) + type(1) + flags(1) + len(4) + hcrc(2).
pub const HEADER_LEN: usize = 10;
/// The payload CRC-32 after the payload.
pub const TRAILER_LEN: usize = 4;
/// Bytes a frame carries besides its payload.
pub const OVERHEAD: usize = HEADER_LEN + TRAILER_LEN;
/// Largest payload accepted unless configured otherwise (1 MiB).
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

/// Device to console: `key=value` lines (`id`, `token`, device info).
pub const KIND_HELLO: u8 = 0x01;
/// Console to device: `key=value` lines (`server`, `max_frame`, ...).
pub const KIND_WELCOME: u8 = 0x02;
/// Either way: optional UTF-8 reason, then the sender closes.
pub const KIND_BYE: u8 = 0x03;
/// Either way: UTF-8 text.
pub const KIND_TEXT: u8 = 0x10;
/// Device to console: u32 file_id, u64 size (or [`UNKNOWN_SIZE`]), UTF-8 name.
pub const KIND_FILE_BEGIN: u8 = 0x20;
/// Device to console: u32 file_id, u64 offset, bytes.
pub const KIND_FILE_DATA: u8 = 0x21;
/// Device to console: u32 file_id, u32 CRC-32 of the whole file.
pub const KIND_FILE_END: u8 = 0x22;
/// Console to device: u32 file_id, u8 status, u64 value, UTF-8 detail.
pub const KIND_FILE_ACK: u8 = 0x23;
/// Either way: the receiver answers with a PONG carrying the same payload.
pub const KIND_PING: u8 = 0x30;
/// Answer to PING, echoing its payload.
pub const KIND_PONG: u8 = 0x31;
/// Either way: u16 code, UTF-8 message. Usually followed by a close.
pub const KIND_ERROR: u8 = 0x7F;

/// FILE_BEGIN flag: continue a partial upload instead of starting over.
pub const FLAG_RESUME: u8 = 0x01;
/// FILE_BEGIN size value meaning "size not known in advance".
pub const UNKNOWN_SIZE: u64 = u64::MAX;

/// FILE_ACK status: file stored; value = size, detail = path relative to --dir.
pub const ACK_SAVED: u8 = 0;
/// FILE_ACK status: continue sending from offset `value`.
pub const ACK_RESUME: u8 = 1;
/// FILE_ACK status: CRC-32 in FILE_END did not match; file discarded.
pub const ACK_CRC_MISMATCH: u8 = 2;
/// FILE_ACK status: size/offset mismatch; value = the offset the console expected.
pub const ACK_SIZE_MISMATCH: u8 = 3;
/// FILE_ACK status: the console will not take this file; value = a [`refused`]
/// reason code, detail says why for people.
pub const ACK_REFUSED: u8 = 4;
/// FILE_ACK status (1.1, only to devices that announced `window`): value = the
/// contiguous bytes of the file the console holds.
pub const ACK_PROGRESS: u8 = 5;

/// FILE_ACK REFUSED reason codes (the value field, protocol 1.1), so a device can
/// choose between "start again", "try later" and "give up" without reading text.
pub mod refused {
    /// Unspecified (a 1.0 console always sends 0).
    pub const OTHER: u64 = 0;
    /// The file_id is not open (its FILE_BEGIN was lost): send FILE_BEGIN again.
    pub const UNKNOWN_FILE_ID: u64 = 1;
    /// This connection has too many files open: finish one, then try again.
    pub const TOO_MANY_OPEN_FILES: u64 = 2;
    /// The disk is full (or over quota): try later, after space is freed.
    pub const DISK_FULL: u64 = 3;
    /// Another disk error: give up or try later.
    pub const DISK_ERROR: u64 = 4;
    /// Larger than the console's --max-file-size: give up.
    pub const TOO_LARGE: u64 = 5;
    /// The name is not allowed: give up, or send it under another name.
    pub const NAME_NOT_ALLOWED: u64 = 6;
    /// The console is short of resources (file descriptors, the per-device
    /// `.part` cap): try again later.
    pub const BUSY: u64 = 7;
    /// Data went past the announced size: start the file again.
    pub const PAST_SIZE: u64 = 8;

    /// A short name for people and logs.
    pub fn name(code: u64) -> &'static str {
        match code {
            UNKNOWN_FILE_ID => "unknown file_id",
            TOO_MANY_OPEN_FILES => "too many open files",
            DISK_FULL => "disk full",
            DISK_ERROR => "disk error",
            TOO_LARGE => "too large",
            NAME_NOT_ALLOWED => "name not allowed",
            BUSY => "console busy",
            PAST_SIZE => "past the announced size",
            _ => "other",
        }
    }
}

/// ERROR code: a frame's `len` exceeded the receiver's max_frame.
pub const ERR_OVERSIZE: u16 = 1;
/// ERROR code: a malformed payload or a message not valid at this point.
pub const ERR_PROTOCOL: u16 = 2;
/// ERROR code: missing or wrong token in HELLO.
pub const ERR_AUTH: u16 = 3;
/// ERROR code: the console has too many connections and closes this one.
pub const ERR_BUSY: u16 = 4;

// A static (not a const) so the 512-byte table exists once, built at compile time.
static CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// Protocol name of a frame type, for logs ("UNKNOWN" for unassigned codes).
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_HELLO => "HELLO",
        KIND_WELCOME => "WELCOME",
        KIND_BYE => "BYE",
        KIND_TEXT => "TEXT",
        KIND_FILE_BEGIN => "FILE_BEGIN",
        KIND_FILE_DATA => "FILE_DATA",
        KIND_FILE_END => "FILE_END",
        KIND_FILE_ACK => "FILE_ACK",
        KIND_PING => "PING",
        KIND_PONG => "PONG",
        KIND_ERROR => "ERROR",
        _ => "UNKNOWN",
    }
}

/// One raw frame whose header and payload CRCs both checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub payload: Bytes,
}

impl Frame {
    /// Appends this frame's wire form to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        encode_frame(self.kind, self.flags, &self.payload, out);
    }
}

/// What the decoder found next in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A good frame (of any type, known or not).
    Frame(Frame),
    /// Header was valid but the payload CRC failed; the whole frame was skipped.
    BadCrc { kind: u8, len: u32 },
    /// Header was valid but `len` exceeds max_frame. The caller is expected to
    /// send ERROR and close; if it keeps decoding, the body is skipped.
    Oversize { len: u32 },
}

/// Appends one frame to `out`.
///
/// Does not enforce any max_frame: that limit belongs to the receiver.
///
/// # Panics
/// If `payload` is longer than `u32::MAX` bytes (not representable on the wire).
pub fn encode_frame(kind: u8, flags: u8, payload: &[u8], out: &mut BytesMut) {
    encode_parts(kind, flags, &[payload], out);
}

/// Writes a frame whose payload is the concatenation of `parts`, so typed
/// messages never build a temporary payload buffer.
fn encode_parts(kind: u8, flags: u8, parts: &[&[u8]], out: &mut BytesMut) {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(total).expect("frame payload longer than u32::MAX bytes");
    out.reserve(OVERHEAD + total);

    let mut header = [0u8; HEADER_LEN];
    header[0..2].copy_from_slice(&MAGIC);
    header[2] = kind;
    header[3] = flags;
    header[4..8].copy_from_slice(&len.to_le_bytes());
    let hcrc = CRC16.checksum(&header[2..8]);
    header[8..10].copy_from_slice(&hcrc.to_le_bytes());
    out.put_slice(&header);

    let mut hasher = crc32fast::Hasher::new();
    for part in parts {
        hasher.update(part);
        out.put_slice(part);
    }
    out.put_u32_le(hasher.finalize());
}

/// Bytes of a FILE_DATA frame before its data: header, file_id, offset.
pub const FILE_DATA_HEAD_LEN: usize = HEADER_LEN + 12;

/// A FILE_DATA frame around `data` without copying it: send `head`, then `data`,
/// then `tail`. Large-file senders use this instead of [`Message::encode`].
/// `data_crc` is the data's CRC-32, which the sender also needs for the whole
/// file's: the frame's is combined from it, so the data is hashed once.
pub fn file_data_parts(
    file_id: u32,
    offset: u64,
    data: &[u8],
    data_crc: &crc32fast::Hasher,
) -> ([u8; FILE_DATA_HEAD_LEN], [u8; TRAILER_LEN]) {
    let len = u32::try_from(12 + data.len()).expect("frame payload longer than u32::MAX bytes");
    let mut head = [0u8; FILE_DATA_HEAD_LEN];
    head[0..2].copy_from_slice(&MAGIC);
    head[2] = KIND_FILE_DATA;
    head[3] = 0;
    head[4..8].copy_from_slice(&len.to_le_bytes());
    let hcrc = CRC16.checksum(&head[2..8]);
    head[8..10].copy_from_slice(&hcrc.to_le_bytes());
    head[10..14].copy_from_slice(&file_id.to_le_bytes());
    head[14..22].copy_from_slice(&offset.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head[HEADER_LEN..]);
    hasher.combine(data_crc);
    (head, hasher.finalize().to_le_bytes())
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Incremental, resynchronising frame decoder.
///
/// It keeps no buffer of its own: it works on the caller's `BytesMut` and
/// consumes from its front. After `decode` returns `None`, at most one
/// partial frame (`< max_frame + OVERHEAD` bytes) is left in that buffer, so
/// memory stays bounded whatever the peer sends.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame: usize,
    skipped_garbage: u64,
    /// Bytes still to drop from the body of an Oversize frame. Skipping (rather
    /// than rescanning) keeps us in step with a peer that merely sent too much.
    discard: u64,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameDecoder {
    /// A decoder accepting payloads of up to `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        // `len` is a u32, and header + len + trailer must fit a usize.
        let max_frame = max_frame.min(u32::MAX as usize).min(usize::MAX - OVERHEAD);
        Self {
            max_frame,
            skipped_garbage: 0,
            discard: 0,
        }
    }

    /// Changes the payload limit, e.g. from a small one before a peer has
    /// authenticated to the full one after.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame.min(u32::MAX as usize).min(usize::MAX - OVERHEAD);
    }

    /// The payload limit in force.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Total bytes discarded while scanning for a valid header (noise before a
    /// magic, and the first byte of every false magic).
    pub fn skipped_garbage(&self) -> u64 {
        self.skipped_garbage
    }

    /// How many more bytes complete the frame at the front of `buf`, if its header
    /// is there and sound. Readers use it to read exactly to the end of a frame,
    /// so the next frame starts in a fresh buffer and nothing is moved.
    pub fn bytes_to_complete(&self, buf: &[u8]) -> Option<usize> {
        if self.discard > 0 || buf.len() < HEADER_LEN || buf[..2] != MAGIC {
            return None;
        }
        if CRC16.checksum(&buf[2..8]) != le_u16(buf, 8) {
            return None;
        }
        let len = le_u32(buf, 4) as usize;
        if len > self.max_frame {
            return None;
        }
        Some((HEADER_LEN + len + TRAILER_LEN).saturating_sub(buf.len()))
    }

    /// Decodes the next outcome from the front of `buf`, consuming the bytes it
    /// used. Returns `None` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Decoded> {
        if self.discard > 0 {
            let n = self.discard.min(buf.len() as u64);
            buf.advance(n as usize);
            self.discard -= n;
            if self.discard > 0 {
                return None;
            }
        }
        loop {
            if !self.seek_magic(buf) || buf.len() < HEADER_LEN {
                return None;
            }
            let kind = buf[2];
            let flags = buf[3];
            let len = le_u32(buf, 4);
            if CRC16.checksum(&buf[2..8]) != le_u16(buf, 8) {
                // Not a real header: step past this magic only, since a real
                // frame may start inside these 10 bytes.
                self.skip_garbage(buf, 1);
                continue;
            }
            if u64::from(len) > self.max_frame as u64 {
                buf.advance(HEADER_LEN);
                self.discard = u64::from(len) + TRAILER_LEN as u64;
                return Some(Decoded::Oversize { len });
            }
            let body = len as usize; // fits: len <= max_frame <= usize::MAX - OVERHEAD
            let total = HEADER_LEN + body + TRAILER_LEN;
            if buf.len() < total {
                // One allocation for the whole frame instead of growing per read.
                buf.reserve(total - buf.len());
                return None;
            }
            let crc = le_u32(buf, HEADER_LEN + body);
            if crc32fast::hash(&buf[HEADER_LEN..HEADER_LEN + body]) != crc {
                // A byte may have been lost inside this frame, so its `len` swallowed
                // the start of the frames after it: drop only its magic and rescan,
                // so every frame that arrived after the loss is still found.
                self.skip_garbage(buf, MAGIC.len());
                return Some(Decoded::BadCrc { kind, len });
            }
            buf.advance(HEADER_LEN);
            // Zero-copy: the payload shares the read buffer's allocation.
            let payload = buf.split_to(body).freeze();
            buf.advance(TRAILER_LEN);
            return Some(Decoded::Frame(Frame { kind, flags, payload }));
        }
    }

    /// True when `buf` (after [`decode`](Self::decode) returned `None`) holds the
    /// start of a frame still waiting for its bytes.
    pub fn holds_partial(&self, buf: &[u8]) -> bool {
        self.discard == 0 && buf.len() >= MAGIC.len() && buf[..MAGIC.len()] == MAGIC
    }

    /// Gives up the partial frame at the front of `buf`: its magic is dropped and
    /// the bytes after it are scanned again. Receivers call this when a partial
    /// frame got no new byte for a while (250 ms; no healthy link pauses inside a
    /// frame), so a byte lost inside a frame never stalls the link.
    pub fn abandon_partial(&mut self, buf: &mut BytesMut) -> bool {
        if !self.holds_partial(buf) {
            return false;
        }
        self.skip_garbage(buf, MAGIC.len());
        true
    }

    /// Drops bytes up to the next magic. Returns true if `buf` now starts with
    /// the full magic. A lone trailing `A5` is kept, as it may be half a magic.
    fn seek_magic(&mut self, buf: &mut BytesMut) -> bool {
        let mut from = 0;
        loop {
            let Some(p) = buf[from..].iter().position(|&b| b == MAGIC[0]) else {
                let n = buf.len();
                self.skip_garbage(buf, n);
                return false;
            };
            let at = from + p;
            match buf.get(at + 1) {
                None => {
                    self.skip_garbage(buf, at);
                    return false;
                }
                Some(&b) if b == MAGIC[1] => {
                    self.skip_garbage(buf, at);
                    return true;
                }
                Some(_) => from = at + 1,
            }
        }
    }

    fn skip_garbage(&mut self, buf: &mut BytesMut, n: usize) {
        buf.advance(n);
        self.skipped_garbage += n as u64;
    }
}

impl tokio_util::codec::Decoder for FrameDecoder {
    type Item = Decoded;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, io::Error> {
        Ok(FrameDecoder::decode(self, src))
    }

    /// At end of stream a started frame (full magic buffered) is an error, so
    /// the caller can log a connection cut mid-frame; a lone `A5` is garbage.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, io::Error> {
        if let Some(d) = FrameDecoder::decode(self, src) {
            return Ok(Some(d));
        }
        if src.len() >= MAGIC.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed in the middle of a frame ({} bytes buffered)",
                    src.len()
                ),
            ));
        }
        let n = src.len();
        self.skip_garbage(src, n);
        Ok(None)
    }
}

/// FILE_ACK status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckStatus {
    /// value = file size, detail = saved path relative to --dir.
    Saved,
    /// value = offset the device must continue from.
    Resume,
    /// value = CRC-32 the console computed; file discarded.
    CrcMismatch,
    /// value = the offset the console expected.
    SizeMismatch,
    /// value = a [`refused`] reason code, detail says why.
    Refused,
    /// value = the contiguous bytes the console holds (1.1 flow control).
    Progress,
    /// A status this version does not know (never `0..=5`).
    Other(u8),
}

impl From<u8> for AckStatus {
    fn from(v: u8) -> Self {
        match v {
            ACK_SAVED => Self::Saved,
            ACK_RESUME => Self::Resume,
            ACK_CRC_MISMATCH => Self::CrcMismatch,
            ACK_SIZE_MISMATCH => Self::SizeMismatch,
            ACK_REFUSED => Self::Refused,
            ACK_PROGRESS => Self::Progress,
            other => Self::Other(other),
        }
    }
}

impl From<AckStatus> for u8 {
    fn from(s: AckStatus) -> u8 {
        match s {
            AckStatus::Saved => ACK_SAVED,
            AckStatus::Resume => ACK_RESUME,
            AckStatus::CrcMismatch => ACK_CRC_MISMATCH,
            AckStatus::SizeMismatch => ACK_SIZE_MISMATCH,
            AckStatus::Refused => ACK_REFUSED,
            AckStatus::Progress => ACK_PROGRESS,
            AckStatus::Other(v) => v,
        }
    }
}

/// A frame's payload did not fit its type's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// Shorter than the type's fixed fields.
    TooShort { kind: u8, len: usize, min: usize },
    /// A text field that must be UTF-8 was not.
    InvalidUtf8 { kind: u8, field: &'static str },
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { kind, len, min } => write!(
                f,
                "{} payload too short: {len} bytes, need at least {min}",
                kind_name(*kind)
            ),
            Self::InvalidUtf8 { kind, field } => {
                write!(f, "{} payload: {field} is not valid UTF-8", kind_name(*kind))
            }
        }
    }
}

impl std::error::Error for PayloadError {}

/// A frame with its payload parsed according to its type.
///
/// Encoding is not validated; to round-trip, keys of `key=value` lists must
/// not contain `=` or `\n`, values must not contain `\n` nor end in `\r`,
/// `FileBegin::size` must not be `Some(u64::MAX)` and `AckStatus::Other`
/// must not hold 0..=4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Vec<(String, String)>),
    Welcome(Vec<(String, String)>),
    Bye(String),
    Text(String),
    FileBegin {
        file_id: u32,
        /// `None` on the wire is [`UNKNOWN_SIZE`].
        size: Option<u64>,
        name: String,
        /// [`FLAG_RESUME`] in the frame flags.
        resume: bool,
    },
    FileData {
        file_id: u32,
        offset: u64,
        /// Shares the frame's buffer (no copy).
        data: Bytes,
    },
    FileEnd {
        file_id: u32,
        crc32: u32,
    },
    FileAck {
        file_id: u32,
        status: AckStatus,
        value: u64,
        detail: String,
    },
    Ping(Bytes),
    Pong(Bytes),
    Error {
        code: u16,
        message: String,
    },
    /// A type this version does not know; callers ignore it. Its payload is
    /// dropped, so it encodes as an empty frame of that type.
    Unknown {
        kind: u8,
    },
}

fn need(kind: u8, p: &[u8], min: usize) -> Result<(), PayloadError> {
    if p.len() < min {
        Err(PayloadError::TooShort {
            kind,
            len: p.len(),
            min,
        })
    } else {
        Ok(())
    }
}

fn utf8(kind: u8, field: &'static str, b: &[u8]) -> Result<String, PayloadError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| PayloadError::InvalidUtf8 { kind, field })
}

/// `key=value` lines: split on `\n`, one trailing `\r` trimmed, empty lines
/// skipped, split at the first `=`, a line without `=` is a key with "".
fn parse_kv(kind: u8, p: &[u8]) -> Result<Vec<(String, String)>, PayloadError> {
    let text = std::str::from_utf8(p).map_err(|_| PayloadError::InvalidUtf8 {
        kind,
        field: "key=value text",
    })?;
    Ok(text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect())
}

fn kv_bytes(kv: &[(String, String)]) -> Vec<u8> {
    let mut s = Vec::new();
    for (k, v) in kv {
        s.extend_from_slice(k.as_bytes());
        s.push(b'=');
        s.extend_from_slice(v.as_bytes());
        s.push(b'\n');
    }
    s
}

impl Message {
    /// The frame type this message encodes as.
    pub fn kind(&self) -> u8 {
        match self {
            Self::Hello(_) => KIND_HELLO,
            Self::Welcome(_) => KIND_WELCOME,
            Self::Bye(_) => KIND_BYE,
            Self::Text(_) => KIND_TEXT,
            Self::FileBegin { .. } => KIND_FILE_BEGIN,
            Self::FileData { .. } => KIND_FILE_DATA,
            Self::FileEnd { .. } => KIND_FILE_END,
            Self::FileAck { .. } => KIND_FILE_ACK,
            Self::Ping(_) => KIND_PING,
            Self::Pong(_) => KIND_PONG,
            Self::Error { .. } => KIND_ERROR,
            Self::Unknown { kind } => *kind,
        }
    }

    /// Parses a frame's payload by its type.
    ///
    /// Fixed fields must be present (bytes after FILE_END's 8 are ignored, room
    /// for later fields). Text fields must be UTF-8, except TEXT, which is
    /// decoded lossily: it is human-facing log output, often from a UART
    /// bridge that can cut a multi-byte character, and a `\u{FFFD}` is more
    /// useful than dropping the whole line. Flags other than RESUME on
    /// FILE_BEGIN are ignored.
    pub fn from_frame(frame: Frame) -> Result<Message, PayloadError> {
        let Frame { kind, flags, payload } = frame;
        let p: &[u8] = &payload;
        Ok(match kind {
            KIND_HELLO => Self::Hello(parse_kv(kind, p)?),
            KIND_WELCOME => Self::Welcome(parse_kv(kind, p)?),
            KIND_BYE => Self::Bye(utf8(kind, "reason", p)?),
            KIND_TEXT => Self::Text(String::from_utf8_lossy(p).into_owned()),
            KIND_FILE_BEGIN => {
                need(kind, p, 12)?;
                let size = le_u64(p, 4);
                Self::FileBegin {
                    file_id: le_u32(p, 0),
                    size: (size != UNKNOWN_SIZE).then_some(size),
                    name: utf8(kind, "name", &p[12..])?,
                    resume: flags & FLAG_RESUME != 0,
                }
            }
            KIND_FILE_DATA => {
                need(kind, p, 12)?;
                Self::FileData {
                    file_id: le_u32(p, 0),
                    offset: le_u64(p, 4),
                    data: payload.slice(12..),
                }
            }
            KIND_FILE_END => {
                need(kind, p, 8)?;
                Self::FileEnd {
                    file_id: le_u32(p, 0),
                    crc32: le_u32(p, 4),
                }
            }
            KIND_FILE_ACK => {
                need(kind, p, 13)?;
                Self::FileAck {
                    file_id: le_u32(p, 0),
                    status: AckStatus::from(p[4]),
                    value: le_u64(p, 5),
                    detail: utf8(kind, "detail", &p[13..])?,
                }
            }
            KIND_PING => Self::Ping(payload),
            KIND_PONG => Self::Pong(payload),
            KIND_ERROR => {
                need(kind, p, 2)?;
                Self::Error {
                    code: le_u16(p, 0),
                    message: utf8(kind, "message", &p[2..])?,
                }
            }
            _ => Self::Unknown { kind },
        })
    }

    /// Appends this message as one frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let kind = self.kind();
        match self {
            Self::Hello(kv) | Self::Welcome(kv) => encode_frame(kind, 0, &kv_bytes(kv), out),
            Self::Bye(s) | Self::Text(s) => encode_frame(kind, 0, s.as_bytes(), out),
            Self::FileBegin {
                file_id,
                size,
                name,
                resume,
            } => encode_parts(
                kind,
                if *resume { FLAG_RESUME } else { 0 },
                &[
                    &file_id.to_le_bytes(),
                    &size.unwrap_or(UNKNOWN_SIZE).to_le_bytes(),
                    name.as_bytes(),
                ],
                out,
            ),
            Self::FileData {
                file_id,
                offset,
                data,
            } => encode_parts(
                kind,
                0,
                &[&file_id.to_le_bytes(), &offset.to_le_bytes(), data],
                out,
            ),
            Self::FileEnd { file_id, crc32 } => {
                encode_parts(kind, 0, &[&file_id.to_le_bytes(), &crc32.to_le_bytes()], out)
            }
            Self::FileAck {
                file_id,
                status,
                value,
                detail,
            } => encode_parts(
                kind,
                0,
                &[
                    &file_id.to_le_bytes(),
                    &[u8::from(*status)],
                    &value.to_le_bytes(),
                    detail.as_bytes(),
                ],
                out,
            ),
            Self::Ping(b) | Self::Pong(b) => encode_frame(kind, 0, b, out),
            Self::Error { code, message } => {
                encode_parts(kind, 0, &[&code.to_le_bytes(), message.as_bytes()], out)
            }
            Self::Unknown { .. } => encode_frame(kind, 0, &[], out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Hex to bytes; whitespace is ignored so tests can space bytes out.
    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        assert!(digits.len().is_multiple_of(2), "odd hex length: {s}");
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn to_hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Feeds `chunks` one after another, draining the decoder after each, and
    /// checks that what stays buffered is never more than one partial frame.
    fn feed(dec: &mut FrameDecoder, chunks: &[&[u8]]) -> Vec<Decoded> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(d) = dec.decode(&mut buf) {
                out.push(d);
            }
            assert!(
                buf.len() < dec.max_frame() + OVERHEAD,
                "{} bytes left buffered with max_frame {}",
                buf.len(),
                dec.max_frame()
            );
        }
        out
    }

    /// Decodes a hex string in one read; returns outcomes and garbage count.
    fn decode_hex(s: &str) -> (Vec<Decoded>, u64) {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let out = feed(&mut dec, &[&hex(s)]);
        (out, dec.skipped_garbage())
    }

    fn enc(m: &Message) -> Vec<u8> {
        let mut b = BytesMut::new();
        m.encode(&mut b);
        b.to_vec()
    }

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode_frame(kind, 0, payload, &mut b);
        b.to_vec()
    }

    fn good(kind: u8, payload: &[u8]) -> Decoded {
        Decoded::Frame(Frame {
            kind,
            flags: 0,
            payload: Bytes::copy_from_slice(payload),
        })
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The canonical vectors: (meaning, message). Written to tests/vectors/frames.txt.
    fn vector_entries() -> Vec<(&'static str, Message)> {
        use Message as M;
        let ack = |status, value, detail: &str| M::FileAck {
            file_id: 1,
            status,
            value,
            detail: detail.into(),
        };
        vec![
            (
                "id dev-01, token s3cret, device info fw=1.4.2",
                M::Hello(kv(&[("id", "dev-01"), ("token", "s3cret"), ("fw", "1.4.2")])),
            ),
            (
                "server benchlink 0.1.0, max_frame 1048576",
                M::Welcome(kv(&[("server", "benchlink 0.1.0"), ("max_frame", "1048576")])),
            ),
            ("reason \"done\"", M::Bye("done".into())),
            ("no reason (zero-length payload)", M::Bye(String::new())),
            ("text \"ping\"", M::Text("ping".into())),
            (
                "file 1, size 11, name log.txt",
                M::FileBegin {
                    file_id: 1,
                    size: Some(11),
                    name: "log.txt".into(),
                    resume: false,
                },
            ),
            (
                "file 1, size 11, name log.txt, flags RESUME",
                M::FileBegin {
                    file_id: 1,
                    size: Some(11),
                    name: "log.txt".into(),
                    resume: true,
                },
            ),
            (
                "file 2, size unknown, name trace.bin",
                M::FileBegin {
                    file_id: 2,
                    size: None,
                    name: "trace.bin".into(),
                    resume: false,
                },
            ),
            (
                "file 1, offset 0, \"hello world\"",
                M::FileData {
                    file_id: 1,
                    offset: 0,
                    data: Bytes::from_static(b"hello world"),
                },
            ),
            (
                "file 1, offset 6, \"world\" (after RESUME 6)",
                M::FileData {
                    file_id: 1,
                    offset: 6,
                    data: Bytes::from_static(b"world"),
                },
            ),
            (
                "file 1, crc32(\"hello world\") = 0x0d4a1185",
                M::FileEnd {
                    file_id: 1,
                    crc32: 0x0d4a_1185,
                },
            ),
            (
                "file 1 SAVED, size 11, path dev-01/log.txt",
                ack(AckStatus::Saved, 11, "dev-01/log.txt"),
            ),
            (
                "file 1 RESUME, continue from offset 6",
                ack(AckStatus::Resume, 6, ""),
            ),
            (
                "file 1 CRC_MISMATCH, console computed 0x1f2e3d4c",
                ack(AckStatus::CrcMismatch, 0x1f2e_3d4c, "crc mismatch"),
            ),
            (
                "file 1 SIZE_MISMATCH, expected offset 6",
                ack(AckStatus::SizeMismatch, 6, "expected offset 6"),
            ),
            (
                "file 1 REFUSED, no space left",
                ack(AckStatus::Refused, 0, "no space left"),
            ),
            ("payload 01 02 03 04", M::Ping(Bytes::from_static(&[1, 2, 3, 4]))),
            (
                "echo of the PING above",
                M::Pong(Bytes::from_static(&[1, 2, 3, 4])),
            ),
            (
                "code 1 (oversize), \"frame too large\"",
                M::Error {
                    code: ERR_OVERSIZE,
                    message: "frame too large".into(),
                },
            ),
            // Protocol 1.1.
            (
                "1.1: id dev-01, window 3072 (flow control)",
                M::Hello(kv(&[("id", "dev-01"), ("window", "3072")])),
            ),
            (
                "1.1: name dev-01, protocol 1.1",
                M::Welcome(kv(&[
                    ("server", "benchlink 0.1.0"),
                    ("max_frame", "1048576"),
                    ("name", "dev-01"),
                    ("protocol", "1.1"),
                ])),
            ),
            (
                "1.1: file 1 PROGRESS, the console holds 1536 bytes",
                M::FileAck {
                    file_id: 1,
                    status: AckStatus::Progress,
                    value: 1536,
                    detail: String::new(),
                },
            ),
            (
                "1.1: file 7 REFUSED code 1, unknown file_id",
                M::FileAck {
                    file_id: 7,
                    status: AckStatus::Refused,
                    value: refused::UNKNOWN_FILE_ID,
                    detail: "unknown file_id".into(),
                },
            ),
            (
                "1.1: file 1 REFUSED code 3, disk full",
                M::FileAck {
                    file_id: 1,
                    status: AckStatus::Refused,
                    value: refused::DISK_FULL,
                    detail: "disk full".into(),
                },
            ),
            (
                "1.1: file 1 REFUSED code 5, larger than --max-file-size",
                M::FileAck {
                    file_id: 1,
                    status: AckStatus::Refused,
                    value: refused::TOO_LARGE,
                    detail: "too large".into(),
                },
            ),
            (
                "1.1: file 1 REFUSED code 7, busy",
                M::FileAck {
                    file_id: 1,
                    status: AckStatus::Refused,
                    value: refused::BUSY,
                    detail: "busy".into(),
                },
            ),
            (
                "code 4 (busy), \"too many connections\"",
                M::Error {
                    code: ERR_BUSY,
                    message: "too many connections".into(),
                },
            ),
            ("1.1: reason \"idle for 600 s\"", M::Bye("idle for 600 s".into())),
            // Console to device (/push).
            (
                "push: a device that takes files: window 20000, max_frame 4108",
                M::Hello(kv(&[("id", "board"), ("window", "20000"), ("max_frame", "4108")])),
            ),
            (
                "push, console to device: file 1, size 5, name cfg.txt, flags RESUME",
                M::FileBegin {
                    file_id: 1,
                    size: Some(5),
                    name: "cfg.txt".into(),
                    resume: true,
                },
            ),
            (
                "push, device to console: file 1 RESUME 0, start from the beginning",
                M::FileAck {
                    file_id: 1,
                    status: AckStatus::Resume,
                    value: 0,
                    detail: String::new(),
                },
            ),
            (
                "push, console to device: file 1, offset 0, \"hello\"",
                M::FileData {
                    file_id: 1,
                    offset: 0,
                    data: Bytes::from_static(b"hello"),
                },
            ),
            (
                "push, console to device: file 1, crc32(\"hello\") = 0x3610a686",
                M::FileEnd {
                    file_id: 1,
                    crc32: 0x3610_a686,
                },
            ),
            (
                "push, device to console: file 1 SAVED, size 5, as cfg.txt",
                M::FileAck {
                    file_id: 1,
                    status: AckStatus::Saved,
                    value: 5,
                    detail: "cfg.txt".into(),
                },
            ),
        ]
    }

    const VECTORS_HEADER: &str = "\
# benchlink native frame test vectors (layout: docs/protocol.md).
# Generated by the unit test vectors_file_is_current in src/protocol/frames.rs;
# regenerate with: BENCHLINK_WRITE_VECTORS=1 cargo test --lib vectors_file_is_current
#
# One frame per line:  TYPE_NAME <hex of the whole frame, lowercase, no spaces>  # meaning
# Each hex string is exactly one frame of TYPE_NAME: magic, header, payload, CRC-32.
# Lines starting with # are comments; blank lines are ignored.
";

    const VECTORS_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/frames.txt");
    const VECTORS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/frames.txt"));
    const PROTOCOL_MD: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md"));

    fn render_vectors() -> String {
        let mut s = String::from(VECTORS_HEADER);
        for (meaning, m) in vector_entries() {
            s += &format!("{} {}  # {meaning}\n", kind_name(m.kind()), to_hex(&enc(&m)));
        }
        s
    }

    /// (type name, frame bytes) of every vector line in the file.
    fn parse_vectors() -> Vec<(&'static str, Vec<u8>)> {
        VECTORS
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let l = l.split_once('#').map_or(l, |(a, _)| a);
                let mut it = l.split_whitespace();
                let name = it.next().unwrap();
                let h = it.next().unwrap();
                assert!(it.next().is_none(), "extra field in {l:?}");
                assert_eq!(h, h.to_lowercase(), "hex must be lowercase");
                (name, hex(h))
            })
            .collect()
    }

    #[test]
    fn crc_check_values() {
        // Catalogue check values; same as Python binascii.crc_hqx(b, 0) / zlib.crc32.
        assert_eq!(CRC16.checksum(b"123456789"), 0x31C3);
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32fast::hash(b"hello world"), 0x0d4a_1185);
    }

    #[test]
    fn text_frame_layout() {
        // Expected bytes computed independently in Python:
        // binascii.crc_hqx(bytes.fromhex("100004000000"), 0) == 0xd075,
        // zlib.crc32(b"ping") == 0x25d53dfd.
        let f = frame(KIND_TEXT, b"ping");
        assert_eq!(f, hex("a55a 10 00 04000000 75d0 70696e67 fd3dd525"));
    }

    #[test]
    fn round_trip_every_type() {
        let mut msgs: Vec<Message> = vector_entries().into_iter().map(|(_, m)| m).collect();
        msgs.push(Message::FileAck {
            file_id: 9,
            status: AckStatus::Other(200),
            value: u64::MAX,
            detail: "future".into(),
        });
        msgs.push(Message::Ping(Bytes::new()));
        msgs.push(Message::Unknown { kind: 0x55 });
        for m in msgs {
            let (out, garbage) = decode_hex(&to_hex(&enc(&m)));
            assert_eq!(garbage, 0);
            assert_eq!(out.len(), 1, "{m:?}");
            let Decoded::Frame(f) = out.into_iter().next().unwrap() else {
                panic!("not a frame: {m:?}");
            };
            assert_eq!(f.kind, m.kind());
            assert_eq!(Message::from_frame(f).unwrap(), m);
        }
    }

    fn sample_stream() -> (Vec<u8>, Vec<Decoded>) {
        let mut s = Vec::new();
        let mut want = Vec::new();
        for (kind, p) in [
            (KIND_TEXT, &b"hello"[..]),
            (KIND_PING, &b""[..]),
            (
                KIND_FILE_DATA,
                &b"\x01\0\0\0\0\0\0\0\0\0\0\0\xa5\x5a data with magic"[..],
            ),
            (0x42, &b"unknown"[..]),
        ] {
            s.extend(frame(kind, p));
            want.push(good(kind, p));
        }
        (s, want)
    }

    #[test]
    fn every_split_into_two_and_three_reads() {
        let (s, want) = sample_stream();
        for i in 0..=s.len() {
            let mut dec = FrameDecoder::new(64);
            assert_eq!(feed(&mut dec, &[&s[..i], &s[i..]]), want, "split at {i}");
            assert_eq!(dec.skipped_garbage(), 0);
            for j in i..=s.len() {
                let mut dec = FrameDecoder::new(64);
                let got = feed(&mut dec, &[&s[..i], &s[i..j], &s[j..]]);
                assert_eq!(got, want, "splits at {i}, {j}");
                assert_eq!(dec.skipped_garbage(), 0);
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let (s, want) = sample_stream();
        let chunks: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(feed(&mut FrameDecoder::new(64), &chunks), want);
    }

    #[test]
    fn garbage_before_frames_is_skipped_and_counted() {
        let t = to_hex(&frame(KIND_TEXT, b"hi"));
        // 5 bytes of noise including a lone A5 that is not followed by 5A.
        let (out, garbage) = decode_hex(&format!("00 ff a5 13 a5 {t}"));
        assert_eq!(out, vec![good(KIND_TEXT, b"hi")]);
        assert_eq!(garbage, 5);
    }

    #[test]
    fn false_magic_with_bad_hcrc_does_not_swallow_frames() {
        let t = to_hex(&frame(KIND_TEXT, b"hi"));
        // A false magic claiming len 0xffffffff, directly followed by a real frame.
        let (out, garbage) = decode_hex(&format!("a55a 10 00 ffffffff 0000 {t}"));
        assert_eq!(out, vec![good(KIND_TEXT, b"hi")]);
        assert_eq!(garbage, 10);
        // False magics packed right before, and overlapping, a real frame: one
        // byte is dropped per false magic, so the real one is found.
        let (out, garbage) = decode_hex(&format!("a55a a55a {t} a5 {t}"));
        assert_eq!(out, vec![good(KIND_TEXT, b"hi"), good(KIND_TEXT, b"hi")]);
        assert_eq!(garbage, 5);
    }

    #[test]
    fn bad_hcrc_drops_one_byte_and_resyncs() {
        let mut bad = frame(KIND_TEXT, b"lost");
        bad[4] ^= 0x01; // len changed: hcrc no longer matches
        let next = frame(KIND_PONG, b"ok");
        let (out, garbage) = decode_hex(&(to_hex(&bad) + &to_hex(&next)));
        assert_eq!(out, vec![good(KIND_PONG, b"ok")]);
        assert_eq!(garbage, bad.len() as u64);
    }

    #[test]
    fn bad_payload_crc_skips_frame_and_next_decodes() {
        let mut bad = frame(KIND_FILE_DATA, b"0123456789abcdef");
        bad[HEADER_LEN + 3] ^= 0x80;
        let next = frame(KIND_TEXT, b"after");
        let (out, garbage) = decode_hex(&(to_hex(&bad) + &to_hex(&next)));
        assert_eq!(
            out,
            vec![
                Decoded::BadCrc {
                    kind: KIND_FILE_DATA,
                    len: 16
                },
                good(KIND_TEXT, b"after")
            ]
        );
        // The bad frame's bytes were scanned again for frames, as garbage.
        assert_eq!(garbage, bad.len() as u64);
        // A corrupted trailer is the same outcome.
        let mut bad = frame(KIND_TEXT, b"x");
        *bad.last_mut().unwrap() ^= 1;
        let (out, _) = decode_hex(&to_hex(&bad));
        assert_eq!(
            out,
            vec![Decoded::BadCrc {
                kind: KIND_TEXT,
                len: 1
            }]
        );
    }

    /// Decodes everything, abandoning a partial frame whenever the input is
    /// exhausted, as a receiver does after 250 ms without bytes.
    fn decode_with_abandon(bytes: &[u8]) -> Vec<Decoded> {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            while let Some(d) = dec.decode(&mut buf) {
                out.push(d);
            }
            if !dec.abandon_partial(&mut buf) {
                return out;
            }
        }
    }

    #[test]
    fn a_byte_lost_inside_a_file_data_never_hides_the_file_end_after_it() {
        let data = frame(KIND_FILE_DATA, &[0x42; 5000]);
        let end = frame(KIND_FILE_END, &[1, 0, 0, 0, 9, 9, 9, 9]);
        // One byte lost: the FILE_DATA's CRC fails and the rescan finds the FILE_END.
        let mut wire = data.clone();
        wire.remove(HEADER_LEN + 100);
        wire.extend_from_slice(&end);
        let out = decode_with_abandon(&wire);
        assert_eq!(
            out.last(),
            Some(&good(KIND_FILE_END, &[1, 0, 0, 0, 9, 9, 9, 9])),
            "{out:?}"
        );
        // A bridge that overflowed lost 100 bytes: the FILE_DATA waits for more
        // than will ever come, holding the FILE_END inside its announced length,
        // until it is abandoned.
        let mut wire = data.clone();
        wire.drain(HEADER_LEN + 100..HEADER_LEN + 200);
        wire.extend_from_slice(&end);
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(dec.decode(&mut buf), None);
        assert!(dec.holds_partial(&buf));
        assert!(dec.abandon_partial(&mut buf));
        let mut out = Vec::new();
        while let Some(d) = dec.decode(&mut buf) {
            out.push(d);
        }
        assert_eq!(out, vec![good(KIND_FILE_END, &[1, 0, 0, 0, 9, 9, 9, 9])]);
        assert!(buf.is_empty());
        assert!(!dec.abandon_partial(&mut buf));
        // With more frames behind it, the payload CRC fails and the rescan finds them.
        let mut wire = data;
        wire.remove(HEADER_LEN + 100);
        for i in 0..3u8 {
            wire.extend_from_slice(&frame(KIND_TEXT, &[b'a' + i; 2000]));
        }
        let out = decode_with_abandon(&wire);
        let texts: Vec<_> = out.iter().filter(|d| matches!(d, Decoded::Frame(_))).collect();
        assert_eq!(texts.len(), 3, "{out:?}");
    }

    #[test]
    fn oversize_reported_from_header_alone_then_body_skipped() {
        let big = frame(KIND_FILE_DATA, &[7u8; 100]);
        let next = frame(KIND_TEXT, b"next");
        let mut dec = FrameDecoder::new(64);
        // The header alone is enough to report it.
        assert_eq!(
            feed(&mut dec, &[&big[..HEADER_LEN]]),
            vec![Decoded::Oversize { len: 100 }]
        );
        // The body is skipped without buffering, then decoding carries on.
        let rest = [&big[HEADER_LEN..50], &big[50..], &next[..]];
        assert_eq!(feed(&mut dec, &rest), vec![good(KIND_TEXT, b"next")]);
        assert_eq!(dec.skipped_garbage(), 0);
        // Exactly max_frame is fine.
        let edge = frame(KIND_PING, &[1u8; 64]);
        assert_eq!(
            feed(&mut FrameDecoder::new(64), &[&edge]),
            vec![good(KIND_PING, &[1u8; 64])]
        );
    }

    #[test]
    fn zero_length_payload() {
        let (out, garbage) = decode_hex(&to_hex(&frame(KIND_BYE, b"")));
        assert_eq!(out, vec![good(KIND_BYE, b"")]);
        assert_eq!(garbage, 0);
        let Decoded::Frame(f) = &out[0] else { panic!() };
        assert_eq!(
            Message::from_frame(f.clone()).unwrap(),
            Message::Bye(String::new())
        );
    }

    #[test]
    fn lone_trailing_a5_is_kept() {
        let t = frame(KIND_TEXT, b"x");
        let mut dec = FrameDecoder::new(64);
        let mut buf = BytesMut::from(&b"\x00\xa5"[..]);
        assert_eq!(dec.decode(&mut buf), None);
        assert_eq!(&buf[..], b"\xa5");
        assert_eq!(dec.skipped_garbage(), 1);
        buf.extend_from_slice(&t[1..]);
        assert_eq!(dec.decode(&mut buf), Some(good(KIND_TEXT, b"x")));
        assert!(buf.is_empty());
    }

    #[test]
    fn payload_is_zero_copy() {
        let m = Message::FileData {
            file_id: 3,
            offset: 4096,
            data: Bytes::from(vec![0x5a; 1000]),
        };
        let mut buf = BytesMut::new();
        m.encode(&mut buf);
        let base = buf.as_ptr() as usize;
        let Some(Decoded::Frame(f)) = FrameDecoder::default().decode(&mut buf) else {
            panic!("no frame");
        };
        assert_eq!(f.payload.as_ptr() as usize, base + HEADER_LEN);
        let Message::FileData { data, .. } = Message::from_frame(f).unwrap() else {
            panic!("not FILE_DATA");
        };
        assert_eq!(data.as_ptr() as usize, base + HEADER_LEN + 12);
        assert_eq!(data.len(), 1000);
    }

    #[test]
    fn payload_errors() {
        let parse = |kind, flags, p: &[u8]| {
            Message::from_frame(Frame {
                kind,
                flags,
                payload: Bytes::copy_from_slice(p),
            })
        };
        for (kind, min) in [
            (KIND_FILE_BEGIN, 12),
            (KIND_FILE_DATA, 12),
            (KIND_FILE_END, 8),
            (KIND_FILE_ACK, 13),
            (KIND_ERROR, 2),
        ] {
            let e = parse(kind, 0, &vec![0; min - 1]).unwrap_err();
            assert_eq!(
                e,
                PayloadError::TooShort {
                    kind,
                    len: min - 1,
                    min
                }
            );
            assert!(parse(kind, 0, &vec![0; min]).is_ok());
        }
        let e = parse(KIND_FILE_DATA, 0, b"\x01\x02").unwrap_err();
        assert_eq!(
            e.to_string(),
            "FILE_DATA payload too short: 2 bytes, need at least 12"
        );
        let mut begin = vec![0u8; 12];
        begin.extend_from_slice(b"a\xffb");
        let e = parse(KIND_FILE_BEGIN, 0, &begin).unwrap_err();
        assert_eq!(e.to_string(), "FILE_BEGIN payload: name is not valid UTF-8");
        assert!(parse(KIND_HELLO, 0, b"id=\xc3").is_err());
        assert!(parse(KIND_BYE, 0, b"\xff").is_err());
        assert!(parse(KIND_ERROR, 0, b"\x01\x00\xff").is_err());
        let mut ack = vec![0u8; 13];
        ack.push(0xfe);
        assert!(parse(KIND_FILE_ACK, 0, &ack).is_err());
        // TEXT is lossy by design.
        assert_eq!(
            parse(KIND_TEXT, 0, b"a\xffb").unwrap(),
            Message::Text("a\u{fffd}b".into())
        );
        // FILE_END ignores trailing bytes; FILE_BEGIN ignores other flag bits.
        assert_eq!(
            parse(KIND_FILE_END, 0, b"\x01\0\0\0\x02\0\0\0extra").unwrap(),
            Message::FileEnd { file_id: 1, crc32: 2 }
        );
        let mut begin = vec![5, 0, 0, 0];
        begin.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            parse(KIND_FILE_BEGIN, 0xfe, &begin).unwrap(),
            Message::FileBegin {
                file_id: 5,
                size: None,
                name: String::new(),
                resume: false
            }
        );
    }

    #[test]
    fn key_value_parsing() {
        let f = Frame {
            kind: KIND_HELLO,
            flags: 0,
            payload: Bytes::from_static(b"id=a\r\n\n\r\nflag\nx=y=z\n=v\ntoken="),
        };
        assert_eq!(
            Message::from_frame(f).unwrap(),
            Message::Hello(kv(&[
                ("id", "a"),
                ("flag", ""),
                ("x", "y=z"),
                ("", "v"),
                ("token", "")
            ]))
        );
    }

    #[test]
    fn unknown_type_is_a_frame_then_unknown_message() {
        let (out, _) = decode_hex(&to_hex(&frame(0x66, b"whatever")));
        let Decoded::Frame(f) = out.into_iter().next().unwrap() else {
            panic!()
        };
        assert_eq!(kind_name(f.kind), "UNKNOWN");
        assert_eq!(Message::from_frame(f).unwrap(), Message::Unknown { kind: 0x66 });
    }

    #[test]
    fn ack_status_codes() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(AckStatus::from(v)), v);
        }
        assert_eq!(AckStatus::from(4), AckStatus::Refused);
        assert_eq!(AckStatus::from(5), AckStatus::Progress);
        assert_eq!(AckStatus::from(6), AckStatus::Other(6));
    }

    #[test]
    fn tokio_decoder_trait() {
        use tokio_util::codec::Decoder;
        let t = frame(KIND_TEXT, b"eof");
        let mut dec = FrameDecoder::new(64);
        let mut buf = BytesMut::from(&t[..t.len() - 1]);
        assert_eq!(Decoder::decode(&mut dec, &mut buf).unwrap(), None);
        let err = dec.decode_eof(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // Whole frames then EOF: fine; a lone A5 at EOF is garbage, not an error.
        let mut buf = BytesMut::from(&t[..]);
        buf.extend_from_slice(b"\xa5");
        let mut dec = FrameDecoder::new(64);
        assert_eq!(dec.decode_eof(&mut buf).unwrap(), Some(good(KIND_TEXT, b"eof")));
        assert_eq!(dec.decode_eof(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        assert_eq!(dec.skipped_garbage(), 1);
    }

    #[test]
    fn vectors_file_is_current() {
        let want = render_vectors();
        if std::env::var_os("BENCHLINK_WRITE_VECTORS").is_some() {
            std::fs::write(VECTORS_PATH, &want).unwrap();
            return;
        }
        assert_eq!(
            VECTORS, want,
            "tests/vectors/frames.txt is stale; regenerate with BENCHLINK_WRITE_VECTORS=1"
        );
    }

    #[test]
    fn vectors_decode_to_one_frame_and_reencode_identically() {
        let vectors = parse_vectors();
        assert_eq!(vectors.len(), vector_entries().len());
        for (name, bytes) in vectors {
            let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
            let out = feed(&mut dec, &[&bytes]);
            assert_eq!(dec.skipped_garbage(), 0, "{name}");
            assert_eq!(out.len(), 1, "{name}: {out:?}");
            let Decoded::Frame(f) = out.into_iter().next().unwrap() else {
                panic!("{name}: not a good frame");
            };
            assert_eq!(kind_name(f.kind), name);
            let m = Message::from_frame(f).unwrap();
            assert_eq!(enc(&m), bytes, "{name}: re-encoding differs");
        }
    }

    #[test]
    fn protocol_doc_shows_every_vector() {
        for (name, bytes) in parse_vectors() {
            let h = to_hex(&bytes);
            assert!(
                PROTOCOL_MD.contains(&h),
                "docs/protocol.md lacks the {name} vector {h}"
            );
        }
    }

    // ---- property tests ----

    const SMALL_MAX: usize = 64;

    fn kv_list() -> impl Strategy<Value = Vec<(String, String)>> {
        let key = "[^=\n]{0,12}";
        let value = "[^\n]{0,20}".prop_filter("no trailing CR", |v: &String| !v.ends_with('\r'));
        // Every pair encodes as a line containing '=', so none is skipped as empty.
        prop::collection::vec((key, value), 0..5)
    }

    fn bytes_up_to(n: usize) -> impl Strategy<Value = Bytes> {
        prop::collection::vec(any::<u8>(), 0..n).prop_map(Bytes::from)
    }

    fn any_message() -> impl Strategy<Value = Message> {
        let known = [
            KIND_HELLO,
            KIND_WELCOME,
            KIND_BYE,
            KIND_TEXT,
            KIND_FILE_BEGIN,
            KIND_FILE_DATA,
            KIND_FILE_END,
            KIND_FILE_ACK,
            KIND_PING,
            KIND_PONG,
            KIND_ERROR,
        ];
        prop_oneof![
            kv_list().prop_map(Message::Hello),
            kv_list().prop_map(Message::Welcome),
            any::<String>().prop_map(Message::Bye),
            any::<String>().prop_map(Message::Text),
            (
                any::<u32>(),
                prop::option::of(0..u64::MAX),
                any::<String>(),
                any::<bool>()
            )
                .prop_map(|(file_id, size, name, resume)| Message::FileBegin {
                    file_id,
                    size,
                    name,
                    resume
                }),
            (any::<u32>(), any::<u64>(), bytes_up_to(100)).prop_map(|(file_id, offset, data)| {
                Message::FileData {
                    file_id,
                    offset,
                    data,
                }
            }),
            (any::<u32>(), any::<u32>()).prop_map(|(file_id, crc32)| Message::FileEnd { file_id, crc32 }),
            (any::<u32>(), any::<u8>(), any::<u64>(), any::<String>()).prop_map(
                |(file_id, status, value, detail)| Message::FileAck {
                    file_id,
                    status: AckStatus::from(status),
                    value,
                    detail
                }
            ),
            bytes_up_to(40).prop_map(Message::Ping),
            bytes_up_to(40).prop_map(Message::Pong),
            (any::<u16>(), any::<String>()).prop_map(|(code, message)| Message::Error { code, message }),
            any::<u8>()
                .prop_filter("unassigned type", move |k| !known.contains(k))
                .prop_map(|kind| Message::Unknown { kind }),
        ]
    }

    /// Pieces of a hostile stream: noise, magics, valid, corrupted and oversize frames.
    fn stream_piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40),
            Just(MAGIC.to_vec()),
            prop::collection::vec(any::<u8>(), 0..12).prop_map(|t| [&MAGIC[..], &t].concat()),
            (
                any::<u8>(),
                prop::collection::vec(any::<u8>(), 0..(2 * SMALL_MAX))
            )
                .prop_map(|(k, p)| frame(k, &p)),
            (
                any::<u8>(),
                prop::collection::vec(any::<u8>(), 1..SMALL_MAX),
                any::<prop::sample::Index>()
            )
                .prop_map(|(k, p, i)| {
                    let mut f = frame(k, &p);
                    let at = i.index(f.len());
                    f[at] ^= 0x40;
                    f
                }),
            // A valid header with any len, body possibly missing.
            any::<u32>().prop_map(|len| {
                let mut f = frame(KIND_FILE_DATA, &[]);
                f.truncate(HEADER_LEN);
                f[4..8].copy_from_slice(&len.to_le_bytes());
                let c = CRC16.checksum(&f[2..8]);
                f[8..10].copy_from_slice(&c.to_le_bytes());
                f
            }),
        ]
    }

    fn split_at_points<'a>(data: &'a [u8], points: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = points.iter().map(|i| i.index(data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for c in cuts {
            chunks.push(&data[prev..c]);
            prev = c;
        }
        chunks.push(&data[prev..]);
        chunks
    }

    proptest! {
        /// One byte deleted or flipped anywhere in a stream of frames: every frame
        /// after the damaged one is still delivered, in order.
        #[test]
        fn after_one_damaged_byte_every_later_frame_is_found(
            sizes in proptest::collection::vec(0usize..3000, 2..8),
            at in any::<proptest::sample::Index>(),
            delete in any::<bool>(),
            flip in 1u8..=255,
        ) {
            let frames: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| frame(KIND_TEXT, &vec![b'a' + (i % 26) as u8; n]))
                .collect();
            let mut wire: Vec<u8> = frames.concat();
            let pos = at.index(wire.len());
            if delete {
                wire.remove(pos);
            } else {
                wire[pos] ^= flip;
            }
            // The frame holding the damaged byte.
            let mut start = 0;
            let mut damaged = 0;
            for (i, f) in frames.iter().enumerate() {
                if pos < start + f.len() {
                    damaged = i;
                    break;
                }
                start += f.len();
            }
            let got: Vec<Vec<u8>> = decode_with_abandon(&wire)
                .into_iter()
                .filter_map(|d| match d {
                    Decoded::Frame(f) => Some(f.payload.to_vec()),
                    _ => None,
                })
                .collect();
            let later: Vec<Vec<u8>> = sizes[damaged + 1..]
                .iter()
                .enumerate()
                .map(|(j, &n)| vec![b'a' + ((damaged + 1 + j) % 26) as u8; n])
                .collect();
            prop_assert!(got.len() >= later.len());
            prop_assert_eq!(&got[got.len() - later.len()..], &later[..]);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            data in prop::collection::vec(any::<u8>(), 0..2000),
            points in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            // `feed` asserts the bound after every read.
            let mut dec = FrameDecoder::new(SMALL_MAX);
            let _ = feed(&mut dec, &split_at_points(&data, &points));
            prop_assert!(dec.skipped_garbage() <= data.len() as u64);
        }

        #[test]
        fn hostile_streams_are_bounded_and_split_invariant(
            pieces in prop::collection::vec(stream_piece(), 0..12),
            points in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let data = pieces.concat();
            let mut whole = FrameDecoder::new(SMALL_MAX);
            let want = feed(&mut whole, &[&data]);
            let mut split = FrameDecoder::new(SMALL_MAX);
            let got = feed(&mut split, &split_at_points(&data, &points));
            prop_assert_eq!(got, want);
            prop_assert_eq!(split.skipped_garbage(), whole.skipped_garbage());
            let mut bytewise = FrameDecoder::new(SMALL_MAX);
            let chunks: Vec<&[u8]> = data.chunks(1).collect();
            let _ = feed(&mut bytewise, &chunks);
            prop_assert_eq!(bytewise.skipped_garbage(), whole.skipped_garbage());
        }

        #[test]
        fn messages_round_trip(m in any_message()) {
            let mut buf = BytesMut::new();
            m.encode(&mut buf);
            let mut dec = FrameDecoder::default();
            let Some(Decoded::Frame(f)) = dec.decode(&mut buf) else {
                return Err(TestCaseError::fail("no frame"));
            };
            prop_assert!(buf.is_empty());
            prop_assert_eq!(Message::from_frame(f).unwrap(), m);
        }

        #[test]
        fn message_streams_round_trip_in_any_split(
            msgs in prop::collection::vec(any_message(), 0..8),
            points in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut data = BytesMut::new();
            for m in &msgs {
                m.encode(&mut data);
            }
            let mut dec = FrameDecoder::default();
            let got: Vec<Message> = feed(&mut dec, &split_at_points(&data, &points))
                .into_iter()
                .map(|d| match d {
                    Decoded::Frame(f) => Message::from_frame(f).unwrap(),
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(dec.skipped_garbage(), 0);
        }
    }
}

#[cfg(test)]
mod file_data_parts_tests {
    use super::*;

    #[test]
    fn bytes_to_complete_counts_down_to_the_frame_end() {
        let mut wire = BytesMut::new();
        Message::Text("hello".into()).encode(&mut wire);
        let dec = FrameDecoder::default();
        assert_eq!(dec.bytes_to_complete(&wire[..5]), None, "no header yet");
        assert_eq!(dec.bytes_to_complete(&wire[..10]), Some(wire.len() - 10));
        assert_eq!(dec.bytes_to_complete(&wire), Some(0));
        let mut bad = wire.to_vec();
        bad[8] ^= 1;
        assert_eq!(
            dec.bytes_to_complete(&bad),
            None,
            "a false header promises nothing"
        );
    }

    #[test]
    fn parts_equal_the_encoded_message() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        for (len, offset) in [(5000, 123_456_789), (0, 0), (1, 9), (4999, 9)] {
            let data = &data[..len];
            let mut want = BytesMut::new();
            Message::FileData {
                file_id: 7,
                offset,
                data: Bytes::from(data.to_vec()),
            }
            .encode(&mut want);
            let mut data_crc = crc32fast::Hasher::new();
            data_crc.update(data);
            let (head, tail) = file_data_parts(7, offset, data, &data_crc);
            let got = [&head[..], data, &tail].concat();
            assert_eq!(got, want.to_vec(), "{len} bytes at {offset}");
        }
    }
}
