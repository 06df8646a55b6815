//! The Kubernetes service environment variables a container starts with (the kubelet's
//! `envvars.FromServices`): for each Service of the Pod's namespace that has a cluster IP when
//! the Pod starts, `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT`, `<NAME>_SERVICE_PORT_<PORT>`
//! for named ports, and the Docker-links style `<NAME>_PORT…` family.

use k8s_openapi::api::core::v1::Service;

/// `my-svc` → `MY_SVC`.
fn env_name(s: &str) -> String {
    s.to_ascii_uppercase().replace('-', "_")
}

/// The variables for one Service, or none when it has no usable cluster IP.
pub fn for_service(name: &str, svc: &Service) -> Vec<(String, String)> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    let Some(ip) = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")
    else {
        return Vec::new();
    };
    let ports = spec.ports.as_deref().unwrap_or_default();
    let Some(first) = ports.first() else {
        return Vec::new();
    };
    let prefix = env_name(name);
    // IPv6 addresses are bracketed in the URLs, as Kubernetes does.
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    let mut env = vec![
        (format!("{prefix}_SERVICE_HOST"), ip.to_owned()),
        (format!("{prefix}_SERVICE_PORT"), first.port.to_string()),
    ];
    for p in ports {
        if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
            env.push((
                format!("{prefix}_SERVICE_PORT_{}", env_name(n)),
                p.port.to_string(),
            ));
        }
    }
    let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
        p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase()
    };
    env.push((
        format!("{prefix}_PORT"),
        format!("{}://{host}:{}", proto(first), first.port),
    ));
    for p in ports {
        let proto = proto(p);
        let base = format!("{prefix}_PORT_{}_{}", p.port, proto.to_ascii_uppercase());
        env.push((base.clone(), format!("{proto}://{host}:{}", p.port)));
        env.push((format!("{base}_PROTO"), proto));
        env.push((format!("{base}_PORT"), p.port.to_string()));
        env.push((format!("{base}_ADDR"), ip.to_owned()));
    }
    env
}

#[cfg(test)]
mod tests;
