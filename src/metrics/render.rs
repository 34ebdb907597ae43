//! Rendering the registry in the Prometheus text exposition format 0.0.4.

use std::fmt::{Display, Write as _};
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use super::Metrics;
use super::registry::lock;
use super::slots::{
    ECS_BUCKETS_V4, ECS_BUCKETS_V6, ECS_ROW, HOT_ACCEPT, HOT_CLOSED, HOT_COOKIE, HOT_DUR,
    HOT_DUR_SUM_NS, HOT_ECS, HOT_RRL, HOT_RRL_EXEMPT, HOT_STALE, N_TRANSPORTS, PROBE_BUCKETS_MS,
    QUERY_BUCKETS_US, RCODES, qtype_labels,
};
use crate::abuse::{CloseReason, CookieResult, Listener, RrlAction, RrlClass, RrlExempt};
use crate::net::Transport;

impl Metrics {
    /// The whole registry plus the gauges in `extra`, in the Prometheus text format 0.0.4.
    pub(crate) fn render(&self, extra: &Extra<'_>) -> String {
        let mut o = Text::default();
        self.render_queries(&mut o);
        self.render_gslb(&mut o);
        self.render_probes(&mut o);
        o.header(
            "gslbd_snapshot_publications_total",
            "Health snapshots published.",
            "counter",
        );
        o.sample(
            "gslbd_snapshot_publications_total",
            &[],
            self.snapshots.load(Relaxed),
        );
        o.header(
            "gslbd_stale_answers_total",
            "Answers that carried a hostname target's addresses past their TTL, while its upstream failed (RFC 8767 serve-stale).",
            "counter",
        );
        o.sample("gslbd_stale_answers_total", &[], self.hot.sum(0, HOT_STALE));
        o.header(
            "gslbd_reloads_total",
            "Configuration reloads by result.",
            "counter",
        );
        o.sample(
            "gslbd_reloads_total",
            &[("result", "ok")],
            self.reload_ok.load(Relaxed),
        );
        o.sample(
            "gslbd_reloads_total",
            &[("result", "error")],
            self.reload_err.load(Relaxed),
        );
        let n = "gslbd_notifications_total";
        o.header(
            n,
            "Webhook notifications of health events by result (sent, retried, dropped).",
            "counter",
        );
        for (i, r) in super::NOTIFICATION_RESULTS.iter().enumerate() {
            o.sample(n, &[("result", r)], self.notifications[i].load(Relaxed));
        }
        self.render_abuse(&mut o);
        self.render_encrypted(&mut o);
        if let Some(s) = &extra.server {
            render_server(&mut o, s);
        }
        if let Some(h) = extra.health {
            h.render(&mut o);
        }
        if let Some(d) = extra.dnssec {
            d.render(&mut o);
        }
        if let Some(c) = extra.cluster {
            c.render(&mut o);
        }
        if let Some(r) = extra.resolver {
            r.render(&mut o);
        }
        if let Some(x) = extra.xdp {
            x.render(&mut o);
        }
        o.s
    }

    fn render_abuse(&self, o: &mut Text) {
        let n = "gslbd_rrl_limited_total";
        o.header(
            n,
            "UDP responses over their rate-limit bucket, by response class and what was done.",
            "counter",
        );
        for c in RrlClass::ALL {
            for a in RrlAction::ALL {
                let j = HOT_RRL + c.index() * RrlAction::ALL.len() + a.index();
                let l = [("class", c.label()), ("action", a.label())];
                o.sample(n, &l, self.hot.sum(0, j));
            }
        }
        let n = "gslbd_rrl_exempt_total";
        o.header(
            n,
            "UDP responses not rate limited: a valid server cookie, or an exempt prefix.",
            "counter",
        );
        for r in RrlExempt::ALL {
            o.sample(
                n,
                &[("reason", r.label())],
                self.hot.sum(0, HOT_RRL_EXEMPT + r.index()),
            );
        }
        let n = "gslbd_cookie_queries_total";
        o.header(
            n,
            "Queries with a DNS COOKIE option, by what it showed (invalid over UDP = BADCOOKIE).",
            "counter",
        );
        for r in CookieResult::ALL {
            o.sample(
                n,
                &[("result", r.label())],
                self.hot.sum(0, HOT_COOKIE + r.index()),
            );
        }
        let n = "gslbd_connections_closed_total";
        o.header(
            n,
            "Stream connections closed or refused by a limit, by listener and reason.",
            "counter",
        );
        for l in Listener::ALL {
            for r in CloseReason::ALL.into_iter().filter(|r| r.applies_to(l)) {
                let j = HOT_CLOSED + l.index() * CloseReason::ALL.len() + r.index();
                o.sample(
                    n,
                    &[("listener", l.label()), ("reason", r.label())],
                    self.hot.sum(0, j),
                );
            }
        }
        let n = "gslbd_accept_errors_total";
        o.header(
            n,
            "Accepts that failed for lack of file descriptors or memory (the listener backs off).",
            "counter",
        );
        for l in Listener::ALL {
            o.sample(
                n,
                &[("listener", l.label())],
                self.hot.sum(0, HOT_ACCEPT + l.index()),
            );
        }
        let tables = lock(&self.conn_tables).clone();
        let n = "gslbd_connections_open";
        o.header(n, "Stream connections open now, by listener.", "gauge");
        for (l, t) in &tables {
            o.sample(n, &[("listener", l.label())], t.open());
        }
        let n = "gslbd_connections_max";
        o.header(n, "Most stream connections at once, by listener.", "gauge");
        for (l, t) in &tables {
            o.sample(n, &[("listener", l.label())], t.limits().max_total);
        }
        let n = "gslbd_connections_max_per_client";
        o.header(
            n,
            "Most stream connections of one client address (IPv6: one /64), by listener.",
            "gauge",
        );
        for (l, t) in &tables {
            o.sample(n, &[("listener", l.label())], t.limits().max_per_client);
        }
    }

    fn render_queries(&self, o: &mut Text) {
        let name = "gslbd_queries_total";
        o.header(
            name,
            "Queries answered, by zone, query type, response code and transport.",
            "counter",
        );
        for (slot, [zone, ..]) in self.zones.labels().iter() {
            for (qi, qt) in qtype_labels().enumerate() {
                for (ri, rc) in RCODES.iter().enumerate() {
                    for (ti, tr) in Transport::ALL.iter().map(|t| t.label()).enumerate() {
                        let j = (qi * RCODES.len() + ri) * N_TRANSPORTS + ti;
                        let v = self.zones.counters.sum(slot, j);
                        // Only combinations seen so far: 576 zero series per zone would drown
                        // the scrape; a series appears with its first query and then stays.
                        if v > 0 {
                            let l = [
                                ("zone", zone),
                                ("qtype", qt),
                                ("rcode", rc),
                                ("transport", tr),
                            ];
                            o.sample(name, &l, v);
                        }
                    }
                }
            }
        }

        let h = "gslbd_query_duration_seconds";
        o.header(
            h,
            "Time from receiving a query to having its response.",
            "histogram",
        );
        let counts: Vec<u64> = (0..=QUERY_BUCKETS_US.len())
            .map(|b| self.hot.sum(0, HOT_DUR + b))
            .collect();
        let bounds: Vec<f64> = QUERY_BUCKETS_US.iter().map(|&us| us as f64 / 1e6).collect();
        let sum = self.hot.sum(0, HOT_DUR_SUM_NS) as f64 / 1e9;
        o.histogram(h, &[], &bounds, &counts, sum);

        let e = "gslbd_ecs_queries_total";
        o.header(
            e,
            "Queries carrying an EDNS Client Subnet option, by address family.",
            "counter",
        );
        let rows = [
            ("ipv4", HOT_ECS, &ECS_BUCKETS_V4[..]),
            ("ipv6", HOT_ECS + ECS_ROW, &ECS_BUCKETS_V6[..]),
        ];
        let exact: Vec<Vec<u64>> = rows
            .iter()
            .map(|(_, row, _)| (0..=128).map(|p| self.hot.sum(0, row + p)).collect())
            .collect();
        for ((fam, _, _), ex) in rows.iter().zip(&exact) {
            o.sample(e, &[("family", fam)], ex.iter().sum::<u64>());
        }
        let s = "gslbd_ecs_scope_prefix";
        o.header(
            s,
            "ECS scope prefix length of answers to ECS queries.",
            "histogram",
        );
        for ((fam, row, bounds), ex) in rows.iter().zip(&exact) {
            let mut counts = vec![0u64; bounds.len() + 1];
            for (p, &n) in ex.iter().enumerate() {
                let b = bounds.partition_point(|&le| usize::from(le) < p);
                counts[b] += n;
            }
            let bounds: Vec<f64> = bounds.iter().map(|&b| f64::from(b)).collect();
            let sum = self.hot.sum(0, row + 129) as f64;
            o.histogram(s, &[("family", fam)], &bounds, &counts, sum);
        }
    }

    /// What only the DNS stream listeners report: connections established (and resumed),
    /// requests of DoH/DoQ connections a limit stopped, certificate reloads.
    fn render_encrypted(&self, o: &mut Text) {
        let dns = || Listener::ALL.into_iter().filter(|l| *l != Listener::Api);
        let n = "gslbd_connections_opened_total";
        o.header(
            n,
            "DNS stream connections established (after the TLS/QUIC handshake), by listener.",
            "counter",
        );
        for l in dns() {
            let v = self.opened[l.index()].load(Relaxed);
            o.sample(n, &[("listener", l.label())], v);
        }
        let n = "gslbd_connections_resumed_total";
        o.header(
            n,
            "Connections whose TLS handshake resumed an earlier session, by listener.",
            "counter",
        );
        for l in [Listener::DnsTls, Listener::DnsHttps] {
            let v = self.resumed[l.index()].load(Relaxed);
            o.sample(n, &[("listener", l.label())], v);
        }
        let n = "gslbd_requests_limited_total";
        o.header(
            n,
            "DoH/DoQ requests stopped by a limit or refused as malformed without closing their \
             connection, and connections that reached their stream limit, by listener and reason.",
            "counter",
        );
        for l in [Listener::DnsHttps, Listener::DnsQuic] {
            for r in CloseReason::ALL.into_iter().filter(|r| r.per_request()) {
                let v = self.limited[l.index()][r.index()].load(Relaxed);
                o.sample(n, &[("listener", l.label()), ("reason", r.label())], v);
            }
        }
        let r = "gslbd_tls_cert_reloads_total";
        o.header(r, "TLS certificate reloads by result.", "counter");
        o.sample(r, &[("result", "ok")], self.cert_reload_ok.load(Relaxed));
        o.sample(
            r,
            &[("result", "error")],
            self.cert_reload_err.load(Relaxed),
        );
    }

    fn render_gslb(&self, o: &mut Text) {
        let d = "gslbd_gslb_decisions_total";
        o.header(d, "GSLB answers by name, pool and datacenter.", "counter");
        for (slot, [name, pool, dc]) in self.decisions.labels().iter() {
            let v = self.decisions.counters.sum(slot, 0);
            o.sample(d, &[("name", name), ("pool", pool), ("datacenter", dc)], v);
        }
        let a = "gslbd_gslb_all_down_total";
        o.header(
            a,
            "GSLB answers where no datacenter was usable, by name.",
            "counter",
        );
        for (slot, [name, ..]) in self.all_down.labels().iter() {
            o.sample(a, &[("name", name)], self.all_down.counters.sum(slot, 0));
        }
    }

    fn render_probes(&self, o: &mut Text) {
        let p = "gslbd_probe_results_total";
        o.header(
            p,
            "Probe results by datacenter, target address and outcome.",
            "counter",
        );
        let mut rows: Vec<_> = lock(&self.probes)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        rows.sort();
        for ((dc, addr, outcome), v) in &rows {
            o.sample(
                p,
                &[("datacenter", dc), ("address", addr), ("outcome", outcome)],
                *v,
            );
        }
        let h = "gslbd_probe_duration_seconds";
        o.header(
            h,
            "Probe round-trip time (connect, or HTTP response headers).",
            "histogram",
        );
        let counts: Vec<u64> = self
            .probe_time
            .buckets
            .iter()
            .map(|b| b.load(Relaxed))
            .collect();
        let bounds: Vec<f64> = PROBE_BUCKETS_MS.iter().map(|&ms| ms as f64 / 1e3).collect();
        let sum = self.probe_time.sum_ns.load(Relaxed) as f64 / 1e9;
        o.histogram(h, &[], &bounds, &counts, sum);
    }
}

/// Process-level gauges, filled by the caller at scrape time.
#[derive(Clone, Debug)]
pub(crate) struct ServerGauges {
    /// Process start.
    pub(crate) started: SystemTime,
    /// Configuration generation (1 at start, +1 per successful reload).
    pub(crate) config_generation: u64,
    /// When the serving configuration was loaded.
    pub(crate) loaded_at: SystemTime,
    /// The last reload succeeded.
    pub(crate) last_reload_ok: bool,
    /// Zones served.
    pub(crate) zones: usize,
    /// Times `admin.json` could not be used at a start of the probes (since the process
    /// started).
    pub(crate) admin_file_errors: u64,
    /// Times `health.json` could not be used.
    pub(crate) health_file_errors: u64,
    /// Times `inputs.json` could not be used.
    pub(crate) inputs_file_errors: u64,
    /// Health feed files: (path, last read ok, age of the last good file in seconds).
    pub(crate) feeds: Vec<(String, bool, Option<f64>)>,
}

/// Gauges another part of the server renders itself at scrape time (health renders its
/// datacenter and target gauges), so the registry needs no knowledge of them.
pub(crate) trait Gauges {
    /// Appends this part's gauge families.
    fn render(&self, t: &mut Text);
}

/// State rendered as gauges at scrape time, in addition to the registry's own counters.
#[derive(Default)]
pub(crate) struct Extra<'a> {
    /// Datacenter and target health, rendered by the health module.
    pub(crate) health: Option<&'a dyn Gauges>,
    /// Process and configuration gauges.
    pub(crate) server: Option<ServerGauges>,
    /// Signed zones: keys, signature expiry and signing counters.
    pub(crate) dnssec: Option<&'a dyn Gauges>,
    /// The cluster (`--cluster`): members, probers, observations, etcd connection.
    pub(crate) cluster: Option<&'a dyn Gauges>,
    /// Hostname targets (addresses, staleness, lookups), rendered by the API.
    pub(crate) resolver: Option<&'a dyn Gauges>,
    /// The AF_XDP listeners: mode and per-queue counters.
    pub(crate) xdp: Option<&'a dyn Gauges>,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn render_server(o: &mut Text, s: &ServerGauges) {
    let g = "gauge";
    o.header(
        "gslbd_start_time_seconds",
        "Process start time, Unix seconds.",
        g,
    );
    o.sample("gslbd_start_time_seconds", &[], F(unix(s.started)));
    o.header(
        "gslbd_config_generation",
        "Configuration generation serving now.",
        g,
    );
    o.sample("gslbd_config_generation", &[], s.config_generation);
    o.header(
        "gslbd_config_loaded_time_seconds",
        "When the serving configuration was loaded, Unix seconds.",
        g,
    );
    o.sample(
        "gslbd_config_loaded_time_seconds",
        &[],
        F(unix(s.loaded_at)),
    );
    o.header(
        "gslbd_config_last_reload_successful",
        "1 if the last reload succeeded.",
        g,
    );
    o.sample(
        "gslbd_config_last_reload_successful",
        &[],
        u8::from(s.last_reload_ok),
    );
    o.header("gslbd_zones", "Zones served.", g);
    o.sample("gslbd_zones", &[], s.zones);
    o.header(
        "gslbd_state_file_errors_total",
        "State files that could not be used (admin.json is then moved aside and every datacenter starts in obey).",
        "counter",
    );
    o.sample(
        "gslbd_state_file_errors_total",
        &[("file", "admin.json")],
        s.admin_file_errors,
    );
    o.sample(
        "gslbd_state_file_errors_total",
        &[("file", "health.json")],
        s.health_file_errors,
    );
    o.sample(
        "gslbd_state_file_errors_total",
        &[("file", "inputs.json")],
        s.inputs_file_errors,
    );
    if !s.feeds.is_empty() {
        let ok = "gslbd_health_feed_ok";
        o.header(ok, "1 if the health feed file's last read succeeded.", g);
        for (path, good, _) in &s.feeds {
            o.sample(ok, &[("file", path.as_str())], u8::from(*good));
        }
        let age = "gslbd_health_feed_age_seconds";
        o.header(
            age,
            "Age of the health feed file last read successfully (its entries are ignored past the maximum age).",
            g,
        );
        for (path, _, a) in &s.feeds {
            if let Some(a) = a {
                o.sample(age, &[("file", path.as_str())], F(*a));
            }
        }
    }
}

/// A float sample value in Prometheus spelling (`+Inf`, `-Inf`, `NaN`).
pub(crate) struct F(pub(crate) f64);

impl Display for F {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v.is_infinite() {
            f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            write!(f, "{v}")
        }
    }
}

/// Escapes a label value: backslash, double quote and newline, as the text format requires.
pub(crate) fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// The text exposition being written.
#[derive(Default)]
pub(crate) struct Text {
    s: String,
}

impl Text {
    /// `# HELP` and `# TYPE` lines of a family.
    pub(crate) fn header(&mut self, name: &str, help: &str, kind: &str) {
        // HELP text escapes only backslash and newline.
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.s, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample line.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl Display) {
        self.s.push_str(name);
        if !labels.is_empty() {
            self.s.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.s.push(',');
                }
                let _ = write!(self.s, "{k}=\"{}\"", escape_label(val));
            }
            self.s.push('}');
        }
        let _ = writeln!(self.s, " {v}");
    }

    /// `counts` are per bucket (not cumulative), one more than `bounds` (the +Inf bucket).
    pub(crate) fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        let bucket = format!("{name}_bucket");
        let mut cum = 0u64;
        for (i, c) in counts.iter().enumerate() {
            cum += c;
            let le = bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| F(*b).to_string());
            let mut l: Vec<(&str, &str)> = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, cum);
        }
        self.sample(&format!("{name}_sum"), labels, F(sum));
        self.sample(&format!("{name}_count"), labels, cum);
    }
}
