//! One connected device: reads its bytes, runs them through its protocol's codec,
//! turns the codec's messages into events, files and conversation lines, and sends
//! the operator's commands to it.

mod cf;
mod files;
mod frames;
mod lines;
mod push;
#[cfg(test)]
mod tests;
mod ymodem;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::event::{ConnId, Direction, EventKind, TextBatch};
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
/// Conversation lines gathered before they go to the journal mid-turn.
const LOG_BATCH_BYTES: usize = 64 * 1024;
/// At most this much is read per turn while a file streams in.
const READ_TURN: usize = 64 * 1024;
/// A read this large means a stream: the session yields to the others after it.
const YIELD_AFTER_READ: usize = 16 * 1024;
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
/// device had last (a HELLO may have renamed it). The device is registered at
/// once; the returned task holds only the session (an async fn would also keep
/// its arguments for the task's whole life: 10,000 idle devices are 10,000
/// tasks).
pub(super) fn run(
    shared: Arc<Shared>,
    opened: Opened,
    listen: ListenProtocol,
    permit: Option<OwnedSemaphorePermit>,
) -> impl std::future::Future<Output = (Ended, String)> + Send + 'static {
    let Opened {
        stream,
        peer,
        base,
        conn,
        cancel,
        auto_cf,
        idle,
    } = opened;
    let (tx, commands) = super::registry::session_channel();
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
        last_byte: None,
        streaming: false,
        turn: None,
        carver: None,
        carved: None,
        eol: None,
        wire_in: BytesMut::new(),
        log_batch: String::new(),
    };
    // An async block, not an async fn: a fn's arguments would be kept twice.
    async move {
        let end = session.serve(listen).await;
        let ended = match &end {
            End::Stopped | End::Closed => Ended::Stopped,
            other => Ended::Gone(other.reason()),
        };
        // Boxed: rare, large futures must not size every idle connection's task.
        Box::pin(session.close(end)).await;
        guard.mark_closed();
        drop(permit); // the connection slot, held to the end
        (ended, session.device)
    }
}

/// Removes the device from the registry however the session ends, a panic included.
struct Registration {
    shared: Arc<Shared>,
    conn: ConnId,
    device: String,
    closed: bool,
}

impl Registration {
    /// The session said its own goodbye: nothing left to say when dropped.
    fn mark_closed(&mut self) {
        self.closed = true;
    }
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
                crc_errors: 0,
                rewinds: 0,
            }));
        }
    }
}

enum Mode {
    Undecided,
    Lines(LineDecoder),
    Cf(CfDecoder),
    Frames(Box<frames::FramesState>),
    YmodemRx(Box<ymodem::YmodemRx>),
    YmodemTx(Box<ymodem::YmodemTx>),
}

/// What a session's one timer is set for.
#[derive(Debug, Clone, Copy)]
enum Deadline {
    Auto,
    Identify,
    Stall,
    Idle,
    Push,
    Ymodem,
    PartialLine,
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
    peer: Peer,
    stats: Arc<Stats>,
    commands: super::registry::SessionReceiver,
    mode: Mode,
    protocol: &'static str,
    announced: bool,
    buf: BytesMut,
    /// When the unterminated line in the line decoder last grew.
    partial_since: Option<Instant>,
    cf_file: CfFile,
    /// When the device last sent a byte (or connected): for `--idle-timeout`.
    last_heard: Instant,
    /// Cuts images out of a lines stream (unless `--no-carve`), and the image
    /// being written.
    carver: Option<Box<crate::protocol::carve::Carver>>,
    carved: Option<Box<Transfer>>,
    /// The last byte the device sent: a YMODEM receiver's `C` may come before
    /// the operator's `/sz` (lrzsz's `rb` asks as it starts).
    last_byte: Option<u8>,
    /// The operator's `/eol` for this device, over `--line-ending`.
    eol: Option<LineEnding>,
    /// Text bytes as read (terminators included), handed to front ends with the
    /// next text event for a hex view; bounded by [`WIRE_KEPT`].
    wire_in: BytesMut,
    /// Conversation lines for the journal, sent together before the session
    /// waits again (one entry per read, not one per line).
    /// Lines as conversation.log has them (time, direction, text escaped for a
    /// terminal), the batch's lines all with its first line's time.
    log_batch: String,
    /// The last read was large (a file streaming in): the next waits for a turn.
    streaming: bool,
    /// The streaming turn held while a read is processed (see `Shared::bulk_turns`).
    turn: Option<OwnedSemaphorePermit>,
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
                Box::pin(self.start_lines()).await;
                Ok(())
            }
            ListenProtocol::Ymodem => {
                self.mode = Mode::Lines(LineDecoder::new(self.shared.settings.max_line));
                Box::pin(self.announce("ymodem")).await;
                Box::pin(self.start_ymodem_receive()).await
            }
        };
        if let Err(end) = started {
            return end;
        }
        loop {
            // A streaming turn is never held across the wait below (a read that
            // found nothing after all would otherwise keep it while the device is
            // silent, and stall every other stream).
            self.turn = None;
            // Whatever this turn said goes to the journal before the session waits
            // (boxed: its future must not size every idle connection's task).
            if !self.log_batch.is_empty() {
                Box::pin(self.flush_log_batch()).await;
            }
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
            let ymodem_deadline = self.ymodem_deadline();
            let push_deadline = self.push_deadline();
            let push_ready = self.push_ready();
            let idle_deadline = idle_timeout.map(|t| self.last_heard + t);
            // One timer for all the deadlines, the earliest first (on a tie, the
            // first listed): every timer costs each of 10,000 idle tasks 112 bytes.
            let next = [
                (auto_deadline, Deadline::Auto),
                (identify_deadline, Deadline::Identify),
                (stall_deadline, Deadline::Stall),
                (idle_deadline, Deadline::Idle),
                (push_deadline, Deadline::Push),
                (ymodem_deadline, Deadline::Ymodem),
                (partial_deadline, Deadline::PartialLine),
            ]
            .into_iter()
            .filter_map(|(at, which)| at.map(|at| (at, which)))
            .min_by_key(|(at, _)| *at);
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
                    Some(SessionCommand::Push { name, data }) => {
                        if let Err(end) = Box::pin(self.start_push(name, data)).await {
                            return end;
                        }
                    }
                    Some(SessionCommand::YmodemReceive) => {
                        if let Err(end) = Box::pin(self.start_ymodem_receive()).await {
                            return end;
                        }
                    }
                    Some(SessionCommand::YmodemSend(files)) => {
                        if let Err(end) = Box::pin(self.start_ymodem_send(files)).await {
                            return end;
                        }
                    }
                },
                ready = self.stream.readable() => {
                    if let Err(e) = ready {
                        return End::Failed(format!("connection error: {e}"));
                    }
                    // A device that never stops sending garbage keeps this branch ready:
                    // the deadline is checked here too, not only by its own timer.
                    if identify_deadline.is_some_and(|d| Instant::now() >= d) {
                        return Box::pin(self.unidentified()).await;
                    }
                    // A stream waits for its turn to read outside the run queue, so
                    // the queue holds a few reads of file data, not one per uploader.
                    // The turn is given back before anything that waits (a write
                    // to disk), so it only ever waits for a core.
                    if self.streaming {
                        self.turn = Box::pin(Arc::clone(&self.shared.bulk_turns).acquire_owned()).await.ok();
                    }
                    let read = self.read_once();
                    self.streaming = matches!(read, Ok(Some(n)) if n >= YIELD_AFTER_READ);
                    match read {
                        Ok(None) => {}
                        Ok(Some(0)) => return End::DeviceClosed,
                        Ok(Some(n)) => {
                            // Boxed so the idle task stays small (10,000 devices).
                            if let Err(end) = Box::pin(self.on_readable()).await {
                                return end;
                            }
                            // A device streaming a file always has more to read: let
                            // the others run after each large read, or a PING from a
                            // quiet device waits behind many megabytes of file data
                            // (tokio's own budget allows 128 reads before it yields).
                            self.turn = None;
                            if n >= YIELD_AFTER_READ {
                                tokio::task::yield_now().await;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return End::DeviceReset,
                        Err(e) => return End::Failed(format!("connection error: {e}")),
                    }
                }
                _ = sleep_until(next.map_or(far, |(at, _)| at)), if next.is_some() => {
                    let which = next.map(|(_, which)| which);
                    match which {
                        Some(Deadline::Auto) => {
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
                        Some(Deadline::Identify) => return Box::pin(self.unidentified()).await,
                        Some(Deadline::Stall) => {
                            if let Err(end) = Box::pin(self.abandon_partial_frame()).await {
                                return end;
                            }
                        }
                        Some(Deadline::Idle) => return End::Idle(idle_timeout.unwrap_or_default()),
                        Some(Deadline::Push) => Box::pin(self.push_timeout()).await,
                        Some(Deadline::Ymodem) => {
                            if let Err(end) = Box::pin(self.ymodem_timeout()).await {
                                return end;
                            }
                        }
                        Some(Deadline::PartialLine) => Box::pin(self.flush_partial_line()).await,
                        None => {}
                    }
                }
                // Last: a pushed file's frames go out between reads and commands.
                _ = std::future::ready(()), if push_ready => {
                    if let Err(end) = Box::pin(self.push_step()).await {
                        return end;
                    }
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
            // Room for the whole frame, but at most a turn's worth read now: the
            // session yields after it, so a quiet device's PING waits for little.
            self.stream
                .try_read_buf(&mut (&mut self.buf).limit(want.min(READ_TURN)))
        } else if busy {
            // A file is arriving: large reads straight into a buffer whose chunks go
            // to disk without a copy.
            self.buf.reserve(READ_LARGE);
            self.stream.try_read_buf(&mut self.buf)
        } else if self.streaming {
            // Text streaming in (the last read filled the stack buffer): a turn's
            // worth straight into the buffer, which the texts then share.
            self.buf.reserve(READ_TURN);
            let read = self.stream.try_read_buf(&mut (&mut self.buf).limit(READ_TURN));
            if matches!(read, Ok(n) if n < READ_TURN / 2) {
                // A short read must not pin a turn-sized buffer in the events
                // it becomes (the event queue counts bytes, not allocations).
                self.buf = BytesMut::from(&self.buf[..]);
            }
            read
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
                    self.last_byte = self.buf.last().copied();
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
        if matches!(self.mode, Mode::YmodemRx(_) | Mode::YmodemTx(_)) {
            let data = self.buf.split();
            self.buf = BytesMut::new();
            return Box::pin(self.ymodem_bytes(&data)).await;
        }
        let data = self.buf.split().freeze();
        // Lines take their read as their raw bytes, without a copy (`texts`).
        if matches!(self.cf_file, CfFile::None) && !matches!(self.mode, Mode::Lines(_)) {
            self.keep_wire(&data);
        }
        if matches!(self.cf_file, CfFile::None) {
            // Idle devices keep no read buffer: 10,000 of them must fit in little memory.
            self.buf = BytesMut::new();
        }
        match &mut self.mode {
            Mode::Undecided | Mode::Frames(_) | Mode::YmodemRx(_) | Mode::YmodemTx(_) => Ok(()),
            Mode::Lines(_) if self.carver.is_some() => {
                Box::pin(self.carve_lines(data)).await;
                Ok(())
            }
            Mode::Lines(_) => {
                Box::pin(self.lines_read(data)).await;
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

    /// Keeps bytes as read for the next text event (a hex view), up to [`WIRE_KEPT`].
    fn keep_wire(&mut self, data: &[u8]) {
        let room = WIRE_KEPT.saturating_sub(self.wire_in.len());
        self.wire_in.extend_from_slice(&data[..data.len().min(room)]);
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
                    crc_errors: self.stats.crc_errors.load(Ordering::Relaxed),
                    rewinds: self.stats.rewinds.load(Ordering::Relaxed),
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
        // A device that reads nothing would hold its streaming turn (and stall
        // every other stream) until the timeout: the turn goes back first.
        self.turn = None;
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

    async fn text(&mut self, direction: Direction, text: String) {
        self.text_with_raw(direction, text, None).await;
    }

    pub(super) async fn text_with_raw(&mut self, direction: Direction, text: String, raw: Option<Bytes>) {
        if self.shared.settings.log_conversations {
            self.log_line(direction, &text);
            self.flush_full_log_batch().await;
        }
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

    /// Lines that arrived together (one read): one event, and their log lines
    /// in one batch. The raw bytes since the last text go with them: those kept
    /// from earlier reads and `read`, the read they came in (taken by the first
    /// batch of a read; the caller keeps it if no text took it).
    pub(super) async fn texts(&mut self, mut batch: TextBatch, read: &mut Option<Bytes>) {
        if batch.is_empty() {
            return;
        }
        let raw = match read.take() {
            Some(data) if self.wire_in.is_empty() => Some(data),
            Some(data) => {
                self.keep_wire(&data);
                Some(std::mem::take(&mut self.wire_in).freeze())
            }
            None => (!self.wire_in.is_empty()).then(|| std::mem::take(&mut self.wire_in).freeze()),
        };
        batch.set_raw(raw);
        if self.shared.settings.log_conversations {
            // Each line gains its time and direction (36 bytes).
            self.log_batch.reserve(batch.text_len() + batch.len() * 36);
            let time = self.log_time();
            for line in batch.lines() {
                push_log_line(&mut self.log_batch, &time, batch.direction, line);
            }
            self.flush_full_log_batch().await;
        }
        let kind = match batch.len() {
            1 => batch.event(0),
            _ => Some(EventKind::Texts(Arc::new(batch))),
        };
        if let Some(kind) = kind {
            self.shared.emit(kind).await;
        }
    }

    /// Adds a line to the batch for conversation.log.
    fn log_line(&mut self, direction: Direction, text: &str) {
        let time = self.log_time();
        push_log_line(&mut self.log_batch, &time, direction, text);
    }

    /// The time the log batch's lines get: its first line's, formatted once.
    fn log_time(&self) -> String {
        match memchr::memchr(b' ', self.log_batch.as_bytes()) {
            Some(end) => self.log_batch[..end].to_string(),
            None => chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
        }
    }

    async fn flush_full_log_batch(&mut self) {
        if self.log_batch.len() >= LOG_BATCH_BYTES {
            self.turn = None; // the journal may make it wait
            self.flush_log_batch().await;
        }
    }

    /// This device's folder of received files (built when needed: 10,000 idle
    /// devices need not hold it).
    fn folder(&self) -> PathBuf {
        self.shared.settings.dir.join(&self.device)
    }

    /// Sends the conversation lines gathered this turn to the journal.
    async fn flush_log_batch(&mut self) {
        if self.log_batch.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.log_batch);
        self.shared.journal.conversation(&self.device, lines).await;
    }

    async fn close(&mut self, mut end: End) {
        if let (Mode::Frames(_), Some(reason)) = (&self.mode, end.bye()) {
            // Best effort and brief: a half-open link must not hold up the close.
            let bye = crate::protocol::frames::Message::Bye(reason);
            let _ = tokio::time::timeout(BYE_WITHIN, self.send_message(&bye)).await;
        }
        self.flush_partial_line().await;
        self.keep_ymodem_file(&end).await;
        self.keep_pushes(&end).await;
        self.finish_carving().await;
        self.finish_cf_file(&end).await;
        self.keep_frame_transfers(&end).await;
        self.flush_log_batch().await;
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
                    crc_errors: self.stats.crc_errors.load(Ordering::Relaxed),
                    rewinds: self.stats.rewinds.load(Ordering::Relaxed),
                })
                .await;
        }
        // The name is free now: the connection that replaces this one may take it.
        if let End::Replaced { done, .. } = &mut end {
            drop(done.take());
        }
    }
}

/// A conversation.log line: time, direction, the text escaped for a terminal.
fn push_log_line(log: &mut String, time: &str, direction: Direction, text: &str) {
    log.push_str(time);
    log.push_str(match direction {
        Direction::In => " in  ",
        Direction::Out => " out ",
    });
    log.push_str(&crate::text::for_terminal(text));
    log.push('\n');
}

/// Gives back the streaming turn before a write that will wait for the disk:
/// the other streams read meanwhile.
fn give_back_turn_before(turn: &mut Option<OwnedSemaphorePermit>, part: &PartFile, len: usize) {
    if part.would_wait(len) {
        *turn = None;
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
