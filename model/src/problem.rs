//! A problem found in user input, located as precisely as the API server would locate it.
//!
//! Every problem prints as one line:
//! `FILE[:DOC]: KIND NAMESPACE/NAME: FIELD: MESSAGE`.
//! `DOC` is the 1-based document number, printed when the file holds more than one document.
//! A problem that belongs to no object (a file that cannot be read, YAML that does not
//! parse) leaves out the object part; one that concerns a whole object leaves out the field.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether a problem stops a change from being accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The change is rejected; the last good snapshot keeps serving.
    Error,
    /// Accepted, but something will not work as written (a route answers 503, say).
    Warning,
}

/// A Kubernetes object named for people: kind, namespace (absent for cluster-scoped kinds), name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: impl Into<String>, namespace: Option<&str>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            namespace: namespace.map(str::to_owned),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.name.is_empty() {
            "<unnamed>"
        } else {
            &self.name
        };
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, name),
            None => write!(f, "{} {}", self.kind, name),
        }
    }
}

/// One problem, with everything needed to find and fix it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Problem {
    pub severity: Severity,
    /// The file, as the user named it (or as found under a directory they named).
    pub file: String,
    /// 1-based document number within a multi-document file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    /// The field, in the API server's path style: `spec.rules[0].http.paths[0].path`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(doc) = self.doc {
            write!(f, ":{doc}")?;
        }
        if let Some(object) = &self.object {
            write!(f, ": {object}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_in_the_documented_shape() {
        let p = Problem {
            severity: Severity::Error,
            file: "configs/shop.yaml".into(),
            doc: Some(2),
            object: Some(ObjectRef::new("Ingress", Some("shop"), "web")),
            field: "spec.rules[0].http.paths[0].path".into(),
            message: "Invalid value: \"foo\": must be an absolute path".into(),
        };
        assert_eq!(
            p.to_string(),
            "configs/shop.yaml:2: Ingress shop/web: spec.rules[0].http.paths[0].path: \
             Invalid value: \"foo\": must be an absolute path"
        );
        let cluster_scoped = Problem {
            doc: None,
            object: Some(ObjectRef::new("IngressClass", None, "ferry")),
            field: "spec.controller".into(),
            message: "Required value".into(),
            ..p
        };
        assert_eq!(
            cluster_scoped.to_string(),
            "configs/shop.yaml: IngressClass ferry: spec.controller: Required value"
        );
    }
}
