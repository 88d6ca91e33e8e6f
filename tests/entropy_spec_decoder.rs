//! An independent decoder written from `spec/vqz-format.md` alone (sections
//! 8-10: contexts, stored and ANS payloads, prior bytes), checked against the
//! library on many grids. If the code and the spec disagree, this fails.

#[path = "support/synthetic.rs"]
mod synthetic;

use synthetic::{K, Rng, digit_grid};
use vqz::entropy::{IndexGrid, Prior, PriorBuilder, encode_grid};
use vqz::format::CodingMode;

struct SpecStage {
    k: usize,
    c: usize,
    class_map: Vec<usize>,
    fallback: Vec<u32>,
    tables: Vec<(usize, Vec<u32>)>,
}

fn varint(bytes: &[u8], pos: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[*pos];
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

/// Spec section 10.
fn parse_prior(bytes: &[u8]) -> Vec<SpecStage> {
    assert_eq!(&bytes[..4], b"vqzp");
    assert_eq!(bytes[4], 1);
    assert_eq!(bytes[5], 16);
    let body = &bytes[..bytes.len() - 4];
    let crc = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
    assert_eq!(crc, crc32fast::hash(body));
    let stages = usize::from(bytes[6]);
    let mut pos = 7;
    let mut out = Vec::new();
    for _ in 0..stages {
        let k = varint(body, &mut pos) as usize;
        let c = usize::from(body[pos]);
        pos += 1;
        let class_map = body[pos..pos + k].iter().map(|&b| usize::from(b)).collect();
        pos += k;
        let t = varint(body, &mut pos) as usize;
        let table = |pos: &mut usize| -> Vec<u32> {
            let f: Vec<u32> = (0..k).map(|_| varint(body, pos) as u32 + 1).collect();
            assert_eq!(f.iter().sum::<u32>(), 1 << 16);
            f
        };
        let fallback = table(&mut pos);
        let tables = (0..t)
            .map(|_| {
                let id = varint(body, &mut pos) as usize;
                (id, table(&mut pos))
            })
            .collect();
        out.push(SpecStage {
            k,
            c,
            class_map,
            fallback,
            tables,
        });
    }
    assert_eq!(pos, body.len());
    out
}

/// Spec section 8: the table for a position.
fn table_for<'a>(
    stages: &'a [SpecStage],
    idx: &[u16],
    (s, p, y, x): (usize, usize, usize, usize),
    (gw, gh, planes): (usize, usize, usize),
) -> &'a [u32] {
    let at = |s: usize, y: usize, x: usize| usize::from(idx[((s * planes + p) * gh + y) * gw + x]);
    let st = &stages[s];
    let l = if x > 0 {
        st.class_map[at(s, y, x - 1)]
    } else {
        st.c
    };
    let a = if y > 0 {
        st.class_map[at(s, y - 1, x)]
    } else {
        st.c
    };
    let (pc, ps) = if s > 0 {
        (stages[s - 1].class_map[at(s - 1, y, x)], stages[s - 1].c)
    } else {
        (0, 1)
    };
    let context = (l * (st.c + 1) + a) * ps + pc;
    st.tables
        .iter()
        .find(|(id, _)| *id == context)
        .map_or(&st.fallback, |(_, t)| t)
}

/// Spec section 9.
fn spec_decode(
    stages: &[SpecStage],
    mode: CodingMode,
    payload: &[u8],
    dims: (usize, usize, usize),
    s_count: usize,
) -> Option<Vec<u16>> {
    let (gw, gh, planes) = dims;
    let n = gw * gh * planes * s_count;
    let mut idx: Vec<u16> = Vec::with_capacity(n);
    let pos_of = |i: usize| {
        let x = i % gw;
        let y = (i / gw) % gh;
        let p = (i / (gw * gh)) % planes;
        let s = i / (gw * gh * planes);
        (s, p, y, x)
    };
    match mode {
        CodingMode::Stored => {
            let mut bit = 0usize;
            for i in 0..n {
                let (s, ..) = pos_of(i);
                let b = (usize::BITS - (stages[s].k - 1).leading_zeros()) as usize;
                let mut v = 0usize;
                for _ in 0..b {
                    let byte = *payload.get(bit / 8)?;
                    v = (v << 1) | usize::from((byte >> (7 - bit % 8)) & 1);
                    bit += 1;
                }
                if v >= stages[s].k {
                    return None;
                }
                idx.push(v as u16);
            }
            if payload.len() != bit.div_ceil(8) {
                return None;
            }
            if !bit.is_multiple_of(8) && payload[bit / 8] & (0xff >> (bit % 8)) != 0 {
                return None;
            }
        }
        CodingMode::Ans => {
            if payload.first() == Some(&0) {
                return None;
            }
            let mut padded = vec![0u8; (4 - payload.len() % 4) % 4];
            padded.extend_from_slice(payload);
            let words: Vec<u64> = padded
                .chunks(4)
                .map(|c| u64::from(u32::from_be_bytes(c.try_into().unwrap())))
                .collect();
            let mut next = 0;
            let mut x: u64 = 0;
            if !words.is_empty() {
                x = words[0];
                next = 1;
                while x < 1 << 32 && next < words.len() {
                    x = (x << 32) | words[next];
                    next += 1;
                }
            }
            for i in 0..n {
                let (s, p, y, xx) = pos_of(i);
                let f = table_for(stages, &idx, (s, p, y, xx), dims);
                let k = f.len();
                let r = (0..k).fold(0, |best, j| if f[j] > f[best] { j } else { best });
                let q = (x & 0xffff) as u32;
                let mut c = 0u32;
                let mut j = 0;
                loop {
                    let fj = f[(j + r) % k];
                    if q < c + fj {
                        x = (x >> 16) * u64::from(fj) + u64::from(q - c);
                        break;
                    }
                    c += fj;
                    j += 1;
                }
                if x < 1 << 32 && next < words.len() {
                    x = (x << 32) | words[next];
                    next += 1;
                }
                idx.push(((j + r) % k) as u16);
            }
            if x != 0 || next != words.len() {
                return None;
            }
        }
    }
    Some(idx)
}

fn check(prior: &Prior, grid: &IndexGrid) {
    let stages = parse_prior(&prior.to_bytes());
    let (mode, payload) = encode_grid(prior, grid).unwrap();
    let dims = (
        grid.grid_width as usize,
        grid.grid_height as usize,
        usize::from(grid.planes),
    );
    let decoded = spec_decode(&stages, mode, &payload, dims, usize::from(grid.stages));
    assert_eq!(decoded.as_ref(), Some(&grid.indices), "mode {mode:?}");
}

#[test]
fn spec_decoder_agrees_with_the_library() {
    let mut rng = Rng(42);
    let train: Vec<_> = (0..1500).map(|_| digit_grid(&mut rng, 2)).collect();
    let classes = PriorBuilder::class_maps_from_unigram(&[K, K], 5, &train).unwrap();
    let mut builder = PriorBuilder::new(&[K, K], classes, 5).unwrap();
    for grid in &train {
        builder.observe(grid).unwrap();
    }
    let prior = builder.build(8, 2.0).unwrap();
    for _ in 0..200 {
        check(&prior, &digit_grid(&mut rng, 1));
        check(&prior, &digit_grid(&mut rng, 2));
    }
    // Stored mode, multi-plane grids, odd codebook sizes.
    let uniform = Prior::uniform(&[5, 300]).unwrap();
    for _ in 0..50 {
        let mut indices: Vec<u16> = (0..3 * 2 * 3).map(|_| rng.below(5) as u16).collect();
        indices.extend((0..3 * 2 * 3).map(|_| rng.below(300) as u16));
        check(&uniform, &IndexGrid::new(3, 2, 3, 2, indices).unwrap());
    }
}
