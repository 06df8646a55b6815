#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ferry_objects::files::Reading;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{EventType, Involved, Recorder, replica_set_pod, scaling_replica_set, source};
use crate::apiserver::Store;
use crate::apiserver::resources;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn pod() -> Involved {
    Involved::pod("shop", "web-1", "uid-1")
}

#[test]
fn the_same_event_again_counts_up_and_moves_its_last_timestamp() {
    let r = Recorder::new(None, "node-a");
    let unhealthy = |now| {
        r.record(
            EventType::Warning,
            pod().container("web"),
            source::KUBELET,
            "Unhealthy",
            "Readiness probe failed: HTTP probe failed with statuscode: 503".into(),
            now,
        );
    };
    unhealthy(at(0));
    unhealthy(at(10));
    unhealthy(at(20));
    r.record(
        EventType::Normal,
        pod(),
        source::SCHEDULER,
        "Scheduled",
        "Successfully assigned shop/web-1 to node-a".into(),
        at(25),
    );
    let events = r.events(at(30));
    assert_eq!(events.len(), 2, "{events:#?}");
    let e = &events[0];
    assert_eq!(e["kind"], "Event");
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["reason"], "Unhealthy");
    assert_eq!(e["count"], 3);
    assert_eq!(e["firstTimestamp"], at(0).to_string());
    assert_eq!(e["lastTimestamp"], at(20).to_string());
    assert_eq!(e["metadata"]["namespace"], "shop");
    assert!(
        e["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("web-1.")
    );
    assert_eq!(
        e["involvedObject"],
        serde_json::json!({"apiVersion": "v1", "kind": "Pod", "namespace": "shop", "name": "web-1",
                           "uid": "uid-1", "fieldPath": "spec.containers{web}"})
    );
    assert_eq!(
        e["source"],
        serde_json::json!({"component": "kubelet", "host": "node-a"})
    );
    assert_eq!(
        events[1]["source"],
        serde_json::json!({"component": "default-scheduler"})
    );
    // Another message is another event.
    r.record(
        EventType::Warning,
        pod().container("web"),
        source::KUBELET,
        "Unhealthy",
        "Readiness probe failed: timeout".into(),
        at(31),
    );
    assert_eq!(r.events(at(31)).len(), 3);
}

#[test]
fn the_recorder_is_bounded_and_events_expire_after_the_ttl() {
    let r = Recorder::bounded(None, "node-a", 3, Duration::from_secs(3600));
    for i in 0..5 {
        r.record(
            EventType::Normal,
            pod(),
            source::KUBELET,
            "Started",
            format!("Started container: c{i}"),
            at(i),
        );
    }
    let messages: Vec<String> = r
        .events(at(5))
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        messages,
        [
            "Started container: c2",
            "Started container: c3",
            "Started container: c4"
        ]
    );
    // Seen again, c2 is now the newest and c3 the oldest.
    r.record(
        EventType::Normal,
        pod(),
        source::KUBELET,
        "Started",
        "Started container: c2".into(),
        at(6),
    );
    r.record(
        EventType::Normal,
        pod(),
        source::KUBELET,
        "Started",
        "Started container: c5".into(),
        at(7),
    );
    let messages: Vec<String> = r
        .events(at(7))
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        messages,
        [
            "Started container: c4",
            "Started container: c2",
            "Started container: c5"
        ]
    );
    // An hour after it was last seen, an event is gone.
    let hour = SignedDuration::from_secs(3600).as_secs();
    assert_eq!(r.events(at(4 + hour)).len(), 2);
    assert_eq!(r.events(at(7 + hour)).len(), 0);
}

#[test]
fn events_reach_the_store_and_a_round_of_the_cluster_keeps_them() {
    let store = Arc::new(Store::new());
    let r = Recorder::new(Some(store.clone()), "node-a");
    let d = ObjectMeta {
        name: Some("web".into()),
        namespace: Some("shop".into()),
        uid: Some("d-uid".into()),
        ..ObjectMeta::default()
    };
    scaling_replica_set(Some(&r), &d, "web-5d8f", 0, 3);
    scaling_replica_set(Some(&r), &d, "web-5d8f", 3, 3);
    scaling_replica_set(Some(&r), &d, "web-4c7b", 2, 1);
    let rs = ObjectMeta {
        name: Some("web-5d8f".into()),
        namespace: Some("shop".into()),
        uid: Some("rs-uid".into()),
        ..ObjectMeta::default()
    };
    replica_set_pod(Some(&r), &rs, "web-5d8f-abcde", true);
    replica_set_pod(Some(&r), &rs, "web-5d8f-fghij", false);
    let events = resources::find("", "v1", "events").unwrap();
    // A round of the cluster records its reading: the events stay.
    store.record(&Reading::default());
    let (_, listed) = store.list(events, Some("shop"));
    let said: Vec<(String, String, String)> = listed
        .iter()
        .map(|e| {
            let s = |p: &str| e.pointer(p).unwrap().as_str().unwrap().to_owned();
            (s("/involvedObject/kind"), s("/reason"), s("/message"))
        })
        .collect();
    let want = [
        (
            "Deployment",
            "ScalingReplicaSet",
            "Scaled up replica set web-5d8f from 0 to 3",
        ),
        (
            "Deployment",
            "ScalingReplicaSet",
            "Scaled down replica set web-4c7b from 2 to 1",
        ),
        (
            "ReplicaSet",
            "SuccessfulCreate",
            "Created pod: web-5d8f-abcde",
        ),
        (
            "ReplicaSet",
            "SuccessfulDelete",
            "Deleted pod: web-5d8f-fghij",
        ),
    ];
    for w in want {
        assert!(
            said.contains(&(w.0.into(), w.1.into(), w.2.into())),
            "{w:?} in {said:#?}"
        );
    }
    assert_eq!(said.len(), 4, "scaling to the same count says nothing");
    assert!(
        listed
            .iter()
            .all(|e| e["metadata"]["resourceVersion"].is_string())
    );
}

#[tokio::test]
async fn the_kubelet_reports_scheduling_starts_probe_failures_back_off_and_kills() {
    use crate::kubelet::{Config, Kubelet};
    let kubelet = Kubelet::new(Config {
        node_name: "node-a".into(),
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(500),
        ..Config::default()
    });
    let recorder = Recorder::new(None, "node-a");
    kubelet.record_events_to(recorder.clone());
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "shop", "uid": "p-uid"},
        "spec": {"containers": [
            {"name": "crash", "image": "sh", "command": ["sh", "-c", "exit 1"]},
            {"name": "app", "image": "sh", "command": ["sleep", "600"],
             "readinessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1}},
        ]},
    }))
    .unwrap();
    kubelet.run(&pod, "127.0.0.1".parse().unwrap(), Vec::new());
    let said = |reason: &'static str, message: &'static str| {
        let recorder = recorder.clone();
        move || {
            let found = recorder.events(Timestamp::now()).into_iter().find(|e| {
                e["reason"] == reason
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(message))
            });
            std::future::ready(found)
        }
    };
    let d = ferry_testing::DEADLINE;
    let scheduled = ferry_testing::eventually(
        d,
        "Scheduled",
        said("Scheduled", "Successfully assigned shop/p to node-a"),
    )
    .await;
    assert_eq!(scheduled["source"]["component"], "default-scheduler");
    assert_eq!(scheduled["involvedObject"]["uid"], "p-uid");
    let started =
        ferry_testing::eventually(d, "Started", said("Started", "Started container: app")).await;
    assert_eq!(
        started["involvedObject"]["fieldPath"],
        "spec.containers{app}"
    );
    ferry_testing::eventually(d, "Created", said("Created", "Created container: crash")).await;
    let unhealthy = ferry_testing::eventually(
        d,
        "Unhealthy",
        said("Unhealthy", "Readiness probe failed: "),
    )
    .await;
    assert_eq!(unhealthy["type"], "Warning");
    let back_off = ferry_testing::eventually(
        d,
        "BackOff",
        said(
            "BackOff",
            "Back-off restarting failed container crash in pod p_shop(p-uid)",
        ),
    )
    .await;
    assert_eq!(back_off["type"], "Warning");
    kubelet.stop("shop", "p", Duration::from_secs(1));
    ferry_testing::eventually(d, "Killing", said("Killing", "Stopping container app")).await;
    kubelet.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_expired_event_leaves_the_store_with_nothing_else_recorded() {
    let store = Arc::new(Store::new());
    let r = Recorder::bounded(
        Some(store.clone()),
        "node-a",
        10,
        Duration::from_millis(200),
    );
    r.normal(
        pod(),
        source::KUBELET,
        "Started",
        "Started container: c".into(),
    );
    let events = resources::find("", "v1", "events").unwrap();
    assert_eq!(store.list(events, None).1.len(), 1);
    ferry_testing::eventually(
        ferry_testing::DEADLINE,
        "the event expired from the store",
        || std::future::ready(store.list(events, None).1.is_empty().then_some(())),
    )
    .await;
}
