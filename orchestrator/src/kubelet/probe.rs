//! Container probes: readiness, liveness and startup, each a loop on tokio timers that runs one
//! check (httpGet, tcpSocket or exec) every period and reports when its thresholds are crossed.
//!
//! As in Kubernetes: no probe runs before the startup probe passed; a readiness probe starts
//! out failing and turns ready after `successThreshold` successes in a row and unready after
//! `failureThreshold` failures in a row; a liveness or startup probe that fails
//! `failureThreshold` times in a row has the container killed. Defaults: initialDelaySeconds 0,
//! periodSeconds 10, timeoutSeconds 1, successThreshold 1, failureThreshold 3.

mod tls;

use std::ffi::OsString;
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::plan::Plan;

pub(crate) use tls::client_config;

/// What a probe is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Readiness,
    Liveness,
    Startup,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Readiness => "Readiness",
            Kind::Liveness => "Liveness",
            Kind::Startup => "Startup",
        }
    }
}

/// A probe with its defaults applied and its ports resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) kind: Kind,
    pub(crate) action: Action,
    pub(crate) initial_delay: Duration,
    pub(crate) period: Duration,
    pub(crate) timeout: Duration,
    pub(crate) success_threshold: u32,
    pub(crate) failure_threshold: u32,
    /// The probe's own terminationGracePeriodSeconds, which overrides the pod's when a failed
    /// liveness or startup probe kills the container.
    pub(crate) termination_grace: Option<Duration>,
}

/// One check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Http {
        https: bool,
        host: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: String,
        port: u16,
    },
    Exec {
        argv: Vec<OsString>,
    },
    /// A probe ferry cannot run (grpc, no handler, an unknown port name): it always fails,
    /// with this message.
    Invalid(String),
}

/// A crossed threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Readiness turned ready; startup passed.
    Success,
    /// Readiness turned unready; liveness or startup failed: the message says why.
    Failure(String),
    /// One attempt failed (each one, whatever the thresholds say: the kubelet's `Unhealthy`
    /// Event); changes nothing by itself.
    Unhealthy(String),
}

/// The probes of a container, defaults applied.
pub(crate) fn specs(container: &Container, pod_ip: IpAddr) -> Vec<Spec> {
    [
        (Kind::Startup, &container.startup_probe),
        (Kind::Liveness, &container.liveness_probe),
        (Kind::Readiness, &container.readiness_probe),
    ]
    .into_iter()
    .filter_map(|(kind, probe)| Some(spec(kind, probe.as_ref()?, container, pod_ip)))
    .collect()
}

fn spec(kind: Kind, probe: &Probe, container: &Container, pod_ip: IpAddr) -> Spec {
    let seconds = |v: Option<i32>, default: i32, min: i32| {
        Duration::from_secs(u64::try_from(v.unwrap_or(default).max(min)).unwrap_or(0))
    };
    let count =
        |v: Option<i32>, default: i32| u32::try_from(v.unwrap_or(default).max(1)).unwrap_or(1);
    let host = |h: &Option<String>| {
        h.clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string())
    };
    let action = if let Some(http) = &probe.http_get {
        match port(&http.port, container) {
            Ok(port) => Action::Http {
                https: http
                    .scheme
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")),
                host: host(&http.host),
                port,
                path: match http.path.as_deref() {
                    None | Some("") => "/".to_owned(),
                    Some(p) if p.starts_with('/') => p.to_owned(),
                    Some(p) => format!("/{p}"),
                },
                headers: http
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            },
            Err(e) => Action::Invalid(e),
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        match port(&tcp.port, container) {
            Ok(port) => Action::Tcp {
                host: host(&tcp.host),
                port,
            },
            Err(e) => Action::Invalid(e),
        }
    } else if let Some(exec) = &probe.exec {
        let argv: Vec<OsString> = exec.command.iter().flatten().map(OsString::from).collect();
        if argv.is_empty() {
            Action::Invalid("exec probe without a command".to_owned())
        } else {
            Action::Exec { argv }
        }
    } else if probe.grpc.is_some() {
        Action::Invalid("grpc probes are not supported by ferry's local runtime".to_owned())
    } else {
        Action::Invalid("probe without a handler".to_owned())
    };
    Spec {
        kind,
        action,
        initial_delay: seconds(probe.initial_delay_seconds, 0, 0),
        period: seconds(probe.period_seconds, 10, 1),
        timeout: seconds(probe.timeout_seconds, 1, 1),
        // Liveness and startup probes must have a success threshold of 1.
        success_threshold: if kind == Kind::Readiness {
            count(probe.success_threshold, 1)
        } else {
            1
        },
        failure_threshold: count(probe.failure_threshold, 3),
        termination_grace: probe
            .termination_grace_period_seconds
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0))),
    }
}

/// A port number, or the name of one of the container's ports.
fn port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("invalid port {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("the container has no port named {name:?}"))
        }
    }
}

/// What a probe's checks need besides the spec.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    /// The container's environment and working directory, for exec probes.
    pub(crate) plan: Arc<Plan>,
    /// `None` if it could not be built: HTTPS probes fail.
    pub(crate) tls: Option<Arc<ClientConfig>>,
}

/// Runs a probe until it has nothing more to say (liveness and startup end with their
/// verdict) or its task is aborted with the process. Probes other than startup wait for
/// `started`.
pub(crate) async fn run(
    spec: Spec,
    context: Context,
    mut started: watch::Receiver<bool>,
    mut report: impl FnMut(Verdict),
) {
    if spec.kind != Kind::Startup && started.wait_for(|s| *s).await.is_err() {
        return;
    }
    tokio::time::sleep(spec.initial_delay).await;
    let mut ticks = tokio::time::interval(spec.period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut ready = false;
    loop {
        ticks.tick().await;
        let result = check(&spec, &context).await;
        match &result {
            Ok(()) => {
                successes = successes.saturating_add(1);
                failures = 0;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                successes = 0;
                report(Verdict::Unhealthy(e.clone()));
            }
        }
        match (spec.kind, result) {
            (Kind::Readiness, Ok(())) if !ready && successes >= spec.success_threshold => {
                ready = true;
                report(Verdict::Success);
            }
            (Kind::Readiness, Err(e)) if ready && failures >= spec.failure_threshold => {
                ready = false;
                report(Verdict::Failure(e));
            }
            (Kind::Startup, Ok(())) => {
                report(Verdict::Success);
                return;
            }
            (Kind::Liveness | Kind::Startup, Err(e)) if failures >= spec.failure_threshold => {
                report(Verdict::Failure(e));
                return;
            }
            _ => {}
        }
    }
}

/// One check within the probe's timeout.
pub(crate) async fn check(spec: &Spec, context: &Context) -> Result<(), String> {
    let timeout = spec.timeout;
    let action = async {
        match &spec.action {
            Action::Http {
                https,
                host,
                port,
                path,
                headers,
            } => http_get(*https, host, *port, path, headers, context.tls.as_ref()).await,
            Action::Tcp { host, port } => TcpStream::connect((host.as_str(), *port))
                .await
                .map(drop)
                .map_err(|e| format!("dial tcp {}: {e}", host_port(host, *port))),
            Action::Exec { argv } => exec(&context.plan, argv).await,
            Action::Invalid(message) => Err(message.clone()),
        }
    };
    match tokio::time::timeout(timeout, action).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{} probe timed out after {}s",
            spec.kind.name(),
            timeout.as_secs()
        )),
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn http_get(
    https: bool,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    tls: Option<&Arc<ClientConfig>>,
) -> Result<(), String> {
    let authority = host_port(host, port);
    let url = format!(
        "{}://{authority}{path}",
        if https { "https" } else { "http" }
    );
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("Get {url:?}: dial tcp {authority}: {e}"))?;
    let mut request = http::Request::get(path)
        .header(http::header::HOST, &authority)
        .header(http::header::USER_AGENT, "kube-probe/1.35")
        .header(http::header::ACCEPT, "*/*");
    if let Some(h) = request.headers_mut() {
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                // A header the probe names replaces the default one (Host, User-Agent …).
                h.insert(name, value);
            }
        }
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("Get {url:?}: {e}"))?;
    let status = if https {
        let config = tls.ok_or_else(|| format!("Get {url:?}: no TLS client"))?;
        let name = tls::server_name(host);
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let stream = connector
            .connect(name, stream)
            .await
            .map_err(|e| format!("Get {url:?}: tls: {e}"))?;
        send(stream, request).await
    } else {
        send(stream, request).await
    }
    .map_err(|e| format!("Get {url:?}: {e}"))?;
    if (200..400).contains(&status.as_u16()) {
        Ok(())
    } else {
        Err(format!(
            "HTTP probe failed with statuscode: {}",
            status.as_u16()
        ))
    }
}

async fn send(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    request: http::Request<Empty<Bytes>>,
) -> Result<http::StatusCode, String> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    // The connection is driven here, only as long as the one request needs it.
    tokio::select! {
        response = sender.send_request(request) => {
            response.map(|r| r.status()).map_err(|e| e.to_string())
        }
        ended = connection => Err(match ended {
            Ok(()) => "connection closed before the response".to_owned(),
            Err(e) => e.to_string(),
        }),
    }
}

async fn exec(plan: &Plan, argv: &[OsString]) -> Result<(), String> {
    // In the Pod's network namespace and with the descriptor limit ferry was started with, as
    // the container's own processes (a probe runs inside the container in Kubernetes).
    let cwd = plan.working_dir.as_deref().map(std::path::Path::new);
    let wrapped = super::cgroup::wrap(
        argv,
        plan.env.get("PATH"),
        cwd,
        None,
        ferry_runtime::descriptors::child_soft_limit(),
        &plan.enter,
    )
    .map_err(|e| format!("exec {argv:?}: {e}"))?;
    let mut command = plan
        .command(&wrapped)
        .ok_or_else(|| "exec probe without a command".to_owned())?;
    command.stdout(Stdio::null()).stderr(Stdio::null());
    // On a timeout the future is dropped and kill_on_drop ends the process.
    let status = command
        .status()
        .await
        .map_err(|e| format!("exec {argv:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "command {argv:?} exited with {}",
            status
                .code()
                .map_or_else(|| "a signal".to_owned(), |c| c.to_string())
        ))
    }
}

#[cfg(test)]
mod tests;
