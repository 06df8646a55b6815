//! Ingress annotations, read and checked in `crate::ingress_annotations` through
//! [`crate::validate::object`] and [`crate::validate::ingress_annotations`].

use ferry_model::{BackendProtocol, CookieAffinity, IngressOptions, IngressRef, Severity};

use super::*;

/// An Ingress with `annotations` (the inside of a flow mapping) and one path.
fn annotated(annotations: &str, path: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\n\
         metadata: {{name: web, namespace: shop, annotations: {{{annotations}}}}}\n\
         spec: {{rules: [{{host: shop.example.com, http: {{paths: [{{path: {path:?}, pathType: ImplementationSpecific, backend: {BACKEND}}}]}}}}]}}\n"
    )
}

/// What the annotations of the one Ingress in `yaml` read as.
fn read(yaml: &str) -> crate::ingress_annotations::Annotations {
    let loaded = manifest::parse("t.yaml", yaml.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let m = &loaded.manifests[0];
    let crate::object::Object::Ingress(ing) = &m.object else {
        panic!("not an Ingress")
    };
    crate::validate::ingress_annotations(m, ing)
}

const NGINX: &str = "nginx.ingress.kubernetes.io";

#[test]
fn annotations_every_one_read_typed() {
    let yaml = annotated(
        &format!(
            "{NGINX}/rewrite-target: /$2, {NGINX}/use-regex: \"true\", {NGINX}/backend-protocol: grpcs, \
             {NGINX}/proxy-body-size: 8m, {NGINX}/proxy-connect-timeout: \"5\", \
             {NGINX}/proxy-read-timeout: 120s, {NGINX}/proxy-send-timeout: \"30\", \
             {NGINX}/ssl-redirect: \"false\", {NGINX}/force-ssl-redirect: \"true\", \
             {NGINX}/app-root: /app, {NGINX}/affinity: cookie, {NGINX}/session-cookie-name: route, \
             {NGINX}/session-cookie-max-age: \"3600\", {NGINX}/session-cookie-path: /shop"
        ),
        "/shop(/|$)(.*)",
    );
    check(&yaml, &[]);
    let a = read(&yaml);
    assert_eq!(
        a.options,
        IngressOptions {
            ingress: IngressRef::default(),
            rewrite_target: Some("/$2".into()),
            use_regex: true,
            backend_protocol: Some(BackendProtocol::GRPCS),
            proxy_body_size: Some(8 << 20),
            proxy_connect_timeout_ms: Some(5_000),
            proxy_read_timeout_ms: Some(120_000),
            proxy_send_timeout_ms: Some(30_000),
            ssl_redirect: Some(false),
            force_ssl_redirect: true,
            app_root: Some("/app".into()),
            affinity: Some(CookieAffinity {
                name: "route".into(),
                max_age_seconds: Some(3600),
                path: Some("/shop".into()),
            }),
        }
    );
    assert_eq!(a.canary, None);
}

#[test]
fn annotations_ferry_prefix_reads_the_same_and_wins() {
    let ferry_only = annotated(
        "ferry.dev/proxy-body-size: 1g, ferry.dev/use-regex: \"true\"",
        "/",
    );
    check(&ferry_only, &[]);
    let a = read(&ferry_only);
    assert_eq!(a.options.proxy_body_size, Some(1 << 30));
    assert!(a.options.use_regex);

    // Both set: ferry.dev/ wins, and the shadowed nginx value is not even checked.
    let both = annotated(
        &format!(
            "{NGINX}/proxy-body-size: not-a-size, ferry.dev/proxy-body-size: 512k, \
             {NGINX}/backend-protocol: HTTP, ferry.dev/backend-protocol: h2c"
        ),
        "/",
    );
    check(&both, &[]);
    let a = read(&both);
    assert_eq!(a.options.proxy_body_size, Some(512 << 10));
    assert_eq!(a.options.backend_protocol, Some(BackendProtocol::H2C));

    // The problem names the key that won.
    check(
        &annotated(
            &format!("{NGINX}/proxy-body-size: 1m, ferry.dev/proxy-body-size: 1x"),
            "/",
        ),
        &[
            "t.yaml: Ingress shop/web: metadata.annotations[ferry.dev/proxy-body-size]: Invalid value: \"1x\": \
             must be a size in bytes, optionally with a k, m or g suffix (such as 8m); 0 means unlimited",
        ],
    );
}

#[test]
fn annotations_unknown_ferry_names_warn_other_prefixes_are_ignored() {
    let yaml = annotated(
        &format!(
            "ferry.dev/proxy-bodysize: 8m, {NGINX}/configuration-snippet: x, \
             example.com/rewrite-target: \"$$$\", kubernetes.io/ingress.class: ferry"
        ),
        "/",
    );
    let p = all(&yaml);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].severity, Severity::Warning);
    assert_eq!(p[0].field, "metadata.annotations[ferry.dev/proxy-bodysize]");
    assert!(
        p[0].message
            .starts_with("unknown annotation; ignored (ferry reads rewrite-target, use-regex,"),
        "{}",
        p[0].message
    );
    let a = read(&yaml);
    assert_eq!(a.options, IngressOptions::default());
}

#[test]
fn annotations_sizes_timeouts_booleans_and_protocols_as_ingress_nginx_takes_them() {
    let body_size = |v: &str| read(&annotated(&format!("{NGINX}/proxy-body-size: {v:?}"), "/"));
    for (v, bytes) in [
        ("100", 100),
        ("0", 0),
        ("512k", 512 << 10),
        ("512K", 512 << 10),
        ("8m", 8 << 20),
        ("8M", 8 << 20),
        ("1g", 1 << 30),
        ("2G", 2 << 30),
    ] {
        assert_eq!(body_size(v).options.proxy_body_size, Some(bytes), "{v}");
    }
    let read_timeout = |v: &str| {
        read(&annotated(
            &format!("{NGINX}/proxy-read-timeout: {v:?}"),
            "/",
        ))
    };
    assert_eq!(
        read_timeout("60").options.proxy_read_timeout_ms,
        Some(60_000)
    );
    assert_eq!(
        read_timeout("60s").options.proxy_read_timeout_ms,
        Some(60_000)
    );
    for (v, b) in [
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("t", true),
        ("1", true),
        ("false", false),
        ("False", false),
        ("F", false),
        ("0", false),
    ] {
        let a = read(&annotated(&format!("{NGINX}/ssl-redirect: {v:?}"), "/"));
        assert_eq!(a.options.ssl_redirect, Some(b), "{v}");
    }
    for (v, p) in [
        ("HTTP", BackendProtocol::HTTP),
        ("https", BackendProtocol::HTTPS),
        ("gRPC", BackendProtocol::GRPC),
        ("GRPCS", BackendProtocol::GRPCS),
        ("h2c", BackendProtocol::H2C),
    ] {
        let a = read(&annotated(&format!("{NGINX}/backend-protocol: {v:?}"), "/"));
        assert_eq!(a.options.backend_protocol, Some(p), "{v}");
    }
    // "false" is the same as not set.
    let a = read(&annotated(
        &format!("{NGINX}/use-regex: \"false\", {NGINX}/force-ssl-redirect: \"false\""),
        "/(",
    ));
    assert_eq!(a.options, IngressOptions::default());
}

#[test]
fn annotations_invalid_values_are_errors_naming_the_annotation() {
    let size = "must be a size in bytes, optionally with a k, m or g suffix (such as 8m); 0 means unlimited";
    let seconds = "must be a positive whole number of seconds (such as 60 or 60s)";
    let boolean = "must be true or false";
    let rewrite_chars = "may hold only letters, digits, '-', '.', '_', '~', '/', ':' and $1…$9";
    let cookie = "must be a valid cookie name (letters, digits and !#$%&'*+-.^_`|~)";
    let cases: &[(&str, &str, String)] = &[
        ("rewrite-target", "", "Invalid value: \"\": must not be empty (such as /$1)".into()),
        ("rewrite-target", "/a b", format!("Invalid value: \"/a b\": {rewrite_chars}")),
        (
            "rewrite-target",
            "/$host",
            "Invalid value: \"/$host\": a '$' must start a capture group reference, $1 to $9".into(),
        ),
        ("rewrite-target", "/x?y=1", format!("Invalid value: \"/x?y=1\": {rewrite_chars}")),
        (
            "rewrite-target",
            "/$0",
            "Invalid value: \"/$0\": a '$' must start a capture group reference, $1 to $9".into(),
        ),
        (
            "rewrite-target",
            "/a$",
            "Invalid value: \"/a$\": a '$' must start a capture group reference, $1 to $9".into(),
        ),
        ("use-regex", "yes", format!("Invalid value: \"yes\": {boolean}")),
        (
            "backend-protocol",
            "FCGI",
            "Unsupported value: \"FCGI\": supported values: \"HTTP\", \"HTTPS\", \"GRPC\", \"GRPCS\", \"H2C\"".into(),
        ),
        ("proxy-body-size", "8mb", format!("Invalid value: \"8mb\": {size}")),
        ("proxy-body-size", "-1", format!("Invalid value: \"-1\": {size}")),
        ("proxy-body-size", "1.5m", format!("Invalid value: \"1.5m\": {size}")),
        ("proxy-body-size", "m", format!("Invalid value: \"m\": {size}")),
        (
            "proxy-body-size",
            "99999999999g",
            format!("Invalid value: \"99999999999g\": {size}"),
        ),
        ("proxy-connect-timeout", "0", format!("Invalid value: \"0\": {seconds}")),
        ("proxy-connect-timeout", "5ms", format!("Invalid value: \"5ms\": {seconds}")),
        ("proxy-read-timeout", "1m", format!("Invalid value: \"1m\": {seconds}")),
        ("proxy-send-timeout", " 60", format!("Invalid value: \" 60\": {seconds}")),
        ("ssl-redirect", "on", format!("Invalid value: \"on\": {boolean}")),
        ("force-ssl-redirect", "yes", format!("Invalid value: \"yes\": {boolean}")),
        (
            "app-root",
            "app",
            "Invalid value: \"app\": must be an absolute path (such as /app), not starting with //".into(),
        ),
        (
            "app-root",
            "//evil.example.com",
            "Invalid value: \"//evil.example.com\": must be an absolute path (such as /app), not starting with //".into(),
        ),
        (
            "app-root",
            "/\\evil.example.com",
            "Invalid value: \"/\\\\evil.example.com\": must be an absolute path (such as /app), not starting with //".into(),
        ),
        ("canary", "maybe", format!("Invalid value: \"maybe\": {boolean}")),
        (
            "affinity",
            "ip",
            "Unsupported value: \"ip\": supported values: \"cookie\"".into(),
        ),
    ];
    for (name, value, message) in cases {
        for prefix in [NGINX, "ferry.dev"] {
            let yaml = annotated(&format!("{prefix}/{name}: {value:?}"), "/");
            check(
                &yaml,
                &[&format!(
                    "t.yaml: Ingress shop/web: metadata.annotations[{prefix}/{name}]: {message}"
                )],
            );
        }
    }

    // Values checked only together with another annotation.
    let with_affinity = |extra: &str| annotated(&format!("{NGINX}/affinity: cookie, {extra}"), "/");
    check(
        &with_affinity(&format!("{NGINX}/session-cookie-name: \"my cookie\"")),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/session-cookie-name]: Invalid value: \"my cookie\": {cookie}"
        )],
    );
    check(
        &with_affinity(&format!("{NGINX}/session-cookie-max-age: \"0\"")),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/session-cookie-max-age]: Invalid value: \"0\": must be a positive whole number of seconds"
        )],
    );
    check(
        &with_affinity(&format!("{NGINX}/session-cookie-path: \"/a;b\"")),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/session-cookie-path]: Invalid value: \"/a;b\": must be an absolute path without ';', spaces or control characters"
        )],
    );
    let canary = |extra: &str| annotated(&format!("{NGINX}/canary: \"true\", {extra}"), "/");
    check(
        &canary(&format!("{NGINX}/canary-weight: \"101\"")),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-weight]: Invalid value: \"101\": must be a whole number from 0 to 100 (canary-weight-total)"
        )],
    );
    check(
        &canary(&format!(
            "{NGINX}/canary-weight: \"5\", {NGINX}/canary-weight-total: \"4\""
        )),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-weight]: Invalid value: \"5\": must be a whole number from 0 to 4 (canary-weight-total)"
        )],
    );
    check(
        &canary(&format!("{NGINX}/canary-weight-total: \"0\"")),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-weight-total]: Invalid value: \"0\": must be a whole number from 1 to 4294967295"
        )],
    );
    check(
        &canary(&format!("{NGINX}/canary-by-header: \"X Canary\"")),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-by-header]: Invalid value: \"X Canary\": must be a valid header name (letters, digits and !#$%&'*+-.^_`|~)"
        )],
    );
    check(
        &canary(&format!(
            "{NGINX}/canary-by-header: X-Canary, {NGINX}/canary-by-header-value: \" yes\""
        )),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-by-header-value]: Invalid value: \" yes\": must be a header value: visible ASCII characters, no leading or trailing spaces"
        )],
    );
    check(
        &canary(&format!("{NGINX}/canary-by-cookie: \"a=b\"")),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-by-cookie]: Invalid value: \"a=b\": {cookie}"
        )],
    );
    assert!(
        all(&canary(&format!("{NGINX}/canary-weight: \"101\"")))
            .iter()
            .all(Problem::is_error)
    );
}

#[test]
fn annotations_use_regex_paths_must_compile() {
    let unclosed = "Invalid value: \"/shop(\": must be a regular expression (use-regex; Rust regex syntax): unclosed group";
    check(
        &annotated(&format!("{NGINX}/use-regex: \"true\""), "/shop("),
        &[&format!(
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: {unclosed}"
        )],
    );
    // rewrite-target implies use-regex.
    check(
        &annotated(&format!("{NGINX}/rewrite-target: /"), "/shop("),
        &[&format!(
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: {unclosed}"
        )],
    );
    // A path that only compiles once wrapped is still refused.
    let p = all(&annotated(&format!("{NGINX}/use-regex: \"true\""), "/a)(b"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].field, "spec.rules[0].http.paths[0].path");
    assert!(p[0].is_error());
    // PCRE-only syntax is refused: ferry uses Rust regex syntax.
    let p = all(&annotated(
        &format!("{NGINX}/use-regex: \"true\""),
        "/(?<=a)b",
    ));
    assert!(
        p.iter().any(|p| p.is_error() && p.field.ends_with(".path")),
        "{p:?}"
    );
    // A regex too large to compile cheaply.
    let p = all(&annotated(
        &format!("{NGINX}/use-regex: \"true\""),
        "/\\w{1000}\\w{1000}\\w{1000}",
    ));
    assert!(
        p.iter()
            .any(|p| p.is_error() && p.message.contains("too large once compiled")),
        "{p:?}"
    );
    // Without use-regex, the same path is a plain path.
    check(&annotated("", "/shop("), &[]);
    check(
        &annotated(&format!("{NGINX}/use-regex: \"false\""), "/shop("),
        &[],
    );
}

#[test]
fn annotations_rewrite_target_beyond_the_capture_groups_is_a_warning() {
    let p = all(&annotated(
        &format!("{NGINX}/rewrite-target: /$1/$3"),
        "/shop(/|$)(.*)",
    ));
    assert_eq!(
        p.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: rewrite-target \"/$1/$3\" refers to $3, but this path has 2 capture group(s); the missing ones are replaced by nothing"
        ]
    );
    assert_eq!(p[0].severity, Severity::Warning);
    check(
        &annotated(&format!("{NGINX}/rewrite-target: /$2"), "/shop(/|$)(.*)"),
        &[],
    );
}

#[test]
fn annotations_affinity_defaults_and_settings_without_it() {
    let a = read(&annotated(&format!("{NGINX}/affinity: cookie"), "/"));
    assert_eq!(
        a.options.affinity,
        Some(CookieAffinity {
            name: "INGRESSCOOKIE".into(),
            max_age_seconds: None,
            path: None,
        })
    );
    // With regex paths the cookie's path is / unless set, and that is worth a warning.
    let yaml = annotated(
        &format!("{NGINX}/affinity: cookie, {NGINX}/use-regex: \"true\""),
        "/api/.*",
    );
    check(
        &yaml,
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/affinity]: session-cookie-path is not set while paths are regular expressions: the cookie's path is /"
        )],
    );
    assert_eq!(
        read(&yaml).options.affinity.unwrap().path.as_deref(),
        Some("/")
    );
    // Cookie settings without affinity do nothing, and say so.
    check(
        &annotated(&format!("{NGINX}/session-cookie-name: route"), "/"),
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/session-cookie-name]: ignored without affinity: cookie"
        )],
    );
}

#[test]
fn annotations_canary_settings() {
    let yaml = annotated(
        &format!(
            "{NGINX}/canary: \"true\", {NGINX}/canary-weight: \"5\", {NGINX}/canary-weight-total: \"1000\", \
             {NGINX}/canary-by-header: X-Canary, {NGINX}/canary-by-header-value: blue, \
             ferry.dev/canary-by-cookie: canary"
        ),
        "/",
    );
    check(&yaml, &[]);
    let a = read(&yaml);
    assert_eq!(
        a.canary,
        Some(crate::ingress_annotations::CanaryAnnotations {
            weight: 5,
            weight_total: 1000,
            by_header: Some("X-Canary".into()),
            by_header_value: Some("blue".into()),
            by_cookie: Some("canary".into()),
        })
    );
    assert_eq!(a.options, IngressOptions::default());

    let defaults = read(&annotated(&format!("{NGINX}/canary: \"true\""), "/"));
    assert_eq!(
        defaults.canary,
        Some(crate::ingress_annotations::CanaryAnnotations {
            weight: 0,
            weight_total: 100,
            by_header: None,
            by_header_value: None,
            by_cookie: None,
        })
    );
}

#[test]
fn annotations_canary_settings_without_canary_and_main_settings_on_a_canary_warn() {
    let yaml = annotated(
        &format!("{NGINX}/canary-weight: \"10\", {NGINX}/canary: \"false\""),
        "/",
    );
    check(
        &yaml,
        &[&format!(
            "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-weight]: ignored: this Ingress is not a canary (canary: \"true\")"
        )],
    );
    assert_eq!(read(&yaml).canary, None);

    let yaml = annotated(
        &format!(
            "{NGINX}/canary: \"true\", {NGINX}/canary-by-header-value: blue, \
             {NGINX}/proxy-body-size: 1m, {NGINX}/use-regex: \"true\", {NGINX}/affinity: cookie"
        ),
        "/(",
    );
    check(
        &yaml,
        &[
            &format!(
                "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/canary-by-header-value]: ignored without canary-by-header"
            ),
            &format!(
                "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/use-regex]: ignored on a canary Ingress: the main Ingress's annotations apply"
            ),
            &format!(
                "t.yaml: Ingress shop/web: metadata.annotations[{NGINX}/proxy-body-size]: ignored on a canary Ingress: the main Ingress's annotations apply"
            ),
        ],
    );
    let a = read(&yaml);
    assert_eq!(
        a.options,
        IngressOptions {
            affinity: Some(CookieAffinity {
                name: "INGRESSCOOKIE".into(),
                max_age_seconds: None,
                path: None,
            }),
            ..IngressOptions::default()
        },
        "a canary keeps only its session affinity"
    );
}
