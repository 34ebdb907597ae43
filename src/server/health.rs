//! The probe workers and the health aggregator of the running configuration.
//!
//! One `HealthRuntime` per set of datacenters: a reload that leaves every datacenter and check
//! as it was keeps it (and so every target's counters); a reload that changes them stops it —
//! the aggregator writes its state files — and starts a new one that reads them back, so admin
//! states and the health of unchanged targets carry over.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};

use crate::health::Snapshot;
use crate::health::aggregator::{Aggregator, AggregatorHandle, AggregatorSettings};
use crate::metrics::Metrics;
use crate::probe::{DatacenterProbe, ProbeSet, Prober, WorkerSettings, Workers, spawn_workers};

/// Probes and aggregator for one set of datacenters.
pub struct HealthRuntime {
    pub handle: AggregatorHandle,
    /// The datacenters this runtime was built for (to tell whether a reload changed them).
    pub probes: Vec<DatacenterProbe>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    workers: Workers,
}

impl HealthRuntime {
    /// Builds the probe set, restores state from the state dir, publishes the first snapshot
    /// into `out` and starts probing.
    pub fn start(
        probes: &[DatacenterProbe],
        settings: AggregatorSettings,
        workers: WorkerSettings,
        out: Arc<ArcSwap<Snapshot>>,
        metrics: Arc<Metrics>,
    ) -> Result<HealthRuntime, String> {
        let set = Arc::new(ProbeSet::build(probes).map_err(|e| format!("health checks: {e}"))?);
        let prober = Arc::new(Prober::new(&set).map_err(|e| format!("health checks: {e}"))?);
        let (mut agg, handle) =
            Aggregator::new(set.clone(), settings, out).map_err(|e| format!("state: {e}"))?;
        agg.set_metrics(metrics);
        let (stop, stop_rx) = watch::channel(false);
        // Room for a full round of results: probes never wait on a slow aggregator for long.
        let (tx, rx) = mpsc::channel(set.targets.len().max(64) * 2);
        let workers = spawn_workers(&set, prober, workers, tx, stop_rx.clone());
        let task = tokio::spawn(agg.run(rx, stop_rx));
        Ok(HealthRuntime {
            handle,
            probes: probes.to_vec(),
            stop,
            task,
            workers,
        })
    }

    /// Stops probing; the aggregator applies what is queued, publishes and writes its state.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.workers.join().await;
        let _ = self.task.await;
    }
}
