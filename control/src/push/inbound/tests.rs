//! A workload's inbound answers computed from a snapshot, and their streams.

use ferry_model::policy::{Action, AuthorizationPolicy, Authorizer, Decision, PolicyRef};
use ferry_model::proto::Role;
use ferry_model::{Mesh, MtlsMode, Workload};
use ferry_runtime::{SnapshotBus, StatusBoard};
use ferry_testing::DEADLINE;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use super::*;
use crate::push::destination::serve;
use crate::push::destination::tests::{echo, other, service, snapshot};
use crate::push::parts::Parts;

#[test]
fn a_workloads_inbound_policy_is_the_ports_services_send_it() {
    let (mut web, mut web_cluster) = service(
        "shop",
        "web",
        "10.96.0.30",
        80,
        8080,
        &[("10.1.0.1", true, "echo-a", Some("echo"))],
    );
    web.ports[0].app_protocol = None;
    web_cluster.app_protocol = None;
    let s = snapshot(
        5,
        vec![
            echo(&[
                ("10.1.0.1", true, "echo-a", Some("echo")),
                ("10.1.0.2", true, "echo-b", Some("echo")),
            ]),
            (web, web_cluster),
            other(),
        ],
    );
    let policy = inbound(&s, "shop", "echo-a", "cluster.local");
    assert_eq!(
        policy.identity.as_deref(),
        Some("spiffe://cluster.local/ns/shop/sa/echo")
    );
    let key = |name: &str| proto::ServiceKey {
        namespace: "shop".into(),
        name: name.into(),
    };
    assert_eq!(
        policy.ports,
        [
            proto::InboundPort {
                port: 8080,
                protocol: proto::Protocol::Tcp as i32,
                app_protocol: None,
                services: vec![key("web")],
                protocol_hint: proto::ProtocolHint::Http1 as i32,
            },
            proto::InboundPort {
                port: 9000,
                protocol: proto::Protocol::Tcp as i32,
                app_protocol: Some("http".into()),
                services: vec![key("echo")],
                protocol_hint: proto::ProtocolHint::Http1 as i32,
            },
        ]
    );
    // A Pod no Service sends traffic to: known to serve nothing.
    assert_eq!(
        inbound(&s, "shop", "nobody", "cluster.local"),
        proto::InboundPolicy::default()
    );
    // Same name, other namespace: not this Pod.
    assert!(
        inbound(&s, "bank", "echo-a", "cluster.local")
            .ports
            .is_empty()
    );
}

#[test]
fn a_pod_the_control_plane_holds_has_its_own_identity_without_a_service() {
    let s = Snapshot {
        mesh: Mesh {
            workloads: vec![workload("lonely", MtlsMode::Strict, &[])],
            authorization_policies: vec![],
        },
        ..snapshot(1, vec![other()])
    };
    let policy = inbound(&s, "shop", "lonely", "corp.example");
    assert_eq!(
        policy.identity.as_deref(),
        Some("spiffe://corp.example/ns/shop/sa/lonely")
    );
    assert_eq!(policy.mtls_mode, proto::MtlsMode::Strict as i32);
    assert!(policy.ports.is_empty());
}

type Policies = mpsc::Receiver<Result<proto::InboundPolicy, tonic::Status>>;

fn subscribe(bus: &SnapshotBus, parts: &Parts, pod: &'static str) -> Policies {
    let (tx, rx) = mpsc::channel(4);
    let id = parts.connect(Role::Sidecar, pod.into(), String::new(), String::new());
    tokio::spawn(serve(
        bus.clone(),
        parts.clone(),
        id,
        move |s: &Snapshot| inbound(s, "shop", pod, "cluster.local"),
        tx,
    ));
    rx
}

async fn next(policies: &mut Policies) -> proto::InboundPolicy {
    tokio::time::timeout(DEADLINE, policies.recv())
        .await
        .expect("an answer within the deadline")
        .expect("the stream is open")
        .expect("an answer, not an error")
}

fn workload(name: &str, mtls_mode: MtlsMode, policies: &[&str]) -> Workload {
    Workload {
        namespace: "shop".into(),
        name: name.into(),
        service_account: name.into(),
        meshed: true,
        mtls_mode,
        authorization: policies
            .iter()
            .map(|p| PolicyRef {
                namespace: "shop".into(),
                name: (*p).into(),
            })
            .collect(),
    }
}

/// An ALLOW policy without rules: nothing is allowed.
fn allow_nothing(name: &str) -> AuthorizationPolicy {
    AuthorizationPolicy {
        policy: PolicyRef {
            namespace: "shop".into(),
            name: name.into(),
        },
        action: Action::Allow,
        rules: vec![],
    }
}

fn with_mesh(
    version: u64,
    workloads: Vec<Workload>,
    policies: Vec<AuthorizationPolicy>,
) -> Snapshot {
    Snapshot {
        mesh: Mesh {
            workloads,
            authorization_policies: policies,
        },
        ..snapshot(
            version,
            vec![echo(&[("10.1.0.1", true, "echo-a", Some("echo"))])],
        )
    }
}

#[tokio::test]
async fn an_inbound_answer_is_resent_only_when_that_workloads_answer_changes() {
    let bus = SnapshotBus::new();
    let parts = Parts::new(StatusBoard::default(), &mut Registry::default());
    let mut a = subscribe(&bus, &parts, "echo-a");
    let mut b = subscribe(&bus, &parts, "echo-b");
    let workloads = |a_policies: &[&str], b_mode| {
        vec![
            workload("echo-a", MtlsMode::Permissive, a_policies),
            workload("echo-b", b_mode, &[]),
        ]
    };

    bus.publish(with_mesh(1, workloads(&[], MtlsMode::Permissive), vec![]));
    let first = next(&mut a).await;
    assert_eq!(
        (first.version, first.authorization.len(), first.ports.len()),
        (1, 0, 1)
    );
    // The workload's own identity, from its ServiceAccount.
    assert_eq!(
        first.identity.as_deref(),
        Some("spiffe://cluster.local/ns/shop/sa/echo-a")
    );
    assert_eq!(next(&mut b).await.version, 1);

    // A policy that selects echo-a only: echo-a is sent it, and its sidecar denies with it.
    bus.publish(with_mesh(
        2,
        workloads(&["lockdown"], MtlsMode::Permissive),
        vec![allow_nothing("lockdown")],
    ));
    let second = next(&mut a).await;
    assert_eq!(second.version, 2);
    let authorizer =
        Authorizer::new(proto::policy::to_authorization(second.authorization).unwrap());
    let request = ferry_model::policy::Request {
        principal: Some("cluster.local/ns/shop/sa/web"),
        namespace: Some("shop"),
        port: 9000,
        http: None,
    };
    assert_eq!(authorizer.authorize(&request), Decision::NotAllowed);

    // echo-b turns strict: echo-b is sent an answer.
    bus.publish(with_mesh(
        3,
        workloads(&["lockdown"], MtlsMode::Strict),
        vec![allow_nothing("lockdown")],
    ));
    let strict = next(&mut b).await;
    assert_eq!(
        (strict.version, strict.mtls_mode),
        (3, proto::MtlsMode::Strict as i32)
    );
    // echo-a was sent nothing for version 2 -> 3 (echo-b's alone changed): its next answer is
    // the next change of its own, version 4.
    bus.publish(with_mesh(
        4,
        workloads(&[], MtlsMode::Strict),
        vec![allow_nothing("lockdown")],
    ));
    let fourth = next(&mut a).await;
    assert_eq!(
        (fourth.version, fourth.authorization.len()),
        (4, 0),
        "version 3 changed nothing of echo-a's"
    );
}
