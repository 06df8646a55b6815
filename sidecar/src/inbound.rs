//! The inbound side: connections redirected to the Pod arrive here, are terminated (mesh mTLS)
//! or taken as they are (plaintext, in permissive mode), authorized, and forwarded to the app
//! at the address and port they were sent to, from the client's own address, so the app sees
//! its real client (Istio's TPROXY mode; the Pod's interception routes the app's replies back
//! here). Where the kernel does not allow that (no `CAP_NET_ADMIN`, another address family)
//! or the connection was not redirected (no original destination: tests on loopback), the app
//! is reached on [`InboundConfig::app_ip`] from the sidecar's own address instead, counted in
//! [`socket::Fallbacks`] and logged once.
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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::authorize::Authorize;
use crate::detect::{self, Detected, Detection};
use crate::listen::{Listener, Serve};
use crate::metrics::{Direction, Metrics};
use crate::tls::{self, MeshTls};
use crate::upstream::{Connector, Identities};
use crate::{Error, socket};

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
    /// Where the app is reached when a connection cannot come from its client's address
    /// (loopback in a Pod).
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
pub struct Shared {
    config: InboundConfig,
    tls: Arc<MeshTls>,
    authorize: Arc<dyn Authorize>,
    metrics: Arc<Metrics>,
    connector: Connector,
    app: crate::upstream::Clients,
    /// Detection on the raw connection: no port is opaque there, since a client sidecar sends
    /// its ClientHello first whatever the app's protocol.
    outer_detection: Detection,
    /// Connections to the app that could not come from their client's address.
    fallbacks: Arc<socket::Fallbacks>,
}

/// Where one connection goes to the app, and how it is opened there.
#[derive(Clone, Debug)]
struct App {
    addr: SocketAddr,
    /// [`Shared::connector`], from the client's address when the connection was redirected.
    connector: Connector,
}

impl App {
    /// A redirected connection goes to its original destination (the Pod's address and the
    /// app's port) from the client's address; any other to [`InboundConfig::app_ip`].
    fn of(shared: &Shared, original: Option<SocketAddr>, port: u16, client: SocketAddr) -> App {
        let Some(original) = original else {
            shared
                .fallbacks
                .record(&"the connection was not redirected (no original destination)");
            return App {
                addr: SocketAddr::new(shared.config.app_ip, port),
                connector: shared.connector.clone(),
            };
        };
        App {
            addr: original,
            connector: Connector {
                source: Some(socket::OriginalSource {
                    client: client.ip(),
                    fallback: shared.config.app_ip,
                    fallbacks: shared.fallbacks.clone(),
                }),
                ..shared.connector.clone()
            },
        }
    }
}

/// The bound inbound listener.
pub type Inbound = Listener<Shared>;

impl Listener<Shared> {
    pub async fn build(
        config: InboundConfig,
        tls: Arc<MeshTls>,
        authorize: Arc<dyn Authorize>,
        metrics: Arc<Metrics>,
    ) -> Result<Inbound, Error> {
        let connector = Connector {
            mark: config.mark,
            timeout: config.connect_timeout,
            tls: tls.clone(),
            identities: Arc::new(Identities::default()),
            metrics: metrics.clone(),
            source: None,
        };
        let app = crate::upstream::Clients::new(&connector);
        let outer_detection = Detection {
            opaque_ports: Default::default(),
            ..config.detection.clone()
        };
        let addr = config.addr;
        let fallbacks = Arc::new(socket::Fallbacks::new(metrics.client_address_fallbacks()));
        let shared = Shared {
            config,
            tls,
            authorize,
            metrics,
            connector,
            app,
            outer_detection,
            fallbacks,
        };
        Listener::bind("inbound", addr, shared).await
    }

    /// The count of connections to the app that could not come from their client's address.
    pub fn fallbacks(&self) -> Arc<socket::Fallbacks> {
        self.shared.fallbacks.clone()
    }
}

impl Serve for Shared {
    fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        client: SocketAddr,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        serve(self, stream, client)
    }
}

async fn serve(shared: Arc<Shared>, stream: TcpStream, client: SocketAddr) {
    let _open = shared.metrics.connection(Direction::Inbound);
    let original = socket::original_dst(&stream);
    // A redirected connection was addressed to this Pod (the redirect lands it on the address
    // it came in on). One addressed elsewhere — a neighbour on the bridge can send such a
    // packet to the Pod's MAC — is closed: the sidecar would otherwise connect onward to it
    // from the client's address, past the outbound side's mTLS and policy.
    if let (Some(original), Ok(local)) = (original, stream.local_addr())
        && original.ip() != local.ip()
    {
        shared.metrics.authz("deny_other_destination");
        return tracing::debug!(%client, %original, %local, "a connection addressed to another host: closed");
    }
    let Some(port) = original.map(|a| a.port()).or(shared.config.app_port) else {
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
        let app = App::of(&shared, original, port, client);
        return to_app(shared, None, detected, io, app, client).await;
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
    let app = App::of(&shared, original, port, client);
    to_app(shared, Some(peer), inner, io, app, client).await;
}

/// Serves what a connection carries to the app.
async fn to_app<I>(
    shared: Arc<Shared>,
    peer: Option<WorkloadId>,
    detected: Detected,
    io: I,
    app: App,
    client: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let port = app.addr.port();
    if detected.is_http() {
        return http::serve(shared, peer, detected, io, app, client).await;
    }
    if !shared.authorize.authorize(peer.as_ref(), port, None) {
        shared.metrics.authz("deny_tcp");
        return tracing::info!(%client, port, peer = ?peer.map(|p| p.to_string()), "connection denied by policy");
    }
    shared.metrics.authz("allow");
    let mut upstream = match app.connector.open(app.addr, None).await {
        Ok(conn) => conn,
        Err(e) => {
            return tracing::info!(%client, app = %app.addr, error = %e, "cannot reach the app");
        }
    };
    let mut io = io;
    match tokio::io::copy_bidirectional(&mut io, &mut upstream).await {
        Ok((sent, received)) => shared.metrics.bytes(Direction::Inbound, sent, received),
        Err(e) => tracing::debug!(%client, error = %e, "connection ended with an error"),
    }
}
