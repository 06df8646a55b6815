//! The `labelSelector` and `fieldSelector` query parameters, parsed as the API server does.
//!
//! Labels: requirements separated by commas, each `key`, `!key`, `key=value`, `key==value`,
//! `key!=value`, `key in (a,b)` or `key notin (a,b)`; parsed into a [`LabelSelector`] and
//! matched by [`ferry_objects::selector::matches`], the code Services and Deployments use.
//! Fields: `field=value`, `field==value`, `field!=value`, for the fields each resource
//! supports (`metadata.name`, `metadata.namespace`; Pods also `spec.nodeName`,
//! `status.phase`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde_json::Value;

/// Parses a label selector; the message says what is wrong.
pub fn parse_labels(text: &str) -> Result<LabelSelector, String> {
    let mut expressions = Vec::new();
    for part in split_top_level(text)? {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        expressions.push(requirement(part)?);
    }
    Ok(LabelSelector {
        match_labels: None,
        match_expressions: Some(expressions),
    })
}

/// Splits at the commas outside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unexpected ')' at {i} in {text:?}"));
                }
            }
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unclosed '(' in {text:?}"));
    }
    out.push(&text[start..]);
    Ok(out)
}

fn req(
    key: &str,
    operator: &str,
    values: Option<Vec<String>>,
) -> Result<LabelSelectorRequirement, String> {
    check_key(key)?;
    for v in values.iter().flatten() {
        check_value(v)?;
    }
    Ok(LabelSelectorRequirement {
        key: key.to_owned(),
        operator: operator.to_owned(),
        values,
    })
}

fn requirement(part: &str) -> Result<LabelSelectorRequirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return req(key.trim(), "DoesNotExist", None);
    }
    for (op, operator) in [("!=", "NotIn"), ("==", "In"), ("=", "In")] {
        if let Some((key, value)) = part.split_once(op) {
            return req(key.trim(), operator, Some(vec![value.trim().to_owned()]));
        }
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().trim_start();
    if rest.is_empty() {
        return req(key, "Exists", None);
    }
    let (operator, list) = if let Some(list) = rest.strip_prefix("notin") {
        ("NotIn", list)
    } else if let Some(list) = rest.strip_prefix("in") {
        ("In", list)
    } else {
        return Err(format!(
            "{part:?}: expected one of =, ==, !=, in, notin after the key"
        ));
    };
    let list = list.trim();
    let Some(inner) = list.strip_prefix('(').and_then(|l| l.strip_suffix(')')) else {
        return Err(format!("{part:?}: expected a parenthesised list of values"));
    };
    let values: Vec<String> = inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        return Err(format!(
            "{part:?}: for 'in', 'notin' operators, values set can't be empty"
        ));
    }
    req(key, operator, Some(values))
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// alphanumerics, `-`, `_`, `.`, beginning and ending alphanumeric.
fn check_key(key: &str) -> Result<(), String> {
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > 253 {
                return Err(format!(
                    "invalid label key {key:?}: prefix part must be a DNS subdomain"
                ));
            }
            name
        }
        None => key,
    };
    if name.is_empty() || name.len() > 63 || !label_chars(name) {
        return Err(format!(
            "invalid label key {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 || !label_chars(value) {
        return Err(format!(
            "invalid label value {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

fn label_chars(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// Whether an object's labels satisfy a parsed selector.
pub fn labels_match(selector: &LabelSelector, object: &Value) -> bool {
    let labels: BTreeMap<String, String> = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    ferry_objects::selector::matches(selector, &labels)
}

/// One field requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub equal: bool,
    pub value: String,
}

/// The fields every resource can be selected by.
const COMMON_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// The fields a kind can be selected by besides the common ones (the API server's field
/// label conversions for the kinds served).
fn kind_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "status.phase",
            "status.podIP",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
        ],
        "Secret" => &["type"],
        "Namespace" => &["status.phase"],
        "ReplicaSet" => &["status.replicas"],
        // What `kubectl describe` asks for.
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        _ => &[],
    }
}

/// Parses a field selector for the resource of `kind`.
pub fn parse_fields(text: &str, kind: &str) -> Result<Vec<FieldRequirement>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
            (f, false, v)
        } else if let Some((f, v)) = part.split_once("==") {
            (f, true, v)
        } else if let Some((f, v)) = part.split_once('=') {
            (f, true, v)
        } else {
            return Err(format!(
                "invalid selector: '{part}'; can't understand '{part}'"
            ));
        };
        let field = field.trim();
        let supported = COMMON_FIELDS.contains(&field) || kind_fields(kind).contains(&field);
        if !supported {
            return Err(format!("field label not supported: {field}"));
        }
        out.push(FieldRequirement {
            field: field.to_owned(),
            equal,
            value: value.trim().to_owned(),
        });
    }
    Ok(out)
}

/// Whether an object satisfies every field requirement.
pub fn fields_match(requirements: &[FieldRequirement], object: &Value) -> bool {
    requirements.iter().all(|r| {
        let pointer = match r.field.as_str() {
            // An Event's `source` is its reporting component.
            "source" => "/source/component".to_owned(),
            field => format!("/{}", field.replace('.', "/")),
        };
        let actual = match object.pointer(&pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        (actual == r.value) == r.equal
    })
}
