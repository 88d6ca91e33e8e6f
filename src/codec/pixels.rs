//! Between images and what the network sees: 8-bit planes, padded to a
//! multiple of the grid stride, as floats in [0, 1]; and back.

use candle_core::{Device, Tensor};
use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};

use crate::format::Geometry;
use crate::model::GRID_STRIDE;

use super::CodecError;

/// What [`to_supported`] changed to make an image codable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// 16-bit or floating-point samples were reduced to 8 bits.
    To8Bit,
    /// Grey with alpha became RGBA (the container has 1, 3 or 4 channels).
    GreyAlphaToRgba,
}

impl std::fmt::Display for Conversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conversion::To8Bit => {
                write!(f, "converted to 8 bits per sample (vqz codes 8-bit images)")
            }
            Conversion::GreyAlphaToRgba => {
                write!(
                    f,
                    "grey+alpha converted to RGBA (vqz codes grey, RGB or RGBA)"
                )
            }
        }
    }
}

/// Converts an image to one vqz codes natively (8-bit grey, RGB or RGBA),
/// saying what changed. Native images pass through untouched.
pub fn to_supported(image: DynamicImage) -> (DynamicImage, Vec<Conversion>) {
    match image {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => {
            (image, vec![])
        }
        DynamicImage::ImageLumaA8(_) => (
            DynamicImage::ImageRgba8(image.to_rgba8()),
            vec![Conversion::GreyAlphaToRgba],
        ),
        DynamicImage::ImageLuma16(_) => (
            DynamicImage::ImageLuma8(image.to_luma8()),
            vec![Conversion::To8Bit],
        ),
        DynamicImage::ImageLumaA16(_) => (
            DynamicImage::ImageRgba8(image.to_rgba8()),
            vec![Conversion::To8Bit, Conversion::GreyAlphaToRgba],
        ),
        DynamicImage::ImageRgb16(_) | DynamicImage::ImageRgb32F(_) => (
            DynamicImage::ImageRgb8(image.to_rgb8()),
            vec![Conversion::To8Bit],
        ),
        _ => (
            DynamicImage::ImageRgba8(image.to_rgba8()),
            vec![Conversion::To8Bit],
        ),
    }
}

/// An image split into 8-bit planes (one per channel).
pub(crate) struct Planes {
    pub geometry: Geometry,
    pub planes: Vec<Vec<u8>>,
}

/// One plane of an image: its pixels, width and height.
pub(crate) type PlaneRef<'a> = (&'a [u8], u32, u32);

/// Every plane of `images`, in order.
pub(crate) fn plane_refs<'a>(images: &[&'a Planes]) -> Vec<PlaneRef<'a>> {
    images
        .iter()
        .flat_map(|p| {
            p.planes
                .iter()
                .map(|plane| (plane.as_slice(), p.geometry.width, p.geometry.height))
        })
        .collect()
}

/// Planes padded to `pw x ph`, as the network's input `(planes, ph, pw, 1)`.
pub(crate) fn network_input(
    planes: &[PlaneRef],
    pw: usize,
    ph: usize,
) -> Result<Tensor, CodecError> {
    let mut input = Vec::with_capacity(planes.len() * pw * ph);
    for &(plane, w, h) in planes {
        plane_to_input(plane, w, h, &mut input);
    }
    Ok(Tensor::from_vec(
        input,
        (planes.len(), ph, pw, 1),
        &Device::Cpu,
    )?)
}

pub(crate) fn planes_of(image: &DynamicImage) -> Result<Planes, CodecError> {
    let (w, h) = (image.width(), image.height());
    if w == 0 || h == 0 {
        return Err(CodecError::UnsupportedImage(format!(
            "image is {w}x{h}, empty"
        )));
    }
    let (channels, raw): (u8, &[u8]) = match image {
        DynamicImage::ImageLuma8(i) => (1, i.as_raw()),
        DynamicImage::ImageRgb8(i) => (3, i.as_raw()),
        DynamicImage::ImageRgba8(i) => (4, i.as_raw()),
        other => {
            return Err(CodecError::UnsupportedImage(format!(
                "{:?} images are not coded directly; convert with codec::to_supported first",
                other.color()
            )));
        }
    };
    let c = channels as usize;
    let planes = (0..c)
        .map(|p| raw.iter().skip(p).step_by(c).copied().collect())
        .collect();
    Ok(Planes {
        geometry: Geometry {
            width: w,
            height: h,
            channels,
        },
        planes,
    })
}

/// Side rounded up to the grid stride.
pub(crate) fn padded(side: u32) -> usize {
    (side as usize).div_ceil(GRID_STRIDE) * GRID_STRIDE
}

/// A plane as floats in [0, 1], padded to a multiple of the grid stride by
/// repeating the last row and column (which the decoder crops away).
pub(crate) fn plane_to_input(plane: &[u8], width: u32, height: u32, out: &mut Vec<f32>) {
    let (w, h) = (width as usize, height as usize);
    let (pw, ph) = (padded(width), padded(height));
    for y in 0..ph {
        let row = &plane[y.min(h - 1) * w..][..w];
        for x in 0..pw {
            out.push(row[x.min(w - 1)] as f32 / 255.0);
        }
    }
}

/// The network's output `(ph x pw)` cropped to `width x height` and rounded to 8 bits.
pub(crate) fn output_to_plane(values: &[f32], width: u32, height: u32) -> Vec<u8> {
    let mut out = vec![0; width as usize * height as usize];
    write_tile(
        &mut out,
        (width, height),
        values,
        (0, 0),
        (padded(width), padded(height)),
    );
    out
}

/// Writes the network's output for a tile of `tw x th` pixels, whose top
/// left is at column `x0`, row `y0` of a plane of `width x height`, into
/// that plane, rounded to 8 bits; the part outside the plane (the padding)
/// is dropped.
pub(crate) fn write_tile(
    plane: &mut [u8],
    (width, height): (u32, u32),
    values: &[f32],
    (x0, y0): (usize, usize),
    (tw, th): (usize, usize),
) {
    let (w, h) = (width as usize, height as usize);
    let cols = tw.min(w.saturating_sub(x0));
    for y in 0..th.min(h.saturating_sub(y0)) {
        let src = &values[y * tw..][..cols];
        let dst = &mut plane[(y0 + y) * w + x0..][..cols];
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = (v * 255.0).round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Interleaves planes back into an image of the geometry's colour type.
pub(crate) fn image_from_planes(
    geometry: Geometry,
    planes: &[Vec<u8>],
) -> Result<DynamicImage, CodecError> {
    let (w, h, c) = (geometry.width, geometry.height, geometry.channels as usize);
    let n = w as usize * h as usize;
    let mut raw = vec![0u8; n * c];
    for (p, plane) in planes.iter().enumerate().take(c) {
        for (i, &v) in plane.iter().enumerate().take(n) {
            raw[i * c + p] = v;
        }
    }
    let bad =
        || CodecError::UnsupportedImage(format!("cannot build a {w}x{h} image of {c} channels"));
    Ok(match c {
        1 => DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, raw).ok_or_else(bad)?),
        3 => DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, raw).ok_or_else(bad)?),
        4 => DynamicImage::ImageRgba8(RgbaImage::from_raw(w, h, raw).ok_or_else(bad)?),
        _ => return Err(bad()),
    })
}

/// Mean squared error between two equally long 8-bit sample arrays.
pub fn mse(a: &[u8], b: &[u8]) -> f64 {
    let n = a.len().min(b.len()).max(1);
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x as f64 - y as f64;
            d * d
        })
        .sum::<f64>()
        / n as f64
}

/// PSNR in dB (peak 255) of a mean squared error on 8-bit samples.
pub fn psnr_db_from_mse(mse: f64) -> f64 {
    if mse <= 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// PSNR in dB (peak 255) between two equally long 8-bit sample arrays.
pub fn psnr_db(a: &[u8], b: &[u8]) -> f64 {
    psnr_db_from_mse(mse(a, b))
}
