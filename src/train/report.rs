//! What a finished model achieves on a set of images, level by level:
//! quality through the real codec, codebook usage, and bits per image under
//! the uniform, unigram and context priors. `vqz evaluate` prints this.

use image::DynamicImage;

use crate::codec::{self, CodecError, CompressOptions, Decoder, Encoder, Model, Quality};
use crate::entropy::{IndexGrid, cross_entropy_bits, decode_grid};
use crate::format::FileIndex;

use super::Dataset;

/// Figures of one quality level.
#[derive(Debug, Clone)]
pub struct LevelReport {
    pub level: u8,
    /// PSNR (peak 255) of the mean squared error over all images.
    pub psnr_of_mean_mse_db: f64,
    /// Mean of the per-image PSNRs (a lossless image counts as 100 dB).
    pub mean_psnr_db: f64,
    /// `cells x log2 K` per stage: the indices with no model at all.
    pub uniform_bits: f64,
    /// Under each stage's unigram table (a class-context prior's fallback;
    /// `None` for a learned prior, which has none).
    pub unigram_bits: Option<f64>,
    /// Under the context prior (the ideal code length).
    pub context_bits: f64,
    /// What the ANS payloads actually take, in bits per image.
    pub payload_bits: f64,
    /// Standalone one-image files, in bytes per image.
    pub file_bytes: f64,
    /// Per stage up to this level: distinct indices used and perplexity.
    pub codes_used: Vec<usize>,
    pub perplexity: Vec<f64>,
}

fn stage_usage(grids: &[IndexGrid], stage: usize, k: usize) -> (usize, f64) {
    let mut hist = vec![0u64; k];
    for g in grids {
        let per = (g.grid_width * g.grid_height) as usize * g.planes as usize;
        for &i in &g.indices[stage * per..(stage + 1) * per] {
            if let Some(h) = hist.get_mut(i as usize) {
                *h += 1;
            }
        }
    }
    let total: u64 = hist.iter().sum();
    let entropy: f64 = hist
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total.max(1) as f64;
            -p * p.log2()
        })
        .sum();
    (hist.iter().filter(|&&c| c > 0).count(), entropy.exp2())
}

/// The index grids of every frame of `stream`, as the decoder reads them.
fn stream_grids(model: &Model, stream: &[u8]) -> Result<Vec<IndexGrid>, CodecError> {
    let index = FileIndex::from_bytes(stream)?;
    let stride = index.header().grid_stride_log2;
    (0..index.frame_count())
        .map(|i| {
            let frame = index.frame(i)?;
            let h = frame.header;
            let (gw, gh) = h.geometry.grid_dims(stride);
            let planes = h.geometry.channels;
            Ok(decode_grid(
                model.prior(),
                h.coding_mode,
                &frame.payload,
                gw,
                gh,
                planes,
                h.stages,
            )?)
        })
        .collect()
}

/// Evaluates `model` on every image of `data` at every level, encoding with
/// `refine_steps` steps of refinement (see [`CompressOptions`]).
pub fn evaluate_model(
    model: &Model,
    data: &Dataset,
    refine_steps: u8,
) -> Result<Vec<LevelReport>, CodecError> {
    let images: Vec<DynamicImage> = (0..data.len())
        .map(|i| {
            data.grey_image(i)
                .ok_or_else(|| CodecError::Internal("bad dataset image".into()))
        })
        .collect::<Result<_, _>>()?;
    let n = images.len().max(1) as f64;
    let k = model.config().codebook_size;
    let unigram = model.prior().fallback_only();
    let mut reports = Vec::new();
    for level in 1..=model.max_level() {
        let mut enc = Encoder::new(
            Vec::new(),
            model,
            CompressOptions {
                quality: Quality::Level(level),
                embed_model: false,
                refine_steps,
            },
        );
        let mut payload = 0usize;
        let mut file_bytes = 0usize;
        let mut stream_frames = 0usize;
        let mut last = None;
        for chunk in images.chunks(1024) {
            for s in enc.write_images(chunk)? {
                payload += s.payload_bytes;
                // A standalone file: this frame, final, plus the file header.
                file_bytes += s.final_frame_bytes as usize;
                stream_frames += s.frame_bytes as usize;
                last = Some(s);
            }
        }
        // The last frame goes out as the stream's final frame.
        if let Some(s) = last {
            stream_frames -= (s.frame_bytes - s.final_frame_bytes) as usize;
        }
        let stream = enc.finish()?;
        let grids = stream_grids(model, &stream)?;
        let cells = grids
            .first()
            .map(|g| (g.grid_width * g.grid_height) as f64 * g.planes as f64)
            .unwrap_or(0.0);
        // The stream is the file header and the frames, the last one marked
        // final; a standalone file is the header and one (final) frame.
        let per_file_overhead = stream.len().saturating_sub(stream_frames);
        let mut se = 0.0;
        let mut psnr_sum = 0.0;
        // A stream it has just written: no sample or work budget.
        let dec = Decoder::new(&stream[..], &[model])?
            .with_max_samples(u64::MAX)
            .with_max_work(u64::MAX);
        for (d, orig) in dec.zip(&images) {
            let d = d?;
            let m = codec::mse(orig.as_bytes(), d.image.as_bytes());
            se += m;
            psnr_sum += codec::psnr_db_from_mse(m).min(100.0);
        }
        let (mut used, mut ppl) = (Vec::new(), Vec::new());
        for s in 0..level as usize {
            let (u, p) = stage_usage(&grids, s, k);
            used.push(u);
            ppl.push(p);
        }
        reports.push(LevelReport {
            level,
            psnr_of_mean_mse_db: codec::psnr_db_from_mse(se / n),
            mean_psnr_db: psnr_sum / n,
            uniform_bits: cells * level as f64 * (k as f64).log2(),
            unigram_bits: unigram.as_ref().map(|unigram| {
                grids
                    .iter()
                    .map(|g| cross_entropy_bits(unigram, g))
                    .sum::<f64>()
                    / n
            }),
            context_bits: grids
                .iter()
                .map(|g| cross_entropy_bits(model.prior(), g))
                .sum::<f64>()
                / n,
            payload_bits: payload as f64 * 8.0 / n,
            file_bytes: file_bytes as f64 / n + per_file_overhead as f64,
            codes_used: used,
            perplexity: ppl,
        });
    }
    Ok(reports)
}
