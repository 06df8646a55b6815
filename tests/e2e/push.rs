//! `ferry control` pushing to `ferry gateway --control` and `ferry dns --control`, each a
//! separate process (the built binary), or a part's subscription in process where no binary is
//! needed: a change reaches the parts, an unknown token is refused, a NACK shows in `ferry get
//! proxies`, a control plane killed and restarted leaves the gateway serving and resyncs it,
//! and a DNS server never holds a private key.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use ferry_runtime::SnapshotBus;
use ferry_runtime::subscribe::{Config, Role, Subscriber};
use hickory_proto::rr::RecordType;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use crate::{DEADLINE, eventually};

/// A `ferry` process with its JSON log lines; killed when dropped.
pub(crate) struct Process {
    child: Child,
    lines: mpsc::UnboundedReceiver<serde_json::Value>,
    seen: Vec<String>,
}

impl Process {
    pub(crate) fn spawn(args: &[&str]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("--log-format")
            .arg("json")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line }));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Process {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first log line (from now) with this message.
    pub(crate) async fn log(&mut self, message: &str) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.to_string());
                    if line["message"] == message {
                        return line;
                    }
                }
                Ok(None) | Err(_) => panic!(
                    "no log line {message:?}; the process logged:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An address logged as `127.0.0.1:1` or `Some(127.0.0.1:1)`.
pub(crate) fn addr(line: &serde_json::Value, field: &str) -> SocketAddr {
    let text = line[field].as_str().unwrap_or_default();
    let text = text
        .strip_prefix("Some(")
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(text);
    text.parse()
        .unwrap_or_else(|_| panic!("{field} in {line} is not an address"))
}

/// A running `ferry control` and its state directory.
pub(crate) struct ControlPlane {
    pub(crate) process: Process,
    pub(crate) push: SocketAddr,
    pub(crate) admin: SocketAddr,
}

impl ControlPlane {
    pub(crate) async fn start(manifests: &Path, state: &Path, listen: SocketAddr) -> ControlPlane {
        ControlPlane::start_with(manifests, state, listen, &[]).await
    }

    /// [`ControlPlane::start`] with more flags.
    pub(crate) async fn start_with(
        manifests: &Path,
        state: &Path,
        listen: SocketAddr,
        extra: &[&str],
    ) -> ControlPlane {
        let listen = listen.to_string();
        let mut args = vec![
            "control",
            "-f",
            manifests.to_str().unwrap(),
            "--listen",
            &listen,
            "--state-dir",
            state.to_str().unwrap(),
            "--admin",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut process = Process::spawn(&args);
        let up = process.log("ferry control is up").await;
        ControlPlane {
            push: addr(&up, "push"),
            admin: addr(&up, "admin"),
            process,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.push.port())
    }

    pub(crate) async fn proxies(&self) -> Vec<serde_json::Value> {
        let status = crate::get_json(self.admin, "/status").await;
        status["proxies"].as_array().cloned().unwrap_or_default()
    }
}

fn part_args<'a>(role: &'a str, control: &'a str, state: &'a Path, name: &'a str) -> Vec<String> {
    [
        role,
        "--control",
        control,
        "--control-ca",
        state.join("ca.crt").to_str().unwrap(),
        "--token-file",
        state.join("join-token").to_str().unwrap(),
        "--name",
        name,
        "--admin",
        "127.0.0.1:0",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

async fn gateway(
    control: &ControlPlane,
    state: &Path,
    token_file: Option<&Path>,
) -> (Process, SocketAddr, SocketAddr) {
    let url = control.url();
    let mut args = part_args("gateway", &url, state, "edge-1");
    if let Some(token) = token_file {
        args[6] = token.to_str().unwrap().to_owned();
    }
    args.extend(
        [
            "--http",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
            "--workers",
            "1",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut process = Process::spawn(&args);
    let up = process.log("ferry gateway is up").await;
    let http = addr(&up, "http");
    let admin = addr(&process.log("admin is up").await, "admin");
    (process, http, admin)
}

async fn dns(control: &ControlPlane, state: &Path) -> (Process, SocketAddr, SocketAddr) {
    let url = control.url();
    let mut args = part_args("dns", &url, state, "dns-1");
    args.extend(["--listen", "127.0.0.1:0"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut process = Process::spawn(&args);
    let up = process.log("ferry dns is up").await;
    let listen = addr(&up, "dns");
    let admin = addr(&process.log("admin is up").await, "admin");
    (process, listen, admin)
}

/// An HTTP/1.1 upstream that answers every request with `body`.
async fn upstream(body: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(move |_req| async move {
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(body))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// A Service with a cluster IP, its EndpointSlice to `backend` and an Ingress for `host`.
fn site(name: &str, cluster_ip: &str, backend: SocketAddr, host: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  clusterIP: {cluster_ip}\n  ports: [{{name: http, port: 80}}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-0\n  namespace: shop\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nendpoints:\n- addresses: [127.0.0.1]\nports: [{{name: http, port: {port}}}]\n\
         ---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service: {{name: {name}, port: {{number: 80}}}}\n",
        port = backend.port()
    )
}

/// A TLS Secret (so the snapshot holds a private key).
fn tls_secret() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["shop.example.com".to_owned()]).unwrap();
    let indent = |pem: String| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let key = cert.signing_key.serialize_pem();
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: shop-tls, namespace: shop}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}\
         ---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: shop-tls, namespace: shop}}\nspec:\n  tls:\n  - hosts: [shop.example.com]\n    secretName: shop-tls\n  rules:\n  - host: shop.example.com\n    http:\n      paths:\n      - path: /tls\n        pathType: Prefix\n        backend:\n          service: {{name: web, port: {{number: 80}}}}\n",
        indent(cert.cert.pem()),
        indent(key.clone())
    );
    (yaml, key)
}

async fn status_of(http: SocketAddr, host: &str) -> Option<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(http).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", host)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.ok()?;
    let status = res.status().as_u16();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .ok()?
        .to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn serves(http: SocketAddr, host: &str, body: &str) {
    eventually(DEADLINE, &format!("the gateway serves {host}"), || async {
        let (status, got) = status_of(http, host).await?;
        (status == 200 && got == body).then_some(())
    })
    .await;
}

async fn resolves(dns: SocketAddr, name: &str, ip: &str) {
    eventually(
        DEADLINE,
        &format!("DNS answers {name} with {ip}"),
        || async {
            let answer = crate::dns::ask(dns, name, RecordType::A).await;
            (crate::dns::data(&answer) == [ip]).then_some(())
        },
    )
    .await;
}

/// The pushes of `kind` (`full` or `delta`) a part took, from its `/metrics`.
async fn pushes_taken(admin: SocketAddr, kind: &str) -> u64 {
    let (_, metrics) = crate::get(admin, "/metrics").await;
    let series = format!("ferry_subscription_pushes_total{{kind=\"{kind}\",answer=\"ack\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// The requests a gateway answered, from its `/metrics`.
async fn requests_answered(admin: SocketAddr) -> u64 {
    let (_, metrics) = crate::get(admin, "/metrics").await;
    metrics
        .lines()
        .filter(|l| l.starts_with("ferry_gateway_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

pub(crate) fn loopback0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test]
async fn a_manifest_change_reaches_a_gateway_and_a_dns_server_through_control() {
    let manifests = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (web, api) = (upstream("web").await, upstream("api").await);
    std::fs::write(
        manifests.path().join("web.yaml"),
        site("web", "10.96.0.10", web, "web.example.com"),
    )
    .unwrap();
    let control = ControlPlane::start(manifests.path(), state.path(), loopback0()).await;
    let (_gateway, http, gateway_admin) = gateway(&control, state.path(), None).await;
    let (_dns, dns_addr, dns_admin) = dns(&control, state.path()).await;
    serves(http, "web.example.com", "web").await;
    resolves(dns_addr, "web.shop.svc.cluster.local.", "10.96.0.10").await;
    for admin in [gateway_admin, dns_admin] {
        assert_eq!(pushes_taken(admin, "delta").await, 0);
    }

    std::fs::write(
        manifests.path().join("api.yaml"),
        site("api", "10.96.0.11", api, "api.example.com"),
    )
    .unwrap();
    serves(http, "api.example.com", "api").await;
    resolves(dns_addr, "api.shop.svc.cluster.local.", "10.96.0.11").await;
    // The change came as a delta (what changed), not the whole view again.
    for admin in [gateway_admin, dns_admin] {
        assert_eq!(pushes_taken(admin, "full").await, 1);
        assert!(pushes_taken(admin, "delta").await >= 1);
    }

    // Both parts are listed, each acknowledging the newest version.
    let newest = crate::get_json(control.admin, "/status").await["version"]
        .as_u64()
        .unwrap();
    eventually(
        DEADLINE,
        "both parts acknowledge the newest version",
        || async {
            let proxies = control.proxies().await;
            let acked: Vec<(String, u64)> = proxies
                .iter()
                .map(|p| {
                    (
                        p["role"].as_str().unwrap().to_owned(),
                        p["version"].as_u64().unwrap(),
                    )
                })
                .collect();
            (acked == [("dns".to_owned(), newest), ("gateway".to_owned(), newest)]).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn an_unknown_token_is_refused() {
    let manifests = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let web = upstream("web").await;
    std::fs::write(
        manifests.path().join("web.yaml"),
        site("web", "10.96.0.10", web, "web.example.com"),
    )
    .unwrap();
    let control = ControlPlane::start(manifests.path(), state.path(), loopback0()).await;
    let wrong = state.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    let (mut gateway, _http, admin) = gateway(&control, state.path(), Some(&wrong)).await;
    let refused = gateway
        .log("the control plane refused this part's token")
        .await;
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("unknown join token"),
        "{refused}"
    );
    // Never subscribed, never served anything.
    assert!(control.proxies().await.is_empty());
    let (status, _) = crate::get(admin, "/ready").await;
    assert_eq!(status, 503);
}

fn config(control: &ControlPlane, state: &Path, role: Role, name: &str) -> Config {
    Config {
        control: control.url().parse().unwrap(),
        ca_pem: std::fs::read(state.join("ca.crt")).unwrap(),
        token: std::fs::read_to_string(state.join("join-token"))
            .unwrap()
            .trim()
            .to_owned(),
        role,
        node: "node-1".to_owned(),
        name: name.to_owned(),
    }
}

#[tokio::test]
async fn a_nack_shows_in_ferry_get_proxies() {
    let manifests = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let web = upstream("web").await;
    std::fs::write(
        manifests.path().join("web.yaml"),
        site("web", "10.96.0.10", web, "web.example.com"),
    )
    .unwrap();
    let control = ControlPlane::start(manifests.path(), state.path(), loopback0()).await;
    // A part whose compile step refuses whatever it is sent.
    let bus = SnapshotBus::new();
    let refuse =
        Arc::new(|_: &ferry_model::Snapshot| Err("route table too large for this part".to_owned()));
    let subscriber = Subscriber::build(
        config(&control, state.path(), Role::Gateway, "picky-1"),
        bus.clone(),
        refuse,
    )
    .unwrap();
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    let task = tokio::spawn(subscriber.run(shutdown));
    eventually(DEADLINE, "control records the NACK", || async {
        let proxies = control.proxies().await;
        proxies
            .iter()
            .any(|p| p["last_nack"]["reason"] == "route table too large for this part")
            .then_some(())
    })
    .await;
    assert_eq!(bus.current().version, 0, "a refused push is not served");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["get", "proxies", "--admin", &control.admin.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("ROLE"), "{text}");
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("gateway") && row.contains("picky-1"),
        "{text}"
    );
    assert!(
        row.contains("route table too large for this part"),
        "{text}"
    );
    trigger.trigger();
    task.await.unwrap();
}

#[tokio::test]
async fn a_dns_subscriber_never_receives_private_keys() {
    let manifests = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let web = upstream("web").await;
    let (secret, key) = tls_secret();
    std::fs::write(
        manifests.path().join("web.yaml"),
        site("web", "10.96.0.10", web, "web.example.com"),
    )
    .unwrap();
    std::fs::write(manifests.path().join("tls.yaml"), secret).unwrap();
    let control = ControlPlane::start(manifests.path(), state.path(), loopback0()).await;
    let (dns_bus, gateway_bus) = (SnapshotBus::new(), SnapshotBus::new());
    let accept = Arc::new(|_: &ferry_model::Snapshot| Ok(()));
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    let mut tasks = Vec::new();
    for (bus, role, name) in [
        (&dns_bus, Role::Dns, "dns-1"),
        (&gateway_bus, Role::Gateway, "edge-1"),
    ] {
        let subscriber = Subscriber::build(
            config(&control, state.path(), role, name),
            bus.clone(),
            accept.clone(),
        )
        .unwrap();
        tasks.push(tokio::spawn(subscriber.run(shutdown.clone())));
    }
    for bus in [&dns_bus, &gateway_bus] {
        eventually(DEADLINE, "a snapshot with the TLS Ingress", || async {
            let snapshot = bus.current();
            snapshot.virtual_hosts.iter().any(|v| v.tls).then_some(())
        })
        .await;
    }
    assert_eq!(gateway_bus.current().certificates.len(), 1);
    assert_eq!(
        gateway_bus.current().certificates[0].key_pem.trim(),
        key.trim()
    );
    let dns = dns_bus.current();
    assert!(
        dns.certificates.is_empty(),
        "a DNS server was sent certificates: {:?}",
        dns.certificates
    );
    trigger.trigger();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn the_gateway_keeps_serving_while_control_is_away_and_resyncs_on_its_return() {
    let manifests = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (web, api) = (upstream("web").await, upstream("api").await);
    std::fs::write(
        manifests.path().join("web.yaml"),
        site("web", "10.96.0.10", web, "web.example.com"),
    )
    .unwrap();
    let mut control = ControlPlane::start(manifests.path(), state.path(), loopback0()).await;
    let push = control.push;
    let (_gateway, http, _) = gateway(&control, state.path(), None).await;
    serves(http, "web.example.com", "web").await;

    control.process.kill();
    // Away: the gateway answers from its last snapshot, request after request.
    for _ in 0..20 {
        assert_eq!(
            status_of(http, "web.example.com").await,
            Some((200, "web".to_owned()))
        );
    }
    std::fs::write(
        manifests.path().join("api.yaml"),
        site("api", "10.96.0.11", api, "api.example.com"),
    )
    .unwrap();
    assert_eq!(
        status_of(http, "api.example.com").await.map(|(s, _)| s),
        Some(404)
    );

    // Back on the same address with the same state dir (CA and token): the gateway
    // reconnects and is sent the whole view, the change made meanwhile included.
    let control = ControlPlane::start(manifests.path(), state.path(), push).await;
    serves(http, "api.example.com", "api").await;
    assert_eq!(
        status_of(http, "web.example.com").await,
        Some((200, "web".to_owned()))
    );
    eventually(DEADLINE, "the gateway is listed again", || async {
        let proxies = control.proxies().await;
        (proxies.len() == 1 && proxies[0]["name"] == "edge-1").then_some(())
    })
    .await;
}

/// `ferry load` through a split-process gateway while its control plane is killed, a manifest
/// changes, and a new control plane (same state dir: same CA and token) starts on the same
/// address: not one request fails, the gateway resyncs, and a later change reaches it as a
/// delta.
#[tokio::test]
async fn a_control_plane_restart_under_load_fails_no_request() {
    let manifests = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (web, api, shop) = (
        upstream("web").await,
        upstream("api").await,
        upstream("shop").await,
    );
    std::fs::write(
        manifests.path().join("web.yaml"),
        site("web", "10.96.0.10", web, "web.example.com"),
    )
    .unwrap();
    let mut control = ControlPlane::start(manifests.path(), state.path(), loopback0()).await;
    let push = control.push;
    let (_gateway, http, gateway_admin) = gateway(&control, state.path(), None).await;
    serves(http, "web.example.com", "web").await;

    // Bounded: it ends by itself; the restart below takes a fraction of it.
    let report = state.path().join("load.json");
    let mut load = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "load",
            &format!("http://{http}/"),
            "-H",
            "Host: web.example.com",
        ])
        .args(["--duration", "10s", "--connections", "4", "--json"])
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let before = requests_answered(gateway_admin).await;
    eventually(DEADLINE, "the load reaches the gateway", || async {
        (requests_answered(gateway_admin).await > before + 20).then_some(())
    })
    .await;

    control.process.kill();
    std::fs::write(
        manifests.path().join("api.yaml"),
        site("api", "10.96.0.11", api, "api.example.com"),
    )
    .unwrap();
    let control = ControlPlane::start(manifests.path(), state.path(), push).await;
    serves(http, "api.example.com", "api").await;
    let deltas = pushes_taken(gateway_admin, "delta").await;
    std::fs::write(
        manifests.path().join("shop.yaml"),
        site("shop", "10.96.0.12", shop, "shop.example.com"),
    )
    .unwrap();
    serves(http, "shop.example.com", "shop").await;
    assert!(
        pushes_taken(gateway_admin, "delta").await > deltas,
        "the change after the resync came as a delta"
    );
    assert_eq!(
        load.try_wait().unwrap(),
        None,
        "the load ended before the control plane was back: it did not span the restart"
    );
    drop(control);

    let status = tokio::task::spawn_blocking(move || load.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "ferry load: {status}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let target = &report;
    assert!(target["responses"].as_u64().unwrap() > 0, "{target}");
    assert_eq!(target["requests"], target["responses"], "{target}");
    let errors = target["errors"].as_object().unwrap();
    assert!(
        errors.values().all(|n| n == 0),
        "failed requests: {errors:?}"
    );
    let codes: Vec<&String> = target["status_codes"].as_object().unwrap().keys().collect();
    assert_eq!(codes, ["200"], "{target}");
}

/// `ferry up`'s gateway and DNS take their views through the same stream and receiver as a
/// remote part, without a socket: they are listed in `/status` as parts `in-process`, serve
/// the newest version, and a change reaches them as a delta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_ups_own_parts_subscribe_in_process_and_take_deltas() {
    let manifests = tempfile::tempdir().unwrap();
    let (web, api) = (upstream("web").await, upstream("api").await);
    std::fs::write(
        manifests.path().join("web.yaml"),
        site("web", "10.96.0.10", web, "web.example.com"),
    )
    .unwrap();
    let up = crate::Running::start(vec![manifests.path().to_owned()]).await;
    up.wait_version(1).await;
    serves(up.http, "web.example.com", "web").await;
    std::fs::write(
        manifests.path().join("api.yaml"),
        site("api", "10.96.0.11", api, "api.example.com"),
    )
    .unwrap();
    serves(up.http, "api.example.com", "api").await;
    resolves(up.dns, "api.shop.svc.cluster.local.", "10.96.0.11").await;
    let newest = up.version().await;
    eventually(
        DEADLINE,
        "both parts acknowledge the newest version",
        || async {
            let proxies = crate::get_json(up.admin, "/status").await["proxies"].clone();
            let listed: Vec<(String, String, u64)> = proxies
                .as_array()?
                .iter()
                .map(|p| {
                    (
                        p["role"].as_str().unwrap_or_default().to_owned(),
                        p["address"].as_str().unwrap_or_default().to_owned(),
                        p["version"].as_u64().unwrap_or_default(),
                    )
                })
                .collect();
            let want = |role: &str| (role.to_owned(), "in-process".to_owned(), newest);
            (listed == [want("dns"), want("gateway")]).then_some(())
        },
    )
    .await;
    let (_, metrics) = crate::get(up.admin, "/metrics").await;
    let deltas = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ferry_control_pushes_total{kind=\"delta\"} "))
        .map_or(0, |v| v.trim().parse::<u64>().unwrap());
    assert!(deltas >= 2, "one delta for each part at least:\n{metrics}");
    up.stop().await;
}
