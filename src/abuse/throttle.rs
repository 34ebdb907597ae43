//! At most one log line per interval for an event that an attacker can repeat at will (a
//! refused connection, a rate-limited response): the first occurrence after a quiet interval
//! is logged with the number of occurrences left unlogged since the previous line. Lock-free,
//! so the UDP threads may call it per event.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::{CloseReason, Listener};

/// One throttled log line.
#[derive(Debug)]
pub(crate) struct LogThrottle {
    base: Instant,
    every_ms: u64,
    /// Milliseconds since `base` before which no line is written (0 = now).
    next_ms: AtomicU64,
    /// Events since the last line written.
    suppressed: AtomicU64,
}

impl LogThrottle {
    /// A throttle allowing one line per `every`; `base` is any instant before the first call.
    pub(crate) fn new(base: Instant, every: Duration) -> LogThrottle {
        LogThrottle {
            base,
            every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Called once per event at `now`: `Some(n)` when a line may be written now (`n` events
    /// went unlogged since the previous line), `None` when this one is only counted.
    pub(crate) fn allow(&self, now: Instant) -> Option<u64> {
        let ms =
            u64::try_from(now.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Relaxed);
        if ms >= next
            && self
                .next_ms
                .compare_exchange(next, ms.saturating_add(self.every_ms), Relaxed, Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Relaxed));
        }
        self.suppressed.fetch_add(1, Relaxed);
        None
    }
}

/// The throttled log lines of one stream listener: closes for a limit (one throttle per
/// reason) and accept failures.
pub(crate) struct ConnLog {
    listener: Listener,
    closes: [LogThrottle; CloseReason::ALL.len()],
    accept: LogThrottle,
}

/// Interval between two log lines of one kind.
const EVERY: Duration = Duration::from_secs(10);

impl ConnLog {
    /// The log of `listener`.
    pub(crate) fn new(listener: Listener) -> ConnLog {
        let base = tokio::time::Instant::now().into_std();
        ConnLog {
            listener,
            closes: std::array::from_fn(|_| LogThrottle::new(base, EVERY)),
            accept: LogThrottle::new(base, EVERY),
        }
    }

    /// A connection from `client` was closed or refused for `reason`: a warning for the
    /// reasons that suggest abuse or too small limits, info for evictions, lifetimes and
    /// budgets, debug for idle timeouts; at most one line per reason every 10 s.
    pub(crate) fn closed(&self, reason: CloseReason, client: IpAddr) {
        let now = tokio::time::Instant::now().into_std();
        let Some(more) = self.closes[reason.index()].allow(now) else {
            return;
        };
        let listener = self.listener.label();
        let label = reason.label();
        if reason.is_warning() {
            tracing::warn!(listener, reason = label, %client, unlogged_since_last = more, "connection closed by a limit");
        } else if reason == CloseReason::Idle {
            tracing::debug!(listener, reason = label, %client, unlogged_since_last = more, "connection closed by a limit");
        } else {
            tracing::info!(listener, reason = label, %client, unlogged_since_last = more, "connection closed by a limit");
        }
    }

    /// Accepting failed with `err`; the listener waits `backoff` before the next try.
    pub(crate) fn accept_failed(&self, err: &std::io::Error, backoff: Duration) {
        let now = tokio::time::Instant::now().into_std();
        if let Some(more) = self.accept.allow(now) {
            tracing::warn!(
                listener = self.listener.label(),
                error = %err,
                backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                unlogged_since_last = more,
                "accept failed; waiting before the next try"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_rest() {
        let t0 = tokio::time::Instant::now().into_std();
        let t = LogThrottle::new(t0, Duration::from_secs(10));
        assert_eq!(t.allow(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(t.allow(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(t.allow(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(t.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(t.allow(t0 + Duration::from_secs(60)), Some(1));
    }
}
