//! discovery.k8s.io/v1 EndpointSlice and v1 Endpoints (`validate/endpoints.rs`).

use ferry_model::Severity;

use super::*;

fn slice(address_type: &str, endpoints: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: web-1, namespace: shop, labels: {{kubernetes.io/service-name: web}}}}\n\
         addressType: {address_type}\nendpoints: {endpoints}\nports: [{{name: http, port: 8080}}]\n"
    )
}

// EndpointSlice

#[test]
fn valid_slices_have_no_problems() {
    check(
        &slice(
            "IPv4",
            "[{addresses: [10.1.0.1, 10.1.0.2], hostname: web-0, nodeName: node-1}]",
        ),
        &[],
    );
    check(&slice("IPv6", "[{addresses: ['fd00::1']}]"), &[]);
    check(&slice("FQDN", "[{addresses: [web.example.com]}]"), &[]);
}

#[test]
fn slice_address_type_unsupported() {
    check(
        &slice("IPv5", "[{addresses: [10.1.0.1]}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: addressType: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\", \"FQDN\"",
        ],
    );
}

#[test]
fn slice_address_invalid() {
    check(
        &slice("IPv4", "[{addresses: [10.1.0.1, 10.1.0.300]}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[1]: Invalid value: \"10.1.0.300\": must be a valid IP address",
        ],
    );
}

#[test]
fn slice_fqdn_address_invalid() {
    check(
        &slice("FQDN", "[{addresses: [Web.example.com]}]"),
        &[&format!(
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[0]: Invalid value: \"Web.example.com\": {DNS1123_SUBDOMAIN}"
        )],
    );
}

#[test]
fn slice_address_of_the_wrong_family() {
    check(
        &slice("IPv4", "[{addresses: ['fd00::1']}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be an IPv4 address",
        ],
    );
    check(
        &slice("IPv6", "[{addresses: [10.1.0.1]}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[0]: Invalid value: \"10.1.0.1\": must be an IPv6 address",
        ],
    );
}

#[test]
fn slice_link_local_forbidden() {
    check(
        &slice("IPv4", "[{addresses: [169.254.1.1]}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[0]: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16)",
        ],
    );
    check(
        &slice("IPv6", "[{addresses: ['fe80::1']}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[0]: Invalid value: \"fe80::1\": may not be in the link-local range (fe80::/10)",
        ],
    );
}

#[test]
fn slice_unspecified_and_multicast_forbidden() {
    check(
        &slice("IPv4", "[{addresses: [0.0.0.0, 224.0.0.1]}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[0]: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0, ::)",
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses[1]: Invalid value: \"224.0.0.1\": may not be in the multicast range",
        ],
    );
}

/// The one documented difference from the API server: on one machine, apps are reached on
/// loopback, so loopback endpoints are accepted.
#[test]
fn slice_loopback_accepted() {
    check(&slice("IPv4", "[{addresses: [127.0.0.1]}]"), &[]);
    check(&slice("IPv6", "[{addresses: ['::1']}]"), &[]);
}

#[test]
fn slice_without_service_name_label_is_a_warning() {
    let yaml = slice("IPv4", "[{addresses: [10.1.0.1]}]").replace(
        "labels: {kubernetes.io/service-name: web}",
        "labels: {app: web}",
    );
    let all = all(&yaml);
    assert_eq!(
        all.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "t.yaml: EndpointSlice shop/web-1: metadata.labels: no \"kubernetes.io/service-name\" label: this slice belongs to no Service and is not used"
        ]
    );
    assert_eq!(all[0].severity, Severity::Warning);
}

#[test]
fn slice_endpoint_addresses_required() {
    check(
        &slice("IPv4", "[{addresses: []}, {hostname: web-1}]"),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].addresses: Required value",
            "t.yaml: EndpointSlice shop/web-1: endpoints[1].addresses: Required value",
        ],
    );
}

#[test]
fn slice_hostname_invalid() {
    check(
        &slice("IPv4", "[{addresses: [10.1.0.1], hostname: web.0}]"),
        &[&format!(
            "t.yaml: EndpointSlice shop/web-1: endpoints[0].hostname: Invalid value: \"web.0\": {DNS1123_LABEL}"
        )],
    );
}

#[test]
fn slice_port_name_duplicate() {
    let yaml = slice("IPv4", "[{addresses: [10.1.0.1]}]").replace(
        "ports: [{name: http, port: 8080}]",
        "ports: [{name: http, port: 8080}, {name: http, port: 9090}]",
    );
    check(
        &yaml,
        &["t.yaml: EndpointSlice shop/web-1: ports[1].name: Duplicate value: \"http\""],
    );
}

#[test]
fn slice_port_out_of_range() {
    let yaml = slice("IPv4", "[{addresses: [10.1.0.1]}]").replace(
        "ports: [{name: http, port: 8080}]",
        "ports: [{name: http, port: 0}]",
    );
    check(
        &yaml,
        &[&format!(
            "t.yaml: EndpointSlice shop/web-1: ports[0].port: Invalid value: 0: {PORT_RANGE}"
        )],
    );
}

#[test]
fn slice_too_many_endpoints() {
    let endpoints = vec!["{addresses: [10.1.0.1]}"; 1001].join(", ");
    check(
        &slice("IPv4", &format!("[{endpoints}]")),
        &[
            "t.yaml: EndpointSlice shop/web-1: endpoints: Too many: 1001: must have at most 1000 items",
        ],
    );
}

// Endpoints

#[test]
fn valid_endpoints_have_no_problems() {
    check(
        &endpoints(
            "[{addresses: [{ip: 10.1.0.1}, {ip: 127.0.0.1}], notReadyAddresses: [{ip: '::1'}], ports: [{port: 8080}]}]",
        ),
        &[],
    );
}

#[test]
fn endpoints_ip_invalid() {
    check(
        &endpoints(
            "[{addresses: [{ip: 10.1.0.1}], notReadyAddresses: [{ip: web-0}], ports: [{port: 8080}]}]",
        ),
        &[
            "t.yaml: Endpoints shop/web: subsets[0].notReadyAddresses[0].ip: Invalid value: \"web-0\": must be a valid IP address",
        ],
    );
}

#[test]
fn endpoints_port_name_required_with_several_ports() {
    check(
        &endpoints(
            "[{addresses: [{ip: 10.1.0.1}], ports: [{port: 8080}, {name: admin, port: 9090}]}]",
        ),
        &["t.yaml: Endpoints shop/web: subsets[0].ports[0].name: Required value"],
    );
}

#[test]
fn endpoints_port_out_of_range() {
    check(
        &endpoints("[{addresses: [{ip: 10.1.0.1}], ports: [{port: 65536}]}]"),
        &[&format!(
            "t.yaml: Endpoints shop/web: subsets[0].ports[0].port: Invalid value: 65536: {PORT_RANGE}"
        )],
    );
}
