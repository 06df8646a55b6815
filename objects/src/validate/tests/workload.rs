//! v1 Pod, apps/v1 Deployment and ReplicaSet (`validate/workload.rs`).

use super::*;

/// A Deployment whose selector and template agree, with `extra` added to its spec.
fn deployment(extra: &str) -> String {
    workload(
        "Deployment",
        "{matchLabels: {app: web}}",
        "{app: web}",
        extra,
    )
}

fn workload(kind: &str, selector: &str, labels: &str, extra: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: web, namespace: shop}}\n\
         spec:\n  selector: {selector}\n  template:\n    metadata: {{labels: {labels}}}\n    \
         spec: {{containers: [{{name: app, image: shop/web}}]}}\n{extra}"
    )
}

// Pod

#[test]
fn valid_pod_has_no_problems() {
    check(
        &pod(
            "spec: {hostname: web-0, subdomain: web, restartPolicy: Always, containers: [{name: app, ports: [{name: http, containerPort: 8080}]}]}\n\
              status: {podIP: 10.1.0.1, podIPs: [{ip: 10.1.0.1}, {ip: 'fd00::1'}]}",
        ),
        &[],
    );
}

#[test]
fn pod_spec_required() {
    check(&pod(""), &["t.yaml: Pod shop/web-0: spec: Required value"]);
}

#[test]
fn pod_containers_required() {
    check(
        &pod("spec: {containers: []}"),
        &["t.yaml: Pod shop/web-0: spec.containers: Required value"],
    );
    check(
        &pod("spec: {}"),
        &["t.yaml: Pod shop/web-0: spec.containers: Required value"],
    );
}

#[test]
fn pod_container_name_required() {
    check(
        &pod("spec: {containers: [{image: shop/web}]}"),
        &["t.yaml: Pod shop/web-0: spec.containers[0].name: Required value"],
    );
}

#[test]
fn pod_container_name_duplicate() {
    // Init containers and containers share one name space.
    check(
        &pod("spec: {initContainers: [{name: app}], containers: [{name: app}]}"),
        &["t.yaml: Pod shop/web-0: spec.containers[0].name: Duplicate value: \"app\""],
    );
}

#[test]
fn pod_container_port_out_of_range() {
    check(
        &pod("spec: {containers: [{name: app, ports: [{containerPort: 70000}]}]}"),
        &[&format!(
            "t.yaml: Pod shop/web-0: spec.containers[0].ports[0].containerPort: Invalid value: 70000: {PORT_RANGE}"
        )],
    );
}

#[test]
fn pod_host_port_out_of_range() {
    check(
        &pod("spec: {containers: [{name: app, ports: [{containerPort: 80, hostPort: -1}]}]}"),
        &[&format!(
            "t.yaml: Pod shop/web-0: spec.containers[0].ports[0].hostPort: Invalid value: -1: {PORT_RANGE}"
        )],
    );
}

#[test]
fn pod_port_name_duplicate() {
    // Port names are unique across all the containers of a pod.
    check(
        &pod(
            "spec: {containers: [{name: app, ports: [{name: http, containerPort: 80}]}, {name: proxy, ports: [{name: http, containerPort: 81}]}]}",
        ),
        &["t.yaml: Pod shop/web-0: spec.containers[1].ports[0].name: Duplicate value: \"http\""],
    );
}

#[test]
fn pod_port_name_invalid() {
    check(
        &pod(
            "spec: {containers: [{name: app, ports: [{name: http-metrics-port, containerPort: 80}]}]}",
        ),
        &[
            "t.yaml: Pod shop/web-0: spec.containers[0].ports[0].name: Invalid value: \"http-metrics-port\": must be no more than 15 characters",
        ],
    );
}

#[test]
fn pod_hostname_invalid() {
    check(
        &pod("spec: {hostname: Web, containers: [{name: app}]}"),
        &[&format!(
            "t.yaml: Pod shop/web-0: spec.hostname: Invalid value: \"Web\": {DNS1123_LABEL}"
        )],
    );
}

#[test]
fn pod_restart_policy_unsupported() {
    check(
        &pod("spec: {restartPolicy: Sometimes, containers: [{name: app}]}"),
        &[
            "t.yaml: Pod shop/web-0: spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ],
    );
}

#[test]
fn pod_termination_grace_period_negative() {
    check(
        &pod("spec: {terminationGracePeriodSeconds: -1, containers: [{name: app}]}"),
        &[
            "t.yaml: Pod shop/web-0: spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0",
        ],
    );
}

#[test]
fn pod_ip_invalid() {
    check(
        &pod("spec: {containers: [{name: app}]}\nstatus: {podIP: 10.1.0}"),
        &[
            "t.yaml: Pod shop/web-0: status.podIP: Invalid value: \"10.1.0\": must be a valid IP address",
        ],
    );
}

#[test]
fn pod_ips_first_must_match_pod_ip() {
    check(
        &pod(
            "spec: {containers: [{name: app}]}\nstatus: {podIP: 10.1.0.1, podIPs: [{ip: 10.1.0.2}]}",
        ),
        &[
            "t.yaml: Pod shop/web-0: status.podIPs[0].ip: Invalid value: \"10.1.0.2\": must match `status.podIP`",
        ],
    );
}

#[test]
fn pod_loopback_ip_accepted() {
    check(
        &pod(
            "spec: {containers: [{name: app}]}\nstatus: {podIP: 127.0.0.1, podIPs: [{ip: 127.0.0.1}, {ip: '::1'}]}",
        ),
        &[],
    );
}

// Deployment and ReplicaSet

#[test]
fn valid_workloads_have_no_problems() {
    check(&deployment(""), &[]);
    check(
        &workload(
            "ReplicaSet",
            "{matchLabels: {app: web}}",
            "{app: web, tier: front}",
            "  replicas: 3\n",
        ),
        &[],
    );
    check(
        &deployment(
            "  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 25%, maxUnavailable: 0}}\n",
        ),
        &[],
    );
    check(
        &workload(
            "Deployment",
            "{matchExpressions: [{key: app, operator: In, values: [web, api]}, {key: canary, operator: DoesNotExist}]}",
            "{app: web}",
            "",
        ),
        &[],
    );
}

#[test]
fn workload_selector_does_not_match_template() {
    check(
        &workload("Deployment", "{matchLabels: {app: web}}", "{app: api}", ""),
        &[
            "t.yaml: Deployment shop/web: spec.template.metadata.labels: Invalid value: {\"app\": \"api\"}: `selector` does not match template `labels`",
        ],
    );
    check(
        &workload(
            "ReplicaSet",
            "{matchLabels: {app: web, tier: front}}",
            "{app: web}",
            "",
        ),
        &[
            "t.yaml: ReplicaSet shop/web: spec.template.metadata.labels: Invalid value: {\"app\": \"web\"}: `selector` does not match template `labels`",
        ],
    );
}

#[test]
fn workload_selector_empty() {
    check(
        &workload("Deployment", "{}", "{app: web}", ""),
        &[
            "t.yaml: Deployment shop/web: spec.selector: Invalid value: \"{}\": empty selector is invalid for deployment",
        ],
    );
}

#[test]
fn workload_replicas_negative() {
    check(
        &workload(
            "ReplicaSet",
            "{matchLabels: {app: web}}",
            "{app: web}",
            "  replicas: -1\n",
        ),
        &[
            "t.yaml: ReplicaSet shop/web: spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        ],
    );
    check(
        &deployment("  replicas: -2\n"),
        &[
            "t.yaml: Deployment shop/web: spec.replicas: Invalid value: -2: must be greater than or equal to 0",
        ],
    );
}

#[test]
fn replica_set_template_required() {
    check(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web, namespace: shop}\nspec: {selector: {matchLabels: {app: web}}}\n",
        &["t.yaml: ReplicaSet shop/web: spec.template: Required value"],
    );
}

#[test]
fn a_controllers_pods_always_restart() {
    for kind in ["Deployment", "ReplicaSet"] {
        let yaml = format!(
            "apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: web, namespace: shop}}\n\
             spec:\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    \
             spec: {{restartPolicy: Never, containers: [{{name: app, image: shop/web}}]}}\n"
        );
        let expected = format!(
            "t.yaml: {kind} shop/web: spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
        );
        check(&yaml, &[expected.as_str()]);
    }
}

#[test]
fn deployment_progress_deadline_must_exceed_min_ready() {
    check(
        &deployment("  minReadySeconds: 10\n  progressDeadlineSeconds: 10\n"),
        &[
            "t.yaml: Deployment shop/web: spec.progressDeadlineSeconds: Invalid value: 10: must be greater than minReadySeconds",
        ],
    );
}

#[test]
fn deployment_max_surge_and_max_unavailable_both_zero() {
    let expected = "t.yaml: Deployment shop/web: spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0";
    check(
        &deployment("  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}\n"),
        &[expected],
    );
    check(
        &deployment("  strategy: {rollingUpdate: {maxSurge: 0%, maxUnavailable: 0}}\n"),
        &[expected],
    );
    check(
        &deployment("  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0%}}\n"),
        &[expected],
    );
}

#[test]
fn deployment_percent_invalid() {
    check(
        &deployment("  strategy: {rollingUpdate: {maxSurge: ten%}}\n"),
        &[
            "t.yaml: Deployment shop/web: spec.strategy.rollingUpdate.maxSurge: Invalid value: \"ten%\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%')",
        ],
    );
    check(
        &deployment("  strategy: {rollingUpdate: {maxUnavailable: 150%}}\n"),
        &[
            "t.yaml: Deployment shop/web: spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%",
        ],
    );
    check(
        &deployment("  strategy: {rollingUpdate: {maxSurge: -5%}}\n"),
        &[
            "t.yaml: Deployment shop/web: spec.strategy.rollingUpdate.maxSurge: Invalid value: \"-5%\": must be greater than or equal to 0",
        ],
    );
    // maxSurge has no upper bound.
    check(
        &deployment("  strategy: {rollingUpdate: {maxSurge: 150%}}\n"),
        &[],
    );
}

#[test]
fn deployment_strategy_type_unsupported() {
    check(
        &deployment("  strategy: {type: BlueGreen}\n"),
        &[
            "t.yaml: Deployment shop/web: spec.strategy.type: Unsupported value: \"BlueGreen\": supported values: \"RollingUpdate\", \"Recreate\"",
        ],
    );
}

#[test]
fn deployment_recreate_with_rolling_update_forbidden() {
    check(
        &deployment("  strategy: {type: Recreate, rollingUpdate: {maxSurge: 1}}\n"),
        &[
            "t.yaml: Deployment shop/web: spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
        ],
    );
}

#[test]
fn workload_match_expression_values_required() {
    check(
        &workload(
            "Deployment",
            "{matchExpressions: [{key: app, operator: In}]}",
            "{app: web}",
            "",
        ),
        &[
            "t.yaml: Deployment shop/web: spec.selector.matchExpressions[0].values: Required value",
            // An `In` with no values matches nothing, so the template is not selected either.
            "t.yaml: Deployment shop/web: spec.template.metadata.labels: Invalid value: {\"app\": \"web\"}: `selector` does not match template `labels`",
        ],
    );
}

#[test]
fn workload_match_expression_values_forbidden() {
    check(
        &workload(
            "Deployment",
            "{matchExpressions: [{key: app, operator: Exists, values: [web]}]}",
            "{app: web}",
            "",
        ),
        &[
            "t.yaml: Deployment shop/web: spec.selector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        ],
    );
}

#[test]
fn workload_match_expression_operator_unsupported() {
    check(
        &workload(
            "Deployment",
            "{matchExpressions: [{key: app, operator: Equals, values: [web]}]}",
            "{app: web}",
            "",
        ),
        &[
            "t.yaml: Deployment shop/web: spec.selector.matchExpressions[0].operator: Unsupported value: \"Equals\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"",
            "t.yaml: Deployment shop/web: spec.template.metadata.labels: Invalid value: {\"app\": \"web\"}: `selector` does not match template `labels`",
        ],
    );
}

#[test]
fn workload_template_pod_spec_checked() {
    let yaml = deployment("").replace("{name: app, image: shop/web}", "{name: App}");
    check(
        &yaml,
        &[&format!(
            "t.yaml: Deployment shop/web: spec.template.spec.containers[0].name: Invalid value: \"App\": {DNS1123_LABEL}"
        )],
    );
}
