//! A client connection's HTTP/1 on the fast path (issue 18): one loop per connection that owns
//! its read buffer, its parser, its write buffers and its upstream connection, as Pingora's
//! HTTP/1 over httparse, instead of hyper's server and client state machines. The requests'
//! steps are the pipeline's ([`Pipeline::serve_h1`]); here are the connection's deadlines, as
//! [`crate::deadline`] keeps them for hyper's connections:
//!
//! - the first request's head must be complete within the header timeout of the connection
//!   being handed to HTTP (after its TLS handshake);
//! - after an answer, the next request must begin within the keep-alive timeout, and its head,
//!   once begun, be complete within the header timeout (of the answer's end for a request
//!   already read, pipelined, while the connection was busy);
//! - on shutdown an idle connection closes at once, one in the middle of a head gets
//!   [`CLOSE_GRACE`] to finish it, and one with a request in progress finishes that request
//!   (the proxy timeouts bound it; the listener's drain timeout bounds everything) and closes.
//!
//! A connection the fast path does not serve goes to hyper's path with the bytes read so far
//! ([`Rewind`]): HTTP/2 with prior knowledge (h2c) from its first bytes, and the requests
//! [`Pipeline::serve_h1`] hands over (upgrades, backends over TLS or HTTP/2) at the
//! request's start, with everything after them.

use ferry_proxy::forwarding::Downstream;
use ferry_proxy::h1::alarm::Alarm;
use ferry_proxy::h1::pool::Parking;
use ferry_proxy::h1::relay::Error as RelayError;
use ferry_proxy::h1::rewind::Rewind;
use ferry_runtime::Shutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::deadline::{CLOSE_GRACE, ClientLimits};
use crate::pipeline::{Conn, H2_PREFACE, Next, Pipeline};

/// Serves `stream`'s HTTP/1 requests on the fast path until the connection ends; returns the
/// connection with its unread bytes when hyper's path is to serve the rest of it.
pub(crate) async fn serve<S>(
    pipeline: &Pipeline,
    stream: S,
    down: &Downstream,
    parking: std::sync::Arc<Parking>,
    limits: ClientLimits,
    shutdown: Shutdown,
) -> Option<Rewind<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Conn::new(stream, parking, shutdown.clone());
    // The idle and header timeouts, moved per request without a timer-wheel operation each.
    let mut deadline = Alarm::new();
    // Shutdown, watched for the connection's life: one waiter, not one per request.
    let mut watch = shutdown.clone();
    let stop = async move { watch.wait().await };
    tokio::pin!(stop);
    let mut stopping = false;
    let mut head_deadline = Instant::now() + limits.header;
    let mut first = true;
    let handoff = loop {
        if conn.client.buffered().is_empty() {
            // Idle: the first request within the header timeout, the next ones within the
            // keep-alive timeout; shutdown closes an idle connection (at once when it began
            // during the last head). Upstream connections kept past their idle limit are
            // closed meanwhile (the upstream closes its side).
            if stopping {
                break false;
            }
            let waited = if first {
                head_deadline
            } else {
                Instant::now() + limits.keepalive
            };
            let came = loop {
                let stale = conn.kept_until().filter(|at| *at < waited);
                deadline.set(stale.unwrap_or(waited));
                tokio::select! {
                    biased;
                    came = conn.client.fill() => break Some(Ok(came)),
                    () = deadline.expired() => {
                        if stale.is_none() {
                            break Some(Err(()));
                        }
                        conn.drop_stale();
                    }
                    () = &mut stop, if !stopping => break None,
                }
            };
            match came {
                None => break false,
                Some(Ok(Ok(n))) if n > 0 => {}
                Some(Ok(Ok(_))) => break false,
                Some(Ok(Err(e))) => {
                    tracing::debug!(peer = %down.peer, error = %e, "client connection ended");
                    break false;
                }
                Some(Err(())) => {
                    tracing::debug!(peer = %down.peer, "closed a quiet connection");
                    break false;
                }
            }
            if !first {
                head_deadline = Instant::now() + limits.header;
            }
        }
        // The rest of the head within the header timeout; once shutdown begins, within
        // [`CLOSE_GRACE`] too.
        deadline.set(head_deadline);
        let read = loop {
            tokio::select! {
                biased;
                read = conn.client.read_head() => break Some(read),
                () = deadline.expired() => break None,
                () = &mut stop, if !stopping => {
                    stopping = true;
                    deadline.set(head_deadline.min(Instant::now() + CLOSE_GRACE));
                }
            }
        };
        match read {
            Some(Ok(Some(_))) => {}
            Some(Ok(None)) => break false,
            Some(Err(RelayError::Malformed(_, m))) => {
                pipeline.refuse_h1(&mut conn, m).await;
                break false;
            }
            Some(Err(e)) => {
                tracing::debug!(peer = %down.peer, error = %e, "client connection ended");
                break false;
            }
            None => {
                tracing::debug!(peer = %down.peer, "closed a connection whose head did not come in time");
                break false;
            }
        }
        // HTTP/2 with prior knowledge: h2c, or h2 over TLS without ALPN.
        if first && conn.client.buffered().starts_with(H2_PREFACE) {
            break true;
        }
        first = false;
        match pipeline.serve_h1(&mut conn, down).await {
            Next::KeepAlive if !shutdown.is_triggered() => {
                // A request already read (pipelined) has the header timeout from now; the
                // next one to come has it from its first byte (above).
                if !conn.client.buffered().is_empty() {
                    head_deadline = Instant::now() + limits.header;
                }
            }
            Next::Handoff => break true,
            Next::KeepAlive | Next::Close => break false,
        }
    };
    if handoff {
        let (io, read) = conn.into_parts();
        return Some(Rewind::new(read, io));
    }
    conn.park();
    conn.close().await;
    None
}

#[cfg(test)]
mod tests;
