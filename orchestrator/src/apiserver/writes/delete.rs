//! DELETE: `DeleteOptions` (grace, propagation, preconditions) and what a deletion does to
//! the declared objects and the live cluster.

use super::*;

/// What a DELETE asks (its body's `DeleteOptions` and the query's parameters).
#[derive(Debug, Default)]
pub(super) struct DeleteOptions {
    grace: Option<i64>,
    orphan: bool,
    foreground: bool,
    uid: Option<String>,
    resource_version: Option<String>,
}

pub(super) fn delete_options(
    body: &[u8],
    param: &impl Fn(&str) -> Option<String>,
) -> Result<DeleteOptions, Failure> {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| Failure::bad_request(format!("DeleteOptions: not valid JSON: {e}")))?
    };
    let grace = match param("gracePeriodSeconds") {
        Some(g) => Some(
            g.parse::<i64>()
                .map_err(|_| Failure::bad_request("gracePeriodSeconds: must be an integer"))?,
        ),
        None => body.get("gracePeriodSeconds").and_then(Value::as_i64),
    };
    let policy = param("propagationPolicy").or_else(|| {
        body.get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let orphan = match policy.as_deref() {
        None | Some("Background" | "Foreground") => {
            body.get("orphanDependents").and_then(Value::as_bool) == Some(true)
        }
        Some("Orphan") => true,
        Some(other) => {
            return Err(Failure::bad_request(format!(
                "propagationPolicy: Unsupported value: {other:?}: supported values: \"Background\", \"Foreground\", \"Orphan\""
            )));
        }
    };
    let pre = |f: &str| {
        body.pointer(&format!("/preconditions/{f}"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(DeleteOptions {
        grace,
        orphan,
        foreground: policy.as_deref() == Some("Foreground"),
        uid: pre("uid"),
        resource_version: pre("resourceVersion"),
    })
}

/// DELETE of an object, with its dependents as `propagationPolicy` says.
pub(super) async fn delete(
    cluster: &crate::Handle,
    write: Write,
    options: DeleteOptions,
) -> Answer {
    let resource = write.resource;
    let (ns, name) = (write.namespace.clone(), write.name.clone());
    run(cluster, resource, ns, name, move |declared, live, store| {
        let current = write.current(store)?;
        let uid = current
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(want) = &options.uid
            && *want != uid
        {
            return Err(Failure::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
        if let Some(want) = &options.resource_version
            && Some(want.as_str()) != resource_version(&current)
        {
            return Err(conflict(resource, &write.name));
        }
        if write.dry_run {
            return Ok(Done::last(StatusCode::OK, current));
        }
        let key = write.key();
        let nn = write.live_name();
        let api_object = |object: Object| Manifest {
            origin: Origin {
                file: API_ORIGIN.into(),
                doc: None,
            },
            object,
        };
        match resource.kind {
            "Namespace" => {
                if UNDELETABLE_NAMESPACES.contains(&write.name.as_str()) {
                    return Err(Failure::new(
                        StatusCode::FORBIDDEN,
                        "Forbidden",
                        format!(
                            "namespaces \"{}\" is forbidden: this namespace may not be deleted",
                            write.name
                        ),
                    ));
                }
                for k in declared.in_namespace(&write.name) {
                    declared.remove(&k);
                }
                declared.remove(&key);
            }
            "Pod" => {
                live.delete_pod_with_grace(&nn, options.grace);
                declared.remove(&key);
            }
            // Foreground: the owner stays, marked, until its dependents are gone.
            "Deployment" | "ReplicaSet" if options.foreground && !options.orphan => {
                match declared.get(&key).cloned() {
                    Some(m) => {
                        let mut m = (*m).clone();
                        crate::cluster::mark_foreground(m.object.metadata_mut());
                        declared.put(m);
                    }
                    None => live.delete_controlled_replica_set_foreground(&nn),
                }
                return Ok(Done::stored(StatusCode::OK));
            }
            "Deployment" => {
                if options.orphan {
                    for rs in live.orphan_replica_sets(&uid) {
                        declared.put(api_object(Object::ReplicaSet(Box::new(rs))));
                    }
                }
                declared.remove(&key);
            }
            "ReplicaSet" => {
                if options.orphan {
                    for pod in live.orphan_pods(&uid) {
                        declared.put(api_object(Object::Pod(Box::new(pod))));
                    }
                }
                if declared.remove(&key).is_none() && live.controlled("ReplicaSet", &nn) {
                    live.delete_controlled_replica_set(&nn);
                }
            }
            // The ServiceAccount controller makes a Namespace's `default` again at once: a new
            // object, with a new uid (so a client waiting for the deletion sees it).
            "ServiceAccount" if write.name == crate::serviceaccount::DEFAULT => {
                declared.put(api_object(Object::ServiceAccount(Box::new(
                    crate::serviceaccount::made_again(&write.namespace),
                ))));
            }
            // An object derived from others (Endpoints, a controller's EndpointSlice) is made
            // again at once, as its controller would.
            _ => {
                declared.remove(&key);
            }
        }
        Ok(Done::last(StatusCode::OK, current))
    })
    .await
    .map(|(mut done, at)| {
        // A Pod stays, terminating, until its containers stopped, and an owner deleted in the
        // foreground until its dependents are gone: answer them as stored (else as last seen).
        done.use_last = done.use_last && resource.kind != "Pod";
        (done, at)
    })
}
