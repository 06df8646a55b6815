use std::sync::Arc;
use std::time::Duration;

use ferry_model::mesh::WorkloadId;
use ferry_model::proto::CertifyRequest;
use rcgen::{CertificateParams, KeyPair};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::authority::certificates;
use super::pods::PodRecord;
use super::service::{IdentityService, Metrics};
use super::*;

fn id() -> WorkloadId {
    WorkloadId::new("cluster.local", "shop", "web")
}

/// A leaf for a fresh key: (chain, the key).
fn leaf(hierarchy: &Hierarchy) -> Vec<CertificateDer<'static>> {
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    let public = csr::public_key(csr.der()).unwrap();
    let issued = hierarchy
        .issue_workload(&public, &id(), Duration::from_secs(3600))
        .unwrap();
    CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// Whether rustls' webpki verifier takes the chain as a client certificate (chain to a root
/// of the bundle, clientAuth, validity).
fn verifies(chain: &[CertificateDer<'static>], bundle_pem: &str) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for root in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        roots.add(root.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        ferry_runtime::tls::provider().clone(),
    )
    .build()
    .unwrap();
    verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .is_ok()
}

fn generated() -> (tempfile::TempDir, Hierarchy) {
    let dir = tempfile::tempdir().unwrap();
    let hierarchy = Hierarchy::load(&CaSource::Generated(dir.path().to_owned())).unwrap();
    (dir, hierarchy)
}

#[test]
fn a_generated_ca_is_made_once_with_private_keys() {
    let (dir, first) = generated();
    for key in [files::ROOT_KEY, files::INTERMEDIATE_KEY] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600,
            "{key}"
        );
    }
    let again = Hierarchy::load(&CaSource::Generated(dir.path().to_owned())).unwrap();
    assert_eq!(again.bundle_pem, first.bundle_pem);
    assert_eq!(again.chain_pem, first.chain_pem);
    assert_eq!(first.roots.len(), 1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join(files::BUNDLE)).unwrap(),
        first.bundle_pem
    );
}

#[test]
fn a_workload_leaf_chains_to_the_bundle_and_names_only_the_identity() {
    let (_dir, hierarchy) = generated();
    let chain = leaf(&hierarchy);
    assert_eq!(chain.len(), 2, "leaf and intermediate");
    assert!(verifies(&chain, &hierarchy.bundle_pem));
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&chain[0]).unwrap();
    let names = &cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert_eq!(
        names,
        &vec![GeneralName::URI("spiffe://cluster.local/ns/shop/sa/web")]
    );
    assert!(!cert.is_ca());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && eku.server_auth);
    // Another CA's bundle does not take it.
    let (_other, stranger) = generated();
    assert!(!verifies(&chain, &stranger.bundle_pem));
}

#[test]
fn a_leaf_never_outlives_its_intermediate() {
    let (_dir, hierarchy) = generated();
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    let public = csr::public_key(csr.der()).unwrap();
    let issued = hierarchy
        .issue_workload(&public, &id(), Duration::from_secs(50 * 365 * 24 * 3600))
        .unwrap();
    assert!(issued.not_after <= hierarchy.intermediate_expires);
}

#[test]
fn an_intermediate_rotation_keeps_old_leaves_valid() {
    let (dir, before) = generated();
    let old = leaf(&before);
    assert_eq!(rotate::rotate_intermediate(dir.path()).unwrap(), 1);
    let after = Hierarchy::load(&CaSource::Generated(dir.path().to_owned())).unwrap();
    assert_ne!(after.chain_pem, before.chain_pem);
    assert_eq!(after.bundle_pem, before.bundle_pem);
    let new = leaf(&after);
    assert_ne!(new[1], old[1], "issued by the new intermediate");
    assert!(verifies(&new, &after.bundle_pem));
    assert!(verifies(&old, &after.bundle_pem));
}

/// A Certify for `web-1` through `service`: (the chain, the generation it was issued at).
fn certify_web(
    service: &IdentityService,
    tokens: &PodTokens,
) -> (Vec<CertificateDer<'static>>, u64) {
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    let answer = service
        .certify(&CertifyRequest {
            csr,
            token: tokens.mint(&claims()),
        })
        .unwrap();
    let chain = CertificateDer::pem_slice_iter(answer.certificate_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (chain, answer.ca_generation)
}

#[test]
fn a_root_rotation_switches_issuing_and_drops_the_old_root_only_when_every_workload_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let pods = PodDirectory::default();
    let mut view = PodView::default();
    view.insert("shop", "web-1", PodRecord::new("uid-1", "web"));
    pods.replace(view);
    let (service, tokens) = service(dir.path(), pods);
    let ca = service.ca();
    let before = ca.current();
    let (old, generation) = certify_web(&service, &tokens);
    assert_eq!(generation, 0);

    // Step 1: both roots trusted, the old intermediate still issues.
    assert_eq!(rotate::rotate_root(dir.path()).unwrap(), 1);
    let during = ca.reload_if_changed().unwrap().expect("reloaded");
    assert_eq!(during.roots.len(), 2);
    assert_eq!(during.chain_pem, before.chain_pem, "the old chain issues");
    assert!(verifies(&old, &during.bundle_pem));
    // The control plane's tick writes the table (the refusal below names who it waits for).
    ca.flush();
    let e = rotate::rotate_root(dir.path()).unwrap_err().to_string();
    assert!(e.contains("shop/web-1"), "{e}");
    assert!(rotate::rotate_intermediate(dir.path()).is_err());
    // web-1 holds a certificate from before the two-root bundle: no switch yet.
    assert_eq!(ca.switch_issuing_if_settled().unwrap(), None);
    let e = rotate::finish_root_rotation(dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("waits to switch issuing"), "{e}");
    let (renewed, generation) = certify_web(&service, &tokens);
    assert_eq!(generation, 1);
    assert!(verifies(&renewed, &before.bundle_pem), "still the old root");

    // Step 2: everyone trusts the new root, so it issues.
    assert_eq!(ca.switch_issuing_if_settled().unwrap(), Some(2));
    let switched = ca.reload_if_changed().unwrap().expect("reloaded");
    assert_ne!(switched.chain_pem, before.chain_pem);
    assert!(!dir.path().join(files::NEXT_INTERMEDIATE_CERT).exists());
    // web-1's certificate may still chain to the old root: --finish refuses, naming it.
    let e = rotate::finish_root_rotation(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("shop/web-1") && e.contains("generation 2"),
        "{e}"
    );
    let (new, generation) = certify_web(&service, &tokens);
    assert_eq!(generation, 2);
    assert!(verifies(&new, &switched.bundle_pem));
    assert!(!verifies(&new, &before.bundle_pem), "a new root");

    // Step 3: the old root leaves, once the tick has written web-1's renewal (until then
    // the file names its older certificate, and --finish refuses: cautious, never early).
    assert!(rotate::finish_root_rotation(dir.path()).is_err());
    ca.flush();
    assert_eq!(rotate::finish_root_rotation(dir.path()).unwrap(), 3);
    let after = ca.reload_if_changed().unwrap().expect("reloaded");
    assert_eq!(after.roots.len(), 1);
    assert!(verifies(&new, &after.bundle_pem));
    assert!(!verifies(&old, &after.bundle_pem));
    assert!(rotate::finish_root_rotation(dir.path()).is_err());
    // A restarted control plane remembers who holds what.
    assert_eq!(
        Holders::read(dir.path())
            .unwrap()
            .behind(3, std::time::SystemTime::now())
            .len(),
        1
    );
}

/// The review's race: the control plane's check once a second may run while `rotate --root`
/// is half written, or while its own switch is half done. Neither window lets it switch
/// early, nor `--finish` drop the old root early.
#[test]
fn a_root_rotation_half_written_or_half_switched_does_not_switch_or_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (service, _tokens) = service(dir.path(), PodDirectory::default());
    let ca = service.ca();
    let holders = Holders::default();
    let now = std::time::SystemTime::now();
    assert_eq!(rotate::rotate_root(dir.path()).unwrap(), 1);
    let marker = dir.path().join(files::SWITCH_AFTER);
    // As before `rotate --root` wrote its last file: the next intermediate is there, the
    // generation moved, the control plane still runs generation 0, no workload holds anything.
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(
        rotate::switch_issuing_if_settled(dir.path(), 0, &holders, now).unwrap(),
        None
    );
    assert_eq!(
        rotate::switch_issuing_if_settled(dir.path(), 1, &holders, now).unwrap(),
        None,
        "no switch before rotate --root has finished writing"
    );
    std::fs::write(&marker, "1\n").unwrap();
    // A control plane that has not loaded generation 1 (no sidecar was told of the new root).
    assert_eq!(
        rotate::switch_issuing_if_settled(dir.path(), 0, &holders, now).unwrap(),
        None
    );
    // Half switched: the intermediate promoted, the generation not yet bumped.
    std::fs::rename(
        dir.path().join(files::NEXT_INTERMEDIATE_CERT),
        dir.path().join("promoted.crt"),
    )
    .unwrap();
    let e = rotate::finish_root_rotation(dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("waits to switch issuing"), "{e}");
    std::fs::rename(
        dir.path().join("promoted.crt"),
        dir.path().join(files::NEXT_INTERMEDIATE_CERT),
    )
    .unwrap();
    // Settled: it switches, and the marker goes last.
    ca.reload_if_changed().unwrap().expect("reloaded");
    assert_eq!(ca.switch_issuing_if_settled().unwrap(), Some(2));
    assert!(!marker.exists());
}

#[test]
fn a_running_ca_follows_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load(None, dir.path()).unwrap();
    let first = ca.current();
    assert!(ca.reload_if_changed().unwrap().is_none());
    rotate::rotate_intermediate(dir.path()).unwrap();
    let rotated = ca.reload_if_changed().unwrap().expect("reloaded");
    assert_ne!(rotated.chain_pem, first.chain_pem);
    assert_eq!(ca.current().chain_pem, rotated.chain_pem);
    // A broken CA is refused and the last good one stays.
    std::fs::write(dir.path().join(files::INTERMEDIATE_KEY), "junk").unwrap();
    files::bump_generation(dir.path()).unwrap();
    let e = ca.reload_if_changed().unwrap_err();
    assert!(e.to_string().contains("intermediate.key"), "{e}");
    assert_eq!(ca.current().chain_pem, rotated.chain_pem);
}

/// A user's own CA files written from a generated one.
fn user_files(dir: &std::path::Path) -> (CaSource, String, String, String) {
    let source = tempfile::tempdir().unwrap();
    Hierarchy::load(&CaSource::Generated(source.path().to_owned())).unwrap();
    let read = |name| std::fs::read_to_string(source.path().join(name)).unwrap();
    let (root, intermediate, key) = (
        read(files::ROOT_CERT),
        read(files::INTERMEDIATE_CERT),
        read(files::INTERMEDIATE_KEY),
    );
    std::fs::write(dir.join("root.pem"), &root).unwrap();
    std::fs::write(dir.join("int.pem"), &intermediate).unwrap();
    std::fs::write(dir.join("int.key"), &key).unwrap();
    (
        CaSource::Files {
            root: dir.join("root.pem"),
            intermediate: dir.join("int.pem"),
            intermediate_key: dir.join("int.key"),
        },
        root,
        intermediate,
        key,
    )
}

#[test]
fn a_users_ca_files_are_checked_and_their_bundle_is_the_state_dirs_ca_crt() {
    let dir = tempfile::tempdir().unwrap();
    let (source, root, _, _) = user_files(dir.path());
    let state = dir.path().join("state");
    let ca = Ca::load(Some(source), &state).unwrap();
    assert!(verifies(&leaf(&ca.current()), &root));
    let written = std::fs::read_to_string(state.join(files::BUNDLE)).unwrap();
    assert_eq!(
        certificates("x", &written).unwrap(),
        certificates("x", &root).unwrap()
    );
}

#[test]
fn a_users_ca_files_that_do_not_fit_are_refused_naming_the_file() {
    let paths = |source: &CaSource| match source {
        CaSource::Files {
            root,
            intermediate,
            intermediate_key,
        } => (root.clone(), intermediate.clone(), intermediate_key.clone()),
        CaSource::Generated(_) => unreachable!(),
    };
    let other = tempfile::tempdir().unwrap();
    let (_, other_root, _, other_key) = user_files(other.path());

    // Another CA's root: the intermediate does not chain to it.
    let dir = tempfile::tempdir().unwrap();
    let (source, _, _, _) = user_files(dir.path());
    std::fs::write(paths(&source).0, &other_root).unwrap();
    let e = Hierarchy::load(&source).unwrap_err().to_string();
    assert!(
        e.contains("--identity-intermediate") && e.contains("not signed"),
        "{e}"
    );

    // Another CA's key.
    let dir = tempfile::tempdir().unwrap();
    let (source, _, _, _) = user_files(dir.path());
    std::fs::write(paths(&source).2, &other_key).unwrap();
    let e = Hierarchy::load(&source).unwrap_err().to_string();
    assert!(
        e.contains("--identity-intermediate-key") && e.contains("does not belong"),
        "{e}"
    );

    // A leaf where the intermediate should be: not a CA.
    let dir = tempfile::tempdir().unwrap();
    let (source, _, _, _) = user_files(dir.path());
    let chain = leaf(&Hierarchy::load(&source).unwrap());
    std::fs::write(paths(&source).1, authority::pem_of(&chain[0])).unwrap();
    let e = Hierarchy::load(&source).unwrap_err().to_string();
    assert!(
        e.contains("--identity-intermediate") && e.contains("not a CA"),
        "{e}"
    );

    // A missing file.
    std::fs::remove_file(paths(&source).0).unwrap();
    let e = Hierarchy::load(&source).unwrap_err().to_string();
    assert!(e.contains("--identity-root"), "{e}");
}

fn service(dir: &std::path::Path, pods: PodDirectory) -> (IdentityService, Arc<PodTokens>) {
    let ca = Arc::new(Ca::load(None, dir).unwrap());
    let tokens = Arc::new(PodTokens::load_or_create(dir).unwrap());
    let service = IdentityService::new(
        ca,
        tokens.clone(),
        pods,
        "cluster.local".into(),
        Duration::from_secs(600),
        Metrics::register(&mut prometheus_client::registry::Registry::default()),
    );
    (service, tokens)
}

fn claims() -> PodClaims {
    PodClaims {
        namespace: "shop".into(),
        pod: "web-1".into(),
        uid: "uid-1".into(),
        service_account: "web".into(),
        issued_at: 0,
    }
}

#[test]
fn certify_issues_for_a_live_pods_token_and_refuses_the_rest_with_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let pods = PodDirectory::default();
    let mut view = PodView::default();
    view.insert("shop", "web-1", PodRecord::new("uid-1", "web"));
    pods.replace(view);
    let (service, tokens) = service(dir.path(), pods.clone());
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    let request = CertifyRequest {
        csr: csr.clone(),
        token: tokens.mint(&claims()),
    };
    let answer = service.certify(&request).unwrap();
    assert_eq!(answer.identity, "spiffe://cluster.local/ns/shop/sa/web");
    let chain = CertificateDer::pem_slice_iter(answer.certificate_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert!(verifies(&chain, &answer.trust_bundle_pem));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((answer.not_after_unix_seconds - now - 600).abs() <= 2);

    let bad_csr = service
        .certify(&CertifyRequest {
            csr: b"junk".to_vec(),
            ..request.clone()
        })
        .unwrap_err();
    assert_eq!(bad_csr.code(), tonic::Code::InvalidArgument);
    assert!(bad_csr.message().contains("CertifyRequest.csr"));

    let unknown = service
        .certify(&CertifyRequest {
            token: PodTokens::new(&[1; 32]).mint(&claims()),
            ..request.clone()
        })
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::Unauthenticated);

    // The Pod deleted: its token is dead.
    pods.replace(PodView::default());
    let dead = service.certify(&request).unwrap_err();
    assert_eq!(dead.code(), tonic::Code::Unauthenticated);
    assert!(dead.message().contains("shop/web-1"), "{}", dead.message());
}

mod records;
mod watch;
