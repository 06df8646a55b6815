//! The mesh identity end to end: a `ferry control` process (the built binary) issues a Pod of
//! its manifests a workload certificate through the sidecar's `IdentityClient`, which renews
//! it before it expires (`--workload-cert-ttl 6s`); the chain verifies with `openssl verify`
//! against the state directory's `ca.crt`, as any client would check it; a token the control
//! plane did not mint, or whose Pod is gone, is refused; and after `ferry identity rotate`
//! the sidecar's next certificate comes from the new intermediate under the same root.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use ferry_control::identity::{PodClaims, PodTokens};
use ferry_model::proto::{CertifyRequest, CertifyResponse};
use ferry_runtime::identity::{Credentials, IdentityClient, IdentityConfig};
use ferry_runtime::subscribe::channel;
use ferry_runtime::subscribe::grpc::identity_client::IdentityClient as Grpc;

use crate::push::ControlPlane;
use crate::{DEADLINE, eventually};

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n";
const POD: &str = "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web-0\n  namespace: shop\n  uid: 6c1e0c4e-1b1f-4b7e-9d55-0d3c2e7f0a01\nspec:\n  serviceAccountName: web\n  containers:\n  - name: app\n    image: ferry/echo\n";

fn claims() -> PodClaims {
    PodClaims {
        namespace: "shop".into(),
        pod: "web-0".into(),
        uid: "6c1e0c4e-1b1f-4b7e-9d55-0d3c2e7f0a01".into(),
        service_account: "web".into(),
        issued_at: 0,
    }
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

/// One Certify call, as a client of the public API would make it.
async fn certify(
    control: &ControlPlane,
    state: &Path,
    token: String,
) -> Result<CertifyResponse, tonic::Status> {
    let url: http::Uri = control.url().parse().unwrap();
    let ca = std::fs::read(state.join("ca.crt")).unwrap();
    let mut client = Grpc::with_origin(channel(&url, &ca).await.unwrap(), url);
    client
        .certify(CertifyRequest { csr: csr(), token })
        .await
        .map(tonic::Response::into_inner)
}

/// `openssl verify` of a chain PEM (leaf, intermediate) against a bundle file.
fn openssl_verifies(dir: &Path, chain_pem: &str, bundle: &Path) -> Result<(), String> {
    let blocks: Vec<&str> = chain_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    assert_eq!(blocks.len(), 2, "leaf and intermediate: {chain_pem}");
    let (leaf, intermediate) = (dir.join("leaf.pem"), dir.join("intermediate.pem"));
    std::fs::write(&leaf, blocks[0]).unwrap();
    std::fs::write(&intermediate, blocks[1]).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(bundle)
        .arg("-untrusted")
        .arg(&intermediate)
        .arg(&leaf)
        .output()
        .expect("openssl runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The credentials the client publishes once they satisfy `want`.
async fn credentials(
    watch: &ferry_runtime::identity::CredentialsWatch,
    what: &str,
    want: impl Fn(&Credentials) -> bool,
) -> Arc<Credentials> {
    eventually(DEADLINE, what, || {
        let current = watch.borrow().clone().filter(|c| want(c));
        async move { current }
    })
    .await
}

#[tokio::test]
async fn a_pod_is_issued_renews_survives_an_intermediate_rotation_and_dies_with_its_pod() {
    let dir = tempfile::tempdir().unwrap();
    let (manifests, state) = (dir.path().join("manifests.yaml"), dir.path().join("state"));
    std::fs::write(&manifests, format!("{NAMESPACE}{POD}")).unwrap();
    let mut control = ControlPlane::start_with(
        &manifests,
        &state,
        "127.0.0.1:0".parse().unwrap(),
        &["--workload-cert-ttl", "6s"],
    )
    .await;
    let bundle = state.join("ca.crt");
    let tokens = PodTokens::load_or_create(&state).unwrap();
    let token = tokens.mint(&claims());

    // The public API, as any client: the chain verifies with openssl against ca.crt.
    let answer = certify(&control, &state, token.clone()).await.unwrap();
    assert_eq!(answer.identity, "spiffe://cluster.local/ns/shop/sa/web");
    openssl_verifies(dir.path(), &answer.certificate_chain_pem, &bundle).unwrap();
    assert_eq!(
        answer.trust_bundle_pem,
        std::fs::read_to_string(&bundle).unwrap()
    );

    // Tokens the control plane did not mint, or for a Pod it does not know, prove nothing.
    let stranger = PodTokens::new(&[9; 32]).mint(&claims());
    let refused = certify(&control, &state, stranger).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let ghost = tokens.mint(&PodClaims {
        pod: "ghost".into(),
        ..claims()
    });
    let refused = certify(&control, &state, ghost).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("shop/ghost"), "{refused:?}");

    // The sidecar's client: issued, then renewed before the 6 s certificate expires.
    let client = IdentityClient::build(IdentityConfig {
        control: control.url().parse().unwrap(),
        ca_pem: std::fs::read(&bundle).unwrap(),
        token: token.clone(),
    })
    .unwrap();
    let watch = client.watch();
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    let running = tokio::spawn(client.run(shutdown));
    let first = credentials(&watch, "a first certificate", |_| true).await;
    assert_eq!(
        first.id.to_string(),
        "spiffe://cluster.local/ns/shop/sa/web"
    );
    assert_eq!(first.key.cert.len(), 2, "leaf and intermediate");
    let renewed = credentials(&watch, "a renewed certificate", |c| {
        c.expires > first.expires
    })
    .await;
    assert_ne!(renewed.key.cert[0], first.key.cert[0]);
    assert!(
        renewed.expires > std::time::SystemTime::now(),
        "renewed before the old one expired"
    );

    // An intermediate rotation, through the command: the running control plane reloads,
    // the next renewal chains through the new intermediate to the same root.
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["identity", "rotate", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    control
        .process
        .log("mesh CA reloaded: new certificates are issued from it")
        .await;
    let rotated = credentials(&watch, "a certificate from the new intermediate", |c| {
        c.key.cert[1] != first.key.cert[1]
    })
    .await;
    assert_eq!(rotated.roots, first.roots, "the same root");
    let answer = certify(&control, &state, token.clone()).await.unwrap();
    openssl_verifies(dir.path(), &answer.certificate_chain_pem, &bundle).unwrap();
    assert_eq!(
        std::fs::read_to_string(&bundle).unwrap(),
        answer.trust_bundle_pem,
        "ca.crt unchanged by an intermediate rotation"
    );

    // The Pod deleted: its token is dead.
    std::fs::write(&manifests, NAMESPACE).unwrap();
    eventually(DEADLINE, "the deleted Pod's token refused", || {
        let (control, state, token) = (&control, &state, token.clone());
        async move {
            match certify(control, state, token).await {
                Err(e) if e.code() == tonic::Code::Unauthenticated => Some(()),
                _ => None,
            }
        }
    })
    .await;
    trigger.trigger();
    running.await.unwrap();
}
