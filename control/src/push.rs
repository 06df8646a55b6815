//! `ferry control`'s push service: gRPC over TLS, one bidirectional stream per data-plane part
//! (`ferry.control.v1.Control/Subscribe`, `model/proto/ferry/control/v1/control.proto`).
//!
//! A part presents the join token (`authorization: Bearer …`; anything else is
//! UNAUTHENTICATED), says `Hello` (role, node, name) and is sent the newest snapshot at once,
//! then a delta (what changed) after every accepted change, each with a fresh nonce; it
//! answers `Ack` or `Nack`, which [`parts`] records for `/status` and `ferry get proxies`.
//! [`stream`] runs one subscriber's pushes through a bounded queue: a part that falls behind
//! is sent the newest whole view, not every step. A DNS server is sent no certificates (they
//! come with private keys): only a gateway serves TLS.
//!
//! A sidecar calls the `Destination` service on the same channel, with the same token
//! ([`destination`]): one destination's endpoints or its workload's inbound ports, never the
//! whole view. Its calls are listed as role `sidecar` while open.
//!
//! The server is hyper's HTTP/2 over tokio-rustls with tonic's generated service on top (no
//! tonic transport: the one TLS setup is ours). [`ca`] keeps the join token and the serving
//! certificate, which the mesh CA issues and reissues when it is rotated.
//!
//! The `Identity` service runs on the same channel ([`crate::identity::service`]): a sidecar
//! sends a CSR and its per-Pod token (no join token) and is issued its workload certificate.

pub mod ca;
pub mod destination;
pub mod inbound;
pub mod local;
pub mod parts;
pub mod stream;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_model::Snapshot;
use ferry_model::proto::{self, Role, subscribe_request::Message};
use ferry_runtime::connections::{Connection, Connections, InProgress, Limits};
use ferry_runtime::subscribe::grpc::control_server::{Control, ControlServer};
use ferry_runtime::subscribe::grpc::destination_server::{
    Destination as DestinationService, DestinationServer,
};
use ferry_runtime::subscribe::grpc::identity_server::IdentityServer;
use ferry_runtime::subscribe::{KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, MAX_MESSAGE_BYTES};
use ferry_runtime::{Shutdown, SnapshotBus, StatusBoard};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;

use self::ca::ServingCertificate;
use self::parts::Parts;
use crate::identity::service::{self as identity_service, IdentityService};
use crate::identity::{Ca, IdentityConfig, PodTokens};

/// What `ferry control` serves the push on.
#[derive(Clone, Debug)]
pub struct PushConfig {
    pub listen: SocketAddr,
    /// Holds the mesh CA (`ca.crt`, the trust bundle parts pass as `--control-ca`; see
    /// [`crate::identity::files`]), `join-token` and `pod-token.key`.
    pub state_dir: PathBuf,
    /// A connection that has not finished its TLS handshake by then is closed, so silent
    /// connections cannot pile up on the push port ([`HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Duration,
    /// The bounds on open connections ([`PUSH_LIMITS`]).
    pub limits: Limits,
    /// The pushes a part may have queued and not read ([`stream::QUEUE_DEPTH`]); past it, the
    /// part is sent the newest whole view once it reads again.
    pub queue: usize,
    /// The cluster domain: the suffix of the Service names a sidecar subscribes to
    /// (`name.namespace.svc.<domain>:port`) and the trust domain of the workload identities
    /// (`spiffe://<domain>/ns/<ns>/sa/<sa>`); `cluster.local` by default.
    pub cluster_domain: String,
    /// The mesh CA and the `Identity` service.
    pub identity: IdentityConfig,
}

/// The default of [`PushConfig::handshake_timeout`].
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The bounds on push connections: a subscription must begin within 10 s of the handshake, a
/// connection with no subscription open closes after 60 s, and at most 4,096 are open (at the
/// cap, the one idle longest makes room). An open subscription is never idle: the HTTP/2
/// keep-alive finds a part that went away.
pub const PUSH_LIMITS: Limits = Limits {
    first_request: Duration::from_secs(10),
    idle: Duration::from_secs(60),
    max_connections: 4096,
};

impl PushConfig {
    pub fn new(listen: SocketAddr, state_dir: PathBuf) -> PushConfig {
        PushConfig {
            listen,
            state_dir,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            limits: PUSH_LIMITS,
            queue: stream::QUEUE_DEPTH,
            cluster_domain: "cluster.local".to_owned(),
            identity: IdentityConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    State(#[from] ca::StateError),
    #[error("mesh CA: {0}")]
    Ca(#[from] crate::identity::CaError),
    #[error("cannot issue the serving certificate: {0}")]
    Certificate(String),
    #[error(transparent)]
    Bind(#[from] ferry_runtime::Error),
}

/// A bound push server.
pub struct PushServer {
    listener: TcpListener,
    handshake_timeout: Duration,
    limits: Limits,
    tls: tokio_rustls::TlsAcceptor,
    service: Subscriptions,
    ca: Arc<Ca>,
    serving: Arc<ServingCertificate>,
    reload_interval: Duration,
    identity_metrics: identity_service::Metrics,
}

impl std::fmt::Debug for PushServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushServer")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl PushServer {
    /// Reads (or makes) the CA and token, issues the serving certificate and binds.
    pub async fn build(
        config: PushConfig,
        bus: SnapshotBus,
        status: StatusBoard,
        registry: &mut Registry,
    ) -> Result<PushServer, PushError> {
        let token = ca::join_token(&config.state_dir)?;
        let ca = Arc::new(
            Ca::load(config.identity.ca.clone(), &config.state_dir)?
                .with_pods(config.identity.pods.clone(), config.identity.workload_ttl),
        );
        let pod_tokens = Arc::new(PodTokens::load_or_create(&config.state_dir)?);
        let (names, addresses) = ca::server_names(config.listen);
        let serving = Arc::new(
            ServingCertificate::issue(&ca.current(), names, addresses)
                .map_err(PushError::Certificate)?,
        );
        let tls = ca::server_config(serving.clone()).map_err(PushError::Certificate)?;
        let identity_metrics = identity_service::Metrics::register(registry);
        let identity = IdentityService::new(
            ca.clone(),
            pod_tokens,
            config.identity.pods.clone(),
            config.cluster_domain.clone(),
            config.identity.workload_ttl,
            identity_metrics.clone(),
        )
        .with_reviewer(config.identity.reviewer.clone());
        let listener = ferry_runtime::serve::bind(config.listen).await?;
        Ok(PushServer {
            listener,
            handshake_timeout: config.handshake_timeout,
            limits: config.limits,
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            service: Subscriptions {
                identity,
                shared: Arc::new(Shared {
                    token,
                    bus,
                    parts: Parts::new(status, registry),
                    views: Arc::default(),
                    queue: config.queue.max(1),
                    cluster_domain: config.cluster_domain,
                    cluster_ips: Arc::default(),
                }),
            },
            ca,
            serving,
            reload_interval: config.identity.reload_interval,
            identity_metrics,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The per-Pod token minter of this control plane (same key as its checks): what a kubelet
    /// hands each meshed Pod's sidecar.
    pub fn pod_tokens(&self) -> Arc<PodTokens> {
        self.service.identity.tokens()
    }

    /// Serves until shutdown; then every stream and connection ends (parts reconnect to the
    /// next control plane and keep serving meanwhile).
    pub async fn run(self, mut shutdown: Shutdown) {
        let (serving, metrics) = (self.serving.clone(), self.identity_metrics.clone());
        let rotations = tokio::spawn(self.ca.clone().watch(
            self.reload_interval,
            shutdown.clone(),
            move |hierarchy| {
                metrics.ca_changed(hierarchy);
                if let Err(e) = serving.reissue(hierarchy) {
                    tracing::error!(error = %e, "push: cannot reissue the serving certificate from the rotated CA; the old one serves");
                }
            },
        ));
        let mut connections = JoinSet::new();
        let open = Connections::new(self.limits);
        loop {
            let (tcp, peer) = tokio::select! {
                () = shutdown.wait() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, say: wait a little rather than spin.
                        tracing::warn!(error = %e, "push: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let Some(conn) = open.admit() else {
                tracing::debug!(%peer, "push: every connection is busy at the limit; closing the new one");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let tls = &self.tls;
            let service = self.service.clone();
            let shutdown = shutdown.clone();
            let handshake = tokio::time::timeout(self.handshake_timeout, tls.accept(tcp));
            connections.spawn(serve_connection(handshake, peer, service, conn, shutdown));
        }
        connections.shutdown().await;
        let _ = rotations.await;
    }
}

/// The control channel (Control, Destination, Identity) for the Pods of `ferry up` in netns
/// mode: served with TLS on the node's address on the Pod bridge (`listen`, e.g.
/// `node.gateway():7443`), from the state directory's mesh CA, its certificate naming that
/// address; sidecars reach it with the bundle `state_dir/ca.crt` and a per-Pod token from
/// [`PushServer::pod_tokens`]. `pods` is the in-process control plane's
/// ([`crate::Control::pods`]). Run the returned server with [`PushServer::run`].
pub async fn serve_for_pods(
    listen: SocketAddr,
    state_dir: PathBuf,
    cluster_domain: String,
    pods: crate::identity::PodDirectory,
    bus: SnapshotBus,
    status: StatusBoard,
    registry: &mut Registry,
) -> Result<PushServer, PushError> {
    let config = PushConfig {
        cluster_domain,
        identity: IdentityConfig {
            pods,
            ..IdentityConfig::default()
        },
        ..PushConfig::new(listen, state_dir)
    };
    PushServer::build(config, bus, status, registry).await
}

async fn serve_connection(
    handshake: impl Future<
        Output = Result<
            std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
            tokio::time::error::Elapsed,
        >,
    >,
    peer: SocketAddr,
    service: Subscriptions,
    conn: Connection,
    mut shutdown: Shutdown,
) {
    let stream = tokio::select! {
        () = shutdown.wait() => return,
        stream = handshake => match stream {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "push: TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "push: no TLS handshake in time");
                return;
            }
        },
    };
    let server = ControlServer::new(service.with_peer(peer))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let destinations = DestinationServer::new(service.with_peer(peer))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let identity = IdentityServer::new(service.identity.clone());
    let conn = Arc::new(conn);
    let tracked = conn.clone();
    let service = hyper::service::service_fn(move |request: http::Request<_>| {
        let mut server = server.clone();
        let mut destinations = destinations.clone();
        let mut identity = identity.clone();
        // The call is in progress until its answer's body ends: a subscription for as long
        // as it is open, a refused one at once.
        let in_progress = tracked.request();
        async move {
            // Three services on one channel, by the gRPC path's service name.
            let path = request.uri().path();
            let response = if path.starts_with(DESTINATION_PATH) {
                tower_service::Service::call(&mut destinations, request).await?
            } else if path.starts_with(IDENTITY_PATH) {
                tower_service::Service::call(&mut identity, request).await?
            } else {
                tower_service::Service::call(&mut server, request).await?
            };
            Ok::<_, std::convert::Infallible>(response.map(|body| Guarded {
                body,
                _in_progress: in_progress,
            }))
        }
    });
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        () = shutdown.wait() => {}
        expiry = conn.expired() => tracing::debug!(%peer, ?expiry, "push: connection closed"),
        result = connection => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "push: connection ended");
            }
        }
    }
}

/// The path prefix of the `Destination` service's calls.
const DESTINATION_PATH: &str = "/ferry.control.v1.Destination/";
/// The path prefix of the `Identity` service's calls.
const IDENTITY_PATH: &str = "/ferry.control.v1.Identity/";

/// An answer's body that keeps its call counted as in progress until it ends.
struct Guarded<B> {
    body: B,
    _in_progress: InProgress,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[derive(Debug)]
struct Shared {
    token: String,
    bus: SnapshotBus,
    parts: Parts,
    views: Arc<stream::Views>,
    queue: usize,
    cluster_domain: String,
    /// Shared by every `Destination.Get` that names a cluster IP.
    cluster_ips: Arc<destination::ClusterIps>,
}

/// The gRPC service, one per connection (it knows the peer's address).
#[derive(Clone, Debug)]
struct Subscriptions {
    shared: Arc<Shared>,
    identity: IdentityService,
}

#[derive(Clone, Debug)]
struct PeerSubscriptions {
    shared: Arc<Shared>,
    identity: IdentityService,
    peer: SocketAddr,
}

/// Who a sidecar's call speaks for.
enum SidecarCaller {
    /// The join token: a part of the control plane's own (or an operator's tool), which may
    /// ask about any workload.
    Joined,
    /// A per-Pod token: that Pod's sidecar, which may ask only about its own workload.
    Pod { namespace: String, pod: String },
}

/// A sidecar's calls prove themselves with its Pod's token (what the kubelet handed it), or
/// with the join token. Pods are never given the join token: with it a Pod could subscribe as
/// a gateway and receive every private key.
async fn authorize_sidecar(
    metadata: &tonic::metadata::MetadataMap,
    shared: &Shared,
    identity: &IdentityService,
) -> Result<SidecarCaller, tonic::Status> {
    let given = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            tonic::Status::unauthenticated("no Pod or join token (authorization: Bearer)")
        })?;
    if same_token(given.as_bytes(), shared.token.as_bytes()) {
        return Ok(SidecarCaller::Joined);
    }
    match identity.authenticate(given).await {
        Ok(caller) => Ok(SidecarCaller::Pod {
            namespace: caller.namespace,
            pod: caller.pod,
        }),
        Err(e @ crate::identity::tokens::TokenError::ReviewUnavailable(_)) => {
            Err(tonic::Status::unavailable(e.to_string()))
        }
        Err(e) => Err(tonic::Status::unauthenticated(format!(
            "Pod token refused: {e}"
        ))),
    }
}

impl Subscriptions {
    fn with_peer(&self, peer: SocketAddr) -> PeerSubscriptions {
        PeerSubscriptions {
            shared: self.shared.clone(),
            identity: self.identity.clone(),
            peer,
        }
    }
}

/// Compares without an early exit, so the time taken tells nothing about the token.
fn same_token(given: &[u8], token: &[u8]) -> bool {
    given.len() == token.len()
        && given
            .iter()
            .zip(token)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn authorize(metadata: &tonic::metadata::MetadataMap, token: &str) -> Result<(), tonic::Status> {
    let given = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| tonic::Status::unauthenticated("no join token (authorization: Bearer)"))?;
    if same_token(given.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(tonic::Status::unauthenticated("unknown join token"))
    }
}

type PushStream = ReceiverStream<Result<proto::Push, tonic::Status>>;

#[tonic::async_trait]
impl Control for PeerSubscriptions {
    type SubscribeStream = PushStream;

    async fn subscribe(
        &self,
        request: tonic::Request<tonic::Streaming<proto::SubscribeRequest>>,
    ) -> Result<tonic::Response<PushStream>, tonic::Status> {
        authorize(request.metadata(), &self.shared.token)?;
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(proto::SubscribeRequest {
                message: Some(Message::Hello(hello)),
            }) => hello,
            _ => {
                return Err(tonic::Status::invalid_argument(
                    "the first message of a subscription is Hello",
                ));
            }
        };
        let role = match Role::try_from(hello.role) {
            Ok(role @ (Role::Gateway | Role::Dns)) => role,
            Ok(Role::Sidecar) => {
                return Err(tonic::Status::invalid_argument(
                    "Hello.role: a sidecar subscribes per destination (ferry.control.v1.Destination), not to the whole view",
                ));
            }
            _ => {
                return Err(tonic::Status::invalid_argument(format!(
                    "Hello.role: {} is not a role (gateway or dns)",
                    hello.role
                )));
            }
        };
        if hello.name.is_empty() {
            return Err(tonic::Status::invalid_argument("Hello.name is empty"));
        }
        let parts = self.shared.parts.clone();
        let id = parts.connect(role, hello.name.clone(), hello.node, self.peer.to_string());
        tracing::info!(role = parts::role_name(role), name = %hello.name, peer = %self.peer, "part subscribed");
        let (tx, rx) = mpsc::channel(self.shared.queue);
        let cx = stream::StreamContext {
            role,
            id,
            bus: self.shared.bus.clone(),
            parts: parts.clone(),
            views: self.shared.views.clone(),
        };
        tokio::spawn(async move {
            stream::serve(cx, inbound, tx).await;
            parts.disconnect(id);
            tracing::info!(role = parts::role_name(role), name = %hello.name, "part unsubscribed");
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

/// A sidecar's call: its name checked, listed in [`Parts`] until the call ends, its answers
/// streamed by [`destination::serve`] through a bounded queue.
fn sidecar_stream<T: destination::Answer>(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    caller: Option<proto::Caller>,
    message: &str,
    what: String,
    compute: impl Fn(&Snapshot) -> T + Send + 'static,
) -> Result<tonic::Response<ReceiverStream<Result<T, tonic::Status>>>, tonic::Status> {
    let caller = caller.unwrap_or_default();
    if caller.name.is_empty() {
        return Err(tonic::Status::invalid_argument(format!(
            "{message}.caller.name is empty"
        )));
    }
    let parts = shared.parts.clone();
    let id = parts.connect(
        Role::Sidecar,
        caller.name.clone(),
        caller.node,
        peer.to_string(),
    );
    tracing::info!(name = %caller.name, %peer, subscription = %what, "sidecar subscribed");
    let (tx, rx) = mpsc::channel(shared.queue);
    let bus = shared.bus.clone();
    tokio::spawn(async move {
        destination::serve(bus, parts.clone(), id, compute, tx).await;
        parts.disconnect(id);
        tracing::info!(name = %caller.name, subscription = %what, "sidecar unsubscribed");
    });
    Ok(tonic::Response::new(ReceiverStream::new(rx)))
}

#[tonic::async_trait]
impl DestinationService for PeerSubscriptions {
    type GetStream = ReceiverStream<Result<proto::DestinationUpdate, tonic::Status>>;
    type GetInboundPolicyStream = ReceiverStream<Result<proto::InboundPolicy, tonic::Status>>;

    async fn get(
        &self,
        request: tonic::Request<proto::GetDestination>,
    ) -> Result<tonic::Response<Self::GetStream>, tonic::Status> {
        authorize_sidecar(request.metadata(), &self.shared, &self.identity).await?;
        let request = request.into_inner();
        let target = destination::parse_authority(&request.authority, &self.shared.cluster_domain)
            .map_err(tonic::Status::invalid_argument)?;
        let domain = self.shared.cluster_domain.clone();
        let cluster_ips = self.shared.cluster_ips.clone();
        sidecar_stream(
            &self.shared,
            self.peer,
            request.caller,
            "GetDestination",
            format!("destination {}", request.authority),
            move |snapshot| proto::DestinationUpdate {
                version: 0,
                update: Some(destination::destination(
                    snapshot,
                    &target,
                    &domain,
                    &cluster_ips,
                )),
            },
        )
    }

    async fn get_inbound_policy(
        &self,
        request: tonic::Request<proto::GetInboundPolicy>,
    ) -> Result<tonic::Response<Self::GetInboundPolicyStream>, tonic::Status> {
        let caller = authorize_sidecar(request.metadata(), &self.shared, &self.identity).await?;
        let request = request.into_inner();
        if request.namespace.is_empty() || request.pod.is_empty() {
            return Err(tonic::Status::invalid_argument(
                "GetInboundPolicy.namespace and GetInboundPolicy.pod name the workload; one is empty",
            ));
        }
        // A Pod's token asks for its own policy only (another's would tell whom it admits).
        if let SidecarCaller::Pod { namespace, pod } = &caller
            && (namespace != &request.namespace || pod != &request.pod)
        {
            return Err(tonic::Status::permission_denied(format!(
                "the token is Pod {namespace}/{pod}'s, not {}/{}'s",
                request.namespace, request.pod
            )));
        }
        let domain = self.shared.cluster_domain.clone();
        let what = format!(
            "inbound policy of Pod {}/{}",
            request.namespace, request.pod
        );
        let (namespace, pod) = (request.namespace, request.pod);
        sidecar_stream(
            &self.shared,
            self.peer,
            request.caller,
            "GetInboundPolicy",
            what,
            move |snapshot| inbound::inbound(snapshot, &namespace, &pod, &domain),
        )
    }
}

#[cfg(test)]
mod tests;
