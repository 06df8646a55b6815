#!/usr/bin/env bash
# Cluster DNS against Knot DNS, side by side in one run, pinned the same way: each server on
# CPU 0 with one worker, the client on CPU 1, UDP on 127.0.0.1, names that exist. For each
# cluster size and server, two clients:
# - dnsperf: the most queries per second, then p50 and p99 at half of that rate;
# - dns/examples/udp_load.rs: the same (500 queries outstanding, 4 sockets), in batches, with
#   how busy the server's CPU was, then p50, p99, p99.9 and max at half of its rate, each
#   answer timed by the kernel's receive timestamp.
# dnsperf sends one query per system call and cannot keep ferry's server busy from one CPU, so
# its max compares the client's limit (the server's CPU busy below 100% shows it); and its two
# threads share that CPU, so its tail is mostly its receiving thread waiting for the CPU. Then
# each server's RSS once loaded.
#
# Needs: `cargo build --release --bin ferry` and `cargo build --release -p ferry-dns --example
# udp_load`, python3, and Debian's dnsperf and knot (apt-get install dnsperf knot). Bounded:
# SECONDS_PER_RUN (default 10) per measurement, four a server and size.
# BEFORE=/path/to/an/older/ferry measures that build too, in the same run, after the new one.
#
#   bash benches/dns/run.sh [SIZES...]        default sizes: 1000 10000 50000
set -euo pipefail
cd "$(dirname "$0")/../.."
FERRY=${FERRY:-target/release/ferry}
LOAD=${LOAD:-target/release/examples/udp_load}
SECS=${SECONDS_PER_RUN:-10}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000 10000 50000)
for tool in dnsperf knotd python3 taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install dnsperf knot)" >&2; exit 1; }
done
[ -x "$FERRY" ] || { echo "missing $FERRY: cargo build --release --bin ferry" >&2; exit 1; }
[ -x "$LOAD" ] || { echo "missing $LOAD: cargo build --release -p ferry-dns --example udp_load" >&2; exit 1; }

source benches/dns/common.sh

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One server on PORT (pid PID): prints its row's columns after the server's name.
measure() { # port pid queries
  local port=$1 pid=$2 queries=$3 dq da dl d50 d99 t0 t1 uq u50 u99 u999 umax ul ue ul2 ue2 busy
  # dnsperf at full speed, then at half that rate with every query's latency (to a file read
  # afterwards on CPU 1, so nothing but the server runs on CPU 0).
  read -r dq da dl < <(taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$queries" -l "$SECS" -c 4 -q 500 2>&1 |
    awk '/Queries per second/ {q=$4} /Average Latency/ {a=$4*1000} /Queries lost/ {l=$3} END {printf "%.0f %.3f %s\n", q, a, l}')
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$queries" -l "$SECS" -c 4 -q 500 -Q $((dq / 2)) -v \
    >"$work/verbose" 2>/dev/null
  read -r d50 d99 < <(taskset -c 1 python3 -c 'import sys
lat = sorted(float(l.split()[-1]) for l in open(sys.argv[1]) if l.startswith("> NOERROR"))
n = len(lat)
if not n: print("- -"); sys.exit()
p = lambda q: lat[min(n - 1, int(q * n))] * 1000
print(f"{p(.5):.3f} {p(.99):.3f}")' "$work/verbose")
  rm -f "$work/verbose"
  # udp_load at full speed (the server's CPU read around it), then at half that rate.
  t0=$(cpu_ticks "$pid")
  read -r uq _ _ _ _ ul ue < <(taskset -c 1 "$LOAD" "$port" "$queries" "$SECS")
  [ -n "$uq" ] || { echo "udp_load printed nothing for the server on $port" >&2; exit 1; }
  t1=$(cpu_ticks "$pid")
  busy=$(python3 -c "print(f'{($t1 - $t0) / $(getconf CLK_TCK) / $SECS:.0%}')")
  read -r _ u50 u99 u999 umax ul2 ue2 < <(taskset -c 1 "$LOAD" "$port" "$queries" "$SECS" $((uq / 2)))
  echo "$dq | $da | $dl | $d50 / $d99 | $uq | $busy | $ul / $ue | $u50 | $u99 | $u999 | $umax | $ul2 / $ue2 | $(rss_mb "$pid")"
}

echo "| services | server | dnsperf max qps | avg ms | lost | dnsperf p50 / p99 ms at half | udp_load max qps | server CPU busy | lost / errors | at half: p50 ms | p99 ms | p99.9 ms | max ms | lost / errors | RSS MB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for n in "${SIZES[@]}"; do
  dir="$work/$n"
  python3 benches/dns/gen.py "$n" "$dir"
  first=$(head -1 "$dir/queries.txt" | cut -d' ' -f1)

  # Knot: the same records as an authoritative zone, one UDP worker on CPU 0.
  kport=$(free_port)
  start_knot "$dir" "$kport"; kpid=$server_pid
  wait_answer "$kport" "$first"
  knot=$(measure "$kport" "$kpid" "$dir/queries.txt")
  kill "$kpid"; wait "$kpid" 2>/dev/null || true

  # ferry: the snapshot file, one worker on CPU 0 (one CPU allowed, so one UDP worker).
  ferry_row() { # binary
    local fport fpid
    fport=$(free_port)
    start_ferry "$1" "$dir" "$fport"; fpid=$server_pid
    wait_answer "$fport" "$first"
    measure "$fport" "$fpid" "$dir/queries.txt"
    kill "$fpid"; wait "$fpid" 2>/dev/null || true
  }
  ferry=$(ferry_row "$FERRY")
  [ -z "${BEFORE:-}" ] || before=$(ferry_row "$BEFORE")

  # The ratio of each client's max to Knot's.
  ratio() { python3 -c "import sys; a, b = sys.argv[1].split(' | '), sys.argv[2].split(' | ')
print(f'{float(a[0]) / float(b[0]):.2f}x | | | | {float(a[4]) / float(b[4]):.2f}x')" "$1" "$knot"; }
  echo "| $n | knot | $knot |"
  echo "| $n | ferry | $ferry |"
  echo "| $n | ferry/knot | $(ratio "$ferry") | | | | | | | | |"
  if [ -n "${BEFORE:-}" ]; then
    echo "| $n | before | $before |"
    echo "| $n | before/knot | $(ratio "$before") | | | | | | | | |"
  fi
done
