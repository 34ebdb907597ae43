//! Zone files in, a model or errors out: any text as one file of a zones directory (next to the
//! shipped `datacenters.toml`), through the reader and the one build step `check`, `serve` and
//! every reload run. A model that builds then answers a few queries at each zone apex.
//!
//! Invariants: no panic; every error names one of the two files, says what is wrong, and is a
//! line a log can hold (at most 2048 characters, no control characters: values from the file
//! are cut and escaped).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use gslbd::config;
use gslbd::dns::{self, NoGslb, Peer, Query};
use libfuzzer_sys::fuzz_target;

const SHARED: &str = include_str!("../../zones/datacenters.toml");

fn query(name: &[u8], qtype: u16) -> Vec<u8> {
    let mut v = vec![0x42, 0x42, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    v.extend_from_slice(name);
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&[0, 1]);
    v
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fuzzed = Path::new("fuzz.toml");
    let shared = Path::new("datacenters.toml");
    let mut files = vec![config::parse_file(shared, SHARED).expect("the shipped file parses")];
    let result = config::parse_file(fuzzed, text).and_then(|f| {
        files.push(f);
        config::build(&config::Config { files })
    });
    match result {
        Err(errors) => {
            assert!(!errors.0.is_empty());
            for e in &errors.0 {
                assert!(e.file == fuzzed || e.file == shared, "{e}");
                let line = e.to_string();
                assert!(line.chars().count() <= 2048, "a {}-character message", line.len());
                assert!(!line.chars().any(char::is_control), "control characters in {line:?}");
            }
        }
        Ok(model) => {
            let peer = Peer::udp(IpAddr::V4(Ipv4Addr::LOCALHOST));
            let mut out = vec![0u8; 4096];
            let mut q = Query::default();
            for z in &model.zones {
                let mut name = Vec::new();
                for label in z.origin().iter() {
                    name.push(label.len() as u8);
                    name.extend_from_slice(label);
                }
                name.push(0);
                for qtype in [1u16, 2, 6, 28, 255] {
                    let req = query(&name, qtype);
                    let a = dns::handle(&model, &NoGslb, &req, &peer, &mut q, &mut out)
                        .expect("a query is answered");
                    assert!(hickory_proto::op::Message::from_vec(&out[..a.len]).is_ok());
                }
            }
        }
    }
});
