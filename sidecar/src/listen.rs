//! What the inbound and outbound sides share: a bound listener and the state its connections
//! read, served by the runtime's accept loop ([`ferry_runtime::accept`]). Each side is a
//! [`Listener`] of its own state, which says how one connection is served ([`Serve`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use ferry_runtime::Shutdown;
use tokio::net::{TcpListener, TcpStream};

use crate::Error;

/// How one side serves a connection it accepted.
pub trait Serve: Send + Sync + 'static {
    fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        client: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// A bound listener and what its connections share.
#[derive(Debug)]
pub struct Listener<S> {
    listener: TcpListener,
    pub(crate) shared: Arc<S>,
}

impl<S: Serve> Listener<S> {
    /// Binds `addr` for `what` (the error names it).
    pub(crate) async fn bind(
        what: &'static str,
        addr: SocketAddr,
        shared: S,
    ) -> Result<Listener<S>, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { what, addr, source })?;
        Ok(Listener {
            listener,
            shared: Arc::new(shared),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections until shutdown, then drains them.
    pub async fn run(self, shutdown: Shutdown) {
        let shared = self.shared;
        ferry_runtime::accept::run(self.listener, shutdown, move |stream, client| {
            shared.clone().serve(stream, client)
        })
        .await;
    }
}
