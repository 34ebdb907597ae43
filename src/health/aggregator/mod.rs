//! The health aggregator: the only writer of health state.
//!
//! ```text
//!  probe workers --mpsc<ProbeResult>--+
//!                                     v
//!  AggregatorHandle --mpsc<Command>--> Aggregator::run (one task)
//!   set_admin/status/persist/events    |  per target: rise/fall hysteresis, load, latency EWMA
//!   input (pushed, feed, alert)        |  per check: min-up over its addresses
//!                                      |  per datacenter: require over its checks, external
//!                                      |    verdicts (expiring), admin, slow start, drain
//!                                      |--publish (coalesced, >= publish_interval apart)-->
//!                                      |      dyn Publish (the server pairs it with the model)
//!                                      |--events--> ring (/status) + broadcast (SSE, webhooks)
//!                                      +--persist (periodic, shutdown)--> --state-dir files
//! ```
//!
//! The parts: `target.rs` (the per-target rise/fall state machine), `combine.rs` (a
//! datacenter's state from its checks, the external verdicts and the admin state, and why),
//! `inputs.rs` (the external verdicts: the one place they enter, and their expiry),
//! `status.rs` (what the status API sees), `warm.rs` (restoring and writing the state files),
//! and this file (the handle, publication and the run loop).
//!
//! Everything time-dependent takes `now` (tokio's clock) as an argument, so the state machine
//! can be driven synchronously in tests ([`Aggregator::apply`], [`Aggregator::set_admin`],
//! [`Aggregator::publish`]) and exactly under paused time.
//!
//! Startup: a target starts in the state the `startup` setting says (assume-up by default),
//! or in its warm state from `health.json` when that is younger than `warm_max_age`. The
//! first probe result of a target without warm state decides its state directly (the first
//! probe round ends the assumption); after that, `rise` consecutive passes bring it up and
//! `fall` consecutive fails take it down.
//!
//! Hostname datacenters (the dynamic part of the probe plan, `probe::plan`): the aggregator
//! owns its copy of the plan and watches the resolver's results. When a datacenter's target
//! resolves to a new address set, [`Aggregator::set_host_addresses`] re-slots it: addresses
//! still present keep their target (and its state here), new ones get a target that starts
//! as the warm-start rules say (the health file read at start is kept for them while it is
//! fresh), and targets no one uses any more stop being probed. The run loop starts and stops
//! their workers (`probe::DynamicWorkers`).

mod combine;
mod inputs;
mod shared;
mod status;
mod target;
mod warm;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

pub use status::{CheckStatus, DcStatus, DrainStatus, InputStatus, Status, TargetStatus};
use target::TargetState;

use super::events::{Change, EventKind, EventLog, EventView};
use super::ewma::{DEFAULT_HALF_LIFE, slow_start_factor};
use super::input::{Applied, Input, InputError, Update};
use super::persist::{
    ADMIN_FILE, AdminFile, HEALTH_FILE, HealthFile, INPUTS_FILE, InputsFile, PersistError,
    read_json,
};
use super::{AdminState, DcState, Publish, Snapshot};
use crate::probe::{DynamicWorkers, LoadFigure, ProbeOutcome, ProbeResult, ProbeSet, TargetId};
use crate::resolve::ResolvedNames;
use crate::shutdown::Shutdown;
use combine::Cause;
use inputs::Inputs;

/// What a target is assumed to be before its first probe (without usable warm state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Startup {
    /// Up until probed (the default): a restart never takes a datacenter out of answers.
    #[default]
    AssumeUp,
    /// Down until a probe passes.
    AssumeDown,
}

/// Aggregator settings.
#[derive(Clone, Debug)]
pub struct AggregatorSettings {
    /// State of never-probed targets (default assume-up).
    pub startup: Startup,
    /// Minimum time between two snapshot publications (default 100 ms).
    pub publish_interval: Duration,
    /// Half-life of the latency EWMA (default 30 s).
    pub latency_half_life: Duration,
    /// A load figure older than this is dropped (default 60 s).
    pub load_max_age: Duration,
    /// `--state-dir`: where admin and warm-start state are kept; `None` = not persisted.
    pub state_dir: Option<PathBuf>,
    /// How often the state files are written while running (default 30 s; also at shutdown).
    pub persist_interval: Duration,
    /// Warm state older than this is ignored at start (default 5 min).
    pub warm_max_age: Duration,
}

impl Default for AggregatorSettings {
    fn default() -> Self {
        AggregatorSettings {
            startup: Startup::AssumeUp,
            publish_interval: Duration::from_millis(100),
            latency_half_life: DEFAULT_HALF_LIFE,
            load_max_age: Duration::from_secs(60),
            state_dir: None,
            persist_interval: Duration::from_secs(30),
            warm_max_age: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Debug)]
struct DcRuntime {
    admin: AdminState,
    /// The probes' verdict: `require` of its checks up (true without checks).
    probes_up: bool,
    /// Each check's verdict (at least min-up of its addresses up).
    checks_up: Vec<bool>,
    /// The health verdict: an external verdict when one holds, else `probes_up`.
    healthy: bool,
    /// What decided `healthy`.
    health_input: Input,
    /// Start of the slow-start ramp, while one is running.
    came_up_at: Option<Instant>,
    drain_started: Option<(Instant, SystemTime)>,
    drain_complete_logged: bool,
    max_ttl: Duration,
}

/// Why an admin command was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    /// No datacenter has this id.
    #[error("no datacenter with id {0}")]
    UnknownDatacenter(u32),
    /// No datacenter has this name.
    #[error("no datacenter named `{0}`")]
    UnknownName(String),
    /// The aggregator task has ended (the server is stopping).
    #[error("the health aggregator has stopped")]
    Stopped,
}

enum Command {
    SetAdmin {
        dc: u32,
        state: AdminState,
        reply: oneshot::Sender<Result<(), AdminError>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
    Persist {
        reply: oneshot::Sender<Result<(), PersistError>>,
    },
    Events {
        reply: oneshot::Sender<Vec<EventView>>,
    },
    Input {
        update: Update,
        reply: oneshot::Sender<Result<Applied, InputError>>,
    },
}

/// Talks to a running [`Aggregator`]; cheap to clone.
#[derive(Clone, Debug)]
pub struct AggregatorHandle {
    tx: mpsc::Sender<Command>,
    names: Arc<Vec<String>>,
}

impl AggregatorHandle {
    /// Id of the datacenter called `name`.
    pub fn id_of(&self, name: &str) -> Option<u32> {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| u32::try_from(i).ok())
    }

    /// Recent state changes, newest first; `None` once the aggregator has stopped.
    pub async fn events(&self) -> Option<Vec<EventView>> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Events { reply }).await.ok()?;
        rx.await.ok()
    }

    /// Set a datacenter's admin state; returns once applied (and published, if it changed
    /// what answers may contain).
    pub async fn set_admin(&self, dc: u32, state: AdminState) -> Result<(), AdminError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::SetAdmin { dc, state, reply })
            .await
            .map_err(|_| AdminError::Stopped)?;
        rx.await.map_err(|_| AdminError::Stopped)?
    }

    /// [`Self::set_admin`] by datacenter name.
    pub async fn set_admin_by_name(&self, name: &str, state: AdminState) -> Result<(), AdminError> {
        let dc = self
            .id_of(name)
            .ok_or_else(|| AdminError::UnknownName(name.to_string()))?;
        self.set_admin(dc, state).await
    }

    /// Apply an external verdict (pushed, feed, alert); returns once applied and published.
    pub async fn input(&self, update: Update) -> Result<Applied, InputError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Input { update, reply })
            .await
            .map_err(|_| InputError::Stopped)?;
        rx.await.map_err(|_| InputError::Stopped)?
    }

    /// Full status as of now; `None` once the aggregator has stopped.
    pub async fn status(&self) -> Option<Status> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Status { reply }).await.ok()?;
        rx.await.ok()
    }

    /// Write the state files now (no-op without a state dir).
    pub async fn persist(&self) -> Result<(), AdminError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Persist { reply })
            .await
            .map_err(|_| AdminError::Stopped)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "writing state files");
                Ok(())
            }
            Err(_) => Err(AdminError::Stopped),
        }
    }
}

/// The single writer of health state. Build with [`Aggregator::new`], then either drive it
/// synchronously or hand it to [`Aggregator::run`].
pub struct Aggregator {
    /// The probe plan, with its dynamic part (hostname datacenters) kept current here.
    set: ProbeSet,
    settings: AggregatorSettings,
    out: Arc<dyn Publish>,
    /// The last snapshot handed to `out`.
    current: Arc<Snapshot>,
    targets: Vec<TargetState>,
    dcs: Vec<DcRuntime>,
    generation: u64,
    published: Vec<DcState>,
    last_publish: Option<Instant>,
    cmds: Option<mpsc::Receiver<Command>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Recent state changes, for the status page (and sent on to SSE and webhooks).
    events: EventLog,
    /// External verdicts (pushed, feed, alert).
    inputs: Inputs,
    /// Something only `explain` sees (a reason, a check's state) changed since the last
    /// publication.
    why_dirty: bool,
    /// Per target: the shared verdict (a cluster's quorum) that decides it, if one holds.
    shared: Vec<Option<shared::SharedVerdict>>,
    /// `Target::key` -> target index, to resolve shared verdicts.
    target_keys: std::collections::HashMap<String, usize>,
    /// Which targets are probed here (a cluster's share); `None`: all.
    steering: Option<crate::probe::Steering>,
    /// Where each applied probe result's observation goes (a cluster), if anywhere.
    observations: Option<mpsc::Sender<super::input::TargetObservation>>,
    /// The warm-start file read at start and when, for targets added later.
    warm_file: Option<(HealthFile, Instant, SystemTime)>,
    /// Targets added before the run loop started (they need workers).
    unstarted: Vec<TargetId>,
    /// Workers of the dynamic part, and the resolver results they follow.
    dynamic: Option<(DynamicWorkers, watch::Receiver<Arc<ResolvedNames>>)>,
}

impl Aggregator {
    /// Build the state for `set`, restoring admin state (always) and warm health (when fresh)
    /// from the state dir, and publish the initial snapshot into `out`.
    ///
    /// Fails only when the admin file exists but cannot be read or understood: starting with
    /// a drained datacenter back in service would be worse than not starting. A bad health
    /// file is logged and ignored (it is only a cache).
    pub fn new(
        set: Arc<ProbeSet>,
        settings: AggregatorSettings,
        out: Arc<dyn Publish>,
    ) -> Result<(Aggregator, AggregatorHandle), PersistError> {
        Aggregator::new_with_hosts(set, settings, out, &ResolvedNames::default())
    }

    /// [`Aggregator::new`] with the hostname datacenters' current addresses from `hosts`
    /// (applied before the state files are read and the first snapshot is published).
    pub fn new_with_hosts(
        set: Arc<ProbeSet>,
        settings: AggregatorSettings,
        out: Arc<dyn Publish>,
        hosts: &ResolvedNames,
    ) -> Result<(Aggregator, AggregatorHandle), PersistError> {
        let set = Arc::unwrap_or_clone(set);
        let now = Instant::now();
        let wall = SystemTime::now();
        let assume_up = settings.startup == Startup::AssumeUp;
        let targets = set
            .targets
            .iter()
            .map(|t| {
                TargetState::new(
                    t.addr,
                    // A per-datacenter target (exec) is told its datacenter: keep them apart.
                    t.identity(),
                    t.check.rise,
                    t.check.fall,
                    assume_up,
                    settings.latency_half_life,
                )
            })
            .collect();
        let dcs = set
            .dcs
            .iter()
            .map(|d| DcRuntime {
                admin: AdminState::Obey,
                probes_up: true,
                checks_up: vec![true; d.checks.len()],
                healthy: true,
                health_input: if d.has_checks() {
                    Input::Probes
                } else {
                    Input::Config
                },
                came_up_at: None,
                drain_started: None,
                drain_complete_logged: false,
                max_ttl: d.max_ttl,
            })
            .collect();
        let (tx, rx) = mpsc::channel(64);
        let names = Arc::new(set.dcs.iter().map(|d| d.name.clone()).collect());
        let target_keys = set
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.key(), i))
            .collect();
        let shared = vec![None; set.targets.len()];
        let mut agg = Aggregator {
            set,
            settings,
            out,
            current: Arc::new(Snapshot::default()),
            targets,
            dcs,
            generation: 0,
            published: Vec::new(),
            last_publish: None,
            cmds: Some(rx),
            metrics: None,
            events: EventLog::default(),
            inputs: Inputs::default(),
            why_dirty: true,
            shared,
            target_keys,
            steering: None,
            observations: None,
            warm_file: None,
            unstarted: Vec::new(),
            dynamic: None,
        };
        let added = agg.retarget_at(hosts, now, true).added;
        agg.unstarted = added;
        if let Some(dir) = agg.settings.state_dir.clone() {
            if let Some(file) = read_json::<AdminFile>(&dir, ADMIN_FILE)? {
                agg.restore_admin(&file, now, wall, &dir)?;
            }
            match read_json::<HealthFile>(&dir, HEALTH_FILE) {
                Ok(Some(file)) => {
                    agg.restore_health(&file, now, wall);
                    agg.warm_file = Some((file, now, wall));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "ignoring the warm-start file"),
            }
            match read_json::<InputsFile>(&dir, INPUTS_FILE) {
                Ok(Some(file)) => agg.restore_inputs(&file, now, wall),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "ignoring the saved external verdicts"),
            }
        }
        for i in 0..agg.dcs.len() {
            agg.reevaluate(i, now, Cause::Start);
        }
        agg.force_publish(now);
        Ok((agg, AggregatorHandle { tx, names }))
    }

    /// Recent state changes, newest first, with ages as of `now`.
    pub fn events(&self, now: Instant) -> Vec<EventView> {
        self.events.view(now)
    }

    /// The current snapshot as published.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.clone()
    }

    /// Sends every event from now on to `out` as well (SSE, webhooks).
    pub fn set_events_out(&mut self, out: tokio::sync::broadcast::Sender<EventView>) {
        self.events.send_to(out);
    }

    /// Counts probe results and snapshot publications in `m` from now on.
    pub(crate) fn set_metrics(&mut self, m: Arc<crate::metrics::Metrics>) {
        self.metrics = Some(m);
    }

    /// Lets the run loop follow the resolver (`hosts`) and probe hostname datacenters'
    /// addresses with `workers`.
    pub(crate) fn follow_hosts(
        &mut self,
        workers: DynamicWorkers,
        hosts: watch::Receiver<Arc<ResolvedNames>>,
    ) {
        self.dynamic = Some((workers, hosts));
    }

    /// Gives every hostname datacenter the address set its target resolves to in `hosts`
    /// (see the module docs) and recomputes the health of those whose set changed. Returns
    /// the targets that need a worker and those whose worker must stop.
    pub fn set_host_addresses(
        &mut self,
        hosts: &ResolvedNames,
        now: Instant,
    ) -> crate::probe::PlanChange {
        self.retarget(hosts, now)
    }

    fn retarget(&mut self, hosts: &ResolvedNames, now: Instant) -> crate::probe::PlanChange {
        self.retarget_at(hosts, now, false)
    }

    /// [`Aggregator::set_host_addresses`]; `start`: while building (no events, no ramp).
    fn retarget_at(
        &mut self,
        hosts: &ResolvedNames,
        now: Instant,
        start: bool,
    ) -> crate::probe::PlanChange {
        let mut all = crate::probe::PlanChange::default();
        for dc in 0..self.set.dcs.len() {
            let Some(name) = self.set.dcs[dc].hostname.clone() else {
                continue;
            };
            let (addrs, serial) = match hosts.get(&name) {
                Some(e) if e.usable() => (e.addresses().collect::<Vec<_>>(), e.serial),
                Some(e) => (Vec::new(), e.serial),
                None => (Vec::new(), 0),
            };
            if serial == self.set.dcs[dc].addr_serial {
                continue;
            }
            let before = self.set.dcs[dc].slot_bits.len();
            let change = self.set.set_addresses(dc, &addrs, serial);
            let assume_up = self.settings.startup == Startup::AssumeUp;
            for t in &change.added {
                let target = &self.set.targets[t.0 as usize];
                let fresh = TargetState::new(
                    target.addr,
                    target.check.fingerprint(),
                    target.check.rise,
                    target.check.fall,
                    assume_up,
                    self.settings.latency_half_life,
                );
                match self.targets.get_mut(t.0 as usize) {
                    // An address that comes back after it was retired starts over.
                    Some(s) => *s = fresh,
                    None => self.targets.push(fresh),
                }
                self.restore_one(*t, now);
            }
            if self.set.dcs[dc].is_dynamic() {
                let plan = &self.set.dcs[dc];
                let list = if addrs.is_empty() {
                    "nothing".to_string()
                } else {
                    addrs
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                tracing::info!(
                    dc = %plan.name,
                    target = %name,
                    addresses = %list,
                    previously = before,
                    added = change.added.len(),
                    retired = change.retired.len(),
                    "probing the addresses the target resolves to now"
                );
                if !start {
                    self.events.push(
                        Change {
                            input: Some(Input::Probes),
                            ..Change::new(
                                EventKind::Datacenter,
                                &plan.name,
                                "resolved",
                                "resolved",
                                format!("{name} now resolves to {list}"),
                            )
                        },
                        now,
                    );
                    self.why_dirty = true;
                    let cause = Cause::Resolved {
                        name: &name,
                        addresses: addrs.len(),
                    };
                    self.reevaluate(dc, now, cause);
                }
            }
            all.added.extend(change.added);
            all.retired.extend(change.retired);
        }
        all
    }

    /// Apply one probe result at its own time `r.at`. Returns true when a target changed state.
    pub fn apply(&mut self, r: &ProbeResult) -> bool {
        if let (Some(m), Some(target)) = (&self.metrics, self.set.targets.get(r.target.0 as usize))
        {
            let addr = target.addr.ip().to_string();
            for (dc, _) in &target.users {
                if let Some(plan) = self.set.dcs.get(*dc as usize) {
                    m.probe(&plan.name, &addr, r.outcome.kind(), r.latency);
                }
            }
        }
        // A retired target (its address left every hostname datacenter that had it).
        if self
            .set
            .targets
            .get(r.target.0 as usize)
            .is_none_or(|t| t.users.is_empty())
        {
            return false;
        }
        let Some(t) = self.targets.get_mut(r.target.0 as usize) else {
            return false;
        };
        let flip = t.observe(r);
        let (passes, fails, addr) = (t.passes, t.fails, t.addr);
        self.send_observation(r.target, r.at);
        let Some(flip) = flip else {
            return false;
        };
        let target = &self.set.targets[r.target.0 as usize];
        let users: Vec<u32> = target.users.iter().map(|&(dc, _)| dc).collect();
        for &dc in &users {
            let plan = &self.set.dcs[dc as usize];
            let check = plan
                .checks
                .iter()
                .find(|c| c.slots.contains(&r.target))
                .map(|c| c.name.clone());
            tracing::info!(
                dc = %plan.name,
                check = check.as_deref().unwrap_or(""),
                addr = %addr,
                old = updown(!flip.up),
                new = updown(flip.up),
                reason = %r.outcome,
                passes,
                fails,
                first_probe = flip.first,
                "target state change"
            );
            self.events.push(
                Change {
                    address: Some(addr.to_string()),
                    check,
                    ..Change::new(
                        EventKind::Target,
                        &plan.name,
                        updown(!flip.up),
                        updown(flip.up),
                        event_reason(&r.outcome, flip.first),
                    )
                },
                r.at,
            );
        }
        self.why_dirty = true;
        let mut seen = Vec::with_capacity(users.len());
        for dc in users {
            if !seen.contains(&dc) {
                seen.push(dc);
                self.reevaluate(
                    dc as usize,
                    r.at,
                    Cause::Probe {
                        outcome: &r.outcome,
                        first: flip.first,
                    },
                );
            }
        }
        true
    }

    /// Set the admin state of datacenter `dc` at `now`.
    pub fn set_admin(
        &mut self,
        dc: u32,
        state: AdminState,
        now: Instant,
    ) -> Result<(), AdminError> {
        let i = dc as usize;
        let Some(d) = self.dcs.get_mut(i) else {
            return Err(AdminError::UnknownDatacenter(dc));
        };
        let old = d.admin;
        if old == state {
            return Ok(());
        }
        let was_usable = usable(old, d.healthy);
        d.admin = state;
        if state == AdminState::Drain {
            d.drain_started = Some((now, SystemTime::now()));
            d.drain_complete_logged = false;
        } else {
            d.drain_started = None;
        }
        let window = self.set.dcs[i].slow_start();
        if !was_usable && usable(state, d.healthy) {
            d.came_up_at = window.map(|_| now);
        }
        tracing::info!(dc = %self.set.dcs[i].name, old = old.as_str(), new = state.as_str(), "admin state change");
        self.events.push(
            Change {
                input: Some(Input::Admin),
                ..Change::new(
                    EventKind::Admin,
                    &self.set.dcs[i].name,
                    old.as_str(),
                    state.as_str(),
                    "set by an operator".into(),
                )
            },
            now,
        );
        self.why_dirty = true;
        Ok(())
    }

    /// What an operator's admin command does (the API, `gslbd admin`, `gslbd simulate`): set
    /// the state at `now` and publish at once, skipping the coalescing wait (the operator
    /// expects the change at once).
    pub fn admin_command(
        &mut self,
        dc: u32,
        state: AdminState,
        now: Instant,
    ) -> Result<(), AdminError> {
        self.set_admin(dc, state, now)?;
        self.last_publish = None;
        self.publish(now);
        Ok(())
    }

    /// What an external verdict's arrival does (the health API, a feed, Alertmanager,
    /// `gslbd simulate`): apply it at `now` and, like admin changes, publish at once rather
    /// than after the coalescing wait.
    pub fn input_command(&mut self, update: Update, now: Instant) -> Result<Applied, InputError> {
        let r = self.input(update, now);
        if r.is_ok() {
            self.last_publish = None;
            self.publish(now);
        }
        r
    }

    /// Slow-start factor of datacenter `dc` at `now` (1 when not ramping).
    pub(crate) fn slow_start(&self, dc: usize, now: Instant) -> f64 {
        let window = self.set.dcs[dc].slow_start();
        match (self.dcs[dc].came_up_at, window) {
            (Some(at), Some(w)) => slow_start_factor(at, w, now),
            _ => 1.0,
        }
    }

    /// Load of datacenter `dc` at `now`: mean of its targets' fresh figures, connections
    /// divided by capacity; capped at 1.
    fn dc_load(&self, dc: usize, now: Instant) -> (Option<f64>, Option<String>) {
        let plan = &self.set.dcs[dc];
        let (mut sum, mut n, mut err) = (0.0, 0u32, None);
        for t in plan.targets() {
            let ts = &self.targets[t.0 as usize];
            if let Some(s) = self.shared_of(t.0 as usize)
                && let Some(u) = s.load
            {
                sum += u.min(1.0);
                n += 1;
                continue;
            }
            if let Some(e) = &ts.load_error {
                err = Some(e.clone());
            }
            let v = match ts.fresh_load(now, self.settings.load_max_age) {
                Some(LoadFigure::Utilisation(u)) => u,
                Some(LoadFigure::Connections(c)) => match plan.capacity.filter(|c| *c > 0.0) {
                    Some(cap) => c / cap,
                    None => {
                        err = Some("a connections figure needs a datacenter capacity".into());
                        continue;
                    }
                },
                None => continue,
            };
            sum += v.min(1.0);
            n += 1;
        }
        ((n > 0).then(|| sum / f64::from(n)), err)
    }

    fn dc_latency(&self, dc: usize) -> Option<f64> {
        // Mean of the up targets' averages; if none is up, of all that have one. A target
        // with a shared verdict counts with the probing nodes' figure.
        let plan = &self.set.dcs[dc];
        let mean = |only_up: bool| {
            let v: Vec<f64> = plan
                .targets()
                .map(|t| t.0 as usize)
                .filter(|&t| !only_up || self.target_up(t))
                .filter_map(|t| match self.shared_of(t) {
                    Some(s) => s.latency_ms.or_else(|| self.targets[t].latency.get()),
                    None => self.targets[t].latency.get(),
                })
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        mean(true).or_else(|| mean(false))
    }

    /// The state of datacenter `dc` at `now`, as the next snapshot would carry it.
    pub fn dc_state(&self, dc: usize, now: Instant) -> DcState {
        let plan = &self.set.dcs[dc];
        let d = &self.dcs[dc];
        // The cluster's verdicts are per target, as the probes' are: its bits are the probes'
        // bits (with the shared verdicts in them), never the whole datacenter's.
        let external = !matches!(
            d.health_input,
            Input::Probes | Input::Config | Input::Cluster
        );
        let mut addr_up = self.probe_bits(dc);
        if external && d.healthy {
            // The verdict vouches for the datacenter as a whole.
            addr_up = if plan.has_checks() {
                plan.all_bits
            } else {
                u64::MAX
            };
        }
        addr_up = self.inputs.apply_addresses(dc, addr_up);
        let slow_start = self.slow_start(dc, now);
        let settled = slow_start >= 1.0
            && (external
                || plan.targets().all(|t| {
                    self.shared_of(t.0 as usize).is_some() || self.targets[t.0 as usize].settled()
                }));
        let load = self.inputs.load(dc).or_else(|| self.dc_load(dc, now).0);
        DcState {
            healthy: d.healthy,
            health_input: d.health_input,
            admin: d.admin,
            load,
            latency_ms: self.dc_latency(dc),
            slow_start,
            addr_up,
            addr_serial: plan.addr_serial,
            settled,
            settle_ttl: plan.settle_ttl(),
        }
    }

    fn build(&self, now: Instant) -> Vec<DcState> {
        (0..self.dcs.len()).map(|i| self.dc_state(i, now)).collect()
    }

    fn build_why(&self) -> Vec<super::Why> {
        (0..self.dcs.len()).map(|i| self.why(i)).collect()
    }

    fn force_publish(&mut self, now: Instant) {
        let dcs = self.build(now);
        self.store(dcs, now);
    }

    /// Publishes `dcs` as the next snapshot generation.
    fn store(&mut self, dcs: Vec<DcState>, now: Instant) {
        self.generation += 1;
        let snap = Arc::new(Snapshot {
            generation: self.generation,
            dcs: dcs.clone(),
            why: self.build_why(),
            latency_map: None,
            resolutions: None,
        });
        self.why_dirty = false;
        self.current = snap.clone();
        self.out.publish(snap);
        self.published = dcs;
        self.last_publish = Some(now);
        if let Some(m) = &self.metrics {
            m.snapshot_published();
        }
    }

    /// Publish a new snapshot if anything changed since the last one and at least
    /// `publish_interval` has passed since it. Returns true when it published.
    pub fn publish(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last_publish
            && now.saturating_duration_since(last) < self.settings.publish_interval
        {
            return false;
        }
        let dcs = self.build(now);
        if dcs == self.published && !self.why_dirty {
            return false;
        }
        self.store(dcs, now);
        true
    }

    fn check_drains(&mut self, now: Instant) {
        for (i, d) in self.dcs.iter_mut().enumerate() {
            if let Some((started, _)) = d.drain_started
                && !d.drain_complete_logged
                && now.saturating_duration_since(started) >= d.max_ttl
            {
                d.drain_complete_logged = true;
                tracing::info!(dc = %self.set.dcs[i].name, max_ttl_secs = d.max_ttl.as_secs(), "drain complete: every answer naming it has expired");
                self.events.push(
                    Change {
                        input: Some(Input::Admin),
                        ..Change::new(
                            EventKind::DrainComplete,
                            &self.set.dcs[i].name,
                            "draining",
                            "drained",
                            format!(
                                "the longest TTL handed out ({} s) has passed",
                                d.max_ttl.as_secs()
                            ),
                        )
                    },
                    now,
                );
            }
        }
    }

    fn handle(
        &mut self,
        cmd: Command,
        now: Instant,
    ) -> Option<oneshot::Sender<Result<(), PersistError>>> {
        match cmd {
            Command::SetAdmin { dc, state, reply } => {
                let _ = reply.send(self.admin_command(dc, state, now));
                None
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status(now));
                None
            }
            Command::Persist { reply } => Some(reply),
            Command::Events { reply } => {
                let _ = reply.send(self.events.view(now));
                None
            }
            Command::Input { update, reply } => {
                let _ = reply.send(self.input_command(update, now));
                None
            }
        }
    }

    /// Time-driven work at `now` (the run loop calls it every `publish_interval`; `gslbd
    /// simulate` on the same schedule on virtual time): drains that completed, external
    /// verdicts that expired, and a publication if anything changed (coalesced). Returns true
    /// when it published.
    pub fn tick(&mut self, now: Instant) -> bool {
        self.check_drains(now);
        self.expire_inputs(now);
        self.expire_shared(now);
        self.publish(now)
    }

    /// Run until `shutdown` is stopped: apply results and commands,
    /// publish coalesced snapshots, write the state files periodically and once at the end.
    pub async fn run(mut self, mut results: mpsc::Receiver<ProbeResult>, shutdown: Shutdown) {
        let Some(mut cmds) = self.cmds.take() else {
            return;
        };
        let mut tick =
            tokio::time::interval(self.settings.publish_interval.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut persist = tokio::time::interval_at(
            Instant::now() + self.settings.persist_interval,
            self.settings.persist_interval.max(Duration::from_millis(1)),
        );
        persist.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut results_open = true;
        let mut cmds_open = true;
        let (mut workers, mut hosts) = match self.dynamic.take() {
            Some((w, h)) => (Some(w), Some(h)),
            None => (None, None),
        };
        if let Some(w) = &mut workers {
            for id in std::mem::take(&mut self.unstarted) {
                self.start_worker(w, id);
            }
        }
        loop {
            tokio::select! {
                biased;
                _ = shutdown.stopped() => break,
                changed = async { hosts.as_mut()?.changed().await.ok() }, if hosts.is_some() => {
                    match changed {
                        Some(()) => {
                            let names = hosts.as_mut().map(|h| h.borrow_and_update().clone());
                            if let Some(names) = names {
                                let now = Instant::now();
                                let change = self.retarget(&names, now);
                                if let Some(w) = &mut workers {
                                    for id in change.retired {
                                        w.stop(id);
                                    }
                                    for id in change.added {
                                        self.start_worker(w, id);
                                    }
                                }
                                self.publish(now);
                            }
                        }
                        None => hosts = None,
                    }
                }
                cmd = cmds.recv(), if cmds_open => match cmd {
                    Some(cmd) => {
                        if let Some(reply) = self.handle(cmd, Instant::now()) {
                            let _ = reply.send(self.persist_async(Instant::now()).await);
                        }
                    }
                    None => cmds_open = false,
                },
                r = results.recv(), if results_open => match r {
                    Some(r) => {
                        self.apply(&r);
                        self.publish(Instant::now());
                    }
                    None => results_open = false,
                },
                _ = tick.tick() => {
                    self.tick(Instant::now());
                }
                _ = persist.tick(), if self.settings.state_dir.is_some() => {
                    if let Err(e) = self.persist_async(Instant::now()).await {
                        tracing::warn!(error = %e, "writing state files");
                    }
                }
            }
        }
        if let Some(w) = workers {
            w.join().await;
        }
        // Results still queued were measured; apply them before the final publish and write.
        while let Ok(r) = results.try_recv() {
            self.apply(&r);
        }
        let now = Instant::now();
        self.last_publish = None;
        self.publish(now);
        if let Err(e) = self.persist_async(now).await {
            tracing::warn!(error = %e, "writing state files at shutdown");
        }
    }
}

impl Aggregator {
    fn start_worker(&self, w: &mut DynamicWorkers, id: TargetId) {
        let Some(t) = self.set.targets.get(id.0 as usize) else {
            return;
        };
        if let Err(e) = w.start(t) {
            tracing::error!(target_addr = %t.addr, error = %e, "cannot probe a hostname datacenter's address");
        }
    }
}

fn usable(admin: AdminState, healthy: bool) -> bool {
    DcState {
        healthy,
        admin,
        ..DcState::UP
    }
    .usable()
}

/// The reason an event gives: the probe outcome, or that the first probe ended the startup
/// assumption.
fn event_reason(outcome: &ProbeOutcome, first: bool) -> String {
    if first {
        format!("first probe: {outcome}")
    } else {
        outcome.to_string()
    }
}

fn updown(up: bool) -> &'static str {
    if up { "up" } else { "down" }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{CheckSpec, DatacenterProbe};
    use crate::resolve::Entry;
    use arc_swap::ArcSwap;

    fn names(name: &str, addrs: &[&str], serial: u64) -> ResolvedNames {
        let mut e = Entry::pending(name);
        e.v4 = addrs.iter().map(|a| a.parse().unwrap()).collect();
        e.serial = serial;
        e.state = crate::resolve::State::Fresh;
        let mut n = ResolvedNames::default();
        n.by_name.insert(name.into(), Arc::new(e));
        n
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_address_set_keeps_the_state_of_addresses_still_present() {
        let mut check = CheckSpec::tcp(80);
        check.rise = 2;
        check.fall = 1;
        let mut dc = DatacenterProbe::new("lb", vec![], Some(check));
        dc.hostname = Some("lb.example.net.".into());
        let set = Arc::new(ProbeSet::build(&[dc]).unwrap());
        let out: Arc<ArcSwap<Snapshot>> = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
        let hosts = names("lb.example.net.", &["192.0.2.1", "192.0.2.2"], 1);
        let settings = AggregatorSettings {
            startup: Startup::AssumeDown,
            ..AggregatorSettings::default()
        };
        let (mut agg, _h) = Aggregator::new_with_hosts(set, settings, out.clone(), &hosts).unwrap();
        let now = Instant::now();
        assert_eq!(agg.set.dcs[0].slot_bits.len(), 2);
        assert!(!out.load().dcs[0].healthy, "assume-down until probed");
        // 192.0.2.1 passes twice: up; the datacenter is up (min-up 1).
        for _ in 0..2 {
            agg.apply(&ProbeResult::new(TargetId(0), ProbeOutcome::Pass, now));
        }
        agg.publish(now + Duration::from_secs(1));
        let s = out.load();
        assert!(s.dcs[0].healthy);
        assert_eq!((s.dcs[0].addr_up, s.dcs[0].addr_serial), (0b01, 1));
        // The target now resolves to .3 and .1 (in that order): .1 keeps its state (up),
        // .3 starts as the startup setting says (down); .2 is retired.
        let hosts = names("lb.example.net.", &["192.0.2.3", "192.0.2.1"], 2);
        let change = agg.set_host_addresses(&hosts, now);
        assert_eq!((change.added.len(), change.retired.len()), (1, 1));
        agg.publish(now + Duration::from_secs(2));
        let s = out.load();
        assert!(s.dcs[0].healthy, "still up: 192.0.2.1 kept its state");
        assert_eq!((s.dcs[0].addr_up, s.dcs[0].addr_serial), (0b10, 2));
        // A late result of the retired target changes nothing.
        assert!(!agg.apply(&ProbeResult::new(TargetId(1), ProbeOutcome::Pass, now)));
        // Nothing resolves any more: no address to probe, the datacenter is down.
        let hosts = names("lb.example.net.", &[], 3);
        agg.set_host_addresses(&hosts, now);
        agg.publish(now + Duration::from_secs(3));
        assert!(!out.load().dcs[0].healthy);
    }
}
