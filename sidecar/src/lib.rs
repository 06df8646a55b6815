//! The sidecar: the process in every meshed Pod that carries its traffic.
//!
//! - [`tls`]: mutual TLS between sidecars with SPIFFE workload identities, rebuilt when the
//!   credentials are renewed or the trust bundle rotates.
//! - [`detect`]: what a connection speaks, from its first bytes, without a stall.
//! - [`inbound`]: mTLS (or plaintext, when permissive) in, authorized ([`authorize`]), to the
//!   app from the client's address with `x-forwarded-client-cert`.
//! - [`outbound`]: the app's connections to Services, balanced per request (HTTP) or per
//!   connection (other TCP) over the endpoints [`discover`] learns from the control plane, mTLS
//!   to meshed endpoints.
//! - [`policy`]: the inbound policy from the control plane (authorization, mTLS mode),
//!   swapped whole on each answer.
//! - [`upstream`]: the sockets the sidecar opens (marked), plain or mTLS to an expected
//!   identity; [`socket`]: `SO_ORIGINAL_DST`, `SO_MARK` and connections from the client's
//!   address; [`listen`]: the listener both sides are.
//! - [`part`]: the whole sidecar ([`Sidecar`]): both sides and the admin server, ready once it
//!   holds credentials.
//! - [`probe`]: the app's probes, run for the kubelet at `/app-health/` on the admin port.
//! - [`metrics`]: the golden signals, `ferry_sidecar_*`.
//! - `fast`: HTTP/1.1 on the codec the gateway forwards with (`ferry_proxy::h1`), for both
//!   sides; hyper serves HTTP/2 and what it hands over.

pub mod authorize;
pub mod detect;
pub mod discover;
mod fast;
pub mod inbound;
pub mod listen;
pub mod metrics;
pub mod outbound;
pub mod part;
pub mod policy;
pub mod probe;
pub mod socket;
pub mod tls;
pub mod upstream;

#[cfg(test)]
mod test_pki;
#[cfg(test)]
mod tests;

pub use authorize::{AllowAll, Authorize};
pub use inbound::{Inbound, InboundConfig, MtlsMode};
pub use metrics::Metrics;
pub use outbound::{Outbound, OutboundConfig};
pub use part::{Addrs, Config, Parts, Sidecar};
pub use policy::InboundPolicy;
pub use probe::AppHealthConfig;
pub use tls::MeshTls;

/// The sidecar's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Runtime(#[from] ferry_runtime::Error),
    #[error("cannot build the HTTP clients: {0}")]
    Client(String),
}
