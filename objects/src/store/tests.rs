use std::sync::Arc;

use super::*;
use crate::manifest;

fn manifests(yaml: &str) -> Vec<Arc<Manifest>> {
    manifest::parse("t.yaml", yaml.as_bytes())
        .manifests
        .into_iter()
        .map(Arc::new)
        .collect()
}

#[test]
fn objects_by_namespace() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: x}\nspec: {ports: [{port: 80}]}\n---\n\
                apiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: xy}\nspec: {ports: [{port: 80}]}\n";
    let store = Store::from_manifests(manifests(yaml));
    let names: Vec<_> = store
        .in_namespace(Kind::Service, "x")
        .map(|m| m.name().to_owned())
        .collect();
    assert_eq!(names, vec!["a"]);
    assert!(store.service("xy", "b").is_some());
    assert_eq!(store.services().count(), 2);
}
