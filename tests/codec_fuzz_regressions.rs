//! Replays the stored `codec_decoder` fuzz inputs
//! (`testdata/fuzz-regressions/codec_decoder/`: crash inputs, if any, and
//! seeds from the fuzzer's corpus) and a few thousand generated ones
//! through the check the fuzz target runs.
#![cfg(feature = "codec")]

#[path = "support/fuzz_codec.rs"]
mod fuzz_codec;

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn stored_inputs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz-regressions/codec_decoder");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        eprintln!("replaying {}", path.display());
        fuzz_codec::codec_decoder(&std::fs::read(&path).unwrap());
        count += 1;
    }
    assert!(count > 0, "no stored inputs in {}", dir.display());
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
