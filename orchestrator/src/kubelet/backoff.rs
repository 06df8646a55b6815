//! Crash back-off: how long a container that exited waits before it is started again.
//!
//! As the kubelet asks of it: the first restart is at once, then `base`, doubling up to `cap`;
//! a container that ran long enough (10 minutes in Kubernetes) starts over from the beginning.

use std::time::Duration;

/// The delays of one container's restarts.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    /// The delay the next restart waits; `None` before the first restart.
    next: Option<Duration>,
}

impl Backoff {
    pub(crate) fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            next: None,
        }
    }

    /// The delay before the next restart.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next.unwrap_or(Duration::ZERO);
        self.next = Some(match self.next {
            None => self.base,
            Some(d) => d.saturating_mul(2).min(self.cap),
        });
        delay
    }

    /// The container ran long enough: its next restart is at once again.
    pub(crate) fn reset(&mut self) {
        self.next = None;
    }
}

/// A duration written as Go writes one (`10s`, `2m40s`, `5m0s`, `200ms`), as Kubernetes' messages
/// show it.
pub(crate) fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d < Duration::from_secs(1) {
        let micros = d.as_micros();
        return if micros.is_multiple_of(1000) {
            format!("{}ms", micros / 1000)
        } else {
            format!("{micros}µs")
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let millis = d.subsec_millis();
    let seconds = if millis == 0 {
        format!("{s}s")
    } else {
        let frac = format!("{millis:03}");
        format!("{s}.{}s", frac.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{seconds}")
    } else if m > 0 {
        format!("{m}m{seconds}")
    } else {
        seconds
    }
}

#[cfg(test)]
mod tests;
