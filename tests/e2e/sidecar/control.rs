//! Both sidecars as the built binary, taking everything from a real `ferry control`: their
//! certificates (`--token-file`, a Pod token minted with the control plane's key, as the
//! kubelet would), the server side's AuthorizationPolicies and its mTLS mode
//! (`ferry.dev/mtls-mode: strict` on its Pod, while the binary is started permissive).
//! Rewriting the policy file flips the decision without a restart.

use std::path::Path;

use ferry_control::identity::{PodClaims, PodTokens};

use ferry_sidecar::Addrs;

use super::{Binary, SIDECAR, curl, curl_status, echo_app};
use crate::push::{ControlPlane, loopback0};
use crate::{DEADLINE, eventually};

pub(crate) const WEB_UID: &str = "0b6f7a52-9a7c-4c55-a0a4-1f3f6c2d7e01";
pub(crate) const API_UID: &str = "0b6f7a52-9a7c-4c55-a0a4-1f3f6c2d7e02";

/// The Namespace and both meshed Pods; `api-0` is strict and labelled `app: api`.
pub(crate) fn pods() -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n\
         ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web-0, namespace: shop, uid: {WEB_UID}}}\nspec:\n  serviceAccountName: web\n{SIDECAR}  containers: [{{name: app, image: app}}]\n\
         ---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: api-0\n  namespace: shop\n  uid: {API_UID}\n  labels: {{app: api}}\n  annotations: {{ferry.dev/mtls-mode: strict}}\nspec:\n  serviceAccountName: api\n{SIDECAR}  containers: [{{name: app, image: app}}]\n"
    )
}

/// Service `api` at 10.96.0.50:8080, whose one endpoint is Pod `api-0` at 127.0.0.1:`target`.
pub(crate) fn api_service(target: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: shop}}\nspec:\n  clusterIP: 10.96.0.50\n  ports: [{{name: http, port: 8080, targetPort: {target}}}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: api-0\n  namespace: shop\n  labels: {{kubernetes.io/service-name: api}}\naddressType: IPv4\nports: [{{name: http, port: {target}}}]\nendpoints:\n- addresses: [127.0.0.1]\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, namespace: shop, name: api-0}}\n"
    )
}

const DENY_ADMIN: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-admin, namespace: shop}\nspec:\n  selector: {matchLabels: {app: api}}\n  action: DENY\n  rules: [{to: [{operation: {paths: [/admin]}}]}]\n";

const ALLOW_OTHERS: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: only-batch, namespace: shop}\nspec:\n  selector: {matchLabels: {app: api}}\n  action: ALLOW\n  rules: [{from: [{source: {principals: [cluster.local/ns/batch/sa/job]}}]}]\n";

/// A Pod token for `pod` (as the kubelet writes it), in `dir`; its path.
pub(crate) fn token(state: &Path, dir: &Path, pod: &str, uid: &str, sa: &str) -> String {
    let tokens = PodTokens::load_or_create(state).unwrap();
    let file = dir.join(format!("{pod}.token"));
    let minted = tokens.mint(&PodClaims {
        namespace: "shop".into(),
        pod: pod.into(),
        uid: uid.into(),
        service_account: sa.into(),
        issued_at: 0,
    });
    std::fs::write(&file, minted).unwrap();
    file.to_str().unwrap().to_owned()
}

/// The two sidecars these tests run, as the binary with their Pod tokens (minted into `run`)
/// and their certificates from `control`, whose `manifests` get the Pods and the Service
/// `api`: `api-0`, the server, in `mtls_mode` before an echo app, and `web-0`, the client,
/// whose outbound side sends to `api`. Both are killed when this is dropped.
pub(crate) struct TwoSidecars {
    pub(crate) client: Addrs,
    pub(crate) server: Addrs,
    _binaries: [Binary; 2],
}

pub(crate) async fn two_sidecars(
    control: &ControlPlane,
    manifests: &Path,
    state: &Path,
    run: &Path,
    mtls_mode: &str,
) -> TwoSidecars {
    std::fs::write(manifests.join("pods.yaml"), pods()).unwrap();
    let web_token = token(state, run, "web-0", WEB_UID, "web");
    let api_token = token(state, run, "api-0", API_UID, "api");
    let app_port = echo_app().await.port().to_string();
    let (server_binary, server) = Binary::start(
        control,
        state,
        "api-0",
        &[
            "--token-file",
            &api_token,
            "--app-port",
            &app_port,
            "--mtls-mode",
            mtls_mode,
        ],
    )
    .await;
    std::fs::write(
        manifests.join("api.yaml"),
        api_service(server.inbound.port()),
    )
    .unwrap();
    let (client_binary, client) = Binary::start(
        control,
        state,
        "web-0",
        &[
            "--token-file",
            &web_token,
            "--outbound-target",
            "10.96.0.50:8080",
        ],
    )
    .await;
    TwoSidecars {
        client,
        server,
        _binaries: [server_binary, client_binary],
    }
}

#[tokio::test]
async fn sidecars_take_certificates_policy_and_mtls_mode_from_the_control_plane() {
    let (manifests, state, run) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let control = ControlPlane::start(manifests.path(), state.path(), loopback0()).await;
    std::fs::write(manifests.path().join("policy.yaml"), DENY_ADMIN).unwrap();
    let sidecars = two_sidecars(
        &control,
        manifests.path(),
        state.path(),
        run.path(),
        "permissive",
    )
    .await;
    let (client, server) = (sidecars.client, sidecars.server);

    // Certificates from the control plane on both sides: mTLS with both identities.
    let outbound = client.outbound;
    let body = eventually(DEADLINE, "curl through both sidecars", || async {
        let (ok, body) = curl(&format!("http://{outbound}/hello")).await;
        (ok && body.starts_with("GET")).then_some(body)
    })
    .await;
    assert_eq!(
        body,
        "GET /hello xfcc=By=spiffe://cluster.local/ns/shop/sa/api;URI=spiffe://cluster.local/ns/shop/sa/web\n"
    );
    // The DENY policy of the manifests, at the server side.
    eventually(DEADLINE, "/admin denied by deny-admin", || async {
        (curl_status(&format!("http://{outbound}/admin")).await == "403").then_some(())
    })
    .await;
    // The Pod's strict mode replaced --mtls-mode permissive: plaintext straight at it fails.
    let inbound = server.inbound;
    eventually(
        DEADLINE,
        "plaintext refused (strict from the Pod)",
        || async {
            let (ok, _) = curl(&format!("http://{inbound}/hello")).await;
            (!ok).then_some(())
        },
    )
    .await;

    // The policy rewritten: only batch/job may call; web is refused everywhere.
    std::fs::write(manifests.path().join("policy.yaml"), ALLOW_OTHERS).unwrap();
    eventually(DEADLINE, "/hello refused by only-batch", || async {
        (curl_status(&format!("http://{outbound}/hello")).await == "403").then_some(())
    })
    .await;

    let (_, metrics) = crate::get(server.admin, "/metrics").await;
    for line in [
        r#"ferry_sidecar_policy_decisions_total{policy="shop/deny-admin",result="denied"}"#,
        r#"ferry_sidecar_policy_decisions_total{policy="",result="not_allowed"}"#,
        r#"ferry_sidecar_plaintext_connections_total{direction="inbound",outcome="refused_strict"}"#,
        r#"ferry_sidecar_certificate_renewals_total{result="issued"}"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}
