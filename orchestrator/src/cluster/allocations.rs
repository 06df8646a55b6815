//! The API server's allocators as the live cluster uses them: each Service's cluster IP from
//! the service range and its node ports, given on create and kept while the Service exists;
//! what a Service names is reserved, what it leaves out is allocated.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::*;

#[derive(Clone, Debug, Default)]
pub(super) struct ServiceAlloc {
    /// The address this Service holds in the service range, if any.
    cluster_ip: Option<IpAddr>,
    /// Node ports by the Service port's index.
    node_ports: BTreeMap<usize, u16>,
}

/// What the API server's allocators hold: cluster IPs and node ports, by Service.
#[derive(Clone, Debug)]
pub(super) struct Allocations {
    service_ips: IpAllocator,
    node_ports: PortAllocator,
    services: BTreeMap<NamespacedName, ServiceAlloc>,
}

impl Allocations {
    /// Nothing held yet; cluster IPs come from `service_cidr`.
    pub(super) fn new(service_cidr: Cidr) -> Allocations {
        Allocations {
            service_ips: IpAllocator::new(service_cidr),
            node_ports: PortAllocator::default(),
            services: BTreeMap::new(),
        }
    }

    /// Gives each Service its cluster IP and node ports, as the API server does on create:
    /// one it names in the service range is reserved, one it does not name is allocated, and
    /// both stay the Service's while it exists.
    pub(super) fn allocate(
        &mut self,
        declared: &[Arc<Manifest>],
        problems: &mut Vec<Problem>,
    ) -> Vec<Arc<Manifest>> {
        let mut seen = BTreeMap::new();
        let mut out = Vec::with_capacity(declared.len());
        for m in declared {
            let Object::Service(svc) = &m.object else {
                continue;
            };
            let key = NamespacedName::of(m);
            let mut svc = (**svc).clone();
            let alloc = self.services.remove(&key).unwrap_or_default();
            let alloc = self.allocate_service(m, &mut svc, alloc, problems);
            seen.insert(key, alloc);
            out.push(Arc::new(Manifest {
                origin: m.origin.clone(),
                object: Object::Service(Box::new(svc)),
            }));
        }
        for (_, gone) in std::mem::take(&mut self.services) {
            self.release_service(gone);
        }
        self.services = seen;
        out
    }

    pub(super) fn release_service(&mut self, alloc: ServiceAlloc) {
        if let Some(ip) = alloc.cluster_ip {
            self.service_ips.release(ip);
        }
        for port in alloc.node_ports.into_values() {
            self.node_ports.release(port);
        }
    }

    pub(super) fn allocate_service(
        &mut self,
        m: &Manifest,
        svc: &mut Service,
        mut alloc: ServiceAlloc,
        problems: &mut Vec<Problem>,
    ) -> ServiceAlloc {
        let Some(spec) = svc.spec.as_mut() else {
            return alloc;
        };
        let kind = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
        let named = spec
            .cluster_ip
            .clone()
            .or_else(|| {
                spec.cluster_ips
                    .as_ref()
                    .and_then(|ips| ips.first().cloned())
            })
            .filter(|ip| !ip.is_empty());
        let wants_ip = kind != "ExternalName" && named.as_deref() != Some("None");
        let ip = if !wants_ip {
            None
        } else if let Some(named) = named {
            match named.parse::<IpAddr>() {
                Ok(ip) if alloc.cluster_ip == Some(ip) => Some(ip),
                Ok(ip) if self.service_ips.cidr().contains(ip) => {
                    if !self.service_ips.is_usable(ip) {
                        problems.push(m.error(
                            "spec.clusterIP",
                            format!(
                                "Invalid value: \"{ip}\": the first and last address of the service range {} are not handed out",
                                self.service_ips.cidr()
                            ),
                        ));
                        None
                    } else if self.service_ips.reserve(ip) {
                        Some(ip)
                    } else {
                        problems.push(m.error(
                            "spec.clusterIP",
                            format!("Invalid value: \"{ip}\": provided IP is already allocated"),
                        ));
                        None
                    }
                }
                Ok(ip) => {
                    problems.push(m.warning(
                        "spec.clusterIP",
                        format!(
                            "{ip} is outside the service range {} (--service-cidr): DNS answers it, the L4 proxy does not serve it",
                            self.service_ips.cidr()
                        ),
                    ));
                    None
                }
                Err(_) => None,
            }
        } else {
            alloc.cluster_ip.or_else(|| {
                let ip = self.service_ips.allocate();
                if ip.is_none() {
                    problems.push(m.error(
                        "spec.clusterIP",
                        format!("the service range {} is full", self.service_ips.cidr()),
                    ));
                }
                ip
            })
        };
        if alloc.cluster_ip != ip
            && let Some(old) = alloc.cluster_ip
        {
            self.service_ips.release(old);
        }
        alloc.cluster_ip = ip;
        if let Some(ip) = ip {
            spec.cluster_ip = Some(ip.to_string());
            spec.cluster_ips = Some(vec![ip.to_string()]);
        }

        let wants_node_ports = matches!(kind.as_str(), "NodePort" | "LoadBalancer");
        // What this Service held before this pass: its own, whichever port asks for it now.
        let held_before: BTreeSet<u16> = alloc.node_ports.values().copied().collect();
        let mut ports: BTreeMap<usize, u16> = BTreeMap::new();
        // Ports with one number and two protocols (53/UDP and 53/TCP) share one node port,
        // as the API server gives them.
        let mut by_number: BTreeMap<i32, u16> = BTreeMap::new();
        for (i, port) in spec.ports.iter_mut().flatten().enumerate() {
            if !wants_node_ports {
                break;
            }
            let named = port.node_port.and_then(|p| u16::try_from(p).ok());
            let shared = by_number.get(&port.port).copied();
            // Given in this pass to a port of another number.
            let taken_here = |n: u16| ports.values().any(|&p| p == n);
            let got = match (named, shared) {
                (None, Some(s)) => Some(s),
                (Some(n), Some(s)) if n == s => Some(s),
                (Some(n), _) if !taken_here(n) && held_before.contains(&n) => Some(n),
                (Some(n), _) if !taken_here(n) && self.node_ports.reserve(n) => Some(n),
                (Some(n), _) => {
                    problems.push(m.error(
                        format!("spec.ports[{i}].nodePort"),
                        format!("Invalid value: {n}: provided port is already allocated"),
                    ));
                    None
                }
                (None, None) => match alloc.node_ports.get(&i) {
                    Some(&h) if !taken_here(h) => Some(h),
                    _ => self.node_ports.allocate(),
                },
            };
            if let Some(p) = got {
                port.node_port = Some(i32::from(p));
                ports.insert(i, p);
                by_number.entry(port.port).or_insert(p);
            }
        }
        let held_now: BTreeSet<u16> = ports.values().copied().collect();
        for &p in held_before.difference(&held_now) {
            self.node_ports.release(p);
        }
        alloc.node_ports = ports;
        alloc
    }
}
