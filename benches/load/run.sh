#!/usr/bin/env bash
# ferry load against wrk, both loading nginx serving a small static response on loopback.
#
# Needs (installs nothing): nginx, wrk, taskset (util-linux), python3 (to read the JSON),
# openssl (a self-signed certificate for the https rounds), and a release build:
# `cargo build --release --bin ferry`. nginx runs on CPU 0, the load generator on CPU 1; every
# run is bounded by DURATION. Prints the figures for benches/RESULTS.md.
#
#   benches/load/run.sh            # DURATION=10 CONNECTIONS=50 RATE=10000 ROUNDS=3
#   ONLY=closed benches/load/run.sh                  # the closed-model rounds only
#   FERRY_BEFORE=/tmp/ferry-old benches/load/run.sh  # also an older build in each round
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
RATE=${RATE:-10000}
ROUNDS=${ROUNDS:-3}
STALL_MS=${STALL_MS:-500}
FERRY=${FERRY:-target/release/ferry}
FERRY_BEFORE=${FERRY_BEFORE:-}
ONLY=${ONLY:-}

for tool in nginx wrk taskset python3 openssl; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install nginx wrk util-linux python3 openssl)"; exit 1; }
done
[ -x "$FERRY" ] || { echo "needs $FERRY: cargo build --release --bin ferry"; exit 1; }

work=$(mktemp -d)
nginx_pid=
cleanup() {
  if [ -n "$nginx_pid" ]; then kill -CONT "$nginx_pid" 2>/dev/null || true; kill "$nginx_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
tls_port=$(free_port)
mkdir -p "$work/logs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=load.test \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
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
    listen 127.0.0.1:$tls_port ssl;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
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
# A run whose requests failed measured nothing: say so.
check() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); e=d['errors']; sum(e.values()) and print('  (%s: %d requests failed: %s; requests_per_second counts answers only)' % (sys.argv[2], sum(e.values()), e))" "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# µs of CPU (user + system, from /usr/bin/time) per request: on a shared machine the req/s of
# a round swing with the neighbours' load, the work each request costs the generator much less.
cpu_us() { python3 -c "import sys; u, s = open(sys.argv[1]).read().split(); print('%.2f' % ((float(u) + float(s)) * 1e6 / int(sys.argv[2])))" "$@"; }
ferry_run() { # BINARY JSON URL [options]
  local bin=$1 out=$2 url=$3; shift 3
  /usr/bin/time -f "%U %S" -o "$work/time" taskset -c 1 "$bin" load -t 1 -c "$CONNECTIONS" -d "${DURATION}s" "$@" --json "$out" "$url" >/dev/null
  local n
  n=$(json "$out" 'd["responses"] + sum(d["errors"].values())')
  echo "$(json "$out" 'round(d["requests_per_second"])') $(cpu_us "$work/time" "$n")"
}
# closed URL [ferry options]: ROUNDS rounds of wrk then ferry load (then FERRY_BEFORE).
closed() {
  local url=$1; shift
  local wrk_all=() ferry_all=() ratio_all=() cpu_all=() w wc f fc r b bc line out
  for round in $(seq "$ROUNDS"); do
    out=$(/usr/bin/time -f "%U %S" -o "$work/time" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$url")
    w=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    wc=$(cpu_us "$work/time" "$(awk '/requests in/ {print $1}' <<<"$out")")
    read -r f fc < <(ferry_run "$FERRY" "$work/closed.json" "$url" "$@")
    check "$work/closed.json" "ferry load"
    r=$(python3 -c "print('%.2f' % ($f / $w))")
    line="round $round: wrk $w req/s ($wc µs CPU/req), ferry load $f req/s ($fc µs CPU/req): req/s ratio $r, CPU ratio wrk/ferry $(python3 -c "print('%.2f' % ($wc / $fc))")"
    if [ -n "$FERRY_BEFORE" ]; then
      read -r b bc < <(ferry_run "$FERRY_BEFORE" "$work/before.json" "$url" "$@")
      check "$work/before.json" before
      line="$line; before: $b req/s ($bc µs CPU/req), ratios $(python3 -c "print('%.2f / %.2f' % ($b / $w, $wc / $bc))")"
    fi
    echo "$line"
    wrk_all+=("$w"); ferry_all+=("$f"); ratio_all+=("$r"); cpu_all+=("$(python3 -c "print('%.2f' % ($wc / $fc))")")
  done
  echo "median: wrk $(median "${wrk_all[@]}") req/s, ferry load $(median "${ferry_all[@]}") req/s; ferry/wrk req/s $(median "${ratio_all[@]}"), wrk/ferry CPU per request $(median "${cpu_all[@]}")"
  json "$work/closed.json" '"ferry load latency ms (last round): p50 %.3f p99 %.3f max %.3f; errors %d" % (d["latency_ms"]["p50"], d["latency_ms"]["p99"], d["latency_ms"]["max"], sum(d["errors"].values()))'
}

echo
echo "## closed model, HTTP/1.1: req/s (rounds alternate wrk and ferry load)"
closed "$url"
echo
echo "## closed model, HTTP/1.1 over TLS (nginx's self-signed certificate, ferry load --insecure)"
closed "https://127.0.0.1:$tls_port/" --insecure
[ "$ONLY" = closed ] && exit 0

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
