//! The stored coding mode (spec section "Stored payload"): indices bit-packed
//! most significant bit first at a fixed width per stage, `ceil(log2 K_s)`.

use bitvec::prelude::*;

use super::error::{EntropyError, Result};
use super::grid::Layout;

/// Bits per stored index for a codebook of `num_symbols` entries.
pub fn index_bits(num_symbols: u16) -> u32 {
    u32::from(num_symbols.max(2) - 1).ilog2() + 1
}

/// Payload bytes of a stored grid of `n` indices whose stage widths are `widths`.
pub(crate) fn stored_len(layout: &Layout, n: usize, widths: &[u32]) -> usize {
    let mut bits = 0usize;
    for (s, &w) in widths.iter().enumerate() {
        let start = s.saturating_mul(layout.per_stage).min(n);
        let end = (s + 1).saturating_mul(layout.per_stage).min(n);
        bits = bits.saturating_add((end - start).saturating_mul(w as usize));
    }
    bits.div_ceil(8)
}

pub(crate) fn encode(layout: &Layout, indices: &[u16], widths: &[u32]) -> Vec<u8> {
    let mut bits: BitVec<u8, Msb0> =
        BitVec::with_capacity(stored_len(layout, indices.len(), widths) * 8);
    for (i, &index) in indices.iter().enumerate() {
        let width = widths.get(layout.stage(i)).copied().unwrap_or(16) as usize;
        let value = index.view_bits::<Msb0>();
        bits.extend_from_bitslice(value.get(16 - width.min(16)..).unwrap_or_default());
    }
    bits.into_vec()
}

pub(crate) fn decode(
    layout: &Layout,
    n: usize,
    widths: &[u32],
    num_symbols: &[u16],
    payload: &[u8],
) -> Result<Vec<u16>> {
    let expected = stored_len(layout, n, widths);
    if payload.len() != expected {
        return Err(EntropyError::StoredLength {
            expected,
            found: payload.len(),
            symbols: n,
        });
    }
    let bits = payload.view_bits::<Msb0>();
    let mut indices = Vec::with_capacity(n);
    let mut pos = 0usize;
    for i in 0..n {
        let s = layout.stage(i);
        let width = widths.get(s).copied().unwrap_or(16) as usize;
        let k = num_symbols.get(s).copied().unwrap_or(0);
        let field = bits
            .get(pos..pos + width)
            .ok_or(EntropyError::StoredLength {
                expected,
                found: payload.len(),
                symbols: n,
            })?;
        let index: u16 = field.load_be();
        if index >= k {
            return Err(EntropyError::IndexOutOfRange {
                stage: s as u8,
                position: i,
                index: u32::from(index),
                num_symbols: k,
            });
        }
        indices.push(index);
        pos += width;
    }
    if bits.get(pos..).is_some_and(|padding| padding.any()) {
        return Err(EntropyError::StoredPadding {
            found: payload.last().copied().unwrap_or(0),
        });
    }
    Ok(indices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths() {
        assert_eq!(index_bits(2), 1);
        assert_eq!(index_bits(3), 2);
        assert_eq!(index_bits(4), 2);
        assert_eq!(index_bits(512), 9);
        assert_eq!(index_bits(513), 10);
        assert_eq!(index_bits(4096), 12);
    }

    #[test]
    fn packs_msb_first() {
        let layout = Layout::new(3, 1, 1);
        let bytes = encode(&layout, &[1, 2, 3], &[3]);
        // 001 010 011 + 0000000 padding
        assert_eq!(bytes, [0b0010_1001, 0b1000_0000]);
        assert_eq!(decode(&layout, 3, &[3], &[8], &bytes), Ok(vec![1, 2, 3]));
        assert!(matches!(
            decode(&layout, 3, &[3], &[8], &[0b0010_1001, 0b1000_0001]),
            Err(EntropyError::StoredPadding { .. })
        ));
        assert!(matches!(
            decode(&layout, 3, &[3], &[3], &bytes),
            Err(EntropyError::IndexOutOfRange { index: 3, .. })
        ));
    }
}
