#!/usr/bin/env python3
"""Keypress-to-screen of the full-screen console, through a pty, while devices
keep it busy.

usage: tui.py BIN WORK DEVICES EVENTS_PER_S KEYS

The console runs in a 140x45 pseudo-terminal, as over SSH. DEVICES lines
devices connect and say one line each; 100 of them (or all, if fewer) then
send EVENTS_PER_S lines a second between them, each line one text event. Then
F1 is pressed KEYS times: the time from writing the key to the pty until the
help pop-up's title comes back out of it is one sample (the console's whole
reaction: reading the key, the next frame, and writing it). Esc closes the
pop-up between samples. Prints p50/p99/max, the events the console was sent,
and its CPU (engine and TUI are one process).
"""
import fcntl
import os
import pty
import random
import select
import socket
import struct
import subprocess
import sys
import termios
import threading
import time

from common import connect_devices, cpu_seconds, free_port, percentile_ms as pct

F1, ESC = b"\x1bOP", b"\x1b"
MARKER = " Help · Esc closes".encode()
COLUMNS, ROWS = 140, 45
CHATTY = 100


def devices(port, n, rate):
    """Run as a child: N devices connect; CHATTY of them send RATE lines a second."""
    socks = connect_devices(port, n)
    print("connected", flush=True)
    chatty = socks[: min(CHATTY, n)]
    line = b"I (123456) cam: frame 640x480 jpeg 23456 bytes, exposure 12 ms, gain 3\n"
    sent, start = 0, time.monotonic()
    while not select.select([sys.stdin], [], [], 0.005)[0]:
        due = int((time.monotonic() - start) * rate)  # paced, whatever the sleeps
        while sent < due:
            chatty[sent % len(chatty)].sendall(line)
            sent += 1
    print(f"sent {sent / (time.monotonic() - start):.0f} lines/s", flush=True)


class Screen:
    """Drains the pty (the console must never block on its terminal) and
    notes when the marker first appears after being armed."""

    def __init__(self, fd):
        self.fd = fd
        self.lock = threading.Lock()
        self.armed_at = None
        self.seen_at = None
        self.tail = b""
        self.total = 0
        threading.Thread(target=self.run, daemon=True).start()

    def arm(self):
        with self.lock:
            self.tail = b""
            self.seen_at = None
            self.armed_at = time.monotonic()

    def run(self):
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            now = time.monotonic()
            with self.lock:
                self.total += len(chunk)
                if self.armed_at is not None and self.seen_at is None:
                    window = self.tail + chunk
                    if MARKER in window:
                        self.seen_at = now
                    self.tail = window[-len(MARKER):]


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.001)
    return False


def measure(bin_path, work, n, rate, keys):
    port = free_port()
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm-256color"
        os.environ.pop("TMUX", None)
        os.execv(bin_path, [bin_path, "--listen", f"lines://127.0.0.1:{port}",
                            "--max-connections", str(n + 100), "--dir", os.path.join(work, "tui")])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    screen = Screen(fd)
    load = None
    try:
        if not wait_for(lambda: connectable(port), 10):
            sys.exit("tui.py: the console did not listen within 10 s")
        load = subprocess.Popen([sys.executable, __file__, "devices", str(port), str(n), str(rate)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if load.stdout.readline().strip() != "connected":
            sys.exit("tui.py: the devices did not connect")
        time.sleep(2.0)  # the connects' events drawn; the chatty devices under way
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        samples, missed = [], 0
        for _ in range(keys):
            time.sleep(random.uniform(0.1, 0.3))  # anywhere in the frame cycle
            screen.arm()
            os.write(fd, F1)
            if wait_for(lambda: screen.seen_at is not None, 5):
                samples.append(screen.seen_at - screen.armed_at)
            else:
                missed += 1
            os.write(fd, ESC)
            time.sleep(0.15)  # closed before the next F1
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        load.stdin.write("stop\n")
        load.stdin.flush()
        sent = load.stdout.readline().strip()
        cpu = (cpu1 - cpu0) / (t1 - t0) * 100
        if samples:
            print(f"keypress-to-screen, {n} devices, {rate} lines/s: p50 {pct(samples, 50):.1f} ms, "
                  f"p99 {pct(samples, 99):.1f} ms, max {max(samples) * 1000:.1f} ms "
                  f"({len(samples)} keys, {missed} not seen); console CPU {cpu:.0f}% of a core; "
                  f"devices {sent}; {screen.total / (t1 - t0) / 1024:.0f} KiB/s to the terminal")
        else:
            print(f"keypress-to-screen, {n} devices, {rate} lines/s: no key was seen within 5 s")
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        os.kill(pid, 15)
        os.waitpid(pid, 0)


def connectable(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    if sys.argv[1] == "devices":
        devices(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        measure(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
