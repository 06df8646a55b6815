//! Problems between objects (`validate.rs`): the same object defined twice.

use super::*;

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
    let problems: Vec<String> = crate::validate::across(&manifests)
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
    assert_eq!(crate::validate::across_arcs(&arcs).len(), 1);
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
