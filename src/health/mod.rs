//! Health state of every datacenter, as the query path sees it.
//!
//! Probe workers report results to one aggregator, the only writer; external verdicts (pushed,
//! feed files, Alertmanager: see [`input`]) enter it the same way; it publishes an immutable
//! [`Snapshot`] through a [`Publish`] sink. The server's sink pairs each snapshot with the model
//! of the same datacenter ids (`server::publish`), so policies read one consistent pair per
//! query and never wait.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::model::{HostnameId, LatencyMap, Resolutions};
use crate::resolve::Entry;
pub use input::Input;

/// Operator override for a datacenter, set through the API or the state file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AdminState {
    /// Follow the probes (the default).
    #[default]
    Obey,
    /// Treat as up whatever the probes say.
    Up,
    /// Never answer it (unless the all-down behaviour is fail-open).
    Down,
    /// Stop new answers at once; report when the longest TTL handed out has expired.
    Drain,
}

/// The state of one datacenter in a snapshot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DcState {
    /// Health verdict (true = up): an external verdict when one holds, else the probes (after
    /// rise/fall, min-up and require). Datacenters without a check or verdict are up.
    pub healthy: bool,
    /// The input that decided `healthy` (never `Admin`: see [`DcState::decided_by`]).
    pub health_input: Input,
    /// The operator's override.
    pub admin: AdminState,
    /// Utilisation 0..1 from the health endpoint, if known.
    pub load: Option<f64>,
    /// Smoothed probe round-trip time in milliseconds, if known.
    pub latency_ms: Option<f64>,
    /// Slow-start ramp 0..1: the fraction of its normal traffic the datacenter gets now.
    pub slow_start: f64,
    /// Bit i set = answer address i of the datacenter (v4 then v6, in declaration order) is up.
    /// For a hostname datacenter, address i of the resolved set `addr_serial` names.
    pub addr_up: u64,
    /// Which resolved address set `addr_up` describes (hostname datacenters; 0 otherwise). A
    /// policy that sees another set answers it as if every address were up (the aggregator
    /// has not caught up yet).
    pub addr_serial: u64,
    /// False while the state is within rise/fall of a change or in slow start: answers built
    /// from it get a TTL of at most `settle_ttl`.
    pub settled: bool,
    /// TTL cap for unsettled answers (the check interval), seconds.
    pub settle_ttl: u32,
}

impl DcState {
    /// Up, idle, settled: what every datacenter is until probes say otherwise.
    pub const UP: DcState = DcState {
        healthy: true,
        health_input: Input::Config,
        admin: AdminState::Obey,
        load: None,
        latency_ms: None,
        slow_start: 1.0,
        addr_up: u64::MAX,
        addr_serial: 0,
        settled: true,
        settle_ttl: u32::MAX,
    };

    /// May this datacenter receive new answers?
    pub fn usable(&self) -> bool {
        match self.admin {
            AdminState::Obey => self.healthy,
            AdminState::Up => true,
            AdminState::Down | AdminState::Drain => false,
        }
    }

    /// The input that decided whether the datacenter is usable: the admin state unless it is
    /// `obey`, else what decided its health.
    pub fn decided_by(&self) -> Input {
        match self.admin {
            AdminState::Obey => self.health_input,
            AdminState::Up | AdminState::Down | AdminState::Drain => Input::Admin,
        }
    }
}

/// A check's verdict for one datacenter, as `explain` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CheckVerdict {
    /// `checks.<name>`.
    pub name: String,
    /// At least `min-up` of its addresses pass.
    pub up: bool,
}

/// Why a datacenter is in its state, in words (published with the snapshot for `explain`;
/// never read on the query path).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Why {
    /// What the deciding input says: `alert: down, HighErrorRate firing: ...`, `probes: ...`.
    pub reason: String,
    /// Each check's verdict, in declaration order (empty without checks).
    pub checks: Vec<CheckVerdict>,
    /// `all`, `any` or N; empty without checks.
    pub require: String,
}

/// Health of all datacenters, indexed by `DatacenterId`.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Increases by one with each publication of the aggregator.
    pub generation: u64,
    /// State of each datacenter, indexed by `DatacenterId`.
    pub dcs: Vec<DcState>,
    /// Why each datacenter is in its state, indexed like `dcs` (may be shorter: unknown).
    pub why: Vec<Why>,
    /// Client -> datacenter latencies from the latency map file, if one is configured and
    /// loaded, resolved against the same model as `dcs`; the `latency` policy prefers it to
    /// `DcState::latency_ms`. The aggregator leaves it empty; the server's publisher sets it.
    pub latency_map: Option<Arc<LatencyMap>>,
    /// What the model's hostname targets resolve to now (flattened answers, ALIAS, CNAME
    /// usability), indexed by `HostnameId`. Like the latency map: the aggregator leaves it
    /// empty and the publisher sets it, resolved for the same model.
    pub resolutions: Option<Arc<Resolutions>>,
}

/// Where the aggregator hands each new snapshot.
pub trait Publish: Send + Sync + 'static {
    /// Makes `snap` the current health (the aggregator calls this from its one task).
    fn publish(&self, snap: Arc<Snapshot>);
}

/// A bare swap cell, for tests and tools that read health without a model.
impl Publish for ArcSwap<Snapshot> {
    fn publish(&self, snap: Arc<Snapshot>) {
        self.store(snap);
    }
}

impl Snapshot {
    /// Every datacenter up: the state before any probe has run.
    pub fn all_up(n: usize) -> Snapshot {
        Snapshot {
            generation: 0,
            dcs: vec![DcState::UP; n],
            why: Vec::new(),
            latency_map: None,
            resolutions: None,
        }
    }

    /// What hostname `id` resolves to now (`None`: no resolution published, or an unknown id).
    #[inline]
    pub fn resolution(&self, id: HostnameId) -> Option<&Entry> {
        self.resolutions.as_ref()?.get(id)
    }

    /// What `gslbd explain` assumes without a running server: every datacenter up, checks
    /// not run (`probes` is the list of the model's datacenters, by id).
    pub fn assumed(probes: &[crate::probe::DatacenterProbe]) -> Snapshot {
        let mut s = Snapshot::all_up(probes.len());
        for (d, p) in s.dcs.iter_mut().zip(probes) {
            if !p.checks.is_empty() {
                d.health_input = Input::Probes;
            }
        }
        s.why = probes
            .iter()
            .map(|p| Why {
                reason: if p.checks.is_empty() {
                    "no health check: always up".into()
                } else {
                    "probes: not run here (explain without a server assumes up)".into()
                },
                checks: p
                    .checks
                    .iter()
                    .map(|c| CheckVerdict {
                        name: c.name.clone(),
                        up: true,
                    })
                    .collect(),
                require: if p.checks.is_empty() {
                    String::new()
                } else {
                    p.require.describe()
                },
            })
            .collect();
        s
    }

    /// State of datacenter `id`; unknown ids (a model newer than the snapshot) count as up.
    pub fn get(&self, id: u32) -> &DcState {
        self.dcs.get(id as usize).unwrap_or(&DcState::UP)
    }
}

pub(crate) mod admin;
pub mod aggregator;
pub mod events;
pub mod ewma;
pub mod feed;
pub mod input;
pub(crate) mod persist;

pub use aggregator::Status;
