//! The human-readable summary printed at the end of a run.

use std::fmt::Write;

use crate::report::{Report, Results};

#[cfg(test)]
mod tests;

/// The whole summary: the target, then with `--compare` the baseline and the overhead table.
pub fn render(results: &Results) -> String {
    let mut out = String::new();
    block(&mut out, "target", &results.target);
    if let Some(baseline) = &results.baseline {
        out.push('\n');
        block(&mut out, "baseline", baseline);
    }
    if let Some(o) = &results.overhead {
        let _ = writeln!(
            out,
            "\noverhead of {} over {}",
            results.target.url, o.baseline_url
        );
        let _ = writeln!(
            out,
            "  {:<12}{:>14}{:>14}{:>14}",
            "latency", "baseline ms", "target ms", "added ms"
        );
        for a in &o.latency_ms {
            let _ = writeln!(
                out,
                "  {:<12}{:>14.3}{:>14.3}{:>+14.3}",
                a.percentile, a.baseline, a.target, a.added
            );
        }
        let _ = writeln!(
            out,
            "  {:<12}{:>14.1}{:>14.1}   ratio {:.3}",
            "req/s",
            o.baseline_requests_per_second,
            o.target_requests_per_second,
            o.throughput_ratio
        );
    }
    out
}

fn block(out: &mut String, role: &str, r: &Report) {
    let _ = writeln!(
        out,
        "{role} {}  {}, {} model, {} connections{}, {} threads",
        r.url,
        r.protocol,
        r.model,
        r.connections,
        if r.streams > 1 {
            format!(" x {} streams", r.streams)
        } else {
            String::new()
        },
        r.threads
    );
    let _ = writeln!(
        out,
        "  requests    {} answered, {} failed in {:.2} s: {:.1} req/s, {}/s received",
        r.responses,
        r.failures(),
        r.duration_seconds,
        r.requests_per_second,
        bytes(if r.duration_seconds > 0.0 {
            r.bytes_received as f64 / r.duration_seconds
        } else {
            0.0
        })
    );
    if let (Some(rate), Some(short)) = (r.target_rate, r.rate_shortfall_percent) {
        let _ = writeln!(
            out,
            "  rate        target {rate:.1} req/s, achieved {:.1} req/s ({short:.2} % short), {} sends missed",
            r.requests_per_second, r.missed
        );
    }
    let l = &r.latency_ms;
    let _ = writeln!(
        out,
        "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3}  (mean {:.3}, stdev {:.3})",
        l.p50, l.p90, l.p99, l.p99_9, l.p99_99, l.max, l.mean, l.stdev
    );
    let statuses: Vec<String> = r
        .status_codes
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    let _ = writeln!(
        out,
        "  status      {}",
        if statuses.is_empty() {
            "none".to_string()
        } else {
            statuses.join("  ")
        }
    );
    let errors: Vec<String> = r
        .errors
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    let _ = writeln!(
        out,
        "  errors      {}",
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join("  ")
        }
    );
}

/// Bytes in the largest unit that keeps the number at least 1.
fn bytes(n: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut n = n;
    let mut unit = 0;
    while n >= 1024.0 && unit < UNITS.len() - 1 {
        n /= 1024.0;
        unit += 1;
    }
    format!("{n:.1} {}", UNITS[unit])
}
