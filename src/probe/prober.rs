//! Running one probe of one target: the per-target state a check kind needs (an HTTP client,
//! built once) and the dispatch to the kind's probe function.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use tokio::time::Instant;

use super::http::{self, ClientKey};
use super::outcome::{ProbeOutcome, ProbeResult};
use super::plan::{ProbeSet, Target};
use super::spec::CheckKind;
use super::tcp;

/// The HTTP clients could not be built (TLS initialisation).
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP probe client: {0}")]
pub struct ProberError(#[from] reqwest::Error);

/// What one target needs to be probed, built once.
#[derive(Debug)]
enum Runner {
    /// `reqwest::Client` is an `Arc` inside: targets with the same settings share one.
    Http(reqwest::Client),
    Tcp,
}

/// Runs probes for the targets of one [`ProbeSet`] (or for targets added at run time).
#[derive(Debug)]
pub struct Prober {
    runners: FxHashMap<u32, Runner>,
}

impl Prober {
    /// Builds what every target of `set` needs (one HTTP client per distinct setting).
    pub fn new(set: &ProbeSet) -> Result<Prober, ProberError> {
        Prober::for_targets(&set.targets)
    }

    /// Builds what `targets` need (a hostname datacenter's new addresses).
    pub fn for_targets(targets: &[Target]) -> Result<Prober, ProberError> {
        let mut built: HashMap<ClientKey, reqwest::Client> = HashMap::new();
        let mut runners = FxHashMap::default();
        for t in targets {
            let runner = match &t.check.kind {
                CheckKind::Http(h) => {
                    let key = ClientKey::of(h, t.addr);
                    let client = match built.get(&key) {
                        Some(c) => c.clone(),
                        None => {
                            let c = key.build()?;
                            built.insert(key, c.clone());
                            c
                        }
                    };
                    Runner::Http(client)
                }
                CheckKind::Tcp(_) => Runner::Tcp,
            };
            runners.insert(t.id.0, runner);
        }
        Ok(Prober { runners })
    }

    /// Probe `target` once; never takes longer than its check's timeout (plus scheduling).
    pub async fn probe(&self, target: &Target) -> ProbeResult {
        let timeout = target.check.timeout;
        let start = Instant::now();
        let runner = self.runners.get(&target.id.0);
        let (outcome, latency, load) = match (&target.check.kind, runner) {
            (CheckKind::Tcp(_), Some(Runner::Tcp)) => {
                let (o, l) = tcp::probe(target.addr, timeout).await;
                (o, l, None)
            }
            (CheckKind::Http(h), Some(Runner::Http(client))) => {
                http::probe(client, target.addr, h, timeout, start).await
            }
            (CheckKind::Tcp(_) | CheckKind::Http(_), _) => (
                ProbeOutcome::Other("target not in this prober's probe set".into()),
                None,
                None,
            ),
        };
        ProbeResult {
            target: target.id,
            outcome,
            latency,
            load,
            at: Instant::now(),
        }
    }
}
