//! Errors of the container layer, grouped by who is at fault: the input file
//! (malformed, truncated, corrupted), an unsupported version or feature, a
//! limit, the caller (invalid argument), or I/O.

use std::fmt;

use thiserror::Error;

/// Where in a file an error was found, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The file header.
    FileHeader,
    /// A section; the block starts at this byte offset.
    Section {
        /// Offset of the section's tag byte.
        offset: u64,
    },
    /// Frame number `n` (counting from 0).
    Frame(u64),
    /// The tag byte of the block after `frames_before` frames.
    BlockTag {
        /// Frames read before this block.
        frames_before: u64,
    },
    /// The end marker.
    EndMarker,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::FileHeader => write!(f, "file header"),
            Place::Section { offset } => write!(f, "section at byte {offset}"),
            Place::Frame(n) => write!(f, "frame {n}"),
            Place::BlockTag { frames_before: 0 } => write!(f, "block before frame 0"),
            Place::BlockTag { frames_before } => {
                write!(f, "block after frame {}", frames_before - 1)
            }
            Place::EndMarker => write!(f, "end marker"),
        }
    }
}

/// An error reading or writing a vqz container.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FormatError {
    // ---- the input file is not a (valid) vqz file ----
    /// The first three bytes are not `vqz`.
    #[error("not a vqz file: expected magic 76 71 7a (\"vqz\"), found {found:02x?}")]
    BadMagic {
        /// The bytes found instead.
        found: [u8; 3],
    },
    /// The input ends before the structure it started is complete.
    #[error("truncated: input ends at byte {offset} inside {place} ({field})")]
    Truncated {
        /// Offset of the end of the input.
        offset: u64,
        /// The structure being read.
        place: Place,
        /// The field being read.
        field: &'static str,
    },
    /// The input ends after a complete block, but the stream was not ended:
    /// no frame was marked final and no end marker followed.
    #[error(
        "truncated: input ends at byte {offset} after {frames} complete frame(s), with no final frame or end marker"
    )]
    MissingEndMarker {
        /// Offset of the end of the input.
        offset: u64,
        /// Complete frames before the cut.
        frames: u64,
    },
    /// A field holds a value the spec does not allow.
    #[error("{place}, byte {offset}: invalid {field}: expected {expected}, found {found}")]
    Malformed {
        /// Offset of the field.
        offset: u64,
        /// The structure being read.
        place: Place,
        /// The field.
        field: &'static str,
        /// What the spec allows.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// A frame's stored CRC-32 does not match its bytes.
    #[error("frame {frame}: CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    CrcMismatch {
        /// Frame number.
        frame: u64,
        /// CRC-32 stored in the file.
        stored: u32,
        /// CRC-32 of the bytes read.
        computed: u32,
    },
    /// The final frame of a 3.x or later file (which has no payload length: its
    /// payload runs to the CRC-32 at the end of the input) does not match
    /// its CRC-32. A stream cut inside that frame, or with bytes appended
    /// after it, reads this way as well as a damaged one.
    #[error(
        "truncated or corrupted: final frame {frame} fails its CRC-32 (stored {stored:#010x}, computed {computed:#010x}); its payload runs to the end of the input, so the input is damaged, cut short, or has data after the final frame"
    )]
    FinalFrameCrcMismatch {
        /// Frame number.
        frame: u64,
        /// The last 4 bytes of the input, read as the CRC-32.
        stored: u32,
        /// CRC-32 of the bytes before them.
        computed: u32,
    },
    /// A section's stored CRC-32 does not match its bytes.
    #[error(
        "section at byte {offset} (type {section_type}): CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    SectionCrcMismatch {
        /// Offset of the section's tag byte.
        offset: u64,
        /// Section type.
        section_type: u32,
        /// CRC-32 stored in the file.
        stored: u32,
        /// CRC-32 of the bytes read.
        computed: u32,
    },

    // ---- valid, but not something this reader supports ----
    /// The file's major version is not one this reader reads (1 to 4).
    #[error("file is vqz format {major}.x; this reader supports 1.x to {supported}.x")]
    UnsupportedVersion {
        /// Major version in the file.
        major: u8,
        /// Minor version in the file.
        minor: u8,
        /// Newest major version this reader supports (it reads every major
        /// version from [`MIN_VERSION_MAJOR`](super::MIN_VERSION_MAJOR) to this one).
        supported: u8,
    },

    // ---- a limit was exceeded ----
    /// A size read from the file is above the reader's [`Limits`](super::Limits).
    #[error("{place}, byte {offset}: {field} is {found}, over the limit of {limit}")]
    LimitExceeded {
        /// Offset of the field.
        offset: u64,
        /// The structure being read.
        place: Place,
        /// The field.
        field: &'static str,
        /// Value found.
        found: u64,
        /// The limit.
        limit: u64,
    },

    // ---- the caller asked for something the format cannot hold ----
    /// An argument to the writer (or a header built by the caller) is not representable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The reader was used again after it returned an error.
    #[error("reader already failed; it cannot continue after an error")]
    ReaderFailed,

    // ---- I/O ----
    /// The underlying reader or writer failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with a [`FormatError`].
pub type Result<T, E = FormatError> = std::result::Result<T, E>;
