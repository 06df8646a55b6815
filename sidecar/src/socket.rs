//! The sidecar's own sockets: where an intercepted connection was going, and connections out
//! that carry the mesh's socket mark, so the Pod's interception rules let them pass instead of
//! sending them back to the sidecar.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

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
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connecting to {addr} took longer than {timeout:?}"),
        )),
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
    async fn a_closed_port_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(connect(addr, None, Duration::from_secs(5)).await.is_err());
    }
}
