//! The echo app: answers every request with JSON describing it. It is the demo workload and
//! the upstream of end-to-end tests and benchmarks. HTTP/1.1 and h2c on one port.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Serialize;
use tokio::net::TcpListener;

use ferry_runtime::serve::{self, Body, respond};
use ferry_runtime::{Error, Limits, Shutdown};

/// nginx's `client_header_timeout` and `keepalive_timeout`, and room for the many connections
/// a load test or the gateway's pools open to one backend.
const LIMITS: Limits = Limits {
    first_request: std::time::Duration::from_secs(60),
    idle: std::time::Duration::from_secs(75),
    max_connections: 16_384,
};

/// A bound echo server.
#[derive(Debug)]
pub struct Echo {
    listener: TcpListener,
    name: String,
    pod: String,
}

/// What the echo app answers.
#[derive(Debug, Serialize)]
pub struct Reply<'a> {
    pub name: &'a str,
    pub pod: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub host: &'a str,
    /// The address of the connection's peer, as the app sees it.
    pub peer: String,
    /// Repeated headers are joined with ", ".
    pub headers: BTreeMap<&'a str, String>,
    pub body_bytes: u64,
}

impl Echo {
    /// `pod` names the pod in replies: `POD_NAME` from the environment, else the host name.
    pub async fn build(listen: SocketAddr, name: String, pod: String) -> Result<Echo, Error> {
        Ok(Echo {
            listener: serve::bind(listen).await?,
            name,
            pod,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self, shutdown: Shutdown) {
        let ids: std::sync::Arc<(String, String)> = std::sync::Arc::new((self.name, self.pod));
        serve::serve(
            self.listener,
            move |req, peer| answer(ids.clone(), req, peer),
            LIMITS,
            shutdown,
        )
        .await;
    }
}

async fn answer(
    ids: std::sync::Arc<(String, String)>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let (parts, mut body) = req.into_parts();
    // Count the body as it streams; never hold it whole.
    let mut body_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => body_bytes += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(e) => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("bad body: {e}\n"),
                );
            }
        }
    }
    let mut headers: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let reply = Reply {
        name: &ids.0,
        pod: &ids.1,
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        host,
        peer: peer.to_string(),
        headers,
        body_bytes,
    };
    match serde_json::to_vec(&reply) {
        Ok(mut body) => {
            body.push(b'\n');
            respond(StatusCode::OK, "application/json", body)
        }
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("{e}\n"),
        ),
    }
}
