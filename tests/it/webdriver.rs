//! A small W3C WebDriver client for the browser tests: a real headless Chromium driven by
//! chromedriver (Debian packages `chromium` and `chromium-driver`), over HTTP with reqwest.
//!
//! Why not fantoccini/thirtyfour: the tests need a dozen commands plus chromedriver's browser
//! log (for console errors), which those crates do not expose; reqwest and serde_json are
//! already dependencies, so a page of code here costs no build time.
//!
//! Each [`Browser`] starts its own chromedriver on a free loopback port with a fresh profile
//! directory, and its `Drop` ends the session, asks chromedriver to shut down and then kills
//! it by its own PID. Browser tests run one at a time ([`Browser::start`] holds a lock): the
//! machine has two cores, and parallel browsers would make the timing checks noisy.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key W3C WebDriver uses for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct Browser {
    base: String,
    session: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    driver: Child,
    _profile: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

/// A found element.
#[derive(Clone, Debug)]
pub struct Element(String);

fn find_exe(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width` x `height` window, or
    /// returns `None` (printing why) when they are not installed. With
    /// `GSLBD_BROWSER_TESTS=require` (as .ci/run sets once it installed them) a missing
    /// browser fails the test instead.
    pub fn start(width: u32, height: u32) -> Option<Browser> {
        let driver = find_exe("CHROMEDRIVER", &["chromedriver"]);
        let chromium = find_exe(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            let msg = "browser test skipped: chromium and chromedriver not found \
                       (apt-get install chromium chromium-driver)";
            if std::env::var("GSLBD_BROWSER_TESTS").as_deref() == Ok("require") {
                panic!("{msg}; GSLBD_BROWSER_TESTS=require");
            }
            eprintln!("{msg}");
            return None;
        };
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        Some(Browser::launch(&driver, &chromium, width, height, turn))
    }

    fn launch(
        driver: &Path,
        chromium: &Path,
        width: u32,
        height: u32,
        turn: MutexGuard<'static, ()>,
    ) -> Browser {
        let port = crate::common::free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut b = Browser {
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http,
            rt,
            driver: child,
            _profile: profile,
            _turn: turn,
        };
        let ready = Instant::now();
        loop {
            let up = b
                .call("GET", "/status", None)
                .ok()
                .and_then(|v| v["ready"].as_bool())
                .unwrap_or(false);
            if up {
                break;
            }
            assert!(
                ready.elapsed() < Duration::from_secs(20),
                "chromedriver did not come up on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    format!("--user-data-dir={}", b._profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let v = b
            .call("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("new WebDriver session: {e}"));
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        b
    }

    /// One WebDriver command; `Err` carries WebDriver's error text.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, &url);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        self.rt.block_on(async move {
            let r = req.send().await.map_err(|e| e.to_string())?;
            let ok = r.status().is_success();
            let text = r.text().await.map_err(|e| e.to_string())?;
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
            let value = v.get("value").cloned().unwrap_or(Value::Null);
            if ok {
                // New-session answers carry sessionId inside value.
                Ok(value)
            } else {
                Err(format!("{} {}", value["error"], value["message"]))
            }
        })
    }

    fn s(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })))
            .unwrap_or_else(|e| panic!("navigate to {url}: {e}"));
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its result.
    pub fn exec(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({ "script": script, "args": args })),
        )
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    pub fn find(&self, css: &str) -> Element {
        let v = self
            .call(
                "POST",
                &self.s("/element"),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .unwrap_or_else(|e| panic!("no element matches {css:?}: {e}"));
        let id = v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("an element reference: {v}"));
        Element(id.to_string())
    }

    pub fn clear(&self, e: &Element) {
        self.call(
            "POST",
            &self.s(&format!("/element/{}/clear", e.0)),
            Some(json!({})),
        )
        .unwrap_or_else(|err| panic!("clear: {err}"));
    }

    pub fn type_text(&self, e: &Element, text: &str) {
        self.call(
            "POST",
            &self.s(&format!("/element/{}/value", e.0)),
            Some(json!({ "text": text })),
        )
        .unwrap_or_else(|err| panic!("send keys: {err}"));
    }

    /// Finds and clicks `css`. The page redraws its tables and markers on every poll, so an
    /// element found just before a redraw may be gone by the click: find it again then.
    pub fn click_on(&self, css: &str) {
        self.retry_stale(css, |e| {
            self.call(
                "POST",
                &self.s(&format!("/element/{}/click", e.0)),
                Some(json!({})),
            )
        });
    }

    /// The rendered text of the element `css` matches (found again after a redraw).
    pub fn text_of(&self, css: &str) -> String {
        let v = self.retry_stale(css, |e| {
            self.call("GET", &self.s(&format!("/element/{}/text", e.0)), None)
        });
        v.as_str().unwrap_or("").to_string()
    }

    fn retry_stale(&self, css: &str, f: impl Fn(&Element) -> Result<Value, String>) -> Value {
        for _ in 0..5 {
            match f(&self.find(css)) {
                Ok(v) => return v,
                Err(e) if e.contains("stale element") => continue,
                Err(e) => panic!("{css}: {e}"),
            }
        }
        panic!("{css}: replaced on every try");
    }

    /// Sets the window's outer size.
    pub fn set_window(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.s("/window/rect"),
            Some(json!({ "width": width, "height": height })),
        )
        .unwrap_or_else(|e| panic!("window size: {e}"));
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self
            .call("GET", &self.s("/screenshot"), None)
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        base64_decode(v.as_str().unwrap_or("")).expect("screenshot is base64")
    }

    /// Browser console messages since the last call: `(level, message)`.
    pub fn console(&self) -> Vec<(String, String)> {
        let v = self
            .call(
                "POST",
                &self.s("/se/log"),
                Some(json!({ "type": "browser" })),
            )
            .unwrap_or_else(|e| panic!("browser log: {e}"));
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Evaluates `script` until it returns `true`; panics with `what` after `limit`.
    /// Returns how long it took.
    pub fn wait_for(&self, what: &str, limit: Duration, script: &str) -> Duration {
        let t = Instant::now();
        loop {
            if self.exec(script, vec![]) == Value::Bool(true) {
                return t.elapsed();
            }
            assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.call("GET", "/shutdown", None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if c == b'=' { 0 } else { val(c)? };
            n |= v << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..4 - pad]);
    }
    Some(out)
}

#[test]
fn base64_of_screenshots() {
    assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
    assert_eq!(base64_decode("aGk=").as_deref(), Some(&b"hi"[..]));
    assert_eq!(base64_decode("YWJj").as_deref(), Some(&b"abc"[..]));
    assert_eq!(base64_decode("a*==").as_deref(), None);
}
