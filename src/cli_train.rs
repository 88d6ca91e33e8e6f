//! `vqz train`: flags, progress display and reports around `vqz::train`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use vqz::atomic_write::{folder_of, same_file, write_atomic};
use vqz::codec::{Model, hex};
use vqz::entropy::{MAX_CLASSES, MAX_EMBED, MAX_HIDDEN, PRIOR_VERSION, Prior};
use vqz::model::{ModelConfig, ModelFile, model_sha256, read_model_file};
use vqz::train::learned_prior::{LearnedPriorOptions, train_learned_prior};
use vqz::train::prior::{
    PriorOptions, PriorReport, encode_dataset, encode_dataset_with_codec, fit_and_report,
    fit_prior, prior_report, refit_prior_to_codec,
};
use vqz::train::{
    Checkpoint, Dataset, EpochReport, StepReport, TrainObserver, TrainOptions, Trainer,
};

#[derive(Args)]
pub struct TrainArgs {
    /// Training images: an IDX file (plain or .gz) or a folder of PNG files.
    #[arg(long)]
    data: PathBuf,
    /// Where to write the trained model (safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Checkpoint written after every epoch [default: OUT with .ckpt appended].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Continue from a checkpoint (the model's shape comes from it).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Continue training the network of this model file, picking every
    /// training index as its codec does: priced by the file's own prior in
    /// context, with its rate weights. The model's shape comes from the
    /// file; a new prior is fitted after. With --resume, the checkpoint's
    /// weights are used and the file gives the prior and rate weights: it
    /// must be the file the checkpoint's run was given (checkpoints record
    /// it), and a checkpoint of a run without --from resumes without it.
    #[arg(long, value_name = "MODEL", conflicts_with = "prior_only")]
    from: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Entries per codebook (K) [default: 512]. The shape options are for a
    /// new model: a resumed or continued one keeps its own shape.
    #[arg(long, value_name = "K")]
    codebook_size: Option<usize>,
    /// Dimension of latent and codebook vectors (D) [default: 16].
    #[arg(long, value_name = "D")]
    latent_dim: Option<usize>,
    /// Residual quantiser stages (quality levels) [default: 4].
    #[arg(long, value_name = "S")]
    stages: Option<usize>,
    /// Channels of the network at the latent resolution [default: 64].
    #[arg(long, value_name = "N")]
    channels_low: Option<usize>,
    /// Channels of the network at half the image resolution [default: 32].
    #[arg(long, value_name = "N")]
    channels_high: Option<usize>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Images held out for validation (the last ones of the data).
    #[arg(long, default_value_t = 5000)]
    validation: usize,
    /// Use only the first N images of the data.
    #[arg(long)]
    limit: Option<usize>,
    /// Update codebooks by exponential moving averages (decay 0.99).
    #[arg(long)]
    ema: bool,
    /// Re-seed unused codes every N steps (0: never).
    #[arg(long, default_value_t = 200)]
    restart_every: u64,
    /// Entropy-constrained VQ: steer each stage toward its entropy in bits
    /// per index, comma-separated from stage 1 (e.g. `1.5,2,2.5,3`); stages
    /// without a value (or with 0) pick the nearest code.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    target_entropy: Vec<f64>,
    /// Weight of the commitment loss (beta).
    #[arg(long, default_value_t = 0.25)]
    commitment: f64,
    /// Average the reconstruction error over images plainly, instead of
    /// weighting each quality level equally.
    #[arg(long)]
    no_level_balance: bool,
    /// Stop re-seeding unused codes after this fraction of training.
    #[arg(long, default_value_t = 0.6)]
    restart_until: f64,
    /// Name recorded in the model file [default: custom, or with
    /// --prior-only the model's own].
    #[arg(long)]
    name: Option<String>,
    /// Version recorded in the model file [default: 1, or with --prior-only
    /// the model's own].
    #[arg(long)]
    model_version: Option<String>,
    /// Classes a neighbouring index is reduced to in the context prior.
    #[arg(long, default_value_t = 16)]
    prior_classes: u8,
    /// Observations a context needs to get its own probability table.
    #[arg(long, default_value_t = 64)]
    prior_min_count: u64,
    /// Pseudo-counts mixed into every context table.
    #[arg(long, default_value_t = 4.0)]
    prior_smoothing: f64,
    /// Rounds of re-fitting the prior to the codec's own index choices
    /// (which trade distance against code length under the prior itself).
    #[arg(long, default_value_t = 1)]
    prior_rounds: usize,
    /// The entropy prior the model ships: `learned` (a small integer network
    /// over a wide neighbourhood, trained last on the codec's own index
    /// choices) or `classes` (counted class contexts only).
    #[arg(long, value_enum, default_value_t = PriorKind::Learned)]
    prior: PriorKind,
    /// Embedding width of the learned prior.
    #[arg(long, default_value_t = LearnedPriorOptions::default().embed)]
    prior_embed: u8,
    /// Hidden width of the learned prior.
    #[arg(long, default_value_t = LearnedPriorOptions::default().hidden)]
    prior_hidden: u16,
    /// Passes over the training indices for each stage of the learned prior.
    #[arg(long, default_value_t = LearnedPriorOptions::default().epochs)]
    prior_epochs: usize,
    /// Keep the network of this model file and fit only a new prior to DATA
    /// (no network training; the model's shape comes from the file).
    #[arg(
        long,
        value_name = "MODEL",
        conflicts_with_all = [
            "resume", "checkpoint", "epochs", "batch_size", "lr", "ema", "restart_every",
            "restart_until", "target_entropy", "commitment", "no_level_balance",
        ]
    )]
    prior_only: Option<PathBuf>,
    /// Overwrite OUT and the checkpoint if they exist.
    #[arg(short, long)]
    force: bool,
}

/// Which entropy prior `vqz train` fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PriorKind {
    Learned,
    Classes,
}

struct Progress {
    bar: Option<ProgressBar>,
}

impl TrainObserver for Progress {
    fn step(&mut self, r: &StepReport) {
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(r.steps_per_epoch as u64);
            b.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        bar.set_prefix(format!("epoch {}/{}", r.epoch + 1, r.epochs));
        bar.set_length(r.steps_per_epoch as u64);
        bar.set_position(r.step_in_epoch as u64);
        bar.set_message(format!(
            "mse {:.5} cb {:.4} commit {:.4} {:.0} img/s",
            r.mse, r.codebook_loss, r.commitment_loss, r.images_per_s
        ));
    }

    fn epoch(&mut self, r: &EpochReport) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        let v = &r.validation;
        let psnr: Vec<String> = v
            .psnr_db_per_level()
            .iter()
            .map(|p| format!("{p:.2}"))
            .collect();
        let used: Vec<String> = v.codes_used.iter().map(|u| u.to_string()).collect();
        let ppl: Vec<String> = v.perplexity.iter().map(|p| format!("{p:.0}")).collect();
        eprintln!(
            "epoch {}/{}: train mse {:.5}, {:.0} img/s, {:.0} s, {} codes restarted; validation PSNR per level [{}] dB, codes used [{}], perplexity [{}]",
            r.epoch + 1,
            r.epochs,
            r.train_mse,
            r.images_per_s,
            r.seconds,
            r.restarted_codes,
            psnr.join(", "),
            used.join(", "),
            ppl.join(", ")
        );
    }
}

impl TrainArgs {
    /// The shape a new model gets: the shape options, defaults for the rest.
    fn shape(&self) -> ModelConfig {
        let d = ModelConfig::default();
        ModelConfig {
            codebook_size: self.codebook_size.unwrap_or(d.codebook_size),
            latent_dim: self.latent_dim.unwrap_or(d.latent_dim),
            stages: self.stages.unwrap_or(d.stages),
            channels_low: self.channels_low.unwrap_or(d.channels_low),
            channels_high: self.channels_high.unwrap_or(d.channels_high),
        }
    }
}

/// Refuses shape options that differ from the shape of `config`, the model
/// `what` that a run keeps: they would be ignored.
fn check_shape_options(a: &TrainArgs, config: &ModelConfig, what: &str) -> Result<()> {
    let given = [
        ("--codebook-size", a.codebook_size, config.codebook_size),
        ("--latent-dim", a.latent_dim, config.latent_dim),
        ("--stages", a.stages, config.stages),
        ("--channels-low", a.channels_low, config.channels_low),
        ("--channels-high", a.channels_high, config.channels_high),
    ];
    for (flag, value, kept) in given {
        if let Some(v) = value.filter(|&v| v != kept) {
            bail!("{flag} {v}: {what} keeps its shape, {}", config.to_text());
        }
    }
    Ok(())
}

pub fn run(a: TrainArgs) -> Result<()> {
    if a.out.exists() && !a.force {
        bail!("{} already exists; use -f to overwrite", a.out.display());
    }
    check_options(&a)?;
    if let Some(path) = &a.prior_only {
        return refit_only(&a, path);
    }
    // A resumed run has the checkpoint's stages (and must have its targets).
    let stages = a.shape().stages;
    if a.resume.is_none() && a.target_entropy.len() > stages {
        bail!(
            "--target-entropy has {} values for {stages} stages",
            a.target_entropy.len()
        );
    }
    if let Some(t) = a
        .target_entropy
        .iter()
        .find(|t| !(t.is_finite() && **t >= 0.0))
    {
        bail!("--target-entropy {t}: expected bits per index, 0 or more");
    }
    if !(0.0..=1.0).contains(&a.restart_until) {
        bail!(
            "--restart-until {}: expected a fraction of the run, 0 to 1",
            a.restart_until
        );
    }
    if !(a.commitment.is_finite() && a.commitment >= 0.0) {
        bail!(
            "--commitment {}: expected a weight, 0 or more",
            a.commitment
        );
    }
    let mut data = Dataset::load(&a.data)?;
    if let Some(n) = a.limit {
        data.truncate(n);
    }
    let options = TrainOptions {
        epochs: a.epochs,
        batch_size: a.batch_size,
        learning_rate: a.lr,
        seed: a.seed,
        validation_images: a.validation,
        ema: a.ema,
        restart_every: a.restart_every,
        restart_until: a.restart_until,
        target_entropy: a.target_entropy.clone(),
        commitment_weight: a.commitment,
        balance_levels: !a.no_level_balance,
        ..TrainOptions::default()
    };
    let checkpoint_path = a.checkpoint.clone().unwrap_or_else(|| {
        let mut p = a.out.clone().into_os_string();
        p.push(".ckpt");
        PathBuf::from(p)
    });
    check_checkpoint_path(&a, &checkpoint_path)?;
    let source = match &a.from {
        Some(_) if a.prior == PriorKind::Classes && a.prior_rounds == 0 => {
            bail!(
                "--from with --prior classes needs --prior-rounds 1 or more to fit the class prior"
            )
        }
        Some(_) if !a.target_entropy.is_empty() => {
            bail!("--from keeps the model's rate weights; --target-entropy does not apply")
        }
        Some(path) => {
            let bytes =
                read_model_file(path).with_context(|| format!("reading {}", path.display()))?;
            let file = ModelFile::from_bytes(&bytes)
                .with_context(|| format!("loading {}", path.display()))?;
            let prior = file
                .prior
                .as_deref()
                .with_context(|| format!("{} has no prior", path.display()))?;
            let prior = Prior::from_bytes(prior)
                .with_context(|| format!("loading the prior of {}", path.display()))?;
            Some((file, prior, hex(&model_sha256(&bytes))))
        }
        None => None,
    };
    let mut trainer = match (&a.resume, &source) {
        (Some(path), _) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let ckpt = Checkpoint::from_bytes(&bytes)
                .with_context(|| format!("loading checkpoint {}", path.display()))?;
            // The run's index choice must be the checkpoint's.
            let given = source.as_ref().map(|(_, _, sha)| sha);
            let short = |sha: &str| sha.get(..16).unwrap_or(sha).to_string();
            match (&ckpt.priced_by, given) {
                (Some(want), None) => bail!(
                    "{} is a checkpoint of a --from run (model SHA-256 {}…); resume it with --from and that model",
                    path.display(),
                    short(want)
                ),
                (Some(want), Some(got)) if want != got => bail!(
                    "{} is a checkpoint of a --from run on the model with SHA-256 {}…, not on --from's ({}…)",
                    path.display(),
                    short(want),
                    short(got)
                ),
                (None, Some(_)) => bail!(
                    "{} is a checkpoint of a run without --from; resume it without --from",
                    path.display()
                ),
                _ => {}
            }
            let (done, step) = (ckpt.epochs_done, ckpt.step);
            let trainer = Trainer::resume(ckpt, options)?;
            check_shape_options(&a, trainer.config(), "the model resumed")?;
            eprintln!("resuming after epoch {done} (step {step})");
            trainer
        }
        (None, Some((file, _, _))) => {
            check_shape_options(&a, &file.config, "--from's model")?;
            Trainer::from_model(file, options)?
        }
        (None, None) => {
            let config = a.shape();
            config.validate()?;
            Trainer::new(config, options)?
        }
    };
    if let Some((file, prior, sha)) = &source {
        if file.config != *trainer.config() {
            bail!(
                "the checkpoint's model ({}) is not the shape of --from's ({})",
                trainer.config().to_text(),
                file.config.to_text()
            );
        }
        trainer.price_with(prior.clone(), file.rate_weights.clone(), sha.clone())?;
    }
    warn_of_validation(a.validation, data.len());
    eprintln!(
        "training on {} images of {}x{} ({} parameters, config {})",
        data.len(),
        data.width,
        data.height,
        trainer.params().num_parameters(),
        trainer.config().to_text()
    );
    let start = Instant::now();
    trainer.run(&data, Some(&checkpoint_path), &mut Progress { bar: None })?;
    eprintln!("training took {:.0} s", start.elapsed().as_secs_f64());
    let (train_ids, val_ids) = trainer.split(&data)?;
    if let Some((file, _, _)) = source {
        // The network moved under the file's prior: fit a new one to it.
        let mut file = ModelFile {
            name: a.name.clone().unwrap_or(file.name),
            version: a.model_version.clone().unwrap_or(file.version),
            params: trainer.params().clone(),
            ..file
        };
        fit_priors(
            &a,
            &mut file,
            &data,
            &train_ids,
            &val_ids,
            prior_options(&a),
        )?;
        return write_model(&a, &file);
    }
    let start = Instant::now();
    let penalties = trainer.penalties()?;
    let train_grids = encode_dataset(trainer.model(), &data, &train_ids, penalties.as_deref())?;
    let val_grids = encode_dataset(trainer.model(), &data, &val_ids, penalties.as_deref())?;
    let cfg = *trainer.config();
    let num_symbols = vec![cfg.codebook_size as u16; cfg.stages];
    let options = prior_options(&a);
    let (prior, report) = fit_and_report(&num_symbols, &train_grids, &val_grids, options)?;
    eprintln!(
        "fitted the context prior on {} images in {:.0} s; validation bits per image by level ({} images):",
        train_grids.len(),
        start.elapsed().as_secs_f64(),
        report.images
    );
    print_prior_report(&report);
    let mut file = ModelFile {
        name: a.name.clone().unwrap_or_else(|| "custom".into()),
        version: a.model_version.clone().unwrap_or_else(|| "1".into()),
        config: cfg,
        params: trainer.params().clone(),
        prior: Some(prior.to_bytes()),
        rate_weights: trainer.rate_weights().iter().map(|&w| w as f32).collect(),
    };
    fit_priors(&a, &mut file, &data, &train_ids, &val_ids, options)?;
    write_model(&a, &file)
}

/// Re-fits the class prior of `file` to the codec's own choices
/// (`--prior-rounds`), then, for `--prior learned`, trains the learned prior
/// on the choices the codec makes under the last class prior.
fn fit_priors(
    a: &TrainArgs,
    file: &mut ModelFile,
    data: &Dataset,
    train_ids: &[usize],
    val_ids: &[usize],
    options: PriorOptions,
) -> Result<()> {
    for round in 1..=a.prior_rounds {
        let start = Instant::now();
        let model = Model::from_bytes(file.to_bytes()?.into())?;
        let (prior, report) = refit_prior_to_codec(&model, data, train_ids, val_ids, options)?;
        eprintln!(
            "round {round}: re-fitted the class prior to the codec's choices in {:.0} s; validation bits per image by level:",
            start.elapsed().as_secs_f64()
        );
        print_prior_report(&report);
        file.prior = Some(prior.to_bytes());
    }
    if a.prior == PriorKind::Classes {
        return Ok(());
    }
    let start = Instant::now();
    let model = Model::from_bytes(file.to_bytes()?.into())?;
    let train = encode_dataset_with_codec(&model, data, train_ids)?;
    let validation = encode_dataset_with_codec(&model, data, val_ids)?;
    let num_symbols = vec![file.config.codebook_size as u16; file.config.stages];
    let learned = LearnedPriorOptions {
        embed: a.prior_embed,
        hidden: a.prior_hidden,
        epochs: a.prior_epochs,
        seed: a.seed,
        ..LearnedPriorOptions::default()
    };
    eprintln!(
        "training the learned prior (E {}, H {}) on {} images",
        learned.embed,
        learned.hidden,
        train.len()
    );
    let (prior, stages) = train_learned_prior(&num_symbols, &train, &validation, learned, |m| {
        eprintln!("  {m} ({:.0} s)", start.elapsed().as_secs_f64())
    })?;
    let report = prior_report(&num_symbols, &train, &prior, &validation)?;
    eprintln!(
        "trained the learned prior in {:.0} s; validation bits per image by level ({} images):",
        start.elapsed().as_secs_f64(),
        report.images
    );
    print_prior_report(&report);
    for s in &stages {
        eprintln!(
            "  stage {}: float network {:.1} bits per image",
            s.stage + 1,
            s.float_bits
        );
    }
    file.prior = Some(prior.to_bytes());
    Ok(())
}

/// Refuses, before any training, options that cannot work and outputs
/// that would replace an input or could not be written at the end.
fn check_options(a: &TrainArgs) -> Result<()> {
    let inputs = [
        ("--data", Some(&a.data)),
        ("--from", a.from.as_ref()),
        ("--prior-only", a.prior_only.as_ref()),
        ("--resume", a.resume.as_ref()),
    ];
    for (flag, path) in inputs {
        if let Some(p) = path.filter(|p| same_file(p, &a.out)) {
            bail!(
                "--out {} is {flag} {}: name another output (even -f does not replace an input)",
                a.out.display(),
                p.display()
            );
        }
    }
    check_writable_name("--out", &a.out)?;
    if !(a.lr.is_finite() && a.lr > 0.0) {
        bail!("--lr {}: expected a learning rate above 0", a.lr);
    }
    if a.batch_size == 0 {
        bail!("--batch-size 0: expected 1 or more images per step");
    }
    if a.epochs == 0 && a.prior_only.is_none() {
        bail!("--epochs 0 trains nothing (--prior-only MODEL fits a new prior alone)");
    }
    if !(1..=MAX_EMBED).contains(&a.prior_embed) {
        bail!("--prior-embed {}: expected 1 to {MAX_EMBED}", a.prior_embed);
    }
    if !(1..=MAX_HIDDEN).contains(&a.prior_hidden) {
        bail!(
            "--prior-hidden {}: expected 1 to {MAX_HIDDEN}",
            a.prior_hidden
        );
    }
    if !(1..=MAX_CLASSES).contains(&a.prior_classes) {
        bail!(
            "--prior-classes {}: expected 1 to {MAX_CLASSES}",
            a.prior_classes
        );
    }
    if !(a.prior_smoothing.is_finite() && a.prior_smoothing >= 0.0) {
        bail!(
            "--prior-smoothing {}: expected a pseudo-count, 0 or more",
            a.prior_smoothing
        );
    }
    if a.prior == PriorKind::Learned && a.prior_epochs == 0 {
        bail!("--prior-epochs 0 trains no learned prior (--prior classes keeps the class prior)");
    }
    Ok(())
}

/// Says when `--validation` holds out other than it asks: training holds
/// out at most half the images, and none leaves nothing to validate on.
fn warn_of_validation(validation: usize, images: usize) {
    if validation == 0 {
        eprintln!(
            "vqz: warning: --validation 0 holds out no images: the validation figures measure nothing"
        );
    } else if validation > images / 2 {
        eprintln!(
            "vqz: warning: --validation {validation} is more than half of the {images} images; holding out {}",
            images / 2
        );
    }
}

/// Refuses a file name `path` (for `flag`) that names a folder or lies in
/// a folder that does not exist: found at the end of a run, that would cost
/// the run.
fn check_writable_name(flag: &str, path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!("{flag} {} is a folder: name a file", path.display());
    }
    let folder = folder_of(path);
    if !folder.is_dir() {
        bail!(
            "{flag} {}: the folder {} does not exist",
            path.display(),
            folder.display()
        );
    }
    Ok(())
}

/// The checkpoint is rewritten every epoch: it must not be one of the run's
/// other files, nor an existing file the user did not offer (`-f`, or the
/// checkpoint being resumed).
fn check_checkpoint_path(a: &TrainArgs, checkpoint: &Path) -> Result<()> {
    let others = [
        ("--out", Some(&a.out)),
        ("--data", Some(&a.data)),
        ("--from", a.from.as_ref()),
    ];
    for (flag, path) in others {
        if let Some(p) = path.filter(|p| same_file(p, checkpoint)) {
            bail!(
                "the checkpoint {} would overwrite {flag} {}; name another with --checkpoint",
                checkpoint.display(),
                p.display()
            );
        }
    }
    check_writable_name("--checkpoint", checkpoint)?;
    let resumed = a
        .resume
        .as_deref()
        .is_some_and(|r| same_file(r, checkpoint));
    if checkpoint.exists() && !a.force && !resumed {
        bail!(
            "the checkpoint {} already exists; use -f to overwrite it, or --resume it",
            checkpoint.display()
        );
    }
    Ok(())
}

/// `--prior-only`: a new prior for an existing model's network.
fn refit_only(a: &TrainArgs, path: &Path) -> Result<()> {
    let bytes = read_model_file(path).with_context(|| format!("reading {}", path.display()))?;
    let mut file =
        ModelFile::from_bytes(&bytes).with_context(|| format!("loading {}", path.display()))?;
    check_shape_options(a, &file.config, "--prior-only's model")?;
    if let Some(name) = &a.name {
        file.name.clone_from(name);
    }
    if let Some(version) = &a.model_version {
        file.version.clone_from(version);
    }
    let mut data = Dataset::load(&a.data)?;
    if let Some(n) = a.limit {
        data.truncate(n);
    }
    if a.validation >= data.len() {
        bail!(
            "--validation {} leaves no training images of {}",
            a.validation,
            data.len()
        );
    }
    let split = data.len() - a.validation;
    let train_ids: Vec<usize> = (0..split).collect();
    let val_ids: Vec<usize> = (split..data.len()).collect();
    eprintln!(
        "fitting a new prior for {} ({}) on {} images, validating on {}",
        path.display(),
        file.config.to_text(),
        train_ids.len(),
        val_ids.len()
    );
    let options = prior_options(a);
    if file
        .prior
        .as_deref()
        .map(Prior::from_bytes)
        .and_then(Result::ok)
        .is_none_or(|p| p.version() != PRIOR_VERSION)
    {
        // The codec's choices need a class prior to start from.
        let model = Model::from_bytes(file.to_bytes()?.into())?;
        let grids = encode_dataset_with_codec(&model, &data, &train_ids)?;
        let num_symbols = vec![file.config.codebook_size as u16; file.config.stages];
        file.prior = Some(fit_prior(&num_symbols, &grids, options)?.to_bytes());
    }
    fit_priors(a, &mut file, &data, &train_ids, &val_ids, options)?;
    write_model(a, &file)
}

/// Writes `file` to `--out` atomically (refusing to overwrite without -f).
fn write_model(a: &TrainArgs, file: &ModelFile) -> Result<()> {
    let bytes = file.to_bytes()?;
    write_atomic(&a.out, &bytes, a.force)
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("wrote {} ({} bytes)", a.out.display(), bytes.len());
    Ok(())
}

/// The class prior's options from the command line.
fn prior_options(a: &TrainArgs) -> PriorOptions {
    PriorOptions {
        num_classes: a.prior_classes,
        min_count: a.prior_min_count,
        smoothing: a.prior_smoothing,
    }
}

fn print_prior_report(report: &PriorReport) {
    for (s, ((uniform, unigram), context)) in report
        .uniform_bits
        .iter()
        .zip(&report.unigram_bits)
        .zip(&report.context_bits)
        .enumerate()
    {
        eprintln!(
            "  level {}: uniform {uniform:.1}, unigram {unigram:.1}, context {context:.1}",
            s + 1
        );
    }
}
