//! The `--no-tui` front end: events to stdout (human text or JSON lines), commands
//! from stdin. It only consumes the engine's events, like the TUI will.

use std::io::{self, BufRead, Read, Write};

use tokio::sync::mpsc;

use crate::engine::event::TextBatch;
use crate::engine::event_queue::EventReceiver;
use crate::engine::{Command, Direction, Engine, Event, EventKind};
use crate::text::for_terminal;

/// Longest stdin line taken as one command.
const MAX_INPUT_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

/// Runs the engine with this front end until it stops.
pub async fn run(engine: Engine, format: Format) {
    run_handle(engine.start(), format).await;
}

/// Headless on any source of events and sink of commands (a local engine, or
/// `benchlink watch`).
pub async fn run_handle(handle: crate::engine::EngineHandle, format: Format) {
    let commands = handle.commands.clone();
    spawn_stdin_reader(commands.clone());
    tokio::spawn(forward_signals(commands.clone()));
    let printer = spawn_printer(handle.events, format, commands);
    let _ = handle.task.await;
    let joined =
        tokio::time::timeout(PRINTER_GRACE, tokio::task::spawn_blocking(move || printer.join())).await;
    if joined.is_err() {
        // The printer is stuck writing to a stdout nobody reads (a stalled pipe or
        // SSH link): the engine has stopped and saved everything, so exit now.
        std::process::exit(0);
    }
}

/// Bytes of output gathered before a write to stdout (flushed sooner whenever
/// no event waits).
const OUTPUT_BUFFER: usize = 64 * 1024;

/// How long a stopped console waits for the last events to reach stdout.
const PRINTER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Printing happens on its own thread, so a slow terminal or pipe never blocks the
/// async workers; the bounded event queue slows devices down instead.
fn spawn_printer(
    mut events: EventReceiver,
    format: Format,
    commands: mpsc::Sender<Command>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let stdout = io::stdout();
        // Room for many lines a write: a device streaming text makes millions.
        let mut out = io::BufWriter::with_capacity(OUTPUT_BUFFER, stdout.lock());
        let mut broken = false;
        while let Some(event) = events.blocking_recv_gathered() {
            let stopped = matches!(event.kind, EventKind::Stopped { .. });
            if !broken {
                let mut written = match (&event.kind, format) {
                    (EventKind::Texts(batch), _) => write_texts(&mut out, &event, batch, format),
                    (_, Format::Human) => match human(&event) {
                        Some(line) => writeln!(out, "{line}"),
                        None => Ok(()),
                    },
                    (_, Format::Json) => writeln!(out, "{}", json(&event)),
                };
                if events.is_empty() {
                    written = written.and_then(|()| out.flush());
                }
                if written.is_err() {
                    // Whoever read our output is gone (a closed pipe): stop cleanly.
                    broken = true;
                    let _ = commands.blocking_send(Command::Shutdown("stdout was closed".into()));
                }
            }
            if stopped {
                break;
            }
        }
        let _ = out.flush();
    })
}

/// A batch of lines, each exactly as its own `Text` event would print, with
/// what the lines share (time, device, direction) formatted once.
fn write_texts(out: &mut impl Write, event: &Event, batch: &TextBatch, format: Format) -> io::Result<()> {
    let Some(first) = batch.event(0) else {
        return Ok(());
    };
    let mut shared = Event {
        ts: event.ts,
        kind: first,
    };
    if let EventKind::Text { text, raw, .. } = &mut shared.kind {
        text.clear();
        *raw = None;
    }
    match format {
        Format::Json => {
            // `text` is the last field: the event with an empty one, cut before
            // its value, is what every line starts with.
            let whole = json(&shared);
            let Some(start) = whole.strip_suffix("\"\"}") else {
                return Ok(());
            };
            for line in batch.lines() {
                out.write_all(start.as_bytes())?;
                if json_as_is(line) {
                    out.write_all(b"\"")?;
                    out.write_all(line.as_bytes())?;
                    out.write_all(b"\"}\n")?;
                } else {
                    serde_json::to_writer(&mut *out, line)?;
                    out.write_all(b"}\n")?;
                }
            }
        }
        Format::Human => {
            let Some(start) = human(&shared) else {
                return Ok(());
            };
            for line in batch.lines() {
                out.write_all(start.as_bytes())?;
                out.write_all(for_terminal(line).as_bytes())?;
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}

/// Text that a JSON string holds as it is: no quote, backslash or control
/// character (what serde_json escapes). One pass without an early exit, so
/// the compiler tests many bytes at once.
fn json_as_is(text: &str) -> bool {
    text.bytes()
        .fold(true, |as_is, b| as_is & (b >= 0x20) & (b != b'"') & (b != b'\\'))
}

/// Reads commands from stdin on a plain thread: a blocking read there cannot hold
/// up the runtime. EOF ends the reader, not the console (it is a server).
fn spawn_stdin_reader(commands: mpsc::Sender<Command>) {
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut stdin)
                .take(MAX_INPUT_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.len() > MAX_INPUT_LINE && !line.ends_with(b"\n") {
                eprintln!("benchlink: ignored an input line longer than 64 KiB");
                if !skip_line(&mut stdin) {
                    return;
                }
                continue;
            }
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            if commands.blocking_send(Command::Line(text)).is_err() {
                return;
            }
        }
    });
}

/// Discards input up to and including the next newline without holding it; false
/// at the end of the input.
fn skip_line(input: &mut impl BufRead) -> bool {
    loop {
        let (found, used) = match input.fill_buf() {
            Ok([]) | Err(_) => return false,
            Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                Some(at) => (true, at + 1),
                None => (false, buf.len()),
            },
        };
        input.consume(used);
        if found {
            return true;
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP stop the console cleanly; a second one exits at once.
async fn forward_signals(commands: mpsc::Sender<Command>) {
    let name = wait_for_signal().await;
    let _ = commands.send(Command::Shutdown(format!("received {name}"))).await;
    wait_for_signal().await;
    std::process::exit(130);
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

pub fn json(event: &Event) -> String {
    serde_json::to_string(event).unwrap_or_else(|e| format!("{{\"event\":\"error\",\"message\":\"{e}\"}}"))
}

/// One line for a person, or None for what the next line says anyway (the "sent"
/// reply to plain text, which the `-> device: text` line confirms). Everything a
/// device could influence goes through [`for_terminal`], so no escape sequence from
/// a device reaches the terminal.
pub fn human(event: &Event) -> Option<String> {
    let ts = event.ts.format("%H:%M:%S");
    let safe = |s: &str| for_terminal(s).into_owned();
    let body = match &event.kind {
        EventKind::Listening { addr, protocol, dir } => {
            format!(
                "listening on {addr} ({protocol}); received files go to {}",
                safe(dir)
            )
        }
        EventKind::Connected {
            conn,
            device,
            peer,
            protocol,
        } => format!("+ {} connected from {peer} ({protocol}, #{conn})", safe(device)),
        EventKind::Texts(batch) => {
            let lines = (0..batch.len()).filter_map(|n| batch.event(n));
            let lines: Vec<String> = lines
                .filter_map(|kind| human(&Event { ts: event.ts, kind }))
                .collect();
            return (!lines.is_empty()).then(|| lines.join("\n"));
        }
        EventKind::Text {
            device,
            direction: Direction::In,
            text,
            ..
        } => format!("{}: {}", safe(device), safe(text)),
        EventKind::Text {
            device,
            direction: Direction::Out,
            text,
            ..
        } => format!("-> {}: {}", safe(device), safe(text)),
        EventKind::FileStarted {
            device,
            name,
            size,
            resumed_from,
            ..
        } => {
            let size = size.map_or_else(|| "size unknown".to_string(), crate::text::size);
            let resumed =
                resumed_from.map_or_else(String::new, |r| format!(", resumed at {}", crate::text::size(r)));
            format!("{} is sending {} ({size}{resumed})", safe(device), safe(name))
        }
        EventKind::FileProgress {
            device, name, bytes, ..
        } => {
            format!(
                "{} ... {} of {} received",
                safe(device),
                crate::text::size(*bytes),
                safe(name)
            )
        }
        EventKind::FileSaved {
            device,
            name,
            path,
            size,
            crc32,
            seconds,
            ended_by_close,
            ..
        } => {
            let how = if *ended_by_close { ", ended by close" } else { "" };
            format!(
                "{} saved {} ({}, crc32 {crc32:08x}, {seconds:.2} s{how}) in {}",
                safe(device),
                safe(name),
                crate::text::size(*size),
                safe(path)
            )
        }
        EventKind::FileFailed {
            device, name, reason, ..
        } => {
            let name = if name.is_empty() {
                "a file".to_string()
            } else {
                safe(name)
            };
            format!("{} FAILED to send {name}: {}", safe(device), safe(reason))
        }
        EventKind::Disconnected { device, reason, .. } => {
            format!("- {} disconnected ({})", safe(device), safe(reason))
        }
        EventKind::FilePushStarted {
            device,
            name,
            size,
            via,
            ..
        } => format!(
            "sending {} ({}) to {} by {}",
            safe(name),
            crate::text::size(*size),
            safe(device),
            safe(via)
        ),
        EventKind::FilePushProgress {
            device, name, bytes, ..
        } => format!(
            "{} ... {} of {} sent",
            safe(device),
            crate::text::size(*bytes),
            safe(name)
        ),
        EventKind::FilePushed {
            device,
            name,
            size,
            seconds,
            ..
        } => format!(
            "{} received {} ({}, {seconds:.2} s)",
            safe(device),
            safe(name),
            crate::text::size(*size)
        ),
        EventKind::FilePushFailed {
            device, name, reason, ..
        } => format!(
            "sending {} to {} FAILED: {}",
            safe(name),
            safe(device),
            safe(reason)
        ),
        EventKind::PartRemoved { device, path, reason } => {
            format!("- {}: removed {} ({})", safe(device), safe(path), safe(reason))
        }
        EventKind::Reconnecting {
            device,
            reason,
            delay_ms,
            ..
        } => format!(
            "{}: {}; trying again in {}",
            safe(device),
            safe(reason),
            crate::text::duration_ms(*delay_ms)
        ),
        EventKind::LinkClosed { device, .. } => format!("{}: closed (no more retries)", safe(device)),
        EventKind::Error { message } => format!("error: {}", safe(message)),
        EventKind::Broker { state, detail } => format!("mqtt: {} ({})", safe(state), safe(detail)),
        EventKind::Reply {
            ok: true, command, ..
        } if !command.starts_with('/') => return None,
        EventKind::Reply { ok: true, text, .. } => safe_multiline(text),
        EventKind::Reply { ok: false, text, .. } => format!("! {}", safe(text)),
        EventKind::Stats { .. } => return None,
        EventKind::Dropped { events, bytes } => format!(
            "... {events} events ({}) dropped because the output was too slow; texts are in each device's conversation.log",
            crate::text::size(*bytes)
        ),
        EventKind::Stopped { reason } => format!("stopped ({})", safe(reason)),
    };
    Some(format!("{ts} {body}"))
}

/// Replies such as /list and /help span lines; each line is escaped on its own.
fn safe_multiline(text: &str) -> String {
    text.split('\n')
        .map(|l| for_terminal(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_lines_never_carry_device_control_characters() {
        let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2Jhi\r\n";
        let events = [
            EventKind::Text {
                conn: 1,
                device: "cam".into(),
                direction: Direction::In,
                text: hostile.into(),
                raw: None,
            },
            EventKind::FileFailed {
                conn: 1,
                device: "cam".into(),
                name: hostile.into(),
                reason: hostile.into(),
                part: None,
            },
            EventKind::Error {
                message: hostile.into(),
            },
        ];
        for kind in events {
            let line = human(&Event::now(kind)).expect("shown");
            assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
            assert!(line.contains("\\x1b"));
        }
    }

    /// A batch prints exactly as its lines would one event at a time.
    #[test]
    fn a_batch_prints_as_its_text_events_would() {
        let mut batch = TextBatch::new(4, "cam \"7\"".into(), Direction::In);
        for line in [
            "plain",
            "tab\there",
            "quote \" and \\",
            "\u{1b}[2Jwiped",
            "héllo \u{202e}",
        ] {
            batch.push_from_device(line.as_bytes());
        }
        let event = Event::now(EventKind::Texts(std::sync::Arc::new(batch.clone())));
        for format in [Format::Json, Format::Human] {
            let mut got = Vec::new();
            write_texts(&mut got, &event, &batch, format).expect("written");
            let want: String = (0..batch.len())
                .map(|n| {
                    let line = Event {
                        ts: event.ts,
                        kind: batch.event(n).expect("a line"),
                    };
                    match format {
                        Format::Json => json(&line),
                        Format::Human => human(&line).expect("shown"),
                    }
                })
                .map(|line| line + "\n")
                .collect();
            assert_eq!(String::from_utf8(got).expect("utf-8"), want, "{format:?}");
        }
    }

    #[test]
    fn json_keeps_the_exact_text_and_names() {
        let line = json(&Event::now(EventKind::Text {
            conn: 7,
            device: "cam".into(),
            direction: Direction::Out,
            text: "a\u{1b}b".into(),
            raw: None,
        }));
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid json");
        assert_eq!(v["event"], "text");
        assert_eq!(v["direction"], "out");
        assert_eq!(v["text"], "a\u{1b}b");
        assert_eq!(v["conn"], 7);
        let ts = v["ts"].as_str().expect("ts");
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
    }
}
