//! The mesh's interception in a meshed Pod's network namespace, as Linkerd's proxy-init
//! writes it (there with iptables): one nftables table, `inet ferry_mesh`, installed in one
//! `nft -f` before any of the Pod's containers starts and gone with the namespace.
//!
//! - prerouting: TCP arriving for the Pod is redirected to the sidecar's inbound port, except
//!   the sidecar's admin port (its probes and metrics, and the app's probes, which the
//!   injection rewrites to `/app-health/...` there, as Istio does), the ports of
//!   `ferry.dev/skip-inbound-ports`, and, for a Pod whose probes were kept as written
//!   (`ferry.dev/rewrite-probes: "false"`), the node's own connections to the ports those
//!   probes name: the kubelet probes the app itself (a probe through the sidecar would fail for
//!   want of a mesh identity in strict mode). That exemption is by port: when a probe port is
//!   also the port a Service sends to, the node's other connections to it (the gateway's)
//!   skip the sidecar too, and with it strict mTLS and authorization. Every other connection
//!   from the node goes through the sidecar like any client's.
//! - output: TCP the Pod's processes open is redirected to the sidecar's outbound port, except
//!   from sockets carrying the sidecar's mark (its own connections), to loopback, to the
//!   control plane's port on the node (the sidecar reaches it for its certificate before it
//!   serves), and to the ports of `ferry.dev/skip-outbound-ports`. DNS is UDP and is not
//!   intercepted.
//!
//! - the app sees its real client: the sidecar connects to the app from the client's address
//!   (`IP_TRANSPARENT`, with its mark) to the Pod's own address, as Istio's TPROXY mode does.
//!   That connection goes over `lo` and is left alone by both chains above (`lo`, the mark).
//!   Its conntrack entry is marked [`REPLY_MARK`] (`client_address`, at the output hook); the
//!   app's packets in its reply direction get that mark, so the policy route
//!   ([`Interception::routes`]: `fwmark` → table [`ROUTE_TABLE`], where every address is local
//!   on `lo`) delivers them to the sidecar's socket instead of sending them out of `eth0` to the
//!   real client. The replies are never redirected: NAT looks only at a connection's first
//!   packet, and these belong to the sidecar's connection. The mark differs from the sidecar's
//!   socket mark, so its connections to other Pods route as before, and only connections the
//!   sidecar opens over `lo` from an address not on loopback get it.
//!
//! `redirect` sends to the Pod's own address (prerouting) or to 127.0.0.1 (output), so the
//! sidecar listens on every address; it recovers the original destination with
//! `SO_ORIGINAL_DST`. Pure: [`Interception::script`] and [`Interception::routes`] are the
//! text, the sandbox runs them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ferry_model::mesh::{ADMIN_PORT, CONTROL_PORT, INBOUND_PORT, OUTBOUND_PORT, SOCKET_MARK};

use crate::inject::{SKIP_INBOUND_ANNOTATION, SKIP_OUTBOUND_ANNOTATION};

/// The table's name, in the Pod's own namespace (no other ferry writes there).
pub const TABLE: &str = "ferry_mesh";
/// The conntrack and packet mark of the app's replies to the sidecar's connections from a
/// client's address (not the sidecar's socket mark, which its connections out also carry).
pub const REPLY_MARK: u32 = 0x0066_6573;
/// The routing table where every address is local (on `lo`), for packets with [`REPLY_MARK`].
pub const ROUTE_TABLE: u32 = 4143;

/// What a meshed Pod's sandbox installs in its namespace: the nftables table and the policy
/// route (`ip -batch` lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Install {
    pub nft: String,
    pub routes: Vec<String>,
}

/// A port or an inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange(pub u16, pub u16);

/// What the table of one meshed Pod says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interception {
    /// The node's address on the pod network (where its probes come from).
    pub node: Ipv4Addr,
    /// The TCP ports of the app's probes that were not rewritten through the sidecar: the
    /// node reaches them directly.
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

    /// Both parts, as the sandbox installs them.
    pub fn install(&self) -> Install {
        Install {
            nft: self.script(),
            routes: Interception::routes(),
        }
    }

    /// The `ip -batch` lines of the policy route that brings the app's replies to the
    /// sidecar's connections from a client's address back to the sidecar (IPv4: Pods have
    /// IPv4 addresses only).
    pub fn routes() -> Vec<String> {
        vec![
            format!("rule add fwmark {REPLY_MARK:#x} lookup {ROUTE_TABLE}"),
            format!("route add local 0.0.0.0/0 dev lo table {ROUTE_TABLE}"),
        ]
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
        let client_address = [
            format!(
                "meta mark {SOCKET_MARK:#010x} oifname \"lo\" ip saddr != 127.0.0.0/8 ct state new ct mark set {REPLY_MARK:#010x} comment \"the sidecar's connection to the app from its client's address\""
            ),
            format!(
                "ct direction reply ct mark {REPLY_MARK:#010x} meta mark set {REPLY_MARK:#010x} comment \"the app's replies to it: routed back to the sidecar\""
            ),
        ];
        // Should `lo` not keep a packet's mark, it is set again where the reply comes in.
        let client_replies = [format!(
            "iifname \"lo\" ct direction reply ct mark {REPLY_MARK:#010x} meta mark set {REPLY_MARK:#010x}"
        )];
        // The output hook's NAT priority is written as a number: nft takes the name `dstnat`
        // for prerouting only. A `route` chain's mark change makes the kernel route the packet
        // again.
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
             \tchain client_address {{\n\
             \t\ttype route hook output priority mangle; policy accept;\n\
             {}\
             \t}}\n\
             \tchain client_replies {{\n\
             \t\ttype filter hook prerouting priority mangle; policy accept;\n\
             {}\
             \t}}\n\
             }}\n",
            rules(&inbound),
            rules(&outbound),
            rules(&client_address),
            rules(&client_replies)
        )
    }
}

#[cfg(test)]
mod tests;
