//! The status page in a real headless Chromium (see webdriver.rs): no console errors, every
//! datacenter of the example zones at its place on the map with its state, a probe failure
//! showing within seconds, drain from the page moving the next DNS answer (and a wrong token
//! showing the API's reason), the explain form matching `gslbd explain`, and no horizontal
//! scroll at 390 px. Skipped with a printed reason where chromium/chromedriver are missing.
//!
//! `GSLBD_UPDATE_SCREENSHOTS=1` also writes the screenshots used in docs/operations.md.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use crate::webdriver::Browser;

fn example_zones() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("zones/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read zone"))
        })
        .collect();
    files.sort();
    files
}

fn serve(files: &[(String, String)], token: Option<&str>) -> (TestServer, String) {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let token = token.map(str::to_string);
    let s = TestServer::start_with(&refs, move |o| {
        o.api = Some("127.0.0.1:0".parse().unwrap());
        o.api_token = token;
    });
    let url = format!("http://{}", s.running().api_addr.expect("api"));
    (s, url)
}

/// Waits for the first poll of /status to be drawn.
fn open(b: &Browser, url: &str) {
    b.goto(&format!("{url}/"));
    b.wait_for(
        "the page drew /status",
        Duration::from_secs(10),
        "return Number(document.body.dataset.polls || 0) >= 1",
    );
}

fn state_on_page(b: &Browser, dc: &str) -> Value {
    b.exec(
        "const m = document.querySelector(`.marker[data-dc=\"${arguments[0]}\"]`);
         const r = document.querySelector(`#dcs tr[data-dc=\"${arguments[0]}\"]`);
         return m && r ? [m.dataset.state, r.dataset.state, m.getAttribute('aria-label'),
                          m.querySelector('.label').textContent] : null;",
        vec![json!(dc)],
    )
}

/// Console errors and warnings since the last call.
fn console_errors(b: &Browser) -> Vec<String> {
    b.console()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .map(|(_, m)| m)
        .collect()
}

fn no_console_errors(b: &Browser) {
    let errors = console_errors(b);
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// The browser logs a refused request as an error; a test that provokes one expects exactly
/// that and nothing else.
fn only_the_refusal(b: &Browser, path: &str, status: u16) {
    let errors = console_errors(b);
    assert!(
        errors.len() == 1
            && errors[0].contains(path)
            && errors[0].contains(&format!("status of {status}")),
        "console errors: {errors:?}"
    );
}

fn save_screenshot(b: &Browser, name: &str) {
    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let out = std::env::temp_dir().join(name);
    std::fs::write(&out, &png).expect("write screenshot");
    eprintln!("screenshot: {}", out.display());
    if std::env::var_os("GSLBD_UPDATE_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(name);
        std::fs::write(&docs, &png).expect("write docs screenshot");
    }
}

#[test]
fn status_page_maps_the_example_datacenters_explains_like_the_cli_and_fits_a_phone() {
    let Some(b) = Browser::start(1280, 1100) else {
        return;
    };
    let files = example_zones();
    let (s, url) = serve(&files, None);
    // A few answers, so the names table has shares to show in the screenshot.
    for client in ["81.2.69.160", "1.0.16.1", "8.8.8.8", "81.2.69.161"] {
        let q = q("app.lb.example.com", "A").ecs(client.parse().unwrap(), 24);
        assert!(!s.udp(&q).answers().is_empty());
    }
    open(&b, &url);

    // Every datacenter of the example zones, at its location (the model's coordinates: the
    // configured ones, or the country centroid for a geo code), marked up.
    let model = gslbd::server::load_model(s.dir.path()).expect("example zones load");
    let on_map = b.exec(
        "return [...document.querySelectorAll('.marker')].map(m => m.dataset.dc).sort()",
        vec![],
    );
    let mut names: Vec<String> = model
        .datacenters
        .list
        .iter()
        .map(|d| d.name.to_string())
        .collect();
    names.sort();
    assert_eq!(on_map, json!(names));
    for d in &model.datacenters.list {
        let (lat, lon) = d.coords.expect("every example datacenter has a place");
        // Where the dot's centre is drawn, as a fraction of the map picture, back to degrees.
        let at = b.exec(
            "const land = document.querySelector('#map .land').getBoundingClientRect();
             const dot = document.querySelector(`.marker[data-dc=\"${arguments[0]}\"] .dot`)
                 .getBoundingClientRect();
             const fx = (dot.left + dot.width / 2 - land.left) / land.width;
             const fy = (dot.top + dot.height / 2 - land.top) / land.height;
             return [fx * 360 - 180, 90 - fy * 150];",
            vec![json!(&*d.name)],
        );
        let (x_lon, x_lat) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        assert!(
            (x_lon - lon).abs() < 0.6 && (x_lat - lat).abs() < 0.6,
            "{} drawn at lat {x_lat:.2} lon {x_lon:.2}, configured at lat {lat} lon {lon}",
            d.name
        );
        let st = state_on_page(&b, &d.name);
        assert_eq!(st[0], "up", "{}: {st}", d.name);
        assert_eq!(st[1], "up");
        assert!(st[2].as_str().unwrap().contains(": up"), "{st}");
        assert_eq!(st[3], format!("{} \u{2714}", d.name), "label with an icon");
    }

    // Tap a datacenter: its details (state, load, latency, deciding input) show.
    b.click_on(".marker[data-dc=\"sin\"]");
    let text = b.text_of("#tip");
    assert!(
        text.starts_with("sin: up") && text.contains("load") && text.contains("latency"),
        "{text}"
    );
    assert!(text.contains("no health check: always up"), "{text}");

    // The names table counts the answers just given (decision counters).
    let app = b.exec(
        "const r = document.querySelector('#names tr[data-name=\"app.lb.example.com.\"]');
         return [...r.querySelectorAll('.shares li')].map(l => [l.dataset.dc, Number(l.dataset.answers)])",
        vec![],
    );
    let total: f64 = app
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[1].as_f64().unwrap())
        .sum();
    assert_eq!(total, 4.0, "{app}");

    // The explain form shows exactly what `gslbd explain` prints.
    let cli = std::process::Command::new(bin())
        .args([
            "explain",
            "app.lb.example.com",
            "A",
            "--client",
            "127.0.0.1",
            "--ecs",
            "81.2.69.0/24",
            "--zones",
        ])
        .arg(s.dir.path())
        .output()
        .expect("gslbd explain");
    assert!(cli.status.success(), "{cli:?}");
    let cli_text = String::from_utf8(cli.stdout).unwrap();
    for (field, value) in [
        ("#x-name", "app.lb.example.com"),
        ("#x-client", "127.0.0.1"),
        ("#x-ecs", "81.2.69.0/24"),
    ] {
        b.type_text(&b.find(field), value);
    }
    b.click_on("#x-go");
    b.wait_for(
        "the explanation",
        Duration::from_secs(5),
        "return document.getElementById('explain-text').textContent.length > 0",
    );
    let page_text = b.exec(
        "return document.getElementById('explain-text').textContent",
        vec![],
    );
    assert_eq!(page_text.as_str().unwrap(), cli_text);
    let summary = b.text_of("#explain-summary");
    assert!(
        summary.starts_with("answer: 198.51.100.10, TTL 30 s"),
        "{summary}"
    );
    no_console_errors(&b);
    // A name that is not GSLB: the API's reason.
    let name = b.find("#x-name");
    b.clear(&name);
    b.type_text(&name, "www.example.com");
    b.click_on("#x-go");
    b.wait_for(
        "the refusal",
        Duration::from_secs(5),
        "return document.getElementById('explain-summary').textContent.startsWith('Refused (404)')",
    );

    only_the_refusal(&b, "/explain?name=www.example.com", 404);
    b.exec("window.scrollTo(0, 0)", vec![]);
    save_screenshot(&b, "status-page.png");

    // Phone width: nothing wider than the screen.
    b.set_window(390, 844);
    let width = b.exec("return window.innerWidth", vec![]);
    assert_eq!(width, json!(390), "the window is phone sized");
    b.wait_for(
        "a redraw at phone width",
        Duration::from_secs(5),
        "return document.querySelector('#dcs thead').offsetParent === null",
    );
    let fits = b.exec(
        "const d = document.documentElement;
         return [d.scrollWidth, d.clientWidth, document.body.scrollWidth]",
        vec![],
    );
    assert!(
        fits[0].as_u64() <= fits[1].as_u64() && fits[2].as_u64() <= fits[1].as_u64(),
        "horizontal scroll at 390 px: {fits}"
    );
    // Every marker label stays inside the map.
    let outside = b.exec(
        "const map = document.getElementById('map').getBoundingClientRect();
         return [...document.querySelectorAll('.marker .label')]
           .filter(l => { const r = l.getBoundingClientRect();
                          return r.left < map.left || r.right > map.right; })
           .map(l => l.textContent)",
        vec![],
    );
    assert_eq!(outside, json!([]), "labels cut off at the map's edge");
    save_screenshot(&b, "status-page-phone.png");
    no_console_errors(&b);
}

/// Two datacenters; `one` is probed at `port` on loopback every 200 ms.
fn probed_zone(port: u16) -> String {
    format!(
        concat!(
            minimal_zone!(),
            r#"[checks.web]
type = "http"
port = {port}
path = "/health"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 2
[datacenters.one]
addresses = ["192.0.2.10"]
location = {{ lat = 50.11, lon = 8.68 }}
check = "web"
check-addresses = ["127.0.0.1"]
[datacenters.two]
addresses = ["192.0.2.20"]
location = {{ lat = 38.95, lon = -77.45 }}
[gslb.www]
ttl = 5
datacenters = ["one", "two"]
policy = "failover"
"#
        ),
        port = port
    )
}

/// The one address of the answer to `www.example.com A` (a real UDP query).
fn address(s: &TestServer) -> String {
    let a = s.udp(&q("www.example.com", "A")).answers();
    assert_eq!(a.len(), 1, "{a:?}");
    a[0].rsplit(' ').next().unwrap_or("").to_string()
}

#[test]
fn a_datacenter_whose_health_endpoint_stops_turns_down_on_the_page() {
    let Some(b) = Browser::start(1280, 1000) else {
        return;
    };
    let h = HealthHttp::start();
    let (s, url) = serve(&[("example.com.toml".into(), probed_zone(h.port()))], None);
    open(&b, &url);
    b.wait_for(
        "one probed up",
        Duration::from_secs(5),
        "return document.querySelector('.marker[data-dc=\"one\"]').dataset.state === 'up'",
    );
    assert_eq!(address(&s), "192.0.2.10");

    h.set(HealthMode::Refuse);
    let took = b.wait_for(
        "one shown down",
        Duration::from_secs(5),
        "return document.querySelector('.marker[data-dc=\"one\"]').dataset.state === 'down'",
    );
    eprintln!("shown down {took:?} after the health endpoint stopped");
    let st = state_on_page(&b, "one");
    assert_eq!(st[1], "down");
    assert_eq!(st[3], "one \u{2716}");
    let deciding = b.text_of("#dcs tr[data-dc=\"one\"] td[data-label=\"Deciding input\"]");
    assert!(
        deciding.starts_with("probes: 0 of 1 addresses up (1 needed); 127.0.0.1:")
            && deciding.ends_with("connection refused"),
        "{deciding}"
    );
    // The change and its reason are listed.
    b.wait_for(
        "the change listed",
        Duration::from_secs(3),
        "return [...document.querySelectorAll('#events li[data-dc=\"one\"][data-kind=\"datacenter\"]')]
           .some(l => l.textContent.includes('up \u{2192} down') && l.textContent.includes('connection refused'))",
    );
    assert_eq!(address(&s), "192.0.2.20");
    no_console_errors(&b);
}

#[test]
fn drain_from_the_page_moves_the_next_answer_and_a_wrong_token_shows_the_reason() {
    let Some(b) = Browser::start(1280, 1000) else {
        return;
    };
    let h = HealthHttp::start();
    let (s, url) = serve(
        &[("example.com.toml".into(), probed_zone(h.port()))],
        Some("s3cret"),
    );
    let www = || address(&s);
    open(&b, &url);
    b.wait_for(
        "one probed up",
        Duration::from_secs(5),
        "return document.querySelector('.marker[data-dc=\"one\"]').dataset.state === 'up'",
    );
    assert_eq!(www(), "192.0.2.10");

    // Drain asks for the token and for confirmation; a wrong token shows the API's reason.
    b.click_on("#dcs button[data-dc=\"one\"][data-action=\"drain\"]");
    assert_eq!(
        b.exec(
            "return document.getElementById('admin-dialog').open",
            vec![]
        ),
        json!(true)
    );
    let question = b.text_of("#admin-question");
    assert!(question.starts_with("Set one to drain?"), "{question}");
    no_console_errors(&b);
    let token = b.find("#admin-token");
    b.type_text(&token, "wrong");
    b.click_on("#admin-confirm");
    b.wait_for(
        "the refusal",
        Duration::from_secs(5),
        "return document.getElementById('admin-error').textContent.length > 0",
    );
    assert_eq!(b.text_of("#admin-error"), "Refused (403): wrong token");
    assert_eq!(www(), "192.0.2.10", "nothing changed");
    only_the_refusal(&b, "/datacenters/one/admin", 403);

    // The right token: drained at once, the next answer avoids it.
    b.clear(&token);
    b.type_text(&token, "s3cret");
    b.click_on("#admin-confirm");
    b.wait_for(
        "one shown drained",
        Duration::from_secs(5),
        "return document.querySelector('.marker[data-dc=\"one\"]').dataset.state === 'drain'
            && !document.getElementById('admin-dialog').open",
    );
    assert_eq!(www(), "192.0.2.20");
    // The token stays in this tab's session only.
    assert_eq!(
        b.exec(
            "return [sessionStorage.getItem('gslbd-api-token'), localStorage.length, document.cookie]",
            vec![]
        ),
        json!(["s3cret", 0, ""])
    );
    let drain = b.text_of("#dcs tr[data-dc=\"one\"] td[data-label=\"Drain\"]");
    assert!(drain.starts_with("draining: complete in"), "{drain}");

    // Cancel leaves things as they are.
    b.click_on("#dcs button[data-dc=\"one\"][data-action=\"obey\"]");
    assert_eq!(
        b.exec(
            "return document.getElementById('admin-token').value",
            vec![]
        ),
        json!("s3cret")
    );
    b.click_on("#admin-cancel");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(www(), "192.0.2.20");
    no_console_errors(&b);
}
