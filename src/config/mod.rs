//! Reading the zones directory into specs, with every error named by file and key path, and
//! the one build step where the specs meet the model ([`build()`]).
//!
//! ```text
//! zones/*.toml --toml--> toml::Table --walk--> FileSpec (zone, datacenters, checks, gslb)
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
pub(crate) mod zone;

use std::fmt;
use std::path::{Path, PathBuf};

/// Durations as zone files write them (`"500ms"`, `"5s"`, `"2m"`, `"1h"`), for flags too.
pub use crate::walk::parse_duration;
pub use build::{build, build_signed};
pub(crate) use check::CheckEntry;
pub(crate) use datacenter::DatacenterSpec;
pub(crate) use name::GslbSpec;
pub(crate) use zone::{AliasSpec, RecordSpec, ZoneSpec};

use crate::walk;

/// Reads and validates the zones directory into a model (what `check`, `serve` and every
/// reload run).
pub fn load(dir: &Path) -> Result<crate::model::Model, ConfigErrors> {
    build(&load_dir(dir)?)
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
    build_signed(&load_dir(dir)?, env)
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

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.path,
                self.message
            )
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

/// Reads every `*.toml` file of `dir` (sorted by name, so errors come in a stable order).
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
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    paths.sort();
    let mut config = Config::default();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse_file(&path, &text) {
                Ok(f) => config.files.push(f),
                Err(mut e) => errors.append(&mut e.0),
            },
            Err(e) => errors.push(ConfigError {
                file: path,
                path: String::new(),
                message: format!("cannot read: {e}"),
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

/// Parses one zone file's text; `path` is only used in messages.
pub fn parse_file(path: &Path, text: &str) -> Result<FileSpec, ConfigErrors> {
    let located = |p: String, message: String| ConfigError {
        file: path.to_path_buf(),
        path: p,
        message,
    };
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let msg = e
                .to_string()
                .replace('\n', " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            return Err(ConfigErrors(vec![located(
                String::new(),
                format!("not valid TOML: {msg}"),
            )]));
        }
    };
    let mut errs = walk::Errors::default();
    let mut top = walk::Table::new(&table, "");
    let shared = !table.contains_key("origin");
    let mut zone = if shared {
        None
    } else {
        zone::read_zone(&mut top, &mut errs)
    };
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
        top.table("gslb", &mut errs)
            .map(|t| name::read_gslb(t, &origin, country_tables(), &mut errs))
            .unwrap_or_default()
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
        return Ok(FileSpec {
            file: path.to_path_buf(),
            zone,
            datacenters,
            checks,
            gslb,
        });
    }
    Err(ConfigErrors(
        errs.list
            .into_iter()
            .map(|e| located(e.path, e.message))
            .collect(),
    ))
}
