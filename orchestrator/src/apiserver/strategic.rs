//! Strategic merge patch (`application/strategic-merge-patch+json`), with the semantics of
//! k8s.io/apimachinery/pkg/util/strategicpatch as the API server applies it (parallel delete
//! lists merged, unmatched `null`s ignored): maps merge recursively and `null` deletes a key;
//! a list whose field has the `merge` strategy merges by its merge key (containers by `name`,
//! a container's ports by `containerPort`, …, see [`super::openapi::PATCH_METADATA`]) or, for
//! scalars, as a set; every other list is replaced. Directives: `$patch: replace|delete` (and
//! `merge`, the default, in a map), `$setElementOrder/<list>`, `$retainKeys`,
//! `$deleteFromPrimitiveList/<list>`.
//!
//! kubectl's client-side apply sends these; applied as a JSON merge patch they would drop the
//! containers and ports the patch does not name, which is why this exists (no crate does it).

use serde_json::{Map, Value};

use super::openapi::{Node, PatchMeta};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Why a patch cannot be applied; the API server answers [`PatchError::code`] with
/// [`PatchError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch is not a strategic merge patch (a directive of the wrong shape): 400.
    #[error("{0}")]
    BadRequest(String),
    /// The patch is well formed but cannot apply (a merge-keyed item without its key, a key
    /// outside `$retainKeys`, a list of lists): 422.
    #[error("{0}")]
    Invalid(String),
}

impl PatchError {
    /// The HTTP status of the answer.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::Invalid(_) => 422,
        }
    }

    /// The `Status` reason of the answer.
    pub fn reason(&self) -> &'static str {
        match self {
            PatchError::BadRequest(_) => "BadRequest",
            PatchError::Invalid(_) => "Invalid",
        }
    }
}

/// Applies a strategic merge patch to an object of `kind` (`Deployment`, `Pod`, …; a kind
/// without a schema has no merge keys, so its lists are replaced).
pub fn apply(kind: &str, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::BadRequest(
            "invalid patch: a strategic merge patch must be a JSON object".into(),
        ));
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    merge_map(original, patch.clone(), Node::kind(kind), "").map(Value::Object)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// Merges `patch` into `original` (both objects of the schema at `node`).
pub(super) fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    node: Node,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return merge_map(Map::new(), patch, node, path),
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => {
                return Err(PatchError::BadRequest(format!(
                    "{}invalid patch: unknown $patch directive {directive} in a map (want replace, merge or delete)",
                    at(path)
                )));
            }
        }
    }
    if let Some(retain) = patch.remove(RETAIN_KEYS) {
        let keys: Vec<&str> = retain
            .as_array()
            .and_then(|l| l.iter().map(Value::as_str).collect())
            .ok_or_else(|| {
                PatchError::BadRequest(format!(
                    "{}invalid patch: $retainKeys must be a list of strings, not {retain}",
                    at(path)
                ))
            })?;
        if let Some(k) = patch
            .iter()
            .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
            .map(|(k, _)| k)
            .find(|k| !keys.contains(&k.as_str()))
        {
            return Err(PatchError::BadRequest(format!(
                "{}invalid patch: the patch has field {k:?}, which its $retainKeys list {retain} does not name",
                at(path)
            )));
        }
        original.retain(|k, _| keys.contains(&k.as_str()));
    }
    let orders: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in orders {
        let order = patch.remove(&directive).unwrap_or(Value::Null);
        let key = &directive[SET_ELEMENT_ORDER.len()..];
        let list_path = join(path, key);
        let Value::Array(order) = order else {
            return Err(PatchError::BadRequest(format!(
                "{list_path}: invalid patch: {directive} must be a list"
            )));
        };
        if patch.get(key).is_some_and(|v| !v.is_array()) {
            // The list itself is deleted or replaced by something else: that wins.
            continue;
        }
        let patch_list = match patch.remove(key) {
            Some(Value::Array(l)) => Some(l),
            _ => None,
        };
        let original_list = match original.remove(key) {
            Some(Value::Array(l)) => Some(l),
            Some(other) => {
                original.insert(key.to_owned(), other);
                None
            }
            None => None,
        };
        if patch_list.is_none() && original_list.is_none() {
            continue;
        }
        let (child, meta) = node.field(key);
        let original_list = original_list.unwrap_or_default();
        let patch_list = patch_list.unwrap_or_default();
        check_order(&patch_list, &order, meta.merge_key, &list_path, &directive)?;
        let merged = if meta.has("merge") {
            merge_list(
                original_list.clone(),
                patch_list,
                child.items(),
                meta,
                &list_path,
            )?
        } else {
            fresh_list(patch_list, child.items(), &list_path)?
        };
        if let Some(mk) = meta.merge_key
            && let Some(bad) = order.iter().find(|o| o.get(mk).is_none())
        {
            return Err(PatchError::Invalid(format!(
                "{list_path}: {directive} item {bad} does not contain the merge key {mk:?}"
            )));
        }
        let (in_order, server_only): (Vec<Value>, Vec<Value>) = merged
            .into_iter()
            .partition(|item| index(&order, item, meta.merge_key).is_some());
        let merged = normalize(
            in_order,
            server_only,
            &order,
            &original_list,
            meta.merge_key,
        );
        original.insert(key.to_owned(), Value::Array(merged));
    }
    for (key, value) in patch {
        if let Some(list) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let Value::Array(gone) = value else {
                return Err(PatchError::BadRequest(format!(
                    "{}: invalid patch: {key} must be a list",
                    join(path, list)
                )));
            };
            if let Some(Value::Array(items)) = original.get_mut(list) {
                items.retain(|item| !gone.contains(item));
            }
            continue;
        }
        let here = join(path, &key);
        if value.is_null() {
            original.remove(&key);
            continue;
        }
        let (child, meta) = node.field(&key);
        let merged = match (original.remove(&key), value) {
            (Some(Value::Object(o)), Value::Object(p)) if !meta.has("replace") => {
                Value::Object(merge_map(o, p, child, &here)?)
            }
            (Some(Value::Array(o)), Value::Array(p)) if meta.has("merge") => {
                Value::Array(merge_list(o, p, child.items(), meta, &here)?)
            }
            (_, value) => fresh(value, child, &here)?,
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// A patch value that lands where the original has nothing to merge with: its `null`s and
/// directives are resolved against nothing, as the API server stores it.
fn fresh(value: Value, node: Node, path: &str) -> Result<Value, PatchError> {
    Ok(match value {
        Value::Object(map) => Value::Object(merge_map(Map::new(), map, node, path)?),
        Value::Array(items) => Value::Array(fresh_list(items, node.items(), path)?),
        other => other,
    })
}

fn fresh_list(items: Vec<Value>, node: Node, path: &str) -> Result<Vec<Value>, PatchError> {
    items
        .into_iter()
        .enumerate()
        .filter(|(_, item)| item.get(DIRECTIVE).is_none())
        .map(|(i, item)| fresh(item, node, &format!("{path}[{i}]")))
        .collect()
}

/// The items a patch list merges must come in the order its `$setElementOrder` gives them,
/// as apimachinery's `validatePatchWithSetOrderList` checks.
fn check_order(
    patch: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
    path: &str,
    directive: &str,
) -> Result<(), PatchError> {
    let key = |v: &Value| -> Result<Value, PatchError> {
        match merge_key {
            Some(k) => v.get(k).cloned().ok_or_else(|| no_merge_key(path, v, k)),
            None => Ok(v.clone()),
        }
    };
    let mut at = 0;
    for item in patch.iter().filter(|i| i.get(DIRECTIVE).is_none()) {
        let k = key(item)?;
        loop {
            let Some(o) = order.get(at) else {
                return Err(PatchError::BadRequest(format!(
                    "{path}: invalid patch: the order of the patch list does not match its {directive} list {}",
                    Value::Array(order.to_vec())
                )));
            };
            at += 1;
            if key(o)? == k {
                break;
            }
        }
    }
    Ok(())
}

/// The position in `order` of the item with `item`'s merge key (or, for scalars, of `item`).
fn index(order: &[Value], item: &Value, merge_key: Option<&str>) -> Option<usize> {
    match merge_key {
        Some(k) => {
            let key = item.get(k)?;
            order.iter().position(|o| o.get(k) == Some(key))
        }
        None => order.iter().position(|o| o == item),
    }
}

/// The merged list in its final order, as apimachinery's `normalizeElementOrder`: the items
/// the patch names in the patch's order, the others in the original's, interleaved where the
/// original orders them.
fn normalize(
    mut in_patch: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    in_patch.sort_by_key(|i| index(patch_order, i, merge_key).unwrap_or(usize::MAX));
    server_only.sort_by_key(|i| index(server_order, i, merge_key).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(in_patch.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        in_patch.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (index(server_order, l, merge_key), index(server_order, r, merge_key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    out
}

/// Merges two lists of a field with the `merge` strategy.
fn merge_list(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    items: Node,
    meta: PatchMeta<'_>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if original.iter().chain(&patch).any(Value::is_array) {
        return Err(PatchError::Invalid(format!(
            "{path}: lists of lists are not supported by a strategic merge patch"
        )));
    }
    let maps = original
        .iter()
        .chain(&patch)
        .filter(|v| v.is_object())
        .count();
    if maps == 0 {
        // A set of scalars (finalizers): the union, first occurrences kept.
        let mut merged: Vec<Value> = Vec::new();
        for v in original.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (in_patch, server_only) = merged.into_iter().partition(|v| patch.contains(v));
        return Ok(normalize(in_patch, server_only, &patch, &original, None));
    }
    if maps != original.len() + patch.len() {
        return Err(PatchError::BadRequest(format!(
            "{path}: invalid patch: a list mixes objects and scalars"
        )));
    }
    let Some(key) = meta.merge_key else {
        return Err(PatchError::Invalid(format!(
            "{path}: cannot merge lists without a merge key"
        )));
    };
    let server_order = original.clone();
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        match item.get(DIRECTIVE) {
            None => plain.push(item),
            Some(d) if d == "delete" => {
                let Some(value) = item.get(key) else {
                    return Err(no_merge_key(path, &item, key));
                };
                original.retain(|o| o.get(key) != Some(value));
            }
            Some(d) if d == "replace" => replace = true,
            Some(d) if d == "merge" => {
                return Err(PatchError::BadRequest(format!(
                    "{path}: invalid patch: $patch: merge cannot be given in a list"
                )));
            }
            Some(d) => {
                return Err(PatchError::BadRequest(format!(
                    "{path}: invalid patch: unknown $patch directive {d} in a list (want replace or delete)"
                )));
            }
        }
    }
    if replace {
        return fresh_list(plain, items, path);
    }
    for (i, item) in plain.iter().enumerate() {
        let Some(value) = item.get(key) else {
            return Err(no_merge_key(&format!("{path}[{i}]"), item, key));
        };
        let here = format!("{path}[{key}={value}]");
        match original.iter().position(|o| o.get(key) == Some(value)) {
            Some(at) => {
                let o = std::mem::take(&mut original[at]);
                let merged = match (o, item.clone()) {
                    (Value::Object(o), Value::Object(p)) => merge_map(o, p, items, &here)?,
                    (_, p) => match fresh(p, items, &here)? {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    },
                };
                original[at] = Value::Object(merged);
            }
            None => original.push(fresh(item.clone(), items, &here)?),
        }
    }
    let (in_patch, server_only) = original
        .into_iter()
        .partition(|o| index(&plain, o, Some(key)).is_some());
    Ok(normalize(
        in_patch,
        server_only,
        &plain,
        &server_order,
        Some(key),
    ))
}

fn no_merge_key(path: &str, item: &Value, key: &str) -> PatchError {
    PatchError::Invalid(format!(
        "{path}: map: {item} does not contain declared merge key: {key}"
    ))
}
