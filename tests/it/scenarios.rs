//! Data-driven DNS tests: every `tests/scenarios/*.toml` file holds a zones directory written
//! inline, optional GeoIP networks and datacenter health, and queries with the exact response
//! each must get (docs/testing.md describes the format).
//!
//! ```text
//! scenario.toml --files--> config::parse_file + config::build (the real build step) --> Model
//!               --geoip--> a City mmdb written by mmdb-writer --> GeoDb
//!               --health--> Snapshot (all up, then the file's states, then the query's)
//! each query --bytes--> dns::handle(model, GslbContext, Peer::udp/tcp(source)) --bytes-->
//!            hickory-proto --> lines (`answer name ttl IN TYPE rdata`, ...) == expected lines?
//! ```
//!
//! The handler runs in process exactly as `PacketHandler for State` calls it in the server
//! (same `GslbContext` over one model, one snapshot and one GeoIP database; the UDP response
//! buffer of the UDP loop, 65535 bytes over TCP). What only sockets can show (TCP framing and
//! connection limits, malformed packets over the wire) stays in `dns_core.rs`;
//! [`scenarios_answer_the_same_over_sockets`] replays every scenario against the running
//! server to keep both paths in step.
//!
//! A mismatch fails with the file, the line of its `[[query]]`, the query, and a diff of the
//! expected and the received lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gslbd::config;
use gslbd::dns::{self, Peer, Query};
use gslbd::geo::GeoDb;
use gslbd::gslb::GslbContext;
use gslbd::health::{AdminState, DcState, Snapshot};
use gslbd::metrics::Metrics;
use gslbd::model::Model;
use gslbd::resolve::{Entry as ResolvedEntry, ResolvedNames, State as ResolveState};
use gslbd::server::Loaded;
use hickory_proto::op::Message;
use serde::Deserialize;

use crate::common::{Q, geo_city, q};

/// The UDP loop's response buffer (`RESP_LEN` in src/dns/udp.rs).
const UDP_OUT: usize = 4096;
/// The TCP loop's response buffer: a whole message.
const TCP_OUT: usize = 65535;
/// Where queries come from unless a query says `source`: the address a socket test's client
/// has, so the same scenario runs over the wire too.
const DEFAULT_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

// ---------------------------------------------------------------------------------------------
// The format.
// ---------------------------------------------------------------------------------------------

/// One scenario file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// The behaviour the file pins down, in one or two sentences (required, non-empty).
    about: String,
    /// The zones directory: file name -> the file's TOML text (the zone format of zones/).
    files: BTreeMap<String, String>,
    /// GeoIP City records by network (`"81.2.69.0/24"`); none = no GeoIP database.
    #[serde(default)]
    geoip: BTreeMap<String, GeoNet>,
    /// Health of datacenters by name for every query (the others are up).
    #[serde(default)]
    health: BTreeMap<String, Health>,
    /// What hostname targets outside the scenario's zones resolve to (names in its zones
    /// resolve from the zones themselves): name -> addresses and state.
    #[serde(default)]
    resolved: BTreeMap<String, ResolvedSpec>,
    /// The queries, asked in order.
    query: Vec<QuerySpec>,
}

/// A hostname target's resolution, as the resolver would publish it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolvedSpec {
    #[serde(default)]
    addresses: Vec<IpAddr>,
    /// The upstream TTL; a fresh entry expires this long after the query (default 3600).
    #[serde(default = "default_resolved_ttl")]
    ttl: u32,
    /// `fresh` (default), `stale`, `expired` or `pending`.
    #[serde(default = "default_resolved_state")]
    state: String,
}

fn default_resolved_ttl() -> u32 {
    3600
}
fn default_resolved_state() -> String {
    "fresh".into()
}

/// A GeoIP2 City record.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GeoNet {
    continent: String,
    country: String,
    #[serde(default)]
    subdivisions: Vec<String>,
    /// `[latitude, longitude]`; absent, gslbd uses the country's centroid.
    location: Option<[f64; 2]>,
}

/// A datacenter's state: a word, or the fields of `DcState` that differ from up.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum Health {
    /// `up`, `down` (the probes say so), `drain`, `admin-down`, `admin-up` (admin up over
    /// failing probes).
    Word(String),
    Fields(HealthFields),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthFields {
    healthy: Option<bool>,
    /// `obey`, `up`, `down`, `drain`.
    admin: Option<String>,
    load: Option<f64>,
    latency_ms: Option<f64>,
    slow_start: Option<f64>,
    settled: Option<bool>,
    settle_ttl: Option<u32>,
    addr_up: Option<u64>,
}

/// One query and what must come back.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuerySpec {
    /// Why this query is here (printed on failure).
    note: Option<String>,
    /// The question name, case kept as written (absent only with `raw`).
    name: Option<String>,
    /// Record type: a mnemonic or a number (default `A`).
    #[serde(rename = "type", default = "default_type")]
    qtype: String,
    /// `IN` (default), `CH`, `HS`, `ANY` or a number.
    #[serde(default = "default_class")]
    class: String,
    /// `udp` (default) or `tcp`.
    #[serde(default = "default_transport")]
    transport: String,
    /// Send an OPT record (default true).
    #[serde(default = "yes")]
    edns: bool,
    /// The OPT's UDP payload size (default 1232).
    udp_size: Option<u16>,
    /// The OPT's EDNS version (default 0).
    edns_version: Option<u8>,
    /// The DO bit.
    #[serde(default, rename = "do")]
    dnssec_ok: bool,
    /// Raw EDNS options, hex (spaces allowed), sent before any `ecs`.
    options: Option<String>,
    /// EDNS Client Subnet `address/source-prefix`.
    ecs: Option<String>,
    /// The client's address (default 127.0.0.1).
    source: Option<IpAddr>,
    /// Message id (default 0x4242).
    id: Option<u16>,
    /// Header opcode (default 0, QUERY).
    opcode: Option<u8>,
    /// Recursion desired.
    #[serde(default)]
    rd: bool,
    /// Overrides the header's question count (the question is still written once).
    qdcount: Option<u16>,
    /// The whole request as hex instead of the fields above.
    raw: Option<String>,
    /// Health for this query, over the file's.
    #[serde(default)]
    health: BTreeMap<String, Health>,
    /// Ask this many times; every answer must match (for policies with a random part).
    #[serde(default = "one")]
    repeat: u32,
    expect: Expect,
}

/// The response a query must get. `rcode`, the flags and the three sections are always
/// compared (defaults: NOERROR, AA set, TC clear, empty sections); the rest when given.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// No response at all.
    #[serde(default)]
    drop: bool,
    #[serde(default = "default_rcode")]
    rcode: String,
    #[serde(default = "yes")]
    aa: bool,
    #[serde(default)]
    tc: bool,
    /// The question comes back as asked, case included (checked for built queries with one
    /// question); false: the response has no question section.
    #[serde(default = "yes")]
    question: bool,
    /// Records as `name ttl IN TYPE rdata`, in order.
    #[serde(default)]
    answer: Vec<String>,
    #[serde(default)]
    authority: Vec<String>,
    /// Without the OPT record (see `edns`).
    #[serde(default)]
    additional: Vec<String>,
    /// The response's OPT: `size=1232 version=0` (+ ` do`), or `none`. A query without EDNS
    /// always expects `none`.
    edns: Option<String>,
    /// The response's Client Subnet option: `address/source/scope`, or `none`. Required when
    /// the query sends one; a query without one always expects `none`.
    ecs: Option<String>,
    /// The response's length in bytes.
    len: Option<usize>,
}

fn default_type() -> String {
    "A".into()
}
fn default_class() -> String {
    "IN".into()
}
fn default_transport() -> String {
    "udp".into()
}
fn default_rcode() -> String {
    "NOERROR".into()
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}

// ---------------------------------------------------------------------------------------------
// Building a scenario's world.
// ---------------------------------------------------------------------------------------------

/// A scenario file made ready: the model through the real build step, GeoIP, health.
pub struct World {
    loaded: Loaded,
    metrics: Metrics,
    geo: GeoDb,
    /// Holds the zone files and the mmdb file while the world lives.
    _dir: tempfile::TempDir,
    geoip_path: Option<PathBuf>,
    scenario: Scenario,
}

fn parse_scenario(text: &str) -> Result<Scenario, String> {
    let s: Scenario = toml::from_str(text).map_err(|e| format!("not a valid scenario: {e}"))?;
    if s.about.trim().is_empty() {
        return Err("`about` is empty: say which behaviour the file pins down".into());
    }
    if s.files.is_empty() {
        return Err("no [files]: a scenario needs at least one zone".into());
    }
    if s.query.is_empty() {
        return Err("no [[query]]".into());
    }
    for (i, qs) in s.query.iter().enumerate() {
        if qs.raw.is_none() && qs.name.is_none() {
            return Err(format!("query #{}: needs `name` (or `raw`)", i + 1));
        }
        if qs.ecs.is_some() && qs.expect.ecs.is_none() && !qs.expect.drop {
            return Err(format!(
                "query #{}: it sends ECS, so say what comes back: expect.ecs = \"address/source/scope\" or \"none\"",
                i + 1
            ));
        }
    }
    Ok(s)
}

impl World {
    /// Parses `text` and builds everything the queries need.
    fn build(text: &str) -> Result<World, String> {
        let scenario = parse_scenario(text)?;
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        // The zone files go through parse_file + build as `config::load` would (sorted by
        // name), and onto disk for the socket replay.
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for (name, body) in &scenario.files {
            let path = dir.path().join(name);
            std::fs::write(&path, body).map_err(|e| format!("writing {name}: {e}"))?;
            match config::parse_file(&path, body) {
                Ok(f) => files.push(f),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(format!(
                "the zone files do not parse:\n{}",
                errors.join("\n")
            ));
        }
        let model = config::build(&config::Config { files })
            .map_err(|e| format!("the zone files do not build:\n{e}"))?;
        // Health is set by the scenario; a check would make the socket replay probe the
        // datacenters' addresses, which are not ours.
        if let Some(p) = model
            .datacenters
            .probes
            .iter()
            .find(|p| !p.checks.is_empty())
        {
            return Err(format!(
                "datacenter {:?} has a check: scenarios set health with [health], not probes",
                p.name
            ));
        }
        let (geo, geoip_path) = if scenario.geoip.is_empty() {
            (GeoDb::empty(), None)
        } else {
            let path = write_geoip(&scenario.geoip, dir.path())?;
            let db = GeoDb::open(std::slice::from_ref(&path))
                .map_err(|e| format!("GeoIP fixture: {e}"))?;
            (db, Some(path))
        };
        let metrics = Metrics::new();
        let loaded = Loaded::new(model, &metrics);
        let w = World {
            loaded,
            metrics,
            geo,
            _dir: dir,
            geoip_path,
            scenario,
        };
        // Unknown datacenter names in health are mistakes in the scenario: say so up front.
        w.snapshot(&BTreeMap::new())?;
        for qs in &w.scenario.query {
            w.snapshot(&qs.health)?;
        }
        Ok(w)
    }

    fn model(&self) -> &Model {
        &self.loaded.model
    }

    /// All up, then the file's health, then the query's.
    fn snapshot(&self, query: &BTreeMap<String, Health>) -> Result<Snapshot, String> {
        let dcs = &self.model().datacenters;
        let mut snap = Snapshot::all_up(dcs.list.len());
        snap.resolutions = Some(Arc::new(self.model().resolutions(&self.resolved_names()?)));
        for (name, h) in self.scenario.health.iter().chain(query) {
            let Some(id) = dcs.id_of(name) else {
                let mut known: Vec<&str> = dcs.by_name.keys().map(String::as_str).collect();
                known.sort_unstable();
                return Err(format!(
                    "health: unknown datacenter {name:?} (declared: {})",
                    known.join(", ")
                ));
            };
            snap.dcs[id.0 as usize] = dc_state(h).map_err(|e| format!("health.{name}: {e}"))?;
        }
        Ok(snap)
    }

    /// The file's `[resolved]` as the resolver would publish it (fresh entries expire `ttl`
    /// seconds, plus half a second, from now: the TTL left is `ttl` when the query runs).
    fn resolved_names(&self) -> Result<ResolvedNames, String> {
        let now = tokio::time::Instant::now();
        let mut names = ResolvedNames::default();
        for (i, (name, r)) in self.scenario.resolved.iter().enumerate() {
            let key = name.to_ascii_lowercase();
            if !key.ends_with('.') {
                return Err(format!("resolved.{name:?}: write the name fully qualified"));
            }
            let state = match r.state.as_str() {
                "fresh" => ResolveState::Fresh,
                "stale" => ResolveState::Stale,
                "expired" => ResolveState::Expired,
                "pending" => ResolveState::Pending,
                s => {
                    return Err(format!(
                        "resolved.{name:?}.state: {s:?} (expected fresh, stale, expired or pending)"
                    ));
                }
            };
            let mut e = ResolvedEntry::pending(&key);
            e.v4 = r
                .addresses
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V4(x) => Some(*x),
                    _ => None,
                })
                .collect();
            e.v6 = r
                .addresses
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V6(x) => Some(*x),
                    _ => None,
                })
                .collect();
            e.serial = i as u64 + 1;
            e.state = state;
            e.ttl = r.ttl;
            e.expires = Some(now + std::time::Duration::from_millis(u64::from(r.ttl) * 1000 + 500));
            e.resolved_at = Some(std::time::SystemTime::now());
            names.by_name.insert(key.into(), Arc::new(e));
        }
        Ok(names)
    }

    /// Answers `req` through the real handler, as the server's `PacketHandler` does.
    fn answer(&self, req: &[u8], peer: &Peer, snapshot: &Snapshot) -> Option<Vec<u8>> {
        let ctx = GslbContext {
            model: self.model(),
            snapshot,
            geo: &self.geo,
            metrics: &self.metrics,
            slots: &self.loaded.gslb_slots,
        };
        let mut out = vec![
            0u8;
            if peer.transport.is_stream() {
                TCP_OUT
            } else {
                UDP_OUT
            }
        ];
        let mut q = Query::default();
        let a = dns::handle(self.model(), &ctx, req, peer, &mut q, &mut out)?;
        out.truncate(a.len);
        Some(out)
    }
}

fn dc_state(h: &Health) -> Result<DcState, String> {
    let f = match h {
        Health::Word(w) => match w.as_str() {
            "up" => HealthFields::default(),
            "down" => HealthFields {
                healthy: Some(false),
                ..HealthFields::default()
            },
            "drain" | "admin-down" | "admin-up" => HealthFields {
                admin: Some(w.trim_start_matches("admin-").into()),
                // admin up matters only over failing probes
                healthy: Some(w != "admin-up"),
                ..HealthFields::default()
            },
            other => {
                return Err(format!(
                    "{other:?} is not a state (expected up, down, drain, admin-down, admin-up or a table of DcState fields)"
                ));
            }
        },
        Health::Fields(f) => f.clone(),
    };
    let admin = match f.admin.as_deref() {
        None => AdminState::Obey,
        Some(a) => AdminState::parse(a)
            .ok_or_else(|| format!("admin {a:?}: expected obey, up, down or drain"))?,
    };
    let up = DcState::UP;
    Ok(DcState {
        healthy: f.healthy.unwrap_or(up.healthy),
        health_input: up.health_input,
        admin,
        load: f.load.or(up.load),
        latency_ms: f.latency_ms.or(up.latency_ms),
        slow_start: f.slow_start.unwrap_or(up.slow_start),
        addr_up: f.addr_up.unwrap_or(up.addr_up),
        addr_serial: up.addr_serial,
        settled: f.settled.unwrap_or(up.settled),
        settle_ttl: f.settle_ttl.unwrap_or(up.settle_ttl),
    })
}

/// Writes the scenario's networks as a GeoIP2 City database.
fn write_geoip(nets: &BTreeMap<String, GeoNet>, dir: &Path) -> Result<PathBuf, String> {
    use mmdb_writer::ipnet::IpNet;
    let mut w = mmdb_writer::Writer::builder("GeoIP2-City-Test")
        .ip_version(mmdb_writer::IpVersion::V6)
        .build();
    for (net, g) in nets {
        let subs: Vec<&str> = g.subdivisions.iter().map(String::as_str).collect();
        let rec = geo_city(
            &g.continent,
            &g.country,
            &subs,
            g.location.map(|[a, b]| (a, b)),
        );
        let n: IpNet = net
            .parse()
            .map_err(|e| format!("geoip: {net:?} is not a network: {e}"))?;
        w.insert_value(n, rec)
            .map_err(|e| format!("geoip: {net}: {e}"))?;
    }
    let path = dir.join("city.mmdb");
    let bytes = w.to_bytes().map_err(|e| format!("geoip: {e}"))?;
    std::fs::write(&path, bytes).map_err(|e| format!("geoip: {e}"))?;
    Ok(path)
}

// ---------------------------------------------------------------------------------------------
// Queries.
// ---------------------------------------------------------------------------------------------

fn hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("hex {s:?}: odd number of digits"));
    }
    digits
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|t| u8::from_str_radix(t, 16).ok())
                .ok_or_else(|| format!("hex {s:?}: not hex"))
        })
        .collect()
}

fn class_number(s: &str) -> Result<u16, String> {
    Ok(match s.to_ascii_uppercase().as_str() {
        "IN" => 1,
        "CH" => 3,
        "HS" => 4,
        "ANY" => 255,
        n => n
            .parse()
            .map_err(|_| format!("class {s:?}: expected IN, CH, HS, ANY or a number"))?,
    })
}

fn type_number(s: &str) -> Result<u16, String> {
    let upper = s.to_ascii_uppercase();
    if let Ok(n) = upper.parse() {
        return Ok(n);
    }
    Ok(match upper.as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "PTR" => 12,
        "HINFO" => 13,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        "DS" => 43,
        "RRSIG" => 46,
        "DNSKEY" => 48,
        "OPT" => 41,
        "IXFR" => 251,
        "AXFR" => 252,
        "ANY" => 255,
        "CAA" => 257,
        // The types gslbd knows by name (HTTPS, SVCB, TLSA...) and `TYPEnnn`.
        _ => crate::common::type_code(&upper)
            .ok_or_else(|| format!("type {s:?}: not a type this harness knows; use its number"))?,
    })
}

/// `address/prefix` -> (address, prefix).
fn subnet(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("ecs {s:?}: expected address/prefix"))?;
    let a: IpAddr = a.parse().map_err(|e| format!("ecs {s:?}: {e}"))?;
    let p: u8 = p.parse().map_err(|e| format!("ecs {s:?}: {e}"))?;
    Ok((a, p))
}

impl QuerySpec {
    fn peer(&self) -> Result<Peer, String> {
        let addr = self.source.unwrap_or(DEFAULT_SOURCE);
        match self.transport.as_str() {
            "udp" => Ok(Peer::udp(addr)),
            "tcp" => Ok(Peer::tcp(addr)),
            t => Err(format!("transport {t:?}: expected udp or tcp")),
        }
    }

    /// The request bytes.
    fn bytes(&self) -> Result<Vec<u8>, String> {
        if let Some(r) = &self.raw {
            return hex(r);
        }
        let name = self.name.as_deref().unwrap_or_default();
        let mut query: Q = q(name, "A");
        query.qtype = type_number(&self.qtype)?;
        query.qclass = class_number(&self.class)?;
        query.id = self.id.unwrap_or(query.id);
        query.opcode = self.opcode.unwrap_or(0);
        query.rd = self.rd;
        query.dnssec_ok = self.dnssec_ok;
        if self.edns {
            let mut opts = match &self.options {
                Some(h) => hex(h)?,
                None => Vec::new(),
            };
            if let Some(e) = &self.ecs {
                let (addr, prefix) = subnet(e)?;
                let mut with = q(name, "A").ecs(addr, prefix);
                opts.append(&mut with.edns.take().map(|e| e.2).unwrap_or_default());
            }
            query.edns = Some((
                self.udp_size.unwrap_or(1232),
                self.edns_version.unwrap_or(0),
                opts,
            ));
        } else {
            if self.ecs.is_some() || self.options.is_some() || self.dnssec_ok {
                return Err("ecs, options and do need edns = true".into());
            }
            query.edns = None;
        }
        let mut b = query.bytes();
        if let Some(n) = self.qdcount {
            b[4..6].copy_from_slice(&n.to_be_bytes());
        }
        Ok(b)
    }

    /// A one-line description for failure messages.
    fn describe(&self) -> String {
        let mut s = match &self.raw {
            Some(r) => format!("raw {r}"),
            None => {
                let mut s = format!("{} {}", self.name.as_deref().unwrap_or(""), self.qtype);
                if self.class != "IN" {
                    let _ = write!(s, " class {}", self.class);
                }
                s
            }
        };
        let _ = write!(s, " over {}", self.transport);
        if !self.edns {
            s.push_str(", no EDNS");
        }
        for (k, v) in [
            ("udp_size", self.udp_size.map(|v| v.to_string())),
            ("edns_version", self.edns_version.map(|v| v.to_string())),
            ("options", self.options.clone()),
            ("ecs", self.ecs.clone()),
            ("source", self.source.map(|v| v.to_string())),
            ("opcode", self.opcode.map(|v| v.to_string())),
            ("qdcount", self.qdcount.map(|v| v.to_string())),
        ] {
            if let Some(v) = v {
                let _ = write!(s, ", {k} {v}");
            }
        }
        if self.dnssec_ok {
            s.push_str(", DO");
        }
        if !self.health.is_empty() {
            let states: Vec<String> = self
                .health
                .iter()
                .map(|(dc, h)| match h {
                    Health::Word(w) => format!("{dc} {w}"),
                    Health::Fields(f) => format!("{dc} {f:?}"),
                })
                .collect();
            let _ = write!(s, ", health {}", states.join(", "));
        }
        if let Some(n) = &self.note {
            let _ = write!(s, " ({n})");
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Responses as lines.
// ---------------------------------------------------------------------------------------------

fn rcode_name(n: u16) -> String {
    match n {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        16 => "BADVERS".into(),
        n => n.to_string(),
    }
}

/// The OPT record of a response, read off the wire (not through a parser's normalisation).
struct RawOpt {
    size: u16,
    ext_rcode: u8,
    version: u8,
    flags: u16,
    options: Vec<(u16, Vec<u8>)>,
}

/// Skips a (possibly compressed) name at `at`; the offset after it.
fn skip_name(raw: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *raw.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

fn u16_at(raw: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*raw.get(at)?, *raw.get(at + 1)?]))
}

fn find_opt(raw: &[u8]) -> Option<RawOpt> {
    let qd = u16_at(raw, 4)?;
    let rr = [6, 8, 10]
        .iter()
        .map(|&at| u16_at(raw, at).map(usize::from))
        .sum::<Option<usize>>()?;
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(raw, at)? + 4;
    }
    for _ in 0..rr {
        let name_end = skip_name(raw, at)?;
        let rtype = u16_at(raw, name_end)?;
        let rdlen = usize::from(u16_at(raw, name_end + 8)?);
        let rdata = name_end + 10;
        if rtype == 41 {
            let mut options = Vec::new();
            let mut o = rdata;
            while o + 4 <= rdata + rdlen {
                let code = u16_at(raw, o)?;
                let len = usize::from(u16_at(raw, o + 2)?);
                options.push((code, raw.get(o + 4..o + 4 + len)?.to_vec()));
                o += 4 + len;
            }
            return Some(RawOpt {
                size: u16_at(raw, name_end + 2)?,
                ext_rcode: *raw.get(name_end + 4)?,
                version: *raw.get(name_end + 5)?,
                flags: u16_at(raw, name_end + 6)?,
                options,
            });
        }
        at = rdata + rdlen;
    }
    None
}

/// An ECS option's data as `address/source/scope`.
fn render_ecs(d: &[u8]) -> String {
    if d.len() < 4 {
        return format!("malformed {d:02x?}");
    }
    let (family, source, scope, addr) = (u16::from_be_bytes([d[0], d[1]]), d[2], d[3], &d[4..]);
    let ip = match family {
        1 if addr.len() <= 4 => {
            let mut o = [0u8; 4];
            o[..addr.len()].copy_from_slice(addr);
            IpAddr::V4(Ipv4Addr::from(o))
        }
        2 if addr.len() <= 16 => {
            let mut o = [0u8; 16];
            o[..addr.len()].copy_from_slice(addr);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return format!("family {family} {addr:02x?}/{source}/{scope}"),
    };
    // RFC 7871 6: exactly ceil(source / 8) address bytes; the padded address alone would
    // not show a wrong count.
    let want = usize::from(source).div_ceil(8);
    if addr.len() != want {
        return format!(
            "{ip}/{source}/{scope} ({} address bytes, not {want})",
            addr.len()
        );
    }
    format!("{ip}/{source}/{scope}")
}

/// A record as hickory-proto prints it, except data hickory has no parser for (DS without
/// its DNSSEC feature, unknown types), which is shown in the RFC 3597 generic form
/// (`\# <length> <hex>`) rather than as hickory's base64.
fn record_line(r: &hickory_proto::rr::Record) -> String {
    match &r.data {
        hickory_proto::rr::RData::Unknown { code, rdata } => {
            let hex: String = rdata.anything.iter().map(|b| format!("{b:02x}")).collect();
            let code = match code {
                hickory_proto::rr::RecordType::Unknown(n) => format!("TYPE{n}"),
                known => known.to_string(),
            };
            format!(
                "{} {} {} {code} \\# {} {hex}",
                r.name,
                r.ttl,
                r.dns_class,
                rdata.anything.len()
            )
            .trim_end()
            .to_string()
        }
        _ => r.to_string(),
    }
}

/// Every line a response renders to; the comparison keeps the kinds the expectation has.
fn response_lines(raw: &[u8]) -> Vec<String> {
    let msg = match Message::from_vec(raw) {
        Ok(m) => m,
        Err(e) => return vec![format!("unparseable response: {e}: {raw:02x?}")],
    };
    let h = &msg.metadata;
    let opt = find_opt(raw);
    let mut v = vec![
        format!("id {:#06x}", h.id),
        format!("opcode {}", (raw[2] >> 3) & 0x0F),
        format!(
            "flags{}{}{}{}{}{}",
            if raw[2] & 0x80 != 0 { " qr" } else { "" },
            if h.authoritative { " aa" } else { "" },
            if h.truncation { " tc" } else { "" },
            if h.recursion_desired { " rd" } else { "" },
            if h.recursion_available { " ra" } else { "" },
            if h.checking_disabled { " cd" } else { "" },
        ),
        format!(
            "rcode {}",
            rcode_name(
                u16::from(opt.as_ref().map_or(0, |o| o.ext_rcode)) << 4 | u16::from(raw[3] & 0x0F)
            )
        ),
    ];
    for q in &msg.queries {
        v.push(format!(
            "question {} {} {}",
            q.name(),
            q.query_class(),
            q.query_type()
        ));
    }
    for (section, records) in [
        ("answer", &msg.answers),
        ("authority", &msg.authorities),
        ("additional", &msg.additionals),
    ] {
        v.extend(
            records
                .iter()
                .map(|r| format!("{section} {}", record_line(r))),
        );
    }
    match &opt {
        None => {
            v.push("edns none".into());
            v.push("ecs none".into());
        }
        Some(o) => {
            let mut e = format!("edns size={} version={}", o.size, o.version);
            if o.flags & 0x8000 != 0 {
                e.push_str(" do");
            }
            if o.flags & 0x7FFF != 0 {
                let _ = write!(e, " flags={:#06x}", o.flags & 0x7FFF);
            }
            for (code, data) in &o.options {
                if *code != 8 {
                    let _ = write!(e, " option{code}={data:02x?}");
                }
            }
            v.push(e);
            let ecs: Vec<_> = o.options.iter().filter(|(c, _)| *c == 8).collect();
            if ecs.is_empty() {
                v.push("ecs none".into());
            }
            for (_, d) in ecs {
                v.push(format!("ecs {}", render_ecs(d)));
            }
        }
    }
    v.push(format!("len {}", raw.len()));
    v
}

/// The lines the query must get.
fn expected_lines(qs: &QuerySpec, req: &[u8]) -> Result<Vec<String>, String> {
    let e = &qs.expect;
    if e.drop {
        return Ok(vec!["dropped".into()]);
    }
    let mut v = Vec::new();
    if req.len() >= 4 {
        v.push(format!("id {:#06x}", u16::from_be_bytes([req[0], req[1]])));
        v.push(format!("opcode {}", (req[2] >> 3) & 0x0F));
    }
    let rd = req.len() >= 3 && req[2] & 0x01 != 0;
    v.push(format!(
        "flags qr{}{}{}",
        if e.aa { " aa" } else { "" },
        if e.tc { " tc" } else { "" },
        if rd { " rd" } else { "" },
    ));
    let rcode = e.rcode.to_ascii_uppercase();
    let rcode = match rcode.parse::<u16>() {
        Ok(n) => rcode_name(n),
        Err(_) => rcode,
    };
    v.push(format!("rcode {rcode}"));
    // The question comes back as asked, case included (built queries with one question).
    if asks_one_question(qs) && e.question {
        // Header and question only: a query may carry an OPT that is wrong on purpose.
        let end = skip_name(req, 12).map_or(req.len(), |n| (n + 4).min(req.len()));
        let mut head = req[..end].to_vec();
        head[6..12].fill(0);
        let asked =
            Message::from_vec(&head).map_err(|e| format!("the query does not parse: {e}"))?;
        for q in &asked.queries {
            v.push(format!(
                "question {} {} {}",
                q.name(),
                q.query_class(),
                q.query_type()
            ));
        }
    }
    for (section, records) in [
        ("answer", &e.answer),
        ("authority", &e.authority),
        ("additional", &e.additional),
    ] {
        v.extend(records.iter().map(|r| format!("{section} {r}")));
    }
    let built = qs.raw.is_none();
    match (&e.edns, built && !qs.edns) {
        (Some(x), _) => v.push(format!("edns {}", x.trim())),
        // RFC 6891 7: no OPT in the query, none in the response.
        (None, true) => v.push("edns none".into()),
        (None, false) => {}
    }
    match (&e.ecs, built && qs.ecs.is_none()) {
        (Some(x), _) => v.push(format!("ecs {}", x.trim())),
        // No ECS asked, none sent back (RFC 7871 7.2).
        (None, true) => v.push("ecs none".into()),
        (None, false) => {}
    }
    if let Some(n) = e.len {
        v.push(format!("len {n}"));
    }
    Ok(v)
}

/// Whether the harness wrote the query with exactly one question (so its echo is checked).
fn asks_one_question(qs: &QuerySpec) -> bool {
    qs.raw.is_none() && qs.qdcount.is_none()
}

fn kind(line: &str) -> &str {
    line.split(' ').next().unwrap_or("")
}

/// `got`, keeping the kinds of line the expectation speaks about (sections, rcode and flags
/// always, the question for queries with one).
fn comparable(qs: &QuerySpec, expected: &[String], got: Vec<String>) -> Vec<String> {
    if expected == ["dropped"] || got == ["dropped"] {
        return got;
    }
    let mut kinds: BTreeSet<&str> = expected.iter().map(|l| kind(l)).collect();
    kinds.extend(["flags", "rcode", "answer", "authority", "additional"]);
    if asks_one_question(qs) {
        kinds.insert("question");
    }
    got.into_iter()
        .filter(|l| kinds.contains(kind(l)))
        .collect()
}

/// A line diff (longest common subsequence): `  ` both, `- ` expected only, `+ ` got only.
pub fn diff(expected: &[String], got: &[String]) -> String {
    let (n, m) = (expected.len(), got.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == got[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::from("    --- expected\n    +++ got\n");
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && expected[i] == got[j] {
            let _ = writeln!(out, "      {}", expected[i]);
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "    - {}", expected[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "    + {}", got[j]);
            j += 1;
        }
    }
    out
}

/// Line of the n-th (0-based) `[[query]]` header in the file, when written that way.
fn query_line(text: &str, n: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[[query]]")
        .nth(n)
        .map(|(i, _)| i + 1)
}

/// Runs one query (every repetition) in process; `Err` holds the readable mismatch.
fn check_query(w: &World, qs: &QuerySpec) -> Result<(), String> {
    let setup = || -> Result<_, String> {
        let req = qs.bytes()?;
        let expected = expected_lines(qs, &req)?;
        Ok((req, qs.peer()?, w.snapshot(&qs.health)?, expected))
    };
    let (req, peer, snapshot, expected) = setup().map_err(|e| format!(": {e}"))?;
    for rep in 0..qs.repeat {
        let got = match w.answer(&req, &peer, &snapshot) {
            None => vec!["dropped".into()],
            Some(resp) => response_lines(&resp),
        };
        let got = comparable(qs, &expected, got);
        if got != expected {
            let again = if qs.repeat > 1 {
                format!(" (repetition {} of {})", rep + 1, qs.repeat)
            } else {
                String::new()
            };
            return Err(format!("{again}\n{}", diff(&expected, &got)));
        }
    }
    Ok(())
}

/// Runs a scenario's text (`file` names it in messages). `Ok(number of queries)`, or one
/// message with every mismatching query.
pub fn run_scenario(file: &str, text: &str) -> Result<usize, String> {
    let w = World::build(text).map_err(|e| format!("{file}: {e}"))?;
    let mut failures = String::new();
    for (i, qs) in w.scenario.query.iter().enumerate() {
        if let Err(e) = check_query(&w, qs) {
            let line = query_line(text, i).map_or(String::new(), |l| format!(":{l}"));
            let _ = writeln!(
                failures,
                "{file}{line}: query #{}: {}{e}",
                i + 1,
                qs.describe()
            );
        }
    }
    if failures.is_empty() {
        Ok(w.scenario.query.len())
    } else {
        Err(failures)
    }
}

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

/// Every scenario file, sorted, with its text.
fn scenario_files() -> Vec<(String, String)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .expect("tests/scenarios exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read scenario");
            let name = format!(
                "tests/scenarios/{}",
                p.file_name().unwrap_or_default().to_string_lossy()
            );
            (name, text)
        })
        .collect()
}

#[test]
fn every_scenario_answers_as_written() {
    let files = scenario_files();
    let mut failures = Vec::new();
    let mut queries = 0;
    for (name, text) in &files {
        match run_scenario(name, text) {
            Ok(n) => queries += n,
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenario files failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    // Guards against a broken discovery passing vacuously.
    assert!(files.len() >= 10, "scenario files found: {}", files.len());
    eprintln!("{} scenario files, {queries} queries", files.len());
}

// ---------------------------------------------------------------------------------------------
// The harness can fail, and says where and how.
// ---------------------------------------------------------------------------------------------

const TINY: &str = r#"
about = "a test of the harness"
[files]
"example.com.toml" = '''
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
'''
"#;

#[test]
fn a_right_scenario_passes() {
    let text = format!(
        "{TINY}
[[query]]
name = \"www.example.com\"
[query.expect]
answer = [\"www.example.com. 3600 IN A 192.0.2.10\"]
edns = \"size=1232 version=0\"
"
    );
    assert_eq!(run_scenario("tiny.toml", &text), Ok(1));
}

#[test]
fn a_wrong_answer_fails_with_file_line_query_and_a_diff() {
    let text = format!(
        "{TINY}
[[query]]
name = \"www.example.com\"
[query.expect]
answer = [\"www.example.com. 3600 IN A 192.0.2.10\"]

[[query]]
name = \"www.example.com\"
note = \"deliberately wrong\"
[query.expect]
answer = [\"www.example.com. 3600 IN A 192.0.2.99\"]
"
    );
    let err = run_scenario("wrong.toml", &text).expect_err("a wrong expectation fails");
    let line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "[[query]]")
        .nth(1)
        .map(|(i, _)| i + 1)
        .expect("second query");
    assert!(
        err.starts_with(&format!(
            "wrong.toml:{line}: query #2: www.example.com A over udp (deliberately wrong)"
        )),
        "{err}"
    );
    assert!(
        err.contains("    - answer www.example.com. 3600 IN A 192.0.2.99\n"),
        "{err}"
    );
    assert!(
        err.contains("    + answer www.example.com. 3600 IN A 192.0.2.10\n"),
        "{err}"
    );
    assert!(err.contains("      rcode NOERROR\n"), "{err}");
    assert_eq!(
        err.matches("query #").count(),
        1,
        "only the wrong query: {err}"
    );
}

#[test]
fn each_compared_part_can_fail() {
    // (what is wrong in the expectation, the diff line that must show it)
    let cases: &[(&str, &str, &str)] = &[
        (
            "rcode = \"NXDOMAIN\"",
            "www.example.com",
            "    - rcode NXDOMAIN\n",
        ),
        ("aa = false", "www.example.com", "    - flags qr\n"),
        ("tc = true", "www.example.com", "    - flags qr aa tc\n"),
        ("", "nope.example.com", "    + rcode NXDOMAIN\n"),
        (
            "authority = [\"x. 1 IN A 192.0.2.1\"]",
            "www.example.com",
            "    - authority x. 1 IN A 192.0.2.1\n",
        ),
        (
            "additional = [\"x. 1 IN A 192.0.2.1\"]",
            "www.example.com",
            "    - additional x. 1 IN A 192.0.2.1\n",
        ),
        (
            "edns = \"none\"",
            "www.example.com",
            "    + edns size=1232 version=0\n",
        ),
        ("len = 1", "www.example.com", "    - len 1\n"),
        ("drop = true", "www.example.com", "    - dropped\n"),
    ];
    for (wrong, name, line) in cases {
        let text = format!(
            "{TINY}
[[query]]
name = \"{name}\"
[query.expect]
answer = [\"www.example.com. 3600 IN A 192.0.2.10\"]
{wrong}
"
        );
        let err = run_scenario("t.toml", &text).expect_err(wrong);
        assert!(err.contains(line), "{wrong}: want {line:?} in\n{err}");
    }
    // The ECS option: a wrong scope, and a wrong number of address bytes.
    let text = format!(
        "{TINY}
[[query]]
name = \"www.example.com\"
ecs = \"198.51.100.0/24\"
[query.expect]
answer = [\"www.example.com. 3600 IN A 192.0.2.10\"]
ecs = \"198.51.100.0/24/24\"
"
    );
    let err = run_scenario("t.toml", &text).expect_err("wrong scope");
    assert!(
        err.contains("    - ecs 198.51.100.0/24/24\n    + ecs 198.51.100.0/24/0\n"),
        "{err}"
    );
    assert_eq!(
        render_ecs(&[0, 1, 24, 0, 198, 51, 100]),
        "198.51.100.0/24/0"
    );
    assert_eq!(
        render_ecs(&[0, 1, 24, 0, 198, 51, 100, 0]),
        "198.51.100.0/24/0 (4 address bytes, not 3)"
    );
    // The question must come back as asked: a response with another name is caught.
    let got = vec!["question www.example.com. IN A".to_string()];
    let want = vec!["question WWW.example.com. IN A".to_string()];
    assert!(diff(&want, &got).contains("    - question WWW.example.com. IN A\n"));
}

#[test]
fn scenario_mistakes_are_reported_not_skipped() {
    let cases: &[(String, &str)] = &[
        (
            format!("{TINY}\n[[query]]\nname = \"www.example.com\"\nanswer = []\n[query.expect]\n"),
            "unknown field `answer`",
        ),
        (
            format!(
                "{TINY}\n[[query]]\nname = \"www.example.com\"\necs = \"192.0.2.0/24\"\n[query.expect]\n"
            ),
            "query #1: it sends ECS, so say what comes back",
        ),
        (
            format!(
                "{TINY}\n[[query]]\nname = \"www.example.com\"\nhealth = {{ lon = \"down\" }}\n[query.expect]\n"
            ),
            "health: unknown datacenter \"lon\"",
        ),
        (
            TINY.replace("NS = [\"ns1\"]", "")
                + "\n[[query]]\nname = \"www.example.com\"\n[query.expect]\n",
            "the zone files do not build",
        ),
        (TINY.to_string(), "missing field `query`"),
    ];
    for (text, want) in cases {
        let err = run_scenario("bad.toml", text).expect_err(want);
        assert!(err.starts_with("bad.toml: "), "{err}");
        assert!(err.contains(want), "want {want:?} in {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// The same scenarios over real sockets.
// ---------------------------------------------------------------------------------------------

/// Replays every scenario query that a socket client can send (source 127.0.0.1) against the
/// running server over real UDP/TCP, with the scenario's health published the way the
/// aggregator publishes it, and compares the same lines: the wire path answers what the
/// in-process handler answers.
#[test]
fn scenarios_answer_the_same_over_sockets() {
    use crate::common::{TestServer, tcp_exchange, udp_raw};
    let mut replayed = 0;
    let mut failures = Vec::new();
    for (name, text) in scenario_files() {
        let w = World::build(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let files: Vec<(String, String)> = w
            .scenario
            .files
            .iter()
            .map(|(f, t)| (f.clone(), t.clone()))
            .collect();
        let borrowed: Vec<(&str, &str)> = files
            .iter()
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .collect();
        let geoip = w.geoip_path.clone();
        let s = TestServer::start_with(&borrowed, |o| {
            o.geoip = geoip.into_iter().collect();
            // Hostname targets resolve as the file says, never through the network.
            o.resolver.enabled = false;
        });
        s.running()
            .state
            .serving
            .set_resolved(Arc::new(w.resolved_names().expect("checked at build")));
        for (i, qs) in w.scenario.query.iter().enumerate() {
            // Another source address cannot be sent from here; a dropped packet is waited
            // out for the whole read timeout (the malformed-packet socket test covers drops).
            if qs.source.is_some_and(|a| a != DEFAULT_SOURCE) || qs.expect.drop {
                continue;
            }
            let serving = &s.running().state.serving;
            // Resolutions again per query: a fresh entry's TTL left starts over.
            serving.set_resolved(Arc::new(w.resolved_names().expect("checked at build")));
            let snap = w.snapshot(&qs.health).expect("checked at build");
            serving
                .health_sink(serving.health_generation())
                .publish(Arc::new(snap));
            let req = qs.bytes().expect("checked in process");
            let expected = expected_lines(qs, &req).expect("checked in process");
            // A few repetitions are enough here: every repetition runs in process above.
            for _ in 0..qs.repeat.min(3) {
                let resp = if qs.transport == "tcp" {
                    let mut c = std::net::TcpStream::connect(s.addr).expect("connect");
                    c.set_read_timeout(Some(std::time::Duration::from_secs(3)))
                        .expect("timeout");
                    tcp_exchange(&mut c, &req)
                } else {
                    udp_raw(s.addr, &req)
                };
                let got = match resp {
                    None => vec!["dropped".into()],
                    Some(r) => response_lines(&r),
                };
                let got = comparable(qs, &expected, got);
                if got != expected {
                    failures.push(format!(
                        "{name}: query #{} over the socket: {}\n{}",
                        i + 1,
                        qs.describe(),
                        diff(&expected, &got)
                    ));
                    break;
                }
            }
            replayed += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(replayed > 100, "replayed {replayed} queries");
    eprintln!("{replayed} scenario queries replayed over sockets");
}
