//! `nasbench export`: every table and view of a database as Parquet, one file each.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nasbench::db::{DuckDbContext, copy_to_parquet, open};

/// Write every table and view of a nasbench database as Parquet (zstd), one
/// file per table or view (`models.parquet`, `evaluations.parquet`,
/// `runs.parquet`, `model_stats.parquet`, ...), sorted by hash where there
/// is one, so that row-group statistics prune point lookups. Each file is
/// written under a temporary name and renamed into place.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:
  nasbench export --db nasbench.duckdb --parquet parquet/
  python -c \"import polars as pl; print(pl.read_parquet('parquet/model_stats.parquet'))\"")]
pub struct Args {
    /// The database.
    #[arg(long, default_value = "nasbench.duckdb", value_name = "FILE")]
    db: PathBuf,
    /// Directory for the Parquet files (created if missing).
    #[arg(long, value_name = "DIR")]
    parquet: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if !a.db.exists() {
        anyhow::bail!("{}: no such database", a.db.display());
    }
    let conn = open(&a.db)?;
    std::fs::create_dir_all(&a.parquet)
        .with_context(|| format!("creating {}", a.parquet.display()))?;
    let mut stmt = conn
        .prepare(
            "SELECT t.table_name, bool_or(c.column_name = 'hash')
             FROM information_schema.tables t
             JOIN information_schema.columns c USING (table_catalog, table_schema, table_name)
             WHERE t.table_schema = 'main' AND t.table_catalog = current_database()
             GROUP BY ALL ORDER BY 1",
        )
        .during("listing tables")?;
    let tables: Vec<(String, bool)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .during("listing tables")?
        .collect::<Result<_, _>>()
        .during("listing tables")?;
    for (name, has_hash) in &tables {
        let path = a.parquet.join(format!("{name}.parquet"));
        let order = if *has_hash { " ORDER BY hash" } else { "" };
        copy_to_parquet(&conn, &format!("SELECT * FROM \"{name}\"{order}"), &path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
