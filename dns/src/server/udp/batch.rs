//! The batched loop (Linux): `recvmmsg` in, `sendmmsg` out, and UDP GSO where answers allow.
//!
//! Each datagram of a batch has its own receive buffer and its own answer buffer, both kept
//! from batch to batch, so a query answered from the zone's pre-encoded answers allocates
//! nothing. Answers to one client of one length (a busy client asking for names of one shape,
//! a node-local cache forwarding its misses) go out as one GSO datagram (`UDP_SEGMENT`): the
//! kernel walks its output path once for them all and splits them back into datagrams as they
//! are delivered or leave the machine, so the client sees ordinary datagrams. Where the kernel
//! or the route refuses GSO (older than 4.18, no checksum offload), the worker stops trying
//! and sends each answer alone. UDP keeps no order between datagrams, and answers grouped this
//! way may leave in another order than their queries came.

use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use nix::sys::socket::{recvmmsg, sendmmsg};

use super::{BATCH, Worker};
use crate::handler::MAX_UDP_PAYLOAD;

/// The largest query a batch buffer holds whole; a longer one is answered FORMERR. Queries
/// are a question and an OPT record: real ones are far below this.
const QUERY_MAX: usize = MAX_UDP_PAYLOAD as usize;

/// The longest answer sent in a GSO group: each segment must fit the path's MTU unfragmented,
/// and 1,232 bytes does on any IPv6 path (1,280 less the IPv6 and UDP headers), as DNS Flag
/// Day 2020 chose for EDNS.
const GSO_SEGMENT_MAX: usize = 1232;
/// Segments per GSO datagram: the kernel's `UDP_MAX_SEGMENTS` since 4.18 (later kernels take
/// more).
const GSO_SEGMENTS_MAX: usize = 64;
/// Bytes per GSO datagram, under the 65,507 an IPv4 UDP datagram carries.
const GSO_BYTES_MAX: usize = 65_000;

/// One datagram of a batch, once its buffer is free to read.
struct Received {
    len: usize,
    peer: Option<SockaddrStorage>,
    truncated: bool,
}

/// An answer to send: its buffer (index in the batch) and its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Out {
    pub peer: SocketAddr,
    pub storage: SockaddrStorage,
    pub at: usize,
    pub len: usize,
}

/// The batched loop; returns an error only when the first receive shows the kernel will
/// not do `recvmmsg` at all, before anything was read, so the caller can fall back.
pub(super) fn serve(worker: &Worker) -> Result<(), Errno> {
    let fd = worker.socket.as_raw_fd();
    let mut buffers = vec![[0u8; QUERY_MAX]; BATCH];
    // Reused for every batch: the sockets are bound to one address family, so the address
    // length the kernel leaves in a header is that family's for every later datagram too.
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut sender = Sender::new();
    let mut received: Vec<Received> = Vec::with_capacity(BATCH);
    let mut answers: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
    let mut out: Vec<Out> = Vec::with_capacity(BATCH);
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
        out.clear();
        for (at, ((r, buffer), answer)) in
            received.iter().zip(&buffers).zip(&mut answers).enumerate()
        {
            let Some((storage, peer)) = r.peer.and_then(|s| socket_addr(&s).map(|a| (s, a))) else {
                continue;
            };
            let query = &buffer[..r.len.min(QUERY_MAX)];
            if worker.answer_into(query, r.truncated, peer, answer) {
                out.push(Out {
                    peer,
                    storage,
                    at,
                    len: answer.len(),
                });
            }
        }
        sender.send(fd, &answers, &mut out);
        // An answer grown past the usual (a long general-path answer) is not kept for the
        // next batch.
        for answer in &mut answers {
            if answer.capacity() > GSO_SEGMENT_MAX {
                *answer = Vec::with_capacity(512);
            }
        }
    }
    Ok(())
}

/// A run of `out` (after [`plan`] sorted it) to send as one datagram: one answer, or a GSO
/// group of answers of `size` bytes each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Message {
    pub from: usize,
    pub to: usize,
    pub size: usize,
}

impl Message {
    fn is_group(&self) -> bool {
        self.to - self.from > 1
    }
}

/// Orders `out` by client and length (each client's answers otherwise in the order of their
/// queries) and cuts it into datagrams: a group for each run of two or more answers to one
/// client of one length, within GSO's limits; one datagram for every other answer.
pub(super) fn plan(out: &mut [Out], gso: bool, messages: &mut Vec<Message>) {
    messages.clear();
    if gso {
        out.sort_unstable_by_key(|o| (o.peer, o.len, o.at));
    }
    let mut from = 0;
    while from < out.len() {
        let size = out[from].len;
        let most = if gso && size > 0 && size <= GSO_SEGMENT_MAX {
            GSO_SEGMENTS_MAX.min(GSO_BYTES_MAX / size)
        } else {
            1
        };
        let mut to = from + 1;
        while to < out.len()
            && to - from < most
            && out[to].peer == out[from].peer
            && out[to].len == size
        {
            to += 1;
        }
        messages.push(Message { from, to, size });
        from = to;
    }
    // Groups by size, so each `sendmmsg` carries one segment size (its control message is
    // shared by every datagram of the call); single answers after them.
    messages.sort_by_key(|m| (!m.is_group(), m.size));
}

/// The send side: headers kept from batch to batch, and whether GSO still works here.
struct Sender {
    plain: MultiHeaders<SockaddrStorage>,
    /// Each header with room for one `UDP_SEGMENT` control message.
    gso: MultiHeaders<SockaddrStorage>,
    gso_on: bool,
    messages: Vec<Message>,
}

impl Sender {
    fn new() -> Sender {
        Sender {
            plain: MultiHeaders::preallocate(BATCH, None),
            gso: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(u16))),
            gso_on: true,
            messages: Vec::with_capacity(BATCH),
        }
    }

    /// Sends every answer in `out`. An answer the kernel refuses (its client unreachable, say)
    /// is skipped; the rest are still sent.
    fn send(&mut self, fd: i32, answers: &[Vec<u8>], out: &mut [Out]) {
        plan(out, self.gso_on, &mut self.messages);
        let iovs: Vec<IoSlice<'_>> = out
            .iter()
            .map(|o| IoSlice::new(&answers[o.at][..o.len]))
            .collect();
        let mut refused: Vec<Message> = Vec::new();
        let groups = self.messages.iter().take_while(|m| m.is_group()).count();
        let (grouped, singles) = self.messages.split_at(groups);
        let mut rest = grouped;
        while let [first, ..] = rest {
            let same = rest.iter().take_while(|m| m.size == first.size).count();
            let (these, next) = rest.split_at(same);
            rest = next;
            let Ok(size) = u16::try_from(first.size) else {
                refused.extend_from_slice(these);
                continue;
            };
            let segment = [ControlMessage::UdpGsoSegments(&size)];
            if let Err((unsent, e)) = send_all(fd, &mut self.gso, &iovs, out, these, &segment) {
                // Only a kernel or device without UDP GSO turns it off for good; EINVAL or
                // EMSGSIZE speak of one client's path (segments over its route's MTU), so that
                // group goes one answer at a time and the next batch tries GSO again.
                if gso_unsupported(e) {
                    tracing::debug!(error = %e, "UDP GSO refused; sending each answer alone");
                    self.gso_on = false;
                }
                refused.extend_from_slice(&these[unsent..]);
            }
        }
        // The answers of refused groups, one by one.
        let mut alone: Vec<Message> = singles.to_vec();
        for m in &refused {
            alone.extend((m.from..m.to).map(|i| Message {
                from: i,
                to: i + 1,
                size: out[i].len,
            }));
        }
        let _ = send_all(fd, &mut self.plain, &iovs, out, &alone, &[]);
    }
}

/// Sends `messages`, as many per `sendmmsg` as the kernel takes. With `cmsgs` (GSO), a
/// refusal of the kind that says GSO cannot work here stops it: the error, and the first
/// message not sent. Otherwise a message the kernel refuses is skipped.
/// Whether a refused GSO send says this socket cannot do UDP GSO at all (not just this
/// group's path).
fn gso_unsupported(e: Errno) -> bool {
    matches!(e, Errno::EIO | Errno::ENOPROTOOPT | Errno::EOPNOTSUPP)
}

fn send_all(
    fd: i32,
    headers: &mut MultiHeaders<SockaddrStorage>,
    iovs: &[IoSlice<'_>],
    out: &[Out],
    messages: &[Message],
    cmsgs: &[ControlMessage<'_>],
) -> Result<(), (usize, Errno)> {
    let mut from = 0;
    while from < messages.len() {
        let chunk = &messages[from..(from + BATCH).min(messages.len())];
        let slices: Vec<&[IoSlice<'_>]> = chunk.iter().map(|m| &iovs[m.from..m.to]).collect();
        let peers: Vec<Option<SockaddrStorage>> =
            chunk.iter().map(|m| Some(out[m.from].storage)).collect();
        match sendmmsg(fd, headers, &slices, &peers, cmsgs, MsgFlags::empty()) {
            // The kernel sends at least one unless it fails on the first.
            Ok(sent) => from += sent.count().max(1),
            Err(Errno::EINTR) => {}
            Err(e @ (Errno::EIO | Errno::EINVAL | Errno::EOPNOTSUPP | Errno::ENOPROTOOPT))
                if !cmsgs.is_empty() =>
            {
                return Err((from, e));
            }
            Err(_) => from += 1,
        }
    }
    Ok(())
}

fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

#[cfg(test)]
mod tests;
