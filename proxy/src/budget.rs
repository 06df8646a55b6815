//! A retry budget (Finagle's and Linkerd's): retries may add at most a fixed share to the
//! requests a cluster sees, so that when an endpoint set fails, retries do not multiply the load
//! on what is left.
//!
//! Every request [`deposit`](RetryBudget::deposit)s once, however many attempts it makes; every
//! retry (each attempt after the first) must [`try_withdraw`](RetryBudget::try_withdraw) and is
//! not sent when refused. Over the last `window` (10 s by default), the retries allowed are
//! `ratio × requests + min_per_second × window`: the floor lets a cluster that sees few requests
//! still retry (with 10 per second and a 10 s window, 100 retries a window whatever the traffic,
//! and they may come in a burst); the ratio bounds the rest (0.2: a retry per five requests).
//! The window slides in ten buckets, so what was deposited or withdrawn is forgotten 9 to 10
//! window-tenths later: a withdrawal that has slid out gives its token back.
//!
//! Deposits, on every request, are one atomic add on the current bucket; withdrawals and the
//! bucket turning over once per tenth of the window take a small mutex (retries are rare).
//! Time comes in as an [`Instant`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How much a retry budget allows.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetConfig {
    /// Retries allowed per request, over the window: 0.2 lets retries add 20 % to the load.
    /// Taken to the nearest 1/1000, between 0 and 1,000.
    pub ratio: f64,
    /// Retries allowed per second of the window whatever the traffic.
    pub min_per_second: u32,
    /// How far back requests and retries are remembered; at least 10 ns.
    pub window: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

/// One retry, in the budget's fixed-point units: a request deposits `ratio × UNIT`.
const UNIT: i64 = 1_000;
const BUCKETS: usize = 10;

/// The tokens one tenth of the window added (deposits) and took (withdrawals).
#[derive(Debug)]
struct Bucket {
    /// Which tenth of the window since the epoch this bucket holds.
    tick: AtomicU64,
    tokens: AtomicI64,
}

/// A cluster's retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    epoch: Instant,
    bucket_ns: u64,
    deposit: i64,
    reserve: i64,
    buckets: [Bucket; BUCKETS],
    /// Serializes withdrawals, and resetting a bucket when its tick turns over.
    lock: Mutex<()>,
}

impl RetryBudget {
    /// An empty budget (the floor only). `now` is its epoch: later calls pass instants no earlier.
    pub fn new(config: &BudgetConfig, now: Instant) -> RetryBudget {
        let window_ns = u64::try_from(config.window.as_nanos()).unwrap_or(u64::MAX);
        let ratio = if config.ratio.is_finite() {
            config.ratio.clamp(0.0, 1_000.0)
        } else {
            0.0
        };
        // Both products are bounded (ratio ≤ 1,000; the reserve by f64's saturating cast).
        let deposit = (ratio * UNIT as f64).round() as i64;
        let reserve = (f64::from(config.min_per_second) * config.window.as_secs_f64() * UNIT as f64)
            .round() as i64;
        RetryBudget {
            epoch: now,
            bucket_ns: (window_ns / BUCKETS as u64).max(1),
            deposit,
            reserve,
            buckets: std::array::from_fn(|i| Bucket {
                tick: AtomicU64::new(i as u64),
                tokens: AtomicI64::new(0),
            }),
            lock: Mutex::new(()),
        }
    }

    fn tick(&self, now: Instant) -> u64 {
        let ns =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        ns / self.bucket_ns
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic elsewhere cannot have left it half-written.
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bucket for `tick`, emptied first if it still holds an older tick. The caller holds
    /// the lock.
    fn turn(&self, tick: u64, _locked: &MutexGuard<'_, ()>) -> &Bucket {
        let bucket = &self.buckets[(tick % BUCKETS as u64) as usize];
        // Only forward: a caller with an instant a whole window old adds to the newer bucket.
        if bucket.tick.load(Ordering::Acquire) < tick {
            bucket.tokens.store(0, Ordering::Relaxed);
            bucket.tick.store(tick, Ordering::Release);
        }
        bucket
    }

    /// Counts a request (once, not once per attempt).
    pub fn deposit(&self, now: Instant) {
        if self.deposit == 0 {
            return;
        }
        let tick = self.tick(now);
        let bucket = &self.buckets[(tick % BUCKETS as u64) as usize];
        if bucket.tick.load(Ordering::Acquire) >= tick {
            bucket.tokens.fetch_add(self.deposit, Ordering::Relaxed);
        } else {
            let locked = self.lock();
            self.turn(tick, &locked)
                .tokens
                .fetch_add(self.deposit, Ordering::Relaxed);
        }
    }

    /// Takes one retry from the budget if it has one: `false` means do not retry.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        let tick = self.tick(now);
        let locked = self.lock();
        let bucket = self.turn(tick, &locked);
        if self.balance(tick) < UNIT {
            return false;
        }
        bucket.tokens.fetch_sub(UNIT, Ordering::Relaxed);
        true
    }

    /// How many retries the budget would allow at `now`, for status pages and tests.
    pub fn remaining(&self, now: Instant) -> u64 {
        u64::try_from(self.balance(self.tick(now)) / UNIT).unwrap_or(0)
    }

    /// The reserve plus the tokens of the buckets within the window that ends at `tick`.
    fn balance(&self, tick: u64) -> i64 {
        let held: i64 = self
            .buckets
            .iter()
            .filter(|b| {
                let t = b.tick.load(Ordering::Acquire);
                t <= tick && tick - t < BUCKETS as u64
            })
            .map(|b| b.tokens.load(Ordering::Relaxed))
            .sum();
        self.reserve.saturating_add(held)
    }
}

#[cfg(test)]
mod tests;
