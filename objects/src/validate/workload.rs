//! v1 Pod, apps/v1 ReplicaSet and Deployment.

use std::collections::{BTreeMap, BTreeSet};

use ferry_model::name;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Check;
use crate::selector;

pub(super) fn pod(c: &mut Check<'_>, pod: &Pod) {
    match &pod.spec {
        Some(spec) => pod_spec(c, "spec", spec),
        None => c.required("spec"),
    }
    let Some(status) = &pod.status else { return };
    if let Some(ip) = status.pod_ip.as_deref().filter(|s| !s.is_empty()) {
        c.endpoint_ip("status.podIP", ip);
    }
    for (i, ip) in status.pod_ips.iter().flatten().enumerate() {
        let field = format!("status.podIPs[{i}].ip");
        c.endpoint_ip(&field, &ip.ip);
        if i == 0
            && status
                .pod_ip
                .as_deref()
                .is_some_and(|p| !p.is_empty() && p != ip.ip)
        {
            c.invalid(&field, &ip.ip, "must match `status.podIP`");
        }
    }
}

fn pod_spec(c: &mut Check<'_>, at: &str, spec: &PodSpec) {
    if spec.containers.is_empty() {
        c.required(&format!("{at}.containers"));
    }
    let mut names = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    let lists = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", &spec.containers),
    ];
    for (list, containers) in lists {
        for (i, container) in containers.iter().enumerate() {
            let here = format!("{at}.{list}[{i}]");
            self::container(c, &here, container, &mut names, &mut port_names);
        }
    }
    if let Some(h) = spec.hostname.as_deref() {
        c.name(&format!("{at}.hostname"), h, name::dns1123_label);
    }
    if let Some(s) = spec.subdomain.as_deref() {
        c.name(&format!("{at}.subdomain"), s, name::dns1123_label);
    }
    if let Some(p) = spec.restart_policy.as_deref() {
        c.unsupported(
            &format!("{at}.restartPolicy"),
            p,
            &["Always", "OnFailure", "Never"],
        );
    }
    if let Some(g) = spec.termination_grace_period_seconds.filter(|&g| g < 0) {
        c.invalid(
            &format!("{at}.terminationGracePeriodSeconds"),
            &g,
            "must be greater than or equal to 0",
        );
    }
}

fn container<'a>(
    c: &mut Check<'_>,
    at: &str,
    container: &'a Container,
    names: &mut BTreeSet<&'a str>,
    port_names: &mut BTreeSet<&'a str>,
) {
    if container.name.is_empty() {
        c.required(&format!("{at}.name"));
    } else {
        c.name(&format!("{at}.name"), &container.name, name::dns1123_label);
        if !names.insert(&container.name) {
            c.duplicate(&format!("{at}.name"), &container.name);
        }
    }
    for (j, p) in container.ports.iter().flatten().enumerate() {
        let field = |f: &str| format!("{at}.ports[{j}].{f}");
        c.port(&field("containerPort"), p.container_port);
        if let Some(hp) = p.host_port.filter(|&hp| hp != 0) {
            c.port(&field("hostPort"), hp);
        }
        c.protocol(&field("protocol"), p.protocol.as_deref());
        if let Some(n) = p.name.as_deref() {
            c.name(&field("name"), n, name::iana_svc_name);
            if !port_names.insert(n) {
                c.duplicate(&field("name"), &n);
            }
        }
    }
}

/// A workload's selector must select its own template.
fn selector_and_template(
    c: &mut Check<'_>,
    selector: &LabelSelector,
    template: Option<&PodTemplateSpec>,
) {
    let empty = selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty);
    if empty {
        c.invalid(
            "spec.selector",
            &"{}",
            "empty selector is invalid for deployment",
        );
    }
    c.labels("spec.selector.matchLabels", selector.match_labels.as_ref());
    for (i, e) in selector.match_expressions.iter().flatten().enumerate() {
        let at = |f: &str| format!("spec.selector.matchExpressions[{i}].{f}");
        c.name(&at("key"), &e.key, name::qualified_name);
        c.unsupported(
            &at("operator"),
            &e.operator,
            &["In", "NotIn", "Exists", "DoesNotExist"],
        );
        let has_values = e.values.as_ref().is_some_and(|v| !v.is_empty());
        match e.operator.as_str() {
            "In" | "NotIn" if !has_values => c.required(&at("values")),
            "Exists" | "DoesNotExist" if has_values => c.forbidden(
                &at("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            _ => {}
        }
    }
    let Some(template) = template else {
        c.required("spec.template");
        return;
    };
    let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    c.labels("spec.template.metadata.labels", labels);
    if !empty && !selector::matches(selector, labels.unwrap_or(&BTreeMap::new())) {
        c.invalid(
            "spec.template.metadata.labels",
            &labels.cloned().unwrap_or_default(),
            "`selector` does not match template `labels`",
        );
    }
    match &template.spec {
        Some(spec) => {
            pod_spec(c, "spec.template.spec", spec);
            // A controller's Pods run until removed: a Pod that ends would be replaced at
            // once, without back-off, for ever.
            if let Some(p) = spec
                .restart_policy
                .as_deref()
                .filter(|p| matches!(*p, "OnFailure" | "Never"))
            {
                c.unsupported("spec.template.spec.restartPolicy", p, &["Always"]);
            }
        }
        None => c.required("spec.template.spec"),
    }
}

fn non_negative(c: &mut Check<'_>, field: &str, value: Option<i32>) {
    if let Some(v) = value.filter(|&v| v < 0) {
        c.invalid(field, &v, "must be greater than or equal to 0");
    }
}

pub(super) fn replica_set(c: &mut Check<'_>, rs: &ReplicaSet) {
    let Some(spec) = &rs.spec else {
        c.required("spec");
        return;
    };
    non_negative(c, "spec.replicas", spec.replicas);
    non_negative(c, "spec.minReadySeconds", spec.min_ready_seconds);
    selector_and_template(c, &spec.selector, spec.template.as_ref());
}

/// `maxSurge`/`maxUnavailable`: a count or a percentage; returns whether it is zero.
fn int_or_percent(c: &mut Check<'_>, field: &str, v: Option<&IntOrString>, max_100: bool) -> bool {
    match v {
        None => false,
        Some(IntOrString::Int(n)) => {
            non_negative(c, field, Some(*n));
            *n == 0
        }
        Some(IntOrString::String(s)) => {
            match s.strip_suffix('%').and_then(|n| n.parse::<i32>().ok()) {
                Some(p) if p < 0 => c.invalid(field, s, "must be greater than or equal to 0"),
                Some(p) if max_100 && p > 100 => c.invalid(field, s, "must not be greater than 100%"),
                Some(p) => return p == 0,
                None => c.invalid(field, s, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%')"),
            }
            false
        }
    }
}

pub(super) fn deployment(c: &mut Check<'_>, d: &Deployment) {
    let Some(spec) = &d.spec else {
        c.required("spec");
        return;
    };
    non_negative(c, "spec.replicas", spec.replicas);
    non_negative(c, "spec.minReadySeconds", spec.min_ready_seconds);
    non_negative(c, "spec.revisionHistoryLimit", spec.revision_history_limit);
    if let Some(p) = spec.progress_deadline_seconds
        && p <= spec.min_ready_seconds.unwrap_or(0)
    {
        c.invalid(
            "spec.progressDeadlineSeconds",
            &p,
            "must be greater than minReadySeconds",
        );
    }
    selector_and_template(c, &spec.selector, Some(&spec.template));
    let Some(strategy) = &spec.strategy else {
        return;
    };
    let ty = strategy.type_.as_deref().unwrap_or("RollingUpdate");
    c.unsupported("spec.strategy.type", ty, &["RollingUpdate", "Recreate"]);
    let Some(ru) = &strategy.rolling_update else {
        return;
    };
    if ty == "Recreate" {
        c.forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        );
        return;
    }
    let surge0 = int_or_percent(
        c,
        "spec.strategy.rollingUpdate.maxSurge",
        ru.max_surge.as_ref(),
        false,
    );
    let unavailable0 = int_or_percent(
        c,
        "spec.strategy.rollingUpdate.maxUnavailable",
        ru.max_unavailable.as_ref(),
        true,
    );
    if surge0 && unavailable0 {
        c.invalid(
            "spec.strategy.rollingUpdate.maxUnavailable",
            &0,
            "may not be 0 when `maxSurge` is 0",
        );
    }
}
