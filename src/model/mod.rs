//! The validated, immutable configuration the query path reads: zones and GSLB names with
//! every name resolved to an integer id or a pre-encoded wire form.
//!
//! A `Model` is built from a `config::Config` in one go and swapped in whole (arc-swap); the
//! query path never sees a half-built one.

pub mod gslb;
pub mod resolve;
pub mod zone;

use std::time::SystemTime;

use rustc_hash::FxHashMap;

use crate::config::{Config, ConfigError, ConfigErrors};
pub use resolve::{Datacenters, GslbEntry};
pub use zone::{Node, RRset, Zone};

/// Everything the server answers from.
#[derive(Debug)]
pub struct Model {
    pub zones: Vec<Zone>,
    /// Every datacenter, indexed by `DatacenterId` (the same index as `Snapshot::dcs`).
    pub datacenters: Datacenters,
    /// Every GSLB name, indexed by `Node::gslb`.
    pub gslb: Vec<GslbEntry>,
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
        let tables = crate::geo::CountryTables::builtin()
            .unwrap_or_else(|_| crate::geo::CountryTables::none());
        let mut datacenters = resolve::datacenters(config, &tables, &mut errs);
        let mut gslb: Vec<GslbEntry> = Vec::new();
        for f in &config.files {
            let Some(spec) = &f.zone else { continue };
            if let Some(mut z) = zone::build_zone(f, spec, &mut errs) {
                for g in &f.gslb {
                    if let Some(def) = resolve::gslb_name(g, &datacenters, &f.file, &mut errs) {
                        let id = gslb.len() as u32;
                        resolve::place(&mut z, &g.owner, id, &f.file, &g.path, &mut errs);
                        gslb.push(GslbEntry {
                            owner: g.owner.clone(),
                            zone: zones.len() as u32,
                            needs_location: resolve::needs_location(&def),
                            def,
                            ecs: g.ecs,
                            path: g.path.clone(),
                            file: f.file.clone(),
                        });
                    }
                }
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
        if config.files.iter().all(|f| f.zone.is_none())
            && let Some(f) = config.files.first()
        {
            errs.push(ConfigError {
                file: f.file.clone(),
                path: String::new(),
                message: "no zone: at least one file needs `origin`".into(),
            });
        }
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        resolve::max_ttls(&mut datacenters, &gslb);
        Ok(Model {
            zones,
            datacenters,
            gslb,
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
