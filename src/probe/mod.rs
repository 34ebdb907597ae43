//! Probe workers: measure every datacenter's health, load and latency, independent of the
//! query path.
//!
//! ```text
//!  [DatacenterProbe] --ProbeSet::build--> targets (distinct (check, addr:port), each once)
//!                                            |
//!               spawn_workers: one task per target, Semaphore(max_in_flight), jitter
//!                                            |  Prober::probe: the check kind's probe fn
//!                                            v
//!                              mpsc<ProbeResult> --> health::aggregator (single writer)
//!                                                     --> published snapshot --> policies
//! ```
//!
//! Nothing here writes health state: a worker only reports what it saw (outcome with reason,
//! latency, load figure). Rise/fall, admin state, slow start and publication live in
//! `health::aggregator`.
//!
//! A check kind is one file (`http.rs`, `tcp.rs`): its zone-file keys, validation, identity
//! and probe. [`CheckKind`] dispatches to them with exhaustive matches, so adding a kind is a
//! new file plus the variant (the compiler lists every match to extend).
//!
//! This module sits low in the layers (it depends only on the leaf modules): the model holds
//! check specs and the probe plan, and the config loader builds and validates the plan in the
//! same step that builds the model.

pub mod http;
pub mod outcome;
pub mod plan;
pub mod prober;
pub mod spec;
pub mod tcp;
pub mod worker;

pub use http::HttpCheck;
pub use outcome::{LoadFigure, ProbeOutcome, ProbeResult};
pub use plan::{
    DatacenterProbe, DcPlan, MIN_UP_ALL, PlanChange, ProbeSet, ProbeSetError, Target, TargetId,
};
pub use prober::{Prober, ProberError};
pub use spec::{CheckError, CheckKind, CheckSpec};
pub use tcp::TcpCheck;
pub use worker::{DynamicWorkers, Jitter, WorkerSettings, Workers, spawn_workers};
