//! Jittered exponential back-off for reconnecting: each delay doubles up to a cap, and is
//! drawn from its upper half, so parts that lost the control plane together do not all come
//! back in the same instant (the "equal jitter" of the AWS architecture blog, as gRPC's
//! connection back-off does it).

use std::time::Duration;

/// The delays before the next attempt.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The ceiling of the next delay: `base * 2^attempt`, at most `max`.
    pub fn ceiling(&self) -> Duration {
        self.base
            .saturating_mul(1u32.checked_shl(self.attempt).unwrap_or(u32::MAX))
            .min(self.max)
    }

    /// The next delay, in `[ceiling/2, ceiling]`; the ceiling doubles for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1).min(31);
        let half = ceiling / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(crate::random::below(nanos.saturating_add(1)))
    }

    /// Back to `base`: after a connection that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_within_their_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let ceilings = [100, 200, 400, 800, 1600, 2000, 2000];
        for ms in ceilings {
            let ceiling = Duration::from_millis(ms);
            assert_eq!(b.ceiling(), ceiling);
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
    }

    #[test]
    fn delays_are_jittered() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..32 {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
            seen.insert(b.next_delay());
        }
        assert!(seen.len() > 1, "32 draws gave one delay: {seen:?}");
    }

    #[test]
    fn reset_starts_over_and_many_failures_never_overflow() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), Duration::from_secs(10));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }
}
