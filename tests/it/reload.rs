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

/// A port free for both UDP and TCP on 127.0.0.1 (the server binds both).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
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
