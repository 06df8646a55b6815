//! The live cluster of the local runtime: the objects the manifests declare, the ones its
//! controllers made (ReplicaSets, Pods) and what the kubelet reports, reconciled in one step.
//!
//! [`LocalCluster::reconcile`] takes the last good reading of the manifests and does what the API
//! server, the controller manager and the kubelet would do: allocates cluster IPs and node
//! ports (written into the Services, as the API server does on create), runs the Deployment
//! and ReplicaSet controllers, starts new Pods on their own loopback address, marks the Pods to
//! remove as terminating, runs the EndpointSlice controller ([`crate::endpointslice`]) over the
//! live Pods, and hands back the reading the translator sees: the manifests with the live
//! Deployments, ReplicaSets and Pods (with status) in place of the declared ones, and the
//! controller's EndpointSlices.
//! Terminating Pods are only signalled by [`LocalCluster::stop_terminating`], which the
//! orchestrator calls once the update that takes their endpoints away is published, so no data
//! plane sends a new request to a Pod that is already shutting down.
//!
//! A Pod bound by `spec.nodeName` to another node is not run here: it is passed through with
//! the status its manifest gives, which is how a manifest describes a Pod running elsewhere.
//!
//! `ferry scale` and `ferry rollout undo` change the live Deployment; the next change of that
//! Deployment in its manifest replaces them, as `kubectl apply` would.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_model::{Problem, Severity};

use crate::apiserver::new_uid;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use crate::deployment::{self, CHANGE_CAUSE_ANNOTATION, REVISION_ANNOTATION, TEMPLATE_HASH_LABEL};
use crate::endpointslice;
use crate::ipam::{Cidr, IpAllocator, PortAllocator};
use crate::kubelet::Kubelet;
use crate::replicaset::{self, PodView};
use crate::service_env;
use ferry_objects::files::Reading;
use ferry_objects::object::{Manifest, Object, Origin, pod_ready};

mod allocations;
mod controllers;
mod pods;
mod statuses;
mod verbs;
mod writes;

pub use writes::{FOREGROUND, mark_foreground};

use allocations::Allocations;

/// The key of the runtime's Services, Deployments, ReplicaSets and Pods, one map per kind (as
/// Kubernetes' `types.NamespacedName`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> NamespacedName {
        NamespacedName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The namespace and name of a manifest.
    fn of(m: &Manifest) -> NamespacedName {
        NamespacedName::new(m.namespace(), m.name())
    }
}

/// Where the objects the runtime makes say they come from.
pub const ORIGIN: &str = "<local runtime>";

/// How the local runtime runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The node Pods are bound to; Pods naming another node are not run here.
    pub node_name: String,
    pub pod_cidr: Cidr,
    pub service_cidr: Cidr,
    /// How long a ready Pod marked for deletion keeps running before it is signalled, so that
    /// every data plane has stopped sending it new connections (what a `preStop` sleep does in
    /// Kubernetes; a Pod's own `lifecycle.preStop.sleep` wins).
    pub termination_delay: Duration,
    /// The most Pods this node runs at once (the kubelet's `maxPods`); more wait, Pending.
    pub max_pods: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_name: "ferry".into(),
            pod_cidr: Cidr::V4_LOOPBACK_PODS,
            service_cidr: Cidr::V4_LOOPBACK_SERVICES,
            termination_delay: Duration::from_secs(1),
            max_pods: 1000,
        }
    }
}

#[derive(Debug)]
struct LiveDeployment {
    /// The Deployment as its manifest declares it; a change there replaces `live`.
    applied: Arc<Deployment>,
    live: Deployment,
}

#[derive(Debug)]
struct LiveReplicaSet {
    rs: ReplicaSet,
    /// Declared in a manifest (rather than made for a Deployment).
    applied: Option<Arc<ReplicaSet>>,
}

#[derive(Debug)]
struct LivePod {
    pod: Pod,
    /// Declared in a manifest.
    applied: Option<Arc<Pod>>,
    /// Run by this node's kubelet (false: bound to another node, passed through).
    here: bool,
    ip: Option<IpAddr>,
    started: bool,
    /// When to signal it, once marked for deletion.
    stop_at: Option<Instant>,
    stop_sent: bool,
    /// Creation order.
    seq: u64,
    /// A changed manifest Pod waits here for the old one to terminate.
    replace_with: Option<Arc<Pod>>,
}

impl LivePod {
    fn deleting(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    fn view(&self) -> PodView {
        let status = self.pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        PodView {
            name: self.pod.metadata.name.clone().unwrap_or_default(),
            deleting: self.deleting(),
            finished: matches!(phase, "Succeeded" | "Failed"),
            running: phase == "Running",
            ready: pod_ready(&self.pod),
            restarts: status
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum()),
            created: self.seq,
        }
    }

    fn owner_uid(&self) -> Option<&str> {
        controller_uid(&self.pod.metadata)
    }
}

/// The longest `lifecycle.preStop.sleep` of the Pod's containers.
fn pre_stop_sleep(pod: &Pod) -> Option<Duration> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .filter_map(|c| c.lifecycle.as_ref()?.pre_stop.as_ref()?.sleep.as_ref())
        .map(|s| Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0)))
        .max()
}

fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

fn owner(kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: if kind == "Deployment" || kind == "ReplicaSet" {
            "apps/v1".into()
        } else {
            "v1".into()
        },
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn now() -> Time {
    // jiff with `std` (k8s-openapi builds it without, which has no clock).
    Time(jiff::Timestamp::now())
}

/// An error an API call answers with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

/// The ServiceAccounts that exist: the declared ones and the controller's `default` in every
/// Namespace.
fn service_accounts(desired: &Reading) -> std::collections::BTreeSet<(String, String)> {
    let defaults = crate::serviceaccount::defaults(&desired.manifests);
    crate::serviceaccount::existing(desired.manifests.iter().chain(&defaults).map(|m| &**m))
}

/// The live cluster.
#[derive(Debug)]
pub struct LocalCluster {
    config: Config,
    kubelet: Kubelet,
    pod_ips: IpAllocator,
    allocations: Allocations,
    deployments: BTreeMap<NamespacedName, LiveDeployment>,
    replica_sets: BTreeMap<NamespacedName, LiveReplicaSet>,
    pods: BTreeMap<NamespacedName, LivePod>,
    /// Each Service's uid, given on create and kept while it exists (what its EndpointSlices'
    /// ownerReferences name).
    service_uids: BTreeMap<NamespacedName, String>,
    /// Each declared Namespace's annotations (the mesh's injection reads them).
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// The ServiceAccounts that exist (namespace, name): the ReplicaSet controller's Pods
    /// pass the ServiceAccount admission against them.
    service_accounts: std::collections::BTreeSet<(String, String)>,
    /// Creation order of Pods.
    seq: u64,
}

impl LocalCluster {
    pub fn new(config: Config, kubelet: Kubelet) -> LocalCluster {
        LocalCluster {
            pod_ips: IpAllocator::new(config.pod_cidr),
            allocations: Allocations::new(config.service_cidr),
            config,
            kubelet,
            deployments: BTreeMap::new(),
            replica_sets: BTreeMap::new(),
            pods: BTreeMap::new(),
            service_uids: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            service_accounts: Default::default(),
            seq: 0,
        }
    }

    pub fn kubelet(&self) -> &Kubelet {
        &self.kubelet
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn random(&mut self) -> u64 {
        // Names and uids only need to differ, not to be secret.
        ferry_runtime::random::u64()
    }

    fn uid(&mut self) -> String {
        new_uid()
    }

    fn suffix(&mut self) -> String {
        let mut x = self.random();
        (0..5)
            .map(|_| {
                let c = deployment::ALPHANUMS[(x % deployment::ALPHANUMS.len() as u64) as usize];
                x /= deployment::ALPHANUMS.len() as u64;
                char::from(c)
            })
            .collect()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// What the API server would say to these manifests before anything acts on them: the
    /// reading with the Services' cluster IPs and node ports as they would be allocated, and
    /// any allocation error (an address two Services name, a full range). Nothing changes.
    pub fn admit(&self, desired: &Reading) -> Reading {
        let mut problems = desired.problems.clone();
        self.admit_service_accounts(desired, &mut problems);
        let (services, others): (Vec<_>, Vec<_>) = desired
            .manifests
            .iter()
            .cloned()
            .partition(|m| matches!(m.object, Object::Service(_)));
        let mut manifests = others;
        let services = self.allocations.clone().allocate(&services, &mut problems);
        manifests.extend(with_uids(services, &self.service_uids).0);
        Reading {
            manifests,
            problems,
        }
    }

    /// The ServiceAccount admission of the declared Pods not running yet: each names a
    /// ServiceAccount that exists (the order the objects were written in does not matter: all
    /// of a change is checked at once, as Helm installs ServiceAccounts before Pods).
    fn admit_service_accounts(&self, desired: &Reading, problems: &mut Vec<Problem>) {
        let have = service_accounts(desired);
        for m in &desired.manifests {
            let Object::Pod(pod) = &m.object else {
                continue;
            };
            if self.pods.contains_key(&NamespacedName::of(m)) {
                continue;
            }
            let mut pod = (**pod).clone();
            if let Err(e) = crate::serviceaccount::admit(&mut pod, m.namespace(), &have) {
                problems.push(m.error("spec.serviceAccountName", format!("Forbidden: {e}")));
            }
        }
    }

    /// One reconciliation: observe the manifests and the kubelet, act, and return what the
    /// translator should see, with the problems found on the way.
    pub fn reconcile(&mut self, desired: &Reading) -> Reading {
        let mut problems = Vec::new();
        let mut declared_deployments = BTreeMap::new();
        let mut declared_replica_sets = BTreeMap::new();
        let mut declared_pods = BTreeMap::new();
        let mut services = Vec::new();
        let mut namespaces = BTreeMap::new();
        let mut out = Vec::with_capacity(desired.manifests.len());
        for m in &desired.manifests {
            let key = NamespacedName::of(m);
            match &m.object {
                Object::Deployment(d) => {
                    declared_deployments.insert(key, Arc::new((**d).clone()));
                }
                Object::ReplicaSet(rs) => {
                    declared_replica_sets.insert(key, Arc::new((**rs).clone()));
                }
                Object::Pod(p) => {
                    declared_pods.insert(key, Arc::new((**p).clone()));
                }
                Object::Service(_) => services.push(m.clone()),
                Object::Namespace(ns) => {
                    namespaces.insert(
                        m.name().to_owned(),
                        ns.metadata.annotations.clone().unwrap_or_default(),
                    );
                    out.push(m.clone());
                }
                _ => out.push(m.clone()),
            }
        }
        self.namespaces = namespaces;
        self.service_accounts = service_accounts(desired);
        let services = self.allocations.allocate(&services, &mut problems);
        let (services, uids) = with_uids(services, &self.service_uids);
        self.service_uids = uids;

        self.observe_pods();
        self.sync_deployments(&declared_deployments);
        self.sync_declared_replica_sets(&declared_replica_sets);
        self.sync_declared_pods(&declared_pods);
        self.cascade_foreground();
        self.run_deployment_controllers();
        self.run_replica_set_controllers();
        self.forget_unstarted_deleted();
        self.sweep_foreground();
        self.start_pods(&services, &mut problems);
        self.update_statuses();

        let origin = Origin {
            file: ORIGIN.into(),
            doc: None,
        };
        let live = |object| {
            Arc::new(Manifest {
                origin: origin.clone(),
                object,
            })
        };
        out.extend(services);
        out.extend(
            self.deployments
                .values()
                .map(|d| live(Object::Deployment(Box::new(d.live.clone())))),
        );
        out.extend(
            self.replica_sets
                .values()
                .map(|r| live(Object::ReplicaSet(Box::new(r.rs.clone())))),
        );
        out.extend(
            self.pods
                .values()
                .map(|p| live(Object::Pod(Box::new(p.pod.clone())))),
        );
        // The EndpointSlice controller, over the live Pods: those run here and those passed
        // through as running elsewhere.
        let out = endpointslice::reconcile(&out, &origin);
        let mut all_problems = desired.problems.clone();
        all_problems.extend(problems);
        Reading {
            manifests: out,
            problems: all_problems,
        }
    }

    /// Deployments, ReplicaSets and Pods as they are now.
    pub fn deployments(&self) -> Vec<Deployment> {
        self.deployments.values().map(|d| d.live.clone()).collect()
    }

    pub fn replica_sets(&self) -> Vec<ReplicaSet> {
        self.replica_sets.values().map(|r| r.rs.clone()).collect()
    }

    pub fn pods(&self) -> Vec<Pod> {
        self.pods.values().map(|p| p.pod.clone()).collect()
    }
}

/// The Services with their uids, as the API server gives one on create: the one a manifest
/// names, else the one `kept` holds for the Service, else a new one; and the uids by Service.
fn with_uids(
    services: Vec<Arc<Manifest>>,
    kept: &BTreeMap<NamespacedName, String>,
) -> (Vec<Arc<Manifest>>, BTreeMap<NamespacedName, String>) {
    let mut uids = BTreeMap::new();
    let mut out = Vec::with_capacity(services.len());
    for m in services {
        let Object::Service(svc) = &m.object else {
            out.push(m);
            continue;
        };
        let key = NamespacedName::of(&m);
        if let Some(uid) = &svc.metadata.uid {
            uids.insert(key, uid.clone());
            out.push(m);
            continue;
        }
        let uid = kept.get(&key).cloned().unwrap_or_else(new_uid);
        let mut svc = (**svc).clone();
        svc.metadata.uid = Some(uid.clone());
        uids.insert(key, uid);
        out.push(Arc::new(Manifest {
            origin: m.origin.clone(),
            object: Object::Service(Box::new(svc)),
        }));
    }
    (out, uids)
}

fn revision(meta: &ObjectMeta) -> u64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod mesh_tests;
#[cfg(test)]
mod tests;
