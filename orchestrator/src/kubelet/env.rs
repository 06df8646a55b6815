//! A container's environment, built as the kubelet builds it: the pod's own variables, the
//! services' variables, then the container's `env` in order, each value able to refer to the
//! ones before it with `$(VAR)`; and the `$(VAR)` expansion itself, which commands and args use
//! too. Pure functions over the Pod; nothing here touches the host.

use std::collections::HashMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{EnvVar, ObjectFieldSelector, Pod};

/// An ordered set of environment variables: setting a name again replaces its value in place,
/// so the order is that of first definition (what a process sees does not depend on it, but
/// tests and `ps e` read better).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Env {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Env {
    pub(crate) fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.index.get(&name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.vars[i].1.as_str())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `$(VAR)` expansion against this environment.
    pub(crate) fn expand(&self, input: &str) -> String {
        expand(input, |name| self.get(name))
    }
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes the variable's value, `$$` becomes `$` (so
/// `$$(NAME)` stays literally `$(NAME)`), and a reference to an unknown variable, an unclosed
/// `$(` or a `$` before anything else is left as written.
pub(crate) fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let mut chars = after.chars();
        match chars.next() {
            // A `$` at the very end stays.
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(other) => {
                out.push('$');
                out.push(other);
                rest = chars.as_str();
            }
        }
    }
    out.push_str(rest);
    out
}

/// What a container's environment is built from besides the Pod itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EnvSource<'a> {
    pub(crate) pod: &'a Pod,
    pub(crate) pod_ip: IpAddr,
    pub(crate) host_ip: IpAddr,
    pub(crate) node_name: &'a str,
    /// The Kubernetes service variables (`FOO_SERVICE_HOST` …).
    pub(crate) service_env: &'a [(String, String)],
    /// What is passed on from ferry's own environment (`PATH`, `HOME`) so commands resolve.
    pub(crate) host_env: &'a [(String, String)],
}

/// The environment of one container, lowest priority first: the host's `PATH` and `HOME`,
/// `HOSTNAME`, `POD_IP`, `POD_NAME`, `POD_NAMESPACE`, the service variables, then the
/// container's `env` in order. Errors name the variable that cannot be set (the container then
/// waits with `CreateContainerConfigError`, as in Kubernetes).
pub(crate) fn container_env(source: &EnvSource<'_>, vars: &[EnvVar]) -> Result<Env, String> {
    let mut env = Env::default();
    for (name, value) in source.host_env {
        env.set(name, value);
    }
    let name = source.pod.metadata.name.clone().unwrap_or_default();
    env.set("HOSTNAME", name.clone());
    env.set("POD_IP", source.pod_ip.to_string());
    env.set("POD_NAME", name);
    env.set("POD_NAMESPACE", namespace(source.pod));
    for (name, value) in source.service_env {
        env.set(name, value);
    }
    for var in vars {
        let value = match &var.value_from {
            None => env.expand(var.value.as_deref().unwrap_or("")),
            Some(from) => {
                if let Some(field) = &from.field_ref {
                    field_ref(source, field).map_err(|e| format!("env {:?}: {e}", var.name))?
                } else {
                    let kind = if from.secret_key_ref.is_some() {
                        "secretKeyRef"
                    } else if from.config_map_key_ref.is_some() {
                        "configMapKeyRef"
                    } else if from.resource_field_ref.is_some() {
                        "resourceFieldRef"
                    } else if from.file_key_ref.is_some() {
                        "fileKeyRef"
                    } else {
                        "an empty valueFrom"
                    };
                    return Err(format!(
                        "env {:?}: ferry's local runtime does not support {kind}",
                        var.name
                    ));
                }
            }
        };
        env.set(var.name.clone(), value);
    }
    Ok(env)
}

fn namespace(pod: &Pod) -> String {
    pod.metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned())
}

/// The downward API's `fieldRef` for environment variables.
fn field_ref(source: &EnvSource<'_>, field: &ObjectFieldSelector) -> Result<String, String> {
    let meta = &source.pod.metadata;
    let path = field.field_path.trim();
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => namespace(source.pod),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => source.node_name.to_owned(),
        "spec.serviceAccountName" => source
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_owned()),
        "status.podIP" | "status.podIPs" => source.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => source.host_ip.to_string(),
        _ => {
            if let Some(key) = subscript(path, "metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(key).cloned())
                    .unwrap_or_default()
            } else if let Some(key) = subscript(path, "metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(key).cloned())
                    .unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldRef fieldPath {path:?}"));
            }
        }
    };
    Ok(value)
}

/// `metadata.labels['key']` → `key`.
fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let inner = path
        .strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    inner
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
}

#[cfg(test)]
mod tests;
