#!/usr/bin/env bash
# Latency while UPLOADERS devices upload files in a loop with `benchlink send`.
# usage: load_latency.sh BIN UPLOADERS COUNT WORK
# 1,000 idle devices (IDLE_DEVICES) stay connected meanwhile. Prints
# latency.py's lines and the upload rate during the measurement.
set -euo pipefail
bin=$1; uploaders=$2; count=$3; work=$4
here=$(cd "$(dirname "$0")" && pwd)
free_port() { python3 "$here/common.py" free-port; }
mkdir -p "$work/lat"
port=$(free_port); eport=$(free_port)
fifo=$work/lat/stdin; rm -f "$fifo"; mkfifo "$fifo"
exec 7<>"$fifo"
idle_devices=${IDLE_DEVICES:-1000}
"$bin" --no-tui --no-log --listen 127.0.0.1:$port --max-connections $((idle_devices + uploaders + 100)) --dir "$work/lat/rx" <&7 > "$work/lat/console.log" 2>&1 &
console=$!
socat TCP-LISTEN:$eport,fork,reuseaddr,nodelay EXEC:cat &
echo_pid=$!
for _ in $(seq 100); do grep -q listening "$work/lat/console.log" 2>/dev/null && break; sleep 0.05; done
payload=$work/lat/payload.bin
[ -f "$payload" ] || head -c $((16 << 20)) /dev/urandom > "$payload"
rm -f "$work/lat/stop"
# 1,000 idle devices besides, as on a busy bench (IDLE_DEVICES= to change).
python3 "$here/common.py" hold "$port" "$idle_devices" "$work/lat/stop" &
holder=$!
loaders=()
for i in $(seq "$uploaders"); do
  ( while [ ! -e "$work/lat/stop" ]; do
      "$bin" send --to 127.0.0.1:$port --id "up$i" "$payload" > /dev/null 2>&1 || true
    done ) &
  loaders+=($!)
done
# Saved files are removed as they come (the measurement is not about the disk
# filling), and what arrives is metered, files under way included.
python3 "$here/common.py" rx-meter "$work/lat/rx" "$work/lat/meter" "$work/lat/stop" &
cleaner=$!
sleep 2  # the idle devices connected, the uploads under way
reading() { sleep 0.25; cat "$work/lat/meter" 2>/dev/null || echo "0 0"; }
before=$(reading)
python3 "$here/latency.py" "$port" "$eport" "$fifo" "$count"
after=$(reading)
touch "$work/lat/stop"
python3 -c "import sys; t0, b0, t1, b1 = map(float, sys.argv[1:]); s = t1 - t0; print(f'uploads {(b1 - b0) / 2**30:.1f} GiB in {s:.1f} s: {(b1 - b0) / 2**30 / s:.2f} GiB/s')" $before $after
kill "${loaders[@]}" $cleaner $holder $echo_pid 2>/dev/null || true
kill $console 2>/dev/null || true
wait 2>/dev/null || true
exec 7>&-
