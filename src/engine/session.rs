//! One connected device: reads its bytes, runs them through its protocol's codec,
//! turns the codec's messages into events, files and conversation lines, and sends
//! the operator's commands to it.

mod frames;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::event::{ConnId, Direction, EventKind};
use super::journal::ReceivedRecord;
use super::link::{LinkStream, Peer};
use super::registry::{SessionCommand, Stats};
use super::safe_fs;
use super::sink::{self, Finished, PartFile, place};
use super::{Event, Shared};
use crate::protocol::cf::{CfDecoder, CfMessage};
use crate::protocol::lines::LineDecoder;
use crate::protocol::sniff::{Completeness, FileKind, HEAD_LEN, HeadTail};
use crate::protocol::{Detected, LineEnding, ListenProtocol, detect_first_bytes};
use crate::text::from_device;

/// Read size while texts arrive; also what one cf message can be at most.
const READ_SMALL: usize = 16 * 1024;
/// Read size while a file arrives: large reads keep the data path near copy speed.
const READ_LARGE: usize = 256 * 1024;
/// An unterminated line is shown after this much silence.
const PARTIAL_LINE_IDLE: Duration = Duration::from_millis(200);
/// `file_progress` at most this often per transfer.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Keepalive probes start after this much silence and repeat at this interval.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// A device that does not read its commands for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the console tries to tell a frames device why it closes the connection.
const BYE_WITHIN: Duration = Duration::from_secs(1);

/// A device link, opened and ready for a session.
pub(super) struct Opened {
    pub stream: LinkStream,
    pub peer: Peer,
    /// The name the device gets until it names itself: an IP, an alias, a port.
    pub base: String,
    /// A link that reconnects keeps its connection number, so front ends keep its
    /// row and conversation.
    pub conn: Option<ConnId>,
    /// Ends this session alone (`/close` of its link); a child of the engine's.
    pub cancel: CancellationToken,
    /// An auto listener greets a silent device as cf after `--auto-delay-ms`;
    /// serial ports and outgoing links greet nothing and wait for the device.
    pub auto_cf: bool,
    /// Closed after this much silence (UDP sources), else `--idle-timeout`.
    pub idle: Option<Duration>,
}

impl Opened {
    /// An accepted TCP connection, named after its address (or its alias).
    pub fn accepted(shared: &Shared, stream: TcpStream, peer: SocketAddr) -> Self {
        tune_tcp(&stream);
        // On a dual-stack listener IPv4 boards arrive as ::ffff:a.b.c.d; name them a.b.c.d.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        Self {
            stream: LinkStream::tcp(stream),
            base: shared.name_for(peer.ip()),
            peer: Peer::Net(peer),
            conn: None,
            cancel: shared.cancel.child_token(),
            auto_cf: true,
            idle: None,
        }
    }
}

/// Commands go out at once (no Nagle delay), and a board that loses power,
/// which never closes its connection, is noticed by keepalive.
pub(super) fn tune_tcp(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

/// How a session ended, as far as its link cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ended {
    /// The console stops, or the operator closed the link: no retry.
    Stopped,
    /// The device went away or failed: a link retries.
    Gone(String),
}

/// Runs a device session to its end; returns how it ended and the name the
/// device had last (a HELLO may have renamed it).
pub(super) async fn run(
    shared: Arc<Shared>,
    opened: Opened,
    listen: ListenProtocol,
    _permit: Option<OwnedSemaphorePermit>,
) -> (Ended, String) {
    let Opened {
        stream,
        peer,
        base,
        conn,
        cancel,
        auto_cf,
        idle,
    } = opened;
    let (tx, commands) = mpsc::channel(16);
    let stats = Arc::new(Stats::default());
    let base = super::names::device_folder(&base);
    let (conn, device) = shared
        .registry()
        .register(peer.clone(), &base, conn, tx, stats.clone());
    let mut guard = Registration {
        shared: shared.clone(),
        conn,
        device: device.clone(),
        closed: false,
    };
    let mut session = Session {
        folder: shared.settings.dir.join(&device),
        shared,
        stream,
        cancel,
        auto_cf,
        idle,
        conn,
        device,
        peer,
        stats,
        commands,
        mode: Mode::Undecided,
        protocol: "auto",
        announced: false,
        buf: BytesMut::new(),
        partial_since: None,
        cf_file: CfFile::None,
        last_heard: Instant::now(),
        eol: None,
        wire_in: BytesMut::new(),
    };
    let end = session.serve(listen).await;
    let ended = match &end {
        End::Stopped | End::Closed => Ended::Stopped,
        other => Ended::Gone(other.reason()),
    };
    // Boxed: rare, large futures must not size every idle connection's task.
    Box::pin(session.close(end)).await;
    guard.closed = true;
    (ended, session.device)
}

/// Removes the device from the registry however the session ends, a panic included.
struct Registration {
    shared: Arc<Shared>,
    conn: ConnId,
    device: String,
    closed: bool,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let was_announced = self
            .shared
            .registry()
            .remove(self.conn)
            .is_some_and(|d| d.announced);
        if !self.closed && was_announced {
            self.shared.events.send(Event::now(EventKind::Disconnected {
                conn: self.conn,
                device: self.device.clone(),
                reason: "internal error in this connection's session".into(),
                bytes_in: 0,
                bytes_out: 0,
            }));
        }
    }
}

enum Mode {
    Undecided,
    Lines(LineDecoder),
    Cf(CfDecoder),
    Frames(Box<frames::FramesState>),
}

/// Why a session ended.
enum End {
    DeviceClosed,
    /// The device closed with unread data: its stack sends a reset and drops what
    /// it had not sent yet.
    DeviceReset,
    Kicked,
    Stopped,
    /// The operator closed this link (`/close`).
    Closed,
    Failed(String),
    /// A native-frame device said BYE.
    Goodbye(String),
    /// A new connection presented this device's id and takes its name over;
    /// `done` is dropped once the name is free.
    Replaced {
        by: Peer,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
    /// Closed to make room for a new connection: it had never sent a byte.
    Evicted,
    /// Silent for `--idle-timeout`.
    Idle(Duration),
}

impl End {
    fn reason(&self) -> String {
        match self {
            End::DeviceClosed => "closed by the device".into(),
            End::DeviceReset => "closed by the device (reset)".into(),
            End::Goodbye(why) if why.is_empty() => "the device said goodbye".into(),
            End::Goodbye(why) => {
                format!("the device said goodbye: {}", from_device(why.as_bytes()))
            }
            End::Kicked => "disconnected by the operator".into(),
            End::Stopped => "the console stopped".into(),
            End::Closed => "closed by the operator (/close)".into(),
            End::Failed(why) => why.clone(),
            End::Replaced { by, .. } => format!("replaced by a new connection from {by}"),
            End::Evicted => {
                "closed to make room for a new connection: it had sent nothing (--max-connections)".into()
            }
            End::Idle(after) => format!("silent for {} (--idle-timeout)", humantime_short(*after)),
        }
    }

    /// What the console says in BYE before it closes a frames connection (1.1), so
    /// the device can tell a decision from a fault; None when the device ended it.
    fn bye(&self) -> Option<String> {
        match self {
            End::Kicked => Some("kicked by the operator".into()),
            End::Stopped => Some("console stopping".into()),
            End::Closed => Some("closed by the operator".into()),
            End::Replaced { by, .. } => Some(format!("replaced by a new connection from {by}")),
            End::Evicted => Some("too many connections; this one had sent nothing".into()),
            End::Idle(after) => Some(format!("idle for {}", humantime_short(*after))),
            _ => None,
        }
    }
}

/// A cf file: its bytes run until the connection closes.
enum CfFile {
    None,
    /// Marker seen; waiting for enough bytes to tell the format (and so the name).
    Pending {
        chunks: Vec<Bytes>,
        len: usize,
        started: Instant,
    },
    // Boxed: every idle session holds a CfFile, most of them None.
    Active(Box<Transfer>),
    /// Failed (disk error, too large): the rest of the stream is read and dropped.
    Discarding,
}

struct Transfer {
    part: PartFile,
    name: String,
    started: Instant,
    last_progress: Instant,
    /// First and last bytes, for judging a cf file that ends with the connection.
    observed: HeadTail,
    /// Announced size (native frames), for progress and the end check.
    size: Option<u64>,
}

impl Transfer {
    fn new(part: PartFile, name: String, size: Option<u64>, started: Instant) -> Self {
        Self {
            part,
            name,
            started,
            last_progress: Instant::now(),
            observed: HeadTail::default(),
            size,
        }
    }
}

struct Session {
    shared: Arc<Shared>,
    stream: LinkStream,
    /// This session's stop: the engine's, or its link's `/close`.
    cancel: CancellationToken,
    auto_cf: bool,
    idle: Option<Duration>,
    conn: ConnId,
    device: String,
    folder: PathBuf,
    peer: Peer,
    stats: Arc<Stats>,
    commands: mpsc::Receiver<SessionCommand>,
    mode: Mode,
    protocol: &'static str,
    announced: bool,
    buf: BytesMut,
    /// When the unterminated line in the line decoder last grew.
    partial_since: Option<Instant>,
    cf_file: CfFile,
    /// When the device last sent a byte (or connected): for `--idle-timeout`.
    last_heard: Instant,
    /// The operator's `/eol` for this device, over `--line-ending`.
    eol: Option<LineEnding>,
    /// Text bytes as read (terminators included), handed to front ends with the
    /// next text event for a hex view; bounded by [`WIRE_KEPT`].
    wire_in: BytesMut,
}

/// Bytes of raw text kept for the next text event.
const WIRE_KEPT: usize = 64 * 1024;

impl Session {
    async fn serve(&mut self, listen: ListenProtocol) -> End {
        let mut auto_deadline = None;
        let started = match listen {
            ListenProtocol::Frames => {
                self.start_frames();
                Ok(())
            }
            ListenProtocol::Auto => {
                auto_deadline = self
                    .auto_cf
                    .then(|| Instant::now() + self.shared.settings.auto_delay);
                Ok(())
            }
            ListenProtocol::Cf => Box::pin(self.start_cf(false)).await,
            ListenProtocol::Lines => {
                self.start_lines().await;
                Ok(())
            }
        };
        if let Err(end) = started {
            return end;
        }
        loop {
            let partial_deadline = self.partial_since.map(|t| t + PARTIAL_LINE_IDLE);
            // A frame device that never completes a frame would hold a connection
            // slot unseen (it is listed only once identified): it gets a deadline.
            let identify_deadline = match &self.mode {
                Mode::Frames(state) if !self.announced => Some(state.started + frames::IDENTIFY_WITHIN),
                _ => None,
            };
            let stall_deadline = match &self.mode {
                Mode::Frames(state) if state.holds_partial(&self.buf) => {
                    Some(self.last_heard + frames::FRAME_STALL)
                }
                _ => None,
            };
            let idle_timeout = self.idle.or(self.shared.settings.idle_timeout);
            let idle_deadline = idle_timeout.map(|t| self.last_heard + t);
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    return if self.shared.cancel.is_cancelled() { End::Stopped } else { End::Closed };
                }
                command = self.commands.recv() => match command {
                    Some(SessionCommand::Send(text)) => {
                        if let Err(end) = Box::pin(self.send_command(&text)).await {
                            return end;
                        }
                    }
                    Some(SessionCommand::Kick) | None => return End::Kicked,
                    Some(SessionCommand::Replace { by, done }) => {
                        return End::Replaced { by, done: Some(done) };
                    }
                    Some(SessionCommand::Evict) => return End::Evicted,
                    Some(SessionCommand::SendBytes(bytes)) => {
                        if let Err(end) = Box::pin(self.send_bytes(&bytes)).await {
                            return end;
                        }
                    }
                    Some(SessionCommand::SetEol(eol)) => self.eol = Some(eol),
                },
                ready = self.stream.readable() => {
                    if let Err(e) = ready {
                        return End::Failed(format!("connection error: {e}"));
                    }
                    // A device that never stops sending garbage keeps this branch ready:
                    // the deadline is checked here too, not only by its own timer.
                    if identify_deadline.is_some_and(|d| Instant::now() >= d) {
                        return self.unidentified().await;
                    }
                    match self.read_once() {
                        Ok(None) => {}
                        Ok(Some(0)) => return End::DeviceClosed,
                        Ok(Some(_)) => {
                            // Boxed so the idle task stays small (10,000 devices).
                            if let Err(end) = Box::pin(self.on_readable()).await {
                                return end;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return End::DeviceReset,
                        Err(e) => return End::Failed(format!("connection error: {e}")),
                    }
                }
                _ = sleep_until(auto_deadline.unwrap_or(far)), if auto_deadline.is_some() => {
                    auto_deadline = None;
                    if matches!(self.mode, Mode::Undecided) {
                        if self.shared.settings.token.is_some() {
                            return Box::pin(self.refuse_unauthenticated("cf")).await;
                        }
                        if let Err(end) = Box::pin(self.start_cf(true)).await {
                            return end;
                        }
                    }
                }
                _ = sleep_until(identify_deadline.unwrap_or(far)), if identify_deadline.is_some() => {
                    return self.unidentified().await;
                }
                _ = sleep_until(stall_deadline.unwrap_or(far)), if stall_deadline.is_some() => {
                    if let Err(end) = Box::pin(self.abandon_partial_frame()).await {
                        return end;
                    }
                }
                _ = sleep_until(idle_deadline.unwrap_or(far)), if idle_deadline.is_some() => {
                    return End::Idle(idle_timeout.unwrap_or_default());
                }
                _ = sleep_until(partial_deadline.unwrap_or(far)), if partial_deadline.is_some() => {
                    Box::pin(self.flush_partial_line()).await;
                }
            }
        }
    }

    /// A frame device that sent no complete frame in time: said, and closed.
    async fn unidentified(&mut self) -> End {
        let why = format!(
            "sent no complete frame within {} s of connecting",
            frames::IDENTIFY_WITHIN.as_secs()
        );
        let message = format!("closed the connection from {}: it {why}", self.peer);
        self.shared.emit(EventKind::Error { message }).await;
        End::Failed(why)
    }

    /// One non-blocking read into the session's buffer. `Ok(None)`: a spurious
    /// wake-up; `Ok(Some(0))`: the device closed.
    fn read_once(&mut self) -> io::Result<Option<usize>> {
        let busy =
            !matches!(self.cf_file, CfFile::None) || matches!(&self.mode, Mode::Frames(f) if f.receiving());
        let read = if let (true, Mode::Frames(frames)) = (busy, &self.mode) {
            // Frames: read to the end of the frame under way, or one typical frame,
            // so a frame never straddles two buffers (which would move its bytes).
            let want = frames.read_size(&self.buf, READ_LARGE);
            self.buf.reserve(want);
            self.stream.try_read_buf(&mut (&mut self.buf).limit(want))
        } else if busy {
            // A file is arriving: large reads straight into a buffer whose chunks go
            // to disk without a copy.
            self.buf.reserve(READ_LARGE);
            self.stream.try_read_buf(&mut self.buf)
        } else {
            // Texts: read on the stack and keep only what arrived, so short messages
            // from thousands of devices never leave large buffers behind.
            let mut scratch = [0u8; READ_SMALL];
            self.stream
                .try_read(&mut scratch)
                .inspect(|&n| self.buf.extend_from_slice(&scratch[..n]))
        };
        match read {
            Ok(n) => {
                if n > 0 {
                    self.last_heard = Instant::now();
                }
                self.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs what was read through the protocol; the first bytes pick it for auto.
    async fn on_readable(&mut self) -> Result<(), End> {
        if matches!(self.mode, Mode::Undecided) {
            match detect_first_bytes(&self.buf) {
                Detected::Frames => self.start_frames(),
                Detected::Lines if self.shared.settings.token.is_some() => {
                    return Err(self.refuse_unauthenticated("lines").await);
                }
                Detected::Lines => self.start_lines().await,
            }
        }
        if let Mode::Cf(decoder) = &self.mode
            && decoder.chosen_by_auto()
            && self.stats.bytes_in.load(Ordering::Relaxed) == self.buf.len() as u64
        {
            // The device's very first bytes, after it was greeted as cf: a frames
            // device whose board spoke late (1.1 late HELLO)?
            match frames::late_frames_start(&self.buf) {
                Some(true) => self.become_frames().await,
                // The start of a frame header: wait for the rest of it.
                None => return Ok(()),
                Some(false) => {}
            }
        }
        if matches!(self.mode, Mode::Frames(_)) {
            return self.on_frames().await;
        }
        let data = self.buf.split().freeze();
        if matches!(self.cf_file, CfFile::None) && self.wire_in.len() < WIRE_KEPT {
            let room = WIRE_KEPT - self.wire_in.len();
            self.wire_in.extend_from_slice(&data[..data.len().min(room)]);
        }
        if matches!(self.cf_file, CfFile::None) {
            // Idle devices keep no read buffer: 10,000 of them must fit in little memory.
            self.buf = BytesMut::new();
        }
        match &mut self.mode {
            Mode::Undecided | Mode::Frames(_) => Ok(()),
            Mode::Lines(decoder) => {
                let mut lines = Vec::new();
                decoder.push(&data, &mut lines);
                // A UDP datagram is one message, with or without its line ending.
                if self.stream.at_message_end()
                    && let Some(rest) = decoder.take_partial()
                {
                    lines.push(rest);
                }
                self.partial_since = decoder.has_partial().then(Instant::now);
                for line in lines {
                    self.text_in(&line).await;
                }
                Ok(())
            }
            Mode::Cf(decoder) => {
                let mut messages = Vec::new();
                decoder.push(data, &mut messages);
                for message in messages {
                    self.on_cf(message).await;
                }
                Ok(())
            }
        }
    }

    /// An auto-chosen cf connection whose device then spoke native frames (an
    /// ESP8266 connects when it boots, long before the board behind it speaks):
    /// the cf device it was announced as is gone, and a frames device takes its
    /// place on the same connection.
    async fn become_frames(&mut self) {
        if self.announced {
            self.shared
                .emit(EventKind::Disconnected {
                    conn: self.conn,
                    device: self.device.clone(),
                    reason: "it speaks the native frame protocol: continues as a frames device".into(),
                    bytes_in: self.stats.bytes_in.load(Ordering::Relaxed),
                    bytes_out: self.stats.bytes_out.load(Ordering::Relaxed),
                })
                .await;
            self.announced = false;
        }
        self.start_frames();
    }

    /// With `--token`, an auto listener only takes native-frame devices.
    async fn refuse_unauthenticated(&mut self, protocol: &str) -> End {
        let message = format!(
            "refused {} ({protocol}): this console requires a token (--token), which only native-frame devices can present; connect cf or lines devices to a listener of their own (--listen cf://HOST:PORT)",
            self.peer
        );
        let _ = self
            .write_to_device(b"benchlink: this console requires the native frame protocol with a token\r\n")
            .await;
        self.shared.emit(EventKind::Error { message }).await;
        End::Failed("refused: no token".into())
    }

    async fn on_cf(&mut self, message: CfMessage) {
        match message {
            CfMessage::Handshake => self.text_in(crate::protocol::cf::HANDSHAKE).await,
            CfMessage::Command(command) => self.text_in_capped(&command).await,
            CfMessage::Text(text) => {
                for line in text.split(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if !line.is_empty() {
                        self.text_in_capped(line).await;
                    }
                }
            }
            CfMessage::FileStart => {
                self.cf_file = CfFile::Pending {
                    chunks: Vec::new(),
                    len: 0,
                    started: Instant::now(),
                };
            }
            CfMessage::FileData(data) => match &mut self.cf_file {
                CfFile::Pending { chunks, len, .. } => {
                    *len += data.len();
                    chunks.push(data);
                    let mut head = Vec::with_capacity(HEAD_LEN);
                    for c in chunks.iter() {
                        head.extend_from_slice(&c[..c.len().min(HEAD_LEN - head.len())]);
                    }
                    if !FileKind::undecided(&head) {
                        self.begin_cf_file().await;
                    }
                }
                CfFile::Active(_) => self.write_file(data).await,
                CfFile::None | CfFile::Discarding => {}
            },
        }
    }

    /// Names the pending cf file by its content and starts writing it.
    async fn begin_cf_file(&mut self) {
        let CfFile::Pending { chunks, started, .. } =
            std::mem::replace(&mut self.cf_file, CfFile::Discarding)
        else {
            return;
        };
        let mut observed = HeadTail::default();
        for c in &chunks {
            observed.observe(c);
        }
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S%.3f");
        let name = format!("{stamp}.{}", observed.kind().extension());
        if !self.shared.room_for_a_file() {
            let e =
                io::Error::other("the console is short of file descriptors (too many files open at once)");
            return self.disk_failure(&name, &e, None, None).await;
        }
        self.make_room_for_part().await;
        let part = match PartFile::create(self.folder.clone(), name.clone()).await {
            Ok(part) => part.counted_in(&self.shared.open_files),
            Err(e) => {
                self.disk_failure(&name, &e, None, None).await;
                return;
            }
        };
        self.shared
            .emit(EventKind::FileStarted {
                conn: self.conn,
                device: self.device.clone(),
                name: name.clone(),
                size: None,
                resumed_from: None,
            })
            .await;
        self.cf_file = CfFile::Active(Box::new(Transfer::new(part, name, None, started)));
        for c in chunks {
            self.write_file(c).await;
        }
    }

    async fn write_file(&mut self, data: Bytes) {
        let CfFile::Active(t) = &mut self.cf_file else {
            return;
        };
        let limit = self.shared.settings.max_file_size;
        if t.part.len() + data.len() as u64 > limit {
            // What fits under the limit is kept with the rest of the `.part`.
            let fits = limit.saturating_sub(t.part.len()) as usize;
            let fit_written = t.part.write(data.slice(..fits.min(data.len()))).await;
            let CfFile::Active(t) = std::mem::replace(&mut self.cf_file, CfFile::Discarding) else {
                return;
            };
            if let Err(e) = fit_written {
                let part = t.part.part_path().to_path_buf();
                return self.disk_failure(&t.name, &e, Some(part), None).await;
            }
            let reason = format!(
                "larger than the {} limit (--max-file-size); the rest is discarded",
                crate::text::size(limit)
            );
            self.keep_failed(*t, reason).await;
            return;
        }
        t.observed.observe(&data);
        if let Err(e) = t.part.write(data).await {
            let (name, part) = (t.name.clone(), t.part.part_path().to_path_buf());
            self.cf_file = CfFile::Discarding;
            self.disk_failure(&name, &e, Some(part), None).await;
            return;
        }
        if let Some(due) = progress_due(t) {
            let event = self.progress_event(due);
            self.shared.emit(event).await;
        }
    }

    fn progress_event(&self, (name, bytes): (String, u64)) -> EventKind {
        EventKind::FileProgress {
            conn: self.conn,
            device: self.device.clone(),
            name,
            bytes,
        }
    }

    /// A file ended with the connection: saved if its content is complete (or carries
    /// no length and the device closed normally), else kept as `.part`.
    async fn finish_cf_file(&mut self, end: &End) {
        match std::mem::replace(&mut self.cf_file, CfFile::None) {
            CfFile::None | CfFile::Discarding => {}
            CfFile::Pending { len: 0, .. } => {
                self.shared
                    .emit(EventKind::FileFailed {
                        conn: self.conn,
                        device: self.device.clone(),
                        name: String::new(),
                        reason: "the device announced a file but sent no bytes".into(),
                        part: None,
                    })
                    .await;
            }
            pending @ CfFile::Pending { .. } => {
                self.cf_file = pending;
                self.begin_cf_file().await;
                Box::pin(self.finish_cf_file(end)).await;
            }
            CfFile::Active(t) => match (t.observed.completeness(), end) {
                (Completeness::Complete, _) => self.save(*t, false).await,
                (Completeness::EndedByClose, End::DeviceClosed) => self.save(*t, true).await,
                // A reset (the device closed without reading what the console sent it,
                // such as the greeting) makes its TCP stack drop what it had not sent
                // yet: the end of a file without a length may be missing.
                (Completeness::EndedByClose, End::DeviceReset) => {
                    let reason = "the connection was reset (the device closed without reading what the console sent, so its last bytes may be lost)".to_string();
                    self.keep_failed(*t, reason).await;
                }
                (Completeness::Truncated { expected }, _) => {
                    let kind = t.observed.kind().extension().to_ascii_uppercase();
                    let got = t.part.len();
                    let reason = match expected {
                        Some(n) => {
                            format!("truncated: the {kind} header says {n} bytes, {got} arrived")
                        }
                        None if kind == "BMP" => {
                            format!("truncated: only {got} bytes arrived, not even a whole BMP header")
                        }
                        None => format!(
                            "truncated: the {kind} data ends before its end marker ({got} bytes arrived)"
                        ),
                    };
                    self.keep_failed(*t, reason).await;
                }
                (Completeness::EndedByClose, other) => {
                    let reason = format!("interrupted: {}", other.reason());
                    self.keep_failed(*t, reason).await;
                }
            },
        }
    }

    async fn save(&mut self, t: Transfer, ended_by_close: bool) {
        let started = t.started;
        let (name, part) = (t.name.clone(), t.part.part_path().to_path_buf());
        match t.part.finish().await {
            Ok(finished) => {
                self.record_saved(&name, started, finished, ended_by_close).await;
            }
            Err(e) => self.disk_failure(&name, &e, Some(part), None).await,
        }
    }

    /// Gives a finished file its final name, records it in received.jsonl and emits
    /// `file_saved`. Returns the final path.
    async fn record_saved(
        &mut self,
        name: &str,
        started: Instant,
        finished: Finished,
        ended_by_close: bool,
    ) -> Option<PathBuf> {
        let part = finished.part_path.clone();
        let path = match place(finished.part_path, self.folder.clone(), name.to_string()).await {
            Ok(p) => p,
            Err(e) => {
                // Complete and checked: kept as `.part` rather than lost.
                let kept = part.display().to_string();
                self.shared
                    .emit(EventKind::FileFailed {
                        conn: self.conn,
                        device: self.device.clone(),
                        name: name.to_string(),
                        reason: format!("cannot give it its final name: {e}; it is complete in {kept}"),
                        part: Some(kept),
                    })
                    .await;
                return None;
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        let saved_name = path
            .file_name()
            .map_or_else(|| name.to_string(), |n| n.to_string_lossy().into_owned());
        let shown = path.display().to_string();
        self.shared
            .journal
            .saved(ReceivedRecord {
                time: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
                device: self.device.clone(),
                peer: self.peer.to_string(),
                name: saved_name.clone(),
                path: shown.clone(),
                size: finished.size,
                crc32: finished.crc32,
                seconds,
                protocol: self.protocol.into(),
            })
            .await;
        self.shared
            .emit(EventKind::FileSaved {
                conn: self.conn,
                device: self.device.clone(),
                name: saved_name,
                path: shown,
                size: finished.size,
                crc32: finished.crc32,
                seconds,
                ended_by_close,
            })
            .await;
        Some(path)
    }

    async fn keep_failed(&mut self, t: Transfer, reason: String) {
        let part = if t.part.is_empty() {
            // Nothing to resume from: an empty `.part` would only pile up.
            let path = t.part.part_path().to_path_buf();
            drop(t.part);
            let _ = sink::discard(sink::meta_path(&path)).await;
            let _ = sink::discard(path).await;
            None
        } else {
            t.part.keep().await.ok().map(|p| p.display().to_string())
        };
        let reason = match &part {
            Some(p) => format!("{reason}; what arrived is kept as {p}"),
            None => reason,
        };
        self.shared
            .emit(EventKind::FileFailed {
                conn: self.conn,
                device: self.device.clone(),
                name: t.name,
                reason,
                part,
            })
            .await;
    }

    /// Keeps at most `--max-parts` `.part` files in this device's folder: before a
    /// new one is made, the oldest not in use go, with their sidecars, each with a
    /// `part_removed` event. A device that begins files and never ends them can then
    /// not fill the disk with them.
    pub(super) async fn make_room_for_part(&mut self) {
        let folder = self.folder.clone();
        let parts = tokio::task::spawn_blocking(move || sink::list_parts(&folder))
            .await
            .unwrap_or_default();
        let max = self.shared.settings.max_parts;
        let mut excess = (parts.len() + 1).saturating_sub(max);
        for part in parts {
            if excess == 0 {
                break;
            }
            if self.shared.part_in_use(&part) {
                continue;
            }
            let _ = sink::discard(sink::meta_path(&part)).await;
            if sink::discard(part.clone()).await.is_ok() {
                excess -= 1;
                self.shared
                    .emit(EventKind::PartRemoved {
                        device: self.device.clone(),
                        path: part.display().to_string(),
                        reason: format!("the oldest of more than {max} unfinished files (--max-parts)"),
                    })
                    .await;
            }
        }
    }

    /// A disk error fails this one transfer, once (one `file_failed`); the console
    /// and other devices go on. Its `.part` (and sidecar) is removed so a full disk
    /// is not kept full by it, unless `resumable_rest` bytes would fit again (then
    /// the device can resume it once the disk has room). A link found where our
    /// file should be is also an `error` event: someone planted it.
    async fn disk_failure(
        &mut self,
        name: &str,
        e: &io::Error,
        part: Option<PathBuf>,
        resumable_rest: Option<u64>,
    ) {
        if safe_fs::is_link(e) {
            let message = format!(
                "cannot write {name} from {} in {}: {e}",
                self.device,
                self.folder.display()
            );
            self.shared.emit(EventKind::Error { message }).await;
        }
        let mut kept = None;
        if let Some(part) = part {
            let room = safe_fs::free_space(&self.folder);
            if resumable_rest.is_some_and(|rest| room.is_some_and(|free| free > rest)) {
                kept = Some(part.display().to_string());
            } else {
                let _ = sink::discard(sink::meta_path(&part)).await;
                let _ = sink::discard(part).await;
            }
        }
        let reason = match &kept {
            Some(p) => format!("cannot store it: {e}; what arrived is kept as {p} for a resume"),
            None => format!("cannot store it: {e}"),
        };
        self.shared
            .emit(EventKind::FileFailed {
                conn: self.conn,
                device: self.device.clone(),
                name: name.to_string(),
                reason,
                part: kept,
            })
            .await;
    }

    async fn start_cf(&mut self, chosen_by_auto: bool) -> Result<(), End> {
        self.mode = Mode::Cf(CfDecoder::new(chosen_by_auto));
        self.announce("cf").await;
        let greeting = self.shared.settings.greeting.clone();
        self.write_to_device(greeting.as_bytes()).await?;
        self.text(Direction::Out, greeting).await;
        Ok(())
    }

    async fn start_lines(&mut self) {
        self.mode = Mode::Lines(LineDecoder::new(self.shared.settings.max_line));
        self.announce("lines").await;
    }

    async fn announce(&mut self, protocol: &'static str) {
        self.protocol = protocol;
        self.announced = true;
        self.shared.registry().announce(self.conn, protocol);
        self.shared
            .emit(EventKind::Connected {
                conn: self.conn,
                device: self.device.clone(),
                peer: self.peer.to_string(),
                protocol: protocol.into(),
            })
            .await;
    }

    /// `/hex` and `/raw`: these bytes exactly, no line ending (a frames device gets
    /// them as one TEXT frame).
    async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), End> {
        if matches!(self.mode, Mode::Frames(_)) {
            let mut frame = BytesMut::new();
            crate::protocol::frames::encode_frame(crate::protocol::frames::KIND_TEXT, 0, bytes, &mut frame);
            self.write_to_device(&frame).await?;
        } else {
            self.write_to_device(bytes).await?;
        }
        self.text(Direction::Out, from_device(bytes)).await;
        Ok(())
    }

    async fn send_command(&mut self, text: &str) -> Result<(), End> {
        if matches!(self.mode, Mode::Frames(_)) {
            self.send_message(&crate::protocol::frames::Message::Text(text.to_string()))
                .await?;
            self.text(Direction::Out, text.to_string()).await;
            return Ok(());
        }
        let ending = self
            .eol
            .or(self.shared.settings.line_ending)
            .unwrap_or(match self.mode {
                Mode::Cf(_) => LineEnding::None,
                _ => LineEnding::CrLf,
            });
        let mut wire = Vec::with_capacity(text.len() + 2);
        wire.extend_from_slice(text.as_bytes());
        wire.extend_from_slice(ending.bytes());
        self.write_to_device(&wire).await?;
        self.text(Direction::Out, text.to_string()).await;
        Ok(())
    }

    async fn write_to_device(&mut self, bytes: &[u8]) -> Result<(), End> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => {
                self.stats
                    .bytes_out
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(End::Failed(format!("connection error while sending: {e}"))),
            Err(_) => Err(End::Failed(format!(
                "the device read nothing for {} s; dropped",
                WRITE_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn flush_partial_line(&mut self) {
        self.partial_since = None;
        let partial = match &mut self.mode {
            Mode::Lines(decoder) => decoder.take_partial(),
            _ => None,
        };
        if let Some(line) = partial {
            self.text_in(&line).await;
        }
    }

    /// Device text longer than `--max-line` is shown in pieces.
    async fn text_in_capped(&mut self, bytes: &[u8]) {
        let text = from_device(bytes);
        for piece in crate::text::pieces(&text, self.shared.settings.max_line) {
            self.text(Direction::In, piece.to_string()).await;
        }
    }

    async fn text_in(&mut self, bytes: &[u8]) {
        // The bytes as read since the last text (its line ending included).
        let raw = (!self.wire_in.is_empty()).then(|| self.wire_in.split().freeze());
        self.text_with_raw(Direction::In, from_device(bytes), raw).await;
    }

    async fn text(&mut self, direction: Direction, text: String) {
        self.text_with_raw(direction, text, None).await;
    }

    pub(super) async fn text_with_raw(&mut self, direction: Direction, text: String, raw: Option<Bytes>) {
        self.shared
            .journal
            .conversation(&self.device, direction, &text)
            .await;
        self.shared
            .emit(EventKind::Text {
                conn: self.conn,
                device: self.device.clone(),
                direction,
                text,
                raw,
            })
            .await;
    }

    async fn close(&mut self, mut end: End) {
        if let (Mode::Frames(_), Some(reason)) = (&self.mode, end.bye()) {
            // Best effort and brief: a half-open link must not hold up the close.
            let bye = crate::protocol::frames::Message::Bye(reason);
            let _ = tokio::time::timeout(BYE_WITHIN, self.send_message(&bye)).await;
        }
        self.flush_partial_line().await;
        self.finish_cf_file(&end).await;
        self.keep_frame_transfers(&end).await;
        self.shared.journal.forget(&self.device).await;
        // Gone from the list before `disconnected` is told, so a device that
        // reconnects at once gets its name back.
        self.shared.registry().remove(self.conn);
        if self.announced {
            self.shared
                .emit(EventKind::Disconnected {
                    conn: self.conn,
                    device: self.device.clone(),
                    reason: end.reason(),
                    bytes_in: self.stats.bytes_in.load(Ordering::Relaxed),
                    bytes_out: self.stats.bytes_out.load(Ordering::Relaxed),
                })
                .await;
        }
        // The name is free now: the connection that replaces this one may take it.
        if let End::Replaced { done, .. } = &mut end {
            drop(done.take());
        }
    }
}

/// `90 s`, `10 min`, `2 h`: a duration as people say it.
fn humantime_short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// `(name, bytes)` for a `file_progress` event, if one is due (a few per second at most).
fn progress_due(t: &mut Transfer) -> Option<(String, u64)> {
    if t.last_progress.elapsed() < PROGRESS_EVERY {
        return None;
    }
    t.last_progress = Instant::now();
    Some((t.name.clone(), t.part.len()))
}
