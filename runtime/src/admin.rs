//! The admin server: `/live`, `/ready`, `/config`, `/status`, `/metrics`, and under `/api/`
//! whatever [`Api`] the process adds (the local runtime's Pods, Deployments, logs, scaling);
//! under a prefix of its own, a part's routes for every peer ([`Admin::with_routes`]: the
//! sidecar's `/app-health/`).
//!
//! `/config` serves the snapshot being served as JSON with private keys redacted;
//! `/config?private_keys=true` includes them (the admin port listens on loopback by default, and
//! this is the form `--snapshot FILE` reads back). `/status` shows the configuration state, the
//! warnings of the served configuration, the last rejected change's problems and the version
//! each part serves.
//!
//! Every path refuses requests a web page could make (see `browser_refusal`), and every
//! connection is under [`Limits`]: a deadline for its first request, an idle timeout and a cap
//! of its own, so the admin port cannot be held open, nor take the descriptors other parts need.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::Error;
use crate::bus::{PartVersion, SnapshotBus};
use crate::connections::Limits;
use crate::serve::{self, Body, respond};
use crate::shutdown::Shutdown;
use crate::status::{Status, StatusBoard};

pub const JSON: &str = "application/json";
pub const TEXT: &str = "text/plain; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Requests under `/api/` go here: another crate's routes on the same admin port, without
/// the runtime knowing its types.
pub trait Api: Send + Sync + std::fmt::Debug {
    /// Answers `method` on `path` (which starts with `/api/`) with its query string.
    fn call(
        &self,
        method: Method,
        path: String,
        query: String,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
}

/// What the admin server reads.
#[derive(Debug)]
pub struct AdminState {
    pub bus: SnapshotBus,
    pub status: StatusBoard,
    pub registry: Registry,
    pub api: Option<Arc<dyn Api>>,
}

/// A bound admin server.
#[derive(Debug)]
pub struct Admin {
    listener: TcpListener,
    state: Arc<AdminState>,
    limits: Limits,
    routes: Option<Routes>,
}

/// A part's routes under a prefix, served to every peer.
#[derive(Clone, Debug)]
struct Routes {
    prefix: &'static str,
    api: Arc<dyn Api>,
}

#[derive(Serialize)]
struct StatusBody<'a> {
    #[serde(flatten)]
    status: &'a Status,
    ready: bool,
    parts: Vec<PartVersion>,
}

impl Admin {
    pub async fn build(addr: SocketAddr, state: AdminState) -> Result<Admin, Error> {
        Ok(Admin {
            listener: serve::bind(addr).await?,
            state: Arc::new(state),
            limits: Limits::ADMIN,
            routes: None,
        })
    }

    /// Requests whose path starts with `prefix` (e.g. `/app-health/`) go to `api`, from any
    /// peer, as the kubelet's probes come from the node: unlike `/api/`, they must neither act
    /// on anything nor show secrets.
    #[must_use]
    pub fn with_routes(mut self, prefix: &'static str, api: Arc<dyn Api>) -> Admin {
        self.routes = Some(Routes { prefix, api });
        self
    }

    /// Its connections' bounds in place of [`Limits::ADMIN`].
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Admin {
        self.limits = limits;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self, shutdown: Shutdown) {
        let (state, routes) = (self.state, self.routes);
        serve::serve(
            self.listener,
            move |req, peer| handle(state.clone(), routes.clone(), req, peer),
            self.limits,
            shutdown,
        )
        .await;
    }
}

/// A JSON answer (pretty, one trailing newline).
pub fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            respond(status, JSON, body)
        }
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            format!("cannot encode: {e}\n"),
        ),
    }
}

/// Requests from web pages are refused on every path, since `/config?private_keys=true` shows
/// the private keys and `/api/` acts on the cluster. A page that rebinds its own name to
/// 127.0.0.1 (DNS rebinding) is same-origin with this server in the browser's eyes, but sends
/// its name as the `Host`: only IP literals and `localhost` are served. A cross-site `fetch` or
/// form carries an `Origin` (and `Sec-Fetch-Site`) naming another origin. The CLI, curl,
/// Prometheus and probes send an IP or `localhost` and neither of the others.
///
/// A request with no Host at all is served only below HTTP/1.1 (which requires one, RFC 9112
/// §3.2): HTTP/1.0 health checkers (HAProxy's `option httpchk`, old monitoring scripts) send
/// none, and a browser always sends one, so the rebinding defence holds. Such a request must
/// not carry an `Origin` either, since there is no Host to compare it with.
fn browser_refusal<B>(req: &Request<B>) -> Option<String> {
    let mut hosts: Vec<&str> = Vec::new();
    // The request target's authority (absolute form, or h2's :authority) wins over Host
    // (RFC 9112 §3.2.2); both are checked, so neither can smuggle a name past the other.
    if let Some(authority) = req.uri().authority() {
        hosts.push(authority.as_str());
    }
    for value in req.headers().get_all(http::header::HOST) {
        match value.to_str() {
            Ok(v) => hosts.push(v),
            Err(_) => return Some("the Host header is not ASCII text\n".into()),
        }
    }
    let Some(&host) = hosts.first() else {
        if req.version() >= http::Version::HTTP_11 {
            return Some(
                "a Host naming an IP address or localhost is required (HTTP/1.1 and later)\n"
                    .into(),
            );
        }
        if req.headers().contains_key(http::header::ORIGIN) {
            return Some("an Origin without a Host is refused\n".into());
        }
        return fetch_site_refusal(req);
    };
    for h in &hosts {
        let local = split_host(h).is_some_and(|(name, _)| is_local_name(name));
        if !local {
            return Some(format!(
                "the Host {h:?} is not an IP address or localhost: requests that name this \
                 server by another name (a web page rebinding its name, say) are refused\n"
            ));
        }
    }
    if let Some(origin) = req.headers().get(http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not ASCII)");
        if !same_origin(origin, host) {
            return Some(format!(
                "the Origin {origin:?} is not this server (http://{host}): requests from other \
                 web pages are refused\n"
            ));
        }
    }
    fetch_site_refusal(req)
}

/// A `Sec-Fetch-Site` other than `same-origin` or `none`: a request another site made.
fn fetch_site_refusal<B>(req: &Request<B>) -> Option<String> {
    match req.headers().get("sec-fetch-site") {
        Some(site) if !matches!(site.as_bytes(), b"same-origin" | b"none") => {
            Some("requests from other web sites (Sec-Fetch-Site) are refused\n".into())
        }
        _ => None,
    }
}

/// A Host value's name and port: `name`, `name:port`, `[v6]`, `[v6]:port`. `None` when it is
/// not of that shape (a bare IPv6 address, userinfo, a port that is not a number).
fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':')?)),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((name, port))
}

/// An IP literal or `localhost` (a trailing dot allowed).
fn is_local_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Whether `origin` is `http://` and the same host and port as `host` (this server speaks
/// plain HTTP, so an `https://` origin is another origin).
fn same_origin(origin: &str, host: &str) -> bool {
    let Some(authority) = origin.strip_prefix("http://") else {
        return false;
    };
    match (split_host(authority), split_host(host)) {
        (Some((a, pa)), Some((b, pb))) => {
            a.eq_ignore_ascii_case(b) && pa.unwrap_or(80) == pb.unwrap_or(80)
        }
        _ => false,
    }
}

/// What only a client on this machine (a loopback peer) may ask: the private keys (`/config?private_keys=true`)
/// and the local API (`/api/`, which acts on the cluster and shows Pods' environments). The
/// admin server listens on loopback by default; where it listens on a Pod's address (so the
/// kubelet can probe `/live` and `/ready`), other Pods reach the rest of it but not these.
/// Whether `peer` is refused what it asks.
fn refused_to_remote(peer: SocketAddr, path: &str, query: &str) -> bool {
    let only_local = path.starts_with("/api/")
        || (path == "/config" && query.split('&').any(|kv| kv == "private_keys=true"));
    only_local && !peer.ip().to_canonical().is_loopback()
}

async fn handle(
    state: Arc<AdminState>,
    routes: Option<Routes>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    if let Some(refusal) = browser_refusal(&req) {
        return respond(StatusCode::FORBIDDEN, TEXT, refusal);
    }
    if refused_to_remote(
        peer,
        req.uri().path(),
        req.uri().query().unwrap_or_default(),
    ) {
        return respond(
            StatusCode::FORBIDDEN,
            TEXT,
            "the private keys and /api/ are served to clients on this machine only\n",
        );
    }
    if let Some(api) = &state.api
        && req.uri().path().starts_with("/api/")
    {
        let query = req.uri().query().unwrap_or_default().to_owned();
        return api
            .call(req.method().clone(), req.uri().path().to_owned(), query)
            .await;
    }
    if let Some(routes) = routes
        && req.uri().path().starts_with(routes.prefix)
    {
        let query = req.uri().query().unwrap_or_default().to_owned();
        return routes
            .api
            .call(req.method().clone(), req.uri().path().to_owned(), query)
            .await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET and HEAD\n");
        r.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    let query = req.uri().query().unwrap_or_default();
    match req.uri().path() {
        "/live" => respond(StatusCode::OK, TEXT, "live\n"),
        "/ready" => {
            let ready = state.bus.ready();
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(
                code,
                &serde_json::json!({ "ready": ready, "version": state.bus.current().version, "parts": state.bus.parts() }),
            )
        }
        "/config" => {
            let snapshot = state.bus.current();
            if query.split('&').any(|kv| kv == "private_keys=true") {
                json(StatusCode::OK, &*snapshot)
            } else {
                json(StatusCode::OK, &snapshot.without_private_keys())
            }
        }
        "/status" => {
            let status = state.status.status();
            json(
                StatusCode::OK,
                &StatusBody {
                    status: &status,
                    ready: state.bus.ready(),
                    parts: state.bus.parts(),
                },
            )
        }
        "/metrics" => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
                Ok(()) => respond(StatusCode::OK, OPENMETRICS, text),
                Err(e) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    TEXT,
                    format!("cannot encode metrics: {e}\n"),
                ),
            }
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            TEXT,
            if state.api.is_some() {
                "not found; try /live /ready /config /status /metrics /api/\n"
            } else {
                "not found; try /live /ready /config /status /metrics\n"
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_keys_and_the_local_api_are_for_loopback_peers_only() {
        let pod: SocketAddr = "10.244.0.5:40000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        for (path, query) in [
            ("/config", "private_keys=true"),
            ("/config", "a=b&private_keys=true"),
            ("/api/v1/pods", ""),
        ] {
            assert!(refused_to_remote(pod, path, query), "{path}?{query}");
            assert!(!refused_to_remote(local, path, query), "{path}?{query}");
            assert!(!refused_to_remote(mapped, path, query), "{path}?{query}");
        }
        for path in ["/live", "/ready", "/config", "/status", "/metrics"] {
            assert!(!refused_to_remote(pod, path, ""), "{path}");
        }
    }

    #[test]
    fn hosts_split_into_name_and_port() {
        assert_eq!(
            split_host("127.0.0.1:9901"),
            Some(("127.0.0.1", Some(9901)))
        );
        assert_eq!(split_host("[::1]:9901"), Some(("::1", Some(9901))));
        assert_eq!(split_host("[::1]"), Some(("::1", None)));
        assert_eq!(split_host("localhost:"), Some(("localhost", None)));
        for bad in [
            "::1",
            "[::1",
            "[evil]:80",
            "[::1]x",
            "a:b",
            "a:99999",
            "a:1:2",
        ] {
            assert_eq!(split_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_ip_literals_and_localhost_are_local() {
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "::1",
            "localhost",
            "LOCALHOST",
            "localhost.",
        ] {
            assert!(is_local_name(local), "{local}");
        }
        for foreign in [
            "",
            "evil.example",
            "127.0.0.1.nip.io",
            "localhost.evil",
            "127.1",
            "u@127.0.0.1",
        ] {
            assert!(!is_local_name(foreign), "{foreign}");
        }
    }

    fn request(version: http::Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::get("/live").version(version);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn no_host_is_served_only_below_http_1_1() {
        use http::Version;
        for old in [Version::HTTP_10, Version::HTTP_09] {
            assert_eq!(browser_refusal(&request(old, &[])), None, "{old:?}");
            // Still no foreign Host, and no other site's requests.
            assert!(browser_refusal(&request(old, &[("host", "evil.example")])).is_some());
            assert!(browser_refusal(&request(old, &[("origin", "http://evil.example")])).is_some());
            assert!(browser_refusal(&request(old, &[("sec-fetch-site", "cross-site")])).is_some());
        }
        for new in [Version::HTTP_11, Version::HTTP_2] {
            let refusal = browser_refusal(&request(new, &[])).expect("refused");
            assert!(refusal.contains("Host"), "{refusal}");
            assert_eq!(
                browser_refusal(&request(new, &[("host", "127.0.0.1:9901")])),
                None
            );
        }
    }

    #[test]
    fn an_origin_is_this_server_only_with_http_and_the_same_host_and_port() {
        assert!(same_origin("http://127.0.0.1:9901", "127.0.0.1:9901"));
        assert!(same_origin("http://LOCALHOST", "localhost:80"));
        assert!(!same_origin("https://127.0.0.1:9901", "127.0.0.1:9901"));
        assert!(!same_origin("http://127.0.0.1:1", "127.0.0.1:9901"));
        assert!(!same_origin("http://evil.example:9901", "127.0.0.1:9901"));
        assert!(!same_origin("null", "127.0.0.1:9901"));
    }
}
