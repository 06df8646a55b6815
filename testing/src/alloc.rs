//! Allocations per request, counted by dhat's allocator: the test binary installs
//! `dhat::Alloc` as its global allocator and holds a `dhat::Profiler` while it runs (a binary
//! of its own without libtest's harness, whose thread allocates now and then): [`run`] its
//! test, [`answering`] its upstream, [`read_until`] its client's answers.

use std::future::Future;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Runs `test`, named `name`, in a current-thread runtime under dhat's profiler (its testing
/// mode: an assertion that fails is reported by it).
pub fn run(name: &str, test: impl Future<Output = ()>) {
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(test);
    println!("test {name} ... ok");
}

/// A server on loopback that answers every request head (no body) on its connections with
/// `answer`, allocating nothing per request.
pub async fn answering(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                loop {
                    let mut len = 0;
                    while !buf[..len].ends_with(b"\r\n\r\n") {
                        match stream.read(&mut buf[len..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => len += n,
                        }
                    }
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Reads from `stream` into `buf` until `done` says the bytes so far are whole; the bytes
/// read. No allocation.
pub async fn read_until(
    stream: &mut TcpStream,
    buf: &mut [u8],
    done: impl Fn(&[u8]) -> bool,
) -> usize {
    let mut len = 0;
    while !done(&buf[..len]) {
        let n = stream.read(&mut buf[len..]).await.expect("a read");
        assert!(n > 0, "closed mid-message after {len} bytes");
        len += n;
    }
    len
}

/// Runs `exchange` (one request and its answer, returning the bytes read) once, 1,000 times
/// to warm up, then 10,000 times; prints the allocations of each stage and panics on any in
/// the last.
pub async fn none_per_request(exchange: impl AsyncFnMut() -> usize) {
    exactly_per_request(exchange, 0).await;
}

/// [`none_per_request`], expecting `per_request` allocations a request in the last stage (those
/// of a dependency the test names), and failing on fewer too: a count that fell means the
/// allowance is stale and would hide one of ours.
pub async fn exactly_per_request(mut exchange: impl AsyncFnMut() -> usize, per_request: u64) {
    let cold = dhat::HeapStats::get();
    exchange().await;
    let first = dhat::HeapStats::get();
    // Buffers and metric handles settle over the first requests.
    for _ in 0..1_000 {
        exchange().await;
    }
    let warm = dhat::HeapStats::get();
    const N: u64 = 10_000;
    let mut read = 0;
    for _ in 0..N {
        read += exchange().await;
    }
    let after = dhat::HeapStats::get();
    let blocks = after.total_blocks - warm.total_blocks;
    println!(
        "first request: {} allocations ({} bytes); warm-up: {} allocations over 1,000; then {} \
         allocations ({} bytes) over {N} requests ({read} bytes read)",
        first.total_blocks - cold.total_blocks,
        first.total_bytes - cold.total_bytes,
        warm.total_blocks - first.total_blocks,
        blocks,
        after.total_bytes - warm.total_bytes,
    );
    assert_eq!(
        blocks,
        per_request * N,
        "allocations per request, once warm"
    );
}
