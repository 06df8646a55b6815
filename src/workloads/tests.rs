use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn ages_read_like_kubectl() {
    // 2026-11-28T10:00:00Z
    let t = "2026-11-28T10:00:00Z";
    let base = 1_795_860_000;
    assert_eq!(age(t, at(base + 5)), "5s");
    assert_eq!(age(t, at(base + 300)), "5m");
    assert_eq!(age(t, at(base + 3 * 3600)), "3h");
    assert_eq!(age(t, at(base + 3 * 86_400)), "3d");
    assert_eq!(age("garbage", at(base)), "<unknown>");
    assert_eq!(
        age(t, at(base - 10)),
        "0s",
        "clock skew is not a negative age"
    );
}

#[test]
fn pods_table_shows_readiness_status_and_restarts() {
    let pods = vec![
        json!({
            "metadata": {"name": "web-abc", "namespace": "shop", "creationTimestamp": "2026-11-28T10:00:00Z"},
            "spec": {"containers": [{"name": "web"}], "nodeName": "local"},
            "status": {"phase": "Running", "podIP": "127.1.0.3",
                "containerStatuses": [{"name": "web", "ready": true, "restartCount": 2, "state": {"running": {}}}]}
        }),
        json!({
            "metadata": {"name": "bad", "namespace": "shop", "creationTimestamp": "2026-11-28T10:00:00Z"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending",
                "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ErrImageNeverPull"}}}]}
        }),
        json!({
            "metadata": {"name": "going", "namespace": "shop", "deletionTimestamp": "2026-11-28T10:00:09Z",
                "creationTimestamp": "2026-11-28T10:00:00Z"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running"}
        }),
    ];
    let text = render(&pods, Workload::Pods, true, at(1_795_860_042));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE"), "{text}");
    assert!(
        lines[1].contains("web-abc") && lines[1].contains("1/1") && lines[1].contains("Running"),
        "{text}"
    );
    assert!(
        lines[1].contains(" 2 ") && lines[1].contains("42s") && lines[1].contains("127.1.0.3"),
        "{text}"
    );
    assert!(
        lines[2].contains("0/1")
            && lines[2].contains("ErrImageNeverPull")
            && lines[2].contains("<none>"),
        "{text}"
    );
    assert!(lines[3].contains("Terminating"), "{text}");
}

#[test]
fn pods_table_counts_native_sidecars_and_shows_a_finished_job_completed() {
    let sidecar = json!({"name": "ferry-sidecar", "restartPolicy": "Always"});
    let pods = vec![
        json!({
            "metadata": {"name": "meshed", "namespace": "shop"},
            "spec": {"containers": [{"name": "web"}], "initContainers": [sidecar, {"name": "setup"}]},
            "status": {"phase": "Running",
                "initContainerStatuses": [
                    {"name": "ferry-sidecar", "ready": true, "restartCount": 1, "state": {"running": {}}},
                    {"name": "setup", "ready": false, "restartCount": 0, "state": {"terminated": {"reason": "Completed"}}}],
                "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
        }),
        json!({
            "metadata": {"name": "job", "namespace": "shop"},
            "spec": {"containers": [{"name": "app"}], "initContainers": [sidecar]},
            "status": {"phase": "Succeeded",
                "initContainerStatuses": [{"name": "ferry-sidecar", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"reason": "Error", "exitCode": 143}}}],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}
        }),
        json!({
            "metadata": {"name": "sidecar-left", "namespace": "shop"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running",
                "containerStatuses": [
                    {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"reason": "Completed"}}},
                    {"name": "b", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
        }),
    ];
    let text = render(&pods, Workload::Pods, false, at(1_795_860_042));
    let lines: Vec<&str> = text.lines().collect();
    let columns = |i: usize| lines[i].split_whitespace().collect::<Vec<_>>()[2..5].join(" ");
    // kubectl: the native sidecar is a container (its restarts too), a regular init one not.
    assert_eq!(columns(1), "2/2 Running 1", "{text}");
    assert_eq!(columns(2), "0/2 Completed 0", "{text}");
    // Completed while another container still runs is Running, as kubectl says.
    assert_eq!(columns(3), "1/2 Running 0", "{text}");
}

#[test]
fn rollout_messages_follow_kubectl() {
    let d = |generation: i64, obs: i64, want: i64, replicas: i64, updated: i64, available: i64| {
        json!({
            "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": want},
            "status": {"observedGeneration": obs, "replicas": replicas, "updatedReplicas": updated, "availableReplicas": available}
        })
    };
    assert_eq!(
        rollout_state(&d(2, 1, 2, 2, 2, 2)).0,
        "Waiting for deployment spec update to be observed..."
    );
    assert_eq!(
        rollout_state(&d(2, 2, 3, 3, 1, 3)).0,
        "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."
    );
    assert_eq!(
        rollout_state(&d(2, 2, 3, 4, 3, 3)).0,
        "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
    );
    assert_eq!(
        rollout_state(&d(2, 2, 3, 3, 3, 2)).0,
        "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available..."
    );
    assert_eq!(
        rollout_state(&d(2, 2, 3, 3, 3, 3)),
        ("deployment \"web\" successfully rolled out".into(), true)
    );
}

#[test]
fn deployment_names_as_kubectl_spells_them() {
    assert_eq!(deployment_name("deployment/web").unwrap(), "web");
    assert_eq!(deployment_name("deploy/web").unwrap(), "web");
    assert_eq!(deployment_name("web").unwrap(), "web");
    assert!(deployment_name("pod/web").is_err());
    assert!(deployment_name("deployment/").is_err());
    assert!(
        deployment_name("deployment/a&replicas=0").is_err(),
        "nothing reaches the query string but a name"
    );
    assert!(deployment_name("Web").is_err());
}
