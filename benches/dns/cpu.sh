#!/usr/bin/env bash
# Where each DNS server's time goes per query: its user and kernel CPU time (from
# /proc/PID/stat, before and after) over one dnsperf run at full speed, divided by the queries
# answered. Pinned as run.sh pins them: the server on CPU 0, dnsperf on CPU 1.
# PERF=/tmp/prefix also records each server with `perf record -g` to /tmp/prefix.<server>.
#
#   FERRY=target/release/ferry [BEFORE=/path/to/older/ferry] bash benches/dns/cpu.sh [SERVICES]
set -euo pipefail
cd "$(dirname "$0")/../.."
FERRY=${FERRY:-target/release/ferry}
SECS=${SECONDS_PER_RUN:-10}
n=${1:-10000}
for tool in dnsperf knotd python3 taskset dig; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install dnsperf knot)" >&2; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
python3 benches/dns/gen.py "$n" "$work"
first=$(head -1 "$work/queries.txt" | cut -d' ' -f1)
tck=$(getconf CLK_TCK)

free_port() { # free for UDP and TCP both (ferry serves both on one port)
  python3 -c 'import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass'
}
wait_answer() { # port
  for _ in $(seq 1 300); do
    dig +short +time=1 +tries=1 -p "$1" @127.0.0.1 "$first" A 2>/dev/null | grep -qE '^[0-9]' && return 0
    sleep 0.1
  done
  echo "server on $1 never answered $first" >&2; return 1
}
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }

# Prints "| server | qps | user µs/query | kernel µs/query |" for the server on $2, pid $3.
measure() { # name port pid
  local u0 s0 u1 s1 out queries qps perf_pid=""
  if [ -n "${PERF:-}" ]; then
    perf record -q -g -p "$3" -o "$PERF.$1" 2>/dev/null & perf_pid=$!
  fi
  read -r u0 s0 < <(cpu_ticks "$3")
  out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$2" -d "$work/queries.txt" -l "$SECS" -c 4 -q 500 2>&1)
  read -r u1 s1 < <(cpu_ticks "$3")
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  queries=$(awk '/Queries completed/ {print $3}' <<<"$out")
  qps=$(awk '/Queries per second/ {printf "%.0f", $4}' <<<"$out")
  python3 -c "q=$queries; t=$tck
print(f'| $1 | $qps | {($u1-$u0)/t/q*1e6:.2f} | {($s1-$s0)/t/q*1e6:.2f} |')"
}

echo "| server ($n Services) | qps | user µs/query | kernel µs/query |"
echo "|---|---|---|---|"
kport=$(free_port)
mkdir -p "$work/knot"
cat > "$work/knot.conf" <<CONF
server:
    rundir: "$work/knot"
    listen: 127.0.0.1@$kport
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: error
database:
    storage: "$work/knot"
zone:
  - domain: cluster.local
    file: "$work/cluster.local.zone"
    journal-content: none
    zonefile-sync: -1
CONF
taskset -c 0 knotd -c "$work/knot.conf" & pids+=($!); kpid=$!
wait_answer "$kport"
measure knot "$kport" "$kpid"
kill "$kpid"; wait "$kpid" 2>/dev/null || true

for pair in "ferry=$FERRY" ${BEFORE:+"before=$BEFORE"}; do
  name=${pair%%=*} bin=${pair#*=}
  port=$(free_port)
  RUST_LOG=error taskset -c 0 "$bin" dns --snapshot "$work/snapshot.json" \
    --listen "127.0.0.1:$port" --admin 127.0.0.1:0 --dns-upstream 127.0.0.1:9 & pids+=($!); pid=$!
  wait_answer "$port"
  measure "$name" "$port" "$pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
