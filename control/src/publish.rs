//! From a reading of the sources to a published snapshot: store, translate, validate, number,
//! publish. A reading with any error, or a snapshot that fails validation, is rejected whole:
//! the problems go to the log, to `/status` and to the metrics, and the last good snapshot
//! keeps serving.

use std::time::Instant;

use ferry_model::{Problem, Severity, Snapshot};
use ferry_runtime::{SnapshotBus, StatusBoard};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::identity::pods::{PodDirectory, PodView};
use crate::translate::translate;
use ferry_objects::files::Reading;
use ferry_objects::object::Kind;
use ferry_objects::store::Store;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the label values, as Prometheus conventions spell them
enum ReloadResult {
    accepted,
    unchanged,
    rejected,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: ReloadResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabels {
    severity: String,
}

/// The control plane's metrics.
#[derive(Debug, Clone)]
struct Metrics {
    version: Gauge,
    reloads: Family<ResultLabels, Counter>,
    rejected: Gauge,
    problems: Family<SeverityLabels, Gauge>,
    objects: Family<KindLabels, Gauge>,
    translate_seconds: Histogram,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            version: Gauge::default(),
            reloads: Family::default(),
            rejected: Gauge::default(),
            problems: Family::default(),
            objects: Family::default(),
            translate_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        };
        registry.register(
            "ferry_control_snapshot_version",
            "Version of the newest accepted snapshot",
            m.version.clone(),
        );
        registry.register(
            "ferry_control_reloads",
            "Configuration reloads by result",
            m.reloads.clone(),
        );
        registry.register(
            "ferry_control_config_rejected",
            "1 while the newest configuration is rejected and an older snapshot serves",
            m.rejected.clone(),
        );
        registry.register(
            "ferry_control_config_problems",
            "Problems in the newest configuration, by severity",
            m.problems.clone(),
        );
        registry.register(
            "ferry_control_objects",
            "Objects in the store, by kind",
            m.objects.clone(),
        );
        registry.register(
            "ferry_control_translate_seconds",
            "Time to translate the store into a snapshot",
            m.translate_seconds.clone(),
        );
        m
    }
}

/// What a reload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new snapshot with this version was published.
    Accepted(u64),
    /// Nothing changed that the data plane sees.
    Unchanged(u64),
    Rejected,
}

/// Checks a reading and builds its snapshot (version 0); on any error, every problem.
pub fn evaluate(
    store: &mut Store,
    reading: &Reading,
) -> Result<(Snapshot, Vec<Problem>), Vec<Problem>> {
    if reading.problems.iter().any(Problem::is_error) {
        return Err(reading.problems.clone());
    }
    // A file source always delivers a full relist, so the candidate store is built whole.
    let candidate = Store::from_manifests(reading.manifests.iter().cloned());
    let translation = translate(&candidate);
    let mut problems = reading.problems.clone();
    problems.extend(translation.problems);
    if let Err(e) = translation.snapshot.validate() {
        problems.push(Problem {
            severity: Severity::Error,
            file: "<snapshot>".into(),
            doc: None,
            object: None,
            field: String::new(),
            message: e.to_string(),
        });
        return Err(problems);
    }
    *store = candidate;
    Ok((translation.snapshot, problems))
}

/// Turns readings into published snapshots.
#[derive(Debug)]
pub struct Publisher {
    bus: SnapshotBus,
    status: StatusBoard,
    store: Store,
    metrics: Metrics,
    warnings: Vec<Problem>,
    /// The Pods of the store, for the identity service's token checks.
    pods: PodDirectory,
}

impl Publisher {
    pub fn new(bus: SnapshotBus, status: StatusBoard, registry: &mut Registry) -> Self {
        Publisher {
            bus,
            status,
            store: Store::default(),
            metrics: Metrics::register(registry),
            warnings: Vec::new(),
            pods: PodDirectory::default(),
        }
    }

    /// The Pods of the newest store taken (a per-Pod token is good while its Pod is there).
    pub fn pods(&self) -> PodDirectory {
        self.pods.clone()
    }

    /// Publishes a new configuration change.
    pub fn reload(&mut self, reading: &Reading) -> ReloadOutcome {
        self.publish(reading, true)
    }

    /// Publishes the same configuration with live state changed (the local runtime's Pods):
    /// `/status` keeps saying whether the newest configuration change was accepted.
    pub fn refresh(&mut self, reading: &Reading) -> ReloadOutcome {
        self.publish(reading, false)
    }

    fn publish(&mut self, reading: &Reading, change: bool) -> ReloadOutcome {
        let started = Instant::now();
        let evaluated = evaluate(&mut self.store, reading);
        self.metrics
            .translate_seconds
            .observe(started.elapsed().as_secs_f64());
        let problems = match &evaluated {
            Ok((_, p)) | Err(p) => p,
        };
        for severity in [Severity::Error, Severity::Warning] {
            let n = problems.iter().filter(|p| p.severity == severity).count();
            let label = SeverityLabels {
                severity: format!("{severity:?}").to_lowercase(),
            };
            self.metrics
                .problems
                .get_or_create(&label)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        match evaluated {
            Err(problems) => {
                for p in problems.iter().filter(|p| p.is_error()) {
                    tracing::error!("{p}");
                }
                tracing::warn!(
                    errors = problems.iter().filter(|p| p.is_error()).count(),
                    serving = self.bus.current().version,
                    "configuration rejected; the last good snapshot keeps serving"
                );
                self.status.rejected(problems);
                self.metrics.rejected.set(1);
                self.metrics
                    .reloads
                    .get_or_create(&ResultLabels {
                        result: ReloadResult::rejected,
                    })
                    .inc();
                ReloadOutcome::Rejected
            }
            Ok((mut snapshot, warnings)) => {
                self.pods.replace(PodView::from_store(&self.store));
                if warnings != self.warnings {
                    for w in &warnings {
                        tracing::warn!("{w}");
                    }
                    self.warnings = warnings.clone();
                }
                for (kind, n) in self.store.counts() {
                    let label = KindLabels {
                        kind: Kind::as_str(kind).to_owned(),
                    };
                    self.metrics
                        .objects
                        .get_or_create(&label)
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                self.metrics.rejected.set(0);
                let current = self.bus.current();
                let outcome = if current.version > 0 && current.same_content(&snapshot) {
                    self.metrics
                        .reloads
                        .get_or_create(&ResultLabels {
                            result: ReloadResult::unchanged,
                        })
                        .inc();
                    ReloadOutcome::Unchanged(current.version)
                } else {
                    snapshot.version = current.version + 1;
                    let elapsed_ms = started.elapsed().as_millis() as u64;
                    let (version, services) = (snapshot.version, snapshot.services.len());
                    // A configuration change is news; a Pod turning ready is routine.
                    if change {
                        tracing::info!(version, services, elapsed_ms, "snapshot published");
                    } else {
                        tracing::debug!(version, services, elapsed_ms, "snapshot published");
                    }
                    let version = snapshot.version;
                    self.bus.publish(snapshot);
                    self.metrics
                        .version
                        .set(i64::try_from(version).unwrap_or(i64::MAX));
                    self.metrics
                        .reloads
                        .get_or_create(&ResultLabels {
                            result: ReloadResult::accepted,
                        })
                        .inc();
                    ReloadOutcome::Accepted(version)
                };
                let version = match outcome {
                    ReloadOutcome::Accepted(v) | ReloadOutcome::Unchanged(v) => v,
                    ReloadOutcome::Rejected => 0,
                };
                if change {
                    self.status.accepted(version, warnings);
                } else {
                    self.status.refreshed(version, warnings);
                }
                outcome
            }
        }
    }
}
