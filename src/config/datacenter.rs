//! Reading `datacenters.<name>`: answer addresses (or a hostname `target`), location,
//! capacity, weight, the check(s) that decide their health and how (`check` or `checks` with
//! `require`, `check-addresses`, `min-up`). Names are linked to ids, and the probe plan
//! checked, by `config::build`.

use std::net::IpAddr;

use hickory_proto::rr::Name;

use crate::probe::Require;

use crate::limits::MAX_DC_ADDRESSES;
use crate::walk::{self, DeValue, Errors, Table, index, join, shown};

/// `datacenters.<name>`.
#[derive(Clone, Debug)]
pub(crate) struct DatacenterSpec {
    /// Its name.
    pub(crate) name: String,
    /// Key path (`datacenters.fra`).
    pub(crate) path: String,
    /// Answer addresses, in declaration order (empty for a hostname datacenter).
    pub(crate) addresses: Vec<IpAddr>,
    /// A hostname datacenter: the name answered (as a CNAME or flattened) instead of
    /// addresses, and the key path that gave it.
    pub(crate) target: Option<(Name, String)>,
    /// Latitude and longitude.
    pub(crate) coords: Option<(f64, f64)>,
    /// Geo code (`EU-DE`), informational and used as location when no coordinates are given.
    pub(crate) geo: Option<String>,
    /// Relative capacity (default 1).
    pub(crate) capacity: f64,
    /// Default member weight (default 1).
    pub(crate) weight: u32,
    /// Names of its checks, each with the key path that named it (`check = "web"` is a list
    /// of one).
    pub(crate) checks: Vec<(String, String)>,
    /// `require`, with its key path (default all).
    pub(crate) require: Option<(Require, String)>,
    /// Probe these instead of the answer addresses.
    pub(crate) check_addresses: Option<Vec<IpAddr>>,
    /// Up while at least this many probed addresses are (default 1; `"all"` is
    /// `probe::MIN_UP_ALL`).
    pub(crate) min_up: u32,
}

const DC_KEYS: &[&str] = &[
    "addresses",
    "target",
    "location",
    "geo",
    "capacity",
    "weight",
    "check",
    "checks",
    "require",
    "check-addresses",
    "min-up",
];
/// A list of addresses at `key`, each checked.
pub(super) fn ip_list(t: &mut Table<'_>, key: &str, errs: &mut Errors) -> Option<Vec<IpAddr>> {
    let items = t.str_list(key, errs)?;
    let mut out = Vec::with_capacity(items.len());
    for (p, s) in items {
        match s.trim().parse::<IpAddr>() {
            Ok(a) => out.push(a),
            Err(_) => errs.add(&p, format!("{} is not an IPv4 or IPv6 address", shown(s))),
        }
    }
    Some(out)
}

/// Reads `datacenters`.
pub(crate) fn read_datacenters(mut t: Table<'_>, errs: &mut Errors) -> Vec<DatacenterSpec> {
    let mut out = Vec::new();
    let path = t.path.clone();
    for (name, v) in t.entries() {
        let p = join(&path, name);
        let Some(mut d) = Table::from_value(v, p.clone(), errs) else {
            continue;
        };
        let target = d.str("target", errs).and_then(|s| {
            let tp = join(&p, "target");
            if !s.trim().ends_with('.') {
                errs.add(&tp, format!("{s:?}: a target is a fully qualified name ending in \".\" (datacenters belong to no zone)"));
                return None;
            }
            match Name::from_ascii(s.trim()) {
                Ok(n) if n.is_root() => {
                    errs.add(&tp, "the root is not a target");
                    None
                }
                Ok(n) => Some((n, tp)),
                Err(e) => {
                    errs.add(&tp, format!("{s:?} is not a valid domain name: {e}"));
                    None
                }
            }
        });
        let has_target = d.get("target").is_some();
        let addresses = match d.get("addresses") {
            Some(_) if has_target => {
                errs.add(
                    &join(&p, "target"),
                    "a datacenter has either addresses or a target (a hostname), not both",
                );
                vec![]
            }
            Some(_) => ip_list(&mut d, "addresses", errs).unwrap_or_default(),
            None if has_target => vec![],
            None => {
                errs.add(
                    &join(&p, "addresses"),
                    "is required (a list of answer addresses), or give a hostname as `target`",
                );
                vec![]
            }
        };
        if addresses.len() > MAX_DC_ADDRESSES {
            errs.add(
                &join(&p, "addresses"),
                format!("at most {MAX_DC_ADDRESSES} addresses per datacenter"),
            );
        }
        for (i, a) in addresses.iter().enumerate() {
            if addresses[..i].contains(a) {
                errs.add(
                    &index(&join(&p, "addresses"), i),
                    format!("{a} is listed twice"),
                );
            }
        }
        let coords = d.table("location", errs).and_then(|mut l| {
            let lat = l.float("lat", -90.0, 90.0, errs);
            let lon = l.float("lon", -180.0, 180.0, errs);
            if lat.is_none() && !errs.list.iter().any(|e| e.path == l.key_path("lat")) {
                errs.add(&l.key_path("lat"), "is required (degrees, -90..90)");
            }
            if lon.is_none() && !errs.list.iter().any(|e| e.path == l.key_path("lon")) {
                errs.add(&l.key_path("lon"), "is required (degrees, -180..180)");
            }
            l.finish(&["lat", "lon"], errs);
            Some((lat?, lon?))
        });
        let geo = d.str("geo", errs).map(str::to_string);
        let capacity = d.float("capacity", 0.0, 1e12, errs).unwrap_or(1.0);
        let weight = d.int("weight", 0, 1_000_000, errs).unwrap_or(1) as u32;
        let mut checks: Vec<(String, String)> = d
            .str("check", errs)
            .map(|c| (c.to_string(), join(&p, "check")))
            .into_iter()
            .collect();
        if d.has("checks") {
            if !checks.is_empty() {
                errs.add(
                    &join(&p, "checks"),
                    "give either `check` (one) or `checks` (a list), not both",
                );
            }
            if let Some(list) = d.str_list("checks", errs) {
                if list.is_empty() {
                    errs.add(
                        &join(&p, "checks"),
                        "is empty: name at least one check, or leave the key out",
                    );
                }
                checks.extend(list.into_iter().map(|(path, c)| (c.to_string(), path)));
            }
        }
        let require = read_require(&mut d, errs);
        if let Some((_, path)) = &require
            && checks.is_empty()
        {
            errs.add(path, "needs checks to count (`checks = [...]`)");
        }
        let check_addresses = if d.get("check-addresses").is_some() {
            ip_list(&mut d, "check-addresses", errs)
        } else {
            None
        };
        let min_up = match d.get("min-up") {
            Some(DeValue::String(s)) if s == "all" => crate::probe::MIN_UP_ALL,
            Some(DeValue::String(s)) => {
                errs.add(
                    &join(&p, "min-up"),
                    format!("{s:?}: expected a number 1..64 or \"all\""),
                );
                1
            }
            _ => d.int("min-up", 1, 64, errs).unwrap_or(1) as u32,
        };
        d.finish(DC_KEYS, errs);
        out.push(DatacenterSpec {
            name: name.to_string(),
            path: p,
            addresses,
            target,
            coords,
            geo,
            capacity,
            weight,
            checks,
            require,
            check_addresses,
            min_up,
        });
    }
    out
}

/// `require = "all" | "any" | N`.
fn read_require(d: &mut Table<'_>, errs: &mut Errors) -> Option<(Require, String)> {
    let path = d.key_path("require");
    let v = d.get("require")?;
    let r = match (v, walk::integer(v)) {
        (DeValue::String(s), _) if s == "all" => Require::All,
        (DeValue::String(s), _) if s == "any" => Require::Any,
        (_, Some(n)) if (1..=64).contains(&n) => Require::AtLeast(n as u32),
        (other, _) => {
            errs.add(
                &path,
                format!(
                    "expected \"all\", \"any\" or a number of checks (1 or more), found {}",
                    walk::written(other)
                ),
            );
            return None;
        }
    };
    Some((r, path))
}
