//! The pod network of the local runtime, as a CNI bridge plugin and kube-proxy's nftables table
//! make it on a Kubernetes node.
//!
//! Two modes ([`PodNetwork`]): `loopback` gives every Pod an address on the host's loopback
//! (127.0.0.0/8 is all loopback on Linux), and its containers share the host's network;
//! `netns` gives every Pod a network namespace of its own, with a veth pair into a node bridge,
//! an address from the pod range (a /32), `lo` up and its only routes via the bridge's address
//! (the gateway, the range's first address, which the node holds), so the node routes all of
//! a Pod's traffic. Pods reach each other and the node without NAT; an nftables table of
//! ferry's own drops (and counts) what Pods send anywhere else than the pod and service ranges
//! and the node's own addresses, and nothing leaving a Pod is masqueraded, so no Pod reaches
//! beyond the node. `hostNetwork: true` Pods keep the node's network.
//!
//! Services of netns mode are a second table ([`Ruleset`], kube-proxy's nftables mode),
//! which [`Node::sync_services`] keeps in step with each round's Services and EndpointSlices;
//! Pods resolve through the kube-dns Service ([`resolv_conf`]), their resolv.conf written to
//! `/etc/netns/<netns>/`, which `ip netns exec` mounts.
//!
//! [`choose`] resolves `--pod-network auto` by really trying to create a namespace.
//! [`Node::setup`] makes the node's side (bridge, table) and [`Sandbox`] each Pod's, both with
//! the `ip` and `nft` commands (iproute2, nftables), as kube-proxy drives `nft`. Every name is
//! derived from the pod range ([`Names`]), so two `ferry up` with different ranges never
//! collide, one with an overlapping range is refused, and what a ferry killed outright left
//! behind is found under the same names and removed by the next start of the same instance.
//!
//! It may touch: network namespaces, links, routes and nftables tables named by [`Names`],
//! their files under `/etc/netns`, its lock file under `/run/ferry`, `net.ipv4.ip_forward` (set
//! on, as the CNI bridge plugin does) and its bridge's `route_localnet`.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ferry_model::Problem;
use ferry_objects::object::Manifest;

use crate::ipam::Cidr;

pub mod interception;
mod resolv;
mod sandbox;
mod services;

pub(crate) use sandbox::Sandbox;

pub use resolv::{cluster_dns_ip, kube_dns_service, resolv_conf};
pub use services::{ClusterDns, Protocol, Ruleset, ServicePort};

/// How Pods are networked (`ferry up --pod-network`, once `auto` is resolved by [`choose`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PodNetwork {
    /// Each Pod on its own loopback address; containers share the host's network.
    #[default]
    Loopback,
    /// Each Pod in its own network namespace on the node bridge.
    Netns,
}

/// `--pod-network`: a mode, or `auto` (netns when ferry may create network namespaces).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Auto,
    Netns,
    Loopback,
}

/// The pod range of netns mode when `--pod-cidr` names none: 10.244.0.0/16, flannel's default.
pub fn netns_pod_cidr() -> Cidr {
    Cidr::new(IpAddr::V4(Ipv4Addr::new(10, 244, 0, 0)), 16).unwrap_or(Cidr::V4_LOOPBACK_PODS)
}

/// The service range when `--service-cidr` names none: 10.96.0.0/16 in netns mode (the start
/// of kubeadm's 10.96.0.0/12, the cluster DNS Service on 10.96.0.10), 127.2.0.0/16 in loopback
/// mode (where the L4 proxy can bind every cluster IP without configuring an address).
pub fn default_service_cidr(network: PodNetwork) -> Cidr {
    match network {
        PodNetwork::Netns => Cidr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 0)), 16)
            .unwrap_or(Cidr::V4_LOOPBACK_SERVICES),
        PodNetwork::Loopback => Cidr::V4_LOOPBACK_SERVICES,
    }
}

/// Where each instance's lock file lives: a live `ferry up` holds its pod range's lock.
const LOCK_DIR: &str = "/run/ferry";

/// Where `ip netns exec` finds a namespace's own files (`/etc/netns/<name>/resolv.conf` is
/// bind-mounted over `/etc/resolv.conf` for what runs in it).
const ETC_NETNS: &str = "/etc/netns";

/// Why the pod network cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "--pod-cidr {0}: --pod-network netns needs a routable private range, not loopback (127.0.0.0/8 is each Pod's own loopback there); leave it out for 10.244.0.0/16 or name one such as 10.244.0.0/16"
    )]
    LoopbackPodCidr(Cidr),
    #[error(
        "--pod-cidr {0}: --pod-network netns supports IPv4 pod ranges only (IPv6 and dual-stack Pods are not supported)"
    )]
    Ipv6PodCidr(Cidr),
    #[error(
        "--pod-cidr {0}: too small for --pod-network netns, which needs the gateway and at least one Pod (a prefix of /30 or shorter)"
    )]
    SmallPodCidr(Cidr),
    #[error(
        "--service-cidr {0}: --pod-network netns needs a routable IPv4 range, not loopback (a Pod's 127.0.0.0/8 is its own); leave it out for 10.96.0.0/16 or name one such as 10.96.0.0/16"
    )]
    LoopbackServiceCidr(Cidr),
    #[error("--pod-cidr {pod} overlaps --service-cidr {service}")]
    ServiceOverlap { pod: Cidr, service: Cidr },
    #[error(
        "{flag} {cidr} overlaps the route {route} (dev {dev}) of this machine: another ferry up, or a network of its own, uses it; choose another {flag}"
    )]
    RouteOverlap {
        flag: &'static str,
        cidr: Cidr,
        route: String,
        dev: String,
    },
    #[error(
        "--pod-cidr {cidr}: another ferry up runs with this pod range (it holds {}); choose another --pod-cidr", .lock.display()
    )]
    InUse { cidr: Cidr, lock: PathBuf },
    #[error("--pod-network netns: ferry cannot create network namespaces here: {0}")]
    NotPermitted(String),
    #[error(
        "--pod-cidr {cidr} is not on loopback, which takes --pod-network netns, and ferry cannot create network namespaces here: {why}"
    )]
    AutoNotPossible { cidr: Cidr, why: String },
    #[error("{0}")]
    Command(String),
}

/// What [`choose`] decided, and why (the log line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub network: PodNetwork,
    pub pod_cidr: Cidr,
    pub why: String,
}

/// Resolves `--pod-network` and `--pod-cidr` (`None`: the mode's default): `auto` is netns when
/// `can_create` (a real try, [`can_create_namespaces`]) succeeds, else loopback; a 127/8 range
/// given with `auto` means loopback. The range is checked for the mode chosen.
pub fn choose(
    mode: Mode,
    pod_cidr: Option<Cidr>,
    can_create: impl FnOnce() -> Result<(), String>,
) -> Result<Choice, Error> {
    let loopback = |pod_cidr: Option<Cidr>, why: String| Choice {
        network: PodNetwork::Loopback,
        pod_cidr: pod_cidr.unwrap_or(Cidr::V4_LOOPBACK_PODS),
        why,
    };
    let netns = |pod_cidr: Option<Cidr>, why: String| -> Result<Choice, Error> {
        let pod_cidr = pod_cidr.unwrap_or_else(netns_pod_cidr);
        check_pod_cidr(pod_cidr)?;
        Ok(Choice {
            network: PodNetwork::Netns,
            pod_cidr,
            why,
        })
    };
    match mode {
        Mode::Loopback => Ok(loopback(pod_cidr, "--pod-network loopback".to_owned())),
        Mode::Netns => {
            if let Some(cidr) = pod_cidr {
                check_pod_cidr(cidr)?;
            }
            can_create().map_err(Error::NotPermitted)?;
            netns(pod_cidr, "--pod-network netns".to_owned())
        }
        Mode::Auto => match pod_cidr {
            Some(cidr) if is_loopback(cidr) => Ok(loopback(
                pod_cidr,
                format!("--pod-network auto: --pod-cidr {cidr} is on loopback"),
            )),
            Some(cidr) => {
                check_pod_cidr(cidr)?;
                match can_create() {
                    Ok(()) => netns(
                        pod_cidr,
                        "--pod-network auto: ferry may create network namespaces".to_owned(),
                    ),
                    Err(why) => Err(Error::AutoNotPossible { cidr, why }),
                }
            }
            None => match can_create() {
                Ok(()) => netns(
                    None,
                    "--pod-network auto: ferry may create network namespaces".to_owned(),
                ),
                Err(why) => Ok(loopback(
                    None,
                    format!("--pod-network auto: ferry cannot create network namespaces ({why})"),
                )),
            },
        },
    }
}

/// [`choose`], and an `auto` without `--pod-cidr` that would be netns but whose
/// `--service-cidr` is on loopback (127.2.0.0/16, as before netns mode was the default) is
/// loopback mode: netns mode cannot use such a service range. The service range is the mode's default when not given
/// ([`default_service_cidr`]).
pub fn choose_with_services(
    mode: Mode,
    pod_cidr: Option<Cidr>,
    service_cidr: Option<Cidr>,
    can_create: impl FnOnce() -> Result<(), String>,
) -> Result<(Choice, Cidr), Error> {
    let mut choice = choose(mode, pod_cidr, can_create)?;
    if let (Mode::Auto, None, Some(services), PodNetwork::Netns) =
        (mode, pod_cidr, service_cidr, choice.network)
        && is_loopback(services)
    {
        choice = Choice {
            network: PodNetwork::Loopback,
            pod_cidr: Cidr::V4_LOOPBACK_PODS,
            why: format!(
                "--pod-network auto: --service-cidr {services} is on loopback, which netns mode cannot use"
            ),
        };
    }
    let service_cidr = service_cidr.unwrap_or_else(|| default_service_cidr(choice.network));
    Ok((choice, service_cidr))
}

/// A range inside 127.0.0.0/8, which is all loopback on Linux.
fn is_loopback(cidr: Cidr) -> bool {
    matches!(cidr.addr(), IpAddr::V4(v4) if v4.is_loopback()) && cidr.prefix() >= 8
}

/// Whether netns mode can use this pod range: IPv4, no loopback address in it, room for the
/// gateway and a Pod.
pub fn check_pod_cidr(cidr: Cidr) -> Result<(), Error> {
    let loopback = Cidr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8);
    match cidr.addr() {
        IpAddr::V6(_) => Err(Error::Ipv6PodCidr(cidr)),
        IpAddr::V4(_) if loopback.is_ok_and(|l| overlaps(l, cidr)) => {
            Err(Error::LoopbackPodCidr(cidr))
        }
        IpAddr::V4(_) if cidr.prefix() > 30 => Err(Error::SmallPodCidr(cidr)),
        IpAddr::V4(_) => Ok(()),
    }
}

/// Whether two ranges share an address.
fn overlaps(a: Cidr, b: Cidr) -> bool {
    a.contains(b.addr()) || b.contains(a.addr())
}

/// Tries for real whether ferry may make the pod network here: `ip` and `nft` are found and a
/// network namespace can be created (and is deleted again).
pub fn can_create_namespaces() -> Result<(), String> {
    let ip = find_program("ip").ok_or("the ip command (iproute2) is not installed")?;
    find_program("nft").ok_or("the nft command (nftables) is not installed")?;
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "ferry-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    run(&ip, &["netns", "add", &name], None)
        .map_err(|e| format!("cannot create a network namespace: {e}"))?;
    run(&ip, &["netns", "del", &name], None)
        .map_err(|e| format!("cannot delete the network namespace {name}: {e}"))?;
    Ok(())
}

/// The program found in `PATH` or the system directories (`/usr/sbin` is often not in a
/// user's `PATH`).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `program args`, with `stdin` fed when given; the error carries the command and its
/// stderr.
fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let shown = || format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`{}`: {e}", shown()))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| format!("`{}`: writing its input: {e}", shown()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`{}`: {e}", shown()))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(format!("`{}` failed: {}", shown(), stderr.trim()))
    }
}

/// The output of `program args`.
fn output(program: &Path, args: &[&str]) -> Result<String, String> {
    let shown = || format!("{} {}", program.display(), args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{}`: {e}", shown()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed: {}",
            shown(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The names of one instance's network objects, all derived from its pod range, so a restart
/// with the same range finds what a killed one left, and instances with different ranges never
/// share a name. Interface names stay within Linux's 15 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Eight hex digits of a hash of the pod range.
    pub id: String,
    /// The node bridge: `fbr-<id>`.
    pub bridge: String,
    /// The nftables table (family `inet`): `ferry_<id>`.
    pub table: String,
    /// The nftables table of Services (family `ip`, as kube-proxy's): `ferry_<id>_services`.
    pub services: String,
    /// The lock a live instance holds: `/run/ferry/pod-network-<id>.lock`.
    pub lock: PathBuf,
}

impl Names {
    pub fn of(pod_cidr: Cidr) -> Names {
        let id = format!("{:08x}", fnv1a_32(pod_cidr.to_string().as_bytes()));
        Names {
            bridge: format!("fbr-{id}"),
            table: format!("ferry_{id}"),
            services: format!("ferry_{id}_services"),
            lock: Path::new(LOCK_DIR).join(format!("pod-network-{id}.lock")),
            id,
        }
    }

    /// A Pod's network namespace: `ferry-<id>-<pod IP>`.
    pub fn netns(&self, ip: Ipv4Addr) -> String {
        format!("{}{ip}", self.netns_prefix())
    }

    fn netns_prefix(&self) -> String {
        format!("ferry-{}-", self.id)
    }

    /// The node's end of a Pod's veth pair: `fv<5 hex of the id><the pod IP in 8 hex>`, 15
    /// bytes. (The Pod's end is `eth0` in its namespace.)
    pub fn veth(&self, ip: Ipv4Addr) -> String {
        format!("{}{:08x}", self.veth_prefix(), u32::from(ip))
    }

    fn veth_prefix(&self) -> String {
        format!("fv{}", &self.id[..5])
    }
}

/// FNV-1a, 32 bits.
fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The first address of the range, which the node's bridge holds.
pub fn gateway(pod_cidr: Cidr) -> Option<Ipv4Addr> {
    match pod_cidr.addr() {
        IpAddr::V4(v4) => Some(Ipv4Addr::from(u32::from(v4).wrapping_add(1))),
        IpAddr::V6(_) => None,
    }
}

/// The nftables script that (re)makes the instance's table in one transaction: what Pods send
/// into the bridge is accepted for the pod and service ranges and the node's own addresses,
/// and dropped and counted otherwise. Nothing is masqueraded. The bridge takes packets to the
/// node's loopback (`route_localnet`, so the cluster DNS Service can DNAT to a DNS listener on
/// 127.0.0.1), so what a Pod itself addresses to 127.0.0.0/8 is dropped before any DNAT.
pub fn nft_script(names: &Names, pod_cidr: Cidr, service_cidr: Cidr) -> String {
    let (table, bridge) = (&names.table, &names.bridge);
    let family = |c: Cidr| if c.addr().is_ipv4() { "ip" } else { "ip6" };
    let mut accept = format!(
        "\t\tiifname \"{bridge}\" {} daddr {pod_cidr} accept\n",
        family(pod_cidr)
    );
    accept.push_str(&format!(
        "\t\tiifname \"{bridge}\" {} daddr {service_cidr} accept\n",
        family(service_cidr)
    ));
    format!(
        "table inet {table} {{}}\n\
         delete table inet {table}\n\
         table inet {table} {{\n\
         \tchain pod_martians {{\n\
         \t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\tiifname \"{bridge}\" ip daddr 127.0.0.0/8 counter drop comment \"the node's loopback, reachable only through a Service\"\n\
         \t}}\n\
         \tchain pod_egress {{\n\
         \t\ttype filter hook prerouting priority filter; policy accept;\n\
         {accept}\
         \t\tiifname \"{bridge}\" fib daddr type {{ local, broadcast, multicast }} accept\n\
         \t\tiifname \"{bridge}\" ip6 daddr fe80::/10 accept\n\
         \t\tiifname \"{bridge}\" counter drop comment \"pod traffic beyond the node\"\n\
         \t}}\n\
         }}\n"
    )
}

/// The `ip -batch` lines that make the node's bridge, holding the gateway address, and route
/// the service range to it, so the node's own connections to cluster IPs leave from the
/// gateway address (before their DNAT to a Pod).
pub fn bridge_lines(names: &Names, pod_cidr: Cidr, service_cidr: Cidr) -> Vec<String> {
    let gateway = gateway(pod_cidr).map_or_else(String::new, |g| g.to_string());
    let bridge = &names.bridge;
    vec![
        format!("link add {bridge} type bridge"),
        format!("addr add {gateway}/{} dev {bridge}", pod_cidr.prefix()),
        format!("link set {bridge} up"),
        format!("route add {service_cidr} dev {bridge} src {gateway}"),
    ]
}

/// The kernel settings the pod network needs: forwarding between Pods (routed through the
/// node, as every Pod's only route is the gateway), and `route_localnet` on the bridge only.
fn sysctls(bridge: &str) -> [(String, &'static str); 2] {
    [
        ("/proc/sys/net/ipv4/ip_forward".to_owned(), "1"),
        (
            format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"),
            "1",
        ),
    ]
}

/// The node's side of the pod network: the bridge and the nftables table, removed on
/// [`Node::teardown`] (or when dropped). Holds the instance's lock while it lives.
#[derive(Debug)]
pub struct Node {
    names: Names,
    pod_cidr: Cidr,
    service_cidr: Cidr,
    gateway: Ipv4Addr,
    /// The cluster DNS Service and its domain ([`Node::with_cluster_dns`]).
    dns: Option<(ClusterDns, String)>,
    /// What the Services table holds, as last written; `None` when unknown (never written, or
    /// a write failed), so the next write replaces the whole table.
    services: Mutex<Option<Ruleset>>,
    ip: PathBuf,
    nft: PathBuf,
    /// Held (flock) while the instance lives; the kernel lets go when ferry is killed.
    _lock: File,
    torn_down: AtomicBool,
}

impl Node {
    /// Makes the node's side of the pod network for this pod range, after removing what an
    /// earlier ferry with the same range left (one killed outright). Refused when the range is
    /// not fit for netns mode, another live ferry uses it, or a route of this machine overlaps
    /// it.
    pub fn setup(pod_cidr: Cidr, service_cidr: Cidr) -> Result<Node, Error> {
        check_pod_cidr(pod_cidr)?;
        if is_loopback(service_cidr) || !service_cidr.addr().is_ipv4() {
            return Err(Error::LoopbackServiceCidr(service_cidr));
        }
        if overlaps(pod_cidr, service_cidr) {
            return Err(Error::ServiceOverlap {
                pod: pod_cidr,
                service: service_cidr,
            });
        }
        let gateway = gateway(pod_cidr).ok_or(Error::Ipv6PodCidr(pod_cidr))?;
        let ip = find_program("ip").ok_or_else(|| {
            Error::NotPermitted("the ip command (iproute2) is not installed".into())
        })?;
        let nft = find_program("nft").ok_or_else(|| {
            Error::NotPermitted("the nft command (nftables) is not installed".into())
        })?;
        let names = Names::of(pod_cidr);
        let lock = take_lock(&names.lock, pod_cidr)?;
        // Held while the routes are checked and the bridge made, so two ferries starting at
        // once with overlapping ranges cannot both pass the check.
        let _setting_up = setup_lock()?;
        let node = Node {
            names,
            pod_cidr,
            service_cidr,
            gateway,
            dns: None,
            services: Mutex::new(None),
            ip,
            nft,
            _lock: lock,
            torn_down: AtomicBool::new(false),
        };
        let removed = node.remove_leftovers();
        if !removed.is_empty() {
            tracing::info!(removed = %removed.join(" "), "removed the pod network a ferry with this --pod-cidr left behind");
        }
        node.check_routes()?;
        let bridge = bridge_lines(&node.names, pod_cidr, service_cidr).join("\n") + "\n";
        run(&node.ip, &["-batch", "-"], Some(&bridge)).map_err(Error::Command)?;
        for (path, value) in sysctls(&node.names.bridge) {
            std::fs::write(&path, value)
                .map_err(|e| Error::Command(format!("cannot write {value} to {path}: {e}")))?;
        }
        run(
            &node.nft,
            &["-f", "-"],
            Some(&nft_script(&node.names, pod_cidr, service_cidr)),
        )
        .map_err(Error::Command)?;
        tracing::info!(bridge = %node.names.bridge, gateway = %gateway, pod_cidr = %pod_cidr, nftables = %format!("inet {}", node.names.table), "the node side of the pod network is up");
        Ok(node)
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Pods resolve through the cluster DNS Service `dns.ip` (their resolv.conf's nameserver,
    /// under `domain`); its port 53 goes to `dns.listener` while it has no endpoints of its own.
    pub fn with_cluster_dns(mut self, dns: ClusterDns, domain: &str) -> Node {
        self.dns = Some((dns, domain.to_owned()));
        self
    }

    /// The cluster DNS Service, when Pods resolve through it.
    pub fn cluster_dns(&self) -> Option<ClusterDns> {
        self.dns.as_ref().map(|(dns, _)| *dns)
    }

    pub fn service_cidr(&self) -> Cidr {
        self.service_cidr
    }

    /// Makes the Services table serve the round's Services and EndpointSlices, in one `nft -f`
    /// transaction, when it differs from what was written last. Returns the problems of the
    /// Services it cannot serve.
    pub fn sync_services(&self, manifests: &[Arc<Manifest>]) -> Vec<Problem> {
        let (ports, problems) =
            ServicePort::from_manifests(manifests, self.service_cidr, self.cluster_dns());
        let ruleset = Ruleset::build(
            &self.names.services,
            &self.names.bridge,
            self.pod_cidr,
            &ports,
        );
        let mut held = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        if held.as_ref() == Some(&ruleset) {
            return problems;
        }
        let started = std::time::Instant::now();
        let mut written = run(
            &self.nft,
            &["-f", "-"],
            Some(&ruleset.script(held.as_ref())),
        );
        if written.is_err() && held.is_some() {
            // What the table holds is not what was written last: make it anew.
            written = run(&self.nft, &["-f", "-"], Some(&ruleset.script(None)));
        }
        match written {
            Ok(()) => {
                tracing::debug!(table = %self.names.services, service_ports = ports.len(), took = ?started.elapsed(), "Services table written");
                *held = Some(ruleset);
            }
            Err(e) => {
                tracing::error!(table = %self.names.services, error = %e, "cannot write the Services table");
                *held = None;
            }
        }
        problems
    }

    /// The `/etc/resolv.conf` of a Pod of `namespace` with this `dnsPolicy` and `dnsConfig`, or
    /// `None` when it keeps the node's.
    pub fn resolv_conf(
        &self,
        pod: &k8s_openapi::api::core::v1::PodSpec,
        namespace: &str,
    ) -> Option<String> {
        let (dns, domain) = self.dns.as_ref()?;
        resolv_conf(pod, namespace, dns.ip, domain)
    }

    pub fn pod_cidr(&self) -> Cidr {
        self.pod_cidr
    }

    /// The node's address on the pod network (the bridge's), the Pods' default route.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The argv prefix that runs a program in a Pod's network namespace.
    pub fn enter(&self, netns: &str) -> Vec<OsString> {
        vec![
            self.ip.clone().into_os_string(),
            "netns".into(),
            "exec".into(),
            netns.into(),
        ]
    }

    /// A Pod's sandbox (not made yet: [`Sandbox::setup`]).
    pub(crate) fn sandbox(&self, ip: Ipv4Addr) -> Sandbox {
        Sandbox {
            netns: self.names.netns(ip),
            veth: self.names.veth(ip),
            ip,
            gateway: self.gateway,
            resolv_conf: None,
            interception: None,
            nft: self.nft.clone(),
            bridge: self.names.bridge.clone(),
            program: self.ip.clone(),
            torn_down: AtomicBool::new(false),
        }
    }

    /// Removes this instance's namespaces, veths, bridge and table, whoever made them; returns
    /// what it removed.
    fn remove_leftovers(&self) -> Vec<String> {
        let mut removed = Vec::new();
        let netns_prefix = self.names.netns_prefix();
        if let Ok(list) = output(&self.ip, &["netns", "list"]) {
            for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
                if ns.starts_with(&netns_prefix)
                    && run(&self.ip, &["netns", "del", ns], None).is_ok()
                {
                    removed.push(format!("netns {ns}"));
                }
            }
        }
        let veth_prefix = self.names.veth_prefix();
        if let Ok(links) = output(&self.ip, &["-o", "link", "show"]) {
            for link in links.lines().filter_map(link_name) {
                let ours = link == self.names.bridge
                    || (link.starts_with(&veth_prefix) && link.len() == 15);
                if ours && run(&self.ip, &["link", "del", link], None).is_ok() {
                    removed.push(format!("link {link}"));
                }
            }
        }
        let etc_netns = Path::new(ETC_NETNS);
        if let Ok(dirs) = std::fs::read_dir(etc_netns) {
            for dir in dirs.flatten() {
                let name = dir.file_name().to_string_lossy().into_owned();
                if name.starts_with(&netns_prefix)
                    && std::fs::remove_dir_all(etc_netns.join(&name)).is_ok()
                {
                    removed.push(format!("{ETC_NETNS}/{name}"));
                }
            }
        }
        if let Ok(tables) = output(&self.nft, &["list", "tables", "ip"]) {
            let wanted = format!("table ip {}", self.names.services);
            if tables.lines().any(|l| l.trim() == wanted)
                && run(
                    &self.nft,
                    &["delete", "table", "ip", &self.names.services],
                    None,
                )
                .is_ok()
            {
                removed.push(wanted);
            }
        }
        *self.services.lock().unwrap_or_else(PoisonError::into_inner) = None;
        if let Ok(tables) = output(&self.nft, &["list", "tables", "inet"]) {
            let wanted = format!("table inet {}", self.names.table);
            if tables.lines().any(|l| l.trim() == wanted)
                && run(
                    &self.nft,
                    &["delete", "table", "inet", &self.names.table],
                    None,
                )
                .is_ok()
            {
                removed.push(wanted);
            }
        }
        removed
    }

    /// Refuses a pod or service range that a route of this machine overlaps (another ferry's
    /// bridge and its service route, a network of the host's own).
    fn check_routes(&self) -> Result<(), Error> {
        let routes = output(&self.ip, &["-4", "-o", "route", "show", "table", "main"])
            .map_err(Error::Command)?;
        for (flag, cidr) in [
            ("--pod-cidr", self.pod_cidr),
            ("--service-cidr", self.service_cidr),
        ] {
            for (route, dev) in routes.lines().filter_map(route_of) {
                if route
                    .parse::<Cidr>()
                    .or_else(|_| format!("{route}/32").parse::<Cidr>())
                    .is_ok_and(|r| overlaps(r, cidr))
                {
                    return Err(Error::RouteOverlap {
                        flag,
                        cidr,
                        route: route.to_owned(),
                        dev: dev.to_owned(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Removes the table, the bridge and whatever Pod namespaces and veths are left; once.
    pub fn teardown(&self) {
        if self.torn_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let removed = self.remove_leftovers();
        tracing::debug!(removed = %removed.join(" "), "pod network removed");
        // The lock itself is let go when the file is closed, after this.
        let _ = std::fs::remove_file(&self.names.lock);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The interface name of a line of `ip -o link show`: `2: eth0@if6: <...`.
fn link_name(line: &str) -> Option<&str> {
    let name = line.split(": ").nth(1)?;
    Some(name.split('@').next().unwrap_or(name))
}

/// The destination and device of a line of `ip -o route show` (`default` has none worth
/// checking).
fn route_of(line: &str) -> Option<(&str, &str)> {
    let mut words = line.split_whitespace();
    let dst = words.next().filter(|d| *d != "default")?;
    let dev = line
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or("?");
    Some((dst, dev))
}

/// The machine-wide lock every ferry holds while it sets its pod network up (waited for).
fn setup_lock() -> Result<File, Error> {
    let path = Path::new(LOCK_DIR).join("pod-network-setup.lock");
    std::fs::create_dir_all(LOCK_DIR)
        .map_err(|e| Error::Command(format!("cannot create {LOCK_DIR}: {e}")))?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Command(format!("cannot open {}: {e}", path.display())))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::Command(format!("cannot lock {}: {e}", path.display())))?;
    Ok(file)
}

/// Takes the instance's lock, or says which live ferry holds it.
fn take_lock(path: &Path, cidr: Cidr) -> Result<File, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Command(format!("cannot create {}: {e}", dir.display())))?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::Command(format!("cannot open {}: {e}", path.display())))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(Error::InUse {
            cidr,
            lock: path.to_owned(),
        }),
        Err(e) => Err(Error::Command(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests;
