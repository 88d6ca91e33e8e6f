//! The ANS payload (spec section "ANS payload"): constriction's `AnsCoder`
//! with 32-bit words, a 64-bit state and 16-bit precision, and the mapping
//! between its word stack and payload bytes.

use constriction::stream::model::IterableEntropyModel;
use constriction::stream::{Decode, Encode, stack::DefaultAnsCoder};
use multiversion::multiversion;

use super::PRECISION;
use super::prior::{Table, TableRef, freq};

use super::error::{EntropyError, Result};

/// Encodes symbols given in coding order; `table_for(i, symbols)` returns the
/// table for position `i`. Symbols are pushed last to first so the decoder
/// pops them first to last. With `small_states` (format 4.x) states below
/// `2^16` take the small-state steps of spec section 9.1.
pub(crate) fn encode<'a>(
    symbols: &[u16],
    small_states: bool,
    mut table_for: impl FnMut(usize) -> Result<TableRef<'a>>,
) -> Result<Vec<u8>> {
    let mut coder = DefaultAnsCoder::new();
    // The state while every step has been a small-state step; None after.
    let mut small = small_states.then_some(0u64);
    let mut freqs = Vec::new();
    for (i, &symbol) in symbols.iter().enumerate().rev() {
        let table = table_for(i)?;
        let j = table.rotate(symbol);
        if let Some(x) = small {
            if x < u64::from(freq(&table, symbol)) {
                small = Some(if x == 0 && j == 0 {
                    0
                } else {
                    cdf_freqs(&table, &mut freqs);
                    small_rank(&freqs, x, j)
                });
                continue;
            }
            coder = DefaultAnsCoder::from_raw_parts(Vec::new(), x);
            small = None;
        }
        coder.encode_symbol(j, &table.model).map_err(|e| {
            EntropyError::InvalidArgument(format!("symbol {i} cannot be coded: {e}"))
        })?;
    }
    if let Some(x) = small {
        coder = DefaultAnsCoder::from_raw_parts(Vec::new(), x);
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
    small_states: bool,
    mut table_for: impl FnMut(usize, &[u16]) -> Result<TableRef<'a>>,
) -> Result<Vec<u16>> {
    let words = payload_to_words(payload)?;
    let mut coder =
        DefaultAnsCoder::from_compressed(words).map_err(|_| EntropyError::AnsLeadingZero)?;
    let mut symbols: Vec<u16> = Vec::with_capacity(n);
    // The state once below 2^16 (no words left): small-state steps from then on.
    let mut small: Option<u64> = None;
    let mut freqs = Vec::new();
    for i in 0..n {
        let table = table_for(i, &symbols)?;
        if small_states && small.is_none() && coder.bulk().is_empty() {
            let (bulk, state) = coder.into_raw_parts();
            if state < SMALL {
                small = Some(state);
            }
            coder = DefaultAnsCoder::from_raw_parts(bulk, state);
        }
        let position = match small {
            Some(0) => 0,
            Some(x) => {
                cdf_freqs(&table, &mut freqs);
                let (prev, j) = small_unrank(&freqs, x);
                small = Some(prev);
                j
            }
            None => coder
                .decode_symbol(&table.model)
                .unwrap_or_else(|e| match e {
                    constriction::CoderError::Frontend(never)
                    | constriction::CoderError::Backend(never) => match never {},
                }),
        };
        symbols.push(table.unrotate(position));
    }
    let left = match small {
        Some(x) => (x != 0).then(|| 64 - x.leading_zeros()),
        None => (!coder.is_empty() || !coder.bulk().is_empty()).then(|| {
            let (bulk, state) = coder.into_raw_parts();
            (bulk.len() as u32).saturating_mul(32) + (64 - state.leading_zeros())
        }),
    };
    if let Some(bits_left) = left {
        return Err(EntropyError::AnsNotConsumed {
            symbols: n,
            bits_left,
        });
    }
    Ok(symbols)
}

/// What a small-state decoding step is charged per symbol of its table, in
/// multiply-adds of the decoder's work budget (which runs at about 4e10 a
/// second): its worst case, a search over the key for a hostile table, took
/// 13 to 18 µs with K = 4096 on an idle two-core machine (27 to 38 µs with
/// the other core busy), up to 9 ns a symbol.
pub(crate) const SMALL_STEP_WORK_PER_SYMBOL: u64 = 384;

/// States below this take the small-state step (spec section 9.1).
const SMALL: u64 = 1 << PRECISION;

/// Frequencies of `table` in CDF order, into `out`.
fn cdf_freqs(table: &Table, out: &mut Vec<f64>) {
    out.clear();
    out.extend(
        table
            .model
            .symbol_table()
            .map(|(_, _, p)| f64::from(p.get())),
    );
}

// The small-state arithmetic runs in f64, which is exact here: every
// product is below 2^51, and a quotient n / d (n < 2^34, d <= 2^16) that is
// not an integer lies at least 1 / d from one, far more than the rounding
// of a correctly rounded division, so its floor is the integer one.

/// `R(x, j)` of spec section 9.1: the rank of the pair `(x, j)` (`x < f[j]`)
/// among all pairs `(y, i)`, `y < f[i]`, ordered by the key
/// `(2y + 1) / (2 f[i])`, ties by `i`.
#[multiversion(targets("x86_64+avx512f", "x86_64+avx2", "x86_64+sse4.1", "aarch64+neon"))]
fn small_rank(f: &[f64], x: u64, j: usize) -> u64 {
    let fj = f[j];
    let a = (2 * x + 1) as f64;
    // Pairs (y, i) with (2y + 1) fj < a fi, or <= for i < j: the number of
    // odd numbers up to floor(t / fj), t = a fi (- 1 for i >= j).
    let (before, from) = f.split_at(j);
    let before = lane_sum(before, |fi| odd_up_to((a * fi / fj).floor(), fi));
    let from = lane_sum(from, |fi| odd_up_to(((a * fi - 1.0) / fj).floor(), fi));
    (before + from) as u64
}

/// The odd numbers `2y + 1 <= m` (the pairs `(y, i)` whose key lies below a
/// bound, by `m`), at most `f_i` of them: `min(f_i, floor((m + 1) / 2))`.
#[inline(always)]
fn odd_up_to(m: f64, fi: f64) -> f64 {
    (m * 0.5 + 0.5).floor().min(fi)
}

/// The sum of `term` over `f`, in eight lanes so that it vectorises: the
/// terms are integers, so the order of the additions does not matter.
#[inline(always)]
fn lane_sum(f: &[f64], term: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = f.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|&fi| term(fi)).sum();
    for chunk in chunks {
        for (lane, &fi) in lanes.iter_mut().zip(chunk) {
            *lane += term(fi);
        }
    }
    lanes.iter().sum::<f64>() + rest
}

/// Keys are compared with `t / 2^KEY_BITS`: distinct keys differ by at
/// least `1 / (4 f_i f_k) >= 2^-32`.
const KEY_BITS: u32 = 34;

/// Pairs with a key of at most `t / 2^KEY_BITS`.
#[multiversion(targets("x86_64+avx512f", "x86_64+avx2", "x86_64+sse4.1", "aarch64+neon"))]
fn count_le(f: &[f64], t: u64) -> u64 {
    let scale = t as f64 / (1u64 << (KEY_BITS - 1)) as f64;
    lane_sum(f, |fi| odd_up_to((scale * fi).floor(), fi)) as u64
}

/// Inverse of [`small_rank`]: the pair `(x, j)` of rank `r < 2^PRECISION`.
fn small_unrank(f: &[f64], r: u64) -> (u64, usize) {
    // Most pairs met here are the likeliest symbol's, whose ranks grow by
    // about 2^16 / f[0] per step of x: try it first.
    let f0 = f[0] as u64;
    let density = f[0] / SMALL as f64;
    let mut x = (((2 * r + 1) * f0) >> (PRECISION + 1)).min(f0 - 1);
    for _ in 0..3 {
        let got = small_rank(f, x, 0);
        if got == r {
            return (x, 0);
        }
        let step = ((r as f64 - got as f64) * density).round() as i64;
        let step = if step == 0 {
            (r as i64 - got as i64).signum()
        } else {
            step
        };
        x = x.saturating_add_signed(step).min(f0 - 1);
    }
    // The smallest t with more than r keys at most t / 2^KEY_BITS: the
    // keys in ((t - 1) / 2^KEY_BITS, t / 2^KEY_BITS] are then all equal,
    // and the pair of rank r is among them. About r / 2^16 keys lie below
    // r / 2^16, give or take half the table's size.
    let k = f.len() as u64;
    let shift = KEY_BITS - PRECISION as u32;
    let mut lo = r.saturating_sub(k + 1) << shift;
    let mut hi = ((r + k + 2) << shift).min(1 << KEY_BITS);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if count_le(f, mid) > r {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let t = lo;
    let mut skip = r - count_le(f, t - 1);
    // count_le for one symbol, in integers (t fi < 2^51).
    let per_symbol = |fi: u64, t: u64| ((t * fi) >> (KEY_BITS - 1)).div_ceil(2).min(fi);
    for (j, &fj) in f.iter().enumerate() {
        let fj = fj as u64;
        let below = per_symbol(fj, t - 1);
        if per_symbol(fj, t) > below {
            if skip == 0 {
                return (below, j);
            }
            skip -= 1;
        }
    }
    unreachable!("every rank below 2^PRECISION has a pair")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::prior::table_from_freqs;

    /// A small xorshift generator: tests need no crate for this.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Frequencies summing to 2^16, each at least 1, skewed by `peak`.
    fn random_freqs(rng: &mut Rng, k: usize, peak: u64) -> Vec<u32> {
        let weights: Vec<u64> = (0..k)
            .map(|i| 1 + rng.next() % 1000 + if i == 3 % k { peak } else { 0 })
            .collect();
        let total: u64 = weights.iter().sum();
        let spare = SMALL - k as u64;
        let mut f: Vec<u32> = weights
            .iter()
            .map(|w| (1 + w * spare / total) as u32)
            .collect();
        let sum: u64 = f.iter().map(|&v| u64::from(v)).sum();
        f[0] += (SMALL - sum) as u32;
        f
    }

    #[test]
    fn the_small_step_orders_every_state_once() {
        let tables: [&[f64]; 5] = [
            &[32768.0, 32768.0],
            &[65535.0, 1.0],
            &[1.0, 65535.0],
            &[40000.0, 20000.0, 5000.0, 536.0],
            &[16384.0, 16384.0, 16384.0, 16384.0],
        ];
        for f in tables {
            let mut seen = vec![false; SMALL as usize];
            for (j, &fj) in f.iter().enumerate() {
                let fj = fj as u64;
                for x in 0..fj {
                    let r = small_rank(f, x, j);
                    assert!(r < SMALL && !seen[r as usize], "{f:?}: ({x}, {j}) -> {r}");
                    seen[r as usize] = true;
                    assert_eq!(small_unrank(f, r), (x, j), "{f:?}");
                    // The state grows by the symbol's probability.
                    let ideal = (2 * x + 1) as f64 * SMALL as f64 / (2 * fj) as f64;
                    assert!(
                        (r as f64 - ideal).abs() <= f.len() as f64,
                        "{f:?}: {r} vs {ideal}"
                    );
                }
            }
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for k in [3, 17, 512, 4096] {
            let f: Vec<f64> = random_freqs(&mut rng, k, 30_000)
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            for _ in 0..2000 {
                let j = (rng.next() % k as u64) as usize;
                let x = rng.next() % f[j] as u64;
                assert_eq!(small_unrank(&f, small_rank(&f, x, j)), (x, j));
            }
        }
    }

    #[test]
    fn payloads_round_trip_in_both_kinds_of_steps() {
        let mut rng = Rng(0x0123_4567_89AB_CDEF);
        for round in 0..300 {
            let k = [2, 5, 64, 512][round % 4];
            let peak = [0, 5_000, 200_000, 10_000_000][(round / 4) % 4];
            let tables: Vec<Table> = (0..4)
                .map(|_| table_from_freqs(&random_freqs(&mut rng, k, peak)).unwrap())
                .collect();
            let n = (rng.next() % 60) as usize;
            let symbols: Vec<u16> = (0..n)
                .map(|_| {
                    // Mostly the likeliest symbol, as in real grids.
                    if rng.next().is_multiple_of(4) {
                        (rng.next() % k as u64) as u16
                    } else {
                        tables[0].rotation
                    }
                })
                .collect();
            let table = |i: usize| TableRef::Borrowed(&tables[i % tables.len()]);
            for small_states in [true, false] {
                let payload = encode(&symbols, small_states, |i| Ok(table(i))).unwrap();
                let back = decode(&payload, n, small_states, |i, _| Ok(table(i))).unwrap();
                assert_eq!(back, symbols, "round {round}, small states {small_states}");
            }
        }
    }

    #[test]
    fn every_index_is_charged_a_small_state_step() {
        // A hostile payload can keep every index in small-state steps, and
        // class contexts cost nothing else per index.
        let prior = crate::entropy::Prior::uniform(&[4096, 2]).unwrap();
        assert_eq!(prior.work_per_index(0), 4096 * SMALL_STEP_WORK_PER_SYMBOL);
        assert_eq!(prior.work_per_index(1), 2 * SMALL_STEP_WORK_PER_SYMBOL);
        assert_eq!(prior.work_per_index(2), 0);
    }

    #[test]
    fn small_steps_make_payloads_shorter_at_the_start() {
        // One likely symbol (probability 1/2) placed high in the CDF: the
        // plain step codes it alone as about log2(c_j) = 15 bits.
        let mut f = vec![1u32; 512];
        f[0] = 32768;
        f[300] = 32768 - 510;
        let table = table_from_freqs(&f).unwrap();
        let at = |_: usize| Ok(TableRef::Borrowed(&table));
        let plain = encode(&[300], false, at).unwrap();
        let small = encode(&[300], true, at).unwrap();
        assert_eq!(plain.len(), 2);
        assert_eq!(small, [1], "the second likeliest pair at state 0 is rank 1");
        assert_eq!(decode(&small, 1, true, |_, _| at(0)).unwrap(), [300]);
        // Each payload decodes in its own kind of steps only.
        assert_ne!(decode(&small, 1, false, |_, _| at(0)).ok(), Some(vec![300]));
    }

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
