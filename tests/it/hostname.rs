//! Hostname targets against a real upstream: a second gslbd started by the test serves the
//! targets' zone (`upstream.test.`) with short TTLs, and the server under test resolves them
//! through it (`--resolver`). CNAME answers per region and their ECS scope, flattened answers
//! and ALIAS following an upstream change within its TTL, serve-stale until max-stale when
//! the upstream stops, probes of the resolved addresses, mixed pools, the apex.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;

use crate::common::*;

/// The upstream zone: every target at TTL 2.
const UPSTREAM: &str = r#"
origin = "upstream.test."
ttl = 2
[soa]
mname = "ns1.upstream.test."
rname = "hostmaster.upstream.test."
minimum = 2
[records."@"]
NS = ["ns1"]
[records.ns1]
A = ["127.0.0.1"]
[records.eu]
A = ["192.0.2.101", "192.0.2.102"]
AAAA = ["2001:db8::101"]
[records.na]
A = ["192.0.2.111"]
[records.lb]
CNAME = ["eu"]
[records.v6only]
AAAA = ["2001:db8::121"]
"#;

const DATACENTERS: &str = r#"
[datacenters.eu-lb]
target = "eu.upstream.test."
[datacenters.na-lb]
target = "na.upstream.test."
[datacenters.chain-lb]
target = "lb.upstream.test."
[datacenters.v6-lb]
target = "v6only.upstream.test."
[datacenters.missing-lb]
target = "missing.upstream.test."
[datacenters.fra]
addresses = ["198.51.100.10", "2001:db8:10::10"]
[datacenters.iad]
addresses = ["198.51.100.20"]
"#;

/// The API token of the servers under test.
const TOKEN: &str = "hostname-test-token";

fn upstream() -> TestServer {
    TestServer::start(&[("upstream.test.toml", UPSTREAM)])
}

/// The server under test, resolving through `up` (TTL floor 1 s), with `zone` as
/// example.com's extra text and `max_stale`.
fn server(
    up: &TestServer,
    zone: &str,
    max_stale: Duration,
    geoip: Option<&std::path::Path>,
) -> TestServer {
    let text = format!("{}\n{zone}", minimal_zone!());
    let dcs = DATACENTERS.to_string();
    let upstream = up.addr;
    let geo = geoip.map(|p| p.to_path_buf());
    TestServer::start_with(
        &[("dcs.toml", &dcs), ("example.com.toml", &text)],
        move |o| {
            o.resolver.servers = vec![upstream];
            o.resolver.min_ttl = Duration::from_secs(1);
            o.resolver.max_stale = max_stale;
            o.resolver.timeout = Duration::from_millis(500);
            o.geoip = geo.into_iter().collect();
            o.api = Some("127.0.0.1:0".parse().unwrap());
            o.api_token = Some(TOKEN.into());
        },
    )
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

/// The server has published a fresh resolution of `name`.
fn fresh(s: &TestServer, name: &str) -> bool {
    let serving = s.running().state.serving.load();
    serving.snapshot.resolutions.as_ref().is_some_and(|r| {
        r.list
            .iter()
            .any(|e| &*e.name == name && e.state == gslbd::resolve::State::Fresh)
    })
}

/// (rcode, answer lines without TTLs, the TTLs).
fn ask(s: &TestServer, q: &Q) -> (ResponseCode, Vec<String>, Vec<u32>) {
    let r = s.udp(q);
    let lines = r
        .msg
        .answers
        .iter()
        .map(|rec| format!("{} {} {}", rec.name, rec.record_type(), rec.data))
        .collect();
    let ttls = r.msg.answers.iter().map(|rec| rec.ttl).collect();
    (r.rcode(), lines, ttls)
}

fn lines(s: &TestServer, name: &str, qtype: &str) -> Vec<String> {
    ask(s, &q(name, qtype)).1
}

#[test]
fn cname_answers_per_region_carry_the_scope_of_the_decision() {
    let up = upstream();
    let dir = tempfile::tempdir().unwrap();
    let geo = crate::gslb::geo_fixture(dir.path());
    let rules = r#"rules = [
  { match = ["EU"], pool = "eu" },
  { match = ["NA"], pool = "na" },
  { pool = "eu" },
]"#;
    let zone = format!(
        "[gslb.app]\n{rules}\npools.eu = {{ datacenters = [\"eu-lb\"] }}\npools.na = {{ datacenters = [\"na-lb\"] }}\n\
         [gslb.app-addr]\n{rules}\npools.eu = {{ datacenters = [\"fra\"] }}\npools.na = {{ datacenters = [\"iad\"] }}\n"
    );
    let s = server(&up, &zone, Duration::from_secs(60), Some(&geo));
    let london: IpAddr = "81.2.69.0".parse().unwrap();
    let sf: IpAddr = "198.51.100.0".parse().unwrap();
    // Until they resolve the names are all-down, and fail-open hands the CNAME out anyway.
    wait_until(Duration::from_secs(10), "both targets resolved", || {
        fresh(&s, "eu.upstream.test.") && fresh(&s, "na.upstream.test.")
    });
    for (client, target, qtypes) in [
        (london, "eu", &["A", "AAAA", "TXT"][..]),
        // na has no AAAA: skipped for AAAA like an IPv4-only datacenter (NODATA below).
        (sf, "na", &["A", "TXT"][..]),
    ] {
        for &qtype in qtypes {
            let r = s.udp(&q("app.example.com", qtype).ecs(client, 24));
            assert_eq!(r.rcode(), ResponseCode::NoError);
            // The target is outside our zones: the chain ends with the CNAME.
            assert_eq!(
                r.answers(),
                [format!(
                    "app.example.com. 30 IN CNAME {target}.upstream.test."
                )],
                "{client} {qtype}"
            );
            let addr = s.udp(&q("app-addr.example.com", "A").ecs(client, 24));
            let (scope, addr_scope) = (r.ecs().unwrap().2, addr.ecs().unwrap().2);
            assert_eq!(
                scope, addr_scope,
                "same decision, same scope ({client} {qtype})"
            );
            assert_eq!(scope, 24, "a geo rule decided: the GeoIP network's prefix");
        }
    }
    let r = s.udp(&q("app.example.com", "AAAA").ecs(sf, 24));
    assert_eq!((r.rcode(), r.msg.answers.len()), (ResponseCode::NoError, 0));
    assert_eq!(r.ecs().unwrap().2, 24);
}

#[test]
fn flattened_and_alias_follow_an_upstream_change_within_its_ttl() {
    let up = upstream();
    let zone = r#"
[records.alias]
ALIAS = ["lb.upstream.test."]
[gslb.flat]
flatten = true
datacenters = ["eu-lb", "fra"]
"#;
    let s = server(&up, zone, Duration::from_secs(60), None);
    let eu = ["192.0.2.101", "192.0.2.102"];
    wait_until(Duration::from_secs(10), "flattened answer", || {
        lines(&s, "flat.example.com", "A") == eu.map(|a| format!("flat.example.com. A {a}"))
    });
    let (_, _, ttls) = ask(&s, &q("flat.example.com", "A"));
    assert!(
        ttls.iter().all(|t| *t <= 2),
        "at most the upstream TTL left: {ttls:?}"
    );
    assert_eq!(
        lines(&s, "flat.example.com", "AAAA"),
        ["flat.example.com. AAAA 2001:db8::101"]
    );
    assert_eq!(
        lines(&s, "alias.example.com", "A"),
        eu.map(|a| format!("alias.example.com. A {a}")),
        "the ALIAS follows the upstream CNAME"
    );
    assert_eq!(
        ask(&s, &q("flat.example.com", "MX")).0,
        ResponseCode::NoError
    );
    assert!(lines(&s, "flat.example.com", "MX").is_empty());

    // The upstream changes: seen within its TTL (2 s) plus a refresh.
    let changed = UPSTREAM.replace(
        "A = [\"192.0.2.101\", \"192.0.2.102\"]",
        "A = [\"192.0.2.103\"]",
    );
    std::fs::write(up.zone_path("upstream.test.toml"), changed).unwrap();
    up.reload().expect("upstream reloads");
    let took = wait_until(Duration::from_secs(8), "the new address", || {
        lines(&s, "flat.example.com", "A") == ["flat.example.com. A 192.0.2.103"]
            && lines(&s, "alias.example.com", "A") == ["alias.example.com. A 192.0.2.103"]
    });
    // Refreshed at 80 % of the 2 s TTL: seen within the TTL, plus the lookup itself and the
    // scheduling slack of a loaded test machine.
    assert!(
        took < Duration::from_secs(2 + 3),
        "within the TTL and a refresh: {took:?}"
    );
}

#[test]
fn stale_until_max_stale_then_down() {
    let up = upstream();
    let zone = r#"
[records.alias]
ALIAS = ["eu.upstream.test."]
[gslb.flat]
flatten = true
datacenters = ["eu-lb", "iad"]
"#;
    // max-stale 5 s: long enough to look at the stale state over the API on a loaded machine.
    let s = server(&up, zone, Duration::from_secs(5), None);
    wait_until(Duration::from_secs(10), "resolved", || {
        lines(&s, "flat.example.com", "A").len() == 2
    });
    let eu = target_in(&get_json(&s, "/status")["hostnames"], "eu.upstream.test.");
    assert_eq!(
        (
            eu["state"].as_str(),
            eu["stale"].as_bool(),
            eu["lookup"].as_str()
        ),
        (Some("fresh"), Some(false), Some("resolved")),
        "{eu}"
    );
    assert_eq!(metric(&s, "gslbd_stale_answers_total", &[]), Some(0.0));
    drop(up);
    // Past the TTL the last good addresses stay, as stale answers (TTL 30, capped by the
    // name's 30), and are counted.
    wait_until(Duration::from_secs(10), "stale answers", || {
        let (_, l, ttls) = ask(&s, &q("flat.example.com", "A"));
        l.len() == 2 && ttls.iter().all(|t| *t == 30)
    });
    let (rc, l, _) = ask(&s, &q("alias.example.com", "A"));
    assert_eq!(
        (rc, l.len()),
        (ResponseCode::NoError, 2),
        "the ALIAS serves stale too"
    );
    assert!(
        state_of(&s, "eu.upstream.test.") == Some(gslbd::resolve::State::Stale),
        "the published resolution says stale"
    );
    // /status, /explain and /metrics say so: the target, its addresses, their age.
    let eu = target_in(&get_json(&s, "/status")["hostnames"], "eu.upstream.test.");
    assert_eq!(
        (eu["state"].as_str(), eu["stale"].as_bool()),
        (Some("stale"), Some(true)),
        "{eu}"
    );
    assert_eq!(
        eu["addresses"],
        serde_json::json!(["192.0.2.101", "192.0.2.102", "2001:db8::101"])
    );
    assert!(
        eu["age_secs"].as_u64().is_some_and(|a| a >= 2),
        "older than the TTL of 2 s: {eu}"
    );
    assert_eq!(
        eu["used_by"],
        serde_json::json!(["alias alias.example.com.", "datacenter eu-lb"])
    );
    let ex = get_json(&s, "/explain?name=flat.example.com&type=A");
    let t = target_in(&ex, "eu.upstream.test.");
    assert_eq!(
        (
            t["state"].as_str(),
            t["stale"].as_bool(),
            t["addresses"].as_array().map(Vec::len)
        ),
        (Some("stale"), Some(true), Some(3)),
        "{ex}"
    );
    let host = [("hostname", "eu.upstream.test.")];
    assert_eq!(metric(&s, "gslbd_hostname_stale", &host), Some(1.0));
    assert_eq!(metric(&s, "gslbd_hostname_usable", &host), Some(1.0));
    assert!(metric(&s, "gslbd_hostname_age_seconds", &host).is_some_and(|a| a >= 2.0));
    assert!(metric(&s, "gslbd_stale_answers_total", &[]).is_some_and(|n| n >= 2.0));
    // Stale means the TTL ran out without a new answer; the lookup under way then fails
    // (the upstream is gone), which /status counts and explains.
    wait_until(Duration::from_secs(5), "a failed lookup in /status", || {
        let eu = target_in(&get_json(&s, "/status")["hostnames"], "eu.upstream.test.");
        eu["lookups_failed"].as_u64().is_some_and(|n| n >= 1) && eu["error"].is_string()
    });
    // After max-stale the target counts as down: the other datacenter answers, the ALIAS
    // has nothing (SERVFAIL: resolvers retry).
    wait_until(Duration::from_secs(15), "max-stale passed", || {
        lines(&s, "flat.example.com", "A") == ["flat.example.com. A 198.51.100.20"]
    });
    assert_eq!(
        ask(&s, &q("alias.example.com", "A")).0,
        ResponseCode::ServFail
    );
    let eu = target_in(&get_json(&s, "/status")["hostnames"], "eu.upstream.test.");
    assert_eq!(
        (eu["state"].as_str(), eu["stale"].as_bool()),
        (Some("expired"), Some(false)),
        "{eu}"
    );
    assert_eq!(metric(&s, "gslbd_hostname_usable", &host), Some(0.0));
    assert_eq!(metric(&s, "gslbd_hostname_stale", &host), Some(0.0));
}

/// GET `path` on the server's API, as JSON.
fn get_json(s: &TestServer, path: &str) -> serde_json::Value {
    let url = format!("http://{}{path}", s.running().api_addr.expect("api"));
    s.block_on(async {
        let r = reqwest::get(&url).await.expect("api answers");
        assert!(r.status().is_success(), "{url}: {}", r.status());
        let text = r.text().await.expect("body");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
    })
}

/// The object anywhere in `v` whose `target` is `name` (a hostname target's trace).
fn target_in(v: &serde_json::Value, name: &str) -> serde_json::Value {
    fn find(v: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
        match v {
            serde_json::Value::Object(o) => {
                if o.get("target").and_then(|t| t.as_str()) == Some(name) {
                    return Some(v.clone());
                }
                o.values().find_map(|x| find(x, name))
            }
            serde_json::Value::Array(a) => a.iter().find_map(|x| find(x, name)),
            _ => None,
        }
    }
    find(v, name).unwrap_or_else(|| panic!("no target {name} in {v}"))
}

/// The sum of the samples of `/metrics` that match; `None` when there is none.
fn metric(s: &TestServer, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let url = format!("http://{}/metrics", s.running().api_addr.expect("api"));
    let text = s.block_on(async { reqwest::get(&url).await.unwrap().text().await.unwrap() });
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("metrics parse");
    let values: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The published state of `name`'s resolution.
fn state_of(s: &TestServer, name: &str) -> Option<gslbd::resolve::State> {
    let serving = s.running().state.serving.load();
    let r = serving.snapshot.resolutions.as_ref()?;
    r.list.iter().find(|e| &*e.name == name).map(|e| e.state)
}

#[test]
fn addresses_that_fail_their_check_are_not_answered() {
    let good = HealthHttp::start_on("127.0.0.31:0".parse().unwrap());
    let port = good.port();
    let bad = HealthHttp::start_on(format!("127.0.0.32:{port}").parse().unwrap());
    bad.set(HealthMode::Status(503));
    let up = TestServer::start(&[(
        "upstream.test.toml",
        &UPSTREAM.replace(
            "[records.na]\nA = [\"192.0.2.111\"]",
            "[records.na]\nA = [\"127.0.0.31\", \"127.0.0.32\"]",
        ),
    )]);
    let zone = format!(
        r#"
[checks.web]
type = "http"
port = {port}
path = "/health"
interval = "200ms"
timeout = "100ms"
rise = 1
fall = 1
[datacenters.checked]
target = "na.upstream.test."
check = "web"
[datacenters.all-up]
target = "na.upstream.test."
check = "web"
min-up = "all"
[gslb.one]
flatten = true
datacenters = ["checked", "fra"]
[gslb.every]
flatten = true
datacenters = ["all-up", "fra"]
"#
    );
    let s = server(&up, &zone, Duration::from_secs(60), None);
    wait_until(Duration::from_secs(10), "only the passing address", || {
        lines(&s, "one.example.com", "A") == ["one.example.com. A 127.0.0.31"]
    });
    // min-up = "all": one failing address takes the datacenter out.
    wait_until(Duration::from_secs(10), "all-up down", || {
        lines(&s, "every.example.com", "A") == ["every.example.com. A 198.51.100.10"]
    });
    // The probes name the target: Host is the target name by default (no check names one).
    let hosts = good.hosts();
    assert!(!hosts.is_empty());
    assert!(
        hosts
            .iter()
            .all(|h| h.as_deref() == Some("na.upstream.test")),
        "{hosts:?}"
    );
    // The failing address recovers: both answered, and "all" is met.
    bad.set(HealthMode::Healthy);
    wait_until(Duration::from_secs(10), "both addresses", || {
        lines(&s, "one.example.com", "A").len() == 2
            && lines(&s, "every.example.com", "A").len() == 2
    });
    // Every address failing: the hostname datacenter is down, fra answers.
    good.set(HealthMode::Status(503));
    bad.set(HealthMode::Status(503));
    wait_until(Duration::from_secs(10), "fra", || {
        lines(&s, "one.example.com", "A") == ["one.example.com. A 198.51.100.10"]
    });
}

#[test]
fn probes_keep_their_state_when_the_resolved_set_changes() {
    let a = HealthHttp::start_on("127.0.0.41:0".parse().unwrap());
    let port = a.port();
    let b = HealthHttp::start_on(format!("127.0.0.42:{port}").parse().unwrap());
    let c = HealthHttp::start_on(format!("127.0.0.43:{port}").parse().unwrap());
    let upstream_zone = |addrs: &str| {
        UPSTREAM.replace(
            "[records.na]\nA = [\"192.0.2.111\"]",
            &format!("[records.na]\nA = [{addrs}]"),
        )
    };
    let up = TestServer::start(&[(
        "upstream.test.toml",
        &upstream_zone("\"127.0.0.41\", \"127.0.0.42\""),
    )]);
    let zone = format!(
        r#"
[checks.web]
type = "http"
port = {port}
path = "/health"
interval = "200ms"
timeout = "100ms"
[datacenters.checked]
target = "na.upstream.test."
check = "web"
[gslb.one]
flatten = true
datacenters = ["checked"]
"#
    );
    let s = server(&up, &zone, Duration::from_secs(60), None);
    let targets = |s: &TestServer| {
        let h = s.block_on(s.running().state.health_handle()).unwrap();
        let st = s.block_on(h.status()).unwrap();
        let d = st
            .datacenters
            .iter()
            .find(|d| d.name == "checked")
            .unwrap()
            .clone();
        d.targets
            .iter()
            .map(|t| (t.addr.clone(), t.probes))
            .collect::<Vec<_>>()
    };
    wait_until(Duration::from_secs(10), "two targets probed", || {
        let t = targets(&s);
        t.len() == 2 && t.iter().all(|(_, n)| *n >= 3)
    });
    let before = targets(&s);
    let probes_41 = before
        .iter()
        .find(|(a, _)| a.starts_with("127.0.0.41"))
        .unwrap()
        .1;
    std::fs::write(
        up.zone_path("upstream.test.toml"),
        upstream_zone("\"127.0.0.41\", \"127.0.0.43\""),
    )
    .unwrap();
    up.reload().unwrap();
    wait_until(Duration::from_secs(10), "the new set probed", || {
        let t = targets(&s);
        t.len() == 2
            && t.iter()
                .any(|(a, n)| a.starts_with("127.0.0.43") && *n >= 1)
    });
    let after = targets(&s);
    let kept = after
        .iter()
        .find(|(a, _)| a.starts_with("127.0.0.41"))
        .unwrap()
        .1;
    assert!(
        kept >= probes_41,
        "127.0.0.41 kept its counters: {before:?} -> {after:?}"
    );
    assert!(
        !after.iter().any(|(a, _)| a.starts_with("127.0.0.42")),
        "{after:?}"
    );
    // 127.0.0.42 is no longer probed.
    let hits = b.hits();
    std::thread::sleep(Duration::from_millis(600));
    assert!(b.hits() <= hits + 1, "a retired address stops being probed");
    assert!(c.hits() > 0 && a.hits() > 0);
    assert_eq!(
        lines(&s, "one.example.com", "A"),
        [
            "one.example.com. A 127.0.0.41",
            "one.example.com. A 127.0.0.43"
        ]
    );
}

#[test]
fn mixed_pools_answer_in_the_shape_of_the_chosen_datacenter() {
    let up = upstream();
    let zone = r#"
[records.www]
A = ["192.0.2.80"]
[gslb.mixed]
datacenters = ["eu-lb", "fra"]
[gslb.mixed-flat]
flatten = true
datacenters = ["eu-lb", "iad"]
answers = 2
[gslb.v6]
datacenters = ["v6-lb", "fra"]
[gslb.broken]
datacenters = ["missing-lb", "iad"]
"#;
    let s = server(&up, zone, Duration::from_secs(60), None);
    wait_until(Duration::from_secs(10), "resolved", || {
        lines(&s, "mixed.example.com", "A") == ["mixed.example.com. CNAME eu.upstream.test."]
    });
    let h = s.block_on(s.running().state.health_handle()).unwrap();
    // The hostname datacenter goes down: the address datacenter answers with addresses.
    s.block_on(h.set_admin_by_name("eu-lb", gslbd::health::AdminState::Down))
        .unwrap();
    assert_eq!(
        lines(&s, "mixed.example.com", "A"),
        ["mixed.example.com. A 198.51.100.10"]
    );
    assert!(
        lines(&s, "mixed.example.com", "MX").is_empty(),
        "NODATA for other types then"
    );
    s.block_on(h.set_admin_by_name("eu-lb", gslbd::health::AdminState::Obey))
        .unwrap();
    // Flattened and merged with an address datacenter for answers = 2.
    assert_eq!(
        lines(&s, "mixed-flat.example.com", "A"),
        [
            "mixed-flat.example.com. A 192.0.2.101",
            "mixed-flat.example.com. A 192.0.2.102",
            "mixed-flat.example.com. A 198.51.100.20"
        ]
    );
    // A target without IPv4 is skipped for A (as an IPv6-only datacenter is), not down.
    assert_eq!(
        lines(&s, "v6.example.com", "A"),
        ["v6.example.com. A 198.51.100.10"]
    );
    assert_eq!(
        lines(&s, "v6.example.com", "AAAA"),
        ["v6.example.com. CNAME v6only.upstream.test."]
    );
    // NXDOMAIN upstream: the datacenter counts as down.
    wait_until(Duration::from_secs(10), "missing target down", || {
        lines(&s, "broken.example.com", "A") == ["broken.example.com. A 198.51.100.20"]
    });
}

#[test]
fn apex_gslb_names_are_flattened_and_cnames_into_our_zones_are_followed() {
    let up = upstream();
    let zone = r#"
[records.edge]
A = ["192.0.2.90"]
AAAA = ["2001:db8::90"]
[gslb."@"]
datacenters = ["eu-lb"]
[gslb.local]
datacenters = ["edge-dc"]
"#;
    let dcs = r#"
[datacenters.edge-dc]
target = "edge.example.com."
"#;
    let text = format!("{}\n{zone}", minimal_zone!());
    let upstream = up.addr;
    let s = TestServer::start_with(
        &[
            ("dcs.toml", &format!("{DATACENTERS}{dcs}")),
            ("example.com.toml", &text),
        ],
        move |o| {
            o.resolver.servers = vec![upstream];
            o.resolver.min_ttl = Duration::from_secs(1);
        },
    );
    wait_until(Duration::from_secs(10), "apex flattened", || {
        lines(&s, "example.com", "A").len() == 2
    });
    assert_eq!(
        lines(&s, "example.com", "A")[0],
        "example.com. A 192.0.2.101"
    );
    // SOA and NS stay at the apex: no CNAME there.
    assert_eq!(
        lines(&s, "example.com", "NS"),
        ["example.com. NS ns1.example.com."]
    );
    // A CNAME to a name in our zones is followed like a static one, with that name's TTL.
    let r = s.udp(&q("local.example.com", "AAAA"));
    assert_eq!(
        r.answers(),
        [
            "local.example.com. 30 IN CNAME edge.example.com.",
            "edge.example.com. 3600 IN AAAA 2001:db8::90"
        ]
    );
    // The same over TCP.
    let mut c = std::net::TcpStream::connect(s.addr).unwrap();
    let raw = tcp_exchange(&mut c, &q("local.example.com", "A").bytes()).unwrap();
    assert_eq!(
        Resp::parse(raw).answers(),
        [
            "local.example.com. 30 IN CNAME edge.example.com.",
            "edge.example.com. 3600 IN A 192.0.2.90"
        ]
    );
}

#[test]
fn weighted_pools_pick_hostname_datacenters_in_proportion() {
    let up = upstream();
    let zone = r#"
[gslb.spread]
policy = "weighted"
datacenters = [{ dc = "eu-lb", weight = 3 }, { dc = "na-lb", weight = 1 }, { dc = "fra", weight = 0 }]
[gslb.spread-flat]
policy = "weighted"
flatten = true
datacenters = [{ dc = "eu-lb", weight = 1 }, { dc = "iad", weight = 1 }]
"#;
    let s = server(&up, zone, Duration::from_secs(60), None);
    wait_until(Duration::from_secs(10), "both targets resolved", || {
        fresh(&s, "eu.upstream.test.") && fresh(&s, "na.upstream.test.")
    });
    let n = 600;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..n {
        let l = lines(&s, "spread.example.com", "A");
        assert_eq!(l.len(), 1, "one CNAME: {l:?}");
        *counts.entry(l[0].clone()).or_default() += 1;
    }
    let eu = counts
        .get("spread.example.com. CNAME eu.upstream.test.")
        .copied()
        .unwrap_or(0);
    let na = counts
        .get("spread.example.com. CNAME na.upstream.test.")
        .copied()
        .unwrap_or(0);
    // Weight 0 never answers while another member has weight; 3:1 otherwise (450 expected,
    // standard deviation about 11: the bounds are more than 5 of them away).
    assert_eq!(eu + na, n, "{counts:?}");
    assert!((390..=510).contains(&eu), "3:1 expected: {counts:?}");
    // Flattened: the target's addresses or the address datacenter's, both in turn.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..100 {
        seen.insert(lines(&s, "spread-flat.example.com", "A"));
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            vec![
                "spread-flat.example.com. A 192.0.2.101".to_string(),
                "spread-flat.example.com. A 192.0.2.102".to_string()
            ],
            vec!["spread-flat.example.com. A 198.51.100.20".to_string()],
        ]
    );
}

#[test]
fn capacity_and_pushed_load_steer_hostname_datacenters() {
    let up = upstream();
    let zone = r#"
[datacenters.big-lb]
target = "eu.upstream.test."
capacity = 9
[datacenters.small-lb]
target = "na.upstream.test."
capacity = 1
[gslb.byload]
policy = "load"
datacenters = ["big-lb", "small-lb"]
"#;
    let s = server(&up, zone, Duration::from_secs(60), None);
    wait_until(Duration::from_secs(10), "both targets resolved", || {
        fresh(&s, "eu.upstream.test.") && fresh(&s, "na.upstream.test.")
    });
    let big = |n: usize| {
        (0..n)
            .filter(|_| {
                let l = lines(&s, "byload.example.com", "A");
                assert_eq!(l.len(), 1, "one CNAME: {l:?}");
                l[0] == "byload.example.com. CNAME eu.upstream.test."
            })
            .count()
    };
    // No load known: shares by capacity, 9:1 (450 of 500 expected, sd about 7).
    let n = big(500);
    assert!((410..=490).contains(&n), "9:1 by capacity: {n} of 500");
    // Pushed loads: big at 0.95 (over max-load 0.8), small at 0.1. Spare capacity 0.45 vs
    // 0.9, and big gives up 0.7/1.35 of its share to small's headroom: about 16 % for big.
    let api = s.running().api_addr.expect("api");
    for (dc, load) in [("big-lb", 0.95), ("small-lb", 0.1)] {
        let status = s.block_on(async {
            reqwest::Client::new()
                .put(format!("http://{api}/datacenters/{dc}/health"))
                .bearer_auth(TOKEN)
                .body(format!(
                    r#"{{"state": "up", "load": {load}, "ttl": "60s"}}"#
                ))
                .send()
                .await
                .expect("push")
                .status()
        });
        assert!(status.is_success(), "push {dc}: {status}");
    }
    wait_until(Duration::from_secs(5), "the loads published", || {
        big(50) < 25
    });
    let n = big(500);
    assert!(
        (40..=130).contains(&n),
        "about 16 % for the loaded one: {n} of 500"
    );
}
