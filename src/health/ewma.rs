//! Exponentially weighted moving average with a half-life, time passed in by the caller
//! (the linkerd2-proxy pattern): reads never mutate and tests control the clock.

use std::time::Duration;

use tokio::time::Instant;

/// Default half-life of the latency average.
pub(crate) const DEFAULT_HALF_LIFE: Duration = Duration::from_secs(30);

/// An EWMA whose old value loses half its weight every `half_life`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ewma {
    half_life: Duration,
    state: Option<(f64, Instant)>,
}

impl Ewma {
    /// Empty average: the first sample becomes its value.
    pub fn new(half_life: Duration) -> Ewma {
        Ewma {
            half_life,
            state: None,
        }
    }

    /// Start from a known value (warm start).
    pub(crate) fn with_value(half_life: Duration, value: f64, at: Instant) -> Ewma {
        Ewma {
            half_life,
            state: Some((value, at)),
        }
    }

    /// Fold in `sample` observed at `now`: `v = v * 2^(-dt/half_life) + sample * (1 - that)`.
    /// A sample older than the last one (out of order) counts as simultaneous.
    pub fn update(&mut self, sample: f64, now: Instant) {
        if !sample.is_finite() {
            return;
        }
        self.state = Some(match self.state {
            None => (sample, now),
            Some((v, at)) => {
                let dt = now.saturating_duration_since(at);
                let keep = if self.half_life.is_zero() {
                    0.0
                } else {
                    0.5f64.powf(dt.as_secs_f64() / self.half_life.as_secs_f64())
                };
                (v * keep + sample * (1.0 - keep), now.max(at))
            }
        });
    }

    /// The current average, if any sample was seen.
    pub fn get(&self) -> Option<f64> {
        self.state.map(|(v, _)| v)
    }
}

/// Slow-start ramp: 0 at `came_up`, rising linearly to 1 after `window`.
pub fn slow_start_factor(came_up: Instant, window: Duration, now: Instant) -> f64 {
    if window.is_zero() {
        return 1.0;
    }
    let elapsed = now.saturating_duration_since(came_up);
    (elapsed.as_secs_f64() / window.as_secs_f64()).clamp(0.0, 1.0)
}
