//! The kubelet's part of the mesh for a meshed Pod (one with the injected sidecar): the
//! interception script its sandbox installs, and its sidecar's token, minted by the control
//! plane's function and written where the injected container's `--token-file` says.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;

use super::probe;

/// A meshed Pod's interception (table and policy route) and its sidecar's token file (written 0600 in a
/// directory of the Pod's own, 0700); the error names what is wrong (a bad annotation, a
/// file that cannot be written).
pub(super) fn setup(
    pod: &Pod,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    ip: IpAddr,
    node: Ipv4Addr,
    mesh: &crate::inject::Mesh,
) -> Result<(crate::network::interception::Install, PathBuf), String> {
    // Probes the injection rewrote reach the sidecar's admin port, exempt anyway; those it
    // left as written (`ferry.dev/rewrite-probes: "false"`) reach the app itself, and their
    // ports are exempted for the node (see the interception's doc).
    let probe_ports: Vec<u16> = spec
        .containers
        .iter()
        .flat_map(|c| probe::specs(c, ip))
        .filter_map(|s| match s.action {
            probe::Action::Http { port, .. } | probe::Action::Tcp { port, .. } => Some(port),
            _ => None,
        })
        .filter(|&port| port != ferry_model::mesh::ADMIN_PORT)
        .collect();
    let interception = crate::network::interception::Interception::of(
        pod.metadata.annotations.as_ref(),
        node,
        probe_ports,
    )?;
    let claims = crate::inject::PodClaims::of(pod);
    let token = (mesh.mint_token)(&claims);
    let path = mesh.token_file(&claims.uid);
    write_secret(&path, &token)
        .map_err(|e| format!("cannot write the sidecar's token {}: {e}", path.display()))?;
    Ok((interception.install(), path))
}

/// Writes a file only its owner reads, in a directory only its owner enters.
fn write_secret(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content.as_bytes())
}
