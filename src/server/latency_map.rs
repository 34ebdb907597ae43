//! Keeping the latency map current: the file is polled (modification time and size), its text
//! handed to the publisher, which resolves it against the serving model and publishes it with
//! that model (and again with every new model). A bad file is reported and the previous map
//! stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::State;
use crate::config::latency_map::{LatencyMapError, MapFormat};
use crate::shutdown::Shutdown;

/// How often the latency map file is checked for changes.
const POLL: Duration = Duration::from_secs(1);

/// Polls `path` until `stop`.
pub(crate) fn spawn(
    state: Arc<State>,
    path: PathBuf,
    stop: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut watcher = LatencyMapWatcher::new(path.clone());
        let mut tick = tokio::time::interval(POLL);
        // A file that did not fit the configuration (an unknown datacenter) is tried again
        // after the next reload, which may have added it.
        let mut failed_at_generation = None;
        loop {
            tokio::select! {
                _ = stop.stopped() => return,
                _ = tick.tick() => {}
            }
            let generation = state.generation.load(Ordering::Relaxed);
            if failed_at_generation.is_some_and(|g| g != generation) {
                watcher.forget();
                failed_at_generation = None;
            }
            match watcher.poll() {
                Ok(Some((text, format))) => {
                    match state.serving.set_latency_text(path.clone(), text, format) {
                        Ok(()) => tracing::info!(file = %path.display(), "latency map loaded"),
                        Err(e) => {
                            failed_at_generation = Some(generation);
                            tracing::error!("latency map not loaded, keeping the previous one: {e}")
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!("latency map not loaded, keeping the previous one: {e}"),
            }
        }
    })
}

/// Modification time and size of a file: a cheap "did it change" test for polling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    /// Modification time.
    pub(crate) modified: SystemTime,
    /// Size in bytes.
    pub(crate) len: u64,
}

impl FileStamp {
    /// The stamp of `path` now.
    pub(crate) fn of(path: &Path) -> std::io::Result<FileStamp> {
        let m = std::fs::metadata(path)?;
        Ok(FileStamp {
            modified: m.modified()?,
            len: m.len(),
        })
    }
}

/// Polls one latency map file for changes.
///
/// [`poll`](Self::poll) reads the file when its modification time or size changed since the
/// last poll. An unreadable file is reported once, so the caller keeps the map it has and logs
/// one error per problem.
#[derive(Debug)]
pub(crate) struct LatencyMapWatcher {
    path: PathBuf,
    last: Option<FileStamp>,
    /// The file could not be examined at the last poll (reported then).
    unreadable: bool,
}

impl LatencyMapWatcher {
    /// A watcher that has seen nothing yet.
    pub(crate) fn new(path: impl Into<PathBuf>) -> LatencyMapWatcher {
        LatencyMapWatcher {
            path: path.into(),
            last: None,
            unreadable: false,
        }
    }

    /// Forgets the last stamp: the next poll reads the file whatever its stamp.
    pub(crate) fn forget(&mut self) {
        self.last = None;
        self.unreadable = false;
    }

    /// `Ok(Some(text))`: the file changed; parse and publish it. `Ok(None)`: unchanged.
    /// `Err`: unreadable; keep the current map.
    pub(crate) fn poll(&mut self) -> Result<Option<(String, MapFormat)>, LatencyMapError> {
        let stamp = match FileStamp::of(&self.path) {
            Ok(s) => s,
            Err(source) => {
                // Reported once; when it comes back it is loaded whatever its stamp.
                self.last = None;
                if std::mem::replace(&mut self.unreadable, true) {
                    return Ok(None);
                }
                return Err(LatencyMapError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        self.unreadable = false;
        if self.last == Some(stamp) {
            return Ok(None);
        }
        self.last = Some(stamp);
        let text = std::fs::read_to_string(&self.path).map_err(|source| LatencyMapError::Io {
            path: self.path.clone(),
            source,
        })?;
        let format = MapFormat::detect(&self.path, &text);
        Ok(Some((text, format)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watcher_reloads_on_change_and_reports_bad_files_once() {
        let dir = std::env::temp_dir().join(format!("gslbd-latmap-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("rum.csv");
        let write = |t: &str| std::fs::write(&path, t).map_err(|e| e.to_string());
        let mut w = LatencyMapWatcher::new(&path);
        // Missing: reported once.
        assert!(matches!(w.poll(), Err(LatencyMapError::Io { .. })));
        assert!(matches!(w.poll(), Ok(None)));
        assert_eq!(write("EU,fra,1\n"), Ok(()));
        let t = w.poll().ok().flatten();
        assert_eq!(t, Some(("EU,fra,1\n".to_string(), MapFormat::Csv)));
        assert!(matches!(w.poll(), Ok(None)), "unchanged");
        // Another size: read again.
        assert_eq!(write("EU,fra,1\nEU,iad,2\n"), Ok(()));
        let t = w.poll().ok().flatten().map(|(t, _)| t);
        assert_eq!(t.as_deref(), Some("EU,fra,1\nEU,iad,2\n"));
        assert!(matches!(w.poll(), Ok(None)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
