#!/usr/bin/env bash
# The ingress gateway against nginx and haproxy as reverse proxies, side by side in one run,
# pinned the same way: the upstream (nginx serving a small static response) and the proxy
# under test on CPU 0, wrk on CPU 1, 50 connections, loopback only. For each of: direct to the
# upstream (the limit), ferry, nginx, haproxy, over plain HTTP/1.1 keep-alive and over TLS:
# requests per second, p50/p99 latency, the proxy's CPU-seconds per 1,000 requests and its RSS.
#
# Needs (installs nothing): nginx, haproxy, wrk, openssl, python3, taskset, and a release build
# (cargo build --release --bin ferry). Every run is bounded by DURATION seconds.
#
#   bash benches/gateway/run.sh            # DURATION=10 CONNECTIONS=50
#   SYSTEMS="ferry nginx" bash benches/gateway/run.sh     # a subset, in this order
#   PERF=/tmp/gw SYSTEMS="ferry nginx" bash benches/gateway/run.sh  # perf record -g of each (HTTP)
#   BEFORE=/tmp/ferry.old SYSTEMS="before ferry nginx" bash benches/gateway/run.sh  # two builds
#   FERRY_ARGS="--workers 2" bash benches/gateway/run.sh  # more arguments for ferry gateway
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
SYSTEMS=${SYSTEMS:-direct ferry nginx haproxy}
PERF=${PERF:-}
FERRY=${FERRY:-target/release/ferry}
BEFORE=${BEFORE:-}
FERRY_ARGS=${FERRY_ARGS:---workers 1}
for tool in nginx haproxy wrk openssl python3 taskset; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install nginx haproxy wrk openssl)" >&2; exit 1; }
done
[ -x "$FERRY" ] || { echo "needs $FERRY: cargo build --release --bin ferry" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on port $1" >&2; return 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench.local \
  -addext subjectAltName=DNS:bench.local -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/both.pem"
mkdir -p "$work/tmp"

upstream=$(free_port)
nginx_conf() { # NAME BODY
  cat > "$work/$1.conf" <<CONF
daemon off; master_process off; worker_processes 1;
error_log $work/$1.err warn; pid $work/$1.pid;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  $2
}
CONF
}
nginx_conf upstream "server { listen 127.0.0.1:$upstream; location / { return 200 'hello from the upstream\n'; } }"
taskset -c 0 nginx -c "$work/upstream.conf" & pids+=($!)
wait_port "$upstream"

# ferry: a snapshot with one route to the upstream and the certificate for bench.local.
ferry_http=$(free_port); ferry_https=$(free_port)
python3 - "$work" "$upstream" <<'PY'
import json, sys
work, port = sys.argv[1], int(sys.argv[2])
key = {"namespace": "bench", "service": "up", "port": 80}
snapshot = {
  "version": 1,
  "services": [{"namespace": "bench", "name": "up", "type": "ClusterIP", "cluster_ips": [],
    "headless": False, "ports": [{"name": "http", "port": 80, "protocol": "TCP", "target_port": port}],
    "session_affinity": {"type": "None"}, "publish_not_ready_addresses": False,
    "endpoints": [{"address": "127.0.0.1", "ready": True, "serving": True, "terminating": False}]}],
  "clusters": [{"key": key, "port_name": "http", "protocol": "TCP", "session_affinity": {"type": "None"},
    "endpoints": [{"address": "127.0.0.1", "port": port, "ready": True, "serving": True, "terminating": False}]}],
  "virtual_hosts": [{"host": "*", "tls": False, "routes": [{"path": "/", "path_type": "Prefix",
    "backend": {"kind": "Service", "namespace": "bench", "name": "up", "port": 80, "cluster": key},
    "ingress": {"kind": "Ingress", "namespace": "bench", "name": "bench"}}]}],
  "certificates": [{"namespace": "bench", "secret": "bench", "hosts": [],
    "cert_pem": open(f"{work}/cert.pem").read(), "key_pem": open(f"{work}/key.pem").read()}],
}
json.dump(snapshot, open(f"{work}/snapshot.json", "w"))
PY

nginx_http=$(free_port); nginx_https=$(free_port)
# The peers set the headers ferry sets (ingress-nginx's set): the same work for each.
nginx_conf proxy "upstream up { server 127.0.0.1:$upstream; keepalive 64; }
  map \$http_x_request_id \$req_id { default \$http_x_request_id; \"\" \$request_id; }
  server { listen 127.0.0.1:$nginx_http; listen 127.0.0.1:$nginx_https ssl;
    ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_set_header Host \$host; proxy_set_header X-Request-ID \$req_id;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Host \$host; proxy_set_header X-Forwarded-Port \$server_port;
      proxy_set_header X-Forwarded-Proto \$scheme; } }"

haproxy_http=$(free_port); haproxy_https=$(free_port)
cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  option forwardfor
frontend plain
  bind 127.0.0.1:$haproxy_http
  bind 127.0.0.1:$haproxy_https ssl crt $work/both.pem alpn h2,http/1.1
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Forwarded-Proto https if { ssl_fc }
  http-request set-header X-Forwarded-Proto http unless { ssl_fc }
  http-request set-header X-Request-ID %[uuid()] unless { req.hdr(x-request-id) -m found }
  default_backend up
backend up
  http-reuse always
  server up 127.0.0.1:$upstream
CONF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

# One wrk run against URL, charging CPU to PID (none for direct): prints a table row.
measure() { # LABEL URL PID
  local before=-1 after=-1 out
  [ -n "$3" ] && before=$(cpu_ticks "$3")
  out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H 'Host: bench.local' "$2")
  [ -n "$3" ] && after=$(cpu_ticks "$3")
  python3 - "$1" "$out" "$before" "$after" "$hz" "${3:+$(rss_mb "$3")}" <<'PY'
import re, sys
label, out, before, after, hz, rss = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
total = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
def pct(p):
    m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
cpu = (after - before) / hz
charged = before >= 0
per_k = f"{cpu / total * 1000:.3f}" if charged else "-"
per_cpu = f"{total / cpu:.0f}" if charged and cpu else "-"
print(f"| {label} | {rps:.0f} | {pct(50):.3f} | {pct(99):.3f} | {per_k} | {per_cpu} | {rss or '-'} | {errors.group(1) if errors else 0} |")
PY
}

echo "| run | req/s | p50 ms | p99 ms | proxy CPU-s per 1k req | req per proxy CPU-s | proxy RSS MB | non-2xx |"
echo "|---|---|---|---|---|---|---|---|"
# With PERF=PREFIX, each proxy's HTTP run is recorded to PREFIX.<system> (perf record -g, or
# PERF_OPTS); read it with `perf report -i PREFIX.ferry --no-children | head -60`.
perf_pid=""
profile_start() { # SYSTEM PID
  [ -n "$PERF" ] || return 0
  perf record ${PERF_OPTS:--g} -o "$PERF.$1" -p "$2" 2>/dev/null & perf_pid=$!
  sleep 0.5
}
profile_stop() {
  [ -n "$perf_pid" ] || return 0
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; perf_pid=""
}

run_direct() { measure "direct (HTTP)" "http://127.0.0.1:$upstream/" ""; }

run_ferry() { # [BINARY LABEL]
  local bin=${1:-$FERRY} label=${2:-ferry}
  # shellcheck disable=SC2086
  RUST_LOG=error taskset -c 0 "$bin" gateway --snapshot "$work/snapshot.json" --http "127.0.0.1:$ferry_http" \
    --https "127.0.0.1:$ferry_https" --admin 127.0.0.1:0 $FERRY_ARGS & pids+=($!); fpid=$!
  wait_port "$ferry_http"
  profile_start "$label" "$fpid"
  measure "$label (HTTP)" "http://127.0.0.1:$ferry_http/" "$fpid"
  profile_stop
  measure "$label (TLS)" "https://127.0.0.1:$ferry_https/" "$fpid"
  kill "$fpid"; wait "$fpid" 2>/dev/null || true
}

# The build named by BEFORE (one without --workers: FERRY_ARGS are not given to it).
run_before() {
  [ -x "$BEFORE" ] || { echo "needs BEFORE=<a ferry binary>" >&2; exit 1; }
  FERRY_ARGS="" run_ferry "$BEFORE" before
}

run_nginx() {
  taskset -c 0 nginx -c "$work/proxy.conf" & pids+=($!); npid=$!
  wait_port "$nginx_http"
  profile_start nginx "$npid"
  measure "nginx (HTTP)" "http://127.0.0.1:$nginx_http/" "$npid"
  profile_stop
  measure "nginx (TLS)" "https://127.0.0.1:$nginx_https/" "$npid"
  kill "$npid"; wait "$npid" 2>/dev/null || true
}

run_haproxy() {
  taskset -c 0 haproxy -f "$work/haproxy.cfg" & pids+=($!); hpid=$!
  wait_port "$haproxy_http"
  profile_start haproxy "$hpid"
  measure "haproxy (HTTP)" "http://127.0.0.1:$haproxy_http/" "$hpid"
  profile_stop
  measure "haproxy (TLS)" "https://127.0.0.1:$haproxy_https/" "$hpid"
  kill "$hpid"; wait "$hpid" 2>/dev/null || true
}

# A short run against the upstream first, so the first system measured does not pay for a cold
# start (subsets without `direct` measured their first system ~8% lower without it).
taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$upstream/" >/dev/null
for system in $SYSTEMS; do "run_$system"; done
