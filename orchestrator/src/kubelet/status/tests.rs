use std::net::IpAddr;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::{
    ContainerRecord, Finished, PodRecord, Role, RunState, now, phase, pod_phase, pod_status,
};
use crate::kubelet::tests::terminated;

fn finished(exit_code: i32) -> Finished {
    Finished {
        exit_code,
        signal: None,
        reason: if exit_code == 0 { "Completed" } else { "Error" }.to_owned(),
        message: None,
        started_at: Some(Timestamp::UNIX_EPOCH),
        finished_at: Timestamp::UNIX_EPOCH,
        container_id: Some("ferry://1".to_owned()),
    }
}

fn container(state: RunState, last: Option<Finished>) -> ContainerRecord {
    ContainerRecord {
        name: "c".to_owned(),
        role: Role::App,
        image: "i".to_owned(),
        state,
        last,
        restart_count: 0,
        ready: false,
        started: false,
        run: 1,
    }
}

fn waiting() -> RunState {
    RunState::Waiting {
        reason: "CrashLoopBackOff".to_owned(),
        message: None,
    }
}

fn running() -> RunState {
    RunState::Running {
        pid: 42,
        started_at: Timestamp::UNIX_EPOCH,
    }
}

#[test]
fn phases_as_the_kubelet_decides_them() {
    let done = |code| container(RunState::Terminated(finished(code)), None);
    assert_eq!(phase("Always", &[container(waiting(), None)]), "Pending");
    assert_eq!(phase("Always", &[container(running(), None)]), "Running");
    // One running and one not yet started: still pending.
    assert_eq!(
        phase(
            "Always",
            &[container(running(), None), container(waiting(), None)]
        ),
        "Pending"
    );
    // Waiting to restart counts as stopped, and Always restarts: running.
    assert_eq!(
        phase("Always", &[container(waiting(), Some(finished(1)))]),
        "Running"
    );
    assert_eq!(
        phase("OnFailure", &[container(waiting(), Some(finished(1)))]),
        "Running"
    );
    assert_eq!(phase("Never", &[done(0)]), "Succeeded");
    assert_eq!(phase("OnFailure", &[done(0), done(0)]), "Succeeded");
    assert_eq!(phase("Never", &[done(0), done(2)]), "Failed");
    assert_eq!(
        phase("Never", &[done(0), container(running(), None)]),
        "Running"
    );
    assert_eq!(phase("Never", &[]), "Pending");
}

#[test]
fn status_reports_addresses_conditions_and_containers() {
    let spec: PodSpec = serde_json::from_value(json!({
        "containers": [{"name": "c", "image": "i"}]
    }))
    .expect("spec");
    let mut record = PodRecord::new(&spec, now());
    record.containers[0].state = running();
    record.containers[0].last = Some(finished(137));
    record.containers[0].restart_count = 1;
    let ip: IpAddr = "127.1.0.7".parse().expect("ip");
    let host: IpAddr = "127.0.0.1".parse().expect("ip");
    let status = pod_status(&spec, &record, ip, host);
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("127.1.0.7"));
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    let conditions = status.conditions.expect("conditions");
    let ready = conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [c]")
    );
    for kind in ["PodScheduled", "Initialized", "ContainersReady"] {
        assert!(conditions.iter().any(|c| c.type_ == kind), "{kind}");
    }
    let c = &status.container_statuses.expect("statuses")[0];
    assert_eq!(c.container_id.as_deref(), Some("ferry://42"));
    assert_eq!(c.restart_count, 1);
    assert!(c.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
    let last = terminated(&c.last_state, "last");
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (137, Some("Error"))
    );

    record.containers[0].ready = true;
    record.settle(now());
    let status = pod_status(&spec, &record, ip, host);
    let conditions = status.conditions.expect("conditions");
    let ready = conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("True", None)
    );
}

fn with_role(mut c: ContainerRecord, name: &str, role: Role) -> ContainerRecord {
    c.name = name.to_owned();
    c.role = role;
    c
}

fn record(containers: Vec<ContainerRecord>, initialized: bool) -> PodRecord {
    PodRecord {
        start_time: Timestamp::UNIX_EPOCH,
        containers,
        initialized,
        ready: (false, Timestamp::UNIX_EPOCH),
    }
}

#[test]
fn a_pod_initializing_is_pending_and_a_failed_init_fails_it_only_for_never() {
    let done = |code| container(RunState::Terminated(finished(code)), None);
    let init = |c| with_role(c, "init", Role::Init);
    let app = |c| with_role(c, "app", Role::App);
    let pending = record(
        vec![
            init(container(running(), None)),
            app(container(waiting(), None)),
        ],
        false,
    );
    assert_eq!(pod_phase("Always", &pending), "Pending");
    let failed = record(vec![init(done(1)), app(container(waiting(), None))], false);
    assert_eq!(pod_phase("Never", &failed), "Failed");
    // OnFailure restarts it: still Pending.
    assert_eq!(pod_phase("OnFailure", &failed), "Pending");
    let ready = record(vec![init(done(0)), app(container(running(), None))], true);
    assert_eq!(pod_phase("Always", &ready), "Running");
}

#[test]
fn a_job_with_a_sidecar_runs_until_the_sidecar_stopped_then_succeeds() {
    let done = |code| container(RunState::Terminated(finished(code)), None);
    let sidecar = |c| with_role(c, "proxy", Role::Sidecar);
    let app = |c| with_role(c, "app", Role::App);
    let running_sidecar = record(
        vec![sidecar(container(running(), None)), app(done(0))],
        true,
    );
    assert_eq!(pod_phase("Never", &running_sidecar), "Running");
    // A sidecar stopped by SIGTERM exits non-zero: it does not fail the Pod.
    let stopped = record(vec![sidecar(done(143)), app(done(0))], true);
    assert_eq!(pod_phase("Never", &stopped), "Succeeded");
}

#[test]
fn init_containers_have_their_own_statuses_and_a_sidecar_counts_to_readiness() {
    let spec: PodSpec = serde_json::from_value(json!({
        "initContainers": [
            {"name": "init", "image": "i"},
            {"name": "proxy", "image": "i", "restartPolicy": "Always"},
        ],
        "containers": [{"name": "app", "image": "i"}],
    }))
    .expect("a spec");
    let mut record = PodRecord::new(&spec, now());
    assert!(!record.initialized);
    let roles: Vec<Role> = record.containers.iter().map(|c| c.role).collect();
    assert_eq!(roles, [Role::Init, Role::Sidecar, Role::App]);
    let ip: IpAddr = "10.0.0.2".parse().expect("an IP");
    let status = pod_status(&spec, &record, ip, ip);
    let initialized = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Initialized")
        .expect("Initialized");
    assert_eq!(initialized.status, "False");
    assert_eq!(
        initialized.message.as_deref(),
        Some("containers with incomplete status: [init proxy]")
    );
    let inits: Vec<&str> = status
        .init_container_statuses
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(inits, ["init", "proxy"]);
    let apps: Vec<&str> = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(apps, ["app"]);

    // The app ready but not the sidecar: the Pod is not ready.
    record.initialized = true;
    record.containers[0].state = RunState::Terminated(finished(0));
    record.containers[2].ready = true;
    record.settle(now());
    assert!(!record.ready.0);
    record.containers[1].ready = true;
    record.settle(now());
    assert!(record.ready.0, "the regular init container does not count");
}
