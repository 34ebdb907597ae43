//! The one build step: validated file specs meet the model. Zones are built and pre-encoded,
//! datacenters, checks and GSLB names are linked to ids, and the probe plan is built and
//! checked, all in one pass that reports every error with its file and key path. `gslbd check`
//! and `serve` (start and reload) call the same function, so whatever `check` accepts, `serve`
//! runs.
//!
//! ```text
//! Config (every file's specs) --zone::build_zone--> Zone (pre-encoded RRsets)
//!                             --link::datacenters--> Datacenters --link::plan--> ProbeSet
//!                             --link::gslb_name/place--> GslbEntry in its zone
//!                             --dnssec::sign ([dnssec])--> keys, RRSIGs, NSECs in the zone
//!                             ==> Model, or ConfigErrors (all of them)
//! ```

mod dnssec;
mod link;
mod zone;

use std::time::SystemTime;

use rustc_hash::FxHashMap;

use super::{Config, ConfigError, ConfigErrors};
use crate::model::{GslbEntry, Model, Zone};

/// Validates `config` as a whole and builds the model, or returns every error. Signed zones
/// are signed with the system clock.
pub fn build(config: &Config) -> Result<Model, ConfigErrors> {
    build_signed(config, &crate::dnssec::Env::system())
}

/// [`build`], signing signed zones at `env`'s clock, with its counters.
pub fn build_signed(config: &Config, env: &crate::dnssec::Env) -> Result<Model, ConfigErrors> {
    let mut errs: Vec<ConfigError> = Vec::new();
    let mut zones = Vec::new();
    let mut zone_by_apex = FxHashMap::default();
    let tables = super::country_tables();
    let mut datacenters = link::datacenters(config, tables, &mut errs);
    let mut gslb: Vec<GslbEntry> = Vec::new();
    for f in &config.files {
        let Some(spec) = &f.zone else { continue };
        let Some(mut z) = zone::build_zone(f, spec, &mut errs) else {
            continue;
        };
        for g in &f.gslb {
            if let Some(def) = link::gslb_name(g, &datacenters, &f.file, &mut errs) {
                let id = gslb.len() as u32;
                link::place(&mut z, &g.owner, id, &f.file, &g.path, &mut errs);
                gslb.push(GslbEntry {
                    owner: g.owner.clone(),
                    zone: zones.len() as u32,
                    needs_location: def.needs_location(),
                    def,
                    ecs: g.ecs,
                });
            }
        }
        if let Some(d) = &spec.dnssec {
            dnssec::sign(&mut z, d, f, env, &mut errs);
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
    if config.files.iter().all(|f| f.zone.is_none())
        && let Some(f) = config.files.first()
    {
        errs.push(ConfigError {
            file: f.file.clone(),
            path: String::new(),
            message: "no zone: at least one file needs `origin`".into(),
        });
    }
    // The plan carries each datacenter's longest answer TTL (drain completion), so it is
    // built once every name is linked.
    link::max_ttls(&mut datacenters, &gslb);
    link::plan(config, &mut datacenters, &mut errs);
    if !errs.is_empty() {
        return Err(ConfigErrors(errs));
    }
    Ok(Model::new(
        zones,
        datacenters,
        gslb,
        zone_by_apex,
        SystemTime::now(),
    ))
}
