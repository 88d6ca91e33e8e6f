//! The file header (spec section "File header"): magic, version, flags and
//! frame layout, model id, default frame geometry (since 3.0 a square
//! geometry stores its width only).

use std::io::Read;

use super::error::{FormatError, Place, Result};
use super::input::Input;
use super::limits::Limits;
use super::varint;

/// The three magic bytes every vqz file starts with: `vqz`.
pub const MAGIC: [u8; 3] = *b"vqz";
/// Major version this crate writes (and the newest it reads).
pub const VERSION_MAJOR: u8 = 4;
/// Minor version this crate writes.
pub const VERSION_MINOR: u8 = 0;
/// Oldest major version this crate reads: 1.x files (no final-frame flag)
/// and 2.x files (final frames with a payload length, no square flag) are
/// still read; they are never written.
pub const MIN_VERSION_MAJOR: u8 = 1;
/// First major version with the final-frame flag (descriptor bit 5).
pub(crate) const FINAL_FRAME_SINCE_MAJOR: u8 = 2;
/// First major version with the square flag (flags bit 6) and final frames
/// without a payload length.
pub(crate) const COMPACT_SINCE_MAJOR: u8 = 3;
/// First major version whose ANS payloads take the small-state steps
/// (spec section 9.1); older ANS payloads are read as [`CodingMode::AnsPlain`].
///
/// [`CodingMode::AnsPlain`]: super::CodingMode::AnsPlain
pub(crate) const SMALL_ANS_STATES_SINCE_MAJOR: u8 = 4;
/// Largest latent grid stride exponent (stride 128).
pub const MAX_GRID_STRIDE_LOG2: u8 = 7;

const FLAG_MODEL_EMBEDDED: u8 = 0x01;
/// Flags bit 6, since format 3.0: the default height equals the width and is not stored.
const FLAG_SQUARE: u8 = 0x40;
/// Reserved flag bits since 3.0.
const FLAGS_RESERVED: u8 = 0x80;
/// Reserved flag bits in a 1.x or 2.x file, which have no square flag.
const FLAGS_RESERVED_V2: u8 = FLAGS_RESERVED | FLAG_SQUARE;

/// Names the model a file was encoded with: the first 4 bytes of the SHA-256
/// of the model file. The container treats it as opaque bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ModelId(pub [u8; 4]);

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Size of one image: width and height in pixels, and channels (1, 3 or 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Width in pixels, 1..=`Limits::max_dimension`.
    pub width: u32,
    /// Height in pixels, 1..=`Limits::max_dimension`.
    pub height: u32,
    /// Channels: 1 (grey), 3 (RGB) or 4 (RGBA).
    pub channels: u8,
}

impl Geometry {
    /// Latent grid size `(ceil(width / stride), ceil(height / stride))` for a
    /// stride of `2^grid_stride_log2`.
    pub fn grid_dims(&self, grid_stride_log2: u8) -> (u32, u32) {
        let stride_log2 = u32::from(grid_stride_log2.min(31));
        let up = |v: u32| -> u32 {
            let stride = 1u64 << stride_log2;
            let cells = (u64::from(v) + stride - 1) >> stride_log2;
            u32::try_from(cells).unwrap_or(u32::MAX)
        };
        (up(self.width), up(self.height))
    }

    /// Symbols in a frame of this geometry coded with `stages` codebook
    /// stages: `grid_width * grid_height * channels * stages`.
    pub fn symbol_count(&self, grid_stride_log2: u8, stages: u8) -> u64 {
        let (gw, gh) = self.grid_dims(grid_stride_log2);
        // Each factor is below 2^32, 2^32, 2^8, 2^8: saturating never triggers
        // for valid dimensions, and saturates to a value over every limit otherwise.
        u64::from(gw)
            .saturating_mul(u64::from(gh))
            .saturating_mul(u64::from(self.channels))
            .saturating_mul(u64::from(stages))
    }

    /// Checks that a frame of this geometry coded with `stages` stages fits
    /// the spec and `limits` (dimensions, channels, symbols per frame);
    /// returns its symbol count.
    pub fn check_frame(
        &self,
        limits: &Limits,
        grid_stride_log2: u8,
        stages: u8,
    ) -> std::result::Result<u64, String> {
        self.validate(limits)?;
        let symbols = self.symbol_count(grid_stride_log2, stages);
        if symbols > limits.max_symbols_per_frame {
            return Err(format!(
                "a {}x{} frame of {} channel(s) with {stages} stage(s) is {symbols} symbols, \
                 over the limit of {} per frame",
                self.width, self.height, self.channels, limits.max_symbols_per_frame
            ));
        }
        Ok(symbols)
    }

    /// Checks dimensions and channels against the spec and `limits`.
    pub fn validate(&self, limits: &Limits) -> std::result::Result<(), String> {
        if self.width == 0 || self.height == 0 {
            return Err(format!(
                "image size {}x{}: width and height must be at least 1",
                self.width, self.height
            ));
        }
        if self.width > limits.max_dimension || self.height > limits.max_dimension {
            return Err(format!(
                "image size {}x{} is over the limit of {}",
                self.width, self.height, limits.max_dimension
            ));
        }
        if channel_code(self.channels).is_none() {
            return Err(format!("channels must be 1, 3 or 4, not {}", self.channels));
        }
        Ok(())
    }
}

/// Two-bit code of a channel count in the header's layout byte.
pub(crate) fn channel_code(channels: u8) -> Option<u8> {
    match channels {
        1 => Some(0),
        3 => Some(1),
        4 => Some(2),
        _ => None,
    }
}

fn channels_from_code(code: u8) -> Option<u8> {
    match code {
        0 => Some(1),
        1 => Some(3),
        2 => Some(4),
        _ => None,
    }
}

/// The file header: everything a decoder needs before the first frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// Major version: 4 for what this crate writes; 1 to 4 for what it reads.
    pub version_major: u8,
    /// Minor version; a reader accepts any minor of a major it reads.
    pub version_minor: u8,
    /// Whether a model section precedes the first frame. The [`Writer`](super::Writer)
    /// sets this itself from its `embedded_model` argument.
    pub model_embedded: bool,
    /// The model the frames were encoded with.
    pub model_id: ModelId,
    /// Geometry of every frame that does not carry its own.
    pub default_geometry: Geometry,
    /// log2 of the latent grid stride: a `w x h` image has a
    /// `ceil(w / 2^s) x ceil(h / 2^s)` grid of code indices. 0..=7.
    pub grid_stride_log2: u8,
}

impl FileHeader {
    /// A version-4.0 header without an embedded model.
    pub fn new(model_id: ModelId, default_geometry: Geometry, grid_stride_log2: u8) -> Self {
        Self {
            version_major: VERSION_MAJOR,
            version_minor: VERSION_MINOR,
            model_embedded: false,
            model_id,
            default_geometry,
            grid_stride_log2,
        }
    }

    /// The header's bytes, as written at the start of a file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.default_geometry
            .validate(&Limits::DEFAULT)
            .map_err(FormatError::InvalidArgument)?;
        if self.grid_stride_log2 > MAX_GRID_STRIDE_LOG2 {
            return Err(FormatError::InvalidArgument(format!(
                "grid stride log2 must be at most {MAX_GRID_STRIDE_LOG2}, not {}",
                self.grid_stride_log2
            )));
        }
        if self.version_major > 15 || self.version_minor > 15 {
            return Err(FormatError::InvalidArgument(format!(
                "version {}.{}: each part must fit in 4 bits",
                self.version_major, self.version_minor
            )));
        }
        let mut out = Vec::with_capacity(16);
        self.encode(&mut out);
        Ok(out)
    }

    /// Whether frames of this file may carry the final-frame flag
    /// (descriptor bit 5): major version 2 and later. In 1.x it is reserved.
    pub fn has_final_frame_flag(&self) -> bool {
        self.version_major >= FINAL_FRAME_SINCE_MAJOR
    }

    /// Whether this file uses the 3.x layout: the square flag in the header,
    /// and a final frame without a payload length (its payload runs to the
    /// CRC-32 that ends the input).
    pub fn is_compact(&self) -> bool {
        self.version_major >= COMPACT_SINCE_MAJOR
    }

    /// Whether this file's ANS payloads take the small-state steps (4.x).
    pub fn has_small_ans_states(&self) -> bool {
        self.version_major >= SMALL_ANS_STATES_SINCE_MAJOR
    }

    /// Whether the header stores the square flag instead of the height.
    fn square(&self) -> bool {
        self.is_compact() && self.default_geometry.width == self.default_geometry.height
    }

    /// Appends the header's bytes without validating; used to recompute the
    /// bytes a reader parsed (every field has one encoding) for the CRC.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let channels = channel_code(self.default_geometry.channels).unwrap_or(0);
        out.extend_from_slice(&MAGIC);
        out.push((self.version_major << 4) | self.version_minor);
        let square = self.square();
        out.push(
            u8::from(self.model_embedded)
                | (channels << 1)
                | (self.grid_stride_log2 << 3)
                | if square { FLAG_SQUARE } else { 0 },
        );
        out.extend_from_slice(&self.model_id.0);
        varint::encode(u64::from(self.default_geometry.width), out);
        if !square {
            varint::encode(u64::from(self.default_geometry.height), out);
        }
    }
}

/// Reads and validates a file header (spec section "File header").
pub(crate) fn read_file_header<R: Read>(
    input: &mut Input<R>,
    limits: &Limits,
) -> Result<FileHeader> {
    let place = Place::FileHeader;
    let magic: [u8; 3] = input.read_array(place, "magic")?;
    if magic != MAGIC {
        return Err(FormatError::BadMagic { found: magic });
    }
    let version = input.read_u8(place, "version")?;
    let (major, minor) = (version >> 4, version & 0x0F);
    if !(MIN_VERSION_MAJOR..=VERSION_MAJOR).contains(&major) {
        return Err(FormatError::UnsupportedVersion {
            major,
            minor,
            supported: VERSION_MAJOR,
        });
    }
    let flags_offset = input.offset();
    let flags = input.read_u8(place, "flags")?;
    let compact = major >= COMPACT_SINCE_MAJOR;
    let (reserved, expected) = if compact {
        (FLAGS_RESERVED, "reserved bit 7 clear")
    } else {
        (
            FLAGS_RESERVED_V2,
            "reserved bits 6-7 clear (a 1.x or 2.x file has no square flag)",
        )
    };
    if flags & reserved != 0 {
        return Err(FormatError::Malformed {
            offset: flags_offset,
            place,
            field: "flags",
            expected: expected.into(),
            found: format!("{flags:#04x}"),
        });
    }
    let square = flags & FLAG_SQUARE != 0;
    let channels = channels_from_code((flags >> 1) & 0x03).ok_or(FormatError::Malformed {
        offset: flags_offset,
        place,
        field: "channel code (flags bits 1-2)",
        expected: "0, 1 or 2 (1, 3 or 4 channels)".into(),
        found: "3".into(),
    })?;
    let grid_stride_log2 = (flags >> 3) & 0x07;
    let model_id = ModelId(input.read_array(place, "model id")?);
    let width_offset = input.offset();
    let width = input.read_varint_u32(place, "width")?;
    let height = if square {
        width
    } else {
        let height_offset = input.offset();
        let height = input.read_varint_u32(place, "height")?;
        if compact && height == width {
            return Err(FormatError::Malformed {
                offset: height_offset,
                place,
                field: "height",
                expected: "a height other than the width (flags bit 6 marks a square image)".into(),
                found: height.to_string(),
            });
        }
        height
    };
    let default_geometry = Geometry {
        width,
        height,
        channels,
    };
    check_geometry(&default_geometry, limits, width_offset, place)?;
    Ok(FileHeader {
        version_major: major,
        version_minor: minor,
        model_embedded: flags & FLAG_MODEL_EMBEDDED != 0,
        model_id,
        default_geometry,
        grid_stride_log2,
    })
}

/// Checks a geometry read from a file at `offset`.
pub(crate) fn check_geometry(
    geometry: &Geometry,
    limits: &Limits,
    offset: u64,
    place: Place,
) -> Result<()> {
    let Geometry { width, height, .. } = *geometry;
    if width == 0 || height == 0 {
        return Err(FormatError::Malformed {
            offset,
            place,
            field: "width/height",
            expected: "at least 1".into(),
            found: format!("{width}x{height}"),
        });
    }
    let largest = width.max(height);
    if largest > limits.max_dimension {
        return Err(FormatError::LimitExceeded {
            offset,
            place,
            field: "width/height",
            found: u64::from(largest),
            limit: u64::from(limits.max_dimension),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digit() -> Geometry {
        Geometry {
            width: 28,
            height: 28,
            channels: 1,
        }
    }

    #[test]
    fn grid_dims_round_up() {
        assert_eq!(digit().grid_dims(2), (7, 7));
        assert_eq!(digit().grid_dims(3), (4, 4));
        assert_eq!(digit().grid_dims(0), (28, 28));
        let rgb = Geometry {
            width: 12,
            height: 8,
            channels: 3,
        };
        assert_eq!(rgb.grid_dims(2), (3, 2));
        assert_eq!(rgb.symbol_count(2, 2), 3 * 2 * 3 * 2);
    }

    #[test]
    fn header_bytes_follow_the_spec() {
        let mut header = FileHeader::new(ModelId([1, 2, 3, 4]), digit(), 2);
        header.model_embedded = true;
        let bytes = header.to_bytes().unwrap();
        // magic, version 4.0, flags (model | channels 0 | stride 2 << 3 |
        // square), id, width 28 (the height is the width)
        assert_eq!(bytes, [0x76, 0x71, 0x7a, 0x40, 0x51, 1, 2, 3, 4, 28]);
        assert!(header.has_final_frame_flag() && header.is_compact());
        assert!(header.has_small_ans_states());
        // Not square: the height is stored.
        header.default_geometry.height = 20;
        let bytes = header.to_bytes().unwrap();
        assert_eq!(bytes, [0x76, 0x71, 0x7a, 0x40, 0x11, 1, 2, 3, 4, 28, 20]);
        // A 3.x header has the same layout; its ANS payloads take plain steps.
        header.version_major = 3;
        assert_eq!(header.to_bytes().unwrap()[3], 0x30);
        assert!(header.is_compact() && !header.has_small_ans_states());
        // A 2.x header stores the height of a square image too.
        header.default_geometry.height = 28;
        header.version_major = 2;
        let bytes = header.to_bytes().unwrap();
        assert_eq!(bytes, [0x76, 0x71, 0x7a, 0x20, 0x11, 1, 2, 3, 4, 28, 28]);
        assert!(header.has_final_frame_flag() && !header.is_compact());
        header.version_major = 1;
        assert!(!header.has_final_frame_flag());
    }

    #[test]
    fn invalid_headers_are_refused() {
        let mut header = FileHeader::new(ModelId::default(), digit(), 8);
        assert!(header.to_bytes().is_err());
        header.grid_stride_log2 = 2;
        header.default_geometry.channels = 2;
        assert!(header.to_bytes().is_err());
        header.default_geometry = Geometry {
            width: 0,
            height: 5,
            channels: 1,
        };
        assert!(header.to_bytes().is_err());
    }

    #[test]
    fn model_id_displays_as_hex() {
        assert_eq!(ModelId([0xde, 0xad, 0x0b, 0xef]).to_string(), "dead0bef");
    }
}
