//! The `ferry` command: each subcommand is a thin wiring of the crates below.
//!
//! `up` runs the control plane and every data-plane part that exists in one process; `dns` and
//! `gateway` run one part alone from a snapshot file; `check` validates manifests; `get`, `logs`, `exec`, `scale` and
//! `rollout` read and act through a running instance's admin API; `echo` runs the demo app.

pub mod alone;
pub mod dns;
pub mod echo;
pub mod gateway;
pub mod get;
pub mod up;
pub mod workloads;
