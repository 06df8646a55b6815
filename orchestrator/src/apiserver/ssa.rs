//! Server-side apply (`PATCH` with `application/apply-patch+yaml`), kept simply:
//!
//! - absent object: the applied configuration is created;
//! - present object: the applied configuration is merged in with the strategic merge patch's
//!   list semantics (lists merged by their merge key, sets of scalars united, other lists and
//!   scalars replaced), and the fields this manager applied last time and omits now are
//!   removed (unless another manager's apply set still names them);
//! - each manager's applied field set is kept in `metadata.managedFields` as an entry
//!   `{manager, operation: Apply, apiVersion, time, fieldsType: FieldsV1, fieldsV1}` in the
//!   real server's FieldsV1 form (`f:<field>`, `k:{"name":"web"}` for a keyed list item,
//!   `v:"x"` for a set member, `.` for an item that also has fields);
//! - conflicts are between Apply managers only: applying a value that differs from the live
//!   one to a field another manager's apply set holds is a conflict (409) unless `force`,
//!   which moves the field to this manager. Fields written by create, update or the other
//!   patches are not tracked (no `Update` entries), so they never conflict and are simply
//!   overwritten by an apply;
//! - applying the same configuration again returns the live object unchanged (its
//!   managedFields' time included), so nothing is written.

use serde_json::{Map, Value, json};

use super::openapi::Node;
use super::strategic::{self, PatchError};

/// Why an apply is refused; the API server answers [`ApplyError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Not an object, or without `apiVersion`/`kind`/`metadata.name`, or a bad list: 400/422.
    #[error(transparent)]
    Patch(#[from] PatchError),
    /// Fields another manager applied, with other values (`force` takes them): 409.
    #[error("Apply failed with {} conflict{}: {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|c| format!("conflict with \"{}\": {}", c.manager, c.field)).collect::<Vec<_>>().join(", "))]
    Conflict(Vec<Conflict>),
}

/// A field applied with a different value by another manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// `.spec.replicas`, as the API server names it in a conflict.
    pub field: String,
}

impl ApplyError {
    pub fn code(&self) -> u16 {
        match self {
            ApplyError::Patch(e) => e.code(),
            ApplyError::Conflict(_) => 409,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Patch(e) => e.reason(),
            ApplyError::Conflict(_) => "Conflict",
        }
    }
}

/// One step of a field path, spelled as in FieldsV1: `f:name`, `k:{"name":"web"}`, `v:"x"`.
type FieldPath = Vec<String>;

/// Fields of an applied configuration nobody owns: identity and server-set metadata.
fn ignored(path: &[String]) -> bool {
    match path {
        [one] => one == "f:apiVersion" || one == "f:kind",
        [m, f] if m == "f:metadata" => matches!(
            f.as_str(),
            "f:name"
                | "f:namespace"
                | "f:uid"
                | "f:resourceVersion"
                | "f:generation"
                | "f:creationTimestamp"
                | "f:deletionTimestamp"
                | "f:managedFields"
        ),
        _ => false,
    }
}

/// The field paths an applied configuration sets: each leaf (scalar, atomic list, empty
/// object), each keyed list item, each set member.
fn field_set(node: Node, value: &Value, path: &mut FieldPath, out: &mut Vec<FieldPath>) {
    let Value::Object(map) = value else {
        return;
    };
    for (key, v) in map {
        path.push(format!("f:{key}"));
        if !ignored(path) {
            let (child, meta) = node.field(key);
            match v {
                Value::Object(m) if !m.is_empty() && !meta.has("replace") => {
                    field_set(child, v, path, out);
                }
                Value::Array(items) if meta.has("merge") => {
                    for item in items {
                        let step = match (meta.merge_key, item) {
                            (Some(k), Value::Object(m)) => match m.get(k) {
                                Some(kv) => format!("k:{}", json!({k: kv})),
                                None => continue,
                            },
                            _ => format!("v:{item}"),
                        };
                        path.push(step);
                        out.push(path.clone());
                        if item.is_object() {
                            field_set(child.items(), item, path, out);
                        }
                        path.pop();
                    }
                }
                _ => out.push(path.clone()),
            }
        }
        path.pop();
    }
}

/// A field set in the FieldsV1 form.
fn to_fields_v1(set: &[FieldPath]) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for (i, step) in path.iter().enumerate() {
            let child = node
                .entry(step.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(child) = child else { break };
            node = child;
            if i + 1 == path.len() && step.starts_with("k:") {
                // The item itself is owned: `.` marks it once it has fields too.
                node.entry(".").or_insert_with(|| json!({}));
            }
        }
    }
    // `.` is only written next to an item's fields; a bare item is `{}`.
    fn tidy(map: &mut Map<String, Value>) {
        if map.len() == 1 && map.contains_key(".") {
            map.remove(".");
        }
        for v in map.values_mut() {
            if let Value::Object(m) = v {
                tidy(m);
            }
        }
    }
    tidy(&mut root);
    Value::Object(root)
}

/// A FieldsV1 value as a field set.
fn from_fields_v1(value: &Value) -> Vec<FieldPath> {
    fn walk(value: &Value, path: &mut FieldPath, out: &mut Vec<FieldPath>) {
        let Value::Object(map) = value else { return };
        if (map.is_empty() || map.contains_key(".")) && !path.is_empty() {
            out.push(path.clone());
        }
        for (step, v) in map.iter().filter(|(k, _)| *k != ".") {
            path.push(step.clone());
            walk(v, path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// The list item a `k:` or `v:` step names.
fn find_item(items: &[Value], step: &str) -> Option<usize> {
    if let Some(key) = step.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        items
            .iter()
            .position(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))
    } else {
        let value: Value = serde_json::from_str(step.strip_prefix("v:")?).ok()?;
        items.iter().position(|item| *item == value)
    }
}

fn get<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |v, step| match step.strip_prefix("f:") {
            Some(f) => v.get(f),
            None => v.as_array()?.get(find_item(v.as_array()?, step)?),
        })
}

fn remove(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut v = value;
    for step in parents {
        let next = match step.strip_prefix("f:") {
            Some(f) => v.get_mut(f),
            None => match v.as_array_mut() {
                Some(items) => find_item(items, step).and_then(|i| items.get_mut(i)),
                None => None,
            },
        };
        match next {
            Some(n) => v = n,
            None => return,
        }
    }
    match last.strip_prefix("f:") {
        Some(f) => {
            if let Some(m) = v.as_object_mut() {
                m.remove(f);
            }
        }
        None => {
            if let Some(items) = v.as_array_mut()
                && let Some(i) = find_item(items, last)
            {
                items.remove(i);
            }
        }
    }
}

/// `.spec.template.spec.containers[name="web"].image`, as the API server names a field in a
/// conflict.
fn display(path: &[String]) -> String {
    path.iter()
        .map(|step| match step.strip_prefix("f:") {
            Some(f) => format!(".{f}"),
            None => match step.strip_prefix("k:") {
                Some(k) => {
                    let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                    let inner: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("[{}]", inner.join(","))
                }
                None => format!("[{}]", step.trim_start_matches("v:")),
            },
        })
        .collect()
}

fn apply_entries(live: &Value) -> Vec<(String, Vec<FieldPath>)> {
    live.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e.get("operation").and_then(Value::as_str) == Some("Apply"))
                .filter_map(|e| {
                    let manager = e.get("manager")?.as_str()?.to_owned();
                    Some((manager, from_fields_v1(e.get("fieldsV1")?)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Applies `applied` for `manager`: creates the object when `live` is `None`, else merges it
/// into `live` as the module says. The result carries the updated `metadata.managedFields`;
/// the caller sets the server-owned metadata (uid, resourceVersion, generation, timestamps).
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApplyError> {
    let Value::Object(config) = applied else {
        return Err(PatchError::BadRequest(
            "invalid apply: the applied configuration must be an object".into(),
        )
        .into());
    };
    let text = |f: &str| config.get(f).and_then(Value::as_str).unwrap_or("");
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if api_version.is_empty() || kind.is_empty() {
        return Err(PatchError::BadRequest(
            "invalid apply: the applied configuration has no apiVersion or kind".into(),
        )
        .into());
    }
    if applied
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(
            PatchError::Invalid("metadata.name: Required value: name is required".into()).into(),
        );
    }
    if manager.is_empty() {
        return Err(PatchError::BadRequest(
            "PATCH, application/apply-patch+yaml requests require a non-empty fieldManager".into(),
        )
        .into());
    }
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(PatchError::BadRequest("metadata.managedFields must be nil".into()).into());
    }
    let node = Node::kind(kind);
    let mut set = Vec::new();
    field_set(node, applied, &mut Vec::new(), &mut set);
    let config = applied.clone();

    if let Some(was) = live.and_then(|l| l.get("kind")).and_then(Value::as_str)
        && was != kind
    {
        return Err(PatchError::BadRequest(format!(
            "invalid apply: the applied configuration is a {kind}, the object a {was}"
        ))
        .into());
    }
    let empty = json!({});
    let live = live.unwrap_or(&empty);
    let mut others: Vec<(String, Vec<FieldPath>)> = apply_entries(live);
    let previous = others
        .iter()
        .position(|(m, _)| m == manager)
        .map(|i| others.remove(i).1)
        .unwrap_or_default();

    let mut conflicts = Vec::new();
    let mut taken = false;
    for path in &set {
        let last = path.last().map(String::as_str).unwrap_or("");
        if !last.starts_with("f:") {
            continue; // list items and set members: membership, not values
        }
        if get(live, path) == get(&config, path) {
            continue;
        }
        for (other, fields) in &mut others {
            if fields.contains(path) {
                if force {
                    fields.retain(|f| f != path);
                    taken = true;
                } else {
                    conflicts.push(Conflict {
                        manager: other.clone(),
                        field: display(path),
                    });
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(ApplyError::Conflict(conflicts));
    }

    let mut base = live.clone();
    for gone in previous.iter().filter(|p| !set.contains(p)) {
        if !others.iter().any(|(_, fields)| fields.contains(gone)) {
            remove(&mut base, gone);
        }
    }
    let mut merged = strategic::apply(kind, &base, &config)?;
    // Nothing changes (the same configuration applied again): the object stays as it is, its
    // managedFields' time included, so the store sees no change and bumps no resourceVersion.
    let sorted = |s: &[FieldPath]| {
        let mut s = s.to_vec();
        s.sort();
        s
    };
    let bare = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        v
    };
    if !taken
        && !previous.is_empty()
        && sorted(&previous) == sorted(&set)
        && bare(&merged) == bare(live)
    {
        return Ok(live.clone());
    }
    let mut entries: Vec<Value> = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    entries.retain(|e| {
        !(e.get("operation").and_then(Value::as_str) == Some("Apply")
            && e.get("manager").and_then(Value::as_str) == Some(manager))
    });
    for entry in &mut entries {
        let owner = entry.get("manager").and_then(Value::as_str).unwrap_or("");
        if let Some((_, fields)) = others.iter().find(|(m, _)| m == owner)
            && entry.get("operation").and_then(Value::as_str) == Some("Apply")
        {
            entry["fieldsV1"] = to_fields_v1(fields);
        }
    }
    entries.push(json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or(jiff::Timestamp::UNIX_EPOCH).to_string(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(&set),
    }));
    if let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("managedFields".into(), Value::Array(entries));
    }
    Ok(merged)
}
