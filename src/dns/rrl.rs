//! Response rate limiting (RRL) for UDP (sockets and AF_XDP), in the style of Knot and BIND: a
//! spoofed flood that uses the server as an amplifier gets at most `rate` responses a second
//! per bucket, and a real client behind the spoofed prefix still gets every `slip`-th response
//! truncated, so it retries over TCP (where the source address is proven and no limit applies).
//!
//! ```text
//! response (UDP/XDP only) --exempt prefix? valid cookie? (the server checks)--> pass
//!   key = (client prefix /24 | /56, class, name part, qtype for answers) --keyed hash-->
//!   one AtomicU64 bucket: 20-bit tag | 44-bit theoretical arrival time in µs (GCRA)
//!   within rate (burst: one second's worth) --> pass
//!   over --> log-only: pass, counted | every slip-th (of this thread's limited
//!            responses, all buckets together): truncated | else: dropped
//! ```
//!
//! The name part of the key depends on the class, as in BIND: an answer keys on the query
//! name (a wildcard answer on the wildcard, so random names under it share one bucket),
//! NXDOMAIN/NODATA on the zone (a random-subdomain flood is one bucket), a referral on the
//! delegation, an error on nothing but the prefix.
//!
//! The table is a fixed array of atomics shared by the UDP and AF_XDP threads: one keyed hash
//! and one compare-and-swap per response, no lock, no allocation. Two keys that land on the
//! same slot take it over from each other (the newcomer starts with a full bucket), which errs
//! on the side of answering; the hash key is random per process, so collisions cannot be aimed.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::answer::{Answered, Kind};
use super::wire::Query;
use crate::abuse::{LogThrottle, RrlAction, RrlClass};
use crate::model::Model;
use crate::net::{self, Subnet};

/// Response rate limiting settings (`--rrl-*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RrlConfig {
    /// Responses a second per bucket; 0 turns rate limiting off.
    pub rate: u32,
    /// Every `slip`-th limited response is sent truncated instead of dropped (0 = drop all,
    /// 1 = truncate all).
    pub slip: u32,
    /// IPv4 clients are grouped by this prefix length.
    pub ipv4_prefix: u8,
    /// IPv6 clients are grouped by this prefix length.
    pub ipv6_prefix: u8,
    /// Clients never limited.
    pub exempt: Vec<Subnet>,
    /// Count and log what would be limited, but send every response.
    pub log_only: bool,
}

impl Default for RrlConfig {
    fn default() -> Self {
        RrlConfig {
            rate: 200,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: default_exempt(),
            log_only: false,
        }
    }
}

/// Loopback: packets from 127.0.0.0/8 or ::1 cannot arrive from another host (the kernel
/// drops them on other interfaces), so they are never a reflection attack.
pub fn default_exempt() -> Vec<Subnet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|s| Subnet::parse(s).ok())
        .collect()
}

/// Slots in the bucket table (8 bytes each: 2 MiB).
const SLOTS: usize = 1 << 18;
const TIME_BITS: u32 = 44;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// Burst tolerance: a bucket may run one second ahead of its rate.
const TAU_US: u64 = 1_000_000;

/// What rate limiting decided for one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within its bucket's rate: send it.
    Pass,
    /// The client is in an exempt prefix: send it.
    Exempt,
    /// Over the rate: do what the action says.
    Limited(RrlClass, RrlAction),
}

/// The shared limiter of one server.
pub(crate) struct Rrl {
    emission_us: u64,
    slip: u32,
    log_only: bool,
    ipv4_mask: u128,
    ipv6_mask: u128,
    exempt: Box<[(u128, u128, bool)]>,
    table: Box<[AtomicU64]>,
    hasher: RandomState,
    base: Instant,
    /// At most one log line every 10 s about limited responses.
    pub(crate) log: LogThrottle,
}

thread_local! {
    /// Limited responses seen by this thread, for `slip`.
    static LIMITED: Cell<u32> = const { Cell::new(0) };
}

/// The name part of a bucket key.
enum KeyName<'a> {
    Name(&'a [u8]),
    Wildcard(&'a [u8]),
    Nothing,
}

impl Rrl {
    /// A limiter for `cfg`; `None` when the rate is 0 (off). `base` is any instant before the
    /// first response.
    pub(crate) fn new(cfg: &RrlConfig, base: Instant) -> Option<Rrl> {
        if cfg.rate == 0 {
            return None;
        }
        let exempt = cfg
            .exempt
            .iter()
            .map(|s| {
                let (bits, len) = net::bits(s.addr);
                let m = net::mask(s.prefix);
                (bits & m, m, len == 128)
            })
            .collect();
        Some(Rrl {
            emission_us: (1_000_000 / u64::from(cfg.rate)).max(1),
            slip: cfg.slip,
            log_only: cfg.log_only,
            ipv4_mask: net::mask(cfg.ipv4_prefix.min(32)),
            ipv6_mask: net::mask(cfg.ipv6_prefix.min(128)),
            exempt,
            table: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
            base,
            log: LogThrottle::new(base, Duration::from_secs(10)),
        })
    }

    /// The client's prefix as 128 bits (IPv4 in the top 32), as buckets and logs group it.
    pub(crate) fn prefix_of(&self, addr: IpAddr) -> (u128, bool) {
        let (bits, len) = net::bits(addr);
        let v6 = len == 128;
        (bits & if v6 { self.ipv6_mask } else { self.ipv4_mask }, v6)
    }

    /// The prefix length clients of `addr`'s family are grouped by.
    pub(crate) fn prefix_len(&self, addr: IpAddr) -> u8 {
        match addr {
            IpAddr::V4(_) => (self.ipv4_mask.count_ones()) as u8,
            IpAddr::V6(_) => (self.ipv6_mask.count_ones()) as u8,
        }
    }

    /// Decides for one UDP response `a` to `q` from `addr` at `now`.
    pub(crate) fn check(
        &self,
        addr: IpAddr,
        q: &Query,
        a: &Answered,
        model: &Model,
        now: Instant,
    ) -> Verdict {
        let (bits, _) = net::bits(addr);
        let v6 = matches!(addr, IpAddr::V6(_));
        if self
            .exempt
            .iter()
            .any(|&(net, m, fam6)| fam6 == v6 && bits & m == net)
        {
            return Verdict::Exempt;
        }
        let (class, name, qtype) = classify(q, a, model);
        let (prefix, _) = self.prefix_of(addr);
        let mut h = self.hasher.build_hasher();
        h.write_u128(prefix);
        h.write_u8(class.index() as u8 | if v6 { 0x80 } else { 0 });
        h.write_u16(qtype);
        match name {
            KeyName::Name(n) => h.write(n),
            KeyName::Wildcard(n) => {
                h.write(b"\x01*");
                h.write(n);
            }
            KeyName::Nothing => {}
        }
        let hash = h.finish();
        let now_us = u64::try_from(now.saturating_duration_since(self.base).as_micros())
            .unwrap_or(u64::MAX)
            & TIME_MASK;
        if self.take(hash, now_us) {
            return Verdict::Pass;
        }
        let action = if self.log_only {
            RrlAction::LogOnly
        } else {
            let n = LIMITED.with(|c| {
                let n = c.get().wrapping_add(1);
                c.set(n);
                n
            });
            if self.slip > 0 && n.is_multiple_of(self.slip) {
                RrlAction::Slipped
            } else {
                RrlAction::Dropped
            }
        };
        Verdict::Limited(class, action)
    }

    /// One token from the bucket of `hash` at `now_us` (GCRA): true when within the rate.
    fn take(&self, hash: u64, now_us: u64) -> bool {
        let slot = &self.table[(hash as usize) & (SLOTS - 1)];
        // Never 0, so an empty slot matches no key.
        let tag = (hash >> TIME_BITS) | 1;
        loop {
            let old = slot.load(Relaxed);
            let tat = if old >> TIME_BITS == tag {
                let ahead = wrapping_ahead(old & TIME_MASK, now_us);
                // Behind now: the bucket is full again. Further ahead than any bucket can
                // be: a stale entry from before the clock wrapped; start afresh.
                if ahead <= 0 || ahead as u64 > TAU_US {
                    now_us
                } else {
                    old & TIME_MASK
                }
            } else {
                now_us
            };
            let ahead = wrapping_ahead(tat, now_us) as u64 + self.emission_us;
            if ahead > TAU_US {
                return false;
            }
            let new = (tag << TIME_BITS) | ((tat + self.emission_us) & TIME_MASK);
            if slot
                .compare_exchange_weak(old, new, Relaxed, Relaxed)
                .is_ok()
            {
                return true;
            }
        }
    }
}

/// `a - b` in the 44-bit wrapping clock, as a signed number.
fn wrapping_ahead(a: u64, b: u64) -> i64 {
    let d = a.wrapping_sub(b) & TIME_MASK;
    if d >= 1 << (TIME_BITS - 1) {
        d as i64 - (1i64 << TIME_BITS)
    } else {
        d as i64
    }
}

/// The class of a response and the name and type parts of its bucket key.
fn classify<'q>(q: &'q Query, a: &Answered, model: &'q Model) -> (RrlClass, KeyName<'q>, u16) {
    let suffix = |label: u8| {
        let at = q.labels[usize::from(label).min(q.nlabels)] as usize;
        &q.qname[at.min(q.qname_len)..q.qname_len]
    };
    match a.kind {
        Kind::Answer => (RrlClass::Answer, KeyName::Name(q.name()), q.qtype),
        Kind::Wildcard { encloser } => (
            RrlClass::Answer,
            KeyName::Wildcard(suffix(encloser)),
            q.qtype,
        ),
        Kind::Negative => {
            let zone = a
                .zone
                .and_then(|z| model.zones.get(z as usize))
                .map_or(q.name(), |z| &z.apex[..]);
            (RrlClass::Negative, KeyName::Name(zone), 0)
        }
        Kind::Referral { cut } => (RrlClass::Referral, KeyName::Name(suffix(cut)), 0),
        Kind::Error => (RrlClass::Error, KeyName::Nothing, 0),
    }
}

/// The name of a query in text, for the throttled log line (allocates: cold path only).
pub(crate) fn key_text(q: &Query, a: &Answered, model: &Model) -> (RrlClass, String) {
    let (class, name, _) = classify(q, a, model);
    let text = match name {
        KeyName::Name(n) => wire_to_text(n),
        KeyName::Wildcard(n) => format!("*.{}", wire_to_text(n)).replace("*..", "*."),
        KeyName::Nothing => "-".to_string(),
    };
    (class, text)
}

fn wire_to_text(n: &[u8]) -> String {
    let mut s = String::new();
    let mut at = 0;
    while let Some(&len) = n.get(at) {
        if len == 0 {
            break;
        }
        let label = n.get(at + 1..at + 1 + len as usize).unwrap_or(&[]);
        for &b in label {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                s.push(b as char);
            } else {
                s.push_str(&format!("\\{b:03}"));
            }
        }
        s.push('.');
        at += 1 + len as usize;
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrl(rate: u32, slip: u32) -> Rrl {
        Rrl::new(
            &RrlConfig {
                rate,
                slip,
                exempt: vec![],
                ..RrlConfig::default()
            },
            tokio::time::Instant::now().into_std(),
        )
        .expect("on")
    }

    #[test]
    fn bucket_allows_a_second_of_burst_then_the_rate() {
        let r = rrl(100, 2);
        let t = 5_000_000u64;
        let allowed = (0..1000).filter(|_| r.take(42, t)).count();
        assert_eq!(allowed, 100, "one second's worth at once");
        // 10 ms later: one more token (100/s).
        assert!(r.take(42, t + 10_000));
        assert!(!r.take(42, t + 10_000));
        // Another key is independent.
        assert!(r.take(43 | (7 << TIME_BITS), t));
        // Over 3 s at full pressure: 100 per second after the burst.
        let mut n = 0;
        for ms in 0..3000u64 {
            for _ in 0..20 {
                n += usize::from(r.take(42, t + 10_000 + ms * 1000));
            }
        }
        assert!((299..=301).contains(&n), "{n}");
    }

    #[test]
    fn clock_wrap_and_stale_entries_start_afresh() {
        let r = rrl(1, 0);
        assert!(r.take(9, TIME_MASK - 10));
        assert!(!r.take(9, TIME_MASK - 5));
        // Time wrapped: 2 s later in wrapping arithmetic.
        assert!(r.take(9, 2_000_000));
        // A far-future entry (from before a wrap) does not block forever.
        let slot = &r.table[9 & (SLOTS - 1)];
        slot.store((1 << TIME_BITS) | 1_000_000_000, Relaxed);
        assert!(r.take(9, 5));
    }

    #[test]
    fn text_of_names() {
        assert_eq!(
            wire_to_text(b"\x03www\x07example\x03com\x00"),
            "www.example.com."
        );
        assert_eq!(wire_to_text(b"\x00"), ".");
        assert_eq!(wire_to_text(b"\x03a.b\x00"), "a\\046b.");
    }
}
