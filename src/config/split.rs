//! Splitting a big zone file into parts that are parsed one at a time.
//!
//! The TOML parser builds a tree of the whole document, about 2 KB per record section: a file
//! of a million records needed gigabytes while it was read, far more than the model it
//! becomes. So a file's `[records.<name>...]` and `[gslb.<name>...]` sections are parsed in
//! parts of [`PART_SECTIONS`] sections, each walked into specs and dropped before the next
//! (the `gslb` parts on a few threads at once, [`each_part`]); everything else (origin, SOA,
//! datacenters, checks) is the head, parsed as one document.
//!
//! ```text
//! text --TOML lexer (no tree)--> section boundaries and their first two keys
//!      --> head: every other section, concatenated
//!          parts: runs of whole records.* (or gslb.*) sections, slices of the text
//! ```
//!
//! Parts are slices of the text that start at a section header, so each is a TOML document
//! of its own and means what it meant in the file, on one condition this checks: all the
//! sections of one name are next to each other (TOML lets `[gslb.a]` and `[gslb.a.pools.x]`
//! be apart, and a part would then see half of `gslb.a`). Anything else, or any doubt (a key
//! with escapes, an array of tables under `records`, a head that defines `records` or `gslb`
//! itself), and the file is parsed whole as before: the parts are only a way to read the
//! common shape of a big file with less memory, never a different reading of it.

use std::hash::Hasher as _;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use rustc_hash::FxHasher;
use toml_parser::Source;
use toml_parser::lexer::TokenKind;

/// Sections per part.
pub(crate) const PART_SECTIONS: usize = 1024;

/// Most threads reading the parts of one file.
const MAX_THREADS: usize = 4;

/// `f` of every part, in part order. Parts are documents of their own, so they are parsed and
/// walked on up to [`MAX_THREADS`] threads (as many as the machine has cores): a file of
/// 100 k GSLB names is mostly parsing, and this (with the interned metric labels) took its
/// start from 2.75 to 1.24 s on an idle 2-core machine (docs/benchmarks.md 11b). Memory stays
/// bounded by a few parts' trees at a time.
pub(crate) fn each_part<R: Send>(parts: &[&str], f: impl Fn(&str) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(parts.len());
    let next = AtomicUsize::new(0);
    // Takes the next part until none is left: `(index, result)` of the parts it took.
    let work = || {
        let mut mine = Vec::new();
        loop {
            let i = next.fetch_add(1, Relaxed);
            let Some(p) = parts.get(i) else { break };
            mine.push((i, f(p)));
        }
        mine
    };
    let mut out: Vec<Option<R>> = std::iter::repeat_with(|| None).take(parts.len()).collect();
    std::thread::scope(|s| {
        // The calling thread works too; a helper that cannot be started (out of threads or
        // memory) only means fewer helpers, never a failed load.
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("gslbd-read".into())
                    .spawn_scoped(s, work)
                    .ok()
            })
            .collect();
        let mut done = vec![work()];
        for h in helpers {
            // A panic in `f` is a bug: carry it to the caller as if `f` had run here.
            done.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        for (i, r) in done.into_iter().flatten() {
            out[i] = Some(r);
        }
    });
    out.into_iter().flatten().collect()
}

/// A file split for parsing.
#[derive(Debug, Default)]
pub(crate) struct Split<'t> {
    /// Every section but the `records.*` and `gslb.*` ones (and the text before the first
    /// section), in file order.
    pub(crate) head: String,
    /// Runs of whole `records.*` sections.
    pub(crate) records: Vec<&'t str>,
    /// Runs of whole `gslb.*` sections.
    pub(crate) gslb: Vec<&'t str>,
}

/// What a section holds, by its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind<'t> {
    Head,
    Records(&'t str),
    Gslb(&'t str),
}

/// The unquoted text of a key token, when it needs no decoding.
fn plain_key(raw: &str, kind: TokenKind) -> Option<&str> {
    match kind {
        TokenKind::Atom => Some(raw),
        TokenKind::LiteralString => raw.strip_prefix('\'')?.strip_suffix('\''),
        TokenKind::BasicString if !raw.contains('\\') => raw.strip_prefix('"')?.strip_suffix('"'),
        _ => None,
    }
}

/// The run of sections being gathered into a part.
#[derive(Clone, Copy)]
struct Run<'t> {
    /// Where its first section starts.
    start: usize,
    kind: Kind<'t>,
    /// Sections so far.
    sections: usize,
    /// The name of its last section.
    name: &'t str,
}

/// Sections to head and parts, one at a time as the lexer finds them: nothing is kept per
/// section (a list of a million sections was most of what splitting a big file cost).
struct Parts<'t> {
    text: &'t str,
    out: Split<'t>,
    /// A hash of each name at its first section; a name seen again after others is apart
    /// (checked once at the end, on the sorted list: 8 bytes a name).
    names: Vec<u64>,
    run: Option<Run<'t>>,
}

impl<'t> Parts<'t> {
    /// Ends the current run at `end` (the start of the section after it).
    fn end_run(&mut self, end: usize) {
        if let Some(r) = self.run.take() {
            let part = &self.text[r.start..end];
            match r.kind {
                Kind::Records(_) => self.out.records.push(part),
                Kind::Gslb(_) => self.out.gslb.push(part),
                Kind::Head => {}
            }
        }
    }

    /// The section `start..end` of kind `kind`.
    fn section(&mut self, start: usize, kind: Kind<'t>, end: usize) {
        let name = match kind {
            Kind::Head => {
                self.end_run(start);
                self.out.head.push_str(&self.text[start..end]);
                return;
            }
            Kind::Records(n) | Kind::Gslb(n) => n,
        };
        let same_kind = self
            .run
            .is_some_and(|r| std::mem::discriminant(&r.kind) == std::mem::discriminant(&kind));
        let same_name = same_kind && self.run.is_some_and(|r| r.name == name);
        if !same_name {
            let mut h = FxHasher::default();
            h.write_u8(if matches!(kind, Kind::Records(_)) {
                1
            } else {
                2
            });
            h.write(name.as_bytes());
            self.names.push(h.finish());
        }
        if !same_kind || (!same_name && self.run.is_some_and(|r| r.sections >= PART_SECTIONS)) {
            self.end_run(start);
        }
        match &mut self.run {
            Some(r) => {
                r.sections += 1;
                r.name = name;
            }
            None => {
                self.run = Some(Run {
                    start,
                    kind,
                    sections: 1,
                    name,
                })
            }
        }
    }

    /// The split, or `None` when a name's sections are apart.
    fn finish(mut self) -> Option<Split<'t>> {
        self.end_run(self.text.len());
        self.names.sort_unstable();
        if self.names.windows(2).any(|w| w[0] == w[1]) {
            return None;
        }
        Some(self.out)
    }
}

/// Splits `text` into a head and parts, or `None` when it must be parsed whole (see the
/// module doc). A file without `records.*` or `gslb.*` sections splits into a head only.
pub(crate) fn split<'t>(text: &'t str) -> Option<Split<'t>> {
    let mut parts = Parts {
        text,
        out: Split::default(),
        names: Vec::new(),
        run: None,
    };
    // The section being read: where its line starts, and what it holds.
    let mut section: Option<(usize, Kind<'t>)> = None;
    let mut tokens = Source::new(text).lex().peekable();
    let mut line_start = true;
    let mut line_at = 0usize;
    // Brackets and braces open in values (arrays and inline tables may span lines).
    let mut depth = 0usize;
    while let Some(t) = tokens.next() {
        let kind = t.kind();
        match kind {
            TokenKind::Newline => {
                line_start = true;
                line_at = t.span().end();
                continue;
            }
            TokenKind::Whitespace | TokenKind::Comment => continue,
            TokenKind::LeftSquareBracket if line_start && depth == 0 => {
                // A section header: `[a.b...]`, or `[[a.b...]]` (an array of tables).
                let array = tokens
                    .next_if(|n| n.kind() == TokenKind::LeftSquareBracket)
                    .is_some();
                let mut keys: [Option<&str>; 2] = [None, None];
                let mut n = 0;
                loop {
                    let k = tokens.next()?;
                    match k.kind() {
                        TokenKind::Whitespace | TokenKind::Dot => {}
                        TokenKind::RightSquareBracket => break,
                        TokenKind::Atom | TokenKind::LiteralString | TokenKind::BasicString => {
                            let raw = &text[k.span().start()..k.span().end()];
                            let key = plain_key(raw, k.kind());
                            if n < 2 {
                                keys[n] = Some(key?);
                            }
                            n += 1;
                        }
                        _ => return None,
                    }
                }
                if array {
                    tokens.next_if(|n| n.kind() == TokenKind::RightSquareBracket)?;
                }
                let kind = match keys {
                    [Some("records"), Some(name)] => Kind::Records(name),
                    [Some("gslb"), Some(name)] => Kind::Gslb(name),
                    _ => Kind::Head,
                };
                if array && kind != Kind::Head {
                    return None;
                }
                match section {
                    Some((start, k)) => parts.section(start, k, line_at),
                    None => parts.out.head.push_str(&text[..line_at]),
                }
                section = Some((line_at, kind));
                line_start = false;
                continue;
            }
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                depth = depth.saturating_sub(1);
            }
            TokenKind::Eof => break,
            _ => {}
        }
        line_start = false;
    }
    match section {
        Some((start, k)) => parts.section(start, k, text.len()),
        None => parts.out.head.push_str(text),
    }
    parts.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_go_to_the_head_or_to_parts() {
        let text = "origin = \"x.\"\n[soa]\nmname = \"a\"\n[records.a]\nA = [\"1.2.3.4\", [\n]]\n[records.\"b\"]\nA = \"1\"\n[datacenters.d]\nx = 1\n[gslb.g]\nttl = 1\n[gslb.g.pools.p]\ndatacenters = [\"d\"]\n";
        let s = split(text).expect("splits");
        assert_eq!(
            s.head,
            "origin = \"x.\"\n[soa]\nmname = \"a\"\n[datacenters.d]\nx = 1\n"
        );
        assert_eq!(
            s.records,
            ["[records.a]\nA = [\"1.2.3.4\", [\n]]\n[records.\"b\"]\nA = \"1\"\n"]
        );
        assert_eq!(
            s.gslb,
            ["[gslb.g]\nttl = 1\n[gslb.g.pools.p]\ndatacenters = [\"d\"]\n"]
        );
    }

    #[test]
    fn parts_hold_whole_names_and_at_most_part_sections_names() {
        let mut text = String::new();
        for i in 0..PART_SECTIONS + 10 {
            text.push_str(&format!("[records.h{i}]\nA = [\"192.0.2.1\"]\n"));
        }
        let s = split(&text).expect("splits");
        assert_eq!(s.records.len(), 2);
        assert!(s.records[1].starts_with(&format!("[records.h{PART_SECTIONS}]")));
    }

    #[test]
    fn doubtful_files_are_parsed_whole() {
        // The sections of one name apart.
        assert!(split("[gslb.a]\nttl = 1\n[gslb.b]\nttl = 1\n[gslb.a.pools.p]\nx = 1\n").is_none());
        assert!(split("[records.a]\nA = \"1\"\n[soa]\n[records.a]\nAAAA = \"::1\"\n").is_none());
        // An escape in a key, an array of tables under records.
        assert!(split("[records.\"\\u0061\"]\nA = \"1\"\n").is_none());
        assert!(split("[[records.a]]\nA = \"1\"\n").is_none());
        // A header that does not end.
        assert!(split("[records.a\nA = \"1\"\n").is_none());
        // `[` in strings, comments and arrays at the start of a line is not a header.
        let s = split("a = \"\"\"\n[records.x]\n\"\"\"\n# [records.y]\nb = [\n[1],\n]\n")
            .expect("splits");
        assert!(s.records.is_empty());
    }
}
