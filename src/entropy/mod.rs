//! Entropy coding of codebook index grids (`spec/vqz-format.md`, sections
//! "Contexts" to "Prior bytes"): integer context priors and rANS via
//! constriction, with a bit-packed "stored" fallback.
//!
//! Sits between the container (`format`, which carries the payloads) and the
//! network (which produces the indices). Probabilities are fixed-point
//! integers only, so decoding is bit-exact on every platform.

mod ans;
mod builder;
mod coding;
mod cost;
mod error;
mod grid;
mod learned;
mod prior;
mod stored;

pub use builder::PriorBuilder;
pub use coding::{cross_entropy_bits, decode_grid, encode_grid};
pub use cost::{Cell, CodeLengths, Lengths};
pub use error::{EntropyError, Result};
pub use grid::{IndexGrid, symbol_count};
pub use learned::{
    BIAS_LIMIT, LearnedStage, LearnedWeights, MAX_EMBED, MAX_HIDDEN, MAX_LEARNED_WEIGHTS,
    feature_sizes, stage_features,
};
pub use prior::{LEARNED_PRIOR_VERSION, PRIOR_MAGIC, PRIOR_VERSION, Prior};
pub use stored::index_bits;

/// Frequencies are fixed point with this many fractional bits: every table
/// sums to `2^16` (spec section "Frequency tables").
pub const PRECISION: usize = 16;
/// Largest codebook (symbols per stage).
pub const MAX_NUM_SYMBOLS: u16 = 4096;
/// Most classes per stage.
pub const MAX_CLASSES: u8 = 32;
/// Most stages a prior models.
pub const MAX_PRIOR_STAGES: u8 = crate::format::MAX_STAGES;
/// Most frequency entries (tables x symbols, all stages) in one prior.
pub const MAX_TABLE_ENTRIES: u64 = 1 << 22;
/// Most symbols in one grid this layer codes or decodes.
pub const MAX_GRID_SYMBOLS: u64 = 1 << 24;
