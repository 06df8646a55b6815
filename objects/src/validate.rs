//! Validation as the API server does it, for every field ferry uses.
//!
//! Each problem names its field in the API server's path style and uses its wording
//! (`Required value`, `Invalid value: "x": …`, `Unsupported value: …`, `Duplicate value: …`,
//! `Forbidden: …`). One deliberate difference: loopback addresses are accepted in
//! EndpointSlices, Endpoints and Pod IPs, since on one machine they are how apps are reached.
//! Ingress annotations, which the API server does not check, are read and checked in
//! [`crate::ingress_annotations`] in the same style, with the annotation as the field:
//! `metadata.annotations[nginx.ingress.kubernetes.io/proxy-body-size]`.

mod endpoints;
pub use endpoints::SERVICE_NAME_LABEL;
pub use secret::{TLS_CERT_KEY, TLS_PRIVATE_KEY, TLS_TYPE};
mod authorization;
mod ingress;
mod secret;
mod service;
mod workload;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::net::IpAddr;

use ferry_model::{Problem, name};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::ingress_annotations::Annotations;
use crate::object::{Kind, Manifest, Object, ObjectKey};

/// Collects the problems of one object.
pub(crate) struct Check<'a> {
    manifest: &'a Manifest,
    pub(crate) problems: Vec<Problem>,
}

impl<'a> Check<'a> {
    fn new(manifest: &'a Manifest) -> Self {
        Self {
            manifest,
            problems: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(self.manifest.error(field, message));
    }

    pub(crate) fn warning(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(self.manifest.warning(field, message));
    }

    pub(crate) fn required(&mut self, field: &str) {
        self.error(field, "Required value");
    }

    pub(crate) fn invalid(&mut self, field: &str, value: &dyn Debug, detail: &str) {
        self.error(field, format!("Invalid value: {value:?}: {detail}"));
    }

    pub(crate) fn forbidden(&mut self, field: &str, detail: &str) {
        self.error(field, format!("Forbidden: {detail}"));
    }

    pub(crate) fn duplicate(&mut self, field: &str, value: &dyn Debug) {
        self.error(field, format!("Duplicate value: {value:?}"));
    }

    pub(crate) fn unsupported(&mut self, field: &str, value: &str, supported: &[&str]) {
        if !supported.contains(&value) {
            let list = supported
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>();
            self.error(
                field,
                format!(
                    "Unsupported value: {value:?}: supported values: {}",
                    list.join(", ")
                ),
            );
        }
    }

    /// Checks `value` against a name rule from [`ferry_model::name`].
    pub(crate) fn name(&mut self, field: &str, value: &str, rule: fn(&str) -> Result<(), String>) {
        if let Err(detail) = rule(value) {
            self.invalid(field, &value, &detail);
        }
    }

    /// A port name in a list of `count` ports: required when there are several, a DNS label,
    /// unique (`names` holds those seen so far).
    pub(crate) fn port_name<'n>(
        &mut self,
        field: &str,
        value: Option<&'n str>,
        count: usize,
        names: &mut BTreeSet<&'n str>,
    ) {
        match value {
            None | Some("") if count > 1 => self.required(field),
            None | Some("") => {}
            Some(n) => {
                self.name(field, n, name::dns1123_label);
                if !names.insert(n) {
                    self.duplicate(field, &n);
                }
            }
        }
    }

    pub(crate) fn port(&mut self, field: &str, port: i32) {
        if !(1..=65535).contains(&port) {
            self.invalid(field, &port, "must be between 1 and 65535, inclusive");
        }
    }

    /// An IP address as the API server takes it, except that loopback is allowed.
    pub(crate) fn endpoint_ip(&mut self, field: &str, ip: &str) -> Option<IpAddr> {
        let Ok(addr) = ip.parse::<IpAddr>() else {
            self.invalid(field, &ip, "must be a valid IP address");
            return None;
        };
        let detail = match addr {
            _ if addr.is_unspecified() => Some("may not be unspecified (0.0.0.0, ::)"),
            _ if addr.is_multicast() => Some("may not be in the multicast range"),
            IpAddr::V4(v4) if v4.is_link_local() => {
                Some("may not be in the link-local range (169.254.0.0/16)")
            }
            IpAddr::V6(v6) if v6.is_unicast_link_local() => {
                Some("may not be in the link-local range (fe80::/10)")
            }
            _ => None,
        };
        match detail {
            Some(d) => {
                self.invalid(field, &ip, d);
                None
            }
            None => Some(addr),
        }
    }

    pub(crate) fn protocol(&mut self, field: &str, protocol: Option<&str>) {
        if let Some(p) = protocol {
            self.unsupported(field, p, &["TCP", "UDP", "SCTP"]);
        }
    }

    pub(crate) fn labels(&mut self, field: &str, labels: Option<&BTreeMap<String, String>>) {
        for (k, v) in labels.into_iter().flatten() {
            self.name(field, k, name::qualified_name);
            if let Err(d) = name::label_value(v) {
                self.invalid(&format!("{field}[{k}]"), v, &d);
            }
        }
    }

    fn metadata(&mut self, kind: Kind, meta: &ObjectMeta) {
        match meta.name.as_deref() {
            None | Some("") => self.required("metadata.name"),
            Some(n) => {
                let rule = match kind {
                    Kind::Namespace => name::dns1123_label,
                    Kind::Service => name::dns1035_label,
                    _ => name::dns1123_subdomain,
                };
                self.name("metadata.name", n, rule);
            }
        }
        if let Some(ns) = meta.namespace.as_deref() {
            self.name("metadata.namespace", ns, name::dns1123_label);
        }
        self.labels("metadata.labels", meta.labels.as_ref());
        self.annotations(meta.annotations.as_ref());
    }

    /// As the API server's `ValidateAnnotations`: each key a qualified name regardless of case,
    /// and keys and values together at most [`MAX_ANNOTATIONS_BYTES`].
    fn annotations(&mut self, annotations: Option<&BTreeMap<String, String>>) {
        const FIELD: &str = "metadata.annotations";
        let mut total = 0usize;
        for (k, v) in annotations.into_iter().flatten() {
            if let Err(detail) = name::qualified_name(&k.to_ascii_lowercase()) {
                self.invalid(FIELD, k, &detail);
            }
            total = total.saturating_add(k.len()).saturating_add(v.len());
        }
        if total > MAX_ANNOTATIONS_BYTES {
            self.too_long(FIELD, MAX_ANNOTATIONS_BYTES);
        }
    }

    /// `ferry.dev/mtls-mode` on a Namespace, a Pod or a Pod template: a value that is neither
    /// `strict` nor `permissive` is read as permissive (the default), and said so.
    fn mtls_mode(&mut self, object: &Object) {
        let (at, meta) = match object {
            Object::Namespace(_) | Object::Pod(_) => ("metadata", Some(object.metadata())),
            Object::Deployment(d) => (
                "spec.template.metadata",
                d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()),
            ),
            Object::ReplicaSet(rs) => (
                "spec.template.metadata",
                rs.spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .and_then(|t| t.metadata.as_ref()),
            ),
            _ => return,
        };
        let key = ferry_model::mesh::MTLS_MODE_ANNOTATION;
        let value = meta
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(key));
        if let Some(v) = value
            && ferry_model::MtlsMode::parse(v).is_none()
        {
            self.warning(
                &format!("{at}.annotations[{key}]"),
                format!(
                    "Unsupported value: {v:?}: supported values: \"strict\", \"permissive\"; read as \"permissive\""
                ),
            );
        }
    }

    /// The API server's `TooLong` error.
    pub(crate) fn too_long(&mut self, field: &str, max: usize) {
        let unit = if max == 1 { "byte" } else { "bytes" };
        self.error(
            field,
            format!("Too long: may not be more than {max} {unit}"),
        );
    }
}

/// The API server's limit on an object's annotations, keys and values together
/// (`TotalAnnotationSizeLimitB`).
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
/// The API server's limit on a request's body (`MaxRequestBodyBytes`), so on an object as it
/// is sent: larger ones are refused before anything else is looked at.
pub const MAX_OBJECT_BYTES: usize = 3 * 1024 * 1024;

/// The problems of one object on its own.
pub fn object(manifest: &Manifest) -> Vec<Problem> {
    let mut c = Check::new(manifest);
    let size = manifest.object.encoded_len();
    if size > MAX_OBJECT_BYTES {
        // The API server answers 413 and validates nothing.
        c.error(
            "",
            format!(
                "Request entity too large: limit is {MAX_OBJECT_BYTES} (the object is {size} bytes as JSON)"
            ),
        );
        return c.problems;
    }
    c.metadata(manifest.object.kind(), manifest.object.metadata());
    c.mtls_mode(&manifest.object);
    match &manifest.object {
        Object::Namespace(_) | Object::ServiceAccount(_) => {}
        Object::Service(s) => service::service(&mut c, s),
        Object::Endpoints(e) => endpoints::endpoints(&mut c, e),
        Object::EndpointSlice(s) => endpoints::slice(&mut c, s),
        Object::Pod(p) => workload::pod(&mut c, p),
        Object::ReplicaSet(rs) => workload::replica_set(&mut c, rs),
        Object::Deployment(d) => workload::deployment(&mut c, d),
        Object::IngressClass(ic) => ingress::class(&mut c, ic),
        Object::Ingress(i) => ingress::ingress(&mut c, i),
        Object::Secret(s) => secret::secret(&mut c, s),
        Object::AuthorizationPolicy(p) => authorization::authorization_policy(&mut c, p),
    }
    c.problems
}

/// The typed annotations of an Ingress. Their problems are [`object`]'s to report: a change
/// with an invalid value never reaches translate.
pub fn ingress_annotations(
    manifest: &Manifest,
    ing: &k8s_openapi::api::networking::v1::Ingress,
) -> Annotations {
    crate::ingress_annotations::read(&mut Check::new(manifest), ing)
}

/// Problems between objects: the same object defined twice.
pub fn across(manifests: &[Manifest]) -> Vec<Problem> {
    duplicates(manifests.iter())
}

/// [`across`] for shared manifests.
pub fn across_arcs(manifests: &[std::sync::Arc<Manifest>]) -> Vec<Problem> {
    duplicates(manifests.iter().map(|m| &**m))
}

fn duplicates<'a>(manifests: impl Iterator<Item = &'a Manifest>) -> Vec<Problem> {
    let mut seen: BTreeMap<ObjectKey, &Manifest> = BTreeMap::new();
    let mut problems = Vec::new();
    for m in manifests {
        match seen.entry(m.key()) {
            Entry::Vacant(v) => {
                v.insert(m);
            }
            Entry::Occupied(first) => {
                let o = &first.get().origin;
                let at = match o.doc {
                    Some(d) => format!("{}:{d}", o.file),
                    None => o.file.to_string(),
                };
                problems.push(m.error(
                    "metadata.name",
                    format!("Duplicate value: {:?}: already defined in {at}", m.name()),
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests;
