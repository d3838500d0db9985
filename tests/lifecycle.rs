//! Starting (and failing to start), stopping, and what a session leaves on disk.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use common::{Console, Device, WAIT, WAIT_FILE, bmp, run_to_exit};
use serde_json::Value;

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit code 2, nothing on stdout, no panic, and a stderr starting `benchlink: `.
fn assert_startup_error(out: &Output) -> String {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{err}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(err.starts_with("benchlink: "), "{err}");
    err
}

fn assert_one_line(err: &str) {
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
}

/// Runs `benchlink --no-tui --listen 127.0.0.1:0 --dir DIR EXTRA...` until it exits.
fn headless_until_exit(dir: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--no-tui", "--listen", "127.0.0.1:0", "--dir", dir];
    args.extend_from_slice(extra);
    run_to_exit(&args, WAIT)
}

fn tmp_dir_arg(t: &tempfile::TempDir) -> String {
    t.path().join("recv").display().to_string()
}

#[test]
fn port_in_use_is_one_clear_line_and_exit_2() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let t = tempfile::tempdir().unwrap();
    let dir = tmp_dir_arg(&t);
    let out = run_to_exit(&["--no-tui", "--json", "--listen", &addr, "--dir", &dir], WAIT);
    let err = assert_startup_error(&out);
    assert_one_line(&err);
    let port = taken.local_addr().unwrap().port().to_string();
    assert!(err.contains(&port), "{err}");
    assert!(err.contains("--listen"), "no hint what to do: {err}");
}

#[test]
fn bad_listen_addresses_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let dir = tmp_dir_arg(&t);
    for bad in ["nonsense", "127.0.0.1:99999", "ftp://127.0.0.1:1", "lines:/h:1"] {
        let out = run_to_exit(&["--no-tui", "--listen", bad, "--dir", &dir], WAIT);
        let err = assert_startup_error(&out);
        assert_one_line(&err);
        assert!(err.contains(bad), "{bad}: {err}");
        assert!(err.contains("HOST:PORT"), "{bad}: {err}");
    }
}

#[test]
fn a_config_with_an_unknown_key_names_the_file_and_key() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("bench.toml");
    std::fs::write(&cfg, "max_lines = 5\n").unwrap();
    let dir = tmp_dir_arg(&t);
    let out = headless_until_exit(&dir, &["--config", cfg.to_str().unwrap()]);
    let err = assert_startup_error(&out);
    assert_one_line(&err);
    assert!(err.contains(cfg.to_str().unwrap()), "{err}");
    assert!(err.contains("max_lines"), "{err}");
}

#[test]
fn a_config_with_bad_toml_syntax_is_one_line_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("bench.toml");
    std::fs::write(&cfg, "max_line = = 3\n").unwrap();
    let dir = tmp_dir_arg(&t);
    let out = headless_until_exit(&dir, &["--config", cfg.to_str().unwrap()]);
    let err = assert_startup_error(&out);
    assert_one_line(&err);
    assert!(err.contains(cfg.to_str().unwrap()), "{err}");
}

#[test]
fn config_value_errors_are_one_line() {
    let t = tempfile::tempdir().unwrap();
    let dir = tmp_dir_arg(&t);
    for (text, key) in [
        ("[aliases]\n\"not-an-ip\" = \"cam\"\n", "not-an-ip"),
        ("max_line = \"huge\"\n", "max_line"),
        ("line_ending = \"dos\"\n", "line_ending"),
    ] {
        let cfg = t.path().join("c.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = headless_until_exit(&dir, &["--config", cfg.to_str().unwrap()]);
        let err = assert_startup_error(&out);
        assert_one_line(&err);
        assert!(err.contains(key) && err.contains("c.toml"), "{err}");
    }
    // A config file that does not exist.
    let out = headless_until_exit(&dir, &["--config", "/nonexistent/bench.toml"]);
    let err = assert_startup_error(&out);
    assert!(err.contains("/nonexistent/bench.toml"), "{err}");
}

#[test]
fn an_unwritable_dir_is_refused_at_startup() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("file");
    std::fs::write(&file, b"not a folder").unwrap();
    let dir = file.join("sub");
    let out = headless_until_exit(dir.to_str().unwrap(), &[]);
    let err = assert_startup_error(&out);
    assert_one_line(&err);
    assert!(err.contains(dir.to_str().unwrap()), "{err}");
    assert!(err.contains("--dir"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a folder");
}

#[test]
fn bad_sizes_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let dir = tmp_dir_arg(&t);
    let out = headless_until_exit(&dir, &["--max-line", "lots"]);
    // clap reports this one (its own format), still exit 2 and no panic.
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("--max-line") && err.contains("lots"), "{err}");
    assert!(err.contains("64KiB"), "no example of a valid size: {err}");

    let out = headless_until_exit(&dir, &["--max-line", "0"]);
    let err = assert_startup_error(&out);
    assert!(err.contains("max_line"), "{err}");
}

#[test]
fn quit_stops_cleanly_and_disconnects_devices() {
    let mut c = Console::start(&[]);
    let mut dev = Device::connect(c.addr());
    dev.send(b"hi\n");
    let conn = c.wait_connected(&dev);
    let r = c.command("/quit");
    assert_eq!(r["ok"], true);
    let status = c.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0));
    let d = c.wait_event("disconnected", &[("conn", conn["conn"].clone())]);
    assert_eq!(d["reason"], "the console stopped");
    let stopped = c.wait_event("stopped", &[]);
    assert!(stopped["reason"].as_str().unwrap().contains("/quit"), "{stopped}");
    // `stopped` is the last event.
    assert_eq!(c.events().last().unwrap()["event"], "stopped");
    assert!(dev.closed_within(WAIT));
    assert!(!c.stderr_text().contains("panicked"));
}

fn stops_on_signal(name: &str) {
    let mut c = Console::start(&[]);
    let mut dev = Device::connect(c.addr());
    dev.send(b"hi\n");
    c.wait_connected(&dev);
    c.signal(name);
    let status = c.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{status:?}");
    let stopped = c.wait_event("stopped", &[]);
    assert_eq!(stopped["reason"], format!("received SIG{name}"));
    c.wait_event("disconnected", &[]);
    assert!(dev.closed_within(WAIT));
}

#[test]
fn sigterm_stops_cleanly() {
    stops_on_signal("TERM");
}

#[test]
fn sigint_stops_cleanly() {
    stops_on_signal("INT");
}

#[test]
fn sighup_stops_cleanly() {
    stops_on_signal("HUP");
}

#[test]
fn eof_on_stdin_keeps_the_console_running() {
    let mut c = Console::start(&[]);
    c.close_stdin();
    std::thread::sleep(Duration::from_millis(300));
    assert!(c.running(), "console exited on stdin EOF");
    let mut dev = Device::connect(c.addr());
    dev.send(b"still accepting\n");
    c.wait_connected(&dev);
    c.wait_text_in("still accepting");
    assert!(c.running());
    c.signal("TERM");
    assert_eq!(c.wait_exit(WAIT).code(), Some(0));
    c.wait_event("stopped", &[]);
}

#[test]
fn stopping_mid_file_keeps_what_arrived_as_part() {
    let mut c = Console::start(&["--auto-delay-ms", "100"]);
    let mut dev = Device::connect_cf(c.addr(), b"hello client");
    let conn = c.wait_connected(&dev);
    let img = bmp(400, 400, 31);
    dev.send_alone(b"f");
    dev.send(&img[..100_000]);
    c.wait_event("file_started", &[("conn", conn["conn"].clone())]);
    // Let the bytes reach the console before stopping it.
    std::thread::sleep(Duration::from_millis(300));
    c.signal("TERM");
    assert_eq!(c.wait_exit(WAIT_FILE).code(), Some(0));
    let failed = c.wait_event("file_failed", &[("conn", conn["conn"].clone())]);
    let part = PathBuf::from(failed["part"].as_str().expect("part kept"));
    assert!(std::fs::read(&part).unwrap() == img[..100_000], "{failed}");
    c.wait_event("stopped", &[]);
}

#[test]
fn conversation_log_and_received_history_after_a_session() {
    let mut c = Console::start(&["--auto-delay-ms", "100"]);
    // A lines device talks.
    let mut l = Device::connect(c.addr());
    l.send(b"hello\n");
    let lc = c.wait_connected(&l);
    c.wait_text_in("hello");
    c.command("reply");
    l.read_exact_within(7, WAIT);
    c.wait_event("text", &[("direction", "out".into()), ("text", "reply".into())]);
    drop(l);
    c.wait_event("disconnected", &[("conn", lc["conn"].clone())]);
    // (Reconnecting before the name is released would make it 127.0.0.1#2; see
    // lines.rs: a_device_is_gone_once_disconnected_is_reported.)
    c.wait_no_devices();

    // A cf device sends two files over two connections.
    let mut saved: Vec<Value> = Vec::new();
    for seed in [32, 33] {
        let mut f = Device::connect_cf(c.addr(), b"hello client");
        let fc = c.wait_connected(&f);
        f.send_alone(b"hello server");
        f.send_alone(b"cweeding");
        c.wait_text_in("weeding");
        f.send_alone(b"f");
        f.send(&bmp(100, 100, seed));
        f.finish();
        assert_eq!(fc["device"], "127.0.0.1");
        saved.push(c.wait_event_within("file_saved", &[("conn", fc["conn"].clone())], WAIT_FILE));
        c.wait_event("disconnected", &[("conn", fc["conn"].clone())]);
        c.wait_no_devices();
    }
    c.command("/quit");
    c.wait_exit(WAIT);

    let log = std::fs::read_to_string(c.dir().join("127.0.0.1/conversation.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    // Each line: RFC 3339 time, direction, text.
    let parsed: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            let (ts, rest) = l.split_once(' ').unwrap();
            assert!(ts.contains('T') && ts.len() >= 20, "{l}");
            (&rest[..3], &rest[4..])
        })
        .collect();
    let want = [
        ("in ", "hello"),
        ("out", "reply"),
        ("out", "hello client"),
        ("in ", "hello server"),
        ("in ", "weeding"),
        ("out", "hello client"),
        ("in ", "hello server"),
        ("in ", "weeding"),
    ];
    assert_eq!(parsed, want, "{log}");

    let history = std::fs::read_to_string(c.dir().join("received.jsonl")).unwrap();
    let records: Vec<Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{history}");
    for (r, ev) in records.iter().zip(&saved) {
        assert_eq!(r["device"], "127.0.0.1");
        assert_eq!(r["path"], ev["path"]);
        assert_eq!(r["name"], ev["name"]);
        assert_eq!(r["size"], ev["size"]);
        assert_eq!(r["crc32"], ev["crc32"]);
        assert_eq!(r["protocol"], "cf");
        assert!(r["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{r}");
        assert!(r["time"].is_string());
    }
}

#[test]
fn no_log_writes_no_conversation_but_keeps_the_history() {
    let mut c = Console::start(&["--auto-delay-ms", "100", "--no-log"]);
    let mut f = Device::connect_cf(c.addr(), b"hello client");
    let fc = c.wait_connected(&f);
    f.send_alone(b"hello server");
    f.send_alone(b"f");
    f.send(&bmp(20, 20, 34));
    f.finish();
    c.wait_event_within("file_saved", &[("conn", fc["conn"].clone())], WAIT_FILE);
    c.command("/quit");
    c.wait_exit(WAIT);
    let files = common::walk(c.dir());
    assert!(
        files.iter().all(|p| p.file_name().unwrap() != "conversation.log"),
        "{files:?}"
    );
    assert!(c.dir().join("received.jsonl").exists());
}

#[test]
fn a_relative_dir_is_reported_and_used_as_absolute_paths() {
    let cwd = tempfile::tempdir().unwrap();
    let mut c = Console::start_in(cwd.path(), &["--dir", "rel/recv", "--auto-delay-ms", "100"]);
    let want = cwd.path().canonicalize().unwrap().join("rel/recv");
    assert_eq!(c.dir(), want.as_path());
    let mut f = Device::connect_cf(c.addr(), b"hello client");
    let fc = c.wait_connected(&f);
    f.send_alone(b"f");
    let img = bmp(10, 10, 35);
    f.send(&img);
    f.finish();
    let saved = c.wait_event_within("file_saved", &[("conn", fc["conn"].clone())], WAIT_FILE);
    let path = PathBuf::from(saved["path"].as_str().unwrap());
    assert!(path.is_absolute() && path.starts_with(&want), "{saved}");
    assert_eq!(std::fs::read(&path).unwrap(), img);
}

#[test]
fn every_event_has_a_name_and_an_rfc3339_time() {
    let mut c = Console::start(&["--auto-delay-ms", "100"]);
    let mut l = Device::connect(c.addr());
    l.send(b"x\n");
    c.wait_text_in("x");
    let mut f = Device::connect_cf(c.addr(), b"hello client");
    f.send_alone(b"f");
    f.send(&bmp(30, 30, 36));
    f.finish();
    c.wait_event_within("file_saved", &[], WAIT_FILE);
    c.command("/list");
    c.command("/nope");
    drop(l);
    c.command("/quit");
    c.wait_exit(WAIT);
    let events = c.events();
    let kinds: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    for k in [
        "listening",
        "connected",
        "text",
        "file_started",
        "file_saved",
        "disconnected",
        "reply",
        "stopped",
    ] {
        assert!(kinds.contains(k), "no {k} event in {kinds:?}");
    }
    for e in &events {
        let ts = e["ts"].as_str().unwrap_or_else(|| panic!("no ts: {e}"));
        // 2026-11-26T12:31:43.535+00:00
        let b = ts.as_bytes();
        assert!(
            b.len() >= 29 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.',
            "ts {ts:?} is not RFC 3339 with milliseconds"
        );
    }
}

#[test]
fn a_disk_error_fails_one_transfer_not_the_console() {
    let mut c = Console::start(&["--auto-delay-ms", "100"]);
    // The device's folder cannot be made: a file has its name.
    std::fs::write(c.dir().join("127.0.0.1"), b"in the way").unwrap();
    let mut f = Device::connect_cf(c.addr(), b"hello client");
    let fc = c.wait_connected(&f);
    f.send_alone(b"f");
    f.send(&bmp(100, 100, 37));
    f.finish();
    let failed = c.wait_event_within("file_failed", &[("conn", fc["conn"].clone())], WAIT_FILE);
    assert!(!failed["reason"].as_str().unwrap().is_empty(), "{failed}");
    let err = c.wait_event("error", &[]);
    assert!(err["message"].as_str().unwrap().contains("127.0.0.1"), "{err}");
    c.wait_event("disconnected", &[("conn", fc["conn"].clone())]);
    // The console goes on: another device still talks.
    let mut l = Device::connect(c.addr());
    l.send(b"fine\n");
    c.wait_text_in("fine");
    assert!(c.running());
    assert_eq!(std::fs::read(c.dir().join("127.0.0.1")).unwrap(), b"in the way");
}

#[test]
fn a_second_console_on_the_same_folder_is_refused_with_the_first_ones_pid() {
    let first = Console::start(&[]);
    let dir = first.dir().display().to_string();
    let out = run_to_exit(&["--no-tui", "--listen", "127.0.0.1:0", "--dir", &dir], WAIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("already using") && stderr.contains(&first.pid().to_string()),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn listen_takes_a_bare_port_and_names_a_bad_address() {
    let out = run_to_exit(&["--no-tui", "--listen", "lines:/0.0.0.0:1"], WAIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs //"), "{stderr}");
    let out = run_to_exit(&["--no-tui", "--listen", "70000"], WAIT);
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of range"));
    let mut c = Console::start(&["--listen", ":0"]);
    let listening = c.events_of("listening").remove(0);
    assert!(
        listening["addr"].as_str().unwrap().starts_with("0.0.0.0:"),
        "{listening}"
    );
}
