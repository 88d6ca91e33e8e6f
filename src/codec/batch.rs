//! The batched core of the codec: many images through the network at once
//! (grouped by padded size), entropy coding across frames with rayon.

use std::ops::Range;

use candle_core::{Device, Tensor};
use image::DynamicImage;
use rayon::prelude::*;

use crate::entropy::{Cell, CodeLengths, IndexGrid, decode_grid, encode_grid};
use crate::format::{CodingMode, Geometry, Limits};
use crate::model::{GRID_STRIDE, VqVae, squared_distances};

use super::pixels::{
    Planes, image_from_planes, network_input, padded, plane_refs, planes_of, psnr_db, write_tile,
};
use super::refine::{refinable, refine_grids};
use super::{CodecError, Model, Quality};

/// Distances (latent cells x codebook entries) the quantiser computes in
/// one matrix product: 2^23 floats, 32 MiB (a few times that while they
/// are computed and copied out).
const DISTANCE_FLOATS: usize = 1 << 23;

/// Pixels of one latent cell.
const CELL_PIXELS: usize = GRID_STRIDE * GRID_STRIDE;

/// Pixels the network sees for an image: its planes, padded to the grid.
pub(super) fn network_pixels(g: Geometry) -> usize {
    g.channels as usize * padded(g.width) * padded(g.height)
}

/// One image, coded.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub geometry: Geometry,
    /// Quality level: residual stages coded.
    pub level: u8,
    pub coding_mode: CodingMode,
    pub payload: Vec<u8>,
}

/// Runs `f` on groups of items that share a key, in batches of at most
/// `budget` by `weight` (or of one item that weighs more), and returns
/// results in input order.
pub(super) fn grouped<K: Ord + Copy, T, R>(
    items: &[T],
    budget: usize,
    key: impl Fn(&T) -> K,
    weight: impl Fn(&T) -> usize,
    mut f: impl FnMut(K, &[&T]) -> Result<Vec<R>, CodecError>,
) -> Result<Vec<R>, CodecError> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| key(&items[i]));
    let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let mut start = 0;
    while start < order.len() {
        let k = key(&items[order[start]]);
        let mut end = start;
        let mut pixels = 0;
        while end < order.len()
            && key(&items[order[end]]) == k
            && (end == start || pixels + weight(&items[order[end]]) <= budget)
        {
            pixels += weight(&items[order[end]]);
            end += 1;
        }
        let refs: Vec<&T> = order[start..end].iter().map(|&i| &items[i]).collect();
        for (r, &i) in f(k, &refs)?.into_iter().zip(&order[start..end]) {
            out[i] = Some(r);
        }
        start = end;
    }
    out.into_iter()
        .map(|r| r.ok_or_else(|| CodecError::Internal("batch lost an item".into())))
        .collect()
}

/// Rate-distortion optimised residual quantisation of latents `z`
/// `(planes, gh, gw, D)`: stage by stage, each plane's cells in raster order
/// pick the index minimising `||r - e_k||^2 + w_s * bits(k)`, where
/// `bits` is the index's code length under the model's context prior given
/// the choices already made and `w_s` the model's rate weight of stage `s`
/// times `rate_scale` (0: plain nearest-code quantisation). Returns indices
/// in network order (plane, stage, cell) and each plane's code length in
/// bits under the prior.
pub(super) fn quantize_latents(
    model: &Model,
    lengths: &CodeLengths,
    z: &Tensor,
    stages: u8,
    rate_scale: f32,
) -> Result<(Vec<u32>, Vec<f64>), CodecError> {
    let weights: Vec<f32> = model
        .rate_weights()
        .iter()
        .map(|w| w * rate_scale)
        .collect();
    quantize_with_prior(&model.net, &weights, lengths, z, usize::from(stages))
}

/// [`quantize_latents`] with the codebooks of `net` and the rate weights
/// `rate_weights` (per stage; missing stages pick the nearest code): the
/// codec's index choice for a network in training.
pub(crate) fn quantize_with_prior(
    net: &VqVae,
    rate_weights: &[f32],
    lengths: &CodeLengths,
    z: &Tensor,
    stages: usize,
) -> Result<(Vec<u32>, Vec<f64>), CodecError> {
    let (planes, gh, gw, d) = z.dims4()?;
    let cells = gh * gw;
    let mut residual = z.reshape((planes * cells, d))?;
    let mut out = vec![0u32; planes * stages * cells];
    let mut plane_bits = vec![0f64; planes];
    for s in 0..stages {
        let codebook = net.codebook(s).as_tensor();
        let k = codebook.dim(0)?;
        let rate_weight = rate_weights.get(s).copied().unwrap_or(0.0);
        // Distances of `n` residual rows from `row` to every codebook entry.
        let distances = |row: usize, n: usize| -> Result<Vec<f32>, CodecError> {
            Ok(squared_distances(&residual.narrow(0, row, n)?, codebook)?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        // Picks stage `s` for cells `range` of plane `p`, given the
        // distances of those cells' rows.
        let choose = |p: usize,
                      plane_out: &mut [u32],
                      plane_bits: &mut f64,
                      range: Range<usize>,
                      dist: &[f32]|
         -> Result<(), CodecError> {
            for c in range.clone() {
                let (y, xx) = (c / gw, c % gw);
                let cell = Cell {
                    stage: s as u8,
                    y,
                    x: xx,
                    grid_width: gw,
                    grid_height: gh,
                };
                let at =
                    |stage: usize, y: usize, x: usize| plane_out[stage * cells + y * gw + x] as u16;
                let row = &dist[(c - range.start) * k..][..k];
                let bits = lengths.bits(cell, at).ok_or_else(|| {
                    CodecError::Internal(format!("prior lacks stage {s} of plane {p}"))
                })?;
                let best = if rate_weight > 0.0 {
                    argmin(
                        row.iter()
                            .zip(bits.iter())
                            .map(|(d, b)| d + rate_weight * b),
                    )
                } else {
                    argmin(row.iter().copied())
                };
                plane_out[s * cells + c] = best as u32;
                *plane_bits += f64::from(bits[best]);
            }
            Ok(())
        };
        // The distance matrix is built for at most `rows` cells at a time:
        // for whole planes, chosen in parallel, or for a larger plane in
        // equal parts in raster order (equal, so that no part is a row or
        // two, which the matrix product would sum in another order).
        let rows = (DISTANCE_FLOATS / k.max(1)).max(1);
        let blocks: Vec<(Range<usize>, Range<usize>)> = if cells <= rows {
            let per_block = rows / cells.max(1);
            (0..planes)
                .step_by(per_block)
                .map(|p| (p..(p + per_block).min(planes), 0..cells))
                .collect()
        } else {
            let parts = cells.div_ceil(rows);
            (0..planes)
                .flat_map(|p| {
                    (0..parts).map(move |i| (p..p + 1, cells * i / parts..cells * (i + 1) / parts))
                })
                .collect()
        };
        for (block, range) in blocks {
            let dist = distances(block.start * cells + range.start, block.len() * range.len())?;
            out[block.start * stages * cells..block.end * stages * cells]
                .par_chunks_mut(stages * cells)
                .zip(plane_bits[block.clone()].par_iter_mut())
                .zip(dist.par_chunks(range.len() * k))
                .enumerate()
                .try_for_each(|(i, ((plane_out, plane_bits), dist))| {
                    choose(block.start + i, plane_out, plane_bits, range.clone(), dist)
                })?;
        }
        let chosen: Vec<u32> = (0..planes)
            .flat_map(|p| out[p * stages * cells + s * cells..][..cells].to_vec())
            .collect();
        let ids = Tensor::from_vec(chosen, planes * cells, &Device::Cpu)?;
        residual = (residual - codebook.index_select(&ids, 0)?)?;
    }
    Ok((out, plane_bits))
}

fn argmin(values: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::INFINITY);
    for (i, v) in values.enumerate() {
        if v < best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// One index grid per item from indices in network order (plane, stage,
/// cell), for items of `channels[i]` planes each; grids are ordered
/// (stage, plane, cell).
pub(super) fn grids_from_network(
    flat: &[u32],
    channels: &[u8],
    stages: u8,
    gw: usize,
    gh: usize,
) -> Result<Vec<IndexGrid>, CodecError> {
    let cells = gw * gh;
    let per_plane = stages as usize * cells;
    let mut grids = Vec::with_capacity(channels.len());
    let mut plane_no = 0;
    for &np in channels {
        let np = np as usize;
        let mut indices = Vec::with_capacity(np * per_plane);
        for s in 0..stages as usize {
            for q in 0..np {
                let base = (plane_no + q) * per_plane + s * cells;
                let plane = flat
                    .get(base..base + cells)
                    .ok_or_else(|| CodecError::Internal("index count mismatch".into()))?;
                indices.extend(plane.iter().map(|&i| i as u16));
            }
        }
        plane_no += np;
        grids.push(IndexGrid::new(
            gw as u32, gh as u32, np as u8, stages, indices,
        )?);
    }
    Ok(grids)
}

/// The inverse of [`grids_from_network`]: the grids' indices in network
/// order (plane, stage, cell). The grids share their shape but for planes.
pub(super) fn network_from_grids<'g>(grids: impl Iterator<Item = &'g IndexGrid>) -> Vec<u32> {
    let mut flat = Vec::new();
    for grid in grids {
        let (np, stages) = (grid.planes as usize, grid.stages as usize);
        let cells = (grid.grid_width * grid.grid_height) as usize;
        for q in 0..np {
            for s in 0..stages {
                let base = (s * np + q) * cells;
                flat.extend(
                    grid.indices[base..base + cells]
                        .iter()
                        .map(|&i| u32::from(i)),
                );
            }
        }
    }
    flat
}

/// Encodes images to index grids with `stages` stages.
pub(crate) fn encode_grids(
    model: &Model,
    planes: &[Planes],
    stages: u8,
) -> Result<Vec<IndexGrid>, CodecError> {
    let lengths = model.prior.code_lengths();
    let pass = model.pass_pixels();
    grouped(
        planes,
        pass,
        |p| (padded(p.geometry.width), padded(p.geometry.height)),
        |p| network_pixels(p.geometry),
        |(pw, ph), group| {
            let x = network_input(&plane_refs(group), pw, ph)?;
            let z = model.net.encode_latents_tiled(&x, pass / CELL_PIXELS)?;
            let (flat, _) = quantize_latents(model, &lengths, &z, stages, 1.0)?;
            let channels: Vec<u8> = group.iter().map(|p| p.planes.len() as u8).collect();
            grids_from_network(&flat, &channels, stages, pw / GRID_STRIDE, ph / GRID_STRIDE)
        },
    )
}

/// Decodes index grids to images of the given geometries.
pub(crate) fn reconstruct(
    model: &Model,
    items: &[(Geometry, IndexGrid)],
) -> Result<Vec<DynamicImage>, CodecError> {
    let pass = model.pass_pixels();
    grouped(
        items,
        pass,
        |(g, grid)| (padded(g.width), padded(g.height), grid.stages),
        |(g, _)| network_pixels(*g),
        |(pw, ph, stages), group| {
            let (gw, gh) = (pw / GRID_STRIDE, ph / GRID_STRIDE);
            for (_, grid) in group {
                if grid.grid_width as usize != gw || grid.grid_height as usize != gh {
                    return Err(CodecError::Internal("grid does not match geometry".into()));
                }
            }
            let flat = network_from_grids(group.iter().map(|(_, grid)| grid));
            let count = flat.len() / (stages as usize * gw * gh);
            let idx = Tensor::from_vec(flat, (count, stages as usize, gh, gw), &Device::Cpu)?;
            // Each plane's size, in network order.
            let sizes: Vec<(u32, u32)> = group
                .iter()
                .flat_map(|(g, _)| std::iter::repeat_n((g.width, g.height), g.channels as usize))
                .collect();
            let mut planes: Vec<Vec<u8>> = sizes
                .iter()
                .map(|&(w, h)| vec![0; w as usize * h as usize])
                .collect();
            model
                .net
                .decode_tiled(&idx, pass / CELL_PIXELS, |y0, x0, pixels| {
                    let (_, th, tw, _) = pixels.dims4()?;
                    let values = pixels.flatten_all()?.to_vec1::<f32>()?;
                    for ((plane, &size), v) in planes
                        .iter_mut()
                        .zip(&sizes)
                        .zip(values.chunks_exact(th * tw))
                    {
                        write_tile(plane, size, v, (x0, y0), (tw, th));
                    }
                    Ok(())
                })?;
            let mut planes = planes.into_iter();
            group
                .iter()
                .map(|(g, _)| {
                    let own: Vec<Vec<u8>> = planes.by_ref().take(g.channels as usize).collect();
                    image_from_planes(*g, &own)
                })
                .collect()
        },
    )
}

fn entropy_code(
    model: &Model,
    geometry: Geometry,
    grid: &IndexGrid,
) -> Result<EncodedFrame, CodecError> {
    let (coding_mode, payload) = encode_grid(&model.prior, grid)?;
    Ok(EncodedFrame {
        geometry,
        level: grid.stages,
        coding_mode,
        payload,
    })
}

/// A [`Quality`] checked against a model: a fixed level is one the model
/// has, and the default is resolved to its level.
#[derive(Debug, Clone, Copy)]
enum Plan {
    Level(u8),
    MaxBytes(usize),
    TargetPsnr(f64),
}

impl Plan {
    fn resolve(quality: Quality, model: &Model) -> Result<Self, CodecError> {
        let max = model.max_level();
        Ok(match quality {
            Quality::Default => Plan::Level(model.default_level()),
            Quality::Level(l) if l == 0 || l > max => {
                return Err(CodecError::BadOption(format!(
                    "quality level {l} does not exist; this model has levels 1 to {max}"
                )));
            }
            Quality::Level(l) => Plan::Level(l),
            Quality::MaxBytes(n) => Plan::MaxBytes(n),
            Quality::TargetPsnr(db) if db.is_nan() => {
                return Err(CodecError::BadOption(
                    "the target PSNR is not a number".into(),
                ));
            }
            Quality::TargetPsnr(db) => Plan::TargetPsnr(db),
        })
    }
}

/// Encodes images (8-bit grey, RGB or RGBA) at the requested quality, with
/// `refine_steps` steps of decoder-in-the-loop refinement ([`refine_grids`])
/// at the level chosen for each image. `standalone_size` is the size of a
/// one-frame file around a frame, for [`Quality::MaxBytes`]. Returns each
/// image's frame, the index grid it codes, and whether it meets the
/// quality asked for (false where no level reaches a target PSNR or fits a
/// byte budget).
pub(crate) fn encode_images(
    model: &Model,
    images: &[DynamicImage],
    quality: Quality,
    refine_steps: u8,
    standalone_size: &(dyn Fn(&EncodedFrame) -> usize + Sync),
) -> Result<Vec<(EncodedFrame, IndexGrid, bool)>, CodecError> {
    let max = model.max_level();
    let planes = images
        .iter()
        .map(planes_of)
        .collect::<Result<Vec<_>, _>>()?;
    let plan = Plan::resolve(quality, model)?;
    let stages = match plan {
        Plan::Level(l) => l,
        Plan::MaxBytes(_) | Plan::TargetPsnr(_) => max,
    };
    // Refuse what the container cannot hold before any network work.
    for p in &planes {
        p.geometry
            .validate(&Limits::DEFAULT)
            .map_err(CodecError::UnsupportedImage)?;
        // Only the symbol count depends on the level.
        p.geometry
            .check_frame(&Limits::DEFAULT, model.grid_stride_log2(), stages)
            .map_err(|why| {
                CodecError::UnsupportedImage(format!("{why}; use a lower level or a smaller image"))
            })?;
    }
    // The level of each image is chosen on the plain encoding. Refinement
    // then never worsens a plane's error, and a refined frame is kept only
    // if its payload is no longer than the plain one's, so a level that
    // reaches a target PSNR or fits a byte budget still does.
    let grids = encode_grids(model, &planes, stages)?;
    // Which images reach a target PSNR on their plain encoding.
    let mut reached = vec![true; images.len()];
    let levels: Vec<u8> = match plan {
        Plan::Level(l) => vec![l; images.len()],
        Plan::MaxBytes(budget) => grids
            .par_iter()
            .zip(&planes)
            .map(|(g, p)| {
                // The largest level that fits; level 1 if none does.
                let mut best = 1;
                for l in 2..=max {
                    let f = entropy_code(model, p.geometry, &g.first_stages(l)?)?;
                    if standalone_size(&f) <= budget {
                        best = l;
                    }
                }
                Ok(best)
            })
            .collect::<Result<_, CodecError>>()?,
        Plan::TargetPsnr(target) => {
            // Decode every level of every image, keep the smallest level
            // whose reconstruction reaches the target (the highest if none).
            let mut chosen = vec![max; images.len()];
            let mut settled = vec![false; images.len()];
            for l in 1..=max {
                let todo: Vec<usize> = (0..images.len()).filter(|&i| !settled[i]).collect();
                let items = todo
                    .iter()
                    .map(|&i| Ok((planes[i].geometry, grids[i].first_stages(l)?)))
                    .collect::<Result<Vec<_>, CodecError>>()?;
                let recon = reconstruct(model, &items)?;
                for (&i, r) in todo.iter().zip(&recon) {
                    if psnr_db(images[i].as_bytes(), r.as_bytes()) >= target {
                        chosen[i] = l;
                        settled[i] = true;
                    }
                }
            }
            reached = settled;
            chosen
        }
    };
    let plain = grids
        .iter()
        .zip(&levels)
        .map(|(g, &l)| Ok(g.first_stages(l)?))
        .collect::<Result<Vec<_>, CodecError>>()?;
    // Refinement runs the decoder and its gradient on whole images, so an
    // image larger than a network pass is kept plain.
    let mut refined: Vec<Option<IndexGrid>> = vec![None; planes.len()];
    if refine_steps > 0 {
        let (todo, todo_levels): (Vec<usize>, Vec<u8>) = (0..planes.len())
            .filter(|&i| refinable(model, planes[i].geometry))
            .map(|i| (i, levels[i]))
            .unzip();
        let subset: Vec<&Planes> = todo.iter().map(|&i| &planes[i]).collect();
        let grids = refine_grids(model, &subset, &todo_levels, refine_steps)?;
        for (i, grid) in todo.into_iter().zip(grids) {
            refined[i] = Some(grid);
        }
    }
    let coded: Vec<(EncodedFrame, IndexGrid)> = plain
        .into_par_iter()
        .zip(refined)
        .zip(&planes)
        .map(|((plain, refined), p)| {
            let plain_frame = entropy_code(model, p.geometry, &plain)?;
            let Some(refined) = refined else {
                return Ok((plain_frame, plain));
            };
            // Code length and coded bytes differ a little (ANS start-up,
            // rounding to bytes): never let refinement make a payload longer.
            let frame = entropy_code(model, p.geometry, &refined)?;
            Ok(if frame.payload.len() <= plain_frame.payload.len() {
                (frame, refined)
            } else {
                (plain_frame, plain)
            })
        })
        .collect::<Result<_, CodecError>>()?;
    // Whether each frame meets the quality asked for, decided on the frame
    // itself: refinement can bring an image that missed the budget or the
    // target at every level within it.
    let met: Vec<bool> = match plan {
        Plan::Level(_) => reached,
        Plan::MaxBytes(budget) => coded
            .iter()
            .map(|(frame, _)| standalone_size(frame) <= budget)
            .collect(),
        Plan::TargetPsnr(target) => {
            let missed: Vec<usize> = (0..coded.len()).filter(|&i| !reached[i]).collect();
            let items: Vec<(Geometry, IndexGrid)> = missed
                .iter()
                .map(|&i| (planes[i].geometry, coded[i].1.clone()))
                .collect();
            for (&i, r) in missed.iter().zip(reconstruct(model, &items)?) {
                reached[i] = psnr_db(images[i].as_bytes(), r.as_bytes()) >= target;
            }
            reached
        }
    };
    Ok(coded
        .into_iter()
        .zip(met)
        .map(|((frame, grid), met)| (frame, grid, met))
        .collect())
}

/// Images of frames, in order. A payload that does not decode ends the
/// batch there: the images of the frames before it come back, with the
/// bad frame's position in `frames` and its error.
pub(crate) type DecodedFrames = (Vec<DynamicImage>, Option<(usize, CodecError)>);

/// Decodes frames' payloads to images (see [`DecodedFrames`]).
pub(crate) fn decode_frames(
    model: &Model,
    frames: &[(Geometry, u8, CodingMode, &[u8])],
    grid_stride_log2: u8,
) -> Result<DecodedFrames, CodecError> {
    let grids: Vec<Result<_, CodecError>> = frames
        .par_iter()
        .map(|&(g, stages, mode, payload)| {
            let (gw, gh) = g.grid_dims(grid_stride_log2);
            let grid = decode_grid(&model.prior, mode, payload, gw, gh, g.channels, stages)?;
            Ok((g, grid))
        })
        .collect();
    let mut items = Vec::with_capacity(grids.len());
    let mut failure = None;
    for (k, grid) in grids.into_iter().enumerate() {
        match grid {
            Ok(item) => items.push(item),
            Err(e) => {
                failure = Some((k, e));
                break;
            }
        }
    }
    let images = if items.is_empty() {
        Vec::new()
    } else {
        reconstruct(model, &items)?
    };
    Ok((images, failure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_order_and_grid_order_round_trip() {
        // Two images of 3 and 1 planes, 2 stages, a 3x2 grid: every index
        // distinct, so any mix-up of planes, stages or cells shows.
        let (gw, gh, stages) = (3, 2, 2u8);
        let flat: Vec<u32> = (0..4 * 2 * 6).collect();
        let grids = grids_from_network(&flat, &[3, 1], stages, gw, gh).unwrap();
        // Network order (plane, stage, cell); grid order (stage, plane, cell).
        assert_eq!(grids[0].indices[6..12], [12, 13, 14, 15, 16, 17]);
        assert_eq!(grids[0].indices[18..24], [6, 7, 8, 9, 10, 11]);
        assert_eq!(
            grids[1].indices,
            [36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47]
        );
        assert_eq!(network_from_grids(grids.iter()), flat);
    }
}
