//! Warm state: restoring admin states and the last known health from the `--state-dir`
//! files at start, and writing them (after changes, periodically and at shutdown).
//!
//! A state file that cannot be used never stops the server (unless `strict_state` says so):
//! an unusable `admin.json` is moved aside and every datacenter starts in `obey`; an unusable
//! `health.json` is only a cache and is ignored, and so is an unusable `inputs.json` (external
//! verdicts expire anyway). Each is logged at error/warn level and kept
//! as a [`StateProblem`] for `/status` and the `gslbd_state_file_errors_total` metric.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

use super::combine::Cause;
use super::{Aggregator, StateProblem};
use crate::health::AdminState;
use crate::health::ewma::Ewma;
use crate::health::persist::{
    ADMIN_FILE, AdminEntry, AdminFile, HEALTH_FILE, HealthFile, INPUTS_FILE, InputsFile,
    PersistError, SavedLoad, SavedLoadKind, TargetEntry, VERSION, parse_admin, parse_health,
    read_bytes, read_json, set_aside, unix_ms, unix_secs, write_atomic,
};
use crate::probe::LoadFigure;

impl Aggregator {
    /// Reads both state files of `dir` and restores what can be used (see the module doc);
    /// with `strict_state`, an unusable `admin.json` is an error instead.
    pub(super) fn restore(
        &mut self,
        dir: &std::path::Path,
        now: Instant,
        wall: SystemTime,
    ) -> Result<(), PersistError> {
        let admin = read_bytes(dir, ADMIN_FILE).and_then(|b| {
            b.map(|b| parse_admin(&dir.join(ADMIN_FILE), &b))
                .transpose()
        });
        match admin {
            Ok(Some(file)) => self.restore_admin(&file, now, wall),
            Ok(None) => {}
            Err(e) if self.settings.strict_state => return Err(e),
            Err(e) => {
                let moved = set_aside(dir, ADMIN_FILE, wall);
                let moved_to = moved.as_ref().ok().map(|p| p.display().to_string());
                match &moved {
                    Ok(to) => tracing::error!(
                        error = %e,
                        moved_to = %to.display(),
                        "admin state file unusable: serving with every datacenter in obey (admin states lost until set again); the file was moved aside"
                    ),
                    Err(m) => tracing::error!(
                        error = %e,
                        move_error = %m,
                        "admin state file unusable: serving with every datacenter in obey (admin states lost until set again); it could not be moved aside"
                    ),
                }
                self.problems.push(StateProblem {
                    file: ADMIN_FILE,
                    error: e.to_string(),
                    moved_to,
                });
            }
        }
        let health = read_bytes(dir, HEALTH_FILE).and_then(|b| {
            b.map(|b| parse_health(&dir.join(HEALTH_FILE), &b))
                .transpose()
        });
        let problem = match health {
            Ok(Some(file)) => {
                let problem = self.restore_health(&file, now, wall);
                if problem.is_none() {
                    // Kept for targets added at run time (hostname datacenters).
                    self.warm_file = Some((file, now, wall));
                }
                problem
            }
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(error) = problem {
            tracing::warn!(error = %error, "warm-start health not used: the startup setting applies until each target's first probe");
            self.problems.push(StateProblem {
                file: HEALTH_FILE,
                error,
                moved_to: None,
            });
        }
        // External verdicts expire on their own: a file that cannot be used is ignored (the
        // probes decide until a source says otherwise again), said as for health.json.
        match read_json::<InputsFile>(dir, INPUTS_FILE) {
            Ok(Some(file)) => self.restore_inputs(&file, now, wall),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "saved external verdicts not used: the probes decide until a source sends its verdict again");
                self.problems.push(StateProblem {
                    file: INPUTS_FILE,
                    error: e.to_string(),
                    moved_to: None,
                });
            }
        }
        Ok(())
    }

    /// Applies a parsed (checked) `admin.json`.
    fn restore_admin(&mut self, file: &AdminFile, now: Instant, wall: SystemTime) {
        for (name, entry) in &file.datacenters {
            let Some(state) = AdminState::parse(&entry.admin) else {
                continue; // parse_admin refused the file already
            };
            let Some(i) = self.set.dcs.iter().position(|d| &d.name == name) else {
                tracing::info!(dc = %name, admin = state.as_str(), "admin state for a datacenter no longer configured; dropped");
                continue;
            };
            self.dcs[i].admin = state;
            if state == AdminState::Drain {
                // Keep the original drain start, so a restart does not restart the clock.
                let started_unix = entry.drain_started_unix.unwrap_or_else(|| unix_secs(wall));
                let ago = Duration::from_secs(unix_secs(wall).saturating_sub(started_unix));
                let started = now.checked_sub(ago).unwrap_or(now);
                let started_wall = wall.checked_sub(ago).unwrap_or(wall);
                self.dcs[i].drain_started = Some((started, started_wall));
            }
            tracing::info!(dc = %name, admin = state.as_str(), "restored admin state");
        }
    }

    /// Applies a parsed `health.json` if it is recent; returns why not when it is from the
    /// future (a clock that went back, or a file from elsewhere: its age is unknown). Restored
    /// targets count as unsettled until a live probe confirms them (`TargetState::settled`).
    fn restore_health(
        &mut self,
        file: &HealthFile,
        now: Instant,
        wall: SystemTime,
    ) -> Option<String> {
        let wall_secs = unix_secs(wall);
        if file.written_unix > wall_secs {
            return Some(format!(
                "{HEALTH_FILE}: written {} s in the future (at unix {}): its age is unknown, so it is treated as stale",
                file.written_unix - wall_secs,
                file.written_unix
            ));
        }
        let age = Duration::from_secs(wall_secs - file.written_unix);
        if age > self.settings.warm_max_age {
            tracing::info!(
                age_secs = age.as_secs(),
                max_age_secs = self.settings.warm_max_age.as_secs(),
                "warm-start health too old; using the startup setting"
            );
            return None;
        }
        let mut restored = 0usize;
        for entry in &file.targets {
            let Some(t) = self
                .targets
                .iter_mut()
                .find(|t| t.fingerprint == entry.check && t.addr.to_string() == entry.addr)
            else {
                continue;
            };
            t.up = entry.up;
            t.warm = true;
            t.passes = entry.passes;
            t.fails = entry.fails;
            if let Some(ms) = entry.latency_ms.filter(|v| v.is_finite() && *v >= 0.0) {
                t.latency = Ewma::with_value(self.settings.latency_half_life, ms, now);
            }
            if let Some(l) = entry.load.filter(|l| l.value.is_finite() && l.value >= 0.0) {
                let load_age =
                    age + Duration::try_from_secs_f64(l.age_secs).unwrap_or(Duration::MAX);
                if load_age <= self.settings.load_max_age
                    && let Some(at) = now.checked_sub(load_age)
                {
                    let fig = match l.kind {
                        SavedLoadKind::Utilisation => LoadFigure::Utilisation(l.value.min(1.0)),
                        SavedLoadKind::Connections => LoadFigure::Connections(l.value),
                    };
                    t.load = Some((fig, at));
                }
            }
            restored += 1;
        }
        tracing::info!(
            targets = restored,
            age_secs = age.as_secs(),
            "warm start from saved health (unsettled until probed)"
        );
        None
    }

    /// What a reload that changes the datacenters does through the state files (the old
    /// runtime writes them when it stops, the new one reads them back at start), in memory:
    /// admin states by datacenter name, the health of the targets both sets probe and the
    /// external verdicts still held, taken from `prev` at `now`, then published. `gslbd
    /// simulate` uses it for a zone change on virtual time, where there are no files (and no
    /// wall clock to age them by: the verdicts keep what is left of their TTL on `now`'s
    /// clock).
    pub(crate) fn carry_over(&mut self, prev: &Aggregator, now: Instant) {
        let wall = SystemTime::now();
        let (admin, health) = prev.state_files(now, wall);
        let mut inputs = prev.inputs_file(wall);
        for (saved, e) in inputs.entries.iter_mut().zip(&prev.inputs.entries) {
            let left = e.expires.saturating_duration_since(now);
            saved.expires_unix_ms = unix_ms(wall + left);
        }
        // The states come from `state_files`, so they always parse; there is no file to name.
        self.restore_admin(&admin, now, wall);
        let _ = self.restore_health(&health, now, wall);
        self.restore_inputs(&inputs, now, wall);
        for i in 0..self.dcs.len() {
            self.reevaluate(i, now, Cause::Start);
        }
        self.force_publish(now);
    }

    /// A target added at run time (a hostname datacenter's new address): its warm state
    /// from the file read at start, while that is still fresh.
    pub(super) fn restore_one(&mut self, id: crate::probe::TargetId, now: Instant) {
        let Some((file, read_at, wall)) = &self.warm_file else {
            return;
        };
        let file_age = Duration::from_secs(unix_secs(*wall).saturating_sub(file.written_unix));
        let age = file_age + now.saturating_duration_since(*read_at);
        if file.version != VERSION || age > self.settings.warm_max_age {
            return;
        }
        let Some(t) = self.targets.get_mut(id.0 as usize) else {
            return;
        };
        let Some(entry) = file
            .targets
            .iter()
            .find(|e| e.check == t.fingerprint && e.addr == t.addr.to_string())
        else {
            return;
        };
        t.up = entry.up;
        t.warm = true;
        t.passes = entry.passes;
        t.fails = entry.fails;
        if let Some(ms) = entry.latency_ms.filter(|v| v.is_finite() && *v >= 0.0) {
            t.latency = Ewma::with_value(self.settings.latency_half_life, ms, now);
        }
    }

    /// The two state files as they would be written at (`now`, `wall`).
    pub(crate) fn state_files(&self, now: Instant, wall: SystemTime) -> (AdminFile, HealthFile) {
        let mut admin = AdminFile {
            version: VERSION,
            ..AdminFile::default()
        };
        for (i, d) in self.dcs.iter().enumerate() {
            if d.admin != AdminState::Obey {
                admin.datacenters.insert(
                    self.set.dcs[i].name.clone(),
                    AdminEntry {
                        admin: d.admin.as_str().to_string(),
                        drain_started_unix: d.drain_started.map(|(_, w)| unix_secs(w)),
                    },
                );
            }
        }
        let targets = self
            .targets
            .iter()
            .enumerate()
            // Only what was measured (or restored): an assumption is not knowledge; and only
            // targets still probed (a hostname datacenter's address may have left).
            .filter(|(i, t)| {
                (t.probed || t.warm)
                    && self
                        .set
                        .targets
                        .get(*i)
                        .is_some_and(|x| !x.users.is_empty())
            })
            .map(|(_, t)| t)
            .map(|t| TargetEntry {
                check: t.fingerprint.clone(),
                addr: t.addr.to_string(),
                up: t.up,
                passes: t.passes,
                fails: t.fails,
                latency_ms: t.latency.get(),
                load: t.load.map(|(f, at)| {
                    let (kind, value) = match f {
                        LoadFigure::Utilisation(v) => (SavedLoadKind::Utilisation, v),
                        LoadFigure::Connections(v) => (SavedLoadKind::Connections, v),
                    };
                    SavedLoad {
                        kind,
                        value,
                        age_secs: now.saturating_duration_since(at).as_secs_f64(),
                    }
                }),
            })
            .collect();
        (
            admin,
            HealthFile {
                version: VERSION,
                written_unix: unix_secs(wall),
                targets,
            },
        )
    }

    /// Write the state files now (synchronously; no-op without a state dir).
    pub fn persist(&self, now: Instant) -> Result<(), PersistError> {
        let Some(dir) = &self.settings.state_dir else {
            return Ok(());
        };
        let wall = SystemTime::now();
        let (admin, health) = self.state_files(now, wall);
        write_json(dir, ADMIN_FILE, &admin)?;
        write_json(dir, INPUTS_FILE, &self.inputs_file(wall))?;
        write_json(dir, HEALTH_FILE, &health)
    }

    pub(super) async fn persist_async(&self, now: Instant) -> Result<(), PersistError> {
        let Some(dir) = self.settings.state_dir.clone() else {
            return Ok(());
        };
        let wall = SystemTime::now();
        let (admin, health) = self.state_files(now, wall);
        let inputs = self.inputs_file(wall);
        // File I/O and fsync off the runtime's worker threads.
        tokio::task::spawn_blocking(move || {
            write_json(&dir, ADMIN_FILE, &admin)?;
            write_json(&dir, INPUTS_FILE, &inputs)?;
            write_json(&dir, HEALTH_FILE, &health)
        })
        .await
        .unwrap_or_else(|e| {
            Err(PersistError::Io {
                path: PathBuf::from(HEALTH_FILE),
                source: std::io::Error::other(e),
            })
        })
    }
}

fn write_json<T: Serialize>(dir: &std::path::Path, name: &str, v: &T) -> Result<(), PersistError> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|source| PersistError::Parse {
        path: dir.join(name),
        source,
    })?;
    write_atomic(dir, name, &bytes)
}
