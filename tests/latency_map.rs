//! The latency map driving the `latency` policy through the snapshot: map entries for the
//! client beat the probe EWMA, which stays the fallback; hysteresis; ECS scope; explain.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use gslbd::geo::Location;
use gslbd::health::latency_map::MapFormat;
use gslbd::health::{LatencyMap, Snapshot};
use gslbd::model::gslb::{Datacenter, DatacenterId, GslbName, Member, PolicyKind, Pool};
use gslbd::policy::{Client, Family, NoTrace, QueryInput, Selection, Trace, select};

const NAMES: [&str; 3] = ["fra", "iad", "sin"];

fn dcs() -> Vec<Datacenter> {
    NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| Datacenter {
            name: (*n).into(),
            v4: vec![Ipv4Addr::new(192, 0, 2, 10 + i as u8)],
            v6: vec![],
            coords: None,
            capacity: 1.0,
            weight: 1,
        })
        .collect()
}

fn id(name: &str) -> Option<DatacenterId> {
    NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| DatacenterId(i as u32))
}

fn latency_name(margin_ms: f64) -> GslbName {
    let d = dcs();
    let members = NAMES
        .iter()
        .filter_map(|n| id(n))
        .map(|i| Member::of(i, &d))
        .collect();
    GslbName::single(
        60,
        Pool::new("p", members, PolicyKind::Latency { margin_ms }),
    )
}

fn map(csv: &str) -> Arc<LatencyMap> {
    match LatencyMap::parse(Path::new("rum.csv"), csv, MapFormat::Csv, id) {
        Ok(m) => Arc::new(m),
        Err(e) => panic!("{e}"),
    }
}

/// Probes say iad is fastest (they run next to iad), fra slower, sin slowest.
fn snapshot(m: Option<Arc<LatencyMap>>) -> Snapshot {
    let mut s = Snapshot::all_up(NAMES.len());
    s.dcs[0].latency_ms = Some(80.0);
    s.dcs[1].latency_ms = Some(5.0);
    s.dcs[2].latency_ms = Some(200.0);
    s.latency_map = m;
    s
}

fn client(addr: &str, geo: Option<(&[u8; 2], &[u8; 2])>) -> Client {
    let addr: IpAddr = addr.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    Client {
        addr,
        source_prefix: 24,
        location: geo.map(|(cont, country)| Location {
            continent: Some(*cont),
            country: Some(*country),
            subdivision: None,
            coords: None,
            coords_from_centroid: false,
            prefix_len: 18,
            db: 0,
        }),
    }
}

fn decide(name: &GslbName, snap: &Snapshot, c: &Client) -> Selection {
    select(
        name,
        &dcs(),
        snap,
        c,
        Family::V4,
        &QueryInput::default(),
        &mut NoTrace,
    )
}

fn first(name: &GslbName, snap: &Snapshot, c: &Client) -> &'static str {
    let sel = decide(name, snap, c);
    sel.datacenters()
        .next()
        .map_or("none", |d| NAMES[d.0 as usize])
}

#[test]
fn map_entries_pick_per_region_against_the_probes() {
    let m = map("EU,fra,10\nEU,iad,90\nNA,iad,10\nNA,fra,90\n");
    let name = latency_name(5.0);
    let snap = snapshot(Some(m));
    let eu = client("198.51.100.1", Some((b"EU", b"DE")));
    let na = client("203.0.113.1", Some((b"NA", b"US")));
    let asia = client("192.0.2.99", Some((b"AS", b"SG")));
    for _ in 0..3 {
        assert_eq!(first(&name, &snap, &eu), "fra", "EU: map says fra");
        assert_eq!(first(&name, &snap, &na), "iad", "NA: map says iad");
        // No entry: the probe EWMA decides.
        assert_eq!(first(&name, &snap, &asia), "iad");
    }
    // Without the map everybody gets the probe ranking.
    let plain = snapshot(None);
    assert_eq!(first(&name, &plain, &eu), "iad");
    assert_eq!(first(&name, &plain, &na), "iad");
}

#[test]
fn subnet_beats_country_beats_continent_in_the_policy() {
    let m = map("EU,fra,10\nEU,iad,90\n\
                 DE,fra,90\nDE,iad,10\n\
                 198.51.100.0/24,fra,10\n198.51.100.0/24,iad,90\n\
                 198.51.100.128/25,sin,1\n");
    let name = latency_name(0.0);
    let snap = snapshot(Some(m));
    assert_eq!(
        first(&name, &snap, &client("192.0.2.1", Some((b"EU", b"FR")))),
        "fra"
    );
    assert_eq!(
        first(&name, &snap, &client("192.0.2.1", Some((b"EU", b"DE")))),
        "iad"
    );
    assert_eq!(
        first(&name, &snap, &client("198.51.100.1", Some((b"EU", b"DE")))),
        "fra"
    );
    assert_eq!(
        first(
            &name,
            &snap,
            &client("198.51.100.200", Some((b"EU", b"DE")))
        ),
        "sin"
    );
}

#[test]
fn partial_entries_fall_back_to_the_probe_per_datacenter() {
    // EU clients measured only sin (150 ms): fra and iad keep their probe figures (80, 5).
    let m = map("EU,sin,150\n");
    let name = latency_name(0.0);
    let eu = client("198.51.100.1", Some((b"EU", b"DE")));
    assert_eq!(first(&name, &snapshot(Some(m.clone())), &eu), "iad");
    // sin at 1 ms for EU: sin, although its probe says 200.
    let m = map("EU,sin,1\n");
    assert_eq!(first(&name, &snapshot(Some(m)), &eu), "sin");
}

#[test]
fn hysteresis_margin_applies_to_map_values() {
    let name = latency_name(20.0);
    let nowhere = client("192.0.2.1", None);
    let eu = client("198.51.100.1", Some((b"EU", b"DE")));
    // The probe ranking makes iad the pool's leader.
    let snap = snapshot(Some(map("EU,fra,10\nEU,iad,25\n")));
    assert_eq!(first(&name, &snap, &nowhere), "iad");
    // EU: fra is better by 15 ms, within the 20 ms margin: the leader stays.
    assert_eq!(first(&name, &snap, &eu), "iad");
    // Better by 30 ms: switch.
    let snap = snapshot(Some(map("EU,fra,10\nEU,iad,40\n")));
    assert_eq!(first(&name, &snap, &eu), "fra");
    // A map decision does not move the shared leader: clients without entries keep the
    // probe leader, and EU keeps being decided by its own figures.
    assert_eq!(name.pools[0].leader.get(Family::V4), id("iad"));
    assert_eq!(first(&name, &snap, &nowhere), "iad");
    assert_eq!(first(&name, &snap, &eu), "fra");
}

#[test]
fn ecs_scope_follows_the_entries_that_decide() {
    let name = latency_name(0.0);
    // Geo entries: the GeoIP network's prefix (18 in these clients).
    let snap = snapshot(Some(map("EU,fra,10\nEU,iad,90\n")));
    let eu = client("198.51.100.1", Some((b"EU", b"DE")));
    let na = client("203.0.113.1", Some((b"NA", b"US")));
    assert_eq!(decide(&name, &snap, &eu).scope, 18);
    // NA has no entry, but the answer still depends on where the client is.
    assert_eq!(decide(&name, &snap, &na).scope, 18);
    // Subnet entries: the subnet's prefix.
    let snap = snapshot(Some(map("198.51.100.0/24,fra,1\n")));
    assert_eq!(
        decide(&name, &snap, &client("198.51.100.1", None)).scope,
        24
    );
    // Outside it: one bit more than shared with it (198.51.101.x shares 23 bits).
    assert_eq!(
        decide(&name, &snap, &client("198.51.101.1", None)).scope,
        24
    );
    assert_eq!(decide(&name, &snap, &client("10.0.0.1", None)).scope, 1);
    // No map: `latency` does not depend on the client.
    assert_eq!(decide(&name, &snapshot(None), &eu).scope, 0);
    // Entries only for datacenters outside the pool: no dependence either.
    let d = dcs();
    let pool_without_sin = GslbName::single(
        60,
        Pool::new(
            "p",
            ["fra", "iad"]
                .iter()
                .filter_map(|n| id(n))
                .map(|i| Member::of(i, &d))
                .collect(),
            PolicyKind::Latency { margin_ms: 0.0 },
        ),
    );
    let snap = snapshot(Some(map("EU,sin,1\n")));
    assert_eq!(decide(&pool_without_sin, &snap, &eu).scope, 0);
}

#[test]
fn explain_shows_where_each_latency_came_from() {
    let name = latency_name(0.0);
    let snap = snapshot(Some(map("DE,fra,10\nEU,iad,90\n")));
    let eu = client("198.51.100.1", Some((b"EU", b"DE")));
    let d = dcs();
    let mut trace = Trace::new(&name, &d);
    select(
        &name,
        &d,
        &snap,
        &eu,
        Family::V4,
        &QueryInput::default(),
        &mut trace,
    );
    let order: Vec<(String, Option<f64>, Option<&str>)> = trace.pools[0]
        .order
        .iter()
        .map(|r| (r.datacenter.clone(), r.value, r.source.map(|s| s.as_str())))
        .collect();
    assert_eq!(
        order,
        [
            ("fra".to_string(), Some(10.0), Some("map-country")),
            ("iad".to_string(), Some(90.0), Some("map-continent")),
            ("sin".to_string(), Some(200.0), Some("probe")),
        ]
    );
    let text = trace.to_string();
    assert!(
        text.contains("latency-ms=10.000 (map-country) answered"),
        "{text}"
    );
    let json = serde_json::to_value(&trace).unwrap_or_default();
    assert_eq!(
        json["pools"][0]["order"][2]["source"],
        serde_json::json!("probe")
    );
}

#[tokio::test]
async fn the_aggregator_carries_the_map_into_every_snapshot() {
    use arc_swap::ArcSwap;
    use gslbd::health::aggregator::{Aggregator, AggregatorSettings};
    use gslbd::probe::{DatacenterProbe, ProbeSet};

    let probes: Vec<DatacenterProbe> = NAMES
        .iter()
        .map(|n| DatacenterProbe::new(*n, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)], None))
        .collect();
    let set = Arc::new(ProbeSet::build(&probes).expect("probe set"));
    let out = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let settings = AggregatorSettings {
        publish_interval: std::time::Duration::ZERO,
        ..AggregatorSettings::default()
    };
    let (mut agg, _handle) = Aggregator::new(set, settings, out.clone()).expect("aggregator");
    assert!(out.load().latency_map.is_none());
    let before = out.load().generation;
    let m = map("EU,fra,10\n");
    agg.set_latency_map(Some(m.clone()), tokio::time::Instant::now());
    let snap = out.load();
    assert!(snap.generation > before, "published at once");
    assert!(
        snap.latency_map
            .as_ref()
            .is_some_and(|x| Arc::ptr_eq(x, &m))
    );
    // Later publications keep it; removing it publishes a snapshot without it.
    agg.set_admin(
        0,
        gslbd::health::AdminState::Drain,
        tokio::time::Instant::now(),
    )
    .expect("admin");
    agg.publish(tokio::time::Instant::now());
    assert!(out.load().latency_map.is_some());
    assert!(!out.load().dcs[0].usable());
    agg.set_latency_map(None, tokio::time::Instant::now());
    assert!(out.load().latency_map.is_none());
}
