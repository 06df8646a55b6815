//! Compiling a snapshot into a [`ZoneIndex`]: every name and record the module above lists,
//! then the pre-encoded answers. Pure: a snapshot in, an index out.
//!
//! Names are keyed by their wire form from the start, so the map built here is the index's own
//! (no second copy of every name while compiling, which would stay in the allocator's free
//! lists and so in the process's memory).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ferry_model::{Protocol, Service, Snapshot};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{
    Data, Lookup, MAX_KEY, Node, SCHEMA_VERSION, Span, Target, ZoneIndex, key_of, name_of,
};

/// Answers longer than this are not pre-encoded: they may not fit a plain UDP client, and the
/// general path decides about truncation.
const MAX_ENCODED: usize = 512;

pub(super) fn compile(
    snapshot: &Snapshot,
    domain: &str,
    ttl: u32,
    served_on: &[IpAddr],
) -> Result<ZoneIndex, String> {
    let origin = fqdn(domain).map_err(|e| format!("cluster domain {domain:?}: {e}"))?;
    let mut b = Builder {
        domain: domain.trim_end_matches('.').to_ascii_lowercase(),
        origin_len: key(&origin)?.len(),
        origin: origin.clone(),
        nodes: HashMap::with_capacity(names_expected(snapshot)),
        cluster_ptrs: HashMap::new(),
        endpoint_ptrs: HashMap::new(),
    };
    let ns_name = b.name(&format!("ns.dns.{}", b.domain))?;
    let soa = Record::from_rdata(
        origin.clone(),
        ttl,
        RData::SOA(SOA::new(
            ns_name.clone(),
            b.name(&format!("hostmaster.{}", b.domain))?,
            // Grows with each accepted change, which is what secondaries compare.
            (snapshot.version & u64::from(u32::MAX)) as u32,
            7200,
            1800,
            86400,
            ttl,
        )),
    );
    b.record(&origin, Data::Soa)?;
    b.record(&origin, Data::Ns(key(&ns_name)?))?;
    let kube_dns = snapshot
        .service("kube-system", "kube-dns")
        .map(|s| s.cluster_ips.as_slice())
        .filter(|ips| !ips.is_empty());
    for ip in kube_dns.unwrap_or(served_on) {
        b.record(&ns_name, Data::address(*ip))?;
    }
    b.ent(&ns_name)?;
    let version = b.name(&format!("dns-version.{}", b.domain))?;
    b.record(&version, Data::Txt(SCHEMA_VERSION))?;
    let svc = b.name(&format!("svc.{}", b.domain))?;
    b.ent(&svc)?;
    let pod_zone = b.name(&format!("pod.{}", b.domain))?;
    b.ent(&pod_zone)?;
    // Namespaces exist with or without Services; a hand-written snapshot may list none, and
    // then the Services' namespaces are the ones known.
    let namespaces: HashSet<String> = snapshot
        .namespaces
        .iter()
        .chain(snapshot.services.iter().map(|s| &s.namespace))
        .map(|ns| ns.to_ascii_lowercase())
        .collect();
    for ns in &namespaces {
        for under in ["svc", "pod"] {
            if let Err(e) = b
                .name(&format!("{ns}.{under}.{}", b.domain))
                .and_then(|name| b.ent(&name))
            {
                tracing::warn!(namespace = %ns, error = %e, "no DNS names for this namespace");
            }
        }
    }
    for service in &snapshot.services {
        // A Service whose name cannot form a DNS name is skipped, never a failed zone:
        // validation upstream makes this unreachable for manifests.
        if let Err(e) = b.service(snapshot, service) {
            tracing::warn!(service = %format!("{}/{}", service.namespace, service.name), error = %e, "no DNS records for this Service");
        }
    }
    b.reverse()?;
    let mut zone = ZoneIndex {
        origin,
        pod_zone,
        namespaces,
        soa,
        nodes: b.nodes,
        answers: Box::default(),
        ready: snapshot.version > 0,
    };
    if zone.ready {
        // A generous guess (answers run 30 to 100 bytes a name), so the arena is never copied
        // as it grows, each copy left in the allocator's free memory: pages never written are
        // not resident, and boxing it at the end gives back the rest.
        let mut answers = Vec::with_capacity(zone.nodes.len() * 128);
        let spans: Vec<Span> = zone
            .nodes
            .iter()
            .map(|(key, node)| {
                let start = answers.len();
                zone.encode(key, node, &mut answers);
                let len = answers.len() - start;
                match (u32::try_from(start), u32::try_from(len)) {
                    (Ok(start), Ok(len)) => Span { start, len },
                    // Past 4 GiB of answers: the rest take the general path.
                    _ => {
                        answers.truncate(start);
                        Span::default()
                    }
                }
            })
            .collect();
        // The same map, unchanged, iterates in the same order.
        for (node, span) in zone.nodes.values_mut().zip(spans) {
            node.answers = span;
        }
        zone.answers = answers.into_boxed_slice();
    }
    Ok(zone)
}

impl ZoneIndex {
    /// The answers to every plain question the zone answers positively at this name, encoded
    /// once (the format is [`Node`]'s) at the end of `out`, so the hot path sends them with a
    /// few bytes patched.
    fn encode(&self, key: &[u8], node: &Node, out: &mut Vec<u8>) {
        let mut types: Vec<RecordType> = node.records.iter().map(Data::record_type).collect();
        types.sort_by_key(|t| u16::from(*t));
        types.dedup();
        let name = name_of(key);
        for qtype in types {
            let Lookup::Answer {
                answers,
                additionals,
            } = self.lookup(&name, qtype)
            else {
                // An alias: its target is chased per query.
                continue;
            };
            let mut m = Message::new(0, MessageType::Response, OpCode::Query);
            m.metadata.authoritative = true;
            m.add_query(Query::query(name.clone(), qtype));
            m.answers = answers;
            m.additionals = additionals;
            let Ok(bytes) = m.to_vec() else { continue };
            // The question is the first name, so written whole: the key, then type and class.
            let question_end = 12 + key.len() + 4;
            if bytes.len() > MAX_ENCODED || bytes.get(12..12 + key.len()) != Some(key) {
                continue;
            }
            let kept = bytes.len() - (question_end - 12);
            let Ok(len) = u16::try_from(kept) else {
                continue;
            };
            out.extend_from_slice(&u16::from(qtype).to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&bytes[..12]);
            out.extend_from_slice(&bytes[question_end..]);
        }
    }
}

/// About how many names the zone of `snapshot` holds: a Service's own, a `_<proto>` and a
/// `_<port>._<proto>` per port, a reverse name per cluster IP, and per endpoint its name and
/// reverse name; a namespace's two. Sizing the map once leaves none of the tables it would
/// outgrow in the allocator's free memory, where they would stay resident.
fn names_expected(snapshot: &Snapshot) -> usize {
    let services: usize = snapshot
        .services
        .iter()
        .map(|s| 1 + s.cluster_ips.len() + 2 * s.ports.len() + 2 * s.endpoints.len())
        .sum();
    services + 2 * snapshot.namespaces.len() + 16
}

/// An address as a DNS label, as CoreDNS names endpoints without a hostname (`10-1-0-2`,
/// `2001-db8--1`; an IPv6 address ending in `::` gets a `0`, so the label ends in a digit).
fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => {
            let label = v6.to_string().replace(':', "-");
            if label.ends_with('-') {
                label + "0"
            } else {
                label
            }
        }
    }
}

fn fqdn(name: &str) -> Result<Name, String> {
    let mut n = Name::from_ascii(name).map_err(|e| e.to_string())?;
    n.set_fqdn(true);
    Ok(n.to_lowercase())
}

/// `name`'s key, shared.
fn key(name: &Name) -> Result<Target, String> {
    let mut buf = [0u8; MAX_KEY];
    key_of(name, &mut buf)
        .map(Arc::from)
        .ok_or_else(|| format!("{name}: longer than a DNS name may be"))
}

/// SRV weights as CoreDNS gives them: an equal share of 100 among the (address, port) pairs
/// behind the name, counted before two pairs with the same target and port become one record.
fn srv_weight(pairs: usize) -> u16 {
    u16::try_from(100 / pairs.max(1)).unwrap_or(100).max(1)
}

struct Builder {
    domain: String,
    origin: Name,
    /// The length of the origin's key: a key longer than it and ending in it is below it.
    origin_len: usize,
    nodes: HashMap<Box<[u8]>, Node>,
    /// Reverse names: a cluster IP's Service, else every endpoint name with that address.
    cluster_ptrs: HashMap<IpAddr, Vec<Target>>,
    endpoint_ptrs: HashMap<IpAddr, Vec<Target>>,
}

/// One SRV record to be: its target and port, from how many (address, port) pairs.
type SrvSet = Vec<(Target, u16)>;

/// A Service's ready endpoints' names by address, and their keys to share.
type Hosts = HashMap<IpAddr, (Name, Target)>;

impl Builder {
    fn name(&self, s: &str) -> Result<Name, String> {
        fqdn(s).map_err(|e| format!("{s:?}: {e}"))
    }

    fn record(&mut self, owner: &Name, data: Data) -> Result<(), String> {
        let mut buf = [0u8; MAX_KEY];
        let key = key_of(owner, &mut buf)
            .ok_or_else(|| format!("{owner}: longer than a DNS name may be"))?;
        if self.origin.zone_of(owner) {
            self.add_ancestors(key);
        }
        if !self.nodes.contains_key(key) {
            self.nodes.insert(key.into(), Node::default());
        }
        if let Some(node) = self.nodes.get_mut(key) {
            // Boxed to its exact size: a name has one to a few records, and there are many.
            let mut records = std::mem::take(&mut node.records).into_vec();
            records.push(data);
            node.records = records.into_boxed_slice();
        }
        Ok(())
    }

    /// A name that exists, with records or not.
    fn ent(&mut self, name: &Name) -> Result<(), String> {
        let mut buf = [0u8; MAX_KEY];
        let key = key_of(name, &mut buf)
            .ok_or_else(|| format!("{name}: longer than a DNS name may be"))?;
        self.add_ancestors(key);
        if !self.nodes.contains_key(key) {
            self.nodes.insert(key.into(), Node::default());
        }
        Ok(())
    }

    /// Every name between `key` and the apex exists (an empty non-terminal at least). A name
    /// already held has its ancestors already: they are added before it, always.
    fn add_ancestors(&mut self, key: &[u8]) {
        let mut parent = parent(key);
        while parent.len() > self.origin_len && !self.nodes.contains_key(parent) {
            self.nodes.insert(parent.into(), Node::default());
            parent = self::parent(parent);
        }
    }

    /// SRV records at `owner`: one per (target, port), weighted by all the pairs.
    fn srv(&mut self, owner: &Name, pairs: SrvSet) -> Result<(), String> {
        let weight = srv_weight(pairs.len());
        let mut seen = HashSet::new();
        for (target, port) in pairs {
            if seen.insert((target.clone(), port)) {
                self.record(
                    owner,
                    Data::Srv {
                        weight,
                        port,
                        target,
                    },
                )?;
            }
        }
        Ok(())
    }

    fn service(&mut self, snapshot: &Snapshot, s: &Service) -> Result<(), String> {
        let base = self.name(&format!("{}.{}.svc.{}", s.name, s.namespace, self.domain))?;
        if let Some(external) = &s.external_name {
            let target = fqdn(external).map_err(|e| format!("externalName {external:?}: {e}"))?;
            return self.record(&base, Data::Cname(key(&target)?));
        }
        let hosts = self.endpoints(s, &base)?;
        self.endpoint_srv(snapshot, s, &hosts)?;
        if s.headless {
            return self.headless(snapshot, s, &base, &hosts);
        }
        // The Service exists even with nothing to answer (no cluster IP yet).
        self.ent(&base)?;
        let shared = key(&base)?;
        for ip in &s.cluster_ips {
            self.record(&base, Data::address(*ip))?;
            self.cluster_ptrs
                .entry(*ip)
                .or_default()
                .push(shared.clone());
        }
        let ips = s.cluster_ips.len();
        let mut all = SrvSet::new();
        for port in &s.ports {
            let pairs: SrvSet = (0..ips).map(|_| (shared.clone(), port.port)).collect();
            all.extend(pairs.iter().cloned());
            if !port.name.is_empty() {
                let owner = self.srv_owner(&port.name, port.protocol, &base)?;
                self.srv(&owner, pairs)?;
            }
        }
        // CoreDNS answers SRV for the Service's own name with every port.
        self.srv(&base, all)
    }

    /// `<host>.<svc>.<ns>.svc.<zone>` for each ready endpoint, and its reverse name: the
    /// endpoints' names by address.
    fn endpoints(&mut self, s: &Service, base: &Name) -> Result<Hosts, String> {
        let mut hosts = Hosts::new();
        for ep in s.endpoints.iter().filter(|e| e.ready) {
            let label = ep.hostname.clone().unwrap_or_else(|| dashed(ep.address));
            let host = self.name(&format!("{label}.{base}"))?;
            self.record(&host, Data::address(ep.address))?;
            let shared = key(&host)?;
            self.endpoint_ptrs
                .entry(ep.address)
                .or_default()
                .push(shared.clone());
            hosts.insert(ep.address, (host, shared));
        }
        Ok(hosts)
    }

    /// SRV at each endpoint's name: the ports it serves, as CoreDNS answers an endpoint query
    /// without a port.
    fn endpoint_srv(
        &mut self,
        snapshot: &Snapshot,
        s: &Service,
        hosts: &Hosts,
    ) -> Result<(), String> {
        let mut by_host: HashMap<&Name, SrvSet> = HashMap::new();
        for port in &s.ports {
            let Some(cluster) = snapshot.cluster(&s.cluster_key(port)) else {
                continue;
            };
            for e in cluster.ready_endpoints() {
                if let Some((host, shared)) = hosts.get(&e.address) {
                    by_host
                        .entry(host)
                        .or_default()
                        .push((shared.clone(), e.port));
                }
            }
        }
        for (host, pairs) in by_host {
            self.srv(host, pairs)?;
        }
        Ok(())
    }

    fn headless(
        &mut self,
        snapshot: &Snapshot,
        s: &Service,
        base: &Name,
        hosts: &Hosts,
    ) -> Result<(), String> {
        // Spec 2.4.1: no ready endpoint, no name (NXDOMAIN), nor names below it.
        for ep in s.endpoints.iter().filter(|e| e.ready) {
            self.record(base, Data::address(ep.address))?;
        }
        let mut all = SrvSet::new();
        for port in &s.ports {
            let Some(cluster) = snapshot.cluster(&s.cluster_key(port)) else {
                continue;
            };
            let pairs: SrvSet = cluster
                .ready_endpoints()
                .filter_map(|e| hosts.get(&e.address).map(|(_, h)| (h.clone(), e.port)))
                .collect();
            all.extend(pairs.iter().cloned());
            if !port.name.is_empty() && !pairs.is_empty() {
                let owner = self.srv_owner(&port.name, port.protocol, base)?;
                self.srv(&owner, pairs)?;
            }
        }
        self.srv(base, all)
    }

    fn srv_owner(&self, port: &str, protocol: Protocol, base: &Name) -> Result<Name, String> {
        let proto = protocol.as_str().to_ascii_lowercase();
        self.name(&format!("_{port}._{proto}.{base}"))
    }

    /// PTR records: a cluster IP names its Service; another address names every ready
    /// endpoint that has it (CoreDNS's reverse lookup, which tries cluster IPs first).
    fn reverse(&mut self) -> Result<(), String> {
        let mut ptrs = std::mem::take(&mut self.endpoint_ptrs);
        ptrs.retain(|ip, _| !self.cluster_ptrs.contains_key(ip));
        ptrs.extend(std::mem::take(&mut self.cluster_ptrs));
        for (ip, targets) in ptrs {
            let owner = Name::from(ip);
            let mut seen = HashSet::new();
            for target in targets {
                if seen.insert(target.clone()) {
                    self.record(&owner, Data::Ptr(target))?;
                }
            }
        }
        Ok(())
    }
}

/// The key of the name one label up (the root's is itself).
fn parent(key: &[u8]) -> &[u8] {
    let first = key.first().map_or(0, |len| usize::from(*len));
    key.get(1 + first..)
        .filter(|p| !p.is_empty())
        .unwrap_or(key)
}
