//! What the aggregator tells the status API and the metrics: per datacenter and per target,
//! as plain data (JSON through serde), computed on request from the aggregator's state.

use serde::Serialize;
use tokio::time::Instant;

use super::{Aggregator, ms};
use crate::health::input::Input;
use crate::health::persist::unix_secs;
use crate::metrics::{F, Gauges, Text};
use crate::probe::{LoadFigure, TargetId};

/// Status of one probed target as one datacenter uses it (for the status API).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetStatus {
    /// The probed address and port.
    pub addr: String,
    /// What is probed (check kind and its settings), as in the warm-start file.
    pub check: String,
    /// The check's name in the zone files.
    pub check_name: String,
    /// The target's state: its shared verdict (a cluster's quorum) while one holds, else
    /// `local_up`.
    pub up: bool,
    /// The state this process's probes give after rise/fall (for a target another node
    /// probes: the shared state it last followed).
    pub local_up: bool,
    /// The shared verdict in words while one decides the target (`cluster: 2 of 2 ...`).
    pub shared: Option<String>,
    /// At least one probe result since start (false: still on the startup assumption
    /// or the warm state).
    pub probed: bool,
    /// The state was restored from a fresh warm-start file.
    pub warm: bool,
    /// Passes in a row (`rise` of them bring a down target up).
    pub consecutive_passes: u32,
    /// Fails in a row (`fall` of them take an up target down).
    pub consecutive_fails: u32,
    /// Probe results received since start.
    pub probes: u64,
    /// `pass`, `status`, `timeout`, `refused`, `body_mismatch`, `bad_load`, `error`.
    pub last_result: Option<&'static str>,
    /// Human reason, e.g. `status 503`, `timeout after 2s`.
    pub last_reason: Option<String>,
    /// Milliseconds since the last result.
    pub last_ms_ago: Option<u64>,
    /// Round-trip time of the last probe, ms (none for failures without one).
    pub last_latency_ms: Option<f64>,
    /// Smoothed (EWMA) round-trip time, ms.
    pub latency_ms: Option<f64>,
    /// Raw figure: utilisation, or connections before dividing by capacity.
    pub load: Option<f64>,
    /// Milliseconds since the load figure was read.
    pub load_age_ms: Option<u64>,
    /// Why the last body gave no load figure, when the check reads one.
    pub load_error: Option<String>,
}

/// Drain progress of a datacenter.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DrainStatus {
    /// When the drain started, Unix seconds.
    pub started_unix: u64,
    /// Milliseconds since the drain started.
    pub(crate) started_ms_ago: u64,
    /// The longest TTL handed out for the datacenter.
    pub max_ttl_secs: u64,
    /// Every answer that named it has expired from resolver caches.
    pub complete: bool,
    /// When the drain is (or was) complete, Unix seconds.
    pub(crate) complete_unix: u64,
}

/// One check of a datacenter.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckStatus {
    /// `checks.<name>`.
    pub name: String,
    /// `http`, `https`, `tcp`, `dns`, `tls`, `exec` or `icmp`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// At least min-up of its addresses pass.
    pub up: bool,
    /// Its addresses that pass.
    pub addresses_up: u32,
    /// Its addresses.
    pub addresses: u32,
    /// This check's verdict is the probes' verdict (a failing check of a datacenter that is
    /// down by its probes; a passing one of a datacenter that is up).
    pub decided: bool,
}

/// One external verdict held for a datacenter.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InputStatus {
    /// `pushed`, `feed` or `alert`.
    pub source: &'static str,
    /// The pusher, the feed file or the alert's fingerprint.
    pub id: String,
    /// The answer address it is about; `None` = the whole datacenter.
    pub address: Option<String>,
    /// `up` or `down`.
    pub state: &'static str,
    /// Utilisation 0..1 it gives, if any.
    pub load: Option<f64>,
    /// Why, as the source said.
    pub reason: String,
    /// Time left before it no longer counts.
    pub expires_in_ms: u64,
    /// Time since it was set or last changed.
    pub set_ms_ago: u64,
    /// This verdict decides the datacenter's health.
    pub deciding: bool,
}

/// Status of one datacenter (for the status API).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DcStatus {
    /// The datacenter id (its index in the model).
    pub id: u32,
    /// The datacenter name from the zone files.
    pub name: String,
    /// The health verdict: an external verdict when one holds, else the probes (after
    /// rise/fall, `min-up` and `require`).
    pub healthy: bool,
    /// May receive new answers (health and admin state).
    pub usable: bool,
    /// Admin state: `obey`, `up`, `down` or `drain`.
    pub admin: &'static str,
    /// The input that decided whether it is usable: `admin`, `pushed`, `feed`, `alert`,
    /// `probes` or `config` (no check).
    pub input: &'static str,
    /// The input that decided its health (never `admin`).
    pub health_input: &'static str,
    /// What that input says, in words (probes: with the last failure's reason).
    pub reason: String,
    /// The probes' verdict alone.
    pub probes_up: bool,
    /// `all`, `any` or N; `None` without checks.
    pub require: Option<String>,
    /// Each check, in declaration order.
    pub checks: Vec<CheckStatus>,
    /// Every external verdict held for it.
    pub inputs: Vec<InputStatus>,
    /// False within rise/fall of a change or in slow start (answers get a short TTL).
    pub settled: bool,
    /// Slow-start ramp 0..1: the share of its normal traffic it gets now.
    pub slow_start: f64,
    /// Utilisation 0..1, the mean over the targets with a fresh figure.
    pub load: Option<f64>,
    /// Why a target gave no usable load figure, if one did not.
    pub load_error: Option<String>,
    /// Smoothed probe round-trip time, ms (mean over the up targets).
    pub latency_ms: Option<f64>,
    /// How many of its probed addresses must be up for the datacenter to be up.
    pub min_up: u32,
    /// How many of its probed addresses are up.
    pub addresses_up: u32,
    /// Drain progress, while the admin state is `drain`.
    pub drain: Option<DrainStatus>,
    /// Each probed target of the datacenter.
    pub targets: Vec<TargetStatus>,
}

/// Status of everything the aggregator knows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    /// Generation of the last published health snapshot.
    pub generation: u64,
    /// Every datacenter, in id order.
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
                let load = self.inputs.load(i).or(load);
                let targets = plan
                    .checks
                    .iter()
                    .flat_map(|c| c.slots.iter().map(move |id| (c, *id)))
                    .map(|(c, id)| self.target_status(id, &c.name, now))
                    .collect::<Vec<_>>();
                let checks = plan
                    .checks
                    .iter()
                    .enumerate()
                    .map(|(ci, c)| {
                        let up = d.checks_up.get(ci).copied().unwrap_or(true);
                        CheckStatus {
                            name: c.name.clone(),
                            kind: c.check.kind.type_name(),
                            up,
                            addresses_up: count(
                                c.slots
                                    .iter()
                                    .filter(|t| self.target_up(t.0 as usize))
                                    .count(),
                            ),
                            addresses: count(c.slots.len()),
                            decided: up == d.probes_up,
                        }
                    })
                    .collect();
                let deciding = self
                    .inputs
                    .deciding(i)
                    .map(|e| (e.kind, e.id.clone(), e.address));
                let inputs = self
                    .inputs
                    .of(i)
                    .map(|e| InputStatus {
                        source: e.kind.as_str(),
                        id: e.id.clone(),
                        address: e.address.map(|a| a.0.to_string()),
                        state: if e.up { "up" } else { "down" },
                        load: e.load,
                        reason: e.reason.clone(),
                        expires_in_ms: ms(e.expires.saturating_duration_since(now)),
                        set_ms_ago: ms(now.saturating_duration_since(e.set_at)),
                        deciding: deciding.as_ref().is_some_and(|(k, id, a)| {
                            *k == e.kind && *id == e.id && *a == e.address
                        }),
                    })
                    .collect();
                let reason = match self.inputs.deciding(i) {
                    Some(e) => format!(
                        "{} (expires in {} s)",
                        e.describe(),
                        e.expires.saturating_duration_since(now).as_secs()
                    ),
                    None => {
                        let mut s = self.probes_summary(i);
                        // The first failing address of the one check, or of a failing check
                        // of a datacenter that is down, and its last reason.
                        let failing = plan
                            .checks
                            .iter()
                            .zip(&d.checks_up)
                            .filter(|(_, up)| plan.checks.len() == 1 || (!**up && !d.probes_up))
                            .flat_map(|(c, _)| c.slots.iter())
                            .find(|t| !self.target_up(t.0 as usize));
                        if let Some(id) = failing {
                            let t = &self.targets[id.0 as usize];
                            let why = match self.shared_of(id.0 as usize) {
                                Some(v) => v.reason.clone(),
                                None => t.last.as_ref().map_or_else(
                                    || "not probed yet".to_string(),
                                    |l| l.outcome.to_string(),
                                ),
                            };
                            s.push_str(&format!("; {}: {why}", t.addr));
                        }
                        s
                    }
                };
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
                let probe_bits = self.probe_bits(i);
                DcStatus {
                    id: u32::try_from(i).unwrap_or(u32::MAX),
                    name: plan.name.clone(),
                    healthy: d.healthy,
                    usable: state.usable(),
                    admin: d.admin.as_str(),
                    input: state.decided_by().as_str(),
                    health_input: d.health_input.as_str(),
                    reason,
                    probes_up: d.probes_up,
                    require: plan.has_checks().then(|| plan.require.describe()),
                    checks,
                    inputs,
                    settled: state.settled,
                    slow_start: state.slow_start,
                    load,
                    load_error,
                    latency_ms: state.latency_ms,
                    min_up: count(plan.addresses_needed()),
                    addresses_up: if plan.follows_check_addresses {
                        // Every check probes the same check addresses: count those passing.
                        count(
                            (0..plan.slot_bits.len())
                                .filter(|s| {
                                    plan.checks
                                        .iter()
                                        .filter(|c| self.target_up(c.slots[*s].0 as usize))
                                        .count()
                                        >= plan.needed()
                                })
                                .count(),
                        )
                    } else {
                        probe_bits.count_ones().min(count(plan.slot_bits.len()))
                    },
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

    fn target_status(&self, id: TargetId, check_name: &str, now: Instant) -> TargetStatus {
        let t = &self.targets[id.0 as usize];
        TargetStatus {
            addr: t.addr.to_string(),
            check: t.fingerprint.clone(),
            check_name: check_name.to_string(),
            up: self.target_up(id.0 as usize),
            local_up: t.up,
            shared: self.shared_of(id.0 as usize).map(|v| v.reason.clone()),
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

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
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
                "1 if the datacenter's health is up (an external verdict, else the probes after rise/fall, min-up and require).",
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
        let c = "gslbd_check_up";
        o.header(
            c,
            "1 if the check passes for the datacenter (at least min-up of its addresses).",
            g,
        );
        for d in &h.datacenters {
            for ch in &d.checks {
                let l = [("datacenter", d.name.as_str()), ("check", ch.name.as_str())];
                o.sample(c, &l, u8::from(ch.up));
            }
        }
        let k = "gslbd_check_deciding";
        o.header(
            k,
            "1 if the check's verdict is its datacenter's probe verdict (a failing check of a datacenter down by its probes, a passing one of a datacenter up).",
            g,
        );
        for d in &h.datacenters {
            for ch in &d.checks {
                let l = [("datacenter", d.name.as_str()), ("check", ch.name.as_str())];
                o.sample(k, &l, u8::from(ch.decided));
            }
        }
        let i = "gslbd_datacenter_input";
        o.header(
            i,
            "1 for the input that decides whether the datacenter is usable (admin, pushed, feed, alert, probes, config).",
            g,
        );
        for d in &h.datacenters {
            for input in Input::ALL {
                let l = [("datacenter", d.name.as_str()), ("input", input.as_str())];
                o.sample(i, &l, u8::from(d.input == input.as_str()));
            }
        }
        let x = "gslbd_datacenter_external_verdicts";
        o.header(
            x,
            "External verdicts held for the datacenter, by source and state.",
            g,
        );
        for d in &h.datacenters {
            for src in ["pushed", "feed", "alert"] {
                for st in ["up", "down"] {
                    let n = d
                        .inputs
                        .iter()
                        .filter(|v| v.source == src && v.state == st)
                        .count();
                    let l = [
                        ("datacenter", d.name.as_str()),
                        ("source", src),
                        ("state", st),
                    ];
                    o.sample(x, &l, n);
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
    use crate::metrics::scrape::{parse, value};
    use std::time::{Duration, SystemTime};

    #[test]
    fn health_gauges() {
        use crate::metrics::{Extra, Metrics};
        let target = TargetStatus {
            addr: "10.0.0.1:443".into(),
            check: "https:443::/".into(),
            check_name: "web".into(),
            up: false,
            local_up: false,
            shared: None,
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
            input: "admin",
            health_input: "alert",
            reason: "alert: down, BlackboxProbeFailed firing".into(),
            probes_up: true,
            require: Some("all".into()),
            checks: vec![CheckStatus {
                name: "web".into(),
                kind: "https",
                up: true,
                addresses_up: 1,
                addresses: 1,
                decided: true,
            }],
            inputs: vec![InputStatus {
                source: "alert",
                id: "abc".into(),
                address: None,
                state: "down",
                load: None,
                reason: "BlackboxProbeFailed firing".into(),
                expires_in_ms: 1000,
                set_ms_ago: 5,
                deciding: true,
            }],
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
            feeds: vec![("/run/feed.csv".into(), false, Some(12.0))],
        };
        let text = m.render(&Extra {
            health: Some(&status),
            server: Some(server),
            ..Extra::default()
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
        let c = [("datacenter", "fra"), ("check", "web")];
        assert_eq!(value(&s, "gslbd_check_up", &c), Some(1.0));
        assert_eq!(value(&s, "gslbd_check_deciding", &c), Some(1.0));
        let i = |input| [("datacenter", "fra"), ("input", input)];
        assert_eq!(value(&s, "gslbd_datacenter_input", &i("admin")), Some(1.0));
        assert_eq!(value(&s, "gslbd_datacenter_input", &i("probes")), Some(0.0));
        let x = [
            ("datacenter", "fra"),
            ("source", "alert"),
            ("state", "down"),
        ];
        assert_eq!(
            value(&s, "gslbd_datacenter_external_verdicts", &x),
            Some(1.0)
        );
        assert_eq!(value(&s, "gslbd_health_generation", &[]), Some(7.0));
        assert_eq!(value(&s, "gslbd_config_generation", &[]), Some(3.0));
        assert_eq!(
            value(&s, "gslbd_config_last_reload_successful", &[]),
            Some(0.0)
        );
        assert_eq!(value(&s, "gslbd_start_time_seconds", &[]), Some(100.0));
        assert_eq!(value(&s, "gslbd_zones", &[]), Some(2.0));
        let f = [("file", "/run/feed.csv")];
        assert_eq!(value(&s, "gslbd_health_feed_ok", &f), Some(0.0));
        assert_eq!(value(&s, "gslbd_health_feed_age_seconds", &f), Some(12.0));
        assert_eq!(
            value(&s, "gslbd_notifications_total", &[("result", "dropped")]),
            Some(0.0)
        );
    }
}
