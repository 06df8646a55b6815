//! The answer on its way back: hop-by-hop headers out, the body under the read timeout
//! ([`crate::read_timeout`]), and a small answer's head sent with its first body frame.

use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http::header;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};

use crate::body::{BoxError, ProxyBody};
use crate::failure::Failure;
use crate::forwarding::remove_hop_by_hop;
use crate::read_timeout::{ReadIdle, ReadTimedOut};

/// Responses with a declared length up to this wait for their first body frame before the head
/// is sent, so head and body leave in one write (as nginx's buffering does), instead of the
/// head alone and the body in a second write and a second trip through the network stack.
const COALESCE_MAX: u64 = 64 * 1024;

/// The upstream's answer made ready for the client; a small one waits for its first body
/// frame, and an upstream that goes quiet or breaks off before it is a failure.
pub async fn filter(
    response: Response<Incoming>,
    read_timeout: Duration,
) -> Result<Response<ProxyBody>, Failure> {
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    let mut body = ReadIdle::new(body, read_timeout);
    // Only for a known, small length: a streamed answer (SSE, gRPC, no length) is never held.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > 0 && n <= COALESCE_MAX) && !body.is_end_stream() {
        // Nothing has gone to the client yet, so an upstream that goes quiet or breaks off
        // here still gets its status, as nginx's.
        let first = match body.frame().await {
            Some(Ok(frame)) => Some(frame),
            Some(Err(e)) if e.is::<ReadTimedOut>() => return Err(Failure::Timeout),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "upstream answer broke off");
                return Err(Failure::Upstream);
            }
            None => None,
        };
        let body = FirstFrame { first, rest: body };
        return Ok(Response::from_parts(parts, body.boxed()));
    }
    Ok(Response::from_parts(parts, body.boxed()))
}

/// A body whose first frame was read already (to send it with the head), then the rest.
#[derive(Debug)]
struct FirstFrame {
    first: Option<hyper::body::Frame<Bytes>>,
    rest: ReadIdle<Incoming>,
}

impl Body for FirstFrame {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(first)));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let mut hint = self.rest.size_hint();
        if let Some(data) = self.first.as_ref().and_then(|f| f.data_ref()) {
            let n = data.len() as u64;
            // The upper bound first: a lower bound above the upper one is refused.
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + n);
            }
            hint.set_lower(hint.lower() + n);
        }
        hint
    }
}
