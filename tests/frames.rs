//! The native frame protocol end to end, over loopback TCP against the real binary:
//! HELLO/WELCOME and naming, TEXT both ways, files (saved, numbered, hostile names,
//! interleaved), gap repair, CRC and size failures, resume (across a reconnect and a
//! console restart), the token, oversize frames, PING/BYE, many devices at once, and
//! the built-in `benchlink send` and `benchlink device`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use benchlink::protocol::frames::{
    AckStatus, ERR_AUTH, ERR_OVERSIZE, HEADER_LEN, KIND_TEXT, Message, encode_frame, refused,
};
use bytes::{Bytes, BytesMut};
use common::dev::{Ack, Dev, as_ack, damaged, wire};
use common::{Console, Rng, WAIT, WAIT_FILE, bmp, run_to_exit, walk};
use serde_json::{Value, json};

/// An auto listener whose auto delay never runs out during a test: a raw device that
/// is slow to speak on a busy machine is never greeted as a silent cf device.
const PATIENT: &[&str] = &["--auto-delay-ms", "10000"];

// ---------------------------------------------------------------------------------
// A raw frame device: TcpStream + FrameDecoder + BytesMut.
// ---------------------------------------------------------------------------------

fn kv<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn acks(messages: &[Message]) -> Vec<Ack> {
    messages.iter().filter_map(as_ack).collect()
}

/// Checks a SAVED ack and its `file_saved` event against the bytes sent; returns the
/// saved path.
fn check_saved(c: &mut Console, ack: &Ack, device: &str, data: &[u8]) -> PathBuf {
    assert_eq!(ack.status, AckStatus::Saved, "{ack:?}");
    assert_eq!(ack.value, data.len() as u64, "{ack:?}");
    assert!(
        ack.detail.starts_with(&format!("{device}/")),
        "SAVED detail {:?} is not relative to --dir under {device}/",
        ack.detail
    );
    let path = c.dir().join(&ack.detail);
    let shown = path.display().to_string();
    let ev = c.wait_event_within("file_saved", &[("path", shown.into())], WAIT_FILE);
    assert_eq!(ev["device"], device, "{ev}");
    assert_eq!(ev["size"], data.len() as u64, "{ev}");
    assert_eq!(ev["crc32"], u64::from(crc32fast::hash(data)), "{ev}");
    assert_eq!(ev["ended_by_close"], false, "{ev}");
    assert_eq!(
        ev["name"].as_str().unwrap(),
        path.file_name().unwrap().to_str().unwrap(),
        "{ev}"
    );
    assert!(Path::new(ev["path"].as_str().unwrap()).is_absolute(), "{ev}");
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk.len(), data.len(), "size on disk of {}", path.display());
    assert!(on_disk == data, "{} differs from the bytes sent", path.display());
    path
}

/// `.part` files and their sidecars under `dir`.
/// Everything in --dir but the history file and lock the console creates at start.
fn written_by_devices(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| !p.ends_with("received.jsonl") && !p.ends_with(".benchlink.lock"))
        .collect()
}

fn leftovers(dir: &Path) -> Vec<PathBuf> {
    if !dir.exists() {
        return Vec::new();
    }
    walk(dir)
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".part") || n.ends_with(".meta")
        })
        .collect()
}

/// Waits until no live device is called `name` (a session is removed from the
/// registry just after its `disconnected` event).
fn wait_name_free(c: &mut Console, name: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = c.command("/list");
        let taken = reply["devices"]
            .as_array()
            .is_some_and(|ds| ds.iter().any(|d| d["device"] == name));
        if !taken {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is still listed: {reply}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn no_event(c: &mut Console, kind: &str, within: Duration) -> Option<Value> {
    c.try_wait_for(|e| e["event"] == kind, within)
}

/// Reads raw bytes until the console closes; `None` if it is still open after `timeout`.
fn read_to_close(stream: &mut TcpStream, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(got),
        }
    }
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------
// HELLO, naming, TEXT
// ---------------------------------------------------------------------------------

#[test]
fn hello_is_welcomed_and_names_the_device_with_a_number_while_the_name_is_live() {
    let mut c = Console::start(PATIENT);
    let mut a = Dev::connect(c.addr());
    let welcome = a.hello("dev-01", &[("fw", "1.4.2")]);
    let server = kv(&welcome, "server").expect("WELCOME has server");
    assert!(server.starts_with("benchlink "), "{welcome:?}");
    assert_eq!(kv(&welcome, "max_frame"), Some("1048576"), "{welcome:?}");
    assert_eq!(kv(&welcome, "name"), Some("dev-01"), "{welcome:?}");
    let ev = c.wait_event("connected", &[("peer", a.local().to_string().into())]);
    assert_eq!(ev["device"], "dev-01", "{ev}");
    assert_eq!(ev["protocol"], "frames", "{ev}");

    // 1.1: the same id while dev-01 is live takes the name over (the board came
    // back before the console noticed its old link was gone).
    let mut b = Dev::connect(c.addr());
    let welcome = b.hello("dev-01", &[]);
    assert_eq!(kv(&welcome, "name"), Some("dev-01"), "{welcome:?}");
    assert!(bye_then_close(&mut a).starts_with("replaced by a new connection from "));
    let ev = c.wait_event("connected", &[("peer", b.local().to_string().into())]);
    assert_eq!(ev["device"], "dev-01", "{ev}");
    b.send(&Message::Text("from b".into()));
    assert_eq!(c.wait_text_in("from b")["device"], "dev-01");

    // `#n` is left for HELLOs without an id, named by their address like cf and lines.
    let mut x = Dev::connect(c.addr());
    let welcome = x.hello("", &[]);
    let ip = x.local().ip().to_string();
    assert_eq!(kv(&welcome, "name"), Some(ip.as_str()), "{welcome:?}");
    let mut y = Dev::connect(c.addr());
    let welcome = y.hello("", &[]);
    assert_eq!(
        kv(&welcome, "name"),
        Some(format!("{ip}#2").as_str()),
        "{welcome:?}"
    );

    // Once dev-01 has gone, its name is free again.
    b.send(&Message::Bye(String::new()));
    c.wait_event("disconnected", &[("device", "dev-01".into())]);
    wait_name_free(&mut c, "dev-01");
    let mut again = Dev::connect(c.addr());
    assert_eq!(kv(&again.hello("dev-01", &[]), "name"), Some("dev-01"));
}

#[test]
fn a_hostile_device_id_becomes_one_safe_folder_inside_dir() {
    let mut c = Console::start(PATIENT);
    for (i, id) in ["../../evil\u{1b}[2J", "..", "a/b/", "x\\..\\..\\y", "\u{7}"]
        .iter()
        .enumerate()
    {
        let mut d = Dev::connect(c.addr());
        let welcome = d.hello(id, &[]);
        let name = kv(&welcome, "name").unwrap().to_string();
        assert!(
            !name.is_empty()
                && name != ".."
                && !name.starts_with('.')
                && !name.contains(['/', '\\'])
                && !name.chars().any(char::is_control),
            "id {id:?} became the unsafe name {name:?}"
        );
        let ev = c.wait_event("connected", &[("peer", d.local().to_string().into())]);
        assert_eq!(ev["device"], name.as_str());
        let data = format!("file {i}").into_bytes();
        let ack = d.upload(1, "f.txt", &data);
        let path = check_saved(&mut c, &ack, &name, &data);
        assert_eq!(path.parent().unwrap().parent().unwrap(), c.dir());
    }
}

#[test]
fn a_device_without_hello_is_named_by_its_ip_at_its_first_frame() {
    let mut c = Console::start(&["--listen", "frames://127.0.0.1:0"]);
    let mut d = Dev::connect(c.addr());
    // Connected only at the first frame, not at the TCP connect.
    assert!(
        c.try_wait_for(|e| e["event"] == "connected", Duration::from_millis(400))
            .is_none(),
        "connected before any frame"
    );
    d.send(&Message::Text("boot ok".into()));
    let ev = c.wait_event("connected", &[("peer", d.local().to_string().into())]);
    assert_eq!(ev["device"], "127.0.0.1", "{ev}");
    assert_eq!(ev["protocol"], "frames", "{ev}");
    assert_eq!(c.wait_text_in("boot ok")["device"], "127.0.0.1");
    // No WELCOME for a device that never said HELLO, and a late HELLO does not rename it.
    assert!(d.sync().is_empty());
    d.send(&Message::Hello(vec![("id".into(), "late".into())]));
    d.send(&Message::Text("after hello".into()));
    assert_eq!(c.wait_text_in("after hello")["device"], "127.0.0.1");
}

#[test]
fn text_goes_both_ways() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("board", &[]);
    c.wait_event("connected", &[("device", "board".into())]);

    d.send(&Message::Text("temp=21.5 °C".into()));
    let ev = c.wait_text_in("temp=21.5 °C");
    assert_eq!(ev["device"], "board");
    // Invalid UTF-8 is shown as U+FFFD (docs/protocol.md, TEXT).
    let mut raw = BytesMut::new();
    encode_frame(KIND_TEXT, 0, b"ok\xff!", &mut raw);
    d.send_raw(&raw);
    c.wait_text_in("ok\u{fffd}!");

    c.send("reboot now");
    match d.recv(WAIT) {
        Message::Text(t) => assert_eq!(t, "reboot now"),
        other => panic!("expected TEXT, got {other:?}"),
    }
    let out = c.wait_event(
        "text",
        &[("direction", "out".into()), ("text", "reboot now".into())],
    );
    assert_eq!(out["device"], "board", "{out}");
    // A line starting with // sends a literal slash.
    c.send("//status");
    match d.recv(WAIT) {
        Message::Text(t) => assert_eq!(t, "/status"),
        other => panic!("expected TEXT, got {other:?}"),
    }
}

#[test]

fn a_long_text_is_cut_into_pieces_without_mangling_characters() {
    let mut c = Console::start(&["--max-line", "5", "--auto-delay-ms", "10000"]);
    let mut d = Dev::connect(c.addr());
    d.hello("utf", &[]);
    let text = "é".repeat(10); // 20 bytes, 2 per character
    d.send(&Message::Text(text.clone()));
    assert!(d.sync().is_empty());
    let mut pieces = Vec::new();
    while let Some(ev) = c.try_wait_for(
        |e| e["event"] == "text" && e["device"] == "utf" && e["direction"] == "in",
        Duration::from_millis(500),
    ) {
        pieces.push(ev["text"].as_str().unwrap().to_string());
    }
    assert!(pieces.len() > 1, "not cut at all: {pieces:?}");
    assert!(pieces.iter().all(|p| p.len() <= 5), "{pieces:?}");
    assert_eq!(pieces.concat(), text, "pieces {pieces:?}");
}

#[test]
fn a_file_is_acked_saved_with_its_relative_path_and_announced() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("dev-01", &[]);
    let ack = d.upload(1, "log.txt", b"hello world");
    assert_eq!(ack.file_id, 1);
    assert_eq!(ack.detail, "dev-01/log.txt");
    let path = check_saved(&mut c, &ack, "dev-01", b"hello world");
    assert_eq!(path, c.dir().join("dev-01").join("log.txt"));
    let started = c.wait_event("file_started", &[("name", "log.txt".into())]);
    assert_eq!(started["size"], 11);
    assert!(leftovers(c.dir()).is_empty(), "{:?}", leftovers(c.dir()));
    // received.jsonl records it (its writer runs on its own thread: poll).
    let manifest = c.dir().join("received.jsonl");
    let deadline = Instant::now() + WAIT;
    let record = loop {
        let text = std::fs::read_to_string(&manifest).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| r["name"] == "log.txt");
        if let Some(r) = found {
            break r;
        }
        assert!(Instant::now() < deadline, "no log.txt in {}", manifest.display());
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(record["device"], "dev-01", "{record}");
    assert_eq!(record["protocol"], "frames", "{record}");
    assert_eq!(record["size"], 11, "{record}");
    assert_eq!(record["crc32"], u64::from(crc32fast::hash(b"hello world")));
    assert_eq!(record["path"], path.display().to_string().as_str());
}

#[test]
fn a_multi_mib_file_is_saved_byte_identical() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("cam", &[]);
    let data = Rng::new(42).bytes(6 * 1024 * 1024 + 777);
    d.begin(1, Some(data.len() as u64), "big.bin", false);
    d.data_from(1, &data, 0, 1024 * 1024 - 12); // the largest FILE_DATA allowed
    d.end(1, crc32fast::hash(&data));
    let ack = d.ack(WAIT_FILE);
    check_saved(&mut c, &ack, "cam", &data);
    assert!(leftovers(c.dir()).is_empty());
}

#[test]
fn the_same_name_twice_is_numbered_not_overwritten() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("dev", &[]);
    let first = Rng::new(1).bytes(5000);
    let second = Rng::new(2).bytes(7000);
    let a1 = d.upload(1, "name.bin", &first);
    assert_eq!(a1.detail, "dev/name.bin");
    check_saved(&mut c, &a1, "dev", &first);
    let a2 = d.upload(2, "name.bin", &second);
    assert_eq!(a2.detail, "dev/name (1).bin");
    check_saved(&mut c, &a2, "dev", &second);
    // The first is untouched.
    assert!(std::fs::read(c.dir().join("dev/name.bin")).unwrap() == first);
}

#[test]
fn hostile_file_names_land_inside_dir() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("recv");
    let dir_arg = dir.display().to_string();
    let mut c = Console::start(&["--dir", &dir_arg, "--auto-delay-ms", "10000"]);
    let mut d = Dev::connect(c.addr());
    d.hello("dev", &[]);
    let long = format!("{}.bin", "y".repeat(1000));
    let names: Vec<&str> = vec![
        "../../x",
        "..",
        ".",
        "",
        "   ",
        "a/b/c.bin",
        "/etc/passwd",
        "..\\..\\win.ini",
        "bad\u{1}na\nme\u{1b}[2J.bin",
        &long,
        ".hidden",
        "sub/../../../up.bin",
    ];
    let mut saved = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let data = Rng::new(100 + i as u64).bytes(100 + i);
        let ack = d.upload(i as u32 + 1, name, &data);
        assert_eq!(ack.status, AckStatus::Saved, "{name:?}: {ack:?}");
        let parts: Vec<&str> = ack.detail.split('/').collect();
        assert_eq!(parts.len(), 2, "{name:?} saved as {:?}", ack.detail);
        let file = parts[1];
        assert!(
            !file.is_empty()
                && !file.starts_with('.')
                && !file.contains('\\')
                && !file.chars().any(char::is_control)
                && file.len() <= 255,
            "{name:?} saved as {file:?}"
        );
        let path = check_saved(&mut c, &ack, "dev", &data);
        assert_eq!(path.parent().unwrap(), dir.join("dev"));
        saved.push(path);
    }
    saved.sort();
    saved.dedup();
    assert_eq!(saved.len(), names.len(), "two names were saved to one file");
    // Nothing at all was written outside --dir.
    for p in walk(parent.path()) {
        assert!(p.starts_with(&dir), "{} was written outside --dir", p.display());
    }
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

#[test]
fn interleaved_files_are_told_apart_by_file_id() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("multi", &[]);
    let a = Rng::new(7).bytes(100 * 1024 + 3);
    let b = Rng::new(9).bytes(50 * 1024 + 1);
    let empty: Vec<u8> = Vec::new();
    d.begin(7, Some(a.len() as u64), "a.bin", false);
    d.begin(9, None, "b.bin", false); // unknown size: as long as the data
    d.begin(3, Some(0), "empty.bin", false);
    let chunk = 8 * 1024;
    let (mut oa, mut ob) = (0, 0);
    while oa < a.len() || ob < b.len() {
        if oa < a.len() {
            let n = chunk.min(a.len() - oa);
            d.data(7, oa as u64, &a[oa..oa + n]);
            oa += n;
        }
        if ob < b.len() {
            let n = (chunk / 2).min(b.len() - ob);
            d.data(9, ob as u64, &b[ob..ob + n]);
            ob += n;
        }
    }
    d.end(3, 0);
    d.end(9, crc32fast::hash(&b));
    d.end(7, crc32fast::hash(&a));
    let got: Vec<Ack> = (0..3).map(|_| d.ack(WAIT_FILE)).collect();
    let ids: Vec<u32> = got.iter().map(|a| a.file_id).collect();
    assert_eq!(ids, [3, 9, 7], "acks in FILE_END order: {got:?}");
    check_saved(&mut c, &got[0], "multi", &empty);
    check_saved(&mut c, &got[1], "multi", &b);
    check_saved(&mut c, &got[2], "multi", &a);
    assert_eq!(got[0].detail, "multi/empty.bin");
    assert_eq!(got[1].detail, "multi/b.bin");
    assert_eq!(got[2].detail, "multi/a.bin");
}

#[test]
fn a_damaged_frame_gets_one_resume_per_gap_and_the_rewound_file_is_identical() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("gappy", &[]);
    const K: usize = 4096;
    let data = Rng::new(5).bytes(16 * K);
    let frame = |i: usize| Message::FileData {
        file_id: 1,
        offset: (i * K) as u64,
        data: Bytes::copy_from_slice(&data[i * K..(i + 1) * K]),
    };
    // Junk at offsets past a gap: were it written anywhere, the file would differ.
    let junk = vec![0xEE; K];
    d.begin(1, Some(data.len() as u64), "gap.bin", false);
    for i in 0..3 {
        d.send(&frame(i));
    }
    d.send_raw(&damaged(&frame(3)));
    for i in 4..10 {
        d.data(1, (i * K) as u64, &junk);
    }
    let answered = acks(&d.sync());
    assert_eq!(answered.len(), 1, "exactly one FILE_ACK per gap: {answered:?}");
    assert_eq!(answered[0].file_id, 1);
    assert_eq!(answered[0].status, AckStatus::Resume, "{answered:?}");
    assert_eq!(answered[0].value, (3 * K) as u64, "rewind to the lost frame");

    // Rewind; a second gap later in the file gets its own RESUME.
    for i in 3..8 {
        d.send(&frame(i));
    }
    d.send_raw(&damaged(&frame(8)));
    for i in 9..12 {
        d.data(1, (i * K) as u64, &junk);
    }
    let answered = acks(&d.sync());
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert_eq!(answered[0].status, AckStatus::Resume);
    assert_eq!(answered[0].value, (8 * K) as u64);

    // Rewind again, starting with bytes the console already holds (junk here): they
    // overlap what it has and must not overwrite it.
    let mut overlap = vec![0xEE; 100];
    overlap.extend_from_slice(&data[8 * K..9 * K]);
    d.data(1, (8 * K - 100) as u64, &overlap);
    for i in 9..16 {
        d.send(&frame(i));
    }
    d.end(1, crc32fast::hash(&data));
    let ack = d.ack(WAIT);
    check_saved(&mut c, &ack, "gappy", &data);
    assert!(no_event(&mut c, "file_failed", Duration::from_millis(100)).is_none());
    // Counted for the metrics: two damaged frames, two rewinds asked for.
    drop(d);
    let gone = c.wait_event("disconnected", &[("device", json!("gappy"))]);
    assert_eq!(
        (gone["crc_errors"].as_u64(), gone["rewinds"].as_u64()),
        (Some(2), Some(2)),
        "{gone}"
    );
}

#[test]
fn file_end_with_bytes_missing_asks_for_a_repair_instead_of_failing() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("tail", &[]);
    let data = Rng::new(8).bytes(40 * 1024);
    let last = Message::FileData {
        file_id: 4,
        offset: 32 * 1024,
        data: Bytes::copy_from_slice(&data[32 * 1024..]),
    };
    d.begin(4, Some(data.len() as u64), "tail.bin", false);
    d.data_from(4, &data[..32 * 1024], 0, 8 * 1024);
    d.send_raw(&damaged(&last)); // the last frame is lost
    d.end(4, crc32fast::hash(&data));
    let ack = d.ack(WAIT);
    assert_eq!(ack.file_id, 4);
    assert_eq!(ack.status, AckStatus::Resume, "{ack:?}");
    assert_eq!(ack.value, 32 * 1024, "{ack:?}");
    assert!(
        no_event(&mut c, "file_failed", Duration::from_millis(200)).is_none(),
        "missing bytes at FILE_END failed the file"
    );
    d.send(&last);
    d.end(4, crc32fast::hash(&data));
    let ack = d.ack(WAIT);
    check_saved(&mut c, &ack, "tail", &data);
}

#[test]
fn a_wrong_file_crc_discards_the_file_and_the_connection_goes_on() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("crc", &[]);
    let data = Rng::new(3).bytes(30_000);
    let crc = crc32fast::hash(&data);
    d.begin(1, Some(data.len() as u64), "bad.bin", false);
    d.data_from(1, &data, 0, 10_000);
    d.end(1, crc ^ 0x0100_0000);
    let ack = d.ack(WAIT);
    assert_eq!(ack.file_id, 1);
    assert_eq!(ack.status, AckStatus::CrcMismatch, "{ack:?}");
    assert_eq!(ack.value, u64::from(crc), "value = the CRC the console computed");
    let failed = c.wait_event("file_failed", &[("name", "bad.bin".into())]);
    assert_eq!(failed["device"], "crc");
    assert!(no_event(&mut c, "file_saved", Duration::from_millis(100)).is_none());
    let folder = c.dir().join("crc");
    assert!(!folder.join("bad.bin").exists());
    assert!(leftovers(c.dir()).is_empty(), "{:?}", leftovers(c.dir()));

    let good = Rng::new(4).bytes(1234);
    let ack = d.upload(2, "good.bin", &good);
    check_saved(&mut c, &ack, "crc", &good);
    assert!(!folder.join("bad.bin").exists());
}

#[test]
fn more_data_than_announced_is_a_size_mismatch() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("over", &[]);
    let data = Rng::new(6).bytes(100);
    d.begin(1, Some(100), "over.bin", false);
    d.data(1, 0, &data);
    d.data(1, 100, b"0123456789");
    let ack = d.ack(WAIT);
    assert_eq!(ack.file_id, 1);
    assert_eq!(ack.status, AckStatus::SizeMismatch, "{ack:?}");
    assert_eq!(ack.value, 100, "value = the offset the console expected");
    c.wait_event("file_failed", &[("name", "over.bin".into())]);
    // The abandoned file_id's END is not saved; the connection still works.
    d.end(1, crc32fast::hash(&data));
    let after = acks(&d.sync());
    assert!(after.iter().all(|a| a.status != AckStatus::Saved), "{after:?}");
    assert!(!c.dir().join("over/over.bin").exists());
    let ack = d.upload(2, "next.bin", b"fine");
    check_saved(&mut c, &ack, "over", b"fine");
}

#[test]

fn size_mismatch_value_is_the_offset_the_console_expected() {
    let c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("over", &[]);
    d.begin(1, Some(10), "o.bin", false);
    d.data(1, 0, b"abcd");
    // 20 bytes at offset 4 overrun the announced 10; the console holds 4.
    d.data(1, 4, &[b'x'; 20]);
    let ack = d.ack(WAIT);
    assert_eq!(ack.status, AckStatus::SizeMismatch, "{ack:?}");
    assert_eq!(
        ack.value, 4,
        "docs: SIZE_MISMATCH value = offset the console expected (bytes it holds)"
    );
}

#[test]
fn a_file_larger_than_max_file_size_is_refused() {
    let mut c = Console::start(&["--max-file-size", "1KiB", "--auto-delay-ms", "10000"]);
    let mut d = Dev::connect(c.addr());
    d.hello("lim", &[]);
    d.begin(1, Some(4096), "big.bin", false);
    let ack = d.ack(WAIT);
    assert_eq!(ack.status, AckStatus::Refused, "{ack:?}");
    assert_eq!(ack.value, refused::TOO_LARGE, "{ack:?}");
    assert!(!ack.detail.is_empty());
    c.wait_event("file_failed", &[("name", "big.bin".into())]);
    // Its data is dropped quietly, its FILE_END gets the refusal again (1.1: every
    // FILE_END is answered), and the connection goes on.
    d.data(1, 0, &[1; 512]);
    d.end(1, 0);
    let again = acks(&d.sync());
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(
        (again[0].status, again[0].value),
        (AckStatus::Refused, refused::TOO_LARGE)
    );
    let ack = d.upload(2, "small.bin", &[2; 1000]);
    check_saved(&mut c, &ack, "lim", &[2; 1000]);
}

#[test]
fn refused_while_streaming_carries_the_too_large_code() {
    let c = Console::start(&["--max-file-size", "1KiB", "--auto-delay-ms", "10000"]);
    let mut d = Dev::connect(c.addr());
    d.hello("lim", &[]);
    d.begin(1, None, "grow.bin", false);
    d.data(1, 0, &[1; 1000]);
    d.data(1, 1000, &[1; 1000]);
    let ack = d.ack(WAIT);
    assert_eq!(ack.status, AckStatus::Refused, "{ack:?}");
    assert_eq!(ack.value, refused::TOO_LARGE, "docs: REFUSED value = reason code");
}

// ---------------------------------------------------------------------------------
// Resume
// ---------------------------------------------------------------------------------

/// Sends the first `half` bytes of `data` as a resumable upload that starts fresh.
fn upload_half(d: &mut Dev, name: &str, data: &[u8], half: usize) {
    d.begin(1, Some(data.len() as u64), name, true);
    let ack = d.ack(WAIT);
    assert_eq!(ack.status, AckStatus::Resume, "{ack:?}");
    assert_eq!(ack.value, 0, "a fresh name resumes from 0");
    d.data_from(1, &data[..half], 0, 50 * 1024);
    assert!(d.sync().is_empty()); // the console holds all of it now
}

/// Resumes `name` on a new connection and sends the rest; checks the console held `half`.
fn resume_rest(c: &mut Console, d: &mut Dev, device: &str, name: &str, data: &[u8], half: usize) {
    d.begin(5, Some(data.len() as u64), name, true);
    let ack = d.ack(WAIT);
    assert_eq!(ack.file_id, 5);
    assert_eq!(ack.status, AckStatus::Resume, "{ack:?}");
    assert_eq!(ack.value, half as u64, "resume offset = bytes held");
    d.data_from(5, data, half, 50 * 1024);
    d.end(5, crc32fast::hash(data));
    let ack = d.ack(WAIT_FILE);
    assert_eq!(ack.detail, format!("{device}/{name}"));
    check_saved(c, &ack, device, data);
    assert!(leftovers(c.dir()).is_empty(), "{:?}", leftovers(c.dir()));
}

#[test]
fn an_upload_cut_by_a_dropped_connection_resumes_on_the_next() {
    let mut c = Console::start(PATIENT);
    let data = Rng::new(11).bytes(600 * 1024 + 5);
    let half = 300 * 1024;
    {
        let mut d = Dev::connect(c.addr());
        d.hello("cam", &[]);
        upload_half(&mut d, "big.bin", &data, half);
    } // the connection drops
    let failed = c.wait_event("file_failed", &[("name", "big.bin".into())]);
    assert!(
        failed["reason"].as_str().unwrap().contains("interrupted"),
        "{failed}"
    );
    let part = PathBuf::from(failed["part"].as_str().expect("the .part is reported"));
    assert!(part.starts_with(c.dir()), "{}", part.display());
    let held = std::fs::read(&part).unwrap();
    assert!(held == data[..half], "the .part holds what arrived");
    c.wait_event("disconnected", &[("device", "cam".into())]);
    assert!(no_event(&mut c, "file_saved", Duration::from_millis(50)).is_none());
    wait_name_free(&mut c, "cam");

    let mut d = Dev::connect(c.addr());
    assert_eq!(kv(&d.hello("cam", &[]), "name"), Some("cam"));
    resume_rest(&mut c, &mut d, "cam", "big.bin", &data, half);
}

#[test]
fn an_upload_resumes_after_the_console_restarts_on_the_same_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("recv");
    let dir_arg = dir.display().to_string();
    let args = ["--dir", dir_arg.as_str(), "--auto-delay-ms", "10000"];
    let data = Rng::new(12).bytes(256 * 1024 + 9);
    let half = 100 * 1024 + 7;

    let mut first = Console::start(&args);
    let mut d = Dev::connect(first.addr());
    d.hello("cam", &[]);
    upload_half(&mut d, "img.bin", &data, half);
    first.send("/quit");
    let failed = first.wait_event("file_failed", &[("name", "img.bin".into())]);
    assert!(failed["part"].is_string(), "{failed}");
    assert!(first.wait_exit(Duration::from_secs(10)).success());
    drop(d);
    drop(first);

    let mut second = Console::start(&args);
    let mut d = Dev::connect(second.addr());
    d.hello("cam", &[]);
    resume_rest(&mut second, &mut d, "cam", "img.bin", &data, half);
}

#[test]
fn a_resume_with_another_size_starts_over_and_a_wrong_held_prefix_fails_the_crc() {
    let mut c = Console::start(PATIENT);
    let data = Rng::new(14).bytes(64 * 1024);
    let junk = vec![0x55; 32 * 1024];
    {
        // Leave a .part of "r.bin" whose first half is NOT the file's first half.
        let mut d = Dev::connect(c.addr());
        d.hello("res", &[]);
        let mut fake = junk.clone();
        fake.resize(data.len(), 0);
        upload_half(&mut d, "r.bin", &fake, junk.len());
    }
    c.wait_event("file_failed", &[("name", "r.bin".into())]);
    c.wait_event("disconnected", &[("device", "res".into())]);
    wait_name_free(&mut c, "res");

    let mut d = Dev::connect(c.addr());
    d.hello("res", &[]);
    // Another size: not the same upload, so nothing to continue.
    d.begin(1, Some(data.len() as u64 + 1), "r.bin", true);
    let ack = d.ack(WAIT);
    assert_eq!((ack.status, ack.value), (AckStatus::Resume, 0), "{ack:?}");
    d.end(1, 0); // abandon it (the console asks for the missing bytes)
    d.sync();

    // The same size: the console continues from what it holds, and the CRC-32 of
    // the whole file catches that the held half was different.
    d.begin(2, Some(data.len() as u64), "r.bin", true);
    let ack = d.ack(WAIT);
    assert_eq!(ack.status, AckStatus::Resume, "{ack:?}");
    assert_eq!(ack.value, junk.len() as u64, "{ack:?}");
    d.data_from(2, &data, junk.len(), 16 * 1024);
    d.end(2, crc32fast::hash(&data));
    let ack = d.ack(WAIT);
    assert_eq!(ack.status, AckStatus::CrcMismatch, "{ack:?}");
    // Part of the data came over an earlier connection: its CRC is not told.
    assert_eq!(ack.value, 0, "{ack:?}");
    assert!(ack.detail.contains("differ"), "{ack:?}");
    assert!(!c.dir().join("res/r.bin").exists());
}

#[test]
fn benchlink_send_resume_completes_a_partial_upload() {
    let mut c = Console::start(PATIENT);
    let data = Rng::new(15).bytes(400 * 1024 + 1);
    let half = 150 * 1024;
    {
        let mut d = Dev::connect(c.addr());
        d.hello("cam", &[]);
        upload_half(&mut d, "photo.raw", &data, half);
    }
    c.wait_event("file_failed", &[("name", "photo.raw".into())]);
    c.wait_event("disconnected", &[("device", "cam".into())]);
    wait_name_free(&mut c, "cam");

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("photo.raw");
    std::fs::write(&path, &data).unwrap();
    let addr = c.addr().to_string();
    let out = run_to_exit(
        &[
            "send",
            "--resume",
            "--to",
            &addr,
            "--id",
            "cam",
            path.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("saved photo.raw"), "{stdout}");
    let saved = c.dir().join("cam/photo.raw");
    c.wait_event_within(
        "file_saved",
        &[("path", saved.display().to_string().into())],
        WAIT_FILE,
    );
    assert!(std::fs::read(&saved).unwrap() == data);
    assert!(leftovers(c.dir()).is_empty(), "{:?}", leftovers(c.dir()));
}

// ---------------------------------------------------------------------------------
// Token, oversize, garbage, PING, BYE
// ---------------------------------------------------------------------------------

#[test]
fn a_token_console_refuses_frames_without_the_right_token_and_writes_nothing() {
    let mut c = Console::start(&["--token", "s3cret", "--auto-delay-ms", "10000"]);
    let file = b"should never be written";
    let mut tail = Vec::new();
    tail.extend(wire(&Message::FileBegin {
        file_id: 1,
        size: Some(file.len() as u64),
        name: "intruder.bin".into(),
        resume: false,
    }));
    tail.extend(wire(&Message::FileData {
        file_id: 1,
        offset: 0,
        data: Bytes::from_static(file),
    }));
    tail.extend(wire(&Message::FileEnd {
        file_id: 1,
        crc32: crc32fast::hash(file),
    }));
    tail.extend(wire(&Message::Text("let me in".into())));

    let hellos: Vec<Vec<(String, String)>> = vec![
        vec![("id".into(), "intruder".into())],
        vec![("id".into(), "intruder".into()), ("token".into(), "wrong".into())],
        vec![
            ("id".into(), "intruder".into()),
            ("token".into(), "s3cret2".into()),
        ],
        vec![("id".into(), "intruder".into()), ("token".into(), "".into())],
    ];
    let mut attempts: Vec<Vec<u8>> = hellos
        .into_iter()
        .map(|h| {
            let mut w = wire(&Message::Hello(h));
            w.extend_from_slice(&tail);
            w
        })
        .collect();
    // A device that skips HELLO altogether.
    attempts.push(tail.clone());

    for attempt in &attempts {
        let mut d = Dev::connect(c.addr());
        d.send_raw(attempt);
        let got = d.until_closed(WAIT);
        assert!(
            matches!(got.as_slice(), [Message::Error { code, .. }] if *code == ERR_AUTH),
            "expected one ERROR 3 then close, got {got:?}"
        );
    }
    // Refusals are reported once a second at most (the first one at once).
    let err = c.wait_for(
        |e| e["event"] == "error" && e["message"].as_str().unwrap_or("").contains("token"),
        WAIT,
    );
    assert!(err["message"].as_str().unwrap().contains("127.0.0.1:"), "{err}");
    assert!(no_event(&mut c, "connected", Duration::from_millis(100)).is_none());
    assert!(no_event(&mut c, "text", Duration::ZERO).is_none());
    assert!(no_event(&mut c, "file_started", Duration::ZERO).is_none());
    let written = written_by_devices(c.dir());
    assert!(written.is_empty(), "a refused device wrote {written:?}");

    let mut d = Dev::connect(c.addr());
    let welcome = d.hello("friend", &[("token", "s3cret")]);
    assert_eq!(kv(&welcome, "name"), Some("friend"));
    let ack = d.upload(1, "ok.bin", b"welcome");
    check_saved(&mut c, &ack, "friend", b"welcome");
}

#[test]
fn a_token_console_refuses_lines_and_silent_devices_on_an_auto_listener() {
    let mut c = Console::start(&["--token", "s3cret", "--auto-delay-ms", "100"]);
    let mut lines = TcpStream::connect(c.addr()).unwrap();
    let lines_peer = lines.local_addr().unwrap().to_string();
    lines.write_all(b"hello there\n").unwrap();
    let said = read_to_close(&mut lines, WAIT).expect("a lines device is disconnected");
    assert!(
        String::from_utf8_lossy(&said).contains("token"),
        "{:?}",
        String::from_utf8_lossy(&said)
    );
    let err = c.wait_for(
        |e| e["event"] == "error" && e["message"].as_str().is_some_and(|m| m.contains(&lines_peer)),
        WAIT,
    );
    assert!(err["message"].as_str().unwrap().contains("lines"), "{err}");

    let mut silent = TcpStream::connect(c.addr()).unwrap();
    let silent_peer = silent.local_addr().unwrap().to_string();
    let said = read_to_close(&mut silent, WAIT).expect("a silent device is disconnected");
    assert!(
        !String::from_utf8_lossy(&said).contains("hello client"),
        "a silent device was greeted as cf"
    );
    let err = c.wait_for(
        |e| e["event"] == "error" && e["message"].as_str().is_some_and(|m| m.contains(&silent_peer)),
        WAIT,
    );
    assert!(err["message"].as_str().unwrap().contains("cf"), "{err}");
    assert!(no_event(&mut c, "connected", Duration::from_millis(100)).is_none());
    assert!(no_event(&mut c, "text", Duration::ZERO).is_none());
}

#[test]
fn an_oversize_frame_closes_only_that_connection() {
    let mut c = Console::start(&["--max-frame", "1KiB", "--auto-delay-ms", "10000"]);
    let mut bystander = Dev::connect(c.addr());
    let welcome = bystander.hello("bystander", &[]);
    assert_eq!(kv(&welcome, "max_frame"), Some("1024"));

    let mut big = Dev::connect(c.addr());
    big.hello("big", &[]);
    big.send(&Message::Text("x".repeat(2048)));
    let got = big.until_closed(WAIT);
    assert!(
        matches!(got.as_slice(), [Message::Error { code, .. }] if *code == ERR_OVERSIZE),
        "expected one ERROR 1 then close, got {got:?}"
    );
    let gone = c.wait_event("disconnected", &[("device", "big".into())]);
    assert!(gone["reason"].as_str().unwrap().contains("max_frame"), "{gone}");

    // The header alone is enough: `len` is trusted once hcrc checks out.
    let mut header_only = Dev::connect(c.addr());
    header_only.hello("hdr", &[]);
    let w = wire(&Message::Text("z".repeat(4096)));
    header_only.send_raw(&w[..HEADER_LEN]);
    let got = header_only.until_closed(WAIT);
    assert!(
        matches!(got.as_slice(), [Message::Error { code, .. }] if *code == ERR_OVERSIZE),
        "{got:?}"
    );
    c.wait_event("disconnected", &[("device", "hdr".into())]);

    // The bystander was connected all along and still works; a frame of exactly
    // max_frame is fine.
    bystander.send(&Message::Text("still here".into()));
    assert_eq!(c.wait_text_in("still here")["device"], "bystander");
    let exactly = "y".repeat(1024);
    bystander.send(&Message::Text(exactly.clone()));
    assert_eq!(c.wait_text_in(&exactly)["device"], "bystander");
    assert!(bystander.sync().is_empty());
    assert!(
        c.events_of("text")
            .iter()
            .all(|e| e["device"] != "big" && e["device"] != "hdr"),
        "an oversize text was shown"
    );
}

#[test]
fn garbage_before_the_first_frame_is_skipped_on_a_frames_listener() {
    let mut c = Console::start(&["--listen", "frames://127.0.0.1:0"]);
    let mut d = Dev::connect(c.addr());
    let mut noise = b"\r\n\x00boot ROM v1 \xa5 \xa5\xa5\xff".to_vec();
    // A false magic whose header CRC is wrong, announcing a huge len: must cost one
    // byte of rescanning, not an oversize error nor a swallowed HELLO.
    let mut fake = [0xA5, 0x5A, KIND_TEXT, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0];
    let hcrc = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM).checksum(&fake[2..8]) ^ 0x0001;
    fake[8..10].copy_from_slice(&hcrc.to_le_bytes());
    noise.extend_from_slice(&fake);
    d.send_raw(&noise);
    let welcome = d.hello("noisy", &[]);
    assert_eq!(kv(&welcome, "name"), Some("noisy"));
    let ev = c.wait_event("connected", &[("peer", d.local().to_string().into())]);
    assert_eq!(ev["device"], "noisy");
    d.send(&Message::Text("clean now".into()));
    assert_eq!(c.wait_text_in("clean now")["device"], "noisy");
}

#[test]
fn malformed_payloads_get_error_2_and_unknown_types_are_ignored() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("odd", &[]);
    // FILE_BEGIN shorter than its 12 fixed bytes; FILE_END shorter than 8; a name
    // that is not UTF-8.
    let mut bad_name = vec![1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
    bad_name.extend_from_slice(b"\xff\xfe.bin");
    let frames: [(u8, &[u8]); 3] = [(0x20, &[1, 0, 0]), (0x22, &[1, 0, 0, 0, 9]), (0x20, &bad_name)];
    for (kind, payload) in frames {
        let mut raw = BytesMut::new();
        encode_frame(kind, 0, payload, &mut raw);
        d.send_raw(&raw);
        let got = d.sync();
        assert!(
            matches!(got.as_slice(), [Message::Error { code: 2, .. }]),
            "type {kind:#04x} with {} payload bytes: {got:?}",
            payload.len()
        );
    }
    // A type this version does not know is ignored, flags and all.
    let mut raw = BytesMut::new();
    encode_frame(0x55, 0xFF, b"from the future", &mut raw);
    d.send_raw(&raw);
    assert!(d.sync().is_empty());
    // Extra bytes after FILE_END's 8 are ignored.
    d.begin(1, Some(3), "x.bin", false);
    d.data(1, 0, b"abc");
    let mut end = 1u32.to_le_bytes().to_vec();
    end.extend_from_slice(&crc32fast::hash(b"abc").to_le_bytes());
    end.extend_from_slice(b"later fields");
    let mut raw = BytesMut::new();
    encode_frame(0x22, 0, &end, &mut raw);
    d.send_raw(&raw);
    let ack = d.ack(WAIT);
    check_saved(&mut c, &ack, "odd", b"abc");
    assert!(leftovers(c.dir()).is_empty(), "{:?}", leftovers(c.dir()));
}

#[test]
fn ping_is_answered_with_the_same_payload_and_bye_disconnects_with_its_reason() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("pinger", &[]);
    let payloads = [
        Bytes::from_static(&[0xA5, 0x5A, 0x00, 0x01, 0xFF]),
        Bytes::new(),
        Bytes::from(Rng::new(13).bytes(100 * 1024)),
    ];
    for p in payloads {
        d.send(&Message::Ping(p.clone()));
        match d.recv(WAIT) {
            Message::Pong(got) => assert!(got == p, "PONG differs ({} bytes)", got.len()),
            other => panic!("expected PONG, got {other:?}"),
        }
    }
    d.send(&Message::Bye("done for today".into()));
    let after = d.until_closed(WAIT);
    assert!(after.is_empty(), "{after:?}");
    let gone = c.wait_event("disconnected", &[("device", "pinger".into())]);
    assert!(
        gone["reason"].as_str().unwrap().contains("done for today"),
        "{gone}"
    );
}

// ---------------------------------------------------------------------------------
// Many devices
// ---------------------------------------------------------------------------------

#[test]
fn fifty_devices_at_once_each_send_a_text_and_a_file() {
    const N: usize = 50;
    let mut c = Console::start(PATIENT);
    let addr = c.addr();
    let barrier = Arc::new(Barrier::new(N));
    let workers: Vec<_> = (0..N)
        .map(|i| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut d = Dev::connect(addr);
                barrier.wait();
                let id = format!("dev-{i:02}");
                let welcome = d.hello(&id, &[]);
                assert_eq!(kv(&welcome, "name"), Some(id.as_str()));
                d.send(&Message::Text(format!("hello from {id}")));
                let data = Rng::new(1000 + i as u64).bytes(8 * 1024 + i * 37);
                let ack = d.upload(1, "reading.bin", &data);
                assert_eq!(ack.status, AckStatus::Saved, "{id}: {ack:?}");
                assert_eq!(ack.detail, format!("{id}/reading.bin"));
                d.send(&Message::Bye(String::new()));
                (id, data)
            })
        })
        .collect();
    let results: Vec<(String, Vec<u8>)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    for (id, data) in &results {
        let ev = c.wait_text_in(&format!("hello from {id}"));
        assert_eq!(ev["device"], id.as_str());
        let path = c.dir().join(id).join("reading.bin");
        let ev = c.wait_event_within(
            "file_saved",
            &[("path", path.display().to_string().into())],
            WAIT_FILE,
        );
        assert_eq!(ev["device"], id.as_str());
        assert!(std::fs::read(&path).unwrap() == *data, "{id}'s file differs");
    }
    assert_eq!(c.events_of("file_saved").len(), N);
    assert!(c.events_of("file_failed").is_empty());
}

// ---------------------------------------------------------------------------------
// `benchlink send` and `benchlink device`
// ---------------------------------------------------------------------------------

#[test]
fn benchlink_send_delivers_texts_and_files() {
    let mut c = Console::start(PATIENT);
    let tmp = tempfile::tempdir().unwrap();
    let big = Rng::new(21).bytes(1536 * 1024 + 11);
    let notes = b"line one\nline two\n".to_vec();
    let big_path = tmp.path().join("a.bin");
    let notes_path = tmp.path().join("notes.txt");
    std::fs::write(&big_path, &big).unwrap();
    std::fs::write(&notes_path, &notes).unwrap();
    let addr = c.addr().to_string();
    let out = run_to_exit(
        &[
            "send",
            "--to",
            &addr,
            "--id",
            "sender",
            "--text",
            "hi",
            big_path.to_str().unwrap(),
            notes_path.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("saved a.bin"), "{stdout}");
    assert!(stdout.contains("saved notes.txt"), "{stdout}");
    assert_eq!(c.wait_text_in("hi")["device"], "sender");
    for (name, data) in [("a.bin", &big), ("notes.txt", &notes)] {
        let path = c.dir().join("sender").join(name);
        let ev = c.wait_event_within(
            "file_saved",
            &[("path", path.display().to_string().into())],
            WAIT_FILE,
        );
        assert_eq!(ev["device"], "sender");
        assert!(std::fs::read(&path).unwrap() == *data, "{name} differs");
    }
    c.wait_event("disconnected", &[("device", "sender".into())]);
}

#[test]
fn benchlink_send_fails_when_the_console_refuses_it() {
    let mut c = Console::start(&["--token", "right", "--auto-delay-ms", "10000"]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f.bin");
    std::fs::write(&file, b"data").unwrap();
    let addr = c.addr().to_string();
    let file_arg = file.to_str().unwrap();
    for token in [Some("wrong"), None] {
        let mut args = vec!["send", "--to", &addr, "--id", "x"];
        if let Some(t) = token {
            args.extend(["--token", t]);
        }
        args.push(file_arg);
        let out = run_to_exit(&args, Duration::from_secs(20));
        assert!(
            !out.status.success(),
            "token {token:?}: exit 0 though refused\nstdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("saved f.bin"));
    }
    assert!(written_by_devices(c.dir()).is_empty(), "{:?}", walk(c.dir()));
    // The right token works.
    let out = run_to_exit(
        &["send", "--to", &addr, "--token", "right", "--id", "x", file_arg],
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.wait_event("file_saved", &[("device", "x".into())]);
}

#[test]
fn benchlink_send_cf_is_saved_by_an_auto_listener() {
    let mut c = Console::start(&["--auto-delay-ms", "100"]);
    let tmp = tempfile::tempdir().unwrap();
    let img = bmp(64, 48, 3);
    let path = tmp.path().join("pic.bmp");
    std::fs::write(&path, &img).unwrap();
    let addr = c.addr().to_string();
    let out = run_to_exit(
        &["send", "--protocol", "cf", "--to", &addr, path.to_str().unwrap()],
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let conn = c.wait_event("connected", &[]);
    assert_eq!(conn["protocol"], "cf", "{conn}");
    let ev = c.wait_event_within("file_saved", &[], WAIT_FILE);
    let saved = std::fs::read(ev["path"].as_str().unwrap()).unwrap();
    assert!(saved == img, "the cf file differs from pic.bmp");
}

#[test]
fn benchlink_device_answers_commands_and_captures_a_bmp() {
    let mut c = Console::start(PATIENT);
    let xdg = tempfile::tempdir().unwrap();
    let child = Command::new(common::bin())
        .args(["device", "--to", &c.addr().to_string(), "--id", "cam"])
        .env("XDG_CONFIG_HOME", xdg.path().join("config"))
        .env("XDG_DATA_HOME", xdg.path().join("data"))
        // Its captures are staged in the temp folder: keep them out of /tmp.
        .env("TMPDIR", xdg.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut device = KillOnDrop(child);
    let conn = c.wait_event_within("connected", &[("device", "cam".into())], WAIT_FILE);
    assert_eq!(conn["protocol"], "frames");
    c.wait_text_in("cam ready");

    c.send("ping");
    assert_eq!(c.wait_text_in("pong")["device"], "cam");

    c.send("capture");
    let ev = c.wait_event_within("file_saved", &[("device", "cam".into())], WAIT_FILE);
    let name = ev["name"].as_str().unwrap();
    assert!(name.ends_with(".bmp"), "{ev}");
    let bytes = std::fs::read(ev["path"].as_str().unwrap()).unwrap();
    assert_eq!(&bytes[..2], b"BM");
    let size_field = u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    assert_eq!(size_field as usize, bytes.len(), "BMP size field");
    assert_eq!(ev["size"], bytes.len() as u64);

    c.send("hello there");
    c.wait_text_in("ok: hello there");

    device.0.kill().unwrap();
    device.0.wait().unwrap();
    c.wait_event("disconnected", &[("device", "cam".into())]);
}

/// The review's scenarios: a rewound frame lost again, an unknown-size file with a
/// gap, too many open files, and names that collide with the console's own files.
#[test]
fn a_rewound_frame_lost_again_is_asked_for_again_at_file_end() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("noisy", &[]);
    const K: usize = 1024;
    let data = Rng::new(31).bytes(6 * K);
    let frame = |i: usize| Message::FileData {
        file_id: 1,
        offset: (i * K) as u64,
        data: Bytes::copy_from_slice(&data[i * K..(i + 1) * K]),
    };
    let crc = crc32fast::hash(&data);
    d.begin(1, Some(data.len() as u64), "noisy.bin", false);
    d.send(&frame(0));
    d.send_raw(&damaged(&frame(1)));
    d.send(&frame(2));
    let first = acks(&d.sync());
    assert_eq!(
        (first.len(), first[0].status, first[0].value),
        (1, AckStatus::Resume, K as u64)
    );
    // The rewind's first frame is damaged again; the rest and FILE_END follow.
    d.send_raw(&damaged(&frame(1)));
    for i in 2..6 {
        d.send(&frame(i));
    }
    d.end(1, crc);
    let again = acks(&d.sync());
    assert_eq!(
        again.len(),
        1,
        "FILE_END with bytes missing is always answered: {again:?}"
    );
    assert_eq!((again[0].status, again[0].value), (AckStatus::Resume, K as u64));
    for i in 1..6 {
        d.send(&frame(i));
    }
    d.end(1, crc);
    let ack = d.ack(WAIT);
    check_saved(&mut c, &ack, "noisy", &data);
}

#[test]
fn an_unknown_size_file_with_a_gap_is_repaired_not_failed() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("nosize", &[]);
    let data = Rng::new(32).bytes(3000);
    let frame = |from: usize, to: usize| Message::FileData {
        file_id: 1,
        offset: from as u64,
        data: Bytes::copy_from_slice(&data[from..to]),
    };
    d.begin(1, None, "stream.bin", false);
    d.send(&frame(0, 1000));
    d.send_raw(&damaged(&frame(1000, 2000)));
    d.send(&frame(2000, 3000));
    d.end(1, crc32fast::hash(&data));
    let answered = acks(&d.sync());
    assert!(
        answered.iter().all(|a| a.status == AckStatus::Resume),
        "{answered:?}"
    );
    assert!(answered.iter().any(|a| a.value == 1000), "{answered:?}");
    d.send(&frame(1000, 2000));
    d.send(&frame(2000, 3000));
    d.end(1, crc32fast::hash(&data));
    let ack = d.ack(WAIT);
    check_saved(&mut c, &ack, "nosize", &data);
}

#[test]
fn a_connection_may_hold_only_a_few_files_open() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("hog", &[]);
    for id in 1..=20u32 {
        d.begin(id, Some(10), &format!("f{id}.bin"), false);
    }
    let answered = acks(&d.sync());
    let refused: Vec<u32> = answered
        .iter()
        .filter(|a| a.status == AckStatus::Refused)
        .map(|a| a.file_id)
        .collect();
    assert_eq!(refused, (9..=20).collect::<Vec<_>>(), "{answered:?}");
    // An open one still completes.
    d.data(1, 0, b"0123456789");
    d.end(1, crc32fast::hash(b"0123456789"));
    let ack = d.ack(WAIT);
    check_saved(&mut c, &ack, "hog", b"0123456789");
}

#[test]
fn the_consoles_own_file_names_are_never_taken_by_devices() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("cam", &[]);
    let ack = d.upload(1, "conversation.log", b"DEVICE LOG");
    assert_eq!(ack.status, AckStatus::Saved, "{ack:?}");
    assert_eq!(ack.detail, "cam/conversation (1).log", "{ack:?}");
    d.send(&Message::Text("after the upload".into()));
    c.wait_event("text", &[("text", "after the upload".into())]);
    let saved = c.dir().join("cam/conversation (1).log");
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        b"DEVICE LOG",
        "the received file was appended to"
    );

    let mut m = Dev::connect(c.addr());
    let welcome = m.hello("received.jsonl", &[]);
    assert_eq!(kv(&welcome, "name"), Some("received.jsonl_"), "{welcome:?}");
    m.send(&Message::Text("hi".into()));
    c.wait_event("text", &[("device", "received.jsonl_".into())]);
    assert!(c.dir().join("received.jsonl").is_file());
}

// ---------------------------------------------------------------------------------
// Protocol 1.1: takeover, idempotent completion, BYE with a reason
// ---------------------------------------------------------------------------------

/// The BYE the console sends before it closes, and that it then closes.
fn bye_then_close(d: &mut Dev) -> String {
    let got = d.until_closed(WAIT);
    match got.as_slice() {
        [.., Message::Bye(reason)] => reason.clone(),
        other => panic!("expected BYE then a close, got {other:?}"),
    }
}

#[test]
fn a_board_that_reconnects_takes_over_its_half_open_connection_and_resumes() {
    let mut c = Console::start(PATIENT);
    let data = Rng::new(11).bytes(200_000);
    let mut old = Dev::connect(c.addr());
    old.hello("cam", &[]);
    old.send(&Message::Text("before the drop".into()));
    old.begin(1, Some(data.len() as u64), "big.bin", true);
    assert_eq!(old.ack(WAIT).value, 0);
    old.data_from(1, &data[..80_000], 0, 16 * 1024);
    old.sync();
    let old_conn = c.wait_event("connected", &[("device", "cam".into())])["conn"].clone();

    // The old link is half-open: it neither sends nor closes. The board is back.
    let mut new = Dev::connect(c.addr());
    let welcome = new.hello("cam", &[]);
    assert_eq!(kv(&welcome, "name"), Some("cam"), "{welcome:?}");
    let reason = bye_then_close(&mut old);
    assert_eq!(
        reason,
        format!("replaced by a new connection from {}", new.local())
    );
    let gone = c.wait_event("disconnected", &[("conn", old_conn)]);
    assert!(gone["reason"].as_str().unwrap().contains("replaced"), "{gone}");

    // Its resume finds the `.part` the old connection left.
    new.begin(1, Some(data.len() as u64), "big.bin", true);
    let ack = new.ack(WAIT);
    assert_eq!((ack.status, ack.value), (AckStatus::Resume, 80_000), "{ack:?}");
    new.data_from(1, &data, 80_000, 16 * 1024);
    new.end(1, crc32fast::hash(&data));
    let ack = new.ack(WAIT_FILE);
    check_saved(&mut c, &ack, "cam", &data);
    new.send(&Message::Text("after the drop".into()));
    c.wait_text_in("after the drop");
    assert!(leftovers(c.dir()).is_empty(), "{:?}", leftovers(c.dir()));
    assert_eq!(entries_named(&c.dir().join("cam"), "big"), ["big.bin"]);
    // One conversation, in one log (written by the journal thread just after the event).
    let deadline = Instant::now() + WAIT;
    loop {
        let log = std::fs::read_to_string(c.dir().join("cam/conversation.log")).unwrap();
        if log.contains("before the drop") && log.contains("after the drop") {
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn only_a_connection_with_the_token_can_take_over() {
    let mut c = Console::start(&["--token", "s3cret", "--auto-delay-ms", "10000"]);
    let mut owner = Dev::connect(c.addr());
    owner.hello("cam", &[("token", "s3cret")]);
    c.wait_event("connected", &[("device", "cam".into())]);
    let mut thief = Dev::connect(c.addr());
    thief.send(&Message::Hello(vec![
        ("id".into(), "cam".into()),
        ("token".into(), "guess".into()),
    ]));
    let got = thief.until_closed(WAIT);
    assert!(
        matches!(got.as_slice(), [Message::Error { code: ERR_AUTH, .. }]),
        "{got:?}"
    );
    // The owner is untouched and still answered.
    assert!(owner.sync().is_empty());
    let list = c.command("/list");
    assert_eq!(list["devices"][0]["device"], "cam", "{list}");
}

#[test]
fn a_repeated_file_end_is_answered_saved_again_with_one_file_on_disk() {
    let mut c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    d.hello("rep", &[]);
    let data = Rng::new(3).bytes(50_000);
    let ack = d.upload(1, "log.txt", &data);
    check_saved(&mut c, &ack, "rep", &data);
    // The SAVED was lost: the device asks again, twice.
    for _ in 0..2 {
        d.end(1, crc32fast::hash(&data));
        let again = d.ack(WAIT);
        assert_eq!(again, ack, "the same answer, the same path");
    }
    let written = written_by_devices(c.dir());
    assert_eq!(written, [c.dir().join("rep/log.txt")], "exactly one file on disk");
}

#[test]
fn a_resume_of_a_saved_file_is_answered_saved_without_a_second_copy_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().display().to_string();
    let args = ["--dir", dir_arg.as_str(), "--auto-delay-ms", "10000"];
    let data = Rng::new(5).bytes(70_000);
    let first_path = {
        let mut c = Console::start(&args);
        let mut d = Dev::connect(c.addr());
        d.hello("cam", &[]);
        let ack = d.upload(1, "photo.bin", &data);
        let path = check_saved(&mut c, &ack, "cam", &data);
        // Same connection, same name and size, RESUME: "I hold all of it".
        d.begin(2, Some(data.len() as u64), "photo.bin", true);
        let held = d.ack(WAIT);
        assert_eq!((held.status, held.value), (AckStatus::Resume, data.len() as u64));
        d.end(2, crc32fast::hash(&data));
        assert_eq!(
            d.ack(WAIT),
            Ack {
                file_id: 2,
                ..ack.clone()
            }
        );
        path
    };
    // A new run of the console on the same folder.
    let mut c = Console::start(&args);
    let mut d = Dev::connect(c.addr());
    d.hello("cam", &[]);
    d.begin(7, Some(data.len() as u64), "photo.bin", true);
    let held = d.ack(WAIT);
    assert_eq!((held.status, held.value), (AckStatus::Resume, data.len() as u64));
    d.end(7, crc32fast::hash(&data));
    let ack = d.ack(WAIT);
    assert_eq!(ack.status, AckStatus::Saved, "{ack:?}");
    assert_eq!(c.dir().join(&ack.detail), first_path);
    assert_eq!(entries_named(&c.dir().join("cam"), "photo"), ["photo.bin"]);
    assert!(no_event(&mut c, "file_saved", Duration::from_millis(300)).is_none());

    // Same name and size, other bytes: RESUME 0, and it is received as a new file.
    let other = Rng::new(6).bytes(data.len());
    d.begin(8, Some(other.len() as u64), "photo.bin", true);
    assert_eq!(d.ack(WAIT).value, other.len() as u64);
    d.end(8, crc32fast::hash(&other));
    let again = d.ack(WAIT);
    assert_eq!((again.status, again.value), (AckStatus::Resume, 0), "{again:?}");
    d.data_from(8, &other, 0, 16 * 1024);
    d.end(8, crc32fast::hash(&other));
    let ack = d.ack(WAIT_FILE);
    let path = check_saved(&mut c, &ack, "cam", &other);
    assert!(path.ends_with("cam/photo (1).bin"), "{}", path.display());
    assert_eq!(
        std::fs::read(&first_path).unwrap(),
        data,
        "the first file is untouched"
    );
}

#[test]
fn the_console_says_bye_with_a_reason_on_kick_and_on_quit() {
    let mut c = Console::start(PATIENT);
    let mut kicked = Dev::connect(c.addr());
    kicked.hello("k1", &[]);
    let mut stays = Dev::connect(c.addr());
    stays.hello("k2", &[]);
    c.wait_device_count(2);
    c.command("/kick k1");
    assert_eq!(bye_then_close(&mut kicked), "kicked by the operator");
    c.send("/quit");
    assert_eq!(bye_then_close(&mut stays), "console stopping");
    assert!(c.wait_exit(WAIT).success());
}

/// Names in `folder` that start with `stem`, sorted.
fn entries_named(folder: &Path, stem: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(stem))
        .collect();
    names.sort();
    names
}
