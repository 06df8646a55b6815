//! Istio's AuthorizationPolicy through `ferry up`'s Kubernetes API, driven by the real
//! `kubectl` (skipped, with the reason printed, where it is not installed): `apply` at
//! `security.istio.io/v1` and `v1beta1`, `get authorizationpolicies -A` (Istio's printer
//! columns), a policy ferry would not enforce refused with the field named, `delete`; and the
//! control plane sees a policy made through the API exactly as one read from a file.

use tempfile::TempDir;

use crate::kubectl::{Cluster, have_kubectl, kubectl, ok};
use crate::{DEADLINE, eventually};

const FILES: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: from-file, namespace: shop}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
"#;

const ALLOW_V1: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: shoppers, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules:
    - from: [{source: {principals: ["cluster.local/ns/shop/sa/shopper"]}}]
      to: [{operation: {methods: ["GET"]}}]
"#;

const DENY_V1BETA1: &str = r#"
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: no-delete, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: ["DELETE"]}}]}]
"#;

const AUDIT: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: shop}
spec:
  action: AUDIT
"#;

/// The names of the policies the control plane's snapshot holds, `ns/name`.
fn published(cluster: &Cluster) -> Vec<String> {
    cluster
        .bus
        .current()
        .mesh
        .authorization_policies
        .iter()
        .map(|p| p.policy.to_string())
        .collect()
}

#[tokio::test]
async fn kubectl_applies_gets_and_deletes_authorization_policies() {
    if !have_kubectl("kubectl_applies_gets_and_deletes_authorization_policies").await {
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
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (allow, deny, audit) = (
        write("allow.yaml", ALLOW_V1),
        write("deny.yaml", DENY_V1BETA1),
        write("audit.yaml", AUDIT),
    );
    let cluster = Cluster::start(&manifests, state.path(), None).await;
    let (kc, cache) = (cluster.kubeconfig.clone(), cache.path());

    let out = ok(&kc, cache, &["apply", "-f", &allow]).await;
    assert_eq!(
        out.trim(),
        "authorizationpolicy.security.istio.io/shoppers created"
    );
    let out = ok(&kc, cache, &["apply", "-f", &deny]).await;
    assert_eq!(
        out.trim(),
        "authorizationpolicy.security.istio.io/no-delete created"
    );
    // Applying the same file again changes nothing.
    let out = ok(&kc, cache, &["apply", "-f", &allow]).await;
    assert_eq!(
        out.trim(),
        "authorizationpolicy.security.istio.io/shoppers unchanged"
    );

    let out = ok(&kc, cache, &["get", "authorizationpolicies", "-A"]).await;
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAMESPACE", "NAME", "ACTION", "AGE"], "{out}");
    let named: Vec<(&str, &str, &str)> = rows[1..].iter().map(|r| (r[0], r[1], r[2])).collect();
    assert_eq!(
        named,
        [
            ("default", "no-delete", "DENY"),
            ("shop", "from-file", "DENY"),
            ("shop", "shoppers", "ALLOW"),
        ],
        "{out}"
    );
    // Stored once, read at either version.
    let out = ok(
        &kc,
        cache,
        &[
            "get",
            "authorizationpolicies.v1beta1.security.istio.io",
            "shoppers",
            "-n",
            "shop",
            "-o",
            "jsonpath={.apiVersion} {.spec.rules[0].from[0].source.principals[0]}",
        ],
    )
    .await;
    assert_eq!(
        out,
        "security.istio.io/v1beta1 cluster.local/ns/shop/sa/shopper"
    );

    // A policy ferry would not enforce is refused, the field named.
    let refused = kubectl(&kc, cache, &["apply", "-f", &audit]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("is invalid: spec.action: Unsupported value: \"AUDIT\""),
        "{stderr}"
    );

    // The control plane sees the API's policies as the file's.
    eventually(DEADLINE, "the API's policies published", || {
        let names = published(&cluster);
        async move {
            (names == ["default/no-delete", "shop/from-file", "shop/shoppers"]).then_some(())
        }
    })
    .await;

    let out = ok(&kc, cache, &["delete", "-f", &allow]).await;
    assert_eq!(
        out.trim(),
        "authorizationpolicy.security.istio.io \"shoppers\" deleted"
    );
    let out = ok(&kc, cache, &["delete", "ap", "no-delete"]).await;
    assert_eq!(
        out.trim(),
        "authorizationpolicy.security.istio.io \"no-delete\" deleted"
    );
    eventually(DEADLINE, "the deleted policies withdrawn", || {
        let names = published(&cluster);
        async move { (names == ["shop/from-file"]).then_some(()) }
    })
    .await;
    cluster.stop().await;
}
