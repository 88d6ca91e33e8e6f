//! encode_grid -> decode_grid round trips under trained and uniform priors,
//! Prior byte round trips, and property tests over any index grid.

#[path = "support/synthetic.rs"]
mod synthetic;

use proptest::prelude::*;
use synthetic::{K, Rng, digit_grid};
use vqz::entropy::{
    EntropyError, IndexGrid, Prior, PriorBuilder, cross_entropy_bits, decode_grid, encode_grid,
};
use vqz::format::CodingMode;

fn trained_prior(stages: u8, seed: u64) -> Prior {
    let mut rng = Rng(seed);
    let train: Vec<_> = (0..2000).map(|_| digit_grid(&mut rng, stages)).collect();
    let ks = vec![K; usize::from(stages)];
    let classes = PriorBuilder::class_maps_from_unigram(&ks, 6, &train).unwrap();
    let mut builder = PriorBuilder::new(&ks, classes, 6).unwrap();
    for grid in &train {
        builder.observe(grid).unwrap();
    }
    builder.build(16, 4.0).unwrap()
}

#[test]
fn synthetic_grids_round_trip_and_beat_stored() {
    let prior = trained_prior(2, 1);
    let mut rng = Rng(99);
    for stages in [1, 2] {
        for _ in 0..300 {
            let grid = digit_grid(&mut rng, stages);
            let (mode, payload) = encode_grid(&prior, &grid).unwrap();
            assert_eq!(mode, CodingMode::Ans);
            let back = decode_grid(&prior, mode, &payload, 7, 7, 1, stages).unwrap();
            assert_eq!(back, grid);
            let ce = cross_entropy_bits(&prior, &grid);
            assert!(
                (payload.len() as f64) * 8.0 < ce + 40.0,
                "{} bytes vs {ce} bits",
                payload.len()
            );
        }
    }
}

#[test]
fn prior_bytes_round_trip() {
    let prior = trained_prior(2, 7);
    let bytes = prior.to_bytes();
    let back = Prior::from_bytes(&bytes).unwrap();
    assert_eq!(back.to_bytes(), bytes);
    let mut rng = Rng(3);
    let grid = digit_grid(&mut rng, 2);
    assert_eq!(encode_grid(&prior, &grid), encode_grid(&back, &grid));
}

#[test]
fn stored_is_chosen_when_ans_is_not_smaller() {
    // A uniform prior over 16 symbols costs exactly 4 bits per index either way.
    let prior = Prior::uniform(&[16]).unwrap();
    let grid = IndexGrid::new(4, 4, 1, 1, (0..16).collect()).unwrap();
    let (mode, payload) = encode_grid(&prior, &grid).unwrap();
    assert_eq!(mode, CodingMode::Stored);
    assert_eq!(payload.len(), 8);
    assert_eq!(payload, [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
    assert_eq!(
        decode_grid(&prior, mode, &payload, 4, 4, 1, 1).unwrap(),
        grid
    );
}

#[test]
fn bad_grids_are_refused() {
    let prior = Prior::uniform(&[16]).unwrap();
    let grid = IndexGrid {
        grid_width: 2,
        grid_height: 2,
        planes: 1,
        stages: 1,
        indices: vec![0; 3],
    };
    assert!(matches!(
        encode_grid(&prior, &grid),
        Err(EntropyError::GridShape(_))
    ));
    let grid = IndexGrid::new(2, 2, 1, 1, vec![0, 0, 16, 0]).unwrap();
    assert!(matches!(
        encode_grid(&prior, &grid),
        Err(EntropyError::IndexOutOfRange { index: 16, .. })
    ));
    let grid = IndexGrid::new(2, 2, 1, 2, vec![0; 8]).unwrap();
    assert!(matches!(
        encode_grid(&prior, &grid),
        Err(EntropyError::StagesMismatch { .. })
    ));
    assert!(matches!(
        decode_grid(&prior, CodingMode::Ans, &[], 1 << 16, 1 << 16, 4, 1),
        Err(EntropyError::LimitExceeded { .. })
    ));
}

#[test]
fn ans_payload_must_be_consumed_exactly() {
    let prior = trained_prior(1, 5);
    let mut rng = Rng(11);
    let grid = digit_grid(&mut rng, 1);
    let (mode, payload) = encode_grid(&prior, &grid).unwrap();
    assert_eq!(mode, CodingMode::Ans);
    let mut longer = payload.clone();
    longer.push(0x55);
    assert!(decode_grid(&prior, mode, &longer, 7, 7, 1, 1).is_err());
    let mut zero_led = vec![0];
    zero_led.extend_from_slice(&payload);
    assert_eq!(
        decode_grid(&prior, mode, &zero_led, 7, 7, 1, 1),
        Err(EntropyError::AnsLeadingZero)
    );
}

fn any_grid() -> impl Strategy<Value = (Vec<u16>, IndexGrid)> {
    (
        prop::collection::vec(2u16..=4096, 1..=3),
        1u32..=9,
        1u32..=9,
        prop::sample::select(vec![1u8, 3, 4]),
    )
        .prop_flat_map(|(ks, w, h, planes)| {
            let stages = ks.len() as u8;
            let per_stage = (w * h * u32::from(planes)) as usize;
            let values: Vec<_> = ks
                .iter()
                .map(|&k| prop::collection::vec(0..k, per_stage))
                .collect();
            (Just(ks), values).prop_map(move |(ks, values)| {
                let indices = values.concat();
                (ks, IndexGrid::new(w, h, planes, stages, indices).unwrap())
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_grid_round_trips((ks, grid) in any_grid(), classes in 1u8..=8, min_count in 1u64..4) {
        let maps = PriorBuilder::class_maps_from_unigram(&ks, classes, std::slice::from_ref(&grid)).unwrap();
        let mut builder = PriorBuilder::new(&ks, maps, classes).unwrap();
        builder.observe(&grid).unwrap();
        let prior = builder.build(min_count, 1.0).unwrap();
        let prior = Prior::from_bytes(&prior.to_bytes()).unwrap();
        for p in [&prior, &Prior::uniform(&ks).unwrap()] {
            let (mode, payload) = encode_grid(p, &grid).unwrap();
            let back = decode_grid(p, mode, &payload, grid.grid_width, grid.grid_height, grid.planes, grid.stages).unwrap();
            prop_assert_eq!(&back, &grid);
            // The other mode also decodes (or refuses) without panicking.
            let other = if mode == CodingMode::Ans { CodingMode::Stored } else { CodingMode::Ans };
            let _ = decode_grid(p, other, &payload, grid.grid_width, grid.grid_height, grid.planes, grid.stages);
        }
    }
}
