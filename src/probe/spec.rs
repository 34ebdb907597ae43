//! What a check is: the knobs every check type shares (interval, timeout, rise/fall, jitter,
//! slow start) and the [`CheckKind`] that says how to probe. Each kind lives in its own file
//! (`http.rs`, `tcp.rs`, `dns.rs`, `tls.rs`, `exec.rs`, `icmp.rs`) with its keys, validation and
//! probe; the matches here are exhaustive, so a new kind is one new file plus one variant the
//! compiler walks you through.
//!
//! Two checks are "the same target" when their [`CheckSpec`] and target address are equal, so
//! every field here takes part in `Eq`/`Hash` (see [`super::plan`]).

use std::time::Duration;

use super::dns::{self, DnsCheck};
use super::exec::{self, ExecCheck};
use super::http::{self, HttpCheck};
use super::icmp::{self, IcmpCheck};
use super::tcp::{self, TcpCheck};
use super::tls::{self, TlsCheck};
use crate::walk::{Errors, Table};

/// Default probe interval.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Default probe timeout (must stay below the interval).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default consecutive passes to go up.
pub(crate) const DEFAULT_RISE: u32 = 2;
/// Default consecutive fails to go down.
pub(crate) const DEFAULT_FALL: u32 = 3;
/// Default jitter, as a fraction of the interval (10 %).
pub(crate) const DEFAULT_JITTER_FRACTION: f64 = 0.1;

/// Keys every check has, whatever its type.
pub(crate) const COMMON_KEYS: &[&str] = &[
    "type",
    "interval",
    "timeout",
    "rise",
    "fall",
    "jitter",
    "slow-start",
    "replicas",
    "quorum",
];

/// How to test one target, and the hysteresis applied to its results.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckSpec {
    /// The protocol and its settings.
    pub kind: CheckKind,
    /// Time between probes of one target (default 5 s).
    pub interval: Duration,
    /// Give up on a probe after this long (default 2 s, must be < interval).
    pub timeout: Duration,
    /// Consecutive passes to go up (default 2).
    pub rise: u32,
    /// Consecutive fails to go down (default 3).
    pub fall: u32,
    /// Spread of the first probe and of each interval; `None` = 10 % of the interval.
    pub jitter: Option<Duration>,
    /// Ramp window after a datacenter comes back up; `None` = no slow start.
    pub slow_start: Option<Duration>,
    /// In a cluster (`--cluster`): how many live nodes probe each target of this check;
    /// `None` = the cluster's `--cluster-replicas`. Ignored by a standalone server.
    pub replicas: Option<u32>,
    /// In a cluster: how many of the probing nodes must see a target down for it to be down;
    /// `None` = a majority of `replicas`. Ignored by a standalone server.
    pub quorum: Option<u32>,
}

/// The probe protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// `http` or `https` GET ([`HttpCheck`]).
    Http(HttpCheck),
    /// TCP connect to the port (`TcpCheck`).
    Tcp(TcpCheck),
    /// A DNS query and its expected answer ([`DnsCheck`]).
    Dns(DnsCheck),
    /// A TLS handshake and the certificate's remaining validity ([`TlsCheck`]).
    Tls(TlsCheck),
    /// An external command ([`ExecCheck`]).
    Exec(ExecCheck),
    /// ICMP echo ([`IcmpCheck`]).
    Icmp(IcmpCheck),
}

impl CheckKind {
    /// The `type` values a zone file may use, for messages.
    pub(crate) const TYPES: &'static str = "http, https, tcp, dns, tls, exec or icmp";

    /// Reads the kind-specific keys of a check whose `type` is `kind`; `None` after reporting
    /// an error (an unknown type included).
    pub(crate) fn read(kind: &str, t: &mut Table<'_>, errs: &mut Errors) -> Option<CheckKind> {
        match kind {
            "http" | "https" => Some(CheckKind::Http(HttpCheck::read(t, kind == "https", errs))),
            "tcp" => TcpCheck::read(t, errs).map(CheckKind::Tcp),
            "dns" => DnsCheck::read(t, errs).map(CheckKind::Dns),
            "tls" => TlsCheck::read(t, errs).map(CheckKind::Tls),
            "exec" => ExecCheck::read(t, errs).map(CheckKind::Exec),
            "icmp" => Some(CheckKind::Icmp(IcmpCheck)),
            other => {
                errs.add(
                    &t.key_path("type"),
                    format!(
                        "{other:?} is not a check type (expected {})",
                        CheckKind::TYPES
                    ),
                );
                None
            }
        }
    }

    /// The `type` a zone file gives for this kind.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            CheckKind::Http(h) if h.tls => "https",
            CheckKind::Http(_) => "http",
            CheckKind::Tcp(_) => "tcp",
            CheckKind::Dns(_) => "dns",
            CheckKind::Tls(_) => "tls",
            CheckKind::Exec(_) => "exec",
            CheckKind::Icmp(_) => "icmp",
        }
    }

    /// The keys of this kind besides [`COMMON_KEYS`].
    pub(crate) fn keys(&self) -> &'static [&'static str] {
        match self {
            CheckKind::Http(_) => http::KEYS,
            CheckKind::Tcp(_) => tcp::KEYS,
            CheckKind::Dns(_) => dns::KEYS,
            CheckKind::Tls(_) => tls::KEYS,
            CheckKind::Exec(_) => exec::KEYS,
            CheckKind::Icmp(_) => icmp::KEYS,
        }
    }

    /// Every kind's keys: what a check of unknown type may hold without a second error.
    pub(crate) fn all_keys() -> impl Iterator<Item = &'static str> {
        http::KEYS
            .iter()
            .chain(tcp::KEYS)
            .chain(dns::KEYS)
            .chain(tls::KEYS)
            .chain(exec::KEYS)
            .chain(icmp::KEYS)
            .copied()
    }

    /// The port probed on each target address; 0 for kinds without one (`icmp`, an `exec`
    /// check without `port`).
    pub(crate) fn port(&self) -> u16 {
        match self {
            CheckKind::Http(h) => h.port,
            CheckKind::Tcp(t) => t.port,
            CheckKind::Dns(d) => d.port,
            CheckKind::Tls(t) => t.port,
            CheckKind::Exec(e) => e.port.unwrap_or(0),
            CheckKind::Icmp(_) => 0,
        }
    }

    /// Does this kind connect to a port (so port 0 is a mistake)?
    pub(crate) fn uses_port(&self) -> bool {
        match self {
            CheckKind::Http(_) | CheckKind::Tcp(_) | CheckKind::Dns(_) | CheckKind::Tls(_) => true,
            CheckKind::Exec(_) | CheckKind::Icmp(_) => false,
        }
    }

    /// Is one probe of this kind about one datacenter, not only one address? An `exec`
    /// command is told the datacenter's name, so its targets are never shared between
    /// datacenters.
    pub(crate) fn per_datacenter(&self) -> bool {
        match self {
            CheckKind::Exec(_) => true,
            CheckKind::Http(_)
            | CheckKind::Tcp(_)
            | CheckKind::Dns(_)
            | CheckKind::Tls(_)
            | CheckKind::Icmp(_) => false,
        }
    }

    /// A stable text identity of what is probed.
    pub(crate) fn fingerprint(&self) -> String {
        match self {
            CheckKind::Http(h) => h.fingerprint(),
            CheckKind::Tcp(t) => t.fingerprint(),
            CheckKind::Dns(d) => d.fingerprint(),
            CheckKind::Tls(t) => t.fingerprint(),
            CheckKind::Exec(e) => e.fingerprint(),
            CheckKind::Icmp(i) => i.fingerprint(),
        }
    }

    fn validate(&self) -> Result<(), CheckError> {
        match self {
            CheckKind::Http(h) => h.validate(),
            CheckKind::Exec(e) => e.validate(),
            CheckKind::Tcp(_) | CheckKind::Dns(_) | CheckKind::Tls(_) | CheckKind::Icmp(_) => {
                Ok(())
            }
        }
    }
}

/// A check that cannot run as written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckError {
    /// The timeout is not below the interval.
    #[error("timeout ({timeout:?}) must be shorter than the interval ({interval:?})")]
    TimeoutNotBelowInterval {
        /// The timeout given.
        timeout: Duration,
        /// The interval given.
        interval: Duration,
    },
    /// A zero interval or timeout.
    #[error("interval and timeout must be greater than zero")]
    ZeroDuration,
    /// `rise` or `fall` of zero.
    #[error("rise and fall must be at least 1 (rise = {rise}, fall = {fall})")]
    ZeroThreshold {
        /// The rise given.
        rise: u32,
        /// The fall given.
        fall: u32,
    },
    /// Jitter above the interval.
    #[error("jitter ({jitter:?}) must not exceed the interval ({interval:?})")]
    JitterTooLarge {
        /// The jitter in effect.
        jitter: Duration,
        /// The interval given.
        interval: Duration,
    },
    /// A load or connections pointer that is not a JSON pointer.
    #[error("`{0}` is not a JSON pointer: it must be empty or start with `/`")]
    BadPointer(String),
    /// Both load and connections pointers.
    #[error("set either a load pointer or a connections pointer, not both")]
    BothLoadAndConnections,
    /// Empty or inverted status ranges.
    #[error("expected status ranges are empty or inverted")]
    BadStatusRanges,
    /// Port 0.
    #[error("port 0 cannot be probed")]
    ZeroPort,
    /// An `exec` check without a program to run.
    #[error("command must name a program to run (a list: [\"/path/to/script\", \"arg\", ...])")]
    EmptyCommand,
    /// ICMP echo cannot be sent from this process.
    #[error("{0}")]
    IcmpNotPermitted(String),
}

impl CheckSpec {
    /// A check of `kind` with the documented defaults.
    pub fn new(kind: CheckKind) -> CheckSpec {
        CheckSpec {
            kind,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            jitter: None,
            slow_start: None,
            replicas: None,
            quorum: None,
        }
    }

    /// `tcp` connect check on `port` with the defaults.
    pub fn tcp(port: u16) -> CheckSpec {
        CheckSpec::new(CheckKind::Tcp(TcpCheck { port }))
    }

    /// `http` GET check with the defaults.
    pub fn http(path: impl Into<String>, port: u16) -> CheckSpec {
        CheckSpec::new(CheckKind::Http(HttpCheck::new(path, port)))
    }

    /// Reads a whole `checks.<name>` table: the type, its keys and the common knobs, then
    /// validates. `None` after reporting every error found.
    pub(crate) fn read(mut t: Table<'_>, errs: &mut Errors) -> Option<CheckSpec> {
        let before = errs.list.len();
        let kind = t
            .required_str("type", errs)
            .and_then(|k| CheckKind::read(k, &mut t, errs));
        let mut interval = None;
        let mut timeout = None;
        let mut rise = None;
        let mut fall = None;
        if let Some(d) = t.duration("interval", errs) {
            interval = Some(d);
        }
        if let Some(d) = t.duration("timeout", errs) {
            timeout = Some(d);
        }
        if let Some(r) = t.int("rise", 1, 1000, errs) {
            rise = Some(r as u32);
        }
        if let Some(f) = t.int("fall", 1, 1000, errs) {
            fall = Some(f as u32);
        }
        let jitter = t.duration("jitter", errs);
        let slow_start = t.duration("slow-start", errs).filter(|d| !d.is_zero());
        let replicas = t.int("replicas", 1, 1000, errs).map(|r| r as u32);
        let quorum = t.int("quorum", 1, 1000, errs).map(|r| r as u32);
        let quorum_path = t.key_path("quorum");
        let path = t.path.clone();
        let mut keys: Vec<&str> = COMMON_KEYS.to_vec();
        match &kind {
            Some(k) => keys.extend_from_slice(k.keys()),
            None => keys.extend(CheckKind::all_keys()),
        }
        t.finish(&keys, errs);
        let mut spec = CheckSpec::new(kind?);
        spec.interval = interval.unwrap_or(spec.interval);
        spec.timeout = timeout.unwrap_or(spec.timeout);
        spec.rise = rise.unwrap_or(spec.rise);
        spec.fall = fall.unwrap_or(spec.fall);
        spec.jitter = jitter;
        spec.slow_start = slow_start;
        spec.replicas = replicas;
        spec.quorum = quorum;
        if let (Some(q), Some(r)) = (quorum, replicas)
            && q > r
        {
            errs.add(
                &quorum_path,
                format!("quorum {q} is more than replicas {r}: no target could ever be down"),
            );
        }
        if errs.list.len() > before {
            return None;
        }
        match spec.validate() {
            Ok(()) => Some(spec),
            Err(e) => {
                errs.add(&path, e.to_string());
                None
            }
        }
    }

    /// The jitter in effect: the configured one, else 10 % of the interval.
    pub fn effective_jitter(&self) -> Duration {
        self.jitter
            .unwrap_or_else(|| self.interval.mul_f64(DEFAULT_JITTER_FRACTION))
    }

    /// The port probed on each target address.
    pub(crate) fn port(&self) -> u16 {
        self.kind.port()
    }

    /// TTL cap for answers built from unsettled state: the interval in whole seconds (>= 1).
    pub(crate) fn settle_ttl(&self) -> u32 {
        let ms = self.interval.as_millis();
        u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX).max(1)
    }

    /// A stable text identity of what is probed (not how often), used as the key of the
    /// warm-start file so that changing the interval keeps the saved health.
    pub(crate) fn fingerprint(&self) -> String {
        self.kind.fingerprint()
    }

    /// Reject checks that cannot work, with a message a person can act on.
    pub(crate) fn validate(&self) -> Result<(), CheckError> {
        if self.interval.is_zero() || self.timeout.is_zero() {
            return Err(CheckError::ZeroDuration);
        }
        if self.timeout >= self.interval {
            return Err(CheckError::TimeoutNotBelowInterval {
                timeout: self.timeout,
                interval: self.interval,
            });
        }
        if self.rise == 0 || self.fall == 0 {
            return Err(CheckError::ZeroThreshold {
                rise: self.rise,
                fall: self.fall,
            });
        }
        if self.effective_jitter() > self.interval {
            return Err(CheckError::JitterTooLarge {
                jitter: self.effective_jitter(),
                interval: self.interval,
            });
        }
        if self.port() == 0 && self.kind.uses_port() {
            return Err(CheckError::ZeroPort);
        }
        self.kind.validate()
    }
}
