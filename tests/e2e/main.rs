//! End-to-end tests: real parts started in process on 127.0.0.1:0, real sockets, real files.
//! One test binary; each module is one area.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod admin;
mod authorization_policies;
mod cli;
mod configs;
mod dns;
mod echo;
mod gateway;
mod identity;
mod kubectl;
mod kubectl_openapi;
mod kubectl_ops;
mod kubectl_write;
mod kubernetes_source;
mod listeners;
mod load;
mod local;
mod mesh;
mod mesh_client_addr;
mod mesh_probes;
mod mesh_rotation;
mod mesh_top;
mod mesh_traffic;
mod objects;
mod pod_network;
mod pod_services;
mod push;
mod push_destinations;
mod reload;
mod service_account_tokens;
mod service_accounts;
mod sidecar;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use ferry::up::{Up, UpConfig};
use ferry_runtime::ShutdownTrigger;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// Polling for a condition with a deadline, shared with the unit tests (ferry-testing).
pub use ferry_testing::{DEADLINE, eventually};

/// A GET over HTTP/1.1: status and body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = get(addr, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A server config with a self-signed certificate for `name`, offering h2 and HTTP/1.1 by
/// ALPN, and the certificate's PEM (for clients that should trust it).
pub fn tls_server_config(name: &str) -> (std::sync::Arc<rustls::ServerConfig>, String) {
    let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let mut config =
        rustls::ServerConfig::builder_with_provider(ferry_runtime::tls::provider().clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (std::sync::Arc::new(config), pem)
}

/// `ferry up`'s settings for a test: every listener on 127.0.0.1:0, no DNS upstreams.
pub fn up_config(paths: Vec<PathBuf>) -> UpConfig {
    UpConfig {
        paths,
        http: loopback(),
        https: loopback(),
        dns: loopback(),
        dns_upstreams: Vec::new(),
        dns_search: Vec::new(),
        dns_autopath: false,
        access_log: false,
        client_header_timeout: Duration::from_secs(60),
        keepalive_timeout: Duration::from_secs(75),
        admin: loopback(),
        cluster_domain: "cluster.local".into(),
        debounce: Duration::from_millis(50),
        local: local_config(),
        // The suite runs as it did before netns mode; pod_network.rs pins netns.
        pod_network: ferry_orchestrator::network::PodNetwork::Loopback,
        connections: Default::default(),
        api: None,
        mesh_state_dir: None,
    }
}

/// The local runtime for one test: pod and service ranges of their own (tests run in
/// parallel in this process, and a developer's `ferry up` may hold the default ranges), the
/// built `ferry` binary for `ferry/echo`, and a short crash back-off.
pub fn local_config() -> ferry_orchestrator::Config {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let (b, c) = (100 + n / 64, (n % 64) * 4);
    let mut local = ferry_orchestrator::Config::default();
    local.cluster.pod_cidr = format!("127.{b}.{c}.0/24").parse().unwrap();
    local.cluster.service_cidr = format!("127.{b}.{}.0/24", c + 1).parse().unwrap();
    local.kubelet.echo_program = PathBuf::from(env!("CARGO_BIN_EXE_ferry"));
    local.kubelet.backoff_base = Duration::from_millis(200);
    local
}

/// A running `ferry up`, stopped when dropped.
#[derive(Debug)]
pub struct Running {
    pub admin: SocketAddr,
    /// Cluster DNS, UDP and TCP.
    pub dns: SocketAddr,
    /// The gateway's plain and TLS listeners.
    pub http: SocketAddr,
    pub https: SocketAddr,
    /// The snapshot bus, for tests that publish snapshots directly.
    pub bus: ferry_runtime::SnapshotBus,
    trigger: ShutdownTrigger,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub async fn start(paths: Vec<PathBuf>) -> Running {
        Self::start_with(paths, |_| {}).await
    }

    /// Starts with the test's own settings on top of the defaults (all on 127.0.0.1:0).
    pub async fn start_with(paths: Vec<PathBuf>, adjust: impl FnOnce(&mut UpConfig)) -> Running {
        let mut config = up_config(paths);
        adjust(&mut config);
        let up = Up::build(config).await.unwrap();
        let admin = up.admin_addr();
        let dns = up.dns_addr();
        let (http, https) = (up.http_addr(), up.https_addr());
        let bus = up.bus().clone();
        let (trigger, shutdown) = ferry_runtime::shutdown::channel();
        let task = tokio::spawn(async move { up.run(shutdown).await.unwrap() });
        // Serving once every part (the gateway, DNS, …) has swapped in the first view, which
        // each does on its own task once running (a refused first view is version 0).
        let first = bus.current().version;
        eventually(DEADLINE, "every part serving the first view", || async {
            bus.parts().iter().all(|p| p.version >= first).then_some(())
        })
        .await;
        Running {
            admin,
            dns,
            http,
            https,
            bus,
            trigger,
            task: Some(task),
        }
    }

    pub async fn version(&self) -> u64 {
        get_json(self.admin, "/config").await["version"]
            .as_u64()
            .unwrap()
    }

    /// Waits until the served version is at least `v`, and every data plane part (the
    /// gateway, DNS, …) has swapped it in: each compiles a snapshot on its own time after the
    /// bus takes it.
    pub async fn wait_version(&self, v: u64) {
        eventually(DEADLINE, &format!("version {v}"), || async {
            let parts = self.bus.parts();
            (self.version().await >= v && parts.iter().all(|p| p.version >= v)).then_some(())
        })
        .await;
    }

    pub async fn stop(mut self) {
        self.trigger.trigger();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
