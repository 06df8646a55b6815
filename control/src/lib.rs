//! ferry's control plane: reads Kubernetes objects, reconciles them and publishes Snapshots.
//!
//! The flow of one change: a source (manifest files today, the API server later) delivers
//! objects as [`ferry_objects::store::Event`]s into the [`ferry_objects::store::Store`];
//! [`ferry_objects::validate`] checks each object as the API server would; the [`endpoints`]
//! controller works out what stands behind each Service;
//! [`translate::translate`] turns the store into a [`ferry_model::Snapshot`], which is validated,
//! numbered and published on the [`ferry_runtime::SnapshotBus`]. A change with any error is
//! rejected whole and the last good snapshot keeps serving.
//!
//! An Ingress is ferry's when its class (`spec.ingressClassName`, or the older
//! `kubernetes.io/ingress.class` annotation) names an IngressClass whose controller is
//! `ferry.dev/ingress`; or when it names no class and ferry's class is the default; or when
//! it names no class and no IngressClass exists at all.

pub mod endpoints;
pub mod local;
pub mod publish;
pub mod source;
pub mod translate;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ferry_model::Problem;
use ferry_runtime::{Shutdown, SnapshotBus, StatusBoard};
use prometheus_client::registry::Registry;

use crate::publish::{Publisher, ReloadOutcome};
use crate::source::{FileSource, Reading};

/// Errors of the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration has errors; one line per problem.
    #[error("{} problem(s) in the configuration:\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    #[error("cannot watch the manifest paths: {0}")]
    Watch(#[from] notify::Error),
}

/// How the control plane runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Files and directories of manifests (`-f`).
    pub paths: Vec<PathBuf>,
    /// Quiet time after a file event before reloading.
    pub debounce: Duration,
    /// Run the workloads with the local runtime (`ferry up`); `None` only reads them.
    pub local: Option<local::Config>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            paths: Vec::new(),
            debounce: Duration::from_millis(100),
            local: None,
        }
    }
}

/// Reads the paths once and reports every problem: what `ferry check` runs.
pub fn check(paths: Vec<PathBuf>) -> Vec<Problem> {
    let reading = FileSource::new(paths).read();
    match publish::evaluate(&mut ferry_objects::store::Store::default(), &reading) {
        Ok((_, problems)) | Err(problems) => problems,
    }
}

/// How long Pods get to stop when ferry shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Quiet time after a Pod's status changed before publishing, so a burst of changes (500
/// Pods starting) becomes a few snapshots.
const POD_DEBOUNCE: Duration = Duration::from_millis(20);

/// What the control plane holds between reloads.
#[derive(Debug)]
struct Inner {
    source: FileSource,
    publisher: Publisher,
    /// The local runtime's live cluster, and the last good reading it runs.
    cluster: Option<(local::Cluster, Reading)>,
}

impl Inner {
    /// Re-reads the sources and publishes what changed. A reading with errors is rejected
    /// whole and the local runtime keeps running the last good one.
    fn reload(&mut self) -> ReloadOutcome {
        let reading = self.source.read();
        let Some((cluster, desired)) = &mut self.cluster else {
            return self.publisher.reload(&reading);
        };
        // Nothing acts on a change before it is known good: checked as the API server would
        // (allocations included) and translated, on the side.
        let admitted = cluster.admit(&reading);
        if admitted.problems.iter().any(Problem::is_error)
            || publish::evaluate(&mut ferry_objects::store::Store::default(), &admitted).is_err()
        {
            return self.publisher.reload(&admitted);
        }
        let live = cluster.reconcile(&reading);
        let outcome = self.publisher.reload(&live);
        if outcome != ReloadOutcome::Rejected {
            *desired = reading;
            cluster.stop_terminating();
        }
        outcome
    }

    /// Reconciles the local runtime again (a Pod changed, or an API call acted) and publishes.
    fn refresh(&mut self) -> ReloadOutcome {
        let Some((cluster, desired)) = &mut self.cluster else {
            return ReloadOutcome::Unchanged(0);
        };
        let live = cluster.reconcile(desired);
        let outcome = self.publisher.refresh(&live);
        // A Pod is signalled only once the snapshot without its endpoints is out.
        if outcome != ReloadOutcome::Rejected {
            cluster.stop_terminating();
        }
        outcome
    }
}

/// The manifest paths' watcher and its wake-ups.
type FileWatcher = (notify::RecommendedWatcher, tokio::sync::mpsc::Receiver<()>);

/// The control plane part: the file source feeding the publisher, and the local runtime when
/// it runs the workloads.
#[derive(Debug, Clone)]
pub struct Control {
    config: Config,
    inner: Arc<Mutex<Inner>>,
    kubelet: Option<local::kubelet::Kubelet>,
    /// The kubelet's changes, subscribed before the first Pod is run: a status change made
    /// before [`Control::run`] starts (a Pod without probes is Ready as soon as its process
    /// runs) is still seen, as a Kubernetes watch started from the list's resourceVersion.
    pod_changes: Option<tokio::sync::watch::Receiver<u64>>,
    /// The manifest paths' watcher, started before the first reading: an edit made between
    /// that reading and [`Control::run`] is pending on `file_changes`, not lost (list, then
    /// watch from the list's point, as a Kubernetes client does).
    /// A clone shares it; the first `run` takes it.
    file_watcher: Arc<Mutex<Option<FileWatcher>>>,
    /// Wakes the run loop after an API call acted, so it sees the Pods now due to stop.
    acted: Arc<tokio::sync::Notify>,
}

impl Control {
    /// Reads the configuration and publishes the first snapshot; an invalid configuration at
    /// start is an error, since there is nothing older to serve.
    pub fn build(
        config: Config,
        bus: SnapshotBus,
        status: StatusBoard,
        registry: &mut Registry,
    ) -> Result<Control, Error> {
        let source = FileSource::new(config.paths.clone());
        let publisher = Publisher::new(bus, status.clone(), registry);
        let kubelet = config.local.as_ref().map(|l| {
            local::kubelet::Kubelet::new(local::kubelet::Config {
                node_name: l.cluster.node_name.clone(),
                ..l.kubelet.clone()
            })
        });
        let pod_changes = kubelet.as_ref().map(local::kubelet::Kubelet::changes);
        let cluster = config.local.as_ref().zip(kubelet.clone()).map(|(l, k)| {
            (
                local::Cluster::new(l.cluster.clone(), k),
                Reading::default(),
            )
        });
        let file_watcher = source.watch()?;
        let mut inner = Inner {
            source,
            publisher,
            cluster,
        };
        if inner.reload() == ReloadOutcome::Rejected {
            let problems = status
                .status()
                .last_rejected
                .map(|r| r.problems)
                .unwrap_or_default();
            return Err(Error::Invalid(
                problems.into_iter().filter(Problem::is_error).collect(),
            ));
        }
        Ok(Control {
            config,
            inner: Arc::new(Mutex::new(inner)),
            kubelet,
            pod_changes,
            file_watcher: Arc::new(Mutex::new(Some(file_watcher))),
            acted: Arc::new(tokio::sync::Notify::new()),
        })
    }

    async fn with_inner<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Inner) -> T + Send + 'static,
    ) -> Option<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            work(&mut inner.lock().unwrap_or_else(PoisonError::into_inner))
        })
        .await
        .ok()
    }

    /// Re-reads the sources now and publishes what changed.
    pub async fn reload(&self) -> ReloadOutcome {
        self.with_inner(Inner::reload)
            .await
            .unwrap_or(ReloadOutcome::Rejected)
    }

    /// Reconciles the local runtime now and publishes what changed.
    pub async fn refresh(&self) -> ReloadOutcome {
        self.with_inner(Inner::refresh)
            .await
            .unwrap_or(ReloadOutcome::Rejected)
    }

    /// Acts on the local runtime's live cluster (an API call), then reconciles and publishes.
    pub async fn act<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut local::Cluster) -> T + Send + 'static,
    ) -> Option<T> {
        let out = self
            .with_inner(move |inner| {
                let (cluster, _) = inner.cluster.as_mut()?;
                let out = f(cluster);
                inner.refresh();
                Some(out)
            })
            .await
            .flatten();
        self.acted.notify_one();
        out
    }

    /// Reads the live cluster without acting.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&local::Cluster) -> T + Send + 'static,
    ) -> Option<T> {
        self.with_inner(move |inner| inner.cluster.as_ref().map(|(c, _)| f(c)))
            .await
            .flatten()
    }

    /// The local runtime's kubelet, when it runs.
    pub fn kubelet(&self) -> Option<&local::kubelet::Kubelet> {
        self.kubelet.as_ref()
    }

    /// Watches the paths and reloads on every change until shutdown; with the local runtime,
    /// also reconciles on every change of a Pod, and stops every Pod at shutdown.
    pub async fn run(self, mut shutdown: Shutdown) -> Result<(), Error> {
        let started = self
            .file_watcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let (_watcher, mut events) = match started {
            Some(watching) => watching,
            None => {
                let guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
                guard.source.watch()?
            }
        };
        let mut pods = self.pod_changes.clone();
        enum Wake {
            Stop,
            Files,
            Pods,
            KubeletGone,
            StopDue,
            Acted,
        }
        loop {
            let next_stop = self.read(local::Cluster::next_stop).await.flatten();
            let wake = {
                let pod_changed = async {
                    match pods.as_mut() {
                        Some(rx) => rx.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = shutdown.wait() => Wake::Stop,
                    event = events.recv() => if event.is_some() { Wake::Files } else { Wake::Stop },
                    alive = pod_changed => if alive { Wake::Pods } else { Wake::KubeletGone },
                    () = async {
                        match next_stop {
                            Some(at) => tokio::time::sleep_until(at.into()).await,
                            None => std::future::pending().await,
                        }
                    } => Wake::StopDue,
                    () = self.acted.notified() => Wake::Acted,
                }
            };
            match wake {
                Wake::Stop => break,
                Wake::KubeletGone => pods = None,
                Wake::Files => {
                    if !source::settle(&mut events, self.config.debounce).await {
                        break;
                    }
                    self.reload().await;
                }
                Wake::Pods => {
                    tokio::time::sleep(POD_DEBOUNCE).await;
                    self.refresh().await;
                }
                Wake::StopDue => {
                    self.refresh().await;
                }
                // The loop comes round and looks at what is due now.
                Wake::Acted => {}
            }
        }
        if let Some(kubelet) = &self.kubelet {
            kubelet.shutdown(SHUTDOWN_GRACE).await;
        }
        Ok(())
    }
}
