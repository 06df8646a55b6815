//! `ferry up --source kubernetes` against ferry's own API server: one `ferry up` runs the local
//! cluster (loopback Pods, its API on 127.0.0.1:0, a state directory of its own); a second,
//! reading only that API server through the first's kubeconfig, routes Ingress traffic to the
//! first's Pods and answers DNS for its Services, follows a `kubectl scale`, a `kubectl delete`
//! and a Service removed from the first's manifests, and keeps its routes while the first is away and after it is back.
//! The second writes its Ingresses' `status.loadBalancer` through the first's `status`
//! subresource.

use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry::up::kubernetes::{Source, UpKubernetes};
use ferry::up::{Up, UpConfig};
use ferry_control::kubernetes::StatusAddress;
use ferry_runtime::ShutdownTrigger;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tempfile::TempDir;

use crate::dns::{ask, data};
use crate::gateway::{Backend, backend};
use crate::local::one_request;
use crate::{DEADLINE, eventually, up_config};

/// How long the second may take to see the first again once it is back: its watchers back off
/// (0.8 s doubling, up to 30 s) while the API server is away.
const BACK_AGAIN: Duration = Duration::from_secs(60);

/// The Secret of `secure.test`'s certificate, and the certificate (DER).
fn tls_secret() -> (String, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec!["secure.test".to_owned()]).unwrap();
    let indent = |pem: String| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: secure-tls, namespace: shop}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(cert.cert.pem()),
        indent(cert.signing_key.serialize_pem())
    );
    (yaml, cert.cert.der().to_vec())
}

/// The certificate the gateway at `addr` presents for `sni`.
async fn presented(addr: SocketAddr, sni: &str) -> Option<Vec<u8>> {
    let config = ferry_runtime::tls::any_server_client_config().unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let stream = connector.connect(name, tcp).await.ok()?;
    let (_, session) = stream.get_ref();
    Some(session.peer_certificates()?.first()?.to_vec())
}

fn manifests(static_port: u16, with_api: bool, secret: &str) -> String {
    let api = if with_api {
        r#"
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: 8080}]
"#
    } else {
        ""
    };
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: ferry
  annotations: {{ingressclass.kubernetes.io/is-default-class: "true"}}
spec: {{controller: ferry.dev/ingress}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - name: web
          image: ferry/echo
          ports: [{{name: http, containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: shop}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      containers:
        - name: api
          image: ferry/echo
          ports: [{{containerPort: 8080}}]
{api}
---
# Served by the test itself, so it answers while the first ferry (and its Pods) is away.
apiVersion: v1
kind: Service
metadata: {{name: static, namespace: shop}}
spec:
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: static-1
  namespace: shop
  labels: {{kubernetes.io/service-name: static}}
addressType: IPv4
endpoints: [{{addresses: [127.0.0.1]}}]
ports: [{{name: http, port: {static_port}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: web, namespace: shop}}
spec:
  rules:
    - host: web.test
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
    - host: static.test
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: static, port: {{number: 80}}}}}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: secure, namespace: shop}}
spec:
  tls: [{{hosts: [secure.test], secretName: secure-tls}}]
  rules:
    - host: secure.test
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: static, port: {{number: 80}}}}}}}}
---
{secret}
"#
    )
}

/// The first `ferry up`: the local cluster and its API server.
struct First {
    config: UpConfig,
    api: SocketAddr,
    admin: SocketAddr,
    kubeconfig: PathBuf,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

impl First {
    async fn start(config: UpConfig) -> First {
        let up = Up::build(config.clone()).await.unwrap();
        let api = up.api_addr().unwrap();
        let admin = up.admin_addr();
        let kubeconfig = up.kubeconfig().unwrap().to_owned();
        let (trigger, shutdown) = ferry_runtime::shutdown::channel();
        let task = tokio::spawn(async move { up.run(shutdown).await.unwrap() });
        First {
            config,
            api,
            admin,
            kubeconfig,
            trigger,
            task,
        }
    }

    /// Stops it (its Pods too) and returns what starts it again on the same API address.
    async fn stop(self) -> UpConfig {
        self.trigger.trigger();
        self.task.await.unwrap();
        let mut config = self.config;
        if let Some(api) = config.api.as_mut() {
            api.addr = self.api;
        }
        config
    }
}

/// The second `ferry up --source kubernetes`.
struct Second {
    http: SocketAddr,
    https: SocketAddr,
    dns: SocketAddr,
    admin: SocketAddr,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

impl Second {
    async fn start(kubeconfig: &Path, publish: Option<StatusAddress>) -> Second {
        let source = Source {
            kubeconfig: Some(kubeconfig.to_owned()),
            publish_address: publish,
        };
        let up = UpKubernetes::build(&up_config(Vec::new()), source)
            .await
            .unwrap();
        let (http, https) = (up.http_addr(), up.https_addr());
        let (dns, admin) = (up.dns_addr(), up.admin_addr());
        let (trigger, shutdown) = ferry_runtime::shutdown::channel();
        let task = tokio::spawn(async move { up.run(shutdown).await.unwrap() });
        Second {
            http,
            https,
            dns,
            admin,
            trigger,
            task,
        }
    }

    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap();
    }

    /// The failed watches it has counted.
    async fn watch_errors(&self) -> u64 {
        let (_, metrics) = crate::get(self.admin, "/metrics").await;
        metrics
            .lines()
            .filter(|l| l.starts_with("ferry_control_kubernetes_watch_errors_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Waits until a request for `host` through this gateway is answered 200; the Pod's name.
    async fn served(&self, host: &str, deadline: Duration) -> String {
        eventually(
            deadline,
            &format!("{host} through the second ferry"),
            || async {
                match one_request(self.http, host).await {
                    Ok((200, pod)) => Some(pod),
                    _ => None,
                }
            },
        )
        .await
    }
}

/// A first ferry with the manifests in a temp dir, its state in another, and the static
/// backend its Ingress also routes to.
async fn first(dir: &TempDir, state: &TempDir, secret: &str) -> (First, Backend) {
    let static_backend = backend("static").await;
    let file = dir.path().join("shop.yaml");
    fs::write(&file, manifests(static_backend.addr.port(), true, secret)).unwrap();
    let mut config = up_config(vec![dir.path().to_owned()]);
    config.api = Some(ferry_orchestrator::apiserver::Config {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        state_dir: state.path().to_owned(),
        kubeconfig: None,
    });
    (First::start(config).await, static_backend)
}

/// A scale on the first: `kubectl scale` where kubectl is installed, else the admin API
/// `ferry scale` calls.
async fn scale(first: &First, replicas: u32) {
    if crate::kubectl::have_kubectl("kubernetes_source: kubectl scale").await {
        let cache = TempDir::new().unwrap();
        let replicas = format!("--replicas={replicas}");
        let args = ["scale", "deployment/web", "-n", "shop", replicas.as_str()];
        crate::kubectl::ok(&first.kubeconfig, cache.path(), &args).await;
        return;
    }
    let admin = first.admin;
    let path = format!("/api/v1/scale?namespace=shop&name=web&replicas={replicas}");
    let (status, _, body) = ferry::get::request(admin, http::Method::POST, &path)
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ferry_serves_the_first_ones_cluster_through_its_api() {
    let (dir, state) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (secret, cert) = tls_secret();
    let (first, static_backend) = first(&dir, &state, &secret).await;
    let second = Second::start(&first.kubeconfig, None).await;

    // Ingress traffic to the first's Pods, DNS for its Services.
    let pod = second.served("web.test", DEADLINE).await;
    assert!(pod.starts_with("web-"), "served by {pod:?}");
    assert_eq!(second.served("static.test", DEADLINE).await, "static");
    let web = eventually(
        DEADLINE,
        "web's cluster IP from the second's DNS",
        || async {
            let r = ask(second.dns, "web.shop.svc.cluster.local.", RecordType::A).await;
            (r.metadata.response_code == ResponseCode::NoError && !r.answers.is_empty())
                .then(|| data(&r))
        },
    )
    .await;
    assert_eq!(web.len(), 1, "{web:?}");
    let api = ask(second.dns, "api.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&api).len(), 1, "{api:?}");
    // The Secret an Ingress names (watched by its name alone) is the host's certificate.
    eventually(
        DEADLINE,
        "secure.test's certificate from its Secret",
        || async {
            (presented(second.https, "secure.test").await.as_ref() == Some(&cert)).then_some(())
        },
    )
    .await;

    // A scale on the first: the third Pod serves through the second.
    scale(&first, 3).await;
    let seen = std::sync::Mutex::new(BTreeSet::new());
    let (seen, http) = (&seen, second.http);
    eventually(
        DEADLINE,
        "three web Pods through the second",
        || async move {
            let answer = one_request(http, "web.test").await;
            let mut seen = seen.lock().unwrap();
            if let Ok((200, pod)) = answer {
                seen.insert(pod);
            }
            (seen.len() >= 3).then_some(())
        },
    )
    .await;

    // A Service deleted with kubectl on the first: gone from the second's DNS (then from the
    // first's manifests too, so it stays gone; without kubectl, the file's change does it).
    if crate::kubectl::have_kubectl("kubernetes_source: kubectl delete").await {
        let cache = TempDir::new().unwrap();
        let args = ["delete", "service", "api", "-n", "shop"];
        crate::kubectl::ok(&first.kubeconfig, cache.path(), &args).await;
        eventually(DEADLINE, "api.shop gone after kubectl delete", || async {
            let r = ask(second.dns, "api.shop.svc.cluster.local.", RecordType::A).await;
            (r.metadata.response_code == ResponseCode::NXDomain).then_some(())
        })
        .await;
    }
    // A Service removed from the first's manifests: gone from the second's DNS.
    let file = dir.path().join("shop.yaml");
    fs::write(&file, manifests(static_backend.addr.port(), false, &secret)).unwrap();
    eventually(DEADLINE, "api.shop gone from the second's DNS", || async {
        let r = ask(second.dns, "api.shop.svc.cluster.local.", RecordType::A).await;
        (r.metadata.response_code == ResponseCode::NXDomain).then_some(())
    })
    .await;

    // The first goes away (its API server and its Pods): the second keeps its routes.
    let again = first.stop().await;
    let api_addr = again.api.as_ref().unwrap().addr;
    assert!(
        tokio::net::TcpStream::connect(api_addr).await.is_err(),
        "the first's API server still answers"
    );
    let before = second.watch_errors().await;
    eventually(DEADLINE, "the second's watches failing", || async {
        (second.watch_errors().await > before).then_some(())
    })
    .await;
    for i in 0..50 {
        let answer = one_request(second.http, "static.test").await;
        assert_eq!(
            answer,
            Ok((200, "static".to_owned())),
            "request {i} while the API server is away"
        );
        let r = ask(second.dns, "web.shop.svc.cluster.local.", RecordType::A).await;
        assert_eq!(data(&r), web, "DNS {i} while the API server is away");
    }

    // Back on the same address and state: the second still routes, and follows the first
    // again (its watches back off, then list anew).
    fs::write(&file, manifests(static_backend.addr.port(), true, &secret)).unwrap();
    let first = First::start(again).await;
    for i in 0..20 {
        let answer = one_request(second.http, "static.test").await;
        assert_eq!(
            answer,
            Ok((200, "static".to_owned())),
            "request {i} after the restart"
        );
    }
    eventually(BACK_AGAIN, "api.shop back in the second's DNS", || async {
        let r = ask(second.dns, "api.shop.svc.cluster.local.", RecordType::A).await;
        (data(&r).len() == 1).then_some(())
    })
    .await;
    let pod = second.served("web.test", DEADLINE).await;
    assert!(pod.starts_with("web-"), "served by {pod:?}");

    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeconfig_that_cannot_be_read_is_an_error_naming_it() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("missing.kubeconfig");
    let source = Source {
        kubeconfig: Some(path.clone()),
        publish_address: None,
    };
    let err = UpKubernetes::build(&up_config(Vec::new()), source)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("--kubeconfig {}", path.display())),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_that_does_not_answer_at_start_is_an_error_naming_it() {
    // A port nothing listens on: one just bound and closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("kubeconfig");
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\n"
    );
    fs::write(&path, kubeconfig).unwrap();
    let source = Source {
        kubeconfig: Some(path),
        publish_address: None,
    };
    let err = UpKubernetes::build(&up_config(Vec::new()), source)
        .await
        .unwrap_err()
        .to_string();
    let expected = format!("the Kubernetes API server https://127.0.0.1:{port} does not answer");
    assert!(err.contains(&expected), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_ferry_sets_its_ingresses_load_balancer_status() {
    if !crate::kubectl::have_kubectl("the_second_ferry_sets_its_ingresses_load_balancer_status")
        .await
    {
        return;
    }
    let (dir, state) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (first, _static_backend) = first(&dir, &state, &tls_secret().0).await;
    let publish = StatusAddress::parse("192.0.2.7").unwrap();
    let second = Second::start(&first.kubeconfig, Some(publish)).await;
    let kubeconfig = first.kubeconfig.clone();
    eventually(DEADLINE, "the Ingress's status.loadBalancer", || async {
        let out = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "ingress", "-n", "shop", "web", "-o"])
            .arg("jsonpath={.status.loadBalancer.ingress[*].ip}")
            .output()
            .await
            .unwrap();
        (String::from_utf8_lossy(&out.stdout) == "192.0.2.7").then_some(())
    })
    .await;
    second.stop().await;
    first.stop().await;
}

/// `ferry` run as a user runs it: exit code, stdout, stderr.
async fn ferry(args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .current_dir(crate::repo())
        .output()
        .await
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn the_manifests_to_run_ferry_in_a_cluster_check_clean() {
    let (code, stdout, stderr) = ferry(&["check", "-f", "configs/kubernetes"]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!((stdout.as_str(), stderr.as_str()), ("", ""));
}

#[tokio::test]
async fn the_kubernetes_flags_without_the_kubernetes_source_are_refused() {
    for flag in ["--kubeconfig=k", "--publish-address=192.0.2.1"] {
        let (code, _, stderr) = ferry(&["up", flag, "--api=none"]).await;
        let name = flag.split('=').next().unwrap();
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("{name} is read only with --source kubernetes")),
            "{stderr}"
        );
    }
    let (code, _, stderr) = ferry(&["up", "--source=kubernetes", "--publish-address=a b"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("neither an IP address nor a DNS name"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_control_reads_an_api_server_too() {
    use tokio::io::AsyncBufReadExt;
    let (dir, state) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (first, _static_backend) = first(&dir, &state, &tls_secret().0).await;
    let control_state = TempDir::new().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--log-format=json")
        .args(["control", "--source=kubernetes", "--kubeconfig"])
        .arg(&first.kubeconfig)
        .args(["--listen=127.0.0.1:0", "--admin=127.0.0.1:0", "--state-dir"])
        .arg(control_state.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let up = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if line["message"] == "ferry control is up" {
                return line;
            }
        }
        panic!("ferry control ended before it was up");
    })
    .await
    .expect("ferry control is up");
    let admin: SocketAddr = up["admin"].as_str().unwrap().parse().unwrap();
    eventually(
        DEADLINE,
        "the first's routes in ferry control's snapshot",
        || async {
            let config = crate::get_json(admin, "/config").await.to_string();
            (config.contains("web.test") && config.contains("static.test")).then_some(())
        },
    )
    .await;
    child.kill().await.unwrap();
    first.stop().await;
}
