//! Opening upstream connections with the connect timeout of the request at hand: the Ingress's
//! `proxy-connect-timeout`, else the proxy's default. The pooled clients share one connector,
//! so the request passes its timeout in a task-local that the connector reads when it starts a
//! connection (the connection attempt starts inside the request's task).
//!
//! [`Owned`]: the HTTP/1.1 upstream connection a client's HTTP/1 connection keeps for itself,
//! driven inside the client connection's own task, so a request on it takes no pool lock and no
//! hop to another task (as Pingora does). When the client connection closes, an owned
//! connection that is idle goes to its worker's [`Idle`] pool, where the next client connection
//! to that endpoint takes it over (nginx's upstream `keepalive`): short client connections do
//! not open and close an upstream connection each.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::Uri;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::body::{BoxError, ProxyBody};

tokio::task_local! {
    /// The connect timeout of the request being sent.
    static CONNECT_TIMEOUT: Duration;
}

/// Runs `sending` with `timeout` as the limit for any connection it opens.
pub fn with_connect_timeout<F: Future>(
    timeout: Duration,
    sending: F,
) -> tokio::task::futures::TaskLocalFuture<Duration, F> {
    CONNECT_TIMEOUT.scope(timeout, sending)
}

/// A connector whose connection attempts give up after the request's connect timeout.
#[derive(Clone, Debug)]
pub struct TimedConnector<C> {
    inner: C,
    default: Duration,
}

impl<C> TimedConnector<C> {
    pub fn new(inner: C, default: Duration) -> Self {
        TimedConnector { inner, default }
    }
}

/// What a connection attempt that ran out of time says.
#[derive(Debug, thiserror::Error)]
#[error("connecting took longer than {0:?}")]
pub struct ConnectTimedOut(pub Duration);

impl<C> Service<Uri> for TimedConnector<C>
where
    C: Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let limit = CONNECT_TIMEOUT.try_with(|t| *t).unwrap_or(self.default);
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(ConnectTimedOut(limit).into()),
            }
        })
    }
}

/// An upstream connection's own future, which does its reading and writing.
type Connection = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Idle upstream connections whose client connection closed, by endpoint, for the next client
/// connections of one worker (one pool per worker: a connection stays with the runtime that
/// polls its socket). Not polled while parked: an upstream that closed one meanwhile is seen
/// when it is next used, and the request goes back unsent ([`OwnedSend::Returned`]).
#[derive(Debug)]
pub struct Idle {
    parked: Mutex<HashMap<SocketAddr, Vec<Parked>>>,
    /// An idle connection is not used again after this long (the upstream may be closing it).
    limit: Duration,
}

/// At most this many idle connections are kept per endpoint (ingress-nginx keeps 320 per
/// worker in all); more are closed.
const MAX_IDLE_PER_ENDPOINT: usize = 128;

struct Parked {
    held: Held,
    connection: Connection,
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked")
            .field("endpoint", &self.held.endpoint)
            .field("since", &self.held.since)
            .finish()
    }
}

impl Idle {
    pub fn new(limit: Duration) -> Idle {
        Idle {
            parked: Mutex::new(HashMap::new()),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Vec<Parked>>> {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn put(&self, parked: Parked) {
        let mut all = self.lock();
        let list = all.entry(parked.held.endpoint).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(parked);
        }
    }

    /// The most recently parked connection to `endpoint` that is still fresh.
    fn take(&self, endpoint: SocketAddr) -> Option<Parked> {
        let mut all = self.lock();
        let list = all.get_mut(&endpoint)?;
        while let Some(parked) = list.pop() {
            if parked.held.since.elapsed() < self.limit && !parked.held.sender.is_closed() {
                return Some(parked);
            }
        }
        None
    }

    /// Closes the connections idle past the limit.
    pub fn sweep(&self) {
        let mut all = self.lock();
        all.retain(|_, list| {
            list.retain(|p| p.held.since.elapsed() < self.limit);
            !list.is_empty()
        });
    }

    /// Sweeps every `limit` until shutdown.
    pub async fn sweep_until(self: Arc<Idle>, shutdown: ferry_runtime::Shutdown) {
        every(self.limit, shutdown, || self.sweep()).await;
    }

    /// Idle connections to `endpoint`.
    pub fn parked(&self, endpoint: SocketAddr) -> usize {
        self.lock().get(&endpoint).map_or(0, Vec::len)
    }
}

/// Runs `sweep` every `period` (at least 100 ms) until shutdown: the sweeps of idle pools.
pub(crate) async fn every(
    period: Duration,
    mut shutdown: ferry_runtime::Shutdown,
    sweep: impl Fn(),
) {
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => sweep(),
            () = shutdown.wait() => return,
        }
    }
}

/// The upstream connection one client connection keeps for its requests: at most one, to one
/// endpoint, used by one request at a time. A request it cannot serve (busy, an upgrade,
/// HTTP/2) goes through the shared pools instead. When the client connection closes it is
/// parked in the worker's [`Idle`] pool if it is idle ([`Owned::park`]), else closed.
#[derive(Clone, Debug)]
pub struct Owned {
    slot: Arc<Mutex<Slot>>,
    idle: Arc<Idle>,
}

#[derive(Default)]
struct Slot {
    sender: Option<Held>,
    /// The connection itself, polled by [`Owned::poll_drive`].
    connection: Option<Connection>,
    /// The task that runs [`Owned::poll_drive`], woken when a new connection is installed.
    waker: Option<Waker>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("endpoint", &self.sender.as_ref().map(|h| h.endpoint))
            .field("connected", &self.connection.is_some())
            .finish()
    }
}

struct Held {
    endpoint: SocketAddr,
    sender: SendRequest<ProxyBody>,
    /// When its last answer came: past the pool's idle limit it is not used again, as the
    /// upstream may be closing it.
    since: Instant,
}

impl Owned {
    /// A client connection's slot; its connections park in (and come from) `idle`.
    pub fn new(idle: Arc<Idle>) -> Owned {
        Owned {
            slot: Arc::default(),
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This client connection's own upstream connection to `endpoint`, ready for a request:
    /// the one it has, else an idle one of the worker's, else a new one (opened within
    /// `connect_timeout`; an error is a connect error). Give it back with [`Owned::keep`] once
    /// the answer's head came. The request is not passed in: a future that held it would be
    /// copied with every request's future.
    pub async fn sender(
        &self,
        endpoint: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<SendRequest<ProxyBody>, BoxError> {
        let limit = self.idle.limit;
        let reusable = {
            let mut slot = self.lock();
            match slot.sender.take() {
                Some(held) if held.endpoint == endpoint => {
                    (!held.sender.is_closed() && held.since.elapsed() < limit).then_some(held)
                }
                // Another endpoint's: someone else may want it.
                Some(held) => {
                    if let Some(connection) = slot.connection.take()
                        && held.sender.is_ready()
                    {
                        self.idle.put(Parked { held, connection });
                    }
                    None
                }
                None => None,
            }
        };
        let reusable = match reusable {
            Some(held) => Some(held),
            None => self.idle.take(endpoint).map(|parked| {
                self.install(parked.connection);
                parked.held
            }),
        };
        // The last answer's body may still be finishing on it: wait for that (this task drives
        // it). Closed meanwhile: a new connection replaces it.
        if let Some(mut held) = reusable
            && held.sender.ready().await.is_ok()
        {
            return Ok(held.sender);
        }
        // Boxed: connecting is rare, and its state would weigh on every request's future.
        Box::pin(self.open(endpoint, connect_timeout)).await
    }

    /// Keeps `sender`, which has just delivered an answer's head from `endpoint`, for the
    /// client connection's next request.
    pub fn keep(&self, endpoint: SocketAddr, sender: SendRequest<ProxyBody>) {
        self.lock().sender = Some(Held {
            endpoint,
            sender,
            since: Instant::now(),
        });
    }

    async fn open(
        &self,
        endpoint: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<SendRequest<ProxyBody>, BoxError> {
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(endpoint)).await
        {
            Ok(stream) => stream?,
            Err(_) => return Err(ConnectTimedOut(connect_timeout).into()),
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(BoxError::from)?;
        self.install(Box::pin(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%endpoint, error = %e, "upstream connection ended");
            }
        }));
        Ok(sender)
    }

    /// Makes `connection` the one [`Owned::poll_drive`] polls (the previous one, if any, closes).
    fn install(&self, connection: Connection) {
        let mut slot = self.lock();
        slot.connection = Some(connection);
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
    }

    /// The client connection closed: an idle owned connection goes to the worker's pool for
    /// the next client connections, anything else (an exchange unfinished) closes.
    pub fn park(&self) {
        let mut slot = self.lock();
        if let (Some(held), Some(connection)) = (slot.sender.take(), slot.connection.take())
            && held.sender.is_ready()
            && held.since.elapsed() < self.idle.limit
        {
            self.idle.put(Parked { held, connection });
        }
    }

    /// Drives the owned connection: its reading and writing. Call it from the client
    /// connection's task each time that task is polled (it keeps the waker).
    pub fn poll_drive(&self, cx: &mut Context<'_>) {
        let mut slot = self.lock();
        if let Some(connection) = slot.connection.as_mut()
            && connection.as_mut().poll(cx).is_ready()
        {
            slot.connection = None;
            slot.sender = None;
        }
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            slot.waker = Some(cx.waker().clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// A connector whose attempts never finish, as to a host that drops SYNs.
    #[derive(Clone)]
    struct Blackhole;

    impl Service<Uri> for Blackhole {
        type Response = ();
        type Error = Infallible;
        type Future = std::future::Pending<Result<(), Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Uri) -> Self::Future {
            std::future::pending()
        }
    }

    fn uri() -> Uri {
        "http://10.0.0.1:80/".parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_timeout_applies_else_the_default() {
        let mut connector = TimedConnector::new(Blackhole, Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        let err = with_connect_timeout(Duration::from_millis(250), async {
            connector.call(uri()).await
        })
        .await
        .unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(250));
        assert!(err.is::<ConnectTimedOut>(), "{err}");

        let started = tokio::time::Instant::now();
        connector.call(uri()).await.unwrap_err();
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5),
            "outside a request: the default"
        );
    }
}
