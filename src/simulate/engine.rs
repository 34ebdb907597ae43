//! The run: one virtual clock, two queues of events, the real decision code in between.
//!
//! ```text
//! health queue (time, kind): scenario events, incident edges, probe results, probe dues
//!    + the aggregator's tick every publish interval
//!        due    -> Probes::probe -> result at due+latency (or timeout)
//!        result -> Aggregator::apply, publish (coalesced) -> snapshot
//!        tick   -> Aggregator::tick -> snapshot
//!        admin  -> Aggregator::admin_command (publishes at once)
//!        pushed -> Aggregator::input_command (a verdict of the health API; publishes at once)
//!        zones  -> the new model (a new aggregator, carried over, when the datacenters changed)
//! stream queue (time, stream): before each stream event, the health queue runs up to it
//!        query  -> the resolver's cache (TTL, ECS scope) or gslbd: client_for -> select ->
//!                  response_scope; the client holds the answer until the entry expires
//!        expire -> the client stops holding it; its next query comes after an exponential
//!                  wait (Poisson queries)
//! ```
//!
//! Accounting (expected values): a client stream holding an answer from `a` to its expiry
//! `e` sends one query at `a` and `rate x (e - a)` more until `e`; those go to the answer's
//! addresses in equal parts. The last query before `e` comes an exponential wait earlier
//! (time reversal of the Poisson process), which is what "the last client sent there" uses.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;
use tokio::time::Instant;

use super::clients::{Caches, Entry, World};
use super::probes::{Clock, ProbeCtx, Probes};
use super::report::{DcReport, Incident, Mark, NameReport, Report, Series, Share};
use super::scenario::{Action, Scenario, Subject, fmt_duration};
use super::tally::{Tallies, Traffic};
use super::truth::{Period, Truth, containing, overlap};
use super::{Ns, Rng, SimError, ns, secs};
use crate::dns::wire::ClientSubnet;
use crate::geo::{CONTINENTS, GeoDb};
use crate::gslb::{client_for, decide, response_scope};
use crate::health::aggregator::{Aggregator, AggregatorSettings};
use crate::health::input::{
    Source as PushSource, SourceKind, Subject as PushSubject, Update, Verdict,
};
use crate::health::{AdminState, Publish, Snapshot};
use crate::model::Model;
use crate::net::{self, Family};
use crate::policy::{AnswerKind, NoTrace, QueryInput, Source};
use crate::probe::ProbeResult;

/// Resolvers keep a SERVFAIL this long (RFC 9520 asks for at least 1 s, at most 5 min).
const SERVFAIL_TTL: u32 = 5;
/// Special targets after the datacenters.
const LAST_RESORT: usize = 0;
const NODATA: usize = 1;
const SERVFAIL: usize = 2;
const SPECIAL: [&str; 3] = ["(last-resort)", "(nodata)", "(servfail)"];
/// No answer held.
const NONE: u32 = u32::MAX;
/// Nice bucket widths, the smallest that gives at most 600 buckets is taken.
const STEPS_MS: [u64; 17] = [
    10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000,
    300_000, 600_000, 3_600_000,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HKind {
    Scenario(usize),
    Edge,
    Result(usize),
    Due { generation: u32, target: usize },
}

/// A client's questions for one name and type.
#[derive(Clone, Debug)]
struct Stream {
    client: u32,
    name: u32,
    family: Family,
    rate: f64,
    /// The answer held, `NONE` between expiry and the next query.
    held: u32,
    since: Ns,
    until: Ns,
    /// The last answer held (for flips).
    prev: u32,
    /// Continents of the first answer.
    home: u8,
    region_changed: bool,
    flips: u32,
    flaps: u32,
}

/// One address of an answer.
#[derive(Clone, Debug)]
struct AddrRef {
    dc: usize,
    w: f64,
    /// Index into `Engine::periods` (down periods of this datacenter and address).
    periods: usize,
    /// Incidents that concern this address.
    incidents: Vec<usize>,
}

/// An answer, interned.
#[derive(Clone, Debug)]
struct AnswerInfo {
    /// (target, weight): datacenters, or a special target.
    targets: Vec<(usize, f64)>,
    addrs: Vec<AddrRef>,
    /// Identity of the set of datacenters (flips compare it).
    sig: u32,
    /// The datacenters, each once.
    dcs: Vec<usize>,
    /// Continents (bits in `CONTINENTS` order).
    region: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IncKind {
    Down,
    AddrDown,
    Drain,
    AdminDown,
    /// One check of the datacenter fails (the others pass).
    CheckDown,
    /// A pushed verdict says down (until it is withdrawn, replaced or expires).
    PushedDown,
}

#[derive(Clone, Debug)]
struct Inc {
    kind: IncKind,
    dc: usize,
    addr: Option<IpAddr>,
    /// The check, for `CheckDown`.
    check: Option<String>,
    start: Ns,
    /// `end` of the run when it lasts to the end (`open`).
    end: Ns,
    open: bool,
    flap: Option<usize>,
    /// Detection is looked for until this time (the next incident of the same subject).
    horizon: Ns,
    detected: Option<Ns>,
    recovered: Option<Ns>,
    last_sent: Option<Ns>,
    undrained: bool,
    sent: f64,
    note: Option<String>,
}

/// The whole simulation state.
pub(crate) struct Engine<'a> {
    scen: &'a Scenario,
    geo: &'a GeoDb,
    zones_dir: PathBuf,
    models: Vec<Arc<Model>>,
    /// Which model each zone-change event switches to.
    event_model: FxHashMap<usize, usize>,
    cur: usize,
    dc_names: Vec<String>,
    dc_region: Vec<u8>,
    /// Per model: model datacenter id -> global index.
    dc_global: Vec<Vec<usize>>,
    /// Per model: global index -> model datacenter id.
    dc_model: Vec<Vec<Option<u32>>>,
    names: Vec<String>,
    /// Per model: global name -> index in `Model::gslb`.
    name_entry: Vec<Vec<Option<usize>>>,
    /// Per model: global name -> negative TTL of its zone.
    neg_ttl: Vec<Vec<u32>>,
    truth: Truth,
    world: World,
    streams: Vec<Stream>,
    caches: Caches,
    answers: Vec<AnswerInfo>,
    answer_ids: FxHashMap<(u8, Vec<(usize, IpAddr)>), u32>,
    sigs: FxHashMap<Vec<usize>, u32>,
    periods: Vec<Vec<Period>>,
    period_ids: FxHashMap<(usize, IpAddr), usize>,
    tallies: Tallies,
    traffic: Traffic,
    clock: Clock,
    warm: Ns,
    end: Ns,
    settings: AggregatorSettings,
    agg: Aggregator,
    sink: Arc<ArcSwap<Snapshot>>,
    snap: Arc<Snapshot>,
    probes: Probes,
    generation: u32,
    heap: BinaryHeap<Reverse<(Ns, u8, u64, HKind)>>,
    /// (time, stream << 1 | 1 for a query, 0 for an expiry).
    stream_heap: BinaryHeap<Reverse<(Ns, u64)>>,
    seq: u64,
    /// Probe results waiting for their time, with the probe plan generation they belong to.
    results: Vec<Option<(u32, ProbeResult)>>,
    free: Vec<usize>,
    next_tick: Ns,
    tick: Ns,
    rng_probe: Rng,
    rng_query: Rng,
    rng_policy: Rng,
    rotation: u64,
    decisions: u64,
    publications: u64,
    incs: Vec<Inc>,
    incs_of_dc: Vec<Vec<usize>>,
    marks: Vec<Mark>,
    /// What the last snapshot showed per global datacenter: (healthy, addr_up).
    seen: Vec<Option<(bool, u64)>>,
    to_down_name: Vec<f64>,
    to_down_dc: Vec<f64>,
}

fn norm(name: &str) -> String {
    let mut n = name.trim().to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

fn load_model(dir: &Path) -> Result<Model, SimError> {
    crate::config::load(dir).map_err(|errors| SimError::Zones {
        dir: dir.to_path_buf(),
        errors,
    })
}

/// The continent bit of a datacenter: the scenario's, else the continent of the country
/// whose representative point is nearest its coordinates.
fn region_bit(coords: Option<(f64, f64)>, given: Option<[u8; 2]>) -> u8 {
    let tables = crate::config::country_tables();
    let cont = given.or_else(|| {
        let c = coords?;
        tables
            .countries()
            .filter_map(|cc| {
                Some((
                    crate::policy::rank::haversine_km(c, tables.centroid(cc)?),
                    cc,
                ))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .and_then(|(_, cc)| tables.continent(cc))
    });
    cont.and_then(|c| CONTINENTS.iter().position(|x| *x == c))
        .map_or(0, |i| 1 << i)
}

fn region_name(bits: u8) -> Option<String> {
    (bits != 0).then(|| {
        CONTINENTS
            .iter()
            .enumerate()
            .filter(|(i, _)| bits >> i & 1 == 1)
            .map(|(_, c)| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("+")
    })
}

impl<'a> Engine<'a> {
    pub(crate) fn build(
        zones: &Path,
        scen: &'a Scenario,
        geo: &'a GeoDb,
    ) -> Result<Engine<'a>, SimError> {
        let mut models = vec![Arc::new(load_model(zones)?)];
        let mut event_model = FxHashMap::default();
        // The model active at each event (zone changes switch it).
        let mut active = Vec::with_capacity(scen.events.len());
        for (i, e) in scen.events.iter().enumerate() {
            if let Action::Zones(dir) = &e.action {
                models.push(Arc::new(load_model(dir)?));
                event_model.insert(i, models.len() - 1);
            }
            active.push(models.len() - 1);
        }
        // Global datacenters: every model's, in order of first appearance.
        let mut dc_names: Vec<String> = Vec::new();
        let mut dc_info: Vec<(Option<(f64, f64)>, f64)> = Vec::new();
        let mut dc_global = Vec::new();
        for m in &models {
            let mut map = Vec::new();
            for d in &m.datacenters.list {
                let i = match dc_names.iter().position(|n| **n == *d.name) {
                    Some(i) => i,
                    None => {
                        dc_names.push(d.name.to_string());
                        dc_info.push((d.coords, d.capacity));
                        dc_names.len() - 1
                    }
                };
                map.push(i);
            }
            dc_global.push(map);
        }
        let dc_model: Vec<Vec<Option<u32>>> = dc_global
            .iter()
            .map(|map| {
                let mut v = vec![None; dc_names.len()];
                for (id, &g) in map.iter().enumerate() {
                    v[g] = Some(id as u32);
                }
                v
            })
            .collect();
        let mut errors: Vec<(String, String)> = Vec::new();
        let known = |list: &[String]| list.join(", ");
        for (name, t) in &scen.datacenters {
            if !dc_names.contains(name) {
                errors.push((
                    t.path.clone(),
                    format!(
                        "no datacenter {name:?} in the zones (they have {})",
                        known(&dc_names)
                    ),
                ));
            }
        }
        // Which datacenter each address belongs to (answer or check address), per model.
        let owner_of = |m: &Model, ip: IpAddr| -> Option<usize> {
            m.datacenters.list.iter().enumerate().find_map(|(i, d)| {
                let answers =
                    d.v4.iter()
                        .map(|a| IpAddr::V4(*a))
                        .chain(d.v6.iter().map(|a| IpAddr::V6(*a)));
                let checks = m.datacenters.probes[i]
                    .check_addresses
                    .iter()
                    .flatten()
                    .copied();
                answers
                    .chain(checks)
                    .any(|a| a.to_canonical() == ip)
                    .then_some(i)
            })
        };
        let mut addr_dc: FxHashMap<IpAddr, usize> = FxHashMap::default();
        for (i, e) in scen.events.iter().enumerate() {
            let m = &models[active[i]];
            let at = fmt_duration(e.at);
            match &e.subject {
                Some(Subject::Datacenter(n)) if m.datacenters.id_of(n).is_none() => {
                    let names: Vec<String> =
                        m.datacenters.list.iter().map(|d| d.name.to_string()).collect();
                    errors.push((
                        crate::walk::join(&e.path, "datacenter"),
                        format!(
                            "no datacenter {n:?} in the zones active at {at} (they have {})",
                            known(&names)
                        ),
                    ));
                }
                Some(Subject::Address(a)) => match owner_of(m, *a) {
                    Some(id) => {
                        addr_dc.insert(*a, dc_global[active[i]][id]);
                    }
                    None => errors.push((
                        crate::walk::join(&e.path, "address"),
                        format!(
                            "{a} is no answer or check address of a datacenter in the zones active at {at}"
                        ),
                    )),
                },
                _ => {}
            }
            // A pushed verdict names an answer address (the health API's `address`).
            if let (Action::Pushed { .. }, Some(Subject::Address(a))) = (&e.action, &e.subject) {
                let answers = m.datacenters.list.iter().any(|d| {
                    d.v4.iter().any(|x| IpAddr::V4(*x) == *a)
                        || d.v6.iter().any(|x| IpAddr::V6(*x) == *a)
                });
                if !answers {
                    errors.push((
                        crate::walk::join(&e.path, "address"),
                        format!("{a} is no answer address in the zones active at {at}: a pushed verdict names an answer address"),
                    ));
                }
            }
            // A check-only failure names one of the datacenter's checks.
            if let (Some(c), Some(Subject::Datacenter(n))) = (&e.check, &e.subject)
                && let Some(id) = m.datacenters.id_of(n)
            {
                let checks: Vec<&str> = m.datacenters.probes[id.0 as usize]
                    .checks
                    .iter()
                    .map(|x| x.name.as_str())
                    .collect();
                if !checks.contains(&c.as_str()) {
                    errors.push((
                        crate::walk::join(&e.path, "check"),
                        format!(
                            "datacenter {n:?} has no check {c:?} in the zones active at {at} (it has {})",
                            if checks.is_empty() { "none".to_string() } else { checks.join(", ") }
                        ),
                    ));
                }
            }
        }
        // The names asked.
        let entry_name = |m: &Model, i: usize| norm(&m.gslb[i].owner.to_ascii());
        let mut names: Vec<String> = Vec::new();
        for p in &scen.populations {
            match &p.names {
                None => {
                    // Every GSLB name the simulator can model (not those of hostname
                    // datacenters, below).
                    for i in (0..models[0].gslb.len()).filter(|&i| !models[0].gslb[i].has_hostnames)
                    {
                        let n = entry_name(&models[0], i);
                        if !names.contains(&n) {
                            names.push(n);
                        }
                    }
                }
                Some(list) => {
                    for (path, n) in list {
                        let n = norm(n);
                        let exists = models
                            .iter()
                            .any(|m| (0..m.gslb.len()).any(|i| entry_name(m, i) == n));
                        if !exists {
                            let all: Vec<String> = (0..models[0].gslb.len())
                                .map(|i| entry_name(&models[0], i))
                                .collect();
                            errors.push((
                                path.clone(),
                                format!(
                                    "{n} is not a GSLB name of the zones (they have {})",
                                    known(&all)
                                ),
                            ));
                        } else if !names.contains(&n) {
                            names.push(n);
                        }
                    }
                }
            }
        }
        // Hostname datacenters (a `target` name instead of addresses) answer what a resolver
        // finds for them at run time: that resolution is not modelled, so a name that may
        // answer one is refused rather than simulated wrongly.
        for (mi, m) in models.iter().enumerate() {
            for n in &names {
                let Some(e) = (0..m.gslb.len()).find(|&i| entry_name(m, i) == *n) else {
                    continue;
                };
                if !m.gslb[e].has_hostnames {
                    continue;
                }
                let hosts: Vec<String> = m.gslb[e]
                    .def
                    .pools
                    .iter()
                    .flat_map(|p| p.members.iter())
                    .filter_map(|mb| m.datacenters.list.get(mb.dc.0 as usize))
                    .filter(|d| d.target.is_some())
                    .map(|d| d.name.to_string())
                    .collect();
                let path = scen
                    .populations
                    .iter()
                    .flat_map(|p| p.names.iter().flatten())
                    .find(|(_, x)| norm(x) == *n)
                    .map_or_else(|| "populations".to_string(), |(p, _)| p.clone());
                let which = if mi == 0 {
                    "the zones"
                } else {
                    "a zone change's zones"
                };
                let msg = format!(
                    "{n} may answer hostname datacenter(s) {} of {which}: gslbd simulate does not model their resolution; ask other names (`names`)",
                    hosts.join(", ")
                );
                if !errors.iter().any(|(_, m)| *m == msg) {
                    errors.push((path, msg));
                }
            }
        }
        if names.is_empty() && errors.is_empty() {
            errors.push((
                "populations".into(),
                "the zones have no GSLB name to ask".into(),
            ));
        }
        let world = match World::build(&scen.populations, geo, scen.run.seed) {
            Ok(w) => Some(w),
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        if !errors.is_empty() {
            return Err(scen.errors(errors).into());
        }
        let world = world.expect("checked above");
        let name_entry: Vec<Vec<Option<usize>>> = models
            .iter()
            .map(|m| {
                names
                    .iter()
                    .map(|n| (0..m.gslb.len()).find(|&i| entry_name(m, i) == *n))
                    .collect()
            })
            .collect();
        let neg_ttl: Vec<Vec<u32>> = models
            .iter()
            .zip(&name_entry)
            .map(|(m, ents)| {
                ents.iter()
                    .map(|e| {
                        e.and_then(|i| m.zones.get(m.gslb[i].zone as usize))
                            .map_or(60, |z| z.soa_negative.ttl)
                    })
                    .collect()
            })
            .collect();

        // Times: warm-up, end, buckets.
        let run = &scen.run;
        let longest_check = models
            .iter()
            .flat_map(|m| m.datacenters.probes.iter())
            .flat_map(|p| p.checks.iter())
            .map(|c| c.spec.interval * (c.spec.rise + c.spec.fall + 2))
            .max()
            .unwrap_or_default();
        let longest_ttl = name_entry[0]
            .iter()
            .flatten()
            .map(|&i| models[0].gslb[i].def.ttl)
            .max()
            .unwrap_or(0);
        let longest_cache = scen
            .populations
            .iter()
            .filter(|p| p.resolvers.cache)
            .map(|p| {
                let r = &p.resolvers;
                let mut l = Duration::from_secs(u64::from(longest_ttl));
                if let Some(m) = r.min_ttl.filter(|m| m.share > 0.0) {
                    l = l.max(m.ttl);
                }
                if let Some(i) = r.ignore_ttl.filter(|i| i.share > 0.0) {
                    l = l.max(i.ttl);
                }
                l
            })
            .max()
            .unwrap_or_default()
            .min(Duration::from_secs(3600));
        let warmup = run.warmup.unwrap_or_else(|| {
            Duration::from_secs(60)
                .max(longest_check)
                .max(longest_cache)
        });
        let warm = ns(warmup);
        let end = warm + ns(run.duration);
        let step = run.step.map_or_else(
            || {
                let want = run.duration.as_millis() as u64 / 600;
                let ms = STEPS_MS
                    .iter()
                    .copied()
                    .find(|s| *s >= want)
                    .unwrap_or(3_600_000);
                ns(Duration::from_millis(ms))
            },
            ns,
        );
        let buckets = ns(run.duration).div_ceil(step).max(1) as usize;
        let n_targets = dc_names.len() + SPECIAL.len();
        let tallies = Tallies {
            warm,
            end,
            step,
            buckets,
            targets: n_targets,
            acc: (0..names.len() * n_targets).map(|_| None).collect(),
        };

        let dcs_for_truth: Vec<(String, f64)> = dc_names
            .iter()
            .zip(&dc_info)
            .map(|(n, (_, cap))| (n.clone(), *cap))
            .collect();
        let truth = Truth::build(scen, &dcs_for_truth, warm, end);
        let dc_region: Vec<u8> = dc_names
            .iter()
            .zip(&dc_info)
            .map(|(n, (coords, _))| {
                let given = scen
                    .datacenters
                    .iter()
                    .find(|(x, _)| x == n)
                    .and_then(|(_, t)| t.region);
                region_bit(*coords, given)
            })
            .collect();

        // Streams: client x name x type.
        let mut streams = Vec::new();
        for (ci, c) in world.clients.iter().enumerate() {
            let p = &scen.populations[world.population[ci] as usize];
            let _ = c;
            let asked: Vec<usize> = match &p.names {
                None => (0..models[0].gslb.len())
                    .filter_map(|i| names.iter().position(|n| *n == entry_name(&models[0], i)))
                    .collect(),
                Some(list) => list
                    .iter()
                    .filter_map(|(_, n)| names.iter().position(|x| *x == norm(n)))
                    .collect(),
            };
            for g in asked {
                for &family in &p.qtypes {
                    streams.push(Stream {
                        client: ci as u32,
                        name: g as u32,
                        family,
                        rate: p.rate,
                        held: NONE,
                        since: 0,
                        until: 0,
                        prev: NONE,
                        home: 0,
                        region_changed: false,
                        flips: 0,
                        flaps: 0,
                    });
                }
            }
        }

        // Health: the real aggregator on virtual time.
        let clock = Clock {
            base: Instant::now(),
        };
        let settings = AggregatorSettings {
            startup: run.startup,
            ..AggregatorSettings::default()
        };
        let sink = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
        let plan = models[0].datacenters.plan.clone();
        let (agg, _handle) = Aggregator::new(
            plan.clone(),
            settings.clone(),
            sink.clone() as Arc<dyn Publish>,
        )
        .map_err(|e| SimError::Output {
            path: PathBuf::from("(state)"),
            source: std::io::Error::other(e.to_string()),
        })?;
        let snap = agg.snapshot();
        let (probes, first) = Probes::start(plan, run.seed, 0, clock, &dc_global[0]);
        let n_dcs = dc_names.len();
        let mut e = Engine {
            scen,
            geo,
            zones_dir: zones.to_path_buf(),
            models,
            event_model,
            cur: 0,
            dc_region,
            dc_global,
            dc_model,
            names,
            name_entry,
            neg_ttl,
            truth,
            world,
            streams,
            caches: Caches::default(),
            answers: Vec::new(),
            answer_ids: FxHashMap::default(),
            sigs: FxHashMap::default(),
            periods: Vec::new(),
            period_ids: FxHashMap::default(),
            tallies,
            traffic: Traffic {
                acc: vec![0.0; n_dcs],
                rate: vec![0.0; n_dcs],
                at: vec![0; n_dcs],
            },
            clock,
            warm,
            end,
            tick: ns(settings.publish_interval.max(Duration::from_millis(1))),
            settings,
            agg,
            sink,
            snap,
            probes,
            generation: 0,
            heap: BinaryHeap::new(),
            stream_heap: BinaryHeap::new(),
            seq: 0,
            results: Vec::new(),
            free: Vec::new(),
            next_tick: 0,
            rng_probe: Rng::new(run.seed, 1),
            rng_query: Rng::new(run.seed, 2),
            rng_policy: Rng::new(run.seed, 3),
            rotation: 0,
            decisions: 0,
            publications: 0,
            incs: Vec::new(),
            incs_of_dc: vec![Vec::new(); n_dcs],
            marks: Vec::new(),
            seen: vec![None; n_dcs],
            to_down_name: Vec::new(),
            to_down_dc: vec![0.0; n_dcs],
            dc_names,
        };
        e.to_down_name = vec![0.0; e.names.len()];
        for (t, i) in first {
            e.push(
                t,
                3,
                HKind::Due {
                    generation: 0,
                    target: i,
                },
            );
        }
        for i in 0..scen.events.len() {
            e.push(warm + ns(scen.events[i].at), 0, HKind::Scenario(i));
        }
        e.build_incidents(&addr_dc);
        e.remember_seen();
        Ok(e)
    }

    fn push(&mut self, t: Ns, prio: u8, k: HKind) {
        self.seq += 1;
        self.heap.push(Reverse((t, prio, self.seq, k)));
    }

    fn build_incidents(&mut self, addr_dc: &FxHashMap<IpAddr, usize>) {
        let end = self.end;
        // Flap windows per subject, to tag the periods they made.
        let mut flaps: Vec<(Option<usize>, Option<IpAddr>, Ns, Ns)> = Vec::new();
        for e in &self.scen.events {
            if let Action::Flap { until, .. } = &e.action {
                let (dc, ip) = match &e.subject {
                    Some(Subject::Datacenter(n)) => {
                        (self.dc_names.iter().position(|x| x == n), None)
                    }
                    Some(Subject::Address(a)) => (None, Some(*a)),
                    None => (None, None),
                };
                flaps.push((dc, ip, self.warm + ns(e.at), self.warm + ns(*until)));
            }
        }
        let flap_of = |dc: Option<usize>, ip: Option<IpAddr>, p: &Period| {
            flaps
                .iter()
                .any(|f| f.0 == dc && f.1 == ip && p.start >= f.2 && p.start < f.3)
        };
        let mut list: Vec<Inc> = Vec::new();
        let new = |kind, dc, addr, p: &Period, flap: Option<usize>| Inc {
            kind,
            dc,
            addr,
            check: None,
            start: p.start,
            end: p.end,
            open: p.end >= end,
            flap,
            horizon: end,
            detected: None,
            recovered: None,
            last_sent: None,
            undrained: false,
            sent: 0.0,
            note: None,
        };
        for (d, t) in self.truth.dcs.iter().enumerate() {
            let mut n = 0;
            for p in &t.down {
                let flap = flap_of(Some(d), None, p).then(|| {
                    n += 1;
                    n
                });
                list.push(new(IncKind::Down, d, None, p, flap));
            }
        }
        let mut addrs: Vec<(&IpAddr, &Vec<Period>)> = self.truth.addrs.iter().collect();
        addrs.sort_by_key(|(a, _)| **a);
        for (a, ps) in addrs {
            let Some(&d) = addr_dc.get(a) else { continue };
            let mut n = 0;
            for p in ps {
                let flap = flap_of(None, Some(*a), p).then(|| {
                    n += 1;
                    n
                });
                list.push(new(IncKind::AddrDown, d, Some(*a), p, flap));
            }
        }
        let mut checks: Vec<(&(usize, String), &Vec<Period>)> = self.truth.checks.iter().collect();
        checks.sort_by(|a, b| a.0.cmp(b.0));
        for ((d, c), ps) in checks {
            // Periods made by a `flap` of this check are numbered, as a datacenter's.
            let windows: Vec<(Ns, Ns)> = self
                .scen
                .events
                .iter()
                .filter(|e| e.check.as_deref() == Some(c.as_str()))
                .filter(|e| {
                    matches!(&e.subject, Some(Subject::Datacenter(n)) if self.dc_names.get(*d) == Some(n))
                })
                .filter_map(|e| match &e.action {
                    Action::Flap { until, .. } => {
                        Some((self.warm + ns(e.at), self.warm + ns(*until)))
                    }
                    _ => None,
                })
                .collect();
            let mut n = 0;
            for p in ps {
                let flap = windows
                    .iter()
                    .any(|w| p.start >= w.0 && p.start < w.1)
                    .then(|| {
                        n += 1;
                        n
                    });
                list.push(Inc {
                    check: Some(c.clone()),
                    ..new(IncKind::CheckDown, *d, None, p, flap)
                });
            }
        }
        // Pushed down: from the verdict until the next verdict about the datacenter, or its
        // expiry (the TTL), whichever comes first.
        let mut pushed: FxHashMap<usize, (Ns, Ns)> = FxHashMap::default();
        let pushed_inc = |d: usize, start: Ns, until: Ns| {
            let p = Period {
                start,
                end: until.min(end),
                fail: Default::default(),
            };
            new(IncKind::PushedDown, d, None, &p, None)
        };
        for e in &self.scen.events {
            let (Action::Pushed { up, ttl, .. }, Some(Subject::Datacenter(n))) =
                (&e.action, &e.subject)
            else {
                continue;
            };
            let Some(d) = self.dc_names.iter().position(|x| x == n) else {
                continue;
            };
            let at = self.warm + ns(e.at);
            if let Some((start, expires)) = pushed.remove(&d) {
                list.push(pushed_inc(d, start, expires.min(at)));
            }
            if *up == Some(false) {
                pushed.insert(d, (at, at + ns(*ttl)));
            }
        }
        let mut rest: Vec<(usize, (Ns, Ns))> = pushed.into_iter().collect();
        rest.sort_by_key(|(d, _)| *d);
        for (d, (start, expires)) in rest {
            list.push(pushed_inc(d, start, expires));
        }
        // Admin: drain and down last until the next admin change of the datacenter.
        let mut open: FxHashMap<usize, (IncKind, Ns)> = FxHashMap::default();
        for e in &self.scen.events {
            let (Action::Admin(state), Some(Subject::Datacenter(n))) = (&e.action, &e.subject)
            else {
                continue;
            };
            let Some(d) = self.dc_names.iter().position(|x| x == n) else {
                continue;
            };
            let at = self.warm + ns(e.at);
            if let Some((k, s)) = open.remove(&d) {
                let p = Period {
                    start: s,
                    end: at,
                    fail: Default::default(),
                };
                list.push(new(k, d, None, &p, None));
            }
            match state {
                AdminState::Drain => {
                    open.insert(d, (IncKind::Drain, at));
                }
                AdminState::Down => {
                    open.insert(d, (IncKind::AdminDown, at));
                }
                AdminState::Obey | AdminState::Up => {}
            }
        }
        let mut rest: Vec<(usize, (IncKind, Ns))> = open.into_iter().collect();
        rest.sort_by_key(|(d, _)| *d);
        for (d, (k, s)) in rest {
            let p = Period {
                start: s,
                end,
                fail: Default::default(),
            };
            list.push(new(k, d, None, &p, None));
        }
        list.sort_by_key(|i| (i.start, i.dc));
        // Detection of an incident is looked for until the next one of the same subject.
        for i in 0..list.len() {
            let next = list[i + 1..]
                .iter()
                .find(|j| {
                    j.dc == list[i].dc
                        && j.addr == list[i].addr
                        && j.check == list[i].check
                        && j.kind == list[i].kind
                })
                .map_or(end, |j| j.start);
            list[i].horizon = next;
        }
        for (i, inc) in list.iter().enumerate() {
            self.incs_of_dc[inc.dc].push(i);
        }
        let edges: Vec<Ns> = list.iter().flat_map(|i| [i.start, i.end]).collect();
        self.incs = list;
        for t in edges {
            if t < end {
                self.push(t, 1, HKind::Edge);
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Health.

    /// Runs the health queue (and the aggregator's ticks) up to and including `t`.
    fn advance(&mut self, t: Ns) {
        loop {
            let next = self.heap.peek().map(|Reverse(e)| e.0);
            match next {
                Some(h) if h <= t && h <= self.next_tick => {
                    let Some(Reverse((at, _, _, kind))) = self.heap.pop() else {
                        break;
                    };
                    self.health_event(at, kind);
                }
                _ if self.next_tick <= t => {
                    let now = self.next_tick;
                    self.next_tick += self.tick;
                    if self.agg.tick(self.clock.at(now)) {
                        self.published(now);
                    }
                }
                _ => break,
            }
        }
    }

    fn health_event(&mut self, t: Ns, kind: HKind) {
        match kind {
            HKind::Due { generation, target } => {
                if generation != self.generation {
                    return;
                }
                let (result, next) = {
                    let traffic = &self.traffic;
                    let mass = |d: usize, at: Ns| traffic.mass(d, at);
                    let rate = |d: usize| traffic.rate[d];
                    let mut ctx = ProbeCtx {
                        truth: &self.truth,
                        rng: &mut self.rng_probe,
                        loss: self.scen.run.probe_loss,
                        mass: &mass,
                        rate: &rate,
                    };
                    self.probes.probe(target, t, self.clock, &mut ctx)
                };
                let at = self.clock.ns(result.at);
                let slot = match self.free.pop() {
                    Some(s) => {
                        self.results[s] = Some((generation, result));
                        s
                    }
                    None => {
                        self.results.push(Some((generation, result)));
                        self.results.len() - 1
                    }
                };
                self.push(at, 2, HKind::Result(slot));
                self.push(next, 3, HKind::Due { generation, target });
            }
            HKind::Result(slot) => {
                let Some((generation, r)) = self.results[slot].take() else {
                    return;
                };
                self.free.push(slot);
                // Results of a replaced probe plan are not applied (the server stops those
                // workers; their ids mean nothing to the new aggregator).
                if generation != self.generation {
                    return;
                }
                self.agg.apply(&r);
                if self.agg.publish(self.clock.at(t)) {
                    self.published(t);
                }
            }
            HKind::Edge => self.update_incidents(t),
            HKind::Scenario(i) => self.scenario_event(i, t),
        }
    }

    fn scenario_event(&mut self, i: usize, t: Ns) {
        let e = &self.scen.events[i];
        let label = e.label.clone().unwrap_or_else(|| describe(e));
        let dc = match &e.subject {
            Some(Subject::Datacenter(n)) => Some(n.clone()),
            Some(Subject::Address(a)) => Some(a.to_string()),
            None => None,
        };
        self.marks.push(Mark {
            at_s: secs(t) - secs(self.warm),
            source: "scenario",
            label,
            datacenter: dc,
        });
        match &e.action {
            Action::Admin(state) => {
                let Some(Subject::Datacenter(n)) = &e.subject else {
                    return;
                };
                if let Some(id) = self.models[self.cur].datacenters.id_of(n) {
                    // Validated against the zones active at this time.
                    let _ = self.agg.admin_command(id.0, *state, self.clock.at(t));
                    self.published(t);
                }
            }
            Action::Zones(_) => {
                if let Some(&k) = self.event_model.get(&i) {
                    self.zone_change(k, t);
                }
            }
            Action::Pushed { up, ttl, load } => {
                let subject = match &e.subject {
                    Some(Subject::Datacenter(n)) => PushSubject::Datacenter(n.clone()),
                    Some(Subject::Address(a)) => PushSubject::AnyAddress(*a),
                    None => return,
                };
                let source = PushSource::new(SourceKind::Pushed, "api");
                let update = match up {
                    Some(up) => Update::Set {
                        source,
                        verdict: Verdict {
                            subject,
                            up: *up,
                            load: *load,
                            reason: e.label.clone().unwrap_or_default(),
                            ttl: *ttl,
                        },
                    },
                    None => Update::Clear { source, subject },
                };
                // Validated against the zones active at this time.
                if self.agg.input_command(update, self.clock.at(t)).is_ok() {
                    self.published(t);
                }
            }
            // The ground truth is fixed in advance (truth.rs); the probes find it.
            Action::Health { .. }
            | Action::Flap { .. }
            | Action::Latency { .. }
            | Action::Load(_) => {}
        }
        self.update_incidents(t);
    }

    /// A reload at `t` to model `k`: the model is swapped; when the datacenters or checks
    /// changed, a new aggregator starts and takes over the admin states and the health of
    /// unchanged targets (what the server does through its state files) and new workers start.
    fn zone_change(&mut self, k: usize, t: Ns) {
        let same = self.models[k].datacenters.probes == self.models[self.cur].datacenters.probes;
        self.cur = k;
        if same {
            return;
        }
        let plan = self.models[k].datacenters.plan.clone();
        let Ok((mut agg, _)) = Aggregator::new(
            plan.clone(),
            self.settings.clone(),
            self.sink.clone() as Arc<dyn Publish>,
        ) else {
            return;
        };
        agg.carry_over(&self.agg, self.clock.at(t));
        self.agg = agg;
        self.generation += 1;
        let (probes, first) =
            Probes::start(plan, self.scen.run.seed, t, self.clock, &self.dc_global[k]);
        self.probes = probes;
        for (due, i) in first {
            self.push(
                due,
                3,
                HKind::Due {
                    generation: self.generation,
                    target: i,
                },
            );
        }
        self.published(t);
    }

    fn remember_seen(&mut self) {
        for g in 0..self.dc_names.len() {
            self.seen[g] = self.dc_model[self.cur][g].map(|id| {
                let s = self.snap.get(id);
                (s.healthy, s.addr_up)
            });
        }
    }

    /// A new snapshot was published at `t`.
    fn published(&mut self, t: Ns) {
        self.snap = self.agg.snapshot();
        if t >= self.warm {
            self.publications += 1;
        }
        let m = self.models[self.cur].clone();
        for g in 0..self.dc_names.len() {
            let now = self.dc_model[self.cur][g].map(|id| {
                let s = self.snap.get(id);
                (s.healthy, s.addr_up)
            });
            if t >= self.warm
                && let (Some((h0, a0)), Some((h1, a1))) = (self.seen[g], now)
            {
                let mut label = None;
                if h0 != h1 {
                    label = Some(format!(
                        "gslbd: {} {}",
                        self.dc_names[g],
                        if h1 { "up" } else { "down" }
                    ));
                } else if a0 != a1 && h1 {
                    let id = self.dc_model[self.cur][g].unwrap_or(0) as usize;
                    let d = &m.datacenters.list[id];
                    let all: Vec<IpAddr> =
                        d.v4.iter()
                            .map(|a| IpAddr::V4(*a))
                            .chain(d.v6.iter().map(|a| IpAddr::V6(*a)))
                            .collect();
                    let changed: Vec<String> = all
                        .iter()
                        .enumerate()
                        .filter(|(b, _)| *b < 64 && (a0 ^ a1) >> b & 1 == 1)
                        .map(|(b, a)| {
                            format!("{a} {}", if a1 >> b & 1 == 1 { "up" } else { "down" })
                        })
                        .collect();
                    if !changed.is_empty() {
                        label = Some(format!(
                            "gslbd: {} {}",
                            self.dc_names[g],
                            changed.join(", ")
                        ));
                    }
                }
                if let Some(label) = label {
                    self.marks.push(Mark {
                        at_s: secs(t) - secs(self.warm),
                        source: "gslbd",
                        label,
                        datacenter: Some(self.dc_names[g].clone()),
                    });
                }
            }
            self.seen[g] = now;
        }
        self.update_incidents(t);
    }

    /// Looks at the current snapshot for every incident that started by `t`.
    fn update_incidents(&mut self, t: Ns) {
        let m = self.models[self.cur].clone();
        for inc in self.incs.iter_mut() {
            if inc.start > t {
                continue;
            }
            let Some(id) = self.dc_model[self.cur][inc.dc] else {
                continue;
            };
            let st = *self.snap.get(id);
            let d = &m.datacenters.list[id as usize];
            let seen_down = match inc.kind {
                IncKind::Down => !st.healthy,
                IncKind::AddrDown => {
                    let bit = inc.addr.and_then(|a| {
                        d.v4.iter()
                            .map(|x| IpAddr::V4(*x))
                            .chain(d.v6.iter().map(|x| IpAddr::V6(*x)))
                            .position(|x| x == a)
                    });
                    match bit {
                        Some(b) if b < 64 => !st.healthy || st.addr_up >> b & 1 == 0,
                        _ => !st.healthy,
                    }
                }
                IncKind::Drain => st.admin == AdminState::Drain,
                IncKind::AdminDown => st.admin == AdminState::Down,
                // gslbd sees a check's failure as the datacenter's when its `require` says so.
                IncKind::CheckDown | IncKind::PushedDown => !st.healthy,
            };
            let probe = &m.datacenters.probes[id as usize];
            if matches!(inc.kind, IncKind::Down | IncKind::AddrDown) && probe.checks.is_empty() {
                inc.note = Some("not seen: the datacenter has no check".into());
                continue;
            }
            if inc.kind == IncKind::CheckDown
                && inc.detected.is_none()
                && probe.require.needed(probe.checks.len()) < probe.checks.len()
            {
                inc.note = Some(format!(
                    "not seen as the datacenter's failure: it needs {} of its {} checks (require = {})",
                    probe.require.needed(probe.checks.len()),
                    probe.checks.len(),
                    probe.require.describe()
                ));
            }
            if inc.detected.is_none() && t < inc.horizon && seen_down {
                inc.detected = Some(t);
            }
            if inc.detected.is_some()
                && inc.recovered.is_none()
                && !inc.open
                && t >= inc.end
                && !seen_down
            {
                let usable = match inc.kind {
                    IncKind::Drain | IncKind::AdminDown | IncKind::PushedDown => st.usable(),
                    _ => true,
                };
                if usable {
                    inc.recovered = Some(t.max(inc.end));
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Clients.

    fn periods_id(&mut self, dc: usize, ip: IpAddr) -> usize {
        if let Some(&i) = self.period_ids.get(&(dc, ip)) {
            return i;
        }
        self.periods.push(self.truth.addr_periods(dc, ip));
        let i = self.periods.len() - 1;
        self.period_ids.insert((dc, ip), i);
        i
    }

    fn intern(&mut self, kind: u8, addrs: Vec<(usize, IpAddr)>) -> u32 {
        let key = (kind, addrs);
        if let Some(&id) = self.answer_ids.get(&key) {
            return id;
        }
        let (kind, addrs) = key;
        let n_dcs = self.dc_names.len();
        let mut info = AnswerInfo {
            targets: Vec::new(),
            addrs: Vec::new(),
            sig: 0,
            dcs: Vec::new(),
            region: 0,
        };
        if addrs.is_empty() {
            let x = match kind {
                1 => LAST_RESORT,
                3 => SERVFAIL,
                _ => NODATA,
            };
            info.targets.push((n_dcs + x, 1.0));
        } else {
            let w = 1.0 / addrs.len() as f64;
            for &(dc, ip) in &addrs {
                let periods = self.periods_id(dc, ip);
                let incidents = self.incs_of_dc[dc]
                    .iter()
                    .copied()
                    .filter(|&i| self.incs[i].addr.is_none_or(|a| a == ip))
                    .collect();
                info.addrs.push(AddrRef {
                    dc,
                    w,
                    periods,
                    incidents,
                });
                match info.targets.iter_mut().find(|(x, _)| *x == dc) {
                    Some(t) => t.1 += w,
                    None => info.targets.push((dc, w)),
                }
                if !info.dcs.contains(&dc) {
                    info.dcs.push(dc);
                }
                info.region |= self.dc_region[dc];
            }
        }
        let mut set = info.dcs.clone();
        set.sort_unstable();
        if set.is_empty() {
            set.push(usize::MAX - usize::from(kind));
        }
        let next = self.sigs.len() as u32;
        info.sig = *self.sigs.entry(set).or_insert(next);
        self.answers.push(info);
        let id = (self.answers.len() - 1) as u32;
        self.answer_ids.insert((kind, addrs), id);
        id
    }

    /// Asks gslbd for stream `si` at `t`: the answer, its TTL and the scope to cache it at.
    fn ask(&mut self, si: usize, t: Ns) -> (u32, u32, u8) {
        if t >= self.warm {
            self.decisions += 1;
        }
        let st = &self.streams[si];
        let (g, family) = (st.name as usize, st.family);
        let client = self.world.clients[st.client as usize];
        let res = &self.world.resolvers[client.resolver as usize];
        let m = self.models[self.cur].clone();
        let Some(ei) = self.name_entry[self.cur][g] else {
            // The name is gone after a zone change: NXDOMAIN, cached like NODATA.
            let id = self.intern(2, Vec::new());
            return (id, 60, 0);
        };
        let entry = &m.gslb[ei];
        let ecs = res.ecs.map(|p| {
            let p = p.min(Family::of(client.addr).bits());
            ClientSubnet {
                family: if client.addr.is_ipv4() { 1 } else { 2 },
                source_prefix: p,
                addr: net::masked(client.addr, p),
            }
        });
        let pc = client_for(entry, self.geo, res.addr, ecs.as_ref());
        self.rotation += 1;
        let input = QueryInput {
            random: self.rng_policy.next_u64(),
            rotation: self.rotation,
        };
        let sel = decide(&m, &self.snap, entry, &pc, family, &input, &mut NoTrace);
        let scope = response_scope(entry, ecs.as_ref(), &pc, sel.scope);
        let (kind, addrs, ttl) = match (sel.outcome, sel.source) {
            (AnswerKind::Answer, Source::LastResort) => (1, Vec::new(), sel.ttl),
            (AnswerKind::Answer, _) if !sel.entries().is_empty() => {
                let map = &self.dc_global[self.cur];
                let addrs = sel
                    .entries()
                    .iter()
                    .filter_map(|e| {
                        let d = m.datacenters.list.get(e.dc.0 as usize)?;
                        let ip = match family {
                            Family::V4 => IpAddr::V4(*d.v4.get(usize::from(e.addr))?),
                            Family::V6 => IpAddr::V6(*d.v6.get(usize::from(e.addr))?),
                        };
                        Some((map[e.dc.0 as usize], ip))
                    })
                    .collect();
                (0, addrs, sel.ttl)
            }
            (AnswerKind::ServFail, _) => (3, Vec::new(), SERVFAIL_TTL),
            _ => (2, Vec::new(), self.neg_ttl[self.cur][g]),
        };
        (self.intern(kind, addrs), ttl, scope)
    }

    /// The TTL the zone gives the name of stream `si`.
    fn name_ttl(&self, si: usize) -> u32 {
        let g = self.streams[si].name as usize;
        self.name_entry[self.cur][g].map_or(0, |i| self.models[self.cur].gslb[i].def.ttl)
    }

    /// A query of stream `si` at `t`; `initial`: the first, whose cache entry (if any) is
    /// given a random residual life so that the caches start in their steady state.
    fn query(&mut self, si: usize, t: Ns, initial: bool) {
        let st = &self.streams[si];
        let client = self.world.clients[st.client as usize];
        let rid = client.resolver;
        let question = st.name * 2 + st.family as u32;
        let cached = if self.world.resolvers[rid as usize].cache {
            self.caches.get(rid, question, client.addr, t)
        } else {
            None
        };
        let (answer, expiry) = match cached {
            Some(e) => (e.answer, e.expiry),
            None => {
                let (answer, ttl, scope) = self.ask(si, t);
                let res = &self.world.resolvers[rid as usize];
                let mut life = res.lifetime(ttl);
                if initial && life > 0 {
                    // As if cached some time ago with the name's own TTL: right after start the
                    // health is unsettled and every answer would carry the short TTL, which
                    // would make all caches expire together.
                    let full = res.lifetime(ttl.max(self.name_ttl(si)));
                    life = 1 + self.rng_query.below(full);
                }
                let expiry = t + life;
                if life > 0 {
                    let scope = if res.ecs.is_some() { scope } else { 0 };
                    self.caches
                        .put(rid, question, client.addr, scope, Entry { answer, expiry });
                }
                (answer, expiry)
            }
        };
        self.take(si, answer, t, expiry);
    }

    /// Stream `si` starts holding `answer` at `t` until `expiry`.
    fn take(&mut self, si: usize, answer: u32, t: Ns, expiry: Ns) {
        let (g, rate, prev) = {
            let s = &self.streams[si];
            (s.name as usize, s.rate, s.prev)
        };
        let in_window = t >= self.warm && t < self.end;
        // Flips and region.
        let info = &self.answers[answer as usize];
        if prev != NONE && in_window {
            let p = &self.answers[prev as usize];
            if p.sig != info.sig {
                let usable = !p.dcs.is_empty()
                    && p.dcs.iter().all(|&d| {
                        self.dc_model[self.cur][d].is_some_and(|id| self.snap.get(id).usable())
                    });
                let s = &mut self.streams[si];
                s.flips += 1;
                if usable {
                    s.flaps += 1;
                }
            }
        }
        {
            let region = info.region;
            let s = &mut self.streams[si];
            if s.home == 0 {
                s.home = region;
            } else if in_window && region != 0 && region & s.home == 0 {
                s.region_changed = true;
            }
            s.prev = answer;
        }
        // The query at t.
        let info = self.answers[answer as usize].clone();
        for &(x, w) in &info.targets {
            self.tallies.point(g, x, t, w);
            if x < self.dc_names.len() {
                self.traffic.point(x, t, w);
            }
        }
        for a in &info.addrs {
            if in_window && containing(&self.periods[a.periods], t).is_some() {
                self.to_down_name[g] += a.w;
                self.to_down_dc[a.dc] += a.w;
            }
            for &i in &a.incidents {
                let inc = &mut self.incs[i];
                if t >= inc.start && t < inc.end {
                    inc.sent += a.w;
                    inc.last_sent = Some(inc.last_sent.map_or(t, |l| l.max(t)));
                }
            }
        }
        if expiry > t {
            for &(x, w) in &info.targets {
                self.tallies.rate(g, x, t, rate * w);
                if x < self.dc_names.len() {
                    self.traffic.change(x, t, rate * w);
                }
            }
            let s = &mut self.streams[si];
            s.held = answer;
            s.since = t;
            s.until = expiry;
            self.heap_streams_push(expiry, si, 0);
        } else {
            let next = t + self.rng_query.exp_ns(rate).max(1);
            self.heap_streams_push(next, si, 1);
        }
    }

    fn heap_streams_push(&mut self, t: Ns, si: usize, kind: u64) {
        self.stream_heap.push(Reverse((t, (si as u64) << 1 | kind)));
    }

    /// The answer held by `si` expires at `e` (or the run ends then, `at_end`).
    fn expire(&mut self, si: usize, e: Ns, at_end: bool) {
        let (g, rate, held, since) = {
            let s = &self.streams[si];
            (s.name as usize, s.rate, s.held, s.since)
        };
        if held == NONE {
            return;
        }
        let info = self.answers[held as usize].clone();
        if !at_end {
            for &(x, w) in &info.targets {
                self.tallies.rate(g, x, e, -rate * w);
                if x < self.dc_names.len() {
                    self.traffic.change(x, e, -rate * w);
                }
            }
        }
        // The last query on this answer: an exponential wait before the expiry (or now, when
        // the run ends while it is still held).
        let last = if at_end {
            e
        } else {
            e.saturating_sub(self.rng_query.exp_ns(rate)).max(since)
        };
        let (w0, w1) = (since.max(self.warm), e.min(self.end));
        for a in &info.addrs {
            let down = overlap(&self.periods[a.periods], w0, w1);
            if down > 0 {
                let q = rate * a.w * secs(down);
                self.to_down_name[g] += q;
                self.to_down_dc[a.dc] += q;
            }
            for &i in &a.incidents {
                let inc = &mut self.incs[i];
                let (s0, s1) = (since.max(inc.start), e.min(inc.end));
                if s1 > s0 {
                    inc.sent += rate * a.w * secs(s1 - s0);
                }
                if last >= inc.start && since < inc.end {
                    let l = last.min(inc.end);
                    inc.last_sent = Some(inc.last_sent.map_or(l, |x| x.max(l)));
                    if last >= inc.end {
                        inc.undrained = true;
                    }
                }
            }
        }
        let s = &mut self.streams[si];
        s.held = NONE;
        if !at_end {
            let next = e + self.rng_query.exp_ns(rate).max(1);
            self.heap_streams_push(next, si, 1);
        }
    }

    pub(crate) fn run(mut self) -> Result<Report, SimError> {
        // Every stream asks at time 0; caches start with random residual lives.
        for si in 0..self.streams.len() {
            self.advance(0);
            let client = self.world.clients[self.streams[si].client as usize];
            if self.world.resolvers[client.resolver as usize].cache {
                self.query(si, 0, true);
            } else {
                let t = self.rng_query.exp_ns(self.streams[si].rate).max(1);
                self.heap_streams_push(t, si, 1);
            }
        }
        while let Some(Reverse((t, code))) = self.stream_heap.pop() {
            if t >= self.end {
                break;
            }
            self.advance(t);
            let si = (code >> 1) as usize;
            if code & 1 == 0 {
                self.expire(si, t, false);
            } else {
                self.query(si, t, false);
            }
        }
        self.advance(self.end);
        let end = self.end;
        for si in 0..self.streams.len() {
            if self.streams[si].held != NONE {
                let until = self.streams[si].until;
                if until > end {
                    self.expire(si, end, true);
                } else {
                    self.expire(si, until, false);
                }
            }
        }
        Ok(self.report())
    }

    fn report(self) -> Report {
        let warm_s = secs(self.warm);
        let rel = |t: Ns| secs(t) - warm_s;
        let n_dcs = self.dc_names.len();
        let mut targets = self.dc_names.clone();
        targets.extend(SPECIAL.iter().map(|s| s.to_string()));
        let buckets = self.tallies.buckets;
        let times: Vec<f64> = (0..buckets)
            .map(|k| secs(k as u64 * self.tallies.step))
            .collect();
        let widths: Vec<f64> = (0..buckets).map(|k| self.tallies.width(k)).collect();
        let mut queries = Vec::new();
        let mut names = Vec::new();
        let mut dc_total = vec![vec![0.0; buckets]; n_dcs];
        for (g, name) in self.names.iter().enumerate() {
            let mut per = Vec::new();
            for x in 0..targets.len() {
                if let Some(v) = self.tallies.masses(g, x)
                    && v.iter().any(|q| *q > 0.0)
                {
                    if let Some(total) = dc_total.get_mut(x) {
                        for (t, q) in total.iter_mut().zip(&v) {
                            *t += q;
                        }
                    }
                    per.push((x, v));
                }
            }
            let total: f64 = per.iter().map(|(_, v)| v.iter().sum::<f64>()).sum();
            let mut shares: Vec<Share> = per
                .iter()
                .map(|(x, v)| {
                    let q: f64 = v.iter().sum();
                    Share {
                        target: targets[*x].clone(),
                        queries: q,
                        share: if total > 0.0 { q / total } else { 0.0 },
                    }
                })
                .collect();
            shares.sort_by(|a, b| b.queries.total_cmp(&a.queries));
            let streams: Vec<&Stream> = self
                .streams
                .iter()
                .filter(|s| s.name as usize == g)
                .collect();
            let n = streams.len().max(1) as f64;
            names.push(NameReport {
                name: name.clone(),
                clients: streams.len(),
                queries: total,
                shares,
                queries_to_down: self.to_down_name[g],
                flips_per_client: streams.iter().map(|s| f64::from(s.flips)).sum::<f64>() / n,
                flaps_per_client: streams.iter().map(|s| f64::from(s.flaps)).sum::<f64>() / n,
                max_flips: streams.iter().map(|s| s.flips).max().unwrap_or(0),
                region_changes: streams.iter().filter(|s| s.region_changed).count(),
            });
            queries.push(per);
        }
        let mut load = Vec::new();
        let mut datacenters = Vec::new();
        for (d, total) in dc_total.iter().enumerate() {
            let t = &self.truth.dcs[d];
            let series: Vec<f64> = (0..buckets)
                .map(|k| {
                    let bg = t.background.at(self.warm + k as u64 * self.tallies.step);
                    let q = total[k] / widths[k].max(1e-9);
                    bg + if t.capacity > 0.0 {
                        q / t.capacity
                    } else {
                        0.0
                    }
                })
                .collect();
            let (peak_k, peak) = series
                .iter()
                .copied()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((0, 0.0));
            let span: f64 = widths.iter().sum();
            let mean = series.iter().zip(&widths).map(|(l, w)| l * w).sum::<f64>() / span.max(1e-9);
            datacenters.push(DcReport {
                name: self.dc_names[d].clone(),
                capacity: t.capacity,
                peak_load: peak,
                peak_at_s: times.get(peak_k).copied().unwrap_or(0.0),
                mean_load: mean,
                queries: total.iter().sum(),
                queries_to_down: self.to_down_dc[d],
                region: region_name(self.dc_region[d]),
            });
            load.push(series);
        }
        let incidents = self
            .incs
            .iter()
            .map(|i| Incident {
                kind: match i.kind {
                    IncKind::Down => "down",
                    IncKind::AddrDown => "address down",
                    IncKind::Drain => "drain",
                    IncKind::AdminDown => "admin down",
                    IncKind::CheckDown => "check down",
                    IncKind::PushedDown => "pushed down",
                }
                .into(),
                datacenter: self.dc_names[i.dc].clone(),
                address: i.addr.map(|a| a.to_string()),
                check: i.check.clone(),
                start_s: rel(i.start),
                end_s: (!i.open).then(|| rel(i.end)),
                flap: i.flap,
                detected_after_s: i.detected.map(|d| secs(d - i.start)),
                recovered_after_s: i.recovered.map(|r| secs(r - i.end)),
                last_sent_after_s: i.last_sent.map(|l| secs(l.saturating_sub(i.start))),
                drained: !i.undrained,
                queries_sent: i.sent,
                note: i.note.clone(),
            })
            .collect();
        let mut events = self.marks;
        events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        let client_queries = names.iter().map(|n| n.queries).sum();
        Report {
            scenario: self.scen.file.display().to_string(),
            zones: self.zones_dir.display().to_string(),
            seed: self.scen.run.seed,
            duration_s: self.scen.run.duration.as_secs_f64(),
            warmup_s: warm_s,
            step_s: secs(self.tallies.step),
            clients: self.world.clients.len(),
            resolvers: self.world.resolvers.len(),
            streams: self.streams.len(),
            client_queries,
            decisions: self.decisions,
            publications: self.publications,
            names,
            datacenters,
            incidents,
            events,
            checks: Vec::new(),
            series: Series {
                times,
                widths,
                targets,
                queries,
                load,
            },
        }
    }
}

/// The chart label of a scenario event.
fn describe(e: &super::scenario::Event) -> String {
    let who = match &e.subject {
        Some(Subject::Datacenter(n)) => n.clone(),
        Some(Subject::Address(a)) => a.to_string(),
        None => String::new(),
    };
    match &e.action {
        Action::Health { up, .. } => {
            let state = if *up { "up" } else { "down" };
            match &e.check {
                Some(c) => format!("{who} check {c} {state}"),
                None => format!("{who} {state}"),
            }
        }
        Action::Flap { down, up, .. } => format!(
            "{who} flaps ({} down / {} up)",
            fmt_duration(*down),
            fmt_duration(*up)
        ),
        Action::Latency { latency, .. } => format!("{who} latency {}", fmt_duration(*latency)),
        Action::Load(l) => format!("{who} load {}", super::scenario::trim_float(*l, 2)),
        Action::Admin(s) => format!("{who} admin {}", s.as_str()),
        Action::Pushed { up, .. } => format!(
            "{who} pushed {}",
            match up {
                Some(true) => "up",
                Some(false) => "down",
                None => "clear",
            }
        ),
        Action::Zones(d) => format!("zones {}", d.display()),
    }
}
