//! The safetensors plumbing shared by model files and training checkpoints:
//! f32 tensors to and from little-endian bytes, and one `vqz` metadata entry
//! of `key: value` lines under a format line.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::ModelError;

/// A tensor ready to serialise: dtype, shape, raw little-endian bytes.
pub(crate) type RawTensor = (Dtype, Vec<usize>, Vec<u8>);

/// An f32 tensor's bytes, little-endian, row-major.
pub(crate) fn f32_bytes(t: &Tensor) -> Result<RawTensor, ModelError> {
    let bytes = t
        .flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    Ok((Dtype::F32, t.dims().to_vec(), bytes))
}

/// A stored tensor as an f32 candle tensor; other dtypes are an error.
pub(crate) fn f32_tensor(name: &str, view: &TensorView<'_>) -> Result<Tensor, ModelError> {
    if view.dtype() != Dtype::F32 {
        return Err(ModelError::WrongDType {
            name: name.to_string(),
            found: format!("{:?}", view.dtype()),
        });
    }
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Tensor::from_vec(
        values,
        view.shape().to_vec(),
        &Device::Cpu,
    )?)
}

/// Serialises tensors (in name order) with `lines` under `format_line` as
/// the single `vqz` metadata entry, so equal contents give equal bytes.
pub(crate) fn serialize(
    tensors: &BTreeMap<String, RawTensor>,
    format_line: &str,
    lines: &[(&str, String)],
) -> Result<Vec<u8>, ModelError> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, (dtype, shape, bytes)) in tensors {
        let view = TensorView::new(*dtype, shape.clone(), bytes)
            .map_err(|e| ModelError::Safetensors(e.to_string()))?;
        views.push((name.clone(), view));
    }
    let mut meta = format!("{format_line}\n");
    for (k, v) in lines {
        meta.push_str(&format!("{k}: {v}\n"));
    }
    safetensors::serialize(views, Some(HashMap::from([("vqz".to_string(), meta)])))
        .map_err(|e| ModelError::Safetensors(e.to_string()))
}

/// Parses safetensors bytes whose `vqz` metadata starts with `format_line`;
/// returns the tensors and the `key: value` lines after it.
pub(crate) fn parse<'a>(
    bytes: &'a [u8],
    format_line: &str,
) -> Result<(SafeTensors<'a>, Vec<(String, String)>), ModelError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Safetensors(e.to_string()))?;
    let (_, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| ModelError::Safetensors(e.to_string()))?;
    let meta = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get("vqz"))
        .ok_or_else(|| ModelError::NotAModel("safetensors file without vqz metadata".into()))?;
    let mut lines = meta.lines();
    if lines.next() != Some(format_line) {
        return Err(ModelError::NotAModel(format!(
            "metadata does not start with {format_line:?}"
        )));
    }
    let pairs = lines
        .map(|line| {
            line.split_once(": ")
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| ModelError::BadConfig(format!("bad metadata line {line:?}")))
        })
        .collect::<Result<_, _>>()?;
    Ok((st, pairs))
}
