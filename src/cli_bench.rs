//! `vqz bench`: argument handling and messages around `vqz::bench`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use vqz::atomic_write::write_atomic;
use vqz::bench::{self, BenchOptions, BenchRun, Progress};
use vqz::codec::{DEFAULT_REFINE_STEPS, Model};
use vqz::train::Dataset;

/// The MNIST test digits shipped in the repository.
const DEFAULT_DATA: &str = "testdata/t10k-images-idx3-ubyte.gz";

#[derive(Args)]
pub struct BenchArgs {
    /// Images: an IDX file (plain or .gz) or a folder of PNG images of one size
    /// [default: the 10,000 MNIST test digits in testdata/].
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Use only the first N images.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Folder for bench.md, bench.csv, rd.svg and contact.png (speed.md with --speed).
    #[arg(long, value_name = "DIR", default_value = "bench-out")]
    out: PathBuf,
    /// Overwrite the report files of an earlier run in the output folder.
    #[arg(short, long)]
    force: bool,
    /// Model file to use instead of the built-in MNIST model.
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Measure speed instead: the network alone at batch 256 and 1, the whole
    /// codec on one digit and on all digits as one stream, and PNG.
    #[arg(long)]
    speed: bool,
    /// Timed runs per measurement; the median is reported. Sizes and PSNR
    /// come from the first run, over every image; later runs time only the
    /// first 1,000 images for vqz and 200 for WebP, AVIF and JPEG XL.
    #[arg(long, value_name = "N", default_value_t = 3)]
    repeats: usize,
    /// Run WebP, AVIF and JPEG XL on the first N images only
    /// (one process per image is slow) [default: 1000; 0: all images].
    #[arg(long, value_name = "N")]
    external_limit: Option<usize>,
    /// Skip WebP, AVIF and JPEG XL even when their tools are installed.
    #[arg(long)]
    no_external: bool,
    /// Steps of decoder-in-the-loop refinement vqz encodes with (0: off).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_REFINE_STEPS)]
    refine: u8,
}

/// Drives an indicatif bar, one step after another.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        self.0.set_prefix(what.to_string());
        self.0.set_length(total);
        self.0.set_position(0);
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

fn bar() -> Bar {
    if !std::io::stderr().is_terminal() {
        return Bar(ProgressBar::hidden());
    }
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Bar(b)
}

pub fn run(a: BenchArgs) -> Result<()> {
    // Refuse up front, not after a run of many minutes.
    if a.out.exists() && !a.out.is_dir() {
        bail!(
            "--out {} is a file: the report goes into a folder",
            a.out.display()
        );
    }
    let names: &[&str] = if a.speed {
        &["speed.md"]
    } else {
        &BenchRun::FILES
    };
    let earlier = names.iter().map(|n| a.out.join(n)).find(|p| p.exists());
    if let Some(p) = earlier.filter(|_| !a.force) {
        bail!("{} already exists (use -f to overwrite)", p.display());
    }
    let data_path = a
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
    let mut data = Dataset::load(&data_path).with_context(|| {
        if a.data.is_none() {
            format!(
                "loading the default images {DEFAULT_DATA} (run from the vqz source folder, or pass --data PATH)"
            )
        } else {
            format!("loading {}", data_path.display())
        }
    })?;
    if let Some(n) = a.limit {
        data.truncate(n);
    }
    let load_model = || match &a.model {
        Some(p) => Model::load(p),
        None => Model::default_model(),
    };
    let model = load_model().context("loading the model")?;
    let progress = bar();
    eprintln!(
        "vqz bench: {} images of {}x{} from {}, model {} {} ({}), {} CPU cores",
        data.len(),
        data.width,
        data.height,
        data_path.display(),
        model.name(),
        model.version(),
        model.id_hex(),
        bench::cores()
    );

    if a.speed {
        let report = bench::speed::run(&load_model, &data, a.repeats, a.refine, &progress)?;
        progress.0.finish_and_clear();
        let md = report.to_markdown();
        print!("{md}");
        std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
        let path = a.out.join("speed.md");
        write_atomic(&path, md.as_bytes(), a.force)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("vqz bench: wrote {}", path.display());
        return Ok(());
    }

    let options = BenchOptions {
        repeats: a.repeats,
        external: !a.no_external,
        external_limit: match a.external_limit {
            Some(0) => None,
            Some(n) => Some(n),
            None => BenchOptions::default().external_limit,
        },
        refine_steps: a.refine,
        ..BenchOptions::default()
    };
    let result = bench::run(&model, &data, &options, &progress)?;
    progress.0.finish_and_clear();
    for note in &result.report.notes {
        eprintln!("vqz bench: {note}");
    }
    print!("{}", result.report.to_markdown());
    result.write_to(&a.out)?;
    eprintln!(
        "vqz bench: wrote {} to {}",
        BenchRun::FILES.join(", "),
        a.out.display()
    );
    Ok(())
}
