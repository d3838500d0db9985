//! YMODEM, both ways, as two pure state machines: bytes and time in, bytes to
//! send and file events out. The session runs them on any link.
//!
//! The quirks of the two senders and receivers that matter on a bench:
//! lrzsz (`sb`/`rb`, `sz`/`rz --ymodem`) and ST's IAP application (AN4657,
//! `Ymodem_Receive` / `Ymodem_Transmit`):
//! - block 0 carries `name NUL size [mtime mode ...] NUL`; an empty name ends
//!   the batch;
//! - the receiver NAKs the first EOT and ACKs the second (lrzsz), and also
//!   ends a file whose sender sent a single EOT and waits (after a short pause);
//! - a duplicate of the previous block is ACKed and dropped; a bad block is NAKed;
//! - `sz` waiting for its receiver sends the ZMODEM ZRQINIT (`**\x18B00...`),
//!   which is ignored here, and CAN CAN aborts;
//! - a receiver asks with `C` (CRC-16) and falls back to NAK (checksum) when
//!   `C` gets no answer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

pub const SOH: u8 = 0x01;
pub const STX: u8 = 0x02;
pub const EOT: u8 = 0x04;
pub const ACK: u8 = 0x06;
pub const NAK: u8 = 0x15;
pub const CAN: u8 = 0x18;
pub const CRC_REQUEST: u8 = b'C';
pub const PAD: u8 = 0x1a;

static CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// How long a receiver waits for a block before asking again.
pub const BLOCK_TIMEOUT: Duration = Duration::from_secs(3);
/// Errors in a row before giving up (both ways).
pub const MAX_ERRORS: u32 = 10;
/// `C` asked this many times without an answer: the receiver tries checksums.
const C_TRIES: u32 = 3;
/// After NAKing an EOT, a sender that does not send a second one within this
/// is taken to have ended the file (ST's IAP style).
const SINGLE_EOT_WAIT: Duration = Duration::from_secs(1);
/// The sender waits this long for the receiver's first `C` (the operator may
/// have to start the board's receiver first, e.g. ST IAP's menu key `1`).
pub const FIRST_C_WAIT: Duration = Duration::from_secs(60);
/// How long a sender waits for each answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The abort sequence: CAN CAN, then backspaces as lrzsz sends them.
pub fn cancel_bytes() -> Bytes {
    Bytes::from_static(&[CAN, CAN, CAN, CAN, CAN, 8, 8, 8, 8, 8])
}

fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// One block on the wire: header, sequence, its complement, data, CRC-16.
pub fn encode_block(seq: u8, data: &[u8], crc: bool) -> Bytes {
    let (header, len) = if data.len() <= 128 {
        (SOH, 128)
    } else {
        (STX, 1024)
    };
    let mut out = BytesMut::with_capacity(len + 5);
    out.extend_from_slice(&[header, seq, 255 - seq]);
    out.extend_from_slice(data);
    // Block 0 pads with NULs; data blocks with CPMEOF, as lrzsz and ST do.
    let pad = if seq == 0 { 0 } else { PAD };
    out.resize(3 + len, pad);
    let payload = &out[3..3 + len];
    if crc {
        let c = CRC16.checksum(payload);
        out.extend_from_slice(&c.to_be_bytes());
    } else {
        let c = checksum(payload);
        out.extend_from_slice(&[c]);
    }
    out.freeze()
}

/// Block 0 for a file: `name NUL size NUL`, in 128 bytes when it fits.
pub fn header_block(name: &str, size: u64, crc: bool) -> Bytes {
    let mut data = Vec::with_capacity(128);
    data.extend_from_slice(name.as_bytes());
    data.push(0);
    data.extend_from_slice(size.to_string().as_bytes());
    data.push(0);
    if data.len() > 1024 {
        data.truncate(1024);
    }
    let data = if data.len() <= 128 {
        data
    } else {
        let mut d = data;
        d.resize(1024, 0);
        d
    };
    encode_block(0, &data, crc)
}

/// What a receiver tells its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RxEvent {
    /// Bytes for the sender.
    Send(Bytes),
    /// Block 0 of a file: its name as sent and its size, if given.
    FileStart { name: String, size: Option<u64> },
    /// File bytes, in order, padding already removed.
    Data(Bytes),
    /// The file is complete.
    FileEnd,
    /// The empty block 0: the batch is over (the link goes back to what it was).
    BatchEnd,
    /// Given up, or cancelled by the sender (CAN CAN); the reason is said.
    Abort(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RxState {
    /// Asking for block 0 with `C` (or NAK, in checksum mode).
    WaitHeader,
    /// Receiving a file's blocks.
    Data,
    /// The first EOT was NAKed; a second one (or silence) ends the file.
    SecondEot,
    Done,
}

/// The console receiving by YMODEM.
#[derive(Debug)]
pub struct Receiver {
    state: RxState,
    crc: bool,
    buf: BytesMut,
    /// The block number expected next.
    expected: u8,
    /// Bytes of the current file still to come (when block 0 gave its size).
    remaining: Option<u64>,
    /// Without a size, the last block is held back: its CPMEOF padding goes at EOT.
    tail: Option<Bytes>,
    errors: u32,
    /// Blocks NAKed for a bad CRC or checksum, in all (for the metrics).
    damaged: u64,
    c_asked: u32,
    /// When the next timeout fires.
    due: Instant,
    /// A CAN was the last byte seen: a second one aborts.
    can: bool,
}

impl Receiver {
    /// A receiver that starts asking for block 0 now.
    pub fn start(now: Instant) -> (Receiver, Vec<RxEvent>) {
        let r = Receiver {
            state: RxState::WaitHeader,
            crc: true,
            buf: BytesMut::new(),
            expected: 0,
            remaining: None,
            tail: None,
            errors: 0,
            damaged: 0,
            c_asked: 1,
            due: now + BLOCK_TIMEOUT,
            can: false,
        };
        (r, vec![RxEvent::Send(Bytes::from_static(&[CRC_REQUEST]))])
    }

    /// When [`Receiver::on_timeout`] is due.
    pub fn deadline(&self) -> Option<Instant> {
        (self.state != RxState::Done).then_some(self.due)
    }

    pub fn done(&self) -> bool {
        self.state == RxState::Done
    }

    pub fn on_timeout(&mut self, now: Instant) -> Vec<RxEvent> {
        let mut out = Vec::new();
        self.due = now + BLOCK_TIMEOUT;
        match self.state {
            RxState::Done => {}
            RxState::SecondEot => {
                // A single EOT (ST IAP's Ymodem_Transmit): the file ended.
                self.end_file(&mut out);
            }
            RxState::WaitHeader => {
                self.errors += 1;
                if self.errors > MAX_ERRORS {
                    return self.abort("no YMODEM sender answered");
                }
                // No answer to C: the sender may only know checksums.
                if self.crc && self.expected == 0 && self.c_asked >= C_TRIES && self.no_file_yet() {
                    self.crc = false;
                }
                self.c_asked += 1;
                self.buf.clear();
                let ask = if self.crc { CRC_REQUEST } else { NAK };
                out.push(RxEvent::Send(Bytes::copy_from_slice(&[ask])));
            }
            RxState::Data => {
                self.errors += 1;
                if self.errors > MAX_ERRORS {
                    return self.abort("the sender stopped sending blocks");
                }
                self.buf.clear();
                out.push(RxEvent::Send(Bytes::from_static(&[NAK])));
            }
        }
        out
    }

    fn no_file_yet(&self) -> bool {
        self.remaining.is_none() && self.tail.is_none()
    }

    fn abort(&mut self, why: &str) -> Vec<RxEvent> {
        self.state = RxState::Done;
        vec![RxEvent::Send(cancel_bytes()), RxEvent::Abort(why.to_string())]
    }

    fn end_file(&mut self, out: &mut Vec<RxEvent>) {
        if let Some(mut tail) = self.tail.take() {
            // No size in block 0: the CPMEOF padding of the last block goes.
            let keep = tail.iter().rposition(|&b| b != PAD).map_or(0, |i| i + 1);
            let _ = tail.split_off(keep);
            if !tail.is_empty() {
                out.push(RxEvent::Data(tail));
            }
        }
        out.push(RxEvent::Send(Bytes::from_static(&[ACK])));
        out.push(RxEvent::FileEnd);
        // The next file's block 0.
        out.push(RxEvent::Send(Bytes::copy_from_slice(&[if self.crc {
            CRC_REQUEST
        } else {
            NAK
        }])));
        self.state = RxState::WaitHeader;
        self.expected = 0;
        self.remaining = None;
        self.errors = 0;
    }

    /// Blocks refused for a bad CRC or checksum since the start.
    pub fn damaged(&self) -> u64 {
        self.damaged
    }

    pub fn on_bytes(&mut self, data: &[u8], now: Instant) -> Vec<RxEvent> {
        let mut out = Vec::new();
        if self.state == RxState::Done {
            return out;
        }
        self.buf.extend_from_slice(data);
        loop {
            if self.state == RxState::Done {
                self.buf.clear();
                break;
            }
            let Some(&first) = self.buf.first() else { break };
            match first {
                SOH | STX => {
                    let len = if first == SOH { 128 } else { 1024 };
                    let total = 3 + len + if self.crc { 2 } else { 1 };
                    if self.buf.len() < total {
                        break;
                    }
                    let block = self.buf.split_to(total).freeze();
                    self.can = false;
                    self.on_block(&block, len, now, &mut out);
                }
                EOT => {
                    let _ = self.buf.split_to(1);
                    self.can = false;
                    self.due = now + SINGLE_EOT_WAIT;
                    match self.state {
                        RxState::Data => {
                            // lrzsz: NAK the first EOT, ACK the second.
                            self.state = RxState::SecondEot;
                            out.push(RxEvent::Send(Bytes::from_static(&[NAK])));
                        }
                        RxState::SecondEot => self.end_file(&mut out),
                        // An EOT repeated after we ended the file: its ACK was lost.
                        _ => out.push(RxEvent::Send(Bytes::from_static(&[ACK]))),
                    }
                }
                CAN => {
                    let _ = self.buf.split_to(1);
                    if self.can {
                        self.state = RxState::Done;
                        self.buf.clear();
                        out.push(RxEvent::Abort("the sender cancelled (CAN CAN)".into()));
                        break;
                    }
                    self.can = true;
                }
                _ => {
                    // Not a block: the sender's chatter (sz's ZRQINIT `**\x18B00...`, a
                    // board's menu text) is skipped a byte at a time.
                    let _ = self.buf.split_to(1);
                    self.can = false;
                }
            }
        }
        out
    }

    fn on_block(&mut self, block: &[u8], len: usize, now: Instant, out: &mut Vec<RxEvent>) {
        let (seq, inv) = (block[1], block[2]);
        let data = &block[3..3 + len];
        let valid = seq == 255 - inv
            && if self.crc {
                CRC16.checksum(data).to_be_bytes() == block[3 + len..3 + len + 2]
            } else {
                checksum(data) == block[3 + len]
            };
        if !valid {
            self.errors += 1;
            self.damaged += 1;
            if self.errors > MAX_ERRORS {
                out.extend(self.abort("too many damaged blocks"));
                return;
            }
            self.due = now + BLOCK_TIMEOUT;
            out.push(RxEvent::Send(Bytes::from_static(&[NAK])));
            return;
        }
        self.due = now + BLOCK_TIMEOUT;
        match self.state {
            RxState::WaitHeader if seq == 0 => {
                self.errors = 0;
                let name_end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                if name_end == 0 {
                    out.push(RxEvent::Send(Bytes::from_static(&[ACK])));
                    out.push(RxEvent::BatchEnd);
                    self.state = RxState::Done;
                    return;
                }
                let name = String::from_utf8_lossy(&data[..name_end]).into_owned();
                let rest = &data[(name_end + 1).min(data.len())..];
                let size = rest
                    .split(|&b| b == b' ' || b == 0)
                    .next()
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse::<u64>().ok());
                self.remaining = size;
                self.tail = None;
                self.expected = 1;
                self.state = RxState::Data;
                out.push(RxEvent::FileStart { name, size });
                out.push(RxEvent::Send(Bytes::from_static(&[ACK])));
                out.push(RxEvent::Send(Bytes::copy_from_slice(&[if self.crc {
                    CRC_REQUEST
                } else {
                    NAK
                }])));
            }
            RxState::WaitHeader => {
                // A data block while we wait for block 0: the ACK of its EOT was lost
                // and it repeats, or garbage; ask for block 0 again.
                out.push(RxEvent::Send(Bytes::from_static(&[ACK])));
            }
            RxState::Data | RxState::SecondEot if seq == self.expected => {
                self.errors = 0;
                self.state = RxState::Data;
                self.expected = self.expected.wrapping_add(1);
                let mut bytes = Bytes::copy_from_slice(data);
                match &mut self.remaining {
                    Some(left) => {
                        let take = (*left).min(bytes.len() as u64) as usize;
                        bytes.truncate(take);
                        *left -= take as u64;
                        if !bytes.is_empty() {
                            out.push(RxEvent::Data(bytes));
                        }
                    }
                    None => {
                        if let Some(previous) = self.tail.replace(bytes) {
                            out.push(RxEvent::Data(previous));
                        }
                    }
                }
                out.push(RxEvent::Send(Bytes::from_static(&[ACK])));
            }
            RxState::Data | RxState::SecondEot if seq == self.expected.wrapping_sub(1) => {
                // Our ACK was lost and the sender repeats the block: ACK, drop.
                out.push(RxEvent::Send(Bytes::from_static(&[ACK])));
            }
            RxState::Data | RxState::SecondEot => {
                out.extend(self.abort(&format!(
                    "blocks out of order (expected {}, got {seq})",
                    self.expected
                )));
            }
            RxState::Done => {}
        }
    }
}

/// A file to send: its name in block 0 and its bytes.
#[derive(Debug, Clone)]
pub struct OutFile {
    pub name: String,
    pub data: Bytes,
}

/// What a sender tells its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    Send(Bytes),
    /// The receiver took block 0 of file `index`.
    FileStart(usize),
    /// The receiver holds this many bytes of the current file.
    Progress(u64),
    /// File `index` was received whole (EOT acknowledged).
    FileDone(usize),
    /// The empty block 0 was acknowledged: the batch is over.
    Done,
    Abort(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxState {
    /// Waiting for `C` (or NAK) before block 0 of file `index` (or the end).
    WaitStart,
    /// Block 0 sent; waiting for its ACK.
    HeaderSent,
    /// Block 0 ACKed: waiting for `C` before the data (lrzsz sends it; ST too).
    WaitDataStart,
    /// A data block sent; waiting for its ACK.
    BlockSent,
    /// EOT sent.
    EotSent,
    /// The empty block 0 sent.
    EndSent,
    Done,
}

/// The console sending by YMODEM-1K.
#[derive(Debug)]
pub struct Sender {
    files: VecDeque<OutFile>,
    index: usize,
    state: TxState,
    crc: bool,
    /// Offset of the block in flight (or the next one).
    offset: u64,
    block: u8,
    /// The last thing sent, to repeat on NAK or timeout.
    last: Bytes,
    errors: u32,
    due: Instant,
    can: bool,
}

impl Sender {
    pub fn new(files: Vec<OutFile>, now: Instant) -> Sender {
        Sender {
            files: files.into(),
            index: 0,
            state: TxState::WaitStart,
            crc: true,
            offset: 0,
            block: 1,
            last: Bytes::new(),
            errors: 0,
            due: now + FIRST_C_WAIT,
            can: false,
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        (self.state != TxState::Done).then_some(self.due)
    }

    pub fn done(&self) -> bool {
        self.state == TxState::Done
    }

    fn abort(&mut self, why: String) -> Vec<TxEvent> {
        self.state = TxState::Done;
        vec![TxEvent::Send(cancel_bytes()), TxEvent::Abort(why)]
    }

    pub fn on_timeout(&mut self, now: Instant) -> Vec<TxEvent> {
        self.due = now + ANSWER_TIMEOUT;
        match self.state {
            TxState::Done => Vec::new(),
            TxState::WaitStart | TxState::WaitDataStart => {
                let what = if self.index == 0 && self.state == TxState::WaitStart {
                    format!(
                        "the receiver never asked to start (no C within {} s): start the board's YMODEM receive first",
                        FIRST_C_WAIT.as_secs()
                    )
                } else {
                    "the receiver stopped answering".into()
                };
                self.abort(what)
            }
            _ => self.resend("no answer"),
        }
    }

    fn resend(&mut self, why: &str) -> Vec<TxEvent> {
        self.errors += 1;
        if self.errors > MAX_ERRORS {
            return self.abort(format!("{MAX_ERRORS} retries of one block failed ({why})"));
        }
        vec![TxEvent::Send(self.last.clone())]
    }

    fn send(&mut self, bytes: Bytes, now: Instant) -> TxEvent {
        self.last = bytes.clone();
        self.due = now + ANSWER_TIMEOUT;
        TxEvent::Send(bytes)
    }

    fn current(&self) -> Option<&OutFile> {
        self.files.front()
    }

    fn next_block(&mut self, now: Instant) -> Vec<TxEvent> {
        let Some(file) = self.current() else {
            return Vec::new();
        };
        let size = file.data.len() as u64;
        if self.offset >= size {
            self.state = TxState::EotSent;
            self.errors = 0;
            return vec![self.send(Bytes::from_static(&[EOT]), now)];
        }
        let start = self.offset as usize;
        let end = (start + 1024).min(file.data.len());
        let chunk = file.data.slice(start..end);
        let block = encode_block(self.block, &chunk, self.crc);
        self.state = TxState::BlockSent;
        vec![self.send(block, now)]
    }

    pub fn on_bytes(&mut self, data: &[u8], now: Instant) -> Vec<TxEvent> {
        let mut out = Vec::new();
        for (i, &b) in data.iter().enumerate() {
            if self.state == TxState::Done {
                break;
            }
            if b == CAN {
                if self.can {
                    self.state = TxState::Done;
                    out.push(TxEvent::Abort("the receiver cancelled (CAN CAN)".into()));
                    break;
                }
                self.can = true;
                continue;
            }
            self.can = false;
            let last_of_read = i + 1 == data.len();
            match (self.state, b) {
                (TxState::WaitStart | TxState::WaitDataStart, CRC_REQUEST | NAK) => {
                    // A `C` inside the board's text ("Connect...") is not a request:
                    // a request stands alone, the last byte of what arrived.
                    if b == CRC_REQUEST && !last_of_read {
                        continue;
                    }
                    if self.state == TxState::WaitStart && self.index == 0 && b == NAK {
                        self.crc = false;
                    }
                    out.extend(self.on_start(now));
                }
                (TxState::HeaderSent, ACK) => {
                    self.errors = 0;
                    out.push(TxEvent::FileStart(self.index));
                    if self.current().is_some_and(|f| f.data.is_empty()) {
                        // Nothing to send: EOT right away (lrzsz and ST accept it).
                        self.state = TxState::EotSent;
                        out.push(self.send(Bytes::from_static(&[EOT]), now));
                    } else {
                        self.state = TxState::WaitDataStart;
                        self.due = now + ANSWER_TIMEOUT;
                    }
                }
                (TxState::BlockSent, ACK) => {
                    self.errors = 0;
                    let len = self.current().map_or(0, |f| f.data.len() as u64);
                    self.offset = (self.offset + 1024).min(len);
                    self.block = self.block.wrapping_add(1);
                    out.push(TxEvent::Progress(self.offset));
                    out.extend(self.next_block(now));
                }
                (TxState::HeaderSent | TxState::BlockSent | TxState::EndSent, NAK) => {
                    out.extend(self.resend("NAK"));
                }
                (TxState::EotSent, NAK) => {
                    // lrzsz NAKs the first EOT: send it again.
                    out.push(self.send(Bytes::from_static(&[EOT]), now));
                }
                (TxState::EotSent, ACK) => {
                    self.errors = 0;
                    out.push(TxEvent::FileDone(self.index));
                    self.files.pop_front();
                    self.index += 1;
                    self.offset = 0;
                    self.block = 1;
                    self.state = TxState::WaitStart;
                    self.due = now + ANSWER_TIMEOUT;
                }
                (TxState::EndSent, ACK) => {
                    self.state = TxState::Done;
                    out.push(TxEvent::Done);
                }
                // Anything else (the board's text, a stray C while a block is on its
                // way) is ignored.
                _ => {}
            }
        }
        out
    }

    fn on_start(&mut self, now: Instant) -> Vec<TxEvent> {
        if self.state == TxState::WaitDataStart {
            return self.next_block(now);
        }
        self.errors = 0;
        match self.current() {
            Some(file) => {
                let block = header_block(&file.name, file.data.len() as u64, self.crc);
                self.state = TxState::HeaderSent;
                vec![self.send(block, now)]
            }
            None => {
                let block = encode_block(0, &[], self.crc);
                self.state = TxState::EndSent;
                vec![self.send(block, now)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sends(events: &[RxEvent]) -> Vec<u8> {
        events
            .iter()
            .filter_map(|e| match e {
                RxEvent::Send(b) => Some(b.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn data(events: &[RxEvent]) -> Vec<u8> {
        events
            .iter()
            .filter_map(|e| match e {
                RxEvent::Data(b) => Some(b.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Runs a sender against a receiver through a perfect link; returns the
    /// files the receiver got.
    fn transfer(files: Vec<OutFile>) -> Vec<(String, Option<u64>, Vec<u8>)> {
        let now = Instant::now();
        let (mut rx, first) = Receiver::start(now);
        let mut tx = Sender::new(files, now);
        let mut to_tx = sends(&first);
        let mut got: Vec<(String, Option<u64>, Vec<u8>)> = Vec::new();
        for _ in 0..100_000 {
            let tx_events = tx.on_bytes(&to_tx, now);
            to_tx.clear();
            let to_rx: Vec<u8> = tx_events
                .iter()
                .filter_map(|e| match e {
                    TxEvent::Send(b) => Some(b.to_vec()),
                    _ => None,
                })
                .flatten()
                .collect();
            let rx_events = rx.on_bytes(&to_rx, now);
            for e in &rx_events {
                match e {
                    RxEvent::FileStart { name, size } => got.push((name.clone(), *size, Vec::new())),
                    RxEvent::Data(d) => got.last_mut().unwrap().2.extend_from_slice(d),
                    _ => {}
                }
            }
            to_tx = sends(&rx_events);
            if tx.done() && rx.done() {
                return got;
            }
            assert!(!to_tx.is_empty() || !to_rx.is_empty(), "stuck: {tx:?} {rx:?}");
        }
        panic!("never finished");
    }

    #[test]
    fn a_batch_goes_through_whole() {
        let files = vec![
            OutFile {
                name: "empty.bin".into(),
                data: Bytes::new(),
            },
            OutFile {
                name: "eof.bin".into(),
                data: Bytes::from(vec![1, 2, 3, PAD]),
            },
            OutFile {
                name: "three.bin".into(),
                data: Bytes::from((0..3072).map(|i| i as u8).collect::<Vec<u8>>()),
            },
            OutFile {
                name: "odd.bin".into(),
                data: Bytes::from((0..1500).map(|i| (i * 7) as u8).collect::<Vec<u8>>()),
            },
        ];
        let got = transfer(files.clone());
        assert_eq!(got.len(), 4);
        for (f, (name, size, bytes)) in files.iter().zip(got) {
            assert_eq!(name, f.name);
            assert_eq!(size, Some(f.data.len() as u64));
            assert_eq!(bytes, f.data.to_vec(), "{name}");
        }
    }

    #[test]
    fn the_receiver_nak_s_the_first_eot_and_ends_on_the_second() {
        let now = Instant::now();
        let (mut rx, _) = Receiver::start(now);
        let e = rx.on_bytes(&header_block("a.txt", 3, true), now);
        assert!(e.contains(&RxEvent::FileStart {
            name: "a.txt".into(),
            size: Some(3)
        }));
        let e = rx.on_bytes(&encode_block(1, b"abc", true), now);
        assert_eq!(data(&e), b"abc");
        assert_eq!(sends(&rx.on_bytes(&[EOT], now)), vec![NAK]);
        let e = rx.on_bytes(&[EOT], now);
        assert!(e.contains(&RxEvent::FileEnd));
        assert_eq!(sends(&e), vec![ACK, CRC_REQUEST]);
    }

    #[test]
    fn a_single_eot_ends_the_file_after_a_pause() {
        let now = Instant::now();
        let (mut rx, _) = Receiver::start(now);
        rx.on_bytes(&header_block("fw.bin", 3, true), now);
        rx.on_bytes(&encode_block(1, b"abc", true), now);
        assert_eq!(sends(&rx.on_bytes(&[EOT], now)), vec![NAK]);
        let later = rx.deadline().unwrap();
        assert_eq!(later, now + SINGLE_EOT_WAIT);
        let e = rx.on_timeout(later);
        assert!(e.contains(&RxEvent::FileEnd), "{e:?}");
    }

    #[test]
    fn bad_blocks_are_nak_ed_and_duplicates_ack_ed_once() {
        let now = Instant::now();
        let (mut rx, _) = Receiver::start(now);
        rx.on_bytes(&header_block("x", 2000, true), now);
        let mut damaged = encode_block(1, &[7; 1024], true).to_vec();
        damaged[100] ^= 0x40;
        assert_eq!(sends(&rx.on_bytes(&damaged, now)), vec![NAK]);
        let good = encode_block(1, &[7; 1024], true);
        let e = rx.on_bytes(&good, now);
        assert_eq!((data(&e).len(), sends(&e)), (1024, vec![ACK]));
        let e = rx.on_bytes(&good, now);
        assert_eq!((data(&e).len(), sends(&e)), (0, vec![ACK]), "a repeat is dropped");
    }

    #[test]
    fn zrqinit_and_text_before_a_block_are_skipped_and_can_can_aborts() {
        let now = Instant::now();
        let (mut rx, _) = Receiver::start(now);
        let e = rx.on_bytes(b"rz\r**\x18B00000000000000\r\x8a\x11", now);
        assert!(!e.iter().any(|e| matches!(e, RxEvent::Abort(_))), "{e:?}");
        let e = rx.on_bytes(&header_block("ok.bin", 1, true), now);
        assert!(e.contains(&RxEvent::FileStart {
            name: "ok.bin".into(),
            size: Some(1)
        }));
        let e = rx.on_bytes(&[CAN, CAN], now);
        assert!(matches!(e.last(), Some(RxEvent::Abort(_))), "{e:?}");
    }

    #[test]
    fn no_answer_to_c_falls_back_to_checksums() {
        let now = Instant::now();
        let (mut rx, first) = Receiver::start(now);
        assert_eq!(sends(&first), vec![CRC_REQUEST]);
        let mut t = now;
        let mut asked = Vec::new();
        for _ in 0..4 {
            t += BLOCK_TIMEOUT;
            asked.extend(sends(&rx.on_timeout(t)));
        }
        assert_eq!(asked, vec![CRC_REQUEST, CRC_REQUEST, NAK, NAK]);
        let e = rx.on_bytes(&header_block("sum.bin", 5, false), t);
        assert!(
            e.contains(&RxEvent::FileStart {
                name: "sum.bin".into(),
                size: Some(5)
            }),
            "{e:?}"
        );
        let e = rx.on_bytes(&encode_block(1, b"hello", false), t);
        assert_eq!(data(&e), b"hello");
    }

    #[test]
    fn without_a_size_the_padding_of_the_last_block_goes() {
        let now = Instant::now();
        let (mut rx, _) = Receiver::start(now);
        rx.on_bytes(&encode_block(0, b"nosize.txt\0", true), now);
        let mut got = data(&rx.on_bytes(&encode_block(1, &[b'a'; 128], true), now));
        got.extend(data(&rx.on_bytes(&encode_block(2, b"end", true), now)));
        rx.on_bytes(&[EOT], now);
        got.extend(data(&rx.on_bytes(&[EOT], now)));
        let mut want = vec![b'a'; 128];
        want.extend_from_slice(b"end");
        assert_eq!(got, want);
    }

    #[test]
    fn the_sender_waits_for_a_lone_c_and_retries_on_nak() {
        let now = Instant::now();
        let mut tx = Sender::new(
            vec![OutFile {
                name: "f".into(),
                data: Bytes::from_static(b"x"),
            }],
            now,
        );
        // The board's menu mentions "Connect": not a request.
        assert!(tx.on_bytes(b"Connect the cable\r\n", now).is_empty());
        let e = tx.on_bytes(b"\r\nC", now);
        assert!(
            matches!(&e[..], [TxEvent::Send(b)] if b[0] == SOH && b[1] == 0),
            "{e:?}"
        );
        let header = e;
        assert_eq!(tx.on_bytes(&[NAK], now), header, "NAK repeats block 0");
        let e = tx.on_bytes(&[ACK], now);
        assert_eq!(e, vec![TxEvent::FileStart(0)]);
        let e = tx.on_bytes(&[CRC_REQUEST], now);
        assert!(
            matches!(&e[..], [TxEvent::Send(b)] if b[0] == SOH && b[1] == 1),
            "{e:?}"
        );
        for _ in 0..MAX_ERRORS {
            assert!(matches!(tx.on_bytes(&[NAK], now)[..], [TxEvent::Send(_)]));
        }
        let e = tx.on_bytes(&[NAK], now);
        assert!(matches!(e.last(), Some(TxEvent::Abort(_))), "{e:?}");
    }

    #[test]
    fn the_sender_gives_up_when_no_receiver_asks_within_a_minute() {
        let now = Instant::now();
        let mut tx = Sender::new(
            vec![OutFile {
                name: "f".into(),
                data: Bytes::from_static(b"x"),
            }],
            now,
        );
        assert_eq!(tx.deadline(), Some(now + FIRST_C_WAIT));
        let e = tx.on_timeout(now + FIRST_C_WAIT);
        assert!(
            matches!(e.last(), Some(TxEvent::Abort(why)) if why.contains("no C within 60 s")),
            "{e:?}"
        );
    }

    proptest! {
        /// Arbitrary bytes in arbitrary splits: no panic, bounded buffer.
        #[test]
        fn the_receiver_survives_any_bytes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1200), 0..20)) {
            let now = Instant::now();
            let (mut rx, _) = Receiver::start(now);
            for c in chunks {
                rx.on_bytes(&c, now);
                prop_assert!(rx.buf.len() <= 1030);
            }
        }

        #[test]
        fn the_sender_survives_any_bytes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..50)) {
            let now = Instant::now();
            let mut tx = Sender::new(vec![OutFile { name: "f".into(), data: Bytes::from(vec![1u8; 5000]) }], now);
            for c in chunks {
                tx.on_bytes(&c, now);
            }
        }

        /// Any split of a whole transfer's bytes gives the same file.
        #[test]
        fn any_read_split_gives_the_same_file(split in 1usize..700) {
            let now = Instant::now();
            let content: Vec<u8> = (0..2500u32).map(|i| (i * 31) as u8).collect();
            let mut wire = header_block("s.bin", content.len() as u64, true).to_vec();
            for (i, chunk) in content.chunks(1024).enumerate() {
                wire.extend_from_slice(&encode_block(i as u8 + 1, chunk, true));
            }
            wire.extend_from_slice(&[EOT, EOT]);
            let (mut rx, _) = Receiver::start(now);
            let mut got = Vec::new();
            for piece in wire.chunks(split) {
                got.extend(data(&rx.on_bytes(piece, now)));
            }
            prop_assert_eq!(got, content);
        }
    }
}
