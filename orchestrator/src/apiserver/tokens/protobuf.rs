//! A `TokenRequest` in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! which `kubectl create token` sends (client-go's typed clients do, and a 415 does not make
//! them retry in JSON). The envelope is the four bytes `k8s\0` and a `runtime.Unknown`
//! (`typeMeta`, `raw`); `raw` is the `authentication.k8s.io/v1` `TokenRequest`
//! (`k8s.io/api/authentication/v1/generated.proto`). Only the fields the API server reads
//! from a request are decoded: `spec` (audiences, expirationSeconds, boundObjectRef);
//! `metadata` and `status` are skipped, as prost skips any field it is not told of.

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use prost::Message;

/// The media type.
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    content_encoding: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct WireTokenRequest {
    #[prost(message, optional, tag = "2")]
    spec: Option<WireSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct WireSpec {
    #[prost(string, repeated, tag = "1")]
    audiences: Vec<String>,
    #[prost(message, optional, tag = "3")]
    bound_object_ref: Option<WireBoundObjectRef>,
    #[prost(int64, optional, tag = "4")]
    expiration_seconds: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct WireBoundObjectRef {
    #[prost(string, optional, tag = "1")]
    kind: Option<String>,
    #[prost(string, optional, tag = "2")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "3")]
    name: Option<String>,
    #[prost(string, optional, tag = "4")]
    uid: Option<String>,
}

/// Empty strings are unset, as Go's zero values are.
fn set(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// The `TokenRequest` a protobuf body holds, or why it holds none (a message for a 400).
pub fn token_request(body: &[u8]) -> Result<TokenRequest, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("the body does not start with the protobuf envelope's magic (k8s\\0)")?;
    let unknown = Unknown::decode(envelope)
        .map_err(|e| format!("the protobuf envelope does not decode: {e}"))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let (api_version, kind) = (
        type_meta.api_version.unwrap_or_default(),
        type_meta.kind.unwrap_or_default(),
    );
    if api_version != "authentication.k8s.io/v1" || kind != "TokenRequest" {
        return Err(format!(
            "the body is a {api_version}/{kind}, not an authentication.k8s.io/v1 TokenRequest"
        ));
    }
    if let Some(encoding) = set(unknown.content_encoding) {
        return Err(format!("content encoding {encoding:?} is not supported"));
    }
    let wire = WireTokenRequest::decode(unknown.raw.unwrap_or_default().as_slice())
        .map_err(|e| format!("the TokenRequest does not decode: {e}"))?;
    let spec = wire.spec.unwrap_or_default();
    Ok(TokenRequest {
        spec: TokenRequestSpec {
            audiences: spec.audiences,
            expiration_seconds: spec.expiration_seconds,
            bound_object_ref: spec.bound_object_ref.map(|r| BoundObjectReference {
                kind: set(r.kind),
                api_version: set(r.api_version),
                name: set(r.name),
                uid: set(r.uid),
            }),
        },
        ..TokenRequest::default()
    })
}
