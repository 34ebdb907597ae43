//! GSLB answers end to end: the real server on loopback with a GeoIP City fixture built by
//! `mmdb-writer`, shared datacenters in `datacenters.toml`, GSLB names in a zone file, and
//! health set by storing snapshots. Every assertion is on exact record strings, ECS options
//! and TTLs as they come over the socket; `gslbd explain` is run as a binary and compared
//! with the server's answer.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use gslbd::health::{AdminState, DcState, Snapshot};
use hickory_proto::op::ResponseCode;
use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{IpVersion, Value, Writer};

use crate::common::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// The City fixture: networks in EU, NA, OC, AF, AS (IPv4 and IPv6), with and without
/// coordinates, and 127.0.0.0/8 in Singapore so queries without ECS (from 127.0.0.1) have a
/// location of their own.
fn geo_fixture(dir: &Path) -> PathBuf {
    let nets: Vec<(&str, Value)> = vec![
        (
            "81.2.69.0/24",
            geo_city("EU", "GB", &["ENG"], Some((51.5142, -0.0931))),
        ),
        ("85.0.0.0/16", geo_city("EU", "DE", &["BY"], None)),
        (
            "198.51.100.0/24",
            geo_city("NA", "US", &["CA"], Some((37.7749, -122.4194))),
        ),
        (
            "203.0.113.0/25",
            geo_city("OC", "AU", &["NSW"], Some((-33.8688, 151.2093))),
        ),
        (
            "100.64.0.0/10",
            geo_city("AF", "ZA", &["GP"], Some((-26.2041, 28.0473))),
        ),
        ("127.0.0.0/8", geo_city("AS", "SG", &[], Some((1.29, 103.85)))),
        (
            "2001:db8:100::/48",
            geo_city("AS", "JP", &["13"], Some((35.6895, 139.6917))),
        ),
        ("2001:db8:200::/48", geo_city("EU", "DE", &[], None)),
    ];
    let mut w = Writer::builder("GeoIP2-City-Test")
        .ip_version(IpVersion::V6)
        .build();
    for (net, v) in nets {
        w.insert_value(net.parse::<IpNet>().expect("network"), v)
            .expect("insert");
    }
    let path = dir.join("city.mmdb");
    std::fs::write(&path, w.to_bytes().expect("mmdb bytes")).expect("write mmdb");
    path
}

/// Shared declarations (a file without `origin`). Ids follow declaration order in the file
/// as the `toml` crate hands it over (sorted by key): fra=0, iad=1, lon=2, sfo=3, sin=4,
/// syd=5; the tests look ids up by name anyway.
const DATACENTERS: &str = r#"
[datacenters.lon]
addresses = ["192.0.2.10", "2001:db8:10::10"]
location = { lat = 51.51, lon = -0.13 }
[datacenters.fra]
addresses = ["192.0.2.20", "2001:db8:20::20"]
location = { lat = 50.11, lon = 8.68 }
[datacenters.iad]
addresses = ["198.51.100.30", "2001:db8:30::30"]
location = { lat = 38.95, lon = -77.45 }
[datacenters.sfo]
addresses = ["198.51.100.40"]
location = { lat = 37.62, lon = -122.38 }
[datacenters.sin]
addresses = ["203.0.113.50", "2001:db8:50::50"]
geo = "AS-SG"
[datacenters.syd]
addresses = ["203.0.113.60"]
location = { lat = -33.87, lon = 151.21 }
"#;

const ZONE: &str = r#"
origin = "gslb.test."
ttl = 3600
[soa]
mname = "ns1.gslb.test."
rname = "hostmaster.gslb.test."
serial = 1
minimum = 300
[records."@"]
NS = ["ns1"]
[records.ns1]
A = ["192.0.2.1"]
[records.alias]
CNAME = ["plain"]

# Geo rules with a subnet rule written after them: the subnet still wins.
[gslb.geo]
ttl = 30
rules = [
  { match = ["EU", "AF"], pool = "europe" },
  { match = ["NA"], pool = "america" },
  { match = ["198.51.100.128/25"], pool = "asia" },
  { match = ["AS", "OC"], pool = "asia" },
  { pool = "world" },
]
[gslb.geo.pools.europe]
datacenters = ["lon", "fra"]
[gslb.geo.pools.america]
datacenters = ["iad", "sfo"]
[gslb.geo.pools.asia]
datacenters = ["sin", "syd"]
[gslb.geo.pools.world]
datacenters = ["iad"]

[gslb.near]
datacenters = ["lon", "fra", "iad", "sin", "syd"]
policy = "nearest"

[gslb.biased]
datacenters = ["lon", { dc = "fra", bias = 1000 }]
policy = "nearest"

[gslb.sticky]
datacenters = ["lon", "fra", "iad", "sin"]
policy = "hash"

[gslb.plain]
datacenters = ["lon", "fra", "iad"]

[gslb.noecs]
ecs = false
rules = [{ match = ["EU"], pool = "eu" }, { pool = "rest" }]
pools.eu = { datacenters = ["lon"] }
pools.rest = { datacenters = ["sin"] }

[gslb.two]
answers = 2
datacenters = ["lon", "fra", "iad"]

[gslb.every]
datacenters = ["lon", "fra", "iad", "sfo"]
policy = "all"

[gslb.v4only]
datacenters = ["sfo", "syd"]

[gslb.chain]
rules = [{ pool = "first" }]
pools.first = { datacenters = ["lon"], fallback = "second" }
pools.second = { datacenters = ["fra"], fallback = "third" }
pools.third = { datacenters = ["iad"] }

[gslb.fo]
ttl = 60
datacenters = ["lon", "fra"]

[gslb.lr]
ttl = 60
datacenters = ["lon", "fra"]
all-down = { addresses = ["192.0.2.99", "2001:db8::99"] }

[gslb.nd]
datacenters = ["lon", "fra"]
all-down = "nodata"

[gslb.sf]
datacenters = ["lon", "fra"]
all-down = "servfail"
"#;

const SOA_NEG: &str =
    "gslb.test. 300 IN SOA ns1.gslb.test. hostmaster.gslb.test. 1 14400 3600 1209600 300";

struct Fixture {
    s: TestServer,
    geo_dir: tempfile::TempDir,
}

impl Fixture {
    fn geoip(&self) -> PathBuf {
        self.geo_dir.path().join("city.mmdb")
    }

    fn dc(&self, name: &str) -> usize {
        let l = self.s.running().state.model();
        let m = &l.model;
        m.datacenters.by_name[name].0 as usize
    }

    /// Stores a snapshot where every datacenter is up except as `f` changes it.
    fn health(&self, f: impl FnOnce(&Self, &mut Snapshot)) {
        let n = self.s.running().state.model().model.datacenters.list.len();
        let mut snap = Snapshot::all_up(n);
        f(self, &mut snap);
        let serving = &self.s.running().state.serving;
        serving
            .health_sink(serving.health_generation())
            .publish(Arc::new(snap));
    }

    fn set(&self, snap: &mut Snapshot, name: &str, st: DcState) {
        let i = self.dc(name);
        snap.dcs[i] = st;
    }
}

fn down() -> DcState {
    DcState {
        healthy: false,
        ..DcState::UP
    }
}

fn admin(a: AdminState) -> DcState {
    DcState {
        admin: a,
        ..DcState::UP
    }
}

fn fixture() -> Fixture {
    let geo_dir = tempfile::tempdir().expect("tempdir");
    let db = geo_fixture(geo_dir.path());
    let s = TestServer::start_with(
        &[("datacenters.toml", DATACENTERS), ("gslb.test.toml", ZONE)],
        |o| o.geoip = vec![db],
    );
    Fixture { s, geo_dir }
}

fn a(name: &str, ttl: u32, addr: &str) -> String {
    let t = if addr.contains(':') { "AAAA" } else { "A" };
    format!("{name}.gslb.test. {ttl} IN {t} {addr}")
}

/// Queries `name` (relative to gslb.test) with an ECS option.
fn ask(s: &TestServer, name: &str, qtype: &str, ecs: Option<(&str, u8)>) -> Resp {
    let mut query = q(&format!("{name}.gslb.test"), qtype);
    if let Some((addr, prefix)) = ecs {
        query = query.ecs(ip(addr), prefix);
    }
    s.udp(&query)
}

/// (family, source, scope) of the response's ECS option.
fn scope(r: &Resp) -> (u16, u8, u8) {
    let (f, src, sc, _) = r.ecs().expect("response carries ECS");
    (f, src, sc)
}

#[test]
fn ecs_from_each_region_gets_its_datacenter_and_scope() {
    let f = fixture();
    let s = &f.s;
    // (ECS, expected answer, expected scope) for the geo name.
    let cases: &[((&str, u8), &str, u8)] = &[
        // London /24: the GeoIP network is /24.
        (("81.2.69.0", 24), "192.0.2.10", 24),
        // Inside the London network with a longer source: still the network's /24.
        (("81.2.69.16", 28), "192.0.2.10", 24),
        // Germany (no coordinates in the file), /16 network.
        (("85.0.3.0", 24), "192.0.2.10", 16),
        // Africa: /10 network, same pool as Europe.
        (("100.64.1.0", 24), "192.0.2.10", 10),
        // North America, outside the /25 subnet rule: the GeoIP /24 is not enough to tell
        // the subnet rule's /25 apart, so the scope is /25 clamped to the source /24.
        (("198.51.100.0", 24), "198.51.100.30", 24),
        // ...and with a /32 source, scope /25 (the subnet rule's prefix decides).
        (("198.51.100.7", 32), "198.51.100.30", 25),
        // Oceania: a /25 network, clamped to the /24 source.
        (("203.0.113.0", 24), "203.0.113.50", 24),
        (("203.0.113.9", 32), "203.0.113.50", 25),
        // Unknown to GeoIP: catch-all, scope = the source prefix (the lookup missing decides).
        (("192.0.2.0", 24), "198.51.100.30", 24),
    ];
    for &((addr, prefix), want, sc) in cases {
        let r = ask(s, "geo", "A", Some((addr, prefix)));
        assert_eq!(r.rcode(), ResponseCode::NoError, "{addr}/{prefix}");
        assert!(r.aa());
        assert_eq!(r.answers(), [a("geo", 30, want)], "{addr}/{prefix}");
        assert_eq!(scope(&r), (1, prefix, sc), "{addr}/{prefix}");
        let (_, _, _, bytes) = r.ecs().unwrap();
        let full = match ip(addr) {
            IpAddr::V4(x) => x.octets().to_vec(),
            IpAddr::V6(x) => x.octets().to_vec(),
        };
        assert_eq!(
            bytes,
            full[..usize::from(prefix).div_ceil(8)],
            "address echoed"
        );
    }
}

#[test]
fn nearest_with_and_without_bias_and_centroid() {
    let f = fixture();
    let s = &f.s;
    // London -> lon; Germany (centroid, no coordinates in the file) -> fra; Sydney -> syd;
    // California -> iad (the nearest with coordinates among lon/fra/iad/sin/syd... sin has
    // only a geo code: the centroid of Singapore).
    for (ecs, want, sc) in [
        (("81.2.69.0", 24), "192.0.2.10", 24),
        (("85.0.0.0", 24), "192.0.2.20", 16),
        (("203.0.113.0", 25), "203.0.113.60", 25),
        (("198.51.100.0", 24), "198.51.100.30", 24),
    ] {
        let r = ask(s, "near", "A", Some(ecs));
        assert_eq!(r.answers(), [a("near", 30, want)], "{ecs:?}");
        assert_eq!(scope(&r), (1, ecs.1, sc), "{ecs:?}");
    }
    // Singapore client (127/8 by source address) -> sin, located by its geo code's centroid.
    let r = ask(s, "near", "A", None);
    assert_eq!(r.answers(), [a("near", 30, "203.0.113.50")]);
    // Bias: fra is pulled 1000 km closer, so even London goes to Frankfurt (~640 km away).
    let r = ask(s, "biased", "A", Some(("81.2.69.0", 24)));
    assert_eq!(r.answers(), [a("biased", 30, "192.0.2.20")]);
    assert_eq!(scope(&r), (1, 24, 24));
}

#[test]
fn hash_scope_is_the_hash_granularity_and_subnets_stick() {
    let f = fixture();
    let s = &f.s;
    let r = ask(s, "sticky", "A", Some(("192.0.2.77", 32)));
    assert_eq!(scope(&r), (1, 32, 24));
    let first = r.answers();
    // Every address of the same /24 gets the same datacenter.
    for last in [1, 2, 100, 200, 254] {
        let r = ask(s, "sticky", "A", Some((&format!("192.0.2.{last}"), 32)));
        assert_eq!(r.answers(), first);
    }
    // A /16 source: the scope cannot be longer than what the resolver sent.
    let r = ask(s, "sticky", "A", Some(("10.1.0.0", 16)));
    assert_eq!(scope(&r), (1, 16, 16));
    // IPv6 clients hash by /56.
    let r = ask(s, "sticky", "AAAA", Some(("2001:db8:300::", 64)));
    assert_eq!(scope(&r), (2, 64, 56));
    let six = r.answers();
    let r = ask(s, "sticky", "AAAA", Some(("2001:db8:300:ff::", 64)));
    assert_eq!(r.answers(), six, "same /56");
    // Across many /24s more than one datacenter is used.
    let mut seen = std::collections::BTreeSet::new();
    for third in 0..64 {
        let r = ask(s, "sticky", "A", Some((&format!("10.9.{third}.0"), 24)));
        seen.insert(r.answers()[0].clone());
    }
    assert!(seen.len() >= 3, "{seen:?}");
}

#[test]
fn names_that_ignore_the_client_have_scope_zero() {
    let f = fixture();
    let s = &f.s;
    for name in ["plain", "two", "every", "v4only"] {
        let r = ask(s, name, "A", Some(("81.2.69.0", 24)));
        assert_eq!(scope(&r), (1, 24, 0), "{name}");
    }
    // A name with rules whose first rule is... not the catch-all, but `ecs = false`: the
    // source address decides (127.0.0.1 is in Singapore) and the scope is 0.
    let r = ask(s, "noecs", "A", Some(("81.2.69.0", 24)));
    assert_eq!(r.answers(), [a("noecs", 30, "203.0.113.50")]);
    assert_eq!(scope(&r), (1, 24, 0));
    // A single-pool name with one catch-all failover pool: scope 0.
    let r = ask(s, "chain", "A", Some(("198.51.100.0", 24)));
    assert_eq!(r.answers(), [a("chain", 30, "192.0.2.10")]);
    assert_eq!(scope(&r), (1, 24, 0));
}

#[test]
fn without_ecs_the_source_address_decides() {
    let f = fixture();
    let s = &f.s;
    // 127.0.0.1 is in AS-SG in the fixture: the asia pool.
    let r = ask(s, "geo", "A", None);
    assert_eq!(r.answers(), [a("geo", 30, "203.0.113.50")]);
    assert_eq!(r.ecs(), None, "no ECS in the query, none in the response");
    // Without EDNS at all.
    let r = s.udp(&q("geo.gslb.test", "A").no_edns());
    assert_eq!(r.answers(), [a("geo", 30, "203.0.113.50")]);
    assert!(r.opt().is_none());
    // Over TCP too.
    let r = s.tcp(&q("geo.gslb.test", "A").ecs(ip("81.2.69.0"), 24));
    assert_eq!(r.answers(), [a("geo", 30, "192.0.2.10")]);
    assert_eq!(scope(&r), (1, 24, 24));
}

#[test]
fn ecs_source_prefix_zero_means_scope_zero_and_the_source_decides() {
    let f = fixture();
    let s = &f.s;
    let r = ask(s, "geo", "A", Some(("0.0.0.0", 0)));
    assert_eq!(r.answers(), [a("geo", 30, "203.0.113.50")]);
    assert_eq!(r.ecs(), Some((1, 0, 0, vec![])));
    let r = ask(s, "sticky", "A", Some(("::", 0)));
    assert_eq!(r.ecs(), Some((2, 0, 0, vec![])));
}

#[test]
fn ipv6_clients() {
    let f = fixture();
    let s = &f.s;
    // Japan /48 -> asia -> sin; AAAA answers sin's IPv6 address.
    let r = ask(s, "geo", "AAAA", Some(("2001:db8:100::", 56)));
    assert_eq!(r.answers(), [a("geo", 30, "2001:db8:50::50")]);
    assert_eq!(scope(&r), (2, 56, 48));
    // Same client asking A: the IPv4 address of the same datacenter.
    let r = ask(s, "geo", "A", Some(("2001:db8:100::", 56)));
    assert_eq!(r.answers(), [a("geo", 30, "203.0.113.50")]);
    assert_eq!(scope(&r), (2, 56, 48));
    // Germany over IPv6 (no coordinates): europe -> lon; the /40 source clamps the /48.
    let r = ask(s, "geo", "AAAA", Some(("2001:db8:200::", 40)));
    assert_eq!(r.answers(), [a("geo", 30, "2001:db8:10::10")]);
    assert_eq!(scope(&r), (2, 40, 40));
    let r = ask(s, "geo", "AAAA", Some(("2001:db8:200::", 56)));
    assert_eq!(r.answers(), [a("geo", 30, "2001:db8:10::10")]);
    assert_eq!(scope(&r), (2, 56, 48));
    // Unknown IPv6 network: catch-all (world -> iad).
    let r = ask(s, "geo", "AAAA", Some(("2001:db8:abcd::", 48)));
    assert_eq!(r.answers(), [a("geo", 30, "2001:db8:30::30")]);
}

#[test]
fn ipv4_mapped_ecs_is_looked_up_as_ipv4() {
    let f = fixture();
    let s = &f.s;
    // ::ffff:81.2.69.0/120 is London's /24 written as IPv6.
    let r = ask(s, "geo", "A", Some(("::ffff:81.2.69.0", 120)));
    assert_eq!(r.answers(), [a("geo", 30, "192.0.2.10")]);
    // The scope is in the option's family: the /24 network is ::ffff:81.2.69.0/120.
    assert_eq!(scope(&r), (2, 120, 120));
    let r = ask(s, "sticky", "A", Some(("::ffff:192.0.2.0", 120)));
    assert_eq!(scope(&r), (2, 120, 120));
    let same = ask(s, "sticky", "A", Some(("192.0.2.0", 24)));
    assert_eq!(
        r.answers()[0].split(' ').next_back(),
        same.answers()[0].split(' ').next_back(),
        "mapped and plain IPv4 hash alike"
    );
}

/// A query for geo.gslb.test A with one raw ECS option.
fn raw_ecs(family: u16, source: u8, scope: u8, addr: &[u8]) -> Q {
    let mut opt = vec![0, 8];
    opt.extend_from_slice(&((4 + addr.len()) as u16).to_be_bytes());
    opt.extend_from_slice(&family.to_be_bytes());
    opt.push(source);
    opt.push(scope);
    opt.extend_from_slice(addr);
    let mut query = q("geo.gslb.test", "A");
    query.edns = Some((1232, 0, opt));
    query
}

#[test]
fn invalid_ecs_is_formerr() {
    let f = fixture();
    let s = &f.s;
    let cases: &[(&str, Q)] = &[
        (
            "source prefix 33 for IPv4",
            raw_ecs(1, 33, 0, &[81, 2, 69, 0, 0]),
        ),
        (
            "source prefix 129 for IPv6",
            raw_ecs(2, 129, 0, &[0x20; 17]),
        ),
        (
            "bits set beyond the prefix",
            raw_ecs(1, 23, 0, &[198, 51, 101]),
        ),
        ("bits set beyond a /7", raw_ecs(1, 7, 0, &[81])),
        (
            "non-zero scope in the query",
            raw_ecs(1, 24, 8, &[81, 2, 69]),
        ),
        ("unknown family", raw_ecs(3, 24, 0, &[81, 2, 69])),
        (
            "address longer than the prefix",
            raw_ecs(1, 16, 0, &[81, 2, 0]),
        ),
    ];
    for (what, query) in cases {
        let r = s.udp(query);
        assert_eq!(r.rcode(), ResponseCode::FormErr, "{what}");
        assert!(r.answers().is_empty(), "{what}");
    }
    // A valid one on the same server still answers.
    let r = s.udp(&raw_ecs(1, 24, 0, &[81, 2, 69]));
    assert_eq!(r.answers(), [a("geo", 30, "192.0.2.10")]);
}

#[test]
fn subnet_rules_beat_geo_rules() {
    let f = fixture();
    let s = &f.s;
    // 198.51.100.200 is NA (rule 1) by GeoIP, but the later subnet rule 198.51.100.128/25
    // sends it to asia.
    let r = ask(s, "geo", "A", Some(("198.51.100.200", 32)));
    assert_eq!(r.answers(), [a("geo", 30, "203.0.113.50")]);
    assert_eq!(scope(&r), (1, 32, 25));
    let r = ask(s, "geo", "A", Some(("198.51.100.128", 25)));
    assert_eq!(r.answers(), [a("geo", 30, "203.0.113.50")]);
    assert_eq!(scope(&r), (1, 25, 25));
    // The other half of the same /24 stays with the geo rule.
    let r = ask(s, "geo", "A", Some(("198.51.100.127", 32)));
    assert_eq!(r.answers(), [a("geo", 30, "198.51.100.30")]);
    assert_eq!(scope(&r), (1, 32, 25));
}

#[test]
fn only_the_asked_family() {
    let f = fixture();
    let s = &f.s;
    let r = ask(s, "plain", "AAAA", None);
    assert_eq!(r.answers(), [a("plain", 30, "2001:db8:10::10")]);
    // sfo and syd have no IPv6: NODATA with the SOA, not an all-down answer.
    let r = ask(s, "v4only", "AAAA", Some(("81.2.69.0", 24)));
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert!(r.aa());
    assert!(r.answers().is_empty());
    assert_eq!(r.authority(), [SOA_NEG]);
    let r = ask(s, "v4only", "A", None);
    assert_eq!(r.answers(), [a("v4only", 30, "198.51.100.40")]);
    // `all` over a pool with one IPv4-only member: AAAA lists the three others.
    let r = ask(s, "every", "AAAA", None);
    assert_eq!(
        r.answers(),
        [
            a("every", 30, "2001:db8:10::10"),
            a("every", 30, "2001:db8:20::20"),
            a("every", 30, "2001:db8:30::30"),
        ]
    );
    // Other types at a GSLB name: NODATA.
    let r = ask(s, "plain", "TXT", None);
    assert!(r.answers().is_empty());
    assert_eq!(r.authority(), [SOA_NEG]);
}

#[test]
fn static_cname_to_a_gslb_name() {
    let f = fixture();
    let s = &f.s;
    let r = s.udp(&q("alias.gslb.test", "A").ecs(ip("81.2.69.0"), 24));
    assert_eq!(
        r.answers(),
        [
            "alias.gslb.test. 3600 IN CNAME plain.gslb.test.".to_string(),
            a("plain", 30, "192.0.2.10"),
        ]
    );
    f.health(|f, snap| f.set(snap, "lon", down()));
    let r = s.udp(&q("alias.gslb.test", "AAAA"));
    assert_eq!(
        r.answers(),
        [
            "alias.gslb.test. 3600 IN CNAME plain.gslb.test.".to_string(),
            a("plain", 30, "2001:db8:20::20"),
        ]
    );
}

#[test]
fn health_failover_drain_admin_down_and_fallback() {
    let f = fixture();
    let s = &f.s;
    assert_eq!(
        ask(s, "plain", "A", None).answers(),
        [a("plain", 30, "192.0.2.10")]
    );
    f.health(|f, snap| f.set(snap, "lon", down()));
    assert_eq!(
        ask(s, "plain", "A", None).answers(),
        [a("plain", 30, "192.0.2.20")]
    );
    // Drained and admin-down datacenters are never answered, whatever the probes say.
    f.health(|f, snap| {
        f.set(snap, "lon", admin(AdminState::Drain));
        f.set(snap, "fra", admin(AdminState::Down));
    });
    for _ in 0..20 {
        assert_eq!(
            ask(s, "plain", "A", None).answers(),
            [a("plain", 30, "198.51.100.30")]
        );
    }
    // Admin up overrides a failing probe.
    f.health(|f, snap| {
        f.set(
            snap,
            "lon",
            DcState {
                healthy: false,
                admin: AdminState::Up,
                ..DcState::UP
            },
        );
    });
    assert_eq!(
        ask(s, "plain", "A", None).answers(),
        [a("plain", 30, "192.0.2.10")]
    );
    // Fallback chain: first (lon) -> second (fra) -> third (iad).
    f.health(|f, snap| f.set(snap, "lon", down()));
    assert_eq!(
        ask(s, "chain", "A", None).answers(),
        [a("chain", 30, "192.0.2.20")]
    );
    f.health(|f, snap| {
        f.set(snap, "lon", down());
        f.set(snap, "fra", admin(AdminState::Drain));
    });
    assert_eq!(
        ask(s, "chain", "A", None).answers(),
        [a("chain", 30, "198.51.100.30")]
    );
    // answers = 2 skips the down one.
    assert_eq!(
        ask(s, "two", "A", None).answers(),
        [a("two", 30, "198.51.100.30")],
        "only one usable"
    );
    // A geo pool whose datacenters are down does not fall back without `fallback`: the
    // name's all-down (fail-open) answers the pool as if up, TTL halved.
    let r = ask(s, "geo", "A", Some(("81.2.69.0", 24)));
    assert_eq!(r.answers(), [a("geo", 15, "192.0.2.10")]);
}

#[test]
fn all_down_modes() {
    let f = fixture();
    let s = &f.s;
    f.health(|f, snap| {
        f.set(snap, "lon", down());
        f.set(snap, "fra", admin(AdminState::Drain));
    });
    // fail-open: as if up, first in order, TTL halved.
    let r = ask(s, "fo", "A", None);
    assert_eq!(r.answers(), [a("fo", 30, "192.0.2.10")]);
    let r = ask(s, "fo", "AAAA", None);
    assert_eq!(r.answers(), [a("fo", 30, "2001:db8:10::10")]);
    // Last-resort addresses, per family, TTL halved.
    let r = ask(s, "lr", "A", None);
    assert_eq!(r.answers(), [a("lr", 30, "192.0.2.99")]);
    let r = ask(s, "lr", "AAAA", None);
    assert_eq!(r.answers(), [a("lr", 30, "2001:db8::99")]);
    // NODATA with the SOA.
    let r = ask(s, "nd", "A", None);
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert!(r.answers().is_empty());
    assert_eq!(r.authority(), [SOA_NEG]);
    // SERVFAIL, with ECS still echoed.
    let r = ask(s, "sf", "A", Some(("81.2.69.0", 24)));
    assert_eq!(r.rcode(), ResponseCode::ServFail);
    assert!(r.answers().is_empty());
    assert_eq!(scope(&r), (1, 24, 0));
    // Back up: normal answers and full TTLs.
    f.health(|_, _| {});
    assert_eq!(
        ask(s, "fo", "A", None).answers(),
        [a("fo", 60, "192.0.2.10")]
    );
    assert_eq!(
        ask(s, "lr", "A", None).answers(),
        [a("lr", 60, "192.0.2.10")]
    );
    assert_eq!(
        ask(s, "sf", "A", None).answers(),
        [a("sf", 30, "192.0.2.10")]
    );
}

#[test]
fn answers_two_and_policy_all() {
    let f = fixture();
    let s = &f.s;
    assert_eq!(
        ask(s, "two", "A", None).answers(),
        [a("two", 30, "192.0.2.10"), a("two", 30, "192.0.2.20")]
    );
    assert_eq!(
        ask(s, "every", "A", None).answers(),
        [
            a("every", 30, "192.0.2.10"),
            a("every", 30, "192.0.2.20"),
            a("every", 30, "198.51.100.30"),
            a("every", 30, "198.51.100.40"),
        ]
    );
    f.health(|f, snap| f.set(snap, "fra", down()));
    assert_eq!(
        ask(s, "every", "A", None).answers(),
        [
            a("every", 30, "192.0.2.10"),
            a("every", 30, "198.51.100.30"),
            a("every", 30, "198.51.100.40"),
        ]
    );
    assert_eq!(
        ask(s, "two", "A", None).answers(),
        [a("two", 30, "192.0.2.10"), a("two", 30, "198.51.100.30")]
    );
}

/// An optional ECS (address, source prefix).
type Ecs<'a> = Option<(&'a str, u8)>;

fn explain(f: &Fixture, args: &[&str]) -> String {
    let zones = f.s.dir.path().to_str().unwrap().to_string();
    let geo = f.geoip().to_str().unwrap().to_string();
    let out = Command::new(bin())
        .arg("explain")
        .args(args)
        .args(["--zones", &zones, "--geoip", &geo])
        .output()
        .expect("run gslbd explain");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn explain_end_to_end_agrees_with_the_server() {
    let f = fixture();
    let s = &f.s;
    // North America by geo.
    let text = explain(
        &f,
        &[
            "geo.gslb.test",
            "A",
            "--client",
            "127.0.0.1",
            "--ecs",
            "198.51.100.0/24",
        ],
    );
    let r = ask(s, "geo", "A", Some(("198.51.100.0", 24)));
    assert_eq!(r.answers(), [a("geo", 30, "198.51.100.30")]);
    assert!(
        text.contains("rule: #1 (matched by geo) -> pool america"),
        "{text}"
    );
    assert!(text.contains("pool america (policy failover)"), "{text}");
    assert!(text.contains("NA-US-CA"), "{text}");
    assert!(
        text.contains("final: answer -> [198.51.100.30] ttl 30 ecs scope /24"),
        "{text}"
    );
    // The subnet rule, IPv6, and no ECS (source address decides), each compared with the
    // server.
    let cases: &[(&str, &str, Ecs, &str)] = &[
        (
            "geo",
            "A",
            Some(("198.51.100.200", 32)),
            "rule: #2 (matched by subnet) -> pool asia",
        ),
        (
            "geo",
            "AAAA",
            Some(("2001:db8:100::", 56)),
            "rule: #3 (matched by geo) -> pool asia",
        ),
        ("geo", "A", None, "rule: #3 (matched by geo) -> pool asia"),
        (
            "geo",
            "A",
            Some(("192.0.2.0", 24)),
            "rule: #4 (matched by catch-all) -> pool world",
        ),
        (
            "near",
            "A",
            Some(("85.0.0.0", 24)),
            "pool default (policy nearest)",
        ),
        (
            "sticky",
            "A",
            Some(("10.9.8.0", 24)),
            "pool default (policy hash)",
        ),
    ];
    for &(name, qtype, ecs, rule) in cases {
        let ecs_arg = ecs.map(|(x, p)| format!("{x}/{p}"));
        let fqdn = format!("{name}.gslb.test");
        let mut args = vec![fqdn.as_str(), qtype, "--client", "127.0.0.1"];
        if let Some(e) = &ecs_arg {
            args.extend(["--ecs", e.as_str()]);
        }
        let text = explain(&f, &args);
        assert!(text.contains(rule), "{text}");
        let r = ask(s, name, qtype, ecs);
        let addrs: Vec<String> = r
            .answers()
            .iter()
            .map(|x| x.rsplit(' ').next().unwrap().to_string())
            .collect();
        let sc = r.ecs().map_or(0, |e| e.2);
        let ttl = r.msg.answers[0].ttl;
        let want = format!(
            "final: answer -> [{}] ttl {ttl} ecs scope /{sc}",
            addrs.join(", ")
        );
        assert!(text.contains(&want), "want {want:?} in\n{text}");

        let mut json_args = args.clone();
        json_args.push("--json");
        let j: serde_json::Value =
            serde_json::from_str(&explain(&f, &json_args)).expect("explain --json is JSON");
        assert_eq!(j["answer"], serde_json::json!(addrs), "{j}");
        assert_eq!(j["ecs_scope"], serde_json::json!(sc), "{j}");
        assert_eq!(j["ttl"], serde_json::json!(ttl), "{j}");
        assert_eq!(j["outcome"], "answer");
        assert!(
            j["trace"]["pools"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
        );
    }
    // The JSON names the rule and pool.
    let j: serde_json::Value = serde_json::from_str(&explain(
        &f,
        &[
            "geo.gslb.test",
            "--client",
            "127.0.0.1",
            "--ecs",
            "81.2.69.0/24",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(j["trace"]["rule"], 0);
    assert_eq!(j["trace"]["matched_by"], "geo");
    assert_eq!(j["trace"]["pools"][0]["pool"], "europe");
    assert_eq!(j["location"]["country"], "GB");
    assert_eq!(j["answer"], serde_json::json!(["192.0.2.10"]));
}

/// Errors from loading a zones directory made of `datacenters.toml` and `zone.toml`.
fn load_errors(zone_tail: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("datacenters.toml"), DATACENTERS).unwrap();
    let zone = format!(
        "origin = \"gslb.test.\"\n[soa]\nmname = \"ns1.gslb.test.\"\nrname = \"h.gslb.test.\"\n[records.\"@\"]\nNS = [\"ns1\"]\n[records.ns1]\nA = [\"192.0.2.1\"]\n{zone_tail}"
    );
    std::fs::write(dir.path().join("zone.toml"), zone).unwrap();
    let e = match gslbd::server::load_model(dir.path()) {
        Ok(_) => panic!("loaded a broken zone:\n{zone_tail}"),
        Err(e) => e,
    };
    let prefix = format!("{}: ", dir.path().join("zone.toml").display());
    e.0.iter()
        .map(|x| {
            let s = x.to_string();
            assert!(s.starts_with(&prefix), "{s}");
            s[prefix.len()..].to_string()
        })
        .collect()
}

#[test]
fn gslb_validation_errors_name_file_and_key_path() {
    let cases: &[(&str, &str)] = &[
        (
            "[gslb.www]\ndatacenters = [\"lon\", \"nope\"]",
            "gslb.www.datacenters[1]: unknown datacenter \"nope\" (declared: fra, iad, lon, sfo, sin, syd)",
        ),
        (
            "[gslb.www]\nrules = [{ pool = \"nope\" }]\npools.a = { datacenters = [\"lon\"] }",
            "gslb.www.rules[0].pool: unknown pool \"nope\" (this name's pools: a)",
        ),
        (
            "[gslb.www]\nrules = [{ pool = \"a\" }]\npools.a = { datacenters = [\"lon\"], fallback = \"zz\" }",
            "gslb.www.pools.a.fallback: unknown pool \"zz\" (this name's pools: a)",
        ),
        (
            "[gslb.www]\nrules = [{ pool = \"a\" }]\npools.a = { datacenters = [\"lon\"], fallback = \"b\" }\npools.b = { datacenters = [\"fra\"], fallback = \"a\" }",
            "gslb.www.pools.a.fallback: fallback cycle: a -> b -> a",
        ),
        (
            "[gslb.www]\nrules = [{ pool = \"a\" }, { match = [\"EU\"], pool = \"a\" }]\npools.a = { datacenters = [\"lon\"] }",
            "gslb.www.rules[1]: comes after the catch-all rule gslb.www.rules[0] and can never match",
        ),
        (
            "[gslb.www]\nrules = [{ match = [\"EU\"], pool = \"a\" }]\npools.a = { datacenters = [\"lon\"] }",
            "gslb.www.rules: has no catch-all: end with a rule without `match`, e.g. { pool = \"world\" }",
        ),
        (
            "[gslb.www]\nrules = [{ match = [\"EU\", \"XX\"], pool = \"a\" }, { pool = \"a\" }]\npools.a = { datacenters = [\"lon\"] }",
            "gslb.www.rules[0].match[1]: \"XX\": XX is not an ISO 3166-1 country code",
        ),
        (
            "[gslb.www]\nrules = [{ match = [\"AS-DE\"], pool = \"a\" }, { pool = \"a\" }]\npools.a = { datacenters = [\"lon\"] }",
            "gslb.www.rules[0].match[0]: \"AS-DE\": DE is not in AS",
        ),
        (
            "[gslb.www]\nrules = [{ match = [\"192.0.2.1/24\"], pool = \"a\" }, { pool = \"a\" }]\npools.a = { datacenters = [\"lon\"] }",
            "gslb.www.rules[0].match[0]: \"192.0.2.1/24\" has bits set beyond the /24 prefix",
        ),
        (
            "[gslb.www]\nrules = [{ match = [\"10.0.0.0/33\"], pool = \"a\" }, { pool = \"a\" }]\npools.a = { datacenters = [\"lon\"] }",
            "gslb.www.rules[0].match[0]: \"10.0.0.0/33\": prefix length must be 0..=32",
        ),
        (
            "[gslb.www]\npools.a = { datacenters = [\"lon\"] }\npools.b = { datacenters = [\"fra\"] }",
            "gslb.www.rules: is required when a name has several pools (which clients use which pool?)",
        ),
        (
            "[gslb.www]\ndatacenters = [\"lon\"]\npolicy = \"fastest\"",
            "gslb.www.policy: \"fastest\" is not a policy (expected failover, nearest, latency, load, weighted, round-robin, random, hash or all)",
        ),
        (
            "[gslb.www]\ndatacenters = [\"lon\"]\nall-down = \"panic\"",
            "gslb.www.all-down: \"panic\" is not an all-down behaviour (expected fail-open, nodata, servfail or { addresses = [...] })",
        ),
    ];
    for (tail, want) in cases {
        let errs = load_errors(tail);
        assert!(
            errs.iter().any(|e| e == want),
            "want {want:?}\ngot {errs:#?}\nfor\n{tail}"
        );
    }
    // `gslbd check` prints them with the file and exits 1.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("datacenters.toml"), DATACENTERS).unwrap();
    std::fs::write(
        dir.path().join("zone.toml"),
        "origin = \"gslb.test.\"\n[soa]\nmname = \"ns1\"\nrname = \"h\"\n[records.\"@\"]\nNS = [\"ns1.other.test.\"]\n[gslb.www]\ndatacenters = [\"nope\"]\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["check", "--zones", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("zone.toml: gslb.www.datacenters[0]: unknown datacenter \"nope\""),
        "{err}"
    );
}
