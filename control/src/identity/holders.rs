//! Which Pods hold a workload certificate, and from which CA generation: what tells a root
//! rotation when it may move on ([`super::rotate`]). A certificate issued at the current
//! generation carries the current trust bundle and chains through the current intermediate; a
//! live one issued before it may not. So a rotation step is safe once no live certificate is
//! *behind* ([`Holders::behind`]).
//!
//! The control plane records each issuance and keeps the table in `--state-dir` as
//! `identity.workloads` (replaced whole, like every file there), one line a Pod:
//! `<generation> <notAfter, Unix seconds> <namespace>/<pod>`. A restarted control plane reads
//! it back, so it does not forget a workload that still holds an old certificate; and
//! `ferry identity rotate --root --finish` reads it to refuse while one does. A certificate
//! counts until it expires, also when its Pod has been deleted meanwhile.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::authority::{CaError, ca_error};
use super::files;

pub const FILE: &str = "identity.workloads";

/// One Pod's current certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    pub namespace: String,
    pub pod: String,
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

/// The latest certificate of each Pod, by (namespace, pod).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holders {
    by_pod: BTreeMap<(String, String), Holding>,
}

fn what(dir: &Path) -> String {
    format!("--state-dir: {}", dir.join(FILE).display())
}

impl Holders {
    /// The table of a state directory; none yet is an empty one.
    pub fn read(dir: &Path) -> Result<Holders, CaError> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Holders::default()),
            Err(e) => return Err(ca_error(&what(dir), e)),
        };
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
                        "line {}: {line:?} is not `<generation> <notAfter> <namespace>/<pod>`",
                        n + 1
                    ),
                )
            };
            let mut fields = line.split_whitespace();
            let (Some(generation), Some(not_after), Some(name), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(bad());
            };
            let generation = generation.parse().map_err(|_| bad())?;
            let not_after: u64 = not_after.parse().map_err(|_| bad())?;
            let (namespace, pod) = name.split_once('/').ok_or_else(bad)?;
            holders.insert(Holding {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                generation,
                not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(not_after),
            });
        }
        Ok(holders)
    }

    /// Replaces the state directory's table with this one.
    pub fn write(&self, dir: &Path) -> Result<(), CaError> {
        let mut text = String::from(
            "# Workload certificates by CA generation, kept by ferry control: <generation> <notAfter> <namespace>/<pod>\n",
        );
        for h in self.by_pod.values() {
            let not_after = h
                .not_after
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            text.push_str(&format!(
                "{} {not_after} {}/{}\n",
                h.generation, h.namespace, h.pod
            ));
        }
        files::replace(&dir.join(FILE), &text, false)
    }

    fn insert(&mut self, holding: Holding) {
        self.by_pod
            .insert((holding.namespace.clone(), holding.pod.clone()), holding);
    }

    /// A Pod's new certificate replaces its last; certificates expired by `now` are dropped.
    pub fn issued(&mut self, holding: Holding, now: SystemTime) {
        self.by_pod.retain(|_, h| h.not_after > now);
        self.insert(holding);
    }

    /// The certificates still valid at `now` that were issued before `generation`.
    pub fn behind(&self, generation: u64, now: SystemTime) -> Vec<&Holding> {
        self.by_pod
            .values()
            .filter(|h| h.not_after > now && h.generation < generation)
            .collect()
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
            "# x\n1 100 shop/a\nfive 100 shop/b\n",
        )
        .unwrap();
        let e = Holders::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains(FILE) && e.contains("line 3"), "{e}");
    }
}
