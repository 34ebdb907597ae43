//! The one build step: validated file specs meet the model. Zones are built and pre-encoded,
//! datacenters, checks and GSLB names are linked to ids, and the probe plan is built and
//! checked, all in one pass that reports every error with its file and key path. `gslbd check`
//! and `serve` (start and reload) call the same function, so whatever `check` accepts, `serve`
//! runs.
//!
//! ```text
//! Config (every file's specs) --zone::build_zone--> Zone (pre-encoded RRsets)
//!                             --link::place_alias--> ALIAS nodes (targets in Hosts)
//!                             --link::datacenters--> Datacenters (targets in Hosts)
//!                             --link::gslb_name/place--> GslbEntry in its zone
//!                             --hostname::Hosts::resolve--> each target: local | remote
//!                             --link::hostname_probes, link::plan--> ProbeSet
//!                             --dnssec::sign ([dnssec])--> keys, RRSIGs, NSECs in the zone
//!                             ==> Model, or ConfigErrors (all of them)
//! ```

mod dnssec;
mod hostname;
mod link;
mod zone;

use std::time::SystemTime;

use rustc_hash::FxHashMap;

use super::{Config, ConfigError, ConfigErrors};
use crate::model::{GslbEntry, Model, Zone};
use crate::rr::wire_key;

/// Validates `config` as a whole and builds the model, or returns every error. Signed zones
/// are signed with the system clock.
pub fn build(config: &Config) -> Result<Model, ConfigErrors> {
    build_signed(config, &crate::dnssec::Env::system())
}

/// [`build`], signing signed zones at `env`'s clock, with its counters. The zones' records
/// are copied into the model (`config` stays whole; loading from a directory moves them).
pub fn build_signed(config: &Config, env: &crate::dnssec::Env) -> Result<Model, ConfigErrors> {
    let records = config
        .files
        .iter()
        .map(|f| {
            f.zone
                .as_ref()
                .map(|z| z.records.clone())
                .unwrap_or_default()
        })
        .collect();
    build_from(config, records, env)
}

/// [`build_signed`] that moves the records of `config`'s zones into the model instead of
/// copying them (they are left empty): a reload of a big zone then holds its records once
/// beside the old model, not twice.
pub(crate) fn build_signed_taking(
    config: &mut Config,
    env: &crate::dnssec::Env,
) -> Result<Model, ConfigErrors> {
    let records = config
        .files
        .iter_mut()
        .map(|f| {
            f.zone
                .as_mut()
                .map(|z| std::mem::take(&mut z.records))
                .unwrap_or_default()
        })
        .collect();
    build_from(config, records, env)
}

/// The build, with each file's records (in `config.files` order) given apart.
fn build_from(
    config: &Config,
    records: Vec<super::zone::RecordTable>,
    env: &crate::dnssec::Env,
) -> Result<Model, ConfigErrors> {
    let mut errs: Vec<ConfigError> = Vec::new();
    let mut zones = Vec::new();
    let mut zone_by_apex = FxHashMap::default();
    let tables = super::country_tables();
    let mut hosts = hostname::Hosts::default();
    let mut datacenters = link::datacenters(config, tables, &mut hosts, &mut errs);
    let mut gslb: Vec<GslbEntry> = Vec::new();
    for (f, records) in config.files.iter().zip(records) {
        let Some(spec) = &f.zone else { continue };
        let Some(mut z) = zone::build_zone(f, spec, records, &mut errs) else {
            continue;
        };
        for a in &spec.aliases {
            link::place_alias(&mut z, a, &mut hosts, &f.file, &mut errs);
        }
        for g in &f.gslb {
            let at_apex = g.owner.eq_case(&spec.origin) || wire_key(&g.owner) == z.apex;
            if let Some(def) = link::gslb_name(g, &datacenters, at_apex, &f.file, &mut errs) {
                let id = gslb.len() as u32;
                let members = def.pools.iter().flat_map(|p| p.members.iter());
                let host_dcs: Vec<u32> = members
                    .filter(|m| {
                        datacenters
                            .list
                            .get(m.dc.0 as usize)
                            .is_some_and(|d| d.target.is_some())
                    })
                    .map(|m| m.dc.0)
                    .collect();
                let cname = !def.flatten && !host_dcs.is_empty();
                if def.flatten {
                    for &dc in &host_dcs {
                        hosts.flatten_dc(dc);
                    }
                }
                link::place(&mut z, &g.owner, id, cname, &f.file, &g.path, &mut errs);
                gslb.push(GslbEntry {
                    owner: g.owner.clone(),
                    zone: zones.len() as u32,
                    needs_location: def.needs_location(),
                    def,
                    ecs: g.ecs,
                    cname,
                    has_hostnames: !host_dcs.is_empty(),
                });
            }
        }
        if let Some(d) = &spec.dnssec {
            dnssec::sign(&mut z, d, f, env, &mut errs);
        }
        // Names placed after the build grew the table: give back what it reserved beyond.
        z.nodes.shrink_to_fit();
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
    // Targets inside our zones are answered from them; the rest is left to the resolver.
    hosts.resolve(&zones, &zone_by_apex, &mut errs);
    hosts.cname_loops(&gslb, &datacenters, &mut errs);
    link::hostname_probes(config, &mut datacenters, &hosts, &mut errs);
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
        hosts.list,
        zone_by_apex,
        SystemTime::now(),
    ))
}
