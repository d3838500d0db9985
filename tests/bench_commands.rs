//! What a bench sends besides text, against the binary and a device socket:
//! `/hex` and `/raw` bytes on the wire, `/eol` per device, `/every` repeats, and
//! macros from config.toml run from stdin.

mod common;

use std::time::{Duration, Instant};

use common::{Console, Device, WAIT};

fn lines_console(extra: &[&str]) -> (Console, Device) {
    let mut args = vec!["--listen", "lines://127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut c = Console::start(&args);
    let mut dev = Device::connect(c.addr());
    dev.send(b"hi\n");
    c.wait_text_in("hi");
    (c, dev)
}

#[test]
fn hex_and_raw_send_exact_bytes_and_eol_changes_the_line_ending() {
    let (mut c, mut dev) = lines_console(&[]);
    let r = c.command("/hex 48 65 6c 6c 6f 0d 0a 00 ff");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(dev.read_exact_within(9, WAIT), b"Hello\r\n\x00\xff");
    let r = c.command(r"/raw A\tB\r\n\x01\\");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(dev.read_exact_within(7, WAIT), b"A\tB\r\n\x01\\");
    let shown = c.wait_event(
        "text",
        &[("direction", "out".into()), ("text", "A\tB\r\n\u{1}\\".into())],
    );
    assert_eq!(shown["device"], "127.0.0.1");

    // Lines devices get CRLF by default; /eol changes it for this device.
    c.command("status");
    assert_eq!(dev.read_exact_within(8, WAIT), b"status\r\n");
    let r = c.command("/eol cr");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["devices"][0]["eol"], "cr", "{r}");
    c.command("status");
    assert_eq!(dev.read_exact_within(7, WAIT), b"status\r");
    let r = c.command("/hex 4");
    assert_eq!(r["ok"], false, "{r}");
}

#[test]
fn every_repeats_until_stopped_or_the_device_leaves() {
    let (mut c, mut dev) = lines_console(&[]);
    let r = c.command("/every 50ms tick");
    assert_eq!(r["ok"], true, "{r}");
    let got = dev.read_exact_within(6 * 5, Duration::from_secs(3));
    assert_eq!(got, b"tick\r\n".repeat(5));
    let r = c.command("/every");
    assert!(r["text"].as_str().unwrap().contains("1: \"tick\""), "{r}");
    let r = c.command("/every off 1");
    assert_eq!(r["ok"], true, "{r}");
    // Whatever was under way arrives; then silence.
    let _ = dev.read_for(Duration::from_millis(200));
    assert!(dev.read_for(Duration::from_millis(300)).is_empty());

    c.command("/every 20ms /hex 01");
    assert_eq!(dev.read_exact_within(3, WAIT), [1, 1, 1]);
    drop(dev);
    let stopped = c.wait_for(
        |e| e["event"] == "reply" && e["text"].as_str().is_some_and(|t| t.contains("disconnected")),
        WAIT,
    );
    assert!(
        stopped["text"].as_str().unwrap().contains("repeat 2 stopped"),
        "{stopped}"
    );
}

#[test]
fn a_named_macro_runs_its_lines_with_pauses() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[macros]\nF5 = \"status\"\n[macros.named]\nboot = \"/eol lf\\nreset\\n/sleep 300ms\\n/hex 41 42\"\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let (mut c, mut dev) = lines_console(&["--config", &config]);
    let started = Instant::now();
    let r = c.command("/macro boot");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(dev.read_exact_within(6, WAIT), b"reset\n");
    assert_eq!(dev.read_exact_within(2, WAIT), b"AB");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let r = c.command("/macro f5");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(dev.read_exact_within(7, WAIT), b"status\n");
    let r = c.command("/macro nope");
    assert!(r["text"].as_str().unwrap().contains("boot"), "{r}");
}
