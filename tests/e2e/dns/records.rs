//! Records as the Kubernetes DNS spec defines them: A, AAAA, SRV, CNAME, PTR, pod names and
//! the schema version, over UDP and TCP, on the test cluster and on the demo.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

use super::{ask, data, question, running, tcp, write_cluster};
use crate::Running;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_kind_of_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    write_cluster(dir.path());
    let up = running(dir.path()).await;
    let dns = up.dns;

    let r = ask(dns, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(data(&r), vec!["10.96.0.10"]);
    assert_eq!(r.answers[0].ttl, 30);
    let r = ask(dns, "web.shop.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(data(&r), vec!["fd00::10"]);

    let r = ask(
        dns,
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    // Two cluster IPs behind the target share the weight, as CoreDNS gives it.
    assert_eq!(data(&r), vec!["0 50 80 web.shop.svc.cluster.local."]);
    assert_eq!(r.additionals.len(), 2, "the target's A and AAAA: {r}");

    let r = ask(dns, "db.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(
        data(&r),
        vec!["10.1.0.1", "10.1.0.2"],
        "ready endpoints only"
    );
    let r = ask(dns, "db-0.db.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), vec!["10.1.0.1"]);
    let r = ask(dns, "_pg._tcp.db.shop.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(
        data(&r),
        vec![
            "0 50 15432 10-1-0-2.db.shop.svc.cluster.local.",
            "0 50 15432 db-0.db.shop.svc.cluster.local.",
        ]
    );

    let r = ask(dns, "ext.shop.svc.cluster.local.", RecordType::CNAME).await;
    assert_eq!(data(&r), vec!["example.com."]);

    let r = ask(dns, "10.0.96.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(data(&r), vec!["web.shop.svc.cluster.local."]);
    let v6 = Name::from("fd00::10".parse::<IpAddr>().unwrap()).to_ascii();
    let r = ask(dns, &v6, RecordType::PTR).await;
    assert_eq!(data(&r), vec!["web.shop.svc.cluster.local."]);
    let r = ask(dns, "1.0.1.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(data(&r), vec!["db-0.db.shop.svc.cluster.local."]);

    let r = ask(dns, "10-244-0-7.shop.pod.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), vec!["10.244.0.7"]);

    let r = ask(dns, "dns-version.cluster.local.", RecordType::TXT).await;
    assert_eq!(data(&r), vec!["1.1.0"]);

    // Over TCP, the same answers.
    let r = tcp(
        dns,
        &question("web.shop.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(data(&r), vec!["10.96.0.10"]);
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_answers_what_the_readme_shows() {
    let up = Running::start(vec![crate::repo().join("configs/demo")]).await;
    // The demo names no cluster IP: they are allocated from the test's service range.
    let r = ask(up.dns, "web.shop.svc.cluster.local.", RecordType::A).await;
    let web = data(&r);
    assert!(web.len() == 1 && web[0].starts_with("127."), "{web:?}");
    let r = ask(
        up.dns,
        "_http._tcp.api.shop.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(data(&r), vec!["0 100 8080 api.shop.svc.cluster.local."]);
    let r = ask(up.dns, "api.shop.svc.cluster.local.", RecordType::A).await;
    let api: std::net::Ipv4Addr = data(&r)[0].parse().unwrap();
    let [a, b, c, d] = api.octets();
    let r = ask(
        up.dns,
        &format!("{d}.{c}.{b}.{a}.in-addr.arpa."),
        RecordType::PTR,
    )
    .await;
    assert_eq!(data(&r), vec!["api.shop.svc.cluster.local."]);
    up.stop().await;
}
