//! Ingress annotations → [`IngressOptions`]: one per Ingress whose annotations ask anything
//! other than the defaults. The annotations are read and checked in
//! `ferry_objects::ingress_annotations`; the data plane finds a route's options by its
//! [`ferry_model::IngressRef`].

use ferry_model::IngressOptions;
use ferry_objects::ingress_annotations::Annotations;
use ferry_objects::object::Manifest;
use k8s_openapi::api::networking::v1::Ingress;

use super::ingress_ref;

/// The options of every Ingress whose annotations ask anything, sorted by Ingress.
pub(super) fn ingress_options(
    ingresses: &[(&Manifest, &Ingress)],
    annotations: &[Annotations],
) -> Vec<IngressOptions> {
    let mut options: Vec<IngressOptions> = ingresses
        .iter()
        .zip(annotations)
        .filter_map(|((m, _), a)| {
            let none = IngressOptions {
                ingress: ingress_ref(m),
                ..IngressOptions::default()
            };
            let asked = IngressOptions {
                ingress: ingress_ref(m),
                ..a.options.clone()
            };
            (asked != none).then_some(asked)
        })
        .collect();
    options.sort_by(|a, b| a.ingress.cmp(&b.ingress));
    options
}
