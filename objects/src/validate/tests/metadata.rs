//! Metadata, checked on every kind (`validate.rs`): names, namespaces, labels, annotations,
//! and the size of the whole object.

use super::*;

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
    check(
        &annotated_service(crate::validate::MAX_ANNOTATIONS_BYTES),
        &[],
    );
    check(
        &annotated_service(crate::validate::MAX_ANNOTATIONS_BYTES + 1),
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
    let loaded = manifest::parse("t.yaml", pod(crate::validate::MAX_OBJECT_BYTES).as_bytes());
    let size = loaded.manifests[0].object.encoded_len();
    assert!(size > crate::validate::MAX_OBJECT_BYTES);
    check(
        &pod(crate::validate::MAX_OBJECT_BYTES),
        &[&format!(
            "t.yaml: Pod shop/big: Request entity too large: limit is 3145728 (the object is {size} bytes as JSON)"
        )],
    );
}
