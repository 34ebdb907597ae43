//! The pool policies: each one puts a pool's usable candidates in preference order.
//!
//! `select` builds the candidate list (members that are usable for the asked family, with
//! their slow-start ramp), then calls one of these functions through `order`. They are pure
//! over their inputs: the candidates, the model, the snapshot, the client and a per-query
//! random stream; the only output besides the order is the new `latency` leader, which the
//! caller stores. Only the first `want` positions of the order are meaningful.
//!
//! Slow start (ramp `f` in 0..1, "the datacenter gets that fraction of the traffic it would
//! otherwise get"):
//! - share-based policies (`weighted`, `random`, `load`, `hash`): the ramping member's share
//!   `s` becomes `f*s`; the removed `(1-f)*s` goes to the fully ramped members in proportion
//!   to their shares (plain rescaling when none is fully ramped). See `apply_ramp`.
//! - `round-robin`: when the rotation lands on a ramping member it is kept with probability
//!   `f`, otherwise a fully ramped member is picked uniformly at random.
//! - ordered policies (`failover`, `nearest`, `latency`): walking the preference order, a
//!   ramping member is taken with probability `f`, otherwise the walk goes on to the next
//!   choice; if every member is ramping and none is taken, the first one is.
//! - `all` answers every usable member, ramping or not.
//!
//! Weights: `weighted` and `hash` use the member weight (members of weight 0 are never picked
//! while another has weight, and come last in pool order); `random` and `load` ignore it.

use std::net::IpAddr;

use crate::health::Snapshot;
use crate::mix::{GOLDEN, mix64, unit_f64};
use crate::model::{Datacenter, DatacenterId, LatencySource, LatencyView, Member, PolicyKind};

/// A usable member of the pool being decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cand {
    /// Index in `Pool::members`.
    pub member: u16,
    /// The member's datacenter.
    pub dc: DatacenterId,
    /// Slow-start factor 0..1 (1 = fully ramped).
    pub ramp: f64,
    /// Policy scratch: the distance, latency, share or hash score the order came from.
    pub key: f64,
}

/// Everything a policy may read.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// The pool's members, in pool order (`Cand::member` indexes it).
    pub members: &'a [Member],
    /// The model's datacenters, indexed by `DatacenterId`.
    pub dcs: &'a [Datacenter],
    /// The health snapshot of the same generation as the model.
    pub snap: &'a Snapshot,
    /// Client coordinates, if the GeoIP lookup found any.
    pub coords: Option<(f64, f64)>,
    /// Client address (already canonical: IPv4-mapped IPv6 is IPv4).
    pub addr: IpAddr,
    /// Rotation counter for `round-robin` (`QueryInput::rotation`).
    pub rotation: u64,
    /// The latency map's entries for this client (`LatencyView::NONE` without a map; only
    /// `latency` reads it).
    pub latency: LatencyView<'a>,
}

/// Per-query random stream: splitmix64 seeded by `QueryInput::random`, so a test with a fixed
/// seed sees a fixed decision.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A stream seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }
}

/// Puts `cands` in `kind`'s preference order (first `want` positions). Returns the new
/// `latency` leader (None for other policies).
pub(crate) fn order(
    kind: &PolicyKind,
    ctx: &Ctx<'_>,
    cands: &mut [Cand],
    want: usize,
    prev_leader: Option<DatacenterId>,
    rng: &mut Rng,
) -> Option<DatacenterId> {
    if cands.is_empty() {
        return None;
    }
    let want = want.min(cands.len());
    match kind {
        PolicyKind::Failover | PolicyKind::All => {
            if matches!(kind, PolicyKind::Failover) {
                ramp_walk(cands, rng);
            }
            None
        }
        PolicyKind::Nearest => {
            nearest(ctx, cands);
            ramp_walk(cands, rng);
            None
        }
        PolicyKind::Latency { margin_ms } => {
            let leader = latency(ctx, cands, prev_leader, *margin_ms);
            ramp_walk(cands, rng);
            leader
        }
        PolicyKind::Load { max_load } => {
            load_shares(ctx, cands, *max_load);
            apply_ramp(cands);
            sample(cands, want, rng);
            None
        }
        PolicyKind::Weighted => {
            for c in cands.iter_mut() {
                c.key = f64::from(ctx.members[c.member as usize].weight);
            }
            apply_ramp(cands);
            sample(cands, want, rng);
            None
        }
        PolicyKind::Random => {
            for c in cands.iter_mut() {
                c.key = 1.0;
            }
            apply_ramp(cands);
            sample(cands, want, rng);
            None
        }
        PolicyKind::RoundRobin => {
            round_robin(ctx.rotation, cands, rng);
            None
        }
        PolicyKind::Hash {
            v4_prefix,
            v6_prefix,
        } => {
            hash(ctx, cands, want, *v4_prefix, *v6_prefix);
            None
        }
    }
}

/// Great-circle distance in km (haversine, mean Earth radius).
pub fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    const R: f64 = 6371.0088;
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let dlat = lat2 - lat1;
    let dlon = lon2 - lon1;
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * R * h.sqrt().min(1.0).asin()
}

/// `nearest`: by distance minus bias. Members without coordinates sort last; without client
/// coordinates the pool order stands (keys are NaN then, and the sort is stable).
pub(crate) fn nearest(ctx: &Ctx<'_>, cands: &mut [Cand]) {
    let Some(client) = ctx.coords else {
        for c in cands.iter_mut() {
            c.key = f64::NAN;
        }
        return;
    };
    for c in cands.iter_mut() {
        let m = &ctx.members[c.member as usize];
        c.key = match ctx.dcs.get(c.dc.0 as usize).and_then(|d| d.coords) {
            Some(dc) => haversine_km(client, dc) - m.bias_km,
            None => f64::INFINITY,
        };
    }
    cands.sort_by(|a, b| a.key.total_cmp(&b.key));
}

/// The latency `latency` ranks a candidate by, and where it comes from: the latency map's
/// most specific entry for the client, else the probe EWMA.
pub(crate) fn latency_of(ctx: &Ctx<'_>, dc: DatacenterId) -> (f64, LatencySource) {
    if let Some((ms, level)) = ctx.latency.ms(dc) {
        return (ms, LatencySource::Map(level));
    }
    match ctx.snap.get(dc.0).latency_ms {
        Some(ms) => (ms, LatencySource::Probe),
        None => (f64::INFINITY, LatencySource::Unknown),
    }
}

/// `latency`: ascending latency (`latency_of`: the map's value for the client, else the
/// probe EWMA), unknown last; the previous leader stays first unless the fastest beats it by
/// more than `margin_ms`. Returns the leader.
pub fn latency(
    ctx: &Ctx<'_>,
    cands: &mut [Cand],
    prev: Option<DatacenterId>,
    margin_ms: f64,
) -> Option<DatacenterId> {
    for c in cands.iter_mut() {
        c.key = latency_of(ctx, c.dc).0;
    }
    cands.sort_by(|a, b| a.key.total_cmp(&b.key));
    let best = cands[0];
    if let Some(pos) = prev.and_then(|p| cands.iter().position(|c| c.dc == p)) {
        let incumbent = cands[pos].key;
        // Switch only for a gain above the margin; an incumbent whose latency became
        // unknown loses to any known one (INFINITY - x > margin).
        if incumbent.is_finite() && incumbent - best.key <= margin_ms {
            cands[..=pos].rotate_right(1);
        }
    }
    Some(cands[0].dc)
}

/// `load` shares, written to `key` (they sum to 1 unless the pool has no capacity at all).
///
/// With capacity `c`, utilisation `l` (unknown = the mean of the known ones in the pool, or 0)
/// and threshold `m = max_load`:
/// 1. base share `b_i = s_i / Σs` with spare capacity `s_i = c_i * (1 - l_i)` (clamped at 0;
///    if every `s_i` is 0, `b_i = c_i / Σc`);
/// 2. members with `l_j > m` are overloaded with excess `e_j = c_j * (l_j - m)`; the others
///    have headroom `h_i = c_i * (m - l_i)`. With `E = Σe`, `H = Σh`, the overloaded members
///    keep the fraction `k = max(0, 1 - H/E)` of their base share: nothing when the others
///    can absorb the whole excess, and only what cannot be placed otherwise;
/// 3. the share they give up, `(1-k) * Σ_overloaded b_j`, is spread over the others in
///    proportion to their headroom `h_i` (never all to one neighbour unless it is the only
///    one with headroom).
pub fn load_shares(ctx: &Ctx<'_>, cands: &mut [Cand], max_load: f64) {
    let (mut known, mut n_known) = (0.0, 0u32);
    for c in cands.iter() {
        if let Some(l) = ctx.snap.get(c.dc.0).load {
            known += l.clamp(0.0, 1.0);
            n_known += 1;
        }
    }
    let default_load = if n_known > 0 {
        known / f64::from(n_known)
    } else {
        0.0
    };
    let cap = |c: &Cand| {
        ctx.dcs
            .get(c.dc.0 as usize)
            .map_or(0.0, |d| d.capacity.max(0.0))
    };
    let util = |c: &Cand| {
        ctx.snap
            .get(c.dc.0)
            .load
            .map_or(default_load, |l| l.clamp(0.0, 1.0))
    };

    let spare_sum: f64 = cands.iter().map(|c| cap(c) * (1.0 - util(c))).sum();
    let cap_sum: f64 = cands.iter().map(cap).sum();
    let (mut excess, mut headroom, mut over_share) = (0.0, 0.0, 0.0);
    for c in cands.iter_mut() {
        let (cc, l) = (cap(c), util(c));
        c.key = if spare_sum > 0.0 {
            cc * (1.0 - l) / spare_sum
        } else if cap_sum > 0.0 {
            cc / cap_sum
        } else {
            0.0
        };
        if l > max_load {
            excess += cc * (l - max_load);
            over_share += c.key;
        } else {
            headroom += cc * (max_load - l);
        }
    }
    if excess <= 0.0 || headroom <= 0.0 {
        return;
    }
    let keep = (1.0 - headroom / excess).max(0.0);
    let moved = (1.0 - keep) * over_share;
    for c in cands.iter_mut() {
        let (cc, l) = (cap(c), util(c));
        if l > max_load {
            c.key *= keep;
        } else {
            c.key += moved * cc * (max_load - l) / headroom;
        }
    }
}

/// Slow start for share-based policies: shares in `key` -> ramped shares in `key`.
pub(crate) fn apply_ramp(cands: &mut [Cand]) {
    if cands.iter().all(|c| c.ramp >= 1.0) {
        return;
    }
    let total: f64 = cands.iter().map(|c| c.key).sum();
    if total <= 0.0 {
        return;
    }
    let (mut deficit, mut full) = (0.0, 0.0);
    for c in cands.iter() {
        let s = c.key / total;
        if c.ramp >= 1.0 {
            full += s;
        } else {
            deficit += (1.0 - c.ramp.max(0.0)) * s;
        }
    }
    for c in cands.iter_mut() {
        let s = c.key / total;
        c.key = if c.ramp >= 1.0 {
            s + deficit * s / full
        } else {
            // With no fully ramped member, `full` is 0 and this is plain rescaling.
            c.ramp.max(0.0) * s
        };
    }
}

/// Weighted sampling without replacement by `key`, into the first `want` positions; members
/// with no share left follow in pool order.
pub(crate) fn sample(cands: &mut [Cand], want: usize, rng: &mut Rng) {
    for k in 0..want.min(cands.len()) {
        let total: f64 = cands[k..].iter().map(|c| c.key.max(0.0)).sum();
        if total <= 0.0 {
            return;
        }
        let mut r = rng.next_f64() * total;
        let mut pick = k;
        for (j, c) in cands.iter().enumerate().skip(k) {
            let w = c.key.max(0.0);
            if w > 0.0 {
                pick = j;
                if r < w {
                    break;
                }
                r -= w;
            }
        }
        cands[k..=pick].rotate_right(1);
    }
}

/// Slow start for ordered policies (see the module docs).
pub(crate) fn ramp_walk(cands: &mut [Cand], rng: &mut Rng) {
    if cands.iter().all(|c| c.ramp >= 1.0) {
        return;
    }
    let pick = cands
        .iter()
        .position(|c| c.ramp >= 1.0 || rng.next_f64() < c.ramp)
        .unwrap_or(0);
    cands[..=pick].rotate_right(1);
}

/// `round-robin`: start at `rotation % n` and continue in pool order.
pub(crate) fn round_robin(rotation: u64, cands: &mut [Cand], rng: &mut Rng) {
    let n = cands.len();
    cands.rotate_left((rotation % n as u64) as usize);
    let first = cands[0];
    if first.ramp >= 1.0 || rng.next_f64() < first.ramp {
        return;
    }
    let full = cands.iter().filter(|c| c.ramp >= 1.0).count();
    if full == 0 {
        return;
    }
    let nth = (rng.next_u64() % full as u64) as usize;
    if let Some(pos) = cands
        .iter()
        .enumerate()
        .filter(|(_, c)| c.ramp >= 1.0)
        .nth(nth)
        .map(|(i, _)| i)
    {
        cands[..=pos].rotate_right(1);
    }
}

/// The hash key of a client: its address masked to the hash granularity, IPv4 in its
/// IPv4-mapped form so the two families never share a key.
pub(crate) fn subnet_key(addr: IpAddr, v4_prefix: u8, v6_prefix: u8) -> u128 {
    match crate::net::masked(addr, if addr.is_ipv4() { v4_prefix } else { v6_prefix }) {
        IpAddr::V4(a) => u128::from(u32::from(a)) | (0xffff_u128 << 32),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// FNV-1a of a datacenter name: its identity for hashing, stable across restarts and across
/// reloads that renumber datacenters.
pub(crate) fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Rendezvous (highest random weight) score of `key` for a datacenter, uniform in (0, 1).
pub(crate) fn hrw_uniform(key: u128, dc_hash: u64) -> f64 {
    let h =
        mix64(mix64((key as u64) ^ dc_hash) ^ mix64((key >> 64) as u64 ^ dc_hash.rotate_left(32)));
    ((h >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// `hash`: weighted rendezvous hashing of the client subnet. Each candidate scores
/// `-ln(u) / w` (u from [`hrw_uniform`], w the member weight after slow start); the lowest
/// score wins. Removing a member only moves the keys it was winning; a member's chance is
/// `w / Σw`.
pub(crate) fn hash(ctx: &Ctx<'_>, cands: &mut [Cand], want: usize, v4_prefix: u8, v6_prefix: u8) {
    for c in cands.iter_mut() {
        c.key = f64::from(ctx.members[c.member as usize].weight);
    }
    apply_ramp(cands);
    let key = subnet_key(ctx.addr, v4_prefix, v6_prefix);
    for c in cands.iter_mut() {
        let name = ctx.dcs.get(c.dc.0 as usize).map_or("", |d| &d.name);
        let u = hrw_uniform(key, name_hash(name));
        c.key = if c.key > 0.0 {
            -u.ln() / c.key
        } else {
            f64::INFINITY
        };
    }
    // Partial selection sort: `want` is small.
    for k in 0..want.min(cands.len()) {
        let mut best = k;
        for j in k + 1..cands.len() {
            if cands[j].key < cands[best].key {
                best = j;
            }
        }
        cands[k..=best].rotate_right(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(keys: &[f64], ramps: &[f64]) -> Vec<Cand> {
        keys.iter()
            .zip(ramps)
            .enumerate()
            .map(|(i, (k, r))| Cand {
                member: i as u16,
                dc: DatacenterId(i as u32),
                ramp: *r,
                key: *k,
            })
            .collect()
    }

    #[test]
    fn hash_is_stable_across_builds() {
        // Pinned: a change here remaps every client of every `hash` pool on upgrade.
        let key = subnet_key("198.51.100.77".parse().unwrap(), 24, 56);
        assert_eq!(key, subnet_key("198.51.100.0".parse().unwrap(), 24, 56));
        assert_eq!(name_hash("fra"), 15_892_507_201_482_971_088);
        let u = hrw_uniform(key, name_hash("fra"));
        assert_eq!(u.to_bits(), 4_606_851_195_666_237_096);
    }

    #[test]
    fn subnet_key_masks_and_separates_families() {
        let a = subnet_key("10.1.2.3".parse().unwrap(), 24, 56);
        assert_eq!(a, subnet_key("10.1.2.200".parse().unwrap(), 24, 56));
        assert_ne!(a, subnet_key("10.1.3.3".parse().unwrap(), 24, 56));
        assert_eq!(
            subnet_key("10.1.2.3".parse().unwrap(), 0, 0),
            subnet_key("1.1.1.1".parse().unwrap(), 0, 0)
        );
        let b = subnet_key("2001:db8:0:ab00::1".parse().unwrap(), 24, 56);
        assert_eq!(
            b,
            subnet_key("2001:db8:0:abff:1::".parse().unwrap(), 24, 56)
        );
        assert_ne!(b, subnet_key("2001:db8:0:ac00::".parse().unwrap(), 24, 56));
        assert_ne!(
            subnet_key("0.0.0.0".parse().unwrap(), 24, 56),
            subnet_key("::".parse().unwrap(), 24, 56)
        );
    }

    #[test]
    fn ramp_gives_the_fraction_and_spreads_the_rest() {
        // Shares 1:1:2; member 0 at 50%: it gets 0.125, the full ones share 0.125 by 1:2.
        let mut c = cands(&[1.0, 1.0, 2.0], &[0.5, 1.0, 1.0]);
        apply_ramp(&mut c);
        let want = [0.125, 0.25 + 0.125 / 3.0, 0.5 + 0.25 / 3.0];
        for (x, w) in c.iter().zip(want) {
            assert!((x.key - w).abs() < 1e-12, "{c:?}");
        }
        // Nobody fully ramped: plain rescaling.
        let mut c = cands(&[1.0, 1.0], &[0.2, 0.6]);
        apply_ramp(&mut c);
        assert!((c[0].key / c[1].key - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn sample_without_replacement_keeps_zero_weights_last() {
        let mut c = cands(&[0.0, 1.0, 0.0, 1.0], &[1.0; 4]);
        let mut rng = Rng::new(7);
        sample(&mut c, 4, &mut rng);
        let order: Vec<u32> = c.iter().map(|x| x.dc.0).collect();
        assert!(
            order[..2].contains(&1) && order[..2].contains(&3),
            "{order:?}"
        );
        assert_eq!(&order[2..], [0, 2]);
    }

    #[test]
    fn ramp_walk_takes_the_leader_with_its_factor() {
        let mut hits = 0;
        for seed in 0..10_000 {
            let mut c = cands(&[0.0, 0.0], &[0.25, 1.0]);
            ramp_walk(&mut c, &mut Rng::new(seed));
            hits += usize::from(c[0].dc.0 == 0);
        }
        assert!((2300..=2700).contains(&hits), "{hits}");
        // Everyone ramping and nobody taken: the first one still answers.
        let mut c = cands(&[0.0, 0.0], &[0.0, 0.0]);
        ramp_walk(&mut c, &mut Rng::new(1));
        assert_eq!(c[0].dc.0, 0);
    }

    #[test]
    fn haversine_basics() {
        assert_eq!(haversine_km((10.0, 20.0), (10.0, 20.0)), 0.0);
        let half = haversine_km((0.0, 0.0), (0.0, 180.0));
        assert!((half - std::f64::consts::PI * 6371.0088).abs() < 1e-6);
    }
}
