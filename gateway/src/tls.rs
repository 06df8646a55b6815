//! TLS termination: which certificate a handshake gets, by SNI.
//!
//! Each snapshot's certificates compile into a [`CertIndex`] (exact names, `*.` wildcards of
//! one label, the default); the rustls server config holds one [`Resolver`] for the process
//! whose index is swapped atomically, so a certificate change applies to the next handshake and
//! no connection is touched. Without SNI, or for a name no certificate covers, the default
//! certificate is served: the one of an Ingress `tls` entry without hosts, else a self-signed
//! certificate generated at start (as ingress-nginx's "fake certificate").
//!
//! Sessions resume from stateless tickets, as nginx's `ssl_session_tickets on` (its default):
//! one ticket key for every worker of the process (nginx makes its key in the master), so a
//! client resumes on whichever worker accepts it; unlike nginx's key, which lives as long as
//! the process, rustls' rotates every 6 hours and accepts the previous one for 6 more (rustls
//! checks no ticket age: a ticket lives as long as its key). A ticket resumes only for the
//! server name it was issued for, so a session never crosses to another host's certificate.
//! TLS 1.3 resumption is PSK with (EC)DHE, so it keeps forward secrecy; it skips the
//! certificate and its signature.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ferry_model::Certificate;
use ferry_runtime::tls::{certified_key, provider};
use rustls::crypto::ring::Ticketer;
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

/// TLS 1.2 and 1.3 with ALPN h2, http/1.1 and http/1.0 (as nginx's list: a client that
/// offers only http/1.0, as `curl --http1.0` does, is refused a handshake without it),
/// certificates from `resolver`, resumption by tickets. Build it once per process: its ticket
/// key is made here.
pub fn server_config(resolver: Arc<Resolver>) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::builder_with_provider(provider().clone())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    // Without a ticketer rustls resumes from its default 256-entry session cache only: a
    // busy gateway's clients evict each other's sessions before they come back. TLS 1.3 gets
    // two tickets per full handshake (rustls' default, and OpenSSL's); TLS 1.2 clients that
    // ask for a ticket get one, the others still resume from the cache by session ID.
    config.ticketer = Ticketer::new().map_err(|e| format!("TLS session ticket key: {e}"))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use rustls::client::ClientConnection;
    use rustls::server::{NoServerSessionStorage, ServerConnection};
    use rustls::{ClientConfig, HandshakeKind};
    use rustls_pki_types::ServerName;

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

    /// Moves TLS records between the two until neither has any to send.
    fn exchange(client: &mut ClientConnection, server: &mut ServerConnection) {
        loop {
            let mut moved = false;
            let mut records = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut records).unwrap();
            }
            let mut from_client = &records[..];
            moved |= !from_client.is_empty();
            while !from_client.is_empty() {
                server.read_tls(&mut from_client).unwrap();
                server.process_new_packets().unwrap();
            }
            records.clear();
            while server.wants_write() {
                server.write_tls(&mut records).unwrap();
            }
            let mut from_server = &records[..];
            moved |= !from_server.is_empty();
            while !from_server.is_empty() {
                client.read_tls(&mut from_server).unwrap();
                client.process_new_packets().unwrap();
            }
            if !moved {
                return;
            }
        }
    }

    /// A handshake of a new client connection from `client` with `server`: how it went.
    fn connect(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> HandshakeKind {
        let name = ServerName::try_from("shop.example.com").unwrap();
        let mut c = ClientConnection::new(client.clone(), name).unwrap();
        let mut s = ServerConnection::new(server.clone()).unwrap();
        // The exchange runs past the handshake: TLS 1.3 tickets come after it.
        exchange(&mut c, &mut s);
        assert!(!c.is_handshaking() && !s.is_handshaking());
        assert_eq!(c.handshake_kind(), s.handshake_kind());
        c.handshake_kind().unwrap()
    }

    fn client(version: &'static rustls::SupportedProtocolVersion) -> Arc<ClientConfig> {
        let verifier = ferry_runtime::tls::AnyServerCertificate::new(provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider().clone())
                .with_protocol_versions(&[version])
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth(),
        )
    }

    /// Resumes from a ticket alone: the second handshake's server has no session cache, as
    /// when a busy gateway's cache has forgotten the session (or another worker answers).
    #[test]
    fn a_second_connection_resumes_from_a_ticket_on_tls13_and_tls12() {
        let fake = Arc::new(fake_certificate().unwrap());
        let resolver = Arc::new(Resolver::new(CertIndex::compile(&[], &fake)));
        let server = Arc::new(server_config(resolver).unwrap());
        let mut forgetful = (*server).clone();
        forgetful.session_storage = Arc::new(NoServerSessionStorage {});
        let forgetful = Arc::new(forgetful);
        for version in [&version::TLS13, &version::TLS12] {
            let client = client(version);
            assert_eq!(
                connect(&client, &server),
                HandshakeKind::Full,
                "{version:?}"
            );
            assert_eq!(
                connect(&client, &forgetful),
                HandshakeKind::Resumed,
                "{version:?}"
            );
            // A process's key only: another gateway's config (a restart) makes new tickets.
            let restarted = Arc::new(
                server_config(Arc::new(Resolver::new(CertIndex::compile(&[], &fake)))).unwrap(),
            );
            let fresh = self::client(version);
            connect(&fresh, &server);
            assert_eq!(
                connect(&fresh, &restarted),
                HandshakeKind::Full,
                "{version:?}"
            );
        }
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
