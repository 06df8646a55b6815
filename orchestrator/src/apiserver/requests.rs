//! The requests of the API server: authentication, the path's target (discovery, a list, an
//! object, a watch), the answers (JSON or a `Table`, `Status` errors), selectors and
//! `continue` tokens. The server itself (listener, TLS, connections) is `apiserver.rs`.

use super::*;

pub(super) const JSON: &str = "application/json";

pub(super) fn json_response(
    status: StatusCode,
    content_type: &str,
    value: &Value,
) -> Response<ApiBody> {
    respond(
        status,
        content_type,
        Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
    )
    .map(ApiBody::from)
}

/// A `Status` failure, as the API server answers every error.
pub(super) fn status(
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

/// A request's body, at most `limit` bytes; past it, the 413 `Status` to answer.
pub(super) async fn body_within(body: Incoming, limit: usize) -> Result<Bytes, Response<ApiBody>> {
    use http_body_util::{BodyExt, Limited};
    match Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!("Request entity too large: limit is {limit}"),
            None,
        )),
    }
}

pub(super) fn bad_request(message: &str) -> Response<ApiBody> {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

pub(super) fn not_found_path() -> Response<ApiBody> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

/// Whether the request carries the admin token (compared in constant time).
pub(super) fn authorized(headers: &HeaderMap, token: &str) -> bool {
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

pub(super) fn decode(s: &str) -> String {
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
pub(super) enum Target<'a> {
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
    /// A subresource (`pods/log`, `deployments/scale`, …).
    Subresource {
        resource: &'static Resource,
        /// "" when cluster-scoped.
        namespace: &'a str,
        name: &'a str,
        sub: &'a str,
    },
}

/// Parses the segments after the group/version.
pub(super) fn target<'a>(group: &str, version: &str, segments: &[&'a str]) -> Option<Target<'a>> {
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
                    namespace: ns,
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
                    namespace: "",
                    name,
                    sub,
                }),
                _ => None,
            }
        }
    }
}

/// `/api/v1/namespaces/N/pods/P/{log,exec}`: the Pod subresources that stream from the
/// kubelet, served by `log.rs` and `exec.rs` rather than from the store.
pub(super) fn pod_stream(path: &str) -> Option<(&str, &str, &str)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [
            "api",
            "v1",
            "namespaces",
            ns,
            "pods",
            name,
            sub @ ("log" | "exec"),
        ] if !ns.is_empty() && !name.is_empty() => Some((ns, name, sub)),
        _ => None,
    }
}

/// Whether `Accept` asks for a `meta.k8s.io/v1` `Table`.
pub(super) fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"as=Table")
            && params.contains(&"g=meta.k8s.io")
            && params.contains(&"v=v1")
    })
}

pub(super) async fn handle(state: &State, req: Request<Incoming>) -> Response<ApiBody> {
    if let Some((namespace, name, sub)) = pod_stream(req.uri().path())
        && authorized(req.headers(), &state.token)
    {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        let params = query_params(req.uri().query().unwrap_or(""));
        return match (sub, req.method()) {
            ("log", &Method::GET) => super::log::pod_log(state, &namespace, &name, &params),
            ("exec", &Method::GET | &Method::POST) => {
                super::exec::pod_exec(state, &namespace, &name, &params, req)
            }
            _ => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!(
                    "the server does not allow this method on the requested resource (pods/{sub}: {})",
                    if sub == "log" {
                        "GET"
                    } else {
                        "GET or POST with a WebSocket upgrade"
                    }
                ),
                Some(json!({})),
            ),
        };
    }
    if let Some(route) = super::tokens::route(req.uri().path()) {
        return super::tokens::handle(state, route, req).await;
    }
    if super::writes::serves(req.method(), req.uri().path()) {
        return super::writes::handle(state, req).await;
    }
    answer(
        state,
        req.method(),
        req.uri().path(),
        req.uri().query().unwrap_or(""),
        req.headers(),
    )
}

/// The answer to one request.
pub(super) fn answer(
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
        ["openapi", "v3", rest @ ..] if read => return openapi::answer(rest, query, headers),
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
            ..
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
            Some(mut object) if table => {
                resources::as_version(resource, &mut object);
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
            Some(mut object) => {
                resources::as_version(resource, &mut object);
                json_response(StatusCode::OK, JSON, &object)
            }
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
pub(super) fn selectors<'a>(
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

/// `?watch=true` on a list path: checks the request, answers an ERROR event with a 410
/// `Status` for a resourceVersion older than the ring, else starts the stream.
pub(super) fn start_watch<'a>(
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
        // As the API server's watch cache: the watch is established and its one event is the
        // ERROR (client-go's reflector and kube-rs' watcher relist on it; an HTTP 410 makes
        // kube-rs retry the same version).
        let event = json!({"type": "ERROR", "object": watch::expired_status(revision, expired)});
        return json_response(StatusCode::OK, JSON, &event);
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

pub(super) fn list<'a>(
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
    let keep = |o: &Value| {
        labels.as_ref().is_none_or(|l| selector::labels_match(l, o))
            && selector::fields_match(&fields, o)
    };
    let (revision, mut items, remaining) =
        state
            .store
            .page(resource, namespace, after.as_ref(), limit, keep);
    for item in &mut items {
        resources::as_version(resource, item);
    }
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if remaining > 0
        && let Some(last) = items.last()
    {
        metadata["continue"] = json!(encode_continue(&object_key(last)));
        metadata["remainingItemCount"] = json!(remaining);
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
pub(super) fn object_key(o: &Value) -> (String, String) {
    let s = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

/// A continue token: the last key returned, hex-encoded (opaque to clients).
pub(super) fn encode_continue(key: &(String, String)) -> String {
    format!("{}/{}", key.0, key.1)
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn continue_key(token: &str) -> Option<(String, String)> {
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

pub(super) fn version_info() -> Value {
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
