//! What `/status` adds for people: each datacenter's state in one word and the input that
//! decided it, where it is on the map, the GSLB names with their share of answers over the
//! last minute, recent state changes, and the hostname targets (datacenters that are names,
//! ALIAS records) with their current addresses, age and staleness.
//!
//! ```text
//!  ApiBackend::topology (model: locations, addresses, pools) --+
//!  ApiBackend::datacenter_status (aggregator Status) ----------+--> classify --> /status JSON
//!  Metrics::gslb_totals --sample every 5 s--> DecisionWindow --+--> shares over the last 60 s
//! ```
//!
//! The answer shares come from the decision counters the query path already keeps: a task
//! samples their totals every few seconds into a short ring, and a request subtracts the
//! sample taken about a minute earlier (or the oldest one, just after start). Nothing here
//! touches the query path beyond reading those counters.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::health::aggregator::DcStatus;
use crate::metrics::{F, Gauges, GslbTotals, Text};
use crate::model::{Lookup, Model, Resolutions};
use crate::policy::trace::TargetTrace;

/// The window the answer shares cover.
pub(crate) const SHARE_WINDOW: Duration = Duration::from_secs(60);
/// How often the decision counters are sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The configuration facts the status page needs that the aggregator does not have.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Topology {
    /// Every datacenter, in id order.
    pub(crate) datacenters: Vec<DcInfo>,
    /// Every GSLB name of every zone.
    pub(crate) names: Vec<NameInfo>,
    /// Every hostname target and what it resolves to now.
    pub(crate) hostnames: Vec<HostnameStatus>,
}

/// A hostname target in `/status` (and the resolver's `/metrics` gauges).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct HostnameStatus {
    /// The target and what it resolves to.
    #[serde(flatten)]
    pub(crate) target: TargetTrace,
    /// `local` (answered from our zones), `gslb` (a GSLB name of ours, CNAME only) or
    /// `resolved` (asked upstream).
    pub(crate) lookup: &'static str,
    /// Seconds of the upstream TTL left (fresh resolved targets).
    pub(crate) ttl_left_secs: Option<u64>,
    /// Lookups answered (negative answers included) since the server started.
    pub(crate) lookups_ok: u64,
    /// Lookups that failed.
    pub(crate) lookups_failed: u64,
    /// Datacenters (`datacenter fra`) and ALIAS owners (`alias example.com.`) using it.
    pub(crate) used_by: Vec<String>,
}

impl Gauges for Vec<HostnameStatus> {
    fn render(&self, o: &mut Text) {
        let resolved: Vec<&HostnameStatus> =
            self.iter().filter(|h| h.lookup == "resolved").collect();
        let gauges: [(&str, &str); 4] = [
            (
                "gslbd_hostname_usable",
                "1 if the hostname target has addresses that may be answered (fresh or stale).",
            ),
            (
                "gslbd_hostname_stale",
                "1 if the hostname target's addresses are served past their TTL (RFC 8767).",
            ),
            (
                "gslbd_hostname_addresses",
                "Addresses the hostname target resolves to now.",
            ),
            (
                "gslbd_hostname_age_seconds",
                "Seconds since the hostname target's addresses were last confirmed upstream.",
            ),
        ];
        for (i, (name, help)) in gauges.iter().enumerate() {
            o.header(name, help, "gauge");
            for h in &resolved {
                let l = [("hostname", h.target.resolves.as_str())];
                match i {
                    0 => o.sample(
                        name,
                        &l,
                        u8::from(matches!(h.target.state, "fresh" | "stale")),
                    ),
                    1 => o.sample(name, &l, u8::from(h.target.stale)),
                    2 => o.sample(name, &l, h.target.addresses.len()),
                    _ => {
                        if let Some(a) = h.target.age_secs {
                            o.sample(name, &l, F(a as f64));
                        }
                    }
                }
            }
        }
        let name = "gslbd_hostname_lookups_total";
        o.header(
            name,
            "Background lookups of hostname targets, by result (ok: an answer, negative included).",
            "counter",
        );
        for h in &resolved {
            let host = h.target.resolves.as_str();
            o.sample(name, &[("hostname", host), ("result", "ok")], h.lookups_ok);
            o.sample(
                name,
                &[("hostname", host), ("result", "error")],
                h.lookups_failed,
            );
        }
    }
}

/// One datacenter as configured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct DcInfo {
    /// The datacenter name.
    pub(crate) name: String,
    /// `(lat, lon)`: the configured location, or the centroid of its geo code's country.
    pub(crate) location: Option<(f64, f64)>,
    /// Its answer addresses.
    pub(crate) addresses: Vec<String>,
    /// The check's interval; `None` without a check.
    pub(crate) check_interval_ms: Option<u64>,
    /// A hostname datacenter's target and what it resolves to now (`addresses` are those).
    pub(crate) target: Option<TargetTrace>,
}

/// One GSLB name as configured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct NameInfo {
    /// Fully qualified, as in the metrics labels.
    pub(crate) name: String,
    /// The origin of its zone.
    pub(crate) zone: String,
    /// The name's TTL, seconds.
    pub(crate) ttl: u32,
    /// Its pools, in declaration order.
    pub(crate) pools: Vec<PoolInfo>,
}

/// One pool of a GSLB name.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct PoolInfo {
    /// The pool name.
    pub(crate) name: String,
    /// The policy name (`failover`, `nearest`, ...).
    pub(crate) policy: &'static str,
    /// Its member datacenters, in pool order.
    pub(crate) datacenters: Vec<String>,
    /// The pool used when none of its members is usable.
    pub(crate) fallback: Option<String>,
}

impl Topology {
    /// The datacenters, GSLB names and hostname targets of `model`, in model order, with the
    /// targets as `res` (the published resolutions of the same model) has them.
    pub(crate) fn of(model: &Model, res: Option<&Resolutions>) -> Topology {
        let list = &model.datacenters.list;
        let dc_name = |id: u32| list.get(id as usize).map_or("?", |d| &*d.name).to_string();
        let target = |h: crate::model::HostnameId| {
            model
                .hostnames
                .get(h.0 as usize)
                .map(|host| TargetTrace::of(host, res.and_then(|r| r.get(h))))
        };
        let datacenters = list
            .iter()
            .enumerate()
            .map(|(i, d)| DcInfo {
                name: d.name.to_string(),
                location: d.coords,
                target: d.target.and_then(target),
                addresses: match d.target.and_then(target) {
                    Some(t) => t.addresses,
                    None => {
                        d.v4.iter()
                            .map(ToString::to_string)
                            .chain(d.v6.iter().map(ToString::to_string))
                            .collect()
                    }
                },
                check_interval_ms: model
                    .datacenters
                    .probes
                    .get(i)
                    .and_then(|p| p.checks.iter().map(|c| c.spec.interval).max())
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            })
            .collect();
        let names = model
            .gslb
            .iter()
            .map(|g| NameInfo {
                name: g.owner.to_string(),
                zone: model
                    .zones
                    .get(g.zone as usize)
                    .map(|z| z.origin.to_string())
                    .unwrap_or_default(),
                ttl: g.def.ttl,
                pools: g
                    .def
                    .pools
                    .iter()
                    .map(|p| PoolInfo {
                        name: p.name.to_string(),
                        policy: p.policy.name(),
                        datacenters: p.members.iter().map(|m| dc_name(m.dc.0)).collect(),
                        fallback: p
                            .fallback
                            .and_then(|f| g.def.pools.get(f.0 as usize))
                            .map(|f| f.name.to_string()),
                    })
                    .collect(),
            })
            .collect();
        let now = tokio::time::Instant::now();
        // Who uses each hostname: datacenters, and ALIAS owners (one walk over the zones).
        let mut users: Vec<Vec<String>> = vec![Vec::new(); model.hostnames.len()];
        for d in list {
            if let Some(u) = d.target.and_then(|h| users.get_mut(h.0 as usize)) {
                u.push(format!("datacenter {}", d.name));
            }
        }
        if !model.hostnames.is_empty() {
            for z in &model.zones {
                for (k, n) in &z.nodes {
                    let Some(a) = n.alias else { continue };
                    let mut d = hickory_proto::serialize::binary::BinDecoder::new(k);
                    let owner = <hickory_proto::rr::Name as hickory_proto::serialize::binary::BinDecodable>::read(&mut d)
                        .map(|n| crate::resolve::key_of(&n))
                        .unwrap_or_default();
                    if let Some(u) = users.get_mut(a.target.0 as usize) {
                        u.push(format!("alias {owner}"));
                    }
                }
            }
        }
        let hostnames = model
            .hostnames
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let id = crate::model::HostnameId(i as u32);
                let e = res.and_then(|r| r.get(id));
                let mut used_by = std::mem::take(&mut users[i]);
                used_by.sort();
                HostnameStatus {
                    target: TargetTrace::of(h, e),
                    lookup: match h.lookup {
                        Lookup::Local { .. } => "local",
                        Lookup::Gslb(_) => "gslb",
                        Lookup::Remote(_) => "resolved",
                    },
                    ttl_left_secs: e.and_then(|e| {
                        (e.state == crate::resolve::State::Fresh)
                            .then(|| {
                                e.expires
                                    .map(|x| x.saturating_duration_since(now).as_secs())
                            })
                            .flatten()
                    }),
                    lookups_ok: e.map_or(0, |e| e.lookups_ok),
                    lookups_failed: e.map_or(0, |e| e.lookups_failed),
                    used_by,
                }
            })
            .collect();
        Topology {
            datacenters,
            names,
            hostnames,
        }
    }
}

/// Recent samples of the decision counters (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct DecisionWindow {
    samples: Mutex<VecDeque<(Instant, GslbTotals)>>,
}

impl DecisionWindow {
    /// Records the totals as of `now`, forgetting samples no longer needed: one sample older
    /// than [`SHARE_WINDOW`] is kept as the baseline.
    pub(crate) fn sample(&self, totals: GslbTotals, now: Instant) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        s.push_back((now, totals));
        while s
            .get(1)
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= SHARE_WINDOW)
        {
            s.pop_front();
        }
    }

    /// The baseline for a window ending `now`: the newest sample at least [`SHARE_WINDOW`]
    /// old, else the oldest there is; with the window's length. `None` before any sample.
    pub(crate) fn baseline(&self, now: Instant) -> Option<(GslbTotals, Duration)> {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let pick = s
            .iter()
            .rev()
            .find(|(at, _)| now.saturating_duration_since(*at) >= SHARE_WINDOW)
            .or_else(|| s.front())?;
        Some((pick.1.clone(), now.saturating_duration_since(pick.0)))
    }
}

/// The answer shares of every configured name between `base` and `now_totals`.
pub(crate) fn names(topo: &Topology, now_totals: &GslbTotals, base: &GslbTotals) -> Vec<Value> {
    topo.names
        .iter()
        .map(|n| {
            let mut dcs: Vec<&str> = Vec::new();
            for p in &n.pools {
                for d in &p.datacenters {
                    if !dcs.contains(&d.as_str()) {
                        dcs.push(d);
                    }
                }
            }
            let delta = |dc: &str| {
                let k = (n.name.clone(), dc.to_string());
                let now = now_totals.decisions.get(&k).copied().unwrap_or(0);
                now.saturating_sub(base.decisions.get(&k).copied().unwrap_or(0))
            };
            let counts: Vec<(&str, u64)> = dcs.iter().map(|d| (*d, delta(d))).collect();
            let total: u64 = counts.iter().map(|c| c.1).sum();
            let all_down = now_totals
                .all_down
                .get(&n.name)
                .copied()
                .unwrap_or(0)
                .saturating_sub(base.all_down.get(&n.name).copied().unwrap_or(0));
            let share: Vec<Value> = counts
                .iter()
                .map(|(dc, c)| {
                    json!({
                        "datacenter": dc,
                        "answers": c,
                        "share": if total == 0 { 0.0 } else { *c as f64 / total as f64 },
                    })
                })
                .collect();
            json!({
                "name": n.name,
                "zone": n.zone,
                "ttl": n.ttl,
                "pools": n.pools,
                "answers": total,
                "all_down_answers": all_down,
                "share": share,
            })
        })
        .collect()
}

/// A datacenter's state in one word, and the input that decided it.
///
/// `up`, `down` (probes or an external verdict), `drain`, `admin-down`, `forced-up` (admin
/// `up`), `slow-start` (recovering, not yet at full share), `stale` (the probes' verdict rests
/// on an assumption or on an old probe result). The text starts with the deciding input:
/// `admin: ...`, `pushed: ...`, `feed: ...`, `alert: ...`, `probes: ...`.
pub(crate) fn classify(d: &DcStatus, info: Option<&DcInfo>) -> (&'static str, String) {
    match d.admin {
        "drain" => {
            let text = match &d.drain {
                Some(dr) if dr.complete => {
                    "admin: drain, complete (every answer naming it has expired)".to_string()
                }
                Some(dr) => {
                    let left = (dr.max_ttl_secs * 1000).saturating_sub(dr.started_ms_ago);
                    format!(
                        "admin: drain, the last answers naming it expire in {} s",
                        left.div_ceil(1000)
                    )
                }
                None => "admin: drain".to_string(),
            };
            return ("drain", text);
        }
        "down" => return ("admin-down", format!("admin: down ({})", d.reason)),
        "up" => return ("forced-up", format!("admin: up ({})", d.reason)),
        _ => {}
    }
    let slow_start = || {
        (
            "slow-start",
            format!(
                "slow start: {:.0}% of its traffic ({})",
                d.slow_start * 100.0,
                d.reason
            ),
        )
    };
    match d.health_input {
        "probes" => {}
        "config" => return ("up", d.reason.clone()),
        // An external verdict (pushed, feed, alert).
        _ => {
            if !d.healthy {
                return ("down", d.reason.clone());
            }
            if d.slow_start < 1.0 {
                return slow_start();
            }
            return ("up", d.reason.clone());
        }
    }
    if !d.healthy {
        return ("down", d.reason.clone());
    }
    if let Some(t) = d.targets.iter().find(|t| !t.probed) {
        let why = if t.warm {
            "saved state from before the restart"
        } else {
            "assumed at start"
        };
        return ("stale", format!("{}: not probed yet, {why}", t.addr));
    }
    let limit = info
        .and_then(|i| i.check_interval_ms)
        .map(|ms| ms.saturating_mul(3).saturating_add(1000));
    if let Some(limit) = limit
        && let Some(t) = d
            .targets
            .iter()
            .find(|t| t.last_ms_ago.is_some_and(|a| a > limit))
    {
        let ago = t.last_ms_ago.unwrap_or(0) / 1000;
        return (
            "stale",
            format!("{}: last probe result {ago} s ago (overdue)", t.addr),
        );
    }
    if d.slow_start < 1.0 {
        return slow_start();
    }
    ("up", d.reason.clone())
}

/// A datacenter of `/status`: the aggregator's status plus state, deciding input, location
/// and answer addresses.
pub(crate) fn datacenter(d: &DcStatus, info: Option<&DcInfo>) -> Value {
    let (state, deciding) = classify(d, info);
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.insert("state".into(), state.into());
        o.insert("deciding".into(), deciding.into());
        o.insert(
            "location".into(),
            info.and_then(|i| i.location)
                .map_or(Value::Null, |(lat, lon)| json!({ "lat": lat, "lon": lon })),
        );
        o.insert(
            "addresses".into(),
            info.map_or(Value::Null, |i| json!(i.addresses)),
        );
        if let Some(t) = info.and_then(|i| i.target.as_ref()) {
            o.insert("target".into(), json!(t));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::aggregator::{DrainStatus, TargetStatus};

    fn target(up: bool, probed: bool, reason: &str, ago: u64) -> TargetStatus {
        TargetStatus {
            addr: "127.0.0.1:80".into(),
            check: "http:80::/health".into(),
            check_name: "web".into(),
            up,
            local_up: up,
            shared: None,
            probed,
            warm: false,
            consecutive_passes: 0,
            consecutive_fails: 0,
            probes: 1,
            last_result: None,
            last_reason: Some(reason.into()),
            last_ms_ago: Some(ago),
            last_latency_ms: None,
            latency_ms: None,
            load: None,
            load_age_ms: None,
            load_error: None,
        }
    }

    fn dc(admin: &'static str, healthy: bool, targets: Vec<TargetStatus>) -> DcStatus {
        let reason = if targets.is_empty() {
            "no health check: always up".to_string()
        } else {
            let up = targets.iter().filter(|t| t.up).count();
            let mut s = format!("probes: {up} of {} addresses up (1 needed)", targets.len());
            if let Some(t) = targets.iter().find(|t| !t.up) {
                s.push_str(&format!(
                    "; {}: {}",
                    t.addr,
                    t.last_reason.clone().unwrap_or_default()
                ));
            }
            s
        };
        DcStatus {
            id: 0,
            name: "fra".into(),
            healthy,
            usable: healthy,
            admin,
            input: if admin == "obey" { "probes" } else { "admin" },
            health_input: if targets.is_empty() {
                "config"
            } else {
                "probes"
            },
            reason,
            probes_up: healthy,
            require: None,
            checks: vec![],
            inputs: vec![],
            settled: true,
            slow_start: 1.0,
            load: None,
            load_error: None,
            latency_ms: None,
            min_up: 1,
            addresses_up: 0,
            drain: None,
            targets,
        }
    }

    fn info(interval_ms: u64) -> DcInfo {
        DcInfo {
            name: "fra".into(),
            location: None,
            addresses: vec![],
            check_interval_ms: Some(interval_ms),
            target: None,
        }
    }

    #[test]
    fn states_and_deciding_inputs() {
        let i = info(1000);
        let c = |d: &DcStatus| classify(d, Some(&i));
        assert_eq!(c(&dc("obey", true, vec![])).0, "up");
        let down = dc("obey", false, vec![target(false, true, "status 503", 10)]);
        assert_eq!(
            c(&down),
            (
                "down",
                "probes: 0 of 1 addresses up (1 needed); 127.0.0.1:80: status 503".to_string()
            )
        );
        assert_eq!(c(&dc("down", true, vec![])).0, "admin-down");
        assert_eq!(c(&dc("up", false, vec![])).0, "forced-up");
        let mut pushed = dc("obey", false, vec![target(true, true, "pass", 10)]);
        pushed.health_input = "pushed";
        pushed.reason = "pushed: down, maintenance (expires in 42 s)".into();
        assert_eq!(
            c(&pushed),
            (
                "down",
                "pushed: down, maintenance (expires in 42 s)".to_string()
            )
        );
        let up = dc("obey", true, vec![target(true, true, "pass", 10)]);
        assert_eq!(c(&up).0, "up");
        let assumed = dc("obey", true, vec![target(true, false, "pass", 10)]);
        assert_eq!(c(&assumed).0, "stale");
        let overdue = dc("obey", true, vec![target(true, true, "pass", 4001)]);
        assert_eq!(c(&overdue).0, "stale");
        let mut ramp = up.clone();
        ramp.slow_start = 0.25;
        assert!(c(&ramp).1.starts_with("slow start: 25%"));
        let mut drain = dc("drain", true, vec![]);
        drain.drain = Some(DrainStatus {
            started_unix: 0,
            started_ms_ago: 10_500,
            max_ttl_secs: 30,
            complete: false,
            complete_unix: 30,
        });
        assert_eq!(
            c(&drain),
            (
                "drain",
                "admin: drain, the last answers naming it expire in 20 s".to_string()
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn window_keeps_one_baseline_older_than_a_minute() {
        let w = DecisionWindow::default();
        let t0 = Instant::now();
        assert!(w.baseline(t0).is_none());
        let totals = |n: u64| {
            let mut t = GslbTotals::default();
            t.decisions.insert(("a.".into(), "fra".into()), n);
            t
        };
        for i in 0..20u64 {
            w.sample(totals(i * 10), t0 + SAMPLE_EVERY * i as u32);
        }
        // Now = t0 + 95 s: the baseline is the sample at 35 s (the newest >= 60 s old).
        let now = t0 + SAMPLE_EVERY * 19;
        let (base, len) = w.baseline(now).expect("baseline");
        assert_eq!(len, Duration::from_secs(60));
        assert_eq!(base.decisions.values().next(), Some(&70));
        assert_eq!(w.samples.lock().map(|s| s.len()).unwrap_or(0), 13);
    }
}
