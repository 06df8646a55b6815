//! The spec's and the RFCs' corner cases: NXDOMAIN and NODATA with the SOA, the question's case
//! kept, ANY, truncation, EDNS and malformed or refused queries.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use super::{ask, data, name, question, running, tcp, udp, udp_raw, write_cluster};
use crate::get;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_and_nodata_with_the_soa_and_case_kept() {
    let dir = tempfile::tempdir().unwrap();
    write_cluster(dir.path());
    let up = running(dir.path()).await;

    let nx = ask(up.dns, "nope.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    let soa = &nx.authorities[0];
    assert_eq!(soa.name, name("cluster.local."));
    match &soa.data {
        RData::SOA(s) => {
            assert_eq!(s.mname, name("ns.dns.cluster.local."));
            assert_eq!(s.minimum, 30);
        }
        other => panic!("{other}"),
    }

    let nodata = ask(up.dns, "web.shop.svc.cluster.local.", RecordType::MX).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
    // A name with names below it exists too.
    let ent = ask(up.dns, "shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);

    let mixed = "WeB.sHoP.SVC.Cluster.LOCAL.";
    let r = ask(up.dns, mixed, RecordType::A).await;
    assert_eq!(r.queries[0].name().to_ascii(), mixed);
    assert_eq!(
        r.answers[0].name.to_ascii(),
        mixed,
        "answers keep the question's case"
    );

    // ANY as CoreDNS answers it: NODATA with the SOA where the name exists.
    let any = ask(up.dns, "web.shop.svc.cluster.local.", RecordType::ANY).await;
    assert_eq!(any.metadata.response_code, ResponseCode::NoError);
    assert!(any.answers.is_empty(), "{any}");
    assert_eq!(any.authorities[0].record_type(), RecordType::SOA);
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_edns_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_cluster(dir.path());
    let up = running(dir.path()).await;
    let big = "big.shop.svc.cluster.local.";

    // 60 addresses do not fit in 512 bytes: TC over UDP, complete over TCP (what a resolver
    // does next).
    let r = udp(up.dns, &question(big, RecordType::A, None)).await;
    assert!(r.metadata.truncation);
    assert!(r.answers.is_empty());
    let r = tcp(up.dns, &question(big, RecordType::A, None)).await;
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 60);
    // The client's EDNS payload size is honoured.
    let r = udp(up.dns, &question(big, RecordType::A, Some(4096))).await;
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 60);
    assert_eq!(r.edns.as_ref().unwrap().version(), 0);
    let r = udp(up.dns, &question(big, RecordType::A, Some(600))).await;
    assert!(r.metadata.truncation);

    // EDNS version 1: BADVERS.
    let mut q = question("web.shop.svc.cluster.local.", RecordType::A, Some(1232));
    q.edns.as_mut().unwrap().set_version(1);
    let r = udp(up.dns, &q).await;
    assert_eq!(u16::from(r.metadata.response_code), 16);

    // Garbage after a header: FORMERR with the same id.
    let bytes = udp_raw(
        up.dns,
        &[0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, b'x'],
    )
    .await
    .unwrap();
    assert_eq!(&bytes[..2], &[0x12, 0x34]);
    assert_eq!(bytes[3] & 0x0f, 1);
    // A class other than IN: REFUSED.
    let mut chaos = question("version.bind.", RecordType::TXT, None);
    chaos.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    assert_eq!(
        udp(up.dns, &chaos).await.metadata.response_code,
        ResponseCode::Refused
    );
    // And the server still answers after all that.
    let r = ask(up.dns, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), vec!["10.96.0.10"]);

    let (_, metrics) = get(up.admin, "/metrics").await;
    assert!(
        metrics.contains(r#"ferry_dns_queries_total{proto="udp",qtype="A",rcode="NOERROR"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_dns_truncated_total 2"), "{metrics}");
    up.stop().await;
}
