//! The streaming reader (spec section "Reading"): parses the file header and
//! any sections before the first frame, then yields frames one at a time,
//! holding at most one frame in memory, until the stream ends with a final
//! frame or an end marker.

use std::io::{BufReader, Read};

use super::error::{FormatError, Place, Result};
use super::frame::{Frame, is_frame_descriptor, read_frame};
use super::header::{FileHeader, read_file_header};
use super::input::Input;
use super::limits::Limits;
use super::section::{END_TAG, SECTION_TAG, SECTION_TYPE_MODEL, read_end_marker, read_section};

/// A section the reader passed, for tools that list a file's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionInfo {
    /// Offset of the section's tag byte.
    pub offset: u64,
    /// Section type (1 = embedded model).
    pub section_type: u32,
    /// Body length in bytes.
    pub body_len: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Blocks,
    /// The last frame returned was final: the input must end here.
    AfterFinal,
    Done,
    Failed,
}

/// Reads a vqz stream frame by frame.
///
/// The input is buffered internally, so a `File` can be passed directly.
/// [`next_frame`](Self::next_frame) returns `None` once the stream has ended
/// properly: after its final frame (checking that no byte follows it) or at
/// a valid end marker. A stream cut short yields every complete frame, then
/// an error ([`FormatError::Truncated`] or [`FormatError::MissingEndMarker`];
/// [`FormatError::FinalFrameCrcMismatch`] for a cut inside a final frame
/// without a length, since 3.0).
///
/// A final frame (since 3.0) stores no payload length: its payload runs to the CRC-32
/// at the end of the input, so the reader returns it only once the input has
/// ended, and the input must hold nothing after the stream.
///
/// ```
/// use vqz::format::{CodingMode, FileHeader, Geometry, ModelId, Reader, Writer};
///
/// let geometry = Geometry { width: 28, height: 28, channels: 1 };
/// let header = FileHeader::new(ModelId([1, 2, 3, 4]), geometry, 2);
/// let writer = Writer::new(Vec::new(), &header, None)?;
/// let bytes = writer.finish_with_frame(CodingMode::Ans, 1, geometry, &[0x2a, 0x17])?;
///
/// let mut reader = Reader::new(&bytes[..])?;
/// let frame = reader.next_frame()?.expect("one frame");
/// assert_eq!(frame.payload, [0x2a, 0x17]);
/// assert!(frame.header.final_frame);
/// assert!(reader.next_frame()?.is_none());
/// # Ok::<(), vqz::format::FormatError>(())
/// ```
pub struct Reader<R: Read> {
    input: Input<BufReader<R>>,
    header: FileHeader,
    header_crc: crc32fast::Hasher,
    limits: Limits,
    embedded_model: Option<Vec<u8>>,
    sections: Vec<SectionInfo>,
    frames_read: u64,
    pending_tag: Option<(u8, u64)>,
    state: State,
}

impl<R: Read> Reader<R> {
    /// Opens a stream with the default [`Limits`].
    pub fn new(inner: R) -> Result<Self> {
        Self::with_limits(inner, Limits::DEFAULT)
    }

    /// Opens a stream: reads the file header and every section before the
    /// first frame (where the embedded model lives).
    pub fn with_limits(inner: R, limits: Limits) -> Result<Self> {
        let mut input = Input::new(BufReader::new(inner), 0);
        let header = read_file_header(&mut input, &limits)?;
        let mut header_bytes = Vec::with_capacity(16);
        header.encode(&mut header_bytes);
        let mut header_crc = crc32fast::Hasher::new();
        header_crc.update(&header_bytes);
        let mut reader = Self {
            input,
            header,
            header_crc,
            limits,
            embedded_model: None,
            sections: Vec::new(),
            frames_read: 0,
            pending_tag: None,
            state: State::Blocks,
        };
        reader.read_leading_sections()?;
        Ok(reader)
    }

    fn read_leading_sections(&mut self) -> Result<()> {
        loop {
            let offset = self.input.offset();
            let tag = self.read_tag()?;
            if tag != SECTION_TAG {
                if self.header.model_embedded && self.embedded_model.is_none() {
                    return Err(FormatError::Malformed {
                        offset,
                        place: Place::BlockTag { frames_before: 0 },
                        field: "block tag",
                        expected: "a model section (flags bit 0 says one is embedded)".into(),
                        found: format!("{tag:#04x}"),
                    });
                }
                self.pending_tag = Some((tag, offset));
                return Ok(());
            }
            let section = read_section(
                &mut self.input,
                offset,
                &self.header_crc,
                &self.limits,
                |t| t == SECTION_TYPE_MODEL,
            )?;
            if section.section_type == SECTION_TYPE_MODEL {
                if !self.header.model_embedded || self.embedded_model.is_some() {
                    return Err(unexpected_model_section(offset, self.header.model_embedded));
                }
                self.embedded_model = section.body;
            }
            self.sections.push(SectionInfo {
                offset,
                section_type: section.section_type,
                body_len: section.body_len,
            });
        }
    }

    fn read_tag(&mut self) -> Result<u8> {
        self.input
            .try_read_u8()?
            .ok_or(FormatError::MissingEndMarker {
                offset: self.input.offset(),
                frames: self.frames_read,
            })
    }

    /// The file header.
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// The embedded model's bytes, if the file carries one.
    pub fn embedded_model(&self) -> Option<&[u8]> {
        self.embedded_model.as_deref()
    }

    /// The limits this reader enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sections read so far (including skipped ones).
    pub fn sections(&self) -> &[SectionInfo] {
        &self.sections
    }

    /// Frames returned so far.
    pub fn frames_read(&self) -> u64 {
        self.frames_read
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.input.offset()
    }

    /// The next frame, or `None` once the stream has ended: after the final
    /// frame (if the input ends right there) or at a valid end marker. Errors
    /// are final: after one, every call returns [`FormatError::ReaderFailed`].
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        Ok(self.next_frame_located()?.map(|(frame, _)| frame))
    }

    /// Like [`next_frame`](Self::next_frame), with the offset of the frame's
    /// first byte.
    pub fn next_frame_located(&mut self) -> Result<Option<(Frame, u64)>> {
        match self.state {
            State::Done => return Ok(None),
            State::Failed => return Err(FormatError::ReaderFailed),
            State::AfterFinal => {
                let result = self.expect_end_after_final();
                self.state = if result.is_ok() {
                    State::Done
                } else {
                    State::Failed
                };
                return result.map(|()| None);
            }
            State::Blocks => {}
        }
        let result = self.read_next_block();
        match &result {
            Ok(Some((frame, _))) if frame.header.final_frame => self.state = State::AfterFinal,
            Ok(Some(_)) => {}
            Ok(None) => self.state = State::Done,
            Err(_) => self.state = State::Failed,
        }
        result
    }

    /// After a final frame: the input must end.
    fn expect_end_after_final(&mut self) -> Result<()> {
        let offset = self.input.offset();
        match self.input.try_read_u8()? {
            None => Ok(()),
            Some(byte) => Err(FormatError::Malformed {
                offset,
                place: Place::BlockTag {
                    frames_before: self.frames_read,
                },
                field: "end of stream",
                expected: format!(
                    "the end of the input (frame {} is the final frame)",
                    self.frames_read.saturating_sub(1)
                ),
                found: format!("data after the final frame (byte {byte:#04x})"),
            }),
        }
    }

    fn read_next_block(&mut self) -> Result<Option<(Frame, u64)>> {
        loop {
            let (tag, offset) = match self.pending_tag.take() {
                Some(pending) => pending,
                None => {
                    let offset = self.input.offset();
                    (self.read_tag()?, offset)
                }
            };
            if is_frame_descriptor(tag) {
                let frame = read_frame(
                    &mut self.input,
                    tag,
                    offset,
                    self.frames_read,
                    &self.header,
                    &self.header_crc,
                    &self.limits,
                )?;
                self.frames_read = self.frames_read.saturating_add(1);
                return Ok(Some((frame, offset)));
            }
            match tag {
                SECTION_TAG => {
                    let section = read_section(
                        &mut self.input,
                        offset,
                        &self.header_crc,
                        &self.limits,
                        |_| false,
                    )?;
                    if section.section_type == SECTION_TYPE_MODEL && self.frames_read > 0 {
                        return Err(unexpected_model_section(offset, self.header.model_embedded));
                    }
                    self.sections.push(SectionInfo {
                        offset,
                        section_type: section.section_type,
                        body_len: section.body_len,
                    });
                }
                END_TAG => {
                    read_end_marker(&mut self.input, self.frames_read)?;
                    let end = self.input.offset();
                    if self.input.try_read_u8()?.is_some() {
                        return Err(FormatError::Malformed {
                            offset: end,
                            place: Place::EndMarker,
                            field: "end of file",
                            expected: "no bytes after the end marker".into(),
                            found: "trailing bytes".into(),
                        });
                    }
                    return Ok(None);
                }
                _ => {
                    return Err(FormatError::Malformed {
                        offset,
                        place: Place::BlockTag {
                            frames_before: self.frames_read,
                        },
                        field: "block tag",
                        expected:
                            "a frame descriptor (0x00-0x7f), 0x80 (section) or 0x81 (end marker)"
                                .into(),
                        found: format!("{tag:#04x}"),
                    });
                }
            }
        }
    }
}

fn unexpected_model_section(offset: u64, flag_set: bool) -> FormatError {
    let expected = if flag_set {
        "one model section, before the first frame"
    } else {
        "no model section (flags bit 0 is clear)"
    };
    FormatError::Malformed {
        offset,
        place: Place::Section { offset },
        field: "section type",
        expected: expected.into(),
        found: "a model section (type 1)".into(),
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.state == State::Failed {
            return None;
        }
        self.next_frame().transpose()
    }
}

impl<R: Read> std::fmt::Debug for Reader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("header", &self.header)
            .field("frames_read", &self.frames_read)
            .field("bytes_read", &self.input.offset())
            .finish_non_exhaustive()
    }
}
