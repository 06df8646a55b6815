//! The `ferry` command: each subcommand is a thin wiring of the crates below.
//!
//! `up` runs the control plane and every data-plane part that exists in one process; `control`
//! runs the control plane alone and pushes to `dns` and `gateway`, which run one part alone from
//! a snapshot file or subscribed to `control`; `sidecar` runs a meshed Pod's sidecar; `check`
//! validates manifests; `kubeconfig` prints the local cluster's admin kubeconfig; `get`
//! (and `get mesh`, the sidecars' golden signals),
//! `logs`, `exec`, `scale` and `rollout` read and act through a running instance's admin API;
//! `echo` runs the demo app.

pub mod alone;
pub mod control;
pub mod dns;
pub mod echo;
pub mod gateway;
pub mod get;
pub mod identity;
pub mod mesh_top;
pub mod proxies;
pub mod sidecar;
pub mod up;
pub mod workloads;
