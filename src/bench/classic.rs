//! The classical codecs the image crate has in-process: PNG (lossless, best
//! compression) and JPEG at a sweep of qualities.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ExtendedColorType, ImageEncoder, ImageFormat};
use rayon::prelude::*;

use super::report::{Row, Timing};
use super::{BenchError, BenchOptions, Distortion, Images, Progress, per_second, timed_median};

#[derive(Debug, Clone, Copy)]
enum Setting {
    Png,
    Jpeg(u8),
}

impl Setting {
    fn codec(self) -> &'static str {
        match self {
            Setting::Png => "PNG",
            Setting::Jpeg(_) => "JPEG",
        }
    }

    fn label(self) -> String {
        match self {
            Setting::Png => "lossless, best".into(),
            Setting::Jpeg(q) => format!("q={q}"),
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            Setting::Png => ImageFormat::Png,
            Setting::Jpeg(_) => ImageFormat::Jpeg,
        }
    }

    fn encode(self, image: &DynamicImage) -> Result<Vec<u8>, image::ImageError> {
        let mut out = Vec::new();
        let (w, h) = (image.width(), image.height());
        match self {
            Setting::Png => {
                PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive)
                    .write_image(image.as_bytes(), w, h, ExtendedColorType::L8)?
            }
            Setting::Jpeg(q) => JpegEncoder::new_with_quality(&mut out, q).write_image(
                image.as_bytes(),
                w,
                h,
                ExtendedColorType::L8,
            )?,
        }
        Ok(out)
    }
}

/// PNG and the JPEG sweep, every image of `images`.
pub(crate) fn measure(
    images: &Images,
    options: &BenchOptions,
    progress: &dyn Progress,
) -> Result<Vec<Row>, BenchError> {
    let settings = std::iter::once(Setting::Png)
        .chain(options.jpeg_qualities.iter().map(|&q| Setting::Jpeg(q)));
    settings
        .map(|s| measure_setting(s, images, options.repeats, progress))
        .collect()
}

fn measure_setting(
    setting: Setting,
    images: &Images,
    repeats: usize,
    progress: &dyn Progress,
) -> Result<Row, BenchError> {
    let n = images.len();
    let repeats = repeats.max(1);
    progress.start(
        &format!("{} {}", setting.codec(), setting.label()),
        (2 * repeats * n) as u64,
    );
    let image_error = |source| BenchError::Image {
        codec: setting.codec().into(),
        source,
    };
    let (encode_time, files) = timed_median(repeats, || {
        let files = images
            .images
            .par_iter()
            .map(|img| setting.encode(img))
            .collect::<Result<Vec<_>, _>>()
            .map_err(image_error)?;
        progress.advance(n as u64);
        Ok(files)
    })?;
    let (decode_time, decoded) = timed_median(repeats, || {
        let decoded = files
            .par_iter()
            .map(|f| image::load_from_memory_with_format(f, setting.format()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(image_error)?;
        progress.advance(n as u64);
        Ok(decoded)
    })?;
    let mut distortion = Distortion::default();
    for (i, image) in decoded.iter().enumerate() {
        distortion.add(images.pixels(i), image.to_luma8().as_raw());
    }
    Ok(Row::measured(
        setting.codec(),
        &setting.label(),
        n,
        files.iter().map(Vec::len).sum(),
        None,
        &distortion,
        per_second(n, encode_time),
        per_second(n, decode_time),
        Timing::InProcess,
    ))
}
