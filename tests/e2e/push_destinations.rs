//! A sidecar's subscriptions to a real `ferry control -f DIR --listen 127.0.0.1:0` over its TLS
//! channel, with the generated `Destination` client: one destination's endpoints and the
//! identity each presents, changing as the manifests change (scaled, a Pod unready, the Service
//! removed); an unknown destination answered, then filled when its Service is added; nothing of
//! another Service ever sent; an unknown token refused; a workload's inbound ports, mTLS mode
//! and authorization policy, changing when a policy is applied.

use std::path::Path;

use ferry_control::identity::{PodClaims, PodTokens};
use ferry_model::policy::{Authorizer, Request};
use ferry_model::proto::{self, destination_update::Update};
use ferry_runtime::subscribe::grpc::control_client::ControlClient;
use ferry_runtime::subscribe::grpc::destination_client::DestinationClient;
use ferry_runtime::subscribe::{H2, Streaming, channel, with_token};
use prost::Message as _;

use crate::DEADLINE;
use crate::push::{ControlPlane, loopback0};

/// `(address, ready, Pod, serviceAccountName)` endpoints of the Service `name` in `namespace`,
/// port 8080 → 9000, with their EndpointSlice and Pods.
fn service(
    namespace: &str,
    name: &str,
    cluster_ip: &str,
    endpoints: &[(&str, bool, &str, Option<&str>)],
) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  clusterIP: {cluster_ip}\n  ports: [{{name: http, port: 8080, targetPort: 9000, appProtocol: http}}]\n"
    );
    yaml += &slice(namespace, name, endpoints);
    for (_, _, pod, account) in endpoints {
        let account = account.map_or(String::new(), |a| format!("  serviceAccountName: {a}\n"));
        yaml += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: {namespace}, uid: {pod}-uid}}\nspec:\n{account}  containers: [{{name: app, image: app}}]\n"
        );
    }
    yaml
}

fn slice(namespace: &str, name: &str, endpoints: &[(&str, bool, &str, Option<&str>)]) -> String {
    let mut yaml = format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-0\n  namespace: {namespace}\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{name: http, port: 9000}}]\nendpoints:\n"
    );
    for (address, ready, pod, _) in endpoints {
        yaml += &format!(
            "- addresses: [{address}]\n  conditions: {{ready: {ready}}}\n  nodeName: node-1\n  targetRef: {{kind: Pod, namespace: {namespace}, name: {pod}}}\n"
        );
    }
    yaml
}

const ECHO_0: (&str, bool, &str, Option<&str>) = ("10.1.0.1", true, "echo-0", Some("echo"));
const ECHO_1: (&str, bool, &str, Option<&str>) = ("10.1.0.2", true, "echo-1", None);
const ECHO_2: (&str, bool, &str, Option<&str>) = ("10.1.0.3", true, "echo-2", Some("echo"));

/// Strict mTLS for `shop`, and no Pod of `shop` reachable from namespace `jobs`.
const POLICY: &str = "apiVersion: v1
kind: Namespace
metadata: {name: shop, annotations: {ferry.dev/mtls-mode: strict}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-jobs, namespace: shop}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: [jobs]}}]}]
";

fn vault() -> String {
    service(
        "bank",
        "vault",
        "10.96.0.99",
        &[("10.9.9.9", true, "vault-0", Some("vault-keeper"))],
    )
}

async fn client(control: &ControlPlane, state: &Path) -> (DestinationClient<H2>, String) {
    let ca = std::fs::read(state.join("ca.crt")).unwrap();
    let url: http::Uri = control.url().parse().unwrap();
    let channel = channel(&url, &ca).await.unwrap();
    let token = std::fs::read_to_string(state.join("join-token"))
        .unwrap()
        .trim()
        .to_owned();
    (DestinationClient::with_origin(channel, url), token)
}

fn get(authority: &str) -> proto::GetDestination {
    proto::GetDestination {
        caller: Some(proto::Caller {
            node: "node-1".to_owned(),
            name: "shop/client-0".to_owned(),
        }),
        authority: authority.to_owned(),
    }
}

/// What a stream of updates has said so far.
struct Updates {
    stream: Streaming<proto::DestinationUpdate>,
    seen: Vec<proto::DestinationUpdate>,
}

impl Updates {
    /// Reads updates until one satisfies `want`; every update read is checked to carry
    /// nothing of the other Service (bank/vault), and to differ from the one before.
    async fn until(
        &mut self,
        what: &str,
        want: impl Fn(&proto::DestinationUpdate) -> bool,
    ) -> proto::DestinationUpdate {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.message())
                .await
                .unwrap_or_else(|_| {
                    panic!("{what}: not within the deadline; seen {:#?}", self.seen)
                })
                .unwrap_or_else(|e| panic!("{what}: the stream failed: {e}"))
                .unwrap_or_else(|| panic!("{what}: the stream ended"));
            let bytes = next.encode_to_vec();
            for foreign in [
                &b"vault"[..],
                b"bank",
                b"vault-keeper",
                &[10, 9, 9, 9],
                &[10, 96, 0, 99],
            ] {
                assert!(
                    !bytes.windows(foreign.len()).any(|w| w == foreign),
                    "{what}: another Service's data ({foreign:?}) in {next:?}"
                );
            }
            if let Some(last) = self.seen.last() {
                assert_ne!(
                    last.update, next.update,
                    "{what}: an update that changes nothing"
                );
                assert!(
                    next.version > last.version,
                    "{what}: {next:?} after {last:?}"
                );
            }
            self.seen.push(next.clone());
            if want(&next) {
                return next;
            }
        }
    }
}

fn endpoints(update: &proto::DestinationUpdate) -> Option<&proto::DestinationEndpoints> {
    match &update.update {
        Some(Update::Endpoints(e)) => Some(e),
        _ => None,
    }
}

/// `(last octet, ready, identity)` per endpoint.
fn summary(update: &proto::DestinationUpdate) -> Vec<(u8, bool, Option<String>)> {
    endpoints(update)
        .map(|e| {
            e.endpoints
                .iter()
                .map(|e| (e.address[3], e.ready, e.identity.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn echo_identity() -> Option<String> {
    Some("spiffe://cluster.local/ns/shop/sa/echo".to_owned())
}

fn default_identity() -> Option<String> {
    Some("spiffe://cluster.local/ns/shop/sa/default".to_owned())
}

#[tokio::test]
async fn a_sidecar_follows_one_destination_and_receives_nothing_else() {
    let manifests = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let echo_file = manifests.path().join("echo.yaml");
    std::fs::write(
        &echo_file,
        service("shop", "echo", "10.96.0.20", &[ECHO_0, ECHO_1]),
    )
    .unwrap();
    std::fs::write(manifests.path().join("vault.yaml"), vault()).unwrap();
    let control = ControlPlane::start(manifests.path(), state.path(), loopback0()).await;
    let (mut client, token) = client(&control, state.path()).await;

    // An unknown token (neither the join token nor a Pod's) is refused, and nothing is
    // listed.
    let refused = client
        .get(with_token(get("echo.shop.svc.cluster.local:8080"), "not-the-token").unwrap())
        .await
        .expect_err("an unknown token is refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("Pod token refused"),
        "{refused:?}"
    );

    let stream = client
        .get(with_token(get("echo.shop.svc.cluster.local:8080"), &token).unwrap())
        .await
        .unwrap()
        .into_inner();
    let mut echo = Updates {
        stream,
        seen: Vec::new(),
    };
    let first = echo.until("the first answer", |_| true).await;
    let e = endpoints(&first).expect("echo's endpoints");
    assert_eq!(
        e.service,
        Some(proto::ServiceKey {
            namespace: "shop".into(),
            name: "echo".into()
        })
    );
    assert_eq!((e.port, e.app_protocol.as_deref()), (8080, Some("http")));
    assert!(
        e.endpoints
            .iter()
            .all(|e| e.port == 9000 && e.node_name.as_deref() == Some("node-1"))
    );
    assert_eq!(
        e.endpoints
            .iter()
            .map(|e| e.pod.as_deref())
            .collect::<Vec<_>>(),
        [Some("echo-0"), Some("echo-1")]
    );
    assert_eq!(
        summary(&first),
        [(1, true, echo_identity()), (2, true, default_identity())]
    );

    // The sidecar is listed while its call is open.
    let proxies = control.proxies().await;
    assert!(
        proxies
            .iter()
            .any(|p| p["role"] == "sidecar" && p["name"] == "shop/client-0"),
        "{proxies:?}"
    );

    // A destination that does not exist yet is answered at once.
    let stream = client
        .get(with_token(get("web.shop.svc.cluster.local:8080"), &token).unwrap())
        .await
        .unwrap()
        .into_inner();
    let mut web = Updates {
        stream,
        seen: Vec::new(),
    };
    let unknown = web
        .until("the unknown destination's answer", |_| true)
        .await;
    match &unknown.update {
        Some(Update::NoDestination(n)) => assert_eq!(n.reason, "no Service shop/web"),
        other => panic!("{other:?}"),
    }

    // Scaled to three.
    std::fs::write(
        &echo_file,
        service("shop", "echo", "10.96.0.20", &[ECHO_0, ECHO_1, ECHO_2]),
    )
    .unwrap();
    let scaled = echo
        .until("echo scaled to three", |u| summary(u).len() == 3)
        .await;
    assert_eq!(summary(&scaled)[2], (3, true, echo_identity()));

    // echo-1 unready: still listed, not ready.
    let unready = ("10.1.0.2", false, "echo-1", None);
    std::fs::write(
        &echo_file,
        service("shop", "echo", "10.96.0.20", &[ECHO_0, unready, ECHO_2]),
    )
    .unwrap();
    let update = echo
        .until("echo-1 unready", |u| {
            summary(u).get(1).is_some_and(|e| !e.1)
        })
        .await;
    assert_eq!(
        summary(&update),
        [
            (1, true, echo_identity()),
            (2, false, default_identity()),
            (3, true, echo_identity())
        ]
    );

    // The web Service appears: the unknown destination fills.
    std::fs::write(
        manifests.path().join("web.yaml"),
        service(
            "shop",
            "web",
            "10.96.0.30",
            &[("10.1.1.1", true, "web-0", Some("web"))],
        ),
    )
    .unwrap();
    let filled = web
        .until("web's endpoints", |u| endpoints(u).is_some())
        .await;
    assert_eq!(
        summary(&filled),
        [(
            1,
            true,
            Some("spiffe://cluster.local/ns/shop/sa/web".to_owned())
        )]
    );

    // The echo Service removed (its slice and Pods left behind): no destination again.
    std::fs::write(&echo_file, slice("shop", "echo", &[ECHO_0])).unwrap();
    let gone = echo
        .until("echo removed", |u| {
            matches!(&u.update, Some(Update::NoDestination(_)))
        })
        .await;
    match gone.update {
        Some(Update::NoDestination(n)) => assert_eq!(n.reason, "no Service shop/echo"),
        other => panic!("{other:?}"),
    }
    // Every answer echo's stream had was about echo alone (checked as read), one Service's
    // worth: the largest is its three endpoints.
    assert!(echo.seen.iter().all(|u| summary(u).len() <= 3));
}

#[tokio::test]
async fn a_sidecar_follows_its_workloads_inbound_ports() {
    let manifests = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        manifests.path().join("echo.yaml"),
        service("shop", "echo", "10.96.0.20", &[ECHO_0, ECHO_1]),
    )
    .unwrap();
    std::fs::write(manifests.path().join("vault.yaml"), vault()).unwrap();
    let control = ControlPlane::start(manifests.path(), state.path(), loopback0()).await;
    let (mut client, token) = client(&control, state.path()).await;
    let request = |pod: &str| proto::GetInboundPolicy {
        caller: Some(proto::Caller {
            node: "node-1".to_owned(),
            name: format!("shop/{pod}"),
        }),
        namespace: "shop".to_owned(),
        pod: pod.to_owned(),
    };
    let mut stream = client
        .get_inbound_policy(with_token(request("echo-0"), &token).unwrap())
        .await
        .unwrap()
        .into_inner();
    let policy = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .expect("an answer within the deadline")
        .unwrap()
        .expect("an answer");
    assert!(policy.version > 0);
    assert_eq!(policy.identity, echo_identity());
    assert_eq!(
        policy.ports,
        [proto::InboundPort {
            port: 9000,
            protocol: proto::Protocol::Tcp as i32,
            app_protocol: Some("http".to_owned()),
            services: vec![proto::ServiceKey {
                namespace: "shop".into(),
                name: "echo".into()
            }],
            protocol_hint: proto::ProtocolHint::Http1 as i32,
        }]
    );
    assert_eq!(policy.mtls_mode, proto::MtlsMode::Permissive as i32);
    assert!(policy.authorization.is_empty());
    let bytes = policy.encode_to_vec();
    assert!(!bytes.windows(5).any(|w| w == b"vault"), "{policy:?}");

    // A policy for the namespace and strict mTLS on it reach the sidecar as one new answer,
    // from which it rebuilds the authorizer the manifests describe.
    std::fs::write(manifests.path().join("policy.yaml"), POLICY).unwrap();
    let policed = tokio::time::timeout(DEADLINE, async {
        loop {
            let next = stream.message().await.unwrap().expect("an answer");
            if !next.authorization.is_empty() {
                return next;
            }
        }
    })
    .await
    .expect("the policy within the deadline");
    assert_eq!(policed.mtls_mode, proto::MtlsMode::Strict as i32);
    let authorizer =
        Authorizer::new(proto::policy::to_authorization(policed.authorization).unwrap());
    let from = |namespace: &'static str| Request {
        principal: Some(if namespace == "jobs" {
            "cluster.local/ns/jobs/sa/batch"
        } else {
            "cluster.local/ns/shop/sa/web"
        }),
        namespace: Some(namespace),
        port: 9000,
        http: None,
    };
    assert!(!authorizer.authorize(&from("jobs")).is_allowed());
    assert!(authorizer.authorize(&from("shop")).is_allowed());

    // A request without a workload is refused, naming the field.
    let refused = client
        .get_inbound_policy(with_token(request(""), &token).unwrap())
        .await
        .expect_err("no Pod named");
    assert!(
        refused.message().contains("GetInboundPolicy.pod"),
        "{refused:?}"
    );

    // A sidecar's own Pod token (what an injected sidecar holds; never the join token) asks
    // for destinations and for its own Pod's policy, and for no other Pod's.
    let pod_token = PodTokens::load_or_create(state.path())
        .unwrap()
        .mint(&PodClaims {
            namespace: "shop".into(),
            pod: "echo-0".into(),
            uid: "echo-0-uid".into(),
            service_account: "echo".into(),
            issued_at: 0,
        });
    let mut own = client
        .get_inbound_policy(with_token(request("echo-0"), &pod_token).unwrap())
        .await
        .expect("its own Pod's policy")
        .into_inner();
    let answer = tokio::time::timeout(DEADLINE, own.message())
        .await
        .expect("an answer within the deadline")
        .unwrap()
        .expect("an answer");
    assert_eq!(answer.identity, echo_identity());
    let other = client
        .get_inbound_policy(with_token(request("echo-1"), &pod_token).unwrap())
        .await
        .expect_err("another Pod's policy");
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other:?}");
    client
        .get(with_token(get("echo.shop.svc.cluster.local:8080"), &pod_token).unwrap())
        .await
        .expect("destinations with a Pod token");
    // Nor does it subscribe as a part: a Pod's token is not the join token.
    let channel = channel(
        &control.url().parse().unwrap(),
        &std::fs::read(state.path().join("ca.crt")).unwrap(),
    )
    .await
    .unwrap();
    let mut parts = ControlClient::with_origin(channel, control.url().parse().unwrap());
    let hello = proto::SubscribeRequest {
        message: Some(proto::subscribe_request::Message::Hello(proto::Hello {
            role: proto::Role::Gateway as i32,
            name: "impostor".into(),
            ..Default::default()
        })),
    };
    let refused = parts
        .subscribe(with_token(tonic::codegen::tokio_stream::iter([hello]), &pod_token).unwrap())
        .await
        .expect_err("a Pod token is no join token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
}
