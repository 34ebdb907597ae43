//! `POST /alertmanager`: Prometheus Alertmanager webhook payloads (format version 4) in,
//! external verdicts out. Any Prometheus rule (a blackbox probe, an error rate) can so take a
//! datacenter out of answers.
//!
//! ```text
//!  { "version": "4", "status": "firing", "alerts": [
//!      { "status": "firing", "labels": { "alertname": "...", "gslbd_datacenter": "fra" },
//!        "annotations": { "summary": "..." }, "fingerprint": "1a30ba71cca2921f", ... } ] }
//!     firing   --> Update::Set   (source alert/<fingerprint>, fra down, ttl --alert-ttl)
//!     resolved --> Update::Clear (source alert/<fingerprint>, fra)
//!     no gslbd_datacenter label --> ignored (counted in the reply)
//! ```
//!
//! A firing alert holds for the alert TTL after each delivery: Alertmanager sends firing
//! alerts again every `repeat_interval`, which must be shorter than the TTL (the operations
//! guide gives a configuration), and sends `resolved` when they stop (`send_resolved`, on by
//! default for webhooks).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::health::input::{Source, SourceKind, Subject, Update, Verdict};

/// The label that names the datacenter an alert takes down.
pub const DEFAULT_LABEL: &str = "gslbd_datacenter";
/// How long a firing alert holds without being sent again.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

/// How alerts are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSettings {
    /// The label naming the datacenter (`gslbd_datacenter`).
    pub label: String,
    /// How long a firing alert holds after each delivery.
    pub ttl: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            label: DEFAULT_LABEL.to_string(),
            ttl: DEFAULT_TTL,
        }
    }
}

/// The parts of the webhook payload gslbd reads (the rest is ignored).
#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(default)]
    version: Option<String>,
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
struct Alert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// What one payload asks for.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Parsed {
    /// One update per alert that names a datacenter.
    pub(crate) updates: Vec<Update>,
    /// Alerts without the label.
    pub(crate) ignored: usize,
    /// Alerts in the payload.
    pub(crate) alerts: usize,
}

/// Reads an Alertmanager webhook payload; the error says what is wrong with it.
pub(crate) fn parse(body: &[u8], s: &AlertSettings) -> Result<Parsed, String> {
    let p: Payload = serde_json::from_slice(body)
        .map_err(|e| format!("not an Alertmanager webhook payload: {e}"))?;
    if let Some(v) = p.version.as_deref()
        && v != "4"
    {
        return Err(format!(
            "Alertmanager webhook payload version {v:?}; gslbd reads version \"4\""
        ));
    }
    let mut out = Parsed {
        alerts: p.alerts.len(),
        ..Parsed::default()
    };
    for a in p.alerts {
        let Some(dc) = a.labels.get(&s.label).map(|d| d.trim().to_string()) else {
            out.ignored += 1;
            continue;
        };
        let id = match a.fingerprint.as_deref().filter(|f| !f.is_empty()) {
            Some(f) => f.to_string(),
            // Old Alertmanagers send no fingerprint: the label set identifies the alert
            // (FNV-1a over the sorted labels: stable across restarts and versions).
            None => {
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for (k, v) in &a.labels {
                    for b in k.bytes().chain([b'=']).chain(v.bytes()).chain([0]) {
                        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                    }
                }
                format!("{h:016x}")
            }
        };
        let source = Source::new(SourceKind::Alert, id);
        let subject = Subject::Datacenter(dc);
        match a.status.as_str() {
            "firing" => {
                let name = a.labels.get("alertname").map_or("alert", String::as_str);
                let about = a
                    .annotations
                    .get("summary")
                    .or_else(|| a.annotations.get("description"))
                    .map(|t| t.trim())
                    .filter(|t| !t.is_empty());
                let reason = match about {
                    Some(t) => format!("{name} firing: {t}"),
                    None => format!("{name} firing"),
                };
                out.updates.push(Update::Set {
                    source,
                    verdict: Verdict {
                        subject,
                        up: false,
                        load: None,
                        reason,
                        ttl: s.ttl,
                    },
                });
            }
            "resolved" => out.updates.push(Update::Clear { source, subject }),
            other => {
                return Err(format!(
                    "alert status {other:?}: expected \"firing\" or \"resolved\""
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firing_resolved_and_ignored() {
        let body = br#"{"version":"4","status":"firing","receiver":"gslbd","groupKey":"{}:{}",
            "truncatedAlerts":0,"groupLabels":{},"commonLabels":{},"commonAnnotations":{},
            "externalURL":"http://am:9093","alerts":[
            {"status":"firing","labels":{"alertname":"ProbeFailure","gslbd_datacenter":"fra"},
             "annotations":{"summary":"blackbox probe failed"},"startsAt":"2026-01-01T00:00:00Z",
             "endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://p","fingerprint":"aa"},
            {"status":"resolved","labels":{"alertname":"ProbeFailure","gslbd_datacenter":"ams"},
             "fingerprint":"bb"},
            {"status":"firing","labels":{"alertname":"Other"},"fingerprint":"cc"}]}"#;
        let p = parse(body, &AlertSettings::default()).expect("parses");
        assert_eq!((p.alerts, p.ignored, p.updates.len()), (3, 1, 2));
        match &p.updates[0] {
            Update::Set { source, verdict } => {
                assert_eq!(source.id, "aa");
                assert_eq!(verdict.subject, Subject::Datacenter("fra".into()));
                assert!(!verdict.up);
                assert_eq!(verdict.reason, "ProbeFailure firing: blackbox probe failed");
                assert_eq!(verdict.ttl, DEFAULT_TTL);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&p.updates[1], Update::Clear { source, .. } if source.id == "bb"));
        assert!(parse(b"{}", &AlertSettings::default()).is_err());
        assert!(parse(br#"{"version":"3","alerts":[]}"#, &AlertSettings::default()).is_err());
    }
}
