//! The admin server: `/live`, `/ready`, `/config`, `/status`, `/metrics`, and under `/api/`
//! whatever [`Api`] the process adds (the local runtime's Pods, Deployments, logs, scaling).
//!
//! `/config` serves the snapshot being served as JSON with private keys redacted;
//! `/config?private_keys=true` includes them (the admin port listens on loopback by default, and
//! this is the form `--snapshot FILE` reads back). `/status` shows the configuration state, the
//! warnings of the served configuration, the last rejected change's problems and the version
//! each part serves.

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
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self, shutdown: Shutdown) {
        let state = self.state;
        serve::serve(
            self.listener,
            move |req, _| handle(state.clone(), req),
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

/// The API acts on the cluster and shows logs, so web pages must not reach it through a
/// browser: a cross-site form or `fetch` carries an `Origin`, and a page that rebinds its own
/// name to 127.0.0.1 carries its name as the `Host`. The CLI sends neither.
fn browser_refusal(req: &Request<Incoming>) -> Option<&'static str> {
    if req.headers().contains_key(http::header::ORIGIN) {
        return Some("requests from web pages (with an Origin) are refused\n");
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let local = name.is_empty()
        || name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok();
    (!local).then_some("the Host must be an IP address or localhost\n")
}

async fn handle(state: Arc<AdminState>, req: Request<Incoming>) -> Response<Body> {
    if let Some(api) = &state.api
        && req.uri().path().starts_with("/api/")
    {
        if let Some(refusal) = browser_refusal(&req) {
            return respond(StatusCode::FORBIDDEN, TEXT, refusal);
        }
        let query = req.uri().query().unwrap_or_default().to_owned();
        return api
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
