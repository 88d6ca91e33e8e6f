//! `vqz evaluate`: a model's quality, codebook usage and bits per image on
//! a set of images, level by level.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use vqz::codec::DEFAULT_REFINE_STEPS;
use vqz::train::Dataset;
use vqz::train::report::evaluate_model;

use crate::cli_codec::ModelArgs;

#[derive(Args)]
pub struct EvaluateArgs {
    /// Images: an IDX file (plain or .gz) or a folder of PNGs.
    #[arg(long, default_value = "testdata/t10k-images-idx3-ubyte.gz")]
    data: PathBuf,
    /// Use only the first N images.
    #[arg(long)]
    limit: Option<usize>,
    /// Steps of decoder-in-the-loop refinement to encode with (0: off).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_REFINE_STEPS)]
    refine: u8,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(a: EvaluateArgs) -> Result<()> {
    let model = a.model.load()?;
    let mut data =
        Dataset::load(&a.data).with_context(|| format!("loading {}", a.data.display()))?;
    if let Some(n) = a.limit {
        data.truncate(n);
    }
    if data.is_empty() {
        bail!("no images to measure (--limit 0)");
    }
    println!(
        "model {} ({} {}), {} images of {}x{} from {}",
        model.id_hex(),
        model.name(),
        model.version(),
        data.len(),
        data.width,
        data.height,
        a.data.display()
    );
    println!();
    println!(
        "| level | PSNR of mean MSE (dB) | mean PSNR (dB) | uniform bits | unigram bits | context bits | stage's context bits | ANS payload bits | standalone file bytes | codes used per stage | perplexity per stage |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
    // Levels add one stage each, so a stage's cross-entropy under the
    // context prior is the difference between consecutive levels.
    let mut previous_bits = 0.0;
    for r in evaluate_model(&model, &data, a.refine)? {
        let used: Vec<String> = r.codes_used.iter().map(|u| u.to_string()).collect();
        let ppl: Vec<String> = r.perplexity.iter().map(|p| format!("{p:.0}")).collect();
        println!(
            "| {} | {:.2} | {:.2} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
            r.level,
            r.psnr_of_mean_mse_db,
            r.mean_psnr_db,
            r.uniform_bits,
            r.unigram_bits
                .map_or_else(|| "–".to_string(), |b| format!("{b:.1}")),
            r.context_bits,
            r.context_bits - previous_bits,
            r.payload_bits,
            r.file_bytes,
            used.join(" / "),
            ppl.join(" / ")
        );
        previous_bits = r.context_bits;
    }
    Ok(())
}
