//! `--metrics HOST:PORT`: Prometheus text format at `/metrics`, counted from
//! the engine's events (one more consumer, with its own bounded queue). The
//! format is prometheus-client's; the endpoint is tiny_http's, on a thread of
//! its own. Per-device series exist only for devices connected or seen in the
//! last hour, so their number stays bounded however many boards come and go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::engine::event_queue::{EventReceiver, QueueDepth};
use crate::engine::{ConnId, EventKind};

/// Events waiting to be counted.
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Per-device series of devices gone this long are removed.
const DEVICE_SERIES_KEPT: Duration = Duration::from_secs(3600);

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The metrics and what is needed to keep them.
pub struct Metrics {
    registry: Registry,
    connected: Family<Labels, Gauge>,
    bytes_in: Counter,
    bytes_out: Counter,
    device_bytes_in: Family<Labels, Counter>,
    device_bytes_out: Family<Labels, Counter>,
    files_saved: Counter,
    bytes_saved: Counter,
    files_failed: Family<Labels, Counter>,
    resumes: Counter,
    crc_errors: Counter,
    rewinds: Counter,
    pushes: Family<Labels, Counter>,
    reconnects: Counter,
    dropped_events: Counter,
    dropped_bytes: Counter,
    errors: Counter,
    broker_queue: Gauge,
    /// Per live connection: its device, protocol/link labels, and the byte
    /// counts already added (stats are cumulative per connection).
    conns: HashMap<ConnId, Conn>,
    /// Devices not connected now, and when they were last seen.
    gone: HashMap<String, Instant>,
}

struct Conn {
    device: String,
    kind: Labels,
    counted: Totals,
}

/// A connection's cumulative counts, as `stats` and `disconnected` give them.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    bytes_in: u64,
    bytes_out: u64,
    crc_errors: u64,
    rewinds: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("benchlink");
        let m = Self {
            connected: Family::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            device_bytes_in: Family::default(),
            device_bytes_out: Family::default(),
            files_saved: Counter::default(),
            bytes_saved: Counter::default(),
            files_failed: Family::default(),
            resumes: Counter::default(),
            crc_errors: Counter::default(),
            rewinds: Counter::default(),
            pushes: Family::default(),
            reconnects: Counter::default(),
            dropped_events: Counter::default(),
            dropped_bytes: Counter::default(),
            errors: Counter::default(),
            broker_queue: Gauge::default(),
            conns: HashMap::new(),
            gone: HashMap::new(),
            registry: Registry::default(),
        };
        registry.register(
            "devices_connected",
            "Devices connected now, by protocol and link",
            m.connected.clone(),
        );
        registry.register("bytes_in", "Bytes received from devices", m.bytes_in.clone());
        registry.register("bytes_out", "Bytes sent to devices", m.bytes_out.clone());
        registry.register(
            "device_bytes_in",
            "Bytes received, per device (connected or seen in the last hour)",
            m.device_bytes_in.clone(),
        );
        registry.register(
            "device_bytes_out",
            "Bytes sent, per device (connected or seen in the last hour)",
            m.device_bytes_out.clone(),
        );
        registry.register("files_saved", "Files received and saved", m.files_saved.clone());
        registry.register("file_bytes_saved", "Bytes of files saved", m.bytes_saved.clone());
        registry.register(
            "files_failed",
            "Files that failed, by reason",
            m.files_failed.clone(),
        );
        registry.register(
            "resumes",
            "Transfers resumed from a kept .part",
            m.resumes.clone(),
        );
        registry.register(
            "crc_errors",
            "Frames or YMODEM blocks dropped for a bad CRC",
            m.crc_errors.clone(),
        );
        registry.register(
            "rewinds",
            "Times a device was asked to go back and send again (a gap, or data missing at the end)",
            m.rewinds.clone(),
        );
        registry.register("pushes", "Files sent to devices, by outcome", m.pushes.clone());
        registry.register(
            "reconnects",
            "Retries of serial ports and outgoing links",
            m.reconnects.clone(),
        );
        registry.register(
            "events_dropped",
            "Events dropped by the hardening bounds (a front end too slow)",
            m.dropped_events.clone(),
        );
        registry.register(
            "event_bytes_dropped",
            "Bytes of those events",
            m.dropped_bytes.clone(),
        );
        registry.register("errors", "Error events", m.errors.clone());
        registry.register(
            "broker_queue_bytes",
            "Bytes of events waiting for the MQTT broker (with --mqtt)",
            m.broker_queue.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts one event.
    pub fn observe(&mut self, kind: &EventKind, now: Instant) {
        match kind {
            EventKind::Connected {
                conn,
                device,
                peer,
                protocol,
            } => {
                // A serial port's peer is its path; everything else is an address.
                let link = if peer.starts_with('/') { "serial" } else { "net" };
                let kind = labels(&[("protocol", protocol), ("link", link)]);
                self.connected.get_or_create(&kind).inc();
                self.gone.remove(device);
                let device_labels = labels(&[("device", device)]);
                let _ = self.device_bytes_in.get_or_create(&device_labels);
                let _ = self.device_bytes_out.get_or_create(&device_labels);
                self.conns.insert(
                    *conn,
                    Conn {
                        device: device.clone(),
                        kind,
                        counted: Totals::default(),
                    },
                );
            }
            EventKind::Stats { devices } => {
                for c in devices {
                    let totals = Totals {
                        bytes_in: c.bytes_in,
                        bytes_out: c.bytes_out,
                        crc_errors: c.crc_errors,
                        rewinds: c.rewinds,
                    };
                    self.count(c.conn, totals);
                }
            }
            EventKind::Disconnected {
                conn,
                bytes_in,
                bytes_out,
                crc_errors,
                rewinds,
                ..
            } => {
                let totals = Totals {
                    bytes_in: *bytes_in,
                    bytes_out: *bytes_out,
                    crc_errors: *crc_errors,
                    rewinds: *rewinds,
                };
                self.count(*conn, totals);
                if let Some(c) = self.conns.remove(conn) {
                    self.connected.get_or_create(&c.kind).dec();
                    if !self.conns.values().any(|o| o.device == c.device) {
                        self.gone.insert(c.device, now);
                    }
                }
            }
            EventKind::FileSaved { size, .. } => {
                self.files_saved.inc();
                self.bytes_saved.inc_by(*size);
            }
            EventKind::FileFailed { reason, .. } => {
                self.files_failed
                    .get_or_create(&labels(&[("reason", failure_kind(reason))]))
                    .inc();
            }
            EventKind::FileStarted { resumed_from, .. } if resumed_from.is_some() => {
                self.resumes.inc();
            }
            EventKind::FilePushed { .. } => {
                self.pushes.get_or_create(&labels(&[("outcome", "sent")])).inc();
            }
            EventKind::FilePushFailed { .. } => {
                self.pushes.get_or_create(&labels(&[("outcome", "failed")])).inc();
            }
            EventKind::Reconnecting { .. } => {
                self.reconnects.inc();
            }
            EventKind::Dropped { events, bytes } => {
                self.dropped_events.inc_by(*events);
                self.dropped_bytes.inc_by(*bytes);
            }
            EventKind::Error { .. } => {
                self.errors.inc();
            }
            _ => {}
        }
        self.forget_old(now);
    }

    /// Adds what a connection's totals grew by since they were last counted.
    fn count(&mut self, conn: ConnId, now: Totals) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let was = c.counted;
        let grew = |now: u64, was: u64| now.saturating_sub(was);
        let (din, dout) = (
            grew(now.bytes_in, was.bytes_in),
            grew(now.bytes_out, was.bytes_out),
        );
        self.crc_errors.inc_by(grew(now.crc_errors, was.crc_errors));
        self.rewinds.inc_by(grew(now.rewinds, was.rewinds));
        c.counted = Totals {
            bytes_in: was.bytes_in.max(now.bytes_in),
            bytes_out: was.bytes_out.max(now.bytes_out),
            crc_errors: was.crc_errors.max(now.crc_errors),
            rewinds: was.rewinds.max(now.rewinds),
        };
        let device = labels(&[("device", &c.device)]);
        self.bytes_in.inc_by(din);
        self.bytes_out.inc_by(dout);
        self.device_bytes_in.get_or_create(&device).inc_by(din);
        self.device_bytes_out.get_or_create(&device).inc_by(dout);
    }

    /// Per-device series of devices gone for an hour are removed.
    fn forget_old(&mut self, now: Instant) {
        let old: Vec<String> = self
            .gone
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= DEVICE_SERIES_KEPT)
            .map(|(d, _)| d.clone())
            .collect();
        for device in old {
            self.gone.remove(&device);
            let l = labels(&[("device", &device)]);
            self.device_bytes_in.remove(&l);
            self.device_bytes_out.remove(&l);
        }
    }

    pub fn text(&mut self, now: Instant, broker: Option<&QueueDepth>) -> String {
        self.forget_old(now);
        if let Some(depth) = broker {
            self.broker_queue.set(depth.bytes() as i64);
        }
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A few words for a failure's reason, as a label (a bounded set).
fn failure_kind(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.contains("interrupted") {
        "interrupted"
    } else if r.contains("crc") {
        "crc_mismatch"
    } else if r.contains("size") {
        "size_mismatch"
    } else if r.contains("cut short") {
        "truncated"
    } else if r.contains("max-file-size") || r.contains("too large") || r.contains("larger") {
        "too_large"
    } else if r.contains("disk") || r.contains("space") || r.contains("cannot store") {
        "disk"
    } else {
        "other"
    }
}

/// Binds `addr` (before the engine starts, so a taken port is said at once).
pub fn bind(addr: &str) -> Result<tiny_http::Server, String> {
    tiny_http::Server::http(addr).map_err(|e| {
        format!("cannot serve metrics on {addr}: {e}; choose another address with --metrics HOST:PORT")
    })
}

/// Counts events and answers scrapes until the engine stops.
pub async fn run(server: tiny_http::Server, mut events: EventReceiver, broker: Option<QueueDepth>) {
    let metrics = Arc::new(Mutex::new(Metrics::new()));
    let server = Arc::new(server);
    let serving = {
        let (metrics, server) = (metrics.clone(), server.clone());
        std::thread::Builder::new()
            .name("benchlink-metrics".into())
            .spawn(move || {
                for request in server.incoming_requests() {
                    let (status, body) = if request.url() == "/metrics" {
                        let text = metrics
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .text(Instant::now(), broker.as_ref());
                        (200, text)
                    } else {
                        (404, "benchlink serves /metrics\n".to_string())
                    };
                    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
                    if let Ok(h) = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"text/plain; version=0.0.4; charset=utf-8"[..],
                    ) {
                        response = response.with_header(h);
                    }
                    let _ = request.respond(response);
                }
            })
    };
    while let Some(event) = events.recv().await {
        let stopped = matches!(event.kind, EventKind::Stopped { .. });
        metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(&event.kind, Instant::now());
        if stopped {
            break;
        }
    }
    server.unblock();
    if let Ok(thread) = serving {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ConnCounters;

    fn value(text: &str, line_start: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn events_become_counters_and_old_devices_leave() {
        let mut m = Metrics::new();
        let t0 = Instant::now();
        m.observe(
            &EventKind::Connected {
                conn: 1,
                device: "cam".into(),
                peer: "/dev/ttyUSB0".into(),
                protocol: "frames".into(),
            },
            t0,
        );
        m.observe(
            &EventKind::Stats {
                devices: vec![ConnCounters {
                    conn: 1,
                    bytes_in: 1000,
                    bytes_out: 10,
                    crc_errors: 3,
                    rewinds: 1,
                }],
            },
            t0,
        );
        m.observe(
            &EventKind::Disconnected {
                conn: 1,
                device: "cam".into(),
                reason: "x".into(),
                bytes_in: 1500,
                bytes_out: 12,
                crc_errors: 5,
                rewinds: 2,
            },
            t0,
        );
        m.observe(
            &EventKind::FileFailed {
                conn: 1,
                device: "cam".into(),
                name: "a".into(),
                reason: "interrupted (closed by the device)".into(),
                part: None,
            },
            t0,
        );
        let text = m.text(t0, None);
        assert_eq!(value(&text, "benchlink_bytes_in_total"), Some(1500.0), "{text}");
        // Cumulative per connection: counted once, up to the final figures.
        assert_eq!(value(&text, "benchlink_crc_errors_total"), Some(5.0), "{text}");
        assert_eq!(value(&text, "benchlink_rewinds_total"), Some(2.0), "{text}");
        assert_eq!(
            value(&text, "benchlink_device_bytes_in_total{device=\"cam\"}"),
            Some(1500.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                "benchlink_devices_connected{protocol=\"frames\",link=\"serial\"}"
            ),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            value(&text, "benchlink_files_failed_total{reason=\"interrupted\"}"),
            Some(1.0),
            "{text}"
        );
        let later = m.text(t0 + DEVICE_SERIES_KEPT, None);
        assert!(!later.contains("device=\"cam\""), "{later}");
        assert_eq!(value(&later, "benchlink_bytes_in_total"), Some(1500.0));
    }
}
