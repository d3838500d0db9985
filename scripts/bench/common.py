"""Helpers the bench scripts share: a free port, a process's RSS and CPU,
idle devices, percentiles.
`python3 common.py free-port` prints a free port for the shell scripts;
`python3 common.py rx-meter DIR OUT STOP` removes saved files and meters
what arrives (see rx_meter); `python3 common.py hold PORT N STOP` keeps N
idle devices connected."""
import os
import socket
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    """Resident memory of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """User plus system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rx_meter(folder, out, stop):
    """Until STOP exists: every 0.2 s removes the uploads (payload*.bin) saved in FOLDER (so the
    disk never fills) and writes "TIME BYTES" to OUT, BYTES being all that
    arrived so far: the removed files plus the files still being written
    (`.part`). Two readings give the upload rate exactly, the files under way
    included, which counting completed files would miss."""
    removed = 0
    while not os.path.exists(stop):
        under_way = 0
        for root, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(root, name)
                try:
                    size = os.path.getsize(path)
                    if name.endswith(".part"):
                        under_way += size
                    elif name.startswith("payload") and name.endswith(".bin"):
                        os.remove(path)
                        removed += size
                except OSError:
                    pass  # renamed or removed meanwhile: counted on the next pass
        with open(out + ".tmp", "w") as f:
            f.write(f"{time.monotonic()} {removed + under_way}\n")
        os.replace(out + ".tmp", out)
        time.sleep(0.2)


def connect_devices(port, n, say=lambda i: b"idle device %d\n" % i):
    """N devices connected to the console at PORT, each having said `say(i)`
    (nothing if it returns None): their sockets, to keep them connected."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        line = say(i)
        if line:
            s.sendall(line)
        socks.append(s)
    return socks


def hold(port, n, stop):
    """N devices connect, say one line each, and stay until STOP exists."""
    socks = connect_devices(port, n)  # noqa: F841 (held open)
    while not os.path.exists(stop):
        time.sleep(0.2)


def percentile_ms(samples, p):
    """The p-th percentile of samples in seconds, in milliseconds."""
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p / 100))] * 1000


if __name__ == "__main__" and sys.argv[1:] == ["free-port"]:
    print(free_port())
elif __name__ == "__main__" and sys.argv[1:2] == ["hold"]:
    hold(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
elif __name__ == "__main__" and sys.argv[1:2] == ["rx-meter"]:
    rx_meter(*sys.argv[2:5])
