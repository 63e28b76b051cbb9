//! `nasbench synth`: a deterministic synthetic release file from the generated search space.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use nasbench::cell::generate::{GenerateOptions, generate};
use nasbench::dataset::synth::{FULL_BUDGETS, ONLY108_BUDGETS, SynthOptions, write_synthetic};

use super::progress::Bar;

/// Write a synthetic file in the exact release format, for tests and
/// benchmarks.
///
/// One record per (cell, budget, repeat) for the cells of the generated
/// search space, cell by cell. The metrics are made up (deterministic in
/// --seed, plausible in range: accuracies are multiples of 1/9984, training
/// time grows with parameters and epochs) and NOT NAS-Bench-101 results:
/// each run's first point has the checkpoint path `synthetic:`, a mark
/// that `nasbench ingest` turns into the source 'synthetic' of the run's
/// rows (and stores no path).
///
/// With all 423,624 cells, --only108 has the size of nasbench_only108.tfrecord
/// (1,270,872 records) and --full that of nasbench_full.tfrecord (5,083,488).
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  nasbench synth --only108 -o synthetic_only108.tfrecord
  nasbench synth --full --cells 1000 -o small.tfrecord")]
pub struct Args {
    /// Output file.
    #[arg(short, long, value_name = "FILE.tfrecord")]
    output: PathBuf,
    /// The four budgets of nasbench_full (4, 12, 36, 108 epochs).
    #[arg(long, conflicts_with_all = ["only108", "budgets"])]
    full: bool,
    /// Only the 108-epoch budget, as nasbench_only108 (the default).
    #[arg(long)]
    only108: bool,
    /// Explicit budgets, comma-separated (e.g. 4,108).
    #[arg(long, value_delimiter = ',', value_name = "EPOCHS")]
    budgets: Vec<i64>,
    /// Repeats per cell and budget.
    #[arg(long, default_value_t = 3)]
    repeats: u32,
    /// Only the first N cells of the space (in generation order).
    #[arg(long, value_name = "N")]
    cells: Option<usize>,
    /// Seed of the made-up metrics.
    #[arg(long, default_value_t = 101)]
    seed: u64,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let budgets = if a.full {
        FULL_BUDGETS.to_vec()
    } else if !a.budgets.is_empty() {
        a.budgets.clone()
    } else {
        ONLY108_BUDGETS.to_vec()
    };
    if let Some(b) = budgets.iter().find(|&&b| b <= 0 || b > i64::from(i32::MAX)) {
        bail!("--budgets: {b} is not a positive number of epochs");
    }
    if a.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let bar = Bar::new(a.quiet);
    let space = generate(&GenerateOptions::default(), &bar)?;
    let cells = match a.cells {
        Some(n) => &space.cells[..n.min(space.cells.len())],
        None => &space.cells[..],
    };
    bar.start_spinner("writing records");
    let opts = SynthOptions {
        budgets,
        repeats: a.repeats,
        seed: a.seed,
    };
    let s = write_synthetic(&a.output, cells, &opts)
        .with_context(|| format!("writing {}", a.output.display()))?;
    bar.finish();
    eprintln!(
        "wrote {} synthetic records ({} bytes, {} cells) to {} in {:.2} s",
        s.records,
        s.bytes,
        cells.len(),
        a.output.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
