//! Passive health of one endpoint: what the results of real requests say about it.
//!
//! No probes are sent. Every attempt ends in an [`AttemptOutcome`] that the caller reports through
//! [`Health::record`] (the balancer's [`Pick::finish`](crate::balancer::Pick::finish) does it);
//! the balancer asks [`Health::is_ejected`] before it chooses an endpoint. This module touches
//! nothing but its own atomics: time comes in as an [`Instant`], so tests step a clock by hand.
//!
//! # States
//!
//! - **Healthy**: `failure_threshold` failures in a row (counted in the order results are
//!   recorded) eject it; a success in between starts the count again, so an endpoint that fails
//!   every other request is never ejected here (that is a success-rate question, not this one).
//! - **Ejected** for `base_ejection × 2^(k-1)`, at most `max_ejection`, where k counts the
//!   ejections in a row (1 s, 2 s, 4 s … 30 s by default). Results recorded while ejected are
//!   ignored: they come from requests sent before the ejection, or in panic mode (the balancer
//!   sends to ejected endpoints when every endpoint is ejected), and neither lengthens nor ends
//!   the ejection.
//! - **Probation** once the ejection has run out: the endpoint takes traffic again, and its next
//!   result decides. A success readmits it fully (healthy, k back to 0); a failure ejects it
//!   again at once, for the next, doubled back-off. This is the hysteresis: one result flips a
//!   healthy endpoint to nothing, N in a row eject it, one success after serving the back-off
//!   brings it back.
//!
//! # Which outcomes are failures
//!
//! A connect error, a reset (the connection broke before a response), a 5xx status and a
//! response timeout count; anything else, 4xx included, is a success for health (the endpoint
//! answered). Every 5xx counts, as Envoy's `consecutive_5xx` does: a 500 that one request
//! provokes is not told apart from a broken endpoint, which is why it takes N in a row. A
//! request the client abandons has no outcome: drop the [`Pick`](crate::balancer::Pick) and
//! nothing is recorded.
//!
//! All of it is lock-free: a failure counter and one word holding (k, ejected-until) that
//! changes by compare-and-swap, so of two racing results that would both eject, one does.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How passive health ejects and readmits an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HealthConfig {
    /// Failures in a row that eject a healthy endpoint; 0 is taken as 1.
    pub failure_threshold: u32,
    /// The first ejection's length; each ejection in a row doubles it.
    pub base_ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            failure_threshold: 5,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(30),
        }
    }
}

impl HealthConfig {
    /// How long the `times`-th ejection in a row lasts (`times` ≥ 1).
    pub fn ejection(&self, times: u32) -> Duration {
        let factor = 1u32
            .checked_shl(times.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_ejection
            .saturating_mul(factor)
            .min(self.max_ejection)
    }

    fn threshold(&self) -> u32 {
        self.failure_threshold.max(1)
    }
}

/// How one attempt on an endpoint ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// A response came, with a status below 500.
    Success,
    /// The connection could not be opened: the request never reached the endpoint.
    ConnectError,
    /// The connection broke before a response came.
    Reset,
    /// A response with a 5xx status.
    Status5xx,
    /// No response within the response timeout.
    Timeout,
}

impl AttemptOutcome {
    /// The outcome of a response with this status: 5xx is a failure, anything else a success.
    pub fn from_status(status: u16) -> AttemptOutcome {
        if (500..600).contains(&status) {
            AttemptOutcome::Status5xx
        } else {
            AttemptOutcome::Success
        }
    }

    /// Whether this counts against the endpoint's health.
    pub fn is_failure(self) -> bool {
        self != AttemptOutcome::Success
    }

    /// Whether the request may be sent again to another endpoint: after a connect error always
    /// (it was never sent), after a reset only when it is idempotent (it may have been
    /// processed); never after a response or a timeout. The caller still needs the request's
    /// body to send it again, and a [`RetryBudget`](crate::budget::RetryBudget) withdrawal.
    pub fn retry_safe(self, idempotent: bool) -> bool {
        match self {
            AttemptOutcome::ConnectError => true,
            AttemptOutcome::Reset => idempotent,
            AttemptOutcome::Success | AttemptOutcome::Status5xx | AttemptOutcome::Timeout => false,
        }
    }
}

/// What a recorded outcome changed, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transition {
    Unchanged,
    /// The endpoint is ejected for `duration`: its `times`-th ejection in a row.
    Ejected {
        duration: Duration,
        times: u32,
    },
    /// A success on probation: the endpoint is healthy again.
    Readmitted,
}

/// Where an endpoint stands at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Healthy,
    /// Out of rotation for `remaining`; `times` ejections in a row so far.
    Ejected {
        remaining: Duration,
        times: u32,
    },
    /// Back in rotation after `times` ejections in a row; the next result decides.
    Probation {
        times: u32,
    },
}

/// (k, ejected-until) in one word: k in the top 8 bits, the end of the ejection in microseconds
/// since the epoch below (2,284 years of room). 0 is healthy.
const TIMES_SHIFT: u32 = 56;
const UNTIL_MASK: u64 = (1 << TIMES_SHIFT) - 1;

fn pack(times: u32, until_us: u64) -> u64 {
    (u64::from(times.clamp(1, 255)) << TIMES_SHIFT) | until_us.min(UNTIL_MASK)
}

fn unpack(state: u64) -> (u32, u64) {
    // The shift leaves 8 bits: the cast cannot truncate.
    ((state >> TIMES_SHIFT) as u32, state & UNTIL_MASK)
}

/// The passive health of one endpoint.
#[derive(Debug)]
pub struct Health {
    /// Instants are kept as microseconds since this one; earlier instants count as it.
    epoch: Instant,
    /// Failures in a row while healthy.
    failures: AtomicU32,
    state: AtomicU64,
}

impl Health {
    /// A healthy endpoint. `epoch` is any instant no later than the ones passed in afterwards.
    pub fn new(epoch: Instant) -> Health {
        Health {
            epoch,
            failures: AtomicU32::new(0),
            state: AtomicU64::new(0),
        }
    }

    fn micros(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether the endpoint is out of rotation at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_at(self.micros(now))
    }

    pub(crate) fn ejected_at(&self, now_us: u64) -> bool {
        let (times, until) = unpack(self.state.load(Ordering::Acquire));
        times > 0 && now_us < until
    }

    pub fn status(&self, now: Instant) -> Status {
        let now_us = self.micros(now);
        match unpack(self.state.load(Ordering::Acquire)) {
            (0, _) => Status::Healthy,
            (times, until) if now_us < until => Status::Ejected {
                remaining: Duration::from_micros(until - now_us),
                times,
            },
            (times, _) => Status::Probation { times },
        }
    }

    /// Records how an attempt ended at `now`, and says what that changed.
    pub fn record(
        &self,
        outcome: AttemptOutcome,
        now: Instant,
        config: &HealthConfig,
    ) -> Transition {
        let now_us = self.micros(now);
        let state = self.state.load(Ordering::Acquire);
        let (times, until) = unpack(state);
        if times > 0 && now_us < until {
            return Transition::Unchanged;
        }
        if !outcome.is_failure() {
            // Read before writing: the common case, a success on a healthy endpoint, then
            // leaves the cache line shared.
            if self.failures.load(Ordering::Relaxed) != 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
            if times > 0
                && self
                    .state
                    .compare_exchange(state, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return Transition::Readmitted;
            }
            return Transition::Unchanged;
        }
        if times == 0 {
            let failures = self
                .failures
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if failures < config.threshold() {
                return Transition::Unchanged;
            }
        }
        // The threshold reached while healthy, or a failure on probation.
        let times = times.saturating_add(1).min(255);
        let duration = config.ejection(times);
        let until = now_us.saturating_add(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
        match self.state.compare_exchange(
            state,
            pack(times, until),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                self.failures.store(0, Ordering::Relaxed);
                Transition::Ejected { duration, times }
            }
            // Another result changed the state first (ejected or readmitted it): it stands.
            Err(_) => Transition::Unchanged,
        }
    }
}

#[cfg(test)]
mod tests;
