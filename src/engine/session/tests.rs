//! One session over an in-memory link, on a paused tokio clock (as mini-redis
//! tests do): every deadline of the protocols is checked without sockets and
//! without waiting for it.

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::engine::event_queue::EventReceiver;
use crate::protocol::frames::{Decoded, FrameDecoder, Message};

fn settings(dir: &std::path::Path, extra: &[&str]) -> crate::config::Settings {
    let config = dir.join("empty.toml");
    std::fs::write(&config, "").unwrap();
    let mut args = vec![
        "benchlink".to_string(),
        "--dir".into(),
        dir.join("received").display().to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    crate::config::Settings::resolve(&crate::cli::Cli::parse_from(args)).unwrap()
}

/// A session on one end of a pipe; the test is the device on the other.
struct Bench {
    device: DuplexStream,
    events: EventReceiver,
    _dir: tempfile::TempDir,
}

/// A connection opened on `stream`, as a listener or a link would hand it over.
fn opened(shared: &Shared, stream: LinkStream, peer: Peer, base: &str) -> Opened {
    Opened {
        stream,
        peer,
        base: base.into(),
        conn: None,
        cancel: shared.cancel.child_token(),
        auto_cf: false,
        idle: None,
    }
}

fn start(listen: ListenProtocol, auto_cf: bool, extra: &[&str]) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let (shared, events) = crate::engine::test_shared(settings(dir.path(), extra));
    let (console_end, device) = tokio::io::duplex(1 << 20);
    let mut opened = opened(
        &shared,
        LinkStream::memory(console_end),
        Peer::Serial("/dev/ttyTEST0".into()),
        "ttyTEST0",
    );
    opened.auto_cf = auto_cf;
    tokio::spawn(run(shared, opened, listen, None));
    Bench {
        device,
        events,
        _dir: dir,
    }
}

impl Bench {
    /// The next event of this kind (others are skipped), within `within` of
    /// (paused) time.
    async fn event(&mut self, kind: &str, within: Duration) -> serde_json::Value {
        let found = tokio::time::timeout(within, async {
            loop {
                let event = self.events.recv().await.expect("events");
                let value = serde_json::to_value(&event).unwrap();
                if value["event"] == kind {
                    return value;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no {kind} event within {within:?}"))
    }

    async fn read_some(&mut self, within: Duration) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(within, self.device.read(&mut buf)).await {
            Ok(Ok(n)) => buf[..n].to_vec(),
            _ => Vec::new(),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_unterminated_line_shows_after_200_ms_of_silence() {
    let mut b = start(ListenProtocol::Lines, false, &[]);
    b.event("connected", Duration::from_secs(1)).await;
    b.device.write_all(b"> prompt without newline").await.unwrap();
    let before = tokio::time::Instant::now();
    let text = b.event("text", Duration::from_secs(1)).await;
    assert_eq!(text["text"], "> prompt without newline");
    let waited = before.elapsed();
    assert!(
        waited >= PARTIAL_LINE_IDLE && waited < PARTIAL_LINE_IDLE + Duration::from_millis(50),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_device_on_an_auto_listener_is_greeted_as_cf_after_the_delay() {
    let mut b = start(ListenProtocol::Auto, true, &["--auto-delay-ms", "300"]);
    let before = tokio::time::Instant::now();
    let connected = b.event("connected", Duration::from_secs(5)).await;
    assert_eq!(connected["protocol"], "cf");
    assert_eq!(before.elapsed(), Duration::from_millis(300));
    assert_eq!(b.read_some(Duration::from_secs(1)).await, b"hello client");
}

#[tokio::test(start_paused = true)]
async fn a_link_on_auto_greets_nothing_and_waits_for_the_device() {
    let mut b = start(ListenProtocol::Auto, false, &[]);
    assert!(
        b.read_some(Duration::from_secs(60)).await.is_empty(),
        "no greeting"
    );
    b.device.write_all(b"boot ok\r\n").await.unwrap();
    let connected = b.event("connected", Duration::from_secs(1)).await;
    assert_eq!(connected["protocol"], "lines");
    assert_eq!(b.event("text", Duration::from_secs(1)).await["text"], "boot ok");
}

#[tokio::test(start_paused = true)]
async fn a_frames_device_that_never_completes_a_frame_is_closed_after_10_s() {
    let mut b = start(ListenProtocol::Frames, false, &[]);
    let before = tokio::time::Instant::now();
    let error = b.event("error", Duration::from_secs(30)).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("no complete frame within 10 s"),
        "{error}"
    );
    assert_eq!(before.elapsed(), frames::IDENTIFY_WITHIN);
}

#[tokio::test(start_paused = true)]
async fn half_a_frame_is_abandoned_after_250_ms_and_the_next_frame_is_read() {
    let mut b = start(ListenProtocol::Frames, false, &[]);
    let mut hello = BytesMut::new();
    Message::Hello(vec![("id".into(), "cam".into())]).encode(&mut hello);
    b.device.write_all(&hello).await.unwrap();
    b.event("connected", Duration::from_secs(1)).await;
    // The start of a TEXT frame, then the link stalls (a bridge dropped the rest).
    let mut text = BytesMut::new();
    Message::Text("first".into()).encode(&mut text);
    b.device.write_all(&text[..text.len() - 3]).await.unwrap();
    tokio::time::sleep(frames::FRAME_STALL + Duration::from_millis(10)).await;
    // A whole frame after the stall is read as it is, not as the old frame's tail.
    let mut next = BytesMut::new();
    Message::Text("second".into()).encode(&mut next);
    b.device.write_all(&next).await.unwrap();
    let said = b.event("text", Duration::from_secs(1)).await;
    assert_eq!(said["text"], "second");
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let mut b = start(ListenProtocol::Lines, false, &["--idle-timeout", "10m"]);
    b.event("connected", Duration::from_secs(1)).await;
    let before = tokio::time::Instant::now();
    let gone = b.event("disconnected", Duration::from_secs(3600)).await;
    assert_eq!(before.elapsed(), Duration::from_secs(600));
    assert!(
        gone["reason"].as_str().unwrap().contains("silent for 10 min"),
        "{gone}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_welcome_names_the_device_and_a_ping_is_answered() {
    let mut b = start(ListenProtocol::Frames, false, &[]);
    let mut out = BytesMut::new();
    Message::Hello(vec![("id".into(), "stm32-cam".into())]).encode(&mut out);
    Message::Ping(bytes::Bytes::from_static(b"7")).encode(&mut out);
    b.device.write_all(&out).await.unwrap();
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    while got.len() < 2 {
        buf.extend_from_slice(&b.read_some(Duration::from_secs(1)).await);
        while let Some(Decoded::Frame(f)) = decoder.decode(&mut buf) {
            got.push(Message::from_frame(f).unwrap());
        }
    }
    assert!(
        matches!(&got[0], Message::Welcome(kv) if kv.iter().any(|(k, v)| k == "name" && v == "stm32-cam")),
        "{got:?}"
    );
    assert_eq!(got[1], Message::Pong(bytes::Bytes::from_static(b"7")));
}

/// The article's device: `f`, a BMP, then the close; the file is saved whole
/// and named by its format, with no socket in the way.
#[tokio::test]
async fn a_cf_file_runs_until_the_close_and_is_saved_by_its_format() {
    let mut b = start(ListenProtocol::Cf, false, &[]);
    assert_eq!(b.read_some(Duration::from_secs(5)).await, b"hello client");
    b.event("connected", Duration::from_secs(5)).await;
    // A 4x4 24-bit BMP: the header's size field says 102 bytes.
    let mut bmp = Vec::new();
    bmp.extend_from_slice(b"BM");
    bmp.extend_from_slice(&102u32.to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&4i32.to_le_bytes());
    bmp.extend_from_slice(&4i32.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 24]);
    bmp.extend((0..48).map(|i| i as u8));
    assert_eq!(bmp.len(), 102);
    b.device.write_all(b"f").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.device.write_all(&bmp).await.unwrap();
    b.device.shutdown().await.unwrap();
    drop(b.device);
    let saved = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let event = b.events.recv().await.expect("events");
            let value = serde_json::to_value(&event).unwrap();
            if value["event"] == "file_saved" || value["event"] == "file_failed" {
                return value;
            }
        }
    })
    .await
    .expect("the file is saved or failed");
    assert_eq!(saved["event"], "file_saved", "{saved}");
    assert!(saved["name"].as_str().unwrap().ends_with(".bmp"), "{saved}");
    assert_eq!(saved["size"], 102);
    let path = std::path::PathBuf::from(saved["path"].as_str().unwrap());
    assert_eq!(std::fs::read(path).unwrap(), bmp);
}

/// 10,000 idle devices are 10,000 of these tasks: their size is most of a
/// device's memory (docs/performance.md), so it must not creep up unseen.
#[tokio::test]
async fn an_idle_session_task_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, _events) = crate::engine::test_shared(settings(dir.path(), &[]));
    let (console_end, _device) = tokio::io::duplex(64);
    let opened = opened(
        &shared,
        LinkStream::memory(console_end),
        Peer::Serial("/dev/ttyTEST0".into()),
        "ttyTEST0",
    );
    let task = run(shared, opened, ListenProtocol::Lines, None);
    let size = std::mem::size_of_val(&task);
    // 1,400 bytes on Rust 1.95 (1,768 before the task stopped keeping run's
    // arguments); a little room for the compiler's layout choices.
    let session = std::mem::size_of::<Session>();
    assert!(
        size <= 1536,
        "a session's task is {size} bytes (Session {session})"
    );
}

/// Devices that stream a file but read nothing back (not even the flow
/// control's PROGRESS) must not keep the streaming turns they took: another
/// device's upload goes on meanwhile, not after their 10 s write timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_that_read_nothing_back_do_not_stall_the_other_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, mut events) = crate::engine::test_shared(settings(dir.path(), &[]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    for i in 0..shared.bulk_turns.available_permits() {
        // Small socket buffers on the way back: the console's acknowledgements
        // fill them after a few megabytes, and its writes then wait.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(2048).unwrap();
        let mut device = socket.connect(listener.local_addr().unwrap()).await.unwrap();
        let (console_end, peer) = listener.accept().await.unwrap();
        socket2::SockRef::from(&console_end)
            .set_send_buffer_size(2048)
            .unwrap();
        let opened = opened(
            &shared,
            LinkStream::tcp(console_end),
            Peer::Net(peer),
            &format!("flood{i}"),
        );
        tokio::spawn(run(shared.clone(), opened, ListenProtocol::Frames, None));
        tokio::spawn(async move {
            let mut out = BytesMut::new();
            let hello = vec![
                ("id".into(), format!("flood{i}")),
                ("window".into(), "65536".into()),
            ];
            Message::Hello(hello).encode(&mut out);
            let begin = Message::FileBegin {
                file_id: 1,
                size: None,
                name: "flood.bin".into(),
                resume: false,
            };
            begin.encode(&mut out);
            device.write_all(&out).await?;
            let data = Bytes::from(vec![0x55u8; 60 * 1024]);
            for offset in (0u64..).step_by(data.len()) {
                let mut frame = BytesMut::new();
                let data = data.clone();
                Message::FileData {
                    file_id: 1,
                    offset,
                    data,
                }
                .encode(&mut frame);
                device.write_all(&frame).await?;
            }
            Ok::<_, std::io::Error>(())
        });
    }
    // The floods fill the way back, and their sessions wait writing to them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A device on TCP, whose large reads make its session stream and need turns.
    let mut device = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (console_end, peer) = listener.accept().await.unwrap();
    let opened = opened(&shared, LinkStream::tcp(console_end), Peer::Net(peer), "cam");
    tokio::spawn(run(shared.clone(), opened, ListenProtocol::Cf, None));
    let mut greeting = [0u8; 12];
    device.read_exact(&mut greeting).await.unwrap();
    let file: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let started = std::time::Instant::now();
    let sent = file.clone();
    // Its own task: a stalled console would otherwise block this write for ever.
    tokio::spawn(async move {
        device.write_all(b"f").await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        device.write_all(&sent).await?;
        device.shutdown().await
    });
    let saved = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let value = serde_json::to_value(events.recv().await.expect("events")).unwrap();
            if value["device"] == "cam" && (value["event"] == "file_saved" || value["event"] == "file_failed")
            {
                return value;
            }
        }
    })
    .await
    .expect("the upload ends");
    assert_eq!(saved["event"], "file_saved", "{saved}");
    assert_eq!(saved["size"], file.len());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the upload waited {:?} for the floods' turns",
        started.elapsed()
    );
}
