//! The ingress gateway: a plain HTTP and a TLS listener in front of the request [`pipeline`].
//!
//! Each accepted snapshot compiles into a new [`pipeline::Compiled`] (the routes with their
//! Ingress options, and a balancer per cluster that carries the previous one's endpoint state
//! over) and a new certificate index, both swapped in atomically: a request runs to its end on
//! the snapshot it started with, a handshake gets the certificates of the newest, and no
//! connection is closed because the configuration changed. [`listener`] accepts (TLS with
//! [`tls`]; [`smuggling`] follows the HTTP/1 framing), [`pipeline`] forwards, [`metrics`] and
//! [`access_log`] observe.

pub mod access_log;
pub mod connect;
pub mod listener;
pub mod metrics;
pub mod pipeline;
pub mod select;
pub mod send_timeout;
pub mod smuggling;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ferry_runtime::{Shutdown, Subscription};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;
use crate::pipeline::{Compiled, Pipeline, Timeouts};
use crate::tls::{CertIndex, Resolver};

/// Everything the gateway takes.
#[derive(Clone, Debug)]
pub struct Config {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub timeouts: Timeouts,
    /// One JSON line per request on stdout (`--access-log`).
    pub access_log: bool,
    /// Client connections open at once, per listener; more wait in the kernel's accept queue.
    pub max_connections: usize,
}

impl Config {
    pub fn new(http: SocketAddr, https: SocketAddr) -> Config {
        Config {
            http,
            https,
            timeouts: Timeouts::default(),
            access_log: false,
            max_connections: 10_000,
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
    max_connections: usize,
}

impl Gateway {
    /// Binds both listeners and compiles the current snapshot.
    pub async fn build(
        config: Config,
        mut subscription: Subscription,
        registry: &mut Registry,
    ) -> Result<Gateway, Error> {
        let metrics = Metrics::register(registry);
        let http = listener::bind(config.http).await?;
        let https = listener::bind(config.https).await?;
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
            max_connections: config.max_connections,
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
            max_connections,
        } = self;
        tracing::info!(http = ?http.local_addr().ok(), https = ?https.local_addr().ok(), "ingress gateway is up");
        let plain = tokio::spawn(listener::serve(
            http,
            None,
            pipeline.clone(),
            metrics.clone(),
            max_connections,
            shutdown.clone(),
        ));
        let secure = tokio::spawn(listener::serve(
            https,
            Some(TlsAcceptor::from(tls_config)),
            pipeline,
            metrics,
            max_connections,
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
        let _ = plain.await;
        let _ = secure.await;
    }
}

#[cfg(test)]
mod tests;
