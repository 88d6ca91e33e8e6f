//! Rate-distortion and speed measurements: vqz against PNG, JPEG, WebP,
//! AVIF and JPEG XL on the same images, each image its own file. This sits
//! on top of the codec; `vqz bench` is a thin layer over [`run`] and
//! [`speed::run`].
//!
//! ```no_run
//! use vqz::bench::{self, BenchOptions, NoProgress};
//! use vqz::codec::Model;
//! use vqz::train::Dataset;
//!
//! let model = Model::default_model()?;
//! let mut digits = Dataset::load("testdata/t10k-images-idx3-ubyte.gz".as_ref())?;
//! digits.truncate(100);
//! let result = bench::run(&model, &digits, &BenchOptions::default(), &NoProgress)?;
//! println!("{}", result.report.to_markdown());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod classic;
mod contact;
mod external;
mod learned;
mod plot;
mod report;
pub mod speed;

use std::path::Path;
use std::time::{Duration, Instant};

use image::DynamicImage;

use crate::atomic_write::write_atomic;
use crate::codec::{CodecError, Model};
use crate::train::Dataset;

pub use external::{ExternalCodec, INSTALL_HINT};
pub use report::{BenchReport, Headline, HeadlineCell, Row, Timing};

/// Per-image PSNR given to an image that came back exactly, so that a mean
/// over images stays finite.
pub const EXACT_IMAGE_PSNR_DB: f64 = 100.0;

/// Errors of the bench, by cause.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("{codec}: {source}")]
    Image {
        codec: String,
        source: image::ImageError,
    },
    /// An external encoder or decoder failed on an image.
    #[error("{tool} failed on image {image}: {why}")]
    Tool {
        tool: String,
        image: usize,
        why: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("drawing the plot: {0}")]
    Plot(String),
    #[error("no images to measure")]
    NoImages,
    #[error("images are {width}x{height}; the bench needs at least 1x1 grey images")]
    BadGeometry { width: usize, height: usize },
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Timed passes over the same images; the median is reported.
    pub repeats: usize,
    /// JPEG qualities of the sweep.
    pub jpeg_qualities: Vec<u8>,
    /// Whether to run the external command-line codecs that are installed.
    pub external: bool,
    /// The external tools are run on the first this many images only
    /// (one process per image is slow); `None`: all images.
    pub external_limit: Option<usize>,
    /// Originals shown on the contact sheet.
    pub contact_images: usize,
    /// Refinement steps vqz encodes with (see [`crate::codec::CompressOptions`]).
    pub refine_steps: u8,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            repeats: 3,
            jpeg_qualities: vec![5, 10, 20, 35, 50, 75, 90],
            external: true,
            external_limit: Some(1000),
            contact_images: 10,
            refine_steps: crate::codec::DEFAULT_REFINE_STEPS,
        }
    }
}

/// Told how far the bench has got, e.g. to drive a progress bar.
pub trait Progress: Sync {
    /// A new step of `total` units starts.
    fn start(&self, what: &str, total: u64);
    /// `n` more units of the current step are done.
    fn advance(&self, n: u64);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _what: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
}

/// Everything a bench run produced.
#[derive(Debug, Clone)]
pub struct BenchRun {
    pub report: BenchReport,
    /// Originals (top row) above their vqz reconstructions at each level,
    /// scaled up, as PNG bytes.
    pub contact_png: Vec<u8>,
    /// The rate-distortion plot as SVG.
    pub rd_svg: String,
}

impl BenchRun {
    /// The files [`BenchRun::write_to`] writes.
    pub const FILES: [&'static str; 4] = ["bench.md", "bench.csv", "rd.svg", "contact.png"];

    /// Writes `bench.md`, `bench.csv`, `rd.svg` and `contact.png` into `dir`
    /// (created if needed), each atomically, replacing older ones.
    pub fn write_to(&self, dir: &Path) -> Result<(), BenchError> {
        std::fs::create_dir_all(dir).map_err(|source| BenchError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let (markdown, csv) = (self.report.to_markdown(), self.report.to_csv());
        let contents: [&[u8]; 4] = [
            markdown.as_bytes(),
            csv.as_bytes(),
            self.rd_svg.as_bytes(),
            &self.contact_png,
        ];
        for (name, bytes) in Self::FILES.into_iter().zip(contents) {
            let path = dir.join(name);
            write_atomic(&path, bytes, true).map_err(|source| BenchError::Io {
                what: format!("writing {}", path.display()),
                source,
            })?;
        }
        Ok(())
    }
}

/// The images under test, as 8-bit grey images.
pub(crate) struct Images {
    pub width: u32,
    pub height: u32,
    pub images: Vec<DynamicImage>,
}

impl Images {
    pub fn from_dataset(data: &Dataset) -> Result<Self, BenchError> {
        if data.is_empty() {
            return Err(BenchError::NoImages);
        }
        let bad = || BenchError::BadGeometry {
            width: data.width,
            height: data.height,
        };
        let width = u32::try_from(data.width).map_err(|_| bad())?;
        let height = u32::try_from(data.height).map_err(|_| bad())?;
        let images = (0..data.len())
            .map(|i| data.grey_image(i).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            width,
            height,
            images,
        })
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn pixels(&self, i: usize) -> &[u8] {
        self.images[i].as_bytes()
    }
}

/// Sums of distortion over the images of one codec setting.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Distortion {
    images: usize,
    sum_mse: f64,
    sum_psnr_db: f64,
    exact: usize,
}

impl Distortion {
    /// Adds one image: its original and the samples that came back.
    pub fn add(&mut self, original: &[u8], decoded: &[u8]) {
        let mse = if original.len() == decoded.len() {
            crate::codec::mse(original, decoded)
        } else {
            // A wrong size is as bad as it gets, never a silent success.
            255.0 * 255.0
        };
        self.images += 1;
        self.sum_mse += mse;
        if mse == 0.0 {
            self.exact += 1;
            self.sum_psnr_db += EXACT_IMAGE_PSNR_DB;
        } else {
            self.sum_psnr_db += crate::codec::psnr_db_from_mse(mse).min(EXACT_IMAGE_PSNR_DB);
        }
    }

    pub fn mean_mse(&self) -> f64 {
        self.sum_mse / self.images.max(1) as f64
    }

    pub fn mean_psnr_db(&self) -> f64 {
        self.sum_psnr_db / self.images.max(1) as f64
    }
}

/// Runs `pass` once and returns how long it took with its result.
pub(crate) fn timed<T>(
    pass: impl FnOnce() -> Result<T, BenchError>,
) -> Result<(Duration, T), BenchError> {
    let start = Instant::now();
    let out = pass()?;
    Ok((start.elapsed(), out))
}

/// Runs `pass` `repeats` times (at least once) and returns the median
/// duration together with the result of the last pass.
pub(crate) fn timed_median<T>(
    repeats: usize,
    mut pass: impl FnMut() -> Result<T, BenchError>,
) -> Result<(Duration, T), BenchError> {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let (time, out) = timed(&mut pass)?;
        times.push(time);
        last = Some(out);
    }
    times.sort();
    let median = times[times.len() / 2];
    match last {
        Some(out) => Ok((median, out)),
        None => Err(BenchError::NoImages),
    }
}

/// The median of rates (0 if there are none).
pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Images per second of `count` images in `elapsed`.
pub(crate) fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// CPU cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Measures vqz at every level, alone and as one stream, the in-process
/// codecs (PNG, JPEG sweep) and, when `options.external`, every installed
/// external codec, all on the images of `data`.
pub fn run(
    model: &Model,
    data: &Dataset,
    options: &BenchOptions,
    progress: &dyn Progress,
) -> Result<BenchRun, BenchError> {
    let images = Images::from_dataset(data)?;
    let mut rows = Vec::new();
    let mut notes = vec![format!(
        "vqz encoded with {} refinement steps (`--refine`; 0 is the plain encoder).",
        options.refine_steps
    )];

    let levels = learned::measure(model, &images, options, progress)?;
    rows.extend(levels.rows);
    rows.extend(classic::measure(&images, options, progress)?);

    let mut external_images = None;
    if options.external {
        let n = options
            .external_limit
            .map_or(images.len(), |l| l.min(images.len()));
        let (available, missing) = external::available_codecs();
        for codec in &missing {
            notes.push(format!(
                "{} skipped: `{}` is not installed ({INSTALL_HINT})",
                codec.name(),
                codec.tools().join("`/`")
            ));
        }
        if !available.is_empty() {
            external_images = Some(n);
            rows.extend(external::measure(
                &available, &images, n, options, progress,
            )?);
        }
    } else {
        notes.push("external codecs (WebP, AVIF, JPEG XL) not run".into());
    }

    let report = BenchReport::new(
        rows,
        images.len(),
        external_images,
        options.repeats.max(1),
        notes,
        model.max_level(),
    );
    let rd_svg = plot::rd_svg(&report)?;
    let contact_png = contact::contact_sheet(
        &images,
        &levels.contact,
        options.contact_images.min(images.len()),
    )?;
    Ok(BenchRun {
        report,
        contact_png,
        rd_svg,
    })
}
