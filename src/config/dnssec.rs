//! Reading a zone's `[dnssec]` table: key files with their roles and states, the algorithm,
//! other signers' DNSKEYs (RFC 8901 multi-signer) and the signature timing.
//!
//! ```toml
//! [dnssec]
//! algorithm = "ECDSAP256SHA256"      # or "ED25519"
//! validity = "14d"                   # signature lifetime
//! refresh = "7d"                     # re-sign when less than this remains
//! keys = [{ file = "keys/Kexample.com.+013+12345.private", role = "csk", state = "active" }]
//! other_dnskeys = ["256 3 13 base64..."]
//! ```
//! Key files are read when the model is built (`dnssec::keys`), relative to the zone file's
//! directory; here only their names and settings are checked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dnssec::keys::{KeyAlgorithm, KeyState, Role, parse_dnskey};
use crate::dnssec::signer::Params;
use crate::walk::{self, DeValue, Errors, Table, index, type_name};

/// One of our keys as the zone file names it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct KeySpec {
    /// Resolved against the zone file's directory.
    pub(crate) file: PathBuf,
    /// What it signs.
    pub(crate) role: Role,
    /// Where it is in its life.
    pub(crate) state: KeyState,
    /// Its algorithm.
    pub(crate) algorithm: KeyAlgorithm,
    /// Key path in the zone file (`dnssec.keys[0]`).
    pub(crate) path: String,
}

/// A zone's `[dnssec]` table.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DnssecSpec {
    /// Our keys.
    pub(crate) keys: Vec<KeySpec>,
    /// DNSKEY RDATA of the other signers, with their key paths.
    pub(crate) other_dnskeys: Vec<(String, Vec<u8>)>,
    /// Signature timing and sizes.
    pub(crate) params: Params,
}

const KEYS: &[&str] = &[
    "algorithm",
    "keys",
    "other_dnskeys",
    "validity",
    "refresh",
    "inception_offset",
    "dnskey_ttl",
    "cds",
    "cache_entries",
    "max_online_signatures",
];

/// Reads `[dnssec]`; `file` is the zone file (key paths are relative to its directory).
pub(crate) fn read_dnssec(
    mut t: Table<'_>,
    file: &Path,
    zone_ttl: u32,
    errs: &mut Errors,
) -> Option<DnssecSpec> {
    let start = errs.list.len();
    let base = file.parent().unwrap_or_else(|| Path::new("."));
    let algorithm = match t.str("algorithm", errs) {
        Some(s) => KeyAlgorithm::parse(s).unwrap_or_else(|| {
            errs.add(
                &t.key_path("algorithm"),
                format!(
                    "{s:?} is not a supported algorithm (expected one of: {})",
                    KeyAlgorithm::NAMES
                ),
            );
            KeyAlgorithm::EcdsaP256Sha256
        }),
        None => KeyAlgorithm::EcdsaP256Sha256,
    };
    let defaults = Params {
        dnskey_ttl: zone_ttl,
        ..Params::default()
    };
    let validity = t.duration("validity", errs).unwrap_or(defaults.validity);
    let refresh = t
        .duration("refresh", errs)
        .unwrap_or(if validity == defaults.validity {
            defaults.refresh
        } else {
            validity / 2
        });
    let inception_offset = t
        .duration("inception_offset", errs)
        .unwrap_or(defaults.inception_offset);
    let dnskey_ttl = t.u32("dnskey_ttl", errs).unwrap_or(defaults.dnskey_ttl);
    let cds = t.bool("cds", errs).unwrap_or(true);
    let cache_entries = t
        .int("cache_entries", 16, 1 << 24, errs)
        .map_or(defaults.cache_entries, |n| n as usize);
    let max_online_signatures = t
        .int("max_online_signatures", 1, 10_000_000, errs)
        .map_or(defaults.max_online_signatures, |n| n as u32);
    for (k, d) in [("validity", validity), ("refresh", refresh)] {
        if d < Duration::from_secs(2) {
            errs.add(&t.key_path(k), "must be at least 2s");
        }
    }
    if refresh >= validity {
        errs.add(
            &t.key_path("refresh"),
            format!(
                "must be shorter than validity ({}s): signatures are replaced when less than `refresh` of their validity remains",
                validity.as_secs()
            ),
        );
    }

    let mut keys = Vec::new();
    let keys_path = t.key_path("keys");
    match t.get("keys") {
        Some(DeValue::Array(a)) if !a.is_empty() => {
            for (i, v) in walk::items(a).enumerate() {
                let p = index(&keys_path, i);
                if let Some(k) = read_key(v, p, base, algorithm, errs) {
                    keys.push(k);
                }
            }
        }
        Some(DeValue::Array(_)) | None => errs.add(
            &keys_path,
            "is required: at least one key (make one with `gslbd keygen ZONE`)",
        ),
        Some(other) => errs.add(
            &keys_path,
            format!("expected a list of key tables, found {}", type_name(other)),
        ),
    }
    let mut other_dnskeys = Vec::new();
    if let Some(list) = t.str_list("other_dnskeys", errs) {
        for (p, s) in list {
            match parse_dnskey(s) {
                Ok(k) => other_dnskeys.push((p, k)),
                Err(e) => errs.add(&p, e),
            }
        }
    }
    t.finish(KEYS, errs);
    if errs.list.len() > start {
        return None;
    }
    Some(DnssecSpec {
        keys,
        other_dnskeys,
        params: Params {
            validity,
            refresh,
            inception_offset,
            dnskey_ttl,
            cds,
            cache_entries,
            max_online_signatures,
        },
    })
}

fn read_key<'a>(
    v: &'a DeValue<'a>,
    path: String,
    base: &Path,
    zone_alg: KeyAlgorithm,
    errs: &mut Errors,
) -> Option<KeySpec> {
    let mut t = Table::from_value(v, path.clone(), errs)?;
    let file = t.required_str("file", errs);
    let role = match t.str("role", errs) {
        Some(s) => Role::parse(s).or_else(|| {
            errs.add(
                &t.key_path("role"),
                format!("{s:?}: expected csk, ksk or zsk"),
            );
            None
        }),
        None => Some(Role::Csk),
    };
    let state = match t.str("state", errs) {
        Some(s) => KeyState::parse(s).or_else(|| {
            errs.add(
                &t.key_path("state"),
                format!("{s:?}: expected published, active or retired"),
            );
            None
        }),
        None => Some(KeyState::Active),
    };
    let algorithm = match t.str("algorithm", errs) {
        Some(s) => KeyAlgorithm::parse(s).or_else(|| {
            errs.add(
                &t.key_path("algorithm"),
                format!(
                    "{s:?} is not a supported algorithm (expected one of: {})",
                    KeyAlgorithm::NAMES
                ),
            );
            None
        }),
        None => Some(zone_alg),
    };
    t.finish(&["file", "role", "state", "algorithm"], errs);
    Some(KeySpec {
        file: base.join(file?),
        role: role?,
        state: state?,
        algorithm: algorithm?,
        path,
    })
}
