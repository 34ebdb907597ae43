//! Counting client queries: per (name, target) over the time buckets of the report, and per
//! datacenter as its health endpoint counts them (the traffic in its load figure).
//!
//! ```text
//! a stream starts holding answer A at t:  point +1 at t, rate +r from t   (per target of A)
//! ... and stops at its expiry e:          rate -r from e
//! bucket k = R_k * width_k + partial_k    R_k: the rate at the bucket's start (running sum of
//!                                          the changes), partial_k: the rest of the changes
//!                                          and points inside it -- O(1) per change
//! ```

use super::{Ns, secs};

/// Client queries held by each datacenter: what its health endpoint counts as traffic.
#[derive(Default)]
pub(crate) struct Traffic {
    pub(crate) acc: Vec<f64>,
    pub(crate) rate: Vec<f64>,
    pub(crate) at: Vec<Ns>,
}

impl Traffic {
    fn advance(&mut self, d: usize, t: Ns) {
        if t > self.at[d] {
            self.acc[d] += self.rate[d] * secs(t - self.at[d]);
            self.at[d] = t;
        }
    }
    pub(crate) fn change(&mut self, d: usize, t: Ns, dr: f64) {
        self.advance(d, t);
        self.rate[d] += dr;
    }
    pub(crate) fn point(&mut self, d: usize, t: Ns, m: f64) {
        self.advance(d, t);
        self.acc[d] += m;
    }
    pub(crate) fn mass(&self, d: usize, t: Ns) -> f64 {
        self.acc[d] + self.rate[d] * secs(t.saturating_sub(self.at[d]))
    }
}

/// Per (name, target): client queries per bucket, kept as rate changes and partial masses so
/// that each change costs O(1).
pub(crate) struct Acc {
    d_rate: Vec<f64>,
    partial: Vec<f64>,
}

pub(crate) struct Tallies {
    pub(crate) warm: Ns,
    pub(crate) end: Ns,
    pub(crate) step: Ns,
    pub(crate) buckets: usize,
    pub(crate) targets: usize,
    pub(crate) acc: Vec<Option<Box<Acc>>>,
}

impl Tallies {
    fn slot(&mut self, g: usize, x: usize) -> &mut Acc {
        let b = self.buckets;
        self.acc[g * self.targets + x].get_or_insert_with(|| {
            Box::new(Acc {
                d_rate: vec![0.0; b + 1],
                partial: vec![0.0; b],
            })
        })
    }

    /// Bucket of `t` (>= warm) and its end.
    fn bucket(&self, t: Ns) -> (usize, Ns) {
        let k = (((t - self.warm) / self.step) as usize).min(self.buckets - 1);
        let end = (self.warm + (k as u64 + 1) * self.step).min(self.end);
        (k, end)
    }

    pub(crate) fn rate(&mut self, g: usize, x: usize, t: Ns, dr: f64) {
        if t >= self.end {
            return;
        }
        if t <= self.warm {
            self.slot(g, x).d_rate[0] += dr;
            return;
        }
        let (k, bend) = self.bucket(t);
        let a = self.slot(g, x);
        a.partial[k] += dr * secs(bend - t);
        a.d_rate[k + 1] += dr;
    }

    pub(crate) fn point(&mut self, g: usize, x: usize, t: Ns, m: f64) {
        if t < self.warm || t >= self.end {
            return;
        }
        let (k, _) = self.bucket(t);
        self.slot(g, x).partial[k] += m;
    }

    pub(crate) fn width(&self, k: usize) -> f64 {
        let start = self.warm + k as u64 * self.step;
        secs((start + self.step).min(self.end) - start)
    }

    pub(crate) fn masses(&self, g: usize, x: usize) -> Option<Vec<f64>> {
        let a = self.acc[g * self.targets + x].as_ref()?;
        let mut r = 0.0;
        Some(
            (0..self.buckets)
                .map(|k| {
                    r += a.d_rate[k];
                    (r * self.width(k) + a.partial[k]).max(0.0)
                })
                .collect(),
        )
    }
}
