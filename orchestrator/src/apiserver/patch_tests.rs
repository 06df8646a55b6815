//! Tests of the strategic merge patch, server-side apply, the OpenAPI v3 documents and strict
//! field validation. The kubectl patches are the ones kubectl 1.32 sent, as recorded in
//! shared/reference/kubectl-requests.txt.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::openapi::{self, strict_error, unknown_fields};
use super::ssa::{ApplyError, server_side_apply};
use super::strategic::{self, PatchError};
use super::*;

fn smp(kind: &str, original: Value, patch: Value) -> Value {
    strategic::apply(kind, &original, &patch).unwrap()
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The Deployment kubectl created (apply2.log, apply-create), as the server stored it.
fn created_api_deployment() -> Value {
    json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{LAST_APPLIED:"{...v1...}"},"labels":{"app":"api"},"name":"api","namespace":"default","resourceVersion":"7"},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"api"}},"template":{"metadata":{"labels":{"app":"api"}},"spec":{"containers":[{"env":[{"name":"A","value":"1"}],"image":"ghcr.io/example/api:1.0","name":"api","ports":[{"containerPort":8080}]}]}}},"status":{"replicas":2}})
}

#[test]
fn kubectls_apply_patch_changes_the_image_and_env_and_keeps_the_ports() {
    // apply2.log, apply-patch: the body kubectl sent, verbatim.
    let patch: Value = serde_json::from_str(r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{...v2...}"}},"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"api"}],"containers":[{"$setElementOrder/env":[{"name":"A"}],"env":[{"name":"A","value":"2"}],"image":"ghcr.io/example/api:1.1","name":"api"}]}}}}"#).unwrap();
    let out = smp("Deployment", created_api_deployment(), patch);
    let mut want = created_api_deployment();
    want["metadata"]["annotations"][LAST_APPLIED] = json!("{...v2...}");
    want["spec"]["template"]["spec"]["containers"] = json!([{"env":[{"name":"A","value":"2"}],"image":"ghcr.io/example/api:1.1","name":"api","ports":[{"containerPort":8080}]}]);
    assert_eq!(out, want);
}

#[test]
fn the_appendix_trap_containers_and_ports_survive_and_no_directive_is_stored() {
    // The reference's Appendix (apply-existing.log): a JSON merge patch loses the sidecar and
    // the ports and stores a literal "$setElementOrder/containers"; a strategic one does not.
    let live = json!({"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.25","ports":[{"containerPort":80}]},{"name":"sidecar","image":"busybox"}]}}}});
    let patch = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"},{"name":"sidecar"}],"containers":[{"image":"nginx:1.27","name":"web"}]}}}});
    let out = smp("Deployment", live, patch);
    assert_eq!(
        out["spec"]["template"]["spec"],
        json!({"containers":[{"name":"web","image":"nginx:1.27","ports":[{"containerPort":80}]},{"name":"sidecar","image":"busybox"}]})
    );
}

#[test]
fn kubectls_set_image_and_removal_patches_touch_only_what_they_name() {
    let live = json!({"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.25","ports":[{"containerPort":80},{"containerPort":8080}],"env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]},{"name":"sidecar","image":"busybox"}]}}}});
    // ops.log, set-image: `kubectl set image deployment/web web=nginx:1.26`, verbatim.
    let patch: Value = serde_json::from_str(r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"},{"name":"sidecar"}],"containers":[{"image":"nginx:1.26","name":"web"}]}}}}"#).unwrap();
    let out = smp("Deployment", live.clone(), patch);
    let mut want = live.clone();
    want["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    assert_eq!(out, want);
    // What kubectl apply sends when a variable and a port leave the file.
    let patch = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"},{"name":"sidecar"}],"containers":[{"name":"web","$setElementOrder/env":[{"name":"A"}],"env":[{"$patch":"delete","name":"B"}],"$setElementOrder/ports":[{"containerPort":80}],"ports":[{"$patch":"delete","containerPort":8080}]}]}}}});
    let out = smp("Deployment", live, patch);
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name":"web","image":"nginx:1.25","ports":[{"containerPort":80}],"env":[{"name":"A","value":"1"}]},{"name":"sidecar","image":"busybox"}])
    );
}

#[test]
fn maps_merge_and_null_deletes_a_key() {
    let live = json!({"metadata":{"labels":{"app":"web","tier":"front"},"annotations":{"a":"1"}},"spec":{"replicas":1,"paused":true}});
    let patch = json!({"metadata":{"labels":{"tier":null,"new":"x"},"annotations":null},"spec":{"paused":null,"replicas":3,"minReadySeconds":null}});
    let out = smp("Deployment", live, patch);
    assert_eq!(
        out,
        json!({"metadata":{"labels":{"app":"web","new":"x"}},"spec":{"replicas":3}})
    );
}

#[test]
fn lists_merge_by_their_keys_and_other_lists_are_replaced() {
    let live = json!({"spec":{"containers":[{"name":"web","image":"a","args":["x","y"],"env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],"ports":[{"containerPort":80,"name":"http"},{"containerPort":443}],"volumeMounts":[{"mountPath":"/data","name":"d"}]}],"tolerations":[{"key":"a","operator":"Exists"}],"imagePullSecrets":[{"name":"one"}]}});
    let patch = json!({"spec":{"containers":[{"name":"web","args":["z"],"env":[{"name":"B","value":"3"}],"ports":[{"containerPort":80,"name":"web"}],"volumeMounts":[{"mountPath":"/data","readOnly":true}]}],"tolerations":[{"key":"b","operator":"Exists"}],"imagePullSecrets":[{"name":"two"}]}});
    let out = smp("Pod", live, patch);
    assert_eq!(
        out,
        json!({"spec":{"containers":[{"name":"web","image":"a","args":["z"],"env":[{"name":"A","value":"1"},{"name":"B","value":"3"}],"ports":[{"containerPort":80,"name":"web"},{"containerPort":443}],"volumeMounts":[{"mountPath":"/data","name":"d","readOnly":true}]}],"tolerations":[{"key":"b","operator":"Exists"}],"imagePullSecrets":[{"name":"two"},{"name":"one"}]}})
    );
    // (A new item without `$setElementOrder` comes first, as the API server puts it.)
    // Service ports merge by port.
    let svc = json!({"spec":{"ports":[{"port":80,"targetPort":8080},{"port":443,"targetPort":8443}],"selector":{"app":"web"}}});
    let out = smp(
        "Service",
        svc,
        json!({"spec":{"ports":[{"port":80,"targetPort":9090}]}}),
    );
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port":80,"targetPort":9090},{"port":443,"targetPort":8443}])
    );
}

#[test]
fn patch_directives_delete_and_replace_items_maps_and_lists() {
    let live = json!({"spec":{"template":{"spec":{"containers":[{"name":"a","image":"1"},{"name":"b","image":"2"}],"securityContext":{"runAsUser":1,"runAsGroup":2}}}}});
    // `$patch: delete` removes the item with that key.
    let out = smp(
        "Deployment",
        live.clone(),
        json!({"spec":{"template":{"spec":{"containers":[{"name":"a","$patch":"delete"}]}}}}),
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name":"b","image":"2"}])
    );
    // `$patch: replace` in a list: the list is the patch's.
    let out = smp(
        "Deployment",
        live.clone(),
        json!({"spec":{"template":{"spec":{"containers":[{"name":"c","image":"3"},{"$patch":"replace"}]}}}}),
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name":"c","image":"3"}])
    );
    // `$patch: replace` in a map: the map is the patch's; `$patch: delete`: it is emptied.
    let out = smp(
        "Deployment",
        live.clone(),
        json!({"spec":{"template":{"spec":{"securityContext":{"$patch":"replace","runAsUser":5}}}}}),
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["securityContext"],
        json!({"runAsUser":5})
    );
    let out = smp(
        "Deployment",
        live.clone(),
        json!({"spec":{"template":{"spec":{"securityContext":{"$patch":"delete"}}}}}),
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["securityContext"],
        json!({})
    );
    // `$patch: merge` in a map is the default.
    let out = smp(
        "Deployment",
        live,
        json!({"spec":{"template":{"spec":{"securityContext":{"$patch":"merge","runAsUser":5}}}}}),
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["securityContext"],
        json!({"runAsUser":5,"runAsGroup":2})
    );
}

#[test]
fn set_element_order_orders_the_merged_list() {
    let live = json!({"spec":{"containers":[{"name":"a"},{"name":"b"},{"name":"c"}]}});
    // Every item named: the patch's order.
    let out = smp(
        "Pod",
        live.clone(),
        json!({"spec":{"$setElementOrder/containers":[{"name":"c"},{"name":"b"},{"name":"a"}]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name":"c"},{"name":"b"},{"name":"a"}])
    );
    // A new item goes where the order puts it.
    let out = smp(
        "Pod",
        live.clone(),
        json!({"spec":{"$setElementOrder/containers":[{"name":"a"},{"name":"n"},{"name":"b"},{"name":"c"}],"containers":[{"name":"n","image":"x"}]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name":"a"},{"name":"n","image":"x"},{"name":"b"},{"name":"c"}])
    );
    // An item the order does not name keeps its place among the others (as apimachinery's
    // normalizeElementOrder interleaves them).
    let out = smp(
        "Pod",
        live,
        json!({"spec":{"$setElementOrder/containers":[{"name":"c"},{"name":"a"}]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name":"b"},{"name":"c"},{"name":"a"}])
    );
}

#[test]
fn retain_keys_clears_the_other_keys_of_a_union() {
    let live = json!({"spec":{"replicas":1,"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}}}});
    // What kubectl sends to switch a Deployment to Recreate.
    let out = smp(
        "Deployment",
        live.clone(),
        json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":null}}}),
    );
    assert_eq!(
        out,
        json!({"spec":{"replicas":1,"strategy":{"type":"Recreate"}}})
    );
    let e = strategic::apply(
        "Deployment",
        &live,
        &json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":{"maxSurge":2}}}}),
    )
    .unwrap_err();
    assert_eq!(e.code(), 400, "{e}");
    assert!(e.to_string().contains("spec.strategy"), "{e}");
    let e = strategic::apply(
        "Deployment",
        &live,
        &json!({"spec":{"strategy":{"$retainKeys":"type"}}}),
    )
    .unwrap_err();
    assert_eq!(e.code(), 400, "{e}");
}

#[test]
fn primitive_lists_with_the_merge_strategy_are_sets() {
    let live = json!({"metadata":{"finalizers":["a","b","c"]}});
    let out = smp(
        "Pod",
        live.clone(),
        json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["b"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
    let out = smp(
        "Pod",
        live.clone(),
        json!({"metadata":{"finalizers":["c","d"]}}),
    );
    let mut got: Vec<String> =
        serde_json::from_value(out["metadata"]["finalizers"].clone()).unwrap();
    got.sort();
    assert_eq!(got, ["a", "b", "c", "d"]);
    // Deleting and ordering together, as kubectl sends when a finalizer leaves the file.
    let out = smp(
        "Pod",
        live,
        json!({"metadata":{"$setElementOrder/finalizers":["c","a"],"$deleteFromPrimitiveList/finalizers":["b"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "a"]));
    // A Secret's data is a map; an Ingress' rules (no strategy) are replaced.
    let ing = json!({"spec":{"rules":[{"host":"a"},{"host":"b"}]}});
    let out = smp("Ingress", ing, json!({"spec":{"rules":[{"host":"c"}]}}));
    assert_eq!(out["spec"]["rules"], json!([{"host":"c"}]));
}

#[test]
fn invalid_patches_are_errors_naming_the_field() {
    let live = created_api_deployment();
    let cases: &[(Value, u16, &str)] = &[
        (
            json!({"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}),
            422,
            "spec.template.spec.containers[0]: map: {\"image\":\"x\"} does not contain declared merge key: name",
        ),
        (
            json!({"spec":{"template":{"spec":{"containers":[{"$patch":"delete","image":"x"}]}}}}),
            422,
            "merge key: name",
        ),
        (
            json!({"spec":{"template":{"spec":{"containers":[{"name":"api","$patch":"bogus"}]}}}}),
            400,
            "unknown $patch directive",
        ),
        (
            json!({"spec":{"$patch":"bogus"}}),
            400,
            "spec: invalid patch: unknown $patch directive",
        ),
        (
            json!({"spec":{"template":{"spec":{"$setElementOrder/containers":{"name":"api"}}}}}),
            400,
            "must be a list",
        ),
        (
            json!({"metadata":{"$deleteFromPrimitiveList/finalizers":"a"}}),
            400,
            "must be a list",
        ),
        (json!([1]), 400, "must be a JSON object"),
        (
            json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"a"},{"name":"b"}],"containers":[{"name":"b"},{"name":"a"}]}}}}),
            400,
            "spec.template.spec.containers: invalid patch: the order of the patch list does not match",
        ),
        (
            json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"image":"a"}],"containers":[{"name":"api"}]}}}}),
            422,
            "does not contain declared merge key: name",
        ),
    ];
    for (patch, code, says) in cases {
        let e: PatchError = strategic::apply("Deployment", &live, patch).unwrap_err();
        assert_eq!(e.code(), *code, "{patch}: {e}");
        assert!(e.to_string().contains(says), "{patch}: {e}");
    }
}

#[test]
fn server_side_apply_creates_with_its_managed_fields() {
    let applied = json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"api","namespace":"default"},"spec":{"ports":[{"port":80,"targetPort":8080}],"selector":{"app":"api"}}});
    let out = server_side_apply(None, &applied, "kubectl", false).unwrap();
    assert_eq!(out["spec"], applied["spec"]);
    let entries = out["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e["manager"], "kubectl");
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["apiVersion"], "v1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:spec":{"f:ports":{"k:{\"port\":80}":{".":{},"f:port":{},"f:targetPort":{}}},"f:selector":{"f:app":{}}}})
    );
    assert!(e["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn server_side_apply_removes_what_the_manager_no_longer_applies_and_keeps_the_rest() {
    let v1 = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api","labels":{"app":"api","old":"x"}},"spec":{"replicas":2,"template":{"spec":{"containers":[{"name":"api","image":"a:1","env":[{"name":"A","value":"1"},{"name":"B","value":"1"}]}]}}}});
    let mut live = server_side_apply(None, &v1, "kubectl", false).unwrap();
    // Written by others (a controller, an update): not this manager's.
    live["metadata"]["labels"]["controller"] = json!("y");
    live["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name":"sidecar","image":"busybox"}));
    live["status"] = json!({"replicas": 2});
    let v2 = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api","labels":{"app":"api"}},"spec":{"template":{"spec":{"containers":[{"name":"api","image":"a:2","env":[{"name":"A","value":"2"}]}]}}}});
    let mut out = server_side_apply(Some(&live), &v2, "kubectl", false).unwrap();
    // The same configuration again changes nothing, not even the managedFields' time.
    out["metadata"]["managedFields"][0]["time"] = json!("2020-01-01T00:00:00Z");
    let again = server_side_apply(Some(&out), &v2, "kubectl", false).unwrap();
    assert_eq!(again, out);
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app":"api","controller":"y"})
    );
    assert_eq!(out["spec"].get("replicas"), None, "{out}");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name":"api","image":"a:2","env":[{"name":"A","value":"2"}]},{"name":"sidecar","image":"busybox"}])
    );
    assert_eq!(out["status"], json!({"replicas": 2}));
    assert_eq!(
        out["metadata"]["managedFields"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn server_side_apply_owns_set_members_one_by_one() {
    let with = json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","finalizers":["a.io/x"]}});
    let mut live = server_side_apply(None, &with, "kubectl", false).unwrap();
    assert_eq!(
        live["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:metadata":{"f:finalizers":{"v:\"a.io/x\"":{}}}})
    );
    // Another writer's member stays when this manager drops its own.
    live["metadata"]["finalizers"]
        .as_array_mut()
        .unwrap()
        .push(json!("b.io/y"));
    let without = json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}});
    let out = server_side_apply(Some(&live), &without, "kubectl", false).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["b.io/y"]));
}

#[test]
fn server_side_apply_conflicts_between_managers_unless_forced() {
    let a = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api"},"spec":{"replicas":2,"paused":false}});
    let live = server_side_apply(None, &a, "alice", false).unwrap();
    // The same value: shared, no conflict.
    let same = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api"},"spec":{"replicas":2}});
    let shared = server_side_apply(Some(&live), &same, "bob", false).unwrap();
    assert_eq!(
        shared["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A different value: a conflict naming the field and its manager.
    let b = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api"},"spec":{"replicas":3}});
    let e = server_side_apply(Some(&live), &b, "bob", false).unwrap_err();
    assert_eq!(e.code(), 409);
    assert!(matches!(e, ApplyError::Conflict(_)));
    assert_eq!(
        e.to_string(),
        "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
    );
    // Forced: bob takes the field; alice keeps the rest, and dropping it later no longer
    // removes bob's value.
    let forced = server_side_apply(Some(&live), &b, "bob", true).unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    let alice = forced["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "alice")
        .unwrap();
    assert_eq!(alice["fieldsV1"], json!({"f:spec":{"f:paused":{}}}));
    let a2 = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api"},"spec":{"paused":false}});
    let out = server_side_apply(Some(&forced), &a2, "alice", false).unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
}

#[test]
fn server_side_apply_refuses_configurations_without_identity() {
    let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}});
    let svc = json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"a"}});
    let e = server_side_apply(Some(&svc), &pod, "m", false).unwrap_err();
    assert_eq!(e.code(), 400, "{e}");
    for (applied, manager, code) in [
        (json!({"kind":"Pod","metadata":{"name":"a"}}), "m", 400),
        (
            json!({"apiVersion":"v1","kind":"Pod","metadata":{}}),
            "m",
            422,
        ),
        (
            json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}),
            "",
            400,
        ),
        (json!("x"), "m", 400),
        (
            json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","managedFields":[{"manager":"m"}]}}),
            "m",
            400,
        ),
    ] {
        let e = server_side_apply(None, &applied, manager, false).unwrap_err();
        assert_eq!(e.code(), code, "{applied}: {e}");
    }
}

#[test]
fn unknown_fields_are_named_by_their_paths() {
    let mut d = created_api_deployment();
    assert_eq!(unknown_fields("Deployment", &d), Vec::<String>::new());
    d["spec"]["foo"] = json!(1);
    d["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("x");
    d["metadata"]["labels"]["any-key"] = json!("ok");
    let unknown = unknown_fields("Deployment", &d);
    assert_eq!(
        unknown,
        ["spec.foo", "spec.template.spec.containers[0].imagee"]
    );
    assert_eq!(
        strict_error(&unknown),
        "strict decoding error: unknown field \"spec.foo\", unknown field \"spec.template.spec.containers[0].imagee\""
    );
    assert_eq!(
        openapi::strict_decoding_error("Deployment", "v1", &unknown[..1]),
        "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.foo\""
    );
    assert_eq!(
        openapi::unknown_field_warning("spec.foo"),
        r#"299 - "unknown field \"spec.foo\"""#
    );
    let pod =
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"bad"},"spec":{"containerz":[]}});
    assert_eq!(unknown_fields("Pod", &pod), ["spec.containerz"]);
    let svc = json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"ports":[{"port":80,"targetPort":"http","portt":1}]}});
    assert_eq!(unknown_fields("Service", &svc), ["spec.ports[0].portt"]);
}

#[test]
fn openapi_documents_carry_kinds_descriptions_patch_metadata_and_field_validation() {
    let apps = openapi::group_version_document("apps", "v1").unwrap();
    let schemas = &apps["components"]["schemas"];
    let deploy = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deploy["x-kubernetes-group-version-kind"],
        json!([{"group":"apps","version":"v1","kind":"Deployment"}])
    );
    assert!(
        schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"]["description"]
            .as_str()
            .unwrap()
            .contains("Number of desired pods")
    );
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(
        schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"]["x-kubernetes-patch-merge-key"],
        "containerPort"
    );
    // Every reference resolves within the document.
    let text = apps.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(
            schemas.get(name).is_some(),
            "{name} is referred to but absent"
        );
    }
    let patch = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group":"apps","version":"v1","kind":"Deployment"})
    );
    let params: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(params.contains(&"fieldValidation"), "{params:?}");
    assert!(
        patch["requestBody"]["content"]
            .get("application/strategic-merge-patch+json")
            .is_some()
    );
    // The core group has the Pod; the others their kinds.
    let core = openapi::group_version_document("", "v1").unwrap();
    assert!(core["components"]["schemas"]["io.k8s.api.core.v1.Pod"].is_object());
    assert!(core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"].is_object());
    assert!(core["paths"]["/api/v1/namespaces/{name}"]["patch"].is_object());
    for (g, kind) in [
        ("networking.k8s.io", "io.k8s.api.networking.v1.Ingress"),
        ("discovery.k8s.io", "io.k8s.api.discovery.v1.EndpointSlice"),
    ] {
        let doc = openapi::group_version_document(g, "v1").unwrap();
        assert!(doc["components"]["schemas"][kind].is_object(), "{g}");
    }
}

#[test]
fn every_patch_metadata_entry_is_in_the_documents() {
    let docs: Vec<Value> = [("", "v1"), ("apps", "v1")]
        .iter()
        .map(|(g, v)| openapi::group_version_document(g, v).unwrap())
        .collect();
    for (schema, field, strategy, key) in openapi::PATCH_METADATA {
        let property = docs
            .iter()
            .find_map(|d| d["components"]["schemas"][*schema]["properties"].get(*field))
            .unwrap_or_else(|| panic!("{schema}.{field} is in no document"));
        assert_eq!(
            property["x-kubernetes-patch-strategy"], *strategy,
            "{schema}.{field}"
        );
        assert_eq!(
            property
                .get("x-kubernetes-patch-merge-key")
                .and_then(Value::as_str),
            *key,
            "{schema}.{field}"
        );
    }
}

#[test]
fn the_documents_are_the_same_each_time_so_their_hashes_survive_a_restart() {
    // kubectl keeps a document by its `?hash=` URL; a restart must not invalidate it.
    assert_eq!(
        openapi::generate().index_hash(),
        openapi::generate().index_hash()
    );
}

fn request_headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer secret"),
    );
    for (k, v) in pairs {
        h.insert(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn test_state() -> State {
    State {
        store: Arc::new(Store::new()),
        token: "secret".into(),
        server: "https://127.0.0.1:6443".into(),
        cluster: None,
        stopping: tokio::sync::watch::Sender::new(false),
        kubelet: std::sync::OnceLock::new(),
        signer: crate::apiserver::tokens::tests::signer(),
    }
}

async fn get(path: &str, query: &str, pairs: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
    let r = requests::answer(
        &test_state(),
        &Method::GET,
        path,
        query,
        &request_headers(pairs),
    );
    let (parts, body) = r.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, body)
}

#[tokio::test]
async fn openapi_v3_is_served_with_the_real_servers_caching() {
    let accept = [("accept", "application/json, */*")];
    let (code, headers, body) = get("/openapi/v3", "timeout=32s", &accept).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let index: Value = serde_json::from_slice(&body).unwrap();
    for gv in [
        "api/v1",
        "apis/apps/v1",
        "apis/networking.k8s.io/v1",
        "apis/discovery.k8s.io/v1",
    ] {
        let url = index["paths"][gv]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with(&format!("/openapi/v3/{gv}?hash=")), "{url}");
    }
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    let (path, query) = url.split_once('?').unwrap();
    let hash = query.trim_start_matches("hash=");
    // By its current hash: immutable, kept by kubectl on disk.
    let (code, headers, body) = get(
        path,
        &format!("{query}&timeout=32s"),
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(headers["cache-control"], "public, immutable");
    assert_eq!(headers["etag"], format!("\"{hash}\"").as_str());
    assert!(headers.contains_key("expires"));
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert!(doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"].is_object());
    // Without a hash: not immutable; revalidated by its ETag.
    let (code, headers, _) = get(path, "", &[]).await;
    assert_eq!(code, StatusCode::OK);
    assert!(!headers.contains_key("cache-control"));
    let tag = format!("\"{hash}\"");
    let (code, _, body) = get(path, "", &[("if-none-match", &tag)]).await;
    assert_eq!(code, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    // An old hash is redirected to the current one.
    let (code, headers, _) = get(path, "hash=0123", &[]).await;
    assert_eq!(code, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], url);
    // Unknown group-versions, protobuf-only clients, and no token.
    let (code, _, _) = get("/openapi/v3/apis/batch/v1", "", &[]).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let proto = [(
        "accept",
        "application/com.github.proto-openapi.spec.v3@v1.0+protobuf",
    )];
    let (code, _, _) = get(path, "", &proto).await;
    assert_eq!(code, StatusCode::NOT_ACCEPTABLE);
    let r = requests::answer(
        &test_state(),
        &Method::GET,
        "/openapi/v3",
        "",
        &HeaderMap::new(),
    );
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
