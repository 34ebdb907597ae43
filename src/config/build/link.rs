//! Linking the GSLB declarations of all files into the model: datacenter and check names
//! become ids, pool and fallback names become `PoolId`s, the probe plan is built and checked,
//! and every reference or setting that does not hold is reported with the key path that
//! made it.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;
use rustc_hash::FxHashMap;

use super::hostname::Hosts;
use super::zone::add_empty_ancestors;
use crate::config::{AliasSpec, Config, ConfigError, GslbSpec};
use crate::geo::{CountryTables, GeoCode};
use crate::limits::MAX_MEMBERS;
use crate::model::{
    Alias, Datacenter, DatacenterId, Datacenters, GslbEntry, GslbName, Lookup, Member, Pool,
    PoolId, Rule, Zone,
};
use crate::probe::{CheckKind, CheckSpec, DatacenterProbe, NamedCheck, ProbeSet, Require};
use crate::rr::{TYPE_A, TYPE_AAAA, ancestors, wire_key};
use crate::walk::{SHOWN_CHARS, one_line, shown};

fn err(errs: &mut Vec<ConfigError>, file: &Path, path: &str, message: String) {
    errs.push(ConfigError {
        file: file.to_path_buf(),
        path: path.to_string(),
        message,
    });
}

/// Resolves checks and datacenters declared anywhere in the directory.
pub(crate) fn datacenters(
    config: &Config,
    tables: &CountryTables,
    hosts: &mut Hosts,
    errs: &mut Vec<ConfigError>,
) -> Datacenters {
    let mut checks: FxHashMap<&str, (&CheckSpec, &Path, &str)> = FxHashMap::default();
    for f in &config.files {
        for c in &f.checks {
            if let Some((_, file, path)) = checks.get(c.name.as_str()) {
                err(
                    errs,
                    &f.file,
                    &c.path,
                    format!(
                        "check {} is already declared at {}: {}",
                        shown(&c.name),
                        file.display(),
                        path
                    ),
                );
                continue;
            }
            checks.insert(&c.name, (&c.spec, &f.file, &c.path));
        }
    }
    let mut out = Datacenters::default();
    let mut declared_at: FxHashMap<&str, (&Path, &str)> = FxHashMap::default();
    for f in &config.files {
        for d in &f.datacenters {
            if let Some((file, path)) = declared_at.get(d.name.as_str()) {
                err(
                    errs,
                    &f.file,
                    &d.path,
                    format!(
                        "datacenter {} is already declared at {}: {}",
                        shown(&d.name),
                        file.display(),
                        path
                    ),
                );
                continue;
            }
            declared_at.insert(&d.name, (&f.file, &d.path));
            let mut named = Vec::with_capacity(d.checks.len());
            for (name, path) in &d.checks {
                match checks.get(name.as_str()) {
                    Some((spec, _, _)) => named.push(NamedCheck {
                        name: name.clone(),
                        spec: (*spec).clone(),
                    }),
                    None => {
                        let known: Vec<&str> = checks.keys().copied().collect();
                        err(
                            errs,
                            &f.file,
                            path,
                            format!("unknown check {} (declared: {})", shown(name), list(&known)),
                        );
                    }
                }
            }
            // Coordinates: given, else the centroid of the geo code's country.
            let mut coords = d.coords;
            if let Some(g) = &d.geo {
                let path = format!("{}.geo", d.path);
                if crate::geo::looks_like_subnet(g) {
                    err(
                        errs,
                        &f.file,
                        &path,
                        format!("{} is a subnet, not a geo code", shown(g)),
                    );
                } else {
                    match GeoCode::parse(g, tables) {
                        Ok(code) => {
                            if coords.is_none() {
                                coords = code.country().and_then(|c| tables.centroid(c));
                            }
                        }
                        Err(e) => err(errs, &f.file, &path, e),
                    }
                }
            }
            if d.addresses.is_empty() && d.target.is_none() {
                continue;
            }
            let id = DatacenterId(out.list.len() as u32);
            let target = d.target.as_ref().map(|(name, path)| {
                let h = hosts.add(name);
                hosts.used(h, Some(id.0), &f.file, path, false);
                h
            });
            let v4: Vec<_> = d
                .addresses
                .iter()
                .filter_map(|a| {
                    if let IpAddr::V4(x) = a {
                        Some(*x)
                    } else {
                        None
                    }
                })
                .collect();
            let v6: Vec<_> = d
                .addresses
                .iter()
                .filter_map(|a| {
                    if let IpAddr::V6(x) = a {
                        Some(*x)
                    } else {
                        None
                    }
                })
                .collect();
            out.list.push(Datacenter {
                name: d.name.as_str().into(),
                v4,
                v6,
                coords,
                capacity: d.capacity,
                weight: d.weight,
                target,
            });
            let mut probe = DatacenterProbe::new(d.name.clone(), d.addresses.clone(), None);
            probe.checks = named;
            probe.require = d.require.as_ref().map_or(Require::All, |r| r.0);
            probe.check_addresses = d.check_addresses.clone();
            probe.capacity = Some(d.capacity);
            probe.min_up = d.min_up;
            out.probes.push(probe);
            out.by_name.insert(d.name.clone(), id);
        }
    }
    out
}

/// The names a message lists as the ones declared: sorted, each cut, at most [`LISTED`].
fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    let mut v = names.to_vec();
    v.sort_unstable();
    let mut s = v
        .iter()
        .take(LISTED)
        .map(|n| one_line(n, SHOWN_CHARS))
        .collect::<Vec<_>>()
        .join(", ");
    if v.len() > LISTED {
        let _ = write!(s, " and {} more", v.len() - LISTED);
    }
    s
}

/// Most names a message lists.
const LISTED: usize = 20;

/// Resolves one `gslb.<name>` into a `GslbName`, or reports why it cannot be. `at_apex`: the
/// name is its zone's apex (always flattened).
pub(crate) fn gslb_name(
    spec: &GslbSpec,
    dcs: &Datacenters,
    at_apex: bool,
    file: &Path,
    errs: &mut Vec<ConfigError>,
) -> Option<GslbName> {
    let start = errs.len();
    if at_apex && spec.flatten == Some(false) {
        err(
            errs,
            file,
            &format!("{}.flatten", spec.path),
            "a GSLB name at the zone apex is always flattened: a CNAME cannot stand at the apex (it would hide SOA and NS)".into(),
        );
    }
    let flatten = spec.flatten.unwrap_or(at_apex);
    let is_host = |id: DatacenterId| {
        dcs.list
            .get(id.0 as usize)
            .is_some_and(|d| d.target.is_some())
    };
    let pool_ids: FxHashMap<&str, PoolId> = spec
        .pools
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), PoolId(i as u32)))
        .collect();
    let pool_names: Vec<&str> = spec.pools.iter().map(|p| p.name.as_str()).collect();
    let mut pools = Vec::with_capacity(spec.pools.len());
    for p in &spec.pools {
        let mut members = Vec::with_capacity(p.members.len());
        for m in &p.members {
            match dcs.by_name.get(&m.dc) {
                Some(&id) => {
                    if members.iter().any(|x: &Member| x.dc == id) {
                        err(
                            errs,
                            file,
                            &p.member_path(m),
                            format!("datacenter {} is already in this pool", shown(&m.dc)),
                        );
                        continue;
                    }
                    let weight = m.weight.unwrap_or(dcs.list[id.0 as usize].weight);
                    members.push(Member {
                        dc: id,
                        weight,
                        bias_km: m.bias_km,
                    });
                }
                None => {
                    let known: Vec<&str> = dcs.by_name.keys().map(String::as_str).collect();
                    err(
                        errs,
                        file,
                        &p.member_path(m),
                        format!(
                            "unknown datacenter {} (declared: {})",
                            shown(&m.dc),
                            list(&known)
                        ),
                    );
                }
            }
        }
        if members.len() > MAX_MEMBERS {
            err(
                errs,
                file,
                &p.path,
                format!("a pool has at most {MAX_MEMBERS} datacenters"),
            );
        }
        if !flatten && p.policy.answers_all() {
            let hosts: Vec<&str> = members
                .iter()
                .filter(|m| is_host(m.dc))
                .map(|m| &*dcs.list[m.dc.0 as usize].name)
                .collect();
            if !hosts.is_empty() {
                err(
                    errs,
                    file,
                    &format!("{}.policy", p.path),
                    format!(
                        "policy \"all\" with hostname datacenters ({}) needs flatten = true on the name: one answer cannot hold several CNAMEs",
                        hosts.join(", ")
                    ),
                );
            }
        }
        let mut pool = Pool::new(&p.name, members, p.policy.clone());
        if let Some((f, path)) = &p.fallback {
            match pool_ids.get(f.as_str()) {
                Some(&id) => pool.fallback = Some(id),
                None => err(
                    errs,
                    file,
                    path,
                    format!(
                        "unknown pool {} (this name's pools: {})",
                        shown(f),
                        list(&pool_names)
                    ),
                ),
            }
        }
        pools.push(pool);
    }
    // Fallback cycles: following fallbacks from any pool must end.
    for (i, p) in pools.iter().enumerate() {
        let mut seen = vec![i];
        let mut cur = p.fallback;
        while let Some(PoolId(n)) = cur {
            let n = n as usize;
            if seen.contains(&n) {
                let chain: Vec<&str> = seen
                    .iter()
                    .map(|&k| pools[k].name.as_ref())
                    .chain([pools[n].name.as_ref()])
                    .collect();
                err(
                    errs,
                    file,
                    &format!("{}.fallback", spec.pools[i].path),
                    format!("fallback cycle: {}", chain.join(" -> ")),
                );
                break;
            }
            seen.push(n);
            cur = pools.get(n).and_then(|x| x.fallback);
        }
    }
    let mut rules = Vec::with_capacity(spec.rules.len());
    let mut catch_all: Option<&str> = None;
    for r in &spec.rules {
        if let Some(prev) = catch_all {
            err(
                errs,
                file,
                &r.path,
                format!("comes after the catch-all rule {prev} and can never match"),
            );
        }
        if r.matches.is_empty() {
            catch_all = Some(&r.path);
        }
        match pool_ids.get(r.pool.as_str()) {
            Some(&id) => rules.push(Rule {
                matches: r.matches.clone(),
                pool: id,
            }),
            None if r.pool.is_empty() => {}
            None => err(
                errs,
                file,
                &format!("{}.pool", r.path),
                format!(
                    "unknown pool {} (this name's pools: {})",
                    shown(&r.pool),
                    list(&pool_names)
                ),
            ),
        }
    }
    if !spec.rules.is_empty() && catch_all.is_none() {
        err(
            errs,
            file,
            &format!("{}.rules", spec.path),
            "has no catch-all: end with a rule without `match`, e.g. { pool = \"world\" }".into(),
        );
    }
    if spec.rules.is_empty() && spec.pools.len() > 1 {
        err(
            errs,
            file,
            &format!("{}.rules", spec.path),
            "is required when a name has several pools (which clients use which pool?)".into(),
        );
    }
    if !flatten && spec.answers > 1 {
        let mut hosts: Vec<&str> = pools
            .iter()
            .flat_map(|p| p.members.iter())
            .filter(|m| is_host(m.dc))
            .map(|m| &*dcs.list[m.dc.0 as usize].name)
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        if !hosts.is_empty() {
            err(
                errs,
                file,
                &format!("{}.answers", spec.path),
                format!(
                    "answers = {} with hostname datacenters ({}) needs flatten = true: one answer cannot hold several CNAMEs",
                    spec.answers,
                    hosts.join(", ")
                ),
            );
        }
    }
    if errs.len() > start {
        return None;
    }
    Some(GslbName {
        ttl: spec.ttl,
        rules,
        pools,
        answers: spec.answers,
        all_down: spec.all_down.clone(),
        flatten,
    })
}

/// Places GSLB name `id` in `zone` at `owner`, with empty non-terminals above it; reports a
/// clash with static data there. `cname`: the name may answer a CNAME, so it can hold no
/// other data at all.
pub(crate) fn place(
    zone: &mut Zone,
    owner: &Name,
    id: u32,
    cname: bool,
    file: &Path,
    path: &str,
    errs: &mut Vec<ConfigError>,
) {
    let key = wire_key(owner);
    // A cut is a node of the zone: look at the name's ancestors (a few lookups), not at every
    // node (which made placing many names quadratic).
    let below_cut = zone.has_cuts
        && ancestors(&key)
            .take_while(|a| a.len() > zone.apex.len())
            .any(|a| zone.node(a).is_some_and(|n| n.cut));
    if below_cut {
        err(
            errs,
            file,
            path,
            "is below a delegation (NS) in this zone".into(),
        );
        return;
    }
    if zone.node(&key).is_some_and(|node| {
        node.cut
            || node.cname.is_some()
            || node.rrset(TYPE_A).is_some()
            || node.rrset(TYPE_AAAA).is_some()
    }) {
        err(
            errs,
            file,
            path,
            format!(
                "{owner} also has static A, AAAA, CNAME or NS records: a GSLB name owns its A/AAAA answers"
            ),
        );
        return;
    }
    if let Some(node) = zone.node(&key) {
        if node.alias.is_some() {
            err(
                errs,
                file,
                path,
                format!("{owner} also has an ALIAS: a GSLB name owns its A/AAAA answers"),
            );
            return;
        }
        if cname && !node.rrsets.is_empty() {
            let types: Vec<String> = node
                .rrsets
                .iter()
                .map(|r| {
                    crate::rr::TYPES
                        .iter()
                        .find(|t| t.code == r.rtype)
                        .map_or_else(|| format!("TYPE{}", r.rtype), |t| t.name.to_string())
                })
                .collect();
            err(
                errs,
                file,
                path,
                format!(
                    "{owner} may answer a CNAME (hostname datacenters, flatten = false), and a CNAME owner holds no other data (RFC 1034), but it also has static {}: set flatten = true or move them",
                    types.join(", ")
                ),
            );
            return;
        }
    }
    zone.nodes.set_gslb(&key, id);
    zone.gslb_count += 1;
    add_empty_ancestors(&mut zone.nodes, &key, zone.apex.len());
}

/// Places an `ALIAS` in `zone`: A and AAAA at its owner come from the target's addresses.
/// Not beside A, AAAA or CNAME, not at or below a delegation.
pub(crate) fn place_alias(
    zone: &mut Zone,
    spec: &AliasSpec,
    hosts: &mut Hosts,
    file: &Path,
    errs: &mut Vec<ConfigError>,
) {
    let key = wire_key(&spec.owner);
    let below_cut = zone.has_cuts
        && ancestors(&key)
            .take_while(|a| a.len() > zone.apex.len())
            .any(|a| zone.node(a).is_some_and(|n| n.cut));
    if below_cut {
        err(
            errs,
            file,
            &spec.path,
            "is below a delegation (NS) in this zone".into(),
        );
        return;
    }
    if let Some(node) = zone.node(&key) {
        if node.cut {
            err(
                errs,
                file,
                &spec.path,
                "is at a delegation point (NS below the apex): the data belongs in the child zone"
                    .into(),
            );
            return;
        }
        if node.gslb.is_some() {
            err(
                errs,
                file,
                &spec.path,
                "the name is a GSLB name, which owns its A/AAAA answers: not together with an ALIAS"
                    .into(),
            );
            return;
        }
        let clash: Vec<&str> = [
            (TYPE_A, "A"),
            (TYPE_AAAA, "AAAA"),
            (crate::rr::TYPE_CNAME, "CNAME"),
        ]
        .iter()
        .filter(|(t, _)| node.rrset(*t).is_some())
        .map(|(_, n)| *n)
        .collect();
        if !clash.is_empty() {
            err(
                errs,
                file,
                &spec.path,
                format!(
                    "an ALIAS answers A and AAAA itself: not together with {} on the same name",
                    clash.join(", ")
                ),
            );
            return;
        }
        if wire_key(&spec.target) == key {
            err(
                errs,
                file,
                &spec.path,
                "points at its own name: a loop".into(),
            );
            return;
        }
        let host = hosts.add(&spec.target);
        hosts.used(host, None, file, &spec.path, true);
        zone.nodes.set_alias(
            &key,
            Alias {
                target: host,
                ttl: spec.ttl,
            },
        );
        return;
    }
    // An owner with nothing but the ALIAS.
    let host = hosts.add(&spec.target);
    hosts.used(host, None, file, &spec.path, true);
    zone.nodes.set_alias(
        &key,
        Alias {
            target: host,
            ttl: spec.ttl,
        },
    );
    add_empty_ancestors(&mut zone.nodes, &key, zone.apex.len());
}

/// Gives each hostname datacenter's probe what it needs once the targets' lookups are known:
/// the local addresses (probed like declared ones), or the remote name (probed at run time at
/// whatever it resolves to), and checks that name the target in `Host` and SNI (`http`,
/// `https`, `tls`) unless they name a host themselves. A check on a datacenter whose target is
/// one of our GSLB names is refused (its addresses depend on the client).
pub(crate) fn hostname_probes(
    config: &Config,
    dcs: &mut Datacenters,
    hosts: &Hosts,
    errs: &mut Vec<ConfigError>,
) {
    for (i, d) in dcs.list.iter().enumerate() {
        let Some(h) = d.target else { continue };
        let host = &hosts.list[h.0 as usize];
        let probe = &mut dcs.probes[i];
        match &host.lookup {
            Lookup::Local { v4, v6, .. } => {
                probe.addresses = v4
                    .iter()
                    .map(|a| IpAddr::V4(*a))
                    .chain(v6.iter().map(|a| IpAddr::V6(*a)))
                    .collect();
            }
            Lookup::Remote(n) => probe.hostname = Some(n.to_string()),
            Lookup::Gslb(_) => {
                if !probe.checks.is_empty() {
                    let at = config
                        .files
                        .iter()
                        .flat_map(|f| f.datacenters.iter().map(move |s| (f, s)))
                        .find(|(_, s)| s.name == *d.name);
                    if let Some((f, s)) = at {
                        let key = s
                            .checks
                            .first()
                            .map_or_else(|| format!("{}.check", s.path), |(_, p)| p.clone());
                        err(
                            errs,
                            &f.file,
                            &key,
                            format!(
                                "the target {} is a GSLB name served here: its addresses depend on the client, so there is nothing fixed to probe (check its datacenters instead)",
                                host.name
                            ),
                        );
                    }
                }
            }
        }
        let name = host.name.to_ascii().trim_end_matches('.').to_string();
        for c in &mut probe.checks {
            match &mut c.spec.kind {
                CheckKind::Http(h) if h.host.is_none() => h.host = Some(name.clone()),
                CheckKind::Tls(t) if t.host.is_none() => t.host = Some(name.clone()),
                _ => {}
            }
        }
    }
}

/// Longest TTL any name hands out for each datacenter (drain completes after it).
pub(crate) fn max_ttls(dcs: &mut Datacenters, names: &[GslbEntry]) {
    let mut max = vec![0u32; dcs.list.len()];
    for n in names {
        for p in &n.def.pools {
            for m in &p.members {
                if let Some(x) = max.get_mut(m.dc.0 as usize) {
                    *x = (*x).max(n.def.ttl);
                }
            }
        }
    }
    for (p, t) in dcs.probes.iter_mut().zip(max) {
        p.max_ttl = Duration::from_secs(u64::from(t));
    }
}

/// Builds the probe plan of `dcs` and reports what cannot be probed at the datacenter's own
/// file and key (`min-up` larger than the probed addresses, `check-addresses = []`...), so
/// `gslbd check` refuses what `serve` would.
pub(crate) fn plan(config: &Config, dcs: &mut Datacenters, errs: &mut Vec<ConfigError>) {
    match ProbeSet::build_all(&dcs.probes) {
        Ok(set) => dcs.plan = Arc::new(set),
        Err(list) => {
            for e in list {
                let name = dcs.probes.get(e.dc()).map(|p| p.name.as_str());
                let at = config
                    .files
                    .iter()
                    .flat_map(|f| f.datacenters.iter().map(move |d| (f, d)))
                    .find(|(_, d)| Some(d.name.as_str()) == name);
                match at {
                    Some((f, d)) => {
                        // A check's error is reported where the datacenter names that check.
                        let path = match (e.key(), e.check()) {
                            ("check", Some(c)) => d
                                .checks
                                .iter()
                                .rev()
                                .find(|(n, _)| n == c)
                                .map_or_else(|| format!("{}.check", d.path), |(_, p)| p.clone()),
                            ("require", _) => d
                                .require
                                .as_ref()
                                .map_or_else(|| format!("{}.require", d.path), |r| r.1.clone()),
                            (key, _) => format!("{}.{key}", d.path),
                        };
                        err(errs, &f.file, &path, e.detail())
                    }
                    None => {
                        let file = config.files.first().map_or(Path::new(""), |f| &f.file);
                        err(errs, file, "", e.to_string());
                    }
                }
            }
        }
    }
}
