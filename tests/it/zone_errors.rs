//! Bad zone files: every error names the file and the key path and says what was expected;
//! all errors of a file come at once; `gslbd check` exit codes; `serve` refuses to start.
use std::path::Path;
use std::process::Command;

use gslbd::config;

use crate::common::*;

const GOOD: &str = concat!(minimal_zone!(), r#""#);

/// Errors of one file as `path: message` lines (the file name is checked separately).
fn errors_of(text: &str) -> Vec<String> {
    let e = config::parse_file(Path::new("zones/example.com.toml"), text)
        .and_then(|f| {
            gslbd::config::build(&config::Config { files: vec![f] }).map(|_| unreachable_ok())
        })
        .expect_err("must fail");
    e.0.iter()
        .map(|e| {
            assert_eq!(e.file, Path::new("zones/example.com.toml"));
            e.to_string()
                .trim_start_matches("zones/example.com.toml: ")
                .to_string()
        })
        .collect()
}

fn unreachable_ok() -> config::FileSpec {
    panic!("the model was built from a broken file")
}

#[test]
fn bad_address_names_file_key_and_expectation() {
    let e = config::parse_file(
        Path::new("zones/example.com.toml"),
        &format!("{GOOD}\n[records.www]\nA = [\"192.0.2.1\", \"300.1.2.3\"]"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "zones/example.com.toml: records.www.A[1]: \"300.1.2.3\" is not an IPv4 address"
    );
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let text = r#"
origin = "example.com"
ttl = "long"
colour = "blue"
[soa]
mname = "ns1.example.com."
serial = -1
[records.www]
A = ["1.2.3.4", 5]
AAAA = ["1.2.3.4"]
MX = ["mail"]
BOGUS = ["x"]
[records."_sip._tcp"]
SRV = ["10 60 x sip"]
[records.alias]
CNAME = { values = ["a", "b"], ttl = 60, extra = 1 }
"#;
    let errs = errors_of(text);
    let expected = [
        "origin: \"example.com\" must be a fully qualified name ending in \".\"",
        "ttl: expected an integer, found a string",
        "soa.rname: is required (a string)",
        "soa.serial: -1 is out of range (expected 0..=4294967295)",
        "records._sip._tcp: ",
        "records.alias.CNAME.extra: unknown key (expected one of: values, ttl)",
        "records.alias.CNAME.values: a name has at most one CNAME",
        "records.www.A[1]: expected a string, found an integer",
        "records.www.AAAA[0]: \"1.2.3.4\" is not an IPv6 address",
        "records.www.MX[0]: \"mail\" is not a valid MX record",
        "records.www.BOGUS: unknown record type (expected one of: A, AAAA, CNAME, NS, MX, TXT, SRV, CAA, PTR, HTTPS, SVCB, DS, TLSA, SSHFP, NAPTR, ALIAS, or TYPE<number> with RFC 3597 values)",
        "colour: unknown key (expected one of: origin, ttl, soa, records, datacenters, checks, gslb, dnssec)",
    ];
    for want in expected {
        let want = want.replace(
            "records._sip._tcp: ",
            "records.\"_sip._tcp\".SRV[0]: \"10 60 x sip\" is not a valid SRV record",
        );
        assert!(
            errs.iter().any(|e| e.starts_with(&want)),
            "missing {want:?} in {errs:#?}"
        );
    }
}

#[test]
fn syntax_errors_name_the_file() {
    let e = config::parse_file(Path::new("zones/x.toml"), "origin = \n").unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("zones/x.toml: not valid TOML: "), "{s}");
    assert!(s.contains("line 1"), "{s}");
}

#[test]
fn semantic_errors_carry_the_key_path() {
    let errs = errors_of(&format!(
        "{GOOD}\n[records.www]\nCNAME = [\"ns1\"]\nA = [\"192.0.2.5\"]\n[records.\"x.sub\"]\nTXT = [\"hidden\"]\n[records.sub]\nNS = [\"ns.sub\"]\nMX = [\"1 mail\"]"
    ));
    assert!(
        errs.contains(
            &"records.www.CNAME: a name with a CNAME can hold no other data (also has A)"
                .to_string()
        ),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("records.\"x.sub\".TXT: is below a delegation")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("records.sub.MX: is at a delegation point")),
        "{errs:#?}"
    );
    let errs = errors_of(GOOD.replace("NS = [\"ns1\"]", "TXT = [\"no ns\"]").as_str());
    assert_eq!(
        errs,
        ["records.\"@\".NS: is required: a zone needs its name servers at the apex"]
    );
    let errs = errors_of(&format!(
        "{GOOD}\n[records.\"www.example.org.\"]\nA = [\"192.0.2.5\"]"
    ));
    assert_eq!(
        errs,
        ["records.\"www.example.org.\": \"www.example.org.\" is not inside the zone example.com."]
    );
}

/// Numbers too big for 64 bits are errors at their key, with every other error of the file
/// (the parser's tree is walked as it is; they used to stop the file at the first one).
#[test]
fn numbers_too_big_for_64_bits_are_out_of_range() {
    let errs = errors_of(&format!(
        "{}\n[datacenters.x]\naddresses = [\"192.0.2.9\"]\ncapacity = 1e999\n\
         [checks.web]\ntype = \"tcp\"\nport = 80\ninterval = 99999999999999999999\n",
        GOOD.replacen(
            "origin = \"example.com.\"",
            "origin = \"example.com.\"\nttl = 99999999999999999999",
            1
        )
    ));
    assert_eq!(
        errs,
        [
            "ttl: 99999999999999999999 is out of range (expected 0..=4294967295)",
            "datacenters.x.capacity: 1e999 is out of range (expected 0..=1000000000000)",
            "checks.web.interval: 99999999999999999999 is out of range (a number of seconds)",
        ]
    );
}

#[test]
fn duplicate_zones_and_duplicate_rrsets_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), GOOD).unwrap();
    std::fs::write(dir.path().join("b.toml"), format!("{GOOD}\n[records.www]\nA = [\"192.0.2.5\"]\n[records.\"www.example.com.\"]\nA = [\"192.0.2.6\"]")).unwrap();
    let e = gslbd::server::load_model(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("b.toml: records.\"www.example.com.\".A: A is already defined at records.www.A"),
        "{e}"
    );
    std::fs::write(dir.path().join("b.toml"), GOOD).unwrap();
    let e = gslbd::server::load_model(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("b.toml: origin: zone example.com. is already served from"),
        "{e}"
    );
}

/// One name written under two keys with other names between (`"WWW.example.com."` and `www`,
/// as the TOML reader orders keys, with `mail` and `other` between): one name with every
/// RRset of both, answered over a real socket; the same type under both keys is an error
/// naming both paths.
#[test]
fn a_name_written_under_two_keys_apart_is_one_name() {
    let zone = format!(
        "{GOOD}\n[records.www]\nA = [\"192.0.2.5\"]\n[records.mail]\nA = [\"192.0.2.7\"]\n\
         [records.\"WWW.example.com.\"]\nAAAA = [\"2001:db8::5\"]\nTXT = [\"both\"]\n\
         [records.other]\nMX = [\"10 www\"]\n"
    );
    let s = TestServer::start(&[("example.com.toml", &zone)]);
    let www = |qtype: &str| s.udp(&q("www.example.com", qtype)).answers();
    assert_eq!(www("A"), ["www.example.com. 3600 IN A 192.0.2.5"]);
    assert_eq!(www("AAAA"), ["www.example.com. 3600 IN AAAA 2001:db8::5"]);
    assert_eq!(www("TXT"), ["www.example.com. 3600 IN TXT both"]);
    assert_eq!(
        s.udp(&q("mail.example.com", "A")).answers(),
        ["mail.example.com. 3600 IN A 192.0.2.7"]
    );
    // The MX target's addresses come from both keys' RRsets (in the order of the keys, which
    // the TOML reader sorts: `"WWW..."` before `www`).
    let mx = s.udp(&q("other.example.com", "MX"));
    assert_eq!(
        mx.answers(),
        ["other.example.com. 3600 IN MX 10 www.example.com."]
    );
    let extra: Vec<String> = mx.msg.additionals.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        extra,
        [
            "www.example.com. 3600 IN AAAA 2001:db8::5",
            "www.example.com. 3600 IN A 192.0.2.5"
        ]
    );

    let errs = errors_of(&format!(
        "{GOOD}\n[records.www]\nA = [\"192.0.2.5\"]\n[records.mail]\nA = [\"192.0.2.7\"]\n\
         [records.\"WWW.example.com.\"]\nA = [\"192.0.2.6\"]\n"
    ));
    assert_eq!(
        errs,
        ["records.www.A: A is already defined at records.\"WWW.example.com.\".A"]
    );
}

#[test]
fn check_exit_codes_and_serve_refuses_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.com.toml"), GOOD).unwrap();
    let out = Command::new(bin())
        .arg("check")
        .arg("--zones")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: 1 zone(s)"));

    std::fs::write(
        dir.path().join("bad.toml"),
        GOOD.replace("example.com.\"", "bad.example.\"")
            .replace("192.0.2.1", "1.2.3"),
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("check")
        .arg("--zones")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml: records.ns1.A[0]: \"1.2.3\" is not an IPv4 address"),
        "{err}"
    );

    let out = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--zones"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an IPv4 address"));
}

#[test]
fn the_shipped_zones_are_valid() {
    let out = Command::new(bin())
        .args(["check", "--zones"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("zones"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `serve` would refuse, `check` refuses too, naming the file and the key: the probe plan
/// is built and checked in the same step as the model.
#[test]
fn check_refuses_what_serve_refuses_about_probing() {
    let dir = tempfile::tempdir().unwrap();
    let dcs = r#"
[checks.web]
type = "tcp"
port = 80
[datacenters.one]
addresses = ["192.0.2.10"]
check = "web"
min-up = 2
[datacenters.none]
addresses = ["192.0.2.20"]
check = "web"
check-addresses = []
"#;
    std::fs::write(dir.path().join("example.com.toml"), GOOD).unwrap();
    std::fs::write(dir.path().join("datacenters.toml"), dcs).unwrap();
    let out = Command::new(bin())
        .args(["check", "--zones"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = dir.path().join("datacenters.toml");
    let file = file.display();
    assert!(
        err.contains(&format!(
            "{file}: datacenters.one.min-up: min-up is 2 but only 1 address is probed"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}: datacenters.none.check-addresses: is empty: a datacenter with a check needs at least one address to probe"
        )),
        "{err}"
    );
    // serve says the same, at start.
    let out = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--api",
            "none",
            "--zones",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("datacenters.one.min-up"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 9, item 5: anything in the zones directory ending in `.toml` that is not a regular
/// file is an error with its path, never skipped (a zone would silently go missing); a FIFO is
/// never opened in a way that blocks. Names starting with a dot (editors' lock files, which
/// may be dangling symlinks) are not zone files.
#[test]
fn zone_files_that_are_not_regular_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("example.com.toml"), GOOD).unwrap();
    std::os::unix::fs::symlink(d.join("gone.toml.orig"), d.join("gone.toml")).unwrap();
    std::fs::create_dir(d.join("dir.toml")).unwrap();
    let fifo = std::ffi::CString::new(d.join("pipe.toml").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink("nobody@host.1234", d.join(".#example.com.toml")).unwrap();
    // A symlink to a regular file is a zone file like any other.
    std::fs::write(
        d.join("other.txt"),
        GOOD.replace("example.com.", "example.net."),
    )
    .unwrap();
    std::os::unix::fs::symlink(d.join("other.txt"), d.join("example.net.toml")).unwrap();

    let (tx, rx) = std::sync::mpsc::channel();
    let path = d.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(gslbd::server::load_model(&path).map(|m| m.zones.len()));
    });
    let e = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the load does not block on the FIFO")
        .expect_err("not-files are errors");
    let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
    let has = |file: &str, what: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{}: ", d.join(file).display())) && l.contains(what))
    };
    assert!(
        has("dir.toml", "is a directory, not a regular file"),
        "{lines:#?}"
    );
    assert!(
        has("pipe.toml", "is a FIFO, not a regular file"),
        "{lines:#?}"
    );
    assert!(
        has("gone.toml", "is a symbolic link to") && has("gone.toml", "which does not exist"),
        "{lines:#?}"
    );
    assert_eq!(
        lines.len(),
        3,
        "the dot file is not a zone file: {lines:#?}"
    );

    // `gslbd check` says so too (exit 1), instead of "ok" with a zone fewer.
    let out = Command::new(bin())
        .args(["check", "--zones"])
        .arg(d)
        .output()
        .expect("run gslbd check");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pipe.toml: is a FIFO"), "{stderr}");

    std::fs::remove_file(d.join("gone.toml")).unwrap();
    std::fs::remove_file(d.join("pipe.toml")).unwrap();
    std::fs::remove_dir(d.join("dir.toml")).unwrap();
    assert_eq!(gslbd::server::load_model(d).expect("loads").zones.len(), 2);
}

/// Issue 9, item 6: a file is read only once it has been left unchanged for the settle time
/// (the file watch's debounce window), so a file written in two steps is not loaded half
/// written when the first half happens to be valid.
#[test]
fn a_zone_file_written_in_two_steps_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.com.toml");
    let first = GOOD.to_string();
    let second = "\n[records.www]\nA = [\"192.0.2.7\"]\n";
    std::fs::write(&path, &first).unwrap();
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            // Well inside the 300 ms settle window, even when this thread waits for a core.
            std::thread::sleep(std::time::Duration::from_millis(50));
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            std::io::Write::write_all(&mut f, second.as_bytes()).unwrap();
        })
    };
    // Loaded at once after the first write, as a reload or `check` at the wrong moment would.
    let model = gslbd::server::load_model(dir.path()).expect("loads");
    writer.join().unwrap();
    let whole = config::parse_file(&path, &format!("{first}{second}")).unwrap();
    let whole = config::build(&config::Config { files: vec![whole] }).unwrap();
    assert_eq!(
        model.zones[0].record_count, whole.zones[0].record_count,
        "the www record of the second write is there"
    );
}

/// Issue 9, item 9: a value from a file reaches a message cut to a readable length and with
/// its control characters escaped, wherever it is quoted (here an address, a key, a TOML
/// syntax error on a huge line); the whole message stays one short line.
#[test]
fn huge_values_and_control_bytes_are_cut_and_escaped_in_messages() {
    let huge = format!("1.2.3.4\u{1b}[31m\n{}", "x".repeat(1 << 20));
    let toml_str = |s: &str| {
        let e = s
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .replace('\u{1b}', "\\u001b");
        format!("\"{e}\"")
    };
    let files = [
        // A value: `records.www.A[0]: "1.2.3.4\u{1b}[31m\nxxx..."...(N bytes) is not an IPv4 address`
        format!("{GOOD}\n[records.www]\nA = [{}]", toml_str(&huge)),
        // A key (an unknown one) and a value in a policy name.
        format!(
            "{GOOD}\n[records.www]\nA = [\"192.0.2.1\"]\n[gslb.a]\ndatacenters = [\"x\"]\npolicy = {}\n{} = 1",
            toml_str(&huge),
            toml_str(&huge)
        ),
        // A TOML syntax error on a 1 MB line: no excerpt of the line.
        format!("{GOOD}\nbad = {}", "y".repeat(1 << 20)),
    ];
    for text in &files {
        let e = config::parse_file(Path::new("zones/example.com.toml"), text)
            .and_then(|f| config::build(&config::Config { files: vec![f] }).map(|_| ()))
            .expect_err("must fail");
        for err in &e.0 {
            let line = err.to_string();
            assert!(
                line.len() < 1000,
                "a {}-byte message: {}...",
                line.len(),
                &line[..200]
            );
            assert!(!line.chars().any(char::is_control), "{line:?}");
        }
        let all = e.to_string();
        assert!(all.len() < 4000, "{} bytes", all.len());
    }
    // The value's first 64 characters, escaped, then its full length.
    let e = config::parse_file(Path::new("zones/example.com.toml"), &files[0]).unwrap_err();
    let line = e.0[0].to_string();
    let want = format!(
        "records.www.A[0]: \"1.2.3.4\\u{{1b}}[31m\\n{}\"...({} bytes) is not an IPv4 address",
        "x".repeat(51),
        huge.len()
    );
    assert!(line.ends_with(&want), "{line}\n{want}");
}

/// Parse-time errors of a file (no build).
fn parse_errors(text: &str) -> Vec<String> {
    config::parse_file(Path::new("zones/example.com.toml"), text)
        .expect_err("must fail")
        .0
        .iter()
        .map(|e| {
            e.to_string()
                .trim_start_matches("zones/example.com.toml: ")
                .to_string()
        })
        .collect()
}

fn has(errs: &[String], want: &str) {
    assert!(
        errs.iter().any(|e| e.starts_with(want)),
        "missing {want:?} in {errs:#?}"
    );
}

#[test]
fn hostname_datacenters_and_alias_are_checked_when_read() {
    let errs = parse_errors(&format!(
        r#"{GOOD}
[datacenters.both]
addresses = ["192.0.2.1"]
target = "lb.example.net."
[datacenters.relative]
target = "lb"
[datacenters.none]
capacity = 2
[datacenters.lb]
target = "lb.example.net."
min-up = "most"
[records.two]
ALIAS = ["a.example.net.", "b.example.net."]
"#
    ));
    for want in [
        "datacenters.both.target: a datacenter has either addresses or a target (a hostname), not both",
        "datacenters.relative.target: \"lb\": a target is a fully qualified name ending in \".\"",
        "datacenters.none.addresses: is required (a list of answer addresses), or give a hostname as `target`",
        "datacenters.lb.min-up: \"most\": expected a number 1..64 or \"all\"",
        "records.two.ALIAS: a name has at most one ALIAS target",
    ] {
        has(&errs, want);
    }
}

#[test]
fn hostname_answers_that_cannot_work_are_refused_at_load() {
    let errs = errors_of(&format!(
        r#"{GOOD}
[datacenters.lb]
target = "lb.example.net."
[datacenters.fra]
addresses = ["192.0.2.2"]
[datacenters.inner]
target = "app.example.com."
[datacenters.gone]
target = "gone.example.com."
[checks.web]
type = "tcp"
port = 80
[datacenters.probed-inner]
target = "app.example.com."
check = "web"
[gslb.multi]
answers = 2
datacenters = ["lb", "fra"]
[gslb.every]
policy = "all"
datacenters = ["lb", "fra"]
[gslb."@"]
flatten = false
datacenters = ["lb"]
[gslb.withtxt]
datacenters = ["lb"]
[gslb.app]
datacenters = ["fra"]
[gslb.flat]
flatten = true
datacenters = ["inner", "gone", "probed-inner"]
[records.withtxt]
TXT = ["x"]
[records.aliased]
ALIAS = ["www"]
A = ["192.0.2.9"]
[records.www]
A = ["192.0.2.10"]
[records.l1]
ALIAS = ["l2"]
[records.l2]
ALIAS = ["l1"]
[datacenters.to-ping]
target = "ping.example.com."
[datacenters.to-pong]
target = "pong-alias.example.com."
[gslb.ping]
datacenters = ["to-pong", "fra"]
[gslb.pong]
datacenters = ["to-ping"]
[records.pong-alias]
CNAME = ["pong"]
"#
    ));
    for want in [
        "gslb.multi.answers: answers = 2 with hostname datacenters (lb) needs flatten = true: one answer cannot hold several CNAMEs",
        "gslb.every.policy: policy \"all\" with hostname datacenters (lb) needs flatten = true on the name",
        "gslb.\"@\".flatten: a GSLB name at the zone apex is always flattened",
        "gslb.withtxt: withtxt.example.com. may answer a CNAME (hostname datacenters, flatten = false), and a CNAME owner holds no other data (RFC 1034), but it also has static TXT",
        "records.aliased.ALIAS: an ALIAS answers A and AAAA itself: not together with A on the same name",
        "datacenters.inner.target: app.example.com. is a GSLB name served here: its addresses depend on the client",
        "datacenters.gone.target: gone.example.com.: does not exist (NXDOMAIN in the zone example.com. served here)",
        "datacenters.probed-inner.check: the target app.example.com. is a GSLB name served here",
        "records.l1.ALIAS: l2.example.com.: leads into a loop",
        "datacenters.to-ping.target: datacenter to-ping: its CNAME answers can loop: ping.example.com. -> pong.example.com. -> ping.example.com.",
        "datacenters.to-pong.target: datacenter to-pong: its CNAME answers can loop: pong.example.com. -> ping.example.com. -> pong.example.com.",
    ] {
        has(&errs, want);
    }
}

#[test]
fn record_type_values_say_what_is_wrong() {
    let errs = parse_errors(&format!(
        r#"{GOOD}
[records.a]
SVCB = ['1 . alpn=h2 alpn=h3']
HTTPS = ['1 . mandatory=port alpn=h2']
TYPE65000 = ['c0000201']
TYPE255 = ['\# 0']
TXT = ['\# 5 c0000201']
DS = ["12345 13 2 00112233"]
[records.b]
TYPE1 = ['\# 3 c00002']
DS = ["1 NOPE 2 00"]
"#
    ));
    for want in [
        "records.a.SVCB[0]: \"1 . alpn=h2 alpn=h3\": the parameter alpn is given twice",
        "records.a.HTTPS[0]: \"1 . mandatory=port alpn=h2\": mandatory lists port, which the record does not have",
        "records.a.TYPE65000[0]: \"c0000201\": TYPE65000 values are written in the RFC 3597 generic form",
        "records.a.TYPE255: TYPE255: a meta or query type holds no data",
        "records.a.TXT[0]: \"\\# 5 c0000201\": the length says 5 bytes but the hex holds 4",
        "records.a.DS[0]: \"12345 13 2 00112233\": a digest of type 2 is 32 bytes, this one is 4",
        "records.b.TYPE1[0]: \"\\# 3 c00002\" is not a valid A record",
        "records.b.DS[0]: \"1 NOPE 2 00\": unknown DNSSEC algorithm \"NOPE\"",
    ] {
        has(&errs, want);
    }
    let errs = errors_of(&format!(
        "{GOOD}\n[records.www]\nDS = [\"1 13 2 {d}\"]\n",
        d = "00".repeat(32)
    ));
    assert_eq!(
        errs,
        ["records.www.DS: DS belongs at a delegation point (a name below the apex with NS)"]
    );
}

#[test]
fn several_checks_and_the_new_check_kinds_are_checked_where_they_are_written() {
    // What the file says (read per file).
    let text = format!(
        "{GOOD}{}",
        r#"
[checks.web]
type = "tcp"
port = 80
[checks.resolver]
type = "dns"
query-type = "BOGUS"
expect-rcode = "MAYBE"
[checks.cert]
type = "tls"
min-days = -1
[checks.script]
type = "exec"
command = "/bin/true"
[checks.empty]
type = "exec"
command = []
[datacenters.both]
addresses = ["192.0.2.10"]
check = "web"
checks = ["web"]
[datacenters.unknown]
addresses = ["192.0.2.13"]
checks = ["web"]
require = "most"
[datacenters.lonely]
addresses = ["192.0.2.14"]
require = "any"
"#
    );
    let errs = errors_of(&text);
    for want in [
        "checks.resolver.query: is required for a dns check (the name to ask, e.g. \"www.example.com\")",
        "checks.resolver.query-type: \"BOGUS\" is not a record type (expected e.g. A, AAAA, TXT, SOA)",
        "checks.resolver.expect-rcode: \"MAYBE\" is not a response code (expected one of NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, YXDOMAIN, YXRRSET, NXRRSET, NOTAUTH, NOTZONE, or 0..15)",
        "checks.cert.min-days: -1 is out of range (expected 0..=3650)",
        "checks.script.command: expected a list (argv, run without a shell): [\"/path/to/script\", \"arg\"]",
        "checks.empty.command: command must name a program to run (a list: [\"/path/to/script\", \"arg\", ...])",
        "datacenters.both.checks: give either `check` (one) or `checks` (a list), not both",
        "datacenters.unknown.require: expected \"all\", \"any\" or a number of checks (1 or more), found \"most\"",
        "datacenters.lonely.require: needs checks to count (`checks = [...]`)",
    ] {
        assert!(
            errs.iter().any(|e| e == want),
            "missing {want:?} in:\n{}",
            errs.join("\n")
        );
    }
    // What only the whole configuration can tell (the one build step).
    let text = format!(
        "{GOOD}{}",
        r#"
[checks.web]
type = "tcp"
port = 80
[checks.lookup]
type = "dns"
query = "www.example.com"
[datacenters.many]
addresses = ["192.0.2.11"]
checks = ["web", "lookup"]
require = 3
[datacenters.twice]
addresses = ["192.0.2.12"]
checks = ["web", "web"]
[datacenters.unknown]
addresses = ["192.0.2.13"]
checks = ["web", "nope"]
"#
    );
    let errs = errors_of(&text);
    for want in [
        "datacenters.many.require: 3 checks required but the datacenter has 2 (expected \"all\", \"any\" or 1..=2)",
        "datacenters.twice.checks[1]: check `web` is listed twice",
        "datacenters.unknown.checks[1]: unknown check \"nope\" (declared: lookup, web)",
    ] {
        assert!(
            errs.iter().any(|e| e == want),
            "missing {want:?} in:\n{}",
            errs.join("\n")
        );
    }
}

/// A zone file of `n` GSLB names, with `bad` names given an unknown policy; `whole` makes the
/// head define `gslb` itself (a dotted key before the first section), so the file is parsed
/// whole instead of in parts.
fn many_names(n: usize, bad: &[usize], whole: bool) -> String {
    let mut text = String::from(minimal_zone!());
    if whole {
        text = text.replacen("[soa]", "gslb.first.datacenters = [\"a\"]\n[soa]", 1);
    }
    text.push_str("[datacenters.a]\naddresses = [\"192.0.2.10\"]\n[datacenters.b]\naddresses = [\"192.0.2.20\"]\n");
    for i in 0..n {
        let policy = if bad.contains(&i) { "nope" } else { "failover" };
        text.push_str(&format!(
            "\n[gslb.g{i}]\ndatacenters = [\"a\", \"b\"]\npolicy = \"{policy}\"\n"
        ));
    }
    text
}

#[test]
fn names_read_in_parts_on_several_threads_keep_their_order() {
    // 3000 names are three parts (1024 sections each), read on as many threads as there are
    // cores: the errors still come part by part in file order (within a part, in key order,
    // as TOML tables are sorted), and they are the errors of the file read whole.
    let bad = [3, 1100, 1101, 2050, 2999];
    let parts = errors_of(&many_names(3000, &bad, false));
    let expected: Vec<String> = bad
        .iter()
        .map(|i| {
            format!(
                "gslb.g{i}.policy: \"nope\" is not a policy (expected failover, nearest, \
                 latency, load, weighted, round-robin, random, hash or all)"
            )
        })
        .collect();
    assert_eq!(parts, expected);
    let mut whole = errors_of(&many_names(3000, &bad, true));
    let mut sorted = parts.clone();
    whole.sort();
    sorted.sort();
    assert_eq!(whole, sorted);
}
