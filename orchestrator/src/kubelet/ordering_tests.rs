//! Init containers and native sidecars with real processes (`sh`): each container appends to a
//! shared file, so the order things happened in is read back from it. Nothing sleeps to
//! synchronise: every wait polls the status or the file with a deadline.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use serde_json::{Value, json};

use super::{Config, Kubelet};

const NS: &str = "order";

fn kubelet() -> Kubelet {
    Kubelet::new(Config {
        node_name: "node-a".to_owned(),
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(400),
        ..Config::default()
    })
}

fn pod(name: &str, spec: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS, "uid": format!("{name}-uid")},
        "spec": spec,
    }))
    .expect("a pod")
}

/// A container running `script` in `sh`, with `$LOG` the shared file.
fn sh(name: &str, log: &Path, script: &str) -> Value {
    json!({
        "name": name, "image": "sh",
        "command": ["sh", "-c", script],
        "env": [{"name": "LOG", "value": log.display().to_string()}],
    })
}

/// A native sidecar: `sh` with `restartPolicy: Always`.
fn sidecar(name: &str, log: &Path, script: &str) -> Value {
    let mut c = sh(name, log, script);
    c["restartPolicy"] = json!("Always");
    c
}

/// Appends its name to the log, then waits to be stopped, noting the stop.
fn until_stopped(name: &str) -> String {
    format!(
        "echo {name}-start >> \"$LOG\"; trap 'echo {name}-stop >> \"$LOG\"; exit 0' TERM; \
         while :; do sleep 0.05; done"
    )
}

/// A sidecar that has started once its start is in the log (its startupProbe), so the next
/// container's start follows it in the log.
fn logged_sidecar(name: &str, log: &Path) -> Value {
    let mut c = sidecar(name, log, &until_stopped(name));
    c["startupProbe"] = json!({
        "exec": {"command": ["grep", "-qx", format!("{name}-start"), log.display().to_string()]},
        "periodSeconds": 1, "failureThreshold": 30,
    });
    c
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn log_has(log: &Path, line: &str) -> Vec<String> {
    ferry_testing::eventually(
        Duration::from_secs(15),
        &format!("{line} in the log"),
        || {
            let lines = lines(log);
            std::future::ready(lines.iter().any(|l| l == line).then_some(lines))
        },
    )
    .await
}

async fn status_when(
    kubelet: &Kubelet,
    name: &str,
    what: &str,
    test: impl Fn(&PodStatus) -> bool,
) -> PodStatus {
    ferry_testing::eventually(Duration::from_secs(15), what, || {
        std::future::ready(kubelet.status(NS, name).filter(|s| test(s)))
    })
    .await
}

fn init_status<'a>(status: &'a PodStatus, name: &str) -> Option<&'a ContainerStatus> {
    status
        .init_container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == name)
}

fn position(lines: &[String], line: &str) -> usize {
    lines
        .iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("{line} in {lines:?}"))
}

#[tokio::test]
async fn init_containers_complete_in_order_before_the_app_starts() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("log");
    let kubelet = kubelet();
    let spec = json!({
        "initContainers": [
            sh("first", &log, "sleep 0.2; echo first >> \"$LOG\""),
            sh("second", &log, "echo second >> \"$LOG\""),
        ],
        "containers": [sh("app", &log, "echo app >> \"$LOG\"; exec sleep 1000")],
    });
    kubelet.run(&pod("p", spec), "127.0.0.1".parse().unwrap(), Vec::new());
    let status = status_when(&kubelet, "p", "the app running", |s| {
        s.phase.as_deref() == Some("Running")
    })
    .await;
    // Running says the app's process started, not that its first line is written yet.
    assert_eq!(log_has(&log, "app").await, ["first", "second", "app"]);
    let initialized = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Initialized")
        .expect("Initialized");
    assert_eq!(initialized.status, "True");
    for name in ["first", "second"] {
        let c = init_status(&status, name).expect("its status");
        let terminated = c.state.as_ref().and_then(|s| s.terminated.as_ref());
        assert_eq!(terminated.map(|t| t.exit_code), Some(0), "{name}");
    }
    kubelet.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_failed_init_container_fails_a_never_pod_and_the_app_never_starts() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("log");
    let kubelet = kubelet();
    let spec = json!({
        "restartPolicy": "Never",
        "initContainers": [sh("setup", &log, "exit 3")],
        "containers": [sh("app", &log, "echo app >> \"$LOG\"")],
    });
    kubelet.run(&pod("p", spec), "127.0.0.1".parse().unwrap(), Vec::new());
    status_when(&kubelet, "p", "the pod Failed", |s| {
        s.phase.as_deref() == Some("Failed")
    })
    .await;
    assert!(lines(&log).is_empty(), "the app never ran");
    kubelet.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_native_sidecar_is_started_before_the_app_and_its_startup_probe_is_waited_for() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("log");
    let ready = dir.path().join("ready");
    let kubelet = kubelet();
    let mut proxy = sidecar(
        "proxy",
        &log,
        &format!(
            "echo proxy >> \"$LOG\"; sleep 0.3; touch {}; exec sleep 1000",
            ready.display()
        ),
    );
    proxy["startupProbe"] = json!({
        "exec": {"command": ["test", "-f", ready.display().to_string()]},
        "periodSeconds": 1, "failureThreshold": 30,
    });
    let spec = json!({
        "initContainers": [proxy],
        "containers": [sh(
            "app",
            &log,
            &format!(
                "if test -f {}; then echo app-saw-proxy-ready; else echo app-too-early; fi >> \"$LOG\"; \
                 exec sleep 1000",
                ready.display()
            ),
        )],
    });
    kubelet.run(&pod("p", spec), "127.0.0.1".parse().unwrap(), Vec::new());
    let status = status_when(&kubelet, "p", "the pod Ready", |s| {
        s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
    .await;
    let lines = ferry_testing::eventually(Duration::from_secs(15), "the app's line", || {
        let lines = lines(&log);
        std::future::ready((lines.len() == 2).then_some(lines))
    })
    .await;
    assert_eq!(lines, ["proxy", "app-saw-proxy-ready"]);
    let proxy = init_status(&status, "proxy").expect("the sidecar's status");
    assert_eq!(proxy.started, Some(true));
    assert!(proxy.ready);
    kubelet.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn sidecars_stop_after_the_app_in_reverse_order() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("log");
    let kubelet = kubelet();
    let spec = json!({
        "terminationGracePeriodSeconds": 10,
        "initContainers": [
            logged_sidecar("one", &log),
            logged_sidecar("two", &log),
        ],
        // The app takes a while to stop: the sidecars must wait for it.
        "containers": [sh("app", &log, "echo app-start >> \"$LOG\"; \
            trap 'sleep 0.3; echo app-stop >> \"$LOG\"; exit 0' TERM; while :; do sleep 0.05; done")],
    });
    kubelet.run(&pod("p", spec), "127.0.0.1".parse().unwrap(), Vec::new());
    log_has(&log, "app-start").await;
    kubelet.stop(NS, "p", Duration::from_secs(10));
    let lines = log_has(&log, "one-stop").await;
    let at = |l| position(&lines, l);
    assert!(at("one-start") < at("two-start") && at("two-start") < at("app-start"));
    assert!(at("app-stop") < at("two-stop"), "{lines:?}");
    assert!(at("two-stop") < at("one-stop"), "{lines:?}");
    kubelet.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_job_pod_with_a_sidecar_succeeds_once_its_app_completed() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("log");
    let kubelet = kubelet();
    let spec = json!({
        "restartPolicy": "Never",
        "initContainers": [logged_sidecar("proxy", &log)],
        "containers": [sh("job", &log, "echo job >> \"$LOG\"")],
    });
    kubelet.run(&pod("p", spec), "127.0.0.1".parse().unwrap(), Vec::new());
    let status = status_when(&kubelet, "p", "the pod Succeeded", |s| {
        s.phase.as_deref() == Some("Succeeded")
    })
    .await;
    assert_eq!(lines(&log), ["proxy-start", "job", "proxy-stop"]);
    let proxy = init_status(&status, "proxy").expect("the sidecar's status");
    assert!(proxy.state.as_ref().is_some_and(|s| s.terminated.is_some()));
    kubelet.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_sidecar_that_exits_is_restarted_whatever_the_pods_policy() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("log");
    let kubelet = kubelet();
    let spec = json!({
        "restartPolicy": "Never",
        "initContainers": [sidecar("proxy", &log, "echo proxy >> \"$LOG\"; sleep 0.2; exit 1")],
        "containers": [sh("app", &log, "exec sleep 1000")],
    });
    kubelet.run(&pod("p", spec), "127.0.0.1".parse().unwrap(), Vec::new());
    let status = status_when(&kubelet, "p", "the sidecar restarted twice", |s| {
        init_status(s, "proxy").is_some_and(|c| c.restart_count >= 2)
    })
    .await;
    assert_eq!(status.phase.as_deref(), Some("Running"));
    kubelet.shutdown(Duration::from_secs(1)).await;
}
