//! GSLB end to end where a scenario file cannot say it: the real server on loopback with a
//! GeoIP City fixture built by `mmdb-writer`, shared datacenters in `datacenters.toml` and
//! GSLB names in a zone file. Hash stickiness over many subnets, `gslbd explain` run as a
//! binary and compared with the server's answer, and the validation errors of GSLB names.
//! The answers themselves (regions and ECS scopes, families, health, all-down modes) are
//! scenarios: tests/scenarios/gslb-*.toml.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{IpVersion, Value, Writer};

use crate::common::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// The City fixture (also used by the AF_XDP tests, `xdp.rs`): networks in EU, NA, OC, AF, AS (IPv4 and IPv6), with and without
/// coordinates, and 127.0.0.0/8 in Singapore so queries without ECS (from 127.0.0.1) have a
/// location of their own.
pub fn geo_fixture(dir: &Path) -> PathBuf {
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
        (
            "127.0.0.0/8",
            geo_city("AS", "SG", &[], Some((1.29, 103.85))),
        ),
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
pub const DATACENTERS: &str = r#"
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

pub const ZONE: &str = r#"
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

[gslb.sticky]
datacenters = ["lon", "fra", "iad", "sin"]
policy = "hash"
"#;

struct Fixture {
    s: TestServer,
    geo_dir: tempfile::TempDir,
}

impl Fixture {
    fn geoip(&self) -> PathBuf {
        self.geo_dir.path().join("city.mmdb")
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
    // ECS source prefix 0: the source address decides, scope 0.
    let r = ask(s, "sticky", "A", Some(("::", 0)));
    assert_eq!(r.ecs(), Some((2, 0, 0, vec![])));
    // IPv4-mapped ECS hashes as the IPv4 subnet it is, scope in the option's family.
    let r = ask(s, "sticky", "A", Some(("::ffff:192.0.2.0", 120)));
    assert_eq!(scope(&r), (2, 120, 120));
    let same = ask(s, "sticky", "A", Some(("192.0.2.0", 24)));
    assert_eq!(
        r.answers()[0].split(' ').next_back(),
        same.answers()[0].split(' ').next_back(),
        "mapped and plain IPv4 hash alike"
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
            "[gslb.www]\npools.a = { datacenters = [\"lon\", \"fra\", \"lon\"] }",
            "gslb.www.pools.a.datacenters[2]: datacenter \"lon\" is already in this pool",
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
