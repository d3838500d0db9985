//! What a device or another user of the lab PC can do to the received folder, end
//! to end against the binary: links planted where the console's folders and files
//! go, names that pass for something else, a device that begins files forever, a
//! log that grows without end, and a full disk.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use benchlink::protocol::frames::{AckStatus, Message, refused};
use common::dev::Dev;
use common::{Console, Device, Rng, WAIT, WAIT_FILE, skip_or_fail, walk};

const PATIENT: &[&str] = &["--auto-delay-ms", "10000"];

fn parts_in(folder: &Path) -> Vec<PathBuf> {
    walk(folder)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".part"))
        .collect()
}

fn error_mentioning(c: &mut Console, needle: &str) -> serde_json::Value {
    c.wait_for(
        |e| e["event"] == "error" && e["message"].as_str().is_some_and(|m| m.contains(needle)),
        WAIT,
    )
}

#[test]
fn a_device_folder_that_is_a_link_is_never_written_through() {
    let mut c = Console::start(PATIENT);
    let elsewhere = tempfile::tempdir().unwrap();
    symlink(elsewhere.path(), c.dir().join("cam2")).unwrap();

    let mut d = Dev::connect(c.addr());
    d.hello("cam2", &[]);
    d.send(&Message::Text("hello".into()));
    let ack = d.upload(1, "img.bin", b"some bytes");
    assert_eq!(ack.status, AckStatus::Refused, "{ack:?}");
    assert_eq!(ack.value, refused::DISK_ERROR, "{ack:?}");
    assert!(ack.detail.contains("symbolic link"), "{ack:?}");
    error_mentioning(&mut c, "symbolic link");
    let failed = c.wait_event("file_failed", &[("name", "img.bin".into())]);
    assert!(
        failed["reason"].as_str().unwrap().contains("symbolic link"),
        "{failed}"
    );

    assert!(walk(elsewhere.path()).is_empty(), "{:?}", walk(elsewhere.path()));
}

#[test]
fn a_part_or_sidecar_that_is_a_link_is_never_appended_to() {
    let mut c = Console::start(PATIENT);
    let victims = tempfile::tempdir().unwrap();
    let victim = victims.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let cam = c.dir().join("cam");
    std::fs::create_dir(&cam).unwrap();
    let data = Rng::new(3).bytes(40_000);
    // A planted `.part` link with a sidecar that matches what the device will resume.
    symlink(&victim, cam.join("big.bin.part")).unwrap();
    let meta = format!(r#"{{"device":"cam","name":"big.bin","size":{}}}"#, data.len());
    std::fs::write(cam.join(".big.bin.part.meta"), meta).unwrap();
    // And a planted sidecar link for the next file.
    symlink(&victim, cam.join(".small.bin.part.meta")).unwrap();

    let mut d = Dev::connect(c.addr());
    d.hello("cam", &[]);
    d.begin(1, Some(data.len() as u64), "big.bin", true);
    let ack = d.ack(WAIT);
    assert_eq!((ack.status, ack.value), (AckStatus::Resume, 0), "{ack:?}");
    error_mentioning(&mut c, "symbolic link");
    d.data_from(1, &data, 0, 16 * 1024);
    d.end(1, crc32fast::hash(&data));
    let ack = d.ack(WAIT_FILE);
    assert_eq!(ack.status, AckStatus::Saved, "{ack:?}");
    let saved = c.wait_event("file_saved", &[("name", "big.bin".into())]);
    let path = PathBuf::from(saved["path"].as_str().unwrap());
    assert!(!std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&path).unwrap(), data);

    let ack = d.upload(2, "small.bin", b"tiny");
    assert_eq!(ack.status, AckStatus::Saved, "{ack:?}");
    error_mentioning(&mut c, "cannot be resumed later");

    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn a_conversation_log_that_is_a_link_is_skipped() {
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0"]);
    let victims = tempfile::tempdir().unwrap();
    let victim = victims.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let folder = c.dir().join("127.0.0.1");
    std::fs::create_dir(&folder).unwrap();
    symlink(&victim, folder.join("conversation.log")).unwrap();

    let mut dev = Device::connect(c.addr());
    dev.send(b"temperature 21.5\n");
    c.wait_text_in("temperature 21.5");
    error_mentioning(&mut c, "conversation log");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn names_that_pass_for_something_else_get_a_suffix() {
    let c = Console::start(PATIENT);
    let mut d = Dev::connect(c.addr());
    let welcome = d.hello("cam.part", &[]);
    let name = welcome.iter().find(|(k, _)| k == "name").map(|(_, v)| v.clone());
    assert_eq!(name.as_deref(), Some("cam.part_"));
    let cases = [
        ("x.part", "x.part_"),
        ("notes.META", "notes.META_"),
        ("CON", "CON_"),
        ("nul.txt", "nul_.txt"),
        ("COM1", "COM1_"),
        ("a\u{200B}b\u{FEFF}.txt", "ab.txt"),
        ("ab.txt", "ab (1).txt"),
    ];
    for (i, (sent, want)) in cases.iter().enumerate() {
        let ack = d.upload(i as u32 + 1, sent, sent.as_bytes());
        assert_eq!(ack.status, AckStatus::Saved, "{sent}: {ack:?}");
        assert_eq!(ack.detail, format!("cam.part_/{want}"), "{sent}");
    }
}

#[test]
fn a_device_that_begins_files_forever_keeps_at_most_max_parts() {
    let mut c = Console::start(&["--auto-delay-ms", "10000", "--max-parts", "8"]);
    let mut d = Dev::connect(c.addr());
    d.hello("flood", &[]);
    let started = Instant::now();
    // The same file_id again and again, each with a byte of data (kept for resume)
    // or none (an empty `.part` is never kept).
    for i in 0..2_000u32 {
        d.begin(1, Some(10), "same.bin", false);
        if i % 2 == 1 {
            d.data(1, 0, b"x");
        }
    }
    assert!(d.sync_within(WAIT_FILE).is_empty());
    let took = started.elapsed();
    drop(d);
    c.wait_event("disconnected", &[("device", "flood".into())]);
    let parts = parts_in(&c.dir().join("flood"));
    let files = walk(c.dir()).len();
    eprintln!(
        "2000 FILE_BEGINs: {} .part files, {files} files in all, {took:?}",
        parts.len()
    );
    assert!(parts.len() <= 8, "{parts:?}");
    assert!(files <= 2 * 8 + 4, "{files} files");
    let removed = c.events_of("part_removed");
    assert!(!removed.is_empty());
    assert!(
        removed[0]["reason"].as_str().unwrap().contains("--max-parts"),
        "{}",
        removed[0]
    );
    for p in &parts {
        assert!(
            std::fs::metadata(p).unwrap().len() > 0,
            "an empty .part was kept: {}",
            p.display()
        );
    }
}

#[test]
fn the_conversation_log_rotates_at_its_cap() {
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0", "--max-log-size", "4KiB"]);
    let mut dev = Device::connect(c.addr());
    let line = "x".repeat(100);
    for i in 0..200 {
        dev.send(format!("{i:03} {line}\n").as_bytes());
    }
    c.wait_for(
        |e| e["event"] == "text" && e["text"].as_str().is_some_and(|t| t.starts_with("199 ")),
        WAIT,
    );
    let folder = c.dir().join("127.0.0.1");
    let log = folder.join("conversation.log");
    let rotated = folder.join("conversation.log.1");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("199 xxxx")
    {
        assert!(Instant::now() < deadline, "the last line never reached the log");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (now, before) = (
        std::fs::metadata(&log).unwrap().len(),
        std::fs::metadata(&rotated).unwrap().len(),
    );
    eprintln!("conversation.log {now} bytes, conversation.log.1 {before} bytes (cap 4096)");
    assert!(now <= 4096 && before <= 4096, "{now} {before}");
    assert!(std::fs::read_to_string(&rotated).unwrap().contains(" in  "));
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            skip_or_fail(
                "a tmpfs mount",
                "run the tests as root, or where `mount -t tmpfs` is allowed",
            );
            return None;
        }
        Some(Tmpfs(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_fails_that_file_once_and_the_next_file_is_saved() {
    let Some(disk) = Tmpfs::mount("4m") else {
        return;
    };
    let dir = disk.path().join("recv");
    let dir_arg = dir.display().to_string();
    let mut c = Console::start(&["--dir", &dir_arg, "--auto-delay-ms", "10000"]);
    let mut d = Dev::connect(c.addr());
    d.hello("cam", &[]);

    // Announced larger than the free space: refused up front, nothing written.
    d.begin(1, Some(64 << 20), "huge.bin", false);
    let ack = d.ack(WAIT);
    assert_eq!(
        (ack.status, ack.value),
        (AckStatus::Refused, refused::DISK_FULL),
        "{ack:?}"
    );
    assert!(ack.detail.contains("free"), "{ack:?}");

    // No size announced: the disk fills while it streams.
    let big = Rng::new(5).bytes(6 << 20);
    d.begin(2, None, "stream.bin", false);
    d.data_from(2, &big, 0, 64 * 1024);
    d.end(2, crc32fast::hash(&big));
    let answers = d.sync_within(WAIT_FILE);
    let refusals: Vec<_> = answers
        .iter()
        .filter(|m| matches!(m, Message::FileAck { file_id: 2, status: AckStatus::Refused, value, .. } if *value == refused::DISK_FULL))
        .collect();
    assert!(!refusals.is_empty(), "{answers:?}");
    // The event may reach stdout a moment after the device got its answer.
    c.wait_event("file_failed", &[("name", "stream.bin".into())]);
    let again = c.try_wait_for(
        |e| e["event"] == "file_failed" && e["name"] == "stream.bin",
        Duration::from_millis(300),
    );
    assert!(again.is_none(), "one file_failed for one failure: {again:?}");
    assert!(
        parts_in(&dir).is_empty(),
        "the failed .part must go: {:?}",
        parts_in(&dir)
    );

    // Texts still work, and the next file is saved now that the space is back.
    d.send(&Message::Text("still here".into()));
    c.wait_text_in("still here");
    let small = Rng::new(6).bytes(100 * 1024);
    let ack = d.upload(3, "next.bin", &small);
    assert_eq!(ack.status, AckStatus::Saved, "{ack:?}");
    assert_eq!(std::fs::read(dir.join("cam/next.bin")).unwrap(), small);
}
