//! POST: a new object, its identity completed (namespace, name or `generateName`) and what
//! only the server sets left out.

use super::*;

/// POST on a list: creates the object.
pub(super) async fn create(cluster: &crate::Handle, write: Write) -> Answer {
    let resource = write.resource;
    let mut object = write.json_body()?;
    let namespace = write.namespace.clone();
    let name = prepare_create(resource, &namespace, &mut object)?;
    let write = Write { name, ..write };
    let (ns, name) = (write.namespace.clone(), write.name.clone());
    run(cluster, resource, ns, name, move |declared, _, store| {
        create_in(declared, store, &write, &object)
    })
    .await
}

/// Creates `object` (its identity prepared) among the declared objects, unless it exists.
pub(super) fn create_in(
    declared: &mut Declared,
    store: &Store,
    write: &Write,
    object: &Value,
) -> Result<Done, Failure> {
    let resource = write.resource;
    if resource.namespaced {
        let namespaces = resources::of_kind("Namespace").unwrap_or(resource);
        if store.get(namespaces, "", &write.namespace).is_none() {
            return Err(not_found(namespaces, &write.namespace));
        }
    }
    let key = write.key();
    if store.get(resource, &write.namespace, &write.name).is_some() || declared.get(&key).is_some()
    {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{}\" already exists", resource.qualified(), write.name),
        )
        .details(json!({"name": write.name, "group": resource.group, "kind": resource.plural})));
    }
    let mut m = decode(resource, &write.name, object, write.strict)?;
    if let Object::Pod(pod) = &mut m.object {
        service_account_admission(declared, store, write, pod)?;
    }
    if write.dry_run {
        return Ok(Done::last(StatusCode::CREATED, object.clone()));
    }
    declared.put(m);
    Ok(Done::stored(StatusCode::CREATED))
}

/// The ServiceAccount admission of a new Pod: its ServiceAccount defaulted, and a 403
/// `Forbidden` when the one it names does not exist (declared, or the controller's
/// `default`), as the API server answers.
fn service_account_admission(
    declared: &Declared,
    store: &Store,
    write: &Write,
    pod: &mut k8s_openapi::api::core::v1::Pod,
) -> Result<(), Failure> {
    let ns = &write.namespace;
    let spec = pod.spec.get_or_insert_with(Default::default);
    let sa = crate::serviceaccount::default_pod_spec(spec);
    let served =
        resources::of_kind("ServiceAccount").is_some_and(|r| store.get(r, ns, &sa).is_some());
    let key = ObjectKey {
        kind: Kind::ServiceAccount,
        namespace: ns.clone(),
        name: sa.clone(),
    };
    if served || declared.get(&key).is_some() {
        return Ok(());
    }
    let mut have = std::collections::BTreeSet::new();
    if sa == crate::serviceaccount::DEFAULT {
        // A Namespace made in this very round has its `default` once the round records it.
        have.insert((ns.clone(), sa.clone()));
    }
    crate::serviceaccount::admit(pod, ns, &have).map_err(|e| {
        Failure::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("pods \"{}\" is forbidden: {e}", write.name),
        )
        .details(json!({"name": write.name, "kind": "pods"}))
    })
}

/// Checks and completes a new object's identity (kind, namespace, name or `generateName`) and
/// drops what only the server sets; its name.
pub(super) fn prepare_create(
    resource: &Resource,
    namespace: &str,
    object: &mut Value,
) -> Result<String, Failure> {
    check_kind(resource, object)?;
    if resource.namespaced && namespace.is_empty() {
        return Err(Failure::bad_request(
            "a namespaced object is created under /namespaces/NAMESPACE/",
        ));
    }
    let meta = object
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Failure::bad_request("metadata: must be an object"))?;
    if resource.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != namespace => {
                return Err(Failure::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(namespace));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let name = match meta.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                let name = format!("{prefix}{}", random_suffix());
                meta.insert("name".into(), json!(name));
                name
            }
            _ => {
                let p = Problem {
                    severity: ferry_model::Severity::Error,
                    file: API_ORIGIN.into(),
                    doc: None,
                    object: None,
                    field: "metadata.name".into(),
                    message: "Required value: name or generateName is required".into(),
                };
                return Err(invalid(resource, "", &[p]));
            }
        },
    };
    for field in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "managedFields",
        "selfLink",
    ] {
        meta.remove(field);
    }
    if matches!(resource.kind, "Ingress" | "Deployment" | "ReplicaSet") {
        meta.insert("generation".into(), json!(1));
    }
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
    Ok(name)
}

/// Five characters, as the API server appends to a `generateName`.
pub(super) fn random_suffix() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = ferry_runtime::random::u64();
    (0..5)
        .map(|_| {
            let c = CHARS[(x % CHARS.len() as u64) as usize];
            x /= CHARS.len() as u64;
            char::from(c)
        })
        .collect()
}
