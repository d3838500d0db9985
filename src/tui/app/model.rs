//! What the engine told the console: devices, conversations, transfers and
//! received files. Only engine events and the clock change it ([`Model::apply`],
//! [`Model::tick`]); the panes' scrolling and selection live in their own state.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Local};

use crate::engine::journal::ReceivedRecord;
use crate::engine::{ConnId, Direction, Event, EventKind};

/// Conversation history: entries kept per device and in the all-devices view,
/// each also bounded in bytes, so 100,000 lines of scrollback cannot become
/// gigabytes when lines are long or devices many.
pub const KEEP_PER_DEVICE: usize = 100_000;
pub const KEEP_ALL: usize = 100_000;
pub const KEEP_BYTES_PER_DEVICE: usize = 16 << 20;
pub const KEEP_BYTES_ALL: usize = 32 << 20;
/// All devices' histories together; over it, the device that speaks trims its
/// own oldest lines, down to a floor, so quiet devices keep theirs.
pub const KEEP_BYTES_DEVICES: usize = 256 << 20;
pub const KEEP_BYTES_FLOOR: usize = 256 << 10;
/// Received files listed.
pub const KEEP_RECEIVED: usize = 1_000;
/// Seconds of throughput history.
pub const HISTORY_SECONDS: usize = 60;
/// How long a disconnected device stays (greyed) in the list.
pub const KEEP_DISCONNECTED_SECS: i64 = 60;

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

#[derive(Debug, Clone, PartialEq)]
pub enum DeviceState {
    Idle,
    /// A serial port or outgoing link that is down; the next attempt is `at`.
    Reconnecting {
        at: DateTime<Local>,
    },
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

impl Entry {
    /// What the entry holds in memory, roughly: its strings plus the struct.
    pub fn held_bytes(&self) -> usize {
        self.text.len() + self.device.len() + std::mem::size_of::<Entry>()
    }
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
    /// Console to device (`/sz`), else device to console.
    pub outgoing: bool,
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

/// One engine event's effect on what the panes follow.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// Rows added to the top of the received list.
    pub received_added: usize,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub now: DateTime<Local>,
    pub listeners: Vec<(String, String)>,
    pub lan: Vec<String>,
    pub dir: String,
    pub devices: Vec<DeviceRow>,
    /// Where each connection is in `devices`: events for 10,000 devices stay cheap.
    device_index: HashMap<ConnId, usize>,
    pub conversations: HashMap<ConnId, VecDeque<Entry>>,
    /// Bytes held per conversation, in all of them, and in `all`.
    conversation_bytes: HashMap<ConnId, usize>,
    devices_bytes: usize,
    all_bytes: usize,
    pub all: VecDeque<Entry>,
    /// The last bytes each device sent, for the hex view.
    pub raw_in: HashMap<ConnId, RawBytes>,
    pub transfers: Vec<TransferRow>,
    pub received: VecDeque<ReceivedRow>,
    pub files_saved: u64,
    pub bytes_saved: u64,
    pub rate_in: u64,
    pub history_all: VecDeque<u64>,
    pub history_device: HashMap<ConnId, VecDeque<u64>>,
    /// Bytes counted since the last tick, per connection.
    pending: HashMap<ConnId, u64>,
    pub stopped: Option<String>,
    /// The MQTT broker link, when there is one: connected, and what it says.
    pub broker: Option<(bool, String)>,
}

impl Model {
    pub fn new(now: DateTime<Local>) -> Self {
        Self {
            now,
            listeners: Vec::new(),
            lan: Vec::new(),
            dir: String::new(),
            devices: Vec::new(),
            device_index: HashMap::new(),
            conversations: HashMap::new(),
            conversation_bytes: HashMap::new(),
            devices_bytes: 0,
            all_bytes: 0,
            all: VecDeque::new(),
            raw_in: HashMap::new(),
            transfers: Vec::new(),
            received: VecDeque::new(),
            files_saved: 0,
            bytes_saved: 0,
            rate_in: 0,
            history_all: VecDeque::new(),
            history_device: HashMap::new(),
            pending: HashMap::new(),
            stopped: None,
            broker: None,
        }
    }

    /// Received files from earlier runs (oldest first, as in received.jsonl).
    pub fn load_received(&mut self, records: impl IntoIterator<Item = ReceivedRecord>) -> usize {
        let mut added = 0;
        for r in records {
            self.files_saved += 1;
            self.bytes_saved += r.size;
            self.push_received(ReceivedRow::from_record(r));
            added += 1;
        }
        added
    }

    /// Newest first.
    fn push_received(&mut self, row: ReceivedRow) {
        self.received.push_front(row);
        self.received.truncate(KEEP_RECEIVED);
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

    /// Devices connected now (not gone, not being retried).
    pub fn live_devices(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| d.gone_at.is_none() && !matches!(d.state, DeviceState::Reconnecting { .. }))
            .count()
    }

    pub fn transfer_in_flight(&self) -> bool {
        !self.transfers.is_empty()
    }

    /// A remark of the console's own (e.g. a notice worth keeping in the history).
    pub fn log(
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
        let size = entry.held_bytes();
        if let Some(conn) = conn {
            let list = self.conversations.entry(conn).or_default();
            let held = self.conversation_bytes.entry(conn).or_default();
            list.push_back(entry.clone());
            *held += size;
            self.devices_bytes += size;
            while list.len() > 1
                && (list.len() > KEEP_PER_DEVICE
                    || *held > KEEP_BYTES_PER_DEVICE
                    || (self.devices_bytes > KEEP_BYTES_DEVICES && *held > KEEP_BYTES_FLOOR))
            {
                let Some(old) = list.pop_front() else { break };
                *held -= old.held_bytes();
                self.devices_bytes -= old.held_bytes();
            }
        }
        self.all.push_back(entry);
        self.all_bytes += size;
        while self.all.len() > 1 && (self.all.len() > KEEP_ALL || self.all_bytes > KEEP_BYTES_ALL) {
            let Some(old) = self.all.pop_front() else { break };
            self.all_bytes -= old.held_bytes();
        }
    }

    /// Forgets a device's conversation (a minute after it left).
    fn forget_conversation(&mut self, conn: ConnId) {
        self.conversations.remove(&conn);
        if let Some(held) = self.conversation_bytes.remove(&conn) {
            self.devices_bytes -= held;
        }
    }

    /// Applies one engine event's data; the app then moves the panes along.
    pub fn apply(&mut self, event: Event) -> Applied {
        let ts = event.ts;
        let mut applied = Applied::default();
        match event.kind {
            // The event queue hands these out line by line; taken whole all the same.
            EventKind::Texts(batch) => {
                for n in 0..batch.len() {
                    if let Some(kind) = batch.event(n) {
                        self.apply(Event { ts, kind });
                    }
                }
            }
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
                let row = DeviceRow {
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
                };
                // A link that reconnected keeps its number: the same row comes back.
                match self.device_mut(conn) {
                    Some(d) => *d = row,
                    None => {
                        self.device_index.insert(conn, self.devices.len());
                        self.devices.push(row);
                    }
                }
                self.log(
                    ts,
                    Some(conn),
                    &device,
                    EntryKind::System,
                    format!("connected from {peer} ({protocol})"),
                );
            }
            EventKind::Reconnecting {
                conn,
                device,
                peer,
                reason,
                delay_ms,
                ..
            } => {
                let at = ts + chrono::Duration::milliseconds(delay_ms as i64);
                match self.device_mut(conn) {
                    Some(d) => {
                        d.state = DeviceState::Reconnecting { at };
                        d.gone_at = None;
                        d.rate_in = 0;
                    }
                    None => {
                        // Never connected yet (the port is missing at start): listed
                        // all the same, so the operator sees it is being tried.
                        self.device_index.insert(conn, self.devices.len());
                        self.devices.push(DeviceRow {
                            conn,
                            name: device.clone(),
                            protocol: "-".into(),
                            peer: peer.clone(),
                            since: ts,
                            bytes_in: 0,
                            bytes_out: 0,
                            rate_in: 0,
                            state: DeviceState::Reconnecting { at },
                            gone_at: None,
                            eol: None,
                        });
                    }
                }
                self.log(
                    ts,
                    Some(conn),
                    &device,
                    EntryKind::System,
                    format!("{reason}; trying again in {}", crate::text::duration_ms(delay_ms)),
                );
            }
            EventKind::LinkClosed { conn, device } => {
                if let Some(d) = self.device_mut(conn) {
                    d.gone_at = Some(ts);
                    d.state = DeviceState::Idle;
                    d.rate_in = 0;
                }
                self.log(
                    ts,
                    Some(conn),
                    &device,
                    EntryKind::System,
                    "closed (no more retries)".into(),
                );
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
                    outgoing: false,
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
                    .find(|t| t.conn == conn && !t.outgoing && t.name == name)
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
                applied.received_added += 1;
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
                applied.received_added += 1;
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
            EventKind::FilePushStarted {
                conn,
                device,
                name,
                size,
                via,
            } => {
                self.transfers.push(TransferRow {
                    conn,
                    device: device.clone(),
                    name: name.clone(),
                    size: Some(size),
                    bytes: 0,
                    started: ts,
                    updated: ts,
                    resumed_from: None,
                    outgoing: true,
                });
                self.log(
                    ts,
                    Some(conn),
                    &device,
                    EntryKind::System,
                    format!("sending {name} ({}) by {via}", human_bytes(size)),
                );
            }
            EventKind::FilePushProgress {
                conn, name, bytes, ..
            } => {
                if let Some(t) = self
                    .transfers
                    .iter_mut()
                    .find(|t| t.conn == conn && t.outgoing && t.name == name)
                {
                    t.bytes = bytes;
                    t.updated = ts;
                }
            }
            EventKind::FilePushed {
                conn,
                device,
                name,
                size,
                seconds,
            } => {
                self.transfers
                    .retain(|t| !(t.conn == conn && t.outgoing && t.name == name));
                self.log(
                    ts,
                    Some(conn),
                    &device,
                    EntryKind::System,
                    format!("sent {name} ({}, {seconds:.1} s)", human_bytes(size)),
                );
            }
            EventKind::FilePushFailed {
                conn,
                device,
                name,
                reason,
            } => {
                self.transfers
                    .retain(|t| !(t.conn == conn && t.outgoing && t.name == name));
                self.log(
                    ts,
                    Some(conn),
                    &device,
                    EntryKind::Error,
                    format!("sending {name} failed: {reason}"),
                );
            }
            EventKind::Disconnected {
                conn,
                device,
                reason,
                bytes_in,
                bytes_out,
                ..
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
                self.log(ts, None, "console", EntryKind::Error, message);
            }
            EventKind::Reply { devices, .. } => {
                for info in devices.iter().flatten() {
                    if let (Some(eol), Some(d)) = (&info.eol, self.device_mut(info.conn)) {
                        d.eol = Some(eol.clone());
                    }
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
            EventKind::Broker { state, detail } => {
                let up = state == "connected";
                if !up {
                    self.log(
                        ts,
                        None,
                        "mqtt",
                        EntryKind::Error,
                        format!("broker {state}: {detail}"),
                    );
                }
                self.broker = Some((up, detail));
            }
            EventKind::Stopped { reason } => {
                self.stopped = Some(reason);
            }
        }
        applied
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

    /// Once a second: rates and their history, forgetting devices gone for a
    /// minute. Returns the forgotten connections.
    pub fn tick(&mut self, now: DateTime<Local>) -> Vec<ConnId> {
        self.now = now;
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
                self.forget_conversation(*conn);
                self.raw_in.remove(conn);
            }
        }
        expired
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

pub fn human_bytes(n: u64) -> String {
    crate::text::size(n)
}
