//! Hostile and broken devices: escape sequences, floods of garbage, and a console
//! that must stay up and idle afterwards.

mod common;

use std::thread;
use std::time::Duration;

use common::{Console, Device, Rng, WAIT, WAIT_FILE, walk};

/// OSC title change, BEL, clear screen, a CSI introducer in C1 form, bidi override.
const HOSTILE: &[u8] = b"\x1b]0;owned\x07\x1b[2J\x1b[31mred\xc2\x9bq \xe2\x80\xaeevil";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn human_output_never_carries_a_device_escape_sequence() {
    let mut c = Console::start_human(&["--auto-delay-ms", "100"]);
    // A lines device...
    let mut l = Device::connect(c.addr());
    let mut line = HOSTILE.to_vec();
    line.extend_from_slice(b"\r\n");
    l.send(&line);
    // ...a partial line flushed after idle...
    l.send(b"\x1b[5mblink");
    // ...and a cf device saying the same as a command and as text.
    let mut f = Device::connect_cf(c.addr(), b"hello client");
    let mut cmd = b"c".to_vec();
    cmd.extend_from_slice(HOSTILE);
    f.send_alone(&cmd);
    f.send_alone(HOSTILE);
    c.send("/to 127.0.0.1");
    c.send("\x1b[2Jfrom the operator");
    c.wait_for(
        |e| {
            e.as_str()
                .is_some_and(|l| l.contains("owned") && l.contains("127.0.0.1#2"))
        },
        WAIT,
    );
    c.wait_for(|e| e.as_str().is_some_and(|l| l.contains("blink")), WAIT);
    c.wait_for(
        |e| {
            e.as_str()
                .is_some_and(|l| l.contains("-> 127.0.0.1: \\x1b[2Jfrom"))
        },
        WAIT,
    );
    drop(l);
    drop(f);
    c.wait_for(
        |e| e.as_str().is_some_and(|l| l.contains("127.0.0.1#2 disconnected")),
        WAIT,
    );
    let raw = c.stdout_raw();
    let text = String::from_utf8(raw.clone()).expect("human output is UTF-8");
    for (i, ch) in text.char_indices() {
        assert!(
            ch == '\n' || !ch.is_control(),
            "control character {ch:?} at byte {i} of stdout:\n{text}"
        );
    }
    assert!(!contains(&raw, b"\xe2\x80\xae"), "bidi override reached stdout");
    assert!(text.contains("\\x1b]0;owned"), "{text}");
    assert!(text.contains("\\x1b[5mblink"), "{text}");
}

#[test]
fn json_output_keeps_the_device_text_exact() {
    let mut c = Console::start(&[]);
    let mut l = Device::connect(c.addr());
    let mut line = HOSTILE.to_vec();
    line.push(b'\n');
    l.send(&line);
    let want = String::from_utf8(HOSTILE.to_vec()).unwrap();
    let ev = c.wait_text_in(&want);
    assert_eq!(ev["text"].as_str().unwrap().as_bytes(), HOSTILE);
    // The JSON lines themselves hold no raw ESC/BEL: serde escapes them.
    let raw = c.stdout_raw();
    assert!(!raw.contains(&0x1b) && !raw.contains(&0x07));
    // The conversation log is for people: escaped there too.
    drop(l);
    c.wait_event("disconnected", &[]);
    c.command("/quit");
    c.wait_exit(WAIT);
    let log = std::fs::read(c.dir().join("127.0.0.1/conversation.log")).unwrap();
    assert!(
        !log.contains(&0x1b) && !log.contains(&0x07),
        "{}",
        String::from_utf8_lossy(&log)
    );
    assert!(String::from_utf8_lossy(&log).contains("\\x1b]0;owned"));
}

/// After a flood, the console still serves a new device, then goes idle.
fn still_serves_and_idles(c: &mut Console) {
    c.wait_no_devices();
    let mut fresh = Device::connect(c.addr());
    fresh.send(b"are you alive?\n");
    c.wait_text_in("are you alive?");
    c.command("yes");
    assert_eq!(fresh.read_exact_within(5, WAIT), b"yes\r\n");
    drop(fresh);
    // Every device is gone: the console should sleep.
    c.wait_no_devices();
    thread::sleep(Duration::from_millis(300));
    let before = c.cpu_ticks();
    thread::sleep(Duration::from_secs(1));
    let after = c.cpu_ticks();
    // 100 ticks = one core fully busy; an idle console uses ~0.
    assert!(
        after - before < 20,
        "idle console used {} ticks in 1 s",
        after - before
    );
}

#[test]
fn a_line_device_flooding_garbage_does_not_take_the_listener_down() {
    let mut c = Console::start(&[]);
    let mut flood = Device::connect(c.addr());
    let mut garbage = b"x".to_vec();
    garbage.extend(Rng::new(21).bytes(1 << 20));
    // Also one overlong line with no newline at all.
    garbage.extend(std::iter::repeat_n(b'A', 200 * 1024));
    flood.send_chunked(&garbage, 7919);
    drop(flood);
    c.wait_event_within("disconnected", &[], WAIT_FILE);
    // Every byte was accounted for in text events (64 KiB cap per line).
    for e in c.events_of("text") {
        assert!(e["text"].as_str().unwrap().len() <= 4 * 64 * 1024);
    }
    still_serves_and_idles(&mut c);
}

#[test]
fn a_cf_device_flooding_garbage_does_not_take_the_listener_down() {
    let mut c = Console::start(&["--auto-delay-ms", "100"]);
    let mut flood = Device::connect_cf(c.addr(), b"hello client");
    let mut garbage = b"x".to_vec();
    garbage.extend(Rng::new(22).bytes(1 << 20));
    flood.send_chunked(&garbage, 4093);
    drop(flood);
    c.wait_event_within("disconnected", &[], WAIT_FILE);
    still_serves_and_idles(&mut c);
}

#[test]
fn an_abandoned_file_and_a_silent_connection_leave_the_console_idle() {
    let mut c = Console::start(&["--auto-delay-ms", "100"]);
    // A device that starts a file and vanishes halfway through it.
    let mut f = Device::connect_cf(c.addr(), b"hello client");
    f.send_alone(b"f");
    f.send(&common::bmp(200, 200, 23)[..50_000]);
    drop(f);
    let failed = c.wait_event_within("file_failed", &[], WAIT_FILE);
    assert!(failed["part"].is_string(), "{failed}");
    // A device that connects and says nothing, then leaves before the auto delay.
    let silent = Device::connect(c.addr());
    drop(silent);
    still_serves_and_idles(&mut c);
    assert!(
        walk(c.dir())
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".part"))
    );
}
