//! The HTTP accept loop shared by the admin server and the echo app: HTTP/1.1 and HTTP/2
//! (h2c with prior knowledge) on one port, each connection under [`Limits`] (a deadline for its
//! first request, an idle timeout, a cap on open connections), graceful drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Error;
use crate::connections::{Connection, Connections, Limits};
use crate::shutdown::Shutdown;

/// How long in-flight requests get to finish once shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long a connection that timed out gets to close by itself (an h2 client reading GOAWAY,
/// an HTTP/1 request head half sent) before it is closed outright.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub type Body = Full<Bytes>;

/// Binds a TCP listener, naming the address on failure.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Serves `handler` on every connection until shutdown, then drains.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    handler: F,
    limits: Limits,
    mut shutdown: Shutdown,
) where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let connections = Connections::new(limits);
    let (drain, draining) = watch::channel(false);
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(conn) = connections.admit() else {
                        tracing::debug!(%peer, max = limits.max_connections, "every connection is busy at the limit; closing the new one");
                        continue;
                    };
                    tasks.spawn(connection(builder.clone(), stream, peer, handler.clone(), conn, draining.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            () = shutdown.wait() => break,
        }
    }
    drop(listener);
    drain.send_replace(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = tasks.len(),
            "connections still open after the drain timeout; closing them"
        );
        tasks.shutdown().await;
    }
}

/// Serves one connection until it ends, times out, is evicted, or the drain ends it.
async fn connection<F, Fut>(
    builder: auto::Builder<TokioExecutor>,
    stream: TcpStream,
    peer: SocketAddr,
    handler: F,
    conn: Connection,
    mut draining: watch::Receiver<bool>,
) where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let conn = std::sync::Arc::new(conn);
    let tracked = conn.clone();
    let svc = service_fn(move |req| {
        let in_progress = tracked.request();
        let response = handler(req, peer);
        async move {
            let response = response.await;
            drop(in_progress);
            Ok::<_, Infallible>(response)
        }
    });
    let served = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
        .into_owned();
    let mut served = std::pin::pin!(served);
    let grace = tokio::select! {
        result = served.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            return;
        }
        expiry = conn.expired() => {
            tracing::debug!(%peer, %expiry, "closing the connection");
            CLOSE_GRACE
        }
        _ = draining.wait_for(|&d| d) => DRAIN_TIMEOUT,
    };
    // An idle HTTP/1 connection closes at once; h2 sends GOAWAY and finishes its streams.
    served.as_mut().graceful_shutdown();
    if tokio::time::timeout(grace, served).await.is_err() {
        tracing::debug!(%peer, "connection did not close in time; closing it");
    }
}

/// A response with a body and content type.
pub fn respond(
    status: http::StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response
}
