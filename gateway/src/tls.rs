//! TLS termination: which certificate a handshake gets, by SNI.
//!
//! Each snapshot's certificates compile into a [`CertIndex`] (exact names, `*.` wildcards of
//! one label, the default); the rustls server config holds one [`Resolver`] for the process
//! whose index is swapped atomically, so a certificate change applies to the next handshake and
//! no connection is touched. Without SNI, or for a name no certificate covers, the default
//! certificate is served: the one of an Ingress `tls` entry without hosts, else a self-signed
//! certificate generated at start (as ingress-nginx's "fake certificate").

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ferry_model::Certificate;
use ferry_runtime::tls::{certified_key, provider};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};
use rustls_pki_types::PrivateKeyDer;

/// The subject of the self-signed default certificate.
pub const FAKE_CERTIFICATE_NAME: &str = "ferry-ingress-fake-certificate.local";

/// The certificates of one snapshot, by the names they serve.
#[derive(Debug)]
pub struct CertIndex {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.foo.com` stored as `foo.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertIndex {
    /// Indexes `certificates`; `fake` serves names nothing covers unless a certificate without
    /// hosts takes that role. A certificate that does not load is skipped with a warning (the
    /// control plane validated it, so this is a snapshot file written by hand).
    pub fn compile(certificates: &[Arc<Certificate>], fake: &Arc<CertifiedKey>) -> CertIndex {
        let mut index = CertIndex {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: fake.clone(),
        };
        for cert in certificates {
            let key = match certified_key(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()) {
                Ok(k) => Arc::new(k),
                Err(e) => {
                    tracing::warn!(secret = %format!("{}/{}", cert.namespace, cert.secret), error = %e, "certificate not served");
                    continue;
                }
            };
            if cert.hosts.is_empty() {
                index.default = key.clone();
            }
            for host in &cert.hosts {
                let host = host.to_ascii_lowercase();
                match host.strip_prefix("*.") {
                    Some(suffix) => index.wildcard.insert(suffix.to_owned(), key.clone()),
                    None => index.exact.insert(host, key.clone()),
                };
            }
        }
        index
    }

    /// The certificate for a server name: exact, else a wildcard one label up, else default.
    pub fn get(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return k;
        }
        name.split_once('.')
            .and_then(|(first, rest)| (!first.is_empty()).then_some(rest))
            .and_then(|rest| self.wildcard.get(rest))
            .unwrap_or(&self.default)
    }
}

/// Answers each handshake from the index of the newest snapshot.
#[derive(Debug)]
pub struct Resolver {
    index: ArcSwap<CertIndex>,
}

impl Resolver {
    pub fn new(index: CertIndex) -> Self {
        Resolver {
            index: ArcSwap::from_pointee(index),
        }
    }

    /// New handshakes use `index` from now on.
    pub fn swap(&self, index: CertIndex) {
        self.index.store(Arc::new(index));
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.index.load().get(client_hello.server_name()).clone())
    }
}

/// The self-signed default certificate, made once at start.
pub fn fake_certificate() -> Result<CertifiedKey, String> {
    let generated = rcgen::generate_simple_self_signed(vec![FAKE_CERTIFICATE_NAME.to_owned()])
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    CertifiedKey::from_der(vec![generated.cert.der().clone()], key, provider())
        .map_err(|e| e.to_string())
}

/// TLS 1.2 and 1.3 with ALPN h2 and http/1.1, certificates from `resolver`.
pub fn server_config(resolver: Arc<Resolver>) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::builder_with_provider(provider().clone())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(hosts: &[&str]) -> (Certificate, Vec<u8>) {
        let names = if hosts.is_empty() {
            vec!["default.example".to_owned()]
        } else {
            hosts.iter().map(|h| h.to_string()).collect()
        };
        let g = rcgen::generate_simple_self_signed(names).unwrap();
        let der = g.cert.der().to_vec();
        (
            Certificate {
                namespace: "shop".into(),
                secret: format!("s-{}", hosts.join("-")),
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                cert_pem: g.cert.pem(),
                key_pem: g.signing_key.serialize_pem(),
            },
            der,
        )
    }

    fn leaf(k: &CertifiedKey) -> Vec<u8> {
        k.cert[0].to_vec()
    }

    #[test]
    fn picks_exact_then_one_label_wildcard_then_default() {
        let fake = Arc::new(fake_certificate().unwrap());
        let (exact, exact_der) = cert(&["shop.example.com"]);
        let (wild, wild_der) = cert(&["*.example.com"]);
        let index = CertIndex::compile(&[Arc::new(exact), Arc::new(wild)], &fake);
        assert_eq!(leaf(index.get(Some("shop.example.com"))), exact_der);
        assert_eq!(leaf(index.get(Some("SHOP.Example.com."))), exact_der);
        assert_eq!(leaf(index.get(Some("api.example.com"))), wild_der);
        assert_eq!(leaf(index.get(Some("a.b.example.com"))), leaf(&fake));
        assert_eq!(leaf(index.get(Some("example.com"))), leaf(&fake));
        assert_eq!(leaf(index.get(None)), leaf(&fake));
    }

    #[test]
    fn a_certificate_without_hosts_is_the_default() {
        let fake = Arc::new(fake_certificate().unwrap());
        let (default, der) = cert(&[]);
        let index = CertIndex::compile(&[Arc::new(default)], &fake);
        assert_eq!(leaf(index.get(Some("other.example"))), der);
    }

    #[test]
    fn a_broken_certificate_is_skipped() {
        let fake = Arc::new(fake_certificate().unwrap());
        let (mut broken, _) = cert(&["shop.example.com"]);
        broken.key_pem = "not a key".into();
        let index = CertIndex::compile(&[Arc::new(broken)], &fake);
        assert_eq!(leaf(index.get(Some("shop.example.com"))), leaf(&fake));
    }
}
