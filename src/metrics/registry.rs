//! Storage for counters: sharded, cache-line padded atomics in chunks that are allocated at
//! registration time (off the query path) and published through `OnceLock`, plus the label
//! interner that turns label sets into integer slots.

use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Counters per 128-byte cache line.
const LANES: usize = 16;

#[repr(align(128))]
pub(super) struct Line([AtomicU64; LANES]);

impl Line {
    fn new() -> Line {
        Line(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// Most shards the registry uses, whatever the core count (bounds memory per slot).
pub(super) const MAX_SHARDS: usize = 16;
/// Chunks per family: the slot capacity is `MAX_CHUNKS * chunk_slots`.
const MAX_CHUNKS: usize = 4096;

/// One chunk of a family: per shard, the lines holding `chunk_slots * width` counters.
type Chunk = Box<[Box<[Line]>]>;

/// A sharded, growable matrix of counters: `slot x width`, one copy per shard.
pub(super) struct Counters {
    width: usize,
    shards: usize,
    chunk_slots: usize,
    /// `chunks[c][shard]` holds slots `c*chunk_slots ..` of that shard, `width` counters each.
    chunks: Box<[OnceLock<Chunk>]>,
}

impl Counters {
    pub(super) fn new(width: usize, shards: usize, chunk_slots: usize) -> Counters {
        Counters {
            width,
            shards,
            chunk_slots,
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
        }
    }

    fn capacity(&self) -> usize {
        MAX_CHUNKS * self.chunk_slots
    }

    /// Allocates the chunk that holds `slot` (registration path, never the query path).
    pub(super) fn ensure(&self, slot: u32) {
        let lines = (self.chunk_slots * self.width).div_ceil(LANES);
        if let Some(cell) = self.chunks.get(slot as usize / self.chunk_slots) {
            cell.get_or_init(|| {
                (0..self.shards)
                    .map(|_| (0..lines).map(|_| Line::new()).collect())
                    .collect()
            });
        }
    }

    #[inline]
    fn cell(&self, shard: usize, slot: u32, j: usize) -> Option<&AtomicU64> {
        let slot = slot as usize;
        let chunk = self.chunks.get(slot / self.chunk_slots)?.get()?;
        let i = (slot % self.chunk_slots) * self.width + j;
        let line = chunk.get(shard)?.get(i / LANES)?;
        Some(&line.0[i % LANES])
    }

    #[inline]
    pub(super) fn add(&self, shard: usize, slot: u32, j: usize, v: u64) {
        if let Some(c) = self.cell(shard, slot, j) {
            c.fetch_add(v, Relaxed);
        }
    }

    pub(super) fn sum(&self, slot: u32, j: usize) -> u64 {
        (0..self.shards)
            .filter_map(|s| self.cell(s, slot, j))
            .map(|c| c.load(Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

/// Most labels of a family's label set (`gslbd_gslb_decisions_total`: name, pool, datacenter).
pub(super) const MAX_LABELS: usize = 3;

/// A label set as ids into [`Interner::strings`]; unused positions are 0 (the empty string).
pub(super) type LabelIds = [u32; MAX_LABELS];

/// Label sets of one family and their slots.
///
/// Each distinct label value is stored once and a label set is a few integers: registering
/// 100 k GSLB names is about 600 k label sets at every start and reload, and with a `Vec` of
/// `String`s per set (stored twice, in the map and in the slot list) the allocations were
/// most of the start after the files were read (docs/benchmarks.md 11a). FxHash: the labels
/// are the operator's configuration, not query input.
struct Interner {
    /// Label value -> id (id 0 is the empty string).
    ids: FxHashMap<Arc<str>, u32>,
    /// Id -> label value.
    strings: Vec<Arc<str>>,
    /// Label set -> slot.
    slots: FxHashMap<LabelIds, u32>,
    /// Slot -> label set.
    sets: Vec<LabelIds>,
    overflow_logged: bool,
}

impl Default for Interner {
    fn default() -> Interner {
        let empty: Arc<str> = Arc::from("");
        Interner {
            ids: FxHashMap::from_iter([(empty.clone(), 0)]),
            strings: vec![empty],
            slots: FxHashMap::default(),
            sets: Vec::new(),
            overflow_logged: false,
        }
    }
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        let s: Arc<str> = Arc::from(s);
        self.strings.push(s.clone());
        self.ids.insert(s, id);
        id
    }
}

/// A family's interner, locked ([`Family::register`]).
pub(super) struct Registrar<'a> {
    interner: &'a mut Interner,
    counters: &'a Counters,
    what: &'static str,
}

impl Registrar<'_> {
    /// The id of label value `s`.
    pub(super) fn id(&mut self, s: &str) -> u32 {
        self.interner.id(s)
    }

    /// The slot of the label set `key` (ids from [`Registrar::id`]), allocating one (and its
    /// storage) the first time.
    pub(super) fn slot(&mut self, key: LabelIds) -> u32 {
        let i = &mut *self.interner;
        let next = i.sets.len();
        // One hash per label set: look up and insert through the same entry.
        let entry = match i.slots.entry(key) {
            Entry::Occupied(e) => return *e.get(),
            Entry::Vacant(e) => e,
        };
        let Ok(s) = u32::try_from(next) else {
            return NO_SLOT;
        };
        if next >= self.counters.capacity() || s == NO_SLOT {
            if !i.overflow_logged {
                i.overflow_logged = true;
                tracing::warn!(
                    family = self.what,
                    "metrics label capacity reached; not counted"
                );
            }
            return NO_SLOT;
        }
        self.counters.ensure(s);
        i.sets.push(key);
        entry.insert(s);
        s
    }
}

/// The label sets of a family at one moment, in slot order ([`Family::labels`]).
pub(super) struct LabelSets {
    strings: Vec<Arc<str>>,
    sets: Vec<LabelIds>,
}

impl LabelSets {
    /// `(slot, labels)` of every slot; positions a family does not use are `""`.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, [&str; MAX_LABELS])> + '_ {
        let text = |id: u32| self.strings.get(id as usize).map_or("", |s| &**s);
        self.sets
            .iter()
            .enumerate()
            .map(move |(slot, ids)| (slot as u32, ids.map(text)))
    }
}

/// One labelled counter family with sharded storage.
pub(super) struct Family {
    interner: Mutex<Interner>,
    pub(super) counters: Counters,
}

impl Family {
    pub(super) fn new(width: usize, shards: usize, chunk_slots: usize) -> Family {
        Family {
            interner: Mutex::new(Interner::default()),
            counters: Counters::new(width, shards, chunk_slots),
        }
    }

    /// The slot of `labels` (at most [`MAX_LABELS`]; a family always passes the same number),
    /// allocating one (and its storage) the first time.
    pub(super) fn slot(&self, what: &'static str, labels: &[&str]) -> u32 {
        debug_assert!(labels.len() <= MAX_LABELS);
        self.register(what, |r| {
            let mut key: LabelIds = [0; MAX_LABELS];
            for (k, l) in key.iter_mut().zip(labels) {
                *k = r.id(l);
            }
            r.slot(key)
        })
    }

    /// Runs `f` with the family's interner locked: for many label sets sharing values (the
    /// decisions of one GSLB name), each shared value is looked up once.
    pub(super) fn register<R>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Registrar<'_>) -> R,
    ) -> R {
        let mut guard = lock(&self.interner);
        f(&mut Registrar {
            interner: &mut guard,
            counters: &self.counters,
            what,
        })
    }

    /// Every label set so far, in slot order.
    pub(super) fn labels(&self) -> LabelSets {
        let i = lock(&self.interner);
        LabelSets {
            strings: i.strings.clone(),
            sets: i.sets.clone(),
        }
    }
}

/// A poisoned lock only means a panic elsewhere while counting; the counts are still usable.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A slot that counts nothing (capacity exhausted, or an id unknown to the slot table).
pub(super) const NO_SLOT: u32 = u32::MAX;

/// A histogram with fixed bounds and plain atomics (not on the query path).
pub(super) struct Hist {
    pub(super) buckets: Box<[AtomicU64]>,
    pub(super) sum_ns: AtomicU64,
}

impl Hist {
    pub(super) fn new(bounds: usize) -> Hist {
        Hist {
            buckets: (0..=bounds).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_get_one_slot_each_and_read_back() {
        let f = Family::new(1, 2, 64);
        let a = f.slot("t", &["www.", "eu", "fra"]);
        let b = f.slot("t", &["www.", "eu", "ams"]);
        let c = f.register("t", |r| {
            let (name, pool, dc) = (r.id("www."), r.id("eu"), r.id("fra"));
            r.slot([name, pool, dc])
        });
        assert_eq!((a, b, c), (0, 1, 0));
        // A value in another position is the same string, a different set.
        assert_eq!(f.slot("t", &["eu", "www.", "fra"]), 2);
        f.counters.add(1, b, 0, 5);
        let sets = f.labels();
        let got: Vec<(u32, [&str; MAX_LABELS])> = sets.iter().collect();
        assert_eq!(
            got,
            [
                (0, ["www.", "eu", "fra"]),
                (1, ["www.", "eu", "ams"]),
                (2, ["eu", "www.", "fra"]),
            ]
        );
        assert_eq!(f.counters.sum(b, 0), 5);
        // Fewer labels than the maximum read back as empty strings.
        let g = Family::new(1, 1, 64);
        assert_eq!(g.slot("t", &["none"]), 0);
        assert_eq!(g.labels().iter().next(), Some((0, ["none", "", ""])));
    }
}
