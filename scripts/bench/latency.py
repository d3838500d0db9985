#!/usr/bin/env python3
"""Round trips to a running console while others load it, beside a plain echo
process measured the same way in the same moments.

usage: latency.py CONSOLE_PORT ECHO_PORT STDIN_FIFO COUNT

- PING: a native-frames device ("pinger") sends PING, waits for PONG;
- typed: a line written to the console's stdin (the operator typing) until
  the device "target" receives it;
- echo: 8 bytes to `socat EXEC:cat` and back.
Prints one line per measure: p50 and p99 in milliseconds.
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "sdk", "python"))
import benchlink_device as bl  # noqa: E402
from common import percentile_ms as pct  # noqa: E402


def main():
    port, echo_port, fifo, count = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    pinger = bl.Device("127.0.0.1", port, id="pinger", timeout=30)
    target = bl.Device("127.0.0.1", port, id="target", timeout=30)
    typist = open(fifo, "w")
    typist.write(f"/to {target.name}\n")
    typist.flush()
    time.sleep(0.3)
    echo = socket.create_connection(("127.0.0.1", echo_port))
    echo.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pings, typed, echoes = [], [], []
    for i in range(count):
        pings.append(pinger.ping())
        t0 = time.monotonic()
        echo.sendall(b"12345678")
        got = b""
        while len(got) < 8:
            got += echo.recv(8 - len(got))
        echoes.append(time.monotonic() - t0)
        t0 = time.monotonic()
        typist.write(f"m{i}\n")
        typist.flush()
        while True:
            text = target.receive(timeout=30)
            if text is None:
                sys.exit("the typed line never reached the device")
            if text.strip() == f"m{i}":
                break
        typed.append(time.monotonic() - t0)
        time.sleep(0.003)
    for name, s in (("PING", pings), ("typed", typed), ("echo", echoes)):
        print(f"{name} p50 {pct(s, 50):.3f} p99 {pct(s, 99):.3f}")


main()
