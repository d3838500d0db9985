#!/usr/bin/env bash
# Measures benchlink's data path and idle memory against a raw copy. Not a test:
# numbers depend on the machine. Usage: scripts/bench.sh [SIZE_MIB] [IDLE_DEVICES]
# (SIZE_MIB 0 skips the transfers, IDLE_DEVICES 0 the idle devices.)
# Needs socat and python3. Prints one line per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
idle=${2:-10000}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release -q
bin=$PWD/target/release/benchlink
# tmpfs when there is one: the data path is measured, not the disk (fsync on tmpfs is free).
work=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
cleanup() {
  # set -e is in force here too: nothing in the cleanup may fail it.
  local pids
  pids=$(jobs -p) || true
  [ -z "$pids" ] || kill $pids 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
file=$work/payload.bin
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$file"
now() { date +%s.%N; }
rate() { python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'{$size_mib/1024/s:.2f} GiB/s ({s:.2f} s)')" "$1" "$2"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 600); do grep -q "$1" "$2" 2>/dev/null && return 0; sleep 0.05; done; echo "timed out waiting for $1" >&2; return 1; }

if [ "$size_mib" -gt 0 ]; then
echo "== ${size_mib} MiB over loopback =="
# Baseline: socat with 256 KiB buffers into a file, fed exactly like the cf client
# below (the sender's pipe costs the same in both).
port=$(free_port)
socat -b 262144 -u TCP-LISTEN:$port,reuseaddr OPEN:$work/socat.out,creat,trunc &
sleep 0.3
t0=$(now); { printf f; cat "$file"; } | socat -b 262144 -u - TCP:127.0.0.1:$port; wait %1 2>/dev/null || true; t1=$(now)
echo "socat raw copy:                 $(rate "$t0" "$t1")"
rm -f "$work/socat.out"

# cf: 'f' then the bytes, until close. Sender time = receive rate (socket buffers are small).
port=$(free_port)
"$bin" --no-tui --json --no-log --listen cf://127.0.0.1:$port --dir "$work/cf" > "$work/cf.log" 2>&1 &
console=$!
wait_for listening "$work/cf.log"
# Not -u: the client must read the greeting, or closing resets the connection and
# its TCP stack drops the end of the file.
t0=$(now); { printf f; cat "$file"; } | socat -b 262144 - TCP:127.0.0.1:$port > /dev/null; t1=$(now)
wait_for file_saved "$work/cf.log"; t2=$(now)
echo "benchlink cf, bytes received:   $(rate "$t0" "$t1")"
echo "benchlink cf, saved + fsynced:  $(rate "$t0" "$t2")"
if cmp -s "$file" "$work"/cf/127.0.0.1/*.*; then echo "benchlink cf: byte-identical"; else echo "benchlink cf: DIFFERS"; ls -la "$work"/cf/127.0.0.1/; grep -v progress "$work/cf.log" | tail -3; fi
kill $console; wait $console 2>/dev/null || true

# Native frames with benchlink send (CRC both ends, 256 KiB frames), until FILE_ACK SAVED.
port=$(free_port)
"$bin" --no-tui --json --no-log --listen frames://127.0.0.1:$port --dir "$work/fr" > "$work/fr.log" 2>&1 &
console=$!
wait_for listening "$work/fr.log"
t0=$(now); "$bin" send --to 127.0.0.1:$port --id bench "$file" > /dev/null; t1=$(now)
echo "benchlink frames, acked saved:  $(rate "$t0" "$t1") (CRC-32 at both ends, until FILE_ACK SAVED)"
cmp -s "$file" "$work/fr/bench/payload.bin" && echo "benchlink frames: byte-identical" || echo "benchlink frames: DIFFERS"
kill $console; wait $console 2>/dev/null || true

fi

[ "$idle" -gt 0 ] || exit 0
echo "== $idle idle devices =="
for proto in lines auto; do
  port=$(free_port)
  "$bin" --no-tui --json --no-log --listen $proto://127.0.0.1:$port --max-connections $((idle + 10)) --dir "$work/idle" > "$work/idle.log" 2>&1 &
  console=$!
  wait_for listening "$work/idle.log"
  before=$(awk '/VmRSS/ {print $2}' /proc/$console/status)
  python3 - "$port" "$idle" "$console" "$proto" "$before" <<'PY'
import socket, sys, time
port, n, pid, proto, before = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if proto == "lines":
        s.sendall(b"hello\n")  # speak once, then stay idle
    socks.append(s)
time.sleep(2.0)  # auto: every device gets its greeting and becomes cf
rss = int([l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1])
cpu0 = sum(int(x) for x in open(f"/proc/{pid}/stat").read().split()[13:15])
time.sleep(2.0)
cpu1 = sum(int(x) for x in open(f"/proc/{pid}/stat").read().split()[13:15])
print(f"{proto:5}: RSS {before/1024:.1f} MiB idle console -> {rss/1024:.1f} MiB with {n} devices "
      f"({(rss-before)*1024/n:.0f} bytes each); CPU over 2 s idle: {cpu1-cpu0} ticks")
PY
  kill $console; wait $console 2>/dev/null || true
done
