//! The VQ-VAE: a convolutional encoder to a latent grid at 1/4 of the image
//! side, a residual vector quantiser with one codebook per stage, and the
//! mirrored decoder. Upsampling is depth-to-space (pixel shuffle), which
//! keeps every heavy convolution at 1/4 or 1/2 resolution.

use candle_core::{D, DType, Result, Tensor, Var};

use super::layers::{Conv, depth_to_space, space_to_depth, squared_distances};
use super::params::{ParamStore, codebook_name, conv_layers};
use super::{GRID_STRIDE, ModelConfig, ModelError};

/// A VQ-VAE built from a [`ParamStore`]; it shares the store's tensors, so
/// training updates to the store are seen by the network.
#[derive(Debug, Clone)]
pub struct VqVae {
    config: ModelConfig,
    convs: Vec<Conv>,
    codebooks: Vec<Var>,
}

// Indices into `convs`, in the order of `conv_layers`.
const ENC_IN: usize = 0;
const ENC_DOWN: usize = 1;
const ENC_RES1: usize = 2;
const ENC_RES2: usize = 3;
const ENC_OUT: usize = 4;
const DEC_IN: usize = 5;
const DEC_RES1: usize = 6;
const DEC_RES2: usize = 7;
const DEC_UP: usize = 8;
const DEC_HI: usize = 9;
const DEC_OUT: usize = 10;

impl VqVae {
    pub fn new(config: ModelConfig, params: &ParamStore) -> std::result::Result<Self, ModelError> {
        config.validate()?;
        let mut convs = Vec::new();
        for (name, ..) in conv_layers(&config) {
            let w = params.get(&format!("{name}.weight"))?.clone();
            let b = params.get(&format!("{name}.bias"))?.clone();
            convs.push(Conv::new(w, b)?);
        }
        let codebooks = (0..config.stages)
            .map(|s| params.get(&codebook_name(s)).cloned())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self {
            config,
            convs,
            codebooks,
        })
    }

    /// The network for training: its convolutions sum in the fastest order
    /// for each batch instead of one fixed by their shapes, so an image's
    /// result may differ in the last bits with the batch it is in. The codec
    /// never uses this; see [`Conv::with_free_order`].
    pub fn for_training(mut self) -> Self {
        self.convs = self.convs.into_iter().map(Conv::with_free_order).collect();
        self
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn codebook(&self, stage: usize) -> &Var {
        &self.codebooks[stage]
    }

    /// `(b, h, w, 1)` pixels in [0, 1] to `(b, h/4, w/4, D)` latents.
    pub fn encode_latents(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.convs;
        let h = c[ENC_IN].forward(&space_to_depth(x)?)?.relu()?;
        let h = c[ENC_DOWN].forward(&space_to_depth(&h)?)?.relu()?;
        let r = c[ENC_RES2].forward(&c[ENC_RES1].forward(&h)?.relu()?)?;
        let h = (h + r)?.relu()?;
        c[ENC_OUT].forward(&h)
    }

    /// `(b, h/4, w/4, D)` quantised latents to `(b, h, w, 1)` pixels in [0, 1].
    pub fn decode_latents(&self, zq: &Tensor) -> Result<Tensor> {
        let c = &self.convs;
        let h = c[DEC_IN].forward(zq)?.relu()?;
        let r = c[DEC_RES2].forward(&c[DEC_RES1].forward(&h)?.relu()?)?;
        let h = (h + r)?.relu()?;
        let h = depth_to_space(&c[DEC_UP].forward(&h)?)?.relu()?;
        let h = c[DEC_HI].forward(&h)?.relu()?;
        candle_nn::ops::sigmoid(&depth_to_space(&c[DEC_OUT].forward(&h)?)?)
    }

    /// Residual quantisation of latent rows `z` `(n, D)` with the first
    /// `stages` codebooks. Returns, per stage, the chosen indices `(n,)` as
    /// u32 and the residual that stage quantised, plus the sum of the chosen
    /// codebook vectors. Residuals are detached: each stage's codebook sees
    /// what the earlier stages left, without gradients flowing back.
    pub fn quantize(&self, z: &Tensor, stages: usize) -> Result<Quantized> {
        self.quantize_penalized(z, stages, None)
    }

    /// [`VqVae::quantize`] where stage `s` picks the index minimising
    /// `||r - e_k||^2 + penalties[s][k]` (entropy-constrained VQ when the
    /// penalty is a weight times the index's code length).
    pub fn quantize_penalized(
        &self,
        z: &Tensor,
        stages: usize,
        penalties: Option<&[Tensor]>,
    ) -> Result<Quantized> {
        self.quantize_by(z, stages, |s, residual, codebook| {
            let mut dist = squared_distances(&residual.detach(), codebook)?;
            if let Some(p) = penalties.and_then(|p| p.get(s)) {
                dist = dist.broadcast_add(p)?;
            }
            dist.argmin(D::Minus1)
        })
    }

    /// [`VqVae::quantize_penalized`] with the indices already chosen, one
    /// `(n,)` u32 tensor per stage (by the codec's own quantiser, say): the
    /// residuals and vectors they give, with gradient to the codebooks.
    pub fn quantize_given(&self, z: &Tensor, indices: &[Tensor]) -> Result<Quantized> {
        if indices.len() > self.codebooks.len() {
            candle_core::bail!(
                "{} quantiser stages given, the model has {}",
                indices.len(),
                self.codebooks.len()
            );
        }
        self.quantize_by(z, indices.len(), |s, _, _| Ok(indices[s].clone()))
    }

    /// Residual quantisation of `z` over the first `stages` codebooks, where
    /// `pick(s, residual, codebook)` gives stage `s`'s indices `(n,)`.
    fn quantize_by(
        &self,
        z: &Tensor,
        stages: usize,
        mut pick: impl FnMut(usize, &Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<Quantized> {
        let mut residual = z.clone();
        let mut indices = Vec::with_capacity(stages);
        let mut residuals = Vec::with_capacity(stages);
        let mut vectors = Vec::with_capacity(stages);
        for (s, codebook) in self.codebooks.iter().enumerate().take(stages) {
            let idx = pick(s, &residual, codebook.as_tensor())?;
            let q = codebook.as_tensor().index_select(&idx, 0)?;
            residuals.push(residual.clone());
            residual = (residual - q.detach())?;
            indices.push(idx);
            vectors.push(q);
        }
        Ok(Quantized {
            indices,
            residuals,
            vectors,
        })
    }

    /// Images `(b, h, w, 1)` to code indices `(b, stages, h/4, w/4)` (u32).
    pub fn encode(&self, x: &Tensor, stages: usize) -> Result<Tensor> {
        self.encode_penalized(x, stages, None)
    }

    /// [`VqVae::encode`] with [`VqVae::quantize_penalized`]'s index choice.
    pub fn encode_penalized(
        &self,
        x: &Tensor,
        stages: usize,
        penalties: Option<&[Tensor]>,
    ) -> Result<Tensor> {
        let z = self.encode_latents(x)?;
        let (b, gh, gw, d) = z.dims4()?;
        let q = self.quantize_penalized(&z.reshape((b * gh * gw, d))?, stages, penalties)?;
        let per_stage: Vec<Tensor> = q
            .indices
            .iter()
            .map(|i| i.reshape((b, 1, gh, gw)))
            .collect::<Result<_>>()?;
        Tensor::cat(&per_stage, 1)
    }

    /// Sum of the codebook vectors named by `indices` `(b, stages, gh, gw)`,
    /// as latents `(b, gh, gw, D)`. Only the stages present are looked up.
    pub fn dequantize(&self, indices: &Tensor) -> Result<Tensor> {
        let (b, stages, gh, gw) = indices.dims4()?;
        if stages == 0 || stages > self.codebooks.len() {
            candle_core::bail!(
                "{stages} quantiser stages requested, the model has {}",
                self.codebooks.len()
            );
        }
        let indices = indices.to_dtype(DType::U32)?;
        let mut sum: Option<Tensor> = None;
        for (s, codebook) in self.codebooks.iter().enumerate().take(stages) {
            let idx = indices.narrow(1, s, 1)?.flatten_all()?;
            let q = codebook.as_tensor().index_select(&idx, 0)?;
            sum = Some(match sum {
                None => q,
                Some(acc) => (acc + q)?,
            });
        }
        let d = self.config.latent_dim;
        match sum {
            Some(s) => s.reshape((b, gh, gw, d)),
            None => candle_core::bail!("no quantiser stage to decode"),
        }
    }

    /// Latent cells around a cell that the encoder reads to compute it: an
    /// upper bound on its receptive radius, as each 3x3 convolution (at the
    /// latent or a finer resolution) reaches at most one cell further.
    pub fn encoder_halo(&self) -> usize {
        halo(&self.convs[ENC_IN..=ENC_OUT])
    }

    /// Latent cells around a cell whose vectors the decoder reads to
    /// compute that cell's pixels (an upper bound, as [`Self::encoder_halo`]).
    pub fn decoder_halo(&self) -> usize {
        halo(&self.convs[DEC_IN..=DEC_OUT])
    }

    /// About how many f32 activations the encoder or the decoder (the
    /// larger) holds per image pixel in a forward pass: for each
    /// convolution, its unfolded input (kernel area x input channels) and
    /// its output, with the activation after it, at that layer's
    /// resolution. The shipped model holds 223; a wider model more.
    pub fn floats_per_pixel(&self) -> usize {
        let floats = |c: &Conv| c.kernel() * c.kernel() * c.in_channels() + 2 * c.out_channels();
        self.per_pixel(ENC_IN..=ENC_OUT, floats)
            .max(self.per_pixel(DEC_IN..=DEC_OUT, floats))
    }

    /// Multiply-adds the decoder spends per image pixel (per plane) on a
    /// grid of `stages` stages: summing the stages' codebook vectors, then
    /// every decoder convolution at its resolution. Fixed by the model's
    /// shape: about 23,000 for the shipped model, up to about 170 times
    /// that for the widest shape a model file may declare.
    pub fn decode_work_per_pixel(&self, stages: usize) -> u64 {
        let dequantize = (stages * self.config.latent_dim).div_ceil(GRID_STRIDE * GRID_STRIDE);
        let convs = self.per_pixel(DEC_IN..=DEC_OUT, |c| {
            c.kernel() * c.kernel() * c.in_channels() * c.out_channels()
        });
        (dequantize + convs) as u64
    }

    /// The sum over the convolutions `range` of `per_position(conv)` spread
    /// over the image pixels each of its positions covers.
    fn per_pixel(
        &self,
        range: std::ops::RangeInclusive<usize>,
        per_position: impl Fn(&Conv) -> usize,
    ) -> usize {
        self.convs[range.clone()]
            .iter()
            .zip(&PIXELS_PER_POSITION[range])
            .map(|(c, px)| per_position(c).div_ceil(*px))
            .sum()
    }

    /// Code indices `(b, stages, gh, gw)` to images `(b, 4 gh, 4 gw, 1)`.
    pub fn decode(&self, indices: &Tensor) -> Result<Tensor> {
        self.decode_latents(&self.dequantize(indices)?)
    }
}

/// Image pixels per position of each convolution's input, in forward
/// order (as `conv_layers`): 4 at half the image side, 16 at the latent grid.
const PIXELS_PER_POSITION: [usize; 11] = [4, 16, 16, 16, 16, 16, 16, 16, 16, 4, 4];

fn halo(convs: &[Conv]) -> usize {
    convs.iter().map(|c| c.kernel() / 2).sum()
}

/// What [`VqVae::quantize`] chose, stage by stage.
pub struct Quantized {
    /// Chosen codebook index per row, one `(n,)` u32 tensor per stage.
    pub indices: Vec<Tensor>,
    /// The residual each stage quantised, `(n, D)`.
    pub residuals: Vec<Tensor>,
    /// The chosen codebook vectors, `(n, D)`, with gradient to the codebook.
    pub vectors: Vec<Tensor>,
}
