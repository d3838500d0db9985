//! A raw native-frame device for the integration tests: a TcpStream, the crate's own
//! FrameDecoder and helpers to send each message and read the console's answers.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use benchlink::protocol::frames::{AckStatus, Decoded, FrameDecoder, HEADER_LEN, Message};
use bytes::{Bytes, BytesMut};

use super::{WAIT, WAIT_FILE};

/// The wire form of one message.
pub fn wire(m: &Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    m.encode(&mut out);
    out.to_vec()
}

/// The wire form with one payload byte flipped: the header (and so `len`) stays
/// valid, the payload CRC fails, and the receiver drops the whole frame.
pub fn damaged(m: &Message) -> Vec<u8> {
    let mut w = wire(m);
    let last_payload_byte = w.len() - 5;
    assert!(last_payload_byte >= HEADER_LEN, "needs a payload to damage");
    w[last_payload_byte] ^= 0xFF;
    w
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub file_id: u32,
    pub status: AckStatus,
    pub value: u64,
    pub detail: String,
}

pub fn as_ack(m: &Message) -> Option<Ack> {
    match m {
        Message::FileAck {
            file_id,
            status,
            value,
            detail,
        } => Some(Ack {
            file_id: *file_id,
            status: *status,
            value: *value,
            detail: detail.clone(),
        }),
        _ => None,
    }
}

pub enum Got {
    Msg(Message),
    Timeout,
    Closed,
}

pub struct Dev {
    pub stream: TcpStream,
    decoder: FrameDecoder,
    buf: BytesMut,
    eof: bool,
    local: SocketAddr,
    pings: u64,
}

impl Dev {
    pub fn connect(addr: SocketAddr) -> Dev {
        Self::from_stream(TcpStream::connect_timeout(&addr, WAIT).unwrap())
    }

    pub fn from_stream(stream: TcpStream) -> Dev {
        stream.set_nodelay(true).unwrap();
        let local = stream.local_addr().unwrap();
        Dev {
            stream,
            decoder: FrameDecoder::default(),
            buf: BytesMut::new(),
            eof: false,
            local,
            pings: 0,
        }
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    pub fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes).unwrap();
    }

    pub fn send(&mut self, m: &Message) {
        self.send_raw(&wire(m));
    }

    /// The next message from the console, waiting up to `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Got {
        let deadline = Instant::now() + timeout;
        let mut tmp = vec![0u8; 64 * 1024];
        loop {
            match self.decoder.decode(&mut self.buf) {
                Some(Decoded::Frame(f)) => {
                    return Got::Msg(Message::from_frame(f).expect("the console sent a malformed payload"));
                }
                Some(other) => panic!("the console sent a broken frame: {other:?}"),
                None => {}
            }
            if self.eof {
                return Got::Closed;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Got::Timeout;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut tmp) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.eof = true, // reset: as good as closed
            }
        }
    }

    pub fn recv(&mut self, timeout: Duration) -> Message {
        match self.next(timeout) {
            Got::Msg(m) => m,
            Got::Timeout => panic!("no frame from the console within {timeout:?}"),
            Got::Closed => panic!("the console closed the connection"),
        }
    }

    /// The next message, which must be a FILE_ACK.
    pub fn ack(&mut self, timeout: Duration) -> Ack {
        let m = self.recv(timeout);
        as_ack(&m).unwrap_or_else(|| panic!("expected FILE_ACK, got {m:?}"))
    }

    /// Sends HELLO and returns WELCOME's pairs.
    pub fn hello(&mut self, id: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut pairs = vec![("id".to_string(), id.to_string())];
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.send(&Message::Hello(pairs));
        match self.recv(WAIT) {
            Message::Welcome(pairs) => pairs,
            other => panic!("expected WELCOME, got {other:?}"),
        }
    }

    /// Sends a PING and returns everything the console sent before its PONG. The
    /// console handles frames in order, so this is all it answered to what went before.
    pub fn sync(&mut self) -> Vec<Message> {
        self.sync_within(WAIT)
    }

    pub fn sync_within(&mut self, timeout: Duration) -> Vec<Message> {
        self.pings += 1;
        let token = format!("sync-{}", self.pings).into_bytes();
        self.send(&Message::Ping(Bytes::from(token.clone())));
        let mut before = Vec::new();
        loop {
            match self.recv(timeout) {
                Message::Pong(p) if p[..] == token[..] => return before,
                other => before.push(other),
            }
        }
    }

    /// Everything the console sends until it closes; panics if it stays open.
    pub fn until_closed(&mut self, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Got::Msg(m) => got.push(m),
                Got::Closed => return got,
                Got::Timeout => panic!("still open after {timeout:?}; received {got:?}"),
            }
        }
    }

    pub fn begin(&mut self, file_id: u32, size: Option<u64>, name: &str, resume: bool) {
        self.send(&Message::FileBegin {
            file_id,
            size,
            name: name.to_string(),
            resume,
        });
    }

    pub fn data(&mut self, file_id: u32, offset: u64, data: &[u8]) {
        self.send(&Message::FileData {
            file_id,
            offset,
            data: Bytes::copy_from_slice(data),
        });
    }

    pub fn end(&mut self, file_id: u32, crc32: u32) {
        self.send(&Message::FileEnd { file_id, crc32 });
    }

    /// FILE_DATA frames of `chunk` bytes for `data`, the first at `from`.
    pub fn data_from(&mut self, file_id: u32, data: &[u8], from: usize, chunk: usize) {
        let mut offset = from;
        while offset < data.len() {
            let n = chunk.min(data.len() - offset);
            self.data(file_id, offset as u64, &data[offset..offset + n]);
            offset += n;
        }
    }

    /// BEGIN, DATA..., END for a whole file, then the console's FILE_ACK.
    pub fn upload(&mut self, file_id: u32, name: &str, data: &[u8]) -> Ack {
        self.begin(file_id, Some(data.len() as u64), name, false);
        self.data_from(file_id, data, 0, 16 * 1024);
        self.end(file_id, crc32fast::hash(data));
        self.ack(WAIT_FILE)
    }
}
