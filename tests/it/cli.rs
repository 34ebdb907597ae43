//! `gslbd status` and `gslbd admin` (the real binary) against the real server: the tables,
//! every refusal the admin endpoint gives (its reason printed as given, exit 1), usage errors
//! (exit 2) and an API that cannot be reached or is not gslbd (exit 3).

use std::process::{Command, Output};

use crate::common::*;

fn zone() -> String {
    concat!(
        minimal_zone!(),
        r#"[datacenters.one]
addresses = ["192.0.2.10"]
location = { lat = 50.11, lon = 8.68 }
[datacenters.two]
addresses = ["192.0.2.20"]
location = { lat = 38.95, lon = -77.45 }
[gslb.www]
ttl = 5
datacenters = ["one", "two"]
policy = "failover"
"#
    )
    .to_string()
}

fn serve(token: Option<&str>) -> (TestServer, String) {
    let token = token.map(str::to_string);
    let s = TestServer::start_with(&[("example.com.toml", &zone())], move |o| {
        o.api = Some("127.0.0.1:0".parse().unwrap());
        o.api_token = token;
    });
    let api = s.running().api_addr.expect("api").to_string();
    (s, api)
}

fn gslbd(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run gslbd");
    (
        status.code().expect("exit code"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn www(s: &TestServer) -> String {
    let a = s.udp(&q("www.example.com", "A")).answers();
    assert_eq!(a.len(), 1, "{a:?}");
    a[0].rsplit(' ').next().unwrap_or("").to_string()
}

#[test]
fn status_shows_datacenters_names_shares_and_changes() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let (s, api) = serve(Some("s3cret"));
    for _ in 0..3 {
        assert_eq!(www(&s), "192.0.2.10");
    }
    let (code, out, err) = gslbd(&["status", "--api", &api], &[]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "gslbd {} at {api}: up ",
            env!("CARGO_PKG_VERSION")
        )) && lines[0].ends_with("configuration generation 1, last reload ok"),
        "{out}"
    );
    assert_eq!(
        lines[2..5],
        [
            "DATACENTER  STATE  ADMIN  UP  LOAD  LATENCY  DECIDING",
            "one         up     obey   -   -     -        no health check: always up",
            "two         up     obey   -   -     -        no health check: always up",
        ],
        "{out}"
    );
    assert!(lines[6].starts_with("NAME              ANSWERS/"), "{out}");
    assert_eq!(
        lines[7].split_whitespace().collect::<Vec<_>>(),
        ["www.example.com.", "3", "one", "100%"],
        "{out}"
    );

    let (code, out, err) = gslbd(
        &[
            "admin",
            "one",
            "drain",
            "--api",
            &format!("http://{api}/"),
            "--token-file",
            token.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("one: admin state drain"), "{out}");
    assert_eq!(www(&s), "192.0.2.20", "drained at once");

    let (code, out, _) = gslbd(&["status", "--api", &api], &[]);
    assert_eq!(code, 0);
    let row = out.lines().find(|l| l.starts_with("one ")).unwrap();
    assert_eq!(
        row.split_whitespace().take(3).collect::<Vec<_>>(),
        ["one", "drain", "drain"]
    );
    assert!(
        row.contains("admin: drain, the last answers naming it expire in"),
        "{row}"
    );
    let changes: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "RECENT CHANGES (newest first)")
        .collect();
    assert!(
        changes.len() >= 2
            && changes[1].ends_with("one  admin: obey -> drain  (set by an operator)"),
        "{out}"
    );

    // A reload that fails: the old configuration serves, status says so with the errors.
    std::fs::write(s.zone_path("broken.toml"), "origin = 7\n").unwrap();
    assert!(s.reload().is_err());
    let (code, out, _) = gslbd(&["status", "--api", &api], &[]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].ends_with("configuration generation 1, last reload FAILED"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("  reload error: ") && lines[1].contains("broken.toml"),
        "{out}"
    );
    std::fs::remove_file(s.zone_path("broken.toml")).unwrap();
    s.reload().expect("reload");
    let (_, out, _) = gslbd(&["status", "--api", &api], &[]);
    assert!(
        out.lines()
            .next()
            .unwrap()
            .ends_with("configuration generation 2, last reload ok"),
        "{out}"
    );

    // Back to obey with the token from the environment.
    let (code, out, err) = gslbd(
        &["admin", "one", "obey", "--api", &api, "--token-env", "T"],
        &[("T", "s3cret")],
    );
    assert_eq!((code, out.trim()), (0, "one: admin state obey"), "{err}");
    assert_eq!(www(&s), "192.0.2.10");
}

/// Arguments, environment, the last line printed on stderr.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn admin_prints_every_refusal_of_the_api_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret").unwrap();
    let tf = token.to_str().unwrap();
    let (s, api) = serve(Some("s3cret"));
    let cases: [Case; 4] = [
        (
            &["admin", "one", "drain"],
            &[],
            "gslbd admin: the API refused (401): missing `Authorization: Bearer <token>` header",
        ),
        (
            &["admin", "one", "drain", "--token-env", "T"],
            &[("T", "guess")],
            "gslbd admin: the API refused (403): wrong token",
        ),
        (
            &["admin", "nowhere", "drain", "--token-file", tf],
            &[],
            "gslbd admin: the API refused (404): no datacenter named `nowhere`",
        ),
        (
            &["admin", "one", "maybe", "--token-file", tf],
            &[],
            "gslbd admin: the API refused (400): unknown admin state `maybe`; expected one of obey, up, down, drain",
        ),
    ];
    for (args, env, expect) in cases {
        let mut full = args.to_vec();
        full.extend(["--api", &api]);
        let (code, out, err) = gslbd(&full, env);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_eq!(out, "");
        assert_eq!(err.lines().last(), Some(expect), "{args:?}");
        assert_eq!(www(&s), "192.0.2.10", "{args:?} changed nothing");
    }

    // A server without a token is read-only.
    let (_ro, ro_api) = serve(None);
    let (code, _, err) = gslbd(
        &["admin", "one", "down", "--api", &ro_api, "--token-file", tf],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.starts_with("gslbd admin: the API refused (403): the API is read-only"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2_and_an_unreachable_api_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let (code, _, err) = gslbd(
        &[
            "admin",
            "one",
            "drain",
            "--api",
            "127.0.0.1:9",
            "--token-file",
            missing.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.starts_with("gslbd admin: API token file "), "{err}");
    let (code, _, err) = gslbd(
        &[
            "admin",
            "one",
            "drain",
            "--token-file",
            "a",
            "--token-env",
            "B",
        ],
        &[],
    );
    assert_eq!(code, 2, "clap refuses both token sources: {err}");
    let (code, _, err) = gslbd(&["status", "--api", "ftp://x"], &[]);
    assert_eq!(
        (code, err.trim()),
        (
            2,
            "gslbd status: --api \"ftp://x\": expected http://HOST:PORT or HOST:PORT"
        )
    );

    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (code, _, err) = gslbd(&["status", "--api", &format!("127.0.0.1:{port}")], &[]);
    assert_eq!(code, 3);
    assert!(
        err.starts_with(&format!(
            "gslbd status: cannot reach the API at http://127.0.0.1:{port}/status"
        )) && err.contains("Connection refused"),
        "{err}"
    );

    // Something that is not gslbd: a health endpoint answering 200 "ok".
    let h = HealthHttp::start();
    let (code, _, err) = gslbd(&["status", "--api", &h.addr.to_string()], &[]);
    assert_eq!(code, 3);
    assert!(
        err.contains("but not with JSON: is this a gslbd API?"),
        "{err}"
    );
}
