//! A person at a shell: `printf ... | nc -N 127.0.0.1 PORT` (netcat-openbsd). nc
//! speaks first, so the console treats it as a text-line device. Needs nc: a loud
//! skip locally when missing, a failure under CI=true.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Console, WAIT, require_tool};

/// `-N` (netcat-openbsd: shut the socket down after stdin's EOF), or `-q1` for
/// builds without it.
fn eof_flag(nc: &std::path::Path) -> &'static str {
    let help = Command::new(nc).arg("-h").output().unwrap();
    let text = String::from_utf8_lossy(&help.stderr).into_owned() + &String::from_utf8_lossy(&help.stdout);
    if text.lines().any(|l| l.trim_start().starts_with("-N")) {
        "-N"
    } else {
        "-q1"
    }
}

#[test]
fn lines_piped_through_nc_appear_as_text() {
    let Some(nc) = require_tool("nc") else { return };
    let mut c = Console::start(&[]);
    let port = c.addr().port().to_string();
    let mut child = Command::new(&nc)
        .args([eof_flag(&nc), "127.0.0.1", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"status?\r\nled on\nbye")
        .unwrap();
    let conn = c.wait_event("connected", &[]);
    assert_eq!(conn["protocol"], "lines", "{conn}");
    assert_eq!(conn["device"], "127.0.0.1");
    for t in ["status?", "led on", "bye"] {
        let ev = c.wait_text_in(t);
        assert_eq!(ev["conn"], conn["conn"]);
    }
    // stdin closed: nc half-closes and the console sees the device leave... unless
    // this nc waits for the peer; kick it, which also ends nc.
    if c.try_wait_for(
        |e| e["event"] == "disconnected" && e["conn"] == conn["conn"],
        Duration::from_millis(500),
    )
    .is_none()
    {
        c.command(&format!("/kick {}", conn["conn"]));
        c.wait_event("disconnected", &[("conn", conn["conn"].clone())]);
    }
    let out = common::output_within(child, WAIT, "nc");
    // No greeting reached nc: it spoke first.
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("hello client"),
        "{out:?}"
    );
}

#[test]
fn operator_lines_reach_nc_with_crlf() {
    let Some(nc) = require_tool("nc") else { return };
    let mut c = Console::start(&[]);
    let port = c.addr().port().to_string();
    let mut child = Command::new(&nc)
        .args(["127.0.0.1", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"ready\n").unwrap();
    stdin.flush().unwrap();
    let conn = c.wait_event("connected", &[]);
    c.wait_text_in("ready");
    c.command("blink 3");
    c.wait_event("text", &[("direction", "out".into()), ("text", "blink 3".into())]);
    std::thread::sleep(Duration::from_millis(200));
    c.command(&format!("/kick {}", conn["conn"]));
    c.wait_event("disconnected", &[("conn", conn["conn"].clone())]);
    drop(stdin);
    let out = common::output_within(child, WAIT, "nc");
    assert_eq!(out.stdout, b"blink 3\r\n", "{out:?}");
}
