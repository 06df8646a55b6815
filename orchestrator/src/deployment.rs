//! The Deployment controller, as a pure function: from a Deployment and the ReplicaSets it
//! owns (with how many of their Pods exist and are available), what to create, scale and
//! delete. It follows the Kubernetes controller (`pkg/controller/deployment`): one
//! ReplicaSet per pod template, named by the template's hash; a rolling update scales the new
//! one up within `maxSurge` and the old ones down within `maxUnavailable`, counting only
//! available (ready) Pods, so a rollout whose new Pods never become ready stops there and
//! never takes the old ones away; `Recreate` scales the old ones to zero first and waits
//! until their Pods are gone; old ReplicaSets at zero are kept as revision history up to
//! `revisionHistoryLimit`. A Pod counts as available when Ready (`minReadySeconds` is not
//! applied).

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, ReplicaSet,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label that ties a ReplicaSet and its Pods to one pod template.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The annotation holding a ReplicaSet's revision within its Deployment.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The Deployment annotation copied to each new ReplicaSet, shown by `rollout history`.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";

/// What the controller sees of one owned ReplicaSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    pub name: String,
    pub hash: String,
    pub revision: u64,
    /// `spec.replicas`.
    pub replicas: i32,
    /// Pods that exist and are not terminating.
    pub pods: i32,
    /// Of those, the ready ones.
    pub available: i32,
}

/// What to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// A ReplicaSet to create for the current template: (hash, revision, replicas).
    pub create: Option<(String, u64, i32)>,
    /// New `spec.replicas` of existing ReplicaSets, by name.
    pub scale: Vec<(String, i32)>,
    /// New revisions (a rollback makes an old ReplicaSet current again).
    pub revise: Vec<(String, u64)>,
    /// ReplicaSets past the revision history, to delete.
    pub delete: Vec<String>,
}

/// The hash that names a pod template, as Kubernetes spells it: FNV-1a (32 bits) over the
/// template, its decimal form mapped onto the alphabet of generated names (no vowels, no
/// look-alike digits).
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(TEMPLATE_HASH_LABEL);
    }
    let bytes = serde_json::to_vec(&template).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    safe_encode(&h.to_string())
}

/// The characters Kubernetes generates names from.
pub const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `rand.SafeEncodeString`: each byte onto [`ALPHANUMS`].
fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// `spec.replicas`, 1 when absent.
pub fn replicas(spec: &DeploymentSpec) -> i32 {
    spec.replicas.unwrap_or(1).max(0)
}

/// A count or a percentage of `total`, rounded up (surge) or down (unavailable).
fn scaled(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => scaled(Some(&IntOrString::String("25%".into())), total, round_up),
        Some(IntOrString::Int(n)) => (*n).max(0),
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let prod = pct * i64::from(total);
            let v = if round_up {
                (prod + 99) / 100
            } else {
                prod / 100
            };
            i32::try_from(v).unwrap_or(i32::MAX)
        }
    }
}

/// `maxSurge` and `maxUnavailable` resolved against `replicas`; both zero would deadlock a
/// rollout, so unavailable becomes 1 then, as Kubernetes does.
pub fn surge_and_unavailable(spec: &DeploymentSpec) -> (i32, i32) {
    let total = replicas(spec);
    let ru = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), total, true);
    let mut unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), total, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(total))
}

fn recreate(spec: &DeploymentSpec) -> bool {
    spec.strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_some_and(|t| t == "Recreate")
}

/// One step of the controller. `owned` is every ReplicaSet the Deployment owns.
pub fn reconcile(deployment: &Deployment, owned: &[Owned]) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = &deployment.spec else {
        return plan;
    };
    let want = replicas(spec);
    let hash = template_hash(&spec.template);
    let max_revision = owned.iter().map(|o| o.revision).max().unwrap_or(0);
    // The working view: replicas as the plan leaves them.
    let mut sets: Vec<Owned> = owned.to_vec();
    sets.sort_by_key(|o| o.revision);
    let new_index = sets.iter().position(|o| o.hash == hash);
    if spec.paused == Some(true) {
        // Paused: no rollout, but scaling still applies (to the one active ReplicaSet;
        // Kubernetes' proportional scaling of several during a paused rollout is not done).
        let active: Vec<usize> = (0..sets.len()).filter(|&i| sets[i].replicas > 0).collect();
        let target = match active.as_slice() {
            [i] => Some(*i),
            [] => new_index,
            _ => None,
        };
        if let Some(i) = target.filter(|&i| sets[i].replicas != want) {
            plan.scale.push((sets[i].name.clone(), want));
        }
        return plan;
    }

    let new_index = match new_index {
        Some(i) => {
            if sets[i].revision < max_revision {
                sets[i].revision = max_revision + 1;
                plan.revise.push((sets[i].name.clone(), max_revision + 1));
            }
            i
        }
        None => {
            sets.push(Owned {
                name: String::new(),
                hash: hash.clone(),
                revision: max_revision + 1,
                replicas: 0,
                pods: 0,
                available: 0,
            });
            sets.len() - 1
        }
    };

    if recreate(spec) {
        step_recreate(&mut sets, new_index, want);
    } else {
        step_rolling(spec, &mut sets, new_index, want);
    }

    // History: old ReplicaSets at zero with no Pods left, oldest first, beyond the limit.
    let limit = usize::try_from(spec.revision_history_limit.unwrap_or(10).max(0)).unwrap_or(0);
    let idle: Vec<&Owned> = sets
        .iter()
        .enumerate()
        .filter(|(i, o)| *i != new_index && o.replicas == 0 && o.pods == 0 && !o.name.is_empty())
        .map(|(_, o)| o)
        .collect();
    if idle.len() > limit {
        plan.delete = idle[..idle.len() - limit]
            .iter()
            .map(|o| o.name.clone())
            .collect();
    }

    for set in &sets {
        if set.name.is_empty() {
            plan.create = Some((set.hash.clone(), set.revision, set.replicas));
        } else if let Some(before) = owned.iter().find(|o| o.name == set.name)
            && before.replicas != set.replicas
        {
            plan.scale.push((set.name.clone(), set.replicas));
        }
    }
    plan
}

fn step_recreate(sets: &mut [Owned], new_index: usize, want: i32) {
    let mut old_pods = 0;
    for (i, set) in sets.iter_mut().enumerate() {
        if i != new_index {
            set.replicas = 0;
            old_pods += set.pods;
        }
    }
    if old_pods == 0 {
        sets[new_index].replicas = want;
    }
}

fn step_rolling(spec: &DeploymentSpec, sets: &mut [Owned], new_index: usize, want: i32) {
    let (surge, unavailable) = surge_and_unavailable(spec);
    // reconcileNewReplicaSet
    let new = &sets[new_index];
    if new.replicas > want {
        sets[new_index].replicas = want;
    } else if new.replicas < want {
        let total = sets.iter().fold(0i32, |a, s| a.saturating_add(s.replicas));
        let room = want.saturating_add(surge).saturating_sub(total).max(0);
        sets[new_index].replicas += room.min(want - new.replicas);
    }
    // reconcileOldReplicaSets
    let old_replicas: i32 = sets
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != new_index)
        .map(|(_, s)| s.replicas)
        .sum();
    if old_replicas == 0 {
        return;
    }
    let all = sets.iter().fold(0i32, |a, s| a.saturating_add(s.replicas));
    let min_available = want - unavailable;
    let new = &sets[new_index];
    let new_unavailable = (new.replicas - new.available).max(0);
    let mut budget = all
        .saturating_sub(min_available)
        .saturating_sub(new_unavailable);
    if budget <= 0 {
        return;
    }
    // First the old Pods that are not available anyway (cleanupUnhealthyReplicas).
    for (i, set) in sets.iter_mut().enumerate() {
        if i == new_index || budget == 0 {
            continue;
        }
        let unhealthy = (set.replicas - set.available).max(0).min(budget);
        set.replicas -= unhealthy;
        budget -= unhealthy;
    }
    // Then available ones, keeping at least minAvailable available in all.
    let available: i32 = sets.iter().map(|s| s.available.min(s.replicas)).sum();
    let mut down = (available - min_available).max(0);
    for (i, set) in sets.iter_mut().enumerate() {
        if i == new_index || down == 0 {
            continue;
        }
        let n = set.replicas.min(down);
        set.replicas -= n;
        down -= n;
    }
}

#[cfg(test)]
mod tests;

/// `spec.progressDeadlineSeconds` as the API server defaults it (600); `None` when it is
/// `i32::MAX`, which means no deadline.
pub fn progress_deadline(spec: &DeploymentSpec) -> Option<std::time::Duration> {
    match spec.progress_deadline_seconds {
        Some(i32::MAX) => None,
        Some(s) => Some(std::time::Duration::from_secs(
            u64::try_from(s).unwrap_or(0),
        )),
        None => Some(std::time::Duration::from_secs(600)),
    }
}

/// The Deployment controller's words for the Progressing condition.
pub mod reason {
    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
}

/// A condition as `SetDeploymentCondition` leaves it: one with the same status and reason as
/// the old one is the old one; else it is new at `now`, keeping the old transition time when
/// only the reason changed.
fn set_condition(
    old: Option<&DeploymentCondition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    now: &Time,
) -> DeploymentCondition {
    let status = if ok { "True" } else { "False" };
    if let Some(old) = old.filter(|c| c.status == status && c.reason.as_deref() == Some(reason)) {
        return old.clone();
    }
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: match old {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Some(now.clone()),
        },
        last_update_time: Some(now.clone()),
    }
}

fn find<'a>(status: Option<&'a DeploymentStatus>, type_: &str) -> Option<&'a DeploymentCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// What the controller does on creating the new ReplicaSet of a rollout: Progressing is
/// `NewReplicaSetCreated`, from `now`.
pub fn new_replica_set_created(
    status: &mut Option<DeploymentStatus>,
    replica_set: &str,
    now: Time,
) {
    let status = status.get_or_insert_with(DeploymentStatus::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let old = conditions.iter().position(|c| c.type_ == "Progressing");
    let condition = set_condition(
        old.map(|i| &conditions[i]),
        "Progressing",
        true,
        reason::NEW_RS_CREATED,
        format!("Created new replica set \"{replica_set}\""),
        &now,
    );
    match old {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// The status the Deployment controller writes for `deployment`, from the ReplicaSets it owns
/// (with their statuses) and the status it had, at `now`: the replica counts,
/// `observedGeneration`, and the conditions as `syncRolloutStatus` keeps them: `Available`
/// (`MinimumReplicasAvailable` or `MinimumReplicasUnavailable`) and `Progressing`
/// (`NewReplicaSetCreated` from [`new_replica_set_created`], `FoundNewReplicaSet`,
/// `ReplicaSetUpdated` with its update time moved on each progress, `NewReplicaSetAvailable`
/// once complete, and `ProgressDeadlineExceeded` when no progress was made for
/// `progressDeadlineSeconds`). `None` for a Deployment without a spec.
pub fn status(
    deployment: &Deployment,
    owned: &[&ReplicaSet],
    now: Time,
) -> Option<DeploymentStatus> {
    let spec = deployment.spec.as_ref()?;
    let want = replicas(spec);
    let hash = template_hash(&spec.template);
    let (_, unavailable) = surge_and_unavailable(spec);
    let (mut total, mut updated, mut ready, mut found) = (0, 0, 0, false);
    for rs in owned {
        let s = rs.status.as_ref();
        let n = s.map_or(0, |s| s.replicas);
        total += n;
        ready += s.and_then(|s| s.ready_replicas).unwrap_or(0);
        if rs
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(TEMPLATE_HASH_LABEL))
            == Some(&hash)
        {
            updated += n;
            found = true;
        }
    }
    let old = deployment.status.as_ref();
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let new_rs = format!("{name}-{hash}");
    let mut status = DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: Some(total),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        unavailable_replicas: Some((want - ready).max(0)),
        ..DeploymentStatus::default()
    };
    let available = if ready >= want - unavailable {
        set_condition(
            find(old, "Available"),
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            &now,
        )
    } else {
        set_condition(
            find(old, "Available"),
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            &now,
        )
    };
    let progressing = progress_deadline(spec).and_then(|deadline| {
        progressing(
            old,
            &status,
            want,
            found.then_some(new_rs.as_str()),
            deadline,
            &now,
        )
        .or_else(|| find(old, "Progressing").cloned())
    });
    status.conditions = Some(std::iter::once(available).chain(progressing).collect());
    Some(status)
}

/// The Progressing condition `syncRolloutStatus` sets, if it sets one, given the old status
/// and the new counts. `new_rs` names the new ReplicaSet when it exists.
fn progressing(
    old: Option<&DeploymentStatus>,
    new: &DeploymentStatus,
    want: i32,
    new_rs: Option<&str>,
    deadline: std::time::Duration,
    now: &Time,
) -> Option<DeploymentCondition> {
    let cond = find(old, "Progressing");
    let count = |s: Option<&DeploymentStatus>, f: fn(&DeploymentStatus) -> Option<i32>| {
        s.and_then(f).unwrap_or(0)
    };
    let (replicas, updated, ready) = (
        new.replicas.unwrap_or(0),
        new.updated_replicas.unwrap_or(0),
        new.ready_replicas.unwrap_or(0),
    );
    let about = |what: &str| match new_rs {
        Some(rs) => format!("ReplicaSet \"{rs}\" {what}"),
        None => format!("Deployment {what}"),
    };
    let already_complete = replicas == updated
        && cond.is_some_and(|c| c.reason.as_deref() == Some(reason::NEW_RS_AVAILABLE));
    if already_complete {
        return None;
    }
    let complete = updated == want && replicas == want && ready == want;
    if complete {
        return Some(set_condition(
            cond,
            "Progressing",
            true,
            reason::NEW_RS_AVAILABLE,
            about("has successfully progressed."),
            now,
        ));
    }
    let old_updated = count(old, |s| s.updated_replicas);
    let old_old = count(old, |s| s.replicas) - old_updated;
    let progressed = updated > old_updated
        || replicas - updated < old_old
        || ready > count(old, |s| s.ready_replicas)
        || ready > count(old, |s| s.available_replicas);
    if progressed {
        // Progress moves the update time even when the reason stays.
        return Some(DeploymentCondition {
            type_: "Progressing".into(),
            status: "True".into(),
            reason: Some(reason::RS_UPDATED.into()),
            message: Some(about("is progressing.")),
            last_transition_time: match cond {
                Some(c) if c.status == "True" => c.last_transition_time.clone(),
                _ => Some(now.clone()),
            },
            last_update_time: Some(now.clone()),
        });
    }
    let timed_out = cond.is_some_and(|c| {
        c.reason.as_deref() == Some(reason::TIMED_OUT)
            || c.last_update_time.as_ref().is_some_and(|from| {
                let deadline =
                    jiff::SignedDuration::try_from(deadline).unwrap_or(jiff::SignedDuration::MAX);
                from.0.checked_add(deadline).is_ok_and(|end| end < now.0)
            })
    });
    if timed_out {
        return Some(set_condition(
            cond,
            "Progressing",
            false,
            reason::TIMED_OUT,
            about("has timed out progressing."),
            now,
        ));
    }
    match (cond, new_rs) {
        (None, Some(rs)) => Some(set_condition(
            None,
            "Progressing",
            true,
            reason::FOUND_NEW_RS,
            format!("Found new replica set \"{rs}\""),
            now,
        )),
        _ => None,
    }
}

/// When the Progressing condition of this status runs out of time, if it can: its last update
/// plus the deadline, while the rollout is neither complete nor timed out already.
pub fn progress_deadline_at(deployment: &Deployment) -> Option<jiff::Timestamp> {
    let deadline = progress_deadline(deployment.spec.as_ref()?)?;
    let cond = find(deployment.status.as_ref(), "Progressing")?;
    if matches!(
        cond.reason.as_deref(),
        Some(reason::NEW_RS_AVAILABLE | reason::TIMED_OUT)
    ) {
        return None;
    }
    let from = cond.last_update_time.as_ref()?.0;
    from.checked_add(jiff::SignedDuration::try_from(deadline).ok()?)
        .ok()
}

#[cfg(test)]
mod status_tests;
