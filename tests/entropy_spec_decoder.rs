//! An independent decoder written from `spec/vqz-format.md` alone (sections
//! 8-10: class and learned contexts, stored and ANS payloads, prior bytes),
//! checked against the library on many grids. If the code and the spec
//! disagree, this fails.

#[path = "support/learned.rs"]
mod learned;
#[path = "support/synthetic.rs"]
mod synthetic;

use synthetic::{K, Rng, digit_grid};
use vqz::entropy::{IndexGrid, Prior, PriorBuilder, encode_grid};
use vqz::format::CodingMode;

enum SpecStage {
    Classes(ClassStage),
    Learned(LearnedSpec),
}

impl SpecStage {
    fn k(&self) -> usize {
        match self {
            SpecStage::Classes(c) => c.k,
            SpecStage::Learned(l) => l.k,
        }
    }
}

struct ClassStage {
    k: usize,
    c: usize,
    class_map: Vec<usize>,
    fallback: Vec<u32>,
    tables: Vec<(usize, Vec<u32>)>,
}

/// Spec section 10, version 2.
struct LearnedSpec {
    k: usize,
    e: usize,
    h: usize,
    r: [u32; 3],
    emb: Vec<i64>,
    w1: Vec<i64>,
    b1: Vec<i64>,
    w2: Vec<i64>,
    b2: Vec<i64>,
    w3: Vec<i64>,
    b3: Vec<i64>,
}

const EXP: [u64; 16] = [
    2147483648, 2056437387, 1969251188, 1885761398, 1805811301, 1729250827, 1655936265, 1585730000,
    1518500250, 1454120821, 1392470869, 1333434672, 1276901417, 1222764986, 1170923762, 1121280436,
];

/// Value counts `V_j` of stage `s`'s features (spec section 8.2).
fn spec_feature_sizes(s: usize, ks: &[usize]) -> Vec<usize> {
    let mut v = vec![ks[s] + 1; 6];
    for t in (0..s).rev() {
        v.extend([ks[t] + 1; 5]);
    }
    v.extend([4; 4]);
    v
}

fn parse_learned(body: &[u8], pos: &mut usize, s: usize, ks: &mut Vec<usize>) -> LearnedSpec {
    let k = varint(body, pos) as usize;
    ks.push(k);
    let e = usize::from(body[*pos]);
    *pos += 1;
    let h = varint(body, pos) as usize;
    let r = [0, 1, 2].map(|i| u32::from(body[*pos + i]));
    *pos += 3;
    let sizes = spec_feature_sizes(s, ks);
    let mut i8s = |n: usize| -> Vec<i64> {
        let v = body[*pos..*pos + n]
            .iter()
            .map(|&b| i64::from(b as i8))
            .collect();
        *pos += n;
        v
    };
    let emb = i8s(sizes.iter().sum::<usize>() * e);
    let w1 = i8s(sizes.len() * e * h);
    let i32s = |pos: &mut usize, n: usize| -> Vec<i64> {
        let v = body[*pos..*pos + 4 * n]
            .chunks(4)
            .map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap())))
            .collect();
        *pos += 4 * n;
        v
    };
    let b1 = i32s(pos, h);
    let w2: Vec<i64> = body[*pos..*pos + h * h]
        .iter()
        .map(|&b| i64::from(b as i8))
        .collect();
    *pos += h * h;
    let b2 = i32s(pos, h);
    let w3: Vec<i64> = body[*pos..*pos + k * h]
        .iter()
        .map(|&b| i64::from(b as i8))
        .collect();
    *pos += k * h;
    let b3 = i32s(pos, k);
    LearnedSpec {
        k,
        e,
        h,
        r,
        emb,
        w1,
        b1,
        w2,
        b2,
        w3,
        b3,
    }
}

/// Spec section 8.2: the learned table of a position.
fn learned_table(
    stages: &[SpecStage],
    at: &dyn Fn(usize, usize, usize) -> usize,
    (s, y, x): (usize, usize, usize),
    (gw, gh): (usize, usize),
) -> Vec<u32> {
    let ks: Vec<usize> = stages.iter().map(SpecStage::k).collect();
    let SpecStage::Learned(st) = &stages[s] else {
        unreachable!()
    };
    let n = |t: usize, dy: i64, dx: i64| -> usize {
        let (yy, xx) = (y as i64 + dy, x as i64 + dx);
        if yy < 0 || xx < 0 || yy >= gh as i64 || xx >= gw as i64 {
            ks[t]
        } else {
            at(t, yy as usize, xx as usize)
        }
    };
    let mut v = vec![
        n(s, 0, -1),
        n(s, -1, 0),
        n(s, -1, -1),
        n(s, -1, 1),
        n(s, 0, -2),
        n(s, -2, 0),
    ];
    for t in (0..s).rev() {
        v.extend([n(t, 0, 0), n(t, 0, 1), n(t, 1, 0), n(t, 0, -1), n(t, -1, 0)]);
    }
    v.extend([y.min(3), (gh - 1 - y).min(3), x.min(3), (gw - 1 - x).min(3)]);
    let sizes = spec_feature_sizes(s, &ks);
    let mut e = Vec::new();
    let mut row0 = 0;
    for (j, &vj) in v.iter().enumerate() {
        assert!(vj < sizes[j]);
        let row = row0 + vj;
        e.extend_from_slice(&st.emb[row * st.e..(row + 1) * st.e]);
        row0 += sizes[j];
    }
    let fits = |a: i64| {
        assert!(a >= i64::from(i32::MIN) && a <= i64::from(i32::MAX));
        a
    };
    let h1: Vec<i64> = (0..st.h)
        .map(|o| {
            let a = st.b1[o]
                + (0..e.len())
                    .map(|q| st.w1[q * st.h + o] * e[q])
                    .sum::<i64>();
            (fits(a) >> st.r[0]).clamp(0, 255)
        })
        .collect();
    let h2: Vec<i64> = (0..st.h)
        .map(|o| {
            let a = st.b2[o] + (0..st.h).map(|i| st.w2[o * st.h + i] * h1[i]).sum::<i64>();
            (fits(a) >> st.r[1]).clamp(0, 255)
        })
        .collect();
    let l: Vec<i64> = (0..st.k)
        .map(|k| fits(st.b3[k] + (0..st.h).map(|i| st.w3[k * st.h + i] * h2[i]).sum::<i64>()))
        .collect();
    let m = *l.iter().max().unwrap();
    let r = l.iter().position(|&v| v == m).unwrap();
    let w: Vec<u64> = l
        .iter()
        .map(|&lk| {
            let d = ((m - lk) >> st.r[2]) as u64;
            if d / 16 < 32 {
                EXP[(d % 16) as usize] >> (d / 16)
            } else {
                0
            }
        })
        .collect();
    let total: u64 = w.iter().sum();
    let mut f: Vec<u32> = w
        .iter()
        .map(|&wk| 1 + (wk * (65536 - st.k as u64) / total) as u32)
        .collect();
    let sum: u32 = f.iter().sum();
    f[r] += 65536 - sum;
    f
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
    assert!(bytes[4] == 1 || bytes[4] == 2);
    assert_eq!(bytes[5], 16);
    let body = &bytes[..bytes.len() - 4];
    let crc = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
    assert_eq!(crc, crc32fast::hash(body));
    let stages = usize::from(bytes[6]);
    let mut pos = 7;
    let mut out = Vec::new();
    let mut ks = Vec::new();
    for s in 0..stages {
        if bytes[4] == 2 {
            out.push(SpecStage::Learned(parse_learned(
                body, &mut pos, s, &mut ks,
            )));
            continue;
        }
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
        out.push(SpecStage::Classes(ClassStage {
            k,
            c,
            class_map,
            fallback,
            tables,
        }));
    }
    assert_eq!(pos, body.len());
    out
}

/// Spec section 8: the table for a position.
fn table_for(
    stages: &[SpecStage],
    idx: &[u16],
    (s, p, y, x): (usize, usize, usize, usize),
    (gw, gh, planes): (usize, usize, usize),
) -> Vec<u32> {
    let at = |s: usize, y: usize, x: usize| usize::from(idx[((s * planes + p) * gh + y) * gw + x]);
    let st = match &stages[s] {
        SpecStage::Classes(c) => c,
        SpecStage::Learned(_) => return learned_table(stages, &at, (s, y, x), (gw, gh)),
    };
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
    let (pc, ps) = match (s > 0).then(|| &stages[s - 1]) {
        Some(SpecStage::Classes(prev)) => (prev.class_map[at(s - 1, y, x)], prev.c),
        _ => (0, 1),
    };
    let context = (l * (st.c + 1) + a) * ps + pc;
    st.tables
        .iter()
        .find(|(id, _)| *id == context)
        .map_or(&st.fallback, |(_, t)| t)
        .clone()
}

/// Spec section 9.1: `R(x, j)`, the position of the pair `(x, j)` among all
/// pairs `(y, i)`, `y < F_i`, ordered by `(2y + 1) / (2 F_i)`, ties by `i`.
fn spec_small_rank(f: &[u64], x: u64, j: usize) -> u64 {
    (0..f.len())
        .map(|i| {
            let t = (2 * x + 1) * f[i] - u64::from(i >= j);
            (t / f[j]).div_ceil(2).min(f[i])
        })
        .sum()
}

/// The pair with `R(x', j) = x`. `R(y, j)` lies within `K` of
/// `(y + 1/2) 2^16 / F_j`, so only the `y` near `(x + 1/2) F_j / 2^16` can
/// match; each is tried.
fn spec_small_inverse(f: &[u64], x: u64) -> (u64, usize) {
    let k = f.len() as u64;
    for (j, &fj) in f.iter().enumerate() {
        let lo = (x.saturating_sub(k + 1) * fj) >> 16;
        let hi = (((x + k + 2) * fj) >> 16).min(fj - 1);
        for y in lo.saturating_sub(1)..=hi {
            if spec_small_rank(f, y, j) == x {
                return (y, j);
            }
        }
    }
    panic!("no pair has rank {x}")
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
                let b = (usize::BITS - (stages[s].k() - 1).leading_zeros()) as usize;
                let mut v = 0usize;
                for _ in 0..b {
                    let byte = *payload.get(bit / 8)?;
                    v = (v << 1) | usize::from((byte >> (7 - bit % 8)) & 1);
                    bit += 1;
                }
                if v >= stages[s].k() {
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
        CodingMode::Ans | CodingMode::AnsPlain => {
            let small_states = mode == CodingMode::Ans;
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
                assert_eq!(f.iter().sum::<u32>(), 1 << 16);
                assert!(f.iter().all(|&fk| fk >= 1));
                let k = f.len();
                let r = (0..k).fold(0, |best, j| if f[j] > f[best] { j } else { best });
                if small_states && x < 1 << 16 {
                    // Section 9.1: the pair (x', j) with R(x', j) = x.
                    let rotated: Vec<u64> = (0..k).map(|j| u64::from(f[(j + r) % k])).collect();
                    let (prev, j) = spec_small_inverse(&rotated, x);
                    x = prev;
                    idx.push(((j + r) % k) as u16);
                    continue;
                }
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

#[test]
fn spec_decoder_agrees_with_the_library_on_learned_priors() {
    let mut rng = Rng(43);
    let prior = learned::random_prior(&mut rng, &[K, K, K], 6, 24);
    for _ in 0..60 {
        for stages in 1..=3 {
            check(&prior, &digit_grid(&mut rng, stages));
        }
    }
    // Multi-plane grids, odd shapes and codebook sizes.
    let ks = [5u16, 300, 2];
    let prior = learned::random_prior(&mut rng, &ks, 3, 7);
    for (gw, gh, planes) in [(1, 1, 1), (3, 2, 3), (5, 4, 1), (1, 6, 2)] {
        for stages in 1..=3u8 {
            let mut indices = Vec::new();
            for &k in &ks[..usize::from(stages)] {
                indices.extend(
                    (0..gw * gh * u32::from(planes)).map(|_| rng.below(u64::from(k)) as u16),
                );
            }
            let grid = IndexGrid::new(gw, gh, planes, stages, indices).unwrap();
            check(&prior, &grid);
        }
    }
}
