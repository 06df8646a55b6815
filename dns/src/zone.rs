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
//!
//! How it is stored (what a Service costs is most of ferry's memory in a large cluster): one map
//! from each name's key (its uncompressed wire form, lowercase: what a query carries, so the hot
//! path looks a question up without parsing it) to the name's records, compact (an address, or
//! a port and the key of a target shared by every record pointing at it), and the answers to
//! the plain questions it answers positively, encoded once at compile time without their
//! question, all of them in one allocation that each name points into. hickory `Name`s and `Record`s are built only when a query takes the general path.
//! Compiling is [`build`]'s.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ferry_model::Snapshot;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

mod build;

/// The schema version of the Kubernetes DNS specification ferry implements.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// The longest name in wire form (RFC 1035 §3.1), and so the longest key.
pub const MAX_KEY: usize = 255;

/// The cluster zone, compiled.
#[derive(Debug)]
pub struct ZoneIndex {
    origin: Name,
    /// `pod.<zone>`, for the computed pod names.
    pod_zone: Name,
    /// The namespaces that exist, lowercase: pod names in others do not.
    namespaces: HashSet<String>,
    soa: Record,
    /// Every name the zone holds, empty non-terminals included, by key ([`key_of`]).
    nodes: HashMap<Box<[u8]>, Node>,
    /// Every name's pre-encoded answers, one name's after another: one allocation for the
    /// whole zone rather than one per name (each with the allocator's header and rounding, and
    /// scattered among what compiling them left free).
    answers: Box<[u8]>,
    /// Nothing accepted yet: the zone's contents are unknown, so in-zone names fail.
    ready: bool,
}

/// The records at one name, in the order `ANY` shows them (A/AAAA first), boxed to their exact
/// size (most names have one or two), and where its pre-encoded answers are in the zone's
/// `answers`: one after another, each a type (2 bytes), a length (2 bytes) and that many bytes
/// of [`Encoded`] answer.
#[derive(Debug, Default)]
struct Node {
    records: Box<[Data]>,
    answers: Span,
}

/// A range of the zone's `answers`, in 8 bytes rather than a slice's 16.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// A name records point at, as a key ([`key_of`]), shared by every record pointing at it.
type Target = Arc<[u8]>;

/// One record, compact: the owner is its node's name, the TTL the zone's. A hickory `Record`
/// (272 bytes, its names inline) is built only when a query needs one.
#[derive(Clone, Debug)]
enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        weight: u16,
        port: u16,
        target: Target,
    },
    Ptr(Target),
    Cname(Target),
    Ns(Target),
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

    /// The name whose addresses go in the additional section with this record.
    fn additional(&self) -> Option<&Target> {
        match self {
            Data::Srv { target, .. } | Data::Ns(target) => Some(target),
            _ => None,
        }
    }
}

/// A pre-encoded answer to a plain question (one, class IN, no OPT): the response as the
/// general path encodes it for id 0 and an authoritative answer's flags, with its question
/// left out. The question is the query's own (the name in the client's case, the type and
/// class), and is the same length as the one encoded, so the compression pointers in the rest
/// still point where they should.
#[derive(Clone, Copy, Debug)]
pub struct Encoded<'a> {
    /// The 12-byte header.
    pub header: &'a [u8],
    /// Everything after the question: answers and additional records.
    pub rest: &'a [u8],
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
        build::compile(snapshot, domain, ttl, served_on)
    }

    /// The pre-encoded answer to a plain question for `key` (a name's uncompressed wire form,
    /// lowercase) and `qtype`, if the zone answers it positively within 512 bytes.
    pub fn encoded(&self, key: &[u8], qtype: u16) -> Option<Encoded<'_>> {
        let mut answers = self.answers_of(self.nodes.get(key)?);
        while let [t0, t1, l0, l1, tail @ ..] = answers {
            let len = usize::from(u16::from_be_bytes([*l0, *l1]));
            let (bytes, next) = tail.split_at_checked(len)?;
            if u16::from_be_bytes([*t0, *t1]) == qtype {
                let (header, rest) = bytes.split_at_checked(12)?;
                return Some(Encoded { header, rest });
            }
            answers = next;
        }
        None
    }

    /// `node`'s pre-encoded answers.
    fn answers_of(&self, node: &Node) -> &[u8] {
        let start = node.answers.start as usize;
        self.answers
            .get(start..start + node.answers.len as usize)
            .unwrap_or_default()
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
        let mut buf = [0u8; MAX_KEY];
        let Some(node) = key_of(name, &mut buf).and_then(|key| self.nodes.get(key)) else {
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
        let owner = name.to_lowercase();
        if let Some(cname) = node.records.iter().find_map(|d| match d {
            Data::Cname(target) => Some(target),
            _ => None,
        }) && qtype != RecordType::CNAME
        {
            return Lookup::Alias {
                cname: Box::new(self.record(&owner, &Data::Cname(cname.clone()))),
                target: name_of(cname),
            };
        }
        let matching = || node.records.iter().filter(|d| d.record_type() == qtype);
        let answers: Vec<Record> = matching().map(|d| self.record(&owner, d)).collect();
        if answers.is_empty() {
            return Lookup::NoData;
        }
        Lookup::Answer {
            answers,
            additionals: self.additionals(matching()),
        }
    }

    /// The addresses of SRV and NS targets, each once, for the additional section.
    fn additionals<'a>(&self, answers: impl Iterator<Item = &'a Data>) -> Vec<Record> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for target in answers.filter_map(Data::additional) {
            if seen.insert(target)
                && let Some(node) = self.nodes.get(&target[..])
            {
                let owner = name_of(target);
                out.extend(
                    node.records
                        .iter()
                        .filter(|d| matches!(d, Data::A(_) | Data::Aaaa(_)))
                        .map(|d| self.record(&owner, d)),
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
            } => RData::SRV(SRV::new(0, *weight, *port, name_of(target))),
            Data::Ptr(target) => RData::PTR(PTR(name_of(target))),
            Data::Cname(target) => RData::CNAME(CNAME(name_of(target))),
            Data::Ns(target) => RData::NS(NS(name_of(target))),
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

    /// Every (name, type) with a pre-encoded answer, for tests comparing it with the general
    /// path.
    #[cfg(test)]
    pub(crate) fn encoded_questions(&self) -> Vec<(Name, RecordType)> {
        let mut out = Vec::new();
        for (key, node) in &self.nodes {
            let mut answers = self.answers_of(node);
            while let [t0, t1, l0, l1, tail @ ..] = answers {
                let len = usize::from(u16::from_be_bytes([*l0, *l1]));
                out.push((
                    name_of(key),
                    RecordType::from(u16::from_be_bytes([*t0, *t1])),
                ));
                answers = &tail[len.min(tail.len())..];
            }
        }
        out
    }

    /// How many names the zone holds (for metrics and tests).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// `name`'s key: its uncompressed wire form, lowercase, written into `buf`. `None` only for a
/// name longer than DNS allows, which no zone holds.
pub fn key_of<'b>(name: &Name, buf: &'b mut [u8; MAX_KEY]) -> Option<&'b [u8]> {
    let mut at = 0;
    for label in name.iter() {
        let end = at + 1 + label.len();
        let out = buf.get_mut(at..end)?;
        out[0] = u8::try_from(label.len()).ok()?;
        for (o, b) in out[1..].iter_mut().zip(label) {
            *o = b.to_ascii_lowercase();
        }
        at = end;
    }
    *buf.get_mut(at)? = 0;
    Some(&buf[..=at])
}

/// The name a key spells (the inverse of [`key_of`]).
fn name_of(key: &[u8]) -> Name {
    let mut labels = Vec::new();
    let mut rest = key;
    while let [len, tail @ ..] = rest
        && *len > 0
        && let Some((label, next)) = tail.split_at_checked(usize::from(*len))
    {
        labels.push(label);
        rest = next;
    }
    // Keys are only ever made from valid names by `key_of`, so this cannot fail; the root
    // would be a wrong answer, never a crash.
    Name::from_labels(labels).unwrap_or_else(|_| Name::root())
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

#[cfg(test)]
pub(crate) mod tests;
