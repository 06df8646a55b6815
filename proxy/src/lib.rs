//! Forwarding shared by the ingress gateway and the sidecar.
//!
//! - [`router`]: the index each accepted snapshot compiles into, which says which backend
//!   serves a request from its Host and path.
//! - [`balancer`]: which endpoint of a cluster takes an attempt (P2C over peak-EWMA latency,
//!   round-robin, consistent hashing), with state that survives snapshot reloads.
//! - [`health`]: passive health, ejecting endpoints that fail in a row, with back-off.
//! - [`budget`]: the retry budget that keeps retries from amplifying an outage.
//! - [`uri`]: the path normalized before routing (as nginx's `$uri`), and the Host checked.
//!
//! Upstream pools, timeouts and error mapping come here as the gateway grows. This crate reads
//! the model only: no sockets, no async runtime, no TLS, no clock (callers pass instants in).

pub mod balancer;
pub mod budget;
pub mod health;
pub mod router;
pub mod uri;

pub use balancer::{Balancer, BalancerConfig, Pick, Policy};
pub use budget::{BudgetConfig, RetryBudget};
pub use health::{HealthConfig, Outcome};
pub use router::{HostRoutes, Match, Router, Target};
