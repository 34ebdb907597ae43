//! The top-level modules of `src/` form layers without cycles (see the crate docs): this reads
//! every `crate::<module>` path in the code (comments aside) and fails on a cycle, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`src/dns/udp.rs` -> `dns`), `None` for the crate
/// root and the binary.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules `text` names through `crate::` (also inside `use crate::{a, b::c}`),
/// comments aside.
fn uses(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => out.extend(group_items(group)),
            None => {
                let id = ident(rest);
                if !id.is_empty() {
                    out.insert(id.to_string());
                }
            }
        }
    }
    out
}

/// The first identifier of each top-level item of a `{ ... }` group starting at `s`.
fn group_items(s: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut depth = 1;
    let mut at_item = true;
    let chars = s.char_indices();
    for (i, c) in chars {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => at_item = true,
            c if depth == 1 && at_item && (c.is_alphanumeric() || c == '_') => {
                at_item = false;
                items.push(ident(&s[i..]).to_string());
            }
            _ => {}
        }
    }
    items
}

/// A cycle in `graph`, if there is one, as the path of modules around it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|x| x == m).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &all {
        let Some(m) = module_of(&src, f) else {
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let deps = graph.entry(m.clone()).or_default();
        for u in uses(&text) {
            if u != m {
                deps.insert(u);
            }
        }
    }
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| known.contains(d));
    }
    graph
}

#[test]
fn top_level_modules_have_no_cycle() {
    let g = graph();
    assert!(g.len() > 10, "found the modules: {g:?}");
    if let Some(c) = find_cycle(&g) {
        panic!("module cycle: {}\nwhole graph: {g:#?}", c.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    // The check above must be able to fail: a made-up graph with a cycle.
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let edge = |g: &mut BTreeMap<String, BTreeSet<String>>, a: &str, b: &str| {
        g.entry(a.into()).or_default().insert(b.into());
    };
    edge(&mut g, "dns", "model");
    edge(&mut g, "model", "net");
    assert_eq!(find_cycle(&g), None);
    edge(&mut g, "net", "dns");
    assert_eq!(
        find_cycle(&g),
        Some(vec![
            "dns".into(),
            "model".into(),
            "net".into(),
            "dns".into()
        ])
    );
    // Grouped imports over several lines count too.
    let deps = uses(
        "use crate::{\n    model::Model,\n    net::{self, Family},\n};\nfn f() { crate::rr::TYPE_A }\n// crate::api in a comment\n",
    );
    let want: BTreeSet<String> = ["model", "net", "rr"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(deps, want);
}
