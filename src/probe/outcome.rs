//! What one probe found.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::plan::TargetId;

/// The verdict of one probe, with the reason a person reads in the logs and the status API.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeOutcome {
    /// The check passed.
    Pass,
    /// HTTP status outside the expected ranges.
    Status(u16),
    /// No complete answer within the check's timeout.
    Timeout(Duration),
    /// Connection refused (nothing listening).
    Refused,
    /// The body did not contain the expected substring.
    BodyMismatch,
    /// A DNS answer with another response code than expected (`rcode NXDOMAIN, expected
    /// NOERROR`).
    Rcode(String),
    /// A DNS answer without the expected text in its answer section.
    AnswerMismatch(String),
    /// The TLS certificate expires within `min-days` (or has expired).
    Expiring(String),
    /// An `exec` command exited non-zero or was killed (`exit status 1: <its first line>`).
    Exit(String),
    /// The check passed but the load figure could not be read: health counts it as a pass,
    /// the aggregator keeps the last good load and reports the reason.
    BadLoad(String),
    /// Any other failure (TLS, reset, DNS of the SNI name, ...).
    Other(String),
}

impl ProbeOutcome {
    /// Does this result count as a pass for rise/fall?
    pub(crate) fn is_pass(&self) -> bool {
        matches!(self, ProbeOutcome::Pass | ProbeOutcome::BadLoad(_))
    }

    /// Short machine-friendly name, for the status API and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeOutcome::Pass => "pass",
            ProbeOutcome::Status(_) => "status",
            ProbeOutcome::Timeout(_) => "timeout",
            ProbeOutcome::Refused => "refused",
            ProbeOutcome::BodyMismatch => "body_mismatch",
            ProbeOutcome::Rcode(_) => "rcode",
            ProbeOutcome::AnswerMismatch(_) => "answer_mismatch",
            ProbeOutcome::Expiring(_) => "cert_expiry",
            ProbeOutcome::Exit(_) => "exit",
            ProbeOutcome::BadLoad(_) => "bad_load",
            ProbeOutcome::Other(_) => "error",
        }
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Pass => f.write_str("pass"),
            ProbeOutcome::Status(s) => write!(f, "status {s}"),
            ProbeOutcome::Timeout(d) => write!(f, "timeout after {d:?}"),
            ProbeOutcome::Refused => f.write_str("connection refused"),
            ProbeOutcome::BodyMismatch => f.write_str("body mismatch"),
            ProbeOutcome::Rcode(r) => write!(f, "rcode {r}"),
            ProbeOutcome::AnswerMismatch(r) => write!(f, "answer mismatch: {r}"),
            ProbeOutcome::Expiring(r) => write!(f, "certificate {r}"),
            ProbeOutcome::Exit(r) => write!(f, "{r}"),
            ProbeOutcome::BadLoad(r) => write!(f, "pass, but bad load figure: {r}"),
            ProbeOutcome::Other(e) => write!(f, "error: {e}"),
        }
    }
}

/// A load figure read from a health body.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LoadFigure {
    /// Utilisation 0..1 (values above 1 are clamped: an overloaded server is full).
    Utilisation(f64),
    /// A connection count; the aggregator divides it by each datacenter's capacity.
    Connections(f64),
}

/// One probe of one target, sent from a worker to the aggregator.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    /// The target probed.
    pub(crate) target: TargetId,
    /// Pass, or the kind of failure and its reason.
    pub outcome: ProbeOutcome,
    /// TCP connect time, HTTP time to the response headers, DNS or ICMP round trip, TLS
    /// handshake time, or the run time of an `exec` command; `None` when there was no answer.
    pub latency: Option<Duration>,
    /// Only for checks with a load or connections pointer, and only when it could be read.
    pub load: Option<LoadFigure>,
    /// When the probe finished (tokio clock).
    pub(crate) at: Instant,
}

impl ProbeResult {
    /// A result without latency or load; handy for tests and for driving the aggregator.
    pub fn new(target: TargetId, outcome: ProbeOutcome, at: Instant) -> ProbeResult {
        ProbeResult {
            target,
            outcome,
            latency: None,
            load: None,
            at,
        }
    }
}
