//! Learned-context priors (spec sections 8.2 and 10, version 2): coding round
//! trips over grids of every shape, prior bytes round trips, and hostile
//! prior bytes.

#[path = "support/learned.rs"]
mod learned;
#[path = "support/synthetic.rs"]
mod synthetic;

use learned::random_prior;
use synthetic::{K, Rng, digit_grid};
use vqz::entropy::{
    EntropyError, IndexGrid, LEARNED_PRIOR_VERSION, LearnedStage, LearnedWeights, Prior,
    cross_entropy_bits, decode_grid, encode_grid, feature_sizes,
};
use vqz::format::CodingMode;

fn round_trip(prior: &Prior, grid: &IndexGrid) -> (CodingMode, usize) {
    let (mode, payload) = encode_grid(prior, grid).unwrap();
    let back = decode_grid(
        prior,
        mode,
        &payload,
        grid.grid_width,
        grid.grid_height,
        grid.planes,
        grid.stages,
    )
    .unwrap();
    assert_eq!(&back, grid);
    (mode, payload.len())
}

#[test]
fn digit_grids_round_trip_near_their_cross_entropy() {
    let mut rng = Rng(7);
    let prior = random_prior(&mut rng, &[K, K, K], 8, 32);
    assert_eq!(prior.version(), LEARNED_PRIOR_VERSION);
    let mut costs = Vec::new();
    for stages in 1..=3 {
        for _ in 0..40 {
            let grid = digit_grid(&mut rng, stages);
            let (mode, len) = round_trip(&prior, &grid);
            let ce = cross_entropy_bits(&prior, &grid);
            assert!(ce.is_finite());
            costs.push(ce / f64::from(stages));
            if mode == CodingMode::Ans {
                assert!((len as f64) * 8.0 < ce + 40.0, "{len} bytes vs {ce} bits");
            }
        }
    }
    // The random network's tables are far from uniform (9 bits an index):
    // grids cost very different amounts.
    let (lo, hi) = costs
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &c| (lo.min(c), hi.max(c)));
    assert!(hi - lo > 49.0, "{lo}..{hi} bits per stage");
}

#[test]
fn grids_of_any_shape_round_trip() {
    let mut rng = Rng(11);
    // Odd codebook sizes per stage, several planes, grids from 1x1 up.
    let ks = [3u16, 300, 2, 17];
    let prior = random_prior(&mut rng, &ks, 3, 5);
    for (gw, gh, planes) in [(1, 1, 1), (1, 5, 2), (6, 1, 3), (3, 4, 4), (9, 7, 1)] {
        for stages in 1..=4u8 {
            for _ in 0..5 {
                let mut indices = Vec::new();
                for &k in &ks[..usize::from(stages)] {
                    // Mostly one index, so ANS is chosen as well as stored.
                    indices.extend((0..gw * gh * u32::from(planes)).map(|_| {
                        if rng.below(3) == 0 {
                            rng.below(u64::from(k)) as u16
                        } else {
                            0
                        }
                    }));
                }
                let grid = IndexGrid::new(gw, gh, planes, stages, indices).unwrap();
                round_trip(&prior, &grid);
            }
        }
    }
}

#[test]
fn prior_bytes_round_trip() {
    let mut rng = Rng(3);
    let prior = random_prior(&mut rng, &[K, 64], 4, 16);
    let bytes = prior.to_bytes();
    assert_eq!(&bytes[..5], b"vqzp\x02");
    let back = Prior::from_bytes(&bytes).unwrap();
    assert_eq!(back.to_bytes(), bytes);
    assert_eq!(back.learned_stages(), prior.learned_stages());
    assert_eq!(back.num_classes(0), None);
    let grid = digit_grid(&mut rng, 1);
    assert_eq!(encode_grid(&back, &grid), encode_grid(&prior, &grid));
}

/// `bytes` with its CRC-32 recomputed.
fn with_crc(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn hostile_prior_bytes_are_errors() {
    let mut rng = Rng(5);
    let prior = random_prior(&mut rng, &[6, 5], 2, 3);
    let bytes = prior.to_bytes();
    for n in 0..bytes.len() {
        assert!(Prior::from_bytes(&bytes[..n]).is_err(), "cut at {n}");
        if n >= 4 {
            assert!(Prior::from_bytes(&with_crc(bytes[..n].to_vec())).is_err());
        }
    }
    // Any byte changed (CRC fixed up) parses or fails cleanly; a parsed
    // prior still codes.
    let grid = IndexGrid::new(2, 2, 1, 2, vec![1, 0, 5, 2, 4, 4, 0, 1]).unwrap();
    for i in 4..bytes.len() - 4 {
        for delta in [1u8, 0x80] {
            let mut b = bytes.clone();
            b[i] = b[i].wrapping_add(delta);
            if let Ok(p) = Prior::from_bytes(&with_crc(b)) {
                let _ = encode_grid(&p, &grid);
            }
        }
    }
    // A bias out of range: the first b1 value of stage 0.
    let sizes = feature_sizes(0, &[6]);
    let b1_at = 7 + 1 + 1 + 1 + 3 + sizes.iter().sum::<usize>() * 2 + sizes.len() * 2 * 3;
    let mut b = bytes.clone();
    b[b1_at..b1_at + 4].copy_from_slice(&(1i32 << 24).to_le_bytes());
    let err = Prior::from_bytes(&with_crc(b)).unwrap_err();
    assert!(err.to_string().contains("b1"), "{err}");
    // A huge hidden width in a short input fails before allocating.
    let mut b = bytes[..9].to_vec();
    b.extend([0x80, 0x04, 1, 1, 1]); // H = 512
    b.extend([0; 64]);
    b.extend([0; 4]);
    let err = Prior::from_bytes(&with_crc(b)).unwrap_err();
    assert!(
        matches!(
            err,
            EntropyError::BadPrior {
                field: "learned stage",
                ..
            }
        ),
        "the size check, not a read: {err}"
    );
}

#[test]
fn priors_over_the_weight_limit_are_refused() {
    // Stages of K 4096, E 64, H 512 hold 4 to 15 million weights each; the
    // fifth takes the prior over 2^25. All-zero weights are valid.
    let mut b = b"vqzp\x02\x10\x08".to_vec();
    let mut ks = Vec::new();
    for s in 0..5 {
        b.extend([0x80, 0x20, 64, 0x80, 0x04, 0, 0, 0]);
        ks.push(4096u16);
        let rows: usize = feature_sizes(s, &ks).iter().sum();
        let f = feature_sizes(s, &ks).len();
        if s < 4 {
            let bytes = rows * 64 + f * 64 * 512 + 512 * 512 + 4096 * 512 + 4 * (2 * 512 + 4096);
            b.resize(b.len() + bytes, 0);
        }
    }
    b.extend([0; 4]);
    match Prior::from_bytes(&with_crc(b)) {
        Err(EntropyError::LimitExceeded { found, limit, .. }) => {
            assert_eq!(limit, 1 << 25);
            assert!(found > limit);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn stages_must_fit_each_other() {
    let mut rng = Rng(9);
    let a = learned::random_stage(&mut rng, 0, &[K, K], 2, 4);
    let b = learned::random_stage(&mut rng, 1, &[K, K], 2, 4);
    assert!(Prior::learned(vec![a.clone(), b.clone()]).is_ok());
    assert!(Prior::learned(vec![a.clone(), a.clone()]).is_err());
    assert!(Prior::learned(vec![b]).is_err());
    // Stage 1 built for another stage-0 codebook size.
    let c = learned::random_stage(&mut rng, 1, &[64, K], 2, 4);
    assert!(Prior::learned(vec![a, c]).is_err());
}

/// The example of spec section 8.2: the remainder is 0, so index 0 ties
/// with the likeliest index r = 1 and is the table's rotation.
#[test]
fn a_tie_with_the_likeliest_index_rotates_to_the_lowest() {
    let mut w = zeros(2, 1, 1);
    w.shifts = [0, 0, 1];
    w.b3 = vec![0, 1];
    let stage = LearnedStage::new(0, &[2], w).unwrap();
    let prior = Prior::learned(vec![stage]).unwrap();
    for index in [0, 1] {
        let grid = IndexGrid::new(1, 1, 1, 1, vec![index]).unwrap();
        assert!((cross_entropy_bits(&prior, &grid) - 1.0).abs() < 1e-12);
    }
    let grid = IndexGrid::new(3, 1, 1, 1, vec![0, 0, 0]).unwrap();
    let (mode, payload) = encode_grid(&prior, &grid).unwrap();
    // Rotation 0: a run of index 0 is free.
    assert_eq!((mode, payload.len()), (CodingMode::Ans, 0));
    assert_eq!(
        decode_grid(&prior, mode, &payload, 3, 1, 1, 1).unwrap(),
        grid
    );
}

/// All-zero weights of a one-stage prior over `k` indices.
fn zeros(k: u16, embed: u8, hidden: u16) -> LearnedWeights {
    let sizes = feature_sizes(0, &[k]);
    let (e, h) = (usize::from(embed), usize::from(hidden));
    LearnedWeights {
        embed,
        hidden,
        shifts: [0, 0, 0],
        embeddings: vec![0; sizes.iter().sum::<usize>() * e],
        w1: vec![0; sizes.len() * e * h],
        b1: vec![0; h],
        w2: vec![0; h * h],
        b2: vec![0; h],
        w3: vec![0; usize::from(k) * h],
        b3: vec![0; usize::from(k)],
    }
}

#[test]
fn weights_are_checked() {
    let good = zeros(4, 1, 2);
    assert!(LearnedStage::new(0, &[4], good.clone()).is_ok());
    let mut w = good.clone();
    w.w3.pop();
    assert!(LearnedStage::new(0, &[4], w).is_err());
    let mut w = good.clone();
    w.b3[1] = -(1 << 24);
    assert!(LearnedStage::new(0, &[4], w).is_err());
    let mut w = good.clone();
    w.shifts[2] = 32;
    assert!(LearnedStage::new(0, &[4], w).is_err());
    let mut w = good.clone();
    w.hidden = 0;
    assert!(LearnedStage::new(0, &[4], w).is_err());
    // All-zero weights: every logit ties, so every index gets about the
    // same frequency, and the lowest index the remainder.
    let zero = Prior::learned(vec![LearnedStage::new(0, &[4], good).unwrap()]).unwrap();
    let grid = IndexGrid::new(1, 1, 1, 1, vec![0]).unwrap();
    // (2^16 - 4) / 4 + 1 = 16384 for each index, nothing left over: 2 bits.
    assert!((cross_entropy_bits(&zero, &grid) - 2.0).abs() < 1e-9);
}
