//! DuckDB database files: the embedded schema in `sql/`, building a database under a temporary name and renaming it into place, and Parquet export through DuckDB.

use std::path::{Path, PathBuf};

use duckdb::Connection;

use crate::export::{make_readable, parent_dir};

/// `sql/schema.sql`: the tables `models` and `evaluations`.
pub const SCHEMA_SQL: &str = include_str!("../sql/schema.sql");
/// `sql/views.sql`: the views `runs` and `model_stats`.
pub const VIEWS_SQL: &str = include_str!("../sql/views.sql");
/// `sql/macros.sql`: the table macros `nasbench_query` and `top_cells`.
pub const MACROS_SQL: &str = include_str!("../sql/macros.sql");
/// `sql/training.sql`: the table `training_runs`.
pub const TRAINING_SQL: &str = include_str!("../sql/training.sql");
/// `sql/unit_rows.sql`: the staging table of trained runs.
pub const UNIT_ROWS_SQL: &str = include_str!("../sql/unit_rows.sql");
/// `sql/merge_runs.sql`: staged runs into the tables.
pub const MERGE_RUNS_SQL: &str = include_str!("../sql/merge_runs.sql");
/// `sql/cells.sql`: the table `cells` (the generated search space).
pub const CELLS_SQL: &str = include_str!("../sql/cells.sql");

/// The oldest DuckDB whose storage format new databases use.
pub const STORAGE_COMPATIBILITY: &str = "v1.5.0";

/// Error while building or exporting a database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// File system error, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// DuckDB reported an error while doing `what`.
    #[error("{what}: {source}")]
    DuckDb {
        /// What was being done.
        what: String,
        /// The cause.
        source: duckdb::Error,
    },
    /// Building or formatting Arrow batches failed.
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl DbError {
    /// An Arrow error while building or formatting batches.
    pub fn from_arrow(e: arrow::error::ArrowError) -> Self {
        DbError::Arrow(e)
    }
}

/// Attaches a description of what was being done to a DuckDB error.
pub trait DuckDbContext<T> {
    /// Wraps the error as [`DbError::DuckDb`] with `what`.
    fn during(self, what: impl Into<String>) -> Result<T, DbError>;
}

impl<T> DuckDbContext<T> for Result<T, duckdb::Error> {
    fn during(self, what: impl Into<String>) -> Result<T, DbError> {
        self.map_err(|source| DbError::DuckDb {
            what: what.into(),
            source,
        })
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DbError + '_ {
    move |source| DbError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Builds a new database at `path` with `build`, atomically: the database is
/// created in a temporary directory beside `path`, checkpointed, closed and
/// only then renamed onto `path`. If `build` fails (or the process dies), an
/// earlier file at `path` is left byte-identical and the temporary files are
/// removed.
pub fn create_atomically<T, E: From<DbError>>(
    path: &Path,
    build: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "nasbench.duckdb".into());
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempdir_in(dir)
        .map_err(io_err(dir))?;
    let _tracked = crate::cleanup::track(tmp.path());
    let tmp_db = tmp.path().join(&name);
    // Files readable by DuckDB 1.5 and later: the stock DuckDB CLI on PyPI
    // (1.5.6) opens what nasbench writes. (v1.2 storage also works but
    // ingests the full file about 4 s slower.)
    let config = duckdb::Config::default()
        .with("storage_compatibility_version", STORAGE_COMPATIBILITY)
        .during("configuring the new database")?;
    let conn = Connection::open_with_flags(&tmp_db, config)
        .during(format!("creating {}", tmp_db.display()))?;
    crate::sqlfn::register(&conn).during("registering the nasbench functions")?;
    let value = build(&conn)?;
    conn.execute_batch("CHECKPOINT")
        .during("checkpointing the new database")?;
    conn.close()
        .map_err(|(_, e)| e)
        .during("closing the new database")?;
    // A write-ahead log left beside the old file by a crashed writer would be
    // replayed onto the new database: it belongs to the file being replaced.
    let wal = wal_path(path);
    if wal.exists() {
        std::fs::remove_file(&wal).map_err(io_err(&wal))?;
    }
    std::fs::rename(&tmp_db, path).map_err(io_err(path))?;
    Ok(value)
}

fn wal_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".wal");
    PathBuf::from(s)
}

/// Opens a database (created if missing; in memory for `:memory:`) with
/// the nasbench functions registered.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    let conn = if path.as_os_str() == ":memory:" {
        Connection::open_in_memory()
    } else {
        Connection::open(path)
    }
    .during(format!("opening {}", path.display()))?;
    crate::sqlfn::register(&conn).during("registering the nasbench functions")?;
    Ok(conn)
}

/// Creates the dataset tables (`sql/schema.sql`, `sql/training.sql`).
pub fn create_schema(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch(SCHEMA_SQL)
        .during("running sql/schema.sql")?;
    conn.execute_batch(TRAINING_SQL)
        .during("running sql/training.sql")
}

/// Creates the views and table macros (`sql/views.sql`, `sql/macros.sql`).
pub fn create_views(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch(VIEWS_SQL)
        .during("running sql/views.sql")?;
    conn.execute_batch(MACROS_SQL)
        .during("running sql/macros.sql")
}

/// Quotes a string as an SQL literal.
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Writes the result of `query` to `path` as zstd Parquet, through a
/// temporary file renamed into place.
pub fn copy_to_parquet(conn: &Connection, query: &str, path: &Path) -> Result<(), DbError> {
    let dir = parent_dir(path);
    let tmp = tempfile::Builder::new()
        .prefix(".nasbench.")
        .suffix(".parquet.tmp")
        .tempfile_in(dir)
        .map_err(io_err(dir))?
        .into_temp_path();
    let _tracked = crate::cleanup::track(&tmp);
    let sql = format!(
        "COPY ({query}) TO {} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)",
        sql_literal(&tmp.to_string_lossy())
    );
    conn.execute_batch(&sql)
        .during(format!("writing {}", path.display()))?;
    make_readable(&tmp).map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| DbError::Io {
        path: path.display().to_string(),
        source: e.error,
    })?;
    Ok(())
}
