//! Compiling a snapshot into a [`ZoneIndex`]: every name and record the module above lists,
//! then the pre-encoded answers. Pure: a snapshot in, an index out.
//!
//! Names are keyed by their wire form from the start, numbered as they come, and records
//! gathered in one list with their owner's number; everything the compiler keeps is a few large
//! vectors, not an allocation per name, so what it frees is a few large blocks rather than a
//! scatter of small ones among the zone's (glibc still keeps some of it: benches/RESULTS.md,
//! "One arena for names and answers"). The arena is written twice: once without answers, for
//! the general path to encode them from, then with them.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;

use ferry_model::{Protocol, Service, Snapshot};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::arena::{self, Entry, MAX_ARENA};
use super::table::{Table, fold};
use super::{Data, Lookup, MAX_KEY, Target, ZoneIndex, key_of, name_of};

mod layout;

use layout::{Answers, Layout};

/// Answers longer than this are not pre-encoded: they may not fit a plain UDP client, and the
/// general path decides about truncation.
const MAX_ENCODED: usize = 512;

pub(super) fn compile(
    snapshot: &Snapshot,
    domain: &str,
    ttl: u32,
    served_on: &[IpAddr],
) -> Result<ZoneIndex, String> {
    compile_within(snapshot, domain, ttl, served_on, MAX_ARENA)
}

/// As [`compile`], with an arena of at most `max_arena` bytes (tests try the limit on small
/// zones): a zone whose names and records do not fit is refused; one whose pre-encoded answers
/// do not fit too is served without them, every query by the general path.
pub(super) fn compile_within(
    snapshot: &Snapshot,
    domain: &str,
    ttl: u32,
    served_on: &[IpAddr],
    max_arena: usize,
) -> Result<ZoneIndex, String> {
    let origin = fqdn(domain).map_err(|e| format!("cluster domain {domain:?}: {e}"))?;
    let mut buf = [0u8; MAX_KEY];
    let origin_len = key_of(&origin, &mut buf)
        .ok_or_else(|| format!("cluster domain {domain:?}: longer than a DNS name may be"))?
        .len();
    let expected = names_expected(snapshot);
    // The table first: it becomes the zone's index, so it lies below what compiling frees
    // rather than among it.
    let ids = Table::with_capacity(expected);
    let mut b = Builder {
        domain: domain.trim_end_matches('.').to_ascii_lowercase(),
        origin_len,
        origin: origin.clone(),
        hasher: RandomState::new(),
        names: Vec::with_capacity(expected),
        keys: Vec::with_capacity(expected * 40),
        ids,
        records: Vec::with_capacity(expected * 2),
        ptrs: Vec::new(),
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
    let ns_target = b.target(&ns_name)?;
    b.record(&origin, Data::Ns(ns_target))?;
    let kube_dns = snapshot
        .service("kube-system", "kube-dns")
        .map(|s| s.cluster_ips.as_slice())
        .filter(|ips| !ips.is_empty());
    for ip in kube_dns.unwrap_or(served_on) {
        b.record(&ns_name, Data::address(*ip))?;
    }
    b.ent(&ns_name)?;
    let version = b.name(&format!("dns-version.{}", b.domain))?;
    b.record(&version, Data::Txt)?;
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
    b.finish(
        ZoneIndex {
            origin,
            pod_zone,
            namespaces,
            soa,
            table: Table::with_capacity(0),
            hasher: RandomState::new(),
            arena: Box::default(),
            ready: snapshot.version > 0,
        },
        max_arena,
    )
}

impl ZoneIndex {
    /// The answers to every plain question the zone answers positively at the name of
    /// `entry`, encoded once (the format is [`arena`]'s) at the end of `out`, so the hot path
    /// sends them with a few bytes patched.
    fn encode(&self, entry: Entry<'_>, out: &mut Vec<u8>) {
        let key = entry.key;
        let mut types: Vec<RecordType> = entry.records().map(|d| d.record_type()).collect();
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
            let (Some(header), Some(rest)) = (bytes.get(..12), bytes.get(question_end..)) else {
                continue;
            };
            arena::push_answer(out, u16::from(qtype), header, rest);
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
    /// The zone's, for the hashes kept in `names`.
    hasher: RandomState,
    /// Every name seen, numbered in the order seen: the zone's, and those only pointed at.
    names: Vec<Seen>,
    /// The names' keys, one after another.
    keys: Vec<u8>,
    /// The names' numbers, by their keys' hashes; then the zone's index (see `finish`).
    ids: Table,
    /// Every record, with its owner's number, in the order added; targets are numbers too.
    records: Vec<(Target, Data)>,
    /// Reverse names to be: an address, whether it is a cluster IP, the name it points at.
    ptrs: Vec<(IpAddr, bool, Target)>,
}

/// A name seen while compiling.
#[derive(Clone, Copy, Debug)]
struct Seen {
    /// Where its key starts in `keys`, and its length.
    key: u32,
    len: u8,
    /// Its key's hash, folded ([`fold`]).
    hash: u32,
    /// The zone holds it (else records only point at it: an ExternalName's target).
    exists: bool,
}

/// One SRV record to be: its target and port, from how many (address, port) pairs.
type SrvSet = Vec<(Target, u16)>;

/// A Service's ready endpoints' names by address, and their numbers.
type Hosts = HashMap<IpAddr, (Name, Target)>;

impl Builder {
    fn name(&self, s: &str) -> Result<Name, String> {
        fqdn(s).map_err(|e| format!("{s:?}: {e}"))
    }

    fn key(&self, seen: Seen) -> &[u8] {
        let start = seen.key as usize;
        self.keys
            .get(start..start + usize::from(seen.len))
            .unwrap_or_default()
    }

    /// The number of the name with `key`, seen now if it was not; `exists` makes it one the
    /// zone holds.
    fn id(&mut self, key: &[u8], exists: bool) -> Result<Target, String> {
        let hash = fold(self.hasher.hash_one(key));
        if let Some(id) = self.find(hash, key) {
            if let Some(seen) = self.names.get_mut(id as usize) {
                seen.exists |= exists;
            }
            return Ok(id);
        }
        let too_many = || format!("more than {} names or bytes of names", u32::MAX - 1);
        // The table keeps u32::MAX for its empty slots.
        let id = u32::try_from(self.names.len())
            .ok()
            .filter(|id| *id < u32::MAX)
            .ok_or_else(too_many)?;
        let start = u32::try_from(self.keys.len()).map_err(|_| too_many())?;
        let len = u8::try_from(key.len())
            .map_err(|_| format!("a name of {} bytes: longer than DNS allows", key.len()))?;
        self.keys.extend_from_slice(key);
        self.names.push(Seen {
            key: start,
            len,
            hash,
            exists,
        });
        self.ids.insert(hash, id);
        Ok(id)
    }

    /// The number of the name with `key` (whose hash is `hash`), if it was seen.
    fn find(&self, hash: u32, key: &[u8]) -> Option<Target> {
        self.ids.find(hash, |id| {
            self.names
                .get(id as usize)
                .is_some_and(|seen| self.key(*seen) == key)
        })
    }

    /// Whether the zone holds the name with `key` already.
    fn exists(&self, key: &[u8]) -> bool {
        let hash = fold(self.hasher.hash_one(key));
        self.find(hash, key)
            .and_then(|id| self.names.get(id as usize))
            .is_some_and(|seen| seen.exists)
    }

    /// A name records point at: its number.
    fn target(&mut self, name: &Name) -> Result<Target, String> {
        let mut buf = [0u8; MAX_KEY];
        let key = key_of(name, &mut buf)
            .ok_or_else(|| format!("{name}: longer than a DNS name may be"))?;
        self.id(key, false)
    }

    fn record(&mut self, owner: &Name, data: Data) -> Result<(), String> {
        let mut buf = [0u8; MAX_KEY];
        let key = key_of(owner, &mut buf)
            .ok_or_else(|| format!("{owner}: longer than a DNS name may be"))?;
        if self.origin.zone_of(owner) {
            self.add_ancestors(key)?;
        }
        let id = self.id(key, true)?;
        self.records.push((id, data));
        Ok(())
    }

    /// A name that exists, with records or not.
    fn ent(&mut self, name: &Name) -> Result<(), String> {
        let mut buf = [0u8; MAX_KEY];
        let key = key_of(name, &mut buf)
            .ok_or_else(|| format!("{name}: longer than a DNS name may be"))?;
        self.add_ancestors(key)?;
        self.id(key, true).map(drop)
    }

    /// Every name between `key` and the apex exists (an empty non-terminal at least). A name
    /// already held has its ancestors already: they are added before it, always.
    fn add_ancestors(&mut self, key: &[u8]) -> Result<(), String> {
        let mut parent = parent(key);
        while parent.len() > self.origin_len && !self.exists(parent) {
            self.id(parent, true)?;
            parent = self::parent(parent);
        }
        Ok(())
    }

    /// SRV records at `owner`: one per (target, port), weighted by all the pairs.
    fn srv(&mut self, owner: &Name, pairs: SrvSet) -> Result<(), String> {
        let weight = srv_weight(pairs.len());
        let mut seen = HashSet::new();
        for (target, port) in pairs {
            if seen.insert((target, port)) {
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
            let target = self.target(&target)?;
            return self.record(&base, Data::Cname(target));
        }
        let hosts = self.endpoints(s, &base)?;
        self.endpoint_srv(snapshot, s, &hosts)?;
        if s.headless {
            return self.headless(snapshot, s, &base, &hosts);
        }
        // The Service exists even with nothing to answer (no cluster IP yet).
        self.ent(&base)?;
        let shared = self.target(&base)?;
        for ip in &s.cluster_ips {
            self.record(&base, Data::address(*ip))?;
            self.ptrs.push((*ip, true, shared));
        }
        let ips = s.cluster_ips.len();
        let mut all = SrvSet::new();
        for port in &s.ports {
            let pairs: SrvSet = (0..ips).map(|_| (shared, port.port)).collect();
            all.extend(pairs.iter().copied());
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
            let shared = self.target(&host)?;
            self.ptrs.push((ep.address, false, shared));
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
                    by_host.entry(host).or_default().push((*shared, e.port));
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
                .filter_map(|e| hosts.get(&e.address).map(|(_, h)| (*h, e.port)))
                .collect();
            all.extend(pairs.iter().copied());
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
        let mut ptrs = std::mem::take(&mut self.ptrs);
        // By address, its cluster IP's names first, each address's in the order they came.
        ptrs.sort_by_key(|(ip, cluster, _)| (*ip, !*cluster));
        for group in ptrs.chunk_by(|a, b| a.0 == b.0) {
            let Some((ip, cluster, _)) = group.first() else {
                continue;
            };
            let owner = Name::from(*ip);
            let mut seen = HashSet::new();
            for (_, _, target) in group.iter().take_while(|(_, c, _)| c == cluster) {
                if seen.insert(*target) {
                    self.record(&owner, Data::Ptr(*target))?;
                }
            }
        }
        Ok(())
    }

    /// The zone's arena and index, written into `zone`: first without answers, so that the
    /// general path can encode them, then with them. Fails where the names and records alone
    /// exceed `max_arena` bytes.
    fn finish(self, mut zone: ZoneIndex, max_arena: usize) -> Result<ZoneIndex, String> {
        // The names' table becomes the zone's index: without the names the zone does not
        // hold, each number replaced by where that name's entry starts.
        let mut table = self.ids;
        for (id, seen) in (0..).zip(&self.names) {
            if !seen.exists {
                table.remove(seen.hash, |v| v == id);
            }
        }
        let mut records = self.records;
        // Each name's records together, in the order they were added.
        records.sort_by_key(|(id, _)| *id);
        let mut records_len = vec![0u32; self.names.len()];
        for (id, data) in &records {
            if let Some(len) = records_len.get_mut(*id as usize) {
                *len = len.saturating_add(arena::record_len(data) as u32);
            }
        }
        let layout = Layout {
            names: &self.names,
            keys: &self.keys,
            records: &records,
            records_len: &records_len,
        };
        zone.hasher = self.hasher;
        let mut answers = Answers {
            bytes: Vec::new(),
            ends: Vec::with_capacity(self.names.len()),
        };
        let Some(offsets) = layout.offsets(&answers, max_arena) else {
            return Err(format!(
                "{} names whose keys and records take more than the {max_arena} bytes a zone's \
                 arena holds (its offsets are 32-bit)",
                self.names.len()
            ));
        };
        zone.arena = layout.write(&offsets, &answers);
        table.remap(|id| offsets.get(id as usize).copied());
        zone.table = table;
        if !zone.ready {
            return Ok(zone);
        }
        for (seen, at) in self.names.iter().zip(&offsets) {
            if seen.exists
                && let Some(entry) = Entry::at(&zone.arena, *at)
            {
                zone.encode(entry, &mut answers.bytes);
            }
            answers.ends.push(answers.bytes.len());
        }
        let Some(moved) = layout.offsets(&answers, max_arena) else {
            tracing::warn!(
                names = self.names.len(),
                max_arena,
                "the zone's pre-encoded answers do not fit its arena: every query takes the general path"
            );
            return Ok(zone);
        };
        // The arena without answers goes before the one with them is written; the index
        // stays, each entry's offset moved (offsets grow with the names' numbers).
        zone.arena = Box::default();
        zone.arena = layout.write(&moved, &answers);
        zone.table.remap(|at| {
            offsets
                .binary_search(&at)
                .ok()
                .and_then(|id| moved.get(id).copied())
        });
        Ok(zone)
    }
}

/// The key of the name one label up (the root's is itself).
fn parent(key: &[u8]) -> &[u8] {
    let first = key.first().map_or(0, |len| usize::from(*len));
    key.get(1 + first..)
        .filter(|p| !p.is_empty())
        .unwrap_or(key)
}
