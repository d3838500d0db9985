//! What many or hostile connections do to the console, against the binary: bad
//! frames and wrong tokens by the thousand (stderr and events stay small), big
//! first frames before authentication (memory stays small), sockets that never
//! speak (evicted when the limit is reached), `--idle-timeout`, and a low
//! descriptor limit (transfers never take the descriptors accepting needs).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use benchlink::protocol::frames::{AckStatus, HEADER_LEN, KIND_ERROR, Message, refused};
use common::dev::{Dev, damaged, wire};
use common::{Console, Device, Rng, WAIT, WAIT_FILE, run_to_exit};

const PATIENT: &[&str] = &["--auto-delay-ms", "10000"];

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

#[test]
fn a_flood_of_bad_frames_writes_a_line_a_second_to_stderr() {
    let c = Console::start(&["--listen", "frames://127.0.0.1:0"]);
    let mut d = Dev::connect(c.addr());
    d.hello("noisy", &[]);
    let bad = damaged(&Message::Text("n".repeat(60_000)));
    let mut sent = 0usize;
    for _ in 0..800 {
        d.send_raw(&bad);
        sent += bad.len();
    }
    assert!(d.sync_within(WAIT_FILE).is_empty());
    // A second later the next warning carries the count of those held back.
    thread::sleep(Duration::from_millis(1100));
    d.send_raw(&bad);
    assert!(d.sync().is_empty());
    let deadline = Instant::now() + WAIT;
    while !c.stderr_text().contains("more since the last report") {
        assert!(
            Instant::now() < deadline,
            "no count on stderr: {}",
            c.stderr_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let stderr = c.stderr_text().len();
    eprintln!(
        "{} MB of bad-CRC frames: {stderr} bytes of stderr",
        sent / 1_000_000
    );
    assert!(stderr < 10 * 1024, "{stderr} bytes");
}

#[test]
fn wrong_tokens_by_the_hundred_are_reported_a_few_times() {
    let mut c = Console::start(&["--listen", "frames://127.0.0.1:0", "--token", "s3cret"]);
    for _ in 0..200 {
        let mut s = TcpStream::connect(c.addr()).unwrap();
        let hello = Message::Hello(vec![("id".into(), "x".into()), ("token".into(), "nope".into())]);
        s.write_all(&wire(&hello)).unwrap();
        let mut sink = Vec::new();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let _ = s.read_to_end(&mut sink);
    }
    let mut d = Dev::connect(c.addr());
    d.hello("ok", &[("token", "s3cret")]);
    let errors = c
        .events_of("error")
        .into_iter()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.contains("token")))
        .count();
    eprintln!("200 wrong tokens: {errors} error events");
    assert!((1..=10).contains(&errors), "{errors}");
}

#[test]
fn big_first_frames_before_hello_are_refused_at_their_header() {
    let c = Console::start(&["--listen", "frames://127.0.0.1:0", "--token", "s3cret"]);
    let pid = c.pid();
    let addr = c.addr();
    // A TEXT header announcing 1 MiB, then 1 MiB - 1 bytes of its payload.
    let mut big = wire(&Message::Text("x".repeat(1 << 20)));
    big.truncate(HEADER_LEN);
    let body = vec![b'x'; (1 << 20) - 1];
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (big, body) = (big.clone(), body.clone());
            thread::spawn(move || {
                let mut answers = 0;
                for _ in 0..50 {
                    let mut s = TcpStream::connect(addr).unwrap();
                    let _ = s.write_all(&big);
                    let _ = s.write_all(&body);
                    let mut got = Vec::new();
                    s.set_read_timeout(Some(WAIT)).unwrap();
                    let _ = s.read_to_end(&mut got);
                    if got.len() >= HEADER_LEN && got[2] == KIND_ERROR {
                        answers += 1;
                    }
                }
                answers
            })
        })
        .collect();
    let errors: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let rss = peak_rss_mib(pid);
    eprintln!(
        "200 first frames announcing 1 MiB (1 MiB - 1 sent each): peak RSS {rss} MiB, {errors} ERROR answers"
    );
    assert!(rss < 100, "peak RSS {rss} MiB");
    assert!(errors > 150, "{errors} of 200 got an ERROR frame");
}

#[test]
fn silent_sockets_make_room_for_a_device_and_a_full_console_says_busy() {
    let mut c = Console::start(&["--auto-delay-ms", "10000", "--max-connections", "4"]);
    let mut silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(c.addr()).unwrap()).collect();
    thread::sleep(Duration::from_millis(100));
    // A real device arrives: the oldest silent socket goes.
    let mut d = Dev::connect(c.addr());
    d.hello("board", &[]);
    let evicted = c.wait_for(
        |e| {
            e["event"] == "error"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("never sent a byte"))
        },
        WAIT,
    );
    eprintln!("{evicted}");
    let message = evicted["message"].as_str().unwrap().to_string();
    let at = silent
        .iter()
        .position(|s| message.contains(&format!("from {} ", s.local_addr().unwrap())))
        .expect("the evicted connection is one of the silent ones");
    let mut oldest = silent.remove(at);
    oldest.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        matches!(oldest.read(&mut buf), Ok(0) | Err(_)),
        "the evicted socket is closed"
    );

    // Everyone speaks now: a newcomer is refused, and `send` says why.
    for s in &mut silent {
        s.write_all(&wire(&Message::Ping(bytes::Bytes::from_static(b"hi"))))
            .unwrap();
    }
    thread::sleep(Duration::from_millis(200));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"data").unwrap();
    let addr = c.addr().to_string();
    let path = file.path().display().to_string();
    let out = run_to_exit(&["send", "--to", &addr, &path], WAIT_FILE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("send: {stderr}");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("refused the connection: too many connections"),
        "{stderr}"
    );
    drop(d);
}

#[test]
fn idle_timeout_closes_silent_connections_with_a_reason() {
    let mut c = Console::start(&["--auto-delay-ms", "10000", "--idle-timeout", "1s"]);
    let mut d = Dev::connect(c.addr());
    d.hello("sleepy", &[]);
    let started = Instant::now();
    let got = d.until_closed(WAIT);
    let took = started.elapsed();
    assert!(
        got.iter()
            .any(|m| matches!(m, Message::Bye(why) if why == "idle for 1 s")),
        "{got:?}"
    );
    let gone = c.wait_event("disconnected", &[("device", "sleepy".into())]);
    assert_eq!(gone["reason"], "silent for 1 s (--idle-timeout)", "{gone}");
    assert!(took >= Duration::from_millis(900), "{took:?}");

    // Without the flag a quiet connection stays.
    let mut quiet = Console::start(&["--listen", "lines://127.0.0.1:0"]);
    let mut dev = Device::connect(quiet.addr());
    dev.send(b"hi\n");
    quiet.wait_text_in("hi");
    assert!(!dev.closed_within(Duration::from_millis(1500)));
}

#[test]
fn transfers_never_take_the_descriptors_accepting_needs() {
    // 300 descriptors: 224 are kept back, so connections and open files share 76.
    let mut c = Console::start_with_nofile(300, PATIENT);
    let limited = c.wait_for(
        |e| e["event"] == "error" && e["message"].as_str().is_some_and(|m| m.contains("ulimit -n")),
        WAIT,
    );
    eprintln!("{limited}");
    let mut hogs = Vec::new();
    let mut busy = 0;
    for i in 0..10 {
        let mut d = Dev::connect(c.addr());
        d.hello(&format!("hog{i}"), &[]);
        for f in 0..8 {
            d.begin(f, Some(1000), &format!("f{f}.bin"), false);
            d.data(f, 0, b"x");
        }
        for m in d.sync() {
            if let Message::FileAck {
                status: AckStatus::Refused,
                value,
                ..
            } = m
            {
                assert_eq!(value, refused::BUSY);
                busy += 1;
            }
        }
        hogs.push(d);
    }
    eprintln!("10 connections x 8 files under ulimit -n 300: {busy} FILE_BEGINs refused BUSY");
    assert!(busy > 0);
    // A legitimate device still connects, talks and is logged.
    let mut d = Dev::connect(c.addr());
    d.hello("legit", &[]);
    d.send(&Message::Text("still here".into()));
    c.wait_text_in("still here");
    assert!(
        !c.events_of("error").iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot accept") || m.contains("conversation log"))),
        "{:?}",
        c.events_of("error")
    );
    // Once the hogs are gone, its file is saved.
    drop(hogs);
    let data = Rng::new(4).bytes(10_000);
    let deadline = Instant::now() + WAIT_FILE;
    loop {
        let ack = d.upload(100, "ok.bin", &data);
        if ack.status == AckStatus::Saved {
            break;
        }
        assert_eq!(ack.value, refused::BUSY, "{ack:?}");
        assert!(Instant::now() < deadline, "never saved: {ack:?}");
        thread::sleep(Duration::from_millis(100));
    }
}
