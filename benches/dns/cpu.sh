#!/usr/bin/env bash
# Where each DNS server's time goes per query: its user and kernel CPU time (from
# /proc/PID/stat, before and after) over one dnsperf run at full speed, divided by the queries
# answered; the queries per CPU-second that makes, and how much of its CPU the server used. Pinned as run.sh pins them: the server on CPU 0, dnsperf on CPU 1.
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
source benches/dns/common.sh
python3 benches/dns/gen.py "$n" "$work"
first=$(head -1 "$work/queries.txt" | cut -d' ' -f1)
tck=$(getconf CLK_TCK)

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
cpu=($u1-$u0+$s1-$s0)/t
print(f'| $1 | $qps | {($u1-$u0)/t/q*1e6:.2f} | {($s1-$s0)/t/q*1e6:.2f} | {q/cpu:.0f} | {cpu/$SECS:.0%} |')"
}

# The last two columns: queries per CPU-second of the server's, and how busy the server's CPU
# was. Below 100%, dnsperf (one CPU of its own) set the pace, not the server: then its qps
# compare the client's limits, and queries per CPU-second the servers.
echo "| server ($n Services) | qps | user µs/query | kernel µs/query | queries per server CPU-s | server CPU busy |"
echo "|---|---|---|---|---|---|"
kport=$(free_port)
start_knot "$work" "$kport"; kpid=$server_pid
wait_answer "$kport" "$first"
measure knot "$kport" "$kpid"
kill "$kpid"; wait "$kpid" 2>/dev/null || true

for pair in "ferry=$FERRY" ${BEFORE:+"before=$BEFORE"}; do
  name=${pair%%=*} bin=${pair#*=}
  port=$(free_port)
  start_ferry "$bin" "$work" "$port"; pid=$server_pid
  wait_answer "$port" "$first"
  measure "$name" "$port" "$pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
