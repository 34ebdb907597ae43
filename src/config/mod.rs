//! Reading the zones directory into specs, with every error named by file and key path.
//!
//! ```text
//! zones/*.toml --toml--> toml::Table --walk--> ZoneSpec (values parsed) --model::build--> Model
//! ```
//! Nothing here touches the query path: a reload reads and validates a whole new set of specs,
//! and only a clean set is turned into a model and swapped in.

pub mod walk;
pub mod zone;

use std::fmt;
use std::path::{Path, PathBuf};

pub use zone::{RecordSpec, SoaSpec, ZoneSpec};

/// One problem in the configuration, located as precisely as we can.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Key path inside the file (`records.www.A[1]`); empty for file-level errors.
    pub path: String,
    pub message: String,
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

/// A zone file read and checked on its own.
#[derive(Clone, Debug)]
pub struct FileSpec {
    pub file: PathBuf,
    pub zone: ZoneSpec,
}

/// Every zone file of a directory.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub files: Vec<FileSpec>,
}

/// Top-level keys of a zone file.
const TOP_KEYS: &[&str] = &["origin", "ttl", "soa", "records"];

/// Reads every `*.toml` file of `dir` (sorted by name, so errors come in a stable order).
pub fn load_dir(dir: &Path) -> Result<Config, ConfigErrors> {
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
    let zone = zone::read_zone(&mut top, &mut errs);
    top.finish(TOP_KEYS, &mut errs);
    if errs.list.is_empty()
        && let Some(zone) = zone
    {
        return Ok(FileSpec {
            file: path.to_path_buf(),
            zone,
        });
    }
    Err(ConfigErrors(
        errs.list
            .into_iter()
            .map(|e| located(e.path, e.message))
            .collect(),
    ))
}
