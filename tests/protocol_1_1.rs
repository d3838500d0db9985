//! Protocol 1.1 against the binary, first wave: a lost byte never stalls the
//! link, PROGRESS acks and a window that holds, `benchlink bridge` with and
//! without a window, late HELLO on an auto listener, WELCOME's protocol key.
//! (Takeover, idempotent completion and BYE are in frames.rs.)

mod common;

use std::time::{Duration, Instant};

use benchlink::protocol::frames::{AckStatus, HEADER_LEN, Message};
use bytes::Bytes;
use common::bridge::Bridge;
use common::dev::{Dev, wire};
use common::{Console, Rng, WAIT};

const PATIENT: &[&str] = &["--auto-delay-ms", "10000"];

fn file_data(file_id: u32, offset: u64, data: &[u8]) -> Vec<u8> {
    wire(&Message::FileData {
        file_id,
        offset,
        data: Bytes::copy_from_slice(data),
    })
}

#[test]
fn bytes_lost_inside_a_file_data_still_get_the_file_end_answered_within_a_second() {
    let c = Console::start(PATIENT);
    for lost in [1usize, 100] {
        let mut d = Dev::connect(c.addr());
        d.hello(&format!("lossy{lost}"), &[]);
        let data = Rng::new(lost as u64).bytes(200_000);
        d.begin(1, Some(data.len() as u64), "f.bin", false);
        let mut frame = file_data(1, 0, &data[..60_000]);
        frame.drain(HEADER_LEN + 500..HEADER_LEN + 500 + lost);
        d.send_raw(&frame);
        let started = Instant::now();
        d.end(1, crc32fast::hash(&data));
        let ack = d.ack(WAIT);
        let took = started.elapsed();
        eprintln!("{lost} byte(s) lost in a FILE_DATA: FILE_END answered in {took:?}: {ack:?}");
        assert_eq!((ack.status, ack.value), (AckStatus::Resume, 0), "{ack:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        // The repair completes the file.
        d.data_from(1, &data, 0, 50_000);
        d.end(1, crc32fast::hash(&data));
        let ack = d.ack(WAIT);
        assert_eq!(ack.status, AckStatus::Saved, "{ack:?}");
    }
}

fn kv<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn welcome_says_1_1_and_progress_comes_every_half_window() {
    let c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    let welcome = d.hello("flow", &[("window", "4096")]);
    assert_eq!(kv(&welcome, "protocol"), Some("1.1"), "{welcome:?}");
    let data = Rng::new(21).bytes(40_000);
    d.begin(1, Some(data.len() as u64), "w.bin", false);
    d.data_from(1, &data, 0, 1000);
    let got = d.sync();
    let progress: Vec<u64> = got
        .iter()
        .filter_map(|m| match m {
            Message::FileAck {
                status: AckStatus::Progress,
                value,
                ..
            } => Some(*value),
            _ => None,
        })
        .collect();
    eprintln!("PROGRESS values for 40,000 bytes in 1,000-byte frames, window 4096: {progress:?}");
    // Each time the held bytes grew by at least half the window (2048).
    let mut last = 0;
    for v in &progress {
        assert!(*v >= last + 2048, "{progress:?}");
        assert!(*v - last <= 2048 + 1000, "{progress:?}");
        last = *v;
    }
    assert!(last >= 40_000 - 2048, "{progress:?}");
    d.end(1, crc32fast::hash(&data));
    assert_eq!(d.ack(WAIT).status, AckStatus::Saved);

    // Without a window, no PROGRESS.
    let mut d = Dev::connect(c.addr());
    d.hello("noflow", &[]);
    d.begin(1, Some(data.len() as u64), "n.bin", false);
    d.data_from(1, &data, 0, 1000);
    assert!(d.sync().is_empty());
}

/// What a scripted console saw of `benchlink send`.
#[derive(Debug, Default)]
struct Seen {
    max_unacked: u64,
    file_ends: Vec<Instant>,
    bytes: u64,
}

/// A console that speaks 1.1, acknowledges with PROGRESS only after a delay (so
/// a device that ignores its window would run ahead), and ignores the first
/// FILE_END (so the device must send it again).
fn scripted_console() -> (std::net::SocketAddr, std::thread::JoinHandle<Seen>) {
    use benchlink::protocol::frames::{Decoded, FrameDecoder};
    use bytes::BytesMut;
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut dec = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut seen = Seen::default();
        let (mut window, mut acked, mut held) = (0u64, 0u64, 0u64);
        let mut tmp = vec![0u8; 64 * 1024];
        loop {
            while let Some(Decoded::Frame(f)) = dec.decode(&mut buf) {
                let reply = match Message::from_frame(f).unwrap() {
                    Message::Hello(pairs) => {
                        window = kv(&pairs, "window").and_then(|w| w.parse().ok()).unwrap_or(0);
                        Some(Message::Welcome(vec![
                            ("protocol".into(), "1.1".into()),
                            ("name".into(), "dev".into()),
                        ]))
                    }
                    Message::FileData { offset, data, .. } => {
                        held = held.max(offset + data.len() as u64);
                        seen.bytes += data.len() as u64;
                        seen.max_unacked = seen.max_unacked.max(held - acked);
                        if held - acked >= window / 2 {
                            std::thread::sleep(Duration::from_millis(5));
                            acked = held;
                            Some(Message::FileAck {
                                file_id: 1,
                                status: AckStatus::Progress,
                                value: held,
                                detail: String::new(),
                            })
                        } else {
                            None
                        }
                    }
                    Message::FileEnd { .. } => {
                        seen.file_ends.push(Instant::now());
                        (seen.file_ends.len() >= 2).then(|| Message::FileAck {
                            file_id: 1,
                            status: AckStatus::Saved,
                            value: held,
                            detail: "dev/x.bin".into(),
                        })
                    }
                    _ => None,
                };
                if let Some(m) = reply {
                    s.write_all(&wire(&m)).unwrap();
                }
            }
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return seen,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
    });
    (addr, handle)
}

#[test]
fn send_keeps_its_window_and_sends_file_end_again_when_unanswered() {
    let (addr, console) = scripted_console();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.bin");
    std::fs::write(&path, Rng::new(5).bytes(100_000)).unwrap();
    let out = common::run_to_exit(
        &[
            "send",
            "--to",
            &addr.to_string(),
            "--window",
            "3072",
            path.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    let seen = console.join().unwrap();
    eprintln!(
        "send --window 3072: at most {} bytes unacknowledged; FILE_END sent {} times, {:?} apart",
        seen.max_unacked,
        seen.file_ends.len(),
        seen.file_ends.get(1).map(|t| t.duration_since(seen.file_ends[0]))
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(seen.max_unacked <= 3072, "{seen:?}");
    assert_eq!(seen.bytes, 100_000);
    assert_eq!(seen.file_ends.len(), 2, "{seen:?}");
    let gap = seen.file_ends[1].duration_since(seen.file_ends[0]);
    assert!(
        gap >= Duration::from_millis(1900) && gap < Duration::from_secs(4),
        "{gap:?}"
    );
}

#[test]
fn through_a_bridge_that_stalls_a_window_loses_nothing_and_without_one_repair_copes() {
    let mut c = Console::start(PATIENT);
    let bridge = Bridge::start(
        c.addr(),
        &[
            "--rate", "4MB", "--buffer", "4096", "--stall", "100/300", "--json",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img.bin");
    let data = Rng::new(8).bytes(1 << 20);
    std::fs::write(&path, &data).unwrap();
    for (id, window) in [("windowed", Some("3072")), ("plain", None)] {
        let mut args = vec!["send", "--to", &bridge.addr, "--id", id];
        if let Some(w) = window {
            args.extend(["--window", w]);
        }
        args.push(path.to_str().unwrap());
        let started = Instant::now();
        let out = common::run_to_exit(&args, Duration::from_secs(150));
        let took = started.elapsed();
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{said} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let counters = bridge.counters();
        eprintln!("{id}: {took:?}, bridge {counters}, send: {}", said.trim());
        let saved = c.wait_event("file_saved", &[("device", id.into())]);
        assert_eq!(std::fs::read(saved["path"].as_str().unwrap()).unwrap(), data);
        if window.is_some() {
            assert_eq!(counters["dropped"], 0, "{counters}");
            assert!(!said.contains("rewinds"), "{said}");
        } else {
            assert!(counters["dropped"].as_u64().unwrap() > 0, "{counters}");
            assert!(said.contains("rewinds"), "{said}");
        }
    }
}

#[test]
fn a_board_that_speaks_frames_after_the_auto_delay_becomes_a_frames_device() {
    let mut c = Console::start(&["--auto-delay-ms", "100"]);
    let mut d = Dev::connect(c.addr());
    // The ESP8266 connected at boot; the board behind it is silent: greeted as cf.
    let cf = c.wait_event("connected", &[("protocol", "cf".into())]);
    let mut greeting = vec![0u8; "hello client".len()];
    std::io::Read::read_exact(&mut d.stream, &mut greeting).unwrap();
    assert_eq!(greeting, b"hello client");
    // Then the board speaks native frames.
    let welcome = d.hello("late-cam", &[]);
    assert_eq!(kv(&welcome, "name"), Some("late-cam"), "{welcome:?}");
    let gone = c.wait_event("disconnected", &[("conn", cf["conn"].clone())]);
    assert!(
        gone["reason"].as_str().unwrap().contains("native frame"),
        "{gone}"
    );
    let now = c.wait_event("connected", &[("device", "late-cam".into())]);
    assert_eq!(now["protocol"], "frames", "{now}");
    let ack = d.upload(1, "late.bin", b"late but whole");
    assert_eq!(ack.status, AckStatus::Saved, "{ack:?}");
    assert_eq!(
        std::fs::read(c.dir().join("late-cam/late.bin")).unwrap(),
        b"late but whole"
    );
}

#[test]
fn a_second_hello_is_ignored_and_a_reused_file_id_replaces_its_file() {
    let mut c = Console::start(PATIENT);
    // HELLO without id: named by IP address.
    let mut anon = Dev::connect(c.addr());
    let pairs = Vec::new();
    anon.send(&Message::Hello(pairs));
    let welcome = match anon.recv(WAIT) {
        Message::Welcome(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(kv(&welcome, "name"), Some("127.0.0.1"), "{welcome:?}");

    let mut d = Dev::connect(c.addr());
    d.hello("first", &[]);
    // A second HELLO: no answer, no renaming.
    d.send(&Message::Hello(vec![("id".into(), "second".into())]));
    assert!(d.sync().is_empty(), "a second HELLO is not answered");
    d.send(&Message::Text("still first".into()));
    let text = c.wait_text_in("still first");
    assert_eq!(text["device"], "first", "{text}");

    // file_id 1 again while open: the first file ends, kept as .part; the second goes on.
    d.begin(1, Some(10), "a.bin", false);
    d.data(1, 0, b"aaaa");
    d.begin(1, Some(3), "b.bin", false);
    d.data(1, 0, b"bbb");
    d.end(1, crc32fast::hash(b"bbb"));
    let ack = d.ack(WAIT);
    assert_eq!(
        (ack.status, ack.detail.as_str()),
        (AckStatus::Saved, "first/b.bin"),
        "{ack:?}"
    );
    let failed = c.wait_event("file_failed", &[("name", "a.bin".into())]);
    assert!(
        failed["reason"].as_str().unwrap().contains("same file_id"),
        "{failed}"
    );
    assert_eq!(std::fs::read(c.dir().join("first/a.bin.part")).unwrap(), b"aaaa");
}

#[test]
fn flipped_bits_on_the_bridge_are_repaired() {
    let mut c = Console::start(PATIENT);
    let bridge = Bridge::start(
        c.addr(),
        &["--rate", "4MB", "--flip-every", "40000", "--seed", "3", "--json"],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flip.bin");
    let data = Rng::new(9).bytes(300 * 1024);
    std::fs::write(&path, &data).unwrap();
    let out = common::run_to_exit(
        &[
            "send",
            "--to",
            &bridge.addr,
            "--id",
            "flippy",
            "--window",
            "3072",
            path.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let counters = bridge.counters();
    eprintln!("{counters}; {}", String::from_utf8_lossy(&out.stdout).trim());
    assert!(counters["flipped"].as_u64().unwrap() > 0, "{counters}");
    let saved = c.wait_event("file_saved", &[("device", "flippy".into())]);
    assert_eq!(std::fs::read(saved["path"].as_str().unwrap()).unwrap(), data);
}
