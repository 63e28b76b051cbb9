//! `nasbench ingest`: a release TFRecord into a DuckDB database (and Parquet), with the summary report shared by `demo` and `fetch`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use nasbench::db::ingest::{IngestError, IngestOptions, Summary, export_parquet, ingest};
use nasbench::db::{CarriedRuns, carry_trained_runs, create_atomically};
use serde_json::json;

use super::progress::Bar;

/// Load a NAS-Bench-101 release file into a DuckDB database.
///
/// Reads `nasbench_full.tfrecord`, `nasbench_only108.tfrecord` or any file in
/// the same format, checks every record (both CRCs, JSON, base64, the
/// ModelMetrics proto) and every cell (its hash is recomputed from the stored
/// matrix and ops), and writes the tables `models` (one row per cell) and
/// `evaluations` (one row per evaluation point of every run), with the views
/// `runs` (the original API's halfway_*/final_* per repeat) and `model_stats`
/// (per cell and budget: mean, std, min, max over repeats). The schema is in
/// sql/schema.sql and sql/views.sql.
///
/// The database is built under a temporary name and renamed over `--db` only
/// on success: a failed or interrupted ingest leaves an earlier database as
/// it was. Re-ingesting a file gives the same database, and keeps the
/// trained runs of the database it replaces (`nasbench train` rows: their
/// `training_runs`, `evaluations` and `models` rows are carried over and
/// counted in the summary) unless --discard-trained-runs is given.
///
/// The summary goes to stderr (or, with --json, to stdout as one object).
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  nasbench ingest nasbench_only108.tfrecord
  nasbench ingest nasbench_full.tfrecord --db full.duckdb --parquet parquet/
  duckdb nasbench.duckdb \"SELECT * FROM model_stats WHERE epochs = 108
      ORDER BY mean_final_validation_accuracy DESC LIMIT 5\"")]
pub struct Args {
    /// The TFRecord file.
    #[arg(value_name = "FILE.tfrecord")]
    file: PathBuf,
    #[command(flatten)]
    out: OutArgs,
}

/// Output options shared by `ingest` and `fetch`.
#[derive(clap::Args, Debug)]
pub struct OutArgs {
    /// The database to create (replaced if it exists).
    #[arg(long, default_value = "nasbench.duckdb", value_name = "FILE")]
    pub db: PathBuf,
    /// Also write models.parquet and evaluations.parquet (zstd, sorted by
    /// hash) into this directory.
    #[arg(long, value_name = "DIR")]
    pub parquet: Option<PathBuf>,
    /// Skip records with bad framing or payload (and cells whose stored hash
    /// is wrong), counting them in the summary, instead of stopping at the
    /// first one.
    #[arg(long)]
    pub skip_bad_records: bool,
    /// Do not build the query index (`<db>.qidx`, seconds) after the
    /// database. Without it a one-shot `nasbench query` scans DuckDB (about
    /// 0.1 s per query) and the first batch or in-memory open builds it.
    #[arg(long)]
    pub no_query_index: bool,
    /// Drop the trained runs of the database being replaced instead of
    /// carrying them into the new one.
    #[arg(long)]
    pub discard_trained_runs: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    ingest_file(&a.file, &a.out)
}

/// Ingests `file` into `out.db` (and Parquet) and prints the summary.
pub fn ingest_file(file: &Path, out: &OutArgs) -> anyhow::Result<ExitCode> {
    let opts = IngestOptions {
        skip_bad_records: out.skip_bad_records,
        ..IngestOptions::default()
    };
    let bar = Bar::new(out.quiet);
    let start = std::time::Instant::now();
    let summary = create_atomically(&out.db, |conn| {
        let s = ingest(conn, file, &opts, &bar)?;
        if let Some(dir) = &out.parquet {
            bar.start_spinner("writing Parquet");
            export_parquet(conn, dir)?;
        }
        // After the Parquet export, which holds the release's data only.
        let carried = if out.discard_trained_runs {
            None
        } else {
            bar.start_spinner("carrying over the trained runs");
            Some(carry_trained_runs(conn, &out.db).map_err(|e| {
                IngestError::Db(nasbench::db::DbError::DuckDbC {
                    what: "keeping the trained runs".into(),
                    message: format!(
                        "{e}; --discard-trained-runs replaces {} without them",
                        out.db.display()
                    ),
                })
            })?)
        };
        Ok::<_, IngestError>((s, carried))
    });
    bar.finish();
    let (mut summary, carried) =
        summary.with_context(|| format!("ingest failed; {} was not changed", out.db.display()))?;
    // Until the database is checkpointed, closed and in place.
    summary.seconds = start.elapsed().as_secs_f64();
    let index = if out.no_query_index {
        None
    } else {
        let built = build_query_index(&out.db, out.quiet);
        if let Err(e) = &built {
            // The database is complete; only the fast path is missing.
            eprintln!("warning: no query index ({e:#}); queries will scan DuckDB");
        }
        built.ok()
    };
    report(
        &summary,
        &out.db,
        out.parquet.as_deref(),
        index,
        carried.unwrap_or_default(),
        out.json,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A query index written after the database: where, and in how many seconds.
pub struct BuiltIndex {
    path: PathBuf,
    seconds: f64,
}

/// Builds the query index of a finished database, so that the first
/// `nasbench query` answers in milliseconds.
fn build_query_index(db: &Path, quiet: bool) -> anyhow::Result<BuiltIndex> {
    let t = std::time::Instant::now();
    let (_, path) = nasbench::api::index_location(db)?;
    let bar = Bar::new(quiet);
    bar.start_spinner("building the query index");
    let built = nasbench::api::NasBench::in_memory(db, Some(0));
    bar.finish();
    if let Some(e) = built?.index().and_then(|ix| ix.write_error.clone()) {
        anyhow::bail!("the index was built but not written: {e}");
    }
    Ok(BuiltIndex {
        path,
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// Prints an ingest summary: text on stderr, or JSON on stdout.
pub fn report(
    s: &Summary,
    db: &Path,
    parquet: Option<&Path>,
    index: Option<BuiltIndex>,
    kept: CarriedRuns,
    as_json: bool,
) -> anyhow::Result<()> {
    let rss = nasbench::peak_rss_bytes();
    if as_json {
        let a = &s.anomalies;
        let v = json!({
            "db": db.display().to_string(),
            "parquet": parquet.map(|p| p.display().to_string()),
            "records": s.records,
            "cells": s.cells,
            "runs": s.runs,
            "evaluations": s.evaluations,
            "budgets": s.budgets,
            "synthetic_runs": s.synthetic_runs,
            "skipped": s.skipped,
            "skipped_examples": s.skipped_examples.iter().map(|k| json!({
                "record": k.index, "offset": k.offset, "reason": k.reason,
            })).collect::<Vec<_>>(),
            "anomalies": {
                "unexpected_repeats": a.unexpected_repeats.iter()
                    .map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "runs_without_three_points": a.runs_without_three_points,
                "cells_missing_budgets": a.cells_missing_budgets,
                "inconsistent_records": a.inconsistent_records,
                "hash_mismatches": a.hash_mismatches,
            },
            "bytes": s.bytes,
            "seconds": s.seconds,
            "trained_runs_kept": {
                "runs": kept.runs,
                "evaluations": kept.evaluations,
                "models": kept.models,
            },
            "query_index": index.as_ref().map(|i| i.path.display().to_string()),
            "query_index_seconds": index.as_ref().map(|i| i.seconds),
            "peak_rss_bytes": rss,
        });
        println!("{v}");
        return Ok(());
    }
    let budgets: Vec<String> = s.budgets.iter().map(|b| b.to_string()).collect();
    eprintln!(
        "{} records -> {} cells, {} runs, {} evaluations (budgets {}) in {:.2} s ({:.0} records/s{}); wrote {}",
        s.records,
        s.cells,
        s.runs,
        s.evaluations,
        budgets.join(", "),
        s.seconds,
        s.records as f64 / s.seconds.max(1e-9),
        rss.map(|r| format!(", peak RSS {} MB", r >> 20))
            .unwrap_or_default(),
        db.display()
    );
    if let Some(p) = parquet {
        eprintln!("Parquet: {}", p.display());
    }
    if kept.runs > 0 {
        eprintln!(
            "kept {} trained runs of the replaced database ({} evaluation rows, {} cells not in the file)",
            kept.runs, kept.evaluations, kept.models
        );
    }
    if let Some(i) = &index {
        eprintln!("query index: {} ({:.2} s)", i.path.display(), i.seconds);
    }
    if s.synthetic_runs > 0 {
        eprintln!(
            "note: {} runs are synthetic (made-up metrics, source = 'synthetic')",
            s.synthetic_runs
        );
    }
    if s.skipped > 0 {
        eprintln!("skipped {} bad records; the first:", s.skipped);
        for k in &s.skipped_examples {
            eprintln!("  record {} at byte {}: {}", k.index, k.offset, k.reason);
        }
    }
    let a = &s.anomalies;
    if a.is_empty() {
        eprintln!("anomalies: none");
    } else {
        eprintln!("anomalies:");
        for (n, groups) in &a.unexpected_repeats {
            eprintln!("  {groups} (cell, budget) pairs have {n} repeats");
        }
        let lines = [
            (
                a.runs_without_three_points,
                "runs do not have exactly 3 evaluation points",
            ),
            (
                a.cells_missing_budgets,
                "cells lack a budget present elsewhere in the file",
            ),
            (
                a.inconsistent_records,
                "records disagree with their cell's first record (matrix, ops or parameters); the first is kept",
            ),
            (
                a.hash_mismatches,
                "cells were dropped because their stored hash is wrong",
            ),
        ];
        for (n, what) in lines {
            if n > 0 {
                eprintln!("  {n} {what}");
            }
        }
    }
    Ok(())
}
