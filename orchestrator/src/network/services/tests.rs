#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ferry_objects::manifest;

use super::*;

fn parse(yaml: &str) -> Vec<Arc<Manifest>> {
    let loaded = manifest::parse("t.yaml", yaml.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded.manifests.into_iter().map(Arc::new).collect()
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

/// A Service `echo` in `demo` with a port `http` 80 -> 8080, and its slice's endpoints as
/// (ip, ready, serving, terminating).
fn echo(spec_extra: &str, endpoints: &[(&str, bool, bool, bool)]) -> String {
    let mut eps = String::new();
    for (ip, ready, serving, terminating) in endpoints {
        eps.push_str(&format!(
            "  - addresses: [\"{ip}\"]\n    conditions: {{ready: {ready}, serving: {serving}, terminating: {terminating}}}\n"
        ));
    }
    if eps.is_empty() {
        eps.push_str("  []\n");
    }
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: echo, namespace: demo}}\nspec:\n  clusterIP: 10.96.0.20\n  selector: {{app: echo}}\n  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n{spec_extra}\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: echo-abcde\n  namespace: demo\n  labels: {{kubernetes.io/service-name: echo}}\naddressType: IPv4\nports:\n- {{name: http, port: 8080, protocol: TCP}}\nendpoints:\n{eps}"
    )
}

fn ports_of(yaml: &str) -> Vec<ServicePort> {
    let (ports, problems) = ServicePort::from_manifests(&parse(yaml), cidr("10.96.0.0/16"), None);
    assert!(problems.is_empty(), "{problems:?}");
    ports
}

fn addrs(port: &ServicePort) -> Vec<String> {
    port.endpoints.iter().map(ToString::to_string).collect()
}

#[test]
fn a_port_sends_to_its_ready_endpoints_only() {
    let ports = ports_of(&echo(
        "",
        &[
            ("10.244.0.6", true, true, false),
            ("10.244.0.5", true, true, false),
            ("10.244.0.7", false, false, false),
            ("10.244.0.8", false, true, true),
        ],
    ));
    assert_eq!(ports.len(), 1);
    let p = &ports[0];
    assert_eq!(
        (p.cluster_ip, p.port, p.protocol, p.port_name.as_str()),
        (Ipv4Addr::new(10, 96, 0, 20), 80, Protocol::Tcp, "http")
    );
    assert_eq!(addrs(p), ["10.244.0.5:8080", "10.244.0.6:8080"]);
    assert_eq!((p.node_port, p.affinity), (None, None));
}

#[test]
fn serving_terminating_endpoints_are_the_fallback_when_none_is_ready() {
    let ports = ports_of(&echo(
        "",
        &[
            ("10.244.0.7", false, false, false),
            ("10.244.0.8", false, true, true),
            ("10.244.0.9", false, false, true),
        ],
    ));
    assert_eq!(addrs(&ports[0]), ["10.244.0.8:8080"]);
    let none = ports_of(&echo("", &[("10.244.0.7", false, false, false)]));
    assert!(none[0].endpoints.is_empty());
}

#[test]
fn client_ip_affinity_takes_its_timeout_or_kubernetes_default() {
    let given = ports_of(&echo(
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n",
        &[("10.244.0.5", true, true, false)],
    ));
    assert_eq!(given[0].affinity, Some(60));
    let default = ports_of(&echo(
        "  sessionAffinity: ClientIP\n",
        &[("10.244.0.5", true, true, false)],
    ));
    assert_eq!(default[0].affinity, Some(10800));
}

#[test]
fn services_outside_the_range_headless_and_external_names_are_not_served() {
    let outside =
        echo("", &[("10.244.0.5", true, true, false)]).replace("10.96.0.20", "127.2.0.20");
    assert!(ports_of(&outside).is_empty());
    let headless = echo("", &[("10.244.0.5", true, true, false)]).replace("10.96.0.20", "None");
    assert!(ports_of(&headless).is_empty());
}

#[test]
fn ipv6_services_are_refused_naming_the_object_and_field() {
    let yaml = echo(
        "  ipFamilies: [IPv4, IPv6]\n  ipFamilyPolicy: PreferDualStack\n",
        &[],
    );
    let (ports, problems) = ServicePort::from_manifests(&parse(&yaml), cidr("10.96.0.0/16"), None);
    assert!(ports.is_empty());
    assert_eq!(problems.len(), 1);
    let shown = problems[0].to_string();
    assert!(
        shown.contains("Service demo/echo")
            && shown.contains("spec.ipFamilies[1]")
            && shown.contains("IPv6 is not supported by ferry's pod network"),
        "{shown}"
    );
}

#[test]
fn the_cluster_dns_service_goes_to_ferrys_listener_while_it_has_no_endpoints() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: kube-dns, namespace: kube-system}\nspec:\n  clusterIP: 10.96.0.10\n  ports:\n  - {name: dns, port: 53, protocol: UDP}\n  - {name: dns-tcp, port: 53, protocol: TCP}\n";
    let dns = ClusterDns {
        ip: Ipv4Addr::new(10, 96, 0, 10),
        listener: "127.0.0.1:5353".parse().unwrap(),
    };
    let (ports, _) = ServicePort::from_manifests(&parse(yaml), cidr("10.96.0.0/16"), Some(dns));
    assert_eq!(ports.len(), 2);
    assert_eq!(
        ports
            .iter()
            .map(|p| (p.protocol, addrs(p)))
            .collect::<Vec<_>>(),
        [
            (Protocol::Udp, vec!["127.0.0.1:5353".to_owned()]),
            (Protocol::Tcp, vec!["127.0.0.1:5353".to_owned()])
        ]
    );
}

fn golden_ports() -> Vec<ServicePort> {
    let mut ports = ports_of(&echo(
        "  type: NodePort\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n",
        &[
            ("10.244.0.5", true, true, false),
            ("10.244.0.6", true, true, false),
        ],
    ));
    ports[0].node_port = Some(30080);
    ports.extend(ports_of(
        &echo("", &[])
            .replace("name: echo", "name: idle")
            .replace("10.96.0.20", "10.96.0.21")
            .replace("service-name: echo", "service-name: idle"),
    ));
    ports
}

const GOLDEN: &str = include_str!("golden.nft");

#[test]
fn the_table_is_kube_proxys_nftables_mode_golden() {
    let ruleset = Ruleset::build(
        "ferry_t_services",
        "fbr-t",
        cidr("10.244.0.0/16"),
        &golden_ports(),
    );
    assert_eq!(ruleset.script(None), GOLDEN);
}

#[test]
fn a_change_is_one_transaction_of_what_differs_and_keeps_the_affinity_sets_that_stay() {
    let before = Ruleset::build(
        "ferry_t_services",
        "fbr-t",
        cidr("10.244.0.0/16"),
        &golden_ports(),
    );
    let after = Ruleset::build(
        "ferry_t_services",
        "fbr-t",
        cidr("10.244.0.0/16"),
        &unready_second(),
    );
    let script = after.script(Some(&before));
    let lines: Vec<&str> = script.lines().take(9).collect();
    assert_eq!(
        lines,
        [
            "flush map ip ferry_t_services no-endpoint-nodeports",
            "flush map ip ferry_t_services no-endpoint-services",
            "flush map ip ferry_t_services service-ips",
            "flush map ip ferry_t_services service-nodeports",
            "flush chain ip ferry_t_services endpoint-demo/echo/tcp/http__10.244.0.6/8080",
            "flush chain ip ferry_t_services service-demo/echo/tcp/http",
            "delete chain ip ferry_t_services endpoint-demo/echo/tcp/http__10.244.0.6/8080",
            "delete set ip ferry_t_services affinity-demo/echo/tcp/http__10.244.0.6/8080-60",
            "table ip ferry_t_services {",
        ]
    );
    assert!(script.contains(
        "numgen random mod 1 vmap { 0 : goto endpoint-demo/echo/tcp/http__10.244.0.5/8080 }"
    ));
    // What stays is left alone: the set of the endpoint that stays keeps its entries, its
    // chain and the base chains are not written again.
    assert!(!script.contains("set affinity-demo/echo/tcp/http__10.244.0.5/8080-60 {"));
    assert!(!script.contains("chain endpoint-demo/echo/tcp/http__10.244.0.5/8080 {"));
    assert!(!script.contains("chain nat-prerouting") && !script.contains("delete table"));
    // Unchanged: the same ruleset, which the node does not write again.
    assert_eq!(
        after,
        Ruleset::build(
            "ferry_t_services",
            "fbr-t",
            cidr("10.244.0.0/16"),
            &unready_second()
        )
    );
    // A table of another name, or no knowledge of what it holds: made anew.
    assert!(
        after
            .script(None)
            .starts_with("table ip ferry_t_services {}\ndelete table")
    );
}

/// The golden ports after 10.244.0.6 turned unready: it leaves the port.
fn unready_second() -> Vec<ServicePort> {
    let mut ports = golden_ports();
    ports[0]
        .endpoints
        .retain(|e| e.ip() != &Ipv4Addr::new(10, 244, 0, 6));
    ports
}

fn nft_or_skip(test: &str) -> Option<std::path::PathBuf> {
    let Some(nft) = super::super::find_program("nft") else {
        eprintln!("skipped {test}: the nft command (nftables) is not installed");
        return None;
    };
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped {test}: nft needs root (CAP_NET_ADMIN)");
        return None;
    }
    Some(nft)
}

/// `nft -c` checks the script against the kernel without changing anything.
#[test]
fn nft_accepts_the_table() {
    let Some(nft) = nft_or_skip("nft_accepts_the_table") else {
        return;
    };
    let full = Ruleset::build(
        "ferry_t_services",
        "fbr-t",
        cidr("10.244.0.0/16"),
        &golden_ports(),
    );
    super::super::run(&nft, &["-c", "-f", "-"], Some(&full.script(None))).unwrap();
}

/// The change is applied for real to a table of its own (what `nft -c` cannot check: that
/// chains are flushed before they are deleted), keeps the affinity entries of the endpoint
/// that stays, and the table then holds what a table made anew would.
#[test]
fn nft_applies_a_change_in_place() {
    let Some(nft) = nft_or_skip("nft_applies_a_change_in_place") else {
        return;
    };
    let table = format!("ferry_test_{}_services", std::process::id());
    let build =
        |ports: &[ServicePort]| Ruleset::build(&table, "fbr-t", cidr("10.244.0.0/16"), ports);
    let (before, after) = (build(&golden_ports()), build(&unready_second()));
    let run = |script: &str| super::super::run(&nft, &["-f", "-"], Some(script));
    let list = || super::super::output(&nft, &["list", "table", "ip", &table]).unwrap();
    run(&before.script(None)).unwrap();
    let stays = "affinity-demo/echo/tcp/http__10.244.0.5/8080-60";
    run(&format!(
        "add element ip {table} {stays} {{ 10.244.0.9 }}\n"
    ))
    .unwrap();
    let changed = run(&after.script(Some(&before)));
    let listed = list();
    let _ = run(&format!("delete table ip {table}\n"));
    changed.unwrap();
    assert!(!listed.contains("10.244.0.6"), "{listed}");
    assert!(listed.contains("numgen random mod 1"), "{listed}");
    let kept = listed
        .split(&format!("set {stays} {{"))
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .unwrap_or_default();
    assert!(kept.contains("10.244.0.9"), "{listed}");
}
