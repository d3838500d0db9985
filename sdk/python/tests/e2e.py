"""End-to-end check of benchlink_device against a running console (tests/sdk.rs
starts the console and runs this): e2e.py HOST PORT MODE

MODE basic: text, send_file (path and bytes), receive the operator's command
            (the console is told to send "status" once it sees "py ready"), ping.
MODE reject: a file larger than the console's --max-file-size raises FileRejected.
MODE reconnect: a 6 MB file whose link drops midway (the socket is closed under
            the module after 10 frames), the module connects again and resumes.
MODE push-folder DIR: says "py waits for files", takes the file the console
            pushes into DIR, prints RECEIVED name path.
MODE push-callback: the same into a function, prints RECEIVED name size crc32.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from benchlink_device import Device, FileRejected  # noqa: E402

host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]

if mode == "basic":
    with Device(host, port, id="py-1", window=4096) as d:
        assert d.name == "py-1", d.name
        assert d.protocol == "1.1", d.protocol
        d.text("py ready")
        data = os.urandom(200_000)
        with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
            f.write(data)
        saved = d.send_file(f.name)
        print("SAVED", saved)
        saved = d.send_file(b"hello bytes", name="hello.txt")
        print("SAVED", saved)
        cmd = d.receive(timeout=10)
        print("COMMAND", cmd)
        d.text("ok: %s" % cmd)
        rtt = d.ping()
        assert 0 <= rtt < 5, rtt
        print("PING", rtt)
elif mode == "reject":
    with Device(host, port, id="py-2") as d:
        try:
            d.send_file(b"x" * 5000, name="big.bin")
        except FileRejected as e:
            print("REJECTED", e.status, e.code, e.detail)
            sys.exit(0)
        sys.exit("the console accepted a file over its limit")
elif mode == "reconnect":
    data = bytes(range(256)) * (6_000_000 // 256)
    with Device(host, port, id="py-3", reconnect=True) as d:
        real_send = d._send
        sent = {"frames": 0}

        def flaky_send(kind, payload=b"", flags=0):
            # The link drops once, in the middle of the file, as Wi-Fi does.
            if kind == 0x21:
                sent["frames"] += 1
                if sent["frames"] == 10:
                    d._sock.close()
            real_send(kind, payload, flags)

        d._send = flaky_send
        saved = d.send_file(data, name="big.bin")
        print("SAVED", saved, "after", sent["frames"], "data frames")
elif mode == "push-folder":
    with Device(host, port, id="py-4", window=8192, files=sys.argv[4]) as d:
        d.text("py waits for files")
        got = d.wait_file(timeout=60)
        if got is None:
            sys.exit("no file was pushed")
        print("RECEIVED", got[0], got[1])
elif mode == "push-callback":
    import zlib

    kept = {}
    with Device(host, port, id="py-5", files=lambda name, data: kept.update({name: data})) as d:
        d.text("py waits for files")
        got = d.wait_file(timeout=60)
        if got is None:
            sys.exit("no file was pushed")
        data = kept[got[0]]
        print("RECEIVED", got[0], len(data), "%08x" % (zlib.crc32(data) & 0xFFFFFFFF))
