//! Cluster DNS: the Kubernetes DNS-Based Service Discovery specification (schema 1.1.0) served
//! from the snapshot, and every other name forwarded upstream through a cache.
//!
//! The flow: each accepted snapshot compiles into a [`ZoneIndex`] that replaces the served one
//! atomically (`ArcSwap`), so a query sees one whole zone, old or new, never half an update. The
//! [`handler`] answers a query from the index without locks or awaits; names outside the zone go
//! to the [`forward`]er. [`server`] runs UDP (one SO_REUSEPORT socket per worker thread, each
//! taking a batch of queries per `recvmmsg` and answering it with one `sendmmsg`) and TCP on
//! the same address. Every hickory type stays inside this crate.

pub mod autopath;
pub mod cache;
pub mod forward;
pub mod handler;
pub mod metrics;
pub mod resolv;
pub mod server;
pub mod zone;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use ferry_runtime::{Limits, Shutdown, Subscription};
use hickory_proto::rr::Name;
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;

pub use handler::{Handler, Transport};
pub use zone::ZoneIndex;

use crate::cache::Cache;
use crate::forward::Forwarder;
use crate::metrics::Metrics;

/// Everything the DNS part takes.
#[derive(Clone, Debug)]
pub struct Config {
    /// UDP and TCP on this address.
    pub listen: SocketAddr,
    /// The cluster domain, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// Where names outside the cluster domain go; none means they are REFUSED.
    pub upstreams: Vec<SocketAddr>,
    /// The host's search domains: the tail of a Pod's search path, for autopath.
    pub search: Vec<String>,
    /// Walk the search path server-side (`--dns-autopath`).
    pub autopath: bool,
    /// TTL of the cluster's records (CoreDNS's `ttl 30`).
    pub ttl: u32,
    /// Forwarding cache: entries at most, and the longest any is kept (CoreDNS's `cache 30`).
    pub cache_size: usize,
    pub cache_max_ttl: u32,
    /// How long one upstream gets to answer before the next is asked.
    pub upstream_timeout: Duration,
    /// UDP sockets (and receive loops); 0 means one per CPU.
    pub workers: usize,
    /// TCP connections: the first query's deadline, the idle timeout between queries, and the
    /// cap on open connections (at the cap the longest idle one is closed for a new one).
    pub tcp: Limits,
}

/// CoreDNS's (miekg/dns): 2 s to read the first query, 8 s idle between queries (RFC 7766
/// §6.2.3); and at most 1,024 connections open at once.
pub const TCP_LIMITS: Limits = Limits {
    first_request: Duration::from_secs(2),
    idle: Duration::from_secs(8),
    max_connections: 1024,
};

impl Config {
    /// The defaults of Kubernetes' shipped Corefile, listening on `listen`.
    pub fn new(listen: SocketAddr, cluster_domain: impl Into<String>) -> Config {
        Config {
            listen,
            cluster_domain: cluster_domain.into(),
            upstreams: Vec::new(),
            search: Vec::new(),
            autopath: false,
            ttl: 30,
            cache_size: 10_000,
            cache_max_ttl: 30,
            upstream_timeout: Duration::from_secs(2),
            workers: 0,
            tcp: TCP_LIMITS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr} (UDP and TCP): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The zone does not compile: the cluster domain is no DNS name, or the zone is past what
    /// an index holds (4 GiB of names and records).
    #[error("cannot compile the cluster zone: {0}")]
    Zone(String),
    #[error("search domain {0:?}: {1}")]
    Search(String, String),
    #[error(
        "upstream {0} is this DNS server itself: forwarding to it would loop (set --dns-upstream)"
    )]
    Loop(SocketAddr),
}

/// The DNS part, bound and holding the zone of the newest snapshot.
#[derive(Debug)]
pub struct Dns {
    sockets: server::Sockets,
    handler: Arc<Handler>,
    forwarder: Option<Arc<Forwarder>>,
    zone: Arc<ArcSwap<ZoneIndex>>,
    subscription: Subscription,
    config: Config,
    metrics: Metrics,
}

impl Dns {
    /// Binds the listeners and compiles the current snapshot's zone.
    pub fn build(
        config: Config,
        mut subscription: Subscription,
        registry: &mut Registry,
    ) -> Result<Dns, Error> {
        let metrics = Metrics::register(registry);
        let snapshot = subscription.current();
        let index = compile(&snapshot, &config).map_err(Error::Zone)?;
        metrics.zone_names.set(index.len() as i64);
        let zone = Arc::new(ArcSwap::from_pointee(index));
        subscription.served(snapshot.version);

        let workers = match config.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let sockets = server::bind(config.listen, workers).map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let local = sockets.local_addr();
        if let Some(&upstream) = config.upstreams.iter().find(|u| is_self(**u, local)) {
            return Err(Error::Loop(upstream));
        }
        let forwarder = (!config.upstreams.is_empty()).then(|| {
            Arc::new(Forwarder::new(
                config.upstreams.clone(),
                config.upstream_timeout,
                Cache::new(config.cache_size, config.cache_max_ttl),
                metrics.clone(),
            ))
        });
        let autopath = if config.autopath {
            let mut search = Vec::new();
            for s in &config.search {
                let mut name =
                    Name::from_ascii(s).map_err(|e| Error::Search(s.clone(), e.to_string()))?;
                name.set_fqdn(true);
                search.push(name);
            }
            Some(search)
        } else {
            None
        };
        let handler = Arc::new(Handler::new(
            zone.clone(),
            forwarder.clone(),
            autopath,
            metrics.clone(),
        ));
        Ok(Dns {
            sockets,
            handler,
            forwarder,
            zone,
            subscription,
            config,
            metrics,
        })
    }

    /// The address UDP and TCP listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.sockets.local_addr()
    }

    /// Serves until shutdown; each new snapshot swaps in a new zone.
    pub async fn run(self, mut shutdown: Shutdown) {
        let Dns {
            sockets,
            handler,
            forwarder,
            zone,
            mut subscription,
            config,
            metrics,
        } = self;
        tracing::info!(addr = %sockets.local_addr(), domain = %config.cluster_domain, upstreams = ?config.upstreams, autopath = config.autopath, "cluster DNS is up");
        let mut tasks = JoinSet::new();
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        if let Err(e) = server::spawn(sockets, handler, config.tcp, &mut tasks, stop.0.clone()) {
            tracing::error!(error = %e, "cluster DNS cannot serve");
            return;
        }
        if let Some(forwarder) = forwarder {
            tasks.spawn(async move { forwarder.probe().await });
        }
        loop {
            tokio::select! {
                changed = subscription.changed() => {
                    let Some(snapshot) = changed else { break };
                    match compile(&snapshot, &config) {
                        Ok(index) => {
                            metrics.zone_names.set(index.len() as i64);
                            zone.store(Arc::new(index));
                            subscription.served(snapshot.version);
                        }
                        // The domain was checked at build: only a zone past 4 GiB gets here,
                        // and the old zone keeps serving.
                        Err(e) => tracing::error!(error = %e, "cannot compile the cluster zone"),
                    }
                }
                _ = shutdown.wait() => break,
            }
        }
        // DNS has no long exchanges to drain: in-flight forwards are dropped with the tasks.
        drop(stop);
        tasks.shutdown().await;
    }
}

/// The zone of `snapshot`; `ns.dns.<zone>` falls back to the address DNS listens on.
fn compile(snapshot: &ferry_model::Snapshot, config: &Config) -> Result<ZoneIndex, String> {
    let ip = config.listen.ip();
    let served_on: &[std::net::IpAddr] = if ip.is_unspecified() { &[] } else { &[ip] };
    ZoneIndex::compile_serving(snapshot, &config.cluster_domain, config.ttl, served_on)
}

/// Stops the UDP worker threads when `run` ends, however it ends (its runtime may drop it).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Whether `upstream` is the address this server listens on.
fn is_self(upstream: SocketAddr, local: SocketAddr) -> bool {
    upstream.port() == local.port()
        && (upstream.ip() == local.ip()
            || (local.ip().is_unspecified() && upstream.ip().is_loopback()))
}
