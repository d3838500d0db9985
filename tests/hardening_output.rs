//! What a slow or stuck operator side and a binary-spewing device do to the
//! headless console, against the binary: stdout nobody reads, SIGTERM while
//! stdout is blocked, an endless stdin line, 50 MiB of binary as lines, stderr
//! that is a pipe. Each test prints the figures it measured.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use benchlink::protocol::frames::{AckStatus, Message};
use common::dev::{Dev, damaged};
use common::{Console, Device, Rng, WAIT, WAIT_FILE, bin};

/// A headless console whose stdout is a pipe the test reads only when it says so.
struct Stuck {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    _home: tempfile::TempDir,
}

impl Stuck {
    fn start(args: &[&str]) -> Stuck {
        let dir = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin())
            .args(["--no-tui", "--json", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path())
            .args(args)
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_DATA_HOME", home.path().join("data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The first line is `listening`; after it nobody reads stdout until asked.
        let mut first = Vec::new();
        let out = child.stdout.as_mut().unwrap();
        let mut byte = [0u8; 1];
        while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            first.push(byte[0]);
        }
        let listening: serde_json::Value = serde_json::from_slice(&first).unwrap();
        let addr = listening["addr"].as_str().unwrap().parse().unwrap();
        Stuck {
            child,
            addr,
            dir,
            _home: home,
        }
    }

    /// The rest of stdout, and the second listener's address from its second line.
    fn second_listener(&mut self) -> (BufReader<std::process::ChildStdout>, SocketAddr) {
        let mut line = String::new();
        let mut out = BufReader::new(self.child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        let listening: serde_json::Value = serde_json::from_str(&line).unwrap();
        (out, listening["addr"].as_str().unwrap().parse().unwrap())
    }

    fn peak_rss_mib(&self) -> u64 {
        peak_rss_kib(self.child.id()) / 1024
    }
}

impl Drop for Stuck {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[test]
fn a_stopped_reader_costs_dropped_texts_not_memory() {
    let mut c = Stuck::start(&[
        "--listen",
        "lines://127.0.0.1:0",
        "--max-line",
        "4MiB",
        "--event-queue",
        "8MiB",
        "--max-log-size",
        "1GiB",
    ]);
    let (mut out, lines_addr) = c.second_listener();
    let mut line = String::new();

    let mut dev = Device::connect(lines_addr);
    let text = "y".repeat(1 << 20);
    let lines = 160;
    for i in 0..lines {
        dev.send(format!("{i:04} {text}\n").as_bytes());
    }
    // A file still moves while stdout is stuck: the engine never waits for it.
    let mut d = Dev::connect(c.addr);
    d.hello("cam", &[]);
    let data = Rng::new(9).bytes(300 * 1024);
    let ack = d.upload(1, "img.bin", &data);
    assert_eq!(ack.status, AckStatus::Saved, "{ack:?}");

    let log = c.dir.path().join("127.0.0.1").join("conversation.log");
    let want = lines as u64 * (1 << 20);
    let deadline = Instant::now() + WAIT_FILE;
    while file_len(&log) < want {
        assert!(
            Instant::now() < deadline,
            "conversation.log has {} bytes",
            file_len(&log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss = c.peak_rss_mib();
    eprintln!(
        "{lines} MiB of text with stdout stopped: peak RSS {rss} MiB (event queue 8 MiB), conversation.log {} MiB",
        file_len(&log) >> 20
    );
    assert!(rss < 120, "peak RSS {rss} MiB");

    // Reading again: one `dropped` line says what was lost.
    dev.send(b"after\n");
    let mut dropped = None;
    let deadline = Instant::now() + WAIT_FILE;
    while Instant::now() < deadline {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "dropped" {
            dropped = Some(v.clone());
        }
        if v["event"] == "text" && v["text"] == "after" {
            break;
        }
    }
    let dropped = dropped.expect("a dropped event");
    eprintln!("{dropped}");
    assert!(dropped["events"].as_u64().unwrap() > 0);
}

#[test]
fn sigterm_stops_within_two_seconds_while_stdout_is_blocked() {
    let mut c = Stuck::start(&["--listen", "lines://127.0.0.1:0"]);
    let (out, lines_addr) = c.second_listener();
    let mut dev = Device::connect(lines_addr);
    // Far more than a pipe holds: the printer is stuck in write(2).
    let text = "z".repeat(1000);
    for _ in 0..2000 {
        dev.send(format!("{text}\n").as_bytes());
    }
    let log = c.dir.path().join("127.0.0.1").join("conversation.log");
    let deadline = Instant::now() + WAIT_FILE;
    while file_len(&log) < 2000 * 1000 {
        assert!(Instant::now() < deadline, "the texts never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &c.child.id().to_string()])
        .status();
    let deadline = started + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = c.child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    eprintln!("stopped {took:?} after SIGTERM with stdout blocked: {status:?}");
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop(out);
}

#[test]
fn an_endless_stdin_line_is_discarded_without_being_held() {
    let mut c = Console::start(&[]);
    let pid = c.pid();
    let mut stdin = c.take_stdin();
    let writer = std::thread::spawn(move || {
        let block = vec![b'x'; 1 << 20];
        for _ in 0..300 {
            if stdin.write_all(&block).is_err() {
                return;
            }
        }
        let _ = stdin.write_all(b"\n/list\n");
        let _ = stdin.flush();
    });
    let reply = c.wait_for(|e| e["event"] == "reply" && e["command"] == "/list", WAIT_FILE);
    let rss = peak_rss_kib(pid) / 1024;
    eprintln!(
        "a 300 MiB stdin line: peak RSS {rss} MiB; then /list answered: {}",
        reply["ok"]
    );
    assert!(rss < 100, "peak RSS {rss} MiB");
    assert!(writer.join().is_ok());
    assert!(c.stderr_text().contains("longer than 64 KiB"));
}

#[test]
fn fifty_mib_of_binary_as_lines_stays_small_on_stdout_and_in_the_log() {
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0"]);
    let mut dev = Device::connect(c.addr());
    let binary = vec![0xffu8; 50 << 20];
    dev.send(&binary);
    dev.send(b"\nthe end\n");
    c.wait_text_in("the end");
    let stdout = c.stdout_raw().len();
    let log = c.dir().join("127.0.0.1").join("conversation.log");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("the end")
    {
        assert!(Instant::now() < deadline, "the log never got the last line");
        std::thread::sleep(Duration::from_millis(20));
    }
    let logged = file_len(&log);
    eprintln!(
        "50 MiB of 0xFF as lines: {stdout} bytes of JSON on stdout, {logged} bytes in conversation.log"
    );
    assert!(stdout < 1 << 20, "{stdout}");
    assert!(logged < 1 << 20, "{logged}");
    let texts = c.events_of("text");
    assert!(
        texts.iter().any(|t| t["text"] == "\\[65536 binary bytes]"),
        "{:?}",
        &texts[..2]
    );
}

#[test]
fn stderr_is_plain_text_when_it_is_not_a_terminal() {
    let c = Console::start(&["--listen", "frames://127.0.0.1:0"]);
    let mut d = Dev::connect(c.addr());
    d.hello("cam", &[]);
    d.send_raw(&damaged(&Message::Text("x".repeat(40))));
    assert!(d.sync().is_empty());
    let deadline = Instant::now() + WAIT;
    while !c.stderr_text().contains("WARN") {
        assert!(
            Instant::now() < deadline,
            "no warning on stderr: {:?}",
            c.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stderr = c.stderr_text();
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    let _ = TcpStream::connect(c.addr());
}
