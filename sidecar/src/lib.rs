//! The sidecar: the process in every meshed Pod that carries its traffic.
//!
//! - [`tls`]: mutual TLS between sidecars with SPIFFE workload identities.
#![allow(clippy::module_name_repetitions)]

pub mod tls;

#[cfg(test)]
mod test_pki;
