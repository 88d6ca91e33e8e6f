//! Byte input with offset tracking, shared by the streaming [`Reader`] and the
//! random-access [`FileIndex`], so both parse with the same code.
//!
//! [`Reader`]: super::Reader
//! [`FileIndex`]: super::FileIndex

use std::io::{ErrorKind, Read};

use super::error::{FormatError, Place, Result};
use super::varint::{VarintDecoder, VarintError};

/// A reader that counts the bytes it hands out and turns end-of-input into
/// [`FormatError::Truncated`] naming what was being read.
pub(crate) struct Input<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> Input<R> {
    pub(crate) fn new(inner: R, offset: u64) -> Self {
        Self { inner, offset }
    }

    /// Offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads one byte; `None` at a clean end of input.
    pub(crate) fn try_read_u8(&mut self) -> Result<Option<u8>> {
        let mut buf = [0u8; 1];
        loop {
            match self.inner.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    self.offset = self.offset.saturating_add(1);
                    return Ok(Some(buf[0]));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(crate) fn read_u8(&mut self, place: Place, field: &'static str) -> Result<u8> {
        self.try_read_u8()?.ok_or(FormatError::Truncated {
            offset: self.offset,
            place,
            field,
        })
    }

    /// Fills `buf` completely or fails with `Truncated`.
    pub(crate) fn read_exact(
        &mut self,
        buf: &mut [u8],
        place: Place,
        field: &'static str,
    ) -> Result<()> {
        let mut filled = 0;
        while let Some(rest) = buf.get_mut(filled..) {
            if rest.is_empty() {
                break;
            }
            match self.inner.read(rest) {
                Ok(0) => {
                    return Err(FormatError::Truncated {
                        offset: self.offset,
                        place,
                        field,
                    });
                }
                Ok(n) => {
                    filled += n;
                    self.offset = self.offset.saturating_add(n as u64);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub(crate) fn read_array<const N: usize>(
        &mut self,
        place: Place,
        field: &'static str,
    ) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.read_exact(&mut buf, place, field)?;
        Ok(buf)
    }

    /// Reads `len` bytes into a vector that grows with the bytes actually
    /// present, so a large declared length on a short input allocates little.
    /// The caller has checked `len` against its limit.
    pub(crate) fn read_vec(
        &mut self,
        len: u32,
        place: Place,
        field: &'static str,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity((len as usize).min(64 * 1024));
        self.read_in_chunks(len, place, field, |buf| out.extend_from_slice(buf))?;
        Ok(out)
    }

    /// Reads `len` bytes in pieces of at most 8 KiB, handing each to `each`.
    fn read_in_chunks(
        &mut self,
        len: u32,
        place: Place,
        field: &'static str,
        mut each: impl FnMut(&[u8]),
    ) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            let buf = chunk.get_mut(..n).unwrap_or_default();
            self.read_exact(buf, place, field)?;
            each(buf);
            left -= n;
        }
        Ok(())
    }

    /// Reads to the end of the input, at most `cap` bytes; `None` if the
    /// input holds more (then `cap + 1` bytes have been consumed). Like
    /// [`read_vec`](Self::read_vec), grows with the bytes actually present.
    pub(crate) fn read_to_end_capped(&mut self, cap: u64) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::with_capacity(usize::try_from(cap).unwrap_or(usize::MAX).min(256));
        let mut chunk = [0u8; 8192];
        loop {
            let room = cap.saturating_add(1).saturating_sub(out.len() as u64);
            let n = usize::try_from(room).unwrap_or(usize::MAX).min(chunk.len());
            if n == 0 {
                return Ok(None);
            }
            let buf = chunk.get_mut(..n).unwrap_or_default();
            match self.inner.read(buf) {
                Ok(0) => return Ok(Some(out)),
                Ok(got) => {
                    out.extend_from_slice(buf.get(..got).unwrap_or_default());
                    self.offset = self.offset.saturating_add(got as u64);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads `len` bytes, feeding them to `hasher`, without keeping them.
    pub(crate) fn skip_hashing(
        &mut self,
        len: u32,
        hasher: &mut crc32fast::Hasher,
        place: Place,
        field: &'static str,
    ) -> Result<()> {
        self.read_in_chunks(len, place, field, |buf| hasher.update(buf))
    }

    /// Reads a varint of at most `max_bits` bits (spec section "Varints").
    pub(crate) fn read_varint(
        &mut self,
        max_bits: u8,
        place: Place,
        field: &'static str,
    ) -> Result<u64> {
        let start = self.offset;
        let mut decoder = VarintDecoder::new(max_bits);
        loop {
            let byte = self.read_u8(place, field)?;
            match decoder.push(byte) {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => {}
                Err(err) => return Err(varint_error(err, start, place, field)),
            }
        }
    }

    pub(crate) fn read_varint_u32(&mut self, place: Place, field: &'static str) -> Result<u32> {
        let value = self.read_varint(32, place, field)?;
        // The decoder enforces 32 bits; this cannot fail.
        u32::try_from(value).map_err(|_| FormatError::Malformed {
            offset: self.offset,
            place,
            field,
            expected: "a 32-bit varint".into(),
            found: value.to_string(),
        })
    }
}

pub(crate) fn varint_error(
    err: VarintError,
    offset: u64,
    place: Place,
    field: &'static str,
) -> FormatError {
    let expected = match err {
        VarintError::Overlong { max_bytes } => format!("a varint of at most {max_bytes} bytes"),
        VarintError::TooLarge { max_bits } => format!("a varint of at most {max_bits} bits"),
        VarintError::NonCanonical | VarintError::Truncated => "a canonical varint".into(),
    };
    FormatError::Malformed {
        offset,
        place,
        field,
        expected,
        found: err.to_string(),
    }
}
