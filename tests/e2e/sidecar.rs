//! Two sidecars on loopback, without network namespaces: the client side (`ferry sidecar`, the
//! built binary, or the part in process) asks a real `ferry control` for the destination,
//! whose manifests put the server side's inbound listener behind a Service with the Pod's
//! identity; the server side (in process) terminates mTLS and hands the request to the app.
//! Credentials are issued by a test CA (rcgen) and read from PEM files, as the binary reads
//! them. Connections are not redirected, so each side is told where they were going
//! (`--outbound-target`, `--app-port`). [`control`] runs both sides as the binary with
//! everything from the control plane: certificates, policy, mTLS mode.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use ferry_model::mesh::WorkloadId;
use ferry_proxy::BalancerConfig;
use ferry_runtime::ShutdownTrigger;
use ferry_sidecar::discover::{ControlConfig, ControlDiscover};
use ferry_sidecar::tls::pem::credentials_from_pem;
use ferry_sidecar::upstream::Identities;
use ferry_sidecar::{
    Addrs, AllowAll, Authorize, Config, InboundConfig, MtlsMode, OutboundConfig, Parts, Sidecar,
};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SanType,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::push::{ControlPlane, loopback0};
use crate::{DEADLINE, eventually};

pub(crate) mod control;

/// The workload CA, as the control plane's would issue: leaves with a SPIFFE URI SAN, usable as
/// server and client.
struct MeshCa(CertifiedIssuer<'static, KeyPair>);

impl MeshCa {
    fn new() -> MeshCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        MeshCa(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// Writes `<sa>.crt`, `<sa>.key` and `bundle.crt` into `dir`.
    fn issue(&self, dir: &Path, sa: &str) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let id = format!("spiffe://cluster.local/ns/shop/sa/{sa}");
        params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        std::fs::write(dir.join(format!("{sa}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{sa}.key")), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("bundle.crt"), self.0.pem()).unwrap();
    }
}

/// A Service `name` in `shop` at `cluster_ip:port`, whose one endpoint is 127.0.0.1:`target`,
/// a meshed Pod running as the ServiceAccount `sa`.
fn service(name: &str, cluster_ip: &str, port: u16, target: u16, sa: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  clusterIP: {cluster_ip}\n  ports: [{{name: main, port: {port}, targetPort: {target}}}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-0\n  namespace: shop\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{name: main, port: {target}}}]\nendpoints:\n- addresses: [127.0.0.1]\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, namespace: shop, name: {name}-0}}\n\
         ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}-0, namespace: shop}}\nspec:\n  serviceAccountName: {sa}\n{SIDECAR}  containers: [{{name: app, image: app}}]\n"
    )
}

/// The injected sidecar container (a native sidecar): what makes the control plane call a Pod
/// meshed, so clients reach it over mTLS.
pub(crate) const SIDECAR: &str =
    "  initContainers: [{name: ferry-sidecar, image: ferry, restartPolicy: Always}]\n";

/// An HTTP/1 app that answers with the client identity it was told.
pub(crate) async fn echo_app() -> SocketAddr {
    let listener = TcpListener::bind(loopback0()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| {
                let xfcc = req
                    .headers()
                    .get("x-forwarded-client-cert")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                let text = format!("{} {} xfcc={xfcc}\n", req.method(), req.uri().path());
                async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        text,
                    ))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    addr
}

/// A server-first app (as SMTP or PostgreSQL): a banner at once, then an echo.
async fn banner_app() -> SocketAddr {
    let listener = TcpListener::bind(loopback0()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                stream.write_all(b"220 ready\r\n").await?;
                let (mut r, mut w) = stream.split();
                tokio::io::copy(&mut r, &mut w).await
            });
        }
    });
    addr
}

#[derive(Debug)]
struct DenyPath(&'static str);

impl Authorize for DenyPath {
    fn authorize(
        &self,
        _: Option<&WorkloadId>,
        _: u16,
        http: Option<(&http::Method, &str)>,
    ) -> bool {
        http.is_none_or(|(_, path)| path != self.0)
    }
}

/// A sidecar in process with `sa`'s credentials from `pki`, asking `control`.
async fn sidecar(
    control: &ControlPlane,
    state: &Path,
    pki: &Path,
    sa: &str,
    inbound: InboundConfig,
    target: Option<SocketAddr>,
    authorize: Arc<dyn Authorize>,
) -> (Addrs, ShutdownTrigger) {
    let read = |name: String| std::fs::read(pki.join(name)).unwrap();
    let credentials = credentials_from_pem(
        &read(format!("{sa}.crt")),
        &read(format!("{sa}.key")),
        &read("bundle.crt".to_owned()),
    )
    .unwrap();
    let identities = Arc::new(Identities::default());
    let discover = ControlDiscover::new(
        ControlConfig {
            url: control.url().parse().unwrap(),
            ca_pem: std::fs::read(state.join("ca.crt")).unwrap(),
            trust: None,
            token: std::fs::read_to_string(state.join("join-token"))
                .unwrap()
                .trim()
                .to_owned(),
            caller: format!("shop/{sa}-0"),
            node: "node-1".to_owned(),
        },
        BalancerConfig::default(),
        identities.clone(),
    );
    let mut outbound = OutboundConfig::new(loopback0());
    outbound.target = target;
    let config = Config {
        inbound,
        outbound,
        admin: loopback0(),
        app_health: ferry_sidecar::AppHealthConfig::default(),
    };
    let (tx, credentials) = tokio::sync::watch::channel(Some(Arc::new(credentials)));
    let parts = Parts {
        credentials,
        discover: Arc::new(discover),
        identities,
        authorize,
        registry: Registry::default(),
        report_expiry: true,
    };
    let sidecar = Sidecar::build(config, parts).await.unwrap();
    let addrs = sidecar.addrs().unwrap();
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    tokio::spawn(async move {
        sidecar.run(shutdown).await;
        drop(tx);
    });
    (addrs, trigger)
}

fn inbound_for(app: SocketAddr, mode: MtlsMode) -> InboundConfig {
    let mut inbound = InboundConfig::new(loopback0());
    inbound.app_port = Some(app.port());
    inbound.mode = mode;
    inbound
}

/// `ferry sidecar`, the binary, on loopback as Pod `shop/<pod>`. Killed when dropped.
pub(crate) struct Binary {
    _child: tokio::process::Child,
}

impl Binary {
    /// Starts it with `args` after the common ones (credentials, targets); its addresses, as
    /// its "up" log line says them.
    pub(crate) async fn start(
        control: &ControlPlane,
        state: &Path,
        pod: &str,
        args: &[&str],
    ) -> (Binary, Addrs) {
        let path = |p: &Path| p.to_str().unwrap().to_owned();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args([
                "--log-format",
                "json",
                "sidecar",
                "--control",
                &control.url(),
            ])
            .args(["--control-ca", &path(&state.join("ca.crt"))])
            // A sidecar with its Pod's token asks for destinations with it, as an injected
            // one does; one with a PEM trio uses the join token.
            .args(if args.contains(&"--token-file") {
                Vec::new()
            } else {
                vec![
                    "--join-token-file".to_owned(),
                    path(&state.join("join-token")),
                ]
            })
            .args(["--namespace", "shop", "--pod", pod, "--mark", "off"])
            .args([
                "--inbound",
                "127.0.0.1:0",
                "--outbound",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let addrs = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if value["message"] == "ferry sidecar is up" {
                    let addr = |k: &str| value[k].as_str().unwrap().parse().unwrap();
                    return Addrs {
                        inbound: addr("inbound"),
                        outbound: addr("outbound"),
                        admin: addr("admin"),
                    };
                }
                seen.push(line);
            }
            panic!("ferry sidecar exited:\n{}", seen.join("\n"));
        })
        .await
        .expect("ferry sidecar is up");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        (Binary { _child: child }, addrs)
    }

    /// The client side with the PEM trio of `web` from `pki`, sending to `target`.
    async fn with_files(
        control: &ControlPlane,
        state: &Path,
        pki: &Path,
        target: &str,
    ) -> (Binary, SocketAddr) {
        let path = |name: &str| pki.join(name).to_str().unwrap().to_owned();
        let (certificate, key, bundle) = (path("web.crt"), path("web.key"), path("bundle.crt"));
        let (binary, addrs) = Binary::start(
            control,
            state,
            "web-0",
            &[
                "--certificate",
                &certificate,
                "--key",
                &key,
                "--trust-bundle",
                &bundle,
                "--outbound-target",
                target,
            ],
        )
        .await;
        (binary, addrs.outbound)
    }
}

/// curl's exit status and output for `url` (no proxy, a bounded wait).
pub(crate) async fn curl(url: &str) -> (bool, String) {
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            "-H",
            "Host: api.shop.svc",
            url,
        ])
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        text + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The status curl got for `url`.
async fn curl_status(url: &str) -> String {
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code}", url])
        .output()
        .await
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn http_through_two_sidecars_reaches_the_app_with_the_peer_identity() {
    let (manifests, state, pki) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let ca = MeshCa::new();
    ca.issue(pki.path(), "web");
    ca.issue(pki.path(), "api");
    let app = echo_app().await;
    let control = ControlPlane::start(manifests.path(), state.path(), loopback0()).await;
    let (server, _s) = sidecar(
        &control,
        state.path(),
        pki.path(),
        "api",
        inbound_for(app, MtlsMode::Strict),
        None,
        Arc::new(DenyPath("/admin")),
    )
    .await;
    std::fs::write(
        manifests.path().join("api.yaml"),
        service("api", "10.96.0.50", 8080, server.inbound.port(), "api"),
    )
    .unwrap();
    let (_client, outbound) =
        Binary::with_files(&control, state.path(), pki.path(), "10.96.0.50:8080").await;

    let body = eventually(DEADLINE, "curl through both sidecars", || async {
        let (ok, body) = curl(&format!("http://{outbound}/hello")).await;
        (ok && body.starts_with("GET")).then_some(body)
    })
    .await;
    assert_eq!(
        body,
        "GET /hello xfcc=By=spiffe://cluster.local/ns/shop/sa/api;URI=spiffe://cluster.local/ns/shop/sa/web\n"
    );
    // The authorization hook's deny is a 403 at the client.
    let denied = curl_status(&format!("http://{outbound}/admin")).await;
    assert_eq!(denied, "403");
    // Strict mode: a plaintext client straight at the server side gets no answer.
    let (ok, output) = curl(&format!("http://{}/hello", server.inbound)).await;
    assert!(!ok, "plaintext was served in strict mode: {output}");
    let (_, metrics) = crate::get(server.admin, "/metrics").await;
    assert!(metrics.contains(r#"ferry_sidecar_plaintext_connections_total{direction="inbound",outcome="refused_strict"} 1"#), "{metrics}");
    assert!(
        metrics.contains(
            r#"ferry_sidecar_authz_decisions_total{direction="inbound",outcome="deny_http"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn opaque_tcp_and_a_wrong_identity_through_two_sidecars() {
    let (manifests, state, pki) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let ca = MeshCa::new();
    ca.issue(pki.path(), "web");
    ca.issue(pki.path(), "db");
    let (banner, app) = (banner_app().await, echo_app().await);
    let control = ControlPlane::start(manifests.path(), state.path(), loopback0()).await;
    let (db, _d) = sidecar(
        &control,
        state.path(),
        pki.path(),
        "db",
        inbound_for(banner, MtlsMode::Strict),
        None,
        Arc::new(AllowAll),
    )
    .await;
    let (impostor, _i) = sidecar(
        &control,
        state.path(),
        pki.path(),
        "db",
        inbound_for(app, MtlsMode::Strict),
        None,
        Arc::new(AllowAll),
    )
    .await;
    // PostgreSQL's port: the client side is opaque without reading (the client speaks second).
    let mut yaml = service("db", "10.96.0.60", 5432, db.inbound.port(), "db");
    // The payments Pod runs as `payments`, but the sidecar at its address holds `db`'s identity.
    yaml += "---\n";
    yaml += &service(
        "payments",
        "10.96.0.61",
        8080,
        impostor.inbound.port(),
        "payments",
    );
    std::fs::write(manifests.path().join("shop.yaml"), yaml).unwrap();
    let (to_db, _c) = sidecar(
        &control,
        state.path(),
        pki.path(),
        "web",
        InboundConfig::new(loopback0()),
        Some("10.96.0.60:5432".parse().unwrap()),
        Arc::new(AllowAll),
    )
    .await;
    let (to_payments, _p) = sidecar(
        &control,
        state.path(),
        pki.path(),
        "web",
        InboundConfig::new(loopback0()),
        Some("10.96.0.61:8080".parse().unwrap()),
        Arc::new(AllowAll),
    )
    .await;

    // The banner comes without the client sending a byte, through mTLS on both sides.
    let mut stream = eventually(DEADLINE, "the db banner through both sidecars", || async {
        let mut stream = TcpStream::connect(to_db.outbound).await.ok()?;
        let mut banner = [0; 11];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_exact(&mut banner),
        )
        .await
        .ok()?
        .ok()?;
        (&banner == b"220 ready\r\n").then_some(stream)
    })
    .await;
    stream.write_all(b"SELECT 1;").await.unwrap();
    let mut echo = [0; 9];
    stream.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"SELECT 1;");
    let (_, metrics) = crate::get(db.admin, "/metrics").await;
    assert!(
        metrics.contains(r#"ferry_sidecar_tls_handshakes_total{direction="inbound",outcome="ok"}"#),
        "{metrics}"
    );

    // The endpoint presents `db` where `payments` is expected: refused, and the app never asked.
    let status = eventually(
        DEADLINE,
        "payments answered by the control plane",
        || async {
            let (status, body) = crate::get(to_payments.outbound, "/pay").await;
            (status != 503 || !body.contains("no longer")).then_some(status)
        },
    )
    .await;
    assert_eq!(status, 502);
    let (_, metrics) = crate::get(to_payments.admin, "/metrics").await;
    assert!(
        metrics.contains(
            r#"ferry_sidecar_tls_handshakes_total{direction="outbound",outcome="failed"}"#
        ),
        "{metrics}"
    );
}
