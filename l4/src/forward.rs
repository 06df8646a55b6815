//! One client connection, in named steps: `route` (the listening address's Service port, from
//! the table of the moment) → `pick_endpoint` (affinity, else random or in turn) → `connect`
//! (each endpoint at most once, a refusal or a timeout moves on to the next) → `copy` both ways
//! until both sides have closed (a half-close is passed on) → `log` (metrics).
//!
//! Once connected, a connection no longer looks at the table: a new snapshot never closes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::Balance;
use crate::metrics::{Metrics, Outcome};
use crate::table::{Route, Table};

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Forwarder {
    pub table: Arc<ArcSwap<Table>>,
    pub balance: Balance,
    pub connect_timeout: Duration,
    pub metrics: Metrics,
}

/// Serves one accepted connection on `local` until it ends, or until `kill` turns true (the end
/// of the shutdown drain).
pub(crate) async fn connection(
    forwarder: Arc<Forwarder>,
    client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    mut kill: watch::Receiver<bool>,
) {
    let _open = Open::new(&forwarder.metrics);
    tokio::select! {
        () = forward(&forwarder, client, peer, local) => {}
        _ = kill.wait_for(|&k| k) => {
            tracing::debug!(%peer, %local, "connection closed at the end of the shutdown drain");
        }
    }
}

async fn forward(forwarder: &Forwarder, client: TcpStream, peer: SocketAddr, local: SocketAddr) {
    let metrics = &forwarder.metrics;
    // route: clone out of the guard, which must not be held across awaits.
    let Some(route) = forwarder.table.load().route(local).cloned() else {
        metrics.connection("", Outcome::NoEndpoint);
        reset(&client);
        return;
    };
    let Some((endpoint, upstream)) = connect(forwarder, &route, peer).await else {
        metrics.connection(&route.service, Outcome::Failed);
        tracing::debug!(%peer, service = %route.service, "no endpoint answered");
        reset(&client);
        return;
    };
    metrics.connection(&route.service, Outcome::Forwarded);
    copy(client, upstream, &route, metrics, peer, endpoint).await;
}

/// pick_endpoint and connect: the first endpoint that accepts, trying each at most once.
async fn connect(
    forwarder: &Forwarder,
    route: &Route,
    peer: SocketAddr,
) -> Option<(SocketAddr, TcpStream)> {
    let picks = route
        .balancer
        .pick(forwarder.balance, peer.ip(), Instant::now());
    for endpoint in picks {
        match tokio::time::timeout(forwarder.connect_timeout, TcpStream::connect(endpoint)).await {
            Ok(Ok(stream)) => {
                route
                    .balancer
                    .connected(peer.ip(), endpoint, Instant::now());
                return Some((endpoint, stream));
            }
            Ok(Err(e)) => {
                tracing::debug!(%endpoint, service = %route.service, error = %e, "endpoint refused");
            }
            Err(_) => {
                tracing::debug!(%endpoint, service = %route.service, "endpoint connect timed out");
            }
        }
        forwarder.metrics.connect_error(&route.service);
    }
    None
}

/// copy both ways; each side's end of stream becomes a write shutdown on the other side, and
/// the connection ends once both directions have.
async fn copy(
    mut client: TcpStream,
    mut upstream: TcpStream,
    route: &Route,
    metrics: &Metrics,
    peer: SocketAddr,
    endpoint: SocketAddr,
) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((received, sent)) => metrics.bytes(&route.service, received, sent),
        Err(e) => {
            tracing::debug!(%peer, %endpoint, service = %route.service, error = %e, "connection ended with an error");
            // One side reset: reset the other too, as a NAT between them would pass it on.
            reset(&client);
            reset(&upstream);
        }
    }
}

/// Makes the coming close a reset (RST) rather than an orderly FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Counts a connection as open while alive, however its task ends.
struct Open(Metrics);

impl Open {
    fn new(metrics: &Metrics) -> Open {
        metrics.open.inc();
        Open(metrics.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.dec();
    }
}
