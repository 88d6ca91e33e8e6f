//! Decoder-in-the-loop refinement of the encoder's choices.
//!
//! The encoder network maps an image to latents and the quantiser picks,
//! cell by cell, codebook vectors near them. Near in latent space is not
//! what the decoder needs most: the decoder turns the chosen vectors into
//! pixels, and a slightly different latent often decodes closer to the
//! image. Refinement searches for such latents by gradient descent through
//! the decoder, with the quantiser in the loop (the straight-through
//! estimator training uses):
//!
//! 1. quantise the latents (rate-distortion optimised, as always) and decode;
//! 2. take the gradient of the pixel error with respect to the decoded
//!    vectors and move the latents against it;
//! 3. repeat, and keep for each image plane the candidate with the smallest
//!    pixel error among those whose code length under the prior is no
//!    longer than the plain encoding's.
//!
//! So a refined plane never has a longer code under the prior nor decodes
//! worse than the plain encoding. Code length and coded bytes differ a
//! little (the ANS coder's start and the rounding to whole bytes), so the
//! codec also keeps an image's plain frame if its refined payload comes out
//! longer: refinement never makes a frame larger. Only the encoder does this
//! work: the decoder and the format are unchanged.

use candle_core::{Device, Tensor, Var};

use crate::entropy::{CodeLengths, IndexGrid};
use crate::format::Geometry;
use crate::model::GRID_STRIDE;

use super::batch::{grids_from_network, grouped, network_pixels, quantize_latents};
use super::pixels::{PlaneRef, Planes, network_input, output_to_plane, padded, plane_refs};
use super::{CodecError, Model};

/// Refinement steps [`super::CompressOptions`] asks for by default.
pub const DEFAULT_REFINE_STEPS: u8 = 8;

/// How far latents move per unit of gradient of the squared pixel error
/// (pixels in [0, 1], summed over a plane).
const STEP_SIZE: f64 = 0.07;

/// The quantiser's rate weights are scaled by this while refining: the
/// moved latents otherwise drift toward costlier codes, which the
/// no-more-bits rule then rejects.
const RATE_SCALE: f32 = 1.5;

/// Fewest latent cells a refinement batch holds; smaller batches are
/// padded with copies of their planes. The gradient's matrix products take
/// other summation orders for very few rows (a matrix-vector path for one
/// row, a short-product kernel when rows x columns <= 256), so without the
/// padding an image of a few cells, refined alone, could round differently
/// from the same image refined in a batch and pick other indices.
const MIN_BATCH_CELLS: usize = 64;

/// Whether an image of geometry `g` is refined: up to one network pass of
/// pixels. Such an image alone needs about 500 MB with the shipped model,
/// as the decoder's gradient about doubles what the pass holds.
pub(crate) fn refinable(model: &Model, g: Geometry) -> bool {
    network_pixels(g) <= model.pass_pixels()
}

/// Refines the encoding of each image of `planes` at its level `levels[i]`
/// with `steps` steps of the search described in the module documentation.
/// Returns one grid per image, of `levels[i]` stages.
pub(crate) fn refine_grids(
    model: &Model,
    planes: &[&Planes],
    levels: &[u8],
    steps: u8,
) -> Result<Vec<IndexGrid>, CodecError> {
    let lengths = model.prior.code_lengths();
    let items: Vec<(&Planes, u8)> = planes.iter().copied().zip(levels.iter().copied()).collect();
    grouped(
        &items,
        // Small images are refined in batches of half a pass (about
        // 250 MB), larger ones alone.
        model.pass_pixels() / 2,
        |(p, level)| (padded(p.geometry.width), padded(p.geometry.height), *level),
        |(p, _)| network_pixels(p.geometry),
        |(pw, ph, stages), group| {
            let images: Vec<&Planes> = group.iter().map(|(p, _)| *p).collect();
            let refined = refine_group(model, &lengths, &images, stages, pw, ph, steps)?;
            let channels: Vec<u8> = images.iter().map(|p| p.planes.len() as u8).collect();
            grids_from_network(
                &refined,
                &channels,
                stages,
                pw / GRID_STRIDE,
                ph / GRID_STRIDE,
            )
        },
    )
}

/// The refined indices (network order: plane, stage, cell) of the planes
/// of `images`, all padded to `pw x ph` and coded with `stages` stages.
fn refine_group(
    model: &Model,
    lengths: &CodeLengths,
    images: &[&Planes],
    stages: u8,
    pw: usize,
    ph: usize,
    steps: u8,
) -> Result<Vec<u32>, CodecError> {
    let (gw, gh) = (pw / GRID_STRIDE, ph / GRID_STRIDE);
    let mut targets = plane_refs(images);
    let real = targets.len();
    pad_batch(&mut targets, gw * gh);
    let x = network_input(&targets, pw, ph)?;
    let mask = crop_mask(&targets, pw, ph)?;
    let per_plane = stages as usize * gw * gh;

    // The plain encoding is the first candidate, and its code lengths the
    // budget every later one must stay within.
    let mut z = model.net.encode_latents(&x)?.detach();
    let (mut best, budget) = quantize_latents(model, lengths, &z, stages, 1.0)?;
    let (mut best_error, mut gradient) =
        decode_error(model, &best, &x, &mask, &targets, stages, steps > 0)?;
    let mut step = 0;
    while let Some(g) = gradient {
        step += 1;
        z = (z - (g * STEP_SIZE)?)?;
        let (current, bits) = quantize_latents(model, lengths, &z, stages, RATE_SCALE)?;
        let errors;
        (errors, gradient) =
            decode_error(model, &current, &x, &mask, &targets, stages, step < steps)?;
        for q in 0..real {
            if errors[q] < best_error[q] && bits[q] <= budget[q] {
                best_error[q] = errors[q];
                let plane = q * per_plane..(q + 1) * per_plane;
                best[plane.clone()].copy_from_slice(&current[plane]);
            }
        }
    }
    best.truncate(real * per_plane);
    Ok(best)
}

/// Repeats the planes of `targets` (of `cells` latent cells each) until
/// the batch holds at least [`MIN_BATCH_CELLS`] cells.
fn pad_batch(targets: &mut Vec<PlaneRef>, cells: usize) {
    let real = targets.len();
    let mut i = 0;
    while real > 0 && targets.len() * cells < MIN_BATCH_CELLS {
        targets.push(targets[i % real]);
        i += 1;
    }
}

/// 1 on each plane's own pixels, 0 on the padding the decoder crops away.
fn crop_mask(targets: &[PlaneRef], pw: usize, ph: usize) -> Result<Tensor, CodecError> {
    let mut mask = Vec::with_capacity(targets.len() * pw * ph);
    for &(_, w, h) in targets {
        for y in 0..ph {
            for xx in 0..pw {
                mask.push(if y < h as usize && xx < w as usize {
                    1f32
                } else {
                    0f32
                });
            }
        }
    }
    Ok(Tensor::from_vec(
        mask,
        (targets.len(), ph, pw, 1),
        &Device::Cpu,
    )?)
}

/// Decodes `indices` (network order) and returns each plane's squared
/// error in 8-bit units, as the decoder's rounded output has it, and, if
/// asked, the gradient of the (unrounded) squared error with respect to
/// the decoded latents `(planes, gh, gw, D)`.
fn decode_error(
    model: &Model,
    indices: &[u32],
    x: &Tensor,
    mask: &Tensor,
    targets: &[PlaneRef],
    stages: u8,
    want_gradient: bool,
) -> Result<(Vec<f64>, Option<Tensor>), CodecError> {
    let (planes, ph, pw, _) = x.dims4()?;
    let (gh, gw) = (ph / GRID_STRIDE, pw / GRID_STRIDE);
    let idx = Tensor::from_vec(
        indices.to_vec(),
        (planes, stages as usize, gh, gw),
        &Device::Cpu,
    )?;
    let zq = Var::from_tensor(&model.net.dequantize(&idx)?)?;
    let out = model.net.decode_latents(zq.as_tensor())?;
    let values = out.flatten_all()?.to_vec1::<f32>()?;
    let errors = targets
        .iter()
        .enumerate()
        .map(|(q, &(target, w, h))| {
            let decoded = output_to_plane(&values[q * ph * pw..(q + 1) * ph * pw], w, h);
            decoded
                .iter()
                .zip(target)
                .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                .sum()
        })
        .collect();
    if !want_gradient {
        return Ok((errors, None));
    }
    let loss = ((out - x)? * mask)?.sqr()?.sum_all()?;
    let gradient = loss
        .backward()?
        .remove(zq.as_tensor())
        .ok_or_else(|| CodecError::Internal("no gradient reached the latents".into()))?;
    Ok((errors, Some(gradient)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4x4 plane is one latent cell: alone, the gradient's products would
    /// take short-product paths that sum in another order than in a batch.
    #[test]
    fn a_one_cell_image_gets_the_same_gradient_alone_and_in_a_batch() {
        let model = Model::default_model().unwrap();
        let lengths = model.prior.code_lengths();
        let pixels: Vec<u8> = (0..16).map(|i| (i * 37 % 256) as u8).collect();
        let other: Vec<u8> = (0..16).map(|i| (i * 91 % 256) as u8).collect();
        let gradient = |mut targets: Vec<PlaneRef>| {
            pad_batch(&mut targets, 1);
            let x = network_input(&targets, 4, 4).unwrap();
            let mask = crop_mask(&targets, 4, 4).unwrap();
            let z = model.net.encode_latents(&x).unwrap();
            let (idx, _) = quantize_latents(&model, &lengths, &z, 3, 1.0).unwrap();
            let (_, g) = decode_error(&model, &idx, &x, &mask, &targets, 3, true).unwrap();
            g.unwrap()
                .get(0)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let alone = gradient(vec![(&pixels, 4, 4)]);
        let mut batch = vec![(pixels.as_slice(), 4, 4)];
        batch.extend(std::iter::repeat_n((other.as_slice(), 4, 4), 99));
        let in_batch = gradient(batch);
        assert!(alone.iter().any(|&v| v != 0.0));
        assert_eq!(alone, in_batch);
    }
}
