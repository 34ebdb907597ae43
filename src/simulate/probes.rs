//! Probes on virtual time: each target of the plan is probed on the schedule its worker
//! would follow (`probe::Jitter`: the first probe within one jitter of the start, then one
//! per interval ± jitter/2, rounds skipped when a probe ran past them), and finds what the
//! ground truth says at that moment. The results are real `ProbeResult`s for the real
//! aggregator.
//!
//! ```text
//! due(round) ──ground truth at due──> down:  timeout (at due+timeout) | refused
//!            (datacenter, address,               | `status`: what the kind sees of a sick
//!             or this check of its                 application (http 503, dns SERVFAIL,
//!             datacenter)                          exec exit 1; tcp, tls, icmp: a pass)
//!                                     up:    lost (probe-loss share)  -> timeout
//!                                            latency >= timeout       -> timeout
//!                                            else pass at due+latency, with the load figure
//!                                            (background + traffic since the last probe /
//!                                             capacity) when the check reads one
//! ```

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::scenario::FailMode;
use super::truth::{Truth, containing};
use super::{Ns, Rng, ns};
use crate::probe::{CheckKind, Jitter, LoadFigure, ProbeOutcome, ProbeResult, ProbeSet, TargetId};

/// Virtual time as the aggregator sees it: a fixed base instant plus the simulated offset.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    pub(crate) base: Instant,
}

impl Clock {
    pub(crate) fn at(&self, t: Ns) -> Instant {
        self.base + Duration::from_nanos(t)
    }

    pub(crate) fn ns(&self, i: Instant) -> Ns {
        ns(i.saturating_duration_since(self.base))
    }
}

/// What the health endpoint reports as load.
#[derive(Clone, Copy, Debug)]
enum LoadKind {
    None,
    Utilisation,
    /// Connections: utilisation times the datacenter's (zone) capacity.
    Connections(f64),
}

/// What a probe of the kind sees of an application that says it is unhealthy
/// ([`FailMode::Status`]); `None`: the kind does not look at the application and passes.
fn sick_outcome(kind: &CheckKind) -> Option<ProbeOutcome> {
    match kind {
        CheckKind::Http(_) => Some(ProbeOutcome::Status(503)),
        CheckKind::Dns(_) => Some(ProbeOutcome::Rcode(
            "rcode SERVFAIL, expected NOERROR".into(),
        )),
        CheckKind::Exec(_) => Some(ProbeOutcome::Exit("exit status 1".into())),
        CheckKind::Tcp(_) | CheckKind::Tls(_) | CheckKind::Icmp(_) => None,
    }
}

/// One target's worker, on virtual time.
#[derive(Clone, Debug)]
struct Sched {
    id: TargetId,
    start: Instant,
    round: u64,
    interval: Duration,
    jitter: Duration,
    timeout: Duration,
    /// The outcome of a probe of a sick application (`None`: it passes).
    sick: Option<ProbeOutcome>,
    /// Refused connections are seen as such (icmp sees no connection: a timeout).
    refusable: bool,
    /// (global datacenter, check name) of every check this target is probed for: a
    /// check-only failure of the ground truth makes it fail.
    checks: Vec<(usize, String)>,
    /// Global indexes of the datacenters that use the target (the first one's latency and
    /// load are reported).
    dcs: Vec<usize>,
    ip: IpAddr,
    load: LoadKind,
    /// Traffic mass of the first datacenter and the time at the last probe.
    last: Option<(f64, Ns)>,
}

/// What a probe needs from the rest of the simulation.
pub(crate) struct ProbeCtx<'a> {
    pub(crate) truth: &'a Truth,
    pub(crate) rng: &'a mut Rng,
    pub(crate) loss: f64,
    /// Client queries answered with each datacenter so far (global index, at a time).
    pub(crate) mass: &'a dyn Fn(usize, Ns) -> f64,
    /// The current rate of client queries held by each datacenter (global index).
    pub(crate) rate: &'a dyn Fn(usize) -> f64,
}

/// The probe workers of one probe plan.
pub(crate) struct Probes {
    jitter: Jitter,
    scheds: Vec<Sched>,
}

impl Probes {
    /// The workers of `set` spawned at `spawned` (global datacenter index of each model id in
    /// `global`); returns them with each target's first due time.
    pub(crate) fn start(
        set: Arc<ProbeSet>,
        seed: u64,
        spawned: Ns,
        clock: Clock,
        global: &[usize],
    ) -> (Probes, Vec<(Ns, usize)>) {
        let jitter = Jitter { seed };
        let mut first = Vec::new();
        let scheds = set
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let j = t.check.effective_jitter();
                let start = clock.at(spawned) + jitter.first_delay(t.id, j);
                first.push((clock.ns(start), i));
                let dcs: Vec<usize> = t.users.iter().map(|&(d, _)| global[d as usize]).collect();
                let cap = t
                    .users
                    .first()
                    .and_then(|&(d, _)| set.dcs.get(d as usize))
                    .and_then(|p| p.capacity);
                // An exec command may print a load figure too, but what it prints is not
                // known here: its probes report none.
                let load = match &t.check.kind {
                    CheckKind::Http(h) if h.load_pointer.is_some() => LoadKind::Utilisation,
                    CheckKind::Http(h) if h.connections_pointer.is_some() => {
                        LoadKind::Connections(cap.unwrap_or(0.0))
                    }
                    _ => LoadKind::None,
                };
                let checks = t
                    .users
                    .iter()
                    .filter_map(|&(d, _)| {
                        let plan = set.dcs.get(d as usize)?;
                        let c = plan.checks.iter().find(|c| c.slots.contains(&t.id))?;
                        Some((global[d as usize], c.name.clone()))
                    })
                    .collect();
                Sched {
                    id: t.id,
                    start,
                    round: 0,
                    interval: t.check.interval,
                    jitter: j,
                    timeout: t.check.timeout,
                    sick: sick_outcome(&t.check.kind),
                    refusable: !matches!(t.check.kind, CheckKind::Icmp(_)),
                    checks,
                    dcs,
                    ip: t.addr.ip().to_canonical(),
                    load,
                    last: None,
                }
            })
            .collect();
        (Probes { jitter, scheds }, first)
    }

    /// Runs the probe of target `i` that is due at `due`: its result (finished at `result.at`)
    /// and when the next one is due.
    pub(crate) fn probe(
        &mut self,
        i: usize,
        due: Ns,
        clock: Clock,
        ctx: &mut ProbeCtx<'_>,
    ) -> (ProbeResult, Ns) {
        let s = &mut self.scheds[i];
        let down = s
            .dcs
            .iter()
            .find_map(|&d| containing(&ctx.truth.dcs[d].down, due))
            .or_else(|| ctx.truth.addrs.get(&s.ip).and_then(|p| containing(p, due)))
            .or_else(|| {
                s.checks
                    .iter()
                    .find_map(|(d, c)| containing(ctx.truth.check_periods(*d, c), due))
            })
            .map(|p| p.fail);
        let dc = s.dcs.first().copied();
        let (lat_ms, jit_ms) = dc.map_or((super::truth::DEFAULT_LATENCY_MS, 0.0), |d| {
            ctx.truth.dcs[d].latency.at(due)
        });
        let sample = (lat_ms + (2.0 * ctx.rng.unit() - 1.0) * jit_ms).max(0.05);
        let latency = Duration::from_secs_f64(sample / 1000.0);
        let lost = ctx.loss > 0.0 && ctx.rng.unit() < ctx.loss;
        let timeout = |s: &Sched| (ProbeOutcome::Timeout(s.timeout), None, due + ns(s.timeout));
        let (outcome, lat, at) = match down {
            Some(FailMode::Timeout) => timeout(s),
            Some(FailMode::Refused) if s.refusable => {
                (ProbeOutcome::Refused, None, due + ns(latency) / 2)
            }
            Some(FailMode::Refused) => timeout(s),
            Some(FailMode::Status) if s.sick.is_some() => {
                let sick = s.sick.clone().unwrap_or(ProbeOutcome::Status(503));
                (sick, Some(latency), due + ns(latency))
            }
            _ if lost || latency >= s.timeout => timeout(s),
            _ => (ProbeOutcome::Pass, Some(latency), due + ns(latency)),
        };
        let mut result = ProbeResult::new(s.id, outcome, clock.at(at));
        result.latency = lat;
        if result.outcome == ProbeOutcome::Pass
            && let Some(d) = dc
        {
            let m = (ctx.mass)(d, at);
            let traffic = match s.last {
                Some((m0, t0)) if at > t0 => (m - m0) / super::secs(at - t0),
                _ => (ctx.rate)(d),
            };
            let t = &ctx.truth.dcs[d];
            let util = t.background.at(at)
                + if t.capacity > 0.0 {
                    traffic / t.capacity
                } else {
                    0.0
                };
            result.load = match s.load {
                LoadKind::None => None,
                LoadKind::Utilisation => Some(LoadFigure::Utilisation(util.clamp(0.0, 1.0))),
                LoadKind::Connections(cap) => Some(LoadFigure::Connections(util.max(0.0) * cap)),
            };
        }
        if let Some(d) = dc {
            s.last = Some(((ctx.mass)(d, at), at));
        }
        s.round =
            self.jitter
                .next_round(s.id, s.start, s.round, s.interval, s.jitter, clock.at(at));
        let next = clock.ns(self
            .jitter
            .due(s.id, s.start, s.round, s.interval, s.jitter));
        (result, next)
    }
}
