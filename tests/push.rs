//! `/push`: files from the console to native-frames devices, mirroring the
//! upload rules: FILE_BEGIN with RESUME, data within the device's window,
//! repair by rewind, resume after a reconnect, SAVED after the device checked
//! the CRC. Against `benchlink device` and against a device played by hand.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use benchlink::protocol::frames::{AckStatus, Message};
use common::dev::Dev;
use common::{Console, WAIT, WAIT_FILE};
use serde_json::json;

fn random(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

struct Simulator(Child);

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn simulator(c: &Console, id: &str, dir: &std::path::Path, window: Option<&str>) -> Simulator {
    let mut cmd = Command::new(common::bin());
    cmd.args(["device", "--to", &c.addr().to_string(), "--id", id, "--dir"])
        .arg(dir);
    if let Some(w) = window {
        cmd.args(["--window", w]);
    }
    Simulator(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
}

#[test]
fn the_simulator_receives_a_pushed_file_byte_identical() {
    let mut c = Console::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let _sim = simulator(&c, "cam", dir.path(), Some("64KiB"));
    c.wait_event("connected", &[("device", json!("cam"))]);
    let src = tempfile::tempdir().unwrap();
    let data = random(700_000, 3);
    let path = src.path().join("config.bin");
    std::fs::write(&path, &data).unwrap();
    let reply = c.command(&format!("/push {}", path.display()));
    assert_eq!(reply["ok"], true, "{reply}");
    let started = c.wait_event("file_push_started", &[("name", json!("config.bin"))]);
    assert_eq!(
        (started["size"].as_u64(), started["via"].as_str()),
        (Some(700_000), Some("frames"))
    );
    let pushed = c.wait_event_within("file_pushed", &[("name", json!("config.bin"))], WAIT_FILE);
    assert_eq!(pushed["size"], 700_000);
    assert_eq!(std::fs::read(dir.path().join("config.bin")).unwrap(), data);
    // Again under another name, and the first is never overwritten.
    let reply = c.command(&format!("/push {} config.bin", path.display()));
    assert_eq!(reply["ok"], true, "{reply}");
    c.wait_event_within("file_pushed", &[("name", json!("config.bin"))], WAIT_FILE);
    assert_eq!(std::fs::read(dir.path().join("config (2).bin")).unwrap(), data);
}

#[test]
fn push_at_all_reaches_every_frames_device_and_says_who_not() {
    let mut c = Console::start(&[]);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let _sa = simulator(&c, "cam-a", a.path(), None);
    let _sb = simulator(&c, "cam-b", b.path(), None);
    c.wait_event("connected", &[("device", json!("cam-a"))]);
    c.wait_event("connected", &[("device", json!("cam-b"))]);
    let mut text = std::net::TcpStream::connect(c.addr()).unwrap();
    std::io::Write::write_all(&mut text, b"a text board\n").unwrap();
    c.wait_event("connected", &[("protocol", json!("lines"))]);
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("pattern.bin");
    let data = random(50_000, 9);
    std::fs::write(&path, &data).unwrap();
    let reply = c.command(&format!("/push {} @all", path.display()));
    assert_eq!(reply["ok"], true, "{reply}");
    let said = reply["text"].as_str().unwrap();
    assert!(said.contains("cam-a") && said.contains("cam-b"), "{said}");
    for device in ["cam-a", "cam-b"] {
        c.wait_event_within("file_pushed", &[("device", json!(device))], WAIT_FILE);
    }
    assert_eq!(std::fs::read(a.path().join("pattern.bin")).unwrap(), data);
    assert_eq!(std::fs::read(b.path().join("pattern.bin")).unwrap(), data);
    // A list; a lines device is told apart.
    let reply = c.command(&format!("/push {} @cam-a,127.0.0.1,nobody", path.display()));
    let said = reply["text"].as_str().unwrap();
    assert!(said.contains("pushing pattern.bin"), "{said}");
    assert!(said.contains("127.0.0.1 (it speaks lines: use /sz)"), "{said}");
    assert!(said.contains("nobody (no such device)"), "{said}");
}

/// The device side played by hand: its window is kept, a gap it reports is
/// rewound, and a push cut by a disconnect resumes from what it held when it
/// comes back.
#[test]
fn a_push_keeps_the_window_repairs_a_gap_and_resumes_after_a_reconnect() {
    let mut c = Console::start(&[]);
    let data = random(200_000, 5);
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("fw.bin");
    std::fs::write(&path, &data).unwrap();

    let mut d = Dev::connect(c.addr());
    d.hello("board", &[("window", "20000"), ("max_frame", "4108")]);
    c.wait_event("connected", &[("device", json!("board"))]);
    c.command(&format!("/push {}", path.display()));
    let Message::FileBegin {
        file_id,
        size,
        name,
        resume,
    } = d.recv(WAIT)
    else {
        panic!("FILE_BEGIN first")
    };
    assert_eq!((size, name.as_str(), resume), (Some(200_000), "fw.bin", true));
    d.send(&Message::FileAck {
        file_id,
        status: AckStatus::Resume,
        value: 0,
        detail: String::new(),
    });
    // The console sends no more than the window ahead of what the device acknowledged.
    let mut held = Vec::new();
    let deadline = Instant::now() + WAIT;
    while held.len() < 20_000 {
        assert!(Instant::now() < deadline, "only {} bytes came", held.len());
        match d.recv(WAIT) {
            Message::FileData {
                offset, data: chunk, ..
            } => {
                assert_eq!(offset as usize, held.len());
                assert!(chunk.len() <= 4096, "max_frame kept: {}", chunk.len());
                held.extend_from_slice(&chunk);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(held.len(), 20_000, "exactly the window");
    assert!(
        d.sync_within(Duration::from_millis(300)).is_empty(),
        "then it waits"
    );
    // A gap: the device lost from 12000 on and asks for it again.
    held.truncate(12_000);
    d.send(&Message::FileAck {
        file_id,
        status: AckStatus::Resume,
        value: 12_000,
        detail: "gap".into(),
    });
    while held.len() < 32_000 {
        match d.recv(WAIT) {
            Message::FileData {
                offset, data: chunk, ..
            } => {
                assert_eq!(offset as usize, held.len(), "rewound to the gap");
                held.extend_from_slice(&chunk);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(&held[..], &data[..32_000]);
    // The link drops with 32000 bytes held.
    drop(d);
    let failed = c.wait_event("file_push_failed", &[("name", json!("fw.bin"))]);
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("sent again when it is back"),
        "{failed}"
    );

    // Back: the console starts the push again and the device resumes at 32000.
    let mut d = Dev::connect(c.addr());
    d.hello("board", &[("max_frame", "65548")]);
    let Message::FileBegin {
        file_id,
        resume: true,
        ..
    } = d.recv(WAIT)
    else {
        panic!("FILE_BEGIN again")
    };
    d.send(&Message::FileAck {
        file_id,
        status: AckStatus::Resume,
        value: 32_000,
        detail: String::new(),
    });
    let crc = loop {
        match d.recv(WAIT_FILE) {
            Message::FileData {
                offset, data: chunk, ..
            } => {
                assert_eq!(offset as usize, held.len());
                held.extend_from_slice(&chunk);
            }
            Message::FileEnd { crc32, .. } => break crc32,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(held, data);
    assert_eq!(crc, crc32fast::hash(&data));
    d.send(&Message::FileAck {
        file_id,
        status: AckStatus::Saved,
        value: 200_000,
        detail: "fw.bin".into(),
    });
    c.wait_event("file_pushed", &[("name", json!("fw.bin"))]);
}

#[test]
fn a_device_that_does_not_answer_fails_the_push_and_lines_devices_are_refused() {
    let mut c = Console::start(&[]);
    let mut d = Dev::connect(c.addr());
    d.hello("old-firmware", &[]);
    c.wait_event("connected", &[("device", json!("old-firmware"))]);
    let src = tempfile::tempdir().unwrap();
    let path: PathBuf = src.path().join("x.bin");
    std::fs::write(&path, b"hello").unwrap();
    c.command(&format!("/push {}", path.display()));
    let failed = c.wait_event_within(
        "file_push_failed",
        &[("name", json!("x.bin"))],
        Duration::from_secs(15),
    );
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("did not answer FILE_BEGIN"),
        "{failed}"
    );
}
