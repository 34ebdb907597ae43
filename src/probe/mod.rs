//! Probe workers: measure every datacenter's health, load and latency, independent of the
//! query path.
//!
//! ```text
//!  [DatacenterProbe] --ProbeSet::build--> targets (distinct (check, addr:port), each once)
//!                                            |
//!               spawn_workers: one task per target, Semaphore(max_in_flight), jitter
//!                                            |  Prober::probe: reqwest (http/https) or TCP
//!                                            v
//!                              mpsc<ProbeResult> --> health::aggregator (single writer)
//!                                                     --> ArcSwap<Snapshot> --> policies
//! ```
//!
//! Nothing here writes health state: a worker only reports what it saw (outcome with reason,
//! latency, load figure). Rise/fall, admin state, slow start and publication live in
//! [`crate::health::aggregator`].

pub mod check;
pub mod outcome;
pub mod spec;
pub mod target;
pub mod worker;

pub use check::{Prober, ProberError};
pub use outcome::{LoadFigure, Outcome, ProbeResult};
pub use spec::{CheckError, CheckKind, CheckSpec, HttpCheck};
pub use target::{DatacenterProbe, DcPlan, ProbeSet, ProbeSetError, Target, TargetId};
pub use worker::{Jitter, WorkerSettings, Workers, spawn_workers};
