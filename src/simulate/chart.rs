//! SVG charts, written by the command (no script, no dependency): for each GSLB name the
//! share of its client queries per datacenter over time, one line per datacenter, with the
//! scenario's events as dashed lines, what gslbd published as marks on the top edge, and the
//! times a datacenter was really down as bands in its colour; and the utilisation of every
//! datacenter against its capacity.

use std::fmt::Write;

use super::report::{Report, time};
use super::scenario::trim_float;

const W: f64 = 980.0;
const H: f64 = 460.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 96.0;
const BOTTOM: f64 = 48.0;
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
];

fn colour(target: usize, n_dcs: usize) -> &'static str {
    if target < n_dcs {
        PALETTE[target % PALETTE.len()]
    } else {
        "#444444"
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A tick step for `span` seconds giving about 6-10 ticks.
fn tick_step(span: f64) -> f64 {
    const STEPS: [f64; 16] = [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
        3600.0,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 10.0)
        .unwrap_or(7200.0)
}

struct Frame {
    duration: f64,
    ymax: f64,
}

impl Frame {
    fn x(&self, t: f64) -> f64 {
        LEFT + (W - LEFT - RIGHT) * (t / self.duration.max(1e-9)).clamp(0.0, 1.0)
    }
    fn y(&self, v: f64) -> f64 {
        let h = H - TOP - BOTTOM;
        TOP + h * (1.0 - (v / self.ymax).clamp(0.0, 1.0))
    }
}

fn open(s: &mut String, title: &str, subtitle: &str) {
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="37" fill="#555">{}</text>"##,
        esc(subtitle)
    );
}

fn axes(s: &mut String, f: &Frame, ylabel: &str, yticks: &[(f64, String)]) {
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    for (v, label) in yticks {
        let y = f.y(*v);
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" text-anchor="end" fill="#333">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            esc(label)
        );
    }
    let step = tick_step(f.duration);
    let mut t = 0.0;
    while t <= f.duration + 1e-9 {
        let x = f.x(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{}" stroke="#333"/><text x="{x:.1}" y="{}" text-anchor="middle" fill="#333">{}</text>"##,
            y1 + 5.0,
            y1 + 19.0,
            esc(&time(t))
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{x0}" y="{y0}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        x1 - x0,
        y1 - y0
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#333">scenario time</text>"##,
        (x0 + x1) / 2.0,
        H - 8.0
    );
    let _ = writeln!(
        s,
        r##"<text x="16" y="{}" text-anchor="middle" fill="#333" transform="rotate(-90 16 {})">{}</text>"##,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        esc(ylabel)
    );
}

/// Down periods as bands, scenario events as dashed lines with labels above the plot, gslbd's
/// changes as small marks on the top edge.
fn marks(s: &mut String, r: &Report, f: &Frame, only: Option<&[usize]>) {
    let n_dcs = r.datacenters.len();
    let dc_index = |name: &str| r.datacenters.iter().position(|d| d.name == name);
    for inc in &r.incidents {
        if !super::report::is_failure(&inc.kind) {
            continue;
        }
        let Some(d) = dc_index(&inc.datacenter) else {
            continue;
        };
        if only.is_some_and(|o| !o.contains(&d)) {
            continue;
        }
        let end = inc.end_s.unwrap_or(r.duration_s);
        let (xa, xb) = (f.x(inc.start_s), f.x(end));
        let _ = writeln!(
            s,
            r#"<rect x="{xa:.1}" y="{TOP}" width="{:.1}" height="{}" fill="{}" fill-opacity="0.10"><title>{} {} {} - {}</title></rect>"#,
            (xb - xa).max(0.5),
            H - TOP - BOTTOM,
            colour(d, n_dcs),
            esc(&inc.datacenter),
            esc(&inc.kind),
            time(inc.start_s),
            time(end)
        );
    }
    // Scenario events: one dashed line each; labels staggered over three rows.
    let mut row = 0;
    let mut last_x = f64::NEG_INFINITY;
    for m in r.events.iter().filter(|m| m.source == "scenario") {
        let x = f.x(m.at_s);
        if x - last_x < 120.0 {
            row = (row + 1) % 3;
        } else {
            row = 0;
        }
        last_x = x;
        let ly = TOP - 40.0 + 14.0 * row as f64;
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{ly:.1}" x2="{x:.1}" y2="{}" stroke="#555" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="#222">{}</text>"##,
            H - BOTTOM,
            x + 3.0,
            ly + 4.0,
            esc(&m.label)
        );
    }
    for m in r.events.iter().filter(|m| m.source == "gslbd") {
        let d = m.datacenter.as_deref().and_then(dc_index).unwrap_or(n_dcs);
        if only.is_some_and(|o| !o.contains(&d)) {
            continue;
        }
        let x = f.x(m.at_s);
        let down = m.label.ends_with("down");
        let (y, pts) = if down {
            (
                TOP,
                format!(
                    "{:.1},{} {:.1},{} {x:.1},{}",
                    x - 5.0,
                    TOP,
                    x + 5.0,
                    TOP,
                    TOP + 9.0
                ),
            )
        } else {
            (
                TOP,
                format!(
                    "{:.1},{} {:.1},{} {x:.1},{}",
                    x - 5.0,
                    TOP + 9.0,
                    x + 5.0,
                    TOP + 9.0,
                    TOP
                ),
            )
        };
        let _ = y;
        let _ = writeln!(
            s,
            r#"<polygon points="{pts}" fill="{}"><title>{} at {}</title></polygon>"#,
            colour(d, n_dcs),
            esc(&m.label),
            time(m.at_s)
        );
    }
}

fn legend(s: &mut String, items: &[(String, &'static str)]) {
    let x = W - RIGHT + 16.0;
    for (i, (label, c)) in items.iter().enumerate() {
        let y = TOP + 8.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            x + 18.0,
            x + 24.0,
            y + 4.0,
            esc(label)
        );
    }
    let y = TOP + 8.0 + 18.0 * items.len() as f64 + 10.0;
    let _ = writeln!(
        s,
        r##"<text x="{x}" y="{y}" fill="#555" font-size="11">dashed: scenario event</text><text x="{x}" y="{}" fill="#555" font-size="11">&#9660;/&#9650;: gslbd down/up</text><text x="{x}" y="{}" fill="#555" font-size="11">band: really down</text>"##,
        y + 15.0,
        y + 30.0
    );
}

fn polyline(s: &mut String, f: &Frame, r: &Report, values: &[f64], c: &str) {
    let mut pts = String::new();
    for (k, v) in values.iter().enumerate() {
        let t = r.series.times[k] + r.series.widths[k] / 2.0;
        let _ = write!(pts, "{:.1},{:.1} ", f.x(t), f.y(*v));
    }
    let _ = writeln!(
        s,
        r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2" stroke-linejoin="round"/>"#,
        pts.trim_end()
    );
}

/// The share chart of name `g` of the report.
pub(crate) fn shares(r: &Report, g: usize) -> String {
    let n = &r.names[g];
    let per = &r.series.queries[g];
    let n_dcs = r.datacenters.len();
    let buckets = r.series.times.len();
    let totals: Vec<f64> = (0..buckets)
        .map(|k| per.iter().map(|(_, v)| v[k]).sum())
        .collect();
    let f = Frame {
        duration: r.duration_s,
        ymax: 1.0,
    };
    let mut s = String::new();
    open(
        &mut s,
        &format!("{} - share of client queries per datacenter", n.name),
        &format!(
            "{} on {}, seed {}: {} client streams, buckets of {}",
            r.scenario,
            r.zones,
            r.seed,
            n.clients,
            time(r.step_s)
        ),
    );
    let ticks: Vec<(f64, String)> = (0..=5)
        .map(|i| (i as f64 * 0.2, format!("{} %", i * 20)))
        .collect();
    axes(&mut s, &f, "share of the name's client queries", &ticks);
    let dcs: Vec<usize> = per.iter().map(|(x, _)| *x).filter(|x| *x < n_dcs).collect();
    marks(&mut s, r, &f, Some(&dcs));
    let mut items = Vec::new();
    for (x, v) in per {
        let shares: Vec<f64> = v
            .iter()
            .zip(&totals)
            .map(|(q, t)| if *t > 0.0 { q / t } else { 0.0 })
            .collect();
        let c = colour(*x, n_dcs);
        polyline(&mut s, &f, r, &shares, c);
        let overall = n
            .shares
            .iter()
            .find(|sh| sh.target == r.series.targets[*x])
            .map_or(0.0, |sh| sh.share);
        items.push((
            format!(
                "{} ({} %)",
                r.series.targets[*x],
                trim_float(overall * 100.0, 1)
            ),
            c,
        ));
    }
    legend(&mut s, &items);
    s.push_str("</svg>\n");
    s
}

/// The utilisation chart of every datacenter that got traffic or has background load.
pub(crate) fn load(r: &Report) -> String {
    let n_dcs = r.datacenters.len();
    let shown: Vec<usize> = (0..n_dcs)
        .filter(|&d| r.series.load[d].iter().any(|v| *v > 0.0))
        .collect();
    let peak = shown
        .iter()
        .flat_map(|&d| r.series.load[d].iter().copied())
        .fold(0.0, f64::max);
    let ymax = (peak * 1.1).max(1.2);
    let f = Frame {
        duration: r.duration_s,
        ymax,
    };
    let mut s = String::new();
    open(
        &mut s,
        "Utilisation per datacenter (background + client queries / capacity)",
        &format!("{} on {}, seed {}", r.scenario, r.zones, r.seed),
    );
    let step = if ymax > 3.0 {
        1.0
    } else if ymax > 1.5 {
        0.5
    } else {
        0.2
    };
    let ticks: Vec<(f64, String)> = (0..)
        .map(|i| i as f64 * step)
        .take_while(|v| *v <= ymax + 1e-9)
        .map(|v| (v, format!("{} %", trim_float(v * 100.0, 0))))
        .collect();
    axes(&mut s, &f, "utilisation", &ticks);
    let y = f.y(1.0);
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#d00" stroke-dasharray="6 3"/><text x="{}" y="{:.1}" fill="#d00" text-anchor="end">capacity</text>"##,
        W - RIGHT,
        W - RIGHT - 4.0,
        y - 4.0
    );
    marks(&mut s, r, &f, Some(&shown));
    let mut items = Vec::new();
    for &d in &shown {
        let c = colour(d, n_dcs);
        polyline(&mut s, &f, r, &r.series.load[d], c);
        items.push((
            format!(
                "{} (peak {} %)",
                r.datacenters[d].name,
                trim_float(r.datacenters[d].peak_load * 100.0, 0)
            ),
            c,
        ));
    }
    legend(&mut s, &items);
    s.push_str("</svg>\n");
    s
}
