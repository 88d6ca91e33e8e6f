//! WebP, AVIF and JPEG XL through their reference command-line encoders
//! and decoders, one process per image, from and to PNG files in a
//! temporary folder. A codec whose tools are not installed is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use image::ImageFormat;
use rayon::prelude::*;

use super::report::{Row, Timing};
use super::{BenchError, BenchOptions, Distortion, Images, Progress, median, per_second};

/// How to get the tools on Debian and Ubuntu.
pub const INSTALL_HINT: &str = "apt-get install webp libavif-bin libjxl-tools";

/// Images in each timing run after the first: one process per image makes
/// repeated runs over every image too slow.
pub const TIMING_IMAGES: usize = 200;

/// A codec measured through its command-line tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalCodec {
    WebP,
    WebPLossless,
    Avif,
    JpegXl,
}

impl ExternalCodec {
    pub const ALL: [ExternalCodec; 4] = [
        ExternalCodec::WebP,
        ExternalCodec::WebPLossless,
        ExternalCodec::Avif,
        ExternalCodec::JpegXl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ExternalCodec::WebP => "WebP",
            ExternalCodec::WebPLossless => "WebP lossless",
            ExternalCodec::Avif => "AVIF",
            ExternalCodec::JpegXl => "JPEG XL",
        }
    }

    /// Encoder and decoder programs.
    pub fn tools(self) -> [&'static str; 2] {
        match self {
            ExternalCodec::WebP | ExternalCodec::WebPLossless => ["cwebp", "dwebp"],
            ExternalCodec::Avif => ["avifenc", "avifdec"],
            ExternalCodec::JpegXl => ["cjxl", "djxl"],
        }
    }

    fn extension(self) -> &'static str {
        match self {
            ExternalCodec::WebP | ExternalCodec::WebPLossless => "webp",
            ExternalCodec::Avif => "avif",
            ExternalCodec::JpegXl => "jxl",
        }
    }

    /// Each setting's label and encoder options, chosen so the lossy sweeps
    /// span roughly 18 to 38 dB on 28x28 digits, with steps small enough
    /// (1 to 3 dB where vqz's levels lie) that interpolating between them
    /// does not flatter vqz: sizes grow faster than linearly in PSNR, so a
    /// chord across a wide step overstates what a codec needs.
    fn settings(self) -> Vec<(String, Vec<String>)> {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self {
            ExternalCodec::WebP => [0, 3, 6, 10, 15, 20, 27, 35, 50, 60, 70]
                .iter()
                .map(|q| {
                    (
                        format!("q={q}"),
                        strings(&["-quiet", "-m", "6", "-q", &q.to_string()]),
                    )
                })
                .collect(),
            ExternalCodec::WebPLossless => vec![(
                "lossless, -z 9".into(),
                strings(&["-quiet", "-lossless", "-z", "9"]),
            )],
            ExternalCodec::Avif => [63, 59, 55, 50, 45, 40, 35]
                .iter()
                .map(|q| {
                    let q = q.to_string();
                    (
                        format!("quantizer {q}"),
                        strings(&["-s", "6", "-y", "400", "--min", &q, "--max", &q]),
                    )
                })
                .collect(),
            ExternalCodec::JpegXl => ["15", "11", "8", "6", "4", "3", "2", "1.5"]
                .iter()
                .map(|d| (format!("d={d}"), strings(&["-e", "7", "-d", d])))
                .collect(),
        }
    }

    /// The encoder's command line for one file.
    fn encode_command(self, options: &[String], input: &Path, output: &Path) -> Command {
        let mut c = Command::new(self.tools()[0]);
        match self {
            ExternalCodec::WebP | ExternalCodec::WebPLossless => {
                c.args(options).arg(input).arg("-o").arg(output);
            }
            ExternalCodec::Avif | ExternalCodec::JpegXl => {
                c.args(options).arg(input).arg(output);
            }
        }
        c
    }

    /// The decoder's command line, to PNG.
    fn decode_command(self, input: &Path, output: &Path) -> Command {
        let mut c = Command::new(self.tools()[1]);
        match self {
            ExternalCodec::WebP | ExternalCodec::WebPLossless => {
                c.arg("-quiet").arg(input).arg("-o").arg(output);
            }
            ExternalCodec::Avif | ExternalCodec::JpegXl => {
                c.arg(input).arg(output);
            }
        }
        c
    }
}

/// The codecs whose tools are all on `PATH`, and those missing one.
pub fn available_codecs() -> (Vec<ExternalCodec>, Vec<ExternalCodec>) {
    ExternalCodec::ALL
        .into_iter()
        .partition(|c| c.tools().iter().all(|t| on_path(t)))
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// Runs a command to completion; a failure names the tool and the image.
fn run_tool(mut command: Command, image: usize) -> Result<(), BenchError> {
    let tool = command.get_program().to_string_lossy().into_owned();
    let out = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| BenchError::Tool {
            tool: tool.clone(),
            image,
            why: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError::Tool {
            tool,
            image,
            why: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// Measures `codecs` on the first `count` images.
pub(crate) fn measure(
    codecs: &[ExternalCodec],
    images: &Images,
    count: usize,
    options: &BenchOptions,
    progress: &dyn Progress,
) -> Result<Vec<Row>, BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("vqz-bench-")
        .tempdir()
        .map_err(|source| BenchError::Io {
            what: "creating a temporary folder".into(),
            source,
        })?;
    let inputs: Vec<PathBuf> = (0..count)
        .map(|i| dir.path().join(format!("{i}.png")))
        .collect();
    inputs.par_iter().enumerate().try_for_each(|(i, path)| {
        images.images[i]
            .save_with_format(path, ImageFormat::Png)
            .map_err(|source| BenchError::Image {
                codec: "PNG input".into(),
                source,
            })
    })?;
    let mut rows = Vec::new();
    for &codec in codecs {
        for (label, args) in codec.settings() {
            rows.push(measure_setting(
                codec,
                &label,
                &args,
                images,
                &inputs,
                dir.path(),
                options,
                progress,
            )?);
        }
    }
    Ok(rows)
}

#[allow(clippy::too_many_arguments)]
fn measure_setting(
    codec: ExternalCodec,
    label: &str,
    args: &[String],
    images: &Images,
    inputs: &[PathBuf],
    dir: &Path,
    options: &BenchOptions,
    progress: &dyn Progress,
) -> Result<Row, BenchError> {
    let n = inputs.len();
    let repeats = options.repeats.max(1);
    let timing_n = n.min(TIMING_IMAGES);
    progress.start(
        &format!("{} {label}", codec.name()),
        (2 * (n + (repeats - 1) * timing_n)) as u64,
    );
    let coded = |i: usize| dir.join(format!("{i}.{}", codec.extension()));
    let decoded = |i: usize| dir.join(format!("{i}.out.png"));
    let encode_pass = |count: usize| -> Result<f64, BenchError> {
        let start = Instant::now();
        (0..count).into_par_iter().try_for_each(|i| {
            run_tool(codec.encode_command(args, &inputs[i], &coded(i)), i)?;
            progress.advance(1);
            Ok::<_, BenchError>(())
        })?;
        Ok(per_second(count, start.elapsed()))
    };
    let decode_pass = |count: usize| -> Result<f64, BenchError> {
        let start = Instant::now();
        (0..count).into_par_iter().try_for_each(|i| {
            run_tool(codec.decode_command(&coded(i), &decoded(i)), i)?;
            progress.advance(1);
            Ok::<_, BenchError>(())
        })?;
        Ok(per_second(count, start.elapsed()))
    };

    // The first run covers every image and leaves the files to measure.
    let mut encode_rates = vec![encode_pass(n)?];
    let bytes = (0..n)
        .map(|i| {
            std::fs::metadata(coded(i))
                .map(|m| m.len() as usize)
                .map_err(|source| BenchError::Io {
                    what: format!("{} output of image {i}", codec.name()),
                    source,
                })
        })
        .sum::<Result<usize, _>>()?;
    let mut decode_rates = vec![decode_pass(n)?];
    let mut distortion = Distortion::default();
    for i in 0..n {
        let back = image::open(decoded(i)).map_err(|source| BenchError::Image {
            codec: format!("{} decoded image {i}", codec.name()),
            source,
        })?;
        distortion.add(images.pixels(i), back.to_luma8().as_raw());
    }
    for _ in 1..repeats {
        encode_rates.push(encode_pass(timing_n)?);
        decode_rates.push(decode_pass(timing_n)?);
    }
    Ok(Row::measured(
        codec.name(),
        label,
        n,
        bytes,
        None,
        &distortion,
        median(&mut encode_rates),
        median(&mut decode_rates),
        Timing::Spawned,
    ))
}
