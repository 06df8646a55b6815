//! Reading manifests: files and directories to typed objects. All YAML and JSON parsing of
//! user input happens here.
//!
//! Every document is first read into a generic value (YAML 1.2 via `serde-saphyr`, or JSON),
//! then decoded into its exact `k8s-openapi` type with the path of any field that does not fit
//! (`spec.ports[1].port`), so a wrong type reads as the API server would report it. Nothing here
//! panics on any input: sizes and nesting are bounded, and every failure is a [`Problem`].

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_model::{ObjectRef, Problem, Severity};
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

use crate::object::{DEFAULT_NAMESPACE, Kind, Manifest, Object, Origin};

/// Files larger than this are refused (the API server takes at most 3 MiB per request; a
/// manifest file may hold many objects).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Deepest nesting accepted, far beyond any real manifest.
const MAX_DEPTH: usize = 64;
const MAX_DOCUMENTS: usize = 1_000_000;

/// The extensions read when a directory is named.
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// What reading some input gave: the objects, and the problems met on the way.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub manifests: Vec<Manifest>,
    pub problems: Vec<Problem>,
}

impl Loaded {
    pub fn extend(&mut self, other: Loaded) {
        self.manifests.extend(other.manifests);
        self.problems.extend(other.problems);
    }
}

fn file_problem(file: &str, message: impl Into<String>) -> Problem {
    Origin { file: file.into(), doc: None }.problem(Severity::Error, None, "", message)
}

/// The files a list of `-f` paths names: each file itself, each directory's `*.yaml`, `*.yml`
/// and `*.json` files recursively (hidden files and directories skipped), in a stable order.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Problem> {
    let mut out = Vec::new();
    for path in paths {
        let meta = fs::metadata(path)
            .map_err(|e| file_problem(&path.display().to_string(), e.to_string()))?;
        if meta.is_dir() {
            walk(path, &mut out)?;
        } else {
            out.push(path.clone());
        }
    }
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Problem> {
    let io = |e: std::io::Error| file_problem(&dir.display().to_string(), e.to_string());
    let mut entries = fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks, as kubectl does; a dangling link is skipped like a deleted file.
        let Ok(meta) = fs::metadata(&path) else { continue };
        if meta.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads and parses one file.
pub fn read_file(path: &Path) -> Loaded {
    let name = path.display().to_string();
    match fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_FILE_BYTES => {
            return Loaded {
                problems: vec![file_problem(
                    &name,
                    format!("file is {} bytes; the limit is {MAX_FILE_BYTES}", meta.len()),
                )],
                ..Loaded::default()
            };
        }
        Ok(_) => {}
        Err(e) => return Loaded { problems: vec![file_problem(&name, e.to_string())], ..Loaded::default() },
    }
    match fs::read(path) {
        Ok(bytes) => parse(&name, &bytes),
        Err(e) => Loaded { problems: vec![file_problem(&name, e.to_string())], ..Loaded::default() },
    }
}

/// Parses the bytes of one file: YAML (several documents, `---` separated) or, for `.json`
/// files, JSON. `kind: List` documents are unpacked.
pub fn parse(file: &str, bytes: &[u8]) -> Loaded {
    let mut loaded = Loaded::default();
    if bytes.len() as u64 > MAX_FILE_BYTES {
        loaded.problems.push(file_problem(file, format!("file is larger than {MAX_FILE_BYTES} bytes")));
        return loaded;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            loaded.problems.push(file_problem(file, format!("not UTF-8 text: {e}")));
            return loaded;
        }
    };
    let docs = if file.ends_with(".json") {
        serde_json::from_str::<Value>(text)
            .map(|v| vec![v])
            .map_err(|e| format!("invalid JSON: {e}"))
    } else {
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! {
                max_documents: MAX_DOCUMENTS,
                max_depth: MAX_DEPTH,
                max_events: 100_000_000,
                max_nodes: 50_000_000,
            },
            with_snippet: false,
        };
        serde_saphyr::from_multiple_with_options::<Value>(text, options)
            .map_err(|e| format!("invalid YAML: {}", one_line(&e.to_string())))
    };
    let docs = match docs {
        Ok(d) => d,
        Err(message) => {
            loaded.problems.push(file_problem(file, message));
            return loaded;
        }
    };
    let file: Arc<str> = file.into();
    let several = docs.iter().filter(|d| !d.is_null()).count() > 1;
    for (i, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue; // an empty document, e.g. after a trailing `---`
        }
        let origin = Origin { file: file.clone(), doc: several.then_some(i + 1) };
        document(&origin, doc, &mut loaded, true);
    }
    loaded
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// One document: a single object, or a `List` of them.
fn document(origin: &Origin, mut doc: Value, loaded: &mut Loaded, lists_allowed: bool) {
    let api_version = str_at(&doc, &["apiVersion"]).unwrap_or_default().to_owned();
    let kind = str_at(&doc, &["kind"]).unwrap_or_default().to_owned();
    let name = str_at(&doc, &["metadata", "name"]).unwrap_or_default().to_owned();
    let namespace = str_at(&doc, &["metadata", "namespace"]).map(str::to_owned);
    let shown = |kind: &str| {
        let namespaced = Kind::from_name(kind).is_none_or(Kind::namespaced);
        let ns = namespaced.then(|| namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE));
        ObjectRef::new(if kind.is_empty() { "<no kind>" } else { kind }, ns, name.clone())
    };
    let error = |field: &str, message: String| {
        origin.problem(Severity::Error, Some(shown(&kind)), field, message)
    };

    if !doc.is_object() {
        loaded.problems.push(origin.problem(
            Severity::Error,
            None,
            "",
            "a document must be a mapping (an object), not a scalar or a sequence",
        ));
        return;
    }
    if api_version.is_empty() {
        loaded.problems.push(error("apiVersion", "Required value".into()));
        return;
    }
    if kind.is_empty() {
        loaded.problems.push(error("kind", "Required value".into()));
        return;
    }

    if kind == "List" && api_version == "v1" && lists_allowed {
        let items = match doc.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                loaded.problems.push(error("items", "must be a list of objects".into()));
                return;
            }
        };
        for item in items {
            document(origin, item, loaded, false);
        }
        return;
    }

    let Some(known) = Kind::from_name(&kind) else {
        loaded.problems.push(origin.problem(
            Severity::Warning,
            Some(shown(&kind)),
            "kind",
            format!("kind {kind} ({api_version}) is not one ferry reads; ignored"),
        ));
        return;
    };
    if api_version != known.api_version() {
        loaded.problems.push(error(
            "apiVersion",
            format!(
                "Unsupported value: \"{api_version}\": {kind} is served as \"{}\"",
                known.api_version()
            ),
        ));
        return;
    }

    let object = match known {
        Kind::Namespace => decode(doc).map(Object::Namespace),
        Kind::Service => decode(doc).map(Object::Service),
        Kind::Endpoints => decode(doc).map(Object::Endpoints),
        Kind::EndpointSlice => decode(doc).map(Object::EndpointSlice),
        Kind::Pod => decode(doc).map(Object::Pod),
        Kind::ReplicaSet => decode(doc).map(Object::ReplicaSet),
        Kind::Deployment => decode(doc).map(Object::Deployment),
        Kind::IngressClass => decode(doc).map(Object::IngressClass),
        Kind::Ingress => decode(doc).map(Object::Ingress),
        Kind::Secret => decode(doc).map(Object::Secret),
    };
    match object {
        Ok(mut object) => {
            normalize(&mut object);
            loaded.manifests.push(Manifest { origin: origin.clone(), object });
        }
        Err((field, message)) => loaded.problems.push(error(&field, message)),
    }
}

/// Decodes a value into its exact type, reporting the failing field in API-server style.
fn decode<T: DeserializeOwned>(value: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut field = field_path(e.path().iter());
        let message = e.inner().to_string();
        // serde says "missing field `x`"; the API server says "x: Required value".
        if let Some(missing) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            push_key(&mut field, missing);
            return (field, "Required value".to_owned());
        }
        (field, format!("Invalid value: {message}"))
    })
}

fn push_key(field: &mut String, key: &str) {
    // Map keys that are not identifiers print in brackets: `data[tls.crt]`.
    if key.contains(['.', '/']) {
        field.push_str(&format!("[{key}]"));
    } else {
        if !field.is_empty() {
            field.push('.');
        }
        field.push_str(key);
    }
}

fn field_path<'a>(segments: impl Iterator<Item = &'a Segment>) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => push_key(&mut out, key),
            Segment::Enum { variant } => push_key(&mut out, variant),
            Segment::Unknown => push_key(&mut out, "?"),
        }
    }
    out
}

/// What the API server does on write: the default namespace for namespaced kinds, none for
/// cluster-scoped ones, and a Secret's `stringData` merged over its `data`.
fn normalize(object: &mut Object) {
    let namespaced = object.kind().namespaced();
    let meta = object.metadata_mut();
    if !namespaced {
        meta.namespace = None;
    } else if meta.namespace.as_deref().is_none_or(str::is_empty) {
        meta.namespace = Some(DEFAULT_NAMESPACE.to_owned());
    }
    if let Object::Secret(secret) = object
        && let Some(string_data) = secret.string_data.take()
    {
        let data = secret.data.get_or_insert_with(Default::default);
        for (k, v) in string_data {
            data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
        }
    }
}

#[cfg(test)]
mod tests;
