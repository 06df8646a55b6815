//! The app's probes as the injection hands them to the sidecar, Istio's `rewriteAppHTTPProbers`:
//! the kubelet's httpGet and tcpSocket probes of an app container are rewritten to an httpGet
//! on the sidecar's admin port at `/app-health/<container>/<livez|readyz|startupz>`, and the
//! sidecar runs the original probe against the app when asked. The wire form is the env var
//! [`APP_PROBERS_ENV`] of the sidecar container: JSON keyed by that path, as Istio's
//! `ISTIO_KUBE_APP_PROBERS` (`{"/app-health/web/readyz": {"httpGet": {"path": "/",
//! "port": 8080, "scheme": "HTTP"}, "timeoutSeconds": 1}}`), ports already resolved to numbers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The sidecar container's env var that carries the app's original probes.
pub const APP_PROBERS_ENV: &str = "FERRY_APP_PROBERS";
/// The annotation on a Pod that keeps its probes as written (`"false"`): the kubelet probes
/// the app directly, and the node's connections to the probe ports skip the sidecar.
pub const REWRITE_PROBES_ANNOTATION: &str = "ferry.dev/rewrite-probes";
/// Where the rewritten probes point on the admin port.
pub const APP_HEALTH_PREFIX: &str = "/app-health/";

/// The original probes, keyed by the rewritten probe's path.
pub type AppProbers = BTreeMap<String, AppProbe>;

/// One original probe: what to check and how long it may take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppProbe {
    #[serde(flatten)]
    pub check: AppCheck,
    /// The probe's `timeoutSeconds` (at least 1).
    pub timeout_seconds: u32,
}

/// The check, named as the Kubernetes probe's handler is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AppCheck {
    HttpGet(HttpGet),
    TcpSocket(TcpSocket),
}

/// An HTTP GET: healthy on a status from 200 to 399.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGet {
    /// Starts with `/`.
    pub path: String,
    pub port: u16,
    /// `HTTP` or `HTTPS` (the certificate is not verified, as the kubelet does not).
    pub scheme: String,
    /// The address to connect to and the `Host` to send; the Pod's address when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<Header>,
}

/// A header of an [`HttpGet`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A TCP connect: healthy when it is accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpSocket {
    pub port: u16,
    /// The address to connect to; the Pod's address when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// The path of a container's rewritten probe of this kind (`livez`, `readyz`, `startupz`).
pub fn app_health_path(container: &str, kind: &str) -> String {
    format!("{APP_HEALTH_PREFIX}{container}/{kind}")
}

/// Reads [`APP_PROBERS_ENV`]'s value; the error says what is wrong, and where.
pub fn parse(json: &str) -> Result<AppProbers, String> {
    let probers: AppProbers =
        serde_json::from_str(json).map_err(|e| format!("{APP_PROBERS_ENV}: {e}"))?;
    if let Some(path) = probers.keys().find(|p| !p.starts_with(APP_HEALTH_PREFIX)) {
        return Err(format!(
            "{APP_PROBERS_ENV}: {path:?} does not start with {APP_HEALTH_PREFIX}"
        ));
    }
    Ok(probers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_is_istios() {
        let json = r#"{"/app-health/web/readyz": {"httpGet": {"path": "/healthz", "port": 8080,
            "scheme": "HTTP", "httpHeaders": [{"name": "x", "value": "y"}]}, "timeoutSeconds": 2},
            "/app-health/web/livez": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 1}}"#;
        let probers = parse(json).expect("parses");
        assert_eq!(
            probers["/app-health/web/livez"],
            AppProbe {
                check: AppCheck::TcpSocket(TcpSocket {
                    port: 8080,
                    host: None
                }),
                timeout_seconds: 1,
            }
        );
        let again = serde_json::to_string(&probers).expect("encodes");
        assert_eq!(parse(&again).expect("round trip"), probers);
        assert!(
            again.contains(r#""httpGet":{"path":"/healthz","port":8080"#),
            "{again}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("[]").expect_err("not a map");
        assert!(e.starts_with(APP_PROBERS_ENV), "{e}");
        let e = parse(r#"{"/live": {"tcpSocket": {"port": 1}, "timeoutSeconds": 1}}"#)
            .expect_err("outside the prefix");
        assert!(e.contains("\"/live\""), "{e}");
        let e = parse(r#"{"/app-health/a/livez": {"exec": {}, "timeoutSeconds": 1}}"#)
            .expect_err("an unknown check");
        assert!(e.starts_with(APP_PROBERS_ENV), "{e}");
    }
}
