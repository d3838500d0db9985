#!/usr/bin/env python3
"""One device, one large file: benchlink against socat with 256 KiB buffers
(both ends) into a file plus an fsync of it, in interleaved rounds; medians.

usage: throughput.py BIN SIZE_MIB ROUNDS WORK [frames frames-socat cf lines lines-nolog]

frames-socat sends the same file as native frames encoded beforehand (with
the Python SDK's encoder) through socat: the console alone, without
`benchlink send`. lines-nolog is lines with --no-log: what writing
conversation.log costs.

Prints one line per protocol: median GiB/s of each, the ratio, and CPU
seconds per GiB of the console and of the sender.
"""
import json
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time
import zlib

from common import cpu_seconds as cpu_of, free_port

BIN, SIZE_MIB, ROUNDS, WORK = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
WHICH = sys.argv[5:] or ["frames", "frames-socat", "cf", "lines", "lines-nolog"]
# What each measures: the listener's protocol, and extra console options.
SETUPS = {
    "frames": ("frames", []),
    "frames-socat": ("frames", []),
    "cf": ("cf", []),
    "lines": ("lines", []),
    "lines-nolog": ("lines", ["--no-log"]),
}
SIZE = SIZE_MIB << 20
GIB = SIZE / (1 << 30)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def fsync(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def socat_round(source):
    """socat -b 262144 both ends, into a file, then an fsync of it."""
    port = free_port()
    out = os.path.join(WORK, "socat.out")
    t0 = time.monotonic()
    rx = subprocess.Popen(["socat", "-b", "262144", "-u", f"TCP-LISTEN:{port},reuseaddr", f"OPEN:{out},creat,trunc"])
    while True:  # wait for the listener without sleeping a fixed time
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.002)
    rx.wait()  # the probe connection ended the first listener: start the real one
    rx = subprocess.Popen(["socat", "-b", "262144", "-u", f"TCP-LISTEN:{port},reuseaddr", f"OPEN:{out},creat,trunc"])
    time.sleep(0.05)
    t0 = time.monotonic()
    subprocess.run(["socat", "-b", "262144", "-u", f"OPEN:{source}", f"TCP:127.0.0.1:{port}"], check=True)
    rx.wait()
    fsync(out)
    seconds = time.monotonic() - t0
    assert os.path.getsize(out) == os.path.getsize(source), "socat lost bytes"
    os.remove(out)
    return seconds


class Console:
    def __init__(self, name):
        proto, extra = SETUPS[name]
        self.port = free_port()
        self.dir = os.path.join(WORK, f"rx-{name}")
        self.log_path = os.path.join(WORK, f"{name}.jsonl")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [BIN, "--no-tui", "--json", "--listen", f"{proto}://127.0.0.1:{self.port}", "--dir", self.dir, *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # The first line says the console listens; read byte by byte, so nothing
        # after it is taken from the pipe.
        first = b""
        while not first.endswith(b"\n"):
            byte = os.read(self.proc.stdout.fileno(), 1)
            if not byte:
                raise SystemExit(f"the console exited: {first!r}")
            first += byte
        assert b'"event":"listening"' in first, first
        # Then all of its output is read, keeping only the one event the rounds
        # wait for: a lines device's millions of text events must not fill the
        # tmpfs we measure on. One fixed string is the cheapest reader grep has
        # (a pattern with alternatives cost it 5x the CPU, on the cores the
        # console needs); a slower reader only makes the console drop texts,
        # which stay in conversation.log.
        self.until = "file_saved" if proto in ("frames", "cf") else "disconnected"
        self.filter = subprocess.Popen(
            ["grep", "--line-buffered", "-F", f'"event":"{self.until}"'],
            stdin=self.proc.stdout, stdout=self.log)
        self.proc.stdout.close()
        self.reader = open(self.log_path)

    def wait_for(self, kind, timeout):
        deadline = time.monotonic() + timeout
        buf = ""
        while time.monotonic() < deadline:
            chunk = self.reader.readline()
            if not chunk:
                time.sleep(0.002)
                continue
            buf += chunk
            if not buf.endswith("\n"):
                continue
            line, buf = buf, ""
            # Millions of text events may come first: parse only the one looked for.
            if f'"event":"{kind}"' not in line:
                continue
            return json.loads(line)
        raise SystemExit(f"timed out waiting in {self.log_path}")

    def settle(self, quiet=0.3, limit=60):
        """Waits until the console stops working (its printer may still be
        writing out queued events), so the next round runs on a quiet machine."""
        deadline = time.monotonic() + limit
        last = cpu_of(self.proc.pid)
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = cpu_of(self.proc.pid)
            if now - last < 0.02:
                return
            last = now

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.filter.wait()


def frames_round(console, source, n):
    t0 = time.monotonic()
    subprocess.run([BIN, "send", "--to", f"127.0.0.1:{console.port}", "--id", f"r{n}", source],
                   check=True, stdout=subprocess.DEVNULL)
    seconds = time.monotonic() - t0
    saved = console.wait_for("file_saved", 30)
    return seconds, saved


def stream_round(console, source, n, until):
    """cf and lines: the bytes through socat, until the console's event says done."""
    t0 = time.monotonic()
    with open(source, "rb") as f:
        subprocess.run(["socat", "-b", "262144", "-", f"TCP:127.0.0.1:{console.port}"],
                       stdin=f, stdout=subprocess.DEVNULL, check=True)
    done = console.wait_for(until, 120)
    return time.monotonic() - t0, done


def encode_frames(payload, out):
    """A device's whole upload as it would go on the wire: HELLO, FILE_BEGIN,
    256 KiB FILE_DATA frames, FILE_END (the console's answers are not waited for)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "sdk", "python"))
    from benchlink_device import FILE_BEGIN, FILE_DATA, FILE_END, HELLO, encode
    crc = 0
    with open(payload, "rb") as src, open(out, "wb") as f:
        f.write(encode(HELLO, b"id=socat\n"))
        f.write(encode(FILE_BEGIN, struct.pack("<IQ", 1, SIZE) + b"payload.bin"))
        offset = 0
        while chunk := src.read(256 * 1024):
            crc = zlib.crc32(chunk, crc)
            f.write(encode(FILE_DATA, struct.pack("<IQ", 1, offset) + chunk))
            offset += len(chunk)
        f.write(encode(FILE_END, struct.pack("<II", 1, crc)))


def main():
    payload = os.path.join(WORK, "payload.bin")
    if not os.path.exists(payload) or os.path.getsize(payload) != SIZE:
        with open(payload, "wb") as f:
            for _ in range(SIZE_MIB):
                f.write(os.urandom(1 << 20))
    cf_payload = os.path.join(WORK, "payload.cf")
    if "cf" in WHICH and not os.path.exists(cf_payload):
        with open(cf_payload, "wb") as out, open(payload, "rb") as src:
            out.write(b"f")
            while chunk := src.read(1 << 20):
                out.write(chunk)
    text = os.path.join(WORK, "payload.txt")
    if any(w.startswith("lines") for w in WHICH) and (not os.path.exists(text) or os.path.getsize(text) < SIZE):
        with open(text, "wb") as f:
            line_no, written = 0, 0
            block = []
            while written < SIZE:
                line = b"%010d temp=21.5 hum=40 v=3.300 status=ok sensor reading from the board\n" % line_no
                block.append(line)
                written += len(line)
                line_no += 1
                if len(block) == 4096:
                    f.write(b"".join(block))
                    block = []
            f.write(b"".join(block))
    framed = os.path.join(WORK, "payload.frames")
    if "frames-socat" in WHICH and not os.path.exists(framed):
        encode_frames(payload, framed)
    for proto in WHICH:
        source = {"frames": payload, "frames-socat": framed, "cf": cf_payload}.get(proto, text)
        size = os.path.getsize(source)
        console = Console(proto)
        ref, ours, console_cpu, sender_cpu = [], [], [], []
        # Round -1 warms up and is not counted: on a VM, memory the guest has
        # never touched is slow to write the first time (the host backs it
        # page by page), which made whichever side came first look slow.
        for n in range(-1, ROUNDS):
            socat_seconds = socat_round(source)
            c0, s0 = cpu_of(console.proc.pid), children_cpu()
            if proto == "frames":
                seconds, saved = frames_round(console, source, n)
                assert saved["size"] == SIZE, saved
                os.remove(saved["path"])
            elif proto in ("cf", "frames-socat"):
                seconds, saved = stream_round(console, source, n, "file_saved")
                assert saved["size"] == SIZE, saved
                os.remove(saved["path"])
            else:
                seconds, gone = stream_round(console, source, n, "disconnected")
                assert gone["bytes_in"] == size, gone
            # The console's CPU for this round includes what it does after (printing
            # the queued events of a lines device, say).
            console.settle()
            if n >= 0:
                ref.append(socat_seconds)
                ours.append(seconds)
                console_cpu.append(cpu_of(console.proc.pid) - c0)
                sender_cpu.append(children_cpu() - s0)
        console.stop()
        if os.environ.get("BENCH_VERBOSE"):
            print(f"  rounds, socat: {[round(x, 2) for x in ref]}, benchlink: {[round(x, 2) for x in ours]}")
        gib = size / (1 << 30)
        r, o = statistics.median(ref), statistics.median(ours)
        print(f"{proto:11} 1 device, {size >> 20} MiB: benchlink {gib / o:.2f} GiB/s, socat {gib / r:.2f} GiB/s, "
              f"ratio {r / o:.2f}; CPU s/GiB console {statistics.median(console_cpu) / gib:.2f}, "
              f"sender {statistics.median(sender_cpu) / gib:.2f} (median of {ROUNDS} interleaved rounds)")


main()
