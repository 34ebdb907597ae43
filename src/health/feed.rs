//! Health feed files (`--health-feed FILE`, gdnsd's `extfile`): other tools write the state of
//! datacenters or addresses into a file; gslbd reads it whenever it changes. This file only
//! parses the text; the server polls the file and sends the entries to the aggregator as one
//! [`Update::Replace`](super::input::Update) per file.
//!
//! Two formats, told apart by the first character:
//!
//! ```text
//! JSON  { "fra": "down",
//!         "ams": { "state": "up", "load": 0.4, "reason": "canary ok" },
//!         "192.0.2.10": "down" }
//! CSV   # key,state[,load][,reason]       (comments and blank lines ignored; an optional
//!       datacenter,state,load,reason       header line; the reason may contain commas)
//!       fra,down,,maintenance window
//!       ams,up,0.4
//!       192.0.2.10,down
//! ```
//!
//! A key is a datacenter name, or an IP address (every datacenter with that answer address).

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use super::input::{Subject, Verdict};

/// How one feed file is doing, for `/status` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct FeedStatus {
    /// The file.
    pub path: String,
    /// The last read succeeded.
    pub ok: bool,
    /// Why the last read failed (the previous good entries stay until they expire).
    pub error: Option<String>,
    /// Entries of the last good read.
    pub entries: usize,
    /// Keys of the last good read that name no configured datacenter or address.
    pub unknown: Vec<String>,
    /// Modification time of the last good read, Unix seconds.
    pub modified_unix: Option<u64>,
    /// The file is older than the maximum age: its entries are ignored.
    pub stale: bool,
}

/// One line (CSV) or member (JSON) of a feed.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEntry {
    /// A datacenter name or an IP address.
    pub key: String,
    /// `up` (true) or `down`.
    pub up: bool,
    /// Utilisation 0..1, if given.
    pub load: Option<f64>,
    /// Why, if given.
    pub reason: Option<String>,
}

/// A feed that cannot be read; the previous good entries stay.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", .line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct FeedError {
    /// 1-based line of a CSV feed, when the error is on one.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

fn fail(line: Option<usize>, message: impl Into<String>) -> FeedError {
    FeedError {
        line,
        message: message.into(),
    }
}

fn state(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "up" => Some(true),
        "down" => Some(false),
        _ => None,
    }
}

fn load(v: f64) -> Result<f64, String> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("load {v} is not a number from 0 to 1"))
    }
}

/// Parses a feed (JSON when it starts with `{`, else CSV).
pub fn parse(text: &str) -> Result<Vec<FeedEntry>, FeedError> {
    let entries = if text.trim_start().starts_with('{') {
        parse_json(text)?
    } else {
        parse_csv(text)?
    };
    let mut seen = HashSet::new();
    for e in &entries {
        if e.key.trim().is_empty() {
            return Err(fail(None, "an entry has an empty key"));
        }
        if !seen.insert(e.key.as_str()) {
            return Err(fail(None, format!("`{}` is listed twice", e.key)));
        }
    }
    Ok(entries)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonValue {
    State(String),
    Full(JsonEntry),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    state: String,
    #[serde(default)]
    load: Option<f64>,
    #[serde(default)]
    reason: Option<String>,
}

fn parse_json(text: &str) -> Result<Vec<FeedEntry>, FeedError> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| fail(None, format!("not a JSON object of key -> state: {e}")))?;
    let mut out = Vec::with_capacity(map.len());
    for (key, v) in map {
        let entry: JsonValue = serde_json::from_value(v).map_err(|e| {
            fail(
                None,
                format!(
                    "`{key}`: expected \"up\", \"down\" or {{\"state\": ..., \"load\": ..., \"reason\": ...}} ({e})"
                ),
            )
        })?;
        let (st, ld, reason) = match entry {
            JsonValue::State(s) => (s, None, None),
            JsonValue::Full(f) => (f.state, f.load, f.reason),
        };
        let up = state(&st)
            .ok_or_else(|| fail(None, format!("`{key}`: state {st:?} is not up or down")))?;
        let ld = ld
            .map(load)
            .transpose()
            .map_err(|m| fail(None, format!("`{key}`: {m}")))?;
        out.push(FeedEntry {
            key,
            up,
            load: ld,
            reason: reason.filter(|r| !r.trim().is_empty()),
        });
    }
    Ok(out)
}

fn parse_csv(text: &str) -> Result<Vec<FeedEntry>, FeedError> {
    let mut out = Vec::new();
    let mut first = true;
    for (i, raw) in text.lines().enumerate() {
        let n = Some(i + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(4, ',');
        let key = fields.next().unwrap_or("").trim();
        let st = fields.next().map(str::trim);
        if std::mem::take(&mut first) && key.eq_ignore_ascii_case("datacenter") {
            continue; // the header line
        }
        let Some(st) = st else {
            return Err(fail(
                n,
                format!("`{line}`: expected key,state[,load][,reason]"),
            ));
        };
        let up =
            state(st).ok_or_else(|| fail(n, format!("`{key}`: state {st:?} is not up or down")))?;
        let ld = match fields.next().map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(
                v.parse::<f64>()
                    .map_err(|_| format!("load {v:?} is not a number"))
                    .and_then(load)
                    .map_err(|m| fail(n, format!("`{key}`: {m}")))?,
            ),
        };
        let reason = fields
            .next()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        out.push(FeedEntry {
            key: key.to_string(),
            up,
            load: ld,
            reason,
        });
    }
    Ok(out)
}

/// The verdicts of `entries` from the feed file `file`, each living `ttl`.
pub fn verdicts(entries: &[FeedEntry], file: &str, ttl: Duration) -> Vec<Verdict> {
    entries
        .iter()
        .map(|e| Verdict {
            subject: match e.key.trim().parse::<IpAddr>() {
                Ok(a) => Subject::AnyAddress(a),
                Err(_) => Subject::Datacenter(e.key.trim().to_string()),
            },
            up: e.up,
            load: e.load,
            reason: match &e.reason {
                Some(r) => format!("{r} ({file})"),
                None => file.to_string(),
            },
            ttl,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str, up: bool, load: Option<f64>, reason: Option<&str>) -> FeedEntry {
        FeedEntry {
            key: key.into(),
            up,
            load,
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn csv() {
        let text = "# written by our checker\ndatacenter,state,load,reason\nfra,down,,maintenance, phase 2\n\nams,UP,0.4\n192.0.2.10,down\n";
        assert_eq!(
            parse(text),
            Ok(vec![
                e("fra", false, None, Some("maintenance, phase 2")),
                e("ams", true, Some(0.4), None),
                e("192.0.2.10", false, None, None),
            ])
        );
        assert_eq!(parse(""), Ok(vec![]));
        let bad = parse("fra,down\nams,sideways\n").unwrap_err();
        assert_eq!(bad.line, Some(2));
        assert_eq!(
            bad.to_string(),
            "line 2: `ams`: state \"sideways\" is not up or down"
        );
        assert!(parse("fra\n").is_err());
        assert!(parse("fra,up,1.5\n").is_err());
        assert!(parse("fra,up,x\n").is_err());
        assert!(parse("fra,up\nfra,down\n").is_err());
    }

    #[test]
    fn json() {
        let text =
            r#"{ "fra": "down", "ams": { "state": "up", "load": 0.4, "reason": "canary ok" } }"#;
        let mut got = parse(text).expect("parses");
        got.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(
            got,
            vec![
                e("ams", true, Some(0.4), Some("canary ok")),
                e("fra", false, None, None)
            ]
        );
        assert!(parse(r#"{ "fra": "maybe" }"#).is_err());
        assert!(parse(r#"{ "fra": { "state": "up", "colour": 1 } }"#).is_err());
        assert!(parse(r#"{ "fra": "up""#).is_err(), "truncated");
    }

    #[test]
    fn keys_become_subjects() {
        let v = verdicts(
            &[
                e("fra", false, None, Some("m")),
                e("192.0.2.1", true, None, None),
            ],
            "/f.csv",
            Duration::from_secs(5),
        );
        assert_eq!(v[0].subject, Subject::Datacenter("fra".into()));
        assert_eq!(v[0].reason, "m (/f.csv)");
        assert_eq!(
            v[1].subject,
            Subject::AnyAddress("192.0.2.1".parse().unwrap())
        );
    }
}
