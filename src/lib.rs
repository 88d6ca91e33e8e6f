//! vqz: a learned image codec.
//!
//! Images go through a VQ-VAE encoder to a grid of codebook indices, the
//! indices are entropy-coded with ANS under integer priors, and the result is
//! written to a versioned, streaming container (`spec/vqz-format.md`).
//!
//! Layers, each depending only on the ones before it:
//! `format` (container bytes) -> `entropy` (priors and ANS) -> `model`
//! (the network) -> `codec` (the public API) -> `train` / `bench`.
#![cfg_attr(feature = "codec", doc = "")]
#![cfg_attr(feature = "codec", doc = include_str!("../README.md"))]

#[cfg(feature = "codec")]
pub mod atomic_write;
#[cfg(feature = "cli")]
pub mod bench;
#[cfg(feature = "codec")]
pub mod codec;
pub mod entropy;
pub mod format;
#[cfg(feature = "codec")]
pub mod model;
#[cfg(feature = "codec")]
pub mod train;
