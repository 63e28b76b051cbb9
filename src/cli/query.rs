//! `nasbench query`: the original `api.py` query from the command line, one spec or a batch under one budget.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use nasbench::api::{ApiError, NasBench, QueryResult};
use nasbench::cell::graph::ModelHash;
use nasbench::cell::parse::{parse_matrix, parse_ops};
use nasbench::cell::spec::ModelSpec;
use serde_json::{Value, json};

/// Query the dataset as the original `api.py` does: one sampled repeat of a
/// cell, as JSON.
///
/// The cell is pruned and checked against the dataset's space (the
/// original's messages), found by hash (any isomorphic form finds it, and
/// the answer shows the stored form), and one of its 3 repeats at `--epochs`
/// is drawn uniformly (`--seed` makes the draws reproducible). The answer
/// holds the original's dict fields (`module_adjacency`,
/// `module_operations`, `trainable_parameters`, `training_time`,
/// `train_accuracy`, `validation_accuracy`, `test_accuracy`), then
/// `module_hash`, `epochs`, `repeat` (1-based) and `stop_halfway`.
///
/// With `--batch FILE` (`-` for stdin), every line is one query and gets one
/// output line, in order; the budget counters (training seconds and epochs,
/// as `get_budget_counters()` returns them) add up over the batch and are
/// printed as a last line `{"budget_counters": ...}`. A line is one of:
/// a JSON object `{"matrix": ..., "ops": ..., "epochs": 36, "halfway": true}`
/// (`epochs` and `halfway` optional), a JSON array `[matrix, ops]`, the
/// text form `BITS OPS` (what `nasbench prune` prints), or a bare 32-digit
/// hash. Blank lines and lines starting with `#` are skipped. Keys other
/// than `matrix`, `ops`, `hash`, `epochs` and `halfway`, and values of the
/// wrong type, are errors. A line that fails gets `{"error": ..., "line":
/// N}` and the batch goes on; the exit status is then 1.
///
/// One query opens the data lazily (a point lookup in DuckDB) unless a
/// query index already exists; a batch opens it in memory, building the
/// index beside the data on first use (`<db>.qidx`, seconds for the full
/// dataset, then milliseconds to open).
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  nasbench query --db nasbench.duckdb \\
      --matrix 0111010000000100000010000100000000100000010000000 \\
      --ops input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output
  nasbench query --db nasbench.duckdb --hash 28cfc7874f6d200472e1a9dcd8650aa0 --epochs 36 --halfway
  nasbench query --db nasbench.duckdb --hash 28cfc7874f6d200472e1a9dcd8650aa0 --all-repeats
  nasbench prune -m 0110000100010000 -o -1,0,1,-2 | nasbench query --db nasbench.duckdb --batch - --seed 1")]
pub struct Args {
    /// The database written by `nasbench ingest`, or a directory of its
    /// Parquet export.
    #[arg(long, default_value = "nasbench.duckdb")]
    db: PathBuf,
    /// Adjacency matrix: row-major bits or a JSON nested list.
    #[arg(short, long, allow_hyphen_values = true, required_unless_present_any = ["batch", "hash"])]
    matrix: Option<String>,
    /// Ops: names, hash labels (-1, 0, 1, 2, -2) or a JSON list.
    #[arg(short, long, allow_hyphen_values = true, requires = "matrix")]
    ops: Option<String>,
    /// Query a cell by its dataset hash instead of a spec.
    #[arg(long, conflicts_with_all = ["matrix", "batch"])]
    hash: Option<String>,
    /// Training budget: 4, 12, 36 or 108 in the full dataset, 108 only in
    /// nasbench_only108.
    #[arg(short, long, default_value_t = 108)]
    epochs: u32,
    /// Return the halfway evaluation (counts epochs / 2 against the budget).
    #[arg(long)]
    halfway: bool,
    /// Seed of the repeat draws (default: from the clock, as the original).
    #[arg(long)]
    seed: Option<u64>,
    /// Print every repeat at `--epochs` (the original's `computed_stats`
    /// entries, `halfway_*` and `final_*`) instead of sampling one; the
    /// budget counters are not touched.
    #[arg(long, conflicts_with = "batch")]
    all_repeats: bool,
    /// Read one query per line from FILE (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    batch: Option<PathBuf>,
    /// Open without an index even for a batch (one DuckDB lookup per query).
    #[arg(long)]
    lazy: bool,
    /// Print the cell's trained runs (`nasbench train`, `worker`; any ops
    /// and size) instead of a dataset answer: one JSON line per run and
    /// budget, from the `runs` view and `training_runs`.
    #[arg(long, conflicts_with_all = ["batch", "all_repeats", "halfway"])]
    trained: bool,
}

/// One parsed query line.
enum Target {
    Spec(ModelSpec),
    Hash(ModelHash),
}

fn spec_from(matrix: &str, ops: &str) -> Result<ModelSpec, String> {
    let m = parse_matrix(matrix).map_err(|e| format!("matrix: {e}"))?;
    let o = parse_ops(ops).map_err(|e| format!("ops: {e}"))?;
    ModelSpec::new(&m, o).map_err(|e| e.to_string())
}

fn hash_from(text: &str) -> Result<ModelHash, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a 32-digit hex hash"))
}

/// The keys a JSON object line may have.
const LINE_KEYS: [&str; 5] = ["matrix", "ops", "hash", "epochs", "halfway"];

/// Parses a batch line: the target and its optional epochs / halfway.
/// Unknown keys and values of the wrong type are errors naming the key.
fn parse_line(line: &str) -> Result<(Target, Option<u32>, Option<bool>), String> {
    let t = line.trim();
    if t.starts_with('{') || t.starts_with('[') {
        let v: Value = serde_json::from_str(t).map_err(|e| format!("bad JSON: {e}"))?;
        return match &v {
            Value::Array(a) if a.len() == 2 => {
                Ok((Target::Spec(spec_from_json(&a[0], &a[1])?), None, None))
            }
            Value::Array(a) => Err(format!(
                "a JSON array line is [matrix, ops]; this one has {} elements",
                a.len()
            )),
            Value::Object(o) => {
                if let Some(k) = o.keys().find(|k| !LINE_KEYS.contains(&k.as_str())) {
                    return Err(format!(
                        "unknown key {k:?} (known: {})",
                        LINE_KEYS.join(", ")
                    ));
                }
                let epochs = epochs_of(o.get("epochs"))?;
                let halfway = halfway_of(o.get("halfway"))?;
                let target = match (o.get("hash"), o.get("matrix"), o.get("ops")) {
                    (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                        return Err("give \"hash\" or \"matrix\" and \"ops\", not both".into());
                    }
                    (Some(Value::String(h)), None, None) => Target::Hash(hash_from(h)?),
                    (Some(other), None, None) => {
                        return Err(format!("key \"hash\" must be a string, got {other}"));
                    }
                    (None, Some(m), Some(ops)) => Target::Spec(spec_from_json(m, ops)?),
                    (None, None, _) => {
                        return Err("JSON object lacks \"matrix\" (or \"hash\")".into());
                    }
                    (None, Some(_), None) => return Err("JSON object lacks \"ops\"".into()),
                };
                Ok((target, epochs, halfway))
            }
            _ => Err(
                "expected {\"matrix\": ..., \"ops\": ...}, {\"hash\": ...} or [matrix, ops]".into(),
            ),
        };
    }
    if t.len() == 32 && !t.contains(char::is_whitespace) {
        return Ok((Target::Hash(hash_from(t)?), None, None));
    }
    // BITS OPS: the ops are the last whitespace-separated field.
    const FORMS: &str = "expected `BITS OPS`, a JSON object or array, or a hash";
    let (bits, ops) = t.rsplit_once(char::is_whitespace).ok_or(FORMS)?;
    let spec = spec_from(bits, ops).map_err(|e| format!("{FORMS} ({e})"))?;
    Ok((Target::Spec(spec), None, None))
}

/// A spec from JSON values: the matrix a bit string or a nested list of
/// integers, the ops a string or a list of strings or labels.
fn spec_from_json(matrix: &Value, ops: &Value) -> Result<ModelSpec, String> {
    let m = match matrix {
        Value::String(s) => s.clone(),
        Value::Array(_) => matrix.to_string(),
        other => {
            return Err(format!(
                "key \"matrix\" must be a string or a list, got {other}"
            ));
        }
    };
    let o = match ops {
        Value::String(s) => s.clone(),
        Value::Array(_) => ops.to_string(),
        other => {
            return Err(format!(
                "key \"ops\" must be a string or a list, got {other}"
            ));
        }
    };
    spec_from(&m, &o)
}

fn epochs_of(v: Option<&Value>) -> Result<Option<u32>, String> {
    match v {
        None => Ok(None),
        Some(x) => x
            .as_u64()
            .and_then(|e| u32::try_from(e).ok())
            .map(Some)
            .ok_or_else(|| format!("key \"epochs\" must be a non-negative integer, got {x}")),
    }
}

fn halfway_of(v: Option<&Value>) -> Result<Option<bool>, String> {
    match v {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(x) => Err(format!("key \"halfway\" must be true or false, got {x}")),
    }
}

fn ask(
    nb: &mut NasBench,
    target: &Target,
    epochs: u32,
    halfway: bool,
) -> Result<QueryResult, ApiError> {
    match target {
        Target::Spec(s) => nb.query(s, epochs, halfway),
        Target::Hash(h) => nb.query_hash(h, epochs, halfway),
    }
}

fn open(a: &Args, batch: bool) -> anyhow::Result<NasBench> {
    let started = Instant::now();
    let nb = if batch && !a.lazy {
        NasBench::in_memory_notify(&a.db, a.seed, |p| {
            eprintln!(
                "building the query index {} (once; later runs map it in milliseconds)",
                p.display()
            );
        })
    } else if a.lazy {
        NasBench::lazy(&a.db, a.seed)
    } else {
        NasBench::open_fast(&a.db, a.seed)
    }
    .with_context(|| format!("opening {}", a.db.display()))?;
    if let Some(ix) = nb.index().filter(|ix| ix.built) {
        eprintln!(
            "indexed {} cells in {:.1} s{}",
            ix.len(),
            started.elapsed().as_secs_f64(),
            match &ix.write_error {
                Some(e) =>
                    format!(" (could not write the index file: {e}; it lives in memory only)"),
                None => String::new(),
            }
        );
    }
    Ok(nb)
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if let Some(path) = &a.batch {
        return run_batch(&a, path);
    }
    let target = match (&a.hash, &a.matrix, &a.ops) {
        (Some(h), _, _) => hash_from(h).map(Target::Hash),
        (None, Some(m), Some(o)) => spec_from(m, o).map(Target::Spec),
        _ => Err("give --matrix and --ops, --hash, or --batch".to_string()),
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if a.trained {
        return trained_runs(&a, &target);
    }
    let mut nb = open(&a, false)?;
    let out = if a.all_repeats {
        let metrics = match &target {
            Target::Spec(s) => nb.get_metrics_from_spec(s),
            Target::Hash(h) => nb.get_metrics_from_hash(h),
        };
        nb.check_epochs(a.epochs).and(metrics).map(|m| {
            let runs = m.computed.get(&a.epochs).map_or(&[][..], Vec::as_slice);
            let mut v = m.fixed.to_json();
            v["module_hash"] = m.fixed.hash.to_hex().into();
            v["epochs"] = a.epochs.into();
            v["repeats"] = runs.iter().map(|r| r.to_json()).collect();
            v
        })
    } else {
        ask(&mut nb, &target, a.epochs, a.halfway).map(|r| r.to_json())
    };
    match out {
        Ok(v) => {
            writeln!(std::io::stdout().lock(), "{v}")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `--trained`: the trained runs of one cell, as JSON lines.
fn trained_runs(a: &Args, target: &Target) -> anyhow::Result<ExitCode> {
    let hash = match target {
        Target::Hash(h) => *h,
        Target::Spec(s) => nasbench::train::rows::trained_hash(s)?,
    };
    let conn = nasbench::api::lazy::connect(&a.db)
        .with_context(|| format!("opening {}", a.db.display()))?;
    let has_runs = nasbench::db::table_exists(&conn, None, "training_runs")
        .context("looking for training_runs")?;
    if !has_runs {
        eprintln!(
            "error: {} has no trained runs (a Parquet export holds the dataset only)",
            a.db.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut stmt = conn.prepare(
        "SELECT t.run_id, r.hash, r.epochs, r.repeat, t.status, t.error, t.backend, t.device, \
         t.seed, r.trainable_parameters, r.halfway_training_time, r.halfway_train_accuracy, \
         r.halfway_validation_accuracy, r.halfway_test_accuracy, r.final_training_time, \
         r.final_train_accuracy, r.final_validation_accuracy, r.final_test_accuracy, \
         r.total_time, t.config \
         FROM training_runs t LEFT JOIN runs r ON r.source = t.run_id \
         WHERE t.hash = ? ORDER BY r.epochs, r.repeat, t.run_id",
    )?;
    let batches: Vec<arrow::record_batch::RecordBatch> =
        stmt.query_arrow([hash.to_hex()])?.collect();
    if batches.iter().all(|b| b.num_rows() == 0) {
        eprintln!("error: no trained runs of {hash} in {}", a.db.display());
        return Ok(ExitCode::FAILURE);
    }
    let mut out = std::io::stdout().lock();
    let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
    for b in &batches {
        w.write(b)?;
    }
    w.finish()?;
    Ok(ExitCode::SUCCESS)
}

fn run_batch(a: &Args, path: &PathBuf) -> anyhow::Result<ExitCode> {
    let input: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    };
    let mut nb = open(a, true)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut failed = 0usize;
    for (k, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {} of {}", k + 1, path.display()))?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let answer = parse_line(t).and_then(|(target, e, h)| {
            ask(
                &mut nb,
                &target,
                e.unwrap_or(a.epochs),
                h.unwrap_or(a.halfway),
            )
            .map_err(|e| e.to_string())
        });
        let v = match answer {
            Ok(r) => r.to_json(),
            Err(e) => {
                failed += 1;
                json!({"error": e, "line": k + 1})
            }
        };
        writeln!(out, "{v}")?;
    }
    let (time, epochs) = nb.get_budget_counters();
    writeln!(
        out,
        "{}",
        json!({"budget_counters": {"training_time_spent": time, "total_epochs_spent": epochs}})
    )?;
    out.flush()?;
    if failed > 0 {
        eprintln!("{failed} batch lines failed (their output lines hold the errors)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
