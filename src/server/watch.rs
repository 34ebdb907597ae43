//! Reload on file changes: the zones directory and the GeoIP files are watched (inotify via
//! `notify`), events are debounced, and a reload runs the same path as SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::State;

/// Quiet time after the last event before reloading: editors write files in several steps.
const DEBOUNCE: Duration = Duration::from_millis(300);

pub fn spawn(
    state: Arc<State>,
    zones: PathBuf,
    geoip: Vec<PathBuf>,
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
        while rx.recv().await.is_some() {
            // Debounce: wait until events stop for DEBOUNCE.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            tracing::info!("files changed: reloading");
            let _ = state.reload().await;
        }
        drop(watcher);
    })
}

/// How often the latency map file is checked for changes.
const LATENCY_MAP_POLL: Duration = Duration::from_secs(1);

/// Keeps the latency map of the health snapshot current: loads it at start, again when the
/// file changes (checked every second), and re-resolves it after every reload (datacenter ids
/// may have changed). A bad file is reported and the previous map stays.
pub fn spawn_latency_map(state: Arc<State>, path: PathBuf) -> tokio::task::JoinHandle<()> {
    use std::sync::atomic::Ordering;
    tokio::spawn(async move {
        let mut watcher = crate::health::LatencyMapWatcher::new(path.clone());
        let mut seen_generation = 0;
        let mut tick = tokio::time::interval(LATENCY_MAP_POLL);
        loop {
            tick.tick().await;
            let generation = state.generation.load(Ordering::Relaxed);
            let loaded = state.loaded.load();
            let ids = |n: &str| loaded.model.datacenters.by_name.get(n).copied();
            let result = if generation != seen_generation {
                watcher.force(ids).map(Some)
            } else {
                watcher.poll(ids)
            };
            match result {
                Ok(Some(map)) => {
                    if let Some(h) = state.health_handle().await
                        && h.set_latency_map(Some(Arc::new(map))).await.is_ok()
                    {
                        seen_generation = generation;
                        tracing::info!(file = %path.display(), "latency map loaded");
                    }
                }
                Ok(None) => seen_generation = generation,
                Err(e) => {
                    seen_generation = generation;
                    tracing::error!("latency map not loaded, keeping the previous one: {e}");
                }
            }
        }
    })
}
