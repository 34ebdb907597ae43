//! Integration tests, one binary: the real server on loopback with real UDP/TCP queries and
//! exact answers, and the public API of each layer (policy, probes, GeoIP, latency map, API).

/// The smallest valid zone (example.com. with its SOA, NS and the NS address), as a literal
/// for `concat!`, so tests only write what they are about.
macro_rules! minimal_zone {
    () => {
        r#"origin = "example.com."
[soa]
mname = "ns1.example.com."
rname = "hostmaster.example.com."
[records."@"]
NS = ["ns1"]
[records.ns1]
A = ["192.0.2.1"]
"#
    };
}

mod api;
mod browser;
mod checks;
mod cli;
mod cluster;
mod common;
mod dns_core;
mod dnssec;
mod dnssec_delv;
mod encrypted;
mod fuzz;
mod geo;
mod gslb;
mod hardening;
mod health_inputs;
mod hostname;
mod latency;
mod latency_map;
mod layers;
mod observability;
mod ops;
mod policy;
mod probe;
mod probe_e2e;
mod record_types;
mod reload;
mod scenarios;
mod simulate;
mod webdriver;
#[cfg(feature = "xdp")]
mod xdp;
mod zone_errors;
