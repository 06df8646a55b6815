//! The `ferry` command: each subcommand is a thin wiring of the crates below.
//!
//! `up` runs the control plane and every data-plane part that exists in one process; `dns` runs
//! cluster DNS alone from a snapshot file; `check` validates manifests; `get` reads a running
//! instance's admin API; `echo` runs the demo app.

pub mod dns;
pub mod get;
pub mod up;
