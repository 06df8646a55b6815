//! The local cluster's Kubernetes API server, read side: HTTPS with a bearer token, `/version`,
//! discovery (aggregated v2 and the legacy documents), and `get`, `list` and `watch` of every
//! object the local cluster has (namespaced and across namespaces, label and field selectors,
//! `limit`/`continue`), as JSON or as a `Table`, so the real `kubectl get [-w]` works against
//! `ferry up`.
//!
//! Objects come from the [`Store`] each round of the orchestrator records (one revision
//! counter; resourceVersions are opaque strings; a ring of recent events for watches). Verbs
//! not served yet (create, update, patch, delete) answer 405 `MethodNotAllowed`; discovery
//! names only `get`, `list` and `watch`.

pub mod pki;
pub mod resources;
pub mod selector;
pub mod store;
pub mod table;
pub mod watch;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_runtime::Shutdown;
use ferry_runtime::connections::{Connection, Connections, Limits};
use ferry_runtime::serve::respond;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use pki::{Credentials, PkiError};
pub use store::Store;

use resources::Resource;
use table::Include;
use watch::ApiBody;

/// The Kubernetes version the server says it speaks (kubectl's dispatcher picks its client
/// by this minor version).
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "32");
/// How long a client gets to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open requests get to finish on shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection closed by its limits gets to close by itself.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Where the API server listens and keeps its credentials.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--api`.
    pub addr: SocketAddr,
    /// `--state-dir`: the CA, the token and a copy of the kubeconfig.
    pub state_dir: PathBuf,
    /// `--write-kubeconfig`; `<state-dir>/kubeconfig` when absent.
    pub kubeconfig: Option<PathBuf>,
}

/// The kubeconfig kept in a state directory.
pub fn kubeconfig_path(state_dir: &Path) -> PathBuf {
    state_dir.join("kubeconfig")
}

/// Why the API server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--state-dir: {0}")]
    Pki(#[from] PkiError),
    #[error("--write-kubeconfig: {0}")]
    WriteKubeconfig(PkiError),
    #[error("--api {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the API server's certificate: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the API server's certificate: {0}")]
    KeyPair(#[from] ferry_runtime::tls::KeyPairError),
}

/// A bound API server, its kubeconfig written.
pub struct ApiServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    kubeconfig: PathBuf,
}

#[derive(Debug)]
struct State {
    store: Arc<Store>,
    token: String,
    server: String,
    /// Set on shutdown: ends the watches.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("listener", &self.listener)
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Loads (or makes) the credentials, binds, and writes the kubeconfig.
    pub async fn build(config: Config, store: Arc<Store>) -> Result<ApiServer, Error> {
        let credentials = Credentials::load_or_create(&config.state_dir)?;
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: config.addr,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.addr,
            source,
        })?;
        let (chain, key) = credentials.serving(local.ip())?;
        let certified = ferry_runtime::tls::certified_key(chain.as_bytes(), key.as_bytes())?;
        let mut tls =
            rustls::ServerConfig::builder_with_provider(ferry_runtime::tls::provider().clone())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // A client reaches an unspecified address on loopback.
        let host = match local.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let server = format!("https://{}", SocketAddr::new(host, local.port()));
        let kubeconfig = credentials.kubeconfig(&server);
        let kept = kubeconfig_path(&config.state_dir);
        pki::write_private(&kept, &kubeconfig)?;
        let path = match config.kubeconfig {
            Some(path) => {
                pki::write_private(&path, &kubeconfig).map_err(Error::WriteKubeconfig)?;
                path
            }
            None => kept,
        };
        Ok(ApiServer {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            state: Arc::new(State {
                store,
                token: credentials.token,
                server,
                stopping: tokio::sync::watch::Sender::new(false),
            }),
            kubeconfig: path,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where the admin kubeconfig was written.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Serves until shutdown, then lets open requests finish (for a bounded time). Each
    /// connection is bounded as the admin server's ([`Limits::ADMIN`]): a deadline for its
    /// first request, an idle timeout, a cap on open connections.
    pub async fn run(self, mut shutdown: Shutdown) {
        tracing::info!(
            server = %self.state.server,
            "Kubernetes API: export KUBECONFIG={}",
            self.kubeconfig.display()
        );
        let builder = auto::Builder::new(TokioExecutor::new());
        let connections = Connections::new(Limits::ADMIN);
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Some(conn) = connections.admit() else {
                            tracing::debug!(%peer, "every API connection is busy at the limit; closing the new one");
                            continue;
                        };
                        tasks.spawn(connection(
                            self.acceptor.clone(),
                            builder.clone(),
                            stream,
                            peer,
                            self.state.clone(),
                            conn,
                            shutdown.clone(),
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = shutdown.wait() => break,
            }
        }
        self.state.stopping.send_replace(true);
        drop(self.listener);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.shutdown().await;
        }
    }
}

/// Serves one connection: the TLS handshake (bounded), then requests until the client closes,
/// the connection's limits close it, or shutdown drains it.
async fn connection(
    acceptor: TlsAcceptor,
    builder: auto::Builder<TokioExecutor>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    conn: Connection,
    mut shutdown: Shutdown,
) {
    let _ = stream.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "API TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "API TLS handshake timed out");
            return;
        }
    };
    let conn = Arc::new(conn);
    let tracked = conn.clone();
    let svc = service_fn(move |req| {
        let in_progress = tracked.request();
        let state = state.clone();
        async move {
            let response = handle(&state, req).await;
            // A watch keeps its request in progress while it streams.
            Ok::<_, Infallible>(response.map(|body| body.guarded(in_progress)))
        }
    });
    let served = builder.serve_connection(TokioIo::new(tls), svc);
    let mut served = std::pin::pin!(served);
    let grace = tokio::select! {
        result = served.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "API connection ended with an error");
            }
            return;
        }
        expiry = conn.expired() => {
            tracing::debug!(%peer, %expiry, "closing the API connection");
            CLOSE_GRACE
        }
        () = shutdown.wait() => DRAIN_TIMEOUT,
    };
    served.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(grace, served).await;
}

/// A random version 4 UUID (a uid the API server gives on create).
fn new_uid() -> String {
    let (a, b) = (ferry_runtime::random::u64(), ferry_runtime::random::u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

const JSON: &str = "application/json";

fn json_response(status: StatusCode, content_type: &str, value: &Value) -> Response<ApiBody> {
    respond(
        status,
        content_type,
        Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
    )
    .map(ApiBody::from)
}

/// A `Status` failure, as the API server answers every error.
fn status(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<Value>,
) -> Response<ApiBody> {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    json_response(code, JSON, &body)
}

fn bad_request(message: &str) -> Response<ApiBody> {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

fn not_found_path() -> Response<ApiBody> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

/// Whether the request carries the admin token (compared in constant time).
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The query's parameters, percent-decoded (`+` is a space, as Go's `url.ParseQuery`).
pub fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit())) {
                    Some(h) => {
                        out.push(u8::from_str_radix(h, 16).unwrap_or(b'%'));
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a path names under `/api/v1` or `/apis/<group>/<version>`.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    /// The group/version's resource list.
    Resources,
    List {
        resource: &'static Resource,
        namespace: Option<&'a str>,
    },
    Get {
        resource: &'static Resource,
        namespace: &'a str,
        name: &'a str,
    },
    /// A subresource (`pods/log`, `deployments/scale`, …): not served yet.
    Subresource {
        resource: &'static Resource,
        name: &'a str,
        sub: &'a str,
    },
}

/// Parses the segments after the group/version.
fn target<'a>(group: &str, version: &str, segments: &[&'a str]) -> Option<Target<'a>> {
    let find = |plural: &str| resources::find(group, version, plural);
    match segments {
        [] => Some(Target::Resources),
        ["namespaces", ns, plural, rest @ ..] if find(plural).is_some_and(|r| r.namespaced) => {
            let resource = find(plural)?;
            match rest {
                [] => Some(Target::List {
                    resource,
                    namespace: Some(ns),
                }),
                [name] => Some(Target::Get {
                    resource,
                    namespace: ns,
                    name,
                }),
                [name, sub] => Some(Target::Subresource {
                    resource,
                    name,
                    sub,
                }),
                _ => None,
            }
        }
        [plural, rest @ ..] => {
            let resource = find(plural)?;
            match rest {
                [] => Some(Target::List {
                    resource,
                    namespace: None,
                }),
                [name] if !resource.namespaced => Some(Target::Get {
                    resource,
                    namespace: "",
                    name,
                }),
                [name, sub] if !resource.namespaced => Some(Target::Subresource {
                    resource,
                    name,
                    sub,
                }),
                _ => None,
            }
        }
    }
}

/// Whether `Accept` asks for a `meta.k8s.io/v1` `Table`.
fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"as=Table")
            && params.contains(&"g=meta.k8s.io")
            && params.contains(&"v=v1")
    })
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<ApiBody> {
    answer(
        state,
        req.method(),
        req.uri().path(),
        req.uri().query().unwrap_or(""),
        req.headers(),
    )
}

/// The answer to one request.
fn answer(
    state: &State,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
) -> Response<ApiBody> {
    if !authorized(headers, &state.token) {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        );
    }
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let read = method == Method::GET || method == Method::HEAD;
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] if read => return json_response(StatusCode::OK, JSON, &version_info()),
        ["api"] if read => {
            return if resources::wants_aggregated(accept) {
                json_response(
                    StatusCode::OK,
                    resources::AGGREGATED_CONTENT_TYPE,
                    &resources::aggregated(true),
                )
            } else {
                let address = state.server.trim_start_matches("https://");
                json_response(StatusCode::OK, JSON, &resources::api_versions(address))
            };
        }
        ["apis"] if read => {
            return if resources::wants_aggregated(accept) {
                json_response(
                    StatusCode::OK,
                    resources::AGGREGATED_CONTENT_TYPE,
                    &resources::aggregated(false),
                )
            } else {
                json_response(StatusCode::OK, JSON, &resources::api_group_list())
            };
        }
        ["apis", group] if read && resources::serves(group, "v1") => {
            return json_response(StatusCode::OK, JSON, &resources::api_group(group));
        }
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] if resources::serves(group, version) => {
            (*group, *version, rest)
        }
        _ => return not_found_path(),
    };
    let Some(target) = target(group, version, rest) else {
        return not_found_path();
    };
    if !read {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!(
                "the server does not allow this method on the requested resource ({method} is not served yet: ferry serves get, list and watch)"
            ),
            Some(json!({})),
        );
    }
    let params = query_params(query);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let include = match Include::parse(param("includeObject")) {
        Ok(i) => i,
        Err(e) => return bad_request(&e),
    };
    let table = wants_table(accept);
    if param("watch").is_some_and(|w| w == "true" || w == "1") {
        return match target {
            Target::List {
                resource,
                namespace,
            } => start_watch(state, resource, namespace, &param, table, include),
            _ => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource (watch a list, with fieldSelector=metadata.name=NAME for one object)",
                Some(json!({})),
            ),
        };
    }
    match target {
        Target::Resources => json_response(
            StatusCode::OK,
            JSON,
            &resources::api_resource_list(group, version),
        ),
        Target::Subresource {
            resource,
            name,
            sub,
        } => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!(
                "{} \"{name}\" subresource {sub:?} is not served yet",
                resource.qualified()
            ),
            Some(json!({"name": name, "group": resource.group, "kind": resource.plural})),
        ),
        Target::Get {
            resource,
            namespace,
            name,
        } => match state.store.get(resource, namespace, name) {
            Some(object) if table => {
                let metadata =
                    json!({"resourceVersion": object.pointer("/metadata/resourceVersion")});
                json_response(
                    StatusCode::OK,
                    JSON,
                    &table::table(
                        resource.kind,
                        &[object],
                        metadata,
                        include,
                        jiff::Timestamp::now(),
                    ),
                )
            }
            Some(object) => json_response(StatusCode::OK, JSON, &object),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{} \"{name}\" not found", resource.qualified()),
                Some(json!({"name": name, "group": resource.group, "kind": resource.plural})),
            ),
        },
        Target::List {
            resource,
            namespace,
        } => list(state, resource, namespace, &param, table, include),
    }
}

type Selectors = (
    Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    Vec<selector::FieldRequirement>,
);

/// The request's label and field selectors, or why they do not parse.
fn selectors<'a>(
    resource: &Resource,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Selectors, String> {
    let labels = match param("labelSelector").map(selector::parse_labels) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return Err(format!("unable to parse requirement: {e}")),
    };
    let fields = match param("fieldSelector").map(|f| selector::parse_fields(f, resource.kind)) {
        None => Vec::new(),
        Some(Ok(f)) => f,
        Some(Err(e)) => return Err(e),
    };
    Ok((labels, fields))
}

/// `?watch=true` on a list path: checks the request, answers 410 for a resourceVersion
/// older than the ring, else starts the stream.
fn start_watch<'a>(
    state: &State,
    resource: &'static Resource,
    namespace: Option<&str>,
    param: &impl Fn(&str) -> Option<&'a str>,
    table: bool,
    include: Include,
) -> Response<ApiBody> {
    let (labels, fields) = match selectors(resource, param) {
        Ok(s) => s,
        Err(e) => return bad_request(&e),
    };
    let initial = param("sendInitialEvents") == Some("true");
    let start = match param("resourceVersion").unwrap_or("") {
        "" | "0" => watch::Start::Current,
        _ if initial => watch::Start::Current,
        rv => match rv.parse::<u64>() {
            Ok(revision) => watch::Start::After(revision),
            Err(_) => {
                return bad_request(&format!(
                    "resourceVersion: invalid value {rv:?}: a resourceVersion this server gave"
                ));
            }
        },
    };
    let timeout = match param("timeoutSeconds").map(str::parse::<u64>) {
        None | Some(Ok(0)) => watch::DEFAULT_TIMEOUT,
        Some(Ok(s)) => Duration::from_secs(s),
        Some(Err(_)) => return bad_request("timeoutSeconds: must be a non-negative integer"),
    };
    if let watch::Start::After(revision) = start
        && let Err(expired) = state.store.events_after(resource, namespace, revision)
    {
        return json_response(
            StatusCode::GONE,
            JSON,
            &watch::expired_status(revision, expired),
        );
    }
    let bookmarks = param("allowWatchBookmarks") == Some("true");
    let w = watch::Watch {
        resource,
        namespace: namespace.map(str::to_owned),
        labels,
        fields,
        table,
        include,
        bookmarks,
        bookmark_interval: watch::BOOKMARK_INTERVAL,
        initial_events_end: initial && bookmarks,
        timeout,
        start,
    };
    let body = w.start(state.store.clone(), state.stopping.subscribe());
    let mut response = Response::new(ApiBody::Watch(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(JSON),
    );
    response
}

fn list<'a>(
    state: &State,
    resource: &'static Resource,
    namespace: Option<&str>,
    param: &impl Fn(&str) -> Option<&'a str>,
    table: bool,
    include: Include,
) -> Response<ApiBody> {
    let (labels, fields) = match selectors(resource, param) {
        Ok(s) => s,
        Err(e) => return bad_request(&e),
    };
    let limit = match param("limit").map(str::parse::<usize>) {
        None | Some(Ok(0)) => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return bad_request("limit: must be a non-negative integer"),
    };
    let after = match param("continue")
        .filter(|c| !c.is_empty())
        .map(continue_key)
    {
        None => None,
        Some(Some(key)) => Some(key),
        Some(None) => return bad_request("continue key is not valid: malformed"),
    };
    let (revision, objects) = state.store.list(resource, namespace);
    let mut items: Vec<Value> = objects
        .into_iter()
        .filter(|o| labels.as_ref().is_none_or(|l| selector::labels_match(l, o)))
        .filter(|o| selector::fields_match(&fields, o))
        .filter(|o| after.as_ref().is_none_or(|a| &object_key(o) > a))
        .collect();
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(limit) = limit.filter(|l| items.len() > *l) {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some(last) = items.last() {
            metadata["continue"] = json!(encode_continue(&object_key(last)));
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    if table {
        let body = table::table(
            resource.kind,
            &items,
            metadata,
            include,
            jiff::Timestamp::now(),
        );
        return json_response(StatusCode::OK, JSON, &body);
    }
    let body = json!({
        "apiVersion": resource.group_version(),
        "kind": format!("{}List", resource.kind),
        "metadata": metadata,
        "items": items,
    });
    json_response(StatusCode::OK, JSON, &body)
}

/// An object's place in list order: namespace, then name.
fn object_key(o: &Value) -> (String, String) {
    let s = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

/// A continue token: the last key returned, hex-encoded (opaque to clients).
fn encode_continue(key: &(String, String)) -> String {
    format!("{}/{}", key.0, key.1)
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn continue_key(token: &str) -> Option<(String, String)> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let (ns, name) = text.split_once('/')?;
    Some((ns.to_owned(), name.to_owned()))
}

fn version_info() -> Value {
    let (major, minor) = KUBERNETES_VERSION;
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("v{major}.{minor}.0-ferry.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}
