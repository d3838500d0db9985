//! End-to-end test of the full-screen TUI: the real binary runs inside a detached
//! tmux session (a real terminal), keys go in with `send-keys`, the screen comes
//! back with `capture-pane`. A simulated board (`benchlink device`) and a raw TCP
//! client play the devices.
//!
//! Needs tmux. Without it the test prints a loud SKIPPED line and passes, except
//! under `CI=true`, where it fails (CI installs tmux and never skips).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Patience for one thing to show up on the screen (debug build, 2 cores).
const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);
const WIDTH: u16 = 100;
const HEIGHT: u16 = 30;
const SESSION: &str = "bl";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_benchlink")
}

/// True when tmux can run; otherwise skips loudly, or fails under CI=true.
fn tmux_available() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("tmux not found, and CI=true never skips: install tmux (apt-get install tmux)");
    }
    // Straight to the stderr handle: libtest captures eprintln!, and this must be seen.
    let _ = std::io::stderr().write_all(
        b"SKIPPED tui_tmux: tmux not found; install tmux (apt-get install tmux) to run this test\n",
    );
    false
}

/// A private tmux server (its own socket, no config file). Dropping it kills the
/// server and so everything running in it, on success and on failure alike.
struct Tmux {
    socket: String,
    /// The socket file, learned once the server runs; kill-server leaves it behind.
    socket_path: std::cell::RefCell<Option<PathBuf>>,
}

impl Tmux {
    fn new() -> Tmux {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Tmux {
            socket: format!("benchlink-e2e-{}-{nanos}", std::process::id()),
            socket_path: std::cell::RefCell::new(None),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            // The test may itself run inside someone's tmux.
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a detached session of WIDTH x HEIGHT running `command` (a shell line).
    fn new_session(&self, name: &str, command: &str) {
        let (w, h) = (WIDTH.to_string(), HEIGHT.to_string());
        self.ok(&["new-session", "-d", "-x", &w, "-y", &h, "-s", name, command]);
        if self.socket_path.borrow().is_none() {
            let path = self.display(name, "#{socket_path}");
            *self.socket_path.borrow_mut() = Some(PathBuf::from(path));
        }
    }

    fn screen(&self, target: &str) -> String {
        self.ok(&["capture-pane", "-p", "-t", target])
    }

    fn display(&self, target: &str, format: &str) -> String {
        self.ok(&["display", "-p", "-t", target, format])
            .trim_end()
            .to_string()
    }

    /// Literal text (no key names), then nothing else.
    fn type_text(&self, target: &str, text: &str) {
        self.ok(&["send-keys", "-t", target, "-l", text]);
    }

    fn key(&self, target: &str, key: &str) {
        self.ok(&["send-keys", "-t", target, key]);
    }

    fn resize(&self, target: &str, width: u16, height: u16) {
        let (w, h) = (width.to_string(), height.to_string());
        self.ok(&["resize-window", "-t", target, "-x", &w, "-y", &h]);
    }

    /// Polls the screen until `ok` holds; panics with the last screen otherwise.
    fn wait_screen(&self, target: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen(target);
            if ok(&screen) {
                return screen;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {WAIT:?} waiting for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Polls a `display -p` format until `ok` holds; panics with the last value.
    fn wait_display(&self, target: &str, format: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.display(target, format);
            if ok(&value) {
                return value;
            }
            if Instant::now() >= deadline {
                let screen = self.screen(target);
                panic!(
                    "timed out after {WAIT:?} waiting for {what} ({format} = {value:?}); the screen:\n{screen}"
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(path) = self.socket_path.borrow().as_ref() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A child process killed (and reaped) when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `text` as one single-quoted shell word.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The inside of the bordered pane whose title starts with `title`, one string per
/// row (borders thin or thick, as focus makes them); None when it is not on screen.
fn pane_text(screen: &str, title: &str) -> Option<String> {
    let rows: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    for (y, row) in rows.iter().enumerate() {
        let line: String = row.iter().collect();
        for corner in ['┌', '┏'] {
            let Some(byte) = line.find(&format!("{corner} {title}")) else {
                continue;
            };
            let left = line[..byte].chars().count();
            let right = (left + 1..row.len()).find(|&x| matches!(row[x], '┐' | '┓'))?;
            let mut inside = Vec::new();
            for r in &rows[y + 1..] {
                if !r.get(left).is_some_and(|c| matches!(c, '│' | '┃')) {
                    break;
                }
                inside.push(r[left + 1..right.min(r.len())].iter().collect::<String>());
            }
            return Some(inside.join("\n"));
        }
    }
    None
}

fn pane_has(screen: &str, title: &str, needle: &str) -> bool {
    pane_text(screen, title).is_some_and(|t| t.contains(needle))
}

/// A pane's text with its wrapped rows joined (indents dropped), so a line cut
/// into rows can be searched as one.
fn pane_joined(screen: &str, title: &str) -> String {
    pane_text(screen, title)
        .map(|t| t.lines().map(str::trim).collect::<String>())
        .unwrap_or_default()
}

/// The header's first line, where the listeners are.
fn header(screen: &str) -> &str {
    screen.lines().next().unwrap_or("")
}

/// Starts the console in the session; retries with another port if the one picked
/// was taken in between (the pane then shows the exit line instead of the header).
fn start_console(tmux: &Tmux, home: &Path, dir: &Path) -> u16 {
    for attempt in 0..3 {
        let port = free_port();
        let command = format!(
            "env -u XDG_DATA_HOME -u XDG_CONFIG_HOME -u NO_COLOR -u RUST_LOG HOME={home} TERM=xterm-256color \
             {bin} --listen 127.0.0.1:{port} --dir {dir}; echo BENCHLINK_EXIT=$? ; sleep 30",
            home = sh_quote(&home.display().to_string()),
            bin = sh_quote(bin()),
            dir = sh_quote(&dir.display().to_string()),
        );
        if attempt > 0 {
            tmux.ok(&["kill-session", "-t", SESSION]);
        }
        tmux.new_session(SESSION, &command);
        let wanted = format!("127.0.0.1:{port}");
        let screen = tmux.wait_screen(SESSION, "the TUI's header (or its exit)", |s| {
            header(s).contains(&wanted) || s.contains("BENCHLINK_EXIT=")
        });
        if header(&screen).contains(&wanted) {
            return port;
        }
        eprintln!("tui_tmux: the console did not start on port {port}, retrying:\n{screen}");
    }
    panic!("the console did not start in 3 attempts");
}

#[test]
fn tui_in_tmux_end_to_end() {
    if !tmux_available() {
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let dir = tmp.path().join("received");
    std::fs::create_dir_all(&home).unwrap();
    let tmux = Tmux::new();

    // The OSC title check below means something only if this tmux lets a program
    // set the pane title: prove it with a canary in a throwaway session.
    tmux.new_session("canary", r"printf '\033]0;CANARY\007'; sleep 30");
    tmux.wait_display("canary", "#{pane_title}", "the canary title", |t| t == "CANARY");
    tmux.ok(&["kill-session", "-t", "canary"]);

    // The header shows the listen address; the full screen is up.
    let port = start_console(&tmux, &home, &dir);
    tmux.ok(&["set", "-g", "window-size", "manual"]);
    let addr = format!("127.0.0.1:{port}");
    let screen = tmux.screen(SESSION);
    assert!(header(&screen).contains(" benchlink "), "{screen}");
    assert_eq!(tmux.display(SESSION, "#{alternate_on}"), "1", "{screen}");
    assert_eq!(
        tmux.display(SESSION, "#{mouse_any_flag}"),
        "1",
        "mouse capture is on while the TUI runs:\n{screen}"
    );

    // A simulated board connects: listed under Connections, its greeting in the
    // Conversation (the first device becomes the selected one).
    let _device = ChildGuard(
        Command::new(bin())
            .args(["device", "--to", &addr, "--id", "cam-e2e"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn benchlink device"),
    );
    tmux.wait_screen(SESSION, "cam-e2e in Connections and its greeting", |s| {
        pane_has(s, "Connections", "cam-e2e") && pane_has(s, "Conversation", "cam-e2e ready")
    });
    tmux.wait_screen(SESSION, "the prompt targeting cam-e2e", |s| {
        s.contains("cam-e2e>")
    });

    // A typed command reaches the device, and its answer comes back.
    tmux.type_text(SESSION, "ping");
    tmux.wait_screen(SESSION, "the typed text in the prompt", |s| {
        s.contains("cam-e2e> ping")
    });
    tmux.key(SESSION, "Enter");
    tmux.wait_screen(SESSION, "pong in the Conversation", |s| {
        pane_has(s, "Conversation", "▸ ping") && pane_has(s, "Conversation", "◂ pong")
    });

    // A file: listed under Received, saved under the device's folder.
    tmux.type_text(SESSION, "capture");
    tmux.key(SESSION, "Enter");
    let screen = tmux.wait_screen(SESSION, "capture-0001.bmp under Received", |s| {
        pane_has(s, "Received", "capture-0001.bmp") && pane_has(s, "Received", "saved")
    });
    assert!(
        pane_has(&screen, "Transfers", "no transfer in progress"),
        "{screen}"
    );
    let saved = dir.join("cam-e2e").join("capture-0001.bmp");
    let bytes = std::fs::read(&saved).unwrap_or_else(|e| panic!("{}: {e}\n{screen}", saved.display()));
    assert!(
        bytes.starts_with(b"BM") && bytes.len() > 54,
        "not a BMP: {} bytes",
        bytes.len()
    );

    // A hostile lines device: its escape sequences are shown escaped, never
    // executed (no title change, no screen clear).
    let mut raw = TcpStream::connect(&addr).unwrap();
    raw.write_all(b"hi\x1b]0;PWNED\x07\x1b[2J\x1b[31mred\r\n")
        .unwrap();
    tmux.wait_screen(SESSION, "the raw client in Connections", |s| {
        s.contains("Connections (2)")
    });
    tmux.key(SESSION, "F2");
    let screen = tmux.wait_screen(SESSION, "the escaped line in the all-devices conversation", |s| {
        pane_has(s, "Conversation · all devices", r"hi\x1b]0;PWNED\x07\x1b[2J")
    });
    assert!(header(&screen).contains(&addr), "the header is gone:\n{screen}");
    assert!(screen.contains("Connections (2)"), "{screen}");
    let title = tmux.display(SESSION, "#{pane_title}");
    assert_ne!(title, "PWNED", "a device set the terminal title:\n{screen}");
    assert!(
        !title.contains("PWNED"),
        "a device set the terminal title to {title:?}"
    );
    // Back to the selected device's conversation.
    tmux.key(SESSION, "F2");
    tmux.wait_screen(SESSION, "cam-e2e's conversation again", |s| {
        pane_has(s, "Conversation · cam-e2e", "◂ pong")
    });

    // /hex sends exact bytes: "hello" as one TEXT frame, answered by the board.
    tmux.type_text(SESSION, "/hex 68 65 6c 6c 6f");
    tmux.key(SESSION, "Enter");
    tmux.wait_screen(SESSION, "the board's answer to /hex", |s| {
        pane_has(s, "Conversation · cam-e2e", "ok: hello")
    });

    // A 300-character line wraps: its end is on screen.
    let long = format!("LONG{}TAIL", "x".repeat(292));
    raw.write_all(format!("{long}\r\n").as_bytes()).unwrap();
    tmux.key(SESSION, "F2");
    tmux.wait_screen(SESSION, "the end of the long line", |s| {
        pane_joined(s, "Conversation · all devices").contains(&long)
    });
    // Then it scrolls away, and /find brings it back into view.
    for i in 0..40 {
        raw.write_all(format!("filler {i}\r\n").as_bytes()).unwrap();
    }
    tmux.wait_screen(SESSION, "the long line scrolled away", |s| {
        pane_has(s, "Conversation · all devices", "filler 39")
            && !pane_joined(s, "Conversation · all devices").contains("xTAIL")
    });
    tmux.type_text(SESSION, "/find LONG");
    tmux.key(SESSION, "Enter");
    tmux.wait_screen(SESSION, "the found line in view", |s| {
        s.contains("find \"LONG\"") && pane_joined(s, "Conversation").contains("LONGxxx")
    });
    tmux.key(SESSION, "Escape");
    tmux.wait_screen(SESSION, "back to the tail", |s| {
        !s.contains("find \"LONG\"") && pane_has(s, "Conversation · all devices", "filler 39")
    });
    tmux.key(SESSION, "F2");
    tmux.wait_screen(SESSION, "cam-e2e's conversation again", |s| {
        pane_has(s, "Conversation · cam-e2e", "ok: hello")
    });

    // F1 opens the help; Esc closes it.
    tmux.key(SESSION, "F1");
    tmux.wait_screen(SESSION, "the help overlay", |s| {
        s.contains("Help · Esc closes") && s.contains("next pane (completes while typing)")
    });
    tmux.key(SESSION, "Escape");
    let screen = tmux.wait_screen(SESSION, "the help overlay closed", |s| {
        !s.contains("Help · Esc closes") && s.contains("Connections (2)")
    });
    assert!(header(&screen).contains(&addr), "{screen}");

    // Tiny, then back: the console survives and redraws everything.
    tmux.resize(SESSION, 20, 5);
    tmux.wait_display(
        SESSION,
        "#{window_width}x#{window_height}",
        "the tiny size",
        |v| v == "20x5",
    );
    tmux.wait_screen(SESSION, "the tiny layout", |s| {
        s.lines().next().is_some_and(|l| l.starts_with("benchlink")) && !s.contains("BENCHLINK_EXIT")
    });
    std::thread::sleep(Duration::from_millis(300));
    tmux.resize(SESSION, WIDTH, HEIGHT);
    let screen = tmux.wait_screen(SESSION, "the full layout again", |s| {
        header(s).contains(&addr)
            && pane_has(s, "Connections", "cam-e2e")
            && pane_has(s, "Received", "capture-0001.bmp")
    });
    assert!(
        !screen.contains("BENCHLINK_EXIT"),
        "the console exited on resize:\n{screen}"
    );
    // And it still takes keys.
    tmux.type_text(SESSION, "ping");
    tmux.key(SESSION, "Enter");
    tmux.wait_screen(SESSION, "a second pong after the resize", |s| {
        pane_text(s, "Conversation").is_some_and(|t| t.matches("◂ pong").count() == 2)
    });

    // Ctrl-C with nothing in flight quits at once, exit code 0, terminal restored.
    tmux.key(SESSION, "C-c");
    let screen = tmux.wait_screen(SESSION, "the exit line", |s| s.contains("BENCHLINK_EXIT="));
    assert!(screen.contains("BENCHLINK_EXIT=0"), "{screen}");
    assert!(
        !screen.contains("Connections ("),
        "the TUI is still on the screen:\n{screen}"
    );
    assert_eq!(tmux.display(SESSION, "#{alternate_on}"), "0", "{screen}");
    assert_eq!(
        tmux.display(SESSION, "#{mouse_any_flag}"),
        "0",
        "mouse capture left on:\n{screen}"
    );
    assert_eq!(
        tmux.display(SESSION, "#{cursor_flag}"),
        "1",
        "cursor left hidden:\n{screen}"
    );

    // The prompt history went to the data folder under the HOME we gave it.
    let history: PathBuf = home.join(".local/share/benchlink/prompt-history");
    let text = std::fs::read_to_string(&history).unwrap_or_else(|e| panic!("{}: {e}", history.display()));
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["ping", "capture", "/hex 68 65 6c 6c 6f", "/find LONG", "ping"],
        "{text:?}"
    );

    drop(raw);
    eprintln!("tui_tmux: passed in {:.1} s", started.elapsed().as_secs_f64());
}
