//! Health feed files (`--health-feed FILE`): each file is polled (modification time and size)
//! and, when it changed or a new probe runtime started, read, parsed and sent to the
//! aggregator as one `Update::Replace` from the source `feed <path>`.
//!
//! ```text
//!  poll (1 s) --changed?--> read + health::feed::parse
//!     ok, younger than max age --> verdicts with ttl = max age - file age --> aggregator
//!     ok, older than max age   --> no verdicts (the file's entries are ignored)
//!     broken / unreadable      --> nothing sent: the last good entries hold until they expire;
//!                                  the error is logged and shown in /status
//! ```
//!
//! The entries expire in the aggregator on its own clock: a file nobody rewrites stops
//! counting `max age` after it was written, whether gslbd re-reads it or not.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::State;
use super::latency_map::FileStamp;
use crate::health::feed::{self, FeedStatus};
use crate::health::input::{InputError, Source, SourceKind, Update};
use crate::health::persist::unix_secs;
use crate::shutdown::Shutdown;

/// How often each feed file is checked for changes.
pub(super) const POLL: Duration = Duration::from_secs(1);

/// Polls feed `index` (`path`) until `stop`.
pub(super) fn spawn(
    state: Arc<State>,
    index: usize,
    path: PathBuf,
    max_age: Duration,
    stop: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let name = path.display().to_string();
        let source = Source::new(SourceKind::Feed, name.clone());
        let mut tick = tokio::time::interval(POLL);
        // What was last sent, and to which probe runtime: a new runtime gets it again.
        let mut sent: Option<(FileStamp, u64)> = None;
        let mut last_error: Option<String> = None;
        loop {
            tokio::select! {
                _ = stop.stopped() => return,
                _ = tick.tick() => {}
            }
            let generation = state.health_gen.load(Ordering::Relaxed);
            let stamp = match FileStamp::of(&path) {
                Ok(s) => s,
                Err(e) => {
                    report(
                        &state,
                        index,
                        &mut last_error,
                        format!("cannot read {name}: {e}"),
                    );
                    continue;
                }
            };
            if sent == Some((stamp, generation)) {
                continue;
            }
            let text = match tokio::fs::read_to_string(&path).await {
                Ok(t) => t,
                Err(e) => {
                    report(
                        &state,
                        index,
                        &mut last_error,
                        format!("cannot read {name}: {e}"),
                    );
                    continue;
                }
            };
            let entries = match feed::parse(&text) {
                Ok(e) => e,
                Err(e) => {
                    report(
                        &state,
                        index,
                        &mut last_error,
                        format!("{name}: {e}; keeping the last good entries"),
                    );
                    // Not sent: a later write is read again (its stamp differs).
                    sent = Some((stamp, generation));
                    continue;
                }
            };
            let age = SystemTime::now()
                .duration_since(stamp.modified)
                .unwrap_or(Duration::ZERO);
            let stale = age >= max_age;
            let verdicts = if stale {
                Vec::new()
            } else {
                feed::verdicts(&entries, &name, max_age - age)
            };
            let update = Update::Replace {
                source: source.clone(),
                verdicts,
            };
            match state.health_input(update).await {
                Ok(applied) => {
                    if stale {
                        tracing::warn!(file = %name, age_secs = age.as_secs(), max_age_secs = max_age.as_secs(), "health feed is older than its maximum age: its entries are ignored");
                    } else {
                        tracing::info!(file = %name, entries = entries.len(), changed = applied.changed, "health feed read");
                    }
                    if !applied.unknown.is_empty() {
                        tracing::warn!(file = %name, unknown = ?applied.unknown, "health feed names datacenters or addresses that are not configured");
                    }
                    last_error = None;
                    state.set_feed_status(
                        index,
                        FeedStatus {
                            path: name.clone(),
                            ok: true,
                            error: None,
                            entries: entries.len(),
                            unknown: applied.unknown,
                            modified_unix: Some(unix_secs(stamp.modified)),
                            stale,
                        },
                    );
                    sent = Some((stamp, generation));
                }
                // Between two probe runtimes (a reload): the next poll sends it again.
                Err(InputError::Stopped) => {}
                Err(e) => report(&state, index, &mut last_error, format!("{name}: {e}")),
            }
        }
    })
}

/// Logs `error` once (until it changes) and shows it in the feed's status; the last good
/// entries stay.
fn report(state: &State, index: usize, last: &mut Option<String>, error: String) {
    if last.as_deref() != Some(error.as_str()) {
        tracing::error!("health feed: {error}");
        *last = Some(error.clone());
    }
    state.update_feed_status(index, |s| {
        s.ok = false;
        s.error = Some(error);
    });
}
