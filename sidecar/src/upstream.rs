//! Connections the sidecar opens: to the app on the inbound side (from the client's address
//! where the kernel allows it), to endpoints on the outbound side. Every socket carries the
//! mesh's mark (when configured); a connection to a meshed endpoint is mutual TLS that expects
//! the endpoint's identity.
//!
//! [`Connector`] is the connector of the HTTP clients (hyper-util's pooled client): an
//! `https` URI is an endpoint reached over mesh mTLS, and its expected identity is looked up
//! by address in [`Identities`], which the outbound side fills from destination answers; an
//! `http` URI is plaintext. [`Connector::open`] is the same for one opaque connection.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use ferry_model::mesh::WorkloadId;
use ferry_proxy::body::ProxyBody;
use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::metrics::{Direction, Metrics};
use crate::socket;
use crate::tls::MeshTls;

/// The identity each meshed endpoint address must present, as the destinations that list the
/// address say: one address may be an endpoint of several Services (and so of several
/// subscriptions), so each (address, identity) pair is counted, and an address is forgotten
/// only when no destination lists it with an identity any more.
#[derive(Debug, Default)]
pub struct Identities(RwLock<HashMap<SocketAddr, Vec<(WorkloadId, usize)>>>);

impl Identities {
    /// The identity `addr` must present: when destinations disagree (a Pod's address reused
    /// while an old answer lingers), the one listed most recently.
    pub fn get(&self, addr: &SocketAddr) -> Option<WorkloadId> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(addr)
            .and_then(|ids| ids.last())
            .map(|(id, _)| id.clone())
    }

    /// One destination's change: what it listed before (`previous`) is released and what it
    /// lists now (`now`) is taken, in one step; endpoints without an identity count for
    /// nothing.
    pub fn change<'a>(
        &self,
        previous: impl IntoIterator<Item = (SocketAddr, Option<&'a WorkloadId>)>,
        now: impl IntoIterator<Item = (SocketAddr, Option<&'a WorkloadId>)>,
    ) {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        for (addr, id) in now {
            let Some(id) = id else { continue };
            let ids = map.entry(addr).or_default();
            match ids.iter().position(|(known, _)| known == id) {
                Some(n) => {
                    // Moved last: the newest listing wins a disagreement.
                    let (known, count) = ids.remove(n);
                    ids.push((known, count + 1));
                }
                None => ids.push((id.clone(), 1)),
            }
        }
        for (addr, id) in previous {
            let Some(id) = id else { continue };
            let Some(ids) = map.get_mut(&addr) else {
                continue;
            };
            if let Some(n) = ids.iter().position(|(known, _)| known == id) {
                ids[n].1 -= 1;
                if ids[n].1 == 0 {
                    ids.remove(n);
                }
            }
            if ids.is_empty() {
                map.remove(&addr);
            }
        }
    }

    /// Lists `addr` with `id` once (a fixed destination's endpoint).
    pub fn add(&self, addr: SocketAddr, id: &WorkloadId) {
        self.change([], [(addr, Some(id))]);
    }
}

/// Opens the sidecar's connections.
#[derive(Clone, Debug)]
pub struct Connector {
    pub mark: Option<u32>,
    pub timeout: Duration,
    pub tls: Arc<MeshTls>,
    pub identities: Arc<Identities>,
    pub metrics: Arc<Metrics>,
    /// The inbound side's connections to the app: from the client's address.
    pub source: Option<socket::OriginalSource>,
}

impl Connector {
    /// A connection to `addr`: mutual TLS expecting `expected` when given, else plaintext.
    pub async fn open(&self, addr: SocketAddr, expected: Option<&WorkloadId>) -> io::Result<Conn> {
        let tcp = match &self.source {
            Some(source) => socket::connect_from(source, addr, self.mark, self.timeout).await?,
            None => socket::connect(addr, self.mark, self.timeout).await?,
        };
        let Some(expected) = expected else {
            return Ok(Conn::Plain(tcp));
        };
        let config = self
            .tls
            .client(expected)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let connecting = TlsConnector::from(config).connect(ServerName::from(addr.ip()), tcp);
        match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(tls)) => {
                self.metrics.handshake(Direction::Outbound, true);
                Ok(Conn::Mesh(Box::new(tls), expected.clone()))
            }
            Ok(Err(e)) => {
                self.metrics.handshake(Direction::Outbound, false);
                Err(io::Error::new(
                    e.kind(),
                    format!("mTLS to {addr} expecting {expected}: {e}"),
                ))
            }
            Err(_) => {
                self.metrics.handshake(Direction::Outbound, false);
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("mTLS to {addr}: no handshake within {:?}", self.timeout),
                ))
            }
        }
    }
}

fn addr_of(uri: &Uri) -> io::Result<SocketAddr> {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: not ip:port"));
    let authority = uri.authority().ok_or_else(bad)?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let ip = host.parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(ip, authority.port_u16().ok_or_else(bad)?))
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Conn>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Conn>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let addr = addr_of(&uri)?;
            let expected = match uri.scheme_str() {
                Some("https") => Some(this.identities.get(&addr).ok_or_else(|| {
                    io::Error::other(format!("{addr}: no identity is known for it"))
                })?),
                _ => None,
            };
            this.open(addr, expected.as_ref()).await.map(TokioIo::new)
        })
    }
}

/// A connection the sidecar opened: plaintext or mesh mTLS to the identity it verified.
#[derive(Debug)]
pub enum Conn {
    Plain(TcpStream),
    Mesh(Box<TlsStream<TcpStream>>, WorkloadId),
}

impl Conn {
    /// The identity the peer proved: `None` over plaintext.
    pub fn identity(&self) -> Option<&WorkloadId> {
        match self {
            Conn::Plain(_) => None,
            Conn::Mesh(_, id) => Some(id),
        }
    }
}

impl ferry_proxy::h1::pool::Socket for Conn {
    fn nothing_to_read(&mut self) -> bool {
        match self {
            Conn::Plain(tcp) => ferry_proxy::h1::pool::nothing_on(tcp),
            Conn::Mesh(tls, _) => {
                let (tcp, session) = tls.get_mut();
                // Plaintext rustls decrypted and nobody read, or its close_notify (`Ok(0)`).
                let mut probe = [0u8; 1];
                let held = !matches!(
                    std::io::Read::read(&mut session.reader(), &mut probe),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock
                );
                !held && ferry_proxy::h1::pool::nothing_on(tcp)
            }
        }
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Mesh(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Mesh(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Mesh(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Mesh(s, _) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Mesh(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Mesh(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Pooled HTTP clients over a [`Connector`], one per protocol: the inbound side's to the app,
/// the outbound side's to endpoints (`https` URIs are mesh mTLS). A clone shares the pools.
#[derive(Clone, Debug)]
pub struct Clients {
    h1: Client<Connector, ProxyBody>,
    h2: Client<Connector, ProxyBody>,
}

impl Clients {
    pub fn new(connector: &Connector) -> Clients {
        Clients {
            h1: Client::builder(TokioExecutor::new()).build(connector.clone()),
            h2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(connector.clone()),
        }
    }

    /// The pool of the protocol the request keeps: HTTP/2 or HTTP/1.
    pub fn for_h2(&self, h2: bool) -> &Client<Connector, ProxyBody> {
        if h2 { &self.h2 } else { &self.h1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(sa: &str) -> WorkloadId {
        format!("spiffe://cluster.local/ns/shop/sa/{sa}")
            .parse()
            .unwrap()
    }

    #[test]
    fn an_identity_another_destination_still_lists_is_kept() {
        let ids = Identities::default();
        let addr: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let api = id("api");
        // Two Services select the same Pod: two subscriptions list its address.
        ids.change([], [(addr, Some(&api))]);
        ids.change([], [(addr, Some(&api))]);
        // One Service drops it (its selector changed): the other still reaches it over mTLS.
        ids.change([(addr, Some(&api))], []);
        assert_eq!(ids.get(&addr), Some(api.clone()));
        ids.change([(addr, Some(&api))], []);
        assert_eq!(ids.get(&addr), None);
    }

    #[test]
    fn an_update_that_keeps_an_endpoint_keeps_its_identity_and_the_newest_listing_wins() {
        let ids = Identities::default();
        let addr: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let (old, new) = (id("old"), id("new"));
        ids.change([], [(addr, Some(&old))]);
        // The same destination again: released and taken in one step, never missing.
        ids.change([(addr, Some(&old))], [(addr, Some(&old))]);
        assert_eq!(ids.get(&addr), Some(old.clone()));
        // The address reused by another workload, listed by another destination.
        ids.change([], [(addr, Some(&new))]);
        assert_eq!(ids.get(&addr), Some(new.clone()));
        ids.change([(addr, Some(&new))], []);
        assert_eq!(ids.get(&addr), Some(old.clone()));
        // An endpoint that lost its sidecar counts for nothing.
        ids.change([(addr, Some(&old))], [(addr, None)]);
        assert_eq!(ids.get(&addr), None);
    }
}
