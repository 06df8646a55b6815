#!/usr/bin/env bash
# The local runtime at scale: a Deployment of N Pods of the echo app (default 500) run by
# `ferry up`, and its L4 Service proxy against a direct connection.
#
#   1. ferry up starts on an empty manifest directory; the Deployment and its Service are
#      written in; time from that write until all N Pods are Ready (the readiness probe is
#      a tcpSocket probe every 10 s, Kubernetes' default period, first run at start).
#   2. ferry's own CPU (user+system, from /proc) over IDLE seconds once everything is ready,
#      and its RSS; the Pods' total RSS for scale.
#   3. `ferry load --compare`: one Pod directly (baseline) against the Service's cluster IP
#      through the L4 proxy (target), 50 connections, DURATION seconds, alternating 1 s slices;
#      ferry on CPU 0 (pinned once its Pods run, so they do not inherit it), the load generator
#      on CPU 1, the Pods wherever the kernel puts them.
#
# Needs python3, taskset and a release build (cargo build --release --bin ferry). Loopback only;
# every phase is bounded (READY_TIMEOUT, IDLE, DURATION seconds).
#
#   bash benches/local/run.sh              # PODS=500 IDLE=10 DURATION=10
set -euo pipefail
cd "$(dirname "$0")/../.."
PODS=${PODS:-500}
IDLE=${IDLE:-10}
DURATION=${DURATION:-10}
READY_TIMEOUT=${READY_TIMEOUT:-300}
FERRY=${FERRY:-$PWD/target/release/ferry}
for tool in python3 taskset; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[ -x "$FERRY" ] || { echo "needs $FERRY: cargo build --release --bin ferry" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true

work=$(mktemp -d)
ferry_pid=
cleanup() { [ -n "$ferry_pid" ] && kill "$ferry_pid" 2>/dev/null && wait "$ferry_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
admin=127.0.0.1:$(free_port)
mkdir "$work/manifests"

# Ranges of their own, so a developer's `ferry up` on the defaults is left alone.
"$FERRY" up -f "$work/manifests" --admin "$admin" \
  --http 127.0.0.1:$(free_port) --https 127.0.0.1:$(free_port) --dns 127.0.0.1:$(free_port) \
  --api 127.0.0.1:$(free_port) --state-dir "$work/state" \
  --pod-cidr 127.40.0.0/16 --service-cidr 127.41.0.0/16 --dns-upstream 127.0.0.1:9 \
  > "$work/ferry.log" 2>&1 &
ferry_pid=$!
for _ in $(seq 1 100); do curl -sf "http://$admin/ready" >/dev/null 2>&1 && break; sleep 0.1; done

cat > "$work/manifests/.bench.yaml" <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: bench, namespace: bench}
spec:
  replicas: $PODS
  selector: {matchLabels: {app: bench}}
  template:
    metadata: {labels: {app: bench}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: echo
          image: ferry/echo
          ports: [{name: http, containerPort: 8080}]
          readinessProbe:
            tcpSocket: {port: http}
---
apiVersion: v1
kind: Service
metadata: {name: bench, namespace: bench}
spec:
  selector: {app: bench}
  ports: [{name: http, port: 80, targetPort: http}]
YAML
start=$(date +%s.%N)
mv "$work/manifests/.bench.yaml" "$work/manifests/bench.yaml"

ready_count() {
  curl -sf "http://$admin/api/v1/pods" | python3 -c '
import json, sys
pods = json.load(sys.stdin)["items"]
ready = sum(1 for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
            for c in p.get("status", {}).get("conditions", [])))
print(ready)'
}
while :; do
  n=$(ready_count || echo 0)
  [ "$n" -ge "$PODS" ] && break
  if python3 -c "import sys; sys.exit(0 if $(date +%s.%N) - $start > $READY_TIMEOUT else 1)"; then
    echo "only $n of $PODS Pods ready after ${READY_TIMEOUT}s" >&2; exit 1
  fi
  sleep 0.2
done
ready_s=$(python3 -c "print(f'{$(date +%s.%N) - $start:.2f}')")

# Wait for the endpoints to reach the snapshot, then measure ferry idle.
for _ in $(seq 1 100); do
  eps=$(curl -sf "http://$admin/config" | python3 -c '
import json, sys
s = [x for x in json.load(sys.stdin)["services"] if x["name"] == "bench"]
print(sum(1 for e in s[0]["endpoints"] if e["ready"]) if s else 0)')
  [ "$eps" -ge "$PODS" ] && break; sleep 0.1
done
taskset -a -cp 0 "$ferry_pid" >/dev/null
cpu_ticks() { awk '{print $14 + $15}' "/proc/$ferry_pid/stat"; }
hz=$(getconf CLK_TCK)
t0=$(cpu_ticks); sleep "$IDLE"; t1=$(cpu_ticks)
idle_cpu=$(python3 -c "print(f'{($t1 - $t0) / $hz / $IDLE * 100:.1f}')")
rss_mb=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$ferry_pid/status")
pods_rss_mb=$(ps --ppid "$ferry_pid" -o rss= | awk '{s += $1} END {printf "%.0f", s / 1024}')

read -r pod_ip cluster_ip < <(curl -sf "http://$admin/config" | python3 -c '
import json, sys
s = [x for x in json.load(sys.stdin)["services"] if x["name"] == "bench"][0]
print(s["endpoints"][0]["address"], s["cluster_ips"][0])')
taskset -c 1 "$FERRY" load "http://$cluster_ip:80/" --compare "http://$pod_ip:8080/" \
  --connections 50 --threads 1 --duration "${DURATION}s" --warmup 1s --json "$work/compare.json" \
  > "$work/compare.txt"

echo "pods: $PODS"
echo "manifest write to all Pods ready: ${ready_s}s"
echo "ferry idle: ${idle_cpu}% of one CPU over ${IDLE}s, RSS ${rss_mb} MB (the Pods: ${pods_rss_mb} MB in all)"
echo "L4 proxy (target: cluster IP $cluster_ip:80) against one Pod directly (baseline: $pod_ip:8080):"
cat "$work/compare.txt"
