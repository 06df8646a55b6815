//! A root rotation seen from the sidecar's control connections: `--control-ca` holds the old
//! root, the control plane's certificate is reissued under the new one and its connections
//! drop (as after `ferry identity rotate --root --finish`); the `Destination.Get` and
//! `GetInboundPolicy` subscriptions reconnect because they trust the latest trust bundle the
//! identity client published, not only the file read at start.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_model::proto;
use ferry_model::proto::destination_update::Update;
use ferry_proxy::BalancerConfig;
use ferry_runtime::subscribe::channel;
use ferry_runtime::subscribe::grpc::destination_server::{Destination, DestinationServer};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::codegen::tokio_stream::{self, Stream, StreamExt};

use super::{Answer, ControlConfig, ControlDiscover, Discover};
use crate::inbound::MtlsMode;
use crate::policy::{InboundPolicy, PolicyConfig, follow};
use crate::test_pki::{Ca, id, watch_of};
use crate::upstream::Identities;

type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>;

/// Answers every `Get` with `NoDestination` and every `GetInboundPolicy` with the next
/// version, strict; then keeps the stream open.
struct Fake {
    calls: AtomicU64,
}

#[tonic::async_trait]
impl Destination for Fake {
    type GetStream = Answers<proto::DestinationUpdate>;
    type GetInboundPolicyStream = Answers<proto::InboundPolicy>;

    async fn get(
        &self,
        request: tonic::Request<proto::GetDestination>,
    ) -> Result<tonic::Response<Self::GetStream>, tonic::Status> {
        let update = proto::DestinationUpdate {
            update: Some(Update::NoDestination(proto::NoDestination {
                reason: format!("no Service at {}", request.into_inner().authority),
            })),
            ..Default::default()
        };
        let answers =
            tokio_stream::iter([Ok::<_, tonic::Status>(update)]).chain(tokio_stream::pending());
        Ok(tonic::Response::new(Box::pin(answers)))
    }

    async fn get_inbound_policy(
        &self,
        _: tonic::Request<proto::GetInboundPolicy>,
    ) -> Result<tonic::Response<Self::GetInboundPolicyStream>, tonic::Status> {
        let answer = proto::InboundPolicy {
            version: self.calls.fetch_add(1, Ordering::Relaxed) + 1,
            mtls_mode: proto::MtlsMode::Strict as i32,
            ..Default::default()
        };
        let answers =
            tokio_stream::iter([Ok::<_, tonic::Status>(answer)]).chain(tokio_stream::pending());
        Ok(tonic::Response::new(Box::pin(answers)))
    }
}

/// A control plane on 127.0.0.1 whose certificate can be reissued under another root.
struct Control {
    addr: SocketAddr,
    tls: Arc<Mutex<Arc<ServerConfig>>>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn server_config(ca: &Ca) -> Arc<ServerConfig> {
    let (cert, key) = ca.issue_server_pem(LOOPBACK);
    let mut config = ServerConfig::builder_with_provider(ferry_runtime::tls::provider().clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

impl Control {
    async fn start(ca: &Ca) -> Control {
        let listener = tokio::net::TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let control = Control {
            addr: listener.local_addr().unwrap(),
            tls: Arc::new(Mutex::new(server_config(ca))),
            connections: Arc::default(),
        };
        let (tls, connections) = (control.tls.clone(), control.connections.clone());
        let service = DestinationServer::new(Fake {
            calls: AtomicU64::new(0),
        });
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.lock().unwrap().clone());
                let service = TowerToHyperService::new(service.clone());
                let task = tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                connections.lock().unwrap().push(task.abort_handle());
            }
        });
        control
    }

    /// The certificate reissued under `ca`; every open connection dropped.
    fn rotate(&self, ca: &Ca) {
        *self.tls.lock().unwrap() = server_config(ca);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn url(&self) -> http::Uri {
        format!("https://{}", self.addr).parse().unwrap()
    }
}

/// Polls `done` every 10 ms for at most 10 s.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn not_service(answer: &tokio::sync::watch::Receiver<Answer>) -> bool {
    matches!(&*answer.borrow(), Answer::NotService(_))
}

#[tokio::test]
async fn subscriptions_reconnect_after_the_root_changed_trusting_the_latest_bundle() {
    let (old, new) = (Ca::new(), Ca::new());
    let control = Control::start(&old).await;
    let workload = id("shop", "web");
    let (credentials, trust) = watch_of(old.issue(&workload));
    let config = ControlConfig {
        url: control.url(),
        ca_pem: old.root_pem().into_bytes(),
        trust: Some(trust),
        token: "pod-token".to_owned(),
        caller: "shop/web-0".to_owned(),
        node: "node-1".to_owned(),
    };
    let (_stop, shutdown) = ferry_runtime::shutdown::channel();
    let policy = Arc::new(InboundPolicy::new(MtlsMode::Permissive));
    tokio::spawn(follow(
        PolicyConfig {
            control: config.clone(),
            namespace: "shop".to_owned(),
            pod: "web-0".to_owned(),
        },
        policy.clone(),
        shutdown,
    ));
    let discover = ControlDiscover::new(
        config.clone(),
        BalancerConfig::default(),
        Arc::new(Identities::default()),
    );
    let before = discover.get("10.96.0.1:80");
    until("the first policy", || policy.current().version == 1).await;
    assert_eq!(policy.current().mode, MtlsMode::Strict);
    until("the first destination answer", || not_service(&before)).await;

    // The rotation's end: the control plane serves under the new root alone, and the identity
    // client's next answer carries the new bundle.
    control.rotate(&new);
    credentials.send_replace(Some(Arc::new(new.issue(&workload))));
    let stale = ControlConfig {
        trust: None,
        ..config.clone()
    };
    assert!(
        channel(&control.url(), &stale.roots_pem()).await.is_err(),
        "--control-ca alone must no longer verify the control plane"
    );

    until("the policy after the rotation", || {
        policy.current().version == 2
    })
    .await;
    let after = discover.get("10.96.0.2:80");
    until("a destination answer after the rotation", || {
        not_service(&after)
    })
    .await;
}
