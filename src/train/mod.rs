//! Training a vqz model: the VQ-VAE loss (reconstruction + codebook +
//! beta x commitment, straight-through estimator), residual quantiser
//! dropout so one model serves every quality level, codebook initialisation
//! from encoder outputs, dead-code restarts, an optional EMA codebook, and
//! checkpoints that resume exactly.

mod adam;
mod checkpoint;
pub mod data;
pub mod learned_prior;
pub mod prior;
pub mod report;

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::atomic_write::write_atomic;
pub use adam::Adam;
pub use checkpoint::{CHECKPOINT_FORMAT_LINE, Checkpoint};
pub use data::{DataError, Dataset};

use crate::codec;
use crate::entropy::Prior;
use crate::model::{GRID_STRIDE, ModelConfig, ModelError, ModelFile, ParamStore, VqVae};

/// How to train (the model's shape is a [`ModelConfig`]).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Steps of linear learning-rate warm-up; then cosine decay to 10%.
    pub warmup_steps: u64,
    pub seed: u64,
    /// Images held out (the last ones of the data set) for validation.
    pub validation_images: usize,
    /// Commitment loss weight (beta).
    pub commitment_weight: f64,
    /// Update codebooks by exponential moving averages instead of the codebook loss.
    pub ema: bool,
    pub ema_decay: f64,
    /// Every this many steps, codes no input chose since the last check are
    /// re-seeded from encoder outputs (0: never).
    pub restart_every: u64,
    /// Restarts stop after this fraction of the training steps, so the
    /// codebooks settle before the end.
    pub restart_until: f64,
    /// Entropy-constrained VQ, per stage: stage `s` picks the index
    /// minimising `||r - e_k||^2 + w_s * D_s * bits(k)`, where `D_s` is the
    /// stage's running mean squared quantisation error and `bits(k)` the
    /// index's code length under the stage's running index frequencies. Each
    /// weight `w_s` is steered so that the entropy of stage `s`'s indices
    /// approaches `target_entropy[s]` bits per index: fewer codes in use cost
    /// fewer bits. A stage without a target (or with 0) picks the nearest code.
    pub target_entropy: Vec<f64>,
    /// Weight each image's reconstruction error by the inverse of its
    /// level's running mean error, so that every quality level counts
    /// equally (the loss then follows the mean PSNR over levels). Without
    /// it the coarse levels' errors, ten times larger, steer training.
    pub balance_levels: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            learning_rate: 2e-3,
            warmup_steps: 500,
            seed: 1,
            validation_images: 5000,
            commitment_weight: 0.25,
            ema: false,
            ema_decay: 0.99,
            restart_every: 200,
            restart_until: 0.6,
            target_entropy: Vec::new(),
            balance_levels: true,
        }
    }
}

impl TrainOptions {
    /// The options as `name=value` pairs, named as `vqz train` names them,
    /// in a fixed order: a checkpoint records them so that a resumed run is
    /// the same run.
    pub fn to_text(&self) -> Vec<(&'static str, String)> {
        let entropy: Vec<String> = self.target_entropy.iter().map(|t| t.to_string()).collect();
        vec![
            ("epochs", self.epochs.to_string()),
            ("batch-size", self.batch_size.to_string()),
            ("lr", self.learning_rate.to_string()),
            ("warmup-steps", self.warmup_steps.to_string()),
            ("seed", self.seed.to_string()),
            ("validation", self.validation_images.to_string()),
            ("commitment", self.commitment_weight.to_string()),
            ("ema", self.ema.to_string()),
            ("ema-decay", self.ema_decay.to_string()),
            ("restart-every", self.restart_every.to_string()),
            ("restart-until", self.restart_until.to_string()),
            ("target-entropy", entropy.join(",")),
            ("level-balance", self.balance_levels.to_string()),
        ]
    }
}

/// The options as a checkpoint records them: [`TrainOptions::to_text`]'s
/// pairs as `name=value`, joined by `;`.
fn options_line(options: &TrainOptions) -> String {
    options
        .to_text()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// The options of `recorded` (an [`options_line`]) that `now` sets
/// otherwise, as `--name was (now value)`; empty if none.
fn changed_options(recorded: &str, now: &TrainOptions) -> Vec<String> {
    let was: BTreeMap<&str, &str> = recorded
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    now.to_text()
        .into_iter()
        .filter(|(k, v)| was.get(k).is_some_and(|w| w != v))
        .map(|(k, v)| format!("--{k} {} (now {v})", was[k]))
        .collect()
}

/// Images of `data` per forward pass of `model` when encoding or
/// evaluating: at most 256, and for large images as many as hold about
/// four times [`codec::PASS_FLOATS`] activations (512 MB).
pub(crate) fn images_per_pass(model: &VqVae, data: &Dataset) -> usize {
    let per_image = data.width * data.height * model.floats_per_pixel();
    (4 * codec::PASS_FLOATS / per_image.max(1)).clamp(1, 256)
}

/// Most activation floats a training batch may need: about 8 GB. A batch
/// holds the encoder's and the decoder's activations and their gradients,
/// about four times [`VqVae::floats_per_pixel`] per pixel.
pub const MAX_BATCH_FLOATS: usize = 1 << 31;

/// Identifies a data set: its shape and a digest of its pixels.
fn data_fingerprint(data: &Dataset) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(&data.pixels);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}x{}x{} {hex}", data.len(), data.width, data.height)
}

/// Progress of one training step, for a progress bar.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub epoch: usize,
    pub epochs: usize,
    pub step_in_epoch: usize,
    pub steps_per_epoch: usize,
    pub mse: f32,
    pub codebook_loss: f32,
    pub commitment_loss: f32,
    pub images_per_s: f64,
}

/// Validation figures.
#[derive(Debug, Clone)]
pub struct EvalReport {
    pub images: usize,
    /// Mean squared error (pixels in [0, 1]) when decoding the first L
    /// stages, for L = 1..=stages.
    pub mse_per_level: Vec<f64>,
    /// Distinct codes chosen, per stage.
    pub codes_used: Vec<usize>,
    /// 2^entropy of the code histogram, per stage.
    pub perplexity: Vec<f64>,
}

impl EvalReport {
    /// PSNR (peak 1.0) of the mean MSE at each level.
    pub fn psnr_db_per_level(&self) -> Vec<f64> {
        self.mse_per_level.iter().map(|m| psnr_db(*m)).collect()
    }
}

/// PSNR in dB of a mean squared error on pixels with peak 1.0.
pub fn psnr_db(mse: f64) -> f64 {
    if mse <= 0.0 {
        f64::INFINITY
    } else {
        -10.0 * mse.log10()
    }
}

#[derive(Debug, Clone)]
pub struct EpochReport {
    pub epoch: usize,
    pub epochs: usize,
    pub train_mse: f64,
    pub seconds: f64,
    pub images_per_s: f64,
    pub restarted_codes: usize,
    pub validation: EvalReport,
}

/// Receives progress while training runs.
pub trait TrainObserver {
    fn step(&mut self, _report: &StepReport) {}
    fn epoch(&mut self, _report: &EpochReport) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl TrainObserver for Silent {}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Entropy(#[from] crate::entropy::EntropyError),
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
    #[error("training data: {0}")]
    BadData(String),
    /// The loss stopped being a finite number: the weights are lost, and
    /// the last checkpoint (written before) is kept.
    #[error(
        "training diverged: {0}; the checkpoint keeps the last finished epoch \
         (a lower --lr may help)"
    )]
    Diverged(String),
    /// A checkpoint resumed with other options or data than its run's.
    #[error("{0}")]
    Resume(String),
    #[error("writing checkpoint {path}: {source}")]
    Checkpoint {
        path: String,
        source: std::io::Error,
    },
}

/// Model, optimizer and codebook state of a training run.
pub struct Trainer {
    config: ModelConfig,
    options: TrainOptions,
    params: ParamStore,
    model: VqVae,
    adam: Adam,
    /// Per stage, EMA cluster sizes `(K,)` and sums `(K, D)` (EMA mode only).
    ema: Vec<(Tensor, Tensor)>,
    /// Per stage, how often each code was chosen since the last restart check.
    usage: Vec<Vec<u32>>,
    /// Per stage, a running average of how often each code is chosen per
    /// step (for the rate term of entropy-constrained VQ).
    frequency: Vec<Vec<f64>>,
    /// Per stage, the same running average of code use, but never touched
    /// by restarts: what the rate controller measures the entropy on.
    observed: Vec<Vec<f64>>,
    /// Per stage, a running mean of the squared quantisation error per latent vector.
    distortion: Vec<f64>,
    /// Total steps of the run, for the rate weight's ramp.
    total_steps: u64,
    /// Per stage, the steered weight `w_s` of the rate term.
    rate_weight: Vec<f64>,
    /// Per quality level, a running mean of the reconstruction error of the
    /// training images decoded at that level (0 until first seen).
    level_mse: Vec<f64>,
    epochs_done: usize,
    codebooks_initialised: bool,
    /// The training data's [`data_fingerprint`], once a run started (or as
    /// the checkpoint resumed recorded it).
    data: Option<String>,
    /// When set, indices are chosen as the codec chooses them, not by
    /// [`Trainer::penalties`] (see [`Trainer::price_with`]).
    context_rate: Option<ContextRate>,
}

/// The codec's own index choice, for training: each index is priced by a
/// context prior given the indices chosen before it, and traded against
/// distance with fixed per-stage rate weights.
struct ContextRate {
    prior: Prior,
    rate_weights: Vec<f32>,
    /// Names the model file they come from, for checkpoints.
    source: String,
}

impl ContextRate {
    /// The indices `(b, stages, gh, gw)` (u32) the codec picks for latents
    /// `z` `(b, gh, gw, D)` of `net`.
    fn choose(&self, net: &VqVae, z: &Tensor, stages: usize) -> Result<Tensor, TrainError> {
        let (b, gh, gw, _) = z.dims4()?;
        let lengths = self.prior.code_lengths();
        // In network order (image, stage, cell): the tensor's own layout.
        let (flat, _) = codec::quantize_with_prior(net, &self.rate_weights, &lengths, z, stages)?;
        Ok(Tensor::from_vec(flat, (b, stages, gh, gw), &Device::Cpu)?)
    }
}

fn batch_tensor(data: &Dataset, ids: &[usize]) -> candle_core::Result<Tensor> {
    let n = data.width * data.height;
    let mut v = Vec::with_capacity(ids.len() * n);
    for &i in ids {
        v.extend(data.image(i).iter().map(|&p| p as f32 / 255.0));
    }
    Tensor::from_vec(v, (ids.len(), data.height, data.width, 1), &Device::Cpu)
}

/// A generator for one purpose at one point of training, derived from the
/// seed, so a resumed run draws the same numbers as an uninterrupted one.
fn rng_for(seed: u64, purpose: u64, counter: u64) -> ChaCha8Rng {
    let mut s = seed ^ purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    s = s.wrapping_add(counter.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    ChaCha8Rng::seed_from_u64(s)
}

/// Entropy-constrained VQ never charges an index more than this many bits,
/// however rarely it was chosen.
const MAX_PENALTY_BITS: f64 = 16.0;

/// Rounds running statistics to what a checkpoint stores (f32), so that a
/// resumed run continues from exactly the state the uninterrupted one had.
fn f32_exact(x: f64) -> f64 {
    f64::from(x as f32)
}

/// Stores running statistics in a checkpoint's state as f32 (what
/// [`f32_exact`] rounds them to).
fn put_f64s(state: &mut BTreeMap<String, Tensor>, key: &str, values: &[f64]) {
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    if let Ok(t) = Tensor::new(v, &Device::Cpu) {
        state.insert(key.to_string(), t);
    }
}

/// Takes running statistics stored by [`put_f64s`]; `None` when the
/// checkpoint lacks them or holds another count (a different run's shape).
fn take_f64s(
    state: &mut BTreeMap<String, Tensor>,
    key: &str,
    len: usize,
) -> Result<Option<Vec<f64>>, TrainError> {
    let Some(t) = state.remove(key) else {
        return Ok(None);
    };
    let v = t.to_vec1::<f32>()?;
    Ok((v.len() == len).then(|| v.into_iter().map(f64::from).collect()))
}

const RNG_SHUFFLE: u64 = 1;
const RNG_DROPOUT: u64 = 2;
const RNG_RESTART: u64 = 3;

impl Trainer {
    /// A fresh model with weights drawn from `options.seed`.
    pub fn new(config: ModelConfig, options: TrainOptions) -> Result<Self, TrainError> {
        let params = ParamStore::init(&config, options.seed)?;
        Self::with_params(config, options, params)
    }

    fn with_params(
        config: ModelConfig,
        options: TrainOptions,
        params: ParamStore,
    ) -> Result<Self, TrainError> {
        let model = VqVae::new(config, &params)?.for_training();
        let vars = if options.ema {
            params.network_vars()
        } else {
            params.iter().map(|(_, v)| v.clone()).collect()
        };
        let adam = Adam::new(vars)?;
        let mut ema = Vec::new();
        if options.ema {
            for s in 0..config.stages {
                let cb = model.codebook(s).as_tensor();
                ema.push((
                    Tensor::ones(config.codebook_size, DType::F32, &Device::Cpu)?,
                    cb.copy()?,
                ));
            }
        }
        Ok(Self {
            usage: vec![vec![0; config.codebook_size]; config.stages],
            frequency: vec![vec![1.0; config.codebook_size]; config.stages],
            observed: vec![vec![1.0; config.codebook_size]; config.stages],
            distortion: vec![0.0; config.stages],
            total_steps: 0,
            rate_weight: vec![0.0; config.stages],
            level_mse: vec![0.0; config.stages],
            config,
            options,
            params,
            model,
            adam,
            ema,
            epochs_done: 0,
            codebooks_initialised: false,
            data: None,
            context_rate: None,
        })
    }

    /// Continues training the network and codebooks of a model file.
    pub fn from_model(file: &ModelFile, options: TrainOptions) -> Result<Self, TrainError> {
        file.config.validate()?;
        let mut t = Self::with_params(file.config, options, file.params.clone())?;
        t.codebooks_initialised = true;
        Ok(t)
    }

    /// From now on, picks every training index as the codec does: stage by
    /// stage in coding order, minimising `||r - e_k||^2 + w_s * bits(k)`
    /// with `bits` the code length under `prior` given the indices chosen
    /// before (its context) and `w_s` = `rate_weights[s]`, instead of the
    /// context-free code lengths of [`Trainer::penalties`]. So the network
    /// learns from the indices its files will hold, priced as they will be.
    /// The prior stays fixed: fit a new one to the trained network after.
    /// `source` names the model file they come from (its SHA-256, say); the
    /// run's checkpoints record it ([`Checkpoint::priced_by`]), so a resumed
    /// run can be given the same file again.
    pub fn price_with(
        &mut self,
        prior: Prior,
        rate_weights: Vec<f32>,
        source: String,
    ) -> Result<(), TrainError> {
        codec::check_prior(&self.config, &prior)?;
        self.context_rate = Some(ContextRate {
            prior,
            rate_weights,
            source,
        });
        Ok(())
    }

    /// Continues a run from a checkpoint written by [`Trainer::checkpoint`].
    pub fn resume(checkpoint: Checkpoint, options: TrainOptions) -> Result<Self, TrainError> {
        // Checkpoints written before options were recorded resume as asked.
        if let Some(recorded) = &checkpoint.options {
            let changed = changed_options(recorded, &options);
            if !changed.is_empty() {
                return Err(TrainError::Resume(format!(
                    "the checkpoint's run had {}; resume with its options \
                     (--from MODEL trains a finished model further with new ones)",
                    changed.join(", ")
                )));
            }
        }
        let data = checkpoint.data.clone();
        let mut t = Self::with_params(checkpoint.config, options, checkpoint.params)?;
        t.data = data;
        let mut state = checkpoint.state;
        let n = t.adam.state().0.len();
        let mut first = Vec::with_capacity(n);
        let mut second = Vec::with_capacity(n);
        for i in 0..n {
            let take = |state: &mut BTreeMap<String, Tensor>, k: String| {
                state
                    .remove(&k)
                    .ok_or_else(|| ModelError::MissingTensor(format!("state.{k}")))
            };
            first.push(take(&mut state, format!("adam.m.{i}"))?);
            second.push(take(&mut state, format!("adam.v.{i}"))?);
        }
        t.adam.restore(first, second, checkpoint.step)?;
        for s in 0..t.ema.len() {
            if let (Some(c), Some(m)) = (
                state.remove(&format!("ema.count.{s}")),
                state.remove(&format!("ema.sum.{s}")),
            ) {
                t.ema[s] = (c, m);
            }
        }
        let stages = t.distortion.len();
        if let Some(v) = take_f64s(&mut state, "rate.distortion", 2 * stages)? {
            t.distortion = v[..stages].to_vec();
            t.rate_weight = v[stages..].to_vec();
        }
        if let Some(v) = take_f64s(&mut state, "train.level_mse", stages)? {
            t.level_mse = v;
        }
        for s in 0..t.frequency.len() {
            let key = format!("rate.frequency.{s}");
            if let Some(v) = take_f64s(&mut state, &key, t.frequency[s].len())? {
                t.frequency[s] = v;
            }
            // Checkpoints from before the controller had its own record
            // start it from the penalties' frequencies.
            let key = format!("rate.observed.{s}");
            t.observed[s] = take_f64s(&mut state, &key, t.observed[s].len())?
                .unwrap_or_else(|| t.frequency[s].clone());
        }
        t.epochs_done = checkpoint.epochs_done;
        t.codebooks_initialised = true;
        Ok(t)
    }

    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    pub fn model(&self) -> &VqVae {
        &self.model
    }

    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Per-stage index penalties of entropy-constrained VQ: the stage's
    /// rate weight times each index's code length under the running
    /// frequencies, capped at [`MAX_PENALTY_BITS`] so that no code becomes
    /// unreachable. `None` when the rate term is off.
    pub fn penalties(&self) -> Result<Option<Vec<Tensor>>, TrainError> {
        if self.rate_weight.iter().all(|&w| w <= 0.0) {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(self.frequency.len());
        for (f, &w) in self.frequency.iter().zip(&self.rate_weight) {
            let total: f64 = f.iter().sum::<f64>().max(f64::MIN_POSITIVE);
            let bits: Vec<f32> = f
                .iter()
                .map(|&c| (w * (-(c / total).log2()).min(MAX_PENALTY_BITS)) as f32)
                .collect();
            out.push(Tensor::new(bits, &Device::Cpu)?);
        }
        Ok(Some(out))
    }

    /// The rate weight of each stage, in squared latent distance per bit
    /// (0 for stages without a target). The model file stores these, so the
    /// codec's encoder makes the same trade.
    pub fn rate_weights(&self) -> Vec<f64> {
        self.rate_weight.clone()
    }

    /// Steers stage `s`'s rate weight toward its target entropy, once 10%
    /// of the run has given the codebooks time to settle.
    ///
    /// The entropy is measured on the codes actually chosen (`observed`),
    /// not on the penalties' frequencies, in which every restart gives the
    /// re-seeded codes an average share: read from those, the entropy stays
    /// high for as long as restarts run, whatever the weight, so the weight
    /// grew all that time (by 0.3% a step, thousands-fold) and collapsed
    /// the stage to a code or two the moment restarts stopped.
    ///
    /// The weight is in absolute units: scaling it by the stage's
    /// distortion, which itself grows as the weight does, feeds back and
    /// collapses the codebook to one code. It changes by at most 0.3% per
    /// step, as the entropy it reacts to is a running average that lags.
    fn steer_rate_weight(&mut self, s: usize) {
        let target = self.options.target_entropy.get(s).copied().unwrap_or(0.0);
        let settle = (0.1 * self.total_steps as f64).ceil() as u64;
        if target <= 0.0 || self.adam.step < settle {
            return;
        }
        let (Some(f), Some(w), Some(d)) = (
            self.observed.get(s),
            self.rate_weight.get(s).copied(),
            self.distortion.get(s).copied(),
        ) else {
            return;
        };
        let total: f64 = f.iter().sum();
        let entropy: f64 = f
            .iter()
            .filter(|&&c| c > 0.0)
            .map(|&c| {
                let p = c / total;
                -p * p.log2()
            })
            .sum();
        let w = if w <= 0.0 { 1e-3 * d.max(1e-6) } else { w };
        let change = (0.002 * (entropy - target)).clamp(-0.003, 0.003);
        self.rate_weight[s] = f32_exact((w * change.exp()).clamp(1e-9, 1e3));
    }

    /// Everything needed to resume.
    pub fn checkpoint(&self) -> Checkpoint {
        let mut state = BTreeMap::new();
        let (first, second) = self.adam.state();
        for (i, (m, v)) in first.iter().zip(second).enumerate() {
            state.insert(format!("adam.m.{i}"), m.clone());
            state.insert(format!("adam.v.{i}"), v.clone());
        }
        for (s, (c, m)) in self.ema.iter().enumerate() {
            state.insert(format!("ema.count.{s}"), c.clone());
            state.insert(format!("ema.sum.{s}"), m.clone());
        }
        let rate: Vec<f64> = self
            .distortion
            .iter()
            .chain(&self.rate_weight)
            .copied()
            .collect();
        put_f64s(&mut state, "rate.distortion", &rate);
        put_f64s(&mut state, "train.level_mse", &self.level_mse);
        for (s, (f, o)) in self.frequency.iter().zip(&self.observed).enumerate() {
            put_f64s(&mut state, &format!("rate.frequency.{s}"), f);
            put_f64s(&mut state, &format!("rate.observed.{s}"), o);
        }
        Checkpoint {
            config: self.config,
            params: self.params.clone(),
            epochs_done: self.epochs_done,
            step: self.adam.step,
            state,
            priced_by: self.context_rate.as_ref().map(|c| c.source.clone()),
            options: Some(options_line(&self.options)),
            data: self.data.clone(),
        }
    }

    fn learning_rate(&self, step: u64, total_steps: u64) -> f64 {
        let base = self.options.learning_rate;
        let warm = self.options.warmup_steps.max(1);
        if step < warm {
            return base * (step + 1) as f64 / warm as f64;
        }
        let span = total_steps.saturating_sub(warm).max(1) as f64;
        let t = ((step - warm) as f64 / span).min(1.0);
        base * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
    }

    /// Seeds every codebook from encoder outputs of one batch, stage by
    /// stage on the residual the earlier stages leave.
    fn init_codebooks(&mut self, x: &Tensor) -> Result<(), TrainError> {
        let (k, d) = (self.config.codebook_size, self.config.latent_dim);
        let z = self.model.encode_latents(x)?.detach();
        let n = z.elem_count() / d;
        let zf = z.reshape((n, d))?;
        let mut rng = rng_for(self.options.seed, RNG_RESTART, u64::MAX);
        for s in 0..self.config.stages {
            // What stages 0..s, already seeded, leave for stage s.
            let residual = if s == 0 {
                zf.clone()
            } else {
                let q = self.model.quantize(&zf, s)?;
                (&q.residuals[s - 1] - &q.vectors[s - 1])?.detach()
            };
            let rows: Vec<u32> = (0..k).map(|_| rng.random_range(0..n as u32)).collect();
            let ids = Tensor::from_vec(rows, k, &Device::Cpu)?;
            let seeded = residual.index_select(&ids, 0)?;
            self.model.codebook(s).set(&seeded)?;
            if let Some(e) = self.ema.get_mut(s) {
                *e = (Tensor::ones(k, DType::F32, &Device::Cpu)?, seeded.copy()?);
            }
        }
        self.codebooks_initialised = true;
        Ok(())
    }

    /// One optimisation step on a batch; returns (mse, codebook loss,
    /// commitment loss, codes restarted).
    fn step(&mut self, x: &Tensor) -> Result<(f32, f32, f32, usize), TrainError> {
        let cfg = self.config;
        let (b, d) = (x.dim(0)?, cfg.latent_dim);
        let z = self.model.encode_latents(x)?;
        let (_, gh, gw, _) = z.dims4()?;
        let per_image = gh * gw;
        let n = b * per_image;
        let zf = z.reshape((n, d))?;
        let q = match &self.context_rate {
            Some(c) => {
                let grid = c.choose(&self.model, &z.detach(), cfg.stages)?;
                let indices = (0..cfg.stages)
                    .map(|s| grid.narrow(1, s, 1)?.flatten_all())
                    .collect::<candle_core::Result<Vec<_>>>()?;
                self.model.quantize_given(&zf, &indices)?
            }
            None => {
                let penalties = self.penalties()?;
                self.model
                    .quantize_penalized(&zf, cfg.stages, penalties.as_deref())?
            }
        };

        // Quantiser dropout: each image is reconstructed from a random
        // number of stages, so every quality level is trained.
        let mut rng = rng_for(self.options.seed, RNG_DROPOUT, self.adam.step);
        let levels: Vec<usize> = (0..b).map(|_| rng.random_range(1..=cfg.stages)).collect();
        let mut zq: Option<Tensor> = None;
        for s in 0..cfg.stages {
            let mask: Vec<f32> = (0..n)
                .map(|r| if levels[r / per_image] > s { 1.0 } else { 0.0 })
                .collect();
            let mask = Tensor::from_vec(mask, (n, 1), &Device::Cpu)?;
            let part = q.vectors[s].detach().broadcast_mul(&mask)?;
            zq = Some(match zq {
                None => part,
                Some(acc) => (acc + part)?,
            });
        }
        let zq = zq.ok_or_else(|| TrainError::BadData("model has no stages".into()))?;
        // Straight-through: the decoder sees the quantised latents, the
        // encoder receives the decoder's gradient unchanged.
        let st = (&zf + (zq - &zf)?.detach())?;
        let recon = self.model.decode_latents(&st.reshape((b, gh, gw, d))?)?;
        let image_err = (recon - x)?.sqr()?.flatten_from(1)?.mean(1)?;
        let mse = image_err.mean_all()?;
        let weighted = match self.level_weights(&levels) {
            Some(w) => image_err
                .mul(&Tensor::from_vec(w, b, &Device::Cpu)?)?
                .mean_all()?,
            None => mse.clone(),
        };
        self.track_level_mse(&levels, &image_err.to_vec1::<f32>()?);
        let mut codebook_loss = Tensor::zeros((), DType::F32, &Device::Cpu)?;
        let mut commitment = Tensor::zeros((), DType::F32, &Device::Cpu)?;
        for s in 0..cfg.stages {
            let r = &q.residuals[s];
            let v = &q.vectors[s];
            let err = (r.detach() - v.detach())?
                .sqr()?
                .sum_keepdim(1)?
                .mean_all()?
                .to_scalar::<f32>()? as f64;
            self.distortion[s] = f32_exact(if self.adam.step == 0 {
                err
            } else {
                0.99 * self.distortion[s] + 0.01 * err
            });
            commitment = (commitment + (r - v.detach())?.sqr()?.mean_all()?)?;
            if !self.options.ema {
                codebook_loss = (codebook_loss + (v - r.detach())?.sqr()?.mean_all()?)?;
            }
        }
        let loss =
            ((&weighted + &codebook_loss)? + (&commitment * self.options.commitment_weight)?)?;
        let grads = loss.backward()?;
        let lr = self.learning_rate(self.adam.step, self.total_steps);
        self.adam.apply(&grads, lr)?;

        for s in 0..cfg.stages {
            let idx = q.indices[s].to_vec1::<u32>()?;
            let mut counts = vec![0u32; cfg.codebook_size];
            for &i in &idx {
                if let Some(u) = self.usage[s].get_mut(i as usize) {
                    *u += 1;
                }
                if let Some(c) = counts.get_mut(i as usize) {
                    *c += 1;
                }
            }
            for ((f, o), &c) in self.frequency[s]
                .iter_mut()
                .zip(&mut self.observed[s])
                .zip(&counts)
            {
                *f = f32_exact(0.99 * *f + 0.01 * c as f64);
                *o = f32_exact(0.99 * *o + 0.01 * c as f64);
            }
            self.steer_rate_weight(s);
            if self.options.ema {
                self.ema_update(s, &q.indices[s], &q.residuals[s].detach())?;
            }
        }
        let restart_every = self.options.restart_every;
        let restarts_end = (self.total_steps as f64 * self.options.restart_until) as u64;
        let mut restarted = 0;
        if restart_every > 0 && self.adam.step.is_multiple_of(restart_every) {
            if self.adam.step <= restarts_end {
                restarted = self.restart_dead_codes(&q.residuals)?;
            }
            for u in &mut self.usage {
                u.iter_mut().for_each(|c| *c = 0);
            }
        }
        Ok((
            mse.to_scalar::<f32>()?,
            codebook_loss.to_scalar::<f32>()?,
            commitment.to_scalar::<f32>()?,
            restarted,
        ))
    }

    /// Per image of the batch, the weight of its reconstruction error under
    /// [`TrainOptions::balance_levels`]: the mean of the levels' running
    /// errors over its own level's, so the weighted loss keeps the scale of
    /// the plain one. `None` when balancing is off or a level is not yet seen.
    fn level_weights(&self, levels: &[usize]) -> Option<Vec<f32>> {
        if !self.options.balance_levels || self.level_mse.iter().any(|&m| m <= 0.0) {
            return None;
        }
        let mean = self.level_mse.iter().sum::<f64>() / self.level_mse.len() as f64;
        Some(
            levels
                .iter()
                .map(|&l| (mean / self.level_mse[l - 1]) as f32)
                .collect(),
        )
    }

    /// Updates the running error of each level from this batch's images.
    fn track_level_mse(&mut self, levels: &[usize], per_image: &[f32]) {
        let stages = self.level_mse.len();
        let mut sum = vec![0.0f64; stages];
        let mut count = vec![0usize; stages];
        for (&l, &e) in levels.iter().zip(per_image) {
            sum[l - 1] += f64::from(e);
            count[l - 1] += 1;
        }
        for l in 0..stages {
            if count[l] == 0 {
                continue;
            }
            let batch = sum[l] / count[l] as f64;
            let old = self.level_mse[l];
            self.level_mse[l] = f32_exact(if old <= 0.0 {
                batch
            } else {
                0.98 * old + 0.02 * batch
            });
        }
    }

    fn ema_update(&mut self, s: usize, idx: &Tensor, r: &Tensor) -> Result<(), TrainError> {
        let (k, d) = (self.config.codebook_size, self.config.latent_dim);
        let decay = self.options.ema_decay;
        let n = r.dim(0)?;
        let ones = Tensor::ones(n, DType::F32, &Device::Cpu)?;
        let counts = Tensor::zeros(k, DType::F32, &Device::Cpu)?.index_add(idx, &ones, 0)?;
        let sums = Tensor::zeros((k, d), DType::F32, &Device::Cpu)?.index_add(idx, r, 0)?;
        let (c, m) = &self.ema[s];
        let c = ((c * decay)? + (counts * (1.0 - decay))?)?;
        let m = ((m * decay)? + (sums * (1.0 - decay))?)?;
        // Laplace smoothing keeps unused codes from dividing by zero.
        let total = c.sum_all()?.to_scalar::<f32>()? as f64;
        let eps = 1e-5;
        let smoothed = ((&c + eps)? * (total / (total + k as f64 * eps)))?;
        let codebook = m.broadcast_div(&smoothed.reshape((k, 1))?)?;
        self.model.codebook(s).set(&codebook)?;
        self.ema[s] = (c, m);
        Ok(())
    }

    /// Codes unused since the last check get a random residual vector of the
    /// current batch. Returns how many codes were re-seeded.
    fn restart_dead_codes(&mut self, residuals: &[Tensor]) -> Result<usize, TrainError> {
        let mut restarted = 0;
        let mut rng = rng_for(self.options.seed, RNG_RESTART, self.adam.step);
        for (s, r) in residuals.iter().enumerate() {
            let dead: Vec<usize> = (0..self.config.codebook_size)
                .filter(|&c| self.usage[s][c] == 0)
                .collect();
            if dead.is_empty() {
                continue;
            }
            let rows = r.detach().to_vec2::<f32>()?;
            let mut codebook = self.model.codebook(s).as_tensor().to_vec2::<f32>()?;
            // A re-seeded code starts with an average frequency, so the rate
            // term does not rule it out before it is tried.
            let mean =
                self.frequency[s].iter().sum::<f64>() / self.frequency[s].len().max(1) as f64;
            for &c in &dead {
                codebook[c] = rows[rng.random_range(0..rows.len())].clone();
                self.frequency[s][c] = f32_exact(mean);
            }
            let t = Tensor::new(codebook, &Device::Cpu)?;
            self.model.codebook(s).set(&t)?;
            if let Some((cnt, sum)) = self.ema.get_mut(s) {
                let mut cv = cnt.to_vec1::<f32>()?;
                for &c in &dead {
                    cv[c] = 1.0;
                }
                *cnt = Tensor::new(cv, &Device::Cpu)?;
                *sum = t.broadcast_mul(&cnt.reshape((self.config.codebook_size, 1))?)?;
            }
            restarted += dead.len();
        }
        Ok(restarted)
    }

    /// Trains until `options.epochs` epochs are done, writing a checkpoint
    /// after every epoch when `checkpoint_path` is given.
    pub fn run(
        &mut self,
        data: &Dataset,
        checkpoint_path: Option<&std::path::Path>,
        observer: &mut dyn TrainObserver,
    ) -> Result<(), TrainError> {
        if !data.width.is_multiple_of(GRID_STRIDE) || !data.height.is_multiple_of(GRID_STRIDE) {
            return Err(TrainError::BadData(format!(
                "images are {}x{}; training needs sides that are multiples of {GRID_STRIDE}",
                data.width, data.height
            )));
        }
        let fingerprint = data_fingerprint(data);
        match &self.data {
            Some(recorded) if *recorded != fingerprint => {
                return Err(TrainError::Resume(format!(
                    "the checkpoint's run trained on other images ({recorded}; these are \
                     {fingerprint}): resume with its --data and --limit"
                )));
            }
            _ => self.data = Some(fingerprint),
        }
        let (train_ids, val_ids) = self.split(data)?;
        let bs = self.options.batch_size.max(1);
        let batch = bs.min(train_ids.len());
        let floats = (batch as u128)
            * (data.width * data.height) as u128
            * 4
            * self.model.floats_per_pixel() as u128;
        if floats > MAX_BATCH_FLOATS as u128 {
            return Err(TrainError::BadData(format!(
                "a batch of {batch} images of {}x{} needs about {} GB for the network, over the {} GB \
                 limit: lower --batch-size, or train on smaller images",
                data.width,
                data.height,
                floats * 4 / 1_000_000_000,
                MAX_BATCH_FLOATS as u128 * 4 / 1_000_000_000
            )));
        }
        let steps_per_epoch = train_ids.len().div_ceil(bs);
        self.total_steps = (steps_per_epoch * self.options.epochs) as u64;
        while self.epochs_done < self.options.epochs {
            let epoch = self.epochs_done;
            let mut order = train_ids.clone();
            order.shuffle(&mut rng_for(self.options.seed, RNG_SHUFFLE, epoch as u64));
            let start = Instant::now();
            let mut mse_sum = 0.0;
            let mut restarted = 0;
            for (i, chunk) in order.chunks(bs).enumerate() {
                let x = batch_tensor(data, chunk)?;
                if !self.codebooks_initialised {
                    self.init_codebooks(&x)?;
                }
                let (mse, cb, cm, r) = self.step(&x)?;
                if ![mse, cb, cm].iter().all(|l| l.is_finite()) {
                    return Err(TrainError::Diverged(format!(
                        "the loss became {} in epoch {}, step {}",
                        mse + cb + cm,
                        epoch + 1,
                        i + 1
                    )));
                }
                restarted += r;
                mse_sum += mse as f64 * chunk.len() as f64;
                let secs = start.elapsed().as_secs_f64();
                observer.step(&StepReport {
                    epoch,
                    epochs: self.options.epochs,
                    step_in_epoch: i + 1,
                    steps_per_epoch,
                    mse,
                    codebook_loss: cb,
                    commitment_loss: cm,
                    images_per_s: ((i * bs + chunk.len()) as f64) / secs.max(1e-9),
                });
            }
            let seconds = start.elapsed().as_secs_f64();
            self.epochs_done += 1;
            let validation = match &self.context_rate {
                Some(c) => evaluate_choosing(&self.model, data, &val_ids, &|x| {
                    let z = self.model.encode_latents(x)?;
                    c.choose(&self.model, &z, self.config.stages)
                })?,
                None => evaluate(&self.model, data, &val_ids, self.penalties()?.as_deref())?,
            };
            // The last step can leave weights that are no longer numbers
            // after a finite loss; validation decodes with them.
            if validation.mse_per_level.iter().any(|m| m.is_nan()) {
                return Err(TrainError::Diverged(format!(
                    "validation after epoch {} is not a number",
                    epoch + 1
                )));
            }
            if let Some(path) = checkpoint_path {
                let bytes = self.checkpoint().to_bytes()?;
                write_atomic(path, &bytes, true).map_err(|source| TrainError::Checkpoint {
                    path: path.display().to_string(),
                    source,
                })?;
            }
            observer.epoch(&EpochReport {
                epoch,
                epochs: self.options.epochs,
                train_mse: mse_sum / train_ids.len().max(1) as f64,
                seconds,
                images_per_s: train_ids.len() as f64 / seconds.max(1e-9),
                restarted_codes: restarted,
                validation,
            });
        }
        Ok(())
    }

    /// Training and validation image numbers: the validation images are the
    /// last ones, so the split does not depend on the seed.
    pub fn split(&self, data: &Dataset) -> Result<(Vec<usize>, Vec<usize>), TrainError> {
        let n = data.len();
        let val = self.options.validation_images.min(n / 2);
        if n - val == 0 {
            return Err(TrainError::BadData("no training images".into()));
        }
        Ok(((0..n - val).collect(), (n - val..n).collect()))
    }
}

/// Encodes `ids` of `data` with every stage and measures the reconstruction
/// error at each level and the codebook usage of each stage.
pub fn evaluate(
    model: &VqVae,
    data: &Dataset,
    ids: &[usize],
    penalties: Option<&[Tensor]>,
) -> Result<EvalReport, TrainError> {
    let stages = model.config().stages;
    evaluate_choosing(model, data, ids, &|x| {
        Ok(model.encode_penalized(x, stages, penalties)?)
    })
}

/// [`evaluate`] with the indices `(b, stages, gh, gw)` of a batch of images
/// chosen by `encode`.
fn evaluate_choosing(
    model: &VqVae,
    data: &Dataset,
    ids: &[usize],
    encode: &dyn Fn(&Tensor) -> Result<Tensor, TrainError>,
) -> Result<EvalReport, TrainError> {
    let cfg = model.config();
    let mut sq_err = vec![0.0f64; cfg.stages];
    let mut hist = vec![vec![0u64; cfg.codebook_size]; cfg.stages];
    let pixels = (data.width * data.height) as f64;
    for chunk in ids.chunks(images_per_pass(model, data)) {
        let x = batch_tensor(data, chunk)?;
        let idx = encode(&x)?;
        for (s, h) in hist.iter_mut().enumerate() {
            for i in idx.narrow(1, s, 1)?.flatten_all()?.to_vec1::<u32>()? {
                if let Some(c) = h.get_mut(i as usize) {
                    *c += 1;
                }
            }
        }
        for (level, e) in sq_err.iter_mut().enumerate() {
            let y = model.decode(&idx.narrow(1, 0, level + 1)?)?;
            *e += (y - &x)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let n = ids.len().max(1) as f64;
    Ok(EvalReport {
        images: ids.len(),
        mse_per_level: sq_err.iter().map(|e| e / (n * pixels)).collect(),
        codes_used: hist
            .iter()
            .map(|h| h.iter().filter(|&&c| c > 0).count())
            .collect(),
        perplexity: hist
            .iter()
            .map(|h| {
                let total: u64 = h.iter().sum();
                let ent: f64 = h
                    .iter()
                    .filter(|&&c| c > 0)
                    .map(|&c| {
                        let p = c as f64 / total as f64;
                        -p * p.log2()
                    })
                    .sum();
                ent.exp2()
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-stage model small enough to build in a millisecond.
    const TINY: ModelConfig = ModelConfig {
        codebook_size: 8,
        latent_dim: 2,
        stages: 2,
        channels_low: 4,
        channels_high: 4,
    };

    fn trainer(balance_levels: bool) -> Trainer {
        let options = TrainOptions {
            balance_levels,
            ..TrainOptions::default()
        };
        Trainer::new(TINY, options).unwrap()
    }

    #[test]
    fn level_weights_give_every_level_the_same_share_of_the_loss() {
        let mut t = trainer(true);
        // No weights until every level has been seen.
        t.track_level_mse(&[1, 1], &[0.02, 0.0]);
        assert_eq!(t.level_mse, vec![f32_exact(0.01), 0.0]);
        assert!(t.level_weights(&[1, 2]).is_none());
        t.track_level_mse(&[2], &[0.001]);
        let w = t.level_weights(&[1, 2, 2]).unwrap();
        let (m1, m2) = (t.level_mse[0], t.level_mse[1]);
        let mean = (m1 + m2) / 2.0;
        assert!((f64::from(w[0]) - mean / m1).abs() < 1e-6);
        assert!((f64::from(w[1]) - mean / m2).abs() < 1e-5);
        assert_eq!(w[1], w[2]);
        // Each level's weighted error is the same, and on average the
        // weighted loss keeps the plain loss's scale.
        let shares = [f64::from(w[0]) * m1, f64::from(w[1]) * m2];
        assert!((shares[0] - shares[1]).abs() < 1e-8);
        assert!((shares[0] - mean).abs() < 1e-8);
        // Later batches move the running error by 2%.
        t.track_level_mse(&[1], &[0.03]);
        assert!((t.level_mse[0] - (0.98 * m1 + 0.02 * 0.03)).abs() < 1e-9);
    }

    #[test]
    fn the_rate_controller_measures_codes_chosen_not_codes_restarted() {
        let options = TrainOptions {
            target_entropy: vec![1.0, 0.0],
            ..TrainOptions::default()
        };
        let mut t = Trainer::new(TINY, options).unwrap();
        t.total_steps = 1000;
        t.distortion = vec![0.5, 0.5];
        // Chosen: two codes, half the time each (1 bit, the target). A
        // restart has just given the six unused codes an average share of
        // the penalties' frequencies (3 bits).
        t.observed[0] = vec![4.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        t.frequency[0] = vec![1.0; 8];
        let steered = |t: &mut Trainer, step: u64| {
            t.adam.step = step;
            t.steer_rate_weight(0);
            t.steer_rate_weight(1);
            t.rate_weight.clone()
        };
        // Nothing moves in the first 10% of the run.
        assert_eq!(steered(&mut t, 99), vec![0.0, 0.0]);
        // At the target the weight starts and stays at its initial value.
        let start = f32_exact(1e-3 * 0.5);
        assert_eq!(steered(&mut t, 100), vec![start, 0.0]);
        assert_eq!(steered(&mut t, 101), vec![start, 0.0]);
        // Above the target (three codes chosen) it grows; below, it shrinks.
        t.observed[0] = vec![4.0, 4.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let up = steered(&mut t, 102)[0];
        assert!(up > start, "{up} <= {start}");
        t.observed[0] = vec![8.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert!(steered(&mut t, 103)[0] < up);
    }

    #[test]
    fn without_balancing_images_weigh_the_same() {
        let mut t = trainer(false);
        t.track_level_mse(&[1, 2], &[0.01, 0.001]);
        assert!(t.level_weights(&[1, 2]).is_none());
    }
}
