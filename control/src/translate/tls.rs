//! TLS: each main Ingress's `spec.tls` marks its hosts as served over TLS and takes their
//! certificate from a Secret of the Ingress's namespace. Reads `spec.tls` and Secrets; routes
//! and canaries are other steps'.
//!
//! A host takes the certificate of the oldest Ingress naming it (the order [`super::class`]
//! gives); a later, different Secret for it is warned about. A missing or unusable Secret is a
//! warning: the host still redirects to HTTPS and serves the default certificate, as does a
//! `tls` entry without `secretName`.

use std::collections::BTreeMap;

use ferry_model::{Certificate, HostMatch, Problem, VirtualHost};
use ferry_objects::object::Manifest;
use ferry_objects::store::Store;
use ferry_objects::validate::{TLS_CERT_KEY, TLS_PRIVATE_KEY};
use k8s_openapi::api::networking::v1::Ingress;

/// The TLS hosts of ferry's Ingresses and the certificates they serve.
#[derive(Default)]
pub(super) struct Tls {
    /// Lowercase host (or `*.suffix`) -> the (namespace, Secret) it was given.
    hosts: BTreeMap<String, (String, String)>,
    /// (namespace, Secret) -> its certificate and the hosts it serves.
    certificates: BTreeMap<(String, String), Certificate>,
}

/// Reads `spec.tls` of the main Ingresses, oldest first.
pub(super) fn ingress_tls(
    store: &Store,
    mains: &[(&Manifest, &Ingress)],
    problems: &mut Vec<Problem>,
) -> Tls {
    let mut tls = Tls::default();
    for &(m, ing) in mains {
        let Some(spec) = &ing.spec else { continue };
        for (i, entry) in spec.tls.iter().flatten().enumerate() {
            let entry_hosts: Vec<String> = entry
                .hosts
                .iter()
                .flatten()
                .map(|h| h.to_ascii_lowercase())
                .collect();
            let secret = entry.secret_name.as_deref().unwrap_or_default();
            let field = format!("spec.tls[{i}].secretName");
            let mut new_hosts = Vec::new();
            for h in &entry_hosts {
                match tls.hosts.get(h) {
                    Some((ns, s)) if (ns.as_str(), s.as_str()) != (m.namespace(), secret) => {
                        problems.push(m.warning(
                            format!("spec.tls[{i}].hosts"),
                            format!("host {h} already has the certificate of Secret {ns}/{s} from an older Ingress; ignored"),
                        ));
                    }
                    _ => {
                        tls.hosts
                            .insert(h.clone(), (m.namespace().to_owned(), secret.to_owned()));
                        new_hosts.push(h.clone());
                    }
                }
            }
            if secret.is_empty() {
                continue; // TLS with the default certificate
            }
            let Some(pem) = tls_pair(store, m, secret, &field, problems) else {
                continue;
            };
            let cert = tls
                .certificates
                .entry((m.namespace().to_owned(), secret.to_owned()))
                .or_insert_with(|| Certificate {
                    namespace: m.namespace().to_owned(),
                    secret: secret.to_owned(),
                    hosts: Vec::new(),
                    cert_pem: pem.0,
                    key_pem: pem.1,
                });
            cert.hosts.extend(new_hosts);
        }
    }
    tls
}

impl Tls {
    /// Marks the virtual hosts a `spec.tls` host covers: the same name, or a wildcard one
    /// level up.
    pub(super) fn mark_hosts(&self, hosts: &mut BTreeMap<HostMatch, VirtualHost>) {
        for vh in hosts.values_mut() {
            vh.tls = match &vh.host {
                HostMatch::Exact(h) => {
                    self.hosts.contains_key(h)
                        || h.split_once('.').is_some_and(|(_, parent)| {
                            self.hosts.contains_key(&format!("*.{parent}"))
                        })
                }
                HostMatch::Wildcard(suffix) => self.hosts.contains_key(&format!("*{suffix}")),
                HostMatch::Any => false,
            };
        }
    }

    /// The certificates, in (namespace, Secret) order, each one's hosts sorted.
    pub(super) fn certificates(self) -> Vec<Certificate> {
        self.certificates
            .into_values()
            .map(|mut c| {
                c.hosts.sort();
                c.hosts.dedup();
                c
            })
            .collect()
    }
}

/// The PEM pair of a Secret named in `spec.tls`, or a warning saying why there is none.
fn tls_pair(
    store: &Store,
    m: &Manifest,
    secret: &str,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<(String, String)> {
    let ns = m.namespace();
    let Some(s) = store.secret(ns, secret) else {
        problems.push(m.warning(
            field,
            format!("Secret \"{ns}/{secret}\" not found; its hosts serve the default certificate"),
        ));
        return None;
    };
    let get = |k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.as_slice())
    };
    let (Some(cert), Some(key)) = (get(TLS_CERT_KEY), get(TLS_PRIVATE_KEY)) else {
        problems.push(m.warning(field, format!("Secret \"{ns}/{secret}\" has no {TLS_CERT_KEY} and {TLS_PRIVATE_KEY}; its hosts serve the default certificate")));
        return None;
    };
    // Secrets of type kubernetes.io/tls were checked when read; others are checked here.
    let typed = s.type_.as_deref() == Some(ferry_objects::validate::TLS_TYPE);
    let checked = if typed {
        Ok(())
    } else {
        ferry_objects::certificate::check_pair(cert, key)
    };
    let checked = checked.and_then(|()| {
        let text =
            |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| "PEM is not UTF-8".to_owned());
        Ok((text(cert)?, text(key)?))
    });
    match checked {
        Ok(pair) => Some(pair),
        Err(e) => {
            problems.push(m.warning(
                field,
                format!("Secret \"{ns}/{secret}\": {e}; its hosts serve the default certificate"),
            ));
            None
        }
    }
}
