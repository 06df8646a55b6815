//! `security.istio.io` AuthorizationPolicy: what Istio's own validation refuses, and what
//! ferry does not enforce. A field ferry would have to ignore is an error, not a warning: a
//! policy enforced without one of its conditions lets through what it was written to stop.

use ferry_model::policy::check_pattern;

use super::Check;
use crate::authorization_policy::{AuthorizationPolicy, Operation, Rule, Source};

const NOT_ENFORCED: &str =
    "ferry does not enforce this field; the policy is refused rather than enforced without it";

pub(super) fn authorization_policy(c: &mut Check<'_>, p: &AuthorizationPolicy) {
    let spec = &p.spec;
    match spec.action.as_deref() {
        None | Some("ALLOW" | "DENY") => {}
        Some(a @ ("AUDIT" | "CUSTOM")) => c.error(
            "spec.action",
            format!("Unsupported value: {a:?}: ferry enforces \"ALLOW\" and \"DENY\" only"),
        ),
        Some(a) => c.unsupported("spec.action", a, &["ALLOW", "DENY"]),
    }
    for (field, given) in [
        ("spec.provider", spec.provider.is_some()),
        ("spec.targetRef", spec.target_ref.is_some()),
        ("spec.targetRefs", spec.target_refs.is_some()),
    ] {
        if given {
            c.forbidden(field, NOT_ENFORCED);
        }
    }
    if let Some(selector) = &spec.selector {
        c.labels("spec.selector.matchLabels", selector.match_labels.as_ref());
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        self::rule(c, &format!("spec.rules[{i}]"), rule);
    }
}

fn rule(c: &mut Check<'_>, at: &str, rule: &Rule) {
    if rule.when.is_some() {
        c.forbidden(&format!("{at}.when"), NOT_ENFORCED);
    }
    if let Some(from) = &rule.from {
        if from.is_empty() {
            c.invalid(&format!("{at}.from"), &"[]", "must not be empty when given");
        }
        for (j, f) in from.iter().enumerate() {
            let at = format!("{at}.from[{j}].source");
            match &f.source {
                None => c.required(&at),
                Some(s) => source(c, &at, s),
            }
        }
    }
    if let Some(to) = &rule.to {
        if to.is_empty() {
            c.invalid(&format!("{at}.to"), &"[]", "must not be empty when given");
        }
        for (j, t) in to.iter().enumerate() {
            let at = format!("{at}.to[{j}].operation");
            match &t.operation {
                None => c.required(&at),
                Some(o) => operation(c, &at, o),
            }
        }
    }
}

fn patterns(c: &mut Check<'_>, at: &str, name: &str, values: Option<&Vec<String>>) -> bool {
    let Some(values) = values else {
        return false;
    };
    for (k, v) in values.iter().enumerate() {
        let field = format!("{at}.{name}[{k}]");
        if let Err(e) = check_pattern(v) {
            c.invalid(&field, v, &e.to_string());
        } else if name.ends_with("rincipals") && v.starts_with("spiffe://") {
            c.invalid(
                &field,
                v,
                "a principal is written without spiffe:// (cluster.local/ns/NAMESPACE/sa/ACCOUNT)",
            );
        }
    }
    true
}

fn refused(c: &mut Check<'_>, at: &str, fields: &[(&str, bool)]) {
    for (name, given) in fields {
        if *given {
            c.forbidden(&format!("{at}.{name}"), NOT_ENFORCED);
        }
    }
}

fn source(c: &mut Check<'_>, at: &str, s: &Source) {
    let mut any = false;
    any |= patterns(c, at, "principals", s.principals.as_ref());
    any |= patterns(c, at, "notPrincipals", s.not_principals.as_ref());
    any |= patterns(c, at, "namespaces", s.namespaces.as_ref());
    any |= patterns(c, at, "notNamespaces", s.not_namespaces.as_ref());
    let others = [
        ("requestPrincipals", s.request_principals.is_some()),
        ("notRequestPrincipals", s.not_request_principals.is_some()),
        ("ipBlocks", s.ip_blocks.is_some()),
        ("notIpBlocks", s.not_ip_blocks.is_some()),
        ("remoteIpBlocks", s.remote_ip_blocks.is_some()),
        ("notRemoteIpBlocks", s.not_remote_ip_blocks.is_some()),
        ("serviceAccounts", s.service_accounts.is_some()),
        ("notServiceAccounts", s.not_service_accounts.is_some()),
    ];
    refused(c, at, &others);
    if !any && !others.iter().any(|(_, given)| *given) {
        c.invalid(at, &"{}", "must not be empty");
    }
}

fn ports(c: &mut Check<'_>, at: &str, name: &str, values: Option<&Vec<String>>) -> bool {
    let Some(values) = values else {
        return false;
    };
    for (k, v) in values.iter().enumerate() {
        if !v.parse::<u16>().is_ok_and(|p| p > 0) {
            c.invalid(
                &format!("{at}.{name}[{k}]"),
                v,
                "must be a port number between 1 and 65535, inclusive",
            );
        }
    }
    true
}

fn operation(c: &mut Check<'_>, at: &str, o: &Operation) {
    let mut any = false;
    any |= ports(c, at, "ports", o.ports.as_ref());
    any |= ports(c, at, "notPorts", o.not_ports.as_ref());
    any |= patterns(c, at, "methods", o.methods.as_ref());
    any |= patterns(c, at, "notMethods", o.not_methods.as_ref());
    any |= patterns(c, at, "paths", o.paths.as_ref());
    any |= patterns(c, at, "notPaths", o.not_paths.as_ref());
    let others = [
        ("hosts", o.hosts.is_some()),
        ("notHosts", o.not_hosts.is_some()),
    ];
    refused(c, at, &others);
    if !any && !others.iter().any(|(_, given)| *given) {
        c.invalid(at, &"{}", "must not be empty");
    }
}
