//! The mesh's inbound answer on the wire: authorization policies, the mTLS mode and the
//! protocol hint, to and from their model forms, so a sidecar rebuilds the
//! [`Authorizer`](crate::policy::Authorizer) the control plane meant. Proto → model checks
//! what the wire allows and the model does not (ports above 65535 or 0, unknown enum values,
//! patterns Istio refuses) and names the field.

use super::convert::{ProtoError, at, at_index, each, err};
use crate::mesh::ProtocolHint;
use crate::policy as m;
use crate::proto as pb;
use crate::workload::MtlsMode;

impl From<ProtocolHint> for pb::ProtocolHint {
    fn from(h: ProtocolHint) -> pb::ProtocolHint {
        match h {
            ProtocolHint::Detect => pb::ProtocolHint::Detect,
            ProtocolHint::Http1 => pb::ProtocolHint::Http1,
            ProtocolHint::Http2 => pb::ProtocolHint::Http2,
            ProtocolHint::Opaque => pb::ProtocolHint::Opaque,
        }
    }
}

impl From<pb::ProtocolHint> for ProtocolHint {
    fn from(h: pb::ProtocolHint) -> ProtocolHint {
        match h {
            pb::ProtocolHint::Detect => ProtocolHint::Detect,
            pb::ProtocolHint::Http1 => ProtocolHint::Http1,
            pb::ProtocolHint::Http2 => ProtocolHint::Http2,
            pb::ProtocolHint::Opaque => ProtocolHint::Opaque,
        }
    }
}

impl From<MtlsMode> for pb::MtlsMode {
    fn from(mode: MtlsMode) -> pb::MtlsMode {
        match mode {
            MtlsMode::Permissive => pb::MtlsMode::Permissive,
            MtlsMode::Strict => pb::MtlsMode::Strict,
        }
    }
}

impl From<pb::MtlsMode> for MtlsMode {
    fn from(mode: pb::MtlsMode) -> MtlsMode {
        match mode {
            pb::MtlsMode::Permissive => MtlsMode::Permissive,
            pb::MtlsMode::Strict => MtlsMode::Strict,
        }
    }
}

fn ports(ports: &[u16]) -> Vec<u32> {
    ports.iter().map(|&p| u32::from(p)).collect()
}

impl From<&m::AuthorizationPolicy> for pb::AuthorizationPolicy {
    fn from(p: &m::AuthorizationPolicy) -> pb::AuthorizationPolicy {
        let action = match p.action {
            m::Action::Allow => pb::AuthorizationAction::Allow,
            m::Action::Deny => pb::AuthorizationAction::Deny,
        };
        pb::AuthorizationPolicy {
            namespace: p.policy.namespace.clone(),
            name: p.policy.name.clone(),
            action: action as i32,
            rules: p
                .rules
                .iter()
                .map(|r| pb::AuthorizationRule {
                    from: r
                        .from
                        .iter()
                        .map(|s| pb::AuthorizationSource {
                            principals: s.principals.clone(),
                            not_principals: s.not_principals.clone(),
                            namespaces: s.namespaces.clone(),
                            not_namespaces: s.not_namespaces.clone(),
                        })
                        .collect(),
                    to: r
                        .to
                        .iter()
                        .map(|o| pb::AuthorizationOperation {
                            ports: ports(&o.ports),
                            not_ports: ports(&o.not_ports),
                            methods: o.methods.clone(),
                            not_methods: o.not_methods.clone(),
                            paths: o.paths.clone(),
                            not_paths: o.not_paths.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

fn to_ports(ports: Vec<u32>, field: &str) -> Result<Vec<u16>, ProtoError> {
    ports
        .into_iter()
        .enumerate()
        .map(|(i, p)| match u16::try_from(p) {
            Ok(p) if p > 0 => Ok(p),
            _ => err(
                &format!("{field}[{i}]"),
                format!("{p} is not a port (1 to 65535)"),
            ),
        })
        .collect()
}

fn to_patterns(values: Vec<String>, field: &str) -> Result<Vec<String>, ProtoError> {
    for (i, v) in values.iter().enumerate() {
        if let Err(e) = m::check_pattern(v) {
            return err(&format!("{field}[{i}]"), e.to_string());
        }
    }
    Ok(values)
}

fn to_source(s: pb::AuthorizationSource, f: &str) -> Result<m::Source, ProtoError> {
    Ok(m::Source {
        principals: to_patterns(s.principals, &at(f, "principals"))?,
        not_principals: to_patterns(s.not_principals, &at(f, "not_principals"))?,
        namespaces: to_patterns(s.namespaces, &at(f, "namespaces"))?,
        not_namespaces: to_patterns(s.not_namespaces, &at(f, "not_namespaces"))?,
    })
}

fn to_operation(o: pb::AuthorizationOperation, f: &str) -> Result<m::Operation, ProtoError> {
    Ok(m::Operation {
        ports: to_ports(o.ports, &at(f, "ports"))?,
        not_ports: to_ports(o.not_ports, &at(f, "not_ports"))?,
        methods: to_patterns(o.methods, &at(f, "methods"))?,
        not_methods: to_patterns(o.not_methods, &at(f, "not_methods"))?,
        paths: to_patterns(o.paths, &at(f, "paths"))?,
        not_paths: to_patterns(o.not_paths, &at(f, "not_paths"))?,
    })
}

fn to_rule(r: pb::AuthorizationRule, f: &str) -> Result<m::Rule, ProtoError> {
    Ok(m::Rule {
        from: each(r.from, f, "from", to_source)?,
        to: each(r.to, f, "to", to_operation)?,
    })
}

/// The policies of an `InboundPolicy.authorization`, each checked; the field at fault is
/// named from `authorization[i]` down.
pub fn to_authorization(
    policies: Vec<pb::AuthorizationPolicy>,
) -> Result<Vec<m::AuthorizationPolicy>, ProtoError> {
    policies
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let f = at_index("inbound_policy", "authorization", i);
            let action = match pb::AuthorizationAction::try_from(p.action) {
                Ok(pb::AuthorizationAction::Allow) => m::Action::Allow,
                Ok(pb::AuthorizationAction::Deny) => m::Action::Deny,
                Err(_) => {
                    return err(
                        &at(&f, "action"),
                        format!("{} is not ALLOW or DENY", p.action),
                    );
                }
            };
            if p.name.is_empty() {
                return err(&at(&f, "name"), "empty");
            }
            Ok(m::AuthorizationPolicy {
                policy: m::PolicyRef {
                    namespace: p.namespace,
                    name: p.name,
                },
                action,
                rules: each(p.rules, &f, "rules", to_rule)?,
            })
        })
        .collect()
}

/// `InboundPolicy.mtls_mode`; an unknown value is refused.
pub fn to_mtls_mode(value: i32) -> Result<MtlsMode, ProtoError> {
    pb::MtlsMode::try_from(value)
        .map(MtlsMode::from)
        .or_else(|_| {
            err(
                "inbound_policy.mtls_mode",
                format!("{value} is not PERMISSIVE or STRICT"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, AuthorizationPolicy, Authorizer, HttpRequest, Request};

    fn policies() -> Vec<AuthorizationPolicy> {
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        vec![
            AuthorizationPolicy {
                policy: m::PolicyRef {
                    namespace: "shop".into(),
                    name: "deny-admin".into(),
                },
                action: Action::Deny,
                rules: vec![m::Rule {
                    from: vec![m::Source {
                        not_namespaces: strings(&["shop"]),
                        ..m::Source::default()
                    }],
                    to: vec![m::Operation {
                        paths: strings(&["/admin*"]),
                        ..m::Operation::default()
                    }],
                }],
            },
            AuthorizationPolicy {
                policy: m::PolicyRef {
                    namespace: "ferry-system".into(),
                    name: "allow-mesh".into(),
                },
                action: Action::Allow,
                rules: vec![m::Rule {
                    from: vec![m::Source {
                        principals: strings(&["cluster.local/*"]),
                        not_principals: strings(&["*/sa/intruder"]),
                        ..m::Source::default()
                    }],
                    to: vec![m::Operation {
                        ports: vec![8080],
                        not_ports: vec![9090],
                        methods: strings(&["GET", "POST"]),
                        not_methods: strings(&["DELETE"]),
                        not_paths: strings(&["*.secret"]),
                        ..m::Operation::default()
                    }],
                }],
            },
            AuthorizationPolicy {
                policy: m::PolicyRef {
                    namespace: "shop".into(),
                    name: "allow-nothing".into(),
                },
                action: Action::Allow,
                rules: vec![],
            },
        ]
    }

    #[test]
    fn policies_survive_the_wire_and_decide_the_same() {
        let sent = policies();
        let wire: Vec<pb::AuthorizationPolicy> = sent.iter().map(Into::into).collect();
        let got = to_authorization(wire).unwrap();
        assert_eq!(got, sent);
        let (before, after) = (Authorizer::new(sent), Authorizer::new(got));
        let request = Request {
            principal: Some("cluster.local/ns/jobs/sa/batch"),
            namespace: Some("jobs"),
            port: 8080,
            http: Some(HttpRequest {
                method: "GET",
                path: "/admin/users",
            }),
        };
        assert!(!before.authorize(&request).is_allowed());
        assert_eq!(before.authorize(&request), after.authorize(&request));
        for mode in [MtlsMode::Permissive, MtlsMode::Strict] {
            assert_eq!(to_mtls_mode(pb::MtlsMode::from(mode) as i32), Ok(mode));
        }
    }

    #[test]
    fn what_the_model_cannot_hold_is_refused_by_field() {
        let wire = |f: fn(&mut pb::AuthorizationPolicy)| {
            let mut p: pb::AuthorizationPolicy = (&policies()[1]).into();
            f(&mut p);
            to_authorization(vec![p]).unwrap_err().field
        };
        assert_eq!(
            wire(|p| p.rules[0].to[0].ports[0] = 70_000),
            "inbound_policy.authorization[0].rules[0].to[0].ports[0]"
        );
        assert_eq!(
            wire(|p| p.rules[0].to[0].not_ports.push(0)),
            "inbound_policy.authorization[0].rules[0].to[0].not_ports[1]"
        );
        assert_eq!(
            wire(|p| p.rules[0].from[0].principals[0] = "a*b".into()),
            "inbound_policy.authorization[0].rules[0].from[0].principals[0]"
        );
        assert_eq!(
            wire(|p| p.action = 7),
            "inbound_policy.authorization[0].action"
        );
        assert_eq!(
            to_mtls_mode(5).unwrap_err().field,
            "inbound_policy.mtls_mode"
        );
    }
}
