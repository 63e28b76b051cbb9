//! `nasbench train`, `synth-cifar`, `worker` and `ingest-runs`: training cells with the NAS-Bench-101 protocol and storing the runs as rows.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nasbench::cell::parse::{parse_matrix, parse_ops};
use nasbench::cell::spec::ModelSpec;
use nasbench::train::backend::Backend;
use nasbench::train::data;
use nasbench::train::rows::{self, RunRecord};
use nasbench::train::trainer::{self, EvalPoint, RunOptions, TrainConfig, TrainProgress};
use serde_json::json;

/// Which backend trains.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The CPU reference backend (all cores).
    Cpu,
    /// The CUDA backend (the `cuda` feature, on by default).
    Cuda,
}

/// The training options shared by `train` and `worker`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Training budget in epochs (the original's `train_epochs`).
    #[arg(long, default_value_t = 108.0)]
    epochs: f64,
    /// CIFAR-10: a folder holding `cifar-10-batches-bin/`,
    /// `cifar-10-batches-py/` or the original's TFRecords
    /// (`nasbench synth-cifar DIR` writes a synthetic one).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Backend.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
    /// A config key of the original (`stem_filter_size`, `num_stacks`,
    /// `num_modules_per_stack`, `batch_size`, `learning_rate`,
    /// `lr_decay_method`, `weight_decay`, `intermediate_evaluations`,
    /// `image_size`, ...), repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Seed of initialization, data order and augmentation (each repeat
    /// adds its index).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Hide the progress bar.
    #[arg(short, long)]
    quiet: bool,
}

impl TrainArgs {
    fn config(&self) -> anyhow::Result<TrainConfig> {
        let mut cfg = TrainConfig {
            train_epochs: self.epochs,
            ..TrainConfig::default()
        };
        for kv in &self.config {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--config {kv:?}: expected KEY=VALUE"))?;
            cfg.set(k.trim(), v.trim())
                .with_context(|| format!("--config {kv}"))?;
        }
        cfg.check_key("train_epochs")
            .with_context(|| format!("--epochs {}", self.epochs))?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Train a cell with the exact NAS-Bench-101 protocol and store the runs
/// beside the dataset's rows.
///
/// Each repeat: a step with learning rate 0, evaluation, training to half
/// the epochs, evaluation, training to the end, evaluation (train-eval,
/// validation and test accuracy on full batches). Batch 256, TF1 RMSProp
/// (momentum 0.9, epsilon 1 inside the root), cosine decay of 0.2 by step,
/// weight decay 1e-4, augmentation by pad-crop-flip. The results go into
/// `--db` as `evaluations` rows with `source` = the run id and a
/// `training_runs` row, so `model_stats` shows them beside the dataset's
/// (`trained = true`).
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  nasbench synth-cifar data/
  nasbench train --matrix 0110000100010000 --ops input,conv3x3-bn-relu,maxpool3x3,output \\
      --data data/ --epochs 4 --repeats 1 --config stem_filter_size=16 --config num_stacks=1 \\
      --config num_modules_per_stack=1 --config image_size=16 --config batch_size=32 --db runs.duckdb
  nasbench train --dry-run --matrix 0111010000000100000010000100000000100000010000000 \\
      --ops input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output")]
pub struct Args {
    /// Adjacency matrix: row-major bits or a JSON nested list.
    #[arg(short, long, allow_hyphen_values = true)]
    matrix: String,
    /// Ops: any of the seven (`conv3x3-bn-relu`, `conv1x1-bn-relu`,
    /// `maxpool3x3`, `identity`, `bottleneck3x3`, `bottleneck5x5`,
    /// `maxpool3x3-conv1x1`), or hash labels.
    #[arg(short, long, allow_hyphen_values = true)]
    ops: String,
    /// Independent runs (repeats; the dataset has 3 per cell and budget).
    #[arg(long, default_value_t = 3)]
    repeats: u32,
    /// Database to add the runs to (created with the dataset schema if missing).
    #[arg(long, default_value = "nasbench.duckdb")]
    db: PathBuf,
    /// Checkpoints (safetensors, one per evaluation) go here; a rerun with
    /// the same cell, config and seed resumes from the latest.
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Print the network as JSON (layers, shapes, parameters) and exit.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    train: TrainArgs,
}

/// Write a synthetic CIFAR-shaped dataset in the binary release's layout.
///
/// Ten classes separable by colour and stripe pattern, with noise: a small
/// network learns them in seconds, so training can be tried (and tested)
/// without the real download. Written to `DIR/cifar-10-batches-bin/`.
#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Output folder.
    dir: PathBuf,
    /// Images per batch file (six files: five training batches, one test).
    #[arg(long, default_value_t = 10_000)]
    images_per_file: usize,
    /// Side of the square images (32 as CIFAR-10; train with
    /// `--config image_size=N` for another size).
    #[arg(long, default_value_t = 32)]
    image_size: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Run the original's work units: train every cell of a list, repeats
/// times, shared among workers.
///
/// Unit i is cell `i % n` of the list sorted by hash and repeat `i / n + 1`
/// (the original's scheme); worker w of W takes the units with
/// `i % W == w`. Each finished unit is written atomically as
/// `OUT/unit-NNNNNNNN.parquet`; a restarted worker skips finished units
/// and resumes the unfinished one from its checkpoints. Merge the results
/// with `nasbench ingest-runs OUT --db DB`. On Slurm, a job array runs one
/// worker per task: see `scripts/slurm/train-array.sbatch`.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Cells, one per line: `BITS OPS` (what `nasbench prune` prints) or a
    /// JSON object `{"matrix": ..., "ops": ...}`; `#` comments allowed.
    #[arg(long)]
    cells: PathBuf,
    /// This worker's index (default: `$SLURM_ARRAY_TASK_ID`).
    #[arg(long)]
    worker_id: Option<usize>,
    /// Number of workers (default: `$SLURM_ARRAY_TASK_COUNT`).
    #[arg(long)]
    total_workers: Option<usize>,
    /// Repeats of every cell.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Output folder (unit files and checkpoints).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    train: TrainArgs,
}

/// Merge the unit files of `nasbench worker` into a database (runs already
/// there are skipped, so merging twice changes nothing).
#[derive(clap::Args, Debug)]
pub struct IngestRunsArgs {
    /// Folder of `unit-*.parquet` files.
    dir: PathBuf,
    /// Database (created with the dataset schema if missing).
    #[arg(long, default_value = "nasbench.duckdb")]
    db: PathBuf,
}

/// A progress bar for training.
struct Bar {
    bar: ProgressBar,
    label: String,
}

impl Bar {
    fn new(quiet: bool, label: String) -> Bar {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] step {pos}/{len} {msg} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label.clone());
        Bar { bar, label }
    }
}

impl TrainProgress for Bar {
    fn step(&self, step: u64, total: u64, epoch: f64, loss: Option<f32>, ips: f64) {
        self.bar.set_length(total.max(1));
        self.bar.set_position(step);
        if let Some(l) = loss {
            self.bar
                .set_message(format!("epoch {epoch:.2} loss {l:.4} {ips:.0} img/s"));
        }
    }

    fn evaluated(&self, p: &EvalPoint) {
        self.bar.suspend(|| {
            eprintln!(
                "{}: epoch {:>6.2}  train {:.4}  valid {:.4}  test {:.4}  ({:.1} s training)",
                self.label,
                p.epoch,
                p.train_accuracy,
                p.validation_accuracy,
                p.test_accuracy,
                p.training_time
            );
        });
    }

    fn note(&self, message: &str) {
        self.bar.suspend(|| eprintln!("{}: {message}", self.label));
    }
}

fn spec_from_line(line: &str) -> anyhow::Result<ModelSpec> {
    let t = line.trim();
    let (m, o) = if t.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(t).context("bad JSON")?;
        let text = |x: &serde_json::Value| match x {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        (
            text(v.get("matrix").context("no \"matrix\"")?),
            text(v.get("ops").context("no \"ops\"")?),
        )
    } else {
        let (b, o) = t
            .rsplit_once(char::is_whitespace)
            .context("expected `BITS OPS` or a JSON object")?;
        (b.to_string(), o.to_string())
    };
    Ok(ModelSpec::new(&parse_matrix(&m)?, parse_ops(&o)?)?)
}

/// One run to train.
struct Job<'a> {
    spec: &'a ModelSpec,
    cfg: &'a TrainConfig,
    data: &'a data::Cifar,
    seed: u64,
    checkpoint_dir: Option<PathBuf>,
    label: String,
    quiet: bool,
}

/// Trains `job` on `be` with a progress bar.
fn train_with<B: Backend>(be: &mut B, job: Job<'_>) -> anyhow::Result<Trained> {
    let bar = Bar::new(job.quiet, job.label);
    let started = SystemTime::now();
    let outcome = trainer::train(
        be,
        job.spec,
        job.cfg,
        job.data,
        &RunOptions {
            seed: job.seed,
            checkpoint_dir: job.checkpoint_dir,
            record_losses: 0,
            report_every: 10,
            progress: &bar,
        },
    )?;
    bar.bar.finish_and_clear();
    Ok(Trained {
        outcome,
        started,
        finished: SystemTime::now(),
        backend: be.name().to_string(),
        device: be.device_name(),
    })
}

/// How long a writer waits for another process to close the database
/// (a `nasbench sql` shell, a DuckDB CLI) before giving up.
const WRITE_PATIENCE: Duration = Duration::from_secs(600);

/// Creates the database with the dataset's schema if it does not exist
/// (two processes doing so at once make one database).
fn ensure_db(path: &Path) -> anyhow::Result<()> {
    nasbench::db::create_if_missing(path, |conn| -> Result<(), nasbench::db::DbError> {
        nasbench::db::create_schema(conn)?;
        nasbench::db::create_keys(conn)?;
        nasbench::db::create_views(conn)
    })?;
    Ok(())
}

/// Runs `write` on the database (created if missing) under its write lock,
/// holding DuckDB's lock only while it runs: readers and other trainers
/// use the file meanwhile. Waits for another process's DuckDB lock for up
/// to [`WRITE_PATIENCE`].
fn write_db<T>(
    path: &Path,
    write: impl FnOnce(&duckdb::Connection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    ensure_db(path)?;
    let _lock = nasbench::db::lock::lock_for_write(path, |l| {
        eprintln!(
            "waiting for another nasbench writer ({} is locked)",
            l.display()
        )
    })?;
    let conn = nasbench::db::open_waiting(path, WRITE_PATIENCE)?;
    let value = write(&conn)?;
    conn.close()
        .map_err(|(_, e)| e)
        .with_context(|| format!("closing {}", path.display()))?;
    Ok(value)
}

/// Stores one run's rows in the database. If that fails, the run is kept as
/// a unit file in `<db>.pending/` (merge it with `nasbench ingest-runs`):
/// hours of training are never lost to a locked or broken database.
fn store_run(db: &Path, rec: &RunRecord<'_>) -> anyhow::Result<bool> {
    let stored = write_db(db, |conn| {
        rows::stage(conn, rec)?;
        rows::merge(conn)?;
        conn.execute_batch("DROP TABLE IF EXISTS unit_rows")?;
        Ok(())
    });
    let Err(e) = stored else {
        return Ok(true);
    };
    let dir = nasbench::output::sidecar(db, ".pending");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(format!("unit-{}.parquet", rec.run_id));
    rows::write_unit(&file, rec).with_context(|| {
        format!(
            "could not store run {} in {} ({e:#}) nor save it as {}",
            rec.run_id,
            db.display(),
            file.display()
        )
    })?;
    eprintln!(
        "error: could not store run {} in {}: {e:#}\n  the run is saved as {}; \
         add it with: nasbench ingest-runs {} --db {}",
        rec.run_id,
        db.display(),
        file.display(),
        dir.display(),
        db.display()
    );
    Ok(false)
}

/// A finished run and the backend that made it.
struct Trained {
    outcome: trainer::TrainOutcome,
    started: SystemTime,
    finished: SystemTime,
    backend: String,
    device: String,
}

impl Trained {
    /// The run as rows to store.
    fn record<'a>(
        &'a self,
        run_id: String,
        spec: &'a ModelSpec,
        config: &'a TrainConfig,
        repeat: u32,
        seed: u64,
    ) -> RunRecord<'a> {
        RunRecord {
            run_id,
            spec,
            config,
            repeat,
            backend: self.backend.clone(),
            device: self.device.clone(),
            seed,
            started: self.started,
            finished: self.finished,
            outcome: &self.outcome,
        }
    }
}

/// Trains `job` on the chosen device.
fn train_on(device: Device, job: Job<'_>) -> anyhow::Result<Trained> {
    match device {
        Device::Cpu => train_with(&mut nasbench::train::Cpu, job),
        #[cfg(feature = "cuda")]
        Device::Cuda => train_with(&mut nasbench::train::cuda::Cuda::new(0)?, job),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda => bail!(
            "this nasbench was built without the cuda feature; rebuild with `cargo build --release` (the default features include it)"
        ),
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let spec = ModelSpec::new(&parse_matrix(&a.matrix)?, parse_ops(&a.ops)?)?;
    let cfg = a.train.config()?;
    check_repeats(a.repeats as usize)?;
    if a.dry_run {
        let graph = trainer::build_graph(&spec, &cfg)?;
        let mut v = graph.to_json();
        v["config"] = serde_json::to_value(&cfg)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let dir = a.train.data.as_deref().context(
        "--data DIR is required to train (nasbench synth-cifar DIR writes a synthetic set)",
    )?;
    let data = data::load_classes(dir, cfg.image_size, cfg.num_labels)?;
    // Fail before training, not after, if the database cannot be written.
    write_db(&a.db, |_| Ok(()))?;
    let mut all_stored = true;
    for r in 1..=a.repeats {
        let seed = a.train.seed + u64::from(r) - 1;
        let ckpt = a
            .checkpoint_dir
            .as_ref()
            .map(|d| d.join(format!("repeat-{r}")));
        let label = format!("repeat {r}/{}", a.repeats);
        let job = Job {
            spec: &spec,
            cfg: &cfg,
            data: &data,
            seed,
            checkpoint_dir: ckpt,
            label,
            quiet: a.train.quiet,
        };
        let t = train_on(a.train.device, job)?;
        let rec = t.record(
            rows::run_id(&spec, r, seed, t.started),
            &spec,
            &cfg,
            r,
            seed,
        );
        all_stored &= store_run(&a.db, &rec)?;
        let o = &t.outcome;
        let last = o.evaluations.last();
        println!(
            "{}",
            json!({
                "run_id": rec.run_id,
                "status": if o.failure.is_some() { "failed" } else { "completed" },
                "error": o.failure,
                "trainable_parameters": o.trainable_parameters,
                "training_time": last.map(|e| e.training_time),
                "train_accuracy": last.map(|e| e.train_accuracy),
                "validation_accuracy": last.and_then(|e| e.validation_accuracy.is_finite().then_some(e.validation_accuracy)),
                "test_accuracy": last.map(|e| e.test_accuracy),
                "total_time": o.total_time,
            })
        );
    }
    Ok(if all_stored {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn synth(a: SynthArgs) -> anyhow::Result<ExitCode> {
    if a.image_size == 0 || a.images_per_file == 0 {
        bail!("--image-size and --images-per-file must be positive");
    }
    let out = data::write_synthetic(&a.dir, a.images_per_file, a.image_size, a.seed)?;
    eprintln!(
        "wrote {} ({} training, {} validation, {} test images of {}x{}); train with --data {}{}",
        out.display(),
        4 * a.images_per_file,
        a.images_per_file,
        a.images_per_file,
        a.image_size,
        a.image_size,
        a.dir.display(),
        if a.image_size == 32 {
            String::new()
        } else {
            format!(" --config image_size={}", a.image_size)
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `--repeats` must be in 1..=1000.
fn check_repeats(repeats: usize) -> anyhow::Result<()> {
    if !(1..=1000).contains(&repeats) {
        bail!("--repeats {repeats}: must be an integer in 1..=1000");
    }
    Ok(())
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

pub fn worker(a: WorkerArgs) -> anyhow::Result<ExitCode> {
    let w = a
        .worker_id
        .or_else(|| env_usize("SLURM_ARRAY_TASK_ID"))
        .context("--worker-id (or $SLURM_ARRAY_TASK_ID) is required")?;
    let total = a
        .total_workers
        .or_else(|| env_usize("SLURM_ARRAY_TASK_COUNT"))
        .context("--total-workers (or $SLURM_ARRAY_TASK_COUNT) is required")?;
    if total == 0 || w >= total {
        bail!("--worker-id {w} must be below --total-workers {total}");
    }
    let text = std::fs::read_to_string(&a.cells)
        .with_context(|| format!("reading {}", a.cells.display()))?;
    let mut cells = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let spec =
            spec_from_line(t).with_context(|| format!("{} line {}", a.cells.display(), k + 1))?;
        let key = rows::trained_hash(&spec)?.to_hex();
        cells.push((key, spec));
    }
    // The original sorts the hashes; duplicates would be the same unit twice.
    cells.sort_by(|x, y| x.0.cmp(&y.0));
    cells.dedup_by(|x, y| x.0 == y.0);
    if cells.is_empty() {
        bail!("{}: no cells", a.cells.display());
    }
    let cfg = a.train.config()?;
    check_repeats(a.repeats)?;
    let dir = a.train.data.as_deref().context("--data DIR is required")?;
    let data = data::load_classes(dir, cfg.image_size, cfg.num_labels)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let n = cells.len();
    let units = n * a.repeats;
    let mine: Vec<usize> = (0..units).filter(|i| i % total == w).collect();
    eprintln!(
        "worker {w} of {total}: {} of {units} units ({n} cells x {} repeats)",
        mine.len(),
        a.repeats
    );
    let recovery = a.out.join(format!("worker-{w}.next"));
    for i in mine {
        let file = a.out.join(format!("unit-{i:08}.parquet"));
        if file.exists() {
            continue;
        }
        let (hash, spec) = &cells[i % n];
        let repeat = (i / n + 1) as u32;
        std::fs::write(&recovery, format!("{i}\n"))
            .with_context(|| format!("writing {}", recovery.display()))?;
        let seed = a.train.seed.wrapping_add(i as u64);
        let ckpt = a.out.join("checkpoints").join(format!("unit-{i:08}"));
        let label = format!("unit {i} ({}, repeat {repeat})", &hash[..8]);
        let job = Job {
            spec,
            cfg: &cfg,
            data: &data,
            seed,
            checkpoint_dir: Some(ckpt.clone()),
            label,
            quiet: a.train.quiet,
        };
        let t = train_on(a.train.device, job)?;
        let rec = t.record(
            format!("unit-{i:08}-{}-r{repeat}-s{seed}", &hash[..8]),
            spec,
            &cfg,
            repeat,
            seed,
        );
        rows::write_unit(&file, &rec)?;
        let _ = std::fs::remove_dir_all(&ckpt);
        eprintln!("unit {i}: wrote {}", file.display());
    }
    let _ = std::fs::remove_file(&recovery);
    Ok(ExitCode::SUCCESS)
}

pub fn ingest_runs(a: IngestRunsArgs) -> anyhow::Result<ExitCode> {
    let files = nasbench::train::files_named(&a.dir, "unit-", ".parquet")
        .with_context(|| format!("reading {}", a.dir.display()))?;
    let added = write_db(&a.db, |conn| Ok(rows::merge_units(conn, &files)?))?;
    eprintln!(
        "{} unit files, {added} new runs added to {}",
        files.len(),
        a.db.display()
    );
    Ok(ExitCode::SUCCESS)
}
