//! Integration tests: the real server on loopback, real UDP/TCP queries, exact answers.

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

mod common;
mod dns_core;
mod fuzz;
mod gslb;
mod latency;
mod ops;
mod probe_e2e;
mod reload;
mod zone_errors;
