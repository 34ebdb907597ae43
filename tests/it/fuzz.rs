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
