"""The Markdown table of benches/mesh/run.sh, from its records (one JSON object per run).

    python3 benches/mesh/table.py RECORDS RATE CONNECTIONS DURATION

Per hop = (mesh - direct) / 2: the mesh path has two sidecars (outbound, then inbound).
CPU and RSS are each sidecar's own: outbound / inbound. Idle RSS is VmRSS once ready, and in
brackets its anonymous part (RssAnon: heap, stacks), the memory the sidecar adds beyond the
binary's pages; peak is VmHWM after the run.
"""

import json
import sys


def main():
    path, rate, connections, duration = sys.argv[1:5]
    records = [json.loads(line) for line in open(path)]
    direct = {r["run"]: r for r in records if r["label"] == "direct"}
    loads = {
        "rate": f"{float(rate):.0f} req/s, open model",
        "saturation": f"saturation, {connections} connections",
    }
    print(f"{duration} s per run, HTTP/1.1 keep-alive, `ferry echo` as the app.\n")
    print(
        "| load | path | req/s | p50 ms | p99 ms | added p50 per hop ms | added p99 per hop ms "
        "| sidecar CPU-s per 1k req (out / in) | sidecar RSS MB idle (anonymous) (out / in) "
        "| sidecar peak RSS MB (out / in) | errors, non-2xx |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for run in ("rate", "saturation"):
        base = direct.get(run)
        for r in (x for x in records if x["run"] == run):
            mesh = r["label"] != "direct"
            per_hop = lambda key: (
                f"{(r[key] - base[key]) / 2:+.3f}" if mesh and base else "-"
            )
            cpu = (
                " / ".join(f"{c / r['requests'] * 1000:.3f}" for c in r["cpu_s"])
                if mesh and r["requests"]
                else "-"
            )
            idle = (
                " / ".join(
                    f"{m['idle_kb'] / 1024:.1f} ({m['idle_anon_kb'] / 1024:.1f})"
                    for m in r["mem"]
                )
                or "-"
            )
            peak = " / ".join(f"{m['hwm_kb'] / 1024:.1f}" for m in r["mem"]) or "-"
            bad = r["errors"] + sum(
                n for code, n in r["statuses"].items() if not code.startswith("2")
            )
            short = r.get("shortfall")
            rps = f"{r['rps']:.0f}" + (f" ({short:.1f}% short)" if short and short >= 0.05 else "")
            print(
                f"| {loads[run]} | {r['label']} | {rps} | {r['p50']:.3f} | {r['p99']:.3f} "
                f"| {per_hop('p50')} | {per_hop('p99')} | {cpu} | {idle} | {peak} | {bad} |"
            )


if __name__ == "__main__":
    main()
