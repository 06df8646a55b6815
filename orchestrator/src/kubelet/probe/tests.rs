use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use serde_json::json;

use super::{Action, Context, Kind, Spec, check, client_config, specs};
use crate::kubelet::plan::Plan;
use crate::kubelet::tests::http_server;

fn container(v: serde_json::Value) -> Container {
    serde_json::from_value(v).expect("a container")
}

fn pod_ip() -> IpAddr {
    "127.1.0.7".parse().expect("ip")
}

fn context() -> Context {
    Context {
        plan: Arc::new(Plan {
            argv: Vec::new(),
            env: Default::default(),
            working_dir: None,
            enter: Vec::new(),
        }),
        tls: client_config().ok(),
    }
}

fn spec(action: Action) -> Spec {
    Spec {
        kind: Kind::Readiness,
        action,
        initial_delay: Duration::ZERO,
        period: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        success_threshold: 1,
        failure_threshold: 1,
        termination_grace: None,
    }
}

#[test]
fn defaults_and_named_ports() {
    let c = container(json!({
        "name": "web", "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"port": "http"}},
        "livenessProbe": {"tcpSocket": {"port": "nope"}, "periodSeconds": 5, "failureThreshold": 1,
                          "successThreshold": 4, "terminationGracePeriodSeconds": 2},
        "startupProbe": {"grpc": {"port": 9000}}
    }));
    let specs = specs(&c, pod_ip());
    let kinds: Vec<Kind> = specs.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [Kind::Startup, Kind::Liveness, Kind::Readiness]);
    assert!(matches!(&specs[0].action, Action::Invalid(m) if m.contains("grpc")));
    let liveness = &specs[1];
    assert!(matches!(&liveness.action, Action::Invalid(m) if m.contains("\"nope\"")));
    assert_eq!(liveness.period, Duration::from_secs(5));
    assert_eq!(liveness.success_threshold, 1, "liveness needs one success");
    assert_eq!(liveness.termination_grace, Some(Duration::from_secs(2)));
    let readiness = &specs[2];
    assert_eq!(
        readiness.action,
        Action::Http {
            https: false,
            host: "127.1.0.7".to_owned(),
            port: 8080,
            path: "/".to_owned(),
            headers: vec![],
        }
    );
    assert_eq!(
        (readiness.initial_delay, readiness.period, readiness.timeout),
        (
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(1)
        )
    );
    assert_eq!(
        (readiness.success_threshold, readiness.failure_threshold),
        (1, 3)
    );
}

#[tokio::test]
async fn http_get_succeeds_on_2xx_and_3xx() {
    let server = http_server().await;
    let probe = spec(Action::Http {
        https: false,
        host: "127.0.0.1".to_owned(),
        port: server.addr.port(),
        path: "/ready".to_owned(),
        headers: vec![("x-probe".to_owned(), "1".to_owned())],
    });
    let context = context();
    for (status, ok) in [
        (200, true),
        (204, true),
        (301, true),
        (399, true),
        (400, false),
        (500, false),
    ] {
        server.status.store(status, Ordering::SeqCst);
        assert_eq!(check(&probe, &context).await.is_ok(), ok, "status {status}");
    }
    let err = check(&probe, &context).await.expect_err("500");
    assert_eq!(err, "HTTP probe failed with statuscode: 500");
}

#[tokio::test]
async fn https_probes_do_not_verify_the_certificate() {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a cert");
    let cert = key.cert.der().clone();
    let private =
        rustls_pki_types::PrivateKeyDer::try_from(key.signing_key.serialize_der()).expect("a key");
    let config =
        rustls::ServerConfig::builder_with_provider(ferry_runtime::tls::provider().clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], private)
            .expect("a server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("an address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                        bytes::Bytes,
                    >::new(
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    let probe = spec(Action::Http {
        https: true,
        host: "127.0.0.1".to_owned(),
        port,
        path: "/".to_owned(),
        headers: vec![],
    });
    check(&probe, &context())
        .await
        .expect("the HTTPS probe succeeds");
}

#[tokio::test]
async fn tcp_and_exec_checks() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("an address").port();
    let tcp = spec(Action::Tcp {
        host: "127.0.0.1".to_owned(),
        port,
    });
    check(&tcp, &context()).await.expect("connects");
    drop(listener);
    check(&tcp, &context()).await.expect_err("refused");

    let ok = spec(Action::Exec {
        argv: vec!["true".into()],
    });
    let mut context = context();
    let mut env = crate::kubelet::env::Env::default();
    if let Ok(path) = std::env::var("PATH") {
        env.set("PATH", path);
    }
    context.plan = Arc::new(Plan {
        argv: Vec::new(),
        env,
        working_dir: None,
        enter: Vec::new(),
    });
    check(&ok, &context).await.expect("true succeeds");
    let fail = spec(Action::Exec {
        argv: vec!["false".into()],
    });
    check(&fail, &context).await.expect_err("false fails");
    let slow = spec(Action::Exec {
        argv: vec!["sleep".into(), "5".into()],
    });
    let err = check(&slow, &context).await.expect_err("times out");
    assert!(err.contains("timed out"), "{err}");
}
