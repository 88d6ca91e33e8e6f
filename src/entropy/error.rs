//! Errors of the entropy layer, grouped by fault: a corrupt payload, corrupt
//! prior bytes, a grid or prior that does not fit the other (wrong model or
//! caller error), and limits.

use thiserror::Error;

/// An error coding index grids or reading a [`Prior`](super::Prior).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntropyError {
    // ---- a frame payload is corrupt ----
    /// An ANS payload starts with a zero byte (its encoder never writes one).
    #[error("ANS payload: expected a non-zero first byte, found 0x00 (non-canonical)")]
    AnsLeadingZero,
    /// An ANS payload holds more (or other) data than its symbols.
    #[error(
        "ANS payload: expected the decoder to end empty after {symbols} symbols, but {bits_left} bits of state are left"
    )]
    AnsNotConsumed {
        /// Symbols decoded.
        symbols: usize,
        /// Significant bits left in the decoder.
        bits_left: u32,
    },
    /// A stored payload has the wrong length.
    #[error("stored payload: expected {expected} bytes for {symbols} symbols, found {found}")]
    StoredLength {
        /// Bytes the symbols need.
        expected: usize,
        /// Bytes present.
        found: usize,
        /// Symbols in the grid.
        symbols: usize,
    },
    /// The padding bits after the last stored index are not zero.
    #[error("stored payload: expected zero padding bits in the last byte, found {found:#04x}")]
    StoredPadding {
        /// The last byte.
        found: u8,
    },
    /// A decoded (or given) index is not in its stage's codebook.
    #[error(
        "stage {stage}, symbol {position}: index {index} is out of range (codebook has {num_symbols} entries)"
    )]
    IndexOutOfRange {
        /// Codebook stage.
        stage: u8,
        /// Position in coding order.
        position: usize,
        /// The index.
        index: u32,
        /// Codebook size.
        num_symbols: u16,
    },

    // ---- prior bytes are corrupt ----
    /// Serialized prior bytes do not follow the spec.
    #[error("prior, byte {offset}: invalid {field}: expected {expected}, found {found}")]
    BadPrior {
        /// Offset in the prior bytes.
        offset: usize,
        /// The field.
        field: &'static str,
        /// What the spec allows.
        expected: String,
        /// What the bytes hold.
        found: String,
    },

    // ---- grid and prior do not fit each other, or bad arguments ----
    /// The grid has more stages than the prior models.
    #[error("grid has {grid} codebook stages, the prior models {prior}")]
    StagesMismatch {
        /// Stages in the grid.
        grid: u8,
        /// Stages in the prior.
        prior: u8,
    },
    /// The grid's dimensions and index count disagree, or are zero.
    #[error("grid shape: {0}")]
    GridShape(String),
    /// An argument is outside what the prior can hold.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    // ---- limits ----
    /// A size is above the hard limits of this layer.
    #[error("{what} is {found}, over the limit of {limit}")]
    LimitExceeded {
        /// What was measured.
        what: &'static str,
        /// The size.
        found: u64,
        /// The limit.
        limit: u64,
    },
}

/// Result with an [`EntropyError`].
pub type Result<T, E = EntropyError> = std::result::Result<T, E>;
