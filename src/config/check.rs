//! Reading `checks.<name>`: each check kind reads its own keys (`probe::http`, `probe::tcp`,
//! dispatched by `CheckSpec::read`); this file only walks the table of checks.

use crate::probe::CheckSpec;
use crate::walk::{Errors, Table, join};

/// `checks.<name>`.
#[derive(Clone, Debug)]
pub(crate) struct CheckEntry {
    /// Its name.
    pub(crate) name: String,
    /// Key path (`checks.web`).
    pub(crate) path: String,
    /// The validated check.
    pub(crate) spec: CheckSpec,
}

/// Reads `checks`.
pub(crate) fn read_checks(mut t: Table<'_>, errs: &mut Errors) -> Vec<CheckEntry> {
    let mut out = Vec::new();
    let path = t.path.clone();
    for (name, v) in t.entries() {
        let p = join(&path, name);
        let Some(c) = Table::from_value(v, p.clone(), errs) else {
            continue;
        };
        if let Some(spec) = CheckSpec::read(c, errs) {
            out.push(CheckEntry {
                name: name.to_string(),
                path: p,
                spec,
            });
        }
    }
    out
}
