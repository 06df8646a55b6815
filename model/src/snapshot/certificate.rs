//! TLS certificates from Secrets, with the hosts they serve, and how private keys are hidden
//! where a snapshot is shown.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A TLS certificate and key from a Secret, with the hosts it serves.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Certificate {
    pub namespace: String,
    pub secret: String,
    /// Sorted, lowercase; `*.foo.com` for wildcards. Empty: the default certificate, served
    /// when no other name matches (an Ingress `tls` entry without hosts).
    pub hosts: Vec<String>,
    /// The chain, leaf first.
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("namespace", &self.namespace)
            .field("secret", &self.secret)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// What placeholder replaces private keys where a snapshot is shown rather than used.
pub const REDACTED: &str = "<redacted>";
