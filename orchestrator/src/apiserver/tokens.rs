//! ServiceAccount tokens, as the Kubernetes API server serves them:
//!
//! - `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token` (TokenRequest, what
//!   `kubectl create token` and the kubelet's projected volumes ask): a signed JWT ([`jwt`])
//!   for the ServiceAccount, for `spec.audiences` (the API server's own when empty),
//!   `spec.expirationSeconds` long (at least 600, 3600 when unset), and bound to a Pod when
//!   `spec.boundObjectRef` names one: the Pod must exist, run as that ServiceAccount, and
//!   have the uid given (the uid is filled in when not). JSON or protobuf ([`protobuf`]) in,
//!   JSON out.
//! - `POST /apis/authentication.k8s.io/v1/tokenreviews` (TokenReview): whether a token is one
//!   of ours, still valid for one of the audiences asked (`spec.audiences`, the API server's
//!   own when empty), its ServiceAccount and bound Pod still there with the uids it names.
//!   A token that is not is `status.authenticated: false` with `status.error`, never an HTTP
//!   error, as Kubernetes answers.
//!
//! Both are served to the admin token only, as the rest of this API server. A TokenReview's
//! `fieldValidation=Strict` refuses unknown fields, as the OpenAPI document says it does.

pub mod jwt;
pub mod protobuf;

#[cfg(test)]
pub(crate) mod tests;

use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenReview, TokenReviewStatus, UserInfo,
};
use serde_json::{Value, json};

use super::requests::{JSON, authorized, json_response, status};
use super::resources::{self, Resource};
use super::*;
use jwt::{Claims, KubernetesClaims, ObjectClaim};

/// The issuer of this API server's tokens, and its own audience (`--api-audiences` defaults
/// to the issuer): what a token asked without audiences is for.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The shortest lifetime a TokenRequest may ask (Kubernetes' minimum).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The lifetime of a token when the request names none.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The longest lifetime a TokenRequest may ask (Kubernetes' validation: 2^32 seconds).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// The extra fields of a Pod-bound token's user, as Kubernetes names them.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";
const CREDENTIAL_ID_EXTRA: &str = "authentication.kubernetes.io/credential-id";
/// The largest body taken: a TokenRequest or TokenReview is a few hundred bytes and a token.
const MAX_BODY: usize = 64 * 1024;

/// A refusal: the `Status` answer (boxed: a response is large, a success small).
type Refusal = Box<Response<ApiBody>>;

/// Which of the two a request is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    TokenRequest { namespace: String, name: String },
    TokenReview,
}

/// The route of a request these serve (any method: a GET on them is answered 405 here).
pub(super) fn route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [
            "api",
            "v1",
            "namespaces",
            namespace,
            "serviceaccounts",
            name,
            "token",
        ] if !namespace.is_empty() && !name.is_empty() => Some(Route::TokenRequest {
            namespace: (*namespace).to_owned(),
            name: (*name).to_owned(),
        }),
        ["apis", "authentication.k8s.io", "v1", "tokenreviews"] => Some(Route::TokenReview),
        _ => None,
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn resource(kind: &str) -> &'static Resource {
    // Both kinds are in RESOURCES: a test checks.
    resources::of_kind(kind).unwrap_or(&resources::RESOURCES[0])
}

/// Serves a TokenRequest or a TokenReview.
pub(super) async fn handle(
    state: &State,
    route: Route,
    req: Request<Incoming>,
) -> Response<ApiBody> {
    let (parts, body) = req.into_parts();
    if !authorized(&parts.headers, &state.token) {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        );
    }
    if parts.method != Method::POST {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource (only create: POST)",
            Some(json!({})),
        );
    }
    let body = match super::requests::body_within(body, MAX_BODY).await {
        Ok(b) => b,
        Err(too_large) => return too_large,
    };
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let strict = super::requests::query_params(parts.uri.query().unwrap_or(""))
        .iter()
        .any(|(k, v)| k == "fieldValidation" && v == "Strict");
    let answer = match route {
        Route::TokenRequest { namespace, name } => {
            token_request(state, &namespace, &name, &content_type, &body, now())
        }
        Route::TokenReview => token_review(state, &content_type, &body, strict, now()),
    };
    match answer {
        Ok(value) => json_response(StatusCode::CREATED, JSON, &value),
        Err(failure) => *failure,
    }
}

fn unsupported(given: &str, accepted: &str) -> Response<ApiBody> {
    status(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        &format!(
            "the body of the request was in an unknown format ({given:?}) - accepted media types include: {accepted}"
        ),
        None,
    )
}

/// A `422 Invalid` naming each field refused.
fn invalid(kind: &str, name: &str, causes: &[(&str, String)]) -> Response<ApiBody> {
    let message = causes
        .iter()
        .map(|(field, message)| format!("{field}: {message}"))
        .collect::<Vec<_>>()
        .join(", ");
    let causes: Vec<Value> = causes
        .iter()
        .map(|(field, message)| json!({"reason": "FieldValueInvalid", "message": message, "field": field}))
        .collect();
    status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        &format!("{kind}.authentication.k8s.io \"{name}\" is invalid: {message}"),
        Some(
            json!({"name": name, "group": "authentication.k8s.io", "kind": kind, "causes": causes}),
        ),
    )
}

fn not_found(resource: &Resource, name: &str) -> Response<ApiBody> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{} \"{name}\" not found", resource.qualified()),
        Some(json!({"name": name, "group": resource.group, "kind": resource.plural})),
    )
}

fn uid_of(object: &Value) -> String {
    object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

fn service_account_of(pod: &Value) -> &str {
    pod.pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(crate::serviceaccount::DEFAULT)
}

/// A TokenRequest for `namespace/name`: the request with its defaults filled and
/// `status.token`, or the refusal.
pub(super) fn token_request(
    state: &State,
    namespace: &str,
    name: &str,
    content_type: &str,
    body: &[u8],
    now: i64,
) -> Result<Value, Refusal> {
    let request: TokenRequest = match content_type {
        "" | JSON => serde_json::from_slice(body).map_err(|e| {
            super::requests::bad_request(&format!("the body is not a TokenRequest: {e}"))
        })?,
        protobuf::PROTOBUF => {
            protobuf::token_request(body).map_err(|e| super::requests::bad_request(&e))?
        }
        other => {
            return Err(Box::new(unsupported(
                other,
                &format!("{JSON}, {}", protobuf::PROTOBUF),
            )));
        }
    };
    let service_accounts = resource("ServiceAccount");
    let Some(account) = state.store.get(service_accounts, namespace, name) else {
        return Err(Box::new(not_found(service_accounts, name)));
    };
    let mut spec = request.spec;
    let expiration = spec
        .expiration_seconds
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    let mut causes = Vec::new();
    if expiration < MIN_EXPIRATION_SECONDS {
        causes.push((
            "spec.expirationSeconds",
            format!("may not specify a duration less than {MIN_EXPIRATION_SECONDS} seconds"),
        ));
    } else if expiration > MAX_EXPIRATION_SECONDS {
        causes.push((
            "spec.expirationSeconds",
            format!("may not specify a duration larger than {MAX_EXPIRATION_SECONDS} seconds"),
        ));
    }
    if spec.audiences.iter().any(String::is_empty) {
        causes.push(("spec.audiences", "an audience may not be empty".to_owned()));
    }
    if let Some(bound) = &spec.bound_object_ref {
        match bound.kind.as_deref() {
            Some("Pod") => {}
            Some(other) => causes.push((
                "spec.boundObjectRef.kind",
                format!("Unsupported value: {other:?}: supported values: \"Pod\""),
            )),
            None => causes.push(("spec.boundObjectRef.kind", "Required value".to_owned())),
        }
        if bound.api_version.as_deref().is_some_and(|v| v != "v1") {
            causes.push((
                "spec.boundObjectRef.apiVersion",
                "Unsupported value: a Pod's is \"v1\"".to_owned(),
            ));
        }
        if bound.name.as_deref().is_none_or(str::is_empty) {
            causes.push(("spec.boundObjectRef.name", "Required value".to_owned()));
        }
    }
    if !causes.is_empty() {
        return Err(Box::new(invalid("TokenRequest", name, &causes)));
    }
    let pod = match &mut spec.bound_object_ref {
        Some(bound) => Some(bound_pod(state, namespace, name, bound)?),
        None => None,
    };
    if spec.audiences.is_empty() {
        spec.audiences = vec![ISSUER.to_owned()];
    }
    spec.expiration_seconds = Some(expiration);
    let claims = Claims {
        iss: state.signer.issuer().to_owned(),
        sub: format!("system:serviceaccount:{namespace}:{name}"),
        aud: spec.audiences.clone(),
        exp: now + expiration,
        iat: now,
        nbf: now,
        jti: super::new_uid(),
        kubernetes: KubernetesClaims {
            namespace: namespace.to_owned(),
            serviceaccount: ObjectClaim {
                name: name.to_owned(),
                uid: uid_of(&account),
            },
            pod,
        },
    };
    let token = state.signer.sign(&claims).map_err(|e| {
        status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("cannot sign the token: {e}"),
            None,
        )
    })?;
    let expires = jiff::Timestamp::from_second(claims.exp)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let created = jiff::Timestamp::from_second(now)
        .map(|t| t.to_string())
        .unwrap_or_default();
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": expires},
    }))
}

/// The Pod a token is bound to, checked as Kubernetes checks it; its uid filled in.
fn bound_pod(
    state: &State,
    namespace: &str,
    service_account: &str,
    bound: &mut BoundObjectReference,
) -> Result<ObjectClaim, Refusal> {
    let pods = resource("Pod");
    let pod_name = bound.name.clone().unwrap_or_default();
    let Some(pod) = state.store.get(pods, namespace, &pod_name) else {
        return Err(Box::new(not_found(pods, &pod_name)));
    };
    let uid = uid_of(&pod);
    if let Some(given) = bound.uid.as_deref().filter(|u| !u.is_empty())
        && given != uid
    {
        return Err(Box::new(status(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on pods \"{pod_name}\": the UID in the bound object reference ({given}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
            ),
            Some(json!({"name": pod_name, "kind": "pods"})),
        )));
    }
    let runs_as = service_account_of(&pod);
    if runs_as != service_account {
        return Err(Box::new(super::requests::bad_request(&format!(
            "cannot bind token for serviceaccount {service_account:?} to pod {pod_name:?}, which runs as serviceaccount {runs_as:?}"
        ))));
    }
    bound.api_version = Some("v1".to_owned());
    bound.uid = Some(uid.clone());
    Ok(ObjectClaim {
        name: pod_name,
        uid,
    })
}

/// A TokenReview: the review with its status.
pub(super) fn token_review(
    state: &State,
    content_type: &str,
    body: &[u8],
    strict: bool,
    now: i64,
) -> Result<Value, Refusal> {
    if !matches!(content_type, "" | JSON) {
        return Err(Box::new(unsupported(content_type, JSON)));
    }
    if strict {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            super::requests::bad_request(&format!("the body is not a TokenReview: {e}"))
        })?;
        let unknown = super::openapi::unknown_fields("TokenReview", &value);
        if !unknown.is_empty() {
            let fields: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field {f:?}"))
                .collect();
            return Err(Box::new(super::requests::bad_request(&format!(
                "strict decoding error: {}",
                fields.join(", ")
            ))));
        }
    }
    let mut review: TokenReview = serde_json::from_slice(body).map_err(|e| {
        super::requests::bad_request(&format!("the body is not a TokenReview: {e}"))
    })?;
    let token = review.spec.token.clone().unwrap_or_default();
    if token.is_empty() {
        return Err(Box::new(super::requests::bad_request(
            "token is required for TokenReview in authentication",
        )));
    }
    let wanted = if review.spec.audiences.as_ref().is_none_or(Vec::is_empty) {
        vec![ISSUER.to_owned()]
    } else {
        review.spec.audiences.clone().unwrap_or_default()
    };
    review.status = Some(match review_token(state, &token, &wanted, now) {
        Ok(status) => status,
        Err(error) => TokenReviewStatus {
            authenticated: Some(false),
            error: Some(error),
            user: Some(UserInfo::default()),
            audiences: None,
        },
    });
    review.metadata = Default::default();
    let mut value = serde_json::to_value(&review).unwrap_or_default();
    value["kind"] = json!("TokenReview");
    value["apiVersion"] = json!("authentication.k8s.io/v1");
    value["metadata"] = json!({"creationTimestamp": null});
    Ok(value)
}

/// Who a token authenticates, for one of `wanted`'s audiences; else the error a review says.
pub(super) fn review_token(
    state: &State,
    token: &str,
    wanted: &[String],
    now: i64,
) -> Result<TokenReviewStatus, String> {
    let invalid = |e: &dyn std::fmt::Display| format!("[invalid bearer token, {e}]");
    let claims = state.signer.verify(token, now).map_err(|e| invalid(&e))?;
    let audiences: Vec<String> = claims
        .aud
        .iter()
        .filter(|a| wanted.contains(a))
        .cloned()
        .collect();
    if audiences.is_empty() {
        return Err(invalid(&format!(
            "token audiences {:?} is invalid for the target audiences {wanted:?}",
            claims.aud
        )));
    }
    let k = &claims.kubernetes;
    let account = state
        .store
        .get(
            resource("ServiceAccount"),
            &k.namespace,
            &k.serviceaccount.name,
        )
        .ok_or_else(|| {
            invalid(&format!(
                "serviceaccounts \"{}\" not found",
                k.serviceaccount.name
            ))
        })?;
    let account_uid = uid_of(&account);
    if account_uid != k.serviceaccount.uid {
        return Err(invalid(&format!(
            "service account UID ({account_uid}) does not match claim ({})",
            k.serviceaccount.uid
        )));
    }
    let mut extra = std::collections::BTreeMap::new();
    if let Some(bound) = &k.pod {
        let pod = state
            .store
            .get(resource("Pod"), &k.namespace, &bound.name)
            .ok_or_else(|| invalid(&format!("pods \"{}\" not found", bound.name)))?;
        let pod_uid = uid_of(&pod);
        if pod_uid != bound.uid {
            return Err(invalid(&format!(
                "pod UID ({pod_uid}) does not match claim ({})",
                bound.uid
            )));
        }
        extra.insert(POD_NAME_EXTRA.to_owned(), vec![bound.name.clone()]);
        extra.insert(POD_UID_EXTRA.to_owned(), vec![bound.uid.clone()]);
    }
    extra.insert(
        CREDENTIAL_ID_EXTRA.to_owned(),
        vec![format!("JTI={}", claims.jti)],
    );
    Ok(TokenReviewStatus {
        authenticated: Some(true),
        audiences: Some(audiences),
        error: None,
        user: Some(UserInfo {
            username: Some(claims.sub.clone()),
            uid: Some(account_uid),
            groups: Some(vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{}", k.namespace),
                "system:authenticated".to_owned(),
            ]),
            extra: Some(extra),
        }),
    })
}
