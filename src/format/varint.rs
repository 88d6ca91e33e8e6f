//! LEB128 unsigned varints (spec section "Varints").
//!
//! Every length and dimension in a vqz file is a varint. Decoding is strict:
//! at most 5 bytes for a 32-bit field and 10 for a 64-bit one, no value above
//! the field's range and no redundant trailing zero group, so each value has
//! exactly one encoding and a flipped bit either changes the value or is
//! rejected.

use thiserror::Error;

/// Why a varint could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum VarintError {
    /// The bytes ran out before the last byte of the varint (one with bit 7 clear).
    #[error("input ends inside a varint")]
    Truncated,
    /// The varint has more bytes than its field allows.
    #[error("varint longer than {max_bytes} bytes")]
    Overlong {
        /// Longest encoding the field allows.
        max_bytes: u8,
    },
    /// The value does not fit the field.
    #[error("varint value does not fit in {max_bits} bits")]
    TooLarge {
        /// Width of the field.
        max_bits: u8,
    },
    /// The encoding ends with a redundant zero byte (a shorter one exists).
    #[error("non-canonical varint (ends with a redundant zero byte)")]
    NonCanonical,
}

/// Appends the LEB128 encoding of `value` to `out`.
pub fn encode(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let low = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// Number of bytes [`encode`] writes for `value`.
pub fn encoded_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Byte-at-a-time varint decoder, for readers that pull bytes from a stream.
#[derive(Debug, Clone)]
pub struct VarintDecoder {
    value: u64,
    count: u8,
    max_bits: u8,
}

impl VarintDecoder {
    /// A decoder for a field of `max_bits` bits (1..=64).
    pub fn new(max_bits: u8) -> Self {
        Self {
            value: 0,
            count: 0,
            max_bits: max_bits.clamp(1, 64),
        }
    }

    fn max_bytes(&self) -> u8 {
        self.max_bits.div_ceil(7)
    }

    /// Feeds the next byte. Returns `Ok(Some(value))` when the varint is complete.
    pub fn push(&mut self, byte: u8) -> Result<Option<u64>, VarintError> {
        let index = self.count;
        let max_bytes = self.max_bytes();
        if index >= max_bytes {
            return Err(VarintError::Overlong { max_bytes });
        }
        self.count = index.saturating_add(1);
        let group = u64::from(byte & 0x7F);
        let shift = 7 * u32::from(index); // index < 10, so shift <= 63
        if index + 1 == max_bytes {
            if byte & 0x80 != 0 {
                return Err(VarintError::Overlong { max_bytes });
            }
            let room = u32::from(self.max_bits) - shift; // 1..=7 bits left
            if group >> room != 0 {
                return Err(VarintError::TooLarge {
                    max_bits: self.max_bits,
                });
            }
        }
        self.value |= group << shift;
        if byte & 0x80 != 0 {
            return Ok(None);
        }
        if index > 0 && byte == 0 {
            return Err(VarintError::NonCanonical);
        }
        Ok(Some(self.value))
    }
}

/// Decodes a varint of at most `max_bits` bits from the start of `bytes`;
/// returns the value and the number of bytes it took.
pub fn decode(bytes: &[u8], max_bits: u8) -> Result<(u64, usize), VarintError> {
    let mut decoder = VarintDecoder::new(max_bits);
    for (i, &byte) in bytes.iter().enumerate() {
        if let Some(value) = decoder.push(byte)? {
            return Ok((value, i + 1));
        }
    }
    Err(VarintError::Truncated)
}

/// [`decode`] for a 32-bit field.
pub fn decode_u32(bytes: &[u8]) -> Result<(u32, usize), VarintError> {
    let (value, len) = decode(bytes, 32)?;
    let value = u32::try_from(value).map_err(|_| VarintError::TooLarge { max_bits: 32 })?;
    Ok((value, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode(value, &mut out);
        out
    }

    #[test]
    fn known_encodings() {
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(127), [0x7F]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xAC, 0x02]);
        assert_eq!(enc(u64::from(u32::MAX)), [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]);
        assert_eq!(enc(u64::MAX).len(), 10);
    }

    #[test]
    fn round_trip_and_len() {
        for value in [0, 1, 127, 128, 16383, 16384, u64::from(u32::MAX), u64::MAX] {
            let bytes = enc(value);
            assert_eq!(bytes.len(), encoded_len(value));
            assert_eq!(decode(&bytes, 64), Ok((value, bytes.len())));
        }
    }

    #[test]
    fn rejects_bad_encodings() {
        assert_eq!(decode(&[0x80, 0x00], 32), Err(VarintError::NonCanonical));
        assert_eq!(decode(&[0x80], 32), Err(VarintError::Truncated));
        assert_eq!(
            decode(&[0xFF, 0xFF, 0xFF, 0xFF, 0x1F], 32),
            Err(VarintError::TooLarge { max_bits: 32 })
        );
        assert_eq!(
            decode(&[0xFF; 16], 32),
            Err(VarintError::Overlong { max_bytes: 5 })
        );
        assert_eq!(
            decode(&[0xFF; 16], 64),
            Err(VarintError::Overlong { max_bytes: 10 })
        );
        assert_eq!(decode_u32(&[0x2A]), Ok((42, 1)));
    }
}
