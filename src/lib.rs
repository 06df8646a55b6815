//! The `ferry` command: each subcommand is a thin wiring of the crates below.
//!
//! `up` runs the control plane and every data-plane part that exists in one process; `check`
//! validates manifests; `get` reads a running instance's admin API; `echo` runs the demo app.

pub mod get;
pub mod up;
