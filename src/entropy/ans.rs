//! The ANS payload (spec section "ANS payload"): constriction's `AnsCoder`
//! with 32-bit words, a 64-bit state and 16-bit precision, and the mapping
//! between its word stack and payload bytes.

use constriction::stream::{Decode, Encode, stack::DefaultAnsCoder};

use super::prior::TableRef;

use super::error::{EntropyError, Result};

/// Encodes symbols given in coding order; `table_for(i, symbols)` returns the
/// table for position `i`. Symbols are pushed last to first so the decoder
/// pops them first to last.
pub(crate) fn encode<'a>(
    symbols: &[u16],
    mut table_for: impl FnMut(usize) -> Result<TableRef<'a>>,
) -> Result<Vec<u8>> {
    let mut coder = DefaultAnsCoder::new();
    for (i, &symbol) in symbols.iter().enumerate().rev() {
        let table = table_for(i)?;
        coder
            .encode_symbol(table.rotate(symbol), &table.model)
            .map_err(|e| {
                EntropyError::InvalidArgument(format!("symbol {i} cannot be coded: {e}"))
            })?;
    }
    let words = coder
        .into_compressed()
        .unwrap_or_else(|never| match never {});
    Ok(words_to_payload(&words))
}

/// Payload bytes from the coder's word stack: the top word first, each word
/// big-endian, with the leading zero bytes of the top word dropped.
fn words_to_payload(words: &[u32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(words.len() * 4);
    for word in words.iter().rev() {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    let leading_zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.split_off(leading_zeros)
}

/// The coder's word stack from payload bytes (inverse of `words_to_payload`).
fn payload_to_words(payload: &[u8]) -> Result<Vec<u32>> {
    if payload.first() == Some(&0) {
        return Err(EntropyError::AnsLeadingZero);
    }
    let pad = (4 - payload.len() % 4) % 4;
    let mut padded = vec![0u8; pad];
    padded.extend_from_slice(payload);
    let mut words: Vec<u32> = padded
        .chunks_exact(4)
        .map(|c| c.try_into().map_or(0, u32::from_be_bytes))
        .collect();
    words.reverse();
    Ok(words)
}

/// Decodes `n` symbols in coding order; `table_for(i, decoded_so_far)` returns
/// the table for position `i`. The payload must be consumed exactly.
pub(crate) fn decode<'a>(
    payload: &[u8],
    n: usize,
    mut table_for: impl FnMut(usize, &[u16]) -> Result<TableRef<'a>>,
) -> Result<Vec<u16>> {
    let words = payload_to_words(payload)?;
    let mut coder =
        DefaultAnsCoder::from_compressed(words).map_err(|_| EntropyError::AnsLeadingZero)?;
    let mut symbols: Vec<u16> = Vec::with_capacity(n);
    for i in 0..n {
        let table = table_for(i, &symbols)?;
        let position = coder
            .decode_symbol(&table.model)
            .unwrap_or_else(|e| match e {
                constriction::CoderError::Frontend(never)
                | constriction::CoderError::Backend(never) => match never {},
            });
        symbols.push(table.unrotate(position));
    }
    if !coder.is_empty() || !coder.bulk().is_empty() {
        let (bulk, state) = coder.into_raw_parts();
        let bits_left = (bulk.len() as u32).saturating_mul(32) + (64 - state.leading_zeros());
        return Err(EntropyError::AnsNotConsumed {
            symbols: n,
            bits_left,
        });
    }
    Ok(symbols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_bytes_trim_the_top_word() {
        // Stack bottom first: [flushed, low state word, high state word].
        let words = [0xAABB_CCDD, 0x0000_0001, 0x0000_0102];
        let payload = words_to_payload(&words);
        assert_eq!(payload, [0x01, 0x02, 0, 0, 0, 1, 0xAA, 0xBB, 0xCC, 0xDD]);
        assert_eq!(payload_to_words(&payload).unwrap(), words);
        assert!(words_to_payload(&[]).is_empty());
        assert_eq!(payload_to_words(&[]).unwrap(), Vec::<u32>::new());
        assert_eq!(payload_to_words(&[0, 1]), Err(EntropyError::AnsLeadingZero));
    }
}
