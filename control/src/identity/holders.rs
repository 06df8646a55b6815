//! Which Pods hold a workload certificate, and from which CA generation: what tells a root
//! rotation when it may move on ([`super::rotate`]). A certificate issued at the current
//! generation carries the current trust bundle and chains through the current intermediate; a
//! live one issued before it may not. So a rotation step is safe once no live certificate is
//! *behind* ([`Holders::behind`]).
//!
//! The control plane records each issuance and keeps the table in `--state-dir` as
//! `identity.workloads` (replaced whole, like every file there), one line a Pod:
//! `<generation> <notAfter, Unix seconds> <namespace>/<pod> <uid>`. A restarted control plane
//! reads it back, so it does not forget a workload that still holds an old certificate; and
//! `ferry identity rotate --root --finish` reads it to refuse while one does.
//!
//! Records are keyed by the Pod's uid (the token's claims carry it), not its name: a Pod
//! deleted and recreated under the same name is another workload with its own certificate,
//! and must neither inherit nor overwrite its predecessor's record. Files written before the
//! uid was kept (three fields a line) are read too; such a record stands for whichever Pod of
//! that name held it, and the Pod's next certificate replaces it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::authority::{CaError, ca_error};
use super::files;
use super::pods::PodView;

pub const FILE: &str = "identity.workloads";
/// Where a corrupt [`FILE`] is copied at start.
pub const CORRUPT: &str = "identity.workloads.corrupt";

/// A state directory's table, as found.
#[derive(Debug)]
pub enum Found {
    Table(Holders),
    /// The file does not parse (the error names it and the line).
    Corrupt(CaError),
}

/// One Pod's current certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    pub namespace: String,
    pub pod: String,
    /// The Pod's uid; empty in a record read from a file written before uids were kept.
    pub uid: String,
    /// The CA generation it was issued at.
    pub generation: u64,
    pub not_after: SystemTime,
}

impl std::fmt::Display for Holding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let left = self
            .not_after
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .as_secs();
        write!(
            f,
            "{}/{} (issued at generation {}, expires in {left}s)",
            self.namespace, self.pod, self.generation
        )
    }
}

/// The latest certificate of each Pod, by (namespace, pod, uid).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holders {
    by_pod: BTreeMap<(String, String, String), Holding>,
}

fn what(dir: &Path) -> String {
    format!("--state-dir: {}", dir.join(FILE).display())
}

impl Holders {
    /// The table of a state directory; none yet is an empty one.
    pub fn read(dir: &Path) -> Result<Holders, CaError> {
        match Holders::find(dir)? {
            Found::Table(holders) => Ok(holders),
            Found::Corrupt(e) => Err(e),
        }
    }

    /// The table as a starting control plane reads it: a corrupt one is copied aside to
    /// `identity.workloads.corrupt` (for a post-mortem; the original stays until the table is
    /// next written, so a restart meanwhile finds it corrupt again) and reported, not an
    /// error. An unreadable file (permissions) still is.
    pub fn read_at_start(dir: &Path) -> Result<Found, CaError> {
        let found = Holders::find(dir)?;
        if let Found::Corrupt(_) = found {
            let aside = dir.join(CORRUPT);
            std::fs::copy(dir.join(FILE), &aside)
                .map_err(|e| ca_error(&format!("--state-dir: {}", aside.display()), e))?;
        }
        Ok(found)
    }

    fn find(dir: &Path) -> Result<Found, CaError> {
        let path = dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Found::Table(Holders::default()));
            }
            Err(e) => return Err(ca_error(&what(dir), e)),
        };
        let Ok(text) = String::from_utf8(bytes) else {
            return Ok(Found::Corrupt(ca_error(&what(dir), "not UTF-8 text")));
        };
        Ok(match Holders::parse(dir, &text) {
            Ok(holders) => Found::Table(holders),
            Err(e) => Found::Corrupt(e),
        })
    }

    fn parse(dir: &Path, text: &str) -> Result<Holders, CaError> {
        let mut holders = Holders::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || {
                ca_error(
                    &what(dir),
                    format!(
                        "line {}: {line:?} is not `<generation> <notAfter> <namespace>/<pod> <uid>`",
                        n + 1
                    ),
                )
            };
            let mut fields = line.split_whitespace();
            let (Some(generation), Some(not_after), Some(name), uid, None) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                return Err(bad());
            };
            let generation = generation.parse().map_err(|_| bad())?;
            let not_after: u64 = not_after.parse().map_err(|_| bad())?;
            let (namespace, pod) = name.split_once('/').ok_or_else(bad)?;
            if namespace.is_empty() || pod.is_empty() {
                return Err(bad());
            }
            holders.insert(Holding {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                uid: uid.unwrap_or_default().to_owned(),
                generation,
                not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(not_after),
            });
        }
        Ok(holders)
    }

    /// Replaces the state directory's table with this one.
    pub fn write(&self, dir: &Path) -> Result<(), CaError> {
        let mut text = String::from(
            "# Workload certificates by CA generation, kept by ferry control: <generation> <notAfter> <namespace>/<pod> <uid>\n",
        );
        for h in self.by_pod.values() {
            let not_after = h
                .not_after
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let line = format!(
                "{} {not_after} {}/{} {}",
                h.generation, h.namespace, h.pod, h.uid
            );
            text.push_str(line.trim_end());
            text.push('\n');
        }
        files::replace(&dir.join(FILE), &text, false)
    }

    fn insert(&mut self, holding: Holding) {
        self.by_pod.insert(
            (
                holding.namespace.clone(),
                holding.pod.clone(),
                holding.uid.clone(),
            ),
            holding,
        );
    }

    /// A Pod's new certificate replaces its last (and a record of its name read from an old
    /// file, which has no uid); certificates expired by `now` are dropped.
    pub fn issued(&mut self, holding: Holding, now: SystemTime) {
        self.by_pod.retain(|_, h| {
            h.not_after > now
                && !(h.uid.is_empty() && h.namespace == holding.namespace && h.pod == holding.pod)
        });
        self.insert(holding);
    }

    /// Drops the records of Pods the view no longer has (by uid); returns how many. See
    /// [`Ca`](super::Ca)'s tick for why a deleted Pod's certificate no longer counts.
    pub fn keep_pods(&mut self, view: &PodView) -> usize {
        let before = self.by_pod.len();
        self.by_pod
            .retain(|_, h| view.has(&h.namespace, &h.pod, &h.uid));
        before - self.by_pod.len()
    }

    /// The certificates still valid at `now` that were issued before `generation`.
    pub fn behind(&self, generation: u64, now: SystemTime) -> Vec<&Holding> {
        self.by_pod
            .values()
            .filter(|h| h.not_after > now && h.generation < generation)
            .collect()
    }

    /// Whether the Pod (by uid, or by name for a record without one) has a record.
    fn has(&self, namespace: &str, pod: &str, uid: &str) -> bool {
        let from = (namespace.to_owned(), pod.to_owned(), String::new());
        self.by_pod
            .range(from..)
            .take_while(|(_, h)| h.namespace == namespace && h.pod == pod)
            .any(|(_, h)| h.uid.is_empty() || h.uid == uid)
    }

    /// What a control plane that lost the table assumes: every Pod of `view` without a record
    /// holds a certificate from generation 0 (behind any rotation) valid until `until` (the
    /// longest a certificate issued before the start can live), so a root switch waits until
    /// each has renewed, been deleted, or `until` has passed. Returns how many were assumed.
    pub fn assume_behind(&mut self, view: &PodView, until: SystemTime) -> usize {
        let mut assumed = 0;
        for (namespace, pod, record) in view.iter() {
            if !self.has(namespace, pod, &record.uid) {
                self.insert(Holding {
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
                    uid: record.uid.clone(),
                    generation: 0,
                    not_after: until,
                });
                assumed += 1;
            }
        }
        assumed
    }

    /// How many certificates are valid at `now`.
    pub fn live(&self, now: SystemTime) -> usize {
        self.by_pod.values().filter(|h| h.not_after > now).count()
    }
}

/// "N workloads (a, b, c, ...)" for an error or a log line.
pub fn describe(behind: &[&Holding]) -> String {
    let mut names: Vec<String> = behind.iter().take(5).map(ToString::to_string).collect();
    if behind.len() > names.len() {
        names.push(format!("and {} more", behind.len() - names.len()));
    }
    format!("{} workload(s): {}", behind.len(), names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(pod: &str, generation: u64, not_after: SystemTime) -> Holding {
        Holding {
            namespace: "shop".into(),
            pod: pod.into(),
            uid: format!("uid-{pod}"),
            generation,
            not_after,
        }
    }

    #[test]
    fn the_table_reads_back_and_counts_only_live_certificates_behind() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Holders::read(dir.path()).unwrap(), Holders::default());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut holders = Holders::default();
        holders.issued(holding("a", 1, now + Duration::from_secs(60)), now);
        holders.issued(holding("b", 2, now + Duration::from_secs(60)), now);
        holders.issued(holding("old", 0, now - Duration::from_secs(1)), now);
        assert_eq!(holders.live(now), 2);
        let behind = holders.behind(2, now);
        assert_eq!(behind.len(), 1);
        assert_eq!(behind[0].pod, "a");
        // a renews at generation 2: nothing is behind.
        holders.issued(holding("a", 2, now + Duration::from_secs(90)), now);
        assert!(holders.behind(2, now).is_empty());
        // An expired certificate no longer counts.
        assert!(holders.behind(3, now + Duration::from_secs(100)).is_empty());
        holders.write(dir.path()).unwrap();
        assert_eq!(Holders::read(dir.path()).unwrap(), holders);
    }

    #[test]
    fn a_bad_table_is_an_error_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "# x\n1 100 shop/a uid-a\nfive 100 shop/b uid-b\n",
        )
        .unwrap();
        let e = Holders::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains(FILE) && e.contains("line 3"), "{e}");
        for bad in ["1 100 shop/a uid extra", "1 100 /a", "1 100 shop"] {
            std::fs::write(dir.path().join(FILE), bad).unwrap();
            let e = Holders::read(dir.path()).unwrap_err().to_string();
            assert!(e.contains("line 1"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_pod_recreated_under_the_same_name_has_its_own_record() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let later = now + Duration::from_secs(60);
        let mut holders = Holders::default();
        holders.issued(holding("web", 0, later), now);
        // web deleted and made again: another uid, a certificate from generation 1. The first
        // one's generation-0 certificate is still recorded, not overwritten by the new Pod's.
        let recreated = Holding {
            uid: "uid-web-2".into(),
            ..holding("web", 1, later)
        };
        holders.issued(recreated.clone(), now);
        assert_eq!(holders.live(now), 2);
        let behind = holders.behind(1, now);
        assert_eq!(behind.len(), 1);
        assert_eq!(behind[0].uid, "uid-web");
        // ...nor does the new Pod inherit it when it renews.
        holders.issued(
            Holding {
                generation: 2,
                ..recreated
            },
            now,
        );
        assert_eq!(holders.behind(2, now).len(), 1);
        assert_eq!(holders.behind(2, now)[0].uid, "uid-web");

        // The first web is gone from the Pod view (the second is there): its record goes.
        let mut view = PodView::default();
        view.insert(
            "shop",
            "web",
            super::super::pods::PodRecord::new("uid-web-2", "default"),
        );
        assert_eq!(holders.keep_pods(&view), 1);
        assert!(holders.behind(2, now).is_empty());
        assert_eq!(holders.live(now), 1);
        // A record from an old file (no uid) stays while a Pod of its name does.
        holders.issued(
            Holding {
                uid: String::new(),
                ..holding("api", 0, later)
            },
            now,
        );
        view.insert(
            "shop",
            "api",
            super::super::pods::PodRecord::new("uid-api", "default"),
        );
        assert_eq!(holders.keep_pods(&view), 0);
        assert_eq!(holders.keep_pods(&PodView::default()), 2);
    }

    #[test]
    fn a_table_written_before_uids_reads_and_gives_way_to_the_pods_next_certificate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "# old\n0 2000000 shop/web\n0 2000000 shop/api\n",
        )
        .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut holders = Holders::read(dir.path()).unwrap();
        assert_eq!(holders.behind(1, now).len(), 2);
        assert!(holders.behind(1, now).iter().all(|h| h.uid.is_empty()));
        holders.issued(holding("web", 1, now + Duration::from_secs(60)), now);
        let behind = holders.behind(1, now);
        assert_eq!(behind.len(), 1);
        assert_eq!(behind[0].pod, "api");
        // Written back in the new format, it reads the same.
        holders.write(dir.path()).unwrap();
        assert!(
            std::fs::read_to_string(dir.path().join(FILE))
                .unwrap()
                .contains("shop/web uid-web\n")
        );
        assert_eq!(Holders::read(dir.path()).unwrap(), holders);
    }
}
