//! The control plane at scale, end to end: 10,000 Services, 100,000 endpoints and 5,000
//! Ingresses in 1,000 files. For each endpoint source (see `generate.rs`) it runs in a fresh
//! child process and prints the time to read and validate the files, to translate them, the
//! resident memory of the running control plane, and how long a one-file change takes to be
//! published. `cargo bench --bench scale` (release build; a minute or two).
//!
//! Targets (issue 2): translate < 300 ms, RSS < 300 MB, one-file change published < 1 s.

use std::process::Command;
use std::time::{Duration, Instant};

use ferry_control::Control;
use ferry_control::translate::translate;
use ferry_objects::files::{FileFeed, FileSource};
use ferry_objects::source::{Source, Update};
use ferry_objects::store::Store;
use ferry_runtime::{SnapshotBus, StatusBoard};
use prometheus_client::registry::Registry;

mod generate;

const NAMESPACES: usize = 100;
const SERVICES_PER_NS: usize = 100;
const FILES_PER_NS: usize = 10;
const RELOADS: usize = 5;
const TRANSLATES: usize = 5;
const SCENARIO_ENV: &str = "FERRY_SCALE_SCENARIO";

fn rss_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter naming another bench skips this one.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && a != "scale")
    {
        return;
    }
    if let Ok(scenario) = std::env::var(SCENARIO_ENV) {
        let endpoints = match scenario.as_str() {
            "slices" => generate::Endpoints::Slices,
            _ => generate::Endpoints::Mixed,
        };
        run(&scenario, endpoints);
        return;
    }
    println!(
        "| endpoints from | read + validate 1,000 files | translate (median of {TRANSLATES}) | RSS, running (peak) | one-file change published (median / worst of {RELOADS}) |"
    );
    println!("|---|---|---|---|---|");
    let exe = std::env::current_exe().expect("own path");
    for scenario in ["slices", "half-pods"] {
        let status = Command::new(&exe)
            .env(SCENARIO_ENV, scenario)
            .status()
            .expect("child");
        assert!(status.success(), "{scenario} failed");
    }
    println!("targets: translate < 300 ms, RSS < 300 MB, published < 1 s");
}

/// The files as `ferry up` hands them over: with the EndpointSlice controller's slices for
/// the Pods among them.
#[derive(Debug)]
struct WithSlices(FileFeed);

impl Source for WithSlices {
    async fn next(&mut self) -> Option<Update> {
        let mut update = self.0.next().await?;
        update.reading.manifests = generate::with_controller(&update.reading.manifests);
        Some(update)
    }

    fn acknowledge(&mut self, published: bool) {
        self.0.acknowledge(published);
    }
}

fn run(scenario: &str, endpoints: generate::Endpoints) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in generate::cluster(NAMESPACES, SERVICES_PER_NS, FILES_PER_NS, endpoints) {
        std::fs::write(dir.path().join(name), text).expect("write");
    }

    // The running control plane first, in this fresh process, so its RSS is its own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (read_time, rss, hwm, reloads) = runtime.block_on(async {
        let bus = SnapshotBus::new();
        let mut registry = Registry::default();
        let started = Instant::now();
        let feed = FileFeed::start(vec![dir.path().to_owned()], Duration::from_millis(100)).expect("watch");
        let control = Control::build(WithSlices(feed), bus.clone(), StatusBoard::default(), &mut registry).await.expect("valid");
        let read_time = started.elapsed();
        let (rss, hwm) = (rss_mb("VmRSS:"), rss_mb("VmHWM:"));
        let (trigger, shutdown) = ferry_runtime::shutdown::channel();
        let task = tokio::spawn(control.run(shutdown));
        tokio::time::sleep(Duration::from_millis(300)).await; // let the watcher start
        let mut sub = bus.subscribe("bench");
        sub.current();
        let mut times = Vec::new();
        for i in 0..RELOADS {
            let ns = format!("ns-{}", i * 7);
            let file = dir.path().join(format!("{ns}-3.yaml"));
            let mut text = std::fs::read_to_string(&file).expect("read");
            text.push_str(&format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: extra-{i}, namespace: {ns}}}\nspec:\n  ports: [{{port: 80}}]\n"
            ));
            let started = Instant::now();
            std::fs::write(&file, text).expect("write");
            let published = sub.changed().await.expect("published");
            times.push(started.elapsed());
            assert!(published.service(&ns, &format!("extra-{i}")).is_some());
        }
        trigger.trigger();
        let _ = task.await;
        (read_time, rss, hwm, times)
    });

    let reading = FileSource::new(vec![dir.path().to_owned()]).read();
    let store = Store::from_manifests(generate::with_controller(&reading.manifests));
    let mut times = Vec::new();
    for _ in 0..TRANSLATES {
        let started = Instant::now();
        let t = translate(&store);
        times.push(started.elapsed());
        assert_eq!(
            t.snapshot.services.len(),
            NAMESPACES * SERVICES_PER_NS + RELOADS
        );
        let endpoints: usize = t.snapshot.services.iter().map(|s| s.endpoints.len()).sum();
        assert_eq!(
            endpoints,
            NAMESPACES * SERVICES_PER_NS * generate::ENDPOINTS_PER_SERVICE
        );
    }
    let worst = reloads.iter().max().copied().unwrap_or_default();
    println!(
        "| {scenario} | {:.0} ms | {:.0} ms | {rss:.0} MB ({hwm:.0} MB) | {:.0} ms / {:.0} ms |",
        ms(read_time),
        ms(median(times)),
        ms(median(reloads)),
        ms(worst)
    );
}
