//! Workload identity: the mesh CA and the `ferry.control.v1.Identity` service
//! (`model/proto/ferry/control/v1/identity.proto`) that issues each meshed Pod's sidecar a
//! short-lived certificate for `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
//!
//! - [`authority`]: the CA hierarchy (trust bundle, intermediate, key), checked whole, and what
//!   it issues (workload leaves, the control channel's own certificate).
//! - [`files`]: a generated CA's files in `--state-dir`; [`rotate`]: rotating them
//!   (`ferry identity rotate`) and their expiry (`ferry check --identity`); [`holders`]: which
//!   Pod holds a certificate from which CA generation (what a root rotation waits on).
//! - [`tokens`]: the per-Pod tokens a sidecar proves its Pod with; [`pods`]: the Pods they are
//!   checked against; [`review`]: Kubernetes ServiceAccount tokens instead, reviewed by the
//!   API server (`--source kubernetes`).
//! - [`csr`]: a CSR checked; [`service`]: the gRPC service on the control channel.
//!
//! [`Ca`] is the running control plane's CA: it follows the state directory's
//! `identity.generation` ([`Ca::watch`]), so a rotation reaches it without a restart; it
//! announces each generation it loads ([`Ca::generations`], served to sidecars as
//! `Identity.WatchAuthority`, so they renew at once), records what it issued
//! ([`Ca::issued`]) and switches issuing to a new root once that is safe
//! ([`rotate::switch_issuing_if_settled`]).

pub mod authority;
pub mod csr;
pub mod files;
pub mod holders;
pub mod pods;
pub mod review;
pub mod rotate;
pub mod service;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use ferry_runtime::Shutdown;

pub use authority::{CaError, CaSource, Hierarchy};
pub use holders::{Holders, Holding};
pub use pods::{PodDirectory, PodView};
pub use tokens::{PodClaims, PodTokens};

/// A workload certificate lives a day unless `--workload-cert-ttl` says otherwise.
pub const WORKLOAD_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// How often the running control plane looks at `identity.generation`.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// How the identity service runs.
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// The user's own CA files; `None`: the CA generated in the state directory.
    pub ca: Option<CaSource>,
    /// The lifetime of a workload certificate (`--workload-cert-ttl`).
    pub workload_ttl: Duration,
    /// How often a rotation in the state directory is looked for.
    pub reload_interval: Duration,
    /// The Pods per-Pod tokens are checked against ([`crate::Control::pods`]); while empty,
    /// every token is refused.
    pub pods: PodDirectory,
    /// Reviews Kubernetes ServiceAccount tokens (`--source kubernetes`); `None`: only ferry's
    /// per-Pod tokens are taken.
    pub reviewer: Option<std::sync::Arc<dyn review::TokenReviewer>>,
}

impl Default for IdentityConfig {
    fn default() -> IdentityConfig {
        IdentityConfig {
            ca: None,
            workload_ttl: WORKLOAD_CERT_TTL,
            reload_interval: RELOAD_INTERVAL,
            pods: PodDirectory::default(),
            reviewer: None,
        }
    }
}

/// The running control plane's CA: the current [`Hierarchy`], replaced whole on a rotation.
#[derive(Debug)]
pub struct Ca {
    source: CaSource,
    state_dir: PathBuf,
    current: RwLock<(u64, Arc<Hierarchy>)>,
    /// Who holds a certificate from which generation (kept in the state directory).
    holders: Mutex<Recorded>,
    /// The generation loaded, for `Identity.WatchAuthority`.
    announce: tokio::sync::watch::Sender<u64>,
    /// The Pods that exist ([`Ca::with_pods`]): records of the others are dropped.
    pods: Option<PodDirectory>,
    /// The lifetime of the certificates issued (what a lost table is assumed to cover).
    workload_ttl: Duration,
}

impl Ca {
    /// Loads (or makes) the CA and writes its trust bundle to `state_dir/ca.crt` when it comes
    /// from the user's files, so `ca.crt` always means "the roots of the control channel".
    pub fn load(source: Option<CaSource>, state_dir: &Path) -> Result<Ca, CaError> {
        let source = source.unwrap_or_else(|| CaSource::Generated(state_dir.to_owned()));
        let generation = files::generation(state_dir);
        let hierarchy = Hierarchy::load(&source)?;
        if matches!(source, CaSource::Files { .. }) {
            std::fs::create_dir_all(state_dir).map_err(|e| {
                authority::ca_error(&format!("--state-dir {}", state_dir.display()), e)
            })?;
            files::replace(&state_dir.join(files::BUNDLE), &hierarchy.bundle_pem, false)?;
        }
        let (holders, assumed_since) = match Holders::read_at_start(state_dir)? {
            holders::Found::Table(holders) => (holders, None),
            holders::Found::Corrupt(e) => {
                tracing::error!(
                    error = %e,
                    copy = %state_dir.join(holders::CORRUPT).display(),
                    "identity: the record of which Pod holds which CA generation is corrupt; starting as if every Pod held a certificate from before any rotation, so a root switch waits until each has renewed"
                );
                (Holders::default(), Some(SystemTime::now()))
            }
        };
        Ok(Ca {
            source,
            state_dir: state_dir.to_owned(),
            current: RwLock::new((generation, Arc::new(hierarchy))),
            holders: Mutex::new(Recorded {
                holders,
                unflushed: false,
                assumed_since,
            }),
            announce: tokio::sync::watch::channel(generation).0,
            pods: None,
            workload_ttl: WORKLOAD_CERT_TTL,
        })
    }

    /// Follows the Pods that exist: each tick drops the records of Pods gone from `pods`
    /// ([`Ca::follow_pods`]). `workload_ttl` is the lifetime of the certificates issued.
    pub fn with_pods(mut self, pods: PodDirectory, workload_ttl: Duration) -> Ca {
        self.pods = Some(pods);
        self.workload_ttl = workload_ttl;
        self
    }

    /// Drops the records of Pods no longer in the Pod view (by uid), so a deleted Pod's
    /// unexpired certificate does not hold a root switch back until it expires.
    ///
    /// Why that is safe: a certificate only matters to a rotation while a live workload can
    /// present it. The sidecar makes its key in memory and never writes it out, so once the
    /// Pod's sidecar has stopped no one holds the key. A Pod leaves the view when its object is
    /// deleted, which the API server does once the kubelet has stopped its containers (a forced
    /// deletion may leave them running for their grace period; a partitioned node may too, and
    /// then its sidecar renews as soon as it reaches the control plane again, told by
    /// `WatchAuthority`, which ends for a Pod that is gone). A Pod recreated under the same name
    /// has a new uid, its own key and its own record. Before the first view is published
    /// (a control plane starting) nothing is dropped: an empty view then means "not known yet".
    fn follow_pods(&self) {
        let Some(view) = self.pods.as_ref().and_then(PodDirectory::published) else {
            return;
        };
        let mut recorded = self.recorded();
        if let Some(since) = recorded.assumed_since.take() {
            // The table was lost (corrupt): every Pod there is now may hold a certificate
            // from before any rotation, for as long as one issued before the start lives.
            let assumed = recorded
                .holders
                .assume_behind(&view, since + self.workload_ttl);
            recorded.unflushed = true;
            tracing::info!(
                assumed,
                "identity: assuming each Pod holds a certificate from generation 0 until it renews"
            );
        }
        let dropped = recorded.holders.keep_pods(&view);
        if dropped > 0 {
            recorded.unflushed = true;
            tracing::debug!(dropped, "identity: forgot the certificates of deleted Pods");
        }
    }

    /// The CA issuing now, with the generation it was loaded at.
    pub fn issuing(&self) -> (u64, Arc<Hierarchy>) {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Follows the generation loaded (what sidecars are told to renew on).
    pub fn generations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.announce.subscribe()
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.holders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a certificate issued (at the generation [`Ca::issuing`] said). The state
    /// directory's copy is written at the next tick ([`Ca::flush`]), unless the certificate is
    /// already behind the directory's generation: then at once (see [`Recorded`] for why).
    pub fn issued(&self, holding: Holding) {
        let mut recorded = self.recorded();
        // Read under the lock: the switch bumps the generation under it.
        let behind = holding.generation < files::generation(&self.state_dir);
        recorded.holders.issued(holding, SystemTime::now());
        recorded.unflushed = true;
        if behind {
            self.flush_locked(&mut recorded);
        }
    }

    /// Writes the table to the state directory when it changed since the last write; a
    /// failed write is logged and retried at the next flush (the table in memory holds).
    pub fn flush(&self) {
        self.flush_locked(&mut self.recorded());
    }

    fn flush_locked(&self, recorded: &mut Recorded) {
        // While a lost table is not yet replaced by the assumption, the corrupt file stays: a
        // restart meanwhile must be as cautious.
        if !recorded.unflushed || recorded.assumed_since.is_some() {
            return;
        }
        match recorded.holders.write(&self.state_dir) {
            Ok(()) => recorded.unflushed = false,
            Err(e) => {
                tracing::warn!(error = %e, "identity: cannot record the certificates issued")
            }
        }
    }

    /// Step 2 of a root rotation when it is due ([`rotate::switch_issuing_if_settled`]); the
    /// next [`Ca::reload_if_changed`] loads it. The table is written first, under the lock
    /// that records issuances, so the file is complete up to the generation the switch moves
    /// from.
    fn switch_issuing_if_settled(&self) -> Result<Option<u64>, CaError> {
        if !matches!(self.source, CaSource::Generated(_)) {
            return Ok(None);
        }
        let generation = self.issuing().0;
        let mut recorded = self.recorded();
        if recorded.assumed_since.is_some() {
            return Ok(None);
        }
        self.flush_locked(&mut recorded);
        rotate::switch_issuing_if_settled(
            &self.state_dir,
            generation,
            &recorded.holders,
            SystemTime::now(),
        )
    }

    pub fn current(&self) -> Arc<Hierarchy> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    /// Reloads when the generation moved: `Ok(Some(new))` when it did and the new CA checks
    /// out; `Err` (the old CA stays) when it does not.
    pub fn reload_if_changed(&self) -> Result<Option<Arc<Hierarchy>>, CaError> {
        let generation = files::generation(&self.state_dir);
        if generation
            == self
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .0
        {
            return Ok(None);
        }
        let hierarchy = Arc::new(Hierarchy::load(&self.source)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            (generation, hierarchy.clone());
        self.announce.send_replace(generation);
        Ok(Some(hierarchy))
    }

    /// Follows rotations until shutdown, calling `changed` with each new CA (the control
    /// channel reissues its certificate from it).
    pub async fn watch(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: Shutdown,
        changed: impl Fn(&Hierarchy) + Send,
    ) {
        let mut failed_generation = None;
        loop {
            tokio::select! {
                () = shutdown.wait() => {
                    self.flush();
                    return;
                }
                () = tokio::time::sleep(interval) => {}
            }
            self.follow_pods();
            // Also written when no switch is pending: `--finish` and a restart read the file.
            self.flush();
            match self.switch_issuing_if_settled() {
                Ok(Some(generation)) => tracing::info!(
                    generation,
                    "root rotation: every workload trusts the new root; its intermediate issues from now on"
                ),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "root rotation: cannot switch issuing to the new root")
                }
            }
            match self.reload_if_changed() {
                Ok(Some(hierarchy)) => {
                    failed_generation = None;
                    tracing::info!(
                        generation = files::generation(&self.state_dir),
                        roots = hierarchy.roots.len(),
                        "mesh CA reloaded: new certificates are issued from it"
                    );
                    changed(&hierarchy);
                }
                Ok(None) => {}
                Err(e) => {
                    // Logged once per generation: a rotation half-written is retried quietly.
                    let generation = files::generation(&self.state_dir);
                    if failed_generation != Some(generation) {
                        tracing::error!(error = %e, "mesh CA not reloaded; the previous one keeps issuing");
                        failed_generation = Some(generation);
                    }
                }
            }
        }
    }
}

impl Drop for Ca {
    /// The last issuances, when the control plane stops without the watch's last tick.
    fn drop(&mut self) {
        self.flush();
    }
}

/// The holders table and whether the state directory's copy lags it.
///
/// Rewriting the whole file on every `Certify` costs O(workloads) per issuance, so a rotation
/// (every sidecar renewing within seconds) would cost O(workloads²); it is written at most
/// once a tick instead, and on shutdown. That is safe because of who reads what:
/// - The switch of a root rotation (step 2) decides on this table in memory, which is never
///   older than what was issued.
/// - The file is read by `--finish` (and refusals naming who holds what) and by a restarted
///   control plane. What they look for are certificates *behind* the state directory's
///   generation. A certificate recorded at a generation the directory has already moved past
///   is written at once ([`Ca::issued`]); one recorded at the directory's current generation
///   is not behind anything on disk, so the file lagging it only makes it name an older
///   certificate of that Pod (more cautious, never less). The generation moves either by the
///   control plane's own switch, which writes the table first while holding the lock that
///   records issuances (so a certificate is either in that write or recorded after the bump,
///   and then written at once), or by an operator's `rotate`: the next tick (a second later)
///   writes what the control plane recorded before.
/// - A control plane killed without shutdown loses at most the last tick's records.
#[derive(Debug)]
struct Recorded {
    holders: Holders,
    unflushed: bool,
    /// When the table was found corrupt, until [`Ca::follow_pods`] has assumed the worst of
    /// every Pod (the first Pod view); no switch and no write meanwhile.
    assumed_since: Option<SystemTime>,
}

#[cfg(test)]
mod tests;
