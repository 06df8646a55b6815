//! ServiceAccount tokens end to end, with the real `kubectl` (skipped, with the reason printed,
//! where it is not installed): `kubectl create token` against `ferry up`'s API server (the
//! protobuf TokenRequest kubectl sends), its TokenReview with `kubectl create -f` authenticated
//! for ferry's audience and not for another, and `ferry control --source kubernetes` (the
//! built binary, reading that API server through its kubeconfig) issuing a workload
//! certificate to a caller presenting a Pod-bound token, refusing an unbound or
//! wrong-audience one, and refusing the Pod's token once the Pod is deleted.

use std::path::Path;

use ferry_model::proto::{CertifyRequest, CertifyResponse};
use ferry_runtime::subscribe::channel;
use ferry_runtime::subscribe::grpc::identity_client::IdentityClient as Grpc;
use tempfile::TempDir;

use crate::kubectl::{Cluster, have_kubectl, kubectl, ok};
use crate::push::{ControlPlane, Process, addr};
use crate::{DEADLINE, eventually};

const FILES: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
"#;

/// Written through the API, so that it can be deleted through it.
const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop}
spec:
  serviceAccountName: web
  nodeName: elsewhere
  containers: [{name: app, image: ferry/echo}]
"#;

fn review(token: &str, audience: &str) -> String {
    format!(
        "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {token}\n  audiences: [{audience}]\n"
    )
}

/// A CSR for a fresh P-256 key, DER.
fn csr() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec()
}

async fn certify(
    control: &ControlPlane,
    state: &Path,
    token: &str,
) -> Result<CertifyResponse, tonic::Status> {
    let url: http::Uri = control.url().parse().unwrap();
    let ca = std::fs::read(state.join("ca.crt")).unwrap();
    let mut client = Grpc::with_origin(channel(&url, &ca).await.unwrap(), url);
    client
        .certify(CertifyRequest {
            csr: csr(),
            token: token.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn kubectl_creates_and_reviews_tokens_and_ferry_control_certifies_a_pod_bound_one() {
    let test = "kubectl_creates_and_reviews_tokens_and_ferry_control_certifies_a_pod_bound_one";
    if !have_kubectl(test).await {
        return;
    }
    let (dir, state, cache) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("shop.yaml"), FILES).unwrap();
    let cluster = Cluster::start(&manifests, state.path(), None).await;
    let (kc, cache) = (cluster.kubeconfig.clone(), cache.path());
    let pod = dir.path().join("pod.yaml");
    std::fs::write(&pod, POD).unwrap();
    eventually(DEADLINE, "the Pod web-0 created", || {
        let (kc, cache, pod) = (kc.clone(), cache.to_owned(), pod.clone());
        async move {
            let out = kubectl(&kc, &cache, &["apply", "-f", pod.to_str().unwrap()]).await;
            out.status.success().then_some(())
        }
    })
    .await;

    // A Pod-bound token for ferry's audience, as a sidecar's projected volume holds.
    let token = ok(
        &kc,
        cache,
        &[
            "create",
            "token",
            "web",
            "-n",
            "shop",
            "--audience",
            "ferry",
            "--duration",
            "20m",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "web-0",
        ],
    )
    .await;
    let token = token.trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let unbound = ok(
        &kc,
        cache,
        &[
            "create",
            "token",
            "web",
            "-n",
            "shop",
            "--audience",
            "ferry",
        ],
    )
    .await;
    let unbound = unbound.trim().to_owned();
    let too_short = kubectl(
        &kc,
        cache,
        &["create", "token", "web", "-n", "shop", "--duration", "5m"],
    )
    .await;
    assert!(!too_short.status.success());
    let stderr = String::from_utf8_lossy(&too_short.stderr);
    assert!(stderr.contains("spec.expirationSeconds"), "{stderr}");
    let missing = kubectl(&kc, cache, &["create", "token", "nobody", "-n", "shop"]).await;
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("serviceaccounts \"nobody\" not found"),
        "{stderr}"
    );

    // TokenReview with kubectl: authenticated for ferry, not for another audience. kubectl's
    // client-side validation of a kind without a PATCH operation reads /openapi/v2, which
    // ferry does not serve: --validate=false, as for any kind there.
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let good = write("good.yaml", review(&token, "ferry"));
    let out = ok(
        &kc,
        cache,
        &["create", "--validate=false", "-f", &good, "-o", "yaml"],
    )
    .await;
    assert!(out.contains("authenticated: true"), "{out}");
    assert!(
        out.contains("username: system:serviceaccount:shop:web"),
        "{out}"
    );
    assert!(
        out.contains("authentication.kubernetes.io/pod-name"),
        "{out}"
    );
    assert!(out.contains("- web-0"), "{out}");
    let wrong = write("wrong.yaml", review(&token, "istio-ca"));
    let out = ok(
        &kc,
        cache,
        &["create", "--validate=false", "-f", &wrong, "-o", "yaml"],
    )
    .await;
    assert!(out.contains("authenticated: false"), "{out}");
    assert!(out.contains("istio-ca"), "{out}");

    // The control plane of a cluster: ServiceAccount tokens reviewed by its API server.
    let control_state = TempDir::new().unwrap();
    let mut process = Process::spawn(&[
        "control",
        "--source",
        "kubernetes",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        control_state.path().to_str().unwrap(),
        "--admin",
        "127.0.0.1:0",
    ]);
    let up = process.log("ferry control is up").await;
    let control = ControlPlane {
        push: addr(&up, "push"),
        admin: addr(&up, "admin"),
        process,
    };
    let state = control_state.path();
    // Issued once the control plane's view has the Pod.
    let issued = eventually(DEADLINE, "a certificate for web-0's token", || {
        let (control, token) = (&control, token.clone());
        async move { certify(control, state, &token).await.ok() }
    })
    .await;
    assert_eq!(issued.identity, "spiffe://cluster.local/ns/shop/sa/web");
    let refused = certify(&control, state, &unbound).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("bound to no Pod"), "{refused:?}");
    let api_token = ok(
        &kc,
        cache,
        &[
            "create",
            "token",
            "web",
            "-n",
            "shop",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "web-0",
        ],
    )
    .await;
    let refused = certify(&control, state, api_token.trim())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("did not authenticate"),
        "{refused:?}"
    );

    // The Pod deleted: its token proves nothing (cached review or not).
    ok(
        &kc,
        cache,
        &[
            "delete",
            "pod",
            "web-0",
            "-n",
            "shop",
            "--grace-period=0",
            "--force",
        ],
    )
    .await;
    let refusal = eventually(DEADLINE, "web-0's token refused", || {
        let (control, token) = (&control, token.clone());
        async move { certify(control, state, &token).await.err() }
    })
    .await;
    assert_eq!(refusal.code(), tonic::Code::Unauthenticated, "{refusal:?}");
    drop(control);
    cluster.stop().await;
}
