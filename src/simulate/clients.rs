//! The clients and the resolvers in front of them.
//!
//! ```text
//! population { region | subnets, clients, rate, names, qtypes, resolvers }
//!    region: networks of the GeoIP files in that region, weighted by size; each drawn client
//!            subnet is confirmed with the same lookup the server does (first file that knows
//!            the address wins)
//!    subnets: networks of these prefixes, weighted by size
//!    resolvers: client i -> resolver i mod count; a share clamps TTLs to a minimum, a share
//!               ignores them; each sends ECS (source prefix) or not
//! ```
//!
//! The resolver cache follows RFC 7871: an answer with scope /S is stored for the client's
//! /S network and serves every client of the resolver inside it (scope 0: everyone), until
//! its TTL (as the resolver treats it) runs out.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use super::scenario::{Origin, Population};
use super::{Ns, Rng, ns};
use crate::geo::{GeoCode, GeoDb, Location};
use crate::net;

/// One client subnet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Client {
    /// A host address inside the subnet.
    pub(crate) addr: IpAddr,
    /// Index of its resolver.
    pub(crate) resolver: u32,
}

/// How a resolver treats the TTL of an answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Ttl {
    /// As given.
    Obey,
    /// Never below this many seconds.
    Min(u32),
    /// Kept this long whatever the TTL.
    Ignore(Ns),
}

/// One resolver.
#[derive(Clone, Debug)]
pub(crate) struct Resolver {
    /// Where it sends queries from.
    pub(crate) addr: IpAddr,
    /// ECS source prefix it sends, `None` = no ECS.
    pub(crate) ecs: Option<u8>,
    pub(crate) cache: bool,
    pub(crate) ttl: Ttl,
}

impl Resolver {
    /// How long this resolver keeps an answer of `ttl` seconds (0 = not at all).
    pub(crate) fn lifetime(&self, ttl: u32) -> Ns {
        if !self.cache {
            return 0;
        }
        match self.ttl {
            Ttl::Obey => ns(std::time::Duration::from_secs(u64::from(ttl))),
            Ttl::Min(m) => ns(std::time::Duration::from_secs(u64::from(ttl.max(m)))),
            Ttl::Ignore(h) => h,
        }
    }
}

/// A cached answer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) answer: u32,
    pub(crate) expiry: Ns,
}

/// Every resolver's cache: (resolver, question, scope, the client's network at that scope)
/// -> answer, with the scopes each (resolver, question) holds, longest first.
#[derive(Default)]
pub(crate) struct Caches {
    entries: FxHashMap<(u32, u32, u8, u128), Entry>,
    scopes: FxHashMap<(u32, u32), Vec<u8>>,
}

impl Caches {
    /// The live entry of `resolver` for `question` that covers `client`.
    pub(crate) fn get(
        &self,
        resolver: u32,
        question: u32,
        client: IpAddr,
        now: Ns,
    ) -> Option<Entry> {
        let scopes = self.scopes.get(&(resolver, question))?;
        let (bits, _) = net::bits(client);
        scopes.iter().find_map(|&s| {
            self.entries
                .get(&(resolver, question, s, bits & net::mask(s)))
                .filter(|e| e.expiry > now)
                .copied()
        })
    }

    /// Stores an answer of scope `scope` for `client`'s network.
    pub(crate) fn put(
        &mut self,
        resolver: u32,
        question: u32,
        client: IpAddr,
        scope: u8,
        e: Entry,
    ) {
        // IPv4 lives in the top 32 bits of the `net::bits` form: a scope masks either family.
        let (bits, len) = net::bits(client);
        let scope = scope.min(len);
        self.entries
            .insert((resolver, question, scope, bits & net::mask(scope)), e);
        let v = self.scopes.entry((resolver, question)).or_default();
        if let Err(i) = v.binary_search_by(|x| scope.cmp(x)) {
            v.insert(i, scope);
        }
    }
}

/// The clients and resolvers of every population, and which population each client is in.
pub(crate) struct World {
    pub(crate) clients: Vec<Client>,
    /// Index of the population of each client.
    pub(crate) population: Vec<u16>,
    pub(crate) resolvers: Vec<Resolver>,
}

/// Networks of one family with their location, walked once per family.
type Networks = Vec<(u128, u8, Location)>;

/// `bits` (as `net::bits` gives them) as an address of the family.
fn addr_of(bits: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(bits.into())
    } else {
        IpAddr::V4(((bits >> 96) as u32).into())
    }
}

/// A random address of the network `base/prefix` (in `net::bits` form).
fn random_in(base: u128, prefix: u8, v6: bool, rng: &mut Rng) -> u128 {
    let family_bits = if v6 { 128 } else { 32 };
    let host_bits = u32::from(family_bits - prefix.min(family_bits));
    let low = if v6 { 0 } else { 96 };
    let r = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
    let host = if host_bits == 0 {
        0
    } else {
        (r & (u128::MAX >> (128 - host_bits))) << low
    };
    // IPv4 lives in the top 32 bits of the `net::bits` form, so its prefix masks as is.
    (base & net::mask(prefix.min(family_bits))) | host
}

/// Picks an index by weight (cumulative weights in `cum`).
fn pick(cum: &[f64], rng: &mut Rng) -> usize {
    let total = cum.last().copied().unwrap_or(0.0);
    let x = rng.unit() * total;
    cum.partition_point(|&c| c <= x)
        .min(cum.len().saturating_sub(1))
}

impl World {
    /// Draws the clients and resolvers of `pops` (errors at the population's key path).
    pub(crate) fn build(
        pops: &[Population],
        geo: &GeoDb,
        seed: u64,
    ) -> Result<World, Vec<(String, String)>> {
        let mut world = World {
            clients: Vec::new(),
            population: Vec::new(),
            resolvers: Vec::new(),
        };
        let mut errors = Vec::new();
        let mut networks: [Option<Networks>; 2] = [None, None];
        for (pi, p) in pops.iter().enumerate() {
            let mut rng = Rng::new(seed, 0x5EED_0000 + pi as u64);
            let v6 = p.v6;
            let cp = p.client_prefix.unwrap_or(if v6 { 56 } else { 24 });
            // Candidate networks (base bits, prefix) with their weight in client subnets.
            let (cands, region): (Vec<(u128, u8)>, Option<GeoCode>) = match &p.origin {
                Origin::Subnets(list) => (
                    list.iter()
                        .map(|s| (net::bits(s.addr).0, s.prefix))
                        .collect(),
                    None,
                ),
                Origin::Region(code) => {
                    let nets = networks[usize::from(v6)].get_or_insert_with(|| {
                        let mut v = Vec::new();
                        geo.networks(v6, |a, prefix, loc| {
                            v.push((net::bits(a).0, prefix, *loc));
                        });
                        v
                    });
                    (
                        nets.iter()
                            .filter(|(_, _, loc)| code.contains(loc))
                            .map(|&(b, pfx, _)| (b, pfx))
                            .collect(),
                        Some(*code),
                    )
                }
            };
            if cands.is_empty() {
                errors.push((
                    crate::walk::join(&p.path, "region"),
                    format!(
                        "the GeoIP data has no network in this region ({} file(s) loaded; a subdivision needs a city database, --geoip)",
                        geo.databases().count()
                    ),
                ));
                continue;
            }
            let mut cum = Vec::with_capacity(cands.len());
            let mut total = 0.0;
            for &(_, pfx) in &cands {
                total += 2f64.powi(i32::from(cp.saturating_sub(pfx)).min(60));
                cum.push(total);
            }
            let first_client = world.clients.len();
            let mut misses = 0u32;
            while (world.clients.len() - first_client) < p.clients as usize {
                let (base, pfx) = cands[pick(&cum, &mut rng)];
                // A client subnet inside the network (or the network itself, if smaller).
                let sub = random_in(base, pfx, v6, &mut rng);
                let sub_prefix = cp.max(pfx);
                let host = random_in(sub, sub_prefix, v6, &mut rng);
                let addr = addr_of(host, v6);
                if let Some(code) = region
                    && !geo.lookup(addr).is_some_and(|l| code.contains(&l))
                {
                    // Another file answers first for this address: not a client of the region.
                    misses += 1;
                    if misses > 100 + 20 * p.clients {
                        errors.push((
                            crate::walk::join(&p.path, "region"),
                            "too few addresses of the GeoIP data resolve to this region".into(),
                        ));
                        break;
                    }
                    continue;
                }
                world.clients.push(Client { addr, resolver: 0 });
                world.population.push(pi as u16);
            }
            // Resolvers: client i of the population -> resolver i mod count.
            let n = world.clients.len() - first_client;
            let count = p.resolvers.count.map_or(n, |c| (c as usize).min(n)).max(1);
            let first_resolver = world.resolvers.len();
            let k_ignore = p
                .resolvers
                .ignore_ttl
                .map_or(0, |r| (r.share * count as f64).round() as usize);
            let k_min = p
                .resolvers
                .min_ttl
                .map_or(0, |r| (r.share * count as f64).round() as usize);
            for r in 0..count {
                let addr = match p.resolvers.subnet {
                    Some(s) => addr_of(
                        random_in(net::bits(s.addr).0, s.prefix, s.addr.is_ipv6(), &mut rng),
                        s.addr.is_ipv6(),
                    ),
                    None => world.clients[first_client + r].addr,
                };
                let ttl = if r < k_ignore {
                    Ttl::Ignore(p.resolvers.ignore_ttl.map_or(0, |x| ns(x.ttl)))
                } else if r < k_ignore + k_min {
                    Ttl::Min(p.resolvers.min_ttl.map_or(0, |x| x.ttl.as_secs() as u32))
                } else {
                    Ttl::Obey
                };
                world.resolvers.push(Resolver {
                    addr,
                    ecs: p
                        .resolvers
                        .ecs
                        .then(|| p.resolvers.ecs_prefix.unwrap_or(cp)),
                    cache: p.resolvers.cache,
                    ttl,
                });
            }
            for i in 0..n {
                world.clients[first_client + i].resolver = (first_resolver + i % count) as u32;
            }
        }
        if errors.is_empty() {
            Ok(world)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_scopes_cover_their_network_only() {
        let mut c = Caches::default();
        let a: IpAddr = "192.0.2.77".parse().unwrap();
        let b: IpAddr = "192.0.2.200".parse().unwrap();
        let far: IpAddr = "198.51.100.1".parse().unwrap();
        c.put(
            0,
            1,
            a,
            24,
            Entry {
                answer: 5,
                expiry: 100,
            },
        );
        assert_eq!(c.get(0, 1, b, 50).map(|e| e.answer), Some(5));
        assert!(c.get(0, 1, far, 50).is_none(), "outside the /24");
        assert!(c.get(0, 1, b, 100).is_none(), "expired");
        assert!(c.get(1, 1, b, 50).is_none(), "another resolver");
        c.put(
            0,
            1,
            far,
            0,
            Entry {
                answer: 6,
                expiry: 200,
            },
        );
        assert_eq!(
            c.get(0, 1, b, 50).map(|e| e.answer),
            Some(5),
            "longest scope first"
        );
        assert_eq!(c.get(0, 1, far, 50).map(|e| e.answer), Some(6));
        assert_eq!(
            c.get(0, 1, b, 150).map(|e| e.answer),
            Some(6),
            "/24 expired, /0 serves"
        );
    }

    #[test]
    fn random_addresses_stay_in_their_network() {
        let mut rng = Rng::new(1, 2);
        let base = net::bits("10.1.0.0".parse().unwrap()).0;
        for _ in 0..100 {
            let a = addr_of(random_in(base, 16, false, &mut rng), false);
            assert_eq!(net::masked(a, 16), "10.1.0.0".parse::<IpAddr>().unwrap());
        }
        let base = net::bits("2001:db8::".parse().unwrap()).0;
        let a = addr_of(random_in(base, 32, true, &mut rng), true);
        assert_eq!(net::masked(a, 32), "2001:db8::".parse::<IpAddr>().unwrap());
    }
}
