//! OpenAPI v3 of `ferry up`'s Kubernetes API, driven by the real `kubectl` (skipped, with the
//! reason printed, where it is not installed): `kubectl explain` prints the fields'
//! documentation, and `kubectl apply`/`create` with their default strict validation get past
//! the OpenAPI download and leave the validation to the server (`fieldValidation=Strict`);
//! kubectl's client-side apply computes its strategic merge patch from the documents' patch
//! metadata, and our strategic merge of that very patch keeps what a JSON merge would lose.

use tempfile::TempDir;

use crate::kubectl::{Cluster, have_kubectl, kubectl, ok};

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: default, labels: {app: api}}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: api
          image: ferry/echo
          env: [{name: A, value: "1"}]
          ports: [{containerPort: 8080}]
"#;

#[tokio::test]
async fn kubectl_explain_prints_the_fields_documentation() {
    if !have_kubectl("kubectl_explain_prints_the_fields_documentation").await {
        return;
    }
    let (manifests, state, cache) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    std::fs::write(manifests.path().join("ns.yaml"), NAMESPACE).unwrap();
    let cluster = Cluster::start(manifests.path(), state.path(), None).await;
    let (kc, cache) = (cluster.kubeconfig.clone(), cache.path().to_owned());

    let replicas = ok(&kc, &cache, &["explain", "deployment.spec.replicas"]).await;
    for says in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "VERSION:    v1",
        "FIELD: replicas <integer>",
        "Number of desired pods.",
    ] {
        assert!(replicas.contains(says), "{says:?} not in:\n{replicas}");
    }

    let containers = ok(&kc, &cache, &["explain", "pod.spec.containers"]).await;
    for says in [
        "KIND:       Pod",
        "FIELD: containers <[]Container>",
        "List of containers belonging to the pod.",
        "image\t<string>",
        "Container image name.",
        "ports\t<[]ContainerPort>",
    ] {
        assert!(containers.contains(says), "{says:?} not in:\n{containers}");
    }

    // The other groups too, and a field that does not exist is kubectl's own error.
    let ingress = ok(&kc, &cache, &["explain", "ingress.spec.rules.host"]).await;
    assert!(ingress.contains("FIELD: host <string>"), "{ingress}");
    // Every kind served is explained.
    for (resource, kind) in [
        ("namespaces", "Namespace"),
        ("pods", "Pod"),
        ("services", "Service"),
        ("endpoints", "Endpoints"),
        ("secrets", "Secret"),
        ("events", "Event"),
        ("deployments", "Deployment"),
        ("replicasets", "ReplicaSet"),
        ("endpointslices", "EndpointSlice"),
        ("ingresses", "Ingress"),
        ("ingressclasses", "IngressClass"),
    ] {
        let out = ok(&kc, &cache, &["explain", resource]).await;
        assert!(
            out.contains(&format!("KIND:       {kind}\n")),
            "{resource}: {out}"
        );
        assert!(out.contains("DESCRIPTION:"), "{resource}: {out}");
    }
    let out = kubectl(&kc, &cache, &["explain", "deployment.spec.nope"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("field \"nope\" does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.stop().await;
}

#[tokio::test]
async fn kubectl_apply_with_default_validation_leaves_it_to_the_server() {
    if !have_kubectl("kubectl_apply_with_default_validation_leaves_it_to_the_server").await {
        return;
    }
    let (manifests, state, cache) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    std::fs::write(manifests.path().join("ns.yaml"), NAMESPACE).unwrap();
    let file = cache.path().join("deploy.yaml");
    std::fs::write(&file, DEPLOYMENT).unwrap();
    let cluster = Cluster::start(manifests.path(), state.path(), None).await;
    let (kc, cache) = (cluster.kubeconfig.clone(), cache.path().to_owned());
    let file = file.to_str().unwrap();

    // Client-side apply and create, then server-side apply: each downloads the OpenAPI
    // documents, finds the server validates (the PATCH operation's `fieldValidation`), and
    // sends its write with fieldValidation=Strict. (Whether the write then succeeds is the
    // write verbs' part; this asserts the write reaches the server.)
    for args in [
        vec!["apply", "-f", file],
        vec!["create", "-f", file],
        vec!["apply", "--server-side", "-f", file],
    ] {
        let mut verbose = args.clone();
        verbose.push("-v=6");
        let out = kubectl(&kc, &cache, &verbose).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("failed to download openapi") && !stderr.contains("error validating"),
            "kubectl {args:?}: {stderr}"
        );
        assert!(
            stderr.contains("/openapi/v3/apis/apps/v1?hash="),
            "kubectl {args:?} did not read the apps/v1 document: {stderr}"
        );
        assert!(
            stderr.lines().any(
                |l| l.contains("/apis/apps/v1/namespaces/default/deployments")
                    && l.contains("fieldValidation=Strict")
                    && (l.contains("POST") || l.contains("PATCH"))
            ),
            "kubectl {args:?} sent no write with fieldValidation=Strict: {stderr}"
        );
    }

    // A field the schema does not know: refused by the server, named, nothing written.
    let typo = cache.join("typo.yaml");
    std::fs::write(
        &typo,
        DEPLOYMENT
            .replace("replicas: 2", "replicaz: 2")
            .replace("metadata: {name: api,", "metadata: {name: typo,"),
    )
    .unwrap();
    let out = kubectl(&kc, &cache, &["apply", "-f", typo.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("strict decoding error: unknown field \"spec.replicaz\""),
        "{stderr}"
    );
    let out = kubectl(&kc, &cache, &["get", "deployment", "typo"]).await;
    assert!(!out.status.success(), "nothing written");
    cluster.stop().await;
}

/// The `api` Deployment as `kubectl create` makes it (no last-applied annotation: a file
/// ferry reads is applied as `kubectl apply` would, with one), with a sidecar and named
/// ports, so that a JSON merge of kubectl's patch would lose them.
const LIVE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: default, labels: {app: api}}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: api
          image: ferry/echo
          ports: [{name: http, containerPort: 8080}]
          env: [{name: A, value: "1"}, {name: B, value: "1"}]
        - name: sidecar
          image: ferry/echo
"#;

/// The file the user applies: the same Deployment, its api container's image and one
/// variable changed, the sidecar and ports not named (as after `kubectl apply` of a file
/// that never had them: kubectl keeps what it did not apply).
const CHANGED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: default, labels: {app: api}}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: api
          image: ferry/echo:2
          env: [{name: A, value: "2"}]
"#;

#[tokio::test]
async fn kubectl_computes_its_apply_patch_from_our_openapi_and_our_merge_keeps_the_containers() {
    if !have_kubectl(
        "kubectl_computes_its_apply_patch_from_our_openapi_and_our_merge_keeps_the_containers",
    )
    .await
    {
        return;
    }
    let (manifests, state, cache) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    let (created, file) = (
        cache.path().join("live.yaml"),
        cache.path().join("changed.yaml"),
    );
    std::fs::write(&created, LIVE).unwrap();
    std::fs::write(&file, CHANGED).unwrap();
    let cluster = Cluster::start(manifests.path(), state.path(), None).await;
    let (kc, cache) = (cluster.kubeconfig.clone(), cache.path().to_owned());
    ok(&kc, &cache, &["create", "-f", created.to_str().unwrap()]).await;
    let live: serde_json::Value = serde_json::from_str(
        &ok(
            &kc,
            &cache,
            &["get", "deploy", "api", "-n", "default", "-o", "json"],
        )
        .await,
    )
    .unwrap();

    // kubectl computes its strategic merge patch with the patch metadata of our apps/v1
    // document (it falls back to its compiled-in types, with a warning, when it cannot).
    let out = kubectl(
        &kc,
        &cache,
        &["apply", "-f", file.to_str().unwrap(), "-v=8"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("error calculating patch from openapi"),
        "{stderr}"
    );
    assert!(
        stderr.contains("application/strategic-merge-patch+json"),
        "{stderr}"
    );
    // klog writes `"Request Body" body="<the body, quoted>"` (ASCII: a JSON string).
    let body: String = stderr
        .lines()
        .filter_map(|l| l.split_once("\"Request Body\" body=").map(|(_, b)| b))
        .filter_map(|b| serde_json::from_str::<String>(b).ok())
        .find(|b| b.contains("$setElementOrder/containers"))
        .unwrap_or_else(|| panic!("no strategic merge patch in: {stderr}"));
    let patch: serde_json::Value = serde_json::from_str(&body).unwrap();

    // Applied by our strategic merge patch: the image and the variable change; the sidecar,
    // the ports and the other variable stay (the reference's Appendix trap).
    let merged =
        ferry_orchestrator::apiserver::strategic::apply("Deployment", &live, &patch).unwrap();
    let containers = &merged["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["name"], "api", "{merged}");
    assert_eq!(containers[0]["image"], "ferry/echo:2", "{merged}");
    assert_eq!(containers[0]["ports"][0]["containerPort"], 8080, "{merged}");
    assert_eq!(
        containers[0]["env"],
        serde_json::json!([{"name": "A", "value": "2"}, {"name": "B", "value": "1"}]),
        "{merged}"
    );
    assert_eq!(containers[1]["name"], "sidecar", "{merged}");
    assert!(
        merged["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string(),
        "{merged}"
    );
    assert!(!merged.to_string().contains("$setElementOrder"), "{merged}");
    // And the server applied the same patch the same way.
    let stored: serde_json::Value = serde_json::from_str(
        &ok(
            &kc,
            &cache,
            &["get", "deploy", "api", "-n", "default", "-o", "json"],
        )
        .await,
    )
    .unwrap();
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"], *containers,
        "{stored}"
    );
    cluster.stop().await;
}

const SERVICE_AND_INGRESS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: api, namespace: default}
spec:
  rules:
    - host: api.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
"#;

#[tokio::test]
async fn the_local_clusters_objects_have_no_field_their_schema_does_not_know() {
    // Strict field validation checks a patched object whole: what the local cluster itself
    // writes must pass it, or every `kubectl apply` to its objects would be refused.
    if !have_kubectl("the_local_clusters_objects_have_no_field_their_schema_does_not_know").await {
        return;
    }
    let (manifests, state, cache) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    std::fs::write(manifests.path().join("api.yaml"), LIVE).unwrap();
    std::fs::write(manifests.path().join("svc.yaml"), SERVICE_AND_INGRESS).unwrap();
    let cluster = Cluster::start(manifests.path(), state.path(), None).await;
    let (kc, cache) = (cluster.kubeconfig.clone(), cache.path().to_owned());
    crate::eventually(crate::DEADLINE, "the api Deployment's Pod", || async {
        let out = ok(
            &kc,
            &cache,
            &["get", "pods", "-n", "default", "--no-headers"],
        )
        .await;
        out.lines().any(|l| l.starts_with("api-")).then_some(())
    })
    .await;
    let mut checked = 0;
    for (resource, kind) in [
        ("namespaces", "Namespace"),
        ("pods", "Pod"),
        ("services", "Service"),
        ("endpoints", "Endpoints"),
        ("secrets", "Secret"),
        ("events", "Event"),
        ("deployments", "Deployment"),
        ("replicasets", "ReplicaSet"),
        ("endpointslices", "EndpointSlice"),
        ("ingresses", "Ingress"),
        ("ingressclasses", "IngressClass"),
    ] {
        let list: serde_json::Value =
            serde_json::from_str(&ok(&kc, &cache, &["get", resource, "-A", "-o", "json"]).await)
                .unwrap();
        for item in list["items"].as_array().unwrap() {
            let unknown = ferry_orchestrator::apiserver::openapi::unknown_fields(kind, item);
            assert!(
                unknown.is_empty(),
                "{kind} {}/{}: {unknown:?}",
                item["metadata"]["namespace"].as_str().unwrap_or(""),
                item["metadata"]["name"]
            );
            checked += 1;
        }
    }
    // Namespaces, the Deployment, its ReplicaSet and Pod, the Service, its Endpoints and
    // EndpointSlice, the Ingress: all were there to check.
    assert!(checked >= 8, "only {checked} objects");
    cluster.stop().await;
}
