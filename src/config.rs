//! Settings: defaults, then config.toml, then the command line.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::{Cli, LineEndingArg, parse_duration_arg, parse_size_arg};
use crate::link_spec::{ConnectSpec, ConnectTable, SerialSpec, SerialTable};
use crate::protocol::{LineEnding, ListenProtocol};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:9999";
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_MAX_LINE: u64 = 64 * 1024;
pub const DEFAULT_MAX_FILE_SIZE: u64 = 4 * 1024 * 1024 * 1024;
pub const DEFAULT_GREETING: &str = "hello client";
pub const DEFAULT_AUTO_DELAY: Duration = Duration::from_millis(300);
pub const DEFAULT_MAX_LOG_SIZE: u64 = 16 * 1024 * 1024;
pub const DEFAULT_MAX_PARTS: usize = 64;
pub const DEFAULT_EVENT_QUEUE: u64 = 64 * 1024 * 1024;
pub const DEFAULT_MAX_FRAME: u64 = crate::protocol::frames::DEFAULT_MAX_FRAME as u64;

/// A setting the user got wrong, said as a sentence that tells what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One `--listen` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    pub protocol: ListenProtocol,
    /// `udp://HOST:PORT`: each source address is a lines device.
    pub udp: bool,
    /// `HOST:PORT`, resolved when bound.
    pub addr: String,
}

impl ListenSpec {
    /// `HOST:PORT`, `PROTO://HOST:PORT`, or, as socat and nc take them, `PORT`
    /// and `:PORT` for every address. A mistake is named precisely.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let protocols = ListenProtocol::NAMES.join(", ");
        let bad = |why: String| {
            ConfigError(format!(
                "bad listen address {text:?}: {why}; write PORT, HOST:PORT or PROTO://HOST:PORT with PROTO one of {protocols}, udp"
            ))
        };
        let mut udp = false;
        let (protocol, addr) = match text.split_once("://") {
            Some((proto, addr)) if proto.eq_ignore_ascii_case("udp") => {
                udp = true;
                (ListenProtocol::Lines, addr)
            }
            Some((proto, addr)) => match ListenProtocol::parse(proto) {
                Some(p) => (p, addr),
                None => return Err(bad(format!("unknown protocol {proto:?}"))),
            },
            None => {
                if let Some((proto, _)) = text.split_once(":/")
                    && ListenProtocol::parse(proto).is_some()
                {
                    return Err(bad(format!("{proto}: needs // after it")));
                }
                (ListenProtocol::Auto, text)
            }
        };
        let (host, port) = match addr.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None if !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_digit()) => ("", addr),
            None => return Err(bad("no port".into())),
        };
        let port_number: u32 = port
            .parse()
            .map_err(|_| bad(format!("{port:?} is not a port number")))?;
        if port_number > u32::from(u16::MAX) {
            return Err(bad(format!("port {port_number} is out of range (0 to 65535)")));
        }
        // No host: every address, as `nc -l 9931` and socat's TCP-LISTEN:9931 mean.
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        Ok(Self {
            protocol,
            udp,
            addr: format!("{host}:{port_number}"),
        })
    }
}

/// Everything the engine and the front ends need, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: Vec<ListenSpec>,
    pub dir: PathBuf,
    pub max_connections: usize,
    pub max_line: usize,
    pub max_file_size: u64,
    pub greeting: String,
    /// None: each protocol's own default (cf none, lines CRLF).
    pub line_ending: Option<LineEnding>,
    pub auto_delay: Duration,
    pub log_conversations: bool,
    pub aliases: HashMap<IpAddr, String>,
    /// Native-frame devices must present this in HELLO.
    pub token: Option<String>,
    pub max_frame: usize,
    /// The TUI's theme, as given (`--theme` or `theme = "..."`).
    pub theme: String,
    /// A conversation.log larger than this is rotated to conversation.log.1.
    pub max_log_size: u64,
    /// `.part` files kept per device folder; the oldest are removed first.
    pub max_parts: usize,
    /// Bytes of events queued for a slow front end before texts are dropped.
    pub event_queue: usize,
    /// Connections silent this long are closed; None: never.
    pub idle_timeout: Option<Duration>,
    /// Macros by name (`F5`..`F12` from `[macros]`, others from `[macros.named]`).
    pub macros: std::collections::BTreeMap<String, String>,
    /// Cut images out of lines streams (off with `--no-carve` or `carve = false`).
    pub carve: bool,
    /// The MQTT broker events are published to (`--mqtt`, `[mqtt] url`).
    pub mqtt: Option<crate::mqtt::MqttSpec>,
    /// This bench's name in MQTT topics (`--bench`, `[mqtt] bench`, the host name).
    pub bench: String,
    /// Take commands from the broker (`--mqtt-commands`, `[mqtt] commands`).
    pub mqtt_commands: bool,
    /// Where a web server serves the received folder (`--files-url`,
    /// `[mqtt] files_url`): saved files are published with their URL.
    pub files_url: Option<String>,
    /// Where Prometheus metrics are served (`--metrics`, `metrics = "..."`).
    pub metrics: Option<String>,
    /// Serial ports to open (`--serial`, `[[serial]]`).
    pub serial: Vec<SerialSpec>,
    /// Devices to connect to (`--connect`, `[[connect]]`).
    pub connect: Vec<ConnectSpec>,
}

impl Settings {
    /// Merges the command line over the config file over the defaults.
    pub fn resolve(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => FileConfig::load(path)?,
            None => match default_config_path() {
                Some(path) if path.exists() => FileConfig::load(&path)?,
                _ => FileConfig::default(),
            },
        };
        let dir = match cli.dir.clone().or(file.dir) {
            Some(dir) => dir,
            None => default_received_dir()?,
        };
        let listen_texts = if !cli.listen.is_empty() {
            cli.listen.clone()
        } else {
            file.listen.unwrap_or_else(|| vec![DEFAULT_LISTEN.to_string()])
        };
        let listen = listen_texts
            .iter()
            .map(|t| ListenSpec::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        if listen.is_empty() {
            return Err(ConfigError(
                "no listen address: give at least one with --listen HOST:PORT".into(),
            ));
        }
        let max_connections = cli
            .max_connections
            .or(file.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(ConfigError("max_connections must be at least 1".into()));
        }
        let max_file_size = cli
            .max_file_size
            .or(file.max_file_size)
            .unwrap_or(DEFAULT_MAX_FILE_SIZE);
        if max_file_size == 0 {
            return Err(ConfigError("max_file_size must be at least 1 byte".into()));
        }
        let max_line = cli.max_line.or(file.max_line).unwrap_or(DEFAULT_MAX_LINE);
        if max_line == 0 || max_line > 16 * 1024 * 1024 {
            return Err(ConfigError("max_line must be between 1 byte and 16MiB".into()));
        }
        let max_frame = cli.max_frame.or(file.max_frame).unwrap_or(DEFAULT_MAX_FRAME);
        if !(64..=64 * 1024 * 1024).contains(&max_frame) {
            return Err(ConfigError("max_frame must be between 64 bytes and 64MiB".into()));
        }
        let max_log_size = cli
            .max_log_size
            .or(file.max_log_size)
            .unwrap_or(DEFAULT_MAX_LOG_SIZE);
        if max_log_size < 4096 {
            return Err(ConfigError("max_log_size must be at least 4KiB".into()));
        }
        let max_parts = cli.max_parts.or(file.max_parts).unwrap_or(DEFAULT_MAX_PARTS);
        if max_parts == 0 {
            return Err(ConfigError(
                "max_parts must be at least 1 (unfinished files kept per device for resuming)".into(),
            ));
        }
        let event_queue = cli
            .event_queue
            .or(file.event_queue)
            .unwrap_or(DEFAULT_EVENT_QUEUE);
        if !(64 * 1024..=4 * 1024 * 1024 * 1024).contains(&event_queue) {
            return Err(ConfigError("event_queue must be between 64KiB and 4GiB".into()));
        }
        let token = cli.token.clone().or(file.token);
        if token.as_deref() == Some("") {
            return Err(ConfigError(
                "the token is empty; give a secret (--token SECRET, or token = \"...\" in config.toml)"
                    .into(),
            ));
        }
        let line_ending = match cli.line_ending {
            Some(LineEndingArg::None) => Some(LineEnding::None),
            Some(LineEndingArg::Lf) => Some(LineEnding::Lf),
            Some(LineEndingArg::Crlf) => Some(LineEnding::CrLf),
            Some(LineEndingArg::Cr) => Some(LineEnding::Cr),
            None => file.line_ending,
        };
        Ok(Self {
            listen,
            dir,
            max_connections,
            max_line: max_line as usize,
            max_file_size: cli
                .max_file_size
                .or(file.max_file_size)
                .unwrap_or(DEFAULT_MAX_FILE_SIZE),
            greeting: cli
                .greeting
                .clone()
                .or(file.greeting)
                .unwrap_or_else(|| DEFAULT_GREETING.into()),
            line_ending,
            auto_delay: cli
                .auto_delay_ms
                .or(file.auto_delay_ms)
                .map_or(DEFAULT_AUTO_DELAY, Duration::from_millis),
            log_conversations: !cli.no_log && file.log_conversations.unwrap_or(true),
            carve: !cli.no_carve && file.carve.unwrap_or(true),
            mqtt: match cli.mqtt.as_deref().or(file.mqtt.url.as_deref()) {
                Some(url) => Some(crate::mqtt::MqttSpec::parse(url)?),
                None => None,
            },
            bench: cli
                .bench
                .clone()
                .or(file.mqtt.bench.clone())
                .unwrap_or_else(host_name),
            mqtt_commands: cli.mqtt_commands || file.mqtt.commands.unwrap_or(false),
            files_url: match cli.files_url.clone().or(file.mqtt.files_url.clone()) {
                Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                    return Err(ConfigError(format!(
                        "--files-url {url:?} is not a web address; write it like http://bench-3.lab:8000/received/"
                    )));
                }
                other => other,
            },
            metrics: cli.metrics.clone().or(file.metrics),
            aliases: file.aliases,
            token,
            max_frame: max_frame as usize,
            theme: cli
                .theme
                .clone()
                .or(file.theme)
                .unwrap_or_else(|| "default".into()),
            max_log_size,
            max_parts,
            event_queue: event_queue as usize,
            idle_timeout: cli.idle_timeout.or(file.idle_timeout).filter(|d| !d.is_zero()),
            macros: file.macros,
            serial: {
                let mut serial = file.serial;
                for text in &cli.serial {
                    serial.push(SerialSpec::parse(text)?);
                }
                serial
            },
            connect: {
                let mut connect = file.connect;
                for text in &cli.connect {
                    connect.push(ConnectSpec::parse(text)?);
                }
                connect
            },
        })
    }
}

/// `[mqtt]` in config.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttTable {
    url: Option<String>,
    bench: Option<String>,
    commands: Option<bool>,
    files_url: Option<String>,
}

/// This machine's name: the default bench name in MQTT topics.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if ok && !name.is_empty() {
        name
    } else {
        "bench".into()
    }
}

/// Where user themes live: `<config folder>/themes/NAME.toml`.
pub fn user_themes_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "benchlink").map(|d| d.config_dir().join("themes"))
}

pub fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "benchlink").map(|d| d.config_dir().join("config.toml"))
}

fn default_received_dir() -> Result<PathBuf, ConfigError> {
    directories::ProjectDirs::from("", "", "benchlink")
        .map(|d| d.data_dir().join("received"))
        .ok_or_else(|| {
            ConfigError(
                "cannot find this user's data folder (is HOME set?); choose a folder with --dir DIR".into(),
            )
        })
}

/// config.toml as written by the user; every key is optional.
#[derive(Debug, Default)]
struct FileConfig {
    listen: Option<Vec<String>>,
    dir: Option<PathBuf>,
    max_connections: Option<usize>,
    max_line: Option<u64>,
    max_file_size: Option<u64>,
    greeting: Option<String>,
    line_ending: Option<LineEnding>,
    auto_delay_ms: Option<u64>,
    log_conversations: Option<bool>,
    aliases: HashMap<IpAddr, String>,
    token: Option<String>,
    max_frame: Option<u64>,
    theme: Option<String>,
    max_log_size: Option<u64>,
    max_parts: Option<usize>,
    event_queue: Option<u64>,
    idle_timeout: Option<Duration>,
    macros: std::collections::BTreeMap<String, String>,
    carve: Option<bool>,
    mqtt: MqttTable,
    metrics: Option<String>,
    serial: Vec<SerialSpec>,
    connect: Vec<ConnectSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a size: a number of bytes, or text like \"64KiB\" or \"2GB\""
)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The raw file, before values are checked. Unknown keys are errors: a typo must not
/// be silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileConfig {
    listen: Option<OneOrMany>,
    dir: Option<PathBuf>,
    max_connections: Option<usize>,
    max_line: Option<SizeValue>,
    max_file_size: Option<SizeValue>,
    greeting: Option<String>,
    line_ending: Option<String>,
    auto_delay_ms: Option<u64>,
    log_conversations: Option<bool>,
    #[serde(default)]
    aliases: HashMap<String, String>,
    token: Option<String>,
    max_frame: Option<SizeValue>,
    theme: Option<String>,
    max_log_size: Option<SizeValue>,
    max_parts: Option<usize>,
    event_queue: Option<SizeValue>,
    idle_timeout: Option<String>,
    macros: Option<RawMacros>,
    carve: Option<bool>,
    #[serde(default)]
    mqtt: MqttTable,
    metrics: Option<String>,
    #[serde(default)]
    serial: Vec<SerialTable>,
    #[serde(default)]
    connect: Vec<ConnectTable>,
}

/// `[macros]`: `F5` .. `F12` = a line, or lines separated by `\n`; and
/// `[macros.named]`: NAME = lines, run with `/macro NAME`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMacros {
    #[serde(rename = "F5")]
    f5: Option<String>,
    #[serde(rename = "F6")]
    f6: Option<String>,
    #[serde(rename = "F7")]
    f7: Option<String>,
    #[serde(rename = "F8")]
    f8: Option<String>,
    #[serde(rename = "F9")]
    f9: Option<String>,
    #[serde(rename = "F10")]
    f10: Option<String>,
    #[serde(rename = "F11")]
    f11: Option<String>,
    #[serde(rename = "F12")]
    f12: Option<String>,
    #[serde(default)]
    named: std::collections::BTreeMap<String, String>,
}

impl FileConfig {
    fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display();
        let raw: RawFileConfig = toml::from_str(text).map_err(|e| {
            // toml's own text spans several lines (with a caret under the spot): one line here.
            let at = e
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            // `listen = 0.0.0.0:9936` reads to TOML as a broken number: say what to write.
            let hint = e
                .span()
                .and_then(|span| text[..span.start.min(text.len())].lines().count().checked_sub(1))
                .and_then(|line| text.lines().nth(line))
                .and_then(|line| line.split_once('='))
                .map(|(key, value)| (key.trim(), value.trim()))
                .filter(|(_, value)| {
                    !value.is_empty()
                        && !value.starts_with(['"', '\'', '[', '{'])
                        && value.parse::<f64>().is_err()
                        && !matches!(*value, "true" | "false")
                })
                .map(|(key, value)| format!("; text must be quoted: {key} = \"{value}\""))
                .unwrap_or_default();
            ConfigError(format!(
                "bad config file {shown}{at}: {}{hint}",
                e.message().trim_end()
            ))
        })?;
        let size = |key: &str, v: Option<SizeValue>| -> Result<Option<u64>, ConfigError> {
            match v {
                None => Ok(None),
                Some(SizeValue::Bytes(n)) => Ok(Some(n)),
                Some(SizeValue::Text(t)) => parse_size_arg(&t)
                    .map(Some)
                    .map_err(|e| ConfigError(format!("bad config file {shown}: key `{key}`: {e}"))),
            }
        };
        let line_ending = match raw.line_ending {
            None => None,
            Some(t) => Some(LineEnding::parse(&t).ok_or_else(|| {
                ConfigError(format!(
                    "bad config file {shown}: key `line_ending`: {t:?} is not one of none, lf, crlf, cr"
                ))
            })?),
        };
        let mut aliases = HashMap::new();
        for (ip, name) in raw.aliases {
            let addr: IpAddr = ip.parse().map_err(|_| {
                ConfigError(format!(
                    "bad config file {shown}: key `aliases.\"{ip}\"`: not an IP address (write e.g. \"192.168.4.2\" = \"camera-1\")"
                ))
            })?;
            aliases.insert(addr, name);
        }
        Ok(Self {
            listen: raw.listen.map(|l| match l {
                OneOrMany::One(s) => vec![s],
                OneOrMany::Many(v) => v,
            }),
            dir: raw.dir,
            max_connections: raw.max_connections,
            max_line: size("max_line", raw.max_line)?,
            max_file_size: size("max_file_size", raw.max_file_size)?,
            greeting: raw.greeting,
            line_ending,
            auto_delay_ms: raw.auto_delay_ms,
            log_conversations: raw.log_conversations,
            aliases,
            token: raw.token,
            max_frame: size("max_frame", raw.max_frame)?,
            theme: raw.theme,
            max_log_size: size("max_log_size", raw.max_log_size)?,
            max_parts: raw.max_parts,
            event_queue: size("event_queue", raw.event_queue)?,
            macros: {
                let raw_macros = raw.macros.unwrap_or_default();
                let keys = [
                    ("F5", raw_macros.f5),
                    ("F6", raw_macros.f6),
                    ("F7", raw_macros.f7),
                    ("F8", raw_macros.f8),
                    ("F9", raw_macros.f9),
                    ("F10", raw_macros.f10),
                    ("F11", raw_macros.f11),
                    ("F12", raw_macros.f12),
                ];
                let mut macros = raw_macros.named;
                for (key, body) in keys {
                    if let Some(body) = body {
                        macros.insert(key.to_string(), body);
                    }
                }
                macros
            },
            idle_timeout: match raw.idle_timeout {
                None => None,
                Some(t) => {
                    Some(parse_duration_arg(&t).map_err(|e| {
                        ConfigError(format!("bad config file {shown}: key `idle_timeout`: {e}"))
                    })?)
                }
            },
            carve: raw.carve,
            mqtt: raw.mqtt,
            metrics: raw.metrics,
            serial: raw
                .serial
                .into_iter()
                .map(SerialSpec::from_table)
                .collect::<Result<_, _>>()
                .map_err(|e| ConfigError(format!("bad config file {shown}: {e}")))?,
            connect: raw
                .connect
                .into_iter()
                .map(ConnectSpec::from_table)
                .collect::<Result<_, _>>()
                .map_err(|e| ConfigError(format!("bad config file {shown}: {e}")))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(text, Path::new("/etc/bl.toml"))
    }

    #[test]
    fn listen_specs() {
        let s = ListenSpec::parse("cf://127.0.0.1:0").expect("valid");
        assert_eq!((s.protocol, s.addr.as_str()), (ListenProtocol::Cf, "127.0.0.1:0"));
        let s = ListenSpec::parse("[::1]:9999").expect("valid");
        assert_eq!(
            (s.protocol, s.addr.as_str()),
            (ListenProtocol::Auto, "[::1]:9999")
        );
        // A port alone, or after a colon, means every address (as socat and nc).
        for (text, want) in [
            ("9931", "0.0.0.0:9931"),
            (":9931", "0.0.0.0:9931"),
            ("lines://:7000", "0.0.0.0:7000"),
        ] {
            assert_eq!(ListenSpec::parse(text).expect(text).addr, want);
        }
        for (bad, says) in [
            ("host:", "not a port number"),
            ("ftp://h:1", "unknown protocol \"ftp\""),
            ("h:70000", "out of range"),
            ("lines://", "no port"),
            ("lines:/h:1", "needs //"),
            ("localhost", "no port"),
        ] {
            let err = ListenSpec::parse(bad).expect_err(bad);
            assert!(
                err.0.contains("HOST:PORT") && err.0.contains(says),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn config_values_and_human_sizes() {
        let c = parse(
            "listen = [\"lines://0.0.0.0:7000\"]\nmax_line = \"4KiB\"\nmax_file_size = 1000\nline_ending = \"lf\"\n[aliases]\n\"10.0.0.7\" = \"cam\"\n",
        )
        .expect("valid");
        assert_eq!(c.max_line, Some(4096));
        assert_eq!(c.max_file_size, Some(1000));
        assert_eq!(c.line_ending, Some(LineEnding::Lf));
        assert_eq!(
            c.aliases
                .get(&"10.0.0.7".parse::<IpAddr>().expect("ip"))
                .map(String::as_str),
            Some("cam")
        );
    }

    #[test]
    fn config_errors_name_the_file_and_key() {
        let e = parse("max_lines = 5").expect_err("unknown key");
        assert!(e.0.contains("/etc/bl.toml") && e.0.contains("max_lines"), "{e}");
        let e = parse("max_line = \"huge\"").expect_err("bad size");
        assert!(e.0.contains("`max_line`") && e.0.contains("huge"), "{e}");
        let e = parse("[aliases]\n\"not-an-ip\" = \"x\"").expect_err("bad alias");
        assert!(e.0.contains("aliases") && e.0.contains("not-an-ip"), "{e}");
        let e = parse("listen = 0.0.0.0:9936").expect_err("unquoted");
        assert!(e.0.contains("listen = \"0.0.0.0:9936\""), "{e}");
        let e = parse("line_ending = \"dos\"").expect_err("bad ending");
        assert!(e.0.contains("line_ending"), "{e}");
    }
}
