//! Reload on file changes: the zones directory and the GeoIP files are watched (inotify via
//! `notify`), events are debounced, and a reload runs the same path as SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::State;
use crate::shutdown::Shutdown;

/// Quiet time after the last event before reloading: editors write files in several steps.
/// The loader then reads a file only once it has been unchanged as long
/// (`config::SETTLE`), so a reload that starts early still waits for the last step.
const DEBOUNCE: Duration = crate::config::SETTLE;

/// Watches the zones directory and the GeoIP files' directories until `stop`; a burst of
/// changes becomes one reload.
pub(crate) fn spawn(
    state: Arc<State>,
    zones: PathBuf,
    geoip: Vec<PathBuf>,
    stop: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev
                && !matches!(ev.kind, notify::EventKind::Access(_))
            {
                let _ = tx.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "file watch unavailable: reload with SIGHUP");
                return;
            }
        };
        if let Err(e) = watcher.watch(&zones, RecursiveMode::NonRecursive) {
            tracing::warn!(error = %e, dir = %zones.display(), "cannot watch the zones directory");
        }
        for g in &geoip {
            // Watch the directory: a refresh replaces the file by rename.
            if let Some(dir) = g.parent().filter(|d| !d.as_os_str().is_empty())
                && let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive)
            {
                tracing::warn!(error = %e, file = %g.display(), "cannot watch a GeoIP file");
            }
        }
        loop {
            tokio::select! {
                _ = stop.stopped() => break,
                ev = rx.recv() => if ev.is_none() { break },
            }
            // Debounce: wait until events stop for DEBOUNCE.
            loop {
                tokio::select! {
                    _ = stop.stopped() => return,
                    r = tokio::time::timeout(DEBOUNCE, rx.recv()) => match r {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    },
                }
            }
            tracing::info!("files changed: reloading");
            let _ = state.reload().await;
        }
        drop(watcher);
    })
}
