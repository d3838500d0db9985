//! A device's connection to the console in the native frame protocol.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use crate::protocol::frames::{
    AckStatus, DEFAULT_MAX_FRAME, Decoded, ERR_BUSY, FrameDecoder, Message, file_data_parts,
};

/// A partial frame that gets no byte for this long is abandoned (as the console does).
const FRAME_STALL: Duration = Duration::from_millis(250);
/// Protocol 1.1's retry rule: a FILE_END or FILE_BEGIN+RESUME without an answer
/// is sent again after this, then after twice as long each time.
const RETRY_FIRST: Duration = Duration::from_secs(2);
/// How long a device waits for the console to answer a HELLO or a FILE_END.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Rewinds (FILE_ACK RESUME) accepted for one file before giving up.
const MAX_REWINDS: u32 = 1000;

/// Reads frames on a task of its own and hands messages over a channel, so a
/// device can send while the console talks.
pub struct FrameLink {
    writer: OwnedWriteHalf,
    incoming: mpsc::Receiver<Message>,
    /// Messages that arrived while a file was being sent, for the next `recv`.
    held: VecDeque<Message>,
    pub max_frame: usize,
    /// The name the console gave this device (its `id`, maybe with `#2`).
    pub name: String,
    /// The protocol version WELCOME announced (`1.0` when it says none).
    pub console_protocol: String,
    /// Bytes this device announced it can have unacknowledged (HELLO `window`).
    pub window: Option<u64>,
    /// Rewinds (FILE_ACK RESUME after lost data) during the last `send_file`.
    pub rewinds: u32,
}

/// How a file transfer ended, as the console's FILE_ACK said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    Saved {
        size: u64,
        path: String,
    },
    Failed {
        status: AckStatus,
        value: u64,
        detail: String,
    },
}

impl FrameLink {
    /// Connects, says HELLO and waits for WELCOME.
    pub async fn connect(
        addr: &str,
        id: &str,
        token: Option<&str>,
        info: &[(&str, &str)],
    ) -> Result<FrameLink, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut reader, writer) = stream.into_split();
        let (tx, incoming) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME * 64);
            let mut buf = BytesMut::new();
            while let Some(decoded) = next_decoded(&mut reader, &mut decoder, &mut buf).await {
                if let Decoded::Frame(frame) = decoded
                    && let Ok(message) = Message::from_frame(frame)
                    && tx.send(message).await.is_err()
                {
                    return;
                }
            }
        });
        let mut link = FrameLink {
            writer,
            incoming,
            held: VecDeque::new(),
            max_frame: DEFAULT_MAX_FRAME,
            name: id.to_string(),
            console_protocol: "1.0".into(),
            window: info
                .iter()
                .find(|(k, _)| *k == "window")
                .and_then(|(_, v)| v.parse().ok())
                .filter(|&w: &u64| w > 0),
            rewinds: 0,
        };
        let mut hello = vec![("id".to_string(), id.to_string())];
        if let Some(token) = token {
            hello.push(("token".into(), token.into()));
        }
        hello.extend(info.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        link.send(&Message::Hello(hello))
            .await
            .map_err(|e| format!("cannot send HELLO: {e}"))?;
        loop {
            match tokio::time::timeout(ANSWER_TIMEOUT, link.incoming.recv()).await {
                Err(_) => {
                    return Err(format!(
                        "{addr} did not answer HELLO within {} s",
                        ANSWER_TIMEOUT.as_secs()
                    ));
                }
                Ok(None) => {
                    return Err(format!(
                        "{addr} closed the connection after HELLO (wrong --token?)"
                    ));
                }
                Ok(Some(Message::Welcome(pairs))) => {
                    for (k, v) in pairs {
                        match k.as_str() {
                            "max_frame" => link.max_frame = v.parse().unwrap_or(DEFAULT_MAX_FRAME),
                            "name" => link.name = v,
                            "protocol" => link.console_protocol = v,
                            _ => {}
                        }
                    }
                    return Ok(link);
                }
                Ok(Some(Message::Error { code, .. })) if code == ERR_BUSY => {
                    return Err(format!(
                        "the console at {addr} refused the connection: too many connections; try again later"
                    ));
                }
                Ok(Some(Message::Error { code, message })) => {
                    return Err(format!("{addr} refused the device: error {code}: {message}"));
                }
                Ok(Some(other)) => link.held.push_back(other),
            }
        }
    }

    pub async fn send(&mut self, message: &Message) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        message.encode(&mut out);
        self.writer.write_all(&out).await
    }

    /// The next message from the console; None once it has gone.
    pub async fn recv(&mut self) -> Option<Message> {
        if let Some(m) = self.held.pop_front() {
            return Some(m);
        }
        self.incoming.recv().await
    }

    /// The window in force: the one announced in HELLO, if the console speaks 1.1
    /// (a 1.0 console sends no PROGRESS, and waiting for one would stall).
    fn window(&self) -> Option<u64> {
        self.window.filter(|_| self.console_protocol.as_str() >= "1.1")
    }

    /// Sends a file with FILE_BEGIN / FILE_DATA / FILE_END, following the console's
    /// FILE_ACK RESUME (a resume, or a rewind to repair lost data) until it answers
    /// SAVED or a failure. With a window, at most that many bytes of FILE_DATA
    /// payload are sent beyond the console's last PROGRESS (or RESUME).
    pub async fn send_file(
        &mut self,
        file_id: u32,
        path: &Path,
        name: &str,
        resume: bool,
    ) -> Result<FileOutcome, String> {
        let shown = path.display();
        let opened = {
            let path = path.to_path_buf();
            tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(path)?;
                let size = file.metadata()?.len();
                Ok::<_, std::io::Error>((file, size))
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
        };
        let (file, size) = opened.map_err(|e| format!("cannot open {shown}: {e}"))?;
        let file = std::sync::Arc::new(file);
        let io = |e: std::io::Error| format!("connection lost while sending {name}: {e}");
        let begin = Message::FileBegin {
            file_id,
            size: Some(size),
            name: name.to_string(),
            resume,
        };
        self.send(&begin).await.map_err(io)?;
        let mut offset = 0u64;
        let mut last_rewind: Option<u64> = None;
        if resume {
            match self.wait_ack_retrying(file_id, &begin).await? {
                Message::FileAck {
                    status: AckStatus::Resume,
                    value,
                    ..
                } => {
                    offset = value.min(size);
                    // The same answer to a FILE_BEGIN sent again is not a rewind.
                    last_rewind = Some(value);
                }
                other => return Ok(outcome_of(other)),
            }
        }
        let window = self.window();
        // Frame payload: file_id + offset + data within max_frame, and with a
        // window half of it, so one chunk is in flight while the next is acked.
        let mut chunk_len = (self.max_frame.saturating_sub(12)).clamp(1, 256 * 1024);
        if let Some(w) = window {
            chunk_len = chunk_len.min((w / 2).max(1) as usize);
        }
        // Contiguous bytes the console said it holds (PROGRESS or RESUME).
        let mut acked = offset;
        let mut ahead = ReadAhead::start(file.clone(), offset, size, chunk_len)
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        let mut rewinds = Rewinds(0);
        self.rewinds = 0;
        // The whole file's CRC-32, computed as the data goes out (each byte once,
        // in order; a rewind re-sends bytes already counted). A resume starts
        // past bytes never read here: those are counted first.
        let mut crc = crc32fast::Hasher::new();
        let mut counted = 0u64;
        if offset > 0 {
            crc = file_crc32_prefix(path, offset)
                .await
                .map_err(|e| format!("cannot read {shown}: {e}"))?;
            counted = offset;
        }
        loop {
            // Answers that arrived meanwhile: progress, a rewind, or the end of this file.
            let mut waited = false;
            loop {
                let want = chunk_len.min(size.saturating_sub(offset) as usize) as u64;
                let blocked = window.is_some_and(|w| offset < size && offset + want > acked + w);
                let message = if blocked && !waited {
                    // Wait for the console to catch up; after a while without a word
                    // (a lost PROGRESS), send anyway: the window is a courtesy.
                    waited = true;
                    match tokio::time::timeout(RETRY_FIRST, self.incoming.recv()).await {
                        Ok(Some(m)) => m,
                        Ok(None) => return Err("the console closed the connection".into()),
                        Err(_) => break,
                    }
                } else {
                    match self.incoming.try_recv() {
                        Ok(m) => m,
                        Err(_) => break,
                    }
                };
                match message {
                    Message::FileAck {
                        file_id: id,
                        status: AckStatus::Progress,
                        value,
                        ..
                    } if id == file_id => {
                        acked = acked.max(value.min(size));
                        waited = false;
                    }
                    Message::FileAck {
                        file_id: id,
                        status: AckStatus::Resume,
                        value,
                        ..
                    } if id == file_id => {
                        // A repeat of the rewind under way (the console also answers a
                        // FILE_END sent before we saw its first request) is not a new one.
                        if last_rewind == Some(value) {
                            continue;
                        }
                        offset = rewinds.rewind(value, size, name)?;
                        self.rewinds = rewinds.0;
                        acked = offset;
                        last_rewind = Some(value);
                        waited = false;
                    }
                    m @ Message::FileAck { file_id: id, .. } if id == file_id => {
                        return Ok(outcome_of(m));
                    }
                    other => self.held.push_back(other),
                }
            }
            if offset < size {
                let data = ahead
                    .chunk_at(&file, offset, size, chunk_len)
                    .await
                    .map_err(|e| format!("cannot read {shown}: {e}"))?;
                let end = offset + data.len() as u64;
                // The chunk's CRC-32 serves the frame and the whole file's.
                let mut data_crc = crc32fast::Hasher::new();
                data_crc.update(&data);
                if counted == offset {
                    crc.combine(&data_crc);
                    counted = end;
                } else if (offset..end).contains(&counted) {
                    // After a rewind to before what was counted: only the rest.
                    crc.update(&data[(counted - offset) as usize..]);
                    counted = end;
                }
                // Header, data, trailer: the chunk goes out without another copy.
                let (head, tail) = file_data_parts(file_id, offset, &data, &data_crc);
                write_all_vectored(&mut self.writer, &[&head[..], &data, &tail[..]])
                    .await
                    .map_err(io)?;
                ahead.give_back(data);
                offset = end;
                continue;
            }
            let crc32 = if counted == size {
                crc.clone().finalize()
            } else {
                // Only if the console moved us past bytes we never sent (it should not).
                file_crc32_prefix(path, size)
                    .await
                    .map_err(|e| format!("cannot read {shown}: {e}"))?
                    .finalize()
            };
            let end = Message::FileEnd { file_id, crc32 };
            self.send(&end).await.map_err(io)?;
            match self.wait_ack_retrying(file_id, &end).await? {
                Message::FileAck {
                    status: AckStatus::Resume,
                    value,
                    ..
                } => {
                    // An answer to our FILE_END: always a rewind to follow.
                    offset = rewinds.rewind(value, size, name)?;
                    self.rewinds = rewinds.0;
                    acked = offset;
                    last_rewind = Some(value);
                }
                other => return Ok(outcome_of(other)),
            }
        }
    }

    /// Waits for this file's next FILE_ACK other than PROGRESS, keeping anything
    /// else for `recv`. Protocol 1.1's retry rule: when no answer comes within
    /// 2 s, then 4, 8 and 16 s, `request` (a FILE_END or FILE_BEGIN+RESUME, which
    /// the console always answers and which are safe to repeat) is sent again.
    async fn wait_ack_retrying(&mut self, file_id: u32, request: &Message) -> Result<Message, String> {
        let mut wait = RETRY_FIRST;
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(format!(
                    "no answer from the console within {} s",
                    ANSWER_TIMEOUT.as_secs()
                ));
            }
            let until = (now + wait).min(deadline);
            match tokio::time::timeout_at(until, self.incoming.recv()).await {
                Err(_) => {
                    self.send(request)
                        .await
                        .map_err(|e| format!("connection lost: {e}"))?;
                    wait *= 2;
                }
                Ok(None) => return Err("the console closed the connection".into()),
                Ok(Some(Message::FileAck {
                    file_id: id,
                    status: AckStatus::Progress,
                    ..
                })) if id == file_id => {}
                Ok(Some(m @ Message::FileAck { file_id: id, .. })) if id == file_id => {
                    return Ok(m);
                }
                Ok(Some(Message::Error { code, message })) => {
                    return Err(format!("the console said error {code}: {message}"));
                }
                Ok(Some(other)) => self.held.push_back(other),
            }
        }
    }
}

fn outcome_of(message: Message) -> FileOutcome {
    match message {
        Message::FileAck {
            status: AckStatus::Saved,
            value,
            detail,
            ..
        } => FileOutcome::Saved {
            size: value,
            path: detail,
        },
        Message::FileAck {
            status,
            value,
            detail,
            ..
        } => FileOutcome::Failed {
            status,
            value,
            detail,
        },
        other => FileOutcome::Failed {
            status: AckStatus::Other(255),
            value: 0,
            detail: format!("unexpected answer: {other:?}"),
        },
    }
}

/// Counts the console's requests to rewind a file, so a hopeless link gives up.
struct Rewinds(u32);

impl Rewinds {
    /// The offset to continue from, or an error once there have been too many.
    fn rewind(&mut self, to: u64, size: u64, name: &str) -> Result<u64, String> {
        self.0 += 1;
        if self.0 > MAX_REWINDS {
            return Err(format!(
                "{name}: the console asked to rewind {MAX_REWINDS} times; giving up"
            ));
        }
        Ok(to.min(size))
    }
}

/// Writes the parts as one frame: one `writev` where possible, so a header does
/// not leave as a tiny packet of its own (the socket has TCP_NODELAY).
async fn write_all_vectored(writer: &mut OwnedWriteHalf, parts: &[&[u8]]) -> std::io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0;
    while done < total {
        let mut skip = done;
        let mut slices = Vec::with_capacity(parts.len());
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            slices.push(std::io::IoSlice::new(&part[skip..]));
            skip = 0;
        }
        let n = writer.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}

/// CRC-32 state over the first `len` bytes of a file.
async fn file_crc32_prefix(path: &Path, len: u64) -> std::io::Result<crc32fast::Hasher> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(path)?;
        let mut reader = std::io::Read::take(file, len);
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut reader, &mut buf)?;
            if n == 0 {
                return Ok(hasher);
            }
            hasher.update(&buf[..n]);
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

/// A file read ahead on a thread of its own, in chunks, from an offset: the
/// sender takes the next chunk without a hand-off to tokio's blocking pool for
/// every seek and read (which cost a quarter of `benchlink send`'s time).
struct ReadAhead {
    chunks: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    /// Chunks already sent, back to the reader to be filled again: zeroing a
    /// fresh 256 KiB buffer for every chunk cost 5% of the sender's time.
    spent: std::sync::mpsc::Sender<Vec<u8>>,
    /// Where the next chunk starts.
    offset: u64,
}

/// Chunks read ahead of the socket.
const READ_AHEAD_CHUNKS: usize = 4;

impl ReadAhead {
    /// Fails only when no thread can be started (the process is at its limit).
    fn start(
        file: std::sync::Arc<std::fs::File>,
        offset: u64,
        size: u64,
        chunk: usize,
    ) -> std::io::Result<ReadAhead> {
        let (tx, chunks) = mpsc::channel(READ_AHEAD_CHUNKS);
        // At most READ_AHEAD_CHUNKS + 2 buffers ever go round.
        let (spent, reuse) = std::sync::mpsc::channel::<Vec<u8>>();
        let reader = std::thread::Builder::new().name("read-ahead".into());
        reader.spawn(move || {
            use std::os::unix::fs::FileExt;
            let mut at = offset;
            while at < size {
                let want = chunk.min((size - at) as usize);
                let mut buf = reuse.try_recv().unwrap_or_default();
                buf.resize(want, 0); // zeroes only bytes the buffer never had
                let read = file.read_exact_at(&mut buf, at).map(|()| buf);
                let failed = read.is_err();
                // The sender is gone (done, or rewound to elsewhere): stop.
                if tx.blocking_send(read).is_err() || failed {
                    return;
                }
                at += want as u64;
            }
        })?;
        Ok(ReadAhead {
            chunks,
            spent,
            offset,
        })
    }

    /// A chunk that went out, for the reader to fill again.
    fn give_back(&self, chunk: Vec<u8>) {
        let _ = self.spent.send(chunk);
    }

    /// The chunk at `offset`; a rewind (another offset) starts reading there.
    async fn chunk_at(
        &mut self,
        file: &std::sync::Arc<std::fs::File>,
        offset: u64,
        size: u64,
        chunk: usize,
    ) -> std::io::Result<Vec<u8>> {
        if offset != self.offset {
            *self = ReadAhead::start(file.clone(), offset, size, chunk)?;
        }
        let data = self
            .chunks
            .recv()
            .await
            .unwrap_or_else(|| Err(std::io::Error::other("the file reader stopped")))?;
        self.offset = offset + data.len() as u64;
        Ok(data)
    }
}

/// The next decoded frame from the console, or None once the connection is gone.
async fn next_decoded(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    decoder: &mut FrameDecoder,
    buf: &mut BytesMut,
) -> Option<Decoded> {
    loop {
        if let Some(d) = decoder.decode(buf) {
            return Some(d);
        }
        buf.reserve(64 * 1024);
        let read = if decoder.holds_partial(buf) {
            // A partial frame that stops arriving lost bytes on the way: give it
            // up and look for the frames after it (read_buf is cancel-safe).
            match tokio::time::timeout(FRAME_STALL, reader.read_buf(buf)).await {
                Ok(read) => read,
                Err(_) => {
                    decoder.abandon_partial(buf);
                    continue;
                }
            }
        } else {
            reader.read_buf(buf).await
        };
        match read {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A console that asks for a rewind in the middle of a file and checks the
    /// FILE_END CRC against the bytes it kept.
    async fn rewinding_console(listener: TcpListener, rewind_at_frame: usize) -> (Vec<u8>, u32) {
        let (stream, _) = listener.accept().await.expect("accept");
        let (mut reader, mut writer) = stream.into_split();
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut buf = BytesMut::new();
        let mut held = Vec::new();
        let mut data_frames = 0;
        let mut size = 0;
        let mut out = BytesMut::new();
        while let Some(Decoded::Frame(frame)) = next_decoded(&mut reader, &mut decoder, &mut buf).await {
            out.clear();
            match Message::from_frame(frame).expect("valid") {
                Message::Hello(_) => {
                    Message::Welcome(vec![("max_frame".into(), "4096".into())]).encode(&mut out)
                }
                Message::FileBegin { size: s, .. } => size = s.unwrap_or(0) as usize,
                Message::FileData { offset, data, .. } => {
                    data_frames += 1;
                    if offset as usize == held.len() {
                        held.extend_from_slice(&data);
                    }
                    if data_frames == rewind_at_frame {
                        // Pretend everything after 1000 bytes was lost.
                        held.truncate(1000);
                        let rewind = Message::FileAck {
                            file_id: 1,
                            status: AckStatus::Resume,
                            value: 1000,
                            detail: "gap".into(),
                        };
                        rewind.encode(&mut out);
                    }
                }
                // Like the console: a FILE_END while a rewind is on its way is ignored.
                Message::FileEnd { .. } if held.len() < size => {}
                Message::FileEnd { crc32, .. } => {
                    let saved = Message::FileAck {
                        file_id: 1,
                        status: AckStatus::Saved,
                        value: held.len() as u64,
                        detail: "x".into(),
                    };
                    saved.encode(&mut out);
                    writer.write_all(&out).await.expect("write");
                    return (held, crc32);
                }
                _ => {}
            }
            writer.write_all(&out).await.expect("write");
        }
        panic!("the device went away");
    }

    #[tokio::test]
    async fn a_rewind_mid_file_resends_from_there_and_the_crc_covers_the_whole_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.bin");
        let content: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::write(&path, &content).expect("write");
        for rewind_at in [2, 5, 13] {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr").to_string();
            let console = tokio::spawn(rewinding_console(listener, rewind_at));
            let mut link = FrameLink::connect(&addr, "t", None, &[]).await.expect("connect");
            assert_eq!(link.max_frame, 4096);
            let outcome = link.send_file(1, &path, "f.bin", false).await.expect("sent");
            assert!(matches!(outcome, FileOutcome::Saved { .. }), "{outcome:?}");
            let (held, crc) = console.await.expect("console");
            assert!(
                held == content,
                "rewind at frame {rewind_at}: {} of {} bytes",
                held.len(),
                content.len()
            );
            assert_eq!(crc, crc32fast::hash(&content));
        }
    }
}
