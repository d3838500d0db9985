//! Links other than an accepted TCP connection: serial ports (real
//! pseudo-terminals from socat), outgoing TCP to a device that listens, and UDP.
//! Each must look like any other device (events, commands, files) and come back
//! by itself after it goes away. socat is needed for the serial tests: a loud
//! skip locally when missing, a failure under CI=true.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use common::dev::Dev;
use common::{Console, WAIT, require_tool};
use serde_json::json;

/// Reconnects back off from 1 s; a replug is seen within a few seconds.
const RECONNECT: Duration = Duration::from_secs(15);

/// socat holding a pseudo-terminal at `port` (the console's serial port), its
/// other end a second pty at `other` or a TCP listener.
struct Socat {
    socat: PathBuf,
    args: Vec<String>,
    port: PathBuf,
    child: Option<Child>,
}

impl Socat {
    fn pty_pair(socat: &Path, dir: &Path) -> Socat {
        let port = dir.join("ttyBENCH0");
        let other = dir.join("ttyDEVICE0");
        let args = vec![
            format!("pty,raw,echo=0,link={}", port.display()),
            format!("pty,raw,echo=0,link={}", other.display()),
        ];
        Self::start(socat, args, port)
    }

    /// The console's port relays to TCP `tcp_port` on loopback: a test device
    /// speaks frames to it as it would over a USB-serial adapter.
    fn pty_to_tcp(socat: &Path, dir: &Path, tcp_port: u16) -> Socat {
        let port = dir.join("ttyBENCH0");
        let args = vec![
            format!("pty,raw,echo=0,link={}", port.display()),
            format!("tcp-listen:{tcp_port},bind=127.0.0.1,reuseaddr"),
        ];
        Self::start(socat, args, port)
    }

    fn start(socat: &Path, args: Vec<String>, port: PathBuf) -> Socat {
        let mut s = Socat {
            socat: socat.to_path_buf(),
            args,
            port,
            child: None,
        };
        s.plug();
        s
    }

    /// Starts socat again with the same links: the adapter is back.
    fn plug(&mut self) {
        let child = Command::new(&self.socat)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start socat");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while !self.port.exists() {
            assert!(Instant::now() < deadline, "socat made no {}", self.port.display());
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills socat: the ptys and their links disappear, as an unplugged adapter's.
    fn unplug(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + WAIT;
        while self.port.exists() {
            assert!(Instant::now() < deadline, "{} stayed", self.port.display());
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn port(&self) -> String {
        self.port.display().to_string()
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The device's end of a pty pair: what it reads arrives on a channel.
struct DeviceEnd {
    file: std::fs::File,
    rx: Receiver<Vec<u8>>,
}

impl DeviceEnd {
    fn open(path: &Path) -> DeviceEnd {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut reader = file.try_clone().unwrap();
        let (tx, rx) = channel();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        DeviceEnd { file, rx }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.file.write_all(bytes).unwrap();
    }

    /// Reads until `want` has arrived (or panics after WAIT).
    fn expect(&mut self, want: &[u8]) {
        let deadline = Instant::now() + WAIT;
        let mut got = Vec::new();
        while !got.windows(want.len()).any(|w| w == want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(bytes) => got.extend(bytes),
                Err(_) => panic!(
                    "the device never read {:?}; it read {:?}",
                    String::from_utf8_lossy(want),
                    String::from_utf8_lossy(&got)
                ),
            }
        }
    }
}

#[test]
fn a_serial_port_is_a_device_and_comes_back_after_an_unplug() {
    let Some(socat) = require_tool("socat") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut ports = Socat::pty_pair(&socat, dir.path());
    let device_path = dir.path().join("ttyDEVICE0");
    // 921600 baud, as an ST-Link's virtual COM port runs.
    let spec = format!("{}@921600", ports.port());
    let mut c = Console::start(&["--serial", &spec]);
    let connected = c.wait_event("connected", &[("device", json!("ttyBENCH0"))]);
    assert_eq!(connected["protocol"], "lines");
    assert_eq!(connected["peer"], json!(ports.port()));
    let conn = connected["conn"].clone();

    let mut device = DeviceEnd::open(&device_path);
    device.write(b"temp 21.5\r\nready\n");
    c.wait_event(
        "text",
        &[
            ("conn", conn.clone()),
            ("direction", json!("in")),
            ("text", json!("temp 21.5")),
        ],
    );
    c.wait_event("text", &[("conn", conn.clone()), ("text", json!("ready"))]);
    // The only device: plain text goes to it, with the lines default CRLF.
    c.send("status");
    device.expect(b"status\r\n");

    // Unplugged: disconnected, then reconnecting with a delay; back under the same
    // number and name when the port returns.
    drop(device);
    ports.unplug();
    c.wait_event("disconnected", &[("conn", conn.clone())]);
    let retry = c.wait_event(
        "reconnecting",
        &[("conn", conn.clone()), ("device", json!("ttyBENCH0"))],
    );
    assert!(retry["delay_ms"].as_u64().unwrap() >= 1000, "{retry}");
    assert_eq!(retry["peer"], json!(ports.port()));
    ports.plug();
    let back = c.wait_event_within("connected", &[("conn", conn.clone())], RECONNECT);
    assert_eq!(back["device"], "ttyBENCH0");
    let mut device = DeviceEnd::open(&device_path);
    device.write(b"back again\n");
    c.wait_event("text", &[("conn", conn.clone()), ("text", json!("back again"))]);

    // /close stops it and its retries.
    let reply = c.command("/close ttyBENCH0");
    assert_eq!(reply["ok"], true, "{reply}");
    c.wait_event("disconnected", &[("conn", conn.clone())]);
    c.wait_event("link_closed", &[("conn", conn.clone())]);
    let reply = c.command("/close ttyBENCH0");
    assert_eq!(reply["ok"], false, "{reply}");
}

#[test]
fn frames_over_a_serial_port_save_a_file_byte_identical() {
    let Some(socat) = require_tool("socat") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tcp_port = free_port();
    let ports = Socat::pty_to_tcp(&socat, dir.path(), tcp_port);
    let spec = format!("frames://{}@921600", ports.port());
    let mut c = Console::start(&["--serial", &spec]);
    // The device (through socat, as through a USB-serial adapter).
    let mut dev = connect_retrying(tcp_port);
    dev.hello("stm32-cam", &[]);
    let connected = c.wait_event("connected", &[("device", json!("stm32-cam"))]);
    assert_eq!(connected["protocol"], "frames");
    assert_eq!(connected["peer"], json!(ports.port()));
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let ack = dev.upload(1, "frame-0001.bmp", &data);
    assert_eq!(ack.status, benchlink::protocol::frames::AckStatus::Saved);
    let saved = c.wait_event("file_saved", &[("name", json!("frame-0001.bmp"))]);
    let path = PathBuf::from(saved["path"].as_str().unwrap());
    assert_eq!(
        std::fs::read(path).unwrap(),
        data,
        "byte-identical over the serial port"
    );
}

#[test]
fn an_upload_cut_by_an_unplug_resumes_when_the_port_is_back() {
    use benchlink::protocol::frames::AckStatus;
    let Some(socat) = require_tool("socat") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tcp_port = free_port();
    let mut ports = Socat::pty_to_tcp(&socat, dir.path(), tcp_port);
    let spec = format!("frames://{}", ports.port());
    let mut c = Console::start(&["--serial", &spec]);
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    let half = 100_000;
    let mut dev = connect_retrying(tcp_port);
    dev.hello("cam", &[]);
    dev.begin(1, Some(data.len() as u64), "shot.bin", true);
    assert_eq!(dev.ack(WAIT).status, AckStatus::Resume);
    dev.data_from(1, &data[..half], 0, 16 * 1024);
    assert!(dev.sync().is_empty(), "the console holds the first half");
    // The adapter is pulled out mid-file.
    drop(dev);
    ports.unplug();
    let failed = c.wait_event("file_failed", &[("name", json!("shot.bin"))]);
    assert!(failed["part"].is_string(), "the .part is kept: {failed}");
    c.wait_event("reconnecting", &[("device", json!("cam"))]);
    ports.plug();
    let mut dev = connect_retrying(tcp_port);
    dev.hello("cam", &[]);
    c.wait_event_within("connected", &[("device", json!("cam"))], RECONNECT);
    dev.begin(5, Some(data.len() as u64), "shot.bin", true);
    let ack = dev.ack(WAIT);
    assert_eq!(
        (ack.status, ack.value),
        (AckStatus::Resume, half as u64),
        "{ack:?}"
    );
    dev.data_from(5, &data, half, 16 * 1024);
    dev.end(5, crc32fast::hash(&data));
    assert_eq!(dev.ack(common::WAIT_FILE).status, AckStatus::Saved);
    let saved = c.wait_event("file_saved", &[("name", json!("shot.bin"))]);
    let path = PathBuf::from(saved["path"].as_str().unwrap());
    assert_eq!(
        std::fs::read(path).unwrap(),
        data,
        "byte-identical after the resume"
    );
    // Closed by the name it gave itself.
    let reply = c.command("/close cam");
    assert_eq!(reply["ok"], true, "{reply}");
    c.wait_event("link_closed", &[("device", json!("cam"))]);
}

#[test]
fn a_serial_port_held_by_another_program_is_said_and_retried() {
    let Some(socat) = require_tool("socat") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ports = Socat::pty_pair(&socat, dir.path());
    // Another terminal program holds the port exclusively, as tio and minicom do.
    let holder = tokio_serial::new(ports.port(), 115_200).open().unwrap();
    let mut c = Console::start(&["--serial", &ports.port()]);
    let error = c.wait_for(
        |e| {
            e["event"] == "error"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("held by another program"))
        },
        WAIT,
    );
    assert!(
        error["message"].as_str().unwrap().starts_with("ttyBENCH0: "),
        "{error}"
    );
    c.wait_event("reconnecting", &[("device", json!("ttyBENCH0"))]);
    drop(holder);
    c.wait_event_within("connected", &[("device", json!("ttyBENCH0"))], RECONNECT);
}

#[test]
fn a_missing_port_is_listed_as_reconnecting_until_closed() {
    let mut c = Console::start(&["--serial", "/dev/benchlink-no-such-port"]);
    let error = c.wait_event("error", &[]);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("is not there (unplugged?)"),
        "{error}"
    );
    let retry = c.wait_event("reconnecting", &[("device", json!("benchlink-no-such-port"))]);
    let reply = c.command("/close benchlink-no-such-port");
    assert_eq!(reply["ok"], true, "{reply}");
    c.wait_event("link_closed", &[("conn", retry["conn"].clone())]);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// socat listens moments after the pty appears; it serves one connection.
fn connect_retrying(port: u16) -> Dev {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + WAIT;
    loop {
        match std::net::TcpStream::connect_timeout(&addr, WAIT) {
            Ok(stream) => return Dev::from_stream(stream),
            Err(e) => assert!(Instant::now() < deadline, "socat never listened on {port}: {e}"),
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_outgoing_connection_talks_and_comes_back() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let target = format!("lines://127.0.0.1:{port}");
    let mut c = Console::start(&["--connect", &target]);
    let (mut board, _) = server.accept().unwrap();
    let connected = c.wait_event("connected", &[("device", json!("127.0.0.1"))]);
    assert_eq!(connected["protocol"], "lines");
    let conn = connected["conn"].clone();
    board.write_all(b"ESP ready\r\n").unwrap();
    c.wait_event("text", &[("conn", conn.clone()), ("text", json!("ESP ready"))]);
    c.send("capture");
    read_until(&mut board, b"capture\r\n");

    // The device closes (it rebooted): the console retries and gets it back under
    // the same number.
    drop(board);
    c.wait_event("disconnected", &[("conn", conn.clone())]);
    c.wait_event("reconnecting", &[("conn", conn.clone())]);
    let (mut board, _) = server.accept().unwrap();
    c.wait_event_within("connected", &[("conn", conn.clone())], RECONNECT);
    board.write_all(b"back\n").unwrap();
    c.wait_event("text", &[("conn", conn.clone()), ("text", json!("back"))]);

    let reply = c.command("/close 127.0.0.1");
    assert_eq!(reply["ok"], true, "{reply}");
    c.wait_event("link_closed", &[("conn", conn)]);
    // No more attempts.
    server.set_nonblocking(true).unwrap();
    thread::sleep(Duration::from_secs(3));
    assert!(server.accept().is_err(), "a closed link does not connect again");
}

#[test]
fn connect_at_run_time_and_its_mistakes() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let mut c = Console::start(&[]);
    let reply = c.command(&format!("/connect 127.0.0.1:{port}"));
    assert_eq!(reply["ok"], true, "{reply}");
    let (mut board, _) = server.accept().unwrap();
    // auto greets nothing on an outgoing link: the device speaks first.
    board.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    let mut first = [0u8; 16];
    assert!(
        board.read(&mut first).is_err(),
        "nothing was sent before the device spoke"
    );
    board.write_all(b"hello from the board\n").unwrap();
    c.wait_event("text", &[("text", json!("hello from the board"))]);
    let reply = c.command(&format!("/connect 127.0.0.1:{port}"));
    assert_eq!(reply["ok"], false);
    assert!(
        reply["text"].as_str().unwrap().contains("open already"),
        "{reply}"
    );
    let reply = c.command("/connect nowhere");
    assert_eq!(reply["ok"], false);
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("bad address to connect to"),
        "{reply}"
    );
    let reply = c.command("/close nothing-like-this");
    assert_eq!(reply["ok"], false);
}

#[test]
fn udp_sources_are_devices_and_replies_go_back_to_them() {
    let mut c = Console::start(&["--listen", "udp://127.0.0.1:0"]);
    let console = c.addr();
    let board = UdpSocket::bind("127.0.0.1:0").unwrap();
    board.set_read_timeout(Some(WAIT)).unwrap();
    board.send_to(b"temp 21", console).unwrap();
    let connected = c.wait_event(
        "connected",
        &[("peer", json!(board.local_addr().unwrap().to_string()))],
    );
    assert_eq!(connected["protocol"], "lines");
    // One datagram, one message: no line ending needed.
    c.wait_event(
        "text",
        &[("conn", connected["conn"].clone()), ("text", json!("temp 21"))],
    );
    board.send_to(b"a\nb\n", console).unwrap();
    c.wait_event("text", &[("text", json!("a"))]);
    c.wait_event("text", &[("text", json!("b"))]);
    c.send("led on");
    let mut buf = [0u8; 64];
    let (n, from) = board.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"led on\r\n");
    assert_eq!(from, console);
    // A second source is a second device.
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    other.send_to(b"hi", console).unwrap();
    let second = c.wait_event(
        "connected",
        &[("peer", json!(other.local_addr().unwrap().to_string()))],
    );
    assert_ne!(second["conn"], connected["conn"]);
    assert_eq!(second["device"], "127.0.0.1#2");
}

fn read_until(stream: &mut std::net::TcpStream, want: &[u8]) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.windows(want.len()).any(|w| w == want) {
        let n = stream.read(&mut buf).unwrap_or_else(|e| {
            panic!(
                "never read {:?} (got {:?}): {e}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&got)
            )
        });
        assert!(n > 0, "closed before {:?}", String::from_utf8_lossy(want));
        got.extend_from_slice(&buf[..n]);
    }
}
