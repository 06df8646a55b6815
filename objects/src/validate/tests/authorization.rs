//! AuthorizationPolicy: what Istio refuses, and what ferry refuses to enforce partly.

use super::*;

fn policy(version: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/{version}\nkind: AuthorizationPolicy\nmetadata: {{name: api, namespace: shop}}\nspec: {spec}\n"
    )
}

const AT: &str = "t.yaml: AuthorizationPolicy shop/api";

#[test]
fn a_valid_policy_has_no_problems_in_either_version() {
    let spec = r#"
  selector: {matchLabels: {app: api}}
  action: DENY
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/shop/sa/*"], notNamespaces: [jobs]}
    to:
    - operation: {ports: ["8080"], methods: [GET, "*"], notPaths: ["/admin*", "*.secret"]}
  - {}"#;
    check(&policy("v1", spec), &[]);
    check(&policy("v1beta1", spec), &[]);
    // An empty spec (ALLOW, no rules: deny all) is valid.
    check(&policy("v1", "{}"), &[]);
    check(
        &policy("v2", "{}"),
        &[&format!(
            "{AT}: apiVersion: Unsupported value: \"security.istio.io/v2\": AuthorizationPolicy is served as \"security.istio.io/v1\""
        )],
    );
}

#[test]
fn audit_custom_and_unknown_actions_are_refused() {
    check(
        &policy("v1", "{action: AUDIT}"),
        &[&format!(
            "{AT}: spec.action: Unsupported value: \"AUDIT\": ferry enforces \"ALLOW\" and \"DENY\" only"
        )],
    );
    check(
        &policy("v1", "{action: CUSTOM, provider: {name: ext}}"),
        &[
            &format!(
                "{AT}: spec.action: Unsupported value: \"CUSTOM\": ferry enforces \"ALLOW\" and \"DENY\" only"
            ),
            &format!(
                "{AT}: spec.provider: Forbidden: ferry does not enforce this field; the policy is refused rather than enforced without it"
            ),
        ],
    );
    check(
        &policy("v1", "{action: allow}"),
        &[&format!(
            "{AT}: spec.action: Unsupported value: \"allow\": supported values: \"ALLOW\", \"DENY\""
        )],
    );
}

#[test]
fn bad_principals_ports_and_patterns_name_their_field() {
    let spec = r#"
  rules:
  - from:
    - source: {principals: ["spiffe://cluster.local/ns/a/sa/b", "a*b"]}
    to:
    - operation: {ports: ["0", "http"], paths: [""]}"#;
    check(
        &policy("v1", spec),
        &[
            &format!(
                "{AT}: spec.rules[0].from[0].source.principals[0]: Invalid value: \"spiffe://cluster.local/ns/a/sa/b\": a principal is written without spiffe:// (cluster.local/ns/NAMESPACE/sa/ACCOUNT)"
            ),
            &format!(
                "{AT}: spec.rules[0].from[0].source.principals[1]: Invalid value: \"a*b\": \"a*b\": a `*` may only be the whole value, its first or its last character"
            ),
            &format!(
                "{AT}: spec.rules[0].to[0].operation.ports[0]: Invalid value: \"0\": must be a port number between 1 and 65535, inclusive"
            ),
            &format!(
                "{AT}: spec.rules[0].to[0].operation.ports[1]: Invalid value: \"http\": must be a port number between 1 and 65535, inclusive"
            ),
            &format!(
                "{AT}: spec.rules[0].to[0].operation.paths[0]: Invalid value: \"\": \"\": a `*` may only be the whole value, its first or its last character"
            ),
        ],
    );
}

#[test]
fn fields_ferry_does_not_enforce_and_unknown_fields_are_errors() {
    let spec = r#"
  rules:
  - from:
    - source: {ipBlocks: [10.0.0.0/8]}
    - {}
    to:
    - operation: {hosts: [a.example]}
    when:
    - {key: "request.headers[x]", values: [y]}
  - from:
    - source: {principal: [a]}"#;
    let forbidden = "Forbidden: ferry does not enforce this field; the policy is refused rather than enforced without it";
    check(
        &policy("v1", spec),
        &[
            &format!(
                "{AT}: spec.rules[1].from[0].source.principal: unknown field; the policy is refused rather than enforced without it"
            ),
            &format!("{AT}: spec.rules[0].when: {forbidden}"),
            &format!("{AT}: spec.rules[0].from[0].source.ipBlocks: {forbidden}"),
            &format!("{AT}: spec.rules[0].from[1].source: Required value"),
            &format!("{AT}: spec.rules[0].to[0].operation.hosts: {forbidden}"),
            &format!(
                "{AT}: spec.rules[1].from[0].source: Invalid value: \"{{}}\": must not be empty"
            ),
        ],
    );
}

#[test]
fn a_bad_mtls_mode_is_a_warning_naming_the_annotation() {
    let warning = "Unsupported value: \"STRICT\": supported values: \"strict\", \"permissive\"; read as \"permissive\"";
    check(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, annotations: {ferry.dev/mtls-mode: STRICT}}\n",
        &[&format!(
            "t.yaml: Namespace shop: metadata.annotations[ferry.dev/mtls-mode]: {warning}"
        )],
    );
    check(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: shop, annotations: {ferry.dev/mtls-mode: strict}}\nspec: {containers: [{name: app, image: x}]}\n",
        &[],
    );
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}, annotations: {ferry.dev/mtls-mode: STRICT}}\n    spec: {containers: [{name: app, image: x}]}\n";
    check(
        deployment,
        &[&format!(
            "t.yaml: Deployment shop/web: spec.template.metadata.annotations[ferry.dev/mtls-mode]: {warning}"
        )],
    );
}
