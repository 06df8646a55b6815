//! `--html`: one self-contained file (no scripts, no fetches) with inline SVG plots: the latency
//! percentile spectrum, latency over time, throughput over time and status codes, and with
//! `--compare` the overhead table and both targets on each plot.

use std::fmt::Write;

use crate::report::{Report, Results};

#[cfg(test)]
mod tests;

const TARGET_COLOR: &str = "#d9480f";
const BASELINE_COLOR: &str = "#1971c2";
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;

/// A line on a chart.
#[derive(Debug)]
struct Line {
    name: String,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// How the x axis is labelled.
#[derive(Debug)]
enum XAxis {
    /// Plain numbers.
    Linear,
    /// Percentiles placed at log10(1 / (1 - p)): the tail gets the room.
    Percentile,
}

pub fn render(results: &Results) -> String {
    let mut reports: Vec<(&Report, &'static str, &str)> =
        vec![(&results.target, TARGET_COLOR, "target")];
    if let Some(b) = &results.baseline {
        reports.push((b, BASELINE_COLOR, "baseline"));
    }
    let mut body = String::new();
    let t = &results.target;
    let _ = write!(
        body,
        "<h1>ferry load</h1><p class=meta>{} &middot; {} &middot; {} model &middot; {} connections &middot; {} threads</p>",
        escape(&t.url),
        t.protocol,
        t.model,
        t.connections,
        t.threads
    );
    body += &summary_table(&reports);
    if let Some(o) = &results.overhead {
        let _ = write!(
            body,
            "<h2>Overhead of the target over the baseline</h2><table><tr><th>latency</th><th>baseline ms</th><th>target ms</th><th>added ms</th></tr>"
        );
        for a in &o.latency_ms {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:+.3}</td></tr>",
                a.percentile, a.baseline, a.target, a.added
            );
        }
        let _ = write!(
            body,
            "<tr><td>req/s</td><td>{:.1}</td><td>{:.1}</td><td>ratio {:.3}</td></tr></table>",
            o.baseline_requests_per_second, o.target_requests_per_second, o.throughput_ratio
        );
    }

    let spectrum: Vec<Line> = reports
        .iter()
        .map(|(r, color, role)| Line {
            name: format!("{role} {}", r.url),
            color,
            dashed: false,
            points: r
                .spectrum
                .iter()
                .filter(|p| r.responses > 0 || p.latency_ms > 0.0)
                .map(|p| (percentile_x(p.percentile), p.latency_ms))
                .collect(),
        })
        .collect();
    body += &chart(
        "spectrum",
        "Latency by percentile",
        "percentile",
        "ms",
        &spectrum,
        XAxis::Percentile,
    );

    let mut over_time = Vec::new();
    for (r, color, role) in &reports {
        let active: Vec<_> = r.timeline.iter().filter(|s| s.responses > 0).collect();
        over_time.push(Line {
            name: format!("{role} p50"),
            color,
            dashed: true,
            points: active.iter().map(|s| (s.second as f64, s.p50_ms)).collect(),
        });
        over_time.push(Line {
            name: format!("{role} p99"),
            color,
            dashed: false,
            points: active.iter().map(|s| (s.second as f64, s.p99_ms)).collect(),
        });
        if reports.len() == 1 {
            over_time.push(Line {
                name: format!("{role} max"),
                color: "#495057",
                dashed: true,
                points: active.iter().map(|s| (s.second as f64, s.max_ms)).collect(),
            });
        }
    }
    body += &chart(
        "latency-over-time",
        "Latency over time (per second)",
        "second",
        "ms",
        &over_time,
        XAxis::Linear,
    );

    let throughput: Vec<Line> = reports
        .iter()
        .map(|(r, color, role)| Line {
            name: format!("{role} responses/s"),
            color,
            dashed: false,
            points: r
                .timeline
                .iter()
                .map(|s| (s.second as f64, s.responses as f64))
                .collect(),
        })
        .collect();
    body += &chart(
        "throughput-over-time",
        "Throughput over time",
        "second",
        "responses/s",
        &throughput,
        XAxis::Linear,
    );
    body += &status_chart(&reports);

    format!(
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>ferry load: {}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        escape(&t.url)
    )
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#212529}\
h1{font-size:22px;margin:0}h2{font-size:16px;margin-top:28px}.meta{color:#495057}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #dee2e6;padding:3px 8px;text-align:right}\
th{background:#f1f3f5}td:first-child,th:first-child{text-align:left}\
svg{display:block;margin:8px 0 20px;background:#fff;border:1px solid #dee2e6}\
svg text{font:11px system-ui,sans-serif;fill:#495057}svg .title{font-size:13px;fill:#212529}";

fn summary_table(reports: &[(&Report, &'static str, &str)]) -> String {
    let mut t = String::from(
        "<h2>Summary</h2><table><tr><th></th><th>url</th><th>req/s</th><th>target rate</th><th>answered</th><th>failed</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>p99.99 ms</th><th>max ms</th></tr>",
    );
    for (r, _, role) in reports {
        let l = &r.latency_ms;
        let _ = write!(
            t,
            "<tr><td>{role}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            escape(&r.url),
            r.requests_per_second,
            r.target_rate.map_or("-".to_string(), |x| format!("{x:.1}")),
            r.responses,
            r.failures(),
            l.p50,
            l.p90,
            l.p99,
            l.p99_9,
            l.p99_99,
            l.max
        );
    }
    t + "</table>"
}

/// Where a percentile sits on the spectrum's x axis; 100 (the maximum) goes just past 99.999.
fn percentile_x(p: f64) -> f64 {
    if p >= 100.0 {
        5.5
    } else {
        (1.0 / (1.0 - p / 100.0)).log10().min(5.5)
    }
}

/// A round step for about five ticks up to `max`.
fn step(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let n = raw / magnitude;
    let nice = if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn number(v: f64) -> String {
    if v == v.round() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        // Enough digits for a tick step, without trailing zeros.
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn chart(id: &str, title: &str, x_label: &str, y_label: &str, lines: &[Line], x: XAxis) -> String {
    let points = lines.iter().flat_map(|l| l.points.iter());
    let (mut x_max, mut y_max) = (0f64, 0f64);
    for &(px, py) in points {
        x_max = x_max.max(px);
        y_max = y_max.max(py);
    }
    let (x_min, x_max) = match x {
        XAxis::Percentile => (0.0, 5.5),
        XAxis::Linear => (0.0, x_max.max(1.0)),
    };
    let y_step = step(y_max);
    let y_top = (y_max / y_step).ceil().max(1.0) * y_step;
    let w = WIDTH - LEFT - RIGHT;
    let h = HEIGHT - TOP - BOTTOM;
    let sx = |v: f64| LEFT + (v - x_min) / (x_max - x_min) * w;
    let sy = |v: f64| TOP + h - v / y_top * h;
    let mut svg = format!(
        "<h2>{title}</h2><svg id=\"{id}\" class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{title}\">"
    );
    // Grid and y ticks.
    let mut v = 0.0;
    while v <= y_top + y_step / 2.0 {
        let y = sy(v);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e9ecef\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + w,
            LEFT - 6.0,
            y + 4.0,
            number(v)
        );
        v += y_step;
    }
    // X ticks.
    let ticks: Vec<(f64, String)> = match x {
        XAxis::Percentile => [
            (0.0, "0%"),
            (1.0, "90%"),
            (2.0, "99%"),
            (3.0, "99.9%"),
            (4.0, "99.99%"),
            (5.0, "99.999%"),
            (5.5, "max"),
        ]
        .iter()
        .map(|(x, l)| (*x, l.to_string()))
        .collect(),
        XAxis::Linear => {
            // Whole seconds: never a tick between two.
            let s = step(x_max).max(1.0);
            let mut t = Vec::new();
            let mut v = 0.0;
            while v <= x_max + s / 100.0 {
                t.push((v, number(v)));
                v += s;
            }
            t
        }
    };
    for (v, label) in ticks {
        let px = sx(v);
        let _ = write!(
            svg,
            "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#f1f3f5\"/><text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            TOP + h,
            TOP + h + 16.0
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#868e96\"/><line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#868e96\"/>",
        LEFT + w,
        TOP + h,
        TOP + h,
        TOP + h
    );
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x_label}</text><text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{y_label}</text>",
        LEFT + w / 2.0,
        HEIGHT - 8.0,
        TOP + h / 2.0,
        TOP + h / 2.0
    );
    for line in lines {
        if line.points.is_empty() {
            continue;
        }
        let path: Vec<String> = line
            .points
            .iter()
            .map(|&(px, py)| format!("{:.1},{:.1}", sx(px), sy(py)))
            .collect();
        let _ = write!(
            svg,
            "<polyline class=\"series\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\"{} points=\"{}\"><title>{}</title></polyline>",
            line.color,
            if line.dashed {
                " stroke-dasharray=\"5 3\""
            } else {
                ""
            },
            path.join(" "),
            escape(&line.name)
        );
    }
    // Legend along the top.
    let mut lx = LEFT;
    for line in lines {
        let _ = write!(
            svg,
            "<line x1=\"{lx:.1}\" x2=\"{:.1}\" y1=\"14\" y2=\"14\" stroke=\"{}\" stroke-width=\"2\"{}/><text x=\"{:.1}\" y=\"18\">{}</text>",
            lx + 18.0,
            line.color,
            if line.dashed {
                " stroke-dasharray=\"5 3\""
            } else {
                ""
            },
            lx + 22.0,
            escape(&line.name)
        );
        lx += 30.0 + 6.5 * line.name.chars().count() as f64;
    }
    svg + "</svg>"
}

fn status_chart(reports: &[(&Report, &'static str, &str)]) -> String {
    let mut bars: Vec<(String, u64, &'static str)> = Vec::new();
    for (r, color, role) in reports {
        let prefix = if reports.len() > 1 {
            format!("{role} ")
        } else {
            String::new()
        };
        for (status, n) in &r.status_codes {
            bars.push((format!("{prefix}{status}"), *n, color));
        }
        for (kind, n) in r.errors.iter().filter(|(_, n)| **n > 0) {
            bars.push((format!("{prefix}{kind} error"), *n, "#868e96"));
        }
    }
    let row = 24.0;
    let height = TOP + row * bars.len().max(1) as f64 + 12.0;
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let label_w = 170.0;
    let w = WIDTH - label_w - 90.0;
    let mut svg = format!(
        "<h2>Status codes and errors</h2><svg id=\"status-codes\" class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"Status codes\">"
    );
    if bars.is_empty() {
        let _ = write!(svg, "<text x=\"{LEFT}\" y=\"{TOP}\">no requests</text>");
    }
    for (i, (label, n, color)) in bars.iter().enumerate() {
        let y = TOP - 18.0 + i as f64 * row;
        let bw = (*n as f64 / max * w).max(1.0);
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><rect class=\"bar\" x=\"{label_w}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"16\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{n}</text>",
            label_w - 8.0,
            y + 12.0,
            escape(label),
            label_w + bw + 6.0,
            y + 12.0
        );
    }
    svg + "</svg>"
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&#39;",
            c => out.push(c),
        }
    }
    out
}
