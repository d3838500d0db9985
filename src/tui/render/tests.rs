//! Whole-screen rendering tests: fixed states drawn on a `TestBackend`, compared
//! with insta snapshots, plus checks no snapshot can make (control characters,
//! NO_COLOR, huge lists, tiny terminals).

use chrono::{DateTime, Local, TimeZone};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier};

use super::draw;
use crate::engine::journal::ReceivedRecord;
use crate::engine::{ConnCounters, ConnId, Direction, Event, EventKind};
use crate::tui::app::{App, Notice, Preview, PreviewContent};
use crate::tui::layout::Panes;
use crate::tui::theme::Theme;

/// 2026-11-26 12:00:00 local time, plus `secs`.
fn at(secs: i64) -> DateTime<Local> {
    Local.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).earliest().unwrap() + chrono::Duration::seconds(secs)
}

fn ev(secs: i64, kind: EventKind) -> Event {
    Event { ts: at(secs), kind }
}

fn listening(addr: &str, protocol: &str) -> EventKind {
    EventKind::Listening {
        addr: addr.into(),
        protocol: protocol.into(),
        dir: "/home/lab/received".into(),
    }
}

fn connected(conn: ConnId, device: &str, peer: &str, protocol: &str) -> EventKind {
    EventKind::Connected {
        conn,
        device: device.into(),
        peer: peer.into(),
        protocol: protocol.into(),
    }
}

fn said(conn: ConnId, device: &str, direction: Direction, text: &str) -> EventKind {
    EventKind::Text {
        conn,
        device: device.into(),
        direction,
        text: text.into(),
        raw: Some(bytes::Bytes::copy_from_slice(text.as_bytes())),
    }
}

fn started(conn: ConnId, device: &str, name: &str, size: Option<u64>) -> EventKind {
    EventKind::FileStarted {
        conn,
        device: device.into(),
        name: name.into(),
        size,
        resumed_from: None,
    }
}

fn progress(conn: ConnId, device: &str, name: &str, bytes: u64) -> EventKind {
    EventKind::FileProgress {
        conn,
        device: device.into(),
        name: name.into(),
        bytes,
    }
}

fn saved(conn: ConnId, device: &str, name: &str, size: u64) -> EventKind {
    EventKind::FileSaved {
        conn,
        device: device.into(),
        name: name.into(),
        path: format!("/home/lab/received/{device}/{name}"),
        size,
        crc32: 0x1234_5678,
        seconds: 2.0,
        ended_by_close: false,
    }
}

/// No device yet: one listener, the files folder, one LAN address.
fn empty_console() -> App {
    let mut app = App::new(at(0));
    app.model.lan = vec!["192.168.1.50".into()];
    app.on_event(ev(0, listening("0.0.0.0:9999", "auto")));
    app
}

/// A minute of a busy bench: three devices (one gone), conversations, a transfer
/// with a size and a cf one without, received files with a failure, a file from an
/// earlier run, and a minute of throughput history. `app.model.now` is 12:01:00.
fn busy_console() -> App {
    let mut app = App::new(at(0));
    app.model.lan = vec!["192.168.1.50".into()];
    app.load_received([ReceivedRecord {
        time: at(-86_400).to_rfc3339(),
        device: "cam-1".into(),
        peer: "192.168.1.101:50001".into(),
        name: "img_0040.jpg".into(),
        path: "/home/lab/received/cam-1/img_0040.jpg".into(),
        size: 148_211,
        crc32: 1,
        seconds: 1.0,
        protocol: "frames".into(),
    }]);
    let mut timeline: Vec<(i64, EventKind)> = vec![
        (0, listening("0.0.0.0:9999", "auto")),
        (0, listening("0.0.0.0:9998", "cf")),
        (2, connected(1, "cam-1", "192.168.1.101:50001", "frames")),
        (3, said(1, "cam-1", Direction::In, "ready fw=1.4.2 heap=182344")),
        (4, connected(2, "sensor-03", "192.168.1.103:49152", "lines")),
        (
            5,
            said(2, "sensor-03", Direction::In, "temp=21.5 hum=40 vbat=3.71"),
        ),
        (6, connected(3, "cf-cam", "192.168.1.120:1024", "cf")),
        (8, said(1, "cam-1", Direction::Out, "capture 3")),
        (9, said(1, "cam-1", Direction::In, "ok capturing 3 frames")),
        (10, started(1, "cam-1", "img_0041.jpg", Some(153_600))),
        (13, progress(1, "cam-1", "img_0041.jpg", 80_000)),
        (16, saved(1, "cam-1", "img_0041.jpg", 153_600)),
        (
            20,
            said(2, "sensor-03", Direction::In, "temp=21.6 hum=41 vbat=3.70"),
        ),
        (24, started(2, "sensor-03", "log-2026-11-26.csv", Some(52_000))),
        (
            26,
            EventKind::FileFailed {
                conn: 2,
                device: "sensor-03".into(),
                name: "log-2026-11-26.csv".into(),
                reason: "connection closed after 12.0 KiB".into(),
                part: Some("/home/lab/received/sensor-03/log-2026-11-26.csv.part".into()),
            },
        ),
        (
            26,
            EventKind::Disconnected {
                conn: 2,
                device: "sensor-03".into(),
                reason: "reset by peer".into(),
                bytes_in: 0,
                bytes_out: 0,
                crc_errors: 0,
                rewinds: 0,
            },
        ),
        (
            30,
            said(
                1,
                "cam-1",
                Direction::In,
                "frame 2 of 3 queued, exposure 12 ms, gain 4",
            ),
        ),
        (40, started(1, "cam-1", "img_0042.jpg", Some(1_228_800))),
        (44, started(3, "cf-cam", "capture.bin", None)),
        (45, said(3, "cf-cam", Direction::In, "CF1 sending")),
        (60, progress(1, "cam-1", "img_0042.jpg", 491_520)),
        (60, progress(3, "cf-cam", "capture.bin", 350_000)),
        (60, said(1, "cam-1", Direction::Out, "status")),
    ];
    timeline.sort_by_key(|(s, _)| *s);
    let mut events = timeline.into_iter().peekable();
    // Counters as the engine reports them each second.
    let counters = |s: u64| {
        let cam =
            200 * s + if s >= 10 { 20_000 * (s.min(16) - 10) } else { 0 } + 24_576 * s.saturating_sub(40);
        let cf = 17_500 * s.saturating_sub(44);
        let mut devices = vec![
            ConnCounters {
                conn: 1,
                bytes_in: cam,
                bytes_out: 40 + s,
                ..Default::default()
            },
            ConnCounters {
                conn: 3,
                bytes_in: cf,
                bytes_out: 0,
                ..Default::default()
            },
        ];
        if s < 26 {
            devices.push(ConnCounters {
                conn: 2,
                bytes_in: 60 * s + if s >= 24 { 6_000 * (s - 23) } else { 0 },
                bytes_out: 0,
                ..Default::default()
            });
        }
        devices
    };
    for s in 0..=60 {
        while let Some((_, kind)) = events.next_if(|(t, _)| *t == s) {
            app.on_event(ev(s, kind));
        }
        if s > 0 {
            app.on_event(ev(
                s,
                EventKind::Stats {
                    devices: counters(s as u64),
                },
            ));
            app.tick(at(s));
        }
    }
    assert!(events.next().is_none());
    app.prompt.notice = Some(Notice {
        ok: true,
        text: "sent to cam-1".into(),
    });
    app.prompt.input = tui_input::Input::new("capture 3".into());
    assert_eq!(app.model.now, at(60));
    app
}

/// The reply `/list` gives, in the engine's format.
fn list_reply() -> String {
    let rows = [
        (
            "*",
            1,
            "cam-1",
            "frames",
            "192.168.1.101:50001",
            58,
            "1.85 MiB",
            "100 B",
        ),
        (
            " ",
            3,
            "cf-cam",
            "cf",
            "192.168.1.120:1024",
            54,
            "280.76 KiB",
            "0 B",
        ),
    ];
    let mut text = String::from("2 device(s) connected:");
    for (mark, conn, device, protocol, peer, secs, rx, tx) in rows {
        text.push_str(&format!(
            "\n{mark}#{conn} {device} {protocol} {peer} up {secs}s in {rx} out {tx}"
        ));
    }
    text
}

fn render(app: &App, width: u16, height: u16, theme: &Theme) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw(frame, app, theme, None)).unwrap();
    terminal
}

/// The screen as text, one quoted line per row (as `TestBackend` shows it).
///
/// A cf transfer's moving block sits where the epoch seconds of `app.model.now` put it, and
/// those depend on the machine's time zone; so runs of `█`/`░` that contain a `░`
/// (only that bar has them) are shown as a plain `░` bar. `the_cf_bar_moves_with_the_clock`
/// checks the block itself.
fn buffer_text(buffer: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buffer.area.height {
        out.push('"');
        let mut run = String::new();
        let mut skip = 0usize;
        for x in 0..buffer.area.width {
            let cell = &buffer[(x, y)];
            let symbol = cell.symbol();
            if skip == 0 {
                if symbol == "█" || symbol == "░" {
                    run.push_str(symbol);
                } else {
                    flush_bar(&mut run, &mut out);
                    out.push_str(symbol);
                }
            }
            skip = skip.max(unicode_width(symbol)).saturating_sub(1);
        }
        flush_bar(&mut run, &mut out);
        out.push_str("\"\n");
    }
    out
}

fn flush_bar(run: &mut String, out: &mut String) {
    if run.contains('░') {
        out.extend(run.chars().map(|_| '░'));
    } else {
        out.push_str(run);
    }
    run.clear();
}

fn unicode_width(symbol: &str) -> usize {
    ratatui::text::Span::raw(symbol).width()
}

fn screen_text(terminal: &Terminal<TestBackend>) -> String {
    buffer_text(terminal.backend().buffer())
}

fn snapshot_at(name: &str, app: &App, width: u16, height: u16) -> String {
    let terminal = render(app, width, height, &Theme::default_theme());
    let text = screen_text(&terminal);
    insta::assert_snapshot!(format!("{name}_{width}x{height}"), text);
    text
}

fn snapshot(name: &str, app: &App) {
    for (width, height) in [(80, 24), (140, 42)] {
        snapshot_at(name, app, width, height);
    }
}

fn area_text(buffer: &Buffer, area: Rect) -> String {
    let mut out = String::new();
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

// -------------------------------------------------------------- snapshots

#[test]
fn empty_console_screen() {
    snapshot("empty", &empty_console());
}

#[test]
fn busy_console_screen() {
    let app = busy_console();
    snapshot_at("busy", &app, 80, 24);
    let text = snapshot_at("busy", &app, 140, 42);
    for expected in [
        "Connections (2)",
        "Transfers (2)",
        "Received (3)",
        "sensor-03",
        "gone 34s",
        "img_0042.jpg",
        "capture.bin",
        "failed",
        "192.168.1.50:9999",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
}

#[test]
fn help_overlay() {
    let mut app = busy_console();
    app.help.open = true;
    snapshot("help", &app);
}

#[test]
fn list_reply_overlay() {
    let mut app = busy_console();
    app.on_event(ev(
        60,
        EventKind::Reply {
            command: "/list".into(),
            ok: true,
            text: list_reply(),
            devices: None,
            id: None,
        },
    ));
    assert!(app.overlay.is_some());
    snapshot("list_overlay", &app);
}

#[test]
fn all_devices_conversation() {
    let mut app = busy_console();
    app.conversation.show_all = true;
    app.focus = crate::tui::app::Focus::Conversation;
    snapshot("all_devices", &app);
}

#[test]
fn hex_preview() {
    let mut app = busy_console();
    let mut bytes = b"BLNK\x01\x00\x10\x00capture.bin\x00\xff\xfe\r\n".to_vec();
    bytes.extend((0u8..=255).cycle().skip(20).take(400));
    app.preview = Some(Preview {
        path: "/home/lab/received/cf-cam/capture.bin".into(),
        content: PreviewContent::Hex(bytes),
        offset: 0,
        total: 0,
    });
    snapshot("hex_preview", &app);
}

/// The log pane draws tui-logger's global log, which other tests (and anything
/// that logs) fill in any order: its inside is masked, the rest is a snapshot.
#[test]
fn log_pane() {
    let mut app = busy_console();
    app.show_log = true;
    // Nothing logged yet: the pane says so.
    let terminal = render(&app, 80, 24, &Theme::default_theme());
    let log = Panes::compute(Rect::new(0, 0, 80, 24), true).log;
    let text = area_text(terminal.backend().buffer(), log);
    assert!(text.contains("empty: the console's warnings"), "{text}");
    app.log_lines = 3;
    for (width, height) in [(80u16, 24u16), (140, 42)] {
        let terminal = render(&app, width, height, &Theme::default_theme());
        let log = Panes::compute(Rect::new(0, 0, width, height), true).log;
        assert!(log.height >= 3, "{log:?}");
        let title = area_text(terminal.backend().buffer(), log);
        assert!(title.contains("Log (F3 hides)"), "{title}");
        let inner = log.inner(ratatui::layout::Margin::new(1, 1));
        let mut buffer = terminal.backend().buffer().clone();
        for y in inner.top()..inner.bottom() {
            for x in inner.left()..inner.right() {
                buffer[(x, y)].set_symbol("~");
            }
        }
        insta::assert_snapshot!(format!("log_{width}x{height}"), buffer_text(&buffer));
    }
}

#[test]
fn tiny_screens() {
    let app = busy_console();
    snapshot_at("tiny", &app, 20, 5);
    snapshot_at("tiny", &app, 39, 11);
    for (width, height) in [(1, 1), (0, 0), (1, 0), (0, 1), (2, 2), (40, 12)] {
        render(&app, width, height, &Theme::default_theme());
    }
}

#[test]
fn no_size_and_no_state_panics() {
    let mut states = vec![App::new(at(0)), empty_console(), busy_console()];
    let busy = busy_console();
    let mut with = |f: &dyn Fn(&mut App)| {
        let mut app = busy.clone();
        f(&mut app);
        states.push(app);
    };
    with(&|a| a.help.open = true);
    with(&|a| a.show_log = true);
    with(&|a| a.conversation.show_all = true);
    with(&|a| a.conversation.scroll = 10_000);
    with(&|a| a.overlay = Some(("/list".into(), list_reply())));
    with(&|a| a.overlay = Some(("/list".into(), "\n\n".into())));
    for content in [
        PreviewContent::Loading,
        PreviewContent::Image {
            width: 640,
            height: 480,
        },
        PreviewContent::Hex(vec![0xab; 4096]),
        PreviewContent::Hex(Vec::new()),
        PreviewContent::Failed("unsupported image format".into()),
    ] {
        with(&move |a| {
            a.preview = Some(Preview {
                path: "/p".into(),
                content: content.clone(),
                offset: 0,
                total: 0,
            })
        });
    }
    with(&|a| a.prompt.input = tui_input::Input::new("x".repeat(500)));
    with(&|a| {
        a.prompt.notice = Some(Notice {
            ok: false,
            text: "e".repeat(500),
        })
    });
    let no_color = Theme::default_theme().without_colors();
    for (i, app) in states.iter().enumerate() {
        for width in [0, 1, 2, 9, 10, 20, 39, 40, 41, 80, 119, 200] {
            for height in [0, 1, 2, 3, 5, 11, 12, 13, 24, 60] {
                render(app, width, height, &Theme::default_theme());
                if i == 2 {
                    render(app, width, height, &no_color);
                }
            }
        }
    }
}

// ------------------------------------------------------------------ checks

/// Every control character (C0, DEL, C1) and every bidi control that `for_terminal`
/// promises to escape.
fn is_dangerous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

fn assert_no_dangerous_cells(buffer: &Buffer, what: &str) {
    for (i, cell) in buffer.content.iter().enumerate() {
        let symbol = cell.symbol();
        assert!(
            !symbol.chars().any(is_dangerous),
            "{what}: cell {} (x {}, y {}) holds {symbol:?}",
            i,
            i % buffer.area.width as usize,
            i / buffer.area.width as usize,
        );
    }
}

const HOSTILE: &str =
    "\u{1b}[31mred\u{1b}[0m \u{1b}]0;pwned\u{7} bell\u{7} cr\rover \u{202e}gnp.exe \u{9b}2J end";

/// A device sends escape sequences, BEL, CR, a bidi override and a C1 CSI, as
/// text, as a file name and in its name: no cell may hold any of them.
#[test]
fn device_control_characters_never_reach_the_screen() {
    let mut app = busy_console();
    let name = "evil\u{202e}cam\u{1b}[2J";
    app.on_event(ev(60, connected(9, name, "192.168.1.66:6666", "lines")));
    app.connections.selected = Some(9);
    app.on_event(ev(60, said(9, name, Direction::In, HOSTILE)));
    app.on_event(ev(60, said(9, name, Direction::Out, HOSTILE)));
    app.on_event(ev(60, started(9, name, HOSTILE, Some(1000))));
    app.on_event(ev(60, saved(1, "cam-1", HOSTILE, 10)));
    app.on_event(ev(
        60,
        EventKind::FileFailed {
            conn: 3,
            device: name.into(),
            name: HOSTILE.into(),
            reason: HOSTILE.into(),
            part: Some(HOSTILE.into()),
        },
    ));
    app.on_event(ev(
        60,
        EventKind::Error {
            message: HOSTILE.into(),
        },
    ));
    app.tick(at(60));
    app.prompt.input = tui_input::Input::new(HOSTILE.into());
    let theme = Theme::default_theme();
    let mut variants: Vec<(&str, App)> = vec![("selected", app.clone())];
    let mut all = app.clone();
    all.conversation.show_all = true;
    variants.push(("all devices", all));
    let mut overlay = app.clone();
    overlay.overlay = Some((HOSTILE.into(), format!("{HOSTILE}\n{HOSTILE}")));
    variants.push(("overlay", overlay));
    let mut preview = app.clone();
    preview.preview = Some(Preview {
        path: HOSTILE.into(),
        content: PreviewContent::Failed(HOSTILE.into()),
        offset: 0,
        total: 0,
    });
    variants.push(("preview failed", preview.clone()));
    preview.preview = Some(Preview {
        path: HOSTILE.into(),
        content: PreviewContent::Hex(HOSTILE.as_bytes().to_vec()),
        offset: 0,
        total: 0,
    });
    variants.push(("preview hex", preview));
    let mut stopped = app.clone();
    stopped.prompt.notice = None;
    stopped.model.stopped = Some(HOSTILE.into());
    variants.push(("stopped", stopped));
    for (what, app) in &variants {
        for (width, height) in [(80, 24), (140, 42), (39, 11), (200, 60)] {
            let terminal = render(app, width, height, &theme);
            assert_no_dangerous_cells(terminal.backend().buffer(), &format!("{what} {width}x{height}"));
        }
    }
    // The escaped text is shown, not dropped.
    let terminal = render(&variants[0].1, 200, 60, &theme);
    let text = screen_text(&terminal);
    assert!(text.contains("\\x1b[31mred"), "{text}");
    assert!(text.contains("\\u{202e}"), "{text}");
}

/// U+061C ARABIC LETTER MARK is a bidi control too (UAX #9 lists it with LRM and
/// RLM): `for_terminal` escapes it, and it never reaches a cell.
#[test]
fn the_arabic_letter_mark_never_reaches_a_cell() {
    assert!(!crate::text::for_terminal("abc\u{61c}def").contains('\u{61c}'));
    let mut app = busy_console();
    app.on_event(ev(60, said(1, "cam-1", Direction::In, "abc\u{61c}def")));
    let terminal = render(&app, 80, 24, &Theme::default_theme());
    let found = terminal
        .backend()
        .buffer()
        .content
        .iter()
        .any(|c| c.symbol().contains('\u{61c}'));
    assert!(!found, "U+061C reached a cell");
    assert!(screen_text(&terminal).contains("abc\\u{61c}def"));
}

/// The log pane shows the engine's tracing warnings, which name the device; device
/// names come from the wire, and tui-logger prints messages raw, so `sanitize` must
/// strip bidi controls as well as control characters.
#[test]
fn the_log_pane_escapes_device_names() {
    use tracing_subscriber::layer::SubscriberExt;
    let device = crate::engine::names::sanitize("cam\u{202e}gpj.exe", "device");
    assert!(
        !device.contains('\u{202e}'),
        "sanitize strips bidi controls: {device:?}"
    );
    let subscriber = tracing_subscriber::registry().with(tui_logger::TuiTracingSubscriberLayer);
    tracing::subscriber::with_default(subscriber, || {
        // As in engine/session/frames.rs.
        tracing::warn!(
            "{}: dropped a DATA frame of 512 bytes with a bad CRC (1 so far)",
            device
        );
    });
    tui_logger::move_events();
    let mut app = busy_console();
    app.show_log = true;
    app.log_lines = 1;
    let terminal = render(&app, 140, 42, &Theme::default_theme());
    let log = Panes::compute(Rect::new(0, 0, 140, 42), true).log;
    let text = area_text(terminal.backend().buffer(), log);
    assert!(
        text.contains("dropped a DATA frame"),
        "the warning is shown:\n{text}"
    );
    assert_no_dangerous_cells(terminal.backend().buffer(), "log pane");
}

#[test]
fn no_color_leaves_every_cell_in_the_terminal_colours() {
    let theme = Theme::default_theme().without_colors();
    let mut states = vec![("empty", empty_console()), ("busy", busy_console())];
    let mut help = busy_console();
    help.help.open = true;
    states.push(("help", help));
    let mut overlay = busy_console();
    overlay.overlay = Some(("/list".into(), list_reply()));
    states.push(("overlay", overlay));
    let mut preview = busy_console();
    preview.preview = Some(Preview {
        path: "/p".into(),
        content: PreviewContent::Hex((0..=255).collect()),
        offset: 0,
        total: 0,
    });
    states.push(("preview", preview));
    let mut log = busy_console();
    log.show_log = true;
    log.focus = crate::tui::app::Focus::Received;
    states.push(("log", log));
    for (what, app) in &states {
        for (width, height) in [(80, 24), (140, 42), (39, 11)] {
            let terminal = render(app, width, height, &theme);
            for (i, cell) in terminal.backend().buffer().content.iter().enumerate() {
                assert!(
                    cell.fg == Color::Reset && cell.bg == Color::Reset,
                    "{what} {width}x{height}: cell {i} {:?} has fg {:?} bg {:?}",
                    cell.symbol(),
                    cell.fg,
                    cell.bg
                );
            }
        }
    }
    // Without colour, the selection still shows (reversed).
    let app = busy_console();
    let terminal = render(&app, 80, 24, &theme);
    let buffer = terminal.backend().buffer();
    let row = find_row(buffer, "cam-1", Panes::compute(buffer.area, false).connections).unwrap();
    let x = Panes::compute(buffer.area, false).connections.x + 1;
    assert!(buffer[(x, row)].modifier.contains(Modifier::REVERSED));
}

/// The first row of `area` that contains `needle`.
fn find_row(buffer: &Buffer, needle: &str, area: Rect) -> Option<u16> {
    (area.top()..area.bottom()).find(|&y| {
        let row: String = (area.left()..area.right())
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        row.contains(needle)
    })
}

#[test]
fn the_selected_device_is_highlighted() {
    let app = busy_console();
    let theme = Theme::default_theme();
    let terminal = render(&app, 80, 24, &theme);
    let buffer = terminal.backend().buffer();
    let panes = Panes::compute(buffer.area, false);
    let row = find_row(buffer, "cam-1", panes.connections).unwrap();
    assert_eq!(buffer[(panes.connections.x + 1, row)].bg, theme.selection_bg);
    let other = find_row(buffer, "cf-cam", panes.connections).unwrap();
    assert_ne!(buffer[(panes.connections.x + 1, other)].bg, theme.selection_bg);
}

/// 1000 devices: only the rows that fit are drawn, and the selection is one of them.
#[test]
fn a_thousand_devices() {
    let mut app = App::new(at(0));
    for conn in 1..=1000 {
        app.on_event(ev(
            1,
            connected(
                conn,
                &format!("dev-{conn:04}"),
                &format!("10.0.{}.{}:4000", conn / 256, conn % 256),
                "lines",
            ),
        ));
        app.on_event(ev(
            2,
            said(conn, &format!("dev-{conn:04}"), Direction::In, "hello"),
        ));
    }
    app.tick(at(3));
    app.connections.selected = Some(900);
    let theme = Theme::default_theme();
    let terminal = render(&app, 80, 24, &theme);
    let buffer = terminal.backend().buffer();
    let panes = Panes::compute(buffer.area, false);
    let list = area_text(buffer, panes.connections);
    assert!(list.contains("Connections (1000)"), "{list}");
    assert!(list.contains("dev-0900"), "the selection is visible:\n{list}");
    assert!(!list.contains("dev-0001"), "{list}");
    assert!(
        !list.contains("dev-0901"),
        "the selection is the last row shown:\n{list}"
    );
    let row = find_row(buffer, "dev-0900", panes.connections).unwrap();
    assert_eq!(buffer[(panes.connections.x + 1, row)].bg, theme.selection_bg);
    let conversation = area_text(buffer, panes.conversation);
    assert!(conversation.contains("Conversation · dev-0900"), "{conversation}");
    // The all view of 2000 entries shows its tail.
    app.conversation.show_all = true;
    let terminal = render(&app, 80, 24, &theme);
    let conversation = area_text(terminal.backend().buffer(), panes.conversation);
    assert!(conversation.contains("dev-1000: hello"), "{conversation}");
}

/// The cf bar's block moves 3 columns a second (whatever the time zone).
#[test]
fn the_cf_bar_moves_with_the_clock() {
    let mut app = busy_console();
    app.model.transfers.retain(|t| t.size.is_none());
    let theme = Theme::default_theme();
    let bar_row = |app: &App| -> String {
        let terminal = render(app, 80, 24, &theme);
        let buffer = terminal.backend().buffer();
        let panes = Panes::compute(buffer.area, false);
        let inner = panes.transfers.inner(ratatui::layout::Margin::new(1, 1));
        let row = inner.y + 1;
        (inner.left()..inner.right())
            .map(|x| buffer[(x, row)].symbol().to_string())
            .collect()
    };
    let first = bar_row(&app);
    assert!(first.chars().all(|c| c == '█' || c == '░'), "{first}");
    let width = first.chars().count();
    let block = first.chars().filter(|&c| c == '█').count();
    assert_eq!(block, width / 6, "{first}");
    app.model.now += chrono::Duration::seconds(1);
    let second = bar_row(&app);
    let rotated: String = first.chars().cycle().skip(width - 3).take(width).collect();
    assert_eq!(second, rotated, "moved 3 to the right:\n{first}\n{second}");
}

/// The prompt's cursor sits after the typed text.
#[test]
fn the_cursor_follows_the_input() {
    let app = busy_console();
    let mut terminal = render(&app, 80, 24, &Theme::default_theme());
    let prompt = Panes::compute(Rect::new(0, 0, 80, 24), false).prompt;
    let label = "cam-1> ".len() as u16;
    let cursor = terminal.get_cursor_position().unwrap();
    assert_eq!(
        cursor,
        Position::new(prompt.x + 1 + label + "capture 3".len() as u16, prompt.y + 1)
    );
}

/// On a small terminal F1 (or `?`) opens help: keys are then captured by it, so it
/// has to be visible.
#[test]

fn help_is_visible_on_a_small_terminal() {
    let mut app = busy_console();
    app.help.open = true;
    let terminal = render(&app, 39, 11, &Theme::default_theme());
    let text = screen_text(&terminal);
    assert!(text.contains("Help"), "{text}");
}

/// In the all-devices view every entry names its device; an error about a file
/// (such as a failed transfer) must too, or the operator cannot tell whose it was.
#[test]

fn the_all_view_names_the_device_of_an_error() {
    let mut app = busy_console();
    app.conversation.show_all = true;
    let terminal = render(&app, 140, 42, &Theme::default_theme());
    let buffer = terminal.backend().buffer();
    let panes = Panes::compute(buffer.area, false);
    let text = area_text(buffer, panes.conversation);
    let line = text
        .lines()
        .find(|l| l.contains("log-2026-11-26.csv failed"))
        .unwrap();
    assert!(line.contains("sensor-03"), "{line}");
}

/// One lines device with a long line, binary bytes and lines to find.
fn reading_console() -> App {
    let mut app = App::new(at(0));
    app.on_event(ev(1, connected(1, "uart0", "10.0.0.9:4000", "lines")));
    app.on_event(ev(2, said(1, "uart0", Direction::In, "boot ok")));
    for i in 0..6 {
        app.on_event(ev(
            3 + i,
            said(1, "uart0", Direction::In, &format!("temp {i} ok")),
        ));
    }
    app.on_event(ev(10, said(1, "uart0", Direction::In, "\u{1}\u{2}ID\u{7f}")));
    let long = format!("ERROR: sensor calibration failed: {} END", "x".repeat(240));
    app.on_event(ev(11, said(1, "uart0", Direction::In, &long)));
    app.tick(at(13));
    app
}

#[test]
fn long_lines_wrap_under_their_text_and_the_end_is_visible() {
    let app = reading_console();
    for (w, h) in [(80, 24), (140, 45)] {
        let text = snapshot_at("wrapped", &app, w, h);
        assert!(
            text.contains("x END"),
            "{w}x{h}: the end of a 280-character line shows"
        );
    }
}

#[test]
fn find_shows_the_match_highlighted_in_the_middle() {
    let mut app = reading_console();
    app.conversation.find = Some(crate::tui::app::Find {
        needle: "calibration".into(),
        current: Some(9),
    });
    let terminal = render(&app, 80, 24, &Theme::default_theme());
    let buffer = terminal.backend().buffer();
    let text = snapshot_at("find", &app, 80, 24);
    assert!(text.contains("find \"calibration\""));
    // The match is drawn in the selection style.
    let row = (0..24u16)
        .find(|&y| area_text(buffer, Rect::new(0, y, 80, 1)).contains("sensor calibration"))
        .expect("the match is on screen");
    let x = (0..80u16)
        .find(|&x| buffer[(x, row)].symbol() == "c" && buffer[(x + 1, row)].symbol() == "a")
        .expect("match start");
    assert_eq!(buffer[(x, row)].style().bg, Theme::default_theme().selection().bg);
    snapshot_at("find", &app, 140, 45);
}

#[test]
fn hex_view_shows_the_bytes_as_received() {
    let mut app = reading_console();
    app.conversation.view = crate::console::ViewMode::Hex;
    snapshot_at("hex_view", &app, 80, 24);
    let text = snapshot_at("hex_view", &app, 140, 45);
    assert!(text.contains("6f 6b 01 02 49"), "{text}");
    assert!(text.contains("ok..I"), "{text}");
}

#[test]
fn the_hex_preview_says_which_bytes_it_shows_with_true_offsets() {
    let mut app = busy_console();
    app.preview = Some(Preview {
        path: "/home/lab/received/cam-1/dump.bin".into(),
        content: PreviewContent::Hex((0..=255u8).cycle().take(4096).collect()),
        offset: 512,
        total: 100_000,
    });
    let text = snapshot_at("hex_preview_paged", &app, 80, 24);
    assert!(text.contains("bytes 512-"), "{text}");
    assert!(text.contains("of 100000"), "{text}");
    assert!(text.contains("00000200"), "{text}");
    snapshot_at("hex_preview_paged", &app, 140, 45);
}

/// Help is drawn from the keymap: every key it binds is listed.
#[test]
fn help_lists_every_key_of_the_keymap() {
    let mut app = busy_console();
    app.help.open = true;
    let terminal = render(&app, 140, 120, &Theme::default_theme());
    let text = screen_text(&terminal);
    for b in crate::tui::keymap::help_rows() {
        assert!(text.contains(b.label), "{} is in help:\n{text}", b.label);
        assert!(text.contains(b.help), "{} is in help:\n{text}", b.help);
    }
}

/// An image fills the preview pop-up, scaled with its aspect ratio kept (the
/// camera's 320x240, 4:3), at both sizes; the pop-up is drawn as the loop draws
/// it, with half-block cells (what tmux and SSH get).
#[test]
fn an_image_preview_fills_the_pop_up_keeping_its_aspect() {
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    }));
    let picker = ratatui_image::picker::Picker::halfblocks();
    for (width, height) in [(80u16, 24u16), (140, 45)] {
        let screen = Rect::new(0, 0, width, height);
        let protocol = crate::tui::scaled_image(&picker, img.clone(), screen).unwrap();
        let mut app = busy_console();
        app.preview = Some(Preview {
            path: "/home/lab/received/cam-1/capture.bmp".into(),
            content: PreviewContent::Image {
                width: 320,
                height: 240,
            },
            offset: 0,
            total: 0,
        });
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        let theme = Theme::default_theme();
        terminal
            .draw(|frame| draw(frame, &app, &theme, Some(&protocol)))
            .unwrap();
        let buffer = terminal.backend().buffer();
        let inner = super::preview_area(screen).inner(ratatui::layout::Margin::new(1, 1));
        // The cells the image painted: half-blocks.
        let painted = |x: u16, y: u16| buffer[(x, y)].symbol() == "▄";
        let columns = (inner.left()..inner.right())
            .filter(|&x| (inner.top()..inner.bottom()).any(|y| painted(x, y)))
            .count() as f64;
        let rows = (inner.top()..inner.bottom())
            .filter(|&y| (inner.left()..inner.right()).any(|x| painted(x, y)))
            .count() as f64;
        assert!(
            rows == inner.height as f64 || columns == inner.width as f64,
            "{width}x{height}: the image fills the pop-up's height or width ({columns}x{rows} cells in {inner:?})"
        );
        // A cell is twice as tall as wide; 4:3 within a cell's rounding.
        let aspect = columns / (rows * 2.0);
        assert!(
            (aspect - 4.0 / 3.0).abs() < 0.05,
            "{width}x{height}: aspect {aspect:.3} ({columns}x{rows} cells)"
        );
        // The snapshot shows where it is drawn (half-blocks as #).
        let text = buffer_text(buffer).replace("▄", "#");
        insta::assert_snapshot!(format!("image_preview_{width}x{height}"), text);
    }
}

/// 100,000 lines of history (every tenth one long, so it wraps): scrolling back
/// with PgUp and the wheel, to the oldest line and to the tail again, shows the
/// right lines in wrapped mode.
#[test]
fn a_hundred_thousand_lines_scroll_in_wrapped_mode() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
    let mut app = App::new(at(0));
    app.on_event(ev(1, connected(1, "uart0", "10.0.0.9:4000", "lines")));
    for i in 0..100_000 {
        let text = if i % 10 == 0 {
            format!("line {i} {}", "y".repeat(200))
        } else {
            format!("line {i}")
        };
        app.on_event(ev(2, said(1, "uart0", Direction::In, &text)));
    }
    let (w, h) = (80u16, 24u16);
    let panes = Panes::compute(Rect::new(0, 0, w, h), false);
    let conversation = panes.conversation;
    let shown = |app: &App| {
        area_text(
            render(app, w, h, &Theme::default_theme()).backend().buffer(),
            conversation,
        )
    };
    assert!(shown(&app).contains("line 99999"), "follows the tail");
    let key = |app: &mut App, code| app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
    for _ in 0..5_000 {
        key(&mut app, KeyCode::PageUp);
    }
    let text = shown(&app);
    assert!(text.contains("line 49999"), "50,000 back:\n{text}");
    assert!(!text.contains("line 99999"), "{text}");
    let wheel = MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: conversation.x + 2,
        row: conversation.y + 2,
        modifiers: KeyModifiers::NONE,
    };
    app.on_mouse(wheel, &panes);
    assert!(shown(&app).contains("line 50002"), "the wheel scrolls 3 down");
    key(&mut app, KeyCode::Home);
    app.focus = crate::tui::app::Focus::Conversation;
    key(&mut app, KeyCode::Home);
    assert!(shown(&app).contains("line 0 y"), "Home goes to the oldest line");
    key(&mut app, KeyCode::End);
    assert!(shown(&app).contains("line 99999"), "End follows the tail again");
}

/// Serial, outgoing and UDP devices are rows like any other; one being retried
/// says when the next attempt is.
#[test]
fn links_show_as_devices_and_a_retry_says_when() {
    let mut app = App::new(at(0));
    app.on_event(ev(1, connected(1, "ttyUSB0", "/dev/ttyUSB0", "lines")));
    app.on_event(ev(1, connected(2, "192.168.4.1", "192.168.4.1:333", "frames")));
    app.on_event(ev(1, connected(3, "10.0.0.7", "10.0.0.7:5000", "lines")));
    app.on_event(ev(
        2,
        EventKind::Reconnecting {
            conn: 1,
            device: "ttyUSB0".into(),
            peer: "/dev/ttyUSB0".into(),
            reason: "/dev/ttyUSB0 is not there (unplugged?)".into(),
            delay_ms: 4_000,
            attempt: 2,
        },
    ));
    app.tick(at(2));
    let text = snapshot_at("links", &app, 80, 24);
    let row = text.lines().find(|l| l.contains("│ttyUSB0")).unwrap();
    assert!(row.contains("reconnecting 4s"), "{row}");
    assert!(text.contains("192.168.4.1"), "{text}");
    assert!(text.contains("trying again in 4 s"), "{text}");
}

/// A file the console sends shows in Transfers marked ↑, and leaves it when sent.
#[test]
fn an_outgoing_transfer_is_marked_and_ends() {
    let mut app = App::new(at(0));
    app.on_event(ev(1, connected(1, "ttyUSB0", "/dev/ttyUSB0", "lines")));
    app.on_event(ev(
        2,
        EventKind::FilePushStarted {
            conn: 1,
            device: "ttyUSB0".into(),
            name: "app.bin".into(),
            size: 40_000,
            via: "ymodem".into(),
        },
    ));
    app.on_event(ev(
        3,
        EventKind::FilePushProgress {
            conn: 1,
            device: "ttyUSB0".into(),
            name: "app.bin".into(),
            bytes: 20_480,
        },
    ));
    let text = screen_text(&render(&app, 80, 24, &Theme::default_theme()));
    let row = text
        .lines()
        .find(|l| l.contains("↑ ttyUSB0 app.bin"))
        .unwrap_or_default();
    assert!(row.contains("20 KiB/39.06 KiB"), "{text}");
    app.on_event(ev(
        5,
        EventKind::FilePushed {
            conn: 1,
            device: "ttyUSB0".into(),
            name: "app.bin".into(),
            size: 40_000,
            seconds: 3.0,
        },
    ));
    assert!(app.model.transfers.is_empty());
    let text = screen_text(&render(&app, 80, 24, &Theme::default_theme()));
    assert!(text.contains("sent app.bin (39.06 KiB, 3.0 s)"), "{text}");
}

/// With --mqtt, the header says whether the broker is reachable.
#[test]
fn the_header_shows_the_broker_link() {
    let mut app = busy_console();
    app.on_event(ev(
        61,
        EventKind::Broker {
            state: "down".into(),
            detail: "broker.lab:1883: connection refused; events wait, retrying".into(),
        },
    ));
    let text = screen_text(&render(&app, 140, 42, &Theme::default_theme()));
    assert!(text.lines().nth(1).unwrap().contains("mqtt down"), "{text}");
    app.on_event(ev(
        62,
        EventKind::Broker {
            state: "connected".into(),
            detail: "broker.lab:1883 as bench bench-3".into(),
        },
    ));
    let text = screen_text(&render(&app, 140, 42, &Theme::default_theme()));
    assert!(text.lines().nth(1).unwrap().contains("mqtt ok"), "{text}");
}
