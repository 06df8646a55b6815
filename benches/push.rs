//! The push at scale (issue 16): 10,000 Services, 100,000 endpoints, PARTS subscribed parts
//! (default 100; `FERRY_PUSH_PARTS`) in this one process, each fed through the stream and the
//! receiver a remote part runs (`ferry_control::push::local`: whole view, then deltas,
//! checked and swapped in; no sockets, so no TLS or HTTP/2 framing). For each of CHANGES (50;
//! `FERRY_PUSH_CHANGES`) endpoint changes (one endpoint of one Service turning unready or ready again) it measures
//! the time from the publish to every part acknowledging it (p50 / p99), the bytes of the
//! delta against the whole view, the process's CPU per change, and the RSS of the control
//! plane alone and per part. `cargo bench --bench push` (release build).
//!
//! Goal (issue 16): p99 < 100 ms from an endpoint change to every part acknowledging it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_control::push::local::LocalParts;
use ferry_control::translate::translate;
use ferry_model::Snapshot;
use ferry_model::proto::{self, Role};
use ferry_objects::files::FileSource;
use ferry_objects::store::Store;
use ferry_runtime::{SnapshotBus, StatusBoard};
use prometheus_client::registry::Registry;
use prost::Message;

mod generate;

const NAMESPACES: usize = 100;
const SERVICES_PER_NS: usize = 100;
const FILES_PER_NS: usize = 10;
/// Endpoint changes measured, by default (`FERRY_PUSH_CHANGES`).
const CHANGES: usize = 50;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// User + system CPU of this process, from /proc/self/stat (clock ticks of 10 ms).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15; 11 and 12 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// One endpoint of the `n`th Service turns unready (or ready again): its Service and its
/// clusters change, as translate would make them; every other item is shared with `snapshot`.
fn endpoint_change(snapshot: &Snapshot, n: usize) -> Snapshot {
    let mut next = snapshot.clone();
    next.version += 1;
    let i = (n * 7919) % next.services.len();
    let service = Arc::make_mut(&mut next.services[i]);
    let endpoint = &mut service.endpoints[0];
    endpoint.ready = !endpoint.ready;
    let (address, ready) = (endpoint.address, endpoint.ready);
    let of = (service.namespace.clone(), service.name.clone());
    let of = (of.0.as_str(), of.1.as_str());
    let start = next
        .clusters
        .partition_point(|c| (c.key.namespace.as_str(), c.key.service.as_str()) < of);
    let end = next
        .clusters
        .partition_point(|c| (c.key.namespace.as_str(), c.key.service.as_str()) <= of);
    for cluster in &mut next.clusters[start..end] {
        for e in Arc::make_mut(cluster)
            .endpoints
            .iter_mut()
            .filter(|e| e.address == address)
        {
            e.ready = ready;
        }
    }
    next
}

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && a != "push")
    {
        return;
    }
    let parts: usize = std::env::var("FERRY_PUSH_PARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let changes: usize = std::env::var("FERRY_PUSH_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CHANGES);
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in generate::cluster(
        NAMESPACES,
        SERVICES_PER_NS,
        FILES_PER_NS,
        generate::Endpoints::Slices,
    ) {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let reading = FileSource::new(vec![dir.path().to_owned()]).read();
    let mut snapshot = translate(&Store::from_manifests(generate::with_controller(
        &reading.manifests,
    )))
    .snapshot;
    snapshot.version = 1;
    let endpoints: usize = snapshot.services.iter().map(|s| s.endpoints.len()).sum();
    println!(
        "{} Services, {endpoints} endpoints, {parts} parts",
        snapshot.services.len()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let bus = SnapshotBus::new();
        bus.publish(snapshot);
        let control_rss = rss_mb();
        let status = StatusBoard::default();
        let mut registry = Registry::default();
        let mut local = LocalParts::new(bus.clone(), status.clone(), &mut registry);
        let mut subscriptions = Vec::new();
        let started = Instant::now();
        for _ in 0..parts {
            subscriptions.push(local.connect(Role::Gateway, "part", Arc::new(|_: &Snapshot| Ok(()))));
        }
        let acked = |version: u64| {
            let proxies = status.status().proxies;
            proxies.len() == parts && proxies.iter().all(|p| p.version == version)
        };
        while !acked(1) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let first = started.elapsed();
        let with_parts = rss_mb();

        let mut times = Vec::new();
        let (mut full_bytes, mut delta_bytes) = (0, 0);
        let cpu_before = cpu();
        for n in 0..changes {
            let current = bus.current();
            let next = endpoint_change(&current, n);
            full_bytes = proto::Snapshot::from(&next).encoded_len();
            delta_bytes = proto::delta::diff(&current, &next).expect("canonical").encoded_len();
            let version = next.version;
            let started = Instant::now();
            bus.publish(next);
            while !acked(version) {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            times.push(started.elapsed());
        }
        let cpu_per_change = (cpu() - cpu_before) / changes as u32;
        times.sort();
        println!(
            "| parts | first whole view to all (acked) | endpoint change to all acked p50 / p99 / max | bytes per change: delta / whole | CPU per change (process) | RSS: control alone / with parts / per part |"
        );
        println!("|---|---|---|---|---|---|");
        println!(
            "| {parts} | {:.0} ms | {:.1} / {:.1} / {:.1} ms | {delta_bytes} B / {:.1} MB | {:.0} ms | {control_rss:.0} MB / {with_parts:.0} MB / {:.1} MB |",
            ms(first),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(times.last().copied().unwrap_or_default()),
            full_bytes as f64 / 1e6,
            ms(cpu_per_change),
            (with_parts - control_rss) / parts as f64,
        );
        // What went on the streams: one whole view per part, then deltas.
        let mut metrics = String::new();
        prometheus_client::encoding::text::encode(&mut metrics, &registry).expect("encode");
        for line in metrics.lines().filter(|l| l.starts_with("ferry_control_push")) {
            println!("{line}");
        }
        drop(subscriptions);
    });
}
