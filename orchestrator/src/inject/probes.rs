//! Istio's `rewriteAppHTTPProbers` for ferry: each app container's httpGet and tcpSocket
//! probes become an httpGet on the sidecar's admin port at
//! `/app-health/<container>/<livez|readyz|startupz>`, and the originals go to the sidecar
//! ([`ferry_model::mesh::app_probe`]), which runs them against the app when the kubelet asks.
//! So the node reaches the app only through the sidecar, and nothing needs an exemption from
//! interception for it. Exec probes run inside the container and stay as they are; our kubelet
//! runs no grpc probes, so those stay too (and fail as before).

use ferry_model::mesh::ADMIN_PORT;
use ferry_model::mesh::app_probe::{
    APP_HEALTH_PREFIX, AppCheck, AppProbe, AppProbers, Header, HttpGet, TcpSocket, app_health_path,
};
use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, PodSpec, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Rewrites the probes of the Pod's app containers and returns the originals, keyed by the
/// path that now stands for each. A probe whose port names no port of its container is left
/// as written: the kubelet reports it as it would without the mesh.
pub(super) fn rewrite(spec: &mut PodSpec) -> AppProbers {
    let mut probers = AppProbers::new();
    for container in &mut spec.containers {
        let name = container.name.clone();
        let ports = container.ports.clone().unwrap_or_default();
        for (kind, slot) in [
            ("livez", &mut container.liveness_probe),
            ("readyz", &mut container.readiness_probe),
            ("startupz", &mut container.startup_probe),
        ] {
            let Some(probe) = slot.as_mut() else {
                continue;
            };
            let Some(check) = original(probe, &ports) else {
                continue;
            };
            let path = app_health_path(&name, kind);
            probers.insert(
                path.clone(),
                AppProbe {
                    check,
                    timeout_seconds: u32::try_from(probe.timeout_seconds.unwrap_or(1).max(1))
                        .unwrap_or(1),
                },
            );
            // Timing, thresholds and the grace period stay the probe's own.
            probe.tcp_socket = None;
            probe.http_get = Some(HTTPGetAction {
                path: Some(path),
                port: IntOrString::Int(i32::from(ADMIN_PORT)),
                scheme: Some("HTTP".to_owned()),
                ..HTTPGetAction::default()
            });
        }
    }
    probers
}

/// The check the sidecar runs for a probe, if it is one to rewrite: an httpGet or tcpSocket
/// with a port that resolves, not already pointing at the sidecar.
fn original(probe: &Probe, ports: &[ContainerPort]) -> Option<AppCheck> {
    let host = |h: &Option<String>| h.clone().filter(|h| !h.is_empty());
    if let Some(http) = &probe.http_get {
        let port = port(&http.port, ports)?;
        let path = match http.path.as_deref() {
            None | Some("") => "/".to_owned(),
            Some(p) if p.starts_with('/') => p.to_owned(),
            Some(p) => format!("/{p}"),
        };
        if port == ADMIN_PORT && path.starts_with(APP_HEALTH_PREFIX) {
            return None;
        }
        let https = http
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
        return Some(AppCheck::HttpGet(HttpGet {
            path,
            port,
            scheme: if https { "HTTPS" } else { "HTTP" }.to_owned(),
            host: host(&http.host),
            http_headers: http
                .http_headers
                .iter()
                .flatten()
                .map(|h| Header {
                    name: h.name.clone(),
                    value: h.value.clone(),
                })
                .collect(),
        }));
    }
    if let Some(tcp) = &probe.tcp_socket {
        return Some(AppCheck::TcpSocket(TcpSocket {
            port: port(&tcp.port, ports)?,
            host: host(&tcp.host),
        }));
    }
    None
}

/// A port number, or the name of one of the container's ports (as the kubelet resolves it).
fn port(port: &IntOrString, ports: &[ContainerPort]) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok().filter(|&p| p != 0),
        IntOrString::String(name) => name.parse::<u16>().ok().filter(|&p| p != 0).or_else(|| {
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .filter(|&p| p != 0)
        }),
    }
}
