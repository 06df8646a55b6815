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
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
python3 benches/dns/gen.py 0 "$work/0"
python3 benches/dns/gen.py "$n" "$work/$n"

free_port() { # free for UDP and TCP both (ferry serves both on one port)
  python3 -c 'import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass'
}

# Prints the server's VmRSS in KB after a dnsperf run.
rss_kb() { # binary size
  local port pid first
  port=$(free_port)
  first=$(head -1 "$work/$2/queries.txt" | cut -d' ' -f1)
  if [ "$1" = knot ]; then
    mkdir -p "$work/knot-$2"
    printf 'server:\n    rundir: "%s"\n    listen: 127.0.0.1@%s\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\nlog:\n  - target: stderr\n    any: error\ndatabase:\n    storage: "%s"\nzone:\n  - domain: cluster.local\n    file: "%s"\n    journal-content: none\n    zonefile-sync: -1\n' \
      "$work/knot-$2" "$port" "$work/knot-$2" "$work/$2/cluster.local.zone" > "$work/knot-$2.conf"
    taskset -c 0 knotd -c "$work/knot-$2.conf" & pids+=($!); pid=$!
  else
    RUST_LOG=error taskset -c 0 "$1" dns --snapshot "$work/$2/snapshot.json" \
      --listen "127.0.0.1:$port" --admin 127.0.0.1:0 --dns-upstream 127.0.0.1:9 & pids+=($!); pid=$!
  fi
  for _ in $(seq 1 300); do
    dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 "$first" A 2>/dev/null | grep -qE '^[0-9]' && break
    sleep 0.1
  done
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
