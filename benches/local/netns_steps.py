#!/usr/bin/env python3
"""What one Pod's network costs in netns mode, step by step, run one Pod after another (no
concurrency, no ferry): the `ip` commands ferry's kubelet runs for a Pod's sandbox
(orchestrator/src/network.rs, Sandbox), each timed from the fork to the exit, for N Pods on a
bridge of their own; first each step as its own `ip` command, then the same lines as ferry
runs them (two `ip -batch` per Pod), then `ip netns exec <pod> true` (how every container
starts), then the teardown as ferry does it (`link del`, `netns del`) and with `netns del` alone
(time until the kernel has removed every veth). Prints the median per step for the first and the last 100 Pods
(does a step grow with the number of namespaces?), and a fork-and-exec of `ip -V` as the floor.

Needs root and ip. Names `fstep…` and the range 10.242.0.0/16 (STEPS_CIDR to change; the
script refuses a range a route overlaps); everything it makes is removed at the end, also on
failure.

    sudo python3 benches/local/netns_steps.py        # N=500
"""
import ipaddress, os, statistics, subprocess, sys, time

N = int(os.environ.get("N", "500"))
CIDR = ipaddress.ip_network(os.environ.get("STEPS_CIDR", "10.242.0.0/16"))
BRIDGE = "fstepbr"

if os.geteuid() != 0:
    sys.exit("needs root (network namespaces)")
routes = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"],
                        capture_output=True, text=True, check=True).stdout
for line in routes.splitlines():
    words = line.split()
    dst = words[1] if words[0] in ("local", "broadcast", "unicast", "blackhole", "unreachable",
                                   "prohibit", "throw", "multicast", "anycast", "nat") else words[0]
    if dst != "default" and ipaddress.ip_network(dst, strict=False).overlaps(CIDR):
        sys.exit(f"STEPS_CIDR {CIDR} overlaps the route `{line.strip()}`")
if N + 2 > CIDR.num_addresses:
    sys.exit(f"N={N} does not fit STEPS_CIDR {CIDR}")

gateway = CIDR[1]
times = {}


def ip(*args, stdin=None, step=None):
    t0 = time.perf_counter()
    done = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True)
    took = (time.perf_counter() - t0) * 1e3
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    if step:
        times.setdefault(step, []).append(took)


def pod(i):
    return f"fstep-{i}", f"fstepv{i}", CIDR[i + 2]


def node_lines(ns, veth):
    return [f"netns add {ns}", f"link add {veth} type veth peer name eth0 netns {ns}",
            f"link set {veth} master {BRIDGE} up", f"link set dev {veth} type bridge_slave hairpin on"]


def pod_lines(addr):
    return ["link set lo up", f"addr add {addr}/32 dev eth0", "link set eth0 up",
            f"route add {gateway} dev eth0 scope link", f"route add default via {gateway} dev eth0"]


def remove_all():
    lines = [f"link del {pod(i)[1]}" for i in range(N)] + [f"netns del {pod(i)[0]}" for i in range(N)]
    subprocess.run(["ip", "-force", "-batch", "-"], input="\n".join(lines) + "\n",
                   capture_output=True, text=True)
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)


try:
    ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "add", f"{gateway}/{CIDR.prefixlen}", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")
    for i in range(N):
        ip("-V", step="fork and exec of `ip -V` (the floor)")
    # 1. Each step its own command.
    for i in range(N):
        ns, veth, addr = pod(i)
        ip("netns", "add", ns, step="ip netns add")
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns, step="ip link add (veth pair, one end into the netns)")
        ip("link", "set", veth, "master", BRIDGE, "up", step="ip link set master bridge up")
        ip("link", "set", "dev", veth, "type", "bridge_slave", "hairpin", "on", step="ip link set hairpin on")
        ip("-n", ns, "link", "set", "lo", "up", step="ip -n: link set lo up")
        ip("-n", ns, "addr", "add", f"{addr}/32", "dev", "eth0", step="ip -n: addr add")
        ip("-n", ns, "link", "set", "eth0", "up", step="ip -n: link set eth0 up")
        ip("-n", ns, "route", "add", str(gateway), "dev", "eth0", "scope", "link", step="ip -n: route add gateway")
        ip("-n", ns, "route", "add", "default", "via", str(gateway), "dev", "eth0", step="ip -n: route add default")
    for i in range(N):
        ip("netns", "exec", pod(i)[0], "true", step="ip netns exec <pod> true")
    for i in range(N):
        ns, veth, _ = pod(i)
        ip("link", "del", veth, step="ip link del (veth pair)")
        ip("netns", "del", ns, step="ip netns del")
    # 2. As ferry runs them: two batches to make, one to remove.
    for i in range(N):
        ns, veth, addr = pod(i)
        ip("-batch", "-", stdin="\n".join(node_lines(ns, veth)) + "\n", step="ferry's node batch (netns, veth, bridge, hairpin)")
        ip("-n", ns, "-batch", "-", stdin="\n".join(pod_lines(addr)) + "\n", step="ferry's pod batch (lo, address, routes)")
    for i in range(N):
        ns, veth, _ = pod(i)
        ip("-force", "-batch", "-", stdin=f"link del {veth}\nnetns del {ns}\n", step="ferry's teardown batch (link del, netns del)")
    # 3. The teardown without `link del`: deleting the namespace takes the veth pair with it
    # (its end in the namespace goes, and a veth's peer with it), in the kernel's cleanup work,
    # which batches many namespaces. Timed: the commands, and until the node's ends are gone.
    for i in range(N):
        ns, veth, addr = pod(i)
        ip("-batch", "-", stdin="\n".join(node_lines(ns, veth)) + "\n")
        ip("-n", ns, "-batch", "-", stdin="\n".join(pod_lines(addr)) + "\n")
    t0 = time.perf_counter()
    for i in range(N):
        ip("netns", "del", pod(i)[0], step="ip netns del alone (the veth pair goes with it)")
    deadline = time.monotonic() + 120
    while "fstepv" in subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout:
        if time.monotonic() > deadline:
            sys.exit("the veths of deleted namespaces still there after 120 s")
        time.sleep(0.05)
    gone_s = time.perf_counter() - t0
finally:
    remove_all()

first, last = slice(0, min(100, N)), slice(max(0, N - 100), N)
print(f"{N} Pods, one after another; ms per command, median of the first and the last {min(100, N)} Pods; sum over all")
print(f"  {'step':<55} {'first':>7} {'last':>7} {'sum s':>7}")
for step, ms in times.items():
    print(f"  {step:<55} {statistics.median(ms[first]):>7.2f} {statistics.median(ms[last]):>7.2f} {sum(ms) / 1e3:>7.2f}")
print(f"{N} namespaces deleted with `ip netns del` alone: all their veths gone from the node {gone_s:.2f} s after the first")
