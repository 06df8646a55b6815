#!/usr/bin/env bash
# The local Kubernetes API server (orchestrator/src/apiserver/) at 10,000 Pods, in one run of
# `ferry up` (release build, loopback only, `--pod-network loopback`, ranges and a state dir
# of its own):
#
#   0. ferry's RSS (from /proc) with no objects but the built-in namespaces; then a manifest
#      of PODS Pods (default 10,000) bound to another node (`spec.nodeName: elsewhere`: the
#      local cluster passes them through without running them, so no processes) is written
#      into its watched directory: the time until the API lists them all, and the RSS then.
#   1. List: RUNS (10) times each `GET /api/v1/pods` as JSON and as a Table (curl, a new TLS
#      connection each), `limit=500` through every page (one keep-alive connection), and
#      `kubectl get pods -A` (pages of 500, kubectl's default) and with `--chunk-size=0`.
#   2. Watch fan-out: WATCHERS (100) watches of every Pod from the current resourceVersion
#      (one python asyncio process, one TLS connection each), then CHANGES (20) label patches
#      of one Pod, one at a time: from the write's answer to each watcher seeing its event.
#   3. `kubectl scale deployment/echo --replicas=SCALE_TO` (10, from 1; the echo app as Pods
#      on loopback addresses, a Service and an Ingress, applied with kubectl): from the
#      command's start to kubectl returning, to all Pods Ready in the API, and to the first
#      and the last new Pod answering through the gateway (4 pollers, each a request every
#      2 ms; answers carry the Pod's name). SCALE_ROUNDS (3) rounds, back to 1 between them.
#   4. RSS again after all of it, and the peak (VmHWM).
#
# Needs python3, curl, kubectl and `CARGO_INCREMENTAL=0 cargo build --release --bin ferry`.
# Every wait is bounded (STEP_TIMEOUT, 60 s; LOAD_TIMEOUT, 300 s, for the 10,000 Pods).
# PERF=1 also records ferry with `perf record --call-graph dwarf` during each of phases 1-3
# and prints the top of each profile.
#
#   bash benches/apiserver/run.sh           # PODS=10000 RUNS=10 WATCHERS=100 CHANGES=20
set -euo pipefail
cd "$(dirname "$0")/../.."
export PODS=${PODS:-10000}
export RUNS=${RUNS:-10} WATCHERS=${WATCHERS:-100} CHANGES=${CHANGES:-20}
export SCALE_TO=${SCALE_TO:-10} SCALE_ROUNDS=${SCALE_ROUNDS:-3} STEP_TIMEOUT=${STEP_TIMEOUT:-60}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-300}
FERRY=${FERRY:-$PWD/target/release/ferry}
for tool in python3 curl kubectl; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[ -x "$FERRY" ] || { echo "needs $FERRY: cargo build --release --bin ferry" >&2; exit 1; }
if [ -n "${PERF:-}" ] && ! command -v perf >/dev/null; then echo "PERF=1 needs perf" >&2; exit 1; fi
ulimit -n 65536 2>/dev/null || true

work=$(mktemp -d)
ferry_pid=
cleanup() {
  if [ -n "$ferry_pid" ]; then kill "$ferry_pid" 2>/dev/null && wait "$ferry_pid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
elapsed() { python3 -c "import sys; print(f'{$(date +%s.%N) - $1:.2f}')"; }
overdue() { python3 -c "import sys; sys.exit(0 if $(date +%s.%N) - $1 > $2 else 1)"; }
rss_mb() { awk -v k="$1:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$ferry_pid/status"; }

admin=127.0.0.1:$(free_port)
export API=127.0.0.1:$(free_port) HTTP=127.0.0.1:$(free_port) WORK=$work STATE=$work/state
export LIST_NS=list WATCH_POD=pod-00000
mkdir "$work/manifests"

# Ranges of their own, so a developer's `ferry up` (and benches/local) are left alone.
"$FERRY" up -f "$work/manifests" --admin "$admin" --pod-network loopback \
  --http "$HTTP" --https 127.0.0.1:$(free_port) --dns 127.0.0.1:$(free_port) \
  --api "$API" --state-dir "$STATE" \
  --pod-cidr 127.44.0.0/16 --service-cidr 127.45.0.0/16 --dns-upstream 127.0.0.1:9 \
  > "$work/ferry.log" 2>&1 &
ferry_pid=$!
start=$(date +%s.%N)
until curl -sf "http://$admin/ready" >/dev/null 2>&1 && [ -s "$STATE/admin.token" ]; do
  kill -0 "$ferry_pid" 2>/dev/null || { cat "$work/ferry.log" >&2; exit 1; }
  overdue "$start" "$STEP_TIMEOUT" && { echo "ferry not ready in ${STEP_TIMEOUT}s" >&2; exit 1; }
  sleep 0.1
done
api_get() {
  curl -sS --max-time "$STEP_TIMEOUT" --cacert "$STATE/apiserver-ca.crt" \
    -H "Authorization: Bearer $(cat "$STATE/admin.token")" "https://$API$1"
}
until api_get /api/v1/namespaces/default >/dev/null 2>&1; do
  overdue "$start" "$STEP_TIMEOUT" && { echo "the API does not answer in ${STEP_TIMEOUT}s" >&2; exit 1; }
  sleep 0.1
done
rss_empty=$(rss_mb VmRSS)

python3 - "$work/manifests/.pods.yaml" <<'PY'
import os, sys
n = int(os.environ["PODS"])
with open(sys.argv[1], "w") as f:
    f.write("apiVersion: v1\nkind: Namespace\nmetadata: {name: list}\n")
    for i in range(n):
        f.write(f"""---
apiVersion: v1
kind: Pod
metadata:
  name: pod-{i:05d}
  namespace: list
  labels: {{app: list, shard: s{i % 10}}}
spec:
  nodeName: elsewhere
  containers:
    - name: app
      image: registry.example/app:1.0
      ports: [{{name: http, containerPort: 8080}}]
status:
  phase: Running
  podIP: 10.200.{i // 250}.{i % 250 + 1}
  conditions: [{{type: Ready, status: "True"}}]
""")
PY
manifest_mb=$(du -m "$work/manifests/.pods.yaml" | cut -f1)
start=$(date +%s.%N)
mv "$work/manifests/.pods.yaml" "$work/manifests/pods.yaml"
count_pods() {
  api_get /api/v1/namespaces/list/pods | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["items"]))'
}
while :; do
  n=$(count_pods 2>/dev/null || echo 0)
  [ "$n" -ge "$PODS" ] && break
  kill -0 "$ferry_pid" 2>/dev/null || { tail -20 "$work/ferry.log" >&2; exit 1; }
  overdue "$start" "$LOAD_TIMEOUT" && { echo "only $n of $PODS Pods listed after ${LOAD_TIMEOUT}s" >&2; tail -20 "$work/ferry.log" >&2; exit 1; }
  sleep 0.2
done
load_s=$(elapsed "$start")
rss_loaded=$(rss_mb VmRSS)
children=$( { ps --ppid "$ferry_pid" -o pid= || true; } | wc -l)

echo "ferry up (release, --pod-network loopback); $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$PODS Pods bound to another node (${manifest_mb} MB of YAML in one file): written to listed by the API in ${load_s}s; processes ferry runs: $children"

# One phase of bench.py; with PERF=1 under `perf record` of ferry, and the top of the profile.
phase() {
  if [ -z "${PERF:-}" ]; then python3 benches/apiserver/bench.py "$1"; return; fi
  perf record -F 199 --call-graph dwarf,16384 -p "$ferry_pid" -o "$work/perf.$1" >/dev/null 2>&1 &
  local perf_pid=$!
  python3 benches/apiserver/bench.py "$1"
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  echo; echo "perf of ferry during $1 (self time by symbol, entries over 1.5 %):"
  perf report -i "$work/perf.$1" --no-children --percent-limit 1.5 --stdio --sort sym 2>/dev/null \
    | grep -E '^ +[0-9]' | head -25 || true
  echo "perf of ferry during $1 (time with callees, by symbol, ferry's and serde_json's functions over 10 %):"
  perf report -i "$work/perf.$1" --children --percent-limit 10 --stdio --sort sym -g none 2>/dev/null \
    | grep -E '^ +[0-9]' | grep -v '(inlined)' | grep -E '\] (ferry_|serde_json::)' | head -15 || true
}
phase list
phase watch
phase scale

echo
echo "4. ferry's RSS, MB"
echo "| no objects | $PODS Pods listed | after the benchmarks | peak (VmHWM) |"
echo "|---|---|---|---|"
echo "| $rss_empty | $rss_loaded | $(rss_mb VmRSS) | $(rss_mb VmHWM) |"
