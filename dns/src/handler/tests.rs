use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use prometheus_client::registry::Registry;

use super::{Handler, Step, Transport};
use crate::metrics::Metrics;
use crate::zone::ZoneIndex;
use crate::zone::tests::{cluster, n};

fn handler() -> Handler {
    let zone = ZoneIndex::compile(&cluster(), "cluster.local", 30).unwrap();
    let metrics = Metrics::register(&mut Registry::default());
    Handler::new(Arc::new(ArcSwap::from_pointee(zone)), None, None, metrics)
}

fn query(name: &str, t: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m
}

fn ask(h: &Handler, m: &Message, transport: Transport) -> Message {
    match h.start(&m.to_vec().unwrap(), transport) {
        Step::Answer(bytes) => Message::from_vec(&bytes).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn authoritative_answer_keeps_the_question_case_and_id() {
    let h = handler();
    let q = query("Web.SHOP.svc.Cluster.Local.", RecordType::A);
    let r = ask(&h, &q, Transport::Udp);
    assert_eq!(r.metadata.id, q.metadata.id);
    assert!(r.metadata.authoritative);
    assert!(r.metadata.recursion_desired, "RD is copied");
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        r.queries[0].name().to_ascii(),
        "Web.SHOP.svc.Cluster.Local."
    );
    assert_eq!(r.answers.len(), 1);
    assert!(r.answers[0].name.eq_case(&n("Web.SHOP.svc.Cluster.Local.")));
    assert_eq!(r.answers[0].ttl, 30);
}

#[test]
fn nxdomain_and_nodata_carry_the_soa() {
    let h = handler();
    let nx = ask(
        &h,
        &query("nope.shop.svc.cluster.local.", RecordType::A),
        Transport::Udp,
    );
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    assert!(nx.answers.is_empty());
    assert_eq!(nx.authorities.len(), 1);
    assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(nx.authorities[0].name, n("cluster.local."));

    let nodata = ask(
        &h,
        &query("web.shop.svc.cluster.local.", RecordType::TXT),
        Transport::Udp,
    );
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn alias_inside_the_zone_is_chased_in_the_zone() {
    let h = handler();
    let r = ask(
        &h,
        &query("alias.shop.svc.cluster.local.", RecordType::A),
        Transport::Udp,
    );
    let types: Vec<_> = r.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, vec![RecordType::CNAME, RecordType::A]);
}

#[test]
fn alias_outside_without_upstreams_is_the_cname_alone() {
    let h = handler();
    let r = ask(
        &h,
        &query("ext.shop.svc.cluster.local.", RecordType::A),
        Transport::Udp,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.answers.len(), 1);
    assert!(matches!(r.answers[0].data, RData::CNAME(_)));
}

#[test]
fn outside_names_are_refused_without_upstreams() {
    let h = handler();
    let r = ask(&h, &query("example.com.", RecordType::A), Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(!r.metadata.recursion_available);
}

#[test]
fn errors_by_rfc() {
    let h = handler();
    let mut chaos = query("version.bind.", RecordType::TXT);
    chaos.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(
        ask(&h, &chaos, Transport::Udp).metadata.response_code,
        ResponseCode::Refused
    );

    let axfr = query("cluster.local.", RecordType::AXFR);
    assert_eq!(
        ask(&h, &axfr, Transport::Tcp).metadata.response_code,
        ResponseCode::Refused
    );

    let mut notify = query("cluster.local.", RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    assert_eq!(
        ask(&h, &notify, Transport::Udp).metadata.response_code,
        ResponseCode::NotImp
    );

    let mut two = query("a.cluster.local.", RecordType::A);
    two.add_query(Query::query(n("b.cluster.local."), RecordType::A));
    let r = ask(&h, &two, Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);

    let mut empty = query("a.cluster.local.", RecordType::A);
    empty.queries.clear();
    assert_eq!(
        ask(&h, &empty, Transport::Udp).metadata.response_code,
        ResponseCode::FormErr
    );
}

#[test]
fn unknown_edns_version_is_badvers() {
    let h = handler();
    let mut q = query("web.shop.svc.cluster.local.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    q.set_edns(edns);
    let r = ask(&h, &q, Transport::Udp);
    // 16 on the wire; hickory reads 16 back as BADSIG, its other name.
    assert_eq!(u16::from(r.metadata.response_code), 16, "BADVERS");
    assert_eq!(r.edns.as_ref().unwrap().version(), 0);
    assert!(r.answers.is_empty());
}

#[test]
fn edns_is_answered_with_edns() {
    let h = handler();
    let mut q = query("web.shop.svc.cluster.local.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    edns.set_dnssec_ok(true);
    q.set_edns(edns);
    let r = ask(&h, &q, Transport::Udp);
    let edns = r.edns.expect("OPT in the answer");
    assert_eq!(edns.version(), 0);
    assert!(edns.flags().dnssec_ok, "DO copied");
    let plain = ask(
        &h,
        &query("web.shop.svc.cluster.local.", RecordType::A),
        Transport::Udp,
    );
    assert!(plain.edns.is_none(), "no OPT without one in the query");
}

#[test]
fn garbage_gets_formerr_or_nothing() {
    let h = handler();
    // Shorter than a header: nothing to answer to.
    assert!(matches!(h.start(&[1, 2, 3], Transport::Udp), Step::Drop));
    // A response (QR set): never answered, or two servers could ping-pong.
    let mut resp = query("a.", RecordType::A).to_vec().unwrap();
    resp[2] |= 0x80;
    assert!(matches!(h.start(&resp, Transport::Udp), Step::Drop));
    // A header promising a question that is not there.
    let bytes = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'f'];
    match h.start(&bytes, Transport::Udp) {
        Step::Answer(a) => {
            assert_eq!(&a[..2], &[0xab, 0xcd], "same id");
            assert_eq!(a[2] & 0x80, 0x80, "a response");
            assert_eq!(a[2] & 0x01, 0x01, "RD copied");
            assert_eq!(a[3] & 0x0f, 1, "FORMERR");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn random_bytes_never_panic() {
    // A deterministic mutation fuzz over valid queries; cargo fuzz (dns/fuzz) goes further.
    let h = handler();
    let mut seeds: Vec<Vec<u8>> = vec![
        query("web.shop.svc.cluster.local.", RecordType::A)
            .to_vec()
            .unwrap(),
        query("_http._tcp.web.shop.svc.cluster.local.", RecordType::SRV)
            .to_vec()
            .unwrap(),
        query("10-1-2-3.shop.pod.cluster.local.", RecordType::ANY)
            .to_vec()
            .unwrap(),
    ];
    let mut with_edns = query("db.shop.svc.cluster.local.", RecordType::A);
    with_edns.set_edns(Edns::new());
    seeds.push(with_edns.to_vec().unwrap());
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..50_000 {
        let mut bytes = seeds[i % seeds.len()].clone();
        for _ in 0..(next() % 6 + 1) {
            let r = next();
            match r % 4 {
                0 if !bytes.is_empty() => {
                    let at = (r >> 8) as usize % bytes.len();
                    bytes[at] = (r >> 32) as u8;
                }
                1 if !bytes.is_empty() => bytes.truncate((r >> 8) as usize % bytes.len()),
                2 => bytes.push((r >> 8) as u8),
                _ => {
                    let at = (r >> 8) as usize % (bytes.len() + 1);
                    bytes.insert(at, 0xc0);
                }
            }
        }
        if let Step::Answer(a) = h.start(&bytes, Transport::Udp) {
            assert!(a.len() >= 12, "at least a header");
            assert!(
                a.len() <= usize::from(super::MAX_UDP_PAYLOAD),
                "bounded by UDP limits"
            );
            assert_eq!(&a[..2], &bytes[..2], "answers keep the id");
        }
    }
}

#[test]
fn udp_answers_that_do_not_fit_are_truncated() {
    // 60 endpoints' A records do not fit in 512 bytes.
    let mut snapshot = cluster();
    let db = snapshot
        .services
        .iter_mut()
        .find(|s| s.name == "db")
        .map(Arc::make_mut)
        .unwrap();
    db.endpoints = (1..=60)
        .map(|i| ferry_model::ServiceEndpoint {
            address: format!("10.2.0.{i}").parse().unwrap(),
            ready: true,
            serving: true,
            terminating: false,
            hostname: None,
            node_name: None,
            zone: None,
            target: None,
        })
        .collect();
    let zone = ZoneIndex::compile(&snapshot, "cluster.local", 30).unwrap();
    let h = Handler::new(
        Arc::new(ArcSwap::from_pointee(zone)),
        None,
        None,
        Metrics::register(&mut Registry::default()),
    );
    let q = query("db.shop.svc.cluster.local.", RecordType::A);
    let udp = ask(&h, &q, Transport::Udp);
    assert!(udp.metadata.truncation, "TC set");
    assert!(udp.answers.is_empty());
    assert_eq!(udp.queries.len(), 1, "the question stays");
    let tcp = ask(&h, &q, Transport::Tcp);
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 60);
    // A client with a big enough EDNS buffer gets it all over UDP.
    let mut big = q.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    big.set_edns(edns);
    let r = ask(&h, &big, Transport::Udp);
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 60);
}

#[test]
fn the_hot_path_sends_what_the_general_path_would() {
    let h = handler();
    let mut checked = 0;
    let names = [
        ("web.shop.svc.cluster.local.", RecordType::A),
        ("web.shop.svc.cluster.local.", RecordType::AAAA),
        ("WEB.Shop.svc.cluster.LOCAL.", RecordType::A),
        ("_http._tcp.web.shop.svc.cluster.local.", RecordType::SRV),
        ("_HTTP._tcp.Web.shop.svc.cluster.local.", RecordType::SRV),
        ("db.shop.svc.cluster.local.", RecordType::A),
        ("db-0.db.shop.svc.cluster.local.", RecordType::A),
        ("_pg._tcp.db.shop.svc.cluster.local.", RecordType::SRV),
        ("10.0.96.10.in-addr.arpa.", RecordType::PTR),
        ("dns-version.cluster.local.", RecordType::TXT),
        ("cluster.local.", RecordType::SOA),
        ("ext.shop.svc.cluster.local.", RecordType::CNAME),
    ];
    for (name, qtype) in names {
        for edns in [
            None,
            Some((1232u16, false)),
            Some((4096, true)),
            Some((100, false)),
        ] {
            for (rd, cd) in [(true, false), (false, true)] {
                for transport in [Transport::Udp, Transport::Tcp] {
                    let mut q = query(name, qtype);
                    q.metadata.recursion_desired = rd;
                    q.metadata.checking_disabled = cd;
                    if let Some((payload, dnssec_ok)) = edns {
                        let mut e = Edns::new();
                        e.set_max_payload(payload);
                        e.set_dnssec_ok(dnssec_ok);
                        q.set_edns(e);
                    }
                    let bytes = q.to_vec().unwrap();
                    let started = std::time::Instant::now();
                    let fast = h
                        .fast(&bytes, transport, started)
                        .unwrap_or_else(|| panic!("{name} {qtype} {edns:?} took the general path"));
                    let Step::Answer(general) = h.general(&bytes, transport, started) else {
                        panic!("no answer");
                    };
                    let (f, g) = (
                        Message::from_vec(&fast).unwrap(),
                        Message::from_vec(&general).unwrap(),
                    );
                    assert_eq!(f, g, "{name} {qtype} {edns:?}");
                    assert_eq!(f.queries[0].name().to_ascii(), name, "the question's case");
                    if name == name.to_ascii_lowercase() {
                        assert_eq!(fast, general, "{name} {qtype} {edns:?}: the same bytes");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, names.len() * 16);
}

/// Every answer the zone pre-encodes, for every record type it serves (A, AAAA, SRV with its
/// additional records, PTR, TXT, NS, SOA, an ExternalName's CNAME asked for): byte for byte what the general path builds, with and
/// without EDNS, over both transports.
#[test]
fn every_pre_encoded_answer_is_the_general_paths() {
    let h = handler();
    let zone = ZoneIndex::compile(&cluster(), "cluster.local", 30).unwrap();
    let questions = zone.encoded_questions();
    let mut types: Vec<RecordType> = questions.iter().map(|(_, t)| *t).collect();
    types.sort_by_key(|t| u16::from(*t));
    types.dedup();
    assert_eq!(
        types,
        [
            RecordType::A,
            RecordType::NS,
            RecordType::CNAME,
            RecordType::SOA,
            RecordType::PTR,
            RecordType::TXT,
            RecordType::AAAA,
            RecordType::SRV
        ],
        "every type the zone serves is pre-encoded"
    );
    for (name, qtype) in questions {
        for edns in [None, Some(512u16), Some(4096)] {
            for transport in [Transport::Udp, Transport::Tcp] {
                let mut q = Message::query();
                q.metadata.id = 0x5a5a;
                q.metadata.recursion_desired = true;
                q.add_query(Query::query(name.clone(), qtype));
                if let Some(payload) = edns {
                    let mut e = Edns::new();
                    e.set_max_payload(payload);
                    q.set_edns(e);
                }
                let bytes = q.to_vec().unwrap();
                let started = std::time::Instant::now();
                let fast = h
                    .fast(&bytes, transport, started)
                    .unwrap_or_else(|| panic!("{name} {qtype}: not pre-encoded"));
                let Step::Answer(general) = h.general(&bytes, transport, started) else {
                    panic!("{name} {qtype}: no answer");
                };
                assert_eq!(fast, general, "{name} {qtype} {edns:?} {transport:?}");
            }
        }
    }
}

/// A buffer reused from an earlier, longer answer (as the UDP workers reuse theirs) holds
/// exactly the new answer, from the hot path or the general one; a query answered with
/// nothing leaves nothing to send.
#[test]
fn answers_written_into_a_reused_buffer_are_whole() {
    let h = handler();
    let mut out = vec![0xee; 700];
    for (name, qtype) in [
        ("web.shop.svc.cluster.local.", RecordType::A),
        ("_http._tcp.web.shop.svc.cluster.local.", RecordType::SRV),
        ("nope.shop.svc.cluster.local.", RecordType::A),
        ("WEB.shop.svc.cluster.local.", RecordType::AAAA),
    ] {
        let bytes = query(name, qtype).to_vec().unwrap();
        let Step::Answer(alone) = h.start(&bytes, Transport::Udp) else {
            panic!("{name}: no answer");
        };
        assert!(matches!(
            h.start_into(&bytes, Transport::Udp, &mut out),
            crate::handler::Started::Written
        ));
        assert_eq!(out, alone, "{name} {qtype}");
    }
    let mut response = query("web.shop.svc.cluster.local.", RecordType::A)
        .to_vec()
        .unwrap();
    response[2] |= 0x80;
    assert!(matches!(
        h.start_into(&response, Transport::Udp, &mut out),
        crate::handler::Started::Drop
    ));
}

#[test]
fn the_hot_path_leaves_the_rest_to_the_general_path() {
    let h = handler();
    let started = std::time::Instant::now();
    let plain = |name: &str, t| query(name, t).to_vec().unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "negative",
            plain("nope.shop.svc.cluster.local.", RecordType::A),
        ),
        (
            "nodata",
            plain("web.shop.svc.cluster.local.", RecordType::MX),
        ),
        ("alias", plain("ext.shop.svc.cluster.local.", RecordType::A)),
        ("any", plain("web.shop.svc.cluster.local.", RecordType::ANY)),
        (
            "pod",
            plain("10-1-2-3.shop.pod.cluster.local.", RecordType::A),
        ),
        ("outside", plain("example.com.", RecordType::A)),
    ];
    let mut edns1 = query("web.shop.svc.cluster.local.", RecordType::A);
    let mut e = Edns::new();
    e.set_version(1);
    edns1.set_edns(e);
    cases.push(("edns version 1", edns1.to_vec().unwrap()));
    let mut chaos = query("web.shop.svc.cluster.local.", RecordType::A);
    chaos.queries[0].set_query_class(DNSClass::CH);
    cases.push(("class CH", chaos.to_vec().unwrap()));
    let mut trailing = plain("web.shop.svc.cluster.local.", RecordType::A);
    trailing.push(0);
    cases.push(("trailing byte", trailing));
    let mut notify = query("web.shop.svc.cluster.local.", RecordType::A);
    notify.metadata.op_code = OpCode::Notify;
    cases.push(("opcode", notify.to_vec().unwrap()));
    for (what, bytes) in cases {
        assert!(h.fast(&bytes, Transport::Udp, started).is_none(), "{what}");
    }
}

/// Spec 2.4.1 with RFC 2308: a headless Service without ready endpoints is NXDOMAIN, with the
/// zone's SOA in the authority section; ANY as CoreDNS answers it: NOERROR, no records, the
/// SOA (NXDOMAIN where the name does not exist).
#[test]
fn empty_headless_is_nxdomain_and_any_is_nodata_both_with_the_soa() {
    let h = handler();
    for (name, t, rcode) in [
        (
            "empty.shop.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        (
            "empty.shop.svc.cluster.local.",
            RecordType::SRV,
            ResponseCode::NXDomain,
        ),
        (
            "web.shop.svc.cluster.local.",
            RecordType::ANY,
            ResponseCode::NoError,
        ),
        (
            "10-1-2-3.shop.pod.cluster.local.",
            RecordType::ANY,
            ResponseCode::NoError,
        ),
        (
            "nope.shop.svc.cluster.local.",
            RecordType::ANY,
            ResponseCode::NXDomain,
        ),
    ] {
        let r = ask(&h, &query(name, t), Transport::Udp);
        assert_eq!(r.metadata.response_code, rcode, "{name} {t}");
        assert!(r.metadata.authoritative, "{name} {t}");
        assert!(r.answers.is_empty(), "{name} {t}");
        let soa: Vec<_> = r.authorities.iter().map(|a| a.record_type()).collect();
        assert_eq!(soa, [RecordType::SOA], "{name} {t}");
    }
}
