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

const TWO: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n";

#[test]
fn apply_and_delete() {
    let mut store = Store::default();
    for m in manifests(TWO) {
        store.apply(Event::Apply(m));
    }
    assert_eq!(store.len(), 2);
    store.apply(Event::Delete(ObjectKey {
        kind: Kind::Namespace,
        namespace: String::new(),
        name: "a".into(),
    }));
    assert_eq!(store.len(), 1);
}

#[test]
fn a_relist_replaces_everything_at_init_done_and_not_before() {
    let mut store = Store::from_manifests(manifests(TWO));
    store.apply(Event::Init);
    let c = manifests("apiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n");
    store.apply(Event::InitApply(c[0].clone()));
    assert_eq!(store.len(), 2, "half a relist is never visible");
    store.apply(Event::InitDone);
    assert_eq!(store.len(), 1);
    let key = ObjectKey {
        kind: Kind::Namespace,
        namespace: String::new(),
        name: "c".into(),
    };
    assert!(store.get(&key).is_some());
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
