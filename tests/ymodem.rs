//! YMODEM both ways against lrzsz, the reference implementation: `sz --ymodem`
//! sends to the console (a `ymodem://` listener, and `/rz` on a lines link),
//! and the console's `/sz` sends to `rb`, each behind
//! `socat TCP:HOST:PORT EXEC:...`. The batch holds the awkward files: an empty
//! one, one ending in 0x1A (YMODEM's own padding byte), one of exactly 3072
//! bytes (three whole 1K blocks) and a larger random one. Also through
//! `benchlink bridge` with stalls and flipped bits, where YMODEM's retries must
//! recover. Needs socat and lrzsz: a loud skip locally, a failure under CI=true.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Console, WAIT, WAIT_FILE, require_tool};
use serde_json::json;

fn batch(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut eof = vec![b'x'; 999];
    eof.push(0x1a);
    let mut seed = 0x2545_f491u32;
    let random: Vec<u8> = (0..100_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        })
        .collect();
    let files = vec![
        ("empty.bin".to_string(), Vec::new()),
        ("ends-in-1a.bin".to_string(), eof),
        (
            "three-k.bin".to_string(),
            (0..3072u32).map(|i| (i % 251) as u8).collect(),
        ),
        ("random.bin".to_string(), random),
    ];
    for (name, data) in &files {
        std::fs::write(dir.join(name), data).unwrap();
    }
    files
}

/// `socat TCP:addr EXEC:'command'`, run in `cwd`.
fn socat_exec(socat: &Path, addr: &str, command: &str, cwd: &Path) -> Child {
    Command::new(socat)
        .args([format!("TCP:{addr}"), format!("EXEC:{command}")])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start socat")
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "socat/lrzsz did not finish within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tools() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let socat = require_tool("socat")?;
    let sz = require_tool("sz")?;
    let rb = require_tool("rb")?;
    Some((socat, sz, rb))
}

fn check_saved(c: &mut Console, files: &[(String, Vec<u8>)]) {
    for (name, data) in files {
        let saved = c.wait_event_within("file_saved", &[("name", json!(name))], WAIT_FILE);
        assert_eq!(saved["size"], data.len(), "{saved}");
        let path = PathBuf::from(saved["path"].as_str().unwrap());
        assert_eq!(&std::fs::read(&path).unwrap(), data, "{name} is byte-identical");
    }
}

#[test]
fn sz_sends_a_batch_to_a_ymodem_listener() {
    let Some((socat, sz, _)) = tools() else { return };
    let src = tempfile::tempdir().unwrap();
    let files = batch(src.path());
    let mut c = Console::start(&["--listen", "ymodem://127.0.0.1:0"]);
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    let command = format!("{} --ymodem -q {}", sz.display(), names.join(" "));
    let mut child = socat_exec(&socat, &c.addr().to_string(), &command, src.path());
    let connected = c.wait_event("connected", &[]);
    assert_eq!(connected["protocol"], "ymodem");
    check_saved(&mut c, &files);
    let done = c.wait_for(
        |e| {
            e["event"] == "reply"
                && e["command"] == "/rz"
                && e["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("received 4 file(s)"))
        },
        WAIT_FILE,
    );
    assert_eq!(done["ok"], true);
    assert!(wait_exit(&mut child, WAIT_FILE).success(), "sz finished cleanly");
}

#[test]
fn rz_on_a_lines_link_receives_then_the_link_is_text_again() {
    let Some((socat, sz, _)) = tools() else { return };
    let src = tempfile::tempdir().unwrap();
    let files = batch(src.path());
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0"]);
    // sz waits for its receiver to ask; the console asks when told /rz.
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    let command = format!("{} --ymodem -q {}", sz.display(), names.join(" "));
    let mut child = socat_exec(&socat, &c.addr().to_string(), &command, src.path());
    c.wait_event("connected", &[]);
    let reply = c.command("/rz");
    assert_eq!(reply["ok"], true, "{reply}");
    check_saved(&mut c, &files);
    c.wait_for(
        |e| {
            e["event"] == "reply"
                && e["command"] == "/rz"
                && e["text"].as_str().is_some_and(|t| t.contains("back to text"))
        },
        WAIT_FILE,
    );
    assert!(wait_exit(&mut child, WAIT_FILE).success());
}

#[test]
fn sz_from_the_console_reaches_rb_byte_identical() {
    let Some((socat, _, rb)) = tools() else { return };
    let src = tempfile::tempdir().unwrap();
    let files = batch(src.path());
    let dst = tempfile::tempdir().unwrap();
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0"]);
    let command = format!("{} -q", rb.display());
    let mut child = socat_exec(&socat, &c.addr().to_string(), &command, dst.path());
    c.wait_event("connected", &[]);
    let paths: Vec<String> = files
        .iter()
        .map(|(name, _)| src.path().join(name).display().to_string())
        .collect();
    let reply = c.command(&format!("/sz {}", paths.join(" ")));
    assert_eq!(reply["ok"], true, "{reply}");
    for (name, data) in &files {
        let pushed = c.wait_event_within("file_pushed", &[("name", json!(name))], WAIT_FILE);
        assert_eq!(pushed["size"], data.len());
    }
    c.wait_for(|e| e["event"] == "reply" && e["command"] == "/sz", WAIT_FILE);
    let status = wait_exit(&mut child, WAIT_FILE);
    assert!(status.success(), "rb: {status}");
    for (name, data) in &files {
        let got = std::fs::read(dst.path().join(name)).unwrap_or_else(|e| panic!("rb has no {name}: {e}"));
        assert_eq!(&got, data, "{name} as rb wrote it");
    }
}

#[test]
fn sz_through_a_lossy_bridge_is_repaired_by_ymodem_itself() {
    let Some((socat, sz, _)) = tools() else { return };
    let src = tempfile::tempdir().unwrap();
    let files = batch(src.path());
    let mut c = Console::start(&["--listen", "ymodem://127.0.0.1:0"]);
    // A slow UART bridge that stalls and flips a bit every 20 KB or so.
    let bridge = common::bridge::Bridge::start(
        c.addr(),
        &[
            "--rate",
            "400000",
            "--stall",
            "100/700",
            "--flip-every",
            "20000",
            "--seed",
            "7",
            "--json",
        ],
    );
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    let command = format!("{} --ymodem -q {}", sz.display(), names.join(" "));
    let mut child = socat_exec(&socat, &bridge.addr, &command, src.path());
    check_saved(&mut c, &files);
    assert!(wait_exit(&mut child, WAIT_FILE).success());
    let counters = bridge.counters();
    eprintln!("bridge: {counters}");
    assert!(
        counters["flipped"].as_u64().unwrap() > 0,
        "bits were flipped: {counters}"
    );
}

#[test]
fn sz_refuses_what_it_cannot_send_and_frames_devices() {
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0"]);
    let mut dev = std::net::TcpStream::connect(c.addr()).unwrap();
    std::io::Write::write_all(&mut dev, b"hi\n").unwrap();
    c.wait_event("connected", &[]);
    let reply = c.command("/sz /no/such/file.bin");
    assert_eq!(reply["ok"], false);
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("cannot send /no/such/file.bin"),
        "{reply}"
    );
    let reply = c.command("/sz /tmp");
    assert!(
        reply["text"].as_str().unwrap().contains("not a regular file"),
        "{reply}"
    );
    let _ = WAIT;
}
