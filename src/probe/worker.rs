//! Probe workers: one tokio task per target, a shared bound on probes in flight.
//!
//! ```text
//!  target task ──sleep(jittered)──> acquire permit ──probe──> release ──send──> aggregator
//!      ^                               (Semaphore: max_in_flight)              (mpsc)
//!      └──────────── next round: base += interval, then ± jitter/2 ───────────┘
//!  every await also watches the shutdown channel, so no task outlives the server
//! ```
//!
//! Jitter is a pure function of (seed, target, round), so a test with a fixed seed knows the
//! exact schedule.
//!
//! [`Steering`] says which targets this process probes: every one by default; a cluster
//! narrows it to this node's share and widens it again when it falls back to probing alone.
//! A worker whose target is taken away finishes the probe in flight, then waits (no timer,
//! no socket) until the target is handed back, and starts a fresh schedule from there. The
//! aggregator's state of the target is not touched by pausing: it lives in the aggregator.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use super::outcome::ProbeResult;
use super::plan::{ProbeSet, Target, TargetId};
use super::prober::{Prober, ProberError};
use crate::mix::{GOLDEN, mix64, unit_f64};
use crate::shutdown::Shutdown;

/// Default bound on probes in flight at once.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Settings shared by all workers.
#[derive(Clone, Copy, Debug)]
pub struct WorkerSettings {
    /// At most this many probes run at once (default 256). A hanging target holds a slot for
    /// at most its timeout.
    pub max_in_flight: usize,
    /// Seed of the jitter; fixed in tests, random by default.
    pub seed: u64,
    /// At most this many `exec` commands run at once (default 16).
    pub max_exec: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        WorkerSettings {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            seed,
            max_exec: super::exec::DEFAULT_MAX_EXEC,
        }
    }
}

/// Deterministic jitter: a number in `[0, 1)` for each (target, round).
#[derive(Clone, Copy, Debug)]
pub struct Jitter {
    /// Seed of the stream (`WorkerSettings::seed`).
    pub seed: u64,
}

impl Jitter {
    /// Uniform in `[0, 1)`, a pure function of its inputs (splitmix64).
    pub fn unit(&self, target: TargetId, round: u64) -> f64 {
        let z = self.seed
            ^ u64::from(target.0).wrapping_mul(GOLDEN)
            ^ round.wrapping_mul(0xD1B5_4A32_D192_ED03);
        unit_f64(mix64(z.wrapping_add(GOLDEN)))
    }

    /// Delay of the first probe: `[0, jitter)`, so a thousand targets do not start together.
    pub fn first_delay(&self, target: TargetId, jitter: Duration) -> Duration {
        jitter.mul_f64(self.unit(target, 0))
    }

    /// Offset of round `round` (>= 1) from its grid point: `[-jitter/2, +jitter/2)`.
    /// Returned as (add, sub) since `Duration` is unsigned.
    pub(crate) fn round_offset(
        &self,
        target: TargetId,
        round: u64,
        jitter: Duration,
    ) -> (Duration, Duration) {
        let u = self.unit(target, round);
        if u >= 0.5 {
            (jitter.mul_f64(u - 0.5), Duration::ZERO)
        } else {
            (Duration::ZERO, jitter.mul_f64(0.5 - u))
        }
    }

    /// When round `round` is due, given the first probe time `start` (round 0).
    pub fn due(
        &self,
        target: TargetId,
        start: Instant,
        round: u64,
        interval: Duration,
        jitter: Duration,
    ) -> Instant {
        if round == 0 {
            return start;
        }
        let base = start + interval.saturating_mul(u32::try_from(round).unwrap_or(u32::MAX));
        let (add, sub) = self.round_offset(target, round, jitter);
        (base + add).checked_sub(sub).unwrap_or(base)
    }

    /// The round after `round` whose due time is not already past at `now` (when the probe of
    /// `round` finished). Rounds that went by while a probe waited for a slot or ran long are
    /// skipped: probing twice in a row to catch up would break "once per interval". The
    /// workers and `gslbd simulate` (which drives probes on virtual time) share it.
    pub(crate) fn next_round(
        &self,
        target: TargetId,
        start: Instant,
        round: u64,
        interval: Duration,
        jitter: Duration,
        now: Instant,
    ) -> u64 {
        let mut next = round + 1;
        while self.due(target, start, next, interval, jitter) < now {
            next += 1;
        }
        next
    }
}

/// Which targets of a probe set are probed by this process; cheap to clone.
#[derive(Clone, Debug)]
pub struct Steering {
    tx: Arc<watch::Sender<Arc<Vec<bool>>>>,
}

impl Steering {
    /// Every one of `targets` targets active (a standalone server).
    pub fn all(targets: usize) -> Steering {
        Steering {
            tx: Arc::new(watch::channel(Arc::new(vec![true; targets])).0),
        }
    }

    /// Makes exactly the targets whose entry is true active; returns true when that changed
    /// anything. A vector of the wrong length is ignored.
    pub fn set(&self, active: Vec<bool>) -> bool {
        self.tx.send_if_modified(|cur| {
            if active.len() != cur.len() || **cur == active {
                return false;
            }
            *cur = Arc::new(active);
            true
        })
    }

    /// Whether target `t` is probed here now.
    pub fn is_active(&self, t: TargetId) -> bool {
        self.tx.borrow().get(t.0 as usize).copied().unwrap_or(true)
    }

    /// The active flags, by target id.
    pub fn active(&self) -> Arc<Vec<bool>> {
        self.tx.borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Vec<bool>>> {
        self.tx.subscribe()
    }
}

/// The running workers.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
    permits: Arc<Semaphore>,
    jitter: Jitter,
}

impl Workers {
    /// Wait for every worker to stop (after the shutdown signal, or once the results
    /// channel is closed).
    pub async fn join(self) {
        for h in self.handles {
            // A panicked worker has nothing left to clean up; shutdown carries on.
            let _ = h.await;
        }
    }

    /// A starter of workers for targets added at run time, sharing this set's bound on
    /// probes in flight; each such worker runs under its own node below `shutdown`.
    pub(crate) fn dynamic(
        &self,
        results: mpsc::Sender<ProbeResult>,
        shutdown: Shutdown,
    ) -> DynamicWorkers {
        DynamicWorkers {
            permits: self.permits.clone(),
            jitter: self.jitter,
            results,
            shutdown,
            running: HashMap::new(),
        }
    }
}

/// Workers of the dynamic part of the probe plan (hostname datacenters, see
/// `probe::plan`): started when an address appears, stopped when it is retired.
#[derive(Debug)]
pub(crate) struct DynamicWorkers {
    permits: Arc<Semaphore>,
    jitter: Jitter,
    results: mpsc::Sender<ProbeResult>,
    shutdown: Shutdown,
    running: HashMap<TargetId, (JoinHandle<()>, Shutdown)>,
}

impl DynamicWorkers {
    /// Starts probing `target` (no-op when it already runs).
    pub(crate) fn start(&mut self, target: &Target) -> Result<(), ProberError> {
        if self.running.contains_key(&target.id) {
            return Ok(());
        }
        let prober = Arc::new(Prober::for_targets(
            std::slice::from_ref(target),
            super::exec::DEFAULT_MAX_EXEC,
        )?);
        let stop = self.shutdown.child();
        let h = tokio::spawn(run_worker(
            target.clone(),
            prober,
            self.permits.clone(),
            self.jitter,
            self.results.clone(),
            // Targets of hostname datacenters are not shared in a cluster: every node
            // probes them (a steering with no entry for them, never changed).
            Steering::all(0).subscribe(),
            stop.clone(),
        ));
        self.running.insert(target.id, (h, stop));
        Ok(())
    }

    /// Stops probing target `id`.
    pub(crate) fn stop(&mut self, id: TargetId) {
        if let Some((h, stop)) = self.running.remove(&id) {
            stop.stop();
            // It may be inside a probe: the result it would send is dropped with the task.
            h.abort();
        }
    }

    /// Stops and joins every dynamic worker.
    pub(crate) async fn join(mut self) {
        for (_, (h, stop)) in self.running.drain() {
            stop.stop();
            let _ = h.await;
        }
    }
}

/// Start one worker per target of `set`. Results go to `results`; every worker stops when
/// `shutdown` is stopped or when `results` is closed.
pub fn spawn_workers(
    set: &ProbeSet,
    prober: Arc<Prober>,
    settings: WorkerSettings,
    results: mpsc::Sender<ProbeResult>,
    shutdown: Shutdown,
) -> Workers {
    spawn_steered_workers(
        set,
        prober,
        settings,
        results,
        Steering::all(set.targets.len()),
        shutdown,
    )
}

/// [`spawn_workers`], probing only the targets `steering` marks active at each moment.
pub fn spawn_steered_workers(
    set: &ProbeSet,
    prober: Arc<Prober>,
    settings: WorkerSettings,
    results: mpsc::Sender<ProbeResult>,
    steering: Steering,
    shutdown: Shutdown,
) -> Workers {
    let permits = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
    let jitter = Jitter {
        seed: settings.seed,
    };
    let handles = set
        .targets
        .iter()
        // Targets of the dynamic part (hostname datacenters) get their workers when they
        // have users (`DynamicWorkers`).
        .filter(|t| !t.users.is_empty())
        .map(|t| {
            tokio::spawn(run_worker(
                t.clone(),
                prober.clone(),
                permits.clone(),
                jitter,
                results.clone(),
                steering.subscribe(),
                shutdown.clone(),
            ))
        })
        .collect();
    Workers {
        handles,
        permits,
        jitter,
    }
}

async fn run_worker(
    target: Target,
    prober: Arc<Prober>,
    permits: Arc<Semaphore>,
    jitter: Jitter,
    results: mpsc::Sender<ProbeResult>,
    mut steering: watch::Receiver<Arc<Vec<bool>>>,
    shutdown: Shutdown,
) {
    let spec = target.check.clone();
    let j = spec.effective_jitter();
    let idx = target.id.0 as usize;
    let active = |s: &watch::Receiver<Arc<Vec<bool>>>| s.borrow().get(idx).copied().unwrap_or(true);
    let mut start = Instant::now() + jitter.first_delay(target.id, j);
    let mut round: u64 = 0;
    // Once the steering's owner is gone the flags stay as they were last set.
    let mut steered = true;
    loop {
        if !active(&steering) {
            // Paused: wait for the target to be handed back, then a fresh schedule.
            while !active(&steering) {
                if !steered {
                    shutdown.stopped().await;
                    return;
                }
                tokio::select! {
                    biased;
                    _ = shutdown.stopped() => return,
                    r = steering.changed() => steered = r.is_ok(),
                }
            }
            start = Instant::now() + jitter.first_delay(target.id, j);
            round = 0;
        }
        let due = jitter.due(target.id, start, round, spec.interval, j);
        tokio::select! {
            biased;
            _ = shutdown.stopped() => return,
            r = steering.changed(), if steered => {
                steered = r.is_ok();
                continue; // looked at again at the top: paused, or the same due time
            }
            _ = sleep_until(due) => {}
        }
        let permit = tokio::select! {
            biased;
            _ = shutdown.stopped() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let result = tokio::select! {
            biased;
            _ = shutdown.stopped() => return,
            r = prober.probe(&target) => r,
        };
        drop(permit);
        if results.send(result).await.is_err() {
            return;
        }
        round = jitter.next_round(target.id, start, round, spec.interval, j, Instant::now());
    }
}
