//! Frames (spec section "Frame"): the descriptor byte, optional geometry,
//! payload length, payload and CRC-32 of one image. Since format 2.0 the
//! descriptor can mark a frame as the stream's last (the final frame); since
//! 3.0 the final frame has no payload length (its payload runs to the CRC-32
//! that ends the input).

use std::io::Read;

use super::error::{FormatError, Place, Result};
use super::header::{FileHeader, Geometry, check_geometry};
use super::input::Input;
use super::limits::Limits;
use super::varint;

/// Most codebook stages a frame can have (3 bits in the descriptor).
pub const MAX_STAGES: u8 = 8;
/// Most bits one stored index takes (codebooks hold at most 4096 entries);
/// bounds any payload to `ceil(symbols * 12 / 8)` bytes.
pub const MAX_INDEX_BITS: u64 = 12;

const DESCRIPTOR_STAGES: u8 = 0x07;
const DESCRIPTOR_ANS: u8 = 0x08;
const DESCRIPTOR_GEOMETRY: u8 = 0x10;
/// Bit 5, since format 2.0: the frame is the last block of the stream.
const DESCRIPTOR_FINAL: u8 = 0x20;
/// Reserved descriptor bits since 2.0 (bit 7 is the block-tag bit).
const DESCRIPTOR_RESERVED: u8 = 0x40;
/// Reserved descriptor bits in a 1.x file, which has no final-frame flag.
const DESCRIPTOR_RESERVED_V1: u8 = DESCRIPTOR_RESERVED | DESCRIPTOR_FINAL;

/// How a frame's payload codes its indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodingMode {
    /// Indices bit-packed at a fixed width per stage.
    Stored,
    /// rANS under the model's context prior, with the small-state steps of
    /// format 4.x (spec section 9.1).
    Ans,
    /// rANS under the model's context prior as formats 1.x to 3.x code it:
    /// the plain rANS step throughout. Read from older files, never written.
    AnsPlain,
}

/// A frame's header with its geometry resolved against the file default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload coding.
    pub coding_mode: CodingMode,
    /// Codebook stages (the quality level), 1..=8.
    pub stages: u8,
    /// The frame's geometry (its own, or the file default).
    pub geometry: Geometry,
    /// Payload length in bytes (in a final frame since 3.0, not stored but implied
    /// by the end of the input).
    pub payload_len: u32,
    /// Whether this is the final frame (descriptor bit 5, since format 2.0): the
    /// last block of the stream, which ends right after its CRC-32 with no
    /// end marker. Always `false` in a 1.x file.
    pub final_frame: bool,
}

impl FrameHeader {
    /// Symbols in the payload: grid cells x channels x stages.
    pub fn symbol_count(&self, grid_stride_log2: u8) -> u64 {
        self.geometry.symbol_count(grid_stride_log2, self.stages)
    }

    /// Appends the frame header bytes (descriptor to payload length) for a
    /// file with header `file`: geometry only when it differs from the file
    /// default, the payload length unless the frame ends a 3.x or later file.
    pub(crate) fn encode(&self, file: &FileHeader, out: &mut Vec<u8>) {
        let default = &file.default_geometry;
        let explicit = self.geometry != *default;
        let mut descriptor = self.stages.saturating_sub(1) & DESCRIPTOR_STAGES;
        if self.coding_mode != CodingMode::Stored {
            descriptor |= DESCRIPTOR_ANS;
        }
        if explicit {
            descriptor |= DESCRIPTOR_GEOMETRY;
        }
        if self.final_frame {
            descriptor |= DESCRIPTOR_FINAL;
        }
        out.push(descriptor);
        if explicit {
            varint::encode(u64::from(self.geometry.width), out);
            varint::encode(u64::from(self.geometry.height), out);
            out.push(self.geometry.channels);
        }
        // The final frame of a 3.x or later file has no payload length.
        if !(self.final_frame && file.is_compact()) {
            varint::encode(u64::from(self.payload_len), out);
        }
    }

    /// Bytes of the whole frame block with this header in a file with header
    /// `file`: descriptor, optional geometry, payload length (unless
    /// implied), payload and CRC-32.
    pub fn block_len(&self, file: &FileHeader) -> u64 {
        let mut bytes = Vec::with_capacity(16);
        self.encode(file, &mut bytes);
        (bytes.len() as u64)
            .saturating_add(u64::from(self.payload_len))
            .saturating_add(4)
    }
}

/// One decoded frame: its number in the file, header and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Position in the file, counting from 0.
    pub number: u64,
    /// The frame header.
    pub header: FrameHeader,
    /// The coded indices.
    pub payload: Vec<u8>,
}

/// Whether a block tag is a frame descriptor (bit 7 clear).
pub(crate) fn is_frame_descriptor(tag: u8) -> bool {
    tag & 0x80 == 0
}

/// CRC-32 of frame `number`: the file header's hasher state, then the frame
/// number as 8 bytes little-endian, the frame header bytes and the payload.
pub(crate) fn frame_crc(
    header_crc: &crc32fast::Hasher,
    number: u64,
    header_bytes: &[u8],
    payload: &[u8],
) -> u32 {
    let mut hasher = header_crc.clone();
    hasher.update(&number.to_le_bytes());
    hasher.update(header_bytes);
    hasher.update(payload);
    hasher.finalize()
}

/// Reads the rest of frame `number` after its descriptor byte `descriptor`
/// (read at `offset`) and checks its CRC.
pub(crate) fn read_frame<R: Read>(
    input: &mut Input<R>,
    descriptor: u8,
    offset: u64,
    number: u64,
    file_header: &FileHeader,
    header_crc: &crc32fast::Hasher,
    limits: &Limits,
) -> Result<Frame> {
    let place = Place::Frame(number);
    let (reserved, expected) = if file_header.has_final_frame_flag() {
        (DESCRIPTOR_RESERVED, "reserved bit 6 clear")
    } else {
        (
            DESCRIPTOR_RESERVED_V1,
            "reserved bits 5-6 clear (a 1.x file has no final-frame flag)",
        )
    };
    if descriptor & reserved != 0 {
        return Err(FormatError::Malformed {
            offset,
            place,
            field: "descriptor",
            expected: expected.into(),
            found: format!("{descriptor:#04x}"),
        });
    }
    let final_frame = descriptor & DESCRIPTOR_FINAL != 0;
    let stages = (descriptor & DESCRIPTOR_STAGES) + 1;
    let coding_mode = if descriptor & DESCRIPTOR_ANS == 0 {
        CodingMode::Stored
    } else if file_header.has_small_ans_states() {
        CodingMode::Ans
    } else {
        CodingMode::AnsPlain
    };
    let default = file_header.default_geometry;
    let geometry = if descriptor & DESCRIPTOR_GEOMETRY != 0 {
        let geometry_offset = input.offset();
        let width = input.read_varint_u32(place, "width")?;
        let height = input.read_varint_u32(place, "height")?;
        let channels_offset = input.offset();
        let channels = input.read_u8(place, "channels")?;
        if super::header::channel_code(channels).is_none() {
            return Err(FormatError::Malformed {
                offset: channels_offset,
                place,
                field: "channels",
                expected: "1, 3 or 4".into(),
                found: channels.to_string(),
            });
        }
        let geometry = Geometry {
            width,
            height,
            channels,
        };
        check_geometry(&geometry, limits, geometry_offset, place)?;
        if geometry == default {
            return Err(FormatError::Malformed {
                offset: geometry_offset,
                place,
                field: "explicit geometry",
                expected: "a geometry other than the file default (which is implied)".into(),
                found: format!("{width}x{height}x{channels}"),
            });
        }
        geometry
    } else {
        default
    };
    let symbols = geometry.symbol_count(file_header.grid_stride_log2, stages);
    if symbols > limits.max_symbols_per_frame {
        return Err(FormatError::LimitExceeded {
            offset,
            place,
            field: "symbol count",
            found: symbols,
            limit: limits.max_symbols_per_frame,
        });
    }
    let payload_bound = symbols.saturating_mul(MAX_INDEX_BITS).div_ceil(8);
    let limit = payload_bound.min(u64::from(limits.max_payload_len));
    let implied_length = final_frame && file_header.is_compact();
    let (payload, stored) = if implied_length {
        read_to_crc_at_end(input, limit, limit < payload_bound, place)?
    } else {
        let len_offset = input.offset();
        let payload_len = input.read_varint_u32(place, "payload length")?;
        if u64::from(payload_len) > limit {
            return Err(FormatError::LimitExceeded {
                offset: len_offset,
                place,
                field: "payload length",
                found: u64::from(payload_len),
                limit,
            });
        }
        let payload = input.read_vec(payload_len, place, "payload")?;
        let stored = u32::from_le_bytes(input.read_array(place, "CRC-32")?);
        (payload, stored)
    };
    let header = FrameHeader {
        coding_mode,
        stages,
        geometry,
        // At most `limit`, itself at most the 32-bit payload limit.
        payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        final_frame,
    };
    let mut header_bytes = Vec::with_capacity(16);
    header.encode(file_header, &mut header_bytes);
    let computed = frame_crc(header_crc, number, &header_bytes, &payload);
    if stored != computed {
        return Err(if implied_length {
            FormatError::FinalFrameCrcMismatch {
                frame: number,
                stored,
                computed,
            }
        } else {
            FormatError::CrcMismatch {
                frame: number,
                stored,
                computed,
            }
        });
    }
    Ok(Frame {
        number,
        header,
        payload,
    })
}

/// Reads the payload and CRC-32 of a final frame (3.0 and later): every byte to the end
/// of the input, the last 4 being the CRC-32, with at most `limit` bytes of
/// payload (never reading more than `limit + 5` bytes). `reader_limit` says
/// whether `limit` is the reader's payload limit (lower than the format's
/// bound), so that going over it is "limit exceeded".
fn read_to_crc_at_end<R: Read>(
    input: &mut Input<R>,
    limit: u64,
    reader_limit: bool,
    place: Place,
) -> Result<(Vec<u8>, u32)> {
    let start = input.offset();
    let Some(mut rest) = input.read_to_end_capped(limit.saturating_add(4))? else {
        if reader_limit {
            return Err(FormatError::LimitExceeded {
                offset: start,
                place,
                field: "final frame payload length (at least)",
                found: limit.saturating_add(1),
                limit,
            });
        }
        return Err(FormatError::Malformed {
            offset: start,
            place,
            field: "final frame payload",
            expected: format!(
                "at most {limit} bytes of payload, then the CRC-32 and the end of the input"
            ),
            found: "more bytes (data after the final frame)".into(),
        });
    };
    let Some(payload_len) = rest.len().checked_sub(4) else {
        return Err(FormatError::Truncated {
            offset: input.offset(),
            place,
            field: "CRC-32",
        });
    };
    let crc = rest.split_off(payload_len);
    Ok((rest, u32::from_le_bytes(crc.try_into().unwrap_or_default())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGIT: Geometry = Geometry {
        width: 28,
        height: 28,
        channels: 1,
    };

    fn file(version_major: u8) -> FileHeader {
        FileHeader {
            version_major,
            ..FileHeader::new(super::super::ModelId::default(), DIGIT, 2)
        }
    }

    fn encoded(header: &FrameHeader, version_major: u8) -> Vec<u8> {
        let mut out = Vec::new();
        header.encode(&file(version_major), &mut out);
        out
    }

    #[test]
    fn descriptor_bits() {
        let mut header = FrameHeader {
            coding_mode: CodingMode::Ans,
            stages: 1,
            geometry: DIGIT,
            payload_len: 300,
            final_frame: false,
        };
        for major in [2, 3] {
            assert_eq!(encoded(&header, major), [0x08, 0xAC, 0x02]);
            assert_eq!(header.block_len(&file(major)), 3 + 300 + 4);
        }
        header.final_frame = true;
        // A 2.x final frame stores its payload length; a 3.x one does not.
        assert_eq!(encoded(&header, 2), [0x28, 0xAC, 0x02]);
        assert_eq!(header.block_len(&file(2)), 3 + 300 + 4);
        assert_eq!(encoded(&header, 3), [0x28]);
        assert_eq!(header.block_len(&file(3)), 1 + 300 + 4);
        header.final_frame = false;
        header.coding_mode = CodingMode::Stored;
        header.stages = 8;
        header.payload_len = 5;
        assert_eq!(encoded(&header, 3), [0x07, 0x05]);
        header.geometry.channels = 3;
        assert_eq!(encoded(&header, 3), [0x17, 28, 28, 3, 0x05]);
        header.final_frame = true;
        assert_eq!(encoded(&header, 2), [0x37, 28, 28, 3, 0x05]);
        assert_eq!(encoded(&header, 3), [0x37, 28, 28, 3]);
        assert!(is_frame_descriptor(0x7F));
        assert!(!is_frame_descriptor(0x80));
    }

    #[test]
    fn crc_depends_on_frame_number() {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(b"vqz");
        let a = frame_crc(&hasher, 0, &[0x08, 0x01], &[0xAA]);
        let b = frame_crc(&hasher, 1, &[0x08, 0x01], &[0xAA]);
        assert_ne!(a, b);
    }
}
