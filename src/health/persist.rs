//! The `--state-dir` files: admin states (`admin.json`), last known health, load and latency
//! per target (`health.json`) and the external verdicts still in force (`inputs.json`: pushed,
//! feed, alert, with their wall-clock expiry), all JSON, all written atomically.
//!
//! ```text
//! aggregator --(on change, coalesced; periodic; shutdown)--> serialize
//!            --> <dir>/.<file>.tmp --fsync--> rename
//! Aggregator::new <-- read + parse (version first, then the shape; admin states checked)
//!                     admin: always used; unusable -> moved aside (or refused, strict)
//!                     health: used if not older than warm_max_age and not from the future
//! ```
//! Datacenters are keyed by name and targets by (check fingerprint, address), never by ids,
//! which change whenever the configuration does.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::AdminState;
use crate::walk::{MESSAGE_CHARS, one_line, shown};

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
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or its temporary sibling).
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// The file is not JSON of the expected shape.
    #[error("{}: not a valid state file: {}", path.display(), one_line(&source.to_string(), MESSAGE_CHARS))]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why the JSON did not fit.
        source: serde_json::Error,
    },
    /// The file is of a format version this gslbd does not read (a newer gslbd wrote it).
    #[error(
        "{}: format version {found}, but this gslbd reads version {VERSION} only (written by another gslbd version?)",
        path.display()
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The version the file says.
        found: u32,
    },
    /// `admin.json` names an admin state gslbd does not know.
    #[error(
        "{}: datacenter {} has unknown admin state {} (expected obey, up, down or drain)",
        path.display(), shown(dc), shown(state)
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

/// Reads and parses `dir/name` (its version first, as every state file); `Ok(None)` when the
/// file does not exist.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(
    dir: &Path,
    name: &str,
) -> Result<Option<T>, PersistError> {
    let path = dir.join(name);
    read_bytes(dir, name)?.map(|b| parse(&path, &b)).transpose()
}

/// The bytes of `dir/name`; `Ok(None)` when the file does not exist.
pub(crate) fn read_bytes(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, PersistError> {
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PersistError::Io { path, source }),
    }
}

/// Parses a state file's bytes (`path` names it in errors): its `version` first, so a file
/// of another format is refused as such rather than as a shape that does not fit, then the
/// whole file.
fn parse<T: for<'de> Deserialize<'de>>(path: &Path, bytes: &[u8]) -> Result<T, PersistError> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let err = |source| PersistError::Parse {
        path: path.to_path_buf(),
        source,
    };
    let v: Versioned = serde_json::from_slice(bytes).map_err(err)?;
    if v.version != VERSION {
        return Err(PersistError::Version {
            path: path.to_path_buf(),
            found: v.version,
        });
    }
    serde_json::from_slice(bytes).map_err(err)
}

/// Parses `admin.json`: the version, the shape, and every admin state a known one. A file
/// that fails any of these is not used at all (no half of an operator's intent).
pub(crate) fn parse_admin(path: &Path, bytes: &[u8]) -> Result<AdminFile, PersistError> {
    let file: AdminFile = parse(path, bytes)?;
    for (dc, e) in &file.datacenters {
        if AdminState::parse(&e.admin).is_none() {
            return Err(PersistError::BadAdmin {
                path: path.to_path_buf(),
                dc: dc.clone(),
                state: e.admin.clone(),
            });
        }
    }
    Ok(file)
}

/// Parses `health.json`: the version and the shape.
pub(crate) fn parse_health(path: &Path, bytes: &[u8]) -> Result<HealthFile, PersistError> {
    parse(path, bytes)
}

/// Moves `dir/name` aside to `dir/name.corrupt-<unix seconds>` (`-2`, `-3`... if taken), so the
/// next write does not replace what an operator may want to read or repair; returns the new
/// path.
pub(crate) fn set_aside(dir: &Path, name: &str, wall: SystemTime) -> Result<PathBuf, PersistError> {
    let from = dir.join(name);
    let stem = format!("{name}.corrupt-{}", unix_secs(wall));
    let mut to = dir.join(&stem);
    let mut n = 1;
    while to.exists() {
        n += 1;
        to = dir.join(format!("{stem}-{n}"));
    }
    fs::rename(&from, &to).map_err(|source| PersistError::Io { path: from, source })?;
    Ok(to)
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
