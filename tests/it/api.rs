//! The HTTP API over loopback with a real HTTP client and a fake backend: every endpoint,
//! every error status, the token from a file, and /metrics parsed as Prometheus would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gslbd::api::{
    self, ApiBackend, ApiContext, BoxFuture, ExplainFailure, ExplainRequest, ReloadInfo,
    ServerInfo, ZoneInfo,
};
use gslbd::health::aggregator::{AdminError, DcStatus, TargetStatus};
use gslbd::health::{AdminState, Status};
use gslbd::metrics::{Metrics, PoolLabels};
use gslbd::net::Transport;
use gslbd::shutdown::Shutdown;
use serde_json::{Value, json};

const DCS: [&str; 2] = ["fra", "iad"];

/// Two datacenters; records every admin call; explains names under example.com.
struct Fake {
    admin: Mutex<Vec<(String, AdminState)>>,
    ready: AtomicBool,
}

impl Fake {
    fn new() -> Arc<Fake> {
        Arc::new(Fake {
            admin: Mutex::new(vec![]),
            ready: AtomicBool::new(false),
        })
    }

    fn calls(&self) -> Vec<(String, AdminState)> {
        self.admin.lock().expect("lock").clone()
    }

    fn admin_of(&self, dc: &str) -> AdminState {
        self.calls()
            .iter()
            .rev()
            .find(|(n, _)| n == dc)
            .map_or(AdminState::Obey, |(_, s)| *s)
    }
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

impl ApiBackend for Fake {
    fn server_info(&self) -> ServerInfo {
        ServerInfo {
            started: SystemTime::now() - Duration::from_secs(5),
            generation: 3,
            loaded_at: at(1_700_000_000),
            last_reload: ReloadInfo {
                at: at(1_700_000_100),
                ok: false,
                errors: vec!["zones/bad.toml: gslb.www.ttl: expected an integer".into()],
            },
            zones: vec![ZoneInfo {
                name: "example.com.".into(),
                serial: 2026112601,
                records: 7,
                gslb_names: 1,
                file: "zones/example.com.toml".into(),
                dnssec: None,
            }],
            state_files: vec![],
            tls: None,
        }
    }

    fn datacenter_status(&self) -> BoxFuture<'_, Option<Status>> {
        Box::pin(async move {
            let datacenters = DCS
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let admin = self.admin_of(name);
                    DcStatus {
                        id: i as u32,
                        name: name.to_string(),
                        healthy: true,
                        usable: matches!(admin, AdminState::Obey | AdminState::Up),
                        admin: admin.as_str(),
                        input: if admin == AdminState::Obey {
                            "probes"
                        } else {
                            "admin"
                        },
                        health_input: "probes",
                        reason: "probes: 1 of 1 addresses up (1 needed)".into(),
                        probes_up: true,
                        require: Some("all".into()),
                        checks: vec![],
                        inputs: vec![],
                        settled: true,
                        slow_start: 1.0,
                        load: Some(0.25),
                        load_error: None,
                        latency_ms: Some(20.0),
                        min_up: 1,
                        addresses_up: 1,
                        drain: None,
                        targets: vec![TargetStatus {
                            addr: format!("10.0.0.{i}:80"),
                            check: "http:80::/".into(),
                            check_name: "web".into(),
                            up: true,
                            local_up: true,
                            shared: None,
                            probed: true,
                            warm: false,
                            consecutive_passes: 4,
                            consecutive_fails: 0,
                            probes: 4,
                            last_result: Some("pass"),
                            last_reason: None,
                            last_ms_ago: Some(100),
                            last_latency_ms: Some(20.0),
                            latency_ms: Some(20.0),
                            load: Some(0.25),
                            load_age_ms: Some(100),
                            load_error: None,
                        }],
                    }
                })
                .collect();
            Some(Status {
                generation: 9,
                datacenters,
            })
        })
    }

    fn set_admin<'a>(
        &'a self,
        name: &'a str,
        state: AdminState,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        Box::pin(async move {
            if !DCS.contains(&name) {
                return Err(AdminError::UnknownName(name.to_string()));
            }
            self.admin
                .lock()
                .expect("lock")
                .push((name.to_string(), state));
            Ok(())
        })
    }

    fn explain(&self, req: &ExplainRequest) -> Result<Value, ExplainFailure> {
        if !req.name.ends_with("example.com.") {
            return Err(ExplainFailure::NotServed(format!(
                "no zone serves {}",
                req.name
            )));
        }
        if req.qtype == 255 {
            return Err(ExplainFailure::Invalid("ANY is not explained".into()));
        }
        Ok(json!({
            "name": req.name,
            "qtype": req.qtype,
            "client": req.client.map(|c| c.to_string()),
            "ecs": req.ecs.map(|(a, p)| format!("{a}/{p}")),
        }))
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

struct Api {
    base: String,
    http: reqwest::Client,
    fake: Arc<Fake>,
    metrics: Arc<Metrics>,
    stop: Shutdown,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(token: Option<String>) -> Api {
    let fake = Fake::new();
    let metrics = Arc::new(Metrics::with_shards(2));
    let ctx = ApiContext::new(metrics.clone(), fake.clone(), token);
    let stop = Shutdown::new();
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let (bound, task) = api::serve(addr, ctx, stop.clone()).await.expect("bind");
    assert_ne!(bound.port(), 0);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    Api {
        base: format!("http://{bound}"),
        http,
        fake,
        metrics,
        stop,
        task,
    }
}

impl Api {
    async fn get(&self, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let code = r.status().as_u16();
        let headers = r.headers().clone();
        (code, r.text().await.expect("body"), headers)
    }

    async fn put(
        &self,
        path: &str,
        auth: Option<&str>,
        body: &str,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .http
            .put(format!("{}{path}", self.base))
            .body(body.to_string());
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().await.expect("PUT");
        let code = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (code, v, headers)
    }

    async fn json(&self, path: &str) -> (u16, Value) {
        let (code, body, h) = self.get(path).await;
        let ct = h
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(ct.starts_with("application/json"), "{path}: {ct}");
        (code, serde_json::from_str(&body).expect("json"))
    }

    async fn scrape(&self) -> prometheus_parse::Scrape {
        let (code, body, h) = self.get("/metrics").await;
        assert_eq!(code, 200);
        let ct = h
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parse")
    }

    async fn stop(self) {
        self.stop.stop();
        let done = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        assert!(matches!(done, Ok(Ok(Ok(())))), "API stops on shutdown");
    }
}

fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

fn histogram_count(s: &prometheus_parse::Scrape, name: &str) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name)
        .and_then(|x| match &x.value {
            prometheus_parse::Value::Histogram(h) => h.last().map(|b| b.count),
            _ => None,
        })
}

#[tokio::test]
async fn health_ready_status_and_unknown_paths() {
    let api = start(None).await;
    let (code, body, _) = api.get("/healthz").await;
    assert_eq!((code, body.trim()), (200, "ok"));

    assert_eq!(api.get("/readyz").await.0, 503);
    api.fake.ready.store(true, Ordering::Relaxed);
    assert_eq!(api.get("/readyz").await.0, 200);

    let (code, s) = api.json("/status").await;
    assert_eq!(code, 200);
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["generation"], 3);
    assert_eq!(s["loaded_at_unix"], 1_700_000_000u64);
    assert!(
        s["uptime_secs"]
            .as_u64()
            .is_some_and(|u| (4..60).contains(&u))
    );
    assert_eq!(s["last_reload"]["ok"], false);
    assert_eq!(s["last_reload"]["at_unix"], 1_700_000_100u64);
    assert!(
        s["last_reload"]["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("zones/bad.toml"))
    );
    assert_eq!(s["ready"], true);
    assert_eq!(s["zones"][0]["name"], "example.com.");
    assert_eq!(s["zones"][0]["serial"], 2026112601u32);
    assert_eq!(s["zones"][0]["records"], 7);
    assert_eq!(s["zones"][0]["gslb_names"], 1);
    assert_eq!(s["health_generation"], 9);
    assert_eq!(s["datacenters"][1]["name"], "iad");
    assert_eq!(s["datacenters"][1]["admin"], "obey");
    assert_eq!(s["datacenters"][1]["targets"][0]["addr"], "10.0.0.1:80");
    assert_eq!(s["datacenters"][1]["targets"][0]["consecutive_passes"], 4);

    let (code, e) = api.json("/nope").await;
    assert_eq!(code, 404);
    assert!(e["error"].is_string());
    // A known path with the wrong method.
    let r = api
        .http
        .delete(format!("{}/status", api.base))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 405);
    api.stop().await;
}

#[tokio::test]
async fn admin_is_read_only_without_a_token() {
    let api = start(None).await;
    let (code, e, _) = api
        .put("/datacenters/fra/admin", Some("Bearer anything"), "drain")
        .await;
    assert_eq!(code, 403);
    assert!(
        e["error"].as_str().is_some_and(|m| m.contains("read-only")),
        "{e}"
    );
    assert!(api.fake.calls().is_empty());
    api.stop().await;
}

#[tokio::test]
async fn admin_with_token_from_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("api-token");
    std::fs::write(&file, "t0ken-42\n").expect("write");
    let token = api::load_token(Some(&file), None).expect("token");
    assert_eq!(token.as_deref(), Some("t0ken-42"));
    let api = start(token).await;
    let path = "/datacenters/fra/admin";
    let good = Some("Bearer t0ken-42");

    // Missing, or not a bearer credential: 401 with a challenge.
    // (`Bearer ` alone arrives as `Bearer`: HTTP trims header values.)
    let missing = [
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("t0ken-42"),
        Some("Bearer "),
    ];
    for auth in missing {
        let (code, e, h) = api.put(path, auth, "drain").await;
        assert_eq!(code, 401, "{auth:?}");
        assert!(e["error"].is_string());
        let challenge = h.get("www-authenticate").and_then(|v| v.to_str().ok());
        assert!(
            challenge.is_some_and(|c| c.starts_with("Bearer")),
            "{challenge:?}"
        );
    }
    // Wrong token: 403.
    for auth in ["Bearer t0ken-43", "Bearer t0ken-4", "Bearer t0ken-42x"] {
        let (code, e, _) = api.put(path, Some(auth), "drain").await;
        assert_eq!(code, 403, "{auth}");
        assert_eq!(e["error"], "wrong token");
    }
    // Bad bodies: 400 with a reason.
    for body in [
        "",
        "sideways",
        r#"{"state": 3}"#,
        r#"{"mode":"up"}"#,
        "{not json",
    ] {
        let (code, e, _) = api.put(path, good, body).await;
        assert_eq!(code, 400, "{body}");
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    }
    // Unknown datacenter: 404.
    let (code, e, _) = api.put("/datacenters/nowhere/admin", good, "down").await;
    assert_eq!(code, 404);
    assert!(
        e["error"].as_str().is_some_and(|m| m.contains("nowhere")),
        "{e}"
    );
    assert!(
        api.fake.calls().is_empty(),
        "no rejected call reached the backend"
    );

    // Plain text and JSON bodies; the scheme is case-insensitive.
    let (code, ok, _) = api.put(path, good, "drain\n").await;
    assert_eq!(
        (code, ok),
        (200, json!({"datacenter": "fra", "admin": "drain"}))
    );
    let (code, _, _) = api
        .put(
            "/datacenters/iad/admin",
            Some("bearer t0ken-42"),
            r#"{"state":"down"}"#,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        api.fake.calls(),
        vec![
            ("fra".to_string(), AdminState::Drain),
            ("iad".to_string(), AdminState::Down)
        ]
    );
    // The change shows in /status and as the admin-state gauge.
    let (_, s) = api.json("/status").await;
    assert_eq!(s["datacenters"][0]["admin"], "drain");
    assert_eq!(s["datacenters"][0]["usable"], false);
    let m = api.scrape().await;
    let a = "gslbd_datacenter_admin_state";
    assert_eq!(
        value(&m, a, &[("datacenter", "fra"), ("state", "drain")]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, a, &[("datacenter", "fra"), ("state", "obey")]),
        Some(0.0)
    );
    assert_eq!(
        value(&m, a, &[("datacenter", "iad"), ("state", "down")]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "gslbd_datacenter_usable", &[("datacenter", "fra")]),
        Some(0.0)
    );
    api.stop().await;
}

#[tokio::test]
async fn explain_answers_and_rejects() {
    let api = start(None).await;
    let (code, v) = api
        .json("/explain?name=WWW.example.com&type=AAAA&client=192.0.2.1&ecs=198.51.100.0/24")
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        v,
        json!({"name": "www.example.com.", "qtype": 28, "client": "192.0.2.1",
               "ecs": "198.51.100.0/24"})
    );
    let (code, v) = api.json("/explain?name=www.example.com.").await;
    assert_eq!(code, 200);
    assert_eq!(
        (v["qtype"].clone(), v["client"].clone()),
        (json!(1), Value::Null)
    );

    for bad in [
        "/explain",
        "/explain?name=",
        "/explain?name=a..example.com",
        "/explain?name=www.example.com&type=NOPE",
        "/explain?name=www.example.com&client=300.1.1.1",
        "/explain?name=www.example.com&ecs=10.0.0.0/40",
        "/explain?name=www.example.com&ecs=198.51.100.99/24", // host bits: refused, as the CLI does
        "/explain?name=www.example.com&ecs=2001:db8::/129",
        "/explain?name=www.example.com&colour=blue",
        "/explain?name=www.example.com&name=x.example.com",
        "/explain?name=www.example.com&type=ANY", // the backend's own 400
    ] {
        let (code, e) = api.json(bad).await;
        assert_eq!(code, 400, "{bad}");
        assert!(
            e["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{bad}: {e}"
        );
    }
    let (code, e) = api.json("/explain?name=www.example.org").await;
    assert_eq!(code, 404);
    assert!(
        e["error"]
            .as_str()
            .is_some_and(|m| m.contains("example.org"))
    );
    api.stop().await;
}

#[tokio::test]
async fn metrics_move_between_scrapes() {
    let api = start(None).await;
    let m = &api.metrics;
    let zones = m.zone_slots(["example.com."]);
    let www = m.gslb_slots(
        "www.example.com.",
        &[PoolLabels {
            name: "world",
            members: vec![(0, "fra"), (1, "iad")],
        }],
    );
    m.query(
        zones.get(Some(0)),
        1,
        0,
        Transport::Udp,
        Duration::from_micros(20),
    );

    let before = api.scrape().await;
    let q = "gslbd_queries_total";
    let a_udp = [
        ("zone", "example.com."),
        ("qtype", "A"),
        ("rcode", "NOERROR"),
        ("transport", "udp"),
    ];
    let refused_tcp = [
        ("zone", "none"),
        ("qtype", "A"),
        ("rcode", "REFUSED"),
        ("transport", "tcp"),
    ];
    let fra = [
        ("name", "www.example.com."),
        ("pool", "world"),
        ("datacenter", "fra"),
    ];
    let d = "gslbd_gslb_decisions_total";
    assert_eq!(value(&before, q, &a_udp), Some(1.0));
    assert_eq!(value(&before, q, &refused_tcp), None);
    assert_eq!(value(&before, d, &fra), Some(0.0));
    assert_eq!(
        histogram_count(&before, "gslbd_query_duration_seconds"),
        Some(1.0)
    );
    // Server and health gauges come from the backend.
    assert_eq!(value(&before, "gslbd_config_generation", &[]), Some(3.0));
    assert_eq!(
        value(&before, "gslbd_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert_eq!(value(&before, "gslbd_zones", &[]), Some(1.0));
    assert_eq!(
        value(&before, "gslbd_datacenter_up", &[("datacenter", "iad")]),
        Some(1.0)
    );
    assert_eq!(
        value(&before, "gslbd_datacenter_load", &[("datacenter", "iad")]),
        Some(0.25)
    );
    assert_eq!(
        value(
            &before,
            "gslbd_datacenter_latency_seconds",
            &[("datacenter", "fra")]
        ),
        Some(0.02)
    );
    let t = [("datacenter", "fra"), ("address", "10.0.0.0:80")];
    assert_eq!(value(&before, "gslbd_target_up", &t), Some(1.0));

    for _ in 0..5 {
        m.query(
            zones.get(Some(0)),
            1,
            0,
            Transport::Udp,
            Duration::from_micros(20),
        );
        m.decision(&www, 0, 0);
    }
    m.query(
        zones.get(None),
        1,
        5,
        Transport::Tcp,
        Duration::from_micros(2),
    );
    m.all_down(&www);
    m.ecs(1, 24);
    m.probe(
        "fra",
        "10.0.0.0:80",
        "timeout",
        Some(Duration::from_secs(2)),
    );
    m.snapshot_published();
    m.reload(false);

    let after = api.scrape().await;
    assert_eq!(value(&after, q, &a_udp), Some(6.0));
    assert_eq!(value(&after, q, &refused_tcp), Some(1.0));
    assert_eq!(value(&after, d, &fra), Some(5.0));
    let down = [("name", "www.example.com.")];
    assert_eq!(value(&after, "gslbd_gslb_all_down_total", &down), Some(1.0));
    assert_eq!(
        value(&after, "gslbd_ecs_queries_total", &[("family", "ipv4")]),
        Some(1.0)
    );
    assert_eq!(
        histogram_count(&after, "gslbd_query_duration_seconds"),
        Some(7.0)
    );
    assert_eq!(
        histogram_count(&after, "gslbd_probe_duration_seconds"),
        Some(1.0)
    );
    let p = [
        ("datacenter", "fra"),
        ("address", "10.0.0.0:80"),
        ("outcome", "timeout"),
    ];
    assert_eq!(value(&after, "gslbd_probe_results_total", &p), Some(1.0));
    assert_eq!(
        value(&after, "gslbd_snapshot_publications_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&after, "gslbd_reloads_total", &[("result", "error")]),
        Some(1.0)
    );
    api.stop().await;
}
