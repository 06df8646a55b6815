//! The sidecar: the process in every meshed Pod that carries its traffic.
//!
//! - [`detect`]: what a connection speaks, from its first bytes, without a stall.
//! - [`tls`]: mutual TLS between sidecars with SPIFFE workload identities.
#![allow(clippy::module_name_repetitions)]

pub mod detect;
pub mod tls;

#[cfg(test)]
mod test_pki;
