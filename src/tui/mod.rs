//! The full-screen operator console. It consumes the engine's events and sends
//! command-language lines, exactly like `--no-tui`: no second engine, no second parser.

pub mod app;
pub mod find;
pub mod keymap;
pub mod layout;
pub mod log_count;
pub mod render;
pub mod theme;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Local;
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, EventStream,
};
use crossterm::execute;
use futures_util::StreamExt;
use ratatui::layout::{Rect, Size};
use ratatui_image::Resize;
use ratatui_image::picker::Picker;
use ratatui_image::protocol::Protocol;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::journal::{MANIFEST, ReceivedRecord};
use crate::engine::{Command, Engine, EngineHandle};
use app::{Action, App, PreviewContent};
use layout::Panes;
use theme::Theme;

/// Redraws at most this often, however many events arrive.
const FRAME_INTERVAL: Duration = Duration::from_millis(33);
/// A key is drawn sooner: the operator waits for it, and keys come at human
/// speed (a held key or a fast wheel still draws at most this often).
const KEY_FRAME_INTERVAL: Duration = Duration::from_millis(4);
/// Events applied between two draws at most, so keys are never starved by a flood.
const EVENTS_PER_FRAME: usize = 2_000;
/// Images larger than this are previewed as hex (decoding them could take too much memory).
const MAX_IMAGE_PREVIEW: u64 = 64 * 1024 * 1024;
/// How long quitting waits for the engine to save what it holds.
const QUIT_GRACE: Duration = Duration::from_secs(8);

/// What a background preview load produced.
enum Loaded {
    Image(image::DynamicImage),
    /// A window of the file's bytes: them, where they start, the file's size.
    Bytes(Vec<u8>, u64, u64),
    Failed(String),
}

/// Where the prompt history is kept between runs.
pub fn history_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "benchlink").map(|d| d.data_dir().join("prompt-history"))
}

/// Runs the TUI until the operator quits or the engine stops. The terminal is
/// restored on every way out: quit, error, panic in any thread, SIGHUP, SIGTERM.
pub async fn run(engine: Engine, theme: Theme) -> io::Result<()> {
    let lan = lan_addresses();
    let macros = macro_keys(&engine.settings().macros);
    run_handle(engine.start(), theme, lan, macros).await
}

/// The TUI on any source of events and sink of commands: a local engine, or
/// `benchlink watch` on a broker.
pub async fn run_handle(
    handle: EngineHandle,
    theme: Theme,
    lan: Vec<String>,
    macros: Vec<(String, String)>,
) -> io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    install_panic_hook();
    let _ = execute!(io::stdout(), EnableMouseCapture, EnableBracketedPaste);
    let picker = image_picker();
    let result = event_loop(&mut terminal, handle, theme, (lan, macros), picker).await;
    restore_terminal();
    result
}

/// How previews draw images. Querying the terminal (ratatui-image's
/// `from_query_stdio`) reads stdin on a thread that outlives its timeout when the
/// terminal does not answer (tmux, some SSH clients): it then swallows the first
/// keys typed. So the protocol comes from the environment, half-blocks (which work
/// everywhere, tmux and SSH included) unless the terminal says it is kitty, WezTerm
/// or iTerm2; `BENCHLINK_IMAGE_QUERY=1` asks the terminal instead.
fn image_picker() -> Picker {
    use ratatui_image::FontSize;
    use ratatui_image::picker::ProtocolType;
    if std::env::var_os("BENCHLINK_IMAGE_QUERY").is_some_and(|v| v == "1") {
        return Picker::from_query_stdio().unwrap_or_else(|_| Picker::halfblocks());
    }
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let in_tmux = !var("TMUX").is_empty();
    let protocol = if in_tmux {
        ProtocolType::Halfblocks
    } else if !var("KITTY_WINDOW_ID").is_empty() || var("TERM") == "xterm-kitty" {
        ProtocolType::Kitty
    } else if matches!(var("TERM_PROGRAM").as_str(), "iTerm.app" | "WezTerm") {
        ProtocolType::Iterm2
    } else {
        ProtocolType::Halfblocks
    };
    if protocol == ProtocolType::Halfblocks {
        return Picker::halfblocks();
    }
    // Deprecated in favour of the query above; a typical cell size is close enough.
    #[allow(deprecated)]
    let mut picker = Picker::from_fontsize(FontSize {
        width: 10,
        height: 20,
    });
    picker.set_protocol_type(protocol);
    picker
}

fn restore_terminal() {
    let _ = execute!(io::stdout(), DisableMouseCapture, DisableBracketedPaste);
    ratatui::restore();
    let _ = io::stdout().flush();
}

/// A panic anywhere (a background task included) restores the terminal first, then
/// reports, then exits: a half-raw terminal over SSH is worse than a stopped console.
/// Ctrl-Z as in any terminal program: the screen is given back, the process
/// stops (SIGTSTP), and `fg` brings the full screen back as it was. The engine
/// keeps its sockets; devices are served again when the console runs.
#[cfg(unix)]
fn suspend(terminal: &mut ratatui::DefaultTerminal) -> io::Result<()> {
    let _ = execute!(io::stdout(), DisableMouseCapture, DisableBracketedPaste);
    ratatui::restore();
    // SAFETY: raising a signal at ourselves; the default action stops the process.
    unsafe {
        libc::raise(libc::SIGTSTP);
    }
    crossterm::terminal::enable_raw_mode()?;
    execute!(
        io::stdout(),
        crossterm::terminal::EnterAlternateScreen,
        EnableMouseCapture,
        EnableBracketedPaste
    )?;
    terminal.clear()
}

#[cfg(not(unix))]
fn suspend(_terminal: &mut ratatui::DefaultTerminal) -> io::Result<()> {
    Ok(())
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
        std::process::exit(101);
    }));
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    mut handle: EngineHandle,
    theme: Theme,
    (lan, macros): (Vec<String>, Vec<(String, String)>),
    picker: Picker,
) -> io::Result<()> {
    let mut app = App::new(Local::now());
    app.macro_keys = macros;
    app.model.lan = lan;
    app.prompt.history = load_history();
    let mut terminal_events = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (preview_tx, mut preview_rx) = mpsc::channel::<(String, Loaded)>(4);
    let mut preview_image: Option<(image::DynamicImage, Protocol, Rect)> = None;
    let mut signals = Signals::new();
    let mut dirty = true;
    let mut next_draw = Instant::now();
    let mut last_draw = Instant::now();
    let mut quitting: Option<Instant> = None;
    let mut history_loaded = false;
    let mut terminal_gone = false;

    loop {
        if dirty && Instant::now() >= next_draw {
            let size = terminal.size()?;
            app.screen = Rect::new(0, 0, size.width, size.height);
            app.log_lines = log_count::logged();
            // The image is encoded for the preview's size; a resize re-encodes it.
            if let Some((img, protocol, area)) = preview_image.as_mut() {
                let wanted = preview_inner(app.screen);
                if *area != wanted {
                    if let Ok(p) = scaled_image(&picker, img.clone(), app.screen) {
                        *protocol = p;
                    }
                    *area = wanted;
                }
            }
            let image = preview_image.as_ref().map(|(_, p, _)| p);
            terminal.draw(|frame| render::draw(frame, &app, &theme, image))?;
            dirty = false;
            last_draw = Instant::now();
            next_draw = last_draw + FRAME_INTERVAL;
        }
        if let Some(since) = quitting
            && since.elapsed() > QUIT_GRACE
        {
            break;
        }
        let mut actions = Vec::new();
        tokio::select! {
            event = handle.events.recv() => {
                let Some(event) = event else { break };
                if !history_loaded && matches!(event.kind, crate::engine::EventKind::Listening { .. }) {
                    if let crate::engine::EventKind::Listening { dir, .. } = &event.kind {
                        app.load_received(load_received(Path::new(dir)));
                    }
                    history_loaded = true;
                }
                actions.extend(app.on_event(event));
                // Coalesce a burst into one frame.
                for _ in 0..EVENTS_PER_FRAME {
                    match handle.events.try_recv() {
                        Some(event) => actions.extend(app.on_event(event)),
                        None => break,
                    }
                }
                dirty = true;
            }
            input = terminal_events.next(), if !terminal_gone => {
                match input {
                    Some(Ok(event)) => {
                        let panes = Panes::compute(app.screen, app.show_log);
                        actions.extend(app.on_terminal(&event, &panes));
                        dirty = true;
                        next_draw = next_draw.min(last_draw + KEY_FRAME_INTERVAL);
                    }
                    // The terminal went away (an SSH drop): stop cleanly, once.
                    Some(Err(_)) | None => {
                        terminal_gone = true;
                        actions.push(Action::Quit);
                    }
                }
            }
            loaded = preview_rx.recv() => {
                if let Some((path, loaded)) = loaded
                    && let Some(preview) = app.preview.as_mut()
                    && preview.path == path
                {
                    preview.content = match loaded {
                        Loaded::Image(img) => {
                            let area = preview_inner(app.screen);
                            match scaled_image(&picker, img.clone(), app.screen) {
                                Ok(protocol) => {
                                    let content = PreviewContent::Image { width: img.width(), height: img.height() };
                                    preview_image = Some((img, protocol, area));
                                    content
                                }
                                Err(e) => PreviewContent::Failed(e.to_string()),
                            }
                        }
                        Loaded::Bytes(bytes, offset, total) => {
                            preview.offset = offset;
                            preview.total = total;
                            PreviewContent::Hex(bytes)
                        }
                        Loaded::Failed(why) => PreviewContent::Failed(why),
                    };
                    dirty = true;
                }
            }
            _ = tick.tick() => {
                actions.extend(app.tick(Local::now()));
                dirty = true;
            }
            _ = tokio::time::sleep_until(next_draw), if dirty => {}
            name = signals.next() => {
                let _ = handle.commands.send(Command::Shutdown(format!("received {name}"))).await;
                quitting.get_or_insert_with(Instant::now);
            }
        }
        if app.preview.is_none() {
            preview_image = None;
        }
        for action in actions {
            match action {
                Action::Engine(command) => {
                    let _ = handle.commands.send(command).await;
                }
                Action::PreviewAt(path, offset) => {
                    let tx = preview_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let loaded = load_window(Path::new(&path), offset);
                        let _ = tx.blocking_send((path, loaded));
                    });
                }
                Action::Suspend => {
                    suspend(terminal)?;
                    dirty = true;
                }
                Action::Copy(text) => {
                    use base64::Engine as _;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
                    // OSC 52: the terminal (or tmux, or the SSH client's terminal) sets
                    // its clipboard; the text never passes through the screen.
                    let _ = write!(io::stdout(), "\x1b]52;c;{encoded}\x07");
                    let _ = io::stdout().flush();
                }
                Action::Preview(path) => {
                    let tx = preview_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let loaded = load_preview(Path::new(&path));
                        let _ = tx.blocking_send((path, loaded));
                    });
                }
                Action::Quit => {
                    if app.model.stopped.is_some() {
                        save_history(&app.prompt.history);
                        return Ok(());
                    }
                    if quitting.is_none() {
                        let _ = handle
                            .commands
                            .send(Command::Shutdown("the operator quit".into()))
                            .await;
                        quitting = Some(Instant::now());
                    }
                }
            }
        }
    }
    save_history(&app.prompt.history);
    Ok(())
}

/// The image encoded to fill the preview of a `screen`-sized terminal, scaled
/// up or down with its aspect ratio kept.
pub fn scaled_image(
    picker: &Picker,
    img: image::DynamicImage,
    screen: Rect,
) -> Result<Protocol, ratatui_image::errors::Errors> {
    let area = preview_inner(screen);
    picker.new_protocol(img, Size::new(area.width, area.height), Resize::Scale(None))
}

fn preview_inner(screen: Rect) -> Rect {
    let outer = render::preview_area(screen);
    Rect::new(
        outer.x + 1,
        outer.y + 1,
        outer.width.saturating_sub(2),
        outer.height.saturating_sub(2),
    )
}

fn load_preview(path: &Path) -> Loaded {
    let lower = path.to_string_lossy().to_ascii_lowercase();
    let is_image = [".bmp", ".png", ".jpg", ".jpeg", ".gif"]
        .iter()
        .any(|e| lower.ends_with(e));
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) => return Loaded::Failed(e.to_string()),
    };
    if is_image && size <= MAX_IMAGE_PREVIEW {
        match image::open(path) {
            Ok(img) => return Loaded::Image(img),
            Err(e) => tracing::warn!("cannot decode {} as an image: {e}", path.display()),
        }
    }
    load_window(path, 0)
}

/// The bytes of `path` from `offset` that a hex preview can show (4 KiB).
fn load_window(path: &Path, offset: u64) -> Loaded {
    use std::io::{Read, Seek, SeekFrom};
    let read = std::fs::File::open(path).and_then(|mut f| {
        let total = f.metadata()?.len();
        f.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::with_capacity(4096);
        f.take(4096).read_to_end(&mut bytes)?;
        Ok((bytes, total))
    });
    match read {
        Ok((bytes, total)) => Loaded::Bytes(bytes, offset, total),
        Err(e) => Loaded::Failed(e.to_string()),
    }
}

/// The last received files from earlier runs, so history survives restarts.
fn load_received(dir: &Path) -> Vec<ReceivedRecord> {
    let Ok(text) = std::fs::read_to_string(dir.join(MANIFEST)) else {
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(app::KEEP_RECEIVED);
    lines[start..]
        .iter()
        .filter_map(|l| serde_json::from_str::<ReceivedRecord>(l).ok())
        .collect()
}

fn load_history() -> Vec<String> {
    history_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn save_history(history: &[String]) {
    let Some(path) = history_path() else {
        return;
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let start = history.len().saturating_sub(app::KEEP_HISTORY);
    let mut text = history[start..].join("\n");
    text.push('\n');
    let _ = std::fs::write(path, text);
}

/// This machine's IPv4 LAN addresses: what a board's AT+CIPSTART needs.
fn lan_addresses() -> Vec<String> {
    if_addrs::get_if_addrs()
        .map(|addrs| {
            addrs
                .into_iter()
                .filter(|a| !a.is_loopback())
                .filter_map(|a| match a.ip() {
                    std::net::IpAddr::V4(ip) => Some(ip.to_string()),
                    std::net::IpAddr::V6(_) => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// SIGHUP (an SSH drop), SIGTERM and SIGINT.
struct Signals {
    #[cfg(unix)]
    streams: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = match (
                signal(SignalKind::hangup()),
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(a), Ok(b), Ok(c)) => Some([a, b, c]),
                _ => None,
            };
            Signals { streams }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        if let Some([hup, term, int]) = self.streams.as_mut() {
            return tokio::select! {
                _ = hup.recv() => "SIGHUP",
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
        }
        std::future::pending().await
    }
}

/// The function keys bound in `[macros]`, in key order, with each macro's first line.
fn macro_keys(macros: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    (5..=12)
        .filter_map(|n| {
            let key = format!("F{n}");
            let body = macros.get(&key)?;
            Some((key, body.lines().next().unwrap_or_default().to_string()))
        })
        .collect()
}
