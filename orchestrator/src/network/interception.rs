//! The mesh's interception in a meshed Pod's network namespace, as Linkerd's proxy-init
//! writes it (there with iptables): one nftables table, `inet ferry_mesh`, installed in one
//! `nft -f` before any of the Pod's containers starts and gone with the namespace.
//!
//! - prerouting: TCP arriving for the Pod is redirected to the sidecar's inbound port, except
//!   the sidecar's admin port (its probes and metrics), the ports of
//!   `ferry.dev/skip-inbound-ports`, and the node's own connections to the ports the app's
//!   probes name: the kubelet probes the app itself, as Linkerd passes probes through (a probe
//!   through the sidecar would fail for want of a mesh identity in strict mode). The node's
//!   connections to other ports go through the sidecar like any client's. The exemption is by
//!   port: when a probe port is also the port a Service sends to, the node's other
//!   connections to it (the gateway's) skip the sidecar too, and with it strict mTLS and
//!   authorization; Istio avoids this by rewriting probes to go through the sidecar, which
//!   ferry does not do yet.
//! - output: TCP the Pod's processes open is redirected to the sidecar's outbound port, except
//!   from sockets carrying the sidecar's mark (its own connections), to loopback, to the
//!   control plane's port on the node (the sidecar reaches it for its certificate before it
//!   serves), and to the ports of `ferry.dev/skip-outbound-ports`. DNS is UDP and is not
//!   intercepted.
//!
//! `redirect` sends to the Pod's own address (prerouting) or to 127.0.0.1 (output), so the
//! sidecar listens on every address; it recovers the original destination with
//! `SO_ORIGINAL_DST`. Pure: [`Interception::script`] is the text, the sandbox runs it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ferry_model::mesh::{ADMIN_PORT, CONTROL_PORT, INBOUND_PORT, OUTBOUND_PORT, SOCKET_MARK};

use crate::inject::{SKIP_INBOUND_ANNOTATION, SKIP_OUTBOUND_ANNOTATION};

/// The table's name, in the Pod's own namespace (no other ferry writes there).
pub const TABLE: &str = "ferry_mesh";

/// A port or an inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange(pub u16, pub u16);

/// What the table of one meshed Pod says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interception {
    /// The node's address on the pod network (where its probes come from).
    pub node: Ipv4Addr,
    /// The TCP ports the app's probes name: the node reaches them directly.
    pub probe_ports: Vec<u16>,
    pub skip_inbound: Vec<PortRange>,
    pub skip_outbound: Vec<PortRange>,
}

/// Reads a comma list of ports and ranges (`25,8000-8100`); the error names the annotation.
pub fn ports(annotation: &str, value: &str) -> Result<Vec<PortRange>, String> {
    let bad = |part: &str, why: &str| {
        format!("annotation {annotation}: {part:?} is not a port or a range of ports ({why})")
    };
    let port = |s: &str, part: &str| -> Result<u16, String> {
        match s.trim().parse::<u16>() {
            Ok(0) => Err(bad(part, "port 0")),
            Ok(p) => Ok(p),
            Err(_) => Err(bad(part, "ports are 1-65535")),
        }
    };
    let mut out = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let range = match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (port(a, part)?, port(b, part)?);
                if a > b {
                    return Err(bad(part, "the range is reversed"));
                }
                PortRange(a, b)
            }
            None => {
                let p = port(part, part)?;
                PortRange(p, p)
            }
        };
        out.push(range);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

impl Interception {
    /// The interception of a Pod with these annotations; the error names a bad annotation.
    pub fn of(
        annotations: Option<&BTreeMap<String, String>>,
        node: Ipv4Addr,
        probe_ports: Vec<u16>,
    ) -> Result<Interception, String> {
        let read = |name: &str| match annotations.and_then(|a| a.get(name)) {
            Some(value) => ports(name, value),
            None => Ok(Vec::new()),
        };
        let mut probe_ports = probe_ports;
        probe_ports.sort_unstable();
        probe_ports.dedup();
        Ok(Interception {
            node,
            probe_ports,
            skip_inbound: read(SKIP_INBOUND_ANNOTATION)?,
            skip_outbound: read(SKIP_OUTBOUND_ANNOTATION)?,
        })
    }

    /// The `nft -f` script that (re)makes the table in one transaction.
    pub fn script(&self) -> String {
        let set = |ports: &[PortRange]| {
            let items: Vec<String> = ports
                .iter()
                .map(|PortRange(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            format!("{{ {} }}", items.join(", "))
        };
        let mut inbound = vec![
            "iifname \"lo\" accept".to_owned(),
            format!(
                "tcp dport {{ {INBOUND_PORT}, {ADMIN_PORT} }} accept comment \"the sidecar's own\""
            ),
        ];
        if !self.probe_ports.is_empty() {
            let probes: Vec<PortRange> =
                self.probe_ports.iter().map(|&p| PortRange(p, p)).collect();
            inbound.push(format!(
                "ip saddr {} tcp dport {} accept comment \"the kubelet's probes of the app\"",
                self.node,
                set(&probes)
            ));
        }
        if !self.skip_inbound.is_empty() {
            inbound.push(format!(
                "tcp dport {} accept comment \"{SKIP_INBOUND_ANNOTATION}\"",
                set(&self.skip_inbound)
            ));
        }
        inbound.push(format!("meta l4proto tcp redirect to :{INBOUND_PORT}"));
        let mut outbound = vec![
            format!(
                "meta mark {SOCKET_MARK:#010x} accept comment \"the sidecar's own connections\""
            ),
            "ip daddr 127.0.0.0/8 accept".to_owned(),
            "oifname \"lo\" accept".to_owned(),
            // The sidecar's certificate and destinations come over the control channel before
            // its outbound listener exists: redirected, they would wait on themselves.
            format!(
                "ip daddr {} tcp dport {CONTROL_PORT} accept comment \"the control plane\"",
                self.node
            ),
        ];
        if !self.skip_outbound.is_empty() {
            outbound.push(format!(
                "tcp dport {} accept comment \"{SKIP_OUTBOUND_ANNOTATION}\"",
                set(&self.skip_outbound)
            ));
        }
        outbound.push(format!("meta l4proto tcp redirect to :{OUTBOUND_PORT}"));
        let rules = |rules: &[String]| {
            rules
                .iter()
                .map(|r| format!("\t\t{r}\n"))
                .collect::<String>()
        };
        // The output hook's NAT priority is written as a number: nft takes the name `dstnat`
        // for prerouting only.
        format!(
            "table inet {TABLE} {{}}\n\
             delete table inet {TABLE}\n\
             table inet {TABLE} {{\n\
             \tchain inbound {{\n\
             \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             {}\
             \t}}\n\
             \tchain outbound {{\n\
             \t\ttype nat hook output priority -100; policy accept;\n\
             {}\
             \t}}\n\
             }}\n",
            rules(&inbound),
            rules(&outbound)
        )
    }
}

#[cfg(test)]
mod tests;
