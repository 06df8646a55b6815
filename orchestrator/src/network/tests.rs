#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use super::*;

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

#[test]
fn names_are_derived_from_the_pod_range_and_fit_linux_interface_names() {
    let names = Names::of(cidr("10.244.0.0/16"));
    assert_eq!(names, Names::of(cidr("10.244.0.0/16")), "stable");
    assert_eq!(names.id.len(), 8);
    assert!(names.id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(names.bridge, format!("fbr-{}", names.id));
    assert_eq!(names.table, format!("ferry_{}", names.id));
    assert_eq!(
        names.lock,
        Path::new(&format!("/run/ferry/pod-network-{}.lock", names.id))
    );
    let ip = Ipv4Addr::new(10, 244, 255, 254);
    assert_eq!(
        names.netns(ip),
        format!("ferry-{}-10.244.255.254", names.id)
    );
    let veth = names.veth(ip);
    assert_eq!(veth, format!("fv{}0af4fffe", &names.id[..5]));
    // IFNAMSIZ is 16 with the NUL: at most 15 bytes.
    assert!(
        veth.len() <= 15 && names.bridge.len() <= 15,
        "{veth} {}",
        names.bridge
    );
    assert_eq!(names.veth(Ipv4Addr::new(255, 255, 255, 255)).len(), 15);

    // Another instance's range: other names everywhere.
    let other = Names::of(cidr("10.245.0.0/16"));
    assert_ne!(other.id, names.id);
    assert_ne!(other.bridge, names.bridge);
    assert_ne!(other.table, names.table);
    assert_ne!(other.netns(ip), names.netns(ip));
    assert_ne!(other.veth(ip), names.veth(ip));
}

#[test]
fn fnv1a_is_the_reference_function() {
    // Test vectors of the FNV reference (http://www.isthe.com/chongo/tech/comp/fnv/).
    assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
    assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
    assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
}

#[test]
fn netns_mode_takes_routable_ipv4_ranges_only() {
    assert!(check_pod_cidr(cidr("10.244.0.0/16")).is_ok());
    assert!(check_pod_cidr(cidr("192.168.7.0/30")).is_ok());
    let loopback = check_pod_cidr(cidr("127.1.0.0/16"))
        .unwrap_err()
        .to_string();
    assert!(
        loopback.starts_with("--pod-cidr 127.1.0.0/16: --pod-network netns needs a routable private range, not loopback"),
        "{loopback}"
    );
    let v6 = check_pod_cidr(cidr("fd00:10::/64"))
        .unwrap_err()
        .to_string();
    assert!(
        v6.contains("--pod-cidr fd00:10::/64") && v6.contains("IPv4 pod ranges only"),
        "{v6}"
    );
    let small = check_pod_cidr(cidr("10.0.0.0/31")).unwrap_err().to_string();
    assert!(small.contains("too small"), "{small}");
}

#[test]
fn auto_is_netns_where_namespaces_can_be_made_else_loopback() {
    let yes = || Ok(());
    let no = || Err("not permitted".to_owned());
    let netns_default = cidr("10.244.0.0/16");

    let c = choose(Mode::Auto, None, yes).unwrap();
    assert_eq!((c.network, c.pod_cidr), (PodNetwork::Netns, netns_default));
    assert!(c.why.contains("may create network namespaces"), "{}", c.why);

    let c = choose(Mode::Auto, None, no).unwrap();
    assert_eq!(
        (c.network, c.pod_cidr),
        (PodNetwork::Loopback, Cidr::V4_LOOPBACK_PODS)
    );
    assert!(
        c.why
            .contains("cannot create network namespaces (not permitted)"),
        "{}",
        c.why
    );

    // A range on loopback says which mode is meant, without trying anything.
    let c = choose(Mode::Auto, Some(cidr("127.9.0.0/16")), || {
        panic!("not tried")
    })
    .unwrap();
    assert_eq!(
        (c.network, c.pod_cidr),
        (PodNetwork::Loopback, cidr("127.9.0.0/16"))
    );

    let c = choose(Mode::Auto, Some(cidr("10.9.0.0/16")), yes).unwrap();
    assert_eq!(
        (c.network, c.pod_cidr),
        (PodNetwork::Netns, cidr("10.9.0.0/16"))
    );
    let e = choose(Mode::Auto, Some(cidr("10.9.0.0/16")), no)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "--pod-cidr 10.9.0.0/16 is not on loopback, which takes --pod-network netns, and ferry cannot create network namespaces here: not permitted"
    );
}

#[test]
fn explicit_modes_keep_their_own_defaults_and_checks() {
    let c = choose(Mode::Loopback, None, || panic!("not tried")).unwrap();
    assert_eq!(
        (c.network, c.pod_cidr),
        (PodNetwork::Loopback, Cidr::V4_LOOPBACK_PODS)
    );
    let c = choose(Mode::Netns, None, || Ok(())).unwrap();
    assert_eq!(
        (c.network, c.pod_cidr),
        (PodNetwork::Netns, cidr("10.244.0.0/16"))
    );
    let e = choose(Mode::Netns, None, || Err("no CAP_NET_ADMIN".to_owned()))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "--pod-network netns: ferry cannot create network namespaces here: no CAP_NET_ADMIN"
    );
    assert!(matches!(
        choose(Mode::Netns, Some(cidr("127.1.0.0/16")), || Ok(())),
        Err(Error::LoopbackPodCidr(_))
    ));
}

#[test]
fn the_gateway_is_the_first_address_of_the_range() {
    assert_eq!(
        gateway(cidr("10.244.0.0/16")),
        Some(Ipv4Addr::new(10, 244, 0, 1))
    );
    assert_eq!(gateway(cidr("fd00::/64")), None);
}

#[test]
fn ranges_overlap_when_one_holds_the_other() {
    assert!(overlaps(cidr("10.0.0.0/8"), cidr("10.244.0.0/16")));
    assert!(overlaps(cidr("10.244.0.0/16"), cidr("10.0.0.0/8")));
    assert!(overlaps(cidr("10.244.0.0/16"), cidr("10.244.0.0/16")));
    assert!(!overlaps(cidr("10.244.0.0/16"), cidr("10.245.0.0/16")));
}

#[test]
fn the_table_drops_and_counts_what_pods_send_beyond_the_node_and_masquerades_nothing() {
    let names = Names::of(cidr("10.244.0.0/16"));
    let script = nft_script(&names, cidr("10.244.0.0/16"), cidr("10.96.0.0/12"));
    let (t, b) = (&names.table, &names.bridge);
    let expected = format!(
        "table inet {t} {{}}\n\
         delete table inet {t}\n\
         table inet {t} {{\n\
         \tchain pod_martians {{\n\
         \t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\tiifname \"{b}\" ip daddr 127.0.0.0/8 counter drop comment \"the node's loopback, reachable only through a Service\"\n\
         \t}}\n\
         \tchain pod_egress {{\n\
         \t\ttype filter hook prerouting priority filter; policy accept;\n\
         \t\tiifname \"{b}\" ip daddr 10.244.0.0/16 accept\n\
         \t\tiifname \"{b}\" ip daddr 10.96.0.0/12 accept\n\
         \t\tiifname \"{b}\" fib daddr type {{ local, broadcast, multicast }} accept\n\
         \t\tiifname \"{b}\" ip6 daddr fe80::/10 accept\n\
         \t\tiifname \"{b}\" counter drop comment \"pod traffic beyond the node\"\n\
         \t}}\n\
         }}\n"
    );
    assert_eq!(script, expected);
    assert!(!script.contains("masquerade") && !script.contains("snat"));
}

#[test]
fn the_bridge_holds_the_gateway_address() {
    let names = Names::of(cidr("10.244.0.0/16"));
    let b = &names.bridge;
    assert_eq!(
        bridge_lines(&names, cidr("10.244.0.0/16"), cidr("10.96.0.0/16")),
        [
            format!("link add {b} type bridge"),
            format!("addr add 10.244.0.1/16 dev {b}"),
            format!("link set {b} up"),
            format!("route add 10.96.0.0/16 dev {b} src 10.244.0.1"),
        ]
    );
}

#[test]
fn a_pods_sandbox_is_a_namespace_and_a_veth_pair_into_the_bridge() {
    let node_names = Names::of(cidr("10.244.0.0/16"));
    let ip = Ipv4Addr::new(10, 244, 0, 7);
    let sandbox = Sandbox {
        netns: node_names.netns(ip),
        veth: node_names.veth(ip),
        ip,
        resolv_conf: None,
        interception: None,
        nft: PathBuf::from("/bin/false"),
        gateway: Ipv4Addr::new(10, 244, 0, 1),
        bridge: node_names.bridge.clone(),
        program: PathBuf::from("/bin/false"),
        // Nothing was made: nothing to remove when it is dropped.
        torn_down: AtomicBool::new(true),
    };
    let (ns, veth, br) = (&sandbox.netns, &sandbox.veth, &node_names.bridge);
    assert_eq!(
        sandbox.node_lines(),
        [
            format!("netns add {ns}"),
            format!("link add {veth} type veth peer name eth0 netns {ns}"),
            format!("link set {veth} master {br} up"),
            format!("link set dev {veth} type bridge_slave hairpin on"),
        ]
    );
    assert_eq!(
        sandbox.pod_lines(),
        [
            "link set lo up",
            "addr add 10.244.0.7/32 dev eth0",
            "link set eth0 up",
            "route add 10.244.0.1 dev eth0 scope link",
            "route add default via 10.244.0.1 dev eth0",
        ]
    );
    assert_eq!(
        sandbox.teardown_lines(),
        [format!("link del {veth}"), format!("netns del {ns}")]
    );
}

#[test]
fn links_and_routes_are_read_from_ip_output() {
    assert_eq!(
        link_name("7: fvff1520afa0002@if2: <BROADCAST,MULTICAST,UP> mtu 1500"),
        Some("fvff1520afa0002")
    );
    assert_eq!(
        link_name("3: fbr-ff15222c: <BROADCAST> mtu 1500"),
        Some("fbr-ff15222c")
    );
    assert_eq!(
        route_of("10.250.0.0/24 dev fbr-ff15222c proto kernel scope link src 10.250.0.1"),
        Some(("10.250.0.0/24", "fbr-ff15222c"))
    );
    assert_eq!(route_of("default via 172.17.0.1 dev eth0"), None);
    assert_eq!(
        route_of("192.0.2.7 via 172.17.0.1 dev eth0"),
        Some(("192.0.2.7", "eth0"))
    );
}

/// Checked before anything on the machine is touched (no root needed to get these).
#[test]
fn setup_refuses_unfit_ranges_before_touching_the_machine() {
    let e = Node::setup(cidr("10.96.0.0/12"), cidr("10.100.0.0/16"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "--pod-cidr 10.96.0.0/12 overlaps --service-cidr 10.100.0.0/16"
    );
    assert!(matches!(
        Node::setup(cidr("127.1.0.0/16"), cidr("127.2.0.0/16")),
        Err(Error::LoopbackPodCidr(_))
    ));
    // A Pod's 127.0.0.0/8 is its own: cluster IPs there would never leave it.
    let e = Node::setup(cidr("10.244.0.0/16"), cidr("127.2.0.0/16"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "--service-cidr 127.2.0.0/16: --pod-network netns needs a routable IPv4 range"
        ),
        "{e}"
    );
}

#[test]
fn auto_with_a_loopback_service_range_is_loopback_and_each_mode_has_its_service_range() {
    let (choice, services) =
        choose_with_services(Mode::Auto, None, Some(cidr("127.41.0.0/16")), || Ok(())).unwrap();
    assert_eq!(choice.network, PodNetwork::Loopback);
    assert_eq!(choice.pod_cidr, Cidr::V4_LOOPBACK_PODS);
    assert_eq!(services, cidr("127.41.0.0/16"));
    assert_eq!(
        choice.why,
        "--pod-network auto: --service-cidr 127.41.0.0/16 is on loopback, which netns mode cannot use"
    );
    // Where netns cannot be, the reason is that.
    let (choice, _) = choose_with_services(Mode::Auto, None, Some(cidr("127.41.0.0/16")), || {
        Err("no".into())
    })
    .unwrap();
    assert_eq!(
        choice.why,
        "--pod-network auto: ferry cannot create network namespaces (no)"
    );
    let (choice, services) = choose_with_services(Mode::Auto, None, None, || Ok(())).unwrap();
    assert_eq!(
        (choice.network, services),
        (PodNetwork::Netns, cidr("10.96.0.0/16"))
    );
    let (choice, services) =
        choose_with_services(Mode::Auto, None, None, || Err("no".into())).unwrap();
    assert_eq!(
        (choice.network, services),
        (PodNetwork::Loopback, cidr("127.2.0.0/16"))
    );
}
