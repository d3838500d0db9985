#!/usr/bin/env bash
# benchlink's end-to-end measurements against raw copies, on this machine.
# Not a test: the figures depend on the machine; each line says what it
# measured and, where there is a baseline, its ratio. See docs/performance.md.
#
# usage: scripts/bench.sh [SECTION...]
#   throughput  one device, 1 GiB, frames/cf/lines (and variants) vs socat -b 262144 + fsync
#   many        100 devices x 10 files x 4 MiB at once vs one device
#   latency     PING and a typed command while 0, 20 and 100 devices upload
#   idle        10,000 idle devices: RSS and CPU
#   rss         RSS through a 4 GiB upload
#   tui         keypress-to-screen through a pty: 10,000 devices, 10,000 events/s
# (default: all of them). SIZE_MIB=256 ROUNDS=3 make the throughput rounds
# shorter; IDLE=100000 measures more idle devices where descriptors allow;
# LAT_LOADS="20 100" picks the latency section's numbers of uploaders.
# Needs socat and python3; works in a temporary folder on tmpfs (the data path
# is measured, not the disk) and removes it and every process it started on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(throughput many latency idle rss tui)
size_mib=${SIZE_MIB:-1024}
rounds=${ROUNDS:-5}
idle=${IDLE:-10000}
for tool in socat python3; do
  command -v $tool > /dev/null || { echo "scripts/bench.sh needs $tool: install it (apt-get install $tool)" >&2; exit 1; }
done
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release -q
bin=$PWD/target/release/benchlink
work=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
cleanup() {
  local pids
  pids=$(jobs -p) || true
  [ -z "$pids" ] || kill $pids 2>/dev/null || true
  pkill -f "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(git rev-parse --short HEAD)"

for section in "${sections[@]}"; do
  case $section in
  throughput)
    echo "== throughput: one device, ${size_mib} MiB, $rounds interleaved rounds =="
    python3 scripts/bench/throughput.py "$bin" "$size_mib" "$rounds" "$work" frames frames-socat cf lines lines-nolog
    ;;
  many)
    echo "== many: 100 devices x 10 files x 4 MiB at once =="
    python3 scripts/bench/many.py "$bin" 100 10 4 "$work"
    ;;
  latency)
    echo "== latency: round trips in ms while devices upload 16 MiB files in a loop =="
    for n in ${LAT_LOADS:-0 20 100}; do
      echo "-- $n uploading"
      scripts/bench/load_latency.sh "$bin" $n 1000 "$work"
    done
    ;;
  idle)
    echo "== $idle idle devices =="
    for proto in lines auto; do
      port=$(python3 scripts/bench/common.py free-port)
      "$bin" --no-tui --json --no-log --listen $proto://127.0.0.1:$port --max-connections $((idle + 10)) --dir "$work/idle" > "$work/idle.log" 2>&1 &
      console=$!
      for _ in $(seq 200); do grep -q listening "$work/idle.log" 2>/dev/null && break; sleep 0.05; done
      python3 scripts/bench/idle.py "$port" "$idle" "$console" "$proto"
      kill $console; wait $console 2>/dev/null || true
    done
    ;;
  rss)
    echo "== rss =="
    python3 scripts/bench/rss.py "$bin" 4096 "$work"
    rm -f "$work/big.bin"
    ;;
  tui)
    echo "== tui: keypress-to-screen, F1 until the help is drawn =="
    python3 scripts/bench/tui.py "$bin" "$work" "$idle" 10000 50
    ;;
  *) echo "unknown section $section: throughput, many, latency, idle, rss or tui" >&2; exit 2 ;;
  esac
done
