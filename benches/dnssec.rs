//! DNSSEC costs without sockets: one signature per algorithm (what a cache miss costs), and
//! whole queries through `dns::handle` with and without the DO bit — static answers (RRSIG by
//! index), a signed NODATA, a warm-cache online-signed answer, and a cold one (every query a
//! new name: one compact-denial NSEC signed per query).
//!
//! Run: `cargo bench --bench dnssec`. Compare figures within one run (noisy shared machine).
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use gslbd::config;
use gslbd::dns::{self, NoGslb, Peer, Query};
use gslbd::dnssec::keys::{KeyAlgorithm, Role, keygen};
use gslbd::dnssec::signer::{DynKey, Params, ZoneSigner};
use gslbd::dnssec::{KeyState, ZoneKey};

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
A = ["192.0.2.10", "192.0.2.11"]
[records."*.wild"]
A = ["192.0.2.99"]
"#;

fn query(name: &str, qtype: u16, dnssec: bool) -> Vec<u8> {
    let mut v = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for l in name.split('.') {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    let flags: u8 = if dnssec { 0x80 } else { 0 };
    v.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, flags, 0, 0, 0]);
    v
}

fn key(dir: &Path, alg: KeyAlgorithm) -> ZoneKey {
    let name = hickory_proto::rr::Name::from_ascii("example.com.").unwrap();
    let g = keygen(&name, alg, Role::Csk, dir).expect("keygen");
    gslbd::dnssec::keys::load_zone_key(&g.private_file, alg, Role::Csk, KeyState::Active)
        .expect("key")
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    // One signature: the work of a cache miss, per algorithm.
    for alg in [KeyAlgorithm::EcdsaP256Sha256, KeyAlgorithm::Ed25519] {
        let signer = ZoneSigner::new(
            "example.com.".into(),
            b"\x07example\x03com\x00".as_slice().into(),
            vec![key(dir.path(), alg)],
            Params::default(),
        );
        let mut n = 0u32;
        c.bench_function(&format!("sign one A RRset ({alg})"), |b| {
            b.iter(|| {
                // A new TTL each time: a miss, so a signature (the cache is bypassed in effect).
                n = n.wrapping_add(1);
                let mut k = DynKey::new(b"\x03www\x07example\x03com\x00", 1, n);
                k.rdatas([&[192u8, 0, 2, 10][..], &[192, 0, 2, 11][..]].into_iter());
                let mut fresh = 0;
                black_box(signer.dynamic(&signer.answers, &k, 1_800_000_000, &mut fresh, 1)).ok();
            });
        });
    }

    let key_file = keygen(
        &hickory_proto::rr::Name::from_ascii("example.com.").unwrap(),
        KeyAlgorithm::EcdsaP256Sha256,
        Role::Csk,
        dir.path(),
    )
    .expect("keygen")
    .private_file;
    let text = format!(
        "{ZONE}\n[dnssec]\nkeys = [{{ file = {:?} }}]\n",
        key_file.display().to_string()
    );
    let f = config::parse_file(&dir.path().join("bench.toml"), &text).expect("zone parses");
    let model = config::build(&config::Config { files: vec![f] }).expect("zone builds");
    let client = Peer::udp(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut out = vec![0u8; 65535];
    let mut q = Query::default();
    for (label, name, qtype) in [
        ("static A", "www.example.com", 1),
        ("NODATA (static NSEC)", "www.example.com", 15),
        ("wildcard A (online, warm cache)", "x.wild.example.com", 1),
        (
            "NXDOMAIN, same name (online NSEC, warm cache)",
            "nope.example.com",
            1,
        ),
    ] {
        for dnssec in [false, true] {
            let req = query(name, qtype, dnssec);
            let tag = if dnssec { "DO" } else { "no DO" };
            c.bench_function(&format!("{label}, {tag}"), |b| {
                b.iter(|| dns::handle(&model, &NoGslb, black_box(&req), &client, &mut q, &mut out));
            });
        }
    }
    // Cold: a new name every query, each one signature (ECDSA P-256).
    let mut i = 0u64;
    c.bench_function(
        "NXDOMAIN, new name each query (online NSEC, cold), DO",
        |b| {
            b.iter(|| {
                i += 1;
                let req = query(&format!("n{i:x}.example.com"), 1, true);
                dns::handle(&model, &NoGslb, black_box(&req), &client, &mut q, &mut out)
            });
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
