#!/usr/bin/env bash
# The pod network of netns mode: a client Pod loads one echo Pod through its Service's cluster
# IP (DNAT in the kernel, ferry's nftables table) against the same Pod on its own IP, in one
# `ferry load --compare` run (alternating 1 s slices), from inside the client Pod (`ferry
# exec`); then how long `nft -f` takes to write the Services table for 10,000 endpoints
# (orchestrator/examples/nft_update.rs).
#
# Needs root (network namespaces, nftables), ip, nft, python3 and a release build (cargo
# build --release --bin ferry; FERRY=... to use another). Every phase is bounded (DURATION
# seconds of load, READY_TIMEOUT seconds to start).
#
#   sudo bash benches/pod_network/run.sh          # DURATION=10 CONNECTIONS=10
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-10}
READY_TIMEOUT=${READY_TIMEOUT:-60}
FERRY=${FERRY:-$PWD/target/release/ferry}
for tool in python3 ip nft; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces and nftables)" >&2; exit 1; }
[ -x "$FERRY" ] || { echo "needs $FERRY: cargo build --release --bin ferry" >&2; exit 1; }

work=$(mktemp -d)
ferry_pid=
cleanup() { [ -n "$ferry_pid" ] && kill "$ferry_pid" 2>/dev/null && wait "$ferry_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
admin=127.0.0.1:$(free_port)
mkdir "$work/manifests"
cat > "$work/manifests/bench.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: echo, namespace: bench, labels: {app: echo}}
spec:
  containers:
    - name: echo
      image: ferry/echo
      ports: [{name: http, containerPort: 8080}]
      readinessProbe: {tcpSocket: {port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: bench}
spec:
  clusterIP: 10.221.0.20
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: bench}
spec:
  containers: [{name: client, image: busybox, command: [sleep, "3600"]}]
YAML

# Ranges of their own, so a developer's `ferry up` on the defaults is left alone.
"$FERRY" up -f "$work/manifests" --pod-network netns --admin "$admin" \
  --http 127.0.0.1:$(free_port) --https 127.0.0.1:$(free_port) --dns 127.0.0.1:$(free_port) \
  --api none --pod-cidr 10.220.0.0/24 --service-cidr 10.221.0.0/24 --dns-upstream 127.0.0.1:9 \
  > "$work/ferry.log" 2>&1 &
ferry_pid=$!
deadline=$((SECONDS + READY_TIMEOUT))
until [ "$("$FERRY" get pods --admin "$admin" 2>/dev/null | grep -c '^bench .* 1/1 ')" = 2 ]; do
  [ $SECONDS -lt $deadline ] || { echo "Pods not ready in ${READY_TIMEOUT}s" >&2; cat "$work/ferry.log" >&2; exit 1; }
  sleep 0.2
done
pod_ip=$("$FERRY" get pods -o wide --admin "$admin" | awk '$1 == "bench" && $2 == "echo" {print $7}')
echo "echo Pod $pod_ip, its Service 10.221.0.20:80; $CONNECTIONS connections, ${DURATION}s, from the client Pod"
"$FERRY" exec -n bench client --admin "$admin" -- "$FERRY" load "http://10.221.0.20/" \
  --compare "http://$pod_ip:8080/" -c "$CONNECTIONS" -d "${DURATION}s" --warmup 1s
kill "$ferry_pid"; wait "$ferry_pid" 2>/dev/null || true; ferry_pid=

echo
echo "nft -f for the Services table:"
cargo run -q --release -p ferry-orchestrator --example nft_update
