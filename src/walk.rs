//! A path-aware walk over a parsed TOML document.
//!
//! A leaf module (no dependency inside the crate): the config loader reads whole files with it,
//! and each check kind and policy reads its own keys with it, so a kind's keys live with it.
//!
//! serde stops at the first error; operators want every mistake of a file at once, each with
//! the key path that holds it. The walker reads a `toml::Table`, records which keys were used,
//! and collects errors (`records.www.A[1]: ...`) instead of returning early.

use std::fmt::Write;

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
    if simple {
        s.push_str(key);
    } else {
        let _ = write!(s, "{key:?}");
    }
    s
}

/// Path of element `i` of the array at `path`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Human name of a TOML value's type, for "expected X, found Y" messages.
pub(crate) fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// A table being read: hands out values by key and reports the keys nobody asked for.
pub(crate) struct Table<'a> {
    table: &'a toml::Table,
    /// The path of this table in its file (empty for the top table).
    pub(crate) path: String,
    used: Vec<&'a str>,
}

impl<'a> Table<'a> {
    /// Starts reading `table`, found at `path`.
    pub(crate) fn new(table: &'a toml::Table, path: impl Into<String>) -> Self {
        Table {
            table,
            path: path.into(),
            used: Vec::new(),
        }
    }

    /// Wraps `v` as a table, or reports what it is instead.
    pub(crate) fn from_value(v: &'a toml::Value, path: String, errs: &mut Errors) -> Option<Self> {
        match v {
            toml::Value::Table(t) => Some(Table::new(t, path)),
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
    pub(crate) fn get(&mut self, key: &str) -> Option<&'a toml::Value> {
        let (k, v) = self.table.get_key_value(key)?;
        self.used.push(k.as_str());
        Some(v)
    }

    /// Every entry, marking all used (for maps keyed by operator-chosen names).
    pub(crate) fn entries(&mut self) -> impl Iterator<Item = (&'a str, &'a toml::Value)> + use<'a> {
        let table = self.table;
        for k in table.keys() {
            self.used.push(k.as_str());
        }
        table.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The string at `key`, if present; anything else is reported.
    pub(crate) fn str(&mut self, key: &str, errs: &mut Errors) -> Option<&'a str> {
        match self.get(key)? {
            toml::Value::String(s) => Some(s.as_str()),
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
            toml::Value::Integer(i) if (lo..=hi).contains(i) => Some(*i),
            toml::Value::Integer(i) => {
                errs.add(
                    &self.key_path(key),
                    format!("{i} is out of range (expected {lo}..={hi})"),
                );
                None
            }
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
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
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
            toml::Value::Boolean(b) => Some(*b),
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
        match self.get(key)? {
            toml::Value::Integer(i) if *i >= 0 => Some(std::time::Duration::from_secs(*i as u64)),
            toml::Value::String(s) => match parse_duration(s) {
                Some(d) => Some(d),
                None => {
                    errs.add(&path, format!("{s:?} is not a duration (expected e.g. \"500ms\", \"5s\", \"2m\", \"1h\")"));
                    None
                }
            },
            other => {
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
            if !self.used.contains(&k.as_str()) {
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
    v: &'a toml::Value,
    path: &str,
    errs: &mut Errors,
) -> Option<Vec<(String, &'a str)>> {
    match v {
        toml::Value::String(s) => Some(vec![(path.to_string(), s.as_str())]),
        toml::Value::Array(a) => {
            let mut out = Vec::with_capacity(a.len());
            for (i, item) in a.iter().enumerate() {
                match item {
                    toml::Value::String(s) => out.push((index(path, i), s.as_str())),
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
    fn paths_quote_odd_keys() {
        assert_eq!(join("records", "www"), "records.www");
        assert_eq!(join("records", "@"), "records.\"@\"");
        assert_eq!(join("", "origin"), "origin");
    }

    #[test]
    fn unknown_keys_and_types_are_all_reported() {
        let t: toml::Table = toml::from_str("a = 1\nb = \"x\"\nc = true").unwrap();
        let mut errs = Errors::default();
        let mut tb = Table::new(&t, "");
        assert_eq!(tb.str("a", &mut errs), None);
        tb.finish(&["a"], &mut errs);
        let paths: Vec<_> = errs.list.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "b", "c"]);
    }
}
