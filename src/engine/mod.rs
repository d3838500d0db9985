//! The engine: listeners, sessions, the file sink, the journal and the registry.
//! It takes [`Command`]s and emits [`Event`]s and knows nothing of any front end.

pub mod command_queue;
pub mod event;
pub mod event_queue;
pub mod journal;
pub mod link;
mod links;
mod listener;
pub mod names;
pub mod ratelimit;
pub mod registry;
pub mod safe_fs;
mod session;
pub mod sink;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use event::{ConnCounters, ConnId, DeviceInfo, Direction, Event, EventKind};
use event_queue::EventReceiver;
use journal::Journal;
use registry::{Registry, SessionCommand};

use crate::config::Settings;
use crate::console::{self, Request};

/// What a front end asks of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// One line of the command language, as typed.
    Line(String),
    /// Stop (a signal, or the front end is closing).
    Shutdown(String),
    /// Make this connection the target of plain text, quietly (the TUI's selection).
    Select(Option<ConnId>),
    /// A line from elsewhere (an MQTT `cmd` topic): plain text goes to `device`
    /// when given (the operator's own target is untouched), and the reply
    /// carries `tag`.
    Remote {
        line: String,
        device: Option<String>,
        tag: String,
    },
}

/// Why the engine could not start, said so the user knows what to do.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// State every session and the command handler share.
pub(crate) struct Shared {
    pub settings: Settings,
    pub events: event_queue::Fanout,
    pub journal: Journal,
    registry: Mutex<Registry>,
    pub cancel: CancellationToken,
    /// `.part` files a live transfer is writing: a resume never takes one of these.
    pub active_parts: Mutex<std::collections::HashSet<std::path::PathBuf>>,
    /// Refused tokens are reported once a second at most, with a count.
    token_refusals: Mutex<ratelimit::RateLimit>,
    /// Received files open now (each holds a descriptor).
    pub open_files: sink::OpenFiles,
    /// Connection slots (`--max-connections`, or fewer if descriptors are short).
    connections: Arc<Semaphore>,
    /// The descriptor limit the console runs under (raised at start).
    fd_limit: usize,
    /// Connections at once: `--max-connections`, or fewer if descriptors are short.
    pub max_connections: usize,
    /// Serial ports and outgoing connections the engine keeps open.
    links: Mutex<Vec<links::LinkEntry>>,
    /// Pushes a disconnect cut, by device name: sent again when it is back.
    pending_pushes: Mutex<PendingPushes>,
    /// Turns for sessions that stream (a file arriving), one per core (the
    /// runtime has one worker more), so a quiet device's PING never queues
    /// behind more than a few turns of file data, however many devices upload.
    /// A turn is held only while a read is processed, never across a wait for
    /// the disk or the device.
    pub bulk_turns: Arc<Semaphore>,
    /// The received folder's lock, held as long as the engine lives.
    _dir_lock: std::fs::File,
}

/// The cores this machine has: streaming turns at once (see `Shared::bulk_turns`),
/// and one worker thread more than that (see `main`).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// One streaming turn at a time per core: more would only queue on the same cores.
fn bulk_turns() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(cores()))
}

impl Shared {
    pub async fn emit(&self, kind: EventKind) {
        // Never waits: a slow front end costs dropped texts, not a stalled engine.
        self.events.send(Event::now(kind));
    }

    /// Whether one more received file may be opened without eating into the
    /// descriptors kept for accepting connections, the journal and logging.
    pub fn room_for_a_file(&self) -> bool {
        let connections = self.max_connections - self.connections.available_permits();
        connections + self.open_files.count() + FD_RESERVE + FD_NEW_CONNECTIONS < self.fd_limit
    }

    /// The name a device at `ip` gets: its alias from config.toml, else the address.
    pub fn name_for(&self, ip: std::net::IpAddr) -> String {
        match self.settings.aliases.get(&ip) {
            Some(alias) => alias.clone(),
            None => ip.to_string(),
        }
    }

    /// Keeps a push for when `device` is back; false when the bound is reached.
    pub fn keep_push(&self, device: &str, name: &str, data: bytes::Bytes) -> bool {
        let mut pending = self.pending_pushes.lock().unwrap_or_else(|p| p.into_inner());
        if pending.bytes + data.len() > PENDING_PUSH_BYTES {
            return false;
        }
        pending.bytes += data.len();
        pending
            .by_device
            .entry(device.to_string())
            .or_default()
            .push((name.to_string(), data));
        true
    }

    pub fn take_pushes(&self, device: &str) -> Vec<(String, bytes::Bytes)> {
        let mut pending = self.pending_pushes.lock().unwrap_or_else(|p| p.into_inner());
        let taken = pending.by_device.remove(device).unwrap_or_default();
        pending.bytes -= taken.iter().map(|(_, d)| d.len()).sum::<usize>();
        taken
    }

    pub fn links(&self) -> MutexGuard<'_, Vec<links::LinkEntry>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn token_refusals(&self) -> MutexGuard<'_, ratelimit::RateLimit> {
        self.token_refusals.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves plain data; keep going with it.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Claims a `.part` path for one transfer; false if another holds it.
    pub fn claim_part(&self, path: &Path) -> bool {
        let mut parts = self.active_parts.lock().unwrap_or_else(|p| p.into_inner());
        parts.insert(path.to_path_buf())
    }

    pub fn part_in_use(&self, path: &Path) -> bool {
        let parts = self.active_parts.lock().unwrap_or_else(|p| p.into_inner());
        parts.contains(path)
    }

    pub fn release_part(&self, path: &Path) {
        let mut parts = self.active_parts.lock().unwrap_or_else(|p| p.into_inner());
        parts.remove(path);
    }
}

/// Pushes waiting for their device to come back, bounded in bytes.
#[derive(Default)]
struct PendingPushes {
    by_device: std::collections::HashMap<String, Vec<(String, bytes::Bytes)>>,
    bytes: usize,
}

/// Bytes of interrupted pushes kept for their devices' return.
const PENDING_PUSH_BYTES: usize = 256 * 1024 * 1024;

/// What sessions share, on its own (no listeners, no command handler), for
/// tests that run one session over an in-memory link.
#[cfg(test)]
pub(crate) fn test_shared(settings: Settings) -> (Arc<Shared>, EventReceiver) {
    let (events, rx) = event_queue::channel(settings.event_queue);
    let dir = settings.dir.clone();
    std::fs::create_dir_all(&dir).expect("test dir");
    let (journal, _thread) = Journal::start(dir.clone(), false, settings.max_log_size, events.clone());
    let lock = std::fs::File::create(dir.join(LOCK_FILE)).expect("lock file");
    let shared = Arc::new(Shared {
        settings,
        events: event_queue::Fanout::new(events, Vec::new()),
        journal,
        registry: Mutex::new(Registry::default()),
        cancel: CancellationToken::new(),
        active_parts: Mutex::default(),
        token_refusals: Mutex::new(ratelimit::RateLimit::new(Duration::from_secs(1))),
        open_files: sink::OpenFiles::default(),
        connections: Arc::new(Semaphore::new(16)),
        fd_limit: 1024,
        max_connections: 16,
        links: Mutex::default(),
        pending_pushes: Mutex::default(),
        bulk_turns: bulk_turns(),
        _dir_lock: lock,
    });
    (shared, rx)
}

/// An engine whose listeners are bound and whose folder is writable, not yet running.
pub struct Engine {
    settings: Settings,
    /// Other consumers of the events (the MQTT publisher), each with its queue.
    taps: Vec<event_queue::EventSender>,
    /// The command queue, made early so other producers (MQTT) can hold it.
    command_tx: mpsc::Sender<Command>,
    command_rx: mpsc::Receiver<Command>,
    /// The front end's event queue, made early so the MQTT publisher can tell
    /// the front end how its broker link is.
    event_tx: event_queue::EventSender,
    event_rx: EventReceiver,
    listeners: Vec<listener::Bound>,
    /// Held while the console runs: one console per received folder.
    _lock: std::fs::File,
}

/// A running engine, as a front end sees it.
pub struct EngineHandle {
    pub commands: mpsc::Sender<Command>,
    pub events: EventReceiver,
    pub task: JoinHandle<()>,
}

/// At most one "connection refused" error per this interval.
const REFUSAL_REPORT_EVERY: Duration = Duration::from_secs(10);
/// How often byte counters are reported (only when they changed, so idle is silent).
const STATS_EVERY: Duration = Duration::from_secs(1);
/// Descriptors kept for what must never fail: listeners, stdio, the runtime, the
/// journal's open logs, and the short-lived opens of saving a file.
const FD_RESERVE: usize = 64 + journal::MAX_OPEN_LOGS;
/// Descriptors kept free of files for connections still to come.
const FD_NEW_CONNECTIONS: usize = 32;

/// Raises the soft limit on open files to the hard limit, as servers do (the
/// default soft limit, 1024, is far below what many devices with files need);
/// returns the limit in force.
fn raise_fd_limit() -> usize {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    }
}

/// How long an evicted connection gets to give up its slot.
const EVICT_WITHIN: Duration = Duration::from_secs(1);
/// How long sessions get to save what they hold when the console stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Engine {
    /// Checks the received folder and binds every listener, so mistakes are reported
    /// before anything runs.
    pub async fn bind(settings: Settings) -> Result<Engine, StartError> {
        check_writable(&settings.dir)?;
        let lock = lock_dir(&settings.dir)?;
        let mut listeners = Vec::new();
        for spec in &settings.listen {
            listeners.push(listener::bind(spec).await?);
        }
        let (command_tx, command_rx) = mpsc::channel(64);
        let (event_tx, event_rx) = event_queue::channel(settings.event_queue);
        Ok(Engine {
            settings,
            taps: Vec::new(),
            command_tx,
            command_rx,
            event_tx,
            event_rx,
            listeners,
            _lock: lock,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Events for the front end from outside the engine (the broker link's state).
    pub fn front_end_events(&self) -> event_queue::EventSender {
        self.event_tx.clone()
    }

    /// Another producer of commands (besides the front end): MQTT's `cmd` topics.
    pub fn command_sender(&self) -> mpsc::Sender<Command> {
        self.command_tx.clone()
    }

    /// Another consumer of every event (besides the front end), with a queue of
    /// its own bounded to `cap` bytes of droppable events.
    pub fn subscribe(&mut self, cap: usize) -> EventReceiver {
        let (tx, rx) = event_queue::channel(cap);
        self.taps.push(tx);
        rx
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(listener::Bound::local_addr)
            .collect()
    }

    pub fn start(self) -> EngineHandle {
        let fd_limit = raise_fd_limit();
        // Connections alone must never use up the descriptors.
        let max_connections = self
            .settings
            .max_connections
            .min(fd_limit.saturating_sub(FD_RESERVE + FD_NEW_CONNECTIONS).max(1));
        let limit = Arc::new(Semaphore::new(max_connections));
        let (event_tx, event_rx) = (self.event_tx, self.event_rx);
        let (command_tx, command_rx) = (self.command_tx, self.command_rx);
        let own_commands = command_tx.clone();
        let dir = std::fs::canonicalize(&self.settings.dir).unwrap_or_else(|_| self.settings.dir.clone());
        let (journal, journal_thread) = Journal::start(
            dir.clone(),
            self.settings.log_conversations,
            self.settings.max_log_size,
            event_tx.clone(),
        );
        let mut settings = self.settings;
        settings.dir = dir;
        let shared = Arc::new(Shared {
            settings,
            events: event_queue::Fanout::new(event_tx, self.taps),
            journal,
            registry: Mutex::new(Registry::default()),
            cancel: CancellationToken::new(),
            active_parts: Mutex::default(),
            token_refusals: Mutex::new(ratelimit::RateLimit::new(Duration::from_secs(1))),
            open_files: sink::OpenFiles::default(),
            connections: limit.clone(),
            fd_limit,
            max_connections,
            links: Mutex::default(),
            pending_pushes: Mutex::default(),
            bulk_turns: bulk_turns(),
            _dir_lock: self._lock,
        });
        let listeners = self.listeners;
        let task = tokio::spawn(async move {
            let tracker = TaskTracker::new();
            if max_connections < shared.settings.max_connections {
                let message = format!(
                    "only {max_connections} connections at once: the system allows {fd_limit} open files (ulimit -n) and benchlink keeps {} for files and logs; raise the limit to allow --max-connections {}",
                    FD_RESERVE + FD_NEW_CONNECTIONS,
                    shared.settings.max_connections
                );
                shared.emit(EventKind::Error { message }).await;
            }
            for bound in listeners {
                let addr = bound.local_addr().map(|a| a.to_string()).unwrap_or_default();
                shared
                    .emit(EventKind::Listening {
                        addr,
                        protocol: bound.protocol_name().into(),
                        dir: shared.settings.dir.display().to_string(),
                    })
                    .await;
                tracker.spawn(bound.serve(shared.clone(), limit.clone(), tracker.clone()));
            }
            let targets = (shared.settings.serial.iter().cloned().map(links::Target::Serial)).chain(
                shared
                    .settings
                    .connect
                    .iter()
                    .cloned()
                    .map(links::Target::Connect),
            );
            for target in targets {
                if let Err(message) = links::start(&shared, &tracker, target) {
                    shared.emit(EventKind::Error { message }).await;
                }
            }
            let reason = CommandHandler::new(shared.clone(), own_commands, tracker.clone())
                .run(command_rx)
                .await;
            shared.cancel.cancel();
            tracker.close();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
            shared.journal.stop().await;
            let _ = tokio::task::spawn_blocking(move || journal_thread.join()).await;
            shared.emit(EventKind::Stopped { reason }).await;
        });
        EngineHandle {
            commands: command_tx,
            events: event_rx,
            task,
        }
    }
}

fn check_writable(dir: &Path) -> Result<(), StartError> {
    let fail = |e: std::io::Error| {
        StartError(format!(
            "cannot write received files to {}: {e}; choose another folder with --dir DIR",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".benchlink-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(fail)?;
    let _ = std::fs::remove_file(&probe);
    // The history exists from the start, so no device folder can ever take its name.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(journal::MANIFEST))
        .map_err(fail)?;
    Ok(())
}

/// The lock file in the received folder: two consoles on one folder would
/// interleave their journals and race for the same `.part` files.
const LOCK_FILE: &str = ".benchlink.lock";

fn lock_dir(dir: &Path) -> Result<std::fs::File, StartError> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let fail = |e: std::io::Error| StartError(format!("cannot create {}: {e}", path.display()));
    let mut file = safe_fs::open(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
        &path,
    )
    .map_err(fail)?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let pid = holder.trim();
        let who = if pid.is_empty() {
            String::new()
        } else {
            format!(" (pid {pid})")
        };
        return Err(StartError(format!(
            "another benchlink{who} is already using {}; stop it, or give this one another folder with --dir DIR",
            dir.display()
        )));
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = writeln!(file, "{}", std::process::id());
    Ok(file)
}

/// A file `/sz` may send at most, and a batch in all: they are held in memory.
const SZ_MAX_FILE: u64 = 64 * 1024 * 1024;
const SZ_MAX_BATCH: u64 = 256 * 1024 * 1024;

/// Reads the files `/sz` sends, checked first: each must be a readable
/// regular file, within the size limits.
async fn read_files_to_send(paths: &[String]) -> Result<Vec<crate::protocol::ymodem::OutFile>, String> {
    let mut files = Vec::new();
    let mut total = 0;
    for path in paths {
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| format!("cannot send {path}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("cannot send {path}: not a regular file"));
        }
        total += meta.len();
        if meta.len() > SZ_MAX_FILE || total > SZ_MAX_BATCH {
            return Err(format!(
                "cannot send {path}: /sz sends files up to 64 MiB, 256 MiB in one batch"
            ));
        }
        let data = tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot send {path}: {e}"))?;
        let name = std::path::Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.clone());
        files.push(crate::protocol::ymodem::OutFile {
            name,
            data: data.into(),
        });
    }
    Ok(files)
}

/// Runs operator commands against the registry.
struct CommandHandler {
    shared: Arc<Shared>,
    /// The chosen device, by connection and name: if that connection has ended and
    /// the same device is back under the same name, it is still the target.
    target: Option<(ConnId, String)>,
    /// `/every` repeats, and the number the next one gets.
    repeats: Vec<Repeat>,
    next_repeat: u32,
    /// The engine's own command queue: macros feed their lines through it.
    commands: mpsc::Sender<Command>,
    /// Where `/serial` and `/connect` links run, so a stop waits for them.
    tracker: TaskTracker,
    /// The remote command being handled (its device and reply tag).
    remote: Option<Remote>,
}

struct Remote {
    device: Option<String>,
    tag: String,
}

/// One `/every`: a line sent to one connection at a fixed period.
struct Repeat {
    number: u32,
    conn: ConnId,
    device: String,
    period: Duration,
    line: String,
    due: tokio::time::Instant,
}

/// Feeds a macro's lines to the engine one by one, pausing at `/sleep` lines.
async fn run_macro(lines: Vec<String>, commands: mpsc::Sender<Command>) {
    for line in lines {
        if let Ok(Request::Sleep(pause)) = console::parse(&line) {
            tokio::time::sleep(pause).await;
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        if commands.send(Command::Line(line)).await.is_err() {
            return;
        }
    }
}

impl CommandHandler {
    fn new(shared: Arc<Shared>, commands: mpsc::Sender<Command>, tracker: TaskTracker) -> Self {
        Self {
            tracker,
            remote: None,
            shared,
            target: None,
            repeats: Vec::new(),
            next_repeat: 0,
            commands,
        }
    }

    /// `/push`: sends the file to each device named (or the current one, or
    /// every frames device); the answer says which took it and why others not.
    async fn push(&mut self, path: &str, name: Option<String>, to: Option<Vec<String>>) -> (bool, String) {
        let mut files = match read_files_to_send(&[path.to_string()]).await {
            Ok(files) => files,
            Err(why) => return (false, why),
        };
        let file = files.remove(0);
        let name = name.unwrap_or(file.name);
        // (name, channel) of each device asked for, or why it cannot be.
        let mut targets: Vec<Result<(String, registry::SessionSender), String>> = Vec::new();
        {
            let registry = self.shared.registry();
            let frames = |d: &registry::Device| {
                if d.protocol == "frames" {
                    Ok((d.name.clone(), d.commands.clone()))
                } else {
                    Err(format!("{} (it speaks {}: use /sz)", d.name, d.protocol))
                }
            };
            match &to {
                Some(list) if list.is_empty() => {
                    targets.extend(registry.live().filter(|d| d.protocol == "frames").map(frames));
                }
                Some(list) => {
                    for key in list {
                        targets.push(match registry.find(key) {
                            Some(d) => frames(d),
                            None => Err(format!("{key} (no such device)")),
                        });
                    }
                }
                None => {}
            }
        }
        if to.is_none() {
            match self.resolve_target() {
                Ok((conn, device, tx)) => {
                    let protocol = self.shared.registry().get(conn).map(|d| d.protocol);
                    targets.push(if protocol == Some("frames") {
                        Ok((device, tx))
                    } else {
                        Err(format!(
                            "{device} (it speaks {}: use /sz)",
                            protocol.unwrap_or("nothing yet")
                        ))
                    });
                }
                Err(e) => return (false, e),
            }
        }
        if targets.is_empty() {
            return (
                false,
                "no native-frames device is connected; nothing was sent".into(),
            );
        }
        let mut sent = Vec::new();
        let mut not = Vec::new();
        for target in targets {
            match target {
                Ok((device, tx)) => {
                    let command = SessionCommand::Push {
                        name: name.clone(),
                        data: file.data.clone(),
                    };
                    if tx.send(command).await.is_ok() {
                        sent.push(device);
                    } else {
                        not.push(format!("{device} (just disconnected)"));
                    }
                }
                Err(why) => not.push(why),
            }
        }
        let mut said = if sent.is_empty() {
            String::new()
        } else {
            format!(
                "pushing {name} ({}) to {}",
                crate::text::size(file.data.len() as u64),
                sent.join(", ")
            )
        };
        if !not.is_empty() {
            if !said.is_empty() {
                said.push_str("; ");
            }
            said.push_str(&format!("not to {}", not.join(", ")));
        }
        (!sent.is_empty(), said)
    }

    /// `/rz`: the answer to give.
    async fn ymodem_receive(&mut self) -> (bool, String) {
        let (conn, name, tx) = match self.resolve_target() {
            Ok(target) => target,
            Err(e) => return (false, e),
        };
        if let Some(why) = self.no_ymodem(conn, &name) {
            return (false, why);
        }
        if tx.send(SessionCommand::YmodemReceive).await.is_err() {
            return (false, format!("{name} has just disconnected"));
        }
        (
            true,
            format!(
                "receiving from {name} by YMODEM: start its send now (sz --ymodem FILE, or the board's menu); files go to its folder"
            ),
        )
    }

    /// `/sz PATH...`: the answer to give.
    async fn ymodem_send(&mut self, paths: &[String]) -> (bool, String) {
        let (conn, name, tx) = match self.resolve_target() {
            Ok(target) => target,
            Err(e) => return (false, e),
        };
        if let Some(why) = self.no_ymodem(conn, &name) {
            return (false, why);
        }
        let files = match read_files_to_send(paths).await {
            Ok(files) => files,
            Err(why) => return (false, why),
        };
        let n = files.len();
        if tx.send(SessionCommand::YmodemSend(files)).await.is_err() {
            return (false, format!("{name} has just disconnected"));
        }
        (
            true,
            format!(
                "sending {n} file(s) to {name} by YMODEM: waiting up to 60 s for it to ask (start its receive now)"
            ),
        )
    }

    /// Why `/rz` or `/sz` cannot run on this device, if it cannot.
    fn no_ymodem(&self, conn: ConnId, name: &str) -> Option<String> {
        let protocol = self.shared.registry().get(conn).map(|d| d.protocol)?;
        (protocol == "frames").then(|| {
            format!("{name} speaks native frames, which carry files themselves; YMODEM is for text links")
        })
    }

    async fn open_link(&mut self, command: &str, target: links::Target) {
        let what = target.describe();
        match links::start(&self.shared, &self.tracker, target) {
            Ok(name) => {
                self.reply(command, true, format!("opening {what} as {name}"), None)
                    .await;
            }
            Err(why) => self.reply(command, false, why, None).await,
        }
    }

    /// Sends every repeat that is due to its device; a repeat whose device has
    /// gone stops, with a notice.
    async fn run_repeats(&mut self) {
        let now = tokio::time::Instant::now();
        let mut gone = Vec::new();
        for r in self.repeats.iter_mut().filter(|r| r.due <= now) {
            r.due = now + r.period;
            let tx = self.shared.registry().get(r.conn).map(|d| d.commands.clone());
            let command = match console::parse(&r.line) {
                Ok(Request::Send(text)) => SessionCommand::Send(text),
                Ok(Request::Bytes(bytes)) => SessionCommand::SendBytes(bytes),
                _ => continue,
            };
            // try_send: a device that cannot keep up skips a beat instead of
            // holding up every other command.
            match tx {
                Some(tx) if !tx.is_closed() => {
                    let _ = tx.try_send(command);
                }
                _ => gone.push(r.number),
            }
        }
        for number in gone {
            if let Some(at) = self.repeats.iter().position(|r| r.number == number) {
                let r = self.repeats.remove(at);
                let said = format!("repeat {number} stopped: {} disconnected", r.device);
                self.reply(&format!("/every {:?} {}", r.period, r.line), false, said, None)
                    .await;
            }
        }
    }

    /// Returns why the engine should stop.
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) -> String {
        let mut stats_tick = tokio::time::interval(STATS_EVERY);
        stats_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_counters = Vec::new();
        loop {
            let command = tokio::select! {
                _ = self.shared.cancel.cancelled() => return "stopped".into(),
                c = commands.recv() => c,
                _ = tokio::time::sleep_until(self.repeats.iter().map(|r| r.due).min().unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600))), if !self.repeats.is_empty() => {
                    self.run_repeats().await;
                    continue;
                }
                _ = stats_tick.tick() => {
                    let counters = self.counters();
                    if counters != last_counters {
                        self.shared.emit(EventKind::Stats { devices: counters.clone() }).await;
                        last_counters = counters;
                    }
                    continue;
                }
            };
            match command {
                Some(Command::Select(conn)) => {
                    // A connection that has gone stays the target (plain text then says
                    // so) rather than falling back to whichever device is left.
                    self.target = conn.map(|c| {
                        let live = self.shared.registry().get(c).map(|d| d.name.clone());
                        let known = self.target.as_ref().filter(|t| t.0 == c).map(|t| t.1.clone());
                        (c, live.or(known).unwrap_or_default())
                    });
                }
                Some(Command::Line(line)) => {
                    if self.line(&line).await {
                        return "the operator typed /quit".into();
                    }
                }
                Some(Command::Remote { line, device, tag }) => {
                    let quits = matches!(console::parse(&line), Ok(Request::Quit));
                    self.remote = Some(Remote { device, tag });
                    if quits {
                        let said = "/quit is not taken over MQTT: stop the console where it runs".to_string();
                        self.reply(line.trim(), false, said, None).await;
                    } else {
                        self.line(&line).await;
                    }
                    self.remote = None;
                }
                Some(Command::Shutdown(reason)) => return reason,
                None => return "the front end closed".into(),
            }
        }
    }

    fn counters(&self) -> Vec<ConnCounters> {
        self.shared
            .registry()
            .live()
            .map(|d| ConnCounters {
                conn: d.conn,
                bytes_in: d.stats.bytes_in.load(std::sync::atomic::Ordering::Relaxed),
                bytes_out: d.stats.bytes_out.load(std::sync::atomic::Ordering::Relaxed),
                crc_errors: d.stats.crc_errors.load(std::sync::atomic::Ordering::Relaxed),
                rewinds: d.stats.rewinds.load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect()
    }

    /// Handles one line; true when it asks to quit.
    async fn line(&mut self, line: &str) -> bool {
        let command = line.trim().to_string();
        let request = match console::parse(line) {
            Ok(r) => r,
            Err(text) => {
                self.reply(&command, false, text, None).await;
                return false;
            }
        };
        match request {
            Request::Nothing => {}
            Request::Send(text) => match self.resolve_target() {
                Ok((_, name, tx)) => {
                    let ok = tx.send(SessionCommand::Send(text)).await.is_ok();
                    let said = if ok {
                        format!("sent to {name}")
                    } else {
                        format!("{name} has just disconnected")
                    };
                    self.reply(&command, ok, said, None).await;
                }
                Err(e) => self.reply(&command, false, e, None).await,
            },
            Request::Target(key) => {
                let found = self
                    .shared
                    .registry()
                    .find(&key)
                    .map(|d| (d.conn, d.name.clone()));
                match found {
                    Some((conn, name)) => {
                        self.target = Some((conn, name.clone()));
                        // The device rides along so front ends can follow the choice.
                        let chosen = self.shared.registry().get(conn).map(|d| vec![d.info()]);
                        let text = format!("plain text now goes to {name}");
                        self.reply(&command, true, text, chosen).await;
                    }
                    None => {
                        let e = format!("no device called {key:?}; {}", self.who_is_connected());
                        self.reply(&command, false, e, None).await;
                    }
                }
            }
            Request::All(text) => {
                let targets: Vec<_> = self
                    .shared
                    .registry()
                    .live()
                    .map(|d| d.commands.clone())
                    .collect();
                let mut sent = 0;
                for tx in targets {
                    if tx.send(SessionCommand::Send(text.clone())).await.is_ok() {
                        sent += 1;
                    }
                }
                let ok = sent > 0;
                let said = if ok {
                    format!("sent to {sent} device(s)")
                } else {
                    "no device is connected".into()
                };
                self.reply(&command, ok, said, None).await;
            }
            Request::List => {
                let devices: Vec<DeviceInfo> = self.shared.registry().live().map(|d| d.info()).collect();
                let text = list_text(&devices, self.target.as_ref().map(|t| t.0));
                self.reply(&command, true, text, Some(devices)).await;
            }
            Request::Kick(key) => {
                let found = self
                    .shared
                    .registry()
                    .find(&key)
                    .map(|d| (d.name.clone(), d.commands.clone()));
                match found {
                    Some((name, tx)) => {
                        let _ = tx.send(SessionCommand::Kick).await;
                        self.reply(&command, true, format!("disconnecting {name}"), None)
                            .await;
                    }
                    None => {
                        let e = format!("no device called {key:?}; {}", self.who_is_connected());
                        self.reply(&command, false, e, None).await;
                    }
                }
            }
            Request::Serial(spec) => self.open_link(&command, links::Target::Serial(spec)).await,
            Request::Connect(spec) => self.open_link(&command, links::Target::Connect(spec)).await,
            Request::Close(key) => {
                // By the device's name now (a HELLO may have renamed it), the
                // link's own name, its port or address, or its number.
                let live = self.shared.registry().find(&key).map(|d| d.conn);
                let closed = {
                    let links = self.shared.links();
                    let found = links.iter().find(|l| {
                        Some(l.conn) == live
                            || l.name == key
                            || l.target.describe() == key
                            || l.conn.to_string() == key
                    });
                    found.map(|l| {
                        l.close();
                        l.name.clone()
                    })
                };
                match closed {
                    Some(name) => {
                        self.reply(&command, true, format!("closing {name}"), None).await;
                    }
                    None => {
                        let open: Vec<String> = self.shared.links().iter().map(|l| l.name.clone()).collect();
                        let said = if open.is_empty() {
                            format!(
                                "no link called {key:?}: no serial port or outgoing connection is open (/kick disconnects a device that connected)"
                            )
                        } else {
                            format!("no link called {key:?}; open links: {}", open.join(", "))
                        };
                        self.reply(&command, false, said, None).await;
                    }
                }
            }
            Request::Bytes(bytes) => match self.resolve_target() {
                Ok((_, name, tx)) => {
                    let n = bytes.len();
                    let ok = tx.send(SessionCommand::SendBytes(bytes)).await.is_ok();
                    let said = if ok {
                        format!("sent {n} bytes to {name}")
                    } else {
                        format!("{name} has just disconnected")
                    };
                    self.reply(&command, ok, said, None).await;
                }
                Err(e) => self.reply(&command, false, e, None).await,
            },
            Request::Push { path, name, to } => {
                let (ok, said) = self.push(&path, name, to).await;
                self.reply(&command, ok, said, None).await;
            }
            Request::Rz => {
                let (ok, said) = self.ymodem_receive().await;
                self.reply(&command, ok, said, None).await;
            }
            Request::Sz(paths) => {
                let (ok, said) = self.ymodem_send(&paths).await;
                self.reply(&command, ok, said, None).await;
            }
            Request::Eol(eol) => match self.resolve_target() {
                Ok((conn, name, tx)) => {
                    let ok = tx.send(SessionCommand::SetEol(eol)).await.is_ok();
                    self.shared.registry().set_eol(conn, eol.name());
                    let chosen = self.shared.registry().get(conn).map(|d| vec![d.info()]);
                    let said = format!("text to {name} now ends with {}", eol.name());
                    self.reply(&command, ok, said, chosen).await;
                }
                Err(e) => self.reply(&command, false, e, None).await,
            },
            Request::Every { period, line } => match self.resolve_target() {
                Ok((conn, name, _)) => {
                    self.next_repeat += 1;
                    let number = self.next_repeat;
                    self.repeats.push(Repeat {
                        number,
                        conn,
                        device: name.clone(),
                        period,
                        line: line.clone(),
                        due: tokio::time::Instant::now(),
                    });
                    let said = format!(
                        "repeat {number}: {line:?} to {name} every {period:?} (/every off {number} stops it)"
                    );
                    self.reply(&command, true, said, None).await;
                }
                Err(e) => self.reply(&command, false, e, None).await,
            },
            Request::EveryOff(which) => {
                let before = self.repeats.len();
                self.repeats.retain(|r| which.is_some_and(|n| r.number != n));
                let stopped = before - self.repeats.len();
                let ok = stopped > 0;
                let said = match (which, ok) {
                    (_, true) => format!("stopped {stopped} repeat(s)"),
                    (Some(n), false) => format!("there is no repeat {n}; /every lists them"),
                    (None, false) => "nothing is repeating".into(),
                };
                self.reply(&command, ok, said, None).await;
            }
            Request::EveryList => {
                let said = if self.repeats.is_empty() {
                    "nothing is repeating; /every 2s TEXT starts a repeat".to_string()
                } else {
                    self.repeats
                        .iter()
                        .map(|r| format!("{}: {:?} to {} every {:?}", r.number, r.line, r.device, r.period))
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                self.reply(&command, true, said, None).await;
            }
            Request::Macro(name) => {
                let found = self.shared.settings.macros.get(&name).or_else(|| {
                    let upper = name.to_ascii_uppercase();
                    self.shared.settings.macros.get(&upper)
                });
                match found {
                    Some(body) => {
                        let lines: Vec<String> = body.lines().map(str::to_string).collect();
                        tokio::spawn(run_macro(lines, self.commands.clone()));
                        self.reply(&command, true, format!("running macro {name}"), None)
                            .await;
                    }
                    None => {
                        let known: Vec<&str> =
                            self.shared.settings.macros.keys().map(String::as_str).collect();
                        let said = if known.is_empty() {
                            format!(
                                "no macro called {name:?}; define macros in config.toml under [macros] or [macros.named]"
                            )
                        } else {
                            format!("no macro called {name:?}; there are {}", known.join(", "))
                        };
                        self.reply(&command, false, said, None).await;
                    }
                }
            }
            Request::Find(_) | Request::Filter(_) | Request::View(_) => {
                let said = "/find, /filter and /view change the full-screen console's conversation pane; headless output has every line (use grep)".to_string();
                self.reply(&command, false, said, None).await;
            }
            Request::Sleep(_) => {
                let said =
                    "/sleep pauses between the lines of a macro; typed alone it does nothing".to_string();
                self.reply(&command, false, said, None).await;
            }
            Request::Help => self.reply(&command, true, console::help_text(), None).await,
            Request::Quit => {
                self.reply(&command, true, "stopping the console".into(), None)
                    .await;
                return true;
            }
        }
        false
    }

    /// The device plain text goes to: the chosen one, else the only one connected.
    fn resolve_target(&self) -> Result<(ConnId, String, registry::SessionSender), String> {
        let registry = self.shared.registry();
        if let Some(name) = self.remote.as_ref().and_then(|r| r.device.as_ref()) {
            return match registry.find(name) {
                Some(d) => Ok((d.conn, d.name.clone(), d.commands.clone())),
                None => Err(format!("no device called {name:?}; {}", describe_live(&registry))),
            };
        }
        if let Some((conn, name)) = &self.target {
            let back = || registry.live().find(|d| &d.name == name);
            return match registry.get(*conn).or_else(back) {
                Some(d) => Ok((d.conn, d.name.clone(), d.commands.clone())),
                None => Err(format!(
                    "the device chosen with /to has disconnected; {}",
                    describe_live(&registry)
                )),
            };
        }
        let live: Vec<_> = registry.live().collect();
        match live.as_slice() {
            [only] => Ok((only.conn, only.name.clone(), only.commands.clone())),
            [] => Err("no device is connected yet; nothing was sent".into()),
            many => Err(format!(
                "{} devices are connected ({}); choose one with /to NAME, or send to all with /all TEXT",
                many.len(),
                many.iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    fn who_is_connected(&self) -> String {
        describe_live(&self.shared.registry())
    }

    async fn reply(&self, command: &str, ok: bool, text: String, devices: Option<Vec<DeviceInfo>>) {
        self.shared
            .emit(EventKind::Reply {
                command: command.to_string(),
                ok,
                text,
                devices,
                id: self.remote.as_ref().map(|r| r.tag.clone()),
            })
            .await;
    }
}

fn describe_live(registry: &Registry) -> String {
    let names: Vec<_> = registry.live().map(|d| d.name.as_str()).collect();
    if names.is_empty() {
        "no device is connected".into()
    } else {
        format!("connected: {}", names.join(", "))
    }
}

fn list_text(devices: &[DeviceInfo], target: Option<ConnId>) -> String {
    if devices.is_empty() {
        return "no device is connected".into();
    }
    // Compact enough for an 80-column terminal; `*` marks the target.
    let mut text = format!("{} device(s) connected:", devices.len());
    for d in devices {
        let mark = if Some(d.conn) == target { "*" } else { " " };
        text.push_str(&format!(
            "\n{mark}#{} {} {} {} up {}s in {} out {}",
            d.conn,
            d.device,
            d.protocol,
            d.peer,
            d.connected_secs,
            crate::text::size(d.bytes_in),
            crate::text::size(d.bytes_out)
        ));
    }
    text
}
