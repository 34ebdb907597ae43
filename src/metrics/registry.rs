//! Storage for counters: sharded, cache-line padded atomics in chunks that are allocated at
//! registration time (off the query path) and published through `OnceLock`, plus the label
//! interner that turns label sets into integer slots.

use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, OnceLock};

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

/// Label sets of one family and their slots.
#[derive(Default)]
struct Interner {
    /// FxHash: registering 100 k GSLB names hashes about 600 k label sets at start, and
    /// SipHash made that most of the start after the files were read (docs/benchmarks.md 11).
    slots: FxHashMap<Vec<String>, u32>,
    labels: Vec<Vec<String>>,
    overflow_logged: bool,
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

    /// The slot of `labels`, allocating one (and its storage) the first time.
    pub(super) fn slot(&self, what: &str, labels: Vec<String>) -> u32 {
        let mut guard = lock(&self.interner);
        let i = &mut *guard;
        let next = i.labels.len();
        // One hash per label set: look up and insert through the same entry.
        let entry = match i.slots.entry(labels) {
            Entry::Occupied(e) => return *e.get(),
            Entry::Vacant(e) => e,
        };
        let Ok(s) = u32::try_from(next) else {
            return NO_SLOT;
        };
        if next >= self.counters.capacity() || s == NO_SLOT {
            if !i.overflow_logged {
                i.overflow_logged = true;
                tracing::warn!(family = what, "metrics label capacity reached; not counted");
            }
            return NO_SLOT;
        }
        self.counters.ensure(s);
        i.labels.push(entry.key().clone());
        entry.insert(s);
        s
    }

    pub(super) fn labels(&self) -> Vec<Vec<String>> {
        lock(&self.interner).labels.clone()
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
