//! Opening upstream connections with the connect timeout of the request at hand: the Ingress's
//! `proxy-connect-timeout`, else the gateway's default. The pooled clients share one connector,
//! so the request passes its timeout in a task-local that the connector reads when it starts a
//! connection (the connection attempt starts inside the request's task).
//!
//! [`Owned`]: the HTTP/1.1 upstream connection a client's HTTP/1 connection keeps for itself
//! once it has made a second request, driven inside the client connection's own task, so a
//! request on it takes no pool lock and no hop to another task (as Pingora does).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::pipeline::ProxyBody;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

tokio::task_local! {
    /// The connect timeout of the request being sent.
    static CONNECT_TIMEOUT: Duration;
}

/// Runs `sending` with `timeout` as the limit for any connection it opens.
pub async fn with_connect_timeout<F: Future>(timeout: Duration, sending: F) -> F::Output {
    CONNECT_TIMEOUT.scope(timeout, sending).await
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

/// The upstream connection one client connection keeps for its requests: at most one, to one
/// endpoint, used by one request at a time. A request it cannot serve (another endpoint, busy,
/// idle too long, an upgrade, HTTP/2) goes through the shared pools instead. It closes with the
/// client connection.
#[derive(Clone, Debug, Default)]
pub struct Owned {
    slot: Arc<Mutex<Slot>>,
}

#[derive(Default)]
struct Slot {
    /// Requests the client connection has made: it earns an upstream connection of its own
    /// with its second, so one-request clients never open one.
    requests: u32,
    sender: Option<Held>,
    /// The connection itself, polled by [`Owned::drive`].
    connection: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The task that runs [`Owned::drive`], woken when a new connection is installed.
    waker: Option<Waker>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("requests", &self.requests)
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

/// What sending on an owned connection gave.
#[derive(Debug)]
pub enum OwnedSend {
    Answered(Response<Incoming>),
    Failed {
        connect: bool,
        error: BoxError,
    },
    /// Not sent (the connection closed before it took the request): send it elsewhere.
    Returned(Request<ProxyBody>),
}

impl Owned {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request of the client connection; whether it may use an owned connection.
    pub fn earned(&self) -> bool {
        let mut slot = self.lock();
        slot.requests = slot.requests.saturating_add(1);
        slot.requests >= 2
    }

    /// Sends `req` (origin-form URI) to `endpoint` on this client connection's own upstream
    /// connection, opening one (within `connect_timeout`) when there is none to reuse.
    pub async fn send(
        &self,
        endpoint: SocketAddr,
        req: Request<ProxyBody>,
        connect_timeout: Duration,
        idle: Duration,
    ) -> OwnedSend {
        let reusable = {
            let mut slot = self.lock();
            slot.sender.take().filter(|held| {
                held.endpoint == endpoint && !held.sender.is_closed() && held.since.elapsed() < idle
            })
        };
        // The last answer's body may still be finishing on it: wait for that (this task drives
        // it). Another endpoint, closed or idle too long: a new connection replaces it.
        let reused = match reusable {
            Some(mut held) => held.sender.ready().await.ok().map(|()| held.sender),
            None => None,
        };
        let mut sender = match reused {
            Some(sender) => sender,
            None => match self.open(endpoint, connect_timeout).await {
                Ok(sender) => sender,
                Err(error) => {
                    return OwnedSend::Failed {
                        connect: true,
                        error,
                    };
                }
            },
        };
        match sender.try_send_request(req).await {
            Ok(response) => {
                self.lock().sender = Some(Held {
                    endpoint,
                    sender,
                    since: Instant::now(),
                });
                OwnedSend::Answered(response)
            }
            Err(mut e) => match e.take_message() {
                Some(req) => OwnedSend::Returned(req),
                None => OwnedSend::Failed {
                    connect: false,
                    error: e.into_error().into(),
                },
            },
        }
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
        let mut slot = self.lock();
        slot.connection = Some(Box::pin(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%endpoint, error = %e, "upstream connection ended");
            }
        }));
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
        Ok(sender)
    }

    /// Drives the owned connection; never ends. Run it beside the client connection, in its
    /// task, and drop it when the client connection ends.
    pub async fn drive(&self) {
        std::future::poll_fn(|cx| {
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
            Poll::<()>::Pending
        })
        .await;
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
