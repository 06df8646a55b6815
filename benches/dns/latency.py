#!/usr/bin/env python3
"""A DNS server's latency at a fixed rate, timed by the kernel at the client's socket.

dnsperf times an answer when its receiving thread reads it. On the bench's one client CPU,
dnsperf's sending and receiving threads share that CPU and keep it busy even at half load, so
its percentiles above the median measure how long its receiving thread waits for the CPU, not
the server (p99 1-2 ms for Knot and ferry alike, where the median is 0.04 ms).

This client sends open-loop at a fixed rate from one socket (queries built once, ids in
sequence) and times each answer by SO_TIMESTAMPNS: when the kernel queued the answer on the
client's socket, which on loopback is when the server sent it. The send time is read just
before each sendto, so a client that falls behind only lengthens the figures. An answer whose
id matches no outstanding query, or one that never comes within the run plus one second,
counts as lost.

  latency.py PORT QUERIES RATE SECONDS    prints "qps p50 p99 p99.9 max lost" (ms)
"""

import select
import socket
import struct
import sys
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TYPES = {"A": 1, "AAAA": 28, "SRV": 33, "PTR": 12, "TXT": 16}


def query(name: str, qtype: str) -> bytes:
    """A query without its id: flags (RD), one question."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return struct.pack(">HHHHH", 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", TYPES[qtype], 1)


def main() -> None:
    port, path, rate, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    with open(path) as f:
        bodies = [query(*line.split()) for line in f if line.strip()]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:  # past net.core.rmem_max (root), so a client behind its schedule loses nothing
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 8 << 20)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)

    sent_at = [0] * 65536  # by id: CLOCK_REALTIME ns of the outstanding query, 0 when none
    latencies: list[int] = []
    lost = 0
    total = int(rate * seconds)
    interval = 1e9 / rate
    start = time.time_ns()
    sent = 0
    pack_id = struct.Struct(">H").pack
    unpack_ts = struct.Struct("qq").unpack
    recvmsg, send, now_ns = sock.recvmsg, sock.send, time.time_ns
    deadline = start + int((seconds + 1) * 1e9)
    while True:
        now = now_ns()
        # Every query due by now, in sequence; a client behind its schedule sends them at once.
        while sent < total and start + sent * interval <= now:
            qid = sent & 0xFFFF
            if sent_at[qid]:
                lost += 1  # its answer never came in 65536 queries' time
            t = now_ns()
            send(pack_id(qid) + bodies[sent % len(bodies)])
            sent_at[qid] = t
            sent += 1
        # Every answer queued by now.
        while True:
            try:
                data, anc, _, _ = recvmsg(512, 64)
            except BlockingIOError:
                break
            qid = (data[0] << 8) | data[1]
            t0 = sent_at[qid]
            if not t0 or not anc:
                lost += 1
                continue
            sec, nsec = unpack_ts(anc[0][2][:16])
            latencies.append(sec * 1_000_000_000 + nsec - t0)
            sent_at[qid] = 0
        if sent >= total and (len(latencies) + lost >= total or now >= deadline):
            break
        wait = (start + sent * interval - now_ns()) / 1e9 if sent < total else 0.01
        if wait > 0:
            select.select([sock], [], [], wait)
    lost += sum(1 for t in sent_at if t)
    latencies.sort()
    n = len(latencies)
    if not n:
        print(f"0 - - - - {lost}")
        return
    p = lambda q: latencies[min(n - 1, int(q * n))] / 1e6  # noqa: E731
    print(f"{n / seconds:.0f} {p(.5):.3f} {p(.99):.3f} {p(.999):.3f} {latencies[-1] / 1e6:.3f} {lost}")


if __name__ == "__main__":
    main()
