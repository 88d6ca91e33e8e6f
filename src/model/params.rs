//! Named weights of a model. The tensor names and shapes listed by
//! [`expected_shapes`] are the model file format (`spec/model-format.md`).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::{ModelConfig, ModelError};

/// The convolution layers of the network, in forward order:
/// `(name, kernel, in_channels, out_channels)`.
pub fn conv_layers(c: &ModelConfig) -> Vec<(&'static str, usize, usize, usize)> {
    let (lo, hi, d) = (c.channels_low, c.channels_high, c.latent_dim);
    vec![
        ("enc.in", 3, 4, hi),
        ("enc.down", 1, 4 * hi, lo),
        ("enc.res1", 3, lo, lo),
        ("enc.res2", 3, lo, lo),
        ("enc.out", 1, lo, d),
        ("dec.in", 3, d, lo),
        ("dec.res1", 3, lo, lo),
        ("dec.res2", 3, lo, lo),
        ("dec.up", 1, lo, 4 * hi),
        ("dec.hi", 3, hi, hi),
        ("dec.out", 1, hi, 4),
    ]
}

/// Name of the codebook tensor of residual stage `stage` (0-based).
pub fn codebook_name(stage: usize) -> String {
    format!("vq.codebook.{stage}")
}

/// Every tensor a model with this configuration has, with its shape.
pub fn expected_shapes(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let mut shapes = Vec::new();
    for (name, k, cin, cout) in conv_layers(c) {
        shapes.push((format!("{name}.weight"), vec![k, k, cin, cout]));
        shapes.push((format!("{name}.bias"), vec![cout]));
    }
    for s in 0..c.stages {
        shapes.push((codebook_name(s), vec![c.codebook_size, c.latent_dim]));
    }
    shapes
}

/// The weights of one model, by name.
#[derive(Debug, Clone)]
pub struct ParamStore {
    vars: BTreeMap<String, Var>,
}

impl ParamStore {
    /// Fresh weights: He-normal convolutions, zero biases, small uniform
    /// codebooks (training re-seeds them from encoder outputs). The same seed
    /// gives the same weights.
    pub fn init(config: &ModelConfig, seed: u64) -> Result<Self, ModelError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut vars = BTreeMap::new();
        for (name, shape) in expected_shapes(config) {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if name.ends_with(".weight") {
                let fan_in = (shape[0] * shape[1] * shape[2]) as f32;
                let normal = Normal::new(0.0f32, (2.0 / fan_in).sqrt())
                    .map_err(|e| ModelError::BadConfig(e.to_string()))?;
                (0..n).map(|_| normal.sample(&mut rng)).collect()
            } else if name.ends_with(".bias") {
                vec![0.0; n]
            } else {
                let bound = 1.0 / config.codebook_size as f32;
                let uniform = rand_distr::Uniform::new(-bound, bound)
                    .map_err(|e| ModelError::BadConfig(e.to_string()))?;
                (0..n).map(|_| uniform.sample(&mut rng)).collect()
            };
            let t = Tensor::from_vec(values, shape, &Device::Cpu)?;
            vars.insert(name, Var::from_tensor(&t)?);
        }
        Ok(Self { vars })
    }

    /// Takes loaded tensors, checking that exactly the expected names are
    /// present with the expected shapes and as f32.
    pub fn from_tensors(
        config: &ModelConfig,
        mut tensors: BTreeMap<String, Tensor>,
    ) -> Result<Self, ModelError> {
        let mut vars = BTreeMap::new();
        for (name, shape) in expected_shapes(config) {
            let t = tensors
                .remove(&name)
                .ok_or_else(|| ModelError::MissingTensor(name.clone()))?;
            if t.dims() != shape.as_slice() {
                return Err(ModelError::WrongShape {
                    name,
                    expected: shape,
                    found: t.dims().to_vec(),
                });
            }
            if t.dtype() != DType::F32 {
                return Err(ModelError::WrongDType {
                    name,
                    found: format!("{:?}", t.dtype()),
                });
            }
            vars.insert(name, Var::from_tensor(&t)?);
        }
        if let Some(name) = tensors.keys().next() {
            return Err(ModelError::UnexpectedTensor(name.clone()));
        }
        Ok(Self { vars })
    }

    pub fn get(&self, name: &str) -> Result<&Var, ModelError> {
        self.vars
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.vars.iter()
    }

    /// All weights except the codebooks (which EMA training updates itself).
    pub fn network_vars(&self) -> Vec<Var> {
        self.vars
            .iter()
            .filter(|(n, _)| !n.starts_with("vq."))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Deep copy: the copy's tensors do not share storage with `self`.
    pub fn deep_clone(&self) -> Result<Self, ModelError> {
        let mut vars = BTreeMap::new();
        for (n, v) in &self.vars {
            vars.insert(n.clone(), Var::from_tensor(&v.as_tensor().copy()?)?);
        }
        Ok(Self { vars })
    }

    pub fn num_parameters(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }
}
