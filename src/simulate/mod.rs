//! `gslbd simulate`: what-if runs of the real decision code over virtual time.
//!
//! Nothing here models gslbd: the zones go through `config::load` (the one build step), the
//! probe results go through the real `health::aggregator` (rise/fall, min-up, admin, slow
//! start, health-aware TTL, coalesced publication), and every client query that reaches
//! gslbd goes through `gslb::client_for` (ECS or resolver address, GeoIP lookup),
//! `policy::select` and `gslb::response_scope`, exactly as on the query path. What is
//! modelled is the world around it: when probes run and what they find (the ground truth of
//! the scenario, with the workers' jitter schedule), and the clients with the resolver caches
//! in front of them.
//!
//! ```text
//!  scenario.toml ──scenario.rs──> populations, ground truth, events, run settings
//!        │
//!        ├─ truth.rs: down periods, latency, background load per datacenter and address
//!        ├─ probes.rs: each target's jittered schedule (probe::Jitter, as the workers) ──┐
//!        │            outcome from the ground truth + probe loss, load from the traffic   │
//!        │                                                                  ProbeResult   v
//!        │                       health::aggregator::Aggregator::apply / tick / admin_command
//!        │                                          │ publish (coalesced) -> Snapshot
//!        v                                          v
//!  clients.rs: client subnets (GeoIP regions), resolvers ──engine.rs (events in time order)──
//!        cache by TTL and ECS scope; a query after expiry asks gslbd:
//!        gslb::client_for -> policy::select -> gslb::response_scope -> answer, TTL, scope
//!        │
//!        v
//!  report.rs: shares over time, detection and drain per incident, load, flips, regions
//!        ├─ chart.rs: one SVG per name (one line per datacenter, events marked)
//!        └─ check.rs: `--check "max_time_to_drain(\"fra\") < 45s"` -> exit 1 when false
//! ```
//!
//! Time is virtual: the aggregator gets `Instant`s built from a base instant plus the
//! simulated offset, and is driven synchronously, so an hour of traffic runs in seconds and
//! the same seed gives the same report. Client queries are a Poisson process per client
//! subnet and name; between two of its queries a client holds the answer its resolver
//! cached, so only cache misses cost a decision and counts are expected values (see
//! docs/simulate.md for the model and its limits).

mod chart;
pub mod check;
mod clients;
mod engine;
mod probes;
pub mod report;
pub mod scenario;
mod tally;
mod truth;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use check::{Check, CheckError, CheckOutcome};
pub use report::Report;
pub use scenario::{Scenario, ScenarioErrors};

use crate::config::ConfigErrors;
use crate::geo::GeoDb;
use crate::mix::{GOLDEN, mix64, unit_f64};

/// Why a simulation could not run (the command exits 2 on every one of these).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario has mistakes (each with its key path and line).
    #[error("{0}")]
    Scenario(#[from] ScenarioErrors),
    /// The zones (or those of a zone change) do not load.
    #[error("zones {}: invalid configuration:\n{errors}", dir.display())]
    Zones {
        /// The zones directory.
        dir: PathBuf,
        /// Every error.
        errors: ConfigErrors,
    },
    /// Writing the output files failed.
    #[error("{}: {source}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
}

/// Runs `scenario` against the zones in `zones`, looking clients up in `geo`.
pub fn run(zones: &Path, scenario: &Scenario, geo: &GeoDb) -> Result<Report, SimError> {
    engine::Engine::build(zones, scenario, geo)?.run()
}

/// Writes the report's files into `dir` (created if needed): `summary.txt`, `summary.json`,
/// `shares.csv`, `load.csv`, one chart per GSLB name (`<name>.svg`) and `load.svg`.
/// Returns the paths written.
pub fn write_outputs(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, SimError> {
    let out = |path: PathBuf, text: String| -> Result<PathBuf, SimError> {
        std::fs::write(&path, text).map_err(|source| SimError::Output {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    };
    std::fs::create_dir_all(dir).map_err(|source| SimError::Output {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = vec![
        out(dir.join("summary.txt"), report.to_string())?,
        out(dir.join("summary.json"), report.json())?,
        out(dir.join("shares.csv"), report.shares_csv())?,
        out(dir.join("load.csv"), report.load_csv())?,
    ];
    for (i, n) in report.names.iter().enumerate() {
        let file = format!("{}.svg", n.name.trim_end_matches('.'));
        written.push(out(dir.join(file), chart::shares(report, i))?);
    }
    written.push(out(dir.join("load.svg"), chart::load(report))?);
    Ok(written)
}

/// Simulated time: nanoseconds since the start of the run (the start of the warm-up).
pub(crate) type Ns = u64;

/// A duration as [`Ns`].
pub(crate) fn ns(d: Duration) -> Ns {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// [`Ns`] as seconds.
pub(crate) fn secs(t: Ns) -> f64 {
    t as f64 / 1e9
}

/// Seconds as [`Ns`] (negative and NaN as 0).
pub(crate) fn from_secs(s: f64) -> Ns {
    if s.is_finite() && s > 0.0 {
        (s * 1e9) as Ns
    } else {
        0
    }
}

/// The simulation's random stream (splitmix64, as everywhere in gslbd): the same seed gives
/// the same run.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A stream for `seed`, separated from other streams of the same seed by `salt`.
    pub(crate) fn new(seed: u64, salt: u64) -> Rng {
        Rng(mix64(seed ^ mix64(salt.wrapping_add(GOLDEN))))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }

    /// Uniform in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Exponentially distributed with `rate` per second: the wait for the next event of a
    /// Poisson process.
    pub(crate) fn exp_ns(&mut self, rate: f64) -> Ns {
        let u = 1.0 - self.unit(); // (0, 1]
        from_secs(-u.ln() / rate)
    }
}
