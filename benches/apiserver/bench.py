#!/usr/bin/env python3
"""The measuring half of benches/apiserver/run.sh (which starts `ferry up`): the local
Kubernetes API server's list of 10,000 Pods, its watch fan-out to 100 watchers, and the time
from `kubectl scale` to the new Pods answering through the gateway.

Standard library only. Every wait has a deadline; every connection is to 127.0.0.1.
Run by run.sh; the arguments are the environment variables it sets (see main()).
"""

import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import time


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"bench.py: {name} is not set (run benches/apiserver/run.sh)")
    return value


API_HOST, API_PORT = env("API").rsplit(":", 1)
API_PORT = int(API_PORT)
STATE = env("STATE")
KUBECONFIG = os.path.join(STATE, "kubeconfig")
CA = os.path.join(STATE, "apiserver-ca.crt")
TOKEN = open(os.path.join(STATE, "admin.token")).read().strip()
HTTP_HOST, HTTP_PORT = env("HTTP").rsplit(":", 1)
HTTP_PORT = int(HTTP_PORT)
WORK = env("WORK")
RUNS = int(os.environ.get("RUNS", "10"))
WATCHERS = int(os.environ.get("WATCHERS", "100"))
CHANGES = int(os.environ.get("CHANGES", "20"))
SCALE_TO = int(os.environ.get("SCALE_TO", "10"))
SCALE_ROUNDS = int(os.environ.get("SCALE_ROUNDS", "3"))
TIMEOUT = float(os.environ.get("STEP_TIMEOUT", "60"))
KUBECTL_CACHE = os.path.join(WORK, "kube-cache")

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def ms(seconds):
    return f"{seconds * 1000:.1f}"


def quantile(values, q):
    """The nearest-rank quantile (q in 0..1) of values."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 1))
    return ordered[int(rank) - 1]


def tls():
    ctx = ssl.create_default_context(cafile=CA)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Conn:
    """One HTTP/1.1 keep-alive connection (TLS to the API, plain to the gateway)."""

    def __init__(self, reader, writer, host_header):
        self.reader, self.writer, self.host = reader, writer, host_header

    @classmethod
    async def api(cls):
        r, w = await asyncio.open_connection(API_HOST, API_PORT, ssl=tls(), limit=1 << 24)
        return cls(r, w, f"{API_HOST}:{API_PORT}")

    @classmethod
    async def gateway(cls, host):
        r, w = await asyncio.open_connection(HTTP_HOST, HTTP_PORT)
        return cls(r, w, host)

    async def send(self, method, path, body=None, ctype=None, accept="application/json"):
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", f"Accept: {accept}"]
        if self.host.startswith(API_HOST):
            head.append(f"Authorization: Bearer {TOKEN}")
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            head += [f"Content-Type: {ctype}", f"Content-Length: {len(data)}"]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await self.writer.drain()

    async def head(self):
        """The status and headers (lower-cased names) of the next answer."""
        status = int((await self.reader.readline()).split()[1])
        headers = {}
        while True:
            line = (await self.reader.readline()).decode().strip()
            if not line:
                return status, headers
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()

    async def chunks(self):
        """The chunks of a chunked body, as they arrive."""
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()
                return
            data = await self.reader.readexactly(size + 2)
            yield data[:-2]

    async def body(self, headers):
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return b"".join([c async for c in self.chunks()])
        return await self.reader.readexactly(int(headers.get("content-length", "0")))

    async def request(self, method, path, body=None, ctype=None, accept="application/json"):
        await self.send(method, path, body, ctype, accept)
        status, headers = await self.head()
        data = await self.body(headers)
        return status, data

    def close(self):
        self.writer.close()


async def get_json(conn, path):
    status, data = await conn.request("GET", path)
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {data[:300]!r}")
    return json.loads(data)


def curl(path, accept):
    """One GET with curl (a new TLS connection, as a script's would be): seconds to the
    first byte and in all, and bytes."""
    out = subprocess.run(
        ["curl", "-sS", "--max-time", str(TIMEOUT), "--cacert", CA,
         "-H", f"Authorization: Bearer {TOKEN}", "-H", f"Accept: {accept}",
         "-o", "/dev/null", "-w", "%{http_code} %{time_starttransfer} %{time_total} %{size_download}",
         f"https://{API_HOST}:{API_PORT}{path}"],
        capture_output=True, text=True, check=True, timeout=TIMEOUT + 5).stdout.split()
    if out[0] != "200":
        raise RuntimeError(f"curl GET {path}: {out[0]}")
    return float(out[1]), float(out[2]), int(out[3])


def kubectl(*args, timeout=None):
    return subprocess.run(
        ["kubectl", "--kubeconfig", KUBECONFIG, "--cache-dir", KUBECTL_CACHE, *args],
        capture_output=True, text=True, timeout=timeout or TIMEOUT)


def summary(name, samples, extra=""):
    return (f"| {name} | {len(samples)} | {ms(statistics.median(samples))} | "
            f"{ms(quantile(samples, 0.9))} | {ms(max(samples))} | {extra} |")


# --- 1. list of 10,000 Pods ---------------------------------------------------------------

async def bench_list(expected):
    rows = []
    conn = await Conn.api()
    items = (await get_json(conn, "/api/v1/pods"))["items"]
    if len(items) < expected:
        raise RuntimeError(f"the API lists {len(items)} Pods, not {expected}")
    n = len(items)

    for name, accept in [("GET /api/v1/pods (JSON, curl)", "application/json"),
                         ("GET /api/v1/pods as Table (curl)", TABLE)]:
        first, total, size = [], [], 0
        for _ in range(RUNS):
            f, t, size = curl("/api/v1/pods", accept)
            first.append(f)
            total.append(t)
        rows.append(summary(name, total, f"{size / 1e6:.1f} MB; first byte after "
                                         f"{ms(statistics.median(first))} ms (median)"))

    # limit=500 through every page, on one keep-alive connection.
    totals, pages = [], 0
    for _ in range(RUNS):
        start, token, pages, seen = time.monotonic(), "", 0, 0
        while True:
            path = "/api/v1/pods?limit=500" + (f"&continue={token}" if token else "")
            page = await get_json(conn, path)
            pages += 1
            seen += len(page["items"])
            token = page["metadata"].get("continue", "")
            if not token:
                break
        totals.append(time.monotonic() - start)
        if seen != n:
            raise RuntimeError(f"paging saw {seen} Pods, the list {n}")
    rows.append(summary("limit=500, every page (one connection)", totals,
                        f"{pages} pages; {ms(statistics.median(totals) / pages)} ms a page"))
    conn.close()

    kubectl("get", "namespaces")  # fills the discovery cache
    for name, args in [("kubectl get pods -A (Table, pages of 500)", []),
                       ("kubectl get pods -A --chunk-size=0 (one Table)", ["--chunk-size=0"])]:
        total = []
        for _ in range(RUNS):
            start = time.monotonic()
            run = kubectl("get", "pods", "-A", "--no-headers", *args)
            total.append(time.monotonic() - start)
            if run.returncode != 0:
                raise RuntimeError(f"kubectl get pods -A: {run.stderr}")
            lines = run.stdout.count("\n")
            if lines != n:
                raise RuntimeError(f"kubectl listed {lines} Pods, not {n}")
        rows.append(summary(name, total, "the process included"))
    start = time.monotonic()
    kubectl("version", "--client")
    rows.append(f"| kubectl version --client (the process alone) | 1 | "
                f"{ms(time.monotonic() - start)} | | | |")
    return n, rows


# --- 2. watch fan-out ---------------------------------------------------------------------

async def watcher(rv, ready, events):
    """A watch of every Pod from rv; puts (arrival time, name, resourceVersion) in events."""
    conn = await Conn.api()
    await conn.send("GET", f"/api/v1/pods?watch=1&resourceVersion={rv}&timeoutSeconds=600")
    status, headers = await conn.head()
    if status != 200:
        raise RuntimeError(f"watch: {status}")
    ready.release()
    buf = b""
    try:
        async for chunk in conn.chunks():
            now = time.monotonic()
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.strip():
                    obj = json.loads(line)["object"]["metadata"]
                    events.put_nowait((now, obj["name"], obj["resourceVersion"]))
    finally:
        conn.close()


async def bench_watch(namespace, pod):
    conn = await Conn.api()
    rv = (await get_json(conn, "/api/v1/pods?limit=1"))["metadata"]["resourceVersion"]
    ready = asyncio.Semaphore(0)
    queues = [asyncio.Queue() for _ in range(WATCHERS)]
    tasks = [asyncio.create_task(watcher(rv, ready, q)) for q in queues]
    for _ in range(WATCHERS):
        await asyncio.wait_for(ready.acquire(), TIMEOUT)
    from_answer, from_send, writes = [], [], []
    for i in range(CHANGES):
        sent = time.monotonic()
        status, data = await conn.request(
            "PATCH", f"/api/v1/namespaces/{namespace}/pods/{pod}",
            {"metadata": {"labels": {"bench-round": str(i)}}}, "application/merge-patch+json")
        answered = time.monotonic()
        if status != 200:
            raise RuntimeError(f"PATCH: {status} {data[:300]!r}")
        writes.append(answered - sent)
        want = json.loads(data)["metadata"]["resourceVersion"]
        for q in queues:
            while True:
                seen, name, version = await asyncio.wait_for(q.get(), TIMEOUT)
                if name == pod and version == want:
                    from_answer.append(seen - answered)
                    from_send.append(seen - sent)
                    break
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    conn.close()

    def row(name, v):
        return (f"| {name} | {len(v)} | {ms(quantile(v, 0.5))} | {ms(quantile(v, 0.99))} | "
                f"{ms(max(v))} |")
    return [row("the write (PATCH, merge patch of a label): request to answer", writes),
            row(f"write's answer to each of {WATCHERS} watchers seeing it", from_answer),
            row("write's request to each watcher seeing it", from_send)]


# --- 3. kubectl scale to serving through the gateway --------------------------------------

ECHO = """
apiVersion: v1
kind: Namespace
metadata: {name: echo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: echo}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: echo
          image: ferry/echo
          ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: echo, namespace: echo}
spec:
  rules:
    - host: echo.bench
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}
"""


async def poll_gateway(seen, errors, stop):
    """Requests to the gateway in a loop (a 2 ms pause between answers), recording the
    first time each Pod answers."""
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = await Conn.gateway("echo.bench")
            status, data = await conn.request("GET", "/")
            if status == 200:
                pod = json.loads(data).get("pod", "")
                seen.setdefault(pod, time.monotonic())
            else:
                errors.append(status)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            errors.append("connection")
            if conn:
                conn.close()
            conn = None
        await asyncio.sleep(0.002)
    if conn:
        conn.close()


async def echo_pods(conn):
    pods = (await get_json(conn, "/api/v1/namespaces/echo/pods"))["items"]
    return pods


def is_ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions", []))


async def until(what, check):
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {TIMEOUT}s: {what}")
        await asyncio.sleep(0.02)


async def bench_scale():
    path = os.path.join(WORK, "echo.yaml")
    with open(path, "w") as f:
        f.write(ECHO)
    run = kubectl("apply", "-f", path)
    if run.returncode != 0:
        raise RuntimeError(f"kubectl apply: {run.stderr}")
    conn = await Conn.api()

    async def settled():
        pods = await echo_pods(conn)
        return len(pods) == 1 and is_ready(pods[0]) and pods[0]["metadata"]["name"]

    rows = []
    for _ in range(SCALE_ROUNDS):
        survivor = await until("one echo Pod, Ready", settled)
        seen, errors, stop = {}, [], asyncio.Event()
        pollers = [asyncio.create_task(poll_gateway(seen, errors, stop)) for _ in range(4)]
        await until("the gateway answering from the echo Pod",
                    lambda: asyncio.sleep(0, survivor in seen))
        errors.clear()
        seen.clear()
        start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            "kubectl", "--kubeconfig", KUBECONFIG, "--cache-dir", KUBECTL_CACHE,
            "scale", "deployment/echo", "-n", "echo", f"--replicas={SCALE_TO}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        returned = time.monotonic()
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl scale: {err.decode()}")
        ready_at = None

        async def all_ready():
            nonlocal ready_at
            if ready_at is None:
                pods = await echo_pods(conn)
                if len(pods) == SCALE_TO and all(map(is_ready, pods)):
                    ready_at = time.monotonic()
            return ready_at is not None and len(set(seen) - {survivor}) >= SCALE_TO - 1

        await until(f"{SCALE_TO} echo Pods answering through the gateway", all_ready)
        stop.set()
        await asyncio.gather(*pollers)
        new = sorted(t for p, t in seen.items() if p != survivor)
        rows.append((returned - start, ready_at - start, new[0] - start, new[-1] - start,
                     len(errors)))
        run = kubectl("scale", "deployment/echo", "-n", "echo", "--replicas=1")
        if run.returncode != 0:
            raise RuntimeError(f"kubectl scale: {run.stderr}")
    conn.close()
    return rows


async def main():
    part = sys.argv[1]
    if part == "list":
        n, rows = await bench_list(int(env("PODS")))
        print(f"\n1. List of {n} Pods (all namespaces), {RUNS} runs each, ms")
        print("| request | runs | median | p90 | max | notes |\n|---|---|---|---|---|---|")
        print("\n".join(rows))
    elif part == "watch":
        rows = await bench_watch(env("LIST_NS"), env("WATCH_POD"))
        print(f"\n2. Watch fan-out: {WATCHERS} watchers of every Pod, {CHANGES} changes, ms")
        print("| interval | samples | p50 | p99 | max |\n|---|---|---|---|---|")
        print("\n".join(rows))
    elif part == "scale":
        rows = await bench_scale()
        print(f"\n3. kubectl scale deployment/echo 1 -> {SCALE_TO}, from the command's start, ms")
        print("| round | kubectl returned | all Ready in the API | first new Pod answers "
              "through the gateway | all answer | non-200 answers |\n|---|---|---|---|---|---|")
        for i, (ret, ready, first, last, errs) in enumerate(rows, 1):
            print(f"| {i} | {ms(ret)} | {ms(ready)} | {ms(first)} | {ms(last)} | {errs} |")
    else:
        sys.exit(f"bench.py: unknown part {part}")


if __name__ == "__main__":
    asyncio.run(main())
