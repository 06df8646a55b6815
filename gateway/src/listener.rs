//! The accept loops of the plain and the TLS listener: HTTP/1.1 and HTTP/2 on both (h2 by ALPN
//! over TLS, h2c with prior knowledge on the plain port), each connection under the
//! [`deadline`](crate::deadline)s of a quiet connection (the header and keep-alive timeouts),
//! HTTP/2 with bounded buffers (`ferry_proxy::h2_limits`), a WebSocket tunnel run in its
//! connection's task (holding the connection's slot), and on shutdown: stop accepting, let
//! in-flight requests finish (GOAWAY on h2, close idle keep-alives), then close what is left
//! after the grace period (tunnels close themselves then).

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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::deadline::{Activity, ClientLimits, Deadline, Ended, Reads, Tracked};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::smuggling::{LengthAndChunked, Observed, Verdicts};
use ferry_proxy::connect::{Idle, Owned};
use ferry_proxy::forwarding::Downstream;
use ferry_proxy::h1::pool::Parking;
use ferry_proxy::pair::Pair;
use ferry_proxy::upgrade::Tunnel;

/// A request head larger than this gets 431 (nginx allows 4 × 8 KiB header lines; this is
/// roomier, and hyper's buffer floor is 8 KiB); so does one with more than 100 header fields,
/// hyper's default, left unset: setting it, even to 100, makes hyper fill two 100-entry arrays
/// for every head it parses instead of leaving them uninitialised.
const MAX_HEAD_BYTES: usize = 64 * 1024;
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
    limits: ClientLimits,
    shutdown: Shutdown,
) {
    let pools = Pools::new(&pipeline, &shutdown);
    let plain = serve(
        http,
        None,
        pipeline.clone(),
        pools.clone(),
        metrics.clone(),
        limits,
        shutdown.clone(),
    );
    let secure = serve(https, Some(tls), pipeline, pools, metrics, limits, shutdown);
    tokio::join!(plain, secure);
}

/// A worker's idle upstream connections, swept until shutdown: hyper's (for the connections
/// it serves) and the fast path's.
#[derive(Clone, Debug)]
pub struct Pools {
    idle: Arc<Idle>,
    parking: Arc<Parking>,
}

impl Pools {
    pub fn new(pipeline: &Pipeline, shutdown: &Shutdown) -> Pools {
        let pools = Pools {
            idle: pipeline.idle_pool(),
            parking: pipeline.parking(),
        };
        tokio::spawn(pools.idle.clone().sweep_until(shutdown.clone()));
        tokio::spawn(pools.parking.clone().sweep_until(shutdown.clone()));
        pools
    }
}

/// Serves `listener` (over TLS when `tls` is given) until shutdown, then drains. Client
/// connections park their idle upstream connections in `pools`, their worker's.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    pipeline: Arc<Pipeline>,
    pools: Pools,
    metrics: Metrics,
    limits: ClientLimits,
    mut shutdown: Shutdown,
) {
    // At most u32::MAX permits can be awaited at once, when draining.
    let max = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(max as usize));
    let builder = Arc::new(http_builder());
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
        let (builder, pipeline, metrics) = (builder.clone(), pipeline.clone(), metrics.clone());
        let pools = pools.clone();
        let tls = tls.clone();
        let served = Served {
            limits,
            shutdown: shutdown.clone(),
            tunnels: metrics.tunnels.clone(),
        };
        tokio::spawn(async move {
            metrics.connections.inc();
            match tls {
                None => served.http1(&builder, stream, pipeline, pools, down).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            metrics.tls_handshakes.inc();
                            // HTTP/2 by ALPN is hyper's; HTTP/1.1 (by ALPN, or none) the
                            // fast path's.
                            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                                let owned = Owned::new(pools.idle);
                                served
                                    .connection(&builder, stream, pipeline, owned, down)
                                    .await;
                            } else {
                                served.http1(&builder, stream, pipeline, pools, down).await;
                            }
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
            // Held until here: through a WebSocket tunnel too.
            drop(slot);
        });
    }
    drop(listener);
    // Each connection starts its graceful shutdown by itself; all slots back means all closed.
    if tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(max))
        .await
        .is_err()
    {
        tracing::warn!("gateway connections still open after the drain timeout; closing them");
    }
}

/// What every connection of a listener is served with.
struct Served {
    limits: ClientLimits,
    shutdown: Shutdown,
    /// `ferry_gateway_tunnels`.
    tunnels: prometheus_client::metrics::gauge::Gauge,
}

impl Served {
    /// An HTTP/1 connection (or one that may be h2c): the fast path, then hyper's for what
    /// the fast path hands over.
    async fn http1<S>(
        self,
        builder: &auto::Builder<TokioExecutor>,
        stream: S,
        pipeline: Arc<Pipeline>,
        pools: Pools,
        down: Arc<Downstream>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let served = crate::h1::serve(
            &pipeline,
            stream,
            &down,
            pools.parking,
            self.limits,
            self.shutdown.clone(),
        )
        .await;
        if let Some(rest) = served {
            let owned = Owned::new(pools.idle);
            self.connection(builder, rest, pipeline, owned, down).await;
        }
    }

    async fn connection<S>(
        self,
        builder: &auto::Builder<TokioExecutor>,
        stream: S,
        pipeline: Arc<Pipeline>,
        owned: Owned,
        down: Arc<Downstream>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        // HTTP/1 heads with Content-Length and Transfer-Encoding, which hyper does not report.
        let verdicts = Verdicts::new();
        let stream = Reads::new(Observed::new(stream, verdicts.clone()), activity.clone());
        // Its own upstream connection, driven here beside it: no pool, no other task.
        let for_requests = owned.clone();
        let peer = down.peer;
        let requests = activity.clone();
        let service = service_fn(move |mut req: Request<Incoming>| {
            // In progress until its answer's body is handed over whole or dropped.
            let busy = requests.begin();
            if verdicts.next_request() {
                req.extensions_mut().insert(LengthAndChunked);
            }
            let (pipeline, owned, down) = (pipeline.clone(), for_requests.clone(), down.clone());
            async move {
                let mut answer = pipeline.handle(req, &down, &owned).await;
                if let Some(tunnel) = answer.extensions_mut().remove::<Tunnel>() {
                    busy.switched(tunnel);
                }
                Ok::<_, Infallible>(answer.map(|body| Tracked::new(body, busy)))
            }
        });
        let ended = {
            // Dropped at the end of this block: a switch the connection did not finish
            // (its 101 never sent) is given up before the tunnel waits for it.
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let mut conn = std::pin::pin!(conn);
            let mut deadline = Deadline::new(activity.clone(), self.limits, self.shutdown.clone());
            // The two sides in one task, each polled when woken ([`Pair`]).
            let pair = Pair::default();
            std::future::poll_fn(|cx| {
                pair.poll(
                    cx,
                    |cx| owned.poll_drive(cx),
                    |cx| deadline.poll(cx, conn.as_mut()),
                )
            })
            .await
        };
        // An idle upstream connection outlives its client's: the next client takes it over.
        owned.park();
        match ended {
            Ended::Served(Ok(())) => {}
            Ended::Served(Err(e)) => {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            Ended::TimedOut => tracing::debug!(%peer, "closed a quiet connection"),
        }
        // A WebSocket switch: the tunnel runs here, so it keeps the connection's slot and
        // count until it ends (quiet for its idle timeout, or the drain timeout after
        // shutdown begins, at the latest).
        if let Some(tunnel) = activity.take_tunnel() {
            self.tunnels.inc();
            let end = tunnel.run(self.shutdown, DRAIN_TIMEOUT).await;
            self.tunnels.dec();
            tracing::debug!(%peer, ?end, "WebSocket tunnel ended");
        }
    }
}

/// How every client connection is served: HTTP/1.1 and HTTP/2 (by ALPN or prior knowledge)
/// with their limits.
pub(crate) fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The connection's deadlines cover heads (hyper's would also cut keep-alives short).
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES);
    ferry_proxy::h2_limits::server(builder.http2().timer(TokioTimer::new()))
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    builder
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
