//! The statuses the live cluster writes back, as the controllers and the kubelet report them:
//! each ReplicaSet's replica counts, each Deployment's counts and conditions.

use super::*;

impl LocalCluster {
    pub(super) fn update_statuses(&mut self) {
        // ReplicaSets.
        let mut rs_counts: HashMap<String, (i32, i32)> = HashMap::new();
        for p in self.pods.values() {
            if let Some(uid) = p.owner_uid() {
                let v = p.view();
                if v.deleting || v.finished {
                    continue;
                }
                let e = rs_counts.entry(uid.to_owned()).or_default();
                e.0 += 1;
                if v.ready {
                    e.1 += 1;
                }
            }
        }
        for r in self.replica_sets.values_mut() {
            let uid = r.rs.metadata.uid.clone().unwrap_or_default();
            let (replicas, ready) = rs_counts.get(&uid).copied().unwrap_or_default();
            r.rs.status = Some(ReplicaSetStatus {
                replicas,
                fully_labeled_replicas: Some(replicas),
                ready_replicas: Some(ready),
                available_replicas: Some(ready),
                observed_generation: r.rs.metadata.generation,
                ..ReplicaSetStatus::default()
            });
        }
        // Deployments, from their ReplicaSets gathered by owner in one pass.
        let mut by_owner: HashMap<&str, Vec<&ReplicaSet>> = HashMap::new();
        for r in self.replica_sets.values() {
            if let Some(owner) = controller_uid(&r.rs.metadata) {
                by_owner.entry(owner).or_default().push(&r.rs);
            }
        }
        for d in self.deployments.values_mut() {
            let uid = d.live.metadata.uid.clone().unwrap_or_default();
            let owned = by_owner.get(uid.as_str()).map_or(&[][..], Vec::as_slice);
            if let Some(status) = deployment::status(&d.live, owned, now()) {
                d.live.status = Some(status);
            }
        }
    }

    /// When the first Deployment's rollout runs past its progress deadline (then a round
    /// must mark it `ProgressDeadlineExceeded`, Pods changing or not).
    pub fn next_progress_deadline(&self) -> Option<Instant> {
        let now = jiff::Timestamp::now();
        self.deployments
            .values()
            .filter_map(|d| deployment::progress_deadline_at(&d.live))
            .min()
            .map(|at| {
                // Just past it: the deadline is exceeded once it is behind.
                let wait = at.duration_since(now).max(jiff::SignedDuration::ZERO);
                Instant::now()
                    + std::time::Duration::try_from(wait).unwrap_or_default()
                    + std::time::Duration::from_millis(10)
            })
    }
}
