//! The local cluster's Kubernetes API server: HTTPS with a bearer token, `/version`,
//! discovery (aggregated v2 and the legacy documents), and `get`, `list` and `watch` of every
//! object the local cluster has (namespaced and across namespaces, label and field selectors,
//! `limit`/`continue`), as JSON or as a `Table`, so the real `kubectl get [-w]` works against
//! `ferry up`; and the writes ([`writes`]: create, update, patch, delete, the `status` and
//! `scale` subresources) on the declared objects of the local cluster it is given
//! ([`ApiServer::serving_writes`]; without one, writes answer 405 `MethodNotAllowed`).
//! Also the Pod subresources that stream from the node's kubelet
//! ([`ApiServer::with_kubelet`]): `pods/log` (`log.rs`, `kubectl logs`) and `pods/exec` over a
//! WebSocket (`exec.rs`, `kubectl exec`). ServiceAccount tokens: TokenRequest
//! (`serviceaccounts/token`, `kubectl create token`) and TokenReview ([`tokens`]).
//!
//! Objects come from the [`Store`] each round of the orchestrator records (one revision
//! counter; resourceVersions are opaque strings; a ring of recent events for watches).
//!
//! `/openapi/v3` serves the kinds' schemas ([`openapi`]); the same schemas carry the patch
//! metadata of the strategic merge patch ([`strategic`]) and server-side apply ([`ssa`]).
//! Strict field validation of a write is the manifest reader's (the same unknown fields a
//! file reports); [`openapi::unknown_fields`] checks an object against the served schemas.

mod exec;
mod log;
pub mod openapi;
pub mod pki;
mod requests;
pub mod resources;
pub mod selector;
pub mod ssa;
pub mod store;
pub mod strategic;
pub mod table;
pub mod tokens;
pub mod watch;
mod writes;

#[cfg(test)]
mod patch_tests;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_runtime::Shutdown;
use ferry_runtime::connections::{Connection, Connections, Limits};
use ferry_runtime::serve::respond;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use pki::{Credentials, PkiError};
pub use store::Store;

use resources::Resource;
use table::Include;
use watch::ApiBody;

use requests::handle;
pub use requests::query_params;

/// The Kubernetes version the server says it speaks (kubectl's dispatcher picks its client
/// by this minor version).
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "32");
/// How long a client gets to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open requests get to finish on shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection closed by its limits gets to close by itself.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Where the API server listens and keeps its credentials.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--api`.
    pub addr: SocketAddr,
    /// `--state-dir`: the CA, the token and a copy of the kubeconfig.
    pub state_dir: PathBuf,
    /// `--write-kubeconfig`; `<state-dir>/kubeconfig` when absent.
    pub kubeconfig: Option<PathBuf>,
}

/// The kubeconfig kept in a state directory.
pub fn kubeconfig_path(state_dir: &Path) -> PathBuf {
    state_dir.join("kubeconfig")
}

/// Why the API server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--state-dir: {0}")]
    Pki(#[from] PkiError),
    #[error("--write-kubeconfig: {0}")]
    WriteKubeconfig(PkiError),
    #[error("--api {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the API server's certificate: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the API server's certificate: {0}")]
    KeyPair(#[from] ferry_runtime::tls::KeyPairError),
}

/// A bound API server, its kubeconfig written.
pub struct ApiServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    kubeconfig: PathBuf,
}

#[derive(Debug)]
struct State {
    store: Arc<Store>,
    token: String,
    server: String,
    /// The local cluster writes act on; `None`: writes are not served.
    cluster: Option<crate::Handle>,
    /// Set on shutdown: ends the watches.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The node's kubelet, for `pods/log` and `pods/exec` ([`ApiServer::with_kubelet`]).
    kubelet: std::sync::OnceLock<crate::kubelet::Kubelet>,
    /// Signs and verifies ServiceAccount tokens ([`tokens`]).
    signer: Arc<tokens::jwt::Signer>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("listener", &self.listener)
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Loads (or makes) the credentials, binds, and writes the kubeconfig.
    pub async fn build(config: Config, store: Arc<Store>) -> Result<ApiServer, Error> {
        let credentials = Credentials::load_or_create(&config.state_dir)?;
        let signer = tokens::jwt::Signer::load_or_create(&config.state_dir, tokens::ISSUER)?;
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: config.addr,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.addr,
            source,
        })?;
        let (chain, key) = credentials.serving(local.ip())?;
        let certified = ferry_runtime::tls::certified_key(chain.as_bytes(), key.as_bytes())?;
        let mut tls =
            rustls::ServerConfig::builder_with_provider(ferry_runtime::tls::provider().clone())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // A client reaches an unspecified address on loopback.
        let host = match local.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let server = format!("https://{}", SocketAddr::new(host, local.port()));
        let kubeconfig = credentials.kubeconfig(&server);
        let kept = kubeconfig_path(&config.state_dir);
        pki::write_private(&kept, &kubeconfig)?;
        let path = match config.kubeconfig {
            Some(path) => {
                pki::write_private(&path, &kubeconfig).map_err(Error::WriteKubeconfig)?;
                path
            }
            None => kept,
        };
        Ok(ApiServer {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            state: Arc::new(State {
                store,
                token: credentials.token,
                server,
                cluster: None,
                stopping: tokio::sync::watch::Sender::new(false),
                kubelet: std::sync::OnceLock::new(),
                signer: Arc::new(signer),
            }),
            kubeconfig: path,
        })
    }

    /// Serves the write verbs on this local cluster's declared objects (its store must be
    /// the one this server reads).
    pub fn serving_writes(mut self, cluster: crate::Handle) -> ApiServer {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.cluster = Some(cluster);
        }
        self
    }

    /// Serves `pods/log` and `pods/exec` from this kubelet (without one they answer 503).
    #[must_use]
    pub fn with_kubelet(self, kubelet: crate::kubelet::Kubelet) -> ApiServer {
        let _ = self.state.kubelet.set(kubelet);
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where the admin kubeconfig was written.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Serves until shutdown, then lets open requests finish (for a bounded time). Each
    /// connection is bounded as the admin server's ([`Limits::ADMIN`]): a deadline for its
    /// first request, an idle timeout, a cap on open connections.
    pub async fn run(self, mut shutdown: Shutdown) {
        tracing::info!(
            server = %self.state.server,
            "Kubernetes API: export KUBECONFIG={}",
            self.kubeconfig.display()
        );
        let builder = auto::Builder::new(TokioExecutor::new());
        let connections = Connections::new(Limits::ADMIN);
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Some(conn) = connections.admit() else {
                            tracing::debug!(%peer, "every API connection is busy at the limit; closing the new one");
                            continue;
                        };
                        tasks.spawn(connection(
                            self.acceptor.clone(),
                            builder.clone(),
                            stream,
                            peer,
                            self.state.clone(),
                            conn,
                            shutdown.clone(),
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = shutdown.wait() => break,
            }
        }
        self.state.stopping.send_replace(true);
        drop(self.listener);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.shutdown().await;
        }
    }
}

/// Serves one connection: the TLS handshake (bounded), then requests until the client closes,
/// the connection's limits close it, or shutdown drains it.
async fn connection(
    acceptor: TlsAcceptor,
    builder: auto::Builder<TokioExecutor>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    conn: Connection,
    mut shutdown: Shutdown,
) {
    let _ = stream.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "API TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "API TLS handshake timed out");
            return;
        }
    };
    let conn = Arc::new(conn);
    let tracked = conn.clone();
    let svc = service_fn(move |req| {
        let in_progress = tracked.request();
        let state = state.clone();
        async move {
            let response = handle(&state, req).await;
            // A watch keeps its request in progress while it streams.
            Ok::<_, Infallible>(response.map(|body| body.guarded(in_progress)))
        }
    });
    // With upgrades: `pods/exec` switches its HTTP/1.1 connection to a WebSocket.
    let served = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
    let mut served = std::pin::pin!(served);
    let grace = tokio::select! {
        result = served.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "API connection ended with an error");
            }
            return;
        }
        expiry = conn.expired() => {
            tracing::debug!(%peer, %expiry, "closing the API connection");
            CLOSE_GRACE
        }
        () = shutdown.wait() => DRAIN_TIMEOUT,
    };
    served.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(grace, served).await;
}

/// A random version 4 UUID (a uid the API server gives on create, and the controllers give
/// what they make). Names and uids only need to differ, not to be secret.
pub(crate) fn new_uid() -> String {
    let (a, b) = (ferry_runtime::random::u64(), ferry_runtime::random::u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}
