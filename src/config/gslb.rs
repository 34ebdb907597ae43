//! Reading the GSLB parts of the zone files: `datacenters`, `checks` and `gslb.<name>`.
//!
//! Datacenters and checks form one namespace shared by every zone: declare each once, in any
//! file of the zones directory (by convention a file without `origin`, such as
//! `zones/datacenters.toml`), and use it from any GSLB name of any zone. References between
//! them (a pool naming a datacenter, a datacenter naming a check) are resolved to ids when the
//! model is built, where an unknown name is reported with the key path that used it.

use std::net::IpAddr;

use hickory_proto::rr::Name;

use super::walk::{Errors, Table, index, join, type_name};
use super::zone::parse_name;
use crate::geo::{CONTINENTS, Code2, CountryTables};
use crate::model::gslb::{AllDown, MatchItem, PolicyKind};
use crate::probe::{CheckKind, CheckSpec, HttpCheck};

/// `datacenters.<name>`.
#[derive(Clone, Debug)]
pub struct DatacenterSpec {
    pub name: String,
    pub path: String,
    pub addresses: Vec<IpAddr>,
    pub coords: Option<(f64, f64)>,
    /// Geo code (`EU-DE`), informational and used as location when no coordinates are given.
    pub geo: Option<String>,
    pub capacity: f64,
    pub weight: u32,
    /// Name of the check and the key path that named it.
    pub check: Option<(String, String)>,
    pub check_addresses: Option<Vec<IpAddr>>,
    pub min_up: u32,
}

/// `checks.<name>`.
#[derive(Clone, Debug)]
pub struct CheckEntry {
    pub name: String,
    pub path: String,
    pub spec: CheckSpec,
}

/// A pool member as written: a datacenter name with optional weight and bias.
#[derive(Clone, Debug)]
pub struct MemberSpec {
    pub dc: String,
    pub path: String,
    pub weight: Option<u32>,
    pub bias_km: f64,
}

/// `gslb.<name>.pools.<pool>` (or the pool written inline in `gslb.<name>`).
#[derive(Clone, Debug)]
pub struct PoolSpec {
    pub name: String,
    pub path: String,
    pub members: Vec<MemberSpec>,
    pub policy: PolicyKind,
    pub fallback: Option<(String, String)>,
}

/// One entry of `rules`.
#[derive(Clone, Debug)]
pub struct RuleSpec {
    pub path: String,
    pub matches: Vec<MatchItem>,
    pub pool: String,
}

/// `gslb.<name>`.
#[derive(Clone, Debug)]
pub struct GslbSpec {
    pub owner: Name,
    pub path: String,
    pub ttl: u32,
    pub answers: u8,
    pub all_down: AllDown,
    pub rules: Vec<RuleSpec>,
    pub pools: Vec<PoolSpec>,
    /// Use the EDNS Client Subnet address when present (default true).
    pub ecs: bool,
}

pub const DEFAULT_GSLB_TTL: u32 = 30;

const DC_KEYS: &[&str] = &[
    "addresses",
    "location",
    "geo",
    "capacity",
    "weight",
    "check",
    "check-addresses",
    "min-up",
];
const CHECK_KEYS: &[&str] = &[
    "type",
    "path",
    "port",
    "host",
    "expect",
    "body",
    "verify-tls",
    "follow-redirects",
    "load",
    "connections",
    "interval",
    "timeout",
    "rise",
    "fall",
    "jitter",
    "slow-start",
];
const POOL_KEYS: &[&str] = &[
    "datacenters",
    "policy",
    "fallback",
    "margin",
    "max-load",
    "hash-prefix-v4",
    "hash-prefix-v6",
];
const NAME_KEYS: &[&str] = &["ttl", "answers", "all-down", "rules", "pools", "ecs"];

fn ip_list(t: &mut Table<'_>, key: &str, errs: &mut Errors) -> Option<Vec<IpAddr>> {
    let items = t.str_list(key, errs)?;
    let mut out = Vec::with_capacity(items.len());
    for (p, s) in items {
        match s.trim().parse::<IpAddr>() {
            Ok(a) => out.push(a),
            Err(_) => errs.add(&p, format!("{s:?} is not an IPv4 or IPv6 address")),
        }
    }
    Some(out)
}

/// Reads `datacenters`.
pub fn read_datacenters(mut t: Table<'_>, errs: &mut Errors) -> Vec<DatacenterSpec> {
    let mut out = Vec::new();
    let path = t.path.clone();
    for (name, v) in t.entries() {
        let p = join(&path, name);
        let Some(mut d) = Table::from_value(v, p.clone(), errs) else {
            continue;
        };
        let addresses = match d.get("addresses") {
            Some(_) => ip_list(&mut d, "addresses", errs).unwrap_or_default(),
            None => {
                errs.add(
                    &join(&p, "addresses"),
                    "is required (a list of answer addresses)",
                );
                vec![]
            }
        };
        if addresses.len() > 64 {
            errs.add(
                &join(&p, "addresses"),
                "at most 64 addresses per datacenter",
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
        let check = d
            .str("check", errs)
            .map(|c| (c.to_string(), join(&p, "check")));
        let check_addresses = if d.get("check-addresses").is_some() {
            ip_list(&mut d, "check-addresses", errs)
        } else {
            None
        };
        let min_up = d.int("min-up", 1, 64, errs).unwrap_or(1) as u32;
        d.finish(DC_KEYS, errs);
        out.push(DatacenterSpec {
            name: name.to_string(),
            path: p,
            addresses,
            coords,
            geo,
            capacity,
            weight,
            check,
            check_addresses,
            min_up,
        });
    }
    out
}

fn status_ranges(
    v: &toml::Value,
    p: &str,
    errs: &mut Errors,
) -> Vec<std::ops::RangeInclusive<u16>> {
    let items: Vec<(String, &toml::Value)> = match v {
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| (index(p, i), x))
            .collect(),
        other => vec![(p.to_string(), other)],
    };
    let mut out = Vec::new();
    for (ip, x) in items {
        let r = match x {
            toml::Value::Integer(i) if (100..=599).contains(i) => Some(*i as u16..=*i as u16),
            toml::Value::String(s) => s.split_once('-').and_then(|(a, b)| {
                let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
                (100 <= a && a <= b && b <= 599).then_some(a..=b)
            }),
            _ => None,
        };
        match r {
            Some(r) => out.push(r),
            None => errs.add(
                &ip,
                "expected an HTTP status (200) or a range (\"200-299\")",
            ),
        }
    }
    out
}

/// Reads `checks`.
pub fn read_checks(mut t: Table<'_>, errs: &mut Errors) -> Vec<CheckEntry> {
    let mut out = Vec::new();
    let path = t.path.clone();
    for (name, v) in t.entries() {
        let p = join(&path, name);
        let Some(mut c) = Table::from_value(v, p.clone(), errs) else {
            continue;
        };
        let kind = c.required_str("type", errs);
        let port = c.int("port", 1, 65535, errs).map(|x| x as u16);
        let kind = match kind {
            Some(k @ ("http" | "https")) => {
                let tls = k == "https";
                let mut h = HttpCheck::new(
                    c.str("path", errs).unwrap_or("/"),
                    port.unwrap_or(if tls { 443 } else { 80 }),
                );
                h.tls = tls;
                h.host = c.str("host", errs).map(str::to_string);
                if let Some(v) = c.get("expect") {
                    h.expect_status = status_ranges(v, &join(&p, "expect"), errs);
                }
                h.body_contains = c.str("body", errs).map(str::to_string);
                h.verify = c.bool("verify-tls", errs).unwrap_or(true);
                h.follow_redirects = c.bool("follow-redirects", errs).unwrap_or(false);
                h.load_pointer = c.str("load", errs).map(str::to_string);
                h.connections_pointer = c.str("connections", errs).map(str::to_string);
                Some(CheckKind::Http(h))
            }
            Some("tcp") => match port {
                Some(port) => Some(CheckKind::Tcp { port }),
                None => {
                    errs.add(&join(&p, "port"), "is required for a tcp check");
                    None
                }
            },
            Some(other) => {
                errs.add(
                    &join(&p, "type"),
                    format!("{other:?} is not a check type (expected http, https or tcp)"),
                );
                None
            }
            None => None,
        };
        let valid_kind = kind.is_some();
        let mut spec = CheckSpec::new(kind.unwrap_or(CheckKind::Tcp { port: 1 }));
        if let Some(d) = c.duration("interval", errs) {
            spec.interval = d;
        }
        if let Some(d) = c.duration("timeout", errs) {
            spec.timeout = d;
        }
        if let Some(r) = c.int("rise", 1, 1000, errs) {
            spec.rise = r as u32;
        }
        if let Some(f) = c.int("fall", 1, 1000, errs) {
            spec.fall = f as u32;
        }
        spec.jitter = c.duration("jitter", errs);
        spec.slow_start = c.duration("slow-start", errs).filter(|d| !d.is_zero());
        c.finish(CHECK_KEYS, errs);
        if valid_kind {
            match spec.validate() {
                Ok(()) => out.push(CheckEntry {
                    name: name.to_string(),
                    path: p,
                    spec,
                }),
                Err(e) => errs.add(&p, e.to_string()),
            }
        }
    }
    out
}

/// Parses a rule match item: continent `EU`, country `DE` / `EU-DE`, subdivision
/// `NA-US-CA` / `US-CA`, or a CIDR subnet.
pub fn parse_match(s: &str, tables: &CountryTables) -> Result<MatchItem, String> {
    let s = s.trim();
    if s.contains('/') || s.contains(':') || s.starts_with(|c: char| c.is_ascii_digit()) {
        return parse_subnet(s).map(|(addr, prefix)| MatchItem::Subnet { addr, prefix });
    }
    let up = s.to_ascii_uppercase();
    let parts: Vec<&str> = up.split('-').collect();
    let code2 = |x: &str| -> Option<Code2> {
        let b = x.as_bytes();
        (b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic)).then(|| [b[0], b[1]])
    };
    let is_continent = |c: Code2| CONTINENTS.contains(&c);
    let country = |c: Code2| -> Result<Code2, String> {
        if tables.is_country(c) {
            Ok(c)
        } else {
            Err(format!(
                "{s:?}: {} is not an ISO 3166-1 country code",
                String::from_utf8_lossy(&c)
            ))
        }
    };
    let sub = |x: &str| -> Result<[u8; 3], String> {
        let b = x.as_bytes();
        if b.is_empty() || b.len() > 3 || !b.iter().all(u8::is_ascii_alphanumeric) {
            return Err(format!(
                "{s:?}: {x:?} is not a subdivision code (1-3 letters or digits)"
            ));
        }
        let mut o = [0u8; 3];
        o[..b.len()].copy_from_slice(b);
        Ok(o)
    };
    let bad = || {
        format!(
            "{s:?} is not a geo code (expected a continent such as EU, a country such as DE or EU-DE, a subdivision such as NA-US-CA, or a subnet such as 192.0.2.0/24)"
        )
    };
    match parts.as_slice() {
        [one] => {
            let c = code2(one).ok_or_else(bad)?;
            if is_continent(c) {
                Ok(MatchItem::Continent(c))
            } else {
                Ok(MatchItem::Country(country(c)?))
            }
        }
        [a, b] => {
            let ca = code2(a).ok_or_else(bad)?;
            if is_continent(ca) {
                let cb = country(code2(b).ok_or_else(bad)?)?;
                if tables.continent(cb).is_some_and(|k| k != ca) {
                    return Err(format!("{s:?}: {b} is not in {a}"));
                }
                Ok(MatchItem::Country(cb))
            } else {
                Ok(MatchItem::Subdivision(country(ca)?, sub(b)?))
            }
        }
        [a, b, c] => {
            let ca = code2(a).filter(|x| is_continent(*x)).ok_or_else(bad)?;
            let cb = country(code2(b).ok_or_else(bad)?)?;
            if tables.continent(cb).is_some_and(|k| k != ca) {
                return Err(format!("{s:?}: {b} is not in {a}"));
            }
            Ok(MatchItem::Subdivision(cb, sub(c)?))
        }
        _ => Err(bad()),
    }
}

/// `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a host route).
pub fn parse_subnet(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = a
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a subnet (expected e.g. 192.0.2.0/24)"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match p {
        Some(p) => p
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|&x| x <= max)
            .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        None => max,
    };
    let bits_set_beyond = match addr {
        IpAddr::V4(v) => prefix < 32 && u32::from(v) & (u32::MAX >> prefix) != 0,
        IpAddr::V6(v) => prefix < 128 && u128::from(v) & (u128::MAX >> prefix) != 0,
    };
    if bits_set_beyond {
        return Err(format!("{s:?} has bits set beyond the /{prefix} prefix"));
    }
    Ok((addr, prefix))
}

fn read_all_down(v: &toml::Value, p: &str, errs: &mut Errors) -> AllDown {
    match v {
        toml::Value::String(s) => match s.as_str() {
            "fail-open" => AllDown::FailOpen,
            "nodata" => AllDown::NoData,
            "servfail" => AllDown::ServFail,
            other => {
                errs.add(p, format!("{other:?} is not an all-down behaviour (expected fail-open, nodata, servfail or {{ addresses = [...] }})"));
                AllDown::FailOpen
            }
        },
        toml::Value::Table(_) => {
            let Some(mut t) = Table::from_value(v, p.to_string(), errs) else {
                return AllDown::FailOpen;
            };
            let addrs = ip_list(&mut t, "addresses", errs).unwrap_or_default();
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

fn read_members(v: &toml::Value, p: &str, errs: &mut Errors) -> Vec<MemberSpec> {
    let toml::Value::Array(items) = v else {
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
    for (i, item) in items.iter().enumerate() {
        let ip = index(p, i);
        match item {
            toml::Value::String(s) => out.push(MemberSpec { dc: s.clone(), path: ip, weight: None, bias_km: 0.0 }),
            toml::Value::Table(_) => {
                let Some(mut t) = Table::from_value(item, ip.clone(), errs) else { continue };
                let dc = t.required_str("dc", errs).map(str::to_string);
                let weight = t.int("weight", 0, 1_000_000, errs).map(|w| w as u32);
                let bias_km = t.float("bias", -20_000.0, 20_000.0, errs).unwrap_or(0.0);
                t.finish(&["dc", "weight", "bias"], errs);
                if let Some(dc) = dc {
                    out.push(MemberSpec { dc, path: ip, weight, bias_km });
                }
            }
            other => errs.add(&ip, format!("expected a datacenter name or {{ dc = ..., weight = ..., bias = ... }}, found {}", type_name(other))),
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
    let policy_name = t.str("policy", errs).unwrap_or("failover");
    let margin = t.duration("margin", errs).map(|d| d.as_secs_f64() * 1000.0);
    let max_load = t.float("max-load", 0.0, 1.0, errs);
    let v4 = t.int("hash-prefix-v4", 0, 32, errs).map(|x| x as u8);
    let v6 = t.int("hash-prefix-v6", 0, 128, errs).map(|x| x as u8);
    let policy = match policy_name {
        "failover" => PolicyKind::Failover,
        "nearest" => PolicyKind::Nearest,
        "latency" => PolicyKind::Latency {
            margin_ms: margin.unwrap_or(10.0),
        },
        "load" => PolicyKind::Load {
            max_load: max_load.unwrap_or(0.8),
        },
        "weighted" => PolicyKind::Weighted,
        "round-robin" => PolicyKind::RoundRobin,
        "random" => PolicyKind::Random,
        "hash" => PolicyKind::Hash {
            v4_prefix: v4.unwrap_or(24),
            v6_prefix: v6.unwrap_or(56),
        },
        "all" => PolicyKind::All,
        other => {
            errs.add(
                &join(&p, "policy"),
                format!("{other:?} is not a policy (expected failover, nearest, latency, load, weighted, round-robin, random, hash or all)"),
            );
            PolicyKind::Failover
        }
    };
    let only = |key: &str, ok: bool, errs: &mut Errors, what: &str| {
        if !ok {
            errs.add(&join(&p, key), format!("only applies to the {what} policy"));
        }
    };
    if margin.is_some() {
        only(
            "margin",
            matches!(policy, PolicyKind::Latency { .. }),
            errs,
            "latency",
        );
    }
    if max_load.is_some() {
        only(
            "max-load",
            matches!(policy, PolicyKind::Load { .. }),
            errs,
            "load",
        );
    }
    if v4.is_some() || v6.is_some() {
        only(
            if v4.is_some() {
                "hash-prefix-v4"
            } else {
                "hash-prefix-v6"
            },
            matches!(policy, PolicyKind::Hash { .. }),
            errs,
            "hash",
        );
    }
    let fallback = t
        .str("fallback", errs)
        .map(|f| (f.to_string(), join(&p, "fallback")));
    PoolSpec {
        name: name.to_string(),
        path: p,
        members,
        policy,
        fallback,
    }
}

/// Reads `gslb`: every name of the zone with GSLB answers.
pub fn read_gslb(
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
                errs.add(&p, format!("{key:?} is not inside the zone {origin}"));
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
        let answers = n
            .int("answers", 1, crate::policy::MAX_ANSWER as i64, errs)
            .unwrap_or(1) as u8;
        let all_down = n.get("all-down").map_or(AllDown::FailOpen, |v| {
            read_all_down(v, &join(&p, "all-down"), errs)
        });
        let ecs = n.bool("ecs", errs).unwrap_or(true);
        let mut pools = Vec::new();
        let inline = n.get("datacenters").is_some();
        if let Some(mut pt) = n.table("pools", errs) {
            let pp = pt.path.clone();
            for (pname, pv) in pt.entries() {
                if let Some(mut pool) = Table::from_value(pv, join(&pp, pname), errs) {
                    pools.push(read_pool(&mut pool, pname, errs));
                    pool.finish(POOL_KEYS, errs);
                }
            }
        }
        if inline {
            if !pools.is_empty() {
                errs.add(&join(&p, "datacenters"), "a name has either one inline pool (datacenters, policy...) or a pools table, not both");
            }
            if let toml::Value::Table(whole) = v {
                let mut me = Table::new(whole, p.clone());
                pools.insert(0, read_pool(&mut me, "default", errs));
            }
            for k in POOL_KEYS {
                let _ = n.get(k);
            }
        }
        let mut rules = Vec::new();
        if let Some(rv) = n.get("rules") {
            let rp = join(&p, "rules");
            match rv {
                toml::Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
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
                                match parse_match(s, tables) {
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
            keys.extend_from_slice(POOL_KEYS);
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
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_items() {
        let t = CountryTables::builtin().unwrap();
        assert_eq!(parse_match("EU", &t), Ok(MatchItem::Continent(*b"EU")));
        assert_eq!(parse_match("de", &t), Ok(MatchItem::Country(*b"DE")));
        assert_eq!(parse_match("EU-DE", &t), Ok(MatchItem::Country(*b"DE")));
        assert_eq!(
            parse_match("NA-US-CA", &t),
            Ok(MatchItem::Subdivision(*b"US", *b"CA\0"))
        );
        assert_eq!(
            parse_match("US-CA", &t),
            Ok(MatchItem::Subdivision(*b"US", *b"CA\0"))
        );
        assert_eq!(
            parse_match("192.0.2.0/24", &t),
            Ok(MatchItem::Subnet {
                addr: "192.0.2.0".parse().unwrap(),
                prefix: 24
            })
        );
        assert!(
            parse_match("192.0.2.1/24", &t)
                .unwrap_err()
                .contains("bits set beyond")
        );
        assert!(
            parse_match("AS-DE", &t)
                .unwrap_err()
                .contains("DE is not in AS")
        );
        assert!(
            parse_match("XX", &t)
                .unwrap_err()
                .contains("not an ISO 3166-1 country code")
        );
    }
}
