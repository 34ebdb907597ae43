//! Operating the real server: the HTTP API, Prometheus metrics, live reload by file watch,
//! admin state through the API surviving a restart, and graceful shutdown on SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

/// A health endpoint on loopback: answers 200 "ok" (or 503 when `fail` is set; nothing at all,
/// holding the connection, when `hang` is set), counts hits.
struct Health {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    fail: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Health {
    fn start() -> Health {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let fail = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let hang = Arc::new(AtomicBool::new(false));
        let (h, f, s, hg) = (hits.clone(), fail.clone(), stop.clone(), hang.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) if hg.load(Ordering::Relaxed) => {
                        h.fetch_add(1, Ordering::Relaxed);
                        held.push(c);
                    }
                    Ok((mut c, _)) => {
                        h.fetch_add(1, Ordering::Relaxed);
                        c.set_read_timeout(Some(Duration::from_secs(1))).ok();
                        let mut buf = [0u8; 2048];
                        let _ = c.read(&mut buf);
                        let status = if f.load(Ordering::Relaxed) {
                            "503 Unavailable"
                        } else {
                            "200 OK"
                        };
                        let _ = write!(
                            c,
                            "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Health {
            addr,
            hits,
            fail,
            hang,
            stop,
        }
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A zone with one failover name over two datacenters whose checks hit `port` on loopback.
fn gslb_zone(port: u16, answer: &str) -> String {
    format!(
        concat!(
            minimal_zone!(),
            r#"[records.static]
A = ["{answer}"]
[checks.web]
type = "http"
port = {port}
path = "/health"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 3
[datacenters.one]
addresses = ["192.0.2.10"]
check = "web"
check-addresses = ["127.0.0.1"]
[datacenters.two]
addresses = ["192.0.2.20"]
[gslb.www]
ttl = 1
datacenters = ["one", "two"]
policy = "failover"
"#
        ),
        answer = answer,
        port = port
    )
}

struct Http {
    base: String,
}

impl Http {
    fn of(s: &TestServer) -> Http {
        Http {
            base: format!("http://{}", s.running().api_addr.expect("api enabled")),
        }
    }
    fn get(&self, s: &TestServer, path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        s.block_on(async move {
            let r = reqwest::get(url).await.expect("http get");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        })
    }
    fn put(&self, s: &TestServer, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let (token, body) = (token.map(str::to_string), body.to_string());
        s.block_on(async move {
            let mut req = reqwest::Client::new().put(url).body(body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.expect("http put");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        })
    }
}

fn start(health: &Health, state_dir: Option<&Path>, token: Option<&str>) -> TestServer {
    let zone = gslb_zone(health.addr.port(), "192.0.2.80");
    let (state_dir, token) = (state_dir.map(Path::to_path_buf), token.map(str::to_string));
    TestServer::start_with(&[("example.com.toml", &zone)], move |o| {
        o.api = Some("127.0.0.1:0".parse().unwrap());
        o.api_token = token;
        o.state_dir = state_dir;
        o.watch = true;
    })
}

fn answer(s: &TestServer, name: &str) -> Vec<String> {
    s.udp(&q(name, "A")).answers()
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

/// The sum of the samples of `name` with `labels` in the metrics text (also used by `xdp.rs`).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("metrics parse as Prometheus text");
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
fn status_metrics_and_explain_over_http() {
    let h = Health::start();
    let s = start(&h, None, None);
    let api = Http::of(&s);
    assert_eq!(api.get(&s, "/healthz"), (200, "ok\n".to_string()));
    wait_until(
        "ready after the first probe round",
        Duration::from_secs(3),
        || api.get(&s, "/readyz").0 == 200,
    );
    let (code, body) = api.get(&s, "/status");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["zones"][0]["name"], "example.com.");
    let dcs = v["datacenters"].as_array().expect("datacenters");
    assert_eq!(
        dcs.iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["one", "two"]
    );

    let (_, before) = api.get(&s, "/metrics");
    for _ in 0..5 {
        assert_eq!(
            answer(&s, "www.example.com"),
            ["www.example.com. 1 IN A 192.0.2.10"]
        );
    }
    assert_eq!(
        s.udp(&q("nope.example.com", "A")).rcode(),
        hickory_proto::op::ResponseCode::NXDomain
    );
    std::thread::sleep(Duration::from_millis(250));
    let (code, after) = api.get(&s, "/metrics");
    assert_eq!(code, 200);
    let ok = [
        ("zone", "example.com."),
        ("qtype", "A"),
        ("rcode", "NOERROR"),
        ("transport", "udp"),
    ];
    assert_eq!(
        metric(&after, "gslbd_queries_total", &ok) - metric(&before, "gslbd_queries_total", &ok),
        5.0
    );
    let nx = [("zone", "example.com."), ("rcode", "NXDOMAIN")];
    assert_eq!(
        metric(&after, "gslbd_queries_total", &nx) - metric(&before, "gslbd_queries_total", &nx),
        1.0
    );
    let dec = [
        ("name", "www.example.com."),
        ("pool", "default"),
        ("datacenter", "one"),
    ];
    assert_eq!(
        metric(&after, "gslbd_gslb_decisions_total", &dec)
            - metric(&before, "gslbd_gslb_decisions_total", &dec),
        5.0
    );
    // Probes go on (every 200 ms; one may time out on a loaded machine, so wait for one).
    let probes = [("datacenter", "one"), ("outcome", "pass")];
    let passed_before = metric(&before, "gslbd_probe_results_total", &probes);
    wait_until("a probe passed since", Duration::from_secs(5), || {
        metric(
            &api.get(&s, "/metrics").1,
            "gslbd_probe_results_total",
            &probes,
        ) > passed_before
    });
    assert_eq!(
        metric(&after, "gslbd_datacenter_up", &[("datacenter", "one")]),
        1.0
    );

    let (code, body) = api.get(&s, "/explain?name=www.example.com&client=127.0.0.1");
    assert_eq!(code, 200, "{body}");
    let x: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(x["answer"][0], "192.0.2.10");
    assert_eq!(api.get(&s, "/explain?name=static.example.com").0, 404);
    assert_eq!(api.get(&s, "/explain?type=A").0, 400);
}

/// Issue 9, item 7: a corrupt `admin.json` does not stop the server. It starts and serves
/// with every datacenter in obey, the file is moved aside (so the next write does not replace
/// it), and the problem is logged, in `/status` and counted in
/// `gslbd_state_file_errors_total`. `--strict-state` refuses to start instead.
#[test]
fn a_corrupt_admin_file_is_moved_aside_and_reported() {
    let h = Health::start();
    let dir = tempfile::tempdir().unwrap();
    let corrupt = r#"{"version":1,"datacenters":{"one":{"admin":"dra"#;
    std::fs::write(dir.path().join("admin.json"), corrupt).unwrap();
    {
        let s = start(&h, Some(dir.path()), Some("s3cret"));
        assert_eq!(
            answer(&s, "www.example.com"),
            ["www.example.com. 1 IN A 192.0.2.10"],
            "serving, datacenter one in obey"
        );
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().contains("admin.json.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read_to_string(&aside[0]).unwrap(), corrupt);
        let api = Http::of(&s);
        let (_, status) = api.get(&s, "/status");
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        let p = &v["state_files"][0];
        assert_eq!(p["file"], "admin.json", "{status}");
        assert!(
            p["error"]
                .as_str()
                .unwrap()
                .contains("not a valid state file"),
            "{p}"
        );
        assert_eq!(p["moved_to"].as_str(), aside[0].to_str());
        let (_, text) = api.get(&s, "/metrics");
        assert_eq!(
            metric(
                &text,
                "gslbd_state_file_errors_total",
                &[("file", "admin.json")]
            ),
            1.0
        );
        assert_eq!(
            metric(
                &text,
                "gslbd_state_file_errors_total",
                &[("file", "health.json")]
            ),
            0.0
        );
    }
    // --strict-state: refuse to start, leave the file where it is.
    std::fs::write(dir.path().join("admin.json"), corrupt).unwrap();
    let zones = tempfile::tempdir().unwrap();
    std::fs::write(
        zones.path().join("example.com.toml"),
        gslb_zone(h.addr.port(), "192.0.2.80"),
    )
    .unwrap();
    let mut opts =
        gslbd::server::ServeOptions::new(zones.path(), vec!["127.0.0.1:0".parse().unwrap()]);
    opts.state_dir = Some(dir.path().to_path_buf());
    opts.strict_state = true;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(gslbd::server::start(opts))
        .err()
        .expect("strict: refused");
    assert!(err.to_string().contains("admin.json"), "{err}");
    assert!(dir.path().join("admin.json").exists());
}

/// Issue 9, item 10: health restored from `health.json` after a restart decides, but is
/// unsettled until a live probe confirms it: answers built from it carry at most the check
/// interval as TTL, not the name's full TTL (resolvers would keep a datacenter that died while
/// gslbd was down for that long). Here the restarted server's probes hang (no result for the
/// timeout), so every answer in that window comes from the restored state alone.
#[test]
fn restored_health_is_answered_with_a_short_ttl_until_probed() {
    let h = Health::start();
    let dir = tempfile::tempdir().unwrap();
    let zone = format!(
        concat!(
            minimal_zone!(),
            r#"[checks.web]
type = "http"
port = {port}
path = "/health"
interval = "2s"
timeout = "1500ms"
rise = 1
fall = 3
[datacenters.one]
addresses = ["192.0.2.10"]
check = "web"
check-addresses = ["127.0.0.1"]
[datacenters.two]
addresses = ["192.0.2.20"]
[gslb.www]
ttl = 60
datacenters = ["one", "two"]
policy = "failover"
"#
        ),
        port = h.addr.port()
    );
    let serve = || {
        let (zone, state) = (zone.clone(), dir.path().to_path_buf());
        TestServer::start_with(&[("example.com.toml", &zone)], move |o| {
            o.state_dir = Some(state);
        })
    };
    let ttl_of = |line: &str| -> u32 {
        line.split_whitespace()
            .nth(1)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no TTL in {line:?}"))
    };
    // First life: one is probed up and answered with the full TTL once settled; the stop
    // writes health.json.
    {
        let s = serve();
        wait_until("one probed up and settled", Duration::from_secs(10), || {
            answer(&s, "www.example.com") == ["www.example.com. 60 IN A 192.0.2.10"]
        });
    }
    let saved = std::fs::read_to_string(dir.path().join("health.json")).unwrap();
    assert!(saved.contains("\"up\": true"), "{saved}");

    // Second life: the endpoint now hangs, so no probe result for 1.5 s. The restored "up"
    // decides (one is answered), with at most the interval (2 s) as TTL.
    h.hang.store(true, Ordering::Relaxed);
    let s = serve();
    let t = Instant::now();
    let mut answered = 0;
    while t.elapsed() < Duration::from_millis(1000) {
        let a = answer(&s, "www.example.com");
        assert_eq!(a.len(), 1, "{a:?}");
        assert!(
            a[0].ends_with("IN A 192.0.2.10"),
            "restored up decides: {a:?}"
        );
        assert!(
            ttl_of(&a[0]) <= 2,
            "unsettled: TTL at most the interval: {a:?}"
        );
        answered += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(answered >= 3, "{answered} answers");
}

#[test]
fn admin_state_needs_the_token_drains_at_once_and_survives_a_restart() {
    let h = Health::start();
    let dir = tempfile::tempdir().unwrap();
    {
        let s = start(&h, Some(dir.path()), Some("s3cret"));
        let api = Http::of(&s);
        assert_eq!(
            answer(&s, "www.example.com"),
            ["www.example.com. 1 IN A 192.0.2.10"]
        );
        assert_eq!(api.put(&s, "/datacenters/one/admin", None, "drain").0, 401);
        assert_eq!(
            api.put(&s, "/datacenters/one/admin", Some("wrong"), "drain")
                .0,
            403
        );
        assert_eq!(
            api.put(&s, "/datacenters/nowhere/admin", Some("s3cret"), "drain")
                .0,
            404
        );
        let (code, body) = api.put(&s, "/datacenters/one/admin", Some("s3cret"), "sideways");
        assert_eq!(code, 400);
        assert!(body.contains("error"), "{body}");
        assert_eq!(
            api.put(
                &s,
                "/datacenters/one/admin",
                Some("s3cret"),
                r#"{"state":"drain"}"#
            )
            .0,
            200
        );
        // The next query already avoids the drained datacenter.
        assert_eq!(
            answer(&s, "www.example.com"),
            ["www.example.com. 1 IN A 192.0.2.20"]
        );
        let (_, status) = api.get(&s, "/status");
        assert!(status.contains("\"admin\":\"drain\""), "{status}");
    }
    assert!(
        dir.path().join("admin.json").exists(),
        "admin state persisted"
    );
    let s = start(&h, Some(dir.path()), Some("s3cret"));
    assert_eq!(
        answer(&s, "www.example.com"),
        ["www.example.com. 1 IN A 192.0.2.20"],
        "drain survives a restart"
    );
    let api = Http::of(&s);
    assert_eq!(
        api.put(&s, "/datacenters/one/admin", Some("s3cret"), "obey")
            .0,
        200
    );
    assert_eq!(
        answer(&s, "www.example.com"),
        ["www.example.com. 1 IN A 192.0.2.10"]
    );
}

#[test]
fn without_a_token_the_api_is_read_only() {
    let h = Health::start();
    let s = start(&h, None, None);
    let api = Http::of(&s);
    assert_eq!(
        api.put(&s, "/datacenters/one/admin", Some("anything"), "drain")
            .0,
        403
    );
    assert_eq!(
        answer(&s, "www.example.com"),
        ["www.example.com. 1 IN A 192.0.2.10"]
    );
}

#[test]
fn file_changes_reload_within_two_seconds_and_broken_files_keep_the_old_answers() {
    let h = Health::start();
    let s = start(&h, None, None);
    let api = Http::of(&s);
    assert_eq!(
        answer(&s, "static.example.com"),
        ["static.example.com. 3600 IN A 192.0.2.80"]
    );
    // Let a few probes run, then note the target's probe count.
    std::thread::sleep(Duration::from_millis(400));
    let probes_of = |s: &TestServer| -> u64 {
        let (_, body) = api.get(s, "/status");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["datacenters"][0]["targets"][0]["probes"]
            .as_u64()
            .expect("probe count")
    };
    let before = probes_of(&s);
    assert!(before >= 2, "probes ran: {before}");

    std::fs::write(
        s.zone_path("example.com.toml"),
        gslb_zone(h.addr.port(), "192.0.2.81"),
    )
    .unwrap();
    // Issue 5: within 2 s without SIGHUP (it takes about 0.3 s: the debounce and the settle).
    let took = wait_until(
        "new answer after a file change",
        Duration::from_secs(2),
        || answer(&s, "static.example.com") == ["static.example.com. 3600 IN A 192.0.2.81"],
    );
    eprintln!("reload by file watch took {took:?}");
    // The check did not change: the same target kept its counters across the reload.
    let after = probes_of(&s);
    assert!(
        after > before,
        "probe counters survive the reload: {before} -> {after}"
    );

    let (_, m0) = api.get(&s, "/metrics");
    std::fs::write(
        s.zone_path("example.com.toml"),
        gslb_zone(h.addr.port(), "192.0.2.300"),
    )
    .unwrap();
    wait_until(
        "failed reload shows in /status",
        Duration::from_secs(10),
        || {
            let (_, body) = api.get(&s, "/status");
            body.contains("is not an IPv4 address")
        },
    );
    assert_eq!(
        answer(&s, "static.example.com"),
        ["static.example.com. 3600 IN A 192.0.2.81"]
    );
    let (_, m1) = api.get(&s, "/metrics");
    let err = [("result", "error")];
    assert!(metric(&m1, "gslbd_reloads_total", &err) > metric(&m0, "gslbd_reloads_total", &err));
    assert_eq!(metric(&m1, "gslbd_config_last_reload_successful", &[]), 0.0);
}

#[test]
fn health_failure_moves_answers_and_shows_in_metrics() {
    let h = Health::start();
    let s = start(&h, None, None);
    assert_eq!(
        answer(&s, "www.example.com"),
        ["www.example.com. 1 IN A 192.0.2.10"]
    );
    h.fail.store(true, Ordering::Relaxed);
    wait_until("failover to two", Duration::from_secs(10), || {
        answer(&s, "www.example.com") == ["www.example.com. 1 IN A 192.0.2.20"]
    });
    let (_, m) = Http::of(&s).get(&s, "/metrics");
    assert_eq!(
        metric(&m, "gslbd_datacenter_up", &[("datacenter", "one")]),
        0.0
    );
    assert!(
        metric(
            &m,
            "gslbd_probe_results_total",
            &[("datacenter", "one"), ("outcome", "status")]
        ) >= 1.0
    );
    let hits = h.hits.load(Ordering::Relaxed);
    // The first probe of a target decides its state directly (no rise/fall before it).
    assert!(hits >= 1, "health endpoint hits: {hits}");
}

#[test]
fn sigterm_answers_the_query_in_flight_writes_state_and_exits_zero() {
    let h = Health::start();
    let zones = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        zones.path().join("example.com.toml"),
        gslb_zone(h.addr.port(), "192.0.2.80"),
    )
    .unwrap();
    let port = crate::common::free_port();
    let mut child = std::process::Command::new(bin())
        .args([
            "serve",
            "--api",
            "none",
            "--udp-threads",
            "1",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--zones",
        ])
        .arg(zones.path())
        .arg("--state-dir")
        .arg(state.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    crate::reload::wait_for(|| udp_raw(addr, &q("static.example.com", "A").bytes()));
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let query = q("static.example.com", "A").bytes();
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    // The query has started to arrive when the signal comes.
    c.write_all(&framed[..1]).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(200));
    c.write_all(&framed[1..]).unwrap();
    let mut len = [0u8; 2];
    c.read_exact(&mut len)
        .expect("the query in flight is answered");
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(
        Resp::parse(buf).answers(),
        ["static.example.com. 3600 IN A 192.0.2.80"]
    );
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "exits within a bounded time"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit 0: {status:?}");
    assert!(
        state.path().join("health.json").exists(),
        "state written at shutdown"
    );
    assert!(
        state.path().join("admin.json").exists(),
        "state written at shutdown"
    );
}

#[test]
fn a_reload_that_changes_datacenters_keeps_the_health_of_unchanged_targets() {
    // A health endpoint that accepts connections (kernel backlog) and never answers: every
    // probe ends in a timeout, so a probe after a restart needs the full timeout to decide.
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let zone = gslb_zone(hang.local_addr().unwrap().port(), "192.0.2.80")
        .replace("interval = \"200ms\"", "interval = \"1s\"")
        .replace("timeout = \"150ms\"", "timeout = \"800ms\"")
        .replace("fall = 3", "fall = 1");
    let s = TestServer::start_with(&[("example.com.toml", &zone)], |o| o.api = None);
    wait_until("one marked down", Duration::from_secs(3), || {
        answer(&s, "www.example.com") == ["www.example.com. 1 IN A 192.0.2.20"]
    });
    // A new datacenter restarts the probes; the restarted aggregator starts from the saved
    // health, so `one` is still down right after the reload (not assumed up again).
    let changed = format!("{zone}\n[datacenters.three]\naddresses = [\"192.0.2.30\"]\n");
    std::fs::write(s.zone_path("example.com.toml"), changed).unwrap();
    s.reload().expect("valid change");
    assert_eq!(
        answer(&s, "www.example.com"),
        ["www.example.com. 1 IN A 192.0.2.20"]
    );
}

#[test]
fn json_logs_and_the_sampled_query_log() {
    let zones = tempfile::tempdir().unwrap();
    std::fs::write(
        zones.path().join("example.com.toml"),
        gslb_zone(1, "192.0.2.80").replace("check = \"web\"\n", ""),
    )
    .unwrap();
    let port = crate::common::free_port();
    let child = std::process::Command::new(bin())
        .args([
            "serve",
            "--api",
            "none",
            "--no-watch",
            "--udp-threads",
            "1",
            "--log-format",
            "json",
        ])
        .args([
            "--query-log-sample",
            "1",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--zones",
        ])
        .arg(zones.path())
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let query = q("static.example.com", "A")
        .ecs("198.51.100.0".parse().unwrap(), 24)
        .bytes();
    let r = Resp::parse(crate::reload::wait_for(|| udp_raw(addr, &query)));
    assert_eq!(r.answers(), ["static.example.com. 3600 IN A 192.0.2.80"]);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "every log line is JSON: {logs}");
    let ql = lines
        .iter()
        .find(|v| v["target"] == "gslbd::query" && v["fields"]["name"] == "static.example.com.")
        .unwrap_or_else(|| panic!("a query log line: {logs}"));
    assert_eq!(ql["fields"]["ecs"], "198.51.100.0/24");
    assert_eq!(ql["fields"]["answer"], "192.0.2.80");
    assert_eq!(ql["fields"]["client"], "127.0.0.1");
}

/// `--listen-xdp` with a bad spec is a usage error naming the expected form (any build).
#[test]
fn listen_xdp_bad_spec_is_a_usage_error() {
    let out = std::process::Command::new(bin())
        .args(["serve", "--api", "none", "--listen-xdp", "eth0@0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("port \"0\" is not a number in 1..=65535"),
        "{err}"
    );
}

/// Without the `xdp` feature, `--listen-xdp` stops the start with the reason.
#[cfg(not(feature = "xdp"))]
#[test]
fn listen_xdp_without_the_feature_is_refused() {
    let zones = tempfile::tempdir().unwrap();
    std::fs::write(zones.path().join("example.com.toml"), EXAMPLE).unwrap();
    let port = crate::common::free_port();
    let out = std::process::Command::new(bin())
        .args(["serve", "--api", "none", "--no-watch", "--listen-xdp", "lo"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--zones")
        .arg(zones.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("built without AF_XDP support (cargo feature `xdp`)"),
        "{err}"
    );
}
