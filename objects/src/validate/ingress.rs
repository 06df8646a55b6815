//! networking.k8s.io/v1 Ingress and IngressClass.

use std::net::IpAddr;

use ferry_model::name;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};

use super::Check;

const PATH_TYPES: [&str; 3] = ["Exact", "Prefix", "ImplementationSpecific"];
const INVALID_PATH_SEQUENCES: [&str; 5] = ["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: [&str; 2] = ["/..", "/."];
const MAX_CONTROLLER_LEN: usize = 250;

pub(super) fn ingress(c: &mut Check<'_>, ing: &Ingress) {
    crate::ingress_annotations::read(c, ing);
    let Some(spec) = &ing.spec else {
        c.required("spec");
        return;
    };
    if let Some(class) = spec.ingress_class_name.as_deref() {
        c.name("spec.ingressClassName", class, name::dns1123_subdomain);
    }
    let rules = spec.rules.as_deref().unwrap_or_default();
    if spec.default_backend.is_none() && rules.is_empty() {
        c.error(
            "spec",
            "Invalid value: either `defaultBackend` or `rules` must be specified",
        );
    }
    if let Some(b) = &spec.default_backend {
        backend(c, "spec.defaultBackend", b);
    }
    for (i, rule) in rules.iter().enumerate() {
        if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
            self::host(c, &format!("spec.rules[{i}].host"), host);
        }
        let Some(http) = &rule.http else { continue };
        if http.paths.is_empty() {
            c.required(&format!("spec.rules[{i}].http.paths"));
        }
        for (j, p) in http.paths.iter().enumerate() {
            let at = format!("spec.rules[{i}].http.paths[{j}]");
            path(c, &at, p.path.as_deref().unwrap_or_default(), &p.path_type);
            backend(c, &format!("{at}.backend"), &p.backend);
        }
    }
    for (i, tls) in spec.tls.iter().flatten().enumerate() {
        for (j, h) in tls.hosts.iter().flatten().enumerate() {
            self::host(c, &format!("spec.tls[{i}].hosts[{j}]"), h);
        }
        if let Some(s) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) {
            c.name(
                &format!("spec.tls[{i}].secretName"),
                s,
                name::dns1123_subdomain,
            );
        }
    }
}

fn host(c: &mut Check<'_>, field: &str, host: &str) {
    if host.parse::<IpAddr>().is_ok() {
        c.invalid(field, &host, "must be a DNS name, not an IP address");
    } else if host.contains('*') {
        c.name(field, host, name::wildcard_dns1123_subdomain);
    } else {
        c.name(field, host, name::dns1123_subdomain);
    }
}

fn path(c: &mut Check<'_>, at: &str, path: &str, path_type: &str) {
    let field = format!("{at}.path");
    if !PATH_TYPES.contains(&path_type) {
        if path_type.is_empty() {
            c.required(&format!("{at}.pathType"));
        } else {
            c.unsupported(&format!("{at}.pathType"), path_type, &PATH_TYPES);
        }
        return;
    }
    if !path.is_empty() && !path.starts_with('/') {
        c.invalid(&field, &path, "must be an absolute path");
        return;
    }
    if path_type == "ImplementationSpecific" {
        return;
    }
    if !path.starts_with('/') {
        c.invalid(&field, &path, "must be an absolute path");
        return;
    }
    if let Some(seq) = INVALID_PATH_SEQUENCES.iter().find(|s| path.contains(*s)) {
        c.invalid(&field, &path, &format!("must not contain '{seq}'"));
    } else if let Some(suffix) = INVALID_PATH_SUFFIXES.iter().find(|s| path.ends_with(*s)) {
        c.invalid(&field, &path, &format!("cannot end with '{suffix}'"));
    }
}

fn backend(c: &mut Check<'_>, at: &str, b: &IngressBackend) {
    match (&b.service, &b.resource) {
        (Some(_), Some(_)) => c.invalid(at, &"", "cannot set both resource and service backends"),
        (None, None) => c.invalid(at, &"", "resource or service backend is required"),
        (None, Some(r)) => {
            if r.kind.is_empty() {
                c.required(&format!("{at}.resource.kind"));
            }
            if r.name.is_empty() {
                c.required(&format!("{at}.resource.name"));
            }
        }
        (Some(s), None) => {
            if s.name.is_empty() {
                c.required(&format!("{at}.service.name"));
            } else {
                c.name(&format!("{at}.service.name"), &s.name, name::dns1035_label);
            }
            let port = s.port.as_ref();
            let by_name = port
                .and_then(|p| p.name.as_deref())
                .filter(|n| !n.is_empty());
            let by_number = port.and_then(|p| p.number).filter(|&n| n != 0);
            match (by_name, by_number) {
                (Some(_), Some(_)) => c.invalid(at, &"", "cannot set both port name & port number"),
                (Some(n), None) => {
                    c.name(&format!("{at}.service.port.name"), n, name::iana_svc_name)
                }
                (None, Some(n)) => c.port(&format!("{at}.service.port.number"), n),
                (None, None) => c.error(
                    &format!("{at}.service.port"),
                    "Required value: port name or number is required",
                ),
            }
        }
    }
}

pub(super) fn class(c: &mut Check<'_>, ic: &IngressClass) {
    let controller = ic
        .spec
        .as_ref()
        .and_then(|s| s.controller.as_deref())
        .unwrap_or_default();
    if controller.is_empty() {
        c.required("spec.controller");
        return;
    }
    if controller.len() > MAX_CONTROLLER_LEN {
        c.error(
            "spec.controller",
            format!("Too long: may not be more than {MAX_CONTROLLER_LEN} bytes"),
        );
    }
    let ok = controller.split_once('/').is_some_and(|(domain, path)| {
        name::dns1123_subdomain(domain).is_ok()
            && !path.is_empty()
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&b))
    });
    if !ok {
        c.invalid(
            "spec.controller",
            &controller,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        );
    }
}
