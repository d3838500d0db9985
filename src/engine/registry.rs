//! Who is connected: names, numbers, counters and each session's command channel.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;

use super::event::{ConnId, DeviceInfo};

/// Per-connection byte counters, shared between the session and the registry.
#[derive(Debug, Default)]
pub struct Stats {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// What the engine asks a session to do.
#[derive(Debug)]
pub enum SessionCommand {
    /// Send an operator command; the session adds its protocol's line ending.
    Send(String),
    Kick,
}

#[derive(Debug)]
pub struct Device {
    pub conn: ConnId,
    pub name: String,
    pub peer: SocketAddr,
    pub protocol: &'static str,
    pub since: Instant,
    /// Set once the protocol is known and `connected` was emitted.
    pub announced: bool,
    pub stats: Arc<Stats>,
    pub commands: mpsc::Sender<SessionCommand>,
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
        }
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    devices: BTreeMap<ConnId, Device>,
    last_conn: ConnId,
}

impl Registry {
    /// Adds a connection under `base`, or `base#2`, `#3`... while that name is live.
    pub fn register(
        &mut self,
        peer: SocketAddr,
        base: &str,
        commands: mpsc::Sender<SessionCommand>,
        stats: Arc<Stats>,
    ) -> (ConnId, String) {
        self.last_conn += 1;
        let conn = self.last_conn;
        let name = self.free_name(base);
        self.devices.insert(
            conn,
            Device {
                conn,
                name: name.clone(),
                peer,
                protocol: "auto",
                since: Instant::now(),
                announced: false,
                stats,
                commands,
            },
        );
        (conn, name)
    }

    fn free_name(&self, base: &str) -> String {
        let taken = |n: &str| self.devices.values().any(|d| d.name == n);
        if !taken(base) {
            return base.to_string();
        }
        (2..)
            .map(|i| format!("{base}#{i}"))
            .find(|n| !taken(n))
            .unwrap_or_else(|| base.to_string())
    }

    /// Renames a connection to what the device calls itself (`#2`... if live already).
    pub fn rename(&mut self, conn: ConnId, base: &str) -> Option<String> {
        let mut device = self.devices.remove(&conn)?;
        device.name = self.free_name(base);
        let name = device.name.clone();
        self.devices.insert(conn, device);
        Some(name)
    }

    pub fn announce(&mut self, conn: ConnId, protocol: &'static str) {
        if let Some(d) = self.devices.get_mut(&conn) {
            d.protocol = protocol;
            d.announced = true;
        }
    }

    pub fn remove(&mut self, conn: ConnId) -> Option<Device> {
        self.devices.remove(&conn)
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
        self.live()
            .find(|d| d.name == key)
            .or_else(|| key.parse::<ConnId>().ok().and_then(|c| self.get(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(r: &mut Registry, ip: &str, port: u16) -> (ConnId, String) {
        let (tx, _rx) = mpsc::channel(1);
        let peer = SocketAddr::new(ip.parse().expect("ip"), port);
        let (conn, name) = r.register(peer, ip, tx, Arc::default());
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
        assert!(c4 > c1, "connection numbers are never reused");
        assert_eq!(r.find("10.0.0.2#3").map(|d| d.peer.port()), Some(1002));
        assert_eq!(r.find(&c4.to_string()).map(|d| d.name.as_str()), Some("10.0.0.2"));
        assert!(r.find("nobody").is_none());
    }
}
