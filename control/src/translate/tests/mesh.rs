//! The mesh's part of the snapshot (`translate::mesh`): workloads, their mTLS mode, and which
//! AuthorizationPolicies select them; and the answer a sidecar rebuilds its authorizer from.

use ferry_model::policy::{Authorizer, HttpRequest, PolicyRef, Request};
use ferry_model::proto;
use ferry_model::{MtlsMode, Workload};

use super::*;

const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, annotations: {ferry.dev/mtls-mode: strict}}
---
apiVersion: v1
kind: Pod
metadata: {name: api-0, namespace: shop, labels: {app: api}}
spec:
  serviceAccountName: api
  initContainers: [{name: ferry-sidecar, image: ferry, restartPolicy: Always}]
  containers: [{name: app, image: x}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}, annotations: {ferry.dev/mtls-mode: permissive}}
spec:
  # A plain init container of that name is not the sidecar.
  initContainers: [{name: ferry-sidecar, image: ferry}]
  containers: [{name: app, image: x}]
---
apiVersion: v1
kind: Pod
metadata: {name: batch-0, namespace: jobs, labels: {app: api}}
spec: {containers: [{name: app, image: x}]}
---
"#;

const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api-readers, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/web"]}}]
    to: [{operation: {methods: [GET], paths: ["/items*"]}}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: no-jobs, namespace: shop}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: [jobs]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-wide, namespace: ferry-system}
spec:
  action: DENY
  selector: {matchLabels: {app: api}}
  rules: [{to: [{operation: {paths: ["/debug*"]}}]}]
"#;

fn policy_ref(namespace: &str, name: &str) -> PolicyRef {
    PolicyRef {
        namespace: namespace.into(),
        name: name.into(),
    }
}

#[test]
fn workloads_carry_identity_sidecar_mtls_mode_and_the_policies_that_select_them() {
    let t = translate(&store(&[PODS, POLICIES].concat()));
    let mesh = &t.snapshot.mesh;
    assert_eq!(
        mesh.workloads,
        [
            Workload {
                namespace: "jobs".into(),
                name: "batch-0".into(),
                service_account: "default".into(),
                meshed: false,
                mtls_mode: MtlsMode::Permissive,
                // The root namespace's policy selects by labels across namespaces.
                authorization: vec![policy_ref("ferry-system", "mesh-wide")],
            },
            Workload {
                namespace: "shop".into(),
                name: "api-0".into(),
                service_account: "api".into(),
                meshed: true,
                // From the Namespace.
                mtls_mode: MtlsMode::Strict,
                authorization: vec![
                    policy_ref("ferry-system", "mesh-wide"),
                    policy_ref("shop", "api-readers"),
                    policy_ref("shop", "no-jobs"),
                ],
            },
            Workload {
                namespace: "shop".into(),
                name: "web-0".into(),
                service_account: "default".into(),
                meshed: false,
                // The Pod's own annotation wins over its Namespace's.
                mtls_mode: MtlsMode::Permissive,
                // No selector: the whole namespace.
                authorization: vec![policy_ref("shop", "no-jobs")],
            },
        ]
    );
    let names: Vec<String> = mesh
        .authorization_policies
        .iter()
        .map(|p| p.policy.to_string())
        .collect();
    assert_eq!(
        names,
        ["ferry-system/mesh-wide", "shop/api-readers", "shop/no-jobs"]
    );
}

#[test]
fn a_sidecar_rebuilds_the_authorizer_from_its_inbound_answer() {
    let t = translate(&store(&[PODS, POLICIES].concat()));
    let answer = crate::push::inbound::inbound(&t.snapshot, "shop", "api-0", "cluster.local");
    assert_eq!(
        answer.identity.as_deref(),
        Some("spiffe://cluster.local/ns/shop/sa/api")
    );
    assert_eq!(answer.mtls_mode, proto::MtlsMode::Strict as i32);
    let authorizer =
        Authorizer::new(proto::policy::to_authorization(answer.authorization).unwrap());
    let request = |principal: &'static str, method: &'static str, path: &'static str| Request {
        principal: Some(principal),
        namespace: principal.split('/').nth(2),
        port: 8080,
        http: Some(HttpRequest { method, path }),
    };
    let web = "cluster.local/ns/shop/sa/web";
    let decide = |r: Request<'_>| {
        let d = authorizer.authorize(&r);
        (d.is_allowed(), d.policy().map(ToString::to_string))
    };
    assert_eq!(
        decide(request(web, "GET", "/items/7")),
        (true, Some("shop/api-readers".into()))
    );
    assert_eq!(decide(request(web, "POST", "/items/7")), (false, None));
    assert_eq!(
        decide(request(web, "GET", "/debug/pprof")),
        (false, Some("ferry-system/mesh-wide".into()))
    );
    assert_eq!(
        decide(request("cluster.local/ns/jobs/sa/default", "GET", "/items")),
        (false, Some("shop/no-jobs".into()))
    );
    // TCP: the ALLOW rule names methods and paths, so it never matches; nothing else allows.
    let tcp = Request {
        http: None,
        ..request(web, "GET", "/")
    };
    assert!(!authorizer.authorize(&tcp).is_allowed());
    // A Pod no policy selects and no annotation marks: allow all, permissive.
    let none = crate::push::inbound::inbound(&t.snapshot, "jobs", "nobody", "cluster.local");
    assert_eq!(
        (none.mtls_mode, none.authorization.len()),
        (proto::MtlsMode::Permissive as i32, 0)
    );
}
