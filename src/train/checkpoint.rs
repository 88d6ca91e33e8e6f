//! Training checkpoints: the weights, Adam's moments, the EMA codebook state
//! and how far training got, in one safetensors file written atomically.

use std::collections::BTreeMap;

use candle_core::Tensor;

use crate::model::tensor_file::{f32_bytes, f32_tensor, parse, serialize};
use crate::model::{ModelConfig, ModelError, ParamStore};

pub const CHECKPOINT_FORMAT_LINE: &str = "vqz-checkpoint 1";

/// What a checkpoint holds besides the weights.
pub struct Checkpoint {
    pub config: ModelConfig,
    pub params: ParamStore,
    pub epochs_done: usize,
    pub step: u64,
    /// Extra named tensors: optimizer moments, EMA state.
    pub state: BTreeMap<String, Tensor>,
    /// For a run that picks indices as a model file's codec does
    /// ([`Trainer::price_with`](super::Trainer::price_with)): that file's
    /// SHA-256, in hex. It must be given again to resume.
    pub priced_by: Option<String>,
    /// The run's options, `name=value;...`
    /// ([`TrainOptions::to_text`](super::TrainOptions::to_text)); a resumed
    /// run must have the same. Absent in checkpoints of older versions.
    pub options: Option<String>,
    /// The training data's shape and pixel digest, once training started; a
    /// resumed run must train on the same.
    pub data: Option<String>,
}

impl Checkpoint {
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let mut tensors = BTreeMap::new();
        for (n, v) in self.params.iter() {
            tensors.insert(format!("param.{n}"), f32_bytes(v.as_tensor())?);
        }
        for (n, t) in &self.state {
            tensors.insert(format!("state.{n}"), f32_bytes(t)?);
        }
        let mut lines = vec![
            ("epochs_done", self.epochs_done.to_string()),
            ("step", self.step.to_string()),
            ("config", self.config.to_text()),
        ];
        if let Some(source) = &self.priced_by {
            lines.push(("priced_by", source.clone()));
        }
        if let Some(options) = &self.options {
            lines.push(("options", options.clone()));
        }
        if let Some(data) = &self.data {
            lines.push(("data", data.clone()));
        }
        serialize(&tensors, CHECKPOINT_FORMAT_LINE, &lines)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let (st, lines) = parse(bytes, CHECKPOINT_FORMAT_LINE)?;
        let (mut epochs_done, mut step, mut config) = (None, None, None);
        let (mut priced_by, mut options, mut data) = (None, None, None);
        for (k, v) in &lines {
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| ModelError::BadConfig(format!("checkpoint {k} = {v:?}")))
            };
            match k.as_str() {
                "epochs_done" => epochs_done = Some(num(v)? as usize),
                "step" => step = Some(num(v)?),
                "config" => config = Some(ModelConfig::from_text(v)?),
                "priced_by" => priced_by = Some(v.clone()),
                "options" => options = Some(v.clone()),
                "data" => data = Some(v.clone()),
                _ => {}
            }
        }
        let missing = |k: &str| ModelError::BadConfig(format!("checkpoint lacks {k}"));
        let config = config.ok_or_else(|| missing("config"))?;
        let mut params = BTreeMap::new();
        let mut state = BTreeMap::new();
        for (name, view) in st.tensors() {
            let t = f32_tensor(&name, &view)?;
            if let Some(n) = name.strip_prefix("param.") {
                params.insert(n.to_string(), t);
            } else if let Some(n) = name.strip_prefix("state.") {
                state.insert(n.to_string(), t);
            }
        }
        Ok(Self {
            params: ParamStore::from_tensors(&config, params)?,
            config,
            epochs_done: epochs_done.ok_or_else(|| missing("epochs_done"))?,
            step: step.ok_or_else(|| missing("step"))?,
            state,
            priced_by,
            options,
            data,
        })
    }
}
