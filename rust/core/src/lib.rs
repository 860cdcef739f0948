//! Numerical core of ecorecover.
//!
//! Pure Rust (no Python): R's random numbers ([`rng`]), Seurat-style log-normalisation and
//! per-gene scaling ([`preprocess`]), posneg and the zero-variance filter, and the KL (Brunet)
//! multiplicative updates with one factor fixed under NMF's connectivity stopping rule
//! ([`nmf`]). Everything that is parallel gives the same bits for any number of threads: work
//! is split over independent genes or cells and every reduction runs in a fixed order. Long
//! kernels poll a [`Cancel`] flag and stop early when it is set.

pub mod cancel;
pub mod error;
pub mod fast;
pub mod gather;
pub mod groups;
pub mod longdouble;
pub mod nmf;
pub mod preprocess;
pub mod rng;
pub mod select;
pub mod sparse;
pub mod spatial;

pub use cancel::Cancel;
pub use error::{CoreError, Result};

/// R's `.Machine$double.eps` (printed by R as 2.220446e-16), the floor NMF applies every
/// 10th iteration. The fixtures show the exact machine epsilon, not the 7-digit print.
pub const EPS: f64 = f64::EPSILON;

#[cfg(test)]
pub(crate) mod testing {
    //! Deterministic test data for the unit tests.

    /// Uniform numbers in [0, 1) from a xorshift generator seeded with `s` (non-zero).
    pub(crate) fn uniform(mut s: u64) -> impl FnMut() -> f64 {
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        }
    }
}
