//! The ingress gateway: a plain HTTP and a TLS listener in front of the request [`pipeline`].
//!
//! Each accepted snapshot compiles into a new [`pipeline::Compiled`] (the routes with their
//! Ingress options, and a balancer per cluster that carries the previous one's endpoint state
//! over) and a new certificate index, both swapped in atomically: a request runs to its end on
//! the snapshot it started with, a handshake gets the certificates of the newest, and no
//! connection is closed because the configuration changed. With more than one worker, each
//! serves listeners of its own (`SO_REUSEPORT`) on a thread with a current-thread runtime, as
//! nginx's worker processes; the compiled snapshot, the certificates and the pools for HTTP/2
//! and upgrades are shared, idle owned upstream connections stay with their worker.
//!
//! What is the gateway's own: [`listener`] accepts (TLS with [`tls`]), serves HTTP/1.1 on the
//! fast path (`h1`: one loop per client connection over `ferry_proxy::h1`) and hands the
//! rest to hyper ([`smuggling`] follows the HTTP/1 framing hyper reads; [`deadline`] closes
//! quiet connections), [`pipeline`] runs the request
//! path as named steps with the Ingress-only features ([`select`]: regex paths, rewrite,
//! canary; redirects, app-root, the affinity cookie), [`metrics`] and [`access_log`] observe.
//! The forwarding the steps call (upstream connections and pools, timeouts, forwarding
//! headers, upgrades, HTTP/2 limits, the failure type) is `ferry_proxy`'s, shared with the
//! sidecar.

pub mod access_log;
pub mod deadline;
mod h1;
pub mod listener;
pub mod metrics;
pub mod pipeline;
pub mod select;
pub mod smuggling;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ferry_runtime::{Shutdown, Subscription};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::deadline::ClientLimits;
use crate::metrics::Metrics;
use crate::pipeline::{Compiled, Pipeline};
use crate::tls::{CertIndex, Resolver};
use ferry_proxy::Timeouts;

/// Everything the gateway takes.
#[derive(Clone, Debug)]
pub struct Config {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub timeouts: Timeouts,
    /// One JSON line per request on stdout (`--access-log`).
    pub access_log: bool,
    /// Client connections open at once, per listener and worker; more wait in the kernel's
    /// accept queue.
    pub max_connections: usize,
    /// `--client-header-timeout` (nginx's, 60 s): a connection's first request head, and any
    /// head once begun, must be complete within it, else the connection is closed.
    pub client_header_timeout: Duration,
    /// `--keepalive-timeout` (nginx's, 75 s): a connection with no request in progress (no
    /// open stream on HTTP/2) is closed after it.
    pub keepalive_timeout: Duration,
    /// Threads that serve client connections (`--workers`), each with listeners of its own
    /// (`SO_REUSEPORT`: the kernel spreads connections over them) and, but for the first, a
    /// current-thread runtime of its own; the first serves in the caller's runtime. All share
    /// the compiled snapshot, the certificates and the upstream pools.
    pub workers: usize,
}

impl Config {
    pub fn new(http: SocketAddr, https: SocketAddr) -> Config {
        let defaults = ClientLimits::default();
        Config {
            http,
            https,
            timeouts: Timeouts::default(),
            access_log: false,
            max_connections: defaults.max_connections,
            client_header_timeout: defaults.header,
            keepalive_timeout: defaults.keepalive,
            workers: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
}

/// A worker after the first: its own listeners, served on a thread of its own.
#[derive(Debug)]
struct Worker {
    http: std::net::TcpListener,
    https: std::net::TcpListener,
}

/// The gateway, bound and holding the newest snapshot's routes and certificates.
#[derive(Debug)]
pub struct Gateway {
    http: TcpListener,
    https: TcpListener,
    state: Arc<ArcSwap<Compiled>>,
    resolver: Arc<Resolver>,
    fake: Arc<rustls::sign::CertifiedKey>,
    tls_config: Arc<rustls::ServerConfig>,
    pipeline: Arc<Pipeline>,
    subscription: Subscription,
    metrics: Metrics,
    limits: ClientLimits,
    workers: Vec<Worker>,
}

impl Gateway {
    /// Binds both listeners and compiles the current snapshot.
    pub async fn build(
        config: Config,
        mut subscription: Subscription,
        registry: &mut Registry,
    ) -> Result<Gateway, Error> {
        let metrics = Metrics::register(registry);
        let shared = config.workers > 1;
        let http = listener::bind(config.http, shared)?;
        let https = listener::bind(config.https, shared)?;
        // The others bind the addresses the first got (a port 0 is chosen once).
        let http_at = http.local_addr().unwrap_or(config.http);
        let https_at = https.local_addr().unwrap_or(config.https);
        let workers = (1..config.workers)
            .map(|_| {
                Ok(Worker {
                    http: listener::bind_std(http_at, true)?,
                    https: listener::bind_std(https_at, true)?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let https_port = https.local_addr().map_or(config.https.port(), |a| a.port());
        let snapshot = subscription.current();
        let fake = Arc::new(tls::fake_certificate().map_err(Error::Tls)?);
        let resolver = Arc::new(Resolver::new(CertIndex::compile(
            &snapshot.certificates,
            &fake,
        )));
        let tls_config = Arc::new(tls::server_config(resolver.clone()).map_err(Error::Tls)?);
        let state = Arc::new(ArcSwap::from_pointee(Compiled::compile(&snapshot, None)));
        subscription.served(snapshot.version);
        let pipeline = Arc::new(
            Pipeline::new(
                state.clone(),
                config.timeouts,
                https_port,
                metrics.clone(),
                config.access_log,
            )
            .map_err(Error::Tls)?,
        );
        Ok(Gateway {
            http,
            https,
            state,
            resolver,
            fake,
            tls_config,
            pipeline,
            subscription,
            metrics,
            limits: ClientLimits {
                max_connections: config.max_connections,
                header: config.client_header_timeout,
                keepalive: config.keepalive_timeout,
            },
            workers,
        })
    }

    /// The plain HTTP listener's address.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The TLS listener's address.
    pub fn https_addr(&self) -> std::io::Result<SocketAddr> {
        self.https.local_addr()
    }

    /// Serves until shutdown, then drains; each new snapshot swaps in new routes and
    /// certificates.
    pub async fn run(self, mut shutdown: Shutdown) {
        let Gateway {
            http,
            https,
            state,
            resolver,
            fake,
            tls_config,
            pipeline,
            mut subscription,
            metrics,
            limits,
            workers,
        } = self;
        tracing::info!(http = ?http.local_addr().ok(), https = ?https.local_addr().ok(), workers = workers.len() + 1, "ingress gateway is up");
        let acceptor = TlsAcceptor::from(tls_config);
        let threads: Vec<_> = workers
            .into_iter()
            .enumerate()
            .filter_map(|(i, worker)| {
                let (acceptor, pipeline, metrics, shutdown) = (
                    acceptor.clone(),
                    pipeline.clone(),
                    metrics.clone(),
                    shutdown.clone(),
                );
                let (done, finished) = tokio::sync::oneshot::channel::<()>();
                let spawned = std::thread::Builder::new()
                    .name(format!("ferry-gateway-{}", i + 1))
                    .spawn(move || {
                        worker.serve(acceptor, pipeline, metrics, limits, shutdown);
                        let _ = done.send(());
                    });
                match spawned {
                    Ok(_) => Some(finished),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a gateway worker thread");
                        None
                    }
                }
            })
            .collect();
        let listening = tokio::spawn(listener::serve_both(
            (http, https),
            acceptor,
            pipeline,
            metrics,
            limits,
            shutdown.clone(),
        ));
        loop {
            tokio::select! {
                changed = subscription.changed() => {
                    let Some(snapshot) = changed else { break };
                    resolver.swap(CertIndex::compile(&snapshot.certificates, &fake));
                    let next = Compiled::compile(&snapshot, Some(&state.load()));
                    state.store(Arc::new(next));
                    subscription.served(snapshot.version);
                    tracing::debug!(version = snapshot.version, "gateway serves a new snapshot");
                }
                () = shutdown.wait() => break,
            }
        }
        let _ = listening.await;
        for finished in threads {
            let _ = finished.await;
        }
    }
}

impl Worker {
    /// Serves both listeners on this thread until shutdown, then drains.
    fn serve(
        self,
        acceptor: TlsAcceptor,
        pipeline: Arc<Pipeline>,
        metrics: Metrics,
        limits: ClientLimits,
        shutdown: Shutdown,
    ) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(error = %e, "cannot start a gateway worker's runtime");
                return;
            }
        };
        runtime.block_on(async move {
            let (http, https) = match (
                TcpListener::from_std(self.http),
                TcpListener::from_std(self.https),
            ) {
                (Ok(http), Ok(https)) => (http, https),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "a gateway worker cannot listen");
                    return;
                }
            };
            let listeners = (http, https);
            listener::serve_both(listeners, acceptor, pipeline, metrics, limits, shutdown).await;
        });
    }
}

#[cfg(test)]
mod tests;
