//! Replays the stored `codec_decoder` fuzz inputs
//! (`testdata/fuzz-regressions/codec_decoder/`: crash inputs, if any, and
//! seeds from the fuzzer's corpus) and a few thousand generated ones
//! through the check the fuzz target runs.
#![cfg(feature = "codec")]

#[path = "support/fuzz_codec.rs"]
mod fuzz_codec;

#[path = "support/fuzz_model.rs"]
mod fuzz_model;

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

#[test]
fn stored_model_file_inputs() {
    let count = replay("model_file", |data| {
        fuzz_model::model_file(data);
    });
    assert!(count > 0, "no stored inputs for model_file");
}

/// The tiny model file with a few bytes changed, cut short or with bytes
/// spliced in, half the time in its safetensors header (the JSON with the
/// tensors' names, types, shapes and offsets, and the metadata).
#[test]
fn generated_model_files() {
    let seed = fuzz_model::tiny_model_bytes();
    assert!(fuzz_model::model_file(&seed));
    let header_end = 8 + u64::from_le_bytes(seed[..8].try_into().unwrap()) as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut loaded = 0;
    for round in 0..1500 {
        let mut data = seed.clone();
        let at = |rng: &mut ChaCha8Rng, len: usize| {
            if rng.random_bool(0.5) {
                rng.random_range(0..header_end.min(len).max(1))
            } else {
                rng.random_range(0..len.max(1))
            }
        };
        match round % 3 {
            0 => {
                for _ in 0..rng.random_range(1..5) {
                    let i = at(&mut rng, data.len());
                    data[i] ^= 1 << rng.random_range(0..8);
                }
            }
            1 => data.truncate(rng.random_range(0..data.len())),
            _ => {
                let i = at(&mut rng, data.len());
                let n = rng.random_range(1..8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                data.splice(i..i, bytes);
            }
        }
        loaded += usize::from(fuzz_model::model_file(&data));
    }
    // Both ways out are exercised: models that load and decode, and errors.
    eprintln!("{loaded} of 1500 loaded");
    assert!(loaded > 50 && loaded < 1000, "{loaded} of 1500 loaded");
}
