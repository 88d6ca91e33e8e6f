//! Training checkpoints: the weights, Adam's moments, the EMA codebook state
//! and how far training got, in one safetensors file written atomically.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

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
}

fn f32_bytes(t: &Tensor) -> Result<Vec<u8>, ModelError> {
    Ok(t.flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect())
}

impl Checkpoint {
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let mut buffers: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
        for (n, v) in self.params.iter() {
            buffers.insert(
                format!("param.{n}"),
                (v.dims().to_vec(), f32_bytes(v.as_tensor())?),
            );
        }
        for (n, t) in &self.state {
            buffers.insert(format!("state.{n}"), (t.dims().to_vec(), f32_bytes(t)?));
        }
        let mut views = Vec::new();
        for (n, (shape, bytes)) in &buffers {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map_err(|e| ModelError::Safetensors(e.to_string()))?;
            views.push((n.clone(), view));
        }
        let meta = format!(
            "{CHECKPOINT_FORMAT_LINE}\nepochs_done: {}\nstep: {}\nconfig: {}\n",
            self.epochs_done,
            self.step,
            self.config.to_text()
        );
        safetensors::serialize(views, Some(HashMap::from([("vqz".to_string(), meta)])))
            .map_err(|e| ModelError::Safetensors(e.to_string()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let st =
            SafeTensors::deserialize(bytes).map_err(|e| ModelError::Safetensors(e.to_string()))?;
        let (_, md) = SafeTensors::read_metadata(bytes)
            .map_err(|e| ModelError::Safetensors(e.to_string()))?;
        let meta = md
            .metadata()
            .as_ref()
            .and_then(|m| m.get("vqz"))
            .ok_or_else(|| ModelError::NotAModel("not a vqz checkpoint".into()))?;
        let mut lines = meta.lines();
        if lines.next() != Some(CHECKPOINT_FORMAT_LINE) {
            return Err(ModelError::NotAModel("not a vqz checkpoint".into()));
        }
        let (mut epochs_done, mut step, mut config) = (None, None, None);
        for line in lines {
            let Some((k, v)) = line.split_once(": ") else {
                continue;
            };
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| ModelError::BadConfig(format!("checkpoint {k} = {v:?}")))
            };
            match k {
                "epochs_done" => epochs_done = Some(num(v)? as usize),
                "step" => step = Some(num(v)?),
                "config" => config = Some(ModelConfig::from_text(v)?),
                _ => {}
            }
        }
        let missing = |k: &str| ModelError::BadConfig(format!("checkpoint lacks {k}"));
        let config = config.ok_or_else(|| missing("config"))?;
        let mut params = BTreeMap::new();
        let mut state = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(ModelError::WrongDType {
                    name,
                    found: format!("{:?}", view.dtype()),
                });
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let t = Tensor::from_vec(values, view.shape().to_vec(), &Device::Cpu)?;
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
        })
    }
}
