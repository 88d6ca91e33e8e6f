//! The vqz container (`spec/vqz-format.md`): file header, sections, frames
//! with CRC-32, the final-frame flag and the end marker, reader limits.
//!
//! This is the bottom layer of the crate: it moves opaque frame payloads in
//! and out of files and knows nothing of models or entropy coding. It needs
//! only `std`, `crc32fast` and `memmap2`.

mod error;
mod frame;
mod header;
mod index;
mod input;
mod limits;
mod reader;
mod section;
pub mod varint;
mod writer;

pub use error::{FormatError, Place, Result};
pub use frame::{CodingMode, Frame, FrameHeader, MAX_INDEX_BITS, MAX_STAGES};
pub use header::{
    FileHeader, Geometry, MAGIC, MAX_GRID_STRIDE_LOG2, MIN_VERSION_MAJOR, ModelId, VERSION_MAJOR,
    VERSION_MINOR,
};
pub use index::{FileIndex, FrameEntry};
pub use limits::Limits;
pub use reader::{Reader, SectionInfo};
pub use section::{END_TAG, SECTION_TAG, SECTION_TYPE_MODEL};
pub use writer::Writer;
