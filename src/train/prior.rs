//! Fitting the entropy coder's integer priors to a trained model: encode a
//! set of images, count each index in its context (left and above
//! neighbours, and the previous stage's index at the same place), quantise
//! to integer tables. Also measures what each prior costs in bits.

use candle_core::{Device, Tensor};

use crate::codec::{self, Model};
use crate::entropy::{IndexGrid, Prior, PriorBuilder, cross_entropy_bits};
use crate::model::VqVae;

use super::{Dataset, TrainError};

/// How the context prior is built.
#[derive(Debug, Clone, Copy)]
pub struct PriorOptions {
    /// Classes a neighbour's index is reduced to (the most frequent indices
    /// get a class each, the rest share one).
    pub num_classes: u8,
    /// Observations a context needs before it gets its own table.
    pub min_count: u64,
    /// Pseudo-observations, spread like the stage's unigram, added to every
    /// context table.
    pub smoothing: f64,
}

impl Default for PriorOptions {
    fn default() -> Self {
        Self {
            num_classes: 16,
            min_count: 64,
            smoothing: 4.0,
        }
    }
}

/// Mean bits per image at each quality level, under three priors.
#[derive(Debug, Clone)]
pub struct PriorReport {
    pub images: usize,
    /// 49 x log2 K per stage for a 7x7 grid: no model of the indices.
    pub uniform_bits: Vec<f64>,
    /// Each stage's index frequencies, no context.
    pub unigram_bits: Vec<f64>,
    /// The context prior stored in the model.
    pub context_bits: Vec<f64>,
}

/// Encodes images `ids` of `data` with every stage of `model`, 256 at a time.
pub fn encode_dataset(
    model: &VqVae,
    data: &Dataset,
    ids: &[usize],
    penalties: Option<&[Tensor]>,
) -> Result<Vec<IndexGrid>, TrainError> {
    let stages = model.config().stages;
    let mut grids = Vec::with_capacity(ids.len());
    let n = data.width * data.height;
    for chunk in ids.chunks(super::images_per_pass(model, data)) {
        let mut v = Vec::with_capacity(chunk.len() * n);
        for &i in chunk {
            v.extend(data.image(i).iter().map(|&p| p as f32 / 255.0));
        }
        let x = Tensor::from_vec(v, (chunk.len(), data.height, data.width, 1), &Device::Cpu)?;
        let idx = model.encode_penalized(&x, stages, penalties)?;
        let (_, _, gh, gw) = idx.dims4()?;
        for row in idx.flatten_from(1)?.to_vec2::<u32>()? {
            let indices = row.into_iter().map(|i| i as u16).collect();
            grids.push(IndexGrid::new(
                gw as u32,
                gh as u32,
                1,
                stages as u8,
                indices,
            )?);
        }
    }
    Ok(grids)
}

/// Encodes images `ids` of `data` with every stage, as the codec does: each
/// index trades its distance against its code length under `model`'s own
/// context prior (with the model's rate weights). Fitting a prior to these
/// grids, rebuilding the model and encoding again brings the prior closer
/// to what the encoder actually writes.
pub fn encode_dataset_with_codec(
    model: &Model,
    data: &Dataset,
    ids: &[usize],
) -> Result<Vec<IndexGrid>, TrainError> {
    let mut grids = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(4096) {
        let images = chunk
            .iter()
            .map(|&i| {
                data.grey_image(i)
                    .ok_or_else(|| TrainError::BadData(format!("image {i} has the wrong size")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The plain choices at the top level: each lower level's are a
        // prefix of them (refined choices are not, and are not needed here).
        grids.extend(codec::encode_indices(model, &images, model.max_level(), 0)?);
    }
    Ok(grids)
}

/// Fits the context prior to `train` and measures it on `validation`.
pub fn fit_and_report(
    num_symbols: &[u16],
    train: &[IndexGrid],
    validation: &[IndexGrid],
    options: PriorOptions,
) -> Result<(Prior, PriorReport), TrainError> {
    let prior = fit_prior(num_symbols, train, options)?;
    let report = prior_report(num_symbols, train, &prior, validation)?;
    Ok((prior, report))
}

/// One round of re-fitting `model`'s prior to the indices its own codec
/// picks (see [`encode_dataset_with_codec`]) for images `train` of `data`,
/// measured on images `validation`.
pub fn refit_prior_to_codec(
    model: &Model,
    data: &Dataset,
    train: &[usize],
    validation: &[usize],
    options: PriorOptions,
) -> Result<(Prior, PriorReport), TrainError> {
    let num_symbols = vec![model.config().codebook_size as u16; model.config().stages];
    fit_and_report(
        &num_symbols,
        &encode_dataset_with_codec(model, data, train)?,
        &encode_dataset_with_codec(model, data, validation)?,
        options,
    )
}

fn builder_for(
    num_symbols: &[u16],
    grids: &[IndexGrid],
    num_classes: u8,
) -> Result<PriorBuilder, TrainError> {
    let classes = PriorBuilder::class_maps_from_unigram(num_symbols, num_classes, grids)?;
    let mut b = PriorBuilder::new(num_symbols, classes, num_classes)?;
    for g in grids {
        b.observe(g)?;
    }
    Ok(b)
}

/// Fits the context prior to `grids` (all stages of a model's codes).
pub fn fit_prior(
    num_symbols: &[u16],
    grids: &[IndexGrid],
    options: PriorOptions,
) -> Result<Prior, TrainError> {
    Ok(builder_for(num_symbols, grids, options.num_classes)?
        .build(options.min_count, options.smoothing)?)
}

/// Mean bits per image at every level under the uniform, unigram (fitted on
/// `train`) and `context` priors, measured on `eval`.
pub fn prior_report(
    num_symbols: &[u16],
    train: &[IndexGrid],
    context: &Prior,
    eval: &[IndexGrid],
) -> Result<PriorReport, TrainError> {
    // A prior whose every context falls back to the stage's unigram table.
    let unigram = builder_for(num_symbols, train, 1)?.build(u64::MAX, 0.0)?;
    let stages = num_symbols.len();
    let mut report = PriorReport {
        images: eval.len(),
        uniform_bits: Vec::new(),
        unigram_bits: vec![0.0; stages],
        context_bits: vec![0.0; stages],
    };
    let mut uniform = 0.0;
    for (s, &k) in num_symbols.iter().enumerate() {
        let per_stage = eval
            .first()
            .map(|g| (g.grid_width * g.grid_height) as f64 * g.planes as f64)
            .unwrap_or(0.0);
        uniform += per_stage * (k as f64).log2();
        report.uniform_bits.push(uniform);
        for g in eval {
            let t = g.first_stages(s as u8 + 1)?;
            report.unigram_bits[s] += cross_entropy_bits(&unigram, &t);
            report.context_bits[s] += cross_entropy_bits(context, &t);
        }
    }
    let n = eval.len().max(1) as f64;
    for v in report
        .unigram_bits
        .iter_mut()
        .chain(report.context_bits.iter_mut())
    {
        *v /= n;
    }
    Ok(report)
}
