//! The local cluster of `ferry up`: a small orchestrator core that runs a cluster's workloads on
//! one machine.
//!
//! It plays the parts of Kubernetes that `ferry up` has no cluster for: the API server's
//! allocators (cluster IPs, node ports, pod IPs), the Deployment, ReplicaSet and
//! EndpointSlice controllers (pure reconcilers: observe, diff, act), the kubelet, which runs
//! each Pod's containers as host processes, probes them and reports their status, the pod
//! network ([`network`]: Pods on loopback addresses, or each in a network namespace of its own
//! on a node bridge), and the local API the `ferry get|logs|exec|scale|rollout` commands call
//! ([`api`]).
//!
//! The manifest files and the Kubernetes API's writes change one store of declared objects
//! ([`declared`]); the files are applied to it as `kubectl apply -f` would be. What it runs is handed
//! to the control plane through its [`Feed`], an [`ferry_objects::source::Source`] like any
//! other: this crate does not know the control plane, and the control plane does not know it.

pub mod api;
pub mod apiserver;
pub mod cluster;
pub mod declared;
pub mod deployment;
pub mod endpointslice;
pub mod events;
mod feed;
pub mod inject;
pub mod ipam;
pub mod kubelet;
pub mod network;
pub mod replicaset;
pub mod service_env;
pub mod serviceaccount;

use std::sync::Arc;
use std::time::Duration;

use declared::Declared;
use ferry_model::Problem;
use ferry_objects::files::{Reading, WatchedFiles};
use ferry_objects::source::{Cause, Update};
use ferry_runtime::Shutdown;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};

pub use api::LocalApi;
pub use cluster::{ApiError, LocalCluster};
pub use feed::Feed;

use kubelet::Kubelet;

/// Everything the local cluster takes.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub cluster: cluster::Config,
    pub kubelet: kubelet::Config,
}

/// Asked before a configuration change acts: whether its consumers would take it. A change
/// refused here changes nothing (no Pod starts or stops) and the last good one keeps running,
/// as a validating admission webhook (ingress-nginx's) refuses a change at the API server.
#[derive(Clone)]
pub struct Admission(Arc<dyn Fn(&Reading) -> bool + Send + Sync>);

impl Admission {
    pub fn new(check: impl Fn(&Reading) -> bool + Send + Sync + 'static) -> Admission {
        Admission(Arc::new(check))
    }

    fn admits(&self, reading: &Reading) -> bool {
        !reading.problems.iter().any(Problem::is_error) && (self.0)(reading)
    }
}

impl Default for Admission {
    /// Admits every change that read without errors.
    fn default() -> Admission {
        Admission::new(|_| true)
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admission")
    }
}

/// How long Pods get to stop when ferry shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Quiet time after a Pod's status changed before reconciling, so a burst of changes (500
/// Pods starting) becomes a few updates.
const POD_DEBOUNCE: Duration = Duration::from_millis(20);

/// The live cluster and the declared objects it runs (the files' last good reading and the
/// API's writes).
#[derive(Debug)]
struct State {
    cluster: LocalCluster,
    declared: Declared,
    /// What the Kubernetes API serves: each round's live reading.
    store: Arc<apiserver::Store>,
}

#[derive(Debug)]
struct Shared {
    /// Held for a whole round (reconcile, hand over, wait for the answer), so rounds never
    /// interleave and updates reach the consumer in the order they were made.
    state: Arc<Mutex<State>>,
    kubelet: Kubelet,
    admission: Admission,
    feed: feed::Sender,
    /// Wakes the run loop after an API call acted, so it sees the Pods now due to stop.
    acted: Notify,
    /// The same store as the state's, read by the API server without waiting for a round.
    store: Arc<apiserver::Store>,
}

/// What the local API acts through: the live cluster, shared with the run loop.
#[derive(Debug, Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

/// The local cluster part: built with its first round done, then [`Orchestrator::run`].
#[derive(Debug)]
pub struct Orchestrator {
    handle: Handle,
    files: WatchedFiles,
    /// The kubelet's changes, subscribed before the first Pod is run: a status change made
    /// before [`Orchestrator::run`] starts (a Pod without probes is Ready as soon as its
    /// process runs) is still seen, as a Kubernetes watch started from the list's
    /// resourceVersion.
    pod_changes: tokio::sync::watch::Receiver<u64>,
}

impl Orchestrator {
    /// Applies the files' first reading (when admitted) and hands the result to the feed as
    /// its list. `files` must be watched from before that reading, so no edit is lost.
    pub fn build(
        config: Config,
        mut files: WatchedFiles,
        admission: Admission,
    ) -> (Orchestrator, Feed) {
        let kubelet = Kubelet::new(kubelet::Config {
            node_name: config.cluster.node_name.clone(),
            ..config.kubelet.clone()
        });
        let pod_changes = kubelet.changes();
        let store = Arc::new(apiserver::Store::new());
        kubelet.record_events_to(events::Recorder::new(
            Some(store.clone()),
            &config.cluster.node_name,
        ));
        let mut state = State {
            cluster: LocalCluster::new(config.cluster, kubelet.clone()),
            declared: Declared::default(),
            store: store.clone(),
        };
        let (sender, feed) = feed::channel();
        // The first round is not answered before the consumer is built from it; there is
        // nothing older to keep, and nothing yet terminating to signal.
        let (update, admitted) = apply(&mut state, &admission, files.read());
        if let Some(declared) = admitted {
            state.declared = declared;
        }
        sender.hand_over(update);
        let shared = Arc::new(Shared {
            state: Arc::new(Mutex::new(state)),
            kubelet,
            admission,
            feed: sender,
            acted: Notify::new(),
            store,
        });
        let orchestrator = Orchestrator {
            handle: Handle { shared },
            files,
            pod_changes,
        };
        (orchestrator, feed)
    }

    /// Stops every Pod (within its grace period) without running: for a `ferry up` whose
    /// other parts failed to start after this was built.
    pub async fn stop(self) {
        self.handle.shared.kubelet.shutdown(SHUTDOWN_GRACE).await;
    }

    /// What the local API acts through.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Applies every change of the files, reconciles on every change of a Pod and when a
    /// terminating Pod is due to stop, until shutdown; then stops every Pod.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let mut pods = Some(self.pod_changes.clone());
        enum Wake {
            Stop,
            Files,
            Pods,
            KubeletGone,
            StopDue,
            Acted,
        }
        loop {
            // A Pod due to stop, or a rollout due to run past its progress deadline.
            let next_stop = self
                .handle
                .read(|c| {
                    c.next_stop()
                        .into_iter()
                        .chain(c.next_progress_deadline())
                        .min()
                })
                .await;
            let wake = {
                let pod_changed = async {
                    match pods.as_mut() {
                        Some(rx) => rx.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = shutdown.wait() => Wake::Stop,
                    event = self.files.event() => if event { Wake::Files } else { Wake::Stop },
                    alive = pod_changed => if alive { Wake::Pods } else { Wake::KubeletGone },
                    () = async {
                        match next_stop {
                            Some(at) => tokio::time::sleep_until(at.into()).await,
                            None => std::future::pending().await,
                        }
                    } => Wake::StopDue,
                    () = self.handle.shared.acted.notified() => Wake::Acted,
                }
            };
            match wake {
                Wake::Stop => break,
                Wake::KubeletGone => pods = None,
                Wake::Files => {
                    if !self.files.settled().await {
                        break;
                    }
                    let reading = self.files.read();
                    self.handle.reload(reading).await;
                }
                Wake::Pods => {
                    tokio::time::sleep(POD_DEBOUNCE).await;
                    self.handle.refresh().await;
                }
                Wake::StopDue => self.handle.refresh().await,
                // The loop comes round and looks at what is due now.
                Wake::Acted => {}
            }
        }
        self.handle.shared.kubelet.shutdown(SHUTDOWN_GRACE).await;
    }
}

/// A change of the files: applied to the declared objects as `kubectl apply -f`, checked as
/// the API server would (allocations included) and asked of the admission; when admitted,
/// reconciled. Returns the update to hand over and, when it acted, the declared objects that
/// become the last good ones once the update is published.
fn apply(state: &mut State, admission: &Admission, files: Reading) -> (Update, Option<Declared>) {
    let declared = state.declared.with_files(&files);
    let reading = declared_reading(state, &declared);
    let admitted = state.cluster.admit(&reading);
    if !admission.admits(&admitted) {
        // Handed over as it is, so the consumer reports every problem; nothing acted.
        let update = Update {
            reading: admitted,
            cause: Cause::Applied,
        };
        return (update, None);
    }
    let mut live = state.cluster.reconcile(&reading);
    sync_services(state, &mut live);
    state.store.record(&live);
    let update = Update {
        reading: live,
        cause: Cause::Applied,
    };
    (update, Some(declared))
}

impl Handle {
    /// One round over the state: `work` runs off the async threads (reconciling starts
    /// processes) and makes an update, which is handed over; once it is answered, `then` runs
    /// with the answer, still under the same lock.
    async fn round<T: Send + 'static, U>(
        &self,
        work: impl FnOnce(&mut State) -> (Update, T) + Send + 'static,
        then: impl FnOnce(&mut State, bool, T) -> U,
    ) -> U {
        let guard = self.shared.state.clone().lock_owned().await;
        let (mut guard, (update, carried)) = blocking(guard, work).await;
        let published = self.shared.feed.send(update).await;
        then(&mut guard, published, carried)
    }

    /// Applies a configuration change. A refused one acts on nothing.
    async fn reload(&self, reading: Reading) {
        let admission = self.shared.admission.clone();
        self.round(
            move |state| apply(state, &admission, reading),
            |state, published, admitted| {
                if let (true, Some(declared)) = (published, admitted) {
                    state.declared = declared;
                    state.cluster.stop_terminating();
                }
            },
        )
        .await;
    }

    /// Reconciles again (a Pod changed, a Pod is due to stop) and hands over what runs.
    async fn refresh(&self) {
        self.round(|state| (refreshed(state), ()), stop_if_published)
            .await;
    }

    /// Acts on the live cluster (an API call), then reconciles and hands over what runs.
    pub async fn act<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut LocalCluster) -> T + Send + 'static,
    ) -> T {
        // On a task of its own: a caller that goes away (a client hanging up on the local API)
        // cannot cut a round short between acting and signalling the Pods it made terminate.
        let handle = self.clone();
        let done = tokio::spawn(async move {
            let out = handle
                .round(
                    move |state| {
                        let out = f(&mut state.cluster);
                        (refreshed(state), out)
                    },
                    stop_if_published,
                )
                .await;
            handle.shared.acted.notify_one();
            out
        })
        .await;
        match done {
            Ok(out) => out,
            Err(e) => std::panic::resume_unwind(
                e.try_into_panic()
                    .unwrap_or_else(|_| Box::new("the local cluster's round was cancelled")),
            ),
        }
    }

    /// Changes the declared objects (an API write) in one round: `change` edits a copy of them
    /// (and may act on controller-owned objects of the live cluster, which need no admission);
    /// a changed copy is checked as a file change is (allocations, admission) and, when
    /// admitted, becomes the declared objects, reconciled and handed over. A refused change
    /// changes nothing and hands nothing over.
    pub async fn declare<T, E>(
        &self,
        change: impl FnOnce(&mut Declared, &mut LocalCluster, &apiserver::Store) -> Result<T, E>
        + Send
        + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Refused> + Send + 'static,
    {
        // On a task of its own, as `act`: a client hanging up cannot cut the round short.
        let handle = self.clone();
        let done = tokio::spawn(async move {
            let admission = handle.shared.admission.clone();
            let guard = handle.shared.state.clone().lock_owned().await;
            let (mut guard, out) = blocking(guard, move |state| {
                let mut next = state.declared.clone();
                let store = state.store.clone();
                let out = change(&mut next, &mut state.cluster, &store)?;
                let changed = next != state.declared;
                if changed {
                    let admitted = state.cluster.admit(&declared_reading(state, &next));
                    if !admission.admits(&admitted) {
                        let errors = admitted.problems.into_iter().filter(Problem::is_error);
                        return Err(E::from(Refused(errors.collect())));
                    }
                    state.declared = next;
                }
                let mut update = refreshed(state);
                if changed {
                    // A configuration change, as a file change is.
                    update.cause = Cause::Applied;
                }
                Ok((update, out))
            })
            .await;
            let (update, out) = out?;
            let published = handle.shared.feed.send(update).await;
            let out = stop_if_published(&mut guard, published, out);
            drop(guard);
            handle.shared.acted.notify_one();
            Ok(out)
        })
        .await;
        match done {
            Ok(out) => out,
            Err(e) => std::panic::resume_unwind(
                e.try_into_panic()
                    .unwrap_or_else(|_| Box::new("the local cluster's round was cancelled")),
            ),
        }
    }

    /// `ferry scale deployment/NAME --replicas N`: the declared Deployment's replicas, kept
    /// until its manifest changes them again.
    pub async fn scale(
        &self,
        namespace: Option<String>,
        name: String,
        replicas: i32,
    ) -> Result<(), ApiError> {
        if replicas < 0 {
            return Err(ApiError::Invalid(format!(
                "--replicas {replicas}: must be greater than or equal to 0"
            )));
        }
        self.declare(move |declared, cluster, _| {
            let ns = cluster.find_namespace("deployment", namespace.as_deref(), &name)?;
            declared::change_deployment(declared, &ns, &name, |d| {
                d.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
            })
        })
        .await
    }

    /// `ferry rollout undo deployment/NAME [--to-revision N]`: the template of that revision
    /// (by default the one before the current) becomes the declared Deployment's again.
    pub async fn undo(
        &self,
        namespace: Option<String>,
        name: String,
        to_revision: Option<u64>,
    ) -> Result<u64, ApiError> {
        self.declare(move |declared, cluster, _| {
            let ns = cluster.find_namespace("deployment", namespace.as_deref(), &name)?;
            let (revision, template) = cluster.rollback_template(&ns, &name, to_revision)?;
            declared::change_deployment(declared, &ns, &name, |d| {
                d.spec.get_or_insert_with(Default::default).template = template;
            })?;
            Ok(revision)
        })
        .await
    }

    /// Reads the live cluster without acting.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&LocalCluster) -> T + Send + 'static,
    ) -> T {
        let guard = self.shared.state.clone().lock_owned().await;
        blocking(guard, move |state| f(&state.cluster)).await.1
    }

    /// The objects the Kubernetes API serves, as of the last round.
    pub fn store(&self) -> Arc<apiserver::Store> {
        self.shared.store.clone()
    }

    /// The local cluster's kubelet.
    pub fn kubelet(&self) -> &Kubelet {
        &self.shared.kubelet
    }
}

/// A change of the declared objects refused: the errors found (allocations, the admission's
/// own); empty when the admission refused without naming one.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused(pub Vec<Problem>);

impl From<Refused> for ApiError {
    fn from(r: Refused) -> ApiError {
        let messages: Vec<String> = r.0.iter().map(|p| p.message.clone()).collect();
        ApiError::Invalid(if messages.is_empty() {
            "refused by the control plane's admission".to_owned()
        } else {
            messages.join("; ")
        })
    }
}

/// The live reading after reconciling the declared objects again; an object deleted in the
/// foreground whose dependents are gone goes, and the cluster is reconciled once more.
fn refreshed(state: &mut State) -> Update {
    let mut reading = state
        .cluster
        .reconcile(&declared_reading(state, &state.declared));
    let cluster = &state.cluster;
    let finished = state.declared.finish_foreground(|k| {
        cluster.has_dependents(
            k.kind.as_str(),
            &cluster::NamespacedName::new(k.namespace.clone(), k.name.clone()),
        )
    });
    if finished {
        reading = state
            .cluster
            .reconcile(&declared_reading(state, &state.declared));
    }
    sync_services(state, &mut reading);
    state.store.record(&reading);
    Update {
        reading,
        cause: Cause::Observed,
    }
}

/// In netns mode, the node's Services table follows the round's Services and EndpointSlices
/// (before a terminating Pod is signalled: it is out of the table first, unless it is the
/// fallback of a port left without ready endpoints).
fn sync_services(state: &State, live: &mut Reading) {
    if let Some(node) = state.cluster.kubelet().network() {
        live.problems.extend(node.sync_services(&live.manifests));
    }
}

/// What the cluster runs of the declared objects: their reading, with the cluster DNS
/// Service in netns mode and each Namespace's `default` ServiceAccount.
fn declared_reading(state: &State, declared: &Declared) -> Reading {
    let mut reading = with_cluster_dns(state, declared.reading());
    // The ServiceAccount controller: a `default` in every Namespace, made again when gone.
    let defaults = serviceaccount::defaults(&reading.manifests);
    reading.manifests.extend(defaults);
    reading
}

/// In netns mode, the manifests with the kube-system/kube-dns Service Pods resolve through,
/// when they declare none, as a cluster's DNS add-on makes it.
fn with_cluster_dns(state: &State, mut reading: Reading) -> Reading {
    let Some(dns) = state
        .cluster
        .kubelet()
        .network()
        .and_then(|node| node.cluster_dns())
    else {
        return reading;
    };
    let declared = reading.manifests.iter().any(|m| {
        matches!(m.object, ferry_objects::object::Object::Service(_))
            && m.namespace() == "kube-system"
            && m.name() == "kube-dns"
    });
    if !declared {
        reading
            .manifests
            .push(Arc::new(ferry_objects::object::Manifest {
                origin: ferry_objects::object::Origin {
                    file: cluster::ORIGIN.into(),
                    doc: None,
                },
                object: ferry_objects::object::Object::Service(Box::new(
                    network::kube_dns_service(dns.ip),
                )),
            }));
    }
    reading
}

/// A terminating Pod is signalled only once an update without its endpoints is published.
fn stop_if_published<T>(state: &mut State, published: bool, out: T) -> T {
    if published {
        state.cluster.stop_terminating();
    }
    out
}

/// Runs `work` on the state on a blocking thread, keeping the lock; a panic in it is resumed
/// here.
async fn blocking<R: Send + 'static>(
    mut guard: OwnedMutexGuard<State>,
    work: impl FnOnce(&mut State) -> R + Send + 'static,
) -> (OwnedMutexGuard<State>, R) {
    let done = tokio::task::spawn_blocking(move || {
        let out = work(&mut guard);
        (guard, out)
    })
    .await;
    match done {
        Ok(done) => done,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
