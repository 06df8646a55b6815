//! Ingress class ownership: which Ingresses are ferry's. Reads IngressClasses and the class
//! each Ingress names; nothing else of an Ingress.
//!
//! An Ingress is ferry's when its class (`spec.ingressClassName`, or the older
//! `kubernetes.io/ingress.class` annotation) names an IngressClass whose controller is
//! `ferry.dev/ingress`; or when it names no class and ferry's class is the default; or when
//! it names no class and no IngressClass exists at all.

use std::collections::BTreeSet;

use ferry_model::Problem;
use ferry_objects::object::Manifest;
use ferry_objects::store::Store;
use k8s_openapi::api::networking::v1::Ingress;

/// ferry's IngressClass controller name.
pub const CONTROLLER_NAME: &str = "ferry.dev/ingress";
/// Marks the cluster's default IngressClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class annotation from before `spec.ingressClassName`, still honoured.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Which Ingresses are ferry's, oldest first (creationTimestamp, then namespace/name): the
/// order in which conflicts are decided. An Ingress naming an IngressClass that does not exist
/// is warned about.
pub(crate) fn ferry_ingresses<'a>(
    store: &'a Store,
    problems: &mut Vec<Problem>,
) -> Vec<(&'a Manifest, &'a Ingress)> {
    let mut classes = BTreeSet::new();
    let mut all_classes = BTreeSet::new();
    let mut ferry_default = false;
    for (m, class) in store.ingress_classes() {
        all_classes.insert(m.name());
        if class.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER_NAME) {
            classes.insert(m.name());
            let annotations = class.metadata.annotations.as_ref();
            ferry_default |= annotations
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true");
        }
    }
    let mut ours: Vec<_> = store
        .ingresses()
        .filter(|(m, ing)| {
            let annotation = ing
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION));
            let class = ing
                .spec
                .as_ref()
                .and_then(|s| s.ingress_class_name.as_deref())
                .or(annotation.map(String::as_str));
            match class {
                Some(c) if classes.contains(c) => true,
                Some(c) => {
                    if !all_classes.contains(c) {
                        problems.push(m.warning(
                            "spec.ingressClassName",
                            format!(
                                "IngressClass {c:?} does not exist; this Ingress is not served"
                            ),
                        ));
                    }
                    false
                }
                None => ferry_default || all_classes.is_empty(),
            }
        })
        .collect();
    ours.sort_by(|(a, ai), (b, bi)| {
        let created = |i: &Ingress| i.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(ai)
            .cmp(&created(bi))
            .then_with(|| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())))
    });
    ours
}
