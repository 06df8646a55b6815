//! The inbound side: connections redirected to the Pod arrive here, are terminated (mesh mTLS)
//! or taken as they are (plaintext, in permissive mode), authorized, and forwarded to the app
//! on localhost at the port they were sent to.
//!
//! One connection, in order: the app's port (`SO_ORIGINAL_DST`, else the configured
//! [`InboundConfig::app_port`]); detection on the raw bytes, where no port is opaque (a client
//! sidecar speaks first, with its ClientHello, whatever the app's protocol; so a plaintext
//! client of a server-first app, in permissive mode, waits the detection timeout once before
//! it is served: the price of telling it from a sidecar); a ClientHello with the mesh ALPN
//! is terminated with [`MeshTls::server`] and the peer's identity read from its certificate,
//! then what it carries is detected again; plaintext is refused in strict mode. HTTP is served
//! request by request ([`http`]); anything else is authorized once and copied both ways.

mod http;
mod path;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ferry_model::mesh::WorkloadId;
use ferry_runtime::Shutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::authorize::Authorize;
use crate::detect::{self, Detected, Detection};
use crate::metrics::{Direction, Metrics};
use crate::tls::{self, MeshTls};
use crate::upstream::{Connector, Identities};
use crate::{Error, listen, socket};

/// Whether the inbound side takes plaintext (Istio's `PeerAuthentication` modes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MtlsMode {
    /// Only mesh mTLS: a plaintext client is closed (and counted).
    Strict,
    /// mTLS and plaintext both, for migrating a namespace into the mesh (the default).
    #[default]
    Permissive,
}

impl std::str::FromStr for MtlsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<MtlsMode, String> {
        match s {
            "strict" => Ok(MtlsMode::Strict),
            "permissive" => Ok(MtlsMode::Permissive),
            other => Err(format!("{other:?}: expected strict or permissive")),
        }
    }
}

/// How the inbound side runs.
#[derive(Clone, Debug)]
pub struct InboundConfig {
    pub addr: SocketAddr,
    /// Whether plaintext is taken, unless the policy says ([`Authorize::mtls_mode`]): the
    /// control plane's policy replaces it from its first answer.
    pub mode: MtlsMode,
    /// The app's port when a connection has no original destination (it was not redirected:
    /// tests on loopback, or a client that dialled the inbound port itself). Without it such a
    /// connection is closed.
    pub app_port: Option<u16>,
    /// Where the app listens (loopback in a Pod).
    pub app_ip: IpAddr,
    pub mark: Option<u32>,
    pub detection: Detection,
    /// To open a connection to the app, and for a peer's TLS handshake.
    pub connect_timeout: Duration,
}

impl InboundConfig {
    pub fn new(addr: SocketAddr) -> InboundConfig {
        InboundConfig {
            addr,
            mode: MtlsMode::default(),
            app_port: None,
            app_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            mark: None,
            detection: Detection::default(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// What every inbound connection reads.
#[derive(Debug)]
struct Shared {
    config: InboundConfig,
    tls: Arc<MeshTls>,
    authorize: Arc<dyn Authorize>,
    metrics: Arc<Metrics>,
    connector: Connector,
    app: crate::upstream::Clients,
    /// Detection on the raw connection: no port is opaque there, since a client sidecar sends
    /// its ClientHello first whatever the app's protocol.
    outer_detection: Detection,
}

/// The bound inbound listener.
#[derive(Debug)]
pub struct Inbound {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Inbound {
    pub async fn build(
        config: InboundConfig,
        tls: Arc<MeshTls>,
        authorize: Arc<dyn Authorize>,
        metrics: Arc<Metrics>,
    ) -> Result<Inbound, Error> {
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| Error::Bind {
                what: "inbound",
                addr: config.addr,
                source,
            })?;
        let connector = Connector {
            mark: config.mark,
            timeout: config.connect_timeout,
            tls: tls.clone(),
            identities: Arc::new(Identities::default()),
            metrics: metrics.clone(),
        };
        let app = crate::upstream::Clients::new(&connector);
        let outer_detection = Detection {
            opaque_ports: Default::default(),
            ..config.detection.clone()
        };
        Ok(Inbound {
            listener,
            shared: Arc::new(Shared {
                config,
                tls,
                authorize,
                metrics,
                connector,
                app,
                outer_detection,
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self, shutdown: Shutdown) {
        let shared = self.shared;
        listen::accept_loop(self.listener, shutdown, move |stream, client| {
            serve(shared.clone(), stream, client)
        })
        .await;
    }
}

async fn serve(shared: Arc<Shared>, stream: TcpStream, client: SocketAddr) {
    let _open = shared.metrics.connection(Direction::Inbound);
    let Some(port) = socket::original_dst(&stream)
        .map(|a| a.port())
        .or(shared.config.app_port)
    else {
        tracing::debug!(%client, "no original destination and no app port: closing");
        return;
    };
    let (detected, io) = match detect::detect(stream, port, &shared.outer_detection).await {
        Ok(found) => found,
        Err(e) => return tracing::debug!(%client, error = %e, "reading the first bytes failed"),
    };
    shared.metrics.detected(Direction::Inbound, detected);
    if detected != Detected::MeshTls {
        // The policy's mode when it has one (it follows the control plane), else the
        // configured one: read per connection, so a change applies to the next client.
        let mode = shared.authorize.mtls_mode().unwrap_or(shared.config.mode);
        if mode == MtlsMode::Strict {
            shared
                .metrics
                .plaintext(Direction::Inbound, "refused_strict");
            return tracing::debug!(%client, port, "plaintext refused (strict mTLS)");
        }
        shared.metrics.plaintext(Direction::Inbound, "permissive");
        return to_app(shared, None, detected, io, port, client).await;
    }
    let accepted = match shared.tls.server() {
        Ok(config) => {
            let accept = TlsAcceptor::from(config).accept(io);
            tokio::time::timeout(shared.config.connect_timeout, accept).await
        }
        Err(e) => return tracing::warn!(%client, error = %e, "cannot terminate mTLS"),
    };
    let tls = match accepted {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            shared.metrics.handshake(Direction::Inbound, false);
            return tracing::info!(%client, error = %e, "mTLS handshake refused");
        }
        Err(_) => {
            shared.metrics.handshake(Direction::Inbound, false);
            return tracing::info!(%client, "mTLS handshake timed out");
        }
    };
    let peer = match tls::peer_identity(tls.get_ref().1.peer_certificates().unwrap_or_default()) {
        Ok(peer) => peer,
        Err(e) => {
            shared.metrics.handshake(Direction::Inbound, false);
            return tracing::info!(%client, error = %e, "mTLS peer refused");
        }
    };
    shared.metrics.handshake(Direction::Inbound, true);
    let (inner, io) = match detect::detect(tls, port, &shared.config.detection).await {
        Ok(found) => found,
        Err(e) => return tracing::debug!(%client, error = %e, "reading inside mTLS failed"),
    };
    shared.metrics.detected(Direction::Inbound, inner);
    to_app(shared, Some(peer), inner, io, port, client).await;
}

/// Serves what a connection carries to the app on `port`.
async fn to_app<I>(
    shared: Arc<Shared>,
    peer: Option<WorkloadId>,
    detected: Detected,
    io: I,
    port: u16,
    client: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if detected.is_http() {
        return http::serve(shared, peer, detected, io, port, client).await;
    }
    if !shared.authorize.authorize(peer.as_ref(), port, None) {
        shared.metrics.authz("deny_tcp");
        return tracing::info!(%client, port, peer = ?peer.map(|p| p.to_string()), "connection denied by policy");
    }
    shared.metrics.authz("allow");
    let app = SocketAddr::new(shared.config.app_ip, port);
    let mut upstream = match shared.connector.open(app, None).await {
        Ok(conn) => conn,
        Err(e) => return tracing::info!(%client, %app, error = %e, "cannot reach the app"),
    };
    let mut io = io;
    match tokio::io::copy_bidirectional(&mut io, &mut upstream).await {
        Ok((sent, received)) => shared.metrics.bytes(Direction::Inbound, sent, received),
        Err(e) => tracing::debug!(%client, error = %e, "connection ended with an error"),
    }
}
