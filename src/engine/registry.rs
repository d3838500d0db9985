//! Who is connected: names, numbers, counters and each session's command channel.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::command_queue;
use super::event::{ConnId, DeviceInfo};
use super::link::Peer;

/// Per-connection byte counters, shared between the session and the registry.
#[derive(Debug, Default)]
pub struct Stats {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Frames or YMODEM blocks dropped for a bad CRC.
    pub crc_errors: AtomicU64,
    /// Times the console asked the device to go back and send again.
    pub rewinds: AtomicU64,
}

/// What the engine asks a session to do.
#[derive(Debug)]
pub enum SessionCommand {
    /// Send an operator command; the session adds its protocol's line ending.
    Send(String),
    Kick,
    /// A new connection from `by` presented this device's id (protocol 1.1
    /// takeover): say BYE, close, and drop `done` once the name is free.
    Replace {
        by: Peer,
        done: tokio::sync::oneshot::Sender<()>,
    },
    /// Close to make room for a new connection (this one never sent a byte).
    Evict,
    /// Send these bytes exactly (`/hex`, `/raw`).
    SendBytes(Vec<u8>),
    /// Use this line ending for operator text from now on (`/eol`).
    SetEol(crate::protocol::LineEnding),
    /// `/push`: send this file to a native-frames device.
    Push {
        name: String,
        data: bytes::Bytes,
    },
    /// `/rz`: receive files by YMODEM, then go back to text.
    YmodemReceive,
    /// `/sz`: send these files by YMODEM-1K, then go back to text.
    YmodemSend(Vec<crate::protocol::ymodem::OutFile>),
}

/// The way to a session: its commands, in a queue small enough for each of
/// 10,000 idle devices (see [`super::command_queue`]).
#[derive(Debug, Clone)]
pub struct SessionSender(command_queue::Sender<SessionCommand>);

pub type SessionReceiver = command_queue::Receiver<SessionCommand>;

/// A session's command channel (a few commands wait at most).
pub fn session_channel() -> (SessionSender, SessionReceiver) {
    let (tx, rx) = command_queue::channel(16);
    (SessionSender(tx), rx)
}

impl SessionSender {
    /// Waits for room; an error when the session is gone.
    pub async fn send(&self, command: SessionCommand) -> Result<(), SessionGone> {
        self.0.send(command).await.map_err(|_| SessionGone)
    }

    /// An error when the queue is full or the session is gone.
    pub fn try_send(&self, command: SessionCommand) -> Result<(), SessionGone> {
        self.0.try_send(command).map_err(|_| SessionGone)
    }

    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// The session has ended (or cannot take more now, for `try_send`).
#[derive(Debug)]
pub struct SessionGone;

#[derive(Debug)]
pub struct Device {
    pub conn: ConnId,
    pub name: String,
    pub peer: Peer,
    pub protocol: &'static str,
    pub since: Instant,
    /// Set once the protocol is known and `connected` was emitted.
    pub announced: bool,
    /// Named by its own HELLO id (not its IP address): a later HELLO with the same
    /// id takes the name over.
    pub named_by_id: bool,
    pub stats: Arc<Stats>,
    pub commands: SessionSender,
    /// Asked to close to make room: not picked again.
    pub evicting: bool,
    /// The operator's `/eol` for this device, if any.
    pub eol: Option<&'static str>,
}

impl Device {
    pub fn info(&self) -> DeviceInfo {
        DeviceInfo {
            conn: self.conn,
            device: self.name.clone(),
            protocol: self.protocol.to_string(),
            peer: self.peer.to_string(),
            connected_secs: self.since.elapsed().as_secs(),
            bytes_in: self.stats.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.stats.bytes_out.load(Ordering::Relaxed),
            eol: self.eol.map(str::to_string),
        }
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    devices: BTreeMap<ConnId, Device>,
    last_conn: ConnId,
    /// Live names, so naming the 10,000th connection from one IP stays cheap.
    names: HashMap<String, ConnId>,
    /// Per base name, the lowest `#n` suffix that may be free.
    next_suffix: HashMap<String, u32>,
}

impl Registry {
    /// A connection number for a link that keeps it across reconnects.
    pub fn reserve_conn(&mut self) -> ConnId {
        self.last_conn += 1;
        self.last_conn
    }

    /// Adds a connection under `base`, or `base#2`, `#3`... while that name is live;
    /// `conn` is a number reserved earlier, else a new one is taken.
    pub fn register(
        &mut self,
        peer: Peer,
        base: &str,
        conn: Option<ConnId>,
        commands: SessionSender,
        stats: Arc<Stats>,
    ) -> (ConnId, String) {
        let conn = match conn {
            Some(conn) if !self.devices.contains_key(&conn) => conn,
            _ => self.reserve_conn(),
        };
        let name = self.claim_name(base, conn);
        self.devices.insert(
            conn,
            Device {
                conn,
                name: name.clone(),
                peer,
                protocol: "auto",
                since: Instant::now(),
                announced: false,
                named_by_id: false,
                stats,
                commands,
                evicting: false,
                eol: None,
            },
        );
        (conn, name)
    }

    pub fn set_eol(&mut self, conn: ConnId, eol: &'static str) {
        if let Some(d) = self.devices.get_mut(&conn) {
            d.eol = Some(eol);
        }
    }

    /// The connection silent longest among those that never sent a byte, marked
    /// as being evicted: its address, how long it has been connected, its channel.
    pub fn pick_silent(&mut self) -> Option<(Peer, std::time::Duration, SessionSender)> {
        let device = self
            .devices
            .values_mut()
            .filter(|d| !d.evicting && d.stats.bytes_in.load(Ordering::Relaxed) == 0)
            .min_by_key(|d| d.since)?;
        device.evicting = true;
        Some((
            device.peer.clone(),
            device.since.elapsed(),
            device.commands.clone(),
        ))
    }

    /// `base` if free, else the lowest free `base#n` (n >= 2), marked as taken.
    fn claim_name(&mut self, base: &str, conn: ConnId) -> String {
        let name = if !self.names.contains_key(base) {
            base.to_string()
        } else {
            let mut n = self.next_suffix.get(base).copied().unwrap_or(2);
            while self.names.contains_key(&format!("{base}#{n}")) {
                n += 1;
            }
            self.next_suffix.insert(base.to_string(), n + 1);
            format!("{base}#{n}")
        };
        self.names.insert(name.clone(), conn);
        name
    }

    fn release_name(&mut self, name: &str) {
        self.names.remove(name);
        if let Some((base, n)) = name.rsplit_once('#')
            && let Ok(n) = n.parse::<u32>()
            && let Some(next) = self.next_suffix.get_mut(base)
        {
            *next = (*next).min(n);
        }
    }

    /// Renames a connection to what the device calls itself (`#2`... if live already).
    pub fn rename(&mut self, conn: ConnId, base: &str) -> Option<String> {
        let old = self.devices.get(&conn)?.name.clone();
        self.release_name(&old);
        let name = self.claim_name(base, conn);
        if let Some(device) = self.devices.get_mut(&conn) {
            device.name = name.clone();
        }
        Some(name)
    }

    /// The command channel of the live connection that holds `name` by its HELLO id,
    /// other than `except`: the one a takeover replaces.
    pub fn held_by_id(&self, name: &str, except: ConnId) -> Option<SessionSender> {
        let conn = *self.names.get(name)?;
        let device = self.devices.get(&conn)?;
        (conn != except && device.named_by_id).then(|| device.commands.clone())
    }

    /// Renames a connection to its HELLO id (see [`Registry::rename`]) and marks it
    /// as named by that id, when it got the id itself and not a `#n` variant.
    pub fn rename_by_id(&mut self, conn: ConnId, id: &str) -> Option<String> {
        let name = self.rename(conn, id)?;
        if let Some(device) = self.devices.get_mut(&conn) {
            device.named_by_id = name == id;
        }
        Some(name)
    }

    pub fn announce(&mut self, conn: ConnId, protocol: &'static str) {
        if let Some(d) = self.devices.get_mut(&conn) {
            d.protocol = protocol;
            d.announced = true;
        }
    }

    pub fn remove(&mut self, conn: ConnId) -> Option<Device> {
        let device = self.devices.remove(&conn)?;
        self.release_name(&device.name);
        Some(device)
    }

    /// Connected devices that have been announced, oldest first.
    pub fn live(&self) -> impl Iterator<Item = &Device> {
        self.devices.values().filter(|d| d.announced)
    }

    pub fn get(&self, conn: ConnId) -> Option<&Device> {
        self.devices.get(&conn).filter(|d| d.announced)
    }

    /// By exact name, then by connection number.
    pub fn find(&self, key: &str) -> Option<&Device> {
        let key = key.trim();
        self.names
            .get(key)
            .and_then(|c| self.get(*c))
            .or_else(|| key.parse::<ConnId>().ok().and_then(|c| self.get(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(r: &mut Registry, ip: &str, port: u16) -> (ConnId, String) {
        let (tx, _rx) = session_channel();
        let peer = Peer::Net(std::net::SocketAddr::new(ip.parse().expect("ip"), port));
        let (conn, name) = r.register(peer, ip, None, tx, Arc::default());
        r.announce(conn, "lines");
        (conn, name)
    }

    #[test]
    fn same_ip_gets_numbered_names_while_live() {
        let mut r = Registry::default();
        let (c1, n1) = add(&mut r, "10.0.0.2", 1000);
        let (_, n2) = add(&mut r, "10.0.0.2", 1001);
        let (_, n3) = add(&mut r, "10.0.0.2", 1002);
        assert_eq!(
            (n1.as_str(), n2.as_str(), n3.as_str()),
            ("10.0.0.2", "10.0.0.2#2", "10.0.0.2#3")
        );
        r.remove(c1);
        let (c4, n4) = add(&mut r, "10.0.0.2", 1003);
        assert_eq!(n4, "10.0.0.2");
        let (c5, n5) = add(&mut r, "10.0.0.2", 1004);
        assert_eq!(n5, "10.0.0.2#4");
        assert!(c4 > c1, "connection numbers are never reused");
        assert_eq!(
            r.find("10.0.0.2#3").map(|d| d.peer.to_string()),
            Some("10.0.0.2:1002".into())
        );
        assert_eq!(r.find(&c4.to_string()).map(|d| d.name.as_str()), Some("10.0.0.2"));
        assert!(r.find("nobody").is_none());
        // A freed suffix is used again.
        let two = r.find("10.0.0.2#2").map(|d| d.conn).expect("#2 live");
        r.remove(two);
        assert_eq!(add(&mut r, "10.0.0.2", 1005).1, "10.0.0.2#2");
        let _ = c5;
    }
}
