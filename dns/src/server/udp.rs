//! The UDP workers: one OS thread per SO_REUSEPORT socket, each in a blocking receive loop.
//!
//! On Linux a worker takes up to [`BATCH`] queries with one `recvmmsg` (blocking for the first
//! only, `MSG_WAITFORONE`, so a lone query is answered at once) and sends the answers to all of
//! them with one `sendmmsg`: under load two syscalls per batch instead of two per query, and no
//! readiness polling between them (`nix` wraps both calls, as the workspace forbids `unsafe`).
//! Elsewhere, or where the kernel refuses those calls (ENOSYS, a seccomp filter's EPERM), a
//! worker falls back to one `recv_from` and one `send_to` per query. Queries that wait for an
//! upstream become tasks on the runtime (bounded, so a flood of outside names cannot pile them
//! up) and send their own answers.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Semaphore;

use crate::handler::{Handler, Step, Transport};

/// Datagrams per `recvmmsg`/`sendmmsg`.
pub const BATCH: usize = 32;

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

    /// What to send back for one datagram now, if anything. A query that needs an upstream is
    /// handed to a task, which sends its answer itself; past the cap on those, it is refused.
    /// `truncated`: the datagram was longer than the buffer, and `query` is its beginning.
    fn answer(&self, query: &[u8], truncated: bool, peer: SocketAddr) -> Option<Vec<u8>> {
        let step = if truncated {
            self.handler.oversized(query)
        } else {
            self.handler.start(query, Transport::Udp)
        };
        match step {
            Step::Answer(answer) => Some(answer),
            Step::Pending(query) => match self.pending.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (socket, handler) = (self.socket.clone(), self.handler.clone());
                    self.runtime.spawn(async move {
                        let answer = handler.finish(*query).await;
                        let _ = socket.send_to(&answer, peer);
                        drop(permit);
                    });
                    None
                }
                Err(_) => Some(self.handler.refuse(query)),
            },
            Step::Drop => None,
        }
    }

    /// The portable loop: one datagram per syscall each way.
    pub(super) fn one_by_one(&self) {
        let mut buf = vec![0u8; 65535];
        while !self.stopped() {
            let (n, peer) = match self.socket.recv_from(&mut buf) {
                Ok(v) => v,
                // The stop check's timeout, or an ICMP error from an earlier send: go on.
                Err(_) => continue,
            };
            if let Some(answer) = self.answer(&buf[..n], false, peer) {
                let _ = self.socket.send_to(&answer, peer);
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod batch {
    use std::io::{IoSlice, IoSliceMut};
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;

    use nix::errno::Errno;
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage};
    use nix::sys::socket::{recvmmsg, sendmmsg};

    use super::{BATCH, Worker};
    use crate::handler::MAX_UDP_PAYLOAD;

    /// The largest query a batch buffer holds whole; a longer one is answered FORMERR. Queries
    /// are a question and an OPT record: real ones are far below this.
    const QUERY_MAX: usize = MAX_UDP_PAYLOAD as usize;

    /// One datagram of a batch, once its buffer is free to read.
    struct Received {
        len: usize,
        peer: Option<SockaddrStorage>,
        truncated: bool,
    }

    /// The batched loop; returns an error only when the first receive shows the kernel will
    /// not do `recvmmsg` at all, before anything was read, so the caller can fall back.
    pub(super) fn serve(worker: &Worker) -> Result<(), Errno> {
        let fd = worker.socket.as_raw_fd();
        let mut buffers = vec![[0u8; QUERY_MAX]; BATCH];
        // Reused for every batch: the sockets are bound to one address family, so the address
        // length the kernel leaves in a header is that family's for every later datagram too.
        let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut received: Vec<Received> = Vec::with_capacity(BATCH);
        let mut answers: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
        let mut peers: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
        let mut served = false;
        while !worker.stopped() {
            received.clear();
            {
                let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(&mut b[..])])
                    .collect();
                match recvmmsg(
                    fd,
                    &mut recv_headers,
                    slices.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(batch) => received.extend(batch.map(|m| Received {
                        len: m.bytes,
                        peer: m.address,
                        truncated: m.flags.contains(MsgFlags::MSG_TRUNC),
                    })),
                    Err(e @ (Errno::ENOSYS | Errno::EPERM | Errno::EOPNOTSUPP)) if !served => {
                        return Err(e);
                    }
                    // The stop check's timeout, a signal, or an ICMP error from an earlier
                    // send: go on.
                    Err(_) => continue,
                }
            }
            served = true;
            answers.clear();
            peers.clear();
            for (r, buffer) in received.iter().zip(&buffers) {
                let Some(peer) = r.peer.as_ref().and_then(socket_addr) else {
                    continue;
                };
                let query = &buffer[..r.len.min(QUERY_MAX)];
                if let Some(answer) = worker.answer(query, r.truncated, peer) {
                    answers.push(answer);
                    peers.push(r.peer);
                }
            }
            send(fd, &mut send_headers, &answers, &peers);
        }
        Ok(())
    }

    /// Sends every answer, as many per `sendmmsg` as the kernel takes. An answer the kernel
    /// refuses (its peer unreachable, say) is skipped; the rest are still sent.
    fn send(
        fd: i32,
        headers: &mut MultiHeaders<SockaddrStorage>,
        answers: &[Vec<u8>],
        peers: &[Option<SockaddrStorage>],
    ) {
        let slices: Vec<[IoSlice<'_>; 1]> = answers.iter().map(|a| [IoSlice::new(a)]).collect();
        let mut from = 0;
        while from < slices.len() {
            match sendmmsg(
                fd,
                headers,
                &slices[from..],
                &peers[from..],
                [],
                MsgFlags::empty(),
            ) {
                // The kernel sends at least one unless it fails on the first.
                Ok(sent) => from += sent.count().max(1),
                Err(Errno::EINTR) => {}
                Err(_) => from += 1,
            }
        }
    }

    fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = addr.as_sockaddr_in() {
            return Some(SocketAddr::from(*v4));
        }
        addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
    }
}
