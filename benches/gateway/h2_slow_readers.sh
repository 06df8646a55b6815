#!/usr/bin/env bash
# HTTP/2 slow readers against the gateway: CONNS h2c connections each open as many streams as
# the gateway allows (at most STREAMS) for a 16 MiB answer, with the largest windows, and never
# read. Reports ferry's resident memory before, at its peak while they hold (VmHWM) and after
# they left (VmRSS), for each build given. Every phase is bounded in time (HOLD seconds).
#
# Needs python3 and a ferry binary (cargo build --bin ferry; --release for the figures).
#
#   bash benches/gateway/h2_slow_readers.sh                     # target/release/ferry
#   BUILDS="/tmp/ferry.old target/debug/ferry" bash benches/gateway/h2_slow_readers.sh
#   CONNS=5 STREAMS=256 HOLD=5 bash benches/gateway/h2_slow_readers.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILDS=${BUILDS:-target/release/ferry}
CONNS=${CONNS:-5}
STREAMS=${STREAMS:-256}
HOLD=${HOLD:-5}
command -v python3 >/dev/null || { echo "needs python3" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on port $1" >&2; return 1; }
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$2/status"; }

# The upstream: a threaded HTTP/1.1 file server with one 16 MiB file.
mkdir -p "$work/www" "$work/manifests"
head -c $((16 << 20)) /dev/zero > "$work/www/big"
upstream=$(free_port)
# (Its tracebacks for clients that went away are not ours to show.)
python3 - "$upstream" "$work/www" 2>/dev/null <<'PY' & pids+=($!)
import functools, http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])),
    functools.partial(H, directory=sys.argv[2])).serve_forever()
PY
wait_port "$upstream"

cat > "$work/manifests/bench.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: big, namespace: bench}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: big, namespace: bench, labels: {kubernetes.io/service-name: big}}
addressType: IPv4
endpoints: [{addresses: [127.0.0.1]}]
ports: [{name: http, port: $upstream}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: big, namespace: bench}
spec:
  rules:
  - host: bench.local
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: big, port: {number: 80}}}}
YAML

# The slow readers: open the streams, then hold without reading for HOLD seconds.
cat > "$work/slow.py" <<'PY'
import socket, struct, sys, time
port, conns, streams, hold = map(int, sys.argv[1:5])
def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload
def literal(name, value):
    return bytes([0, len(name)]) + name + bytes([len(value)]) + value
block = b"".join(literal(n, v) for n, v in [(b":method", b"GET"), (b":scheme", b"http"),
                                              (b":path", b"/big"), (b":authority", b"bench.local")])
socks, opened = [], 0
for _ in range(conns):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little either
    s.connect(("127.0.0.1", port))
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, struct.pack(">HI", 4, 2**31 - 1))
              + frame(8, 0, 0, struct.pack(">I", 2**31 - 1 - 65535)))
    head = s.recv(9, socket.MSG_WAITALL)
    payload = s.recv(int.from_bytes(head[:3], "big"), socket.MSG_WAITALL)
    limit = streams
    for i in range(0, len(payload), 6):
        ident, value = struct.unpack(">HI", payload[i:i + 6])
        if ident == 3:
            limit = min(limit, value)
    s.sendall(frame(4, 1, 0) + b"".join(frame(1, 5, 2 * i + 1, block) for i in range(limit)))
    socks.append(s)
    opened += limit
print(opened, flush=True)
time.sleep(hold)
PY

printf '%-28s %8s %14s %14s %14s\n' build streams "before(MiB)" "peak(MiB)" "after(MiB)"
for ferry in $BUILDS; do
  [ -x "$ferry" ] || { echo "needs $ferry (cargo build --bin ferry)" >&2; exit 1; }
  http=$(free_port); https=$(free_port); dns=$(free_port); admin=$(free_port)
  "$ferry" up -f "$work/manifests" --http "127.0.0.1:$http" --https "127.0.0.1:$https" \
    --dns "127.0.0.1:$dns" --admin "127.0.0.1:$admin" --dns-upstream 127.0.0.1:9 \
    --pod-cidr 127.78.0.0/24 --service-cidr 127.77.0.0/24 >"$work/ferry.log" 2>&1 &
  pid=$!; pids+=($pid)
  wait_port "$http"
  # Until the route is served (the first snapshot), at most 20 s.
  for _ in $(seq 1 200); do
    code=$(python3 -c "import http.client as h; c=h.HTTPConnection('127.0.0.1',$http,timeout=2); c.request('HEAD','/big',headers={'Host':'bench.local'}); print(c.getresponse().status)" 2>/dev/null || true)
    [ "$code" = 200 ] && break; sleep 0.1
  done
  before=$(kib VmRSS "$pid")
  opened=$(timeout $((HOLD + 30)) python3 "$work/slow.py" "$http" "$CONNS" "$STREAMS" "$HOLD")
  peak=$(kib VmHWM "$pid")
  sleep 2 # the connections' buffers are freed as they close
  after=$(kib VmRSS "$pid")
  awk -v b="$ferry" -v n="$opened" -v x="$before" -v p="$peak" -v a="$after" \
    'BEGIN { printf "%-28s %8s %14.1f %14.1f %14.1f\n", b, n, x / 1024, p / 1024, a / 1024 }'
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
