//! Per-policy behaviour of `policy::select`, with snapshots set by the test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use gslbd::geo::{GeoCode, Location};
use gslbd::health::{AdminState, DcState, Snapshot};
use gslbd::model::LatencyView;
use gslbd::model::{
    AllDown, Datacenter, DatacenterId, GslbName, MatchItem, Member, PolicyKind, Pool, PoolId, Rule,
};
use gslbd::net::Family;
use gslbd::net::Subnet;
use gslbd::policy::rank::{self, Cand, Ctx};
use gslbd::policy::{AnswerKind, Client, NoTrace, QueryInput, Selection, Source, Trace, select};
use proptest::prelude::*;

/// Test-side splitmix64, independent of the engine's own.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

// (name, lat, lon)
const CITIES: [(&str, f64, f64); 5] = [
    ("fra", 50.11, 8.68),
    ("ams", 52.37, 4.90),
    ("iad", 39.04, -77.49),
    ("sin", 1.35, 103.82),
    ("sjc", 37.34, -121.89),
];
const PARIS: (f64, f64) = (48.86, 2.35);
const TOKYO: (f64, f64) = (35.68, 139.69);
const NEW_YORK: (f64, f64) = (40.71, -74.01);

fn dcs() -> Vec<Datacenter> {
    CITIES
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

fn id(name: &str) -> DatacenterId {
    DatacenterId(CITIES.iter().position(|c| c.0 == name).unwrap() as u32)
}

fn pool(name: &str, members: &[&str], policy: PolicyKind) -> Pool {
    let d = dcs();
    Pool::new(
        name,
        members.iter().map(|m| Member::of(id(m), &d)).collect(),
        policy,
    )
}

fn single(members: &[&str], policy: PolicyKind) -> GslbName {
    GslbName::single(60, pool("p", members, policy))
}

fn up() -> Snapshot {
    Snapshot::all_up(CITIES.len())
}

fn set(snap: &mut Snapshot, dc: &str, f: impl FnOnce(&mut DcState)) {
    f(&mut snap.dcs[id(dc).0 as usize]);
}

fn loc(continent: &[u8; 2], country: &[u8; 2], coords: Option<(f64, f64)>) -> Location {
    Location {
        continent: Some(*continent),
        country: Some(*country),
        subdivision: None,
        coords,
        coords_from_centroid: false,
        prefix_len: 20,
        db: 0,
    }
}

fn client_at(coords: (f64, f64)) -> Client {
    Client {
        addr: "198.51.100.7".parse().unwrap(),
        source_prefix: 24,
        location: Some(loc(b"EU", b"FR", Some(coords))),
    }
}

fn v4client(addr: &str) -> Client {
    Client::new(addr.parse().unwrap())
}

fn run(
    name: &GslbName,
    snap: &Snapshot,
    client: &Client,
    family: Family,
    input: QueryInput,
) -> Selection {
    select(name, &dcs(), snap, client, family, &input, &mut NoTrace)
}

fn first(name: &GslbName, snap: &Snapshot, client: &Client) -> Option<String> {
    let d = dcs();
    let sel = select(
        name,
        &d,
        snap,
        client,
        Family::V4,
        &QueryInput::default(),
        &mut NoTrace,
    );
    sel.datacenters()
        .next()
        .map(|x| d[x.0 as usize].name.to_string())
}

fn names(sel: &Selection) -> Vec<String> {
    let d = dcs();
    sel.datacenters()
        .map(|x| d[x.0 as usize].name.to_string())
        .collect()
}

/// Share of first answers per datacenter over `n` decisions with random inputs.
fn shares(name: &GslbName, snap: &Snapshot, client: &Client, n: u32) -> Vec<f64> {
    let d = dcs();
    let mut rng = SplitMix(42);
    let mut count = vec![0u32; d.len()];
    for i in 0..n {
        let input = QueryInput {
            random: rng.next(),
            rotation: u64::from(i),
        };
        let sel = select(name, &d, snap, client, Family::V4, &input, &mut NoTrace);
        count[sel.datacenters().next().unwrap().0 as usize] += 1;
    }
    count.iter().map(|c| f64::from(*c) / f64::from(n)).collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn failover_order_and_fallback_chain() {
    let c = v4client("203.0.113.1");
    let name = single(&["fra", "ams", "iad"], PolicyKind::Failover);
    let mut s = up();
    assert_eq!(first(&name, &s, &c).as_deref(), Some("fra"));
    set(&mut s, "fra", |d| d.healthy = false);
    assert_eq!(first(&name, &s, &c).as_deref(), Some("ams"));
    set(&mut s, "ams", |d| d.admin = AdminState::Down);
    assert_eq!(first(&name, &s, &c).as_deref(), Some("iad"));

    // europe -> world -> last
    let mut name = GslbName::single(60, pool("europe", &["fra", "ams"], PolicyKind::Failover));
    name.pools
        .push(pool("world", &["iad", "sjc"], PolicyKind::Failover));
    name.pools
        .push(pool("last", &["sin"], PolicyKind::Failover));
    name.pools[0].fallback = Some(PoolId(1));
    name.pools[1].fallback = Some(PoolId(2));
    let mut s = up();
    set(&mut s, "fra", |d| d.healthy = false);
    set(&mut s, "ams", |d| d.healthy = false);
    let sel = run(&name, &s, &c, Family::V4, QueryInput::default());
    assert_eq!(names(&sel), ["iad"]);
    assert_eq!(sel.pool, Some(PoolId(1)));
    set(&mut s, "iad", |d| d.healthy = false);
    set(&mut s, "sjc", |d| d.admin = AdminState::Drain);
    let sel = run(&name, &s, &c, Family::V4, QueryInput::default());
    assert_eq!(
        (names(&sel), sel.pool, sel.source),
        (vec!["sin".to_string()], Some(PoolId(2)), Source::Pool)
    );
}

#[test]
fn fallback_cycle_ends_in_all_down() {
    let mut name = GslbName::single(60, pool("a", &["fra"], PolicyKind::Failover));
    name.pools.push(pool("b", &["ams"], PolicyKind::Failover));
    name.pools[0].fallback = Some(PoolId(1));
    name.pools[1].fallback = Some(PoolId(0));
    name.all_down = AllDown::ServFail;
    let mut s = up();
    set(&mut s, "fra", |d| d.healthy = false);
    set(&mut s, "ams", |d| d.healthy = false);
    let d = dcs();
    let mut t = Trace::new(&name, &d);
    let sel = select(
        &name,
        &d,
        &s,
        &v4client("203.0.113.1"),
        Family::V4,
        &QueryInput::default(),
        &mut t,
    );
    assert_eq!(sel.outcome, AnswerKind::ServFail);
    assert_eq!(t.cycle_at.as_deref(), Some("a"));
}

#[test]
fn nearest_with_and_without_bias() {
    let name = single(&["fra", "ams", "iad", "sin", "sjc"], PolicyKind::Nearest);
    let s = up();
    // Paris: Amsterdam ~430 km, Frankfurt ~480 km.
    assert_eq!(first(&name, &s, &client_at(PARIS)).as_deref(), Some("ams"));
    assert_eq!(first(&name, &s, &client_at(TOKYO)).as_deref(), Some("sin"));
    assert_eq!(
        first(&name, &s, &client_at(NEW_YORK)).as_deref(),
        Some("iad")
    );
    let sel = run(
        &name,
        &s,
        &client_at(PARIS),
        Family::V4,
        QueryInput::default(),
    );
    assert_eq!(sel.scope, 20, "nearest depends on the location's network");

    let mut biased = name.clone();
    biased.pools[0].members[0].bias_km = 100.0; // fra pulls
    assert_eq!(
        first(&biased, &s, &client_at(PARIS)).as_deref(),
        Some("fra")
    );
    biased.pools[0].members[0].bias_km = 0.0;
    biased.pools[0].members[1].bias_km = -100.0; // ams pushes
    assert_eq!(
        first(&biased, &s, &client_at(PARIS)).as_deref(),
        Some("fra")
    );

    // No coordinates: pool order.
    let mut c = client_at(PARIS);
    c.location = None;
    assert_eq!(first(&name, &s, &c).as_deref(), Some("fra"));
    let mut s2 = up();
    set(&mut s2, "ams", |d| d.healthy = false);
    assert_eq!(first(&name, &s2, &client_at(PARIS)).as_deref(), Some("fra"));
}

#[test]
fn haversine_real_distances() {
    let km = rank::haversine_km(PARIS, (CITIES[0].1, CITIES[0].2));
    assert!(close(km, 479.0, 10.0), "Paris-Frankfurt {km}");
    let km = rank::haversine_km(NEW_YORK, TOKYO);
    assert!(close(km, 10_850.0, 50.0), "New York-Tokyo {km}");
}

#[test]
fn latency_hysteresis() {
    let name = single(
        &["fra", "ams", "iad"],
        PolicyKind::Latency { margin_ms: 10.0 },
    );
    let c = v4client("203.0.113.1");
    let mut s = up();
    set(&mut s, "fra", |d| d.latency_ms = Some(20.0));
    set(&mut s, "ams", |d| d.latency_ms = Some(25.0));
    // iad unknown: last.
    assert_eq!(first(&name, &s, &c).as_deref(), Some("fra"));
    set(&mut s, "ams", |d| d.latency_ms = Some(12.0)); // better by 8 < margin
    assert_eq!(first(&name, &s, &c).as_deref(), Some("fra"));
    set(&mut s, "ams", |d| d.latency_ms = Some(9.5)); // better by 10.5 > margin
    assert_eq!(first(&name, &s, &c).as_deref(), Some("ams"));
    set(&mut s, "fra", |d| d.latency_ms = Some(5.0)); // 4.5 better: ams stays
    assert_eq!(first(&name, &s, &c).as_deref(), Some("ams"));
    assert_eq!(name.pools[0].leader.get(Family::V4), Some(id("ams")));
    set(&mut s, "ams", |d| d.healthy = false);
    assert_eq!(first(&name, &s, &c).as_deref(), Some("fra"));
    // Back up with 9.5 vs fra's 5: fra is now the leader and stays.
    set(&mut s, "ams", |d| d.healthy = true);
    assert_eq!(first(&name, &s, &c).as_deref(), Some("fra"));

    // Pure function: prev leader in, new leader out.
    let d = dcs();
    let mut cands: Vec<Cand> = ["fra", "ams", "iad"]
        .iter()
        .enumerate()
        .map(|(i, n)| Cand {
            member: i as u16,
            dc: id(n),
            ramp: 1.0,
            key: 0.0,
        })
        .collect();
    let ctx = Ctx {
        members: &name.pools[0].members,
        dcs: &d,
        snap: &s,
        coords: None,
        addr: c.addr,
        rotation: 0,
        latency: LatencyView::NONE,
    };
    assert_eq!(
        rank::latency(&ctx, &mut cands, Some(id("ams")), 10.0),
        Some(id("ams"))
    );
    assert_eq!(
        rank::latency(&ctx, &mut cands, Some(id("ams")), 1.0),
        Some(id("fra"))
    );
    assert_eq!(
        cands.last().unwrap().dc,
        id("iad"),
        "unknown latency sorts last"
    );
}

#[test]
fn latency_leader_is_kept_per_family() {
    let mut d = dcs();
    d[id("ams").0 as usize].v6.clear();
    let name = single(&["fra", "ams"], PolicyKind::Latency { margin_ms: 10.0 });
    let c = v4client("203.0.113.1");
    let mut s = up();
    set(&mut s, "fra", |x| x.latency_ms = Some(20.0));
    set(&mut s, "ams", |x| x.latency_ms = Some(15.0));
    let q = |s: &Snapshot, f: Family| {
        let sel = select(&name, &d, s, &c, f, &QueryInput::default(), &mut NoTrace);
        sel.datacenters().next().unwrap()
    };
    assert_eq!(q(&s, Family::V4), id("ams"));
    // AAAA can only use fra; that must not make fra the A leader.
    assert_eq!(q(&s, Family::V6), id("fra"));
    set(&mut s, "fra", |x| x.latency_ms = Some(12.0));
    assert_eq!(
        q(&s, Family::V4),
        id("ams"),
        "3 ms gain is within the margin"
    );
}

fn load_case(loads: [f64; 3], max_load: f64) -> Vec<f64> {
    let d = dcs();
    let name = single(&["fra", "ams", "iad"], PolicyKind::Load { max_load });
    let mut s = up();
    for (n, l) in ["fra", "ams", "iad"].iter().zip(loads) {
        set(&mut s, n, |d| d.load = Some(l));
    }
    let mut cands: Vec<Cand> = (0..3)
        .map(|i| Cand {
            member: i,
            dc: DatacenterId(u32::from(i)),
            ramp: 1.0,
            key: 0.0,
        })
        .collect();
    let ctx = Ctx {
        members: &name.pools[0].members,
        dcs: &d,
        snap: &s,
        coords: None,
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        rotation: 0,
        latency: LatencyView::NONE,
    };
    rank::load_shares(&ctx, &mut cands, max_load);
    cands.iter().map(|c| c.key).collect()
}

#[test]
fn load_spill_over_numbers() {
    // No overload: shares by spare capacity 50:30:20.
    let p = load_case([0.5, 0.7, 0.8], 0.8);
    for (got, want) in p.iter().zip([0.5, 0.3, 0.2]) {
        assert!(close(*got, want, 1e-9), "{p:?}");
    }
    // fra 0.9 over max 0.8 by 10 capacity units; ams has 30 of headroom, iad 10: they absorb
    // all of it. Base shares 10:50:30 of 90; fra's 1/9 moves 3:1 to ams:iad.
    let p = load_case([0.9, 0.5, 0.7], 0.8);
    for (got, want) in p
        .iter()
        .zip([0.0, 5.0 / 9.0 + 1.0 / 12.0, 3.0 / 9.0 + 1.0 / 36.0])
    {
        assert!(close(*got, want, 1e-9), "{p:?}");
    }
    // fra excess 15, headroom only 5 + 2 = 7: fra keeps 8/15 of its base share 5/52, the rest
    // goes 5:2 to ams:iad. Exact: 40/780, 400/780, 340/780.
    let p = load_case([0.95, 0.75, 0.78], 0.8);
    for (got, want) in p.iter().zip([40.0 / 780.0, 400.0 / 780.0, 340.0 / 780.0]) {
        assert!(close(*got, want, 1e-9), "{p:?}");
    }
    // The kept fraction of the overloaded share is 1 - H/E: more overload, more kept (it is
    // the part nobody else can take): excess 19 vs headroom 7 keeps 12/19.
    let p = load_case([0.99, 0.75, 0.78], 0.8);
    assert!(close(p[0], (1.0 / 48.0) * 12.0 / 19.0, 1e-9), "{p:?}");
    // Everything overloaded: plain spare-capacity shares.
    let p = load_case([0.9, 0.95, 0.85], 0.8);
    for (got, want) in p.iter().zip([10.0 / 30.0, 5.0 / 30.0, 15.0 / 30.0]) {
        assert!(close(*got, want, 1e-9), "{p:?}");
    }

    // And `select` follows the shares.
    let name = single(&["fra", "ams", "iad"], PolicyKind::Load { max_load: 0.8 });
    let mut s = up();
    for (n, l) in ["fra", "ams", "iad"].iter().zip([0.95, 0.75, 0.78]) {
        set(&mut s, n, |d| d.load = Some(l));
    }
    let sh = shares(&name, &s, &v4client("203.0.113.1"), 100_000);
    for (n, want) in ["fra", "ams", "iad"]
        .iter()
        .zip([40.0 / 780.0, 400.0 / 780.0, 340.0 / 780.0])
    {
        assert!(close(sh[id(n).0 as usize], want, 0.02), "{n}: {sh:?}");
    }
}

#[test]
fn weighted_and_random_shares() {
    let mut name = single(&["fra", "ams", "iad"], PolicyKind::Weighted);
    for (m, w) in name.pools[0].members.iter_mut().zip([1, 2, 7]) {
        m.weight = w;
    }
    let c = v4client("203.0.113.1");
    let sh = shares(&name, &up(), &c, 100_000);
    for (n, want) in ["fra", "ams", "iad"].iter().zip([0.1, 0.2, 0.7]) {
        assert!(close(sh[id(n).0 as usize], want, 0.02), "{sh:?}");
    }
    let name = single(&["fra", "ams", "iad", "sin"], PolicyKind::Random);
    let sh = shares(&name, &up(), &c, 100_000);
    for n in ["fra", "ams", "iad", "sin"] {
        assert!(close(sh[id(n).0 as usize], 0.25, 0.02), "{sh:?}");
    }
}

#[test]
fn round_robin_rotation() {
    let name = single(&["fra", "ams", "iad"], PolicyKind::RoundRobin);
    let c = v4client("203.0.113.1");
    let seq: Vec<String> = (0..6)
        .map(|r| {
            names(&run(
                &name,
                &up(),
                &c,
                Family::V4,
                QueryInput {
                    random: 0,
                    rotation: r,
                },
            ))[0]
                .clone()
        })
        .collect();
    assert_eq!(seq, ["fra", "ams", "iad", "fra", "ams", "iad"]);
    let mut s = up();
    set(&mut s, "ams", |d| d.healthy = false);
    let seq: Vec<String> = (0..4)
        .map(|r| {
            names(&run(
                &name,
                &s,
                &c,
                Family::V4,
                QueryInput {
                    random: 0,
                    rotation: r,
                },
            ))[0]
                .clone()
        })
        .collect();
    assert_eq!(seq, ["fra", "iad", "fra", "iad"]);
}

fn subnet_client(i: u32) -> Client {
    // 10k distinct /24s, host part varies too.
    let a = Ipv4Addr::from((10 << 24) | (i << 8) | (i % 251));
    Client {
        addr: IpAddr::V4(a),
        source_prefix: 32,
        location: None,
    }
}

#[test]
fn hash_sticks_and_remaps_minimally() {
    let all = ["fra", "ams", "iad", "sin", "sjc"];
    let name = single(&all, PolicyKind::HASH);
    let s = up();
    // Same subnet, other hosts, other random inputs: same datacenter.
    let a = first(&name, &s, &v4client("198.51.100.1")).unwrap();
    for (h, r) in [(2, 7), (77, 99), (254, 12345)] {
        let c = v4client(&format!("198.51.100.{h}"));
        assert_eq!(
            names(&run(
                &name,
                &s,
                &c,
                Family::V4,
                QueryInput {
                    random: r,
                    rotation: r
                }
            ))[0],
            a
        );
    }
    let sel = run(
        &name,
        &s,
        &v4client("198.51.100.1"),
        Family::V4,
        QueryInput::default(),
    );
    assert_eq!(sel.scope, 24);

    let before: Vec<String> = (0..10_000)
        .map(|i| first(&name, &s, &subnet_client(i)).unwrap())
        .collect();
    let mut s2 = up();
    set(&mut s2, "iad", |d| d.healthy = false);
    let after: Vec<String> = (0..10_000)
        .map(|i| first(&name, &s2, &subnet_client(i)).unwrap())
        .collect();
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    assert!((1500..=2500).contains(&moved), "moved {moved}");
    for (b, a) in before.iter().zip(&after) {
        if b != a {
            assert_eq!(b, "iad", "only the removed datacenter's clients move");
        }
    }
    // IPv6: /56 granularity.
    let c6 = Client::new("2001:db8:1:100::1".parse().unwrap());
    let sel = run(&name, &s, &c6, Family::V6, QueryInput::default());
    assert_eq!(sel.scope, 56);
    let c6b = Client::new("2001:db8:1:1ff:ffff::9".parse().unwrap());
    assert_eq!(
        names(&sel),
        names(&run(&name, &s, &c6b, Family::V6, QueryInput::default()))
    );
}

#[test]
fn all_and_answers_n() {
    let name = single(&["fra", "ams", "iad", "sin"], PolicyKind::All);
    let mut s = up();
    set(&mut s, "ams", |d| d.healthy = false);
    let sel = run(
        &name,
        &s,
        &v4client("203.0.113.1"),
        Family::V4,
        QueryInput::default(),
    );
    assert_eq!(names(&sel), ["fra", "iad", "sin"]);
    assert_eq!(sel.addresses(&name, &dcs(), None).count(), 3);

    let mut name = single(&["fra", "ams", "iad", "sin"], PolicyKind::Failover);
    name.answers = 2;
    assert_eq!(
        names(&run(
            &name,
            &s,
            &v4client("203.0.113.1"),
            Family::V4,
            QueryInput::default()
        )),
        ["fra", "iad"]
    );
    let mut name = single(&["fra", "ams", "iad", "sin", "sjc"], PolicyKind::Nearest);
    name.answers = 3;
    assert_eq!(
        names(&run(
            &name,
            &up(),
            &client_at(PARIS),
            Family::V4,
            QueryInput::default()
        )),
        ["ams", "fra", "iad"]
    );
    // Weighted with answers = 2: two distinct datacenters.
    let mut name = single(&["fra", "ams", "iad"], PolicyKind::Weighted);
    name.answers = 2;
    for r in 0..100 {
        let n = names(&run(
            &name,
            &up(),
            &v4client("203.0.113.1"),
            Family::V4,
            QueryInput {
                random: r,
                rotation: 0,
            },
        ));
        assert_eq!(n.len(), 2);
        assert_ne!(n[0], n[1]);
    }
    // answers larger than the pool: all usable ones.
    let mut name = single(&["fra", "ams"], PolicyKind::HASH);
    name.answers = 5;
    assert_eq!(
        run(
            &name,
            &up(),
            &v4client("203.0.113.1"),
            Family::V4,
            QueryInput::default()
        )
        .entries()
        .len(),
        2
    );
}

#[test]
fn all_down_modes() {
    let c = v4client("203.0.113.1");
    let mut s = up();
    set(&mut s, "fra", |d| d.healthy = false);
    set(&mut s, "ams", |d| d.admin = AdminState::Down);
    let mut name = single(&["fra", "ams"], PolicyKind::Failover);

    let sel = run(&name, &s, &c, Family::V4, QueryInput::default());
    assert_eq!(
        (sel.outcome, sel.source, sel.ttl),
        (AnswerKind::Answer, Source::FailOpen, 30)
    );
    assert_eq!(names(&sel), ["fra"]);

    name.all_down = AllDown::Addresses {
        v4: vec![Ipv4Addr::new(203, 0, 113, 99)],
        v6: vec![],
    };
    let sel = run(&name, &s, &c, Family::V4, QueryInput::default());
    assert_eq!(
        (sel.outcome, sel.source),
        (AnswerKind::Answer, Source::LastResort)
    );
    assert_eq!(
        sel.addresses(&name, &dcs(), None).collect::<Vec<_>>(),
        [IpAddr::V4(Ipv4Addr::new(203, 0, 113, 99))]
    );
    assert_eq!(
        run(&name, &s, &c, Family::V6, QueryInput::default()).outcome,
        AnswerKind::NoData
    );

    name.all_down = AllDown::NoData;
    assert_eq!(
        run(&name, &s, &c, Family::V4, QueryInput::default()).outcome,
        AnswerKind::NoData
    );
    name.all_down = AllDown::ServFail;
    assert_eq!(
        run(&name, &s, &c, Family::V4, QueryInput::default()).outcome,
        AnswerKind::ServFail
    );
    // One back up: a normal answer again.
    set(&mut s, "fra", |d| d.healthy = true);
    let sel = run(&name, &s, &c, Family::V4, QueryInput::default());
    assert_eq!(
        (sel.outcome, sel.source, sel.ttl),
        (AnswerKind::Answer, Source::Pool, 60)
    );
}

#[test]
fn drain_and_admin_down_never_answered() {
    let name = single(&["fra", "ams", "iad"], PolicyKind::Random);
    let mut s = up();
    set(&mut s, "fra", |d| d.admin = AdminState::Drain);
    set(&mut s, "ams", |d| d.admin = AdminState::Down);
    set(&mut s, "iad", |d| d.healthy = false);
    // admin up overrides the probes.
    let mut s2 = s.clone();
    set(&mut s2, "iad", |d| d.admin = AdminState::Up);
    let sh = shares(&name, &s2, &v4client("203.0.113.1"), 1000);
    assert_eq!(sh[id("iad").0 as usize], 1.0);
    // All three unusable: fail-open answers them all the same.
    let sel = run(
        &name,
        &s,
        &v4client("203.0.113.1"),
        Family::V4,
        QueryInput::default(),
    );
    assert_eq!(sel.source, Source::FailOpen);
}

#[test]
fn slow_start_shares() {
    let name = single(&["fra", "ams"], PolicyKind::Weighted);
    let mut s = up();
    set(&mut s, "fra", |d| d.slow_start = 0.4);
    let sh = shares(&name, &s, &v4client("203.0.113.1"), 100_000);
    assert!(close(sh[id("fra").0 as usize], 0.2, 0.02), "{sh:?}");
    // Failover: the leader gets 40% of what it would get (all), the next one the rest.
    let name = single(&["fra", "ams"], PolicyKind::Failover);
    let sh = shares(&name, &s, &v4client("203.0.113.1"), 100_000);
    assert!(close(sh[id("fra").0 as usize], 0.4, 0.02), "{sh:?}");
    // Hash: the ramping datacenter gets 40% of its subnets, and keeps them as it ramps up.
    let name = single(&["fra", "ams", "iad", "sin"], PolicyKind::HASH);
    let on = |s: &Snapshot| {
        (0..10_000)
            .filter(|i| first(&name, s, &subnet_client(*i)).as_deref() == Some("fra"))
            .count()
    };
    let full = on(&up());
    let ramped = on(&s);
    assert!(
        close(ramped as f64 / full as f64, 0.4, 0.05),
        "{ramped}/{full}"
    );
    // Round robin: 40% of its turns.
    let name = single(&["fra", "ams"], PolicyKind::RoundRobin);
    let sh = shares(&name, &s, &v4client("203.0.113.1"), 100_000);
    assert!(close(sh[id("fra").0 as usize], 0.2, 0.02), "{sh:?}");
}

#[test]
fn family_and_address_state() {
    let mut d = dcs();
    d[id("fra").0 as usize].v6.clear();
    d[id("ams").0 as usize]
        .v4
        .push(Ipv4Addr::new(192, 0, 2, 99));
    let name = single(&["fra", "ams"], PolicyKind::Failover);
    let c = v4client("203.0.113.1");
    let sel = select(
        &name,
        &d,
        &up(),
        &c,
        Family::V6,
        &QueryInput::default(),
        &mut NoTrace,
    );
    assert_eq!(
        sel.datacenters().next(),
        Some(id("ams")),
        "fra has no IPv6: skipped"
    );
    // ams: bits 0,1 = v4 addresses, bit 2 = v6. First v4 down: only the second answered.
    let mut s = up();
    set(&mut s, "fra", |x| x.healthy = false);
    set(&mut s, "ams", |x| x.addr_up = 0b110);
    let sel = select(
        &name,
        &d,
        &s,
        &c,
        Family::V4,
        &QueryInput::default(),
        &mut NoTrace,
    );
    assert_eq!(
        sel.addresses(&name, &d, None).collect::<Vec<_>>(),
        [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99))]
    );
    // Every v4 address of ams down: not usable for A, still usable for AAAA.
    set(&mut s, "ams", |x| x.addr_up = 0b100);
    let sel = select(
        &name,
        &d,
        &s,
        &c,
        Family::V4,
        &QueryInput::default(),
        &mut NoTrace,
    );
    assert_eq!(sel.source, Source::FailOpen);
    let sel = select(
        &name,
        &d,
        &s,
        &c,
        Family::V6,
        &QueryInput::default(),
        &mut NoTrace,
    );
    assert_eq!(sel.source, Source::Pool);

    // No IPv6 anywhere in the chain: NODATA, not the all-down behaviour.
    let mut d4 = dcs();
    for x in &mut d4 {
        x.v6.clear();
    }
    let mut name = single(&["fra", "ams"], PolicyKind::Failover);
    name.all_down = AllDown::ServFail;
    let sel = select(
        &name,
        &d4,
        &up(),
        &c,
        Family::V6,
        &QueryInput::default(),
        &mut NoTrace,
    );
    assert_eq!(sel.outcome, AnswerKind::NoData);
}

#[test]
fn ttl_capped_by_unsettled_states() {
    let mut name = single(&["fra", "ams"], PolicyKind::All);
    name.ttl = 300;
    let mut s = up();
    set(&mut s, "ams", |d| {
        d.settled = false;
        d.settle_ttl = 10;
    });
    assert_eq!(
        run(
            &name,
            &s,
            &v4client("203.0.113.1"),
            Family::V4,
            QueryInput::default()
        )
        .ttl,
        10
    );
    let name = single(&["fra", "ams"], PolicyKind::Failover);
    assert_eq!(
        run(
            &name,
            &s,
            &v4client("203.0.113.1"),
            Family::V4,
            QueryInput::default()
        )
        .ttl,
        60
    );
}

fn geo_name() -> GslbName {
    let mut name = GslbName::single(60, pool("europe", &["fra", "ams"], PolicyKind::Failover));
    name.pools
        .push(pool("office", &["iad"], PolicyKind::Failover));
    name.pools
        .push(pool("world", &["sjc", "fra"], PolicyKind::Failover));
    name.rules = vec![
        Rule {
            matches: vec![
                MatchItem::Geo(GeoCode::Continent(*b"EU")),
                MatchItem::Geo(GeoCode::Country(*b"ZA")),
            ],
            pool: PoolId(0),
        },
        Rule {
            matches: vec![MatchItem::Subnet(Subnet {
                addr: "10.1.0.0".parse().unwrap(),
                prefix: 16,
            })],
            pool: PoolId(1),
        },
        Rule {
            matches: vec![MatchItem::Geo(GeoCode::Subdivision(*b"US", *b"CA\0"))],
            pool: PoolId(0),
        },
        Rule {
            matches: vec![],
            pool: PoolId(2),
        },
    ];
    name
}

#[test]
fn rules_and_ecs_scope() {
    let name = geo_name();
    let s = up();
    let eu = |addr: &str| Client {
        addr: addr.parse().unwrap(),
        source_prefix: 24,
        location: Some(loc(b"EU", b"DE", None)),
    };
    // Geo rule: location's prefix.
    let sel = run(
        &name,
        &s,
        &eu("198.51.100.1"),
        Family::V4,
        QueryInput::default(),
    );
    assert_eq!(
        (sel.rule, names(&sel), sel.scope),
        (Some(0), vec!["fra".to_string()], 20)
    );
    // Subnet beats an earlier geo rule; scope = subnet prefix.
    let sel = run(
        &name,
        &s,
        &eu("10.1.2.3"),
        Family::V4,
        QueryInput::default(),
    );
    assert_eq!(
        (sel.rule, names(&sel), sel.scope),
        (Some(1), vec!["iad".to_string()], 16)
    );
    // Near miss of the subnet: scope narrow enough to exclude it.
    let sel = run(
        &name,
        &s,
        &eu("10.0.2.3"),
        Family::V4,
        QueryInput::default(),
    );
    assert_eq!((sel.rule, sel.scope), (Some(0), 20));
    let c = Client {
        addr: "10.0.2.3".parse().unwrap(),
        source_prefix: 24,
        location: None,
    };
    let sel = run(&name, &s, &c, Family::V4, QueryInput::default());
    assert_eq!(
        (sel.rule, sel.scope),
        (Some(3), 24),
        "no location: source prefix"
    );
    let mut c = eu("10.0.2.3");
    c.location.as_mut().unwrap().prefix_len = 8;
    assert_eq!(
        run(&name, &s, &c, Family::V4, QueryInput::default()).scope,
        16
    );
    // Subdivision.
    let mut ca = eu("198.51.100.1");
    ca.location = Some(Location {
        subdivision: Some(*b"CA\0"),
        ..loc(b"NA", b"US", None)
    });
    assert_eq!(
        run(&name, &s, &ca, Family::V4, QueryInput::default()).rule,
        Some(2)
    );
    // Catch-all first, client-independent policy: scope 0.
    let name = single(&["fra", "ams"], PolicyKind::Weighted);
    assert_eq!(
        run(
            &name,
            &s,
            &eu("198.51.100.1"),
            Family::V4,
            QueryInput::default()
        )
        .scope,
        0
    );
}

#[test]
fn explain_trace_records_the_decision() {
    let name = geo_name();
    let d = dcs();
    let mut s = up();
    set(&mut s, "fra", |x| x.healthy = false);
    set(&mut s, "ams", |x| x.admin = AdminState::Drain);
    let c = Client {
        addr: "198.51.100.1".parse().unwrap(),
        source_prefix: 24,
        location: Some(loc(b"EU", b"DE", Some(PARIS))),
    };
    let mut t = Trace::new(&name, &d);
    let sel = select(
        &name,
        &d,
        &s,
        &c,
        Family::V4,
        &QueryInput::default(),
        &mut t,
    );
    assert_eq!(
        sel,
        run(&name, &s, &c, Family::V4, QueryInput::default()),
        "tracing changes nothing"
    );
    // europe had nothing usable, no fallback: all-down fail-open over europe.
    assert_eq!(t.pools.len(), 2);
    assert_eq!(t.rule, Some(0));
    let json = serde_json::to_string(&t).unwrap();
    assert!(json.contains("\"verdict\":\"drain\""), "{json}");
    assert!(json.contains("\"source\":\"fail-open\""), "{json}");
    let text = t.to_string();
    assert!(
        text.contains("rule: #0")
            && text.contains("pool europe")
            && text.contains("answer: 192.0.2.10"),
        "{text}"
    );
    assert!(text.contains("ttl: 30"), "{text}");
}

// ---- property tests ----

fn arb_state() -> impl Strategy<Value = DcState> {
    (
        any::<bool>(),
        0u8..4,
        0u64..4,
        prop::option::of(0.0f64..1.0),
        prop::option::of(1.0f64..200.0),
        0.0f64..=1.0,
    )
        .prop_map(
            |(healthy, admin, addr_up, load, latency_ms, slow_start)| DcState {
                healthy,
                health_input: gslbd::health::Input::Probes,
                admin: [
                    AdminState::Obey,
                    AdminState::Up,
                    AdminState::Down,
                    AdminState::Drain,
                ][admin as usize],
                load,
                latency_ms,
                slow_start: if slow_start < 0.3 { 1.0 } else { slow_start },
                addr_up,
                ..DcState::UP
            },
        )
}

fn arb_policy() -> impl Strategy<Value = PolicyKind> {
    prop_oneof![
        Just(PolicyKind::Failover),
        Just(PolicyKind::Nearest),
        Just(PolicyKind::Latency { margin_ms: 5.0 }),
        Just(PolicyKind::Load { max_load: 0.8 }),
        Just(PolicyKind::Weighted),
        Just(PolicyKind::RoundRobin),
        Just(PolicyKind::Random),
        Just(PolicyKind::HASH),
        Just(PolicyKind::All),
    ]
}

proptest! {
    #[test]
    fn never_answers_unusable_while_chain_has_usable(
        states in prop::collection::vec(arb_state(), 5),
        p0 in arb_policy(),
        p1 in arb_policy(),
        m0 in prop::sample::subsequence(vec![0u32, 1, 2, 3, 4], 1..=5),
        m1 in prop::sample::subsequence(vec![0u32, 1, 2, 3, 4], 1..=5),
        answers in 1u8..4,
        random in any::<u64>(),
        rotation in any::<u64>(),
        addr in any::<u32>(),
        v6 in any::<bool>(),
    ) {
        let d = dcs();
        let mk = |n: &str, m: &[u32], p: PolicyKind| {
            Pool::new(n, m.iter().map(|i| Member::of(DatacenterId(*i), &d)).collect(), p)
        };
        let mut name = GslbName::single(60, mk("a", &m0, p0));
        name.pools.push(mk("b", &m1, p1));
        name.pools[0].fallback = Some(PoolId(1));
        name.answers = answers;
        let snap = Snapshot { generation: 1, dcs: states.clone(), why: vec![], latency_map: None, resolutions: None };
        let family = if v6 { Family::V6 } else { Family::V4 };
        let client = Client {
            addr: IpAddr::V4(Ipv4Addr::from(addr)),
            source_prefix: 32,
            location: Some(loc(b"EU", b"DE", Some(PARIS))),
        };
        let sel = select(&name, &d, &snap, &client, family, &QueryInput { random, rotation }, &mut NoTrace);

        // Each datacenter has one v4 (bit 0) and one v6 (bit 1) address.
        let bit = u32::from(v6);
        let usable = |i: u32| {
            let s = &states[i as usize];
            s.usable() && s.addr_up >> bit & 1 == 1
        };
        let chain: Vec<u32> = m0.iter().chain(&m1).copied().collect();
        prop_assert_eq!(sel.outcome, AnswerKind::Answer);
        if chain.iter().any(|i| usable(*i)) {
            prop_assert_eq!(sel.source, Source::Pool);
            for e in sel.entries() {
                prop_assert!(usable(e.dc.0), "answered unusable {:?}", e.dc);
            }
        } else {
            prop_assert_eq!(sel.source, Source::FailOpen);
        }
        let allowed: Vec<IpAddr> = chain
            .iter()
            .map(|i| if v6 { IpAddr::V6(d[*i as usize].v6[0]) } else { IpAddr::V4(d[*i as usize].v4[0]) })
            .collect();
        let got: Vec<IpAddr> = sel.addresses(&name, &d, None).collect();
        prop_assert!(!got.is_empty());
        for a in got {
            prop_assert!(allowed.contains(&a), "{} not in the chain", a);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Rendezvous hashing: taking any one datacenter out moves only the subnets it had.
    #[test]
    fn hash_removal_moves_only_the_removed_datacenters_clients(
        gone in 0usize..5,
        seed in any::<u64>(),
        weights in prop::collection::vec(1u32..5, 5),
    ) {
        let mut name = single(&["fra", "ams", "iad", "sin", "sjc"], PolicyKind::HASH);
        for (m, w) in name.pools[0].members.iter_mut().zip(&weights) {
            m.weight = *w;
        }
        let mut s2 = up();
        s2.dcs[gone].healthy = false;
        let mut rng = SplitMix(seed);
        for _ in 0..200 {
            let c = Client::new(IpAddr::V4(Ipv4Addr::from(rng.next() as u32)));
            let before = first(&name, &up(), &c).unwrap();
            let after = first(&name, &s2, &c).unwrap();
            prop_assert!(before == after || before == CITIES[gone].0, "{} -> {}", before, after);
        }
    }
}
