//! Reload: a changed zone is served after reload; a broken one leaves the old zones serving.
use std::time::Duration;

use hickory_proto::op::ResponseCode;

use crate::common::*;

const V1: &str = concat!(
    minimal_zone!(),
    r#"[records.www]
A = ["192.0.2.10"]
"#
);

#[test]
fn reload_swaps_in_a_valid_change_and_keeps_the_old_zones_on_error() {
    let s = TestServer::start(&[("example.com.toml", V1)]);
    assert_eq!(
        s.udp(&q("www.example.com", "A")).answers(),
        ["www.example.com. 3600 IN A 192.0.2.10"]
    );
    std::fs::write(
        s.zone_path("example.com.toml"),
        V1.replace("192.0.2.10", "192.0.2.20"),
    )
    .unwrap();
    s.reload().expect("valid change reloads");
    assert_eq!(
        s.udp(&q("www.example.com", "A")).answers(),
        ["www.example.com. 3600 IN A 192.0.2.20"]
    );
    // Broken: a bad address and an unknown key. The reload fails and names both.
    std::fs::write(
        s.zone_path("example.com.toml"),
        V1.replace("192.0.2.10", "192.0.2.300")
            .replace("[soa]", "colour = 1\n[soa]"),
    )
    .unwrap();
    let errs = s.reload().expect_err("broken file is rejected");
    let text = errs.to_string();
    assert!(
        text.contains("records.www.A[0]: \"192.0.2.300\" is not an IPv4 address"),
        "{text}"
    );
    assert!(text.contains("colour: unknown key"), "{text}");
    assert_eq!(
        s.udp(&q("www.example.com", "A")).answers(),
        ["www.example.com. 3600 IN A 192.0.2.20"]
    );
    assert!(!s.running().state.last_reload.load().ok);
}

/// Issue 9, item 5: a zone file replaced by a dangling symbolic link is an error on reload:
/// the zone keeps being served and the reload is reported as failed, instead of the zone
/// disappearing (REFUSED) while the reload counts as a success.
#[test]
fn a_zone_file_that_becomes_a_dangling_link_fails_the_reload() {
    let s = TestServer::start(&[("example.com.toml", V1)]);
    let path = s.zone_path("example.com.toml");
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(s.zone_path("example.com.toml.new"), &path).unwrap();
    let errs = s.reload().expect_err("a dangling link is not a zone file");
    assert!(
        errs.to_string()
            .contains("example.com.toml: is a symbolic link to"),
        "{errs}"
    );
    assert_eq!(
        s.udp(&q("www.example.com", "A")).answers(),
        ["www.example.com. 3600 IN A 192.0.2.10"],
        "still served"
    );
    assert!(!s.running().state.last_reload.load().ok);
    // The link's target appears: the next reload takes it.
    std::fs::write(
        s.zone_path("example.com.toml.new"),
        V1.replace("192.0.2.10", "192.0.2.30"),
    )
    .unwrap();
    s.reload().expect("reloads");
    assert_eq!(
        s.udp(&q("www.example.com", "A")).answers(),
        ["www.example.com. 3600 IN A 192.0.2.30"]
    );
}

#[test]
fn sighup_reloads_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.com.toml"), V1).unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(bin())
        .args(["serve", "--zones"])
        .arg(dir.path())
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--udp-threads",
            "1",
            "--api",
            "none",
            "--no-watch",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let ask = || udp_raw(addr, &q("www.example.com", "A").bytes()).map(Resp::parse);
    let first = wait_for(ask);
    assert_eq!(first.answers(), ["www.example.com. 3600 IN A 192.0.2.10"]);
    std::fs::write(
        dir.path().join("example.com.toml"),
        V1.replace("192.0.2.10", "192.0.2.30"),
    )
    .unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let changed =
        wait_for(|| ask().filter(|r| r.answers() == ["www.example.com. 3600 IN A 192.0.2.30"]));
    assert_eq!(changed.rcode(), ResponseCode::NoError);
    // A broken file and SIGHUP: still the last good answer.
    std::fs::write(dir.path().join("example.com.toml"), "origin = ").unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ask().unwrap().answers(),
        ["www.example.com. 3600 IN A 192.0.2.30"]
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "exits 0 on SIGTERM: {status:?}");
}

pub fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("condition not met within 15s");
}

/// Reloads that add, remove and renumber datacenters while clients query: every answer must
/// be the healthy datacenter's. `x` fails over from m2 (down: its check port refuses) to m1
/// (up); a1 and a2 sort before them, so adding or removing them renumbers m1 and m2. A query
/// that read the new health through the old model's ids would answer m2.
#[test]
fn reloads_never_answer_a_down_datacenter_through_renumbered_ids() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let up = HealthHttp::start();
    let refused = free_port();
    let zone = |extra: &[&str]| {
        let mut t = String::from(minimal_zone!());
        t.push_str(&format!(
            "[checks.up]\ntype = \"tcp\"\nport = {}\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n",
            up.port()
        ));
        t.push_str(&format!(
            "[checks.down]\ntype = \"tcp\"\nport = {refused}\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n"
        ));
        t.push_str("[datacenters.m1]\naddresses = [\"198.51.100.1\"]\ncheck-addresses = [\"127.0.0.1\"]\ncheck = \"up\"\n");
        t.push_str("[datacenters.m2]\naddresses = [\"198.51.100.2\"]\ncheck-addresses = [\"127.0.0.1\"]\ncheck = \"down\"\n");
        for (i, a) in extra.iter().enumerate() {
            t.push_str(&format!(
                "[datacenters.{a}]\naddresses = [\"198.51.100.{}\"]\n",
                11 + i
            ));
        }
        t.push_str("[gslb.x]\ndatacenters = [\"m2\", \"m1\"]\nttl = 5\n");
        // The extra datacenters must be used somewhere, as operators would.
        if !extra.is_empty() {
            let list: Vec<String> = extra.iter().map(|a| format!("\"{a}\"")).collect();
            t.push_str(&format!(
                "[gslb.other]\ndatacenters = [{}]\n",
                list.join(", ")
            ));
        }
        t
    };
    let s = TestServer::start(&[("example.com.toml", &zone(&[]))]);
    let x = q("x.example.com", "A");
    let m1 = ["x.example.com. 5 IN A 198.51.100.1"];
    // Until m2's first probe it is assumed up; wait until both were probed.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut streak = 0;
    while streak < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "m1 never answered alone"
        );
        streak = if s.udp(&x).answers() == m1 {
            streak + 1
        } else {
            0
        };
        std::thread::sleep(Duration::from_millis(50));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (bad, total) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, bad, total, addr, bytes) =
                (stop.clone(), bad.clone(), total.clone(), s.addr, x.bytes());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(raw) = udp_raw(addr, &bytes) {
                        let a = Resp::parse(raw).answers();
                        total.fetch_add(1, Ordering::Relaxed);
                        if a.iter().any(|r| r.ends_with("198.51.100.2")) {
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let variants: [&[&str]; 3] = [&["a1", "a2"], &[], &["a1"]];
    for i in 0..30 {
        std::fs::write(s.zone_path("example.com.toml"), zone(variants[i % 3])).unwrap();
        s.reload().expect("reload");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (bad, total) = (bad.load(Ordering::Relaxed), total.load(Ordering::Relaxed));
    assert!(
        total > 300,
        "the clients queried throughout ({total} answers)"
    );
    assert_eq!(
        bad, 0,
        "{bad} of {total} answers named the down datacenter m2"
    );
}
