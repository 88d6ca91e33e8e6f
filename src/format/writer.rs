//! The streaming writer (spec section "Writing"): file header, optional model
//! section, frames appended one at a time; the stream ends with a final frame
//! (`finish_with_frame`) or with the end marker (`finish`).

use std::io::Write;

use super::error::{FormatError, Result};
use super::frame::{CodingMode, FrameHeader, MAX_INDEX_BITS, MAX_STAGES, frame_crc};
use super::header::{FileHeader, Geometry, MAX_GRID_STRIDE_LOG2, VERSION_MAJOR, VERSION_MINOR};
use super::limits::Limits;
use super::section::{SECTION_TYPE_MODEL, encode_end_marker, encode_section};

/// Writes a vqz stream. Everything it writes is readable by a [`Reader`]
/// with default [`Limits`](super::Limits): arguments outside them are refused.
///
/// [`Reader`]: super::Reader
pub struct Writer<W: Write> {
    inner: W,
    header: FileHeader,
    header_crc: crc32fast::Hasher,
    frames_written: u64,
    bytes_written: u64,
    scratch: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// Writes the file header (always version 4.0, whatever `header` says;
    /// `model_embedded` is set from `embedded_model`) and, if given, the
    /// model section.
    pub fn new(inner: W, header: &FileHeader, embedded_model: Option<&[u8]>) -> Result<Self> {
        let header = FileHeader {
            version_major: VERSION_MAJOR,
            version_minor: VERSION_MINOR,
            model_embedded: embedded_model.is_some(),
            ..header.clone()
        };
        let header_bytes = header.to_bytes()?;
        let mut header_crc = crc32fast::Hasher::new();
        header_crc.update(&header_bytes);
        let mut writer = Self {
            inner,
            header,
            header_crc,
            frames_written: 0,
            bytes_written: 0,
            scratch: Vec::with_capacity(64),
        };
        writer.emit(&header_bytes)?;
        if let Some(model) = embedded_model {
            let mut block = Vec::with_capacity(model.len().saturating_add(16));
            encode_section(&writer.header_crc, SECTION_TYPE_MODEL, model, &mut block)?;
            writer.emit(&block)?;
        }
        Ok(writer)
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner.write_all(bytes)?;
        self.bytes_written = self.bytes_written.saturating_add(bytes.len() as u64);
        Ok(())
    }

    /// The header as written.
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.frames_written
    }

    /// Checks a frame as [`write_frame`](Self::write_frame) (or, with
    /// `final_frame`, [`finish_with_frame`](Self::finish_with_frame)) would,
    /// without writing it, and returns the bytes its block will take in the
    /// stream. A final frame is shorter: it has no payload length.
    pub fn check_frame(
        &self,
        coding_mode: CodingMode,
        stages: u8,
        geometry: Geometry,
        payload: &[u8],
        final_frame: bool,
    ) -> Result<u64> {
        let header = self.frame_header(coding_mode, stages, geometry, payload, final_frame)?;
        Ok(header.block_len(&self.header))
    }

    /// Validates a frame's arguments and builds its header.
    fn frame_header(
        &self,
        coding_mode: CodingMode,
        stages: u8,
        geometry: Geometry,
        payload: &[u8],
        final_frame: bool,
    ) -> Result<FrameHeader> {
        let limits = Limits::DEFAULT;
        if coding_mode == CodingMode::AnsPlain {
            return Err(FormatError::InvalidArgument(
                "a 1.x to 3.x ANS payload cannot go into a 4.x stream (its steps differ); \
                 code the indices again"
                    .into(),
            ));
        }
        if !(1..=MAX_STAGES).contains(&stages) {
            return Err(FormatError::InvalidArgument(format!(
                "stages must be 1..={MAX_STAGES}, not {stages}"
            )));
        }
        debug_assert!(self.header.grid_stride_log2 <= MAX_GRID_STRIDE_LOG2);
        let symbols = geometry
            .check_frame(&limits, self.header.grid_stride_log2, stages)
            .map_err(FormatError::InvalidArgument)?;
        let bound = symbols
            .saturating_mul(MAX_INDEX_BITS)
            .div_ceil(8)
            .min(u64::from(limits.max_payload_len));
        let payload_len = u32::try_from(payload.len())
            .ok()
            .filter(|&len| u64::from(len) <= bound)
            .ok_or_else(|| {
                FormatError::InvalidArgument(format!(
                    "payload of {} bytes is over the bound of {bound} for {symbols} symbols",
                    payload.len()
                ))
            })?;
        Ok(FrameHeader {
            coding_mode,
            stages,
            geometry,
            payload_len,
            final_frame,
        })
    }

    /// Writes one frame block: header, payload, CRC-32.
    fn emit_frame(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<()> {
        let mut block = std::mem::take(&mut self.scratch);
        block.clear();
        header.encode(&self.header, &mut block);
        let crc = frame_crc(&self.header_crc, self.frames_written, &block, payload);
        let result = self
            .emit(&block)
            .and_then(|()| self.emit(payload))
            .and_then(|()| self.emit(&crc.to_le_bytes()));
        self.scratch = block;
        result?;
        self.frames_written = self.frames_written.saturating_add(1);
        Ok(())
    }

    /// Appends one frame. `geometry` is stored in the frame only when it
    /// differs from the file default. The payload must not exceed the bound
    /// in the spec (`ceil(symbols * 12 / 8)` bytes, and the payload limit).
    pub fn write_frame(
        &mut self,
        coding_mode: CodingMode,
        stages: u8,
        geometry: Geometry,
        payload: &[u8],
    ) -> Result<()> {
        let header = self.frame_header(coding_mode, stages, geometry, payload, false)?;
        self.emit_frame(&header, payload)
    }

    /// Appends the stream's last frame, marked final, which ends the stream
    /// (no end marker follows); flushes and returns the inner writer. The
    /// frame is checked as in [`write_frame`](Self::write_frame); if it is
    /// refused, nothing more is written and the stream is left unended.
    ///
    /// This is how a writer that knows its last frame ends a stream: 3 bytes
    /// shorter than [`finish`](Self::finish) for up to 127 frames and a last
    /// payload under 128 bytes (no payload length, tag or frame count), and
    /// the end of the stream is covered by that frame's CRC. The stream then
    /// ends only with its input: nothing may follow it there.
    pub fn finish_with_frame(
        mut self,
        coding_mode: CodingMode,
        stages: u8,
        geometry: Geometry,
        payload: &[u8],
    ) -> Result<W> {
        let header = self.frame_header(coding_mode, stages, geometry, payload, true)?;
        self.emit_frame(&header, payload)?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Appends a section that readers skip unless they know `section_type`.
    /// Type 1 (the model) is written by [`Writer::new`] only.
    pub fn write_section(&mut self, section_type: u32, body: &[u8]) -> Result<()> {
        if section_type == SECTION_TYPE_MODEL {
            return Err(FormatError::InvalidArgument(
                "the model section (type 1) is written by Writer::new".into(),
            ));
        }
        let mut block = Vec::with_capacity(body.len().saturating_add(16));
        encode_section(&self.header_crc, section_type, body, &mut block)?;
        self.emit(&block)
    }

    /// Ends the stream with the end marker (the frame count), flushes, and
    /// returns the inner writer. This is how a stream with no frames ends, and
    /// how a writer that cannot know which frame is its last ends one; a writer
    /// that can should end with [`finish_with_frame`](Self::finish_with_frame).
    pub fn finish(mut self) -> Result<W> {
        let mut block = Vec::with_capacity(11);
        encode_end_marker(self.frames_written, &mut block);
        self.emit(&block)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> std::fmt::Debug for Writer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("header", &self.header)
            .field("frames_written", &self.frames_written)
            .field("bytes_written", &self.bytes_written)
            .finish_non_exhaustive()
    }
}
