//! One test per kind of problem the validators report, each asserting the whole line a user
//! sees: `FILE[:DOC]: KIND NAMESPACE/NAME: FIELD: MESSAGE`. One file per validator under
//! `tests/`; here, what several of them share: the checks, the API server's messages and the
//! objects more than one file writes.

#![allow(clippy::unwrap_used)]

use ferry_model::Problem;

use crate::manifest;

mod across;
mod authorization;
mod endpoints;
mod ingress;
mod ingress_annotations;
mod metadata;
mod secret;
mod service;
mod workload;

/// Parses `yaml` as `t.yaml`, validates every object on its own and all of them together, and
/// returns every problem met (parse problems first).
fn all(yaml: &str) -> Vec<Problem> {
    let loaded = manifest::parse("t.yaml", yaml.as_bytes());
    let mut out = loaded.problems;
    for m in &loaded.manifests {
        out.extend(super::object(m));
    }
    out.extend(super::across(&loaded.manifests));
    out
}

fn problems(yaml: &str) -> Vec<String> {
    all(yaml).iter().map(ToString::to_string).collect()
}

#[track_caller]
fn check(yaml: &str, expected: &[&str]) {
    assert_eq!(problems(yaml), expected, "\n--- input ---\n{yaml}");
}

// The API server's messages for its name rules.
const DNS1035: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or \
    '-', start with an alphabetic character, and end with an alphanumeric character (e.g. \
    'my-name', or 'abc-123')";
const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
    characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', \
    or '123-abc')";
const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
    alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
    (e.g. 'example.com')";
const QUALIFIED_NAME: &str = "name part must consist of alphanumeric characters, '-', '_' or \
    '.', and must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', \
    or '123-abc'), with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric \
    characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
    'MyValue', or 'my_value', or '12345')";
const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";

fn service(spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec: {spec}\n"
    )
}

fn endpoints(subsets: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: web, namespace: shop}}\nsubsets: {subsets}\n"
    )
}

fn pod(rest: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: web-0, namespace: shop}}\n{rest}\n")
}

const BACKEND: &str = "{service: {name: web, port: {number: 80}}}";
