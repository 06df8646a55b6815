//! ferry's control plane: reads Kubernetes objects, reconciles them and publishes Snapshots.
//!
//! The flow of one change: a source (manifest files today, the API server later) delivers
//! objects as [`store::Event`]s into the [`store::Store`]; [`validate`] checks each object as the
//! API server would; the [`endpoints`] controller works out what stands behind each Service;
//! [`translate::translate`] turns the store into a [`ferry_model::Snapshot`], which is validated,
//! numbered and published on the [`ferry_runtime::SnapshotBus`]. A change with any error is
//! rejected whole and the last good snapshot keeps serving.
//!
//! An Ingress is ferry's when its class (`spec.ingressClassName`, or the older
//! `kubernetes.io/ingress.class` annotation) names an IngressClass whose controller is
//! `ferry.dev/ingress`; or when it names no class and ferry's class is the default; or when
//! it names no class and no IngressClass exists at all.

pub mod certificate;
pub mod endpoints;
pub mod manifest;
pub mod object;
pub mod publish;
pub mod selector;
pub mod source;
pub mod store;
pub mod translate;
pub mod validate;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ferry_model::Problem;
use ferry_runtime::{Shutdown, SnapshotBus, StatusBoard};
use prometheus_client::registry::Registry;

use crate::publish::{Outcome, Publisher};
use crate::source::FileSource;

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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            paths: Vec::new(),
            debounce: Duration::from_millis(100),
        }
    }
}

/// Reads the paths once and reports every problem: what `ferry check` runs.
pub fn check(paths: Vec<PathBuf>) -> Vec<Problem> {
    let reading = FileSource::new(paths).read();
    match publish::evaluate(&mut store::Store::default(), &reading) {
        Ok((_, problems)) | Err(problems) => problems,
    }
}

/// The control plane part: the file source feeding the publisher.
#[derive(Debug)]
pub struct Control {
    config: Config,
    inner: Arc<Mutex<(FileSource, Publisher)>>,
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
        let mut source = FileSource::new(config.paths.clone());
        let mut publisher = Publisher::new(bus, status.clone(), registry);
        let reading = source.read();
        if publisher.reload(&reading) == Outcome::Rejected {
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
            inner: Arc::new(Mutex::new((source, publisher))),
        })
    }

    /// Re-reads the sources now and publishes what changed.
    pub async fn reload(&self) -> Outcome {
        let inner = self.inner.clone();
        let work = move || {
            let mut guard = inner.lock().unwrap_or_else(PoisonError::into_inner);
            let (source, publisher) = &mut *guard;
            let reading = source.read();
            publisher.reload(&reading)
        };
        tokio::task::spawn_blocking(work)
            .await
            .unwrap_or(Outcome::Rejected)
    }

    /// Watches the paths and reloads on every change until shutdown.
    pub async fn run(self, mut shutdown: Shutdown) -> Result<(), Error> {
        let (_watcher, mut events) = {
            let guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            guard.0.watch()?
        };
        loop {
            tokio::select! {
                () = shutdown.wait() => return Ok(()),
                event = events.recv() => if event.is_none() { return Ok(()) },
            }
            if !source::settle(&mut events, self.config.debounce).await {
                return Ok(());
            }
            self.reload().await;
        }
    }
}
