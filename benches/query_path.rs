//! The query path without sockets: request bytes in, response bytes out.
//!
//! Run: `cargo bench --bench query_path`. Figures are per query on one core; compare them
//! with each other and with earlier runs of the same machine, not across machines.
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use gslbd::config;
use gslbd::dns::{self, NoGslb, Peer, Query};
use gslbd::geo::GeoDb;
use gslbd::gslb::GslbContext;
use gslbd::health::Snapshot;
use gslbd::metrics::Metrics;
use gslbd::resolve::{Entry, ResolvedNames, State};
use gslbd::server::Loaded;

const ZONE: &str = r#"
origin = "example.com."
[soa]
mname = "ns1.example.com."
rname = "hostmaster.example.com."
[records."@"]
NS = ["ns1"]
[records.ns1]
A = ["192.0.2.1"]
[records.www]
A = ["192.0.2.10"]
[records.a]
CNAME = ["b"]
[records.b]
CNAME = ["www"]
"#;

fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut v = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for l in name.split('.') {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    v
}

fn bench(c: &mut Criterion) {
    let f = config::parse_file(Path::new("bench.toml"), ZONE).expect("bench zone parses");
    let model = config::build(&config::Config { files: vec![f] }).expect("bench zone builds");
    let client = Peer::udp(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut out = vec![0u8; 65535];
    let mut q = Query::default();
    for (label, name) in [
        ("static A", "www.example.com"),
        ("CNAME chain", "a.example.com"),
        ("NXDOMAIN", "nope.example.com"),
    ] {
        let req = query(name, 1);
        c.bench_function(label, |b| {
            b.iter(|| dns::handle(&model, &NoGslb, black_box(&req), &client, &mut q, &mut out));
        });
    }
    hickory_detour(c, &model, &client);
}

/// What answering through hickory-server's `RequestHandler` would add per query: its
/// `Server` decodes every request into its message type before calling the handler, and a
/// handler can only answer with a `MessageResponse` (records, encoded again by hickory's
/// encoder). Approximated with hickory-proto's `Message`: decode the request, decode our
/// response, encode it again. Reported next to the answer itself in docs/benchmarks.md.
fn hickory_detour(c: &mut Criterion, model: &gslbd::model::Model, client: &Peer) {
    use hickory_proto::op::Message;
    let mut out = vec![0u8; 65535];
    let mut q = Query::default();
    for (label, name) in [
        ("static A", "www.example.com"),
        ("CNAME chain", "a.example.com"),
        ("NXDOMAIN", "nope.example.com"),
    ] {
        let req = query(name, 1);
        let n = dns::handle(model, &NoGslb, &req, client, &mut q, &mut out)
            .expect("answered")
            .len;
        let resp = out[..n].to_vec();
        let again = Message::from_vec(&resp)
            .expect("decodes")
            .to_vec()
            .expect("re-encodes");
        println!(
            "{label}: {} bytes from gslbd, {} after hickory decode+encode, identical: {}",
            resp.len(),
            again.len(),
            again == resp
        );
        c.bench_function(&format!("hickory decode request ({label})"), |b| {
            b.iter(|| Message::from_vec(black_box(&req)).expect("request decodes"));
        });
        c.bench_function(&format!("hickory decode+encode response ({label})"), |b| {
            b.iter(|| {
                Message::from_vec(black_box(&resp))
                    .expect("response decodes")
                    .to_vec()
                    .expect("response re-encodes")
            });
        });
    }
}

/// One GSLB decision (failover over two datacenters, no GeoIP) answered three ways: the
/// address datacenter, a CNAME to a hostname datacenter's target (outside the zone), and the
/// same target flattened to its resolved addresses (which reads the clock for the TTL left).
const GSLB: &str = r#"
origin = "example.com."
[soa]
mname = "ns1.example.com."
rname = "hostmaster.example.com."
[records."@"]
NS = ["ns1"]
[records.ns1]
A = ["192.0.2.1"]
[datacenters.fra]
addresses = ["192.0.2.10", "192.0.2.11"]
[datacenters.lb]
target = "lb.cloud.example.net."
[gslb.addr]
datacenters = ["fra", "lb"]
[gslb.cname]
datacenters = ["lb", "fra"]
[gslb.flat]
flatten = true
datacenters = ["lb", "fra"]
"#;

fn bench_gslb(c: &mut Criterion) {
    let f = config::parse_file(Path::new("bench.toml"), GSLB).expect("bench zone parses");
    let model = config::build(&config::Config { files: vec![f] }).expect("bench zone builds");
    let metrics = Metrics::new();
    let loaded = Loaded::new(model, &metrics);
    let mut e = Entry::pending("lb.cloud.example.net.");
    e.v4 = Arc::from([
        "198.51.100.7".parse().unwrap(),
        "198.51.100.8".parse().unwrap(),
    ]);
    e.serial = 1;
    e.state = State::Fresh;
    e.ttl = 3600;
    e.expires = Some(tokio::time::Instant::now() + std::time::Duration::from_secs(3600));
    let mut names = ResolvedNames::default();
    names.by_name.insert(e.name.clone(), Arc::new(e));
    let mut snap = Snapshot::all_up(loaded.model.datacenters.list.len());
    snap.resolutions = Some(Arc::new(loaded.model.resolutions(&names)));
    let geo = GeoDb::empty();
    let ctx = GslbContext {
        model: &loaded.model,
        snapshot: &snap,
        geo: &geo,
        metrics: &metrics,
        slots: &loaded.gslb_slots,
    };
    let client = Peer::udp(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut out = vec![0u8; 65535];
    let mut q = Query::default();
    for (label, name) in [
        ("GSLB address", "addr.example.com"),
        ("GSLB CNAME", "cname.example.com"),
        ("GSLB flattened", "flat.example.com"),
    ] {
        let req = query(name, 1);
        c.bench_function(label, |b| {
            b.iter(|| {
                dns::handle(
                    &loaded.model,
                    &ctx,
                    black_box(&req),
                    &client,
                    &mut q,
                    &mut out,
                )
            });
        });
    }
}

criterion_group!(benches, bench, bench_gslb);
criterion_main!(benches);
