//! Explaining a decision: a hook in [`select`](super::select) for every step it takes.
//!
//! The server passes [`NoTrace`], whose empty methods compile away; `gslbd explain` passes a
//! [`Trace`], which records the same steps as data (JSON through serde) and prints them for a
//! person (`Display`). One decision function, two observers: explain cannot drift from what
//! the server does.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use super::rank::Cand;
use super::{AnswerKind, Client, Selection, Source};
use crate::health::{AdminState, CheckVerdict, DcState, Input, Why};
use crate::model::{
    Datacenter, DatacenterId, GslbName, Hostname, LatencySource, Member, Pool, PoolId, Resolutions,
};

/// How the rule was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchedBy {
    /// A subnet in the rule contains the client.
    Subnet,
    /// A continent, country or subdivision of the rule matched the client's location.
    Geo,
    /// The rule without a match list.
    CatchAll,
    /// The name has no rules: pool 0.
    NoRules,
    /// No rule matched (validation prevents this): NODATA.
    NoMatch,
}

/// Why a pool member was kept or dropped before the policy ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Usable: health and admin state allow it and an address of the family is up.
    Usable,
    /// Usable because the name is all-down and fail-open.
    ForcedUp,
    /// Its health is down (the probes, or an external verdict; admin state `obey`).
    Down,
    /// Admin state `down`: dropped whatever the probes say.
    AdminDown,
    /// Admin state `drain`: no new answers while the ones handed out expire.
    Drain,
    /// The datacenter has no address of the asked family.
    NoAddressOfFamily,
    /// The datacenter is up but every address of the family is down.
    AddressesDown,
    /// The id is not in the datacenter table (a model bug).
    UnknownDatacenter,
    /// Past `MAX_MEMBERS`.
    TooMany,
    /// A hostname datacenter whose target has no usable answer (not resolved yet, stale past
    /// max-stale, NXDOMAIN or no address): it counts as down.
    Unresolved,
}

impl MatchedBy {
    /// How the rule was chosen, as `explain` prints it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MatchedBy::Subnet => "subnet",
            MatchedBy::Geo => "geo",
            MatchedBy::CatchAll => "catch-all",
            MatchedBy::NoRules => "no rules",
            MatchedBy::NoMatch => "no match",
        }
    }
}

impl Verdict {
    /// Why the member was kept or dropped, for a person.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Verdict::Usable => "kept",
            Verdict::ForcedUp => "kept (all down: fail-open)",
            Verdict::Down => "dropped: health down",
            Verdict::AdminDown => "dropped: admin down",
            Verdict::Drain => "dropped: draining",
            Verdict::NoAddressOfFamily => "skipped: no address of this family",
            Verdict::AddressesDown => "dropped: every address of this family down",
            Verdict::UnknownDatacenter => "dropped: unknown datacenter",
            Verdict::TooMany => "dropped: past the pool size limit",
            Verdict::Unresolved => "dropped: its target has no usable address (counts as down)",
        }
    }
}

/// Hooks called by `select`, in this order: `client`, `rule`, then per pool tried `pool`, `candidate`
/// for each member and, when the pool answers, `latency_source` for each ranked member (the
/// `latency` policy only) and `ranked`; `cycle` if the fallback chain loops, and `finish` once.
pub trait Tracer {
    /// The client as the decision sees it (address and GeoIP location).
    fn client(&mut self, _client: &Client) {}
    /// The rule chosen (`None`: no rule) and how it matched.
    fn rule(&mut self, _index: Option<u32>, _by: MatchedBy) {}
    /// A pool of the chain is tried; `fail_open` when the whole chain is down and the name
    /// answers as if everything were up.
    fn pool(&mut self, _id: PoolId, _pool: &Pool, _fail_open: bool) {}
    /// One member of that pool, its health and the verdict on it.
    fn candidate(&mut self, _member: &Member, _state: &DcState, _verdict: Verdict) {}
    /// Where the `latency` policy took `dc`'s figure from (latency map or probe).
    fn latency_source(&mut self, _dc: DatacenterId, _source: LatencySource) {}
    /// `cands` in preference order with the policy's key; the first `answered` are answered.
    fn ranked(&mut self, _pool: &Pool, _cands: &[Cand], _answered: usize) {}
    /// The fallback chain came back to pool `id`; the decision stops there.
    fn cycle(&mut self, _id: PoolId) {}
    /// The decision, once, at the end.
    fn finish(&mut self, _sel: &Selection) {}
}

/// The server's tracer: records nothing, costs nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTrace;

impl Tracer for NoTrace {}

/// A member as `explain` shows it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CandidateTrace {
    /// Datacenter name.
    pub(crate) datacenter: String,
    /// Health verdict (an external verdict, else the probes), before the admin state.
    pub(crate) healthy: bool,
    /// Admin state: `obey`, `up`, `down` or `drain`.
    pub(crate) admin: &'static str,
    /// The input that decided whether it is usable (admin, pushed, feed, alert, probes,
    /// config).
    pub(crate) input: Input,
    /// The input that decided its health.
    pub(crate) health_input: Input,
    /// What the deciding input says, when the server knows (not in offline `gslbd explain`).
    pub(crate) reason: Option<String>,
    /// Each check's verdict, in declaration order.
    pub(crate) checks: Vec<CheckVerdict>,
    /// `all`, `any` or N, with several checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) require: Option<String>,
    /// Utilisation 0..1 read from the health endpoint, if the check reads one.
    pub(crate) load: Option<f64>,
    /// Smoothed probe round-trip time in ms, if measured.
    pub(crate) latency_ms: Option<f64>,
    /// Slow-start ramp 0..1 (1: gets its full share).
    pub(crate) slow_start: f64,
    /// False within rise/fall of a change or in slow start (caps the answer TTL).
    pub(crate) settled: bool,
    /// Great-circle km from the client (when both have coordinates).
    pub(crate) distance_km: Option<f64>,
    /// A hostname datacenter's target and what it resolves to now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<TargetTrace>,
    /// Kept or dropped, and why.
    pub(crate) verdict: Verdict,
}

/// A hostname datacenter's target as `explain` and `/status` show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct TargetTrace {
    /// The target as written.
    pub(crate) target: String,
    /// The name looked up (the target, or where a CNAME chain in our zones leads out).
    pub(crate) resolves: String,
    /// `fresh`, `stale`, `expired`, `pending`, `local`, `followed`.
    pub(crate) state: &'static str,
    pub(crate) stale: bool,
    pub(crate) addresses: Vec<String>,
    /// Seconds since the addresses were last confirmed.
    pub(crate) age_secs: Option<u64>,
    /// The TTL the upstream gave.
    pub(crate) ttl: u32,
    /// The last lookup error, or why there is no address (NXDOMAIN...).
    pub(crate) error: Option<String>,
}

impl TargetTrace {
    /// The trace of hostname `h` with its current resolution `e`.
    pub(crate) fn of(h: &Hostname, e: Option<&crate::resolve::Entry>) -> TargetTrace {
        TargetTrace {
            target: h.name.to_string(),
            resolves: e.map_or_else(|| crate::resolve::key_of(&h.name), |e| e.name.to_string()),
            state: e.map_or("pending", |e| e.state.as_str()),
            stale: e.is_some_and(|e| e.is_stale()),
            addresses: e.map_or_else(Vec::new, |e| e.addresses().map(|a| a.to_string()).collect()),
            age_secs: e.and_then(|e| e.age_secs(SystemTime::now())),
            ttl: e.map_or(0, |e| e.ttl),
            error: e.and_then(|e| e.error.as_deref().map(str::to_string)),
        }
    }
}

/// A usable member's place in the policy's order.
#[derive(Clone, Debug, Serialize)]
pub struct RankTrace {
    /// Datacenter name.
    pub datacenter: String,
    /// What `value` is: distance-km (minus bias), latency-ms, share, hash-score or none.
    pub(crate) metric: &'static str,
    /// The `metric` value that placed it (share as a fraction of the pool); `None` when
    /// the policy has no key or the value is unknown.
    pub value: Option<f64>,
    /// For `latency`: where the value comes from (`map-subnet`, `map-country`,
    /// `map-continent`, `probe`, `unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<LatencySource>,
    /// Among the datacenters put in the answer.
    pub(crate) answered: bool,
}

/// One pool of the chain.
#[derive(Clone, Debug, Serialize)]
pub struct PoolTrace {
    /// Pool name as in the zone file.
    pub(crate) pool: String,
    /// Policy name as in the zone file (`failover`, `nearest`, ...).
    pub(crate) policy: &'static str,
    /// Tried as if every member were up (the whole chain is down and the name fails open).
    pub(crate) fail_open: bool,
    /// Every member in pool order, with its verdict.
    pub(crate) candidates: Vec<CandidateTrace>,
    /// Empty when no member was usable (the chain moved on).
    pub order: Vec<RankTrace>,
    #[serde(skip)]
    latency_sources: Vec<(DatacenterId, LatencySource)>,
}

/// The final decision.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct AnswerTrace {
    /// `answer`, `nodata` or `servfail`.
    pub(crate) outcome: &'static str,
    /// Where the addresses come from: `pool`, `fail-open`, `last-resort` or `none`.
    pub(crate) source: &'static str,
    /// The answered addresses, in answer order.
    pub(crate) addresses: Vec<String>,
    /// The answered datacenters, in answer order.
    pub(crate) datacenters: Vec<String>,
    /// TTL of the answer, seconds (after settle caps and fail-open halving).
    pub(crate) ttl: u32,
    /// ECS scope prefix length the answer carries (0: the same for every client).
    pub(crate) ecs_scope: u8,
}

/// Records a decision for `gslbd explain`.
#[derive(Clone, Debug, Serialize)]
pub struct Trace<'a> {
    #[serde(skip)]
    name: &'a GslbName,
    #[serde(skip)]
    dcs: &'a [Datacenter],
    #[serde(skip)]
    hostnames: &'a [Hostname],
    #[serde(skip)]
    resolutions: Option<Arc<Resolutions>>,
    /// Why each datacenter is in its state (from the snapshot), indexed by id.
    #[serde(skip)]
    whys: Vec<Why>,
    /// The client address the decision used (ECS or source).
    pub(crate) client: Option<String>,
    /// The client's continent code from GeoIP (`EU`).
    pub(crate) continent: Option<String>,
    /// The client's country, with the subdivision when known (`US-CA`).
    pub(crate) country: Option<String>,
    /// The client's (lat, lon) from GeoIP, for `nearest`.
    pub(crate) coords: Option<(f64, f64)>,
    /// Prefix of the GeoIP network that matched.
    pub(crate) geo_prefix: Option<u8>,
    /// Index of the rule that matched (0-based, file order), if any.
    pub rule: Option<u32>,
    /// How that rule was chosen.
    pub(crate) matched_by: Option<MatchedBy>,
    /// The pools tried, in fallback order.
    pub pools: Vec<PoolTrace>,
    /// Set when the fallback chain loops back to this pool (validation should prevent it).
    pub cycle_at: Option<String>,
    /// The decision, set by `finish`.
    pub(crate) answer: Option<AnswerTrace>,
}

impl<'a> Trace<'a> {
    /// An empty trace of a decision for `name`; `dcs` (the model's datacenters) gives the
    /// names it prints.
    pub fn new(name: &'a GslbName, dcs: &'a [Datacenter]) -> Trace<'a> {
        Trace {
            name,
            dcs,
            hostnames: &[],
            resolutions: None,
            whys: Vec::new(),
            client: None,
            continent: None,
            country: None,
            coords: None,
            geo_prefix: None,
            rule: None,
            matched_by: None,
            pools: Vec::new(),
            cycle_at: None,
            answer: None,
        }
    }

    /// Shows hostname datacenters' targets from `hostnames` (the model's) as `resolutions`
    /// (the snapshot's) has them, and answers their resolved addresses.
    pub fn with_targets(
        mut self,
        hostnames: &'a [Hostname],
        resolutions: Option<Arc<Resolutions>>,
    ) -> Trace<'a> {
        self.hostnames = hostnames;
        self.resolutions = resolutions;
        self
    }

    /// Show why each datacenter is in its state (the snapshot's reasons, indexed by id).
    pub fn with_reasons(mut self, whys: &[Why]) -> Self {
        self.whys = whys.to_vec();
        self
    }

    fn dc_name(&self, id: u32) -> String {
        self.dcs
            .get(id as usize)
            .map_or_else(|| format!("#{id}"), |d| d.name.to_string())
    }
}

fn admin_str(a: AdminState) -> &'static str {
    match a {
        AdminState::Obey => "obey",
        AdminState::Up => "up",
        AdminState::Down => "down",
        AdminState::Drain => "drain",
    }
}

fn code(c: &[u8]) -> String {
    c.iter()
        .filter(|b| **b != 0)
        .map(|b| char::from(*b))
        .collect()
}

impl Tracer for Trace<'_> {
    fn client(&mut self, client: &Client) {
        self.client = Some(client.addr.to_string());
        if let Some(l) = &client.location {
            self.coords = l.coords;
            self.continent = l.continent.map(|c| code(&c));
            self.country = match (l.country, l.subdivision) {
                (Some(c), Some(s)) => Some(format!("{}-{}", code(&c), code(&s))),
                (Some(c), None) => Some(code(&c)),
                _ => None,
            };
            self.geo_prefix = Some(l.prefix_len);
        }
    }

    fn rule(&mut self, index: Option<u32>, by: MatchedBy) {
        self.rule = index;
        self.matched_by = Some(by);
    }

    fn pool(&mut self, _id: PoolId, pool: &Pool, fail_open: bool) {
        self.pools.push(PoolTrace {
            pool: pool.name.to_string(),
            policy: pool.policy.name(),
            fail_open,
            candidates: Vec::new(),
            order: Vec::new(),
            latency_sources: Vec::new(),
        });
    }

    fn candidate(&mut self, member: &Member, state: &DcState, verdict: Verdict) {
        let distance_km = match (
            self.coords,
            self.dcs.get(member.dc.0 as usize).and_then(|d| d.coords),
        ) {
            (Some(a), Some(b)) => Some(super::rank::haversine_km(a, b)),
            _ => None,
        };
        let target = self
            .dcs
            .get(member.dc.0 as usize)
            .and_then(|d| d.target)
            .and_then(|h| {
                let host = self.hostnames.get(h.0 as usize)?;
                let e = self.resolutions.as_ref().and_then(|r| r.get(h));
                Some(TargetTrace::of(host, e))
            });
        let why = self.whys.get(member.dc.0 as usize);
        let c = CandidateTrace {
            target,
            datacenter: self.dc_name(member.dc.0),
            healthy: state.healthy,
            admin: admin_str(state.admin),
            input: state.decided_by(),
            health_input: state.health_input,
            reason: why.map(|w| w.reason.clone()),
            checks: why.map(|w| w.checks.clone()).unwrap_or_default(),
            require: why
                .filter(|w| w.checks.len() > 1)
                .map(|w| w.require.clone()),
            load: state.load,
            latency_ms: state.latency_ms,
            slow_start: state.slow_start,
            settled: state.settled,
            distance_km,
            verdict,
        };
        if let Some(p) = self.pools.last_mut() {
            p.candidates.push(c);
        }
    }

    fn latency_source(&mut self, dc: DatacenterId, source: LatencySource) {
        if let Some(p) = self.pools.last_mut() {
            p.latency_sources.push((dc, source));
        }
    }

    fn ranked(&mut self, pool: &Pool, cands: &[Cand], answered: usize) {
        let sources = self
            .pools
            .last()
            .map(|p| p.latency_sources.clone())
            .unwrap_or_default();
        let metric = pool.policy.rank_metric();
        // Weights and ramped shares are on different scales: show fractions of the pool.
        let total: f64 = cands.iter().map(|c| c.key).filter(|k| k.is_finite()).sum();
        let scale = if metric == "share" && total > 0.0 {
            1.0 / total
        } else {
            1.0
        };
        let order = cands
            .iter()
            .enumerate()
            .map(|(i, c)| RankTrace {
                datacenter: self.dc_name(c.dc.0),
                metric,
                value: (metric != "none" && c.key.is_finite()).then_some(c.key * scale),
                source: sources.iter().find(|(d, _)| *d == c.dc).map(|(_, s)| *s),
                answered: i < answered,
            })
            .collect();
        if let Some(p) = self.pools.last_mut() {
            p.order = order;
        }
    }

    fn cycle(&mut self, id: PoolId) {
        self.cycle_at = Some(
            self.name
                .pools
                .get(id.0 as usize)
                .map_or_else(|| format!("#{}", id.0), |p| p.name.to_string()),
        );
    }

    fn finish(&mut self, sel: &Selection) {
        let datacenters = sel.datacenters().map(|d| self.dc_name(d.0)).collect();
        self.answer = Some(AnswerTrace {
            outcome: match sel.outcome {
                AnswerKind::Answer => "answer",
                AnswerKind::Cname => "cname",
                AnswerKind::NoData => "nodata",
                AnswerKind::ServFail => "servfail",
            },
            source: match sel.source {
                Source::Pool => "pool",
                Source::FailOpen => "fail-open",
                Source::LastResort => "last-resort",
                Source::None => "none",
            },
            addresses: sel
                .addresses(self.name, self.dcs, self.resolutions.as_deref())
                .map(|a| a.to_string())
                .chain(
                    sel.cname()
                        .and_then(|d| self.dcs.get(d.0 as usize)?.target)
                        .and_then(|h| self.hostnames.get(h.0 as usize))
                        .map(|h| format!("CNAME {}", h.name)),
                )
                .collect(),
            datacenters,
            ttl: sel.ttl,
            ecs_scope: sel.scope,
        });
    }
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.1}{unit}"))
}

fn opt3(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.3}"))
}

impl fmt::Display for Trace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.client {
            write!(f, "client: {c}")?;
            match (&self.continent, &self.country, self.geo_prefix) {
                (None, None, None) => writeln!(f, " (no location)")?,
                (ct, cy, p) => writeln!(
                    f,
                    " continent={} country={} coords={} network=/{}",
                    ct.as_deref().unwrap_or("-"),
                    cy.as_deref().unwrap_or("-"),
                    self.coords
                        .map_or_else(|| "-".into(), |(a, b)| format!("{a:.2},{b:.2}")),
                    p.map_or_else(|| "-".into(), |p| p.to_string()),
                )?,
            }
        }
        match (self.rule, self.matched_by) {
            (Some(i), Some(by)) => {
                let pool = self
                    .name
                    .rules
                    .get(i as usize)
                    .and_then(|r| self.name.pools.get(r.pool.0 as usize));
                let pool = pool.map_or("?", |p| &p.name);
                writeln!(f, "rule: #{i} (matched by {}) -> pool {pool}", by.as_str())?
            }
            (None, Some(by)) => writeln!(f, "rule: none ({})", by.as_str())?,
            _ => writeln!(f, "rule: none")?,
        }
        for p in &self.pools {
            let mode = if p.fail_open {
                ", all-down fail-open"
            } else {
                ""
            };
            writeln!(f, "pool {} (policy {}{mode}):", p.pool, p.policy)?;
            for c in &p.candidates {
                writeln!(
                    f,
                    "  {:<12} health={} admin={} input={} load={} latency={} distance={} slow-start={:.2}{}: {}",
                    c.datacenter,
                    if c.healthy { "up" } else { "down" },
                    c.admin,
                    c.input.as_str(),
                    opt(c.load.map(|l| l * 100.0), "%"),
                    opt(c.latency_ms, "ms"),
                    opt(c.distance_km, "km"),
                    c.slow_start,
                    if c.settled { "" } else { " unsettled" },
                    c.verdict.reason(),
                )?;
                if let Some(r) = &c.reason {
                    writeln!(f, "  {:<12} why: {r}", "")?;
                }
                if c.checks.len() > 1 {
                    let list: Vec<String> = c
                        .checks
                        .iter()
                        .map(|k| format!("{} {}", k.name, if k.up { "up" } else { "down" }))
                        .collect();
                    writeln!(
                        f,
                        "  {:<12} checks (require {}): {}",
                        "",
                        c.require.as_deref().unwrap_or("all"),
                        list.join(", ")
                    )?;
                }
                if let Some(t) = &c.target {
                    let resolves = if t.resolves.eq_ignore_ascii_case(&t.target) {
                        String::new()
                    } else {
                        format!(" (asks {})", t.resolves)
                    };
                    let addrs = if t.addresses.is_empty() {
                        "none".to_string()
                    } else {
                        t.addresses.join(" ")
                    };
                    writeln!(
                        f,
                        "  {:<12} target {}{resolves}: {} [{addrs}] age={} ttl={}{}",
                        "",
                        t.target,
                        t.state,
                        t.age_secs.map_or_else(|| "-".into(), |a| format!("{a}s")),
                        t.ttl,
                        t.error
                            .as_deref()
                            .map_or_else(String::new, |e| format!(" ({e})")),
                    )?;
                }
            }
            if p.order.is_empty() {
                writeln!(f, "  no usable datacenter")?;
            }
            for (i, r) in p.order.iter().enumerate() {
                write!(f, "  #{} {:<12}", i + 1, r.datacenter)?;
                if r.metric != "none" {
                    write!(f, " {}={}", r.metric, opt3(r.value))?;
                }
                if let Some(s) = r.source {
                    write!(f, " ({})", s.as_str())?;
                }
                writeln!(f, "{}", if r.answered { " answered" } else { "" })?;
            }
        }
        if let Some(c) = &self.cycle_at {
            writeln!(f, "fallback cycle at pool {c}: stopped")?;
        }
        if let Some(a) = &self.answer {
            writeln!(f, "outcome: {} ({})", a.outcome, a.source)?;
            writeln!(f, "answer: {}", a.addresses.join(" "))?;
            writeln!(f, "ttl: {}  ecs scope: /{}", a.ttl, a.ecs_scope)?;
        }
        Ok(())
    }
}
