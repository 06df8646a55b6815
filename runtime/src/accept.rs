//! The accept loop of TCP listeners that serve bytes, not HTTP (the sidecar's inbound and
//! outbound sides; HTTP servers use [`crate::serve`]): one task per connection, no new
//! connection once shutdown begins, and the open ones given a while to finish.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::Shutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// How long open connections may run on after shutdown began.
const DRAIN: Duration = Duration::from_secs(10);
/// After a failed accept (out of descriptors, say), wait before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts on `listener` until shutdown, handing each connection to `handler`.
pub async fn run<F, Fut>(listener: TcpListener, mut shutdown: Shutdown, handler: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tasks.spawn(handler(stream, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            () = shutdown.wait() => break,
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open = tasks.len(),
            "connections still open after the drain; closing them"
        );
        tasks.shutdown().await;
    }
}
