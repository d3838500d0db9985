#!/usr/bin/env bash
# Latency while UPLOADERS devices upload files in a loop with `benchlink send`.
# usage: load_latency.sh BIN UPLOADERS COUNT WORK
# Prints latency.py's lines and the upload rate during the measurement.
set -euo pipefail
bin=$1; uploaders=$2; count=$3; work=$4
here=$(cd "$(dirname "$0")" && pwd)
free_port() { python3 "$here/common.py" free-port; }
mkdir -p "$work/lat"
port=$(free_port); eport=$(free_port)
fifo=$work/lat/stdin; rm -f "$fifo"; mkfifo "$fifo"
exec 7<>"$fifo"
"$bin" --no-tui --no-log --listen 127.0.0.1:$port --dir "$work/lat/rx" <&7 > "$work/lat/console.log" 2>&1 &
console=$!
socat TCP-LISTEN:$eport,fork,reuseaddr,nodelay EXEC:cat &
echo_pid=$!
for _ in $(seq 100); do grep -q listening "$work/lat/console.log" 2>/dev/null && break; sleep 0.05; done
payload=$work/lat/payload.bin
[ -f "$payload" ] || head -c $((16 << 20)) /dev/urandom > "$payload"
rm -f "$work/lat/stop" "$work"/lat/done.*
loaders=()
for i in $(seq "$uploaders"); do
  ( while [ ! -e "$work/lat/stop" ]; do
      "$bin" send --to 127.0.0.1:$port --id "up$i" "$payload" > /dev/null 2>&1 && echo >> "$work/lat/done.$i"
    done ) &
  loaders+=($!)
done
# Saved files are removed as they come: the measurement is not about the disk filling.
( while [ ! -e "$work/lat/stop" ]; do find "$work/lat/rx" -type f -name 'payload*.bin' -delete 2>/dev/null; sleep 0.5; done ) &
cleaner=$!
[ "$uploaders" -eq 0 ] || sleep 2
done_count() { cat "$work"/lat/done.* 2>/dev/null | wc -l || true; }
before=$(done_count)
t0=$(date +%s.%N)
python3 "$here/latency.py" "$port" "$eport" "$fifo" "$count"
t1=$(date +%s.%N)
after=$(done_count)
touch "$work/lat/stop"
python3 -c "import sys; n=int(sys.argv[1]); s=float(sys.argv[3])-float(sys.argv[2]); print(f'uploads {n} files of 16 MiB in {s:.1f} s: {n*16/1024/s:.2f} GiB/s')" $((after - before)) "$t0" "$t1"
kill "${loaders[@]}" $cleaner $echo_pid 2>/dev/null || true
kill $console 2>/dev/null || true
wait 2>/dev/null || true
exec 7>&-
