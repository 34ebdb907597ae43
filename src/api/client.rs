//! The command line's side of the API: `gslbd status` and `gslbd admin`.
//!
//! ```text
//!  gslbd status [--api URL]             --GET /status-->                  compact tables
//!  gslbd admin DC ACTION [--api URL]    --PUT /datacenters/DC/admin-->    one line
//!        [--token-file F | --token-env N]   (Authorization: Bearer <token>)
//! ```
//!
//! The API decides: the action word is passed on unchecked, and a refusal is printed with the
//! API's own reason, so the command and the API never disagree about what is allowed.
//!
//! Exit codes ([`CliError::exit_code`]): 0 done; 1 the API refused (an HTTP error status, its
//! reason printed); 2 usage (bad `--api`, unreadable token file or variable); 3 the API could
//! not be reached or did not answer like gslbd.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

/// The default API address, as `gslbd serve --api` has it.
pub const DEFAULT_API: &str = "http://127.0.0.1:8053";

/// How long one call may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a command failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CliError {
    /// The API answered with an error status; `reason` is its `error` text as given.
    #[error("the API refused ({status}): {reason}")]
    Refused {
        /// The HTTP status code.
        status: u16,
        /// The API's `error` text.
        reason: String,
    },
    /// The command line is wrong, or the token cannot be read.
    #[error("{0}")]
    Usage(String),
    /// Nothing answered, or not like gslbd.
    #[error("{0}")]
    Unreachable(String),
}

impl CliError {
    /// The process exit code for this error (see the module docs).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused { .. } => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
        }
    }
}

/// `127.0.0.1:8053`, `http://host:8053/` -> `http://host:8053`.
pub(crate) fn base_url(api: &str) -> Result<String, CliError> {
    let api = api.trim().trim_end_matches('/');
    let url = if api.contains("://") {
        api.to_string()
    } else {
        format!("http://{api}")
    };
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(url),
        _ => Err(CliError::Usage(format!(
            "--api {api:?}: expected http://HOST:PORT or HOST:PORT"
        ))),
    }
}

/// An error with its causes (reqwest's own text says only "error sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let _ = write!(s, ": {c}");
        cur = c.source();
    }
    s
}

fn client() -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| CliError::Unreachable(format!("HTTP client: {e}")))
}

/// Reads a response: JSON on success, [`CliError::Refused`] with the API's reason otherwise.
async fn read(url: &str, r: Result<reqwest::Response, reqwest::Error>) -> Result<Value, CliError> {
    let r = r.map_err(|e| {
        CliError::Unreachable(format!("cannot reach the API at {url}: {}", chain(&e)))
    })?;
    let status = r.status();
    let body = r
        .text()
        .await
        .map_err(|e| CliError::Unreachable(format!("reading the answer of {url}: {e}")))?;
    let json = serde_json::from_str::<Value>(&body);
    if status.is_success() {
        return json.map_err(|_| {
            CliError::Unreachable(format!(
                "{url} answered {status} but not with JSON: is this a gslbd API?"
            ))
        });
    }
    let reason = match json {
        Ok(v) => v
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| v.to_string(), str::to_string),
        Err(_) => body.trim().to_string(),
    };
    Err(CliError::Refused {
        status: status.as_u16(),
        reason: if reason.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            reason
        },
    })
}

/// `GET /status`.
pub async fn fetch_status(api: &str) -> Result<Value, CliError> {
    let url = format!("{}/status", base_url(api)?);
    read(&url, client()?.get(&url).send().await).await
}

/// `PUT /datacenters/{dc}/admin` with `action` as the body; returns the line to print.
pub async fn set_admin(
    api: &str,
    dc: &str,
    action: &str,
    token: Option<&str>,
) -> Result<String, CliError> {
    let base = base_url(api)?;
    let mut url = reqwest::Url::parse(&base).map_err(|e| CliError::Usage(e.to_string()))?;
    url.path_segments_mut()
        .map_err(|()| CliError::Usage(format!("--api {base}: cannot carry a path")))?
        .pop_if_empty()
        .extend(["datacenters", dc, "admin"]);
    let mut req = client()?.put(url.clone()).body(action.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let v = read(url.as_str(), req.send().await).await?;
    let admin = v.get("admin").and_then(Value::as_str).unwrap_or(action);
    let mut line = format!("{dc}: admin state {admin}");
    if admin == "drain" {
        line.push_str(
            " (no new answers from now on; `gslbd status` shows when the last ones expire)",
        );
    }
    Ok(line)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.1}ms"))
}

fn secs(n: u64) -> String {
    match n {
        0..120 => format!("{n}s"),
        120..7200 => format!("{}m", n / 60),
        _ => format!("{}h", n / 3600),
    }
}

/// Lays out rows as columns two spaces apart (the last column is not padded).
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, x) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(x);
            } else {
                let _ = write!(line, "{x:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The compact text of `gslbd status` for a `/status` document.
pub fn render_status(api: &str, v: &Value) -> String {
    let mut out = String::new();
    let reload = &v["last_reload"];
    let ok = reload["ok"].as_bool().unwrap_or(false);
    let _ = writeln!(
        out,
        "gslbd {} at {api}: up {}, configuration generation {}, last reload {}{}",
        s(v, "version"),
        secs(v["uptime_secs"].as_u64().unwrap_or(0)),
        v["generation"].as_u64().unwrap_or(0),
        if ok { "ok" } else { "FAILED" },
        if v["ready"].as_bool().unwrap_or(false) {
            ""
        } else {
            " (not ready: first probe round running)"
        }
    );
    if let Some(errs) = reload["errors"].as_array() {
        for e in errs {
            let _ = writeln!(out, "  reload error: {}", e.as_str().unwrap_or(""));
        }
    }
    if let Some(problems) = v["state_files"].as_array() {
        for p in problems {
            let _ = write!(out, "  STATE FILE NOT USED: {}", s(p, "error"));
            match p["moved_to"].as_str() {
                Some(to) => {
                    let _ = writeln!(out, " (moved to {to})");
                }
                None => out.push('\n'),
            }
        }
    }
    if let Some(e) = v["tls"]["error"].as_str() {
        let _ = writeln!(
            out,
            "  TLS certificate reload error (the previous certificate serves): {e}"
        );
    }
    out.push('\n');
    let mut rows = vec![
        [
            "DATACENTER",
            "STATE",
            "ADMIN",
            "UP",
            "LOAD",
            "LATENCY",
            "DECIDING",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for d in v["datacenters"].as_array().into_iter().flatten() {
        let targets = d["targets"].as_array().map_or(0, Vec::len);
        rows.push(vec![
            s(d, "name").into(),
            s(d, "state").into(),
            s(d, "admin").into(),
            if targets == 0 {
                "-".into()
            } else {
                format!("{}/{targets}", d["addresses_up"].as_u64().unwrap_or(0))
            },
            d["load"]
                .as_f64()
                .map_or("-".into(), |l| format!("{:.0}%", l * 100.0)),
            ms(d["latency_ms"].as_f64()),
            s(d, "deciding").into(),
        ]);
    }
    out.push_str(&table(&rows));
    let names = v["names"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !names.is_empty() {
        out.push('\n');
        let mut rows = vec![vec![
            "NAME".to_string(),
            format!(
                "ANSWERS/{}",
                secs(v["answers_window_secs"].as_u64().unwrap_or(0))
            ),
            "SHARE".to_string(),
        ]];
        for n in names {
            let mut answers = n["answers"].as_u64().unwrap_or(0).to_string();
            let down = n["all_down_answers"].as_u64().unwrap_or(0);
            if down > 0 {
                let _ = write!(answers, " ({down} all-down)");
            }
            let share: Vec<String> = n["share"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|x| x["answers"].as_u64().unwrap_or(0) > 0)
                .map(|x| {
                    format!(
                        "{} {:.0}%",
                        s(x, "datacenter"),
                        x["share"].as_f64().unwrap_or(0.0) * 100.0
                    )
                })
                .collect();
            rows.push(vec![
                s(n, "name").into(),
                answers,
                if share.is_empty() {
                    "-".into()
                } else {
                    share.join(", ")
                },
            ]);
        }
        out.push_str(&table(&rows));
    }
    let hostnames = v["hostnames"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !hostnames.is_empty() {
        out.push('\n');
        let mut rows = vec![
            ["TARGET", "STATE", "ADDRESSES", "AGE", "TTL", "USED BY"]
                .map(String::from)
                .to_vec(),
        ];
        for h in hostnames {
            let addrs: Vec<&str> = h["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut state = s(h, "state").to_string();
            if let Some(e) = h["error"].as_str() {
                let _ = write!(state, " ({e})");
            }
            let used: Vec<&str> = h["used_by"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            rows.push(vec![
                s(h, "target").into(),
                state,
                if addrs.is_empty() {
                    "-".into()
                } else {
                    addrs.join(" ")
                },
                h["age_secs"].as_u64().map_or("-".into(), secs),
                h["ttl"].as_u64().map_or("-".into(), |t| format!("{t}s")),
                used.join(", "),
            ]);
        }
        out.push_str(&table(&rows));
    }
    let events = v["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !events.is_empty() {
        out.push_str("\nRECENT CHANGES (newest first)\n");
        for e in events.iter().take(10) {
            let _ = writeln!(
                out,
                "  {} ago  {}{}  {}: {} -> {}  ({})",
                secs(e["ago_ms"].as_u64().unwrap_or(0) / 1000),
                s(e, "datacenter"),
                e["address"]
                    .as_str()
                    .map(|a| format!(" {a}"))
                    .unwrap_or_default(),
                s(e, "kind").replace('_', " "),
                s(e, "old"),
                s(e, "new"),
                s(e, "reason")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_addresses() {
        assert_eq!(
            base_url("127.0.0.1:8053").as_deref(),
            Ok("http://127.0.0.1:8053")
        );
        assert_eq!(
            base_url("http://[::1]:8053/").as_deref(),
            Ok("http://[::1]:8053")
        );
        assert_eq!(base_url("ftp://x").map_err(|e| e.exit_code()), Err(2));
        assert_eq!(base_url("").map_err(|e| e.exit_code()), Err(2));
    }

    #[test]
    fn columns_line_up() {
        let t = table(&[
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["long".into(), "x".into(), "last column".into()],
        ]);
        assert_eq!(t, "A     BB  C\nlong  x   last column\n");
    }
}
