//! `vqz compress`, `decompress`, `info` and `verify`: argument handling,
//! file naming and messages around `vqz::codec`.

use std::fs::File;
use std::io::{BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use image::DynamicImage;
use indicatif::{ProgressBar, ProgressStyle};
use vqz::atomic_write::{resolved_name, same_file, write_atomic_like};
use vqz::codec::{
    self, CodecError, CompressOptions, DecodedImage, Decoder, Encoder, Model, Quality, hex,
};
use vqz::format::{CodingMode, FrameEntry, Reader};
use vqz::train::data::{Dataset, GZIP_MAGIC, idx_header, inflate_gzip, parse_idx_images};

/// `writeln!` to `out`, a failed write being an error that says so (a
/// report to a full disk or a closed descriptor must not pass for done).
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        writeln!($out, $($arg)*).context("writing standard output")?
    };
}

/// Options shared by every command that needs a model.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Model file to use instead of the built-in MNIST model.
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
}

impl ModelArgs {
    pub fn load(&self) -> Result<Model> {
        match &self.model {
            Some(p) => Model::load(p).with_context(|| format!("loading model {}", p.display())),
            None => Model::default_model().context("loading the built-in model"),
        }
    }

    /// The models a stream may be decoded with: the one `--model` names
    /// and the built-in one, as a stream names the model it needs by id.
    fn load_for_decoding(&self) -> Result<Vec<Model>> {
        let mut models = vec![self.load()?];
        if self.model.is_some()
            && let Ok(built_in) = Model::default_model()
        {
            models.push(built_in);
        }
        Ok(models)
    }
}

#[derive(Args, Clone)]
pub struct OutputArgs {
    /// Write to standard output.
    #[arg(short = 'c', long = "stdout")]
    stdout: bool,
    /// Overwrite existing output files.
    #[arg(short, long)]
    force: bool,
    /// Keep input files (the default).
    #[arg(short, long, conflicts_with = "rm")]
    keep: bool,
    /// Remove input files after success.
    #[arg(long)]
    rm: bool,
    /// Print nothing but errors.
    #[arg(long, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more detail.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Args)]
pub struct CompressArgs {
    /// Images (PNG, JPEG...), MNIST-style IDX files (plain or .gz), or - for standard input.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output file (- for standard output) [default: INPUT.vqz for one input].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Quality level L: residual stages coded, 1 (smallest files) up to the
    /// model's stage count [default: the model's default level].
    #[arg(
        short = 'q',
        long = "quality",
        value_name = "L",
        visible_alias = "level",
        visible_short_alias = 'l',
        conflicts_with_all = ["target_psnr", "max_bytes"]
    )]
    level: Option<u8>,
    /// Per image, the smallest level reaching this PSNR (dB, peak 255).
    #[arg(long, value_name = "DB", conflicts_with = "max_bytes")]
    target_psnr: Option<f64>,
    /// Per image, the highest level whose standalone file fits in N bytes.
    #[arg(long, value_name = "N")]
    max_bytes: Option<usize>,
    /// Store the model in the file so it decodes without it.
    #[arg(long)]
    embed_model: bool,
    /// Steps of decoder-in-the-loop refinement per image: each costs about
    /// one network pass forward and back, and finds indices that decode
    /// closer to the image in no more bytes (0: off, fastest).
    #[arg(long, value_name = "N", default_value_t = codec::DEFAULT_REFINE_STEPS)]
    refine: u8,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Args)]
pub struct DecompressArgs {
    /// A .vqz file, or - for standard input.
    input: PathBuf,
    /// Output PNG (one image), folder of PNGs (several), IDX file with --idx, or - for standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Write all images as one MNIST-style IDX file instead of PNGs (8-bit grey images of one size only).
    #[arg(long)]
    idx: bool,
    #[command(flatten)]
    limits: DecodeLimitArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    out: OutputArgs,
}

/// How much a stream may decode to.
#[derive(Args, Clone)]
pub struct DecodeLimitArgs {
    /// Stop with an error once the stream's images hold more than N samples
    /// (pixels x channels, all images together) plus 4096 per byte of its
    /// frames: a few bytes can declare a large blank image. Raise it for
    /// trusted streams of large blank images.
    #[arg(long, value_name = "N", default_value_t = codec::DEFAULT_MAX_STREAM_SAMPLES)]
    max_samples: u64,
    /// Stop with an error before decoding would take more than N
    /// multiply-adds (the network and prior work each frame can take, all
    /// frames together) plus 2^24 per byte of frames: a model embedded in a
    /// stream can make every pixel costly. Raise it for trusted streams.
    #[arg(long, value_name = "N", default_value_t = codec::DEFAULT_MAX_STREAM_WORK)]
    max_work: u64,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    inspect: InspectArgs,
    #[command(flatten)]
    limits: DecodeLimitArgs,
}

#[derive(Args)]
pub struct InspectArgs {
    /// A .vqz file.
    input: PathBuf,
    /// List every frame (info) or report timing (verify).
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    model: ModelArgs,
}

/// Whether `path` names standard input or output: exactly `-`, as in gzip
/// (`./-` or `-/` name a file or folder).
fn is_std_stream(path: &Path) -> bool {
    path.as_os_str() == "-"
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    if is_std_stream(path) {
        let mut v = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut v)
            .context("reading standard input")?;
        return Ok(v);
    }
    if path.is_dir() {
        bail!("{} is a directory", path.display());
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn is_vqz(bytes: &[u8]) -> bool {
    bytes.starts_with(b"vqz")
}

/// Images of one input: an IDX file's digits, or one image file.
fn decode_input(path: &Path, bytes: &[u8]) -> Result<Vec<DynamicImage>> {
    let name = path.display();
    if bytes.is_empty() {
        bail!("{name} is empty");
    }
    if is_vqz(bytes) {
        bail!("{name} is already a vqz file (use vqz decompress)");
    }
    let raw = if bytes.starts_with(&GZIP_MAGIC) {
        inflate_gzip(bytes).with_context(|| format!("inflating {name}"))?
    } else {
        bytes.to_vec()
    };
    if raw.starts_with(&[0, 0, 8, 3]) {
        let ds = parse_idx_images(&raw).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        return dataset_images(&ds);
    }
    if is_animated_png(&raw) {
        bail!("{name} is an animated PNG: vqz codes still images, and would keep only one frame");
    }
    let img = image::load_from_memory(&raw)
        .with_context(|| format!("{name} is not an image vqz can read"))?;
    let (img, notes) = codec::to_supported(img);
    for n in notes {
        eprintln!("vqz: warning: {name}: {n}");
    }
    Ok(vec![img])
}

/// Whether `bytes` are a PNG file with an animation (APNG): reading it as
/// an image gives its default image only.
fn is_animated_png(bytes: &[u8]) -> bool {
    image::codecs::png::PngDecoder::new(std::io::Cursor::new(bytes))
        .and_then(|d| d.is_apng())
        .unwrap_or(false)
}

fn dataset_images(ds: &Dataset) -> Result<Vec<DynamicImage>> {
    (0..ds.len())
        .map(|i| {
            ds.grey_image(i)
                .ok_or_else(|| anyhow::anyhow!("bad IDX image {i}"))
        })
        .collect()
}

fn progress(len: u64, quiet: bool) -> ProgressBar {
    if quiet || len < 256 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

/// Writes `bytes` to `dest` (`-`: standard output), a file getting the
/// permissions of the input `like` where the output is made from one file.
fn write_output(dest: &Path, bytes: &[u8], force: bool, like: Option<&Path>) -> Result<()> {
    if is_std_stream(dest) {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes).context("writing standard output")?;
        out.flush().context("writing standard output")?;
        return Ok(());
    }
    write_atomic_like(dest, bytes, force, like)
        .with_context(|| format!("writing {}", dest.display()))
}

/// The one input file an output is made from, whose permissions it takes.
fn sole_input(inputs: &[PathBuf]) -> Option<&Path> {
    match inputs {
        [p] if !is_std_stream(p) => Some(p),
        _ => None,
    }
}

/// Refuses an output that is one of the inputs: even with `-f` it would
/// replace the input, and `--rm` would then delete the only copy.
fn check_not_an_input(dest: &Path, inputs: &[PathBuf]) -> Result<()> {
    if is_std_stream(dest) {
        return Ok(());
    }
    if let Some(p) = inputs
        .iter()
        .find(|p| !is_std_stream(p) && same_file(p, dest))
    {
        bail!(
            "the output {} is the input {}: name another output with -o",
            dest.display(),
            p.display()
        );
    }
    Ok(())
}

/// With `--rm`, removes the input files once their output `dest` is
/// written: each name once, however it was spelled (`7.png`, `./7.png`).
/// Output that went to standard output may not have been kept (a pipe's
/// reader can drop it), so then the inputs stay, as with gzip -c.
fn remove_inputs(inputs: &[PathBuf], out: &OutputArgs, dest: &Path) -> Result<()> {
    if !out.rm {
        return Ok(());
    }
    if is_std_stream(dest) {
        eprintln!("vqz: warning: --rm ignored: the output went to standard output; inputs kept");
        return Ok(());
    }
    let mut names = std::collections::HashSet::new();
    for p in inputs.iter().filter(|p| !is_std_stream(p)) {
        // A link given as input is removed, not what it points to.
        let name = resolved_name(p);
        if !names.insert(name) {
            continue;
        }
        std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

/// Where a command's output goes: `-o` as given (`-`: standard output);
/// without it, standard output with `-c` or when the input is standard
/// input, else the file `default` names.
fn destination(
    output: Option<&Path>,
    out: &OutputArgs,
    stdin_input: bool,
    default: impl FnOnce() -> Result<PathBuf>,
) -> Result<PathBuf> {
    let dest = match output {
        Some(o) if out.stdout && !is_std_stream(o) => {
            bail!("-c writes to standard output and -o names a file: give one of them")
        }
        Some(o) => o.to_path_buf(),
        None if out.stdout || stdin_input => PathBuf::from("-"),
        None => default()?,
    };
    if is_std_stream(&dest) && std::io::stdout().is_terminal() {
        bail!("not writing binary data to a terminal: name a file with -o, or redirect");
    }
    Ok(dest)
}

/// Threads for compressing one small image on a many-core machine: there
/// the thread pools cost more than such a job gains (16 cores: one digit
/// compresses in 134 ms with 16 threads, 81 ms with 4, process included).
const SMALL_JOB_THREADS: usize = 4;

/// Samples (pixels x 4 channels, at most) up to which one image is a small
/// job: about one pass of the shipped model's network.
const SMALL_JOB_SAMPLES: u64 = 1 << 17;

/// Caps the thread pools (rayon's and candle's, both sized by
/// `RAYON_NUM_THREADS`) at [`SMALL_JOB_THREADS`] when the only input is one
/// small image file, unless the user set `RAYON_NUM_THREADS` or
/// `CANDLE_NUM_THREADS`. Must run before any thread pool exists.
fn size_thread_pools(inputs: &[PathBuf]) {
    let user_set = ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Reads the header only; IDX files and anything else that is not one
    // image give no size and keep every core.
    let size = match inputs {
        [path] if !is_std_stream(path) => image::image_dimensions(path).ok(),
        _ => None,
    };
    if let Some(threads) = small_job_threads(size, cores, user_set) {
        // SAFETY: called first thing in `compress`, before the model is
        // loaded, so before any thread pool or other thread exists; nothing
        // reads the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
}

/// The thread count to cap the pools at for a job of one image of `size`
/// (none for any other job) on `cores` cores, if any.
fn small_job_threads(size: Option<(u32, u32)>, cores: usize, user_set: bool) -> Option<usize> {
    let (w, h) = size?;
    let small = u64::from(w) * u64::from(h) * 4 <= SMALL_JOB_SAMPLES;
    (small && !user_set && cores > SMALL_JOB_THREADS).then_some(SMALL_JOB_THREADS)
}

pub fn compress(a: CompressArgs) -> Result<()> {
    size_thread_pools(&a.inputs);
    let start = Instant::now();
    let model = a.model.load()?;
    let quality = match (a.level, a.target_psnr, a.max_bytes) {
        (Some(l), _, _) => Quality::Level(l),
        (_, Some(db), _) => Quality::TargetPsnr(db),
        (_, _, Some(n)) => Quality::MaxBytes(n),
        _ => Quality::Default,
    };
    let options = CompressOptions {
        quality,
        embed_model: a.embed_model,
        refine_steps: a.refine,
    };
    let stdin_input = a.inputs.iter().any(|p| is_std_stream(p));
    let dest = destination(a.output.as_deref(), &a.out, stdin_input, || {
        if a.inputs.len() > 1 {
            bail!("several inputs go into one stream: name it with -o FILE");
        }
        let mut p = a.inputs[0].clone().into_os_string();
        p.push(".vqz");
        Ok(PathBuf::from(p))
    })?;
    check_not_an_input(&dest, &a.inputs)?;
    if !is_std_stream(&dest) && dest.exists() && !a.out.force {
        bail!("{} already exists (use -f to overwrite)", dest.display());
    }
    let mut images = Vec::new();
    for p in &a.inputs {
        images.extend(decode_input(p, &read_input(p)?)?);
    }
    let total_pixels: u64 = images
        .iter()
        .map(|i| i.width() as u64 * i.height() as u64)
        .sum();
    let bar = progress(images.len() as u64, a.out.quiet);
    bar.set_prefix("compressing");
    let mut enc = Encoder::new(Vec::new(), &model, options);
    let mut levels = vec![0usize; model.max_level() as usize + 1];
    let mut missed = 0usize;
    for chunk in images.chunks(1024) {
        for s in enc.write_images(chunk)? {
            levels[s.level as usize] += 1;
            missed += usize::from(!s.meets_quality);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let bytes = enc.finish()?;
    if missed > 0 {
        let of = if images.len() == 1 {
            "the image".to_string()
        } else {
            format!("{missed} of {} images", images.len())
        };
        let s = if missed == 1 { "s" } else { "" };
        match quality {
            Quality::TargetPsnr(db) => eprintln!(
                "vqz: warning: {of} reach{} {db} dB at no level; coded at the highest, {}",
                if missed == 1 { "es" } else { "" },
                model.max_level()
            ),
            Quality::MaxBytes(n) => eprintln!(
                "vqz: warning: {of} fit{s} in {n} bytes at no level; coded at the smallest, 1"
            ),
            _ => {}
        }
    }
    write_output(&dest, &bytes, a.out.force, sole_input(&a.inputs))?;
    remove_inputs(&a.inputs, &a.out, &dest)?;
    if !a.out.quiet && !is_std_stream(&dest) {
        let n = images.len();
        let used: Vec<String> = levels
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(l, c)| {
                if n == 1 {
                    format!("{l}")
                } else {
                    format!("{l} x{c}")
                }
            })
            .collect();
        eprintln!(
            "{} -> {}: {} image{} ({} pixels) in {} bytes, {:.1} bits per image, level {}",
            a.inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            dest.display(),
            n,
            if n == 1 { "" } else { "s" },
            total_pixels,
            bytes.len(),
            bytes.len() as f64 * 8.0 / n.max(1) as f64,
            used.join(", ")
        );
    }
    if a.out.verbose {
        eprintln!(
            "model {} ({} {}), {:.1} ms",
            model.id_hex(),
            model.name(),
            model.version(),
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}

fn default_decompressed_name(input: &Path, several: bool, idx: bool) -> PathBuf {
    let s = input.to_string_lossy();
    let stem = s.strip_suffix(".vqz").unwrap_or(&s).to_string();
    if idx {
        return PathBuf::from(if stem.ends_with(".idx") {
            stem
        } else {
            format!("{stem}.idx")
        });
    }
    if several {
        return PathBuf::from(if stem == s { format!("{stem}.d") } else { stem });
    }
    let lower = stem.to_ascii_lowercase();
    if lower.ends_with(".png") {
        PathBuf::from(stem)
    } else {
        PathBuf::from(format!("{stem}.png"))
    }
}

fn png_bytes(img: &DynamicImage) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .context("encoding PNG")?;
    Ok(out.into_inner())
}

pub fn decompress(a: DecompressArgs) -> Result<()> {
    let models = a.model.load_for_decoding()?;
    let bytes = read_input(&a.input)?;
    if bytes.is_empty() {
        bail!("{} is empty", a.input.display());
    }
    if !is_vqz(&bytes) {
        bail!(
            "{} is not a vqz file (it does not start with \"vqz\")",
            a.input.display()
        );
    }
    let name = a.input.display().to_string();
    let input = std::slice::from_ref(&a.input);
    if let Some(o) = &a.output {
        check_not_an_input(o, input)?;
    }
    let dec = Decoder::new(&bytes[..], &models.iter().collect::<Vec<_>>())
        .with_context(|| name.clone())?
        .with_max_samples(a.limits.max_samples)
        .with_max_work(a.limits.max_work);
    // Decode until the stream is known to hold one image or several; after
    // that, a folder of PNGs is written batch by batch, so memory holds one
    // batch of images, not the whole stream.
    let mut batches = Batches {
        dec,
        failure: None,
        ended: false,
    };
    let mut images: Vec<DecodedImage> = Vec::new();
    while images.len() < 2 && batches.more() {
        images.extend(batches.next());
    }
    let several = images.len() > 1 || (batches.failure.is_some() && !images.is_empty());
    let dest = destination(a.output.as_deref(), &a.out, is_std_stream(&a.input), || {
        Ok(default_decompressed_name(&a.input, several, a.idx))
    })?;
    check_not_an_input(&dest, input)?;
    let mut written = 0u64;
    if !images.is_empty() {
        if a.idx {
            // An IDX file is written whole (its header counts the images),
            // so its pixels are gathered batch by batch, each image as it
            // arrives, before anything is written.
            let first = &images[0].image;
            let (w, h) = (first.width(), first.height());
            let mut idx = vec![0; 16];
            let mut count = 0u64;
            while !images.is_empty() {
                for d in &images {
                    idx.extend_from_slice(idx_plane(d, w, h)?);
                    count += 1;
                }
                images = batches.next();
            }
            let Ok(n) = u32::try_from(count) else {
                bail!("{count} images are more than an IDX file can count");
            };
            idx[..16].copy_from_slice(&idx_header(w, h, n));
            write_output(&dest, &idx, a.out.force, sole_input(input))?;
            written = count;
        } else if several {
            if is_std_stream(&dest) {
                bail!(
                    "the stream holds several images; write them to a folder (-o DIR) or use --idx"
                );
            }
            if dest.exists() && !a.out.force {
                bail!("{} already exists (use -f to overwrite)", dest.display());
            }
            let existed = dest.exists();
            std::fs::create_dir_all(&dest)
                .with_context(|| format!("creating {}", dest.display()))?;
            while !images.is_empty() {
                for d in &images {
                    // Numbered from 000000, wider only past a million frames.
                    let p = dest.join(format!("{:06}.png", d.number));
                    check_not_an_input(&p, input)?;
                    write_atomic_like(&p, &png_bytes(&d.image)?, a.out.force, sole_input(input))
                        .with_context(|| format!("writing {}", p.display()))?;
                }
                written += images.len() as u64;
                images = batches.next();
            }
            if existed {
                warn_of_other_frames(&dest, written);
            }
        } else {
            write_output(
                &dest,
                &png_bytes(&images[0].image)?,
                a.out.force,
                sole_input(input),
            )?;
            written = 1;
        }
    }
    if let Some(e) = batches.failure {
        if written > 0 {
            eprintln!(
                "vqz: {name}: wrote the {written} complete image{} before the error",
                if written == 1 { "" } else { "s" }
            );
        }
        return Err(decode_error(e, name));
    }
    if written == 0 {
        bail!("{name} holds no image");
    }
    remove_inputs(input, &a.out, &dest)?;
    if !a.out.quiet && !is_std_stream(&dest) {
        eprintln!(
            "{name} -> {}: {written} image{}",
            dest.display(),
            if written == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// The pixels of decoded image `d` for an IDX file of `w x h` 8-bit grey
/// images. Any other kind of image is refused: writing it as grey would
/// lose its colour or its alpha, or half its bits.
fn idx_plane(d: &DecodedImage, w: u32, h: u32) -> Result<&[u8]> {
    let DynamicImage::ImageLuma8(grey) = &d.image else {
        bail!(
            "frame {} is a {:?} image; IDX holds 8-bit grey images only (omit --idx for PNGs)",
            d.number,
            d.image.color()
        );
    };
    if (grey.width(), grey.height()) != (w, h) {
        bail!(
            "frame {} is {}x{}, the first {w}x{h}; IDX needs one size (omit --idx for PNGs)",
            d.number,
            grey.width(),
            grey.height()
        );
    }
    Ok(grey.as_raw())
}

/// A stream's decoder read batch by batch until it ends or fails, keeping
/// the failure for after the images before it are written.
struct Batches<'m, R: std::io::Read> {
    dec: Decoder<'m, R>,
    failure: Option<CodecError>,
    ended: bool,
}

impl<R: std::io::Read> Batches<'_, R> {
    fn more(&self) -> bool {
        self.failure.is_none() && !self.ended
    }

    /// The next batch of images; none once the stream ended or failed.
    fn next(&mut self) -> Vec<DecodedImage> {
        if !self.more() {
            return Vec::new();
        }
        match self.dec.next_batch(1024) {
            Ok(batch) => {
                self.ended = batch.is_empty();
                batch
            }
            Err(e) => {
                self.failure = Some(e);
                Vec::new()
            }
        }
    }
}

/// Warns if `dir`, which existed before this run wrote frames 0 to
/// `written - 1` into it, holds other files named like frames (an earlier
/// run's, most likely): they are left as they are, never deleted.
fn warn_of_other_frames(dir: &Path, written: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let others = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_suffix(".png")
                .filter(|n| n.len() >= 6 && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n >= written || name != format!("{n:06}.png"))
        })
        .count();
    if others > 0 {
        eprintln!(
            "vqz: warning: {} also holds {others} other file{} named like frames (not from this \
             stream; left as they are)",
            dir.display(),
            if others == 1 { "" } else { "s" }
        );
    }
}

/// A decoding error with what was being decoded, and for the sample and
/// work budgets, how to raise them.
fn decode_error(e: CodecError, what: String) -> anyhow::Error {
    let flag = match e {
        CodecError::SampleLimit { .. } => "--max-samples",
        CodecError::WorkLimit { .. } => "--max-work",
        e => return anyhow::Error::new(e).context(what),
    };
    anyhow::anyhow!("{what}: {e}; {flag} N raises it for a trusted stream")
}

fn mode_name(m: CodingMode) -> &'static str {
    match m {
        CodingMode::Ans => "ans",
        CodingMode::AnsPlain => "ans-3.x",
        CodingMode::Stored => "stored",
    }
}

/// Frames `vqz info` lists without `-v`.
const INFO_FRAMES: usize = 10;

/// Reads the frames of the file at `path` (`-`: standard input) in order,
/// calling `each` with every frame's entry; returns the reader at the end
/// of the stream. Only one frame is held at a time, so a file of millions
/// of frames costs no more memory than one of ten.
fn scan_frames(
    path: &Path,
    mut each: impl FnMut(FrameEntry) -> Result<()>,
) -> Result<Reader<BufReader<Box<dyn Read>>>> {
    let name = path.display().to_string();
    let input: Box<dyn Read> = if is_std_stream(path) {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(path).with_context(|| format!("opening {name}"))?)
    };
    let mut reader = Reader::new(BufReader::new(input)).with_context(|| name.clone())?;
    while let Some((frame, offset)) = reader.next_frame_located().with_context(|| name.clone())? {
        each(FrameEntry {
            number: frame.number,
            offset,
            len_bytes: frame.header.block_len(reader.header()),
            header: frame.header,
        })?;
    }
    Ok(reader)
}

fn print_frame(out: &mut impl Write, f: &FrameEntry) -> Result<()> {
    let g = f.header.geometry;
    say!(
        out,
        "  {:<6} {:>7} {:>6} {:>8}  {:<9} {:>5}  {:<6} {:>6}",
        f.number,
        f.offset,
        f.len_bytes,
        f.header.payload_len,
        format!("{}x{}x{}", g.width, g.height, g.channels),
        f.header.stages,
        mode_name(f.header.coding_mode),
        f.len_bytes * 8
    );
    Ok(())
}

pub fn info(a: InspectArgs) -> Result<()> {
    let name = a.input.display().to_string();
    let stdin = is_std_stream(&a.input);
    if !stdin && a.input.is_dir() {
        bail!("{name} is a directory");
    }
    // A --model that does not load is an error, as for every command; the
    // built-in model is only looked for.
    let models = match a.model.model {
        Some(_) => a.model.load_for_decoding()?,
        None => Model::default_model().into_iter().collect(),
    };
    // One pass sums the frames and keeps the first few; `-v` lists the
    // rest in a second pass, or, for input that cannot be read twice (a
    // pipe), keeps them all in the first.
    let regular = !stdin && std::fs::metadata(&a.input).is_ok_and(|m| m.is_file());
    let keep = if a.verbose && !regular {
        usize::MAX
    } else {
        INFO_FRAMES
    };
    let mut first = Vec::new();
    let mut last: Option<FrameEntry> = None;
    let (mut total, mut payload) = (0u64, 0u64);
    let mut levels = std::collections::BTreeMap::new();
    let reader = scan_frames(&a.input, |f| {
        total += f.len_bytes;
        payload += u64::from(f.header.payload_len);
        *levels.entry(f.header.stages).or_insert(0u64) += 1;
        if first.len() < keep {
            first.push(f);
        }
        last = Some(f);
        Ok(())
    })?;
    // The reader has checked that nothing follows the stream's end.
    let file_len = reader.bytes_read();
    let n = reader.frames_read();
    let h = reader.header();
    let model_note = if h.model_embedded {
        "embedded in the file".to_string()
    } else {
        match models.iter().find(|m| m.id() == h.model_id) {
            Some(m) => format!("known: {} {}", m.name(), m.version()),
            None => "not available here (pass it with --model PATH)".to_string(),
        }
    };
    let mut out = std::io::stdout().lock();
    say!(out, "file:       {name} ({file_len} bytes)");
    say!(
        out,
        "format:     vqz {}.{}",
        h.version_major,
        h.version_minor
    );
    say!(out, "model:      {} ({model_note})", hex(&h.model_id.0));
    let g = h.default_geometry;
    say!(
        out,
        "geometry:   {}x{}, {} channel{} (default), grid stride {}",
        g.width,
        g.height,
        g.channels,
        if g.channels == 1 { "" } else { "s" },
        1u32 << h.grid_stride_log2
    );
    say!(out, "frames:     {n}");
    match &last {
        Some(last) if last.header.final_frame => {
            say!(
                out,
                "ends with:  final frame {} (no end marker)",
                last.number
            )
        }
        _ => say!(out, "ends with:  end marker (frame count {n})"),
    }
    if n > 0 {
        say!(
            out,
            "per image:  {:.1} bits in the stream ({:.1} payload), {:.1} bits with the file's overhead shared",
            total as f64 * 8.0 / n as f64,
            payload as f64 * 8.0 / n as f64,
            file_len as f64 * 8.0 / n as f64
        );
        let l: Vec<String> = levels
            .iter()
            .map(|(k, v)| format!("level {k}: {v}"))
            .collect();
        say!(out, "levels:     {}", l.join(", "));
        say!(
            out,
            "  frame   offset  bytes  payload  size      level  mode    bits"
        );
        for f in &first {
            print_frame(&mut out, f)?;
        }
        let listed = first.len() as u64;
        if a.verbose && listed < n {
            scan_frames(&a.input, |f| {
                if f.number >= listed {
                    print_frame(&mut out, &f)?;
                }
                Ok(())
            })?;
        } else if listed < n {
            say!(out, "  ... {} more (-v lists all)", n - listed);
        }
    }
    out.flush().context("writing standard output")
}

pub fn verify(v: VerifyArgs) -> Result<()> {
    let start = Instant::now();
    let a = v.inspect;
    let name = a.input.display().to_string();
    let models = a.model.load_for_decoding()?;
    let bytes = read_input(&a.input)?;
    let mut dec = Decoder::new(&bytes[..], &models.iter().collect::<Vec<_>>())
        .with_context(|| name.clone())?
        .with_max_samples(v.limits.max_samples)
        .with_max_work(v.limits.max_work);
    let mut count = 0u64;
    loop {
        match dec.next_batch(1024) {
            Ok(b) if b.is_empty() => break,
            Ok(b) => count += b.len() as u64,
            Err(e) => {
                return Err(decode_error(
                    e,
                    format!(
                        "{name}: bad after {count} good frame{}",
                        if count == 1 { "" } else { "s" }
                    ),
                ));
            }
        }
    }
    let mut out = std::io::stdout().lock();
    say!(
        out,
        "{name}: OK, {count} frame{} decoded, every CRC checked{}",
        if count == 1 { "" } else { "s" },
        if a.verbose {
            format!(" ({:.0} ms)", start.elapsed().as_secs_f64() * 1e3)
        } else {
            String::new()
        }
    );
    out.flush().context("writing standard output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_small_image_on_many_cores_caps_the_threads() {
        let digit = Some((28, 28));
        assert_eq!(small_job_threads(digit, 16, false), Some(SMALL_JOB_THREADS));
        assert_eq!(small_job_threads(digit, 4, false), None, "few cores");
        assert_eq!(
            small_job_threads(digit, 16, true),
            None,
            "the user's setting"
        );
        assert_eq!(small_job_threads(None, 16, false), None, "not one image");
        assert_eq!(
            small_job_threads(Some((1024, 1024)), 16, false),
            None,
            "large"
        );
        assert_eq!(
            small_job_threads(Some((181, 181)), 16, false),
            Some(SMALL_JOB_THREADS)
        );
        assert_eq!(small_job_threads(Some((182, 182)), 16, false), None);
    }
}
