//! Signed zones over real sockets: every RRSIG of a response is verified with hickory-proto's
//! own canonical form and verifier (`gslbd::dnssec::verify`, independent of our signing
//! code), and the records are asserted exactly. The real-validator (`delv`) tests are in
//! `dnssec_delv.rs` and use the fixture defined here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gslbd::dnssec::keys::{KeyAlgorithm, KeyState, Role, keygen, load_zone_key};
use gslbd::dnssec::verify::{Verified, verify_response};
use gslbd::health::{DcState, Snapshot};
use hickory_proto::op::ResponseCode;
use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{IpVersion, Value, Writer};

use crate::common::*;

/// The GeoIP fixture: ECS networks per region, and loopback /16s per region so a validator
/// querying from 127.1.0.1 (EU), 127.2.0.1 (NA) or 127.3.0.1 (AS) gets that region's answer.
pub fn geo_fixture(dir: &Path) -> PathBuf {
    let place = |cont: &str, country: &str| {
        Value::map([
            ("continent", Value::map([("code", Value::from(cont))])),
            ("country", Value::map([("iso_code", Value::from(country))])),
        ])
    };
    let nets = [
        ("81.2.69.0/24", place("EU", "GB")),
        ("198.51.100.0/24", place("NA", "US")),
        ("203.0.113.0/24", place("AS", "SG")),
        ("127.1.0.0/16", place("EU", "GB")),
        ("127.2.0.0/16", place("NA", "US")),
        ("127.3.0.0/16", place("AS", "SG")),
    ];
    let mut w = Writer::builder("GeoIP2-Country-Test")
        .ip_version(IpVersion::V6)
        .build();
    for (net, v) in nets {
        w.insert_value(net.parse::<IpNet>().expect("network"), v)
            .expect("insert");
    }
    let path = dir.join("geo.mmdb");
    std::fs::write(&path, w.to_bytes().expect("mmdb")).expect("write mmdb");
    path
}

/// The signed test zone; `{dnssec}` is replaced by the `[dnssec]` table.
pub const ZONE: &str = r#"
origin = "signed.test."
ttl = 300
[soa]
mname = "ns1.signed.test."
rname = "hostmaster.signed.test."
serial = 1
minimum = 60
[records."@"]
NS = ["ns1"]
MX = ["10 Mail"]
[records.ns1]
A = ["127.0.0.1"]
[records.Mail]
A = ["192.0.2.25"]
[records.www]
A = ["192.0.2.10", "192.0.2.11"]
AAAA = ["2001:db8::10"]
[records.alias]
CNAME = ["geo"]
[records."*.wild"]
A = ["192.0.2.99"]
TXT = ["wildcard"]
[records."a.b.deep"]
A = ["192.0.2.77"]
[records.sub]
NS = ["ns.sub"]
[records."ns.sub"]
A = ["192.0.2.53"]
[records.sec]
NS = ["ns.sec"]
DS = ["12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"]
[records."ns.sec"]
A = ["192.0.2.54"]
[records.big]
TXT = [
  "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
  "1111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111",
  "2222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222",
  "3333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333",
  "4444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444",
  "5555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555",
  "6666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666",
  "7777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777",
  "8888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888",
  "9999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999",
]

[datacenters.lon]
addresses = ["192.0.2.110", "2001:db8:10::10"]
[datacenters.fra]
addresses = ["192.0.2.120", "2001:db8:20::20"]
[datacenters.iad]
addresses = ["198.51.100.130", "2001:db8:30::30"]
[datacenters.sin]
addresses = ["203.0.113.150"]

[gslb.geo]
ttl = 30
rules = [
  { match = ["EU"], pool = "europe" },
  { match = ["NA"], pool = "america" },
  { match = ["AS"], pool = "asia" },
  { pool = "world" },
]
pools.europe = { datacenters = ["lon", "fra"], policy = "failover" }
pools.america = { datacenters = ["iad"] }
pools.asia = { datacenters = ["sin"] }
pools.world = { datacenters = ["iad"] }

[gslb.fo]
ttl = 60
datacenters = ["lon", "fra"]
policy = "failover"

{dnssec}
"#;

/// Keys made with the library's keygen in a directory of their own.
pub struct Keys {
    /// Holds the key files for the life of the test.
    pub _dir: tempfile::TempDir,
    pub files: Vec<(PathBuf, Role, KeyAlgorithm)>,
    /// DNSKEY RDATA of every key, in file order.
    pub dnskeys: Vec<Vec<u8>>,
}

impl Keys {
    pub fn new(zone: &str, roles: &[(Role, KeyAlgorithm)]) -> Keys {
        let dir = tempfile::tempdir().expect("key dir");
        let name = hickory_proto::rr::Name::from_ascii(zone).unwrap();
        let mut files = Vec::new();
        let mut dnskeys = Vec::new();
        for &(role, alg) in roles {
            let g = keygen(&name, alg, role, dir.path()).expect("keygen");
            let k = load_zone_key(&g.private_file, alg, role, KeyState::Active).expect("key loads");
            dnskeys.push(k.dnskey.clone());
            files.push((g.private_file, role, alg));
        }
        Keys {
            _dir: dir,
            files,
            dnskeys,
        }
    }

    /// A `[dnssec]` table using every key, with `extra` lines appended.
    pub fn table(&self, extra: &str) -> String {
        let keys: Vec<String> = self
            .files
            .iter()
            .map(|(f, r, a)| {
                format!(
                    "{{ file = {:?}, role = \"{}\", algorithm = \"{a}\" }}",
                    f.display().to_string(),
                    r.name()
                )
            })
            .collect();
        format!("[dnssec]\nkeys = [{}]\n{extra}\n", keys.join(", "))
    }

    /// The SEP keys (trust anchors).
    pub fn anchors(&self) -> Vec<&Vec<u8>> {
        self.dnskeys.iter().filter(|k| k[1] & 1 == 1).collect()
    }
}

pub struct Signed {
    pub s: TestServer,
    pub keys: Keys,
    _geo: tempfile::TempDir,
}

pub fn signed_zone(keys: &Keys, extra: &str) -> String {
    ZONE.replace("{dnssec}", &keys.table(extra))
}

/// A server with the signed zone, one CSK (or `roles`), `extra` `[dnssec]` lines and
/// options changed by `tweak`.
pub fn start_signed(
    roles: &[(Role, KeyAlgorithm)],
    extra: &str,
    tweak: impl FnOnce(&mut gslbd::server::ServeOptions),
) -> Signed {
    let keys = Keys::new("signed.test.", roles);
    let geo = tempfile::tempdir().expect("geo dir");
    let db = geo_fixture(geo.path());
    let zone = signed_zone(&keys, extra);
    let s = TestServer::start_with(&[("signed.test.toml", &zone)], |o| {
        o.geoip = vec![db];
        tweak(o);
    });
    Signed { s, keys, _geo: geo }
}

pub const CSK: &[(Role, KeyAlgorithm)] = &[(Role::Csk, KeyAlgorithm::EcdsaP256Sha256)];

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Signed {
    pub fn ask(&self, name: &str, qtype: &str) -> Resp {
        self.s.udp(&q(name, qtype).dnssec())
    }

    /// Verifies every RRSIG of `r` now; returns what was verified.
    pub fn verify(&self, r: &Resp) -> Verified {
        verify_response(&r.raw, &self.keys.dnskeys, unix_now())
            .unwrap_or_else(|e| panic!("response does not verify: {e}\n{:?}", r.msg))
    }

    pub fn signer(&self) -> Arc<gslbd::dnssec::ZoneSigner> {
        self.s.running().state.model().model.zones[0]
            .dnssec
            .clone()
            .expect("zone is signed")
    }

    pub fn set_health(&self, f: impl FnOnce(&gslbd::model::Model, &mut Snapshot)) {
        let l = self.s.running().state.model();
        let mut snap = Snapshot::all_up(l.model.datacenters.list.len());
        f(&l.model, &mut snap);
        publish(&self.s, snap);
    }
}

/// Makes `snap` the health the server answers with.
pub fn publish(s: &TestServer, snap: Snapshot) {
    let serving = &s.running().state.serving;
    serving
        .health_sink(serving.health_generation())
        .publish(Arc::new(snap));
}

/// The DO bit, Compact Answers OK and TCP for the harness's queries and responses.
pub trait QExt {
    /// With the DO bit.
    fn dnssec(self) -> Q;
}

impl QExt for Q {
    fn dnssec(mut self) -> Q {
        self.dnssec_ok = true;
        self.edns.get_or_insert((1232, 0, vec![]));
        self
    }
}

/// Sections and flags of a response as strings.
pub trait RespExt {
    fn aa(&self) -> bool;
    fn tc(&self) -> bool;
    fn authority(&self) -> Vec<String>;
    fn additional(&self) -> Vec<String>;
}

impl RespExt for Resp {
    fn aa(&self) -> bool {
        self.msg.metadata.authoritative
    }
    fn tc(&self) -> bool {
        self.msg.metadata.truncation
    }
    fn authority(&self) -> Vec<String> {
        self.msg.authorities.iter().map(|r| r.to_string()).collect()
    }
    fn additional(&self) -> Vec<String> {
        self.msg.additionals.iter().map(|r| r.to_string()).collect()
    }
}

/// `q` over TCP.
pub fn tcp(s: &TestServer, q: &Q) -> Resp {
    let mut c = std::net::TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    Resp::parse(tcp_exchange(&mut c, &q.bytes()).expect("tcp answer"))
}

pub fn dc(m: &gslbd::model::Model, name: &str) -> usize {
    m.datacenters.by_name[name].0 as usize
}

/// Records of a section without the RRSIGs, and the RRSIGs' (type covered, labels, TTL).
fn split(records: &[String]) -> (Vec<String>, Vec<(String, u8, u32)>) {
    let mut plain = Vec::new();
    let mut sigs = Vec::new();
    for r in records {
        let f: Vec<&str> = r.split_whitespace().collect();
        if f.get(3) == Some(&"RRSIG") {
            sigs.push((
                f[4].to_string(),
                f[6].parse().unwrap(),
                f[7].parse().unwrap(),
            ));
        } else {
            plain.push(r.clone());
        }
    }
    (plain, sigs)
}

#[test]
fn static_answers_carry_rrsigs_only_with_do_and_stay_minimal() {
    let z = start_signed(CSK, "", |_| {});
    let plain = z.s.udp(&q("www.signed.test", "A"));
    assert_eq!(
        plain.answers(),
        [
            "www.signed.test. 300 IN A 192.0.2.10",
            "www.signed.test. 300 IN A 192.0.2.11"
        ]
    );
    let r = z.ask("WWW.Signed.Test", "A");
    assert!(r.aa());
    let (recs, sigs) = split(&r.answers());
    assert_eq!(
        recs,
        [
            "WWW.Signed.Test. 300 IN A 192.0.2.10",
            "WWW.Signed.Test. 300 IN A 192.0.2.11"
        ]
    );
    assert_eq!(sigs, [("A".to_string(), 3, 300)]);
    let v = z.verify(&r);
    assert_eq!((v.signatures, v.unsigned.len()), (1, 0));
    // The response's OPT says DO back.
    let opt_flags = r.msg.edns.as_ref().unwrap().flags();
    assert!(opt_flags.dnssec_ok);

    // MX: unsigned answers carry the in-zone address as additional data; signed ones are
    // minimal (its RRSIG would have to come along).
    let plain = z.s.udp(&q("signed.test", "MX"));
    assert_eq!(
        plain.additional(),
        ["mail.signed.test. 300 IN A 192.0.2.25"]
    );
    let r = z.ask("signed.test", "MX");
    assert_eq!(
        split(&r.answers()).0,
        ["signed.test. 300 IN MX 10 mail.signed.test."]
    );
    assert!(r.additional().is_empty());
    assert_eq!(z.verify(&r).signatures, 1);
}

#[test]
fn dnskey_cds_and_cdnskey_are_signed_by_the_ksk_and_the_rest_by_the_zsk() {
    let z = start_signed(
        &[
            (Role::Ksk, KeyAlgorithm::EcdsaP256Sha256),
            (Role::Zsk, KeyAlgorithm::Ed25519),
        ],
        "",
        |_| {},
    );
    let tag = |k: &Vec<u8>| gslbd::dnssec::keys::key_tag(k);
    let (ksk, zsk) = (tag(&z.keys.dnskeys[0]), tag(&z.keys.dnskeys[1]));
    let r = z.ask("signed.test", "48");
    let (keys, _) = split(&r.answers());
    assert_eq!(keys.len(), 2);
    let sig_tags: Vec<u16> = r
        .msg
        .answers
        .iter()
        .filter_map(|x| match &x.data {
            hickory_proto::rr::RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(
                s,
            )) => Some(s.input().key_tag),
            _ => None,
        })
        .collect();
    assert_eq!(sig_tags, [ksk]);
    assert_eq!(z.verify(&r).signatures, 1);

    let r = z.ask("signed.test", "59");
    let (cds, _) = split(&r.answers());
    let ds = gslbd::dnssec::keys::ds_rdata(b"\x06signed\x04test\x00", &z.keys.dnskeys[0]).unwrap();
    assert_eq!(
        cds,
        [format!(
            "signed.test. 300 IN CDS {}",
            gslbd::dnssec::keys::ds_text(&ds)
        )]
    );
    assert_eq!(z.verify(&r).signatures, 1);
    let r = z.ask("signed.test", "60");
    assert_eq!(
        split(&r.answers()).0.len(),
        1,
        "only the KSK is a secure entry point"
    );
    z.verify(&r);

    let r = z.ask("www.signed.test", "AAAA");
    let tags: Vec<u16> = r
        .msg
        .answers
        .iter()
        .filter_map(|x| match &x.data {
            hickory_proto::rr::RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(
                s,
            )) => Some(s.input().key_tag),
            _ => None,
        })
        .collect();
    assert_eq!(tags, [zsk]);
    z.verify(&r);
}

#[test]
fn gslb_answers_per_region_are_signed_once_and_then_served_from_the_cache() {
    let z = start_signed(CSK, "", |_| {});
    let signer = z.signer();
    let base = signer.info().signatures;
    let cases = [
        ("81.2.69.0", "192.0.2.110"),
        ("198.51.100.0", "198.51.100.130"),
        ("203.0.113.0", "203.0.113.150"),
    ];
    for round in 0..5 {
        for (ecs, want) in cases {
            let r = z.s.udp(
                &q("geo.signed.test", "A")
                    .dnssec()
                    .ecs(ecs.parse().unwrap(), 24),
            );
            let (recs, sigs) = split(&r.answers());
            assert_eq!(recs, [format!("geo.signed.test. 30 IN A {want}")], "{ecs}");
            assert_eq!(sigs, [("A".to_string(), 3, 30)]);
            assert_eq!(r.ecs().unwrap().2, 24, "scope");
            assert_eq!(z.verify(&r).signatures, 1, "round {round} {ecs}");
        }
    }
    // One signature per distinct answer, however often it is asked.
    let info = signer.info();
    assert_eq!(info.signatures - base, 3);
    assert_eq!((info.cache_misses, info.cache_hits), (3, 12));
    // Over TCP too.
    let r = tcp(
        &z.s,
        &q("geo.signed.test", "AAAA")
            .dnssec()
            .ecs("81.2.69.0".parse().unwrap(), 24),
    );
    assert_eq!(
        split(&r.answers()).0,
        ["geo.signed.test. 30 IN AAAA 2001:db8:10::10"]
    );
    assert_eq!(z.verify(&r).signatures, 1);
}

#[test]
fn health_aware_ttls_are_signed_on_a_ladder_of_the_name_ttl() {
    let z = start_signed(CSK, "", |_| {});
    // fra answers (lon down) and is unsettled with a 20 s cap: 60 -> 30 -> 15.
    z.set_health(|m, snap| {
        snap.dcs[dc(m, "lon")].healthy = false;
        snap.dcs[dc(m, "fra")] = DcState {
            settled: false,
            settle_ttl: 20,
            ..DcState::UP
        };
    });
    let r = z.ask("fo.signed.test", "A");
    assert_eq!(
        split(&r.answers()),
        (
            vec!["fo.signed.test. 15 IN A 192.0.2.120".to_string()],
            vec![("A".to_string(), 3, 15)]
        )
    );
    z.verify(&r);
    // Unsigned answers keep the exact TTL.
    let r = z.s.udp(&q("fo.signed.test", "A"));
    assert_eq!(r.answers(), ["fo.signed.test. 20 IN A 192.0.2.120"]);
}

#[test]
fn denials_are_compact_with_one_nsec_at_the_query_name() {
    let z = start_signed(CSK, "", |_| {});
    const SOA: &str =
        "signed.test. 60 IN SOA ns1.signed.test. hostmaster.signed.test. 1 14400 3600 1209600 60";
    let nsec = |r: &Resp| -> Vec<String> {
        split(&r.authority())
            .0
            .into_iter()
            .filter(|x| x.contains(" NSEC "))
            .collect()
    };
    // NXDOMAIN: NOERROR (NODATA) with NXNAME in the bitmap...
    let r = z.ask("nope.signed.test", "A");
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert!(r.answers().is_empty());
    let (auth, sigs) = split(&r.authority());
    assert_eq!(
        auth,
        [
            SOA.to_string(),
            // hickory prints NXNAME (128) as "Unknown"; dig says TYPE128.
            "nope.signed.test. 60 IN NSEC \\000.nope.signed.test. RRSIG NSEC Unknown".to_string()
        ]
    );
    assert_eq!(
        sigs,
        [("SOA".to_string(), 2, 60), ("NSEC".to_string(), 3, 60)]
    );
    assert_eq!(z.verify(&r).signatures, 2);
    // ...NXDOMAIN again when the resolver says Compact Answers OK, with CO echoed.
    // Compact Answers OK: the bit after DO in the OPT flags (no options: 4 bytes from the end).
    let mut co = q("nope.signed.test", "A").dnssec().bytes();
    let at = co.len() - 4;
    co[at] |= 0x40;
    let r = Resp::parse(udp_raw(z.s.addr, &co).expect("udp answer"));
    assert_eq!(r.rcode(), ResponseCode::NXDomain);
    assert_eq!(nsec(&r).len(), 1);
    let opt_at = r.raw.len() - 11;
    assert_eq!(&r.raw[opt_at..opt_at + 3], &[0, 0, 41]);
    assert_eq!(r.raw[opt_at + 7] & 0xC0, 0xC0, "DO and CO back");
    z.verify(&r);
    // Without DO: plain NXDOMAIN with the SOA only.
    let r = z.s.udp(&q("nope.signed.test", "A"));
    assert_eq!(r.rcode(), ResponseCode::NXDomain);
    assert_eq!(r.authority(), [SOA]);

    // NODATA at a name: its types.
    let r = z.ask("www.signed.test", "MX");
    assert_eq!(
        nsec(&r),
        ["www.signed.test. 60 IN NSEC \\000.www.signed.test. A AAAA RRSIG NSEC"]
    );
    z.verify(&r);
    // An empty non-terminal: no types of its own.
    let r = z.ask("b.deep.signed.test", "A");
    assert_eq!(r.rcode(), ResponseCode::NoError);
    assert_eq!(
        nsec(&r),
        ["b.deep.signed.test. 60 IN NSEC \\000.b.deep.signed.test. RRSIG NSEC"]
    );
    z.verify(&r);
    // A wildcard answer is signed as the query name (labels 4), with no NSEC needed.
    let r = z.ask("x.wild.signed.test", "A");
    assert_eq!(
        split(&r.answers()),
        (
            vec!["x.wild.signed.test. 300 IN A 192.0.2.99".to_string()],
            vec![("A".to_string(), 4, 300)]
        )
    );
    assert!(r.authority().is_empty());
    z.verify(&r);
    // Wildcard NODATA: the wildcard's types at the query name.
    let r = z.ask("x.wild.signed.test", "MX");
    assert_eq!(
        nsec(&r),
        ["x.wild.signed.test. 60 IN NSEC \\000.x.wild.signed.test. A TXT RRSIG NSEC"]
    );
    z.verify(&r);
    // A GSLB name asked for another type: it has A and AAAA.
    let r = z.ask("fo.signed.test", "MX");
    assert_eq!(
        nsec(&r),
        ["fo.signed.test. 60 IN NSEC \\000.fo.signed.test. A AAAA RRSIG NSEC"]
    );
    z.verify(&r);
    // NXNAME itself cannot be asked for.
    let r = z.ask("www.signed.test", "128");
    assert_eq!(r.rcode(), ResponseCode::FormErr);
    // The NSEC of a name, asked for.
    let r = z.ask("www.signed.test", "47");
    assert_eq!(
        split(&r.answers()).0,
        ["www.signed.test. 60 IN NSEC \\000.www.signed.test. A AAAA RRSIG NSEC"]
    );
    z.verify(&r);
}

#[test]
fn gslb_nodata_proves_the_missing_family_only() {
    let z = start_signed(CSK, "", |_| {});
    // Asia's only datacenter has no IPv6 address: AAAA is NODATA, A is still claimed.
    let r = z.s.udp(
        &q("geo.signed.test", "AAAA")
            .dnssec()
            .ecs("203.0.113.0".parse().unwrap(), 24),
    );
    assert!(r.answers().is_empty());
    let nsec: Vec<String> = split(&r.authority())
        .0
        .into_iter()
        .filter(|x| x.contains(" NSEC "))
        .collect();
    assert_eq!(
        nsec,
        ["geo.signed.test. 60 IN NSEC \\000.geo.signed.test. A RRSIG NSEC"]
    );
    z.verify(&r);
}

#[test]
fn referrals_carry_the_signed_ds_or_the_nsec_proving_there_is_none() {
    let z = start_signed(CSK, "", |_| {});
    // Insecure delegation: NS (unsigned, the child's) + NSEC at the cut + its RRSIG; glue.
    let r = z.ask("host.sub.signed.test", "A");
    assert!(!r.aa());
    let (auth, sigs) = split(&r.authority());
    assert_eq!(
        auth,
        [
            "sub.signed.test. 300 IN NS ns.sub.signed.test.",
            "sub.signed.test. 60 IN NSEC \\000.sub.signed.test. NS RRSIG NSEC"
        ]
    );
    assert_eq!(sigs, [("NSEC".to_string(), 3, 60)]);
    assert_eq!(r.additional(), ["ns.sub.signed.test. 300 IN A 192.0.2.53"]);
    let v = z.verify(&r);
    assert_eq!(v.signatures, 1);
    assert_eq!(
        v.unsigned,
        [
            "authority sub.signed.test. NS",
            "additional ns.sub.signed.test. A"
        ]
    );
    // Secure delegation: the DS and its RRSIG.
    let r = z.ask("host.sec.signed.test", "A");
    let (auth, sigs) = split(&r.authority());
    assert_eq!(
        auth,
        [
            "sec.signed.test. 300 IN NS ns.sec.signed.test.",
            "sec.signed.test. 300 IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"
        ]
    );
    assert_eq!(sigs, [("DS".to_string(), 3, 300)]);
    z.verify(&r);
    // DS asked at the cut: answered by the parent, authoritatively.
    let r = z.ask("sec.signed.test", "DS");
    assert!(r.aa());
    assert_eq!(split(&r.answers()).1, [("DS".to_string(), 3, 300)]);
    z.verify(&r);
    let r = z.ask("sub.signed.test", "DS");
    assert!(r.aa());
    assert!(r.answers().is_empty());
    assert!(
        r.authority()
            .iter()
            .any(|x| x.contains("NSEC \\000.sub.signed.test. NS RRSIG NSEC"))
    );
    z.verify(&r);
}

#[test]
fn a_cname_into_a_gslb_name_is_signed_hop_by_hop() {
    let z = start_signed(CSK, "", |_| {});
    let r = z.s.udp(
        &q("alias.signed.test", "A")
            .dnssec()
            .ecs("198.51.100.0".parse().unwrap(), 24),
    );
    assert_eq!(
        split(&r.answers()),
        (
            vec![
                "alias.signed.test. 300 IN CNAME geo.signed.test.".to_string(),
                "geo.signed.test. 30 IN A 198.51.100.130".to_string()
            ],
            vec![("CNAME".to_string(), 3, 300), ("A".to_string(), 3, 30)]
        )
    );
    assert_eq!(z.verify(&r).signatures, 2);
}

#[test]
fn signed_answers_too_big_for_udp_set_tc_and_come_whole_over_tcp() {
    let z = start_signed(CSK, "", |_| {});
    let r = z.ask("big.signed.test", "TXT");
    assert!(r.tc());
    assert!(r.answers().is_empty());
    let r = tcp(&z.s, &q("big.signed.test", "TXT").dnssec());
    assert!(!r.tc());
    assert_eq!(split(&r.answers()).0.len(), 10);
    assert_eq!(z.verify(&r).signatures, 1);
    // Without DO it fits in 1232 bytes (1144): the RRSIG is what makes it too big.
    let r = z.s.udp(&q("big.signed.test", "TXT"));
    assert!(!r.tc());
}

#[test]
fn signatures_made_with_a_skewed_clock_do_not_verify_now() {
    // The server's clock is 30 days behind: what it signs has long expired.
    let z = start_signed(CSK, "", |o| {
        o.dnssec = gslbd::dnssec::Env::with_clock(gslbd::dnssec::Clock::offset_by(-30 * 86400));
    });
    let r = z.ask("www.signed.test", "A");
    let e = verify_response(&r.raw, &z.keys.dnskeys, unix_now()).unwrap_err();
    assert!(e.contains("expired"), "{e}");
    // ...and one 30 days ahead signs what is not valid yet.
    let z = start_signed(CSK, "", |o| {
        o.dnssec = gslbd::dnssec::Env::with_clock(gslbd::dnssec::Clock::offset_by(30 * 86400));
    });
    let r = z.ask("geo.signed.test", "A");
    let e = verify_response(&r.raw, &z.keys.dnskeys, unix_now()).unwrap_err();
    assert!(e.contains("not yet valid"), "{e}");
}

/// (inception, expiration) of the first RRSIG in the answer section.
pub fn sig_times(r: &Resp) -> (u32, u32) {
    r.msg
        .answers
        .iter()
        .find_map(|x| match &x.data {
            hickory_proto::rr::RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(
                s,
            )) => Some((
                s.input().sig_inception.get(),
                s.input().sig_expiration.get(),
            )),
            _ => None,
        })
        .expect("an RRSIG")
}

/// A zone whose TTLs are all 1 s, for short signature validity.
pub fn short_ttl(zone: &str) -> String {
    zone.replace("ttl = 300", "ttl = 1")
        .replace("minimum = 60", "minimum = 1")
        .replace("ttl = 30\n", "ttl = 1\n")
        .replace("ttl = 60\n", "ttl = 1\n")
}

#[test]
fn signatures_are_refreshed_before_they_expire_and_never_served_expired() {
    // Validity 6 s, refreshed when 3 s remain: over 8 s the statics are re-signed at least
    // twice (background) and the GSLB answer on use; every response verifies at its time.
    let keys = Keys::new("signed.test.", CSK);
    let zone = short_ttl(&signed_zone(
        &keys,
        "validity = \"6s\"\nrefresh = \"3s\"\ninception_offset = \"1s\"",
    ));
    let s = TestServer::start(&[("signed.test.toml", &zone)]);
    let start = Instant::now();
    let mut expirations = std::collections::BTreeSet::new();
    let mut gslb_expirations = std::collections::BTreeSet::new();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(8) {
        for (name, set) in [
            ("www.signed.test", &mut expirations),
            ("fo.signed.test", &mut gslb_expirations),
        ] {
            let r = s.udp(&q(name, "A").dnssec());
            let now = unix_now();
            let (_, exp) = sig_times(&r);
            assert!(
                u64::from(exp) > now,
                "{name}: expired signature served at {now}: {exp}"
            );
            verify_response(&r.raw, &keys.dnskeys, now).unwrap_or_else(|e| panic!("{name}: {e}"));
            set.insert(exp);
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(n >= 12, "sampled {n} times");
    assert!(expirations.len() >= 3, "statics re-signed: {expirations:?}");
    assert!(
        gslb_expirations.len() >= 3,
        "cached answer re-signed on use: {gslb_expirations:?}"
    );
    let info = s.running().state.model().model.zones[0]
        .dnssec
        .as_ref()
        .unwrap()
        .info();
    assert!(info.resigns >= 2, "{info:?}");
    assert_eq!(info.expired_refusals, 0);
}

#[test]
fn keygen_and_ds_commands_make_keys_a_zone_uses() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    let keydir = zones.join("keys");
    let out = Command::new(bin())
        .args([
            "keygen",
            "signed.test",
            "--algorithm",
            "ED25519",
            "--role",
            "ksk",
            "--dir",
        ])
        .arg(&keydir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let ds_line = text
        .lines()
        .find(|l| l.contains(" IN DS "))
        .expect("keygen prints the DS")
        .to_string();
    assert!(ds_line.starts_with("signed.test. 3600 IN DS "));
    assert!(text.contains("role = \"ksk\""));
    let out = Command::new(bin())
        .args(["keygen", "signed.test", "--role", "zsk", "--dir"])
        .arg(&keydir)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !String::from_utf8(out.stdout).unwrap().contains(" IN DS "),
        "a ZSK has no DS"
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&keydir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "private"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2);
    let (ksk, zsk) = if files[0].to_str().unwrap().contains("+015+") {
        (&files[0], &files[1])
    } else {
        (&files[1], &files[0])
    };
    let zone = ZONE.replace(
        "{dnssec}",
        &format!(
            "[dnssec]\nkeys = [\n  {{ file = \"keys/{}\", role = \"ksk\", algorithm = \"ED25519\" }},\n  {{ file = \"keys/{}\", role = \"zsk\" }},\n]\n",
            ksk.file_name().unwrap().to_str().unwrap(),
            zsk.file_name().unwrap().to_str().unwrap()
        ),
    );
    std::fs::write(zones.join("signed.test.toml"), zone).unwrap();
    let out = Command::new(bin())
        .args(["ds", "signed.test", "--zones"])
        .arg(&zones)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ds = String::from_utf8(out.stdout).unwrap();
    // Same DS record (the zone's DNSKEY TTL is the zone's 300).
    assert_eq!(ds.lines().count(), 1, "{ds}");
    assert!(
        ds.starts_with(&ds_line.replace(" 3600 IN DS ", " 300 IN DS ")),
        "{ds} vs {ds_line}"
    );
    let out = Command::new(bin())
        .args(["ds", "nope.test", "--zones"])
        .arg(&zones)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a zone"));
}

#[test]
fn dnssec_configuration_errors_name_the_key_path() {
    let keys = Keys::new("signed.test.", CSK);
    let check = |extra_zone: &str, table: &str| -> String {
        let dir = tempfile::tempdir().unwrap();
        let zone = ZONE.replace("{dnssec}", table).replace(
            "[datacenters.lon]",
            &format!("{extra_zone}\n[datacenters.lon]"),
        );
        std::fs::write(dir.path().join("signed.test.toml"), zone).unwrap();
        match gslbd::server::load_model(dir.path()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let good = keys.table("");
    assert_eq!(check("", &good), "");
    let e = check("", "[dnssec]\nkeys = [{ file = \"missing.private\" }]\n");
    assert!(e.contains("dnssec.keys[0].file: cannot read"), "{e}");
    let e = check(
        "",
        &format!(
            "[dnssec]\nalgorithm = \"ED25519\"\nkeys = [{{ file = {:?} }}]\n",
            keys.files[0].0.display().to_string()
        ),
    );
    assert!(e.contains("is not a ED25519 key"), "{e}");
    let e = check("", &keys.table("validity = \"1d\"\nrefresh = \"2d\""));
    assert!(
        e.contains("dnssec.refresh: must be shorter than validity"),
        "{e}"
    );
    let e = check("", &keys.table("validity = \"10m\"\nrefresh = \"100s\""));
    assert!(
        e.contains("must exceed the largest TTL of the zone (300s)"),
        "{e}"
    );
    let e = check("", &keys.table("signing = true"));
    assert!(e.contains("dnssec.signing: unknown key"), "{e}");
    let e = check("", "[dnssec]\nkeys = []\n");
    assert!(e.contains("dnssec.keys: is required"), "{e}");
    let e = check("", &keys.table("other_dnskeys = [\"257 3 13 @@@\"]"));
    assert!(
        e.contains("dnssec.other_dnskeys[0]: DNSKEY key is not base64"),
        "{e}"
    );
    let e = check(
        "[records.stray]\nDS = [\"1 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\"]",
        &good,
    );
    assert!(
        e.contains("records.stray.DS: DS belongs at a delegation point"),
        "{e}"
    );
    let e = check(
        "[records.sec2]\nNS = [\"ns.sec\"]\nDS = [\"1 13 2 00\"]",
        &good,
    );
    assert!(
        e.contains(
            "records.sec2.DS[0]: \"1 13 2 00\": a digest of type 2 is 32 bytes, this one is 1"
        ),
        "{e}"
    );
    let e = check(
        "",
        &format!(
            "[dnssec]\nkeys = [{{ file = {:?}, role = \"zsk\" }}]\n",
            keys.files[0].0.display().to_string()
        ),
    );
    assert!(e.contains("no active key signs the DNSKEY RRset"), "{e}");
    let e = check(
        "",
        &format!(
            "[dnssec]\nkeys = [{{ file = {:?}, state = \"published\" }}]\n",
            keys.files[0].0.display().to_string()
        ),
    );
    assert!(e.contains("no active key signs"), "{e}");
}

#[test]
fn multi_signer_zones_publish_the_other_signers_keys() {
    let ours = Keys::new("signed.test.", CSK);
    let theirs = Keys::new(
        "signed.test.",
        &[(Role::Zsk, KeyAlgorithm::EcdsaP256Sha256)],
    );
    let other = gslbd::dnssec::keys::dnskey_text(&theirs.dnskeys[0]);
    let zone = signed_zone(&ours, &format!("other_dnskeys = [\"{other}\"]"));
    let s = TestServer::start(&[("signed.test.toml", &zone)]);
    let r = s.udp(&q("signed.test", "48").dnssec());
    let (keys, sigs) = split(&r.answers());
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().any(|k| k.ends_with(&other)));
    assert_eq!(sigs.len(), 1, "only our key signs here");
    let all: Vec<Vec<u8>> = ours
        .dnskeys
        .iter()
        .chain(&theirs.dnskeys)
        .cloned()
        .collect();
    verify_response(&r.raw, &all, unix_now()).unwrap();
    // The other signer's ZSK is no SEP key: CDS lists ours only.
    let r = s.udp(&q("signed.test", "59").dnssec());
    assert_eq!(split(&r.answers()).0.len(), 1);
}

#[test]
fn status_and_metrics_show_keys_expiry_and_signing_counters() {
    let z = start_signed(CSK, "", |o| o.api = Some("127.0.0.1:0".parse().unwrap()));
    for _ in 0..3 {
        z.s.udp(
            &q("geo.signed.test", "A")
                .dnssec()
                .ecs("81.2.69.0".parse().unwrap(), 24),
        );
    }
    let base = format!("http://{}", z.s.running().api_addr.unwrap());
    let get = |path: &str| {
        let url = format!("{base}{path}");
        z.s.block_on(async move { reqwest::get(url).await.unwrap().text().await.unwrap() })
    };
    let status: serde_json::Value = serde_json::from_str(&get("/status")).unwrap();
    let d = &status["zones"][0]["dnssec"];
    let tag = gslbd::dnssec::keys::key_tag(&z.keys.dnskeys[0]);
    assert_eq!(d["keys"][0]["tag"], tag);
    assert_eq!(d["keys"][0]["role"], "csk");
    assert_eq!(d["keys"][0]["state"], "active");
    let exp = d["earliest_expiry_unix"].as_u64().unwrap();
    let now = unix_now();
    assert!(exp > now + 13 * 86400 && exp <= now + 14 * 86400, "{exp}");
    assert_eq!(d["cache_misses"], 1);
    assert_eq!(d["cache_hits"], 2);
    let text = get("/metrics");
    let m = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        m.samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                _ => f64::NAN,
            })
    };
    let zone = [("zone", "signed.test.")];
    assert!(value("gslbd_dnssec_signatures_total", &zone).unwrap() >= 20.0);
    assert_eq!(
        value(
            "gslbd_dnssec_cache_lookups_total",
            &[("zone", "signed.test."), ("result", "hit")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value("gslbd_dnssec_signature_expiry_time_seconds", &zone),
        Some(exp as f64)
    );
    assert_eq!(
        value(
            "gslbd_dnssec_key",
            &[
                ("zone", "signed.test."),
                ("tag", &tag.to_string()),
                ("state", "active")
            ]
        ),
        Some(1.0)
    );
}

#[test]
fn expired_static_signatures_are_never_served() {
    // Re-signing checks every refresh/8 (capped at 60 s); jumping the clock 3 h ahead makes
    // the statics expire before the next check: answers are SERVFAIL, not expired RRSIGs.
    let clock = gslbd::dnssec::Clock::system();
    let z = start_signed(CSK, "validity = \"2h\"\nrefresh = \"1h\"", |o| {
        o.dnssec = gslbd::dnssec::Env::with_clock(clock.clone());
    });
    let r = z.ask("www.signed.test", "A");
    assert_eq!(r.rcode(), ResponseCode::NoError);
    clock.set_offset(3 * 3600);
    let r = z.ask("www.signed.test", "A");
    assert_eq!(r.rcode(), ResponseCode::ServFail);
    assert!(r.answers().is_empty());
    // Without DO nothing is signed, so nothing is refused.
    let r = z.s.udp(&q("www.signed.test", "A"));
    assert_eq!(r.answers().len(), 2);
    let signer = z.signer();
    assert_eq!(signer.info().expired_refusals, 1);
    // The re-signing run (what the background task does) brings the answers back.
    assert!(signer.maintain(clock.now()).unwrap());
    let r = z.ask("www.signed.test", "A");
    assert_eq!(r.rcode(), ResponseCode::NoError);
    let v = verify_response(&r.raw, &z.keys.dnskeys, clock.now()).unwrap();
    assert_eq!(v.signatures, 1);
}

#[test]
fn online_signing_is_rate_limited_per_thread_and_static_answers_stay() {
    // 3 online signatures per second per query thread (the test server has 2 UDP threads).
    let z = start_signed(CSK, "max_online_signatures = 3", |_| {});
    let start = Instant::now();
    let (mut ok, mut refused) = (0, 0);
    for i in 0..40 {
        let r = z.ask(&format!("flood-{i}.signed.test"), "A");
        match r.rcode() {
            ResponseCode::NoError => ok += 1,
            ResponseCode::ServFail => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let seconds = start.elapsed().as_secs() + 2; // the windows the loop touched, at most
    assert!(ok <= 3 * 2 * seconds, "{ok} signed in about {seconds} s");
    assert!(refused >= 40 - 3 * 2 * seconds, "{refused} refused");
    assert_eq!(z.signer().info().rate_limited, refused);
    // What needs no new signature is still answered: statics, and cached online answers.
    let r = z.ask("www.signed.test", "A");
    assert_eq!(r.rcode(), ResponseCode::NoError);
    z.verify(&r);
}

/// Hostname datacenters in the signed zone, pointing inside it (resolved from the model, no
/// upstream): a CNAME-mode GSLB name, a flattened one and an ALIAS.
const HOSTNAMES: &str = r#"
[records.apexish]
ALIAS = ["www"]
[datacenters.edge]
target = "www.signed.test."
[gslb.edge]
ttl = 40
datacenters = ["edge"]
[gslb.flat]
ttl = 40
datacenters = ["edge"]
flatten = true
"#;

#[test]
fn cname_flattened_and_alias_answers_are_signed_like_address_answers() {
    let keys = Keys::new("signed.test.", CSK);
    let zone = ZONE.replace("{dnssec}", &format!("{HOSTNAMES}\n{}", keys.table("")));
    let s = TestServer::start_with(&[("signed.test.toml", &zone)], |_| {});
    let z = Signed {
        s,
        keys,
        _geo: tempfile::tempdir().unwrap(),
    };
    // The CNAME answer is followed into the zone, each hop signed with its own TTL.
    let r = z.ask("edge.signed.test", "A");
    assert_eq!(
        split(&r.answers()),
        (
            vec![
                "edge.signed.test. 40 IN CNAME www.signed.test.".to_string(),
                "www.signed.test. 300 IN A 192.0.2.10".to_string(),
                "www.signed.test. 300 IN A 192.0.2.11".to_string(),
            ],
            vec![("CNAME".to_string(), 3, 40), ("A".to_string(), 3, 300)]
        )
    );
    let v = z.verify(&r);
    assert_eq!((v.signatures, v.unsigned.len()), (2, 0), "{:?}", v.unsigned);
    // Flattened: the target's addresses under the GSLB name, signed as the GSLB name's.
    let r = z.ask("flat.signed.test", "AAAA");
    assert_eq!(
        split(&r.answers()),
        (
            vec!["flat.signed.test. 40 IN AAAA 2001:db8::10".to_string()],
            vec![("AAAA".to_string(), 3, 40)]
        )
    );
    let v = z.verify(&r);
    assert_eq!((v.signatures, v.unsigned.len()), (1, 0), "{:?}", v.unsigned);
    // ALIAS: the target's addresses with the record's TTL, signed; over TCP too.
    let r = tcp(&z.s, &q("apexish.signed.test", "A").dnssec());
    assert_eq!(
        split(&r.answers()),
        (
            vec![
                "apexish.signed.test. 300 IN A 192.0.2.10".to_string(),
                "apexish.signed.test. 300 IN A 192.0.2.11".to_string(),
            ],
            vec![("A".to_string(), 3, 300)]
        )
    );
    let v = z.verify(&r);
    assert_eq!((v.signatures, v.unsigned.len()), (1, 0), "{:?}", v.unsigned);
    // The ALIAS owner's NSEC lists A and AAAA: a TXT query is a signed NODATA.
    let r = z.ask("apexish.signed.test", "TXT");
    assert!(r.answers().is_empty());
    assert_eq!(r.rcode(), ResponseCode::NoError);
    let nsec: Vec<String> = r
        .authority()
        .into_iter()
        .filter(|x| x.split_whitespace().nth(3) == Some("NSEC"))
        .collect();
    assert_eq!(
        nsec,
        ["apexish.signed.test. 60 IN NSEC \\000.apexish.signed.test. A AAAA RRSIG NSEC"]
    );
    let v = z.verify(&r);
    assert_eq!((v.signatures, v.unsigned.len()), (2, 0), "{:?}", v.unsigned);
}
