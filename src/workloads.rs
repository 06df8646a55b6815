//! `ferry get pods|deployments|replicasets`, `ferry logs`, `ferry exec`, `ferry scale` and `ferry rollout`:
//! kubectl-like commands against the local runtime's API on a running `ferry up`'s admin port
//! (`/api/v1/…`). The objects arrive as Kubernetes JSON and are read here as plain JSON, so
//! Kubernetes types stay inside the control plane.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::Method;
use serde_json::Value;

use crate::get::{self, Error, Output, encode, or_none, table};

/// The workload kinds `get` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Pods,
    Deployments,
    ReplicaSets,
}

impl Workload {
    fn path(self) -> &'static str {
        match self {
            Workload::Pods => "/api/v1/pods",
            Workload::Deployments => "/api/v1/deployments",
            Workload::ReplicaSets => "/api/v1/replicasets",
        }
    }
}

/// What went wrong talking to the local runtime.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error(transparent)]
    Admin(#[from] Error),
    /// The API said no; its message.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Usage(String),
    #[error("timed out waiting for the rollout: {0}")]
    Timeout(String),
}

async fn call(
    admin: SocketAddr,
    method: Method,
    path: &str,
) -> Result<(http::HeaderMap, bytes::Bytes), WorkloadError> {
    let (status, headers, body) = get::request(admin, method, path).await?;
    if status.is_success() {
        Ok((headers, body))
    } else {
        Err(WorkloadError::Refused(
            String::from_utf8_lossy(&body).trim_end().to_owned(),
        ))
    }
}

async fn items(admin: SocketAddr, workload: Workload) -> Result<Vec<Value>, WorkloadError> {
    let (_, body) = call(admin, Method::GET, workload.path()).await?;
    let list: Value =
        serde_json::from_slice(&body).map_err(|e| Error::Decode(e.to_string(), admin))?;
    Ok(list
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return "",
        }
    }
    v.as_str().unwrap_or_default()
}

fn int(v: &Value, path: &[&str]) -> i64 {
    let mut v = v;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return 0,
        }
    }
    v.as_i64().unwrap_or(0)
}

/// Ages as kubectl prints them: `42s`, `5m`, `3h`, `2d`.
pub fn age(timestamp: &str, now: SystemTime) -> String {
    let Ok(then) = timestamp.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let secs = now.saturating_sub(u64::try_from(then.as_second()).unwrap_or(0));
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        7200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// The STATUS column of `kubectl get pods`: the phase (or the Pod's reason), replaced by a
/// container's waiting or terminated reason (`Completed` for a finished Job-style Pod), but
/// `Running` while another container still runs and is ready.
fn pod_status(pod: &Value) -> String {
    if !text(pod, &["metadata", "deletionTimestamp"]).is_empty() {
        return "Terminating".into();
    }
    let mut status = text(pod, &["status", "phase"]).to_owned();
    let reason = text(pod, &["status", "reason"]);
    if !reason.is_empty() {
        status = reason.to_owned();
    }
    let mut running = false;
    for c in pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .rev()
    {
        let waiting = text(c, &["state", "waiting", "reason"]);
        let terminated = text(c, &["state", "terminated", "reason"]);
        if !waiting.is_empty() {
            status = waiting.to_owned();
        } else if !terminated.is_empty() {
            status = terminated.to_owned();
        } else if c.get("ready").and_then(Value::as_bool) == Some(true)
            && c.pointer("/state/running").is_some()
        {
            running = true;
        }
    }
    if status == "Completed" && running {
        status = "Running".into();
    }
    or_none(status)
}

/// The Pod's native sidecars (init containers with `restartPolicy: Always`): kubectl counts
/// them with the app's containers in READY.
fn native_sidecars(pod: &Value) -> Vec<&str> {
    pod.pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| text(c, &["restartPolicy"]) == "Always")
        .map(|c| text(c, &["name"]))
        .collect()
}

/// Lists live workloads.
pub async fn get(
    admin: SocketAddr,
    workload: Workload,
    output: Output,
) -> Result<String, WorkloadError> {
    let items = items(admin, workload).await?;
    if matches!(output, Output::Json | Output::Yaml) {
        return Ok(encode(&items, output)?);
    }
    Ok(render(
        &items,
        workload,
        output == Output::Wide,
        SystemTime::now(),
    ))
}

/// The table of one workload list.
pub fn render(items: &[Value], workload: Workload, wide: bool, now: SystemTime) -> String {
    let name = |v: &Value| text(v, &["metadata", "name"]).to_owned();
    let ns = |v: &Value| text(v, &["metadata", "namespace"]).to_owned();
    let created = |v: &Value| age(text(v, &["metadata", "creationTimestamp"]), now);
    match workload {
        Workload::Pods => {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|p| {
                    let sidecars = native_sidecars(p);
                    let containers = p
                        .pointer("/spec/containers")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                        + sidecars.len();
                    let sidecar_statuses = p
                        .pointer("/status/initContainerStatuses")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter(|c| sidecars.contains(&text(c, &["name"])));
                    let statuses: Vec<&Value> = p
                        .pointer("/status/containerStatuses")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .chain(sidecar_statuses)
                        .collect();
                    let ready = statuses
                        .iter()
                        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                        .count();
                    let restarts: i64 = statuses.iter().map(|c| int(c, &["restartCount"])).sum();
                    let mut row = vec![
                        ns(p),
                        name(p),
                        format!("{ready}/{containers}"),
                        pod_status(p),
                        restarts.to_string(),
                        created(p),
                    ];
                    if wide {
                        row.push(or_none(text(p, &["status", "podIP"]).to_owned()));
                        row.push(or_none(text(p, &["spec", "nodeName"]).to_owned()));
                    }
                    row
                })
                .collect();
            let mut header = vec!["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"];
            if wide {
                header.extend(["IP", "NODE"]);
            }
            table(&header, &rows)
        }
        Workload::Deployments => {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|d| {
                    vec![
                        ns(d),
                        name(d),
                        format!(
                            "{}/{}",
                            int(d, &["status", "readyReplicas"]),
                            d.pointer("/spec/replicas")
                                .and_then(Value::as_i64)
                                .unwrap_or(1)
                        ),
                        int(d, &["status", "updatedReplicas"]).to_string(),
                        int(d, &["status", "availableReplicas"]).to_string(),
                        created(d),
                    ]
                })
                .collect();
            table(
                &[
                    "NAMESPACE",
                    "NAME",
                    "READY",
                    "UP-TO-DATE",
                    "AVAILABLE",
                    "AGE",
                ],
                &rows,
            )
        }
        Workload::ReplicaSets => {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|r| {
                    vec![
                        ns(r),
                        name(r),
                        int(r, &["spec", "replicas"]).to_string(),
                        int(r, &["status", "replicas"]).to_string(),
                        int(r, &["status", "readyReplicas"]).to_string(),
                        created(r),
                    ]
                })
                .collect();
            table(
                &["NAMESPACE", "NAME", "DESIRED", "CURRENT", "READY", "AGE"],
                &rows,
            )
        }
    }
}

/// `deployment/NAME`, `deploy/NAME`, `deployments/NAME` or `NAME`: the name.
pub fn deployment_name(arg: &str) -> Result<&str, WorkloadError> {
    match arg.split_once('/') {
        None => name("deployment", arg),
        Some(("deployment" | "deployments" | "deploy" | "deployment.apps", n)) if !n.is_empty() => {
            name("deployment", n)
        }
        Some(_) => Err(WorkloadError::Usage(format!(
            "{arg:?}: only deployments can be named here (deployment/NAME)"
        ))),
    }
}

/// Names go into the API's query strings as they are, so only what a Kubernetes name may hold
/// (lower-case letters, digits, `-` and `.`) is let through.
fn name<'a>(what: &str, value: &'a str) -> Result<&'a str, WorkloadError> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(value)
    } else {
        Err(WorkloadError::Usage(format!(
            "{what} {value:?} is not a valid name (lower-case letters, digits, '-' and '.')"
        )))
    }
}

fn with_namespace(mut path: String, namespace: Option<&str>) -> Result<String, WorkloadError> {
    if let Some(ns) = namespace {
        let _ = write!(path, "&namespace={}", name("namespace", ns)?);
    }
    Ok(path)
}

/// `ferry scale deployment/NAME --replicas N`.
pub async fn scale(
    admin: SocketAddr,
    namespace: Option<&str>,
    target: &str,
    replicas: i32,
) -> Result<String, WorkloadError> {
    let name = deployment_name(target)?;
    let path = with_namespace(
        format!("/api/v1/scale?name={name}&replicas={replicas}"),
        namespace,
    )?;
    let (_, body) = call(admin, Method::POST, &path).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `ferry rollout undo deployment/NAME [--to-revision N]`.
pub async fn undo(
    admin: SocketAddr,
    namespace: Option<&str>,
    target: &str,
    to_revision: Option<u64>,
) -> Result<String, WorkloadError> {
    let name = deployment_name(target)?;
    let mut path = format!("/api/v1/rollout/undo?name={name}");
    if let Some(r) = to_revision {
        let _ = write!(path, "&to-revision={r}");
    }
    let (_, body) = call(admin, Method::POST, &with_namespace(path, namespace)?).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `ferry rollout history deployment/NAME`.
pub async fn history(
    admin: SocketAddr,
    namespace: Option<&str>,
    target: &str,
) -> Result<String, WorkloadError> {
    let name = deployment_name(target)?;
    let path = with_namespace(format!("/api/v1/rollout/history?name={name}"), namespace)?;
    let (_, body) = call(admin, Method::GET, &path).await?;
    let revisions: Vec<Value> =
        serde_json::from_slice(&body).map_err(|e| Error::Decode(e.to_string(), admin))?;
    let rows: Vec<Vec<String>> = revisions
        .iter()
        .map(|r| {
            vec![
                int(r, &["revision"]).to_string(),
                or_none(text(r, &["changeCause"]).to_owned()),
            ]
        })
        .collect();
    Ok(format!(
        "deployment.apps/{name}\n{}",
        table(&["REVISION", "CHANGE-CAUSE"], &rows)
    ))
}

/// Where a rollout stands, in kubectl's words; `true` when it is complete.
pub fn rollout_state(d: &Value) -> (String, bool) {
    let name = text(d, &["metadata", "name"]);
    let want = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let generation = int(d, &["metadata", "generation"]);
    let observed = int(d, &["status", "observedGeneration"]);
    let updated = int(d, &["status", "updatedReplicas"]);
    let replicas = int(d, &["status", "replicas"]);
    let available = int(d, &["status", "availableReplicas"]);
    if observed < generation {
        return (
            "Waiting for deployment spec update to be observed...".into(),
            false,
        );
    }
    if updated < want {
        return (
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {want} new replicas have been updated..."
            ),
            false,
        );
    }
    if replicas > updated {
        return (
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
                replicas - updated
            ),
            false,
        );
    }
    if available < updated {
        return (
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available..."
            ),
            false,
        );
    }
    (
        format!("deployment \"{name}\" successfully rolled out"),
        true,
    )
}

/// `ferry rollout status deployment/NAME`: prints each new state until the rollout is
/// complete, or the timeout passes.
pub async fn status(
    admin: SocketAddr,
    namespace: Option<&str>,
    target: &str,
    timeout: Option<Duration>,
    out: &mut (dyn std::io::Write + Send),
) -> Result<(), WorkloadError> {
    let name = deployment_name(target)?;
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let all = items(admin, Workload::Deployments).await?;
        let found: Vec<&Value> = all
            .iter()
            .filter(|d| text(d, &["metadata", "name"]) == name)
            .filter(|d| namespace.is_none_or(|ns| text(d, &["metadata", "namespace"]) == ns))
            .collect();
        let d = match found.as_slice() {
            [d] => *d,
            [] => {
                return Err(WorkloadError::Refused(format!(
                    "deployment {name} not found"
                )));
            }
            _ => {
                return Err(WorkloadError::Usage(format!(
                    "deployment {name} exists in several namespaces: name one with -n"
                )));
            }
        };
        let (message, done) = rollout_state(d);
        if message != last {
            let _ = writeln!(out, "{message}");
            last = message;
        }
        if done {
            return Ok(());
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            return Err(WorkloadError::Timeout(last));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `ferry logs POD [-c CONTAINER] [-f]`: the container's kept log, and with `follow` what
/// it writes next until the Pod is gone.
pub async fn logs(
    admin: SocketAddr,
    namespace: Option<&str>,
    pod: &str,
    container: Option<&str>,
    follow: bool,
    out: &mut (dyn std::io::Write + Send),
) -> Result<(), WorkloadError> {
    let pod = name("pod", pod)?;
    let container = container.map(|c| name("container", c)).transpose()?;
    let mut offset = 0u64;
    let mut first = true;
    loop {
        let mut path = format!("/api/v1/logs?pod={pod}&offset={offset}");
        if let Some(c) = container {
            let _ = write!(path, "&container={c}");
        }
        if follow {
            path.push_str("&wait=true");
        }
        let path = with_namespace(path, namespace)?;
        let (headers, body) = match call(admin, Method::GET, &path).await {
            Ok(answer) => answer,
            // Followed to its end: the Pod went away between two reads.
            Err(WorkloadError::Refused(_)) if !first => return Ok(()),
            Err(e) => return Err(e),
        };
        first = false;
        let _ = out.write_all(&body);
        let _ = out.flush();
        offset = headers
            .get("x-log-offset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(offset + body.len() as u64);
        let ended = headers.get("x-log-end").is_some();
        if !follow || ended {
            return Ok(());
        }
    }
}

/// `ferry exec`: how to run a command in a running container of the Pod (the default one when
/// `container` is `None`), from the local runtime's API.
pub async fn exec_plan(
    admin: SocketAddr,
    namespace: Option<&str>,
    pod: &str,
    container: Option<&str>,
) -> Result<ferry_orchestrator::kubelet::ExecPlan, WorkloadError> {
    let pod = name("pod", pod)?;
    let mut path = format!("/api/v1/exec?pod={pod}");
    if let Some(c) = container {
        let _ = write!(path, "&container={}", name("container", c)?);
    }
    let path = with_namespace(path, namespace)?;
    let (_, body) = call(admin, Method::GET, &path).await?;
    serde_json::from_slice(&body).map_err(|e| Error::Decode(e.to_string(), admin).into())
}

/// The command that runs `argv` as `plan` says, on this machine: behind its `enter` (the Pod's
/// network namespace), with the container's environment only, in its working directory.
pub fn exec_command(
    plan: &ferry_orchestrator::kubelet::ExecPlan,
    argv: &[std::ffi::OsString],
) -> Result<std::process::Command, WorkloadError> {
    if argv.is_empty() {
        return Err(WorkloadError::Usage(
            "a command is required after --".to_owned(),
        ));
    }
    // `ip netns exec NAME`: the namespace must be this machine's.
    if let [_, netns, exec, ns] = plan.enter.as_slice()
        && netns == "netns"
        && exec == "exec"
        && !std::path::Path::new("/run/netns").join(ns).exists()
    {
        return Err(WorkloadError::Usage(format!(
            "the Pod's network namespace {ns} is not on this machine: ferry exec runs the command where it is started, so --admin must name a ferry up on this machine"
        )));
    }
    let mut full: Vec<std::ffi::OsString> = plan.enter.iter().map(Into::into).collect();
    full.extend(argv.iter().cloned());
    let (program, args) = full
        .split_first()
        .ok_or_else(|| WorkloadError::Usage("a command is required after --".to_owned()))?;
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &plan.working_dir {
        command.current_dir(dir);
    }
    Ok(command)
}

#[cfg(test)]
mod tests;
