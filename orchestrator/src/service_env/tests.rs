use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};

use super::*;

fn service(ip: &str, ports: &[(Option<&str>, i32, &str)]) -> Service {
    Service {
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, proto)| ServicePort {
                        name: n.map(Into::into),
                        port: *p,
                        protocol: Some((*proto).into()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[test]
fn kubernetes_names_and_values() {
    let svc = service(
        "127.2.0.10",
        &[(Some("http"), 80, "TCP"), (Some("dns-udp"), 53, "UDP")],
    );
    let env = for_service("web-front", &svc);
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("WEB_FRONT_SERVICE_HOST"), Some("127.2.0.10"));
    assert_eq!(get("WEB_FRONT_SERVICE_PORT"), Some("80"));
    assert_eq!(get("WEB_FRONT_SERVICE_PORT_HTTP"), Some("80"));
    assert_eq!(get("WEB_FRONT_SERVICE_PORT_DNS_UDP"), Some("53"));
    assert_eq!(get("WEB_FRONT_PORT"), Some("tcp://127.2.0.10:80"));
    assert_eq!(get("WEB_FRONT_PORT_80_TCP"), Some("tcp://127.2.0.10:80"));
    assert_eq!(get("WEB_FRONT_PORT_53_UDP_PROTO"), Some("udp"));
    assert_eq!(get("WEB_FRONT_PORT_53_UDP_PORT"), Some("53"));
    assert_eq!(get("WEB_FRONT_PORT_53_UDP_ADDR"), Some("127.2.0.10"));
}

#[test]
fn headless_and_portless_services_give_nothing() {
    assert!(for_service("h", &service("None", &[(None, 80, "TCP")])).is_empty());
    assert!(for_service("p", &service("127.2.0.3", &[])).is_empty());
    let v6 = for_service("six", &service("fd00::1", &[(None, 80, "TCP")]));
    assert!(v6.contains(&("SIX_PORT".into(), "tcp://[fd00::1]:80".into())));
}
