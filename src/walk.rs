//! A path-aware walk over a parsed TOML document.
//!
//! A leaf module (no dependency inside the crate): the config loader reads whole files with it,
//! and each check kind and policy reads its own keys with it, so a kind's keys live with it.
//!
//! serde stops at the first error; operators want every mistake of a file at once, each with
//! the key path that holds it. The walker reads the parser's own tree (`toml::de::DeTable`,
//! strings borrowed from the text: turning it into `toml::Value`s cost as much again as the
//! parsing, issue 9), records which keys were used, and collects errors
//! (`records.www.A[1]: ...`) instead of returning early.

use std::fmt::{self, Write};

pub(crate) use toml::de::{DeTable, DeValue};

/// Parses a TOML document into the tree the walker reads.
pub(crate) fn parse(text: &str) -> Result<DeTable<'_>, toml::de::Error> {
    DeTable::parse(text).map(toml::Spanned::into_inner)
}

/// The integer `v` holds, if it is one that fits 64 bits.
pub(crate) fn integer(v: &DeValue<'_>) -> Option<i64> {
    match v {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    }
}

/// The number `v` holds (an integer or a float), if it is one.
pub(crate) fn number(v: &DeValue<'_>) -> Option<f64> {
    match v {
        DeValue::Integer(_) => integer(v).map(|i| i as f64),
        // A literal too big for 64 bits is not infinity (TOML writes that `inf`).
        DeValue::Float(f) => f
            .as_str()
            .parse::<f64>()
            .ok()
            .filter(|n| !n.is_infinite() || f.as_str().contains("inf")),
        _ => None,
    }
}

/// A number as the file writes it (`0x41`, `1e999`); other values by their type.
pub(crate) fn written(v: &DeValue<'_>) -> String {
    match v {
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::String(s) => format!("{}", shown(s)),
        other => type_name(other).to_string(),
    }
}

/// The items of an array.
pub(crate) fn items<'a>(
    a: &'a [toml::Spanned<DeValue<'a>>],
) -> impl Iterator<Item = &'a DeValue<'a>> {
    a.iter().map(toml::Spanned::get_ref)
}

/// Most characters of one value a message shows; the rest is cut (with the full length said),
/// so a huge value in a file gives a readable log line and `/status` entry.
pub(crate) const SHOWN_CHARS: usize = 64;

/// Most characters of a whole message (after the values in it were cut): the last guard for
/// text that reaches a message from elsewhere (a library's error that quotes its input).
pub(crate) const MESSAGE_CHARS: usize = 512;

/// A value from a file as messages show it: in double quotes, with control characters,
/// quotes and backslashes escaped as Rust escapes them (`\n`, `\u{1b}`), and cut after
/// [`SHOWN_CHARS`] characters: `"aaaa..." (1048576 bytes)`.
pub(crate) struct Shown<'a>(pub(crate) &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(SHOWN_CHARS) {
            for e in c.escape_debug() {
                f.write_char(e)?;
            }
        }
        if chars.next().is_some() {
            write!(f, "\"...({} bytes)", self.0.len())
        } else {
            f.write_char('"')
        }
    }
}

/// `s` as messages show a value from a file (see [`Shown`]).
pub(crate) fn shown(s: &str) -> Shown<'_> {
    Shown(s)
}

/// `text` made safe for one log line: control characters escaped and the whole cut after
/// `max` characters. Values are cut with [`shown`] where they are put in a message; this is
/// for text that comes whole from elsewhere (a parser's error message).
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 16));
    for (n, c) in text.chars().enumerate() {
        if n == max {
            let _ = write!(out, "...({} bytes)", text.len());
            return out;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// One problem at one key path.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PathError {
    /// The key path as an operator writes it (`records.www.A[1]`).
    pub(crate) path: String,
    /// What is wrong there, and what was expected.
    pub(crate) message: String,
}

/// Collected errors of one file.
#[derive(Default, Debug)]
pub(crate) struct Errors {
    /// In the order found.
    pub(crate) list: Vec<PathError>,
}

impl Errors {
    /// Records `message` at `path`.
    pub(crate) fn add(&mut self, path: &str, message: impl Into<String>) {
        self.list.push(PathError {
            path: path.to_string(),
            message: message.into(),
        });
    }
}

/// Joins a key onto a path the way an operator would write it (`a.b`, `a."x y"`).
pub(crate) fn join(path: &str, key: &str) -> String {
    let simple = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let mut s = String::with_capacity(path.len() + key.len() + 3);
    s.push_str(path);
    if !path.is_empty() {
        s.push('.');
    }
    if simple && key.len() <= SHOWN_CHARS {
        s.push_str(key);
    } else {
        let _ = write!(s, "{}", shown(key));
    }
    s
}

/// Path of element `i` of the array at `path`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Human name of a TOML value's type, for "expected X, found Y" messages.
pub(crate) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A table being read: hands out values by key and reports the keys nobody asked for.
pub(crate) struct Table<'a> {
    table: &'a DeTable<'a>,
    /// The path of this table in its file (empty for the top table).
    pub(crate) path: String,
    used: Vec<&'a str>,
}

impl<'a> Table<'a> {
    /// Starts reading `table`, found at `path`.
    pub(crate) fn new(table: &'a DeTable<'a>, path: impl Into<String>) -> Self {
        Table {
            table,
            path: path.into(),
            used: Vec::new(),
        }
    }

    /// Wraps `v` as a table, or reports what it is instead.
    pub(crate) fn from_value(v: &'a DeValue<'a>, path: String, errs: &mut Errors) -> Option<Self> {
        match v {
            DeValue::Table(t) => Some(Table::new(t, path)),
            other => {
                errs.add(
                    &path,
                    format!("expected a table, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// Is `key` present (used or not)?
    pub(crate) fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// The path of `key` in this table, as messages name it.
    pub(crate) fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The raw value at `key`, marking it used.
    pub(crate) fn get(&mut self, key: &str) -> Option<&'a DeValue<'a>> {
        let (k, v) = self.table.get_key_value(key)?;
        self.used.push(k.get_ref());
        Some(v.get_ref())
    }

    /// Every entry, marking all used (for maps keyed by operator-chosen names).
    pub(crate) fn entries(&mut self) -> impl Iterator<Item = (&'a str, &'a DeValue<'a>)> + use<'a> {
        let table = self.table;
        for k in table.keys() {
            self.used.push(k.get_ref());
        }
        table
            .iter()
            .map(|(k, v)| (k.get_ref().as_ref(), v.get_ref()))
    }

    /// The string at `key`, if present; anything else is reported.
    pub(crate) fn str(&mut self, key: &str, errs: &mut Errors) -> Option<&'a str> {
        match self.get(key)? {
            DeValue::String(s) => Some(s.as_ref()),
            other => {
                errs.add(
                    &self.key_path(key),
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// The string at `key`; a missing key is reported as required.
    pub(crate) fn required_str(&mut self, key: &str, errs: &mut Errors) -> Option<&'a str> {
        if !self.table.contains_key(key) {
            errs.add(&self.key_path(key), "is required (a string)");
            return None;
        }
        self.str(key, errs)
    }

    /// An integer within `lo..=hi`.
    pub(crate) fn int(&mut self, key: &str, lo: i64, hi: i64, errs: &mut Errors) -> Option<i64> {
        match self.get(key)? {
            v @ DeValue::Integer(raw) => match integer(v) {
                Some(i) if (lo..=hi).contains(&i) => Some(i),
                Some(i) => {
                    errs.add(
                        &self.key_path(key),
                        format!("{i} is out of range (expected {lo}..={hi})"),
                    );
                    None
                }
                None => {
                    errs.add(
                        &self.key_path(key),
                        format!("{raw} is out of range (expected {lo}..={hi})"),
                    );
                    None
                }
            },
            other => {
                errs.add(
                    &self.key_path(key),
                    format!("expected an integer, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// A non-negative integer that fits `u32`.
    pub(crate) fn u32(&mut self, key: &str, errs: &mut Errors) -> Option<u32> {
        self.int(key, 0, i64::from(u32::MAX), errs)
            .map(|i| i as u32)
    }

    /// A number (integer or float) within `lo..=hi`.
    pub(crate) fn float(&mut self, key: &str, lo: f64, hi: f64, errs: &mut Errors) -> Option<f64> {
        let v = match self.get(key)? {
            v @ (DeValue::Integer(_) | DeValue::Float(_)) => match number(v) {
                Some(n) => n,
                None => {
                    errs.add(
                        &self.key_path(key),
                        format!("{} is out of range (expected {lo}..={hi})", written(v)),
                    );
                    return None;
                }
            },
            other => {
                errs.add(
                    &self.key_path(key),
                    format!("expected a number, found {}", type_name(other)),
                );
                return None;
            }
        };
        if !(lo..=hi).contains(&v) {
            errs.add(
                &self.key_path(key),
                format!("{v} is out of range (expected {lo}..={hi})"),
            );
            return None;
        }
        Some(v)
    }

    /// The boolean at `key`, if present; anything else is reported.
    pub(crate) fn bool(&mut self, key: &str, errs: &mut Errors) -> Option<bool> {
        match self.get(key)? {
            DeValue::Boolean(b) => Some(*b),
            other => {
                errs.add(
                    &self.key_path(key),
                    format!("expected true or false, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// A sub-table at `key`.
    pub(crate) fn table(&mut self, key: &str, errs: &mut Errors) -> Option<Table<'a>> {
        let path = self.key_path(key);
        let v = self.get(key)?;
        Table::from_value(v, path, errs)
    }

    /// An array of strings (a single string is accepted as a one-element list).
    pub(crate) fn str_list(
        &mut self,
        key: &str,
        errs: &mut Errors,
    ) -> Option<Vec<(String, &'a str)>> {
        let path = self.key_path(key);
        let v = self.get(key)?;
        str_list(v, &path, errs)
    }

    /// A duration such as `"5s"`, `"250ms"`, `"2m"`, or an integer number of seconds.
    pub(crate) fn duration(&mut self, key: &str, errs: &mut Errors) -> Option<std::time::Duration> {
        let path = self.key_path(key);
        let v = self.get(key)?;
        match (v, integer(v)) {
            (DeValue::Integer(_), Some(i)) if i >= 0 => {
                Some(std::time::Duration::from_secs(i as u64))
            }
            (DeValue::Integer(raw), None) => {
                errs.add(
                    &path,
                    format!("{raw} is out of range (a number of seconds)"),
                );
                None
            }
            (DeValue::String(s), _) => match parse_duration(s) {
                Some(d) => Some(d),
                None => {
                    errs.add(&path, format!("{} is not a duration (expected e.g. \"500ms\", \"5s\", \"2m\", \"1h\")", shown(s)));
                    None
                }
            },
            (other, _) => {
                errs.add(
                    &path,
                    format!(
                        "expected a duration string such as \"5s\", found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    /// Reports every key that was not asked for; `expected` lists the known ones.
    pub(crate) fn finish(self, expected: &[&str], errs: &mut Errors) {
        for k in self.table.keys() {
            let k: &str = k.get_ref();
            if !self.used.contains(&k) {
                let mut msg = String::from("unknown key");
                if !expected.is_empty() {
                    msg.push_str(" (expected one of: ");
                    msg.push_str(&expected.join(", "));
                    msg.push(')');
                }
                errs.add(&join(&self.path, k), msg);
            }
        }
    }
}

/// Reads a list of strings, returning each with its own path.
pub(crate) fn str_list<'a>(
    v: &'a DeValue<'a>,
    path: &str,
    errs: &mut Errors,
) -> Option<Vec<(String, &'a str)>> {
    match v {
        DeValue::String(s) => Some(vec![(path.to_string(), s.as_ref())]),
        DeValue::Array(a) => {
            let mut out = Vec::with_capacity(a.len());
            for (i, item) in items(a).enumerate() {
                match item {
                    DeValue::String(s) => out.push((index(path, i), s.as_ref())),
                    other => errs.add(
                        &index(path, i),
                        format!("expected a string, found {}", type_name(other)),
                    ),
                }
            }
            Some(out)
        }
        other => {
            errs.add(
                path,
                format!("expected a list of strings, found {}", type_name(other)),
            );
            None
        }
    }
}

/// Parses `"500ms"`, `"5s"`, `"2m"`, `"1h"`, `"1.5s"`.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    Some(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("5s"),
            Some(std::time::Duration::from_secs(5))
        );
        assert_eq!(
            parse_duration("250ms"),
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration("2m"),
            Some(std::time::Duration::from_secs(120))
        );
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn values_in_messages_are_cut_and_escaped() {
        assert_eq!(shown("a\tb\u{1b}\"").to_string(), r#""a\tb\u{1b}\"""#);
        let long = "é".repeat(100);
        assert_eq!(
            shown(&long).to_string(),
            format!("\"{}\"...(200 bytes)", "é".repeat(SHOWN_CHARS))
        );
        assert_eq!(one_line("a\nb", 10), "a\\nb");
        assert_eq!(one_line("abcdef", 3), "abc...(6 bytes)");
        assert_eq!(
            join("records", &"k".repeat(100)).len(),
            "records.".len() + 80
        );
    }

    #[test]
    fn paths_quote_odd_keys() {
        assert_eq!(join("records", "www"), "records.www");
        assert_eq!(join("records", "@"), "records.\"@\"");
        assert_eq!(join("", "origin"), "origin");
    }

    #[test]
    fn unknown_keys_and_types_are_all_reported() {
        let t = parse("a = 1\nb = \"x\"\nc = true").unwrap();
        let mut errs = Errors::default();
        let mut tb = Table::new(&t, "");
        assert_eq!(tb.str("a", &mut errs), None);
        tb.finish(&["a"], &mut errs);
        let paths: Vec<_> = errs.list.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "b", "c"]);
    }
}
