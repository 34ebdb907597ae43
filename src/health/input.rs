//! The inputs that decide a datacenter's state, and the one way an external verdict enters.
//!
//! ```text
//!  PUT /datacenters/{dc}/health ----------+
//!  --health-feed FILE (re-read on change) +--Update{Set|Clear|Replace}--> AggregatorHandle::input
//!  POST /alertmanager (firing / resolved)-+        (source kind + id, subject, up/down,
//!  cluster quorum (crate::cluster) -------+         load, reason, ttl)
//!                 Update::Targets          |
//!                 (one verdict per target) v
//!              Aggregator: external verdicts, each expiring on the aggregator's clock
//!
//!  precedence per datacenter:  admin (obey/up/down/drain)
//!                              > external verdicts (any active down wins, else an active up)
//!                              > probes (checks combined by `require`), where a target with
//!                                a shared verdict (the cluster's quorum) counts as that
//!                                verdict says instead of as this process's probes say
//!                              > no check: up
//!
//!  and back out: every probe result applied gives a TargetObservation (the target's state
//!  after rise/fall here), which a cluster publishes for the other nodes' quorum.
//! ```
//!
//! Every external source speaks the same [`Update`]: a verdict on a [`Subject`] (a datacenter,
//! or one of its answer addresses) from a [`Source`] (its kind and an id within the kind: the
//! pusher's name, the feed file, the alert's fingerprint), with a reason and a time to live.
//! The aggregator is the only place that applies them; the state it publishes says which
//! [`Input`] decided each datacenter.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

/// Which input decided a datacenter's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Input {
    /// No check and no external verdict: up by configuration.
    #[default]
    Config,
    /// The probes (checks combined by `require`).
    Probes,
    /// A state pushed through the API.
    Pushed,
    /// A health feed file.
    Feed,
    /// A firing Alertmanager alert.
    Alert,
    /// The probes, with some targets decided by the cluster's quorum (`--cluster`).
    Cluster,
    /// The operator's admin state (not `obey`).
    Admin,
}

impl Input {
    /// `config`, `probes`, `pushed`, `feed`, `alert` or `admin`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Input::Config => "config",
            Input::Probes => "probes",
            Input::Pushed => "pushed",
            Input::Feed => "feed",
            Input::Alert => "alert",
            Input::Cluster => "cluster",
            Input::Admin => "admin",
        }
    }

    /// Every input, in precedence order (strongest first), for metrics.
    pub(crate) const ALL: [Input; 7] = [
        Input::Admin,
        Input::Pushed,
        Input::Feed,
        Input::Alert,
        Input::Cluster,
        Input::Probes,
        Input::Config,
    ];
}

/// The kinds of external input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// `PUT /datacenters/{name}/health`.
    Pushed,
    /// `--health-feed FILE`.
    Feed,
    /// `POST /alertmanager`.
    Alert,
    /// A cluster's quorum over the observations of the nodes that probe a target.
    Cluster,
}

impl SourceKind {
    /// The [`Input`] a verdict of this kind is shown as.
    pub(crate) fn input(self) -> Input {
        match self {
            SourceKind::Pushed => Input::Pushed,
            SourceKind::Feed => Input::Feed,
            SourceKind::Alert => Input::Alert,
            SourceKind::Cluster => Input::Cluster,
        }
    }

    /// `pushed`, `feed` or `alert`.
    pub(crate) fn as_str(self) -> &'static str {
        self.input().as_str()
    }
}

/// Who gives a verdict: its kind and an id within the kind (the pusher's `source`, the feed
/// file's path, the alert's fingerprint). A source has at most one verdict per subject; a new
/// one replaces it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    /// Pushed, feed or alert.
    pub kind: SourceKind,
    /// Who, within the kind.
    pub id: String,
}

impl Source {
    /// A source of `kind` called `id`.
    pub fn new(kind: SourceKind, id: impl Into<String>) -> Source {
        Source {
            kind,
            id: id.into(),
        }
    }
}

/// What a verdict is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A whole datacenter, by name.
    Datacenter(String),
    /// One answer address of one datacenter.
    Address {
        /// The datacenter, by name.
        datacenter: String,
        /// One of its answer addresses.
        address: IpAddr,
    },
    /// An answer address of whichever datacenters list it (feed files name addresses alone).
    AnyAddress(IpAddr),
}

impl Subject {
    /// The subject as a feed or a message names it: `fra`, `fra/192.0.2.10`, `192.0.2.10`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Subject::Datacenter(d) => d.clone(),
            Subject::Address {
                datacenter,
                address,
            } => format!("{datacenter}/{address}"),
            Subject::AnyAddress(a) => a.to_string(),
        }
    }
}

/// One external verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// What it is about.
    pub subject: Subject,
    /// Up (true) or down.
    pub up: bool,
    /// Utilisation 0..1, overriding the probes' figure while the verdict holds.
    pub load: Option<f64>,
    /// Why, for people: shown by `explain`, `/status` and in events.
    pub reason: String,
    /// The verdict expires this long after it is applied; the probes decide again.
    pub ttl: Duration,
}

/// A change of external verdicts: the only way one enters the aggregator.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// Set (or replace) `source`'s verdict on its subject.
    Set {
        /// Who says so.
        source: Source,
        /// What it says.
        verdict: Verdict,
    },
    /// Withdraw `source`'s verdict on `subject` (an alert resolved, a DELETE).
    Clear {
        /// Whose verdict.
        source: Source,
        /// About what.
        subject: Subject,
    },
    /// Replace every verdict of `source` with `verdicts` (a feed file read again). Subjects
    /// that name nothing configured are skipped and listed in [`Applied::unknown`].
    Replace {
        /// Whose verdicts.
        source: Source,
        /// All of them, as they are now.
        verdicts: Vec<Verdict>,
    },
    /// Replace every per-target verdict of `source` with `verdicts` (a cluster's quorum, sent
    /// whole at each change and refresh). Targets not listed go back to the local probes,
    /// and so do unknown ones (listed in [`Applied::unknown`]).
    Targets {
        /// Whose verdicts.
        source: Source,
        /// All of them, as they are now.
        verdicts: Vec<TargetVerdict>,
    },
}

/// A verdict on one probed target (a check on one address), as a shared store decides it:
/// while it holds, the target counts as `up` says, whatever this process's own probes of it
/// say; the datacenter combines its targets as usual (min-up, require).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetVerdict {
    /// The target, by its key (`Target::key` of the probe plan: check identity and address).
    pub target: String,
    /// Up (true) or down.
    pub up: bool,
    /// Utilisation 0..1 as the probing nodes read it.
    pub load: Option<f64>,
    /// Smoothed round-trip time as the probing nodes measure it, ms.
    pub latency_ms: Option<f64>,
    /// Why, for people (`2 of 2 probing nodes see it down`).
    pub reason: String,
    /// The verdict expires this long after it is applied; the local probes decide again.
    pub ttl: Duration,
}

/// What this process's probes make of one target, after rise/fall: sent out after each
/// probe result applied (see `Aggregator::set_observations_out`).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetObservation {
    /// The target's index in the probe set of the aggregator that sent it.
    pub target: crate::probe::TargetId,
    /// The state after rise/fall.
    pub up: bool,
    /// Passes in a row.
    pub passes: u32,
    /// Fails in a row.
    pub fails: u32,
    /// Smoothed round-trip time, ms.
    pub latency_ms: Option<f64>,
    /// The last load figure as utilisation 0..1 (a `connections` figure is not shared).
    pub load: Option<f64>,
    /// The last probe's outcome in words (`pass`, `status 503`).
    pub last: String,
}

/// What an [`Update`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Verdicts set, changed or withdrawn (a refresh with the same content does not count).
    pub changed: usize,
    /// Verdicts now held from this source.
    pub active: usize,
    /// Subjects that name no configured datacenter or address (`Replace` only).
    pub unknown: Vec<String>,
}

/// Why an update was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    /// No datacenter has this name.
    #[error("no datacenter named `{0}`")]
    UnknownDatacenter(String),
    /// The datacenter has no such answer address.
    #[error("{address} is not an answer address of datacenter `{datacenter}`")]
    NotAnAddress {
        /// The datacenter named.
        datacenter: String,
        /// The address given.
        address: IpAddr,
    },
    /// No datacenter has this answer address.
    #[error("no datacenter has the answer address {0}")]
    UnknownAddress(IpAddr),
    /// The aggregator is not running (between two probe runtimes, or at shutdown).
    #[error("the health aggregator has stopped")]
    Stopped,
}
