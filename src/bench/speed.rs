//! `vqz bench --speed`: images per second of the network alone at batch
//! 256 and batch 1, of the whole codec (one digit including model load, as
//! the command line does it, and all digits as one stream), next to PNG.

use std::fmt::Write as _;
use std::io::Cursor;
use std::time::Duration;

use candle_core::{Device, Tensor};
use image::{DynamicImage, ImageFormat};
use rayon::prelude::*;

use crate::codec::{self, CodecError, CompressOptions, Decoder, Encoder, Model};
use crate::train::Dataset;

use super::{BenchError, Images, Progress, cores, per_second, timed_median};

/// The large network batch measured.
pub const BATCH: usize = 256;

/// One measured figure.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeedRow {
    pub what: String,
    pub images_per_s: f64,
    /// Median wall time of one run.
    pub run_ms: f64,
    pub images_per_run: usize,
}

/// All figures of a speed run.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeedReport {
    pub rows: Vec<SpeedRow>,
    pub repeats: usize,
    pub cores: usize,
    pub level: u8,
    /// Refinement steps of the codec rows.
    pub refine_steps: u8,
}

impl SpeedReport {
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "# vqz bench --speed\n\n{} CPU cores; median of {} runs; network stages and codec level: {}; \
             codec refinement steps: {}.\n\n\
             | what | images/s | ms per run | images per run |\n|---|---:|---:|---:|\n",
            self.cores, self.repeats, self.level, self.refine_steps
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {:.1} | {:.2} | {} |",
                r.what, r.images_per_s, r.run_ms, r.images_per_run
            );
        }
        s.push_str(
            "\nNetwork rows time the VQ-VAE alone (encoder and nearest-code quantiser, or \
             dequantiser and decoder) on tensors already in memory. \"One digit\" rows include \
             loading the model, reading or writing the PNG and the container, as `vqz compress \
             digit.png` and `vqz decompress digit.vqz` do (process start-up excluded). Stream rows \
             code every digit into one multi-frame stream and back. PNG is the image crate at \
             best compression, one call per image, images spread over the cores.\n",
        );
        s
    }
}

/// Measures speed on the images of `data` (the network rows use the first
/// [`BATCH`] of them), each figure the median of `repeats` runs.
/// `load_model` is what the command line does to get its model.
pub fn run(
    load_model: &dyn Fn() -> Result<Model, CodecError>,
    data: &Dataset,
    repeats: usize,
    refine_steps: u8,
    progress: &dyn Progress,
) -> Result<SpeedReport, BenchError> {
    let repeats = repeats.max(1);
    let images = Images::from_dataset(data)?;
    let model = load_model()?;
    let net = model.network();
    let level = model.default_level();
    // The network rows quantise to as many stages as the codec rows code.
    let stages = usize::from(level);
    let (h, w) = (images.height as usize, images.width as usize);
    let batch = images.len().min(BATCH);
    let n = images.len();
    let mut rows = Vec::new();
    let mut add = |what: String, images_per_run: usize, time: Duration| {
        rows.push(SpeedRow {
            what,
            images_per_s: per_second(images_per_run, time),
            run_ms: time.as_secs_f64() * 1e3,
            images_per_run,
        });
    };
    progress.start("speed", 8 * repeats as u64);

    let floats: Vec<f32> = (0..batch)
        .flat_map(|i| images.pixels(i).iter().map(|&p| f32::from(p) / 255.0))
        .collect();
    let x = Tensor::from_vec(floats, (batch, h, w, 1), &Device::Cpu).map_err(CodecError::from)?;
    let singles: Vec<Tensor> = (0..batch)
        .map(|i| x.narrow(0, i, 1))
        .collect::<Result<_, _>>()
        .map_err(CodecError::from)?;

    let (t, indices) = median_of(repeats, progress, || {
        Ok(net.encode(&x, stages).map_err(CodecError::from)?)
    })?;
    add(format!("network encode, batch {batch}"), batch, t);
    let (t, _) = median_of(repeats, progress, || {
        for one in &singles {
            net.encode(one, stages).map_err(CodecError::from)?;
        }
        Ok(())
    })?;
    add("network encode, batch 1".into(), batch, t);
    let (t, _) = median_of(repeats, progress, || {
        Ok(net.decode(&indices).map_err(CodecError::from)?)
    })?;
    add(format!("network decode, batch {batch}"), batch, t);
    let single_indices: Vec<Tensor> = (0..batch)
        .map(|i| indices.narrow(0, i, 1))
        .collect::<Result<_, _>>()
        .map_err(CodecError::from)?;
    let (t, _) = median_of(repeats, progress, || {
        for one in &single_indices {
            net.decode(one).map_err(CodecError::from)?;
        }
        Ok(())
    })?;
    add("network decode, batch 1".into(), batch, t);

    // One digit, as the command line does it: load the model, read the PNG,
    // compress; load the model, decompress, write the PNG.
    let options = CompressOptions {
        quality: codec::Quality::Level(level),
        embed_model: false,
        refine_steps,
    };
    let digit_png = png_bytes(&images.images[0])?;
    let (t, file) = median_of(repeats, progress, || {
        let model = load_model()?;
        let digit = image::load_from_memory_with_format(&digit_png, ImageFormat::Png)
            .map_err(|source| image_error("PNG", source))?;
        Ok(codec::compress(&model, &digit, &options)?)
    })?;
    add("compress one digit (model load included)".into(), 1, t);
    let (t, _) = median_of(repeats, progress, || {
        let model = load_model()?;
        let back = codec::decompress(&file, &model)?;
        png_bytes(&back)
    })?;
    add("decompress one digit (model load included)".into(), 1, t);

    let (t, stream) = median_of(repeats, progress, || {
        let mut enc = Encoder::new(Vec::new(), &model, options);
        for chunk in images.images.chunks(1024) {
            enc.write_images(chunk)?;
        }
        Ok(enc.finish()?)
    })?;
    add(format!("compress {n} digits, one stream"), n, t);
    let (t, _) = median_of(repeats, progress, || {
        // A stream it has just written: no sample or work budget.
        let mut dec = Decoder::new(&stream[..], &[&model])?
            .with_max_samples(u64::MAX)
            .with_max_work(u64::MAX);
        let mut count = 0;
        loop {
            let batch = dec.next_batch(1024)?;
            if batch.is_empty() {
                break;
            }
            count += batch.len();
        }
        Ok(count)
    })?;
    add(format!("decompress {n} digits, one stream"), n, t);

    let (t, pngs) = timed_median(repeats, || {
        images
            .images
            .par_iter()
            .map(png_bytes)
            .collect::<Result<Vec<_>, _>>()
    })?;
    add(format!("PNG encode {n} digits (image crate)"), n, t);
    let (t, _) = timed_median(repeats, || {
        pngs.par_iter()
            .map(|p| {
                image::load_from_memory_with_format(p, ImageFormat::Png)
                    .map_err(|source| image_error("PNG", source))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    add(format!("PNG decode {n} digits (image crate)"), n, t);

    Ok(SpeedReport {
        rows,
        repeats,
        cores: cores(),
        level,
        refine_steps,
    })
}

fn image_error(codec: &str, source: image::ImageError) -> BenchError {
    BenchError::Image {
        codec: codec.into(),
        source,
    }
}

/// A digit as a PNG file, best compression as in the rate-distortion bench.
fn png_bytes(image: &DynamicImage) -> Result<Vec<u8>, BenchError> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut out = Cursor::new(Vec::new());
    let luma = image.to_luma8();
    PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive)
        .write_image(
            luma.as_raw(),
            luma.width(),
            luma.height(),
            image::ExtendedColorType::L8,
        )
        .map_err(|source| image_error("PNG", source))?;
    Ok(out.into_inner())
}

fn median_of<T>(
    repeats: usize,
    progress: &dyn Progress,
    pass: impl FnMut() -> Result<T, BenchError>,
) -> Result<(Duration, T), BenchError> {
    let out = timed_median(repeats, pass)?;
    progress.advance(repeats as u64);
    Ok(out)
}
