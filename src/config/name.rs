//! Reading `gslb.<name>`: rules, pools (each policy reads its own keys, see
//! `model::policy`), fallbacks, the answer count and the all-down behaviour. References to
//! datacenters and pools are linked to ids by `config::build`.

use std::net::IpAddr;
use std::sync::LazyLock;

use hickory_proto::rr::Name;

use super::zone::parse_name;
use crate::geo::CountryTables;
use crate::limits::MAX_ANSWER;
use crate::model::policy::POOL_KEYS;
use crate::model::{AllDown, MatchItem, PolicyKind};
use crate::walk::{self, DeValue, Errors, Table, index, join, shown, type_name};

/// A pool member as written: a datacenter name with optional weight and bias.
#[derive(Clone, Debug)]
pub(crate) struct MemberSpec {
    /// Datacenter name.
    pub(crate) dc: String,
    /// Position in the pool's `datacenters` list (for the key path of messages, which is
    /// only made when there is a message: 100 k names are a million members).
    pub(crate) at: u32,
    /// Weight, when given.
    pub(crate) weight: Option<u32>,
    /// `nearest` bias in km.
    pub(crate) bias_km: f64,
}

/// `gslb.<name>.pools.<pool>` (or the pool written inline in `gslb.<name>`).
#[derive(Clone, Debug)]
pub(crate) struct PoolSpec {
    /// Pool name (`default` for an inline pool).
    pub(crate) name: String,
    /// Key path.
    pub(crate) path: String,
    /// Members in order.
    pub(crate) members: Vec<MemberSpec>,
    /// The policy and its settings.
    pub(crate) policy: PolicyKind,
    /// Fallback pool name and the key path that named it.
    pub(crate) fallback: Option<(String, String)>,
}

impl PoolSpec {
    /// The key path of member `m` of this pool (`gslb.www.pools.eu.datacenters[1]`).
    pub(crate) fn member_path(&self, m: &MemberSpec) -> String {
        index(&join(&self.path, "datacenters"), m.at as usize)
    }
}

/// One entry of `rules`.
#[derive(Clone, Debug)]
pub(crate) struct RuleSpec {
    /// Key path (`gslb.www.rules[0]`).
    pub(crate) path: String,
    /// Match items; empty = catch-all.
    pub(crate) matches: Vec<MatchItem>,
    /// Pool name.
    pub(crate) pool: String,
}

/// `gslb.<name>`.
#[derive(Clone, Debug)]
pub(crate) struct GslbSpec {
    /// Owner name.
    pub(crate) owner: Name,
    /// Key path (`gslb.www`).
    pub(crate) path: String,
    /// Answer TTL.
    pub(crate) ttl: u32,
    /// Datacenters per answer.
    pub(crate) answers: u8,
    /// All-down behaviour.
    pub(crate) all_down: AllDown,
    /// Rules in order.
    pub(crate) rules: Vec<RuleSpec>,
    /// Pools in order (their index is the `PoolId`).
    pub(crate) pools: Vec<PoolSpec>,
    /// Use the EDNS Client Subnet address when present (default true).
    pub(crate) ecs: bool,
    /// `flatten`, when written: hostname datacenters answer their target's addresses (true)
    /// or a CNAME (false, the default except at the apex).
    pub(crate) flatten: Option<bool>,
}

/// TTL of GSLB answers when the name gives none.
pub(crate) const DEFAULT_GSLB_TTL: u32 = 30;

const NAME_KEYS: &[&str] = &[
    "ttl", "answers", "all-down", "rules", "pools", "ecs", "flatten",
];

/// Every key a pool table may hold: the common ones and every policy's own.
fn pool_keys() -> &'static [&'static str] {
    static KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
        let mut keys = POOL_KEYS.to_vec();
        for p in [
            PolicyKind::Latency { margin_ms: 0.0 },
            PolicyKind::Load { max_load: 0.0 },
            PolicyKind::HASH,
        ] {
            keys.extend_from_slice(p.keys());
        }
        keys
    });
    &KEYS
}

fn read_all_down(v: &DeValue<'_>, p: &str, errs: &mut Errors) -> AllDown {
    match v {
        DeValue::String(s) => match s.as_ref() {
            "fail-open" => AllDown::FailOpen,
            "nodata" => AllDown::NoData,
            "servfail" => AllDown::ServFail,
            other => {
                errs.add(p, format!("{} is not an all-down behaviour (expected fail-open, nodata, servfail or {{ addresses = [...] }})", shown(other)));
                AllDown::FailOpen
            }
        },
        DeValue::Table(_) => {
            let Some(mut t) = Table::from_value(v, p.to_string(), errs) else {
                return AllDown::FailOpen;
            };
            let addrs = super::datacenter::ip_list(&mut t, "addresses", errs).unwrap_or_default();
            t.finish(&["addresses"], errs);
            if addrs.is_empty() {
                errs.add(
                    &join(p, "addresses"),
                    "is required (the last-resort addresses)",
                );
            }
            let mut v4 = vec![];
            let mut v6 = vec![];
            for a in addrs {
                match a {
                    IpAddr::V4(x) => v4.push(x),
                    IpAddr::V6(x) => v6.push(x),
                }
            }
            AllDown::Addresses { v4, v6 }
        }
        other => {
            errs.add(
                p,
                format!("expected a string or a table, found {}", type_name(other)),
            );
            AllDown::FailOpen
        }
    }
}

fn read_members(v: &DeValue<'_>, p: &str, errs: &mut Errors) -> Vec<MemberSpec> {
    let DeValue::Array(items) = v else {
        errs.add(
            p,
            format!(
                "expected a list of datacenter names, found {}",
                type_name(v)
            ),
        );
        return vec![];
    };
    let mut out = Vec::new();
    for (i, item) in walk::items(items).enumerate() {
        match item {
            DeValue::String(s) => out.push(MemberSpec { dc: s.to_string(), at: i as u32, weight: None, bias_km: 0.0 }),
            DeValue::Table(_) => {
                let Some(mut t) = Table::from_value(item, index(p, i), errs) else { continue };
                let dc = t.required_str("dc", errs).map(str::to_string);
                let weight = t.int("weight", 0, 1_000_000, errs).map(|w| w as u32);
                let bias_km = t.float("bias", -20_000.0, 20_000.0, errs).unwrap_or(0.0);
                t.finish(&["dc", "weight", "bias"], errs);
                if let Some(dc) = dc {
                    out.push(MemberSpec { dc, at: i as u32, weight, bias_km });
                }
            }
            other => errs.add(&index(p, i), format!("expected a datacenter name or {{ dc = ..., weight = ..., bias = ... }}, found {}", type_name(other))),
        }
    }
    if items.is_empty() {
        errs.add(p, "is empty (a pool needs at least one datacenter)");
    }
    out
}

/// Reads the pool keys of `t` (a `pools.<name>` table, or a name written with one inline pool).
fn read_pool(t: &mut Table<'_>, name: &str, errs: &mut Errors) -> PoolSpec {
    let p = t.path.clone();
    let members = match t.get("datacenters") {
        Some(v) => read_members(v, &join(&p, "datacenters"), errs),
        None => {
            errs.add(
                &join(&p, "datacenters"),
                "is required (the pool's datacenters, in order)",
            );
            vec![]
        }
    };
    let policy = PolicyKind::read(t, errs);
    let fallback = t
        .str("fallback", errs)
        .map(|f| (f.to_string(), join(&p, "fallback")));
    PoolSpec {
        name: name.to_string(),
        path: p,
        members,
        policy: policy.unwrap_or(PolicyKind::Failover),
        fallback,
    }
}

/// Reads `gslb`: every name of the zone with GSLB answers.
pub(crate) fn read_gslb(
    mut t: Table<'_>,
    origin: &Name,
    tables: &CountryTables,
    errs: &mut Errors,
) -> Vec<GslbSpec> {
    let mut out = Vec::new();
    let path = t.path.clone();
    for (key, v) in t.entries() {
        let p = join(&path, key);
        let owner = match parse_name(key, origin) {
            Ok(n) if origin.zone_of(&n) => n,
            Ok(_) => {
                errs.add(
                    &p,
                    format!("{} is not inside the zone {origin}", shown(key)),
                );
                continue;
            }
            Err(e) => {
                errs.add(&p, e);
                continue;
            }
        };
        let Some(mut n) = Table::from_value(v, p.clone(), errs) else {
            continue;
        };
        let ttl = n.u32("ttl", errs).unwrap_or(DEFAULT_GSLB_TTL);
        let answers = n.int("answers", 1, MAX_ANSWER as i64, errs).unwrap_or(1) as u8;
        let all_down = n.get("all-down").map_or(AllDown::FailOpen, |v| {
            read_all_down(v, &join(&p, "all-down"), errs)
        });
        let ecs = n.bool("ecs", errs).unwrap_or(true);
        let flatten = n.bool("flatten", errs);
        let mut pools = Vec::new();
        let inline = n.get("datacenters").is_some();
        if let Some(mut pt) = n.table("pools", errs) {
            let pp = pt.path.clone();
            for (pname, pv) in pt.entries() {
                if let Some(mut pool) = Table::from_value(pv, join(&pp, pname), errs) {
                    let spec = read_pool(&mut pool, pname, errs);
                    pool.finish(pool_keys(), errs);
                    pools.push(spec);
                }
            }
        }
        if inline {
            if !pools.is_empty() {
                errs.add(&join(&p, "datacenters"), "a name has either one inline pool (datacenters, policy...) or a pools table, not both");
            }
            if let DeValue::Table(whole) = v {
                let mut me = Table::new(whole, p.clone());
                pools.insert(0, read_pool(&mut me, "default", errs));
            }
            for k in pool_keys() {
                let _ = n.get(k);
            }
        }
        let mut rules = Vec::new();
        if let Some(rv) = n.get("rules") {
            let rp = join(&p, "rules");
            match rv {
                DeValue::Array(items) => {
                    for (i, item) in walk::items(items).enumerate() {
                        let ip = index(&rp, i);
                        let Some(mut r) = Table::from_value(item, ip.clone(), errs) else {
                            continue;
                        };
                        let mut matches = Vec::new();
                        if let Some(list) = r.str_list("match", errs) {
                            if list.is_empty() {
                                errs.add(
                                    &join(&ip, "match"),
                                    "is empty: leave `match` out for the catch-all rule",
                                );
                            }
                            for (mp, s) in list {
                                match MatchItem::parse(s, tables) {
                                    Ok(m) => matches.push(m),
                                    Err(e) => errs.add(&mp, e),
                                }
                            }
                        }
                        let pool = r.required_str("pool", errs).unwrap_or_default().to_string();
                        r.finish(&["match", "pool"], errs);
                        rules.push(RuleSpec {
                            path: ip,
                            matches,
                            pool,
                        });
                    }
                }
                other => errs.add(
                    &rp,
                    format!(
                        "expected a list of {{ match = [...], pool = \"...\" }}, found {}",
                        type_name(other)
                    ),
                ),
            }
        }
        let mut keys: Vec<&str> = NAME_KEYS.to_vec();
        if inline {
            keys.extend(pool_keys());
        }
        n.finish(&keys, errs);
        if pools.is_empty() && !errs.list.iter().any(|e| e.path.starts_with(&p)) {
            errs.add(
                &p,
                "has no pool: give it `datacenters = [...]` or a `pools` table",
            );
        }
        out.push(GslbSpec {
            owner,
            path: p,
            ttl,
            answers,
            all_down,
            rules,
            pools,
            ecs,
            flatten,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::GeoCode;
    use crate::net::Subnet;

    #[test]
    fn match_items() {
        let t = CountryTables::builtin().unwrap();
        let geo = |g| Ok(MatchItem::Geo(g));
        assert_eq!(MatchItem::parse("EU", &t), geo(GeoCode::Continent(*b"EU")));
        assert_eq!(MatchItem::parse("de", &t), geo(GeoCode::Country(*b"DE")));
        assert_eq!(MatchItem::parse("EU-DE", &t), geo(GeoCode::Country(*b"DE")));
        assert_eq!(
            MatchItem::parse("NA-US-CA", &t),
            geo(GeoCode::Subdivision(*b"US", *b"CA\0"))
        );
        assert_eq!(
            MatchItem::parse("192.0.2.0/24", &t),
            Ok(MatchItem::Subnet(Subnet {
                addr: "192.0.2.0".parse().unwrap(),
                prefix: 24
            }))
        );
        assert!(
            MatchItem::parse("192.0.2.1/24", &t)
                .unwrap_err()
                .contains("bits set beyond")
        );
        assert!(
            MatchItem::parse("AS-DE", &t)
                .unwrap_err()
                .contains("DE is not in AS")
        );
    }
}
