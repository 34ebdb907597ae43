//! Several checks per datacenter and the check kinds beyond http/tcp, each against a real local
//! endpoint: `require` all/any/N over two HTTP checks, `dns` against a running gslbd and a tiny
//! truncating responder, `tls` against rcgen certificates expiring in 3 and 30 days, `exec`
//! scripts (pass, fail, load, hang, environment, concurrency) and `icmp` to 127.0.0.1 where the
//! system allows unprivileged ping sockets (skipped with the reason where it does not).
//!
//! Probe rounds are driven explicitly (`Prober::probe` then `Aggregator::apply`), so every
//! state is exact; endpoints are real sockets and processes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use gslbd::health::aggregator::{Aggregator, AggregatorSettings};
use gslbd::health::events::EventKind;
use gslbd::health::{Input, Snapshot};
use gslbd::probe::{
    CheckKind, CheckSpec, DatacenterProbe, DnsCheck, ExecCheck, IcmpCheck, NamedCheck,
    ProbeOutcome, ProbeSet, Prober, Require, TlsCheck,
};
use tokio::time::{Instant, timeout};

use crate::common::{HealthHttp, HealthMode};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const BOUND: Duration = Duration::from_secs(30);

fn settings() -> AggregatorSettings {
    AggregatorSettings {
        publish_interval: Duration::ZERO,
        ..AggregatorSettings::default()
    }
}

fn spec(kind: CheckKind) -> CheckSpec {
    let mut c = CheckSpec::new(kind);
    c.interval = Duration::from_secs(5);
    c.timeout = Duration::from_millis(1500);
    c.rise = 1;
    c.fall = 1;
    c
}

fn named(name: &str, spec: CheckSpec) -> NamedCheck {
    NamedCheck {
        name: name.into(),
        spec,
    }
}

fn http(port: u16) -> CheckSpec {
    spec(CheckKind::Http(gslbd::probe::HttpCheck::new(
        "/health", port,
    )))
}

/// One explicit probe round of every target, applied and published.
async fn round(set: &ProbeSet, prober: &Prober, agg: &mut Aggregator) -> Vec<ProbeOutcome> {
    let mut outs = Vec::new();
    for t in &set.targets {
        let r = prober.probe(t).await;
        outs.push(r.outcome.clone());
        agg.apply(&r);
    }
    agg.publish(Instant::now());
    outs
}

/// Probes every target of a one-datacenter set with `check` on `addr` once.
async fn probe_once(addr: IpAddr, check: CheckSpec) -> ProbeResultView {
    let dc = DatacenterProbe::new("dc", vec![addr], Some(check));
    let set = ProbeSet::build(&[dc]).expect("probe set");
    let prober = Prober::new(&set).expect("prober");
    let r = prober.probe(&set.targets[0]).await;
    ProbeResultView {
        outcome: r.outcome,
        latency: r.latency,
        load: r.load,
    }
}

#[derive(Debug)]
struct ProbeResultView {
    outcome: ProbeOutcome,
    latency: Option<Duration>,
    load: Option<gslbd::probe::LoadFigure>,
}

// ---------------------------------------------------------------------------------------
// require = all | any | N

#[tokio::test]
async fn require_all_any_and_n_over_two_checks_each_failing_in_turn() {
    timeout(BOUND, async {
        let web = HealthHttp::start();
        let db = HealthHttp::start();
        let mk = |name: &str, require| {
            let mut d = DatacenterProbe::new(name, vec![LOCAL], None);
            d.checks = vec![named("web", http(web.port())), named("db", http(db.port()))];
            d.require = require;
            d
        };
        let dcs = [
            mk("all", Require::All),
            mk("any", Require::Any),
            mk("two", Require::AtLeast(2)),
            mk("one", Require::AtLeast(1)),
        ];
        let set = Arc::new(ProbeSet::build(&dcs).expect("probe set"));
        assert_eq!(set.targets.len(), 2, "equal checks on one address are probed once");
        let out = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
        let (mut agg, _h) = Aggregator::new(set.clone(), settings(), out.clone()).expect("agg");
        let prober = Prober::new(&set).expect("prober");
        let healthy = |out: &ArcSwap<Snapshot>| -> Vec<bool> {
            out.load().dcs.iter().map(|d| d.healthy).collect()
        };

        round(&set, &prober, &mut agg).await;
        assert_eq!(healthy(&out), [true, true, true, true], "both checks pass");

        web.set(HealthMode::Status(503));
        round(&set, &prober, &mut agg).await;
        assert_eq!(healthy(&out), [false, true, false, true], "web fails");
        let s = agg.status(Instant::now());
        let all = &s.datacenters[0];
        assert_eq!(all.health_input, "probes");
        assert_eq!(
            all.checks.iter().map(|c| (c.name.as_str(), c.up, c.decided)).collect::<Vec<_>>(),
            [("web", false, true), ("db", true, false)],
            "the failing check decided `all`"
        );
        assert!(
            all.reason.starts_with("probes: 1 of 2 checks up (require all); web: 0 of 1 addresses up (1 needed); 127.0.0.1:"),
            "{}",
            all.reason
        );
        assert!(all.reason.ends_with("status 503"), "{}", all.reason);
        let any = &s.datacenters[1];
        assert_eq!(
            any.reason,
            "probes: 1 of 2 checks up (require any); db: 1 of 1 addresses up (1 needed)",
            "an up datacenter names the check that carried it"
        );
        assert_eq!(
            any.checks.iter().map(|c| (c.name.as_str(), c.decided)).collect::<Vec<_>>(),
            [("web", false), ("db", true)],
            "the passing check decided `any`"
        );
        // explain reads the same from the snapshot.
        let why = &out.load().why[0];
        assert_eq!(
            why.checks.iter().map(|c| (c.name.as_str(), c.up)).collect::<Vec<_>>(),
            [("web", false), ("db", true)]
        );
        assert_eq!(why.require, "all");
        let ev = agg.events(Instant::now());
        assert!(
            ev.iter().any(|e| e.kind == EventKind::Check
                && e.datacenter == "all"
                && e.check.as_deref() == Some("web")
                && e.new == "down"),
            "{ev:?}"
        );
        assert!(
            ev.iter().any(|e| e.kind == EventKind::Datacenter
                && e.datacenter == "all"
                && e.reason == "status 503 (1 of 2 checks up, 2 needed)"),
            "{ev:?}"
        );

        web.set(HealthMode::Healthy);
        db.set(HealthMode::Status(500));
        round(&set, &prober, &mut agg).await;
        assert_eq!(healthy(&out), [false, true, false, true], "db fails, web is back");
        let s = agg.status(Instant::now());
        assert_eq!(
            s.datacenters[0].checks.iter().map(|c| (c.name.as_str(), c.decided)).collect::<Vec<_>>(),
            [("web", false), ("db", true)],
            "now db decided"
        );

        web.set(HealthMode::Status(503));
        round(&set, &prober, &mut agg).await;
        assert_eq!(healthy(&out), [false, false, false, false], "both fail");

        web.set(HealthMode::Healthy);
        db.set(HealthMode::Healthy);
        round(&set, &prober, &mut agg).await;
        assert_eq!(healthy(&out), [true, true, true, true], "both pass again");
    })
    .await
    .expect("bounded");
}

#[test]
fn require_and_checks_are_validated_where_they_are_written() {
    let mut d = DatacenterProbe::new("x", vec![LOCAL], Some(CheckSpec::tcp(80)));
    d.require = Require::AtLeast(2);
    let e = ProbeSet::build(&[d]).unwrap_err();
    assert_eq!(e.key(), "require");
    assert_eq!(
        e.detail(),
        "2 checks required but the datacenter has 1 (expected \"all\", \"any\" or 1..=1)"
    );
    let mut d = DatacenterProbe::new("x", vec![LOCAL], Some(CheckSpec::tcp(80)));
    d.checks.push(d.checks[0].clone());
    assert_eq!(ProbeSet::build(&[d]).unwrap_err().check(), Some("tcp"));
}

// ---------------------------------------------------------------------------------------
// dns

#[test]
fn dns_check_against_a_running_gslbd() {
    let zone = concat!(
        minimal_zone!(),
        "[records.www]\nA = [\"192.0.2.80\"]\nTXT = [\"\\\"hello\\\"\"]\n"
    );
    let srv = crate::common::TestServer::start(&[("example.toml", zone)]);
    let port = srv.addr.port();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let check = |query: &str, f: &dyn Fn(&mut DnsCheck)| {
        let mut d = DnsCheck::new(query, port);
        f(&mut d);
        rt.block_on(probe_once(LOCAL, spec(CheckKind::Dns(d))))
    };
    let r = check("www.example.com.", &|d| {
        d.expect_answer = Some("192.0.2.80".into())
    });
    assert_eq!(r.outcome, ProbeOutcome::Pass);
    assert!(r.latency.is_some());
    let r = check("www.example.com.", &|d| {
        d.qtype = 16;
        d.expect_answer = Some("hello".into());
    });
    assert_eq!(r.outcome, ProbeOutcome::Pass, "TXT");
    let r = check("www.example.com.", &|d| {
        d.expect_answer = Some("192.0.2.99".into())
    });
    assert_eq!(
        r.outcome,
        ProbeOutcome::AnswerMismatch(
            "no answer contains \"192.0.2.99\" (answers: [192.0.2.80])".into()
        )
    );
    let r = check("nope.example.com.", &|_| {});
    assert_eq!(
        r.outcome,
        ProbeOutcome::Rcode("NXDOMAIN, expected NOERROR".into())
    );
    let r = check("nope.example.com.", &|d| d.expect_rcode = 3);
    assert_eq!(r.outcome, ProbeOutcome::Pass, "NXDOMAIN expected");
    let r = check("www.other.org.", &|_| {});
    assert_eq!(
        r.outcome,
        ProbeOutcome::Rcode("REFUSED, expected NOERROR".into()),
        "a zone not served"
    );
}

/// A UDP responder that answers every query truncated (after a stray datagram with another
/// id), and a TCP listener on the same port that answers in full.
async fn truncating_responder() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use hickory_proto::op::Message;
    use hickory_proto::rr::{RData, Record, rdata::A};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let udp = tokio::net::UdpSocket::bind((LOCAL, 0)).await.expect("udp");
    let addr = udp.local_addr().expect("addr");
    let tcp = tokio::net::TcpListener::bind(addr).await.expect("tcp");
    fn answer(q: &[u8], truncated: bool) -> Vec<u8> {
        let req = Message::from_vec(q).expect("query");
        let mut m = Message::response(req.metadata.id, req.metadata.op_code);
        m.metadata.truncation = truncated;
        m.metadata.authoritative = true;
        m.add_query(req.queries[0].clone());
        if !truncated {
            let name = req.queries[0].name().clone();
            m.add_answer(Record::from_rdata(
                name,
                60,
                RData::A(A::new(192, 0, 2, 53)),
            ));
        }
        m.to_vec().expect("encode")
    }
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                r = udp.recv_from(&mut buf) => {
                    let Ok((n, peer)) = r else { return };
                    let mut stray = answer(&buf[..n], true);
                    stray[0] ^= 0xff; // another id: must be ignored
                    let _ = udp.send_to(&stray, peer).await;
                    let _ = udp.send_to(&answer(&buf[..n], true), peer).await;
                }
                c = tcp.accept() => {
                    let Ok((mut s, _)) = c else { return };
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).await.is_err() { continue; }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if s.read_exact(&mut q).await.is_err() { continue; }
                    let a = answer(&q, false);
                    let mut framed = (a.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&a);
                    let _ = s.write_all(&framed).await;
                }
            }
        }
    });
    (addr, task)
}

#[tokio::test]
async fn dns_check_retries_over_tcp_on_truncation_and_ignores_other_ids() {
    timeout(BOUND, async {
        let (addr, task) = truncating_responder().await;
        let mut d = DnsCheck::new("probe.example.", addr.port());
        d.expect_answer = Some("192.0.2.53".into());
        let r = probe_once(LOCAL, spec(CheckKind::Dns(d))).await;
        assert_eq!(r.outcome, ProbeOutcome::Pass, "answered over TCP");
        task.abort();
        // Nothing listening: ICMP port unreachable, read as connection refused.
        let closed = tokio::net::UdpSocket::bind((LOCAL, 0)).await.expect("udp");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let r = probe_once(LOCAL, spec(CheckKind::Dns(DnsCheck::new("x.", port)))).await;
        assert_eq!(r.outcome, ProbeOutcome::Refused);
    })
    .await
    .expect("bounded");
}

// ---------------------------------------------------------------------------------------
// tls

/// A TLS server on 127.0.0.1 whose self-signed certificate for `www.example.com` expires in
/// `days`; completes handshakes and closes.
async fn tls_server(days: u64) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(vec!["www.example.com".to_string()]).expect("params");
    params.not_before = (SystemTime::now() - Duration::from_secs(86_400)).into();
    params.not_after = (SystemTime::now() + Duration::from_secs(days * 86_400)).into();
    let cert = params.self_signed(&key).expect("cert");
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], der)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind((LOCAL, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(sock).await;
            });
        }
    });
    (addr, task)
}

fn tls(port: u16, min_days: u32, verify: bool) -> CheckSpec {
    let mut t = TlsCheck::new(port);
    t.host = Some("www.example.com".into());
    t.min_days = min_days;
    t.verify = verify;
    spec(CheckKind::Tls(t))
}

#[tokio::test]
async fn tls_check_takes_a_datacenter_down_before_its_certificate_expires() {
    timeout(BOUND, async {
        let (soon, t1) = tls_server(3).await;
        let (later, t2) = tls_server(30).await;
        let r = probe_once(LOCAL, tls(soon.port(), 7, false)).await;
        match &r.outcome {
            ProbeOutcome::Expiring(m) => assert!(
                m.starts_with("expires in 3.0 days (CN=") || m.starts_with("expires in 2.9 days"),
                "{m}"
            ),
            other => panic!("3 days left, min-days 7: {other:?}"),
        }
        assert_eq!(r.outcome.kind(), "cert_expiry");
        assert!(r.latency.is_some(), "the handshake completed");
        assert_eq!(
            probe_once(LOCAL, tls(soon.port(), 2, false)).await.outcome,
            ProbeOutcome::Pass,
            "3 days left, min-days 2"
        );
        assert_eq!(
            probe_once(LOCAL, tls(later.port(), 7, false)).await.outcome,
            ProbeOutcome::Pass,
            "30 days left"
        );
        // Verification on (the default): a self-signed certificate is not trusted.
        match probe_once(LOCAL, tls(later.port(), 7, true)).await.outcome {
            ProbeOutcome::Other(m) => assert!(m.starts_with("TLS handshake: "), "{m}"),
            other => panic!("self-signed with verification: {other:?}"),
        }
        // Nothing listening.
        t2.abort();
        let _ = t2.await;
        assert_eq!(
            probe_once(LOCAL, tls(later.port(), 7, false)).await.outcome,
            ProbeOutcome::Refused
        );
        t1.abort();
    })
    .await
    .expect("bounded");
}

// ---------------------------------------------------------------------------------------
// exec

fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p.display().to_string()
}

fn exec(cmd: Vec<String>, timeout_ms: u64) -> CheckSpec {
    let mut c = spec(CheckKind::Exec(ExecCheck::new(cmd)));
    c.timeout = Duration::from_millis(timeout_ms);
    c
}

/// The state letter of `pid` (`R`, `S`, `Z`...), `None` when it is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ").next()?.chars().next()
}

#[tokio::test]
async fn exec_check_exit_status_load_environment_and_a_hang_killed_with_its_group() {
    timeout(BOUND, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ok = script(d, "ok.sh", "exit 0");
        let fail = script(d, "fail.sh", "echo 'db replica lag 42s' >&2\nexit 1");
        let load = script(d, "load.sh", "echo load=0.42\necho fine");
        let bad_load = script(d, "badload.sh", "echo load=lots");
        let env_out = d.join("env.txt");
        let env = script(
            d,
            "env.sh",
            &format!(
                "echo \"$GSLBD_ADDRESS|$GSLBD_PORT|$GSLBD_DATACENTER|$MODE|$1\" > {}",
                env_out.display()
            ),
        );
        let pids = d.join("pids.txt");
        let hang = script(
            d,
            "hang.sh",
            &format!("sleep 30 &\necho $$ $! > {}\nwait", pids.display()),
        );

        assert_eq!(probe_once(LOCAL, exec(vec![ok], 2000)).await.outcome, ProbeOutcome::Pass);
        assert_eq!(
            probe_once(LOCAL, exec(vec![fail], 2000)).await.outcome,
            ProbeOutcome::Exit("exit status 1: db replica lag 42s".into())
        );
        let r = probe_once(LOCAL, exec(vec![load], 2000)).await;
        assert_eq!(
            (r.outcome, r.load),
            (
                ProbeOutcome::Pass,
                Some(gslbd::probe::LoadFigure::Utilisation(0.42))
            )
        );
        assert!(matches!(
            probe_once(LOCAL, exec(vec![bad_load], 2000)).await.outcome,
            ProbeOutcome::BadLoad(_)
        ));
        let mut e = ExecCheck::new(vec![env, "arg1".into()]);
        e.port = Some(5432);
        e.env.insert("MODE".into(), "deep".into());
        let dcp = DatacenterProbe::new("fra", vec!["192.0.2.7".parse().unwrap()], Some(spec(CheckKind::Exec(e))));
        let set = ProbeSet::build(&[dcp]).expect("set");
        let prober = Prober::new(&set).expect("prober");
        assert_eq!(prober.probe(&set.targets[0]).await.outcome, ProbeOutcome::Pass);
        assert_eq!(
            std::fs::read_to_string(&env_out).expect("env written").trim(),
            "192.0.2.7|5432|fra|deep|arg1"
        );
        assert!(matches!(
            probe_once(LOCAL, exec(vec![d.join("missing").display().to_string()], 2000)).await.outcome,
            ProbeOutcome::Other(m) if m.starts_with("cannot run ")
        ));

        // A hang: killed at the timeout with its whole process group, and reaped.
        let start = std::time::Instant::now();
        let r = probe_once(LOCAL, exec(vec![hang], 400)).await;
        let took = start.elapsed();
        assert_eq!(r.outcome, ProbeOutcome::Timeout(Duration::from_millis(400)));
        assert!(took < Duration::from_secs(3), "returned after {took:?}");
        let text = std::fs::read_to_string(&pids).expect("pids written");
        let mut it = text.split_whitespace().map(|p| p.parse::<u32>().expect("pid"));
        let (shell, sleeper) = (it.next().expect("shell"), it.next().expect("sleep"));
        assert_eq!(proc_state(shell), None, "the script was reaped: no zombie");
        // The background `sleep` was in the group: killed (gone, or a corpse its new parent,
        // init, has yet to reap), not running.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while matches!(proc_state(sleeper), Some(s) if s != 'Z') && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            matches!(proc_state(sleeper), None | Some('Z')),
            "the grandchild was killed with the group: {:?}",
            proc_state(sleeper)
        );
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn exec_checks_run_at_most_max_exec_at_once_and_per_datacenter() {
    timeout(BOUND, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log.txt");
        // Each run appends "+" on start and "-" on end: the running count never exceeds 2.
        let s = script(
            dir.path(),
            "slow.sh",
            &format!("echo + >> {0}\nsleep 0.3\necho - >> {0}", log.display()),
        );
        let check = exec(vec![s], 3000);
        // The same check and address in four datacenters: four targets (one per datacenter).
        let dcs: Vec<DatacenterProbe> = (0..4)
            .map(|i| DatacenterProbe::new(format!("dc{i}"), vec![LOCAL], Some(check.clone())))
            .collect();
        let set = Arc::new(ProbeSet::build(&dcs).expect("set"));
        assert_eq!(set.targets.len(), 4, "exec targets are per datacenter");
        let prober = Arc::new(Prober::with_max_exec(&set, 2).expect("prober"));
        let start = std::time::Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let (set, prober) = (set.clone(), prober.clone());
                tokio::spawn(async move { prober.probe(&set.targets[i]).await.outcome })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task"), ProbeOutcome::Pass);
        }
        let took = start.elapsed();
        let text = std::fs::read_to_string(&log).expect("log");
        let (mut running, mut most) = (0i32, 0i32);
        for l in text.lines() {
            running += if l == "+" { 1 } else { -1 };
            most = most.max(running);
        }
        assert_eq!(most, 2, "{text}");
        assert!(
            took >= Duration::from_millis(600),
            "two waves of two: {took:?}"
        );
    })
    .await
    .expect("bounded");
}

// ---------------------------------------------------------------------------------------
// icmp

#[tokio::test]
async fn icmp_echo_to_localhost_where_permitted() {
    if let Err(why) = gslbd::probe::icmp_permitted(false) {
        println!("icmp test skipped: {why}");
        return;
    }
    timeout(BOUND, async {
        let r = probe_once(LOCAL, spec(CheckKind::Icmp(IcmpCheck))).await;
        assert_eq!(r.outcome, ProbeOutcome::Pass);
        assert!(r.latency.is_some());
        match gslbd::probe::icmp_permitted(true) {
            Ok(()) => {
                let r = probe_once("::1".parse().unwrap(), spec(CheckKind::Icmp(IcmpCheck))).await;
                assert_eq!(r.outcome, ProbeOutcome::Pass, "ICMPv6 echo to ::1");
            }
            Err(why) => println!("icmp ::1 skipped: {why}"),
        }
    })
    .await
    .expect("bounded");
}

#[test]
fn icmp_is_refused_at_load_time_where_not_permitted() {
    let zone = concat!(
        minimal_zone!(),
        "[checks.ping]\ntype = \"icmp\"\n\n[datacenters.fra]\naddresses = [\"127.0.0.1\"]\ncheck = \"ping\"\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("z.toml"), zone).expect("write");
    let r = gslbd::config::load(dir.path());
    match gslbd::probe::icmp_permitted(false) {
        Ok(()) => assert!(r.is_ok(), "{:?}", r.err()),
        Err(why) => {
            println!("ping sockets not permitted here ({why}): checking the load-time error");
            let e = r.expect_err("refused at load time").to_string();
            assert!(e.contains("datacenters.fra.check: check `ping`: icmp checks need unprivileged ICMP (ping) sockets"), "{e}");
            assert!(e.contains("net.ipv4.ping_group_range"), "{e}");
        }
    }
}

#[test]
fn new_check_kinds_are_read_from_zone_files() {
    let zone = concat!(
        minimal_zone!(),
        r#"
[checks.resolver]
type = "dns"
query = "WWW.Example.com"
query-type = "AAAA"
expect-rcode = "NXDOMAIN"
expect-answer = "2001:db8::1"

[checks.cert]
type = "tls"
host = "www.example.com"
min-days = 14

[checks.script]
type = "exec"
command = ["/usr/local/bin/check-db", "--quick"]
port = 5432
env = { MODE = "deep" }

[datacenters.fra]
addresses = ["192.0.2.10"]
checks = ["resolver", "cert", "script"]
require = 2
"#
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("z.toml"), zone).expect("write");
    let m = gslbd::config::load(dir.path()).expect("valid");
    let p = &m.datacenters.probes[0];
    assert_eq!(p.require, Require::AtLeast(2));
    let names: Vec<&str> = p.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["resolver", "cert", "script"]);
    match &p.checks[0].spec.kind {
        CheckKind::Dns(d) => {
            assert_eq!(
                (d.query.as_str(), d.qtype, d.expect_rcode, d.port),
                ("www.example.com.", 28, 3, 53)
            );
        }
        other => panic!("{other:?}"),
    }
    match &p.checks[1].spec.kind {
        CheckKind::Tls(t) => assert_eq!((t.port, t.min_days, t.verify), (443, 14, true)),
        other => panic!("{other:?}"),
    }
    match &p.checks[2].spec.kind {
        CheckKind::Exec(e) => {
            assert_eq!(e.command, ["/usr/local/bin/check-db", "--quick"]);
            assert_eq!(e.port, Some(5432));
            assert_eq!(e.env.get("MODE").map(String::as_str), Some("deep"));
        }
        other => panic!("{other:?}"),
    }
    let plan = Arc::new(ProbeSet::build(&m.datacenters.probes).expect("plan"));
    assert_eq!(plan.dcs[0].checks.len(), 3);
    // Input shown by a freshly built aggregator: the probes decide.
    let out = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (agg, _h) = Aggregator::new(plan.clone(), settings(), out.clone()).expect("agg");
        assert_eq!(agg.snapshot().dcs[0].health_input, Input::Probes);
    });
}
