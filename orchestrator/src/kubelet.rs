//! The kubelet of ferry's local runtime: runs each Pod's containers as host processes, probes
//! them, restarts them as their restartPolicy says, keeps their logs, reports Kubernetes-shaped
//! [`PodStatus`] and stops them.
//!
//! Whoever decides which Pods should run (the local runtime's loop) calls [`Kubelet::run`] and
//! [`Kubelet::stop`], watches [`Kubelet::changes`] and reads [`Kubelet::status`]. Each pod is one
//! task with one supervisor task per container (and one per probe); nothing blocks the runtime
//! and nothing polls: processes are awaited, probes tick on tokio timers.
//!
//! There are no images: a container runs its `command` on the host (the parent's environment
//! is not inherited, except `PATH` and `HOME` so commands resolve), and the image `ferry/echo`
//! without a command runs ferry's built-in echo app. Anything else waits with
//! `ErrImageNeverPull`, as a Kubernetes node told never to pull would.
//!
//! In netns mode (a [`crate::network::Node`] in its config) each Pod but `hostNetwork` ones
//! gets a network namespace of its own before its containers start ([`crate::network`]'s
//! sandbox), removed once they have all exited; containers and exec probes run in it, with
//! the Pod's `/etc/resolv.conf` for its `dnsPolicy` (`ip netns exec` bind-mounts it).
//!
//! A meshed Pod (one with the `ferry-sidecar` native sidecar, [`crate::inject`]) gets, in
//! netns mode with a mesh configured, its interception table in its namespace before any
//! container starts, and its sidecar's token written 0600 under the mesh's run directory,
//! removed with the Pod.
//!
//! It may touch: processes it started (and their process groups and cgroups), its own cgroup
//! subtree, the pod IPs' sockets for probes, its Pods' network namespaces and veths. It knows
//! nothing of Deployments, Services or the snapshot.

mod backoff;
mod cgroup;
mod container;
mod env;
mod logs;
mod mesh;
mod plan;
mod pod;
mod probe;
mod process;
mod status;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use rustls::ClientConfig;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::Instant;

pub use logs::{Logs, Run};

/// The longest grace period honoured: `terminationGracePeriodSeconds` has no upper bound, and a
/// deadline past what a clock can hold must not panic.
pub const MAX_GRACE: Duration = Duration::from_secs(365 * 24 * 3600);

/// `grace` from now, at most [`MAX_GRACE`].
pub(crate) fn deadline(grace: Duration) -> Instant {
    Instant::now() + grace.min(MAX_GRACE)
}
pub use plan::echo_argv;

use env::EnvSource;
use pod::PodEntry;
use status::RunState;

/// How the kubelet runs pods.
#[derive(Clone, Debug)]
pub struct Config {
    /// The node's name: `spec.nodeName` for `fieldRef`s.
    pub node_name: String,
    /// `status.hostIP`.
    pub host_ip: IpAddr,
    /// The `ferry` binary: image `ferry/echo` runs
    /// `<echo_program> echo --listen <POD_IP>:<port> --name <container name>`.
    pub echo_program: PathBuf,
    /// The size of each container's log ring.
    pub log_limit_bytes: usize,
    /// The first back-off of a crashing container (after one immediate restart); it doubles.
    pub backoff_base: Duration,
    /// The longest back-off.
    pub backoff_cap: Duration,
    /// A container that ran this long before it ended restarts without back-off again.
    pub backoff_reset: Duration,
    /// The node's pod network in netns mode: each Pod (but `hostNetwork` ones) gets a network
    /// namespace on its bridge, and its containers and exec probes run in it. `None`: Pods
    /// share the host's network (loopback mode).
    pub network: Option<Arc<crate::network::Node>>,
    /// The service mesh: what Pods asking for a sidecar get injected, and the tokens the
    /// kubelet hands their sidecars. Used only with `network` (the interception lives in
    /// each Pod's own namespace).
    pub mesh: Option<crate::inject::Mesh>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_name: "ferry".to_owned(),
            host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            echo_program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ferry")),
            log_limit_bytes: 256 * 1024,
            backoff_base: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(300),
            backoff_reset: Duration::from_secs(600),
            network: None,
            mesh: None,
        }
    }
}

/// Why [`Kubelet::logs`] or [`Kubelet::exec`] cannot use the container asked for.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContainerError {
    #[error("pod {namespace}/{name} not found")]
    PodNotFound { namespace: String, name: String },
    #[error("container {container} is not valid for pod {name}; choose one of: [{}]", .choices.join(" "))]
    ContainerNotFound {
        name: String,
        container: String,
        choices: Vec<String>,
    },
    #[error("a container name must be specified for pod {name}, choose one of: [{}]", .choices.join(" "))]
    ContainerRequired { name: String, choices: Vec<String> },
    #[error("container {container} of pod {name} is not running")]
    NotRunning { name: String, container: String },
}

/// Names the container `kubectl exec` (and `ferry exec`) use when none is given.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// Which container a request that names none means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unnamed {
    /// The only one; with more, the request must name one (`kubectl logs`).
    OnlyOne,
    /// The default container's (its annotation), else the first (`kubectl exec`).
    Default,
}

/// How to run a command in a running container, as `kubectl exec` would: in its Pod's network
/// namespace (behind `enter`) with its environment and working directory. Run by `ferry exec`
/// on the node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecPlan {
    pub container: String,
    /// The Pod's containers, when `container` was chosen for the caller (kubectl's "Defaulted
    /// container").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub defaulted_from: Vec<String>,
    /// The argv prefix that enters the Pod's network namespace; empty in loopback mode.
    pub enter: Vec<String>,
    pub env: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// The kubelet. Cheap to clone; every clone is the same kubelet. Needs a tokio runtime.
#[derive(Clone, Debug)]
pub struct Kubelet {
    inner: Arc<Inner>,
}

/// What every pod's tasks share.
#[derive(Debug)]
struct Inner {
    config: Config,
    pods: Mutex<HashMap<(String, String), Arc<PodEntry>>>,
    changes: watch::Sender<u64>,
    /// The client configuration of HTTPS probes.
    tls: Option<Arc<ClientConfig>>,
    /// What passes from ferry's environment into every container's.
    host_env: Vec<(String, String)>,
    /// The runtime pods' tasks run on (the one `new` was called on, if any).
    runtime: Option<Handle>,
    shut_down: AtomicBool,
    /// The kubelet's cgroup subtree, where each container run gets a cgroup; `None` where
    /// cgroups cannot be used (then a container is held by its process group only).
    cgroups: Option<cgroup::Root>,
    /// Where its Events go ([`Kubelet::record_events_to`]).
    events: std::sync::OnceLock<crate::events::Recorder>,
}

impl Inner {
    fn pods(&self) -> MutexGuard<'_, HashMap<(String, String), Arc<PodEntry>>> {
        self.pods.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodEntry>> {
        self.pods()
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Records an Event about a Pod (one of its containers when `container` is given), as
    /// the kubelet reports it.
    fn event(
        &self,
        pod: &PodEntry,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        let Some(recorder) = self.events.get() else {
            return;
        };
        let mut involved = crate::events::Involved::pod(&pod.namespace, &pod.name, &pod.uid);
        if let Some(c) = container {
            involved = involved.container(c);
        }
        let kubelet = crate::events::source::KUBELET;
        if warning {
            recorder.warning(involved, kubelet, reason, message);
        } else {
            recorder.normal(involved, kubelet, reason, message);
        }
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Removes the pod, if this very one is still known under its name.
    fn forget(&self, pod: &Arc<PodEntry>) {
        let mut pods = self.pods();
        let key = (pod.namespace.clone(), pod.name.clone());
        if pods.get(&key).is_some_and(|known| Arc::ptr_eq(known, pod)) {
            pods.remove(&key);
        }
    }
}

impl Kubelet {
    pub fn new(config: Config) -> Kubelet {
        let tls = probe::client_config()
            .inspect_err(|e| tracing::error!(error = %e, "no TLS client for HTTPS probes"))
            .ok();
        let host_env = ["PATH", "HOME"]
            .into_iter()
            .filter_map(|k| Some((k.to_owned(), std::env::var(k).ok()?)))
            .collect();
        let cgroups = cgroup::Root::create()
            .inspect(|root| tracing::debug!(cgroup = %root.path().display(), "each container runs in a cgroup of its own"))
            .inspect_err(|why| tracing::warn!("containers run without cgroups ({why}): a process that leaves its container's process group (setsid) outlives the Pod"))
            .ok();
        Kubelet {
            inner: Arc::new(Inner {
                config,
                pods: Mutex::new(HashMap::new()),
                changes: watch::Sender::new(0),
                tls,
                host_env,
                runtime: Handle::try_current().ok(),
                shut_down: AtomicBool::new(false),
                cgroups,
                events: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Records the kubelet's Events (and the scheduling of the Pods it is given) to
    /// `recorder`; the first recorder set stays.
    pub fn record_events_to(&self, recorder: crate::events::Recorder) {
        let _ = self.inner.events.set(recorder);
    }

    /// The recorder its Events go to, for the controllers of the same cluster.
    pub fn events(&self) -> Option<&crate::events::Recorder> {
        self.inner.events.get()
    }

    /// Runs the Pod: idempotent for the same namespace, name and uid. A different uid under a
    /// known name is a new Pod that must wait until the old one was stopped and forgotten; it
    /// is ignored until then (call again after [`Kubelet::changes`] fires). `ip` is the pod's
    /// IP (`POD_IP`); `service_env` the Kubernetes service variables, which the container's own
    /// `env` overrides.
    pub fn run(&self, pod: &Pod, ip: IpAddr, service_env: Vec<(String, String)>) {
        let inner = &self.inner;
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let Some(runtime) = inner.runtime.clone().or_else(|| Handle::try_current().ok()) else {
            tracing::error!(pod = %format!("{namespace}/{name}"), "the kubelet needs a tokio runtime");
            return;
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let key = (namespace.clone(), name.clone());
        let entry = {
            let mut pods = inner.pods();
            // Under the lock, so a shutdown taking its list of pods cannot miss this one.
            if inner.shut_down.load(Ordering::Acquire) {
                tracing::warn!(pod = %format!("{namespace}/{name}"), "the kubelet is shut down; not running the pod");
                return;
            }
            if let Some(known) = pods.get(&key) {
                if known.uid != uid {
                    tracing::warn!(pod = %known.describe(), new_uid = %uid, "a new pod under a known name waits until the old one is stopped");
                }
                return;
            }
            // A Pod of its own network gets a namespace on the node bridge; hostNetwork Pods
            // and loopback mode keep the host's.
            let sandbox = match (&inner.config.network, ip) {
                (Some(node), IpAddr::V4(v4)) if !spec.host_network.unwrap_or(false) => {
                    let mut sandbox = node.sandbox(v4);
                    // The kubelet's resolv.conf for its dnsPolicy (`ip netns exec` mounts it).
                    sandbox.resolv_conf = node.resolv_conf(&spec, &namespace);
                    Some(sandbox)
                }
                _ => None,
            };
            let mut sandbox = sandbox;
            let mut mesh_failure = None;
            let mut token_file = None;
            if let (Some(sandbox), Some(mesh), Some(node)) = (
                sandbox.as_mut(),
                inner.config.mesh.as_ref(),
                inner.config.network.as_ref(),
            ) && crate::inject::is_meshed(pod)
            {
                match mesh::setup(pod, &spec, ip, node.gateway(), mesh) {
                    Ok((install, token)) => {
                        sandbox.interception = Some(install);
                        token_file = Some(token);
                    }
                    Err(message) => mesh_failure = Some(message),
                }
            }
            let enter = match (&inner.config.network, &sandbox) {
                (Some(node), Some(sandbox)) => node.enter(&sandbox.netns),
                _ => Vec::new(),
            };
            let echo_ip = if sandbox.is_some() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                ip
            };
            let source = EnvSource {
                pod,
                pod_ip: ip,
                host_ip: inner.config.host_ip,
                node_name: &inner.config.node_name,
                service_env: &service_env,
                host_env: &inner.host_env,
            };
            let plans: Vec<_> = spec
                .init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
                .map(|c| {
                    plan::plan(&source, c, &inner.config.echo_program, echo_ip).map(|mut plan| {
                        plan.enter.clone_from(&enter);
                        plan
                    })
                })
                .collect();
            // A meshed Pod whose mesh cannot be set up runs none of its containers: without
            // interception its traffic would bypass the sidecar.
            let plans: Vec<_> = match &mesh_failure {
                Some(message) => plans
                    .into_iter()
                    .map(|_| {
                        Err(plan::Waiting {
                            reason: "CreateContainerConfigError",
                            message: message.clone(),
                        })
                    })
                    .collect(),
                None => plans,
            };
            let mut entry = PodEntry::new(
                namespace,
                name,
                uid,
                spec,
                ip,
                inner.config.log_limit_bytes,
                sandbox,
            );
            entry.token_file = token_file;
            entry.plans = plans.iter().map(|p| p.as_ref().ok().cloned()).collect();
            entry.default_container = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
                .cloned();
            let entry = Arc::new(entry);
            if let Some(message) = mesh_failure {
                inner.event(&entry, None, true, "FailedMesh", message);
            }
            pods.insert(key, entry.clone());
            runtime.spawn(pod::run(inner.clone(), entry.clone(), plans));
            entry
        };
        tracing::debug!(pod = %entry.describe(), %ip, "running");
        // The one node is where every Pod is scheduled: the scheduler's Event.
        if let Some(recorder) = inner.events.get() {
            recorder.normal(
                crate::events::Involved::pod(&entry.namespace, &entry.name, &entry.uid),
                crate::events::source::SCHEDULER,
                "Scheduled",
                format!(
                    "Successfully assigned {}/{} to {}",
                    entry.namespace, entry.name, inner.config.node_name
                ),
            );
        }
        inner.changed();
    }

    /// Starts the pod's termination: SIGTERM to every container's process, SIGKILL to those
    /// left after `grace`; no more restarts or probes. Returns at once; once every process has
    /// exited the pod is forgotten and [`Kubelet::changes`] fires. Stopping again may shorten
    /// the grace, never lengthen it.
    pub fn stop(&self, namespace: &str, name: &str, grace: Duration) {
        if let Some(pod) = self.inner.pod(namespace, name) {
            pod.stop(deadline(grace));
        }
    }

    /// The pod's status as a Kubernetes kubelet reports it; `None` for a pod not known.
    pub fn status(&self, namespace: &str, name: &str) -> Option<PodStatus> {
        let pod = self.inner.pod(namespace, name)?;
        let record = pod.record();
        Some(status::pod_status(
            &pod.spec,
            &record,
            pod.ip,
            self.inner.config.host_ip,
        ))
    }

    /// The mesh new Pods are injected into, or why there is none that can serve.
    pub fn mesh(&self) -> Result<&crate::inject::Mesh, &'static str> {
        let mesh = self
            .inner
            .config
            .mesh
            .as_ref()
            .ok_or("no mesh is configured on this node")?;
        if self.inner.config.network.is_none() {
            return Err("the mesh needs the netns pod network (--pod-network netns)");
        }
        Ok(mesh)
    }

    /// The node's pod network, in netns mode.
    pub fn network(&self) -> Option<&Arc<crate::network::Node>> {
        self.inner.config.network.as_ref()
    }

    /// `status.hostIP`: the node's address the Pods are given.
    pub fn host_ip(&self) -> IpAddr {
        self.inner.config.host_ip
    }

    /// The uid of the pod known under this name.
    pub fn uid(&self, namespace: &str, name: &str) -> Option<String> {
        Some(self.inner.pod(namespace, name)?.uid.clone())
    }

    /// Whether the pod is known to the kubelet (running, completed or terminating).
    pub fn is_running(&self, namespace: &str, name: &str) -> bool {
        self.inner.pod(namespace, name).is_some()
    }

    /// Whether the pod was asked to stop and has not been forgotten yet.
    pub fn is_terminating(&self, namespace: &str, name: &str) -> bool {
        self.inner
            .pod(namespace, name)
            .is_some_and(|p| p.stop.borrow().is_some())
    }

    /// The pods known, as (namespace, name).
    pub fn pods(&self) -> Vec<(String, String)> {
        let mut pods: Vec<_> = self.inner.pods().keys().cloned().collect();
        pods.sort();
        pods
    }

    /// Bumped on every status change of any pod, and when a pod is forgotten.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// The Pod and the index of the container asked for, with the Pod's container names.
    fn container(
        &self,
        namespace: &str,
        name: &str,
        container: Option<&str>,
        unnamed: Unnamed,
    ) -> Result<(Arc<PodEntry>, usize, Vec<String>), ContainerError> {
        let pod = self
            .inner
            .pod(namespace, name)
            .ok_or_else(|| ContainerError::PodNotFound {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })?;
        // Init containers are named explicitly; one unnamed is one of the app containers.
        let all: Vec<String> = pod.containers.iter().map(|(c, _)| c.name.clone()).collect();
        let first_app = all.len() - pod.spec.containers.len();
        let names: Vec<String> = all[first_app..].to_vec();
        let index = match (container, unnamed) {
            (Some(wanted), _) => all.iter().position(|n| n == wanted).ok_or_else(|| {
                ContainerError::ContainerNotFound {
                    name: name.to_owned(),
                    container: wanted.to_owned(),
                    choices: all.clone(),
                }
            })?,
            (None, Unnamed::OnlyOne) if names.len() == 1 => first_app,
            (None, Unnamed::OnlyOne) => {
                return Err(ContainerError::ContainerRequired {
                    name: name.to_owned(),
                    choices: names,
                });
            }
            (None, Unnamed::Default) => pod
                .default_container
                .as_ref()
                .and_then(|d| all.iter().position(|n| n == d))
                .unwrap_or(first_app),
        };
        Ok((pod, index, all))
    }

    /// The log of one of the pod's containers; `None` names the only one.
    pub fn logs(
        &self,
        namespace: &str,
        name: &str,
        container: Option<&str>,
    ) -> Result<Logs, ContainerError> {
        let (pod, index, _) = self.container(namespace, name, container, Unnamed::OnlyOne)?;
        pod.logs
            .get(index)
            .map(logs::LogWriter::reader)
            .ok_or_else(|| ContainerError::PodNotFound {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
    }

    /// How to run a command in one of the pod's running containers; `None` names the default
    /// one: the `kubectl.kubernetes.io/default-container` annotation's, else the first (as
    /// kubectl picks it).
    pub fn exec(
        &self,
        namespace: &str,
        name: &str,
        container: Option<&str>,
    ) -> Result<ExecPlan, ContainerError> {
        let (pod, index, names) = self.container(namespace, name, container, Unnamed::Default)?;
        // kubectl's "Defaulted container" lists the app containers.
        let app_names = &names[names.len() - pod.spec.containers.len()..];
        let chosen = names.get(index).cloned().unwrap_or_default();
        let not_running = || ContainerError::NotRunning {
            name: name.to_owned(),
            container: chosen.clone(),
        };
        if self.pid(namespace, name, &chosen).is_none() {
            return Err(not_running());
        }
        let plan = pod
            .plans
            .get(index)
            .and_then(Option::as_ref)
            .ok_or_else(not_running)?;
        Ok(ExecPlan {
            container: chosen.clone(),
            defaulted_from: if container.is_none() && app_names.len() > 1 {
                app_names.to_vec()
            } else {
                Vec::new()
            },
            enter: plan
                .enter
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            env: plan
                .env
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            working_dir: plan.working_dir.clone(),
        })
    }

    /// The process id of the container's current run, while it runs.
    pub fn pid(&self, namespace: &str, name: &str, container: &str) -> Option<u32> {
        let pod = self.inner.pod(namespace, name)?;
        let record = pod.record();
        record
            .containers
            .iter()
            .find(|c| c.name == container)
            .and_then(|c| match c.state {
                RunState::Running { pid, .. } => Some(pid),
                _ => None,
            })
    }

    /// Stops every pod and waits until all their processes have exited; pods run afterwards
    /// are refused.
    pub async fn shutdown(&self, grace: Duration) {
        let pods: Vec<Arc<PodEntry>> = {
            let pods = self.inner.pods();
            self.inner.shut_down.store(true, Ordering::Release);
            pods.values().cloned().collect()
        };
        let deadline = deadline(grace);
        for pod in &pods {
            pod.stop(deadline);
        }
        for pod in pods {
            let mut gone = pod.gone.subscribe();
            let _ = gone.wait_for(|gone| *gone).await;
        }
        // Every Pod's network is gone with it; the node's goes last.
        if let Some(node) = self.inner.config.network.clone() {
            let _ = tokio::task::spawn_blocking(move || node.teardown()).await;
        }
    }
}

#[cfg(test)]
mod ordering_tests;
#[cfg(test)]
mod tests;
