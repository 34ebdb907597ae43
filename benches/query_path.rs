//! The query path without sockets: request bytes in, response bytes out.
//!
//! Run: `cargo bench --bench query_path`. Figures are per query on one core; compare them
//! with each other and with earlier runs of the same machine, not across machines.
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use gslbd::config;
use gslbd::dns::{self, NoGslb, Peer, Query};

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

criterion_group!(benches, bench);
criterion_main!(benches);
