//! The sidecar's own sockets: where an intercepted connection was going, connections out
//! that carry the mesh's socket mark, so the Pod's interception rules let them pass instead of
//! sending them back to the sidecar, and connections to the app from the client's address
//! (`IP_TRANSPARENT`, as Istio's TPROXY mode makes them), with their fallback.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use socket2::SockRef;
use tokio::net::{TcpSocket, TcpStream};

/// The address an intercepted connection was sent to before the Pod's rules redirected it
/// (`SO_ORIGINAL_DST`). `None` when it was not redirected: the kernel has no NAT entry for it,
/// or the original destination is the listener itself (a client that connected directly, as
/// tests on loopback do).
pub fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    let sock = SockRef::from(stream);
    let original = if local.is_ipv4() {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    let original = original.ok()?.as_socket()?;
    (original != local).then_some(original)
}

/// Opens a TCP connection to `addr` within `timeout`, its socket marked with `mark` when
/// given (setting a mark needs `CAP_NET_ADMIN`: the error says so).
pub async fn connect(
    addr: SocketAddr,
    mark: Option<u32>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    finish(marked(addr, mark)?, addr, timeout).await
}

/// A socket for a connection to `addr` from `source`, an address that need not be this
/// host's (the client's, for the app to see it): `IP_TRANSPARENT`, bound to `source` with a
/// port the kernel picks. It fails where the kernel does not allow it: without
/// `CAP_NET_ADMIN`, or a source of another family than `addr`. The replies reach this socket
/// only where the routing sends them back here (the Pod's policy route for the mesh's mark).
pub fn transparent(source: IpAddr, addr: SocketAddr, mark: Option<u32>) -> io::Result<TcpSocket> {
    let source = source.to_canonical();
    if source.is_ipv4() != addr.is_ipv4() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("a connection to {addr} cannot come from {source} (another address family)"),
        ));
    }
    let socket = marked(addr, mark)?;
    let sock = SockRef::from(&socket);
    let transparent = if addr.is_ipv4() {
        sock.set_ip_transparent_v4(true)
    } else {
        sock.set_ip_transparent_v6(true)
    };
    transparent.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot set IP_TRANSPARENT (needs CAP_NET_ADMIN): {e}"),
        )
    })?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind to {source}: {e}")))?;
    Ok(socket)
}

/// A socket for `addr`'s family, marked with `mark` when given.
fn marked(addr: SocketAddr, mark: Option<u32>) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(mark) = mark {
        SockRef::from(&socket).set_mark(mark).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot set SO_MARK {mark:#x} (needs CAP_NET_ADMIN): {e}"),
            )
        })?;
    }
    socket.set_nodelay(true)?;
    Ok(socket)
}

/// Connects `socket` to `addr` within `timeout`.
pub async fn finish(
    socket: TcpSocket,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connecting to {addr} took longer than {timeout:?}"),
        )),
    }
}

/// The inbound side's connections to the app from the client's address: the app reaches it
/// at `app` (the Pod's own address), or, where the kernel does not allow a connection from
/// the client's address, at `fallback` (loopback) from the sidecar's own, counted in
/// [`Fallbacks`].
#[derive(Clone, Debug)]
pub struct OriginalSource {
    /// The client's address, which the app sees.
    pub client: IpAddr,
    /// Where the app is reached when the client's address cannot be used.
    pub fallback: IpAddr,
    pub fallbacks: Arc<Fallbacks>,
}

/// How many connections to the app could not come from the client's address; the first is
/// logged as a warning with its reason, the others at debug level.
#[derive(Debug, Default)]
pub struct Fallbacks {
    /// `ferry_sidecar_client_address_fallbacks_total` when built from the metrics.
    count: Counter,
}

impl Fallbacks {
    /// Counting into `count` (a registered counter).
    pub fn new(count: Counter) -> Fallbacks {
        Fallbacks { count }
    }

    pub fn record(&self, reason: &dyn std::fmt::Display) {
        if self.count.inc() == 0 {
            tracing::warn!(%reason, "the app sees connections from the sidecar (127.0.0.1), not from their clients' addresses");
        } else {
            tracing::debug!(%reason, "a connection to the app from the sidecar's own address");
        }
    }

    pub fn count(&self) -> u64 {
        self.count.get()
    }
}

/// A connection to `addr` from `source`'s client address, or to its fallback when the
/// kernel refuses that address (see [`transparent`]).
pub async fn connect_from(
    source: &OriginalSource,
    addr: SocketAddr,
    mark: Option<u32>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    match transparent(source.client, addr, mark) {
        Ok(socket) => finish(socket, addr, timeout).await,
        Err(e) => {
            source.fallbacks.record(&e);
            connect(SocketAddr::new(source.fallback, addr.port()), mark, timeout).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_direct_connection_has_no_original_destination() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = connect(addr, None, Duration::from_secs(5)).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert_eq!(original_dst(&server), None);
        drop(client);
    }

    #[tokio::test]
    async fn a_marked_connection_is_made_when_we_may_mark() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        match connect(
            addr,
            Some(ferry_model::mesh::SOCKET_MARK),
            Duration::from_secs(5),
        )
        .await
        {
            Ok(stream) => {
                let mark = SockRef::from(&stream).mark().unwrap();
                assert_eq!(mark, ferry_model::mesh::SOCKET_MARK);
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                eprintln!("skipped: setting SO_MARK needs CAP_NET_ADMIN ({e})");
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn where_the_clients_address_cannot_be_used_the_app_is_reached_on_loopback() {
        // An IPv6 client cannot be the source of a connection to an IPv4 app, root or not:
        // the connection falls back to loopback, from the sidecar's own address, counted.
        let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = app.local_addr().unwrap().port();
        let source = OriginalSource {
            client: "2001:db8::7".parse().unwrap(),
            fallback: "127.0.0.1".parse().unwrap(),
            fallbacks: Arc::default(),
        };
        let pod_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let _client = connect_from(&source, pod_addr, None, Duration::from_secs(5))
            .await
            .unwrap();
        let (_, peer) = app.accept().await.unwrap();
        assert_eq!(peer.ip(), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(source.fallbacks.count(), 1);
    }

    #[tokio::test]
    async fn the_app_sees_the_clients_address_where_the_kernel_allows_it() {
        // On loopback every 127/8 address is local, so no routing is needed to get the
        // replies back: only the permission matters (CAP_NET_ADMIN for IP_TRANSPARENT).
        let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = app.local_addr().unwrap();
        let source = OriginalSource {
            client: "127.0.0.9".parse().unwrap(),
            fallback: "127.0.0.1".parse().unwrap(),
            fallbacks: Arc::default(),
        };
        let _client = connect_from(&source, addr, None, Duration::from_secs(5))
            .await
            .unwrap();
        let (_, peer) = app.accept().await.unwrap();
        if may_be_transparent() {
            assert_eq!(peer.ip(), source.client);
            assert_eq!(source.fallbacks.count(), 0);
        } else {
            eprintln!("not root: IP_TRANSPARENT is refused, the fallback is checked instead");
            assert_eq!(peer.ip(), IpAddr::from([127, 0, 0, 1]));
            assert_eq!(source.fallbacks.count(), 1);
        }
    }

    /// Whether IP_TRANSPARENT may be set here (root, or CAP_NET_ADMIN).
    fn may_be_transparent() -> bool {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_ip_transparent_v4(true).is_ok()
    }

    #[tokio::test]
    async fn a_closed_port_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(connect(addr, None, Duration::from_secs(5)).await.is_err());
    }
}
