//! Reading manifests: files and directories to typed objects. All YAML and JSON parsing of
//! user input happens here.
//!
//! Every document is first read into a generic value (YAML 1.2 via `serde-saphyr`, or JSON),
//! then decoded into its exact `k8s-openapi` type with the path of any field that does not fit
//! (`spec.ports[1].port`), so a wrong type reads as the API server would report it. Nothing here
//! panics on any input: sizes and nesting are bounded, and every failure is a [`Problem`].

use std::collections::HashSet;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_model::{ObjectRef, Problem, Severity};
use serde::Serialize;
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
    Origin {
        file: file.into(),
        doc: None,
    }
    .problem(Severity::Error, None, "", message)
}

/// The files a list of `-f` paths names, and a warning for each entry of a directory that is
/// skipped because it is not a regular file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub files: Vec<PathBuf>,
    pub problems: Vec<Problem>,
}

/// What a path is when it is neither a regular file nor a directory, for messages: a named
/// pipe, a socket, a device. Found from the metadata, without opening the path (opening a
/// named pipe blocks until someone writes to it).
fn special_kind(meta: &fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    if t.is_file() || t.is_dir() {
        None
    } else if t.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        Some("not a regular file")
    }
}

fn not_regular(kind: &str) -> String {
    format!("{kind}, not a regular file: ferry reads manifests only from regular files")
}

/// The files a list of `-f` paths names: each file itself, each directory's `*.yaml`, `*.yml`
/// and `*.json` files recursively (hidden files and directories skipped), in a stable order.
/// Only regular files are read (symlinks are followed): a path named directly that is
/// something else (a named pipe, a socket, a device) is an error; one found in a directory is
/// skipped with a warning. No path is opened here.
pub fn files(paths: &[PathBuf]) -> Result<Listing, Box<Problem>> {
    let mut listing = Listing::default();
    for path in paths {
        let name = || path.display().to_string();
        let meta =
            fs::metadata(path).map_err(|e| Box::new(file_problem(&name(), e.to_string())))?;
        if meta.is_dir() {
            walk(path, &mut listing, &mut HashSet::new())?;
        } else if let Some(kind) = special_kind(&meta) {
            return Err(Box::new(file_problem(&name(), not_regular(kind))));
        } else {
            listing.files.push(path.clone());
        }
    }
    listing.files.dedup();
    Ok(listing)
}

/// Walks a directory; `seen` holds the directories already walked, so a symlink that points
/// back up the tree is not followed round.
fn walk(
    dir: &Path,
    listing: &mut Listing,
    seen: &mut HashSet<PathBuf>,
) -> Result<(), Box<Problem>> {
    let io = |e: std::io::Error| Box::new(file_problem(&dir.display().to_string(), e.to_string()));
    if !seen.insert(fs::canonicalize(dir).map_err(io)?) {
        return Ok(());
    }
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
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, listing, seen)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e))
        {
            match special_kind(&meta) {
                None => listing.files.push(path),
                Some(kind) => listing.problems.push(
                    Origin {
                        file: path.display().to_string().into(),
                        doc: None,
                    }
                    .problem(
                        Severity::Warning,
                        None,
                        "",
                        format!("{}; skipped", not_regular(kind)),
                    ),
                ),
            }
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
                    format!(
                        "file is {} bytes; the limit is {MAX_FILE_BYTES}",
                        meta.len()
                    ),
                )],
                ..Loaded::default()
            };
        }
        Ok(_) => {}
        Err(e) => {
            return Loaded {
                problems: vec![file_problem(&name, e.to_string())],
                ..Loaded::default()
            };
        }
    }
    match open_regular(path) {
        // Bounded even when the file grows after its size was checked: `parse` refuses the
        // excess.
        Ok(file) => {
            let mut bytes = Vec::new();
            match file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
                Ok(_) => parse(&name, &bytes),
                Err(e) => Loaded {
                    problems: vec![file_problem(&name, e.to_string())],
                    ..Loaded::default()
                },
            }
        }
        Err(message) => Loaded {
            problems: vec![file_problem(&name, message)],
            ..Loaded::default()
        },
    }
}

/// Opens a regular file for reading, without ever blocking: the type is checked before
/// opening, and the open itself does not wait (`O_NONBLOCK`), so a path swapped for a named
/// pipe in between is opened at once and then refused by the type of what was opened.
fn open_regular(path: &Path) -> Result<fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let meta = fs::metadata(path).map_err(|e| e.to_string())?;
    if let Some(kind) = special_kind(&meta).or(meta.is_dir().then_some("a directory")) {
        return Err(not_regular(kind));
    }
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    match special_kind(&meta).or(meta.is_dir().then_some("a directory")) {
        Some(kind) => Err(not_regular(kind)),
        // O_NONBLOCK means nothing to a regular file's reads: they never wait.
        None => Ok(file),
    }
}

/// Parses the bytes of one file: YAML (several documents, `---` separated) or, for `.json`
/// files, JSON. `kind: List` documents are unpacked.
pub fn parse(file: &str, bytes: &[u8]) -> Loaded {
    let mut loaded = Loaded::default();
    if bytes.len() as u64 > MAX_FILE_BYTES {
        loaded.problems.push(file_problem(
            file,
            format!("file is larger than {MAX_FILE_BYTES} bytes"),
        ));
        return loaded;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            loaded
                .problems
                .push(file_problem(file, format!("not UTF-8 text: {e}")));
            return loaded;
        }
    };
    let file: Arc<str> = file.into();
    if file.ends_with(".json") {
        match serde_json::from_str::<Value>(text) {
            Ok(doc) => document(&Origin { file, doc: None }, doc, &mut loaded, true),
            Err(e) => loaded
                .problems
                .push(file_problem(&file, format!("invalid JSON: {e}"))),
        }
        return loaded;
    }
    let chunks = split_documents(text);
    if chunks.len() > MAX_DOCUMENTS {
        let message = format!("{} documents; the limit is {MAX_DOCUMENTS}", chunks.len());
        loaded.problems.push(file_problem(&file, message));
        return loaded;
    }
    let mut docs = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! {
                max_depth: MAX_DEPTH,
                max_events: 100_000_000,
                max_nodes: 50_000_000,
            },
            with_snippet: false,
        };
        match serde_saphyr::from_multiple_with_options::<Value>(chunk.text, options) {
            Ok(values) => docs.extend(
                values
                    .into_iter()
                    .filter(|v| !v.is_null())
                    .map(|v| (i + 1, v)),
            ),
            Err(e) => {
                let origin = Origin {
                    file: file.clone(),
                    doc: (chunks.len() > 1).then_some(i + 1),
                };
                let message = format!(
                    "invalid YAML (document from line {}): {}",
                    chunk.line,
                    one_line(&e.to_string())
                );
                loaded
                    .problems
                    .push(origin.problem(Severity::Error, None, "", message));
            }
        }
    }
    let several = docs.len() > 1 || !loaded.problems.is_empty();
    for (n, doc) in docs {
        let origin = Origin {
            file: file.clone(),
            doc: several.then_some(n),
        };
        document(&origin, doc, &mut loaded, true);
    }
    loaded
}

/// One document of a YAML stream: its text and the 1-based line it starts on.
#[derive(Debug)]
struct Chunk<'a> {
    text: &'a str,
    line: usize,
}

/// Splits a YAML stream at its `---` markers, so each document is numbered by its place in the
/// file, empty ones (a commented-out object, say) included, and a syntax error in one document
/// does not hide the others. A `---` at the start of a line is always a document marker: YAML
/// forbids it inside content. Text before the first marker is a document only if it holds more
/// than comments.
fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let is_marker = |line: &str| {
        line.strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
    };
    let mut chunks = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 1, 0);
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if is_marker(line.trim_end_matches('\n')) && (offset > 0 || n > 0) {
            chunks.push(Chunk {
                text: &text[start..offset],
                line: start_line,
            });
            (start, start_line) = (offset, n + 1);
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        text: &text[start..],
        line: start_line,
    });
    let has_content = |t: &str| {
        t.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    };
    if chunks.len() > 1 && !has_content(chunks[0].text) {
        chunks.remove(0);
    }
    chunks
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// The kinds that grant access in a cluster (ferry's own, in `configs/kubernetes`): nothing
/// ferry routes by, so they are passed over without the warning other kinds not read get.
/// (ServiceAccounts are read: a Pod's identity names one.)
const ACCESS_KINDS: [(&str, &str); 4] = [
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
];

/// One document: a single object, or a `List` of them.
fn document(origin: &Origin, mut doc: Value, loaded: &mut Loaded, lists_allowed: bool) {
    let api_version = str_at(&doc, &["apiVersion"]).unwrap_or_default().to_owned();
    let kind = str_at(&doc, &["kind"]).unwrap_or_default().to_owned();
    let name = str_at(&doc, &["metadata", "name"])
        .unwrap_or_default()
        .to_owned();
    let namespace = str_at(&doc, &["metadata", "namespace"]).map(str::to_owned);
    let shown = |kind: &str| {
        let namespaced = Kind::from_name(kind).is_none_or(Kind::namespaced);
        let ns = namespaced.then(|| namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE));
        ObjectRef::new(
            if kind.is_empty() { "<no kind>" } else { kind },
            ns,
            name.clone(),
        )
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
        loaded
            .problems
            .push(error("apiVersion", "Required value".into()));
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
                loaded
                    .problems
                    .push(error("items", "must be a list of objects".into()));
                return;
            }
        };
        for item in items {
            document(origin, item, loaded, false);
        }
        return;
    }

    if ACCESS_KINDS.contains(&(api_version.as_str(), kind.as_str())) {
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
    if !known.api_versions().contains(&api_version.as_str()) {
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
        Kind::Namespace => decode(doc).map(|(o, u)| (Object::Namespace(Box::new(o)), u)),
        Kind::Service => decode(doc).map(|(o, u)| (Object::Service(Box::new(o)), u)),
        Kind::Endpoints => decode(doc).map(|(o, u)| (Object::Endpoints(Box::new(o)), u)),
        Kind::EndpointSlice => decode(doc).map(|(o, u)| (Object::EndpointSlice(Box::new(o)), u)),
        Kind::Pod => decode(doc).map(|(o, u)| (Object::Pod(Box::new(o)), u)),
        Kind::ReplicaSet => decode(doc).map(|(o, u)| (Object::ReplicaSet(Box::new(o)), u)),
        Kind::Deployment => decode(doc).map(|(o, u)| (Object::Deployment(Box::new(o)), u)),
        Kind::IngressClass => decode(doc).map(|(o, u)| (Object::IngressClass(Box::new(o)), u)),
        Kind::Ingress => decode(doc).map(|(o, u)| (Object::Ingress(Box::new(o)), u)),
        Kind::Secret => decode(doc).map(|(o, u)| (Object::Secret(Box::new(o)), u)),
        Kind::ServiceAccount => decode(doc).map(|(o, u)| (Object::ServiceAccount(Box::new(o)), u)),
        Kind::AuthorizationPolicy => {
            decode(doc).map(|(o, u)| (Object::AuthorizationPolicy(Box::new(o)), u))
        }
    };
    match object {
        Ok((mut object, unknown)) => {
            for field in unknown {
                // A policy enforced without a field it names would let through what the
                // field was written to stop: refused, not ignored.
                let (severity, message) = if known == Kind::AuthorizationPolicy {
                    (
                        Severity::Error,
                        "unknown field; the policy is refused rather than enforced without it",
                    )
                } else {
                    (
                        Severity::Warning,
                        "unknown field; ignored (kubectl's strict field validation refuses it)",
                    )
                };
                loaded
                    .problems
                    .push(origin.problem(severity, Some(shown(&kind)), field, message));
            }
            normalize(&mut object);
            loaded.manifests.push(Manifest {
                origin: origin.clone(),
                object,
            });
        }
        Err((field, message)) => loaded.problems.push(error(&field, message)),
    }
}

/// Decodes a value into its exact type, reporting the failing field in API-server style, and
/// the paths of the fields the type does not know (typos such as `spec.selctor`).
fn decode<T: DeserializeOwned + Serialize>(
    value: Value,
) -> Result<(T, Vec<String>), (String, String)> {
    let decoded: T = serde_path_to_error::deserialize(&value).map_err(|e| {
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
    })?;
    let mut unknown = Vec::new();
    if let Ok(known) = serde_json::to_value(&decoded) {
        unknown_fields(&value, &known, &mut String::new(), &mut unknown);
    }
    Ok((decoded, unknown))
}

/// The fields of `input` that decoding dropped: present (and not null) in the input, absent
/// from the decoded value written back.
fn unknown_fields(input: &Value, known: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                if v.is_null() {
                    continue;
                }
                let len = path.len();
                push_key(path, key);
                match k.get(key) {
                    Some(kv) => unknown_fields(v, kv, path, out),
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{n}]"));
                unknown_fields(iv, kv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
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
