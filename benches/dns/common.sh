# What the DNS bench scripts share; sourced from the repository's top after `set -euo pipefail`.
# A work directory removed on exit with every server started (`pids`), a port free for UDP and
# TCP both, waiting for an address back, and a server started on CPU 0 over a cluster gen.py
# wrote to a directory: Knot as an authoritative zone with one worker of each kind, or
# `ferry dns` over the snapshot. Each start_* sets `server_pid`.

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { # free for UDP and TCP both (ferry serves both on one port)
  python3 -c 'import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass'
}

# Until the server on PORT answers NAME with an address (30 s at most). An address, not any
# output: dig prints its errors (";; communications error") on stdout.
wait_answer() { # port name
  for _ in $(seq 1 300); do
    dig +short +time=1 +tries=1 -p "$1" @127.0.0.1 "$2" A 2>/dev/null | grep -qE '^[0-9]' && return 0
    sleep 0.1
  done
  echo "server on $1 never answered $2" >&2; return 1
}

start_knot() { # dir port
  mkdir -p "$1/knot"
  cat > "$1/knot.conf" <<CONF
server:
    rundir: "$1/knot"
    listen: 127.0.0.1@$2
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: error
database:
    storage: "$1/knot"
zone:
  - domain: cluster.local
    file: "$1/cluster.local.zone"
    journal-content: none
    zonefile-sync: -1
CONF
  taskset -c 0 knotd -c "$1/knot.conf" & pids+=($!); server_pid=$!
}

start_ferry() { # binary dir port
  RUST_LOG=error taskset -c 0 "$1" dns --snapshot "$2/snapshot.json" \
    --listen "127.0.0.1:$3" --admin 127.0.0.1:0 --dns-upstream 127.0.0.1:9 & pids+=($!); server_pid=$!
}
