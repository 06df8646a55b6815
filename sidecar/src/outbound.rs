//! The outbound side: the app's connections, redirected here, go to what they were sent to,
//! through the mesh.
//!
//! One connection, in order: the original destination (`SO_ORIGINAL_DST`, else the configured
//! [`OutboundConfig::target`]); its answer from [`Discover`] (waited for at most the connect
//! timeout); detection, with the port's `appProtocol` or name as a hint; then
//! - HTTP to a Service: served request by request ([`http`]), each balanced over the endpoints;
//! - other TCP to a Service: one endpoint picked for the connection by the same balancer, mTLS
//!   to it when it is meshed, bytes copied both ways;
//! - no Service (or no answer in time): straight to the original destination, in plaintext.

mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_proxy::h1::pool::Parking;
use ferry_proxy::health::AttemptOutcome;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::detect::{self, Detected, Detection, Opaque, Prefixed};
use crate::discover::{Answer, Discover, Service};
use crate::listen::{Listener, Serve};
use crate::metrics::{Direction, Metrics};
use crate::tls::MeshTls;
use crate::upstream::{Connector, Identities};
use crate::{Error, socket};

/// How long an idle connection to an endpoint is kept for another request (hyper's pool's
/// default, which the HTTP/2 path keeps).
const POOL_IDLE: Duration = Duration::from_secs(90);

/// How the outbound side runs.
#[derive(Clone, Debug)]
pub struct OutboundConfig {
    pub addr: SocketAddr,
    /// Where a connection without an original destination goes (it was not redirected: tests
    /// on loopback). Without it such a connection is closed.
    pub target: Option<SocketAddr>,
    pub mark: Option<u32>,
    pub detection: Detection,
    pub connect_timeout: Duration,
    /// From sending a request to its response's head; past it the attempt fails with 504.
    pub response_timeout: Duration,
}

impl OutboundConfig {
    pub fn new(addr: SocketAddr) -> OutboundConfig {
        OutboundConfig {
            addr,
            target: None,
            mark: None,
            detection: Detection::default(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
        }
    }
}

/// What every outbound connection reads.
#[derive(Debug)]
pub struct Shared {
    config: OutboundConfig,
    discover: Arc<dyn Discover>,
    metrics: Arc<Metrics>,
    connector: Connector,
    clients: crate::upstream::Clients,
    /// Idle endpoint connections of the fast path, for the app's next connections.
    parking: Arc<Parking<crate::upstream::Conn>>,
}

/// The bound outbound listener.
pub type Outbound = Listener<Shared>;

impl Listener<Shared> {
    /// `identities` must be the one `discover` fills: the connector reads the expected identity
    /// of each endpoint from it.
    pub async fn build(
        config: OutboundConfig,
        tls: Arc<MeshTls>,
        discover: Arc<dyn Discover>,
        identities: Arc<Identities>,
        metrics: Arc<Metrics>,
    ) -> Result<Outbound, Error> {
        let connector = Connector {
            mark: config.mark,
            timeout: config.connect_timeout,
            tls,
            identities,
            metrics: metrics.clone(),
            source: None,
        };
        let clients = crate::upstream::Clients::new(&connector);
        let addr = config.addr;
        let parking = Arc::new(Parking::new(POOL_IDLE));
        http::sweep(&parking);
        let shared = Shared {
            config,
            discover,
            metrics,
            connector,
            clients,
            parking,
        };
        Listener::bind("outbound", addr, shared).await
    }
}

impl Serve for Shared {
    fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        client: SocketAddr,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        serve(self, stream, client)
    }
}

/// Whether a Service port's `appProtocol` or name says the traffic is not HTTP, so detection
/// need not read (Istio's port-name prefixes and common `appProtocol` values).
pub(crate) fn opaque_hint(service: &Service) -> bool {
    const OPAQUE: [&str; 8] = [
        "tcp",
        "tls",
        "mysql",
        "postgresql",
        "redis",
        "mongo",
        "kafka",
        "amqp",
    ];
    let starts = |s: &str| {
        OPAQUE
            .iter()
            .any(|p| s == *p || s.starts_with(&format!("{p}-")))
    };
    service
        .app_protocol
        .as_deref()
        .map(str::to_ascii_lowercase)
        .is_some_and(|p| starts(&p))
        || starts(&service.port_name.to_ascii_lowercase())
}

async fn serve(shared: Arc<Shared>, stream: TcpStream, client: SocketAddr) {
    let _open = shared.metrics.connection(Direction::Outbound);
    let Some(target) = socket::original_dst(&stream).or(shared.config.target) else {
        return tracing::debug!(%client, "no original destination and no target: closing");
    };
    let mut answers = shared.discover.get(&target.to_string());
    let answer = match tokio::time::timeout(
        shared.config.connect_timeout,
        answers.wait_for(|a| !matches!(a, Answer::Pending)),
    )
    .await
    {
        Ok(Ok(answer)) => answer.clone(),
        _ => Answer::NotService("no answer from the control plane in time".to_owned()),
    };
    let detected = match &answer {
        Answer::Service(s) if opaque_hint(s) => Ok((
            Detected::Opaque(Opaque::Hint),
            Prefixed::new(Default::default(), stream),
        )),
        _ => detect::detect(stream, target.port(), &shared.config.detection).await,
    };
    let (detected, io) = match detected {
        Ok(found) => found,
        Err(e) => return tracing::debug!(%client, error = %e, "reading the first bytes failed"),
    };
    shared.metrics.detected(Direction::Outbound, detected);
    match answer {
        Answer::Service(_) if detected.is_http() => {
            http::serve(shared, answers, detected, io, client).await;
        }
        Answer::Service(service) => opaque(&shared, &service, io, client).await,
        Answer::NotService(_) | Answer::Pending => {
            shared
                .metrics
                .plaintext(Direction::Outbound, "no_destination");
            match shared.connector.open(target, None).await {
                Ok(upstream) => copy(&shared, io, upstream, client).await,
                Err(e) => {
                    tracing::info!(%client, %target, error = %e, "cannot reach the destination")
                }
            }
        }
    }
}

/// Other TCP to a Service: one endpoint for the whole connection.
async fn opaque<I>(shared: &Shared, service: &Service, io: I, client: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut tried = Vec::new();
    loop {
        let Some(pick) = service.balancer.pick(None, &tried, Instant::now()) else {
            return tracing::info!(%client, service = %service.name, "no endpoint to connect to");
        };
        let addr = pick.addr();
        let expected = shared.connector.identities.get(&addr);
        if expected.is_none() {
            shared
                .metrics
                .plaintext(Direction::Outbound, "unmeshed_endpoint");
        }
        match shared.connector.open(addr, expected.as_ref()).await {
            Ok(upstream) => {
                pick.finish(AttemptOutcome::Success, Instant::now());
                return copy(shared, io, upstream, client).await;
            }
            Err(e) => {
                pick.finish(AttemptOutcome::ConnectError, Instant::now());
                tracing::info!(%client, endpoint = %addr, error = %e, "cannot connect; trying another endpoint");
                tried.push(addr);
            }
        }
    }
}

async fn copy<I, U>(shared: &Shared, mut io: I, mut upstream: U, client: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::io::copy_bidirectional(&mut io, &mut upstream).await {
        Ok((sent, received)) => shared.metrics.bytes(Direction::Outbound, sent, received),
        Err(e) => tracing::debug!(%client, error = %e, "connection ended with an error"),
    }
}

/// The newest answer of a subscription, when it is a Service.
fn service_of(answers: &watch::Receiver<Answer>) -> Option<Arc<Service>> {
    match &*answers.borrow() {
        Answer::Service(s) => Some(s.clone()),
        _ => None,
    }
}
