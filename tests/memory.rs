//! Memory of big zone sets (issue 9, item 8), counted by a global allocator that tracks the
//! live and the peak heap: the model of a big static zone stays small per record, loading it
//! peaks under 1.6x the model (the records read are moved into the model, not copied; the
//! TOML tree of the whole file used to be gigabytes for a million records), reading it again
//! and again does not grow the heap, and a big file read in parts answers exactly as the same
//! records read whole.
//!
//! Its own test binary: a global allocator counts every allocation of the process, so the one
//! test here runs alone (the figures of the running server, RSS against Knot's, are in
//! docs/benchmarks.md, from benches/memory.sh).
use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use gslbd::dns::{self, NoGslb, Peer, Query};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grew(l.size());
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        grew(l.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() {
            grew(new - l.size());
        } else {
            LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const RECORDS: usize = 50_000;

/// A zone of `n` names with one A record each (the shape of benches/gen-big-zones.py).
fn big_zone(n: usize) -> String {
    let mut s = String::from(
        "origin = \"big.test.\"\nttl = 300\n[soa]\nmname = \"ns1.big.test.\"\nrname = \"hostmaster.big.test.\"\n[records.\"@\"]\nNS = [\"ns1.big.test.\"]\n[records.ns1]\nA = [\"192.0.2.53\"]\n",
    );
    for i in 0..n {
        let _ = write!(
            s,
            "\n[records.h{i}]\nA = [\"10.{}.{}.{}\"]\n",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        );
    }
    s
}

/// (model bytes, peak bytes above the start) of loading `dir`, and the model.
fn measured_load(dir: &Path) -> (usize, usize, gslbd::model::Model) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let model = gslbd::server::load_model(dir).expect("loads");
    let after = LIVE.load(Ordering::Relaxed);
    (after - before, PEAK.load(Ordering::Relaxed) - before, model)
}

fn answer(model: &gslbd::model::Model, name: &str) -> Vec<u8> {
    let mut req = vec![0x42, 0x42, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        req.push(l.len() as u8);
        req.extend_from_slice(l.as_bytes());
    }
    req.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut out = vec![0u8; 4096];
    let mut q = Query::default();
    let peer = Peer::udp(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let a = dns::handle(model, &NoGslb, &req, &peer, &mut q, &mut out).expect("answered");
    out.truncate(a.len);
    out
}

#[test]
fn big_zones_load_into_a_small_model_with_a_bounded_peak() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = big_zone(RECORDS);
    std::fs::write(dir.path().join("big.test.toml"), &text).expect("write");
    let (model_bytes, peak, model) = measured_load(dir.path());
    let per_record = model_bytes / RECORDS;
    println!(
        "{RECORDS} records: model {model_bytes} bytes ({per_record} per record), peak {peak} bytes while loading ({:.1}x the model; the file is {} bytes)",
        peak as f64 / model_bytes as f64,
        text.len()
    );
    assert_eq!(model.zones[0].record_count, RECORDS + 3);
    // Names, records, entries and index: about 90 bytes for a name with one A record (it
    // was over 250 in a boxed map, and the load then kept most of its garbage).
    assert!(per_record < 150, "{per_record} bytes per record");
    assert!(model.zones[0].heap_bytes() <= model_bytes);
    // Reading peaks at the file and the records read, and the build moves those records into
    // the model instead of copying them: well under two models at any time (1.5x; copying
    // made it 1.8x, and the whole file's TOML tree made it about 10x). A reload's peak is the
    // old model plus this.
    assert!(
        peak * 10 < model_bytes * 16,
        "peak {peak} for a model of {model_bytes}: more than 1.6x"
    );

    // Read again and again, the live heap does not grow.
    drop(model);
    let mut sizes = Vec::new();
    for _ in 0..5 {
        let (bytes, _, m) = measured_load(dir.path());
        sizes.push(bytes);
        drop(m);
    }
    assert!(
        sizes
            .iter()
            .all(|&b| b.abs_diff(model_bytes) * 100 < model_bytes),
        "{model_bytes} then {sizes:?}"
    );

    // Parts and whole read the same: the same records from a file the splitter leaves whole
    // (a head that defines `records` itself) answer byte for byte the same.
    let (_, _, parts) = measured_load(dir.path());
    // Records defined by dotted keys before the first section: the head defines `records`.
    let whole_text = text.replacen(
        "ttl = 300\n",
        "ttl = 300\nrecords.txt.TXT = [\"whole\"]\n",
        1,
    );
    assert_ne!(whole_text, text);
    // The TXT record aside, both hold the same names and records.
    let whole_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(whole_dir.path().join("big.test.toml"), &whole_text).expect("write");
    let whole = gslbd::server::load_model(whole_dir.path()).expect("loads");
    assert_eq!(whole.zones[0].record_count, parts.zones[0].record_count + 1);
    for name in [
        "h0.big.test",
        "h1.big.test",
        "h4242.big.test",
        "ns1.big.test",
        "nope.big.test",
        "big.test",
    ] {
        assert_eq!(answer(&parts, name), answer(&whole, name), "{name}");
    }
    for i in (0..RECORDS).step_by(997) {
        let name = format!("h{i}.big.test");
        assert_eq!(answer(&parts, &name), answer(&whole, &name), "{name}");
    }
}
