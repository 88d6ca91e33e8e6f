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
//! So a refined plane never costs more bits (code length; the coded payload
//! may differ by the rounding to whole bytes) and never decodes worse than
//! the plain encoding. Only the encoder does this work: the decoder and the
//! format are unchanged.

use candle_core::{Device, Tensor, Var};

use crate::entropy::{CodeLengths, IndexGrid};
use crate::model::GRID_STRIDE;

use super::batch::{
    grids_from_network, grouped, network_from_grids, network_input, quantize_latents,
};
use super::pixels::{Planes, output_to_plane, padded};
use super::{CodecError, Model};

/// Refinement steps [`super::CompressOptions`] asks for by default.
pub const DEFAULT_REFINE_STEPS: u8 = 8;

/// How far latents move per unit of gradient of the squared pixel error
/// (pixels in [0, 1], summed over a plane).
const STEP_SIZE: f32 = 0.07;

/// The quantiser's rate weights are scaled by this while refining: the
/// moved latents otherwise drift toward costlier codes, which the
/// no-more-bits rule then rejects.
const RATE_SCALE: f32 = 1.5;

/// Refines `grids` (one per image, any mix of levels) of the images
/// `planes` with `steps` steps of the search described in the module
/// documentation. Returns grids of the same shapes.
pub(crate) fn refine_grids(
    model: &Model,
    planes: &[Planes],
    grids: Vec<IndexGrid>,
    steps: u8,
) -> Result<Vec<IndexGrid>, CodecError> {
    if steps == 0 {
        return Ok(grids);
    }
    let items: Vec<(&Planes, IndexGrid)> = planes.iter().zip(grids).collect();
    grouped(
        &items,
        |(p, g)| {
            (
                padded(p.geometry.width),
                padded(p.geometry.height),
                g.stages,
            )
        },
        |(p, _)| p.planes.len(),
        |(pw, ph, stages), group| {
            let images: Vec<&Planes> = group.iter().map(|(p, _)| *p).collect();
            let base = network_from_grids(group.iter().map(|(_, g)| g));
            let refined = refine_group(model, &images, base, stages, pw, ph, steps)?;
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

/// Refines the indices `base` (network order: plane, stage, cell) of
/// images padded to `pw x ph`.
fn refine_group(
    model: &Model,
    images: &[&Planes],
    base: Vec<u32>,
    stages: u8,
    pw: usize,
    ph: usize,
    steps: u8,
) -> Result<Vec<u32>, CodecError> {
    let x = network_input(images, pw, ph)?;
    let targets: Vec<(&[u8], u32, u32)> = images
        .iter()
        .flat_map(|p| {
            p.planes
                .iter()
                .map(|plane| (plane.as_slice(), p.geometry.width, p.geometry.height))
        })
        .collect();
    let mask = crop_mask(&targets, pw, ph)?;
    let (gw, gh) = (pw / GRID_STRIDE, ph / GRID_STRIDE);
    let per_plane = stages as usize * gw * gh;
    let lengths = model.prior.code_lengths();
    let bits = |flat: &[u32]| -> Result<Vec<f64>, CodecError> {
        flat.chunks(per_plane)
            .map(|plane| plane_bits(&lengths, plane, stages, gw, gh))
            .collect()
    };

    let mut z = model.net.encode_latents(&x)?;
    let budget = bits(&base)?;
    let (mut best_error, mut gradient) =
        decode_error(model, &base, &x, &mask, &targets, stages, true)?;
    let mut best = base;
    for step in 1..=steps {
        let g = gradient
            .take()
            .ok_or_else(|| CodecError::Internal("refinement lost its gradient".into()))?;
        z = (z - (g * f64::from(STEP_SIZE))?)?;
        let current = quantize_latents(model, &z, stages, RATE_SCALE)?;
        let (errors, g) = decode_error(model, &current, &x, &mask, &targets, stages, step < steps)?;
        gradient = g;
        let current_bits = bits(&current)?;
        for (q, ((e, b), cap)) in errors.iter().zip(&current_bits).zip(&budget).enumerate() {
            if *e < best_error[q] && *b <= *cap {
                best_error[q] = *e;
                let plane = q * per_plane..(q + 1) * per_plane;
                best[plane.clone()].copy_from_slice(&current[plane]);
            }
        }
    }
    Ok(best)
}

/// 1 on each plane's own pixels, 0 on the padding the decoder crops away.
fn crop_mask(targets: &[(&[u8], u32, u32)], pw: usize, ph: usize) -> Result<Tensor, CodecError> {
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
    targets: &[(&[u8], u32, u32)],
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

/// Code length in bits of one plane's indices `(stage, cell)` under the prior.
fn plane_bits(
    lengths: &CodeLengths,
    plane: &[u32],
    stages: u8,
    gw: usize,
    gh: usize,
) -> Result<f64, CodecError> {
    let cells = gw * gh;
    let at = |s: usize, c: usize| plane[s * cells + c] as u16;
    let mut total = 0.0;
    for s in 0..stages as usize {
        for c in 0..cells {
            let (y, xx) = (c / gw, c % gw);
            let left = (xx > 0).then(|| at(s, c - 1));
            let above = (y > 0).then(|| at(s, c - gw));
            let prev = (s > 0).then(|| at(s - 1, c));
            let table = lengths
                .bits(s as u8, left, above, prev)
                .ok_or_else(|| CodecError::Internal("prior lacks a stage".into()))?;
            total += f64::from(table[at(s, c) as usize]);
        }
    }
    Ok(total)
}
