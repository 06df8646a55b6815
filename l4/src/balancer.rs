//! The endpoints of one Service port and how a connection picks among them: at random or in
//! turn, with `sessionAffinity: ClientIP` on top, and every other endpoint once each behind the
//! first pick for when it does not answer.
//!
//! A [`Balancer`] is immutable apart from two pieces of state that outlive a snapshot: the
//! round-robin counter and the affinity table. A new snapshot's balancer for the same Service
//! port takes both over from the previous one, so a client keeps its endpoint across changes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::Balance;

/// Clients one Service port remembers for `ClientIP` affinity. Past this, expired entries are
/// swept; if none has expired, a new client is balanced without being remembered.
pub const AFFINITY_CAPACITY: usize = 16_384;

/// How one Service port spreads connections over its endpoints.
#[derive(Debug)]
pub struct Balancer {
    /// Sorted; never empty in a compiled table (no endpoint means no listener).
    endpoints: Vec<SocketAddr>,
    next: Arc<AtomicUsize>,
    affinity: Option<(Duration, Arc<AffinityTable>)>,
}

impl Balancer {
    /// A balancer over `endpoints` that carries the state of `previous` (the same Service port in
    /// the snapshot before) over.
    pub fn new(
        mut endpoints: Vec<SocketAddr>,
        affinity: Option<Duration>,
        previous: Option<&Balancer>,
    ) -> Balancer {
        endpoints.sort_unstable();
        endpoints.dedup();
        let next = previous.map_or_else(Default::default, |p| p.next.clone());
        let affinity = affinity.map(|timeout| {
            let table = previous
                .and_then(|p| p.affinity.as_ref())
                .map_or_else(Default::default, |(_, t)| t.clone());
            (timeout, table)
        });
        Balancer {
            endpoints,
            next,
            affinity,
        }
    }

    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// The endpoints to try for one connection from `client`, in order: the pick (the client's
    /// affinity endpoint while it is fresh and still here, else by `balance`), then each other
    /// endpoint once.
    pub fn pick(&self, balance: Balance, client: IpAddr, now: Instant) -> Picks<'_> {
        let n = self.endpoints.len();
        let remembered = self.affinity.as_ref().and_then(|(timeout, table)| {
            let endpoint = table.get(client, *timeout, now)?;
            self.endpoints.binary_search(&endpoint).ok()
        });
        let start = match (remembered, balance) {
            _ if n == 0 => 0,
            (Some(i), _) => i,
            (None, Balance::Random) => random_below(n),
            (None, Balance::RoundRobin) => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        Picks {
            endpoints: &self.endpoints,
            start,
            tried: 0,
        }
    }

    /// Records that `client` now goes to `endpoint` (for affinity; nothing without it).
    pub fn connected(&self, client: IpAddr, endpoint: SocketAddr, now: Instant) {
        if let Some((timeout, table)) = &self.affinity {
            table.set(client, endpoint, *timeout, now);
        }
    }

    /// Clients remembered for affinity, expired ones included until swept.
    pub fn remembered(&self) -> usize {
        self.affinity.as_ref().map_or(0, |(_, t)| t.len())
    }
}

/// The endpoints of one connection attempt, each at most once.
#[derive(Debug)]
pub struct Picks<'a> {
    endpoints: &'a [SocketAddr],
    start: usize,
    tried: usize,
}

impl Iterator for Picks<'_> {
    type Item = SocketAddr;

    fn next(&mut self) -> Option<SocketAddr> {
        let n = self.endpoints.len();
        if self.tried == n {
            return None;
        }
        let endpoint = self.endpoints[(self.start + self.tried) % n];
        self.tried += 1;
        Some(endpoint)
    }
}

/// Which endpoint each client IP went to last, and when (kube-proxy's `recent` match: the timeout
/// runs from the client's last new connection).
#[derive(Debug, Default)]
pub struct AffinityTable(Mutex<HashMap<IpAddr, (SocketAddr, Instant)>>);

impl AffinityTable {
    fn get(&self, client: IpAddr, timeout: Duration, now: Instant) -> Option<SocketAddr> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let &(endpoint, last) = map.get(&client)?;
        if now.saturating_duration_since(last) < timeout {
            Some(endpoint)
        } else {
            map.remove(&client);
            None
        }
    }

    fn set(&self, client: IpAddr, endpoint: SocketAddr, timeout: Duration, now: Instant) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= AFFINITY_CAPACITY && !map.contains_key(&client) {
            map.retain(|_, (_, last)| now.saturating_duration_since(*last) < timeout);
            if map.len() >= AFFINITY_CAPACITY {
                return;
            }
        }
        map.insert(client, (endpoint, now));
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// A number in `0..n` (`n > 0`).
fn random_below(n: usize) -> usize {
    usize::try_from(ferry_runtime::random::below(n as u64)).unwrap_or(0)
}

#[cfg(test)]
mod tests;
