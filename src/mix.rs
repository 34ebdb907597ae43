//! splitmix64: the one fixed, process-independent mixing function. Policies draw their per-query
//! random stream from it (`policy::rank::Rng`), the server its per-query seed, `hash` its
//! scores, and the probe workers their jitter, so a fixed seed gives a fixed result everywhere.
//!
//! A leaf module: it depends on nothing else in the crate.

/// The splitmix64 increment (the golden ratio in 64 bits).
pub(crate) const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finaliser: a fixed bijective mix, identical in every process.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in `[0, 1)` from the top 53 bits of `x`.
#[inline]
pub(crate) fn unit_f64(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}
