//! Opening upstream connections with the connect timeout of the request at hand: the Ingress's
//! `proxy-connect-timeout`, else the gateway's default. The pooled clients share one connector,
//! so the request passes its timeout in a task-local that the connector reads when it starts a
//! connection (the connection attempt starts inside the request's task).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use tower_service::Service;

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
