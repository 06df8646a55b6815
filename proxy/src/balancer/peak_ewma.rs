//! Peak-EWMA of one endpoint's latency (Finagle's and Linkerd's `PeakEwma`).
//!
//! A sample above the estimate replaces it at once (the peak); a lower one pulls it down with
//! weight `1 - e^(-Δt/τ)`, Δt the time since the previous sample, so the estimate forgets at the
//! same rate whatever the request rate. Read between samples, the estimate decays toward zero
//! with the same τ, as if a zero-latency sample had come: an endpoint nobody picks because it
//! was slow looks cheap again after a while and gets tried.
//!
//! Two atomics, no lock. A sample claims the interval since the previous one with a
//! `fetch_max` on the stamp, so concurrent samples never count the same time twice; a reader
//! may pair one sample's estimate with the next one's stamp, which is off by one sample's decay
//! for one read.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub(crate) struct PeakEwma {
    /// The estimate in nanoseconds, as f64 bits.
    rtt: AtomicU64,
    /// When the estimate last took a sample, in nanoseconds since the balancer's epoch.
    stamp: AtomicU64,
}

fn decay(elapsed_ns: u64, tau_ns: f64) -> f64 {
    (-(elapsed_ns as f64) / tau_ns).exp()
}

impl PeakEwma {
    pub(crate) fn new(rtt_ns: f64, now_ns: u64) -> PeakEwma {
        PeakEwma {
            rtt: AtomicU64::new(rtt_ns.to_bits()),
            stamp: AtomicU64::new(now_ns),
        }
    }

    /// The estimate at `now_ns`.
    pub(crate) fn get(&self, now_ns: u64, tau_ns: f64) -> f64 {
        let rtt = f64::from_bits(self.rtt.load(Ordering::Relaxed));
        let elapsed = now_ns.saturating_sub(self.stamp.load(Ordering::Relaxed));
        if elapsed == 0 {
            rtt
        } else {
            rtt * decay(elapsed, tau_ns)
        }
    }

    /// Takes a sample of `sample_ns` at `now_ns`. A failed attempt's sample can raise the
    /// estimate but never lower it: a fast connection refusal or a quick 503 is no sign that an
    /// endpoint got faster, and counting it so would send more traffic to a failing endpoint.
    /// It restarts the idle decay all the same.
    pub(crate) fn observe(&self, sample_ns: f64, now_ns: u64, tau_ns: f64, failure: bool) {
        let last = self.stamp.fetch_max(now_ns, Ordering::Relaxed);
        let d = decay(now_ns.saturating_sub(last), tau_ns);
        // The closure always returns Some: the update cannot fail.
        let _ = self
            .rtt
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let rtt = f64::from_bits(bits);
                let next = if sample_ns > rtt {
                    sample_ns
                } else if failure {
                    rtt
                } else {
                    rtt * d + sample_ns * (1.0 - d)
                };
                Some(next.to_bits())
            });
    }
}
