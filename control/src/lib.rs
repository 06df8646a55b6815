//! ferry's control plane: learns a cluster's objects from a [`Source`], translates them and
//! publishes Snapshots.
//!
//! The flow of one change: a source (manifest files, the local cluster of `ferry up`, a
//! Kubernetes API server) hands over an [`Update`], every object it holds (a relist);
//! [`publish::evaluate`] builds the store of it ([`ferry_objects::store::Store`]),
//! [`endpoints`] reads what stands behind each Service from its EndpointSlices and
//! [`translate::translate`] turns the store into a [`ferry_model::Snapshot`], which is validated,
//! numbered and published on the [`ferry_runtime::SnapshotBus`]. A change with any error is
//! rejected whole and the last good snapshot keeps serving; the source is told which
//! ([`Source::acknowledge`]).
//!
//! Which Ingresses are ferry's is [`translate`]'s first question (its `class` module).
//!
//! The control plane knows no source in particular: `ferry up` wires the local cluster in
//! through the [`Source`] interface, and a Kubernetes API server the same way ([`kubernetes`],
//! the one source kept here, behind the `kubernetes` feature, since it is kube-rs' client).

pub mod endpoints;
pub mod identity;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod publish;
pub mod push;
pub mod translate;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use ferry_model::Problem;
use ferry_objects::files::{FileSource, Reading};
use ferry_objects::source::{Cause, Source, Update};
use ferry_runtime::{Shutdown, SnapshotBus, StatusBoard};
use prometheus_client::registry::Registry;

use crate::publish::{Publisher, ReloadOutcome};

/// Errors of the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration has errors; one line per problem.
    #[error("{} problem(s) in the configuration:\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    #[error("the source ended before it listed its objects")]
    SourceEnded,
    #[cfg(feature = "kubernetes")]
    #[error(transparent)]
    Kubernetes(#[from] kubernetes::Error),
}

/// Reads the paths once and reports every problem: what `ferry check` runs.
pub fn check(paths: Vec<PathBuf>) -> Vec<Problem> {
    let reading = FileSource::new(paths).read();
    match publish::evaluate(&mut ferry_objects::store::Store::default(), &reading) {
        Ok((_, problems)) | Err(problems) => problems,
    }
}

/// Whether the control plane would publish these objects: no error reading them and none
/// translating them. The local cluster asks before it acts on a configuration change (as
/// ingress-nginx's validating admission webhook answers the API server).
pub fn admits(reading: &Reading) -> bool {
    !reading.problems.iter().any(Problem::is_error)
        && publish::evaluate(&mut ferry_objects::store::Store::default(), reading).is_ok()
}

/// The control plane part: a source feeding the publisher.
#[derive(Debug)]
pub struct Control<S> {
    source: S,
    publisher: Arc<Mutex<Publisher>>,
}

impl<S: Source> Control<S> {
    /// Takes the source's list and publishes the first snapshot; an invalid configuration at
    /// start is an error, since there is nothing older to serve.
    pub async fn build(
        mut source: S,
        bus: SnapshotBus,
        status: StatusBoard,
        registry: &mut Registry,
    ) -> Result<Control<S>, Error> {
        let publisher = Arc::new(Mutex::new(Publisher::new(bus, status.clone(), registry)));
        let first = source.next().await.ok_or(Error::SourceEnded)?;
        let outcome = publish(&publisher, first).await;
        source.acknowledge(outcome != ReloadOutcome::Rejected);
        if outcome == ReloadOutcome::Rejected {
            let problems = status
                .status()
                .last_rejected
                .map(|r| r.problems)
                .unwrap_or_default();
            return Err(Error::Invalid(
                problems.into_iter().filter(Problem::is_error).collect(),
            ));
        }
        Ok(Control { source, publisher })
    }

    /// The Pods of the newest store published, kept current: what the identity service
    /// checks per-Pod tokens against.
    pub fn pods(&self) -> identity::pods::PodDirectory {
        self.publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pods()
    }

    /// Publishes each update of the source until shutdown or the source's end.
    pub async fn run(mut self, mut shutdown: Shutdown) -> Result<(), Error> {
        loop {
            let update = tokio::select! {
                () = shutdown.wait() => break,
                update = self.source.next() => match update {
                    Some(update) => update,
                    None => break,
                },
            };
            let outcome = publish(&self.publisher, update).await;
            self.source.acknowledge(outcome != ReloadOutcome::Rejected);
        }
        Ok(())
    }
}

/// Translates and publishes one update, off the async threads (a large cluster takes a while).
async fn publish(publisher: &Arc<Mutex<Publisher>>, update: Update) -> ReloadOutcome {
    let publisher = publisher.clone();
    tokio::task::spawn_blocking(move || {
        let mut publisher = publisher.lock().unwrap_or_else(PoisonError::into_inner);
        match update.cause {
            Cause::Applied => publisher.reload(&update.reading),
            Cause::Observed => publisher.refresh(&update.reading),
        }
    })
    .await
    .unwrap_or(ReloadOutcome::Rejected)
}
