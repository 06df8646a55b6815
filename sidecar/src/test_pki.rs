//! A mesh CA for the crate's tests: a root that issues workload leaves with a SPIFFE URI SAN,
//! as the control plane's CA does, and the watch a sidecar reads them from.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use ferry_model::mesh::WorkloadId;
use ferry_runtime::identity::{Credentials, CredentialsWatch};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;

static ROOTS: AtomicU32 = AtomicU32::new(0);

pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names, so two roots in one bundle are told apart as a real rotation's are.
        params.distinguished_name.push(
            DnType::CommonName,
            format!("mesh root {}", ROOTS.fetch_add(1, Ordering::Relaxed)),
        );
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    pub fn root(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn root_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `id` as PEM: the certificate and its key.
    pub fn issue_pem(&self, id: &WorkloadId) -> (String, String) {
        let (cert, key) = self.leaf(id, |_| {});
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for `ip` (an IP SAN, as the control plane's names its address) as
    /// PEM: the certificate and its key.
    pub fn issue_server_pem(&self, ip: std::net::IpAddr) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::IpAddress(ip)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn leaf(
        &self,
        id: &WorkloadId,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> (rcgen::Certificate, KeyPair) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(id.to_string().try_into().unwrap())];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert, key)
    }

    /// A leaf for `id`, valid now.
    pub fn issue(&self, id: &WorkloadId) -> Credentials {
        self.issue_with(id, |_| {})
    }

    /// A leaf for `id` with `edit` applied to its parameters (an expired one, say).
    pub fn issue_with(
        &self,
        id: &WorkloadId,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> Credentials {
        let (cert, key) = self.leaf(id, edit);
        let certified = ferry_runtime::tls::certified_key(
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
        )
        .unwrap();
        Credentials {
            id: id.clone(),
            key: Arc::new(certified),
            roots: vec![self.root()],
            expires: SystemTime::now() + Duration::from_secs(86_400),
        }
    }
}

/// A watch already holding `credentials` (the sender is returned so it stays open).
pub fn watch_of(
    credentials: Credentials,
) -> (watch::Sender<Option<Arc<Credentials>>>, CredentialsWatch) {
    watch::channel(Some(Arc::new(credentials)))
}

pub fn id(ns: &str, sa: &str) -> WorkloadId {
    WorkloadId::new("cluster.local", ns, sa)
}
