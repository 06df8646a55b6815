//! Connections the sidecar opens: to the app on the inbound side, to endpoints on the
//! outbound side. Every socket carries the mesh's mark (when configured); a connection to a
//! meshed endpoint is mutual TLS that expects the endpoint's identity.
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

/// The identity each meshed endpoint address must present.
#[derive(Debug, Default)]
pub struct Identities(RwLock<HashMap<SocketAddr, WorkloadId>>);

impl Identities {
    pub fn get(&self, addr: &SocketAddr) -> Option<WorkloadId> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(addr)
            .cloned()
    }

    pub fn set(&self, addr: SocketAddr, id: Option<WorkloadId>) {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        match id {
            Some(id) => map.insert(addr, id),
            None => map.remove(&addr),
        };
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
}

impl Connector {
    /// A connection to `addr`: mutual TLS expecting `expected` when given, else plaintext.
    pub async fn open(&self, addr: SocketAddr, expected: Option<&WorkloadId>) -> io::Result<Conn> {
        let tcp = socket::connect(addr, self.mark, self.timeout).await?;
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
                Ok(Conn::Mesh(Box::new(tls)))
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

/// A connection the sidecar opened: plaintext or mesh mTLS.
#[derive(Debug)]
pub enum Conn {
    Plain(TcpStream),
    Mesh(Box<TlsStream<TcpStream>>),
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
            Conn::Mesh(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
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
            Conn::Mesh(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Mesh(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Mesh(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Mesh(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Mesh(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Pooled HTTP clients over a [`Connector`], one per protocol: the inbound side's to the app,
/// the outbound side's to endpoints (`https` URIs are mesh mTLS).
#[derive(Debug)]
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
