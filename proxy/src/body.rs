//! The body type every forwarded message has: streamed from the peer, or made here. Nothing
//! else: what reads or bounds a body is in [`crate::read_timeout`] and [`crate::send_timeout`].

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Request and response bodies: streamed from the peer, or made here.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A body of fixed text.
pub fn full(text: &'static str) -> ProxyBody {
    Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}
