#!/usr/bin/env bash
# The mesh's cost, in one run: the same `ferry load` client and `ferry echo` server on loopback,
# (a) directly, and (b) through a client-side outbound sidecar and a server-side inbound sidecar
# speaking mTLS to each other (two hops), each at a constant 1,000 req/s (open model) and at
# saturation (closed model, fixed concurrency), HTTP/1.1 keep-alive. Reported: p50/p99 latency,
# the latency the mesh adds per hop (= (mesh - direct) / 2: two sidecars on the path), req/s at
# saturation, each sidecar's CPU-seconds per 1,000 requests (utime+stime from /proc/PID/stat)
# and its RSS idle (ready, certificate loaded, before any traffic; with its anonymous part) and
# its peak under load (VmHWM). Pinned as benches/gateway: the server and the sidecars on CPU 0,
# the load generator (and the control plane, idle during the runs) on CPU 1. Prints a Markdown
# table for benches/RESULTS.md.
#
# The sidecars take their destinations from a real `ferry control` (a Service whose endpoint is
# the server sidecar's inbound listener, a meshed Pod) and their certificates from PEM files made
# here with openssl (SPIFFE URI SANs, one CA). Nothing is intercepted (no root needed): the
# client dials the outbound listener, which sends to `--outbound-target` (the Service's cluster
# IP); the inbound side hands to `--app-port`. mTLS is strict on the server side.
#
# Needs (installs nothing): openssl, curl, python3, taskset, and a release build of both
# binaries: CARGO_INCREMENTAL=0 cargo build --release --locked --bins
# The sidecars run as `ferry-sidecar` (what `ferry up` injects) and again as `ferry sidecar`
# (the variant named "ferry"), so the two binaries' memory is compared in one run.
# Every run is bounded by DURATION seconds (plus 1 s of warm-up each).
#
#   bash benches/mesh/run.sh              # DURATION=10 RATE=1000 CONNECTIONS=50
#   VARIANTS="1-worker=--workers 1;8-workers=--workers 8" bash benches/mesh/run.sh
#       # the sidecars once per variant (LABEL=extra sidecar arguments; ';' between variants),
#       # as ferry-sidecar, except the variant "ferry" (`ferry sidecar`) and "before"
#   SIDECAR_CPUS=0-1 bash benches/mesh/run.sh   # the sidecars on both CPUs
#   flock /work/cargo.lock bash benches/mesh/run.sh   # on a shared machine: no builds meanwhile
#   BEFORE=/tmp/ferry.old VARIANTS="before=;after=" ...  # the variant named "before" runs BEFORE
#   PERF=/tmp/mesh bash benches/mesh/run.sh  # perf record -g of the outbound sidecar's 1k req/s
#       # run, to /tmp/mesh.<variant>: perf report -i /tmp/mesh.mesh --no-children | head -60
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
RATE=${RATE:-1000}
# The open model's connections (each carries RATE/RATE_CONNECTIONS req/s, one at a time).
RATE_CONNECTIONS=${RATE_CONNECTIONS:-10}
# Saturation: this many connections back to back.
CONNECTIONS=${CONNECTIONS:-50}
FERRY=${FERRY:-target/release/ferry}
SIDECAR=${SIDECAR:-target/release/ferry-sidecar}
BEFORE=${BEFORE:-}
VARIANTS=${VARIANTS:-ferry-sidecar=;ferry=}
SIDECAR_CPUS=${SIDECAR_CPUS:-0}
PERF=${PERF:-}
for tool in openssl curl python3 taskset; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install openssl curl python3 util-linux)" >&2; exit 1; }
done
for bin in "$FERRY" "$SIDECAR"; do
  [ -x "$bin" ] || { echo "needs $bin: CARGO_INCREMENTAL=0 cargo build --release --locked --bins" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on port $1" >&2; return 1; }
# Until URL answers 200 (at most 10 s).
wait_200() {
  for _ in $(seq 1 100); do
    [ "$(curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ] && return 0
    sleep 0.1
  done
  echo "no 200 from $1:" >&2; curl -sS --noproxy '*' --max-time 2 "$1" >&2 || true; return 1
}

# The workload PKI: one CA, a leaf per ServiceAccount with its SPIFFE ID as URI SAN.
pki="$work/pki"; mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-mesh-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout "$pki/ca.key" -out "$pki/bundle.crt" 2>/dev/null
for sa in web api; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$sa" \
    -keyout "$pki/$sa.key" -out "$pki/$sa.csr" 2>/dev/null
  printf 'subjectAltName=URI:spiffe://cluster.local/ns/shop/sa/%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' "$sa" > "$pki/$sa.ext"
  openssl x509 -req -in "$pki/$sa.csr" -CA "$pki/bundle.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 1 -extfile "$pki/$sa.ext" -out "$pki/$sa.crt" 2>/dev/null
done

app=$(free_port); inbound=$(free_port); outbound=$(free_port); push=$(free_port)
in_admin=$(free_port); out_admin=$(free_port); in_out=$(free_port); out_in=$(free_port)

# The control plane: Service shop/api at 10.96.0.50:8080 whose one endpoint is the meshed Pod
# api-0 at the server sidecar's inbound listener.
mkdir -p "$work/manifests" "$work/state"
cat > "$work/manifests/shop.yaml" <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  clusterIP: 10.96.0.50
  ports: [{name: http, port: 8080, targetPort: $inbound}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-0
  namespace: shop
  labels: {kubernetes.io/service-name: api}
addressType: IPv4
ports: [{name: http, port: $inbound}]
endpoints:
- addresses: [127.0.0.1]
  conditions: {ready: true}
  targetRef: {kind: Pod, namespace: shop, name: api-0}
---
apiVersion: v1
kind: Pod
metadata: {name: api-0, namespace: shop, labels: {app: api}}
spec:
  serviceAccountName: api
  initContainers: [{name: ferry-sidecar, image: ferry, restartPolicy: Always}]
  containers: [{name: app, image: app}]
YAML
RUST_LOG=error taskset -c 1 "$FERRY" control -f "$work/manifests" --listen "127.0.0.1:$push" \
  --state-dir "$work/state" --admin 127.0.0.1:0 & pids+=($!)
wait_port "$push"

RUST_LOG=error taskset -c 0 "$FERRY" echo --listen "127.0.0.1:$app" & pids+=($!); echo_pid=$!
wait_port "$app"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
mb() { awk -v kb="$1" 'BEGIN {printf "%.1f", kb / 1024}'; }
# The same binary's floor: `ferry echo`, up and idle (most of it is the binary's pages).
echo_idle="$(mb "$(status_kb "$echo_pid" VmRSS)") MB ($(mb "$(status_kb "$echo_pid" RssAnon)") MB anonymous)"
hz=$(getconf CLK_TCK)
# Where a process's resident memory is, from /proc/PID/smaps: its program's mappings (of it
# the pages copied on write: relocated .data.rel.ro, .data, .bss), the shared libraries' and
# the rest (heap, stacks, anonymous mappings).
where_rss() {
  awk -v exe="$(readlink "/proc/$1/exe")" '
    /^[0-9a-f]+-[0-9a-f]+ / { path = $6; next }
    $1 == "Rss:" { if (path == exe) bin += $2; else if (path ~ /^\//) lib += $2; else rest += $2 }
    $1 == "Anonymous:" && path == exe { copied += $2 }
    END { printf "%.1f MB its program (%.1f copied on write), %.1f MB libraries, %.1f MB the rest", bin/1024, copied/1024, lib/1024, rest/1024 }
  ' "/proc/$1/smaps"
}
where=()
records="$work/records.jsonl"

# One `ferry load` run: RUN LABEL URL [load args...]. Charges the CPU of the pids in $charged
# (outbound first, then inbound) and records their RSS after the run.
charged=()
measure() {
  local run=$1 label=$2 url=$3; shift 3
  local before=() after=() p
  for p in "${charged[@]}"; do before+=("$(cpu_ticks "$p")"); done
  taskset -c 1 "$FERRY" load -t1 --warmup 1s -d "${DURATION}s" --json "$work/$label.$run.json" "$@" "$url" >/dev/null
  for p in "${charged[@]}"; do after+=("$(cpu_ticks "$p")"); done
  python3 - "$run" "$label" "$work/$label.$run.json" "$hz" "${before[*]}" "${after[*]}" \
    "$(for p in "${charged[@]}"; do printf '%s:%s:%s ' "$(status_kb "$p" VmRSS)" "$(status_kb "$p" VmHWM)" "${idle[$p]}"; done)" \
    >> "$records" <<'PY'
import json, sys
run, label, path, hz, before, after, mem = sys.argv[1:8]
report = json.load(open(path))
before, after = [int(x) for x in before.split()], [int(x) for x in after.split()]
cpu = [(a - b) / int(hz) for a, b in zip(after, before)]
mem = [dict(zip(("rss_kb", "hwm_kb", "idle_kb", "idle_anon_kb"), map(int, m.split(":")))) for m in mem.split()]
print(json.dumps({"run": run, "label": label, "requests": report["requests"],
  "rps": report["requests_per_second"], "p50": report["latency_ms"]["p50"],
  "p99": report["latency_ms"]["p99"], "statuses": report["status_codes"],
  "errors": sum(report["errors"].values()), "shortfall": report.get("rate_shortfall_percent"),
  "cpu_s": cpu, "mem": mem}))
PY
}

# A short run first, so the first measured run does not pay for a cold start.
taskset -c 1 "$FERRY" load -t1 -c "$CONNECTIONS" -d 2s "http://127.0.0.1:$app/" >/dev/null
declare -A idle=()
measure rate direct "http://127.0.0.1:$app/" -c "$RATE_CONNECTIONS" --rate "$RATE"
measure saturation direct "http://127.0.0.1:$app/" -c "$CONNECTIONS"

# The two sidecars with the extra ARGS, measured at both loads, then stopped: LABEL ARGS.
run_mesh() {
  local label=$1 args=$2 bin=("$SIDECAR")
  [ "$label" = ferry ] && bin=("$FERRY" sidecar)
  [ "$label" = before ] && { [ -x "$BEFORE" ] || { echo "needs BEFORE=<a ferry binary>" >&2; exit 1; }; bin=("$BEFORE" sidecar); }
  local common=(--control "https://127.0.0.1:$push" --control-ca "$work/state/ca.crt"
    --join-token-file "$work/state/join-token" --namespace shop --mark off --trust-bundle "$pki/bundle.crt")
  # shellcheck disable=SC2086
  RUST_LOG=error taskset -c "$SIDECAR_CPUS" "${bin[@]}" "${common[@]}" --pod api-0 \
    --certificate "$pki/api.crt" --key "$pki/api.key" --mtls-mode strict \
    --inbound "127.0.0.1:$inbound" --outbound "127.0.0.1:$in_out" --admin "127.0.0.1:$in_admin" \
    --app-port "$app" $args & pids+=($!); local server=$!
  # shellcheck disable=SC2086
  RUST_LOG=error taskset -c "$SIDECAR_CPUS" "${bin[@]}" "${common[@]}" --pod web-0 \
    --certificate "$pki/web.crt" --key "$pki/web.key" \
    --inbound "127.0.0.1:$out_in" --outbound "127.0.0.1:$outbound" --admin "127.0.0.1:$out_admin" \
    --outbound-target 10.96.0.50:8080 $args & pids+=($!); local client=$!
  wait_200 "http://127.0.0.1:$in_admin/ready"
  wait_200 "http://127.0.0.1:$out_admin/ready"
  # Idle: up, certificate loaded, nothing served yet. VmRSS, and of it the process's own
  # (anonymous: heap, stacks) memory; the rest is the binary's pages, shared by every process
  # running it.
  local p
  for p in "$client" "$server"; do idle[$p]="$(status_kb "$p" VmRSS):$(status_kb "$p" RssAnon)"; done
  where+=("$label outbound idle: $(where_rss "$client")")
  wait_200 "http://127.0.0.1:$outbound/"
  charged=("$client" "$server")
  local perf_pid=""
  if [ -n "$PERF" ]; then
    perf record ${PERF_OPTS:--e cpu-clock -g} -o "$PERF.$label" -p "$client" 2>/dev/null & perf_pid=$!
    sleep 0.5
  fi
  measure rate "$label" "http://127.0.0.1:$outbound/" -c "$RATE_CONNECTIONS" --rate "$RATE"
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  measure saturation "$label" "http://127.0.0.1:$outbound/" -c "$CONNECTIONS"
  charged=()
  # The mesh path was mTLS: the server side counted its handshakes (strict mode refuses anything else).
  curl -s --noproxy '*' --max-time 2 "http://127.0.0.1:$in_admin/metrics" \
    | grep -q '^ferry_sidecar_tls_handshakes_total{direction="inbound",outcome="ok"} [1-9]' \
    || { echo "$label: no mTLS handshake counted by the inbound sidecar" >&2; exit 1; }
  kill "$client" "$server"; wait "$client" "$server" 2>/dev/null || true
}

IFS=';' read -ra variants <<< "$VARIANTS"
for variant in "${variants[@]}"; do run_mesh "${variant%%=*}" "${variant#*=}"; done

python3 "$(dirname "$0")/table.py" "$records" "$RATE" "$CONNECTIONS" "$DURATION"
echo
printf '%s.\n' "${where[@]}"
echo "The ferry binary idle as \`ferry echo\`: $echo_idle; binaries: $(stat -c '%n %s B' "$FERRY" "$SIDECAR" | paste -sd, - | sed 's/,/, /g')."
