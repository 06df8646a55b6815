//! The mesh's sidecar injection: a mutating admission step on Pod creation, as Linkerd's proxy
//! injector and Istio's sidecar injector are webhooks on the API server. A Pod whose own
//! annotation `ferry.dev/inject` is `enabled`, or whose Namespace's is and its own is not
//! `disabled`, gets the `ferry-sidecar` init container with `restartPolicy: Always` (a native
//! sidecar: started, and Ready through its startupProbe, before the app containers, stopped
//! after them).
//!
//! The app containers' httpGet and tcpSocket probes are rewritten to go through the sidecar
//! ([`probes`], Istio's `rewriteAppHTTPProbers`), unless the Pod's `ferry.dev/rewrite-probes`
//! is `"false"`.
//!
//! The Pod is changed, never its template: the ReplicaSet controller's Pods are injected as
//! they are made, so turning the mesh on does not roll a Deployment. A Pod that already has the
//! container is left alone. Pure: the cluster calls [`inject`] and records what it says.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

mod probes;

use ferry_model::mesh::app_probe::{APP_PROBERS_ENV, REWRITE_PROBES_ANNOTATION};
use ferry_model::mesh::{ADMIN_PORT, INJECT_ANNOTATION, SIDECAR_CONTAINER};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, Pod, Probe,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// On an injected Pod: the version of ferry that injected it, for people to see.
pub const INJECTED_ANNOTATION: &str = "ferry.dev/injected";
/// Ports whose inbound TCP goes straight to the app (a comma list).
pub const SKIP_INBOUND_ANNOTATION: &str = "ferry.dev/skip-inbound-ports";
/// Ports whose outbound TCP leaves without the sidecar (a comma list).
pub const SKIP_OUTBOUND_ANNOTATION: &str = "ferry.dev/skip-outbound-ports";

/// What the injected sidecar runs, and how the kubelet proves to the control plane which Pod
/// it is.
#[derive(Clone)]
pub struct Mesh {
    /// The `ferry` binary.
    pub program: PathBuf,
    /// Its arguments, e.g. `["sidecar", "--control", URL, "--control-ca", FILE]`;
    /// `--token-file <path>` is added.
    pub args: Vec<String>,
    /// Where the kubelet writes each meshed Pod's token: `<run_dir>/<pod uid>/token`.
    pub run_dir: PathBuf,
    /// The control plane's per-Pod token for these claims.
    pub mint_token: Arc<dyn Fn(&PodClaims) -> String + Send + Sync>,
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("run_dir", &self.run_dir)
            .finish_non_exhaustive()
    }
}

impl Mesh {
    /// The token file of the Pod with this uid.
    pub fn token_file(&self, uid: &str) -> PathBuf {
        self.run_dir.join(uid).join("token")
    }
}

/// Who a Pod is, as its sidecar's token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodClaims {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    /// `default` when the Pod names none.
    pub service_account: String,
}

impl PodClaims {
    pub fn of(pod: &Pod) -> PodClaims {
        let spec = pod.spec.as_ref();
        PodClaims {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            pod: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            // As the ServiceAccount admission reads it: the deprecated field when the name
            // is not set (`serviceaccount::default_pod_spec`).
            service_account: [
                spec.and_then(|s| s.service_account_name.as_deref()),
                spec.and_then(|s| s.service_account.as_deref()),
            ]
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty())
            .unwrap_or("default")
            .to_owned(),
        }
    }
}

/// What [`inject`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Neither the Pod nor its Namespace asks for a sidecar (or the Pod opts out).
    NotAsked,
    /// The Pod has the sidecar already.
    AlreadyInjected,
    Injected,
    /// Asked for, but this cluster cannot mesh it; the Pod runs without (the reason, for an
    /// Event on the Pod).
    Ignored(String),
}

/// Whether the Pod asks for a sidecar: its own annotation, else its Namespace's.
pub fn wants_sidecar(pod: &Pod, namespace: Option<&BTreeMap<String, String>>) -> bool {
    let own = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INJECT_ANNOTATION));
    match own.map(String::as_str) {
        Some("enabled") => true,
        Some("disabled") => false,
        _ => namespace
            .and_then(|a| a.get(INJECT_ANNOTATION))
            .is_some_and(|v| v == "enabled"),
    }
}

/// Whether the Pod has the sidecar: the `ferry-sidecar` init container as a native sidecar
/// (`restartPolicy: Always`), the same test the control plane makes for its `meshed` flag. A
/// plain init container of that name is not a sidecar, and gets no interception.
pub fn is_meshed(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|i| {
            i.iter().any(|c| {
                c.name == SIDECAR_CONTAINER && c.restart_policy.as_deref() == Some("Always")
            })
        })
}

fn has_container_named_sidecar(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.init_containers
            .iter()
            .flatten()
            .chain(&s.containers)
            .any(|c| c.name == SIDECAR_CONTAINER)
    })
}

/// Whether the Pod's probes go through its sidecar: unless its `ferry.dev/rewrite-probes` is
/// `"false"`. The kubelet then exempts the probe ports from interception instead.
pub fn rewrites_probes(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REWRITE_PROBES_ANNOTATION))
        .is_none_or(|v| v != "false")
}

/// Adds the sidecar to a Pod that asks for one. `mesh` is the cluster's mesh, or why it has
/// none that can serve (no mesh configured, no netns pod network).
pub fn inject(
    pod: &mut Pod,
    namespace: Option<&BTreeMap<String, String>>,
    mesh: Result<&Mesh, &str>,
) -> Outcome {
    if has_container_named_sidecar(pod) {
        return Outcome::AlreadyInjected;
    }
    if !wants_sidecar(pod, namespace) {
        return Outcome::NotAsked;
    }
    // A Pod of the host's network has no namespace of its own to intercept in, and its
    // sidecar's ports would be the node's.
    if pod
        .spec
        .as_ref()
        .is_some_and(|s| s.host_network == Some(true))
    {
        return Outcome::Ignored(format!(
            "{INJECT_ANNOTATION} asks for a sidecar, but the Pod runs without one: it uses the host's network"
        ));
    }
    let mesh = match mesh {
        Ok(mesh) => mesh,
        Err(why) => {
            return Outcome::Ignored(format!(
                "{INJECT_ANNOTATION} asks for a sidecar, but the Pod runs without one: {why}"
            ));
        }
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut container = sidecar(mesh, &uid);
    let rewrite = rewrites_probes(pod);
    let spec = pod.spec.get_or_insert_with(Default::default);
    if rewrite {
        let probers = probes::rewrite(spec);
        if !probers.is_empty() {
            // A map of plain strings and numbers always encodes.
            let json = serde_json::to_string(&probers).unwrap_or_default();
            container.env.get_or_insert_with(Vec::new).push(EnvVar {
                name: APP_PROBERS_ENV.to_owned(),
                value: Some(json),
                ..EnvVar::default()
            });
        }
    }
    // First, so it is started (and Ready) before every other init container too.
    spec.init_containers
        .get_or_insert_with(Vec::new)
        .insert(0, container);
    pod.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(
            INJECTED_ANNOTATION.to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        );
    Outcome::Injected
}

/// The sidecar container: `ferry sidecar` with its token file, the Pod's name, namespace and
/// address from the downward API, and a startupProbe on the admin port's `/ready`, which answers once
/// the sidecar holds its certificate, so the app containers start only then.
fn sidecar(mesh: &Mesh, uid: &str) -> Container {
    let mut command = vec![mesh.program.display().to_string()];
    command.extend(mesh.args.iter().cloned());
    command.push("--token-file".to_owned());
    command.push(mesh.token_file(uid).display().to_string());
    let ready = |period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/ready".to_owned()),
            port: IntOrString::Int(i32::from(ADMIN_PORT)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let field = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_owned()),
                field_path: path.to_owned(),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    Container {
        name: SIDECAR_CONTAINER.to_owned(),
        image: Some(format!("ferry/sidecar:{}", env!("CARGO_PKG_VERSION"))),
        command: Some(command),
        restart_policy: Some("Always".to_owned()),
        env: Some(vec![
            field("FERRY_POD_NAMESPACE", "metadata.namespace"),
            field("FERRY_POD_NAME", "metadata.name"),
            // Where the app's rewritten probes connect unless they name a host, as the
            // kubelet's do.
            field("FERRY_POD_IP", "status.podIP"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("ferry-admin".to_owned()),
            container_port: i32::from(ADMIN_PORT),
            ..ContainerPort::default()
        }]),
        // Up to two minutes to get a certificate, checked every second.
        startup_probe: Some(ready(1, 120)),
        readiness_probe: Some(ready(5, 3)),
        ..Container::default()
    }
}

#[cfg(test)]
mod tests;
