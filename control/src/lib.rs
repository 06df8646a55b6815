//! ferry's control plane: reads Kubernetes objects, reconciles them and publishes Snapshots.
//!
//! The flow of one change: a source (manifest files today, the API server later) delivers
//! objects as [`store::Event`]s into the [`store::Store`]; [`validate`] checks each object as the
//! API server would; the [`endpoints`] controller works out what stands behind each Service;
//! [`translate::translate`] turns the store into a [`ferry_model::Snapshot`], which is validated,
//! numbered and published on the [`ferry_runtime::SnapshotBus`]. A change with any error is
//! rejected whole and the last good snapshot keeps serving.
//!
//! An Ingress is ferry's when its class (`spec.ingressClassName`, or the older
//! `kubernetes.io/ingress.class` annotation) names an IngressClass whose controller is
//! `ferry.dev/ingress`; or when it names no class and ferry's class is the default; or when
//! it names no class and no IngressClass exists at all.

pub mod certificate;
pub mod endpoints;
pub mod manifest;
pub mod object;
pub mod selector;
pub mod store;
pub mod translate;
pub mod validate;
