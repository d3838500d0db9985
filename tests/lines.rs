//! Text-line devices (a device that speaks first on an auto listener) and the
//! operator's commands, against the real binary over loopback TCP.

mod common;

use std::time::Duration;

use common::{Console, Device, WAIT};
use serde_json::Value;

/// A device that speaks first and has been announced as `lines`.
fn lines_device(console: &mut Console, first: &str) -> (Device, Value) {
    let mut dev = Device::connect(console.addr());
    dev.send(format!("{first}\n").as_bytes());
    let connected = console.wait_connected(&dev);
    assert_eq!(connected["protocol"], "lines", "{connected}");
    console.wait_text_in(first);
    (dev, connected)
}

#[test]
fn text_flows_both_ways_with_crlf_to_the_device() {
    let mut c = Console::start(&[]);
    let (mut dev, connected) = lines_device(&mut c, "boot ok");
    assert_eq!(connected["device"], "127.0.0.1");
    assert_eq!(connected["peer"], dev.local().to_string());

    dev.send(b"temperature 21.5\n");
    let ev = c.wait_text_in("temperature 21.5");
    assert_eq!(ev["device"], "127.0.0.1");
    assert_eq!(ev["conn"], connected["conn"]);

    let reply = c.command("capture now");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(dev.read_exact_within(13, WAIT), b"capture now\r\n");
    let out = c.wait_event(
        "text",
        &[("direction", "out".into()), ("text", "capture now".into())],
    );
    assert_eq!(out["conn"], connected["conn"]);

    // `//` sends text that begins with `/`.
    c.command("//etc/status");
    assert_eq!(dev.read_exact_within(13, WAIT), b"/etc/status\r\n");
    // Nothing else was sent to the device (no greeting for a lines device).
    assert!(dev.read_for(Duration::from_millis(200)).is_empty());
}

#[test]
fn crlf_and_lf_lines_are_both_understood() {
    let mut c = Console::start(&[]);
    let (mut dev, _) = lines_device(&mut c, "first");
    dev.send(b"one\r\ntwo\nthree\r\n\r\nfour\n");
    for t in ["one", "two", "three", "", "four"] {
        let ev = c.wait_text_in(t);
        assert!(!ev["text"].as_str().unwrap().contains('\r'), "{ev}");
    }
}

#[test]
fn line_ending_flag_changes_what_the_device_gets() {
    let mut c = Console::start(&["--line-ending", "lf"]);
    let (mut dev, _) = lines_device(&mut c, "hi");
    c.command("reset");
    assert_eq!(dev.read_exact_within(6, WAIT), b"reset\n");
    assert!(dev.read_for(Duration::from_millis(200)).is_empty());
}

#[test]
fn a_partial_line_is_shown_after_idle_and_crlf_completion_adds_no_blank_line() {
    let mut c = Console::start(&[]);
    let mut dev = Device::connect(c.addr());
    dev.send(b"login: ");
    c.wait_connected(&dev);
    let ev = c.wait_text_in("login: ");
    assert_eq!(ev["direction"], "in");

    dev.send(b"prompt>\r");
    c.wait_text_in("prompt>");
    dev.send(b"\nnext\n");
    c.wait_text_in("next");
    let texts: Vec<String> = c
        .events_of("text")
        .iter()
        .filter(|e| e["direction"] == "in")
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["login: ", "prompt>", "next"]);
}

#[test]
fn an_overlong_line_is_cut_at_max_line() {
    let mut c = Console::start(&["--max-line", "16"]);
    let mut dev = Device::connect(c.addr());
    let long = "abcdefghijklmnopqrstuvwxyz0123456789ABCD"; // 40 bytes
    dev.send(format!("{long}\nshort\n").as_bytes());
    c.wait_connected(&dev);
    c.wait_text_in("short");
    let texts: Vec<String> = c
        .events_of("text")
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        texts,
        ["abcdefghijklmnop", "qrstuvwxyz012345", "6789ABCD", "short"]
    );
}

#[test]

fn a_line_of_exactly_max_line_bytes_is_kept_whole() {
    let mut c = Console::start(&["--max-line", "16"]);
    let mut dev = Device::connect(c.addr());
    // 16 bytes + LF, then 15 bytes + CRLF: both fit in 16 bytes of text.
    dev.send(b"0123456789abcdef\n0123456789abcde\r\nend\n");
    c.wait_connected(&dev);
    c.wait_text_in("end");
    let texts: Vec<String> = c
        .events_of("text")
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["0123456789abcdef", "0123456789abcde", "end"]);
}

#[test]
fn invalid_utf8_is_escaped_in_json_and_valid_utf8_kept() {
    let mut c = Console::start(&[]);
    let mut dev = Device::connect(c.addr());
    dev.send(b"ok\xff\xfe!\nh\xc3\xa9llo \xe2\x9c\x93\n");
    c.wait_connected(&dev);
    c.wait_text_in("ok\\xff\\xfe!");
    c.wait_text_in("héllo ✓");
    // The raw JSON line carries the backslash escaped, i.e. valid JSON text.
    let raw = String::from_utf8(c.stdout_raw()).expect("stdout is UTF-8");
    assert!(raw.contains(r#""text":"ok\\xff\\xfe!""#), "{raw}");
}

#[test]
fn two_connections_from_one_ip_get_numbered_names_and_list_shows_them() {
    let mut c = Console::start(&[]);
    let (mut a, ca) = lines_device(&mut c, "I am A");
    let (mut b, cb) = lines_device(&mut c, "I am B");
    assert_eq!(ca["device"], "127.0.0.1");
    assert_eq!(cb["device"], "127.0.0.1#2");
    assert_ne!(ca["conn"], cb["conn"]);

    // Plain text with two devices and no target: refused, naming both.
    let r = c.command("hello?");
    assert_eq!(r["ok"], false, "{r}");
    let text = r["text"].as_str().unwrap();
    assert!(
        text.contains("127.0.0.1,") && text.contains("127.0.0.1#2"),
        "{text}"
    );
    assert!(a.read_for(Duration::from_millis(150)).is_empty());
    assert!(b.read_for(Duration::from_millis(10)).is_empty());

    // /list: both, with their protocol, peer and byte counters.
    let r = c.command("/list");
    assert_eq!(r["ok"], true);
    let devices = r["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{r}");
    assert_eq!(devices[0]["device"], "127.0.0.1");
    assert_eq!(devices[0]["conn"], ca["conn"]);
    assert_eq!(devices[0]["peer"], a.local().to_string());
    assert_eq!(devices[0]["protocol"], "lines");
    assert_eq!(devices[0]["bytes_in"], 7); // "I am A\n"
    assert_eq!(devices[0]["bytes_out"], 0);
    assert_eq!(devices[1]["device"], "127.0.0.1#2");
    assert_eq!(devices[1]["peer"], b.local().to_string());
    assert!(devices[1]["connected_secs"].is_u64());

    // /to by name, then plain text goes only there.
    let r = c.command("/to 127.0.0.1#2");
    assert_eq!(r["ok"], true, "{r}");
    c.command("only for B");
    assert_eq!(b.read_exact_within(12, WAIT), b"only for B\r\n");
    assert!(a.read_for(Duration::from_millis(200)).is_empty());

    // /to by connection number.
    let conn_a = ca["conn"].as_u64().unwrap();
    assert_eq!(c.command(&format!("/to {conn_a}"))["ok"], true);
    c.command("only for A");
    assert_eq!(a.read_exact_within(12, WAIT), b"only for A\r\n");
    assert!(b.read_for(Duration::from_millis(200)).is_empty());

    // /all reaches both.
    let r = c.command("/all reboot");
    assert_eq!(r["ok"], true);
    assert!(r["text"].as_str().unwrap().contains('2'), "{r}");
    assert_eq!(a.read_exact_within(8, WAIT), b"reboot\r\n");
    assert_eq!(b.read_exact_within(8, WAIT), b"reboot\r\n");

    // bytes_out counts what was sent.
    let r = c.command("/list");
    let devices = r["devices"].as_array().unwrap();
    assert_eq!(devices[0]["bytes_out"], 12 + 8);
    assert_eq!(devices[1]["bytes_out"], 12 + 8);

    // /to someone unknown.
    let r = c.command("/to nobody");
    assert_eq!(r["ok"], false);
    assert!(r["text"].as_str().unwrap().contains("nobody"), "{r}");
}

#[test]
fn kick_by_name_and_by_number() {
    let mut c = Console::start(&[]);
    let (mut a, ca) = lines_device(&mut c, "A");
    let (mut b, cb) = lines_device(&mut c, "B");

    let r = c.command("/kick 127.0.0.1#2");
    assert_eq!(r["ok"], true, "{r}");
    assert!(b.closed_within(WAIT), "kicked device still connected");
    let d = c.wait_event("disconnected", &[("conn", cb["conn"].clone())]);
    assert_eq!(d["reason"], "disconnected by the operator");
    c.wait_device_count(1);

    // With one device left, plain text goes to it without /to.
    c.command("still there?");
    assert_eq!(a.read_exact_within(14, WAIT), b"still there?\r\n");

    let conn_a = ca["conn"].as_u64().unwrap();
    assert_eq!(c.command(&format!("/kick {conn_a}"))["ok"], true);
    assert!(a.closed_within(WAIT));
    c.wait_event("disconnected", &[("conn", ca["conn"].clone())]);
    c.wait_no_devices();

    let r = c.command("/kick 127.0.0.1");
    assert_eq!(r["ok"], false, "{r}");
    let r = c.command("/list");
    assert_eq!(r["devices"].as_array().unwrap().len(), 0);
    let r = c.command("nobody listens");
    assert_eq!(r["ok"], false);
    let r = c.command("/all anyone?");
    assert_eq!(r["ok"], false);
}

#[test]
fn unknown_commands_and_missing_arguments_are_explained() {
    let mut c = Console::start(&[]);
    let r = c.command("/frobnicate now");
    assert_eq!(r["ok"], false);
    let text = r["text"].as_str().unwrap();
    assert!(text.contains("/frobnicate") && text.contains("/list"), "{text}");
    let r = c.command("/to");
    assert_eq!(r["ok"], false);
    assert!(r["text"].as_str().unwrap().contains("NAME|CONN"), "{r}");
    let r = c.command("/help");
    assert_eq!(r["ok"], true);
    for cmd in ["/to", "/all", "/list", "/kick", "/help", "/quit"] {
        assert!(r["text"].as_str().unwrap().contains(cmd), "{r}");
    }
    // Still serving afterwards.
    assert!(c.running());
}

#[test]
fn a_device_that_goes_away_is_reported_and_its_partial_line_flushed() {
    let mut c = Console::start(&[]);
    let (mut dev, conn) = lines_device(&mut c, "hello");
    dev.send(b"last words");
    dev.finish();
    c.wait_text_in("last words");
    let d = c.wait_event("disconnected", &[("conn", conn["conn"].clone())]);
    assert_eq!(d["reason"], "closed by the device");
}

#[test]
fn many_devices_at_once_each_get_their_own_name() {
    let mut c = Console::start(&[]);
    let mut devs: Vec<Device> = (0..20).map(|_| Device::connect(c.addr())).collect();
    for (i, d) in devs.iter_mut().enumerate() {
        d.send(format!("dev {i}\n").as_bytes());
    }
    let mut names = Vec::new();
    for (i, d) in devs.iter().enumerate() {
        let ev = c.wait_text_in(&format!("dev {i}"));
        let conn = c.wait_connected(d);
        assert_eq!(ev["conn"], conn["conn"]);
        names.push(conn["device"].as_str().unwrap().to_string());
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20, "{names:?}");
    assert!(names.contains(&"127.0.0.1".to_string()));
    assert!(names.contains(&"127.0.0.1#20".to_string()));
    let r = c.command("/list");
    assert_eq!(r["devices"].as_array().unwrap().len(), 20);
}

#[test]
fn max_connections_refuses_the_extra_device_and_keeps_the_first() {
    let mut c = Console::start(&["--max-connections", "1"]);
    let (mut a, _) = lines_device(&mut c, "first");
    let mut b = Device::connect(c.addr());
    assert!(b.closed_within(WAIT), "second device was not refused");
    let e = c.wait_event("error", &[]);
    assert!(e["message"].as_str().unwrap().contains("refused"), "{e}");
    a.send(b"still here\n");
    c.wait_text_in("still here");
}

#[test]
fn explicit_lines_and_cf_listeners() {
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0", "--listen", "cf://127.0.0.1:0"]);
    let listening = c.events_of("listening");
    assert_eq!(listening[0]["protocol"], "lines");
    assert_eq!(listening[1]["protocol"], "cf");

    // lines:// announces at once and never greets.
    let mut l = Device::connect(c.addrs()[0]);
    let ev = c.wait_connected(&l);
    assert_eq!(ev["protocol"], "lines");
    assert!(l.read_for(Duration::from_millis(400)).is_empty());

    // cf:// greets at once (no auto delay), strict decoding.
    let mut f = Device::connect(c.addrs()[1]);
    assert_eq!(
        f.read_exact_within(12, Duration::from_millis(1500)),
        b"hello client"
    );
    let ev = c.wait_connected(&f);
    assert_eq!(ev["protocol"], "cf");
    f.send_alone(b"cstatus\n");
    c.wait_text_in("status");
}

#[test]

fn cutting_an_overlong_line_keeps_utf8_characters_whole() {
    let mut c = Console::start(&["--max-line", "5"]);
    let mut dev = Device::connect(c.addr());
    // 3 × "é" (2 bytes each) = 6 bytes: one cut is needed, and it must not fall
    // inside a character.
    dev.send("ééé\nend\n".as_bytes());
    c.wait_connected(&dev);
    c.wait_text_in("end");
    let texts: Vec<String> = c
        .events_of("text")
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert!(
        texts.iter().all(|t| !t.contains("\\x")),
        "valid UTF-8 shown as escapes: {texts:?}"
    );
    assert_eq!(texts.concat(), "éééend");
}

#[test]
fn an_overlong_operator_line_is_ignored_and_the_next_one_works() {
    let mut c = Console::start(&[]);
    let (mut dev, _) = lines_device(&mut c, "hi");
    let huge = "x".repeat(70 * 1024);
    c.send(&huge);
    c.command("after");
    assert_eq!(dev.read_exact_within(7, WAIT), b"after\r\n");
    assert!(dev.read_for(Duration::from_millis(200)).is_empty());
    assert!(
        c.stderr_text().contains("longer than 64 KiB"),
        "{}",
        c.stderr_text()
    );
}

#[test]

fn a_device_is_gone_once_disconnected_is_reported() {
    // session.rs `run`: `close()` emits `disconnected`; the registry entry goes only
    // later, when the `Registration` guard drops. Meanwhile /list lists it, /kick
    // and /to find it, plain text is "sent to" it (ok=true, and lost), and a device
    // reconnecting at once is named 127.0.0.1#2, so its files land in another folder.
    let mut c = Console::start(&[]);
    let mut stale = Vec::new();
    for i in 0..120 {
        let mut d = Device::connect(c.addr());
        d.send(format!("round {i}\n").as_bytes());
        let ev = c.wait_connected(&d);
        if i % 2 == 0 {
            drop(d);
        } else {
            c.command(&format!("/kick {}", ev["conn"]));
        }
        c.wait_event("disconnected", &[("conn", ev["conn"].clone())]);
        let listed = c.command("/list");
        if !listed["devices"].as_array().unwrap().is_empty() {
            stale.push((i, listed["devices"].clone()));
        }
    }
    assert!(
        stale.is_empty(),
        "listed after its `disconnected` event in {} of 120 rounds: {stale:?}",
        stale.len()
    );
}

/// A device streaming text: its lines go through the engine a read at a time,
/// and still come out one `text` event per line, each in order, and each in
/// conversation.log with its time and direction.
#[test]
fn a_burst_of_lines_comes_out_whole_and_in_order_on_stdout_and_in_the_log() {
    const LINES: usize = 20_000;
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0"]);
    let mut dev = Device::connect(c.addr());
    let burst: String = (0..LINES)
        .map(|i| format!("{i:05} temp=21.5 \u{e9}\t\x1b[1mok\r\n"))
        .collect();
    dev.send(burst.as_bytes());
    dev.send(b"end\n");
    c.wait_text_in("end");
    let texts: Vec<String> = c
        .events_of("text")
        .iter()
        .filter_map(|e| e["text"].as_str().map(str::to_string))
        .collect();
    let want: Vec<String> = (0..LINES)
        .map(|i| format!("{i:05} temp=21.5 \u{e9}\t\x1b[1mok"))
        .collect();
    assert_eq!(texts.len(), LINES + 1, "every line once");
    assert!(texts[..LINES] == want[..], "the lines in order, exactly as sent");

    c.command("/quit");
    c.wait_exit(WAIT);
    let log = std::fs::read_to_string(c.dir().join("127.0.0.1/conversation.log")).unwrap();
    let logged: Vec<&str> = log.lines().collect();
    assert_eq!(logged.len(), LINES + 1, "every line logged once");
    for (i, line) in logged[..LINES].iter().enumerate() {
        let (ts, rest) = line.split_once(' ').unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{line}");
        // Escaped for a terminal in the log: the tab and ESC as \t and \x1b.
        assert_eq!(
            rest,
            format!("in  {i:05} temp=21.5 \u{e9}\\t\\x1b[1mok"),
            "{line}"
        );
    }
}
