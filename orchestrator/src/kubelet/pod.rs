//! One pod the kubelet runs: what it was given (spec, IP), what it knows (the record behind
//! the status), the stop signal its containers obey, their log rings, and the task that runs
//! the containers and forgets the pod once it was stopped and every process has exited.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::core::v1::PodSpec;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Inner;
use super::backoff::{Backoff, go_duration};
use super::container;
use super::logs::LogWriter;
use super::plan::{Plan, Waiting};
use super::status::{PodRecord, RunState, now};
use crate::network::Sandbox;

/// A pod known to the kubelet.
#[derive(Debug)]
pub(crate) struct PodEntry {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) spec: PodSpec,
    pub(crate) ip: IpAddr,
    record: Mutex<PodRecord>,
    /// `Some(deadline)` once the pod is stopping: processes get SIGTERM at once and SIGKILL at
    /// the deadline (a later stop may only bring it forward).
    pub(crate) stop: watch::Sender<Option<Instant>>,
    /// The log ring of each container, by index in the spec.
    pub(crate) logs: Vec<LogWriter>,
    /// Set once the pod is forgotten.
    pub(crate) gone: watch::Sender<bool>,
    /// The pod's own network (netns mode), made before its containers start and removed once
    /// they have all exited.
    pub(crate) sandbox: Option<Sandbox>,
    /// How each container runs (by index in the spec; `None` for one that cannot start), for
    /// `ferry exec`.
    pub(crate) plans: Vec<Option<Plan>>,
    /// The `kubectl.kubernetes.io/default-container` annotation: `ferry exec`'s container when
    /// none is named.
    pub(crate) default_container: Option<String>,
}

impl PodEntry {
    pub(crate) fn new(
        namespace: String,
        name: String,
        uid: String,
        spec: PodSpec,
        ip: IpAddr,
        log_limit: usize,
        sandbox: Option<Sandbox>,
    ) -> PodEntry {
        let record = PodRecord::new(&spec, now());
        let logs = spec
            .containers
            .iter()
            .map(|_| LogWriter::new(log_limit))
            .collect();
        PodEntry {
            namespace,
            name,
            uid,
            spec,
            ip,
            record: Mutex::new(record),
            stop: watch::Sender::new(None),
            logs,
            gone: watch::Sender::new(false),
            sandbox,
            plans: Vec::new(),
            default_container: None,
        }
    }

    /// The record, for reading.
    pub(crate) fn record(&self) -> MutexGuard<'_, PodRecord> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the record and tells the kubelet's watchers.
    pub(crate) fn update(&self, inner: &Inner, change: impl FnOnce(&mut PodRecord)) {
        {
            let mut record = self.record();
            change(&mut record);
            record.settle(now());
        }
        inner.changed();
    }

    /// Asks the containers to stop: SIGTERM now, SIGKILL at `deadline`.
    pub(crate) fn stop(&self, deadline: Instant) {
        self.stop.send_modify(|current| {
            *current = Some(current.map_or(deadline, |d| d.min(deadline)));
        });
    }

    /// `namespace/name(uid)`, for log lines.
    pub(crate) fn describe(&self) -> String {
        format!("{}/{}({})", self.namespace, self.name, self.uid)
    }
}

/// Makes the pod's network, trying again with the crash back-off while it fails; false when the
/// pod was stopped first.
async fn sandbox_up(inner: &Inner, pod: &PodEntry, sandbox: &Sandbox) -> bool {
    let mut backoff = Backoff::new(inner.config.backoff_base, inner.config.backoff_cap);
    let mut stop = pod.stop.subscribe();
    loop {
        if stop.borrow().is_some() {
            return false;
        }
        let why = match sandbox.setup().await {
            Ok(()) => return true,
            Err(why) => why,
        };
        let delay = backoff.next_delay();
        let message = format!(
            "failed to set up the pod's network (trying again in {}): {why}",
            go_duration(delay)
        );
        tracing::warn!(pod = %pod.describe(), "{message}");
        pod.update(inner, |r| {
            for c in &mut r.containers {
                c.state = RunState::Waiting {
                    reason: "ContainerCreating".to_owned(),
                    message: Some(message.clone()),
                };
            }
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(Option::is_some) => return false,
        }
    }
}

/// Runs the pod's containers; once they have all finished and the pod was stopped, forgets it.
pub(crate) async fn run(inner: Arc<Inner>, pod: Arc<PodEntry>, plans: Vec<Result<Plan, Waiting>>) {
    let mut containers = JoinSet::new();
    // The sandbox first, as a CRI runtime makes it before any container: without its network
    // no container starts; each waits saying why, and it is tried again with back-off until
    // the pod is stopped, as the kubelet retries a failed RunPodSandbox.
    let network_up = match &pod.sandbox {
        Some(sandbox) => sandbox_up(&inner, &pod, sandbox).await,
        None => true,
    };
    let plans = if network_up { plans } else { Vec::new() };
    for (index, plan) in plans.into_iter().enumerate() {
        containers.spawn(container::supervise(
            inner.clone(),
            pod.clone(),
            index,
            plan,
        ));
    }
    while let Some(done) = containers.join_next().await {
        if let Err(e) = done {
            tracing::error!(pod = %pod.describe(), error = %e, "a container's supervisor failed");
        }
    }
    // A pod whose containers completed stays known, with its status, until it is stopped.
    let mut stop = pod.stop.subscribe();
    let _ = stop.wait_for(Option::is_some).await;
    if let Some(sandbox) = &pod.sandbox {
        sandbox.teardown().await;
    }
    inner.forget(&pod);
    for log in &pod.logs {
        log.close();
    }
    pod.gone.send_replace(true);
    inner.changed();
}
