//! Incremental updates: [`diff`] says what changed between two views as a wire [`pb::Delta`]
//! (whole items upserted or removed by key, per Service, cluster, virtual host, certificate and
//! Ingress options), and [`apply`] builds the new view from the old one and a delta. Applying
//! `diff(old, new)` to `old` gives `new`, field for field (a property test checks it).
//!
//! Each keyed collection is kept in its canonical order (by key), which is what translate
//! makes and what the part rebuilds after applying. A view whose collections are not in that
//! order (a hand-written one) has no delta: [`diff`] returns `None` and the whole view is sent.

use std::cmp::Ordering;
use std::sync::Arc;

use super::convert::{
    at, at_index, backend, certificate, cluster, each, err, ingress_options, ingress_ref, service,
    to_backend, to_certificate, to_cluster, to_cluster_key, to_ingress_options, to_ingress_ref,
    to_service, to_virtual_host, virtual_host,
};
use super::{ProtoError, convert::cluster_key};
use crate::proto as pb;
use crate::snapshot::{self as m, order};

type ServiceKey = (String, String);
type CertificateKey = (String, String);

fn service_key(s: &m::Service) -> ServiceKey {
    (s.namespace.clone(), s.name.clone())
}

fn certificate_key(c: &m::Certificate) -> CertificateKey {
    (c.namespace.clone(), c.secret.clone())
}

fn host_key(v: &m::VirtualHost) -> m::HostMatch {
    v.host.clone()
}

/// What changed in one keyed collection, both sides canonical: the items of `new` that are
/// not in `old` as they are, and the keys of `old` that `new` lacks. Items the two views
/// share cost a pointer compare.
fn diff_keyed<'a, T: PartialEq, K>(
    old: &[Arc<T>],
    new: &'a [Arc<T>],
    cmp: fn(&T, &T) -> Ordering,
    key: impl Fn(&T) -> K,
) -> (Vec<&'a T>, Vec<K>) {
    let changes = m::changes(old, new, cmp);
    (
        changes.changed.iter().map(|&j| &*new[j]).collect(),
        changes.removed.iter().map(|&i| key(&old[i])).collect(),
    )
}

/// What changed from `old` to `new`, for a push of `new` to a part that holds `old`
/// (`base_version` is `old.version`). `None` when either view is not in canonical order, so
/// that a delta could not rebuild it exactly: the whole view must be sent.
pub fn diff(old: &m::Snapshot, new: &m::Snapshot) -> Option<pb::Delta> {
    if !old.is_canonical() || !new.is_canonical() {
        return None;
    }
    let (services, removed_services) =
        diff_keyed(&old.services, &new.services, order::service, service_key);
    let (clusters, removed_clusters) =
        diff_keyed(&old.clusters, &new.clusters, order::cluster, |c| {
            c.key.clone()
        });
    let (hosts, removed_hosts) = diff_keyed(
        &old.virtual_hosts,
        &new.virtual_hosts,
        order::virtual_host,
        host_key,
    );
    let (certs, removed_certs) = diff_keyed(
        &old.certificates,
        &new.certificates,
        order::certificate,
        certificate_key,
    );
    let (options, removed_options) = diff_keyed(
        &old.ingress_options,
        &new.ingress_options,
        order::ingress_options,
        |o| o.ingress.clone(),
    );
    let default_changed = old.default_backend != new.default_backend
        || old.default_backend_ingress != new.default_backend_ingress;
    Some(pb::Delta {
        base_version: old.version,
        services: services.into_iter().map(service).collect(),
        removed_services: removed_services
            .into_iter()
            .map(|(namespace, name)| pb::ServiceKey { namespace, name })
            .collect(),
        namespaces: (old.namespaces != new.namespaces).then(|| pb::Namespaces {
            names: new.namespaces.clone(),
        }),
        clusters: clusters.into_iter().map(cluster).collect(),
        removed_clusters: removed_clusters.iter().map(cluster_key).collect(),
        virtual_hosts: hosts.into_iter().map(virtual_host).collect(),
        removed_virtual_hosts: removed_hosts.iter().map(ToString::to_string).collect(),
        default_backend: default_changed.then(|| pb::DefaultBackend {
            backend: new.default_backend.as_ref().map(backend),
            ingress: new.default_backend_ingress.as_ref().map(ingress_ref),
        }),
        certificates: certs.into_iter().map(certificate).collect(),
        removed_certificates: removed_certs
            .into_iter()
            .map(|(namespace, secret)| pb::CertificateKey { namespace, secret })
            .collect(),
        ingress_options: options.into_iter().map(ingress_options).collect(),
        removed_ingress_options: removed_options.iter().map(ingress_ref).collect(),
    })
}

/// Whether a delta changes nothing.
pub fn is_empty(delta: &pb::Delta) -> bool {
    let pb::Delta {
        base_version: _,
        services,
        removed_services,
        namespaces,
        clusters,
        removed_clusters,
        virtual_hosts,
        removed_virtual_hosts,
        default_backend,
        certificates,
        removed_certificates,
        ingress_options,
        removed_ingress_options,
    } = delta;
    services.is_empty()
        && removed_services.is_empty()
        && namespaces.is_none()
        && clusters.is_empty()
        && removed_clusters.is_empty()
        && virtual_hosts.is_empty()
        && removed_virtual_hosts.is_empty()
        && default_backend.is_none()
        && certificates.is_empty()
        && removed_certificates.is_empty()
        && ingress_options.is_empty()
        && removed_ingress_options.is_empty()
}

/// One keyed collection of `base` (in canonical order) with `upserted` put in and `removed`
/// taken out, in key order. The places of the changes are found by binary search, and the
/// items between them are shared with `base` (a pointer copy each). `field` names the
/// collection for errors (`delta.services`).
fn apply_keyed<T, K: Ord + std::fmt::Debug>(
    base: &[Arc<T>],
    mut upserted: Vec<T>,
    mut removed: Vec<K>,
    key: impl Fn(&T) -> K,
    field: &str,
) -> Result<Vec<Arc<T>>, ProtoError> {
    let removed_field = format!("delta.removed_{field}");
    let field = format!("delta.{field}");
    upserted.sort_by_key(&key);
    if let Some(w) = upserted.windows(2).find(|w| key(&w[0]) == key(&w[1])) {
        return err(&field, format!("{:?} is upserted twice", key(&w[0])));
    }
    removed.sort();
    if let Some(w) = removed.windows(2).find(|w| w[0] == w[1]) {
        return err(&removed_field, format!("{:?} is removed twice", w[0]));
    }
    let find = |k: &K| base.binary_search_by(|b| key(b).cmp(k));
    // The edits in key order, so their places in `base` do not go back: (place, whether the
    // item there is replaced or removed, what goes in).
    let mut edits: Vec<(usize, bool, Option<T>)> =
        Vec::with_capacity(upserted.len() + removed.len());
    let mut gone = removed.into_iter().peekable();
    for item in upserted {
        let k = key(&item);
        while let Some(r) = gone.next_if(|r| *r <= k) {
            if r == k {
                return err(&field, format!("{k:?} is both upserted and removed"));
            }
            match find(&r) {
                Ok(i) => edits.push((i, true, None)),
                Err(_) => return err(&removed_field, format!("{r:?} is not in the view")),
            }
        }
        match find(&k) {
            Ok(i) => edits.push((i, true, Some(item))),
            Err(i) => edits.push((i, false, Some(item))),
        }
    }
    for r in gone {
        match find(&r) {
            Ok(i) => edits.push((i, true, None)),
            Err(_) => return err(&removed_field, format!("{r:?} is not in the view")),
        }
    }
    let added = edits.iter().filter(|(_, replaces, _)| !replaces).count();
    let mut out = Vec::with_capacity(base.len() + added);
    let mut next = 0;
    for (at, replaces, item) in edits {
        out.extend_from_slice(&base[next..at]);
        next = at + usize::from(replaces);
        out.extend(item.map(Arc::new));
    }
    out.extend_from_slice(&base[next..]);
    Ok(out)
}

/// The view a delta makes of `base`, with `version`. `holding` is the version `base` is
/// known by on the stream (a part numbers its own views, so it may differ from
/// `base.version`); it must be the delta's `base_version`. `base` must be in canonical order
/// ([`m::Snapshot::is_canonical`]; a part checks that once, when it takes a whole view): the
/// changes are put in place by binary search, and everything else is shared with `base`, so
/// the cost is a pointer copy per unchanged item. Fails, naming the field, when the delta
/// does not convert or does not fit `base`; the result is not validated (the caller checks it
/// with [`m::Snapshot::validate_delta`]).
pub fn apply(
    base: &m::Snapshot,
    holding: u64,
    delta: pb::Delta,
    version: u64,
) -> Result<m::Snapshot, ProtoError> {
    if delta.base_version != holding {
        return err(
            "delta.base_version",
            format!(
                "the delta applies to version {}, the part holds version {holding}",
                delta.base_version
            ),
        );
    }
    let f = "delta";
    let services = each(delta.services, f, "services", to_service)?;
    let removed_services = delta
        .removed_services
        .into_iter()
        .map(|k| (k.namespace, k.name))
        .collect();
    let clusters = each(delta.clusters, f, "clusters", to_cluster)?;
    let removed_clusters = delta
        .removed_clusters
        .into_iter()
        .enumerate()
        .map(|(i, k)| to_cluster_key(Some(k), &at_index(f, "removed_clusters", i)))
        .collect::<Result<Vec<_>, _>>()?;
    let virtual_hosts = each(delta.virtual_hosts, f, "virtual_hosts", to_virtual_host)?;
    let removed_hosts = delta
        .removed_virtual_hosts
        .iter()
        .map(|h| m::HostMatch::parse(h))
        .collect();
    let certificates = delta.certificates.into_iter().map(to_certificate).collect();
    let removed_certificates = delta
        .removed_certificates
        .into_iter()
        .map(|k| (k.namespace, k.secret))
        .collect();
    let options = each(
        delta.ingress_options,
        f,
        "ingress_options",
        to_ingress_options,
    )?;
    let removed_options = delta
        .removed_ingress_options
        .into_iter()
        .enumerate()
        .map(|(i, r)| to_ingress_ref(Some(r), &at_index(f, "removed_ingress_options", i)))
        .collect::<Result<Vec<_>, _>>()?;
    let (default_backend, default_backend_ingress) = match delta.default_backend {
        None => (
            base.default_backend.clone(),
            base.default_backend_ingress.clone(),
        ),
        Some(d) => (
            d.backend
                .map(|b| to_backend(Some(b), &at(f, "default_backend.backend")))
                .transpose()?,
            d.ingress
                .map(|r| to_ingress_ref(Some(r), &at(f, "default_backend.ingress")))
                .transpose()?,
        ),
    };
    Ok(m::Snapshot {
        version,
        services: apply_keyed(
            &base.services,
            services,
            removed_services,
            service_key,
            "services",
        )?,
        namespaces: match delta.namespaces {
            Some(n) => n.names,
            None => base.namespaces.clone(),
        },
        clusters: apply_keyed(
            &base.clusters,
            clusters,
            removed_clusters,
            |c| c.key.clone(),
            "clusters",
        )?,
        virtual_hosts: apply_keyed(
            &base.virtual_hosts,
            virtual_hosts,
            removed_hosts,
            host_key,
            "virtual_hosts",
        )?,
        default_backend,
        default_backend_ingress,
        certificates: apply_keyed(
            &base.certificates,
            certificates,
            removed_certificates,
            certificate_key,
            "certificates",
        )?,
        ingress_options: apply_keyed(
            &base.ingress_options,
            options,
            removed_options,
            |o| o.ingress.clone(),
            "ingress_options",
        )?,
        // Not on the wire (see `Snapshot::mesh`).
        mesh: m::Mesh::default(),
    })
}
