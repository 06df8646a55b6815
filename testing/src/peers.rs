//! Loopback peers the HTTP tests of the gateway and the sidecar share: an upstream that never
//! answers, and a client's upload.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server on loopback that takes one connection, reads what comes and never answers; once
/// the other side closes it, what was read goes to the receiver.
pub async fn silent() -> (SocketAddr, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("a bound address");
    let (closed, seen) = oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut chunk = [0u8; 1024];
        let mut read = Vec::new();
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = closed.send(read);
    });
    (addr, seen)
}

/// Writes `size` bytes of `b` on `writer`, 64 KiB at a time, until they are written or a write
/// fails (the other side stopped reading and closed): a client's upload.
pub fn upload(mut writer: OwnedWriteHalf, size: usize) -> JoinHandle<()> {
    tokio::spawn(async move {
        let piece = vec![b'b'; 64 << 10];
        for _ in 0..size / piece.len() {
            if writer.write_all(&piece).await.is_err() {
                return;
            }
        }
    })
}
