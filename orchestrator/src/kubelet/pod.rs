//! One pod the kubelet runs: what it was given (spec, IP), what it knows (the record behind
//! the status), the stop signal its containers obey, their log rings, and the task that runs
//! the containers in Kubernetes' order and forgets the pod once it was stopped and every
//! process has exited.
//!
//! The order (KEP-753's native sidecars included): the sandbox; then the init containers one
//! after another, a regular one run to completion, a native sidecar (`restartPolicy: Always`)
//! only until it has started (its startupProbe passed, or it runs when it has none); then the
//! app containers together. The app containers stop first; the sidecars after them, in reverse
//! order, each once the one started after it has exited — also when the app containers of a
//! Job-style Pod complete on their own, so the Pod completes.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::core::v1::{Container, PodSpec};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Inner;
use super::backoff::{Backoff, go_duration};
use super::container;
use super::logs::LogWriter;
use super::plan::{Plan, Waiting};
use super::status::{PodRecord, Role, RunState, now};
use crate::network::Sandbox;

/// A pod known to the kubelet.
#[derive(Debug)]
pub(crate) struct PodEntry {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) spec: PodSpec,
    /// The init containers then the app containers, with their roles: what every per-container
    /// index (records, logs, plans) counts.
    pub(crate) containers: Vec<(Container, Role)>,
    pub(crate) ip: IpAddr,
    record: Mutex<PodRecord>,
    /// `Some(deadline)` once the pod is stopping: processes get SIGTERM at once and SIGKILL at
    /// the deadline (a later stop may only bring it forward).
    pub(crate) stop: watch::Sender<Option<Instant>>,
    /// The log ring of each container, by index in `containers`.
    pub(crate) logs: Vec<LogWriter>,
    /// Set once the pod is forgotten.
    pub(crate) gone: watch::Sender<bool>,
    /// The pod's own network (netns mode), made before its containers start and removed once
    /// they have all exited.
    pub(crate) sandbox: Option<Sandbox>,
    /// How each container runs (by index in `containers`; `None` for one that cannot start),
    /// for `ferry exec`.
    pub(crate) plans: Vec<Option<Plan>>,
    /// The `kubectl.kubernetes.io/default-container` annotation: `ferry exec`'s container when
    /// none is named.
    pub(crate) default_container: Option<String>,
    /// The mesh token the kubelet wrote for the Pod's sidecar, removed with the Pod.
    pub(crate) token_file: Option<std::path::PathBuf>,
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
        let containers: Vec<(Container, Role)> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| (c.clone(), Role::of_init(c)))
            .chain(spec.containers.iter().map(|c| (c.clone(), Role::App)))
            .collect();
        let logs = containers
            .iter()
            .map(|_| LogWriter::new(log_limit))
            .collect();
        PodEntry {
            namespace,
            name,
            uid,
            spec,
            containers,
            ip,
            record: Mutex::new(record),
            stop: watch::Sender::new(None),
            logs,
            gone: watch::Sender::new(false),
            sandbox,
            plans: Vec::new(),
            default_container: None,
            token_file: None,
        }
    }

    /// Container `index` (init containers first).
    pub(crate) fn container(&self, index: usize) -> Option<&Container> {
        self.containers.get(index).map(|(c, _)| c)
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
    // The sandbox first, as a CRI runtime makes it before any container: without its network
    // no container starts; each waits saying why, and it is tried again with back-off until
    // the pod is stopped, as the kubelet retries a failed RunPodSandbox.
    let network_up = match &pod.sandbox {
        Some(sandbox) => sandbox_up(&inner, &pod, sandbox).await,
        None => true,
    };
    if network_up {
        run_containers(&inner, &pod, plans).await;
    }
    // A pod whose containers completed stays known, with its status, until it is stopped.
    let mut stop = pod.stop.subscribe();
    let _ = stop.wait_for(Option::is_some).await;
    if let Some(sandbox) = &pod.sandbox {
        sandbox.teardown().await;
    }
    if let Some(token) = &pod.token_file {
        // The file and the Pod's directory it is in.
        let _ = tokio::fs::remove_file(token).await;
        if let Some(dir) = token.parent() {
            let _ = tokio::fs::remove_dir(dir).await;
        }
    }
    inner.forget(&pod);
    for log in &pod.logs {
        log.close();
    }
    pod.gone.send_replace(true);
    inner.changed();
}

/// A native sidecar running: its supervisor and the stop signal it alone obeys.
struct Sidecar {
    stop: watch::Sender<Option<Instant>>,
    task: tokio::task::JoinHandle<()>,
}

/// The containers in order (see the module doc); returns once every one of them is done.
async fn run_containers(
    inner: &Arc<Inner>,
    pod: &Arc<PodEntry>,
    plans: Vec<Result<Plan, Waiting>>,
) {
    let mut sidecars: Vec<Sidecar> = Vec::new();
    let mut apps = JoinSet::new();
    let mut initialized = true;
    for (index, plan) in plans.into_iter().enumerate() {
        let role = pod.containers.get(index).map_or(Role::App, |(_, r)| *r);
        match role {
            Role::Init => {
                let supervisor = container::supervise(
                    inner.clone(),
                    pod.clone(),
                    index,
                    plan,
                    pod.stop.subscribe(),
                );
                supervisor.await;
                let completed = pod.record().containers.get(index).is_some_and(
                    |c| matches!(&c.state, RunState::Terminated(f) if f.exit_code == 0),
                );
                if !completed {
                    // Failed for good (restartPolicy Never), never startable, or stopped.
                    initialized = false;
                    break;
                }
            }
            Role::Sidecar => {
                let (stop, stop_rx) = watch::channel(None);
                let task = tokio::spawn(container::supervise(
                    inner.clone(),
                    pod.clone(),
                    index,
                    plan,
                    stop_rx,
                ));
                sidecars.push(Sidecar { stop, task });
                if !started(inner, pod, index).await {
                    initialized = false;
                    break;
                }
            }
            Role::App => {
                if index == pod.spec.init_containers.as_ref().map_or(0, Vec::len) {
                    pod.update(inner, |r| r.initialized = true);
                }
                apps.spawn(container::supervise(
                    inner.clone(),
                    pod.clone(),
                    index,
                    plan,
                    pod.stop.subscribe(),
                ));
            }
        }
    }
    if !initialized {
        tracing::debug!(pod = %pod.describe(), "not initialized: the app containers do not start");
    }
    while let Some(done) = apps.join_next().await {
        if let Err(e) = done {
            tracing::error!(pod = %pod.describe(), error = %e, "a container's supervisor failed");
        }
    }
    // The app containers are done (completed, or stopped with the pod): the sidecars go, the
    // last started first, within the pod's deadline, or the pod's grace period when the app
    // containers completed on their own.
    let deadline =
        (*pod.stop.borrow()).unwrap_or_else(|| super::deadline(container::grace(&pod.spec)));
    let mut pod_stop = pod.stop.subscribe();
    for mut sidecar in sidecars.into_iter().rev() {
        sidecar.stop.send_replace(Some(deadline));
        loop {
            tokio::select! {
                done = &mut sidecar.task => {
                    if let Err(e) = done {
                        tracing::error!(pod = %pod.describe(), error = %e, "a sidecar's supervisor failed");
                    }
                    break;
                }
                // A later stop of the pod may bring the deadline forward, never back.
                Ok(()) = pod_stop.changed() => {
                    if let Some(sooner) = *pod_stop.borrow_and_update() {
                        sidecar.stop.send_modify(|d| *d = Some(d.map_or(sooner, |d| d.min(sooner))));
                    }
                }
            }
        }
    }
}

/// Waits until container `index` has started (its startupProbe passed, or it runs when it has
/// none); false when the pod is stopped first or the container cannot start.
async fn started(inner: &Inner, pod: &PodEntry, index: usize) -> bool {
    let mut changes = inner.changes.subscribe();
    let mut stop = pod.stop.subscribe();
    let state = |pod: &PodEntry| {
        let record = pod.record();
        let c = record.containers.get(index)?;
        if c.started {
            return Some(true);
        }
        // A container whose plan failed never starts: nothing in a Pod's spec changes.
        let hopeless = matches!(&c.state, RunState::Waiting { reason, .. } if reason == "ErrImageNeverPull" || reason == "CreateContainerConfigError");
        hopeless.then_some(false)
    };
    tokio::select! {
        started = changes.wait_for(|_| state(pod).is_some()) => started.is_ok() && state(pod) == Some(true),
        _ = stop.wait_for(Option::is_some) => false,
    }
}
