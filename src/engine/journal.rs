//! What survives the console: each device's conversation.log and the received.jsonl
//! history. One thread owns these files, so appends never block the async workers
//! and lines from different sessions never interleave mid-line.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::event::{Direction, Event, EventKind};
use crate::text::for_terminal;

pub const MANIFEST: &str = "received.jsonl";
pub const CONVERSATION_LOG: &str = "conversation.log";

/// Open conversation logs kept at once; more are closed and reopened on demand.
const MAX_OPEN_LOGS: usize = 256;

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

enum Entry {
    Conversation { device: String, line: String },
    Saved(ReceivedRecord),
    Forget(String),
    Stop,
}

#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Entry>,
}

pub struct JournalThread(JoinHandle<()>);

impl JournalThread {
    pub fn join(self) {
        let _ = self.0.join();
    }
}

impl Journal {
    pub fn start(
        dir: PathBuf,
        log_conversations: bool,
        events: mpsc::Sender<Event>,
    ) -> (Journal, JournalThread) {
        let (tx, rx) = mpsc::channel(4096);
        let handle = std::thread::Builder::new()
            .name("benchlink-journal".into())
            .spawn(move || Writer::new(dir, log_conversations, events).run(rx));
        let handle = match handle {
            Ok(h) => h,
            // Without a thread there is no journal; keep the console running.
            Err(_) => std::thread::spawn(|| {}),
        };
        (Journal { tx }, JournalThread(handle))
    }

    pub async fn conversation(&self, device: &str, direction: Direction, text: &str) {
        let arrow = match direction {
            Direction::In => "in ",
            Direction::Out => "out",
        };
        let ts = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
        let line = format!("{ts} {arrow} {}\n", for_terminal(text));
        let _ = self
            .tx
            .send(Entry::Conversation {
                device: device.to_string(),
                line,
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
    events: mpsc::Sender<Event>,
    logs: HashMap<String, File>,
    /// Devices whose log already failed once: one error event, not one per line.
    failed: std::collections::HashSet<String>,
}

impl Writer {
    fn new(dir: PathBuf, log_conversations: bool, events: mpsc::Sender<Event>) -> Self {
        Self {
            dir,
            log_conversations,
            events,
            logs: HashMap::new(),
            failed: Default::default(),
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Entry>) {
        while let Some(entry) = rx.blocking_recv() {
            match entry {
                Entry::Conversation { device, line } if self.log_conversations => {
                    self.append_log(&device, &line)
                }
                Entry::Conversation { .. } => {}
                Entry::Saved(record) => self.append_manifest(&record),
                Entry::Forget(device) => {
                    self.logs.remove(&device);
                }
                Entry::Stop => break,
            }
        }
    }

    fn append_log(&mut self, device: &str, line: &str) {
        if !self.logs.contains_key(device) {
            if self.logs.len() >= MAX_OPEN_LOGS {
                self.logs.clear();
            }
            let folder = self.dir.join(device);
            let opened = std::fs::create_dir_all(&folder).and_then(|()| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(folder.join(CONVERSATION_LOG))
            });
            match opened {
                Ok(f) => {
                    self.logs.insert(device.to_string(), f);
                }
                Err(e) => {
                    return self.report(
                        device,
                        &format!("cannot open the conversation log of {device}: {e}"),
                    );
                }
            }
        }
        if let Some(f) = self.logs.get_mut(device)
            && let Err(e) = f.write_all(line.as_bytes())
        {
            self.logs.remove(device);
            self.report(
                device,
                &format!("cannot append to the conversation log of {device}: {e}"),
            );
        }
    }

    fn append_manifest(&mut self, record: &ReceivedRecord) {
        let Ok(mut line) = serde_json::to_string(record) else {
            return;
        };
        line.push('\n');
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(MANIFEST))
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
            let _ = self.events.blocking_send(Event::now(EventKind::Error {
                message: message.to_string(),
            }));
        }
    }
}
