//! The balancer: which endpoint of a cluster takes the next attempt of a request.
//!
//! One [`Balancer`] per cluster, built from its endpoints and a [`BalancerConfig`]. The request
//! path calls [`Balancer::pick`], sends to [`Pick::addr`], and reports how it went with
//! [`Pick::finish`]; a retry picks again with the endpoints already tried in `exclude`, after
//! [`RetryBudget::try_withdraw`] on [`Balancer::retry_budget`] said yes. When a new snapshot
//! comes, [`Balancer::update`] builds the next balancer from this one: endpoints that stay keep
//! their latency estimate, in-flight count and health, so a reload never readmits an ejected
//! endpoint or forgets which one is slow.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Instant;
//! use ferry_proxy::balancer::{Balancer, BalancerConfig};
//! use ferry_proxy::health::AttemptOutcome;
//!
//! let endpoints: Vec<SocketAddr> = vec!["10.0.0.1:80".parse()?, "10.0.0.2:80".parse()?];
//! let balancer = Balancer::new(&endpoints, &BalancerConfig::default(), Instant::now());
//! let now = Instant::now();
//! balancer.retry_budget().deposit(now);
//! let mut tried = Vec::new();
//! let pick = balancer.pick(None, &tried, now).ok_or("no endpoint")?;
//! // … connect to pick.addr(): the connection is refused.
//! let outcome = AttemptOutcome::ConnectError;
//! tried.push(pick.addr());
//! pick.finish(outcome, Instant::now());
//! if outcome.retry_safe(true) && balancer.retry_budget().try_withdraw(Instant::now()) {
//!     let retry = balancer.pick(None, &tried, Instant::now()).ok_or("no endpoint")?;
//!     assert!(!tried.contains(&retry.addr()));
//!     // … the response comes, status 200.
//!     retry.finish(AttemptOutcome::from_status(200), Instant::now());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Policies
//!
//! - [`Policy::P2cPeakEwma`], the default (Linkerd's): two distinct endpoints at random, the one
//!   with the lower cost wins, cost = peak-EWMA latency × (in-flight + 1). New endpoints start
//!   at `default_rtt`, so they get traffic without being flooded.
//! - [`Policy::RoundRobin`]: each endpoint in turn, skipping those that cannot take the request.
//! - [`Policy::ConsistentHash`]: the endpoint that owns the request's key on a hash ring (see
//!   [`client_ip_key`] and [`affinity_key`]), else the next usable one clockwise. A request
//!   without a key is balanced by P2C.
//!
//! # Which endpoints a pick considers
//!
//! Never one in `exclude`. Never an ejected one ([`health`](crate::health)), unless every
//! endpoint not excluded is ejected: then the choice is among those (panic mode, as Envoy's),
//! since sending to an endpoint that may have recovered beats failing every request. `pick`
//! returns `None` only when there is no endpoint or every one is excluded.
//!
//! Lock-free: a pick reads atomics, draws from a per-balancer splitmix64 stream (one atomic add)
//! and clones one `Arc`; it allocates nothing. This module reads no clock: every call takes the
//! instant it happens at.

mod peak_ewma;
mod ring;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferry_model::SessionAffinity;

use crate::budget::{BudgetConfig, RetryBudget};
use crate::health::{AttemptOutcome, Health, HealthConfig, Status, Transition};
use peak_ewma::PeakEwma;
use ring::Ring;

pub use ring::{affinity_key, client_ip_key};

/// How a balancer chooses among usable endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Power of two choices over peak-EWMA latency × in-flight requests.
    #[default]
    P2cPeakEwma,
    RoundRobin,
    /// A hash ring over the request's key; P2C for requests without one.
    ConsistentHash,
}

impl Policy {
    /// The policy a Service's session affinity asks for: `ClientIP` is consistent hashing on
    /// [`client_ip_key`]. Its `timeoutSeconds` has no counterpart: a client stays on its
    /// endpoint for as long as that endpoint is in the set and healthy.
    pub fn for_affinity(affinity: &SessionAffinity) -> Policy {
        match affinity {
            SessionAffinity::None => Policy::P2cPeakEwma,
            SessionAffinity::ClientIP { .. } => Policy::ConsistentHash,
        }
    }
}

/// How one cluster is balanced.
#[derive(Clone, Debug, PartialEq)]
pub struct BalancerConfig {
    pub policy: Policy,
    /// The latency a new endpoint is assumed to have (Linkerd's 30 ms).
    pub default_rtt: Duration,
    /// τ, the peak-EWMA's time constant: how fast latency is forgotten (10 s).
    pub decay: Duration,
    pub health: HealthConfig,
    pub budget: BudgetConfig,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        BalancerConfig {
            policy: Policy::default(),
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(10),
            health: HealthConfig::default(),
            budget: BudgetConfig::default(),
        }
    }
}

/// An estimate never counts below 1 µs, so that in-flight requests still weigh among endpoints
/// whose estimate has decayed to nothing.
const MIN_RTT_NS: f64 = 1_000.0;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One endpoint's state, shared by the balancers of successive snapshots and by the picks in
/// flight on it.
#[derive(Debug)]
struct Endpoint {
    addr: SocketAddr,
    in_flight: AtomicU32,
    rtt: PeakEwma,
    health: Health,
}

impl Endpoint {
    fn new(addr: SocketAddr, epoch: Instant, now_ns: u64, default_rtt: Duration) -> Endpoint {
        Endpoint {
            addr,
            in_flight: AtomicU32::new(0),
            rtt: PeakEwma::new(nanos(default_rtt) as f64, now_ns),
            health: Health::new(epoch),
        }
    }

    fn cost(&self, now_ns: u64, tau_ns: f64) -> f64 {
        let rtt = self.rtt.get(now_ns, tau_ns).max(MIN_RTT_NS);
        rtt * (f64::from(self.in_flight.load(Ordering::Relaxed)) + 1.0)
    }
}

/// A stream of random numbers shared by the threads that pick: splitmix64 over a Weyl sequence,
/// one atomic add per number.
#[derive(Debug)]
struct Rng(AtomicU64);

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

impl Rng {
    fn next(&self) -> u64 {
        ring::mix(
            self.0
                .fetch_add(GOLDEN, Ordering::Relaxed)
                .wrapping_add(GOLDEN),
        )
    }
}

/// How many times P2C draws each candidate before it counts the usable endpoints instead.
const DRAWS: usize = 4;

/// `x` scaled into `0..n` (Lemire's multiply-shift; the bias is below n / 2^32).
fn below(x: u32, n: usize) -> usize {
    ((u64::from(x) * n as u64) >> 32) as usize
}

/// The compiled balancing state of one cluster.
#[derive(Debug)]
pub struct Balancer {
    config: BalancerConfig,
    /// Instants are kept as nanoseconds since this one, the first balancer's construction.
    epoch: Instant,
    tau_ns: f64,
    endpoints: Box<[Arc<Endpoint>]>,
    /// Empty unless the policy is consistent hashing.
    ring: Arc<Ring>,
    next: AtomicUsize,
    rng: Rng,
    budget: Arc<RetryBudget>,
}

/// What a pick considers usable.
#[derive(Clone, Copy)]
struct Filter<'a> {
    exclude: &'a [SocketAddr],
    now_us: u64,
    /// False in panic mode: ejected endpoints are usable.
    health: bool,
}

impl Balancer {
    /// A balancer over `endpoints` (duplicates are dropped), with a fresh random seed. `now` is
    /// its epoch: instants passed in later must not be earlier.
    pub fn new(endpoints: &[SocketAddr], config: &BalancerConfig, now: Instant) -> Balancer {
        Balancer::build(None, endpoints, config, now)
    }

    /// The balancer for the next snapshot: `endpoints` and `config` replace this one's, and
    /// every endpoint also in this balancer keeps its state (latency, in-flight, health); the
    /// retry budget carries over unless its config changed, and so do the hash ring when the
    /// endpoints are the same and the round-robin turn. Picks of this balancer still in flight
    /// report into the shared state when they finish.
    pub fn update(
        &self,
        endpoints: &[SocketAddr],
        config: &BalancerConfig,
        now: Instant,
    ) -> Balancer {
        Balancer::build(Some(self), endpoints, config, now)
    }

    fn build(
        prev: Option<&Balancer>,
        endpoints: &[SocketAddr],
        config: &BalancerConfig,
        now: Instant,
    ) -> Balancer {
        let epoch = prev.map_or(now, |p| p.epoch);
        let now_ns = nanos(now.saturating_duration_since(epoch));
        let old: HashMap<SocketAddr, &Arc<Endpoint>> = prev
            .map(|p| p.endpoints.iter().map(|e| (e.addr, e)).collect())
            .unwrap_or_default();
        let mut seen = HashSet::with_capacity(endpoints.len());
        let endpoints: Box<[Arc<Endpoint>]> = endpoints
            .iter()
            .filter(|a| seen.insert(**a))
            .map(|a| match old.get(a) {
                Some(e) => Arc::clone(e),
                None => Arc::new(Endpoint::new(*a, epoch, now_ns, config.default_rtt)),
            })
            .collect();
        let ring = match prev {
            _ if config.policy != Policy::ConsistentHash => Arc::default(),
            // The ring depends on the addresses and their order only.
            Some(p) if p.config.policy == Policy::ConsistentHash => {
                if p.endpoints().eq(endpoints.iter().map(|e| e.addr)) {
                    Arc::clone(&p.ring)
                } else {
                    let old: Vec<SocketAddr> = p.endpoints().collect();
                    let new: Vec<SocketAddr> = endpoints.iter().map(|e| e.addr).collect();
                    Arc::new(p.ring.rebuild(&old, &new))
                }
            }
            _ => Arc::new(Ring::build(endpoints.iter().map(|e| e.addr))),
        };
        let budget = match prev {
            Some(p) if p.config.budget == config.budget => Arc::clone(&p.budget),
            _ => Arc::new(RetryBudget::new(&config.budget, now)),
        };
        let seed = match prev {
            Some(p) => p.rng.0.load(Ordering::Relaxed),
            None => RandomState::new().hash_one(now),
        };
        Balancer {
            config: config.clone(),
            epoch,
            tau_ns: (nanos(config.decay) as f64).max(1.0),
            endpoints,
            ring,
            next: AtomicUsize::new(prev.map_or(0, |p| p.next.load(Ordering::Relaxed))),
            rng: Rng(AtomicU64::new(seed)),
            budget,
        }
    }

    /// The same balancer with its random stream started from `seed`: for tests and benches
    /// that must see the same picks every run.
    pub fn seeded(self, seed: u64) -> Balancer {
        self.rng.0.store(seed, Ordering::Relaxed);
        self
    }

    pub fn config(&self) -> &BalancerConfig {
        &self.config
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The endpoints, in the order given (without duplicates).
    pub fn endpoints(&self) -> impl ExactSizeIterator<Item = SocketAddr> + '_ {
        self.endpoints.iter().map(|e| e.addr)
    }

    /// The cluster's retry budget: deposit once per request, withdraw once per retry.
    pub fn retry_budget(&self) -> &RetryBudget {
        &self.budget
    }

    /// Each endpoint's state at `now`, for status pages, metrics and tests.
    pub fn stats(&self, now: Instant) -> impl ExactSizeIterator<Item = EndpointStats> + '_ {
        let now_ns = self.nanos(now);
        self.endpoints.iter().map(move |e| EndpointStats {
            addr: e.addr,
            in_flight: e.in_flight.load(Ordering::Relaxed),
            rtt: Duration::from_nanos(e.rtt.get(now_ns, self.tau_ns) as u64),
            health: e.health.status(now),
        })
    }

    fn nanos(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.epoch))
    }

    /// Chooses the endpoint for one attempt of a request at `now`. `key` is the request's
    /// affinity key (used by [`Policy::ConsistentHash`] only); `exclude` the endpoints this
    /// request has already tried. `None` when there is no endpoint outside `exclude`.
    pub fn pick(&self, key: Option<u64>, exclude: &[SocketAddr], now: Instant) -> Option<Pick> {
        if self.endpoints.is_empty() {
            return None;
        }
        let now_ns = self.nanos(now);
        let healthy = Filter {
            exclude,
            now_us: now_ns / 1_000,
            health: true,
        };
        let panic = Filter {
            health: false,
            ..healthy
        };
        let i = match (self.config.policy, key) {
            (Policy::RoundRobin, _) => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                self.round_robin(start, healthy)
                    .or_else(|| self.round_robin(start, panic))
            }
            (Policy::ConsistentHash, Some(key)) => self
                .ring
                .walk(key)
                .find(|&i| self.usable(i, healthy))
                .or_else(|| self.ring.walk(key).find(|&i| self.usable(i, panic))),
            (Policy::P2cPeakEwma | Policy::ConsistentHash, _) => self.p2c(healthy, now_ns),
        }?;
        let endpoint = Arc::clone(&self.endpoints[i]);
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Pick {
            endpoint,
            started: now,
            epoch: self.epoch,
            tau_ns: self.tau_ns,
            health: self.config.health.clone(),
        })
    }

    fn usable(&self, i: usize, f: Filter<'_>) -> bool {
        let e = &self.endpoints[i];
        let ejected = f.health && e.health.ejected_at(f.now_us);
        !ejected && !f.exclude.contains(&e.addr)
    }

    fn round_robin(&self, start: usize, f: Filter<'_>) -> Option<usize> {
        let n = self.endpoints.len();
        (0..n)
            .map(|k| start.wrapping_add(k) % n)
            .find(|&i| self.usable(i, f))
    }

    fn p2c(&self, healthy: Filter<'_>, now_ns: u64) -> Option<usize> {
        let n = self.endpoints.len();
        // Draws for this pick: a local splitmix64 stream from one shared number.
        let mut state = self.rng.next();
        let mut draw = || {
            state = state.wrapping_add(GOLDEN);
            ring::mix(state) as u32
        };
        if n >= 2 {
            // Two distinct endpoints at random, redrawing one that cannot be used a few times
            // (uniform among the usable ones, as a draw among them would be): with one endpoint
            // in ten ejected, the scan below runs for one pick in 10,000.
            let a = (0..DRAWS)
                .map(|_| below(draw(), n))
                .find(|&a| self.usable(a, healthy));
            let b = a.and_then(|a| {
                (0..DRAWS)
                    .map(|_| below(draw(), n - 1))
                    .map(|b| if b >= a { b + 1 } else { b })
                    .find(|&b| self.usable(b, healthy))
            });
            if let (Some(a), Some(b)) = (a, b) {
                return Some(self.cheaper(a, b, now_ns));
            }
        }
        // Some endpoints cannot be used: draw two among those that can, by rank.
        let (f, m) = [
            healthy,
            Filter {
                health: false,
                ..healthy
            },
        ]
        .into_iter()
        .map(|f| (f, self.count(f)))
        .find(|&(_, m)| m > 0)?;
        let rank_a = below(draw(), m);
        let a = self.nth_usable(rank_a, f)?;
        if m == 1 {
            return Some(a);
        }
        let rank_b = below(draw(), m - 1);
        let rank_b = if rank_b >= rank_a { rank_b + 1 } else { rank_b };
        let b = self.nth_usable(rank_b, f)?;
        Some(self.cheaper(a, b, now_ns))
    }

    fn count(&self, f: Filter<'_>) -> usize {
        (0..self.endpoints.len())
            .filter(|&i| self.usable(i, f))
            .count()
    }

    fn nth_usable(&self, rank: usize, f: Filter<'_>) -> Option<usize> {
        (0..self.endpoints.len())
            .filter(|&i| self.usable(i, f))
            .nth(rank)
    }

    /// The cheaper of two endpoints; `a` on a tie (the caller drew it at random).
    fn cheaper(&self, a: usize, b: usize, now_ns: u64) -> usize {
        let cost_a = self.endpoints[a].cost(now_ns, self.tau_ns);
        let cost_b = self.endpoints[b].cost(now_ns, self.tau_ns);
        if cost_b < cost_a { b } else { a }
    }
}

/// One endpoint's state as [`Balancer::stats`] reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointStats {
    pub addr: SocketAddr,
    pub in_flight: u32,
    /// The latency estimate, decayed to the instant asked about.
    pub rtt: Duration,
    pub health: Status,
}

/// One attempt's hold on its endpoint: counted in the endpoint's in-flight requests from the
/// pick until it is finished or dropped.
///
/// Finish it when the response's head arrives (or the attempt fails): the latency measured is
/// time to first byte, which a long body would otherwise swamp. Dropping it unfinished (the
/// client went away, the request was cancelled) records nothing. It owns what it needs, so it
/// may outlive the balancer it came from.
#[derive(Debug)]
pub struct Pick {
    endpoint: Arc<Endpoint>,
    started: Instant,
    epoch: Instant,
    tau_ns: f64,
    health: HealthConfig,
}

impl Pick {
    /// Where to send the attempt.
    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr
    }

    /// When it was picked.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Records how the attempt ended at `now`: its latency (since the pick) into the endpoint's
    /// estimate, its outcome into the endpoint's health. Returns what that did to health.
    pub fn finish(self, outcome: AttemptOutcome, now: Instant) -> Transition {
        let latency = nanos(now.saturating_duration_since(self.started));
        let now_ns = nanos(now.saturating_duration_since(self.epoch));
        self.endpoint
            .rtt
            .observe(latency as f64, now_ns, self.tau_ns, outcome.is_failure());
        self.endpoint.health.record(outcome, now, &self.health)
    }
}

impl Drop for Pick {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
