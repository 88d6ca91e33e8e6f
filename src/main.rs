//! The `vqz` command-line tool: argument parsing and messages only; the
//! work is done by the library.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli_bench;
mod cli_codec;
mod cli_evaluate;
mod cli_train;

// candle allocates a fresh buffer for every tensor op; mimalloc reuses
// memory instead of faulting in new pages each time (1.5x faster training).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "vqz",
    version,
    about = "A learned image codec for small images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compress images (or IDX digit files) to .vqz.
    Compress(cli_codec::CompressArgs),
    /// Decompress a .vqz file to PNG (a folder of PNGs, or IDX with --idx).
    Decompress(cli_codec::DecompressArgs),
    /// Describe a .vqz file: version, model, frames.
    Info(cli_codec::InspectArgs),
    /// Check every CRC and decode every frame of a .vqz file.
    Verify(cli_codec::VerifyArgs),
    /// Measure a model on a set of images: quality, codebook usage and bits per level.
    Evaluate(cli_evaluate::EvaluateArgs),
    /// Train a model on an IDX file (plain or .gz) or a folder of PNG images.
    Train(Box<cli_train::TrainArgs>),
    /// Measure vqz against PNG, JPEG, WebP, AVIF and JPEG XL: sizes, PSNR, speed.
    Bench(cli_bench::BenchArgs),
}

/// Lets a closed pipe end the process quietly, as it ends `cat` or `grep`:
/// `vqz info f.vqz | head -1` must not report a failed write (Rust ignores
/// SIGPIPE by default, so every later print would fail).
fn die_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; it only
    // puts back the default disposition of SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    die_quietly_on_closed_pipe();
    let cli = Cli::parse();
    let result: Result<()> = match cli.command {
        Command::Compress(args) => cli_codec::compress(args),
        Command::Decompress(args) => cli_codec::decompress(args),
        Command::Info(args) => cli_codec::info(args),
        Command::Verify(args) => cli_codec::verify(args),
        Command::Evaluate(args) => cli_evaluate::run(args),
        Command::Train(args) => cli_train::run(*args),
        Command::Bench(args) => cli_bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vqz: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, `a: b: c`, each cause once: many
/// errors already end with their cause's text, which `{:#}` would repeat.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_line_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let inner = anyhow::Error::new(io).context("reading m: no such file");
        assert_eq!(
            error_line(&inner.context("loading model m")),
            "loading model m: reading m: no such file"
        );
        let plain = anyhow::anyhow!("cause").context("what");
        assert_eq!(error_line(&plain), "what: cause");
    }
}
