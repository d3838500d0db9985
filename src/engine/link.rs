//! The byte streams a device session runs on: an accepted or outgoing TCP
//! connection, a serial port, or one UDP source address. Every protocol runs on
//! every link through this one type.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// Who is at the other end, as the Connections list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A TCP or UDP address.
    Net(SocketAddr),
    /// A serial port's path.
    Serial(String),
}

impl Peer {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Peer::Net(addr) => Some(addr.ip()),
            Peer::Serial(_) => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Net(addr) => addr.fmt(f),
            Peer::Serial(path) => f.write_str(path),
        }
    }
}

/// Serial reads go through a small buffer of their own; a pty or USB adapter
/// delivers at most a few KiB at a time.
const SERIAL_READ: usize = 16 * 1024;

/// One device's byte stream. `readable` then `try_read*`, as on a TCP socket:
/// the session's select loop stays the same on every link.
pub struct LinkStream {
    kind: Kind,
    /// Serial and UDP bytes already read, waiting for `try_read`.
    stash: BytesMut,
    /// The far end is gone (end of file, or the UDP source was forgotten).
    ended: bool,
}

enum Kind {
    Tcp(TcpStream),
    Serial(tokio_serial::SerialStream),
    Udp {
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
        datagrams: mpsc::Receiver<Bytes>,
    },
    /// An in-process pipe: sessions tested without sockets, on a paused clock.
    #[cfg(test)]
    Memory(tokio::io::DuplexStream),
}

impl LinkStream {
    pub fn tcp(stream: TcpStream) -> Self {
        Self::new(Kind::Tcp(stream))
    }

    pub fn serial(port: tokio_serial::SerialStream) -> Self {
        Self::new(Kind::Serial(port))
    }

    /// One UDP source: its datagrams arrive on `datagrams`, replies go to `peer`.
    pub fn udp(socket: Arc<UdpSocket>, peer: SocketAddr, datagrams: mpsc::Receiver<Bytes>) -> Self {
        Self::new(Kind::Udp {
            socket,
            peer,
            datagrams,
        })
    }

    #[cfg(test)]
    pub fn memory(stream: tokio::io::DuplexStream) -> Self {
        Self::new(Kind::Memory(stream))
    }

    fn new(kind: Kind) -> Self {
        Self {
            kind,
            stash: BytesMut::new(),
            ended: false,
        }
    }

    pub fn tcp_stream(&self) -> Option<&TcpStream> {
        match &self.kind {
            Kind::Tcp(s) => Some(s),
            _ => None,
        }
    }

    /// Waits until a read may return something. Cancel-safe: what a serial port
    /// or UDP source delivered is kept in the stash.
    pub async fn readable(&mut self) -> io::Result<()> {
        if !self.stash.is_empty() || self.ended {
            return Ok(());
        }
        match &mut self.kind {
            Kind::Tcp(s) => s.readable().await,
            Kind::Serial(port) => {
                // The AsyncRead path clears readiness on WouldBlock (its readable()
                // does not, and would spin).
                self.stash.reserve(SERIAL_READ);
                let n = port.read_buf(&mut self.stash).await?;
                if n == 0 {
                    self.ended = true;
                }
                Ok(())
            }
            Kind::Udp { datagrams, .. } => {
                match datagrams.recv().await {
                    Some(datagram) => self.stash.extend_from_slice(&datagram),
                    None => self.ended = true,
                }
                Ok(())
            }
            #[cfg(test)]
            Kind::Memory(pipe) => {
                self.stash.reserve(SERIAL_READ);
                if pipe.read_buf(&mut self.stash).await? == 0 {
                    self.ended = true;
                }
                Ok(())
            }
        }
    }

    /// Reads what is there without waiting: `WouldBlock` when nothing is.
    pub fn try_read_buf<B: BufMut>(&mut self, buf: &mut B) -> io::Result<usize> {
        if let Kind::Tcp(s) = &self.kind {
            return s.try_read_buf(buf);
        }
        let n = self.stash.len().min(buf.remaining_mut());
        if n == 0 {
            return self.nothing();
        }
        buf.put_slice(&self.stash[..n]);
        self.stash.advance(n);
        Ok(n)
    }

    pub fn try_read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Kind::Tcp(s) = &self.kind {
            return s.try_read(out);
        }
        let n = self.stash.len().min(out.len());
        if n == 0 {
            return self.nothing();
        }
        out[..n].copy_from_slice(&self.stash[..n]);
        self.stash.advance(n);
        Ok(n)
    }

    fn nothing(&self) -> io::Result<usize> {
        if self.ended {
            Ok(0)
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    /// True on a datagram link once a whole datagram has been read: the end of a
    /// message even without a line ending.
    pub fn at_message_end(&self) -> bool {
        matches!(self.kind, Kind::Udp { .. }) && self.stash.is_empty()
    }

    /// Sends all of `bytes`; on UDP as one datagram to the source.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.kind {
            Kind::Tcp(s) => s.write_all(bytes).await,
            Kind::Serial(port) => port.write_all(bytes).await,
            Kind::Udp { socket, peer, .. } => socket.send_to(bytes, *peer).await.map(|_| ()),
            #[cfg(test)]
            Kind::Memory(pipe) => pipe.write_all(bytes).await,
        }
    }
}
