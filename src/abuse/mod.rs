//! The shared parts of the defences against abuse from the network: the vocabulary that the
//! transports and the query path decide with, the metrics count and the logs name (why a
//! connection was closed, response rate limiting classes and actions, cookie results), the
//! connection table both stream listeners admit connections through, and a log throttle.
//!
//! ```text
//! dns::tcp accept ---admit(client)--> ConnTable: per-client and total limit,
//! dns::tls, https,                              oldest idle closed when full
//! quic accept    ---admit(client)-->            (one table per listener kind)
//! api accept     ---admit(client)-->
//!      connection task: idle()/busy() on its Ticket, awaits evicted() while idle
//! dns::rrl / dns::cookie decide  --RrlClass, RrlAction, CookieResult--> metrics (by index)
//! every limit event --LogThrottle--> at most one log line per reason and interval
//! ```
//!
//! A leaf module: it depends on nothing else in the crate.

mod conns;
mod throttle;

pub(crate) use conns::{Admission, ConnLimits, ConnTable, Ticket};
pub(crate) use throttle::{ConnLog, LogThrottle};

/// A stream listener, as metrics and logs name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    /// DNS over TCP.
    DnsTcp,
    /// The HTTP API.
    Api,
    /// DNS over TLS (RFC 7858).
    DnsTls,
    /// DNS over HTTPS (RFC 8484).
    DnsHttps,
    /// DNS over QUIC (RFC 9250).
    DnsQuic,
}

impl Listener {
    /// Every listener, in metric label order.
    pub(crate) const ALL: [Listener; 5] = [
        Listener::DnsTcp,
        Listener::Api,
        Listener::DnsTls,
        Listener::DnsHttps,
        Listener::DnsQuic,
    ];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Listener::DnsTcp => "dns_tcp",
            Listener::Api => "api",
            Listener::DnsTls => "dns_tls",
            Listener::DnsHttps => "dns_https",
            Listener::DnsQuic => "dns_quic",
        }
    }

    /// Position in [`Listener::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Why a connection was closed (or refused) by one of the server's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// No query (or request) within the idle timeout.
    Idle,
    /// The connection reached its total lifetime.
    Lifetime,
    /// The connection reached its query budget.
    QueryBudget,
    /// A message whose first byte had arrived was not complete within the read timeout.
    ReadTimeout,
    /// A response could not be written within the write timeout (a client that does not read).
    WriteTimeout,
    /// Refused at accept: the client address already holds its share of connections.
    PerClient,
    /// Refused at accept: every connection is busy.
    Full,
    /// Closed while idle to make room for a new connection (the oldest idle goes first).
    Evicted,
    /// Closed while idle because the process ran out of file descriptors.
    FdExhausted,
    /// The TLS or QUIC handshake (or the HTTP/2 preface) did not finish in time.
    HandshakeTimeout,
    /// The TLS or QUIC handshake failed (no common ALPN or version, a bad record, ...).
    HandshakeFailed,
    /// A request longer than the bound (DoH: answered 413/414, the connection stays).
    TooLarge,
    /// Not a DNS query (DoH: answered 4xx, the connection stays).
    Malformed,
    /// Not a close: a DoH or DoQ connection reached its concurrent stream limit (further
    /// streams wait for the client's credit, or are refused).
    Streams,
}

impl CloseReason {
    /// Every reason, in metric label order.
    pub(crate) const ALL: [CloseReason; 14] = [
        CloseReason::Idle,
        CloseReason::Lifetime,
        CloseReason::QueryBudget,
        CloseReason::ReadTimeout,
        CloseReason::WriteTimeout,
        CloseReason::PerClient,
        CloseReason::Full,
        CloseReason::Evicted,
        CloseReason::FdExhausted,
        CloseReason::HandshakeTimeout,
        CloseReason::HandshakeFailed,
        CloseReason::TooLarge,
        CloseReason::Malformed,
        CloseReason::Streams,
    ];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            CloseReason::Idle => "idle",
            CloseReason::Lifetime => "lifetime",
            CloseReason::QueryBudget => "query_budget",
            CloseReason::ReadTimeout => "read_timeout",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::PerClient => "per_client_limit",
            CloseReason::Full => "full",
            CloseReason::Evicted => "evicted",
            CloseReason::FdExhausted => "fd_exhausted",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::HandshakeFailed => "handshake_failed",
            CloseReason::TooLarge => "request_too_large",
            CloseReason::Malformed => "malformed",
            CloseReason::Streams => "streams_limit",
        }
    }

    /// Position in [`CloseReason::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Whether `listener` can close a connection for this reason (what metrics list).
    pub(crate) fn applies_to(self, listener: Listener) -> bool {
        match self {
            CloseReason::Streams => false,
            CloseReason::HandshakeTimeout | CloseReason::HandshakeFailed => matches!(
                listener,
                Listener::DnsTls | Listener::DnsHttps | Listener::DnsQuic
            ),
            CloseReason::TooLarge | CloseReason::Malformed => listener != Listener::Api,
            _ => true,
        }
    }

    /// A reason a single request of a multiplexed connection (DoH, DoQ) can be stopped for
    /// while the connection stays.
    pub(crate) fn per_request(self) -> bool {
        matches!(
            self,
            CloseReason::ReadTimeout
                | CloseReason::TooLarge
                | CloseReason::Malformed
                | CloseReason::Streams
        )
    }

    /// Worth a warning: a sign of abuse or of limits too small for the traffic. The others
    /// are how connections normally end under load (logged at info, or debug for idle).
    pub(crate) fn is_warning(self) -> bool {
        matches!(
            self,
            CloseReason::ReadTimeout
                | CloseReason::WriteTimeout
                | CloseReason::PerClient
                | CloseReason::Full
                | CloseReason::FdExhausted
                | CloseReason::HandshakeTimeout
                | CloseReason::TooLarge
        )
    }
}

/// The response classes of response rate limiting (as Knot and BIND class them). The name
/// part of a bucket's key depends on the class: see `dns::rrl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RrlClass {
    /// Records for the name asked (wildcard answers included).
    Answer,
    /// NXDOMAIN or NODATA.
    Negative,
    /// A referral to a delegated child zone.
    Referral,
    /// Any other response code (REFUSED, FORMERR, SERVFAIL, NOTIMP, BADVERS, BADCOOKIE).
    Error,
}

impl RrlClass {
    /// Every class, in metric label order.
    pub(crate) const ALL: [RrlClass; 4] = [
        RrlClass::Answer,
        RrlClass::Negative,
        RrlClass::Referral,
        RrlClass::Error,
    ];

    /// The metric and log label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            RrlClass::Answer => "answer",
            RrlClass::Negative => "negative",
            RrlClass::Referral => "referral",
            RrlClass::Error => "error",
        }
    }

    /// Position in [`RrlClass::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What response rate limiting did with a response over its bucket's rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RrlAction {
    /// Not sent.
    Dropped,
    /// Sent truncated (TC=1, no records), so a real client retries over TCP.
    Slipped,
    /// Log-only mode: sent in full, counted as if limited.
    LogOnly,
}

impl RrlAction {
    /// Every action, in metric label order.
    pub(crate) const ALL: [RrlAction; 3] =
        [RrlAction::Dropped, RrlAction::Slipped, RrlAction::LogOnly];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            RrlAction::Dropped => "dropped",
            RrlAction::Slipped => "slipped",
            RrlAction::LogOnly => "log_only",
        }
    }

    /// Position in [`RrlAction::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Why a UDP response was not subject to rate limiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RrlExempt {
    /// The query carried a valid server cookie: its source address is proven.
    Cookie,
    /// The client is in an exempt prefix (`--rrl-exempt`).
    Prefix,
}

impl RrlExempt {
    /// Every reason, in metric label order.
    pub(crate) const ALL: [RrlExempt; 2] = [RrlExempt::Cookie, RrlExempt::Prefix];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            RrlExempt::Cookie => "cookie",
            RrlExempt::Prefix => "prefix",
        }
    }

    /// Position in [`RrlExempt::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What a query's DNS COOKIE option (RFC 7873) showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CookieResult {
    /// A client cookie alone (the client's first query, or it lost our cookie).
    ClientOnly,
    /// A server cookie we made, from this address, recent enough.
    Valid,
    /// A server cookie we cannot verify (another secret, too old, another address).
    Invalid,
}

impl CookieResult {
    /// Every result, in metric label order.
    pub(crate) const ALL: [CookieResult; 3] = [
        CookieResult::ClientOnly,
        CookieResult::Valid,
        CookieResult::Invalid,
    ];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            CookieResult::ClientOnly => "client_only",
            CookieResult::Valid => "valid",
            CookieResult::Invalid => "invalid",
        }
    }

    /// Position in [`CookieResult::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The pause after an accept failure that more accepts cannot fix: doubles from 10 ms up to
/// 1 s while failures go on (`prev` = the previous pause, zero after a success).
pub(crate) fn next_backoff(prev: std::time::Duration) -> std::time::Duration {
    (prev * 2).clamp(
        std::time::Duration::from_millis(10),
        std::time::Duration::from_secs(1),
    )
}

/// An accept failure that means the process (or the system) is out of file descriptors or
/// memory for sockets: waiting helps, retrying at once only spins.
pub(crate) fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_match_the_label_order() {
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in RrlClass::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in RrlAction::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in RrlExempt::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in CookieResult::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in Listener::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        assert!(is_resource_exhaustion(&std::io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        let mut b = std::time::Duration::ZERO;
        let seq: Vec<u128> = (0..9)
            .map(|_| {
                b = next_backoff(b);
                b.as_millis()
            })
            .collect();
        assert_eq!(seq, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert!(!is_resource_exhaustion(&std::io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
