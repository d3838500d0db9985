#!/usr/bin/env python3
"""N idle devices on a running console: its RSS and CPU.

usage: idle.py PORT N CONSOLE_PID PROTO   (lines: each says one line; auto: silent)
"""
import sys
import time

from common import TICK, connect_devices, cpu_seconds, rss_kib

port, n, pid, proto = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]


def rss():
    return rss_kib(pid)


def cpu():
    return round(cpu_seconds(pid) * TICK)


before = rss()
# lines: each speaks once, then stays idle; auto: silent.
socks = connect_devices(port, n, say=lambda i: b"hello\n" if proto == "lines" else None)
time.sleep(2.0)  # auto: every device gets its greeting and becomes cf
after = rss()
c0 = cpu()
time.sleep(2.0)
c1 = cpu()
print(f"{proto:5}: RSS {before / 1024:.1f} MiB idle console -> {after / 1024:.1f} MiB with {n} devices "
      f"({(after - before) * 1024 / n:.0f} bytes each); CPU over 2 s idle: {c1 - c0} ticks")
