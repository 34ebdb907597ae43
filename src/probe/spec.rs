//! What a check is: plain structs that the config loader fills in.
//!
//! Two checks are "the same target" when their [`CheckSpec`] and target address are equal, so
//! every field here takes part in `Eq`/`Hash` (see [`super::target`]).

use std::ops::RangeInclusive;
use std::time::Duration;

/// Default probe interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Default probe timeout (must stay below the interval).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default consecutive passes to go up.
pub const DEFAULT_RISE: u32 = 2;
/// Default consecutive fails to go down.
pub const DEFAULT_FALL: u32 = 3;
/// Default jitter, as a fraction of the interval (10 %).
pub const DEFAULT_JITTER_FRACTION: f64 = 0.1;

/// How to test one target, and the hysteresis applied to its results.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckSpec {
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
}

/// The probe protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// `http` or `https` GET.
    Http(HttpCheck),
    /// TCP connect to the port.
    Tcp { port: u16 },
}

/// An `http`/`https` check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpCheck {
    /// `https` when true.
    pub tls: bool,
    /// Verify the server certificate (https only; default true). Off for self-signed endpoints.
    pub verify: bool,
    /// Request path, e.g. `/health`.
    pub path: String,
    pub port: u16,
    /// Host header, and the TLS SNI name for https; `None` = the target address.
    pub host: Option<String>,
    /// Accepted status codes (default `200..=299`).
    pub expect_status: Vec<RangeInclusive<u16>>,
    /// The body must contain this substring.
    pub body_contains: Option<String>,
    /// Follow redirects (default false: a 3xx is judged as it is).
    pub follow_redirects: bool,
    /// JSON pointer (RFC 6901) to a utilisation 0..1 in the body.
    pub load_pointer: Option<String>,
    /// JSON pointer to a connection count in the body; load = count / datacenter capacity.
    pub connections_pointer: Option<String>,
}

impl HttpCheck {
    /// A plain http GET of `path` on `port` with the documented defaults.
    pub fn new(path: impl Into<String>, port: u16) -> HttpCheck {
        HttpCheck {
            tls: false,
            verify: true,
            path: path.into(),
            port,
            host: None,
            expect_status: vec![200..=299],
            body_contains: None,
            follow_redirects: false,
            load_pointer: None,
            connections_pointer: None,
        }
    }

    /// Does the body have to be read at all?
    pub fn needs_body(&self) -> bool {
        self.body_contains.is_some()
            || self.load_pointer.is_some()
            || self.connections_pointer.is_some()
    }

    /// Is `status` one of the expected codes?
    pub fn status_ok(&self, status: u16) -> bool {
        self.expect_status.iter().any(|r| r.contains(&status))
    }
}

/// A check that cannot run as written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckError {
    #[error("timeout ({timeout:?}) must be shorter than the interval ({interval:?})")]
    TimeoutNotBelowInterval {
        timeout: Duration,
        interval: Duration,
    },
    #[error("interval and timeout must be greater than zero")]
    ZeroDuration,
    #[error("rise and fall must be at least 1 (rise = {rise}, fall = {fall})")]
    ZeroThreshold { rise: u32, fall: u32 },
    #[error("jitter ({jitter:?}) must not exceed the interval ({interval:?})")]
    JitterTooLarge {
        jitter: Duration,
        interval: Duration,
    },
    #[error("`{0}` is not a JSON pointer: it must be empty or start with `/`")]
    BadPointer(String),
    #[error("set either a load pointer or a connections pointer, not both")]
    BothLoadAndConnections,
    #[error("expected status ranges are empty or inverted")]
    BadStatusRanges,
    #[error("port 0 cannot be probed")]
    ZeroPort,
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
        }
    }

    /// `tcp` connect check on `port` with the defaults.
    pub fn tcp(port: u16) -> CheckSpec {
        CheckSpec::new(CheckKind::Tcp { port })
    }

    /// `http` GET check with the defaults.
    pub fn http(path: impl Into<String>, port: u16) -> CheckSpec {
        CheckSpec::new(CheckKind::Http(HttpCheck::new(path, port)))
    }

    /// The jitter in effect: the configured one, else 10 % of the interval.
    pub fn effective_jitter(&self) -> Duration {
        self.jitter
            .unwrap_or_else(|| self.interval.mul_f64(DEFAULT_JITTER_FRACTION))
    }

    /// The port probed on each target address.
    pub fn port(&self) -> u16 {
        match &self.kind {
            CheckKind::Http(h) => h.port,
            CheckKind::Tcp { port } => *port,
        }
    }

    /// TTL cap for answers built from unsettled state: the interval in whole seconds (>= 1).
    pub fn settle_ttl(&self) -> u32 {
        let ms = self.interval.as_millis();
        u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX).max(1)
    }

    /// A stable text identity of what is probed (not how often), used as the key of the
    /// warm-start file so that changing the interval keeps the saved health.
    pub fn fingerprint(&self) -> String {
        match &self.kind {
            CheckKind::Tcp { port } => format!("tcp:{port}"),
            CheckKind::Http(h) => format!(
                "{}:{}:{}:{}",
                if h.tls { "https" } else { "http" },
                h.port,
                h.host.as_deref().unwrap_or(""),
                h.path
            ),
        }
    }

    /// Reject checks that cannot work, with a message a person can act on.
    pub fn validate(&self) -> Result<(), CheckError> {
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
        if self.port() == 0 {
            return Err(CheckError::ZeroPort);
        }
        if let CheckKind::Http(h) = &self.kind {
            if h.load_pointer.is_some() && h.connections_pointer.is_some() {
                return Err(CheckError::BothLoadAndConnections);
            }
            for p in h.load_pointer.iter().chain(h.connections_pointer.iter()) {
                if !(p.is_empty() || p.starts_with('/')) {
                    return Err(CheckError::BadPointer(p.clone()));
                }
            }
            if h.expect_status.is_empty() || h.expect_status.iter().any(|r| r.start() > r.end()) {
                return Err(CheckError::BadStatusRanges);
            }
        }
        Ok(())
    }
}
