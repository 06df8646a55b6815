//! discovery.k8s.io/v1 EndpointSlice and v1 Endpoints.

use std::collections::BTreeSet;

use ferry_model::name;
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::Check;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;
const MAX_PORTS: usize = 100;

pub(super) fn slice(c: &mut Check<'_>, s: &EndpointSlice) {
    let ty = s.address_type.as_str();
    c.unsupported("addressType", ty, &["IPv4", "IPv6", "FQDN"]);
    if s.endpoints.len() > MAX_ENDPOINTS {
        c.error(
            "endpoints",
            format!(
                "Too many: {}: must have at most {MAX_ENDPOINTS} items",
                s.endpoints.len()
            ),
        );
    }
    for (i, e) in s.endpoints.iter().enumerate() {
        let at = |f: &str| format!("endpoints[{i}].{f}");
        if e.addresses.is_empty() {
            c.required(&at("addresses"));
        }
        if e.addresses.len() > MAX_ADDRESSES {
            c.error(
                &at("addresses"),
                format!(
                    "Too many: {}: must have at most {MAX_ADDRESSES} items",
                    e.addresses.len()
                ),
            );
        }
        for (j, a) in e.addresses.iter().enumerate() {
            let field = format!("endpoints[{i}].addresses[{j}]");
            match ty {
                "FQDN" => c.name(&field, a, name::dns1123_subdomain),
                "IPv4" | "IPv6" => {
                    if let Some(ip) = c.endpoint_ip(&field, a)
                        && ip.is_ipv4() != (ty == "IPv4")
                    {
                        c.invalid(&field, a, &format!("must be an {ty} address"));
                    }
                }
                _ => {}
            }
        }
        if let Some(h) = e.hostname.as_deref() {
            c.name(&at("hostname"), h, name::dns1123_label);
        }
        if let Some(n) = e.node_name.as_deref() {
            c.name(&at("nodeName"), n, name::dns1123_subdomain);
        }
    }
    let ports = s.ports.as_deref().unwrap_or_default();
    if ports.len() > MAX_PORTS {
        c.error(
            "ports",
            format!(
                "Too many: {}: must have at most {MAX_PORTS} items",
                ports.len()
            ),
        );
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let at = |f: &str| format!("ports[{i}].{f}");
        let n = p.name.as_deref().unwrap_or_default();
        if !n.is_empty() {
            c.name(&at("name"), n, name::dns1123_label);
        }
        if !names.insert(n) {
            c.duplicate(&at("name"), &n);
        }
        if let Some(port) = p.port {
            c.port(&at("port"), port);
        }
        c.protocol(&at("protocol"), p.protocol.as_deref());
        if let Some(ap) = p.app_protocol.as_deref() {
            c.name(&at("appProtocol"), ap, name::qualified_name);
        }
    }
    let labels = s.metadata.labels.as_ref();
    if labels.and_then(|l| l.get(SERVICE_NAME_LABEL)).is_none() {
        c.warning(
            "metadata.labels",
            format!(
                "no {SERVICE_NAME_LABEL:?} label: this slice belongs to no Service and is not used"
            ),
        );
    }
}

pub(super) fn endpoints(c: &mut Check<'_>, e: &Endpoints) {
    for (i, subset) in e.subsets.iter().flatten().enumerate() {
        let lists = [
            ("addresses", subset.addresses.as_deref()),
            ("notReadyAddresses", subset.not_ready_addresses.as_deref()),
        ];
        for (list, addresses) in lists {
            for (j, a) in addresses.unwrap_or_default().iter().enumerate() {
                address(c, &format!("subsets[{i}].{list}[{j}]"), a);
            }
        }
        let ports = subset.ports.as_deref().unwrap_or_default();
        let mut names = BTreeSet::new();
        for (k, p) in ports.iter().enumerate() {
            let at = |f: &str| format!("subsets[{i}].ports[{k}].{f}");
            c.port_name(&at("name"), p.name.as_deref(), ports.len(), &mut names);
            c.port(&at("port"), p.port);
            c.protocol(&at("protocol"), p.protocol.as_deref());
        }
    }
}

fn address(c: &mut Check<'_>, field: &str, a: &EndpointAddress) {
    c.endpoint_ip(&format!("{field}.ip"), &a.ip);
    if let Some(h) = a.hostname.as_deref() {
        c.name(&format!("{field}.hostname"), h, name::dns1123_label);
    }
    if let Some(n) = a.node_name.as_deref() {
        c.name(&format!("{field}.nodeName"), n, name::dns1123_subdomain);
    }
}
