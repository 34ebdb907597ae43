//! State files in: any bytes as `admin.json` and `health.json` of the state directory, read
//! and restored the way the health aggregator does at start (versions checked, admin states
//! applied, warm health aged), into two datacenters with checks.
//!
//! Input: the two files separated by the first NUL byte (`admin` NUL `health`; no NUL: the
//! bytes are both files). Invariants: no panic; a file that cannot be used is reported as a
//! problem with its name and a message a log can hold; a usable file is not reported.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use gslbd::health::aggregator::restore_for_fuzzing;
use gslbd::probe::{CheckSpec, DatacenterProbe, ProbeSet};
use libfuzzer_sys::fuzz_target;

fn set() -> Arc<ProbeSet> {
    static S: OnceLock<Arc<ProbeSet>> = OnceLock::new();
    S.get_or_init(|| {
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        let dcs = [
            DatacenterProbe::new("fra", vec![a, b], Some(CheckSpec::tcp(80))),
            DatacenterProbe::new("ams", vec![b], Some(CheckSpec::tcp(443))),
        ];
        Arc::new(ProbeSet::build(&dcs).expect("probe set"))
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let (admin, health) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    for problem in restore_for_fuzzing(set(), admin, health) {
        assert!(
            problem.starts_with("admin.json") || problem.starts_with("health.json"),
            "{problem}"
        );
        assert!(problem.chars().count() <= 2048, "a {}-byte message", problem.len());
        assert!(!problem.chars().any(char::is_control), "{problem:?}");
    }
});
