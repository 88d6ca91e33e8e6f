//! Sections and the end marker (spec sections "Section" and "End marker").
//!
//! A section is a length-prefixed, CRC-checked block a reader may skip; the
//! embedded model is section type 1. The end marker closes a stream that does
//! not end with a final frame (one with no frames, or from a writer that could
//! not know its last frame) with its frame count, so a complete stream is told
//! apart from a cut one.

use std::io::Read;

use super::error::{FormatError, Place, Result};
use super::input::Input;
use super::limits::Limits;
use super::varint;

/// Tag byte of a section.
pub const SECTION_TAG: u8 = 0x80;
/// Tag byte of the end marker.
pub const END_TAG: u8 = 0x81;
/// Section type of an embedded model.
pub const SECTION_TYPE_MODEL: u32 = 1;

/// Bytes of a section from its tag through its body, and its CRC-32: the file
/// header's hasher state, then those bytes.
pub(crate) fn encode_section(
    header_crc: &crc32fast::Hasher,
    section_type: u32,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&len| len <= Limits::DEFAULT.max_section_len)
        .ok_or_else(|| {
            FormatError::InvalidArgument(format!(
                "section of {} bytes is over the limit of {}",
                body.len(),
                Limits::DEFAULT.max_section_len
            ))
        })?;
    let start = out.len();
    out.push(SECTION_TAG);
    varint::encode(u64::from(section_type), out);
    varint::encode(u64::from(len), out);
    out.extend_from_slice(body);
    let mut hasher = header_crc.clone();
    hasher.update(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    Ok(())
}

/// A section read after its tag byte.
pub(crate) struct SectionRead {
    pub(crate) section_type: u32,
    /// The body, when the caller asked to keep sections of this type.
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) body_len: u32,
}

/// Reads the rest of the section whose tag was at `offset`, keeping the body
/// when `keep(section_type)` says so and skipping it otherwise; checks the CRC.
pub(crate) fn read_section<R: Read>(
    input: &mut Input<R>,
    offset: u64,
    header_crc: &crc32fast::Hasher,
    limits: &Limits,
    keep: impl Fn(u32) -> bool,
) -> Result<SectionRead> {
    let place = Place::Section { offset };
    let section_type = input.read_varint_u32(place, "section type")?;
    let len_offset = input.offset();
    let body_len = input.read_varint_u32(place, "section length")?;
    if body_len > limits.max_section_len {
        return Err(FormatError::LimitExceeded {
            offset: len_offset,
            place,
            field: "section length",
            found: u64::from(body_len),
            limit: u64::from(limits.max_section_len),
        });
    }
    let mut hasher = header_crc.clone();
    let mut prefix = vec![SECTION_TAG];
    varint::encode(u64::from(section_type), &mut prefix);
    varint::encode(u64::from(body_len), &mut prefix);
    hasher.update(&prefix);
    let body = if keep(section_type) {
        let body = input.read_vec(body_len, place, "section body")?;
        hasher.update(&body);
        Some(body)
    } else {
        input.skip_hashing(body_len, &mut hasher, place, "section body")?;
        None
    };
    let stored = u32::from_le_bytes(input.read_array(place, "CRC-32")?);
    let computed = hasher.finalize();
    if stored != computed {
        return Err(FormatError::SectionCrcMismatch {
            offset,
            section_type,
            stored,
            computed,
        });
    }
    Ok(SectionRead {
        section_type,
        body,
        body_len,
    })
}

/// Bytes of an end marker for `frames` frames.
pub(crate) fn encode_end_marker(frames: u64, out: &mut Vec<u8>) {
    out.push(END_TAG);
    varint::encode(frames, out);
}

/// Reads the end marker's frame count (after its tag) and checks it against
/// the frames read.
pub(crate) fn read_end_marker<R: Read>(input: &mut Input<R>, frames_read: u64) -> Result<()> {
    let offset = input.offset();
    let count = input.read_varint(64, Place::EndMarker, "frame count")?;
    if count != frames_read {
        return Err(FormatError::Malformed {
            offset,
            place: Place::EndMarker,
            field: "frame count",
            expected: format!("{frames_read} (the frames in the stream)"),
            found: count.to_string(),
        });
    }
    Ok(())
}
