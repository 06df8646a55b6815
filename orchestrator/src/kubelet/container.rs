//! One container's life: start its process, probe it, wait for it to end (or kill it when its
//! liveness fails or the pod stops), record how it ended, and start it again as the pod's
//! restartPolicy and the crash back-off say. Everything it learns goes into the pod's record.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Inner;
use super::backoff::{Backoff, go_duration};
use super::plan::{Plan, Waiting};
use super::pod::PodEntry;
use super::probe::{self, Kind, Verdict};
use super::process::{self, exit_of};
use super::status::{Finished, PodRecord, Role, RunState, container_id, now, restart_policy};

/// The grace period of a pod that names none.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// The pod's termination grace period.
pub(crate) fn grace(spec: &k8s_openapi::api::core::v1::PodSpec) -> Duration {
    spec.termination_grace_period_seconds
        .map_or(DEFAULT_GRACE, |s| {
            Duration::from_secs(u64::try_from(s).unwrap_or(0))
        })
}

/// When a container's run that ended is followed by another: an app container as the Pod's
/// restartPolicy says; a regular init container as well, but `Always` means `OnFailure` for
/// it (it is meant to complete); a native sidecar always, whatever the Pod's policy.
fn restarts(role: Role, pod_policy: &str, exit_code: i32) -> bool {
    let policy = match (role, pod_policy) {
        (Role::Sidecar, _) => "Always",
        (Role::Init, "Always") => "OnFailure",
        (_, policy) => policy,
    };
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// Runs container `index` of `pod` (init containers first) until it is done for good: it
/// completed and its restartPolicy says no more, or `stop` fired (the pod's stop, or a
/// native sidecar's own, which comes after the app containers have exited).
pub(crate) async fn supervise(
    inner: Arc<Inner>,
    pod: Arc<PodEntry>,
    index: usize,
    plan: Result<Plan, Waiting>,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let Some((container, role)) = pod.containers.get(index) else {
        return;
    };
    let role = *role;
    let name = container.name.clone();
    let set = |record: &mut PodRecord, change: &dyn Fn(&mut super::status::ContainerRecord)| {
        if let Some(c) = record.containers.get_mut(index) {
            change(c);
        }
    };
    let plan = match plan {
        Ok(plan) => Arc::new(plan),
        Err(waiting) => {
            // Nothing in a Pod's spec changes, so this container will never start.
            tracing::warn!(pod = %pod.describe(), container = %name, reason = waiting.reason, "{}", waiting.message);
            pod.update(&inner, |r| {
                set(r, &|c| {
                    c.state = RunState::Waiting {
                        reason: waiting.reason.to_owned(),
                        message: Some(waiting.message.clone()),
                    };
                });
            });
            return;
        }
    };
    let Some(log) = pod.logs.get(index).cloned() else {
        return;
    };
    let probes = probe::specs(container, pod.ip);
    let has = |kind| probes.iter().any(|p| p.kind == kind);
    let (has_readiness, has_startup) = (has(Kind::Readiness), has(Kind::Startup));
    let policy = restart_policy(&pod.spec).to_owned();
    let pod_grace = grace(&pod.spec);
    let mut backoff = Backoff::new(inner.config.backoff_base, inner.config.backoff_cap);
    let mut run: u64 = 0;

    loop {
        if stop.borrow().is_some() {
            return;
        }
        run += 1;
        let restarted = run > 1;
        let started_at = now();
        let began = Instant::now();
        let cgroup = inner.cgroups.as_ref().and_then(|root| {
            root.cgroup(&format!("{}_{}", pod.namespace, pod.name), &name)
                .inspect_err(|e| tracing::warn!(pod = %pod.describe(), container = %name, error = %e, "cannot make the container's cgroup; its processes are held by their process group only"))
                .ok()
        });
        // Marked before the process can write, so none of its output counts to the last run.
        log.start_run();
        let finished = match process::spawn(&plan, &log, cgroup) {
            Err(e) => {
                log.end_run();
                let program = plan.argv.first().map(|p| p.to_string_lossy().into_owned());
                let message = format!(
                    "failed to start container {name:?}: exec {:?}: {e}",
                    program.unwrap_or_default()
                );
                tracing::warn!(pod = %pod.describe(), container = %name, "{message}");
                inner.event(
                    &pod,
                    Some(&name),
                    true,
                    "Failed",
                    format!("Error: {message}"),
                );
                pod.update(&inner, |r| {
                    set(r, &|c| {
                        c.run = run;
                        if restarted {
                            c.restart_count += 1;
                        }
                        c.ready = false;
                        c.started = false;
                        c.state = RunState::Waiting {
                            reason: "RunContainerError".to_owned(),
                            message: Some(message.clone()),
                        };
                    });
                });
                Finished {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".to_owned(),
                    message: Some(message),
                    started_at: None,
                    finished_at: now(),
                    container_id: None,
                }
            }
            Ok(mut process) => {
                let pid = process.pid;
                inner.event(
                    &pod,
                    Some(&name),
                    false,
                    "Created",
                    format!("Created container: {name}"),
                );
                inner.event(
                    &pod,
                    Some(&name),
                    false,
                    "Started",
                    format!("Started container: {name}"),
                );
                pod.update(&inner, |r| {
                    set(r, &|c| {
                        c.run = run;
                        if restarted {
                            c.restart_count += 1;
                        }
                        c.state = RunState::Running { pid, started_at };
                        c.started = !has_startup;
                        c.ready = !has_readiness && !has_startup;
                    });
                });
                let (started_tx, started_rx) = watch::channel(!has_startup);
                let started_tx = Arc::new(started_tx);
                // A failed liveness or startup probe asks for the kill here, with its grace.
                let (kill_tx, mut kill_rx) =
                    mpsc::unbounded_channel::<(Kind, String, Option<Duration>)>();
                let mut probing = JoinSet::new();
                for spec in probes.iter().cloned() {
                    let context = probe::Context {
                        plan: plan.clone(),
                        tls: inner.tls.clone(),
                    };
                    let (kind, grace) = (spec.kind, spec.termination_grace);
                    let (inner, pod, kill_tx, started_tx) = (
                        inner.clone(),
                        pod.clone(),
                        kill_tx.clone(),
                        started_tx.clone(),
                    );
                    let report = move |verdict: Verdict| {
                        // Only this run's record may change: a probe of an earlier run that
                        // reports late is ignored.
                        let this_run = |r: &mut PodRecord, change: &dyn Fn(&mut super::status::ContainerRecord)| {
                            if let Some(c) = r.containers.get_mut(index).filter(|c| c.run == run) {
                                change(c);
                            }
                        };
                        match (kind, verdict) {
                            (_, Verdict::Unhealthy(why)) => inner.event(
                                &pod,
                                pod.container(index).map(|c| c.name.as_str()),
                                true,
                                "Unhealthy",
                                format!("{} probe failed: {why}", kind.name()),
                            ),
                            (Kind::Readiness, verdict) => {
                                let ready = verdict == Verdict::Success;
                                pod.update(&inner, |r| this_run(r, &|c| c.ready = ready));
                            }
                            (Kind::Startup, Verdict::Success) => {
                                started_tx.send_replace(true);
                                pod.update(&inner, |r| {
                                    this_run(r, &|c| {
                                        c.started = true;
                                        if !has_readiness {
                                            c.ready = true;
                                        }
                                    });
                                });
                            }
                            (Kind::Liveness | Kind::Startup, Verdict::Failure(why)) => {
                                let _ = kill_tx.send((
                                    kind,
                                    format!("{} probe failed: {why}", kind.name()),
                                    grace,
                                ));
                            }
                            (Kind::Liveness, Verdict::Success) => {}
                        }
                    };
                    probing.spawn(probe::run(spec, context, started_rx.clone(), report));
                }
                drop(kill_tx);

                let stopping = async { stop.wait_for(Option::is_some).await.map(|d| *d) };
                let ended = tokio::select! {
                    status = process.child.wait() => status,
                    Some((kind, why, grace)) = kill_rx.recv() => {
                        tracing::info!(pod = %pod.describe(), container = %name, "{why}; the container will be restarted");
                        inner.event(
                            &pod,
                            Some(&name),
                            false,
                            "Killing",
                            format!("Container {name} failed {} probe, will be restarted", kind.name().to_lowercase()),
                        );
                        let deadline = super::deadline(grace.unwrap_or(pod_grace));
                        let deadline = (*stop.borrow()).map_or(deadline, |d| d.min(deadline));
                        process.terminate(deadline, &mut stop).await
                    }
                    Ok(Some(deadline)) = stopping => {
                        inner.event(&pod, Some(&name), false, "Killing", format!("Stopping container {name}"));
                        process.terminate(deadline, &mut stop).await
                    }
                };
                probing.abort_all();
                process.reap().await;
                log.end_run();
                let (exit_code, signal) = match &ended {
                    Ok(status) => exit_of(status),
                    Err(e) => {
                        tracing::warn!(pod = %pod.describe(), container = %name, error = %e, "lost track of the process");
                        (-1, None)
                    }
                };
                Finished {
                    exit_code,
                    signal,
                    reason: if exit_code == 0 { "Completed" } else { "Error" }.to_owned(),
                    message: None,
                    started_at: Some(started_at),
                    finished_at: now(),
                    container_id: Some(container_id(pid)),
                }
            }
        };

        let stopping = stop.borrow().is_some();
        let restart = !stopping && restarts(role, &policy, finished.exit_code);
        if !restart {
            pod.update(&inner, |r| {
                set(r, &|c| {
                    c.ready = false;
                    c.started = false;
                    c.state = RunState::Terminated(finished.clone());
                });
            });
            return;
        }
        if began.elapsed() >= inner.config.backoff_reset {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        let start_error = finished.reason == "StartError";
        let message = format!(
            "back-off {} restarting failed container={name} pod={}_{}({})",
            go_duration(delay),
            pod.name,
            pod.namespace,
            pod.uid
        );
        if !delay.is_zero() {
            inner.event(
                &pod,
                Some(&name),
                true,
                "BackOff",
                format!(
                    "Back-off restarting failed container {name} in pod {}_{}({})",
                    pod.name, pod.namespace, pod.uid
                ),
            );
        }
        pod.update(&inner, |r| {
            set(r, &|c| {
                c.ready = false;
                c.started = false;
                c.last = Some(finished.clone());
                // A start error keeps saying why while it waits; a crash says it waits.
                if !start_error {
                    c.state = if delay.is_zero() {
                        RunState::Waiting {
                            reason: "ContainerCreating".to_owned(),
                            message: None,
                        }
                    } else {
                        RunState::Waiting {
                            reason: "CrashLoopBackOff".to_owned(),
                            message: Some(message.clone()),
                        }
                    };
                }
            });
        });
        if !delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(Option::is_some) => return,
            }
        }
    }
}
