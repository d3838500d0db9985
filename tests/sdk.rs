//! The device SDK against the real console: the C library (sdk/c), built for
//! the host with the system's C compiler and for a Cortex-M3 with
//! arm-none-eabi-gcc, driven by sdk/c/tests/host_device.c over loopback.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::bridge::Bridge;
use common::{Console, Rng, WAIT_FILE, require_tool};

/// Builds a host program from the library and one test source with the system's
/// C compiler, strictly; None (after a loud skip) without cc.
fn build_host(name: &str, source: &str, extra: &[&str]) -> Option<PathBuf> {
    let cc = require_tool("cc")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    if !out.exists() {
        let built = Command::new(cc)
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"])
            .args(extra)
            .arg("-o")
            .arg(&out)
            .arg(root.join("sdk/c/benchlink.c"))
            .arg(root.join(source))
            .output()
            .expect("run cc");
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
    }
    Some(out)
}

fn host_device() -> Option<PathBuf> {
    build_host("host_device", "sdk/c/tests/host_device.c", &[])
}

fn run_device(exe: &Path, port: &str, id: &str, file: &Path, window: Option<&str>) -> Output {
    let mut cmd = Command::new(exe);
    cmd.args(["127.0.0.1", port, id]).arg(file);
    if let Some(w) = window {
        cmd.arg(w);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::output_within(child, Duration::from_secs(90), "host_device")
}

/// A file of `size` random bytes (seeded) in a fresh folder, kept while the folder lives.
fn random_file(name: &str, seed: u64, size: usize) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    let data = Rng::new(seed).bytes(size);
    std::fs::write(&file, &data).unwrap();
    (dir, file, data)
}

fn port_of(addr: &str) -> String {
    addr.rsplit(':').next().unwrap().to_string()
}

#[test]
fn the_c_library_uploads_a_file_and_talks_both_ways() {
    let Some(exe) = host_device() else {
        return;
    };
    let mut c = Console::start(&["--auto-delay-ms", "10000"]);
    let (_dir, file, data) = random_file("frame.raw", 31, 300_000);
    let port = port_of(&c.addr().to_string());
    let exe2 = exe.clone();
    let file2 = file.clone();
    let device = std::thread::spawn(move || run_device(&exe2, &port, "c-board", &file2, None));
    c.wait_text_in("hello from C");
    let r = c.command("/to c-board");
    assert_eq!(r["ok"], true, "{r}");
    c.command("status");
    c.wait_text_in("ok: status");
    let out = device.join().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("SAVED 300000 c-board/frame.raw"), "{said}");
    let saved = c.wait_event("file_saved", &[("device", "c-board".into())]);
    assert_eq!(std::fs::read(saved["path"].as_str().unwrap()).unwrap(), data);
}

#[test]
fn the_c_library_keeps_its_window_through_a_stalling_bridge() {
    let Some(exe) = host_device() else {
        return;
    };
    let mut c = Console::start(&["--auto-delay-ms", "10000"]);
    let bridge = Bridge::start(
        c.addr(),
        &[
            "--rate", "2MB", "--buffer", "4096", "--stall", "100/300", "--json",
        ],
    );
    let addr = bridge.addr.clone();
    let (_dir, file, data) = random_file("big.raw", 32, 1_500_000);
    let out = run_device(&exe, &port_of(&addr), "c-window", &file, Some("3072"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let counters = bridge.counters();
    eprintln!("C device, window 3072, through the bridge: {counters}");
    assert_eq!(counters["dropped"], 0, "{counters}");
    let saved = c.wait_event_within("file_saved", &[("device", "c-window".into())], WAIT_FILE);
    assert_eq!(std::fs::read(saved["path"].as_str().unwrap()).unwrap(), data);
}

#[test]
fn the_c_library_resumes_after_the_console_kicks_it() {
    let Some(exe) = host_device() else {
        return;
    };
    let mut c = Console::start(&["--auto-delay-ms", "10000"]);
    let (_dir, file, data) = random_file("resumed.raw", 33, 3_000_000);
    let port = port_of(&c.addr().to_string());
    let device = std::thread::spawn(move || run_device(&exe, &port, "c-kick", &file, None));
    c.wait_for(
        |e| e["event"] == "file_progress" && e["device"] == "c-kick",
        WAIT_FILE,
    );
    c.command("/kick c-kick");
    let out = device.join().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(said.matches("READY").count(), 2, "reconnected once: {said}");
    let saved = c.wait_event("file_saved", &[("device", "c-kick".into())]);
    assert_eq!(std::fs::read(saved["path"].as_str().unwrap()).unwrap(), data);
    let names: Vec<String> = std::fs::read_dir(c.dir().join("c-kick"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains("resumed"))
        .collect();
    assert_eq!(names, ["resumed.raw"], "one file, no leftovers");
}

#[test]
fn the_c_library_builds_for_a_cortex_m3_without_libc_calls() {
    let Some(gcc) = require_tool("arm-none-eabi-gcc") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let obj = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("benchlink-m3-{}.o", std::process::id()));
    let built = Command::new(gcc)
        .args([
            "-mcpu=cortex-m3",
            "-mthumb",
            "-std=c99",
            "-Os",
            "-ffreestanding",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-c",
            "-o",
        ])
        .arg(&obj)
        .arg(root.join("sdk/c/benchlink.c"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    // No malloc, no stdio, no OS calls: only <string.h> (which every toolchain has)
    // and the compiler's own helpers may be undefined.
    let nm = Command::new("arm-none-eabi-nm").arg("-u").arg(&obj).output();
    if let Ok(nm) = nm {
        let undefined = String::from_utf8_lossy(&nm.stdout).to_string();
        let foreign: Vec<&str> = undefined
            .lines()
            .map(|l| l.trim().trim_start_matches("U ").trim())
            .filter(|s| {
                !s.is_empty()
                    && !s.starts_with("__aeabi")
                    && !matches!(*s, "memcpy" | "memset" | "memmove" | "memcmp" | "strlen")
            })
            .collect();
        assert!(foreign.is_empty(), "calls outside the library: {foreign:?}");
    }
    let size = Command::new("arm-none-eabi-size").arg(&obj).output();
    if let Ok(size) = size {
        eprintln!("{}", String::from_utf8_lossy(&size.stdout));
    }
}

fn python_e2e(addr: &str, mode: &str) -> Option<std::thread::JoinHandle<Output>> {
    python_e2e_with(addr, mode, &[])
}

fn python_e2e_with(addr: &str, mode: &str, extra: &[&str]) -> Option<std::thread::JoinHandle<Output>> {
    let python = require_tool("python3")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/python/tests/e2e.py");
    let port = port_of(addr);
    let mode = mode.to_string();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    Some(std::thread::spawn(move || {
        let child = Command::new(python)
            .arg(script)
            .args(["127.0.0.1", &port, &mode])
            .args(&extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        common::output_within(child, Duration::from_secs(60), "e2e.py")
    }))
}

#[test]
fn the_python_module_sends_files_texts_and_pings_and_gets_commands() {
    let mut c = Console::start(&["--auto-delay-ms", "10000"]);
    let Some(script) = python_e2e(&c.addr().to_string(), "basic") else {
        return;
    };
    c.wait_text_in("py ready");
    c.command("/to py-1");
    c.command("status");
    let out = script.join().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("SAVED py-1/hello.txt"), "{said}");
    assert!(said.contains("COMMAND status"), "{said}");
    assert!(said.contains("PING"), "{said}");
    c.wait_text_in("ok: status");
    assert_eq!(
        std::fs::read(c.dir().join("py-1/hello.txt")).unwrap(),
        b"hello bytes"
    );
    let big = c
        .events_of("file_saved")
        .into_iter()
        .find(|e| e["size"] == 200_000)
        .expect("the 200,000-byte file");
    assert_eq!(
        std::fs::metadata(big["path"].as_str().unwrap()).unwrap().len(),
        200_000
    );
}

#[test]
fn the_python_module_raises_file_rejected_with_the_reason() {
    let c = Console::start(&["--auto-delay-ms", "10000", "--max-file-size", "1KiB"]);
    let Some(script) = python_e2e(&c.addr().to_string(), "reject") else {
        return;
    };
    let out = script.join().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("REJECTED REFUSED 5"), "{said}");
}

/// Kills QEMU however the test ends.
struct Qemu(std::process::Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The BMP the board generates for capture number `n`.
fn board_capture(n: u32) -> Vec<u8> {
    let (w, h) = (64u32, 64u32);
    let size = 54 + w * h * 3;
    let mut bmp = vec![0u8; 54];
    bmp[..2].copy_from_slice(b"BM");
    bmp[2..6].copy_from_slice(&size.to_le_bytes());
    bmp[10..14].copy_from_slice(&54u32.to_le_bytes());
    bmp[14..18].copy_from_slice(&40u32.to_le_bytes());
    bmp[18..22].copy_from_slice(&w.to_le_bytes());
    bmp[22..26].copy_from_slice(&h.to_le_bytes());
    bmp[26] = 1;
    bmp[28] = 24;
    bmp[34..38].copy_from_slice(&(w * h * 3).to_le_bytes());
    for px in 0..w * h {
        let (x, y) = (px % w, px / w);
        bmp.extend([(x * 4) as u8, (y * 4) as u8, (n * 40) as u8]);
    }
    bmp
}

/// Builds the netduino2 firmware with its Makefile; None after a loud skip.
fn netduino2_firmware(tag: &str) -> Option<PathBuf> {
    require_tool("arm-none-eabi-gcc")?;
    require_tool("make")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let elf =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("netduino2-{tag}-{}.elf", std::process::id()));
    let built = Command::new("make")
        .arg("-C")
        .arg(root.join("sdk/c/examples/netduino2"))
        .arg(format!("OUT={}", elf.display()))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&built.stdout));
    Some(elf)
}

fn boot_board(qemu: &Path, elf: &Path, to: &str) -> Qemu {
    Qemu(
        Command::new(qemu)
            .args(["-M", "netduino2", "-nographic", "-monitor", "none", "-serial"])
            .arg(format!("tcp:{to}"))
            .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
            .arg(elf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Drives the board: round trips, a capture checked byte for byte, then `quit`.
fn operate_board(c: &mut Console, qemu: &mut Qemu) {
    c.wait_for(
        |e| {
            e["event"] == "text"
                && e["device"] == "netduino2"
                && e["text"].as_str().is_some_and(|t| t.starts_with("boot"))
        },
        WAIT_FILE,
    );
    c.command("/to netduino2");
    c.command("ping");
    c.wait_text_in("pong");
    c.command("led on");
    c.wait_text_in("led is on");
    c.command("led off");
    c.wait_text_in("led is off");
    c.command("capture");
    let saved = c.wait_event_within("file_saved", &[("device", "netduino2".into())], WAIT_FILE);
    assert_eq!(saved["name"], "capture-0001.bmp", "{saved}");
    let bmp = std::fs::read(saved["path"].as_str().unwrap()).unwrap();
    assert!(bmp.len() >= 10 * 1024);
    assert_eq!(
        u32::from_le_bytes(bmp[2..6].try_into().unwrap()) as usize,
        bmp.len()
    );
    assert_eq!(bmp, board_capture(1));
    c.wait_text_in("capture done");
    c.command("quit");
    let gone = c.wait_event("disconnected", &[("device", "netduino2".into())]);
    assert!(gone["reason"].as_str().unwrap().contains("quit"), "{gone}");
    // Semihosting ends QEMU.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = qemu.0.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "QEMU still running after quit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_emulated_stm32_boots_answers_captures_and_quits() {
    let Some(elf) = netduino2_firmware("direct") else {
        return;
    };
    let Some(qemu) = require_tool("qemu-system-arm") else {
        return;
    };
    // A frames listener: QEMU connects as soon as it starts, before the board speaks.
    let mut c = Console::start(&["--listen", "frames://127.0.0.1:0"]);
    let mut board = boot_board(&qemu, &elf, &c.addr().to_string());
    operate_board(&mut c, &mut board);
}

#[test]
fn an_emulated_stm32_through_a_stalling_bridge_that_flips_bits() {
    let Some(elf) = netduino2_firmware("bridge") else {
        return;
    };
    let Some(qemu) = require_tool("qemu-system-arm") else {
        return;
    };
    let mut c = Console::start(&["--listen", "frames://127.0.0.1:0"]);
    let bridge = Bridge::start(
        c.addr(),
        &[
            "--rate",
            "400KB",
            "--buffer",
            "4096",
            "--stall",
            "100/300",
            "--flip-every",
            "3000",
            "--json",
        ],
    );
    let addr = bridge.addr.clone();
    let mut board = boot_board(&qemu, &elf, &addr);
    operate_board(&mut c, &mut board);
    let counters = bridge.counters();
    eprintln!("netduino2 through the bridge: {counters}");
    assert!(counters["flipped"].as_u64().unwrap() > 0, "{counters}");
    assert_eq!(counters["dropped"], 0, "the window (2048) holds: {counters}");
}

#[test]
fn the_c_library_and_the_python_module_agree_with_every_vector_in_every_split() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let vectors = root.join("tests/vectors/frames.txt");
    if let Some(exe) = build_host("vectors", "sdk/c/tests/vectors.c", &["-DBL_TEST_HOOKS"]) {
        let run = Command::new(&exe).arg(&vectors).output().unwrap();
        let said = String::from_utf8_lossy(&run.stdout);
        eprintln!("C: {said}");
        assert!(run.status.success() && said.contains(": ok"), "{said}");
    }
    if let Some(python) = require_tool("python3") {
        let run = Command::new(python)
            .arg(root.join("sdk/python/tests/vectors.py"))
            .arg(&vectors)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&run.stdout);
        eprintln!("Python: {said}");
        assert!(
            run.status.success() && said.contains(": ok"),
            "{said} {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
}

#[test]
fn the_python_module_resumes_after_a_dropped_connection() {
    let mut c = Console::start(&["--auto-delay-ms", "10000"]);
    // The script drops its own link midway (a closed socket), then must resume.
    let Some(script) = python_e2e(&c.addr().to_string(), "reconnect") else {
        return;
    };
    let out = script.join().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("SAVED py-3/big.bin"), "{said}");
    let want: Vec<u8> = (0..6_000_000 / 256).flat_map(|_| 0..=255u8).collect();
    assert_eq!(std::fs::read(c.dir().join("py-3/big.bin")).unwrap(), want);
    let failed = c.wait_event("file_failed", &[("device", "py-3".into())]);
    assert!(
        failed["reason"].as_str().unwrap().contains("interrupted"),
        "{failed}"
    );
    // Resumed, not sent again: one file, no leftover .part.
    let mut names: Vec<String> = std::fs::read_dir(c.dir().join("py-3"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains("big"))
        .collect();
    names.sort();
    assert_eq!(names, ["big.bin"]);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_emulated_stm32_resumes_its_capture_when_the_console_comes_back() {
    let Some(elf) = netduino2_firmware("reconnect") else {
        return;
    };
    let Some(qemu) = require_tool("qemu-system-arm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().display().to_string();
    let port = free_port();
    let listen = format!("frames://127.0.0.1:{port}");
    let console_args = ["--listen", listen.as_str(), "--dir", dir_arg.as_str()];
    let mut first = Console::start(&console_args);
    // A slow link (4 KB/s) so the capture is still on its way when the console stops.
    let bridge = Bridge::start(first.addr(), &["--rate", "4KB", "--buffer", "65536", "--json"]);
    let _board = Qemu(
        Command::new(&qemu)
            .args(["-M", "netduino2", "-nographic", "-monitor", "none", "-serial"])
            .arg(format!("tcp:{},reconnect=1", bridge.addr))
            .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
            .arg(&elf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    first.wait_for(
        |e| e["event"] == "text" && e["text"].as_str().is_some_and(|t| t.starts_with("boot")),
        WAIT_FILE,
    );
    first.command("/to netduino2");
    first.command("capture");
    first.wait_event("file_started", &[("device", "netduino2".into())]);
    std::thread::sleep(Duration::from_millis(800));
    first.command("/quit");
    let kept = first.wait_event("file_failed", &[("device", "netduino2".into())]);
    assert!(kept["part"].is_string(), "{kept}");
    assert!(first.wait_exit(Duration::from_secs(10)).success());
    drop(first);

    // The console comes back on the same port and folder; QEMU reconnects.
    let mut second = Console::start(&console_args);
    let saved = second.wait_event_within(
        "file_saved",
        &[("device", "netduino2".into())],
        Duration::from_secs(40),
    );
    assert_eq!(saved["name"], "capture-0001.bmp", "{saved}");
    assert_eq!(
        std::fs::read(saved["path"].as_str().unwrap()).unwrap(),
        board_capture(1)
    );
    let leftovers: Vec<String> = std::fs::read_dir(dir.path().join("netduino2"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".bmp") || n.ends_with(".part"))
        .collect();
    // (A stray `.capture-0001.bmp.part.meta` sidecar is sometimes left: known, see issue 10.)
    assert_eq!(leftovers, ["capture-0001.bmp"], "resumed, not sent again");
}

#[test]
fn the_c_library_recovers_a_lost_saved_without_a_second_copy() {
    let Some(exe) = host_device() else {
        return;
    };
    let mut c = Console::start(&["--auto-delay-ms", "10000"]);
    let (_dir, file, data) = random_file("once.raw", 34, 200_000);
    let port = port_of(&c.addr().to_string());
    let child = Command::new(&exe)
        .args(["127.0.0.1", &port, "c-once"])
        .arg(&file)
        .args(["0", "drop-saved"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = common::output_within(child, Duration::from_secs(60), "host_device");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("DROPPED after FILE_END"), "{said}");
    assert!(said.contains("SAVED 200000 c-once/once.raw"), "{said}");
    assert_eq!(said.matches("READY").count(), 2, "{said}");
    assert_eq!(std::fs::read(c.dir().join("c-once/once.raw")).unwrap(), data);
    let copies: Vec<String> = std::fs::read_dir(c.dir().join("c-once"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains("once"))
        .collect();
    assert_eq!(copies, ["once.raw"], "one copy");
    assert_eq!(c.events_of("file_saved").len(), 1);
}

fn receiver(exe: &Path, port: &str, id: &str, dir: &Path, extra: &[&str]) -> std::process::Child {
    Command::new(exe)
        .args(["127.0.0.1", port, id])
        .arg(dir)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// `/push` to a board built on the C library: the file arrives through its
/// write callback (as a flash writer takes it) in frames that fit its 1 KiB
/// receive buffer, within its window, and the library checks the CRC before
/// it answers SAVED.
#[test]
fn the_c_library_receives_a_pushed_file_through_its_write_callback() {
    let Some(exe) = build_host("host_receiver", "sdk/c/tests/host_receiver.c", &[]) else {
        return;
    };
    let mut c = Console::start(&[]);
    let port = c.addr().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let child = receiver(&exe, &port, "c-board", dir.path(), &["2048"]);
    c.wait_event("connected", &[("device", "c-board".into())]);
    let (_src, file, data) = random_file("firmware.bin", 77, 150_000);
    let reply = c.command(&format!("/push {}", file.display()));
    assert_eq!(reply["ok"], true, "{reply}");
    c.wait_event_within("file_pushed", &[("name", "firmware.bin".into())], WAIT_FILE);
    let out = common::output_within(child, Duration::from_secs(30), "host_receiver");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("RECEIVED firmware.bin 150000"), "{said}");
    assert_eq!(std::fs::read(dir.path().join("firmware.bin")).unwrap(), data);
}

/// The link drops in the middle of a push; when the board is back the console
/// pushes again and the library resumes the same file where it stopped.
#[test]
fn a_push_to_the_c_library_resumes_after_the_link_drops() {
    let Some(exe) = build_host("host_receiver", "sdk/c/tests/host_receiver.c", &[]) else {
        return;
    };
    let mut c = Console::start(&[]);
    let port = c.addr().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let child = receiver(&exe, &port, "c-board", dir.path(), &["0", "drop-at", "60000"]);
    c.wait_event("connected", &[("device", "c-board".into())]);
    let (_src, file, data) = random_file("image.bin", 78, 130_000);
    c.command(&format!("/push {}", file.display()));
    let failed = c.wait_event_within("file_push_failed", &[("name", "image.bin".into())], WAIT_FILE);
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("sent again when it is back"),
        "{failed}"
    );
    c.wait_event_within("file_pushed", &[("name", "image.bin".into())], WAIT_FILE);
    let out = common::output_within(child, Duration::from_secs(30), "host_receiver");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("DROPPED at") && said.contains("RECEIVED image.bin 130000"),
        "{said}"
    );
    assert_eq!(
        said.matches("BEGIN image.bin").count(),
        1,
        "resumed, not begun again: {said}"
    );
    assert_eq!(std::fs::read(dir.path().join("image.bin")).unwrap(), data);
}

/// `/push` to the Python module: into a folder (NAME.part, then renamed), and
/// into a function, each checked by CRC-32 before SAVED.
#[test]
fn the_python_module_receives_pushed_files_into_a_folder_or_a_function() {
    let mut c = Console::start(&["--auto-delay-ms", "10000"]);
    let dir = tempfile::tempdir().unwrap();
    let dir_text = dir.path().display().to_string();
    let Some(script) = python_e2e_with(&c.addr().to_string(), "push-folder", &[&dir_text]) else {
        return;
    };
    c.wait_text_in("py waits for files");
    let (_src, file, data) = random_file("settings.bin", 91, 300_000);
    c.command("/to py-4");
    let reply = c.command(&format!("/push {}", file.display()));
    assert_eq!(reply["ok"], true, "{reply}");
    c.wait_event_within("file_pushed", &[("device", "py-4".into())], WAIT_FILE);
    let out = script.join().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("RECEIVED settings.bin"), "{said}");
    assert_eq!(std::fs::read(dir.path().join("settings.bin")).unwrap(), data);
    assert!(!dir.path().join("settings.bin.part").exists());

    let Some(script) = python_e2e(&c.addr().to_string(), "push-callback") else {
        return;
    };
    c.wait_text_in("py waits for files");
    c.command("/to py-5");
    c.command(&format!("/push {} renamed.bin", file.display()));
    c.wait_event_within("file_pushed", &[("device", "py-5".into())], WAIT_FILE);
    let out = script.join().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = format!("RECEIVED renamed.bin 300000 {:08x}", crc32fast::hash(&data));
    assert!(said.contains(&want), "{said}");
}
