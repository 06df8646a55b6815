//! The Kubernetes objects ferry reads, as exact `k8s-openapi` types, with where each came from.
//!
//! Kubernetes types live in this crate and nowhere else; the data plane sees only the Snapshot.

use std::fmt;
use std::sync::Arc;

use ferry_model::{ObjectRef, Problem, Severity};
use k8s_openapi::Metadata;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::authorization_policy::AuthorizationPolicy;

/// The namespace of namespaced objects that name none, as `kubectl apply` assumes.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The kinds ferry understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Service,
    Endpoints,
    EndpointSlice,
    Pod,
    ReplicaSet,
    Deployment,
    IngressClass,
    Ingress,
    Secret,
    ServiceAccount,
    AuthorizationPolicy,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Namespace,
        Kind::Service,
        Kind::Endpoints,
        Kind::EndpointSlice,
        Kind::Pod,
        Kind::ReplicaSet,
        Kind::Deployment,
        Kind::IngressClass,
        Kind::Ingress,
        Kind::Secret,
        Kind::ServiceAccount,
        Kind::AuthorizationPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Pod => "Pod",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Deployment => "Deployment",
            Kind::IngressClass => "IngressClass",
            Kind::Ingress => "Ingress",
            Kind::Secret => "Secret",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
        }
    }

    /// The one apiVersion ferry serves for this kind, as the API server serves it today.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace
            | Kind::Service
            | Kind::Endpoints
            | Kind::Pod
            | Kind::Secret
            | Kind::ServiceAccount => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::ReplicaSet | Kind::Deployment => "apps/v1",
            Kind::IngressClass | Kind::Ingress => "networking.k8s.io/v1",
            Kind::AuthorizationPolicy => crate::authorization_policy::API_VERSIONS[0],
        }
    }

    /// Every apiVersion read for this kind: [`Kind::api_version`], and for
    /// AuthorizationPolicy also `security.istio.io/v1beta1` (the same schema).
    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Kind::AuthorizationPolicy => &crate::authorization_policy::API_VERSIONS,
            Kind::Namespace
            | Kind::Service
            | Kind::Endpoints
            | Kind::Pod
            | Kind::Secret
            | Kind::ServiceAccount => &["v1"],
            Kind::EndpointSlice => &["discovery.k8s.io/v1"],
            Kind::ReplicaSet | Kind::Deployment => &["apps/v1"],
            Kind::IngressClass | Kind::Ingress => &["networking.k8s.io/v1"],
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::IngressClass)
    }

    pub fn from_name(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object of a known kind. Boxed: the k8s-openapi types differ widely in size (a Pod is
/// 2.4 KB before any data, a Namespace a tenth of that), and a store holds many.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Namespace(Box<Namespace>),
    Service(Box<Service>),
    Endpoints(Box<Endpoints>),
    EndpointSlice(Box<EndpointSlice>),
    Pod(Box<Pod>),
    ReplicaSet(Box<ReplicaSet>),
    Deployment(Box<Deployment>),
    IngressClass(Box<IngressClass>),
    Ingress(Box<Ingress>),
    Secret(Box<Secret>),
    ServiceAccount(Box<ServiceAccount>),
    AuthorizationPolicy(Box<AuthorizationPolicy>),
}

macro_rules! each_object {
    ($obj:expr, $o:ident => $e:expr) => {
        match $obj {
            Object::Namespace($o) => $e,
            Object::Service($o) => $e,
            Object::Endpoints($o) => $e,
            Object::EndpointSlice($o) => $e,
            Object::Pod($o) => $e,
            Object::ReplicaSet($o) => $e,
            Object::Deployment($o) => $e,
            Object::IngressClass($o) => $e,
            Object::Ingress($o) => $e,
            Object::Secret($o) => $e,
            Object::ServiceAccount($o) => $e,
            Object::AuthorizationPolicy($o) => $e,
        }
    };
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::Service(_) => Kind::Service,
            Object::Endpoints(_) => Kind::Endpoints,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Pod(_) => Kind::Pod,
            Object::ReplicaSet(_) => Kind::ReplicaSet,
            Object::Deployment(_) => Kind::Deployment,
            Object::IngressClass(_) => Kind::IngressClass,
            Object::Ingress(_) => Kind::Ingress,
            Object::Secret(_) => Kind::Secret,
            Object::ServiceAccount(_) => Kind::ServiceAccount,
            Object::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        each_object!(self, o => o.metadata())
    }

    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each_object!(self, o => o.metadata_mut())
    }

    /// The object's size as compact JSON (what kubectl sends the API server), counted without
    /// building the text.
    pub fn encoded_len(&self) -> usize {
        #[derive(Default)]
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 = self.0.saturating_add(buf.len());
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count::default();
        // Writing to a counter cannot fail, and these types always serialize.
        let _ = each_object!(self, o => serde_json::to_writer(&mut count, o));
        count.0
    }
}

/// Identifies an object in the store: kind, namespace (empty when cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

impl ObjectKey {
    pub fn to_ref(&self) -> ObjectRef {
        ObjectRef::new(
            self.kind.as_str(),
            (!self.namespace.is_empty()).then_some(self.namespace.as_str()),
            self.name.clone(),
        )
    }
}

/// Where a document came from: the file as named, and its 1-based number in a stream of
/// several documents.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub file: Arc<str>,
    pub doc: Option<usize>,
}

impl Origin {
    pub fn problem(
        &self,
        severity: Severity,
        object: Option<ObjectRef>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Problem {
        Problem {
            severity,
            file: self.file.to_string(),
            doc: self.doc,
            object,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An object and where it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub origin: Origin,
    pub object: Object,
}

impl Manifest {
    pub fn key(&self) -> ObjectKey {
        let meta = self.object.metadata();
        ObjectKey {
            kind: self.object.kind(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }

    pub fn object_ref(&self) -> ObjectRef {
        self.key().to_ref()
    }

    pub fn namespace(&self) -> &str {
        self.object
            .metadata()
            .namespace
            .as_deref()
            .unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.object.metadata().name.as_deref().unwrap_or_default()
    }

    pub fn error(&self, field: impl Into<String>, message: impl Into<String>) -> Problem {
        self.origin
            .problem(Severity::Error, Some(self.object_ref()), field, message)
    }

    pub fn warning(&self, field: impl Into<String>, message: impl Into<String>) -> Problem {
        self.origin
            .problem(Severity::Warning, Some(self.object_ref()), field, message)
    }
}

/// The Pod's Ready condition is True: what the endpoints controller and the Deployment
/// controller read a Pod's readiness by.
pub fn pod_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
