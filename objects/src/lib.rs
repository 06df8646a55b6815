//! Kubernetes objects as ferry reads them, wherever they come from: the k8s-openapi types of
//! the kinds ferry uses ([`object`]), manifests parsed from YAML and JSON files ([`manifest`]),
//! validation with the API server's field paths and wording ([`validate`]), Ingress annotations
//! read into typed options ([`ingress_annotations`]), Istio's AuthorizationPolicy
//! ([`authorization_policy`], a custom resource), TLS Secrets' key pairs
//! ([`certificate`]), label selectors ([`selector`]), the store of objects by kind and
//! name ([`store`]), manifest files read and watched ([`files`]) and the [`source::Source`]
//! interface through which the control plane learns objects from any source.
//!
//! No I/O beyond reading and watching manifest files; no networking. The control plane
//! (`ferry-control`) and the local cluster (`ferry-orchestrator`) build on it; neither
//! depends on the other.

pub mod authorization_policy;
pub mod certificate;
pub mod files;
pub mod ingress_annotations;
pub mod manifest;
pub mod object;
pub mod selector;
pub mod source;
pub mod store;
pub mod validate;
