//! Forwarding shared by the ingress gateway and the sidecar.
//!
//! Today this is the [`router`]: the index each accepted snapshot compiles into, which says
//! which backend serves a request from its Host and path. Balancing, health, upstream pools,
//! retries and error mapping come here as the gateway grows. This crate reads the model only:
//! no sockets, no async runtime, no TLS.

pub mod router;

pub use router::{HostRoutes, Match, Router, Target};
