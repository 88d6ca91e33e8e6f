//! Reader limits (spec section "Limits").
//!
//! Every size read from a file is checked against these numbers before it
//! sizes an allocation, so a hostile header costs an error, not memory.

/// Bounds a [`Reader`](super::Reader) or [`FileIndex`](super::FileIndex)
/// enforces. [`Limits::default`] holds the numbers in the spec; callers may
/// lower them (or raise them for trusted input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest image width or height, in pixels.
    pub max_dimension: u32,
    /// Largest symbol count of one frame (grid cells x channels x stages).
    pub max_symbols_per_frame: u64,
    /// Largest frame payload, in bytes.
    pub max_payload_len: u32,
    /// Largest section body, in bytes.
    pub max_section_len: u32,
}

impl Limits {
    /// The spec's default limits.
    pub const DEFAULT: Limits = Limits {
        max_dimension: 16_384,
        max_symbols_per_frame: 1 << 22,
        max_payload_len: 1 << 24,
        max_section_len: 64 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
