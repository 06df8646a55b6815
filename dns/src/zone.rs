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
//! How it is stored (what a Service costs is most of ferry's memory in a large cluster): one
//! byte arena holding, for each name, its key (its uncompressed wire form, lowercase: what a
//! query carries, so the hot path looks a question up without parsing it), the answers to the
//! plain questions it answers positively, encoded once at compile time without their question,
//! and its records, compact (an address, or a port and where the target's entry is); and an
//! index of 8-byte slots pointing into it ([`table`]). A lookup reads a slot and then one place
//! in the arena (the layout is [`arena`]'s). hickory `Name`s and `Record`s are built only when
//! a query takes the general path.
//! Compiling is [`build`]'s.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ferry_model::Snapshot;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

mod arena;
mod build;
mod table;

use arena::Entry;
use table::Table;

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
    /// Where each name's entry starts in `arena`, by its key's hash (`hasher`'s, folded).
    table: Table,
    /// Seeded per zone, so that names chosen to collide cannot slow its compiling down.
    hasher: RandomState,
    /// Every name's entry, empty non-terminals included, one after another ([`arena`]).
    arena: Box<[u8]>,
    /// Nothing accepted yet: the zone's contents are unknown, so in-zone names fail.
    ready: bool,
}

/// A name records point at: where its entry starts in the zone's arena (while compiling, its
/// number among the names seen).
type Target = u32;

/// One record, compact: the owner is its entry's name, the TTL the zone's. A hickory `Record`
/// (272 bytes, its names inline) is built only when a query needs one.
#[derive(Clone, Copy, Debug, PartialEq)]
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
    /// The schema version at `dns-version.<zone>`, the one TXT record the spec defines.
    Txt,
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
            Data::Txt => RecordType::TXT,
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
    fn additional(&self) -> Option<Target> {
        match *self {
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
    pub header: [u8; 12],
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
        // The key is the query's, so its length is known: the answers follow it.
        let at = self.find(key)? as usize + key.len();
        let len = self.arena.get(at..at + 2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let answers = self.arena.get(at + 2..at + 2 + len)?;
        let answer = arena::answer(answers, qtype)?;
        Some(Encoded {
            header: answer.header(),
            rest: answer.rest,
        })
    }

    /// Where the entry of the name with `key` starts, if the zone holds that name.
    fn find(&self, key: &[u8]) -> Option<Target> {
        let hash = table::fold(self.hasher.hash_one(key));
        self.table.find(hash, |at| {
            let at = at as usize;
            self.arena.get(at..at + key.len()) == Some(key)
        })
    }

    /// The entry of the name with `key`, if the zone holds that name.
    fn entry(&self, key: &[u8]) -> Option<Entry<'_>> {
        Entry::at(&self.arena, self.find(key)?)
    }

    /// The name whose entry is at `at`.
    fn name_at(&self, at: Target) -> Name {
        arena::key_at(&self.arena, at as usize).map_or_else(Name::root, name_of)
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
        let Some(entry) = key_of(name, &mut buf).and_then(|key| self.entry(key)) else {
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
        if let Some(cname) = entry.records().find_map(|d| match d {
            Data::Cname(target) => Some(target),
            _ => None,
        }) && qtype != RecordType::CNAME
        {
            return Lookup::Alias {
                cname: Box::new(self.record(&owner, &Data::Cname(cname))),
                target: self.name_at(cname),
            };
        }
        let matching = || entry.records().filter(|d| d.record_type() == qtype);
        let answers: Vec<Record> = matching().map(|d| self.record(&owner, &d)).collect();
        if answers.is_empty() {
            return Lookup::NoData;
        }
        Lookup::Answer {
            answers,
            additionals: self.additionals(matching()),
        }
    }

    /// The addresses of SRV and NS targets, each once, for the additional section.
    fn additionals(&self, answers: impl Iterator<Item = Data>) -> Vec<Record> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for target in answers.filter_map(|d| d.additional()) {
            if seen.insert(target)
                && let Some(entry) = Entry::at(&self.arena, target)
            {
                let owner = self.name_at(target);
                out.extend(
                    entry
                        .records()
                        .filter(|d| matches!(d, Data::A(_) | Data::Aaaa(_)))
                        .map(|d| self.record(&owner, &d)),
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
            } => RData::SRV(SRV::new(0, *weight, *port, self.name_at(*target))),
            Data::Ptr(target) => RData::PTR(PTR(self.name_at(*target))),
            Data::Cname(target) => RData::CNAME(CNAME(self.name_at(*target))),
            Data::Ns(target) => RData::NS(NS(self.name_at(*target))),
            Data::Txt => RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_owned()])),
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
        for entry in self
            .table
            .values()
            .filter_map(|at| Entry::at(&self.arena, at))
        {
            let mut answers = entry.answers;
            while let Some(answer) = arena::next_answer(&mut answers) {
                out.push((name_of(entry.key), RecordType::from(answer.qtype)));
            }
        }
        out
    }

    /// How many names the zone holds (for metrics and tests).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// How many bytes its arena and index take (for tests and measurements).
    pub fn size(&self) -> usize {
        self.arena.len() + self.table.size()
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
