//! The local runtime's API on the admin port, under `/api/v1/`: what `ferry get pods`,
//! `ferry logs`, `ferry scale` and `ferry rollout` call.
//!
//! - `GET pods`, `deployments`, `replicasets`: a `List` of the live objects, as JSON.
//! - `GET logs?pod=P[&namespace=N][&container=C][&offset=O][&wait=true]`: the container's log
//!   from byte `O` of its life (the oldest kept byte when `O` is older); the next offset is in
//!   `X-Log-Offset`, and `X-Log-End: true` says the Pod is gone. With `wait`, an answer with
//!   nothing new waits up to 20 s for more (how `ferry logs -f` follows).
//! - `GET exec?pod=P[&namespace=N][&container=C]`: how to run a command in a running container
//!   (its Pod's network namespace, environment and working directory), as JSON
//!   ([`crate::kubelet::ExecPlan`]): `ferry exec` runs it on this machine.
//! - `POST scale?name=D&replicas=N[&namespace=N]`: sets a Deployment's replicas.
//! - `GET rollout/history?name=D[&namespace=N]`: its revisions.
//! - `POST rollout/undo?name=D[&namespace=N][&to-revision=R]`: back to a revision's template.
//!
//! A namespace left out is found from the name when one object has it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use ferry_runtime::admin::{self, Api, TEXT};
use ferry_runtime::serve::{Body, respond};
use http::{HeaderValue, Method, Response, StatusCode};
use serde::Serialize;

use crate::{ApiError, Handle, LocalCluster};

/// How long a follow request waits for more log.
const FOLLOW_WAIT: Duration = Duration::from_secs(20);

/// The API, over the running local cluster.
#[derive(Debug, Clone)]
pub struct LocalApi {
    cluster: Handle,
}

impl LocalApi {
    pub fn new(cluster: Handle) -> LocalApi {
        LocalApi { cluster }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct List<T> {
    api_version: &'static str,
    kind: &'static str,
    items: Vec<T>,
}

fn list<T: Serialize>(items: Vec<T>) -> Response<Body> {
    admin::json(
        StatusCode::OK,
        &List {
            api_version: "v1",
            kind: "List",
            items,
        },
    )
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    respond(status, TEXT, format!("{message}\n"))
}

fn api_error(e: &ApiError) -> Response<Body> {
    match e {
        ApiError::NotFound(_) => error(StatusCode::NOT_FOUND, e),
        ApiError::Invalid(_) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// The query's parameters; names and numbers only, so nothing needs decoding.
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

impl LocalApi {
    async fn answer(self, method: Method, path: String, query: String) -> Response<Body> {
        let route = path.trim_start_matches("/api/v1/").trim_end_matches('/');
        let get = method == Method::GET || method == Method::HEAD;
        let post = method == Method::POST;
        let namespace = param(&query, "namespace").map(str::to_owned);
        match (route, get, post) {
            ("pods", true, _) => list(self.cluster.read(LocalCluster::pods).await),
            ("deployments", true, _) => list(self.cluster.read(LocalCluster::deployments).await),
            ("replicasets", true, _) => list(self.cluster.read(LocalCluster::replica_sets).await),
            ("logs", true, _) => self.logs(namespace, &query).await,
            ("exec", true, _) => self.exec(namespace, &query).await,
            ("scale", _, true) => {
                let Some(name) = param(&query, "name").map(str::to_owned) else {
                    return error(StatusCode::BAD_REQUEST, "name is required");
                };
                let Some(replicas) = param(&query, "replicas").and_then(|r| r.parse::<i32>().ok())
                else {
                    return error(StatusCode::BAD_REQUEST, "replicas must be a number");
                };
                let msg = format!("deployment.apps/{name} scaled\n");
                let done = self
                    .cluster
                    .scale(namespace, name, replicas)
                    .await
                    .map(|()| msg);
                match done {
                    Ok(msg) => respond(StatusCode::OK, TEXT, msg),
                    Err(e) => api_error(&e),
                }
            }
            ("rollout/history", true, _) => {
                let Some(name) = param(&query, "name").map(str::to_owned) else {
                    return error(StatusCode::BAD_REQUEST, "name is required");
                };
                let done = self
                    .cluster
                    .read(move |c| {
                        let ns = c.find_namespace("deployment", namespace.as_deref(), &name)?;
                        c.history(&ns, &name)
                    })
                    .await;
                match done {
                    Ok(revisions) => admin::json(
                        StatusCode::OK,
                        &revisions
                            .into_iter()
                            .map(|(revision, replica_set, change_cause)| {
                                serde_json::json!({
                                    "revision": revision,
                                    "replicaSet": replica_set,
                                    "changeCause": change_cause,
                                })
                            })
                            .collect::<Vec<_>>(),
                    ),
                    Err(e) => api_error(&e),
                }
            }
            ("rollout/undo", _, true) => {
                let Some(name) = param(&query, "name").map(str::to_owned) else {
                    return error(StatusCode::BAD_REQUEST, "name is required");
                };
                let to = match param(&query, "to-revision").map(str::parse::<u64>) {
                    None => None,
                    Some(Ok(n)) => Some(n),
                    Some(Err(_)) => {
                        return error(StatusCode::BAD_REQUEST, "to-revision must be a number");
                    }
                };
                let done = self
                    .cluster
                    .undo(namespace, name.clone(), to)
                    .await
                    .map(|rev| format!("deployment.apps/{name} rolled back to revision {rev}\n"));
                match done {
                    Ok(msg) => respond(StatusCode::OK, TEXT, msg),
                    Err(e) => api_error(&e),
                }
            }
            (
                "pods" | "deployments" | "replicasets" | "logs" | "exec" | "rollout/history",
                false,
                _,
            )
            | ("scale" | "rollout/undo", _, false) => {
                let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                let allow = if get { "POST" } else { "GET, HEAD" };
                r.headers_mut()
                    .insert(http::header::ALLOW, HeaderValue::from_static(allow));
                r
            }
            _ => error(
                StatusCode::NOT_FOUND,
                "not found; try /api/v1/pods /api/v1/deployments /api/v1/replicasets /api/v1/logs",
            ),
        }
    }

    async fn exec(&self, namespace: Option<String>, query: &str) -> Response<Body> {
        let Some(pod) = param(query, "pod").map(str::to_owned) else {
            return error(StatusCode::BAD_REQUEST, "pod is required");
        };
        let name = pod.clone();
        let ns = self
            .cluster
            .read(move |c| c.find_namespace("pod", namespace.as_deref(), &name))
            .await;
        let ns = match ns {
            Err(e) => return api_error(&e),
            Ok(ns) => ns,
        };
        match self
            .cluster
            .kubelet()
            .exec(&ns, &pod, param(query, "container"))
        {
            Ok(plan) => admin::json(StatusCode::OK, &plan),
            Err(e @ crate::kubelet::ContainerError::NotRunning { .. }) => {
                error(StatusCode::CONFLICT, e)
            }
            Err(e) => error(StatusCode::NOT_FOUND, e),
        }
    }

    async fn logs(&self, namespace: Option<String>, query: &str) -> Response<Body> {
        let kubelet = self.cluster.kubelet();
        let Some(pod) = param(query, "pod").map(str::to_owned) else {
            return error(StatusCode::BAD_REQUEST, "pod is required");
        };
        let offset = param(query, "offset")
            .and_then(|o| o.parse::<u64>().ok())
            .unwrap_or(0);
        let wait = param(query, "wait") == Some("true");
        let name = pod.clone();
        let ns = self
            .cluster
            .read(move |c| c.find_namespace("pod", namespace.as_deref(), &name))
            .await;
        let ns = match ns {
            Err(e) => return api_error(&e),
            Ok(ns) => ns,
        };
        let logs = match kubelet.logs(&ns, &pod, param(query, "container")) {
            Ok(logs) => logs,
            Err(e) => return error(StatusCode::NOT_FOUND, e),
        };
        let (mut bytes, mut next) = logs.read_from(offset);
        if wait && bytes.is_empty() && !logs.is_closed() {
            let _ = tokio::time::timeout(FOLLOW_WAIT, logs.changed()).await;
            (bytes, next) = logs.read_from(offset);
        }
        let mut r = respond(StatusCode::OK, TEXT, bytes);
        if let Ok(v) = HeaderValue::from_str(&next.to_string()) {
            r.headers_mut().insert("x-log-offset", v);
        }
        if logs.is_closed() {
            r.headers_mut()
                .insert("x-log-end", HeaderValue::from_static("true"));
        }
        r
    }
}

impl Api for LocalApi {
    fn call(
        &self,
        method: Method,
        path: String,
        query: String,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        Box::pin(self.clone().answer(method, path, query))
    }
}
