//! `ferry get mesh` (alias `top`): the golden signals per meshed workload, as `linkerd viz
//! stat` shows them, read from the sidecars themselves.
//!
//! The meshed Pods (those with the `ferry-sidecar` init container) come from the local
//! runtime's API; each running one's sidecar is scraped at `http://<podIP>:4191/metrics` twice,
//! `--window` apart, all in parallel with short timeouts (a sidecar that does not answer is
//! reported, never fatal). The counter deltas over the window, summed over a workload's Pods
//! (Deployment via its ReplicaSet, else the owner, else the Pod), give the success rate, the
//! request rate and the latency percentiles (from the histogram's bucket deltas, as
//! Prometheus's `histogram_quantile` interpolates them).

mod text;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::get::{self, Output, encode, table};
use crate::workloads::WorkloadError;
pub use text::{Sample, parse};

/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of a sidecar's `/metrics` read: its own series come to a few hundred KiB even with
/// many peers; a larger body (a broken or hostile Pod) is refused, not buffered whole.
pub const METRICS_LIMIT: usize = 4 << 20;

/// The workload a Pod belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub namespace: String,
    /// `Deployment`, `ReplicaSet`, another owner's kind, or `Pod`.
    pub kind: String,
    pub name: String,
}

impl WorkloadKey {
    /// `deploy/NAME`, `rs/NAME`, `pod/NAME`, `<kind>/NAME`.
    pub fn display(&self) -> String {
        let kind = match self.kind.as_str() {
            "Deployment" => "deploy".to_owned(),
            "ReplicaSet" => "rs".to_owned(),
            other => other.to_ascii_lowercase(),
        };
        format!("{kind}/{}", self.name)
    }
}

/// A Pod as the view needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub workload: WorkloadKey,
    pub meshed: bool,
    pub sidecar_ready: bool,
    /// Where its sidecar answers, when it runs and has an address.
    pub ip: Option<IpAddr>,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The controlling owner (or the first owner) of an object: (kind, name).
fn owner(v: &Value) -> Option<(&str, &str)> {
    let owners = v.pointer("/metadata/ownerReferences")?.as_array()?;
    let o = owners
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .or_else(|| owners.first())?;
    Some((str_at(o, "/kind"), str_at(o, "/name")))
}

/// Each Pod with its workload: the Deployment owning its ReplicaSet, else its owner, else
/// itself.
pub fn pods(pods: &[Value], replicasets: &[Value]) -> Vec<PodInfo> {
    pods.iter()
        .map(|p| {
            let namespace = str_at(p, "/metadata/namespace").to_owned();
            let name = str_at(p, "/metadata/name").to_owned();
            let (kind, workload) = match owner(p) {
                Some(("ReplicaSet", rs)) => replicasets
                    .iter()
                    .find(|r| {
                        str_at(r, "/metadata/namespace") == namespace
                            && str_at(r, "/metadata/name") == rs
                    })
                    .and_then(owner)
                    .filter(|(kind, _)| *kind == "Deployment")
                    .map_or(("ReplicaSet", rs), |(kind, d)| (kind, d)),
                Some((kind, owner)) if !kind.is_empty() && !owner.is_empty() => (kind, owner),
                _ => ("Pod", name.as_str()),
            };
            let sidecar = |statuses: &str| {
                p.pointer(statuses)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|c| str_at(c, "/name") == "ferry-sidecar")
                    .cloned()
            };
            let meshed = p
                .pointer("/spec/initContainers")
                .and_then(Value::as_array)
                .is_some_and(|cs| cs.iter().any(|c| str_at(c, "/name") == "ferry-sidecar"));
            let sidecar_ready = meshed
                && sidecar("/status/initContainerStatuses")
                    .is_some_and(|c| c.get("ready").and_then(Value::as_bool) == Some(true));
            let running = str_at(p, "/status/phase") == "Running"
                && str_at(p, "/metadata/deletionTimestamp").is_empty();
            let ip = str_at(p, "/status/podIP").parse().ok().filter(|_| running);
            PodInfo {
                workload: WorkloadKey {
                    namespace: namespace.clone(),
                    kind: kind.to_owned(),
                    name: workload.to_owned(),
                },
                name,
                meshed,
                sidecar_ready,
                ip,
            }
        })
        .collect()
}

/// Requests by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Requests {
    pub total: f64,
    /// 5xx and no response.
    pub failed: f64,
}

/// What one scrape of a sidecar (or a sum of them) says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Signals {
    pub inbound: Requests,
    pub outbound: Requests,
    /// The inbound latency histogram, summed over peers and routes: (upper bound, cumulative
    /// count), sorted by bound, the last one `+Inf`.
    pub inbound_buckets: Vec<(f64, f64)>,
    pub tcp_open_inbound: f64,
    pub tls_failed: f64,
    /// The workload certificate's notAfter (seconds since the epoch).
    pub certificate_expiry: Option<f64>,
}

impl Signals {
    pub fn from_samples(samples: &[Sample]) -> Signals {
        let mut s = Signals::default();
        for x in samples {
            match x.name.as_str() {
                "ferry_sidecar_requests_total" => {
                    let r = match x.label("direction") {
                        "inbound" => &mut s.inbound,
                        "outbound" => &mut s.outbound,
                        _ => continue,
                    };
                    r.total += x.value;
                    if matches!(x.label("status"), "5xx" | "error") {
                        r.failed += x.value;
                    }
                }
                "ferry_sidecar_request_duration_seconds_bucket"
                    if x.label("direction") == "inbound" =>
                {
                    let le = match x.label("le") {
                        "+Inf" => f64::INFINITY,
                        le => match le.parse() {
                            Ok(le) => le,
                            Err(_) => continue,
                        },
                    };
                    add_bucket(&mut s.inbound_buckets, le, x.value);
                }
                "ferry_sidecar_tcp_open_connections" if x.label("direction") == "inbound" => {
                    s.tcp_open_inbound += x.value;
                }
                "ferry_sidecar_tls_handshakes_total" if x.label("outcome") == "failed" => {
                    s.tls_failed += x.value;
                }
                "ferry_sidecar_certificate_expiry_timestamp_seconds" if x.value > 0.0 => {
                    s.certificate_expiry = Some(x.value);
                }
                _ => {}
            }
        }
        s
    }

    /// What happened between `before` and `self`: counters subtracted (a counter that went
    /// down restarted, so all of it is new); gauges as they are now.
    pub fn since(&self, before: &Signals) -> Signals {
        let delta = |now: f64, then: f64| if now >= then { now - then } else { now };
        let requests = |now: Requests, then: Requests| Requests {
            total: delta(now.total, then.total),
            failed: delta(now.failed, then.failed),
        };
        let buckets = self
            .inbound_buckets
            .iter()
            .map(|&(le, now)| {
                let then = before
                    .inbound_buckets
                    .iter()
                    .find(|(b, _)| *b == le)
                    .map_or(0.0, |(_, c)| *c);
                (le, delta(now, then))
            })
            .collect();
        Signals {
            inbound: requests(self.inbound, before.inbound),
            outbound: requests(self.outbound, before.outbound),
            inbound_buckets: buckets,
            ..self.clone()
        }
    }

    /// Adds another Pod's signals: counts summed, the soonest certificate expiry.
    pub fn add(&mut self, other: &Signals) {
        self.inbound.total += other.inbound.total;
        self.inbound.failed += other.inbound.failed;
        self.outbound.total += other.outbound.total;
        self.outbound.failed += other.outbound.failed;
        for &(le, count) in &other.inbound_buckets {
            add_bucket(&mut self.inbound_buckets, le, count);
        }
        self.tcp_open_inbound += other.tcp_open_inbound;
        self.tls_failed += other.tls_failed;
        self.certificate_expiry = match (self.certificate_expiry, other.certificate_expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

fn add_bucket(buckets: &mut Vec<(f64, f64)>, le: f64, count: f64) {
    match buckets.iter_mut().find(|(b, _)| *b == le) {
        Some((_, c)) => *c += count,
        None => {
            buckets.push((le, count));
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }
}

/// The `q` quantile (0..=1) of a cumulative histogram, interpolated linearly inside its
/// bucket as Prometheus's `histogram_quantile` does; in the `+Inf` bucket, the largest finite
/// bound. `None` when it counts nothing.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            if count <= lower.1 {
                return Some(le);
            }
            return Some(lower.0 + (le - lower.0) * (rank - lower.1) / (count - lower.1));
        }
        lower = (le, count);
    }
    Some(lower.0)
}

/// One workload's row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    /// Pods whose sidecar is ready.
    pub meshed_ready: usize,
    /// Pods of the workload, meshed or not.
    pub pods: usize,
    /// Running meshed Pods whose sidecar did not answer.
    pub unreachable: usize,
    pub window_seconds: f64,
    /// Inbound requests in the window; the rates below are `null` when there were none.
    pub requests: f64,
    pub success_rate: Option<f64>,
    pub rps: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub tcp_open_connections: f64,
    pub outbound_requests: f64,
    pub outbound_success_rate: Option<f64>,
    pub outbound_rps: Option<f64>,
    /// mTLS handshakes that failed since the sidecars started.
    pub tls_handshake_failures: f64,
    /// The soonest workload certificate notAfter, seconds since the epoch.
    pub certificate_expiry: Option<f64>,
}

/// The rows: one per workload with a meshed Pod, from each scraped Pod's window (`None` when
/// its sidecar did not answer or it was not scraped). Rates are each Pod's count over its own
/// window, summed.
pub fn aggregate(
    pods: &[PodInfo],
    windows: &[Option<Window>],
    window: Duration,
    namespace: Option<&str>,
) -> Vec<Row> {
    let mut groups: BTreeMap<&WorkloadKey, Vec<(&PodInfo, Option<&Window>)>> = BTreeMap::new();
    for (i, p) in pods.iter().enumerate() {
        if namespace.is_some_and(|ns| ns != p.workload.namespace) {
            continue;
        }
        groups
            .entry(&p.workload)
            .or_default()
            .push((p, windows.get(i).and_then(Option::as_ref)));
    }
    let seconds = window.as_secs_f64();
    let rate = |members: &[(&PodInfo, Option<&Window>)], count: fn(&Signals) -> f64| {
        let sum: f64 = members
            .iter()
            .filter_map(|(_, w)| *w)
            .filter(|w| w.seconds > 0.0)
            .map(|w| count(&w.signals) / w.seconds)
            .sum();
        (sum > 0.0).then_some(sum)
    };
    let success = |r: Requests| (r.total > 0.0).then(|| (r.total - r.failed) / r.total);
    groups
        .into_iter()
        .filter(|(_, members)| members.iter().any(|(p, _)| p.meshed))
        .map(|(key, members)| {
            let mut sum = Signals::default();
            for (_, w) in &members {
                if let Some(w) = w {
                    sum.add(&w.signals);
                }
            }
            let ms = |q| quantile(&sum.inbound_buckets, q).map(|s| s * 1000.0);
            Row {
                namespace: key.namespace.clone(),
                kind: key.kind.clone(),
                name: key.name.clone(),
                meshed_ready: members.iter().filter(|(p, _)| p.sidecar_ready).count(),
                pods: members.len(),
                unreachable: members
                    .iter()
                    .filter(|(p, s)| p.meshed && p.ip.is_some() && s.is_none())
                    .count(),
                window_seconds: seconds,
                requests: sum.inbound.total,
                success_rate: success(sum.inbound),
                rps: rate(&members, |s| s.inbound.total),
                latency_p50_ms: ms(0.5),
                latency_p95_ms: ms(0.95),
                latency_p99_ms: ms(0.99),
                tcp_open_connections: sum.tcp_open_inbound,
                outbound_requests: sum.outbound.total,
                outbound_success_rate: success(sum.outbound),
                outbound_rps: rate(&members, |s| s.outbound.total),
                tls_handshake_failures: sum.tls_failed,
                certificate_expiry: sum.certificate_expiry,
            }
        })
        .collect()
}

fn dash<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map_or_else(|| "-".to_owned(), f)
}

fn millis(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{ms:.2}ms")
    }
}

/// How long until `expiry`, as kubectl prints ages.
fn until(expiry: f64, now: SystemTime) -> String {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    if expiry <= now {
        return "expired".into();
    }
    // Whole seconds are what the age format prints.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let secs = (expiry - now) as u64;
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        7200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Renders the rows (JSON and YAML as the rows' fields).
pub fn render(rows: &[Row], output: Output, now: SystemTime) -> Result<String, get::Error> {
    if matches!(output, Output::Json | Output::Yaml) {
        return encode(&rows, output);
    }
    let wide = output == Output::Wide;
    let percent = |r: f64| format!("{:.2}%", r * 100.0);
    let rps = |r: f64| format!("{r:.1}rps");
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let key = WorkloadKey {
                namespace: r.namespace.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
            };
            let mut meshed = format!("{}/{}", r.meshed_ready, r.pods);
            if r.unreachable > 0 {
                meshed.push_str(&format!(" ({} unreachable)", r.unreachable));
            }
            let mut line = vec![
                r.namespace.clone(),
                key.display(),
                meshed,
                dash(r.success_rate, percent),
                dash(r.rps, rps),
                dash(r.latency_p50_ms, millis),
                dash(r.latency_p95_ms, millis),
                dash(r.latency_p99_ms, millis),
                format!("{}", r.tcp_open_connections),
            ];
            if wide {
                line.extend([
                    dash(r.outbound_success_rate, percent),
                    dash(r.outbound_rps, rps),
                    format!("{}", r.tls_handshake_failures),
                    dash(r.certificate_expiry, |e| until(e, now)),
                ]);
            }
            line
        })
        .collect();
    let mut header = vec![
        "NAMESPACE",
        "NAME",
        "MESHED",
        "SUCCESS",
        "RPS",
        "LATENCY_P50",
        "LATENCY_P95",
        "LATENCY_P99",
        "TCP_CONN",
    ];
    if wide {
        header.extend(["OUT_SUCCESS", "OUT_RPS", "MTLS_FAILED", "CERT_EXPIRES"]);
    }
    if lines.is_empty() {
        return Ok("No meshed workloads found.\n".to_owned());
    }
    Ok(table(&header, &lines))
}

async fn list(admin: SocketAddr, path: &str) -> Result<Vec<Value>, WorkloadError> {
    let (status, _, body) = get::request(admin, http::Method::GET, path).await?;
    if !status.is_success() {
        return Err(WorkloadError::Refused(
            String::from_utf8_lossy(&body).trim_end().to_owned(),
        ));
    }
    let list: Value =
        serde_json::from_slice(&body).map_err(|e| get::Error::Decode(e.to_string(), admin))?;
    Ok(list
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// One scrape of the sidecar at `addr`.
pub async fn scrape(addr: SocketAddr) -> Result<Signals, String> {
    let answer = tokio::time::timeout(SCRAPE_TIMEOUT, metrics(addr))
        .await
        .map_err(|_| format!("no answer in {SCRAPE_TIMEOUT:?}"))?;
    let body = answer?;
    let samples = parse(&String::from_utf8_lossy(&body))?;
    Ok(Signals::from_samples(&samples))
}

/// `GET /metrics` of the sidecar at `addr`, its body read up to [`METRICS_LIMIT`].
async fn metrics(addr: SocketAddr) -> Result<bytes::Bytes, String> {
    use http_body_util::BodyExt;
    let unreachable = |e: &dyn std::fmt::Display| format!("cannot reach {addr}: {e}");
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
    tokio::spawn(conn);
    let request = http::Request::builder()
        .uri("/metrics")
        .header(http::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| unreachable(&e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(&e))?;
    if !response.status().is_success() {
        return Err(format!("/metrics answered {}", response.status()));
    }
    let body = http_body_util::Limited::new(response.into_body(), METRICS_LIMIT)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                format!(
                    "/metrics is larger than {} MiB; not read",
                    METRICS_LIMIT >> 20
                )
            } else {
                format!("/metrics: {e}")
            }
        })?;
    Ok(body.to_bytes())
}

/// What one sidecar saw between two scrapes, and how far apart they were.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub signals: Signals,
    pub seconds: f64,
}

/// Scrapes `addr` twice, `window` apart.
async fn watch(addr: SocketAddr, window: Duration) -> Result<Window, String> {
    let before = scrape(addr).await?;
    let started = Instant::now();
    // The measurement window itself, not a wait for some other task.
    tokio::time::sleep(window).await;
    let after = scrape(addr).await?;
    Ok(Window {
        signals: after.since(&before),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The view: rows, and a line for each sidecar that did not answer.
#[derive(Debug)]
pub struct Report {
    pub text: String,
    pub warnings: Vec<String>,
}

/// `ferry get mesh`: lists the meshed Pods of `namespace` (all when `None`), watches their
/// sidecars for `window`, and renders a row per workload.
pub async fn get(
    admin: SocketAddr,
    namespace: Option<&str>,
    window: Duration,
    output: Output,
) -> Result<Report, WorkloadError> {
    let all_pods = list(admin, "/api/v1/pods").await?;
    let replicasets = list(admin, "/api/v1/replicasets").await?;
    let pods: Vec<PodInfo> = pods(&all_pods, &replicasets)
        .into_iter()
        .filter(|p| namespace.is_none_or(|ns| ns == p.workload.namespace))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, p) in pods.iter().enumerate() {
        if let (true, Some(ip)) = (p.meshed, p.ip) {
            let addr = SocketAddr::new(ip, ferry_model::mesh::ADMIN_PORT);
            tasks.spawn(async move { (i, addr, watch(addr, window).await) });
        }
    }
    let mut windows = vec![None; pods.len()];
    let mut warnings = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let Ok((i, addr, result)) = done else {
            continue;
        };
        match result {
            Ok(w) => windows[i] = Some(w),
            Err(e) => warnings.push(format!(
                "pod {}/{}: the sidecar at {addr} did not answer usably: {e}",
                pods[i].workload.namespace, pods[i].name
            )),
        }
    }
    warnings.sort();
    let rows = aggregate(&pods, &windows, window, namespace);
    Ok(Report {
        text: render(&rows, output, SystemTime::now())?,
        warnings,
    })
}

#[cfg(test)]
mod tests;
