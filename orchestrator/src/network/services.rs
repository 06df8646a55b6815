//! Services in the kernel, as kube-proxy's nftables mode makes them: a table of ferry's own
//! (family `ip`) whose `service-ips` map sends each cluster IP, protocol and port to a chain
//! that picks one of the port's endpoints at random per connection (`numgen random mod N`) and
//! DNATs to it; NodePorts the same through `service-nodeports` on the node's own addresses;
//! `sessionAffinity: ClientIP` through one dynamic set per endpoint whose elements time out
//! after `timeoutSeconds`; a cluster IP or node port without endpoints is rejected (a refused
//! connection, not a hang). Ready endpoints are used; when a port has none, its serving
//! terminating ones (kube-proxy's fallback). Connections a Pod makes to itself through its
//! Service (hairpin), node ports, and cluster IPs reached from outside the pod range are
//! masqueraded, inside the node only.
//!
//! Pure: [`ServicePort::from_manifests`] reads the round's Services and EndpointSlices,
//! [`Ruleset::build`] makes the table, [`Ruleset::script`] the one `nft -f` transaction that
//! turns what the table held into it, changing only the chains that differ (its affinity sets
//! keep their entries when the endpoint stays). [`super::Node::sync_services`] runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use ferry_model::Problem;
use ferry_objects::object::{Manifest, Object};
use ferry_objects::validate::SERVICE_NAME_LABEL;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::ipam::Cidr;

/// The mark bit of a connection to masquerade (kube-proxy's 0x4000; cleared again before the
/// packet leaves, so it does not leak to other tables).
const MASQUERADE_MARK: &str = "0x00004000";

/// A layer-4 protocol of a Service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Where the cluster DNS Service's port 53 goes when it has no endpoints of its own: ferry's
/// DNS listener on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterDns {
    /// The kube-dns Service's cluster IP.
    pub ip: Ipv4Addr,
    /// ferry's DNS listener (UDP and TCP).
    pub listener: SocketAddrV4,
}

/// One port of one Service, with the endpoints it sends to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name (`""` for an unnamed one).
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    /// `sessionAffinity: ClientIP`: its `timeoutSeconds` (10800 when not given).
    pub affinity: Option<u32>,
    /// The ready endpoints, else the serving terminating ones; sorted.
    pub endpoints: Vec<SocketAddrV4>,
}

impl ServicePort {
    /// The Service ports of the round's Services with a cluster IP in `service_cidr`, each with
    /// the endpoints of its EndpointSlices, and the problems of Services the pod network
    /// cannot serve (IPv6).
    pub fn from_manifests(
        manifests: &[Arc<Manifest>],
        service_cidr: Cidr,
        dns: Option<ClusterDns>,
    ) -> (Vec<ServicePort>, Vec<Problem>) {
        let mut slices: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
        for m in manifests {
            if let Object::EndpointSlice(slice) = &m.object
                && let Some(service) = slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
            {
                slices
                    .entry((m.namespace(), service.as_str()))
                    .or_default()
                    .push(slice);
            }
        }
        let mut ports = Vec::new();
        let mut problems = Vec::new();
        for m in manifests {
            let Object::Service(svc) = &m.object else {
                continue;
            };
            if let Some(problem) = ipv6_problem(m, svc) {
                problems.push(problem);
                continue;
            }
            let Some(spec) = svc.spec.as_ref() else {
                continue;
            };
            let Some(IpAddr::V4(cluster_ip)) = spec
                .cluster_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
            else {
                continue;
            };
            if spec.type_.as_deref() == Some("ExternalName")
                || !service_cidr.contains(IpAddr::V4(cluster_ip))
            {
                continue;
            }
            let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
                spec.session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds)
                    .and_then(|t| u32::try_from(t).ok())
                    .filter(|t| *t > 0)
                    .unwrap_or(10800)
            });
            let own = slices
                .get(&(m.namespace(), m.name()))
                .map_or(&[][..], Vec::as_slice);
            for port in spec.ports.iter().flatten() {
                let (Some(protocol), Ok(number)) = (
                    Protocol::parse(port.protocol.as_deref()),
                    u16::try_from(port.port),
                ) else {
                    continue;
                };
                let port_name = port.name.clone().unwrap_or_default();
                let mut endpoints = endpoints(own, &port_name, protocol);
                if endpoints.is_empty()
                    && let Some(dns) = dns.filter(|d| d.ip == cluster_ip && number == 53)
                {
                    endpoints.push(dns.listener);
                }
                ports.push(ServicePort {
                    namespace: m.namespace().to_owned(),
                    name: m.name().to_owned(),
                    port_name,
                    protocol,
                    cluster_ip,
                    port: number,
                    node_port: port.node_port.and_then(|p| u16::try_from(p).ok()),
                    affinity,
                    endpoints,
                });
            }
        }
        (ports, problems)
    }

    /// `<ns>/<name>/<proto>/<port name or number>`, the tail of its chains' names.
    fn key(&self) -> String {
        let port = if self.port_name.is_empty() {
            self.port.to_string()
        } else {
            self.port_name.clone()
        };
        format!(
            "{}/{}/{}/{port}",
            self.namespace,
            self.name,
            self.protocol.nft()
        )
    }
}

/// The refusal of a Service asking for IPv6: the pod network is IPv4 only.
fn ipv6_problem(m: &Manifest, svc: &Service) -> Option<Problem> {
    let spec = svc.spec.as_ref()?;
    if let Some(i) = spec.ip_families.iter().flatten().position(|f| f == "IPv6") {
        return Some(m.warning(
            format!("spec.ipFamilies[{i}]"),
            "IPv6 is not supported by ferry's pod network",
        ));
    }
    if spec.ip_family_policy.as_deref() == Some("RequireDualStack") {
        return Some(m.warning(
            "spec.ipFamilyPolicy",
            "RequireDualStack: IPv6 is not supported by ferry's pod network",
        ));
    }
    let v6 = |ip: &str| ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6());
    if spec.cluster_ip.as_deref().is_some_and(v6) {
        return Some(m.warning(
            "spec.clusterIP",
            "IPv6 is not supported by ferry's pod network",
        ));
    }
    None
}

/// The endpoints a port sends to: the ready ones, else (kube-proxy's fallback) those serving
/// while terminating.
fn endpoints(slices: &[&EndpointSlice], port_name: &str, protocol: Protocol) -> Vec<SocketAddrV4> {
    let mut ready = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(number) = slice.ports.iter().flatten().find_map(|p| {
            (p.name.as_deref().unwrap_or("") == port_name
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol))
            .then_some(p.port)
            .flatten()
            .and_then(|n| u16::try_from(n).ok())
        }) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.as_ref();
            // discovery/v1: an unknown `ready` is ready; `serving` unknown is `ready`.
            let is_ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let is_serving = conditions.and_then(|c| c.serving).unwrap_or(is_ready);
            let is_terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            for address in &endpoint.addresses {
                let Ok(ip) = address.parse::<Ipv4Addr>() else {
                    continue;
                };
                let addr = SocketAddrV4::new(ip, number);
                if is_ready && !is_terminating {
                    ready.insert(addr);
                } else if is_serving && is_terminating {
                    terminating.insert(addr);
                }
            }
        }
    }
    if ready.is_empty() {
        terminating.into_iter().collect()
    } else {
        ready.into_iter().collect()
    }
}

/// What goes in a table: named chains (rules as text), affinity sets (their timeout), and the
/// elements of the verdict maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    table: String,
    /// Base and helper chains: their heads (hook line, or empty) and rules.
    chains: BTreeMap<String, (String, Vec<String>)>,
    /// Affinity sets by name, with their timeout in seconds.
    sets: BTreeMap<String, u32>,
    /// `map name -> (type, elements)`.
    maps: BTreeMap<&'static str, (&'static str, Vec<String>)>,
}

const SERVICE_MAP: &str = "ipv4_addr . inet_proto . inet_service : verdict";
const NODE_PORT_MAP: &str = "inet_proto . inet_service : verdict";

impl Ruleset {
    /// The table `table` (family `ip`) serving `ports`: Pods come in through `bridge`, the
    /// node's own connections through the output hook; addresses from outside `pod_cidr` are
    /// masqueraded on their way to a cluster IP.
    pub fn build(table: &str, bridge: &str, pod_cidr: Cidr, ports: &[ServicePort]) -> Ruleset {
        let mut r = Ruleset {
            table: table.to_owned(),
            ..Ruleset::default()
        };
        let chain = |head: &str, rules: &[String]| (head.to_owned(), rules.to_vec());
        r.chains.insert(
            "nat-prerouting".into(),
            chain(
                "type nat hook prerouting priority -100; policy accept;",
                &[format!("iifname \"{bridge}\" jump services")],
            ),
        );
        r.chains.insert(
            "nat-output".into(),
            chain(
                "type nat hook output priority -100; policy accept;",
                &["jump services".into()],
            ),
        );
        r.chains.insert(
            "nat-postrouting".into(),
            chain(
                "type nat hook postrouting priority 100; policy accept;",
                &[
                    format!("meta mark & {MASQUERADE_MARK} == 0x00000000 return"),
                    format!("meta mark set meta mark ^ {MASQUERADE_MARK}"),
                    "masquerade fully-random".into(),
                ],
            ),
        );
        r.chains.insert(
            "mark-for-masquerade".into(),
            chain(
                "",
                &[format!("meta mark set meta mark | {MASQUERADE_MARK}")],
            ),
        );
        r.chains.insert(
            "services".into(),
            chain(
                "",
                &[
                    "ip daddr . meta l4proto . th dport vmap @service-ips".into(),
                    "fib daddr type local meta l4proto . th dport vmap @service-nodeports".into(),
                ],
            ),
        );
        // Rejects what has no endpoint: a connection refused at once, as kube-proxy does.
        let check = [
            "ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services".into(),
            "ct state new fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports"
                .into(),
        ];
        for (name, hook) in [("filter-forward", "forward"), ("filter-output", "output")] {
            r.chains.insert(
                name.into(),
                chain(
                    &format!("type filter hook {hook} priority -10; policy accept;"),
                    &check,
                ),
            );
        }
        // Node ports are the node's own and its Pods' (nothing from beyond the node).
        r.chains.insert(
            "filter-input".into(),
            chain(
                "type filter hook input priority -10; policy accept;",
                &[format!("iifname {{ \"lo\", \"{bridge}\" }} {}", check[1])],
            ),
        );
        r.chains
            .insert("reject-chain".into(), chain("", &["reject".into()]));
        let mut service_ips = Vec::new();
        let mut node_ports = Vec::new();
        let mut no_endpoint_services = Vec::new();
        let mut no_endpoint_node_ports = Vec::new();
        for port in ports {
            let proto = port.protocol.nft();
            let ip_key = format!("{} . {proto} . {}", port.cluster_ip, port.port);
            let node_key = port.node_port.map(|n| format!("{proto} . {n}"));
            if port.endpoints.is_empty() {
                no_endpoint_services.push(format!("{ip_key} : goto reject-chain"));
                if let Some(key) = node_key {
                    no_endpoint_node_ports.push(format!("{key} : goto reject-chain"));
                }
                continue;
            }
            let key = port.key();
            let service_chain = format!("service-{key}");
            let mut rules = vec![format!(
                "ip daddr {} {proto} dport {} ip saddr != {pod_cidr} jump mark-for-masquerade",
                port.cluster_ip, port.port
            )];
            let mut picks = Vec::new();
            for (i, ep) in port.endpoints.iter().enumerate() {
                // `ip/port`: nft names take no colon.
                let ep_name = format!("{key}__{}/{}", ep.ip(), ep.port());
                let ep_chain = format!("endpoint-{ep_name}");
                let mut ep_rules = vec![format!("ip saddr {} jump mark-for-masquerade", ep.ip())];
                if let Some(timeout) = port.affinity {
                    // The timeout is in the set's name, so a changed one is a new set.
                    let set = format!("affinity-{ep_name}-{timeout}");
                    rules.push(format!("ip saddr @{set} goto {ep_chain}"));
                    ep_rules.push(format!("update @{set} {{ ip saddr }}"));
                    r.sets.insert(set, timeout);
                }
                ep_rules.push(format!("meta l4proto {proto} dnat to {ep}"));
                r.chains.insert(ep_chain.clone(), (String::new(), ep_rules));
                picks.push(format!("{i} : goto {ep_chain}"));
            }
            rules.push(format!(
                "numgen random mod {} vmap {{ {} }}",
                picks.len(),
                picks.join(", ")
            ));
            r.chains
                .insert(service_chain.clone(), (String::new(), rules));
            service_ips.push(format!("{ip_key} : goto {service_chain}"));
            if let Some(node_key) = node_key {
                let node_chain = format!("nodeport-{key}");
                r.chains.insert(
                    node_chain.clone(),
                    chain(
                        "",
                        &[
                            "jump mark-for-masquerade".into(),
                            format!("goto {service_chain}"),
                        ],
                    ),
                );
                node_ports.push(format!("{node_key} : goto {node_chain}"));
            }
        }
        r.maps.insert("service-ips", (SERVICE_MAP, service_ips));
        r.maps
            .insert("service-nodeports", (NODE_PORT_MAP, node_ports));
        r.maps
            .insert("no-endpoint-services", (SERVICE_MAP, no_endpoint_services));
        r.maps.insert(
            "no-endpoint-nodeports",
            (NODE_PORT_MAP, no_endpoint_node_ports),
        );
        r
    }

    /// The table as `nft -f` text: every map with its elements, and the sets and chains
    /// `wanted` names (with their rules).
    fn body(&self, wanted: impl Fn(&str) -> bool) -> String {
        let mut out = format!("table ip {} {{\n", self.table);
        for (name, (ty, elements)) in &self.maps {
            let _ = write!(out, "\tmap {name} {{\n\t\ttype {ty}\n");
            if !elements.is_empty() {
                let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(",\n\t\t\t"));
            }
            out.push_str("\t}\n");
        }
        for (name, timeout) in self.sets.iter().filter(|(n, _)| wanted(n)) {
            let _ = write!(
                out,
                "\tset {name} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout {timeout}s\n\t}}\n"
            );
        }
        for (name, (head, rules)) in self.chains.iter().filter(|(n, _)| wanted(n)) {
            let _ = writeln!(out, "\tchain {name} {{");
            if !head.is_empty() {
                let _ = writeln!(out, "\t\t{head}");
            }
            for rule in rules {
                let _ = writeln!(out, "\t\t{rule}");
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
        out
    }

    /// The one `nft -f` transaction that makes the table this ruleset. With `previous` (what
    /// the table holds now) it changes only what differs, as kube-proxy's partial syncs do:
    /// the maps are flushed and filled again (one element per Service port), chains whose
    /// rules changed are flushed and filled again, chains and sets no longer used are
    /// flushed and deleted, new ones added; the rest, and the entries of the affinity sets
    /// that stay, are left alone. Without `previous` (or when a base chain changed) it deletes
    /// the table, if any, and makes it anew.
    pub fn script(&self, previous: Option<&Ruleset>) -> String {
        let table = &self.table;
        let base_chains_same = |p: &Ruleset| {
            let heads = |r: &Ruleset| {
                r.chains
                    .iter()
                    .filter(|(_, (head, _))| !head.is_empty())
                    .map(|(n, (head, _))| (n.clone(), head.clone()))
                    .collect::<Vec<_>>()
            };
            heads(p) == heads(self)
        };
        let Some(previous) = previous.filter(|p| p.table == self.table && base_chains_same(p))
        else {
            return format!(
                "table ip {table} {{}}\ndelete table ip {table}\n{}",
                self.body(|_| true)
            );
        };
        let mut out = String::new();
        for name in previous.maps.keys() {
            let _ = writeln!(out, "flush map ip {table} {name}");
        }
        // Every rule that jumps to a chain going away is in a chain flushed here first.
        for (name, chain) in &previous.chains {
            if self.chains.get(name) != Some(chain) {
                let _ = writeln!(out, "flush chain ip {table} {name}");
            }
        }
        for name in previous.chains.keys() {
            if !self.chains.contains_key(name) {
                let _ = writeln!(out, "delete chain ip {table} {name}");
            }
        }
        for name in previous.sets.keys() {
            if !self.sets.contains_key(name) {
                let _ = writeln!(out, "delete set ip {table} {name}");
            }
        }
        out.push_str(&self.body(
            |name| match (previous.chains.get(name), self.chains.get(name)) {
                (Some(was), Some(now)) => was != now,
                (None, Some(_)) => true,
                _ => !previous.sets.contains_key(name),
            },
        ));
        out
    }
}

#[cfg(test)]
mod tests;
