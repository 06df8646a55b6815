//! The authorization hook of the inbound side: whether a peer may reach a port, and on HTTP a
//! method and path. The control plane's policy evaluator (Istio's AuthorizationPolicy, fed by
//! `Destination.GetInboundPolicy`) plugs in here; the sidecar only asks and acts: a denied
//! HTTP request gets 403, a denied TCP connection is closed, and both are counted. The policy
//! also says, per connection, whether plaintext is taken ([`Authorize::mtls_mode`]); the
//! control plane's implementation is [`crate::policy::InboundPolicy`].

use ferry_model::mesh::WorkloadId;

use crate::inbound::MtlsMode;

/// Decides whether inbound traffic may reach the app.
pub trait Authorize: Send + Sync + std::fmt::Debug {
    /// `peer` is the client's verified identity (`None` for plaintext), `port` the app's port,
    /// `http` the request's method and path (`None` for a TCP connection, asked once).
    fn authorize(
        &self,
        peer: Option<&WorkloadId>,
        port: u16,
        http: Option<(&http::Method, &str)>,
    ) -> bool;

    /// Whether the inbound side takes plaintext, read per connection: `None` keeps the
    /// configured [`InboundConfig::mode`](crate::InboundConfig::mode). A policy that follows
    /// the control plane answers with the mode of its latest answer.
    fn mtls_mode(&self) -> Option<MtlsMode> {
        None
    }
}

/// No policy: everything is allowed (Istio's default when no AuthorizationPolicy applies).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl Authorize for AllowAll {
    fn authorize(&self, _: Option<&WorkloadId>, _: u16, _: Option<(&http::Method, &str)>) -> bool {
        true
    }
}
