//! The Progressing condition as the Deployment controller's `syncRolloutStatus` keeps it.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;

fn deployment(replicas: i32, deadline: Option<i32>) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "shop", "generation": 2},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": deadline,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "v1"}]}},
        },
    }))
    .unwrap()
}

fn new_rs(d: &Deployment, replicas: i32, ready: i32) -> ReplicaSet {
    let hash = template_hash(&d.spec.as_ref().unwrap().template);
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("web-{hash}")),
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
    Time(jiff::Timestamp::from_second(1_800_000_000 + second).unwrap())
}

fn progressing(s: &DeploymentStatus) -> (String, String, Option<Time>, Option<Time>) {
    let c = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        .expect("a Progressing condition");
    (
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.last_update_time.clone(),
        c.last_transition_time.clone(),
    )
}

/// One step with the new ReplicaSet at `replicas` Pods, `ready` of them Ready: the status
/// computed at `now` becomes the Deployment's.
fn step(d: &mut Deployment, replicas: i32, ready: i32, now: i64) -> DeploymentStatus {
    let rs = new_rs(d, replicas, ready);
    let s = status(d, &[&rs], at(now)).unwrap();
    d.status = Some(s.clone());
    s
}

#[test]
fn a_rollout_goes_created_updated_available_and_progress_moves_the_update_time() {
    let mut d = deployment(2, None);
    let hash = template_hash(&d.spec.as_ref().unwrap().template);
    new_replica_set_created(&mut d.status, &format!("web-{hash}"), at(0));
    let (status, reason, _, _) = progressing(d.status.as_ref().unwrap());
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "NewReplicaSetCreated")
    );
    let message = d.status.as_ref().unwrap().conditions.as_ref().unwrap()[0]
        .message
        .clone();
    assert_eq!(
        message,
        Some(format!("Created new replica set \"web-{hash}\""))
    );

    // Two Pods made, none ready: progress.
    let s = step(&mut d, 2, 0, 10);
    assert_eq!(
        progressing(&s),
        (
            "True".into(),
            "ReplicaSetUpdated".into(),
            Some(at(10)),
            Some(at(0))
        )
    );
    // Nothing new: the update time stays.
    let s = step(&mut d, 2, 0, 20);
    assert_eq!(progressing(&s).2, Some(at(10)));
    // One ready: progress again, the update time moves, the transition time stays.
    let s = step(&mut d, 2, 1, 30);
    assert_eq!(
        progressing(&s),
        (
            "True".into(),
            "ReplicaSetUpdated".into(),
            Some(at(30)),
            Some(at(0))
        )
    );
    // Both ready: complete.
    let s = step(&mut d, 2, 2, 40);
    assert_eq!(progressing(&s).1, "NewReplicaSetAvailable");
    assert_eq!(s.observed_generation, Some(2));
    // Complete stays complete, times kept.
    let again = step(&mut d, 2, 2, 50);
    assert_eq!(progressing(&again), progressing(&s));
    assert_eq!(progress_deadline_at(&d), None, "no deadline once complete");
}

#[test]
fn no_progress_for_the_deadline_is_progress_deadline_exceeded() {
    let mut d = deployment(2, Some(30));
    let hash = template_hash(&d.spec.as_ref().unwrap().template);
    new_replica_set_created(&mut d.status, &format!("web-{hash}"), at(0));
    step(&mut d, 2, 0, 1);
    assert_eq!(
        progress_deadline_at(&d),
        Some(jiff::Timestamp::from_second(1_800_000_031).unwrap())
    );
    let s = step(&mut d, 2, 0, 31);
    assert_eq!(
        progressing(&s).1,
        "ReplicaSetUpdated",
        "at the deadline, not past it"
    );
    let s = step(&mut d, 2, 0, 32);
    assert_eq!(
        progressing(&s),
        (
            "False".into(),
            "ProgressDeadlineExceeded".into(),
            Some(at(32)),
            Some(at(32))
        )
    );
    let message = s.conditions.as_ref().unwrap()[1].message.clone().unwrap();
    assert_eq!(
        message,
        format!("ReplicaSet \"web-{hash}\" has timed out progressing.")
    );
    // Timed out stays so until progress is made.
    let s = step(&mut d, 2, 0, 100);
    assert_eq!(progressing(&s).1, "ProgressDeadlineExceeded");
    assert_eq!(progress_deadline_at(&d), None);
    let s = step(&mut d, 2, 1, 110);
    assert_eq!(
        progressing(&s),
        (
            "True".into(),
            "ReplicaSetUpdated".into(),
            Some(at(110)),
            Some(at(110))
        )
    );
}

#[test]
fn without_a_deadline_there_is_no_progressing_condition_and_a_found_set_is_said_so() {
    let mut d = deployment(1, Some(i32::MAX));
    let s = step(&mut d, 1, 0, 0);
    let types: Vec<&str> = s
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(types, ["Available"]);
    // With the default deadline and no condition yet, nor any progress: found.
    let mut d = deployment(1, None);
    d.status = Some(DeploymentStatus {
        replicas: Some(1),
        updated_replicas: Some(1),
        ready_replicas: Some(0),
        ..DeploymentStatus::default()
    });
    let s = step(&mut d, 1, 0, 0);
    assert_eq!(progressing(&s).1, "FoundNewReplicaSet");
}
