//! The article's "cf" protocol on an auto listener (a device silent for the auto
//! delay is greeted and speaks cf): handshake, commands, files, and where files land.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Console, Device, Rng, WAIT, WAIT_FILE, bmp, entries, walk};
use serde_json::Value;

const GREETING: &[u8] = b"hello client";
const FAST: &[&str] = &["--auto-delay-ms", "100"];

fn cf_device(c: &mut Console) -> (Device, Value) {
    let dev = Device::connect_cf(c.addr(), GREETING);
    let ev = c.wait_connected(&dev);
    assert_eq!(ev["protocol"], "cf", "{ev}");
    (dev, ev)
}

/// Checks a `file_saved` event against the bytes sent, and returns the saved path.
fn assert_saved(ev: &Value, sent: &[u8], dir: &Path) -> PathBuf {
    let path = PathBuf::from(ev["path"].as_str().unwrap());
    assert!(path.is_absolute(), "{ev}");
    assert!(
        path.starts_with(dir),
        "{} outside {}",
        path.display(),
        dir.display()
    );
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk.len(), sent.len(), "size on disk");
    assert!(on_disk == sent, "saved bytes differ from the bytes sent");
    assert_eq!(ev["size"], sent.len() as u64);
    assert_eq!(ev["crc32"], crc32fast::hash(sent) as u64, "{ev}");
    assert_eq!(
        ev["name"].as_str().unwrap(),
        path.file_name().unwrap().to_str().unwrap()
    );
    path
}

#[test]
fn greeting_and_handshake_are_shown_both_ways() {
    let mut c = Console::start(FAST);
    let (mut dev, conn) = cf_device(&mut c);
    assert_eq!(conn["device"], "127.0.0.1");
    let out = c.wait_event(
        "text",
        &[("direction", "out".into()), ("text", "hello client".into())],
    );
    assert_eq!(out["conn"], conn["conn"]);
    dev.send_alone(b"hello server");
    c.wait_text_in("hello server");
    // A text message that is not a marker is shown as text.
    dev.send_alone(b"temperature 21.5\r\n");
    c.wait_text_in("temperature 21.5");
}

#[test]
fn a_multi_mib_bmp_is_saved_byte_identical() {
    let mut c = Console::start(FAST);
    let (mut dev, conn) = cf_device(&mut c);
    let img = bmp(1024, 1024, 1); // 3 MiB + 54
    dev.send_alone(b"hello server");
    dev.send_alone(b"f");
    dev.send_chunked(&img, 64 * 1024);
    dev.finish();
    let started = c.wait_event("file_started", &[("conn", conn["conn"].clone())]);
    assert!(started["name"].as_str().unwrap().ends_with(".bmp"), "{started}");
    assert!(started["size"].is_null(), "cf files carry no size: {started}");
    let saved = c.wait_event_within("file_saved", &[("conn", conn["conn"].clone())], WAIT_FILE);
    assert_eq!(
        saved["ended_by_close"], false,
        "the BMP size field says it is complete"
    );
    let path = assert_saved(&saved, &img, c.dir());
    assert_eq!(path.parent().unwrap(), c.dir().join("127.0.0.1"));
    assert_eq!(path.extension().unwrap(), "bmp");
    assert!(saved["seconds"].as_f64().unwrap() >= 0.0);
    // No .part left behind.
    assert!(
        walk(c.dir())
            .iter()
            .all(|p| p.extension().is_none_or(|e| e != "part")),
        "{:?}",
        walk(c.dir())
    );
    c.wait_event("disconnected", &[("conn", conn["conn"].clone())]);
    assert!(c.events_of("file_failed").is_empty());
}

#[test]
fn two_images_from_one_device_are_kept_apart() {
    let mut c = Console::start(FAST);
    let images = [bmp(300, 200, 2), bmp(300, 200, 3)];
    let mut paths = Vec::new();
    for img in &images {
        let (mut dev, conn) = cf_device(&mut c);
        dev.send_alone(b"f");
        dev.send(img);
        dev.finish();
        let saved = c.wait_event_within("file_saved", &[("conn", conn["conn"].clone())], WAIT_FILE);
        paths.push(assert_saved(&saved, img, c.dir()));
        c.wait_event("disconnected", &[("conn", conn["conn"].clone())]);
    }
    assert_ne!(paths[0], paths[1]);
    // Both still there, each with its own content.
    for (p, img) in paths.iter().zip(&images) {
        assert!(
            std::fs::read(p).unwrap() == *img,
            "{} was overwritten",
            p.display()
        );
    }
    let bmps: Vec<_> = walk(c.dir())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "bmp"))
        .collect();
    assert_eq!(bmps.len(), 2, "{bmps:?}");
}

#[test]
fn two_devices_sending_at_once_from_one_ip_do_not_mix() {
    let mut c = Console::start(FAST);
    let (mut a, ca) = cf_device(&mut c);
    let (mut b, cb) = cf_device(&mut c);
    assert_eq!(cb["device"], "127.0.0.1#2");
    let ia = bmp(512, 256, 4);
    let ib = bmp(512, 256, 5);
    a.send_alone(b"f");
    b.send_alone(b"f");
    // Interleave the two streams.
    for (x, y) in ia.chunks(8192).zip(ib.chunks(8192)) {
        a.send(x);
        b.send(y);
    }
    a.finish();
    b.finish();
    let sa = c.wait_event_within("file_saved", &[("conn", ca["conn"].clone())], WAIT_FILE);
    let sb = c.wait_event_within("file_saved", &[("conn", cb["conn"].clone())], WAIT_FILE);
    let pa = assert_saved(&sa, &ia, c.dir());
    let pb = assert_saved(&sb, &ib, c.dir());
    assert_eq!(pa.parent().unwrap(), c.dir().join("127.0.0.1"));
    assert_eq!(pb.parent().unwrap(), c.dir().join("127.0.0.1#2"));
}

#[test]
fn c_then_command_split_or_merged_both_give_the_command() {
    let mut c = Console::start(FAST);
    let (mut dev, conn) = cf_device(&mut c);
    dev.send_alone(b"hello server");
    dev.send_alone(b"c");
    dev.send_alone(b"weeding");
    let first = c.wait_text_in("weeding");
    dev.send_alone(b"cweeding");
    let second = c.wait_text_in("weeding");
    assert_eq!(first["conn"], conn["conn"]);
    assert_eq!(second["conn"], conn["conn"]);
    // Neither the marker nor a merged "cweeding" shows up as text.
    for e in c.events_of("text") {
        let t = e["text"].as_str().unwrap();
        assert!(t != "c" && t != "cweeding", "{e}");
    }
    assert!(c.events_of("file_started").is_empty());
}

#[test]
fn begin_to_send_merged_with_the_first_file_bytes() {
    let mut c = Console::start(FAST);
    let (mut dev, conn) = cf_device(&mut c);
    let img = bmp(400, 300, 6);
    let mut first = b"begin to send".to_vec();
    first.extend_from_slice(&img[..1000]);
    dev.send(&first);
    dev.send(&img[1000..]);
    dev.finish();
    let saved = c.wait_event_within("file_saved", &[("conn", conn["conn"].clone())], WAIT_FILE);
    assert_saved(&saved, &img, c.dir());
    // "begin to send" is a marker, not text.
    assert!(
        c.events_of("text")
            .iter()
            .all(|e| !e["text"].as_str().unwrap().contains("begin")),
    );
}

#[test]
fn f_merged_with_the_whole_file_in_one_write() {
    let mut c = Console::start(FAST);
    let (mut dev, conn) = cf_device(&mut c);
    let img = bmp(64, 64, 7);
    let mut all = b"f".to_vec();
    all.extend_from_slice(&img);
    dev.send(&all);
    dev.finish();
    let saved = c.wait_event_within("file_saved", &[("conn", conn["conn"].clone())], WAIT_FILE);
    assert_saved(&saved, &img, c.dir());
}

#[test]
fn a_drop_mid_file_keeps_a_part_and_says_truncated() {
    let mut c = Console::start(FAST);
    let (mut dev, conn) = cf_device(&mut c);
    let img = bmp(640, 480, 8); // declares ~900 KiB
    let sent = &img[..200 * 1024];
    dev.send_alone(b"f");
    dev.send(sent);
    drop(dev);
    let failed = c.wait_event_within("file_failed", &[("conn", conn["conn"].clone())], WAIT_FILE);
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.starts_with("truncated"), "{failed}");
    assert!(reason.contains(&img.len().to_string()), "{failed}");
    assert!(reason.contains(&sent.len().to_string()), "{failed}");
    let part = PathBuf::from(failed["part"].as_str().expect("part path"));
    assert!(part.starts_with(c.dir()), "{failed}");
    assert!(part.to_str().unwrap().ends_with(".part"), "{failed}");
    assert!(
        std::fs::read(&part).unwrap() == sent,
        "the .part holds what arrived"
    );
    assert!(c.events_of("file_saved").is_empty());
    // No complete-looking .bmp was made from it.
    let bmps: Vec<_> = walk(c.dir())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "bmp"))
        .collect();
    assert!(bmps.is_empty(), "{bmps:?}");
    // Nothing goes to the history for a failed file (it exists, empty, from the start).
    assert_eq!(std::fs::read(c.dir().join("received.jsonl")).unwrap(), b"");
}

#[test]
fn an_unknown_format_is_saved_as_bin_ended_by_close() {
    let mut c = Console::start(FAST);
    let (mut dev, conn) = cf_device(&mut c);
    let mut data = b"\x00\x01RAWDUMP".to_vec();
    data.extend(Rng::new(9).bytes(100_000));
    dev.send_alone(b"f");
    dev.send(&data);
    dev.finish();
    let saved = c.wait_event_within("file_saved", &[("conn", conn["conn"].clone())], WAIT_FILE);
    assert_eq!(saved["ended_by_close"], true, "{saved}");
    let path = assert_saved(&saved, &data, c.dir());
    assert_eq!(path.extension().unwrap(), "bin");
}

#[test]
fn other_formats_are_sniffed_and_judged() {
    let mut c = Console::start(FAST);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(Rng::new(10).bytes(5000));
    png.extend_from_slice(b"\x00\x00\x00\x00IEND\xaeB`\x82");
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    jpeg.extend(Rng::new(11).bytes(5000));
    jpeg.extend_from_slice(&[0xFF, 0xD9]);
    let mut gif = b"GIF89a".to_vec();
    gif.extend(Rng::new(12).bytes(3000));
    for (data, ext, by_close) in [(&png, "png", false), (&jpeg, "jpg", false), (&gif, "gif", true)] {
        let (mut dev, conn) = cf_device(&mut c);
        dev.send_alone(b"f");
        dev.send(data);
        dev.finish();
        let saved = c.wait_event_within("file_saved", &[("conn", conn["conn"].clone())], WAIT_FILE);
        assert_eq!(saved["ended_by_close"], by_close, "{saved}");
        let path = assert_saved(&saved, data, c.dir());
        assert_eq!(path.extension().unwrap(), ext);
    }
    // A JPEG without its end marker is truncated.
    let (mut dev, conn) = cf_device(&mut c);
    dev.send_alone(b"f");
    dev.send(&jpeg[..3000]);
    dev.finish();
    let failed = c.wait_event_within("file_failed", &[("conn", conn["conn"].clone())], WAIT_FILE);
    assert!(
        failed["reason"].as_str().unwrap().starts_with("truncated"),
        "{failed}"
    );
}

#[test]
fn a_file_announced_but_empty_fails_cleanly() {
    let mut c = Console::start(FAST);
    let (mut dev, conn) = cf_device(&mut c);
    dev.send_alone(b"f");
    dev.finish();
    let failed = c.wait_event("file_failed", &[("conn", conn["conn"].clone())]);
    assert!(
        failed["reason"].as_str().unwrap().contains("no bytes"),
        "{failed}"
    );
    c.wait_event("disconnected", &[("conn", conn["conn"].clone())]);
    assert!(walk(c.dir()).iter().all(|p| {
        ["conversation.log", "received.jsonl", ".benchlink.lock"]
            .contains(&p.file_name().unwrap().to_str().unwrap())
    }));
}

#[test]
fn max_file_size_refuses_a_larger_file_and_keeps_what_fit() {
    let mut c = Console::start(&["--auto-delay-ms", "100", "--max-file-size", "100KiB"]);
    let (mut dev, conn) = cf_device(&mut c);
    let img = bmp(300, 300, 13); // ~264 KiB
    dev.send_alone(b"f");
    dev.send(&img);
    dev.finish();
    let failed = c.wait_event_within("file_failed", &[("conn", conn["conn"].clone())], WAIT_FILE);
    assert!(
        failed["reason"].as_str().unwrap().contains("--max-file-size"),
        "{failed}"
    );
    let part = PathBuf::from(failed["part"].as_str().unwrap());
    let kept = std::fs::read(&part).unwrap();
    assert!(kept.len() <= 100 * 1024, "{}", kept.len());
    assert!(img.starts_with(&kept));
    c.wait_event("disconnected", &[("conn", conn["conn"].clone())]);
    assert!(c.events_of("file_saved").is_empty());
}

#[test]
fn operator_commands_reach_a_cf_device_without_line_ending() {
    let mut c = Console::start(FAST);
    let (mut dev, _) = cf_device(&mut c);
    let r = c.command("capture");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(dev.read_exact_within(7, WAIT), b"capture");
    assert!(
        dev.read_for(Duration::from_millis(300)).is_empty(),
        "extra bytes after the command"
    );
    c.wait_event("text", &[("direction", "out".into()), ("text", "capture".into())]);
}

#[test]
fn custom_greeting_and_forced_line_ending_for_cf() {
    let mut c = Console::start(&[
        "--auto-delay-ms",
        "100",
        "--greeting",
        "READY>",
        "--line-ending",
        "crlf",
    ]);
    let mut dev = Device::connect_cf(c.addr(), b"READY>");
    c.wait_connected(&dev);
    c.command("snap");
    assert_eq!(dev.read_exact_within(6, WAIT), b"snap\r\n");
}

#[test]
fn a_person_typing_into_a_late_nc_gets_text_not_files() {
    // Silent past the auto delay, so cf; but typed lines ending in a newline are
    // text even when they begin with `c` or `f`.
    let mut c = Console::start(FAST);
    let (mut dev, _) = cf_device(&mut c);
    dev.send_alone(b"fine thanks\n");
    c.wait_text_in("fine thanks");
    dev.send_alone(b"check this\n");
    c.wait_text_in("check this");
    assert!(c.events_of("file_started").is_empty());
}

/// A config whose alias maps 127.0.0.1 to `alias`; the console's folder is
/// `<root>/inner/recv`, so `../../x` would escape to `<root>/x`.
fn hostile_alias_case(alias_toml: &str) -> (Vec<PathBuf>, String) {
    let root = tempfile::tempdir().unwrap();
    let cfg_dir = tempfile::tempdir().unwrap();
    let recv = root.path().join("inner").join("recv");
    std::fs::create_dir_all(&recv).unwrap();
    let cfg = cfg_dir.path().join("config.toml");
    std::fs::write(&cfg, format!("[aliases]\n\"127.0.0.1\" = {alias_toml}\n")).unwrap();
    let device;
    {
        let mut c = Console::start(&[
            "--auto-delay-ms",
            "100",
            "--config",
            cfg.to_str().unwrap(),
            "--dir",
            recv.to_str().unwrap(),
        ]);
        let (mut dev, conn) = cf_device(&mut c);
        device = conn["device"].as_str().unwrap().to_string();
        assert!(!device.contains('/') && !device.contains(".."), "{device:?}");
        assert!(!device.chars().any(char::is_control), "{device:?}");
        dev.send_alone(b"hello server");
        c.wait_text_in("hello server");
        let img = bmp(50, 50, 14);
        dev.send_alone(b"f");
        dev.send(&img);
        dev.finish();
        let saved = c.wait_event_within("file_saved", &[("conn", conn["conn"].clone())], WAIT_FILE);
        assert_saved(&saved, &img, c.dir());
        c.wait_event("disconnected", &[("conn", conn["conn"].clone())]);
        c.command("/quit");
        c.wait_exit(WAIT);
    }
    // Nothing was written outside the received folder.
    assert_eq!(entries(root.path()), ["inner"]);
    assert_eq!(entries(&root.path().join("inner")), ["recv"]);
    assert_eq!(entries(cfg_dir.path()), ["config.toml"]);
    let files = walk(&recv);
    let canon = recv.canonicalize().unwrap();
    for f in &files {
        let real = f.canonicalize().unwrap();
        assert!(real.starts_with(&canon), "{} escaped", real.display());
        let name = f.strip_prefix(&recv).unwrap().to_string_lossy().into_owned();
        assert!(!name.chars().any(char::is_control), "{name:?}");
    }
    (files, device)
}

#[test]
fn an_alias_with_dot_dots_cannot_escape_the_folder() {
    let (files, device) = hostile_alias_case("\"../../evil\"");
    assert_eq!(device, "evil");
    assert!(
        files.iter().any(|f| f.ends_with("evil/conversation.log")),
        "{files:?}"
    );
    assert!(
        files.iter().any(|f| f.extension().is_some_and(|e| e == "bmp")),
        "{files:?}"
    );
}

#[test]
fn an_alias_with_escape_sequences_is_made_harmless() {
    let (files, device) = hostile_alias_case("\"\\u001b[31mred\\u001b[0m\\u0007\"");
    assert!(device.contains("red"), "{device:?}");
    assert!(
        files.iter().any(|f| f.extension().is_some_and(|e| e == "bmp")),
        "{files:?}"
    );
}

#[test]
fn a_slow_transfer_reports_progress() {
    let mut c = Console::start(FAST);
    let (mut dev, conn) = cf_device(&mut c);
    let img = bmp(200, 200, 15); // ~117 KiB, sent over ~900 ms
    dev.send_alone(b"f");
    for piece in img.chunks(img.len().div_ceil(10)) {
        dev.send(piece);
        std::thread::sleep(Duration::from_millis(90));
    }
    dev.finish();
    let saved = c.wait_event_within("file_saved", &[("conn", conn["conn"].clone())], WAIT_FILE);
    assert_saved(&saved, &img, c.dir());
    let progress: Vec<u64> = c
        .events_of("file_progress")
        .iter()
        .filter(|e| e["conn"] == conn["conn"])
        .map(|e| {
            assert_eq!(e["name"], saved["name"], "{e}");
            e["bytes"].as_u64().unwrap()
        })
        .collect();
    assert!(!progress.is_empty(), "no file_progress in ~900 ms");
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert!(
        progress.iter().all(|&b| b > 0 && b <= img.len() as u64),
        "{progress:?}"
    );
    // At most one per 250 ms.
    assert!(progress.len() <= 4, "{progress:?}");
}

/// A client that closes without reading the greeting makes its TCP stack reset
/// the connection and drop what it had not sent: a file without a length can
/// then be cut short, so it is kept as `.part` and reported, never "saved".
#[test]
fn a_reset_connection_keeps_a_file_without_length_as_part() {
    let mut c = Console::start(&["--listen", "cf://127.0.0.1:0"]);
    let mut stream = std::net::TcpStream::connect(c.addr()).unwrap();
    let connected = c.wait_event("connected", &[]);
    // The greeting is now waiting, unread, in this client's receive buffer.
    std::thread::sleep(Duration::from_millis(200));
    use std::io::Write;
    stream.write_all(b"f").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    stream.write_all(&Rng::new(21).bytes(200_000)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(stream); // close with unread data: RST
    let failed = c.wait_event_within("file_failed", &[("conn", connected["conn"].clone())], WAIT_FILE);
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("reset"), "{failed}");
    let part = PathBuf::from(failed["part"].as_str().unwrap());
    assert!(
        part.exists() && part.to_string_lossy().ends_with(".part"),
        "{failed}"
    );
    let gone = c.wait_event("disconnected", &[("conn", connected["conn"].clone())]);
    assert!(gone["reason"].as_str().unwrap().contains("reset"), "{gone}");
}
