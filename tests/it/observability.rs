//! docs/grafana/gslbd.json and docs/prometheus/alerts.yml only name series that the real
//! server's /metrics exports (a renamed metric would leave a panel or an alert silently empty).
//! The `gslbd_cluster_*` series exist only with `--cluster`: tests/it/cluster.rs checks those
//! against a cluster node.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// Every `gslbd_...` word in `text`.
pub(crate) fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("gslbd_") {
        let word: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + word.len()..];
        out.insert(word);
    }
    out
}

#[test]
fn dashboard_and_alerts_use_only_exported_metrics() {
    let h = HealthHttp::start();
    h.set(HealthMode::Body(r#"{"load": 0.5}"#.into()));
    let zone = format!(
        concat!(
            minimal_zone!(),
            r#"[checks.web]
type = "http"
port = {port}
path = "/health"
load = "/load"
interval = "200ms"
timeout = "150ms"
[datacenters.one]
addresses = ["192.0.2.10"]
check = "web"
check-addresses = ["127.0.0.1"]
[gslb.www]
datacenters = ["one"]
"#
        ),
        port = h.port()
    );
    // Signed, so the DNSSEC families are exported too.
    let keys = tempfile::tempdir().unwrap();
    let name = hickory_proto::rr::Name::from_ascii("example.com.").unwrap();
    let key = gslbd::dnssec::keys::keygen(
        &name,
        gslbd::dnssec::KeyAlgorithm::EcdsaP256Sha256,
        gslbd::dnssec::Role::Csk,
        keys.path(),
    )
    .unwrap();
    let zone = format!(
        "{zone}\n[dnssec]\nkeys = [{{ file = {:?} }}]\n",
        key.private_file.display().to_string()
    );
    let s = TestServer::start_with(&[("example.com.toml", &zone)], |o| {
        o.api = Some("127.0.0.1:0".parse().unwrap());
    });
    let url = format!("http://{}/metrics", s.running().api_addr.unwrap());
    let q = q("www.example.com", "A").ecs("192.0.2.0".parse().unwrap(), 24);
    assert_eq!(s.udp(&q).answers().len(), 1);
    let t = Instant::now();
    let exported = loop {
        let text = s.block_on(async { reqwest::get(&url).await.unwrap().text().await.unwrap() });
        // Series names as exported (histograms as _bucket/_sum/_count), once probes reported
        // a load and a latency.
        let names: BTreeSet<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_string)
            .collect();
        if names.contains("gslbd_datacenter_load")
            && names.contains("gslbd_datacenter_latency_seconds")
        {
            break names;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no load/latency figure: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for file in ["grafana/gslbd.json", "prometheus/alerts.yml"] {
        let text = std::fs::read_to_string(docs.join(file)).unwrap();
        if file.ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(&text).expect("the dashboard is JSON");
        }
        // Comments may name series that are not exported.
        let live: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let used: BTreeSet<String> = metric_names(&live)
            .into_iter()
            .filter(|n| !n.starts_with("gslbd_cluster_"))
            .collect();
        assert!(used.len() >= 5, "{file}: {used:?}");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses series /metrics lacks: {unknown:?}"
        );
    }
}
