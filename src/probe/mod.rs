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

pub(crate) mod http;
pub(crate) mod outcome;
pub(crate) mod plan;
pub(crate) mod prober;
pub(crate) mod spec;
pub(crate) mod tcp;
pub(crate) mod worker;

pub use http::HttpCheck;
pub(crate) use outcome::LoadFigure;
pub use outcome::{ProbeOutcome, ProbeResult};
pub use plan::{DatacenterProbe, ProbeSet, TargetId};
pub use prober::Prober;
pub use spec::{CheckKind, CheckSpec};
pub(crate) use worker::Workers;
pub use worker::{Jitter, WorkerSettings, spawn_workers};
