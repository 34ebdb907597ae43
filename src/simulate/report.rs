//! What a run found: per GSLB name and datacenter the share of client queries over time,
//! and the summary an operator reads (detection and drain per incident, queries sent to
//! datacenters that were down, flips per client, peak load against capacity, clients sent to
//! another region). Text for people, JSON for tools, CSV for spreadsheets; the charts are in
//! `chart.rs` and the `--check` metrics in `check.rs`.

use std::fmt::{self, Write};

use serde::Serialize;

use super::scenario::trim_float;

/// The report of one run. Times are seconds of scenario time (0 = the end of the warm-up).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The scenario file.
    pub scenario: String,
    /// The zones directory.
    pub zones: String,
    /// The seed.
    pub seed: u64,
    /// Scenario length, seconds.
    pub duration_s: f64,
    /// Simulated time before scenario time 0, seconds.
    pub warmup_s: f64,
    /// Width of the series buckets, seconds.
    pub step_s: f64,
    /// Client subnets.
    pub clients: usize,
    /// Resolvers.
    pub resolvers: usize,
    /// Client streams (client subnet x name x query type).
    pub streams: usize,
    /// Client queries in the scenario window (expected value of the Poisson model).
    pub client_queries: f64,
    /// Queries that reached gslbd (resolver cache misses) in the scenario window.
    pub decisions: u64,
    /// Snapshot publications of the aggregator in the scenario window.
    pub publications: u64,
    /// Per GSLB name asked.
    pub names: Vec<NameReport>,
    /// Per datacenter.
    pub datacenters: Vec<DcReport>,
    /// Each failure, drain or admin down of the scenario.
    pub incidents: Vec<Incident>,
    /// Scenario events and what gslbd saw, in time order.
    pub events: Vec<Mark>,
    /// The `--check` conditions and whether they held (filled in by the caller).
    pub checks: Vec<super::CheckOutcome>,
    /// The series (CSV and charts).
    #[serde(skip)]
    pub(crate) series: Series,
}

/// One GSLB name.
#[derive(Clone, Debug, Serialize)]
pub struct NameReport {
    /// The name (`app.lb.example.com.`).
    pub name: String,
    /// Client streams asking it.
    pub clients: usize,
    /// Client queries for it.
    pub queries: f64,
    /// Where its queries went, largest first.
    pub shares: Vec<Share>,
    /// Queries answered with an address that was down.
    pub queries_to_down: f64,
    /// Answer changes per client stream.
    pub flips_per_client: f64,
    /// Answer changes while the previous datacenter was still usable, per client stream.
    pub flaps_per_client: f64,
    /// The most answer changes of one client stream.
    pub max_flips: u32,
    /// Client streams sent at some point to another continent than their first answer's.
    pub region_changes: usize,
}

/// The share of a name's queries that went to one target.
#[derive(Clone, Debug, Serialize)]
pub struct Share {
    /// A datacenter, or `(last-resort)`, `(nodata)`, `(servfail)`.
    pub target: String,
    /// Client queries.
    pub queries: f64,
    /// Of the name's queries.
    pub share: f64,
}

/// One datacenter.
#[derive(Clone, Debug, Serialize)]
pub struct DcReport {
    /// Its name.
    pub name: String,
    /// Client queries per second at utilisation 1.
    pub capacity: f64,
    /// Highest utilisation of a bucket (background + traffic / capacity).
    pub peak_load: f64,
    /// When, seconds.
    pub peak_at_s: f64,
    /// Mean utilisation.
    pub mean_load: f64,
    /// Client queries answered with it.
    pub queries: f64,
    /// Of which while it (or the address answered) was down.
    pub queries_to_down: f64,
    /// Continent, for region changes.
    pub region: Option<String>,
}

/// A failure, drain or admin down, and how gslbd and the caches dealt with it.
#[derive(Clone, Debug, Serialize)]
pub struct Incident {
    /// `down`, `address down`, `check down`, `pushed down`, `drain` or `admin down`.
    pub kind: String,
    /// The datacenter.
    pub datacenter: String,
    /// The address, for `address down`.
    pub address: Option<String>,
    /// The check, for `check down`.
    pub check: Option<String>,
    /// When it started, seconds.
    pub start_s: f64,
    /// When it ended (`None`: at the end of the run).
    pub end_s: Option<f64>,
    /// From a `flap` event (index of the period).
    pub flap: Option<usize>,
    /// When gslbd's published health first showed it, seconds after the start.
    pub detected_after_s: Option<f64>,
    /// When gslbd's health showed the recovery, seconds after the end.
    pub recovered_after_s: Option<f64>,
    /// The last client query answered with it during the incident, seconds after the start
    /// (resolver caches included); `None`: no query was.
    pub last_sent_after_s: Option<f64>,
    /// False when clients were still sent there when it ended (or the run did).
    pub drained: bool,
    /// Client queries answered with it during the incident.
    pub queries_sent: f64,
    /// Why gslbd could not see it, if so.
    pub note: Option<String>,
}

/// A point on the time line: a scenario event or a change gslbd published.
#[derive(Clone, Debug, Serialize)]
pub struct Mark {
    /// Seconds.
    pub at_s: f64,
    /// `scenario` or `gslbd`.
    pub source: &'static str,
    /// What happened.
    pub label: String,
    /// The datacenter it concerns.
    pub datacenter: Option<String>,
}

/// The time series behind the CSV files and the charts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Series {
    /// Start of each bucket, seconds.
    pub(crate) times: Vec<f64>,
    /// Width of each bucket, seconds.
    pub(crate) widths: Vec<f64>,
    /// Target names (datacenters, then the special targets).
    pub(crate) targets: Vec<String>,
    /// Per name: (target index, client queries per bucket), for targets that got any.
    pub(crate) queries: Vec<Vec<(usize, Vec<f64>)>>,
    /// Per datacenter (target index): utilisation per bucket.
    pub(crate) load: Vec<Vec<f64>>,
}

fn pct(x: f64) -> String {
    if x == 0.0 {
        "0 %".into()
    } else if x < 0.001 {
        format!("{:.3} %", x * 100.0)
    } else {
        format!("{} %", trim_float(x * 100.0, 1))
    }
}

fn count(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seconds as the summary prints them.
pub(crate) fn time(s: f64) -> String {
    if s.abs() < 60.0 {
        return format!("{}s", trim_float(s, 1));
    }
    let total = s.round() as i64;
    let (h, m, sec) = (total / 3600, (total / 60) % 60, total % 60);
    let mut o = String::new();
    if h > 0 {
        let _ = write!(o, "{h}h");
    }
    if m > 0 || h > 0 {
        let _ = write!(o, "{m}m");
    }
    if sec > 0 {
        let _ = write!(o, "{sec}s");
    }
    o
}

impl Report {
    /// The report as JSON (without the series).
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// `time_s,name,target,queries,share`: every bucket of every name.
    pub fn shares_csv(&self) -> String {
        let mut s = String::from("time_s,name,target,queries,share\n");
        for (g, per) in self.series.queries.iter().enumerate() {
            let name = &self.names[g].name;
            for (k, t) in self.series.times.iter().enumerate() {
                let total: f64 = per.iter().map(|(_, v)| v[k]).sum();
                for (x, v) in per {
                    let share = if total > 0.0 { v[k] / total } else { 0.0 };
                    let _ = writeln!(
                        s,
                        "{},{},{},{},{}",
                        trim_float(*t, 3),
                        name,
                        self.series.targets[*x],
                        trim_float(v[k], 3),
                        trim_float(share, 6)
                    );
                }
            }
        }
        s
    }

    /// `time_s,datacenter,queries_per_s,utilisation`: every bucket of every datacenter.
    pub fn load_csv(&self) -> String {
        let mut s = String::from("time_s,datacenter,queries_per_s,utilisation\n");
        for (d, dc) in self.datacenters.iter().enumerate() {
            for (k, t) in self.series.times.iter().enumerate() {
                let q: f64 = self
                    .series
                    .queries
                    .iter()
                    .flat_map(|per| per.iter().filter(|(x, _)| *x == d).map(|(_, v)| v[k]))
                    .sum::<f64>()
                    / self.series.widths[k].max(1e-9);
                let _ = writeln!(
                    s,
                    "{},{},{},{}",
                    trim_float(*t, 3),
                    dc.name,
                    trim_float(q, 3),
                    trim_float(self.series.load[d][k], 4)
                );
            }
        }
        s
    }

    /// The report of `name` (with or without the final dot).
    pub fn name(&self, name: &str) -> Option<&NameReport> {
        self.name_index(name).map(|g| &self.names[g])
    }

    fn name_index(&self, name: &str) -> Option<usize> {
        let want = name.trim_end_matches('.');
        self.names
            .iter()
            .position(|n| n.name.trim_end_matches('.').eq_ignore_ascii_case(want))
    }

    /// The report of datacenter `name`.
    pub fn datacenter(&self, name: &str) -> Option<&DcReport> {
        self.datacenters.iter().find(|d| d.name == name)
    }

    /// Share of `name`'s queries per bucket that went to `target` (time, share).
    pub fn share_series(&self, name: &str, target: &str) -> Vec<(f64, f64)> {
        let Some(g) = self.name_index(name) else {
            return Vec::new();
        };
        let per = &self.series.queries[g];
        let x = self.series.targets.iter().position(|t| t == target);
        self.series
            .times
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let total: f64 = per.iter().map(|(_, v)| v[k]).sum();
                let mine: f64 = per
                    .iter()
                    .filter(|(i, _)| Some(*i) == x)
                    .map(|(_, v)| v[k])
                    .sum();
                (*t, if total > 0.0 { mine / total } else { 0.0 })
            })
            .collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "gslbd simulate: {} on {} (seed {})",
            self.scenario, self.zones, self.seed
        );
        let _ = writeln!(
            s,
            "run: {} after {} of warm-up, steps of {}; {} client subnets behind {} resolvers, {} streams",
            time(self.duration_s),
            time(self.warmup_s),
            time(self.step_s),
            count(self.clients as f64),
            count(self.resolvers as f64),
            count(self.streams as f64),
        );
        let _ = writeln!(
            s,
            "     {} client queries, {} reached gslbd ({} of them), {} health publications",
            count(self.client_queries),
            count(self.decisions as f64),
            pct(if self.client_queries > 0.0 {
                self.decisions as f64 / self.client_queries
            } else {
                0.0
            }),
            count(self.publications as f64),
        );
        let _ = writeln!(s);
        if !self.incidents.is_empty() {
            let _ = writeln!(s, "incidents (times after the start of each):");
            let mut i = 0;
            while i < self.incidents.len() {
                let inc = &self.incidents[i];
                if inc.flap.is_some() {
                    // A flap: one line for all its periods.
                    let mut j = i;
                    while j < self.incidents.len()
                        && self.incidents[j].flap.is_some()
                        && self.incidents[j].datacenter == inc.datacenter
                        && self.incidents[j].address == inc.address
                        && (j == i || self.incidents[j].flap > self.incidents[j - 1].flap)
                    {
                        j += 1;
                    }
                    let group = &self.incidents[i..j];
                    let detected = group
                        .iter()
                        .filter(|x| x.detected_after_s.is_some())
                        .count();
                    let worst = group
                        .iter()
                        .filter_map(|x| x.last_sent_after_s)
                        .fold(0.0, f64::max);
                    let sent: f64 = group.iter().map(|x| x.queries_sent).sum();
                    let _ = writeln!(
                        s,
                        "  {} flapping from {}: {} down periods, {} seen by gslbd; clients sent there up to {} into a period; {} queries sent while down",
                        subject(inc),
                        time(inc.start_s),
                        group.len(),
                        detected,
                        time(worst),
                        count(sent)
                    );
                    i = j;
                    continue;
                }
                let span = match inc.end_s {
                    Some(e) => format!("{} -> {}", time(inc.start_s), time(e)),
                    None => format!("from {}", time(inc.start_s)),
                };
                let _ = write!(s, "  {} {} {}: ", subject(inc), inc.kind, span);
                let mut parts = Vec::new();
                match (inc.detected_after_s, &inc.note) {
                    (_, Some(n)) => parts.push(n.clone()),
                    (Some(d), None) if is_failure(&inc.kind) => {
                        parts.push(format!("detected after {}", time(d)))
                    }
                    (Some(_), None) => {}
                    (None, None) => parts.push("not detected while it lasted".into()),
                }
                match inc.last_sent_after_s {
                    Some(l) if inc.drained => {
                        parts.push(format!("last client sent there after {}", time(l)))
                    }
                    Some(_) => parts.push(if inc.end_s.is_some() {
                        "clients still sent there when it ended".into()
                    } else {
                        "clients still sent there at the end of the run".into()
                    }),
                    None => parts.push("no client sent there".into()),
                }
                parts.push(format!(
                    "{} queries sent there meanwhile",
                    count(inc.queries_sent)
                ));
                if let Some(r) = inc.recovered_after_s
                    && is_failure(&inc.kind)
                {
                    parts.push(format!("back in answers {} after it recovered", time(r)));
                }
                let _ = writeln!(s, "{}", parts.join("; "));
                i += 1;
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "{:<12} {:>10} {:>10} {:>9} {:>9} {:>14} {:>12}",
            "datacenter", "capacity", "peak load", "at", "mean", "queries", "to down"
        );
        for d in &self.datacenters {
            let _ = writeln!(
                s,
                "{:<12} {:>10} {:>10} {:>9} {:>9} {:>14} {:>12}",
                d.name,
                count(d.capacity),
                pct(d.peak_load),
                time(d.peak_at_s),
                pct(d.mean_load),
                count(d.queries),
                count(d.queries_to_down),
            );
        }
        let _ = writeln!(s);
        for n in &self.names {
            let shares: Vec<String> = n
                .shares
                .iter()
                .map(|x| format!("{} {}", x.target, pct(x.share)))
                .collect();
            let _ = writeln!(
                s,
                "{}: {} queries from {} client streams: {}",
                n.name,
                count(n.queries),
                count(n.clients as f64),
                shares.join(", ")
            );
            let _ = writeln!(
                s,
                "  {} flips per client ({} while the old answer was usable: flaps), at most {}; {} sent to a down address; {} clients changed region",
                trim_float(n.flips_per_client, 3),
                trim_float(n.flaps_per_client, 3),
                n.max_flips,
                count(n.queries_to_down),
                count(n.region_changes as f64)
            );
        }
        if !self.checks.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "checks:");
            for c in &self.checks {
                let _ = writeln!(s, "  {c}");
            }
        }
        f.write_str(&s)
    }
}

fn subject(inc: &Incident) -> String {
    match (&inc.address, &inc.check) {
        (Some(a), _) => format!("{} {}", inc.datacenter, a),
        (None, Some(c)) => format!("{} ({c})", inc.datacenter),
        (None, None) => inc.datacenter.clone(),
    }
}

/// A failure of the datacenter (as opposed to an operator's action or a pushed verdict): what
/// gslbd must detect through its probes.
pub(crate) fn is_failure(kind: &str) -> bool {
    matches!(kind, "down" | "address down" | "check down")
}
