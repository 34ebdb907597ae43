//! The server's side of the defences on the query path: the response rate limiter, the cookie
//! secrets (and their rotation), and what the TCP listener's limits did (metrics and a
//! throttled log). `PacketHandler for State` calls into it; the decisions themselves live in
//! `dns::rrl`, `dns::cookie` and `abuse`.
//!
//! ```text
//! UDP response --cookie valid?--> exempt | --Rrl::check--> pass | dropped | slipped (TC=1)
//! cookie task (every 30 s): wall clock offset; secret file re-read when it changed;
//!                           without a file, a new random secret every day (old one kept)
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::dns::CookieSecrets;
use crate::dns::cookie::SECRET_LEN;
use crate::shutdown::Shutdown;

/// How often the cookie task looks at the clock and the secret file.
const COOKIE_TICK: Duration = Duration::from_secs(30);
/// How often a secret made by the server itself is replaced (the previous one stays
/// accepted, longer than the hour a cookie is valid).
const ROTATE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Where the cookie secrets come from.
enum Source {
    /// Made by this process, rotated every [`ROTATE_EVERY`].
    Own { rotated: tokio::time::Instant },
    /// Read from a file (shared by instances); re-read when it changes.
    File(PathBuf),
}

/// The cookie secrets in force and the wall clock the query path stamps cookies with.
pub(crate) struct CookieJar {
    secrets: ArcSwap<CookieSecrets>,
    /// Unix seconds at `base`, refreshed by the cookie task (so the query path reads an
    /// atomic instead of the wall clock, and a clock step is picked up within 30 s).
    unix_at_base: AtomicU64,
    base: Instant,
    source: std::sync::Mutex<Source>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 16 random bytes from the kernel.
fn random_secret() -> std::io::Result<[u8; SECRET_LEN]> {
    use std::io::Read;
    let mut b = [0u8; SECRET_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

/// Reads a secret file (see `CookieSecrets::parse`), refusing one others may read.
pub(crate) fn read_secret_file(path: &Path) -> Result<CookieSecrets, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cookie secret file {}: {e}", path.display()))?;
    warn_if_readable_by_others(path);
    CookieSecrets::parse(&text).map_err(|e| format!("cookie secret file {}: {e}", path.display()))
}

fn warn_if_readable_by_others(f: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(f)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(file = %f.display(), "cookie secret file is readable by group or others");
    }
}

impl CookieJar {
    /// Secrets from `file`, or made by this process; `base` is the query path's clock origin.
    pub(crate) fn new(file: Option<&Path>, base: Instant) -> Result<CookieJar, String> {
        let (secrets, source) = match file {
            Some(f) => (read_secret_file(f)?, Source::File(f.to_path_buf())),
            None => {
                let s = random_secret().map_err(|e| format!("cookie secret: {e}"))?;
                (
                    CookieSecrets::new(vec![s]).ok_or("cookie secret: none")?,
                    Source::Own {
                        rotated: tokio::time::Instant::now(),
                    },
                )
            }
        };
        let elapsed = tokio::time::Instant::now()
            .into_std()
            .saturating_duration_since(base);
        Ok(CookieJar {
            secrets: ArcSwap::from_pointee(secrets),
            unix_at_base: AtomicU64::new(unix_now().saturating_sub(elapsed.as_secs())),
            base,
            source: std::sync::Mutex::new(source),
        })
    }

    /// The secrets in force (one atomic load).
    #[inline]
    pub(crate) fn secrets(&self) -> arc_swap::Guard<Arc<CookieSecrets>> {
        self.secrets.load()
    }

    /// Unix seconds at `now` (an instant of the query path's clock).
    #[inline]
    pub(crate) fn unix(&self, now: Instant) -> u32 {
        let s =
            self.unix_at_base.load(Relaxed) + now.saturating_duration_since(self.base).as_secs();
        s as u32
    }

    /// One tick of the cookie task: the clock offset, then the secrets.
    fn tick(&self) {
        let elapsed = tokio::time::Instant::now()
            .into_std()
            .saturating_duration_since(self.base);
        self.unix_at_base
            .store(unix_now().saturating_sub(elapsed.as_secs()), Relaxed);
        let mut source = self.source.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *source {
            Source::File(path) => match read_secret_file(path) {
                Ok(s) if s != **self.secrets.load() => {
                    tracing::info!(file = %path.display(), "cookie secrets reloaded");
                    self.secrets.store(Arc::new(s));
                }
                Ok(_) => {}
                Err(e) => tracing::error!("{e}; keeping the secrets in force"),
            },
            Source::Own { rotated } => {
                if rotated.elapsed() >= ROTATE_EVERY {
                    match random_secret() {
                        Ok(new) => {
                            let old = *self.secrets.load().current();
                            if let Some(s) = CookieSecrets::new(vec![new, old]) {
                                self.secrets.store(Arc::new(s));
                                *rotated = tokio::time::Instant::now();
                                tracing::info!(
                                    "cookie secret rotated (the previous one is still accepted)"
                                );
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cookie secret rotation failed"),
                    }
                }
            }
        }
    }

    /// Runs the cookie task until `stop`.
    pub(crate) fn spawn(self: Arc<Self>, stop: Shutdown) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(COOKIE_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.stopped() => return,
                    _ = tick.tick() => {}
                }
                let jar = self.clone();
                // File reads stay off the runtime's worker threads.
                let _ = tokio::task::spawn_blocking(move || jar.tick()).await;
            }
        })
    }
}
