#!/usr/bin/env bash
# Cluster DNS against Knot DNS, side by side in one run, pinned the same way: each server on
# CPU 0 with one worker, dnsperf on CPU 1, UDP on 127.0.0.1, names that exist. For each cluster
# size: the most queries per second each server answers, then latency percentiles at half of
# that rate, by dnsperf and by benches/dns/latency.py (answers timed by the kernel, see there),
# and each server's RSS once loaded.
#
# Needs: a release build (cargo build --release), python3, and Debian's dnsperf and knot
# (apt-get install dnsperf knot). Bounded: SECONDS_PER_RUN (default 10) per measurement.
# BEFORE=/path/to/an/older/ferry measures that build too, in the same run, after the new one.
#
#   bash benches/dns/run.sh [SIZES...]        default sizes: 1000 10000 50000
set -euo pipefail
cd "$(dirname "$0")/../.."
FERRY=${FERRY:-target/release/ferry}
SECS=${SECONDS_PER_RUN:-10}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000 10000 50000)
for tool in dnsperf knotd python3 taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install dnsperf knot)" >&2; exit 1; }
done
[ -x "$FERRY" ] || { echo "missing $FERRY: cargo build --release" >&2; exit 1; }

source benches/dns/common.sh

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# dnsperf at full speed: prints "qps avg_ms lost".
max_qps() { # port queries
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$SECS" -c 4 -q 500 2>&1 |
    awk '/Queries per second/ {q=$4} /Average Latency/ {a=$4*1000} /Queries lost/ {l=$3} END {printf "%.0f %.3f %s\n", q, a, l}'
}

# At a fixed rate, two clients one after the other. dnsperf, every query's latency as its
# receiving thread read the answer: prints "p50 p99" (ms). Its threads keep its one CPU busy
# even at half load, so its tail is mostly theirs waiting for that CPU; latency.py times each
# answer by the kernel's receive timestamp instead: prints "qps p50 p99 p99.9 max lost".
# Both written to a file and read after, on CPU 1, to keep CPU 0 the server's alone.
at_rate() { # port queries rate
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$SECS" -c 4 -q 500 -Q "$3" -v \
    >"$work/verbose" 2>/dev/null
  taskset -c 1 python3 -c 'import sys
lat = sorted(float(l.split()[-1]) for l in open(sys.argv[1]) if l.startswith("> NOERROR"))
n = len(lat)
if not n: print("- -"); sys.exit()
p = lambda q: lat[min(n - 1, int(q * n))] * 1000
print(f"{p(.5):.3f} {p(.99):.3f}")' "$work/verbose"
  rm -f "$work/verbose"
  taskset -c 1 python3 benches/dns/latency.py "$1" "$2" "$3" "$SECS"
}

# At half of each server's own max: dnsperf's p50 and p99, then latency.py's qps, p50, p99,
# p99.9, max and lost, all ms.
echo "| services | server | max qps | avg ms at max | lost | dnsperf p50 / p99 at half | kernel-timed qps at half | p50 ms | p99 ms | p99.9 ms | max ms | lost | RSS MB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for n in "${SIZES[@]}"; do
  dir="$work/$n"
  python3 benches/dns/gen.py "$n" "$dir"
  first=$(head -1 "$dir/queries.txt" | cut -d' ' -f1)

  # Knot: the same records as an authoritative zone, one UDP worker on CPU 0.
  kport=$(free_port)
  start_knot "$dir" "$kport"; kpid=$server_pid
  wait_answer "$kport" "$first"
  read -r kq ka kl < <(max_qps "$kport" "$dir/queries.txt")
  { read -r kd50 kd99; read -r khq k50 k99 k999 kmax khl; } < <(at_rate "$kport" "$dir/queries.txt" $((kq / 2)))
  krss=$(rss_mb "$kpid")
  kill "$kpid"; wait "$kpid" 2>/dev/null || true

  # ferry: the snapshot file, one worker on CPU 0 (one CPU allowed, so one UDP worker).
  # Prints the row's columns after the server's name, as Knot's are printed below.
  ferry_row() { # binary
    local fport fpid fq fa fl fd50 fd99 fhq f50 f99 f999 fmax fhl frss
    fport=$(free_port)
    start_ferry "$1" "$dir" "$fport"; fpid=$server_pid
    wait_answer "$fport" "$first"
    read -r fq fa fl < <(max_qps "$fport" "$dir/queries.txt")
    { read -r fd50 fd99; read -r fhq f50 f99 f999 fmax fhl; } < <(at_rate "$fport" "$dir/queries.txt" $((fq / 2)))
    frss=$(rss_mb "$fpid")
    kill "$fpid"; wait "$fpid" 2>/dev/null || true
    echo "$fq | $fa | $fl | $fd50 / $fd99 | $fhq | $f50 | $f99 | $f999 | $fmax | $fhl | $frss"
  }
  ferry=$(ferry_row "$FERRY")
  fq=${ferry%% *}
  if [ -n "${BEFORE:-}" ]; then
    before=$(ferry_row "$BEFORE")
    bq=${before%% *}
  fi

  echo "| $n | knot | $kq | $ka | $kl | $kd50 / $kd99 | $khq | $k50 | $k99 | $k999 | $kmax | $khl | $krss |"
  echo "| $n | ferry | $ferry |"
  echo "| $n | ferry/knot | $(python3 -c "print(f'{$fq/$kq:.2f}x')") | | | | | | | | | | |"
  if [ -n "${BEFORE:-}" ]; then
    echo "| $n | before | $before |"
    echo "| $n | before/knot | $(python3 -c "print(f'{$bq/$kq:.2f}x')") | | | | | | | | | | |"
  fi
done
