//! The live cluster of the local runtime: the objects the manifests declare, the ones its
//! controllers made (ReplicaSets, Pods) and what the kubelet reports, reconciled in one step.
//!
//! [`LocalCluster::reconcile`] takes the last good reading of the manifests and does what the API
//! server, the controller manager and the kubelet would do: allocates cluster IPs and node
//! ports (written into the Services, as the API server does on create), runs the Deployment
//! and ReplicaSet controllers, starts new Pods on their own loopback address, marks the Pods to
//! remove as terminating, and hands back the reading the translator sees: the manifests with
//! the live Deployments, ReplicaSets and Pods (with status) in place of the declared ones.
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
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use crate::deployment::{self, CHANGE_CAUSE_ANNOTATION, REVISION_ANNOTATION, TEMPLATE_HASH_LABEL};
use crate::ipam::{Cidr, IpAllocator, PortAllocator};
use crate::kubelet::Kubelet;
use crate::replicaset::{self, PodView};
use crate::service_env;
use ferry_objects::files::Reading;
use ferry_objects::object::{Manifest, Object, Origin, pod_ready};

mod allocations;
mod statuses;
mod verbs;

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
        let (a, b) = (self.random(), self.random());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
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
        let (services, others): (Vec<_>, Vec<_>) = desired
            .manifests
            .iter()
            .cloned()
            .partition(|m| matches!(m.object, Object::Service(_)));
        let mut manifests = others;
        manifests.extend(self.allocations.clone().allocate(&services, &mut problems));
        Reading {
            manifests,
            problems,
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
                _ => out.push(m.clone()),
            }
        }
        let services = self.allocations.allocate(&services, &mut problems);

        self.observe_pods();
        self.sync_deployments(&declared_deployments);
        self.sync_declared_replica_sets(&declared_replica_sets);
        self.sync_declared_pods(&declared_pods);
        self.run_deployment_controllers();
        self.run_replica_set_controllers();
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
        let mut all_problems = desired.problems.clone();
        all_problems.extend(problems);
        Reading {
            manifests: out,
            problems: all_problems,
        }
    }

    /// Brings in what the kubelet reports, and forgets terminated Pods.
    fn observe_pods(&mut self) {
        let mut gone = Vec::new();
        for (key, p) in &mut self.pods {
            if !p.here || !p.started {
                if p.deleting() && !p.started {
                    gone.push(key.clone());
                }
                continue;
            }
            match self.kubelet.status(&key.namespace, &key.name) {
                Some(status) => p.pod.status = Some(status),
                None if p.deleting()
                    && (p.stop_sent || !self.kubelet.is_running(&key.namespace, &key.name)) =>
                {
                    gone.push(key.clone());
                }
                None => {}
            }
        }
        for key in gone {
            if let Some(p) = self.pods.remove(&key) {
                if let Some(ip) = p.ip {
                    self.pod_ips.release(ip);
                }
                if let Some(next) = p.replace_with {
                    self.create_declared_pod(key, next);
                }
            }
        }
    }

    fn sync_deployments(&mut self, declared: &BTreeMap<NamespacedName, Arc<Deployment>>) {
        let gone: Vec<NamespacedName> = self
            .deployments
            .keys()
            .filter(|k| !declared.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            self.deployments.remove(&key);
        }
        for (key, d) in declared {
            match self.deployments.get_mut(key) {
                Some(live) if Arc::ptr_eq(&live.applied, d) || *live.applied == **d => {}
                Some(live) => {
                    let meta = live.live.metadata.clone();
                    let generation = meta.generation.unwrap_or(1);
                    let changed = live.live.spec != d.spec;
                    live.applied = d.clone();
                    live.live = (**d).clone();
                    live.live.metadata.uid = meta.uid;
                    live.live.metadata.creation_timestamp = meta.creation_timestamp;
                    live.live.metadata.generation =
                        Some(if changed { generation + 1 } else { generation });
                    live.live.status = None;
                }
                None => {
                    let mut live = (**d).clone();
                    live.metadata.uid = Some(self.uid());
                    live.metadata.generation = Some(1);
                    if live.metadata.creation_timestamp.is_none() {
                        live.metadata.creation_timestamp = Some(now());
                    }
                    live.status = None;
                    self.deployments.insert(
                        key.clone(),
                        LiveDeployment {
                            applied: d.clone(),
                            live,
                        },
                    );
                }
            }
        }
    }

    fn sync_declared_replica_sets(&mut self, declared: &BTreeMap<NamespacedName, Arc<ReplicaSet>>) {
        // Deployment-made ReplicaSets whose Deployment is gone, and declared ones no longer
        // declared, are deleted; their Pods go with them.
        let deployment_uids: Vec<String> = self
            .deployments
            .values()
            .filter_map(|d| d.live.metadata.uid.clone())
            .collect();
        let gone: Vec<NamespacedName> = self
            .replica_sets
            .iter()
            .filter(|(k, r)| match &r.applied {
                Some(_) => !declared.contains_key(*k),
                None => !controller_uid(&r.rs.metadata)
                    .is_some_and(|uid| deployment_uids.iter().any(|d| d == uid)),
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.delete_replica_set(&key);
        }
        for (key, rs) in declared {
            match self.replica_sets.get_mut(key) {
                Some(live) if live.applied.as_ref().is_some_and(|a| **a == **rs) => {}
                Some(live) => {
                    let meta = live.rs.metadata.clone();
                    live.rs = (**rs).clone();
                    live.rs.metadata.uid = meta.uid;
                    live.rs.metadata.creation_timestamp = meta.creation_timestamp;
                    live.rs.metadata.generation = Some(meta.generation.unwrap_or(1) + 1);
                    live.applied = Some(rs.clone());
                }
                None => {
                    let mut live = (**rs).clone();
                    live.metadata.uid = Some(self.uid());
                    live.metadata.generation = Some(1);
                    live.metadata.creation_timestamp.get_or_insert_with(now);
                    self.replica_sets.insert(
                        key.clone(),
                        LiveReplicaSet {
                            rs: live,
                            applied: Some(rs.clone()),
                        },
                    );
                }
            }
        }
    }

    fn delete_replica_set(&mut self, key: &NamespacedName) {
        let Some(rs) = self.replica_sets.remove(key) else {
            return;
        };
        let uid = rs.rs.metadata.uid.unwrap_or_default();
        let owned: Vec<NamespacedName> = self
            .pods
            .iter()
            .filter(|(_, p)| p.owner_uid() == Some(uid.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in owned {
            self.delete_pod(&key);
        }
    }

    /// Marks a Pod terminating; its endpoints go at the next publish and the kubelet stops it
    /// after that ([`LocalCluster::stop_terminating`]).
    fn delete_pod(&mut self, key: &NamespacedName) {
        let default_delay = self.config.termination_delay;
        if let Some(p) = self.pods.get_mut(key)
            && p.pod.metadata.deletion_timestamp.is_none()
        {
            let spec = p.pod.spec.as_ref();
            let grace = spec
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30);
            // A Pod that is not ready has no endpoint to drain.
            let delay = match pre_stop_sleep(&p.pod) {
                Some(d) => d,
                None if pod_ready(&p.pod) => default_delay,
                None => Duration::ZERO,
            };
            p.pod.metadata.deletion_timestamp = Some(now());
            p.pod.metadata.deletion_grace_period_seconds = Some(grace);
            p.stop_at = Some(Instant::now() + delay.min(super::kubelet::MAX_GRACE));
        }
    }

    fn sync_declared_pods(&mut self, declared: &BTreeMap<NamespacedName, Arc<Pod>>) {
        let gone: Vec<NamespacedName> = self
            .pods
            .iter()
            .filter(|(k, p)| p.applied.is_some() && !declared.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(p) = self.pods.get_mut(&key) {
                p.replace_with = None;
            }
            self.delete_pod(&key);
        }
        for (key, pod) in declared {
            let here = self.is_here(pod);
            match self.pods.get_mut(key) {
                None => self.create_declared_pod(key.clone(), pod.clone()),
                Some(live) if live.applied.as_ref().is_some_and(|a| **a == **pod) => {}
                // Bound to this node now: ours to run from here on.
                Some(live) if !live.here && here => {
                    self.pods.remove(key);
                    self.create_declared_pod(key.clone(), pod.clone());
                }
                Some(live) if !live.here => {
                    live.pod = (**pod).clone();
                    live.applied = Some(pod.clone());
                }
                Some(live) => {
                    // Pods are immutable: a changed manifest replaces the Pod once the old
                    // one has terminated.
                    live.replace_with = Some(pod.clone());
                    self.delete_pod(key);
                }
            }
        }
    }

    /// Whether this node runs the Pod: one bound to no node is scheduled here.
    fn is_here(&self, pod: &Pod) -> bool {
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(|n| n == self.config.node_name)
    }

    fn create_declared_pod(&mut self, key: NamespacedName, declared: Arc<Pod>) {
        let here = self.is_here(&declared);
        let mut pod = (*declared).clone();
        if here {
            pod.metadata.uid = Some(self.uid());
            pod.metadata.creation_timestamp.get_or_insert_with(now);
            pod.status = Some(PodStatus {
                phase: Some("Pending".into()),
                ..PodStatus::default()
            });
            if let Some(spec) = pod.spec.as_mut() {
                spec.node_name = Some(self.config.node_name.clone());
            }
        }
        self.add_pod(key, pod, Some(declared), here);
    }

    /// Adds a Pod that has not run yet, the newest in creation order.
    fn add_pod(&mut self, key: NamespacedName, pod: Pod, applied: Option<Arc<Pod>>, here: bool) {
        let seq = self.next_seq();
        self.pods.insert(
            key,
            LivePod {
                pod,
                applied,
                here,
                ip: None,
                started: false,
                stop_at: None,
                stop_sent: false,
                seq,
                replace_with: None,
            },
        );
    }

    /// What each owner (by uid) has of Pods, built once per step so the controllers do not
    /// scan every Pod for every ReplicaSet.
    fn pod_views_by_owner(&self) -> HashMap<&str, Vec<PodView>> {
        let mut by_owner: HashMap<&str, Vec<PodView>> = HashMap::new();
        for p in self.pods.values() {
            if let Some(uid) = p.owner_uid() {
                by_owner.entry(uid).or_default().push(p.view());
            }
        }
        by_owner
    }

    fn run_deployment_controllers(&mut self) {
        // Each Deployment's ReplicaSets as its controller sees them, gathered in one pass.
        let mut owned_by: HashMap<String, Vec<deployment::Owned>> = HashMap::new();
        {
            let views = self.pod_views_by_owner();
            for r in self.replica_sets.values() {
                let Some(owner) = controller_uid(&r.rs.metadata) else {
                    continue;
                };
                let rs_uid = r.rs.metadata.uid.as_deref().unwrap_or_default();
                let views = views.get(rs_uid).map_or(&[][..], Vec::as_slice);
                let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
                owned_by
                    .entry(owner.to_owned())
                    .or_default()
                    .push(deployment::Owned {
                        name: r.rs.metadata.name.clone().unwrap_or_default(),
                        hash: r
                            .rs
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(TEMPLATE_HASH_LABEL).cloned())
                            .unwrap_or_default(),
                        revision: revision(&r.rs.metadata),
                        replicas: r.rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        pods: count(views.iter().filter(|v| !v.finished).count()),
                        available: count(replicaset::active(views).filter(|v| v.ready).count()),
                    });
            }
        }
        let keys: Vec<NamespacedName> = self.deployments.keys().cloned().collect();
        for key in keys {
            let Some(d) = self.deployments.get(&key).map(|d| d.live.clone()) else {
                continue;
            };
            let uid = d.metadata.uid.clone().unwrap_or_default();
            let owned = owned_by.remove(&uid).unwrap_or_default();
            let plan = deployment::reconcile(&d, &owned);
            let ns = key.namespace.clone();
            for (name, n) in plan.scale {
                if let Some(r) = self
                    .replica_sets
                    .get_mut(&NamespacedName::new(ns.clone(), name))
                {
                    let spec = r.rs.spec.get_or_insert_with(ReplicaSetSpec::default);
                    spec.replicas = Some(n);
                    r.rs.metadata.generation = Some(r.rs.metadata.generation.unwrap_or(1) + 1);
                }
            }
            for (name, rev) in plan.revise {
                if let Some(r) = self
                    .replica_sets
                    .get_mut(&NamespacedName::new(ns.clone(), name))
                {
                    r.rs.metadata
                        .annotations
                        .get_or_insert_with(BTreeMap::new)
                        .insert(REVISION_ANNOTATION.into(), rev.to_string());
                }
            }
            for name in plan.delete {
                self.delete_replica_set(&NamespacedName::new(ns.clone(), name));
            }
            if let Some((hash, rev, replicas)) = plan.create {
                let rs = self.new_replica_set(&d, &hash, rev, replicas);
                let name = rs.metadata.name.clone().unwrap_or_default();
                self.replica_sets.insert(
                    NamespacedName::new(ns.clone(), name),
                    LiveReplicaSet { rs, applied: None },
                );
            }
        }
    }

    fn new_replica_set(
        &mut self,
        d: &Deployment,
        hash: &str,
        rev: u64,
        replicas: i32,
    ) -> ReplicaSet {
        let spec = d.spec.clone().unwrap_or_default();
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(TEMPLATE_HASH_LABEL.into(), hash.into());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(TEMPLATE_HASH_LABEL.into(), hash.into());
        let mut annotations = BTreeMap::from([(REVISION_ANNOTATION.to_owned(), rev.to_string())]);
        if let Some(cause) = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CHANGE_CAUSE_ANNOTATION))
        {
            annotations.insert(CHANGE_CAUSE_ANNOTATION.into(), cause.clone());
        }
        let name = format!("{}-{hash}", d.metadata.name.as_deref().unwrap_or_default());
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: d.metadata.namespace.clone(),
                uid: Some(self.uid()),
                generation: Some(1),
                creation_timestamp: Some(now()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(annotations),
                owner_references: Some(vec![owner("Deployment", &d.metadata)]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        }
    }

    fn run_replica_set_controllers(&mut self) {
        let mut views_by: HashMap<String, Vec<PodView>> = self
            .pod_views_by_owner()
            .into_iter()
            .map(|(uid, views)| (uid.to_owned(), views))
            .collect();
        let keys: Vec<NamespacedName> = self.replica_sets.keys().cloned().collect();
        for key in keys {
            let Some(r) = self.replica_sets.get(&key) else {
                continue;
            };
            let rs = r.rs.clone();
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            let views = views_by.remove(&uid).unwrap_or_default();
            let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let plan = replicaset::reconcile(replicas, &views);
            for name in plan.delete {
                self.delete_pod(&NamespacedName::new(key.namespace.clone(), name));
            }
            // At most 500 new Pods in one step, so a typo of a zero more does not fork-bomb
            // the machine in one go.
            for _ in 0..plan.create.min(500) {
                self.create_owned_pod(&key.namespace, &rs);
            }
        }
    }

    fn create_owned_pod(&mut self, namespace: &str, rs: &ReplicaSet) {
        let template: PodTemplateSpec = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default();
        let base = rs.metadata.name.clone().unwrap_or_default();
        let name = loop {
            let name = format!("{base}-{}", self.suffix());
            if !self
                .pods
                .contains_key(&NamespacedName::new(namespace, name.clone()))
            {
                break name;
            }
        };
        let meta = template.metadata.unwrap_or_default();
        let mut spec = template.spec.unwrap_or_default();
        spec.node_name = Some(self.config.node_name.clone());
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                generate_name: Some(format!("{base}-")),
                namespace: Some(namespace.to_owned()),
                uid: Some(self.uid()),
                creation_timestamp: Some(now()),
                labels: meta.labels,
                annotations: meta.annotations,
                owner_references: Some(vec![owner("ReplicaSet", &rs.metadata)]),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                ..PodStatus::default()
            }),
        };
        self.add_pod(NamespacedName::new(namespace, name), pod, None, true);
    }

    /// Gives new Pods an address and hands them to the kubelet.
    fn start_pods(&mut self, services: &[Arc<Manifest>], problems: &mut Vec<Problem>) {
        let mut env_by_ns: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for m in services {
            if let Object::Service(svc) = &m.object {
                env_by_ns
                    .entry(m.namespace().to_owned())
                    .or_default()
                    .extend(service_env::for_service(m.name(), svc));
            }
        }
        let keys: Vec<NamespacedName> = self
            .pods
            .iter()
            .filter(|(_, p)| p.here && !p.started && !p.deleting())
            .map(|(k, _)| k.clone())
            .collect();
        // Terminating Pods still hold their processes and addresses.
        let mut running = self.pods.values().filter(|p| p.here && p.started).count();
        let (mut over_limit, mut out_of_addresses) = (0, 0);
        for key in keys {
            let ip = if running >= self.config.max_pods {
                over_limit += 1;
                None
            } else {
                let ip = self.pod_ips.allocate();
                out_of_addresses += usize::from(ip.is_none());
                ip
            };
            let Some(p) = self.pods.get_mut(&key) else {
                continue;
            };
            let Some(ip) = ip else {
                // Pending, as the scheduler leaves a Pod no node can take.
                let message = if running >= self.config.max_pods {
                    format!(
                        "0/1 nodes are available: 1 Too many pods (--max-pods {}).",
                        self.config.max_pods
                    )
                } else {
                    format!(
                        "0/1 nodes are available: the pod range {} is full (--pod-cidr).",
                        self.pod_ips.cidr()
                    )
                };
                p.pod.status = Some(PodStatus {
                    phase: Some("Pending".into()),
                    conditions: Some(vec![PodCondition {
                        type_: "PodScheduled".into(),
                        status: "False".into(),
                        reason: Some("Unschedulable".into()),
                        message: Some(message),
                        last_transition_time: Some(now()),
                        ..PodCondition::default()
                    }]),
                    ..PodStatus::default()
                });
                continue;
            };
            let env = env_by_ns.get(&key.namespace).cloned().unwrap_or_default();
            p.ip = Some(ip);
            p.started = true;
            running += 1;
            self.kubelet.run(&p.pod, ip, env);
            if let Some(status) = self.kubelet.status(&key.namespace, &key.name) {
                p.pod.status = Some(status);
            }
        }
        let warn = |message: String| Problem {
            severity: Severity::Warning,
            file: ORIGIN.into(),
            doc: None,
            object: None,
            field: String::new(),
            message,
        };
        if over_limit > 0 {
            problems.push(warn(format!(
                "{over_limit} Pod(s) wait: this node runs at most {} Pods (--max-pods)",
                self.config.max_pods
            )));
        }
        if out_of_addresses > 0 {
            problems.push(warn(format!(
                "{out_of_addresses} Pod(s) wait: the pod range {} is full (--pod-cidr)",
                self.pod_ips.cidr()
            )));
        }
    }

    /// Signals the kubelet to stop the Pods marked terminating; called once the snapshot
    /// without their endpoints is published.
    pub fn stop_terminating(&mut self) {
        let now = Instant::now();
        for (key, p) in &mut self.pods {
            if p.here
                && p.started
                && p.deleting()
                && !p.stop_sent
                && p.stop_at.is_none_or(|at| at <= now)
            {
                let grace = Duration::from_secs(
                    p.pod
                        .metadata
                        .deletion_grace_period_seconds
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(30),
                );
                // A preStop sleep counts within the grace period, as in Kubernetes, which
                // leaves the process at least 2 s after it.
                let grace = match pre_stop_sleep(&p.pod) {
                    Some(sleep) => grace.saturating_sub(sleep).max(Duration::from_secs(2)),
                    None => grace,
                };
                self.kubelet.stop(&key.namespace, &key.name, grace);
                p.stop_sent = true;
            }
        }
    }

    /// When the next terminating Pod is due to be signalled.
    pub fn next_stop(&self) -> Option<Instant> {
        self.pods
            .values()
            .filter(|p| p.here && p.started && p.deleting() && !p.stop_sent)
            .filter_map(|p| p.stop_at)
            .min()
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

fn revision(meta: &ObjectMeta) -> u64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
