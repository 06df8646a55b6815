use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

fn deployment(replicas: i32, image: &str, surge: &str, unavailable: &str) -> Deployment {
    let v = |s: &str| match s.parse::<i32>() {
        Ok(n) => IntOrString::Int(n),
        Err(_) => IntOrString::String(s.into()),
    };
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([("app".to_owned(), "web".to_owned())].into()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "web".into(),
                        image: Some(image.into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(v(surge)),
                    max_unavailable: Some(v(unavailable)),
                }),
            }),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// Applies a plan the way the runtime does: Pods follow replicas at once; new Pods become
/// available only when `ready` says so.
/// `d` with its container's image changed: a new template.
fn with_image(d: &Deployment, image: &str) -> Deployment {
    let mut d = d.clone();
    let template = d.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    template.containers[0].image = Some(image.into());
    d
}

fn apply(sets: &mut Vec<Owned>, plan: &Plan, ready: bool) {
    if let Some((hash, revision, replicas)) = &plan.create {
        sets.push(Owned {
            name: format!("web-{hash}"),
            hash: hash.clone(),
            revision: *revision,
            replicas: *replicas,
            pods: 0,
            available: 0,
        });
    }
    for (name, n) in &plan.scale {
        sets.iter_mut().find(|s| &s.name == name).unwrap().replicas = *n;
    }
    for (name, r) in &plan.revise {
        sets.iter_mut().find(|s| &s.name == name).unwrap().revision = *r;
    }
    sets.retain(|s| !plan.delete.contains(&s.name));
    for s in sets.iter_mut() {
        s.pods = s.replicas;
        if ready {
            s.available = s.replicas;
        } else {
            s.available = s.available.min(s.replicas);
        }
    }
}

fn run_until_stable(d: &Deployment, sets: &mut Vec<Owned>, ready: bool) -> Vec<(i32, i32)> {
    let spec = d.spec.as_ref().unwrap();
    let want = replicas(spec);
    let (surge, unavailable) = surge_and_unavailable(spec);
    let mut trace = Vec::new();
    for _ in 0..50 {
        let plan = reconcile(d, sets);
        if plan == Plan::default() {
            return trace;
        }
        apply(sets, &plan, ready);
        let total: i32 = sets.iter().map(|s| s.replicas).sum();
        let available: i32 = sets.iter().map(|s| s.available).sum();
        assert!(total <= want + surge, "surge exceeded: {sets:?}");
        if ready {
            assert!(
                available >= want - unavailable,
                "too few available: {sets:?}"
            );
        }
        trace.push((total, available));
    }
    panic!("no fixed point: {sets:?}");
}

#[test]
fn hash_is_stable_and_ignores_its_own_label() {
    let d = deployment(3, "a", "1", "0");
    let t = &d.spec.as_ref().unwrap().template;
    let h = template_hash(t);
    assert_eq!(h, template_hash(t));
    assert!(h.bytes().all(|b| ALPHANUMS.contains(&b)), "{h}");
    let mut labelled = t.clone();
    labelled
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(TEMPLATE_HASH_LABEL.into(), h.clone());
    assert_eq!(template_hash(&labelled), h);
    let other = deployment(3, "b", "1", "0");
    assert_ne!(template_hash(&other.spec.unwrap().template), h);
}

#[test]
fn surge_and_unavailable_round_as_kubernetes() {
    let d = deployment(10, "a", "25%", "25%");
    assert_eq!(surge_and_unavailable(d.spec.as_ref().unwrap()), (3, 2));
    let d = deployment(3, "a", "0", "0");
    assert_eq!(surge_and_unavailable(d.spec.as_ref().unwrap()), (0, 1));
    let mut d = deployment(4, "a", "1", "1");
    d.spec.as_mut().unwrap().strategy = None;
    assert_eq!(surge_and_unavailable(d.spec.as_ref().unwrap()), (1, 1));
}

#[test]
fn first_rollout_creates_one_replica_set_at_full_size() {
    let d = deployment(3, "a", "25%", "25%");
    let mut sets = Vec::new();
    run_until_stable(&d, &mut sets, true);
    assert_eq!(sets.len(), 1);
    assert_eq!((sets[0].revision, sets[0].replicas), (1, 3));
}

#[test]
fn rolling_update_keeps_capacity_and_surges_at_most_max_surge() {
    for (surge, unavailable) in [("1", "0"), ("0", "1"), ("25%", "25%"), ("2", "1")] {
        let d1 = deployment(4, "a", surge, unavailable);
        let mut sets = Vec::new();
        run_until_stable(&d1, &mut sets, true);
        let d2 = deployment(4, "b", surge, unavailable);
        let trace = run_until_stable(&d2, &mut sets, true);
        assert!(trace.len() >= 2, "a rollout takes steps: {trace:?}");
        let new = sets.iter().find(|s| s.revision == 2).unwrap();
        assert_eq!(new.replicas, 4);
        let old = sets.iter().find(|s| s.revision == 1).unwrap();
        assert_eq!(old.replicas, 0, "the old set is kept at zero as history");
    }
}

#[test]
fn a_rollout_whose_pods_never_get_ready_keeps_the_old_pods() {
    let d1 = deployment(3, "a", "1", "0");
    let mut sets = Vec::new();
    run_until_stable(&d1, &mut sets, true);
    let d2 = deployment(3, "broken", "1", "0");
    run_until_stable(&d2, &mut sets, false);
    let old = sets.iter().find(|s| s.revision == 1).unwrap();
    let new = sets.iter().find(|s| s.revision == 2).unwrap();
    assert_eq!((old.replicas, old.available), (3, 3), "{sets:?}");
    assert_eq!(new.replicas, 1, "only the surge: {sets:?}");
}

#[test]
fn rollback_revives_the_old_set_with_a_new_revision() {
    let mut sets = Vec::new();
    run_until_stable(&deployment(2, "a", "1", "0"), &mut sets, true);
    run_until_stable(&deployment(2, "b", "1", "0"), &mut sets, true);
    run_until_stable(&deployment(2, "a", "1", "0"), &mut sets, true);
    assert_eq!(sets.len(), 2, "no third set for a template seen before");
    let a = sets.iter().find(|s| s.replicas == 2).unwrap();
    assert_eq!(a.revision, 3);
}

#[test]
fn scaling_up_and_down_touches_only_the_current_set() {
    let mut sets = Vec::new();
    run_until_stable(&deployment(2, "a", "1", "0"), &mut sets, true);
    run_until_stable(&deployment(5, "a", "1", "0"), &mut sets, true);
    assert_eq!(sets[0].replicas, 5);
    run_until_stable(&deployment(1, "a", "1", "0"), &mut sets, true);
    assert_eq!(sets[0].replicas, 1);
}

#[test]
fn recreate_waits_for_old_pods_to_go() {
    let mut d1 = deployment(2, "a", "1", "0");
    d1.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    let mut sets = Vec::new();
    run_until_stable(&d1, &mut sets, true);
    let d2 = with_image(&d1, "b");
    let plan = reconcile(&d2, &sets);
    assert_eq!(plan.scale, vec![(sets[0].name.clone(), 0)]);
    assert_eq!(
        plan.create.as_ref().map(|c| c.2),
        Some(0),
        "not before the old Pods are gone"
    );
    sets[0].replicas = 0; // pods still terminating
    let mut with_new = sets.clone();
    apply(
        &mut with_new,
        &Plan {
            create: plan.create.clone(),
            ..Plan::default()
        },
        true,
    );
    with_new[0].pods = 2;
    let plan = reconcile(&d2, &with_new);
    assert!(plan.scale.is_empty(), "{plan:?}");
    with_new[0].pods = 0;
    let plan = reconcile(&d2, &with_new);
    assert_eq!(plan.scale, vec![(with_new[1].name.clone(), 2)]);
}

#[test]
fn history_is_bounded() {
    let mut d = deployment(1, "v0", "1", "0");
    d.spec.as_mut().unwrap().revision_history_limit = Some(2);
    let mut sets = Vec::new();
    for v in 0..6 {
        let d = with_image(&d, &format!("v{v}"));
        run_until_stable(&d, &mut sets, true);
    }
    assert_eq!(sets.len(), 3, "the current set and two old ones: {sets:?}");
    let mut revisions: Vec<u64> = sets.iter().map(|s| s.revision).collect();
    revisions.sort_unstable();
    assert_eq!(revisions, vec![4, 5, 6]);
}

#[test]
fn a_paused_deployment_scales_but_does_not_roll_out() {
    let mut sets = Vec::new();
    run_until_stable(&deployment(2, "a", "1", "0"), &mut sets, true);
    let mut paused = deployment(4, "b", "1", "0");
    paused.spec.as_mut().unwrap().paused = Some(true);
    let plan = reconcile(&paused, &sets);
    assert_eq!(plan.create, None, "no new ReplicaSet while paused");
    assert_eq!(plan.scale, vec![(sets[0].name.clone(), 4)], "but scaled");
}

/// A ReplicaSet of `d`'s template (`current`) or of another, with `replicas` Pods of which
/// `ready` are Ready.
fn owned(d: &Deployment, current: bool, replicas: i32, ready: i32) -> ReplicaSet {
    use k8s_openapi::api::apps::v1::ReplicaSetStatus;
    let hash = if current {
        template_hash(&d.spec.as_ref().unwrap().template)
    } else {
        "old".to_owned()
    };
    ReplicaSet {
        metadata: ObjectMeta {
            labels: Some([(TEMPLATE_HASH_LABEL.to_owned(), hash)].into()),
            ..ObjectMeta::default()
        },
        status: Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(ready),
            ..ReplicaSetStatus::default()
        }),
        ..ReplicaSet::default()
    }
}

fn at(second: i64) -> Time {
    Time(jiff::Timestamp::from_second(second).unwrap())
}

fn condition<'a>(s: &'a DeploymentStatus, type_: &str) -> &'a DeploymentCondition {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .unwrap()
}

#[test]
fn a_deployment_whose_pods_are_all_ready_on_its_template_is_complete() {
    let mut d = deployment(3, "v1", "25%", "25%");
    d.metadata.generation = Some(4);
    let rs = owned(&d, true, 3, 3);
    let s = status(&d, &[&rs], at(100)).unwrap();
    assert_eq!(s.observed_generation, Some(4));
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    assert_eq!(s.unavailable_replicas, Some(0));
    let available = condition(&s, "Available");
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );
    let progressing = condition(&s, "Progressing");
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    let hash = template_hash(&d.spec.as_ref().unwrap().template);
    assert_eq!(
        progressing.message.as_deref(),
        Some(format!("ReplicaSet \"web-{hash}\" has successfully progressed.").as_str())
    );
}

#[test]
fn a_rollout_under_way_counts_both_replica_sets_and_is_progressing() {
    // 4 wanted, at most 1 unavailable: 3 old ready and 1 new not yet ready is available.
    let d = deployment(4, "v2", "1", "1");
    let old = owned(&d, false, 3, 3);
    let new = owned(&d, true, 2, 0);
    let s = status(&d, &[&old, &new], at(100)).unwrap();
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.unavailable_replicas
        ),
        (Some(5), Some(2), Some(3), Some(1))
    );
    assert_eq!(condition(&s, "Available").status, "True");
    assert_eq!(
        condition(&s, "Progressing").reason.as_deref(),
        Some("ReplicaSetUpdated")
    );
    // Two not ready is more than the one allowed: not available.
    let fewer = owned(&d, false, 2, 2);
    let s = status(&d, &[&fewer, &new], at(100)).unwrap();
    let available = condition(&s, "Available");
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("False", Some("MinimumReplicasUnavailable"))
    );
}

#[test]
fn a_condition_keeps_its_times_until_its_status_or_reason_changes() {
    let mut d = deployment(1, "v1", "25%", "25%");
    let ready = owned(&d, true, 1, 1);
    d.status = status(&d, &[&ready], at(100));
    let again = status(&d, &[&ready], at(200)).unwrap();
    assert_eq!(
        condition(&again, "Available").last_transition_time,
        Some(at(100)),
        "unchanged: kept"
    );
    let not_ready = owned(&d, true, 1, 0);
    let changed = status(&d, &[&not_ready], at(300)).unwrap();
    assert_eq!(
        condition(&changed, "Available").last_transition_time,
        Some(at(300)),
        "flipped: new time"
    );
}

#[test]
fn a_deployment_without_a_spec_has_no_status_to_write() {
    let d = Deployment::default();
    assert_eq!(status(&d, &[], at(1)), None);
}
