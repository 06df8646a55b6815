//! Forwarding shared by the ingress gateway and (later) the sidecar: everything between a
//! request that has been accepted and routed, and the answer handed back. It reads the model
//! and uses the runtime (randomness, shutdown, TLS verifiers); it knows nothing of listeners,
//! TLS termination or Ingress annotations, which are the gateway's.
//!
//! Choosing:
//! - [`router`]: the index each accepted snapshot compiles into, which says which backend
//!   serves a request from its Host and path.
//! - [`uri`]: the path normalized before routing (as nginx's `$uri`), and the Host checked.
//! - [`balancer`]: which endpoint of a cluster takes an attempt (P2C over peak-EWMA latency,
//!   round-robin, consistent hashing), with state that survives snapshot reloads.
//! - [`health`]: passive health, ejecting endpoints that fail in a row, with back-off.
//! - [`budget`]: the retry budget that keeps retries from amplifying an outage.
//!
//! Forwarding:
//! - [`forwarding`]: hop-by-hop headers out, X-Forwarded-*, X-Request-Id and `Via` in.
//! - [`h1`]: our own HTTP/1 codec over httparse for the fast path (heads parsed in place,
//!   the smuggling rules, bodies delimited without re-chunking, the edited head written).
//! - [`upstream`]: the protocols, the shared pools, one attempt under its timeouts and how it
//!   ended, and whether another endpoint may be tried.
//! - [`connect`]: opening upstream connections within the connect timeout, and the upstream
//!   connection a client connection keeps for itself ([`connect::Owned`]); [`pair`] polls a
//!   client connection and that connection in one task.
//! - [`send_timeout`], [`read_timeout`]: giving up on a request body or an answer that stalls.
//! - [`response`]: the answer on its way back; [`upgrade`]: WebSocket tunnels.
//! - [`h2_limits`]: what an HTTP/2 stream and connection may hold, both ways.
//! - [`failure`]: the one failure type and the status each failure gets; [`body`]: the body
//!   type of forwarded messages.
//!
//! The choosing half is pure (no sockets, no clock: callers pass instants in); the forwarding
//! half runs on tokio and hyper.

pub mod balancer;
pub mod body;
pub mod budget;
pub mod connect;
pub mod failure;
pub mod forwarding;
pub mod h1;
pub mod h2_limits;
pub mod health;
pub mod pair;
pub mod read_timeout;
pub mod response;
pub mod router;
pub mod send_timeout;
pub mod upgrade;
pub mod upstream;
pub mod uri;

pub use balancer::{Balancer, BalancerConfig, Pick, Policy};
pub use body::ProxyBody;
pub use budget::{BudgetConfig, RetryBudget};
pub use failure::Failure;
pub use health::{AttemptOutcome, HealthConfig};
pub use router::{HostRoutes, Match, Router, Target};
pub use upstream::{Protocol, Timeouts};
