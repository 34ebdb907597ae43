//! The latency map driving the `latency` policy through the snapshot: map entries for the
//! client beat the probe EWMA, which stays the fallback; hysteresis; ECS scope; explain.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use gslbd::config::latency_map::MapFormat;
use gslbd::geo::Location;
use gslbd::health::Snapshot;
use gslbd::model::LatencyMap;
use gslbd::model::{Datacenter, DatacenterId, GslbName, Member, PolicyKind, Pool};
use gslbd::net::Family;
use gslbd::policy::{Client, NoTrace, QueryInput, Selection, Trace, select};

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
            target: None,
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
    match gslbd::config::latency_map::parse(Path::new("rum.csv"), csv, MapFormat::Csv, id) {
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

/// A zones directory declaring `dcs` in this order, each used by one failover name.
fn zones_with(dcs: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from(
        "origin = \"example.com.\"\n[soa]\nmname = \"ns1.example.com.\"\nrname = \"h.example.com.\"\n[records.\"@\"]\nNS = [\"ns1.example.com.\"]\n[records.ns1]\nA = [\"192.0.2.1\"]\n",
    );
    for (i, d) in dcs.iter().enumerate() {
        text.push_str(&format!(
            "[datacenters.{d}]\naddresses = [\"198.51.100.{}\"]\n",
            i + 1
        ));
    }
    let members: Vec<String> = dcs.iter().map(|d| format!("\"{d}\"")).collect();
    text.push_str(&format!(
        "[gslb.app]\ndatacenters = [{}]\npolicy = \"latency\"\n",
        members.join(", ")
    ));
    std::fs::write(dir.path().join("example.com.toml"), text).expect("write");
    dir
}

fn loaded(dcs: &[&str]) -> Arc<gslbd::server::Loaded> {
    let dir = zones_with(dcs);
    let model = gslbd::config::load(dir.path()).expect("zones load");
    Arc::new(gslbd::server::Loaded::new(
        model,
        &gslbd::metrics::Metrics::new(),
    ))
}

/// The map published for a client in Germany, by datacenter name (through the ids of the
/// model it is published with).
fn published_ms(p: &gslbd::server::publish::Publisher, dc: &str) -> Option<f64> {
    let s = p.load();
    let id = s.loaded.model.datacenters.id_of(dc)?;
    let map = s.snapshot.latency_map.as_ref()?;
    let de = client("203.0.113.1", Some((b"EU", b"DE")));
    map.ms(de.addr, de.location.as_ref(), id)
}

#[test]
fn the_map_is_published_with_its_model_and_follows_reordered_ids() {
    use gslbd::server::publish::Publisher;

    let first = loaded(&["fra", "iad", "sin"]);
    let geo = Arc::new(gslbd::geo::GeoDb::empty());
    let p = Arc::new(Publisher::new(
        first.clone(),
        geo.clone(),
        1,
        Arc::new(Snapshot::all_up(3)),
    ));
    assert!(p.load().snapshot.latency_map.is_none());
    p.set_latency_text(
        "rum.csv".into(),
        "DE,fra,10\nDE,iad,90\nDE,sin,200\n".into(),
        MapFormat::Csv,
    )
    .expect("map fits the model");
    assert_eq!(published_ms(&p, "fra"), Some(10.0));
    assert_eq!(published_ms(&p, "sin"), Some(200.0));

    // Health published by the aggregator keeps the map.
    let mut h = Snapshot::all_up(3);
    h.dcs[0].latency_ms = Some(1.0);
    p.health_sink(1).publish(Arc::new(h));
    assert_eq!(p.load().snapshot.dcs[0].latency_ms, Some(1.0));
    assert_eq!(published_ms(&p, "fra"), Some(10.0));

    // A reload that renumbers the datacenters (ids follow names, and ams sorts first): the map
    // is resolved again for the new ids, and the new runtime's health (generation 2) comes
    // with the new model, not before it.
    let second = loaded(&["ams", "fra", "iad", "sin"]);
    let mut h2 = Snapshot::all_up(4);
    h2.dcs[0].latency_ms = Some(7.0); // ams in the new ids
    p.health_sink(2).publish(Arc::new(h2));
    assert_eq!(
        p.load().snapshot.dcs[0].latency_ms,
        Some(1.0),
        "a newer runtime's snapshot waits for its model"
    );
    p.swap_model(second, geo.clone(), Some(2))
        .expect("still fits");
    assert_eq!(p.load().snapshot.dcs[0].latency_ms, Some(7.0));
    assert_eq!(
        p.load().loaded.model.datacenters.id_of("fra").map(|d| d.0),
        Some(1)
    );
    assert_eq!(published_ms(&p, "fra"), Some(10.0));
    assert_eq!(published_ms(&p, "sin"), Some(200.0));
    // The stopped runtime's late words are dropped.
    p.health_sink(1).publish(Arc::new(Snapshot::all_up(3)));
    assert_eq!(p.load().snapshot.dcs[0].latency_ms, Some(7.0));

    // A reload that removes a datacenter the map names: the map is dropped, not misapplied.
    let third = loaded(&["ams", "iad", "sin"]);
    assert!(p.swap_model(third, geo, Some(3)).is_err());
    assert!(p.load().snapshot.latency_map.is_none());
}
