//! `--compare`: what the target costs over the baseline, percentile by percentile.

use serde::Serialize;

use crate::report::Report;

#[cfg(test)]
mod tests;

/// The target's overhead against the baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Overhead {
    pub baseline_url: String,
    /// p50, p90, p99, p99.9, p99.99, max.
    pub latency_ms: Vec<Added>,
    pub baseline_requests_per_second: f64,
    pub target_requests_per_second: f64,
    /// Target over baseline: below 1 means the target serves less.
    pub throughput_ratio: f64,
}

/// One percentile of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Added {
    pub percentile: &'static str,
    pub baseline: f64,
    pub target: f64,
    /// Target minus baseline (negative: the target was faster).
    pub added: f64,
}

impl Overhead {
    pub fn of(target: &Report, baseline: &Report) -> Overhead {
        let latency_ms = target
            .latency_ms
            .named()
            .into_iter()
            .zip(baseline.latency_ms.named())
            .map(|((percentile, t), (_, b))| Added {
                percentile,
                baseline: b,
                target: t,
                added: t - b,
            })
            .collect();
        let ratio = if baseline.requests_per_second > 0.0 {
            target.requests_per_second / baseline.requests_per_second
        } else {
            0.0
        };
        Overhead {
            baseline_url: baseline.url.clone(),
            latency_ms,
            baseline_requests_per_second: baseline.requests_per_second,
            target_requests_per_second: target.requests_per_second,
            throughput_ratio: ratio,
        }
    }
}
