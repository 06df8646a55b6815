//! A UDP DNS load client for `benches/dns/run.sh`: queries from a dnsperf-style file
//! (`name TYPE` a line) over a few connected sockets, sent and received in batches
//! (`sendmmsg`/`recvmmsg`), each answer timed by the kernel's receive timestamp
//! (`SO_TIMESTAMPNS`: on loopback, taken as the server's send hands the answer to the loopback
//! device) against the clock read just before its batch was sent. At a fixed rate sending
//! never waits for answers (open loop), so a query sent late was held back by this client, not
//! by the server: it is timed from when it was sent, and the queries a stalled client sends
//! at once reach the server as the burst they are.
//!
//! Why, beside dnsperf: on the bench's one client CPU, dnsperf's one query per system call
//! cannot keep ferry's server busy, so its queries per second compare the client's limit; and
//! its two threads share that CPU, so its tail is mostly its receiving thread waiting for it.
//! Batches cost this client less per query, and the kernel's timestamps leave its own
//! scheduling out of the latencies.
//!
//! ```text
//! cargo run --release -p ferry-dns --example udp_load -- PORT QUERIES SECONDS [RATE]
//! ```
//! Without RATE, as fast as the server answers with at most 500 queries outstanding (as
//! `dnsperf -c 4 -q 500`); with RATE, that many queries a second on a fixed schedule whatever
//! the answers (open loop). Prints one line, latencies in ms:
//! `qps p50 p99 p99.9 max lost errors`: qps counts the NOERROR answers. A query not answered
//! within a second is lost; an answer other than NOERROR is an error (and not timed). Ids are
//! 16 bits a socket, so an answer later than 65,536 of its socket's queries (over a second at
//! 200,000 a second on four sockets) could be taken for a newer query's; the timeout frees an
//! id after a second.

use std::io::{IoSlice, IoSliceMut};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg,
    setsockopt, sockopt,
};

const NO_CONTROL: [ControlMessage<'static>; 0] = [];
const SOCKETS: usize = 4;
const OUTSTANDING: usize = 500;
const BATCH: usize = 32;
const TIMEOUT_NS: u64 = 1_000_000_000;
/// Queries in flight per socket are told apart by their 16-bit ids.
const IDS: usize = 1 << 16;

type Failure = Box<dyn std::error::Error>;

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, queries, seconds, rest @ ..] = args.as_slice() else {
        return Err("usage: udp_load PORT QUERIES SECONDS [RATE]".into());
    };
    let port: u16 = port.parse().map_err(|e| format!("PORT {port}: {e}"))?;
    let seconds: f64 = seconds
        .parse()
        .map_err(|e| format!("SECONDS {seconds}: {e}"))?;
    let rate = match rest {
        [] => None,
        [rate] => Some(
            rate.parse::<f64>()
                .map_err(|e| format!("RATE {rate}: {e}"))?,
        ),
        _ => return Err("usage: udp_load PORT QUERIES SECONDS [RATE]".into()),
    };
    let text = std::fs::read_to_string(queries).map_err(|e| format!("{queries}: {e}"))?;
    let bodies = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| question(l).map_err(|e| format!("{queries}:{}: {e}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    if bodies.is_empty() {
        return Err(format!("{queries}: no queries").into());
    }
    let mut report = run(port, &bodies, Duration::from_secs_f64(seconds), rate)?;
    if report.untimed > 0 {
        eprintln!(
            "udp_load: {} answers came without a kernel timestamp",
            report.untimed
        );
    }
    println!("{}", report.line(seconds));
    Ok(())
}

/// A query without its id (the first two bytes, set as it is sent): recursion desired, one
/// question, as dnsperf sends them.
fn question(line: &str) -> Result<Vec<u8>, String> {
    let mut fields = line.split_whitespace();
    let (Some(name), Some(kind)) = (fields.next(), fields.next()) else {
        return Err(format!("{line:?} is not `name TYPE`"));
    };
    let name = Name::from_ascii(name).map_err(|e| format!("{name}: {e}"))?;
    let kind = RecordType::from_str(kind).map_err(|e| format!("{kind}: {e}"))?;
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name, kind));
    let wire = message.to_vec().map_err(|e| e.to_string())?;
    Ok(wire[2..].to_vec())
}

/// One socket's queries in flight: the send time (ns since the epoch) by id, 0 when none.
struct Flight {
    socket: UdpSocket,
    sent_at: Vec<u64>,
    /// Sequence numbers: the next to send, and the oldest that may still be in flight.
    next: u64,
    oldest: u64,
    in_flight: usize,
}

#[derive(Default)]
struct Report {
    latencies: Vec<u64>,
    lost: u64,
    errors: u64,
    untimed: u64,
}

impl Report {
    fn line(&mut self, seconds: f64) -> String {
        let answered = self.latencies.len();
        if self.latencies.is_empty() {
            return format!("0 - - - - {} {}", self.lost, self.errors);
        }
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        let ms = |ns: u64| ns as f64 / 1e6;
        let at = |q: f64| ms(self.latencies[((q * n as f64) as usize).min(n - 1)]);
        format!(
            "{:.0} {:.3} {:.3} {:.3} {:.3} {} {}",
            answered as f64 / seconds,
            at(0.5),
            at(0.99),
            at(0.999),
            ms(self.latencies[n - 1]),
            self.lost,
            self.errors
        )
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn run(
    port: u16,
    bodies: &[Vec<u8>],
    length: Duration,
    rate: Option<f64>,
) -> Result<Report, Failure> {
    let mut flights = (0..SOCKETS)
        .map(|_| {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.connect(("127.0.0.1", port))?;
            socket.set_nonblocking(true)?;
            setsockopt(&socket, sockopt::ReceiveTimestampns, &true)?;
            // Past net.core.rmem_max when root, so a burst of answers is not dropped here.
            if setsockopt(&socket, sockopt::RcvBufForce, &(8 << 20)).is_err() {
                setsockopt(&socket, sockopt::RcvBuf, &(8 << 20))?;
            }
            Ok(Flight {
                socket,
                sent_at: vec![0; IDS],
                next: 0,
                oldest: 0,
                in_flight: 0,
            })
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    let mut report = Report::default();
    let mut packets = vec![[0u8; 512]; BATCH];
    let mut lens = [0usize; BATCH];
    let mut answers = vec![[0u8; 512]; BATCH];
    let mut send_headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut recv_headers = MultiHeaders::<SockaddrIn>::preallocate(
        BATCH,
        Some(nix::cmsg_space!(nix::sys::time::TimeSpec)),
    );
    let start = Instant::now();
    let mut sent_total: u64 = 0;
    let mut query = 0usize;
    let mut turn = 0usize;
    let stop_sending = start + length;
    let give_up = stop_sending + Duration::from_nanos(TIMEOUT_NS);
    loop {
        let now = Instant::now();
        let sending = now < stop_sending;
        if !sending && (flights.iter().all(|f| f.in_flight == 0) || now >= give_up) {
            break;
        }
        // Send: on a schedule, or up to the outstanding limit, on each socket in turn.
        if sending {
            let due = match rate {
                Some(rate) => {
                    let by_now = (now - start).as_secs_f64() * rate;
                    (by_now as u64).saturating_sub(sent_total) as usize
                }
                None => OUTSTANDING / SOCKETS,
            };
            let flight = &mut flights[turn % SOCKETS];
            turn += 1;
            // An id is reused only once its last query was answered or given up on.
            let room = IDS - 1 - (flight.next - flight.oldest) as usize;
            let room = match rate {
                Some(_) => room,
                None => room.min((OUTSTANDING / SOCKETS).saturating_sub(flight.in_flight)),
            };
            let count = due.min(room).min(BATCH);
            if count > 0 {
                let first = flight.next;
                for (i, (packet, len)) in packets.iter_mut().zip(&mut lens).take(count).enumerate()
                {
                    let body = &bodies[query % bodies.len()];
                    query += 1;
                    let id = ((first + i as u64) as usize % IDS) as u16;
                    packet[..2].copy_from_slice(&id.to_be_bytes());
                    packet[2..2 + body.len()].copy_from_slice(body);
                    *len = 2 + body.len();
                }
                let slices: Vec<[IoSlice<'_>; 1]> = packets
                    .iter()
                    .zip(&lens)
                    .take(count)
                    .map(|(p, &l)| [IoSlice::new(&p[..l])])
                    .collect();
                let at = now_ns();
                let sent = match sendmmsg(
                    flight.socket.as_raw_fd(),
                    &mut send_headers,
                    &slices,
                    [None; BATCH],
                    NO_CONTROL,
                    MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(results) => results.count(),
                    Err(nix::errno::Errno::EAGAIN) => 0,
                    Err(e) => return Err(format!("sendmmsg: {e}").into()),
                };
                for i in 0..sent as u64 {
                    flight.sent_at[((first + i) as usize) % IDS] = at;
                }
                flight.next += sent as u64;
                flight.in_flight += sent;
                sent_total += sent as u64;
                query -= count - sent;
            }
        }
        // Receive what each socket has.
        for flight in &mut flights {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = answers
                .iter_mut()
                .map(|a| [IoSliceMut::new(&mut a[..])])
                .collect();
            let received: Vec<(usize, u64)> = match recvmmsg(
                flight.socket.as_raw_fd(),
                &mut recv_headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(batch) => batch
                    .map(|m| {
                        let at = m
                            .cmsgs()
                            .ok()
                            .and_then(|mut c| {
                                c.find_map(|c| match c {
                                    ControlMessageOwned::ScmTimestampns(t) => {
                                        Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
                                    }
                                    _ => None,
                                })
                            })
                            .unwrap_or(0);
                        (m.bytes, at)
                    })
                    .collect(),
                Err(nix::errno::Errno::EAGAIN) => Vec::new(),
                Err(e) => return Err(format!("recvmmsg: {e}").into()),
            };
            for (answer, (len, at)) in answers.iter().zip(received) {
                if len < 2 {
                    report.errors += 1; // no id: its query is lost after the timeout
                    continue;
                }
                let id = usize::from(u16::from_be_bytes([answer[0], answer[1]]));
                let sent = std::mem::take(&mut flight.sent_at[id]);
                if sent == 0 {
                    continue; // already counted lost
                }
                flight.in_flight -= 1;
                if at == 0 {
                    // No timestamp (never seen: every datagram gets one once asked): not
                    // timed, and said.
                    report.untimed += 1;
                } else if len >= 12 && answer[3] & 0x0f == 0 {
                    report.latencies.push(at.saturating_sub(sent));
                } else {
                    report.errors += 1;
                }
            }
            // The oldest in flight past the timeout are lost; their ids free again.
            let now = now_ns();
            while flight.oldest < flight.next {
                let slot = &mut flight.sent_at[(flight.oldest as usize) % IDS];
                if *slot != 0 && now.saturating_sub(*slot) < TIMEOUT_NS {
                    break;
                }
                if *slot != 0 {
                    *slot = 0;
                    flight.in_flight -= 1;
                    report.lost += 1;
                }
                flight.oldest += 1;
            }
        }
    }
    report.lost += flights.iter().map(|f| f.in_flight as u64).sum::<u64>();
    Ok(report)
}
