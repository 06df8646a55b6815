#![allow(clippy::unwrap_used)]

use super::*;

fn manifest(object: Object) -> Arc<Manifest> {
    Arc::new(Manifest {
        origin: Origin {
            file: "t.yaml".into(),
            doc: None,
        },
        object,
    })
}

fn sa(ns: &str, name: &str) -> Arc<Manifest> {
    manifest(Object::ServiceAccount(Box::new(ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    })))
}

#[test]
fn every_namespace_gets_a_default_service_account_unless_it_has_one() {
    let shop = manifest(Object::Namespace(Box::new(
        k8s_openapi::api::core::v1::Namespace {
            metadata: ObjectMeta {
                name: Some("shop".into()),
                ..ObjectMeta::default()
            },
            ..Default::default()
        },
    )));
    let pod_elsewhere = manifest(Object::Pod(Box::new(Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("used".into()),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    })));
    let manifests = vec![shop, pod_elsewhere, sa("kube-system", "default")];
    let made: Vec<(String, String)> = defaults(&manifests)
        .iter()
        .map(|m| (m.namespace().to_owned(), m.name().to_owned()))
        .collect();
    let want: Vec<(String, String)> = ["default", "kube-node-lease", "kube-public", "shop", "used"]
        .into_iter()
        .map(|ns| (ns.to_owned(), "default".to_owned()))
        .collect();
    assert_eq!(made, want);
}

#[test]
fn admission_defaults_the_service_account_and_refuses_a_missing_one() {
    let have = existing([&*sa("shop", "default"), &*sa("shop", "shopper")]);
    let mut pod = Pod::default();
    admit(&mut pod, "shop", &have).unwrap();
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    assert_eq!(spec.service_account.as_deref(), Some("default"));

    // The deprecated field alone names it too.
    let mut pod = Pod {
        spec: Some(PodSpec {
            service_account: Some("shopper".into()),
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    admit(&mut pod, "shop", &have).unwrap();
    assert_eq!(
        pod.spec.unwrap().service_account_name.as_deref(),
        Some("shopper")
    );

    let mut pod = Pod {
        spec: Some(PodSpec {
            service_account_name: Some("ghost".into()),
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    assert_eq!(
        admit(&mut pod, "shop", &have).unwrap_err(),
        "error looking up service account shop/ghost: serviceaccount \"ghost\" not found"
    );
}
