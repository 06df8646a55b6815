//! Manifest files as a source: reads every `-f` path, re-reads only files that changed, and
//! watches the paths so a change is picked up without a restart. [`WatchedFiles`] is the paths
//! read and watched (what the local cluster applies); [`FileFeed`] serves them to the control
//! plane as a [`Source`].
//!
//! A file named directly is watched through its directory, so editors that save by writing a
//! new file and renaming it over the old one are seen. Events are coalesced: a reload runs once
//! the paths have been quiet for the debounce interval, and at the latest `MAX_DELAY` after
//! the first event of a burst.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferry_model::Problem;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::manifest;
use crate::object::Manifest;
use crate::source::{Cause, Source, Update};
use crate::validate;

/// The longest a burst of events can hold back a reload.
pub const MAX_DELAY: Duration = Duration::from_millis(500);

/// What one read of the paths gave: every object, and every problem (errors and warnings).
#[derive(Clone, Debug, Default)]
pub struct Reading {
    pub manifests: Vec<Arc<Manifest>>,
    pub problems: Vec<Problem>,
}

/// What identifies a file's content without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = {
            use std::os::unix::fs::MetadataExt;
            (meta.ino(), meta.ctime(), meta.ctime_nsec())
        };
        Some(Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode,
        })
    }
}

#[derive(Debug)]
struct CachedFile {
    stamp: Option<Stamp>,
    manifests: Vec<Arc<Manifest>>,
    problems: Vec<Problem>,
}

fn load(path: &Path, stamp: Option<Stamp>) -> CachedFile {
    let loaded = manifest::read_file(path);
    let mut problems = loaded.problems;
    for m in &loaded.manifests {
        problems.extend(validate::object(m));
    }
    CachedFile {
        stamp,
        manifests: loaded.manifests.into_iter().map(Arc::new).collect(),
        problems,
    }
}

/// Reads manifests from files and directories, caching what did not change.
#[derive(Debug)]
pub struct FileSource {
    paths: Vec<PathBuf>,
    cache: HashMap<PathBuf, CachedFile>,
}

impl FileSource {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        Self {
            paths,
            cache: HashMap::new(),
        }
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Reads every file, parsing and validating only those whose stamp changed.
    pub fn read(&mut self) -> Reading {
        let listing = match manifest::files(&self.paths) {
            Ok(listing) => listing,
            Err(problem) => {
                return Reading {
                    manifests: Vec::new(),
                    problems: vec![*problem],
                };
            }
        };
        let mut reading = Reading {
            manifests: Vec::new(),
            problems: listing.problems,
        };
        let mut fresh = HashMap::with_capacity(listing.files.len());
        for path in listing.files {
            let stamp = Stamp::of(&path);
            let file = match self.cache.remove(&path) {
                Some(cached) if stamp.is_some() && cached.stamp == stamp => cached,
                _ => load(&path, stamp),
            };
            reading.manifests.extend(file.manifests.iter().cloned());
            reading.problems.extend(file.problems.iter().cloned());
            // A file that vanished between listing and reading is reported, not cached.
            if file.stamp.is_some() {
                fresh.insert(path, file);
            }
        }
        self.cache = fresh;
        reading
            .problems
            .extend(validate::across_arcs(&reading.manifests));
        reading
    }

    /// Watches the paths; the receiver gets a message after each relevant event.
    pub fn watch(&self) -> notify::Result<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
        let (tx, rx) = mpsc::channel(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = match &event {
                    Ok(e) => !matches!(
                        e.kind,
                        EventKind::Access(_)
                            | EventKind::Modify(notify::event::ModifyKind::Metadata(
                                notify::event::MetadataKind::AccessTime
                            ))
                    ),
                    Err(_) => true,
                };
                if relevant {
                    // A full channel already holds a wake-up; one is enough.
                    let _ = tx.try_send(());
                }
            })?;
        for path in &self.paths {
            if path.is_dir() {
                watcher.watch(path, RecursiveMode::Recursive)?;
            } else {
                let dir = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                watcher.watch(dir, RecursiveMode::NonRecursive)?;
            }
        }
        Ok((watcher, rx))
    }
}

/// Waits out a burst of events: returns once `debounce` passes without one, or `MAX_DELAY`
/// after the call, whichever is first. `false` when the watcher is gone.
pub async fn settle(rx: &mut mpsc::Receiver<()>, debounce: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + MAX_DELAY;
    loop {
        let wait = debounce.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(())) if tokio::time::Instant::now() < deadline => continue,
            Ok(None) => return false,
            _ => return true,
        }
    }
}

/// The paths, read and watched: the watch starts before the first read, so an edit made
/// between that read and the first wait is pending, not lost (list, then watch from the list's
/// point, as a Kubernetes client does).
#[derive(Debug)]
pub struct WatchedFiles {
    source: FileSource,
    debounce: Duration,
    _watcher: notify::RecommendedWatcher,
    events: mpsc::Receiver<()>,
}

impl WatchedFiles {
    /// Starts watching `paths`; `debounce` is the quiet time after an event before a re-read.
    pub fn start(paths: Vec<PathBuf>, debounce: Duration) -> notify::Result<WatchedFiles> {
        let source = FileSource::new(paths);
        let (watcher, events) = source.watch()?;
        Ok(WatchedFiles {
            source,
            debounce,
            _watcher: watcher,
            events,
        })
    }

    /// Reads every file, parsing only those that changed.
    pub fn read(&mut self) -> Reading {
        self.source.read()
    }

    /// Waits for a file event; `false` once the watcher is gone. Cancel-safe.
    pub async fn event(&mut self) -> bool {
        self.events.recv().await.is_some()
    }

    /// After an event, waits out the rest of its burst (the debounce, at most `MAX_DELAY`);
    /// `false` once the watcher is gone.
    pub async fn settled(&mut self) -> bool {
        settle(&mut self.events, self.debounce).await
    }
}

/// Manifest files as the control plane's [`Source`]: the first update is the first read,
/// each later one a re-read after the files changed.
#[derive(Debug)]
pub struct FileFeed {
    files: WatchedFiles,
    listed: bool,
    /// An event was seen and its burst not yet waited out (a `next` dropped while settling).
    changed: bool,
}

impl FileFeed {
    pub fn start(paths: Vec<PathBuf>, debounce: Duration) -> notify::Result<FileFeed> {
        Ok(FileFeed {
            files: WatchedFiles::start(paths, debounce)?,
            listed: false,
            changed: false,
        })
    }
}

impl Source for FileFeed {
    async fn next(&mut self) -> Option<Update> {
        if self.listed {
            if !self.changed && !self.files.event().await {
                return None;
            }
            self.changed = true;
            if !self.files.settled().await {
                return None;
            }
            self.changed = false;
        }
        self.listed = true;
        Some(Update {
            reading: self.files.read(),
            cause: Cause::Applied,
        })
    }

    /// Files are read again only when they change, published or not.
    fn acknowledge(&mut self, _published: bool) {}
}

#[cfg(test)]
mod tests;
