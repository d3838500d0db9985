//! Events to a real MQTT broker: Debian's mosquitto, started by the test on a
//! free port with a config of its own, and mosquitto_sub as the dashboard.
//! Needs mosquitto and mosquitto-clients: a loud skip locally, a failure under
//! CI=true.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::dev::Dev;
use common::{Console, WAIT, require_tool};
use serde_json::{Value, json};

struct Broker {
    exe: PathBuf,
    config: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    fn start(exe: &Path, dir: &Path) -> Broker {
        Self::start_with(exe, dir, "")
    }

    /// With more lines of configuration (a TLS listener).
    fn start_with(exe: &Path, dir: &Path, extra: &str) -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("mosquitto.conf");
        let store = dir.join("store");
        std::fs::create_dir_all(&store).unwrap();
        // Started as root, mosquitto drops to its own user: it must reach and
        // write its store (the restart test relies on the saved sessions).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n{extra}",
                store.display()
            ),
        )
        .unwrap();
        let mut b = Broker {
            exe: exe.to_path_buf(),
            config,
            port,
            child: None,
        };
        b.up();
        b
    }

    fn up(&mut self) {
        let log = self.config.with_extension("log");
        let child = Command::new(&self.exe)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM: mosquitto saves its sessions and stops.
    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// mosquitto_sub on `benchlink/#`, QoS 1, a persistent session: (topic, retained, payload).
struct Subscriber {
    child: Child,
    rx: Receiver<(String, bool, String)>,
}

impl Subscriber {
    fn start(exe: &Path, port: u16, id: &str) -> Subscriber {
        let mut child = Command::new(exe)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "benchlink/#",
                "-q",
                "1",
            ])
            .args(["-i", id, "-c", "-F", "%t\t%r\t%p"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut parts = line.splitn(3, '\t');
                let (Some(t), Some(r), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
                    continue;
                };
                if tx.send((t.to_string(), r == "1", p.to_string())).is_err() {
                    return;
                }
            }
        });
        // Give it a moment to subscribe.
        std::thread::sleep(Duration::from_millis(300));
        Subscriber { child, rx }
    }

    /// The next message on `topic` matching `pred`.
    fn wait(
        &self,
        topic: &str,
        pred: impl Fn(&str) -> bool,
        seen: &mut Vec<(String, bool, String)>,
    ) -> String {
        self.wait_retained(topic, pred, seen).1
    }

    /// Like `wait`, with whether the broker kept it (retained).
    fn wait_retained(
        &self,
        topic: &str,
        pred: impl Fn(&str) -> bool,
        seen: &mut Vec<(String, bool, String)>,
    ) -> (bool, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        if let Some(i) = seen.iter().position(|(t, _, p)| t == topic && pred(p)) {
            let (_, r, p) = seen.remove(i);
            return (r, p);
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((t, r, p)) if t == topic && pred(&p) => return (r, p),
                Ok(other) => seen.push(other),
                Err(_) => panic!("nothing on {topic} within 20 s; seen: {seen:#?}"),
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    Some((require_tool("mosquitto")?, require_tool("mosquitto_sub")?))
}

#[test]
fn a_session_is_published_with_its_topics_and_payloads() {
    let Some((mosquitto, sub)) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&mosquitto, dir.path());
    let s = Subscriber::start(&sub, broker.port, "dash-1");
    let mut seen = Vec::new();
    let mut c = Console::start(&[
        "--mqtt",
        &broker.url(),
        "--bench",
        "lab-1",
        "--files-url",
        "http://bench-1.lab:8000/received/",
    ]);
    assert_eq!(
        s.wait("benchlink/lab-1/status", |p| p == "online", &mut seen),
        "online"
    );

    let mut board = TcpStream::connect(c.addr()).unwrap();
    std::io::Write::write_all(&mut board, b"temp 21.5\n").unwrap();
    c.wait_event("text", &[("text", json!("temp 21.5"))]);
    let text: Value =
        serde_json::from_str(&s.wait("benchlink/lab-1/127.0.0.1/text", |_| true, &mut seen)).unwrap();
    assert_eq!(
        (text["event"].as_str(), text["text"].as_str()),
        (Some("text"), Some("temp 21.5"))
    );
    s.wait("benchlink/lab-1/127.0.0.1/status", |p| p == "online", &mut seen);

    let mut cam = Dev::connect(c.addr());
    cam.hello("cam-1", &[]);
    let ack = cam.upload(1, "shot 1.jpg", &[7u8; 5000]);
    assert_eq!(ack.status, benchlink::protocol::frames::AckStatus::Saved);
    let saved: Value = serde_json::from_str(&s.wait(
        "benchlink/lab-1/cam-1/file",
        |p| p.contains("\"file_saved\""),
        &mut seen,
    ))
    .unwrap();
    assert_eq!(
        (saved["name"].as_str(), saved["size"].as_u64()),
        (Some("shot 1.jpg"), Some(5000))
    );
    assert!(
        saved["path"].as_str().unwrap().ends_with("cam-1/shot 1.jpg"),
        "metadata, never the bytes"
    );
    assert_eq!(
        saved["url"], "http://bench-1.lab:8000/received/cam-1/shot%201.jpg",
        "--files-url gives the file's web address: {saved}"
    );

    drop(board);
    let gone: Value = serde_json::from_str(&s.wait(
        "benchlink/lab-1/127.0.0.1/connection",
        |p| p.contains("\"disconnected\""),
        &mut seen,
    ))
    .unwrap();
    assert_eq!(gone["device"], "127.0.0.1");
    s.wait("benchlink/lab-1/127.0.0.1/status", |p| p == "offline", &mut seen);

    // The console stops: its bench goes offline.
    c.send("/quit");
    s.wait("benchlink/lab-1/status", |p| p == "offline", &mut seen);
    // A dashboard that subscribes later finds the statuses kept (retained).
    let late = Subscriber::start(&sub, broker.port, "dash-late");
    let mut seen = Vec::new();
    assert_eq!(
        late.wait_retained("benchlink/lab-1/status", |_| true, &mut seen),
        (true, "offline".into())
    );
    assert_eq!(
        late.wait_retained("benchlink/lab-1/cam-1/status", |_| true, &mut seen),
        (true, "offline".into())
    );
}

#[test]
fn a_broker_restart_loses_nothing_the_console_did_not_count() {
    let Some((mosquitto, sub)) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&mosquitto, dir.path());
    let s = Subscriber::start(&sub, broker.port, "dash-2");
    let mut seen = Vec::new();
    let mut c = Console::start(&["--mqtt", &broker.url(), "--bench", "lab-2"]);
    s.wait("benchlink/lab-2/status", |p| p == "online", &mut seen);
    let mut board = TcpStream::connect(c.addr()).unwrap();
    std::io::Write::write_all(&mut board, b"before\n").unwrap();
    s.wait(
        "benchlink/lab-2/127.0.0.1/text",
        |p| p.contains("before"),
        &mut seen,
    );
    drop(s);

    broker.down();
    for i in 0..20 {
        std::io::Write::write_all(&mut board, format!("during outage {i}\n").as_bytes()).unwrap();
    }
    c.wait_event("text", &[("text", json!("during outage 19"))]);
    std::thread::sleep(Duration::from_millis(500));
    let restarted = Instant::now();
    broker.up();
    let s = Subscriber::start(&sub, broker.port, "dash-2");
    for i in 0..20 {
        let want = format!("during outage {i}\"");
        s.wait("benchlink/lab-2/127.0.0.1/text", |p| p.contains(&want), &mut seen);
    }
    eprintln!(
        "all 20 texts of the outage arrived {:?} after the broker restarted",
        restarted.elapsed()
    );
    assert!(
        !seen.iter().any(|(t, _, _)| t == "benchlink/lab-2/dropped"),
        "nothing was dropped: {seen:#?}"
    );
}

fn publish(pubexe: &Path, port: u16, topic: &str, payload: &str) {
    let out = Command::new(pubexe)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            payload,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_command_published_reaches_its_device_and_the_reply_comes_back() {
    let Some((mosquitto, sub)) = tools() else { return };
    let Some(pubexe) = require_tool("mosquitto_pub") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&mosquitto, dir.path());
    let s = Subscriber::start(&sub, broker.port, "dash-3");
    let mut seen = Vec::new();
    let mut c = Console::start(&["--mqtt", &broker.url(), "--bench", "lab-3", "--mqtt-commands"]);
    s.wait("benchlink/lab-3/status", |p| p == "online", &mut seen);
    let mut board = TcpStream::connect(c.addr()).unwrap();
    std::io::Write::write_all(&mut board, b"ready\n").unwrap();
    s.wait("benchlink/lab-3/127.0.0.1/status", |p| p == "online", &mut seen);

    publish(
        &pubexe,
        broker.port,
        "benchlink/lab-3/127.0.0.1/cmd",
        r#"{"line": "led on", "id": "job-1"}"#,
    );
    board.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.ends_with(b"led on\r\n") {
        let n = std::io::Read::read(&mut board, &mut buf).expect("the command reaches the board");
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let reply: Value =
        serde_json::from_str(&s.wait("benchlink/lab-3/127.0.0.1/reply", |_| true, &mut seen)).unwrap();
    assert_eq!(
        (reply["ok"].as_bool(), reply["id"].as_str()),
        (Some(true), Some("job-1")),
        "{reply}"
    );

    publish(&pubexe, broker.port, "benchlink/lab-3/cmd", "/list");
    let list: Value =
        serde_json::from_str(&s.wait("benchlink/lab-3/reply", |p| p.contains("/list"), &mut seen)).unwrap();
    assert_eq!(list["devices"][0]["device"], "127.0.0.1", "{list}");
    // /quit is not taken from the broker.
    publish(&pubexe, broker.port, "benchlink/lab-3/cmd", "/quit");
    let refused: Value =
        serde_json::from_str(&s.wait("benchlink/lab-3/reply", |p| p.contains("/quit"), &mut seen)).unwrap();
    assert_eq!(refused["ok"], false);
    c.wait_event("reply", &[("command", json!("/quit"))]);
}

#[test]
fn without_mqtt_commands_the_cmd_topics_are_not_heard() {
    let Some((mosquitto, sub)) = tools() else { return };
    let Some(pubexe) = require_tool("mosquitto_pub") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&mosquitto, dir.path());
    let s = Subscriber::start(&sub, broker.port, "dash-4");
    let mut seen = Vec::new();
    let c = Console::start(&["--mqtt", &broker.url(), "--bench", "lab-4"]);
    s.wait("benchlink/lab-4/status", |p| p == "online", &mut seen);
    let mut board = TcpStream::connect(c.addr()).unwrap();
    std::io::Write::write_all(&mut board, b"ready\n").unwrap();
    s.wait("benchlink/lab-4/127.0.0.1/status", |p| p == "online", &mut seen);
    publish(&pubexe, broker.port, "benchlink/lab-4/127.0.0.1/cmd", "reset");
    board.set_read_timeout(Some(Duration::from_millis(800))).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        std::io::Read::read(&mut board, &mut buf).is_err(),
        "nothing reached the board"
    );
}

/// Two consoles as two benches feed one `benchlink watch --no-tui --json`:
/// both benches' devices appear as bench/device with their own numbers, and a
/// line typed into the watcher reaches the device on its bench.
#[test]
fn one_watcher_sees_two_benches_and_commands_one_of_them() {
    let Some((mosquitto, _)) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&mosquitto, dir.path());
    let url = broker.url();
    let mut watcher = Console::spawn_watch(&url);
    let mut a = Console::start(&["--mqtt", &url, "--bench", "north", "--mqtt-commands"]);
    let mut b = Console::start(&["--mqtt", &url, "--bench", "south", "--mqtt-commands"]);
    let mut board_a = TcpStream::connect(a.addr()).unwrap();
    let mut board_b = TcpStream::connect(b.addr()).unwrap();
    std::io::Write::write_all(&mut board_a, b"north says hi\n").unwrap();
    std::io::Write::write_all(&mut board_b, b"south says hi\n").unwrap();
    a.wait_event("text", &[("text", json!("north says hi"))]);
    b.wait_event("text", &[("text", json!("south says hi"))]);
    let ta = watcher.wait_event_within(
        "text",
        &[("device", json!("north/127.0.0.1"))],
        Duration::from_secs(20),
    );
    let tb = watcher.wait_event_within(
        "text",
        &[("device", json!("south/127.0.0.1"))],
        Duration::from_secs(20),
    );
    assert_eq!(
        (ta["text"].as_str(), tb["text"].as_str()),
        (Some("north says hi"), Some("south says hi"))
    );
    assert_ne!(ta["conn"], tb["conn"], "numbers kept apart across benches");

    let chosen = watcher.command("/to north/127.0.0.1");
    assert_eq!(chosen["ok"], true, "{chosen}");
    watcher.send("blink 3");
    board_a.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.ends_with(b"blink 3\r\n") {
        let n =
            std::io::Read::read(&mut board_a, &mut buf).expect("the watcher's line reaches the north board");
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let reply = watcher.wait_for(
        |e| e["event"] == "reply" && e["command"] == "blink 3",
        Duration::from_secs(20),
    );
    assert_eq!(reply["ok"], true, "{reply}");
}

/// `--metrics`: a scrape after a session shows what happened.
#[test]
fn metrics_are_served_and_count_the_session() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let at = format!("127.0.0.1:{port}");
    let mut c = Console::start(&["--metrics", &at]);
    let mut board = TcpStream::connect(c.addr()).unwrap();
    std::io::Write::write_all(&mut board, b"hello\n").unwrap();
    let mut cam = Dev::connect(c.addr());
    cam.hello("cam-9", &[]);
    cam.upload(1, "a.bin", &[1u8; 3000]);
    c.wait_event("file_saved", &[]);
    drop(board);
    c.wait_event("disconnected", &[]);
    let scrape = || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::io::Write::write_all(&mut s, b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut s, &mut text).unwrap();
        text
    };
    let value = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    // Byte counts follow the once-a-second stats.
    let bytes_in = |text: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with("benchlink_bytes_in_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let text = scrape();
        let done = text.contains("benchlink_files_saved_total 1") && bytes_in(&text) >= 3000.0;
        if done || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text.starts_with("HTTP/1.") && text.contains("200"), "{text}");
    assert_eq!(value(&text, "benchlink_files_saved_total"), 1.0);
    assert_eq!(value(&text, "benchlink_file_bytes_saved_total"), 3000.0);
    assert_eq!(
        value(
            &text,
            "benchlink_devices_connected{protocol=\"frames\",link=\"net\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "benchlink_devices_connected{protocol=\"lines\",link=\"net\"}"
        ),
        0.0
    );
    assert!(value(&text, "benchlink_bytes_in_total") >= 3000.0);
    assert!(
        text.contains("benchlink_device_bytes_in_total{device=\"cam-9\"}"),
        "{text}"
    );
    assert_eq!(
        value(&text, "benchlink_broker_queue_bytes"),
        0.0,
        "no broker here"
    );
}

/// `mqtts://`: TLS to a broker whose certificate a CA of the test's own signs,
/// trusted through SSL_CERT_FILE as an operator would with a private CA.
#[test]
fn mqtts_publishes_over_tls() {
    let Some((mosquitto, sub)) = tools() else { return };
    let Some(openssl) = require_tool("openssl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let out = Command::new(&openssl).args(args).current_dir(d).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=bench test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(d.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    // mosquitto started as root drops to its own user: it must be able to read these.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["ca.pem", "server.pem", "server.key"] {
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A TLS listener beside the plain one (the subscriber stays on plain).
    let extra = format!(
        "listener {tls_port} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n",
        d.display()
    );
    let broker = Broker::start_with(&mosquitto, d, &extra);
    let plain_port = broker.port;
    let s = Subscriber::start(&sub, plain_port, "dash-tls");
    let mut seen = Vec::new();
    let ca = d.join("ca.pem").display().to_string();
    let url = format!("mqtts://localhost:{tls_port}");
    let mut c = Console::start_env(&["--mqtt", &url, "--bench", "secure"], &[("SSL_CERT_FILE", &ca)]);
    s.wait("benchlink/secure/status", |p| p == "online", &mut seen);
    let mut board = TcpStream::connect(c.addr()).unwrap();
    std::io::Write::write_all(&mut board, b"over tls\n").unwrap();
    c.wait_event("text", &[("text", json!("over tls"))]);
    s.wait(
        "benchlink/secure/127.0.0.1/text",
        |p| p.contains("over tls"),
        &mut seen,
    );
    // An untrusted broker is refused: the same URL without the CA.
    let mut untrusted = Console::start(&["--mqtt", &url, "--bench", "insecure"]);
    let down = untrusted.wait_event_within("broker", &[("state", json!("down"))], Duration::from_secs(10));
    assert!(down["detail"].as_str().is_some_and(|d| !d.is_empty()), "{down}");
}

#[test]
fn an_mqtt5_command_is_answered_on_its_response_topic_with_its_correlation_data() {
    let Some((mosquitto, sub)) = tools() else { return };
    let Some(pubexe) = require_tool("mosquitto_pub") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&mosquitto, dir.path());
    // An MQTT 5 requester listening on its own response topic.
    let mut requester = Command::new(&sub)
        .args(["-V", "5", "-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", "ci/job-9/answers", "-q", "1", "-F", "%t\t%D\t%p"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let answers = BufReader::new(requester.stdout.take().unwrap());
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in answers.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut c = Console::start(&["--mqtt", &broker.url(), "--bench", "lab-5", "--mqtt-commands"]);
    let up = c.wait_event("broker", &[("state", json!("connected"))]);
    assert!(up["detail"].as_str().unwrap().contains("MQTT 5"), "{up}");
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new(&pubexe)
        .args([
            "-V",
            "5",
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "-q",
            "1",
        ])
        .args(["-t", "benchlink/lab-5/cmd", "-m", "/list"])
        .args(["-D", "publish", "response-topic", "ci/job-9/answers"])
        .args(["-D", "publish", "correlation-data", "req-0042"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = rx
        .recv_timeout(WAIT)
        .expect("the reply reaches the response topic");
    let mut parts = line.splitn(3, '\t');
    assert_eq!(parts.next(), Some("ci/job-9/answers"), "{line}");
    assert_eq!(
        parts.next(),
        Some("req-0042"),
        "the correlation data comes back: {line}"
    );
    let reply: Value = serde_json::from_str(parts.next().unwrap()).unwrap();
    assert_eq!(
        (reply["event"].as_str(), reply["command"].as_str()),
        (Some("reply"), Some("/list"))
    );
    let _ = requester.kill();
    let _ = requester.wait();
}

/// A broker that speaks MQTT 3.1.1 only, as NATS's gateway does: an MQTT 5
/// CONNECT gets "unacceptable protocol version"; a 3.1.1 session is served just
/// enough (CONNACK, PUBACK, SUBACK, PINGRESP) and its publications are recorded.
fn old_broker() -> (u16, Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut s2 = s.try_clone().unwrap();
                let mut read_packet = || -> Option<(u8, Vec<u8>)> {
                    let mut head = [0u8; 1];
                    s.read_exact(&mut head).ok()?;
                    let (mut len, mut shift) = (0usize, 0);
                    loop {
                        let mut b = [0u8; 1];
                        s.read_exact(&mut b).ok()?;
                        len |= ((b[0] & 0x7f) as usize) << shift;
                        shift += 7;
                        if b[0] & 0x80 == 0 {
                            break;
                        }
                    }
                    let mut body = vec![0u8; len];
                    s.read_exact(&mut body).ok()?;
                    Some((head[0], body))
                };
                let Some((0x10, connect)) = read_packet() else {
                    return;
                };
                // Protocol name (2 + 4 bytes), then the level.
                let level = connect[6];
                let _ = tx.send(format!("CONNECT level {level}"));
                if level != 4 {
                    let _ = s2.write_all(&[0x20, 0x02, 0x00, 0x01]);
                    return;
                }
                let _ = s2.write_all(&[0x20, 0x02, 0x00, 0x00]);
                while let Some((head, body)) = read_packet() {
                    match head >> 4 {
                        3 => {
                            let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
                            let topic = String::from_utf8_lossy(&body[2..2 + topic_len]).into_owned();
                            let mut at = 2 + topic_len;
                            if head & 0x06 != 0 {
                                let _ = s2.write_all(&[0x40, 0x02, body[at], body[at + 1]]);
                                at += 2;
                            }
                            let payload = String::from_utf8_lossy(&body[at..]).into_owned();
                            let _ = tx.send(format!("{topic} {payload}"));
                        }
                        8 => {
                            let _ = s2.write_all(&[0x90, 0x03, body[0], body[1], 0x01]);
                        }
                        12 => {
                            let _ = s2.write_all(&[0xd0, 0x00]);
                        }
                        14 => return,
                        _ => {}
                    }
                }
            });
        }
    });
    (port, rx)
}

#[test]
fn a_broker_that_speaks_only_mqtt_3_1_1_is_used_in_3_1_1() {
    let (port, seen) = old_broker();
    let mut c = Console::start(&["--mqtt", &format!("mqtt://127.0.0.1:{port}"), "--bench", "old"]);
    let up = c.wait_event("broker", &[("state", json!("connected"))]);
    assert!(up["detail"].as_str().unwrap().contains("MQTT 3.1.1"), "{up}");
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !got.iter().any(|m: &String| m == "benchlink/old/status online") {
        let left = deadline.saturating_duration_since(Instant::now());
        got.push(
            seen.recv_timeout(left)
                .unwrap_or_else(|_| panic!("no status within {WAIT:?}: {got:?}")),
        );
    }
    assert_eq!(got[0], "CONNECT level 5", "{got:?}");
    assert!(got.contains(&"CONNECT level 4".to_string()), "{got:?}");
}
