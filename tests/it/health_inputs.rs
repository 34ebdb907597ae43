//! External health inputs: pushed states, feed files and Alertmanager alerts, their expiry and
//! their precedence (admin > external > probes), the events they make, and notifications out
//! (webhooks, `GET /events`).
//!
//! The aggregator tests drive it directly on the paused clock (expiry is exact, nothing
//! sleeps); the server tests use the real server, its HTTP API and DNS answers on loopback,
//! real feed files and real HTTP receivers, each bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use gslbd::health::aggregator::{Aggregator, AggregatorSettings};
use gslbd::health::events::{EventKind, EventView};
use gslbd::health::input::{InputError, Source, SourceKind, Subject, Update, Verdict};
use gslbd::health::{AdminState, Input, Snapshot};
use gslbd::probe::{CheckSpec, DatacenterProbe, ProbeOutcome, ProbeResult, ProbeSet, TargetId};
use gslbd::shutdown::Shutdown;
use serde_json::Value;

use crate::common::{TestServer, q};

fn settings() -> AggregatorSettings {
    AggregatorSettings {
        publish_interval: Duration::ZERO,
        ..AggregatorSettings::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// fra (a tcp check on its two addresses) and ams (no check).
fn two_dcs() -> Vec<DatacenterProbe> {
    vec![
        DatacenterProbe::new(
            "fra",
            vec![ip("192.0.2.10"), ip("192.0.2.11")],
            Some(CheckSpec::tcp(9)),
        ),
        DatacenterProbe::new("ams", vec![ip("192.0.2.20")], None),
    ]
}

fn aggregator(
    s: AggregatorSettings,
) -> (
    Aggregator,
    gslbd::health::aggregator::AggregatorHandle,
    Arc<ArcSwap<Snapshot>>,
) {
    let set = Arc::new(ProbeSet::build(&two_dcs()).expect("set"));
    let out = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let (agg, h) = Aggregator::new(set, s, out.clone()).expect("agg");
    (agg, h, out)
}

fn set(kind: SourceKind, id: &str, subject: Subject, up: bool, ttl: u64, reason: &str) -> Update {
    Update::Set {
        source: Source::new(kind, id),
        verdict: Verdict {
            subject,
            up,
            load: None,
            reason: reason.into(),
            ttl: Duration::from_secs(ttl),
        },
    }
}

fn fra() -> Subject {
    Subject::Datacenter("fra".into())
}

fn kinds(ev: &[EventView]) -> Vec<(EventKind, &str, &str, &str, Option<Input>)> {
    ev.iter()
        .rev()
        .map(|e| {
            (
                e.kind,
                e.datacenter.as_str(),
                e.old.as_str(),
                e.new.as_str(),
                e.input,
            )
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_pushed_state_holds_for_its_ttl_then_the_probes_decide_again() {
    let (agg, handle, out) = aggregator(settings());
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    let stop = Shutdown::new();
    let task = tokio::spawn(agg.run(rx, stop.clone()));
    let applied = handle
        .input(set(
            SourceKind::Pushed,
            "api",
            fra(),
            false,
            60,
            "maintenance",
        ))
        .await
        .expect("applied");
    assert_eq!((applied.changed, applied.active), (1, 1));
    let s = out.load();
    assert!(!s.dcs[0].healthy);
    assert_eq!(s.dcs[0].health_input, Input::Pushed);
    assert_eq!(s.dcs[0].decided_by(), Input::Pushed);
    assert_eq!(s.why[0].reason, "pushed: down, maintenance");
    assert_eq!(s.dcs[1].health_input, Input::Config, "ams has no check");

    // The same push again only moves the expiry: no event, still down.
    tokio::time::advance(Duration::from_secs(30)).await;
    let again = handle
        .input(set(
            SourceKind::Pushed,
            "api",
            fra(),
            false,
            60,
            "maintenance",
        ))
        .await
        .expect("applied");
    assert_eq!(again.changed, 0);
    tokio::time::advance(Duration::from_secs(59)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !out.load().dcs[0].healthy,
        "59 s after the refresh: still down"
    );
    let st = handle.status().await.expect("status");
    let v = &st.datacenters[0].inputs[0];
    assert_eq!((v.source, v.state, v.deciding), ("pushed", "down", true));
    assert!(v.expires_in_ms <= 1000, "{}", v.expires_in_ms);

    tokio::time::advance(Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = out.load();
    assert!(s.dcs[0].healthy, "expired: the probes (assumed up) decide");
    assert_eq!(s.dcs[0].health_input, Input::Probes);
    let ev = handle.events().await.expect("events");
    assert_eq!(
        kinds(&ev),
        [
            (EventKind::Input, "fra", "none", "down", Some(Input::Pushed)),
            (
                EventKind::Datacenter,
                "fra",
                "up",
                "down",
                Some(Input::Pushed)
            ),
            (EventKind::Input, "fra", "down", "none", Some(Input::Pushed)),
            (
                EventKind::Datacenter,
                "fra",
                "down",
                "up",
                Some(Input::Probes)
            ),
        ]
    );
    assert_eq!(ev[1].reason, "pushed api: expired after 1m");
    assert!(
        ev[0]
            .reason
            .starts_with("external verdicts no longer hold; probes:"),
        "{}",
        ev[0].reason
    );
    stop.stop();
    task.await.expect("task");
}

#[tokio::test(start_paused = true)]
async fn admin_beats_external_verdicts_which_beat_the_probes_and_down_wins_among_them() {
    let (mut agg, _h, out) = aggregator(settings());
    let t0 = tokio::time::Instant::now();
    // Probes: both fra addresses refuse (the first result decides).
    for t in 0..2 {
        agg.apply(&ProbeResult::new(TargetId(t), ProbeOutcome::Refused, t0));
    }
    agg.publish(t0);
    assert!(!out.load().dcs[0].healthy);
    assert_eq!(out.load().dcs[0].health_input, Input::Probes);

    // A pushed up overrides the probes, and vouches for every address.
    agg.input(
        set(SourceKind::Pushed, "ci", fra(), true, 300, "canary ok"),
        t0,
    )
    .expect("push");
    agg.publish(t0);
    let s = out.load();
    assert!(s.dcs[0].healthy && s.dcs[0].usable());
    assert_eq!(
        (s.dcs[0].health_input, s.dcs[0].addr_up),
        (Input::Pushed, 0b11)
    );

    // A firing alert (down) wins over the pushed up.
    let alert = Source::new(SourceKind::Alert, "f00d");
    agg.input(
        Update::Set {
            source: alert.clone(),
            verdict: Verdict {
                subject: fra(),
                up: false,
                load: None,
                reason: "HighErrorRate firing".into(),
                ttl: Duration::from_secs(900),
            },
        },
        t0,
    )
    .expect("alert");
    agg.publish(t0);
    assert_eq!(
        (out.load().dcs[0].healthy, out.load().dcs[0].health_input),
        (false, Input::Alert)
    );
    let st = agg.status(t0);
    assert_eq!(st.datacenters[0].input, "alert");
    assert!(
        st.datacenters[0]
            .reason
            .starts_with("alert: down, HighErrorRate firing (expires in 900 s)")
    );

    // Admin beats both.
    agg.set_admin(0, AdminState::Up, t0).expect("admin");
    agg.publish(t0);
    let s = out.load();
    assert!(s.dcs[0].usable());
    assert_eq!(s.dcs[0].decided_by(), Input::Admin);
    assert_eq!(
        s.why[0].reason,
        "admin: up (health: alert: down, HighErrorRate firing)"
    );
    agg.set_admin(0, AdminState::Obey, t0).expect("admin");

    // The alert resolves: the pushed up decides again.
    agg.input(
        Update::Clear {
            source: alert,
            subject: fra(),
        },
        t0,
    )
    .expect("clear");
    agg.publish(t0);
    assert_eq!(
        (out.load().dcs[0].healthy, out.load().dcs[0].health_input),
        (true, Input::Pushed)
    );

    // The pushed state expires: the probes (down) decide.
    agg.tick(t0 + Duration::from_secs(301));
    assert_eq!(
        (out.load().dcs[0].healthy, out.load().dcs[0].health_input),
        (false, Input::Probes)
    );

    // Unknown names are refused, not ignored.
    assert_eq!(
        agg.input(
            set(
                SourceKind::Pushed,
                "api",
                Subject::Datacenter("nope".into()),
                false,
                5,
                ""
            ),
            t0
        ),
        Err(InputError::UnknownDatacenter("nope".into()))
    );
    assert_eq!(
        agg.input(
            set(
                SourceKind::Pushed,
                "api",
                Subject::Address {
                    datacenter: "ams".into(),
                    address: ip("192.0.2.10")
                },
                false,
                5,
                ""
            ),
            t0
        ),
        Err(InputError::NotAnAddress {
            datacenter: "ams".into(),
            address: ip("192.0.2.10")
        })
    );
}

#[tokio::test(start_paused = true)]
async fn address_verdicts_and_feed_replacement() {
    let (mut agg, _h, out) = aggregator(settings());
    let t0 = tokio::time::Instant::now();
    // One answer address of fra down: its bit goes, fra stays up.
    agg.input(
        set(
            SourceKind::Pushed,
            "api",
            Subject::Address {
                datacenter: "fra".into(),
                address: ip("192.0.2.11"),
            },
            false,
            60,
            "disk full",
        ),
        t0,
    )
    .expect("push");
    agg.publish(t0);
    let s = out.load();
    assert!(s.dcs[0].healthy);
    assert_eq!(s.dcs[0].addr_up, 0b01);

    // A feed: replaces everything it said before with what it says now.
    let feed = Source::new(SourceKind::Feed, "/run/feed.csv");
    let text = "fra,down,,maintenance\n192.0.2.20,up,0.4\nnope,down\n";
    let entries = gslbd::health::feed::parse(text).expect("feed parses");
    let verdicts =
        gslbd::health::feed::verdicts(&entries, "/run/feed.csv", Duration::from_secs(60));
    let a = agg
        .input(
            Update::Replace {
                source: feed.clone(),
                verdicts,
            },
            t0,
        )
        .expect("replace");
    assert_eq!((a.changed, a.active), (2, 2));
    assert_eq!(a.unknown, ["nope"]);
    agg.publish(t0);
    let s = out.load();
    assert_eq!(
        (s.dcs[0].healthy, s.dcs[0].health_input),
        (false, Input::Feed)
    );
    assert_eq!(s.why[0].reason, "feed: down, maintenance (/run/feed.csv)");
    assert_eq!(
        s.dcs[1].load,
        Some(0.4),
        "the feed's load for ams's address"
    );
    // Written again without fra: fra's entry goes.
    let entries = gslbd::health::feed::parse("192.0.2.20,up,0.4\n").expect("parses");
    let verdicts =
        gslbd::health::feed::verdicts(&entries, "/run/feed.csv", Duration::from_secs(60));
    let a = agg
        .input(
            Update::Replace {
                source: feed,
                verdicts,
            },
            t0,
        )
        .expect("replace");
    assert_eq!((a.changed, a.active), (1, 1));
    agg.publish(t0);
    assert_eq!(out.load().dcs[0].health_input, Input::Probes);
    let ev = agg.events(t0);
    assert_eq!(ev[1].reason, "feed /run/feed.csv: no longer listed");
}

#[tokio::test(start_paused = true)]
async fn external_verdicts_survive_a_restart_until_they_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = AggregatorSettings {
        state_dir: Some(dir.path().to_path_buf()),
        ..settings()
    };
    let (mut agg, _h, _out) = aggregator(s.clone());
    let t0 = tokio::time::Instant::now();
    agg.input(
        set(SourceKind::Pushed, "api", fra(), false, 600, "maintenance"),
        t0,
    )
    .expect("push");
    agg.input(
        set(
            SourceKind::Alert,
            "short",
            Subject::Datacenter("ams".into()),
            false,
            600,
            "x",
        ),
        t0,
    )
    .expect("alert");
    agg.persist(t0).expect("persist");
    drop(agg);
    // Age the alert's saved expiry into the past, as if it lapsed while gslbd was stopped.
    let path = dir.path().join("inputs.json");
    let mut file: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("inputs.json")).expect("json");
    for e in file["entries"].as_array_mut().expect("entries") {
        if e["id"] == "short" {
            e["expires_unix_ms"] = 1_000.into();
        }
    }
    std::fs::write(&path, serde_json::to_vec(&file).expect("json")).expect("write");
    let (agg, _h, out) = aggregator(s);
    let snap = out.load();
    assert_eq!(
        (snap.dcs[0].healthy, snap.dcs[0].health_input),
        (false, Input::Pushed),
        "restored"
    );
    assert_eq!(snap.why[0].reason, "pushed: down, maintenance");
    assert!(snap.dcs[1].healthy, "the expired alert was not restored");
    let st = agg.status(tokio::time::Instant::now());
    assert!(st.datacenters[0].inputs[0].expires_in_ms > 590_000);
}

#[tokio::test(start_paused = true)]
async fn every_event_is_also_broadcast() {
    let (mut agg, _h, _out) = aggregator(settings());
    let (tx, mut rx) = tokio::sync::broadcast::channel(16);
    agg.set_events_out(tx);
    let t0 = tokio::time::Instant::now();
    agg.input(set(SourceKind::Pushed, "api", fra(), false, 60, "m"), t0)
        .expect("push");
    let a = rx.try_recv().expect("input event");
    let b = rx.try_recv().expect("datacenter event");
    assert_eq!((a.kind, b.kind), (EventKind::Input, EventKind::Datacenter));
    assert_eq!(b.input, Some(Input::Pushed));
    assert!(rx.try_recv().is_err());
}

// ---------------------------------------------------------------------------------------
// The real server: API, Alertmanager, feed files, notifications.

const TOKEN: &str = "s3cret";

fn zone() -> String {
    concat!(
        minimal_zone!(),
        r#"[datacenters.fra]
addresses = ["192.0.2.10"]
[datacenters.ams]
addresses = ["192.0.2.20", "192.0.2.21"]
[gslb.www]
ttl = 5
datacenters = ["fra", "ams"]
policy = "failover"
[gslb.all]
ttl = 5
datacenters = ["fra", "ams"]
policy = "all"
"#
    )
    .to_string()
}

fn start(tweak: impl FnOnce(&mut gslbd::server::ServeOptions)) -> TestServer {
    TestServer::start_with(&[("example.com.toml", &zone())], |o| {
        o.api = Some("127.0.0.1:0".parse().unwrap());
        o.api_token = Some(TOKEN.into());
        tweak(o);
    })
}

fn answer(s: &TestServer, name: &str) -> Vec<String> {
    let mut a: Vec<String> = s
        .udp(&q(name, "A"))
        .answers()
        .iter()
        .map(|r| r.rsplit(' ').next().unwrap_or("").to_string())
        .collect();
    a.sort();
    a
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return t.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what}: not within {limit:?}");
}

/// An HTTP call to the server's API: (status, body).
fn call(
    s: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let url = format!("http://{}{path}", s.running().api_addr.expect("api"));
    let (method, token, body) = (
        reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
        token.map(str::to_string),
        body.to_string(),
    );
    s.block_on(async move {
        let mut req = reqwest::Client::new().request(method, url).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("http");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    })
}

fn status_dc(s: &TestServer, name: &str) -> Value {
    let (code, body) = call(s, "GET", "/status", None, "");
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    v["datacenters"]
        .as_array()
        .expect("datacenters")
        .iter()
        .find(|d| d["name"] == name)
        .cloned()
        .expect("datacenter in /status")
}

fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("metrics parse");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn pushed_health_over_the_api_moves_answers_and_is_explained() {
    let s = start(|_| {});
    assert_eq!(answer(&s, "www.example.com"), ["192.0.2.10"]);
    let body = r#"{"state":"down","ttl":"60s","reason":"maintenance"}"#;
    assert_eq!(
        call(&s, "PUT", "/datacenters/fra/health", None, body).0,
        401
    );
    assert_eq!(
        call(&s, "PUT", "/datacenters/fra/health", Some("nope"), body).0,
        403
    );
    let (code, text) = call(&s, "PUT", "/datacenters/fra/health", Some(TOKEN), body);
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        (
            v["state"].as_str(),
            v["ttl_secs"].as_u64(),
            v["changed"].as_bool()
        ),
        (Some("down"), Some(60), Some(true))
    );
    // Applied and published before the reply: the next query already sees it.
    assert_eq!(answer(&s, "www.example.com"), ["192.0.2.20", "192.0.2.21"]);

    let d = status_dc(&s, "fra");
    assert_eq!(
        (d["state"].as_str(), d["input"].as_str()),
        (Some("down"), Some("pushed"))
    );
    let deciding = d["deciding"].as_str().expect("deciding");
    assert!(
        deciding.starts_with("pushed: down, maintenance (expires in "),
        "{deciding}"
    );
    assert_eq!(d["inputs"][0]["source"], "pushed");

    let (code, text) = call(
        &s,
        "GET",
        "/explain?name=www.example.com&client=192.0.2.1",
        None,
        "",
    );
    assert_eq!(code, 200, "{text}");
    let x: Value = serde_json::from_str(&text).expect("json");
    let fra = &x["trace"]["pools"][0]["candidates"][0];
    assert_eq!(
        (fra["datacenter"].as_str(), fra["input"].as_str()),
        (Some("fra"), Some("pushed"))
    );
    assert_eq!(fra["reason"], "pushed: down, maintenance");
    assert!(
        x["text"]
            .as_str()
            .expect("text")
            .contains("why: pushed: down, maintenance")
    );

    let (_, m) = call(&s, "GET", "/metrics", None, "");
    assert_eq!(
        metric(
            &m,
            "gslbd_datacenter_input",
            &[("datacenter", "fra"), ("input", "pushed")]
        ),
        1.0
    );

    // One address of ams, by another pusher: only that address leaves the answers.
    let (code, text) = call(
        &s,
        "PUT",
        "/datacenters/ams/addresses/192.0.2.21/health",
        Some(TOKEN),
        r#"{"state":"down","ttl":30,"source":"disk-monitor"}"#,
    );
    assert_eq!(code, 200, "{text}");
    assert_eq!(answer(&s, "www.example.com"), ["192.0.2.20"]);
    assert_eq!(answer(&s, "all.example.com"), ["192.0.2.20"]);

    // Refusals.
    for (path, body, code) in [
        ("/datacenters/nope/health", body, 404),
        ("/datacenters/fra/addresses/192.0.2.99/health", body, 404),
        ("/datacenters/fra/addresses/not-an-ip/health", body, 400),
        ("/datacenters/fra/health", r#"{"state":"sideways"}"#, 400),
        (
            "/datacenters/fra/health",
            r#"{"state":"down","ttl":"30d"}"#,
            400,
        ),
    ] {
        let (c, t) = call(&s, "PUT", path, Some(TOKEN), body);
        assert_eq!(c, code, "{path} {body}: {t}");
        assert!(t.contains("\"error\""), "{t}");
    }

    // DELETE withdraws the pusher's verdict at once.
    let (code, text) = call(&s, "DELETE", "/datacenters/fra/health", Some(TOKEN), "");
    assert_eq!(
        (code, text.contains("\"cleared\":true")),
        (200, true),
        "{text}"
    );
    assert_eq!(answer(&s, "www.example.com"), ["192.0.2.10"]);
    let (code, _) = call(
        &s,
        "DELETE",
        "/datacenters/ams/addresses/192.0.2.21/health?source=disk-monitor",
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200);
    assert_eq!(
        answer(&s, "all.example.com"),
        ["192.0.2.10", "192.0.2.20", "192.0.2.21"]
    );
    assert_eq!(status_dc(&s, "fra")["input"], "config");
}

#[test]
fn a_reload_that_restarts_the_probes_keeps_pushed_verdicts() {
    let s = start(|_| {});
    let body = r#"{"state":"down","ttl":"10m","reason":"maintenance"}"#;
    assert_eq!(
        call(&s, "PUT", "/datacenters/fra/health", Some(TOKEN), body).0,
        200
    );
    let mut z = zone();
    z.push_str("[datacenters.iad]\naddresses = [\"192.0.2.30\"]\n");
    std::fs::write(s.zone_path("example.com.toml"), z).expect("write");
    s.reload().expect("reload");
    assert_eq!(
        status_dc(&s, "iad")["state"],
        "up",
        "the new configuration is serving"
    );
    let d = status_dc(&s, "fra");
    assert_eq!(
        (d["state"].as_str(), d["input"].as_str()),
        (Some("down"), Some("pushed"))
    );
    assert_eq!(answer(&s, "www.example.com"), ["192.0.2.20", "192.0.2.21"]);
}

/// An Alertmanager webhook payload (version 4, the shape its documentation gives).
fn alertmanager(status: &str, dc: &str, fingerprint: &str) -> String {
    format!(
        r#"{{
  "version": "4",
  "groupKey": "{{}}/{{gslbd_datacenter=~\".+\"}}:{{alertname=\"ProbeFailure\"}}",
  "truncatedAlerts": 0,
  "status": "{status}",
  "receiver": "gslbd",
  "groupLabels": {{ "alertname": "ProbeFailure" }},
  "commonLabels": {{ "alertname": "ProbeFailure", "job": "blackbox", "gslbd_datacenter": "{dc}" }},
  "commonAnnotations": {{ "summary": "blackbox probe of {dc} failed" }},
  "externalURL": "http://alertmanager.example:9093",
  "alerts": [
    {{
      "status": "{status}",
      "labels": {{ "alertname": "ProbeFailure", "instance": "https://{dc}.example.com", "job": "blackbox", "gslbd_datacenter": "{dc}" }},
      "annotations": {{ "summary": "blackbox probe of {dc} failed" }},
      "startsAt": "2026-06-01T10:00:00.000Z",
      "endsAt": "{ends}",
      "generatorURL": "http://prometheus.example:9090/graph?g0.expr=probe_success+%3D%3D+0",
      "fingerprint": "{fingerprint}"
    }},
    {{
      "status": "firing",
      "labels": {{ "alertname": "DiskFull", "instance": "db1" }},
      "annotations": {{}},
      "startsAt": "2026-06-01T10:00:00.000Z",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "http://prometheus.example:9090/graph",
      "fingerprint": "0000000000000001"
    }}
  ]
}}"#,
        ends = if status == "firing" {
            "0001-01-01T00:00:00Z"
        } else {
            "2026-06-01T10:05:00.000Z"
        }
    )
}

#[test]
fn alertmanager_alerts_take_a_datacenter_down_while_they_fire() {
    let s = start(|_| {});
    let firing = alertmanager("firing", "fra", "1a30ba71cca2921f");
    assert_eq!(call(&s, "POST", "/alertmanager", None, &firing).0, 401);
    let (code, text) = call(&s, "POST", "/alertmanager", Some(TOKEN), &firing);
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        (
            v["alerts"].as_u64(),
            v["ignored"].as_u64(),
            v["changed"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(answer(&s, "www.example.com"), ["192.0.2.20", "192.0.2.21"]);
    let d = status_dc(&s, "fra");
    assert_eq!(d["input"], "alert");
    let deciding = d["deciding"].as_str().expect("deciding");
    assert!(
        deciding.starts_with("alert: down, ProbeFailure firing: blackbox probe of fra failed"),
        "{deciding}"
    );
    // Alertmanager repeats a firing alert: nothing changes but its expiry.
    let (_, text) = call(&s, "POST", "/alertmanager", Some(TOKEN), &firing);
    assert!(text.contains("\"changed\":0"), "{text}");
    // Resolved: fra is back.
    let (code, _) = call(
        &s,
        "POST",
        "/alertmanager",
        Some(TOKEN),
        &alertmanager("resolved", "fra", "1a30ba71cca2921f"),
    );
    assert_eq!(code, 200);
    assert_eq!(answer(&s, "www.example.com"), ["192.0.2.10"]);
    // A datacenter gslbd does not know: accepted (retrying would not help), reported.
    let (code, text) = call(
        &s,
        "POST",
        "/alertmanager",
        Some(TOKEN),
        &alertmanager("firing", "nope", "22"),
    );
    assert_eq!(code, 200);
    assert!(text.contains("no datacenter named `nope`"), "{text}");
    assert_eq!(
        call(&s, "POST", "/alertmanager", Some(TOKEN), "{\"alerts\": 3}").0,
        400
    );
}

#[test]
fn a_custom_alert_label_and_ttl() {
    let s = start(|o| {
        o.alert_label = "site".into();
        // Long enough for the query after the POST on a loaded machine (1 s lapsed before
        // it once, at load 8), short enough to watch it lapse.
        o.alert_ttl = Duration::from_secs(3);
    });
    let body = alertmanager("firing", "fra", "77").replace("gslbd_datacenter", "site");
    assert_eq!(call(&s, "POST", "/alertmanager", Some(TOKEN), &body).0, 200);
    assert_eq!(answer(&s, "www.example.com"), ["192.0.2.20", "192.0.2.21"]);
    // Not sent again within its TTL: it lapses and fra is back.
    wait_until("the alert lapses", Duration::from_secs(8), || {
        answer(&s, "www.example.com") == ["192.0.2.10"]
    });
}

fn write_feed(path: &Path, text: &str) {
    // Through a temporary file and a rename, as a careful writer does.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write feed");
    std::fs::rename(&tmp, path).expect("rename feed");
}

fn feed_status(s: &TestServer) -> Value {
    let (_, body) = call(s, "GET", "/status", None, "");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["feeds"][0].clone()
}

#[test]
fn a_health_feed_file_a_broken_write_and_an_old_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("health.csv");
    write_feed(&path, "# from our checker\nfra,down,,maintenance window\n");
    let p = path.clone();
    let s = start(move |o| {
        o.health_feeds = vec![p];
        o.health_feed_max_age = Duration::from_secs(120);
    });
    wait_until("the feed takes fra down", Duration::from_secs(5), || {
        answer(&s, "www.example.com") == ["192.0.2.20", "192.0.2.21"]
    });
    let d = status_dc(&s, "fra");
    assert_eq!(d["input"], "feed");
    let f = feed_status(&s);
    assert_eq!(
        (
            f["ok"].as_bool(),
            f["entries"].as_u64(),
            f["stale"].as_bool()
        ),
        (Some(true), Some(1), Some(false))
    );

    // A broken write: the last good entries stay, the error is reported.
    write_feed(&path, "fra,sideways\n");
    wait_until("the error is reported", Duration::from_secs(5), || {
        feed_status(&s)["ok"] == false
    });
    let f = feed_status(&s);
    assert_eq!(
        f["error"].as_str(),
        Some(format!("{}: line 1: `fra`: state \"sideways\" is not up or down; keeping the last good entries", path.display()).as_str())
    );
    assert_eq!(
        answer(&s, "www.example.com"),
        ["192.0.2.20", "192.0.2.21"],
        "last good entries"
    );
    let (_, m) = call(&s, "GET", "/metrics", None, "");
    assert_eq!(metric(&m, "gslbd_health_feed_ok", &[]), 0.0);

    // JSON, with an address entry and a load.
    write_feed(
        &path,
        r#"{ "fra": { "state": "up", "reason": "back" }, "192.0.2.21": "down" }"#,
    );
    wait_until("the JSON feed applies", Duration::from_secs(5), || {
        answer(&s, "all.example.com") == ["192.0.2.10", "192.0.2.20"]
    });
    assert_eq!(status_dc(&s, "fra")["input"], "feed");

    // An old file (written ten minutes ago, max age two): its entries are ignored.
    write_feed(&path, "fra,down\n192.0.2.21,down\n");
    let old = SystemTime::now() - Duration::from_secs(600);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(old))
        .expect("set mtime");
    wait_until(
        "an old file counts for nothing",
        Duration::from_secs(5),
        || feed_status(&s)["stale"] == true,
    );
    assert_eq!(
        answer(&s, "all.example.com"),
        ["192.0.2.10", "192.0.2.20", "192.0.2.21"]
    );
    assert_eq!(status_dc(&s, "fra")["input"], "config");
}

#[test]
fn feed_entries_expire_max_age_after_the_file_was_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("health.json");
    write_feed(&path, r#"{"fra": "down"}"#);
    let p = path.clone();
    let s = start(move |o| {
        o.health_feeds = vec![p];
        o.health_feed_max_age = Duration::from_secs(2);
    });
    wait_until("the feed takes fra down", Duration::from_secs(3), || {
        answer(&s, "www.example.com") == ["192.0.2.20", "192.0.2.21"]
    });
    // Nobody rewrites it: two seconds after it was written, fra is back.
    wait_until("the entries expire", Duration::from_secs(5), || {
        answer(&s, "www.example.com") == ["192.0.2.10"]
    });
}

// ---------------------------------------------------------------------------------------
// Notifications out.

/// A webhook receiver: records every POST body; answers 200 at once (`Good`), after a delay
/// (`Slow`), or 500 (`Failing`).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Good,
    Slow(Duration),
    Failing,
}

struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Receiver {
    fn start(mode: Mode) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", l.local_addr().expect("addr"));
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(c) = conn else { return };
                let g = g.clone();
                std::thread::spawn(move || serve_hook(c, mode, &g));
            }
        });
        Receiver { url, got }
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.got.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }

    fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn serve_hook(c: TcpStream, mode: Mode, got: &Mutex<Vec<(Instant, Value)>>) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let mut r = BufReader::new(c);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        got.lock().unwrap().push((
            Instant::now(),
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        ));
        let status = match mode {
            Mode::Good => "200 OK",
            Mode::Slow(d) => {
                std::thread::sleep(d);
                "200 OK"
            }
            Mode::Failing => "500 Internal Server Error",
        };
        let resp = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        if r.get_mut().write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn webhooks_get_every_change_and_a_slow_or_failing_receiver_delays_nothing() {
    let good = Receiver::start(Mode::Good);
    let slow = Receiver::start(Mode::Slow(Duration::from_secs(3)));
    let failing = Receiver::start(Mode::Failing);
    let urls = vec![slow.url.clone(), failing.url.clone(), good.url.clone()];
    let s = start(move |o| o.notify = urls);
    let down = r#"{"state":"down","ttl":"60s","reason":"maintenance"}"#;
    assert_eq!(
        call(&s, "PUT", "/datacenters/fra/health", Some(TOKEN), down).0,
        200
    );
    assert_eq!(answer(&s, "www.example.com"), ["192.0.2.20", "192.0.2.21"]);
    wait_until(
        "the good receiver has both events",
        Duration::from_secs(5),
        || good.bodies().len() >= 2,
    );
    // The next change is not held up by the slow receiver (still answering the first).
    let t2 = Instant::now();
    assert_eq!(
        call(&s, "PUT", "/datacenters/fra/admin", Some(TOKEN), "drain").0,
        200
    );
    // Well under the slow receiver's 3 s, with room for a loaded machine.
    let took = t2.elapsed();
    assert!(
        took < Duration::from_millis(2000),
        "the admin change took {took:?}"
    );
    wait_until(
        "the good receiver has the admin event",
        Duration::from_secs(5),
        || good.bodies().len() >= 3,
    );
    let b = good.bodies();
    let seen: Vec<(&str, &str, &str)> = b
        .iter()
        .map(|v| {
            (
                v["kind"].as_str().unwrap_or(""),
                v["datacenter"].as_str().unwrap_or(""),
                v["new"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("input", "fra", "down"),
            ("datacenter", "fra", "down"),
            ("admin", "fra", "drain")
        ]
    );
    assert_eq!(b[1]["input"], "pushed");
    assert_eq!(b[1]["reason"], "pushed: down, maintenance");
    // The slow receiver's second event is sent only after it answered the first (3 s).
    let third = good.arrivals()[2];
    assert!(
        slow.arrivals().get(1).is_none_or(|second| third < *second),
        "delivered before the slow receiver answered once"
    );
    // The failing receiver is retried with backoff; the slow one gets everything in order.
    wait_until(
        "retries of the failing receiver",
        Duration::from_secs(4),
        || failing.bodies().len() >= 2,
    );
    assert_eq!(
        failing.bodies()[0],
        failing.bodies()[1],
        "the same event again"
    );
    wait_until(
        "the slow receiver catches up",
        Duration::from_secs(12),
        || slow.bodies().len() >= 3,
    );
    // Three events each to the good and the slow receiver (counted when answered).
    let count = |result| {
        let (_, m) = call(&s, "GET", "/metrics", None, "");
        metric(&m, "gslbd_notifications_total", &[("result", result)])
    };
    assert!(count("retried") >= 1.0);
    wait_until(
        "three events each answered by the good and the slow receiver",
        Duration::from_secs(8),
        || count("sent") >= 6.0,
    );
}

#[test]
fn events_stream_as_server_sent_events() {
    let s = start(|_| {});
    let api: SocketAddr = s.running().api_addr.expect("api");
    let mut c = TcpStream::connect(api).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    c.write_all(b"GET /events HTTP/1.1\r\nHost: gslbd\r\nAccept: text/event-stream\r\n\r\n")
        .expect("request");
    let mut r = BufReader::new(c);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        let mut l = String::new();
        r.read_line(&mut l).expect("header line");
        head.push_str(&l);
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    let body = r#"{"state":"down","ttl":"60s","reason":"maintenance"}"#;
    assert_eq!(
        call(&s, "PUT", "/datacenters/fra/health", Some(TOKEN), body).0,
        200
    );
    let mut seen = String::new();
    let t = Instant::now();
    while !(seen.contains("event: datacenter") && seen.contains("\"new\":\"down\""))
        && t.elapsed() < Duration::from_secs(5)
    {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        seen.push_str(&l);
    }
    assert!(seen.contains("event: input"), "{seen}");
    assert!(seen.contains("event: datacenter"), "{seen}");
    assert!(seen.contains("\"input\":\"pushed\""), "{seen}");
    // The stream ends with the server (shutdown does not wait for it).
    let t = Instant::now();
    drop(s);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        t.elapsed()
    );
}
