//! The ReplicaSet controller, as a pure function: how many Pods to create, and which to
//! delete, so that `replicas` Pods run. Pods being deleted and Pods that have finished
//! (`Succeeded`, `Failed`) do not count, as in Kubernetes; when there are too many, the least
//! useful go first (`ActivePodsWithRanks`): not yet running, then not ready, then the ones
//! that restarted most, then the youngest.

/// What the controller sees of one owned Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    /// Has a deletion timestamp.
    pub deleting: bool,
    /// `Succeeded` or `Failed`.
    pub finished: bool,
    /// Some container is running.
    pub running: bool,
    pub ready: bool,
    pub restarts: i32,
    /// Creation order: larger is younger.
    pub created: u64,
}

/// What to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub create: usize,
    pub delete: Vec<String>,
}

/// Pods that count towards `replicas`.
pub fn active(pods: &[PodView]) -> impl Iterator<Item = &PodView> {
    pods.iter().filter(|p| !p.deleting && !p.finished)
}

pub fn reconcile(replicas: i32, pods: &[PodView]) -> Plan {
    let want = usize::try_from(replicas.max(0)).unwrap_or(0);
    let mut active: Vec<&PodView> = active(pods).collect();
    if active.len() < want {
        return Plan {
            create: want - active.len(),
            delete: Vec::new(),
        };
    }
    let extra = active.len() - want;
    active.sort_by_key(|p| {
        (
            p.running,
            p.ready,
            std::cmp::Reverse(p.restarts),
            std::cmp::Reverse(p.created),
        )
    });
    Plan {
        create: 0,
        delete: active[..extra].iter().map(|p| p.name.clone()).collect(),
    }
}

#[cfg(test)]
mod tests;
