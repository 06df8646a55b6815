//! What an HTTP/2 stream and connection may hold in a proxy (the gateway's listeners and its
//! upstream pools), towards clients and towards upstreams, so a client that opens streams and
//! never reads holds a bounded amount.
//!
//! Per stream towards a client, hyper hands h2 a whole body chunk as soon as one byte of
//! capacity is free (h2 takes it while less than its send buffer is queued), and meanwhile
//! holds the next chunk: what one stream holds is at most [`MAX_SEND_BUF`] plus two chunks,
//! and a chunk is at most [`UPSTREAM_MAX_BUF`] (an HTTP/1.1 upstream's read) or one DATA
//! frame (an HTTP/2 upstream's, 16 KiB): 48 KiB a stream, 6 MiB for a connection's 128. Towards
//! upstreams, a stream's window is all an upstream may send that the gateway has not passed
//! on. Received bodies (uploads) are bounded by the windows the gateway advertises. The window
//! sizes are Envoy's for an edge proxy (64 KiB a stream, 1 MiB a connection); hyper's defaults
//! are 1 MiB windows and 400 KiB send buffers towards clients, 2 and 5 MiB windows towards
//! upstreams.

/// Streams one client connection may have open at once (nginx's
/// `http2_max_concurrent_streams`).
pub const MAX_STREAMS: u32 = 128;
/// A stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE), both ways.
pub const STREAM_WINDOW: u32 = 64 * 1024;
/// A connection's receive window, both ways.
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// What h2 buffers per stream for sending before it stops taking the body's next chunk.
pub const MAX_SEND_BUF: usize = 16 * 1024;
/// The largest read from an HTTP/1.1 upstream of the shared pool (the one HTTP/2 clients'
/// requests use): a body chunk, and the limit of an answer's head (nginx's
/// `proxy_buffer_size`, one page by default, limits it too).
pub const UPSTREAM_MAX_BUF: usize = 16 * 1024;

/// The server side: client connections' HTTP/2.
pub fn server<'a, 'b, E>(
    builder: &'a mut hyper_util::server::conn::auto::Http2Builder<'b, E>,
) -> &'a mut hyper_util::server::conn::auto::Http2Builder<'b, E> {
    builder
        .max_concurrent_streams(MAX_STREAMS)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .adaptive_window(false)
        .max_send_buf_size(MAX_SEND_BUF)
}

/// The shared upstream clients' `builder`, with the same bounds.
pub fn upstream(
    mut builder: hyper_util::client::legacy::Builder,
) -> hyper_util::client::legacy::Builder {
    builder
        .http1_max_buf_size(UPSTREAM_MAX_BUF)
        .http2_initial_stream_window_size(STREAM_WINDOW)
        .http2_initial_connection_window_size(CONNECTION_WINDOW)
        .http2_adaptive_window(false)
        .http2_max_send_buf_size(MAX_SEND_BUF);
    builder
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};
    use std::time::Duration;

    use bytes::Bytes;
    use hyper::body::{Body, Frame};
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// An answer that never ends, each chunk as large as an upstream read, counting what the
    /// server took from it.
    struct Endless(Arc<AtomicUsize>);

    static CHUNK: [u8; UPSTREAM_MAX_BUF] = [b'x'; UPSTREAM_MAX_BUF];

    impl Body for Endless {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.fetch_add(CHUNK.len(), Ordering::SeqCst);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK)))))
        }
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A client that opens streams with the largest windows and never reads makes the server
    /// hold at most its send buffer and two chunks per stream. The connection is in memory
    /// with a 64 KiB pipe (no kernel buffers), and time is paused: the runtime's clock only
    /// moves once every task waits, so the sleep below ends when the server has taken all
    /// it will take.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_holds_a_bounded_amount_per_stream() {
        const STREAMS: u32 = 32;
        const PIPE: usize = 64 * 1024;
        let (mut client, server) = tokio::io::duplex(PIPE);
        let taken = Arc::new(AtomicUsize::new(0));
        let counter = taken.clone();
        let service = hyper::service::service_fn(move |_req| {
            let body = Endless(counter.clone());
            async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(body)) }
        });
        tokio::spawn(async move {
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            super::server(builder.http2().timer(hyper_util::rt::TokioTimer::new()));
            let _ = builder
                .serve_connection(TokioIo::new(server), service)
                .await;
        });

        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // SETTINGS_INITIAL_WINDOW_SIZE: the largest; and the connection's window too.
        let max = 0x7fff_ffffu32;
        let mut setting = 4u16.to_be_bytes().to_vec();
        setting.extend_from_slice(&max.to_be_bytes());
        out.extend(frame(0x4, 0, 0, &setting));
        out.extend(frame(0x8, 0, 0, &(max - 65_535).to_be_bytes()));
        // GET / on each stream: :method GET, :scheme http, :path / (indexed), :authority a.
        let block = [0x82, 0x86, 0x84, 0x41, 0x01, b'a'];
        for i in 0..STREAMS {
            out.extend(frame(0x1, 0x4 | 0x1, 2 * i + 1, &block));
        }
        client.write_all(&out).await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;

        let taken = taken.load(Ordering::SeqCst);
        let per_stream = MAX_SEND_BUF + 2 * UPSTREAM_MAX_BUF;
        // What the pipe and h2's write buffer hold besides.
        let slack = PIPE + 64 * 1024;
        assert!(
            taken >= STREAMS as usize * UPSTREAM_MAX_BUF,
            "every stream started: {taken}"
        );
        assert!(
            taken <= STREAMS as usize * per_stream + slack,
            "{taken} bytes taken for {STREAMS} streams: more than {per_stream} a stream"
        );
    }
}
