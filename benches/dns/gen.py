#!/usr/bin/env python3
"""Writes one cluster of N Services three ways, for benches/dns/run.sh:
snapshot.json (what `ferry dns --snapshot` serves), cluster.local.zone (the same records as an
authoritative zone for Knot) and queries.txt (dnsperf input: names that exist).

Each Service has a cluster IP and one named port, so it has an A and an SRV record; one in ten
is headless with two ready endpoints instead, as real clusters mix them."""

import json
import sys
from pathlib import Path


def ip(i: int) -> str:
    return f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}"


def main() -> None:
    n, out = int(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    services, clusters, zone, queries = [], [], [], []
    zone.append("$ORIGIN cluster.local.\n$TTL 30\n")
    zone.append("@ SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30\n")
    zone.append("@ NS ns.dns.cluster.local.\nns.dns A 127.0.0.1\n")
    zone.append('dns-version TXT "1.1.0"\n')
    for i in range(n):
        ns, name = f"ns-{i % max(1, n // 100)}", f"svc-{i}"
        headless = i % 10 == 9
        port = {"name": "http", "port": 80, "protocol": "TCP", "target_port": 8080}
        endpoints = []
        fqdn = f"{name}.{ns}.svc"
        if headless:
            eps = [ip(n + 2 * i), ip(n + 2 * i + 1)]
            endpoints = [
                {"address": a, "ready": True, "serving": True, "terminating": False}
                for a in eps
            ]
            clusters.append({
                "key": {"namespace": ns, "service": name, "port": 80},
                "port_name": "http", "protocol": "TCP",
                "session_affinity": {"type": "None"},
                "endpoints": [
                    {"address": a, "port": 8080, "ready": True, "serving": True,
                     "terminating": False} for a in eps
                ],
            })
            for a in eps:
                host = a.replace(".", "-")
                zone.append(f"{fqdn} A {a}\n{host}.{fqdn} A {a}\n")
                zone.append(f"_http._tcp.{fqdn} SRV 0 50 8080 {host}.{fqdn}\n")
        else:
            zone.append(f"{fqdn} A {ip(i)}\n")
            zone.append(f"_http._tcp.{fqdn} SRV 0 100 80 {fqdn}\n")
        services.append({
            "namespace": ns, "name": name, "type": "ClusterIP",
            "cluster_ips": [] if headless else [ip(i)], "headless": headless,
            "ports": [port], "session_affinity": {"type": "None"},
            "publish_not_ready_addresses": False, "endpoints": endpoints,
        })
        queries.append(f"{fqdn}.cluster.local A\n")
    if not queries:
        # No Services (the baseline for memory per Service): a name every zone holds.
        queries.append("ns.dns.cluster.local A\n")
    services.sort(key=lambda s: (s["namespace"], s["name"]))
    clusters.sort(key=lambda c: (c["key"]["namespace"], c["key"]["service"], c["key"]["port"]))
    snapshot = {"version": 1, "services": services, "clusters": clusters,
                "virtual_hosts": [], "certificates": []}
    (out / "snapshot.json").write_text(json.dumps(snapshot))
    (out / "cluster.local.zone").write_text("".join(zone))
    (out / "queries.txt").write_text("".join(queries))


if __name__ == "__main__":
    main()
