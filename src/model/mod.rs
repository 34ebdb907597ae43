//! The validated, immutable configuration the query path reads: zones and GSLB names with
//! every name resolved to an integer id or a pre-encoded wire form.
//!
//! A `Model` is built from a `config::Config` in one go and swapped in whole (arc-swap); the
//! query path never sees a half-built one.

pub mod gslb;
pub mod zone;

use std::time::SystemTime;

use rustc_hash::FxHashMap;

use crate::config::{Config, ConfigError, ConfigErrors};
pub use zone::{Node, RRset, Zone};

/// Everything the server answers from.
#[derive(Debug)]
pub struct Model {
    pub zones: Vec<Zone>,
    zone_by_apex: FxHashMap<Box<[u8]>, u32>,
    /// Deepest zone apex in labels, so zone lookup can skip longer suffixes.
    pub loaded_at: SystemTime,
}

impl Model {
    /// Validates `config` as a whole and builds the model, or returns every error.
    pub fn build(config: &Config) -> Result<Model, ConfigErrors> {
        let mut errs: Vec<ConfigError> = Vec::new();
        let mut zones = Vec::new();
        let mut zone_by_apex = FxHashMap::default();
        for f in &config.files {
            if let Some(z) = zone::build_zone(f, &mut errs) {
                if let Some(&prev) = zone_by_apex.get(&z.apex) {
                    let prev: &Zone = &zones[prev as usize];
                    errs.push(ConfigError {
                        file: f.file.clone(),
                        path: "origin".into(),
                        message: format!(
                            "zone {} is already served from {}",
                            z.origin,
                            prev.file.display()
                        ),
                    });
                    continue;
                }
                zone_by_apex.insert(z.apex.clone(), zones.len() as u32);
                zones.push(z);
            }
        }
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        Ok(Model {
            zones,
            zone_by_apex,
            loaded_at: SystemTime::now(),
        })
    }

    /// The zone whose apex is exactly `key` (lower-cased wire form).
    #[inline]
    pub fn zone_at(&self, key: &[u8]) -> Option<u32> {
        self.zone_by_apex.get(key).copied()
    }
}
