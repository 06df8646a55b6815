//! The `pods/exec` subresource (`kubectl exec`): a command run in a Pod's running container
//! (its network namespace, environment and working directory, as the kubelet's
//! [`crate::kubelet::ExecPlan`] says), its streams carried over a WebSocket with the
//! Kubernetes channel protocol.
//!
//! `GET|POST /api/v1/namespaces/N/pods/P/exec?command=…&container=…&stdin&stdout&stderr&tty`
//! with `Upgrade: websocket` and the subprotocol `v5.channel.k8s.io` (or `v4.channel.k8s.io`).
//! Each binary message starts with its channel: 0 stdin (client to server), 1 stdout, 2 stderr,
//! 3 the error channel (one `Status`: Success, or Failure with reason `NonZeroExitCode` and an
//! `ExitCode` cause), 4 terminal resizes (ignored: no pseudo-terminal is allocated; with `tty`
//! stderr goes to the stdout channel), and in v5 255 closes a channel (`[255, 0]`: stdin is
//! done). The command's end closes the WebSocket; the client going away kills it.
//!
//! SPDY (`Upgrade: SPDY/3.1`, kubectl's fallback) is not spoken: such a request is checked
//! as a WebSocket one (so a wrong Pod or container gets the same error) and else refused with
//! 400 saying which protocols are. It may touch the store (the Pod), the kubelet (the plan)
//! and the processes it starts (their process group).

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::requests::{bad_request, status};
use super::watch::ApiBody;
use super::*;
use crate::kubelet::{ContainerError, ExecPlan};

/// The subprotocols spoken, most preferred first.
pub(super) const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: `[CLOSE, channel]` closes that channel.
const CLOSE: u8 = 255;
/// The largest message taken from a client (stdin chunks and resizes are small).
const MAX_MESSAGE: usize = 1 << 20;
/// How long the output may take to drain after the command ended (a background process it
/// left could hold the pipes open forever).
const DRAIN: Duration = Duration::from_secs(1);
/// Output chunks queued for the client before the readers wait.
const QUEUE: usize = 16;

/// What an exec request asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ExecOptions {
    pub command: Vec<String>,
    pub container: Option<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

fn flag(value: &str) -> bool {
    matches!(value, "" | "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// The request's options, or why they are not valid (the API server's words).
pub(super) fn options(params: &[(String, String)]) -> Result<ExecOptions, String> {
    let mut o = ExecOptions::default();
    for (name, value) in params {
        match name.as_str() {
            "command" => o.command.push(value.clone()),
            "container" if !value.is_empty() => o.container = Some(value.clone()),
            "stdin" => o.stdin = flag(value),
            "stdout" => o.stdout = flag(value),
            "stderr" => o.stderr = flag(value),
            "tty" => o.tty = flag(value),
            _ => {}
        }
    }
    if o.command.is_empty() {
        return Err("you must specify at least 1 command".to_owned());
    }
    if !(o.stdin || o.stdout || o.stderr) {
        return Err("you must specify at least 1 of stdin, stdout, stderr".to_owned());
    }
    if o.tty && o.stderr {
        // As the API server: a terminal has one output stream.
        o.stderr = false;
    }
    Ok(o)
}

/// The subprotocol to answer with: the first of the client's that this server speaks.
pub(super) fn negotiate(offered: &str) -> Option<&'static str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    PROTOCOLS.into_iter().find(|p| offered.contains(p))
}

/// The `Status` the error channel carries for a command's end.
pub(super) fn exit_status(code: i32, command: &[String]) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

fn header(req: &Request<Incoming>, name: http::header::HeaderName) -> &str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `GET|POST …/pods/P/exec`.
pub(super) fn pod_exec(
    state: &State,
    namespace: &str,
    name: &str,
    params: &[(String, String)],
    mut req: Request<Incoming>,
) -> Response<ApiBody> {
    let options = match options(params) {
        Ok(o) => o,
        Err(e) => return bad_request(&e),
    };
    let plan = match plan(state, namespace, name, options.container.as_deref()) {
        Ok(plan) => plan,
        Err(response) => return *response,
    };
    let upgrade = header(&req, http::header::UPGRADE);
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return bad_request(&format!(
            "unable to upgrade connection: ferry's API server speaks exec over a WebSocket ({}), not {}",
            PROTOCOLS.join(", "),
            if upgrade.is_empty() {
                "a plain request"
            } else {
                upgrade
            }
        ));
    }
    if req.version() != http::Version::HTTP_11 {
        return bad_request(
            "unable to upgrade connection: a WebSocket upgrade needs HTTP/1.1 (ALPN http/1.1)",
        );
    }
    let key = header(&req, http::header::SEC_WEBSOCKET_KEY);
    if key.is_empty() || header(&req, http::header::SEC_WEBSOCKET_VERSION) != "13" {
        return bad_request(
            "unable to upgrade connection: a WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13",
        );
    }
    let Some(protocol) = negotiate(header(&req, http::header::SEC_WEBSOCKET_PROTOCOL)) else {
        return bad_request(&format!(
            "unable to upgrade connection: none of the offered subprotocols is spoken; offer one of {}",
            PROTOCOLS.join(", ")
        ));
    };
    let accept = derive_accept_key(key.as_bytes());
    let v5 = protocol == PROTOCOLS[0];
    let upgrading = hyper::upgrade::on(&mut req);
    let mut stopping = state.stopping.subscribe();
    let what = format!("{namespace}/{name}");
    tokio::spawn(async move {
        let upgraded = match upgrading.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(pod = %what, error = %e, "exec: the WebSocket upgrade failed");
                return;
            }
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        tokio::select! {
            () = session(ws, &plan, &options, v5) => {}
            _ = stopping.wait_for(|s| *s) => {}
        }
    });
    let mut response = Response::new(ApiBody::from(ferry_runtime::serve::Body::new(Bytes::new())));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    headers.insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderValue::from_static(protocol),
    );
    if let Ok(accept) = http::HeaderValue::from_str(&accept) {
        headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// How to run in the container asked for, or the API server's error.
fn plan(
    state: &State,
    namespace: &str,
    name: &str,
    container: Option<&str>,
) -> Result<ExecPlan, Box<Response<ApiBody>>> {
    let pods =
        resources::find("", "v1", "pods").ok_or_else(|| Box::new(requests::not_found_path()))?;
    let Some(pod) = state.store.get(pods, namespace, name) else {
        return Err(Box::new(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("pods \"{name}\" not found"),
            Some(json!({"name": name, "kind": "pods"})),
        )));
    };
    let container = super::log::container_of(&pod, name, container)
        .map_err(|e| Box::new(bad_request(&e.to_string())))?;
    let Some(kubelet) = state.kubelet.get() else {
        return Err(Box::new(status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "no kubelet serves this API server's Pods",
            None,
        )));
    };
    match kubelet.exec(namespace, name, Some(&container)) {
        Ok(plan) => Ok(plan),
        Err(ContainerError::PodNotFound { .. }) => Err(Box::new(bad_request(&format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {}",
            super::log::waiting_reason(state, namespace, name, &container)
        )))),
        Err(e) => Err(Box::new(bad_request(&format!(
            "unable to upgrade connection: {e}"
        )))),
    }
}

/// The command as a process behind the plan's `enter`, in its own process group.
fn command(plan: &ExecPlan, options: &ExecOptions) -> tokio::process::Command {
    let mut argv: Vec<&str> = plan.enter.iter().map(String::as_str).collect();
    argv.extend(options.command.iter().map(String::as_str));
    let mut command = tokio::process::Command::new(argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .kill_on_drop(true)
        .stdin(if options.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if options.stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(if options.stderr || (options.tty && options.stdout) {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    if let Some(dir) = &plan.working_dir {
        command.current_dir(dir);
    }
    command
}

/// Copies one output of the process to the client's queue, as `channel`.
async fn pump(mut from: impl AsyncRead + Unpin, channel: u8, to: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; 16 * 1024];
    buf[0] = channel;
    loop {
        match from.read(&mut buf[1..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.send(Bytes::copy_from_slice(&buf[..=n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A close with status 1000: client-go reads anything else as the session failing.
fn normal_closure() -> CloseFrame {
    CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// One exec over an upgraded connection: runs the command, carries its streams, sends its
/// end on the error channel and closes.
async fn session<S>(mut ws: WebSocketStream<S>, plan: &ExecPlan, options: &ExecOptions, v5: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let end = |status: Value| {
        let mut frame = vec![ERROR];
        frame.extend(serde_json::to_vec(&status).unwrap_or_default());
        Message::Binary(Bytes::from(frame))
    };
    let mut child = match command(plan, options).spawn() {
        Ok(child) => child,
        Err(e) => {
            let status = json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("error executing command in container: failed to exec in container: exec {:?}: {e}", options.command[0]),
                "reason": "InternalError",
                "code": 500,
            });
            let _ = ws.send(end(status)).await;
            let _ = ws.close(Some(normal_closure())).await;
            return;
        }
    };
    let pid = child.id();
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(QUEUE);
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(pump(stdout, STDOUT, out_tx.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        // With a terminal, everything is the terminal's one output.
        let channel = if options.tty { STDOUT } else { STDERR };
        tokio::spawn(pump(stderr, channel, out_tx.clone()));
    }
    drop(out_tx);
    // Stdin is written by a task of its own, so a command that does not read it cannot stop
    // its output from being carried; a chunk waits here (and the client's next message in
    // the socket) while the writer is behind.
    let mut stdin_tx = child.stdin.take().map(|mut input| {
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if input.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        tx
    });
    let mut pending: Option<Bytes> = None;
    let mut stdin_closing = false;
    let mut exited = None;
    let mut outputs_open = true;
    let mut drain = std::pin::pin!(tokio::time::sleep_until(crate::kubelet::deadline(
        crate::kubelet::MAX_GRACE
    )));
    loop {
        if exited.is_some() && !outputs_open {
            break;
        }
        if stdin_closing && pending.is_none() {
            // Dropping the sender ends the writer, which closes the command's stdin.
            stdin_tx = None;
        }
        let writer = stdin_tx.clone();
        tokio::select! {
            message = ws.next(), if pending.is_none() => match message {
                Some(Ok(Message::Binary(data))) => match data.first().copied() {
                    Some(STDIN) if stdin_tx.is_some() && data.len() > 1 => {
                        pending = Some(data.slice(1..));
                    }
                    Some(CLOSE) if v5 && data.get(1) == Some(&STDIN) => stdin_closing = true,
                    Some(STDIN | RESIZE | CLOSE) | None => {}
                    Some(other) => tracing::debug!(channel = other, "exec: a message on an unknown channel"),
                },
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    // The client went away: so does the command.
                    kill_group(pid);
                    return;
                }
                Some(Ok(_)) => {}
            },
            permit = async move {
                match writer {
                    Some(tx) => tx.reserve_owned().await.ok(),
                    None => None,
                }
            }, if pending.is_some() => match (permit, pending.take()) {
                (Some(permit), Some(chunk)) => {
                    permit.send(chunk);
                }
                // The command closed its stdin: what the client sends is dropped.
                _ => stdin_tx = None,
            },
            chunk = out_rx.recv(), if outputs_open => match chunk {
                Some(chunk) => {
                    if ws.send(Message::Binary(chunk)).await.is_err() {
                        kill_group(pid);
                        return;
                    }
                }
                None => outputs_open = false,
            },
            status = child.wait(), if exited.is_none() => {
                exited = Some(status);
                // Whatever it left in its group goes with it, so the pipes close.
                kill_group(pid);
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN);
            }
            () = &mut drain, if exited.is_some() => break,
        }
    }
    let code = match exited {
        Some(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(1)
        }
        _ => 1,
    };
    let _ = ws.send(end(exit_status(code, &options.command))).await;
    let _ = ws.close(Some(normal_closure())).await;
    // The client answers the close; wait for it briefly so the close is clean.
    let _ = tokio::time::timeout(DRAIN, async { while ws.next().await.is_some() {} }).await;
}

#[cfg(test)]
mod tests;
