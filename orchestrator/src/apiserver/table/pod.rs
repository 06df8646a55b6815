//! A Pod's row of `kubectl get pods`, as kubectl's pod printer (`printPod`) computes it, init
//! containers and native sidecars included.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{arr, human_duration, i, s};

/// A Pod's row: readiness, the status reason as kubectl computes it, restarts (with how long
/// ago the last one was), and the wide columns.
pub(super) fn pod_cells(o: &Value, now: Timestamp, name: Value, created: Value) -> Vec<Value> {
    let containers = arr(o, "/spec/containers");
    let statuses = arr(o, "/status/containerStatuses");
    let mut reason = s(o, "/status/reason")
        .or_else(|| s(o, "/status/phase"))
        .unwrap_or("Pending")
        .to_owned();
    let finished_at = |c: &Value| {
        s(c, "/lastState/terminated/finishedAt").and_then(|t| t.parse::<Timestamp>().ok())
    };
    let later = |a: Option<Timestamp>, b: Option<Timestamp>| a.max(b);
    // Init containers as kubectl's printPod reads them: native sidecars (restartPolicy Always)
    // count to READY and their restarts always count; the first init container not done
    // names the reason (Init:N/M, Init:<reason>).
    let inits = arr(o, "/spec/initContainers");
    let sidecar = |name: Option<&str>| {
        inits
            .iter()
            .any(|c| s(c, "/name") == name && s(c, "/restartPolicy") == Some("Always"))
    };
    let total = containers.len() + inits.iter().filter(|c| sidecar(s(c, "/name"))).count();
    let mut ready = 0;
    let (mut restarts, mut last_restart) = (0, None);
    let (mut sidecar_restarts, mut sidecar_last_restart) = (0, None);
    let mut initializing = false;
    let init_statuses = arr(o, "/status/initContainerStatuses");
    for (index, c) in init_statuses.iter().enumerate() {
        let is_sidecar = sidecar(s(c, "/name"));
        restarts += i(c, "/restartCount");
        last_restart = later(last_restart, finished_at(c));
        if is_sidecar {
            sidecar_restarts += i(c, "/restartCount");
            sidecar_last_restart = later(sidecar_last_restart, finished_at(c));
        }
        let terminated = c.pointer("/state/terminated").filter(|t| !t.is_null());
        if terminated.is_some_and(|t| t.get("exitCode").and_then(Value::as_i64) == Some(0)) {
            continue;
        }
        if is_sidecar && c.get("started").and_then(Value::as_bool) == Some(true) {
            if c.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        let waiting = s(c, "/state/waiting/reason").filter(|r| !r.is_empty());
        reason = if let Some(t) = terminated {
            match t
                .get("reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                Some(r) => format!("Init:{r}"),
                None => match t.get("signal").and_then(Value::as_i64) {
                    Some(sig) if sig != 0 => format!("Init:Signal:{sig}"),
                    _ => format!("Init:ExitCode:{}", i(c, "/state/terminated/exitCode")),
                },
            }
        } else if let Some(r) = waiting.filter(|r| *r != "PodInitializing") {
            format!("Init:{r}")
        } else {
            format!("Init:{index}/{}", inits.len())
        };
        initializing = true;
        break;
    }
    let initialized = arr(o, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == Some("Initialized") && s(c, "/status") == Some("True"));
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = sidecar_last_restart;
        let mut has_running = false;
        for c in statuses.iter().rev() {
            restarts += i(c, "/restartCount");
            last_restart = later(last_restart, finished_at(c));
            if let Some(r) = s(c, "/state/waiting/reason").filter(|r| !r.is_empty()) {
                reason = r.to_owned();
            } else if let Some(r) = s(c, "/state/terminated/reason").filter(|r| !r.is_empty()) {
                reason = r.to_owned();
            } else if c.pointer("/state/terminated").is_some_and(|t| !t.is_null()) {
                reason = match c
                    .pointer("/state/terminated/signal")
                    .and_then(Value::as_i64)
                {
                    Some(sig) if sig != 0 => format!("Signal:{sig}"),
                    _ => format!("ExitCode:{}", i(c, "/state/terminated/exitCode")),
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && c.pointer("/state/running").is_some_and(|r| !r.is_null())
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = arr(o, "/status/conditions")
                .iter()
                .any(|c| s(c, "/type") == Some("Ready") && s(c, "/status") == Some("True"));
            reason = if pod_ready { "Running" } else { "NotReady" }.to_owned();
        }
    }
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        reason = if s(o, "/status/reason") == Some("NodeLost") {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    let restarts = match last_restart {
        Some(t) if restarts > 0 => format!(
            "{restarts} ({} ago)",
            human_duration(now.as_second() - t.as_second())
        ),
        _ => restarts.to_string(),
    };
    let ip = s(o, "/status/podIP").unwrap_or("<none>");
    let node = s(o, "/spec/nodeName").unwrap_or("<none>");
    let nominated = s(o, "/status/nominatedNodeName").unwrap_or("<none>");
    let gates = arr(o, "/spec/readinessGates");
    let gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let conditions = arr(o, "/status/conditions");
        let true_gates = gates
            .iter()
            .filter(|g| {
                let t = s(g, "/conditionType");
                conditions
                    .iter()
                    .any(|c| s(c, "/type") == t && s(c, "/status") == Some("True"))
            })
            .count();
        format!("{true_gates}/{}", gates.len())
    };
    vec![
        name,
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        created,
        json!(ip),
        json!(node),
        json!(nominated),
        json!(gates),
    ]
}
