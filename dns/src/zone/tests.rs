use std::net::IpAddr;

use ferry_model::{
    Cluster, ClusterKey, Endpoint, Protocol, Service, ServiceEndpoint, ServicePort, ServiceType,
    SessionAffinity, Snapshot, TargetPort,
};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SRV, TXT};
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
        services: vec![web, dns, db, empty, pending, ext, alias],
        clusters: vec![db_cluster],
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
    let want = RData::SRV(SRV::new(0, 100, 80, n("web.shop.svc.cluster.local.")));
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
fn services_without_addresses_exist_with_no_data() {
    let z = zone();
    for name in [
        "empty.shop.svc.cluster.local.",
        "pending.shop.svc.cluster.local.",
    ] {
        assert_eq!(z.lookup(&n(name), RecordType::A), Lookup::NoData, "{name}");
    }
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

#[test]
fn any_is_answered_with_one_rrset() {
    let z = zone();
    let got = answers(&z, "web.shop.svc.cluster.local.", RecordType::ANY);
    assert_eq!(got, vec![RData::A(A("10.96.0.10".parse().unwrap()))]);
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
