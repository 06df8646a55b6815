use std::sync::Arc;

use ferry_objects::files::Reading;
use ferry_objects::object::{Manifest, Object, Origin};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use serde_json::{Value, json};

use super::jwt::{JwtError, Signer};
use super::*;

const NOW: i64 = 1_800_000_000;

/// A signer for tests (a key made afresh).
pub(crate) fn signer() -> Arc<Signer> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    Arc::new(Signer::from_pkcs8(&key.serialize_der(), ISSUER).unwrap())
}

fn manifest(object: Object) -> Arc<Manifest> {
    Arc::new(Manifest {
        origin: Origin {
            file: "test.yaml".into(),
            doc: None,
        },
        object,
    })
}

fn account(name: &str, uid: &str) -> Arc<Manifest> {
    let sa: ServiceAccount = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": "shop", "uid": uid},
    }))
    .unwrap();
    manifest(Object::ServiceAccount(Box::new(sa)))
}

fn pod(name: &str, uid: &str, service_account: &str) -> Arc<Manifest> {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": uid},
        "spec": {"serviceAccountName": service_account, "containers": [{"name": "c", "image": "ferry/echo"}]},
    }))
    .unwrap();
    manifest(Object::Pod(Box::new(pod)))
}

fn record(state: &State, manifests: Vec<Arc<Manifest>>) {
    state.store.record(&Reading {
        manifests,
        problems: Vec::new(),
    });
}

fn state() -> State {
    let state = State {
        store: Arc::new(Store::new()),
        token: "secret".into(),
        server: "https://127.0.0.1:6443".into(),
        cluster: None,
        stopping: tokio::sync::watch::Sender::new(false),
        kubelet: std::sync::OnceLock::new(),
        signer: signer(),
    };
    record(
        &state,
        vec![
            account("web", "sa-uid-1"),
            account("default", "sa-uid-0"),
            pod("web-1", "pod-uid-1", "web"),
        ],
    );
    state
}

fn request(state: &State, sa: &str, body: &Value) -> Result<Value, Refusal> {
    token_request(
        state,
        "shop",
        sa,
        JSON,
        &serde_json::to_vec(body).unwrap(),
        NOW,
    )
}

fn bound_token(state: &State, audiences: &[&str]) -> String {
    let answer = request(
        state,
        "web",
        &json!({"spec": {"audiences": audiences, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-1"}}}),
    )
    .unwrap();
    answer["status"]["token"].as_str().unwrap().to_owned()
}

fn review(state: &State, token: &str, audiences: &[&str], now: i64) -> Value {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": audiences}});
    token_review(state, JSON, &serde_json::to_vec(&body).unwrap(), true, now).unwrap()
}

async fn failure(answer: Result<Value, Refusal>) -> (StatusCode, Value) {
    let response = *answer.unwrap_err();
    let code = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (code, serde_json::from_slice(&body).unwrap())
}

#[test]
fn a_token_round_trips_through_a_review_with_the_pods_identity() {
    let state = state();
    let answer = request(
        &state,
        "web",
        &json!({"spec": {"audiences": ["ferry"], "boundObjectRef": {"kind": "Pod", "name": "web-1"}}}),
    )
    .unwrap();
    assert_eq!(answer["kind"], "TokenRequest");
    assert_eq!(
        answer["spec"]["expirationSeconds"],
        DEFAULT_EXPIRATION_SECONDS
    );
    assert_eq!(answer["spec"]["boundObjectRef"]["uid"], "pod-uid-1");
    assert_eq!(
        answer["status"]["expirationTimestamp"],
        "2027-01-15T09:00:00Z"
    );
    let token = answer["status"]["token"].as_str().unwrap();
    let reviewed = review(&state, token, &["ferry"], NOW + 10);
    let status = &reviewed["status"];
    assert_eq!(status["authenticated"], true, "{reviewed}");
    assert_eq!(status["audiences"], json!(["ferry"]));
    assert_eq!(status["user"]["username"], "system:serviceaccount:shop:web");
    assert_eq!(status["user"]["uid"], "sa-uid-1");
    assert_eq!(
        status["user"]["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:shop",
            "system:authenticated"
        ])
    );
    assert_eq!(status["user"]["extra"][POD_NAME_EXTRA], json!(["web-1"]));
    assert_eq!(status["user"]["extra"][POD_UID_EXTRA], json!(["pod-uid-1"]));
    // Without audiences, a review is for the API server's own: this token is not.
    let reviewed = review(&state, token, &[], NOW + 10);
    assert_eq!(reviewed["status"]["authenticated"], false);
}

#[test]
fn a_wrong_audience_an_expired_token_or_a_tampered_one_is_not_authenticated() {
    let state = state();
    let token = bound_token(&state, &["ferry"]);
    let wrong = review(&state, &token, &["istio-ca"], NOW);
    assert_eq!(wrong["status"]["authenticated"], false);
    let error = wrong["status"]["error"].as_str().unwrap();
    assert!(
        error.contains("audiences") && error.contains("istio-ca"),
        "{error}"
    );
    assert!(wrong["status"].get("audiences").is_none());

    let expired = review(&state, &token, &["ferry"], NOW + DEFAULT_EXPIRATION_SECONDS);
    assert_eq!(expired["status"]["authenticated"], false);
    assert!(
        expired["status"]["error"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // Another audience in the claims, under the first token's signature.
    let other = bound_token(&state, &["other"]);
    let (header, _) = token.split_once('.').unwrap();
    let (_, rest) = other.split_once('.').unwrap();
    let (payload, _) = rest.split_once('.').unwrap();
    let signature = token.rsplit('.').next().unwrap();
    let forged = format!("{header}.{payload}.{signature}");
    assert_eq!(state.signer.verify(&forged, NOW), Err(JwtError::Signature));
    // Another API server's key.
    assert_eq!(signer().verify(&token, NOW), Err(JwtError::Signature));
    for junk in ["x", "a.b", "a.b.c.d", "eyJ.eyJ.!!"] {
        let r = review(&state, junk, &["ferry"], NOW);
        assert_eq!(r["status"]["authenticated"], false, "{junk:?}");
    }
}

#[test]
fn a_deleted_or_recreated_pod_or_service_account_kills_its_tokens() {
    let state = state();
    let token = bound_token(&state, &["ferry"]);
    assert_eq!(
        review(&state, &token, &["ferry"], NOW)["status"]["authenticated"],
        true
    );
    // Recreated under the same name: a new uid.
    record(
        &state,
        vec![account("web", "sa-uid-1"), pod("web-1", "pod-uid-2", "web")],
    );
    let r = review(&state, &token, &["ferry"], NOW);
    assert_eq!(r["status"]["authenticated"], false);
    assert!(
        r["status"]["error"].as_str().unwrap().contains("pod UID"),
        "{r}"
    );
    // Deleted.
    record(&state, vec![account("web", "sa-uid-1")]);
    let r = review(&state, &token, &["ferry"], NOW);
    assert!(
        r["status"]["error"].as_str().unwrap().contains("not found"),
        "{r}"
    );
    // An unbound token dies with its ServiceAccount's uid.
    let unbound = request(&state, "web", &json!({"spec": {}})).unwrap();
    let unbound = unbound["status"]["token"].as_str().unwrap().to_owned();
    assert_eq!(
        review(&state, &unbound, &[], NOW)["status"]["authenticated"],
        true
    );
    record(&state, vec![account("web", "sa-uid-9")]);
    let r = review(&state, &unbound, &[], NOW);
    assert!(
        r["status"]["error"]
            .as_str()
            .unwrap()
            .contains("service account UID"),
        "{r}"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let state = state();
    let (code, body) = failure(request(&state, "nobody", &json!({"spec": {}}))).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "serviceaccounts \"nobody\" not found");

    let (code, body) = failure(request(
        &state,
        "web",
        &json!({"spec": {"expirationSeconds": 599, "boundObjectRef": {"kind": "Node", "name": "n"}}}),
    ))
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["reason"], "Invalid");
    let fields: Vec<&str> = body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["spec.expirationSeconds", "spec.boundObjectRef.kind"]
    );

    let bind = |name: &str, uid: &str| json!({"spec": {"boundObjectRef": {"kind": "Pod", "name": name, "uid": uid}}});
    let (code, _) = failure(request(&state, "web", &bind("web-9", ""))).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, body) = failure(request(&state, "web", &bind("web-1", "old-uid"))).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    // The Pod runs as `web`, not `default`.
    let (code, body) = failure(request(&state, "default", &bind("web-1", ""))).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("runs as"),
        "{body}"
    );

    let (code, _) = failure(token_request(
        &state,
        "shop",
        "web",
        "text/plain",
        b"x",
        NOW,
    ))
    .await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (code, _) = failure(token_review(&state, JSON, b"{\"spec\":{}}", false, NOW)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let unknown = br#"{"spec":{"token":"x","audience":["ferry"]}}"#;
    let (code, body) = failure(token_review(&state, JSON, unknown, true, NOW)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("spec.audience"),
        "{body}"
    );
}

#[test]
fn kubectls_protobuf_token_request_decodes() {
    // What `kubectl create token default --audience ferry --duration 10m
    // --bound-object-kind Pod --bound-object-name p1` (v1.32) sends.
    let body = b"k8s\x00\n(\n\x18authentication.k8s.io/v1\x12\x0cTokenRequest\x125\n\x10\n\x00\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x12\x1b\n\x05ferry\x1a\x0f\n\x03Pod\x12\x02v1\x1a\x02p1\"\x00 \xd8\x04\x1a\x04\n\x00\x12\x00\x1a\x00\"\x00";
    let request = protobuf::token_request(body).unwrap();
    assert_eq!(request.spec.audiences, ["ferry"]);
    assert_eq!(request.spec.expiration_seconds, Some(600));
    let bound = request.spec.bound_object_ref.unwrap();
    assert_eq!(bound.kind.as_deref(), Some("Pod"));
    assert_eq!(bound.name.as_deref(), Some("p1"));
    assert_eq!(bound.uid, None);
    assert!(protobuf::token_request(b"{}").is_err());
    assert!(protobuf::token_request(b"k8s\x00\xff\xff").is_err());
}

#[test]
fn the_signing_key_is_kept_private_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let first = Signer::load_or_create(dir.path(), ISSUER).unwrap();
    let state = state();
    let claims = state
        .signer
        .verify(&bound_token(&state, &["ferry"]), NOW)
        .unwrap();
    let token = first.sign(&claims).unwrap();
    let again = Signer::load_or_create(dir.path(), ISSUER).unwrap();
    assert_eq!(again.verify(&token, NOW), Ok(claims));
    let path = dir.path().join(jwt::KEY_FILE);
    let mode = std::fs::metadata(&path).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    std::fs::write(&path, "not a key\n").unwrap();
    let e = Signer::load_or_create(dir.path(), ISSUER).unwrap_err();
    assert!(e.to_string().contains(jwt::KEY_FILE), "{e}");
}

#[test]
fn discovery_lists_tokenreviews_and_the_token_subresource() {
    let groups = resources::aggregated(false);
    let authn = groups["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "authentication.k8s.io")
        .unwrap();
    assert_eq!(
        authn["versions"][0]["resources"][0]["resource"],
        "tokenreviews"
    );
    assert_eq!(
        authn["versions"][0]["resources"][0]["verbs"],
        json!(["create"])
    );
    let core = resources::api_resource_list("", "v1");
    let token = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .unwrap();
    assert_eq!(token["kind"], "TokenRequest");
    assert_eq!(token["group"], "authentication.k8s.io");
    assert_eq!(token["verbs"], json!(["create"]));
    assert!(resources::of_kind("ServiceAccount").is_some());
    assert!(resources::of_kind("Pod").is_some());
}
