//! Kubernetes objects as ferry reads them, wherever they come from: the k8s-openapi types of
//! the kinds ferry uses ([`object`]), manifests parsed from YAML and JSON files ([`manifest`]),
//! validation with the API server's field paths and wording ([`validate`]), Ingress annotations
//! read into typed options ([`ingress_annotations`]), TLS Secrets' key pairs
//! ([`certificate`]), label selectors ([`selector`]) and the store of objects by kind and
//! name with its watch events ([`store`]).
//!
//! No I/O beyond reading manifest files; no networking, no runtime. The control plane
//! (`ferry-control`) and the local cluster build on it.

pub mod certificate;
pub mod ingress_annotations;
pub mod manifest;
pub mod object;
pub mod selector;
pub mod store;
pub mod validate;
