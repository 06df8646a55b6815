#!/usr/bin/env bash
# The local runtime at scale: a Deployment of N Pods of the echo app (default 500) run by
# `ferry up`, in either pod network (POD_NETWORK=loopback, the default, or netns), and a
# Service's cluster IP against a direct connection to one Pod.
#
#   1. ferry up starts on an empty manifest directory; the Deployment and its Service are
#      written in; time from that write until all N Pods are Ready (the readiness probe is
#      a tcpSocket probe every 10 s, Kubernetes' default period, first run at start), and
#      until all N have their container running (the start without the probe's period).
#   2. ferry's own CPU (user+system, from /proc) over IDLE seconds once everything is ready,
#      and its RSS; the Pods' total RSS for scale.
#   3. `ferry load --compare`, from the node: one Pod directly (baseline) against the
#      Service's cluster IP (target), 50 connections, DURATION seconds, alternating 1 s
#      slices; ferry on CPU 0 (pinned once its Pods run, so they do not inherit it), the load
#      generator on CPU 1, the Pods wherever the kernel puts them. In loopback mode the cluster
#      IP is ferry's L4 proxy (every byte copied through ferry); in netns mode it is DNAT in
#      the kernel (ferry's nftables table, its output hook for the node's own connections).
#      Twice: the Service of the N Pods (each of the 50 connections to a Pod picked among
#      them, against one Pod taking all 50), then, after one more Pod `one` with a Service of
#      its own was added (and before ferry's idle CPU is measured), that Service against that
#      Pod, the same process behind both, so that only the path differs.
#   4. ferry is stopped (SIGTERM; SIGKILL after SHUTDOWN_TIMEOUT seconds) and the time that
#      takes is shown; in netns mode the script then checks that no network namespace, veth,
#      bridge, /etc/netns directory or nftables table of this instance is left, and fails
#      naming what is.
#
# Each mode gets ranges of its own, so a developer's `ferry up` on the defaults is left alone:
# loopback 127.40.0.0/16 and 127.41.0.0/16, netns 10.240.0.0/16 and 10.241.0.0/16
# (POD_CIDR, SERVICE_CIDR to change them; in netns mode the script refuses ranges that a
# route of this machine overlaps, before ferry would).
#
# TRACE=1 (netns mode) runs ferry under `strace -f --seccomp-bpf -e trace=execve,exit_group`
# and prints, from the trace, what the per-Pod `ip` commands cost (each `ip -batch`, from its
# exec to its exit; each `ip netns exec`, from its exec to the exec of the container's program)
# and how many commands ferry ran. The tracing slows the forks down: take the start time from a
# run without it. (benches/local/netns_steps.py times the same commands one Pod after another,
# outside ferry.)
#
# Needs python3, curl, taskset and a release build (cargo build --release --bin ferry; FERRY=...
# to use another); netns mode needs root, ip and nft (TRACE=1: strace). Every phase is bounded
# (READY_TIMEOUT, IDLE, DURATION, SHUTDOWN_TIMEOUT seconds).
#
#   bash benches/local/run.sh                        # PODS=500 IDLE=10 DURATION=10
#   sudo POD_NETWORK=netns bash benches/local/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
POD_NETWORK=${POD_NETWORK:-loopback}
PODS=${PODS:-500}
IDLE=${IDLE:-10}
DURATION=${DURATION:-10}
READY_TIMEOUT=${READY_TIMEOUT:-300}
SHUTDOWN_TIMEOUT=${SHUTDOWN_TIMEOUT:-120}
TRACE=${TRACE:-0}
FERRY=${FERRY:-$PWD/target/release/ferry}
case "$POD_NETWORK" in
  loopback)
    POD_CIDR=${POD_CIDR:-127.40.0.0/16}
    SERVICE_CIDR=${SERVICE_CIDR:-127.41.0.0/16}
    needs=(python3 curl taskset)
    [ "$TRACE" = 0 ] || { echo "TRACE=1 is for POD_NETWORK=netns" >&2; exit 1; } ;;
  netns)
    POD_CIDR=${POD_CIDR:-10.240.0.0/16}
    SERVICE_CIDR=${SERVICE_CIDR:-10.241.0.0/16}
    needs=(python3 curl taskset ip nft)
    [ "$TRACE" = 0 ] || needs+=(strace) ;;
  *) echo "POD_NETWORK=$POD_NETWORK: expected loopback or netns" >&2; exit 1 ;;
esac
for tool in "${needs[@]}"; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[ -x "$FERRY" ] || { echo "needs $FERRY: cargo build --release --bin ferry" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true

if [ "$POD_NETWORK" = netns ]; then
  [ "$(id -u)" = 0 ] || { echo "POD_NETWORK=netns needs root (network namespaces and nftables)" >&2; exit 1; }
  # No route of the machine (any table) may overlap the two ranges.
  ip -4 -o route show table all | python3 -c '
import ipaddress, sys
ranges = {"POD_CIDR": ipaddress.ip_network(sys.argv[1]), "SERVICE_CIDR": ipaddress.ip_network(sys.argv[2])}
if ranges["POD_CIDR"].overlaps(ranges["SERVICE_CIDR"]):
    sys.exit(f"POD_CIDR {sys.argv[1]} and SERVICE_CIDR {sys.argv[2]} overlap")
types = {"unicast", "local", "broadcast", "multicast", "anycast", "blackhole", "unreachable", "prohibit", "throw", "nat"}
for line in sys.stdin:
    words = line.split()
    dst = words[1] if words and words[0] in types else (words[0] if words else "default")
    if dst == "default":
        continue
    for name, net in ranges.items():
        if ipaddress.ip_network(dst, strict=False).overlaps(net):
            sys.exit(f"{name} {net} overlaps the route `{line.strip()}`: choose another range")
' "$POD_CIDR" "$SERVICE_CIDR"
  # The names ferry derives from the pod range (orchestrator/src/network.rs, Names::of): the id
  # is FNV-1a (32 bits) of the range as written.
  id=$(python3 -c '
import sys
h = 0x811c9dc5
for b in sys.argv[1].encode():
    h = ((h ^ b) * 0x01000193) & 0xffffffff
print(f"{h:08x}")' "$(python3 -c 'import ipaddress, sys; print(ipaddress.ip_network(sys.argv[1]))' "$POD_CIDR")")
fi

# What is left of this instance's pod network: namespaces, links (bridge, veths), /etc/netns
# directories and nftables tables; one per line, nothing when all is gone.
leftovers() {
  ip netns list | awk -v p="ferry-$id-" 'index($1, p) == 1 {print "netns " $1}'
  ip -o link show | awk -F': ' -v b="fbr-$id" -v v="fv${id:0:5}" \
    '{sub(/@.*/, "", $2)} $2 == b || index($2, v) == 1 {print "link " $2}'
  ls /etc/netns 2>/dev/null | awk -v p="ferry-$id-" 'index($1, p) == 1 {print "/etc/netns/" $1}'
  nft list tables | awk -v t="ferry_$id" '$3 == t || $3 == t "_services" {print $0}'
}

work=$(mktemp -d)
ferry_pid=
# Stops ferry: SIGTERM, then SIGKILL after SHUTDOWN_TIMEOUT seconds; prints how long it took.
stop_ferry() {
  [ -n "$ferry_pid" ] || return 0
  local t0 t1 deadline
  t0=$(date +%s.%N)
  kill "$ferry_pid" 2>/dev/null || true
  deadline=$((SECONDS + SHUTDOWN_TIMEOUT))
  while kill -0 "$ferry_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  if kill -0 "$ferry_pid" 2>/dev/null; then
    echo "ferry still running ${SHUTDOWN_TIMEOUT}s after SIGTERM: SIGKILL" >&2
    kill -KILL "$ferry_pid" 2>/dev/null || true
  fi
  wait "$ferry_pid" 2>/dev/null || true
  ferry_pid=
  t1=$(date +%s.%N)
  shutdown_s=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
}
cleanup() {
  stop_ferry
  if [ "$POD_NETWORK" = netns ] && [ -n "$(leftovers)" ]; then
    echo "left behind by ferry (the next ferry up with --pod-cidr $POD_CIDR removes it):" >&2
    leftovers >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
admin=127.0.0.1:$(free_port)
mkdir "$work/manifests"

tracer=()
[ "$TRACE" = 0 ] || tracer=(strace -f --seccomp-bpf -qq -ttt -e trace=execve,exit_group -e signal=none -s 64 -o "$work/trace")
ports=()
for _ in 1 2 3 4; do ports+=("$(free_port)"); done
"${tracer[@]}" "$FERRY" up -f "$work/manifests" --pod-network "$POD_NETWORK" --admin "$admin" \
  --http "127.0.0.1:${ports[0]}" --https "127.0.0.1:${ports[1]}" --dns "127.0.0.1:${ports[2]}" \
  --api "127.0.0.1:${ports[3]}" --state-dir "$work/state" \
  --pod-cidr "$POD_CIDR" --service-cidr "$SERVICE_CIDR" --dns-upstream 127.0.0.1:9 \
  > "$work/ferry.log" 2>&1 &
ferry_pid=$!
if [ "$TRACE" != 0 ]; then
  # strace runs ferry as its child: measure and stop ferry itself.
  child=
  for _ in $(seq 1 100); do
    for c in $(ps --ppid "$ferry_pid" -o pid=); do
      [ "$(readlink "/proc/$c/exe")" = "$(readlink -f "$FERRY")" ] && child=$c
    done
    [ -n "$child" ] && break; sleep 0.1
  done
  [ -n "$child" ] || { echo "ferry did not start under strace:" >&2; cat "$work/ferry.log" >&2; exit 1; }
  tracer_pid=$ferry_pid
  ferry_pid=$child
fi
deadline=$((SECONDS + 30))
until curl -sf "http://$admin/ready" >/dev/null 2>&1; do
  if [ $SECONDS -ge $deadline ] || ! kill -0 "$ferry_pid" 2>/dev/null; then
    echo "ferry up not ready in 30s:" >&2; cat "$work/ferry.log" >&2; exit 1
  fi
  sleep 0.1
done

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

# How many Pods have all their containers running, and how many are Ready.
counts() {
  curl -sf "http://$admin/api/v1/pods" | python3 -c '
import json, sys
pods = json.load(sys.stdin)["items"]
running = sum(1 for p in pods if p.get("status", {}).get("containerStatuses")
              and all("running" in c.get("state", {}) for c in p["status"]["containerStatuses"]))
ready = sum(1 for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
            for c in p.get("status", {}).get("conditions", [])))
print(running, ready)'
}
elapsed() { python3 -c "print(f'{$(date +%s.%N) - $start:.2f}')"; }
running_s=
while :; do
  read -r running n < <(counts || echo 0 0)
  [ -z "$running_s" ] && [ "$running" -ge "$PODS" ] && running_s=$(elapsed)
  [ "$n" -ge "$PODS" ] && break
  if python3 -c "import sys; sys.exit(0 if $(date +%s.%N) - $start > $READY_TIMEOUT else 1)"; then
    echo "only $running of $PODS Pods running, $n ready after ${READY_TIMEOUT}s; ferry's log ends:" >&2
    tail -n 20 "$work/ferry.log" >&2; exit 1
  fi
  sleep 0.2
done
ready_s=$(elapsed)
running_s=${running_s:-$ready_s}

# Ready endpoints of Service NAME in the snapshot.
endpoints() {
  curl -sf "http://$admin/config" | python3 -c '
import json, sys
s = [x for x in json.load(sys.stdin)["services"] if x["name"] == sys.argv[1]]
print(sum(1 for e in s[0]["endpoints"] if e["ready"]) if s else 0)' "$1"
}
# NAME's first endpoint and its cluster IP.
addresses() {
  curl -sf "http://$admin/config" | python3 -c '
import json, sys
s = [x for x in json.load(sys.stdin)["services"] if x["name"] == sys.argv[1]][0]
print(s["endpoints"][0]["address"], s["cluster_ips"][0])' "$1"
}
# Wait (bounded) for the endpoints to reach the snapshot.
deadline=$((SECONDS + 30))
until [ "$(endpoints bench)" -ge "$PODS" ]; do
  [ $SECONDS -lt $deadline ] || { echo "the Service's endpoints not all ready in 30s" >&2; exit 1; }
  sleep 0.1
done
# One more Pod with a Service of its own, for phase 3's second comparison: the same process
# behind the Service and directly, so what differs is the path alone.
cat > "$work/manifests/.one.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: one, namespace: bench, labels: {app: one}}
spec:
  containers:
    - name: echo
      image: ferry/echo
      ports: [{name: http, containerPort: 8080}]
      readinessProbe: {tcpSocket: {port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: one, namespace: bench}
spec:
  selector: {app: one}
  ports: [{name: http, port: 80, targetPort: http}]
YAML
mv "$work/manifests/.one.yaml" "$work/manifests/one.yaml"
deadline=$((SECONDS + 60))
until [ "$(endpoints one)" -ge 1 ]; do
  [ $SECONDS -lt $deadline ] || { echo "the Pod bench/one not ready in 60s" >&2; exit 1; }
  sleep 0.1
done
taskset -a -cp 0 "$ferry_pid" >/dev/null
cpu_ticks() { awk '{print $14 + $15}' "/proc/$ferry_pid/stat"; }
hz=$(getconf CLK_TCK)
t0=$(cpu_ticks); sleep "$IDLE"; t1=$(cpu_ticks)
idle_cpu=$(python3 -c "print(f'{($t1 - $t0) / $hz / $IDLE * 100:.1f}')")
rss_mb=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$ferry_pid/status")
pods_rss_mb=$(ps --ppid "$ferry_pid" -o rss= | awk '{s += $1} END {printf "%.0f", s / 1024}')

read -r pod_ip cluster_ip < <(addresses bench)
taskset -c 1 "$FERRY" load "http://$cluster_ip:80/" --compare "http://$pod_ip:8080/" \
  --connections 50 --threads 1 --duration "${DURATION}s" --warmup 1s > "$work/compare.txt"
read -r one_ip one_cluster_ip < <(addresses one)
taskset -c 1 "$FERRY" load "http://$one_cluster_ip:80/" --compare "http://$one_ip:8080/" \
  --connections 50 --threads 1 --duration "${DURATION}s" --warmup 1s > "$work/compare-one.txt"

stop_ferry
if [ "$TRACE" != 0 ]; then
  wait "$tracer_pid" 2>/dev/null || true
fi

echo "pods: $PODS, pod network: $POD_NETWORK (--pod-cidr $POD_CIDR --service-cidr $SERVICE_CIDR)"
echo "manifest write to all Pods running (their containers started): ${running_s}s"
echo "manifest write to all Pods ready: ${ready_s}s"
echo "ferry idle with $((PODS + 1)) Pods: ${idle_cpu}% of one CPU over ${IDLE}s, RSS ${rss_mb} MB (the Pods: ${pods_rss_mb} MB in all)"
if [ "$POD_NETWORK" = netns ]; then
  path="the cluster IP in the kernel (DNAT by nftables)"
else
  path="the L4 proxy"
fi
echo
echo "== $path, Service bench of $PODS Pods (target: cluster IP $cluster_ip:80) against one of them directly (baseline: $pod_ip:8080), from the node:"
cat "$work/compare.txt"
echo
echo "== $path, Service one of one Pod (target: cluster IP $one_cluster_ip:80) against that Pod directly (baseline: $one_ip:8080), from the node:"
cat "$work/compare-one.txt"
echo
echo "SIGTERM to ferry exited: ${shutdown_s}s"

if [ "$TRACE" != 0 ]; then
  # Per pid: its execs and its exit, from strace's `-ttt` lines: `PID TIME execve("path", [...`
  # and `PID TIME exit_group(N) = ?`.
  python3 - "$work/trace" <<'PY'
import re, statistics, sys
execs, exits = {}, {}
for line in open(sys.argv[1]):
    m = re.match(r'(\d+) +([\d.]+) (execve|exit_group)\((.*)', line)
    if not m or ' = -1 ' in line:
        continue
    pid, t, call, rest = int(m[1]), float(m[2]), m[3], m[4]
    if call == 'execve':
        argv = re.search(r'\[(.*?)\]', rest)
        execs.setdefault(pid, []).append((t, argv[1] if argv else rest))
    else:
        exits[pid] = t
kinds = {}
def add(kind, ms):
    kinds.setdefault(kind, []).append(ms)
for pid, seq in execs.items():
    t0, argv = seq[0]
    if '"netns", "exec"' in argv and len(seq) > 1:
        add('ip netns exec (exec of ip to exec of the container)', (seq[1][0] - t0) * 1e3)
    elif '"-batch"' in argv and pid in exits:
        what = 'ip -n <pod> -batch (lo up, address, routes)' if '"-n"' in argv else \
               'ip -force -batch (teardown: link del, netns del)' if '"-force"' in argv else \
               'ip -batch (netns add, veth pair, bridge port, hairpin)'
        add(what, (exits[pid] - t0) * 1e3)
    elif argv.startswith('"nft"') or '/nft"' in argv.split(',')[0]:
        if pid in exits:
            add('nft (' + ('-f: Services table' if '"-f"' in argv else 'other') + ')', (exits[pid] - t0) * 1e3)
    elif pid in exits and not any('echo' in a or '"up"' in a for _, a in seq):
        add('other: ' + argv.split(',')[0], (exits[pid] - t0) * 1e3)
print("commands ferry ran, from exec to exit (strace -f, so slower than untraced):")
print(f"  {'command':<58} {'count':>6} {'sum s':>8} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}")
for kind, ms in sorted(kinds.items(), key=lambda kv: -sum(kv[1])):
    ms.sort()
    q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]
    print(f"  {kind:<58} {len(ms):>6} {sum(ms) / 1e3:>8.2f} {q(0.5):>8.1f} {q(0.9):>8.1f} {ms[-1]:>8.1f}")
PY
fi

if [ "$POD_NETWORK" = netns ]; then
  left=$(leftovers)
  if [ -n "$left" ]; then
    echo "left behind after ferry exited:" >&2; echo "$left" >&2; exit 1
  fi
  echo "after ferry exited: no network namespace, veth, bridge, /etc/netns directory or nftables table of ferry_$id is left"
fi
