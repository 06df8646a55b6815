#!/usr/bin/env bash
# The ingress gateway against nginx and haproxy as reverse proxies, side by side in one run,
# pinned the same way: the upstream (nginx serving a small static response) and the proxy
# under test on CPU 0, wrk on CPU 1, 50 connections, loopback only. For each of: direct to the
# upstream (the limit), ferry, nginx, haproxy, over plain HTTP/1.1 keep-alive and over TLS:
# requests per second, p50/p99 latency, the proxy's CPU-seconds per 1,000 requests and its RSS.
# Then, for each proxy, two more tables (issue 18):
# - a TLS handshake per request: HANDSHAKERS parallel `openssl s_time` clients, each opening a
#   connection per request (HTTP/1.0 GET / with Host), full handshakes (-new) and resumed ones
#   (-reuse: the session of the client's first connection, a ticket from every proxy here), for
#   each TLS version in TLS_VERSIONS: handshakes per second, the proxy's CPU per handshake, and
#   the bytes read per connection (the same answer from each proxy: status line and headers);
# - HTTP/2 over TLS, H2_CONNECTIONS connections with H2_STREAMS streams in flight on each
#   (h2load -c 10 -m 10): requests per second, mean and max latency, the proxy's CPU.
#
# Needs (installs nothing): nginx, haproxy, wrk, h2load (nghttp2-client), openssl, python3,
# taskset, and a release build (cargo build --release --bin ferry). Every run is bounded by
# DURATION seconds.
#
#   bash benches/gateway/run.sh            # DURATION=10 CONNECTIONS=50
#   SYSTEMS="ferry nginx" bash benches/gateway/run.sh     # a subset, in this order
#   PERF=/tmp/gw SYSTEMS="ferry nginx" bash benches/gateway/run.sh  # perf record -g of each (HTTP)
#   BEFORE=/tmp/ferry.old SYSTEMS="before ferry nginx" bash benches/gateway/run.sh  # two builds
#   FERRY_ARGS="--workers 2" bash benches/gateway/run.sh  # more arguments for ferry gateway
#   KEEPALIVE_ONLY=1 bash benches/gateway/run.sh  # the keep-alive table only (no handshakes, h2)
#   SYSCALLS=1 SYSTEMS="ferry nginx" bash benches/gateway/run.sh  # + system calls per request
#   INSTRUCTIONS=1 SYSTEMS="ferry nginx" bash benches/gateway/run.sh  # user-space instructions
#     per request under callgrind, in place of the timed table: the same count whatever else
#     the machine does, so a small change shows where the timed runs' noise hides it
#   BEFORE=/tmp/ferry.old BEFORE_ARGS="--workers 1" ...  # arguments for the BEFORE build
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
SYSTEMS=${SYSTEMS:-direct ferry nginx haproxy}
PERF=${PERF:-}
FERRY=${FERRY:-target/release/ferry}
BEFORE=${BEFORE:-}
FERRY_ARGS=${FERRY_ARGS:---workers 1}
HANDSHAKERS=${HANDSHAKERS:-4}
TLS_VERSIONS=${TLS_VERSIONS:-tls1_3 tls1_2}
H2_CONNECTIONS=${H2_CONNECTIONS:-10}
H2_STREAMS=${H2_STREAMS:-10}
KEEPALIVE_ONLY=${KEEPALIVE_ONLY:-0}
SYSCALLS=${SYSCALLS:-0}
INSTRUCTIONS=${INSTRUCTIONS:-0}
BEFORE_ARGS=${BEFORE_ARGS:-}
# Under INSTRUCTIONS=1 each proxy runs under callgrind (about 50 times slower: fewer clients).
wrap=()
if [ "$INSTRUCTIONS" = 1 ]; then
  command -v callgrind_control >/dev/null || { echo "INSTRUCTIONS=1 needs valgrind" >&2; exit 1; }
  KEEPALIVE_ONLY=1
  CONNECTIONS=${INSTRUCTIONS_CONNECTIONS:-10}
  WAIT_TRIES=600 # valgrind reads the debug info first
fi
for tool in nginx haproxy wrk h2load openssl python3 taskset; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install nginx haproxy wrk nghttp2-client openssl)" >&2; exit 1; }
done
[ -x "$FERRY" ] || { echo "needs $FERRY: cargo build --release --bin ferry" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 "${WAIT_TRIES:-100}"); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on port $1" >&2; return 1; }

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
# The peers set the headers ferry sets (ingress-nginx's set): the same work for each. TLS as
# nginx's defaults have it (session tickets on, a key per start; no session cache), h2 by ALPN,
# and TLS 1.3 as ingress-nginx enables it: nginx 1.22's default ssl_protocols stop at TLS 1.2,
# so without it its TLS rows measured TLS 1.2 against ferry's TLS 1.3.
nginx_conf proxy "upstream up { server 127.0.0.1:$upstream; keepalive 64; }
  map \$http_x_request_id \$req_id { default \$http_x_request_id; \"\" \$request_id; }
  server { listen 127.0.0.1:$nginx_http; listen 127.0.0.1:$nginx_https ssl http2;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
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
cpu_split() { awk '{print $14 " " $15}' "/proc/$1/stat"; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

# One wrk run against URL, charging CPU to PID (none for direct): prints a table row, with the
# proxy's CPU split into user and kernel time per request (utime and stime of /proc/PID/stat).
measure() { # LABEL URL PID
  if [ "$INSTRUCTIONS" = 1 ]; then instructions "$@"; return; fi
  local before="-1 0" after="-1 0" out
  [ -n "$3" ] && before=$(cpu_split "$3")
  out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H 'Host: bench.local' "$2")
  [ -n "$3" ] && after=$(cpu_split "$3")
  python3 - "$1" "$out" "$before" "$after" "$hz" "${3:+$(rss_mb "$3")}" <<'PY'
import re, sys
label, out, hz, rss = sys.argv[1], sys.argv[2], int(sys.argv[5]), sys.argv[6]
(ub, sb), (ua, sa) = (map(int, sys.argv[i].split()) for i in (3, 4))
total = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
def pct(p):
    m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
user, system = (ua - ub) / hz, (sa - sb) / hz
cpu = user + system
charged = ub >= 0
per_k = f"{cpu / total * 1000:.3f}" if charged else "-"
per_cpu = f"{total / cpu:.0f}" if charged and cpu else "-"
user_us = f"{user / total * 1e6:.1f}" if charged else "-"
sys_us = f"{system / total * 1e6:.1f}" if charged else "-"
print(f"| {label} | {rps:.0f} | {pct(50):.3f} | {pct(99):.3f} | {per_k} | {per_cpu} | {user_us} | {sys_us} | {rss or '-'} | {errors.group(1) if errors else 0} |")
PY
}

# One wrk run against URL with PID's callgrind collecting (after a warm-up run): the proxy's
# user-space instructions per request.
instructions() { # LABEL URL PID
  [ -n "$3" ] || return 0
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s -H 'Host: bench.local' "$2" >/dev/null
  rm -f "$work"/cg.*.*
  callgrind_control -z "$3" >/dev/null 2>&1
  local out
  out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H 'Host: bench.local' "$2")
  callgrind_control -d "$3" >/dev/null 2>&1
  [ -z "${KEEP_CALLGRIND:-}" ] || cat "$work"/cg.*.* > "$KEEP_CALLGRIND.$(echo "$1" | tr -cd "a-zA-Z")"
  python3 - "$1" "$out" "$work" <<'PY'
import glob, re, sys
label, out, work = sys.argv[1:4]
total = int(re.search(r"(\d+) requests in", out).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
ir = 0
for path in glob.glob(f"{work}/cg.*.*"):
    for line in open(path):
        if line.startswith("summary:") or line.startswith("totals:"):
            ir += int(line.split()[1])
            break
print(f"| {label} | {total} | {ir / total:,.0f} | {errors.group(1) if errors else 0} |")
PY
}

if [ "$INSTRUCTIONS" = 1 ]; then
  wrap=(valgrind -q --tool=callgrind "--callgrind-out-file=$work/cg.%p")
  echo "| run | requests | user-space instructions per request | non-2xx |"
  echo "|---|---|---|---|"
else
  echo "| run | req/s | p50 ms | p99 ms | proxy CPU-s per 1k req | req per proxy CPU-s | user µs per req | kernel µs per req | proxy RSS MB | non-2xx |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
fi
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

# With SYSCALLS=1, after each proxy's HTTP run, another (3 s, under `strace -c -f`, so slower and
# not in the table): the proxy's system calls per request, the five most frequent named.
syscalls() { # LABEL URL PID
  [ "$SYSCALLS" = 1 ] || return 0
  command -v strace >/dev/null || { echo "SYSCALLS=1 needs strace" >&2; exit 1; }
  strace -c -f -q -o "$work/strace" -p "$3" & local spid=$!
  sleep 0.5
  local out
  out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d3s -H 'Host: bench.local' "$2")
  kill -INT "$spid"; wait "$spid" 2>/dev/null || true
  python3 - "$1" "$out" "$work/strace" >> "$work/syscalls.md" <<'PY'
import re, sys
label, out, path = sys.argv[1], sys.argv[2], sys.argv[3]
total = int(re.search(r"(\d+) requests in", out).group(1))
calls = {}
for line in open(path):
    f = line.split()
    # % time, seconds, usecs/call, calls, [errors], syscall
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls[f[-1]] = int(f[3])
top = ", ".join(f"{n} {c / total:.2f}" for n, c in sorted(calls.items(), key=lambda x: -x[1])[:5])
print(f"| {label} | {total} | {sum(calls.values()) / total:.2f} | {top} |")
PY
}

# s_time sends "GET <path> HTTP/1.0\r\n\r\n": a Host field rides in the path (ferry answers an
# HTTP/1.0 request without Host with 400, nginx proxies it), its version in a padding field.
S_TIME_PATH=$'/ HTTP/1.0\r\nHost: bench.local\r\nX-Pad:'
# A handshake per request against PORT (TLS), charging CPU to PID: a row of handshakes.md per
# TLS version and kind (new, resumed).
handshakes() { # LABEL PORT PID
  local version kind before after dir clients i p
  for version in $TLS_VERSIONS; do
    for kind in new reuse; do
      dir="$work/s_time"; rm -rf "$dir"; mkdir -p "$dir"
      before=$(cpu_ticks "$3"); clients=()
      for i in $(seq 1 "$HANDSHAKERS"); do
        taskset -c 1 openssl s_time -connect "127.0.0.1:$2" "-$version" "-$kind" -time "$DURATION" \
          -www "$S_TIME_PATH" > "$dir/$i" 2>&1 & clients+=($!)
      done
      for p in "${clients[@]}"; do wait "$p" || true; done
      after=$(cpu_ticks "$3")
      python3 - "$1" "$version" "$kind" "$dir" "$before" "$after" "$hz" "$DURATION" >> "$work/handshakes.md" <<'PY'
import glob, re, sys
label, version, kind, d, before, after, hz, duration = sys.argv[1:9]
total, reused, failed, size = 0, 0, 0, "-"
for path in glob.glob(f"{d}/*"):
    out = open(path).read()
    m = re.findall(r"(\d+) connections in [\d.]+ real seconds", out)
    if not m:
        failed += 1
        continue
    total += int(m[-1])
    b = re.findall(r"real seconds, (\d+) bytes read per connection", out)
    size = b[-1] if b else size
    # With -reuse, a line of marks per connection: '*' new, 'r' reused.
    if kind == "reuse":
        marks = out.split("session id reuse.", 1)[-1]
        reused += sum(l.count("r") for l in re.findall(r"^[*r]+$", marks, re.M))
cpu = (int(after) - int(before)) / int(hz)
per = f"{cpu / total * 1e3:.3f}" if total else "-"
per_cpu = f"{total / cpu:.0f}" if total and cpu else "-"
name = {"new": "full", "reuse": "resumed"}[kind]
share = f" ({reused / total:.0%} reused)" if kind == "reuse" and total else ""
print(f"| {label} | {version.replace('tls', 'TLS ').replace('_', '.')} {name}{share} | {total / float(duration):.0f} | {per} | {per_cpu} | {size} | {failed} |")
PY
    done
  done
}

# HTTP/2 over TLS against PORT with h2load, charging CPU to PID: a row of h2.md.
h2() { # LABEL PORT PID
  local before after out
  before=$(cpu_ticks "$3")
  out=$(taskset -c 1 h2load -c "$H2_CONNECTIONS" -m "$H2_STREAMS" -D "$DURATION" "https://127.0.0.1:$2/" 2>&1)
  after=$(cpu_ticks "$3")
  python3 - "$1" "$out" "$before" "$after" "$hz" "$(rss_mb "$3")" >> "$work/h2.md" <<'PY'
import re, sys
label, out, before, after, hz, rss = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
if not m:
    sys.exit(f"h2load against {label}: {out}")
done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
codes = re.search(r"status codes: (\d+) 2xx", out)
proto = re.search(r"Application protocol: (\S+)", out)
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) / 1000 if unit == "us" else float(n) * 1000 if unit == "s" else float(n)
t = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
total = int(done.group(1))
cpu = (after - before) / hz
per_k = f"{cpu / total * 1000:.3f}" if total else "-"
per_cpu = f"{total / cpu:.0f}" if total and cpu else "-"
print(f"| {label} | {proto.group(1) if proto else '?'} | {float(m.group(1)):.0f} | {ms(t.group(3)):.3f} | {ms(t.group(2)):.3f} | {per_k} | {per_cpu} | {rss} | {total - int(codes.group(1))} |")
PY
}

# The TLS runs after a proxy's wrk runs: a handshake per request, then h2.
tls_runs() { # LABEL PORT PID
  [ "$KEEPALIVE_ONLY" = 1 ] && return
  handshakes "$1" "$2" "$3"
  h2 "$1" "$2" "$3"
}

run_direct() { measure "direct (HTTP)" "http://127.0.0.1:$upstream/" ""; }

run_ferry() { # [BINARY LABEL]
  local bin=${1:-$FERRY} label=${2:-ferry}
  # shellcheck disable=SC2086
  RUST_LOG=error taskset -c 0 "${wrap[@]}" "$bin" gateway --snapshot "$work/snapshot.json" --http "127.0.0.1:$ferry_http" \
    --https "127.0.0.1:$ferry_https" --admin 127.0.0.1:0 $FERRY_ARGS & pids+=($!); fpid=$!
  wait_port "$ferry_http"
  profile_start "$label" "$fpid"
  measure "$label (HTTP)" "http://127.0.0.1:$ferry_http/" "$fpid"
  profile_stop
  syscalls "$label (HTTP)" "http://127.0.0.1:$ferry_http/" "$fpid"
  measure "$label (TLS)" "https://127.0.0.1:$ferry_https/" "$fpid"
  tls_runs "$label" "$ferry_https" "$fpid"
  kill "$fpid"; wait "$fpid" 2>/dev/null || true
}

# The build named by BEFORE, with BEFORE_ARGS (none by default: a build from before
# --workers takes no FERRY_ARGS).
run_before() {
  [ -x "$BEFORE" ] || { echo "needs BEFORE=<a ferry binary>" >&2; exit 1; }
  FERRY_ARGS="$BEFORE_ARGS" run_ferry "$BEFORE" before
}

run_nginx() {
  taskset -c 0 "${wrap[@]}" nginx -c "$work/proxy.conf" & pids+=($!); npid=$!
  wait_port "$nginx_http"
  profile_start nginx "$npid"
  measure "nginx (HTTP)" "http://127.0.0.1:$nginx_http/" "$npid"
  profile_stop
  syscalls "nginx (HTTP)" "http://127.0.0.1:$nginx_http/" "$npid"
  measure "nginx (TLS)" "https://127.0.0.1:$nginx_https/" "$npid"
  tls_runs nginx "$nginx_https" "$npid"
  kill "$npid"; wait "$npid" 2>/dev/null || true
}

run_haproxy() {
  taskset -c 0 "${wrap[@]}" haproxy -f "$work/haproxy.cfg" & pids+=($!); hpid=$!
  wait_port "$haproxy_http"
  profile_start haproxy "$hpid"
  measure "haproxy (HTTP)" "http://127.0.0.1:$haproxy_http/" "$hpid"
  profile_stop
  syscalls "haproxy (HTTP)" "http://127.0.0.1:$haproxy_http/" "$hpid"
  measure "haproxy (TLS)" "https://127.0.0.1:$haproxy_https/" "$hpid"
  tls_runs haproxy "$haproxy_https" "$hpid"
  kill "$hpid"; wait "$hpid" 2>/dev/null || true
}

# A short run against the upstream first, so the first system measured does not pay for a cold
# start (subsets without `direct` measured their first system ~8% lower without it).
taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$upstream/" >/dev/null
for system in $SYSTEMS; do "run_$system"; done
if [ -s "$work/syscalls.md" ]; then
  echo
  echo "System calls per request (HTTP/1.1 keep-alive, 3 s under strace -c -f):"
  echo
  echo "| proxy | requests | syscalls per request | most frequent, per request |"
  echo "|---|---|---|---|"
  cat "$work/syscalls.md"
fi
if [ -s "$work/handshakes.md" ]; then
  echo
  echo "A TLS handshake per request ($HANDSHAKERS openssl s_time clients, HTTP/1.0 GET / with Host):"
  echo
  echo "| proxy | handshake | handshakes/s | proxy CPU-ms per handshake | handshakes per proxy CPU-s | bytes read per connection | failed clients |"
  echo "|---|---|---|---|---|---|---|"
  cat "$work/handshakes.md"
  echo
  echo "HTTP/2 over TLS, h2load -c $H2_CONNECTIONS -m $H2_STREAMS:"
  echo
  echo "| proxy | protocol | req/s | mean ms | max ms | proxy CPU-s per 1k req | req per proxy CPU-s | proxy RSS MB | non-2xx |"
  echo "|---|---|---|---|---|---|---|---|---|"
  cat "$work/h2.md"
fi
