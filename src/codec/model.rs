//! A complete codec model: network weights, configuration and integer
//! priors from one model file, identified by the hash of its bytes.

use std::borrow::Cow;
use std::path::Path;

use crate::entropy::Prior;
use crate::format::{Geometry, ModelId};
use crate::model::{
    GRID_STRIDE, GRID_STRIDE_LOG2, ModelConfig, ModelFile, VqVae, model_sha256, read_model_file,
};

use super::CodecError;

/// The model trained on the MNIST training digits, shipped in the binary.
pub static DEFAULT_MODEL_BYTES: &[u8] = include_bytes!("../../models/default.safetensors");

/// A loaded model, ready to encode and decode.
pub struct Model {
    name: String,
    version: String,
    id: ModelId,
    sha256: [u8; 32],
    bytes: Cow<'static, [u8]>,
    pub(crate) net: VqVae,
    pub(crate) prior: Prior,
    rate_weights: Vec<f32>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Model({} {} id {})",
            self.name,
            self.version,
            self.id_hex()
        )
    }
}

/// Activation floats one pass of the network holds, about: 128 MiB (the
/// whole pass, with matrix product buffers, needs some 160 MB for the
/// shipped model).
pub const PASS_FLOATS: usize = 1 << 25;

impl Model {
    /// The default model shipped inside vqz.
    pub fn default_model() -> Result<Self, CodecError> {
        Self::from_bytes(Cow::Borrowed(DEFAULT_MODEL_BYTES))
    }

    /// Loads a model file from disk.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CodecError> {
        let path = path.as_ref();
        let bytes = read_model_file(path).map_err(|source| CodecError::Io {
            what: format!("reading model {}", path.display()),
            source,
        })?;
        Self::from_bytes(Cow::Owned(bytes))
    }

    /// Parses and validates a model file's bytes.
    pub fn from_bytes(bytes: Cow<'static, [u8]>) -> Result<Self, CodecError> {
        let file = ModelFile::from_bytes(&bytes)?;
        let prior_bytes = file.prior.as_deref().ok_or_else(|| {
            CodecError::BadModel("the model file has no entropy prior (train it to the end)".into())
        })?;
        let prior = Prior::from_bytes(prior_bytes)?;
        check_prior(&file.config, &prior)?;
        let net = VqVae::new(file.config, &file.params)?;
        let mut rate_weights = file.rate_weights.clone();
        rate_weights.resize(file.config.stages, 0.0);
        let sha256 = model_sha256(&bytes);
        Ok(Self {
            name: file.name,
            version: file.version,
            id: ModelId([sha256[0], sha256[1], sha256[2], sha256[3]]),
            sha256,
            bytes,
            net,
            prior,
            rate_weights,
        })
    }

    /// The id containers reference: the first 4 bytes of the SHA-256 of the model file.
    pub fn id(&self) -> ModelId {
        self.id
    }

    /// The id as 8 lowercase hex digits.
    pub fn id_hex(&self) -> String {
        hex(&self.id.0)
    }

    /// The full SHA-256 of the model file, as hex.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn config(&self) -> &ModelConfig {
        self.net.config()
    }

    /// Pixels (planes x width x height, padded to the latent grid) the
    /// codec sends through this model's network in one pass, so that a
    /// pass holds about [`PASS_FLOATS`] activation floats: 103,883 for the
    /// shipped model (132 digits), more for a narrower one.
    /// Smaller images are batched up to it; a larger image goes through in
    /// overlapping tiles, to the same result.
    pub fn pass_pixels(&self) -> usize {
        (PASS_FLOATS / self.net.floats_per_pixel().max(1)).max(GRID_STRIDE * GRID_STRIDE)
    }

    /// Multiply-adds that decoding a frame of geometry `g` at level
    /// `stages` takes at most with this model: the decoder network over
    /// its planes (padded to the latent grid; over every tile's window,
    /// halo included, for a frame too large for one pass), and for every
    /// index a pass of the prior's network, as if no table were cached, and
    /// a small-state ANS step ([`crate::entropy::Prior::work_per_index`]).
    /// Fixed by the frame's header and the model's shape, so the stream
    /// decoder charges it before decoding the frame
    /// ([`super::Decoder::with_max_work`]). For the shipped model a 28x28
    /// digit costs 39 to 161 million, from level 1 to 6.
    pub fn decode_work(&self, g: Geometry, stages: u8) -> u64 {
        let (gw, gh) = g.grid_dims(self.grid_stride_log2());
        let (gw, gh, planes) = (gw as usize, gh as usize, usize::from(g.channels));
        let cell_pixels = (GRID_STRIDE * GRID_STRIDE) as u64;
        let cells = (planes as u64)
            .saturating_mul(gw as u64)
            .saturating_mul(gh as u64);
        // A frame within one pass shares it with others; a larger one is
        // decoded alone, in tiles (see `codec::batch::reconstruct`).
        let passed =
            self.net
                .decode_passed_cells(planes, gh, gw, self.pass_pixels() / cell_pixels as usize);
        let network = passed
            .saturating_mul(cell_pixels)
            .saturating_mul(self.net.decode_work_per_pixel(usize::from(stages)));
        let per_cell: u64 = (0..usize::from(stages))
            .map(|s| self.prior.work_per_index(s))
            .sum();
        network.saturating_add(cells.saturating_mul(per_cell))
    }

    /// Highest quality level (number of residual stages).
    pub fn max_level(&self) -> u8 {
        self.net.config().stages as u8
    }

    /// The level [`Quality::Default`](super::Quality::Default) codes at:
    /// [`DEFAULT_LEVEL`](super::DEFAULT_LEVEL), or the highest level if the
    /// model has fewer.
    pub fn default_level(&self) -> u8 {
        super::DEFAULT_LEVEL.min(self.max_level())
    }

    /// The model file's bytes, as embedded by `--embed-model`.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Per stage, the weight of an index's code length against its squared
    /// distance to the latent when the encoder picks indices (0: nearest code).
    pub fn rate_weights(&self) -> &[f32] {
        &self.rate_weights
    }

    /// Scales every stage's rate weight (encoder side only; decoding is
    /// unaffected). 0 picks nearest codes.
    pub fn scale_rate_weights(&mut self, factor: f32) {
        for w in &mut self.rate_weights {
            *w = (*w * factor).max(0.0);
        }
    }

    /// The entropy coder's context prior.
    pub fn prior(&self) -> &Prior {
        &self.prior
    }

    /// The network alone, for measuring it without the entropy coder.
    pub fn network(&self) -> &VqVae {
        &self.net
    }

    pub fn grid_stride_log2(&self) -> u8 {
        GRID_STRIDE_LOG2
    }
}

/// Lowercase hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that `prior` codes the stages and codebooks of `config`.
pub(crate) fn check_prior(config: &ModelConfig, prior: &Prior) -> Result<(), CodecError> {
    if usize::from(prior.num_stages()) != config.stages {
        return Err(CodecError::BadModel(format!(
            "the prior models {} stages, the network has {}",
            prior.num_stages(),
            config.stages
        )));
    }
    for s in 0..prior.num_stages() {
        if prior.num_symbols(s).map(usize::from) != Some(config.codebook_size) {
            return Err(CodecError::BadModel(format!(
                "the prior of stage {} has {:?} symbols, the codebook {}",
                s + 1,
                prior.num_symbols(s),
                config.codebook_size
            )));
        }
    }
    Ok(())
}
