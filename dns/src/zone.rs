//! The cluster zone compiled from a snapshot: every name the Kubernetes DNS specification
//! (schema 1.1.0) defines, with its records, in one immutable index that a lookup reads without
//! locks. A new snapshot compiles into a new index that replaces this one whole. Where the spec
//! is silent the answers are CoreDNS's `kubernetes` plugin's (`pods insecure`).
//!
//! What it holds, under the cluster domain `<zone>`:
//! - the apex: SOA and NS `ns.dns.<zone>`, whose A/AAAA are kube-system/kube-dns's cluster IPs
//!   (else the address DNS is served on); `dns-version.<zone>` TXT;
//! - `<ns>.svc.<zone>` and `<ns>.pod.<zone>` for every namespace that exists (NODATA);
//! - `<svc>.<ns>.svc.<zone>`: A/AAAA of a ClusterIP Service's cluster IPs, of a headless
//!   Service's ready endpoints (none ready: the name does not exist, spec 2.4.1), or a CNAME
//!   for an ExternalName Service; SRV for each of its ports (CoreDNS);
//! - `<host>.<svc>.<ns>.svc.<zone>` for each ready endpoint of any Service but an ExternalName
//!   one (its hostname, else its address with dashes, as CoreDNS names them): A/AAAA, and SRV
//!   for the ports it serves;
//! - `_<port>._<proto>.<svc>.<ns>.svc.<zone>` SRV for each named port;
//! - PTR for cluster IPs, and for ready endpoints' addresses that are no cluster IP;
//! - every ancestor of those names, so that a name that exists with no records answers NODATA;
//! - `<a-b-c-d>.<ns>.pod.<zone>` is computed at lookup time, not stored (`pods insecure`).
//!
//! SRV records are one per (target, port), weight 100 shared equally among the (address,
//! port) pairs behind them, priority 0, as CoreDNS computes them; answers carry the targets'
//! A and AAAA in the additional section. Reverse names the index does not hold fall outside it:
//! they are forwarded, like every name outside the cluster domain.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ferry_model::{Protocol, Service, Snapshot};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The schema version of the Kubernetes DNS specification ferry implements.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// The cluster zone, compiled.
#[derive(Debug)]
pub struct ZoneIndex {
    origin: Name,
    /// `pod.<zone>`, for the computed pod names.
    pod_zone: Name,
    /// The namespaces that exist, lowercase: pod names in others do not.
    namespaces: HashSet<String>,
    soa: Record,
    nodes: HashMap<Name, Node>,
    /// Pre-encoded positive answers by lowercase wire name, then type.
    templates: Templates,
    /// Nothing accepted yet: the zone's contents are unknown, so in-zone names fail.
    ready: bool,
}

/// Encoded answers by lowercase wire name, then by type.
type Templates = HashMap<Box<[u8]>, Vec<(u16, Box<[u8]>)>>;

/// The records at one name, in the order `ANY` shows them (A/AAAA first).
#[derive(Debug, Default)]
struct Node {
    records: Vec<Data>,
}

/// One record, compact: the owner is its node's name, the TTL the zone's, and names are shared
/// between the records that point at them. A hickory `Record` (272 bytes, its names inline) is
/// built only when a query needs one; this keeps the zone at a fraction of the memory.
#[derive(Clone, Debug)]
enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        weight: u16,
        port: u16,
        target: Arc<Name>,
    },
    Ptr(Arc<Name>),
    Cname(Arc<Name>),
    Ns(Arc<Name>),
    Txt(&'static str),
    /// The zone's SOA, at its apex.
    Soa,
}

impl Data {
    fn record_type(&self) -> RecordType {
        match self {
            Data::A(_) => RecordType::A,
            Data::Aaaa(_) => RecordType::AAAA,
            Data::Srv { .. } => RecordType::SRV,
            Data::Ptr(_) => RecordType::PTR,
            Data::Cname(_) => RecordType::CNAME,
            Data::Ns(_) => RecordType::NS,
            Data::Txt(_) => RecordType::TXT,
            Data::Soa => RecordType::SOA,
        }
    }

    fn address(ip: IpAddr) -> Data {
        match ip {
            IpAddr::V4(v4) => Data::A(v4),
            IpAddr::V6(v6) => Data::Aaaa(v6),
        }
    }
}

/// What the zone says about a name and type.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// Records of the type asked, plus records for the additional section (SRV targets).
    Answer {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name is an alias (ExternalName Service): the CNAME, and its target to chase.
    Alias { cname: Box<Record>, target: Name },
    /// The name exists with other types (RFC 2308 NODATA).
    NoData,
    /// The name does not exist in the zone.
    NxDomain,
    /// The zone is not known yet (no snapshot accepted).
    NotReady,
    /// The name is not in the cluster zone: forward it.
    Outside,
}

impl ZoneIndex {
    /// Compiles the zone for `snapshot` under `domain` (e.g. `cluster.local`), records with `ttl`.
    pub fn compile(snapshot: &Snapshot, domain: &str, ttl: u32) -> Result<ZoneIndex, String> {
        Self::compile_serving(snapshot, domain, ttl, &[])
    }

    /// As [`ZoneIndex::compile`]; `served_on` are the addresses this DNS answers on, for
    /// `ns.dns.<zone>` when the snapshot has no kube-system/kube-dns Service with a cluster IP
    /// (CoreDNS falls back to its own addresses the same way).
    pub fn compile_serving(
        snapshot: &Snapshot,
        domain: &str,
        ttl: u32,
        served_on: &[IpAddr],
    ) -> Result<ZoneIndex, String> {
        let origin = fqdn(domain).map_err(|e| format!("cluster domain {domain:?}: {e}"))?;
        let mut b = Builder {
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            origin: origin.clone(),
            nodes: HashMap::new(),
            ents: HashSet::new(),
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
        b.record(&origin, Data::Soa);
        let ns_name = Arc::new(ns_name);
        b.record(&origin, Data::Ns(ns_name.clone()));
        let kube_dns = snapshot
            .service("kube-system", "kube-dns")
            .map(|s| s.cluster_ips.as_slice())
            .filter(|ips| !ips.is_empty());
        for ip in kube_dns.unwrap_or(served_on) {
            b.record(&ns_name, Data::address(*ip));
        }
        b.ent((*ns_name).clone());
        let version = b.name(&format!("dns-version.{}", b.domain))?;
        b.record(&version, Data::Txt(SCHEMA_VERSION));
        let svc = b.name(&format!("svc.{}", b.domain))?;
        b.ent(svc);
        let pod_zone = b.name(&format!("pod.{}", b.domain))?;
        b.ent(pod_zone.clone());
        // Namespaces exist with or without Services; a hand-written snapshot may list none,
        // and then the Services' namespaces are the ones known.
        let namespaces: HashSet<String> = snapshot
            .namespaces
            .iter()
            .chain(snapshot.services.iter().map(|s| &s.namespace))
            .map(|ns| ns.to_ascii_lowercase())
            .collect();
        for ns in &namespaces {
            for under in ["svc", "pod"] {
                match b.name(&format!("{ns}.{under}.{}", b.domain)) {
                    Ok(name) => b.ent(name),
                    Err(e) => {
                        tracing::warn!(namespace = %ns, error = %e, "no DNS names for this namespace")
                    }
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
        b.reverse();
        let mut nodes = b.nodes;
        for name in b.ents {
            nodes.entry(name).or_default();
        }
        let mut zone = ZoneIndex {
            origin,
            pod_zone,
            namespaces,
            soa,
            nodes,
            templates: HashMap::new(),
            ready: snapshot.version > 0,
        };
        if zone.ready {
            zone.templates = zone.encode_templates();
        }
        Ok(zone)
    }

    /// Encodes the answer to every plain question the zone answers positively, once, so the
    /// hot path sends it with a few bytes patched (see [`ZoneIndex::template`]).
    fn encode_templates(&self) -> Templates {
        let mut templates = Templates::new();
        for (name, node) in &self.nodes {
            let mut types: Vec<RecordType> = node.records.iter().map(Data::record_type).collect();
            types.sort_by_key(|t| u16::from(*t));
            types.dedup();
            for qtype in types {
                let Lookup::Answer {
                    answers,
                    additionals,
                } = self.lookup(name, qtype)
                else {
                    // An alias: its target is chased per query.
                    continue;
                };
                let mut m = Message::new(0, MessageType::Response, OpCode::Query);
                m.metadata.authoritative = true;
                m.add_query(Query::query(name.clone(), qtype));
                m.answers = answers;
                m.additionals = additionals;
                // Answers that may not fit a plain UDP client take the general path.
                if let Ok(bytes) = m.to_vec()
                    && bytes.len() <= 512
                {
                    templates
                        .entry(wire(name).into_boxed_slice())
                        .or_default()
                        .push((u16::from(qtype), bytes.into_boxed_slice()));
                }
            }
        }
        templates
    }

    /// The encoded answer to a plain question for `name` (uncompressed wire form, lowercase)
    /// and `qtype`: id 0, flags of an authoritative answer, the question in lowercase, no OPT.
    pub fn template(&self, name: &[u8], qtype: u16) -> Option<&[u8]> {
        self.templates
            .get(name)?
            .iter()
            .find(|(t, _)| *t == qtype)
            .map(|(_, bytes)| &bytes[..])
    }

    /// The zone's apex, e.g. `cluster.local.`.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The SOA record for the authority section of negative answers.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// Whether `name` is in the cluster zone (the index answers for it, authoritatively).
    pub fn in_zone(&self, name: &Name) -> bool {
        self.origin.zone_of(name)
    }

    /// Looks `name` up for `qtype`. Answer records carry the canonical (lowercase) owner name;
    /// the caller gives them the question's case.
    pub fn lookup(&self, name: &Name, qtype: RecordType) -> Lookup {
        let in_zone = self.in_zone(name);
        if in_zone && !self.ready {
            return Lookup::NotReady;
        }
        let Some((owner, node)) = self.nodes.get_key_value(name) else {
            if !in_zone {
                return Lookup::Outside;
            }
            return self.pod(name, qtype);
        };
        // ANY as CoreDNS answers it in its zone: NODATA where the name exists (RFC 8482 lets a
        // server answer ANY minimally; clients then ask for the types they want).
        if qtype == RecordType::ANY {
            return Lookup::NoData;
        }
        if let Some(cname) = node.records.iter().find_map(|d| match d {
            Data::Cname(target) => Some(target),
            _ => None,
        }) && qtype != RecordType::CNAME
        {
            return Lookup::Alias {
                cname: Box::new(self.record(owner, &Data::Cname(cname.clone()))),
                target: (**cname).clone(),
            };
        }
        let answers: Vec<Record> = node
            .records
            .iter()
            .filter(|d| d.record_type() == qtype)
            .map(|d| self.record(owner, d))
            .collect();
        if answers.is_empty() {
            return Lookup::NoData;
        }
        let additionals = self.additionals(&answers);
        Lookup::Answer {
            answers,
            additionals,
        }
    }

    /// The addresses of SRV and NS targets, each once, for the additional section.
    fn additionals(&self, answers: &[Record]) -> Vec<Record> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for r in answers {
            let target = match &r.data {
                RData::SRV(srv) => &srv.target,
                RData::NS(ns) => &ns.0,
                _ => continue,
            };
            if seen.insert(target)
                && let Some((owner, node)) = self.nodes.get_key_value(target)
            {
                out.extend(
                    node.records
                        .iter()
                        .filter(|d| matches!(d, Data::A(_) | Data::Aaaa(_)))
                        .map(|d| self.record(owner, d)),
                );
            }
        }
        out
    }

    /// The hickory record for `data` at `owner`.
    fn record(&self, owner: &Name, data: &Data) -> Record {
        let rdata = match data {
            Data::A(v4) => RData::A(A(*v4)),
            Data::Aaaa(v6) => RData::AAAA(AAAA(*v6)),
            Data::Srv {
                weight,
                port,
                target,
            } => RData::SRV(SRV::new(0, *weight, *port, (**target).clone())),
            Data::Ptr(target) => RData::PTR(PTR((**target).clone())),
            Data::Cname(target) => RData::CNAME(CNAME((**target).clone())),
            Data::Ns(target) => RData::NS(NS((**target).clone())),
            Data::Txt(text) => RData::TXT(TXT::new(vec![(*text).to_owned()])),
            Data::Soa => return self.soa.clone(),
        };
        Record::from_rdata(owner.clone(), self.soa.ttl, rdata)
    }

    /// `<a-b-c-d>.<ns>.pod.<zone>`: the address is in the name (CoreDNS `pods insecure`).
    fn pod(&self, name: &Name, qtype: RecordType) -> Lookup {
        if !self.pod_zone.zone_of(name) {
            return Lookup::NxDomain;
        }
        let extra = name.num_labels() - self.pod_zone.num_labels();
        let mut labels = name.iter();
        match extra {
            // `<ns>.pod.<zone>` of a namespace that does not exist (those that do are stored).
            1 => Lookup::NxDomain,
            2 => {
                let (Some(ip), Some(ns)) = (labels.next(), labels.next()) else {
                    return Lookup::NxDomain;
                };
                let (Ok(ip), Ok(ns)) = (std::str::from_utf8(ip), std::str::from_utf8(ns)) else {
                    return Lookup::NxDomain;
                };
                // CoreDNS answers pod names only in namespaces that exist.
                if !self.namespaces.contains(&ns.to_ascii_lowercase()) {
                    return Lookup::NxDomain;
                }
                let Some(ip) = pod_ip(ip) else {
                    return Lookup::NxDomain;
                };
                let owner = name.to_lowercase();
                let data = match (ip, qtype) {
                    (IpAddr::V4(v4), RecordType::A) => RData::A(A(v4)),
                    (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(v6)),
                    _ => return Lookup::NoData,
                };
                Lookup::Answer {
                    answers: vec![Record::from_rdata(owner, self.soa.ttl, data)],
                    additionals: Vec::new(),
                }
            }
            _ => Lookup::NxDomain,
        }
    }

    /// How many names the zone holds (for metrics and tests).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// A name in uncompressed wire form, lowercase: the key of [`ZoneIndex::template`].
fn wire(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

/// The address in a pod name: `10-1-2-3` or `fd00--1` (IPv6 with `-` for `:`).
fn pod_ip(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
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

/// SRV weights as CoreDNS gives them: an equal share of 100 among the (address, port) pairs
/// behind the name, counted before two pairs with the same target and port become one record.
fn srv_weight(pairs: usize) -> u16 {
    u16::try_from(100 / pairs.max(1)).unwrap_or(100).max(1)
}

struct Builder {
    domain: String,
    origin: Name,
    nodes: HashMap<Name, Node>,
    /// Ancestors of stored names: they exist, with no records of their own.
    ents: HashSet<Name>,
    /// Reverse names: a cluster IP's Service, else every endpoint name with that address.
    cluster_ptrs: HashMap<IpAddr, Vec<Arc<Name>>>,
    endpoint_ptrs: HashMap<IpAddr, Vec<Arc<Name>>>,
}

/// One SRV record to be: its target and port, from how many (address, port) pairs.
type SrvSet = Vec<(Arc<Name>, u16)>;

impl Builder {
    fn name(&self, s: &str) -> Result<Name, String> {
        fqdn(s).map_err(|e| format!("{s:?}: {e}"))
    }

    fn record(&mut self, owner: &Name, data: Data) {
        if self.origin.zone_of(owner) {
            self.add_ancestors(owner);
        }
        match self.nodes.get_mut(owner) {
            Some(node) => node.records.push(data),
            None => {
                self.nodes.insert(
                    owner.clone(),
                    Node {
                        records: vec![data],
                    },
                );
            }
        }
    }

    fn ent(&mut self, name: Name) {
        self.add_ancestors(&name);
        self.ents.insert(name);
    }

    /// SRV records at `owner`: one per (target, port), weighted by all the pairs.
    fn srv(&mut self, owner: &Name, pairs: SrvSet) {
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
                );
            }
        }
    }

    fn service(&mut self, snapshot: &Snapshot, s: &Service) -> Result<(), String> {
        let base = self.name(&format!("{}.{}.svc.{}", s.name, s.namespace, self.domain))?;
        if let Some(external) = &s.external_name {
            let target = fqdn(external).map_err(|e| format!("externalName {external:?}: {e}"))?;
            self.record(&base, Data::Cname(Arc::new(target)));
            return Ok(());
        }
        let hosts = self.endpoints(s, &base)?;
        self.endpoint_srv(snapshot, s, &hosts);
        if s.headless {
            return self.headless(snapshot, s, &base, &hosts);
        }
        // The Service exists even with nothing to answer (no cluster IP yet).
        self.ent(base.clone());
        let shared = Arc::new(base.clone());
        for ip in &s.cluster_ips {
            self.record(&base, Data::address(*ip));
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
                self.srv(&owner, pairs);
            }
        }
        // CoreDNS answers SRV for the Service's own name with every port.
        self.srv(&base, all);
        Ok(())
    }

    /// `<host>.<svc>.<ns>.svc.<zone>` for each ready endpoint, and its reverse name: the
    /// endpoints' names by address.
    fn endpoints(
        &mut self,
        s: &Service,
        base: &Name,
    ) -> Result<HashMap<IpAddr, Arc<Name>>, String> {
        let mut hosts = HashMap::new();
        for ep in s.endpoints.iter().filter(|e| e.ready) {
            let label = ep.hostname.clone().unwrap_or_else(|| dashed(ep.address));
            let host = Arc::new(self.name(&format!("{label}.{base}"))?);
            self.record(&host, Data::address(ep.address));
            self.endpoint_ptrs
                .entry(ep.address)
                .or_default()
                .push(host.clone());
            hosts.insert(ep.address, host);
        }
        Ok(hosts)
    }

    /// SRV at each endpoint's name: the ports it serves, as CoreDNS answers an endpoint query
    /// without a port.
    fn endpoint_srv(
        &mut self,
        snapshot: &Snapshot,
        s: &Service,
        hosts: &HashMap<IpAddr, Arc<Name>>,
    ) {
        let mut by_host: HashMap<Arc<Name>, SrvSet> = HashMap::new();
        for port in &s.ports {
            let Some(cluster) = snapshot.cluster(&s.cluster_key(port)) else {
                continue;
            };
            for e in cluster.ready_endpoints() {
                if let Some(host) = hosts.get(&e.address) {
                    by_host
                        .entry(host.clone())
                        .or_default()
                        .push((host.clone(), e.port));
                }
            }
        }
        for (host, pairs) in by_host {
            self.srv(&host, pairs);
        }
    }

    fn headless(
        &mut self,
        snapshot: &Snapshot,
        s: &Service,
        base: &Name,
        hosts: &HashMap<IpAddr, Arc<Name>>,
    ) -> Result<(), String> {
        // Spec 2.4.1: no ready endpoint, no name (NXDOMAIN), nor names below it.
        for ep in s.endpoints.iter().filter(|e| e.ready) {
            self.record(base, Data::address(ep.address));
        }
        let mut all = SrvSet::new();
        for port in &s.ports {
            let Some(cluster) = snapshot.cluster(&s.cluster_key(port)) else {
                continue;
            };
            let pairs: SrvSet = cluster
                .ready_endpoints()
                .filter_map(|e| hosts.get(&e.address).map(|h| (h.clone(), e.port)))
                .collect();
            all.extend(pairs.iter().cloned());
            if !port.name.is_empty() && !pairs.is_empty() {
                let owner = self.srv_owner(&port.name, port.protocol, base)?;
                self.srv(&owner, pairs);
            }
        }
        self.srv(base, all);
        Ok(())
    }

    fn srv_owner(&self, port: &str, protocol: Protocol, base: &Name) -> Result<Name, String> {
        let proto = protocol.as_str().to_ascii_lowercase();
        self.name(&format!("_{port}._{proto}.{base}"))
    }

    /// PTR records: a cluster IP names its Service; another address names every ready
    /// endpoint that has it (CoreDNS's reverse lookup, which tries cluster IPs first).
    fn reverse(&mut self) {
        let mut ptrs = std::mem::take(&mut self.endpoint_ptrs);
        ptrs.retain(|ip, _| !self.cluster_ptrs.contains_key(ip));
        ptrs.extend(std::mem::take(&mut self.cluster_ptrs));
        for (ip, targets) in ptrs {
            let owner = Name::from(ip);
            let mut seen = HashSet::new();
            for target in targets {
                if seen.insert(target.clone()) {
                    self.record(&owner, Data::Ptr(target));
                }
            }
        }
    }

    /// Every name between `name` and the apex exists (an empty non-terminal at least).
    fn add_ancestors(&mut self, name: &Name) {
        let mut parent = name.base_name();
        while parent.num_labels() > self.origin.num_labels() && self.ents.insert(parent.clone()) {
            parent = parent.base_name();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
