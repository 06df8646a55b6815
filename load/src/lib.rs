//! `ferry load` (issue 6): an HTTP/1.1 and HTTP/2 load generator with a closed model (each
//! connection back to back, like wrk) and an open model (a constant rate with latency measured
//! from each request's intended send time, like wrk2), TLS, HDR-histogram latencies, status and
//! failure accounting, a per-second timeline, a text summary, JSON and a self-contained HTML
//! report, and `--compare` to measure what a proxy adds over a baseline.
//!
//! It shares nothing with the data plane. HTTP/1.1 is its own small client (`http1`: the
//! request serialized once, responses parsed with httparse, as wrk does), HTTP/2 is hyper's,
//! rustls (ring) does TLS.
//! Entry points: [`Config::from_args`], then [`run`].

mod collect;
mod compare;
mod config;
mod connect;
pub mod duration;
mod engine;
mod error;
mod failure;
mod html;
mod http1;
mod report;
mod schedule;
mod stats;
mod summary;
mod target;
mod tls;

pub use compare::{Added, Overhead};
pub use config::{Args, Config, Limit, Protocol};
pub use error::Error;
pub use failure::Failure;
pub use report::{Latency, Report, Results};
pub use stats::Second;

use std::path::Path;

use schedule::{BASELINE, TARGET};

/// Runs the load `config` describes: checks every target is reachable, runs, and writes the
/// `--json` and `--html` files. The caller prints [`Results::summary`].
pub fn run(config: &Config) -> Result<Results, Error> {
    let probe = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let endpoints = probe.block_on(engine::probe(config))?;
    drop(probe);
    let measured = engine::run(config, endpoints)?;
    let mut seconds = measured.seconds.into_iter();
    let target = Report::build(
        config,
        &config.target,
        &measured.tallies[TARGET],
        seconds.next().unwrap_or_default(),
        measured.durations[TARGET],
    );
    let baseline = config.baseline.as_ref().map(|b| {
        Report::build(
            config,
            b,
            &measured.tallies[BASELINE],
            seconds.next().unwrap_or_default(),
            measured.durations[BASELINE],
        )
    });
    let overhead = baseline.as_ref().map(|b| Overhead::of(&target, b));
    let results = Results {
        target,
        baseline,
        overhead,
        histograms: measured.tallies.into_iter().map(|t| t.latency).collect(),
    };
    if let Some(path) = &config.json {
        let json = serde_json::to_string_pretty(&results)
            .map_err(|e| Error::Invalid(format!("cannot encode the results: {e}")))?;
        write(path, json + "\n")?;
    }
    if let Some(path) = &config.html {
        write(path, html::render(&results))?;
    }
    Ok(results)
}

impl Results {
    /// The human-readable summary.
    pub fn summary(&self) -> String {
        summary::render(self)
    }

    /// The self-contained HTML report.
    pub fn html(&self) -> String {
        html::render(self)
    }
}

fn write(path: &Path, contents: String) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}
