use std::net::IpAddr;
use std::sync::Arc;

use ferry_model::{
    Cluster, ClusterKey, Endpoint, Protocol, Service, ServiceEndpoint, ServicePort, ServiceType,
    SessionAffinity, Snapshot, TargetPort,
};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, RecordType};

use super::{Lookup, ZoneIndex};

pub(crate) fn n(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn port(name: &str, number: u16, protocol: Protocol) -> ServicePort {
    ServicePort {
        name: name.into(),
        port: number,
        protocol,
        app_protocol: None,
        target_port: TargetPort::Number(number),
        node_port: None,
    }
}

fn service(ns: &str, name: &str) -> Service {
    Service {
        namespace: ns.into(),
        name: name.into(),
        service_type: ServiceType::ClusterIP,
        cluster_ips: vec![],
        headless: false,
        external_name: None,
        ports: vec![],
        session_affinity: SessionAffinity::None,
        publish_not_ready_addresses: false,
        endpoints: vec![],
    }
}

fn endpoint(addr: &str, ready: bool, hostname: Option<&str>) -> ServiceEndpoint {
    ServiceEndpoint {
        address: ip(addr),
        ready,
        serving: ready,
        terminating: false,
        hostname: hostname.map(String::from),
        node_name: None,
        zone: None,
        target: None,
    }
}

/// A small cluster with one of every kind of Service the spec names.
pub(crate) fn cluster() -> Snapshot {
    let mut web = service("shop", "web");
    web.cluster_ips = vec![ip("10.96.0.10"), ip("fd00::10")];
    web.ports = vec![port("http", 80, Protocol::TCP), port("", 81, Protocol::TCP)];

    let mut dns = service("kube-system", "dns");
    dns.cluster_ips = vec![ip("10.96.0.53")];
    dns.ports = vec![
        port("dns", 53, Protocol::UDP),
        port("dns-tcp", 53, Protocol::TCP),
    ];

    let mut db = service("shop", "db");
    db.headless = true;
    db.ports = vec![port("pg", 5432, Protocol::TCP)];
    db.endpoints = vec![
        endpoint("10.1.0.1", true, Some("db-0")),
        endpoint("10.1.0.2", true, None),
        endpoint("10.1.0.3", false, Some("db-2")),
    ];
    let db_cluster = Cluster {
        key: ClusterKey {
            namespace: "shop".into(),
            service: "db".into(),
            port: 5432,
            protocol: Protocol::TCP,
        },
        port_name: "pg".into(),
        app_protocol: None,
        session_affinity: SessionAffinity::None,
        endpoints: ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
            .iter()
            .map(|a| Endpoint {
                address: ip(a),
                port: 15432,
                ready: *a != "10.1.0.3",
                serving: true,
                terminating: false,
                zone: None,
            })
            .collect(),
    };

    let mut empty = service("shop", "empty");
    empty.headless = true;

    let mut pending = service("shop", "pending");
    pending.ports = vec![port("http", 80, Protocol::TCP)];

    let mut ext = service("shop", "ext");
    ext.service_type = ServiceType::ExternalName;
    ext.external_name = Some("Example.COM".into());

    let mut alias = service("shop", "alias");
    alias.service_type = ServiceType::ExternalName;
    alias.external_name = Some("web.shop.svc.cluster.local".into());

    Snapshot {
        version: 7,
        services: [web, dns, db, empty, pending, ext, alias]
            .map(Arc::new)
            .to_vec(),
        clusters: vec![Arc::new(db_cluster)],
        ..Snapshot::default()
    }
}

fn zone() -> ZoneIndex {
    ZoneIndex::compile(&cluster(), "cluster.local", 30).unwrap()
}

fn answers(z: &ZoneIndex, name: &str, t: RecordType) -> Vec<RData> {
    match z.lookup(&n(name), t) {
        Lookup::Answer { answers, .. } => answers.into_iter().map(|r| r.data).collect(),
        other => panic!("{name} {t}: {other:?}"),
    }
}

#[test]
fn clusterip_service_answers_its_cluster_ips() {
    let z = zone();
    let name = "web.shop.svc.cluster.local.";
    assert_eq!(
        answers(&z, name, RecordType::A),
        vec![RData::A(A("10.96.0.10".parse().unwrap()))]
    );
    assert_eq!(
        answers(&z, name, RecordType::AAAA),
        vec![RData::AAAA(AAAA("fd00::10".parse().unwrap()))]
    );
    assert_eq!(z.lookup(&n(name), RecordType::MX), Lookup::NoData);
}

#[test]
fn names_are_case_insensitive() {
    let z = zone();
    assert_eq!(
        answers(&z, "WEB.Shop.SVC.cluster.LOCAL.", RecordType::A).len(),
        1
    );
}

#[test]
fn srv_for_named_ports_only_with_the_protocol() {
    let z = zone();
    // Two cluster IPs behind one target: CoreDNS's weight is 100 shared by the two pairs.
    let want = RData::SRV(SRV::new(0, 50, 80, n("web.shop.svc.cluster.local.")));
    assert_eq!(
        answers(
            &z,
            "_http._tcp.web.shop.svc.cluster.local.",
            RecordType::SRV
        ),
        vec![want]
    );
    assert_eq!(
        answers(
            &z,
            "_dns._udp.dns.kube-system.svc.cluster.local.",
            RecordType::SRV
        ),
        vec![RData::SRV(SRV::new(
            0,
            100,
            53,
            n("dns.kube-system.svc.cluster.local.")
        ))]
    );
    // A port's protocol is part of the name.
    assert_eq!(
        z.lookup(
            &n("_dns._tcp.dns.kube-system.svc.cluster.local."),
            RecordType::SRV
        ),
        Lookup::NxDomain
    );
    // `_tcp.<svc>` exists (it has a name below it): NODATA, not NXDOMAIN.
    assert_eq!(
        z.lookup(&n("_tcp.web.shop.svc.cluster.local."), RecordType::SRV),
        Lookup::NoData
    );
}

#[test]
fn srv_answers_carry_the_targets_addresses() {
    let z = zone();
    let Lookup::Answer { additionals, .. } = z.lookup(
        &n("_http._tcp.web.shop.svc.cluster.local."),
        RecordType::SRV,
    ) else {
        panic!("no answer");
    };
    let types: Vec<_> = additionals.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, vec![RecordType::A, RecordType::AAAA]);
}

#[test]
fn headless_service_answers_ready_endpoints_and_their_hostnames() {
    let z = zone();
    let mut got = answers(&z, "db.shop.svc.cluster.local.", RecordType::A);
    got.sort_by_key(|d| d.to_string());
    assert_eq!(
        got,
        vec![
            RData::A(A("10.1.0.1".parse().unwrap())),
            RData::A(A("10.1.0.2".parse().unwrap())),
        ],
        "the not-ready endpoint is left out"
    );
    assert_eq!(
        answers(&z, "db-0.db.shop.svc.cluster.local.", RecordType::A),
        vec![RData::A(A("10.1.0.1".parse().unwrap()))]
    );
    // Without a hostname, the address with dashes names it.
    assert_eq!(
        answers(&z, "10-1-0-2.db.shop.svc.cluster.local.", RecordType::A),
        vec![RData::A(A("10.1.0.2".parse().unwrap()))]
    );
    assert_eq!(
        z.lookup(&n("db-2.db.shop.svc.cluster.local."), RecordType::A),
        Lookup::NxDomain
    );
    let mut srv = answers(&z, "_pg._tcp.db.shop.svc.cluster.local.", RecordType::SRV);
    srv.sort_by_key(|d| d.to_string());
    assert_eq!(
        srv,
        vec![
            RData::SRV(SRV::new(
                0,
                50,
                15432,
                n("10-1-0-2.db.shop.svc.cluster.local.")
            )),
            RData::SRV(SRV::new(0, 50, 15432, n("db-0.db.shop.svc.cluster.local."))),
        ],
        "one per ready endpoint, on the endpoint's port"
    );
}

#[test]
fn a_clusterip_service_without_its_ip_yet_exists_with_no_data() {
    let z = zone();
    let name = n("pending.shop.svc.cluster.local.");
    assert_eq!(z.lookup(&name, RecordType::A), Lookup::NoData);
}

/// Spec 2.4.1: "If there are no ready endpoints for the headless Service, the answer should be
/// NXDOMAIN" (the handler adds the SOA, as for every negative answer).
#[test]
fn a_headless_service_without_ready_endpoints_does_not_exist() {
    let z = zone();
    for t in [RecordType::A, RecordType::AAAA, RecordType::SRV] {
        assert_eq!(
            z.lookup(&n("empty.shop.svc.cluster.local."), t),
            Lookup::NxDomain,
            "{t}"
        );
    }
    // The namespace still exists.
    assert_eq!(
        z.lookup(&n("shop.svc.cluster.local."), RecordType::A),
        Lookup::NoData
    );
}

#[test]
fn external_name_is_an_alias() {
    let z = zone();
    match z.lookup(&n("ext.shop.svc.cluster.local."), RecordType::A) {
        Lookup::Alias { cname, target } => {
            assert_eq!(target, n("example.com."));
            assert_eq!(cname.data, RData::CNAME(CNAME(n("example.com."))));
        }
        other => panic!("{other:?}"),
    }
    // Asked for the CNAME itself, it is the answer.
    assert_eq!(
        answers(&z, "ext.shop.svc.cluster.local.", RecordType::CNAME),
        vec![RData::CNAME(CNAME(n("example.com.")))]
    );
}

#[test]
fn reverse_names_of_cluster_ips_and_headless_endpoints() {
    let z = zone();
    assert_eq!(
        answers(&z, "10.0.96.10.in-addr.arpa.", RecordType::PTR),
        vec![RData::PTR(PTR(n("web.shop.svc.cluster.local.")))]
    );
    assert_eq!(
        answers(&z, &Name::from(ip("fd00::10")).to_ascii(), RecordType::PTR),
        vec![RData::PTR(PTR(n("web.shop.svc.cluster.local.")))]
    );
    assert_eq!(
        answers(&z, "1.0.1.10.in-addr.arpa.", RecordType::PTR),
        vec![RData::PTR(PTR(n("db-0.db.shop.svc.cluster.local.")))]
    );
    // Other reverse names are not ours: forwarded.
    assert_eq!(
        z.lookup(&n("1.2.0.192.in-addr.arpa."), RecordType::PTR),
        Lookup::Outside
    );
    assert_eq!(
        z.lookup(&n("in-addr.arpa."), RecordType::PTR),
        Lookup::Outside
    );
}

#[test]
fn pod_names_answer_the_address_they_carry() {
    let z = zone();
    assert_eq!(
        answers(&z, "10-244-1-7.shop.pod.cluster.local.", RecordType::A),
        vec![RData::A(A("10.244.1.7".parse().unwrap()))]
    );
    assert_eq!(
        answers(&z, "fd00--7.shop.pod.cluster.local.", RecordType::AAAA),
        vec![RData::AAAA(AAAA("fd00::7".parse().unwrap()))]
    );
    assert_eq!(
        z.lookup(&n("10-244-1-7.shop.pod.cluster.local."), RecordType::AAAA),
        Lookup::NoData
    );
    for bad in [
        "10-244-1.shop.pod.cluster.local.",
        "10-244-1-300.shop.pod.cluster.local.",
        "x.10-244-1-7.shop.pod.cluster.local.",
        "10-244-1-7.Bad_NS.pod.cluster.local.",
        // CoreDNS: pod names only in a namespace that exists.
        "10-244-1-7.nowhere.pod.cluster.local.",
        "nowhere.pod.cluster.local.",
    ] {
        assert_eq!(z.lookup(&n(bad), RecordType::A), Lookup::NxDomain, "{bad}");
    }
}

#[test]
fn dns_version_soa_and_structure() {
    let z = zone();
    assert_eq!(
        answers(&z, "dns-version.cluster.local.", RecordType::TXT),
        vec![RData::TXT(TXT::new(vec!["1.1.0".into()]))]
    );
    match &answers(&z, "cluster.local.", RecordType::SOA)[0] {
        RData::SOA(soa) => {
            assert_eq!(soa.serial, 7, "the snapshot version");
            assert_eq!(soa.minimum, 30);
        }
        other => panic!("{other:?}"),
    }
    for ent in [
        "svc.cluster.local.",
        "shop.svc.cluster.local.",
        "pod.cluster.local.",
    ] {
        assert_eq!(z.lookup(&n(ent), RecordType::A), Lookup::NoData, "{ent}");
    }
    assert_eq!(
        z.lookup(&n("nope.shop.svc.cluster.local."), RecordType::A),
        Lookup::NxDomain
    );
    assert_eq!(z.lookup(&n("example.com."), RecordType::A), Lookup::Outside);
}

/// CoreDNS answers ANY in its zone with a "fake A lookup" that only tells NODATA from
/// NXDOMAIN: no records, whatever the name has.
#[test]
fn any_is_nodata_where_the_name_exists_and_nxdomain_where_not() {
    let z = zone();
    for name in [
        "web.shop.svc.cluster.local.",
        "ext.shop.svc.cluster.local.",
        "_http._tcp.web.shop.svc.cluster.local.",
        "10-244-1-7.shop.pod.cluster.local.",
        "cluster.local.",
    ] {
        assert_eq!(
            z.lookup(&n(name), RecordType::ANY),
            Lookup::NoData,
            "{name}"
        );
    }
    for name in [
        "nope.shop.svc.cluster.local.",
        "10-244-1-7.nowhere.pod.cluster.local.",
    ] {
        assert_eq!(
            z.lookup(&n(name), RecordType::ANY),
            Lookup::NxDomain,
            "{name}"
        );
    }
}

#[test]
fn nothing_is_known_before_the_first_snapshot() {
    let z = ZoneIndex::compile(&Snapshot::default(), "cluster.local", 30).unwrap();
    assert_eq!(
        z.lookup(&n("web.shop.svc.cluster.local."), RecordType::A),
        Lookup::NotReady
    );
    assert_eq!(z.lookup(&n("example.com."), RecordType::A), Lookup::Outside);
}

#[test]
fn another_cluster_domain() {
    let z = ZoneIndex::compile(&cluster(), "Corp.Internal.", 5).unwrap();
    match z.lookup(&n("web.shop.svc.corp.internal."), RecordType::A) {
        Lookup::Answer { answers, .. } => assert_eq!(answers[0].ttl, 5),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        z.lookup(&n("web.shop.svc.cluster.local."), RecordType::A),
        Lookup::Outside
    );
}

// --- the cases of issue 12, from the spec and CoreDNS's kubernetes plugin ---------------------

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> RData {
    RData::SRV(SRV::new(priority, weight, port, n(target)))
}

fn sorted(mut v: Vec<RData>) -> Vec<RData> {
    v.sort_by_key(ToString::to_string);
    v
}

fn lookup_answer(z: &ZoneIndex, name: &str, t: RecordType) -> (Vec<RData>, Vec<(String, RData)>) {
    match z.lookup(&n(name), t) {
        Lookup::Answer {
            answers,
            additionals,
        } => (sorted(answers.into_iter().map(|r| r.data).collect()), {
            let mut a: Vec<_> = additionals
                .into_iter()
                .map(|r| (r.name.to_ascii(), r.data))
                .collect();
            a.sort_by_key(|(n, d)| (n.clone(), d.to_string()));
            a
        }),
        other => panic!("{name} {t}: {other:?}"),
    }
}

/// kube-system/kube-dns as every cluster has it, and default/kubernetes.
fn kube_system() -> Snapshot {
    let mut kube_dns = service("kube-system", "kube-dns");
    kube_dns.cluster_ips = vec![ip("10.96.0.10")];
    kube_dns.ports = vec![
        port("dns", 53, Protocol::UDP),
        port("dns-tcp", 53, Protocol::TCP),
        port("metrics", 9153, Protocol::TCP),
    ];
    kube_dns.endpoints = vec![endpoint("10.244.0.5", true, None)];
    let mut kubernetes = service("default", "kubernetes");
    kubernetes.cluster_ips = vec![ip("10.96.0.1")];
    kubernetes.ports = vec![port("https", 443, Protocol::TCP)];
    Snapshot {
        version: 1,
        services: vec![Arc::new(kubernetes), Arc::new(kube_dns)],
        namespaces: ["default", "empty", "kube-system"]
            .map(String::from)
            .to_vec(),
        ..Snapshot::default()
    }
}

/// Issue 12 item 1: `53/UDP` `dns` and `53/TCP` `dns-tcp` each answer their own SRV name.
#[test]
fn srv_of_one_port_number_on_two_protocols() {
    let z = ZoneIndex::compile(&kube_system(), "cluster.local", 30).unwrap();
    let target = "kube-dns.kube-system.svc.cluster.local.";
    assert_eq!(
        answers(
            &z,
            "_dns._udp.kube-dns.kube-system.svc.cluster.local.",
            RecordType::SRV
        ),
        [srv(0, 100, 53, target)]
    );
    assert_eq!(
        answers(
            &z,
            "_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local.",
            RecordType::SRV
        ),
        [srv(0, 100, 53, target)]
    );
    assert_eq!(
        answers(
            &z,
            "_metrics._tcp.kube-dns.kube-system.svc.cluster.local.",
            RecordType::SRV
        ),
        [srv(0, 100, 9153, target)]
    );
    for wrong in [
        "_dns._tcp.kube-dns.kube-system.svc.cluster.local.",
        "_dns-tcp._udp.kube-dns.kube-system.svc.cluster.local.",
    ] {
        assert_eq!(
            z.lookup(&n(wrong), RecordType::SRV),
            Lookup::NxDomain,
            "{wrong}"
        );
    }
}

/// CoreDNS: SRV for a Service's own name lists its ports, one record per (target, port)
/// (53/UDP and 53/TCP are one record), weight 100 shared by the three (address, port) pairs.
#[test]
fn srv_for_the_service_name_lists_all_its_ports() {
    let z = ZoneIndex::compile(&kube_system(), "cluster.local", 30).unwrap();
    let target = "kube-dns.kube-system.svc.cluster.local.";
    let (got, extra) = lookup_answer(&z, target, RecordType::SRV);
    assert_eq!(got, [srv(0, 33, 53, target), srv(0, 33, 9153, target)]);
    assert_eq!(
        extra,
        [(
            target.to_owned(),
            RData::A(A("10.96.0.10".parse().unwrap()))
        )],
        "the target's address, once"
    );
}

/// CoreDNS's apex: SOA `ns.dns.<zone>. hostmaster.<zone>.`, NS `ns.dns.<zone>.` with its
/// address in the additional section (kube-dns's cluster IP, which Pods are told to use).
#[test]
fn the_apex_has_ns_and_soa() {
    let z = ZoneIndex::compile(&kube_system(), "cluster.local", 30).unwrap();
    let (ns, extra) = lookup_answer(&z, "cluster.local.", RecordType::NS);
    assert_eq!(ns, [RData::NS(NS(n("ns.dns.cluster.local.")))]);
    assert_eq!(
        extra,
        [(
            "ns.dns.cluster.local.".to_owned(),
            RData::A(A("10.96.0.10".parse().unwrap()))
        )]
    );
    match &answers(&z, "cluster.local.", RecordType::SOA)[0] {
        RData::SOA(soa) => {
            assert_eq!(soa.mname, n("ns.dns.cluster.local."));
            assert_eq!(soa.rname, n("hostmaster.cluster.local."));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        z.lookup(&n("cluster.local."), RecordType::A),
        Lookup::NoData,
        "CoreDNS: other types at the apex are NODATA"
    );

    // Without a kube-dns Service, the address DNS is served on.
    let mut alone = kube_system();
    alone.services.retain(|s| s.name != "kube-dns");
    let z = ZoneIndex::compile_serving(&alone, "cluster.local", 30, &[ip("127.0.0.1")]).unwrap();
    assert_eq!(
        answers(&z, "ns.dns.cluster.local.", RecordType::A),
        [RData::A(A("127.0.0.1".parse().unwrap()))]
    );
}

/// CoreDNS's findServices: `<ns>.svc.<zone>` is NODATA when the namespace exists (with or
/// without Services), NXDOMAIN when it does not; the same for `<ns>.pod.<zone>`.
#[test]
fn namespaces_that_exist_are_nodata_others_nxdomain() {
    let z = ZoneIndex::compile(&kube_system(), "cluster.local", 30).unwrap();
    for name in [
        "empty.svc.cluster.local.",
        "kube-system.svc.cluster.local.",
        "empty.pod.cluster.local.",
    ] {
        assert_eq!(z.lookup(&n(name), RecordType::A), Lookup::NoData, "{name}");
    }
    for name in [
        "nowhere.svc.cluster.local.",
        "nowhere.pod.cluster.local.",
        "10-1-2-3.nowhere.pod.cluster.local.",
    ] {
        assert_eq!(
            z.lookup(&n(name), RecordType::A),
            Lookup::NxDomain,
            "{name}"
        );
    }
    assert_eq!(
        answers(&z, "10-1-2-3.empty.pod.cluster.local.", RecordType::A),
        [RData::A(A("10.1.2.3".parse().unwrap()))]
    );
}

/// "Any Pods exposed by a Service have the following DNS resolution available":
/// `<dashed-ip>.<svc>.<ns>.svc.<zone>` for a ClusterIP Service's ready endpoints too, IPv6
/// dashed as CoreDNS does (`2001-db8--1`), and their PTR names point back to them.
#[test]
fn endpoints_of_clusterip_services_have_names_and_reverse_names() {
    let mut s = kube_system();
    let kube_dns = Arc::make_mut(&mut s.services[1]);
    kube_dns.endpoints = vec![
        endpoint("10.244.0.5", true, None),
        endpoint("2001:db8::1", true, None),
        endpoint("2001:db8::", true, None),
        endpoint("10.244.0.6", false, None),
    ];
    let z = ZoneIndex::compile(&s, "cluster.local", 30).unwrap();
    assert_eq!(
        answers(
            &z,
            "10-244-0-5.kube-dns.kube-system.svc.cluster.local.",
            RecordType::A
        ),
        [RData::A(A("10.244.0.5".parse().unwrap()))]
    );
    assert_eq!(
        answers(
            &z,
            "2001-db8--1.kube-dns.kube-system.svc.cluster.local.",
            RecordType::AAAA
        ),
        [RData::AAAA(AAAA("2001:db8::1".parse().unwrap()))]
    );
    assert_eq!(
        answers(
            &z,
            "2001-db8--0.kube-dns.kube-system.svc.cluster.local.",
            RecordType::AAAA
        ),
        [RData::AAAA(AAAA("2001:db8::".parse().unwrap()))],
        "a trailing `::` ends the label with 0"
    );
    assert_eq!(
        z.lookup(
            &n("10-244-0-6.kube-dns.kube-system.svc.cluster.local."),
            RecordType::A
        ),
        Lookup::NxDomain,
        "not ready: no name"
    );
    // SRV at an endpoint's name: kube-dns has no cluster in this snapshot, so no ports.
    assert_eq!(
        z.lookup(
            &n("10-244-0-5.kube-dns.kube-system.svc.cluster.local."),
            RecordType::SRV
        ),
        Lookup::NoData
    );
    // The Service's own name is still its cluster IP.
    assert_eq!(
        answers(&z, "kube-dns.kube-system.svc.cluster.local.", RecordType::A),
        [RData::A(A("10.96.0.10".parse().unwrap()))]
    );
    assert_eq!(
        answers(&z, "5.0.244.10.in-addr.arpa.", RecordType::PTR),
        [RData::PTR(PTR(n(
            "10-244-0-5.kube-dns.kube-system.svc.cluster.local."
        )))]
    );
    assert_eq!(
        answers(
            &z,
            &Name::from(ip("2001:db8::1")).to_ascii(),
            RecordType::PTR
        ),
        [RData::PTR(PTR(n(
            "2001-db8--1.kube-dns.kube-system.svc.cluster.local."
        )))]
    );
    // A cluster IP's PTR names the Service only (CoreDNS looks cluster IPs up first).
    assert_eq!(
        answers(&z, "10.0.96.10.in-addr.arpa.", RecordType::PTR),
        [RData::PTR(PTR(n(
            "kube-dns.kube-system.svc.cluster.local."
        )))]
    );
}

/// Spec 2.4.2: one endpoint in an IPv4 and an IPv6 EndpointSlice under one hostname is one SRV
/// record per (target, port), with both its A and AAAA in the additional section.
#[test]
fn a_dual_stack_endpoint_under_one_hostname_is_one_srv_per_port() {
    let mut s = kube_system();
    let mut db = service("default", "db");
    db.headless = true;
    db.ports = vec![port("pg", 5432, Protocol::TCP)];
    db.endpoints = vec![
        endpoint("10.1.0.1", true, Some("db-0")),
        endpoint("fd00::1", true, Some("db-0")),
    ];
    s.services.insert(0, Arc::new(db));
    s.clusters = vec![Arc::new(Cluster {
        key: ClusterKey {
            namespace: "default".into(),
            service: "db".into(),
            port: 5432,
            protocol: Protocol::TCP,
        },
        port_name: "pg".into(),
        app_protocol: None,
        session_affinity: SessionAffinity::None,
        endpoints: ["10.1.0.1", "fd00::1"]
            .iter()
            .map(|a| Endpoint {
                address: ip(a),
                port: 5432,
                ready: true,
                serving: true,
                terminating: false,
                zone: None,
            })
            .collect(),
    })];
    s.validate().unwrap();
    let z = ZoneIndex::compile(&s, "cluster.local", 30).unwrap();
    let host = "db-0.db.default.svc.cluster.local.";
    let both = vec![
        (host.to_owned(), RData::A(A("10.1.0.1".parse().unwrap()))),
        (
            host.to_owned(),
            RData::AAAA(AAAA("fd00::1".parse().unwrap())),
        ),
    ];
    for name in [
        "_pg._tcp.db.default.svc.cluster.local.",
        "db.default.svc.cluster.local.",
    ] {
        let (got, extra) = lookup_answer(&z, name, RecordType::SRV);
        // CoreDNS: the weight shares 100 among the two (address, port) pairs.
        assert_eq!(got, [srv(0, 50, 5432, host)], "{name}");
        assert_eq!(extra, both, "{name}");
    }
    assert_eq!(
        answers(&z, host, RecordType::AAAA),
        [RData::AAAA(AAAA("fd00::1".parse().unwrap()))]
    );
    // CoreDNS answers SRV for an endpoint's own name too: the ports it serves.
    let (got, extra) = lookup_answer(&z, host, RecordType::SRV);
    assert_eq!(got, [srv(0, 50, 5432, host)]);
    assert_eq!(extra, both);
}
