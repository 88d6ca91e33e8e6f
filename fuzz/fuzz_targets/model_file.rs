//! Fuzzes model files, which a stream may embed: ModelFile::from_bytes,
//! Model::from_bytes and decoding with what loads. The checks live in the
//! crate's tests so stored crash inputs replay there.

#![no_main]

#[path = "../../tests/support/fuzz_model.rs"]
mod fuzz_model;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_model::model_file(data);
});
