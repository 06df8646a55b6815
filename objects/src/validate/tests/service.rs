//! v1 Service (`validate/service.rs`).

use super::*;

#[test]
fn valid_services_have_no_problems() {
    check(
        &service("{selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}"),
        &[],
    );
    check(
        &service("{type: NodePort, ports: [{port: 80, nodePort: 30080}]}"),
        &[],
    );
    check(
        &service("{type: ExternalName, externalName: db.example.com.}"),
        &[],
    );
    check(
        &service(
            "{clusterIP: 10.96.0.10, clusterIPs: [10.96.0.10, 'fd00::10'], ipFamilies: [IPv4, IPv6], ports: [{port: 80}]}",
        ),
        &[],
    );
}

#[test]
fn headless_service_without_ports_is_valid() {
    check(&service("{clusterIP: None, selector: {app: web}}"), &[]);
}

#[test]
fn service_spec_required() {
    check(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n",
        &["t.yaml: Service shop/web: spec: Required value"],
    );
}

#[test]
fn service_ports_required() {
    check(
        &service("{selector: {app: web}}"),
        &["t.yaml: Service shop/web: spec.ports: Required value"],
    );
}

#[test]
fn service_port_out_of_range() {
    check(
        &service("{ports: [{port: 70000}]}"),
        &[&format!(
            "t.yaml: Service shop/web: spec.ports[0].port: Invalid value: 70000: {PORT_RANGE}"
        )],
    );
}

#[test]
fn service_port_name_duplicate() {
    check(
        &service("{ports: [{name: http, port: 80}, {name: http, port: 81}]}"),
        &["t.yaml: Service shop/web: spec.ports[1].name: Duplicate value: \"http\""],
    );
}

#[test]
fn service_port_and_protocol_duplicate() {
    check(
        &service(
            "{ports: [{name: a, port: 80}, {name: b, port: 80}, {name: c, port: 80, protocol: UDP}]}",
        ),
        &["t.yaml: Service shop/web: spec.ports[1].port: Duplicate value: 80"],
    );
}

#[test]
fn service_port_name_required_with_several_ports() {
    check(
        &service("{ports: [{port: 80}, {name: https, port: 443}]}"),
        &["t.yaml: Service shop/web: spec.ports[0].name: Required value"],
    );
}

#[test]
fn service_port_name_invalid() {
    check(
        &service("{ports: [{name: HTTP, port: 80}]}"),
        &[&format!(
            "t.yaml: Service shop/web: spec.ports[0].name: Invalid value: \"HTTP\": {DNS1123_LABEL}"
        )],
    );
}

#[test]
fn service_target_port_name_invalid() {
    check(
        &service("{ports: [{port: 80, targetPort: '8080'}]}"),
        &[
            "t.yaml: Service shop/web: spec.ports[0].targetPort: Invalid value: \"8080\": must contain at least one letter (a-z)",
        ],
    );
    check(
        &service("{ports: [{port: 80, targetPort: http--alt}]}"),
        &[
            "t.yaml: Service shop/web: spec.ports[0].targetPort: Invalid value: \"http--alt\": must not contain consecutive hyphens",
        ],
    );
}

#[test]
fn service_target_port_number_out_of_range() {
    check(
        &service("{ports: [{port: 80, targetPort: 70000}]}"),
        &[&format!(
            "t.yaml: Service shop/web: spec.ports[0].targetPort: Invalid value: 70000: {PORT_RANGE}"
        )],
    );
}

#[test]
fn service_protocol_unsupported() {
    check(
        &service("{ports: [{port: 80, protocol: HTTP}]}"),
        &[
            "t.yaml: Service shop/web: spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
        ],
    );
}

#[test]
fn service_app_protocol_invalid() {
    check(
        &service("{ports: [{port: 80, appProtocol: 'h 2'}]}"),
        &[&format!(
            "t.yaml: Service shop/web: spec.ports[0].appProtocol: Invalid value: \"h 2\": {QUALIFIED_NAME}"
        )],
    );
}

#[test]
fn service_type_unsupported() {
    check(
        &service("{type: Internal, ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.type: Unsupported value: \"Internal\": supported values: \"ClusterIP\", \"NodePort\", \"LoadBalancer\", \"ExternalName\"",
        ],
    );
}

#[test]
fn service_external_name_required() {
    check(
        &service("{type: ExternalName}"),
        &["t.yaml: Service shop/web: spec.externalName: Required value"],
    );
}

#[test]
fn service_external_name_invalid() {
    check(
        &service("{type: ExternalName, externalName: db_example.com}"),
        &[&format!(
            "t.yaml: Service shop/web: spec.externalName: Invalid value: \"db_example.com\": {DNS1123_SUBDOMAIN}"
        )],
    );
}

#[test]
fn service_external_name_with_cluster_ip_forbidden() {
    check(
        &service("{type: ExternalName, externalName: db.example.com, clusterIP: 10.96.0.10}"),
        &[
            "t.yaml: Service shop/web: spec.clusterIP: Forbidden: may not be set for ExternalName services",
        ],
    );
}

#[test]
fn service_headless_node_port_invalid() {
    check(
        &service("{type: NodePort, clusterIP: None, ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.clusterIP: Invalid value: \"None\": may not be set to 'None' for NodePort services",
        ],
    );
}

#[test]
fn service_node_port_forbidden_on_cluster_ip() {
    check(
        &service("{ports: [{port: 80, nodePort: 30080}]}"),
        &[
            "t.yaml: Service shop/web: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
        ],
    );
}

#[test]
fn service_node_port_out_of_range() {
    check(
        &service("{type: NodePort, ports: [{port: 80, nodePort: 8080}]}"),
        &[
            "t.yaml: Service shop/web: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767",
        ],
    );
}

#[test]
fn service_cluster_ip_invalid() {
    check(
        &service("{clusterIP: 10.96.0.300, ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.clusterIP: Invalid value: \"10.96.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ],
    );
}

#[test]
fn service_cluster_ips_first_must_match_cluster_ip() {
    check(
        &service("{clusterIP: 10.96.0.10, clusterIPs: [10.96.0.11], ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.clusterIPs[0]: Invalid value: \"10.96.0.11\": must match `spec.clusterIP`",
        ],
    );
}

#[test]
fn service_cluster_ips_same_family() {
    check(
        &service("{clusterIPs: [10.96.0.10, 10.96.0.11], ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.clusterIPs[1]: Invalid value: \"10.96.0.11\": may not have the same IP family as another cluster IP",
        ],
    );
}

#[test]
fn service_cluster_ips_too_many() {
    check(
        &service("{clusterIPs: [10.96.0.10, 'fd00::10', 10.96.0.12], ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.clusterIPs: Too many: 3: must have at most 2 items",
            "t.yaml: Service shop/web: spec.clusterIPs[2]: Invalid value: \"10.96.0.12\": may not have the same IP family as another cluster IP",
        ],
    );
}

#[test]
fn service_cluster_ips_none_must_be_alone() {
    check(
        &service("{clusterIPs: [None, 10.96.0.10], ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.clusterIPs[0]: Invalid value: \"None\": 'None' must be the first and only value",
        ],
    );
}

#[test]
fn service_session_affinity_unsupported() {
    check(
        &service("{sessionAffinity: Cookie, ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.sessionAffinity: Unsupported value: \"Cookie\": supported values: \"None\", \"ClientIP\"",
        ],
    );
}

#[test]
fn service_session_affinity_timeout_out_of_range() {
    let timeout = |t: i64| {
        service(&format!(
            "{{sessionAffinity: ClientIP, sessionAffinityConfig: {{clientIP: {{timeoutSeconds: {t}}}}}, ports: [{{port: 80}}]}}"
        ))
    };
    check(&timeout(1), &[]);
    check(&timeout(86400), &[]);
    check(
        &timeout(0),
        &[
            "t.yaml: Service shop/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400",
        ],
    );
    check(
        &timeout(86401),
        &[
            "t.yaml: Service shop/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400",
        ],
    );
}

#[test]
fn service_session_affinity_timeout_forbidden_without_client_ip() {
    check(
        &service("{sessionAffinityConfig: {clientIP: {timeoutSeconds: 10}}, ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Forbidden: must not be set when `sessionAffinity` is None",
        ],
    );
}

#[test]
fn service_ip_families_unsupported() {
    check(
        &service("{ipFamilies: [IPv5], ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.ipFamilies[0]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\"",
        ],
    );
}

#[test]
fn service_ip_families_duplicate_and_too_many() {
    check(
        &service("{ipFamilies: [IPv4, IPv6, IPv4], ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.ipFamilies: Too many: 3: must have at most 2 items",
            "t.yaml: Service shop/web: spec.ipFamilies[2]: Duplicate value: \"IPv4\"",
        ],
    );
}

#[test]
fn service_ip_family_policy_unsupported() {
    check(
        &service("{ipFamilyPolicy: DualStack, ports: [{port: 80}]}"),
        &[
            "t.yaml: Service shop/web: spec.ipFamilyPolicy: Unsupported value: \"DualStack\": supported values: \"SingleStack\", \"PreferDualStack\", \"RequireDualStack\"",
        ],
    );
}

#[test]
fn service_selector_invalid() {
    check(
        &service("{selector: {app: 'web shop'}, ports: [{port: 80}]}"),
        &[&format!(
            "t.yaml: Service shop/web: spec.selector[app]: Invalid value: \"web shop\": {LABEL_VALUE}"
        )],
    );
}

// Ports are unique by (port, protocol), as the API server's `ValidateService` says: kube-dns
// has 53/UDP and 53/TCP.

/// kube-system/kube-dns with `spec`.
fn kube_dns(spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: kube-dns, namespace: kube-system}}\nspec: {spec}\n"
    )
}

#[test]
fn one_port_number_on_two_protocols_is_valid() {
    check(
        &kube_dns(
            "{clusterIP: 10.96.0.10, ports: [{name: dns, port: 53, protocol: UDP}, \
             {name: dns-tcp, port: 53, protocol: TCP}, {name: metrics, port: 9153, protocol: TCP}]}",
        ),
        &[],
    );
}

#[test]
fn the_same_port_and_protocol_twice_is_a_duplicate() {
    check(
        &kube_dns(
            "{ports: [{name: dns, port: 53, protocol: UDP}, {name: dns2, port: 53, protocol: UDP}]}",
        ),
        &["t.yaml: Service kube-system/kube-dns: spec.ports[1].port: Duplicate value: 53"],
    );
}

#[test]
fn node_ports_are_unique_by_node_port_and_protocol() {
    // The API server gives a TCP and a UDP port the same node port when it allocates them.
    check(
        &kube_dns(
            "{type: NodePort, ports: [{name: dns, port: 53, protocol: UDP, nodePort: 30053}, \
             {name: dns-tcp, port: 53, protocol: TCP, nodePort: 30053}]}",
        ),
        &[],
    );
    check(
        &kube_dns(
            "{type: NodePort, ports: [{name: a, port: 53, nodePort: 30053}, \
             {name: b, port: 54, nodePort: 30053}]}",
        ),
        &["t.yaml: Service kube-system/kube-dns: spec.ports[1].nodePort: Duplicate value: 30053"],
    );
}
