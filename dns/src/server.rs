//! The listeners: UDP and TCP on one address.
//!
//! UDP is served by one socket per worker, all bound to the same port with SO_REUSEPORT, so the
//! kernel spreads queries over the cores without a shared queue. Each worker is an OS thread in a
//! blocking receive loop taking a batch of queries per syscall ([`udp`]): no readiness polling
//! between (a loop of single receives as a thread measured 10% more queries per second than as
//! a tokio task, benches/dns/run.sh). TCP takes many queries
//! per connection (RFC 7766), each answered in order, under [`Limits`]: a deadline for the first
//! query, an idle timeout between queries, and a cap on connections at which the longest idle
//! connection is closed to make room (when every one has a query in progress, the new one is
//! closed instead), so idle clients can never lock others out. Each TCP query's buffer is the
//! size of that query, and is not kept between queries.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use ferry_runtime::connections::{Connection, Connections, Limits};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::handler::{Handler, Transport};

mod udp;

pub use udp::BATCH;

/// Queries waiting for an upstream at once, per process; past it they are refused.
const MAX_PENDING: usize = 4096;

/// Bound sockets, not yet serving.
#[derive(Debug)]
pub struct Sockets {
    udp: Vec<std::net::UdpSocket>,
    tcp: std::net::TcpListener,
    addr: SocketAddr,
}

impl Sockets {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Binds `workers` UDP sockets and one TCP listener on the same address. With port 0 the port
/// is chosen for UDP and then taken for TCP too, trying again if TCP has it in use.
pub fn bind(addr: SocketAddr, workers: usize) -> io::Result<Sockets> {
    let workers = workers.max(1);
    let mut last = None;
    for _ in 0..16 {
        let first = udp_socket(addr)?;
        let port = first.local_addr()?.port();
        let bound = SocketAddr::new(addr.ip(), port);
        let tcp = match tcp_listener(bound) {
            Ok(l) => l,
            Err(e) if addr.port() == 0 && e.kind() == io::ErrorKind::AddrInUse => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut udp = vec![first];
        for _ in 1..workers {
            udp.push(udp_socket(bound)?);
        }
        return Ok(Sockets {
            udp,
            tcp,
            addr: bound,
        });
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free port")))
}

fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    // The kernel's default receive buffer, deliberately: a large one (4 MiB was tried) keeps
    // answering queries whose clients gave up long ago after an overload, which showed as a
    // p99 of 2.5 ms against 0.85 ms at half load (benches/dns/run.sh). Past the buffer, queries
    // are dropped and clients retry, as with Knot.
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn tcp_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// How often an idle UDP worker looks at `stop`.
const UDP_STOP_CHECK: Duration = Duration::from_millis(100);

/// Starts the UDP workers (threads that end once `stop` is set) and the TCP accept loop (a task
/// in `tasks`). Must be called within a tokio runtime.
pub fn spawn(
    sockets: Sockets,
    handler: Arc<Handler>,
    tcp: Limits,
    tasks: &mut JoinSet<()>,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    let pending = Arc::new(Semaphore::new(MAX_PENDING));
    let runtime = tokio::runtime::Handle::current();
    for socket in sockets.udp {
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(UDP_STOP_CHECK))?;
        let (handler, pending, runtime, stop) = (
            handler.clone(),
            pending.clone(),
            runtime.clone(),
            stop.clone(),
        );
        let worker = udp::Worker {
            socket: Arc::new(socket),
            handler,
            pending,
            runtime,
            stop,
        };
        std::thread::Builder::new()
            .name("ferry-dns-udp".into())
            .spawn(move || worker.run())?;
    }
    let listener = TcpListener::from_std(sockets.tcp)?;
    tasks.spawn(tcp_loop(listener, handler, Connections::new(tcp)));
    Ok(())
}

async fn tcp_loop(listener: TcpListener, handler: Arc<Handler>, connections: Connections) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "tcp accept");
                // Out of descriptors, say: give the process a moment rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(conn) = connections.admit() else {
            tracing::debug!(%peer, max = connections.limits().max_connections, "every TCP connection has a query in progress; closing the new one");
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = tcp_connection(stream, &handler, &conn) => if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "tcp connection");
                },
                expiry = conn.expired() => tracing::debug!(%peer, %expiry, "closing the TCP connection"),
            }
        });
    }
}

/// Answers queries in order until the client closes. Reading the next query is bounded by
/// `conn`'s deadline (the caller's `expired`); writing an answer by the first-query timeout, as
/// miekg/dns bounds writes by its read timeout.
async fn tcp_connection(
    mut stream: TcpStream,
    handler: &Handler,
    conn: &Connection,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let write_timeout = conn.limits().first_request;
    loop {
        let len = match stream.read_u16().await {
            Ok(len) => usize::from(len),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut query = vec![0u8; len];
        stream.read_exact(&mut query).await?;
        let _in_progress = conn.request();
        let Some(answer) = handler.handle(&query, Transport::Tcp).await else {
            continue;
        };
        drop(query);
        let Ok(len) = u16::try_from(answer.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&answer);
        tokio::time::timeout(write_timeout, stream.write_all(&framed))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client does not read its answer",
                )
            })??;
    }
}

#[cfg(test)]
mod tests;
