#!/usr/bin/env bash
# What a Service costs in ferry's resident memory: `ferry dns` serving gen.py's cluster of 0 and
# of N Services, its VmRSS and RssAnon read after a dnsperf run at full speed (as run.sh reads
# VmRSS), REPS times each, alternating; prints each reading (VmRSS/RssAnon KB) and the medians
# per Service in bytes, (median at N - median at 0) / N, of both. VmRSS counts the pages of the
# binary it touched too, which vary by a few MB from run to run and build to build; RssAnon is
# the heap and other private memory, what the Services cost. Knot's the same way with KNOT=1.
#
#   FERRY=target/release/ferry [BEFORE=/path/to/older/ferry] REPS=5 bash benches/dns/rss.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
FERRY=${FERRY:-target/release/ferry}
SECS=${SECONDS_PER_RUN:-4}
REPS=${REPS:-5}
n=${1:-10000}
source benches/dns/common.sh
python3 benches/dns/gen.py 0 "$work/0"
python3 benches/dns/gen.py "$n" "$work/$n"

# Prints the server's VmRSS in KB after a dnsperf run.
rss_kb() { # binary size
  local port pid first
  port=$(free_port)
  first=$(head -1 "$work/$2/queries.txt" | cut -d' ' -f1)
  if [ "$1" = knot ]; then
    start_knot "$work/$2" "$port"
  else
    start_ferry "$1" "$work/$2" "$port"
  fi
  pid=$server_pid
  wait_answer "$port" "$first"
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/$2/queries.txt" -l "$SECS" -c 4 -q 500 >/dev/null 2>&1
  awk '/VmRSS/ {r=$2} /RssAnon/ {a=$2} END {print r "/" a}' "/proc/$pid/status"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

servers=("ferry=$FERRY")
[ -z "${BEFORE:-}" ] || servers+=("before=$BEFORE")
[ -z "${KNOT:-}" ] || servers+=("knot=knot")
echo "| server | KB at 0 (VmRSS/RssAnon) | KB at $n | VmRSS bytes per Service | RssAnon bytes per Service |"
echo "|---|---|---|---|---|"
declare -A at0 atn
for _ in $(seq 1 "$REPS"); do
  for pair in "${servers[@]}"; do
    name=${pair%%=*} bin=${pair#*=}
    at0[$name]+="$(rss_kb "$bin" 0) "
    atn[$name]+="$(rss_kb "$bin" "$n") "
  done
done
for pair in "${servers[@]}"; do
  name=${pair%%=*}
  python3 -c "import statistics as s
a='${at0[$name]}'.split(); b='${atn[$name]}'.split()
per=lambda i: (s.median(int(x.split('/')[i]) for x in b)-s.median(int(x.split('/')[i]) for x in a))*1024/$n
print(f'| $name | {\" \".join(a)} | {\" \".join(b)} | {per(0):.0f} | {per(1):.0f} |')"
done
