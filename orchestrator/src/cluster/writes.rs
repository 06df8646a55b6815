//! What the Kubernetes API's writes do to the live cluster's controller-owned objects (the
//! ReplicaSets a Deployment made, the Pods a ReplicaSet made), which are not declared: a
//! graceful Pod deletion with the grace the client asked, a ReplicaSet deleted or scaled (its
//! controller reconciles it back, as in Kubernetes), labels and annotations changed, and the
//! dependents a deletion with `propagationPolicy: Orphan` leaves (their ownerReference to the
//! deleted owner removed; they are declared from then on, so they keep running).

use super::*;

impl LocalCluster {
    /// Whether a ReplicaSet or Pod exists, made by a controller rather than declared.
    pub fn controlled(&self, kind: &str, key: &NamespacedName) -> bool {
        match kind {
            "ReplicaSet" => self
                .replica_sets
                .get(key)
                .is_some_and(|r| r.applied.is_none()),
            "Pod" => self.pods.get(key).is_some_and(|p| p.applied.is_none()),
            _ => false,
        }
    }

    /// Marks a Pod terminating, as [`LocalCluster::delete_pod`], with the grace period the
    /// client asked (`gracePeriodSeconds`; the Pod's own when `None`). With 0 it is signalled
    /// at once and killed. A Pod already terminating keeps its deletion.
    pub fn delete_pod_with_grace(&mut self, key: &NamespacedName, grace: Option<i64>) {
        self.delete_pod(key);
        if let (Some(grace), Some(p)) = (grace, self.pods.get_mut(key))
            && !p.stop_sent
        {
            let grace = grace.max(0);
            p.pod.metadata.deletion_grace_period_seconds = Some(grace);
            if grace == 0 {
                p.stop_at = Some(Instant::now());
            }
        }
    }

    /// Deletes a controller-made ReplicaSet with its Pods (its Deployment makes it again).
    pub fn delete_controlled_replica_set(&mut self, key: &NamespacedName) {
        self.delete_replica_set(key);
    }

    /// Sets a controller-made ReplicaSet's replicas (its Deployment sets them back).
    pub fn scale_controlled_replica_set(&mut self, key: &NamespacedName, replicas: i32) {
        if let Some(r) = self.replica_sets.get_mut(key) {
            let spec = r.rs.spec.get_or_insert_with(Default::default);
            if spec.replicas != Some(replicas) {
                spec.replicas = Some(replicas);
                r.rs.metadata.generation = Some(r.rs.metadata.generation.unwrap_or(1) + 1);
            }
        }
    }

    /// Sets the labels and annotations of a controller-made ReplicaSet or Pod.
    pub fn set_controlled_metadata(&mut self, kind: &str, key: &NamespacedName, meta: &ObjectMeta) {
        let target = match kind {
            "ReplicaSet" => self.replica_sets.get_mut(key).map(|r| &mut r.rs.metadata),
            "Pod" => self.pods.get_mut(key).map(|p| &mut p.pod.metadata),
            _ => None,
        };
        if let Some(m) = target {
            m.labels.clone_from(&meta.labels);
            m.annotations.clone_from(&meta.annotations);
        }
    }

    /// The ReplicaSets a deleted Deployment leaves (`propagationPolicy: Orphan`): without the
    /// ownerReference to it, each now its own declared object (returned, to be declared).
    pub fn orphan_replica_sets(&mut self, owner_uid: &str) -> Vec<ReplicaSet> {
        let mut out = Vec::new();
        for r in self.replica_sets.values_mut() {
            if controller_uid(&r.rs.metadata) != Some(owner_uid) {
                continue;
            }
            without_owner(&mut r.rs.metadata, owner_uid);
            r.applied = Some(Arc::new(r.rs.clone()));
            out.push(r.rs.clone());
        }
        out
    }

    /// The Pods a deleted ReplicaSet leaves (`propagationPolicy: Orphan`), as
    /// [`LocalCluster::orphan_replica_sets`]'s.
    pub fn orphan_pods(&mut self, owner_uid: &str) -> Vec<Pod> {
        let mut out = Vec::new();
        for p in self.pods.values_mut() {
            if p.owner_uid() != Some(owner_uid) || p.deleting() {
                continue;
            }
            without_owner(&mut p.pod.metadata, owner_uid);
            p.applied = Some(Arc::new(p.pod.clone()));
            out.push(p.pod.clone());
        }
        out
    }
}

/// The finalizer of a deletion that waits for the owner's dependents (`Foreground`).
pub const FOREGROUND: &str = "foregroundDeletion";

/// Marks an object deleted in the foreground: `deletionTimestamp` and the finalizer.
pub fn mark_foreground(meta: &mut ObjectMeta) {
    meta.deletion_timestamp.get_or_insert_with(now);
    let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == FOREGROUND) {
        finalizers.push(FOREGROUND.to_owned());
    }
}

impl LocalCluster {
    /// Marks a controller-made ReplicaSet deleted in the foreground: its Pods go, then it.
    pub fn delete_controlled_replica_set_foreground(&mut self, key: &NamespacedName) {
        if let Some(r) = self.replica_sets.get_mut(key) {
            mark_foreground(&mut r.rs.metadata);
        }
    }

    /// Foreground deletion, as the garbage collector does it: the ReplicaSets of a Deployment
    /// being deleted are deleted in the foreground too; a controller-made ReplicaSet so
    /// deleted goes once its Pods are gone ([`LocalCluster::sweep_foreground`]). Declared
    /// owners go from the declared objects once [`LocalCluster::has_dependents`] says none is
    /// left.
    pub(super) fn cascade_foreground(&mut self) {
        let deleting: Vec<String> = self
            .deployments
            .values()
            .filter(|d| d.live.metadata.deletion_timestamp.is_some())
            .filter_map(|d| d.live.metadata.uid.clone())
            .collect();
        for r in self.replica_sets.values_mut() {
            if controller_uid(&r.rs.metadata).is_some_and(|uid| deleting.iter().any(|d| d == uid)) {
                mark_foreground(&mut r.rs.metadata);
            }
        }
    }

    /// Removes the controller-made ReplicaSets deleted in the foreground whose Pods are gone.
    pub(super) fn sweep_foreground(&mut self) {
        let owners: Vec<&str> = self.pods.values().filter_map(LivePod::owner_uid).collect();
        let done: Vec<NamespacedName> = self
            .replica_sets
            .iter()
            .filter(|(_, r)| r.applied.is_none() && r.rs.metadata.deletion_timestamp.is_some())
            .filter(|(_, r)| {
                let uid = r.rs.metadata.uid.as_deref().unwrap_or_default();
                !owners.contains(&uid)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in done {
            self.replica_sets.remove(&key);
        }
    }

    /// Whether a Deployment still has ReplicaSets, or a ReplicaSet Pods (a Foreground
    /// deletion waits for them).
    pub fn has_dependents(&self, kind: &str, key: &NamespacedName) -> bool {
        let uid = match kind {
            "Deployment" => self
                .deployments
                .get(key)
                .and_then(|d| d.live.metadata.uid.as_deref()),
            "ReplicaSet" => self
                .replica_sets
                .get(key)
                .and_then(|r| r.rs.metadata.uid.as_deref()),
            _ => None,
        };
        let Some(uid) = uid else {
            return false;
        };
        match kind {
            "Deployment" => self
                .replica_sets
                .values()
                .any(|r| controller_uid(&r.rs.metadata) == Some(uid)),
            _ => self.pods.values().any(|p| p.owner_uid() == Some(uid)),
        }
    }
}

fn without_owner(meta: &mut ObjectMeta, owner_uid: &str) {
    if let Some(owners) = meta.owner_references.as_mut() {
        owners.retain(|o| o.uid != owner_uid);
        if owners.is_empty() {
            meta.owner_references = None;
        }
    }
}
