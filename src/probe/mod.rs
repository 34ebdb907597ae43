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
//! A check kind is one file (`http.rs`, `tcp.rs`, `dns.rs`, `tls.rs`, `exec.rs`, `icmp.rs`):
//! its zone-file keys, validation, identity and probe. [`CheckKind`] dispatches to them with exhaustive matches, so adding a kind is a
//! new file plus the variant (the compiler lists every match to extend).
//!
//! This module sits low in the layers (it depends only on the leaf modules): the model holds
//! check specs and the probe plan, and the config loader builds and validates the plan in the
//! same step that builds the model.

pub(crate) mod dns;
pub(crate) mod exec;
pub(crate) mod http;
pub(crate) mod icmp;
pub(crate) mod outcome;
pub(crate) mod plan;
pub(crate) mod prober;
pub(crate) mod spec;
pub(crate) mod tcp;
pub(crate) mod tls;
pub(crate) mod worker;

pub use dns::DnsCheck;
pub use exec::{DEFAULT_MAX_EXEC, ExecCheck};
pub use http::HttpCheck;
pub use icmp::{IcmpCheck, permitted as icmp_permitted};
pub use outcome::{LoadFigure, ProbeOutcome, ProbeResult};
pub(crate) use plan::MIN_UP_ALL;
pub use plan::{DatacenterProbe, NamedCheck, PlanChange, ProbeSet, Require, TargetId};
pub use prober::Prober;
pub use spec::{CheckKind, CheckSpec};
pub use tls::TlsCheck;
pub(crate) use worker::{DynamicWorkers, Workers};
pub use worker::{Jitter, Steering, WorkerSettings, spawn_steered_workers, spawn_workers};
