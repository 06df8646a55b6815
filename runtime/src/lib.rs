//! What every long-running ferry part needs: the snapshot bus and readiness, the status board,
//! the admin server, accept loops (TCP, and HTTP) with graceful drain, bounds on accepted connections,
//! the descriptor limit, shutdown, tracing setup, and TLS (one crypto provider, PEM → key pair,
//! the client that accepts any server certificate).
//!
//! Metrics are never global: each part registers its own into a
//! [`prometheus_client::registry::Registry`] handed to it, and the admin server encodes that.

pub mod accept;
pub mod admin;
pub mod bus;
pub mod connections;
pub mod descriptors;
pub mod identity;
pub mod random;
pub mod serve;
pub mod shutdown;
pub mod status;
pub mod subscribe;
pub mod telemetry;
pub mod tls;

pub use bus::{SnapshotBus, Subscription};
pub use connections::{Connections, Limits};
pub use shutdown::{Shutdown, ShutdownTrigger};
pub use status::StatusBoard;

/// Errors of the runtime parts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Telemetry(String),
    #[error("--snapshot {path}: {message}")]
    Snapshot {
        path: std::path::PathBuf,
        message: String,
    },
}
