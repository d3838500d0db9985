//! Serial ports and outgoing TCP connections: opened, run as device sessions,
//! and opened again with backoff when they fail or go away. A link keeps its
//! connection number and name across reconnects, so it comes back as the same
//! device, with the same conversation, log and `.part` files to resume.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::link::{LinkStream, Peer};
use super::session::{self, Ended, Opened};
use super::{ConnId, EventKind, Shared};
use crate::link_spec::{ConnectSpec, Flow, Parity, SerialSpec};
use crate::protocol::ListenProtocol;

/// First retry after this, doubling up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An outgoing connection attempt gives up after this.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);
/// While waiting to retry a serial port whose path was missing, it is looked for
/// this often, and opened as soon as it is back (a USB adapter plugged in again).
const WATCH_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Serial(SerialSpec),
    Connect(ConnectSpec),
}

impl Target {
    /// The port's path or the address: what the operator typed.
    pub fn describe(&self) -> String {
        match self {
            Target::Serial(s) => s.path.clone(),
            Target::Connect(c) => c.addr.clone(),
        }
    }

    fn protocol(&self) -> ListenProtocol {
        match self {
            Target::Serial(s) => s.protocol,
            Target::Connect(c) => c.protocol,
        }
    }

    /// The device's name before it names itself.
    fn base(&self, shared: &Shared) -> String {
        let name = match self {
            Target::Serial(s) => s.device_name(),
            Target::Connect(c) => match (&c.name, c.host().parse()) {
                (Some(name), _) => name.clone(),
                (None, Ok(ip)) => shared.name_for(ip),
                (None, Err(_)) => c.host().to_string(),
            },
        };
        super::names::device_folder(&name)
    }

    async fn open(&self) -> Result<(LinkStream, Peer), String> {
        match self {
            Target::Serial(spec) => {
                open_serial(spec).map(|port| (LinkStream::serial(port), Peer::Serial(spec.path.clone())))
            }
            Target::Connect(spec) => {
                let stream = match tokio::time::timeout(CONNECT_WITHIN, TcpStream::connect(&spec.addr)).await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => return Err(connect_error(&spec.addr, &e)),
                    Err(_) => {
                        return Err(format!(
                            "no answer from {} within {} s",
                            spec.addr,
                            CONNECT_WITHIN.as_secs()
                        ));
                    }
                };
                session::tune_tcp(&stream);
                let peer = stream
                    .peer_addr()
                    .map_err(|e| format!("connection to {} failed: {e}", spec.addr))?;
                Ok((LinkStream::tcp(stream), Peer::Net(peer)))
            }
        }
    }

    /// A serial port whose path is there (again).
    fn present(&self) -> bool {
        match self {
            Target::Serial(s) => std::path::Path::new(&s.path).exists(),
            Target::Connect(_) => false,
        }
    }
}

fn open_serial(spec: &SerialSpec) -> Result<tokio_serial::SerialStream, String> {
    let builder = tokio_serial::new(&spec.path, spec.baud)
        .data_bits(match spec.data_bits {
            5 => tokio_serial::DataBits::Five,
            6 => tokio_serial::DataBits::Six,
            7 => tokio_serial::DataBits::Seven,
            _ => tokio_serial::DataBits::Eight,
        })
        .parity(match spec.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Odd => tokio_serial::Parity::Odd,
            Parity::Even => tokio_serial::Parity::Even,
        })
        .stop_bits(match spec.stop_bits {
            2 => tokio_serial::StopBits::Two,
            _ => tokio_serial::StopBits::One,
        })
        .flow_control(match spec.flow {
            Flow::None => tokio_serial::FlowControl::None,
            Flow::RtsCts => tokio_serial::FlowControl::Hardware,
            Flow::XonXoff => tokio_serial::FlowControl::Software,
        });
    // Opened exclusively (TIOCEXCL): a second program gets EBUSY, not half the bytes.
    tokio_serial::SerialStream::open(&builder).map_err(|e| serial_error(&spec.path, &e))
}

/// What went wrong opening a serial port, and what to do about it.
fn serial_error(path: &str, e: &tokio_serial::Error) -> String {
    use std::io::ErrorKind;
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("busy") || lower.contains("exclusive lock") {
        return format!(
            "{path} is held by another program (tio, minicom, screen or ModemManager?); close it"
        );
    }
    match e.kind() {
        tokio_serial::ErrorKind::Io(ErrorKind::PermissionDenied) => format!(
            "no permission to open {path}: add yourself to its group (sudo usermod -aG dialout $USER, then log in again)"
        ),
        tokio_serial::ErrorKind::Io(ErrorKind::NotFound) | tokio_serial::ErrorKind::NoDevice
            if !std::path::Path::new(path).exists() =>
        {
            format!("{path} is not there (unplugged?)")
        }
        _ if lower.contains("permission denied") => format!(
            "no permission to open {path}: add yourself to its group (sudo usermod -aG dialout $USER, then log in again)"
        ),
        _ => format!("cannot open {path}: {text}"),
    }
}

fn connect_error(addr: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            format!("{addr} refused the connection (is the device's server on?)")
        }
        _ => format!("cannot connect to {addr}: {e}"),
    }
}

/// A link the engine runs, for `/close`.
pub(crate) struct LinkEntry {
    pub conn: ConnId,
    pub name: String,
    pub target: Target,
    cancel: CancellationToken,
}

impl LinkEntry {
    pub fn close(&self) {
        self.cancel.cancel();
    }
}

/// Starts a link; returns the device's name. A target already open is refused.
pub(super) fn start(shared: &Arc<Shared>, tracker: &TaskTracker, target: Target) -> Result<String, String> {
    let mut links = shared.links();
    if let Some(open) = links.iter().find(|l| l.target.describe() == target.describe()) {
        return Err(format!(
            "{} is open already, as {}; /close {} first",
            target.describe(),
            open.name,
            open.name
        ));
    }
    let conn = shared.registry().reserve_conn();
    let cancel = shared.cancel.child_token();
    let name = target.base(shared);
    links.push(LinkEntry {
        conn,
        name: name.clone(),
        target: target.clone(),
        cancel: cancel.clone(),
    });
    tracker.spawn(supervise(shared.clone(), target, conn, name.clone(), cancel));
    Ok(name)
}

async fn supervise(
    shared: Arc<Shared>,
    target: Target,
    conn: ConnId,
    base: String,
    cancel: CancellationToken,
) {
    // What the device is called: the port's name until a HELLO renames it; the
    // retries and the close are told under the name the operator last saw.
    let mut name = base.clone();
    let mut backoff = Backoff::default();
    let mut said: Option<String> = None;
    loop {
        let opened = tokio::select! {
            _ = cancel.cancelled() => break,
            opened = target.open() => opened,
        };
        let reason = match opened {
            Ok((stream, peer)) => {
                backoff = Backoff::default();
                said = None;
                let opened = Opened {
                    stream,
                    peer,
                    base: base.clone(),
                    conn: Some(conn),
                    cancel: cancel.child_token(),
                    auto_cf: false,
                    idle: None,
                };
                let (ended, device) = session::run(shared.clone(), opened, target.protocol(), None).await;
                name = device;
                match ended {
                    Ended::Stopped => break,
                    Ended::Gone(reason) => reason,
                }
            }
            Err(why) => {
                // Said once as an error (a person must act: plug it in, free it,
                // fix a permission); the retries are told as `reconnecting`.
                if said.as_ref() != Some(&why) {
                    shared
                        .emit(EventKind::Error {
                            message: format!("{name}: {why}; retrying"),
                        })
                        .await;
                    said = Some(why.clone());
                }
                why
            }
        };
        let delay = backoff.next();
        shared
            .emit(EventKind::Reconnecting {
                conn,
                device: name.clone(),
                peer: target.describe(),
                reason,
                delay_ms: delay.as_millis() as u64,
                attempt: backoff.attempts,
            })
            .await;
        let deadline = Instant::now() + delay;
        let was_missing = !target.present();
        loop {
            let wake = deadline.min(Instant::now() + WATCH_EVERY);
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
            if Instant::now() >= deadline || (was_missing && target.present()) {
                break;
            }
        }
        if cancel.is_cancelled() {
            break;
        }
    }
    shared.links().retain(|l| l.conn != conn);
    if !shared.cancel.is_cancelled() {
        shared.emit(EventKind::LinkClosed { conn, device: name }).await;
    }
}

/// 1 s doubling to 30 s, each with up to 20% jitter so links that failed
/// together do not retry in step.
#[derive(Default)]
struct Backoff {
    attempts: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let base = BACKOFF_FIRST
            .saturating_mul(1 << self.attempts.min(5))
            .min(BACKOFF_MAX);
        self.attempts += 1;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // 0..20% of the delay, from the clock's low bits: enough to spread retries.
        let jitter = base.mul_f64(f64::from(nanos % 1000) / 5000.0);
        base + jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds_with_jitter() {
        let mut b = Backoff::default();
        let delays: Vec<Duration> = (0..8).map(|_| b.next()).collect();
        let bases = [1, 2, 4, 8, 16, 30, 30, 30];
        for (d, base) in delays.iter().zip(bases) {
            let base = Duration::from_secs(base);
            assert!(*d >= base && *d <= base.mul_f64(1.2), "{d:?} for {base:?}");
        }
        assert_eq!(b.attempts, 8);
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = tokio_serial::Error::new(
            tokio_serial::ErrorKind::Io(std::io::ErrorKind::PermissionDenied),
            "Permission denied",
        );
        assert!(serial_error("/dev/ttyUSB0", &e).contains("dialout"));
        let e = tokio_serial::Error::new(tokio_serial::ErrorKind::NoDevice, "Device or resource busy");
        assert!(serial_error("/dev/ttyUSB0", &e).contains("held by another program"));
        let e = tokio_serial::Error::new(tokio_serial::ErrorKind::NoDevice, "No such file or directory");
        assert!(serial_error("/dev/does-not-exist", &e).contains("not there (unplugged?)"));
    }
}
