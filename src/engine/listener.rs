//! Where devices arrive: TCP listeners (with the connection limit and the
//! eviction of silent sockets) and UDP listeners, where each source address is
//! a device.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::TaskTracker;

use super::link::{LinkStream, Peer};
use super::registry::SessionCommand;
use super::{EVICT_WITHIN, EventKind, REFUSAL_REPORT_EVERY, Shared, StartError, ratelimit, session};
use crate::config::ListenSpec;
use crate::protocol::ListenProtocol;

/// A bound listener, not yet accepting.
pub(super) enum Bound {
    Tcp(TcpListener, ListenProtocol),
    Udp(UdpSocket),
}

impl Bound {
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Bound::Tcp(l, _) => l.local_addr().ok(),
            Bound::Udp(s) => s.local_addr().ok(),
        }
    }

    pub fn protocol_name(&self) -> &'static str {
        match self {
            Bound::Tcp(_, p) => p.name(),
            Bound::Udp(_) => "udp",
        }
    }

    /// Accepts devices until the engine stops.
    pub async fn serve(self, shared: Arc<Shared>, limit: Arc<Semaphore>, tracker: TaskTracker) {
        match self {
            Bound::Tcp(listener, protocol) => accept_loop(shared, listener, protocol, limit, tracker).await,
            Bound::Udp(socket) => udp_loop(shared, Arc::new(socket), limit, tracker).await,
        }
    }
}

pub(super) async fn bind(spec: &ListenSpec) -> Result<Bound, StartError> {
    if spec.udp {
        let socket = UdpSocket::bind(&spec.addr)
            .await
            .map_err(|e| bind_error(spec, e))?;
        return Ok(Bound::Udp(socket));
    }
    let listener = TcpListener::bind(&spec.addr)
        .await
        .map_err(|e| bind_error(spec, e))?;
    Ok(Bound::Tcp(listener, spec.protocol))
}

fn bind_error(spec: &ListenSpec, e: std::io::Error) -> StartError {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another program, perhaps another benchlink, is using that port; stop it or choose another port with --listen)"
        }
        std::io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need privileges; choose a port above 1024)"
        }
        std::io::ErrorKind::AddrNotAvailable => " (that address is not on this machine; try 0.0.0.0)",
        _ => "",
    };
    StartError(format!("cannot listen on {}: {e}{hint}", spec.addr))
}

/// Datagrams waiting per UDP source (each at most 64 KiB): a source that sends
/// faster than its session reads loses datagrams, as UDP does anyway.
const UDP_QUEUE: usize = 16;
/// A UDP source silent this long leaves the list.
pub(super) const UDP_IDLE: Duration = Duration::from_secs(60);

async fn udp_loop(shared: Arc<Shared>, socket: Arc<UdpSocket>, limit: Arc<Semaphore>, tracker: TaskTracker) {
    let mut sources: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    let mut refusals = ratelimit::RateLimit::new(REFUSAL_REPORT_EVERY);
    let mut buf = vec![0u8; 65_536];
    loop {
        let received = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            received = socket.recv_from(&mut buf) => received,
        };
        let (n, from) = match received {
            Ok(got) => got,
            Err(e) => {
                // An ICMP "port unreachable" for an earlier reply shows up here on
                // Linux: not this socket's fault, and nothing to say.
                if e.kind() != std::io::ErrorKind::ConnectionRefused {
                    shared
                        .emit(EventKind::Error {
                            message: format!("cannot receive on the UDP listener: {e}"),
                        })
                        .await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                continue;
            }
        };
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        let datagram = Bytes::copy_from_slice(&buf[..n]);
        if let Some(tx) = sources.get(&from) {
            match tx.try_send(datagram.clone()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => continue,
                // Its session ended (idle, kicked): the source starts a new one.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    sources.remove(&from);
                }
            }
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            if let Some(n) = refusals.allow(std::time::Instant::now()) {
                let message = format!(
                    "ignored datagrams from {from}: {} devices are connected, the --max-connections limit{}",
                    shared.max_connections,
                    ratelimit::more(n)
                );
                shared.emit(EventKind::Error { message }).await;
            }
            continue;
        };
        if sources.len() >= shared.max_connections {
            sources.retain(|_, tx| !tx.is_closed());
        }
        let (tx, rx) = mpsc::channel(UDP_QUEUE);
        let _ = tx.try_send(datagram);
        sources.insert(from, tx);
        let opened = session::Opened {
            stream: LinkStream::udp(socket.clone(), from, rx),
            peer: Peer::Net(from),
            base: shared.name_for(from.ip()),
            conn: None,
            cancel: shared.cancel.child_token(),
            auto_cf: false,
            idle: Some(shared.settings.idle_timeout.unwrap_or(UDP_IDLE)),
        };
        tracker.spawn(session::run(
            shared.clone(),
            opened,
            ListenProtocol::Lines,
            Some(permit),
        ));
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    protocol: ListenProtocol,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
) {
    // A board stuck reconnecting must not flood the output: one error per interval.
    let mut refusals = ratelimit::RateLimit::new(REFUSAL_REPORT_EVERY);
    let mut evictions = ratelimit::RateLimit::new(Duration::from_secs(1));
    loop {
        let accepted = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let permit = match limit.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => make_room(&shared, &limit, peer, &mut evictions).await,
                };
                match permit {
                    Some(permit) => {
                        let opened = session::Opened::accepted(&shared, stream, peer);
                        tracker.spawn(session::run(shared.clone(), opened, protocol, Some(permit)));
                    }
                    None => {
                        tell_busy(&stream, protocol);
                        drop(stream);
                        if let Some(n) = refusals.allow(std::time::Instant::now()) {
                            let more = match n {
                                0 => String::new(),
                                n => format!(" ({n} refused since the last report)"),
                            };
                            shared
                                .emit(EventKind::Error {
                                    message: format!(
                                        "refused a connection from {peer}: {} devices are connected and all have sent something, the --max-connections limit{more}",
                                        shared.max_connections
                                    ),
                                })
                                .await;
                        }
                    }
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: say so, and do not spin.
                shared
                    .emit(EventKind::Error {
                        message: format!("cannot accept a connection: {e}"),
                    })
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// At the connection limit: closes the connection that has been silent longest
/// among those that never sent a byte (a socket opened and forgotten, or a
/// flood of them), and returns its slot for the newcomer. None when every
/// connection has spoken: then the newcomer is refused.
async fn make_room(
    shared: &Shared,
    limit: &Arc<Semaphore>,
    newcomer: SocketAddr,
    reports: &mut ratelimit::RateLimit,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let (victim, silent_for, commands) = shared.registry().pick_silent()?;
    let _ = commands.send(SessionCommand::Evict).await;
    if let Some(n) = reports.allow(std::time::Instant::now()) {
        let message = format!(
            "closed the connection from {victim} (connected {} s ago, never sent a byte) to make room for {newcomer}: {} connections is the --max-connections limit{}",
            silent_for.as_secs(),
            shared.max_connections,
            ratelimit::more(n)
        );
        shared.emit(EventKind::Error { message }).await;
    }
    // The evicted session releases its slot as it ends, within moments.
    tokio::time::timeout(EVICT_WITHIN, limit.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// Tells a refused newcomer why, without waiting: an ERROR frame where a frames
/// device may be listening, a line elsewhere.
fn tell_busy(stream: &TcpStream, protocol: ListenProtocol) {
    let note = match protocol {
        ListenProtocol::Frames | ListenProtocol::Auto => {
            let mut out = bytes::BytesMut::new();
            crate::protocol::frames::Message::Error {
                code: crate::protocol::frames::ERR_BUSY,
                message: "too many connections".into(),
            }
            .encode(&mut out);
            out.to_vec()
        }
        ListenProtocol::Cf | ListenProtocol::Lines | ListenProtocol::Ymodem => {
            b"benchlink: too many connections\r\n".to_vec()
        }
    };
    let _ = stream.try_write(&note);
}
