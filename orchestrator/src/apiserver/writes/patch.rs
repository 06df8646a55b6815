//! PATCH: the new object made from the current one and a patch, by the patch's media type.

use super::*;

/// The media type of a server-side apply.
pub(super) const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// The new object given (PUT) or the current one patched (PATCH).
pub(super) fn new_object(write: &Write, current: &Value, patch: bool) -> Result<Value, Failure> {
    if patch {
        patched(write, current)
    } else {
        write.json_body()
    }
}

/// A patch applied to the current object: JSON patch (RFC 6902), JSON merge patch (RFC
/// 7386), strategic merge patch or server-side apply ([`strategic_or_server_side_apply`]).
pub(super) fn patched(write: &Write, current: &Value) -> Result<Value, Failure> {
    let (content_type, body) = (write.content_type.as_str(), &write.body[..]);
    let mut doc = current.clone();
    match content_type {
        "application/json-patch+json" => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| Failure::bad_request(format!("the JSON patch does not parse: {e}")))?;
            json_patch::patch(&mut doc, &patch).map_err(|e| {
                Failure::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("the JSON patch could not be applied: {e}"),
                )
            })?;
            Ok(doc)
        }
        "application/merge-patch+json" => {
            let patch: Value = serde_json::from_slice(body).map_err(|e| {
                Failure::bad_request(format!("the merge patch is not valid JSON: {e}"))
            })?;
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        "application/strategic-merge-patch+json" | APPLY_PATCH => {
            strategic_or_server_side_apply(write, Some(current))
        }
        other => Err(unsupported_media_type(other, PATCH_TYPES)),
    }
}

/// The patch media types served.
const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    APPLY_PATCH,
];

/// Strategic merge patch (`kubectl apply`, `kubectl set image`; [`strategic::apply`]) and
/// server-side apply (`kubectl apply --server-side`; [`ssa::server_side_apply`] for the
/// request's `fieldManager`, `force`): the patch's media type, its body, the current object →
/// the merged object. Server-side apply of an object that does not exist comes with `None`
/// and gives the object to create.
pub(super) fn strategic_or_server_side_apply(
    write: &Write,
    current: Option<&Value>,
) -> Result<Value, Failure> {
    let kind = write.resource.kind;
    if write.content_type == APPLY_PATCH {
        let applied = yaml_or_json(&write.body)?;
        let Some(manager) = write.field_manager.as_deref().filter(|m| !m.is_empty()) else {
            return Err(Failure::bad_request(
                "PATCH with apply-patch+yaml requires a fieldManager",
            ));
        };
        return ssa::server_side_apply(current, &applied, manager, write.force)
            .map_err(|e| failure(e.code(), e.reason(), e.to_string()));
    }
    let patch: Value = serde_json::from_slice(&write.body).map_err(|e| {
        Failure::bad_request(format!("the strategic merge patch is not valid JSON: {e}"))
    })?;
    let current = current.cloned().unwrap_or_else(|| json!({}));
    strategic::apply(kind, &current, &patch)
        .map_err(|e| failure(e.code(), e.reason(), e.to_string()))
}

/// An apply's body: YAML (its media type), of which JSON is a part (what kubectl sends).
fn yaml_or_json(body: &[u8]) -> Result<Value, Failure> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| Failure::bad_request("the applied configuration is not UTF-8"))?;
    serde_saphyr::from_str(text)
        .map_err(|e| Failure::bad_request(format!("the applied configuration does not parse: {e}")))
}

fn failure(code: u16, reason: &'static str, message: String) -> Failure {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    Failure::new(code, reason, message)
}
