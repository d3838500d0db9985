//! The TUI's state. It changes only through [`App::on_event`] (engine events),
//! [`App::on_key`] / [`App::on_mouse`] (the operator) and [`App::tick`] (the clock),
//! so it is unit-tested without a terminal; rendering only reads it.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Local};
use crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler;

use super::layout::{Pane, Panes};
use crate::console::COMMANDS;
use crate::engine::journal::ReceivedRecord;
use crate::engine::{Command, ConnId, Direction, Event, EventKind};

/// Conversation entries kept per device, and in the all-devices view.
pub const KEEP_PER_DEVICE: usize = 2_000;
pub const KEEP_ALL: usize = 5_000;
/// Received files listed.
pub const KEEP_RECEIVED: usize = 1_000;
/// Seconds of throughput history.
pub const HISTORY_SECONDS: usize = 60;
/// How long a disconnected device stays (greyed) in the list.
pub const KEEP_DISCONNECTED_SECS: i64 = 60;
/// Prompt history entries kept.
pub const KEEP_HISTORY: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Prompt,
    Connections,
    Conversation,
    Transfers,
    Received,
}

impl Focus {
    const ORDER: [Focus; 5] = [
        Focus::Prompt,
        Focus::Connections,
        Focus::Conversation,
        Focus::Transfers,
        Focus::Received,
    ];

    fn step(self, forward: bool) -> Focus {
        let i = Self::ORDER.iter().position(|f| *f == self).unwrap_or(0);
        let n = Self::ORDER.len();
        Self::ORDER[if forward { (i + 1) % n } else { (i + n - 1) % n }]
    }
}

/// What the event loop must do for the app (the app itself does no I/O).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Engine(Command),
    /// Show this received file (image or hex) in the preview overlay.
    Preview(String),
    /// Put this text on the operator's clipboard (OSC 52: works over SSH and in
    /// tmux with `set-clipboard on`).
    Copy(String),
    /// Ctrl-Z: give the terminal back and stop, until the shell's `fg`.
    Suspend,
    /// Read the previewed file's bytes from this offset (hex preview paging).
    PreviewAt(String, u64),
    Quit,
}

/// The last [`RAW_KEPT`] bytes a device sent, with the offset of the first one
/// kept, so the hex view shows true offsets into the device's stream.
#[derive(Debug, Clone, Default)]
pub struct RawBytes {
    pub bytes: VecDeque<u8>,
    /// Stream offset of `bytes[0]`.
    pub first: u64,
}

/// Bytes kept per device for the hex view.
pub const RAW_KEPT: usize = 256 * 1024;

impl RawBytes {
    pub fn push(&mut self, data: &[u8]) {
        self.bytes.extend(data);
        let over = self.bytes.len().saturating_sub(RAW_KEPT);
        if over > 0 {
            // Whole rows of 16 go, so offsets stay aligned.
            let drop = over.div_ceil(16) * 16;
            let drop = drop.min(self.bytes.len());
            self.bytes.drain(..drop);
            self.first += drop as u64;
        }
    }
}

/// The text being found and the match shown (an index into the visible conversation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Find {
    pub needle: String,
    pub current: Option<usize>,
}

/// Bytes the hex preview moves on PgUp/PgDn.
pub const PREVIEW_PAGE: u64 = 512;

/// How long a reply stays under the prompt.
const NOTICE_SECS: i64 = 10;

#[derive(Debug, Clone, PartialEq)]
pub enum DeviceState {
    Idle,
    Receiving {
        name: String,
        bytes: u64,
        size: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub conn: ConnId,
    pub name: String,
    pub protocol: String,
    pub peer: String,
    pub since: DateTime<Local>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Bytes per second received, over the last tick.
    pub rate_in: u64,
    pub state: DeviceState,
    pub gone_at: Option<DateTime<Local>>,
    /// The line ending chosen with `/eol`, if any.
    pub eol: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    In,
    Out,
    /// Connections, files, errors: the console's own remarks.
    System,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub ts: DateTime<Local>,
    pub conn: Option<ConnId>,
    pub device: String,
    pub kind: EntryKind,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TransferRow {
    pub conn: ConnId,
    pub device: String,
    pub name: String,
    pub size: Option<u64>,
    pub bytes: u64,
    pub started: DateTime<Local>,
    pub updated: DateTime<Local>,
    /// A resume: where it started (the rate counts only what came since).
    pub resumed_from: Option<u64>,
}

impl TransferRow {
    /// Average bytes per second since the start.
    pub fn rate(&self) -> f64 {
        let secs = (self.updated - self.started).num_milliseconds() as f64 / 1000.0;
        let moved = self.bytes.saturating_sub(self.resumed_from.unwrap_or(0));
        if secs > 0.0 { moved as f64 / secs } else { 0.0 }
    }

    pub fn eta_secs(&self) -> Option<u64> {
        let size = self.size?;
        let rate = self.rate();
        (rate > 0.0).then(|| (size.saturating_sub(self.bytes) as f64 / rate).ceil() as u64)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedRow {
    pub time: String,
    pub device: String,
    pub name: String,
    pub size: u64,
    /// None when saved; the reason when it failed.
    pub failure: Option<String>,
    /// The saved file (or the kept `.part`).
    pub path: Option<String>,
    /// A failed row that a later resume completed: the row now opens that file.
    pub superseded: bool,
}

impl ReceivedRow {
    pub fn from_record(r: ReceivedRecord) -> Self {
        let time = DateTime::parse_from_rfc3339(&r.time)
            .map(|t| t.with_timezone(&Local).format("%m-%d %H:%M").to_string())
            .unwrap_or(r.time);
        Self {
            time,
            device: r.device,
            name: r.name,
            size: r.size,
            failure: None,
            path: Some(r.path),
            superseded: false,
        }
    }

    pub fn is_image(&self) -> bool {
        let lower = self.name.to_ascii_lowercase();
        [".bmp", ".png", ".jpg", ".jpeg", ".gif"]
            .iter()
            .any(|e| lower.ends_with(e))
    }
}

/// What the preview overlay shows.
#[derive(Debug, Clone, PartialEq)]
pub enum PreviewContent {
    Loading,
    /// The image is decoded; the event loop holds the terminal-specific encoding.
    Image {
        width: u32,
        height: u32,
    },
    /// Not an image (or not decodable): hex and text of the first bytes.
    Hex(Vec<u8>),
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub path: String,
    pub content: PreviewContent,
}

/// A one-line answer shown above the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub ok: bool,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct App {
    pub now: DateTime<Local>,
    /// The notice shown and since when: replies expire after 10 s.
    notice_seen: Option<(String, DateTime<Local>)>,
    /// Function keys bound to macros in config.toml, with their first line.
    pub macro_keys: Vec<(String, String)>,
    pub listeners: Vec<(String, String)>,
    pub lan: Vec<String>,
    pub dir: String,
    pub devices: Vec<DeviceRow>,
    /// Where each connection is in `devices`: events for 10,000 devices stay cheap.
    device_index: HashMap<ConnId, usize>,
    /// The selected device: the prompt's target.
    pub selected: Option<ConnId>,
    pub conversations: HashMap<ConnId, VecDeque<Entry>>,
    pub all: VecDeque<Entry>,
    pub show_all: bool,
    /// Entries scrolled back from the tail; 0 follows the tail.
    pub scroll: usize,
    /// Long lines wrap (with a hanging indent); off, Left/Right scroll sideways.
    pub wrap: bool,
    /// Characters scrolled sideways when not wrapping.
    pub hscroll: usize,
    /// Timestamps with milliseconds.
    pub millis: bool,
    /// `/find`: the text and the entry (index in the visible conversation) shown.
    pub find: Option<Find>,
    /// `/filter`: only entries containing this text are shown.
    pub filter: Option<String>,
    /// `/view text|hex` (F4).
    pub view: crate::console::ViewMode,
    /// Lines the help overlay is scrolled down (it may be taller than the screen).
    pub help_scroll: u16,
    /// The last bytes each device sent, for the hex view.
    pub raw_in: HashMap<ConnId, RawBytes>,
    /// The hex preview's window: where it starts in the file, and the file's size.
    pub preview_offset: u64,
    pub preview_total: u64,
    pub transfers: Vec<TransferRow>,
    pub received: VecDeque<ReceivedRow>,
    pub received_selected: usize,
    pub files_saved: u64,
    pub bytes_saved: u64,
    pub rate_in: u64,
    pub history_all: VecDeque<u64>,
    pub history_device: HashMap<ConnId, VecDeque<u64>>,
    /// Bytes counted since the last tick, per connection.
    pending: HashMap<ConnId, u64>,
    pub focus: Focus,
    pub input: Input,
    pub history: Vec<String>,
    history_pos: Option<usize>,
    pub notice: Option<Notice>,
    /// A multi-line reply (/list) shown in an overlay.
    pub overlay: Option<(String, String)>,
    pub show_help: bool,
    pub show_log: bool,
    pub confirm_quit: bool,
    pub preview: Option<Preview>,
    pub stopped: Option<String>,
    /// The screen size of the last draw, so mouse positions map to panes.
    pub screen: Rect,
}

impl App {
    pub fn new(now: DateTime<Local>) -> Self {
        Self {
            now,
            help_scroll: 0,
            preview_offset: 0,
            preview_total: 0,
            raw_in: HashMap::new(),
            wrap: true,
            hscroll: 0,
            millis: false,
            find: None,
            filter: None,
            view: crate::console::ViewMode::Text,
            notice_seen: None,
            macro_keys: Vec::new(),
            listeners: Vec::new(),
            lan: Vec::new(),
            dir: String::new(),
            devices: Vec::new(),
            device_index: HashMap::new(),
            selected: None,
            conversations: HashMap::new(),
            all: VecDeque::new(),
            show_all: false,
            scroll: 0,
            transfers: Vec::new(),
            received: VecDeque::new(),
            received_selected: 0,
            files_saved: 0,
            bytes_saved: 0,
            rate_in: 0,
            history_all: VecDeque::new(),
            history_device: HashMap::new(),
            pending: HashMap::new(),
            focus: Focus::Prompt,
            input: Input::default(),
            history: Vec::new(),
            history_pos: None,
            notice: None,
            overlay: None,
            show_help: false,
            show_log: false,
            confirm_quit: false,
            preview: None,
            stopped: None,
            screen: Rect::default(),
        }
    }

    /// Received files from earlier runs (oldest first, as in received.jsonl).
    pub fn load_received(&mut self, records: impl IntoIterator<Item = ReceivedRecord>) {
        for r in records {
            self.files_saved += 1;
            self.bytes_saved += r.size;
            self.push_received(ReceivedRow::from_record(r));
        }
    }

    /// Newest first. The selection stays on the same file, unless it was on the
    /// newest, which it then follows.
    fn push_received(&mut self, row: ReceivedRow) {
        self.received.push_front(row);
        self.received.truncate(KEEP_RECEIVED);
        if self.received_selected > 0 {
            self.received_selected = (self.received_selected + 1).min(self.received.len() - 1);
        }
    }

    pub fn device(&self, conn: ConnId) -> Option<&DeviceRow> {
        self.device_index.get(&conn).and_then(|&i| self.devices.get(i))
    }

    fn device_mut(&mut self, conn: ConnId) -> Option<&mut DeviceRow> {
        let i = *self.device_index.get(&conn)?;
        self.devices.get_mut(i)
    }

    /// The row of `conn` in the connections list.
    pub fn device_position(&self, conn: ConnId) -> Option<usize> {
        self.device_index.get(&conn).copied()
    }

    pub fn selected_device(&self) -> Option<&DeviceRow> {
        self.selected.and_then(|c| self.device(c))
    }

    pub fn live_devices(&self) -> usize {
        self.devices.iter().filter(|d| d.gone_at.is_none()).count()
    }

    pub fn transfer_in_flight(&self) -> bool {
        !self.transfers.is_empty()
    }

    /// The conversation the pane shows: the selected device's, or everyone's.
    pub fn visible_conversation(&self) -> Option<&VecDeque<Entry>> {
        if self.show_all {
            return Some(&self.all);
        }
        self.selected.and_then(|c| self.conversations.get(&c))
    }

    fn log(
        &mut self,
        ts: DateTime<Local>,
        conn: Option<ConnId>,
        device: &str,
        kind: EntryKind,
        text: String,
    ) {
        let entry = Entry {
            ts,
            conn,
            device: device.to_string(),
            kind,
            text,
        };
        if let Some(conn) = conn {
            let list = self.conversations.entry(conn).or_default();
            list.push_back(entry.clone());
            if list.len() > KEEP_PER_DEVICE {
                list.pop_front();
            }
        }
        self.all.push_back(entry);
        if self.all.len() > KEEP_ALL {
            self.all.pop_front();
        }
    }

    /// Applies one engine event. Returns actions for the loop (e.g. the first device
    /// to connect becomes the target).
    pub fn on_event(&mut self, event: Event) -> Vec<Action> {
        let ts = event.ts;
        let mut actions = Vec::new();
        match event.kind {
            EventKind::Listening { addr, protocol, dir } => {
                self.listeners.push((addr, protocol));
                self.dir = dir;
            }
            EventKind::Connected {
                conn,
                device,
                peer,
                protocol,
            } => {
                self.device_index.insert(conn, self.devices.len());
                self.devices.push(DeviceRow {
                    conn,
                    name: device.clone(),
                    protocol: protocol.clone(),
                    peer: peer.clone(),
                    since: ts,
                    bytes_in: 0,
                    bytes_out: 0,
                    rate_in: 0,
                    state: DeviceState::Idle,
                    gone_at: None,
                    eol: None,
                });
                self.log(
                    ts,
                    Some(conn),
                    &device,
                    EntryKind::System,
                    format!("connected from {peer} ({protocol})"),
                );
                let target_gone = self.selected_device().is_none_or(|d| d.gone_at.is_some());
                if target_gone {
                    self.selected = Some(conn);
                    actions.push(Action::Engine(Command::Select(Some(conn))));
                }
            }
            EventKind::Text {
                conn,
                device,
                direction,
                text,
                raw,
            } => {
                if let (Direction::In, Some(raw)) = (direction, raw) {
                    self.raw_in.entry(conn).or_default().push(&raw);
                }
                let kind = match direction {
                    Direction::In => EntryKind::In,
                    Direction::Out => EntryKind::Out,
                };
                self.log(ts, Some(conn), &device, kind, text);
            }
            EventKind::FileStarted {
                conn,
                device,
                name,
                size,
                resumed_from,
            } => {
                let held = resumed_from.unwrap_or(0);
                self.transfers.push(TransferRow {
                    conn,
                    device: device.clone(),
                    name: name.clone(),
                    size,
                    bytes: held,
                    started: ts,
                    updated: ts,
                    resumed_from,
                });
                if let Some(d) = self.device_mut(conn) {
                    d.state = DeviceState::Receiving {
                        name: name.clone(),
                        bytes: held,
                        size,
                    };
                }
                let size = size.map_or_else(|| "size unknown".into(), human_bytes);
                let resumed =
                    resumed_from.map_or_else(String::new, |r| format!(", resumed at {}", human_bytes(r)));
                self.log(
                    ts,
                    Some(conn),
                    &device,
                    EntryKind::System,
                    format!("sending {name} ({size}{resumed})"),
                );
            }
            EventKind::FileProgress {
                conn, name, bytes, ..
            } => {
                if let Some(t) = self
                    .transfers
                    .iter_mut()
                    .find(|t| t.conn == conn && t.name == name)
                {
                    t.bytes = bytes;
                    t.updated = ts;
                }
                if let Some(d) = self.device_mut(conn)
                    && let DeviceState::Receiving { bytes: b, .. } = &mut d.state
                {
                    *b = bytes;
                }
            }
            EventKind::FileSaved {
                conn,
                device,
                name,
                path,
                size,
                ..
            } => {
                self.end_transfer(conn, &name);
                self.files_saved += 1;
                self.bytes_saved += size;
                // Earlier failures of this file (interrupted, then resumed) are
                // superseded: their rows open the completed file.
                for row in self.received.iter_mut().filter(|r| {
                    r.failure.is_some()
                        && r.device == device
                        && r.path.as_deref().is_some_and(|p| p.ends_with(".part"))
                        && r.name == name
                }) {
                    row.superseded = true;
                    row.path = Some(path.clone());
                }
                self.push_received(ReceivedRow {
                    time: ts.format("%m-%d %H:%M").to_string(),
                    device: device.clone(),
                    name: name.clone(),
                    size,
                    failure: None,
                    path: Some(path),
                    superseded: false,
                });
                self.log(
                    ts,
                    Some(conn),
                    &device,
                    EntryKind::System,
                    format!("saved {name} ({})", human_bytes(size)),
                );
            }
            EventKind::FileFailed {
                conn,
                device,
                name,
                reason,
                part,
            } => {
                let size = self
                    .transfers
                    .iter()
                    .find(|t| t.conn == conn && t.name == name)
                    .map_or(0, |t| t.bytes);
                self.end_transfer(conn, &name);
                self.push_received(ReceivedRow {
                    time: ts.format("%m-%d %H:%M").to_string(),
                    device: device.clone(),
                    name: name.clone(),
                    size,
                    failure: Some(reason.clone()),
                    path: part,
                    superseded: false,
                });
                self.log(
                    ts,
                    Some(conn),
                    &device,
                    EntryKind::Error,
                    format!("{name} failed: {reason}"),
                );
            }
            EventKind::Disconnected {
                conn,
                device,
                reason,
                bytes_in,
                bytes_out,
            } => {
                self.transfers.retain(|t| t.conn != conn);
                if let Some(d) = self.device_mut(conn) {
                    // Exact final counts: the last `stats` may be up to a second old.
                    d.bytes_in = d.bytes_in.max(bytes_in);
                    d.bytes_out = d.bytes_out.max(bytes_out);
                    d.gone_at = Some(ts);
                    d.state = DeviceState::Idle;
                    d.rate_in = 0;
                }
                self.log(
                    ts,
                    Some(conn),
                    &device,
                    EntryKind::System,
                    format!("disconnected ({reason})"),
                );
            }
            EventKind::Dropped { events, .. } => {
                self.log(
                    ts,
                    None,
                    "console",
                    EntryKind::Error,
                    format!("{events} events dropped: the screen could not keep up"),
                );
            }
            EventKind::PartRemoved { device, path, reason } => {
                self.log(
                    ts,
                    None,
                    &device,
                    EntryKind::System,
                    format!("removed {path} ({reason})"),
                );
            }
            EventKind::Error { message } => {
                self.log(ts, None, "console", EntryKind::Error, message.clone());
                self.notice = Some(Notice {
                    ok: false,
                    text: message,
                });
            }
            EventKind::Reply {
                command,
                ok,
                text,
                devices,
            } => {
                for info in devices.iter().flatten() {
                    if let (Some(eol), Some(d)) = (&info.eol, self.device_mut(info.conn)) {
                        d.eol = Some(eol.clone());
                    }
                }
                if ok
                    && command.to_ascii_lowercase().starts_with("/to ")
                    && let Some([device]) = devices.as_deref()
                {
                    self.selected = Some(device.conn);
                }
                if text.contains('\n') {
                    self.overlay = Some((command, text));
                } else if !ok || command.starts_with('/') {
                    self.notice = Some(Notice { ok, text });
                } else {
                    self.notice = None;
                }
            }
            EventKind::Stats { devices } => {
                for c in devices {
                    if let Some(d) = self.device_mut(c.conn) {
                        let delta = c.bytes_in.saturating_sub(d.bytes_in);
                        d.bytes_in = c.bytes_in;
                        d.bytes_out = c.bytes_out;
                        *self.pending.entry(c.conn).or_default() += delta;
                    }
                }
            }
            EventKind::Stopped { reason } => {
                self.stopped = Some(reason);
                actions.push(Action::Quit);
            }
        }
        actions
    }

    /// Ends the transfer of `name` on `conn` (saved names may carry a ` (n)` the
    /// started name did not); others on the connection go on.
    fn end_transfer(&mut self, conn: ConnId, name: &str) {
        let position = self
            .transfers
            .iter()
            .position(|t| t.conn == conn && t.name == name)
            .or_else(|| {
                self.transfers
                    .iter()
                    .position(|t| t.conn == conn && same_file(&t.name, name))
            });
        if let Some(i) = position {
            self.transfers.remove(i);
        }
        let next = self
            .transfers
            .iter()
            .find(|t| t.conn == conn)
            .map(|t| DeviceState::Receiving {
                name: t.name.clone(),
                bytes: t.bytes,
                size: t.size,
            });
        if let Some(d) = self.device_mut(conn) {
            d.state = next.unwrap_or(DeviceState::Idle);
        }
    }

    /// Once a second: rates and their history, clocks, forgetting old devices.
    /// Returns actions: when the selected device is forgotten, the next live one is
    /// selected (the engine must not fall back to "the only device" unseen).
    pub fn tick(&mut self, now: DateTime<Local>) -> Vec<Action> {
        self.now = now;
        // A reply under the prompt stays until the next command or 10 s.
        match (&self.notice, &self.notice_seen) {
            (Some(n), Some((text, since))) if *text == n.text => {
                if (now - *since).num_seconds() >= NOTICE_SECS && !self.confirm_quit {
                    self.notice = None;
                    self.notice_seen = None;
                }
            }
            (Some(n), _) => self.notice_seen = Some((n.text.clone(), now)),
            (None, _) => self.notice_seen = None,
        }
        let pending = std::mem::take(&mut self.pending);
        let mut total = 0;
        for d in &mut self.devices {
            let bytes = pending.get(&d.conn).copied().unwrap_or(0);
            d.rate_in = bytes;
            total += bytes;
            let history = self.history_device.entry(d.conn).or_default();
            push_capped(history, bytes, HISTORY_SECONDS);
        }
        self.rate_in = total;
        push_capped(&mut self.history_all, total, HISTORY_SECONDS);
        let expired: Vec<ConnId> = self
            .devices
            .iter()
            .filter(|d| {
                d.gone_at
                    .is_some_and(|t| (now - t).num_seconds() >= KEEP_DISCONNECTED_SECS)
            })
            .map(|d| d.conn)
            .collect();
        if !expired.is_empty() {
            self.devices.retain(|d| !expired.contains(&d.conn));
            self.device_index = self
                .devices
                .iter()
                .enumerate()
                .map(|(i, d)| (d.conn, i))
                .collect();
            for conn in &expired {
                self.history_device.remove(conn);
                self.conversations.remove(conn);
                if self.selected == Some(*conn) {
                    self.selected = None;
                }
            }
        }
        if self.selected.is_none()
            && let Some(next) = self.devices.iter().find(|d| d.gone_at.is_none()).map(|d| d.conn)
            && !expired.is_empty()
        {
            self.selected = Some(next);
            return vec![Action::Engine(Command::Select(Some(next)))];
        }
        Vec::new()
    }

    /// Terminal input: keys, mouse, paste, resize.
    pub fn on_terminal(&mut self, event: &TermEvent, panes: &Panes) -> Vec<Action> {
        match event {
            TermEvent::Key(key) if key.kind != KeyEventKind::Release => self.on_key(*key),
            TermEvent::Mouse(mouse) => self.on_mouse(*mouse, panes),
            TermEvent::Paste(text) => {
                for c in text.chars().filter(|c| !c.is_control()) {
                    self.input.handle(tui_input::InputRequest::InsertChar(c));
                }
                self.focus = Focus::Prompt;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Action> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('q')) {
            if self.transfer_in_flight() && !self.confirm_quit {
                self.confirm_quit = true;
                self.notice = Some(Notice {
                    ok: false,
                    text: format!(
                        "{} transfer(s) in flight: press Ctrl-C again to quit (they are kept as .part), Esc to stay",
                        self.transfers.len()
                    ),
                });
                return Vec::new();
            }
            return vec![Action::Quit];
        }
        if ctrl && key.code == KeyCode::Char('z') {
            return vec![Action::Suspend];
        }
        if ctrl && key.code == KeyCode::Char('f') {
            self.focus = Focus::Prompt;
            self.input = Input::new("/find ".into());
            return Vec::new();
        }
        if ctrl && self.find.is_some() && matches!(key.code, KeyCode::Char('n') | KeyCode::Char('p')) {
            self.find_step(key.code == KeyCode::Char('n'));
            return Vec::new();
        }
        if self.confirm_quit && key.code == KeyCode::Esc {
            self.confirm_quit = false;
            self.notice = None;
            return Vec::new();
        }
        if self.confirm_quit {
            self.confirm_quit = false;
            self.notice = None;
        }
        // Pop-ups own Esc (and F1 for help), arrows and PgUp/PgDn. A printable key
        // or Enter closes them and then does what it would have done without them,
        // so nothing typed is ever lost.
        let typed = matches!(key.code, KeyCode::Char(_) | KeyCode::Enter)
            && !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        if self.show_help {
            if matches!(key.code, KeyCode::Esc | KeyCode::F(1)) {
                self.show_help = false;
                return Vec::new();
            }
            match key.code {
                KeyCode::Down => self.help_scroll = self.help_scroll.saturating_add(1),
                KeyCode::Up => self.help_scroll = self.help_scroll.saturating_sub(1),
                KeyCode::PageDown => self.help_scroll = self.help_scroll.saturating_add(10),
                KeyCode::PageUp => self.help_scroll = self.help_scroll.saturating_sub(10),
                _ => {}
            }
            if !typed {
                return Vec::new();
            }
            self.show_help = false;
        }
        if let Some(preview) = &self.preview
            && matches!(preview.content, PreviewContent::Hex(_))
            && matches!(
                key.code,
                KeyCode::PageDown | KeyCode::PageUp | KeyCode::Home | KeyCode::End
            )
        {
            // The hex preview pages through the whole file, reading only what shows.
            let last = self.preview_total.saturating_sub(1) / 16 * 16;
            let offset = match key.code {
                KeyCode::PageDown => (self.preview_offset + PREVIEW_PAGE).min(last),
                KeyCode::PageUp => self.preview_offset.saturating_sub(PREVIEW_PAGE),
                KeyCode::Home => 0,
                _ => last.saturating_sub(PREVIEW_PAGE - 16),
            };
            if offset == self.preview_offset {
                return Vec::new();
            }
            self.preview_offset = offset;
            return vec![Action::PreviewAt(preview.path.clone(), offset)];
        }
        if self.preview.is_some() || self.overlay.is_some() {
            if key.code == KeyCode::Esc {
                self.preview = None;
                self.overlay = None;
                return Vec::new();
            }
            if !typed {
                return Vec::new();
            }
            self.preview = None;
            self.overlay = None;
        }
        match key.code {
            KeyCode::F(1) => {
                self.show_help = true;
                self.help_scroll = 0;
                return Vec::new();
            }
            KeyCode::F(2) => {
                self.show_all = !self.show_all;
                self.scroll = 0;
                return Vec::new();
            }
            KeyCode::F(3) => {
                self.show_log = !self.show_log;
                return Vec::new();
            }
            KeyCode::F(n @ 5..=12) => {
                let name = format!("F{n}");
                if self.macro_keys.iter().any(|(k, _)| *k == name) {
                    return vec![Action::Engine(Command::Line(format!("/macro {name}")))];
                }
                self.notice = Some(Notice {
                    ok: false,
                    text: format!("{name} has no macro; bind one under [macros] in config.toml"),
                });
                return Vec::new();
            }
            KeyCode::Esc if self.find.is_some() => {
                self.find = None;
                self.scroll = 0;
                return Vec::new();
            }
            KeyCode::Esc => {
                self.focus = Focus::Prompt;
                self.notice = None;
                return Vec::new();
            }
            KeyCode::F(4) => {
                self.view = match self.view {
                    crate::console::ViewMode::Text => crate::console::ViewMode::Hex,
                    crate::console::ViewMode::Hex => crate::console::ViewMode::Text,
                };
                return Vec::new();
            }
            KeyCode::PageUp => {
                self.scroll_conversation(10);
                return Vec::new();
            }
            KeyCode::PageDown => {
                self.scroll_conversation(-10);
                return Vec::new();
            }
            KeyCode::BackTab => {
                self.focus = self.focus.step(false);
                return Vec::new();
            }
            KeyCode::Tab if self.focus != Focus::Prompt || self.input.value().is_empty() => {
                self.focus = self.focus.step(true);
                return Vec::new();
            }
            _ => {}
        }
        match self.focus {
            Focus::Prompt => self.prompt_key(key),
            Focus::Connections => self.connections_key(key),
            Focus::Conversation => {
                match key.code {
                    KeyCode::Up | KeyCode::Char('k') => self.scroll_conversation(1),
                    KeyCode::Down | KeyCode::Char('j') => self.scroll_conversation(-1),
                    KeyCode::Home | KeyCode::Char('g') => self.scroll_conversation(isize::MAX / 2),
                    KeyCode::End | KeyCode::Char('G') => self.scroll = 0,
                    KeyCode::Char('a') => {
                        self.show_all = !self.show_all;
                        self.scroll = 0;
                    }
                    KeyCode::Char('w') => {
                        self.wrap = !self.wrap;
                        self.hscroll = 0;
                    }
                    KeyCode::Char('t') => self.millis = !self.millis,
                    KeyCode::Char('y') => {
                        // The line found, else the newest line shown.
                        let entries = self.visible_conversation();
                        let index = self
                            .find
                            .as_ref()
                            .and_then(|f| f.current)
                            .or_else(|| entries.and_then(|e| e.len().checked_sub(1 + self.scroll)));
                        if let Some(text) = entries
                            .zip(index)
                            .and_then(|(e, i)| e.get(i))
                            .map(|e| e.text.clone())
                        {
                            self.notice = Some(Notice {
                                ok: true,
                                text: "copied the line to the clipboard".into(),
                            });
                            return vec![Action::Copy(text)];
                        }
                    }
                    KeyCode::Left if !self.wrap => self.hscroll = self.hscroll.saturating_sub(8),
                    KeyCode::Right if !self.wrap => self.hscroll += 8,
                    _ => return self.type_into_prompt(key),
                }
                Vec::new()
            }
            Focus::Transfers => self.type_into_prompt(key),
            Focus::Received => self.received_key(key),
        }
    }

    /// A printable key in a list pane goes to the prompt, so typing never gets lost.
    fn type_into_prompt(&mut self, key: KeyEvent) -> Vec<Action> {
        if let KeyCode::Char(_) = key.code {
            self.focus = Focus::Prompt;
            return self.prompt_key(key);
        }
        Vec::new()
    }

    /// Moves to the next match of `/find`: `older` goes up the history (the first
    /// search starts at the newest line), otherwise down toward the newest.
    fn find_step(&mut self, older: bool) {
        let Some(find) = &self.find else {
            return;
        };
        let needle = find.needle.clone();
        let current = find.current;
        let Some(entries) = self.visible_conversation() else {
            return;
        };
        let filter = self.filter.clone();
        let hit = |i: &usize| {
            let text = &entries[*i].text;
            crate::tui::find::contains(text, &needle)
                && filter
                    .as_ref()
                    .is_none_or(|f| crate::tui::find::contains(text, f))
        };
        let found = if older {
            let below = current.unwrap_or(entries.len());
            (0..below).rev().find(hit)
        } else {
            let above = current.map_or(entries.len(), |c| c + 1);
            (above..entries.len()).find(hit)
        };
        match found {
            Some(i) => {
                if let Some(f) = &mut self.find {
                    f.current = Some(i);
                }
                self.notice = None;
            }
            None => {
                let text = if current.is_some() {
                    format!("no more matches for {needle:?} that way; Ctrl-N older, Ctrl-P newer, Esc ends")
                } else {
                    format!("{needle:?} is not in this conversation")
                };
                self.notice = Some(Notice { ok: false, text });
            }
        }
    }

    fn scroll_conversation(&mut self, lines: isize) {
        let len = self.visible_conversation().map_or(0, VecDeque::len);
        let wanted = self.scroll as isize + lines;
        self.scroll = wanted.clamp(0, len.saturating_sub(1) as isize) as usize;
    }

    fn select_by_offset(&mut self, step: isize) -> Vec<Action> {
        if self.devices.is_empty() {
            return Vec::new();
        }
        let current = self.selected.and_then(|c| self.device_position(c)).unwrap_or(0) as isize;
        let next = (current + step).clamp(0, self.devices.len() as isize - 1) as usize;
        self.select_index(next)
    }

    fn select_index(&mut self, index: usize) -> Vec<Action> {
        let Some(conn) = self.devices.get(index).map(|d| d.conn) else {
            return Vec::new();
        };
        if self.selected == Some(conn) {
            return Vec::new();
        }
        self.selected = Some(conn);
        self.scroll = 0;
        vec![Action::Engine(Command::Select(Some(conn)))]
    }

    fn connections_key(&mut self, key: KeyEvent) -> Vec<Action> {
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.select_by_offset(-1),
            KeyCode::Down | KeyCode::Char('j') => self.select_by_offset(1),
            KeyCode::Home | KeyCode::Char('g') => self.select_index(0),
            KeyCode::End | KeyCode::Char('G') => self.select_index(self.devices.len().saturating_sub(1)),
            KeyCode::Enter => {
                self.focus = Focus::Prompt;
                Vec::new()
            }
            _ => self.type_into_prompt(key),
        }
    }

    fn received_key(&mut self, key: KeyEvent) -> Vec<Action> {
        let last = self.received.len().saturating_sub(1);
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.received_selected = self.received_selected.saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.received_selected = (self.received_selected + 1).min(last)
            }
            KeyCode::Home | KeyCode::Char('g') => self.received_selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.received_selected = last,
            KeyCode::Enter => {
                if let Some(path) = self
                    .received
                    .get(self.received_selected)
                    .and_then(|r| r.path.clone())
                {
                    self.preview = Some(Preview {
                        path: path.clone(),
                        content: PreviewContent::Loading,
                    });
                    self.preview_offset = 0;
                    return vec![Action::Preview(path)];
                }
            }
            KeyCode::Char('y') => {
                if let Some(path) = self
                    .received
                    .get(self.received_selected)
                    .and_then(|r| r.path.clone())
                {
                    self.notice = Some(Notice {
                        ok: true,
                        text: format!("copied {path} to the clipboard (i puts it in the prompt)"),
                    });
                    return vec![Action::Copy(path)];
                }
            }
            KeyCode::Char('i') => {
                if let Some(path) = self
                    .received
                    .get(self.received_selected)
                    .and_then(|r| r.path.clone())
                {
                    let mut value = self.input.value().to_string();
                    if !value.is_empty() && !value.ends_with(' ') {
                        value.push(' ');
                    }
                    value.push_str(&path);
                    self.input = Input::new(value);
                    self.focus = Focus::Prompt;
                    self.notice = Some(Notice { ok: true, text: path });
                }
            }
            _ => return self.type_into_prompt(key),
        }
        Vec::new()
    }

    fn prompt_key(&mut self, key: KeyEvent) -> Vec<Action> {
        match key.code {
            KeyCode::Enter => {
                let line = self.input.value().to_string();
                self.input.reset();
                self.history_pos = None;
                if line.trim().is_empty() {
                    return Vec::new();
                }
                if self.history.last() != Some(&line) {
                    self.history.push(line.clone());
                    if self.history.len() > KEEP_HISTORY {
                        self.history.remove(0);
                    }
                }
                self.scroll = 0;
                match crate::console::parse(&line) {
                    Ok(crate::console::Request::Help) => {
                        self.show_help = true;
                        self.help_scroll = 0;
                        return Vec::new();
                    }
                    // The pane's own commands: handled here, not by the engine.
                    Ok(crate::console::Request::Find(needle)) => {
                        self.find = Some(Find {
                            needle,
                            current: None,
                        });
                        self.find_step(true);
                        return Vec::new();
                    }
                    Ok(crate::console::Request::Filter(filter)) => {
                        self.notice = Some(Notice {
                            ok: true,
                            text: match &filter {
                                Some(f) => format!("showing only lines with {f:?}; /filter alone shows all"),
                                None => "showing every line".into(),
                            },
                        });
                        self.filter = filter;
                        return Vec::new();
                    }
                    Ok(crate::console::Request::View(mode)) => {
                        self.view = mode;
                        return Vec::new();
                    }
                    _ => {}
                }
                vec![Action::Engine(Command::Line(line))]
            }
            KeyCode::Char('?') if self.input.value().is_empty() => {
                self.show_help = true;
                self.help_scroll = 0;
                Vec::new()
            }
            KeyCode::Up => {
                self.history_step(-1);
                Vec::new()
            }
            KeyCode::Down => {
                self.history_step(1);
                Vec::new()
            }
            KeyCode::Tab => {
                self.complete();
                Vec::new()
            }
            _ => {
                self.input.handle_event(&TermEvent::Key(key));
                Vec::new()
            }
        }
    }

    fn history_step(&mut self, step: isize) {
        if self.history.is_empty() {
            return;
        }
        let last = self.history.len() as isize - 1;
        let pos = match self.history_pos {
            None if step < 0 => last,
            None => return,
            Some(p) => p as isize + step,
        };
        if pos > last {
            self.history_pos = None;
            self.input.reset();
            return;
        }
        let pos = pos.clamp(0, last) as usize;
        self.history_pos = Some(pos);
        self.input = Input::new(self.history[pos].clone());
    }

    /// Tab: complete a `/command`, or a device name after `/to ` or `/kick `.
    fn complete(&mut self) {
        let value = self.input.value().to_string();
        let candidates: Vec<String> = match value.split_once(' ') {
            None if value.starts_with('/') => COMMANDS
                .iter()
                .map(|c| c.0.to_string())
                .filter(|c| c.starts_with(&value))
                .map(|c| format!("{c} "))
                .collect(),
            Some((cmd, partial)) if matches!(cmd, "/to" | "/kick") => self
                .devices
                .iter()
                .filter(|d| d.gone_at.is_none() && d.name.starts_with(partial))
                .map(|d| format!("{cmd} {}", d.name))
                .collect(),
            _ => Vec::new(),
        };
        match candidates.as_slice() {
            [] => {}
            [only] => self.input = Input::new(only.clone()),
            many => {
                let common = common_prefix(many);
                if common.len() > value.len() {
                    self.input = Input::new(common);
                } else {
                    self.notice = Some(Notice {
                        ok: true,
                        text: many.iter().map(|s| s.trim()).collect::<Vec<_>>().join("  "),
                    });
                }
            }
        }
    }

    pub fn on_mouse(&mut self, mouse: MouseEvent, panes: &Panes) -> Vec<Action> {
        let at = Position::new(mouse.column, mouse.row);
        let Some((pane, area)) = panes.at(at) else {
            return Vec::new();
        };
        match mouse.kind {
            MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
                let up = mouse.kind == MouseEventKind::ScrollUp;
                match pane {
                    Pane::Conversation => self.scroll_conversation(if up { 3 } else { -3 }),
                    Pane::Connections => return self.select_by_offset(if up { -1 } else { 1 }),
                    Pane::Received => {
                        let last = self.received.len().saturating_sub(1);
                        self.received_selected = if up {
                            self.received_selected.saturating_sub(1)
                        } else {
                            (self.received_selected + 1).min(last)
                        };
                    }
                    _ => {}
                }
                Vec::new()
            }
            MouseEventKind::Down(_) => {
                self.focus = match pane {
                    Pane::Connections => Focus::Connections,
                    Pane::Conversation => Focus::Conversation,
                    Pane::Transfers => Focus::Transfers,
                    Pane::Received => Focus::Received,
                    Pane::Prompt | Pane::Header | Pane::Log => Focus::Prompt,
                };
                // Rows start below the border and the column titles.
                let row = mouse.row.saturating_sub(area.y + 2) as usize;
                match pane {
                    Pane::Connections => {
                        let offset = super::layout::list_offset(
                            self.selected.and_then(|c| self.device_position(c)).unwrap_or(0),
                            area.height.saturating_sub(3) as usize,
                        );
                        if mouse.row >= area.y + 2 && mouse.row + 1 < area.bottom() {
                            return self.select_index(offset + row);
                        }
                    }
                    Pane::Received if mouse.row >= area.y + 2 && mouse.row + 1 < area.bottom() => {
                        let offset = super::layout::list_offset(
                            self.received_selected,
                            area.height.saturating_sub(3) as usize,
                        );
                        self.received_selected = (offset + row).min(self.received.len().saturating_sub(1));
                    }
                    _ => {}
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// The prompt's label: who plain text goes to.
    pub fn target_label(&self) -> String {
        match self.selected_device() {
            Some(d) if d.gone_at.is_none() => d.name.clone(),
            Some(d) => format!("{} (gone)", d.name),
            None if self.live_devices() == 0 => "no device".into(),
            None => "choose a device".into(),
        }
    }
}

/// `img (2).bmp` is the saved form of `img.bmp` when that name was taken.
fn same_file(started: &str, saved: &str) -> bool {
    let (stem, ext) = started.rsplit_once('.').map_or((started, ""), |(s, e)| (s, e));
    let rest = saved.strip_prefix(stem).and_then(|r| r.strip_prefix(" ("));
    let Some(rest) = rest else {
        return false;
    };
    let (number, tail) = rest.split_once(')').unwrap_or(("", ""));
    let tail_ok = if ext.is_empty() {
        tail.is_empty()
    } else {
        tail == format!(".{ext}")
    };
    !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()) && tail_ok
}

fn push_capped(history: &mut VecDeque<u64>, value: u64, cap: usize) {
    history.push_back(value);
    while history.len() > cap {
        history.pop_front();
    }
}

fn common_prefix(items: &[String]) -> String {
    let first = items.first().map(String::as_str).unwrap_or("");
    let mut len = first.len();
    for item in items {
        len = len.min(
            first
                .bytes()
                .zip(item.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    first[..len].to_string()
}

pub fn human_bytes(n: u64) -> String {
    crate::text::size(n)
}
#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
