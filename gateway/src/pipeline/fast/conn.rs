//! A client connection on the fast path: its side, the upstream connections it keeps (a few,
//! by endpoint), the buffers its requests reuse, and the gateway's own answers written on it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_proxy::Failure;
use ferry_proxy::h1::pool::{Kept, Parking, Upstream};
use ferry_proxy::h1::quiet::Quiet;
use ferry_proxy::h1::relay::Side;
use ferry_proxy::h1::{Limits as HeadLimits, Malformed};
use ferry_runtime::Shutdown;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::deadline::CLOSE_GRACE;
use crate::metrics::Handles;

/// The longest the gateway's own answer waits for a client to take it.
const OWN_ANSWER_WRITE: Duration = Duration::from_secs(10);

/// One client connection on the fast path.
#[derive(Debug)]
pub(crate) struct Conn<S> {
    pub client: Side<Quiet<S>>,
    /// Idle upstream connections, a few by endpoint.
    kept: Kept,
    parking: Arc<Parking>,
    /// The request head sent upstream (kept for another attempt).
    pub(super) request_head: Vec<u8>,
    /// The answer's head sent to the client.
    pub(super) answer_head: Vec<u8>,
    /// Field lines the gateway adds to the answer (the affinity cookie).
    pub(super) extra: Vec<u8>,
    /// The metric handles of the last request's labels.
    pub(super) handles: Handles,
    /// Once it begins, answers close the connection.
    pub(super) shutdown: Shutdown,
}

impl<S> Conn<S> {
    pub(crate) fn new(io: S, parking: Arc<Parking>, shutdown: Shutdown) -> Conn<S> {
        Conn {
            client: Side::client(Quiet::new(io), HeadLimits::default()),
            kept: Kept::default(),
            parking,
            request_head: Vec::with_capacity(1024),
            answer_head: Vec::with_capacity(1024),
            extra: Vec::new(),
            handles: Handles::default(),
            shutdown,
        }
    }

    /// A connection to `endpoint` that can carry a request: one this client connection
    /// keeps, else one of the worker's pool.
    pub(super) fn take(&mut self, endpoint: SocketAddr) -> Option<Upstream> {
        self.kept.take(endpoint, &self.parking)
    }

    /// Keeps `up`, idle from now, for the next requests to `endpoint`.
    pub(super) fn keep(&mut self, endpoint: SocketAddr, up: Upstream) {
        self.kept.keep(endpoint, up, &self.parking);
    }

    /// When the first kept connection gets too old to use: the client connection's idle wait
    /// drops it then ([`Conn::drop_stale`]).
    pub(crate) fn kept_until(&self) -> Option<Instant> {
        self.kept
            .stale_at(self.parking.limit())
            .map(Instant::from_std)
    }

    /// Closes the kept connections too old to use.
    pub(crate) fn drop_stale(&mut self) {
        self.kept.drop_stale(self.parking.limit());
    }

    /// The client connection ends: its idle upstream connections go to the worker's pool.
    pub(crate) fn park(&mut self) {
        self.kept.park(&self.parking);
    }

    /// The connection and its unread bytes, for hyper's path.
    pub(crate) fn into_parts(mut self) -> (S, Vec<u8>) {
        self.park();
        let (io, rest) = self.client.into_parts();
        (io.into_inner(), rest)
    }
}

impl<S: AsyncWrite + Unpin> Conn<S> {
    /// Closes the client connection, waiting at most [`CLOSE_GRACE`] for what it holds (a TLS
    /// connection's last records, its close_notify) to go out.
    pub(crate) async fn close(&mut self) {
        self.client.io.close_within(CLOSE_GRACE).await;
    }

    /// Sends the gateway's own answer in `answer_head`; the connection closes after it when
    /// `close` (or when it cannot be written). Whether it stays open.
    pub(super) async fn send_own(&mut self, close: bool) -> bool {
        let written = self
            .client
            .io
            .send_within(&self.answer_head, OWN_ANSWER_WRITE)
            .await;
        match written {
            Ok(()) if !close => true,
            _ => {
                self.close().await;
                false
            }
        }
    }
}

/// The text of a refusal for a malformed request: the failure's where hyper's path has one.
pub(super) fn malformed_text(m: Malformed) -> &'static str {
    match m {
        Malformed::LengthAndChunked => Failure::LengthAndChunked.message(),
        Malformed::UnknownCoding => Failure::UnknownCoding.message(),
        Malformed::TargetTooLong => Failure::UriTooLong.message(),
        Malformed::HeadTooLarge | Malformed::TooManyFields => "request header fields too large\n",
        Malformed::BareLf => "bad request: a line ends in a bare LF\n",
        Malformed::ObsFold => "bad request: a header field is folded over lines\n",
        Malformed::ControlInField => "bad request: a control character in a header field\n",
        Malformed::FieldName => "bad request: an invalid header field name\n",
        Malformed::StartLine => "bad request: an invalid request line\n",
        Malformed::BadLength => "bad request: an invalid or repeated Content-Length\n",
        Malformed::NotChunked => {
            "bad request: a Transfer-Encoding whose last coding is not chunked\n"
        }
        Malformed::CodingInHttp10 => "bad request: Transfer-Encoding in an HTTP/1.0 request\n",
        Malformed::BadChunk | Malformed::Truncated => Failure::BodyBroken.message(),
        Malformed::UnaskedSwitch => Failure::Upstream.message(),
        Malformed::Host => Failure::NoHost.message(),
    }
}

/// A new upstream connection to `endpoint` within `timeout`.
pub(super) async fn connect(endpoint: SocketAddr, timeout: Duration) -> Result<Upstream, Failure> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(endpoint)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%endpoint, error = %e, "cannot connect upstream");
            return Err(Failure::Connect);
        }
        Err(_) => return Err(Failure::ConnectTimeout),
    };
    let _ = stream.set_nodelay(true);
    Ok(Box::new(Side::upstream(
        Quiet::new(stream),
        HeadLimits::default(),
    )))
}
