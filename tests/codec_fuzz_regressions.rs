//! Replays the stored `codec_decoder` fuzz inputs
//! (`testdata/fuzz-regressions/codec_decoder/`: crash inputs, if any, and
//! seeds from the fuzzer's corpus) and a few thousand generated ones
//! through the check the fuzz target runs.
#![cfg(feature = "codec")]

#[path = "support/fuzz_codec.rs"]
mod fuzz_codec;

#[path = "support/replay.rs"]
mod replay;

use replay::replay;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn stored_inputs() {
    let count = replay("codec_decoder", fuzz_codec::codec_decoder);
    assert!(count > 0, "no stored inputs for codec_decoder");
}

/// Random frames: short random payloads rarely decode, so these mostly
/// exercise the errors. Every fourth input is a stored 28x14 frame (a 7x4
/// grid, 252 bits in 32 bytes) of all zero bits, which decodes, or all one
/// bits, whose padding bits are not zero.
#[test]
fn generated_inputs() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for round in 0..2000 {
        let len = rng.random_range(0..200);
        let mut data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if round % 4 == 0 {
            // Payload bytes all equal: stored grids of one index.
            let fill = if round % 8 == 0 { 0 } else { 0xff };
            data = vec![0x10, 27, 13, 0, 32];
            data.extend(std::iter::repeat_n(fill, 32));
        }
        fuzz_codec::codec_decoder(&data);
    }
}
