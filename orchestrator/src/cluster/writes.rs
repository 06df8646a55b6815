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

fn without_owner(meta: &mut ObjectMeta, owner_uid: &str) {
    if let Some(owners) = meta.owner_references.as_mut() {
        owners.retain(|o| o.uid != owner_uid);
        if owners.is_empty() {
            meta.owner_references = None;
        }
    }
}
