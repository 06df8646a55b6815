//! The UDP workers: one OS thread per SO_REUSEPORT socket, each in a blocking receive loop.
//!
//! On Linux a worker takes up to [`BATCH`] queries with one `recvmmsg` (blocking for the first
//! only, `MSG_WAITFORONE`, so a lone query is answered at once) and sends the answers to all of
//! them with `sendmmsg`, answers to one client of one length as one UDP GSO datagram
//! ([`batch`]): under load a few syscalls per batch instead of two per query, and no readiness
//! polling between them (`nix` wraps the calls, as the workspace forbids `unsafe`).
//! Elsewhere, or where the kernel refuses those calls (ENOSYS, a seccomp filter's EPERM), a
//! worker falls back to one `recv_from` and one `send_to` per query. Queries that wait for an
//! upstream become tasks on the runtime (bounded, so a flood of outside names cannot pile them
//! up) and send their own answers.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Semaphore;

use crate::handler::{Handler, Started, Step, Transport};

/// Datagrams per `recvmmsg`/`sendmmsg`: under load, more answers per GSO group and fewer
/// syscalls; the receive buffers (4 KiB each) are the cost.
pub const BATCH: usize = 64;

/// One receive loop over one socket.
#[derive(Debug)]
pub(super) struct Worker {
    pub socket: Arc<UdpSocket>,
    pub handler: Arc<Handler>,
    /// Permits for queries waiting on an upstream, shared by every worker.
    pub pending: Arc<Semaphore>,
    pub runtime: tokio::runtime::Handle,
    /// Set when the server stops; the socket's read timeout bounds how long that takes to see.
    pub stop: Arc<AtomicBool>,
}

impl Worker {
    /// Serves until `stop` is set.
    pub fn run(self) {
        #[cfg(target_os = "linux")]
        match batch::serve(&self) {
            Ok(()) => return,
            Err(e) => tracing::warn!(
                error = %e,
                "batched UDP (recvmmsg/sendmmsg) is not available; one datagram per syscall"
            ),
        }
        self.one_by_one();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Writes into `out` what to send back for one datagram now, if anything (`true`). A
    /// query that needs an upstream is handed to a task, which sends its answer itself; past
    /// the cap on those, it is refused. `truncated`: the datagram was longer than the buffer,
    /// and `query` is its beginning.
    fn answer_into(
        &self,
        query: &[u8],
        truncated: bool,
        peer: SocketAddr,
        out: &mut Vec<u8>,
    ) -> bool {
        let started = if truncated {
            match self.handler.oversized(query) {
                Step::Answer(answer) => {
                    *out = answer;
                    return true;
                }
                _ => return false,
            }
        } else {
            self.handler.start_into(query, Transport::Udp, out)
        };
        match started {
            Started::Written => true,
            Started::Pending(query) => match self.pending.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (socket, handler) = (self.socket.clone(), self.handler.clone());
                    self.runtime.spawn(async move {
                        let answer = handler.finish(*query).await;
                        let _ = socket.send_to(&answer, peer);
                        drop(permit);
                    });
                    false
                }
                Err(_) => {
                    *out = self.handler.refuse(query);
                    true
                }
            },
            Started::Drop => false,
        }
    }

    /// The portable loop: one datagram per syscall each way.
    pub(super) fn one_by_one(&self) {
        let mut buf = vec![0u8; 65535];
        let mut answer = Vec::new();
        while !self.stopped() {
            let (n, peer) = match self.socket.recv_from(&mut buf) {
                Ok(v) => v,
                // The stop check's timeout, or an ICMP error from an earlier send: go on.
                Err(_) => continue,
            };
            if self.answer_into(&buf[..n], false, peer, &mut answer) {
                let _ = self.socket.send_to(&answer, peer);
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod batch;
