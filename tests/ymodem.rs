//! YMODEM both ways against lrzsz, the reference implementation: `sz --ymodem`
//! sends to the console (a `ymodem://` listener, and `/rz` on a lines link),
//! and the console's `/sz` sends to `rb`, each behind
//! `socat TCP:HOST:PORT EXEC:...`. The batch holds the awkward files: an empty
//! one, one ending in 0x1A (YMODEM's own padding byte), one of exactly 3072
//! bytes (three whole 1K blocks) and a larger random one. Also through
//! `benchlink bridge` with stalls and flipped bits, where YMODEM's retries must
//! recover. Needs socat and lrzsz: a loud skip locally, a failure under CI=true.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Console, WAIT, WAIT_FILE, require_tool};
use serde_json::json;

fn batch(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut eof = vec![b'x'; 999];
    eof.push(0x1a);
    let mut seed = 0x2545_f491u32;
    let random: Vec<u8> = (0..100_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        })
        .collect();
    let files = vec![
        ("empty.bin".to_string(), Vec::new()),
        ("ends-in-1a.bin".to_string(), eof),
        (
            "three-k.bin".to_string(),
            (0..3072u32).map(|i| (i % 251) as u8).collect(),
        ),
        ("random.bin".to_string(), random),
    ];
    for (name, data) in &files {
        std::fs::write(dir.join(name), data).unwrap();
    }
    files
}

/// `socat TCP:addr EXEC:'command'`, run in `cwd`.
fn socat_exec(socat: &Path, addr: &str, command: &str, cwd: &Path) -> Child {
    Command::new(socat)
        .args([format!("TCP:{addr}"), format!("EXEC:{command}")])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start socat")
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "socat/lrzsz did not finish within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tools() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let socat = require_tool("socat")?;
    let sz = require_tool("sz")?;
    let rb = require_tool("rb")?;
    Some((socat, sz, rb))
}

fn check_saved(c: &mut Console, files: &[(String, Vec<u8>)]) {
    for (name, data) in files {
        let saved = c.wait_event_within("file_saved", &[("name", json!(name))], WAIT_FILE);
        assert_eq!(saved["size"], data.len(), "{saved}");
        let path = PathBuf::from(saved["path"].as_str().unwrap());
        assert_eq!(&std::fs::read(&path).unwrap(), data, "{name} is byte-identical");
    }
}

#[test]
fn sz_sends_a_batch_to_a_ymodem_listener() {
    let Some((socat, sz, _)) = tools() else { return };
    let src = tempfile::tempdir().unwrap();
    let files = batch(src.path());
    let mut c = Console::start(&["--listen", "ymodem://127.0.0.1:0"]);
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    let command = format!("{} --ymodem -q {}", sz.display(), names.join(" "));
    let mut child = socat_exec(&socat, &c.addr().to_string(), &command, src.path());
    let connected = c.wait_event("connected", &[]);
    assert_eq!(connected["protocol"], "ymodem");
    check_saved(&mut c, &files);
    let done = c.wait_for(
        |e| {
            e["event"] == "reply"
                && e["command"] == "/rz"
                && e["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("received 4 file(s)"))
        },
        WAIT_FILE,
    );
    assert_eq!(done["ok"], true);
    assert!(wait_exit(&mut child, WAIT_FILE).success(), "sz finished cleanly");
}

#[test]
fn rz_on_a_lines_link_receives_then_the_link_is_text_again() {
    let Some((socat, sz, _)) = tools() else { return };
    let src = tempfile::tempdir().unwrap();
    let files = batch(src.path());
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0"]);
    // sz waits for its receiver to ask; the console asks when told /rz.
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    let command = format!("{} --ymodem -q {}", sz.display(), names.join(" "));
    let mut child = socat_exec(&socat, &c.addr().to_string(), &command, src.path());
    c.wait_event("connected", &[]);
    let reply = c.command("/rz");
    assert_eq!(reply["ok"], true, "{reply}");
    check_saved(&mut c, &files);
    c.wait_for(
        |e| {
            e["event"] == "reply"
                && e["command"] == "/rz"
                && e["text"].as_str().is_some_and(|t| t.contains("back to text"))
        },
        WAIT_FILE,
    );
    assert!(wait_exit(&mut child, WAIT_FILE).success());
}

#[test]
fn sz_from_the_console_reaches_rb_byte_identical() {
    let Some((socat, _, rb)) = tools() else { return };
    let src = tempfile::tempdir().unwrap();
    let files = batch(src.path());
    let dst = tempfile::tempdir().unwrap();
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0"]);
    let command = format!("{} -q", rb.display());
    let mut child = socat_exec(&socat, &c.addr().to_string(), &command, dst.path());
    c.wait_event("connected", &[]);
    let paths: Vec<String> = files
        .iter()
        .map(|(name, _)| src.path().join(name).display().to_string())
        .collect();
    let reply = c.command(&format!("/sz {}", paths.join(" ")));
    assert_eq!(reply["ok"], true, "{reply}");
    for (name, data) in &files {
        let pushed = c.wait_event_within("file_pushed", &[("name", json!(name))], WAIT_FILE);
        assert_eq!(pushed["size"], data.len());
    }
    c.wait_for(|e| e["event"] == "reply" && e["command"] == "/sz", WAIT_FILE);
    let status = wait_exit(&mut child, WAIT_FILE);
    assert!(status.success(), "rb: {status}");
    for (name, data) in &files {
        let got = std::fs::read(dst.path().join(name)).unwrap_or_else(|e| panic!("rb has no {name}: {e}"));
        assert_eq!(&got, data, "{name} as rb wrote it");
    }
}

#[test]
fn sz_through_a_lossy_bridge_is_repaired_by_ymodem_itself() {
    let Some((socat, sz, _)) = tools() else { return };
    let src = tempfile::tempdir().unwrap();
    let files = batch(src.path());
    let mut c = Console::start(&["--listen", "ymodem://127.0.0.1:0"]);
    // A slow UART bridge that stalls and flips a bit every 20 KB or so.
    let bridge = common::bridge::Bridge::start(
        c.addr(),
        &[
            "--rate",
            "400000",
            "--stall",
            "100/700",
            "--flip-every",
            "20000",
            "--seed",
            "7",
            "--json",
        ],
    );
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    let command = format!("{} --ymodem -q {}", sz.display(), names.join(" "));
    let mut child = socat_exec(&socat, &bridge.addr, &command, src.path());
    check_saved(&mut c, &files);
    assert!(wait_exit(&mut child, WAIT_FILE).success());
    let counters = bridge.counters();
    eprintln!("bridge: {counters}");
    assert!(
        counters["flipped"].as_u64().unwrap() > 0,
        "bits were flipped: {counters}"
    );
}

#[test]
fn sz_refuses_what_it_cannot_send_and_frames_devices() {
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0"]);
    let mut dev = std::net::TcpStream::connect(c.addr()).unwrap();
    std::io::Write::write_all(&mut dev, b"hi\n").unwrap();
    c.wait_event("connected", &[]);
    let reply = c.command("/sz /no/such/file.bin");
    assert_eq!(reply["ok"], false);
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("cannot send /no/such/file.bin"),
        "{reply}"
    );
    let reply = c.command("/sz /tmp");
    assert!(
        reply["text"].as_str().unwrap().contains("not a regular file"),
        "{reply}"
    );
    let _ = WAIT;
}

// ST's IAP application (AN4657), emulated as a board would run it, written
// apart from the console's own YMODEM code so each checks the other.

static CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);
const SOH: u8 = 0x01;
const STX: u8 = 0x02;
const EOT: u8 = 0x04;
const ACK: u8 = 0x06;
const NAK: u8 = 0x15;

struct Uart(std::net::TcpStream);

impl Uart {
    fn connect(addr: std::net::SocketAddr) -> Uart {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        Uart(s)
    }

    fn put(&mut self, bytes: &[u8]) {
        std::io::Write::write_all(&mut self.0, bytes).unwrap();
    }

    /// One byte within `timeout`, as HAL_UART_Receive.
    fn get(&mut self, timeout: Duration) -> Option<u8> {
        self.0.set_read_timeout(Some(timeout)).unwrap();
        let mut b = [0u8; 1];
        match std::io::Read::read_exact(&mut self.0, &mut b) {
            Ok(()) => Some(b[0]),
            Err(_) => None,
        }
    }

    fn get_exact(&mut self, n: usize) -> Vec<u8> {
        self.0.set_read_timeout(Some(WAIT)).unwrap();
        let mut b = vec![0u8; n];
        std::io::Read::read_exact(&mut self.0, &mut b).unwrap();
        b
    }
}

fn st_packet(seq: u8, data: &[u8], len: usize, pad: u8) -> Vec<u8> {
    let mut p = vec![if len == 128 { SOH } else { STX }, seq, !seq];
    p.extend_from_slice(data);
    p.resize(3 + len, pad);
    let crc = CRC16.checksum(&p[3..]);
    p.extend_from_slice(&crc.to_be_bytes());
    p
}

/// Ymodem_Receive into a 64 KiB "flash" written 2 KiB page at a time: 'C'
/// each second until block 0, ACK then 'C', 1K blocks checked by CRC, EOT
/// ACKed at once (ST does not NAK the first), then the empty block 0.
fn st_iap_receive(uart: &mut Uart) -> Vec<(String, Vec<u8>)> {
    const PAGE: usize = 2048;
    let mut files = Vec::new();
    loop {
        // Ask for block 0 until it comes.
        let mut header = None;
        for _ in 0..60 {
            uart.put(b"C");
            if let Some(first) = uart.get(Duration::from_secs(1)) {
                header = Some(first);
                break;
            }
        }
        let first = header.expect("the console never sent block 0");
        assert!(
            first == SOH || first == STX,
            "block 0 starts with SOH/STX, got {first:#x}"
        );
        let len = if first == SOH { 128 } else { 1024 };
        let rest = uart.get_exact(2 + len + 2);
        assert_eq!(rest[0], 0);
        assert_eq!(CRC16.checksum(&rest[2..2 + len]).to_be_bytes(), rest[2 + len..]);
        let data = &rest[2..2 + len];
        if data[0] == 0 {
            uart.put(&[ACK]);
            return files;
        }
        let name_end = data.iter().position(|&b| b == 0).unwrap();
        let name = String::from_utf8(data[..name_end].to_vec()).unwrap();
        let size_text: String = data[name_end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .map(|&b| b as char)
            .collect();
        let size: usize = size_text.parse().unwrap();
        uart.put(&[ACK, b'C']);
        let mut flash = Vec::new();
        let mut page = Vec::with_capacity(PAGE);
        let mut expected = 1u8;
        loop {
            let head = uart.get(WAIT).expect("a block or EOT");
            if head == EOT {
                uart.put(&[ACK]);
                break;
            }
            let len = if head == SOH { 128 } else { 1024 };
            let rest = uart.get_exact(2 + len + 2);
            let ok =
                rest[0] == !rest[1] && CRC16.checksum(&rest[2..2 + len]).to_be_bytes() == rest[2 + len..];
            if !ok {
                uart.put(&[NAK]);
                continue;
            }
            if rest[0] == expected {
                for &b in &rest[2..2 + len] {
                    page.push(b);
                    if page.len() == PAGE {
                        flash.extend_from_slice(&page); // FLASH_If_Write of one page
                        page.clear();
                    }
                }
                expected = expected.wrapping_add(1);
            }
            uart.put(&[ACK]);
        }
        flash.extend_from_slice(&page);
        flash.truncate(size);
        files.push((name, flash));
    }
}

/// Ymodem_Transmit of one file: waits for 'C', block 0 (128 bytes, name and
/// size), 1K blocks (128 for a short last one), EOT until ACKed, then the
/// empty block 0.
fn st_iap_transmit(uart: &mut Uart, name: &str, data: &[u8]) {
    let wait_for = |uart: &mut Uart, want: u8| {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no {want:#x} from the console");
            if uart.get(Duration::from_millis(500)) == Some(want) {
                return;
            }
        }
    };
    wait_for(uart, b'C');
    let mut header = name.as_bytes().to_vec();
    header.push(0);
    header.extend_from_slice(data.len().to_string().as_bytes());
    header.push(0);
    uart.put(&st_packet(0, &header, 128, 0));
    wait_for(uart, ACK);
    wait_for(uart, b'C');
    for (i, chunk) in data.chunks(1024).enumerate() {
        let len = if chunk.len() <= 128 { 128 } else { 1024 };
        let packet = st_packet((i + 1) as u8, chunk, len, 0x1a);
        loop {
            uart.put(&packet);
            match uart.get(WAIT) {
                Some(ACK) => break,
                Some(NAK) => continue,
                other => panic!("the console answered a block with {other:?}"),
            }
        }
    }
    loop {
        uart.put(&[EOT]);
        match uart.get(WAIT) {
            Some(ACK) => break,
            Some(NAK) => continue,
            other => panic!("the console answered EOT with {other:?}"),
        }
    }
    wait_for(uart, b'C');
    uart.put(&st_packet(0, &[], 128, 0));
    wait_for(uart, ACK);
}

#[test]
fn an_st_iap_style_board_receives_firmware_from_sz() {
    let src = tempfile::tempdir().unwrap();
    let firmware: Vec<u8> = (0..40_000u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    let path = src.path().join("app.bin");
    std::fs::write(&path, &firmware).unwrap();
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0"]);
    let mut board = Uart::connect(c.addr());
    // The IAP menu, then the operator's /sz, then the board's '1' (download).
    board.put(b"=== Main Menu ===\r\n  Download image to the internal Flash ----- 1\r\n");
    c.wait_event("connected", &[]);
    let reply = c.command(&format!("/sz {}", path.display()));
    assert_eq!(reply["ok"], true, "{reply}");
    board.put(b"Waiting for the file to be sent ... (press 'a' to abort)\r\n");
    let got = st_iap_receive(&mut board);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "app.bin");
    assert!(got[0].1 == firmware, "the flash holds the firmware");
    c.wait_event_within("file_pushed", &[("name", json!("app.bin"))], WAIT_FILE);
}

#[test]
fn an_st_iap_style_board_uploads_to_rz() {
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0"]);
    let mut board = Uart::connect(c.addr());
    board.put(b"Upload image from the internal Flash ----- 2\r\n");
    c.wait_event("connected", &[]);
    let reply = c.command("/rz");
    assert_eq!(reply["ok"], true, "{reply}");
    let image: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
    st_iap_transmit(&mut board, "UploadedFlashImage.bin", &image);
    let saved = c.wait_event_within(
        "file_saved",
        &[("name", json!("UploadedFlashImage.bin"))],
        WAIT_FILE,
    );
    assert_eq!(std::fs::read(saved["path"].as_str().unwrap()).unwrap(), image);
    // Back to text: the board's next line is a line.
    board.put(b"Upload finished\r\n");
    c.wait_event("text", &[("text", json!("Upload finished"))]);
}
