//! The scenario file: who queries (populations and the resolvers in front of them), what
//! happens to the datacenters over time (the ground truth, admin actions, zone changes), and
//! the run settings. Read with the crate's path-aware TOML walker, so every mistake of a file
//! is reported at once with its key path and line (docs/simulate.md is the reference).
//!
//! ```text
//! scenario.toml --toml--> Table --walk--> Scenario { run, datacenters, populations, events }
//!                                              (names still strings: `engine` checks them
//!                                               against the zones, with the same key paths)
//! ```

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::geo::{Code2, CountryTables, GeoCode};
use crate::health::AdminState;
use crate::health::aggregator::Startup;
use crate::net::{Family, Subnet};
use crate::walk::{DeValue, Errors, Table, index, type_name};

/// One mistake in a scenario, at a key path (and the line it is on, when known).
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioError {
    /// Key path (`events[2].datacenter`); empty for file-level errors.
    pub path: String,
    /// 1-based line of the key in the file, when it could be found.
    pub line: Option<usize>,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Every mistake of a scenario file.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioErrors {
    /// The scenario file.
    pub file: PathBuf,
    /// In file order.
    pub errors: Vec<ScenarioError>,
}

impl fmt::Display for ScenarioErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some(l) = e.line {
                write!(f, ":{l}")?;
            }
            if !e.path.is_empty() {
                write!(f, ": {}", e.path)?;
            }
            write!(f, ": {}", e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioErrors {}

/// The run settings (`[run]`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Run {
    /// How long the scenario runs (scenario time 0 to `duration`).
    pub(crate) duration: Duration,
    /// Width of the time buckets of the series (CSV rows, chart points); `None` = automatic.
    pub(crate) step: Option<Duration>,
    /// Seed of every random choice (probe jitter, probe loss, query times, policies).
    pub(crate) seed: u64,
    /// Simulated time before scenario time 0 (probes and caches settle); `None` = 60 s.
    pub(crate) warmup: Option<Duration>,
    /// Share of probes that fail although the target is up.
    pub(crate) probe_loss: f64,
    /// How never-probed targets count (as `--startup`).
    pub(crate) startup: Startup,
}

/// Ground truth defaults of one datacenter (`[datacenters.<name>]`).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct DcTruth {
    /// The key path, for errors found against the zones.
    pub(crate) path: String,
    /// Probe round-trip time (default 20 ms).
    pub(crate) latency: Option<Duration>,
    /// Each probe's latency is uniform in `latency ± jitter` (default 0).
    pub(crate) latency_jitter: Option<Duration>,
    /// Utilisation from other traffic, 0..1 (default 0).
    pub(crate) load: Option<f64>,
    /// Client queries per second at utilisation 1 (default: the zone's `capacity`).
    pub(crate) capacity: Option<f64>,
    /// Continent, for "clients whose answer changed region" (default: from the location).
    pub(crate) region: Option<Code2>,
}

/// Where a population's client subnets come from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Origin {
    /// Networks of the GeoIP data in this region.
    Region(GeoCode),
    /// These networks.
    Subnets(Vec<Subnet>),
}

/// How a share of the resolvers treats TTLs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TtlRule {
    /// Share of the population's resolvers, 0..1.
    pub(crate) share: f64,
    /// `min-ttl`: the smallest TTL they keep; `ignore-ttl`: how long they keep every answer.
    pub(crate) ttl: Duration,
}

/// The resolvers in front of a population (`[populations.resolvers]`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Resolvers {
    /// How many resolvers the client subnets are spread over (default: one per subnet).
    pub(crate) count: Option<u32>,
    /// They send EDNS Client Subnet (default true).
    pub(crate) ecs: bool,
    /// ECS source prefix (default: the client subnet's prefix).
    pub(crate) ecs_prefix: Option<u8>,
    /// They cache (default true); false: every client query reaches gslbd.
    pub(crate) cache: bool,
    /// A share that raises TTLs to a minimum.
    pub(crate) min_ttl: Option<TtlRule>,
    /// A share that keeps answers for a fixed time whatever their TTL.
    pub(crate) ignore_ttl: Option<TtlRule>,
    /// Where the resolvers are (default: in the subnet of their first client).
    pub(crate) subnet: Option<Subnet>,
}

impl Default for Resolvers {
    fn default() -> Self {
        Resolvers {
            count: None,
            ecs: true,
            ecs_prefix: None,
            cache: true,
            min_ttl: None,
            ignore_ttl: None,
            subnet: None,
        }
    }
}

/// A group of client subnets that query alike (`[[populations]]`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Population {
    /// Its name in reports (default `populations[i]`).
    pub(crate) name: String,
    /// Its key path.
    pub(crate) path: String,
    /// Where its clients are.
    pub(crate) origin: Origin,
    /// IPv6 client subnets (with `region`; `subnets` say it themselves).
    pub(crate) v6: bool,
    /// Number of client subnets.
    pub(crate) clients: u32,
    /// Queries per second of each client subnet for each name and type.
    pub(crate) rate: f64,
    /// The GSLB names asked, each with its key path; `None` = every GSLB name.
    pub(crate) names: Option<Vec<(String, String)>>,
    /// A and/or AAAA.
    pub(crate) qtypes: Vec<Family>,
    /// Size of one client subnet (default 24 / 56).
    pub(crate) client_prefix: Option<u8>,
    /// The resolvers in front of it.
    pub(crate) resolvers: Resolvers,
}

/// How probes of a target fail while it is down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum FailMode {
    /// No answer: the probe times out (the default: a dead host or a cut link).
    #[default]
    Timeout,
    /// Connection refused at once (nothing listening).
    Refused,
    /// HTTP 503 (the application says it is unhealthy); a tcp check sees a pass.
    Status,
}

/// What an event is about.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Subject {
    /// A datacenter, by name.
    Datacenter(String),
    /// One address (an answer or check address of some datacenter).
    Address(IpAddr),
}

/// What happens at an event.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// The subject stops (`up` false) or starts serving.
    Health { up: bool, fail: FailMode },
    /// The subject goes down for `down`, up for `up`, again and again until `until`.
    Flap {
        down: Duration,
        up: Duration,
        until: Duration,
        fail: FailMode,
    },
    /// New probe latency (and jitter, if given) of a datacenter.
    Latency {
        latency: Duration,
        jitter: Option<Duration>,
    },
    /// New background utilisation of a datacenter.
    Load(f64),
    /// An operator sets the admin state.
    Admin(AdminState),
    /// A verdict pushed to the health API (`PUT /datacenters/{name}/health`), `None` = its
    /// withdrawal (`DELETE`); with a load figure, and held for `ttl`.
    Pushed {
        up: Option<bool>,
        ttl: Duration,
        load: Option<f64>,
    },
    /// The zones directory is replaced by this one (a reload).
    Zones(PathBuf),
}

/// One line of the timeline (`[[events]]`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Event {
    /// Scenario time.
    pub(crate) at: Duration,
    /// Its key path (`events[3]`).
    pub(crate) path: String,
    /// The datacenter or address, for actions that need one.
    pub(crate) subject: Option<Subject>,
    /// `health` and `flap` of a datacenter: only this check of it fails (`checks.<name>`);
    /// `None`: every check.
    pub(crate) check: Option<String>,
    /// What happens.
    pub(crate) action: Action,
    /// Label on the chart (default: made from the action).
    pub(crate) label: Option<String>,
}

/// A parsed scenario (names not yet checked against the zones).
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The file (for messages, and relative `zones` paths).
    pub(crate) file: PathBuf,
    /// The text, to find the line of a key path in error messages.
    pub(crate) text: String,
    pub(crate) run: Run,
    /// Per datacenter name, with its key path.
    pub(crate) datacenters: Vec<(String, DcTruth)>,
    pub(crate) populations: Vec<Population>,
    /// In time order (stable for equal times: file order).
    pub(crate) events: Vec<Event>,
}

const TOP_KEYS: &[&str] = &["run", "datacenters", "populations", "events"];
const RUN_KEYS: &[&str] = &[
    "duration",
    "step",
    "seed",
    "warmup",
    "probe-loss",
    "startup",
];
const DC_KEYS: &[&str] = &["latency", "latency-jitter", "load", "capacity", "region"];
const POP_KEYS: &[&str] = &[
    "name",
    "region",
    "subnets",
    "family",
    "clients",
    "rate",
    "names",
    "qtypes",
    "client-prefix",
    "resolvers",
];
const RES_KEYS: &[&str] = &[
    "count",
    "ecs",
    "ecs-prefix",
    "cache",
    "min-ttl",
    "ignore-ttl",
    "subnet",
];
const EVENT_KEYS: &[&str] = &[
    "at",
    "datacenter",
    "address",
    "check",
    "health",
    "fail",
    "flap",
    "until",
    "latency",
    "latency-jitter",
    "load",
    "admin",
    "pushed",
    "ttl",
    "zones",
    "label",
];
/// Keys of which an event has exactly one.
const ACTIONS: &[&str] = &[
    "health", "flap", "latency", "load", "admin", "pushed", "zones",
];

impl Scenario {
    /// Reads the scenario file at `path`.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioErrors {
            file: path.to_path_buf(),
            errors: vec![ScenarioError {
                path: String::new(),
                line: None,
                message: format!("cannot read the scenario file: {e}"),
            }],
        })?;
        Scenario::parse(&text, path)
    }

    /// Parses scenario `text`; `file` names it in messages and anchors relative paths.
    pub fn parse(text: &str, file: &Path) -> Result<Scenario, ScenarioErrors> {
        let table = crate::walk::parse(text).map_err(|e| ScenarioErrors {
            file: file.to_path_buf(),
            errors: vec![ScenarioError {
                path: String::new(),
                line: e.span().map(|s| line_of(text, s.start)),
                message: format!("not valid TOML: {}", e.message()),
            }],
        })?;
        let mut errs = Errors::default();
        let tables = crate::config::country_tables();
        let mut top = Table::new(&table, "");
        let run = read_run(top.table("run", &mut errs), &top.key_path("run"), &mut errs);
        let mut datacenters = Vec::new();
        if let Some(mut t) = top.table("datacenters", &mut errs) {
            for (name, v) in t.entries() {
                let path = t.key_path(name);
                if let Some(dt) = Table::from_value(v, path.clone(), &mut errs) {
                    datacenters.push((name.to_string(), read_dc(dt, path, tables, &mut errs)));
                }
            }
        }
        let mut populations = Vec::new();
        match top.get("populations") {
            Some(DeValue::Array(a)) => {
                for (i, v) in crate::walk::items(a).enumerate() {
                    let path = index("populations", i);
                    if let Some(pt) = Table::from_value(v, path.clone(), &mut errs)
                        && let Some(p) = read_population(pt, &path, tables, &mut errs)
                    {
                        populations.push(p);
                    }
                }
            }
            Some(other) => errs.add(
                "populations",
                format!(
                    "expected an array of tables ([[populations]]), found {}",
                    type_name(other)
                ),
            ),
            None => errs.add(
                "populations",
                "is required: at least one [[populations]] (who queries)",
            ),
        }
        let base = file.parent().unwrap_or(Path::new("."));
        let mut events = Vec::new();
        match top.get("events") {
            Some(DeValue::Array(a)) => {
                for (i, v) in crate::walk::items(a).enumerate() {
                    let path = index("events", i);
                    if let Some(et) = Table::from_value(v, path.clone(), &mut errs)
                        && let Some(e) = read_event(et, path, base, &mut errs)
                    {
                        events.push(e);
                    }
                }
            }
            Some(other) => errs.add(
                "events",
                format!(
                    "expected an array of tables ([[events]]), found {}",
                    type_name(other)
                ),
            ),
            None => {}
        }
        top.finish(TOP_KEYS, &mut errs);
        if let Some(run) = &run {
            for e in &events {
                if e.at > run.duration {
                    errs.add(
                        &crate::walk::join(&e.path, "at"),
                        format!(
                            "{} is after the end of the run ({})",
                            fmt_duration(e.at),
                            fmt_duration(run.duration)
                        ),
                    );
                }
            }
        }
        let scenario = Scenario {
            file: file.to_path_buf(),
            text: text.to_string(),
            run: run.unwrap_or(Run {
                duration: Duration::ZERO,
                step: None,
                seed: 0,
                warmup: None,
                probe_loss: 0.0,
                startup: Startup::AssumeUp,
            }),
            datacenters,
            populations,
            events,
        };
        if errs.list.is_empty() {
            let mut s = scenario;
            s.events.sort_by_key(|e| e.at);
            Ok(s)
        } else {
            Err(scenario.errors(errs.list.into_iter().map(|e| (e.path, e.message)).collect()))
        }
    }

    /// Errors at key paths of this scenario, each with its line when it can be found.
    pub(crate) fn errors(&self, list: Vec<(String, String)>) -> ScenarioErrors {
        ScenarioErrors {
            file: self.file.clone(),
            errors: list
                .into_iter()
                .map(|(path, message)| ScenarioError {
                    line: line_of_path(&self.text, &path),
                    path,
                    message,
                })
                .collect(),
        }
    }
}

fn read_run(t: Option<Table<'_>>, path: &str, errs: &mut Errors) -> Option<Run> {
    let Some(mut t) = t else {
        errs.add(path, "is required: [run] with at least `duration`");
        return None;
    };
    let duration = t.duration("duration", errs);
    if !t.has("duration") {
        errs.add(&t.key_path("duration"), "is required (e.g. \"30m\")");
    }
    let duration = duration.filter(|d| {
        let ok = !d.is_zero() && *d <= Duration::from_secs(7 * 86400);
        if !ok {
            errs.add(
                &t.key_path("duration"),
                "must be more than 0 and at most 7 days",
            );
        }
        ok
    });
    let step = t.duration("step", errs).filter(|d| {
        let ok = *d >= Duration::from_millis(1);
        if !ok {
            errs.add(&t.key_path("step"), "must be at least 1ms");
        }
        ok
    });
    let seed = match t.get("seed") {
        // A 64-bit seed, or a negative one as before (two's complement).
        Some(v @ DeValue::Integer(raw)) => match u64::from_str_radix(raw.as_str(), raw.radix())
            .ok()
            .or_else(|| crate::walk::integer(v).map(|i| i as u64))
        {
            Some(i) => i,
            None => {
                errs.add(
                    &t.key_path("seed"),
                    format!("{raw} is out of range (a 64-bit integer)"),
                );
                0
            }
        },
        Some(other) => {
            errs.add(
                &t.key_path("seed"),
                format!("expected an integer, found {}", type_name(other)),
            );
            0
        }
        None => 1,
    };
    let warmup = t.duration("warmup", errs);
    let probe_loss = t.float("probe-loss", 0.0, 1.0, errs).unwrap_or(0.0);
    let startup = match t.str("startup", errs) {
        None | Some("assume-up") => Startup::AssumeUp,
        Some("assume-down") => Startup::AssumeDown,
        Some(other) => {
            errs.add(
                &t.key_path("startup"),
                format!("{other:?}: expected assume-up or assume-down"),
            );
            Startup::AssumeUp
        }
    };
    if let (Some(s), Some(d)) = (step, duration)
        && d.as_secs_f64() / s.as_secs_f64() > 100_000.0
    {
        errs.add(
            &t.key_path("step"),
            "gives more than 100000 points over the run: take a longer step",
        );
    }
    t.finish(RUN_KEYS, errs);
    Some(Run {
        duration: duration?,
        step,
        seed,
        warmup,
        probe_loss,
        startup,
    })
}

fn read_dc(mut t: Table<'_>, path: String, tables: &CountryTables, errs: &mut Errors) -> DcTruth {
    let region = t
        .str("region", errs)
        .and_then(|r| match GeoCode::parse(r, tables) {
            Ok(GeoCode::Continent(c)) => Some(c),
            Ok(_) => {
                errs.add(
                    &t.key_path("region"),
                    format!("{r:?}: expected a continent (AF AN AS EU NA OC SA)"),
                );
                None
            }
            Err(e) => {
                errs.add(&t.key_path("region"), e);
                None
            }
        });
    let d = DcTruth {
        latency: t.duration("latency", errs),
        latency_jitter: t.duration("latency-jitter", errs),
        load: t.float("load", 0.0, 10.0, errs),
        capacity: t.float("capacity", 1e-9, 1e15, errs),
        region,
        path,
    };
    t.finish(DC_KEYS, errs);
    d
}

fn read_population(
    mut t: Table<'_>,
    path: &str,
    tables: &CountryTables,
    errs: &mut Errors,
) -> Option<Population> {
    let name = t
        .str("name", errs)
        .map_or_else(|| path.to_string(), str::to_string);
    let region = t
        .str("region", errs)
        .and_then(|r| match GeoCode::parse(r, tables) {
            Ok(c) => Some(c),
            Err(e) => {
                errs.add(&t.key_path("region"), e);
                None
            }
        });
    let subnets = t.str_list("subnets", errs).map(|list| {
        list.into_iter()
            .filter_map(|(p, s)| match Subnet::parse(s) {
                Ok(n) => Some(n),
                Err(e) => {
                    errs.add(&p, e);
                    None
                }
            })
            .collect::<Vec<_>>()
    });
    let v6 = match t.str("family", errs) {
        None | Some("ipv4") => false,
        Some("ipv6") => true,
        Some(other) => {
            errs.add(
                &t.key_path("family"),
                format!("{other:?}: expected ipv4 or ipv6"),
            );
            false
        }
    };
    let origin = match (region, subnets) {
        (Some(r), None) => Some(Origin::Region(r)),
        (None, Some(s)) if !s.is_empty() => {
            if s.iter().any(|n| n.addr.is_ipv4()) && s.iter().any(|n| n.addr.is_ipv6()) {
                errs.add(
                    &t.key_path("subnets"),
                    "mixes IPv4 and IPv6: make one population per family",
                );
            }
            Some(Origin::Subnets(s))
        }
        (None, Some(_)) => {
            errs.add(&t.key_path("subnets"), "is empty");
            None
        }
        (Some(_), Some(_)) => {
            errs.add(path, "has both `region` and `subnets`: give one");
            None
        }
        (None, None) if t.has("region") || t.has("subnets") => None,
        (None, None) => {
            errs.add(
                path,
                "needs `region` (EU, DE, NA-US-CA) or `subnets` ([\"192.0.2.0/24\"]): where the clients are",
            );
            None
        }
    };
    let v6 = match &origin {
        Some(Origin::Subnets(s)) => s.first().is_some_and(|n| n.addr.is_ipv6()),
        _ => v6,
    };
    let clients = t.int("clients", 1, 10_000_000, errs).unwrap_or(1) as u32;
    let rate = t.float("rate", 1e-9, 1e6, errs).unwrap_or(1.0);
    let names = t.str_list("names", errs).map(|l| {
        l.into_iter()
            .map(|(p, s)| (p, s.to_string()))
            .collect::<Vec<_>>()
    });
    let qtypes = match t.str_list("qtypes", errs) {
        None => vec![Family::V4],
        Some(l) => l
            .into_iter()
            .filter_map(|(p, s)| match s.to_ascii_uppercase().as_str() {
                "A" => Some(Family::V4),
                "AAAA" => Some(Family::V6),
                _ => {
                    errs.add(&p, format!("{s:?}: GSLB names answer A and AAAA"));
                    None
                }
            })
            .collect(),
    };
    let max_bits = if v6 { 128 } else { 32 };
    let client_prefix = t.int("client-prefix", 1, max_bits, errs).map(|p| p as u8);
    let resolvers = match t.table("resolvers", errs) {
        Some(rt) => read_resolvers(rt, max_bits as u8, errs),
        None => Resolvers::default(),
    };
    t.finish(POP_KEYS, errs);
    Some(Population {
        name,
        path: path.to_string(),
        origin: origin?,
        v6,
        clients,
        rate,
        names,
        qtypes,
        client_prefix,
        resolvers,
    })
}

fn read_rule(t: &mut Table<'_>, key: &str, ttl_key: &str, errs: &mut Errors) -> Option<TtlRule> {
    let mut rt = t.table(key, errs)?;
    let share = rt.float("share", 0.0, 1.0, errs);
    let ttl = rt.duration(ttl_key, errs);
    for (k, v) in [("share", share.is_none()), (ttl_key, ttl.is_none())] {
        if v && !rt.has(k) {
            errs.add(&rt.key_path(k), "is required");
        }
    }
    rt.finish(&["share", ttl_key], errs);
    Some(TtlRule {
        share: share?,
        ttl: ttl?,
    })
}

fn read_resolvers(mut t: Table<'_>, max_bits: u8, errs: &mut Errors) -> Resolvers {
    let count = t.int("count", 1, 10_000_000, errs).map(|c| c as u32);
    let ecs = t.bool("ecs", errs).unwrap_or(true);
    let ecs_prefix = t
        .int("ecs-prefix", 1, i64::from(max_bits), errs)
        .map(|p| p as u8);
    let cache = t.bool("cache", errs).unwrap_or(true);
    let min_ttl = read_rule(&mut t, "min-ttl", "ttl", errs);
    let ignore_ttl = read_rule(&mut t, "ignore-ttl", "hold", errs);
    if let (Some(a), Some(b)) = (min_ttl, ignore_ttl)
        && a.share + b.share > 1.0
    {
        errs.add(
            &t.path,
            "the shares of min-ttl and ignore-ttl add up to more than 1",
        );
    }
    let subnet = t.str("subnet", errs).and_then(|s| match Subnet::parse(s) {
        Ok(n) => Some(n),
        Err(e) => {
            errs.add(&t.key_path("subnet"), e);
            None
        }
    });
    t.finish(RES_KEYS, errs);
    Resolvers {
        count,
        ecs,
        ecs_prefix,
        cache,
        min_ttl,
        ignore_ttl,
        subnet,
    }
}

fn read_fail(t: &mut Table<'_>, errs: &mut Errors) -> FailMode {
    match t.str("fail", errs) {
        None | Some("timeout") => FailMode::Timeout,
        Some("refused") => FailMode::Refused,
        Some("status") => FailMode::Status,
        Some(other) => {
            errs.add(
                &t.key_path("fail"),
                format!("{other:?}: expected timeout, refused or status"),
            );
            FailMode::Timeout
        }
    }
}

fn read_event(mut t: Table<'_>, path: String, base: &Path, errs: &mut Errors) -> Option<Event> {
    let at = t.duration("at", errs);
    if !t.has("at") {
        errs.add(
            &t.key_path("at"),
            "is required (scenario time, e.g. \"10m\")",
        );
    }
    let mut given: Vec<&str> = ACTIONS.iter().copied().filter(|k| t.has(k)).collect();
    // A pushed verdict may carry a load figure: that `load` is part of it, not an action.
    if given.contains(&"pushed") {
        given.retain(|k| *k != "load");
    }
    let action_key = match given.as_slice() {
        [one] => Some(*one),
        [] => {
            errs.add(
                &path,
                format!("says nothing happens: give one of {}", ACTIONS.join(", ")),
            );
            None
        }
        many => {
            for k in many {
                t.get(k);
            }
            errs.add(
                &path,
                format!("has several actions ({}): one per event", many.join(", ")),
            );
            None
        }
    };
    let subject = match (t.str("datacenter", errs), t.str("address", errs)) {
        (Some(d), None) => Some(Subject::Datacenter(d.to_string())),
        (None, Some(a)) => match a.trim().parse::<IpAddr>() {
            Ok(ip) => Some(Subject::Address(ip.to_canonical())),
            Err(_) => {
                errs.add(
                    &t.key_path("address"),
                    format!("{a:?} is not an IP address"),
                );
                None
            }
        },
        (Some(_), Some(_)) => {
            errs.add(&path, "names both `datacenter` and `address`: give one");
            None
        }
        (None, None) => None,
    };
    let label = t.str("label", errs).map(str::to_string);
    let action = match action_key {
        Some("health") => {
            let up = match t.str("health", errs) {
                Some("up") => Some(true),
                Some("down") => Some(false),
                Some(other) => {
                    errs.add(
                        &t.key_path("health"),
                        format!("{other:?}: expected up or down"),
                    );
                    None
                }
                None => None,
            };
            let fail = read_fail(&mut t, errs);
            up.map(|up| Action::Health { up, fail })
        }
        Some("flap") => {
            let fail = read_fail(&mut t, errs);
            let until = t.duration("until", errs);
            if !t.has("until") {
                errs.add(
                    &t.key_path("until"),
                    "is required with `flap` (when it stops)",
                );
            }
            let ft = t.table("flap", errs);
            let (down, up) = match ft {
                Some(mut ft) => {
                    let d = ft.duration("down", errs);
                    let u = ft.duration("up", errs);
                    for k in ["down", "up"] {
                        if !ft.has(k) {
                            errs.add(&ft.key_path(k), "is required (e.g. \"30s\")");
                        }
                    }
                    for (k, v) in [("down", d), ("up", u)] {
                        if v.is_some_and(|v| v < Duration::from_millis(1)) {
                            errs.add(&ft.key_path(k), "must be at least 1ms");
                        }
                    }
                    ft.finish(&["down", "up"], errs);
                    (d, u)
                }
                None => (None, None),
            };
            match (down, up, until, at) {
                (Some(down), Some(up), Some(until), Some(at)) => {
                    if until <= at {
                        errs.add(&t.key_path("until"), "must be after `at`");
                    }
                    Some(Action::Flap {
                        down,
                        up,
                        until,
                        fail,
                    })
                }
                _ => None,
            }
        }
        Some("latency") => {
            let latency = t.duration("latency", errs);
            let jitter = t.duration("latency-jitter", errs);
            latency.map(|latency| Action::Latency { latency, jitter })
        }
        Some("load") => t.float("load", 0.0, 10.0, errs).map(Action::Load),
        Some("admin") => t
            .str("admin", errs)
            .and_then(|s| match AdminState::parse(s) {
                Some(a) => Some(Action::Admin(a)),
                None => {
                    errs.add(
                        &t.key_path("admin"),
                        format!("{s:?}: expected obey, up, down or drain"),
                    );
                    None
                }
            }),
        Some("pushed") => {
            let up = match t.str("pushed", errs) {
                Some("up") => Some(Some(true)),
                Some("down") => Some(Some(false)),
                Some("clear") => Some(None),
                Some(other) => {
                    errs.add(
                        &t.key_path("pushed"),
                        format!("{other:?}: expected up, down or clear"),
                    );
                    None
                }
                None => None,
            };
            let ttl = t.duration("ttl", errs).unwrap_or(Duration::from_secs(300));
            if ttl.is_zero() {
                errs.add(&t.key_path("ttl"), "must be more than 0");
            }
            let load = t.float("load", 0.0, 1.0, errs);
            if load.is_some() && up == Some(None) {
                errs.add(&t.key_path("load"), "goes with up or down, not with clear");
            }
            up.map(|up| Action::Pushed { up, ttl, load })
        }
        Some("zones") => t.str("zones", errs).map(|z| Action::Zones(base.join(z))),
        _ => None,
    };
    // Which keys go with which action: report the others as unknown for this event.
    let mut allowed = vec!["at", "label"];
    match action_key {
        Some("health") => {
            allowed.extend(["health", "fail", "datacenter", "address", "check"]);
        }
        Some("flap") => {
            allowed.extend(["flap", "until", "fail", "datacenter", "address", "check"]);
        }
        Some("latency") => allowed.extend(["latency", "latency-jitter", "datacenter"]),
        Some("load") => allowed.extend(["load", "datacenter"]),
        Some("admin") => allowed.extend(["admin", "datacenter"]),
        Some("pushed") => allowed.extend(["pushed", "ttl", "load", "datacenter", "address"]),
        Some("zones") => allowed.push("zones"),
        _ => allowed = EVENT_KEYS.to_vec(),
    }
    let needs_subject = !matches!(action_key, Some("zones") | None);
    if needs_subject && subject.is_none() && !t.has("datacenter") && !t.has("address") {
        let which = if matches!(action_key, Some("health" | "flap" | "pushed")) {
            "`datacenter` or `address`"
        } else {
            "`datacenter`"
        };
        errs.add(&path, format!("needs {which}: what it happens to"));
    }
    if matches!(action_key, Some("latency" | "load" | "admin"))
        && matches!(subject, Some(Subject::Address(_)))
    {
        errs.add(
            &t.key_path("address"),
            "this action applies to a whole datacenter: use `datacenter`",
        );
    }
    if action_key == Some("zones") && (t.has("datacenter") || t.has("address")) {
        errs.add(
            &path,
            "a zone change applies to everything: drop datacenter/address",
        );
    }
    let check = t.str("check", errs).map(str::to_string);
    if check.is_some() && matches!(subject, Some(Subject::Address(_))) {
        errs.add(
            &t.key_path("check"),
            "a check-only failure is of a datacenter's check: use `datacenter`",
        );
    }
    t.finish(&allowed, errs);
    Some(Event {
        at: at?,
        path,
        subject: if needs_subject { subject } else { None },
        check,
        action: action?,
        label,
    })
}

/// `90s` -> `1m30s`, `1500ms` -> `1.5s`: durations as the reports print them.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    if !ms.is_multiple_of(1000) && secs < 60.0 {
        return format!("{}s", trim_float(secs, 3));
    }
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

/// A number with at most `places` decimals, trailing zeros dropped.
pub(crate) fn trim_float(v: f64, places: usize) -> String {
    let s = format!("{v:.places$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// 1-based line of byte offset `at` in `text`.
pub(crate) fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line of the value (or table) at key path `path` (`events[2].flap.down`), when the
/// path can be followed in `text`.
pub(crate) fn line_of_path(text: &str, path: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut span = doc.span();
    let mut cur: Option<&DeValue<'_>> = None;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    for seg in split_path(path) {
        let (key, idx) = seg;
        if !key.is_empty() {
            let t = table?;
            let (k, v) = t.iter().find(|(k, _)| k.get_ref().as_ref() == key)?;
            span = if matches!(v.get_ref(), DeValue::Table(_) | DeValue::Array(_)) {
                k.span()
            } else {
                v.span()
            };
            cur = Some(v.get_ref());
        }
        if let Some(i) = idx {
            let DeValue::Array(a) = cur? else {
                return None;
            };
            let item = a.get(i)?;
            span = item.span();
            cur = Some(item.get_ref());
        }
        table = match cur {
            Some(DeValue::Table(t)) => Some(t),
            _ => None,
        };
    }
    Some(line_of(text, span.start))
}

/// `a.b[2]."c d"` -> [("a", None), ("b", Some(2)), ("c d", None)].
fn split_path(path: &str) -> Vec<(String, Option<usize>)> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    while chars.peek().is_some() {
        let mut key = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            key.push(n);
                        }
                    }
                    '"' => break,
                    c => key.push(c),
                }
            }
        }
        while let Some(&c) = chars.peek() {
            if c == '.' || c == '[' {
                break;
            }
            key.push(c);
            chars.next();
        }
        let mut idx = None;
        if chars.peek() == Some(&'[') {
            chars.next();
            let mut n = String::new();
            for c in chars.by_ref() {
                if c == ']' {
                    break;
                }
                n.push(c);
            }
            idx = n.parse().ok();
        }
        out.push((key, idx));
        if chars.peek() == Some(&'.') {
            chars.next();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[run]
duration = "10m"
seed = 3

[datacenters.fra]
latency = "12ms"
capacity = 5000

[[populations]]
region = "EU"
clients = 100

[[events]]
at = "2m"
datacenter = "fra"
health = "down"

[[events]]
at = "1m"
datacenter = "ams"
admin = "drain"
"#;

    #[test]
    fn parses_and_sorts_events() {
        let s = Scenario::parse(OK, Path::new("s.toml")).unwrap();
        assert_eq!(s.run.duration, Duration::from_secs(600));
        assert_eq!(s.run.seed, 3);
        assert_eq!(s.populations[0].clients, 100);
        assert_eq!(s.populations[0].name, "populations[0]");
        assert!(s.populations[0].resolvers.ecs);
        assert_eq!(s.events.len(), 2);
        assert_eq!(s.events[0].action, Action::Admin(AdminState::Drain));
        assert_eq!(
            s.events[1].action,
            Action::Health {
                up: false,
                fail: FailMode::Timeout
            }
        );
    }

    #[test]
    fn every_error_with_its_key_and_line() {
        let text = r#"
[run]
duration = "10m"
bogus = 1

[[populations]]
region = "Europe"

[[events]]
at = "2m"
datacenter = "fra"
health = "sideways"

[[events]]
at = "20m"
datacenter = "fra"
load = 0.5
admin = "drain"
"#;
        let e = Scenario::parse(text, Path::new("s.toml")).unwrap_err();
        let got: Vec<(String, Option<usize>)> =
            e.errors.iter().map(|e| (e.path.clone(), e.line)).collect();
        assert!(got.contains(&("run.bogus".into(), Some(4))), "{e}");
        assert!(
            got.contains(&("populations[0].region".into(), Some(7))),
            "{e}"
        );
        assert!(got.contains(&("events[0].health".into(), Some(12))), "{e}");
        assert!(got.contains(&("events[1]".into(), Some(14))), "{e}");
        assert_eq!(got.len(), 4, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("s.toml:12: events[0].health: \"sideways\": expected up or down"),
            "{text}"
        );
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = Scenario::parse("[run]\nduration = \n", Path::new("s.toml")).unwrap_err();
        assert_eq!(e.errors[0].line, Some(2), "{e}");
    }

    #[test]
    fn durations_print_short() {
        assert_eq!(fmt_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_secs(3600)), "1h");
    }
}
