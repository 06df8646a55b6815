use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{BUFFER, Conn, Io, Reader, SendError, Wire};
use crate::connect::Response;
use crate::failure::Failure;

/// What reading `bytes` in pieces of `piece` bytes gives, keeping unused bytes for the next
/// feed as `Conn` does: the response, whether the connection closes, the bytes left over.
fn read(bytes: &[u8], piece: usize, head: bool) -> Result<(Response, bool, usize), Failure> {
    let mut reader = Reader::new(head);
    let mut pending = Vec::new();
    let mut fed = 0;
    while fed < bytes.len() {
        let end = (fed + piece).min(bytes.len());
        pending.extend_from_slice(&bytes[fed..end]);
        fed = end;
        let used = reader.feed(&pending)?;
        pending.drain(..used);
        if reader.done() {
            let left = pending.len() + bytes.len() - fed;
            return Ok((reader.response()?, reader.close(), left));
        }
    }
    reader.eof()?;
    Ok((reader.response()?, reader.close(), pending.len()))
}

/// `read` at every split size gives the same answer.
fn read_any_split(bytes: &[u8], head: bool) -> Result<(u16, u64, bool, usize), Failure> {
    let whole =
        read(bytes, bytes.len().max(1), head).map(|(r, c, l)| (r.status.as_u16(), r.bytes, c, l));
    for piece in 1..bytes.len() {
        let split = read(bytes, piece, head).map(|(r, c, l)| (r.status.as_u16(), r.bytes, c, l));
        assert_eq!(split, whole, "pieces of {piece}");
    }
    whole
}

#[test]
fn content_length_bodies_are_counted_in_any_split() {
    let res = b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 13\r\n\r\nhello, world\n";
    assert_eq!(read_any_split(res, false), Ok((200, 13, false, 0)));
    let empty = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
    assert_eq!(read_any_split(empty, false), Ok((404, 0, false, 0)));
    // Repeated equal lengths are one length.
    let twice = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi";
    assert_eq!(read_any_split(twice, false), Ok((200, 2, false, 0)));
}

#[test]
fn chunked_bodies_with_extensions_and_trailers_in_any_split() {
    let res = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n7;name=value\r\n, world\r\nA\r\n0123456789\r\n0\r\n\
        Expires: never\r\nX-Checksum: abc\r\n\r\n";
    assert_eq!(read_any_split(res, false), Ok((200, 22, false, 0)));
    let bare = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    assert_eq!(read_any_split(bare, false), Ok((200, 3, false, 0)));
    // Transfer-Encoding wins over Content-Length.
    let both = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n";
    assert_eq!(read_any_split(both, false), Ok((200, 1, false, 0)));
}

#[test]
fn no_body_for_head_204_304_whatever_the_headers_say() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n";
    assert_eq!(read_any_split(head, true), Ok((200, 0, false, 0)));
    let chunked_head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(read_any_split(chunked_head, true), Ok((200, 0, false, 0)));
    let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
    assert_eq!(read_any_split(no_content, false), Ok((204, 0, false, 0)));
    let not_modified = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 13\r\n\r\n";
    assert_eq!(read_any_split(not_modified, false), Ok((304, 0, false, 0)));
}

#[test]
fn informational_responses_are_skipped() {
    let res = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
        HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx";
    assert_eq!(read_any_split(res, false), Ok((201, 1, false, 0)));
    // We never ask to switch protocols.
    let upgrade = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
    assert_eq!(read_any_split(upgrade, false), Err(Failure::Protocol));
}

#[test]
fn close_and_bodies_that_run_until_close() {
    let close = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(read_any_split(close, false), Ok((200, 2, true, 0)));
    let old = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(read_any_split(old, false), Ok((200, 2, true, 0)));
    let old_kept = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(read_any_split(old_kept, false), Ok((200, 2, false, 0)));
    // No length: the body is everything until the server closes.
    let until_close = b"HTTP/1.1 200 OK\r\n\r\nall of this is body";
    assert_eq!(read_any_split(until_close, false), Ok((200, 19, true, 0)));
    let unknown_coding = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc";
    assert_eq!(read_any_split(unknown_coding, false), Ok((200, 3, true, 0)));
}

#[test]
fn bytes_after_the_response_are_left_unused() {
    let res = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
    assert_eq!(read_any_split(res, false), Ok((200, 2, false, 5)));
}

#[test]
fn broken_responses_are_protocol_errors_and_truncated_ones_resets() {
    for bad in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n",
    ] {
        assert_eq!(
            read_any_split(bad, false),
            Err(Failure::Protocol),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    for truncated in [
        &b"HTTP/1.1 200 OK\r\nContent-Le"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"",
    ] {
        assert_eq!(read_any_split(truncated, false), Err(Failure::Reset));
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_static(value));
    }
    map
}

#[test]
fn the_request_is_serialized_once_as_hyper_would() {
    let h = headers(&[("host", "shop.example.com"), ("x-a", "1"), ("x-a", "2")]);
    let wire = Wire::encode(&Method::GET, "/p?q=1", &h, b"").unwrap();
    assert_eq!(
        &wire.bytes[..],
        b"GET /p?q=1 HTTP/1.1\r\nhost: shop.example.com\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
    );
    assert!(!wire.head);
    let wire = Wire::encode(&Method::POST, "/", &headers(&[("host", "h")]), b"body").unwrap();
    assert_eq!(
        &wire.bytes[..],
        b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\n\r\nbody"
    );
    // A given length is kept as given.
    let h = headers(&[("host", "h"), ("content-length", "4")]);
    let wire = Wire::encode(&Method::PUT, "/", &h, b"body").unwrap();
    assert_eq!(
        &wire.bytes[..],
        b"PUT / HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\n\r\nbody"
    );
    assert!(
        Wire::encode(&Method::HEAD, "/", &headers(&[("host", "h")]), b"")
            .unwrap()
            .head
    );
    let chunked = headers(&[("host", "h"), ("transfer-encoding", "chunked")]);
    assert!(Wire::encode(&Method::POST, "/", &chunked, b"x").is_err());
    assert!(Wire::encode(&Method::GET, "/", &HeaderMap::new(), b"").is_err());
}

/// A server on 127.0.0.1:0 that runs `each` on its one connection; the client's connection.
async fn serve<F, Fut>(each: F) -> (Conn, tokio::task::JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        each(stream).await;
    });
    let conn = Conn::new(Io::Plain(TcpStream::connect(addr).await.unwrap()));
    (conn, server)
}

/// Reads one request head from `stream`; false when the client went away.
async fn read_head(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => buf.push(byte[0]),
        }
    }
    true
}

fn get() -> Wire {
    Wire::encode(&Method::GET, "/", &headers(&[("host", "t")]), b"").unwrap()
}

#[tokio::test]
async fn a_response_in_one_byte_writes_then_another_on_the_same_connection() {
    let (mut conn, _server) = serve(|mut s| async move {
        s.set_nodelay(true).unwrap();
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            4\r\nload\r\n0\r\nTrailer: yes\r\n\r\n";
        assert!(read_head(&mut s).await);
        for byte in chunked {
            s.write_all(&[*byte]).await.unwrap();
            s.flush().await.unwrap();
            // Let each byte leave as its own segment.
            tokio::task::yield_now().await;
        }
        assert!(read_head(&mut s).await);
        s.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc")
            .await
            .unwrap();
        // Hold the connection until the client is done with it.
        let _ = s.read(&mut [0u8; 1]).await;
    })
    .await;
    let wire = get();
    let first = conn.send(&wire).await.unwrap();
    assert_eq!((first.status.as_u16(), first.bytes), (200, 4));
    assert!(conn.is_open());
    let second = conn.send(&wire).await.unwrap();
    assert_eq!((second.status.as_u16(), second.bytes), (201, 3));
    assert!(conn.is_open());
}

#[tokio::test]
async fn a_body_larger_than_the_buffer_streams_through_it() {
    let size = 5 * BUFFER + 123;
    let (mut conn, _server) = serve(move |mut s| async move {
        assert!(read_head(&mut s).await);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&vec![b'x'; size]).await.unwrap();
        let _ = s.read(&mut [0u8; 1]).await;
    })
    .await;
    let r = conn.send(&get()).await.unwrap();
    assert_eq!(r.bytes, size as u64);
    assert!(conn.is_open());
}

#[tokio::test]
async fn connection_close_and_read_until_close_end_the_connection() {
    let (mut conn, _server) = serve(|mut s| async move {
        assert!(read_head(&mut s).await);
        s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
    })
    .await;
    let r = conn.send(&get()).await.unwrap();
    assert_eq!((r.status.as_u16(), r.bytes), (200, 2));
    assert!(!conn.is_open());

    let (mut conn, _server) = serve(|mut s| async move {
        assert!(read_head(&mut s).await);
        s.write_all(b"HTTP/1.0 200 OK\r\n\r\nuntil ").await.unwrap();
        s.write_all(b"the end").await.unwrap();
    })
    .await;
    let r = conn.send(&get()).await.unwrap();
    assert_eq!((r.status.as_u16(), r.bytes), (200, 13));
    assert!(!conn.is_open());
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_stale_and_a_fresh_one_reset() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (mut conn, server) = serve(|mut s| async move {
        assert!(read_head(&mut s).await);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let _ = rx.await;
        // Dropped: closed while idle, as a keep-alive timeout does.
    })
    .await;
    conn.send(&get()).await.unwrap();
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.send(&get()).await.unwrap_err(), SendError::Stale);
    assert!(!conn.is_open());

    // Found closed before its first request: stale too, as nothing was sent.
    let (mut conn, server) = serve(|_| async {}).await;
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !conn.closed_before_use() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the close never arrived"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(conn.send(&get()).await.unwrap_err(), SendError::Stale);

    // On a connection that took the request and closed without answering, the same is the
    // server's failure.
    let (mut conn, _server) = serve(|mut s| async move {
        read_head(&mut s).await;
    })
    .await;
    assert_eq!(
        conn.send(&get()).await.unwrap_err(),
        SendError::Failed(Failure::Reset)
    );
}

#[tokio::test]
async fn a_malformed_status_line_is_a_protocol_error() {
    let (mut conn, _server) = serve(|mut s| async move {
        assert!(read_head(&mut s).await);
        s.write_all(b"HTTP/1.1 2OO OK\r\n\r\n").await.unwrap();
        let _ = s.read(&mut [0u8; 1]).await;
    })
    .await;
    assert_eq!(
        conn.send(&get()).await.unwrap_err(),
        SendError::Failed(Failure::Protocol)
    );
    assert!(!conn.is_open());
}
