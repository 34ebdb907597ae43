//! Reading the zones directory into specs, with every error named by file and key path, and
//! the one build step where the specs meet the model ([`build()`]).
//!
//! ```text
//! zones/*.toml --toml--> DeTable (the parser's tree) --walk--> FileSpec (zone, datacenters, checks, gslb)
//!              --build--> Model (zones, datacenters + probe plan, GSLB names), or every error
//! ```
//! Each section has its file: `zone.rs` (origin, SOA, records), `datacenter.rs`, `check.rs`,
//! `name.rs` (`gslb.<name>`); `latency_map.rs` reads the latency map file. Nothing here
//! touches the query path: a reload reads and validates a whole new set of specs, and only a
//! clean set is turned into a model and published.

pub(crate) mod build;
pub(crate) mod check;
pub(crate) mod datacenter;
pub(crate) mod dnssec;
pub mod latency_map;
pub(crate) mod name;
pub(crate) mod split;
pub(crate) mod zone;

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Durations as zone files write them (`"500ms"`, `"5s"`, `"2m"`, `"1h"`), for flags too.
pub use crate::walk::parse_duration;
pub use build::{build, build_signed};
pub(crate) use check::CheckEntry;
pub(crate) use datacenter::DatacenterSpec;
pub(crate) use name::GslbSpec;
pub(crate) use zone::{AliasSpec, ZoneSpec};

use crate::walk;

/// Reads and validates the zones directory into a model (what `check`, `serve` and every
/// reload run).
pub fn load(dir: &Path) -> Result<crate::model::Model, ConfigErrors> {
    load_signed(dir, &crate::dnssec::Env::system())
}

/// The DS records (presentation form, one per line, with the key's role and state as a
/// comment) of the secure-entry-point keys of `zone` as loaded from `dir`: what `gslbd ds`
/// prints for the parent zone.
pub fn ds_records(dir: &Path, zone: &hickory_proto::rr::Name) -> Result<Vec<String>, String> {
    let model = load(dir).map_err(|e| format!("invalid configuration:\n{e}"))?;
    let key = crate::rr::wire_key(zone);
    let z = model
        .zone_at_apex(&key)
        .ok_or_else(|| format!("{zone} is not a zone in {}", dir.display()))?;
    let s = z
        .dnssec
        .as_ref()
        .ok_or_else(|| format!("{zone} is not signed (no [dnssec] table)"))?;
    let origin = z.origin.to_ascii().to_ascii_lowercase();
    let mut out = Vec::new();
    for k in s.keys.iter().filter(|k| k.is_sep()) {
        let ds = k.ds_rdata(&s.apex)?;
        let whose = if k.is_ours() { "" } else { " (other signer)" };
        out.push(format!(
            "{origin} {} IN DS {} ; {} {}{whose}",
            s.params.dnskey_ttl,
            crate::dnssec::keys::ds_text(&ds),
            k.role.name(),
            k.state.name(),
        ));
    }
    Ok(out)
}

/// [`load`], signing signed zones at `env`'s clock, with its counters.
pub fn load_signed(
    dir: &Path,
    env: &crate::dnssec::Env,
) -> Result<crate::model::Model, ConfigErrors> {
    load_signed_with_specs(dir, env, || {}).map(|(model, _)| model)
}

/// [`load_signed`], calling `between` after the files are read and before the model is
/// built, and returning the specs the model was built from too (their zones' records moved
/// into the model: empty). A reload hands the memory reading took back to the system in
/// `between`, so its peak (the old model, the new one being built) does not also hold it
/// (issue 9); the start frees the specs beside the rest of its start (about 0.15 s for 100 k
/// GSLB names, which the model does not need).
pub(crate) fn load_signed_with_specs(
    dir: &Path,
    env: &crate::dnssec::Env,
    between: impl FnOnce(),
) -> Result<(crate::model::Model, Config), ConfigErrors> {
    let mut config = load_dir(dir)?;
    between();
    let model = build::build_signed_taking(&mut config, env)?;
    Ok((model, config))
}

/// One problem in the configuration, located as precisely as we can.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// Key path inside the file (`records.www.A[1]`); empty for file-level errors.
    pub(crate) path: String,
    /// What is wrong and what was expected.
    pub(crate) message: String,
}

/// One line per error, whatever the file held: values are cut and escaped where messages
/// quote them (`walk::shown`), and the key path and the message are cut and escaped here too,
/// as the last guard (a parser's own error text, a key path many levels deep).
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = walk::one_line(&self.message, walk::MESSAGE_CHARS);
        if self.path.is_empty() {
            write!(f, "{}: {message}", self.file.display())
        } else {
            let path = walk::one_line(&self.path, walk::MESSAGE_CHARS / 2);
            write!(f, "{}: {path}: {message}", self.file.display())
        }
    }
}

impl std::error::Error for ConfigError {}

/// All the errors of a load, in file order.
#[derive(Clone, Debug, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A file of the zones directory read and checked on its own: a zone (with `origin`), or
/// shared declarations only (datacenters and checks, no `origin`).
#[derive(Clone, Debug)]
pub struct FileSpec {
    /// The file.
    pub(crate) file: PathBuf,
    /// The zone, for a file with `origin`.
    pub(crate) zone: Option<ZoneSpec>,
    /// `datacenters.*`.
    pub(crate) datacenters: Vec<DatacenterSpec>,
    /// `checks.*`.
    pub(crate) checks: Vec<CheckEntry>,
    /// `gslb.*`.
    pub(crate) gslb: Vec<GslbSpec>,
}

/// Every zone file of a directory.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Every file, sorted by name.
    pub files: Vec<FileSpec>,
}

/// Top-level keys of a zone file.
const TOP_KEYS: &[&str] = &[
    "origin",
    "ttl",
    "soa",
    "records",
    "datacenters",
    "checks",
    "gslb",
    "dnssec",
];
/// Top-level keys of a shared declarations file (no `origin`).
const SHARED_KEYS: &[&str] = &["datacenters", "checks"];

/// The country tables used to validate geo codes in rules (built in, parsed once).
pub(crate) fn country_tables() -> &'static crate::geo::CountryTables {
    static T: std::sync::OnceLock<crate::geo::CountryTables> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        crate::geo::CountryTables::builtin().unwrap_or_else(|_| crate::geo::CountryTables::none())
    })
}

/// How long a zone file must have been left unchanged before it is read: a file changed more
/// recently may still be being written in several steps. The file watch waits as long after
/// the last event before it reloads (`server::watch`).
pub(crate) const SETTLE: Duration = Duration::from_millis(300);

/// How many times a file that keeps changing is looked at again before it is an error.
const READ_TRIES: u32 = 20;

/// Reads every `*.toml` file of `dir` (sorted by name, so errors come in a stable order).
///
/// Names starting with a dot are not zone files (editors' lock and swap files). Anything else
/// ending in `.toml` must be a regular file (or a symbolic link to one): a dangling link, a
/// directory, a FIFO or a device is an error with its path, never skipped, so `check` and a
/// reload never run with a zone fewer than the directory shows. A file is read only when it
/// is stable (see [`read_stable`]).
pub(crate) fn load_dir(dir: &Path) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            return Err(ConfigErrors(vec![ConfigError {
                file: dir.to_path_buf(),
                path: String::new(),
                message: format!("cannot read the zones directory: {e}"),
            }]));
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_zone_file_name(p))
        .collect();
    paths.sort();
    let mut config = Config::default();
    for path in paths {
        match read_stable(&path, SETTLE) {
            Ok(text) => match parse_file(&path, &text) {
                Ok(f) => config.files.push(f),
                Err(mut e) => errors.append(&mut e.0),
            },
            Err(message) => errors.push(ConfigError {
                file: path,
                path: String::new(),
                message,
            }),
        }
    }
    if config.files.is_empty() && errors.is_empty() {
        errors.push(ConfigError {
            file: dir.to_path_buf(),
            path: String::new(),
            message: "no zone files (*.toml) found".into(),
        });
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// A zone file's name: ends in `.toml`, does not start with a dot.
fn is_zone_file_name(p: &Path) -> bool {
    p.extension().is_some_and(|x| x == "toml")
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'))
}

/// What tells two versions of a file apart: which file, its size and its times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// How long ago the file last changed (contents or inode: a rename into place counts),
    /// or `None` when its time is ahead of the clock.
    fn age(&self, now: SystemTime) -> Option<Duration> {
        let at = |(s, ns): (i64, i64)| {
            let secs =
                Duration::from_secs(s.unsigned_abs()) + Duration::from_nanos(ns.unsigned_abs());
            if s >= 0 {
                UNIX_EPOCH.checked_add(secs)
            } else {
                UNIX_EPOCH.checked_sub(secs)
            }
        };
        let changed = at(self.mtime).max(at(self.ctime))?;
        now.duration_since(changed).ok()
    }
}

/// Reads the zone file at `path` once it is stable: unchanged for `settle` before the read
/// and from the start of the read to its end (the open file and the path both: a rename over
/// it during the read is seen). A file that keeps changing is looked at again, up to
/// [`READ_TRIES`] times, then is an error that names the supported way to update (a write to
/// a temporary name and a rename into place, which is always seen whole).
///
/// The file is opened without blocking and checked to be a regular file before a byte is
/// read, so a FIFO (or a device, a socket, a directory) is an error, never a hang.
pub(crate) fn read_stable(path: &Path, settle: Duration) -> Result<String, String> {
    for _ in 0..READ_TRIES {
        let mut f = open_regular(path)?;
        let meta = |f: &std::fs::File| f.metadata().map(|m| Stamp::of(&m));
        let before = meta(&f).map_err(|e| format!("cannot read: {e}"))?;
        if let Some(age) = before.age(SystemTime::now())
            && age < settle
        {
            // Changed moments ago: look again once it has been left alone for `settle`.
            #[allow(
                clippy::disallowed_methods,
                reason = "zone loading runs off the runtime (spawn_blocking, or the CLI)"
            )]
            std::thread::sleep(settle - age);
            continue;
        }
        let mut text = String::with_capacity(usize::try_from(before.len).unwrap_or(0));
        if let Err(e) = f.read_to_string(&mut text) {
            return Err(format!("cannot read: {e}"));
        }
        let after = meta(&f).map_err(|e| format!("cannot read: {e}"))?;
        let now_at_path = std::fs::metadata(path).map(|m| Stamp::of(&m)).ok();
        if before == after && now_at_path == Some(before) {
            return Ok(text);
        }
    }
    Err(format!(
        "kept changing while it was read ({READ_TRIES} tries): write zone files under a temporary name and rename them into place"
    ))
}

/// Opens `path` for reading without blocking, and only if it is a regular file.
fn open_regular(path: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        // A FIFO opens at once instead of waiting for a writer; regular files read the same.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let f = match f {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(match std::fs::read_link(path) {
                Ok(target) => format!(
                    "is a symbolic link to {}, which does not exist",
                    walk::shown(&target.to_string_lossy())
                ),
                Err(_) => "disappeared while the directory was read".into(),
            });
        }
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let kind = f
        .metadata()
        .map_err(|e| format!("cannot read: {e}"))?
        .file_type();
    if kind.is_file() {
        return Ok(f);
    }
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "a special file"
    };
    Err(format!(
        "is {what}, not a regular file: a zone file must be a file (or a symbolic link to one)"
    ))
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut at = offset.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Parses one zone file's text; `path` is only used in messages.
///
/// A file with `records.*` or `gslb.*` sections is parsed in parts (`split.rs`): the same
/// reading with a fraction of the memory. Whenever that is in doubt, and for every error the
/// TOML parser reports, the file is parsed whole.
pub fn parse_file(path: &Path, text: &str) -> Result<FileSpec, ConfigErrors> {
    if let Some(parts) = split::split(text)
        && (!parts.records.is_empty() || !parts.gslb.is_empty())
        && let Ok(head) = walk::parse(&parts.head)
        && head.contains_key("origin")
        && !head.contains_key("records")
        && !head.contains_key("gslb")
        && let Some(result) = walk_file(path, &head, &parts)
    {
        return result;
    }
    let table = match walk::parse(text) {
        Ok(t) => t,
        Err(e) => {
            // The parser's message without its excerpt of the file (which quotes the whole
            // line, however long): where, and what is wrong.
            let at = e.span().map_or_else(String::new, |s| {
                let (line, col) = line_col(text, s.start);
                format!("line {line}, column {col}: ")
            });
            let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            return Err(ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                path: String::new(),
                message: format!("not valid TOML: {at}{msg}"),
            }]));
        }
    };
    walk_file(path, &table, &split::Split::default())
        .unwrap_or_else(|| Err(ConfigErrors::default()))
}

/// Reads the parsed file `table` (and the `records` and `gslb` sections of `parts`, parsed
/// one part at a time) into specs; `None` when a part does not parse (the caller then
/// parses the file whole, for the parser's own message).
fn walk_file(
    path: &Path,
    table: &walk::DeTable<'_>,
    parts: &split::Split<'_>,
) -> Option<Result<FileSpec, ConfigErrors>> {
    let located = |p: String, message: String| ConfigError {
        file: path.to_path_buf(),
        path: p,
        message,
    };
    let mut errs = walk::Errors::default();
    let mut top = walk::Table::new(table, "");
    let shared = !table.contains_key("origin");
    let mut failed = false;
    let mut zone = if shared {
        None
    } else {
        zone::read_zone(
            &mut top,
            &mut errs,
            &mut |origin, ttl, records, aliases, errs| {
                let total = parts.records.iter().map(|p| p.len()).sum();
                for (i, part) in parts.records.iter().enumerate() {
                    let Ok(t) = walk::parse(part) else {
                        failed = true;
                        return;
                    };
                    if let Some(r) = walk::Table::new(&t, "").table("records", errs) {
                        zone::read_records(r, origin, ttl, records, aliases, errs);
                    }
                    if i == 0 {
                        records.reserve_like(part.len(), total);
                    }
                }
            },
        )
    };
    if failed {
        return None;
    }
    if !shared && let Some(t) = top.table("dnssec", &mut errs) {
        let ttl = zone.as_ref().map_or(zone::DEFAULT_TTL, |z| z.soa.ttl);
        let spec = dnssec::read_dnssec(t, path, ttl, &mut errs);
        if let Some(z) = zone.as_mut() {
            z.dnssec = spec;
        }
    }
    let datacenters = top
        .table("datacenters", &mut errs)
        .map(|t| datacenter::read_datacenters(t, &mut errs))
        .unwrap_or_default();
    let checks = top
        .table("checks", &mut errs)
        .map(|t| check::read_checks(t, &mut errs))
        .unwrap_or_default();
    let origin = zone
        .as_ref()
        .map_or_else(hickory_proto::rr::Name::root, |z| z.origin.clone());
    let gslb = if shared {
        Vec::new()
    } else {
        let mut gslb = top
            .table("gslb", &mut errs)
            .map(|t| name::read_gslb(t, &origin, country_tables(), &mut errs))
            .unwrap_or_default();
        let read = split::each_part(&parts.gslb, |part| {
            let t = walk::parse(part).ok()?;
            let mut errs = walk::Errors::default();
            let specs = walk::Table::new(&t, "")
                .table("gslb", &mut errs)
                .map(|g| name::read_gslb(g, &origin, country_tables(), &mut errs))
                .unwrap_or_default();
            Some((specs, errs))
        });
        for part in read {
            let (specs, mut part_errs) = part?;
            gslb.extend(specs);
            errs.list.append(&mut part_errs.list);
        }
        gslb
    };
    if shared {
        if table.is_empty() {
            errs.add("", "is empty (a zone file needs `origin`; a shared file declares datacenters or checks)");
        }
        for k in ["ttl", "soa", "records", "gslb", "dnssec"] {
            if table.contains_key(k) {
                errs.add(k, "belongs to a zone: this file has no `origin` (a file without origin holds only datacenters and checks)");
                let _ = top.get(k);
            }
        }
        top.finish(SHARED_KEYS, &mut errs);
    } else {
        top.finish(TOP_KEYS, &mut errs);
    }
    if errs.list.is_empty() && (shared || zone.is_some()) {
        return Some(Ok(FileSpec {
            file: path.to_path_buf(),
            zone,
            datacenters,
            checks,
            gslb,
        }));
    }
    Some(Err(ConfigErrors(
        errs.list
            .into_iter()
            .map(|e| located(e.path, e.message))
            .collect(),
    )))
}
