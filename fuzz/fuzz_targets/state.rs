//! State files in: any bytes as `admin.json`, `health.json` and `inputs.json` of the state
//! directory, read and restored the way the health aggregator does at start (versions
//! checked, admin states applied, warm health aged, external verdicts resolved), into two
//! datacenters with checks.
//!
//! Input: the three files separated by NUL bytes (`admin` NUL `health` NUL `inputs`; a
//! missing part is an absent file; no NUL: the bytes are all three files). Invariants: no
//! panic; a file that cannot be used is reported as a problem with its name and a message a
//! log can hold.
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
    let (admin, health, inputs) = if data.contains(&0) {
        let mut parts = data.splitn(3, |&b| b == 0);
        let mut next = || parts.next().unwrap_or(&[]);
        (next(), next(), next())
    } else {
        (data, data, data)
    };
    for problem in restore_for_fuzzing(set(), admin, health, inputs) {
        assert!(
            ["admin.json", "health.json", "inputs.json"]
                .iter()
                .any(|f| problem.starts_with(f)),
            "{problem}"
        );
        assert!(problem.chars().count() <= 2048, "a {}-byte message", problem.len());
        assert!(!problem.chars().any(char::is_control), "{problem:?}");
    }
});
