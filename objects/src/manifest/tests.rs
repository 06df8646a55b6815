//! Parsing user input: every document located, every failure a problem, no input a panic.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;

use ferry_model::Severity;

use super::*;
use crate::validate;

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: http
";

/// Several kinds in one stream, used where the content hardly matters.
const STREAM: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
spec:
  ingressClassName: ferry
  tls:
  - hosts: [shop.example.com]
    secretName: shop-tls
  rules:
  - host: shop.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port: {number: 80}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
endpoints:
- addresses: [127.0.0.1]
  conditions: {ready: true}
ports:
- name: http
  port: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  strategy: {rollingUpdate: {maxSurge: 25%, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: shop/web:1.0
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Secret
metadata: {name: shop-tls, namespace: shop}
type: Opaque
data: {tls.crt: aGVsbG8=}
stringData: {note: hi}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: ferry}
spec: {controller: ferry.dev/ingress}
";

const INGRESS_JSON: &str = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
  "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
  "spec": {"ingressClassName": "ferry",
    "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
    "rules": [{"host": "shop.example.com", "http": {"paths": [
      {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
      {"path": "/api", "pathType": "Exact", "backend": {"service": {"name": "api", "port": {"name": "http"}}}}]}}]}}"#;

fn lines(loaded: &Loaded) -> Vec<String> {
    loaded.problems.iter().map(ToString::to_string).collect()
}

/// Parses and validates, as `ferry check` does; the point is that nothing panics.
fn parse_and_validate(file: &str, bytes: &[u8]) -> Loaded {
    let loaded = parse(file, bytes);
    for m in &loaded.manifests {
        validate::object(m);
    }
    validate::across(&loaded.manifests);
    loaded
}

fn docs(loaded: &Loaded) -> Vec<Option<usize>> {
    loaded.manifests.iter().map(|m| m.origin.doc).collect()
}

// ---------------------------------------------------------------------------------------------
// documents

#[test]
fn one_document_is_not_numbered() {
    let loaded = parse("t.yaml", SERVICE.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", lines(&loaded));
    assert_eq!(loaded.manifests.len(), 1);
    let m = &loaded.manifests[0];
    assert_eq!(
        m.origin,
        Origin {
            file: "t.yaml".into(),
            doc: None
        }
    );
    assert_eq!(m.key().to_string(), "Service shop/web");
    let Object::Service(svc) = &m.object else {
        panic!("{m:?}")
    };
    assert_eq!(
        svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
        80
    );
}

#[test]
fn several_documents_are_numbered() {
    let loaded = parse("t.yaml", STREAM.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", lines(&loaded));
    let keys: Vec<String> = loaded
        .manifests
        .iter()
        .map(|m| m.key().to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "Service shop/web",
            "Ingress shop/web",
            "EndpointSlice shop/web-1",
            "Deployment shop/web",
            "Secret shop/shop-tls",
            "IngressClass ferry",
        ]
    );
    assert_eq!(
        docs(&loaded),
        [Some(1), Some(2), Some(3), Some(4), Some(5), Some(6)]
    );
    for m in &loaded.manifests {
        assert_eq!(validate::object(m), [], "{}", m.key());
    }
}

#[test]
fn problem_names_its_document() {
    let bad = SERVICE
        .replace("port: 80", "port: 0")
        .replace("name: web\n", "name: web-b\n");
    let loaded = parse("t.yaml", format!("{SERVICE}---\n{bad}").as_bytes());
    assert_eq!(loaded.manifests.len(), 2);
    let problems: Vec<String> = validate::object(&loaded.manifests[1])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            "t.yaml:2: Service shop/web-b: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        ]
    );
}

#[test]
fn empty_documents_are_skipped() {
    // A leading `---`, a trailing one, and comments-only documents make no objects.
    for text in [
        format!("---\n{SERVICE}"),
        format!("{SERVICE}---\n"),
        format!("{SERVICE}---\n# nothing here\n---\n"),
        format!("# a comment\n---\n{SERVICE}---\n---\n"),
    ] {
        let loaded = parse("t.yaml", text.as_bytes());
        assert!(loaded.problems.is_empty(), "{text}: {:?}", lines(&loaded));
        assert_eq!(loaded.manifests.len(), 1, "{text}");
        // One object in the file: no document number, whatever the empty documents.
        assert_eq!(docs(&loaded), [None], "{text}");
    }
    for text in ["", "---\n", "---\n---\n", "# only a comment\n", "\n\n"] {
        let loaded = parse("t.yaml", text.as_bytes());
        assert!(
            loaded.problems.is_empty() && loaded.manifests.is_empty(),
            "{text:?}: {loaded:?}"
        );
    }
}

#[test]
fn document_numbers_count_empty_documents() {
    // The number points at the document in the file, so empty ones still count: `parse`
    // numbers by position and skips null documents itself, but serde-saphyr has already
    // dropped them, so the third document here is reported as the second.
    let text = format!(
        "{SERVICE}---\n---\n{}",
        SERVICE.replace("name: web\n", "name: api\n")
    );
    let loaded = parse("t.yaml", text.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", lines(&loaded));
    assert_eq!(docs(&loaded), [Some(1), Some(3)]);
}

#[test]
fn lists_are_unpacked() {
    let text = "apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: web}, spec: {ports: [{port: 80}]}}
- {apiVersion: v1, kind: Service, metadata: {name: api, namespace: shop}, spec: {ports: [{port: 80}]}}
- {apiVersion: v1, kind: List, items: []}
";
    let loaded = parse("t.yaml", text.as_bytes());
    let keys: Vec<String> = loaded
        .manifests
        .iter()
        .map(|m| m.key().to_string())
        .collect();
    assert_eq!(keys, ["Service default/web", "Service shop/api"]);
    // Items share the List's document; a List in a List is not unpacked.
    assert_eq!(docs(&loaded), [None, None]);
    assert_eq!(
        lines(&loaded),
        ["t.yaml: List default/<unnamed>: kind: kind List (v1) is not one ferry reads; ignored"]
    );
    assert_eq!(loaded.problems[0].severity, Severity::Warning);

    let empty = parse("t.yaml", b"apiVersion: v1\nkind: List\n");
    assert!(
        empty.problems.is_empty() && empty.manifests.is_empty(),
        "{empty:?}"
    );
    let bad = parse("t.yaml", b"apiVersion: v1\nkind: List\nitems: {a: b}\n");
    assert_eq!(
        lines(&bad),
        ["t.yaml: List default/<unnamed>: items: must be a list of objects"]
    );
}

#[test]
fn list_items_are_numbered_with_their_document() {
    let text = format!(
        "{SERVICE}---\napiVersion: v1\nkind: List\nitems:\n- {{apiVersion: v1, kind: Service, metadata: {{name: api}}, spec: {{ports: [{{port: 80}}]}}}}\n- {{kind: Service}}\n"
    );
    let loaded = parse("t.yaml", text.as_bytes());
    assert_eq!(docs(&loaded), [Some(1), Some(2)]);
    assert_eq!(
        lines(&loaded),
        ["t.yaml:2: Service default/<unnamed>: apiVersion: Required value"]
    );
}

#[test]
fn json_files_are_parsed() {
    let text = r#"{"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}"#;
    let loaded = parse("x.json", text.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", lines(&loaded));
    assert_eq!(loaded.manifests.len(), 1);
    assert_eq!(
        loaded.manifests[0].origin,
        Origin {
            file: "x.json".into(),
            doc: None
        }
    );
    assert_eq!(loaded.manifests[0].key().to_string(), "Service shop/web");

    let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}]}"#;
    let loaded = parse("x.json", list.as_bytes());
    let keys: Vec<String> = loaded
        .manifests
        .iter()
        .map(|m| m.key().to_string())
        .collect();
    assert_eq!(keys, ["Namespace shop", "Service default/web"]);
}

#[test]
fn invalid_json_is_one_problem() {
    let loaded = parse("x.json", br#"{"apiVersion": "v1", "kind": "Service",}"#);
    assert!(loaded.manifests.is_empty());
    assert_eq!(loaded.problems.len(), 1);
    let p = &loaded.problems[0];
    assert!(p.is_error());
    assert_eq!(
        (p.file.as_str(), p.doc, &p.object, p.field.as_str()),
        ("x.json", None, &None, "")
    );
    assert!(p.message.starts_with("invalid JSON: "), "{p}");
    // A YAML stream is not JSON.
    let loaded = parse("x.json", STREAM.as_bytes());
    assert!(loaded.manifests.is_empty());
    assert!(
        loaded.problems[0].message.starts_with("invalid JSON: "),
        "{:?}",
        lines(&loaded)
    );
}

// ---------------------------------------------------------------------------------------------
// kinds and apiVersions

#[test]
fn unknown_kind_is_a_warning() {
    let loaded = parse(
        "t.yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n",
    );
    assert!(loaded.manifests.is_empty());
    assert_eq!(
        lines(&loaded),
        [
            "t.yaml: ConfigMap default/settings: kind: kind ConfigMap (v1) is not one ferry reads; ignored"
        ]
    );
    assert_eq!(loaded.problems[0].severity, Severity::Warning);
    // The other documents of the file are still read.
    let loaded = parse(
        "t.yaml",
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\n---\n{SERVICE}")
            .as_bytes(),
    );
    assert_eq!(loaded.manifests.len(), 1);
    assert_eq!(docs(&loaded), [Some(2)]);
}

#[test]
fn access_kinds_are_passed_over_quietly_and_service_accounts_read() {
    let text = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: ferry, namespace: ferry-system}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: ferry}\nrules: []\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: ferry}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: ferry}\n";
    let loaded = parse("t.yaml", text.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", lines(&loaded));
    assert_eq!(loaded.manifests.len(), 1, "only the ServiceAccount is kept");
    assert_eq!(loaded.manifests[0].object.kind(), Kind::ServiceAccount);
    assert_eq!(loaded.manifests[0].namespace(), "ferry-system");
    // Under another apiVersion it is an unknown kind as any other.
    let loaded = parse(
        "t.yaml",
        b"apiVersion: rbac/v9\nkind: ClusterRole\nmetadata: {name: x}\n",
    );
    assert_eq!(loaded.problems.len(), 1, "{:?}", lines(&loaded));
    assert_eq!(loaded.problems[0].severity, Severity::Warning);
}

#[test]
fn known_kind_with_another_api_version_is_an_error() {
    let text = "apiVersion: networking.k8s.io/v1beta1
kind: Ingress
metadata: {name: web, namespace: shop}
spec: {backend: {serviceName: web, servicePort: 80}}
";
    let loaded = parse("t.yaml", text.as_bytes());
    assert!(loaded.manifests.is_empty());
    assert_eq!(
        lines(&loaded),
        [
            "t.yaml: Ingress shop/web: apiVersion: Unsupported value: \"networking.k8s.io/v1beta1\": Ingress is served as \"networking.k8s.io/v1\""
        ]
    );
    assert!(loaded.problems[0].is_error());
}

#[test]
fn api_version_and_kind_required() {
    let loaded = parse("t.yaml", b"kind: Service\nmetadata: {name: web}\n");
    assert_eq!(
        lines(&loaded),
        ["t.yaml: Service default/web: apiVersion: Required value"]
    );
    let loaded = parse(
        "t.yaml",
        b"apiVersion: v1\nmetadata: {name: web, namespace: shop}\n",
    );
    assert_eq!(
        lines(&loaded),
        ["t.yaml: <no kind> shop/web: kind: Required value"]
    );
    // Not a string is not there.
    let loaded = parse(
        "t.yaml",
        b"apiVersion: 1\nkind: Service\nmetadata: {name: web}\n",
    );
    assert_eq!(
        lines(&loaded),
        ["t.yaml: Service default/web: apiVersion: Required value"]
    );
    assert!(loaded.manifests.is_empty());
}

#[test]
fn cluster_scoped_kind_problem_has_no_namespace() {
    let loaded = parse(
        "t.yaml",
        b"apiVersion: networking.k8s.io/v1beta1\nkind: IngressClass\nmetadata: {name: ferry, namespace: shop}\n",
    );
    assert_eq!(
        lines(&loaded),
        [
            "t.yaml: IngressClass ferry: apiVersion: Unsupported value: \"networking.k8s.io/v1beta1\": IngressClass is served as \"networking.k8s.io/v1\""
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// decoding into the exact types

#[test]
fn wrong_type_names_the_exact_field() {
    let text = SERVICE.replace(
        "  - name: http\n    port: 80\n",
        "  - name: http\n    port: 80\n  - name: alt\n    port: \"eighty\"\n",
    );
    let loaded = parse("t.yaml", text.as_bytes());
    assert!(loaded.manifests.is_empty());
    assert_eq!(loaded.problems.len(), 1, "{:?}", lines(&loaded));
    let p = &loaded.problems[0];
    assert!(p.is_error());
    assert_eq!(p.field, "spec.ports[1].port");
    assert_eq!(p.object.as_ref().unwrap().to_string(), "Service shop/web");
    assert!(p.message.starts_with("Invalid value: "), "{p}");
    assert!(p.message.contains("eighty"), "{p}");
}

#[test]
fn wrong_type_in_a_map_and_deeper() {
    // A label value that YAML reads as a number.
    let loaded = parse(
        "t.yaml",
        SERVICE
            .replace("labels: {app: web}", "labels: {version: 2}")
            .as_bytes(),
    );
    assert_eq!(loaded.problems.len(), 1, "{:?}", lines(&loaded));
    assert_eq!(loaded.problems[0].field, "metadata.labels.version");

    let text = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  rules:
  - host: a.example.com
  - host: b.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /x, pathType: Prefix, backend: {service: {name: web, port: {number: eighty}}}}
";
    let loaded = parse("t.yaml", text.as_bytes());
    assert_eq!(loaded.problems.len(), 1, "{:?}", lines(&loaded));
    assert_eq!(
        loaded.problems[0].field,
        "spec.rules[1].http.paths[1].backend.service.port.number"
    );
}

#[test]
fn missing_required_field_is_required_value() {
    // k8s-openapi decodes a missing `pathType` as empty; validation then reports it where the
    // API server would.
    let text = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  rules:
  - http:
      paths:
      - path: /
        backend: {service: {name: web, port: {number: 80}}}
";
    let loaded = parse("t.yaml", text.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", lines(&loaded));
    let problems: Vec<String> = validate::object(&loaded.manifests[0])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        ["t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].pathType: Required value"]
    );

    // Likewise a Service port without `port`, and an EndpointSlice without `addressType`.
    let loaded = parse("t.yaml", SERVICE.replace("    port: 80\n", "").as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", lines(&loaded));
    let problems: Vec<String> = validate::object(&loaded.manifests[0])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            "t.yaml: Service shop/web: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        ]
    );
}

#[test]
fn missing_field_error_reads_as_required_value() {
    // The decoder's own rewriting of serde's "missing field" message, on a type with a field
    // serde requires.
    #[derive(Debug, serde::Deserialize, serde::Serialize)]
    #[allow(dead_code)]
    struct Spec {
        ports: Vec<Port>,
    }
    #[derive(Debug, serde::Deserialize, serde::Serialize)]
    #[allow(dead_code)]
    struct Port {
        port: i32,
    }
    let value: Value = serde_json::from_str(r#"{"ports": [{"port": 80}, {}]}"#).unwrap();
    let (field, message) = decode::<Spec>(value).unwrap_err();
    assert_eq!(
        (field.as_str(), message.as_str()),
        ("ports[1].port", "Required value")
    );

    #[derive(Debug, serde::Deserialize, serde::Serialize)]
    #[allow(dead_code)]
    struct Data {
        data: std::collections::BTreeMap<String, Inner>,
    }
    #[derive(Debug, serde::Deserialize, serde::Serialize)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(rename = "tls.crt")]
        cert: String,
    }
    let value: Value = serde_json::from_str(r#"{"data": {"a.b": {}}}"#).unwrap();
    let (field, message) = decode::<Data>(value).unwrap_err();
    assert_eq!(
        (field.as_str(), message.as_str()),
        ("data[a.b][tls.crt]", "Required value")
    );
}

#[test]
fn scalar_or_sequence_document_is_an_error() {
    for text in ["hello\n", "42\n", "- a\n- b\n", "[1, 2]\n", "true\n"] {
        let loaded = parse("t.yaml", text.as_bytes());
        assert!(loaded.manifests.is_empty(), "{text}");
        assert_eq!(
            lines(&loaded),
            ["t.yaml: a document must be a mapping (an object), not a scalar or a sequence"],
            "{text}"
        );
    }
    let loaded = parse("t.yaml", format!("{SERVICE}---\nhello\n").as_bytes());
    assert_eq!(loaded.manifests.len(), 1);
    assert_eq!(
        lines(&loaded),
        ["t.yaml:2: a document must be a mapping (an object), not a scalar or a sequence"]
    );
    let loaded = parse("x.json", b"[1, 2]");
    assert_eq!(
        lines(&loaded),
        ["x.json: a document must be a mapping (an object), not a scalar or a sequence"]
    );
}

// ---------------------------------------------------------------------------------------------
// what the API server does on write

#[test]
fn namespace_defaults_for_namespaced_kinds() {
    for text in [
        SERVICE.replace("  namespace: shop\n", ""),
        SERVICE.replace("  namespace: shop\n", "  namespace: ''\n"),
        SERVICE.replace("  namespace: shop\n", "  namespace:\n"),
    ] {
        let loaded = parse("t.yaml", text.as_bytes());
        assert!(loaded.problems.is_empty(), "{:?}", lines(&loaded));
        let m = &loaded.manifests[0];
        assert_eq!(
            m.object.metadata().namespace.as_deref(),
            Some("default"),
            "{text}"
        );
        assert_eq!(m.namespace(), "default");
        assert_eq!(m.key().to_string(), "Service default/web");
    }
}

#[test]
fn namespace_cleared_for_cluster_scoped_kinds() {
    let text = "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: ferry, namespace: shop}
spec: {controller: ferry.dev/ingress}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, namespace: default}
";
    let loaded = parse("t.yaml", text.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", lines(&loaded));
    for m in &loaded.manifests {
        assert_eq!(m.object.metadata().namespace, None, "{}", m.key());
        assert_eq!(m.object_ref().namespace, None);
    }
    assert_eq!(loaded.manifests[0].key().to_string(), "IngressClass ferry");
    assert_eq!(loaded.manifests[1].key().to_string(), "Namespace shop");
}

#[test]
fn secret_string_data_merged_over_data() {
    let text = "apiVersion: v1
kind: Secret
metadata: {name: s, namespace: shop}
data: {a: b2xk, b: a2VlcA==}
stringData: {a: new, c: added}
";
    let loaded = parse("t.yaml", text.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", lines(&loaded));
    let Object::Secret(secret) = &loaded.manifests[0].object else {
        panic!()
    };
    assert_eq!(secret.string_data, None);
    let data: Vec<(&str, &[u8])> = secret
        .data
        .as_ref()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.0.as_slice()))
        .collect();
    assert_eq!(data, [("a", &b"new"[..]), ("b", b"keep"), ("c", b"added")]);

    // stringData alone makes data.
    let loaded = parse(
        "t.yaml",
        b"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: v}\n",
    );
    let Object::Secret(secret) = &loaded.manifests[0].object else {
        panic!()
    };
    assert_eq!(secret.data.as_ref().unwrap()["k"].0, b"v");
}

#[test]
fn secret_invalid_base64_names_the_key() {
    let text = "apiVersion: v1
kind: Secret
metadata: {name: shop-tls, namespace: shop}
type: kubernetes.io/tls
data:
  tls.crt: '!!! not base64 !!!'
  tls.key: aGVsbG8=
";
    let loaded = parse("t.yaml", text.as_bytes());
    assert!(loaded.manifests.is_empty());
    assert_eq!(loaded.problems.len(), 1, "{:?}", lines(&loaded));
    let p = &loaded.problems[0];
    assert!(p.is_error());
    assert_eq!(p.field, "data[tls.crt]");
    assert_eq!(
        p.object.as_ref().unwrap().to_string(),
        "Secret shop/shop-tls"
    );
    assert!(
        p.to_string()
            .starts_with("t.yaml: Secret shop/shop-tls: data[tls.crt]: Invalid value: "),
        "{p}"
    );
    // A key without dots reads as a field.
    let loaded = parse(
        "t.yaml",
        b"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {password: '***'}\n",
    );
    assert_eq!(
        loaded.problems[0].field,
        "data.password",
        "{:?}",
        lines(&loaded)
    );
}

// ---------------------------------------------------------------------------------------------
// hostile input

#[test]
fn garbage_is_a_problem() {
    for bytes in [
        &b"\x00\x01\x02\x03binary\x7f"[..],
        b"{{{{",
        b"key: [unclosed",
        b"a: b\n  c: d\n:::",
        b"\t\tapiVersion: v1\n",
        b"apiVersion: v1\nkind: Service\nmetadata: &a {name: web}\nspec: *b\n",
        b"%YAML 9.9\n---\na: b\n",
        b"a: !!binary notbase64*\n",
    ] {
        let loaded = parse_and_validate("t.yaml", bytes);
        assert!(loaded.manifests.is_empty(), "{bytes:?}: {loaded:?}");
        assert!(!loaded.problems.is_empty(), "{bytes:?}");
        for p in &loaded.problems {
            assert!(!p.to_string().contains('\n'), "one line: {p}");
        }
    }
}

#[test]
fn invalid_utf8_is_a_problem() {
    let mut bytes = SERVICE.as_bytes().to_vec();
    bytes.extend_from_slice(b"  annotations: {a: \"\xff\xfe\"}\n");
    for (file, bytes) in [
        ("t.yaml", &bytes[..]),
        ("x.json", b"{\"a\": \"\xc3\x28\"}"),
        ("t.yaml", b"\xff"),
    ] {
        let loaded = parse(file, bytes);
        assert!(loaded.manifests.is_empty());
        assert_eq!(loaded.problems.len(), 1);
        assert!(
            loaded.problems[0]
                .to_string()
                .starts_with(&format!("{file}: not UTF-8 text: ")),
            "{:?}",
            lines(&loaded)
        );
    }
}

#[test]
fn truncated_input_never_panics() {
    for (file, text) in [("t.yaml", STREAM), ("x.json", INGRESS_JSON)] {
        let bytes = text.as_bytes();
        for end in 0..=bytes.len() {
            let loaded = parse_and_validate(file, &bytes[..end]);
            for p in &loaded.problems {
                assert!(!p.to_string().contains('\n'), "one line: {p}");
            }
        }
        // The whole input parses cleanly.
        let whole = parse(file, bytes);
        assert!(whole.problems.is_empty(), "{file}: {:?}", lines(&whole));
    }
}

#[test]
fn deep_nesting_is_a_problem_not_a_crash() {
    let deep = [
        ("t.yaml", "[".repeat(100_000)),
        ("t.yaml", "{a: ".repeat(100_000)),
        (
            "t.yaml",
            format!("a: {}1{}", "[".repeat(1000), "]".repeat(1000)),
        ),
        (
            "t.yaml",
            (0..2_000)
                .map(|i| format!("{}k:\n", " ".repeat(i)))
                .collect(),
        ),
        ("t.yaml", "- ".repeat(100_000)),
        ("x.json", "[".repeat(100_000)),
        (
            "x.json",
            format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)),
        ),
        ("x.json", "{\"a\":".repeat(100_000)),
    ];
    for (file, text) in deep {
        let loaded = parse_and_validate(file, text.as_bytes());
        assert!(loaded.manifests.is_empty(), "{file}: {}", &text[..20]);
        assert_eq!(loaded.problems.len(), 1, "{file}: {:?}", lines(&loaded));
        let p = &loaded.problems[0];
        assert!(p.is_error() && p.object.is_none(), "{p}");
        let prefix = if file.ends_with(".json") {
            "invalid JSON: "
        } else {
            "invalid YAML"
        };
        assert!(p.message.starts_with(prefix), "{p}");
    }
}

#[test]
fn nesting_within_the_limit_is_fine() {
    // Deep, but well within the limit: a label map 20 levels down is a type error, not a refusal.
    let deep = format!("{}x{}", "{a: ".repeat(20), "}".repeat(20));
    let loaded = parse(
        "t.yaml",
        SERVICE
            .replace("labels: {app: web}", &format!("labels: {deep}"))
            .as_bytes(),
    );
    assert_eq!(loaded.problems.len(), 1, "{:?}", lines(&loaded));
    assert_eq!(loaded.problems[0].field, "metadata.labels.a");
}

#[test]
fn file_over_the_size_limit_is_refused() {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    // Sparse: nothing is written, so this costs no disk.
    file.as_file().set_len(MAX_FILE_BYTES + 1).unwrap();
    let loaded = read_file(file.path());
    assert!(loaded.manifests.is_empty());
    let name = file.path().display().to_string();
    assert_eq!(
        lines(&loaded),
        [format!(
            "{name}: file is {} bytes; the limit is {MAX_FILE_BYTES}",
            MAX_FILE_BYTES + 1
        )]
    );
    assert!(
        loaded.problems[0]
            .message
            .contains(&MAX_FILE_BYTES.to_string())
    );
}

#[test]
fn read_file_reads_and_names_the_file() {
    let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    file.write_all(STREAM.as_bytes()).unwrap();
    let loaded = read_file(file.path());
    assert!(loaded.problems.is_empty(), "{:?}", lines(&loaded));
    assert_eq!(loaded.manifests.len(), 6);
    let name = file.path().display().to_string();
    assert!(loaded.manifests.iter().all(|m| *m.origin.file == *name));

    let missing = file.path().with_extension("gone.yaml");
    let loaded = read_file(&missing);
    assert_eq!(loaded.problems.len(), 1);
    assert_eq!(loaded.problems[0].file, missing.display().to_string());
    assert!(loaded.problems[0].object.is_none());
}

#[test]
fn files_walks_directories_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("b/nested")).unwrap();
    fs::create_dir_all(root.join(".hidden")).unwrap();
    for f in [
        "z.yaml",
        "a.yml",
        "m.json",
        "notes.txt",
        ".dot.yaml",
        "b/nested/x.yaml",
        ".hidden/h.yaml",
    ] {
        fs::write(root.join(f), "").unwrap();
    }
    let found = files(&[root.to_path_buf()]).unwrap().files;
    let rel: Vec<String> = found
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect();
    assert_eq!(rel, ["a.yml", "b/nested/x.yaml", "m.json", "z.yaml"]);

    // A named file is taken whatever its extension; a missing path is a problem.
    let txt = root.join("notes.txt");
    assert_eq!(files(std::slice::from_ref(&txt)).unwrap().files, [txt]);
    let err = files(&[root.join("nope")]).unwrap_err();
    assert!(err.file.ends_with("nope"), "{err}");

    // The loaded problems and objects of several files add up.
    let mut all = Loaded::default();
    all.extend(parse("a.yaml", SERVICE.as_bytes()));
    all.extend(parse("b.yaml", b"hello"));
    assert_eq!((all.manifests.len(), all.problems.len()), (1, 1));
}

#[cfg(unix)]
#[test]
fn files_does_not_loop_through_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("web.yaml"), SERVICE).unwrap();
    std::os::unix::fs::symlink(".", root.join("loop")).unwrap();
    let found = files(&[root.to_path_buf()]).unwrap().files;
    assert_eq!(
        found.len(),
        1,
        "the same file under {} paths, down to {:?}",
        found.len(),
        found.first()
    );
    assert_eq!(found, [root.join("web.yaml")]);
}

/// A named pipe says it holds 0 bytes, and opening one blocks until a writer comes: read_file
/// must refuse it without opening it (the control loop once hung here for good).
#[cfg(unix)]
#[test]
fn read_file_never_blocks_on_a_named_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.yaml");
    mkfifo(&fifo);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || tx.send(read_file(&fifo)).unwrap())
    };
    let loaded = rx.recv_timeout(std::time::Duration::from_secs(20));
    // Whatever happened, let a reader stuck in open() go (opening a pipe for both reading and
    // writing never blocks on Linux), so a failure does not hang the test run.
    drop(fs::OpenOptions::new().read(true).write(true).open(&fifo));
    let loaded = loaded.expect("read_file returns without waiting for a writer");
    reader.join().unwrap();
    assert!(loaded.manifests.is_empty());
    assert_eq!(
        lines(&loaded),
        [format!(
            "{}: a named pipe (FIFO), not a regular file: ferry reads manifests only from regular files",
            fifo.display()
        )]
    );
    assert!(loaded.problems[0].is_error());
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A named pipe, socket or device with a manifest's name is never opened (opening a pipe
/// blocks until a writer comes): in a directory it is skipped with a warning naming it, named
/// directly it is an error. A symlink to a regular file is read as the file.
#[cfg(unix)]
#[test]
fn only_regular_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("a.yaml"), SERVICE).unwrap();
    mkfifo(&root.join("b.yaml"));
    let _socket = std::os::unix::net::UnixListener::bind(root.join("c.yaml")).unwrap();
    std::os::unix::fs::symlink("a.yaml", root.join("d.yaml")).unwrap();
    std::os::unix::fs::symlink("b.yaml", root.join("e.yaml")).unwrap();

    let listing = files(&[root.to_path_buf()]).unwrap();
    assert_eq!(listing.files, [root.join("a.yaml"), root.join("d.yaml")]);
    let warnings: Vec<String> = listing.problems.iter().map(ToString::to_string).collect();
    let pipe = "a named pipe (FIFO), not a regular file: ferry reads manifests only from regular files; skipped";
    let socket =
        "a socket, not a regular file: ferry reads manifests only from regular files; skipped";
    assert_eq!(
        warnings,
        [
            format!("{}: {pipe}", root.join("b.yaml").display()),
            format!("{}: {socket}", root.join("c.yaml").display()),
            format!("{}: {pipe}", root.join("e.yaml").display()),
        ]
    );
    assert!(listing.problems.iter().all(|p| !p.is_error()));

    // Named directly: an error, and nothing else is read.
    let err = files(&[root.join("a.yaml"), root.join("b.yaml")]).unwrap_err();
    assert!(err.is_error());
    assert_eq!(
        err.to_string(),
        format!(
            "{}: a named pipe (FIFO), not a regular file: ferry reads manifests only from regular files",
            root.join("b.yaml").display()
        )
    );
    let err = files(&[PathBuf::from("/dev/null")]).unwrap_err();
    assert!(err.to_string().contains("a character device"), "{err}");

    // read_file itself refuses what is not a regular file, without opening it.
    let loaded = read_file(root);
    assert!(
        loaded.problems[0].message.contains("a directory"),
        "{:?}",
        lines(&loaded)
    );
    let loaded = read_file(&root.join("d.yaml"));
    assert!(loaded.problems.is_empty(), "{:?}", lines(&loaded));
    assert_eq!(loaded.manifests.len(), 1);
}

/// A tiny deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_input_never_panics() {
    // Bytes that matter to YAML, so mutations reach deep into the parser and decoder.
    const INTERESTING: &[u8] = b"-:[]{},#&*!|>'\"%@`?\n \t0123456789abcxyz.~/\\\x00\xff\xc3";
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let original = STREAM.as_bytes();
    for round in 0..2000 {
        let mut bytes = original.to_vec();
        for _ in 0..=rng.below(8) {
            let at = rng.below(bytes.len() + 1);
            let byte = if rng.below(2) == 0 {
                INTERESTING[rng.below(INTERESTING.len())]
            } else {
                (rng.next() & 0xff) as u8
            };
            match rng.below(3) {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.push(byte),
            }
        }
        let file = if round % 10 == 0 { "x.json" } else { "t.yaml" };
        let loaded = parse_and_validate(file, &bytes);
        for p in &loaded.problems {
            assert!(
                !p.to_string().contains('\n'),
                "round {round}: one line: {p}"
            );
        }
    }
}

#[test]
fn many_documents_parse_fully() {
    const N: usize = 20_000;
    let mut text = String::new();
    for i in 0..N {
        text.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: shop}}\nspec: {{ports: [{{port: 80}}]}}\n---\n"
        ));
    }
    let loaded = parse("t.yaml", text.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", &lines(&loaded)[..1]);
    assert_eq!(loaded.manifests.len(), N);
    assert_eq!(loaded.manifests[N - 1].origin.doc, Some(N));
    assert_eq!(loaded.manifests[N - 1].name(), format!("svc-{}", N - 1));
    assert!(validate::across(&loaded.manifests).is_empty());
}

#[test]
fn unknown_fields_are_warnings_naming_their_path() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop, labls: {a: b}}\nspec:\n  selctor: {app: web}\n  ports:\n  - {port: 80, nmae: http}\n  type: null\n";
    let loaded = parse("t.yaml", yaml.as_bytes());
    assert_eq!(loaded.manifests.len(), 1);
    let lines: Vec<String> = loaded.problems.iter().map(ToString::to_string).collect();
    let msg = "unknown field; ignored (kubectl's strict field validation refuses it)";
    assert_eq!(
        lines,
        vec![
            format!("t.yaml: Service shop/web: metadata.labls: {msg}"),
            format!("t.yaml: Service shop/web: spec.ports[0].nmae: {msg}"),
            format!("t.yaml: Service shop/web: spec.selctor: {msg}"),
        ]
    );
    assert!(loaded.problems.iter().all(|p| !p.is_error()));
}
