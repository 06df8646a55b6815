//! ServiceAccounts in `ferry up`'s Kubernetes API, driven by the real `kubectl` (skipped, with
//! the reason printed, where it is not installed): `apply` of a ServiceAccount, `get sa -A` with the
//! controller's `default` in every Namespace, a Pod naming a
//! ServiceAccount that does not exist refused 403 as the API server's admission does, its
//! ServiceAccount defaulted otherwise, and a Deployment's Pods held back by a FailedCreate
//! Event until their ServiceAccount exists.

use tempfile::TempDir;

use crate::kubectl::{Cluster, have_kubectl, kubectl, ok};
use crate::{DEADLINE, eventually};

const FILES: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
"#;

const GHOST_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ghostly, namespace: shop}
spec:
  serviceAccountName: ghost
  containers: [{name: app, image: ferry/echo}]
"#;

const PLAIN_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: shop}
spec:
  nodeName: elsewhere
  containers: [{name: app, image: ferry/echo}]
"#;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: shopper
      nodeName: elsewhere
      containers: [{name: web, image: ferry/echo}]
"#;

const SHOPPER: &str =
    "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: shopper, namespace: shop}\n";

#[tokio::test]
async fn kubectl_creates_service_accounts_and_pods_are_admitted_by_them() {
    if !have_kubectl("kubectl_creates_service_accounts_and_pods_are_admitted_by_them").await {
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
    let (ghost, plain, deployment, shopper) = (
        write("ghost.yaml", GHOST_POD),
        write("plain.yaml", PLAIN_POD),
        write("web.yaml", DEPLOYMENT),
        write("shopper.yaml", SHOPPER),
    );
    let cluster = Cluster::start(&manifests, state.path(), None).await;
    let (kc, cache) = (cluster.kubeconfig.clone(), cache.path());

    // The controller's `default` in every Namespace.
    let out = ok(&kc, cache, &["get", "sa", "-A", "-o", "name"]).await;
    for ns in ["default", "kube-system", "shop"] {
        let listed = ok(&kc, cache, &["get", "sa", "-n", ns, "-o", "name"]).await;
        assert!(listed.contains("serviceaccount/default"), "{ns}: {out}");
    }
    let out = ok(&kc, cache, &["get", "sa", "-n", "shop"]).await;
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SECRETS", "AGE"], "{out}");

    // A Pod naming a ServiceAccount that does not exist: 403, as the admission says.
    let refused = kubectl(&kc, cache, &["apply", "-f", &ghost]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("(Forbidden)")
            && stderr.contains(
                "pods \"ghostly\" is forbidden: error looking up service account shop/ghost: serviceaccount \"ghost\" not found"
            ),
        "{stderr}"
    );
    // One naming none runs as `default`.
    ok(&kc, cache, &["apply", "-f", &plain]).await;
    let out = ok(
        &kc,
        cache,
        &[
            "get",
            "pod",
            "plain",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.serviceAccountName}",
        ],
    )
    .await;
    assert_eq!(out, "default");

    // A Deployment's Pods wait for their ServiceAccount: FailedCreate, then made.
    ok(&kc, cache, &["apply", "-f", &deployment]).await;
    eventually(DEADLINE, "the FailedCreate Event", || {
        let (kc, cache) = (kc.clone(), cache.to_owned());
        async move {
            let out = ok(&kc, &cache, &["get", "events", "-n", "shop"]).await;
            out.contains("FailedCreate").then_some(())
        }
    })
    .await;
    let out = ok(
        &kc,
        cache,
        &["get", "pods", "-n", "shop", "-l", "app=web", "-o", "name"],
    )
    .await;
    assert_eq!(out.trim(), "");
    // (`kubectl create sa` sends protobuf, which the API server does not read yet.)
    let out = ok(&kc, cache, &["apply", "-f", &shopper]).await;
    assert_eq!(out.trim(), "serviceaccount/shopper created");
    eventually(DEADLINE, "the Deployment's Pod made", || {
        let (kc, cache) = (kc.clone(), cache.to_owned());
        async move {
            let out = ok(
                &kc,
                &cache,
                &["get", "pods", "-n", "shop", "-l", "app=web", "-o", "name"],
            )
            .await;
            (!out.trim().is_empty()).then_some(())
        }
    })
    .await;

    let out = ok(&kc, cache, &["delete", "sa", "shopper", "-n", "shop"]).await;
    assert_eq!(out.trim(), "serviceaccount \"shopper\" deleted");
    cluster.stop().await;
}
