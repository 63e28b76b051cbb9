//! `nasbench demo`: a database from the bundled real sample plus the generated search space, and a ranking query over it, with no download.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use arrow::array::RecordBatchIterator;
use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use nasbench::cell::generate::{GenerateOptions, generate};
use nasbench::db::export::cells_batch;
use nasbench::db::ingest::{IngestOptions, ingest};
use nasbench::db::{CELLS_SQL, DbError, DuckDbContext, carry_trained_runs, create_atomically};

use super::ingest::report;
use super::progress::Bar;

/// The 18 real records bundled with nasbench-db (tests/fixtures/README.md).
const REAL_SAMPLE: &[u8] = include_bytes!("../../tests/fixtures/nasbench_real_sample.tfrecord");
/// The ranking query `demo` prints (sql/ranking.sql).
const RANKING_SQL: &str = include_str!("../../sql/ranking.sql");

/// Build a demo database with no download and print a ranking.
///
/// Ingests the bundled sample of the real dataset (18 records: the README's
/// Inception-like cell at all four budgets and two more cells at 108 epochs,
/// 3 repeats each) and adds the table `cells`: the whole search space of
/// 423,624 cells with their dataset hashes and parameter counts. Then runs
/// sql/ranking.sql: cells ranked by mean final validation accuracy at 108
/// epochs. Open the database afterwards with `duckdb nasbench-demo.duckdb`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The database to create (replaced if it exists).
    #[arg(long, default_value = "nasbench-demo.duckdb", value_name = "FILE")]
    db: PathBuf,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let bar = Bar::new(a.quiet);
    let built = create_atomically(&a.db, |conn| {
        let mut sample = tempfile::NamedTempFile::new().context("creating a temporary file")?;
        sample
            .write_all(REAL_SAMPLE)
            .and_then(|_| sample.flush())
            .context("writing the bundled sample")?;
        let summary = ingest(conn, sample.path(), &IngestOptions::default(), &bar)
            .context("ingesting the bundled sample")?;
        let space = generate(&GenerateOptions::default(), &bar)?;
        bar.start_spinner("loading the search space");
        conn.execute_batch(CELLS_SQL)
            .during("running sql/cells.sql")?;
        // DuckDB's Arrow scan: duckdb-rs's appender copies a list column's
        // whole child array for every 2,048-row slice (20 s here).
        let batch = cells_batch(&space.cells)?;
        let schema = batch.schema();
        conn.insert_arrow(
            "cells",
            Box::new(RecordBatchIterator::new([Ok(batch)], schema)),
        )?;
        let ranking: Vec<RecordBatch> = conn
            .prepare(RANKING_SQL)
            .and_then(|mut s| s.query_arrow([]).map(|r| r.collect()))
            .during("running sql/ranking.sql")?;
        let covered: i64 = conn
            .query_row(
                "SELECT count(*) FROM cells WHERE hash IN (SELECT hash FROM models)",
                [],
                |r| r.get(0),
            )
            .during("counting cells")?;
        // Runs trained into an earlier demo database stay.
        let kept = carry_trained_runs(conn, &a.db)?;
        Ok::<_, anyhow::Error>((summary, space.cells.len(), covered, ranking, kept))
    });
    bar.finish();
    let (summary, cells, covered, ranking, kept) =
        built.with_context(|| format!("demo failed; {} was not changed", a.db.display()))?;
    report(&summary, &a.db, None, None, kept, false)?;
    eprintln!(
        "search space: {cells} cells in table `cells`; {covered} of them have runs in the sample"
    );
    let table = pretty_format_batches(&ranking).map_err(DbError::from_arrow)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "-- sql/ranking.sql: the best cells at 108 epochs")?;
    writeln!(out, "{table}")?;
    writeln!(
        out,
        "Explore: duckdb {} \"SELECT * FROM runs WHERE epochs = 108 LIMIT 5\"",
        a.db.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
