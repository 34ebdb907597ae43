//! `--check "EXPR"`: conditions on a report, for a zone repository's CI.
//!
//! ```text
//! expr    := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!" unary | "(" expr ")" | compare
//! compare := value ( "<" | "<=" | ">" | ">=" | "==" | "!=" ) value
//! value   := NUMBER [ ms | s | m | h | % ] | METRIC [ "(" STRING ( "," STRING )* ")" ]
//! ```
//!
//! Metrics have a kind (a duration, a ratio, a count); a duration compares with a number
//! that has a time unit (`45s`), a ratio with a plain number or a percentage, a count with
//! a plain number. Anything else is an error that points at the column, so a typo in CI
//! fails loudly (exit 2) rather than passing.

use std::fmt;

use super::report::{Report, time};
use super::scenario::trim_float;

/// A condition that cannot be parsed or evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckError {
    /// The condition as given.
    pub expr: String,
    /// 0-based character column of the problem.
    pub at: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "--check {:?}: column {}: {}",
            self.expr,
            self.at + 1,
            self.message
        )?;
        writeln!(f, "  {}", self.expr)?;
        write!(f, "  {}^", " ".repeat(self.at))
    }
}

impl std::error::Error for CheckError {}

/// What a value measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Seconds.
    Time,
    /// 0..1 (a share, a utilisation).
    Ratio,
    /// A number of things.
    Count,
    /// A number without unit.
    Plain,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
            Op::Ne => (a - b).abs() > 1e-9 * a.abs().max(b.abs()).max(1.0),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Number {
        v: f64,
        kind: Kind,
        at: usize,
    },
    Metric {
        name: String,
        args: Vec<String>,
        at: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
enum Expr {
    Cmp(Value, Op, Value, usize),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

/// The metrics a condition may use: name, arguments, kind, meaning.
const METRICS: &[(&str, &str, Kind, &str)] = &[
    (
        "max_time_to_drain",
        "[dc]",
        Kind::Time,
        "the longest time from a failure (of a datacenter, an address or one check), a pushed down verdict, a drain or an admin down until the last client query answered with it (caches included); infinite when clients were still sent there when it ended",
    ),
    (
        "max_time_to_detect",
        "[dc]",
        Kind::Time,
        "the longest time from a failure (of a datacenter, an address or one check) until gslbd's published health showed it; infinite when it never did",
    ),
    (
        "max_time_to_recover",
        "[dc]",
        Kind::Time,
        "the longest time from a recovery until gslbd's health showed it up again",
    ),
    (
        "queries_to_down",
        "[name|dc]",
        Kind::Count,
        "client queries answered with an address that was down",
    ),
    (
        "share_to_down",
        "[name]",
        Kind::Ratio,
        "the share of client queries answered with an address that was down",
    ),
    (
        "flips_per_client",
        "[name]",
        Kind::Count,
        "answer changes per client stream",
    ),
    (
        "flaps_per_client",
        "[name]",
        Kind::Count,
        "answer changes per client stream while the old answer was still usable",
    ),
    (
        "max_flips",
        "[name]",
        Kind::Count,
        "the most answer changes of one client stream",
    ),
    (
        "peak_load",
        "[dc]",
        Kind::Ratio,
        "the highest utilisation of a datacenter (of any, without argument)",
    ),
    (
        "mean_load",
        "dc",
        Kind::Ratio,
        "the mean utilisation of a datacenter",
    ),
    (
        "share",
        "name, target",
        Kind::Ratio,
        "the share of a name's queries answered with a datacenter (or (nodata), (servfail), (last-resort))",
    ),
    (
        "region_changes",
        "[name]",
        Kind::Count,
        "client streams sent to another continent than their first answer's",
    ),
    (
        "region_change_share",
        "[name]",
        Kind::Ratio,
        "the share of client streams that changed region",
    ),
    ("decisions", "", Kind::Count, "queries that reached gslbd"),
    ("client_queries", "", Kind::Count, "client queries"),
];

fn metric_list() -> String {
    METRICS
        .iter()
        .map(|(n, a, _, _)| {
            if a.is_empty() {
                n.to_string()
            } else {
                format!("{n}({a})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The metrics, one per line, for `gslbd simulate --help-checks` and the docs.
pub fn metrics_help() -> String {
    METRICS
        .iter()
        .map(|(n, a, k, d)| {
            let kind = match k {
                Kind::Time => "duration",
                Kind::Ratio => "ratio",
                _ => "count",
            };
            format!("{n}({a}) [{kind}]: {d}\n")
        })
        .collect()
}

/// A parsed `--check` condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    text: String,
    expr: Expr,
}

/// The result of a condition on a report.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CheckOutcome {
    /// The condition as given.
    pub expr: String,
    /// It holds.
    pub passed: bool,
    /// The values it compared (`max_time_to_drain("fra") = 38.2s`).
    pub values: Vec<String>,
}

impl fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            if self.passed { "ok  " } else { "FAIL" },
            self.expr,
            self.values.join(", ")
        )
    }
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, at: usize, message: impl Into<String>) -> CheckError {
        CheckError {
            expr: self.text.to_string(),
            at,
            message: message.into(),
        }
    }

    fn skip(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, s: &str) -> bool {
        self.skip();
        let n = s.chars().count();
        if self.chars[self.pos..].iter().take(n).copied().eq(s.chars()) {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        self.skip();
        let save = self.pos;
        if self.eat(w)
            && !self
                .chars
                .get(self.pos)
                .is_some_and(|c| c.is_alphanumeric() || *c == '_')
        {
            return true;
        }
        self.pos = save;
        false
    }

    fn or(&mut self) -> Result<Expr, CheckError> {
        let mut e = self.and()?;
        while self.eat("||") || self.eat_word("or") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, CheckError> {
        let mut e = self.unary()?;
        while self.eat("&&") || self.eat_word("and") {
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, CheckError> {
        self.skip();
        if self.chars.get(self.pos) == Some(&'!') && self.chars.get(self.pos + 1) != Some(&'=') {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat_word("not") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let e = self.or()?;
            if !self.eat(")") {
                self.skip();
                return Err(self.err(self.pos, "expected `)`"));
            }
            return Ok(e);
        }
        let a = self.value()?;
        self.skip();
        let at = self.pos;
        let op = if self.eat("<=") {
            Op::Le
        } else if self.eat(">=") {
            Op::Ge
        } else if self.eat("==") {
            Op::Eq
        } else if self.eat("!=") {
            Op::Ne
        } else if self.eat("<") {
            Op::Lt
        } else if self.eat(">") {
            Op::Gt
        } else if self.eat("=") {
            return Err(self.err(at, "write `==` to compare"));
        } else {
            return Err(self.err(
                at,
                "expected a comparison (<, <=, >, >=, ==, !=): a condition compares a metric with a number",
            ));
        };
        let b = self.value()?;
        Ok(Expr::Cmp(a, op, b, at))
    }

    fn value(&mut self) -> Result<Value, CheckError> {
        self.skip();
        let at = self.pos;
        let c = self.chars.get(self.pos).copied();
        match c {
            Some(c) if c.is_ascii_digit() || c == '.' || c == '-' => {
                let start = self.pos;
                self.pos += 1;
                while self
                    .chars
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '_')
                {
                    self.pos += 1;
                }
                let num: String = self.chars[start..self.pos]
                    .iter()
                    .filter(|c| **c != '_')
                    .collect();
                let v: f64 = num
                    .parse()
                    .map_err(|_| self.err(start, format!("{num:?} is not a number")))?;
                let ustart = self.pos;
                while self
                    .chars
                    .get(self.pos)
                    .is_some_and(|c| c.is_alphabetic() || *c == '%')
                {
                    self.pos += 1;
                }
                let unit: String = self.chars[ustart..self.pos].iter().collect();
                let (v, kind) = match unit.as_str() {
                    "" => (v, Kind::Plain),
                    "ms" => (v / 1000.0, Kind::Time),
                    "s" => (v, Kind::Time),
                    "m" | "min" => (v * 60.0, Kind::Time),
                    "h" => (v * 3600.0, Kind::Time),
                    "%" => (v / 100.0, Kind::Ratio),
                    other => {
                        return Err(self.err(
                            ustart,
                            format!("unknown unit {other:?} (expected ms, s, m, h or %)"),
                        ));
                    }
                };
                Ok(Value::Number { v, kind, at })
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                let start = self.pos;
                while self
                    .chars
                    .get(self.pos)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_')
                {
                    self.pos += 1;
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                if !METRICS.iter().any(|m| m.0 == name) {
                    return Err(self.err(
                        start,
                        format!("unknown metric {name:?} (known: {})", metric_list()),
                    ));
                }
                let mut args = Vec::new();
                if self.eat("(") && !self.eat(")") {
                    loop {
                        self.skip();
                        let q = self.pos;
                        let quote = self.chars.get(self.pos).copied();
                        if !matches!(quote, Some('"') | Some('\'')) {
                            return Err(self.err(
                                q,
                                "expected a quoted argument (a datacenter or a name, e.g. \"fra\")",
                            ));
                        }
                        self.pos += 1;
                        let s = self.pos;
                        while self.chars.get(self.pos).is_some_and(|c| Some(*c) != quote) {
                            self.pos += 1;
                        }
                        if self.pos >= self.chars.len() {
                            return Err(self.err(q, "this quote is never closed"));
                        }
                        args.push(self.chars[s..self.pos].iter().collect());
                        self.pos += 1;
                        if self.eat(")") {
                            break;
                        }
                        if !self.eat(",") {
                            self.skip();
                            return Err(self.err(self.pos, "expected `,` or `)` after an argument"));
                        }
                    }
                }
                Ok(Value::Metric { name, args, at })
            }
            Some('"') | Some('\'') => Err(self.err(
                at,
                "a quoted argument goes inside a metric's parentheses (e.g. peak_load(\"iad\"))",
            )),
            Some(_) => Err(self.err(at, "expected a metric or a number")),
            None => Err(self.err(at, "the condition ends here; expected a metric or a number")),
        }
    }
}

impl Check {
    /// Parses a condition.
    pub fn parse(text: &str) -> Result<Check, CheckError> {
        let mut p = Parser {
            text,
            chars: text.chars().collect(),
            pos: 0,
        };
        let expr = p.or()?;
        p.skip();
        if p.pos < p.chars.len() {
            return Err(p.err(
                p.pos,
                "unexpected text after the condition (join conditions with && or ||)",
            ));
        }
        let c = Check {
            text: text.to_string(),
            expr,
        };
        c.check_kinds(&c.expr)?;
        Ok(c)
    }

    fn err(&self, at: usize, message: impl Into<String>) -> CheckError {
        CheckError {
            expr: self.text.clone(),
            at,
            message: message.into(),
        }
    }

    fn kind_of(&self, v: &Value) -> Result<Kind, CheckError> {
        match v {
            Value::Number { kind, .. } => Ok(*kind),
            Value::Metric { name, args, at } => {
                let (_, sig, kind, _) = METRICS
                    .iter()
                    .find(|m| m.0 == name)
                    .copied()
                    .ok_or_else(|| self.err(*at, "unknown metric"))?;
                let (min, max) = match sig {
                    "" => (0, 0),
                    "dc" => (1, 1),
                    "name, target" => (2, 2),
                    _ => (0, 1),
                };
                if args.len() < min || args.len() > max {
                    let want = if sig.is_empty() {
                        "no argument".to_string()
                    } else {
                        format!("({sig})")
                    };
                    return Err(self.err(
                        *at,
                        format!("{name} takes {want}, not {} argument(s)", args.len()),
                    ));
                }
                Ok(kind)
            }
        }
    }

    fn check_kinds(&self, e: &Expr) -> Result<(), CheckError> {
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => {
                self.check_kinds(a)?;
                self.check_kinds(b)
            }
            Expr::Not(a) => self.check_kinds(a),
            Expr::Cmp(a, _, b, _) => {
                let (ka, kb) = (self.kind_of(a)?, self.kind_of(b)?);
                let ok = match (ka, kb) {
                    (x, y) if x == y => true,
                    (Kind::Ratio | Kind::Count, Kind::Plain)
                    | (Kind::Plain, Kind::Ratio | Kind::Count) => true,
                    (Kind::Ratio, Kind::Count) | (Kind::Count, Kind::Ratio) => true,
                    _ => false,
                };
                if !ok {
                    let (v, k) = if matches!(a, Value::Number { .. }) {
                        (a, ka)
                    } else {
                        (b, kb)
                    };
                    let at = match v {
                        Value::Number { at, .. } | Value::Metric { at, .. } => *at,
                    };
                    let msg = match (ka, kb) {
                        (Kind::Time, _) | (_, Kind::Time)
                            if k == Kind::Plain || k == Kind::Ratio || k == Kind::Count =>
                        {
                            "a duration compares with a time: give the unit (45s, 500ms, 2m)"
                        }
                        (Kind::Count, Kind::Ratio) | (Kind::Ratio, Kind::Count) => {
                            "a count compares with a plain number"
                        }
                        _ => {
                            "these two do not measure the same thing (a duration, a ratio or a count)"
                        }
                    };
                    return Err(self.err(at, msg));
                }
                Ok(())
            }
        }
    }

    /// Evaluates the condition on `report`. An unknown datacenter or name is an error.
    pub fn eval(&self, report: &Report) -> Result<CheckOutcome, CheckError> {
        let mut values = Vec::new();
        let passed = self.eval_expr(&self.expr, report, &mut values)?;
        Ok(CheckOutcome {
            expr: self.text.clone(),
            passed,
            values,
        })
    }

    fn eval_expr(
        &self,
        e: &Expr,
        r: &Report,
        values: &mut Vec<String>,
    ) -> Result<bool, CheckError> {
        Ok(match e {
            Expr::And(a, b) => {
                let x = self.eval_expr(a, r, values)?;
                self.eval_expr(b, r, values)? && x
            }
            Expr::Or(a, b) => {
                let x = self.eval_expr(a, r, values)?;
                self.eval_expr(b, r, values)? || x
            }
            Expr::Not(a) => !self.eval_expr(a, r, values)?,
            Expr::Cmp(a, op, b, _) => {
                let x = self.value(a, r, values)?;
                let y = self.value(b, r, values)?;
                op.holds(x, y)
            }
        })
    }

    fn value(&self, v: &Value, r: &Report, values: &mut Vec<String>) -> Result<f64, CheckError> {
        let Value::Metric { name, args, at } = v else {
            let Value::Number { v, .. } = v else {
                unreachable!()
            };
            return Ok(*v);
        };
        let at = *at;
        let dc = |a: &String| -> Result<&super::report::DcReport, CheckError> {
            r.datacenter(a).ok_or_else(|| {
                let known: Vec<&str> = r.datacenters.iter().map(|d| d.name.as_str()).collect();
                self.err(
                    at,
                    format!(
                        "no datacenter {a:?} in this run (known: {})",
                        known.join(", ")
                    ),
                )
            })
        };
        let name_of = |a: &String| -> Result<&super::report::NameReport, CheckError> {
            r.name(a).ok_or_else(|| {
                let known: Vec<&str> = r.names.iter().map(|n| n.name.as_str()).collect();
                self.err(
                    at,
                    format!(
                        "no name {a:?} was asked in this run (asked: {})",
                        known.join(", ")
                    ),
                )
            })
        };
        let sig = METRICS.iter().find(|m| m.0 == name).map_or("", |m| m.1);
        let by_name = match (sig, args.first()) {
            ("[name]", Some(a)) => Some(a),
            ("[name|dc]", Some(a)) if r.datacenter(a).is_none() => Some(a),
            _ => None,
        };
        let names: Vec<&super::report::NameReport> = match by_name {
            Some(a) => vec![name_of(a)?],
            None => r.names.iter().collect(),
        };
        let streams: f64 = names.iter().map(|n| n.clients as f64).sum::<f64>().max(1.0);
        let incidents = |kinds: &[&str]| -> Result<Vec<&super::report::Incident>, CheckError> {
            let want = args.first().map(dc).transpose()?.map(|d| d.name.as_str());
            Ok(r.incidents
                .iter()
                .filter(|i| kinds.contains(&i.kind.as_str()))
                .filter(|i| want.is_none_or(|w| w == i.datacenter))
                .collect())
        };
        let v = match name.as_str() {
            "max_time_to_drain" => incidents(&[
                "down",
                "address down",
                "check down",
                "pushed down",
                "drain",
                "admin down",
            ])?
            .iter()
            .map(|i| match (i.drained, i.last_sent_after_s) {
                (false, _) => f64::INFINITY,
                (true, Some(l)) => l,
                (true, None) => 0.0,
            })
            .fold(0.0, f64::max),
            "max_time_to_detect" => incidents(&["down", "address down", "check down"])?
                .iter()
                .map(|i| i.detected_after_s.unwrap_or(f64::INFINITY))
                .fold(0.0, f64::max),
            "max_time_to_recover" => incidents(&["down", "address down", "check down"])?
                .iter()
                .filter(|i| i.end_s.is_some() && i.detected_after_s.is_some())
                .map(|i| i.recovered_after_s.unwrap_or(f64::INFINITY))
                .fold(0.0, f64::max),
            "queries_to_down" => match args.first() {
                Some(a) if r.datacenter(a).is_some() => dc(a)?.queries_to_down,
                _ => names.iter().map(|n| n.queries_to_down).sum(),
            },
            "share_to_down" => {
                let q: f64 = names.iter().map(|n| n.queries).sum();
                let d: f64 = names.iter().map(|n| n.queries_to_down).sum();
                if q > 0.0 { d / q } else { 0.0 }
            }
            "flips_per_client" => {
                names
                    .iter()
                    .map(|n| n.flips_per_client * n.clients as f64)
                    .sum::<f64>()
                    / streams
            }
            "flaps_per_client" => {
                names
                    .iter()
                    .map(|n| n.flaps_per_client * n.clients as f64)
                    .sum::<f64>()
                    / streams
            }
            "max_flips" => names
                .iter()
                .map(|n| f64::from(n.max_flips))
                .fold(0.0, f64::max),
            "peak_load" => match args.first() {
                Some(a) => dc(a)?.peak_load,
                None => r
                    .datacenters
                    .iter()
                    .map(|d| d.peak_load)
                    .fold(0.0, f64::max),
            },
            "mean_load" => dc(&args[0])?.mean_load,
            "share" => {
                let n = name_of(&args[0])?;
                let t = &args[1];
                if r.datacenter(t).is_none() && !t.starts_with('(') {
                    dc(t)?;
                }
                n.shares
                    .iter()
                    .find(|s| s.target == *t)
                    .map_or(0.0, |s| s.share)
            }
            "region_changes" => names.iter().map(|n| n.region_changes as f64).sum(),
            "region_change_share" => {
                names.iter().map(|n| n.region_changes as f64).sum::<f64>() / streams
            }
            "decisions" => r.decisions as f64,
            "client_queries" => r.client_queries,
            _ => return Err(self.err(at, "unknown metric")),
        };
        let kind = METRICS
            .iter()
            .find(|m| m.0 == name)
            .map_or(Kind::Plain, |m| m.2);
        let shown = match kind {
            _ if v.is_infinite() => "never".to_string(),
            Kind::Time => time(v),
            Kind::Ratio => format!("{} %", trim_float(v * 100.0, 2)),
            _ => trim_float(v, 3),
        };
        let args_text = if args.is_empty() {
            String::new()
        } else {
            format!(
                "({})",
                args.iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        values.push(format!("{name}{args_text} = {shown}"));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        for ok in [
            "max_time_to_drain(\"fra\") < 45s",
            "flaps_per_client < 1",
            "peak_load(\"iad\") < 0.9",
            "peak_load('iad') < 90% && (max_time_to_detect <= 30s || not decisions > 10)",
            "share(\"app.lb.example.com\", \"fra\") >= 40%",
        ] {
            Check::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn errors_point_at_the_problem() {
        let cases = [
            ("max_time_to_drain(\"fra\") < 45", 27, "give the unit"),
            (
                "max_time_to_drian(\"fra\") < 45s",
                0,
                "unknown metric \"max_time_to_drian\"",
            ),
            ("peak_load(\"iad\" < 0.9", 16, "expected `,` or `)`"),
            ("peak_load(iad) < 0.9", 10, "quoted argument"),
            ("flaps_per_client = 1", 17, "write `==`"),
            ("flaps_per_client", 16, "expected a comparison"),
            (
                "flaps_per_client < 1 flips_per_client < 2",
                21,
                "unexpected text",
            ),
            ("peak_load(\"a\", \"b\") < 1", 0, "takes ([dc])"),
            ("decisions < 5 parsecs", 14, "unexpected text"),
            ("decisions < 5x", 13, "unknown unit"),
            ("(decisions < 5", 14, "expected `)`"),
        ];
        for (text, at, msg) in cases {
            let e = Check::parse(text).expect_err(text);
            assert_eq!(e.at, at, "{text}: {e}");
            assert!(e.message.contains(msg), "{text}: {e}");
        }
        let shown = Check::parse("flaps_per_client = 1")
            .unwrap_err()
            .to_string();
        assert!(
            shown.ends_with("  flaps_per_client = 1\n                   ^"),
            "{shown}"
        );
    }
}
