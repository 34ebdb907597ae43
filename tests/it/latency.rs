//! The latency map file drives `latency` pools in the running server and is reloaded when
//! it changes.
use std::time::{Duration, Instant};

use crate::common::*;

const ZONE: &str = concat!(
    minimal_zone!(),
    r#"[datacenters.fra]
addresses = ["192.0.2.10"]
[datacenters.iad]
addresses = ["192.0.2.20"]
[gslb.www]
ttl = 30
datacenters = ["fra", "iad"]
policy = "latency"
margin = "5ms"
"#
);

const MAP: &str = "client,datacenter,ms\n203.0.113.0/24,fra,10\n203.0.113.0/24,iad,90\n198.51.100.0/24,iad,10\n198.51.100.0/24,fra,90\n";

fn ask(s: &TestServer, subnet: &str) -> Vec<String> {
    s.udp(&q("www.example.com", "A").ecs(subnet.parse().unwrap(), 24))
        .answers()
}

#[test]
fn latency_map_decides_per_client_and_reloads_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("rum.csv");
    std::fs::write(&map, MAP).unwrap();
    let m = map.clone();
    let s = TestServer::start_with(&[("example.com.toml", ZONE)], move |o| {
        o.latency_map = Some(m)
    });
    let fra = ["www.example.com. 30 IN A 192.0.2.10"];
    let iad = ["www.example.com. 30 IN A 192.0.2.20"];
    let t = Instant::now();
    while ask(&s, "198.51.100.0") != iad {
        assert!(t.elapsed() < Duration::from_secs(3), "map loaded at start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ask(&s, "203.0.113.0"), fra);
    let r = s.udp(&q("www.example.com", "A").ecs("203.0.113.0".parse().unwrap(), 24));
    assert_eq!(
        r.ecs().map(|e| e.2),
        Some(24),
        "a subnet entry decided: scope /24"
    );
    // Swap the figures: the file is picked up without a reload.
    std::fs::write(
        &map,
        MAP.replace(",10\n", ",X\n")
            .replace(",90\n", ",10\n")
            .replace(",X\n", ",90\n"),
    )
    .unwrap();
    let t = Instant::now();
    while ask(&s, "203.0.113.0") != iad {
        assert!(t.elapsed() < Duration::from_secs(4), "changed map applied");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ask(&s, "198.51.100.0"), fra);
    // A broken map keeps the last good one.
    std::fs::write(&map, "203.0.113.0/24,nowhere,1\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ask(&s, "203.0.113.0"), iad);
}
