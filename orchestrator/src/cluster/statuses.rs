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
            let Some(spec) = d.live.spec.as_ref() else {
                continue;
            };
            let want = deployment::replicas(spec);
            let hash = deployment::template_hash(&spec.template);
            let (_, unavailable) = deployment::surge_and_unavailable(spec);
            let (mut replicas, mut updated, mut ready) = (0, 0, 0);
            for rs in by_owner.get(uid.as_str()).into_iter().flatten() {
                let s = rs.status.as_ref();
                let n = s.map_or(0, |s| s.replicas);
                replicas += n;
                ready += s.and_then(|s| s.ready_replicas).unwrap_or(0);
                if rs
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(TEMPLATE_HASH_LABEL))
                    == Some(&hash)
                {
                    updated += n;
                }
            }
            let old = d.live.status.take().unwrap_or_default();
            let condition = |type_: &str, ok: bool, reason: &str, message: String| {
                let status = if ok { "True" } else { "False" };
                let kept = old.conditions.iter().flatten().find(|c| {
                    c.type_ == type_ && c.status == status && c.reason.as_deref() == Some(reason)
                });
                DeploymentCondition {
                    type_: type_.into(),
                    status: status.into(),
                    reason: Some(reason.into()),
                    message: Some(message),
                    last_transition_time: kept
                        .map_or_else(|| Some(now()), |c| c.last_transition_time.clone()),
                    last_update_time: kept
                        .map_or_else(|| Some(now()), |c| c.last_update_time.clone()),
                }
            };
            let available_ok = ready >= want - unavailable;
            let complete = updated == want && replicas == want && ready == want;
            let name = d.live.metadata.name.clone().unwrap_or_default();
            d.live.status = Some(DeploymentStatus {
                observed_generation: d.live.metadata.generation,
                replicas: Some(replicas),
                updated_replicas: Some(updated),
                ready_replicas: Some(ready),
                available_replicas: Some(ready),
                unavailable_replicas: Some((want - ready).max(0)),
                conditions: Some(vec![
                    condition(
                        "Available",
                        available_ok,
                        if available_ok {
                            "MinimumReplicasAvailable"
                        } else {
                            "MinimumReplicasUnavailable"
                        },
                        if available_ok {
                            "Deployment has minimum availability.".into()
                        } else {
                            "Deployment does not have minimum availability.".into()
                        },
                    ),
                    condition(
                        "Progressing",
                        true,
                        if complete {
                            "NewReplicaSetAvailable"
                        } else {
                            "ReplicaSetUpdated"
                        },
                        format!(
                            "ReplicaSet \"{name}-{hash}\" {}",
                            if complete {
                                "has successfully progressed."
                            } else {
                                "is progressing."
                            }
                        ),
                    ),
                ]),
                ..DeploymentStatus::default()
            });
        }
    }
}
