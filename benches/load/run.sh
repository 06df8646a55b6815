#!/usr/bin/env bash
# ferry load against wrk, both loading nginx serving a small static response on loopback.
#
# Needs (installs nothing): nginx, wrk, taskset (util-linux), python3 (to read the JSON), and a
# release build: `cargo build --release --bin ferry`. nginx runs on CPU 0, the load generator
# on CPU 1; every run is bounded by DURATION. Prints the figures for benches/RESULTS.md.
#
#   benches/load/run.sh            # DURATION=10 CONNECTIONS=50 RATE=10000 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
RATE=${RATE:-10000}
ROUNDS=${ROUNDS:-3}
STALL_MS=${STALL_MS:-500}
FERRY=${FERRY:-target/release/ferry}

for tool in nginx wrk taskset python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install nginx wrk util-linux python3)"; exit 1; }
done
[ -x "$FERRY" ] || { echo "needs $FERRY: cargo build --release --bin ferry"; exit 1; }

work=$(mktemp -d)
nginx_pid=
cleanup() {
  if [ -n "$nginx_pid" ]; then kill -CONT "$nginx_pid" 2>/dev/null || true; kill "$nginx_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/logs"
cat > "$work/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
error_log $work/logs/error.log warn;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fastcgi;
  uwsgi_temp_path $work/uwsgi;
  scgi_temp_path $work/scgi;
  server {
    listen 127.0.0.1:$port;
    location / { return 200 "hello, world\n"; }
  }
}
CONF
taskset -c 0 nginx -p "$work" -c "$work/nginx.conf" &
nginx_pid=$!
for _ in $(seq 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.1)" 2>/dev/null && break
  sleep 0.1
done
url="http://127.0.0.1:$port/"
echo "nginx on CPU 0 at $url; load on CPU 1; ${DURATION}s runs, $CONNECTIONS connections, 1 thread"

json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

echo
echo "## closed model: req/s (rounds alternate wrk and ferry load)"
wrk_all=(); ferry_all=()
for round in $(seq "$ROUNDS"); do
  w=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$url" | awk '/Requests\/sec/ {print $2}')
  taskset -c 1 "$FERRY" load -t 1 -c "$CONNECTIONS" -d "${DURATION}s" --json "$work/closed.json" "$url" >/dev/null
  f=$(json "$work/closed.json" 'round(d["requests_per_second"])')
  echo "round $round: wrk $w req/s, ferry load $f req/s"
  wrk_all+=("$w"); ferry_all+=("$f")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median: wrk $(median "${wrk_all[@]}") req/s, ferry load $(median "${ferry_all[@]}") req/s"
json "$work/closed.json" '"ferry load latency ms (last round): p50 %.3f p99 %.3f max %.3f" % (d["latency_ms"]["p50"], d["latency_ms"]["p99"], d["latency_ms"]["max"])'

echo
echo "## open model: --rate $RATE"
for round in $(seq "$ROUNDS"); do
  taskset -c 1 "$FERRY" load -t 1 -c "$CONNECTIONS" -d "${DURATION}s" --rate "$RATE" --json "$work/open.json" "$url" >/dev/null
  json "$work/open.json" '"round %s: achieved %.1f req/s of %.0f (%.3f %% short, %d missed); latency ms p50 %.3f p99 %.3f p99.9 %.3f max %.3f; errors %d" % (sys.argv[3], d["requests_per_second"], d["target_rate"], d["rate_shortfall_percent"], d["missed"], d["latency_ms"]["p50"], d["latency_ms"]["p99"], d["latency_ms"]["p99.9"], d["latency_ms"]["max"], sum(d["errors"].values()))' "$round"
done

echo
echo "## open model with a stall: nginx stopped (SIGSTOP) for ${STALL_MS} ms in the middle of the run"
# wrk2's correction predicts: every request due during the stall waits for its end, so latency
# runs linearly from STALL down to 0 for STALL*RATE requests out of DURATION*RATE: the share
# above x ms is (STALL - x) / DURATION; p99 = STALL - 0.01 * DURATION s, p99.9 = STALL - 0.001 * DURATION s.
( sleep "$(python3 -c "print($DURATION / 2)")"; kill -STOP "$nginx_pid"; sleep "$(python3 -c "print($STALL_MS / 1000)")"; kill -CONT "$nginx_pid" ) &
stopper=$!
taskset -c 1 "$FERRY" load -t 1 -c "$CONNECTIONS" -d "${DURATION}s" --rate "$RATE" --json "$work/stall.json" "$url" >/dev/null
wait "$stopper"
json "$work/stall.json" '"measured: p90 %.1f p99 %.1f p99.9 %.1f max %.1f ms; achieved %.1f req/s" % (d["latency_ms"]["p90"], d["latency_ms"]["p99"], d["latency_ms"]["p99.9"], d["latency_ms"]["max"], d["requests_per_second"])'
python3 -c "s=$STALL_MS; t=$DURATION*1000; print('predicted for a %d ms stall: p99 %.1f p99.9 %.1f max %.1f ms' % (s, max(0, s - 0.01*t), max(0, s - 0.001*t), s))"
# kill -STOP/-CONT from a sleeping shell is not exact on a busy machine: the measured max is the
# stall that happened; predict from it too.
json "$work/stall.json" '"predicted for the stall measured (max %.1f ms): p99 %.1f p99.9 %.1f ms" % (d["latency_ms"]["max"], max(0, d["latency_ms"]["max"] - 0.01 * 1000 * float(sys.argv[3])), max(0, d["latency_ms"]["max"] - 0.001 * 1000 * float(sys.argv[3])))' "$DURATION"
echo "(wrk, closed model, same stall:)"
( sleep "$(python3 -c "print($DURATION / 2)")"; kill -STOP "$nginx_pid"; sleep "$(python3 -c "print($STALL_MS / 1000)")"; kill -CONT "$nginx_pid" ) &
stopper=$!
taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" | grep -E "50%|90%|99%|Latency  "
wait "$stopper"

echo
echo "## memory: peak RSS of a 60 s open-model run vs a 10 s one (histograms, not per-request records)"
for d in 10 60; do
  if [ "$d" -gt "$DURATION" ] && [ -z "${LONG:-}" ]; then echo "(set LONG=1 for the ${d}s run)"; continue; fi
  /usr/bin/time -f "${d}s run: peak RSS %M KiB" taskset -c 1 "$FERRY" load -t 1 -c "$CONNECTIONS" -d "${d}s" --rate "$RATE" "$url" >/dev/null
done
