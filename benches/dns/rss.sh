#!/usr/bin/env bash
# What a Service costs in ferry's resident memory: `ferry dns` serving gen.py's cluster of 0 and
# of N Services, its VmRSS read after a dnsperf run at full speed (as run.sh reads it), REPS
# times each, alternating; prints each reading and the median per Service in bytes,
# (median RSS at N - median RSS at 0) / N. Knot's the same way with KNOT=1.
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
  awk '/VmRSS/ {print $2}' "/proc/$pid/status"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

servers=("ferry=$FERRY")
[ -z "${BEFORE:-}" ] || servers+=("before=$BEFORE")
[ -z "${KNOT:-}" ] || servers+=("knot=knot")
echo "| server | RSS KB at 0 | RSS KB at $n | bytes per Service (medians) |"
echo "|---|---|---|---|"
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
a=[int(x) for x in '${at0[$name]}'.split()]; b=[int(x) for x in '${atn[$name]}'.split()]
print(f'| $name | {\" \".join(map(str,a))} | {\" \".join(map(str,b))} | {(s.median(b)-s.median(a))*1024/$n:.0f} |')"
done
