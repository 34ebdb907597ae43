//! The `--state-dir` files: admin states (`admin.json`), last known health, load and latency
//! per target (`health.json`) and the external verdicts still in force (`inputs.json`: pushed,
//! feed, alert, with their wall-clock expiry), all JSON, all written atomically.
//!
//! ```text
//! aggregator --(periodic, shutdown)--> serialize --> <dir>/<file>.tmp --fsync--> rename
//! Aggregator::new <-- read (admin: always; health: only if younger than warm_max_age)
//! ```
//! Datacenters are keyed by name and targets by (check fingerprint, address), never by ids,
//! which change whenever the configuration does.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// File of admin states in the state directory.
pub(crate) const ADMIN_FILE: &str = "admin.json";
/// File of warm-start health in the state directory.
pub(crate) const HEALTH_FILE: &str = "health.json";
/// File of external verdicts in the state directory.
pub(crate) const INPUTS_FILE: &str = "inputs.json";

/// A state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading, writing, syncing or renaming failed.
    #[error("{path}: {source}")]
    Io {
        /// The file (or its temporary sibling).
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// The file is not JSON of the expected shape.
    #[error("{path}: not a valid state file: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why the JSON did not fit.
        source: serde_json::Error,
    },
    /// `admin.json` names an admin state gslbd does not know.
    #[error(
        "{path}: datacenter `{dc}` has unknown admin state `{state}` (expected obey, up, down or drain)"
    )]
    BadAdmin {
        /// The file.
        path: PathBuf,
        /// The datacenter's name.
        dc: String,
        /// The state as written.
        state: String,
    },
}

/// `admin.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct AdminFile {
    /// Format version ([`VERSION`]).
    pub(crate) version: u32,
    /// Datacenter name -> its admin state; datacenters in `obey` are left out.
    pub(crate) datacenters: BTreeMap<String, AdminEntry>,
}

/// One datacenter's admin state in `admin.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct AdminEntry {
    /// `obey`, `up`, `down` or `drain`.
    pub(crate) admin: String,
    /// Unix seconds when the drain started, so drain-complete survives a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) drain_started_unix: Option<u64>,
}

/// `health.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct HealthFile {
    /// Format version ([`VERSION`]); another version is ignored like a stale file.
    pub(crate) version: u32,
    /// Unix seconds of the write; the file is used only while younger than the max age.
    pub(crate) written_unix: u64,
    /// One entry per probed target.
    pub(crate) targets: Vec<TargetEntry>,
}

/// One target's last known health in `health.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetEntry {
    /// `CheckSpec::fingerprint()`.
    pub(crate) check: String,
    /// Target `addr:port`.
    pub(crate) addr: String,
    /// Its state after rise/fall.
    pub(crate) up: bool,
    /// Consecutive passes, so a rise in progress resumes.
    #[serde(default)]
    pub(crate) passes: u32,
    /// Consecutive fails, so a fall in progress resumes.
    #[serde(default)]
    pub(crate) fails: u32,
    /// Smoothed probe round-trip time, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) latency_ms: Option<f64>,
    /// Last good load figure: utilisation (0..1) or a connection count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) load: Option<SavedLoad>,
}

/// Which load figure the check read.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SavedLoadKind {
    /// A 0..1 utilisation.
    Utilisation,
    /// A connection count, divided by the datacenter capacity when used.
    Connections,
}

/// A load figure with its age, so a restart does not make an old figure look fresh.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SavedLoad {
    /// What the figure is.
    pub(crate) kind: SavedLoadKind,
    /// The figure as read.
    pub(crate) value: f64,
    /// Seconds between reading the figure and writing the file.
    pub(crate) age_secs: f64,
}

/// `inputs.json`: the external verdicts in force when it was written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct InputsFile {
    /// Format version.
    pub(crate) version: u32,
    /// Unix seconds of the write.
    pub(crate) written_unix: u64,
    /// Every verdict held.
    pub(crate) entries: Vec<InputEntry>,
}

/// One saved external verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct InputEntry {
    /// Pushed, feed or alert.
    pub(crate) kind: crate::health::input::SourceKind,
    /// The source's id within its kind (pusher, feed file, alert fingerprint).
    pub(crate) id: String,
    /// The datacenter, by name.
    pub(crate) datacenter: String,
    /// One answer address, or the whole datacenter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) address: Option<String>,
    /// Up or down.
    pub(crate) up: bool,
    /// Utilisation 0..1, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) load: Option<f64>,
    /// Why, for people.
    #[serde(default)]
    pub(crate) reason: String,
    /// The time to live it was given.
    pub(crate) ttl_secs: f64,
    /// When it stops holding, Unix milliseconds.
    pub(crate) expires_unix_ms: u64,
}

/// Current format version of every file.
pub(crate) const VERSION: u32 = 1;

/// Seconds since the Unix epoch (0 for a clock before 1970).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (0 for a clock before 1970).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Read and parse `dir/name`; `Ok(None)` when the file does not exist.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(
    dir: &Path,
    name: &str,
) -> Result<Option<T>, PersistError> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PersistError::Io { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| PersistError::Parse { path, source })
}

/// Write `bytes` to `dir/name` so that a reader sees the old or the new file, never half of
/// one: write a temp file in the same directory, fsync it, rename it over, fsync the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), PersistError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let io_err = |source| PersistError::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(io_err)?;
    {
        let mut f = fs::File::create(&tmp).map_err(io_err)?;
        f.write_all(bytes).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
    }
    fs::rename(&tmp, &path).map_err(io_err)?;
    // The rename is durable only once the directory entry is; not every platform lets us open
    // a directory, so this is best effort.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
