//! Random access to the frames of a whole file (for `info`/`verify` tools):
//! one pass with the streaming reader records where each frame lies, then
//! `frame(n)` re-reads and re-checks frame `n` from a memory map.

use std::fs::File;
use std::path::Path;

use super::error::{FormatError, Place, Result};
use super::frame::{Frame, FrameHeader, read_frame};
use super::header::FileHeader;
use super::input::Input;
use super::limits::Limits;
use super::reader::{Reader, SectionInfo};

/// Where one frame lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameEntry {
    /// Frame number, counting from 0.
    pub number: u64,
    /// Offset of the frame's descriptor byte.
    pub offset: u64,
    /// Bytes of the whole frame block: header, payload and CRC.
    pub len_bytes: u64,
    /// The frame header.
    pub header: FrameHeader,
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(vec) => vec,
        }
    }
}

/// A fully validated file with random access to its frames.
///
/// Building the index reads the whole file once with the streaming
/// [`Reader`], so it fails exactly where a streaming read would (every CRC is
/// checked on the way).
pub struct FileIndex {
    bytes: Bytes,
    header: FileHeader,
    header_crc: crc32fast::Hasher,
    limits: Limits,
    embedded_model: Option<Vec<u8>>,
    sections: Vec<SectionInfo>,
    frames: Vec<FrameEntry>,
}

impl FileIndex {
    /// Maps and indexes the file at `path` with the default [`Limits`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_limits(path, Limits::DEFAULT)
    }

    /// Maps and indexes the file at `path`.
    pub fn open_with_limits(path: impl AsRef<Path>, limits: Limits) -> Result<Self> {
        let file = File::open(path)?;
        // SAFETY: the map is only read. As with any memory-mapped file, another
        // process truncating or rewriting the file while it is mapped can make
        // reads fault or change; vqz files are written once and not modified
        // in place, which is the documented precondition of this function.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Self::build(Bytes::Mapped(map), limits)
    }

    /// Indexes a file held in memory (copied) with the default [`Limits`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_bytes_with_limits(bytes, Limits::DEFAULT)
    }

    /// Indexes a file held in memory (copied).
    pub fn from_bytes_with_limits(bytes: &[u8], limits: Limits) -> Result<Self> {
        Self::build(Bytes::Owned(bytes.to_vec()), limits)
    }

    fn build(bytes: Bytes, limits: Limits) -> Result<Self> {
        let mut reader = Reader::with_limits(bytes.as_slice(), limits)?;
        let mut frames = Vec::new();
        while let Some((frame, offset)) = reader.next_frame_located()? {
            let len_bytes = frame.header.block_len(reader.header());
            frames.push(FrameEntry {
                number: frame.number,
                offset,
                len_bytes,
                header: frame.header,
            });
        }
        let header = reader.header().clone();
        let embedded_model = reader.embedded_model().map(<[u8]>::to_vec);
        let sections = reader.sections().to_vec();
        let mut header_bytes = Vec::with_capacity(16);
        header.encode(&mut header_bytes);
        let mut header_crc = crc32fast::Hasher::new();
        header_crc.update(&header_bytes);
        drop(reader);
        Ok(Self {
            bytes,
            header,
            header_crc,
            limits,
            embedded_model,
            sections,
            frames,
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

    /// Number of frames (the final frame's number + 1, or the end marker's count).
    pub fn frame_count(&self) -> u64 {
        self.frames.len() as u64
    }

    /// Every frame's location and header.
    pub fn frames(&self) -> &[FrameEntry] {
        &self.frames
    }

    /// Every section in the file.
    pub fn sections(&self) -> &[SectionInfo] {
        &self.sections
    }

    /// File size in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.bytes.as_slice().len() as u64
    }

    /// Frame `n`, re-read from the file and CRC-checked.
    pub fn frame(&self, n: u64) -> Result<Frame> {
        let entry = usize::try_from(n)
            .ok()
            .and_then(|i| self.frames.get(i))
            .ok_or_else(|| {
                FormatError::InvalidArgument(format!(
                    "frame {n} does not exist; the file has {} frames",
                    self.frames.len()
                ))
            })?;
        let start = usize::try_from(entry.offset).ok();
        let end = usize::try_from(entry.offset.saturating_add(entry.len_bytes)).ok();
        let block = start
            .zip(end)
            .and_then(|(start, end)| self.bytes.as_slice().get(start..end))
            .ok_or(FormatError::Truncated {
                offset: self.len_bytes(),
                place: Place::Frame(n),
                field: "frame block",
            })?;
        let mut input = Input::new(block, entry.offset);
        let descriptor = input.read_u8(Place::Frame(n), "descriptor")?;
        read_frame(
            &mut input,
            descriptor,
            entry.offset,
            n,
            &self.header,
            &self.header_crc,
            &self.limits,
        )
    }
}

impl std::fmt::Debug for FileIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileIndex")
            .field("header", &self.header)
            .field("frames", &self.frames.len())
            .field("len_bytes", &self.len_bytes())
            .finish_non_exhaustive()
    }
}
