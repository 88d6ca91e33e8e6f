//! Learned-context priors with random integer weights, scaled so that the
//! hidden layers neither all saturate nor all vanish and the tables they
//! give are far from uniform: for tests of coding and of the prior bytes.

#![allow(dead_code)]

use super::synthetic::Rng;
use vqz::entropy::{LearnedStage, LearnedWeights, Prior, feature_sizes};

fn int8s(rng: &mut Rng, n: usize) -> Vec<i8> {
    (0..n)
        .map(|_| (rng.below(255) as i64 - 127) as i8)
        .collect()
}

fn biases(rng: &mut Rng, n: usize, scale: u64) -> Vec<i32> {
    (0..n)
        .map(|_| (rng.below(2 * scale + 1) as i64 - scale as i64) as i32)
        .collect()
}

/// A random stage `stage` of a prior over codebooks `num_symbols`.
pub fn random_stage(
    rng: &mut Rng,
    stage: usize,
    num_symbols: &[u16],
    embed: u8,
    hidden: u16,
) -> LearnedStage {
    let weights = random_weights(rng, stage, num_symbols, embed, hidden);
    LearnedStage::new(stage, num_symbols, weights).expect("valid random stage")
}

/// The weights of [`random_stage`].
pub fn random_weights(
    rng: &mut Rng,
    stage: usize,
    num_symbols: &[u16],
    embed: u8,
    hidden: u16,
) -> LearnedWeights {
    let sizes = feature_sizes(stage, num_symbols);
    let (e, h) = (usize::from(embed), usize::from(hidden));
    let k = usize::from(num_symbols[stage]);
    let inputs = sizes.len() * e;
    // A sum of n products of uniform 8-bit values spreads about
    // 127 * 127 / 3 * sqrt(n): shift that down to about 128.
    let shift = |n: usize| ((5400.0 * (n as f64).sqrt() / 128.0).log2().round()) as u8;
    LearnedWeights {
        embed,
        hidden,
        shifts: [shift(inputs), shift(h) - 1, shift(h) + 2],
        embeddings: int8s(rng, sizes.iter().sum::<usize>() * e),
        w1: int8s(rng, inputs * h),
        b1: biases(rng, h, 1 << 12),
        w2: int8s(rng, h * h),
        b2: biases(rng, h, 1 << 12),
        w3: int8s(rng, k * h),
        b3: biases(rng, k, 1 << 14),
    }
}

/// A random learned prior over codebooks `num_symbols`.
pub fn random_prior(rng: &mut Rng, num_symbols: &[u16], embed: u8, hidden: u16) -> Prior {
    let stages = (0..num_symbols.len())
        .map(|s| random_stage(rng, s, num_symbols, embed, hidden))
        .collect();
    Prior::learned(stages).expect("valid random prior")
}
