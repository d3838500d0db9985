//! `benchlink bridge` for the tests: started in front of a console, its
//! per-connection counters read from its stdout.

use std::time::Duration;

/// `benchlink bridge` in front of `to`; its stdout lines arrive on the channel.
pub struct Bridge {
    child: std::process::Child,
    pub addr: String,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Bridge {
    pub fn start(to: std::net::SocketAddr, extra: &[&str]) -> Bridge {
        use std::io::BufRead;
        let mut child = std::process::Command::new(super::bin())
            .args(["bridge", "--listen", "127.0.0.1:0", "--to", &to.to_string()])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = lines.recv_timeout(super::WAIT).unwrap();
        let addr = first
            .strip_prefix("bridge: listening on ")
            .and_then(|r| r.split(',').next())
            .unwrap()
            .to_string();
        Bridge { child, addr, lines }
    }

    pub fn counters(&self) -> serde_json::Value {
        let line = self.lines.recv_timeout(Duration::from_secs(10)).unwrap();
        serde_json::from_str(&line).unwrap()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
