//! Forwarding names outside the cluster zone to upstream servers: UDP first, TCP when the answer
//! is truncated, the next upstream when one fails; a cache of positive and negative answers
//! (TTL-capped, sized); and loop detection two ways: every query we send upstream is remembered
//! while it is in flight, so one that comes back to us unchanged is caught; and at start each
//! upstream is sent a probe for a random name (CoreDNS's `loop` plugin), so an upstream that
//! forwards back to us through a resolver that rewrites ids is caught too, and left out.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::cache::Cache;
use crate::metrics::Metrics;

/// The EDNS payload size ferry advertises upstream (the DNS flag day 2020 value).
const UPSTREAM_PAYLOAD: u16 = 1232;
/// The largest UDP payload: an upstream may send more than it was offered.
const MAX_DATAGRAM: usize = 65535;

/// An upstream's answer, without its header and OPT record.
#[derive(Clone, Debug, PartialEq)]
pub struct Upstream {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Upstream {
    /// NOERROR with at least one record: the name resolved.
    pub fn is_positive(&self) -> bool {
        self.rcode == ResponseCode::NoError && !self.answers.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream servers configured")]
    NoUpstreams,
    #[error("every upstream failed; last: {0}")]
    Failed(String),
    #[error("every upstream forwards back to ferry (a loop)")]
    Looping,
}

/// Sends queries upstream and remembers the answers.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    /// Per upstream: the name of its loop probe, and whether the probe came back to us.
    probes: Vec<Name>,
    looping: Vec<AtomicBool>,
    timeout: Duration,
    cache: Cache,
    /// Queries we have sent and not yet been answered: (id, name, type). One of these arriving
    /// at our own listener means an upstream forwards back to us.
    inflight: Mutex<HashSet<(u16, Name, RecordType)>>,
    metrics: Metrics,
}

impl Forwarder {
    pub fn new(
        upstreams: Vec<SocketAddr>,
        timeout: Duration,
        cache: Cache,
        metrics: Metrics,
    ) -> Self {
        let probes = upstreams.iter().map(|_| probe_name()).collect();
        let looping = upstreams.iter().map(|_| AtomicBool::new(false)).collect();
        Forwarder {
            upstreams,
            probes,
            looping,
            timeout,
            cache,
            inflight: Mutex::new(HashSet::new()),
            metrics,
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Whether a query arriving at our listener is one we sent upstream ourselves.
    pub fn is_own(&self, id: u16, name: &Name, qtype: RecordType) -> bool {
        let inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        !inflight.is_empty() && inflight.contains(&(id, name.clone(), qtype))
    }

    /// If `name` is the loop probe of an upstream, that upstream forwards back to us: it is left
    /// out from now on. Returns it.
    pub fn caught_probe(&self, name: &Name) -> Option<SocketAddr> {
        let i = self.probes.iter().position(|p| p == name)?;
        if !self.looping[i].swap(true, Ordering::Relaxed) {
            tracing::error!(upstream = %self.upstreams[i], "forwarding loop: this upstream sends queries back to ferry; no longer forwarding to it (set --dns-upstream)");
        }
        Some(self.upstreams[i])
    }

    /// Sends each upstream its loop probe (HINFO for a random name), as CoreDNS does at start.
    /// The answers do not matter: what matters is whether the probe arrives at our listener.
    pub async fn probe(&self) {
        for (upstream, probe) in self.upstreams.iter().zip(&self.probes) {
            let _ = self.exchange(*upstream, probe, RecordType::HINFO).await;
        }
    }

    /// Answers `name`/`qtype` from the cache, else from the first upstream that answers.
    pub async fn resolve(&self, name: &Name, qtype: RecordType) -> Result<Upstream, ForwardError> {
        if let Some(hit) = self.cache.get(name, qtype) {
            self.metrics.cache_hits.inc();
            return Ok(hit);
        }
        self.metrics.cache_misses.inc();
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstreams);
        }
        let mut last = None;
        for (i, &upstream) in self.upstreams.iter().enumerate() {
            if self.looping[i].load(Ordering::Relaxed) {
                continue;
            }
            self.metrics.forwarded.inc();
            match self.exchange(upstream, name, qtype).await {
                Ok(answer) => {
                    let answer = self.cache.keep(name, qtype, answer);
                    self.metrics.cache_entries.set(self.cache.len() as i64);
                    return Ok(answer);
                }
                Err(e) => {
                    self.metrics.upstream_failures.inc();
                    tracing::debug!(%upstream, %name, error = %e, "upstream failed");
                    last = Some(format!("{upstream}: {e}"));
                }
            }
        }
        Err(last.map_or(ForwardError::Looping, ForwardError::Failed))
    }

    /// One question to one upstream: UDP, then TCP if the answer was truncated.
    async fn exchange(
        &self,
        upstream: SocketAddr,
        name: &Name,
        qtype: RecordType,
    ) -> Result<Upstream, String> {
        let mut query = Message::query();
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(name.clone(), qtype));
        let mut edns = Edns::new();
        edns.set_max_payload(UPSTREAM_PAYLOAD);
        query.set_edns(edns);
        let id = query.metadata.id;
        let bytes = query.to_vec().map_err(|e| e.to_string())?;

        let key = (id, name.clone(), qtype);
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        let result = tokio::time::timeout(self.timeout, async {
            let reply = udp_exchange(upstream, &bytes, id, name, qtype).await?;
            if reply.metadata.truncation {
                tcp_exchange(upstream, &bytes, id, name, qtype).await
            } else {
                Ok(reply)
            }
        })
        .await;
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        let reply = result.map_err(|_| format!("no answer in {:?}", self.timeout))??;
        match reply.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok(Upstream {
                rcode: reply.metadata.response_code,
                answers: reply.answers,
                authorities: reply.authorities,
                additionals: reply.additionals,
            }),
            other => Err(format!("answered {other}")),
        }
    }
}

/// Checks that a reply answers our question (RFC 5452: id, question and source must match).
fn matches(reply: &Message, id: u16, name: &Name, qtype: RecordType) -> bool {
    reply.metadata.id == id
        && reply.metadata.message_type == MessageType::Response
        && reply.queries.len() == 1
        && reply.queries[0].name() == name
        && reply.queries[0].query_type() == qtype
}

async fn udp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    name: &Name,
    qtype: RecordType,
) -> Result<Message, String> {
    let local: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    // Connected: the kernel drops datagrams from any other source.
    socket.connect(upstream).await.map_err(|e| e.to_string())?;
    socket.send(query).await.map_err(|e| e.to_string())?;
    loop {
        // Wait with no buffer: up to MAX_PENDING queries wait here at once, and a 64 KiB buffer
        // each was 256 MiB. The buffer is taken once a datagram is there and dropped once it
        // is parsed; it is not zeroed (`try_recv_buf` fills spare capacity).
        socket.readable().await.map_err(|e| e.to_string())?;
        let mut buf = reply_buffer();
        match socket.try_recv_buf(&mut buf) {
            // Anything else (a stale or forged reply) is ignored; the timeout bounds the wait.
            Ok(_) => {
                if let Ok(reply) = Message::from_vec(&buf)
                    && matches(&reply, id, name, qtype)
                {
                    return Ok(reply);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Room for the largest datagram, taken only to read one that has arrived.
fn reply_buffer() -> Vec<u8> {
    #[cfg(test)]
    tests::REPLY_BUFFERS.with(|n| n.set(n.get() + 1));
    Vec::with_capacity(MAX_DATAGRAM)
}

async fn tcp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    name: &Name,
    qtype: RecordType,
) -> Result<Message, String> {
    let mut stream = TcpStream::connect(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let len = u16::try_from(query.len()).map_err(|_| "query too long".to_string())?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(|e| e.to_string())?;
    let len = stream.read_u16().await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; usize::from(len)];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    let reply = Message::from_vec(&buf).map_err(|e| e.to_string())?;
    if !matches(&reply, id, name, qtype) {
        return Err("TCP answer does not match the question".into());
    }
    Ok(reply)
}

/// `<random>.<random>.`: a name no resolver has cached and no client asks for.
fn probe_name() -> Name {
    let random = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        h.finish()
    };
    let text = format!("{}.{}.", random(), random());
    Name::from_ascii(&text).unwrap_or_else(|_| Name::root())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;

    use super::*;

    thread_local! {
        /// Reply buffers taken on this thread.
        pub(super) static REPLY_BUFFERS: Cell<usize> = const { Cell::new(0) };
    }

    /// Queries waiting on an upstream hold no receive buffer: one is taken only when a datagram
    /// has arrived (it was 64 KiB per waiting query, 256 MiB at the 4,096 cap).
    #[tokio::test(flavor = "current_thread")]
    async fn waiting_queries_hold_no_receive_buffer() {
        const WAITING: usize = 64;
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let upstream = silent.local_addr().unwrap();
        let registry = &mut prometheus_client::registry::Registry::default();
        let forwarder = Arc::new(Forwarder::new(
            vec![upstream],
            Duration::from_secs(60),
            Cache::new(100, 30),
            Metrics::register(registry),
        ));
        let before = REPLY_BUFFERS.with(Cell::get);
        let mut waiting = tokio::task::JoinSet::new();
        for i in 0..WAITING {
            let forwarder = forwarder.clone();
            let name = Name::from_ascii(format!("q{i}.example.")).unwrap();
            // The current-thread runtime runs these on this thread, where the count is kept.
            waiting.spawn(async move { forwarder.resolve(&name, RecordType::A).await });
        }
        // Every query has reached the upstream, so every exchange is waiting for its reply.
        let mut buf = [0u8; 512];
        let mut first = None;
        for _ in 0..WAITING {
            let (n, from) = silent.recv_from(&mut buf).await.unwrap();
            first.get_or_insert((Message::from_vec(&buf[..n]).unwrap(), from));
        }
        assert_eq!(REPLY_BUFFERS.with(Cell::get) - before, 0);

        // A reply takes one, for as long as it takes to read and parse it.
        let (mut reply, from) = first.unwrap();
        reply.metadata.message_type = MessageType::Response;
        reply.metadata.response_code = ResponseCode::NXDomain;
        silent
            .send_to(&reply.to_vec().unwrap(), from)
            .await
            .unwrap();
        let answered = waiting.join_next().await.unwrap().unwrap().unwrap();
        assert_eq!(answered.rcode, ResponseCode::NXDomain);
        assert_eq!(REPLY_BUFFERS.with(Cell::get) - before, 1);
        waiting.abort_all();
    }
}
