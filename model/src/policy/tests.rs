//! Istio's documented semantics, one table per part of a rule.

use super::*;

const WEB: &str = "cluster.local/ns/shop/sa/web";
const BATCH: &str = "cluster.local/ns/jobs/sa/batch";

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| (*s).to_owned()).collect()
}

fn policy(name: &str, action: Action, rules: Vec<Rule>) -> AuthorizationPolicy {
    AuthorizationPolicy {
        policy: PolicyRef {
            namespace: "shop".into(),
            name: name.into(),
        },
        action,
        rules,
    }
}

fn http<'a>(principal: Option<&'a str>, port: u16, method: &'a str, path: &'a str) -> Request<'a> {
    Request {
        principal,
        namespace: principal.and_then(|p| p.split('/').nth(2)),
        port,
        http: Some(HttpRequest { method, path }),
    }
}

fn tcp(principal: Option<&str>, port: u16) -> Request<'_> {
    Request {
        principal,
        namespace: principal.and_then(|p| p.split('/').nth(2)),
        port,
        http: None,
    }
}

fn from(source: Source) -> Rule {
    Rule {
        from: vec![source],
        to: Vec::new(),
    }
}

fn to(operation: Operation) -> Rule {
    Rule {
        from: Vec::new(),
        to: vec![operation],
    }
}

#[test]
fn patterns_are_exact_prefix_suffix_or_presence() {
    for (pattern, value, want) in [
        ("a/b", Some("a/b"), true),
        ("a/b", Some("a/bc"), false),
        ("a/*", Some("a/bc"), true),
        ("a/*", Some("b/a/"), false),
        ("*/b", Some("x/b"), true),
        ("*/b", Some("x/bc"), false),
        ("*", Some("anything"), true),
        ("*", Some(""), false),
        ("*", None, false),
        ("a/*", None, false),
    ] {
        assert_eq!(matches(pattern, value), want, "{pattern} vs {value:?}");
    }
    for good in ["*", "a*", "*a", "cluster.local/ns/shop/sa/web"] {
        assert_eq!(check_pattern(good), Ok(()), "{good}");
    }
    for bad in ["", "a*b", "**", "*a*", "a**"] {
        assert!(check_pattern(bad).is_err(), "{bad}");
    }
}

#[test]
fn no_policy_allows_everything() {
    let none = Authorizer::new([]);
    assert_eq!(none.authorize(&tcp(None, 80)), Decision::AllowedByDefault);
    assert_eq!(
        none.authorize(&http(Some(WEB), 80, "GET", "/")),
        Decision::AllowedByDefault
    );
}

#[test]
fn an_allow_policy_without_rules_denies_everything_and_one_empty_rule_allows_everything() {
    let nothing = Authorizer::new([policy("allow-nothing", Action::Allow, vec![])]);
    assert_eq!(nothing.authorize(&tcp(Some(WEB), 80)), Decision::NotAllowed);
    assert_eq!(
        nothing.authorize(&http(None, 80, "GET", "/")),
        Decision::NotAllowed
    );
    let all = Authorizer::new([policy("allow-all", Action::Allow, vec![Rule::default()])]);
    let by = |name: &str| {
        Decision::Allowed(PolicyRef {
            namespace: "shop".into(),
            name: name.into(),
        })
    };
    assert_eq!(all.authorize(&tcp(None, 80)), by("allow-all"));
    assert_eq!(
        all.authorize(&http(Some(WEB), 1, "PUT", "/x")),
        by("allow-all")
    );
    // A DENY policy without rules matches nothing, so denies nothing.
    let deny_nothing = Authorizer::new([policy("deny", Action::Deny, vec![])]);
    assert_eq!(
        deny_nothing.authorize(&tcp(None, 80)),
        Decision::AllowedByDefault
    );
}

#[test]
fn deny_is_evaluated_before_allow() {
    let deny_batch = policy(
        "deny-batch",
        Action::Deny,
        vec![from(Source {
            namespaces: strings(&["jobs"]),
            ..Source::default()
        })],
    );
    let allow_all = policy("allow-all", Action::Allow, vec![Rule::default()]);
    let a = Authorizer::new([allow_all, deny_batch]);
    assert_eq!(
        a.authorize(&tcp(Some(BATCH), 80))
            .policy()
            .map(|p| p.name.as_str()),
        Some("deny-batch")
    );
    assert!(!a.authorize(&tcp(Some(BATCH), 80)).is_allowed());
    assert!(a.authorize(&tcp(Some(WEB), 80)).is_allowed());
    // A DENY policy alone does not turn the rest into deny-by-default.
    let only_deny = Authorizer::new([policy(
        "deny-batch",
        Action::Deny,
        vec![from(Source {
            namespaces: strings(&["jobs"]),
            ..Source::default()
        })],
    )]);
    assert_eq!(
        only_deny.authorize(&tcp(Some(WEB), 80)),
        Decision::AllowedByDefault
    );
}

#[test]
fn sources_match_principals_and_namespaces() {
    let cases: Vec<(Source, Option<&str>, bool)> = vec![
        (
            Source {
                principals: strings(&[WEB]),
                ..Source::default()
            },
            Some(WEB),
            true,
        ),
        (
            Source {
                principals: strings(&[WEB]),
                ..Source::default()
            },
            Some(BATCH),
            false,
        ),
        (
            Source {
                principals: strings(&[WEB]),
                ..Source::default()
            },
            None,
            false,
        ),
        // `*`: any authenticated peer; plaintext has no principal.
        (
            Source {
                principals: strings(&["*"]),
                ..Source::default()
            },
            Some(BATCH),
            true,
        ),
        (
            Source {
                principals: strings(&["*"]),
                ..Source::default()
            },
            None,
            false,
        ),
        (
            Source {
                principals: strings(&["cluster.local/ns/shop/*"]),
                ..Source::default()
            },
            Some(WEB),
            true,
        ),
        (
            Source {
                principals: strings(&["*/sa/batch"]),
                ..Source::default()
            },
            Some(WEB),
            false,
        ),
        // notPrincipals: none may match; a plaintext peer matches none, so passes.
        (
            Source {
                not_principals: strings(&[WEB]),
                ..Source::default()
            },
            Some(WEB),
            false,
        ),
        (
            Source {
                not_principals: strings(&[WEB]),
                ..Source::default()
            },
            Some(BATCH),
            true,
        ),
        (
            Source {
                not_principals: strings(&["*"]),
                ..Source::default()
            },
            None,
            true,
        ),
        (
            Source {
                not_principals: strings(&["*"]),
                ..Source::default()
            },
            Some(WEB),
            false,
        ),
        (
            Source {
                namespaces: strings(&["shop"]),
                ..Source::default()
            },
            Some(WEB),
            true,
        ),
        (
            Source {
                namespaces: strings(&["sh*"]),
                ..Source::default()
            },
            Some(WEB),
            true,
        ),
        (
            Source {
                namespaces: strings(&["shop"]),
                ..Source::default()
            },
            None,
            false,
        ),
        (
            Source {
                not_namespaces: strings(&["jobs"]),
                ..Source::default()
            },
            Some(BATCH),
            false,
        ),
        (
            Source {
                not_namespaces: strings(&["jobs"]),
                ..Source::default()
            },
            Some(WEB),
            true,
        ),
        // Several fields: all must match; several values: one is enough.
        (
            Source {
                principals: strings(&[BATCH, WEB]),
                namespaces: strings(&["shop"]),
                ..Source::default()
            },
            Some(WEB),
            true,
        ),
        (
            Source {
                principals: strings(&[BATCH, WEB]),
                namespaces: strings(&["shop"]),
                ..Source::default()
            },
            Some(BATCH),
            false,
        ),
    ];
    for (i, (source, principal, want)) in cases.into_iter().enumerate() {
        let a = Authorizer::new([policy("p", Action::Allow, vec![from(source)])]);
        assert_eq!(
            a.authorize(&tcp(principal, 80)).is_allowed(),
            want,
            "case {i}"
        );
    }
}

#[test]
fn operations_match_ports_methods_and_paths() {
    let cases: Vec<(Operation, Request<'_>, bool)> = vec![
        (
            Operation {
                ports: vec![80],
                ..Operation::default()
            },
            tcp(None, 80),
            true,
        ),
        (
            Operation {
                ports: vec![80],
                ..Operation::default()
            },
            tcp(None, 81),
            false,
        ),
        (
            Operation {
                not_ports: vec![80],
                ..Operation::default()
            },
            tcp(None, 80),
            false,
        ),
        (
            Operation {
                not_ports: vec![80],
                ..Operation::default()
            },
            tcp(None, 81),
            true,
        ),
        (
            Operation {
                methods: strings(&["GET", "HEAD"]),
                ..Operation::default()
            },
            http(None, 80, "HEAD", "/"),
            true,
        ),
        (
            Operation {
                methods: strings(&["GET"]),
                ..Operation::default()
            },
            http(None, 80, "POST", "/"),
            false,
        ),
        (
            Operation {
                not_methods: strings(&["DELETE"]),
                ..Operation::default()
            },
            http(None, 80, "DELETE", "/"),
            false,
        ),
        (
            Operation {
                paths: strings(&["/api/*"]),
                ..Operation::default()
            },
            http(None, 80, "GET", "/api/x"),
            true,
        ),
        (
            Operation {
                paths: strings(&["/api/*"]),
                ..Operation::default()
            },
            http(None, 80, "GET", "/apix"),
            false,
        ),
        (
            Operation {
                paths: strings(&["*.png"]),
                ..Operation::default()
            },
            http(None, 80, "GET", "/a/b.png"),
            true,
        ),
        (
            Operation {
                paths: strings(&["/exact"]),
                ..Operation::default()
            },
            http(None, 80, "GET", "/exact?q=1"),
            true,
        ),
        (
            Operation {
                not_paths: strings(&["/admin*"]),
                ..Operation::default()
            },
            http(None, 80, "GET", "/admin/x"),
            false,
        ),
        (
            Operation {
                ports: vec![8080],
                methods: strings(&["GET"]),
                ..Operation::default()
            },
            http(None, 80, "GET", "/"),
            false,
        ),
    ];
    for (i, (operation, request, want)) in cases.into_iter().enumerate() {
        let a = Authorizer::new([policy("p", Action::Allow, vec![to(operation)])]);
        assert_eq!(a.authorize(&request).is_allowed(), want, "case {i}");
    }
}

#[test]
fn rules_need_from_and_to_and_one_rule_is_enough() {
    let rule = Rule {
        from: vec![Source {
            principals: strings(&[WEB]),
            ..Source::default()
        }],
        to: vec![
            Operation {
                ports: vec![80],
                ..Operation::default()
            },
            Operation {
                ports: vec![443],
                ..Operation::default()
            },
        ],
    };
    let other = from(Source {
        namespaces: strings(&["jobs"]),
        ..Source::default()
    });
    let a = Authorizer::new([policy("p", Action::Allow, vec![rule, other])]);
    for (request, want) in [
        (tcp(Some(WEB), 80), true),
        (tcp(Some(WEB), 443), true),
        (tcp(Some(WEB), 8080), false),
        (tcp(Some(BATCH), 8080), true),
        (tcp(None, 80), false),
    ] {
        assert_eq!(a.authorize(&request).is_allowed(), want, "{request:?}");
    }
}

#[test]
fn tcp_never_matches_an_allow_rule_with_http_fields_and_ignores_them_in_deny() {
    let get_only = Operation {
        ports: vec![9000],
        methods: strings(&["GET"]),
        ..Operation::default()
    };
    let allow = Authorizer::new([policy(
        "allow-get",
        Action::Allow,
        vec![to(get_only.clone())],
    )]);
    assert_eq!(allow.authorize(&tcp(Some(WEB), 9000)), Decision::NotAllowed);
    assert!(
        allow
            .authorize(&http(Some(WEB), 9000, "GET", "/"))
            .is_allowed()
    );

    // The DENY rule is read as `ports: [9000]` for TCP: every TCP connection to 9000 is denied.
    let deny = Authorizer::new([policy("deny-get", Action::Deny, vec![to(get_only)])]);
    assert!(!deny.authorize(&tcp(Some(WEB), 9000)).is_allowed());
    assert!(deny.authorize(&tcp(Some(WEB), 9001)).is_allowed());
    assert!(
        deny.authorize(&http(Some(WEB), 9000, "POST", "/"))
            .is_allowed()
    );
    assert!(
        !deny
            .authorize(&http(Some(WEB), 9000, "GET", "/"))
            .is_allowed()
    );
}

#[test]
fn the_deciding_policy_is_named() {
    let a = Authorizer::new([
        policy(
            "allow-web",
            Action::Allow,
            vec![from(Source {
                principals: strings(&[WEB]),
                ..Source::default()
            })],
        ),
        policy(
            "allow-batch",
            Action::Allow,
            vec![from(Source {
                principals: strings(&[BATCH]),
                ..Source::default()
            })],
        ),
    ]);
    assert_eq!(
        a.authorize(&tcp(Some(BATCH), 1))
            .policy()
            .map(ToString::to_string),
        Some("shop/allow-batch".to_owned())
    );
    assert_eq!(a.authorize(&tcp(None, 1)).policy(), None);
}
