use std::time::Duration;

use clap::Parser;

use super::{Report, Results};
use crate::compare::Overhead;
use crate::config::{Args, Config};
use crate::stats::{Second, Tally};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

pub(crate) fn config(argv: &[&str]) -> Config {
    let cli = Cli::parse_from(std::iter::once("load").chain(argv.iter().copied()));
    Config::from_args(cli.args).unwrap()
}

/// 1,000 answers at 1..=1000 µs plus a 250 ms one, three 503s, two timeouts.
pub(crate) fn tally(extra_us: u64) -> Tally {
    let mut t = Tally::default();
    for us in 1..=1000 {
        t.response(us + extra_us, 200, 100);
    }
    t.response(250_000 + extra_us, 200, 100);
    for _ in 0..3 {
        t.response(500, 503, 0);
    }
    t.failure(crate::failure::Failure::Timeout);
    t.failure(crate::failure::Failure::Timeout);
    t
}

fn timeline() -> Vec<Second> {
    (0..2)
        .map(|s| Second {
            second: s,
            responses: 502,
            errors: 1,
            p50_ms: 0.5,
            p90_ms: 0.9,
            p99_ms: 1.0,
            max_ms: 250.0,
        })
        .collect()
}

/// A comparison of a target 2 ms slower than its baseline, at a rate.
pub(crate) fn sample() -> Results {
    let config = config(&[
        "--rate",
        "600",
        "-d",
        "2s",
        "--compare",
        "http://127.0.0.1:1/base?a=1&b=2",
        "http://127.0.0.1:2/",
    ]);
    let target = Report::build(
        &config,
        &config.target,
        &tally(2_000),
        timeline(),
        Duration::from_secs(2),
    );
    let base = config.baseline.clone().unwrap();
    let baseline = Report::build(
        &config,
        &base,
        &tally(0),
        timeline(),
        Duration::from_secs(1),
    );
    let overhead = Overhead::of(&target, &baseline);
    Results {
        target,
        baseline: Some(baseline),
        overhead: Some(overhead),
        histograms: vec![tally(2_000).latency, tally(0).latency],
    }
}

#[test]
fn a_report_carries_rate_percentiles_statuses_and_errors() {
    let r = sample().target;
    assert_eq!(r.responses, 1004);
    assert_eq!(r.requests, 1006);
    assert!((r.requests_per_second - 502.0).abs() < 1e-9);
    assert_eq!(r.target_rate, Some(600.0));
    let short = r.rate_shortfall_percent.unwrap();
    assert!((short - (600.0 - 502.0) / 6.0).abs() < 1e-9, "{short}");
    assert_eq!(r.model, "open");
    assert_eq!(r.status_codes.len(), 2);
    assert_eq!(r.status_codes["200"], 1001);
    assert_eq!(r.status_codes["503"], 3);
    assert_eq!(r.errors["timeout"], 2);
    assert_eq!(r.errors.len(), 5);
    let l = &r.latency_ms;
    assert!((l.p50 - 2.5).abs() < 0.01, "{l:?}");
    assert!(l.max >= 251.9 && l.max < 252.2, "{l:?}");
    assert!(l.p99_9 >= l.p99 && l.p99_99 >= l.p99_9 && l.max >= l.p99_99);
    assert_eq!(r.spectrum.first().unwrap().percentile, 0.0);
    assert_eq!(r.spectrum.last().unwrap().latency_ms, l.max);
}

#[test]
fn the_json_has_the_documented_fields() {
    let v = serde_json::to_value(sample()).unwrap();
    for key in [
        "url",
        "protocol",
        "model",
        "connections",
        "threads",
        "duration_seconds",
        "requests",
        "responses",
        "requests_per_second",
        "target_rate",
        "rate_shortfall_percent",
        "missed",
        "bytes_received",
        "latency_ms",
        "status_codes",
        "errors",
        "spectrum",
        "timeline",
        "baseline",
        "overhead",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    for p in ["p50", "p90", "p99", "p99.9", "p99.99", "max"] {
        assert!(v["latency_ms"][p].is_f64(), "{p}");
        assert!(v["baseline"]["latency_ms"][p].is_f64(), "{p}");
    }
    assert_eq!(v["overhead"]["latency_ms"][0]["percentile"], "p50");
    assert!(v["overhead"]["throughput_ratio"].is_f64());
    assert!(v.get("histograms").is_none());

    // The closed model has a null target rate and no shortfall.
    let config = config(&["-n", "5", "http://127.0.0.1:2/"]);
    let r = Report::build(
        &config,
        &config.target,
        &Tally::default(),
        Vec::new(),
        Duration::ZERO,
    );
    let v = serde_json::to_value(r).unwrap();
    assert!(v["target_rate"].is_null());
    assert!(v["rate_shortfall_percent"].is_null());
    assert_eq!(v["requests_per_second"], 0.0);
    assert_eq!(v["latency_ms"]["max"], 0.0);
}
