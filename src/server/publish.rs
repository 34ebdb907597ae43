//! One publication: the query path reads the model, the health snapshot, the latency map,
//! the resolved hostname targets and the GeoIP databases from a single [`Serving`] value,
//! swapped whole. They always share one id space, whatever a reload adds, removes or
//! reorders: no query can read one datacenter's health (or one target's addresses) through
//! another's id.
//!
//! ```text
//!  reload ----------swap_model(loaded, geo, new health generation?)--+
//!  aggregator -------health sink (tagged with its generation)--------+--> Publisher (writers
//!  latency map poller --set_latency_text------------------------------+    serialised by a
//!  resolver ---------set_resolved (by name)---------------------------+    mutex, off the
//!                                                                     v    query path)
//!                                       ArcSwap<Serving> --load (one per query, no lock)--> query
//! ```
//!
//! The resolver publishes by name; the publisher re-keys that to the serving model's
//! `HostnameId`s (`Resolutions::build`) whenever either changes, so a reload that adds,
//! removes or reorders targets is served with the table of its own ids at once (names it
//! shares with the old model keep their addresses; new ones are pending until resolved).
//!
//! Health generations: each probe runtime (one per set of datacenters) publishes through a
//! sink tagged with its generation. Snapshots of the serving generation are published at
//! once; those of a newer generation (a runtime started for a model not swapped in yet) are
//! kept aside and published with that model; older ones (a stopped runtime's last words) are
//! dropped. The latency map is kept as the text of the last good file and resolved again
//! against every new model, so its ids always match too.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use arc_swap::{ArcSwap, Guard};

use super::Loaded;
use crate::config::latency_map::{self, LatencyMapError, MapFormat};
use crate::geo::GeoDb;
use crate::health::{Publish, Snapshot};
use crate::model::{LatencyMap, Resolutions};
use crate::resolve::ResolvedNames;

/// Everything one query reads, from one publication.
pub struct Serving {
    /// The model and the metric slots of its zones and names.
    pub loaded: Arc<Loaded>,
    /// Health in the model's datacenter ids, with the latency map and the hostname
    /// resolutions of the model.
    pub snapshot: Arc<Snapshot>,
    /// GeoIP databases.
    pub(crate) geo: Arc<GeoDb>,
}

/// The text of a latency map file that parsed against a model.
#[derive(Clone)]
struct LatencyText {
    path: PathBuf,
    text: Arc<str>,
    format: MapFormat,
}

struct Writers {
    /// Generation of the probe runtime whose snapshots match the serving model.
    health_gen: u64,
    /// The last snapshot of that runtime (without latency map).
    health: Arc<Snapshot>,
    /// The latest snapshot of a newer runtime, waiting for its model.
    pending: Option<(u64, Arc<Snapshot>)>,
    latency: Option<LatencyText>,
    latency_map: Option<Arc<LatencyMap>>,
    /// The resolver's latest results, by name.
    resolved: Arc<ResolvedNames>,
    /// `resolved` keyed by the serving model's hostname ids.
    resolutions: Arc<Resolutions>,
}

/// Holds the current [`Serving`] and the writers' state.
pub struct Publisher {
    current: ArcSwap<Serving>,
    writers: Mutex<Writers>,
}

impl Publisher {
    /// Starts serving `loaded` with `health` (of health generation `health_gen`).
    pub fn new(
        loaded: Arc<Loaded>,
        geo: Arc<GeoDb>,
        health_gen: u64,
        health: Arc<Snapshot>,
    ) -> Publisher {
        let resolutions = Arc::new(loaded.model.initial_resolutions());
        let w = Writers {
            health_gen,
            health,
            pending: None,
            latency: None,
            latency_map: None,
            resolved: Arc::default(),
            resolutions,
        };
        Publisher {
            current: ArcSwap::from_pointee(Serving {
                loaded,
                snapshot: Self::with_map(&w, &w.health),
                geo,
            }),
            writers: Mutex::new(w),
        }
    }

    /// What a query reads (one atomic load, no lock).
    #[inline]
    pub fn load(&self) -> Guard<Arc<Serving>> {
        self.current.load()
    }

    fn writers(&self) -> MutexGuard<'_, Writers> {
        self.writers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The snapshot a query should see: `health` with the resolved latency map and the
    /// hostname resolutions.
    fn with_map(w: &Writers, health: &Arc<Snapshot>) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            latency_map: w.latency_map.clone(),
            resolutions: Some(w.resolutions.clone()),
            ..(**health).clone()
        })
    }

    fn store(&self, w: &Writers, loaded: Arc<Loaded>, geo: Arc<GeoDb>) {
        self.current.store(Arc::new(Serving {
            loaded,
            snapshot: Self::with_map(w, &w.health),
            geo,
        }));
    }

    /// The health generation whose snapshots are served now.
    pub fn health_generation(&self) -> u64 {
        self.writers().health_gen
    }

    /// A sink for the aggregator of probe runtime generation `health_gen`.
    pub fn health_sink(self: &Arc<Self>, health_gen: u64) -> Arc<dyn Publish> {
        Arc::new(HealthSink {
            publisher: Arc::downgrade(self),
            health_gen,
        })
    }

    fn publish_health(&self, health_gen: u64, snap: Arc<Snapshot>) {
        let mut w = self.writers();
        if health_gen == w.health_gen {
            w.health = snap;
            let cur = self.current.load();
            self.store(&w, cur.loaded.clone(), cur.geo.clone());
        } else if health_gen > w.health_gen {
            w.pending = Some((health_gen, snap));
        }
    }

    /// Publishes a new model (and GeoIP databases). With `health_gen`, the model comes with a
    /// new probe runtime of that generation, whose latest snapshot (published to its sink
    /// before this call) is the health served with it; without, the datacenter ids are those
    /// of the serving model and its health stays. The latency map is resolved against the new
    /// model; a map that no longer resolves is dropped (and the error returned for the log).
    pub fn swap_model(
        &self,
        loaded: Arc<Loaded>,
        geo: Arc<GeoDb>,
        health_gen: Option<u64>,
    ) -> Result<(), LatencyMapError> {
        let mut w = self.writers();
        if let Some(g) = health_gen {
            let snap = match w.pending.take() {
                Some((pg, s)) if pg == g => s,
                // A runtime always publishes once when it starts; without that, all-up is the
                // startup assumption for the new ids.
                _ => Arc::new(Snapshot::all_up(loaded.model.datacenters.list.len())),
            };
            w.health_gen = g;
            w.health = snap;
        }
        w.resolutions = Arc::new(Resolutions::build(
            &loaded.model.hostnames,
            &w.resolved,
            loaded.model.loaded_at,
        ));
        let result = match w.latency.clone() {
            Some(t) => match resolve(&t, &loaded) {
                Ok(map) => {
                    w.latency_map = Some(Arc::new(map));
                    Ok(())
                }
                Err(e) => {
                    w.latency_map = None;
                    Err(e)
                }
            },
            None => Ok(()),
        };
        self.store(&w, loaded, geo);
        result
    }

    /// A latency map file's text: parsed against the serving model and published with it, or
    /// the error (the previous map stays).
    pub fn set_latency_text(
        &self,
        path: PathBuf,
        text: String,
        format: MapFormat,
    ) -> Result<(), LatencyMapError> {
        let mut w = self.writers();
        let cur = self.current.load_full();
        let t = LatencyText {
            path,
            text: text.into(),
            format,
        };
        let map = resolve(&t, &cur.loaded)?;
        w.latency = Some(t);
        w.latency_map = Some(Arc::new(map));
        self.store(&w, cur.loaded.clone(), cur.geo.clone());
        Ok(())
    }
}

impl Publisher {
    /// The resolver's latest results: re-keyed to the serving model and published with it.
    pub fn set_resolved(&self, names: Arc<ResolvedNames>) {
        let mut w = self.writers();
        let cur = self.current.load_full();
        w.resolutions = Arc::new(Resolutions::build(
            &cur.loaded.model.hostnames,
            &names,
            cur.loaded.model.loaded_at,
        ));
        w.resolved = names;
        self.store(&w, cur.loaded.clone(), cur.geo.clone());
    }
}

fn resolve(t: &LatencyText, loaded: &Loaded) -> Result<LatencyMap, LatencyMapError> {
    let dcs = &loaded.model.datacenters;
    latency_map::parse(&t.path, &t.text, t.format, |n| dcs.id_of(n))
}

/// The aggregator's way into the publisher; holds it weakly so a forgotten runtime cannot
/// keep a stopped server alive.
struct HealthSink {
    publisher: Weak<Publisher>,
    health_gen: u64,
}

impl Publish for HealthSink {
    fn publish(&self, snap: Arc<Snapshot>) {
        if let Some(p) = self.publisher.upgrade() {
            p.publish_health(self.health_gen, snap);
        }
    }
}
