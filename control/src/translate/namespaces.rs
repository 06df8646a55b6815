//! The namespaces that exist, for the snapshot's `namespaces` (DNS answers NODATA, not
//! NXDOMAIN, for `<ns>.svc.<zone>` of one without Services). Reads only the store.

use std::collections::BTreeSet;

use ferry_objects::store::Store;

/// Namespaces every Kubernetes cluster has, whether or not a manifest declares them.
const BUILT_IN_NAMESPACES: [&str; 4] = ["default", "kube-node-lease", "kube-public", "kube-system"];

/// The namespaces that exist: the built-in ones, every Namespace object, and the namespace of
/// every namespaced object (an object cannot exist outside its namespace, and manifests often
/// leave the Namespace out).
pub(super) fn namespaces(store: &Store) -> Vec<String> {
    let mut all: BTreeSet<&str> = BUILT_IN_NAMESPACES.into_iter().collect();
    all.extend(store.namespaces());
    all.into_iter().map(str::to_owned).collect()
}
