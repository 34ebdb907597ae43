//! `gslbd simulate`: the simulator against the real server (same zone, same probe seed, real
//! health endpoints), the dynamics of each policy on virtual time, resolver caches (TTL, ECS
//! scope, clamping), zone changes, and the command's outputs, exit codes and errors.

use std::path::Path;
use std::time::{Duration, Instant};

use gslbd::geo::GeoDb;
use gslbd::probe::{Jitter, TargetId};
use gslbd::simulate::{self, Check, Report, Scenario};

use crate::common::{HealthHttp, HealthMode, TestServer, bin, q};

// ---------------------------------------------------------------------------------------------
// Zones and runs.

/// An http check `web` every 5 s (timeout 2 s, rise 2, fall 3) reading `/load`, plus `extra`.
fn check(extra: &str) -> String {
    format!(
        "[checks.web]\ntype = \"http\"\npath = \"/health\"\nload = \"/load\"\ninterval = \"5s\"\n\
         timeout = \"2s\"\nrise = 2\nfall = 3\n{extra}\n"
    )
}

/// A checked datacenter answering `addr`.
fn dc(name: &str, addr: &str, extra: &str) -> String {
    format!("[datacenters.{name}]\naddresses = [\"{addr}\"]\ncheck = \"web\"\n{extra}\n")
}

/// Zone example.com. with `body` (its checks, datacenters and GSLB names).
fn zone(body: &str) -> String {
    format!(
        "origin = \"example.com.\"\n[soa]\nmname = \"ns1.example.com.\"\n\
         rname = \"hostmaster.example.com.\"\nserial = 1\nminimum = 60\n\
         [records.\"@\"]\nNS = [\"ns1\"]\n[records.ns1]\nA = [\"192.0.2.53\"]\n\n{body}"
    )
}

/// Three checked datacenters fra, ams, lhr (capacity 2000 each) and the names in `names`.
fn three(check_extra: &str, names: &str) -> String {
    zone(&format!(
        "{}{}{}{}{names}",
        check(check_extra),
        dc("fra", "198.51.100.10", "capacity = 2000"),
        dc("ams", "198.51.100.20", "capacity = 2000"),
        dc("lhr", "198.51.100.30", "capacity = 2000"),
    ))
}

fn zones_dir(zone_text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.com.toml"), zone_text).unwrap();
    dir
}

fn run_in(dir: &Path, scenario: &str) -> Report {
    let s = Scenario::parse(scenario, &dir.join("scenario.toml")).unwrap_or_else(|e| panic!("{e}"));
    simulate::run(dir, &s, &GeoDb::empty()).unwrap_or_else(|e| panic!("{e}"))
}

fn run(zone_text: &str, scenario: &str) -> Report {
    let dir = zones_dir(zone_text);
    run_in(dir.path(), scenario)
}

fn share(r: &Report, name: &str, target: &str) -> f64 {
    r.name(name)
        .unwrap_or_else(|| panic!("no name {name}"))
        .shares
        .iter()
        .find(|s| s.target == target)
        .map_or(0.0, |s| s.share)
}

fn metric(r: &Report, expr: &str) -> f64 {
    // "<metric> < inf" always holds; its value is the first one shown.
    let o = Check::parse(&format!("{expr} >= 0"))
        .unwrap()
        .eval(r)
        .unwrap_or_else(|e| panic!("{e}"));
    let v = o.values[0].rsplit(" = ").next().unwrap().to_string();
    if v == "never" {
        return f64::INFINITY;
    }
    // Values print as "12.5s", "1m12s", "33.5 %" or plain numbers.
    if let Some(p) = v.strip_suffix(" %") {
        return p.parse::<f64>().unwrap() / 100.0;
    }
    if v.ends_with('s') && v.chars().any(|c| c.is_ascii_digit()) {
        let mut total = 0.0;
        let mut num = String::new();
        for c in v.chars() {
            match c {
                'h' => total += num.parse::<f64>().unwrap() * 3600.0,
                'm' => total += num.parse::<f64>().unwrap() * 60.0,
                's' => total += num.parse::<f64>().unwrap(),
                _ => {
                    num.push(c);
                    continue;
                }
            }
            num.clear();
        }
        return total;
    }
    v.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. The simulator against the real server.

/// What one real run and its simulation found.
struct Compared {
    real_detect: f64,
    sim_detect: f64,
    real_recover: f64,
    sim_recover: f64,
    real_share: f64,
    sim_share: f64,
}

/// Probes may not run further than this from their schedule for the comparison to hold (a
/// heavily loaded machine delays the server's tasks; the run is then repeated). A third of the
/// jitter window the detection times must agree within: the failure and the recovery happen
/// 150 ms from the nearest probe, so every probe still sees the same state in both runs, and
/// the time the fallback holds the answers moves by at most 2 x 20 ms of about 3 s (1.3 %).
const LATE: Duration = Duration::from_millis(20);
/// Shares are compared from this time on.
const FROM: Duration = Duration::from_millis(300);

/// One datacenter `a` checked on a real endpoint (interval 300 ms, jitter 60 ms, rise 2,
/// fall 3), `b` without a check; www fails over from a to b. The server runs with the same
/// probe seed as the simulation, so both probe on the same schedule (the time origin is found
/// from the endpoint's first request). The endpoint fails halfway between two probes and
/// recovers likewise; detection and recovery at gslbd agree within one jitter window, and the
/// share of answers for b within 2 %. The simulation fails and recovers the endpoint when the
/// real run did, on the probe schedule's clock (its origin corrected by the probes' median
/// offset). About 4 s per attempt; an attempt whose real probes ran more than 20 ms off their
/// schedule (a loaded machine) is repeated, at most three times.
#[test]
fn simulation_agrees_with_the_real_server() {
    let _serial = crate::probe_e2e::serial();
    let jitter = Duration::from_millis(60);
    let mut last = String::new();
    for attempt in 1..=3 {
        match compare_once() {
            Ok(c) => {
                let window = jitter.as_secs_f64();
                assert!(
                    (c.real_detect - c.sim_detect).abs() <= window,
                    "detection differs by more than the jitter window"
                );
                assert!(
                    (c.real_recover - c.sim_recover).abs() <= window,
                    "recovery differs by more than the jitter window"
                );
                assert!(
                    (c.real_share - c.sim_share).abs() <= 0.02,
                    "shares of b differ by more than 2 %"
                );
                return;
            }
            Err(e) => {
                println!("attempt {attempt}: {e}; repeating");
                last = e;
            }
        }
    }
    panic!("the real server never kept its probe schedule within {LATE:?}: {last}");
}

fn compare_once() -> Result<Compared, String> {
    const SEED: u64 = 0x5151;
    let interval = Duration::from_millis(300);
    let jitter = Duration::from_millis(60);
    let ea = HealthHttp::start();
    let dcs = format!(
        "[checks.ca]\ntype = \"http\"\npath = \"/health\"\nport = {}\ninterval = \"300ms\"\n\
         timeout = \"100ms\"\nrise = 2\nfall = 3\njitter = \"60ms\"\n\n\
         [datacenters.a]\naddresses = [\"192.0.2.1\"]\ncheck = \"ca\"\ncheck-addresses = [\"127.0.0.1\"]\n\n\
         [datacenters.b]\naddresses = [\"192.0.2.2\"]\n",
        ea.port()
    );
    let z = zone("[gslb.www]\nttl = 30\ndatacenters = [\"a\", \"b\"]\npolicy = \"failover\"\n");
    let srv = TestServer::start_with(&[("dcs.toml", &dcs), ("example.com.toml", &z)], |o| {
        o.probe_seed = Some(SEED);
    });
    let t_wait = Instant::now();
    while ea.first_hit().is_none() {
        assert!(t_wait.elapsed() < Duration::from_secs(3), "no probe");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The workers started first_delay before the first probe.
    let j = Jitter { seed: SEED };
    let first = ea.first_hit().unwrap();
    let origin = first - j.first_delay(TargetId(0), jitter);
    let start = tokio::time::Instant::from_std(first);
    let due =
        |k: u64| -> Duration { j.due(TargetId(0), start, k, interval, jitter).into_std() - origin };
    // Fail and recover halfway between two probes, so both runs see the same probe results.
    let mid_after = |t: Duration| -> Duration {
        let k = (0..).find(|&k| due(k) >= t).unwrap();
        (due(k) + due(k + 1)) / 2
    };
    let t_fail = mid_after(Duration::from_millis(900));
    let t_up = mid_after(t_fail + Duration::from_millis(1400));
    let end = t_up + Duration::from_millis(1200);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;

    // The real run: queries every 2 ms, the published health polled as often.
    let a_id = srv
        .block_on(srv.running().state.health_handle())
        .unwrap()
        .id_of("a")
        .unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let (mut failed_at, mut up_at) = (None::<Instant>, None::<Instant>);
    let (mut down_seen, mut up_seen) = (None::<Instant>, None::<Instant>);
    let mut answers = 0u32;
    let (mut held, mut time_b, mut time_all) = (None::<(Duration, bool)>, 0.0, 0.0);
    let mut id = 0u16;
    let mut buf = [0u8; 512];
    loop {
        let now = Instant::now();
        let t = now - origin;
        if t >= end {
            break;
        }
        if failed_at.is_none() && t >= t_fail {
            ea.set(HealthMode::Status(503));
            failed_at = Some(Instant::now());
        }
        if up_at.is_none() && t >= t_up {
            ea.set(HealthMode::Healthy);
            up_at = Some(Instant::now());
        }
        let healthy = srv
            .running()
            .state
            .serving
            .load()
            .snapshot
            .get(a_id)
            .healthy;
        if failed_at.is_some() && down_seen.is_none() && !healthy {
            down_seen = Some(now);
        }
        if up_at.is_some() && up_seen.is_none() && healthy {
            up_seen = Some(now);
        }
        id = id.wrapping_add(1);
        let mut query = q("www.example.com.", "A");
        query.id = id;
        sock.send_to(&query.bytes(), srv.addr).unwrap();
        loop {
            let (n, _) = sock.recv_from(&mut buf).expect("answer");
            if n > 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                let r = crate::common::Resp::parse(buf[..n].to_vec());
                let got = r.answers().first().cloned().unwrap_or_default();
                // Shares are compared from 300 ms on (the loop starts after the first probe),
                // each answer holding until the next query (the loop's pace varies on a
                // loaded machine).
                let is_b = got.ends_with("192.0.2.2");
                if let Some((t0, b0)) = held
                    && t >= FROM
                {
                    let dt = (t - t0.max(FROM)).as_secs_f64();
                    time_all += dt;
                    if b0 {
                        time_b += dt;
                    }
                }
                held = Some((t, is_b));
                answers += 1;
                break;
            }
        }
        let next = now + Duration::from_millis(2);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    // Did the server keep to the schedule the simulation computes? The origin came from the
    // first probe alone, which a busy machine may have delayed: it is corrected by the median
    // offset of all probes, and each probe must be within LATE of the corrected schedule.
    let hits = ea.hit_times();
    let offsets: Vec<f64> = hits
        .iter()
        .enumerate()
        .map(|(k, h)| (*h - origin).as_secs_f64() - due(k as u64).as_secs_f64())
        .collect();
    let mut sorted = offsets.clone();
    sorted.sort_by(f64::total_cmp);
    let shift = sorted[sorted.len() / 2];
    for (k, off) in offsets.iter().enumerate() {
        if (off - shift).abs() > LATE.as_secs_f64() {
            return Err(format!(
                "probe {k} ran {:.1} ms off its schedule (median offset {:.1} ms)",
                (off - shift) * 1000.0,
                shift * 1000.0
            ));
        }
    }
    // Scenario times: when the endpoint really failed and recovered, on the corrected clock.
    let on_schedule = |i: Instant| (i - origin).as_secs_f64() * 1000.0 - shift * 1000.0;
    let (sim_fail, sim_up) = (on_schedule(failed_at.unwrap()), on_schedule(up_at.unwrap()));
    let real_detect = (down_seen.expect("a seen down") - failed_at.unwrap()).as_secs_f64();
    let real_recover = (up_seen.expect("a seen up again") - up_at.unwrap()).as_secs_f64();
    let real_share = time_b / time_all;

    // The same scenario, simulated.
    let scenario = format!(
        r#"
[run]
duration = "{}ms"
step = "10ms"
seed = {SEED}
warmup = "0s"

[datacenters.a]
latency = "1ms"

[[populations]]
subnets = ["127.0.0.1/32"]
clients = 1
rate = 20000
[populations.resolvers]
cache = false
ecs = false

[[events]]
at = "{}ms"
datacenter = "a"
health = "down"
fail = "status"

[[events]]
at = "{}ms"
datacenter = "a"
health = "up"
"#,
        ms(end),
        sim_fail,
        sim_up
    );
    let r = run_in(srv.dir.path(), &scenario);
    let inc = &r.incidents[0];
    let c = Compared {
        real_detect,
        sim_detect: inc.detected_after_s.expect("detected"),
        real_recover,
        sim_recover: inc.recovered_after_s.expect("recovered"),
        real_share,
        sim_share: {
            let s: Vec<f64> = r
                .share_series("www.example.com", "b")
                .iter()
                .filter(|(t, _)| *t >= FROM.as_secs_f64() - 1e-9)
                .map(|(_, v)| *v)
                .collect();
            s.iter().sum::<f64>() / s.len() as f64
        },
    };
    println!(
        "failure at {:.0} ms, recovery at {:.0} ms, end {:.0} ms after the probe workers started",
        ms(t_fail),
        ms(t_up),
        ms(end)
    );
    println!(
        "detection: real {:.1} ms, simulated {:.1} ms; recovery: real {:.1} ms, simulated {:.1} ms; share of b: real {:.2} % ({answers} queries), simulated {:.2} %",
        c.real_detect * 1000.0,
        c.sim_detect * 1000.0,
        c.real_recover * 1000.0,
        c.sim_recover * 1000.0,
        c.real_share * 100.0,
        c.sim_share * 100.0
    );
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// 2. Policy dynamics.

/// `latency`: with a 20 ms margin the leader keeps the traffic under jittery latencies; with
/// 1 ms it flaps.
#[test]
fn latency_margin_prevents_flapping_under_jittery_latency() {
    let scenario = r#"
[run]
duration = "30m"
seed = 5
[datacenters.fra]
latency = "20ms"
latency-jitter = "15ms"
[datacenters.ams]
latency = "21ms"
latency-jitter = "15ms"
[[populations]]
subnets = ["10.0.0.0/16"]
clients = 200
rate = 0.2
"#;
    let name = |margin: &str| {
        format!(
            "[gslb.api]\nttl = 30\ndatacenters = [\"fra\", \"ams\"]\npolicy = \"latency\"\nmargin = \"{margin}\"\n"
        )
    };
    let calm = run(&three("", &name("20ms")), scenario);
    let flappy = run(&three("", &name("1ms")), scenario);
    let (c, f) = (
        metric(&calm, "flaps_per_client"),
        metric(&flappy, "flaps_per_client"),
    );
    println!("flaps per client: margin 20ms {c:.3}, margin 1ms {f:.3}");
    assert!(c < 0.05, "the margin should hold the leader: {c}");
    assert!(f > 1.0, "without a margin the answer should flap: {f}");
}

/// `load`: with room in the pool, spill-over keeps every datacenter under max-load (failover
/// would overload the first); where a datacenter's share by spare capacity would take it
/// past max-load, spill-over holds it there on average. It does not cap the peaks: the
/// overloaded member gets nothing until its next probe shows it below max-load again, so it
/// swings around it (the load figure is what the endpoint counted since the previous probe).
#[test]
fn load_spill_over_keeps_datacenters_under_max_load() {
    let scenario = |fra_load: f64| {
        format!(
            r#"
[run]
duration = "20m"
step = "10s"
seed = 11
[datacenters.fra]
capacity = 3000
load = {fra_load}
[datacenters.ams]
capacity = 2000
load = 0.1
[datacenters.lhr]
capacity = 2000
load = 0.1
[[populations]]
subnets = ["10.0.0.0/12"]
clients = 2500
rate = 1
[populations.resolvers]
count = 250
"#
        )
    };
    let name = |policy: &str| {
        format!(
            "[gslb.shop]\nttl = 20\ndatacenters = [\"fra\", \"ams\", \"lhr\"]\npolicy = \"{policy}\"\n"
        )
    };
    // Room for everyone: fra busy at 50 %.
    let r = run(
        &three("", &(name("load") + "max-load = 0.8\n")),
        &scenario(0.5),
    );
    for d in ["fra", "ams", "lhr"] {
        let p = metric(&r, &format!("peak_load(\"{d}\")"));
        println!("load, fra at 50 %: peak of {d} {:.1} %", p * 100.0);
        assert!(p < 0.8, "{d} peaks at {p}");
    }
    let f = run(&three("", &name("failover")), &scenario(0.5));
    let p = metric(&f, "peak_load(\"fra\")");
    println!("failover: peak of fra {:.1} %", p * 100.0);
    assert!(p > 1.2, "failover sends everything to fra: {p}");
    // fra busy at 70 %: its share by spare capacity alone (max-load 1) takes it past 80 %.
    let spill = run(
        &three("", &(name("load") + "max-load = 0.8\n")),
        &scenario(0.7),
    );
    let plain = run(
        &three("", &(name("load") + "max-load = 1.0\n")),
        &scenario(0.7),
    );
    let (ms, mp) = (
        metric(&spill, "mean_load(\"fra\")"),
        metric(&plain, "mean_load(\"fra\")"),
    );
    let peak = metric(&spill, "peak_load()");
    println!(
        "load, fra at 70 %: mean of fra {:.1} % with max-load 0.8, {:.1} % without; highest peak {:.1} %",
        ms * 100.0,
        mp * 100.0,
        peak * 100.0
    );
    assert!(ms <= 0.81, "{ms}");
    assert!(mp > 0.83, "{mp}");
    assert!(peak < 0.9, "{peak}");
}

/// Slow start: after a recovery the datacenter's share of new answers follows the ramp.
#[test]
fn slow_start_ramps_as_configured() {
    let z = three(
        "slow-start = \"60s\"",
        "[gslb.www]\nttl = 30\ndatacenters = [\"fra\", \"ams\"]\npolicy = \"failover\"\n",
    );
    let r = run(
        &z,
        r#"
[run]
duration = "6m"
step = "5s"
seed = 3
[[populations]]
subnets = ["10.0.0.0/16"]
clients = 50
rate = 20
[populations.resolvers]
cache = false
[[events]]
at = "1m"
datacenter = "fra"
health = "down"
[[events]]
at = "3m"
datacenter = "fra"
health = "up"
"#,
    );
    let back = r
        .events
        .iter()
        .find(|m| m.source == "gslbd" && m.label == "gslbd: fra up")
        .expect("fra back")
        .at_s;
    let series = r.share_series("www.example.com", "fra");
    let mut checked = 0;
    for (t, s) in &series {
        let mid = t + 2.5 - back;
        if mid > 2.5 && mid < 57.5 {
            let ramp = mid / 60.0;
            assert!(
                (s - ramp).abs() < 0.1,
                "at {mid:.1} s after up: share {s:.3}, ramp {ramp:.3}"
            );
            checked += 1;
        }
        if mid > 65.0 {
            assert!(*s > 0.99, "after the ramp fra has everything: {s}");
        }
    }
    assert!(checked >= 10, "{checked} buckets on the ramp");
}

/// `hash`: when a datacenter fails for good, only its clients move, each once; nobody else
/// changes datacenter.
#[test]
fn hash_keeps_clients_on_their_datacenter_except_the_failed_ones() {
    let z = zone(&format!(
        "{}{}{}{}{}[gslb.static]\nttl = 60\ndatacenters = [\"fra\", \"ams\", \"lhr\", \"iad\"]\npolicy = \"hash\"\n",
        check(""),
        dc("fra", "198.51.100.10", ""),
        dc("ams", "198.51.100.20", ""),
        dc("lhr", "198.51.100.30", ""),
        dc("iad", "192.0.2.10", ""),
    ));
    let r = run(
        &z,
        r#"
[run]
duration = "20m"
seed = 9
[[populations]]
subnets = ["10.0.0.0/8"]
clients = 2000
rate = 0.1
[populations.resolvers]
count = 50
[[events]]
at = "5m"
datacenter = "ams"
health = "down"
"#,
    );
    let n = r.name("static.example.com").unwrap();
    // Clients on ams before the failure: its share of the first 5 minutes.
    let before: Vec<f64> = r
        .share_series("static.example.com", "ams")
        .iter()
        .filter(|(t, _)| *t < 290.0)
        .map(|(_, s)| *s)
        .collect();
    let on_ams = before.iter().sum::<f64>() / before.len() as f64;
    println!(
        "hash: {:.1} % of clients on ams, flips per client {:.3}, flaps {:.3}, at most {}",
        on_ams * 100.0,
        n.flips_per_client,
        n.flaps_per_client,
        n.max_flips
    );
    assert!((0.15..0.35).contains(&on_ams), "{on_ams}");
    assert_eq!(
        n.flaps_per_client, 0.0,
        "no client left a usable datacenter"
    );
    assert_eq!(n.max_flips, 1, "the moved clients moved once");
    assert!(
        (n.flips_per_client - on_ams).abs() < 0.02,
        "only ams's clients moved"
    );
}

/// TTL (as resolvers treat it) decides how long clients are still sent to a failed
/// datacenter: at least the TTL of the answers cached before the failure, at most detection +
/// TTL; resolvers that clamp TTLs to 120 s, or keep answers 5 minutes, keep them there longer.
#[test]
fn ttl_and_resolver_clamping_decide_how_long_stale_answers_live() {
    let drain = |ttl: u32, resolvers: &str| {
        let z = three(
            "",
            &format!(
                "[gslb.www]\nttl = {ttl}\ndatacenters = [\"fra\", \"ams\"]\npolicy = \"failover\"\n"
            ),
        );
        let r = run(
            &z,
            &format!(
                r#"
[run]
duration = "20m"
seed = 4
[[populations]]
subnets = ["10.0.0.0/16"]
clients = 500
rate = 2
[populations.resolvers]
count = 100
{resolvers}
[[events]]
at = "5m"
datacenter = "fra"
health = "down"
"#
            ),
        );
        let inc = &r.incidents[0];
        assert!(inc.drained, "{inc:?}");
        (
            inc.detected_after_s.unwrap(),
            inc.last_sent_after_s.unwrap(),
        )
    };
    for (ttl, resolvers, stale) in [
        (30, "", 30.0),
        (120, "", 120.0),
        (30, "min-ttl = { share = 1.0, ttl = \"120s\" }", 120.0),
        (30, "ignore-ttl = { share = 1.0, hold = \"5m\" }", 300.0),
    ] {
        let (det, last) = drain(ttl, resolvers);
        println!(
            "ttl {ttl} {resolvers:?}: detected after {det:.1} s, last client sent there {last:.1} s after the failure"
        );
        // An answer cached just before the failure lives a whole TTL; those given out after
        // the first failed probe carry the short TTL of unsettled health (the interval).
        assert!(
            last > stale * 0.97 - 1.0 && last <= det + stale + 1.0,
            "ttl {ttl} {resolvers}: last {last}, detection {det}"
        );
    }
}

/// ECS scope decides what a cache entry covers: with ECS, hash answers are cached per client
/// /24 (each client subnet its own datacenter, a decision per subnet and TTL); without ECS a
/// resolver caches one answer for all its clients.
#[test]
fn ecs_scope_decides_what_a_cached_answer_covers() {
    let z = zone(&format!(
        "{}{}{}{}{}[gslb.static]\nttl = 60\ndatacenters = [\"fra\", \"ams\", \"lhr\", \"iad\"]\npolicy = \"hash\"\n",
        check(""),
        dc("fra", "198.51.100.10", ""),
        dc("ams", "198.51.100.20", ""),
        dc("lhr", "198.51.100.30", ""),
        dc("iad", "192.0.2.10", ""),
    ));
    let scenario = |ecs: bool| {
        format!(
            r#"
[run]
duration = "10m"
seed = 2
[[populations]]
subnets = ["10.0.0.0/8"]
clients = 400
rate = 1
[populations.resolvers]
count = 2
ecs = {ecs}
"#
        )
    };
    let with = run(&z, &scenario(true));
    let without = run(&z, &scenario(false));
    let used = |r: &Report| r.name("static.example.com").unwrap().shares.len();
    // 400 subnets x 10 min / 60 s: about 4000 decisions per scope-24 entry set; 2 x 10 without.
    println!(
        "with ECS: {} datacenters used, {} decisions; without: {} used, {} decisions",
        used(&with),
        with.decisions,
        used(&without),
        without.decisions
    );
    assert_eq!(used(&with), 4);
    for s in &with.name("static.example.com").unwrap().shares {
        assert!((0.15..0.35).contains(&s.share), "{s:?}");
    }
    assert!(used(&without) <= 2, "one answer per resolver");
    assert!(
        (3500..=4500).contains(&with.decisions),
        "{}",
        with.decisions
    );
    assert!(without.decisions <= 25, "{}", without.decisions);
}

// ---------------------------------------------------------------------------------------------
// 3. Admin actions, zone changes, determinism.

/// A drain stops new answers at once; a zone change that changes the datacenters starts a new
/// aggregator that keeps the drain (as a reload through the state files does); a zone change
/// that keeps them only swaps the names (here: a shorter TTL, so the caches let go sooner).
#[test]
fn drain_and_zone_changes() {
    let v1 = three(
        "",
        "[gslb.www]\nttl = 300\ndatacenters = [\"fra\", \"ams\"]\npolicy = \"failover\"\n",
    );
    let dir = zones_dir(&v1);
    // v2: same datacenters, TTL 30. v3: lhr gone (datacenters changed).
    let v2 = dir.path().join("v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(
        v2.join("example.com.toml"),
        v1.replace("ttl = 300", "ttl = 30"),
    )
    .unwrap();
    let v3 = dir.path().join("v3");
    std::fs::create_dir(&v3).unwrap();
    let no_lhr = zone(&format!(
        "{}{}{}[gslb.www]\nttl = 30\ndatacenters = [\"fra\", \"ams\"]\npolicy = \"failover\"\n",
        check(""),
        dc("fra", "198.51.100.10", "capacity = 2000"),
        dc("ams", "198.51.100.20", "capacity = 2000"),
    ));
    std::fs::write(v3.join("example.com.toml"), no_lhr).unwrap();
    let r = run_in(
        dir.path(),
        r#"
[run]
duration = "30m"
seed = 8
[[populations]]
subnets = ["10.0.0.0/16"]
clients = 300
rate = 1
[[events]]
at = "2m"
datacenter = "fra"
admin = "drain"
[[events]]
at = "10m"
zones = "v2"
[[events]]
at = "15m"
zones = "v3"
[[events]]
at = "20m"
datacenter = "fra"
admin = "obey"
"#,
    );
    let series = r.share_series("www.example.com", "fra");
    let at = |t: f64| {
        series
            .iter()
            .rev()
            .find(|(s, _)| *s <= t)
            .map(|(_, v)| *v)
            .unwrap()
    };
    let drain = r.incidents.iter().find(|i| i.kind == "drain").unwrap();
    println!("drain: {drain:?}");
    assert!(drain.drained);
    let last = drain.last_sent_after_s.unwrap();
    assert!(last > 290.0 && last < 301.0, "TTL 300 at the drain: {last}");
    assert!(at(9.0 * 60.0) < 0.001, "drained");
    assert!(
        at(17.0 * 60.0) < 0.001,
        "still drained after the datacenters changed"
    );
    assert!(at(25.0 * 60.0) > 0.99, "back after obey");
    // After obey at 20m, with TTL 30 (v2 onwards), fra has everyone again within ~30 s.
    assert!(at(20.0 * 60.0 + 35.0) > 0.95, "{}", at(20.0 * 60.0 + 35.0));
    assert_eq!(
        r.datacenters.len(),
        3,
        "every datacenter of every model is reported"
    );
}

#[test]
fn same_seed_same_report_other_seed_other_report() {
    let z = three(
        "",
        "[gslb.w]\nttl = 20\ndatacenters = [\"fra\", \"ams\", \"lhr\"]\npolicy = \"weighted\"\n",
    );
    let s = |seed: u32| {
        format!(
            "[run]\nduration = \"5m\"\nseed = {seed}\nprobe-loss = 0.05\n[[populations]]\nsubnets = [\"10.0.0.0/16\"]\nclients = 100\nrate = 1\n[[events]]\nat = \"1m\"\ndatacenter = \"ams\"\nhealth = \"down\"\n"
        )
    };
    let dir = zones_dir(&z);
    let a = run_in(dir.path(), &s(1)).json();
    let b = run_in(dir.path(), &s(1)).json();
    let c = run_in(dir.path(), &s(2)).json();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

// ---------------------------------------------------------------------------------------------
// 4. Populations by region, through a GeoIP file.

#[test]
fn populations_by_region_come_from_the_geoip_data() {
    use mmdb_writer::ipnet::IpNet;
    use mmdb_writer::{IpVersion, Writer};
    let dir = zones_dir(&zone(&format!(
        "{}{}{}[gslb.geo]\nttl = 30\nrules = [{{ match = [\"DE\"], pool = \"de\" }}, {{ pool = \"rest\" }}]\n\
         [gslb.geo.pools.de]\ndatacenters = [\"fra\"]\n[gslb.geo.pools.rest]\ndatacenters = [\"iad\"]\n",
        check(""),
        dc("fra", "198.51.100.10", ""),
        dc("iad", "192.0.2.10", ""),
    )));
    let mut w = Writer::builder("GeoIP2-City-Test")
        .ip_version(IpVersion::V6)
        .build();
    for (net, cont, cc) in [
        ("81.0.0.0/12", "EU", "DE"),
        ("82.0.0.0/16", "EU", "FR"),
        ("8.0.0.0/12", "NA", "US"),
    ] {
        w.insert_value(
            net.parse::<IpNet>().unwrap(),
            crate::common::geo_city(cont, cc, &[], None),
        )
        .unwrap();
    }
    let mmdb = dir.path().join("geo.mmdb");
    std::fs::write(&mmdb, w.to_bytes().unwrap()).unwrap();
    let geo = GeoDb::open(&[mmdb]).unwrap();
    let text = r#"
[run]
duration = "2m"
[[populations]]
name = "germany"
region = "DE"
clients = 100
[[populations]]
name = "europe"
region = "EU"
clients = 100
"#;
    let s = Scenario::parse(text, &dir.path().join("s.toml")).unwrap();
    let r = simulate::run(dir.path(), &s, &geo).unwrap();
    // Germany's 100 subnets go to fra; of Europe's, the DE part (16 /24 networks in 17 are
    // German by size) too, the French part to iad.
    let fra = share(&r, "geo.example.com", "fra");
    println!("share of fra: {fra:.3}");
    assert!(fra > 0.9 && fra < 1.0, "{fra}");
    let bad = Scenario::parse(
        "[run]\nduration = \"1m\"\n[[populations]]\nregion = \"AS\"\n",
        &dir.path().join("s.toml"),
    )
    .unwrap();
    let e = simulate::run(dir.path(), &bad, &geo)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("s.toml:4: populations[0].region: the GeoIP data has no network in this region"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. The command.

fn example_zones() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/simulate/zones")
}

#[test]
fn command_outputs_checks_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(
        &scenario,
        r#"
[run]
duration = "10m"
seed = 1
[[populations]]
region = "EU"
clients = 200
names = ["www.example.net"]
[[events]]
at = "2m"
datacenter = "fra"
health = "down"
label = "fra breaks"
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let cmd = |checks: &[&str]| {
        let mut c = std::process::Command::new(bin());
        c.arg("simulate")
            .arg("--zones")
            .arg(example_zones())
            .arg("--scenario")
            .arg(&scenario)
            .arg("--out")
            .arg(&out);
        for x in checks {
            c.arg("--check").arg(x);
        }
        c.output().unwrap()
    };
    let ok = cmd(&[
        "max_time_to_drain(\"fra\") < 2m",
        "max_time_to_detect(\"fra\") < 20s",
    ]);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text.contains("fra down from 2m: detected after"), "{text}");
    assert!(
        text.contains("ok   max_time_to_drain(\"fra\") < 2m: max_time_to_drain(\"fra\") = "),
        "{text}"
    );
    for f in [
        "summary.txt",
        "summary.json",
        "shares.csv",
        "load.csv",
        "www.example.net.svg",
        "load.svg",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let svg = std::fs::read_to_string(out.join("www.example.net.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert_eq!(
        svg.matches("<polyline").count(),
        2,
        "a line for fra, one for ams"
    );
    assert!(svg.contains(">fra breaks</text>"), "the event is marked");
    assert!(
        svg.contains("gslbd: fra down at"),
        "what gslbd saw is marked"
    );
    let csv = std::fs::read_to_string(out.join("shares.csv")).unwrap();
    assert!(
        csv.starts_with("time_s,name,target,queries,share\n0,www.example.net.,"),
        "{csv}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["incidents"][0]["datacenter"], "fra");
    assert_eq!(json["checks"][0]["passed"], true);

    let failed = cmd(&["max_time_to_drain(\"fra\") < 10s"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&failed.stdout).contains("FAIL max_time_to_drain(\"fra\") < 10s")
    );

    let bad = cmd(&["max_time_to_drain(\"fra\") < 10"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("column 28: a duration compares with a time"),
        "{err}"
    );

    let unknown = cmd(&["peak_load(\"frx\") < 1"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no datacenter \"frx\""));

    std::fs::write(
        &scenario,
        "[run]\nduration = \"10m\"\n[[populations]]\nsubnets = [\"10.0.0.0/16\"]\n[[events]]\nat = \"2m\"\ndatacenter = \"frx\"\nhealth = \"down\"\n",
    )
    .unwrap();
    let bad = cmd(&[]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(
            "s.toml:7: events[0].datacenter: no datacenter \"frx\" in the zones active at 2m"
        ),
        "{err}"
    );
}

/// The shipped examples run, and the documented one gives the documented findings.
#[test]
fn shipped_examples_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let geo = GeoDb::open(&gslbd::geo::default_paths()).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(root.join("examples/simulate")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let s = Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
        // Each example says in its first line which zones it runs on.
        let text = std::fs::read_to_string(&p).unwrap();
        let zones = if text.lines().next().unwrap_or("").contains("--zones zones ") {
            root.join("zones")
        } else {
            example_zones()
        };
        let r = simulate::run(&zones, &s, &geo).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(r.client_queries > 0.0, "{}", p.display());
        if p.ends_with("shipped-drain.toml") {
            // The findings docs/simulate.md reads from its charts.
            let kind = |k: &str| r.incidents.iter().find(|i| i.kind == k).unwrap();
            let drain = kind("drain");
            let last = drain.last_sent_after_s.unwrap();
            assert!(drain.drained && last > 120.0 && last < 600.0, "{last}");
            let ams = r.datacenter("ams").unwrap();
            assert!(
                ams.peak_load > 1.2,
                "ams cannot carry Europe: {}",
                ams.peak_load
            );
            let down = kind("down");
            assert_eq!(
                down.note.as_deref(),
                Some("not seen: the datacenter has no check")
            );
            assert!(down.queries_sent > 100_000.0);
            let pushed = kind("pushed down");
            assert_eq!(pushed.detected_after_s, Some(0.0));
            assert!(pushed.drained);
            let n = r.name("app.lb.example.com").unwrap();
            assert!(
                (n.flaps_per_client - 0.5).abs() < 0.01,
                "{}",
                n.flaps_per_client
            );
        }
        n += 1;
    }
    assert!(n >= 4, "{n} examples");
}

// ---------------------------------------------------------------------------------------------
// 4. Several checks per datacenter and pushed health (the aggregator's other inputs).

/// fra has two checks, `web` and `db`; the ground truth fails only `db` (its endpoint answers
/// 503) from 5m to 10m. With `require = "all"` gslbd takes fra out after `fall` failed probes
/// and brings it back after `rise` passes; with `require = "any"` fra stays in the answers (by
/// design: the report says why) and every client query meanwhile is counted as sent to a
/// failed datacenter.
#[test]
fn several_checks_and_require_decide_what_a_check_failure_does() {
    let run_with = |require: &str| {
        let z = zone(&format!(
            "{}[checks.db]\ntype = \"http\"\npath = \"/db\"\ninterval = \"5s\"\ntimeout = \"2s\"\nrise = 2\nfall = 3\n\n\
             [datacenters.fra]\naddresses = [\"198.51.100.10\"]\nchecks = [\"web\", \"db\"]\nrequire = \"{require}\"\n\n{}\
             [gslb.www]\nttl = 30\ndatacenters = [\"fra\", \"ams\"]\npolicy = \"failover\"\n",
            check(""),
            dc("ams", "198.51.100.20", ""),
        ));
        run(
            &z,
            r#"
[run]
duration = "15m"
seed = 4
[[populations]]
subnets = ["10.0.0.0/16"]
clients = 200
rate = 0.5
[[events]]
at = "5m"
datacenter = "fra"
check = "db"
health = "down"
fail = "status"
[[events]]
at = "10m"
datacenter = "fra"
check = "db"
health = "up"
"#,
        )
    };
    let at = |r: &Report, t: f64| {
        r.share_series("www.example.com", "fra")
            .iter()
            .rev()
            .find(|(s, _)| *s <= t)
            .map(|(_, v)| *v)
            .unwrap()
    };

    let all = run_with("all");
    let inc = all
        .incidents
        .iter()
        .find(|i| i.kind == "check down")
        .expect("the db failure is an incident");
    println!("require all: {inc:?}");
    assert_eq!(inc.check.as_deref(), Some("db"));
    assert_eq!(inc.note, None);
    // Three failed probes 5 s (± 0.25 s) apart, the first within one interval, each seen when
    // it completes (a 503 comes back at once).
    let d = inc.detected_after_s.expect("detected");
    assert!((10.0..=16.0).contains(&d), "detected after {d} s");
    let rec = inc.recovered_after_s.expect("recovered");
    assert!((5.0..=11.0).contains(&rec), "back after {rec} s");
    assert!(inc.drained, "TTL 30: every client left within the failure");
    assert!(at(&all, 7.0 * 60.0) < 0.001, "fra out of the answers");
    assert!(at(&all, 12.0 * 60.0) > 0.99, "fra back");
    // `--check` sees the check's failure as a failure of fra.
    let holds = |r: &Report, expr: &str| Check::parse(expr).unwrap().eval(r).unwrap().passed;
    assert!(holds(&all, "max_time_to_detect(\"fra\") < 17s"));
    assert!(!holds(&all, "max_time_to_detect(\"fra\") < 10s"));

    let any = run_with("any");
    let inc = any
        .incidents
        .iter()
        .find(|i| i.kind == "check down")
        .expect("the db failure is an incident");
    println!("require any: {inc:?}");
    assert_eq!(inc.detected_after_s, None);
    let note = inc.note.as_deref().unwrap_or_default();
    assert!(note.contains("require = any"), "{note}");
    assert!(!inc.drained, "clients were sent there until it ended");
    assert!(at(&any, 7.0 * 60.0) > 0.99, "web still passes: fra stays");
    // 200 clients x 0.5 q/s x 300 s went to fra while its db was down.
    let q = metric(&any, "queries_to_down(\"fra\")");
    assert!((q - 30_000.0).abs() < 3_000.0, "{q}");
    assert!(metric(&all, "queries_to_down(\"fra\")") < q / 10.0);
}

/// A pushed verdict (the health API's `PUT /datacenters/fra/health`) takes fra out at once,
/// holds across a zone change that changes the datacenters (carried over like the state files
/// carry it), and expires after its TTL, when the probes decide again; a second one is
/// withdrawn before its TTL.
#[test]
fn pushed_health_holds_for_its_ttl_and_across_a_zone_change() {
    let v1 = three(
        "",
        "[gslb.www]\nttl = 30\ndatacenters = [\"fra\", \"ams\"]\npolicy = \"failover\"\n",
    );
    let dir = zones_dir(&v1);
    let v2 = dir.path().join("v2");
    std::fs::create_dir(&v2).unwrap();
    let no_lhr = zone(&format!(
        "{}{}{}[gslb.www]\nttl = 30\ndatacenters = [\"fra\", \"ams\"]\npolicy = \"failover\"\n",
        check(""),
        dc("fra", "198.51.100.10", "capacity = 2000"),
        dc("ams", "198.51.100.20", "capacity = 2000"),
    ));
    std::fs::write(v2.join("example.com.toml"), no_lhr).unwrap();
    let r = run_in(
        dir.path(),
        r#"
[run]
duration = "30m"
seed = 3
[[populations]]
subnets = ["10.0.0.0/16"]
clients = 300
rate = 1
[[events]]
at = "2m"
datacenter = "fra"
pushed = "down"
ttl = "10m"
label = "database failover"
[[events]]
at = "6m"
zones = "v2"
[[events]]
at = "20m"
datacenter = "fra"
pushed = "down"
ttl = "1h"
[[events]]
at = "25m"
datacenter = "fra"
pushed = "clear"
"#,
    );
    let series = r.share_series("www.example.com", "fra");
    let at = |t: f64| {
        series
            .iter()
            .rev()
            .find(|(s, _)| *s <= t)
            .map(|(_, v)| *v)
            .unwrap()
    };
    let pushed: Vec<_> = r
        .incidents
        .iter()
        .filter(|i| i.kind == "pushed down")
        .collect();
    println!("{pushed:#?}");
    assert_eq!(pushed.len(), 2);
    let (a, b) = (pushed[0], pushed[1]);
    assert_eq!(a.detected_after_s, Some(0.0), "published at once");
    assert_eq!(a.end_s, Some(12.0 * 60.0), "ends with its TTL");
    let last = a.last_sent_after_s.unwrap();
    assert!(a.drained && last > 25.0 && last <= 30.0, "TTL 30: {last}");
    assert!(at(5.0 * 60.0) < 0.001, "out while the verdict holds");
    assert!(at(11.0 * 60.0) < 0.001, "still out after the zone change");
    // At 12m the verdict expires at the next tick; the probes say fra is up.
    let rec = a.recovered_after_s.unwrap();
    assert!(rec < 1.0, "back at once: {rec}");
    assert!(at(13.0 * 60.0) > 0.95, "{}", at(13.0 * 60.0));
    assert_eq!(b.end_s, Some(25.0 * 60.0), "withdrawn");
    assert!(at(24.0 * 60.0) < 0.001);
    assert!(at(26.0 * 60.0) > 0.95);
    assert!(
        r.events
            .iter()
            .any(|m| m.source == "scenario" && m.label == "database failover"),
        "the label marks the chart"
    );
}

/// Scenario mistakes about checks and pushed verdicts are reported with their key paths.
#[test]
fn check_and_pushed_mistakes_are_reported() {
    let z = three(
        "",
        "[gslb.www]\nttl = 30\ndatacenters = [\"fra\", \"ams\"]\npolicy = \"failover\"\n",
    );
    let dir = zones_dir(&z);
    let s = Scenario::parse(
        r#"
[run]
duration = "10m"
[[populations]]
subnets = ["10.0.0.0/16"]
clients = 10
[[events]]
at = "1m"
datacenter = "fra"
check = "db"
health = "down"
[[events]]
at = "2m"
address = "203.0.113.9"
pushed = "down"
[[events]]
at = "3m"
datacenter = "fra"
pushed = "clear"
load = 0.5
"#,
        &dir.path().join("s.toml"),
    );
    let e = s.expect_err("load with clear").to_string();
    assert!(e.contains("events[2].load"), "{e}");
    let s = Scenario::parse(
        r#"
[run]
duration = "10m"
[[populations]]
subnets = ["10.0.0.0/16"]
clients = 10
[[events]]
at = "1m"
datacenter = "fra"
check = "db"
health = "down"
[[events]]
at = "2m"
address = "198.51.100.99"
pushed = "down"
"#,
        &dir.path().join("s.toml"),
    )
    .unwrap();
    let e = simulate::run(dir.path(), &s, &GeoDb::empty())
        .expect_err("unknown check and address")
        .to_string();
    println!("{e}");
    assert!(
        e.contains("events[0].check") && e.contains("no check \"db\"") && e.contains("web"),
        "{e}"
    );
    assert!(e.contains("events[1].address"), "{e}");
}

/// The CI example (examples/simulate/ci/check.sh) passes on the example zones and refuses a
/// zone change that makes detection slow (`fall` 3 -> 10): exit 1, with the failed condition.
#[test]
fn ci_example_refuses_a_zone_change_that_breaks_a_condition() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("examples/simulate/ci/check.sh");
    let out = tempfile::tempdir().unwrap();
    let run_on = |zones: &Path| {
        std::process::Command::new("bash")
            .arg(&script)
            .arg(zones)
            .env("GSLBD", bin())
            .env("OUT", out.path())
            .output()
            .unwrap()
    };
    let ok = run_on(&example_zones());
    let text = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(text.matches("\n  ok   ").count(), 4, "{text}");
    assert!(out.path().join("outage/www.example.net.svg").exists());

    let slow = tempfile::tempdir().unwrap();
    let zone = std::fs::read_to_string(example_zones().join("example.net.toml")).unwrap();
    assert!(zone.contains("fall = 3\n"));
    std::fs::write(
        slow.path().join("example.net.toml"),
        zone.replace("fall = 3\n", "fall = 10\n"),
    )
    .unwrap();
    let refused = run_on(slow.path());
    let text = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL max_time_to_detect(\"fra\") < 20s"),
        "{text}"
    );
}

/// Health-aware TTL: when every datacenter of www is down, gslbd fails open (answers as if all
/// were up) with half the TTL, so clients behind their own resolvers come back twice as often: about
/// twice the decisions of a healthy hour, and every client query goes to a down address.
#[test]
fn fail_open_answers_carry_half_the_ttl() {
    let z = three(
        "",
        "[gslb.www]\nttl = 60\ndatacenters = [\"fra\", \"ams\"]\npolicy = \"failover\"\n",
    );
    let scenario = |events: &str| {
        format!(
            r#"
[run]
duration = "20m"
seed = 6
[[populations]]
subnets = ["10.0.0.0/16"]
clients = 200
rate = 1
{events}
"#
        )
    };
    let healthy = run(&z, &scenario(""));
    let down = run(
        &z,
        &scenario(
            "[[events]]\nat = \"0s\"\ndatacenter = \"fra\"\nhealth = \"down\"\n\
             [[events]]\nat = \"0s\"\ndatacenter = \"ams\"\nhealth = \"down\"\n",
        ),
    );
    let ratio = down.decisions as f64 / healthy.decisions as f64;
    println!(
        "decisions: healthy {}, all down {} ({ratio:.2} x)",
        healthy.decisions, down.decisions
    );
    // A client asks again about 1 s (one query at 1/s) after its answer expires: 1200 s /
    // (60 + 1) against 1200 s / (30 + 1), less the ~15 s before the failure is seen.
    assert!((1.8..2.1).contains(&ratio), "{ratio}");
    assert!(
        share(&down, "www.example.com", "fra") > 0.999,
        "fail-open answers as if all were up: failover's first"
    );
    assert!(metric(&down, "share_to_down") > 0.99);
    assert_eq!(metric(&healthy, "share_to_down"), 0.0);
}

/// Hostname datacenters (issue 10) answer what a resolver finds at run time, which the
/// simulator does not model: a name that may answer one is refused with its key path, and a
/// population that asks every name leaves such names out (the shipped zones have both kinds).
#[test]
fn hostname_datacenters_are_refused_not_simulated() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let zones = root.join("zones");
    let geo = GeoDb::open(&gslbd::geo::default_paths()).unwrap();
    let asked = Scenario::parse(
        "[run]\nduration = \"5m\"\n[[populations]]\nregion = \"EU\"\nclients = 50\n\
         names = [\"app.lb.example.com\", \"edge.lb.example.com\"]\n",
        &root.join("s.toml"),
    )
    .unwrap();
    let e = simulate::run(&zones, &asked, &geo)
        .expect_err("edge answers a hostname datacenter")
        .to_string();
    assert!(
        e.contains(
            "populations[0].names[1]: edge.lb.example.com. may answer hostname datacenter(s) edge"
        ),
        "{e}"
    );
    let every = Scenario::parse(
        "[run]\nduration = \"5m\"\n[[populations]]\nregion = \"EU\"\nclients = 50\n",
        &root.join("s.toml"),
    )
    .unwrap();
    let r = simulate::run(&zones, &every, &geo).unwrap_or_else(|e| panic!("{e}"));
    assert!(r.name("app.lb.example.com").is_some());
    assert!(r.name("edge.lb.example.com").is_none());
    assert!(r.names.len() > 5, "the other names are simulated");
}
