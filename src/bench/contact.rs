//! The contact sheet: a few originals above their vqz reconstructions at
//! each level, scaled up so a person can judge the quality by eye.

use image::imageops::{self, FilterType};
use image::{GrayImage, ImageFormat, Luma};

use super::{BenchError, Images};

/// Each pixel becomes a `SCALE` x `SCALE` block.
const SCALE: u32 = 3;
/// Grey gap between tiles, in output pixels.
const GAP: u32 = 4;
const GAP_SHADE: u8 = 128;

/// Row 0: the first `count` originals; row `l`: their reconstructions at
/// level `l`, as decoded from their files. Returns PNG bytes.
pub(crate) fn contact_sheet(
    images: &Images,
    levels: &[Vec<GrayImage>],
    count: usize,
) -> Result<Vec<u8>, BenchError> {
    let (w, h) = (images.width * SCALE, images.height * SCALE);
    let cols = count.max(1) as u32;
    let rows = 1 + levels.len() as u32;
    let mut sheet = GrayImage::from_pixel(
        GAP + cols * (w + GAP),
        GAP + rows * (h + GAP),
        Luma([GAP_SHADE]),
    );
    let originals = images.images.iter().take(count).map(|i| i.to_luma8());
    let tiles = std::iter::once(originals.collect::<Vec<_>>()).chain(levels.iter().cloned());
    for (row, tiles) in tiles.enumerate() {
        for (col, tile) in tiles.iter().take(count).enumerate() {
            let x0 = GAP + col as u32 * (w + GAP);
            let y0 = GAP + row as u32 * (h + GAP);
            let big = imageops::resize(tile, w, h, FilterType::Nearest);
            imageops::replace(&mut sheet, &big, i64::from(x0), i64::from(y0));
        }
    }
    let mut png = Vec::new();
    sheet
        .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
        .map_err(|source| BenchError::Image {
            codec: "contact sheet".into(),
            source,
        })?;
    Ok(png)
}
