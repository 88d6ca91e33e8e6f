//! Learned context priors (spec sections 8.2 and 10, prior version 2): per
//! codebook stage, a small integer network that maps the indices already
//! coded around a position (same stage and every earlier stage) and the
//! position's distance from the grid's edges to a frequency table.
//!
//! Every step is integer arithmetic that the spec defines exactly, so an
//! encoder and a decoder on any platform compute the same tables. Training
//! happens in floating point elsewhere (`crate::train::learned_prior`); this
//! module holds only the integers and what they compute.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use multiversion::multiversion;

use super::PRECISION;
use super::error::{EntropyError, Result};
use super::grid::IndexGrid;
use super::prior::{Cursor, Table, bad, bit_lengths, table_from_freqs};
use crate::format::varint;

/// `round(2^31 * 2^(-j/16))` for `j = 0..16` (spec section 8.2).
const EXP: [u64; 16] = [
    2147483648, 2056437387, 1969251188, 1885761398, 1805811301, 1729250827, 1655936265, 1585730000,
    1518500250, 1454120821, 1392470869, 1333434672, 1276901417, 1222764986, 1170923762, 1121280436,
];

/// Largest embedding width.
pub const MAX_EMBED: u8 = 64;
/// Largest hidden width.
pub const MAX_HIDDEN: u16 = 512;
/// Every bias lies strictly between minus and plus this, so that every sum
/// of the network fits in 32 bits.
pub const BIAS_LIMIT: i32 = 1 << 24;
/// Most weights (embeddings and the three layers) in all stages of a prior.
pub const MAX_LEARNED_WEIGHTS: u64 = 1 << 25;
/// Features of one position: six same-stage neighbours, five per earlier
/// stage, four for the position.
const SAME_STAGE: usize = 6;
const PER_EARLIER_STAGE: usize = 5;
const POSITION: usize = 4;

/// Number of values of each feature of stage `stage` (`V_j` in the spec),
/// given every stage's codebook size up to `stage`.
pub fn feature_sizes(stage: usize, num_symbols: &[u16]) -> Vec<usize> {
    let k = |t: usize| usize::from(num_symbols.get(t).copied().unwrap_or(0)) + 1;
    let mut sizes = vec![k(stage); SAME_STAGE];
    for t in (0..stage).rev() {
        sizes.extend(std::iter::repeat_n(k(t), PER_EARLIER_STAGE));
    }
    sizes.extend([4; POSITION]);
    sizes
}

/// Offsets of the same-stage neighbours, then those read in each earlier
/// stage, as (row, column).
const SAME_STAGE_AT: [(isize, isize); SAME_STAGE] =
    [(0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0)];
const EARLIER_AT: [(isize, isize); PER_EARLIER_STAGE] = [(0, 0), (0, 1), (1, 0), (0, -1), (-1, 0)];

/// Where the features of a position are read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place {
    pub(crate) stage: usize,
    pub(crate) y: usize,
    pub(crate) x: usize,
    pub(crate) grid_width: usize,
    pub(crate) grid_height: usize,
}

/// Writes the features of `place` into `out` (cleared first). `at(t, y, x)`
/// is the index of stage `t` at a place inside the grid; only places earlier
/// in coding order are asked for.
pub(crate) fn features(
    place: Place,
    num_symbols: &[u16],
    at: impl Fn(usize, usize, usize) -> u16,
    out: &mut Vec<usize>,
) {
    out.clear();
    let Place {
        stage,
        y,
        x,
        grid_width: gw,
        grid_height: gh,
    } = place;
    let read = |t: usize, (dy, dx): (isize, isize)| -> usize {
        let (yy, xx) = (y as isize + dy, x as isize + dx);
        if yy < 0 || xx < 0 || yy as usize >= gh || xx as usize >= gw {
            usize::from(num_symbols.get(t).copied().unwrap_or(0))
        } else {
            usize::from(at(t, yy as usize, xx as usize))
        }
    };
    out.extend(SAME_STAGE_AT.iter().map(|&d| read(stage, d)));
    for t in (0..stage).rev() {
        out.extend(EARLIER_AT.iter().map(|&d| read(t, d)));
    }
    out.extend([
        y.min(3),
        gh.saturating_sub(1 + y).min(3),
        x.min(3),
        gw.saturating_sub(1 + x).min(3),
    ]);
}

/// The features of every position of stage `stage` of `grid` (planes, rows,
/// columns in coding order), `F` values per position: what a learned prior
/// is trained on.
pub fn stage_features(grid: &IndexGrid, stage: u8, num_symbols: &[u16]) -> Vec<u32> {
    let (gw, gh) = (grid.grid_width as usize, grid.grid_height as usize);
    let stage = usize::from(stage);
    let mut out = Vec::new();
    let mut f = Vec::new();
    for p in 0..grid.planes {
        for y in 0..gh {
            for x in 0..gw {
                let place = Place {
                    stage,
                    y,
                    x,
                    grid_width: gw,
                    grid_height: gh,
                };
                features(
                    place,
                    num_symbols,
                    |t, yy, xx| grid.get(t as u8, p, yy as u32, xx as u32).unwrap_or(0),
                    &mut f,
                );
                out.extend(f.iter().map(|&v| v as u32));
            }
        }
    }
    out
}

/// The integers of one stage's network (spec section 10, version 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedStage {
    /// The stage this network was built for.
    stage: usize,
    num_symbols: u16,
    embed: usize,
    hidden: usize,
    shifts: [u8; 3],
    /// Row offset of each feature's embedding table.
    offsets: Vec<usize>,
    sizes: Vec<usize>,
    embeddings: Vec<i8>,
    // The 8-bit weights are held widened to 16 bits: products of 16-bit
    // values summed into 32 bits vectorise well.
    w1: Vec<i16>,
    b1: Vec<i32>,
    w2: Vec<i16>,
    b2: Vec<i32>,
    w3: Vec<i16>,
    b3: Vec<i32>,
    cache: Transient<TableCache>,
    fold: Transient<Fold>,
    /// Passes after which the first layer is folded; `None` if its folded
    /// table would exceed [`FOLD_MAX_VALUES`].
    fold_after: Option<usize>,
}

/// A position's table under a learned prior, with its code lengths for
/// the encoder's rate-distortion choices (computed on first use).
#[derive(Debug)]
pub(crate) struct Coded {
    pub(crate) table: Table,
    lengths: OnceLock<Box<[f32]>>,
}

impl Coded {
    /// The bits every symbol costs here.
    pub(crate) fn lengths(&self) -> &[f32] {
        self.lengths.get_or_init(|| bit_lengths(&self.table))
    }
}

/// Tables of recently seen feature vectors. Many positions share their
/// features (background around a digit; the same neighbourhood again in
/// each step of the encoder's refinement), and a table costs a network
/// pass. The built tables are shared, so a hit costs a hash and a lookup.
/// The map is split into shards by feature hash, so that threads coding
/// other frames rarely wait for each other. Holds at most
/// [`CACHED_FREQS`]` / K` tables per stage (4,096 of 512 symbols: about
/// 9 MiB, 17 MiB with their code lengths); a full shard starts afresh.
/// Measured on 1,000 test digits (refine 8, 2 cores), against half that
/// size: level 3 compresses 5 to 7 % faster for 30 MB more peak memory,
/// level 6 13 % faster for 60 MB more; twice this size again gained only
/// 2 to 5 % more.
struct TableCache([Mutex<TablesByFeatures>; CACHE_SHARDS]);

/// Keyed by feature vectors, hashed with foldhash: SipHash's defence
/// against chosen keys buys nothing here (a full shard just starts afresh)
/// and costs a tenth of a hit's time.
type TablesByFeatures = HashMap<Box<[usize]>, Arc<Coded>, foldhash::fast::FixedState>;

const CACHED_FREQS: usize = 1 << 21;
const CACHE_SHARDS: usize = 16;

impl Default for TableCache {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Mutex::default()))
    }
}

impl TableCache {
    fn shard(&self, feats: &[usize]) -> &Mutex<TablesByFeatures> {
        // A multiplicative hash is enough to spread features over shards.
        let h = feats.iter().fold(0u64, |h, &f| {
            (h.rotate_left(5) ^ f as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
        });
        &self.0[(h >> 60) as usize % CACHE_SHARDS]
    }

    fn get(&self, feats: &[usize]) -> Option<Arc<Coded>> {
        self.shard(feats).lock().ok()?.get(feats).cloned()
    }

    fn insert(&self, feats: &[usize], coded: &Arc<Coded>) {
        if let Ok(mut map) = self.shard(feats).lock() {
            let per_shard = CACHED_FREQS / usize::from(coded.table.num_symbols).max(1);
            if map.len() >= (per_shard / CACHE_SHARDS).max(4) {
                map.clear();
            }
            map.insert(feats.into(), Arc::clone(coded));
        }
    }
}

/// What a stage keeps only to go faster (its table cache, its folded
/// first layer): a clone starts afresh, and it takes no part in comparing
/// stages.
#[derive(Default)]
struct Transient<T>(T);

impl<T: Default> Clone for Transient<T> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<T> PartialEq for Transient<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Transient<T> {}

impl<T> std::fmt::Debug for Transient<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::any::type_name::<T>())
    }
}

/// The first layer folded into the embeddings: for feature `j` and value
/// `v`, the `H` sums `T_j[v][o] = sum_t W1[j E + t][o] * emb_j[v][t]`, so a
/// pass adds `F` rows of `T` instead of multiplying `F E` rows of `W1`.
/// Integer sums are exact in any order, so the logits are the same either
/// way. Building `T` costs as much as about `V` passes, so a stage folds
/// only after [`FOLD_AFTER`] times that many passes (a batch, not one
/// digit), and only while `T` stays under [`FOLD_MAX_VALUES`].
#[derive(Default)]
struct Fold {
    table: OnceLock<Box<[i32]>>,
    passes: AtomicUsize,
}

/// Passes, in units of the passes a fold costs, before a stage folds.
const FOLD_AFTER: usize = 2;
/// Largest folded table, in `i32` values (32 MiB).
const FOLD_MAX_VALUES: usize = 1 << 23;

/// The integer arrays of a [`LearnedStage`], laid out as in the spec.
#[derive(Debug, Clone, Default)]
pub struct LearnedWeights {
    /// Embedding width `E`.
    pub embed: u8,
    /// Hidden width `H`.
    pub hidden: u16,
    /// `r1, r2, r3`.
    pub shifts: [u8; 3],
    /// Every feature's table, `V_j x E`, feature by feature.
    pub embeddings: Vec<i8>,
    /// `F E x H`, row by input.
    pub w1: Vec<i8>,
    pub b1: Vec<i32>,
    /// `H x H`, row by output.
    pub w2: Vec<i8>,
    pub b2: Vec<i32>,
    /// `K x H`, row by index.
    pub w3: Vec<i8>,
    pub b3: Vec<i32>,
}

/// Scratch space for [`LearnedStage::freqs`].
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    acc: Vec<i32>,
    h1: Vec<i16>,
    h2: Vec<i16>,
    logits: Vec<i32>,
    weights: Vec<u64>,
}

impl LearnedStage {
    /// Checks `weights` against the shape of stage `stage` whose codebook
    /// sizes (stages `0..=stage`) are `num_symbols`.
    pub fn new(stage: usize, num_symbols: &[u16], weights: LearnedWeights) -> Result<Self> {
        let invalid = |what: String| EntropyError::InvalidArgument(what);
        let k = *num_symbols
            .get(stage)
            .ok_or_else(|| invalid(format!("no codebook size for stage {stage}")))?;
        let (e, h) = (usize::from(weights.embed), usize::from(weights.hidden));
        if !(1..=usize::from(MAX_EMBED)).contains(&e) || !(1..=usize::from(MAX_HIDDEN)).contains(&h)
        {
            return Err(invalid(format!("embedding width {e} or hidden width {h}")));
        }
        if weights.shifts.iter().any(|&r| r > 31) {
            return Err(invalid(format!("shifts {:?}", weights.shifts)));
        }
        let sizes = feature_sizes(stage, num_symbols);
        let rows: usize = sizes.iter().sum();
        let kk = usize::from(k);
        let expect = [
            ("embeddings", weights.embeddings.len(), rows * e),
            ("W1", weights.w1.len(), sizes.len() * e * h),
            ("b1", weights.b1.len(), h),
            ("W2", weights.w2.len(), h * h),
            ("b2", weights.b2.len(), h),
            ("W3", weights.w3.len(), kk * h),
            ("b3", weights.b3.len(), kk),
        ];
        for (name, found, want) in expect {
            if found != want {
                return Err(invalid(format!(
                    "{name} has {found} values, expected {want}"
                )));
            }
        }
        if let Some(b) = [&weights.b1, &weights.b2, &weights.b3]
            .into_iter()
            .flatten()
            .find(|b| b.unsigned_abs() >= BIAS_LIMIT as u32)
        {
            return Err(invalid(format!("bias {b} outside -2^24..2^24")));
        }
        let mut offsets = Vec::with_capacity(sizes.len());
        let mut row = 0;
        for &v in &sizes {
            offsets.push(row);
            row += v;
        }
        let widen = |v: &[i8]| v.iter().map(|&w| i16::from(w)).collect::<Vec<i16>>();
        // Folding costs about `rows / F` passes (`rows E H` multiply-adds).
        let fold_after =
            (rows * h <= FOLD_MAX_VALUES).then(|| FOLD_AFTER * (rows / sizes.len().max(1)));
        Ok(Self {
            stage,
            num_symbols: k,
            embed: e,
            hidden: h,
            shifts: weights.shifts,
            offsets,
            sizes,
            w1: widen(&weights.w1),
            w2: widen(&weights.w2),
            w3: widen(&weights.w3),
            embeddings: weights.embeddings,
            b1: weights.b1,
            b2: weights.b2,
            b3: weights.b3,
            cache: Transient::default(),
            fold: Transient::default(),
            fold_after,
        })
    }

    /// The stage this network was built for.
    pub fn stage(&self) -> usize {
        self.stage
    }

    /// Value counts of its features (`V_j`).
    pub(crate) fn feature_sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Codebook size of this stage.
    pub fn num_symbols(&self) -> u16 {
        self.num_symbols
    }

    /// Embedding width `E`.
    pub fn embed(&self) -> usize {
        self.embed
    }

    /// Hidden width `H`.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Weights held: embeddings and the three layers.
    pub fn num_weights(&self) -> usize {
        self.embeddings.len() + self.w1.len() + self.w2.len() + self.w3.len()
    }

    /// Multiplications per position.
    pub fn work_per_index(&self) -> usize {
        self.w1.len() + self.w2.len() + self.w3.len()
    }

    /// Frequencies of the position with features `feats`: `K` values, each
    /// at least 1, summing to `2^16` (spec section 8.2).
    fn compute_freqs(&self, feats: &[usize], s: &mut Scratch, out: &mut Vec<u32>) {
        let r3 = self.shifts[2];
        network(self, feats, s);
        let logits = &s.logits;
        let (mut m, mut r) = (i32::MIN, 0);
        for (k, &l) in logits.iter().enumerate() {
            if l > m {
                (m, r) = (l, k);
            }
        }
        s.weights.clear();
        s.weights.extend(logits.iter().map(|&l| {
            let d = (i64::from(m) - i64::from(l)) >> r3;
            let (whole, frac) = (d / 16, d % 16);
            if whole < 32 {
                EXP[frac as usize] >> whole
            } else {
                0
            }
        }));
        let total: u64 = s.weights.iter().sum::<u64>().max(1);
        let free = (1u64 << PRECISION) - u64::from(self.num_symbols);
        let divide = Divider::new(total);
        out.clear();
        out.extend(s.weights.iter().map(|&w| 1 + divide.floor(w * free) as u32));
        let sum: u64 = out.iter().map(|&f| u64::from(f)).sum();
        if let Some(f) = out.get_mut(r) {
            *f += ((1u64 << PRECISION) - sum) as u32;
        }
    }

    /// The table of the position with features `feats` (spec section 8.2).
    pub(crate) fn table(&self, feats: &[usize], s: &mut Scratch) -> Result<Arc<Coded>> {
        if let Some(cached) = self.cache.0.get(feats) {
            return Ok(cached);
        }
        let mut freqs = Vec::with_capacity(usize::from(self.num_symbols));
        self.compute_freqs(feats, s, &mut freqs);
        let coded = Arc::new(Coded {
            table: table_from_freqs(&freqs).map_err(EntropyError::InvalidArgument)?,
            lengths: OnceLock::new(),
        });
        self.cache.0.insert(feats, &coded);
        Ok(coded)
    }

    /// Appends the stage's bytes (spec section 10, version 2).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        varint::encode(u64::from(self.num_symbols), out);
        out.push(self.embed as u8);
        varint::encode(self.hidden as u64, out);
        out.extend_from_slice(&self.shifts);
        let bytes = |v: &[i8]| v.iter().map(|&w| w as u8).collect::<Vec<u8>>();
        let narrow = |v: &[i16]| v.iter().map(|&w| w as u8).collect::<Vec<u8>>();
        let words = |v: &[i32], out: &mut Vec<u8>| {
            for b in v {
                out.extend_from_slice(&b.to_le_bytes());
            }
        };
        out.extend(bytes(&self.embeddings));
        out.extend(narrow(&self.w1));
        words(&self.b1, out);
        out.extend(narrow(&self.w2));
        words(&self.b2, out);
        out.extend(narrow(&self.w3));
        words(&self.b3, out);
    }

    /// Reads stage `stage` (earlier stages' codebook sizes in
    /// `num_symbols`), counting its weights against `weights_left`.
    pub(crate) fn read(
        cursor: &mut Cursor<'_>,
        stage: usize,
        num_symbols: &mut Vec<u16>,
        weights_left: &mut u64,
    ) -> Result<Self> {
        let k = cursor.num_symbols()?;
        num_symbols.truncate(stage);
        num_symbols.push(k);
        let e_offset = cursor.pos;
        let embed = cursor.u8("embedding width")?;
        if !(1..=MAX_EMBED).contains(&embed) {
            return Err(bad(
                e_offset,
                "embedding width",
                "1..=64",
                embed.to_string(),
            ));
        }
        let h_offset = cursor.pos;
        let hidden = cursor.varint("hidden width")?;
        let hidden = u16::try_from(hidden)
            .ok()
            .filter(|h| (1..=MAX_HIDDEN).contains(h))
            .ok_or_else(|| bad(h_offset, "hidden width", "1..=512", hidden.to_string()))?;
        let s_offset = cursor.pos;
        let shifts: [u8; 3] = [
            cursor.u8("shift")?,
            cursor.u8("shift")?,
            cursor.u8("shift")?,
        ];
        if let Some(r) = shifts.iter().find(|&&r| r > 31) {
            return Err(bad(s_offset, "shift", "0..=31", r.to_string()));
        }
        let sizes = feature_sizes(stage, num_symbols);
        let (e, h, kk) = (usize::from(embed), usize::from(hidden), usize::from(k));
        let rows: usize = sizes.iter().sum();
        let weights = (rows * e + sizes.len() * e * h + h * h + kk * h) as u64;
        if weights > *weights_left {
            return Err(EntropyError::LimitExceeded {
                what: "weights in a learned prior",
                found: MAX_LEARNED_WEIGHTS - *weights_left + weights,
                limit: MAX_LEARNED_WEIGHTS,
            });
        }
        let needed = weights + 4 * (2 * h + kk) as u64;
        if needed > cursor.remaining() as u64 {
            return Err(bad(
                cursor.pos,
                "learned stage",
                format!("{needed} bytes of weights"),
                format!("{} bytes", cursor.remaining()),
            ));
        }
        *weights_left -= weights;
        let embeddings = int8_from(cursor, rows * e, "embeddings")?;
        let w1 = int8_from(cursor, sizes.len() * e * h, "W1")?;
        let b1 = read_biases(cursor, h, "b1")?;
        let w2 = int8_from(cursor, h * h, "W2")?;
        let b2 = read_biases(cursor, h, "b2")?;
        let w3 = int8_from(cursor, kk * h, "W3")?;
        let b3 = read_biases(cursor, kk, "b3")?;
        Self::new(
            stage,
            num_symbols,
            LearnedWeights {
                embed,
                hidden,
                shifts,
                embeddings,
                w1,
                b1,
                w2,
                b2,
                w3,
                b3,
            },
        )
    }
}

fn int8_from(cursor: &mut Cursor<'_>, n: usize, field: &'static str) -> Result<Vec<i8>> {
    Ok(cursor.take(n, field)?.iter().map(|&b| b as i8).collect())
}

fn read_biases(cursor: &mut Cursor<'_>, n: usize, field: &'static str) -> Result<Vec<i32>> {
    let start = cursor.pos;
    let bytes = cursor.take(4 * n, field)?;
    let values: Vec<i32> = bytes
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some((i, b)) = values
        .iter()
        .enumerate()
        .find(|(_, b)| b.unsigned_abs() >= BIAS_LIMIT as u32)
    {
        return Err(bad(
            start + 4 * i,
            field,
            "a bias in -2^24..2^24",
            b.to_string(),
        ));
    }
    Ok(values)
}

impl LearnedStage {
    /// The folded first layer, once this stage has made enough passes.
    fn folded(&self) -> Option<&[i32]> {
        if let Some(t) = self.fold.0.table.get() {
            return Some(t);
        }
        let after = self.fold_after?;
        if self.fold.0.passes.fetch_add(1, Ordering::Relaxed) < after {
            return None;
        }
        Some(self.fold.0.table.get_or_init(|| self.fold_first_layer()))
    }

    /// `T` of [`Fold`]: row `offset_j + v` holds `T_j[v]`.
    fn fold_first_layer(&self) -> Box<[i32]> {
        let (e, h) = (self.embed, self.hidden);
        let mut t = vec![0i32; self.embeddings.len() / e * h];
        for (j, (&offset, &size)) in self.offsets.iter().zip(&self.sizes).enumerate() {
            for row in offset..offset + size {
                let out = &mut t[row * h..][..h];
                for (q, &ev) in self.embeddings[row * e..][..e].iter().enumerate() {
                    let w = &self.w1[(j * e + q) * h..][..h];
                    // As in the unfolded pass: |ev * w| <= 2^14, and the
                    // row's sum at most 64 * 2^14.
                    for (a, &w) in out.iter_mut().zip(w) {
                        *a = a.wrapping_add(i32::from(i16::from(ev).wrapping_mul(w)));
                    }
                }
            }
        }
        t.into_boxed_slice()
    }
}

/// Logits of the position with features `feats` (spec section 8.2), into
/// `s.logits`, through the folded first layer once the stage has one.
fn network(st: &LearnedStage, feats: &[usize], s: &mut Scratch) {
    network_with(st, feats, s, st.folded());
}

/// [`network`] with the folded first layer `folded` if given. Compiled also
/// for wider vector units, picked at run time; integer arithmetic gives the
/// same result on every path.
#[multiversion(targets("x86_64+avx512bw", "x86_64+avx2", "aarch64+neon"))]
fn network_with(st: &LearnedStage, feats: &[usize], s: &mut Scratch, folded: Option<&[i32]>) {
    let (e, h) = (st.embed, st.hidden);
    let [r1, r2, _] = st.shifts;
    s.acc.clear();
    s.acc.extend_from_slice(&st.b1);
    for (j, &v) in feats.iter().enumerate() {
        let v = v.min(st.sizes.get(j).map_or(0, |&n| n.saturating_sub(1)));
        let row = st.offsets.get(j).copied().unwrap_or(0) + v;
        if let Some(t) = folded {
            let t = t.get(row * h..row * h + h).unwrap_or_default();
            for (a, &t) in s.acc.iter_mut().zip(t) {
                *a = a.wrapping_add(t);
            }
            continue;
        }
        let emb = st.embeddings.get(row * e..row * e + e).unwrap_or_default();
        for (q, &ev) in emb.iter().enumerate() {
            if ev == 0 {
                continue;
            }
            let ev = i16::from(ev);
            let w_row = (j * e + q) * h;
            let w = st.w1.get(w_row..w_row + h).unwrap_or_default();
            // |ev * w| <= 128 * 128 fits in 16 bits; the sum, at most
            // 2^24 + 45 * 64 * 2^14 in size (45 features of width 64 at
            // most), fits in 32 without wrapping.
            for (a, &w) in s.acc.iter_mut().zip(w) {
                *a = a.wrapping_add(i32::from(ev.wrapping_mul(w)));
            }
        }
    }
    s.h1.clear();
    s.h1.extend(s.acc.iter().map(|&a| (a >> r1).clamp(0, 255) as i16));
    s.h2.clear();
    s.h2.extend(
        st.w2
            .chunks_exact(h)
            .zip(&st.b2)
            .map(|(row, &b)| (b.wrapping_add(dot(row, &s.h1)) >> r2).clamp(0, 255) as i16),
    );
    s.logits.clear();
    s.logits.extend(
        st.w3
            .chunks_exact(h)
            .zip(&st.b3)
            .map(|(row, &b)| b.wrapping_add(dot(row, &s.h2))),
    );
}

/// Exact `floor(a / d)` for many `a < 2^63` and one `d > 0`, by a multiply
/// with a precomputed reciprocal and one correction step instead of a
/// division each (the tables' 4,096 divisions by the same total).
struct Divider {
    d: u64,
    /// `floor(2^64 / d)` (for `d = 1`, `2^64 - 1`, corrected below).
    inverse: u64,
}

impl Divider {
    fn new(d: u64) -> Self {
        let d = d.max(1);
        Self {
            d,
            inverse: u64::try_from((1u128 << 64) / u128::from(d)).unwrap_or(u64::MAX),
        }
    }

    fn floor(&self, a: u64) -> u64 {
        // The estimate is the true quotient or one less.
        let q = ((u128::from(a) * u128::from(self.inverse)) >> 64) as u64;
        if (q + 1) * self.d <= a { q + 1 } else { q }
    }
}

/// `sum w[i] * h[i]` over a hidden layer: 8-bit weights, activations up to
/// 255, at most 512 terms, so with a bias below 2^24 the sum stays well
/// inside 32 bits and the wrapping operations never wrap; they let the
/// compiler vectorise the loop, which the crate's overflow checks would
/// otherwise prevent.
#[inline(always)]
fn dot(w: &[i16], h: &[i16]) -> i32 {
    w.iter().zip(h).fold(0i32, |acc, (&w, &h)| {
        acc.wrapping_add(i32::from(w).wrapping_mul(i32::from(h)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_divider_is_exact() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for d in [1u64, 2, 3, 7, 1 << 31, (1 << 43) - 1, 1 << 43] {
            let div = Divider::new(d);
            for a in [0, 1, d - 1, d, d + 1, (1 << 47) - 1, (1 << 63) - 1] {
                assert_eq!(div.floor(a), a / d, "{a} / {d}");
            }
        }
        for _ in 0..100_000 {
            let d = (next() >> (21 + next() % 40)).max(1);
            let a = next() >> 1;
            assert_eq!(Divider::new(d).floor(a), a / d, "{a} / {d}");
        }
    }

    #[test]
    fn the_folded_first_layer_gives_the_same_logits() {
        // Stage 2 of three stages of 5, 7 and 6 symbols, E = 3, H = 9, with
        // weights over the whole 8-bit range.
        let num_symbols = [5u16, 7, 6];
        let sizes = feature_sizes(2, &num_symbols);
        let rows: usize = sizes.iter().sum();
        let (e, h, k) = (3usize, 9usize, 6usize);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut bytes = |n: usize| -> Vec<i8> { (0..n).map(|_| next() as i8).collect() };
        let weights = LearnedWeights {
            embed: e as u8,
            hidden: h as u16,
            shifts: [9, 8, 2],
            embeddings: bytes(rows * e),
            w1: bytes(sizes.len() * e * h),
            b1: bytes(h).into_iter().map(|b| i32::from(b) * 300).collect(),
            w2: bytes(h * h),
            b2: bytes(h).into_iter().map(|b| i32::from(b) * 300).collect(),
            w3: bytes(k * h),
            b3: bytes(k).into_iter().map(|b| i32::from(b) * 300).collect(),
        };
        let stage = LearnedStage::new(2, &num_symbols, weights).unwrap();
        let folded = stage.fold_first_layer();
        let (mut plain, mut fast) = (Scratch::default(), Scratch::default());
        for round in 0..200 {
            let feats: Vec<usize> = sizes.iter().map(|&v| (round * 7 + v * 3) % v).collect();
            network_with(&stage, &feats, &mut plain, None);
            network_with(&stage, &feats, &mut fast, Some(&folded));
            assert_eq!(plain.logits, fast.logits, "features {feats:?}");
        }
        // Enough passes fold the stage, and its tables stay the same.
        let mut before = Vec::new();
        let feats = vec![0; sizes.len()];
        stage.compute_freqs(&feats, &mut plain, &mut before);
        for _ in 0..FOLD_AFTER * rows {
            network(&stage, &feats, &mut fast);
        }
        assert!(stage.fold.0.table.get().is_some());
        let mut after = Vec::new();
        stage.compute_freqs(&feats, &mut fast, &mut after);
        assert_eq!(before, after);
    }

    #[test]
    fn dot_sums_products_exactly() {
        let w: Vec<i16> = (0..515).map(|i| (i % 255 - 127) as i16).collect();
        let h: Vec<i16> = (0..515).map(|i| (i * 7 % 256) as i16).collect();
        let want: i64 = w
            .iter()
            .zip(&h)
            .map(|(&a, &b)| i64::from(a) * i64::from(b))
            .sum();
        assert_eq!(i64::from(dot(&w, &h)), want);
        assert_eq!(dot(&[-128; 512], &[255; 512]), -128 * 255 * 512);
    }
}
