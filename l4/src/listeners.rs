//! The set of bound listeners, brought in line with each compiled table: addresses that left are
//! closed, new ones bound. Each listener is one accept task; the connections it accepts are
//! tasks of their own, so closing a listener never closes them.
//!
//! Each listener has at most `Forwarder::max_connections` connections open: at the cap its
//! task stops accepting, so new clients wait in the kernel's backlog (as the gateway's do), and
//! it accepts the next as soon as one of its connections ends.
//!
//! An address that cannot be bound (in use by someone else, not available) is logged once,
//! counted, and tried again on the next snapshot and every [`BIND_RETRY`] until it binds.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::Handle;
use crate::forward::{self, Forwarder};

/// How often addresses that failed to bind are tried again between snapshots.
pub const BIND_RETRY: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Connections waiting in the kernel for an accept, per listener.
const BACKLOG: u32 = 1024;

#[derive(Debug)]
enum Slot {
    /// Bound and listening, not accepting yet (between build and run).
    Bound(TcpListener),
    Serving(JoinHandle<()>),
}

#[derive(Debug)]
pub(crate) struct Listeners {
    forwarder: Arc<Forwarder>,
    /// Every connection holds a receiver: the drain waits for them all to go, and a `true` closes
    /// the ones left when it runs out.
    kill: watch::Sender<bool>,
    slots: HashMap<SocketAddr, Slot>,
    /// Wanted addresses that would not bind.
    failed: HashSet<SocketAddr>,
    serving: bool,
    handle: Handle,
}

impl Listeners {
    pub fn new(forwarder: Arc<Forwarder>, handle: Handle) -> Listeners {
        Listeners {
            forwarder,
            kill: watch::Sender::new(false),
            slots: HashMap::new(),
            failed: HashSet::new(),
            serving: false,
            handle,
        }
    }

    /// Starts accepting on every bound listener, and on those bound from now on.
    pub fn serve(&mut self) {
        self.serving = true;
        let slots = std::mem::take(&mut self.slots);
        self.slots = slots
            .into_iter()
            .map(|(addr, slot)| match slot {
                Slot::Bound(listener) => (addr, Slot::Serving(self.spawn(addr, listener))),
                serving => (addr, serving),
            })
            .collect();
    }

    /// Closes every listener whose address is not in `wanted`; returns once they are closed.
    pub async fn close_except(&mut self, wanted: &HashSet<SocketAddr>) {
        let gone: Vec<SocketAddr> = self
            .slots
            .keys()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(slot) = self.slots.remove(&addr) {
                close(slot).await;
                tracing::debug!(%addr, "stopped listening");
            }
        }
        self.failed.retain(|a| wanted.contains(a));
        self.publish();
    }

    /// Binds every address in `wanted` that is not bound yet.
    pub fn bind_missing(&mut self, wanted: &HashSet<SocketAddr>) {
        for &addr in wanted {
            if self.slots.contains_key(&addr) {
                continue;
            }
            match bind(addr) {
                Ok(listener) => {
                    if self.failed.remove(&addr) {
                        tracing::info!(%addr, "listening at last");
                    }
                    let slot = if self.serving {
                        Slot::Serving(self.spawn(addr, listener))
                    } else {
                        Slot::Bound(listener)
                    };
                    self.slots.insert(addr, slot);
                    tracing::debug!(%addr, "listening");
                }
                Err(e) => {
                    self.forwarder.metrics.bind_errors.inc();
                    if self.failed.insert(addr) {
                        tracing::warn!(%addr, error = %e, "cannot listen for a Service; trying again later");
                    }
                }
            }
        }
        self.publish();
    }

    /// Whether some wanted address is not bound.
    pub fn has_failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Closes every listener, then waits up to `grace` for open connections to end and closes
    /// those left.
    pub async fn shutdown(mut self, grace: Duration) {
        self.close_except(&HashSet::new()).await;
        let Listeners { kill, .. } = self;
        if tokio::time::timeout(grace, kill.closed()).await.is_err() {
            tracing::info!(
                open = kill.receiver_count(),
                "L4 connections still open after the drain; closing them"
            );
            kill.send_replace(true);
            let _ = tokio::time::timeout(Duration::from_secs(1), kill.closed()).await;
        }
    }

    fn spawn(&self, addr: SocketAddr, listener: TcpListener) -> JoinHandle<()> {
        tokio::spawn(accept(
            listener,
            addr,
            self.forwarder.clone(),
            self.kill.subscribe(),
        ))
    }

    fn publish(&self) {
        let mut addrs: Vec<SocketAddr> = self.slots.keys().copied().collect();
        addrs.sort_unstable();
        let metrics = &self.forwarder.metrics;
        metrics.listeners.set(addrs.len() as i64);
        metrics.unbound.set(self.failed.len() as i64);
        self.handle.set_listening(addrs);
    }
}

async fn accept(
    listener: TcpListener,
    addr: SocketAddr,
    forwarder: Arc<Forwarder>,
    kill: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(
        forwarder.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    loop {
        // At the cap, stop accepting: new clients wait in the kernel's backlog, not in ours.
        // The semaphore is never closed.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let connection =
                    forward::connection(forwarder.clone(), stream, peer, addr, kill.clone());
                tokio::spawn(async move {
                    connection.await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Closes a listener and returns once its socket is closed (an aborted task drops its future
/// before its handle resolves).
async fn close(slot: Slot) {
    match slot {
        Slot::Bound(listener) => drop(listener),
        Slot::Serving(task) => {
            task.abort();
            let _ = task.await;
        }
    }
}

/// SO_REUSEADDR, so that an address can be bound again while connections it accepted before
/// are still open (or in TIME_WAIT); it still fails while another socket listens there.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
