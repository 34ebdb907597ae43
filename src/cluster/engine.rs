//! The cluster task: one loop that owns the shared view and steers this node.
//!
//! ```text
//!  etcd watch (prefix) --Snapshot/Put/Delete/Lost--+
//!  lease task (member.rs) --LeaseState-------------+
//!  aggregator --TargetObservation (after rise/fall)+--> Engine (one task)
//!  server --Bind(probe runtime) / admin -----------+      members, observations, admin keys
//!                                                         |
//!   every tick:  mode = joining | shared | degraded (etcd lost < grace) | local (>= grace)
//!                probers(t) = rendezvous(live members, replicas)       (assign.rs)
//!                Steering: t active here <=> this node is a prober, or t has had no
//!                          decision for the grace, or the mode is not shared
//!                decision(t) = quorum over the probers' fresh observations (quorum.rs)
//!                --Update::Targets (on change, and refreshed)--> AggregatorHandle::input
//!   observations of targets active here --put (lease-bound)--> {prefix}obs/{target}/{node}
//!   admin keys seen --> AggregatorHandle::set_admin
//! ```
//!
//! Nothing here is on the query path: the aggregator still publishes the one snapshot the
//! queries read. While etcd is away the last shared verdicts hold (their time to live is the
//! grace); after the grace they expire, every target is probed here again, and each starts
//! from the state its shared verdict left (the aggregator's `follow`), so nothing flaps. When
//! etcd is back, targets go back to their probers one by one as fresh decisions arrive.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::ClusterOptions;
use super::assign::{hash_str, probers};
use super::etcd::{Etcd, Kv, WatchEvent};
use super::member::LeaseState;
use super::quorum::{Decision, Observation, decide, effective_quorum, figures};
use super::status::{ClusterStatus, ObservationStatus, TargetView};
use crate::health::AdminState;
use crate::health::aggregator::AggregatorHandle;
use crate::health::input::{Source, SourceKind, TargetObservation, TargetVerdict, Update};
use crate::probe::{ProbeSet, Steering, TargetId};
use crate::shutdown::Shutdown;

/// A probe runtime the cluster steers and feeds.
pub(crate) struct Binding {
    pub(crate) plan: Arc<ProbeSet>,
    pub(crate) handle: AggregatorHandle,
    pub(crate) steering: Steering,
    pub(crate) observations: mpsc::Receiver<TargetObservation>,
}

pub(crate) enum Command {
    Bind(Binding),
}

/// What the engine writes to etcd (in order, by the writer task).
pub(crate) enum Write {
    Put {
        key: String,
        value: Vec<u8>,
        lease: i64,
    },
    Delete(String),
}

/// The node's relation to the shared view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Not yet in contact: probing every target and deciding alone.
    Joining,
    /// In contact: probing its share, the quorum decides.
    Shared,
    /// Contact lost for less than the grace: the last shared verdicts hold.
    Degraded,
    /// Contact lost for the grace or longer: probing every target and deciding alone.
    Local,
}

impl Mode {
    /// `joining`, `shared`, `degraded` or `local`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Joining => "joining",
            Mode::Shared => "shared",
            Mode::Degraded => "degraded",
            Mode::Local => "local",
        }
    }
    pub(crate) const ALL: [Mode; 4] = [Mode::Joining, Mode::Shared, Mode::Degraded, Mode::Local];
}

/// One target as the cluster sees it.
struct TargetInfo {
    key: String,
    /// `hash_str(key)` in hex: its etcd key segment.
    id: String,
    hash: u64,
    replicas: usize,
    quorum: Option<u32>,
    /// Observations older than this no longer count.
    freshness: Duration,
    datacenters: Vec<String>,
}

/// A decision held for a target.
#[derive(Clone, Debug)]
struct Held {
    up: bool,
    reason: String,
    latency_ms: Option<f64>,
    load: Option<f64>,
    decided_at: Instant,
}

struct Bound {
    handle: AggregatorHandle,
    steering: Steering,
    observations: mpsc::Receiver<TargetObservation>,
    targets: Vec<TargetInfo>,
    held: Vec<Option<Held>>,
    undecided_since: Vec<Option<Instant>>,
    /// This node has an observation of the target in etcd.
    written: Vec<bool>,
    /// The verdicts last sent (target, up), to send only changes (and refreshes).
    sent: Vec<Option<bool>>,
    last_refresh: Option<Instant>,
    /// Admin revisions applied to this runtime.
    admin_applied: HashMap<String, i64>,
}

/// A received observation.
struct Seen {
    obs: Observation,
    at: Instant,
}

pub(crate) struct Engine {
    pub(crate) opts: ClusterOptions,
    pub(crate) cmds: mpsc::Receiver<Command>,
    pub(crate) watch: mpsc::Receiver<WatchEvent>,
    pub(crate) lease: watch::Receiver<LeaseState>,
    pub(crate) writes: mpsc::Sender<Write>,
    pub(crate) status: Arc<Mutex<ClusterStatus>>,
    pub(crate) stop: Shutdown,
    members: BTreeMap<String, u64>,
    obs: HashMap<String, HashMap<String, Seen>>,
    admin: HashMap<String, (AdminState, i64)>,
    watch_ok: bool,
    synced: bool,
    lost_since: Option<Instant>,
    mode: Mode,
    mode_since: SystemTime,
    watch_lag_ms: Option<f64>,
    revision: i64,
    watch_breaks: u64,
    verdict_changes: u64,
    last_watch_error: Option<String>,
    bound: Option<Bound>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        opts: ClusterOptions,
        cmds: mpsc::Receiver<Command>,
        watch: mpsc::Receiver<WatchEvent>,
        lease: watch::Receiver<LeaseState>,
        writes: mpsc::Sender<Write>,
        status: Arc<Mutex<ClusterStatus>>,
        stop: Shutdown,
    ) -> Engine {
        Engine {
            opts,
            cmds,
            watch,
            lease,
            writes,
            status,
            stop,
            members: BTreeMap::new(),
            obs: HashMap::new(),
            admin: HashMap::new(),
            watch_ok: false,
            synced: false,
            lost_since: None,
            mode: Mode::Joining,
            mode_since: SystemTime::now(),
            watch_lag_ms: None,
            revision: 0,
            watch_breaks: 0,
            verdict_changes: 0,
            last_watch_error: None,
            bound: None,
        }
    }

    pub(crate) async fn run(mut self) {
        let tick_every =
            (self.opts.lease_ttl / 8).clamp(Duration::from_millis(50), Duration::from_millis(250));
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = self.stop.stopped() => break,
                c = self.cmds.recv() => match c {
                    Some(Command::Bind(b)) => self.bind(b).await,
                    None => break,
                },
                ev = self.watch.recv() => match ev {
                    Some(ev) => self.on_watch(ev, Instant::now()).await,
                    None => break,
                },
                o = recv_opt(self.bound.as_mut().map(|b| &mut b.observations)) => {
                    if let Some(o) = o {
                        self.on_observation(o);
                    }
                }
                _ = tick.tick() => self.tick(Instant::now()).await,
            }
        }
    }

    async fn bind(&mut self, b: Binding) {
        let mut targets = Vec::with_capacity(b.plan.targets.len());
        for t in &b.plan.targets {
            let key = t.key();
            let hash = hash_str(&key);
            let id = format!("{hash:016x}");
            let check = t.check();
            let mut datacenters: Vec<String> = t
                .users
                .iter()
                .map(|(dc, _)| b.plan.dcs[*dc as usize].name.clone())
                .collect();
            datacenters.dedup();
            targets.push(TargetInfo {
                key,
                id,
                hash,
                replicas: check
                    .replicas
                    .map_or(self.opts.replicas, |r| r as usize)
                    .max(1),
                quorum: check.quorum,
                freshness: check.interval * 3 + check.timeout + self.opts.lease_ttl,
                datacenters,
            });
        }
        let n = targets.len();
        let now = Instant::now();
        tracing::info!(targets = n, "cluster: bound to the probe runtime");
        self.bound = Some(Bound {
            handle: b.handle,
            steering: b.steering,
            observations: b.observations,
            targets,
            held: vec![None; n],
            undecided_since: vec![Some(now); n],
            written: vec![false; n],
            sent: vec![None; n],
            last_refresh: None,
            admin_applied: HashMap::new(),
        });
        self.apply_admin().await;
        self.tick(now).await;
    }

    async fn on_watch(&mut self, ev: WatchEvent, now: Instant) {
        match ev {
            WatchEvent::Snapshot { kvs, revision } => {
                self.members.clear();
                self.obs.clear();
                self.admin.clear();
                for kv in kvs {
                    self.on_put(kv, now, true);
                }
                self.revision = revision;
                if !self.watch_ok {
                    tracing::info!(
                        members = self.members.len(),
                        revision,
                        "cluster: in sync with etcd"
                    );
                }
                self.watch_ok = true;
                self.synced = true;
                self.apply_admin().await;
            }
            WatchEvent::Put(kv) => {
                self.revision = self.revision.max(kv.mod_revision);
                let admin = self.on_put(kv, now, false);
                if admin {
                    self.apply_admin().await;
                }
            }
            WatchEvent::Delete(key) => self.on_delete(&key),
            WatchEvent::Lost(e) => {
                if self.watch_ok {
                    tracing::warn!(error = %e, "cluster: etcd watch lost; reconnecting");
                }
                self.watch_ok = false;
                self.watch_breaks += 1;
                self.last_watch_error = Some(e);
            }
        }
    }

    /// Takes one key into the tables; true when it is an admin key.
    fn on_put(&mut self, kv: Kv, now: Instant, from_snapshot: bool) -> bool {
        let Some(rest) = kv.key.strip_prefix(&self.opts.prefix) else {
            return false;
        };
        if let Some(node) = rest.strip_prefix("members/") {
            self.members.insert(node.to_string(), hash_str(node));
        } else if let Some(rest) = rest.strip_prefix("obs/") {
            let Some((target, node)) = rest.split_once('/') else {
                return false;
            };
            let Ok(obs) = serde_json::from_slice::<Observation>(&kv.value) else {
                tracing::debug!(key = %kv.key, "cluster: unreadable observation ignored");
                return false;
            };
            let wall = unix_ms(SystemTime::now());
            let age = Duration::from_millis(wall.saturating_sub(obs.at_ms));
            if !from_snapshot {
                self.watch_lag_ms = Some(age.as_secs_f64() * 1000.0);
            }
            // A snapshot's observations are as old as their writers say; a change is new.
            let at = if from_snapshot {
                now.checked_sub(age).unwrap_or(now)
            } else {
                now
            };
            self.obs
                .entry(target.to_string())
                .or_default()
                .insert(node.to_string(), Seen { obs, at });
        } else if let Some(dc) = rest.strip_prefix("admin/") {
            let v: serde_json::Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            if let Some(state) = v["state"].as_str().and_then(AdminState::parse) {
                self.admin.insert(dc.to_string(), (state, kv.mod_revision));
                return true;
            }
        }
        false
    }

    fn on_delete(&mut self, key: &str) {
        let Some(rest) = key.strip_prefix(&self.opts.prefix) else {
            return;
        };
        if let Some(node) = rest.strip_prefix("members/") {
            self.members.remove(node);
        } else if let Some(rest) = rest.strip_prefix("obs/") {
            if let Some((target, node)) = rest.split_once('/')
                && let Some(m) = self.obs.get_mut(target)
            {
                m.remove(node);
            }
        } else if let Some(dc) = rest.strip_prefix("admin/") {
            self.admin.remove(dc);
        }
    }

    /// Applies admin states from etcd that the bound runtime has not seen yet.
    async fn apply_admin(&mut self) {
        let Some(b) = self.bound.as_mut() else {
            return;
        };
        for (dc, (state, rev)) in &self.admin {
            if b.admin_applied.get(dc).is_some_and(|r| r >= rev) {
                continue;
            }
            b.admin_applied.insert(dc.clone(), *rev);
            match b.handle.set_admin_by_name(dc, *state).await {
                Ok(()) => {
                    tracing::info!(dc = %dc, admin = state.as_str(), revision = rev, "cluster: admin state from etcd applied");
                    let _ = b.handle.persist().await;
                }
                Err(e) => {
                    tracing::warn!(dc = %dc, error = %e, "cluster: admin state from etcd not applied")
                }
            }
        }
    }

    fn connected(&self) -> bool {
        self.watch_ok && self.lease.borrow().connected && self.lease.borrow().lease.is_some()
    }

    fn on_observation(&mut self, o: TargetObservation) {
        if self.mode != Mode::Shared {
            return;
        }
        let Some(lease) = self.lease.borrow().lease else {
            return;
        };
        let Some(b) = self.bound.as_mut() else {
            return;
        };
        let t = o.target.0 as usize;
        if !b.steering.is_active(o.target) {
            return;
        }
        let Some(info) = b.targets.get(t) else {
            return;
        };
        let obs = Observation {
            node: self.opts.node.clone(),
            up: o.up,
            passes: o.passes,
            fails: o.fails,
            latency_ms: o.latency_ms,
            load: o.load,
            last: o.last,
            at_ms: unix_ms(SystemTime::now()),
        };
        let key = format!("{}obs/{}/{}", self.opts.prefix, info.id, self.opts.node);
        let value = serde_json::to_vec(&obs).unwrap_or_default();
        // Our own observation counts at once (the watch echo replaces it).
        self.obs.entry(info.id.clone()).or_default().insert(
            self.opts.node.clone(),
            Seen {
                obs,
                at: Instant::now(),
            },
        );
        b.written[t] = true;
        let _ = self.writes.try_send(Write::Put { key, value, lease });
    }

    fn live_nodes(&self) -> (Vec<String>, Vec<u64>) {
        let mut names: Vec<String> = self.members.keys().cloned().collect();
        if !self.members.contains_key(&self.opts.node) && self.connected() {
            names.push(self.opts.node.clone());
            names.sort();
        }
        let hashes = names.iter().map(|n| hash_str(n)).collect();
        (names, hashes)
    }

    #[allow(
        clippy::needless_range_loop,
        reason = "t indexes the target's entries in several per-target vectors at once"
    )]
    async fn tick(&mut self, now: Instant) {
        // The mode.
        let connected = self.connected();
        if connected {
            self.lost_since = None;
        } else if self.synced {
            self.lost_since.get_or_insert(now);
        }
        let mode = if !self.synced {
            Mode::Joining
        } else if connected {
            Mode::Shared
        } else if self
            .lost_since
            .is_some_and(|s| now.saturating_duration_since(s) >= self.opts.grace)
        {
            Mode::Local
        } else {
            Mode::Degraded
        };
        if mode != self.mode {
            tracing::warn!(
                old = self.mode.as_str(),
                new = mode.as_str(),
                "cluster: mode change"
            );
            self.mode = mode;
            self.mode_since = SystemTime::now();
        }
        let (names, hashes) = self.live_nodes();
        let me = names.iter().position(|n| *n == self.opts.node);
        let grace = self.opts.grace;
        let mut views = Vec::new();
        let mut update: Option<(AggregatorHandle, Vec<TargetVerdict>)> = None;
        let mut deletes = Vec::new();
        let mut forget: Vec<String> = Vec::new();
        if let Some(b) = self.bound.as_mut() {
            let n = b.targets.len();
            let mut active = vec![true; n];
            let mut verdicts = Vec::new();
            let mut changed = false;
            for t in 0..n {
                let info = &b.targets[t];
                let chosen = if names.is_empty() {
                    Vec::new()
                } else {
                    probers(&hashes, info.hash, info.replicas)
                };
                let quorum = effective_quorum(info.replicas, info.quorum, chosen.len());
                let seen = self.obs.get(&info.id);
                let fresh: Vec<&Observation> = chosen
                    .iter()
                    .filter_map(|&i| seen.and_then(|m| m.get(&names[i])))
                    .filter(|s| now.saturating_duration_since(s.at) <= info.freshness)
                    .map(|s| &s.obs)
                    .collect();
                let decision = decide(&fresh, chosen.len(), quorum);
                if mode == Mode::Shared {
                    match &decision {
                        Decision::Up(r) | Decision::Down(r) => {
                            let (latency_ms, load) = figures(&fresh);
                            b.held[t] = Some(Held {
                                up: matches!(decision, Decision::Up(_)),
                                reason: r.clone(),
                                latency_ms,
                                load,
                                decided_at: now,
                            });
                            b.undecided_since[t] = None;
                        }
                        Decision::Undecided(_) => {
                            b.undecided_since[t].get_or_insert(now);
                        }
                    }
                }
                // A decision older than the grace is dropped: the local probes take over.
                if b.held[t]
                    .as_ref()
                    .is_some_and(|h| now.saturating_duration_since(h.decided_at) >= grace)
                {
                    b.held[t] = None;
                }
                let orphan =
                    b.undecided_since[t].is_some_and(|s| now.saturating_duration_since(s) >= grace);
                let mine = me.is_some_and(|m| chosen.contains(&m));
                active[t] = match mode {
                    Mode::Shared => mine || orphan,
                    Mode::Degraded => b.steering.is_active(TargetId(t as u32)) || orphan,
                    Mode::Joining | Mode::Local => true,
                };
                if mode == Mode::Shared && !active[t] && b.written[t] {
                    b.written[t] = false;
                    deletes.push(format!(
                        "{}obs/{}/{}",
                        self.opts.prefix, info.id, self.opts.node
                    ));
                    forget.push(info.id.clone());
                }
                let held = b.held[t].clone();
                if mode == Mode::Shared {
                    let now_up = held.as_ref().map(|h| h.up);
                    if now_up != b.sent[t] {
                        changed = true;
                        if now_up.is_some() && b.sent[t].is_some() {
                            self.verdict_changes += 1;
                        }
                    }
                    b.sent[t] = now_up;
                    if let Some(h) = &held {
                        verdicts.push(TargetVerdict {
                            target: info.key.clone(),
                            up: h.up,
                            load: h.load,
                            latency_ms: h.latency_ms,
                            reason: h.reason.clone(),
                            ttl: grace.saturating_sub(now.saturating_duration_since(h.decided_at)),
                        });
                    }
                }
                views.push(TargetView {
                    target: info.key.clone(),
                    id: info.id.clone(),
                    datacenters: info.datacenters.clone(),
                    probers: chosen.iter().map(|&i| names[i].clone()).collect(),
                    probed_here: active[t],
                    quorum,
                    decision: match (&decision, &held) {
                        (Decision::Up(_), _) => "up",
                        (Decision::Down(_), _) => "down",
                        (Decision::Undecided(_), Some(h)) if h.up => "up (held)",
                        (Decision::Undecided(_), Some(_)) => "down (held)",
                        (Decision::Undecided(_), None) => "undecided",
                    },
                    reason: match &decision {
                        Decision::Up(r) | Decision::Down(r) | Decision::Undecided(r) => r.clone(),
                    },
                    observations: seen
                        .map(|m| {
                            let mut v: Vec<ObservationStatus> = m
                                .values()
                                .map(|s| ObservationStatus {
                                    node: s.obs.node.clone(),
                                    up: s.obs.up,
                                    passes: s.obs.passes,
                                    fails: s.obs.fails,
                                    latency_ms: s.obs.latency_ms,
                                    load: s.obs.load,
                                    last: s.obs.last.clone(),
                                    age_ms: u64::try_from(
                                        now.saturating_duration_since(s.at).as_millis(),
                                    )
                                    .unwrap_or(u64::MAX),
                                    counted: fresh.iter().any(|f| f.node == s.obs.node),
                                })
                                .collect();
                            v.sort_by(|a, b| a.node.cmp(&b.node));
                            v
                        })
                        .unwrap_or_default(),
                });
            }
            b.steering.set(active);
            // Changes at once; otherwise a refresh well within the verdicts' time to live.
            let refresh_due = b
                .last_refresh
                .is_none_or(|at| now.saturating_duration_since(at) >= grace / 4);
            if mode == Mode::Shared && (changed || refresh_due) {
                b.last_refresh = Some(now);
                update = Some((b.handle.clone(), verdicts));
            }
        }
        for key in deletes {
            let _ = self.writes.try_send(Write::Delete(key));
        }
        for id in forget {
            if let Some(m) = self.obs.get_mut(&id) {
                m.remove(&self.opts.node);
            }
        }
        if let Some((handle, verdicts)) = update {
            let source = Source::new(SourceKind::Cluster, self.opts.node.clone());
            if let Err(e) = handle.input(Update::Targets { source, verdicts }).await {
                tracing::debug!(error = %e, "cluster: verdicts not applied");
            }
        }
        self.publish_status(names, views);
    }

    fn publish_status(&self, members: Vec<String>, targets: Vec<TargetView>) {
        let lease = self.lease.borrow().clone();
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        st.node = self.opts.node.clone();
        st.prefix = self.opts.prefix.clone();
        st.endpoints = self.opts.etcd.endpoints.clone();
        st.mode = self.mode;
        st.mode_since_unix = crate::health::persist::unix_secs(self.mode_since);
        st.connected = self.connected();
        st.lease = lease.lease.map(|l| format!("{l:x}"));
        st.lease_ttl_secs = self.opts.lease_ttl.as_secs();
        st.grace_secs = self.opts.grace.as_secs_f64();
        st.keepalive_rtt_ms = lease.rtt_ms;
        st.watch_lag_ms = self.watch_lag_ms;
        st.revision = self.revision;
        st.etcd_errors = lease.errors;
        st.watch_breaks = self.watch_breaks;
        st.lease_grants = lease.grants;
        st.verdict_changes = self.verdict_changes;
        st.last_error = if self.connected() {
            None
        } else {
            lease
                .error
                .clone()
                .or_else(|| self.last_watch_error.clone())
        };
        st.members = members;
        st.targets = targets;
        st.admin = self
            .admin
            .iter()
            .map(|(dc, (s, rev))| (dc.clone(), s.as_str().to_string(), *rev))
            .collect();
        st.admin.sort();
    }
}

async fn recv_opt<T>(rx: Option<&mut mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes observations and deletes them, in order, each with the request timeout. A
/// failure is dropped: the next observation brings a newer one.
pub(crate) async fn writer(
    etcd: Etcd,
    mut rx: mpsc::Receiver<Write>,
    errors: Arc<std::sync::atomic::AtomicU64>,
) {
    while let Some(w) = rx.recv().await {
        let r = match w {
            Write::Put { key, value, lease } => etcd.put(&key, &value, lease).await.map(|_| ()),
            Write::Delete(key) => etcd.delete(&key).await,
        };
        if r.is_err() {
            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
