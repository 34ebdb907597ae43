//! Packets in, responses out: any bytes through the whole query path (the example zones of
//! `zones/`, static and GSLB names, with the shipped GeoIP database), over UDP or TCP, as the
//! server's packet handler calls it.
//!
//! Input: byte 0 picks the transport (bit 0: TCP) and the source address (bit 1: IPv6, the
//! rest: its last byte); the packet is the rest. Invariants of every response: it parses, it
//! has the query's id and opcode with QR set, it fits the transport's limit (65535 over TCP;
//! over UDP 512 without EDNS, else the client's size within 512..=1232), and a one-question
//! response echoes the question byte for byte. Packets shorter than a header and responses
//! (QR set) get no answer at all.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::OnceLock;

use gslbd::config;
use gslbd::dns::{self, Peer, Query};
use gslbd::geo::GeoDb;
use gslbd::gslb::GslbContext;
use gslbd::health::Snapshot;
use gslbd::metrics::Metrics;
use gslbd::server::Loaded;
use libfuzzer_sys::fuzz_target;

struct World {
    loaded: Loaded,
    metrics: Metrics,
    geo: GeoDb,
    snapshot: Snapshot,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let files = [
            ("datacenters.toml", include_str!("../../zones/datacenters.toml")),
            ("example.com.toml", include_str!("../../zones/example.com.toml")),
            ("lb.example.com.toml", include_str!("../../zones/lb.example.com.toml")),
        ]
        .iter()
        .map(|(n, t)| config::parse_file(Path::new(n), t).expect("the example zones parse"))
        .collect();
        let model = config::build(&config::Config { files }).expect("the example zones build");
        let metrics = Metrics::new();
        let snapshot = Snapshot::all_up(model.datacenters.list.len());
        let geo = GeoDb::open(&gslbd::geo::default_paths()).expect("the shipped GeoIP database");
        World {
            loaded: Loaded::new(model, &metrics),
            metrics,
            geo,
            snapshot,
        }
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Skips a name (labels, maybe ending in a pointer); the offset after it.
fn skip_name(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let l = *b.get(at)?;
        match l {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return Some(at + 2),
            l if l & 0xC0 != 0 => return None,
            l => at += 1 + usize::from(l),
        }
    }
}

/// The UDP payload size of the request's first OPT record, found by walking the packet
/// independently of the server's parser; `None` without one (or when the walk fails).
fn opt_size(req: &[u8]) -> Option<u16> {
    let qd = be16(req, 4)?;
    let rrs = usize::from(be16(req, 6)?) + usize::from(be16(req, 8)?) + usize::from(be16(req, 10)?);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(req, at)? + 4;
    }
    for _ in 0..rrs {
        let end = skip_name(req, at)?;
        let rtype = be16(req, end)?;
        let rdlen = usize::from(be16(req, end + 8)?);
        if rtype == 41 {
            return be16(req, end + 2);
        }
        at = end + 10 + rdlen;
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, req)) = data.split_first() else {
        return;
    };
    let w = world();
    let tcp = sel & 1 != 0;
    let addr = if sel & 2 != 0 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(sel)))
    } else {
        IpAddr::V4(Ipv4Addr::new(81, 2, 69, sel))
    };
    let peer = if tcp { Peer::tcp(addr) } else { Peer::udp(addr) };
    let ctx = GslbContext {
        model: &w.loaded.model,
        snapshot: &w.snapshot,
        geo: &w.geo,
        metrics: &w.metrics,
        slots: &w.loaded.gslb_slots,
    };
    // The buffers the transports use: 4096 bytes per UDP message, a whole message over TCP.
    let mut out = vec![0u8; if tcp { 65535 } else { 4096 }];
    let mut q = Query::default();
    let Some(a) = dns::handle(&w.loaded.model, &ctx, req, &peer, &mut q, &mut out) else {
        return;
    };
    let resp = &out[..a.len];
    assert!(req.len() >= 12, "answered a packet shorter than a header");
    assert_eq!(req[2] & 0x80, 0, "answered a response (QR set)");
    assert!(resp.len() >= 12, "response shorter than a header");
    assert_eq!(resp[..2], req[..2], "id not echoed");
    assert_ne!(resp[2] & 0x80, 0, "QR not set");
    assert_eq!(resp[2] & 0x78, req[2] & 0x78, "opcode not echoed");
    let limit = if tcp {
        65535
    } else {
        opt_size(req).map_or(512, |s| usize::from(s.clamp(512, 1232)))
    };
    assert!(resp.len() <= limit, "{} bytes over a limit of {limit}", resp.len());
    if let Err(e) = hickory_proto::op::Message::from_vec(resp) {
        panic!("unparseable response: {e}: {resp:02x?}");
    }
    if be16(resp, 4) == Some(1) {
        let qend = skip_name(resp, 12).expect("question name") + 4;
        assert_eq!(resp.get(12..qend), req.get(12..qend), "question not echoed as asked");
    }
});
