//! What the aggregator tells the status API and the metrics: per datacenter and per target,
//! as plain data (JSON through serde), computed on request from the aggregator's state.

use serde::Serialize;
use tokio::time::Instant;

use super::{Aggregator, ms};
use crate::health::persist::unix_secs;
use crate::metrics::{F, Gauges, Text};
use crate::probe::{LoadFigure, TargetId};

/// Status of one probed target as one datacenter uses it (for the status API).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetStatus {
    pub addr: String,
    pub check: String,
    pub up: bool,
    pub probed: bool,
    pub warm: bool,
    pub consecutive_passes: u32,
    pub consecutive_fails: u32,
    pub probes: u64,
    /// `pass`, `status`, `timeout`, `refused`, `body_mismatch`, `bad_load`, `error`.
    pub last_result: Option<&'static str>,
    /// Human reason, e.g. `status 503`, `timeout after 2s`.
    pub last_reason: Option<String>,
    pub last_ms_ago: Option<u64>,
    pub last_latency_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    /// Raw figure: utilisation, or connections before dividing by capacity.
    pub load: Option<f64>,
    pub load_age_ms: Option<u64>,
    pub load_error: Option<String>,
}

/// Drain progress of a datacenter.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DrainStatus {
    pub started_unix: u64,
    pub started_ms_ago: u64,
    /// The longest TTL handed out for the datacenter.
    pub max_ttl_secs: u64,
    /// Every answer that named it has expired from resolver caches.
    pub complete: bool,
    pub complete_unix: u64,
}

/// Status of one datacenter (for the status API).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DcStatus {
    pub id: u32,
    pub name: String,
    pub healthy: bool,
    pub usable: bool,
    pub admin: &'static str,
    pub settled: bool,
    pub slow_start: f64,
    pub load: Option<f64>,
    pub load_error: Option<String>,
    pub latency_ms: Option<f64>,
    pub min_up: u32,
    pub addresses_up: u32,
    pub drain: Option<DrainStatus>,
    pub targets: Vec<TargetStatus>,
}

/// Status of everything the aggregator knows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    pub generation: u64,
    pub datacenters: Vec<DcStatus>,
}

impl Aggregator {
    /// Status of everything at `now`.
    pub fn status(&self, now: Instant) -> Status {
        let datacenters = (0..self.dcs.len())
            .map(|i| {
                let plan = &self.set.dcs[i];
                let d = &self.dcs[i];
                let state = self.dc_state(i, now);
                let (load, load_error) = self.dc_load(i, now);
                let targets = plan
                    .slots
                    .iter()
                    .map(|id| self.target_status(*id, now))
                    .collect::<Vec<_>>();
                let drain = d.drain_started.map(|(at, wall)| {
                    let ago = now.saturating_duration_since(at);
                    DrainStatus {
                        started_unix: unix_secs(wall),
                        started_ms_ago: ms(ago),
                        max_ttl_secs: d.max_ttl.as_secs(),
                        complete: ago >= d.max_ttl,
                        complete_unix: unix_secs(wall + d.max_ttl),
                    }
                });
                DcStatus {
                    id: u32::try_from(i).unwrap_or(u32::MAX),
                    name: plan.name.clone(),
                    healthy: d.healthy,
                    usable: state.usable(),
                    admin: d.admin.as_str(),
                    settled: state.settled,
                    slow_start: state.slow_start,
                    load,
                    load_error,
                    latency_ms: state.latency_ms,
                    min_up: u32::try_from(plan.needed()).unwrap_or(u32::MAX),
                    addresses_up: u32::try_from(targets.iter().filter(|t| t.up).count())
                        .unwrap_or(u32::MAX),
                    drain,
                    targets,
                }
            })
            .collect();
        Status {
            generation: self.generation,
            datacenters,
        }
    }

    fn target_status(&self, id: TargetId, now: Instant) -> TargetStatus {
        let t = &self.targets[id.0 as usize];
        TargetStatus {
            addr: t.addr.to_string(),
            check: t.fingerprint.clone(),
            up: t.up,
            probed: t.probed,
            warm: t.warm,
            consecutive_passes: t.passes,
            consecutive_fails: t.fails,
            probes: t.probes,
            last_result: t.last.as_ref().map(|l| l.outcome.kind()),
            last_reason: t.last.as_ref().map(|l| l.outcome.to_string()),
            last_ms_ago: t
                .last
                .as_ref()
                .map(|l| ms(now.saturating_duration_since(l.at))),
            last_latency_ms: t
                .last
                .as_ref()
                .and_then(|l| l.latency)
                .map(|l| l.as_secs_f64() * 1000.0),
            latency_ms: t.latency.get(),
            load: t.load.map(|(f, _)| match f {
                LoadFigure::Utilisation(v) | LoadFigure::Connections(v) => v,
            }),
            load_age_ms: t.load.map(|(_, at)| ms(now.saturating_duration_since(at))),
            load_error: t.load_error.clone(),
        }
    }
}

impl Gauges for Status {
    fn render(&self, o: &mut Text) {
        let h = self;
        let g = "gauge";
        o.header(
            "gslbd_health_generation",
            "Generation of the health state last published.",
            g,
        );
        o.sample("gslbd_health_generation", &[], h.generation);
        let metrics: [(&str, &str); 6] = [
            (
                "gslbd_datacenter_up",
                "1 if the probes say the datacenter is up (after rise/fall and min-up).",
            ),
            (
                "gslbd_datacenter_usable",
                "1 if the datacenter may receive new answers (health and admin state).",
            ),
            (
                "gslbd_datacenter_load",
                "Utilisation 0..1 from the health endpoint.",
            ),
            (
                "gslbd_datacenter_latency_seconds",
                "Smoothed probe round-trip time.",
            ),
            (
                "gslbd_datacenter_slow_start_ratio",
                "Fraction of its normal traffic the datacenter gets now (slow start).",
            ),
            (
                "gslbd_datacenter_admin_state",
                "1 for the datacenter's current admin state.",
            ),
        ];
        for (i, (name, help)) in metrics.iter().enumerate() {
            o.header(name, help, g);
            for d in &h.datacenters {
                let dc = [("datacenter", d.name.as_str())];
                match i {
                    0 => o.sample(name, &dc, u8::from(d.healthy)),
                    1 => o.sample(name, &dc, u8::from(d.usable)),
                    2 => {
                        if let Some(l) = d.load {
                            o.sample(name, &dc, F(l));
                        }
                    }
                    3 => {
                        if let Some(ms) = d.latency_ms {
                            o.sample(name, &dc, F(ms / 1e3));
                        }
                    }
                    4 => o.sample(name, &dc, F(d.slow_start)),
                    _ => {
                        for st in ["obey", "up", "down", "drain"] {
                            let l = [("datacenter", d.name.as_str()), ("state", st)];
                            o.sample(name, &l, u8::from(d.admin == st));
                        }
                    }
                }
            }
        }
        let t = "gslbd_target_up";
        o.header(
            t,
            "1 if the probed target is up (after rise/fall), by datacenter and address.",
            g,
        );
        for d in &h.datacenters {
            for tg in &d.targets {
                let l = [
                    ("datacenter", d.name.as_str()),
                    ("address", tg.addr.as_str()),
                ];
                o.sample(t, &l, u8::from(tg.up));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ServerGauges;
    use std::time::{Duration, SystemTime};

    fn parse(text: &str) -> prometheus_parse::Scrape {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        prometheus_parse::Scrape::parse(lines).expect("parses")
    }

    fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        s.samples
            .iter()
            .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
            .and_then(|x| match &x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(*v),
                _ => None,
            })
    }

    #[test]
    fn health_gauges() {
        use crate::metrics::{Extra, Metrics};
        let target = TargetStatus {
            addr: "10.0.0.1:443".into(),
            check: "web".into(),
            up: false,
            probed: true,
            warm: false,
            consecutive_passes: 0,
            consecutive_fails: 3,
            probes: 9,
            last_result: Some("timeout"),
            last_reason: None,
            last_ms_ago: Some(10),
            last_latency_ms: None,
            latency_ms: Some(12.0),
            load: None,
            load_age_ms: None,
            load_error: None,
        };
        let dc = DcStatus {
            id: 0,
            name: "fra".into(),
            healthy: false,
            usable: false,
            admin: "drain",
            settled: true,
            slow_start: 0.25,
            load: Some(0.5),
            load_error: None,
            latency_ms: Some(12.0),
            min_up: 1,
            addresses_up: 0,
            drain: None,
            targets: vec![target],
        };
        let status = Status {
            generation: 7,
            datacenters: vec![dc],
        };
        let m = Metrics::with_shards(1);
        let server = ServerGauges {
            started: SystemTime::UNIX_EPOCH + Duration::from_secs(100),
            config_generation: 3,
            loaded_at: SystemTime::UNIX_EPOCH + Duration::from_secs(200),
            last_reload_ok: false,
            zones: 2,
        };
        let text = m.render(&Extra {
            health: Some(&status),
            server: Some(server),
            resolver: None,
        });
        let s = parse(&text);
        let fra = [("datacenter", "fra")];
        assert_eq!(value(&s, "gslbd_datacenter_up", &fra), Some(0.0));
        assert_eq!(value(&s, "gslbd_datacenter_load", &fra), Some(0.5));
        assert_eq!(
            value(&s, "gslbd_datacenter_latency_seconds", &fra),
            Some(0.012)
        );
        assert_eq!(
            value(&s, "gslbd_datacenter_slow_start_ratio", &fra),
            Some(0.25)
        );
        let a = "gslbd_datacenter_admin_state";
        assert_eq!(
            value(&s, a, &[("datacenter", "fra"), ("state", "drain")]),
            Some(1.0)
        );
        assert_eq!(
            value(&s, a, &[("datacenter", "fra"), ("state", "obey")]),
            Some(0.0)
        );
        let t = [("datacenter", "fra"), ("address", "10.0.0.1:443")];
        assert_eq!(value(&s, "gslbd_target_up", &t), Some(0.0));
        assert_eq!(value(&s, "gslbd_health_generation", &[]), Some(7.0));
        assert_eq!(value(&s, "gslbd_config_generation", &[]), Some(3.0));
        assert_eq!(
            value(&s, "gslbd_config_last_reload_successful", &[]),
            Some(0.0)
        );
        assert_eq!(value(&s, "gslbd_start_time_seconds", &[]), Some(100.0));
        assert_eq!(value(&s, "gslbd_zones", &[]), Some(2.0));
    }
}
