//! ferry's pure data model, shared by every part.
//!
//! Plain data only: names and their validation rules, problems found in user input, and the
//! [`Snapshot`] the control plane publishes to the data plane. No I/O, no async runtime, no
//! TLS, DNS or Kubernetes types: `cargo tree -p ferry-model` must stay small.

pub mod cidr;
pub mod mesh;
pub mod name;
pub mod policy;
pub mod problem;
pub mod proto;
pub mod snapshot;
pub mod workload;

pub use cidr::{Cidr, CidrError};
pub use problem::{ObjectRef, Problem, Severity};
pub use snapshot::{
    Backend, BackendPort, BackendProtocol, Canary, Certificate, Cluster, ClusterKey,
    CookieAffinity, Endpoint, HostMatch, IngressOptions, IngressRef, PathType, Protocol, Route,
    Service, ServiceEndpoint, ServicePort, ServiceType, SessionAffinity, Snapshot, SnapshotError,
    TargetPort, TargetRef, VirtualHost,
};
pub use workload::{Mesh, MtlsMode, Workload};
