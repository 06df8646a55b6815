//! The kubelet with real processes (`sh`, `sleep`, `true`, `false`). Nothing sleeps to
//! synchronise: every wait polls the status with a deadline.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus,
};
use rustix::process::{Pid, Signal};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::{Config, ContainerError, Kubelet, Logs};

const NS: &str = "test";

fn kubelet() -> Kubelet {
    Kubelet::new(Config {
        node_name: "node-a".to_owned(),
        backoff_base: Duration::from_millis(200),
        backoff_cap: Duration::from_secs(1),
        log_limit_bytes: 64 * 1024,
        ..Config::default()
    })
}

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS, "uid": format!("{name}-uid"),
                     "labels": {"app": name}},
        "spec": spec,
    }))
    .expect("a pod")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an IP")
}

/// Polls `probe` until it gives a value, for at most `limit`.
async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    ferry_testing::eventually(
        Duration::from_secs(15),
        what,
        || std::future::ready(probe()),
    )
    .await
}

/// The pod's status once `test` holds for it.
async fn status_when(
    kubelet: &Kubelet,
    name: &str,
    what: &str,
    test: impl Fn(&PodStatus) -> bool,
) -> PodStatus {
    eventually(what, || kubelet.status(NS, name).filter(|s| test(s))).await
}

fn phase(status: &PodStatus) -> &str {
    status.phase.as_deref().unwrap_or("")
}

fn container<'a>(status: &'a PodStatus, name: &str) -> &'a ContainerStatus {
    status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == name)
        .expect("the container's status")
}

fn is_ready(status: &PodStatus) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn waiting_reason(c: &ContainerStatus) -> Option<&str> {
    c.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

fn waiting_message(c: &ContainerStatus) -> Option<&str> {
    c.state.as_ref()?.waiting.as_ref()?.message.as_deref()
}

/// The run that ended, in a container's `state` or `last_state`; `what` names it if absent.
pub(crate) fn terminated<'a>(
    state: &'a Option<ContainerState>,
    what: &str,
) -> &'a ContainerStateTerminated {
    state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect(what)
}

fn is_running(c: &ContainerStatus) -> bool {
    c.state.as_ref().is_some_and(|s| s.running.is_some())
}

fn text(logs: &Logs) -> String {
    String::from_utf8_lossy(&logs.read_from(0).0).into_owned()
}

async fn log_contains(logs: &Logs, needle: &str) -> String {
    eventually(&format!("{needle:?} in the log"), || {
        Some(text(logs)).filter(|t| t.contains(needle))
    })
    .await
}

fn kill(pid: u32, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(pid).expect("a pid")).expect("a pid");
    rustix::process::kill_process(pid, signal).expect("the process is there");
}

/// A request's path and `x-probe` header.
pub(crate) type Seen = (String, Option<String>);

/// A tiny HTTP server answering every request with the status it holds; it remembers the last
/// request's path and `x-probe` header.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) status: Arc<AtomicU16>,
    pub(crate) last: Arc<Mutex<Option<Seen>>>,
}

pub(crate) async fn http_server() -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    let status = Arc::new(AtomicU16::new(200));
    let last = Arc::new(Mutex::new(None));
    let server = TestServer {
        addr,
        status: status.clone(),
        last: last.clone(),
    };
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (status, last) = (status.clone(), last.clone());
            let service = hyper::service::service_fn(move |request: http::Request<_>| {
                let header = request
                    .headers()
                    .get("x-probe")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                *last.lock().expect("not poisoned") =
                    Some((request.uri().path().to_owned(), header));
                let mut response = http::Response::new(Empty::<Bytes>::new());
                *response.status_mut() =
                    http::StatusCode::from_u16(status.load(Ordering::SeqCst)).expect("a status");
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    server
}

#[tokio::test]
async fn a_container_runs_with_its_environment_and_working_directory() {
    let kubelet = kubelet();
    let dir = tempfile::tempdir().expect("a directory");
    let spec = json!({
        "restartPolicy": "Never",
        "containers": [{
            "name": "main", "image": "busybox",
            "command": ["sh", "-c"],
            "args": ["echo ip=$POD_IP name=$POD_NAME ns=$POD_NAMESPACE node=$NODE app=$APP svc=$API_SERVICE_HOST greet=$GREETING lit=$(GREETING) esc='$$(GREETING)' home=${HOME-unset}; echo dir=$(pwd); echo oops >&2"],
            "workingDir": dir.path(),
            "env": [
                {"name": "GREETING", "value": "hi-$(POD_NAME)"},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "API_SERVICE_HOST", "value": "overridden"}
            ]
        }]
    });
    let service_env = vec![
        ("API_SERVICE_HOST".to_owned(), "127.2.0.11".to_owned()),
        ("WEB_SERVICE_HOST".to_owned(), "127.2.0.10".to_owned()),
    ];
    kubelet.run(&pod("env", spec), ip("127.1.0.7"), service_env);
    let logs = kubelet.logs(NS, "env", None).expect("the log");
    let status = status_when(&kubelet, "env", "Succeeded", |s| phase(s) == "Succeeded").await;
    let c = container(&status, "main");
    let ended = terminated(&c.state, "terminated");
    assert_eq!(
        (ended.exit_code, ended.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert!(
        c.container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("ferry://"))
    );
    let log = log_contains(&logs, "oops").await;
    let home = std::env::var("HOME").unwrap_or_else(|_| "unset".to_owned());
    assert!(
        log.contains(&format!(
            "ip=127.1.0.7 name=env ns=test node=node-a app=env svc=overridden greet=hi-env lit=hi-env esc=$(GREETING) home={home}\n"
        )),
        "{log}"
    );
    let dir = dir.path().canonicalize().expect("the directory");
    assert!(log.contains(&format!("dir={}\n", dir.display())), "{log}");
    assert_eq!(status.pod_ip.as_deref(), Some("127.1.0.7"));
    assert!(status.start_time.is_some());
    kubelet.shutdown(Duration::from_secs(1)).await;
    assert!(kubelet.status(NS, "env").is_none());
}

#[tokio::test]
async fn service_env_is_seen_and_the_parent_env_is_not() {
    let kubelet = kubelet();
    // cargo sets CARGO_* for the test process: none of it may reach the container.
    let spec = json!({
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": "x", "command": ["sh", "-c", "env | sort"]}]
    });
    kubelet.run(
        &pod("envs", spec),
        ip("127.1.0.8"),
        vec![("WEB_PORT".to_owned(), "tcp://127.2.0.10:80".to_owned())],
    );
    let logs = kubelet.logs(NS, "envs", Some("c")).expect("the log");
    status_when(&kubelet, "envs", "Succeeded", |s| phase(s) == "Succeeded").await;
    let log = log_contains(&logs, "WEB_PORT=").await;
    assert!(log.contains("WEB_PORT=tcp://127.2.0.10:80\n"), "{log}");
    assert!(log.contains("POD_NAME=envs\n"), "{log}");
    assert!(
        !log.contains("CARGO"),
        "the parent's environment leaked: {log}"
    );
    kubelet.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_killed_container_restarts_then_backs_off() {
    let kubelet = kubelet();
    let spec =
        json!({"containers": [{"name": "main", "image": "x", "command": ["sleep", "1000"]}]});
    kubelet.run(&pod("crash", spec), ip("127.1.0.9"), vec![]);
    let first = eventually("the first run", || kubelet.pid(NS, "crash", "main")).await;
    let status = kubelet.status(NS, "crash").expect("a status");
    assert_eq!(phase(&status), "Running");
    assert!(is_ready(&status), "no readiness probe: ready once running");

    kill(first, Signal::KILL);
    // The first restart is at once.
    let second = eventually("the restart", || {
        kubelet.pid(NS, "crash", "main").filter(|&p| p != first)
    })
    .await;
    let status = kubelet.status(NS, "crash").expect("a status");
    let c = container(&status, "main");
    assert_eq!(c.restart_count, 1);
    let last = terminated(&c.last_state, "the last run");
    assert_eq!(
        (last.exit_code, last.signal, last.reason.as_deref()),
        (137, Some(9), Some("Error"))
    );
    assert!(last.started_at.is_some() && last.finished_at.is_some());
    assert_eq!(
        last.container_id.as_deref(),
        Some(format!("ferry://{first}").as_str())
    );

    // The second crash waits the back-off base (200ms here).
    let crashed = Instant::now();
    kill(second, Signal::KILL);
    let waiting = status_when(&kubelet, "crash", "CrashLoopBackOff", |s| {
        waiting_reason(container(s, "main")) == Some("CrashLoopBackOff")
    })
    .await;
    let c = container(&waiting, "main");
    assert_eq!(
        waiting_message(c),
        Some("back-off 200ms restarting failed container=main pod=crash_test(crash-uid)")
    );
    assert!(!c.ready);
    assert_eq!(phase(&waiting), "Running", "restarting counts as running");
    assert!(!is_ready(&waiting));
    let status = status_when(&kubelet, "crash", "the third run", |s| {
        let c = container(s, "main");
        is_running(c) && c.restart_count == 2
    })
    .await;
    assert!(
        crashed.elapsed() >= Duration::from_millis(200),
        "restarted before the back-off"
    );
    assert!(is_ready(&status));
    kubelet.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn restart_policies_decide_the_phase() {
    let kubelet = kubelet();
    let dir = tempfile::tempdir().expect("a directory");
    let once = dir.path().join("once");
    let one = |name: &str, policy: &str, command: serde_json::Value| {
        pod(
            name,
            json!({"restartPolicy": policy, "containers": [{"name": "c", "image": "x", "command": command}]}),
        )
    };
    kubelet.run(
        &one("never-ok", "Never", json!(["true"])),
        ip("127.1.0.10"),
        vec![],
    );
    kubelet.run(
        &one("never-fail", "Never", json!(["false"])),
        ip("127.1.0.11"),
        vec![],
    );
    let flaky = format!(
        "if [ -f {0} ]; then exit 0; fi; touch {0}; exit 3",
        once.display()
    );
    kubelet.run(
        &one("on-failure", "OnFailure", json!(["sh", "-c", flaky])),
        ip("127.1.0.12"),
        vec![],
    );
    kubelet.run(
        &one("always", "Always", json!(["true"])),
        ip("127.1.0.13"),
        vec![],
    );

    status_when(&kubelet, "never-ok", "Succeeded", |s| {
        phase(s) == "Succeeded"
    })
    .await;
    let failed = status_when(&kubelet, "never-fail", "Failed", |s| phase(s) == "Failed").await;
    let c = container(&failed, "c");
    let ended = terminated(&c.state, "terminated");
    assert_eq!(
        (ended.exit_code, ended.reason.as_deref()),
        (1, Some("Error"))
    );
    assert_eq!(c.restart_count, 0);
    // OnFailure: the failed first run restarts at once, the second succeeds.
    let done = status_when(&kubelet, "on-failure", "Succeeded", |s| {
        phase(s) == "Succeeded"
    })
    .await;
    let c = container(&done, "c");
    assert_eq!(c.restart_count, 1);
    let last = terminated(&c.last_state, "the last run");
    assert_eq!(last.exit_code, 3);
    // Always restarts even a container that succeeded, backing off.
    let always = status_when(&kubelet, "always", "a few restarts", |s| {
        container(s, "c").restart_count >= 2
    })
    .await;
    assert_eq!(phase(&always), "Running");
    // A completed pod stays known until stopped.
    assert!(kubelet.is_running(NS, "never-ok"));
    kubelet.stop(NS, "never-ok", Duration::from_secs(1));
    eventually("forgotten", || {
        (!kubelet.is_running(NS, "never-ok")).then_some(())
    })
    .await;
    kubelet.shutdown(Duration::from_secs(1)).await;
    assert!(kubelet.pods().is_empty());
}

#[tokio::test]
async fn readiness_over_http_get() {
    let kubelet = kubelet();
    let server = http_server().await;
    let spec = json!({"containers": [{
        "name": "web", "image": "x", "command": ["sleep", "1000"],
        "readinessProbe": {
            "httpGet": {"host": "127.0.0.1", "port": server.addr.port(), "path": "healthz",
                        "httpHeaders": [{"name": "X-Probe", "value": "yes"}]},
            "periodSeconds": 1, "failureThreshold": 1
        }
    }]});
    kubelet.run(&pod("http", spec), ip("127.1.0.14"), vec![]);
    let status = status_when(&kubelet, "http", "running", |s| {
        is_running(container(s, "web"))
    })
    .await;
    if !is_ready(&status) {
        assert_eq!(phase(&status), "Running");
    }
    let status = status_when(&kubelet, "http", "ready", is_ready).await;
    assert!(container(&status, "web").ready);
    assert_eq!(
        server.last.lock().expect("not poisoned").clone(),
        Some(("/healthz".to_owned(), Some("yes".to_owned())))
    );
    server.status.store(503, Ordering::SeqCst);
    let status = status_when(&kubelet, "http", "unready", |s| !is_ready(s)).await;
    assert!(!container(&status, "web").ready);
    // A redirect counts as a success.
    server.status.store(302, Ordering::SeqCst);
    status_when(&kubelet, "http", "ready again", is_ready).await;
    kubelet.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn readiness_over_tcp_socket_and_exec() {
    let kubelet = kubelet();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("an address").port();
    let dir = tempfile::tempdir().expect("a directory");
    let flag = dir.path().join("ready");
    let spec = json!({"containers": [
        {"name": "tcp", "image": "x", "command": ["sleep", "1000"],
         "ports": [{"name": "probe", "containerPort": port}],
         "readinessProbe": {"tcpSocket": {"host": "127.0.0.1", "port": "probe"},
                            "periodSeconds": 1, "failureThreshold": 1}},
        {"name": "exec", "image": "x", "command": ["sleep", "1000"],
         "env": [{"name": "FLAG", "value": flag}],
         "readinessProbe": {"exec": {"command": ["sh", "-c", "test -f \"$FLAG\""]},
                            "periodSeconds": 1, "failureThreshold": 1}}
    ]});
    kubelet.run(&pod("probes", spec), ip("127.1.0.15"), vec![]);
    let status = status_when(&kubelet, "probes", "tcp ready", |s| {
        container(s, "tcp").ready
    })
    .await;
    assert!(!container(&status, "exec").ready, "no flag yet");
    assert!(!is_ready(&status));
    std::fs::write(&flag, b"").expect("the flag");
    status_when(&kubelet, "probes", "all ready", is_ready).await;
    drop(listener);
    let status = status_when(&kubelet, "probes", "tcp unready", |s| {
        !container(s, "tcp").ready
    })
    .await;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "ContainersReady")
        .expect("a condition");
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [tcp]")
    );
    std::fs::remove_file(&flag).expect("no flag");
    status_when(&kubelet, "probes", "exec unready", |s| {
        !container(s, "exec").ready
    })
    .await;
    kubelet.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_the_container() {
    let kubelet = kubelet();
    let dir = tempfile::tempdir().expect("a directory");
    let flag = dir.path().join("alive");
    let spec = json!({
        "terminationGracePeriodSeconds": 5,
        "containers": [{
            "name": "main", "image": "x", "command": ["sleep", "1000"],
            "livenessProbe": {"exec": {"command": ["test", "-f", flag]},
                              "periodSeconds": 1, "failureThreshold": 2}
        }]
    });
    kubelet.run(&pod("live", spec), ip("127.1.0.16"), vec![]);
    let first = eventually("the first run", || kubelet.pid(NS, "live", "main")).await;
    let status = status_when(&kubelet, "live", "a restart", |s| {
        container(s, "main").restart_count >= 1
    })
    .await;
    // Stop further kills.
    std::fs::write(&flag, b"").expect("the flag");
    let last = terminated(&container(&status, "main").last_state, "the killed run");
    // sleep dies of the SIGTERM.
    assert_eq!(
        (last.exit_code, last.signal, last.reason.as_deref()),
        (143, Some(15), Some("Error"))
    );
    assert_eq!(last.container_id, Some(format!("ferry://{first}")));
    kubelet.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn containers_that_cannot_run_wait_and_others_run() {
    let kubelet = kubelet();
    kubelet.run(
        &pod(
            "nginx",
            json!({"containers": [{"name": "web", "image": "nginx:1.27"}]}),
        ),
        ip("127.1.0.17"),
        vec![],
    );
    kubelet.run(
        &pod("secret", json!({"containers": [{"name": "c", "image": "x", "command": ["true"],
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]})),
        ip("127.1.0.18"),
        vec![],
    );
    kubelet.run(
        &pod("nosuch", json!({"containers": [{"name": "c", "image": "x", "command": ["/nonexistent/bin/app"]}]})),
        ip("127.1.0.19"),
        vec![],
    );
    kubelet.run(
        &pod(
            "good",
            json!({"containers": [{"name": "c", "image": "x", "command": ["sleep", "1000"]}]}),
        ),
        ip("127.1.0.20"),
        vec![],
    );
    let status = status_when(&kubelet, "nginx", "ErrImageNeverPull", |s| {
        waiting_reason(container(s, "web")) == Some("ErrImageNeverPull")
    })
    .await;
    assert_eq!(phase(&status), "Pending");
    let waiting = container(&status, "web")
        .state
        .as_ref()
        .and_then(|s| s.waiting.clone())
        .expect("waiting");
    assert_eq!(
        waiting.message.as_deref(),
        Some(
            "ferry runs no images: image \"nginx:1.27\" needs a command (only ferry/echo runs without one)"
        )
    );
    let status = status_when(&kubelet, "secret", "CreateContainerConfigError", |s| {
        waiting_reason(container(s, "c")) == Some("CreateContainerConfigError")
    })
    .await;
    let message = waiting_message(container(&status, "c"));
    assert!(message.is_some_and(|m| m.contains("TOKEN")));
    let status = status_when(&kubelet, "nosuch", "RunContainerError, retried", |s| {
        let c = container(s, "c");
        waiting_reason(c) == Some("RunContainerError") && c.restart_count >= 1
    })
    .await;
    let c = container(&status, "c");
    let last = terminated(&c.last_state, "the failed start");
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (128, Some("StartError"))
    );
    status_when(&kubelet, "good", "running", |s| {
        phase(s) == "Running" && is_ready(s)
    })
    .await;
    // A pod that never started a process stops at once.
    kubelet.stop(NS, "nginx", Duration::from_secs(30));
    eventually("nginx forgotten", || {
        kubelet.status(NS, "nginx").is_none().then_some(())
    })
    .await;
    kubelet.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn stop_sends_sigterm_then_sigkill_after_the_grace() {
    let kubelet = kubelet();
    let mut changes = kubelet.changes();
    let polite = json!({"containers": [{"name": "c", "image": "x",
        "command": ["sh", "-c", "trap 'echo term; exit 0' TERM; echo up; while :; do sleep 0.1; done"]}]});
    let stubborn = json!({"containers": [{"name": "c", "image": "x",
        "command": ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.1; done"]}]});
    kubelet.run(&pod("polite", polite), ip("127.1.0.21"), vec![]);
    kubelet.run(&pod("stubborn", stubborn), ip("127.1.0.22"), vec![]);
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("a change")
        .expect("the kubelet lives");
    let polite_logs = kubelet.logs(NS, "polite", None).expect("the log");
    let stubborn_logs = kubelet.logs(NS, "stubborn", None).expect("the log");
    log_contains(&polite_logs, "up").await;
    log_contains(&stubborn_logs, "up").await;

    let stopped = Instant::now();
    kubelet.stop(NS, "polite", Duration::from_secs(10));
    kubelet.stop(NS, "stubborn", Duration::from_millis(500));
    assert!(kubelet.is_terminating(NS, "polite"));
    eventually("polite forgotten", || {
        (!kubelet.is_running(NS, "polite")).then_some(())
    })
    .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "SIGTERM was not obeyed at once"
    );
    assert_eq!(text(&polite_logs), "up\nterm\n");
    assert!(polite_logs.is_closed());
    eventually("stubborn forgotten", || {
        (!kubelet.is_running(NS, "stubborn")).then_some(())
    })
    .await;
    assert!(
        stopped.elapsed() >= Duration::from_millis(500),
        "killed before the grace"
    );
    assert!(kubelet.status(NS, "stubborn").is_none());
    // The follower of a forgotten pod ends.
    tokio::time::timeout(Duration::from_secs(5), stubborn_logs.changed())
        .await
        .expect("the follow ends");
    assert!(stubborn_logs.is_closed());
    assert_eq!(
        kubelet.logs(NS, "stubborn", None).err(),
        Some(ContainerError::PodNotFound {
            namespace: NS.to_owned(),
            name: "stubborn".to_owned()
        })
    );
}

#[tokio::test]
async fn the_log_ring_is_bounded_and_follows() {
    let kubelet = Kubelet::new(Config {
        log_limit_bytes: 4096,
        ..Config::default()
    });
    let spec = json!({"containers": [{"name": "c", "image": "x", "command": ["sh", "-c",
        "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done; echo done; sleep 1000"]}]});
    kubelet.run(&pod("chatty", spec), ip("127.1.0.23"), vec![]);
    let logs = kubelet.logs(NS, "chatty", None).expect("the log");
    log_contains(&logs, "done\n").await;
    let (bytes, next) = logs.read_from(0);
    assert!(bytes.len() <= 4096, "{} bytes kept", bytes.len());
    // line-0 … line-1999 and "done": every byte counted in the offsets.
    let total: usize = (0..2000)
        .map(|i| format!("line-{i}\n").len())
        .sum::<usize>()
        + 5;
    assert_eq!(next, total as u64);
    assert!(bytes.ends_with(b"line-1999\ndone\n"));
    assert!(!String::from_utf8_lossy(&bytes).contains("line-0\n"));
    // Following: nothing new until the pod goes.
    let follow = tokio::spawn({
        let logs = logs.clone();
        async move { logs.changed().await }
    });
    kubelet.stop(NS, "chatty", Duration::from_secs(1));
    tokio::time::timeout(Duration::from_secs(5), follow)
        .await
        .expect("the follow ends with the pod")
        .expect("joined");
    assert!(logs.is_closed());
}

#[tokio::test]
async fn logs_name_the_container_when_there_are_several() {
    let kubelet = kubelet();
    let spec = json!({"containers": [
        {"name": "a", "image": "x", "command": ["sh", "-c", "echo from-a; sleep 1000"]},
        {"name": "b", "image": "x", "command": ["sh", "-c", "echo from-b; sleep 1000"]}
    ]});
    kubelet.run(&pod("two", spec), ip("127.1.0.24"), vec![]);
    let err = kubelet
        .logs(NS, "two", None)
        .expect_err("a container must be named");
    assert_eq!(
        err.to_string(),
        "a container name must be specified for pod two, choose one of: [a b]"
    );
    let err = kubelet
        .logs(NS, "two", Some("c"))
        .expect_err("no container c");
    assert!(
        matches!(err, ContainerError::ContainerNotFound { .. }),
        "{err}"
    );
    let b = kubelet.logs(NS, "two", Some("b")).expect("b's log");
    assert_eq!(log_contains(&b, "from-b").await, "from-b\n");
    kubelet.shutdown(Duration::from_secs(1)).await;
}

/// `ferry exec`'s plan: the container's environment and working directory, the default
/// container as kubectl picks it (the annotation's, else the first), and the errors kubectl
/// gives. In loopback mode nothing is entered: the Pod shares the host's network.
#[tokio::test]
async fn exec_plans_name_the_container_and_carry_its_environment() {
    let kubelet = kubelet();
    let mut two = pod(
        "execs",
        json!({"containers": [
            {"name": "a", "image": "x", "command": ["sleep", "1000"], "workingDir": "/tmp",
             "env": [{"name": "GREETING", "value": "hi"}]},
            {"name": "b", "image": "x", "command": ["sleep", "1000"]},
            {"name": "never", "image": "nginx"}
        ]}),
    );
    two.metadata.annotations = Some(
        [(
            super::DEFAULT_CONTAINER_ANNOTATION.to_owned(),
            "b".to_owned(),
        )]
        .into_iter()
        .collect(),
    );
    kubelet.run(&two, ip("127.1.0.26"), vec![]);
    eventually("a and b run", || {
        kubelet.pid(NS, "execs", "a")?;
        kubelet.pid(NS, "execs", "b")
    })
    .await;
    let a = kubelet.exec(NS, "execs", Some("a")).expect("a's plan");
    assert_eq!(a.container, "a");
    assert!(a.defaulted_from.is_empty());
    assert!(a.enter.is_empty(), "loopback mode enters nothing");
    assert_eq!(a.working_dir.as_deref(), Some("/tmp"));
    let env: std::collections::HashMap<_, _> = a.env.iter().cloned().collect();
    assert_eq!(env.get("GREETING").map(String::as_str), Some("hi"));
    assert_eq!(env.get("POD_IP").map(String::as_str), Some("127.1.0.26"));
    let default = kubelet.exec(NS, "execs", None).expect("the default's plan");
    assert_eq!(default.container, "b", "the annotation's");
    assert_eq!(default.defaulted_from, ["a", "b", "never"]);
    assert_eq!(
        kubelet
            .exec(NS, "execs", Some("never"))
            .unwrap_err()
            .to_string(),
        "container never of pod execs is not running"
    );
    assert_eq!(
        kubelet
            .exec(NS, "execs", Some("c"))
            .unwrap_err()
            .to_string(),
        "container c is not valid for pod execs; choose one of: [a b never]"
    );
    assert_eq!(
        kubelet.exec(NS, "gone", None).unwrap_err().to_string(),
        "pod test/gone not found"
    );
    kubelet.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn run_is_idempotent_and_a_new_uid_waits_for_the_old_pod() {
    let kubelet = kubelet();
    let spec = json!({"containers": [{"name": "c", "image": "x", "command": ["sleep", "1000"]}]});
    let old = pod("same", spec.clone());
    kubelet.run(&old, ip("127.1.0.25"), vec![]);
    let pid = eventually("running", || kubelet.pid(NS, "same", "c")).await;
    kubelet.run(&old, ip("127.1.0.25"), vec![]);
    let mut new = old.clone();
    new.metadata.uid = Some("other-uid".to_owned());
    kubelet.run(&new, ip("127.1.0.25"), vec![]);
    assert_eq!(kubelet.pid(NS, "same", "c"), Some(pid));
    assert_eq!(kubelet.uid(NS, "same").as_deref(), Some("same-uid"));
    kubelet.stop(NS, "same", Duration::from_secs(1));
    eventually("forgotten", || {
        (!kubelet.is_running(NS, "same")).then_some(())
    })
    .await;
    kubelet.run(&new, ip("127.1.0.25"), vec![]);
    assert_eq!(kubelet.uid(NS, "same").as_deref(), Some("other-uid"));
    let again = eventually("the new pod runs", || kubelet.pid(NS, "same", "c")).await;
    assert_ne!(again, pid);
    kubelet.shutdown(Duration::from_secs(1)).await;
    assert!(!kubelet.is_running(NS, "same"));
    kubelet.run(&old, ip("127.1.0.25"), vec![]);
    assert!(
        !kubelet.is_running(NS, "same"),
        "a shut-down kubelet runs nothing"
    );
}

#[tokio::test]
async fn ferry_echo_runs_the_echo_program() {
    let dir = tempfile::tempdir().expect("a directory");
    // A stand-in for the ferry binary that says how it was called.
    let program = dir.path().join("ferry");
    std::fs::write(&program, "#!/bin/sh\necho \"$@\"\nexec sleep 1000\n").expect("the script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let kubelet = Kubelet::new(Config {
        echo_program: program,
        ..Config::default()
    });
    let spec = json!({"containers": [{"name": "web", "image": "ferry/echo:latest",
                                      "ports": [{"containerPort": 8081}]}]});
    kubelet.run(&pod("echo", spec), ip("127.1.0.26"), vec![]);
    let logs = kubelet.logs(NS, "echo", None).expect("the log");
    let log = log_contains(&logs, "\n").await;
    assert_eq!(
        log,
        format!(
            "echo --listen 127.1.0.26:8081 --name web --parent-pid {}\n",
            std::process::id()
        )
    );
    kubelet.shutdown(Duration::from_secs(1)).await;
}

/// Whether the process is gone: no longer in /proc, or a zombie waiting to be reaped by
/// whoever inherited it.
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// A container's child that leaves its process group (`setsid`) dies with the Pod, whether the
/// Pod is deleted or the kubelet shuts down: each container runs in a cgroup of its own and
/// stopping kills the whole cgroup.
#[tokio::test]
async fn a_setsid_child_dies_with_its_pod() {
    if let Err(why) = super::cgroup::Root::create() {
        eprintln!(
            "skipped: containers cannot run in cgroups here ({why}); needs root and cgroup v2"
        );
        return;
    }
    let kubelet = kubelet();
    let spec = json!({"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "x",
        "command": ["sh", "-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo child=$!; exec sleep 1000"]}]});
    kubelet.run(&pod("deleted", spec.clone()), ip("127.1.0.31"), vec![]);
    kubelet.run(&pod("shutdown", spec), ip("127.1.0.32"), vec![]);
    let child = |name: &'static str| {
        let logs = kubelet.logs(NS, name, None).expect("the log");
        async move {
            let text = log_contains(&logs, "\n").await;
            text.trim()
                .strip_prefix("child=")
                .and_then(|pid| pid.parse::<u32>().ok())
                .expect("the child's pid")
        }
    };
    let (deleted, shutdown) = (child("deleted").await, child("shutdown").await);
    assert!(!gone(deleted) && !gone(shutdown), "the children run");
    let sid = |pid: u32| {
        rustix::process::getsid(Pid::from_raw(i32::try_from(pid).expect("a pid")))
            .expect("a session")
    };
    assert_eq!(
        sid(deleted),
        Pid::from_raw(i32::try_from(deleted).expect("a pid")).expect("a pid"),
        "the child left the container's session and process group"
    );

    kubelet.stop(NS, "deleted", Duration::from_secs(1));
    eventually("the deleted pod forgotten", || {
        (!kubelet.is_running(NS, "deleted")).then_some(())
    })
    .await;
    let deleted_gone = gone(deleted);
    kubelet.shutdown(Duration::from_secs(1)).await;
    let shutdown_gone = gone(shutdown);
    // Whatever the outcome, no sleeper is left behind by this test.
    for pid in [deleted, shutdown] {
        if !gone(pid) {
            kill(pid, Signal::KILL);
        }
    }
    assert!(
        deleted_gone,
        "the deleted pod's setsid child {deleted} still runs"
    );
    assert!(
        shutdown_gone,
        "the shut-down pod's setsid child {shutdown} still runs"
    );
}
