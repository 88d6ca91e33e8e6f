//! The codec: images to `.vqz` bytes and back, through the model, the
//! entropy coder and the container. This is the public API; the `vqz`
//! command-line tool is a thin layer over it.
//!
//! ```no_run
//! use vqz::codec::{self, CompressOptions, Model};
//!
//! let model = Model::default_model()?;
//! let digit = image::open("digit.png")?;
//! let bytes = codec::compress(&model, &digit, &CompressOptions::default())?;
//! let back = codec::decompress(&bytes, &model)?;
//! assert_eq!((back.width(), back.height()), (digit.width(), digit.height()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod batch;
mod model;
mod pixels;
mod refine;
mod stream;

pub use batch::EncodedFrame;
pub(crate) use batch::quantize_with_prior;
pub(crate) use model::check_prior;
pub use model::{DEFAULT_MODEL_BYTES, Model, PASS_FLOATS, hex};
pub use pixels::{Conversion, mse, psnr_db, psnr_db_from_mse, to_supported};
pub use refine::DEFAULT_REFINE_STEPS;
pub use stream::{
    DECODE_BATCH_SAMPLES, DEFAULT_MAX_STREAM_SAMPLES, DEFAULT_MAX_STREAM_WORK, DecodedImage,
    Decoder, Encoder, FrameSummary, ITER_BATCH, SAMPLES_PER_FRAME_BYTE, WORK_PER_FRAME_BYTE,
};

use image::DynamicImage;

use crate::entropy::EntropyError;
use crate::format::FormatError;
use crate::model::ModelError;

/// The quality level used when none is asked for (or the model's highest
/// level, if it has fewer). Level 3 of the shipped model is the first at
/// which a digit's strokes come back clean (30.9 dB, 57 bytes a file on the
/// MNIST test set, refined); level 1 is blurred and level 2 softened, and
/// level 4 costs 1.5 times the bytes for 3.5 dB more.
pub const DEFAULT_LEVEL: u8 = 3;

/// How much quality to spend bytes on, per image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quality {
    /// [`DEFAULT_LEVEL`], or the model's highest level if it has fewer.
    Default,
    /// A fixed level: the number of residual stages coded (1 = smallest).
    Level(u8),
    /// The smallest level whose reconstruction reaches this PSNR in dB
    /// (peak 255) before refinement (which only improves it); the highest
    /// level if none does.
    TargetPsnr(f64),
    /// The highest level whose standalone one-image file fits in this many
    /// bytes before refinement (which never lengthens it); level 1 if none
    /// does.
    MaxBytes(usize),
}

/// Options of [`compress`] and [`Encoder`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompressOptions {
    pub quality: Quality,
    /// Put the model in the stream, so it decodes without a copy of the model.
    pub embed_model: bool,
    /// Steps of decoder-in-the-loop refinement of each image's code
    /// indices (0: the plain encoding, fastest). Each step costs about a
    /// network pass forward and back; a refined frame is never larger nor
    /// decodes worse than the plain encoding's. Decoding does not change.
    pub refine_steps: u8,
}

impl Default for CompressOptions {
    fn default() -> Self {
        Self {
            quality: Quality::Default,
            embed_model: false,
            refine_steps: DEFAULT_REFINE_STEPS,
        }
    }
}

/// Errors of the codec, by cause.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The `.vqz` bytes are malformed, truncated or corrupt.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A payload does not decode under the model's prior.
    #[error("payload: {0}")]
    Entropy(#[from] EntropyError),
    #[error("frame {frame}: {source}")]
    InFrame { frame: u64, source: Box<CodecError> },
    /// The model file is malformed.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("model: {0}")]
    BadModel(String),
    /// The stream's images hold more samples than the decoder allows
    /// ([`Decoder::with_max_samples`]).
    #[error(
        "frame {frame}: the stream's images exceed {limit} samples (pixels x channels), the decoder's limit for this many bytes (a few bytes can declare a large blank image)"
    )]
    SampleLimit { frame: u64, limit: u64 },
    /// Decoding the stream's frames would take more work than the decoder
    /// allows ([`Decoder::with_max_work`]).
    #[error(
        "frame {frame}: decoding the stream's frames would take over {limit} multiply-adds, the decoder's limit for this many bytes (a few bytes can declare a large image, and a model embedded in the stream can make each pixel costly)"
    )]
    WorkLimit { frame: u64, limit: u64 },
    /// The stream names a model that was not supplied.
    #[error("the stream was encoded with model {needed}, which is not available (have: {}); pass the model file with --model PATH", available.join(", "))]
    UnknownModel {
        needed: String,
        available: Vec<String>,
    },
    #[error("unsupported image: {0}")]
    UnsupportedImage(String),
    #[error("{0}")]
    BadOption(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The code indices the encoder picks for each image at `level` with
/// `refine_steps` steps of refinement: what [`compress`] entropy-codes
/// with the same [`CompressOptions::refine_steps`]. For analysis and reports.
pub fn encode_indices(
    model: &Model,
    images: &[DynamicImage],
    level: u8,
    refine_steps: u8,
) -> Result<Vec<crate::entropy::IndexGrid>, CodecError> {
    if level == 0 || level > model.max_level() {
        return Err(CodecError::BadOption(format!(
            "quality level {level} does not exist; this model has levels 1 to {}",
            model.max_level()
        )));
    }
    let coded = batch::encode_images(model, images, Quality::Level(level), refine_steps, &|_| 0)?;
    Ok(coded.into_iter().map(|(_, grid, _)| grid).collect())
}

/// Compresses one image into a complete one-frame `.vqz` file.
pub fn compress(
    model: &Model,
    image: &DynamicImage,
    options: &CompressOptions,
) -> Result<Vec<u8>, CodecError> {
    let mut enc = Encoder::new(Vec::new(), model, *options);
    enc.write_image(image)?;
    enc.finish()
}

/// Decompresses a one-frame `.vqz` file (a model embedded in it is used
/// instead of `model`). For multi-frame streams use [`Decoder`].
pub fn decompress(bytes: &[u8], model: &Model) -> Result<DynamicImage, CodecError> {
    let mut dec = Decoder::new(bytes, &[model])?;
    let mut images = dec.next_batch(2)?;
    if images.len() > 1 {
        return Err(CodecError::BadOption(
            "the stream holds more than one image; use a Decoder to read them all".into(),
        ));
    }
    // Reach the end of the stream (after the final frame, or the end marker),
    // so a damaged tail or data after the final frame is reported.
    if !dec.next_batch(1)?.is_empty() {
        return Err(CodecError::Internal("unexpected second frame".into()));
    }
    images
        .pop()
        .map(|d| d.image)
        .ok_or_else(|| CodecError::BadOption("the stream holds no image".into()))
}
