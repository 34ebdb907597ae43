//! ns per GSLB decision (`policy::select`) for each policy; the GeoIP lookup is not included
//! (the client's location is given).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use gslbd::geo::{GeoCode, Location};
use gslbd::health::Snapshot;
use gslbd::model::{
    Datacenter, DatacenterId, GslbName, MatchItem, Member, PolicyKind, Pool, PoolId, Rule,
};
use gslbd::net::Family;
use gslbd::policy::{Client, NoTrace, QueryInput, select};

fn dcs() -> Vec<Datacenter> {
    [
        ("fra", 50.11, 8.68),
        ("ams", 52.37, 4.90),
        ("iad", 39.04, -77.49),
        ("sin", 1.35, 103.82),
        ("sjc", 37.34, -121.89),
    ]
    .iter()
    .enumerate()
    .map(|(i, (name, lat, lon))| Datacenter {
        name: (*name).into(),
        v4: vec![Ipv4Addr::new(192, 0, 2, 10 + i as u8)],
        v6: vec![Ipv6Addr::new(0x2001, 0xdb8, i as u16, 0, 0, 0, 0, 1)],
        coords: Some((*lat, *lon)),
        capacity: 100.0,
        weight: 1,
        target: None,
    })
    .collect()
}

fn bench(c: &mut Criterion) {
    let d = dcs();
    let mut snap = Snapshot::all_up(d.len());
    for (i, s) in snap.dcs.iter_mut().enumerate() {
        s.load = Some(0.2 + 0.15 * i as f64);
        s.latency_ms = Some(10.0 + 7.0 * i as f64);
    }
    let client = Client {
        addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        source_prefix: 24,
        location: Some(Location {
            continent: Some(*b"EU"),
            country: Some(*b"FR"),
            subdivision: None,
            coords: Some((48.86, 2.35)),
            coords_from_centroid: false,
            prefix_len: 20,
            db: 0,
        }),
    };
    let policies = [
        PolicyKind::Failover,
        PolicyKind::Nearest,
        PolicyKind::Latency { margin_ms: 5.0 },
        PolicyKind::Load { max_load: 0.8 },
        PolicyKind::Weighted,
        PolicyKind::RoundRobin,
        PolicyKind::Random,
        PolicyKind::HASH,
        PolicyKind::All,
    ];
    let mut group = c.benchmark_group("select");
    for policy in policies {
        let members = (0..d.len() as u32)
            .map(|i| Member::of(DatacenterId(i), &d))
            .collect();
        let mut name = GslbName::single(60, Pool::new("p", members, policy.clone()));
        // Two rules in front, as a typical geo name has.
        name.pools.push(name.pools[0].clone());
        name.rules = vec![
            Rule {
                matches: vec![
                    MatchItem::Geo(GeoCode::Continent(*b"AS")),
                    MatchItem::Geo(GeoCode::Continent(*b"OC")),
                ],
                pool: PoolId(1),
            },
            Rule {
                matches: vec![MatchItem::Geo(GeoCode::Continent(*b"EU"))],
                pool: PoolId(0),
            },
            Rule {
                matches: vec![],
                pool: PoolId(1),
            },
        ];
        let mut n = 0u64;
        group.bench_function(policy.name(), |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                let input = QueryInput {
                    random: n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    rotation: n,
                };
                black_box(select(
                    &name,
                    &d,
                    &snap,
                    black_box(&client),
                    Family::V4,
                    &input,
                    &mut NoTrace,
                ))
            })
        });
    }
    group.finish();

    // The GeoIP lookup, counted apart from the decision: the shipped country database, IPv4
    // addresses spread over the whole space.
    if let Ok(geo) = gslbd::geo::GeoDb::open(&gslbd::geo::default_paths()) {
        let mut x = 0x1234_5678u32;
        c.bench_function("geo lookup (shipped db, v4)", |b| {
            b.iter(|| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                black_box(geo.lookup(IpAddr::V4(Ipv4Addr::from(x))))
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
