//! Fuzzes the frame (final flag included), section and end-marker parsers
//! behind a valid file header.
//! The checks live in the crate's tests so stored crash inputs replay there.

#![no_main]

#[path = "../../tests/support/synthetic.rs"]
mod synthetic;

#[path = "../../tests/support/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::blocks(data));
