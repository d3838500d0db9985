//! Every engine event to an MQTT broker, as the same JSON objects `--json`
//! prints: `benchlink/<bench>/<device>/<kind>` (QoS 1), device status retained,
//! the bench's own status with a last will. A consumer of events like any front
//! end: it has its own byte-bounded queue, so a slow or absent broker never
//! holds up the engine or the screen; while the broker is away events wait in
//! that queue and, past its bound, texts, progress and stats are dropped and
//! counted (a `dropped` event is published when the link is back).

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub mod client;

use rumqttc::MqttOptions;

use client::{Client, Polled, Version};

use crate::config::ConfigError;
use crate::engine::event_queue::EventReceiver;
use crate::engine::{ConnId, Event, EventKind};

/// Bytes of droppable events waiting for the broker.
pub const QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// At most this often per transfer: file_progress and file_push_progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// At most this often: stats.
const STATS_EVERY: Duration = Duration::from_secs(1);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The largest packet either way (a text event is at most 64 KiB).
const MAX_PACKET: u32 = 1 << 20;

/// `--mqtt mqtt://[USER[:PASS]@]HOST[:PORT]` (or `mqtts://`, TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSpec {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    /// `mqtts://`: TLS, the broker's certificate checked against the system's roots.
    pub tls: bool,
}

impl MqttSpec {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| {
            ConfigError(format!(
                "bad broker address {text:?}: {why}; write mqtt://HOST[:PORT] or mqtt://USER:PASS@HOST[:PORT]"
            ))
        };
        let (tls, rest) = match text.split_once("://") {
            Some(("mqtt", rest)) => (false, rest),
            Some(("mqtts", rest)) => (true, rest),
            Some((scheme, _)) => return Err(bad(&format!("unknown scheme {scheme:?}"))),
            None => (false, text),
        };
        let (login, hostport) = match rest.rsplit_once('@') {
            Some((login, hostport)) => (Some(login), hostport),
            None => (None, rest),
        };
        let (user, password) = match login {
            Some(login) => match login.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(login.to_string()), None),
            },
            None => (None, None),
        };
        let hostport = hostport.trim_end_matches('/');
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || p.parse::<u16>().is_ok() => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| bad(&format!("{p:?} is not a port number")))?;
                (h, port)
            }
            _ => (hostport, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
            user,
            password,
            tls,
        })
    }

    /// The client's options (MQTT 3.1.1): credentials, keep-alive, and TLS for `mqtts://`.
    pub fn options(&self, client_id: String) -> Result<MqttOptions, String> {
        let mut options = MqttOptions::new(client_id, self.host.clone(), self.port);
        options.set_keep_alive(KEEP_ALIVE);
        options.set_max_packet_size(MAX_PACKET as usize, MAX_PACKET as usize);
        if let Some(user) = &self.user {
            options.set_credentials(user.clone(), self.password.clone().unwrap_or_default());
        }
        if let Some(transport) = self.transport()? {
            options.set_transport(transport);
        }
        Ok(options)
    }

    /// TLS for `mqtts://`, nothing otherwise (plain TCP).
    pub fn transport(&self) -> Result<Option<rumqttc::Transport>, String> {
        if !self.tls {
            return Ok(None);
        }
        Ok(Some(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(tls_config()?)),
        )))
    }
}

/// TLS with the system's root certificates (`SSL_CERT_FILE` and `SSL_CERT_DIR`
/// are honoured, as by OpenSSL), ring for the cryptography.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(
            "mqtts:// needs the system's root certificates and none were found; install ca-certificates, or point SSL_CERT_FILE at your broker's CA"
                .into(),
        );
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A topic level from a device or bench name: MQTT forbids `+` and `#` in
/// published topics, and `/` would add a level.
pub fn level(name: &str) -> String {
    name.replace('%', "%25")
        .replace('/', "%2F")
        .replace('+', "%2B")
        .replace('#', "%23")
}

/// The name a topic level stands for (the reverse of [`level`]).
pub fn unlevel(level: &str) -> String {
    level
        .replace("%23", "#")
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%25", "%")
}

/// A command published to a `cmd` topic: a plain line, or
/// `{"line": "...", "id": "..."}` whose reply carries the same `id`.
pub fn parse_command(payload: &[u8]) -> Option<(String, Option<String>)> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    if text.starts_with('{')
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(text)
    {
        let line = v.get("line")?.as_str()?.to_string();
        let id = v.get("id").and_then(|i| match i {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        });
        return Some((line, id));
    }
    (!text.is_empty()).then(|| (text.to_string(), None))
}

/// The device an event is about, and its kind in the topic.
pub fn topic_parts(kind: &EventKind) -> (Option<&str>, &'static str) {
    match kind {
        EventKind::Text { device, .. } => (Some(device), "text"),
        EventKind::Texts(batch) => (Some(&batch.device), "text"),
        EventKind::FileStarted { device, .. }
        | EventKind::FileSaved { device, .. }
        | EventKind::FileFailed { device, .. }
        | EventKind::PartRemoved { device, .. } => (Some(device), "file"),
        EventKind::FileProgress { device, .. } | EventKind::FilePushProgress { device, .. } => {
            (Some(device), "transfer")
        }
        EventKind::FilePushStarted { device, .. }
        | EventKind::FilePushed { device, .. }
        | EventKind::FilePushFailed { device, .. } => (Some(device), "push"),
        EventKind::Connected { device, .. }
        | EventKind::Disconnected { device, .. }
        | EventKind::Reconnecting { device, .. }
        | EventKind::LinkClosed { device, .. } => (Some(device), "connection"),
        EventKind::Listening { .. } => (None, "listening"),
        EventKind::Error { .. } => (None, "error"),
        EventKind::Reply { .. } => (None, "reply"),
        EventKind::Stats { .. } => (None, "stats"),
        EventKind::Dropped { .. } => (None, "dropped"),
        EventKind::Stopped { .. } => (None, "stopped"),
        EventKind::Broker { .. } => (None, "broker"),
    }
}

/// The retained status a connection event sets for its device.
fn device_status(kind: &EventKind) -> Option<&'static str> {
    match kind {
        EventKind::Connected { .. } => Some("online"),
        EventKind::Reconnecting { .. } => Some("reconnecting"),
        EventKind::Disconnected { .. } | EventKind::LinkClosed { .. } => Some("offline"),
        _ => None,
    }
}

/// One message for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    /// MQTT 5 correlation data (a reply to a command that came with some).
    pub correlation: Option<bytes::Bytes>,
}

impl Outgoing {
    pub fn new(topic: String, payload: Vec<u8>, retain: bool) -> Self {
        Self {
            topic,
            payload,
            retain,
            correlation: None,
        }
    }
}

/// `--files-url`: the web address of the received folder, and that folder
/// (absolute, as in `file_saved`'s path).
#[derive(Debug, Clone)]
pub struct FilesUrl {
    pub base: String,
    pub dir: std::path::PathBuf,
}

impl FilesUrl {
    /// The URL of a saved file; none for a path outside the folder.
    pub fn of(&self, path: &str) -> Option<String> {
        let relative = std::path::Path::new(path).strip_prefix(&self.dir).ok()?;
        let mut url = self.base.trim_end_matches('/').to_string();
        for part in relative.components() {
            url.push('/');
            url.push_str(&percent_encode(&part.as_os_str().to_string_lossy()));
        }
        Some(url)
    }
}

/// A path segment as a URL writes it: anything but unreserved characters as %XX.
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Turns events into messages, sampling the high-rate ones.
pub struct Topics {
    bench: String,
    last_progress: HashMap<(ConnId, String), Instant>,
    last_stats: Option<Instant>,
    /// Events left out by sampling (progress, stats), for the metrics.
    pub sampled_out: u64,
    /// Devices whose retained status is not `offline`: set offline when the
    /// console stops, whatever happened to their own events.
    online: std::collections::HashSet<String>,
    files_url: Option<FilesUrl>,
}

impl Topics {
    pub fn new(bench: &str) -> Self {
        Self {
            bench: level(bench),
            last_progress: HashMap::new(),
            last_stats: None,
            sampled_out: 0,
            online: std::collections::HashSet::new(),
            files_url: None,
        }
    }

    /// Saved files are published with their URL under `files`.
    pub fn with_files_url(mut self, files: Option<FilesUrl>) -> Self {
        self.files_url = files;
        self
    }

    pub fn bench_status(&self) -> String {
        format!("benchlink/{}/status", self.bench)
    }

    /// The messages one event becomes (none when sampled out).
    pub fn messages(&mut self, event: &Event, now: Instant) -> Vec<Outgoing> {
        match &event.kind {
            EventKind::FileProgress { conn, name, .. } | EventKind::FilePushProgress { conn, name, .. } => {
                let key = (*conn, name.clone());
                if self
                    .last_progress
                    .get(&key)
                    .is_some_and(|t| now - *t < PROGRESS_EVERY)
                {
                    self.sampled_out += 1;
                    return Vec::new();
                }
                if self.last_progress.len() > 4096 {
                    self.last_progress.clear();
                }
                self.last_progress.insert(key, now);
            }
            EventKind::Stats { .. } => {
                if self.last_stats.is_some_and(|t| now - t < STATS_EVERY) {
                    self.sampled_out += 1;
                    return Vec::new();
                }
                self.last_stats = Some(now);
            }
            _ => {}
        }
        let (device, kind) = topic_parts(&event.kind);
        let base = match device {
            Some(d) => format!("benchlink/{}/{}", self.bench, level(d)),
            None => format!("benchlink/{}", self.bench),
        };
        let mut payload = crate::headless::json(event);
        if let (EventKind::FileSaved { path, .. }, Some(files)) = (&event.kind, &self.files_url)
            && let Some(url) = files.of(path)
            && payload.ends_with('}')
        {
            // The event's own JSON with one more field.
            payload.pop();
            payload.push_str(",\"url\":");
            payload.push_str(&serde_json::Value::String(url).to_string());
            payload.push('}');
        }
        let mut out = vec![Outgoing::new(
            format!("{base}/{kind}"),
            payload.into_bytes(),
            false,
        )];
        if let Some(status) = device_status(&event.kind) {
            out.push(Outgoing::new(
                format!("{base}/status"),
                status.as_bytes().to_vec(),
                true,
            ));
            if status == "offline" {
                self.online.remove(&base);
            } else {
                self.online.insert(base.clone());
            }
        }
        if matches!(event.kind, EventKind::Stopped { .. }) {
            for base in self.online.drain() {
                out.push(Outgoing::new(format!("{base}/status"), b"offline".to_vec(), true));
            }
        }
        out
    }
}

/// A command taken from the broker: where its reply goes, with the id and the
/// MQTT 5 correlation data it came with.
struct Pending {
    reply_topics: Vec<String>,
    id: Option<String>,
    correlation: Option<bytes::Bytes>,
}

/// The reply topics of a command: `.../reply` (where every observer, `watch`
/// included, looks), and the MQTT 5 response topic when the sender named one
/// (a publishable topic only: no wildcards).
fn reply_topics(cmd_prefix: &str, device: Option<&str>, response_topic: Option<&str>) -> Vec<String> {
    let mut topics = vec![match device {
        Some(d) => format!("{cmd_prefix}{}/reply", level(d)),
        None => format!("{cmd_prefix}reply"),
    }];
    if let Some(t) = response_topic
        && !t.is_empty()
        && !t.contains(['+', '#'])
        && !topics.iter().any(|r| r == t)
    {
        topics.push(t.to_string());
    }
    topics
}

/// Publishes events until the engine stops; with `commands`, also takes command
/// lines from `benchlink/<bench>/cmd` and `benchlink/<bench>/<device>/cmd`.
pub async fn run(
    spec: MqttSpec,
    bench: String,
    mut events: EventReceiver,
    commands: Option<tokio::sync::mpsc::Sender<crate::engine::Command>>,
    front_end: Option<crate::engine::event_queue::EventSender>,
    files_url: Option<FilesUrl>,
) {
    let tell = |state: &str, detail: String| {
        if let Some(f) = &front_end {
            f.send(Event::now(EventKind::Broker {
                state: state.into(),
                detail,
            }));
        }
    };
    let mut topics = Topics::new(&bench).with_files_url(files_url);
    let client_id = format!("benchlink-{}-{}", level(&bench), std::process::id());
    let will_topic = topics.bench_status();
    let connect = |version| {
        Client::new(
            &spec,
            version,
            client_id.clone(),
            Some((will_topic.clone(), "offline")),
            256,
        )
    };
    let mut client = match connect(Version::V5) {
        Ok(client) => client,
        Err(why) => {
            tell("down", why.clone());
            tracing::warn!("MQTT: {why}");
            return;
        }
    };
    // Once a version has been accepted, the run keeps it.
    let mut version_settled = false;
    let mut connected = false;
    let mut backoff = BACKOFF_FIRST;
    let mut said_down: Option<String> = None;
    // Messages the client's queue could not take yet.
    let mut waiting: std::collections::VecDeque<Outgoing> = std::collections::VecDeque::new();
    let mut stopping = false;
    let mut disconnecting = false;
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut next_tag = 0u64;
    let bench_level = level(&bench);
    let cmd_prefix = format!("benchlink/{bench_level}/");
    loop {
        tokio::select! {
            polled = client.poll() => match polled {
                Polled::ConnAck => {
                    connected = true;
                    version_settled = true;
                    backoff = BACKOFF_FIRST;
                    if said_down.take().is_some() {
                        tracing::warn!("MQTT: connected to {}:{} again", spec.host, spec.port);
                    }
                    tell(
                        "connected",
                        format!("{}:{} as bench {bench} ({})", spec.host, spec.port, client.version().label()),
                    );
                    client.try_publish(&topics.bench_status(), b"online", true, None);
                    if commands.is_some() {
                        client.try_subscribe(&format!("{cmd_prefix}cmd"));
                        client.try_subscribe(&format!("{cmd_prefix}+/cmd"));
                    }
                }
                Polled::Message(message) => {
                    let Some(commands) = &commands else { continue };
                    let Some(rest) = message.topic.strip_prefix(&cmd_prefix) else { continue };
                    let device = match rest.strip_suffix("/cmd") {
                        Some(d) if !d.contains('/') => Some(unlevel(d)),
                        _ if rest == "cmd" => None,
                        _ => continue,
                    };
                    let Some((line, id)) = parse_command(&message.payload) else { continue };
                    next_tag += 1;
                    let tag = format!("mqtt-{next_tag}");
                    if pending.len() > 1024 {
                        pending.clear();
                    }
                    pending.insert(
                        tag.clone(),
                        Pending {
                            reply_topics: reply_topics(&cmd_prefix, device.as_deref(), message.response_topic.as_deref()),
                            id,
                            correlation: message.correlation,
                        },
                    );
                    let command = crate::engine::Command::Remote { line, device, tag };
                    let _ = commands.try_send(command);
                }
                Polled::Disconnected if stopping => return,
                Polled::Disconnected | Polled::Other => {}
                Polled::Failed { why, answered } => {
                    connected = false;
                    if stopping {
                        return;
                    }
                    if said_down.as_ref() != Some(&why) {
                        tell("down", format!("{}:{}: {why}; events wait, retrying", spec.host, spec.port));
                        tracing::warn!(
                            "MQTT: no broker at {}:{} ({why}); events wait (texts, progress and stats are dropped past {} MiB), retrying",
                            spec.host,
                            spec.port,
                            QUEUE_BYTES >> 20
                        );
                        said_down = Some(why);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    // A broker answered but did not take this version: try the other one.
                    if answered && !version_settled {
                        let other = match client.version() {
                            Version::V5 => Version::V311,
                            Version::V311 => Version::V5,
                        };
                        if let Ok(c) = connect(other) {
                            client = c;
                            backoff = BACKOFF_FIRST;
                        }
                    }
                }
            },
            event = events.recv(), if connected && waiting.is_empty() && !stopping => {
                let Some(event) = event else {
                    // The bench goes offline once everything before it is handed over.
                    stopping = true;
                    waiting.push_back(Outgoing::new(topics.bench_status(), b"offline".to_vec(), true));
                    continue;
                };
                let stopped = matches!(event.kind, EventKind::Stopped { .. });
                // The reply to a command from the broker goes back where it came from.
                let remote = match &event.kind {
                    EventKind::Reply { id: Some(tag), .. } => pending.remove(tag),
                    _ => None,
                };
                match remote {
                    Some(Pending { reply_topics, id, correlation }) => {
                        let mut event = event;
                        if let EventKind::Reply { id: reply_id, .. } = &mut event.kind {
                            *reply_id = id;
                        }
                        let payload = crate::headless::json(&event).into_bytes();
                        for topic in reply_topics {
                            let mut reply = Outgoing::new(topic, payload.clone(), false);
                            reply.correlation = correlation.clone();
                            waiting.push_back(reply);
                        }
                    }
                    None => waiting.extend(topics.messages(&event, Instant::now())),
                };
                if stopped {
                    waiting.push_back(Outgoing::new(topics.bench_status(), b"offline".to_vec(), true));
                }
            }
        }
        // Hand what waits to the client as its queue takes it.
        while let Some(m) = waiting.front() {
            if !client.try_publish(&m.topic, &m.payload, m.retain, m.correlation.as_ref()) {
                break;
            }
            waiting.pop_front();
        }
        if stopping && waiting.is_empty() && !disconnecting {
            disconnecting = client.try_disconnect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses() {
        let s = MqttSpec::parse("mqtt://broker.lab:1884").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.user), ("broker.lab", 1884, None));
        let s = MqttSpec::parse("mqtt://bench:s3cret@10.0.0.5").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("10.0.0.5", 1883));
        assert_eq!(
            (s.user.as_deref(), s.password.as_deref()),
            (Some("bench"), Some("s3cret"))
        );
        let s = MqttSpec::parse("mqtt://[::1]:1883").unwrap();
        assert_eq!(s.host, "::1");
        let s = MqttSpec::parse("mqtts://broker.lab").unwrap();
        assert_eq!((s.port, s.tls), (8883, true));
        assert!(
            MqttSpec::parse("http://x")
                .unwrap_err()
                .0
                .contains("unknown scheme")
        );
        assert!(
            MqttSpec::parse("mqtt://x:port")
                .unwrap_err()
                .0
                .contains("not a port number")
        );
    }

    #[test]
    fn commands_are_lines_or_json_with_an_id() {
        assert_eq!(parse_command(b"status\n"), Some(("status".into(), None)));
        assert_eq!(
            parse_command(br#"{"line": "/list", "id": "job-7"}"#),
            Some(("/list".into(), Some("job-7".into())))
        );
        assert_eq!(
            parse_command(br#"{"line": "x", "id": 42}"#),
            Some(("x".into(), Some("42".into())))
        );
        assert_eq!(parse_command(b"  "), None);
        assert_eq!(unlevel(&level("10.0.0.2#2/x+y%")), "10.0.0.2#2/x+y%");
    }

    #[test]
    fn files_url_is_the_path_under_the_folder_encoded() {
        let files = FilesUrl {
            base: "http://bench-3:8000/r/".into(),
            dir: "/srv/received".into(),
        };
        assert_eq!(
            files.of("/srv/received/cam #1/shot 2%.jpg").as_deref(),
            Some("http://bench-3:8000/r/cam%20%231/shot%202%25.jpg")
        );
        assert_eq!(files.of("/elsewhere/x.jpg"), None);
        let mut t = Topics::new("b").with_files_url(Some(files));
        let saved = Event::now(EventKind::FileSaved {
            conn: 1,
            device: "cam".into(),
            name: "a.jpg".into(),
            path: "/srv/received/cam/a.jpg".into(),
            size: 3,
            crc32: 7,
            seconds: 0.1,
            ended_by_close: false,
        });
        let m = t.messages(&saved, Instant::now());
        let json: serde_json::Value = serde_json::from_slice(&m[0].payload).unwrap();
        assert_eq!(json["url"], "http://bench-3:8000/r/cam/a.jpg");
        assert_eq!(json["crc32"], 7);
    }

    #[test]
    fn topics_escape_wildcards_and_sample_progress() {
        let mut t = Topics::new("lab 1");
        let now = Instant::now();
        let text = Event::now(EventKind::Text {
            conn: 1,
            device: "10.0.0.2#2".into(),
            direction: crate::engine::Direction::In,
            text: "temp 21".into(),
            raw: None,
        });
        let m = t.messages(&text, now);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].topic, "benchlink/lab 1/10.0.0.2%232/text");
        let json: serde_json::Value = serde_json::from_slice(&m[0].payload).unwrap();
        assert_eq!(json["text"], "temp 21");
        let progress = |bytes| {
            Event::now(EventKind::FileProgress {
                conn: 1,
                device: "cam".into(),
                name: "a.jpg".into(),
                bytes,
            })
        };
        assert_eq!(t.messages(&progress(1), now).len(), 1);
        assert!(
            t.messages(&progress(2), now + Duration::from_millis(100))
                .is_empty()
        );
        assert_eq!(
            t.messages(&progress(3), now + Duration::from_millis(600)).len(),
            1
        );
        assert_eq!(t.sampled_out, 1);
        let connected = Event::now(EventKind::Connected {
            conn: 1,
            device: "cam".into(),
            peer: "x".into(),
            protocol: "frames".into(),
        });
        let m = t.messages(&connected, now);
        assert_eq!(m[1].topic, "benchlink/lab 1/cam/status");
        assert!(m[1].retain);
        assert_eq!(m[1].payload, b"online");
    }
}
