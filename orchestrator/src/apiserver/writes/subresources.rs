//! The `status` and `scale` subresources: reads, and writes that change only the status or
//! the replicas.

use super::*;

/// `GET .../status` (the object) and `GET .../scale` (its `Scale`).
pub(super) fn read_subresource(
    state: &State,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
    sub: &str,
) -> Response<ApiBody> {
    if sub == "scale" && !matches!(resource.kind, "Deployment" | "ReplicaSet") {
        return not_found(resource, &format!("{name}/scale")).respond();
    }
    match state.store.get(resource, namespace, name) {
        Some(o) if sub == "scale" => json_response(StatusCode::OK, JSON, &to_scale(&o)),
        Some(o) => json_response(StatusCode::OK, JSON, &o),
        None => not_found(resource, name).respond(),
    }
}

/// PUT or PATCH of `/status`: only the status changes.
pub(super) async fn status_write(cluster: &crate::Handle, write: Write, patch: bool) -> Answer {
    let resource = write.resource;
    let (ns, name) = (write.namespace.clone(), write.name.clone());
    run(cluster, resource, ns, name, move |declared, _, store| {
        let current = write.current(store)?;
        let mut new = new_object(&write, &current, patch)?;
        check_identity(&write, &mut new, &current)?;
        let status = new.get("status").cloned().unwrap_or(Value::Null);
        if let Some(old) = declared.get(&write.key()).cloned() {
            let mut object = declared::object_json(&old.object);
            object["status"] = status;
            let m = decode(resource, &write.name, &object, write.strict)?;
            if write.dry_run {
                return Ok(Done::last(StatusCode::OK, object));
            }
            declared.put(m);
        }
        // Otherwise its controller's status: reconciled back at once.
        Ok(Done::stored(StatusCode::OK))
    })
    .await
}

/// PUT or PATCH of `/scale` (an `autoscaling/v1` `Scale`) of a Deployment or ReplicaSet.
pub(super) async fn scale_write(cluster: &crate::Handle, write: Write, patch: bool) -> Answer {
    let resource = write.resource;
    let (ns, name) = (write.namespace.clone(), write.name.clone());
    run(cluster, resource, ns, name, move |declared, live, store| {
        let current = write.current(store)?;
        let scale = to_scale(&current);
        let new = new_object(&write, &scale, patch)?;
        if let Some(rv) = resource_version(&new)
            && Some(rv) != resource_version(&current)
        {
            return Err(conflict(resource, &write.name));
        }
        let replicas = new.pointer("/spec/replicas").and_then(Value::as_i64);
        let replicas = match replicas.map(i32::try_from) {
            Some(Ok(n)) if n >= 0 => n,
            _ => {
                let given = new
                    .pointer("/spec/replicas")
                    .cloned()
                    .unwrap_or(Value::Null);
                let p = Problem {
                    severity: ferry_model::Severity::Error,
                    file: API_ORIGIN.into(),
                    doc: None,
                    object: None,
                    field: "spec.replicas".into(),
                    message: format!("Invalid value: {given}: must be greater than or equal to 0"),
                };
                let scale_resource = Resource {
                    group: "autoscaling",
                    kind: "Scale",
                    ..*resource
                };
                return Err(invalid(&scale_resource, &write.name, &[p]));
            }
        };
        if write.dry_run {
            let mut out = scale;
            out["spec"]["replicas"] = json!(replicas);
            let mut done = Done::last(StatusCode::OK, out);
            done.scale = false;
            return Ok(done);
        }
        let key = write.key();
        if !declared::set_replicas(declared, &key, replicas) {
            live.scale_controlled_replica_set(&write.live_name(), replicas);
        }
        let mut done = Done::stored(StatusCode::OK);
        done.scale = true;
        Ok(done)
    })
    .await
}

/// A Deployment's or ReplicaSet's `autoscaling/v1` `Scale`.
pub(super) fn to_scale(object: &Value) -> Value {
    let meta = |f: &str| object.pointer(&format!("/metadata/{f}")).cloned();
    let mut metadata = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta(f) {
            metadata[f] = v;
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector_string(object.pointer("/spec/selector")),
        },
    })
}

/// A label selector in its string form (`app=web,tier in (a,b)`), as `Scale.status.selector`.
pub(super) fn selector_string(selector: Option<&Value>) -> String {
    let Some(s) = selector else {
        return String::new();
    };
    let mut parts: Vec<String> = s
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for e in s
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e.get("operator").and_then(Value::as_str) {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("DoesNotExist") => format!("!{key}"),
            _ => key.to_owned(),
        });
    }
    parts.join(",")
}
