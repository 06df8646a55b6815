//! `ferry get`: kubectl-like views of what a running ferry serves, read from its admin API.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use ferry_model::Snapshot;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;

/// What to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Resource {
    #[value(alias = "svc", alias = "service")]
    Services,
    #[value(alias = "ep", alias = "endpoint")]
    Endpoints,
    #[value(alias = "ing", alias = "ingress")]
    Ingresses,
    #[value(alias = "route")]
    Routes,
    #[value(alias = "po", alias = "pod")]
    Pods,
    #[value(alias = "deploy", alias = "deployment")]
    Deployments,
    #[value(alias = "rs", alias = "replicaset")]
    #[value(name = "replicasets")]
    ReplicaSets,
    /// The parts subscribed to `ferry control` (its /status).
    #[value(alias = "proxy")]
    Proxies,
    /// The golden signals per meshed workload, scraped from the sidecars (`ferry get mesh`).
    #[value(alias = "top")]
    Mesh,
}

impl Resource {
    /// The live workloads of the local runtime, which its API lists (the others come from the
    /// snapshot).
    pub fn workload(self) -> Option<crate::workloads::Workload> {
        use crate::workloads::Workload;
        match self {
            Resource::Pods => Some(Workload::Pods),
            Resource::Deployments => Some(Workload::Deployments),
            Resource::ReplicaSets => Some(Workload::ReplicaSets),
            _ => None,
        }
    }
}

/// How to print it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Wide,
    Yaml,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the admin API at {addr}: {message}")]
    Unreachable { addr: SocketAddr, message: String },
    #[error("the admin API at {addr} answered {status}")]
    Status {
        addr: SocketAddr,
        status: http::StatusCode,
    },
    #[error("the admin API at {addr} sent a snapshot ferry cannot read: {0}", addr = .1)]
    Decode(String, SocketAddr),
    #[error("cannot encode output: {0}")]
    Encode(String),
    #[error("{0} are not in the snapshot: the local runtime's API lists them")]
    NotInSnapshot(&'static str),
    #[error("{0} are not in the snapshot: the control plane's /status lists them")]
    InStatus(&'static str),
}

/// One request to a running ferry's admin API: the status, headers and whole body.
pub async fn request(
    admin: SocketAddr,
    method: http::Method,
    path_and_query: &str,
) -> Result<(http::StatusCode, http::HeaderMap, Bytes), Error> {
    let unreachable = |e: &dyn std::fmt::Display| Error::Unreachable {
        addr: admin,
        message: e.to_string(),
    };
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(http::header::HOST, admin.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| unreachable(&e))?;
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(&e))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| unreachable(&e))?
        .to_bytes();
    Ok((parts.status, parts.headers, body))
}

/// Fetches the snapshot a running ferry serves.
pub async fn fetch(admin: SocketAddr) -> Result<Snapshot, Error> {
    let (status, _, body) = request(admin, http::Method::GET, "/config").await?;
    if !status.is_success() {
        return Err(Error::Status {
            addr: admin,
            status,
        });
    }
    serde_json::from_slice(&body).map_err(|e| Error::Decode(e.to_string(), admin))
}

/// A route, flattened for listing.
#[derive(Debug, Serialize)]
struct RouteRow<'a> {
    host: String,
    path: &'a str,
    path_type: &'static str,
    backend: String,
    cluster: Option<String>,
    ready_endpoints: usize,
    ingress: String,
}

/// An Ingress as the snapshot shows it.
#[derive(Debug, Default, Serialize)]
struct IngressRow {
    namespace: String,
    name: String,
    hosts: Vec<String>,
    tls: bool,
    routes: usize,
}

fn routes(s: &Snapshot) -> Vec<RouteRow<'_>> {
    let mut rows = Vec::new();
    for vh in &s.virtual_hosts {
        for r in &vh.routes {
            let cluster = r.backend.cluster();
            rows.push(RouteRow {
                host: vh.host.to_string(),
                path: &r.path,
                path_type: r.path_type.as_str(),
                backend: r.backend.to_string(),
                cluster: cluster.map(ToString::to_string),
                ready_endpoints: cluster
                    .and_then(|k| s.cluster(k))
                    .map_or(0, |c| c.ready_endpoints().count()),
                ingress: format!("{}/{}", r.ingress.namespace, r.ingress.name),
            });
        }
    }
    rows
}

fn ingresses(s: &Snapshot) -> Vec<IngressRow> {
    let mut by_ingress: BTreeMap<(String, String), IngressRow> = BTreeMap::new();
    for vh in &s.virtual_hosts {
        for r in &vh.routes {
            let row = by_ingress
                .entry((r.ingress.namespace.clone(), r.ingress.name.clone()))
                .or_insert_with(|| IngressRow {
                    namespace: r.ingress.namespace.clone(),
                    name: r.ingress.name.clone(),
                    ..IngressRow::default()
                });
            let host = vh.host.to_string();
            if !row.hosts.contains(&host) {
                row.hosts.push(host);
            }
            row.tls |= vh.tls;
            row.routes += 1;
        }
    }
    by_ingress.into_values().collect()
}

/// Columns padded as kubectl pads them.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            let _ = write!(text, "{cell:<w$}   ", w = widths[i]);
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

pub(crate) fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

/// Lists of addresses shortened as kubectl does: three, then "+ N more...".
fn shorten(items: Vec<String>, wide: bool) -> String {
    const SHOWN: usize = 3;
    if wide || items.len() <= SHOWN {
        return or_none(items.join(","));
    }
    format!(
        "{} + {} more...",
        items[..SHOWN].join(","),
        items.len() - SHOWN
    )
}

pub(crate) fn encode<T: Serialize>(value: &T, output: Output) -> Result<String, Error> {
    match output {
        Output::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| Error::Encode(e.to_string())),
        _ => serde_saphyr::to_string(value).map_err(|e| Error::Encode(e.to_string())),
    }
}

/// Renders one resource list from a snapshot.
pub fn render(s: &Snapshot, resource: Resource, output: Output) -> Result<String, Error> {
    let wide = output == Output::Wide;
    let structured = matches!(output, Output::Json | Output::Yaml);
    match resource {
        Resource::Services if structured => encode(&s.services, output),
        Resource::Services => {
            let rows: Vec<Vec<String>> = s
                .services
                .iter()
                .map(|svc| {
                    let ip = if svc.headless {
                        "None".to_owned()
                    } else {
                        or_none(
                            svc.cluster_ips
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(","),
                        )
                    };
                    let ports = svc
                        .ports
                        .iter()
                        .map(|p| match p.node_port {
                            Some(np) => format!("{}:{}/{}", p.port, np, p.protocol.as_str()),
                            None => format!("{}/{}", p.port, p.protocol.as_str()),
                        })
                        .collect::<Vec<_>>()
                        .join(",");
                    let ready = svc.endpoints.iter().filter(|e| e.ready).count();
                    let mut row = vec![
                        svc.namespace.clone(),
                        svc.name.clone(),
                        svc.service_type.as_str().to_owned(),
                        ip,
                        or_none(svc.external_name.clone().unwrap_or_default()),
                        or_none(ports),
                        format!("{ready}/{}", svc.endpoints.len()),
                    ];
                    if wide {
                        let targets = svc
                            .ports
                            .iter()
                            .map(|p| p.target_port.to_string())
                            .collect::<Vec<_>>();
                        row.push(or_none(targets.join(",")));
                        row.push(match svc.session_affinity {
                            ferry_model::SessionAffinity::None => "None".into(),
                            ferry_model::SessionAffinity::ClientIP { timeout_seconds } => {
                                format!("ClientIP({timeout_seconds}s)")
                            }
                        });
                    }
                    row
                })
                .collect();
            let mut header = vec![
                "NAMESPACE",
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-NAME",
                "PORT(S)",
                "READY",
            ];
            if wide {
                header.extend(["TARGET-PORT(S)", "AFFINITY"]);
            }
            Ok(table(&header, &rows))
        }
        Resource::Endpoints if structured => encode(&s.clusters, output),
        Resource::Endpoints => {
            let mut by_service: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
            for c in &s.clusters {
                let list = by_service
                    .entry((&c.key.namespace, &c.key.service))
                    .or_default();
                list.extend(
                    c.ready_endpoints()
                        .map(|e| SocketAddr::new(e.address, e.port).to_string()),
                );
            }
            for svc in &s.services {
                by_service.entry((&svc.namespace, &svc.name)).or_default();
            }
            let rows: Vec<Vec<String>> = by_service
                .into_iter()
                .map(|((ns, name), eps)| vec![ns.to_owned(), name.to_owned(), shorten(eps, wide)])
                .collect();
            Ok(table(&["NAMESPACE", "NAME", "ENDPOINTS"], &rows))
        }
        Resource::Ingresses if structured => encode(&ingresses(s), output),
        Resource::Ingresses => {
            let rows: Vec<Vec<String>> = ingresses(s)
                .into_iter()
                .map(|i| {
                    let ports = if i.tls { "80, 443" } else { "80" };
                    let mut row = vec![i.namespace, i.name, i.hosts.join(","), ports.to_owned()];
                    if wide {
                        row.push(i.routes.to_string());
                    }
                    row
                })
                .collect();
            let mut header = vec!["NAMESPACE", "NAME", "HOSTS", "PORTS"];
            if wide {
                header.push("ROUTES");
            }
            Ok(table(&header, &rows))
        }
        Resource::Pods => Err(Error::NotInSnapshot("pods")),
        Resource::Deployments => Err(Error::NotInSnapshot("deployments")),
        Resource::ReplicaSets => Err(Error::NotInSnapshot("replicasets")),
        Resource::Proxies => Err(Error::InStatus("proxies")),
        Resource::Mesh => Err(Error::NotInSnapshot("meshed workloads")),
        Resource::Routes if structured => encode(&routes(s), output),
        Resource::Routes => {
            let rows: Vec<Vec<String>> = routes(s)
                .into_iter()
                .map(|r| {
                    let endpoints = if r.cluster.is_some() {
                        r.ready_endpoints.to_string()
                    } else {
                        "<none> (503)".into()
                    };
                    let mut row = vec![
                        r.host,
                        r.path.to_owned(),
                        r.path_type.to_owned(),
                        r.backend,
                        endpoints,
                        r.ingress,
                    ];
                    if wide {
                        row.push(r.cluster.unwrap_or_else(|| "<none>".into()));
                    }
                    row
                })
                .collect();
            let mut header = vec!["HOST", "PATH", "PATHTYPE", "BACKEND", "READY", "INGRESS"];
            if wide {
                header.push("CLUSTER");
            }
            let mut text = table(&header, &rows);
            if let Some(b) = &s.default_backend {
                let _ = writeln!(text, "\ndefault backend: {b}");
            }
            Ok(text)
        }
    }
}
