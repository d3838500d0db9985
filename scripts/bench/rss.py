#!/usr/bin/env python3
"""The console's memory through one large transfer: RSS sampled every 50 ms
while `benchlink send` uploads SIZE_MIB MiB (native frames).

usage: rss.py BIN SIZE_MIB WORK
"""
import os
import subprocess
import sys
import time

from common import free_port, rss_kib

BIN, SIZE_MIB, WORK = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def rss_mib(pid):
    return rss_kib(pid) / 1024


def main():
    source = os.path.join(WORK, "big.bin")
    if not os.path.exists(source) or os.path.getsize(source) != SIZE_MIB << 20:
        block = os.urandom(1 << 20)
        with open(source, "wb") as f:
            for i in range(SIZE_MIB):
                # Not all the same MiB: a file system that dedups must not flatter us.
                f.write(i.to_bytes(8, "little") + block[8:])
    port = free_port()
    folder = os.path.join(WORK, "rx-rss")
    console = subprocess.Popen([BIN, "--no-tui", "--no-log", "--listen", f"frames://127.0.0.1:{port}", "--dir", folder],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    before = rss_mib(console.pid)
    sender = subprocess.Popen([BIN, "send", "--to", f"127.0.0.1:{port}", "--id", "big", source],
                              stdout=subprocess.DEVNULL)
    samples = []
    t0 = time.monotonic()
    while sender.poll() is None:
        samples.append((time.monotonic() - t0, rss_mib(console.pid)))
        time.sleep(0.05)
    after = rss_mib(console.pid)
    console.terminate()
    console.wait()
    if sender.returncode != 0:
        sys.exit("the upload failed")
    saved = os.path.join(folder, "big", "big.bin")
    ok = os.path.getsize(saved) == os.path.getsize(source)
    subprocess.run(["rm", "-rf", folder])
    steady = [r for t, r in samples if t >= 1.0] or [r for _, r in samples]
    print(f"RSS through a {SIZE_MIB} MiB upload: {before:.1f} MiB before, {min(steady):.1f}-{max(steady):.1f} MiB "
          f"after the first second ({len(samples)} samples), {after:.1f} MiB at the end; size {'ok' if ok else 'WRONG'}")


main()
