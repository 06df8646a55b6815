//! The local runtime: a small orchestrator core that runs a cluster's workloads on one machine.
//!
//! It plays the parts of Kubernetes that `ferry up` has no cluster for: the API server's
//! allocators (cluster IPs, node ports, pod IPs on loopback), the Deployment and ReplicaSet
//! controllers (pure reconcilers: observe, diff, act) and the kubelet, which runs each Pod's
//! containers as host processes, probes them and reports their status.

pub mod api;
pub mod cluster;
pub mod deployment;
pub mod ipam;
pub mod kubelet;
pub mod replicaset;
pub mod service_env;

pub use api::LocalApi;
pub use cluster::{ApiError, Cluster};

/// Everything the local runtime takes.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub cluster: cluster::Config,
    pub kubelet: kubelet::Config,
}
