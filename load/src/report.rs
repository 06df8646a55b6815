//! The results of a run as data: what `--json` writes and what the summary and the HTML
//! report are drawn from.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::compare::Overhead;
use crate::config::Config;
use crate::failure::Failure;
use crate::stats::{Second, Tally};
use crate::target::Target;

#[cfg(test)]
pub(crate) mod tests;

/// The percentiles of the spectrum plot and of `spectrum` in the JSON.
pub const SPECTRUM: &[f64] = &[
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 97.5, 99.0,
    99.5, 99.75, 99.9, 99.95, 99.99, 99.995, 99.999, 100.0,
];

/// Everything a run reports: the target's figures at the top level; with `--compare`, the
/// baseline's and the overhead too.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    #[serde(flatten)]
    pub target: Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overhead: Option<Overhead>,
    /// The whole-run histograms, kept for the plots.
    #[serde(skip)]
    pub histograms: Vec<Histogram<u64>>,
}

/// One target's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub url: String,
    pub protocol: &'static str,
    /// `closed` or `open`.
    pub model: &'static str,
    pub connections: usize,
    pub threads: usize,
    pub streams: usize,
    /// Time measured: from the start of measuring to the last response.
    pub duration_seconds: f64,
    /// Requests that got an answer or failed.
    pub requests: u64,
    /// Requests answered (any status).
    pub responses: u64,
    /// Achieved: responses per second of `duration_seconds`.
    pub requests_per_second: f64,
    /// Open model: the rate asked for; `null` in the closed model.
    pub target_rate: Option<f64>,
    /// Open model: how far `requests_per_second` fell short of `target_rate`, in percent
    /// (0 when met).
    pub rate_shortfall_percent: Option<f64>,
    /// Open model: sends scheduled during the run that never went out because the connection
    /// was still behind at the end.
    pub missed: u64,
    pub bytes_received: u64,
    /// Latency of answered requests.
    pub latency_ms: Latency,
    /// Status code → count.
    pub status_codes: BTreeMap<String, u64>,
    /// Failure kind → count (every kind present, zero or not).
    pub errors: BTreeMap<&'static str, u64>,
    /// Latency at the percentiles in [`SPECTRUM`].
    pub spectrum: Vec<SpectrumPoint>,
    /// One entry per second of the run: throughput and latency over time.
    pub timeline: Vec<Second>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
    #[serde(rename = "p99.99")]
    pub p99_99: f64,
    pub max: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpectrumPoint {
    pub percentile: f64,
    pub latency_ms: f64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency {
                min: 0.0,
                mean: 0.0,
                stdev: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p99_9: 0.0,
                p99_99: 0.0,
                max: 0.0,
            };
        }
        let q = |q: f64| ms(h.value_at_quantile(q));
        Latency {
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            stdev: h.stdev() / 1000.0,
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p99_9: q(0.999),
            p99_99: q(0.9999),
            max: ms(h.max()),
        }
    }

    /// The percentiles a comparison reports, with their names.
    pub fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p99.9", self.p99_9),
            ("p99.99", self.p99_99),
            ("max", self.max),
        ]
    }
}

impl Report {
    pub fn build(
        config: &Config,
        target: &Target,
        tally: &Tally,
        timeline: Vec<Second>,
        duration: Duration,
    ) -> Report {
        let seconds = duration.as_secs_f64();
        let responses = tally.responses();
        let requests_per_second = if seconds > 0.0 {
            responses as f64 / seconds
        } else {
            0.0
        };
        let shortfall = config
            .rate
            .map(|rate| ((rate - requests_per_second) / rate * 100.0).max(0.0));
        let mut statuses = tally.statuses.clone();
        statuses.sort_unstable();
        Report {
            url: target.url.clone(),
            protocol: config.protocol.name(),
            model: config.model(),
            connections: config.connections,
            threads: config.threads,
            streams: config.streams,
            duration_seconds: seconds,
            requests: responses + tally.failures(),
            responses,
            requests_per_second,
            target_rate: config.rate,
            rate_shortfall_percent: shortfall,
            missed: tally.missed,
            bytes_received: tally.bytes,
            latency_ms: Latency::of(&tally.latency),
            status_codes: statuses
                .into_iter()
                .map(|(s, n)| (s.to_string(), n))
                .collect(),
            errors: Failure::ALL
                .iter()
                .map(|f| (f.name(), tally.errors[f.index()]))
                .collect(),
            spectrum: SPECTRUM
                .iter()
                .map(|&p| SpectrumPoint {
                    percentile: p,
                    latency_ms: if tally.latency.is_empty() {
                        0.0
                    } else {
                        ms(tally.latency.value_at_percentile(p))
                    },
                })
                .collect(),
            timeline,
        }
    }

    pub fn failures(&self) -> u64 {
        self.errors.values().sum()
    }
}
