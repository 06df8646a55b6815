//! The namespaces that exist (`translate::namespaces`).

use super::*;

#[test]
fn namespaces_are_the_built_in_ones_and_those_objects_name() {
    let yaml = [
        KUBE_SYSTEM,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: empty}\n---\n",
        SERVICES,
    ]
    .concat();
    let t = translate(&store(&yaml));
    assert_eq!(
        t.snapshot.namespaces,
        [
            "default",
            "empty",
            "kube-node-lease",
            "kube-public",
            "kube-system",
            "shop"
        ]
    );
}
