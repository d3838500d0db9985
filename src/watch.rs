//! `benchlink watch mqtt://HOST[:PORT] [--bench NAME...]`: the console on a
//! broker instead of on sockets. Every bench's published events become the same
//! Event type the TUI and the headless printer consume (devices named
//! `bench/device`, connection numbers made unique), and the prompt's lines are
//! published to the benches' `cmd` topics (their consoles need
//! `--mqtt-commands`).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use rumqttc::{AsyncClient, Event as MqttEvent, Packet, QoS};
use tokio::sync::mpsc;

use crate::console::{self, Request};
use crate::engine::event_queue::{self, EventSender};
use crate::engine::{Command, ConnId, DeviceInfo, EngineHandle, Event, EventKind};
use crate::headless::Format;
use crate::mqtt::{MqttSpec, level, unlevel};

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// The broker: mqtt://[USER[:PASS]@]HOST[:PORT].
    #[arg(value_name = "URL")]
    pub url: String,
    /// Only these benches (repeat); every bench by default.
    #[arg(long, value_name = "NAME")]
    pub bench: Vec<String>,
    /// Print events instead of the full-screen console.
    #[arg(long)]
    pub no_tui: bool,
    /// Headless: events as JSON objects, one per line.
    #[arg(long)]
    pub json: bool,
}

/// Events waiting for the screen or stdout.
const QUEUE_BYTES: usize = 64 * 1024 * 1024;

pub async fn run(args: WatchArgs, theme: crate::tui::theme::Theme) -> ExitCode {
    let spec = match MqttSpec::parse(&args.url) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("benchlink: {e}");
            return ExitCode::from(2);
        }
    };
    let (events, events_rx) = event_queue::channel(QUEUE_BYTES);
    let (commands, commands_rx) = mpsc::channel(64);
    let task = tokio::spawn(bridge(
        spec,
        args.url.clone(),
        args.bench.clone(),
        events,
        commands_rx,
    ));
    let handle = EngineHandle {
        commands,
        events: events_rx,
        task,
    };
    let full_screen = !args.no_tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    if full_screen {
        if let Err(e) = crate::tui::run_handle(handle, theme, Vec::new(), Vec::new()).await {
            eprintln!("benchlink: the terminal failed: {e}");
            return ExitCode::FAILURE;
        }
    } else {
        let format = if args.json { Format::Json } else { Format::Human };
        crate::headless::run_handle(handle, format).await;
    }
    ExitCode::SUCCESS
}

/// Connection numbers of every bench, made unique here, with who they are.
#[derive(Default)]
struct Names {
    conns: HashMap<(String, ConnId), ConnId>,
    who: HashMap<ConnId, (String, String)>,
    next: ConnId,
}

/// Connections remembered; past this (days of boards coming and going) the
/// table starts again, and devices still there get new numbers.
const NAMES_KEPT: usize = 100_000;

impl Names {
    fn conn(&mut self, bench: &str, conn: ConnId) -> ConnId {
        if self.conns.len() >= NAMES_KEPT && !self.conns.contains_key(&(bench.to_string(), conn)) {
            self.conns.clear();
            self.who.clear();
        }
        let next = &mut self.next;
        *self.conns.entry((bench.to_string(), conn)).or_insert_with(|| {
            *next += 1;
            *next
        })
    }
}

/// An event from `bench`, as the watcher shows it: devices `bench/device`,
/// connection numbers unique across benches. None for what is not an event.
fn rewrite(bench: &str, payload: &[u8], names: &mut Names) -> Option<Event> {
    let mut v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let obj = v.as_object_mut()?;
    obj.get("event")?.as_str()?;
    fix_device(bench, obj, names);
    for list in ["devices"] {
        if let Some(serde_json::Value::Array(items)) = obj.get_mut(list) {
            for item in items {
                if let Some(o) = item.as_object_mut() {
                    fix_device(bench, o, names);
                }
            }
        }
    }
    if let Some(addr) = obj.get_mut("addr")
        && let Some(a) = addr.as_str()
    {
        *addr = format!("{bench} {a}").into();
    }
    let mut event: Event = serde_json::from_value(v).ok()?;
    // A bench's console stopping is news, not the watcher's own end.
    if let EventKind::Stopped { reason } = &event.kind {
        event.kind = EventKind::Error {
            message: format!("bench {bench}: its console stopped ({reason})"),
        };
    }
    if let EventKind::Error { message } = &mut event.kind
        && !message.starts_with("bench ")
    {
        *message = format!("{bench}: {message}");
    }
    Some(event)
}

fn fix_device(bench: &str, obj: &mut serde_json::Map<String, serde_json::Value>, names: &mut Names) {
    let conn = obj.get("conn").and_then(|c| c.as_u64());
    if let Some(conn) = conn {
        let mine = names.conn(bench, conn);
        obj.insert("conn".into(), mine.into());
        if let Some(device) = obj.get("device").and_then(|d| d.as_str()) {
            names.who.insert(mine, (bench.to_string(), device.to_string()));
        }
    }
    if let Some(device) = obj.get_mut("device")
        && let Some(d) = device.as_str()
    {
        *device = format!("{bench}/{d}").into();
    }
}

async fn bridge(
    spec: MqttSpec,
    url: String,
    benches: Vec<String>,
    events: EventSender,
    mut commands: mpsc::Receiver<Command>,
) {
    let id = format!("benchlink-watch-{}", std::process::id());
    let options = match spec.options(id) {
        Ok(options) => options,
        Err(why) => {
            events.send(Event::now(EventKind::Error { message: why }));
            events.send(Event::now(EventKind::Stopped {
                reason: "cannot reach the broker".into(),
            }));
            return;
        }
    };
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let filters: Vec<String> = if benches.is_empty() {
        vec!["benchlink/#".into()]
    } else {
        benches
            .iter()
            .map(|b| format!("benchlink/{}/#", level(b)))
            .collect()
    };
    let mut names = Names::default();
    let mut selected: Option<ConnId> = None;
    let mut said_down: Option<String> = None;
    let mut next_id = 0u64;
    let own = format!("watch-{}-", std::process::id());
    events.send(Event::now(EventKind::Listening {
        addr: url,
        protocol: "mqtt".into(),
        dir: "(each bench's own --dir)".into(),
    }));
    let reply = |command: &str, ok: bool, text: String, devices: Option<Vec<DeviceInfo>>| {
        Event::now(EventKind::Reply {
            command: command.into(),
            ok,
            text,
            devices,
            id: None,
        })
    };
    loop {
        tokio::select! {
            polled = eventloop.poll() => match polled {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    said_down = None;
                    for f in &filters {
                        let _ = client.try_subscribe(f.clone(), QoS::AtLeastOnce);
                    }
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    let mut parts = p.topic.splitn(3, '/');
                    let (Some("benchlink"), Some(bench)) = (parts.next(), parts.next()) else { continue };
                    let bench = unlevel(bench);
                    let Some(event) = rewrite(&bench, &p.payload, &mut names) else { continue };
                    // Replies: only to this watcher's own commands.
                    if let EventKind::Reply { id, .. } = &event.kind
                        && !id.as_deref().is_some_and(|i| i.starts_with(&own))
                    {
                        continue;
                    }
                    events.send(event);
                }
                Ok(_) => {}
                Err(e) => {
                    let why = e.to_string();
                    if said_down.as_ref() != Some(&why) {
                        events.send(Event::now(EventKind::Error {
                            message: format!("cannot reach the broker at {}:{} ({why}); retrying", spec.host, spec.port),
                        }));
                        said_down = Some(why);
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            },
            command = commands.recv() => {
                let Some(command) = command else { return };
                match command {
                    Command::Select(conn) => selected = conn,
                    Command::Shutdown(reason) => {
                        events.send(Event::now(EventKind::Stopped { reason }));
                        return;
                    }
                    Command::Remote { .. } => {}
                    Command::Line(line) => {
                        let target = selected.and_then(|c| names.who.get(&c).cloned());
                        match console::parse(&line) {
                            Ok(Request::Quit) => {
                                events.send(Event::now(EventKind::Stopped { reason: "the operator quit".into() }));
                                return;
                            }
                            Ok(Request::Nothing) => {}
                            Ok(Request::Target(key)) => {
                                // `/to bench/device`: chosen here, nothing is published.
                                let found = names.who.iter().find(|(c, (b, d))| {
                                    format!("{b}/{d}") == key || c.to_string() == key
                                });
                                let answer = match found {
                                    Some((&conn, (b, d))) => {
                                        selected = Some(conn);
                                        let info = DeviceInfo {
                                            conn,
                                            device: format!("{b}/{d}"),
                                            protocol: String::new(),
                                            peer: String::new(),
                                            connected_secs: 0,
                                            bytes_in: 0,
                                            bytes_out: 0,
                                            eol: None,
                                        };
                                        reply(&line, true, format!("now talking to {b}/{d}"), Some(vec![info]))
                                    }
                                    None => reply(&line, false, format!("no device called {key:?} has been seen (write bench/device)"), None),
                                };
                                events.send(answer);
                            }
                            _ => {
                                let Some((bench, device)) = target else {
                                    events.send(reply(&line, false, "choose a device first (/to bench/device, or select it)".into(), None));
                                    continue;
                                };
                                // Plain text goes to the device's topic; a command to its bench.
                                let topic = if line.starts_with('/') && !line.starts_with("//") {
                                    format!("benchlink/{}/cmd", level(&bench))
                                } else {
                                    format!("benchlink/{}/{}/cmd", level(&bench), level(&device))
                                };
                                next_id += 1;
                                let payload = serde_json::json!({"line": line, "id": format!("{own}{next_id}")});
                                if client.try_publish(topic, QoS::AtLeastOnce, false, payload.to_string()).is_err() {
                                    events.send(reply(&line, false, "the broker link is busy; try again".into(), None));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_renamed_per_bench_and_conns_kept_apart() {
        let mut names = Names::default();
        let a = br#"{"ts":"2026-12-04T03:00:00.000+00:00","event":"text","conn":1,"device":"cam","direction":"in","text":"hi"}"#;
        let b = br#"{"ts":"2026-12-04T03:00:00.000+00:00","event":"text","conn":1,"device":"cam","direction":"in","text":"ho"}"#;
        let ea = rewrite("lab-1", a, &mut names).unwrap();
        let eb = rewrite("lab-2", b, &mut names).unwrap();
        let (
            EventKind::Text {
                conn: ca, device: da, ..
            },
            EventKind::Text {
                conn: cb, device: db, ..
            },
        ) = (ea.kind, eb.kind)
        else {
            panic!("texts")
        };
        assert_eq!((da.as_str(), db.as_str()), ("lab-1/cam", "lab-2/cam"));
        assert_ne!(ca, cb);
        let stopped =
            br#"{"ts":"2026-12-04T03:00:00.000+00:00","event":"stopped","reason":"received SIGTERM"}"#;
        assert!(matches!(
            rewrite("lab-1", stopped, &mut names).unwrap().kind,
            EventKind::Error { .. }
        ));
        assert!(rewrite("lab-1", b"online", &mut names).is_none());
    }
}
