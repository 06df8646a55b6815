//! What the kubelet knows about a pod's containers, and that knowledge written as the
//! Kubernetes `PodStatus` a kubelet reports: phase, conditions, addresses and one
//! `ContainerStatus` per container (init containers in `initContainerStatuses`). Rendering is
//! a pure function of the record.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// One pod as the kubelet sees it.
#[derive(Clone, Debug)]
pub(crate) struct PodRecord {
    pub(crate) start_time: Timestamp,
    /// The init containers, in order, then the app containers (each knows its [`Role`]).
    pub(crate) containers: Vec<ContainerRecord>,
    /// Every regular init container completed and every native sidecar started: the app
    /// containers may start (the Initialized condition).
    pub(crate) initialized: bool,
    /// Whether every app container and native sidecar is ready, and since when (the Ready and
    /// ContainersReady conditions' last transition).
    pub(crate) ready: (bool, Timestamp),
}

/// What a container is to its Pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A regular init container: runs to completion before the next one starts.
    Init,
    /// An init container with `restartPolicy: Always` (KEP-753): started before the next one,
    /// restarted whenever it exits, stopped after the app containers.
    Sidecar,
    /// One of `spec.containers`.
    App,
}

impl Role {
    /// The role of an init container.
    pub(crate) fn of_init(c: &Container) -> Role {
        if c.restart_policy.as_deref() == Some("Always") {
            Role::Sidecar
        } else {
            Role::Init
        }
    }

    /// Whether its readiness counts to the Pod's (app containers and native sidecars).
    pub(crate) fn counts_ready(self) -> bool {
        self != Role::Init
    }
}

/// One container as the kubelet sees it.
#[derive(Clone, Debug)]
pub(crate) struct ContainerRecord {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) image: String,
    pub(crate) state: RunState,
    /// The previous run, once the container restarted.
    pub(crate) last: Option<Finished>,
    pub(crate) restart_count: i32,
    pub(crate) ready: bool,
    /// The startup probe passed (or there is none) while the current run is running.
    pub(crate) started: bool,
    /// Which run of the container this is (0 before the first): probes of an earlier run
    /// cannot change a later one.
    pub(crate) run: u64,
}

/// The state of a container's current run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RunState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        pid: u32,
        started_at: Timestamp,
    },
    Terminated(Finished),
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Finished {
    pub(crate) exit_code: i32,
    pub(crate) signal: Option<i32>,
    /// `Completed`, `Error` or `StartError`.
    pub(crate) reason: String,
    pub(crate) message: Option<String>,
    pub(crate) started_at: Option<Timestamp>,
    pub(crate) finished_at: Timestamp,
    pub(crate) container_id: Option<String>,
}

impl PodRecord {
    pub(crate) fn new(spec: &PodSpec, now: Timestamp) -> PodRecord {
        let inits = spec.init_containers.as_deref().unwrap_or(&[]);
        // Containers that wait for init containers say so, as a kubelet's do.
        let first = if inits.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let containers = inits
            .iter()
            .map(|c| (c, Role::of_init(c)))
            .chain(spec.containers.iter().map(|c| (c, Role::App)))
            .map(|(c, role)| ContainerRecord {
                name: c.name.clone(),
                role,
                image: c.image.clone().unwrap_or_default(),
                state: RunState::Waiting {
                    reason: first.to_owned(),
                    message: None,
                },
                last: None,
                restart_count: 0,
                ready: false,
                started: false,
                run: 0,
            })
            .collect();
        PodRecord {
            start_time: now,
            containers,
            initialized: inits.is_empty(),
            ready: (false, now),
        }
    }

    /// The app containers' records.
    pub(crate) fn apps(&self) -> impl Iterator<Item = &ContainerRecord> {
        self.containers.iter().filter(|c| c.role == Role::App)
    }

    /// Notes when readiness changed; called after every change.
    pub(crate) fn settle(&mut self, now: Timestamp) {
        let ready = self
            .containers
            .iter()
            .filter(|c| c.role.counts_ready())
            .all(|c| c.ready);
        if ready != self.ready.0 {
            self.ready = (ready, now);
        }
    }
}

/// The current time (jiff's clock: this crate builds jiff with `std`, which k8s-openapi does
/// not ask for).
pub(crate) fn now() -> Timestamp {
    Timestamp::now()
}

/// The container id ferry reports for a process.
pub(crate) fn container_id(pid: u32) -> String {
    format!("ferry://{pid}")
}

/// The pod's phase, decided as the kubelet's `getPhase` does.
pub(crate) fn phase(restart_policy: &str, containers: &[ContainerRecord]) -> &'static str {
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in containers {
        match &c.state {
            RunState::Running { .. } => running += 1,
            RunState::Terminated(f) => {
                stopped += 1;
                if f.exit_code == 0 {
                    succeeded += 1;
                }
            }
            // Waiting to restart counts as stopped, waiting to start as waiting.
            RunState::Waiting { .. } if c.last.is_some() => stopped += 1,
            RunState::Waiting { .. } => waiting += 1,
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped == containers.len() && stopped > 0 {
        if restart_policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if restart_policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

/// The phase of a pod with init containers and native sidecars, as the kubelet's `getPhase`:
/// Pending while initializing, Failed when a regular init container failed for good
/// (restartPolicy Never), else the app containers' phase, but Running while a native sidecar
/// still runs after they completed (until it is stopped).
pub(crate) fn pod_phase(restart_policy: &str, record: &PodRecord) -> &'static str {
    let init_failed = record.containers.iter().any(|c| {
        c.role == Role::Init && matches!(&c.state, RunState::Terminated(f) if f.exit_code != 0)
    });
    if init_failed && restart_policy == "Never" {
        return "Failed";
    }
    if !record.initialized {
        return "Pending";
    }
    let apps: Vec<ContainerRecord> = record.apps().cloned().collect();
    let phase = phase(restart_policy, &apps);
    let sidecar_running = record
        .containers
        .iter()
        .any(|c| c.role == Role::Sidecar && matches!(c.state, RunState::Running { .. }));
    if matches!(phase, "Succeeded" | "Failed") && sidecar_running {
        "Running"
    } else {
        phase
    }
}

/// The pod's restartPolicy, `Always` when unset.
pub(crate) fn restart_policy(spec: &PodSpec) -> &str {
    spec.restart_policy.as_deref().unwrap_or("Always")
}

/// The `PodStatus` of a pod.
pub(crate) fn pod_status(
    spec: &PodSpec,
    record: &PodRecord,
    pod_ip: IpAddr,
    host_ip: IpAddr,
) -> PodStatus {
    let phase = pod_phase(restart_policy(spec), record);
    let start = Time(record.start_time);
    let condition = |type_: &str, status: bool, since: &Time| PodCondition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        last_transition_time: Some(since.clone()),
        ..PodCondition::default()
    };
    let (ready, since) = (record.ready.0, Time(record.ready.1));
    let unready: Vec<&str> = record
        .containers
        .iter()
        .filter(|c| c.role.counts_ready() && !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let not_ready = |mut c: PodCondition| {
        if !ready {
            let completed = matches!(phase, "Succeeded" | "Failed");
            c.reason = Some(
                if completed {
                    "PodCompleted"
                } else {
                    "ContainersNotReady"
                }
                .to_owned(),
            );
            if !completed {
                c.message = Some(format!(
                    "containers with unready status: [{}]",
                    unready.join(" ")
                ));
            }
        }
        c
    };
    let mut initialized = condition("Initialized", record.initialized, &start);
    if !record.initialized {
        let incomplete: Vec<&str> = record
            .containers
            .iter()
            .filter(|c| c.role != Role::App)
            .filter(|c| match c.role {
                Role::Init => !matches!(&c.state, RunState::Terminated(f) if f.exit_code == 0),
                _ => !c.started,
            })
            .map(|c| c.name.as_str())
            .collect();
        initialized.reason = Some("ContainersNotInitialized".to_owned());
        initialized.message = Some(format!(
            "containers with incomplete status: [{}]",
            incomplete.join(" ")
        ));
    }
    let conditions = vec![
        condition("PodReadyToStartContainers", true, &start),
        initialized,
        not_ready(condition("Ready", ready, &since)),
        not_ready(condition("ContainersReady", ready, &since)),
        condition("PodScheduled", true, &start),
    ];
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        host_ip: Some(host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: host_ip.to_string(),
        }]),
        pod_ip: Some(pod_ip.to_string()),
        pod_ips: Some(vec![PodIP {
            ip: pod_ip.to_string(),
        }]),
        start_time: Some(start.clone()),
        qos_class: Some("BestEffort".to_owned()),
        container_statuses: Some(record.apps().map(container_status).collect()),
        init_container_statuses: (record.containers.iter().any(|c| c.role != Role::App)).then(
            || {
                record
                    .containers
                    .iter()
                    .filter(|c| c.role != Role::App)
                    .map(container_status)
                    .collect()
            },
        ),
        ..PodStatus::default()
    }
}

fn container_status(c: &ContainerRecord) -> ContainerStatus {
    let (state, container_id) = match &c.state {
        RunState::Waiting { reason, message } => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..ContainerState::default()
            },
            c.last.as_ref().and_then(|l| l.container_id.clone()),
        ),
        RunState::Running { pid, started_at } => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..ContainerState::default()
            },
            Some(container_id(*pid)),
        ),
        RunState::Terminated(f) => (terminated(f), f.container_id.clone()),
    };
    let running = matches!(c.state, RunState::Running { .. });
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: String::new(),
        container_id,
        ready: c.ready,
        started: Some(running && c.started),
        restart_count: c.restart_count,
        state: Some(state),
        last_state: Some(c.last.as_ref().map(terminated).unwrap_or_default()),
        ..ContainerStatus::default()
    }
}

fn terminated(f: &Finished) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: f.container_id.clone(),
            exit_code: f.exit_code,
            signal: f.signal,
            reason: Some(f.reason.clone()),
            message: f.message.clone(),
            started_at: f.started_at.map(Time),
            finished_at: Some(Time(f.finished_at)),
        }),
        ..ContainerState::default()
    }
}

#[cfg(test)]
mod tests;
