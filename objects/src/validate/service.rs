//! v1 Service.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ferry_model::name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Check;

const TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
/// The API server's default `--service-node-port-range`.
const NODE_PORTS: std::ops::RangeInclusive<i32> = 30000..=32767;
const MAX_AFFINITY_TIMEOUT: i32 = 86400;

pub(super) fn service(c: &mut Check<'_>, svc: &Service) {
    let Some(spec) = &svc.spec else {
        c.required("spec");
        return;
    };
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    c.unsupported("spec.type", ty, &TYPES);
    let headless = spec.cluster_ip.as_deref() == Some("None");

    if ty == "ExternalName" {
        match spec.external_name.as_deref() {
            None | Some("") => c.required("spec.externalName"),
            Some(n) => c.name(
                "spec.externalName",
                n.strip_suffix('.').unwrap_or(n),
                name::dns1123_subdomain,
            ),
        }
        if spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty()) {
            c.forbidden("spec.clusterIP", "may not be set for ExternalName services");
        }
    }
    if headless && matches!(ty, "NodePort" | "LoadBalancer") {
        c.invalid(
            "spec.clusterIP",
            &"None",
            &format!("may not be set to 'None' for {ty} services"),
        );
    }
    cluster_ips(c, spec.cluster_ip.as_deref(), spec.cluster_ips.as_deref());

    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && ty != "ExternalName" && !headless {
        c.required("spec.ports");
    }
    let mut names = BTreeSet::new();
    // A Service port is (port, protocol), and so is a node port: kube-dns has 53/UDP and
    // 53/TCP, and a NodePort Service may give both the same node port.
    let mut pairs = BTreeSet::new();
    let mut node_pairs = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let at = |f: &str| format!("spec.ports[{i}].{f}");
        c.port_name(&at("name"), p.name.as_deref(), ports.len(), &mut names);
        c.port(&at("port"), p.port);
        c.protocol(&at("protocol"), p.protocol.as_deref());
        let protocol = p.protocol.as_deref().unwrap_or("TCP");
        if !pairs.insert((p.port, protocol)) {
            c.duplicate(&at("port"), &p.port);
        }
        match &p.target_port {
            Some(IntOrString::Int(n)) => c.port(&at("targetPort"), *n),
            Some(IntOrString::String(s)) => c.name(&at("targetPort"), s, name::iana_svc_name),
            None => {}
        }
        if let Some(np) = p.node_port.filter(|&np| np != 0) {
            if !node_pairs.insert((np, protocol)) {
                c.duplicate(&at("nodePort"), &np);
            }
            if matches!(ty, "ClusterIP" | "ExternalName") {
                c.forbidden(
                    &at("nodePort"),
                    &format!("may not be used when `type` is '{ty}'"),
                );
            } else if !NODE_PORTS.contains(&np) {
                c.invalid(
                    &at("nodePort"),
                    &np,
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                );
            }
        }
        if let Some(ap) = p.app_protocol.as_deref() {
            c.name(&at("appProtocol"), ap, name::qualified_name);
        }
    }

    if let Some(selector) = &spec.selector {
        c.labels("spec.selector", Some(selector));
    }
    let affinity = spec.session_affinity.as_deref().unwrap_or("None");
    c.unsupported("spec.sessionAffinity", affinity, &["None", "ClientIP"]);
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|a| a.client_ip.as_ref())
        .and_then(|ip| ip.timeout_seconds);
    if let Some(t) = timeout {
        const FIELD: &str = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
        if affinity != "ClientIP" {
            c.forbidden(FIELD, "must not be set when `sessionAffinity` is None");
        } else if !(1..=MAX_AFFINITY_TIMEOUT).contains(&t) {
            c.invalid(FIELD, &t, "must be greater than 0 and less than 86400");
        }
    }

    let families = spec.ip_families.as_deref().unwrap_or_default();
    if families.len() > 2 {
        c.error(
            "spec.ipFamilies",
            format!("Too many: {}: must have at most 2 items", families.len()),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, f) in families.iter().enumerate() {
        c.unsupported(&format!("spec.ipFamilies[{i}]"), f, &["IPv4", "IPv6"]);
        if !seen.insert(f) {
            c.duplicate(&format!("spec.ipFamilies[{i}]"), f);
        }
    }
    if let Some(policy) = spec.ip_family_policy.as_deref() {
        c.unsupported(
            "spec.ipFamilyPolicy",
            policy,
            &["SingleStack", "PreferDualStack", "RequireDualStack"],
        );
    }
}

fn cluster_ips(c: &mut Check<'_>, ip: Option<&str>, ips: Option<&[String]>) {
    let ips = ips.unwrap_or_default();
    if let (Some(ip), Some(first)) = (ip.filter(|s| !s.is_empty()), ips.first())
        && ip != first
    {
        c.invalid("spec.clusterIPs[0]", first, "must match `spec.clusterIP`");
    }
    let written: Vec<(String, &str)> = if ips.is_empty() {
        ip.filter(|s| !s.is_empty())
            .map(|s| ("spec.clusterIP".to_owned(), s))
            .into_iter()
            .collect()
    } else {
        ips.iter()
            .enumerate()
            .map(|(i, s)| (format!("spec.clusterIPs[{i}]"), s.as_str()))
            .collect()
    };
    if written.len() > 2 {
        c.error(
            "spec.clusterIPs",
            format!("Too many: {}: must have at most 2 items", written.len()),
        );
    }
    let mut families = BTreeSet::new();
    for (field, s) in &written {
        if *s == "None" {
            if written.len() > 1 {
                c.invalid(field, s, "'None' must be the first and only value");
            }
            continue;
        }
        match s.parse::<IpAddr>() {
            Ok(addr) => {
                if !families.insert(addr.is_ipv4()) {
                    c.invalid(
                        field,
                        s,
                        "may not have the same IP family as another cluster IP",
                    );
                }
            }
            Err(_) => c.invalid(
                field,
                s,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ),
        }
    }
}
