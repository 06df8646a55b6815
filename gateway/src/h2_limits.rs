//! What an HTTP/2 stream and connection may hold in the gateway, towards clients and towards
//! upstreams, so a client that opens streams and never reads holds a bounded amount.
//!
//! Per stream towards a client, hyper hands h2 a whole body chunk as soon as one byte of
//! capacity is free, and h2 keeps up to its send buffer per stream: what one stream holds is
//! at most [`MAX_SEND_BUF`] plus one chunk, and a chunk is at most [`UPSTREAM_MAX_BUF`] (an
//! HTTP/1.1 upstream's read) or one DATA frame (an HTTP/2 upstream's, 16 KiB). Towards
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
/// The largest read from an HTTP/1.1 upstream for the shared pool (a body chunk, and the
/// limit of an answer's head, as nginx's `proxy_buffer_size` limits it).
pub const UPSTREAM_MAX_BUF: usize = 64 * 1024;

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
