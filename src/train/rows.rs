//! Trained runs as rows: the flat per-point staging rows (`sql/unit_rows.sql`), written into a database (`sql/merge_runs.sql`) or as one Parquet file per worker unit.

use std::path::Path;
use std::time::SystemTime;

use duckdb::{Connection, params};

use super::trainer::{TrainConfig, TrainOutcome};
use crate::cell::graph::ModelHash;
use crate::cell::spec::{ModelSpec, OutOfDomain};
use crate::db::{DbError, DuckDbContext, MERGE_RUNS_SQL, TRAINING_SQL, UNIT_ROWS_SQL, sql_literal};

/// One finished (or failed) run and where it came from.
#[derive(Debug, Clone)]
pub struct RunRecord<'a> {
    /// Unique id; the `source` of its evaluation rows.
    pub run_id: String,
    /// The cell (pruned form used).
    pub spec: &'a ModelSpec,
    /// The config trained with.
    pub config: &'a TrainConfig,
    /// 1-based repeat.
    pub repeat: u32,
    /// `cpu` or `cuda`.
    pub backend: String,
    /// Device in words.
    pub device: String,
    /// Seed.
    pub seed: u64,
    /// When it started.
    pub started: SystemTime,
    /// When it ended.
    pub finished: SystemTime,
    /// What it produced.
    pub outcome: &'a TrainOutcome,
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The key of a trained cell (`models.hash`, `training_runs.hash`). Op::ALL
/// starts with the three canonical ops, so a cell of the dataset's ops gets
/// its dataset hash, and a cell using other ops (identity, bottlenecks) the
/// original's hash over the labels of all seven.
pub fn trained_hash(spec: &ModelSpec) -> Result<ModelHash, OutOfDomain> {
    spec.hash_spec(&crate::cell::ops::Op::ALL.map(|o| o.name()))
}

/// A run id: time, cell, repeat and seed, e.g.
/// `20261128T051200-28cfc787-r1-s42`.
pub fn run_id(spec: &ModelSpec, repeat: u32, seed: u64, started: SystemTime) -> String {
    let secs = epoch_secs(started) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let hash =
        trained_hash(spec).map_or_else(|_| "nohash".to_string(), |h| h.to_hex()[..8].to_string());
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}-{hash}-r{repeat}-s{seed}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Stages `rec` into the temporary table `unit_rows` of `conn` (created
/// if missing).
pub fn stage(conn: &Connection, rec: &RunRecord<'_>) -> Result<(), DbError> {
    let exists: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM duckdb_tables() WHERE table_name = 'unit_rows' AND temporary",
            [],
            |r| r.get(0),
        )
        .during("looking for the staging table")?;
    if !exists {
        conn.execute_batch(UNIT_ROWS_SQL)
            .during("running sql/unit_rows.sql")?;
    }
    let (matrix, ops) = rec
        .spec
        .matrix()
        .zip(rec.spec.ops())
        .ok_or_else(|| DbError::Io {
            path: rec.run_id.clone(),
            source: std::io::Error::other("the cell is disconnected"),
        })?;
    let hash = trained_hash(rec.spec)
        .map(|h| h.to_hex())
        .unwrap_or_default();
    let nested: Vec<String> = matrix
        .to_nested()
        .iter()
        .map(|r| {
            format!(
                "[{}]",
                r.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    let ops_list = format!(
        "[{}]",
        ops.iter()
            .map(|o| sql_literal(o))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let config = serde_json::to_string(rec.config).unwrap_or_default();
    let status = if rec.outcome.failure.is_some() {
        "failed"
    } else {
        "completed"
    };
    let sql = format!(
        "INSERT INTO unit_rows VALUES (?, ?, ?, ?, ?, CAST(? AS INTEGER[][]), {ops_list}, ?, ?, ?, ?, ?, ?, ?, \
         to_timestamp(?)::TIMESTAMP, to_timestamp(?)::TIMESTAMP, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    );
    let mut stmt = conn.prepare(&sql).during("staging a run")?;
    let epochs = rec.config.train_epochs.round() as i32;
    let finite = |v: f64| v.is_finite().then_some(v);
    let points: Vec<Option<usize>> = if rec.outcome.evaluations.is_empty() {
        vec![None]
    } else {
        (0..rec.outcome.evaluations.len()).map(Some).collect()
    };
    for p in points {
        let e = p.map(|k| rec.outcome.evaluations[k]);
        stmt.execute(params![
            rec.run_id,
            hash,
            matrix.n() as i32,
            matrix.num_edges() as i32,
            matrix.to_bit_string(),
            format!("[{}]", nested.join(",")),
            rec.outcome.trainable_parameters as i64,
            epochs,
            rec.repeat as i32,
            config,
            rec.backend,
            rec.device,
            rec.seed,
            epoch_secs(rec.started),
            epoch_secs(rec.finished),
            status,
            rec.outcome.failure,
            rec.outcome.attempts as i32,
            p.map(|k| k as i32),
            e.map(|e| e.epoch),
            e.map(|e| e.training_time),
            e.and_then(|e| finite(e.train_accuracy)),
            e.and_then(|e| finite(e.validation_accuracy)),
            e.and_then(|e| finite(e.test_accuracy)),
            rec.outcome.total_time,
        ])
        .during("staging a run")?;
    }
    Ok(())
}

/// Moves the staged runs into the tables of `conn` in one transaction
/// (runs already there are skipped); returns the runs added.
pub fn merge(conn: &Connection) -> Result<u64, DbError> {
    conn.execute_batch(TRAINING_SQL)
        .during("running sql/training.sql")?;
    let before: i64 = conn
        .query_row("SELECT count(*) FROM training_runs", [], |r| r.get(0))
        .during("counting runs")?;
    conn.execute_batch(&format!("BEGIN TRANSACTION; {MERGE_RUNS_SQL}; COMMIT;"))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })
        .during("running sql/merge_runs.sql")?;
    let after: i64 = conn
        .query_row("SELECT count(*) FROM training_runs", [], |r| r.get(0))
        .during("counting runs")?;
    Ok((after - before) as u64)
}

/// Writes the rows of one run as `path` (Parquet, temporary name then
/// rename): a worker's finished unit.
pub fn write_unit(path: &Path, rec: &RunRecord<'_>) -> Result<(), DbError> {
    let conn = Connection::open_in_memory().during("opening DuckDB")?;
    stage(&conn, rec)?;
    crate::db::copy_to_parquet(&conn, "SELECT * FROM unit_rows ORDER BY point", path)
}

/// Merges Parquet unit files into `conn`; returns the runs added.
pub fn merge_units(conn: &Connection, files: &[std::path::PathBuf]) -> Result<u64, DbError> {
    if files.is_empty() {
        return Ok(0);
    }
    let list: Vec<String> = files
        .iter()
        .map(|f| sql_literal(&f.display().to_string()))
        .collect();
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE unit_rows AS SELECT * FROM read_parquet([{}])",
        list.join(", ")
    ))
    .during("reading the unit files")?;
    merge(conn)
}
