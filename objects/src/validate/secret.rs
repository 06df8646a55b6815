//! v1 Secret: key names and size, and for `kubernetes.io/tls` a certificate and key that parse
//! and belong together.

use super::Check;
use crate::certificate;

pub const TLS_TYPE: &str = "kubernetes.io/tls";
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_PRIVATE_KEY: &str = "tls.key";
const MAX_SECRET_BYTES: usize = 1024 * 1024;
const MAX_KEY_LEN: usize = 253;

pub(super) fn secret(c: &mut Check<'_>, s: &k8s_openapi::api::core::v1::Secret) {
    let data = s.data.as_ref();
    let mut total = 0;
    for (k, v) in data.into_iter().flatten() {
        total += v.0.len();
        let ok = !k.is_empty()
            && k.len() <= MAX_KEY_LEN
            && k != "."
            && !k.starts_with("..")
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !ok {
            c.invalid(
                &format!("data[{k}]"),
                k,
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name')",
            );
        }
    }
    if total > MAX_SECRET_BYTES {
        c.too_long("data", MAX_SECRET_BYTES);
    }
    if s.type_.as_deref() != Some(TLS_TYPE) {
        return;
    }
    let get = |k: &str| data.and_then(|d| d.get(k)).map(|b| b.0.as_slice());
    let (cert, key) = (get(TLS_CERT_KEY), get(TLS_PRIVATE_KEY));
    if cert.is_none() {
        c.required(&format!("data[{TLS_CERT_KEY}]"));
    }
    if key.is_none() {
        c.required(&format!("data[{TLS_PRIVATE_KEY}]"));
    }
    if let (Some(cert), Some(key)) = (cert, key)
        && let Err(e) = certificate::check_pair(cert, key)
    {
        let field = if e.starts_with(TLS_PRIVATE_KEY) {
            TLS_PRIVATE_KEY
        } else {
            TLS_CERT_KEY
        };
        c.error(&format!("data[{field}]"), format!("Invalid value: {e}"));
    }
}
