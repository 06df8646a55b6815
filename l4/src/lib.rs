//! The L4 Service proxy: what kube-proxy does for TCP, in user space.
//!
//! For each TCP port of each Service, ferry listens on `clusterIP:port` for every cluster IP
//! inside the configured service ranges ([`Config::service_cidrs`], default `127.2.0.0/16`; any
//! loopback `127.x.y.z` binds on Linux without configuring an address), and for NodePort and
//! LoadBalancer Services also on `node_host:nodePort`. Each accepted connection goes to one
//! endpoint of that Service port and is copied both ways, half-closes passed on, until both
//! sides are done.
//!
//! Choices, most of them kube-proxy's:
//! - **Which endpoint**: at random (kube-proxy's iptables mode; [`Balance::Random`], a
//!   per-thread xorshift), or in turn ([`Balance::RoundRobin`], its userspace mode). With
//!   `sessionAffinity: ClientIP` a client IP keeps its endpoint while that stays ready and it
//!   comes back within `timeoutSeconds` of its last connection; the table is bounded per
//!   Service port ([`balancer::AFFINITY_CAPACITY`]).
//! - **Which endpoints**: the ready ones; when none is ready, the ones still serving while they
//!   terminate (kube-proxy since 1.28).
//! - **A dead endpoint**: a refused or timed-out connect ([`Config::connect_timeout`]) moves on
//!   to the next endpoint, each tried at most once per connection; when all fail the client's
//!   connection is reset. (iptables cannot retry; here a client never sees a dead endpoint
//!   while a live one is left.)
//! - **No endpoint**: nothing listens on that Service port's addresses, so the kernel refuses a
//!   connection (ECONNREFUSED), as kube-proxy's REJECT rule does; the listener comes back with
//!   the first endpoint.
//! - **Snapshots**: each compiles into a [`Table`] (address → Service port → balancer), swapped
//!   in atomically; the listeners are then brought in line (removed addresses closed, new ones
//!   bound), and only then is the version reported served. A connection in progress never
//!   looks at the table again: config changes do not close connections. A listener that
//!   cannot bind is logged, counted (`ferry_l4_bind_errors_total`) and retried on each
//!   snapshot and every few seconds; it never stops the part.
//! - **Shutdown**: stop accepting, give open connections [`Config::drain_timeout`], close the
//!   rest.
//! - **A cap on connections**: each listening address accepts at most
//!   [`Config::max_connections`] at once (10,000 by default, the gateway's cap per listener); at
//!   the cap it stops accepting, so new clients wait in the kernel's backlog, and it takes the
//!   next one as soon as one of its connections ends.
//! - **Idle connections**: one with no byte either way for [`Config::idle_timeout`] (10 min, nginx
//!   stream's `proxy_timeout`) is closed. There is no deadline for a first byte, since in
//!   server-first protocols the client waits for the endpoint to speak.
//! - Not done: UDP and SCTP ports, `externalIPs`, load-balancer ingress IPs,
//!   `externalTrafficPolicy`/`internalTrafficPolicy: Local` (one node here), and the client's
//!   source address towards the endpoint (the endpoint sees ferry's, as with kube-proxy's
//!   userspace mode).
//!
//! Modules: [`table`] compiles a snapshot, [`balancer`] picks
//! endpoints, `forward` runs one connection, `listeners` keeps the bound set, [`metrics`].

pub mod balancer;
mod forward;
mod listeners;
pub mod metrics;
pub mod table;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use ferry_runtime::{Shutdown, Subscription};
use prometheus_client::registry::Registry;

pub use ferry_model::Cidr;
pub use table::Table;

use crate::forward::Forwarder;
use crate::listeners::{BIND_RETRY, Listeners};
use crate::metrics::Metrics;

/// How a Service port spreads new connections over its endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    /// Uniformly at random, as kube-proxy's iptables mode.
    #[default]
    Random,
    /// In turn, per Service port.
    RoundRobin,
}

impl std::str::FromStr for Balance {
    type Err = Error;

    /// `random` or `round-robin`.
    fn from_str(s: &str) -> Result<Balance, Error> {
        match s {
            "random" => Ok(Balance::Random),
            "round-robin" => Ok(Balance::RoundRobin),
            _ => Err(Error::Balance(s.to_owned())),
        }
    }
}

/// Everything the L4 proxy takes.
#[derive(Clone, Debug)]
pub struct Config {
    /// Cluster IPs inside these ranges are served; others are left alone (`--service-cidr`).
    /// IPv6 cluster IPs are served only when an IPv6 range is given.
    pub service_cidrs: Vec<Cidr>,
    /// Where node ports listen.
    pub node_host: IpAddr,
    pub balance: Balance,
    /// How long one endpoint gets to accept before the next is tried.
    pub connect_timeout: Duration,
    /// A connection with no byte either way for this long is closed (nginx stream's
    /// `proxy_timeout`, 10 min). No first-byte deadline: server-first protocols exist.
    pub idle_timeout: Duration,
    /// How long open connections may go on after shutdown begins.
    pub drain_timeout: Duration,
    /// Client connections open at once per listening address; at the cap the address stops
    /// accepting (new clients wait in the kernel's backlog) until one ends. At least 1.
    pub max_connections: usize,
}

/// nginx stream's `proxy_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// The gateway's cap per listener (`ClientLimits::max_connections`), per listening address.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The service range of `ferry up`'s cluster IPs.
pub const DEFAULT_SERVICE_CIDR: Cidr = Cidr::V4_LOOPBACK_SERVICES;

impl Default for Config {
    fn default() -> Config {
        Config {
            service_cidrs: vec![DEFAULT_SERVICE_CIDR],
            node_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            balance: Balance::Random,
            connect_timeout: Duration::from_secs(2),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            drain_timeout: Duration::from_secs(5),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("service {0}")]
    Cidr(#[from] ferry_model::CidrError),
    #[error("balance {0:?}: expected random or round-robin")]
    Balance(String),
    #[error("the L4 connect timeout must be more than zero")]
    ConnectTimeout,
    #[error("the L4 idle timeout must be more than zero")]
    IdleTimeout,
    #[error("the L4 connection cap (max connections) must be at least 1")]
    MaxConnections,
}

/// What the proxy does now, for tests and the admin side. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Handle(Arc<HandleState>);

#[derive(Debug, Default)]
struct HandleState {
    listening: ArcSwap<Vec<SocketAddr>>,
    version: AtomicU64,
}

impl Handle {
    /// The addresses listened on now, sorted.
    pub fn listening(&self) -> Vec<SocketAddr> {
        self.0.listening.load().to_vec()
    }

    /// The snapshot version whose listeners are in place.
    pub fn version(&self) -> u64 {
        self.0.version.load(Ordering::Acquire)
    }

    fn set_listening(&self, addrs: Vec<SocketAddr>) {
        self.0.listening.store(Arc::new(addrs));
    }

    fn set_version(&self, version: u64) {
        self.0.version.store(version, Ordering::Release);
    }
}

/// The L4 proxy, its listeners bound for the newest snapshot.
#[derive(Debug)]
pub struct ServiceProxy {
    config: Config,
    state: Arc<ArcSwap<Table>>,
    listeners: Listeners,
    subscription: Subscription,
    handle: Handle,
}

impl ServiceProxy {
    /// Compiles the current snapshot and binds its listeners (they accept once [`run`] runs).
    /// Must be called inside a tokio runtime.
    ///
    /// [`run`]: ServiceProxy::run
    pub async fn build(
        config: Config,
        mut subscription: Subscription,
        registry: &mut Registry,
    ) -> Result<ServiceProxy, Error> {
        if config.connect_timeout.is_zero() {
            return Err(Error::ConnectTimeout);
        }
        if config.idle_timeout.is_zero() {
            return Err(Error::IdleTimeout);
        }
        if config.max_connections == 0 {
            return Err(Error::MaxConnections);
        }
        let metrics = Metrics::register(registry);
        let snapshot = subscription.current();
        let table = Table::compile(&snapshot, &config, None);
        let wanted: HashSet<SocketAddr> = table.addrs().collect();
        let state = Arc::new(ArcSwap::from_pointee(table));
        let handle = Handle::default();
        let forwarder = Arc::new(Forwarder {
            table: state.clone(),
            balance: config.balance,
            connect_timeout: config.connect_timeout,
            idle_timeout: config.idle_timeout,
            max_connections: config.max_connections,
            metrics,
        });
        let mut listeners = Listeners::new(forwarder, handle.clone());
        listeners.bind_missing(&wanted);
        handle.set_version(snapshot.version);
        subscription.served(snapshot.version);
        Ok(ServiceProxy {
            config,
            state,
            listeners,
            subscription,
            handle,
        })
    }

    /// A handle that tells what is listened on, valid after `run` has begun too.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The addresses listened on now, sorted.
    pub fn listening(&self) -> Vec<SocketAddr> {
        self.handle.listening()
    }

    /// Serves until shutdown, then drains; each new snapshot brings the listeners in line.
    pub async fn run(self, mut shutdown: Shutdown) {
        let ServiceProxy {
            config,
            state,
            mut listeners,
            mut subscription,
            handle,
        } = self;
        listeners.serve();
        tracing::info!(listening = handle.listening().len(), ranges = ?config.service_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(), node_host = %config.node_host, "L4 service proxy is up");
        loop {
            tokio::select! {
                changed = subscription.changed() => {
                    let Some(snapshot) = changed else { break };
                    let table = Table::compile(&snapshot, &config, Some(&**state.load()));
                    let wanted: HashSet<SocketAddr> = table.addrs().collect();
                    // Close first: until the swap the remaining listeners serve the old table,
                    // and a new listener finds its route in place once it accepts.
                    listeners.close_except(&wanted).await;
                    state.store(Arc::new(table));
                    listeners.bind_missing(&wanted);
                    handle.set_version(snapshot.version);
                    subscription.served(snapshot.version);
                    tracing::debug!(version = snapshot.version, listening = handle.listening().len(), "L4 proxy serves a new snapshot");
                }
                () = tokio::time::sleep(BIND_RETRY), if listeners.has_failed() => {
                    let wanted: HashSet<SocketAddr> = state.load().addrs().collect();
                    listeners.bind_missing(&wanted);
                }
                () = shutdown.wait() => break,
            }
        }
        listeners.shutdown(config.drain_timeout).await;
        tracing::info!("L4 service proxy stopped");
    }
}

#[cfg(test)]
mod tests;
