//! Training a learned-context prior (spec section 8.2): per stage, a small
//! network from the indices around a position to the distribution of its
//! index, trained in floating point on index grids by cross-entropy, then
//! turned into the integers the spec defines (8-bit weights, 8-bit
//! activations, power-of-two rescaling calibrated on the training data).

use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::entropy::{
    BIAS_LIMIT, IndexGrid, LearnedStage, LearnedWeights, Prior, feature_sizes, stage_features,
};

use super::{Adam, TrainError};

/// How a learned prior is trained.
#[derive(Debug, Clone, Copy)]
pub struct LearnedPriorOptions {
    /// Embedding width `E` of each feature.
    pub embed: u8,
    /// Hidden width `H` of both hidden layers.
    pub hidden: u16,
    /// Passes over the training positions, per stage.
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

impl Default for LearnedPriorOptions {
    fn default() -> Self {
        Self {
            embed: 16,
            hidden: 128,
            epochs: 4,
            batch_size: 2048,
            learning_rate: 2e-3,
            seed: 1,
        }
    }
}

/// Positions of one stage: features (`F` per position, each already offset
/// into the shared embedding table) and the index there.
struct Samples {
    features: Vec<u32>,
    targets: Vec<u32>,
    width: usize,
}

fn samples(grids: &[IndexGrid], stage: u8, num_symbols: &[u16]) -> Samples {
    let sizes = feature_sizes(usize::from(stage), num_symbols);
    let offsets: Vec<u32> = sizes
        .iter()
        .scan(0u32, |row, &v| {
            let at = *row;
            *row += v as u32;
            Some(at)
        })
        .collect();
    let width = sizes.len();
    let mut features = Vec::new();
    let mut targets = Vec::new();
    for grid in grids {
        let f = stage_features(grid, stage, num_symbols);
        features.extend(f.iter().enumerate().map(|(i, &v)| v + offsets[i % width]));
        let per_stage = grid.indices.len() / usize::from(grid.stages.max(1));
        let start = usize::from(stage) * per_stage;
        targets.extend(
            grid.indices[start..start + per_stage]
                .iter()
                .map(|&i| u32::from(i)),
        );
    }
    Samples {
        features,
        targets,
        width,
    }
}

/// The float network of one stage.
struct Net {
    emb: Var,
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
    w3: Var,
    b3: Var,
    width: usize,
    embed: usize,
}

impl Net {
    fn new(
        rows: usize,
        width: usize,
        o: &LearnedPriorOptions,
        k: usize,
        seed: u64,
    ) -> Result<Self, TrainError> {
        let (e, h) = (usize::from(o.embed), usize::from(o.hidden));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut normal = |n: usize, std: f32, shape: (usize, usize)| -> Result<Var, TrainError> {
            let d = Normal::new(0.0f32, std).map_err(|e| TrainError::BadData(e.to_string()))?;
            let v: Vec<f32> = (0..n).map(|_| d.sample(&mut rng)).collect();
            Ok(Var::from_tensor(&Tensor::from_vec(
                v,
                shape,
                &Device::Cpu,
            )?)?)
        };
        let zeros = |n: usize| -> Result<Var, TrainError> {
            Ok(Var::zeros(n, candle_core::DType::F32, &Device::Cpu)?)
        };
        Ok(Self {
            emb: normal(rows * e, 0.1, (rows, e))?,
            w1: normal(
                width * e * h,
                (1.0 / (width * e) as f32).sqrt(),
                (width * e, h),
            )?,
            b1: zeros(h)?,
            w2: normal(h * h, (1.0 / h as f32).sqrt(), (h, h))?,
            b2: zeros(h)?,
            w3: normal(h * k, 0.1 * (1.0 / h as f32).sqrt(), (h, k))?,
            b3: zeros(k)?,
            width,
            embed: e,
        })
    }

    fn vars(&self) -> Vec<Var> {
        [
            &self.emb, &self.w1, &self.b1, &self.w2, &self.b2, &self.w3, &self.b3,
        ]
        .into_iter()
        .cloned()
        .collect()
    }

    /// Embedded features, first and second hidden layers, and logits.
    fn forward(&self, features: &Tensor) -> Result<[Tensor; 4], TrainError> {
        let n = features.dim(0)? / self.width;
        let e = self
            .emb
            .as_tensor()
            .index_select(features, 0)?
            .reshape((n, self.width * self.embed))?;
        let h1 = e
            .matmul(self.w1.as_tensor())?
            .broadcast_add(self.b1.as_tensor())?
            .relu()?;
        let h2 = h1
            .matmul(self.w2.as_tensor())?
            .broadcast_add(self.b2.as_tensor())?
            .relu()?;
        let logits = h2
            .matmul(self.w3.as_tensor())?
            .broadcast_add(self.b3.as_tensor())?;
        Ok([e, h1, h2, logits])
    }
}

fn batch(s: &Samples, ids: &[usize]) -> Result<(Tensor, Tensor), TrainError> {
    let mut f = Vec::with_capacity(ids.len() * s.width);
    for &i in ids {
        f.extend_from_slice(&s.features[i * s.width..(i + 1) * s.width]);
    }
    let t: Vec<u32> = ids.iter().map(|&i| s.targets[i]).collect();
    Ok((
        Tensor::from_vec(f, ids.len() * s.width, &Device::Cpu)?,
        Tensor::from_vec(t, ids.len(), &Device::Cpu)?,
    ))
}

/// Mean cross-entropy in nats of the float network on `s`.
fn float_loss(net: &Net, s: &Samples) -> Result<f64, TrainError> {
    let n = s.targets.len();
    let mut total = 0.0;
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(8192) {
        let (f, t) = batch(s, chunk)?;
        let [.., logits] = net.forward(&f)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &t)?.to_scalar::<f32>()?;
        total += f64::from(loss) * chunk.len() as f64;
    }
    Ok(total / n.max(1) as f64)
}

/// What training one stage measured.
#[derive(Debug, Clone)]
pub struct LearnedStageReport {
    pub stage: u8,
    /// Cross-entropy of the float network on the validation grids, bits per
    /// grid.
    pub float_bits: f64,
    pub epochs: usize,
}

/// Trains a learned prior over `num_symbols.len()` stages on `train`, and
/// measures each stage's float network on `validation`. `progress` hears of
/// each epoch.
pub fn train_learned_prior(
    num_symbols: &[u16],
    train: &[IndexGrid],
    validation: &[IndexGrid],
    options: LearnedPriorOptions,
    mut progress: impl FnMut(&str),
) -> Result<(Prior, Vec<LearnedStageReport>), TrainError> {
    if train.is_empty() {
        return Err(TrainError::BadData("no grids to fit a prior to".into()));
    }
    let stages_needed = num_symbols.len();
    if let Some(g) = train
        .iter()
        .chain(validation)
        .find(|g| usize::from(g.stages) < stages_needed)
    {
        return Err(TrainError::BadData(format!(
            "a grid of {} stages for a prior of {stages_needed}",
            g.stages
        )));
    }
    let mut stages = Vec::new();
    let mut reports = Vec::new();
    for (s, &k) in num_symbols.iter().enumerate() {
        let stage = s as u8;
        let sizes = feature_sizes(s, num_symbols);
        let rows: usize = sizes.iter().sum();
        let tr = samples(train, stage, num_symbols);
        let va = samples(validation, stage, num_symbols);
        let net = Net::new(
            rows,
            tr.width,
            &options,
            usize::from(k),
            options.seed ^ (s as u64) << 32,
        )?;
        let mut adam = Adam::new(net.vars())?;
        let mut order: Vec<usize> = (0..tr.targets.len()).collect();
        let batch_size = options.batch_size.max(1);
        for epoch in 0..options.epochs {
            let mut rng = ChaCha8Rng::seed_from_u64(
                options.seed.wrapping_add(epoch as u64 * 7919 + s as u64),
            );
            order.shuffle(&mut rng);
            // The last epoch at a quarter of the rate settles the weights.
            let lr = if epoch + 1 == options.epochs && options.epochs > 1 {
                options.learning_rate / 4.0
            } else {
                options.learning_rate
            };
            let mut sum = 0.0;
            let mut count = 0usize;
            for ids in order.chunks(batch_size) {
                let (f, t) = batch(&tr, ids)?;
                let [.., logits] = net.forward(&f)?;
                let loss = candle_nn::loss::cross_entropy(&logits, &t)?;
                sum += f64::from(loss.to_scalar::<f32>()?) * ids.len() as f64;
                count += ids.len();
                adam.apply(&loss.backward()?, lr)?;
            }
            progress(&format!(
                "stage {}: epoch {}/{}: training {:.3} bits per index",
                s + 1,
                epoch + 1,
                options.epochs,
                sum / count.max(1) as f64 / std::f64::consts::LN_2
            ));
        }
        let per_grid = va.targets.len() as f64 / validation.len().max(1) as f64;
        let float_bits = if va.targets.is_empty() {
            0.0
        } else {
            float_loss(&net, &va)? / std::f64::consts::LN_2 * per_grid
        };
        stages.push(quantize(&net, &tr, s, num_symbols, &options)?);
        reports.push(LearnedStageReport {
            stage,
            float_bits,
            epochs: options.epochs,
        });
    }
    Ok((Prior::learned(stages)?, reports))
}

fn values(t: &Tensor) -> Result<Vec<f32>, TrainError> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, &x| m.max(x.abs()))
}

/// The value below which a fraction `q` of `v` lies.
fn quantile(v: &mut [f32], q: f64) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f32::total_cmp);
    v[((v.len() - 1) as f64 * q) as usize]
}

fn to_i8(v: &[f32], scale: f64) -> Vec<i8> {
    v.iter()
        .map(|&x| (f64::from(x) * scale).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

fn to_bias(v: &[f32], scale: f64) -> Vec<i32> {
    let limit = f64::from(BIAS_LIMIT - 1);
    v.iter()
        .map(|&x| (f64::from(x) * scale).round().clamp(-limit, limit) as i32)
        .collect()
}

/// The shift that brings a typical large activation (`value`, in integer
/// units) to about 255.
fn shift_for(value: f64) -> u8 {
    if value <= 255.0 {
        return 0;
    }
    (value / 255.0).log2().round().clamp(0.0, 31.0) as u8
}

/// Rows `[o][i]` from a `(in, out)` matrix.
fn transpose(v: &[f32], rows_in: usize, cols_out: usize) -> Vec<f32> {
    let mut t = vec![0.0; v.len()];
    for i in 0..rows_in {
        for o in 0..cols_out {
            t[o * rows_in + i] = v[i * cols_out + o];
        }
    }
    t
}

/// Turns the float network of stage `s` into the spec's integers. Each
/// layer's weights use the full 8-bit range; the hidden layers' shifts are
/// chosen so that the 99.9th percentile of each layer on (up to 20,000)
/// training positions lands near 255; and the logits must come out in
/// `2^r3` sixteenths of a bit, which a power of two cannot match exactly:
/// the embeddings' scale takes up the difference (up to a factor of 2),
/// where rounding errors average out over the sum into the first layer.
fn quantize(
    net: &Net,
    tr: &Samples,
    s: usize,
    num_symbols: &[u16],
    o: &LearnedPriorOptions,
) -> Result<LearnedStage, TrainError> {
    let (h, k) = (usize::from(o.hidden), usize::from(num_symbols[s]));
    let emb = values(net.emb.as_tensor())?;
    let w1 = values(net.w1.as_tensor())?;
    let w2 = values(net.w2.as_tensor())?;
    let w3 = values(net.w3.as_tensor())?;
    let full = |v: &[f32]| 127.0 / f64::from(max_abs(v)).max(1e-12);
    let (s_1, s_2, s_3) = (full(&w1), full(&w2), full(&w3));
    let s_e_max = full(&emb);

    let n = tr.targets.len().min(20_000);
    let step = (tr.targets.len() / n.max(1)).max(1);
    let ids: Vec<usize> = (0..tr.targets.len()).step_by(step).take(n).collect();
    let (f, _) = batch(tr, &ids)?;
    let [_, h1, h2, _] = net.forward(&f)?;
    let q1 = f64::from(quantile(&mut values(&h1)?, 0.999));
    let q2 = f64::from(quantile(&mut values(&h2)?, 0.999));
    // Shifts putting each hidden layer's 99.9th percentile near 255 for
    // embeddings in units of `s_e`.
    let hidden_shifts = |s_e: f64| {
        let r1 = shift_for(q1 * s_e * s_1);
        let r2 = shift_for(q2 * s_2 * s_e * s_1 / 2f64.powi(i32::from(r1)));
        (r1, r2)
    };
    // Logit units: s_3 * s_2 * s_e * s_1 / 2^(r1 + r2) per nat must be
    // 2^r3 * 16 / ln 2, so s_e is fixed by the total shift r1 + r2 + r3:
    // the largest total whose s_e stays within 8 bits (at most 2x under
    // the full range).
    let s_e_for = |total: i32| 2f64.powi(total) * 16.0 / (std::f64::consts::LN_2 * s_1 * s_2 * s_3);
    let (r1_full, r2_full) = hidden_shifts(s_e_max);
    let floor = i32::from(r1_full) + i32::from(r2_full);
    let total = (floor..=floor + 31)
        .rev()
        .find(|&t| s_e_for(t) <= s_e_max)
        .unwrap_or(floor);
    let s_e = s_e_for(total);
    // With the embeddings' actual scale, the hidden layers may need smaller
    // shifts to use their whole 8-bit range; the last shift takes the rest
    // of the total, which keeps the logit units.
    let (r1, r2) = match hidden_shifts(s_e) {
        (r1, r2) if (0..=31).contains(&(total - i32::from(r1) - i32::from(r2))) => (r1, r2),
        _ => (r1_full, r2_full),
    };
    let r3 = (total - i32::from(r1) - i32::from(r2)) as u8;
    let units1 = s_e * s_1;
    let units2 = s_2 * units1 / 2f64.powi(i32::from(r1));
    let units3 = s_3 * units2 / 2f64.powi(i32::from(r2));

    let weights = LearnedWeights {
        embed: o.embed,
        hidden: o.hidden,
        shifts: [r1, r2, r3],
        embeddings: to_i8(&emb, s_e),
        w1: to_i8(&w1, s_1),
        b1: to_bias(&values(net.b1.as_tensor())?, units1),
        w2: to_i8(&transpose(&w2, h, h), s_2),
        b2: to_bias(&values(net.b2.as_tensor())?, units2),
        w3: to_i8(&transpose(&w3, h, k), s_3),
        b3: to_bias(&values(net.b3.as_tensor())?, units3),
    };
    Ok(LearnedStage::new(s, num_symbols, weights)?)
}
