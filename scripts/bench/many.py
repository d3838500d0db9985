#!/usr/bin/env python3
"""Many devices at once: DEVICES `benchlink send` processes, each sending FILES
files of SIZE_MIB MiB to one console (native frames), against one device
sending FILES x 10 files one after the other, so per-file costs weigh the
same. Every saved file is checked byte for
byte (SHA-256 against its source).

usage: many.py BIN DEVICES FILES SIZE_MIB WORK
"""
import hashlib
import os
import re
import socket
import subprocess
import sys
import time

from common import free_port

BIN, DEVICES, FILES, SIZE_MIB, WORK = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def run(port, senders):
    t0 = time.monotonic()
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for cmd in senders]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"a sender failed: {err.decode(errors='replace')}")
    return time.monotonic() - t0


def check(folder, sources, expected):
    """Every file saved in folder is byte-identical to its source; count them."""
    n = 0
    for device in os.listdir(folder):
        d = os.path.join(folder, device)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            if not name.endswith(".bin") or name.endswith(".part"):
                continue
            base = re.sub(r" \(\d+\)(?=\.bin$)", "", name)
            if digest(os.path.join(d, name)) != sources[base]:
                sys.exit(f"DIFFERS: {device}/{name}")
            n += 1
    if n != expected:
        sys.exit(f"{n} files saved, {expected} expected")


def main():
    files = []
    for k in range(FILES):
        path = os.path.join(WORK, f"f{k}.bin")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(os.urandom(SIZE_MIB << 20))
        files.append(path)
    sources = {os.path.basename(p): digest(p) for p in files}
    results = {}
    # Interleaved, three of each, medians: this kind of machine is noisy. A
    # first run is not counted: on a VM, memory the guest never touched is slow
    # to write the first time, and the first 4 GiB written took twice as long.
    runs = [("warm-up", DEVICES, 1)] + [("one device", 1, 10), (f"{DEVICES} devices", DEVICES, 1)] * 3
    for label, devices, repeat in runs:
        port = free_port()
        folder = os.path.join(WORK, f"rx-{devices}")
        log = open(os.path.join(WORK, f"many-{devices}.log"), "w")
        console = subprocess.Popen(
            [BIN, "--no-tui", "--no-log", "--listen", f"frames://127.0.0.1:{port}", "--dir", folder,
             "--max-connections", str(devices + 16)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("the console did not start")
                time.sleep(0.01)
        senders = [[BIN, "send", "--to", f"127.0.0.1:{port}", "--id", f"d{i}"] + files * repeat for i in range(devices)]
        seconds = run(port, senders)
        console.terminate()
        console.wait()
        total = devices * repeat * FILES * SIZE_MIB / 1024
        check(folder, sources, devices * repeat * FILES)
        if label != "warm-up":
            results.setdefault(label, []).append(total / seconds)
        print(f"{label:12}: {devices * repeat * FILES} files of {SIZE_MIB} MiB in {seconds:.2f} s, "
              f"{total / seconds:.2f} GiB/s, all byte-identical" + (" (not counted)" if label == "warm-up" else ""))
        subprocess.run(["rm", "-rf", folder])
    one = sorted(results["one device"])[1]
    many = sorted(results[f"{DEVICES} devices"])[1]
    print(f"{DEVICES} devices at once: aggregate {many:.2f} GiB/s = {many / one:.2f}x of one device ({one:.2f} GiB/s), "
          "medians of 3 interleaved runs")


main()
