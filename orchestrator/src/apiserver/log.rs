//! The `pods/log` subresource (`kubectl logs`): a container's log from the kubelet's ring,
//! as the API server proxies it from a node's kubelet.
//!
//! `GET /api/v1/namespaces/N/pods/P/log` with `container` (required when the Pod has several),
//! `follow` (a chunked stream that ends when the container's run ends, the Pod goes, or the
//! client hangs up), `tailLines`, `limitBytes`, `previous` (the run before the current one,
//! while the ring still holds it), `timestamps` (each line prefixed with when it was written,
//! RFC 3339 with nanoseconds, as the kubelet does) and `sinceSeconds`/`sinceTime`. The log is
//! the current run's, or the last one's when the container is not running (a crash loop shows
//! why it crashed).
//!
//! It may touch the store (the Pod) and the kubelet's log rings, nothing else.

use bytes::Bytes;
use jiff::Timestamp;
use tokio::sync::mpsc;

use super::requests::{bad_request, status};
use super::watch::{ApiBody, WatchBody};
use super::*;
use crate::kubelet::{ContainerError, Logs, Run};

/// `text/plain`, as the API server answers a log.
const TEXT: &str = "text/plain";
/// Chunks a follower may have queued before the copier waits for the client.
const QUEUE: usize = 16;

/// What a `pods/log` request asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct LogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
    pub timestamps: bool,
    /// Only lines written at or after this.
    pub since: Option<Timestamp>,
}

/// A boolean query parameter as Go's `strconv.ParseBool` reads it.
fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "{name}: Invalid value: {value:?}: must be true or false"
        )),
    }
}

/// A non-negative count; `must` names what it counts for the error.
fn parse_count(name: &str, value: &str, least: usize) -> Result<usize, String> {
    match value.parse::<i64>() {
        Ok(n) if n >= least as i64 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        Ok(n) => Err(format!(
            "{name}: Invalid value: {n}: must be greater than or equal to {least}"
        )),
        Err(_) => Err(format!(
            "{name}: Invalid value: {value:?}: must be an integer"
        )),
    }
}

/// The request's options at `now`, or why they are not valid (the API server's message).
pub(super) fn options(params: &[(String, String)], now: Timestamp) -> Result<LogOptions, String> {
    let mut o = LogOptions::default();
    let mut since_given = 0;
    for (name, value) in params {
        match name.as_str() {
            "container" if !value.is_empty() => o.container = Some(value.clone()),
            "follow" => o.follow = parse_bool(name, value)?,
            "previous" => o.previous = parse_bool(name, value)?,
            "tailLines" => o.tail_lines = Some(parse_count(name, value, 0)?),
            "limitBytes" => o.limit_bytes = Some(parse_count(name, value, 1)?),
            "timestamps" => o.timestamps = parse_bool(name, value)?,
            "sinceSeconds" => {
                let seconds = parse_count(name, value, 1)?;
                let back =
                    jiff::SignedDuration::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX));
                o.since = Some(now.checked_sub(back).unwrap_or(Timestamp::MIN));
                since_given += 1;
            }
            "sinceTime" => {
                let at: Timestamp = value.parse().map_err(|e| {
                    format!("sinceTime: Invalid value: {value:?}: not an RFC 3339 time: {e}")
                })?;
                o.since = Some(at);
                since_given += 1;
            }
            _ => {}
        }
    }
    if since_given > 1 {
        return Err("at most one of sinceTime or sinceSeconds may be specified".to_owned());
    }
    Ok(o)
}

/// What of a log's pieces (lines, with when each was written) the options show, as text:
/// those since `since`, the last `tailLines` of them when `tail`, each behind its time with
/// `timestamps`.
pub(super) fn render(pieces: &[(Timestamp, Bytes)], options: &LogOptions, tail: bool) -> Vec<u8> {
    let shown: Vec<&(Timestamp, Bytes)> = pieces
        .iter()
        .filter(|(at, _)| options.since.is_none_or(|since| *at >= since))
        .collect();
    let from = match options.tail_lines {
        Some(n) if tail => shown.len().saturating_sub(n),
        _ => 0,
    };
    let mut out = Vec::new();
    for (at, bytes) in &shown[from..] {
        if options.timestamps {
            // Go's RFC3339Nano: the nanoseconds without their trailing zeros, in UTC.
            out.extend_from_slice(at.to_string().as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(bytes);
    }
    out
}

/// The container a request means: the one named, else the Pod's only one, as the API server
/// chooses (it does not read kubectl's default-container annotation; kubectl does).
pub(super) fn container_of(
    pod: &Value,
    name: &str,
    wanted: Option<&str>,
) -> Result<String, ContainerError> {
    let names: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    match (wanted, names.as_slice()) {
        (Some(w), _) if names.iter().any(|n| n == w) => Ok(w.to_owned()),
        (Some(w), _) => Err(ContainerError::ContainerNotFound {
            name: name.to_owned(),
            container: w.to_owned(),
            choices: names,
        }),
        (None, [only]) => Ok(only.clone()),
        (None, _) => Err(ContainerError::ContainerRequired {
            name: name.to_owned(),
            choices: names,
        }),
    }
}

/// Why the container has no log yet, as the kubelet says it: its waiting reason.
pub(super) fn waiting_reason(
    state: &State,
    namespace: &str,
    name: &str,
    container: &str,
) -> String {
    state
        .kubelet
        .get()
        .and_then(|k| k.status(namespace, name))
        .and_then(|s| s.container_statuses)
        .into_iter()
        .flatten()
        .find(|c| c.name == container)
        .and_then(|c| c.state?.waiting?.reason)
        .unwrap_or_else(|| "ContainerCreating".to_owned())
}

/// `GET …/pods/P/log`.
pub(super) fn pod_log(
    state: &State,
    namespace: &str,
    name: &str,
    params: &[(String, String)],
) -> Response<ApiBody> {
    let options = match options(params, Timestamp::now()) {
        Ok(o) => o,
        Err(e) => return bad_request(&e),
    };
    let Some(pods) = resources::find("", "v1", "pods") else {
        return requests::not_found_path();
    };
    let Some(pod) = state.store.get(pods, namespace, name) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("pods \"{name}\" not found"),
            Some(json!({"name": name, "kind": "pods"})),
        );
    };
    let container = match container_of(&pod, name, options.container.as_deref()) {
        Ok(c) => c,
        Err(e) => return bad_request(&e.to_string()),
    };
    let waiting = || {
        bad_request(&format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {}",
            waiting_reason(state, namespace, name, &container)
        ))
    };
    let Some(kubelet) = state.kubelet.get() else {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "no kubelet serves this API server's Pods",
            None,
        );
    };
    let logs = match kubelet.logs(namespace, name, Some(&container)) {
        Ok(logs) => logs,
        // Not handed to the kubelet yet.
        Err(ContainerError::PodNotFound { .. }) => return waiting(),
        Err(e) => return bad_request(&e.to_string()),
    };
    if options.previous {
        return match logs.previous_range() {
            Some((start, end)) => {
                let (pieces, _) = logs.read_pieces(start, Some(end));
                text(&options, render(&pieces, &options, true))
            }
            None => bad_request(&format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )),
        };
    }
    let Some(run) = logs.current_run() else {
        return waiting();
    };
    let (pieces, offset) = logs.read_pieces(run.start, logs.run_end(&run));
    let mut first = render(&pieces, &options, true);
    if let Some(limit) = options.limit_bytes {
        first.truncate(limit);
    }
    let remaining = options.limit_bytes.map(|l| l - first.len());
    let ended = logs.run_end(&run).is_some_and(|end| end <= offset);
    if !options.follow || ended || remaining == Some(0) {
        return text(&options, first);
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    if !first.is_empty() {
        // The queue is empty: the log so far always fits.
        let _ = tx.try_send(Bytes::from(first));
    }
    let stopping = state.stopping.subscribe();
    tokio::spawn(follow(logs, run, offset, options, remaining, tx, stopping));
    let mut response = Response::new(ApiBody::Watch(WatchBody::from_receiver(rx)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(TEXT),
    );
    response
}

fn text(options: &LogOptions, mut bytes: Vec<u8>) -> Response<ApiBody> {
    if let Some(limit) = options.limit_bytes {
        bytes.truncate(limit);
    }
    respond(StatusCode::OK, TEXT, Bytes::from(bytes)).map(ApiBody::from)
}

/// Streams the run's log past `offset` until the run ends, the Pod goes, the server stops,
/// `limitBytes` is reached or the client hangs up.
async fn follow(
    logs: Logs,
    run: Run,
    mut offset: u64,
    options: LogOptions,
    mut remaining: Option<usize>,
    tx: mpsc::Sender<Bytes>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = logs.changed_after(offset, &run) => {}
            () = tx.closed() => return,
            _ = stopping.wait_for(|s| *s) => return,
        }
        let (pieces, next) = logs.read_pieces(offset, logs.run_end(&run));
        offset = next;
        let mut bytes = render(&pieces, &options, false);
        if let Some(left) = remaining.as_mut() {
            bytes.truncate(*left);
            *left -= bytes.len();
        }
        if !bytes.is_empty() && tx.send(Bytes::from(bytes)).await.is_err() {
            return;
        }
        let ended = logs.run_end(&run).is_some_and(|end| end <= offset);
        if ended || remaining == Some(0) {
            return;
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
