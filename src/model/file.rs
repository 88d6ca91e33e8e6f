//! The model file: safetensors holding the weights, the entropy coder's
//! integer priors (a `u8` tensor named `prior`) and one metadata entry `vqz`
//! with the format name, the model's name and version and its configuration.
//! A model's id, which containers reference, is derived from the SHA-256 of
//! the file's bytes. Layout: `spec/model-format.md`.

use std::collections::BTreeMap;

use candle_core::DType;
use safetensors::tensor::Dtype;
use sha2::{Digest, Sha256};

use super::tensor_file::{f32_bytes, f32_tensor, parse, serialize};
use super::{ModelConfig, ModelError, ParamStore};

/// First line of the `vqz` metadata entry.
pub const MODEL_FORMAT_LINE: &str = "vqz-model 1";
/// Name of the tensor holding the serialised entropy priors.
pub const PRIOR_TENSOR: &str = "prior";
/// Model files larger than this are refused before parsing.
pub const MAX_MODEL_FILE_BYTES: usize = 256 << 20;

/// Everything one model file holds.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub name: String,
    pub version: String,
    pub config: ModelConfig,
    pub params: ParamStore,
    /// The serialised `entropy::Prior`, once fitted.
    pub prior: Option<Vec<u8>>,
    /// Per stage, the rate weight the model was trained with: stage `s` of
    /// its encoder picks the index `k` minimising
    /// `||r - e_k||^2 + rate_weights[s] * bits(k)` (empty or 0: nearest code).
    pub rate_weights: Vec<f32>,
}

/// Reads a model file from disk, at most one byte past
/// [`MAX_MODEL_FILE_BYTES`] (so [`ModelFile::from_bytes`] refuses a larger
/// file, or an endless one such as a device, without reading all of it).
pub fn read_model_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_MODEL_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The SHA-256 of a model file's bytes.
pub fn model_sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn check_label(what: &str, s: &str) -> Result<(), ModelError> {
    if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_control()) {
        return Err(ModelError::BadConfig(format!(
            "model {what} must be 1 to 64 printable characters, found {s:?}"
        )));
    }
    Ok(())
}

fn check_rate_weights(weights: &[f32], stages: usize) -> Result<(), ModelError> {
    if !weights.is_empty() && weights.len() != stages {
        return Err(ModelError::BadConfig(format!(
            "{} rate weights for {stages} stages",
            weights.len()
        )));
    }
    if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
        return Err(ModelError::BadConfig(format!(
            "rate weight {w} must be finite and non-negative"
        )));
    }
    Ok(())
}

impl ModelFile {
    /// Serialises to safetensors bytes. The same model always gives the
    /// same bytes (tensors in name order, one metadata entry).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        check_label("name", &self.name)?;
        check_label("version", &self.version)?;
        check_rate_weights(&self.rate_weights, self.config.stages)?;
        let mut tensors = BTreeMap::new();
        for (name, var) in self.params.iter() {
            tensors.insert(name.clone(), f32_bytes(var.as_tensor())?);
        }
        if let Some(prior) = &self.prior {
            tensors.insert(
                PRIOR_TENSOR.to_string(),
                (Dtype::U8, vec![prior.len()], prior.clone()),
            );
        }
        let weights: Vec<String> = self.rate_weights.iter().map(|w| w.to_string()).collect();
        serialize(
            &tensors,
            MODEL_FORMAT_LINE,
            &[
                ("name", self.name.clone()),
                ("version", self.version.clone()),
                ("config", self.config.to_text()),
                ("rate_weights", weights.join(",")),
            ],
        )
    }

    /// Parses and validates a model file: format line, configuration, every
    /// tensor's name, dtype and shape.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        if bytes.len() > MAX_MODEL_FILE_BYTES {
            return Err(ModelError::TooLarge {
                len: bytes.len(),
                max: MAX_MODEL_FILE_BYTES,
            });
        }
        let (st, lines) = parse(bytes, MODEL_FORMAT_LINE)?;
        let (mut name, mut version, mut config) = (None, None, None);
        let mut rate_weights = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (key, value) in &lines {
            if !seen.insert(key.as_str()) {
                return Err(ModelError::BadConfig(format!("metadata holds {key} twice")));
            }
            let value = value.as_str();
            match key.as_str() {
                "name" => name = Some(value.to_string()),
                "version" => version = Some(value.to_string()),
                "config" => config = Some(ModelConfig::from_text(value)?),
                "rate_weights" if !value.is_empty() => {
                    rate_weights = value
                        .split(',')
                        .map(|w| {
                            w.parse::<f32>().map_err(|_| {
                                ModelError::BadConfig(format!("rate weight {w:?} is not a number"))
                            })
                        })
                        .collect::<Result<_, _>>()?
                }
                _ => {} // later minor versions may add keys
            }
        }
        let missing = |k: &str| ModelError::BadConfig(format!("metadata lacks {k}"));
        let name = name.ok_or_else(|| missing("name"))?;
        let version = version.ok_or_else(|| missing("version"))?;
        let config = config.ok_or_else(|| missing("config"))?;
        check_label("name", &name)?;
        check_label("version", &version)?;
        let mut tensors = BTreeMap::new();
        let mut prior = None;
        for (tname, view) in st.tensors() {
            if tname == PRIOR_TENSOR {
                if view.dtype() != Dtype::U8 || view.shape().len() != 1 {
                    return Err(ModelError::WrongDType {
                        name: tname,
                        found: format!("{:?} {:?}", view.dtype(), view.shape()),
                    });
                }
                prior = Some(view.data().to_vec());
                continue;
            }
            let t = f32_tensor(&tname, &view)?;
            tensors.insert(tname, t);
        }
        check_rate_weights(&rate_weights, config.stages)?;
        let params = ParamStore::from_tensors(&config, tensors)?;
        for (n, v) in params.iter() {
            let finite = v
                .as_tensor()
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            if finite.iter().any(|x| !x.is_finite()) {
                return Err(ModelError::BadConfig(format!(
                    "tensor {n} holds NaN or infinity"
                )));
            }
        }
        Ok(Self {
            name,
            version,
            config,
            params,
            prior,
            rate_weights,
        })
    }
}
