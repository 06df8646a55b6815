//! Cluster DNS for Pods: a Pod's `/etc/resolv.conf`, as the kubelet writes it for its
//! `dnsPolicy` and `dnsConfig`, and the kube-system/kube-dns Service it names.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{PodSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::ipam::Cidr;

/// The cluster DNS Service's IP: the tenth address of the service range, as kubeadm gives
/// kube-dns (10.96.0.10 of 10.96.0.0/12).
pub fn cluster_dns_ip(service_cidr: Cidr) -> Option<Ipv4Addr> {
    match service_cidr.addr() {
        IpAddr::V4(v4) if service_cidr.prefix() <= 28 => {
            Some(Ipv4Addr::from(u32::from(v4).wrapping_add(10)))
        }
        _ => None,
    }
}

/// kube-system/kube-dns as kubeadm makes it (ports 53/UDP `dns` and 53/TCP `dns-tcp`), with
/// no selector: its port 53 goes to ferry's DNS listener ([`super::ClusterDns`]).
pub fn kube_dns_service(ip: Ipv4Addr) -> Service {
    let port = |name: &str, protocol: &str| ServicePort {
        name: Some(name.to_owned()),
        port: 53,
        protocol: Some(protocol.to_owned()),
        target_port: Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(53)),
        ..ServicePort::default()
    };
    Service {
        metadata: ObjectMeta {
            name: Some("kube-dns".into()),
            namespace: Some("kube-system".into()),
            labels: Some(BTreeMap::from([
                ("k8s-app".to_owned(), "kube-dns".to_owned()),
                ("kubernetes.io/name".to_owned(), "ferry-dns".to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.to_string()),
            ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The most nameservers a resolver reads (glibc's MAXNS), as the kubelet keeps.
const MAX_NAMESERVERS: usize = 3;
/// The most search domains the kubelet keeps (glibc's limit since 2.26).
const MAX_SEARCHES: usize = 32;

/// The resolv.conf of a Pod of `namespace`: for `ClusterFirst` (the default) and
/// `ClusterFirstWithHostNet`, `nameserver` the cluster DNS Service's IP, `search
/// <ns>.svc.<domain> svc.<domain> <domain>` and `options ndots:5`; for `None`, only what its
/// `dnsConfig` gives; `dnsConfig`'s nameservers, searches and options are added to the
/// cluster's as the kubelet merges them. `Default` (and an unknown policy, which the API
/// server would refuse) keeps the node's: `None`.
pub fn resolv_conf(
    spec: &PodSpec,
    namespace: &str,
    nameserver: Ipv4Addr,
    domain: &str,
) -> Option<String> {
    let (mut nameservers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) =
        match spec.dns_policy.as_deref().unwrap_or("ClusterFirst") {
            "ClusterFirst" | "ClusterFirstWithHostNet" => (
                vec![nameserver.to_string()],
                vec![
                    format!("{namespace}.svc.{domain}"),
                    format!("svc.{domain}"),
                    domain.to_owned(),
                ],
                vec!["ndots:5".to_owned()],
            ),
            "None" => (Vec::new(), Vec::new(), Vec::new()),
            _ => return None,
        };
    if let Some(config) = &spec.dns_config {
        for ns in config.nameservers.iter().flatten() {
            if !nameservers.contains(ns) {
                nameservers.push(ns.clone());
            }
        }
        for search in config.searches.iter().flatten() {
            if !searches.contains(search) {
                searches.push(search.clone());
            }
        }
        for option in config.options.iter().flatten() {
            let Some(name) = option.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let text = match &option.value {
                Some(value) => format!("{name}:{value}"),
                None => name.to_owned(),
            };
            // A Pod's option overrides the cluster's of the same name.
            let same = |o: &String| o.split(':').next() == Some(name);
            match options.iter_mut().find(|o| same(o)) {
                Some(known) => *known = text,
                None => options.push(text),
            }
        }
    }
    nameservers.truncate(MAX_NAMESERVERS);
    searches.truncate(MAX_SEARCHES);
    let mut out = String::new();
    for ns in &nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption};

    use super::*;

    const DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

    #[test]
    fn the_cluster_dns_service_is_the_tenth_address_of_the_range() {
        let range: Cidr = "10.96.0.0/16".parse().unwrap();
        assert_eq!(cluster_dns_ip(range), Some(DNS));
        assert_eq!(cluster_dns_ip("10.96.0.0/29".parse().unwrap()), None);
        let svc = kube_dns_service(DNS);
        assert_eq!(svc.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(svc.metadata.name.as_deref(), Some("kube-dns"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert_eq!(spec.selector, None, "its endpoint is ferry's DNS listener");
        let ports: Vec<_> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port, p.protocol.unwrap()))
            .collect();
        assert_eq!(
            ports,
            [
                ("dns".to_owned(), 53, "UDP".to_owned()),
                ("dns-tcp".to_owned(), 53, "TCP".to_owned())
            ]
        );
    }

    #[test]
    fn cluster_first_is_the_kubelets_resolv_conf() {
        let spec = PodSpec::default();
        assert_eq!(
            resolv_conf(&spec, "demo", DNS, "cluster.local").unwrap(),
            "nameserver 10.96.0.10\n\
             search demo.svc.cluster.local svc.cluster.local cluster.local\n\
             options ndots:5\n"
        );
        let with_host_net = PodSpec {
            dns_policy: Some("ClusterFirstWithHostNet".into()),
            ..PodSpec::default()
        };
        assert_eq!(
            resolv_conf(&with_host_net, "demo", DNS, "cluster.local"),
            resolv_conf(&spec, "demo", DNS, "cluster.local")
        );
    }

    #[test]
    fn default_keeps_the_nodes_and_none_takes_only_dns_config() {
        let default = PodSpec {
            dns_policy: Some("Default".into()),
            ..PodSpec::default()
        };
        assert_eq!(resolv_conf(&default, "demo", DNS, "cluster.local"), None);
        let none = PodSpec {
            dns_policy: Some("None".into()),
            dns_config: Some(PodDNSConfig {
                nameservers: Some(vec!["10.96.0.53".into()]),
                searches: Some(vec!["example.internal".into()]),
                options: Some(vec![PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                }]),
            }),
            ..PodSpec::default()
        };
        assert_eq!(
            resolv_conf(&none, "demo", DNS, "cluster.local").unwrap(),
            "nameserver 10.96.0.53\nsearch example.internal\noptions ndots:2\n"
        );
    }

    #[test]
    fn dns_config_is_merged_into_cluster_first() {
        let spec = PodSpec {
            dns_config: Some(PodDNSConfig {
                nameservers: Some(vec!["10.96.0.10".into(), "10.96.0.53".into()]),
                searches: Some(vec!["svc.cluster.local".into(), "corp.example".into()]),
                options: Some(vec![
                    PodDNSConfigOption {
                        name: Some("ndots".into()),
                        value: Some("1".into()),
                    },
                    PodDNSConfigOption {
                        name: Some("edns0".into()),
                        value: None,
                    },
                ]),
            }),
            ..PodSpec::default()
        };
        assert_eq!(
            resolv_conf(&spec, "demo", DNS, "cluster.local").unwrap(),
            "nameserver 10.96.0.10\nnameserver 10.96.0.53\n\
             search demo.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
             options ndots:1 edns0\n"
        );
    }
}
