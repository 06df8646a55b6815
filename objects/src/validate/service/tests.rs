//! Service ports are unique by (port, protocol), as the API server's `ValidateService` says.

use crate::{manifest, validate};

fn problems(spec: &str) -> Vec<String> {
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: kube-dns, namespace: kube-system}}\nspec: {spec}\n"
    );
    let loaded = manifest::parse("t.yaml", yaml.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded
        .manifests
        .iter()
        .flat_map(validate::object)
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn one_port_number_on_two_protocols_is_valid() {
    assert_eq!(
        problems(
            "{clusterIP: 10.96.0.10, ports: [{name: dns, port: 53, protocol: UDP}, \
             {name: dns-tcp, port: 53, protocol: TCP}, {name: metrics, port: 9153, protocol: TCP}]}"
        ),
        Vec::<String>::new()
    );
}

#[test]
fn the_same_port_and_protocol_twice_is_a_duplicate() {
    assert_eq!(
        problems(
            "{ports: [{name: dns, port: 53, protocol: UDP}, {name: dns2, port: 53, protocol: UDP}]}"
        ),
        ["t.yaml: Service kube-system/kube-dns: spec.ports[1].port: Duplicate value: 53"]
    );
}

#[test]
fn node_ports_are_unique_by_node_port_and_protocol() {
    // The API server gives a TCP and a UDP port the same node port when it allocates them.
    assert_eq!(
        problems(
            "{type: NodePort, ports: [{name: dns, port: 53, protocol: UDP, nodePort: 30053}, \
             {name: dns-tcp, port: 53, protocol: TCP, nodePort: 30053}]}"
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        problems(
            "{type: NodePort, ports: [{name: a, port: 53, nodePort: 30053}, \
             {name: b, port: 54, nodePort: 30053}]}"
        ),
        ["t.yaml: Service kube-system/kube-dns: spec.ports[1].nodePort: Duplicate value: 30053"]
    );
}
