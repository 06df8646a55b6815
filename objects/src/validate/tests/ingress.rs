//! networking.k8s.io/v1 Ingress and IngressClass (`validate/ingress.rs`).

use super::*;

fn ingress(spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web, namespace: shop}}\n\
         spec: {spec}\n"
    )
}

/// An Ingress with one rule for `shop.example.com` and one path, written as a flow mapping.
fn ingress_path(path: &str) -> String {
    ingress(&format!(
        "{{rules: [{{host: shop.example.com, http: {{paths: [{path}]}}}}]}}"
    ))
}

fn ingress_backend(backend: &str) -> String {
    ingress_path(&format!(
        "{{path: /, pathType: Prefix, backend: {backend}}}"
    ))
}

fn ingress_host(host: &str) -> String {
    ingress(&format!(
        "{{rules: [{{host: {host:?}, http: {{paths: [{{path: /, pathType: Prefix, backend: {BACKEND}}}]}}}}]}}"
    ))
}

fn ingress_class(spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: ferry}}\nspec: {spec}\n"
    )
}

// Ingress

#[test]
fn valid_ingresses_have_no_problems() {
    check(
        &ingress_path(&format!(
            "{{path: /, pathType: Prefix, backend: {BACKEND}}}"
        )),
        &[],
    );
    check(&ingress(&format!("{{defaultBackend: {BACKEND}}}")), &[]);
    check(&ingress_host("*.example.com"), &[]);
    check(
        &ingress_path(
            "{path: /assets, pathType: Exact, backend: {resource: {apiGroup: k8s.example.com, kind: Bucket, name: assets}}}",
        ),
        &[],
    );
    check(
        &ingress(&format!(
            "{{ingressClassName: ferry, tls: [{{hosts: [shop.example.com], secretName: shop-tls}}], defaultBackend: {BACKEND}}}"
        )),
        &[],
    );
    check(
        &ingress_backend("{service: {name: web, port: {name: http}}}"),
        &[],
    );
}

#[test]
fn ingress_spec_required() {
    check(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web, namespace: shop}\n",
        &["t.yaml: Ingress shop/web: spec: Required value"],
    );
}

#[test]
fn ingress_needs_default_backend_or_rules() {
    check(
        &ingress("{}"),
        &[
            "t.yaml: Ingress shop/web: spec: Invalid value: either `defaultBackend` or `rules` must be specified",
        ],
    );
}

#[test]
fn ingress_paths_required() {
    check(
        &ingress("{rules: [{host: shop.example.com, http: {paths: []}}]}"),
        &["t.yaml: Ingress shop/web: spec.rules[0].http.paths: Required value"],
    );
}

#[test]
fn ingress_path_not_absolute() {
    check(
        &ingress_path(&format!(
            "{{path: foo, pathType: Prefix, backend: {BACKEND}}}"
        )),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"foo\": must be an absolute path",
        ],
    );
    // Exact and Prefix paths must be written.
    check(
        &ingress_path(&format!("{{pathType: Exact, backend: {BACKEND}}}")),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"\": must be an absolute path",
        ],
    );
}

#[test]
fn ingress_path_type_required() {
    check(
        &ingress_path(&format!("{{path: /, backend: {BACKEND}}}")),
        &["t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].pathType: Required value"],
    );
}

#[test]
fn ingress_path_type_unsupported() {
    check(
        &ingress_path(&format!("{{path: /, pathType: Regex, backend: {BACKEND}}}")),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"Prefix\", \"ImplementationSpecific\"",
        ],
    );
}

#[test]
fn ingress_path_invalid_sequence() {
    check(
        &ingress_path(&format!(
            "{{path: /a//b, pathType: Prefix, backend: {BACKEND}}}"
        )),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"/a//b\": must not contain '//'",
        ],
    );
    check(
        &ingress_path(&format!(
            "{{path: /a%2Fb, pathType: Exact, backend: {BACKEND}}}"
        )),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"/a%2Fb\": must not contain '%2F'",
        ],
    );
}

#[test]
fn ingress_path_invalid_suffix() {
    check(
        &ingress_path(&format!(
            "{{path: /a/.., pathType: Prefix, backend: {BACKEND}}}"
        )),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"/a/..\": cannot end with '/..'",
        ],
    );
    check(
        &ingress_path(&format!(
            "{{path: /a/., pathType: Prefix, backend: {BACKEND}}}"
        )),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"/a/.\": cannot end with '/.'",
        ],
    );
}

#[test]
fn ingress_implementation_specific_path() {
    check(
        &ingress_path(&format!(
            "{{path: foo, pathType: ImplementationSpecific, backend: {BACKEND}}}"
        )),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"foo\": must be an absolute path",
        ],
    );
    // It may be left out, and is otherwise not checked further.
    check(
        &ingress_path(&format!(
            "{{pathType: ImplementationSpecific, backend: {BACKEND}}}"
        )),
        &[],
    );
    check(
        &ingress_path(&format!(
            "{{path: /a//b, pathType: ImplementationSpecific, backend: {BACKEND}}}"
        )),
        &[],
    );
}

#[test]
fn ingress_backend_both_service_and_resource() {
    check(
        &ingress_backend(
            "{service: {name: web, port: {number: 80}}, resource: {kind: Bucket, name: assets}}",
        ),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend: Invalid value: \"\": cannot set both resource and service backends",
        ],
    );
}

#[test]
fn ingress_backend_neither_service_nor_resource() {
    check(
        &ingress_backend("{}"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend: Invalid value: \"\": resource or service backend is required",
        ],
    );
    check(
        &ingress("{defaultBackend: {}}"),
        &[
            "t.yaml: Ingress shop/web: spec.defaultBackend: Invalid value: \"\": resource or service backend is required",
        ],
    );
}

#[test]
fn ingress_resource_backend_fields_required() {
    check(
        &ingress_backend("{resource: {apiGroup: k8s.example.com}}"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.resource.kind: Required value",
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.resource.name: Required value",
        ],
    );
}

#[test]
fn ingress_service_name_required_and_invalid() {
    check(
        &ingress_backend("{service: {port: {number: 80}}}"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.service.name: Required value",
        ],
    );
    check(
        &ingress_backend("{service: {name: 1web, port: {number: 80}}}"),
        &[&format!(
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.service.name: Invalid value: \"1web\": {DNS1035}"
        )],
    );
}

#[test]
fn ingress_service_port_both_name_and_number() {
    check(
        &ingress_backend("{service: {name: web, port: {name: http, number: 80}}}"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend: Invalid value: \"\": cannot set both port name & port number",
        ],
    );
}

#[test]
fn ingress_service_port_missing() {
    check(
        &ingress_backend("{service: {name: web}}"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.service.port: Required value: port name or number is required",
        ],
    );
    check(
        &ingress_backend("{service: {name: web, port: {}}}"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.service.port: Required value: port name or number is required",
        ],
    );
}

#[test]
fn ingress_service_port_invalid() {
    check(
        &ingress_backend("{service: {name: web, port: {number: 70000}}}"),
        &[&format!(
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.service.port.number: Invalid value: 70000: {PORT_RANGE}"
        )],
    );
    check(
        &ingress_backend("{service: {name: web, port: {name: HTTP}}}"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].http.paths[0].backend.service.port.name: Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        ],
    );
}

#[test]
fn ingress_host_is_an_ip() {
    check(
        &ingress_host("10.0.0.1"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
        ],
    );
}

#[test]
fn ingress_host_invalid() {
    check(
        &ingress_host("Shop.example.com"),
        &[&format!(
            "t.yaml: Ingress shop/web: spec.rules[0].host: Invalid value: \"Shop.example.com\": {DNS1123_SUBDOMAIN}"
        )],
    );
}

#[test]
fn ingress_wildcard_host_invalid() {
    check(
        &ingress_host("*.*.foo.com"),
        &[
            "t.yaml: Ingress shop/web: spec.rules[0].host: Invalid value: \"*.*.foo.com\": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com')",
        ],
    );
}

#[test]
fn ingress_tls_host_and_secret_name_invalid() {
    check(
        &ingress(&format!(
            "{{tls: [{{hosts: [shop.example.com, 10.0.0.1], secretName: Shop_TLS}}], defaultBackend: {BACKEND}}}"
        )),
        &[
            "t.yaml: Ingress shop/web: spec.tls[0].hosts[1]: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
            &format!(
                "t.yaml: Ingress shop/web: spec.tls[0].secretName: Invalid value: \"Shop_TLS\": {DNS1123_SUBDOMAIN}"
            ),
        ],
    );
}

#[test]
fn ingress_class_name_invalid() {
    check(
        &ingress(&format!(
            "{{ingressClassName: Ferry, defaultBackend: {BACKEND}}}"
        )),
        &[&format!(
            "t.yaml: Ingress shop/web: spec.ingressClassName: Invalid value: \"Ferry\": {DNS1123_SUBDOMAIN}"
        )],
    );
}

// IngressClass

#[test]
fn valid_ingress_class_has_no_problems() {
    check(&ingress_class("{controller: ferry.dev/ingress}"), &[]);
}

#[test]
fn ingress_class_controller_required() {
    check(
        &ingress_class("{}"),
        &["t.yaml: IngressClass ferry: spec.controller: Required value"],
    );
    check(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: ferry}\n",
        &["t.yaml: IngressClass ferry: spec.controller: Required value"],
    );
}

#[test]
fn ingress_class_controller_not_domain_prefixed() {
    let expected = |c: &str| {
        format!(
            "t.yaml: IngressClass ferry: spec.controller: Invalid value: {c:?}: must be a domain-prefixed path (such as \"acme.io/foo\")"
        )
    };
    for controller in [
        "ferry",
        "ferry.dev/",
        "Ferry.dev/ingress",
        "ferry.dev/in gress",
    ] {
        check(
            &ingress_class(&format!("{{controller: {controller:?}}}")),
            &[&expected(controller)],
        );
    }
}

#[test]
fn ingress_class_controller_too_long() {
    let controller = format!("ferry.dev/{}", "a".repeat(241));
    check(
        &ingress_class(&format!("{{controller: {controller}}}")),
        &["t.yaml: IngressClass ferry: spec.controller: Too long: may not be more than 250 bytes"],
    );
}
