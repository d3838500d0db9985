//! Shared harness for the integration tests: runs the real `benchlink` binary
//! headless, reads its events, and plays devices over loopback TCP.
//!
//! Each test binary uses a different subset of this module.
#![allow(dead_code)]

pub mod bridge;
pub mod dev;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

thread_local! {
    /// Environment for the next console this thread spawns (see `start_env`).
    static EXTRA_ENV: std::cell::RefCell<Vec<(String, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Default patience for one event.
pub const WAIT: Duration = Duration::from_secs(5);
/// Patience for a multi-MiB transfer (debug build, 2 cores, tests in parallel).
pub const WAIT_FILE: Duration = Duration::from_secs(20);

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_benchlink"))
}

/// A running console. Dropping it kills the process.
pub struct Console {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Value>,
    /// Every event (or, in human mode, every line as a JSON string) seen so far,
    /// with whether a `wait_for` already returned it.
    seen: Vec<(Value, bool)>,
    stdout_raw: Arc<Mutex<Vec<u8>>>,
    stderr_raw: Arc<Mutex<Vec<u8>>>,
    addrs: Vec<SocketAddr>,
    dir: PathBuf,
    _dir_tmp: Option<TempDir>,
    _xdg: TempDir,
}

fn has_flag(args: &[&str], flag: &str) -> bool {
    args.iter()
        .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
}

impl Console {
    /// `--no-tui --json`, plus `--listen 127.0.0.1:0` and a temporary `--dir` unless
    /// `args` gives them. Waits for every `listening` event.
    pub fn start(args: &[&str]) -> Console {
        Self::spawn(args, true, None, None)
    }

    /// `benchlink watch URL --no-tui --json`, as a console of its own: its events
    /// read the same way, its stdin the prompt.
    pub fn spawn_watch(url: &str) -> Console {
        Self::spawn(&["--watch-url", url], true, None, None)
    }

    /// Like [`Console::start`], with more environment variables (SSL_CERT_FILE).
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Console {
        EXTRA_ENV
            .with(|e| *e.borrow_mut() = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let c = Self::spawn(args, true, None, None);
        EXTRA_ENV.with(|e| e.borrow_mut().clear());
        c
    }

    /// Like [`Console::start`], run from `cwd` (for relative paths).
    pub fn start_in(cwd: &Path, args: &[&str]) -> Console {
        Self::spawn(args, true, Some(cwd), None)
    }

    /// Like [`Console::start`] but in human mode (no `--json`): each stdout line is
    /// kept as a JSON string value.
    pub fn start_human(args: &[&str]) -> Console {
        Self::spawn(args, false, None, None)
    }

    /// Like [`Console::start`], under a limit of `nofile` open files (soft and
    /// hard, so the console cannot raise it).
    pub fn start_with_nofile(nofile: u64, args: &[&str]) -> Console {
        Self::spawn(args, true, None, Some(nofile))
    }

    fn spawn(args: &[&str], json: bool, cwd: Option<&Path>, nofile: Option<u64>) -> Console {
        let xdg = tempfile::tempdir().unwrap();
        let mut full: Vec<String> = vec!["--no-tui".into()];
        if json {
            full.push("--json".into());
        }
        // `benchlink watch URL`: no listener, no folder of its own.
        let watch = args.first() == Some(&"--watch-url");
        if watch {
            full = vec![
                "watch".into(),
                args[1].to_string(),
                "--no-tui".into(),
                "--json".into(),
            ];
        }
        let listeners = if watch {
            1
        } else {
            args.iter().filter(|a| **a == "--listen").count().max(1)
        };
        if !watch && !has_flag(args, "--listen") {
            full.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        let mut dir_tmp = None;
        if !watch && !has_flag(args, "--dir") {
            let t = tempfile::tempdir().unwrap();
            full.extend(["--dir".into(), t.path().display().to_string()]);
            dir_tmp = Some(t);
        }
        if !watch {
            full.extend(args.iter().map(|s| s.to_string()));
        }
        let mut cmd = Command::new(bin());
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit between fork and exec, which is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd
            .args(&full)
            // Hermetic: never read the user's own config.toml or data folder.
            .env("XDG_CONFIG_HOME", xdg.path().join("config"))
            .env("XDG_DATA_HOME", xdg.path().join("data"))
            .env_remove("RUST_LOG")
            .envs(EXTRA_ENV.with(|e| e.borrow().clone()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn benchlink");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let stdout_raw = Arc::new(Mutex::new(Vec::new()));
        let stderr_raw = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = channel();
        {
            let raw = stdout_raw.clone();
            thread::spawn(move || {
                let mut r = BufReader::new(stdout);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match r.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    raw.lock().unwrap().extend_from_slice(&line);
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\r', '\n']);
                    let value = serde_json::from_str::<Value>(text)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| Value::String(text.to_string()));
                    if tx.send(value).is_err() {
                        return;
                    }
                }
            });
        }
        {
            let raw = stderr_raw.clone();
            thread::spawn(move || {
                let mut r = stderr;
                let mut buf = [0u8; 4096];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => raw.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        let mut console = Console {
            child,
            stdin,
            rx,
            seen: Vec::new(),
            stdout_raw,
            stderr_raw,
            addrs: Vec::new(),
            dir: PathBuf::new(),
            _dir_tmp: dir_tmp,
            _xdg: xdg,
        };
        for _ in 0..listeners {
            if json {
                let ev = console.wait_for(|e| e["event"] == "listening", WAIT);
                // A watcher's "listening" names its broker, not a socket address.
                if let Ok(addr) = ev["addr"].as_str().unwrap_or_default().parse() {
                    console.addrs.push(addr);
                }
                console.dir = PathBuf::from(ev["dir"].as_str().unwrap());
            } else {
                let ev = console.wait_for(|e| e.as_str().is_some_and(|l| l.contains(" listening on ")), WAIT);
                let line = ev.as_str().unwrap();
                let addr = line
                    .split(" listening on ")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .unwrap();
                console.addrs.push(addr.parse().unwrap());
                let dir = line.rsplit(" received files go to ").next().unwrap();
                console.dir = PathBuf::from(dir);
            }
        }
        console
    }

    /// The (first) listener's real address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listener's address, in `--listen` order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The received folder, absolute, as the console reported it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one operator line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Sends one operator line and returns the `reply` event for it.
    pub fn command(&mut self, line: &str) -> Value {
        self.send(line);
        let want = line.trim().to_string();
        self.wait_for(|e| e["event"] == "reply" && e["command"] == want.as_str(), WAIT)
    }

    /// Waits until `/list` shows exactly `n` devices. Needed after `disconnected`:
    /// the console lists (and finds) a device for a moment after that event; see
    /// lines.rs: a_device_is_gone_once_disconnected_is_reported.
    pub fn wait_device_count(&mut self, n: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = self.command("/list");
            if r["devices"].as_array().is_some_and(|d| d.len() == n) {
                return;
            }
            assert!(Instant::now() < deadline, "never {n} devices: {r}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `/list` shows no device.
    pub fn wait_no_devices(&mut self) {
        self.wait_device_count(0);
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The console's stdin, for a test that writes to it from another thread.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin already taken")
    }

    fn pump(&mut self, until: Option<Instant>) -> bool {
        let got = match until {
            None => self.rx.try_recv().ok(),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.rx.recv_timeout(left) {
                    Ok(v) => Some(v),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        // stdout closed: nothing more will come; do not spin.
                        thread::sleep(left.min(Duration::from_millis(20)));
                        None
                    }
                }
            }
        };
        match got {
            Some(v) => {
                self.seen.push((v, false));
                true
            }
            None => false,
        }
    }

    /// The first event not returned before that matches `pred`, waiting up to
    /// `timeout`; `None` if none came.
    pub fn try_wait_for(&mut self, mut pred: impl FnMut(&Value) -> bool, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let mut checked = 0;
        loop {
            while self.pump(None) {}
            for (i, (v, taken)) in self.seen.iter_mut().enumerate().skip(checked) {
                checked = i + 1;
                if !*taken && pred(v) {
                    *taken = true;
                    return Some(v.clone());
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.pump(Some(deadline));
        }
    }

    /// Like [`Console::try_wait_for`], but panics with everything seen on timeout.
    pub fn wait_for(&mut self, pred: impl FnMut(&Value) -> bool, timeout: Duration) -> Value {
        match self.try_wait_for(pred, timeout) {
            Some(v) => v,
            None => panic!(
                "no matching event within {timeout:?}.\nevents so far:\n{}\nstderr:\n{}",
                self.dump(),
                self.stderr_text()
            ),
        }
    }

    /// The next not-yet-returned event of this kind whose fields match `fields`.
    pub fn wait_event(&mut self, kind: &str, fields: &[(&str, Value)]) -> Value {
        self.wait_event_within(kind, fields, WAIT)
    }

    pub fn wait_event_within(&mut self, kind: &str, fields: &[(&str, Value)], timeout: Duration) -> Value {
        self.wait_for(
            |e| e["event"] == kind && fields.iter().all(|(k, v)| &e[*k] == v),
            timeout,
        )
    }

    /// Waits for an incoming text event with exactly this text.
    pub fn wait_text_in(&mut self, text: &str) -> Value {
        self.wait_event("text", &[("direction", "in".into()), ("text", text.into())])
    }

    /// Waits for the `connected` event of this device (matched by its local address).
    pub fn wait_connected(&mut self, dev: &Device) -> Value {
        self.wait_event("connected", &[("peer", dev.local().to_string().into())])
    }

    /// Everything seen so far (drains what is pending without waiting).
    pub fn events(&mut self) -> Vec<Value> {
        while self.pump(None) {}
        self.seen.iter().map(|(v, _)| v.clone()).collect()
    }

    /// Events of one kind seen so far.
    pub fn events_of(&mut self, kind: &str) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["event"] == kind).collect()
    }

    fn dump(&self) -> String {
        let mut out = String::new();
        for (v, _) in &self.seen {
            let mut line = v.to_string();
            if line.len() > 400 {
                let mut cut = 400;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
                line.push_str("...");
            }
            out.push_str("  ");
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// Every byte the console wrote to stdout so far.
    pub fn stdout_raw(&self) -> Vec<u8> {
        self.stdout_raw.lock().unwrap().clone()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr_raw.lock().unwrap()).into_owned()
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads catch the last lines.
                let until = Instant::now() + Duration::from_millis(300);
                while self.pump(Some(until)) {}
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "benchlink did not exit within {timeout:?}.\nevents:\n{}\nstderr:\n{}",
                    self.dump(),
                    self.stderr_text()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends a signal by name (`TERM`, `INT`, ...) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// user+system CPU time of the console so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks(self.pid())
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process from /proc/PID/stat, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; fields count from after its closing paren.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 is the state; utime and stime are fields 14 and 15 of the full line.
    let utime: u64 = fields[11].parse().unwrap();
    let stime: u64 = fields[12].parse().unwrap();
    utime + stime
}

/// Runs the binary to completion (stdin closed) and returns its output; panics if it
/// runs longer than `timeout`. `XDG_*` point at an empty temp folder.
pub fn run_to_exit(args: &[&str], timeout: Duration) -> Output {
    let xdg = tempfile::tempdir().unwrap();
    let child = Command::new(bin())
        .args(args)
        .env("XDG_CONFIG_HOME", xdg.path().join("config"))
        .env("XDG_DATA_HOME", xdg.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    output_within(child, timeout, &format!("benchlink {args:?}"))
}

/// Waits for a child to exit and returns its output; kills it and panics, showing
/// what it printed, if it runs longer than `timeout`.
pub fn output_within(mut child: std::process::Child, timeout: Duration, what: &str) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} still running after {timeout:?}; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A device: one TCP connection to the console.
pub struct Device {
    pub stream: TcpStream,
    local: SocketAddr,
}

impl Device {
    pub fn connect(addr: SocketAddr) -> Device {
        let stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
        stream.set_nodelay(true).unwrap();
        let local = stream.local_addr().unwrap();
        Device { stream, local }
    }

    /// Connects and waits for the cf greeting (the console's auto delay must pass).
    pub fn connect_cf(addr: SocketAddr, greeting: &[u8]) -> Device {
        let mut d = Device::connect(addr);
        let got = d.read_exact_within(greeting.len(), WAIT);
        assert_eq!(got, greeting, "greeting");
        d
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends in pieces of `chunk` bytes (like a device with a small UART buffer).
    pub fn send_chunked(&mut self, bytes: &[u8], chunk: usize) {
        for c in bytes.chunks(chunk) {
            self.stream.write_all(c).unwrap();
        }
    }

    /// Sends, then pauses so the console reads this as a message of its own.
    pub fn send_alone(&mut self, bytes: &[u8]) {
        self.send(bytes);
        thread::sleep(Duration::from_millis(150));
    }

    /// Reads exactly `n` bytes or panics after `timeout`.
    pub fn read_exact_within(&mut self, n: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::with_capacity(n);
        let mut buf = vec![0u8; n.max(1)];
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "device read {} of {n} bytes: {:?}",
                got.len(),
                String::from_utf8_lossy(&got)
            );
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf[..n - got.len()]) {
                Ok(0) => panic!(
                    "connection closed after {} of {n} bytes: {:?}",
                    got.len(),
                    String::from_utf8_lossy(&got)
                ),
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read error: {e}"),
            }
        }
        got
    }

    /// Whatever arrives within `window` (stops early at EOF).
    pub fn read_for(&mut self, window: Duration) -> Vec<u8> {
        let deadline = Instant::now() + window;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return got;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return got,
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return got,
            }
        }
    }

    /// True once the console closed the connection (EOF or reset) within `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
    }

    /// Half-closes (FIN) so the console sees the end of the stream, keeping the
    /// socket open to read what the console still sends.
    pub fn finish(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// A valid 24-bit BMP (BITMAPINFOHEADER) with random pixels and a correct size field.
pub fn bmp(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut v = benchlink::device::image::bmp_header(width, height);
    let size = u32::from_le_bytes([v[2], v[3], v[4], v[5]]) as usize;
    v.extend_from_slice(&Rng::new(seed).bytes(size - v.len()));
    v
}

/// Every regular file under `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let ft = entry.file_type().unwrap();
            if ft.is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// Names of the entries directly in `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn test_name() -> String {
    thread::current().name().unwrap_or("this test").to_string()
}

/// Reports a missing tool: a loud skip locally, a failure under CI=true (CI installs
/// every tool the tests drive, so CI never skips).
pub fn skip_or_fail(tool: &str, how: &str) {
    let line = format!(
        "SKIPPED {}: {tool} not found; install it ({how}) to run this test",
        test_name()
    );
    if ci() {
        panic!("{line} [CI=true: CI must never skip]");
    }
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests,
    // and a skip nobody sees is worse than useless.
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!! {line} !!!!!!!!\n");
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `name` on PATH, or `None` after a loud skip line (a panic under CI=true).
pub fn require_tool(name: &str) -> Option<PathBuf> {
    // Daemons (mosquitto) live in /usr/sbin, which a user's PATH may lack.
    let found = on_path(name).or_else(|| {
        let sbin = Path::new("/usr/sbin").join(name);
        is_executable(&sbin).then_some(sbin)
    });
    if found.is_none() {
        let how = match name {
            "nc" => "apt-get install netcat-openbsd",
            "socat" => "apt-get install socat",
            "sz" | "rb" => "apt-get install lrzsz",
            "mosquitto" => "apt-get install mosquitto",
            "openssl" => "apt-get install openssl",
            "mosquitto_sub" | "mosquitto_pub" => "apt-get install mosquitto-clients",
            "cc" => "apt-get install gcc",
            "arm-none-eabi-gcc" => "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi",
            "qemu-system-arm" => "apt-get install qemu-system-arm",
            "python3" => "apt-get install python3",
            _ => "with your package manager",
        };
        skip_or_fail(name, how);
    }
    found
}

fn is_python2(p: &Path) -> bool {
    is_executable(p)
        && Command::new(p)
            .args(["-c", "import sys; assert sys.version_info[0] == 2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// A Python 2.7 interpreter: $BENCHLINK_PYTHON2, pyenv's 2.7.18, python2 on PATH.
/// `None` after a loud skip line (a panic under CI=true).
pub fn python2() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("BENCHLINK_PYTHON2") {
        candidates.push(PathBuf::from(p));
    }
    if let Ok(out) = Command::new("pyenv").arg("root").output()
        && out.status.success()
    {
        let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
        candidates.push(Path::new(&root).join("versions/2.7.18/bin/python"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".pyenv/versions/2.7.18/bin/python"));
    }
    candidates.extend(on_path("python2"));
    candidates.extend(on_path("python2.7"));
    let found = candidates.into_iter().find(|p| is_python2(p));
    if found.is_none() {
        skip_or_fail(
            "Python 2.7",
            "pyenv install 2.7.18, or set BENCHLINK_PYTHON2=/path/to/python2",
        );
    }
    found
}
