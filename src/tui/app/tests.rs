//! App state tests: engine events, keys and mouse in, state and actions out.
//! Every timestamp is fixed, so nothing here depends on the clock or the terminal.

use chrono::{DateTime, Local, TimeZone};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use super::*;
use crate::engine::{Command, ConnCounters, DeviceInfo, Direction, Event, EventKind};
use crate::tui::layout::Panes;

/// 2026-11-26 12:00:00 local time, plus `secs`.
fn at(secs: i64) -> DateTime<Local> {
    Local.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).earliest().unwrap() + chrono::Duration::seconds(secs)
}

fn ev(secs: i64, kind: EventKind) -> Event {
    Event { ts: at(secs), kind }
}

fn new_app() -> App {
    App::new(at(0))
}

fn listening(app: &mut App) {
    app.on_event(ev(
        0,
        EventKind::Listening {
            addr: "0.0.0.0:9999".into(),
            protocol: "auto".into(),
            dir: "/home/lab/received".into(),
        },
    ));
}

fn connect(app: &mut App, secs: i64, conn: ConnId, name: &str) -> Vec<Action> {
    app.on_event(ev(
        secs,
        EventKind::Connected {
            conn,
            device: name.into(),
            peer: format!("192.168.1.{}:{}", 100 + conn, 50_000 + conn),
            protocol: "frames".into(),
        },
    ))
}

fn text(app: &mut App, secs: i64, conn: ConnId, name: &str, direction: Direction, text: &str) {
    app.on_event(ev(
        secs,
        EventKind::Text {
            conn,
            device: name.into(),
            direction,
            text: text.into(),
            raw: Some(bytes::Bytes::copy_from_slice(text.as_bytes())),
        },
    ));
}

fn file_started(app: &mut App, secs: i64, conn: ConnId, name: &str, file: &str, size: Option<u64>) {
    app.on_event(ev(
        secs,
        EventKind::FileStarted {
            conn,
            device: name.into(),
            name: file.into(),
            size,
            resumed_from: None,
        },
    ));
}

fn file_progress(app: &mut App, secs: i64, conn: ConnId, name: &str, file: &str, bytes: u64) {
    app.on_event(ev(
        secs,
        EventKind::FileProgress {
            conn,
            device: name.into(),
            name: file.into(),
            bytes,
        },
    ));
}

fn file_saved(app: &mut App, secs: i64, conn: ConnId, name: &str, file: &str, size: u64) {
    app.on_event(ev(
        secs,
        EventKind::FileSaved {
            conn,
            device: name.into(),
            name: file.into(),
            path: format!("/home/lab/received/{name}/{file}"),
            size,
            crc32: 0xdead_beef,
            seconds: 1.5,
            ended_by_close: false,
        },
    ));
}

fn reply(
    app: &mut App,
    command: &str,
    ok: bool,
    text: &str,
    devices: Option<Vec<DeviceInfo>>,
) -> Vec<Action> {
    app.on_event(ev(
        5,
        EventKind::Reply {
            command: command.into(),
            ok,
            text: text.into(),
            devices,
            id: None,
        },
    ))
}

fn key(app: &mut App, code: KeyCode) -> Vec<Action> {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn shift_tab(app: &mut App) -> Vec<Action> {
    app.on_key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT))
}

fn ctrl(app: &mut App, c: char) -> Vec<Action> {
    app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn type_str(app: &mut App, s: &str) {
    for c in s.chars() {
        let actions = key(app, KeyCode::Char(c));
        assert!(actions.is_empty(), "typing {c:?} gave {actions:?}");
    }
}

/// An app with three connected devices (cam-1 selected), as most key tests need.
fn three_devices() -> App {
    let mut app = new_app();
    listening(&mut app);
    connect(&mut app, 1, 1, "cam-1");
    connect(&mut app, 2, 2, "cam-2");
    connect(&mut app, 3, 3, "sensor");
    app
}

fn conversation_texts(app: &App, conn: ConnId) -> Vec<String> {
    app.model.conversations[&conn]
        .iter()
        .map(|e| e.text.clone())
        .collect()
}

fn panes() -> Panes {
    Panes::compute(Rect::new(0, 0, 80, 24), false)
}

fn mouse(kind: MouseEventKind, column: u16, row: u16) -> MouseEvent {
    MouseEvent {
        kind,
        column,
        row,
        modifiers: KeyModifiers::NONE,
    }
}

fn click(app: &mut App, column: u16, row: u16) -> Vec<Action> {
    app.on_mouse(
        mouse(MouseEventKind::Down(MouseButton::Left), column, row),
        &panes(),
    )
}

// ---------------------------------------------------------------- engine events

#[test]
fn listening_fills_listeners_and_dir() {
    let mut app = new_app();
    assert!(app.model.listeners.is_empty());
    listening(&mut app);
    app.on_event(ev(
        0,
        EventKind::Listening {
            addr: "0.0.0.0:9998".into(),
            protocol: "cf".into(),
            dir: "/home/lab/received".into(),
        },
    ));
    assert_eq!(
        app.model.listeners,
        vec![
            ("0.0.0.0:9999".to_string(), "auto".to_string()),
            ("0.0.0.0:9998".to_string(), "cf".to_string()),
        ]
    );
    assert_eq!(app.model.dir, "/home/lab/received");
    assert!(app.model.devices.is_empty());
    assert_eq!(app.target_label(), "no device");
}

#[test]
fn first_connected_device_becomes_the_target() {
    let mut app = new_app();
    let actions = connect(&mut app, 1, 7, "cam-1");
    assert_eq!(actions, vec![Action::Engine(Command::Select(Some(7)))]);
    assert_eq!(app.connections.selected, Some(7));
    let d = app.model.device(7).unwrap();
    assert_eq!(d.name, "cam-1");
    assert_eq!(d.protocol, "frames");
    assert_eq!(d.peer, "192.168.1.107:50007");
    assert_eq!(d.since, at(1));
    assert_eq!(d.state, DeviceState::Idle);
    assert_eq!(d.gone_at, None);
    assert_eq!(app.target_label(), "cam-1");
    assert_eq!(app.model.live_devices(), 1);
    // The connection is noted in its conversation.
    assert_eq!(
        conversation_texts(&app, 7),
        vec!["connected from 192.168.1.107:50007 (frames)"]
    );
    assert_eq!(app.model.conversations[&7][0].kind, EntryKind::System);

    // A second device does not steal the target.
    let actions = connect(&mut app, 2, 8, "cam-2");
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(app.connections.selected, Some(7));
    assert_eq!(app.model.devices.len(), 2);
}

#[test]
fn a_new_device_replaces_a_gone_target() {
    let mut app = new_app();
    connect(&mut app, 1, 1, "cam-1");
    app.on_event(ev(
        2,
        EventKind::Disconnected {
            conn: 1,
            device: "cam-1".into(),
            reason: "closed by peer".into(),
            bytes_in: 0,
            bytes_out: 0,
            crc_errors: 0,
            rewinds: 0,
        },
    ));
    assert_eq!(app.connections.selected, Some(1));
    assert_eq!(app.target_label(), "cam-1 (gone)");
    let actions = connect(&mut app, 3, 2, "cam-2");
    assert_eq!(actions, vec![Action::Engine(Command::Select(Some(2)))]);
    assert_eq!(app.connections.selected, Some(2));
}

#[test]
fn text_goes_to_the_device_conversation_and_the_all_view() {
    let mut app = new_app();
    connect(&mut app, 1, 1, "cam-1");
    connect(&mut app, 1, 2, "cam-2");
    text(&mut app, 2, 1, "cam-1", Direction::In, "ready");
    text(&mut app, 3, 1, "cam-1", Direction::Out, "capture");
    text(&mut app, 4, 2, "cam-2", Direction::In, "temp=21.5");

    let cam1 = &app.model.conversations[&1];
    assert_eq!(cam1.len(), 3);
    assert_eq!((cam1[1].kind, cam1[1].text.as_str()), (EntryKind::In, "ready"));
    assert_eq!((cam1[2].kind, cam1[2].text.as_str()), (EntryKind::Out, "capture"));
    assert_eq!(cam1[2].ts, at(3));
    assert_eq!(cam1[2].conn, Some(1));
    assert_eq!(cam1[2].device, "cam-1");
    assert_eq!(conversation_texts(&app, 2).last().unwrap(), "temp=21.5");

    // The all view has every entry, in arrival order.
    let all: Vec<(&str, &str)> = app
        .model
        .all
        .iter()
        .map(|e| (e.device.as_str(), e.text.as_str()))
        .collect();
    assert_eq!(all.len(), 5);
    assert_eq!(
        &all[2..],
        &[("cam-1", "ready"), ("cam-1", "capture"), ("cam-2", "temp=21.5")]
    );

    // What the pane shows follows the selection and F2.
    assert_eq!(app.visible_conversation().unwrap().len(), 3);
    app.conversation.show_all = true;
    assert_eq!(app.visible_conversation().unwrap().len(), 5);
}

#[test]
fn conversations_keep_100_000_lines_and_are_capped() {
    let mut app = new_app();
    connect(&mut app, 0, 1, "cam-1");
    for i in 0..KEEP_PER_DEVICE + 10 {
        text(&mut app, 1, 1, "cam-1", Direction::In, &format!("line {i}"));
    }
    assert_eq!(KEEP_PER_DEVICE, 100_000);
    assert_eq!(app.model.conversations[&1].len(), KEEP_PER_DEVICE);
    assert_eq!(app.model.conversations[&1][0].text, "line 10");
    assert_eq!(
        app.model.conversations[&1].back().unwrap().text,
        format!("line {}", KEEP_PER_DEVICE + 9)
    );
    assert_eq!(app.model.all.len(), KEEP_ALL);
}

#[test]
fn long_lines_are_capped_in_bytes_and_a_chatty_device_trims_only_its_own() {
    let mut app = new_app();
    connect(&mut app, 0, 1, "quiet");
    connect(&mut app, 0, 2, "chatty");
    text(
        &mut app,
        1,
        1,
        "quiet",
        Direction::In,
        "the quiet device's only line",
    );
    let long = "x".repeat(64 * 1024);
    // 64 MiB of long lines: far over the per-device byte bound.
    for _ in 0..1024 {
        text(&mut app, 2, 2, "chatty", Direction::In, &long);
    }
    let held: usize = app.model.conversations[&2].iter().map(Entry::held_bytes).sum();
    assert!(held <= KEEP_BYTES_PER_DEVICE, "{held} bytes held");
    assert!(app.model.conversations[&2].len() > 200, "most of 16 MiB is kept");
    let all: usize = app.model.all.iter().map(Entry::held_bytes).sum();
    assert!(all <= KEEP_BYTES_ALL, "{all} bytes in the all view");
    assert_eq!(app.model.conversations[&1].len(), 2, "connected + its line");
}

#[test]
fn a_file_transfer_updates_transfers_device_state_received_and_totals() {
    let mut app = new_app();
    connect(&mut app, 0, 1, "cam-1");
    file_started(&mut app, 10, 1, "cam-1", "img_0001.jpg", Some(200_000));
    assert!(app.model.transfer_in_flight());
    assert_eq!(app.model.transfers.len(), 1);
    assert_eq!(app.model.transfers[0].bytes, 0);
    assert_eq!(app.model.transfers[0].started, at(10));
    assert_eq!(
        app.model.device(1).unwrap().state,
        DeviceState::Receiving {
            name: "img_0001.jpg".into(),
            bytes: 0,
            size: Some(200_000)
        }
    );
    assert_eq!(
        conversation_texts(&app, 1).last().unwrap(),
        "sending img_0001.jpg (195.31 KiB)"
    );

    file_progress(&mut app, 12, 1, "cam-1", "img_0001.jpg", 100_000);
    let t = &app.model.transfers[0];
    assert_eq!((t.bytes, t.updated), (100_000, at(12)));
    assert_eq!(t.rate(), 50_000.0);
    assert_eq!(t.eta_secs(), Some(2));
    match &app.model.device(1).unwrap().state {
        DeviceState::Receiving { bytes, size, .. } => {
            // What the connections pane shows as "receiving 50%".
            assert_eq!(bytes * 100 / size.unwrap(), 50);
        }
        other => panic!("{other:?}"),
    }

    file_saved(&mut app, 14, 1, "cam-1", "img_0001.jpg", 200_000);
    assert!(app.model.transfers.is_empty());
    assert!(!app.model.transfer_in_flight());
    assert_eq!(app.model.device(1).unwrap().state, DeviceState::Idle);
    assert_eq!((app.model.files_saved, app.model.bytes_saved), (1, 200_000));
    let r = &app.model.received[0];
    assert_eq!(r.name, "img_0001.jpg");
    assert_eq!(r.device, "cam-1");
    assert_eq!(r.size, 200_000);
    assert_eq!(r.failure, None);
    assert_eq!(r.path.as_deref(), Some("/home/lab/received/cam-1/img_0001.jpg"));
    assert_eq!(r.time, "11-26 12:00");
    assert!(r.is_image());
    assert_eq!(
        conversation_texts(&app, 1).last().unwrap(),
        "saved img_0001.jpg (195.31 KiB)"
    );

    // A second file goes on top: the list is newest first, totals add up.
    file_started(&mut app, 20, 1, "cam-1", "log.txt", None);
    file_saved(&mut app, 21, 1, "cam-1", "log.txt", 1_000);
    let names: Vec<&str> = app.model.received.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["log.txt", "img_0001.jpg"]);
    assert_eq!(app.received.selected, 0);
    assert_eq!((app.model.files_saved, app.model.bytes_saved), (2, 201_000));
    assert!(!app.model.received[0].is_image());
}

#[test]
fn a_transfer_without_size_has_no_eta() {
    let mut app = new_app();
    connect(&mut app, 0, 1, "cf-cam");
    file_started(&mut app, 0, 1, "cf-cam", "capture.bin", None);
    file_progress(&mut app, 4, 1, "cf-cam", "capture.bin", 4096);
    assert_eq!(app.model.transfers[0].rate(), 1024.0);
    assert_eq!(app.model.transfers[0].eta_secs(), None);
    assert_eq!(
        conversation_texts(&app, 1).last().unwrap(),
        "sending capture.bin (size unknown)"
    );
}

#[test]
fn a_failed_file_shows_in_received_with_its_reason() {
    let mut app = new_app();
    connect(&mut app, 0, 1, "cam-1");
    file_started(&mut app, 1, 1, "cam-1", "big.raw", Some(1_000_000));
    file_progress(&mut app, 2, 1, "cam-1", "big.raw", 300_000);
    app.on_event(ev(
        3,
        EventKind::FileFailed {
            conn: 1,
            device: "cam-1".into(),
            name: "big.raw".into(),
            reason: "crc mismatch".into(),
            part: Some("/home/lab/received/cam-1/big.raw.part".into()),
        },
    ));
    assert!(app.model.transfers.is_empty());
    assert_eq!(app.model.device(1).unwrap().state, DeviceState::Idle);
    let r = &app.model.received[0];
    assert_eq!(r.name, "big.raw");
    assert_eq!(r.size, 300_000, "the bytes that arrived");
    assert_eq!(r.failure.as_deref(), Some("crc mismatch"));
    assert_eq!(r.path.as_deref(), Some("/home/lab/received/cam-1/big.raw.part"));
    // A failure is not a saved file.
    assert_eq!((app.model.files_saved, app.model.bytes_saved), (0, 0));
    let last = app.model.conversations[&1].back().unwrap();
    assert_eq!(last.kind, EntryKind::Error);
    assert_eq!(last.text, "big.raw failed: crc mismatch");
}

#[test]
fn a_disconnected_device_is_greyed_then_forgotten_after_a_minute() {
    let mut app = new_app();
    connect(&mut app, 0, 1, "cam-1");
    connect(&mut app, 0, 2, "cam-2");
    file_started(&mut app, 5, 1, "cam-1", "a.jpg", Some(10));
    app.on_event(ev(
        10,
        EventKind::Disconnected {
            conn: 1,
            device: "cam-1".into(),
            reason: "reset by peer".into(),
            bytes_in: 0,
            bytes_out: 0,
            crc_errors: 0,
            rewinds: 0,
        },
    ));
    let d = app.model.device(1).unwrap();
    assert_eq!(d.gone_at, Some(at(10)));
    assert_eq!(d.state, DeviceState::Idle);
    assert!(app.model.transfers.is_empty(), "its transfer ends with it");
    assert_eq!(app.model.live_devices(), 1);
    assert_eq!(app.model.devices.len(), 2);
    assert_eq!(
        conversation_texts(&app, 1).last().unwrap(),
        "disconnected (reset by peer)"
    );

    app.tick(at(69));
    assert!(app.model.device(1).is_some(), "kept for 60 s");
    let actions = app.tick(at(70));
    assert!(app.model.device(1).is_none(), "removed 60 s after it went");
    // The selection moves to a live device, and the engine is told, so plain text
    // never silently falls back to "the only device".
    assert_eq!(
        app.connections.selected,
        Some(2),
        "the removed target is no longer selected"
    );
    assert_eq!(actions, vec![Action::Engine(Command::Select(Some(2)))]);
    assert!(!app.model.history_device.contains_key(&1));
    assert!(
        !app.model.conversations.contains_key(&1),
        "its conversation is freed"
    );
    assert!(app.model.device(2).is_some());
    // Its conversation is still in the all view.
    assert!(
        app.model
            .all
            .iter()
            .any(|e| e.text == "disconnected (reset by peer)")
    );
}

#[test]
fn stats_and_ticks_give_rates_and_a_capped_history() {
    let mut app = new_app();
    connect(&mut app, 0, 1, "cam-1");
    connect(&mut app, 0, 2, "cam-2");
    let stats = |a: u64, b: u64| {
        ev(
            1,
            EventKind::Stats {
                devices: vec![
                    ConnCounters {
                        conn: 1,
                        bytes_in: a,
                        bytes_out: 10,
                        ..Default::default()
                    },
                    ConnCounters {
                        conn: 2,
                        bytes_in: b,
                        bytes_out: 20,
                        ..Default::default()
                    },
                ],
            },
        )
    };
    app.on_event(stats(1_000, 500));
    app.tick(at(1));
    assert_eq!(app.model.device(1).unwrap().rate_in, 1_000);
    assert_eq!(app.model.device(2).unwrap().rate_in, 500);
    assert_eq!(app.model.device(1).unwrap().bytes_in, 1_000);
    assert_eq!(app.model.device(2).unwrap().bytes_out, 20);
    assert_eq!(app.model.rate_in, 1_500);
    assert_eq!(app.model.now, at(1));

    // Two stats between ticks add up; the rate is the growth since the last tick.
    app.on_event(stats(1_500, 600));
    app.on_event(stats(3_000, 600));
    app.tick(at(2));
    assert_eq!(app.model.device(1).unwrap().rate_in, 2_000);
    assert_eq!(app.model.device(2).unwrap().rate_in, 100);
    assert_eq!(app.model.rate_in, 2_100);

    // No stats: the rate falls to zero.
    app.tick(at(3));
    assert_eq!(app.model.rate_in, 0);
    assert_eq!(app.model.history_all, VecDeque::from(vec![1_500, 2_100, 0]));
    assert_eq!(
        app.model.history_device[&1],
        VecDeque::from(vec![1_000, 2_000, 0])
    );

    for s in 4..100 {
        app.on_event(stats(3_000 + s as u64, 600));
        app.tick(at(s));
    }
    assert_eq!(app.model.history_all.len(), HISTORY_SECONDS);
    assert_eq!(app.model.history_device[&1].len(), HISTORY_SECONDS);
    assert_eq!(app.model.history_all.back(), Some(&1));
    assert_eq!(app.model.rate_in, 1);
}

#[test]
fn a_multi_line_reply_opens_the_overlay() {
    let mut app = three_devices();
    let text = "conn  device  peer\n1  cam-1  192.168.1.101:50001\n2  cam-2  192.168.1.102:50002";
    let actions = reply(&mut app, "/list", true, text, None);
    assert!(actions.is_empty());
    assert_eq!(app.overlay, Some(("/list".to_string(), text.to_string())));
    assert_eq!(app.prompt.notice, None);
    // Esc closes it.
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.overlay, None);
}

#[test]
fn a_failed_reply_sets_an_error_notice() {
    let mut app = three_devices();
    reply(&mut app, "/to nope", false, "no device called nope", None);
    assert_eq!(
        app.prompt.notice,
        Some(Notice {
            ok: false,
            text: "no device called nope".into()
        })
    );
    assert_eq!(app.overlay, None);
    assert_eq!(app.connections.selected, Some(1));
}

#[test]
fn an_ok_reply_to_plain_text_clears_the_notice() {
    let mut app = three_devices();
    reply(&mut app, "/to nope", false, "no device called nope", None);
    assert!(app.prompt.notice.is_some());
    reply(&mut app, "capture", true, "sent to cam-1", None);
    assert_eq!(app.prompt.notice, None);
    // An ok reply to a command is shown, in the ok colour.
    reply(&mut app, "/kick cam-2", true, "kicked cam-2", None);
    assert_eq!(
        app.prompt.notice,
        Some(Notice {
            ok: true,
            text: "kicked cam-2".into()
        })
    );
}

#[test]
fn a_to_reply_with_one_device_selects_it() {
    let mut app = three_devices();
    let info = DeviceInfo {
        conn: 3,
        device: "sensor".into(),
        protocol: "frames".into(),
        peer: "192.168.1.103:50003".into(),
        connected_secs: 4,
        bytes_in: 0,
        bytes_out: 0,
        eol: None,
    };
    let actions = reply(
        &mut app,
        "/to sensor",
        true,
        "target: sensor",
        Some(vec![info.clone()]),
    );
    assert!(actions.is_empty(), "the engine already knows: {actions:?}");
    assert_eq!(app.connections.selected, Some(3));
    assert_eq!(app.target_label(), "sensor");
    // A failed /to, or another command's device list, does not move the target.
    reply(
        &mut app,
        "/to cam-1",
        false,
        "no",
        Some(vec![DeviceInfo {
            conn: 1,
            ..info.clone()
        }]),
    );
    assert_eq!(app.connections.selected, Some(3));
    reply(
        &mut app,
        "/list",
        true,
        "one",
        Some(vec![DeviceInfo { conn: 2, ..info }]),
    );
    assert_eq!(app.connections.selected, Some(3));
}

#[test]
fn an_error_event_is_logged_and_noticed() {
    let mut app = new_app();
    app.on_event(ev(
        1,
        EventKind::Error {
            message: "cannot write /home/lab/received: disk full".into(),
        },
    ));
    let e = app.model.all.back().unwrap();
    assert_eq!(
        (e.kind, e.conn, e.device.as_str()),
        (EntryKind::Error, None, "console")
    );
    assert_eq!(app.prompt.notice.as_ref().map(|n| n.ok), Some(false));
}

#[test]
fn stopped_quits() {
    let mut app = new_app();
    let actions = app.on_event(ev(
        9,
        EventKind::Stopped {
            reason: "SIGTERM".into(),
        },
    ));
    assert_eq!(actions, vec![Action::Quit]);
    assert_eq!(app.model.stopped.as_deref(), Some("SIGTERM"));
}

// ---------------------------------------------------------------------- keys

#[test]
fn typing_and_enter_sends_the_line_and_clears_the_input() {
    let mut app = three_devices();
    type_str(&mut app, "capture 5");
    assert_eq!(app.prompt.input.value(), "capture 5");
    let actions = key(&mut app, KeyCode::Enter);
    assert_eq!(actions, vec![Action::Engine(Command::Line("capture 5".into()))]);
    assert_eq!(app.prompt.input.value(), "");
    assert_eq!(app.prompt.history, vec!["capture 5"]);
    // Enter on an empty (or blank) prompt sends nothing.
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    type_str(&mut app, "   ");
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    assert_eq!(app.prompt.history, vec!["capture 5"]);
    // The same line twice is one history entry.
    type_str(&mut app, "capture 5");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.prompt.history, vec!["capture 5"]);
    // Backspace edits.
    type_str(&mut app, "abc");
    key(&mut app, KeyCode::Backspace);
    assert_eq!(app.prompt.input.value(), "ab");
}

#[test]
fn help_typed_at_the_prompt_opens_help_instead_of_sending() {
    let mut app = new_app();
    type_str(&mut app, "/help");
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    assert!(app.help.open);
    assert_eq!(app.prompt.input.value(), "");
}

#[test]
fn history_up_and_down() {
    let mut app = new_app();
    for line in ["one", "two", "three"] {
        type_str(&mut app, line);
        key(&mut app, KeyCode::Enter);
    }
    // Down with no history position does nothing.
    key(&mut app, KeyCode::Down);
    assert_eq!(app.prompt.input.value(), "");
    key(&mut app, KeyCode::Up);
    assert_eq!(app.prompt.input.value(), "three");
    key(&mut app, KeyCode::Up);
    assert_eq!(app.prompt.input.value(), "two");
    key(&mut app, KeyCode::Up);
    key(&mut app, KeyCode::Up);
    assert_eq!(app.prompt.input.value(), "one", "stops at the oldest");
    key(&mut app, KeyCode::Down);
    assert_eq!(app.prompt.input.value(), "two");
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.prompt.input.value(), "", "past the newest: an empty prompt");
    // A recalled line is sent as it is.
    key(&mut app, KeyCode::Up);
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        vec![Action::Engine(Command::Line("three".into()))]
    );
}

#[test]
fn tab_completes_device_names_after_to() {
    let mut app = three_devices();
    type_str(&mut app, "/to se");
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.prompt.input.value(), "/to sensor");
    assert_eq!(
        app.focus,
        Focus::Prompt,
        "Tab with text completes, it does not move focus"
    );

    // Two candidates: the common prefix.
    app.prompt.input = Input::new("/to c".into());
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.prompt.input.value(), "/to cam-");
    // Still two: the candidates are listed in the notice.
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.prompt.input.value(), "/to cam-");
    assert_eq!(app.prompt.notice.as_ref().unwrap().text, "/to cam-1  /to cam-2");

    // /kick completes the same way; gone devices are not offered.
    app.on_event(ev(
        9,
        EventKind::Disconnected {
            conn: 2,
            device: "cam-2".into(),
            reason: "closed".into(),
            bytes_in: 0,
            bytes_out: 0,
            crc_errors: 0,
            rewinds: 0,
        },
    ));
    app.prompt.input = Input::new("/kick cam".into());
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.prompt.input.value(), "/kick cam-1");
    // Nothing matches: nothing changes.
    app.prompt.input = Input::new("/to zz".into());
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.prompt.input.value(), "/to zz");
}

#[test]
fn tab_completes_commands() {
    let mut app = new_app();
    type_str(&mut app, "/k");
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.prompt.input.value(), "/kick ");
    // Then a device name can follow.
    connect(&mut app, 0, 1, "cam-1");
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.prompt.input.value(), "/kick cam-1");

    app.prompt.input = Input::new("/l".into());
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.prompt.input.value(), "/list ");
    // A bare "/" lists every command.
    app.prompt.input = Input::new("/".into());
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.prompt.input.value(), "/");
    assert_eq!(
        app.prompt.notice.as_ref().unwrap().text,
        "/to  /all  /list  /kick  /serial  /connect  /close  /hex  /raw  /eol  /every  /macro  /sleep  /find  /filter  /view  /help  /quit"
    );
    // Plain text is not completed.
    app.prompt.input = Input::new("hello".into());
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.prompt.input.value(), "hello");
}

#[test]
fn question_mark_on_an_empty_prompt_opens_help() {
    let mut app = new_app();
    key(&mut app, KeyCode::Char('?'));
    assert!(app.help.open);
    assert_eq!(app.prompt.input.value(), "");
    // Arrows and PgUp/PgDn are the overlay's; a printable key closes it and is
    // typed into the prompt, so nothing typed is lost.
    key(&mut app, KeyCode::Down);
    assert!(app.help.open);
    key(&mut app, KeyCode::Char('x'));
    assert!(!app.help.open);
    assert_eq!(app.prompt.input.value(), "x");
    // With text in the prompt, `?` is just a character.
    type_str(&mut app, "why?");
    assert_eq!(app.prompt.input.value(), "xwhy?");
    assert!(!app.help.open);
}

#[test]
fn f1_opens_help_and_esc_closes_it() {
    let mut app = new_app();
    key(&mut app, KeyCode::F(1));
    assert!(app.help.open);
    key(&mut app, KeyCode::Esc);
    assert!(!app.help.open);
    key(&mut app, KeyCode::F(1));
    key(&mut app, KeyCode::F(1));
    assert!(!app.help.open, "F1 toggles");
}

#[test]
fn f2_toggles_the_all_devices_view() {
    let mut app = three_devices();
    app.conversation.scroll = 1;
    key(&mut app, KeyCode::F(2));
    assert!(app.conversation.show_all);
    assert_eq!(app.conversation.scroll, 0);
    key(&mut app, KeyCode::F(2));
    assert!(!app.conversation.show_all);
    // `a` in the conversation pane does the same.
    app.focus = Focus::Conversation;
    key(&mut app, KeyCode::Char('a'));
    assert!(app.conversation.show_all);
    assert_eq!(app.prompt.input.value(), "");
}

#[test]
fn f3_toggles_the_log() {
    let mut app = new_app();
    key(&mut app, KeyCode::F(3));
    assert!(app.show_log);
    key(&mut app, KeyCode::F(3));
    assert!(!app.show_log);
}

#[test]
fn tab_and_shift_tab_cycle_focus() {
    let mut app = new_app();
    let mut seen = vec![app.focus];
    for _ in 0..5 {
        key(&mut app, KeyCode::Tab);
        seen.push(app.focus);
    }
    assert_eq!(
        seen,
        vec![
            Focus::Prompt,
            Focus::Connections,
            Focus::Conversation,
            Focus::Transfers,
            Focus::Received,
            Focus::Prompt,
        ]
    );
    shift_tab(&mut app);
    assert_eq!(app.focus, Focus::Received);
    shift_tab(&mut app);
    assert_eq!(app.focus, Focus::Transfers);
    // Shift-Tab also leaves a prompt with text in it.
    app.focus = Focus::Prompt;
    type_str(&mut app, "abc");
    shift_tab(&mut app);
    assert_eq!(app.focus, Focus::Received);
    assert_eq!(app.prompt.input.value(), "abc");
}

#[test]
fn esc_goes_back_to_the_prompt() {
    let mut app = three_devices();
    app.focus = Focus::Received;
    app.prompt.notice = Some(Notice {
        ok: true,
        text: "x".into(),
    });
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.focus, Focus::Prompt);
    assert_eq!(app.prompt.notice, None);
}

#[test]
fn j_and_k_in_connections_move_the_selection() {
    let mut app = three_devices();
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Focus::Connections);
    assert_eq!(
        key(&mut app, KeyCode::Char('j')),
        vec![Action::Engine(Command::Select(Some(2)))]
    );
    assert_eq!(app.connections.selected, Some(2));
    assert_eq!(
        key(&mut app, KeyCode::Down),
        vec![Action::Engine(Command::Select(Some(3)))]
    );
    // Clamped at the end: no action.
    assert!(key(&mut app, KeyCode::Char('j')).is_empty());
    assert_eq!(app.connections.selected, Some(3));
    assert_eq!(
        key(&mut app, KeyCode::Char('k')),
        vec![Action::Engine(Command::Select(Some(2)))]
    );
    assert_eq!(
        key(&mut app, KeyCode::Char('g')),
        vec![Action::Engine(Command::Select(Some(1)))]
    );
    assert!(key(&mut app, KeyCode::Up).is_empty());
    assert_eq!(
        key(&mut app, KeyCode::Char('G')),
        vec![Action::Engine(Command::Select(Some(3)))]
    );
    assert_eq!(app.prompt.input.value(), "", "j/k are not typed");
    // Enter goes back to the prompt.
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.focus, Focus::Prompt);
}

#[test]
fn selecting_another_device_resets_the_scroll() {
    let mut app = three_devices();
    for i in 0..30 {
        text(&mut app, 4, 1, "cam-1", Direction::In, &format!("{i}"));
    }
    key(&mut app, KeyCode::PageUp);
    assert_eq!(app.conversation.scroll, 10);
    app.focus = Focus::Connections;
    key(&mut app, KeyCode::Char('j'));
    assert_eq!(app.conversation.scroll, 0);
}

fn with_received() -> App {
    let mut app = three_devices();
    file_saved(&mut app, 10, 1, "cam-1", "old.jpg", 100);
    file_saved(&mut app, 11, 2, "cam-2", "new.bin", 200);
    app.on_event(ev(
        12,
        EventKind::FileFailed {
            conn: 3,
            device: "sensor".into(),
            name: "lost.csv".into(),
            reason: "connection closed".into(),
            part: None,
        },
    ));
    app
}

#[test]
fn enter_on_a_received_row_opens_a_preview() {
    let mut app = with_received();
    app.focus = Focus::Received;
    // Row 0 is the failure without a kept part: nothing to show.
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    assert_eq!(app.preview, None);
    key(&mut app, KeyCode::Char('j'));
    assert_eq!(app.received.selected, 1);
    let actions = key(&mut app, KeyCode::Enter);
    let path = "/home/lab/received/cam-2/new.bin".to_string();
    assert_eq!(actions, vec![Action::Preview(path.clone())]);
    assert_eq!(
        app.preview,
        Some(Preview {
            path,
            content: PreviewContent::Loading,
            offset: 0,
            total: 0,
        })
    );
    // Arrows go to the preview; Esc closes it.
    key(&mut app, KeyCode::Down);
    assert_eq!(app.received.selected, 1);
    assert!(app.preview.is_some());
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.preview, None);
    assert_eq!(app.focus, Focus::Received);
    // Movement is clamped.
    key(&mut app, KeyCode::Char('G'));
    assert_eq!(app.received.selected, 2);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.received.selected, 2);
    key(&mut app, KeyCode::Char('g'));
    key(&mut app, KeyCode::Up);
    assert_eq!(app.received.selected, 0);
}

#[test]
fn y_copies_the_path_to_the_clipboard_and_i_puts_it_in_the_prompt() {
    let mut app = with_received();
    type_str(&mut app, "send");
    app.focus = Focus::Received;
    app.received.selected = 2;
    let actions = key(&mut app, KeyCode::Char('y'));
    assert_eq!(
        actions,
        vec![Action::Copy("/home/lab/received/cam-1/old.jpg".into())]
    );
    assert_eq!(app.prompt.input.value(), "send", "y never touches the prompt");
    assert!(app.prompt.notice.as_ref().unwrap().text.contains("clipboard"));
    key(&mut app, KeyCode::Char('i'));
    assert_eq!(app.prompt.input.value(), "send /home/lab/received/cam-1/old.jpg");
    assert_eq!(app.focus, Focus::Prompt);
    assert_eq!(
        app.prompt.notice,
        Some(Notice {
            ok: true,
            text: "/home/lab/received/cam-1/old.jpg".into()
        })
    );
    // On a row without a path, `i` does nothing.
    app.prompt.input.reset();
    app.focus = Focus::Received;
    app.received.selected = 0;
    key(&mut app, KeyCode::Char('i'));
    assert_eq!(app.prompt.input.value(), "");
    assert_eq!(app.focus, Focus::Received);
}

#[test]
fn ctrl_c_quits_at_once_when_idle() {
    let mut app = three_devices();
    assert_eq!(ctrl(&mut app, 'c'), vec![Action::Quit]);
    assert_eq!(ctrl(&mut app, 'q'), vec![Action::Quit]);
}

#[test]
fn ctrl_c_asks_first_while_a_transfer_is_in_flight() {
    let mut app = three_devices();
    file_started(&mut app, 5, 1, "cam-1", "a.jpg", Some(1000));
    assert!(ctrl(&mut app, 'c').is_empty());
    assert!(app.confirm_quit);
    let notice = app.prompt.notice.clone().unwrap();
    assert!(!notice.ok);
    assert!(notice.text.contains("1 transfer(s) in flight"), "{}", notice.text);
    assert_eq!(ctrl(&mut app, 'c'), vec![Action::Quit]);

    // Esc cancels the question.
    let mut app = three_devices();
    file_started(&mut app, 5, 1, "cam-1", "a.jpg", Some(1000));
    ctrl(&mut app, 'c');
    assert!(key(&mut app, KeyCode::Esc).is_empty());
    assert!(!app.confirm_quit);
    assert_eq!(app.prompt.notice, None);
    // ...so the next Ctrl-C asks again.
    assert!(ctrl(&mut app, 'c').is_empty());
    assert!(app.confirm_quit);
}

#[test]
fn page_up_and_down_scroll_the_conversation_clamped() {
    let mut app = three_devices();
    for i in 0..24 {
        text(&mut app, 4, 1, "cam-1", Direction::In, &format!("{i}"));
    }
    // 25 entries (the connection note and 24 lines).
    key(&mut app, KeyCode::PageUp);
    assert_eq!(app.conversation.scroll, 10);
    key(&mut app, KeyCode::PageUp);
    key(&mut app, KeyCode::PageUp);
    assert_eq!(app.conversation.scroll, 24, "at most one entry is left on screen");
    key(&mut app, KeyCode::PageDown);
    assert_eq!(app.conversation.scroll, 14);
    key(&mut app, KeyCode::PageDown);
    key(&mut app, KeyCode::PageDown);
    assert_eq!(app.conversation.scroll, 0);
    // In the conversation pane: k/j/g/G.
    app.focus = Focus::Conversation;
    key(&mut app, KeyCode::Char('k'));
    key(&mut app, KeyCode::Up);
    assert_eq!(app.conversation.scroll, 2);
    key(&mut app, KeyCode::Char('j'));
    assert_eq!(app.conversation.scroll, 1);
    key(&mut app, KeyCode::Char('g'));
    assert_eq!(app.conversation.scroll, 24);
    key(&mut app, KeyCode::Char('G'));
    assert_eq!(app.conversation.scroll, 0);
    // Nothing to scroll: stays at 0.
    let mut empty = new_app();
    key(&mut empty, KeyCode::PageUp);
    assert_eq!(empty.conversation.scroll, 0);
}

#[test]
fn a_letter_typed_in_a_list_goes_to_the_prompt() {
    for focus in [
        Focus::Connections,
        Focus::Conversation,
        Focus::Transfers,
        Focus::Received,
    ] {
        let mut app = three_devices();
        app.focus = focus;
        key(&mut app, KeyCode::Char('x'));
        assert_eq!(app.focus, Focus::Prompt, "{focus:?}");
        assert_eq!(app.prompt.input.value(), "x", "{focus:?}");
    }
    // Non-printable keys in a list are not typed.
    let mut app = three_devices();
    app.focus = Focus::Transfers;
    key(&mut app, KeyCode::Left);
    assert_eq!(app.focus, Focus::Transfers);
}

#[test]
fn pasted_text_goes_to_the_prompt_without_control_characters() {
    let mut app = three_devices();
    app.focus = Focus::Connections;
    let paste = TermEvent::Paste("line1\nline2\x1b[31m".into());
    app.on_terminal(&paste, &panes());
    assert_eq!(app.prompt.input.value(), "line1line2[31m");
    assert_eq!(app.focus, Focus::Prompt);
}

// --------------------------------------------------------------------- mouse

#[test]
fn a_click_focuses_the_pane_under_it() {
    let p = panes();
    let mut app = new_app();
    let inside = |r: Rect| (r.x + 2, r.y + 1);
    for (rect, focus) in [
        (p.connections, Focus::Connections),
        (p.conversation, Focus::Conversation),
        (p.transfers, Focus::Transfers),
        (p.received, Focus::Received),
        (p.prompt, Focus::Prompt),
    ] {
        let (x, y) = inside(rect);
        click(&mut app, x, y);
        assert_eq!(app.focus, focus, "click at {x},{y} in {rect:?}");
    }
    app.focus = Focus::Received;
    click(&mut app, p.header.x + 1, p.header.y);
    assert_eq!(app.focus, Focus::Prompt);
    // The notice and hint lines belong to no pane: a click there changes nothing.
    app.focus = Focus::Received;
    click(&mut app, p.hints.x + 1, p.hints.y);
    assert_eq!(app.focus, Focus::Received);
}

#[test]
fn a_click_on_a_connections_row_selects_that_device() {
    let p = panes();
    let mut app = three_devices();
    // Rows start below the border and the column titles.
    let first_row = p.connections.y + 2;
    let actions = click(&mut app, p.connections.x + 3, first_row + 2);
    assert_eq!(actions, vec![Action::Engine(Command::Select(Some(3)))]);
    assert_eq!(app.connections.selected, Some(3));
    assert_eq!(app.focus, Focus::Connections);
    // The title row selects nothing; a row past the last device neither.
    assert!(click(&mut app, p.connections.x + 3, p.connections.y + 1).is_empty());
    assert!(click(&mut app, p.connections.x + 3, first_row + 5).is_empty());
    assert_eq!(app.connections.selected, Some(3));
    // Clicking the selected row again changes nothing.
    assert!(click(&mut app, p.connections.x + 3, first_row + 2).is_empty());
    assert_eq!(
        click(&mut app, p.connections.x + 3, first_row),
        vec![Action::Engine(Command::Select(Some(1)))]
    );
}

#[test]
fn a_click_on_a_received_row_selects_it() {
    let p = panes();
    let mut app = with_received();
    click(&mut app, p.received.x + 3, p.received.y + 2 + 1);
    assert_eq!(app.focus, Focus::Received);
    assert_eq!(app.received.selected, 1);
    click(&mut app, p.received.x + 3, p.received.y + 2 + 2);
    assert_eq!(app.received.selected, 2);
    // Below the last file: the last one.
    let mut app = new_app();
    connect(&mut app, 0, 1, "cam-1");
    file_saved(&mut app, 1, 1, "cam-1", "only.bin", 10);
    assert!(p.received.height >= 6, "{:?}", p.received);
    click(&mut app, p.received.x + 3, p.received.y + 2 + 2);
    assert_eq!(app.received.selected, 0);
}

/// Many devices: the list is scrolled so the selection is in view, and clicks
/// map to the rows as drawn.
#[test]
fn a_click_in_a_scrolled_connections_list_selects_the_row_shown() {
    let p = panes();
    let mut app = new_app();
    for i in 0..50 {
        connect(&mut app, 0, i, &format!("dev-{i:02}"));
    }
    let visible = p.connections.height as usize - 3;
    app.connections.selected = Some(30);
    let offset = crate::tui::layout::list_offset(30, visible);
    assert_eq!(offset, 30 - (visible - 1));
    let actions = click(&mut app, p.connections.x + 3, p.connections.y + 2);
    assert_eq!(
        actions,
        vec![Action::Engine(Command::Select(Some(offset as u64)))]
    );
}

#[test]

fn a_click_on_the_connections_bottom_border_selects_nothing() {
    let p = panes();
    let mut app = new_app();
    for i in 0..50 {
        connect(&mut app, 0, i, &format!("dev-{i:02}"));
    }
    // cam 0 selected, rows 0..visible shown; the border is below the last one.
    let bottom_border = p.connections.y + p.connections.height - 1;
    let actions = click(&mut app, p.connections.x + 3, bottom_border);
    assert!(actions.is_empty(), "border click gave {actions:?}");
    assert_eq!(app.connections.selected, Some(0));
}

#[test]

fn a_click_on_the_received_bottom_border_selects_nothing() {
    let p = panes();
    let mut app = new_app();
    connect(&mut app, 0, 1, "cam-1");
    for i in 0..20 {
        file_saved(&mut app, 1, 1, "cam-1", &format!("f{i}.bin"), 10);
    }
    let visible = p.received.height as usize - 3;
    let bottom_border = p.received.y + p.received.height - 1;
    click(&mut app, p.received.x + 3, bottom_border);
    assert!(
        app.received.selected < visible,
        "selected row {} is not drawn (rows 0..{visible} are)",
        app.received.selected
    );
}

#[test]
fn the_wheel_scrolls() {
    let p = panes();
    let mut app = with_received();
    for i in 0..20 {
        text(&mut app, 4, 1, "cam-1", Direction::In, &format!("{i}"));
    }
    let inside = |r: Rect| (r.x + 2, r.y + 2);
    let (x, y) = inside(p.conversation);
    app.on_mouse(mouse(MouseEventKind::ScrollUp, x, y), &p);
    assert_eq!(app.conversation.scroll, 3);
    app.on_mouse(mouse(MouseEventKind::ScrollUp, x, y), &p);
    app.on_mouse(mouse(MouseEventKind::ScrollDown, x, y), &p);
    assert_eq!(app.conversation.scroll, 3);
    app.on_mouse(mouse(MouseEventKind::ScrollDown, x, y), &p);
    app.on_mouse(mouse(MouseEventKind::ScrollDown, x, y), &p);
    assert_eq!(app.conversation.scroll, 0);
    assert_eq!(app.focus, Focus::Prompt, "the wheel does not move focus");

    // In connections it moves the selection.
    let (x, y) = inside(p.connections);
    assert_eq!(
        app.on_mouse(mouse(MouseEventKind::ScrollDown, x, y), &p),
        vec![Action::Engine(Command::Select(Some(2)))]
    );
    assert_eq!(
        app.on_mouse(mouse(MouseEventKind::ScrollUp, x, y), &p),
        vec![Action::Engine(Command::Select(Some(1)))]
    );
    // In received, too (clamped).
    let (x, y) = inside(p.received);
    for _ in 0..5 {
        app.on_mouse(mouse(MouseEventKind::ScrollDown, x, y), &p);
    }
    assert_eq!(app.received.selected, 2);
    app.on_mouse(mouse(MouseEventKind::ScrollUp, x, y), &p);
    assert_eq!(app.received.selected, 1);
}

/// Every row drawn in the connections pane, clicked, selects the device whose name
/// is drawn there (the pane is re-drawn after each click, as the loop does).
#[test]
fn a_click_selects_the_device_drawn_under_it() {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    let theme = crate::tui::theme::Theme::default_theme();
    let p = panes();
    let mut app = new_app();
    for i in 0..50 {
        connect(&mut app, 0, i, &format!("dev-{i:02}"));
    }
    app.connections.selected = Some(30);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    for row in p.connections.y + 2..p.connections.bottom() - 1 {
        terminal
            .draw(|f| crate::tui::render::draw(f, &app, &theme, None))
            .unwrap();
        let buffer = terminal.backend().buffer();
        let drawn: String = (p.connections.x + 1..p.connections.x + 7)
            .map(|x| buffer[(x, row)].symbol())
            .collect();
        click(&mut app, p.connections.x + 3, row);
        assert_eq!(app.selected_device().unwrap().name, drawn, "row {row}");
    }
}

#[test]

fn a_failure_arriving_keeps_a_sensible_received_selection() {
    let mut app = with_received();
    app.focus = Focus::Received;
    app.received.selected = 1;
    let before = app.model.received[1].name.clone();
    app.on_event(ev(
        20,
        EventKind::FileFailed {
            conn: 1,
            device: "cam-1".into(),
            name: "late.bin".into(),
            reason: "crc mismatch".into(),
            part: None,
        },
    ));
    let now = app.model.received[app.received.selected].name.clone();
    // Either follow the newest (as a saved file does) or stay on the same file.
    assert!(
        now == "late.bin" || now == before,
        "the selection was on {before}, is now on {now}"
    );
}

#[test]

fn the_quit_question_does_not_outlive_its_cancelling() {
    let mut app = three_devices();
    file_started(&mut app, 5, 1, "cam-1", "a.jpg", Some(1000));
    ctrl(&mut app, 'c');
    key(&mut app, KeyCode::Char('x'));
    assert!(!app.confirm_quit);
    // The notice still tells the operator that Ctrl-C will now quit; it will not.
    let says_quit = app
        .prompt
        .notice
        .as_ref()
        .is_some_and(|n| n.text.contains("press Ctrl-C again"));
    assert!(
        !says_quit || ctrl(&mut app, 'c') == vec![Action::Quit],
        "the notice promises that Ctrl-C quits, but it only asks again"
    );
}

#[test]
fn one_file_ending_leaves_the_connections_other_transfers() {
    let mut app = new_app();
    connect(&mut app, 0, 1, "cam-1");
    file_started(&mut app, 1, 1, "cam-1", "a.bin", Some(10));
    file_started(&mut app, 1, 1, "cam-1", "b.bin", Some(10));
    app.on_event(ev(
        2,
        EventKind::FileSaved {
            conn: 1,
            device: "cam-1".into(),
            name: "a (1).bin".into(),
            path: "/r/cam-1/a (1).bin".into(),
            size: 10,
            crc32: 0,
            seconds: 1.0,
            ended_by_close: false,
        },
    ));
    let names: Vec<&str> = app.model.transfers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["b.bin"], "a saved under a numbered name ends a.bin only");
    assert!(
        matches!(&app.model.device(1).unwrap().state, DeviceState::Receiving { name, .. } if name == "b.bin")
    );
    // A refusal of a file that never started ends nothing.
    app.on_event(ev(
        3,
        EventKind::FileFailed {
            conn: 1,
            device: "cam-1".into(),
            name: "c.bin".into(),
            reason: "refused: too many".into(),
            part: None,
        },
    ));
    assert_eq!(app.model.transfers.len(), 1);
    assert!(app.model.transfer_in_flight());
}

#[test]
fn find_goes_from_the_newest_match_to_older_and_back_and_esc_ends_it() {
    let mut app = three_devices();
    for i in 0..20 {
        let line = if i % 5 == 0 {
            format!("ERROR sensor {i}")
        } else {
            format!("ok {i}")
        };
        text(&mut app, 10 + i, 1, "cam-1", Direction::In, &line);
    }
    let before = app.visible_conversation().unwrap().len();
    type_str(&mut app, "/find error");
    key(&mut app, KeyCode::Enter);
    let at = |app: &App| {
        let i = app
            .conversation
            .find
            .as_ref()
            .and_then(|f| f.current)
            .expect("a match");
        app.visible_conversation().unwrap()[i].text.clone()
    };
    assert_eq!(at(&app), "ERROR sensor 15");
    ctrl(&mut app, 'n');
    assert_eq!(at(&app), "ERROR sensor 10");
    ctrl(&mut app, 'n');
    ctrl(&mut app, 'n');
    assert_eq!(at(&app), "ERROR sensor 0");
    ctrl(&mut app, 'n');
    assert_eq!(at(&app), "ERROR sensor 0", "no older match: it stays");
    assert!(
        app.prompt
            .notice
            .as_ref()
            .unwrap()
            .text
            .contains("no more matches")
    );
    ctrl(&mut app, 'p');
    assert_eq!(at(&app), "ERROR sensor 5");
    // Typing still reaches the prompt while finding.
    type_str(&mut app, "abc");
    assert_eq!(app.prompt.input.value(), "abc");
    assert!(app.conversation.find.is_some());
    key(&mut app, KeyCode::Esc);
    assert!(app.conversation.find.is_none());
    assert_eq!(app.visible_conversation().unwrap().len(), before);
    // Ctrl-F opens the same prompt.
    app.prompt.input = Input::new(String::new());
    ctrl(&mut app, 'f');
    assert_eq!(app.prompt.input.value(), "/find ");
}

#[test]
fn filter_view_wrap_and_millis_are_the_panes_own() {
    let mut app = three_devices();
    type_str(&mut app, "/filter temp");
    assert!(key(&mut app, KeyCode::Enter).is_empty(), "not sent to the engine");
    assert_eq!(app.conversation.filter.as_deref(), Some("temp"));
    type_str(&mut app, "/filter");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.conversation.filter, None);
    key(&mut app, KeyCode::F(4));
    assert_eq!(app.conversation.view, crate::console::ViewMode::Hex);
    type_str(&mut app, "/view text");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.conversation.view, crate::console::ViewMode::Text);
    app.focus = Focus::Conversation;
    assert!(app.conversation.wrap);
    key(&mut app, KeyCode::Char('w'));
    assert!(!app.conversation.wrap);
    key(&mut app, KeyCode::Right);
    assert_eq!(app.conversation.hscroll, 8);
    key(&mut app, KeyCode::Char('t'));
    assert!(app.conversation.millis);
}

#[test]
fn no_pop_up_eats_a_key() {
    // Every pop-up, a printable key and Enter: the key lands as if it were not there.
    for open in ["help", "overlay", "preview"] {
        let mut app = three_devices();
        let set = |app: &mut App| match open {
            "help" => app.help.open = true,
            "overlay" => app.overlay = Some(("/list".into(), "a\nb".into())),
            _ => {
                app.preview = Some(Preview {
                    path: "/x".into(),
                    content: PreviewContent::Loading,
                    offset: 0,
                    total: 0,
                })
            }
        };
        set(&mut app);
        type_str(&mut app, "/to cam-2");
        assert!(
            !app.help.open && app.overlay.is_none() && app.preview.is_none(),
            "{open}"
        );
        assert_eq!(app.prompt.input.value(), "/to cam-2", "{open}");
        set(&mut app);
        let actions = key(&mut app, KeyCode::Enter);
        assert_eq!(
            actions,
            vec![Action::Engine(Command::Line("/to cam-2".into()))],
            "{open}: Enter closes the pop-up and runs the line"
        );
        // Esc only closes.
        set(&mut app);
        type_str(&mut app, "x");
        set(&mut app);
        assert!(key(&mut app, KeyCode::Esc).is_empty());
        assert_eq!(app.prompt.input.value(), "x", "{open}");
    }
}

#[test]
fn ctrl_z_suspends_and_a_gone_device_shows_its_exact_final_bytes() {
    let mut app = three_devices();
    assert_eq!(ctrl(&mut app, 'z'), vec![Action::Suspend]);
    app.on_event(ev(
        50,
        EventKind::Disconnected {
            conn: 1,
            device: "cam-1".into(),
            reason: "closed by the device".into(),
            bytes_in: 200_000_123,
            bytes_out: 77,
            crc_errors: 0,
            rewinds: 0,
        },
    ));
    app.tick(at(51));
    let d = app.model.devices.iter().find(|d| d.conn == 1).unwrap();
    assert_eq!((d.bytes_in, d.bytes_out, d.rate_in), (200_000_123, 77, 0));
}

#[test]
fn the_hex_preview_pages_through_the_whole_file() {
    let mut app = with_received();
    app.preview = Some(Preview {
        path: "/x.bin".into(),
        content: PreviewContent::Hex(vec![0; 4096]),
        offset: 0,
        total: 10_000,
    });
    assert_eq!(
        key(&mut app, KeyCode::PageDown),
        vec![Action::PreviewAt("/x.bin".into(), 512)]
    );
    assert_eq!(
        key(&mut app, KeyCode::PageDown),
        vec![Action::PreviewAt("/x.bin".into(), 1024)]
    );
    assert_eq!(
        key(&mut app, KeyCode::PageUp),
        vec![Action::PreviewAt("/x.bin".into(), 512)]
    );
    assert_eq!(
        key(&mut app, KeyCode::End),
        vec![Action::PreviewAt("/x.bin".into(), 9488)]
    );
    assert!(key(&mut app, KeyCode::PageDown).len() <= 1);
    assert_eq!(
        key(&mut app, KeyCode::Home),
        vec![Action::PreviewAt("/x.bin".into(), 0)]
    );
    assert!(key(&mut app, KeyCode::PageUp).is_empty(), "already at the start");
    assert!(app.preview.is_some(), "paging keeps the preview open");
}

#[test]
fn a_resumed_transfer_says_where_it_resumed() {
    let mut app = three_devices();
    app.on_event(ev(
        30,
        EventKind::FileStarted {
            conn: 1,
            device: "cam-1".into(),
            name: "big.bin".into(),
            size: Some(100 << 20),
            resumed_from: Some(55 << 20),
        },
    ));
    assert!(
        conversation_texts(&app, 1)
            .iter()
            .any(|t| t == "sending big.bin (100 MiB, resumed at 55 MiB)"),
        "{:?}",
        conversation_texts(&app, 1)
    );
    let t = &app.model.transfers[0];
    assert_eq!((t.bytes, t.resumed_from), (55 << 20, Some(55 << 20)));
    file_progress(&mut app, 32, 1, "cam-1", "big.bin", 65 << 20);
    // The rate counts only what came since the resume: 10 MiB in 2 s.
    let rate = app.model.transfers[0].rate();
    assert!((rate - (5 << 20) as f64).abs() < 1.0, "{rate}");
}

#[test]
fn a_failed_row_that_a_resume_completed_is_superseded_and_opens_the_file() {
    let mut app = three_devices();
    file_started(&mut app, 10, 1, "cam-1", "big.bin", Some(1000));
    app.on_event(ev(
        11,
        EventKind::FileFailed {
            conn: 1,
            device: "cam-1".into(),
            name: "big.bin".into(),
            reason: "interrupted".into(),
            part: Some("/r/cam-1/big.bin.part".into()),
        },
    ));
    file_saved(&mut app, 20, 1, "cam-1", "big.bin", 1000);
    let failed = app.model.received.iter().find(|r| r.failure.is_some()).unwrap();
    assert!(failed.superseded);
    let saved_path = app.model.received[0].path.clone();
    assert_eq!(failed.path, saved_path);
    // Enter on the superseded row previews the completed file.
    app.focus = Focus::Received;
    app.received.selected = 1;
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        vec![Action::Preview(saved_path.unwrap())]
    );
}

#[test]
fn the_help_scrolls_with_arrows_and_pages_and_a_letter_still_closes_it() {
    let mut app = new_app();
    key(&mut app, KeyCode::F(1));
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::PageDown);
    assert!(app.help.open);
    assert_eq!(app.help.scroll, 11);
    key(&mut app, KeyCode::PageUp);
    assert_eq!(app.help.scroll, 1);
    type_str(&mut app, "x");
    assert!(!app.help.open);
    assert_eq!(app.prompt.input.value(), "x");
    key(&mut app, KeyCode::F(1));
    assert_eq!(app.help.scroll, 0, "opens at the top");
}

/// The keymap is the only source of keys: every letter it binds in a pane is
/// that pane's (never typed into the prompt), and every other letter is typed.
#[test]
fn every_letter_the_keymap_binds_in_a_pane_is_handled_and_the_rest_are_typed() {
    use crate::tui::keymap::{BINDINGS, Scope};
    let panes = [
        (Scope::Connections, Focus::Connections),
        (Scope::Conversation, Focus::Conversation),
        (Scope::Received, Focus::Received),
    ];
    for (scope, focus) in panes {
        let bound: Vec<char> = BINDINGS
            .iter()
            .filter(|b| b.scope == scope)
            .flat_map(|b| b.keys.iter())
            .filter_map(|k| match k.code {
                KeyCode::Char(c) if !k.ctrl => Some(c),
                _ => None,
            })
            .collect();
        assert!(!bound.is_empty(), "{scope:?} has letters");
        for c in ('a'..='z').chain('A'..='Z') {
            let mut app = with_received();
            text(&mut app, 20, 1, "cam-1", Direction::In, "a line to copy");
            app.focus = focus;
            key(&mut app, KeyCode::Char(c));
            let typed = app.prompt.input.value() == c.to_string();
            assert_eq!(
                typed,
                !bound.contains(&c),
                "{c:?} in {scope:?}: bound keys act, others are typed"
            );
        }
    }
}

#[test]
fn tab_completes_serial_paths() {
    let dir = std::env::temp_dir().join(format!("benchlink-tab-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("by-id")).unwrap();
    for name in ["ttyUSB0", "ttyUSB1", "ttyACM0"] {
        std::fs::write(dir.join(name), b"").unwrap();
    }
    let base = dir.display().to_string();
    let mut app = new_app();
    app.prompt.input = Input::new(format!("/serial {base}/ttyA"));
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.prompt.input.value(), format!("/serial {base}/ttyACM0"));
    app.prompt.input = Input::new(format!("/serial frames://{base}/tty"));
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.prompt.input.value(), format!("/serial frames://{base}/tty"));
    let listed = &app.prompt.notice.as_ref().unwrap().text;
    assert!(
        listed.contains("ttyUSB0") && listed.contains("ttyUSB1") && listed.contains("ttyACM0"),
        "{listed}"
    );
    app.prompt.input = Input::new(format!("/serial {base}/by"));
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.prompt.input.value(), format!("/serial {base}/by-id/"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A serial port that goes away stays listed as reconnecting (with the time to
/// the next attempt) and comes back as the same row and conversation.
#[test]
fn a_reconnecting_link_keeps_its_row_and_conversation() {
    let mut app = new_app();
    app.on_event(ev(
        0,
        EventKind::Connected {
            conn: 4,
            device: "ttyUSB0".into(),
            peer: "/dev/ttyUSB0".into(),
            protocol: "lines".into(),
        },
    ));
    text(&mut app, 1, 4, "ttyUSB0", Direction::In, "boot ok");
    app.on_event(ev(
        2,
        EventKind::Disconnected {
            conn: 4,
            device: "ttyUSB0".into(),
            reason: "closed by the device".into(),
            bytes_in: 9,
            bytes_out: 0,
            crc_errors: 0,
            rewinds: 0,
        },
    ));
    app.on_event(ev(
        2,
        EventKind::Reconnecting {
            conn: 4,
            device: "ttyUSB0".into(),
            peer: "/dev/ttyUSB0".into(),
            reason: "/dev/ttyUSB0 is not there (unplugged?)".into(),
            delay_ms: 4_000,
            attempt: 2,
        },
    ));
    let row = app.model.device(4).unwrap();
    assert_eq!(row.gone_at, None, "not gone: being retried");
    assert_eq!(row.state, DeviceState::Reconnecting { at: at(6) });
    // A minute later it is still listed (a gone device would be forgotten).
    for s in 3..120 {
        app.tick(at(s));
    }
    assert!(app.model.device(4).is_some());
    app.on_event(ev(
        120,
        EventKind::Connected {
            conn: 4,
            device: "ttyUSB0".into(),
            peer: "/dev/ttyUSB0".into(),
            protocol: "lines".into(),
        },
    ));
    assert_eq!(app.model.devices.len(), 1, "the same row");
    assert_eq!(app.model.device(4).unwrap().state, DeviceState::Idle);
    let texts: Vec<&str> = app.model.conversations[&4]
        .iter()
        .map(|e| e.text.as_str())
        .collect();
    assert!(texts.contains(&"boot ok"), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("trying again in 4 s")),
        "{texts:?}"
    );
    // /close: gone for good.
    app.on_event(ev(
        130,
        EventKind::LinkClosed {
            conn: 4,
            device: "ttyUSB0".into(),
        },
    ));
    assert!(app.model.device(4).unwrap().gone_at.is_some());
}

/// A port missing at start is listed before it ever connects.
#[test]
fn a_link_that_never_connected_is_listed_as_reconnecting() {
    let mut app = new_app();
    let actions = app.on_event(ev(
        0,
        EventKind::Reconnecting {
            conn: 1,
            device: "ttyACM0".into(),
            peer: "/dev/ttyACM0".into(),
            reason: "/dev/ttyACM0 is not there (unplugged?)".into(),
            delay_ms: 1_000,
            attempt: 1,
        },
    ));
    assert!(actions.is_empty());
    let row = app.model.device(1).expect("listed");
    assert_eq!(
        (row.name.as_str(), row.peer.as_str()),
        ("ttyACM0", "/dev/ttyACM0")
    );
    // When it connects it becomes the target, as any first device does.
    let actions = app.on_event(ev(
        3,
        EventKind::Connected {
            conn: 1,
            device: "ttyACM0".into(),
            peer: "/dev/ttyACM0".into(),
            protocol: "frames".into(),
        },
    ));
    assert_eq!(actions, vec![Action::Engine(Command::Select(Some(1)))]);
    assert_eq!(app.model.devices.len(), 1);
}
