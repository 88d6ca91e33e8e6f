//! Fuzzes the codec's decoder (entropy decoding and the network) with the
//! shipped model. The check lives in the crate's tests so stored crash
//! inputs replay there; build with `--features codec`.

#![no_main]

#[path = "../../tests/support/fuzz_codec.rs"]
mod fuzz_codec;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_codec::codec_decoder(data));
