//! One target's connections: resolving it, opening TCP (+ TLS) and an HTTP/1.1 connection
//! (our own, see `http1`) or an HTTP/2 one (hyper), and sending one request and reading its
//! response whole.
//!
//! Each load connection is exactly one of these, so `--connections` is exact.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{Config, Protocol};
use crate::failure::Failure;
use crate::http1::{self, Io, SendError, Wire};
use crate::target::Target;
use crate::{Error, tls};

/// The request body type: the same bytes for every request, cloned by reference count.
pub type Body = Full<Bytes>;

/// Everything needed to open connections to one target and send it requests.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub target: Target,
    pub addr: SocketAddr,
    protocol: Protocol,
    tls: Option<Tls>,
    timeout: Duration,
    request: Template,
}

/// The TLS side of an https target.
#[derive(Clone)]
struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The request every load request copies: hyper's form for HTTP/2, the bytes for HTTP/1.1.
#[derive(Clone, Debug)]
struct Template {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// `None` for HTTP/2.
    wire: Option<Wire>,
}

/// Why a connection could not be opened, with the words a user needs.
#[derive(Debug)]
pub struct ConnectError {
    pub kind: Failure,
    pub message: String,
}

/// A ready HTTP connection.
#[derive(Debug)]
pub enum Sender {
    Http1(http1::Conn),
    Http2(http2::SendRequest<Body>),
}

impl Endpoint {
    /// Resolves the target's host (once: every connection goes to the same address).
    pub async fn build(target: &Target, config: &Config) -> Result<Endpoint, Error> {
        let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|source| Error::Resolve {
                host: target.host.clone(),
                source,
            })?
            .next()
            .ok_or_else(|| Error::Resolve {
                host: target.host.clone(),
                source: std::io::Error::other("no address found"),
            })?;
        let tls = if target.tls {
            Some(Tls {
                connector: TlsConnector::from(tls::build(&config.tls, config.protocol)?),
                name: tls::server_name(&config.tls, &target.host)?,
            })
        } else {
            None
        };
        Ok(Endpoint {
            target: target.clone(),
            addr,
            protocol: config.protocol,
            tls,
            timeout: config.timeout,
            request: Template::build(target, config)?,
        })
    }

    /// Opens one connection: TCP, TLS if the URL says https, then the HTTP handshake.
    pub async fn connect(&self) -> Result<Sender, ConnectError> {
        match tokio::time::timeout(self.timeout, self.connect_inner()).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError {
                kind: Failure::Connect,
                message: format!("no connection within {:?}", self.timeout),
            }),
        }
    }

    async fn connect_inner(&self) -> Result<Sender, ConnectError> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| ConnectError {
                kind: Failure::Connect,
                message: e.to_string(),
            })?;
        // Requests are small and latency is what we measure: never wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let Some(Tls { connector, name }) = &self.tls else {
            return match self.protocol {
                Protocol::Http1 => Ok(Sender::Http1(http1::Conn::new(Io::Plain(tcp)))),
                Protocol::Http2 => self.h2_handshake(tcp).await,
            };
        };
        let stream = connector
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| ConnectError {
                kind: Failure::Tls,
                message: e.to_string(),
            })?;
        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        match (self.protocol, alpn.as_deref()) {
            (Protocol::Http2, Some(b"h2")) => self.h2_handshake(stream).await,
            (Protocol::Http1, None | Some(b"http/1.1")) => {
                Ok(Sender::Http1(http1::Conn::new(Io::Tls(Box::new(stream)))))
            }
            (wanted, chosen) => Err(ConnectError {
                kind: Failure::Tls,
                message: format!(
                    "the server did not agree to {} by ALPN (it chose {})",
                    wanted.name(),
                    chosen.map_or("nothing".into(), |c| String::from_utf8_lossy(c)
                        .into_owned())
                ),
            }),
        }
    }

    async fn h2_handshake<T>(&self, io: T) -> Result<Sender, ConnectError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let protocol_error = |e: hyper::Error| ConnectError {
            kind: Failure::classify(&e),
            message: format!("{} handshake: {e}", self.protocol.name()),
        };
        let (mut sender, conn) = http2::Builder::new(TokioExecutor::new())
            // Responses should not wait on window updates at load.
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(16 << 20)
            .handshake(TokioIo::new(io))
            .await
            .map_err(protocol_error)?;
        tokio::spawn(conn);
        sender.ready().await.map_err(protocol_error)?;
        Ok(Sender::Http2(sender))
    }

    /// A fresh copy of the request, for HTTP/2.
    pub fn request(&self) -> Request<Body> {
        let t = &self.request;
        let mut req = Request::new(Full::new(t.body.clone()));
        *req.method_mut() = t.method.clone();
        *req.uri_mut() = t.uri.clone();
        *req.headers_mut() = t.headers.clone();
        req
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Template {
    fn build(target: &Target, config: &Config) -> Result<Template, Error> {
        let mut headers = config.headers.clone();
        let uri = match config.protocol {
            Protocol::Http1 => {
                if !headers.contains_key(HOST) {
                    let host = HeaderValue::from_str(target.authority.as_str())
                        .map_err(|_| Error::Invalid(format!("bad host in {}", target.url)))?;
                    headers.insert(HOST, host);
                }
                Uri::from(target.path_and_query.clone())
            }
            Protocol::Http2 => {
                // HTTP/2 carries the host as :authority; a -H Host sets it.
                let authority = match headers.remove(HOST) {
                    Some(host) => host
                        .to_str()
                        .ok()
                        .and_then(|h| h.parse::<Authority>().ok())
                        .ok_or_else(|| Error::Invalid(format!("invalid Host header {host:?}")))?,
                    None => target.authority.clone(),
                };
                target
                    .absolute_uri(&authority)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", target.url)))?
            }
        };
        let wire = match config.protocol {
            Protocol::Http1 => Some(
                Wire::encode(
                    &config.method,
                    uri.path_and_query().map_or("/", |p| p.as_str()),
                    &headers,
                    &config.body,
                )
                .map_err(Error::Invalid)?,
            ),
            Protocol::Http2 => None,
        };
        Ok(Template {
            method: config.method.clone(),
            uri,
            headers,
            body: config.body.clone(),
            wire,
        })
    }
}

/// A complete response.
#[derive(Clone, Copy, Debug)]
pub struct Response {
    pub status: StatusCode,
    pub bytes: u64,
}

/// Why a send got no response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    Failed(Failure),
    /// An HTTP/1.1 connection the server had closed while idle: send again on a fresh one.
    Stale,
}

impl From<Failure> for Unanswered {
    fn from(kind: Failure) -> Unanswered {
        Unanswered::Failed(kind)
    }
}

impl Sender {
    /// Sends the endpoint's request and reads the whole response (the body is counted, not
    /// kept).
    pub async fn send(&mut self, ep: &Endpoint) -> Result<Response, Unanswered> {
        let s = match self {
            Sender::Http1(conn) => {
                let Some(wire) = &ep.request.wire else {
                    return Err(Unanswered::Failed(Failure::Protocol));
                };
                return conn.send(wire).await.map_err(|e| match e {
                    SendError::Failed(kind) => Unanswered::Failed(kind),
                    SendError::Stale => Unanswered::Stale,
                });
            }
            Sender::Http2(s) => s,
        };
        let classify = |e: hyper::Error| Failure::classify(&e);
        let res = s.send_request(ep.request()).await.map_err(classify)?;
        let status = res.status();
        let mut body = res.into_body();
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.map_err(classify)?.data_ref() {
                bytes += data.len() as u64;
            }
        }
        Ok(Response { status, bytes })
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(conn) => !conn.is_open(),
            Sender::Http2(s) => s.is_closed(),
        }
    }

    /// Another handle on the same HTTP/2 connection; `None` for HTTP/1.1.
    pub fn share(&self) -> Option<Sender> {
        match self {
            Sender::Http1(_) => None,
            Sender::Http2(s) => Some(Sender::Http2(s.clone())),
        }
    }
}
