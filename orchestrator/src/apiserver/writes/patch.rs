//! PATCH: the new object made from the current one and a patch, by the patch's media type.

use super::*;

/// The media type of a server-side apply.
pub(super) const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// The new object given (PUT) or the current one patched (PATCH).
pub(super) fn new_object(write: &Write, current: &Value, patch: bool) -> Result<Value, Failure> {
    if patch {
        patched(&write.content_type, &write.body, current)
    } else {
        write.json_body()
    }
}

/// A patch applied to the current object: JSON patch (RFC 6902) or JSON merge patch (RFC
/// 7386); strategic merge patch and server-side apply go to
/// [`strategic_or_server_side_apply`].
pub(super) fn patched(content_type: &str, body: &[u8], current: &Value) -> Result<Value, Failure> {
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
            strategic_or_server_side_apply(content_type, body, Some(current))
        }
        other => Err(unsupported_media_type(
            other,
            &[
                "application/json-patch+json",
                "application/merge-patch+json",
            ],
        )),
    }
}

/// Strategic merge patch (`kubectl apply`, `kubectl set image`) and server-side apply
/// (`kubectl apply --server-side`): not served yet, so 415 `UnsupportedMediaType`. The merge
/// functions are wired in here: (the patch's media type, its body, the current object) → the
/// merged object; server-side apply of an object that does not exist comes with `None` (it
/// creates; [`super::update`] then has no current object to check against).
pub(super) fn strategic_or_server_side_apply(
    content_type: &str,
    _body: &[u8],
    _current: Option<&Value>,
) -> Result<Value, Failure> {
    Err(unsupported_media_type(
        content_type,
        &[
            "application/json-patch+json",
            "application/merge-patch+json",
        ],
    ))
}
