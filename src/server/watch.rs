//! Reload on file changes: the zones directory and the GeoIP files are watched (inotify via
//! `notify`), events are debounced, and a reload runs the same path as SIGHUP. The TLS
//! certificate and key of the encrypted listeners are watched the same way and reloaded on
//! their own (`State::reload_certs`), without touching the zones.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::State;
use crate::shutdown::Shutdown;

/// Quiet time after the last event before reloading: editors write files in several steps.
/// The loader then reads a file only once it has been unchanged as long
/// (`config::SETTLE`), so a reload that starts early still waits for the last step.
const DEBOUNCE: Duration = crate::config::SETTLE;

/// A watcher sending one `()` per relevant event (anything but a read).
fn watcher(
    what: &'static str,
) -> Option<(
    notify::RecommendedWatcher,
    tokio::sync::mpsc::UnboundedReceiver<()>,
)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            let _ = tx.send(());
        }
    });
    match watcher {
        Ok(w) => Some((w, rx)),
        Err(e) => {
            tracing::warn!(error = %e, "file watch unavailable for {what}: reload with SIGHUP");
            None
        }
    }
}

/// Waits for a burst of events to end (DEBOUNCE without one). `false` = stop or closed.
async fn next_burst(rx: &mut tokio::sync::mpsc::UnboundedReceiver<()>, stop: &Shutdown) -> bool {
    tokio::select! {
        _ = stop.stopped() => return false,
        ev = rx.recv() => if ev.is_none() { return false },
    }
    loop {
        tokio::select! {
            _ = stop.stopped() => return false,
            r = tokio::time::timeout(DEBOUNCE, rx.recv()) => match r {
                Ok(Some(())) => continue,
                Ok(None) => return false,
                Err(_) => return true,
            },
        }
    }
}

/// The directory a file lives in (watched instead of the file: a refresh replaces the file
/// by rename, and a symlink swap changes the directory).
fn dir_of(file: &Path) -> Option<&Path> {
    file.parent().filter(|d| !d.as_os_str().is_empty())
}

/// Watches the zones directory and the GeoIP files' directories until `stop`; a burst of
/// changes becomes one reload.
pub(crate) fn spawn(
    state: Arc<State>,
    zones: PathBuf,
    geoip: Vec<PathBuf>,
    stop: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some((mut watcher, mut rx)) = watcher("the zones") else {
            return;
        };
        if let Err(e) = watcher.watch(&zones, RecursiveMode::NonRecursive) {
            tracing::warn!(error = %e, dir = %zones.display(), "cannot watch the zones directory");
        }
        for g in &geoip {
            if let Some(dir) = dir_of(g)
                && let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive)
            {
                tracing::warn!(error = %e, file = %g.display(), "cannot watch a GeoIP file");
            }
        }
        while next_burst(&mut rx, &stop).await {
            tracing::info!("files changed: reloading");
            let _ = state.reload().await;
        }
        drop(watcher);
    })
}

/// What identifies a version of a file without reading it (symlinks followed).
type Stamp = Option<(u64, std::time::SystemTime, u64)>;

fn stamp(cert: &Path, key: &Path) -> [Stamp; 2] {
    use std::os::unix::fs::MetadataExt;
    [cert, key].map(|p| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.len(), m.modified().ok()?, m.ino()))
    })
}

/// Watches the directories of the certificate and key until `stop`; a burst of changes
/// becomes one certificate reload (which does nothing when the files still hold the same
/// certificate and key).
pub(crate) fn spawn_certs(
    state: Arc<State>,
    cert: PathBuf,
    key: PathBuf,
    stop: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some((mut watcher, mut rx)) = watcher("the TLS certificate") else {
            return;
        };
        let mut dirs: Vec<&Path> = [&cert, &key].iter().filter_map(|f| dir_of(f)).collect();
        dirs.dedup();
        for dir in dirs {
            if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the TLS certificate's directory");
            }
        }
        // Reading the files can itself raise events (an access time update is an attribute
        // change to inotify): reload only when size, modification time or inode changed.
        let mut seen = stamp(&cert, &key);
        while next_burst(&mut rx, &stop).await {
            let now = stamp(&cert, &key);
            if now != seen {
                seen = now;
                let _ = state.reload_certs().await;
            }
        }
        drop(watcher);
    })
}
