//! The accept loops of the plain and the TLS listener: HTTP/1.1 and HTTP/2 on both (h2 by ALPN
//! over TLS, h2c with prior knowledge on the plain port), a header-read timeout against slow
//! clients, and on shutdown: stop accepting, let in-flight requests finish (GOAWAY on h2, close
//! idle keep-alives), then close what is left after the grace period.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_runtime::Shutdown;
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::connect::{Idle, Owned};
use crate::metrics::Metrics;
use crate::pair::Pair;
use crate::pipeline::{Downstream, Pipeline};
use crate::smuggling::{LengthAndChunked, Observed, Verdicts};

/// A client must send its request head within this (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request head larger than this gets 431 (nginx allows 4 × 8 KiB header lines; this is
/// roomier, and hyper's buffer floor is 8 KiB); so does one with more than 100 header fields,
/// hyper's default, left unset: setting it, even to 100, makes hyper fill two 100-entry arrays
/// for every head it parses instead of leaving them uninitialised.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Streams one HTTP/2 connection may have open at once.
const MAX_H2_STREAMS: u32 = 256;
/// And finish its TLS handshake within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// In-flight requests get this long to finish once shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves one worker's plain and TLS listeners until shutdown, then drains both; their client
/// connections share the worker's own idle pool of upstream connections.
pub async fn serve_both(
    (http, https): (TcpListener, TcpListener),
    tls: TlsAcceptor,
    pipeline: Arc<Pipeline>,
    metrics: Metrics,
    max_connections: usize,
    shutdown: Shutdown,
) {
    let idle = pipeline.idle_pool();
    tokio::spawn(idle.clone().sweep_until(shutdown.clone()));
    let plain = serve(
        http,
        None,
        pipeline.clone(),
        idle.clone(),
        metrics.clone(),
        max_connections,
        shutdown.clone(),
    );
    let secure = serve(
        https,
        Some(tls),
        pipeline,
        idle,
        metrics,
        max_connections,
        shutdown,
    );
    tokio::join!(plain, secure);
}

/// Serves `listener` (over TLS when `tls` is given) until shutdown, then drains. Client
/// connections park their idle upstream connections in `idle`, their worker's pool.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    pipeline: Arc<Pipeline>,
    idle: Arc<Idle>,
    metrics: Metrics,
    max_connections: usize,
    mut shutdown: Shutdown,
) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS)
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let local = listener.local_addr().ok();
    loop {
        // At the limit, stop accepting: new clients wait in the kernel's queue, not in ours.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = shutdown.wait() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        let _ = stream.set_nodelay(true);
        let down = Arc::new(Downstream::new(peer, local.unwrap_or(peer), tls.is_some()));
        let (builder, watcher, pipeline, metrics) = (
            builder.clone(),
            graceful.watcher(),
            pipeline.clone(),
            metrics.clone(),
        );
        let owned = Owned::new(idle.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            metrics.connections.inc();
            match tls {
                None => connection(&builder, watcher, stream, pipeline, owned, down).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            metrics.tls_handshakes.inc();
                            connection(&builder, watcher, stream, pipeline, owned, down).await;
                        }
                        Ok(Err(e)) => {
                            metrics.tls_handshake_failures.inc();
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics.tls_handshake_failures.inc();
                        }
                    }
                }
            }
            metrics.connections.dec();
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("gateway connections still open after the drain timeout; closing them");
    }
}

async fn connection<S>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    stream: S,
    pipeline: Arc<Pipeline>,
    owned: Owned,
    down: Arc<Downstream>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // HTTP/1 heads with Content-Length and Transfer-Encoding, which hyper does not report.
    let verdicts = Verdicts::new();
    let stream = Observed::new(stream, verdicts.clone());
    // Its own upstream connection, driven here beside it: no pool, no other task.
    let for_requests = owned.clone();
    let peer = down.peer;
    let service = service_fn(move |mut req: Request<Incoming>| {
        if verdicts.next_request() {
            req.extensions_mut().insert(LengthAndChunked);
        }
        let (pipeline, owned, down) = (pipeline.clone(), for_requests.clone(), down.clone());
        async move { Ok::<_, Infallible>(pipeline.handle(req, &down, &owned).await) }
    });
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .into_owned();
    // The two sides in one task, each polled when woken ([`Pair`]).
    let mut conn = std::pin::pin!(watcher.watch(conn));
    let pair = Pair::default();
    let ended = std::future::poll_fn(|cx| {
        pair.poll(cx, |cx| owned.poll_drive(cx), |cx| conn.as_mut().poll(cx))
    })
    .await;
    // An idle upstream connection outlives its client's: the next client takes it over.
    owned.park();
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Binds a listener in the current runtime, naming the address on failure; `shared` lets other
/// workers' listeners bind the same address (`SO_REUSEPORT`).
pub fn bind(addr: SocketAddr, shared: bool) -> Result<TcpListener, crate::Error> {
    let listener = bind_std(addr, shared)?;
    TcpListener::from_std(listener).map_err(|source| crate::Error::Bind { addr, source })
}

/// Binds a non-blocking listener for any runtime (as tokio's `bind`: `SO_REUSEADDR`, a backlog
/// of 1024), with `SO_REUSEPORT` when `shared`.
pub fn bind_std(addr: SocketAddr, shared: bool) -> Result<std::net::TcpListener, crate::Error> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bound = || -> std::io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if shared {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    };
    bound().map_err(|source| crate::Error::Bind { addr, source })
}
