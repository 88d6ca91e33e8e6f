//! The neural network of vqz: a VQ-VAE with a residual vector quantiser,
//! written with candle, and its model file. Sits between the entropy layer
//! (which codes the indices this produces) and the codec (the public API).

mod config;
mod file;
mod layers;
mod network;
mod params;
pub(crate) mod tensor_file;
mod tiles;

pub use config::{
    GRID_STRIDE, GRID_STRIDE_LOG2, MAX_CHANNELS, MAX_CODEBOOK_SIZE, MAX_LATENT_DIM, MAX_STAGES,
    ModelConfig,
};
pub use file::{
    MAX_MODEL_FILE_BYTES, MODEL_FORMAT_LINE, ModelFile, PRIOR_TENSOR, model_sha256, read_model_file,
};
pub use layers::{Conv, depth_to_space, space_to_depth, squared_distances};
pub use network::{Quantized, VqVae};
pub use params::{ParamStore, codebook_name, conv_layers, expected_shapes};

/// Errors of loading, validating or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("not a vqz model file: {0}")]
    NotAModel(String),
    #[error("model file is not valid safetensors: {0}")]
    Safetensors(String),
    #[error("model configuration: {0}")]
    BadConfig(String),
    #[error("model file lacks tensor {0:?}")]
    MissingTensor(String),
    #[error("model file has unexpected tensor {0:?}")]
    UnexpectedTensor(String),
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    WrongShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor {name:?} has type {found}, expected f32")]
    WrongDType { name: String, found: String },
    #[error("model file is {len} bytes, larger than the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}
