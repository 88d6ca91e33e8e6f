//! Training and evaluation images: MNIST-style IDX files (plain or gzip) and
//! folders of PNG files, loaded as 8-bit grey images of one size.

use std::io::Read;
use std::path::Path;

use image::{DynamicImage, GrayImage};

/// Largest dataset loaded into memory (pixels), about 1 GiB.
pub const MAX_DATASET_PIXELS: usize = 1 << 30;

/// A set of grey images of one size, pixels row-major, image after image.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not an IDX image file: {why}")]
    NotIdx { path: String, why: String },
    #[error("{path}: {why}")]
    BadImage { path: String, why: String },
    #[error("{0}: no images found")]
    Empty(String),
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.pixels.len() / (self.width * self.height).max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.width * self.height;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Image `i` as a grey [`DynamicImage`], as the codec takes it; `None`
    /// if there is no image `i` or the sizes do not fit one.
    pub fn grey_image(&self, i: usize) -> Option<DynamicImage> {
        let n = self.width.checked_mul(self.height)?;
        let pixels = self
            .pixels
            .get(i.checked_mul(n)?..i.checked_add(1)?.checked_mul(n)?)?;
        GrayImage::from_raw(
            u32::try_from(self.width).ok()?,
            u32::try_from(self.height).ok()?,
            pixels.to_vec(),
        )
        .map(DynamicImage::ImageLuma8)
    }

    /// The first `n` images (all of them if there are fewer).
    pub fn truncate(&mut self, n: usize) {
        let keep = n.min(self.len()) * self.width * self.height;
        self.pixels.truncate(keep);
    }

    /// Loads an IDX file (`.gz` or plain) or a folder of PNG images.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        if path.is_dir() {
            load_png_dir(path)
        } else {
            let bytes = read_maybe_gzip(path)?;
            parse_idx_images(&bytes).map_err(|why| DataError::NotIdx {
                path: path.display().to_string(),
                why,
            })
        }
    }
}

/// Reads a file, inflating it if it starts with the gzip magic bytes.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.display().to_string(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&GZIP_MAGIC) {
        inflate_gzip(&raw).map_err(io)
    } else {
        Ok(raw)
    }
}

/// The first bytes of a gzip file.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Inflates gzip data: every member, as gzip does, and nothing after them
/// (other data after the last member is an error, not ignored). More than
/// [`MAX_DATASET_PIXELS`] bytes of IDX file is an error, not cut short.
pub fn inflate_gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let limit = MAX_DATASET_PIXELS as u64 + 16;
    let mut out = Vec::new();
    flate2::bufread::MultiGzDecoder::new(bytes)
        .take(limit + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("inflates to more than {limit} bytes, the limit of a dataset"),
        ));
    }
    Ok(out)
}

/// Parses an IDX3 unsigned-byte image file: magic 0x00000803, then count,
/// rows and columns as big-endian u32, then the pixels.
pub fn parse_idx_images(bytes: &[u8]) -> Result<Dataset, String> {
    let word = |i: usize| -> Result<usize, String> {
        let b = bytes
            .get(4 * i..4 * i + 4)
            .ok_or_else(|| format!("file is {} bytes, too short for its header", bytes.len()))?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let magic = word(0)?;
    if magic != 0x0803 {
        return Err(format!(
            "magic is 0x{magic:08x}, expected 0x00000803 (unsigned bytes, 3 dimensions)"
        ));
    }
    let (count, height, width) = (word(1)?, word(2)?, word(3)?);
    if width == 0 || height == 0 || count == 0 {
        return Err(format!(
            "{count} images of {width}x{height}: nothing to read"
        ));
    }
    let total = count
        .checked_mul(width)
        .and_then(|v| v.checked_mul(height))
        .filter(|&v| v <= MAX_DATASET_PIXELS)
        .ok_or_else(|| format!("{count} images of {width}x{height} exceed the dataset limit"))?;
    let body = &bytes[16..];
    if body.len() != total {
        // More data than the header counts is refused too: reading only
        // what it counts would drop the rest without a word.
        return Err(format!(
            "header counts {count} images of {width}x{height} ({total} bytes), the file holds {}",
            body.len()
        ));
    }
    Ok(Dataset {
        width,
        height,
        pixels: body.to_vec(),
    })
}

/// The 16-byte header of an IDX file of `count` 8-bit images of
/// `width x height`, which follow it row by row, image after image.
pub fn idx_header(width: u32, height: u32, count: u32) -> [u8; 16] {
    let mut header = [0; 16];
    for (field, v) in header
        .chunks_exact_mut(4)
        .zip([0x0803, count, height, width])
    {
        field.copy_from_slice(&v.to_be_bytes());
    }
    header
}

/// Writes images as an IDX3 unsigned-byte file.
pub fn idx_bytes(width: usize, height: usize, images: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + images.len() * width * height);
    out.extend_from_slice(&idx_header(
        width as u32,
        height as u32,
        images.len() as u32,
    ));
    for img in images {
        out.extend_from_slice(img);
    }
    out
}

fn load_png_dir(dir: &Path) -> Result<Dataset, DataError> {
    let name = dir.display().to_string();
    let io = |source| DataError::Io {
        path: name.clone(),
        source,
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    let mut set: Option<Dataset> = None;
    for f in files {
        let img = image::open(&f).map_err(|e| DataError::BadImage {
            path: f.display().to_string(),
            why: e.to_string(),
        })?;
        let grey = img.to_luma8();
        let (w, h) = (grey.width() as usize, grey.height() as usize);
        let ds = set.get_or_insert_with(|| Dataset {
            width: w,
            height: h,
            pixels: Vec::new(),
        });
        if (ds.width, ds.height) != (w, h) {
            return Err(DataError::BadImage {
                path: f.display().to_string(),
                why: format!("is {w}x{h}, the first image was {}x{}", ds.width, ds.height),
            });
        }
        if ds.pixels.len() + w * h > MAX_DATASET_PIXELS {
            return Err(DataError::BadImage {
                path: name.clone(),
                why: "folder exceeds the dataset size limit".into(),
            });
        }
        ds.pixels.extend_from_slice(grey.as_raw());
    }
    set.ok_or(DataError::Empty(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_image_is_the_image_or_none() {
        let d = Dataset {
            width: 2,
            height: 1,
            pixels: vec![1, 2, 3, 4],
        };
        assert_eq!(d.grey_image(1).unwrap().as_bytes(), &[3, 4]);
        assert_eq!(d.grey_image(1).unwrap().width(), 2);
        assert!(d.grey_image(2).is_none());
        assert!(d.grey_image(usize::MAX).is_none());
    }

    #[test]
    fn idx_round_trip_and_bad_headers() {
        let a = [1u8; 12];
        let b = [2u8; 12];
        let bytes = idx_bytes(4, 3, &[&a, &b]);
        let ds = parse_idx_images(&bytes).unwrap();
        assert_eq!((ds.len(), ds.width, ds.height), (2, 4, 3));
        assert_eq!(ds.image(1), &b);
        assert!(parse_idx_images(&bytes[..20]).is_err());
        assert!(parse_idx_images(&bytes[..10]).is_err());
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_idx_images(&huge).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        let err = parse_idx_images(&longer).unwrap_err();
        assert!(
            err.contains("header counts 2 images of 4x3 (24 bytes), the file holds 25"),
            "{err}"
        );
        let mut wrong = bytes;
        wrong[3] = 0x01;
        assert!(parse_idx_images(&wrong).is_err());
    }

    #[test]
    fn gzip_members_are_all_read_and_nothing_after_them() {
        use std::io::Write;
        let gz = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let mut two = gz(b"first ");
        two.extend(gz(b"second"));
        assert_eq!(inflate_gzip(&two).unwrap(), b"first second");
        let mut junk = gz(b"first ");
        junk.extend_from_slice(b"junk after the member");
        assert!(inflate_gzip(&junk).is_err());
        assert!(inflate_gzip(&gz(b"x")[..10]).is_err(), "truncated");
    }
}
