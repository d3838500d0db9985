//! What survives the console: each device's conversation.log and the received.jsonl
//! history. One thread owns these files, so appends never block the async workers
//! and lines from different sessions never interleave mid-line.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::event::{Event, EventKind};
use super::event_queue::EventSender;
use super::safe_fs;

pub const MANIFEST: &str = "received.jsonl";
pub const CONVERSATION_LOG: &str = "conversation.log";
/// The previous conversation.log, once it reached the size cap.
pub const ROTATED_LOG: &str = "conversation.log.1";

/// Bytes of a conversation log held before a write (written sooner when the
/// queue of lines is empty).
const LOG_BUFFER: usize = 16 * 1024;
/// Open conversation logs kept at once; more are closed and reopened on demand.
pub const MAX_OPEN_LOGS: usize = 128;

/// One line of received.jsonl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedRecord {
    pub time: String,
    pub device: String,
    pub peer: String,
    pub name: String,
    pub path: String,
    pub size: u64,
    pub crc32: u32,
    pub seconds: f64,
    pub protocol: String,
}

/// Bytes of log lines waiting for the journal thread; past this, sessions wait
/// for the disk (which slows their devices down) rather than memory growing.
const MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;

enum Entry {
    Conversation {
        device: String,
        line: String,
        /// Held until the line is written: the queue's byte bound.
        _room: Option<OwnedSemaphorePermit>,
    },
    Saved(ReceivedRecord),
    Forget(String),
    Stop,
}

#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Entry>,
    room: Arc<Semaphore>,
}

pub struct JournalThread(JoinHandle<()>);

impl JournalThread {
    pub fn join(self) {
        let _ = self.0.join();
    }
}

impl Journal {
    /// `max_log_size`: a conversation.log that would grow past it is renamed
    /// conversation.log.1 (replacing the older one) and a new one is started.
    pub fn start(
        dir: PathBuf,
        log_conversations: bool,
        max_log_size: u64,
        events: EventSender,
    ) -> (Journal, JournalThread) {
        let (tx, rx) = mpsc::channel(4096);
        let handle = std::thread::Builder::new()
            .name("benchlink-journal".into())
            .spawn(move || Writer::new(dir, log_conversations, max_log_size, events).run(rx));
        let handle = match handle {
            Ok(h) => h,
            // Without a thread there is no journal; keep the console running.
            Err(_) => std::thread::spawn(|| {}),
        };
        let room = Arc::new(Semaphore::new(MAX_QUEUED_BYTES));
        (Journal { tx, room }, JournalThread(handle))
    }

    /// Lines of a device's conversation as conversation.log has them (each
    /// with its time and direction, escaped for a terminal, ending in a
    /// newline), gathered by the session: one entry, one wake-up of the writer.
    pub async fn conversation(&self, device: &str, lines: String) {
        if lines.is_empty() {
            return;
        }
        let cost = lines.len().clamp(1, MAX_QUEUED_BYTES) as u32;
        let room = self.room.clone().acquire_many_owned(cost).await.ok();
        let _ = self
            .tx
            .send(Entry::Conversation {
                device: device.to_string(),
                line: lines,
                _room: room,
            })
            .await;
    }

    pub async fn saved(&self, record: ReceivedRecord) {
        let _ = self.tx.send(Entry::Saved(record)).await;
    }

    pub async fn forget(&self, device: &str) {
        let _ = self.tx.send(Entry::Forget(device.to_string())).await;
    }

    pub async fn stop(&self) {
        let _ = self.tx.send(Entry::Stop).await;
    }
}

struct Writer {
    dir: PathBuf,
    log_conversations: bool,
    max_log_size: u64,
    events: EventSender,
    /// Open logs with their current size.
    logs: HashMap<String, (BufWriter<File>, u64)>,
    /// Devices whose log already failed once: one error event, not one per line.
    failed: std::collections::HashSet<String>,
}

impl Writer {
    fn new(dir: PathBuf, log_conversations: bool, max_log_size: u64, events: EventSender) -> Self {
        Self {
            dir,
            log_conversations,
            max_log_size,
            events,
            logs: HashMap::new(),
            failed: Default::default(),
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Entry>) {
        loop {
            // Lines are buffered while more wait and written once the queue is
            // empty: a device streaming text costs one write per batch, not per line.
            let entry = match rx.try_recv() {
                Ok(entry) => entry,
                Err(mpsc::error::TryRecvError::Empty) => {
                    self.flush_logs();
                    match rx.blocking_recv() {
                        Some(entry) => entry,
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            match entry {
                Entry::Conversation { device, line, .. } if self.log_conversations => {
                    self.append_log(&device, &line)
                }
                Entry::Conversation { .. } => {}
                Entry::Saved(record) => self.append_manifest(&record),
                Entry::Forget(device) => {
                    self.close_log(&device);
                }
                Entry::Stop => break,
            }
        }
        self.flush_logs();
    }

    /// Writes what the open logs hold.
    fn flush_logs(&mut self) {
        let mut failed = Vec::new();
        for (device, (f, _)) in &mut self.logs {
            if let Err(e) = f.flush() {
                failed.push((device.clone(), e));
            }
        }
        for (device, e) in failed {
            self.logs.remove(&device);
            self.report(
                &device,
                &format!("cannot append to the conversation log of {device}: {e}"),
            );
        }
    }

    /// Closes a device's log, writing what it holds first.
    fn close_log(&mut self, device: &str) {
        if let Some((mut f, _)) = self.logs.remove(device)
            && let Err(e) = f.flush()
        {
            self.report(
                device,
                &format!("cannot append to the conversation log of {device}: {e}"),
            );
        }
    }

    /// Appends a batch of lines, rotating between lines when the cap is reached.
    fn append_log(&mut self, device: &str, lines: &str) {
        // The common case: an open log with room for all of them, one write.
        if let Some((_, size)) = self.logs.get(device)
            && *size + lines.len() as u64 <= self.max_log_size
        {
            return self.write_line(device, lines);
        }
        for line in lines.split_inclusive('\n') {
            self.append_line(device, line);
        }
    }

    fn append_line(&mut self, device: &str, line: &str) {
        // The common case first: an open log with room.
        if let Some((_, size)) = self.logs.get(device)
            && (*size == 0 || *size + line.len() as u64 <= self.max_log_size)
        {
            return self.write_line(device, line);
        }
        let folder = self.dir.join(device);
        let path = folder.join(CONVERSATION_LOG);
        if let Some((_, size)) = self.logs.get(device)
            && *size > 0
            && size + line.len() as u64 > self.max_log_size
        {
            self.close_log(device);
            if let Err(e) = std::fs::rename(&path, folder.join(ROTATED_LOG)) {
                return self.report(
                    device,
                    &format!("cannot rotate the conversation log of {device}: {e}"),
                );
            }
        }
        if !self.logs.contains_key(device) {
            if self.logs.len() >= MAX_OPEN_LOGS {
                self.flush_logs();
                self.logs.clear();
            }
            let opened = safe_fs::real_dir(&folder).and_then(|()| {
                let file = safe_fs::open(OpenOptions::new().create(true).append(true), &path)?;
                let size = file.metadata()?.len();
                Ok((file, size))
            });
            match opened {
                Ok((file, size)) => {
                    let log = BufWriter::with_capacity(LOG_BUFFER, file);
                    self.logs.insert(device.to_string(), (log, size));
                }
                Err(e) => {
                    return self.report(
                        device,
                        &format!("cannot open the conversation log of {device}: {e}"),
                    );
                }
            }
        }
        self.write_line(device, line);
    }

    /// Writes to a device's open log.
    fn write_line(&mut self, device: &str, line: &str) {
        if let Some((f, size)) = self.logs.get_mut(device) {
            match f.write_all(line.as_bytes()) {
                Ok(()) => *size += line.len() as u64,
                Err(e) => {
                    self.logs.remove(device);
                    self.report(
                        device,
                        &format!("cannot append to the conversation log of {device}: {e}"),
                    );
                }
            }
        }
    }

    fn append_manifest(&mut self, record: &ReceivedRecord) {
        let Ok(mut line) = serde_json::to_string(record) else {
            return;
        };
        line.push('\n');
        let written = safe_fs::open(
            OpenOptions::new().create(true).append(true),
            &self.dir.join(MANIFEST),
        )
        .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            self.report(
                MANIFEST,
                &format!("cannot append to {}: {e}", self.dir.join(MANIFEST).display()),
            );
        }
    }

    fn report(&mut self, key: &str, message: &str) {
        if self.failed.insert(key.to_string()) {
            self.events.send(Event::now(EventKind::Error {
                message: message.to_string(),
            }));
        }
    }
}
