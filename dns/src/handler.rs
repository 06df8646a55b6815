//! One query in, one answer out: the steps every query takes, whatever the transport.
//!
//! `start` parses and answers everything the zone can answer without waiting (the hot path: no
//! lock, no await); what needs an upstream (forwarding, an ExternalName target to chase, a
//! search-path walk) comes back as a [`Pending`] that `finish` completes. Answers that do not fit
//! a UDP client's payload size are truncated (TC), complete over TCP.
//!
//! Errors, as the RFCs want them: FORMERR for what does not parse (when there is a header to
//! answer), NOTIMP for opcodes other than QUERY, BADVERS for EDNS versions other than 0, REFUSED
//! for classes other than IN and for zone transfers, SERVFAIL when upstreams fail or the zone is
//! not known yet. Responses (QR set) and runts shorter than a header are dropped unanswered.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::autopath;
use crate::forward::Forwarder;
use crate::metrics::Metrics;
use crate::zone::{Lookup, ZoneIndex};

/// The largest UDP answer ferry sends, whatever a client advertises.
pub const MAX_UDP_PAYLOAD: u16 = 4096;
/// What ferry advertises in its own OPT record.
const SERVER_PAYLOAD: u16 = 1232;
const HEADER_LEN: usize = 12;

/// How the query arrived: UDP answers are bounded by the payload size, TCP ones are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The largest answer this transport takes, given the client's EDNS payload size if any:
    /// 512 bytes over UDP without EDNS (RFC 1035), the payload size up to our cap with it.
    fn limit(self, payload: Option<u16>) -> usize {
        match (self, payload) {
            (Transport::Tcp, _) => usize::from(u16::MAX),
            (Transport::Udp, Some(payload)) => usize::from(payload.clamp(512, MAX_UDP_PAYLOAD)),
            (Transport::Udp, None) => 512,
        }
    }
}

/// Everything a query needs to be answered.
#[derive(Debug)]
pub struct Handler {
    zone: Arc<ArcSwap<ZoneIndex>>,
    forwarder: Option<Arc<Forwarder>>,
    /// The host's search domains, for the search-path walk; `None` when autopath is off.
    autopath: Option<Vec<Name>>,
    metrics: Metrics,
}

/// What `start` decided.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes back.
    Answer(Vec<u8>),
    /// Needs an upstream: hand it to `finish`, off the receive loop.
    Pending(Box<Pending>),
    /// Say nothing (a response, a runt).
    Drop,
}

/// What `start_into` decided.
#[derive(Debug)]
pub enum Started {
    /// The answer is in the caller's buffer: send it back.
    Written,
    /// Needs an upstream: hand it to `finish`, off the receive loop.
    Pending(Box<Pending>),
    /// Say nothing (a response, a runt).
    Drop,
}

/// A valid query waiting for an upstream.
#[derive(Debug)]
pub struct Pending {
    query: Query,
    work: Work,
}

#[derive(Debug)]
enum Work {
    /// A name outside the cluster zone.
    Forward,
    /// An ExternalName's CNAME, whose target is outside the zone.
    Chase { cname: Box<Record>, target: Name },
    /// A name under `<ns>.svc.<zone>` that does not exist: walk the search path.
    Autopath { candidates: Vec<Name> },
}

/// The parts of a valid query an answer needs.
#[derive(Debug)]
struct Query {
    request: Message,
    name: Name,
    qtype: RecordType,
    transport: Transport,
    started: Instant,
}

/// The sections of an answer.
#[derive(Debug, Default)]
struct Sections {
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Handler {
    pub fn new(
        zone: Arc<ArcSwap<ZoneIndex>>,
        forwarder: Option<Arc<Forwarder>>,
        autopath: Option<Vec<Name>>,
        metrics: Metrics,
    ) -> Self {
        Handler {
            zone,
            forwarder,
            autopath,
            metrics,
        }
    }

    /// Answers a query from any transport, waiting for upstreams when it must.
    pub async fn handle(&self, bytes: &[u8], transport: Transport) -> Option<Vec<u8>> {
        match self.start(bytes, transport) {
            Step::Answer(a) => Some(a),
            Step::Pending(p) => Some(self.finish(*p).await),
            Step::Drop => None,
        }
    }

    /// Parses and answers what needs no upstream.
    pub fn start(&self, bytes: &[u8], transport: Transport) -> Step {
        let mut out = Vec::new();
        match self.start_into(bytes, transport, &mut out) {
            Started::Written => Step::Answer(out),
            Started::Pending(p) => Step::Pending(p),
            Started::Drop => Step::Drop,
        }
    }

    /// As [`Handler::start`], with the answer written into `out` (cleared first): the UDP
    /// workers keep one buffer per datagram of a batch, so a hot-path answer allocates nothing.
    pub fn start_into(&self, bytes: &[u8], transport: Transport, out: &mut Vec<u8>) -> Started {
        let started = Instant::now();
        if bytes.len() < HEADER_LEN || bytes[2] & 0x80 != 0 {
            return Started::Drop;
        }
        out.clear();
        if self.fast_into(bytes, transport, started, out).is_some() {
            return Started::Written;
        }
        match self.general(bytes, transport, started) {
            Step::Answer(answer) => {
                *out = answer;
                Started::Written
            }
            Step::Pending(p) => Started::Pending(p),
            Step::Drop => Started::Drop,
        }
    }

    /// A UDP query longer than the receive buffer, of which `bytes` is the beginning: FORMERR,
    /// as for what does not parse (a responder cannot answer a question it did not read whole);
    /// nothing for a response or a runt.
    pub fn oversized(&self, bytes: &[u8]) -> Step {
        if bytes.len() < HEADER_LEN || bytes[2] & 0x80 != 0 {
            return Step::Drop;
        }
        self.metrics.query(false, None, ResponseCode::FormErr, 0.0);
        Step::Answer(header_only(bytes, ResponseCode::FormErr))
    }

    /// The hot path: a plain question (one, class IN, maybe an OPT) for a name and type the zone
    /// has a pre-encoded answer for. The answer is that encoding with the id, the flags, the
    /// query's own question and the OPT record filled in: exactly the bytes the general path would
    /// build, without parsing into or encoding from a `Message`, written into `out` (empty).
    /// Anything else: `None`, and `out` is left empty.
    fn fast_into(
        &self,
        bytes: &[u8],
        transport: Transport,
        started: Instant,
        out: &mut Vec<u8>,
    ) -> Option<()> {
        let count = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        // QR, opcode, AA and TC clear (RD may be set); Z and rcode clear; one question only.
        if bytes[2] & 0xfe != 0
            || bytes[3] & 0x4f != 0
            || count(4) != 1
            || count(6) != 0
            || count(8) != 0
            || count(10) > 1
        {
            return None;
        }
        let mut key = [0u8; 255];
        let mut at = HEADER_LEN;
        loop {
            let len = usize::from(*bytes.get(at)?);
            // A compression pointer or an extended label type: the general path decides.
            if len > 63 || at - HEADER_LEN + len + 1 > key.len() {
                return None;
            }
            let label = bytes.get(at..at + 1 + len)?;
            for (k, b) in key[at - HEADER_LEN..].iter_mut().zip(label) {
                *k = b.to_ascii_lowercase();
            }
            at += 1 + len;
            if len == 0 {
                break;
            }
        }
        let name_end = at;
        let fixed = bytes.get(at..at + 4)?;
        let (qtype, qclass) = (
            u16::from_be_bytes([fixed[0], fixed[1]]),
            u16::from_be_bytes([fixed[2], fixed[3]]),
        );
        at += 4;
        if qclass != u16::from(DNSClass::IN) {
            return None;
        }
        // The OPT record, if any: root owner, version 0, its data ending the message.
        let edns = if count(10) == 1 {
            let opt = bytes.get(at..at + 11)?;
            let rdlen = usize::from(u16::from_be_bytes([opt[9], opt[10]]));
            if opt[0] != 0
                || u16::from_be_bytes([opt[1], opt[2]]) != u16::from(RecordType::OPT)
                || opt[5] != 0
                || opt[6] != 0
                || at + 11 + rdlen != bytes.len()
            {
                return None;
            }
            Some((u16::from_be_bytes([opt[3], opt[4]]), opt[7] & 0x80 != 0))
        } else if at == bytes.len() {
            None
        } else {
            return None;
        };
        let zone = self.zone.load();
        let encoded = zone.encoded(&key[..name_end - HEADER_LEN], qtype)?;
        // The question as asked, in the client's case, with its type and class.
        let question = &bytes[HEADER_LEN..name_end + 4];
        let len = HEADER_LEN + question.len() + encoded.rest.len();
        let limit = transport.limit(edns.map(|(payload, _)| payload));
        let opt_len = if edns.is_some() { 11 } else { 0 };
        if len + opt_len > limit {
            return None;
        }
        out.reserve(len + opt_len);
        out.extend_from_slice(&encoded.header);
        out.extend_from_slice(question);
        out.extend_from_slice(encoded.rest);
        out[..2].copy_from_slice(&bytes[..2]);
        // QR, AA and the query's RD; RA when names can be forwarded; the query's CD.
        out[2] = 0x84 | (bytes[2] & 0x01);
        out[3] = if self.forwarder.is_some() { 0x80 } else { 0 } | (bytes[3] & 0x10);
        if let Some((_, dnssec_ok)) = edns {
            let additionals = u16::from_be_bytes([out[10], out[11]]) + 1;
            out[10..12].copy_from_slice(&additionals.to_be_bytes());
            let payload = SERVER_PAYLOAD.to_be_bytes();
            let flags = if dnssec_ok { 0x80 } else { 0 };
            out.extend_from_slice(&[0, 0, 41, payload[0], payload[1], 0, 0, flags, 0, 0, 0]);
        }
        self.metrics.answered(
            transport == Transport::Tcp,
            RecordType::from(qtype),
            started.elapsed().as_secs_f64(),
        );
        Some(())
    }

    /// The hot path's answer in a buffer of its own, for tests comparing it with the general
    /// path's.
    #[cfg(test)]
    fn fast(&self, bytes: &[u8], transport: Transport, started: Instant) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.fast_into(bytes, transport, started, &mut out)?;
        Some(out)
    }

    /// Everything the hot path does not take: parsed by hickory, answered section by section.
    fn general(&self, bytes: &[u8], transport: Transport, started: Instant) -> Step {
        let request = match Message::from_vec(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.metrics.query(
                    transport == Transport::Tcp,
                    None,
                    ResponseCode::FormErr,
                    started.elapsed().as_secs_f64(),
                );
                return Step::Answer(header_only(bytes, ResponseCode::FormErr));
            }
        };
        let Some(q) = request.queries.first() else {
            return Step::Answer(self.error(request, transport, started, ResponseCode::FormErr));
        };
        let (name, qtype, class) = (q.name().clone(), q.query_type(), q.query_class());
        let rcode = if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else if request.queries.len() != 1 || qtype == RecordType::OPT {
            Some(ResponseCode::FormErr)
        } else if request.edns.as_ref().is_some_and(|e| e.version() != 0) {
            Some(ResponseCode::BADVERS)
        } else if class != DNSClass::IN || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            Some(ResponseCode::Refused)
        } else {
            None
        };
        if let Some(rcode) = rcode {
            return Step::Answer(self.error(request, transport, started, rcode));
        }
        let query = Query {
            request,
            name,
            qtype,
            transport,
            started,
        };
        let zone = self.zone.load();
        match zone.lookup(&query.name, qtype) {
            Lookup::Answer {
                answers,
                additionals,
            } => Step::Answer(self.respond(
                &query,
                ResponseCode::NoError,
                true,
                Sections {
                    answers: in_question_case(answers, &query.name),
                    authorities: Vec::new(),
                    additionals,
                },
            )),
            Lookup::Alias { mut cname, target } => {
                cname.name = query.name.clone();
                self.alias(query, &zone, cname, target)
            }
            Lookup::NoData => Step::Answer(self.negative(&query, &zone, ResponseCode::NoError)),
            Lookup::NxDomain => {
                let candidates = self
                    .autopath
                    .as_ref()
                    .filter(|_| self.forwarder.is_some())
                    .and_then(|search| autopath::candidates(&query.name, zone.origin(), search));
                match candidates {
                    Some(candidates) => Step::Pending(Box::new(Pending {
                        query,
                        work: Work::Autopath { candidates },
                    })),
                    None => Step::Answer(self.negative(&query, &zone, ResponseCode::NXDomain)),
                }
            }
            Lookup::NotReady => Step::Answer(self.respond(
                &query,
                ResponseCode::ServFail,
                false,
                Sections::default(),
            )),
            Lookup::Outside => match &self.forwarder {
                Some(f)
                    if f.caught_probe(&query.name).is_some()
                        || f.is_own(query.request.metadata.id, &query.name, qtype) =>
                {
                    self.metrics.loops.inc();
                    tracing::warn!(name = %query.name, "forwarding loop: an upstream sent our own query back; answering SERVFAIL");
                    Step::Answer(self.respond(
                        &query,
                        ResponseCode::ServFail,
                        false,
                        Sections::default(),
                    ))
                }
                Some(_) => Step::Pending(Box::new(Pending {
                    query,
                    work: Work::Forward,
                })),
                None => Step::Answer(self.respond(
                    &query,
                    ResponseCode::Refused,
                    false,
                    Sections::default(),
                )),
            },
        }
    }

    /// Completes a query that needs an upstream.
    pub async fn finish(&self, pending: Pending) -> Vec<u8> {
        let Pending { query, work } = pending;
        let Some(forwarder) = &self.forwarder else {
            return self.respond(&query, ResponseCode::Refused, false, Sections::default());
        };
        match work {
            Work::Forward => match forwarder.resolve(&query.name, query.qtype).await {
                Ok(up) => self.respond(
                    &query,
                    up.rcode,
                    false,
                    Sections {
                        answers: in_question_case(up.answers, &query.name),
                        authorities: up.authorities,
                        additionals: up.additionals,
                    },
                ),
                Err(e) => {
                    tracing::debug!(name = %query.name, error = %e, "forwarding failed");
                    self.respond(&query, ResponseCode::ServFail, false, Sections::default())
                }
            },
            Work::Chase { cname, target } => {
                let mut answers = vec![*cname];
                match forwarder.resolve(&target, query.qtype).await {
                    // RFC 6604: the rcode is the last name's in the chain.
                    Ok(up) => {
                        answers.extend(up.answers);
                        self.respond(
                            &query,
                            up.rcode,
                            true,
                            Sections {
                                answers,
                                authorities: up.authorities,
                                additionals: Vec::new(),
                            },
                        )
                    }
                    // The alias itself is ours and certain: give it, the client can chase.
                    Err(_) => self.respond(
                        &query,
                        ResponseCode::NoError,
                        true,
                        Sections {
                            answers,
                            ..Sections::default()
                        },
                    ),
                }
            }
            Work::Autopath { candidates } => self.walk(query, forwarder, candidates).await,
        }
    }

    /// Turns a query away when too many already wait for upstreams (as CoreDNS's
    /// `max_concurrent` does): REFUSED, so the client tries another server.
    pub fn refuse(&self, pending: Box<Pending>) -> Vec<u8> {
        self.respond(
            &pending.query,
            ResponseCode::Refused,
            false,
            Sections::default(),
        )
    }

    /// The search-path walk: the first candidate with records answers, behind a CNAME from the
    /// name asked. None does: the plain NXDOMAIN, and the client walks on by itself.
    async fn walk(&self, query: Query, forwarder: &Forwarder, candidates: Vec<Name>) -> Vec<u8> {
        for candidate in candidates {
            let zone = self.zone.load();
            let found = if zone.in_zone(&candidate) {
                match zone.lookup(&candidate, query.qtype) {
                    Lookup::Answer {
                        answers,
                        additionals,
                    } => Some((answers, additionals)),
                    Lookup::Alias { cname, target } => {
                        match forwarder.resolve(&target, query.qtype).await {
                            Ok(up) if up.is_positive() => {
                                let mut answers = vec![*cname];
                                answers.extend(up.answers);
                                Some((answers, Vec::new()))
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                }
            } else {
                match forwarder.resolve(&candidate, query.qtype).await {
                    Ok(up) if up.is_positive() => Some((up.answers, up.additionals)),
                    _ => None,
                }
            };
            if let Some((found, additionals)) = found {
                let ttl = found.iter().map(|r| r.ttl).min().unwrap_or(0);
                let mut answers = vec![Record::from_rdata(
                    query.name.clone(),
                    ttl,
                    RData::CNAME(CNAME(candidate)),
                )];
                answers.extend(found);
                return self.respond(
                    &query,
                    ResponseCode::NoError,
                    false,
                    Sections {
                        answers,
                        authorities: Vec::new(),
                        additionals,
                    },
                );
            }
        }
        let zone = self.zone.load();
        self.negative(&query, &zone, ResponseCode::NXDomain)
    }

    /// An ExternalName alias: chase the target in the zone now, or upstream later.
    fn alias(&self, query: Query, zone: &ZoneIndex, cname: Box<Record>, target: Name) -> Step {
        let mut answers = vec![*cname];
        let rcode = if zone.in_zone(&target) {
            match zone.lookup(&target, query.qtype) {
                Lookup::Answer { answers: more, .. } => {
                    answers.extend(more);
                    ResponseCode::NoError
                }
                Lookup::NxDomain => ResponseCode::NXDomain,
                _ => ResponseCode::NoError,
            }
        } else if self.forwarder.is_some() {
            let cname = Box::new(answers.swap_remove(0));
            return Step::Pending(Box::new(Pending {
                query,
                work: Work::Chase { cname, target },
            }));
        } else {
            // Nobody to ask: the alias alone, and the client chases it.
            ResponseCode::NoError
        };
        Step::Answer(self.respond(
            &query,
            rcode,
            true,
            Sections {
                answers,
                ..Sections::default()
            },
        ))
    }

    /// NXDOMAIN or NODATA, with the zone's SOA in the authority section (RFC 2308).
    fn negative(&self, query: &Query, zone: &ZoneIndex, rcode: ResponseCode) -> Vec<u8> {
        self.respond(
            query,
            rcode,
            true,
            Sections {
                authorities: vec![zone.soa().clone()],
                ..Sections::default()
            },
        )
    }

    fn error(
        &self,
        request: Message,
        transport: Transport,
        started: Instant,
        rcode: ResponseCode,
    ) -> Vec<u8> {
        let (name, qtype) = request
            .queries
            .first()
            .map_or((Name::root(), RecordType::NULL), |q| {
                (q.name().clone(), q.query_type())
            });
        let query = Query {
            request,
            name,
            qtype,
            transport,
            started,
        };
        self.respond(&query, rcode, false, Sections::default())
    }

    /// Builds the answer, truncated (TC) when a UDP client cannot take it whole.
    fn respond(
        &self,
        query: &Query,
        rcode: ResponseCode,
        authoritative: bool,
        sections: Sections,
    ) -> Vec<u8> {
        let request = &query.request;
        let mut response = Message::new(
            request.metadata.id,
            MessageType::Response,
            request.metadata.op_code,
        );
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = self.forwarder.is_some();
        response.metadata.checking_disabled = request.metadata.checking_disabled;
        response.metadata.authoritative = authoritative;
        response.metadata.response_code = rcode;
        // A FORMERR about the question itself is better without echoing it.
        if rcode != ResponseCode::FormErr || request.queries.len() == 1 {
            response.add_queries(request.queries.iter().cloned());
        }
        response.answers = sections.answers;
        response.authorities = sections.authorities;
        response.additionals = sections.additionals;
        let limit = query
            .transport
            .limit(request.edns.as_ref().map(Edns::max_payload));
        if let Some(req_edns) = &request.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(SERVER_PAYLOAD);
            edns.set_version(0);
            // RFC 3225: the DO bit is copied into the answer.
            edns.set_dnssec_ok(req_edns.flags().dnssec_ok);
            response.set_edns(edns);
        }
        let bytes = match response.to_vec() {
            Ok(b) if b.len() <= limit => b,
            Ok(_) => {
                self.metrics.truncated.inc();
                response
                    .truncate()
                    .to_vec()
                    .unwrap_or_else(|_| header_only_for(request, ResponseCode::ServFail))
            }
            Err(e) => {
                tracing::warn!(name = %query.name, error = %e, "cannot encode an answer");
                header_only_for(request, ResponseCode::ServFail)
            }
        };
        self.metrics.query(
            query.transport == Transport::Tcp,
            Some(query.qtype),
            rcode,
            query.started.elapsed().as_secs_f64(),
        );
        bytes
    }
}

/// Answer records owned by the name asked carry the question's case (0x20 randomisation, and
/// what clients compare against).
fn in_question_case(mut records: Vec<Record>, name: &Name) -> Vec<Record> {
    for r in &mut records {
        if r.name == *name {
            r.name = name.clone();
        }
    }
    records
}

/// A bare header answering a query that could not be parsed: its id, opcode and RD, the rcode.
fn header_only(query: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out[0] = query[0];
    out[1] = query[1];
    // QR, the query's opcode and RD.
    out[2] = 0x80 | (query[2] & 0x79);
    out[3] = rcode.low();
    out
}

fn header_only_for(request: &Message, rcode: ResponseCode) -> Vec<u8> {
    let id = request.metadata.id.to_be_bytes();
    let op: u8 = request.metadata.op_code.into();
    let rd = u8::from(request.metadata.recursion_desired);
    header_only(&[id[0], id[1], (op << 3) | rd, 0], rcode)
}

#[cfg(test)]
mod tests;
