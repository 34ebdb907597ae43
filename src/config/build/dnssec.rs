//! Signing a built zone: its keys are read, DNSKEY (and CDS/CDNSKEY) are added at the apex,
//! every authoritative RRset and every name's NSEC is registered with the zone's
//! [`ZoneSigner`] and signed now, and the signer is attached to the zone.
//!
//! ```text
//! [dnssec] spec --load_zone_key--> keys --checks (active KSK/CSK and ZSK/CSK, refresh > TTLs)
//! Zone --apex key RRsets, RRset.sig / Node.nsec indexes--> ZoneSigner --resign(now)--> Zone.dnssec
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::config::dnssec::DnssecSpec;
use crate::config::{ConfigError, FileSpec};
use crate::dnssec::keys::load_zone_key;
use crate::dnssec::sign::{TYPE_CDNSKEY, TYPE_CDS, TYPE_DNSKEY};
use crate::dnssec::{Env, Params, ZoneKey, ZoneSigner};
use crate::model::{RRset, Zone};
use crate::rr::{TYPE_DS, is_below};

/// Loads a signed zone's keys and signs it; errors name the file and key path.
pub(crate) fn sign(
    z: &mut Zone,
    spec: &DnssecSpec,
    f: &FileSpec,
    env: &Env,
    errs: &mut Vec<ConfigError>,
) {
    let err = |errs: &mut Vec<ConfigError>, path: &str, message: String| {
        errs.push(ConfigError {
            file: f.file.clone(),
            path: path.to_string(),
            message,
        })
    };
    let mut keys: Vec<ZoneKey> = Vec::new();
    for k in &spec.keys {
        match load_zone_key(&k.file, k.algorithm, k.role, k.state) {
            Ok(key) if keys.iter().any(|o| o.dnskey == key.dnskey) => {
                err(
                    errs,
                    &k.path,
                    format!("{} is listed twice", k.file.display()),
                );
            }
            Ok(key) => keys.push(key),
            Err(e) => err(errs, &format!("{}.file", k.path), e),
        }
    }
    for (path, rdata) in &spec.other_dnskeys {
        if keys.iter().any(|o| o.dnskey == *rdata) {
            err(errs, path, "is one of this zone's own keys".into());
        } else {
            keys.push(ZoneKey::foreign(rdata.clone()));
        }
    }
    if keys.len() < spec.keys.len() + spec.other_dnskeys.len() {
        return;
    }
    if let Err(e) = sign_zone(z, keys, spec.params.clone(), env) {
        err(errs, "dnssec", e);
    }
}

/// Adds the apex key RRsets, registers every authoritative RRset and every node's NSEC,
/// signs them at `env`'s now, and attaches the signer.
fn sign_zone(zone: &mut Zone, keys: Vec<ZoneKey>, params: Params, env: &Env) -> Result<(), String> {
    let apex = zone.apex.clone();
    let mut signer = ZoneSigner::new(zone.origin.to_string(), apex.clone(), keys, params);
    signer.clock = env.clock.clone();
    if !signer.keys.iter().any(|k| k.signs() && k.role.signs_keys()) {
        return Err("no active key signs the DNSKEY RRset (needs an active csk or ksk)".into());
    }
    if !signer.keys.iter().any(|k| k.signs() && k.role.signs_zone()) {
        return Err("no active key signs the zone (needs an active csk or zsk)".into());
    }
    let max_ttl = zone
        .nodes
        .values()
        .flat_map(|n| n.rrsets.iter().map(|r| r.ttl))
        .chain([signer.params.dnskey_ttl, zone.soa.ttl])
        .max()
        .unwrap_or(0);
    if signer.params.refresh.as_secs() <= u64::from(max_ttl) {
        return Err(format!(
            "refresh ({}s) must exceed the largest TTL of the zone ({max_ttl}s): a resolver may keep an answer that long",
            signer.params.refresh.as_secs()
        ));
    }
    if signer.params.refresh >= signer.params.validity {
        return Err(format!(
            "refresh ({}s) must be shorter than validity ({}s)",
            signer.params.refresh.as_secs(),
            signer.params.validity.as_secs()
        ));
    }

    // Keys at the apex: every key of the file (and the other signers'); CDS/CDNSKEY the
    // secure entry points, whatever their state (the DS set the parent should hold).
    let ttl = signer.params.dnskey_ttl;
    let dnskeys: Vec<Vec<u8>> = signer.keys.iter().map(|k| k.dnskey.clone()).collect();
    let mut apex_sets = vec![RRset::encode(TYPE_DNSKEY, ttl, &dnskeys)];
    if signer.params.cds {
        let sep: Vec<Vec<u8>> = signer
            .keys
            .iter()
            .filter(|k| k.is_sep())
            .map(|k| k.dnskey.clone())
            .collect();
        apex_sets.push(RRset::encode(TYPE_CDNSKEY, ttl, &sep));
        apex_sets.push(RRset::encode(TYPE_CDS, ttl, &signer.ds_rdatas()?));
    }
    let apex_node = zone.nodes.entry(apex.clone()).or_default();
    for set in apex_sets {
        zone.record_count += set.count as usize;
        apex_node.rrsets.retain(|r| r.rtype != set.rtype);
        apex_node.rrsets.push(set);
    }

    let cuts: Vec<Box<[u8]>> = zone
        .nodes
        .iter()
        .filter(|(_, n)| n.cut)
        .map(|(k, _)| k.clone())
        .collect();
    let negative_ttl = zone.soa_negative.ttl;
    for (key, node) in zone.nodes.iter_mut() {
        if cuts.iter().any(|c| is_below(key, c)) {
            continue; // glue: not authoritative, neither signed nor denied
        }
        for rr in node.rrsets.iter_mut() {
            if node.cut && rr.rtype != TYPE_DS {
                continue; // the NS of a delegation belongs to the child
            }
            rr.sig = signer.add_static(key, rr.rtype, rr.ttl, &rr.wire);
        }
        let types = node.nsec_types();
        node.nsec = signer.add_nsec(key, &types, negative_ttl);
    }
    for rr in [&mut zone.soa, &mut zone.soa_negative] {
        rr.sig = signer.add_static(&apex, rr.rtype, rr.ttl, &rr.wire);
    }
    signer.resign(env.clock.now())?;
    // The first signing is part of the load, not a re-signing run; from here on the counters
    // are the zone's, kept across reloads.
    let first = signer.stats.signatures.load(Relaxed);
    signer.stats = env.counters.zone(&signer.origin);
    signer.stats.signatures.fetch_add(first, Relaxed);
    zone.dnssec = Some(Arc::new(signer));
    Ok(())
}
