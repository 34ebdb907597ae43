//! Packets in, no panic out: random and mutated packets through the whole query path.
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use gslbd::config;
use gslbd::dns::{self, NoGslb, Peer, Query};
use gslbd::model::Model;
use proptest::prelude::*;

use crate::common::*;

fn model() -> Model {
    let f = config::parse_file(Path::new("example.com.toml"), EXAMPLE).unwrap();
    let g = config::parse_file(Path::new("inner.toml"), INNER).unwrap();
    config::build(&config::Config { files: vec![f, g] }).unwrap()
}

fn run(m: &Model, pkt: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 65535];
    let mut q = Query::default();
    let addr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let peer = if tcp {
        Peer::tcp(addr)
    } else {
        Peer::udp(addr)
    };
    dns::handle(m, &NoGslb, pkt, &peer, &mut q, &mut out).map(|a| out[..a.len].to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_never_panic(pkt in proptest::collection::vec(any::<u8>(), 0..600), tcp in any::<bool>()) {
        let m = model();
        if let Some(resp) = run(&m, &pkt, tcp) {
            // Whatever we send back is a well-formed DNS message with our id and QR set.
            prop_assert!(resp.len() >= 12);
            prop_assert_eq!(&resp[..2], &pkt[..2]);
            prop_assert!(resp[2] & 0x80 != 0);
            prop_assert!(hickory_proto::op::Message::from_vec(&resp).is_ok());
        }
    }

    #[test]
    fn mutated_queries_never_panic(
        name in prop::sample::select(vec!["www.example.com", "chain.example.com", "x.wild.example.com", "a.sub.example.com", "big.example.com", "nope.example.com"]),
        qtype in prop::sample::select(vec!["A", "AAAA", "TXT", "MX", "NS", "ANY", "CNAME", "SOA"]),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let m = model();
        let mut pkt = q(name, qtype).ecs("192.0.2.0".parse().unwrap(), 24).bytes();
        for (i, b) in flips {
            let at = i.index(pkt.len());
            pkt[at] = b;
        }
        let keep = cut.index(pkt.len() + 1);
        pkt.truncate(keep.max(pkt.len() / 2));
        if let Some(resp) = run(&m, &pkt, false) {
            prop_assert!(resp.len() <= 1232);
            prop_assert!(hickory_proto::op::Message::from_vec(&resp).is_ok());
        }
    }
}

/// Writes the seed corpora of the cargo-fuzz targets (`fuzz/`) into `$GSLBD_FUZZ_SEEDS/<target>/`:
/// every scenario query for `packet`, the shipped zones and every scenario's zone files for
/// `zone`, and state files of each shape for `state`. Run by `.ci/run` before its short fuzz
/// run, and by hand before a long one (fuzz/README.md).
#[test]
#[ignore = "writes files: run with GSLBD_FUZZ_SEEDS=DIR by .ci/run before fuzzing"]
fn write_fuzz_seeds() {
    let Some(dir) = std::env::var_os("GSLBD_FUZZ_SEEDS") else {
        panic!("set GSLBD_FUZZ_SEEDS to the corpus directory");
    };
    let dir = std::path::PathBuf::from(dir);
    let write = |target: &str, name: String, bytes: &[u8]| {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).expect("corpus dir");
        std::fs::write(d.join(name), bytes).expect("seed");
    };
    let (packets, zones) = crate::scenarios::fuzz_seeds();
    for (i, p) in packets.iter().enumerate() {
        write("packet", format!("scenario-{i:04}"), p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts: Vec<String> = ["zones/example.com.toml", "zones/lb.example.com.toml"]
        .iter()
        .map(|f| std::fs::read_to_string(root.join(f)).expect("shipped zone"))
        .collect();
    texts.extend(zones);
    for (i, t) in texts.iter().enumerate() {
        write("zone", format!("zone-{i:04}"), t.as_bytes());
    }
    // admin.json NUL health.json NUL inputs.json, as the state target splits them.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let admin = serde_json::json!({"version": 1, "datacenters": {
        "fra": {"admin": "drain", "drain_started_unix": now - 60},
        "ams": {"admin": "down"},
    }});
    let health = serde_json::json!({"version": 1, "written_unix": now - 10, "targets": [
        {"check": "tcp:80", "addr": "127.0.0.2:80", "up": false, "passes": 0, "fails": 3,
         "latency_ms": 12.5, "load": {"kind": "utilisation", "value": 0.5, "age_secs": 3.0}},
        {"check": "tcp:443", "addr": "127.0.0.3:443", "up": true, "passes": 2, "fails": 0,
         "load": {"kind": "connections", "value": 120.0, "age_secs": 1.0}},
    ]});
    let inputs = serde_json::json!({"version": 1, "written_unix": now - 10, "entries": [
        {"kind": "pushed", "id": "deploy", "datacenter": "fra", "up": false,
         "reason": "maintenance", "ttl_secs": 600.0, "expires_unix_ms": (now + 590) * 1000},
        {"kind": "alert", "id": "a1b2", "datacenter": "ams", "address": "127.0.0.3",
         "up": true, "load": 0.4, "ttl_secs": 300.0, "expires_unix_ms": (now + 290) * 1000},
    ]});
    let none = serde_json::json!({});
    let files = |a: &serde_json::Value, h: &serde_json::Value, i: &serde_json::Value| {
        let mut v = a.to_string().into_bytes();
        v.push(0);
        v.extend(h.to_string().into_bytes());
        v.push(0);
        v.extend(i.to_string().into_bytes());
        v
    };
    write("state", "all".into(), &files(&admin, &health, &inputs));
    write("state", "admin-only".into(), &files(&admin, &none, &none));
    write("state", "health-only".into(), &files(&none, &health, &none));
    write("state", "inputs-only".into(), &files(&none, &none, &inputs));
    let mut future = health.clone();
    future["written_unix"] = serde_json::json!(now + 3600);
    write("state", "future".into(), &files(&admin, &future, &inputs));
    println!(
        "{} packets, {} zone files, 5 state files in {}",
        packets.len(),
        texts.len(),
        dir.display()
    );
}
