//! One test per kind of problem the validators report, each asserting the whole line a user
//! sees: `FILE[:DOC]: KIND NAMESPACE/NAME: FIELD: MESSAGE`.

#![allow(clippy::unwrap_used)]

use ferry_model::{BackendProtocol, CookieAffinity, IngressOptions, IngressRef, Problem, Severity};

use crate::manifest;

/// Parses `yaml` as `t.yaml`, validates every object on its own and all of them together, and
/// returns every problem met (parse problems first).
fn all(yaml: &str) -> Vec<Problem> {
    let loaded = manifest::parse("t.yaml", yaml.as_bytes());
    let mut out = loaded.problems;
    for m in &loaded.manifests {
        out.extend(super::object(m));
    }
    out.extend(super::across(&loaded.manifests));
    out
}

fn problems(yaml: &str) -> Vec<String> {
    all(yaml).iter().map(ToString::to_string).collect()
}

#[track_caller]
fn check(yaml: &str, expected: &[&str]) {
    assert_eq!(problems(yaml), expected, "\n--- input ---\n{yaml}");
}

// The API server's messages for its name rules.
const DNS1035: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or \
    '-', start with an alphabetic character, and end with an alphanumeric character (e.g. \
    'my-name', or 'abc-123')";
const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
    characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', \
    or '123-abc')";
const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
    alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
    (e.g. 'example.com')";
const QUALIFIED_NAME: &str = "name part must consist of alphanumeric characters, '-', '_' or \
    '.', and must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', \
    or '123-abc'), with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric \
    characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
    'MyValue', or 'my_value', or '12345')";
const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";

fn service(spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec: {spec}\n"
    )
}

fn slice(address_type: &str, endpoints: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: web-1, namespace: shop, labels: {{kubernetes.io/service-name: web}}}}\n\
         addressType: {address_type}\nendpoints: {endpoints}\nports: [{{name: http, port: 8080}}]\n"
    )
}

fn endpoints(subsets: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: web, namespace: shop}}\nsubsets: {subsets}\n"
    )
}

fn pod(rest: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: web-0, namespace: shop}}\n{rest}\n")
}

/// A Deployment whose selector and template agree, with `extra` added to its spec.
fn deployment(extra: &str) -> String {
    workload(
        "Deployment",
        "{matchLabels: {app: web}}",
        "{app: web}",
        extra,
    )
}

fn workload(kind: &str, selector: &str, labels: &str, extra: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: web, namespace: shop}}\n\
         spec:\n  selector: {selector}\n  template:\n    metadata: {{labels: {labels}}}\n    \
         spec: {{containers: [{{name: app, image: shop/web}}]}}\n{extra}"
    )
}

fn ingress(spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web, namespace: shop}}\n\
         spec: {spec}\n"
    )
}

const BACKEND: &str = "{service: {name: web, port: {number: 80}}}";

/// An Ingress with one rule for `shop.example.com` and one path, written as a flow mapping.
fn ingress_path(path: &str) -> String {
    ingress(&format!(
        "{{rules: [{{host: shop.example.com, http: {{paths: [{path}]}}}}]}}"
    ))
}

fn ingress_backend(backend: &str) -> String {
    ingress_path(&format!(
        "{{path: /, pathType: Prefix, backend: {backend}}}"
    ))
}

fn ingress_host(host: &str) -> String {
    ingress(&format!(
        "{{rules: [{{host: {host:?}, http: {{paths: [{{path: /, pathType: Prefix, backend: {BACKEND}}}]}}}}]}}"
    ))
}

fn ingress_class(spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: ferry}}\nspec: {spec}\n"
    )
}

/// A Secret in `shop`; `rest` holds its type and data.
fn secret(rest: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: shop-tls, namespace: shop}}\n{rest}\n")
}

/// A YAML (JSON) double-quoted string holding `s`.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// `bytes` as a Secret's `data` writes them: base64, quoted.
fn base64(bytes: &[u8]) -> String {
    serde_json::to_string(&k8s_openapi::ByteString(bytes.to_vec())).unwrap()
}

struct Pair {
    cert: String,
    key: String,
}

fn keypair() -> Pair {
    let ck = rcgen::generate_simple_self_signed(vec!["a.example.com".to_owned()]).unwrap();
    Pair {
        cert: ck.cert.pem(),
        key: ck.signing_key.serialize_pem(),
    }
}

fn tls_secret(cert: &str, key: &str) -> String {
    secret(&format!(
        "type: kubernetes.io/tls\nstringData: {{tls.crt: {}, tls.key: {}}}",
        quoted(cert),
        quoted(key)
    ))
}

// ---------------------------------------------------------------------------------------------
// metadata (every kind)

#[test]
fn metadata_name_required() {
    check(
        "apiVersion: v1\nkind: Service\nmetadata: {namespace: shop}\nspec: {ports: [{port: 80}]}\n",
        &["t.yaml: Service shop/<unnamed>: metadata.name: Required value"],
    );
    check(
        "apiVersion: v1\nkind: Service\nmetadata: {name: '', namespace: shop}\nspec: {ports: [{port: 80}]}\n",
        &["t.yaml: Service shop/<unnamed>: metadata.name: Required value"],
    );
}

#[test]
fn service_name_must_be_dns1035() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: 1web, namespace: shop}\nspec: {ports: [{port: 80}]}\n";
    check(
        yaml,
        &[&format!(
            "t.yaml: Service shop/1web: metadata.name: Invalid value: \"1web\": {DNS1035}"
        )],
    );
    // Other kinds take a subdomain, which may start with a digit.
    check(
        &pod("spec: {containers: [{name: app}]}").replace("web-0", "1web.v2"),
        &[],
    );
}

#[test]
fn object_name_must_be_dns1123_subdomain() {
    let yaml = pod("spec: {containers: [{name: app}]}").replace("web-0", "Web_0");
    check(
        &yaml,
        &[&format!(
            "t.yaml: Pod shop/Web_0: metadata.name: Invalid value: \"Web_0\": {DNS1123_SUBDOMAIN}"
        )],
    );
}

#[test]
fn namespace_name_must_be_dns1123_label() {
    check(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop.eu}\n",
        &[&format!(
            "t.yaml: Namespace shop.eu: metadata.name: Invalid value: \"shop.eu\": {DNS1123_LABEL}"
        )],
    );
}

#[test]
fn metadata_namespace_invalid() {
    let yaml = service("{ports: [{port: 80}]}").replace("namespace: shop", "namespace: Shop");
    check(
        &yaml,
        &[&format!(
            "t.yaml: Service Shop/web: metadata.namespace: Invalid value: \"Shop\": {DNS1123_LABEL}"
        )],
    );
}

#[test]
fn label_key_invalid() {
    let yaml = service("{ports: [{port: 80}]}")
        .replace("namespace: shop}", "namespace: shop, labels: {-app: web}}");
    check(
        &yaml,
        &[&format!(
            "t.yaml: Service shop/web: metadata.labels: Invalid value: \"-app\": {QUALIFIED_NAME}"
        )],
    );
}

#[test]
fn label_value_invalid() {
    let yaml = service("{ports: [{port: 80}]}")
        .replace("namespace: shop}", "namespace: shop, labels: {app: web-}}");
    check(
        &yaml,
        &[&format!(
            "t.yaml: Service shop/web: metadata.labels[app]: Invalid value: \"web-\": {LABEL_VALUE}"
        )],
    );
}

#[test]
fn annotation_key_invalid() {
    let yaml = service("{ports: [{port: 80}]}").replace(
        "namespace: shop}",
        "namespace: shop, annotations: {'a b': x}}",
    );
    check(
        &yaml,
        &[&format!(
            "t.yaml: Service shop/web: metadata.annotations: Invalid value: \"a b\": {QUALIFIED_NAME}"
        )],
    );
}

/// A Service whose annotations are `count` keys `k0`, `k1`, … with values making the total of
/// keys and values exactly `total` bytes (as the API server counts: key and value lengths).
fn annotated_service(total: usize) -> String {
    let mut annotations = String::new();
    let (count, mut left) = (4, total);
    for i in 0..count {
        let key = format!("k{i}");
        let value_len = if i + 1 == count {
            left - key.len()
        } else {
            total / count - key.len()
        };
        left -= key.len() + value_len;
        annotations.push_str(&format!("{key}: '{}', ", "x".repeat(value_len)));
    }
    service("{ports: [{port: 80}]}").replace(
        "namespace: shop}",
        &format!("namespace: shop, annotations: {{{annotations}}}}}"),
    )
}

#[test]
fn annotations_over_256_kib_in_total_are_too_long() {
    check(&annotated_service(super::MAX_ANNOTATIONS_BYTES), &[]);
    check(
        &annotated_service(super::MAX_ANNOTATIONS_BYTES + 1),
        &[
            "t.yaml: Service shop/web: metadata.annotations: Too long: may not be more than 262144 bytes",
        ],
    );
    // Keys count too: 262,144 bytes of values under a one-byte key is over.
    let yaml = service("{ports: [{port: 80}]}").replace(
        "namespace: shop}",
        &format!(
            "namespace: shop, annotations: {{k: '{}'}}}}",
            "x".repeat(262_144)
        ),
    );
    check(
        &yaml,
        &[
            "t.yaml: Service shop/web: metadata.annotations: Too long: may not be more than 262144 bytes",
        ],
    );
}

/// The API server checks annotation keys as qualified names "except that case doesn't matter".
#[test]
fn annotation_keys_are_checked_regardless_of_case() {
    let yaml = service("{ports: [{port: 80}]}").replace(
        "namespace: shop}",
        "namespace: shop, annotations: {Example.COM/Owner: team, UPPER: x}}",
    );
    check(&yaml, &[]);
    // Labels keep the strict rule: the prefix is a lowercase DNS subdomain.
    let yaml = service("{ports: [{port: 80}]}").replace(
        "namespace: shop}",
        "namespace: shop, labels: {Example.COM/Owner: team}}",
    );
    assert_eq!(problems(&yaml).len(), 1, "{:?}", problems(&yaml));
}

/// An object larger than the API server takes in one request (3 MiB) is refused whole, as the
/// API server answers 413 before validating anything.
#[test]
fn an_object_over_3_mib_is_refused_whole() {
    let pod = |value_len: usize| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: big, namespace: shop, labels: {{'bad key!': x}}}}\n\
             spec:\n  containers:\n  - name: c\n    image: ferry/echo\n    env: [{{name: BLOB, value: '{}'}}]\n",
            "x".repeat(value_len)
        )
    };
    let small = problems(&pod(1000));
    assert_eq!(small.len(), 1, "validated as usual: {small:?}");
    assert!(small[0].contains("metadata.labels"), "{small:?}");
    let loaded = manifest::parse("t.yaml", pod(super::MAX_OBJECT_BYTES).as_bytes());
    let size = loaded.manifests[0].object.encoded_len();
    assert!(size > super::MAX_OBJECT_BYTES);
    check(
        &pod(super::MAX_OBJECT_BYTES),
        &[&format!(
            "t.yaml: Pod shop/big: Request entity too large: limit is 3145728 (the object is {size} bytes as JSON)"
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Service

#[test]
fn valid_services_have_no_problems() {
    check(
        &service("{selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}"),
        &[],
    );
    check(
        &service("{type: NodePort, ports: [{port: 80, nodePort: 30080}]}"),
        &[],
    );
    check(
        &service("{type: ExternalName, externalName: db.example.com.}"),
        &[],
    );
    check(
        &service(
            "{clusterIP: 10.96.0.10, clusterIPs: [10.96.0.10, 'fd00::10'], ipFamilies: [IPv4, IPv6], ports: [{port: 80}]}",
        ),
        &[],
    );
}

#[test]
fn headless_service_without_ports_is_valid() {
    check(&service("{clusterIP: None, selector: {app: web}}"), &[]);
}

#[test]
fn service_spec_required() {
    check(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n",
        &["t.yaml: Service shop/web: spec: Required value"],
    );
}

#[test]
fn service_ports_required() {
    check(
        &service("{selector: {app: web}}"),
        &["t.yaml: Service shop/web: spec.ports: Required value"],
    );
}

#[test]
fn service_port_out_of_range() {
    check(
        &service("{ports: [{port: 70000}]}"),
        &[&format!(
            "t.yaml: Service shop/web: spec.ports[0].port: Invalid value: 70000: {PORT_RANGE}"
        )],
    );
}

#[test]
fn service_port_name_duplicate() {
    check(
        &service("{ports: [{name: http, port: 80}, {name: http, port: 81}]}"),
        &["t.yaml: Service shop/web: spec.ports[1].name: Duplicate value: \"http\""],
    );
}

#[test]
fn service_port_and_protocol_duplicate() {
    check(
        &service(
            "{ports: [{name: a, port: 80}, {name: b, port: 80}, {name: c, port: 80, protocol: UDP}]}",
        ),
        &["t.yaml: Service shop/web: spec.ports[1].port: Duplicate value: 80"],
    );
}

#[test]
fn service_port_name_required_with_several_ports() {
    check(
        &service("{ports: [{port: 80}, {name: https, port: 443}]}"),
        &["t.yaml: Service shop/web: spec.ports[0].name: Required value"],
    );
}

#[test]
fn service_port_name_invalid() {
    check(
        &service("{ports: [{name: HTTP, port: 80}]}"),
        &[&format!(
            "t.yaml: Service shop/web: spec.ports[0].name: Invalid value: \"HTTP\": {DNS1123_LABEL}"
        )],
    );
}

#[test]
fn service_target_port_name_invalid() {
    check(
        &service("{ports: [{port: 80, targetPort: '8080'}]}"),
        &[
            "t.yaml: Service shop/web: spec.ports[0].targetPort: Invalid value: \"8080\": must contain at least one letter (a-z)",
        ],
    );
    check(
        &service("{ports: [{port: 80, targetPort: http--alt}]}"),
        &[
            "t.yaml: Service shop/web: spec.ports[0].targetPort: Invalid value: \"http--alt\": must not contain consecutive hyphens",
        ],
    );
}

#[test]
fn service_target_port_number_out_of_range() {
    check(
        &service("{ports: [{port: 80, targetPort: 70000}]}"),
        &[&format!(
            "t.yaml: Service shop/web: spec.ports[0].targetPort: Invalid value: 70000: {PORT_RANGE}"
        )],
    );
}

#[test]
fn service_protocol_unsupported() {
    check(
        &service("{ports: [{port: 80, protocol: HTTP}]}"),
        &[
            "t.yaml: Service shop/web: spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
        ],
    );
}

#[test]
fn service_app_protocol_invalid() {
    check(
        &service("{ports: [{port: 80, appProtocol: 'h 2'}]}"),
        &[&format!(
            "t.yaml: Service shop/web: spec.ports[0].appProtocol: Invalid value: \"h 2\": {QUALIFIED_NAME}"
        )],
    );
}

#[test]
fn service_type_unsupported() {
    check(
        &service("{type: Internal, ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.type: Unsupported value: \"Internal\": supported values: \"ClusterIP\", \"NodePort\", \"LoadBalancer\", \"ExternalName\"",
        ],
    );
}

#[test]
fn service_external_name_required() {
    check(
        &service("{type: ExternalName}"),
        &["t.yaml: Service shop/web: spec.externalName: Required value"],
    );
}

#[test]
fn service_external_name_invalid() {
    check(
        &service("{type: ExternalName, externalName: db_example.com}"),
        &[&format!(
            "t.yaml: Service shop/web: spec.externalName: Invalid value: \"db_example.com\": {DNS1123_SUBDOMAIN}"
        )],
    );
}

#[test]
fn service_external_name_with_cluster_ip_forbidden() {
    check(
        &service("{type: ExternalName, externalName: db.example.com, clusterIP: 10.96.0.10}"),
        &[
            "t.yaml: Service shop/web: spec.clusterIP: Forbidden: may not be set for ExternalName services",
        ],
    );
}

#[test]
fn service_headless_node_port_invalid() {
    check(
        &service("{type: NodePort, clusterIP: None, ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.clusterIP: Invalid value: \"None\": may not be set to 'None' for NodePort services",
        ],
    );
}

#[test]
fn service_node_port_forbidden_on_cluster_ip() {
    check(
        &service("{ports: [{port: 80, nodePort: 30080}]}"),
        &[
            "t.yaml: Service shop/web: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
        ],
    );
}

#[test]
fn service_node_port_out_of_range() {
    check(
        &service("{type: NodePort, ports: [{port: 80, nodePort: 8080}]}"),
        &[
            "t.yaml: Service shop/web: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767",
        ],
    );
}

#[test]
fn service_cluster_ip_invalid() {
    check(
        &service("{clusterIP: 10.96.0.300, ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.clusterIP: Invalid value: \"10.96.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ],
    );
}

#[test]
fn service_cluster_ips_first_must_match_cluster_ip() {
    check(
        &service("{clusterIP: 10.96.0.10, clusterIPs: [10.96.0.11], ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.clusterIPs[0]: Invalid value: \"10.96.0.11\": must match `spec.clusterIP`",
        ],
    );
}

#[test]
fn service_cluster_ips_same_family() {
    check(
        &service("{clusterIPs: [10.96.0.10, 10.96.0.11], ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.clusterIPs[1]: Invalid value: \"10.96.0.11\": may not have the same IP family as another cluster IP",
        ],
    );
}

#[test]
fn service_cluster_ips_too_many() {
    check(
        &service("{clusterIPs: [10.96.0.10, 'fd00::10', 10.96.0.12], ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.clusterIPs: Too many: 3: must have at most 2 items",
            "t.yaml: Service shop/web: spec.clusterIPs[2]: Invalid value: \"10.96.0.12\": may not have the same IP family as another cluster IP",
        ],
    );
}

#[test]
fn service_cluster_ips_none_must_be_alone() {
    check(
        &service("{clusterIPs: [None, 10.96.0.10], ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.clusterIPs[0]: Invalid value: \"None\": 'None' must be the first and only value",
        ],
    );
}

#[test]
fn service_session_affinity_unsupported() {
    check(
        &service("{sessionAffinity: Cookie, ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.sessionAffinity: Unsupported value: \"Cookie\": supported values: \"None\", \"ClientIP\"",
        ],
    );
}

#[test]
fn service_session_affinity_timeout_out_of_range() {
    let timeout = |t: i64| {
        service(&format!(
            "{{sessionAffinity: ClientIP, sessionAffinityConfig: {{clientIP: {{timeoutSeconds: {t}}}}}, ports: [{{port: 80}}]}}"
        ))
    };
    check(&timeout(1), &[]);
    check(&timeout(86400), &[]);
    check(
        &timeout(0),
        &[
            "t.yaml: Service shop/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400",
        ],
    );
    check(
        &timeout(86401),
        &[
            "t.yaml: Service shop/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400",
        ],
    );
}

#[test]
fn service_session_affinity_timeout_forbidden_without_client_ip() {
    check(
        &service("{sessionAffinityConfig: {clientIP: {timeoutSeconds: 10}}, ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Forbidden: must not be set when `sessionAffinity` is None",
        ],
    );
}

#[test]
fn service_ip_families_unsupported() {
    check(
        &service("{ipFamilies: [IPv5], ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.ipFamilies[0]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\"",
        ],
    );
}

#[test]
fn service_ip_families_duplicate_and_too_many() {
    check(
        &service("{ipFamilies: [IPv4, IPv6, IPv4], ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.ipFamilies: Too many: 3: must have at most 2 items",
            "t.yaml: Service shop/web: spec.ipFamilies[2]: Duplicate value: \"IPv4\"",
        ],
    );
}

#[test]
fn service_ip_family_policy_unsupported() {
    check(
        &service("{ipFamilyPolicy: DualStack, ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.ipFamilyPolicy: Unsupported value: \"DualStack\": supported values: \"SingleStack\", \"PreferDualStack\", \"RequireDualStack\"",
        ],
    );
}

#[test]
fn service_selector_invalid() {
    check(
        &service("{selector: {app: 'web shop'}, ports: [{port: 80}]}"),
        &[&format!(
            "t.yaml: Service shop/web: spec.selector[app]: Invalid value: \"web shop\": {LABEL_VALUE}"
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// EndpointSlice

#[test]
fn valid_slices_have_no_problems() {
    check(
        &slice(
            "IPv4",
            "[{addresses: [10.1.0.1, 10.1.0.2], hostname: web-0, nodeName: node-1}]",
        ),
        &[],
    );
    check(&slice("IPv6", "[{addresses: ['fd00::1']}]"), &[]);
    check(&slice("FQDN", "[{addresses: [web.example.com]}]"), &[]);
}

#[test]
fn slice_address_type_unsupported() {
    check(
        &slice("IPv5", "[{addresses: [10.1.0.1]}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: addressType: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\", \"FQDN\"",
        ],
    );
}

#[test]
fn slice_address_invalid() {
    check(
        &slice("IPv4", "[{addresses: [10.1.0.1, 10.1.0.300]}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[1]: Invalid value: \"10.1.0.300\": must be a valid IP address",
        ],
    );
}

#[test]
fn slice_fqdn_address_invalid() {
    check(
        &slice("FQDN", "[{addresses: [Web.example.com]}]"),
        &[&format!(
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[0]: Invalid value: \"Web.example.com\": {DNS1123_SUBDOMAIN}"
        )],
    );
}

#[test]
fn slice_address_of_the_wrong_family() {
    check(
        &slice("IPv4", "[{addresses: ['fd00::1']}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be an IPv4 address",
        ],
    );
    check(
        &slice("IPv6", "[{addresses: [10.1.0.1]}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[0]: Invalid value: \"10.1.0.1\": must be an IPv6 address",
        ],
    );
}

#[test]
fn slice_link_local_forbidden() {
    check(
        &slice("IPv4", "[{addresses: [169.254.1.1]}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[0]: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16)",
        ],
    );
    check(
        &slice("IPv6", "[{addresses: ['fe80::1']}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[0]: Invalid value: \"fe80::1\": may not be in the link-local range (fe80::/10)",
        ],
    );
}

#[test]
fn slice_unspecified_and_multicast_forbidden() {
    check(
        &slice("IPv4", "[{addresses: [0.0.0.0, 224.0.0.1]}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[0]: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0, ::)",
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[1]: Invalid value: \"224.0.0.1\": may not be in the multicast range",
        ],
    );
}

/// The one documented difference from the API server: on one machine, apps are reached on
/// loopback, so loopback endpoints are accepted.
#[test]
fn slice_loopback_accepted() {
    check(&slice("IPv4", "[{addresses: [127.0.0.1]}]"), &[]);
    check(&slice("IPv6", "[{addresses: ['::1']}]"), &[]);
}

#[test]
fn slice_without_service_name_label_is_a_warning() {
    let yaml = slice("IPv4", "[{addresses: [10.1.0.1]}]").replace(
        "labels: {kubernetes.io/service-name: web}",
        "labels: {app: web}",
    );
    let all = all(&yaml);
    assert_eq!(
        all.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "t.yaml: EndpointSlice shop/web-1: metadata.labels: no \"kubernetes.io/service-name\" label: this slice belongs to no Service and is not used"
        ]
    );
    assert_eq!(all[0].severity, Severity::Warning);
}

#[test]
fn slice_endpoint_addresses_required() {
    check(
        &slice("IPv4", "[{addresses: []}, {hostname: web-1}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses: Required value",
            "t.yaml: EndpointSlice shop/web-1: endpoints[1].addresses: Required value",
        ],
    );
}

#[test]
fn slice_hostname_invalid() {
    check(
        &slice("IPv4", "[{addresses: [10.1.0.1], hostname: web.0}]"),
        &[&format!(
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].hostname: Invalid value: \"web.0\": {DNS1123_LABEL}"
        )],
    );
}

#[test]
fn slice_port_name_duplicate() {
    let yaml = slice("IPv4", "[{addresses: [10.1.0.1]}]").replace(
        "ports: [{name: http, port: 8080}]",
        "ports: [{name: http, port: 8080}, {name: http, port: 9090}]",
    );
    check(
        &yaml,
        &["t.yaml: EndpointSlice shop/web-1: ports[1].name: Duplicate value: \"http\""],
    );
}

#[test]
fn slice_port_out_of_range() {
    let yaml = slice("IPv4", "[{addresses: [10.1.0.1]}]").replace(
        "ports: [{name: http, port: 8080}]",
        "ports: [{name: http, port: 0}]",
    );
    check(
        &yaml,
        &[&format!(
            "t.yaml: EndpointSlice shop/web-1: ports[0].port: Invalid value: 0: {PORT_RANGE}"
        )],
    );
}

#[test]
fn slice_too_many_endpoints() {
    let endpoints = vec!["{addresses: [10.1.0.1]}"; 1001].join(", ");
    check(
        &slice("IPv4", &format!("[{endpoints}]")),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints: Too many: 1001: must have at most 1000 items",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Endpoints

#[test]
fn valid_endpoints_have_no_problems() {
    check(
        &endpoints(
            "[{addresses: [{ip: 10.1.0.1}, {ip: 127.0.0.1}], notReadyAddresses: [{ip: '::1'}], ports: [{port: 8080}]}]",
        ),
        &[],
    );
}

#[test]
fn endpoints_ip_invalid() {
    check(
        &endpoints(
            "[{addresses: [{ip: 10.1.0.1}], notReadyAddresses: [{ip: web-0}], ports: [{port: 8080}]}]",
        ),
        &[
            "t.yaml: Endpoints shop/web: subsets[0].notReadyAddresses[0].ip: Invalid value: \"web-0\": must be a valid IP address",
        ],
    );
}

#[test]
fn endpoints_port_name_required_with_several_ports() {
    check(
        &endpoints(
            "[{addresses: [{ip: 10.1.0.1}], ports: [{port: 8080}, {name: admin, port: 9090}]}]",
        ),
        &["t.yaml: Endpoints shop/web: subsets[0].ports[0].name: Required value"],
    );
}

#[test]
fn endpoints_port_out_of_range() {
    check(
        &endpoints("[{addresses: [{ip: 10.1.0.1}], ports: [{port: 65536}]}]"),
        &[&format!(
            "t.yaml: Endpoints shop/web: subsets[0].ports[0].port: Invalid value: 65536: {PORT_RANGE}"
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Pod

#[test]
fn valid_pod_has_no_problems() {
    check(
        &pod(
            "spec: {hostname: web-0, subdomain: web, restartPolicy: Always, containers: [{name: app, ports: [{name: http, containerPort: 8080}]}]}\n\
              status: {podIP: 10.1.0.1, podIPs: [{ip: 10.1.0.1}, {ip: 'fd00::1'}]}",
        ),
        &[],
    );
}

#[test]
fn pod_spec_required() {
    check(&pod(""), &["t.yaml: Pod shop/web-0: spec: Required value"]);
}

#[test]
fn pod_containers_required() {
    check(
        &pod("spec: {containers: []}"),
        &["t.yaml: Pod shop/web-0: spec.containers: Required value"],
    );
    check(
        &pod("spec: {}"),
        &["t.yaml: Pod shop/web-0: spec.containers: Required value"],
    );
}

#[test]
fn pod_container_name_required() {
    check(
        &pod("spec: {containers: [{image: shop/web}]}"),
        &["t.yaml: Pod shop/web-0: spec.containers[0].name: Required value"],
    );
}

#[test]
fn pod_container_name_duplicate() {
    // Init containers and containers share one name space.
    check(
        &pod("spec: {initContainers: [{name: app}], containers: [{name: app}]}"),
        &["t.yaml: Pod shop/web-0: spec.containers[0].name: Duplicate value: \"app\""],
    );
}

#[test]
fn pod_container_port_out_of_range() {
    check(
        &pod("spec: {containers: [{name: app, ports: [{containerPort: 70000}]}]}"),
        &[&format!(
            "t.yaml: Pod shop/web-0: spec.containers[0].ports[0].containerPort: Invalid value: 70000: {PORT_RANGE}"
        )],
    );
}

#[test]
fn pod_host_port_out_of_range() {
    check(
        &pod("spec: {containers: [{name: app, ports: [{containerPort: 80, hostPort: -1}]}]}"),
        &[&format!(
            "t.yaml: Pod shop/web-0: spec.containers[0].ports[0].hostPort: Invalid value: -1: {PORT_RANGE}"
        )],
    );
}

#[test]
fn pod_port_name_duplicate() {
    // Port names are unique across all the containers of a pod.
    check(
        &pod(
            "spec: {containers: [{name: app, ports: [{name: http, containerPort: 80}]}, {name: proxy, ports: [{name: http, containerPort: 81}]}]}",
        ),
        &["t.yaml: Pod shop/web-0: spec.containers[1].ports[0].name: Duplicate value: \"http\""],
    );
}

#[test]
fn pod_port_name_invalid() {
    check(
        &pod(
            "spec: {containers: [{name: app, ports: [{name: http-metrics-port, containerPort: 80}]}]}",
        ),
        &[
            "t.yaml: Pod shop/web-0: spec.containers[0].ports[0].name: Invalid value: \"http-metrics-port\": must be no more than 15 characters",
        ],
    );
}

#[test]
fn pod_hostname_invalid() {
    check(
        &pod("spec: {hostname: Web, containers: [{name: app}]}"),
        &[&format!(
            "t.yaml: Pod shop/web-0: spec.hostname: Invalid value: \"Web\": {DNS1123_LABEL}"
        )],
    );
}

#[test]
fn pod_restart_policy_unsupported() {
    check(
        &pod("spec: {restartPolicy: Sometimes, containers: [{name: app}]}"),
        &[
            "t.yaml: Pod shop/web-0: spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ],
    );
}

#[test]
fn pod_termination_grace_period_negative() {
    check(
        &pod("spec: {terminationGracePeriodSeconds: -1, containers: [{name: app}]}"),
        &[
            "t.yaml: Pod shop/web-0: spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0",
        ],
    );
}

#[test]
fn pod_ip_invalid() {
    check(
        &pod("spec: {containers: [{name: app}]}\nstatus: {podIP: 10.1.0}"),
        &[
            "t.yaml: Pod shop/web-0: status.podIP: Invalid value: \"10.1.0\": must be a valid IP address",
        ],
    );
}

#[test]
fn pod_ips_first_must_match_pod_ip() {
    check(
        &pod(
            "spec: {containers: [{name: app}]}\nstatus: {podIP: 10.1.0.1, podIPs: [{ip: 10.1.0.2}]}",
        ),
        &[
            "t.yaml: Pod shop/web-0: status.podIPs[0].ip: Invalid value: \"10.1.0.2\": must match `status.podIP`",
        ],
    );
}

#[test]
fn pod_loopback_ip_accepted() {
    check(
        &pod(
            "spec: {containers: [{name: app}]}\nstatus: {podIP: 127.0.0.1, podIPs: [{ip: 127.0.0.1}, {ip: '::1'}]}",
        ),
        &[],
    );
}

// ---------------------------------------------------------------------------------------------
// Deployment and ReplicaSet

#[test]
fn valid_workloads_have_no_problems() {
    check(&deployment(""), &[]);
    check(
        &workload(
            "ReplicaSet",
            "{matchLabels: {app: web}}",
            "{app: web, tier: front}",
            "  replicas: 3\n",
        ),
        &[],
    );
    check(
        &deployment(
            "  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 25%, maxUnavailable: 0}}\n",
        ),
        &[],
    );
    check(
        &workload(
            "Deployment",
            "{matchExpressions: [{key: app, operator: In, values: [web, api]}, {key: canary, operator: DoesNotExist}]}",
            "{app: web}",
            "",
        ),
        &[],
    );
}

#[test]
fn workload_selector_does_not_match_template() {
    check(
        &workload("Deployment", "{matchLabels: {app: web}}", "{app: api}", ""),
        &[
            "t.yaml: Deployment shop/web: spec.template.metadata.labels: Invalid value: {\"app\": \"api\"}: `selector` does not match template `labels`",
        ],
    );
    check(
        &workload(
            "ReplicaSet",
            "{matchLabels: {app: web, tier: front}}",
            "{app: web}",
            "",
        ),
        &[
            "t.yaml: ReplicaSet shop/web: spec.template.metadata.labels: Invalid value: {\"app\": \"web\"}: `selector` does not match template `labels`",
        ],
    );
}

#[test]
fn workload_selector_empty() {
    check(
        &workload("Deployment", "{}", "{app: web}", ""),
        &[
            "t.yaml: Deployment shop/web: spec.selector: Invalid value: \"{}\": empty selector is invalid for deployment",
        ],
    );
}

#[test]
fn workload_replicas_negative() {
    check(
        &workload(
            "ReplicaSet",
            "{matchLabels: {app: web}}",
            "{app: web}",
            "  replicas: -1\n",
        ),
        &[
            "t.yaml: ReplicaSet shop/web: spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        ],
    );
    check(
        &deployment("  replicas: -2\n"),
        &[
            "t.yaml: Deployment shop/web: spec.replicas: Invalid value: -2: must be greater than or equal to 0",
        ],
    );
}

#[test]
fn replica_set_template_required() {
    check(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web, namespace: shop}\nspec: {selector: {matchLabels: {app: web}}}\n",
        &["t.yaml: ReplicaSet shop/web: spec.template: Required value"],
    );
}

#[test]
fn a_controllers_pods_always_restart() {
    for kind in ["Deployment", "ReplicaSet"] {
        let yaml = format!(
            "apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: web, namespace: shop}}\n\
             spec:\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    \
             spec: {{restartPolicy: Never, containers: [{{name: app, image: shop/web}}]}}\n"
        );
        let expected = format!(
            "t.yaml: {kind} shop/web: spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
        );
        check(&yaml, &[expected.as_str()]);
    }
}

#[test]
fn deployment_progress_deadline_must_exceed_min_ready() {
    check(
        &deployment("  minReadySeconds: 10\n  progressDeadlineSeconds: 10\n"),
        &[
            "t.yaml: Deployment shop/web: spec.progressDeadlineSeconds: Invalid value: 10: must be greater than minReadySeconds",
        ],
    );
}

#[test]
fn deployment_max_surge_and_max_unavailable_both_zero() {
    let expected = "t.yaml: Deployment shop/web: spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0";
    check(
        &deployment("  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}\n"),
        &[expected],
    );
    check(
        &deployment("  strategy: {rollingUpdate: {maxSurge: 0%, maxUnavailable: 0}}\n"),
        &[expected],
    );
    check(
        &deployment("  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0%}}\n"),
        &[expected],
    );
}

#[test]
fn deployment_percent_invalid() {
    check(
        &deployment("  strategy: {rollingUpdate: {maxSurge: ten%}}\n"),
        &[
            "t.yaml: Deployment shop/web: spec.strategy.rollingUpdate.maxSurge: Invalid value: \"ten%\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%')",
        ],
    );
    check(
        &deployment("  strategy: {rollingUpdate: {maxUnavailable: 150%}}\n"),
        &[
            "t.yaml: Deployment shop/web: spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%",
        ],
    );
    check(
        &deployment("  strategy: {rollingUpdate: {maxSurge: -5%}}\n"),
        &[
            "t.yaml: Deployment shop/web: spec.strategy.rollingUpdate.maxSurge: Invalid value: \"-5%\": must be greater than or equal to 0",
        ],
    );
    // maxSurge has no upper bound.
    check(
        &deployment("  strategy: {rollingUpdate: {maxSurge: 150%}}\n"),
        &[],
    );
}

#[test]
fn deployment_strategy_type_unsupported() {
    check(
        &deployment("  strategy: {type: BlueGreen}\n"),
        &[
            "t.yaml: Deployment shop/web: spec.strategy.type: Unsupported value: \"BlueGreen\": supported values: \"RollingUpdate\", \"Recreate\"",
        ],
    );
}

#[test]
fn deployment_recreate_with_rolling_update_forbidden() {
    check(
        &deployment("  strategy: {type: Recreate, rollingUpdate: {maxSurge: 1}}\n"),
        &[
            "t.yaml: Deployment shop/web: spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
        ],
    );
}

#[test]
fn workload_match_expression_values_required() {
    check(
        &workload(
            "Deployment",
            "{matchExpressions: [{key: app, operator: In}]}",
            "{app: web}",
            "",
        ),
        &[
            "t.yaml: Deployment shop/web: spec.selector.matchExpressions[0].values: Required value",
            // An `In` with no values matches nothing, so the template is not selected either.
            "t.yaml: Deployment shop/web: spec.template.metadata.labels: Invalid value: {\"app\": \"web\"}: `selector` does not match template `labels`",
        ],
    );
}

#[test]
fn workload_match_expression_values_forbidden() {
    check(
        &workload(
            "Deployment",
            "{matchExpressions: [{key: app, operator: Exists, values: [web]}]}",
            "{app: web}",
            "",
        ),
        &[
            "t.yaml: Deployment shop/web: spec.selector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        ],
    );
}

#[test]
fn workload_match_expression_operator_unsupported() {
    check(
        &workload(
            "Deployment",
            "{matchExpressions: [{key: app, operator: Equals, values: [web]}]}",
            "{app: web}",
            "",
        ),
        &[
            "t.yaml: Deployment shop/web: spec.selector.matchExpressions[0].operator: Unsupported value: \"Equals\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"",
            "t.yaml: Deployment shop/web: spec.template.metadata.labels: Invalid value: {\"app\": \"web\"}: `selector` does not match template `labels`",
        ],
    );
}

#[test]
fn workload_template_pod_spec_checked() {
    let yaml = deployment("").replace("{name: app, image: shop/web}", "{name: App}");
    check(
        &yaml,
        &[&format!(
            "t.yaml: Deployment shop/web: spec.template.spec.containers[0].name: Invalid value: \"App\": {DNS1123_LABEL}"
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Ingress

#[test]
fn valid_ingresses_have_no_problems() {
    check(
        &ingress_path(&format!(
            "{{path: /, pathType: Prefix, backend: {BACKEND}}}"
        )),
        &[],
    );
    check(&ingress(&format!("{{defaultBackend: {BACKEND}}}")), &[]);
    check(&ingress_host("*.example.com"), &[]);
    check(
        &ingress_path(
            "{path: /assets, pathType: Exact, backend: {resource: {apiGroup: k8s.example.com, kind: Bucket, name: assets}}}",
        ),
        &[],
    );
    check(
        &ingress(&format!(
            "{{ingressClassName: ferry, tls: [{{hosts: [shop.example.com], secretName: shop-tls}}], defaultBackend: {BACKEND}}}"
        )),
        &[],
    );
    check(
        &ingress_backend("{service: {name: web, port: {name: http}}}"),
        &[],
    );
}

#[test]
fn ingress_spec_required() {
    check(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web, namespace: shop}\n",
        &["t.yaml: Ingress shop/web: spec: Required value"],
    );
}

#[test]
fn ingress_needs_default_backend_or_rules() {
    check(
        &ingress("{}"),
        &[
            "t.yaml: Ingress shop/web: spec: Invalid value: either `defaultBackend` or `rules` must be specified",
        ],
    );
}

#[test]
fn ingress_paths_required() {
    check(
        &ingress("{rules: [{host: shop.example.com, http: {paths: []}}]}"),
        &["t.yaml: Ingress shop/web: spec.rules[0].http.paths: Required value"],
    );
}

#[test]
fn ingress_path_not_absolute() {
    check(
        &ingress_path(&format!(
            "{{path: foo, pathType: Prefix, backend: {BACKEND}}}"
        )),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"foo\": must be an absolute path",
        ],
    );
    // Exact and Prefix paths must be written.
    check(
        &ingress_path(&format!("{{pathType: Exact, backend: {BACKEND}}}")),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"\": must be an absolute path",
        ],
    );
}

#[test]
fn ingress_path_type_required() {
    check(
        &ingress_path(&format!("{{path: /, backend: {BACKEND}}}")),
        &["t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].pathType: Required value"],
    );
}

#[test]
fn ingress_path_type_unsupported() {
    check(
        &ingress_path(&format!("{{path: /, pathType: Regex, backend: {BACKEND}}}")),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"Prefix\", \"ImplementationSpecific\"",
        ],
    );
}

#[test]
fn ingress_path_invalid_sequence() {
    check(
        &ingress_path(&format!(
            "{{path: /a//b, pathType: Prefix, backend: {BACKEND}}}"
        )),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"/a//b\": must not contain '//'",
        ],
    );
    check(
        &ingress_path(&format!(
            "{{path: /a%2Fb, pathType: Exact, backend: {BACKEND}}}"
        )),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"/a%2Fb\": must not contain '%2F'",
        ],
    );
}

#[test]
fn ingress_path_invalid_suffix() {
    check(
        &ingress_path(&format!(
            "{{path: /a/.., pathType: Prefix, backend: {BACKEND}}}"
        )),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"/a/..\": cannot end with '/..'",
        ],
    );
    check(
        &ingress_path(&format!(
            "{{path: /a/., pathType: Prefix, backend: {BACKEND}}}"
        )),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"/a/.\": cannot end with '/.'",
        ],
    );
}

#[test]
fn ingress_implementation_specific_path() {
    check(
        &ingress_path(&format!(
            "{{path: foo, pathType: ImplementationSpecific, backend: {BACKEND}}}"
        )),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"foo\": must be an absolute path",
        ],
    );
    // It may be left out, and is otherwise not checked further.
    check(
        &ingress_path(&format!(
            "{{pathType: ImplementationSpecific, backend: {BACKEND}}}"
        )),
        &[],
    );
    check(
        &ingress_path(&format!(
            "{{path: /a//b, pathType: ImplementationSpecific, backend: {BACKEND}}}"
        )),
        &[],
    );
}

#[test]
fn ingress_backend_both_service_and_resource() {
    check(
        &ingress_backend(
            "{service: {name: web, port: {number: 80}}, resource: {kind: Bucket, name: assets}}",
        ),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend: Invalid value: \"\": cannot set both resource and service backends",
        ],
    );
}

#[test]
fn ingress_backend_neither_service_nor_resource() {
    check(
        &ingress_backend("{}"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend: Invalid value: \"\": resource or service backend is required",
        ],
    );
    check(
        &ingress("{defaultBackend: {}}"),
        &[
            "t.yaml: Ingress shop/web: spec.defaultBackend: Invalid value: \"\": resource or service backend is required",
        ],
    );
}

#[test]
fn ingress_resource_backend_fields_required() {
    check(
        &ingress_backend("{resource: {apiGroup: k8s.example.com}}"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.resource.kind: Required value",
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.resource.name: Required value",
        ],
    );
}

#[test]
fn ingress_service_name_required_and_invalid() {
    check(
        &ingress_backend("{service: {port: {number: 80}}}"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.service.name: Required value",
        ],
    );
    check(
        &ingress_backend("{service: {name: 1web, port: {number: 80}}}"),
        &[&format!(
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.service.name: Invalid value: \"1web\": {DNS1035}"
        )],
    );
}

#[test]
fn ingress_service_port_both_name_and_number() {
    check(
        &ingress_backend("{service: {name: web, port: {name: http, number: 80}}}"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend: Invalid value: \"\": cannot set both port name & port number",
        ],
    );
}

#[test]
fn ingress_service_port_missing() {
    check(
        &ingress_backend("{service: {name: web}}"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.service.port: Required value: port name or number is required",
        ],
    );
    check(
        &ingress_backend("{service: {name: web, port: {}}}"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.service.port: Required value: port name or number is required",
        ],
    );
}

#[test]
fn ingress_service_port_invalid() {
    check(
        &ingress_backend("{service: {name: web, port: {number: 70000}}}"),
        &[&format!(
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.service.port.number: Invalid value: 70000: {PORT_RANGE}"
        )],
    );
    check(
        &ingress_backend("{service: {name: web, port: {name: HTTP}}}"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.service.port.name: Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        ],
    );
}

#[test]
fn ingress_host_is_an_ip() {
    check(
        &ingress_host("10.0.0.1"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
        ],
    );
}

#[test]
fn ingress_host_invalid() {
    check(
        &ingress_host("Shop.example.com"),
        &[&format!(
            "t.yaml: Ingress shop/web: spec.rules[0].host: Invalid value: \"Shop.example.com\": {DNS1123_SUBDOMAIN}"
        )],
    );
}

#[test]
fn ingress_wildcard_host_invalid() {
    check(
        &ingress_host("*.*.foo.com"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].host: Invalid value: \"*.*.foo.com\": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com')",
        ],
    );
}

#[test]
fn ingress_tls_host_and_secret_name_invalid() {
    check(
        &ingress(&format!(
            "{{tls: [{{hosts: [shop.example.com, 10.0.0.1], secretName: Shop_TLS}}], defaultBackend: {BACKEND}}}"
        )),
        &[
            "t.yaml: Ingress shop/web: spec.tls[0].hosts[1]: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
            &format!(
                "t.yaml: Ingress shop/web: spec.tls[0].secretName: Invalid value: \"Shop_TLS\": {DNS1123_SUBDOMAIN}"
            ),
        ],
    );
}

#[test]
fn ingress_class_name_invalid() {
    check(
        &ingress(&format!(
            "{{ingressClassName: Ferry, defaultBackend: {BACKEND}}}"
        )),
        &[&format!(
            "t.yaml: Ingress shop/web: spec.ingressClassName: Invalid value: \"Ferry\": {DNS1123_SUBDOMAIN}"
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Ingress annotations

/// An Ingress with `annotations` (the inside of a flow mapping) and one path.
fn annotated(annotations: &str, path: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\n\
         metadata: {{name: web, namespace: shop, annotations: {{{annotations}}}}}\n\
         spec: {{rules: [{{host: shop.example.com, http: {{paths: [{{path: {path:?}, pathType: ImplementationSpecific, backend: {BACKEND}}}]}}}}]}}\n"
    )
}

/// What the annotations of the one Ingress in `yaml` read as.
fn read(yaml: &str) -> super::Annotations {
    let loaded = manifest::parse("t.yaml", yaml.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let m = &loaded.manifests[0];
    let crate::object::Object::Ingress(ing) = &m.object else {
        panic!("not an Ingress")
    };
    super::ingress_annotations(m, ing)
}

const NGINX: &str = "nginx.ingress.kubernetes.io";

#[test]
fn annotations_every_one_read_typed() {
    let yaml = annotated(
        &format!(
            "{NGINX}/rewrite-target: /$2, {NGINX}/use-regex: \"true\", {NGINX}/backend-protocol: grpcs, \
             {NGINX}/proxy-body-size: 8m, {NGINX}/proxy-connect-timeout: \"5\", \
             {NGINX}/proxy-read-timeout: 120s, {NGINX}/proxy-send-timeout: \"30\", \
             {NGINX}/ssl-redirect: \"false\", {NGINX}/force-ssl-redirect: \"true\", \
             {NGINX}/app-root: /app, {NGINX}/affinity: cookie, {NGINX}/session-cookie-name: route, \
             {NGINX}/session-cookie-max-age: \"3600\", {NGINX}/session-cookie-path: /shop"
        ),
        "/shop(/|$)(.*)",
    );
    check(&yaml, &[]);
    let a = read(&yaml);
    assert_eq!(
        a.options,
        IngressOptions {
            ingress: IngressRef::default(),
            rewrite_target: Some("/$2".into()),
            use_regex: true,
            backend_protocol: Some(BackendProtocol::GRPCS),
            proxy_body_size: Some(8 << 20),
            proxy_connect_timeout_ms: Some(5_000),
            proxy_read_timeout_ms: Some(120_000),
            proxy_send_timeout_ms: Some(30_000),
            ssl_redirect: Some(false),
            force_ssl_redirect: true,
            app_root: Some("/app".into()),
            affinity: Some(CookieAffinity {
                name: "route".into(),
                max_age_seconds: Some(3600),
                path: Some("/shop".into()),
            }),
        }
    );
    assert_eq!(a.canary, None);
}

#[test]
fn annotations_ferry_prefix_reads_the_same_and_wins() {
    let ferry_only = annotated(
        "ferry.dev/proxy-body-size: 1g, ferry.dev/use-regex: \"true\"",
        "/",
    );
    check(&ferry_only, &[]);
    let a = read(&ferry_only);
    assert_eq!(a.options.proxy_body_size, Some(1 << 30));
    assert!(a.options.use_regex);

    // Both set: ferry.dev/ wins, and the shadowed nginx value is not even checked.
    let both = annotated(
        &format!(
            "{NGINX}/proxy-body-size: not-a-size, ferry.dev/proxy-body-size: 512k, \
             {NGINX}/backend-protocol: HTTP, ferry.dev/backend-protocol: h2c"
        ),
        "/",
    );
    check(&both, &[]);
    let a = read(&both);
    assert_eq!(a.options.proxy_body_size, Some(512 << 10));
    assert_eq!(a.options.backend_protocol, Some(BackendProtocol::H2C));

    // The problem names the key that won.
    check(
        &annotated(
            &format!("{NGINX}/proxy-body-size: 1m, ferry.dev/proxy-body-size: 1x"),
            "/",
        ),
        &[
            "t.yaml: Ingress shop/web: metadata.annotations[ferry.dev/proxy-body-size]: Invalid value: \"1x\": \
             must be a size in bytes, optionally with a k, m or g suffix (such as 8m); 0 means unlimited",
        ],
    );
}

#[test]
fn annotations_unknown_ferry_names_warn_other_prefixes_are_ignored() {
    let yaml = annotated(
        &format!(
            "ferry.dev/proxy-bodysize: 8m, {NGINX}/configuration-snippet: x, \
             example.com/rewrite-target: \"$$$\", kubernetes.io/ingress.class: ferry"
        ),
        "/",
    );
    let p = all(&yaml);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].severity, Severity::Warning);
    assert_eq!(p[0].field, "metadata.annotations[ferry.dev/proxy-bodysize]");
    assert!(
        p[0].message
            .starts_with("unknown annotation; ignored (ferry reads rewrite-target, use-regex,"),
        "{}",
        p[0].message
    );
    let a = read(&yaml);
    assert_eq!(a.options, IngressOptions::default());
}

#[test]
fn annotations_sizes_timeouts_booleans_and_protocols_as_ingress_nginx_takes_them() {
    let body_size = |v: &str| read(&annotated(&format!("{NGINX}/proxy-body-size: {v:?}"), "/"));
    for (v, bytes) in [
        ("100", 100),
        ("0", 0),
        ("512k", 512 << 10),
        ("512K", 512 << 10),
        ("8m", 8 << 20),
        ("8M", 8 << 20),
        ("1g", 1 << 30),
        ("2G", 2 << 30),
    ] {
        assert_eq!(body_size(v).options.proxy_body_size, Some(bytes), "{v}");
    }
    let read_timeout = |v: &str| {
        read(&annotated(
            &format!("{NGINX}/proxy-read-timeout: {v:?}"),
            "/",
        ))
    };
    assert_eq!(
        read_timeout("60").options.proxy_read_timeout_ms,
        Some(60_000)
    );
    assert_eq!(
        read_timeout("60s").options.proxy_read_timeout_ms,
        Some(60_000)
    );
    for (v, b) in [
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("t", true),
        ("1", true),
        ("false", false),
        ("False", false),
        ("F", false),
        ("0", false),
    ] {
        let a = read(&annotated(&format!("{NGINX}/ssl-redirect: {v:?}"), "/"));
        assert_eq!(a.options.ssl_redirect, Some(b), "{v}");
    }
    for (v, p) in [
        ("HTTP", BackendProtocol::HTTP),
        ("https", BackendProtocol::HTTPS),
        ("gRPC", BackendProtocol::GRPC),
        ("GRPCS", BackendProtocol::GRPCS),
        ("h2c", BackendProtocol::H2C),
    ] {
        let a = read(&annotated(&format!("{NGINX}/backend-protocol: {v:?}"), "/"));
        assert_eq!(a.options.backend_protocol, Some(p), "{v}");
    }
    // "false" is the same as not set.
    let a = read(&annotated(
        &format!("{NGINX}/use-regex: \"false\", {NGINX}/force-ssl-redirect: \"false\""),
        "/(",
    ));
    assert_eq!(a.options, IngressOptions::default());
}

#[test]
fn annotations_invalid_values_are_errors_naming_the_annotation() {
    let size = "must be a size in bytes, optionally with a k, m or g suffix (such as 8m); 0 means unlimited";
    let seconds = "must be a positive whole number of seconds (such as 60 or 60s)";
    let boolean = "must be true or false";
    let rewrite_chars = "may hold only letters, digits, '-', '.', '_', '~', '/', ':' and $1…$9";
    let cookie = "must be a valid cookie name (letters, digits and !#$%&'*+-.^_`|~)";
    let cases: &[(&str, &str, String)] = &[
        ("rewrite-target", "", "Invalid value: \"\": must not be empty (such as /$1)".into()),
        ("rewrite-target", "/a b", format!("Invalid value: \"/a b\": {rewrite_chars}")),
        (
            "rewrite-target",
            "/$host",
            "Invalid value: \"/$host\": a '$' must start a capture group reference, $1 to $9".into(),
        ),
        ("rewrite-target", "/x?y=1", format!("Invalid value: \"/x?y=1\": {rewrite_chars}")),
        (
            "rewrite-target",
            "/$0",
            "Invalid value: \"/$0\": a '$' must start a capture group reference, $1 to $9".into(),
        ),
        (
            "rewrite-target",
            "/a$",
            "Invalid value: \"/a$\": a '$' must start a capture group reference, $1 to $9".into(),
        ),
        ("use-regex", "yes", format!("Invalid value: \"yes\": {boolean}")),
        (
            "backend-protocol",
            "FCGI",
            "Unsupported value: \"FCGI\": supported values: \"HTTP\", \"HTTPS\", \"GRPC\", \"GRPCS\", \"H2C\"".into(),
        ),
        ("proxy-body-size", "8mb", format!("Invalid value: \"8mb\": {size}")),
        ("proxy-body-size", "-1", format!("Invalid value: \"-1\": {size}")),
        ("proxy-body-size", "1.5m", format!("Invalid value: \"1.5m\": {size}")),
        ("proxy-body-size", "m", format!("Invalid value: \"m\": {size}")),
        (
            "proxy-body-size",
            "99999999999g",
            format!("Invalid value: \"99999999999g\": {size}"),
        ),
        ("proxy-connect-timeout", "0", format!("Invalid value: \"0\": {seconds}")),
        ("proxy-connect-timeout", "5ms", format!("Invalid value: \"5ms\": {seconds}")),
        ("proxy-read-timeout", "1m", format!("Invalid value: \"1m\": {seconds}")),
        ("proxy-send-timeout", " 60", format!("Invalid value: \" 60\": {seconds}")),
        ("ssl-redirect", "on", format!("Invalid value: \"on\": {boolean}")),
        ("force-ssl-redirect", "yes", format!("Invalid value: \"yes\": {boolean}")),
        (
            "app-root",
            "app",
            "Invalid value: \"app\": must be an absolute path (such as /app), not starting with //".into(),
        ),
        (
            "app-root",
            "//evil.example.com",
            "Invalid value: \"//evil.example.com\": must be an absolute path (such as /app), not starting with //".into(),
        ),
        (
            "app-root",
            "/\\evil.example.com",
            "Invalid value: \"/\\\\evil.example.com\": must be an absolute path (such as /app), not starting with //".into(),
        ),
        ("canary", "maybe", format!("Invalid value: \"maybe\": {boolean}")),
        (
            "affinity",
            "ip",
            "Unsupported value: \"ip\": supported values: \"cookie\"".into(),
        ),
    ];
    for (name, value, message) in cases {
        for prefix in [NGINX, "ferry.dev"] {
            let yaml = annotated(&format!("{prefix}/{name}: {value:?}"), "/");
            check(
                &yaml,
                &[&format!(
                    "t.yaml: Ingress shop/web: metadata.annotations[{prefix}/{name}]: {message}"
                )],
            );
        }
    }

    // Values checked only together with another annotation.
    let with_affinity = |extra: &str| annotated(&format!("{NGINX}/affinity: cookie, {extra}"), "/");
    check(
        &with_affinity(&format!("{NGINX}/session-cookie-name: \"my cookie\"")),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/session-cookie-name]: Invalid value: \"my cookie\": {cookie}"
        )],
    );
    check(
        &with_affinity(&format!("{NGINX}/session-cookie-max-age: \"0\"")),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/session-cookie-max-age]: Invalid value: \"0\": must be a positive whole number of seconds"
        )],
    );
    check(
        &with_affinity(&format!("{NGINX}/session-cookie-path: \"/a;b\"")),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/session-cookie-path]: Invalid value: \"/a;b\": must be an absolute path without ';', spaces or control characters"
        )],
    );
    let canary = |extra: &str| annotated(&format!("{NGINX}/canary: \"true\", {extra}"), "/");
    check(
        &canary(&format!("{NGINX}/canary-weight: \"101\"")),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-weight]: Invalid value: \"101\": must be a whole number from 0 to 100 (canary-weight-total)"
        )],
    );
    check(
        &canary(&format!(
            "{NGINX}/canary-weight: \"5\", {NGINX}/canary-weight-total: \"4\""
        )),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-weight]: Invalid value: \"5\": must be a whole number from 0 to 4 (canary-weight-total)"
        )],
    );
    check(
        &canary(&format!("{NGINX}/canary-weight-total: \"0\"")),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-weight-total]: Invalid value: \"0\": must be a whole number from 1 to 4294967295"
        )],
    );
    check(
        &canary(&format!("{NGINX}/canary-by-header: \"X Canary\"")),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-by-header]: Invalid value: \"X Canary\": must be a valid header name (letters, digits and !#$%&'*+-.^_`|~)"
        )],
    );
    check(
        &canary(&format!(
            "{NGINX}/canary-by-header: X-Canary, {NGINX}/canary-by-header-value: \" yes\""
        )),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-by-header-value]: Invalid value: \" yes\": must be a header value: visible ASCII characters, no leading or trailing spaces"
        )],
    );
    check(
        &canary(&format!("{NGINX}/canary-by-cookie: \"a=b\"")),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-by-cookie]: Invalid value: \"a=b\": {cookie}"
        )],
    );
    assert!(
        all(&canary(&format!("{NGINX}/canary-weight: \"101\"")))
            .iter()
            .all(Problem::is_error)
    );
}

#[test]
fn annotations_use_regex_paths_must_compile() {
    let unclosed = "Invalid value: \"/shop(\": must be a regular expression (use-regex; Rust regex syntax): unclosed group";
    check(
        &annotated(&format!("{NGINX}/use-regex: \"true\""), "/shop("),
        &[&format!(
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: {unclosed}"
        )],
    );
    // rewrite-target implies use-regex.
    check(
        &annotated(&format!("{NGINX}/rewrite-target: /"), "/shop("),
        &[&format!(
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: {unclosed}"
        )],
    );
    // A path that only compiles once wrapped is still refused.
    let p = all(&annotated(&format!("{NGINX}/use-regex: \"true\""), "/a)(b"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].field, "spec.rules[0].http.paths[0].path");
    assert!(p[0].is_error());
    // PCRE-only syntax is refused: ferry uses Rust regex syntax.
    let p = all(&annotated(
        &format!("{NGINX}/use-regex: \"true\""),
        "/(?<=a)b",
    ));
    assert!(
        p.iter().any(|p| p.is_error() && p.field.ends_with(".path")),
        "{p:?}"
    );
    // A regex too large to compile cheaply.
    let p = all(&annotated(
        &format!("{NGINX}/use-regex: \"true\""),
        "/\\w{1000}\\w{1000}\\w{1000}",
    ));
    assert!(
        p.iter()
            .any(|p| p.is_error() && p.message.contains("too large once compiled")),
        "{p:?}"
    );
    // Without use-regex, the same path is a plain path.
    check(&annotated("", "/shop("), &[]);
    check(
        &annotated(&format!("{NGINX}/use-regex: \"false\""), "/shop("),
        &[],
    );
}

#[test]
fn annotations_rewrite_target_beyond_the_capture_groups_is_a_warning() {
    let p = all(&annotated(
        &format!("{NGINX}/rewrite-target: /$1/$3"),
        "/shop(/|$)(.*)",
    ));
    assert_eq!(
        p.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: rewrite-target \"/$1/$3\" refers to $3, but this path has 2 capture group(s); the missing ones are replaced by nothing"
        ]
    );
    assert_eq!(p[0].severity, Severity::Warning);
    check(
        &annotated(&format!("{NGINX}/rewrite-target: /$2"), "/shop(/|$)(.*)"),
        &[],
    );
}

#[test]
fn annotations_affinity_defaults_and_settings_without_it() {
    let a = read(&annotated(&format!("{NGINX}/affinity: cookie"), "/"));
    assert_eq!(
        a.options.affinity,
        Some(CookieAffinity {
            name: "INGRESSCOOKIE".into(),
            max_age_seconds: None,
            path: None,
        })
    );
    // With regex paths the cookie's path is / unless set, and that is worth a warning.
    let yaml = annotated(
        &format!("{NGINX}/affinity: cookie, {NGINX}/use-regex: \"true\""),
        "/api/.*",
    );
    check(
        &yaml,
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/affinity]: session-cookie-path is not set while paths are regular expressions: the cookie's path is /"
        )],
    );
    assert_eq!(
        read(&yaml).options.affinity.unwrap().path.as_deref(),
        Some("/")
    );
    // Cookie settings without affinity do nothing, and say so.
    check(
        &annotated(&format!("{NGINX}/session-cookie-name: route"), "/"),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/session-cookie-name]: ignored without affinity: cookie"
        )],
    );
}

#[test]
fn annotations_canary_settings() {
    let yaml = annotated(
        &format!(
            "{NGINX}/canary: \"true\", {NGINX}/canary-weight: \"5\", {NGINX}/canary-weight-total: \"1000\", \
             {NGINX}/canary-by-header: X-Canary, {NGINX}/canary-by-header-value: blue, \
             ferry.dev/canary-by-cookie: canary"
        ),
        "/",
    );
    check(&yaml, &[]);
    let a = read(&yaml);
    assert_eq!(
        a.canary,
        Some(crate::ingress_annotations::CanaryAnnotations {
            weight: 5,
            weight_total: 1000,
            by_header: Some("X-Canary".into()),
            by_header_value: Some("blue".into()),
            by_cookie: Some("canary".into()),
        })
    );
    assert_eq!(a.options, IngressOptions::default());

    let defaults = read(&annotated(&format!("{NGINX}/canary: \"true\""), "/"));
    assert_eq!(
        defaults.canary,
        Some(crate::ingress_annotations::CanaryAnnotations {
            weight: 0,
            weight_total: 100,
            by_header: None,
            by_header_value: None,
            by_cookie: None,
        })
    );
}

#[test]
fn annotations_canary_settings_without_canary_and_main_settings_on_a_canary_warn() {
    let yaml = annotated(
        &format!("{NGINX}/canary-weight: \"10\", {NGINX}/canary: \"false\""),
        "/",
    );
    check(
        &yaml,
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-weight]: ignored: this Ingress is not a canary (canary: \"true\")"
        )],
    );
    assert_eq!(read(&yaml).canary, None);

    let yaml = annotated(
        &format!(
            "{NGINX}/canary: \"true\", {NGINX}/canary-by-header-value: blue, \
             {NGINX}/proxy-body-size: 1m, {NGINX}/use-regex: \"true\", {NGINX}/affinity: cookie"
        ),
        "/(",
    );
    check(
        &yaml,
        &[
            &format!(
                "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-by-header-value]: ignored without canary-by-header"
            ),
            &format!(
                "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/use-regex]: ignored on a canary Ingress: the main Ingress's annotations apply"
            ),
            &format!(
                "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/proxy-body-size]: ignored on a canary Ingress: the main Ingress's annotations apply"
            ),
        ],
    );
    let a = read(&yaml);
    assert_eq!(
        a.options,
        IngressOptions {
            affinity: Some(CookieAffinity {
                name: "INGRESSCOOKIE".into(),
                max_age_seconds: None,
                path: None,
            }),
            ..IngressOptions::default()
        },
        "a canary keeps only its session affinity"
    );
}

// ---------------------------------------------------------------------------------------------
// IngressClass

#[test]
fn valid_ingress_class_has_no_problems() {
    check(&ingress_class("{controller: ferry.dev/ingress}"), &[]);
}

#[test]
fn ingress_class_controller_required() {
    check(
        &ingress_class("{}"),
        &["t.yaml: IngressClass ferry: spec.controller: Required value"],
    );
    check(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: ferry}\n",
        &["t.yaml: IngressClass ferry: spec.controller: Required value"],
    );
}

#[test]
fn ingress_class_controller_not_domain_prefixed() {
    let expected = |c: &str| {
        format!(
            "t.yaml: IngressClass ferry: spec.controller: Invalid value: {c:?}: must be a domain-prefixed path (such as \"acme.io/foo\")"
        )
    };
    for controller in [
        "ferry",
        "ferry.dev/",
        "Ferry.dev/ingress",
        "ferry.dev/in gress",
    ] {
        check(
            &ingress_class(&format!("{{controller: {controller:?}}}")),
            &[&expected(controller)],
        );
    }
}

#[test]
fn ingress_class_controller_too_long() {
    let controller = format!("ferry.dev/{}", "a".repeat(241));
    check(
        &ingress_class(&format!("{{controller: {controller}}}")),
        &["t.yaml: IngressClass ferry: spec.controller: Too long: may not be more than 250 bytes"],
    );
}

// ---------------------------------------------------------------------------------------------
// Secret

#[test]
fn tls_secret_cert_required() {
    let pair = keypair();
    check(
        &secret(&format!(
            "type: kubernetes.io/tls\nstringData: {{tls.key: {}}}",
            quoted(&pair.key)
        )),
        &["t.yaml: Secret shop/shop-tls: data[tls.crt]: Required value"],
    );
}

#[test]
fn tls_secret_key_required() {
    let pair = keypair();
    check(
        &secret(&format!(
            "type: kubernetes.io/tls\nstringData: {{tls.crt: {}}}",
            quoted(&pair.cert)
        )),
        &["t.yaml: Secret shop/shop-tls: data[tls.key]: Required value"],
    );
    check(
        &secret("type: kubernetes.io/tls"),
        &[
            "t.yaml: Secret shop/shop-tls: data[tls.crt]: Required value",
            "t.yaml: Secret shop/shop-tls: data[tls.key]: Required value",
        ],
    );
}

#[test]
fn tls_secret_cert_not_pem() {
    let pair = keypair();
    check(
        &tls_secret("not a certificate", &pair.key),
        &[
            "t.yaml: Secret shop/shop-tls: data[tls.crt]: Invalid value: tls.crt holds no PEM CERTIFICATE block",
        ],
    );
}

#[test]
fn tls_secret_key_not_pem() {
    let pair = keypair();
    let problems = problems(&tls_secret(&pair.cert, "not a key"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(
            "t.yaml: Secret shop/shop-tls: data[tls.key]: Invalid value: tls.key is not a valid PEM private key: "
        ),
        "{problems:?}"
    );
}

#[test]
fn tls_secret_key_does_not_match_cert() {
    let (a, b) = (keypair(), keypair());
    check(
        &tls_secret(&a.cert, &b.key),
        &[
            "t.yaml: Secret shop/shop-tls: data[tls.key]: Invalid value: tls.key does not match the certificate in tls.crt",
        ],
    );
}

#[test]
fn tls_secret_matching_pair_accepted() {
    let pair = keypair();
    check(&tls_secret(&pair.cert, &pair.key), &[]);
}

#[test]
fn tls_secret_base64_data_accepted() {
    let pair = keypair();
    let yaml = secret(&format!(
        "type: kubernetes.io/tls\ndata: {{tls.crt: {}, tls.key: {}}}",
        base64(pair.cert.as_bytes()),
        base64(pair.key.as_bytes())
    ));
    check(&yaml, &[]);
    // The same data, but the key replaced through stringData: no longer a pair.
    let other = keypair();
    let yaml = format!("{yaml}stringData: {{tls.key: {}}}\n", quoted(&other.key));
    check(
        &yaml,
        &[
            "t.yaml: Secret shop/shop-tls: data[tls.key]: Invalid value: tls.key does not match the certificate in tls.crt",
        ],
    );
}

#[test]
fn secret_data_key_invalid() {
    check(
        &secret(&format!("data: {{'a b': {}}}", base64(b"x"))),
        &[
            "t.yaml: Secret shop/shop-tls: data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name')",
        ],
    );
    check(
        &secret("stringData: {'tls/crt': x}"),
        &[
            "t.yaml: Secret shop/shop-tls: data[tls/crt]: Invalid value: \"tls/crt\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name')",
        ],
    );
}

#[test]
fn secret_data_key_may_not_be_a_directory_name() {
    for key in [".", "..", "..data"] {
        let problems = all(&secret(&format!("stringData: {{{key:?}: x}}")));
        assert_eq!(problems.len(), 1, "{key}: {problems:?}");
        assert_eq!(problems[0].field, format!("data[{key}]"));
        assert!(problems[0].is_error());
    }
    // A dot inside or at the start of a name is fine.
    check(&secret("stringData: {.dockercfg: x, tls.crt: v}"), &[]);
}

#[test]
fn secret_too_large() {
    let big = "x".repeat(600 * 1024);
    check(
        &secret(&format!("stringData: {{a: {big}, b: {big}}}")),
        &["t.yaml: Secret shop/shop-tls: data: Too long: may not be more than 1048576 bytes"],
    );
}

#[test]
fn opaque_secret_is_not_checked_as_tls() {
    check(&secret("type: Opaque\nstringData: {tls.crt: hello}"), &[]);
}

// ---------------------------------------------------------------------------------------------
// across objects

#[test]
fn duplicate_across_documents() {
    let svc = service("{ports: [{port: 80}]}");
    check(
        &format!("{svc}---\n{svc}"),
        &[
            "t.yaml:2: Service shop/web: metadata.name: Duplicate value: \"web\": already defined in t.yaml:1",
        ],
    );
}

#[test]
fn duplicate_across_files() {
    let svc = service("{ports: [{port: 80}]}");
    let mut manifests = manifest::parse("a.yaml", svc.as_bytes()).manifests;
    manifests.extend(manifest::parse("b.yaml", svc.as_bytes()).manifests);
    let problems: Vec<String> = super::across(&manifests)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            "b.yaml: Service shop/web: metadata.name: Duplicate value: \"web\": already defined in a.yaml"
        ]
    );
    let arcs: Vec<_> = manifests.into_iter().map(std::sync::Arc::new).collect();
    assert_eq!(super::across_arcs(&arcs).len(), 1);
}

#[test]
fn same_name_in_another_namespace_or_kind_is_no_duplicate() {
    let svc = service("{ports: [{port: 80}]}");
    let other_ns = svc.replace("namespace: shop", "namespace: bank");
    let endpoints = endpoints("[{addresses: [{ip: 10.1.0.1}], ports: [{port: 8080}]}]");
    check(&format!("{svc}---\n{other_ns}---\n{endpoints}"), &[]);
}

#[test]
fn default_namespace_is_the_same_as_none() {
    let named = service("{ports: [{port: 80}]}").replace("namespace: shop", "namespace: default");
    let unnamed = service("{ports: [{port: 80}]}").replace(", namespace: shop", "");
    check(
        &format!("{named}---\n{unnamed}"),
        &[
            "t.yaml:2: Service default/web: metadata.name: Duplicate value: \"web\": already defined in t.yaml:1",
        ],
    );
}
