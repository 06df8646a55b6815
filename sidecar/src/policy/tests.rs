use ferry_model::mesh::WorkloadId;
use ferry_model::proto;
use prometheus_client::registry::Registry;

use super::*;
use crate::authorize::Authorize;

fn web() -> WorkloadId {
    WorkloadId::new("cluster.local", "shop", "web")
}

fn other() -> WorkloadId {
    WorkloadId::new("cluster.local", "batch", "job")
}

fn allow_from(principal: &str) -> proto::AuthorizationPolicy {
    proto::AuthorizationPolicy {
        namespace: "shop".into(),
        name: "allow-web".into(),
        action: proto::AuthorizationAction::Allow as i32,
        rules: vec![proto::AuthorizationRule {
            from: vec![proto::AuthorizationSource {
                principals: vec![principal.into()],
                ..Default::default()
            }],
            to: Vec::new(),
        }],
    }
}

fn deny_path(path: &str) -> proto::AuthorizationPolicy {
    proto::AuthorizationPolicy {
        namespace: "shop".into(),
        name: "deny-admin".into(),
        action: proto::AuthorizationAction::Deny as i32,
        rules: vec![proto::AuthorizationRule {
            from: Vec::new(),
            to: vec![proto::AuthorizationOperation {
                paths: vec![path.into()],
                ..Default::default()
            }],
        }],
    }
}

fn answer(
    version: u64,
    mode: proto::MtlsMode,
    authorization: Vec<proto::AuthorizationPolicy>,
) -> proto::InboundPolicy {
    proto::InboundPolicy {
        version,
        mtls_mode: mode as i32,
        authorization,
        ..Default::default()
    }
}

fn get() -> http::Method {
    http::Method::GET
}

#[test]
fn before_any_answer_everything_is_allowed_in_the_configured_mode() {
    let policy = InboundPolicy::new(MtlsMode::Strict);
    assert_eq!(policy.mtls_mode(), Some(MtlsMode::Strict));
    assert!(policy.authorize(None, 8080, None));
    assert!(policy.authorize(Some(&web()), 8080, Some((&get(), "/"))));
    assert_eq!(policy.current().version, 0);
}

#[test]
fn the_peer_principal_and_namespace_are_what_policies_match() {
    let policy = InboundPolicy::new(MtlsMode::Permissive);
    policy
        .apply(answer(
            3,
            proto::MtlsMode::Permissive,
            vec![allow_from("cluster.local/ns/shop/sa/web")],
        ))
        .unwrap();
    assert!(policy.authorize(Some(&web()), 8080, Some((&get(), "/"))));
    assert!(policy.authorize(Some(&web()), 9000, None));
    assert!(!policy.authorize(Some(&other()), 8080, Some((&get(), "/"))));
    // A plaintext peer has no principal: an ALLOW policy naming one does not match it.
    assert!(!policy.authorize(None, 8080, Some((&get(), "/"))));
    assert_eq!(
        policy.decide(Some(&other()), 8080, None),
        Decision::NotAllowed
    );

    let by_namespace = InboundPolicy::new(MtlsMode::Permissive);
    let mut p = allow_from("unused");
    p.rules[0].from[0] = proto::AuthorizationSource {
        namespaces: vec!["batch".into()],
        ..Default::default()
    };
    by_namespace
        .apply(answer(1, proto::MtlsMode::Permissive, vec![p]))
        .unwrap();
    assert!(by_namespace.authorize(Some(&other()), 8080, None));
    assert!(!by_namespace.authorize(Some(&web()), 8080, None));
}

#[test]
fn a_deny_policy_on_a_path_denies_only_that_path_and_names_itself() {
    let policy = InboundPolicy::new(MtlsMode::Permissive);
    policy
        .apply(answer(
            1,
            proto::MtlsMode::Permissive,
            vec![deny_path("/admin/*")],
        ))
        .unwrap();
    assert!(policy.authorize(Some(&web()), 8080, Some((&get(), "/orders"))));
    match policy.decide(Some(&web()), 8080, Some((&get(), "/admin/users"))) {
        Decision::Denied(p) => assert_eq!(p.to_string(), "shop/deny-admin"),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn each_answer_replaces_the_policy_and_its_mode() {
    let policy = InboundPolicy::new(MtlsMode::Permissive);
    policy
        .apply(answer(1, proto::MtlsMode::Strict, vec![deny_path("/x")]))
        .unwrap();
    assert_eq!(policy.mtls_mode(), Some(MtlsMode::Strict));
    assert!(!policy.authorize(None, 80, Some((&get(), "/x"))));
    policy
        .apply(answer(2, proto::MtlsMode::Permissive, Vec::new()))
        .unwrap();
    assert_eq!(policy.mtls_mode(), Some(MtlsMode::Permissive));
    assert!(policy.authorize(None, 80, Some((&get(), "/x"))));
    assert_eq!(policy.current().version, 2);
}

#[test]
fn a_refused_answer_keeps_the_last_good_policy() {
    let policy = InboundPolicy::new(MtlsMode::Permissive);
    policy
        .apply(answer(1, proto::MtlsMode::Strict, vec![deny_path("/x")]))
        .unwrap();
    let good = policy.current();

    let mut bad_port = deny_path("/y");
    bad_port.rules[0].to[0].ports = vec![70_000];
    let e = policy
        .apply(answer(2, proto::MtlsMode::Permissive, vec![bad_port]))
        .unwrap_err();
    assert!(e.to_string().contains("authorization"), "{e}");
    assert_eq!(policy.current(), good);

    let mut unknown_mode = answer(3, proto::MtlsMode::Permissive, Vec::new());
    unknown_mode.mtls_mode = 7;
    let e = policy.apply(unknown_mode).unwrap_err();
    assert!(e.to_string().contains("mtls_mode"), "{e}");
    assert_eq!(policy.current(), good);
    assert_eq!(policy.mtls_mode(), Some(MtlsMode::Strict));
}

#[test]
fn decisions_and_updates_are_counted_by_policy_and_result() {
    let policy = InboundPolicy::new(MtlsMode::Permissive);
    let mut registry = Registry::default();
    policy.register_metrics(&mut registry);
    policy
        .apply(answer(
            1,
            proto::MtlsMode::Permissive,
            vec![deny_path("/x")],
        ))
        .unwrap();
    let mut bad = deny_path("/y");
    bad.action = 9;
    policy
        .apply(answer(2, proto::MtlsMode::Permissive, vec![bad]))
        .unwrap_err();
    policy.authorize(None, 80, Some((&get(), "/x")));
    policy.authorize(None, 80, Some((&get(), "/x")));
    policy.authorize(None, 80, Some((&get(), "/ok")));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        r#"ferry_sidecar_policy_decisions_total{policy="shop/deny-admin",result="denied"} 2"#,
        r#"ferry_sidecar_policy_decisions_total{policy="",result="allowed_by_default"} 1"#,
        r#"ferry_sidecar_policy_updates_total{result="applied"} 1"#,
        r#"ferry_sidecar_policy_updates_total{result="refused"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}
