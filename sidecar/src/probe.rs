//! The app's probes, run by the sidecar for the kubelet (Istio's `/app-health/`): the injection
//! rewrote each httpGet and tcpSocket probe of an app container to an httpGet on the admin
//! port at `/app-health/<container>/<livez|readyz|startupz>`, and handed the originals over
//! ([`ferry_model::mesh::app_probe`]). On each request the sidecar runs the original against
//! the app, as the kubelet would have, and answers 200 or 503 with why. So the node reaches
//! the app only through the sidecar, and in strict mode not at all.
//!
//! As the kubelet: the host is the Pod's address unless the probe names one; an HTTP status
//! from 200 to 399 is healthy; HTTPS does not verify the app's certificate; the whole check
//! stays within the probe's `timeoutSeconds`. Unlike the kubelet, redirects are never
//! followed: a 3xx is already healthy, and a `Location` could send the sidecar off the Pod.
//! The connections come from the sidecar's marked sockets, so interception lets them pass.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_model::mesh::app_probe::{AppCheck, AppProbe, AppProbers, HttpGet, TcpSocket};
use ferry_runtime::admin::{Api, TEXT};
use ferry_runtime::serve::{Body, respond};
use http::{Method, Response, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::socket;

/// What the kubelet's User-Agent is, so the app sees the same probe as without the mesh.
const USER_AGENT: &str = "kube-probe/1.35";

/// The app's probes the sidecar runs.
#[derive(Clone, Debug)]
pub struct AppHealthConfig {
    /// The originals, keyed by their `/app-health/...` path.
    pub probers: AppProbers,
    /// Where a probe without a host connects: the Pod's address.
    pub pod_ip: IpAddr,
}

impl Default for AppHealthConfig {
    fn default() -> AppHealthConfig {
        AppHealthConfig {
            probers: AppProbers::new(),
            pod_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    /// `<container>/<livez|readyz|startupz>`.
    probe: String,
    /// `success` or `failure`.
    result: &'static str,
}

/// The `/app-health/` routes of the admin server (cheap to clone).
#[derive(Clone, Debug)]
pub struct AppHealth(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    config: AppHealthConfig,
    /// The sockets' mark, so interception lets the sidecar's probes pass.
    mark: Option<u32>,
    /// `None` when it could not be built: HTTPS probes fail, saying so.
    tls: Option<Arc<ClientConfig>>,
    /// `ferry_sidecar_app_probes_total`.
    probes: Family<ProbeLabels, Counter>,
}

impl AppHealth {
    /// The routes for these probes, counted in `registry`.
    pub fn new(config: AppHealthConfig, mark: Option<u32>, registry: &mut Registry) -> AppHealth {
        let probes = Family::<ProbeLabels, Counter>::default();
        registry.register(
            "ferry_sidecar_app_probes",
            "The app's probes the sidecar ran for the kubelet (/app-health/), by probe and result",
            probes.clone(),
        );
        let tls = if config.probers.values().any(
            |p| matches!(&p.check, AppCheck::HttpGet(h) if h.scheme.eq_ignore_ascii_case("HTTPS")),
        ) {
            ferry_runtime::tls::any_server_client_config()
                .map(Arc::new)
                .inspect_err(|e| tracing::warn!("HTTPS app probes will fail: {e}"))
                .ok()
        } else {
            None
        };
        AppHealth(Arc::new(Inner {
            config,
            mark,
            tls,
            probes,
        }))
    }

    /// Runs the probe at `path`: 200 when the app is healthy, 503 with why when not, 404 for
    /// a path no probe has.
    pub async fn answer(&self, method: &Method, path: &str) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET and HEAD\n");
            r.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD"),
            );
            return r;
        }
        let Some(probe) = self.0.config.probers.get(path) else {
            return respond(
                StatusCode::NOT_FOUND,
                TEXT,
                format!("no app probe at {path}\n"),
            );
        };
        let name = path
            .strip_prefix(ferry_model::mesh::app_probe::APP_HEALTH_PREFIX)
            .unwrap_or(path)
            .to_owned();
        let result = self.check(probe).await;
        self.0
            .probes
            .get_or_create(&ProbeLabels {
                probe: name,
                result: if result.is_ok() { "success" } else { "failure" },
            })
            .inc();
        match result {
            Ok(()) => respond(StatusCode::OK, TEXT, "ok\n"),
            Err(why) => {
                tracing::debug!(probe = path, "app probe failed: {why}");
                respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{why}\n"))
            }
        }
    }

    /// One run of the original probe within its timeout.
    pub async fn check(&self, probe: &AppProbe) -> Result<(), String> {
        let timeout = Duration::from_secs(u64::from(probe.timeout_seconds.max(1)));
        let deadline = Instant::now() + timeout;
        let run = async {
            match &probe.check {
                AppCheck::HttpGet(http) => self.http_get(http, deadline).await,
                AppCheck::TcpSocket(tcp) => self.tcp(tcp, deadline).await.map(drop),
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(format!("probe timed out after {}s", timeout.as_secs())),
        }
    }

    async fn tcp(&self, tcp: &TcpSocket, deadline: Instant) -> Result<TcpStream, String> {
        let host = tcp
            .host
            .clone()
            .unwrap_or_else(|| self.0.config.pod_ip.to_string());
        self.connect(&host, tcp.port, deadline).await
    }

    /// Connects to `host:port` (an address, or a name resolved here as the kubelet does)
    /// from a marked socket.
    async fn connect(&self, host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
        let authority = host_port(host, port);
        let addr = match host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| format!("dial tcp {authority}: cannot resolve {host:?}"))?,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        socket::connect(addr, self.0.mark, left)
            .await
            .map_err(|e| format!("dial tcp {authority}: {e}"))
    }

    async fn http_get(&self, http: &HttpGet, deadline: Instant) -> Result<(), String> {
        let host = http
            .host
            .clone()
            .unwrap_or_else(|| self.0.config.pod_ip.to_string());
        let https = http.scheme.eq_ignore_ascii_case("HTTPS");
        let authority = host_port(&host, http.port);
        let url = format!(
            "{}://{authority}{}",
            if https { "https" } else { "http" },
            http.path
        );
        let stream = self
            .connect(&host, http.port, deadline)
            .await
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        let mut request = http::Request::get(http.path.as_str())
            .header(http::header::HOST, &authority)
            .header(http::header::USER_AGENT, USER_AGENT)
            .header(http::header::ACCEPT, "*/*");
        if let Some(h) = request.headers_mut() {
            for header in &http.http_headers {
                if let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(header.name.as_bytes()),
                    http::HeaderValue::from_str(&header.value),
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
            let config = self
                .0
                .tls
                .clone()
                .ok_or_else(|| format!("Get {url:?}: no TLS client"))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(server_name(&host), stream)
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
}

impl Api for AppHealth {
    fn call(
        &self,
        method: Method,
        path: String,
        _query: String,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        let this = self.clone();
        Box::pin(async move { this.answer(&method, &path).await })
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The name the TLS client sends: the host's address, or its DNS name.
fn server_name(host: &str) -> rustls_pki_types::ServerName<'static> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return rustls_pki_types::ServerName::IpAddress(ip.into());
    }
    rustls_pki_types::ServerName::try_from(host.to_owned()).unwrap_or(
        rustls_pki_types::ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into()),
    )
}

/// One request on a fresh HTTP/1 connection, driven only as long as it needs; the status.
async fn send(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    request: http::Request<Empty<Bytes>>,
) -> Result<StatusCode, String> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request);
    tokio::pin!(response);
    tokio::select! {
        response = &mut response => response.map(|r| r.status()).map_err(|e| e.to_string()),
        ended = connection => match ended {
            // An app that closes after its answer: the answer was read before the close.
            Ok(()) => response.await.map(|r| r.status()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests;
