//! What the user says about outgoing links: `--serial [PROTO://]PATH[@BAUD]`,
//! `--connect [PROTO://]HOST:PORT`, and their `[[serial]]` / `[[connect]]`
//! tables in config.toml. Mistakes are named in one sentence.

use serde::Deserialize;

use crate::config::ConfigError;
use crate::protocol::ListenProtocol;

pub const DEFAULT_BAUD: u32 = 115_200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    #[default]
    None,
    Odd,
    Even,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Flow {
    #[default]
    #[serde(rename = "none")]
    None,
    /// RTS/CTS hardware flow control.
    #[serde(rename = "rts/cts", alias = "rtscts", alias = "hardware")]
    RtsCts,
    #[serde(rename = "xon/xoff", alias = "xonxoff", alias = "software")]
    XonXoff,
}

/// One serial port to open (and reopen when it comes back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialSpec {
    pub path: String,
    pub baud: u32,
    /// `lines` (default), `frames`, or `auto` (lines until the first bytes are a
    /// frame header).
    pub protocol: ListenProtocol,
    /// The device's name; else the port's file name (`ttyUSB0`).
    pub name: Option<String>,
    pub data_bits: u8,
    pub parity: Parity,
    pub stop_bits: u8,
    pub flow: Flow,
}

impl SerialSpec {
    /// `[PROTO://]PATH[@BAUD]`, as `--serial` and `/serial` take it.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = |why: String| {
            ConfigError(format!(
                "bad serial port {text:?}: {why}; write PATH, PATH@BAUD or PROTO://PATH@BAUD (PROTO: lines, frames or auto), e.g. /dev/ttyUSB0@115200"
            ))
        };
        let (protocol, rest) = match text.split_once("://") {
            Some((proto, rest)) => match serial_protocol(proto) {
                Some(p) => (p, rest),
                None => return Err(bad(format!("unknown protocol {proto:?}"))),
            },
            None => (ListenProtocol::Lines, text),
        };
        let (path, baud) = match rest.rsplit_once('@') {
            Some((path, baud)) => {
                let baud: u32 = baud
                    .parse()
                    .ok()
                    .filter(|&b| b > 0)
                    .ok_or_else(|| bad(format!("{baud:?} is not a baud rate")))?;
                (path, baud)
            }
            None => (rest, DEFAULT_BAUD),
        };
        if path.is_empty() {
            return Err(bad("no port path".into()));
        }
        Ok(Self {
            path: path.to_string(),
            baud,
            protocol,
            name: None,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow: Flow::None,
        })
    }

    /// The device's name: given, else the port's own (`/dev/ttyUSB0` is `ttyUSB0`;
    /// a `/dev/serial/by-id/...` link keeps its by-id name).
    pub fn device_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => self.path.rsplit('/').next().unwrap_or(&self.path).to_string(),
        }
    }

    /// The table form, checked the same way.
    pub fn from_table(table: SerialTable) -> Result<Self, ConfigError> {
        let mut spec = Self::parse(&table.path)?;
        if let Some(baud) = table.baud {
            spec.baud = baud;
        }
        if let Some(protocol) = &table.protocol {
            spec.protocol = serial_protocol(protocol).ok_or_else(|| {
                ConfigError(format!(
                    "[[serial]] {}: unknown protocol {protocol:?}; use lines, frames or auto",
                    table.path
                ))
            })?;
        }
        spec.name = table.name;
        if let Some(bits) = table.data_bits {
            if !(5..=8).contains(&bits) {
                return Err(ConfigError(format!(
                    "[[serial]] {}: data_bits = {bits}; use 5, 6, 7 or 8",
                    table.path
                )));
            }
            spec.data_bits = bits;
        }
        if let Some(bits) = table.stop_bits {
            if !(1..=2).contains(&bits) {
                return Err(ConfigError(format!(
                    "[[serial]] {}: stop_bits = {bits}; use 1 or 2",
                    table.path
                )));
            }
            spec.stop_bits = bits;
        }
        spec.parity = table.parity.unwrap_or_default();
        spec.flow = table.flow.unwrap_or_default();
        Ok(spec)
    }
}

fn serial_protocol(name: &str) -> Option<ListenProtocol> {
    match name.to_ascii_lowercase().as_str() {
        "lines" => Some(ListenProtocol::Lines),
        "frames" => Some(ListenProtocol::Frames),
        "auto" => Some(ListenProtocol::Auto),
        _ => None,
    }
}

/// `[[serial]]` in config.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialTable {
    pub path: String,
    pub baud: Option<u32>,
    pub protocol: Option<String>,
    pub name: Option<String>,
    pub data_bits: Option<u8>,
    pub parity: Option<Parity>,
    pub stop_bits: Option<u8>,
    pub flow: Option<Flow>,
}

/// One device that listens, for the console to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSpec {
    pub protocol: ListenProtocol,
    /// `HOST:PORT`, resolved at each attempt.
    pub addr: String,
    pub name: Option<String>,
}

impl ConnectSpec {
    /// `[PROTO://]HOST:PORT`: PROTO is auto (the default), frames, cf or lines.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let protocols = ListenProtocol::NAMES.join(", ");
        let bad = |why: String| {
            ConfigError(format!(
                "bad address to connect to {text:?}: {why}; write HOST:PORT or PROTO://HOST:PORT with PROTO one of {protocols}"
            ))
        };
        let (protocol, addr) = match text.split_once("://") {
            Some((proto, addr)) => match ListenProtocol::parse(proto) {
                Some(p) => (p, addr),
                None => return Err(bad(format!("unknown protocol {proto:?}"))),
            },
            None => (ListenProtocol::Auto, text),
        };
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(bad("no port".into()));
        };
        if host.is_empty() {
            return Err(bad("no host".into()));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| bad(format!("{port:?} is not a port number (1 to 65535)")))?;
        Ok(Self {
            protocol,
            addr: format!("{host}:{port}"),
            name: None,
        })
    }

    /// The host, without brackets: what the device is named after.
    pub fn host(&self) -> &str {
        let host = self.addr.rsplit_once(':').map_or(self.addr.as_str(), |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    pub fn from_table(table: ConnectTable) -> Result<Self, ConfigError> {
        let text = match &table.protocol {
            Some(p) => format!("{p}://{}", table.addr),
            None => table.addr.clone(),
        };
        let mut spec = Self::parse(&text)?;
        spec.name = table.name;
        Ok(spec)
    }
}

/// `[[connect]]` in config.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectTable {
    pub addr: String,
    pub protocol: Option<String>,
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_specs() {
        let s = SerialSpec::parse("/dev/ttyUSB0@115200").unwrap();
        assert_eq!(
            (s.path.as_str(), s.baud, s.protocol),
            ("/dev/ttyUSB0", 115_200, ListenProtocol::Lines)
        );
        assert_eq!(s.device_name(), "ttyUSB0");
        let s = SerialSpec::parse("frames:///dev/ttyACM0@921600").unwrap();
        assert_eq!(
            (s.path.as_str(), s.baud, s.protocol),
            ("/dev/ttyACM0", 921_600, ListenProtocol::Frames)
        );
        let s = SerialSpec::parse("/dev/serial/by-id/usb-FTDI_FT232R-if00-port0").unwrap();
        assert_eq!(s.baud, DEFAULT_BAUD);
        assert_eq!(s.device_name(), "usb-FTDI_FT232R-if00-port0");
        let s = SerialSpec::parse("auto:///dev/ttyS0").unwrap();
        assert_eq!(s.protocol, ListenProtocol::Auto);
        for bad in ["", "cf:///dev/ttyS0", "/dev/ttyS0@fast", "/dev/ttyS0@0", "@9600"] {
            let e = SerialSpec::parse(bad).unwrap_err().0;
            assert!(e.starts_with("bad serial port"), "{bad}: {e}");
        }
    }

    #[test]
    fn serial_tables() {
        let table: SerialTable = toml::from_str(
            "path = '/dev/ttyUSB1'\nbaud = 9600\nprotocol = 'frames'\nname = 'stm32'\nflow = 'rts/cts'\nparity = 'even'\ndata_bits = 7\nstop_bits = 2",
        )
        .unwrap();
        let s = SerialSpec::from_table(table).unwrap();
        assert_eq!(s.baud, 9600);
        assert_eq!(s.protocol, ListenProtocol::Frames);
        assert_eq!(s.device_name(), "stm32");
        assert_eq!(
            (s.flow, s.parity, s.data_bits, s.stop_bits),
            (Flow::RtsCts, Parity::Even, 7, 2)
        );
        let table = SerialTable {
            path: "/dev/ttyUSB1".into(),
            data_bits: Some(9),
            ..Default::default()
        };
        assert!(
            SerialSpec::from_table(table)
                .unwrap_err()
                .0
                .contains("data_bits = 9")
        );
    }

    #[test]
    fn connect_specs() {
        let c = ConnectSpec::parse("192.168.4.1:333").unwrap();
        assert_eq!(
            (c.protocol, c.addr.as_str(), c.host()),
            (ListenProtocol::Auto, "192.168.4.1:333", "192.168.4.1")
        );
        let c = ConnectSpec::parse("frames://esp.local:8080").unwrap();
        assert_eq!((c.protocol, c.host()), (ListenProtocol::Frames, "esp.local"));
        let c = ConnectSpec::parse("lines://[::1]:333").unwrap();
        assert_eq!(c.host(), "::1");
        for bad in ["esp.local", ":333", "esp:0", "esp:99999", "tcp://esp:1"] {
            let e = ConnectSpec::parse(bad).unwrap_err().0;
            assert!(e.starts_with("bad address to connect to"), "{bad}: {e}");
        }
    }
}
