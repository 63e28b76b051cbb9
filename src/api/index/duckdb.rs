//! Building the index from a database or its Parquet export: the dataset's cells and runs read out of DuckDB through Arrow.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use duckdb::Connection;

use super::write::{CellIn, Writer, graph_of};
use super::{MAX_BUDGETS, SourceFile};
use crate::api::{ApiError, DATASET_SOURCES_SQL};
use crate::cell::graph::ModelHash;
use crate::db::DuckDbContext;

/// The string column `name` of `batch` as UTF-8 (DuckDB may hand out
/// views or large strings).
fn strings(batch: &RecordBatch, name: &str) -> Result<Arc<dyn Array>, ApiError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| ApiError::Schema(format!("query result lacks column {name}")))?;
    arrow::compute::cast(col, &DataType::Utf8)
        .map_err(|e| ApiError::Schema(format!("column {name}: {e}")))
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Arc<dyn Array>, ApiError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| ApiError::Schema(format!("query result lacks column {name}")))
}

fn cast(col: &Arc<dyn Array>, to: &DataType, name: &str) -> Result<Arc<dyn Array>, ApiError> {
    arrow::compute::cast(col, to).map_err(|e| ApiError::Schema(format!("column {name}: {e}")))
}

/// The dataset's cells as an SQL table expression: `models` without the
/// cells that only trained runs have (`nasbench train` adds any cell,
/// identity ops and more than 7 vertices included; the index holds the
/// benchmark's cells, and SQL shows the trained ones).
fn dataset_models(conn: &Connection) -> Result<String, ApiError> {
    let has_runs =
        crate::db::table_exists(conn, None, "training_runs").during("looking for training_runs")?;
    let trained: i64 = if has_runs {
        conn.query_row("SELECT count(*) FROM training_runs", [], |r| r.get(0))
            .during("counting trained runs")?
    } else {
        0
    };
    if trained == 0 {
        return Ok("models".into());
    }
    Ok(format!(
        "(SELECT * FROM models WHERE hash NOT IN (\
         SELECT hash FROM training_runs EXCEPT \
         SELECT DISTINCT hash FROM evaluations WHERE source IN {DATASET_SOURCES_SQL} \
         AND hash IN (SELECT hash FROM training_runs)))"
    ))
}

/// The index's bytes from a connection whose `models` and `evaluations`
/// hold a dataset.
pub(super) fn build_bytes(conn: &Connection, source: Vec<SourceFile>) -> Result<Vec<u8>, ApiError> {
    // Budgets and repeats.
    let what = "reading the budgets";
    let mut stmt = conn
        .prepare(&format!(
            "SELECT epochs, max(repeat) FROM evaluations \
             WHERE source IN {DATASET_SOURCES_SQL} GROUP BY epochs ORDER BY epochs"
        ))
        .during(what)?;
    let mut budgets = Vec::new();
    let mut repeats = 0usize;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .during(what)?;
    for row in rows {
        let (e, r) = row.during(what)?;
        budgets.push(u32::try_from(e).map_err(|_| ApiError::Schema(format!("epochs {e}")))?);
        repeats = repeats.max(usize::try_from(r).unwrap_or(0).min(255));
    }
    if budgets.len() > MAX_BUDGETS {
        return Err(ApiError::Schema(format!(
            "{} budgets; the query index holds at most {MAX_BUDGETS}",
            budgets.len()
        )));
    }
    let budget_order = crate::api::lazy::budget_order(conn, &budgets)?;

    // A build scans everything: use every core (lookups use one).
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    conn.execute_batch(&format!("SET threads = {threads}"))
        .during("configuring DuckDB")?;

    // Cells in the order `models` stores them (DuckDB keeps insertion
    // order in a plain scan; ingest stores them as they first appear in the
    // release file): that order is `hash_iterator`'s, and hash order the
    // cell numbers of the evaluations query.
    let models = dataset_models(conn)?;
    let mut cells: Vec<CellIn> = Vec::new();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT hash, adjacency, ops, trainable_parameters FROM {models}"
        ))
        .during("reading models")?;
    for batch in stmt.stream_arrow([]).during("reading models")? {
        let batch = batch.during("reading models")?;
        let hashes = strings(&batch, "hash")?;
        let hashes = hashes.as_string::<i32>();
        let adj = strings(&batch, "adjacency")?;
        let adj = adj.as_string::<i32>();
        let ops = column(&batch, "ops")?;
        let ops = cast(
            ops,
            &DataType::List(Arc::new(arrow::datatypes::Field::new_list_field(
                DataType::Utf8,
                true,
            ))),
            "ops",
        )?;
        let ops = ops.as_list::<i32>();
        let params = cast(
            column(&batch, "trainable_parameters")?,
            &DataType::Int64,
            "trainable_parameters",
        )?;
        let params = params.as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let h = hashes.value(i);
            let hash: ModelHash = h
                .parse()
                .map_err(|_| ApiError::Schema(format!("models: bad hash {h:?}")))?;
            let names = ops.value(i);
            let names = names.as_string::<i32>();
            let names: Vec<&str> = (0..names.len()).map(|k| names.value(k)).collect();
            let graph = graph_of(h, adj.value(i), &names)?;
            let p = if params.is_null(i) {
                i64::MIN
            } else {
                params.value(i)
            };
            cells.push(CellIn {
                hash: hash.0,
                graph,
                params: p,
            });
        }
    }
    let mut by_hash: Vec<u32> = (0..cells.len() as u32).collect();
    by_hash.sort_unstable_by_key(|&i| cells[i as usize].hash);
    let mut order = vec![0u32; cells.len()];
    for (sorted, &stored) in by_hash.iter().enumerate() {
        order[stored as usize] = sorted as u32;
    }
    let cells: Vec<CellIn> = by_hash.iter().map(|&i| cells[i as usize]).collect();
    let mut w = Writer::new(&cells, budget_order, repeats, Some(&order), source)?;

    // Runs: halfway and final points of every dataset run, each row with
    // its cell number (the join runs inside DuckDB, in parallel).
    let mut stmt = conn
        .prepare(&format!(
            "SELECT m.cell, e.epochs, e.repeat, e.point, e.training_time, e.train_accuracy, \
             e.validation_accuracy, e.test_accuracy \
             FROM evaluations e LEFT JOIN \
             (SELECT hash, (row_number() OVER (ORDER BY hash) - 1)::INTEGER AS cell FROM {models}) m \
             ON e.hash = m.hash \
             WHERE e.point IN (1, 2) AND e.source IN {DATASET_SOURCES_SQL}"
        ))
        .during("reading evaluations")?;
    for batch in stmt.stream_arrow([]).during("reading evaluations")? {
        let batch = batch.during("reading evaluations")?;
        let ints = |name: &str| cast(column(&batch, name)?, &DataType::Int32, name);
        let (cell, epochs, repeat, point) = (
            ints("cell")?,
            ints("epochs")?,
            ints("repeat")?,
            ints("point")?,
        );
        let (cell, epochs, repeat, point) = (
            cell.as_primitive::<Int32Type>(),
            epochs.as_primitive::<Int32Type>(),
            repeat.as_primitive::<Int32Type>(),
            point.as_primitive::<Int32Type>(),
        );
        let mut values = Vec::with_capacity(4);
        for name in [
            "training_time",
            "train_accuracy",
            "validation_accuracy",
            "test_accuracy",
        ] {
            values.push(cast(column(&batch, name)?, &DataType::Float64, name)?);
        }
        let values: Vec<_> = values
            .iter()
            .map(|v| v.as_primitive::<Float64Type>())
            .collect();
        for i in 0..batch.num_rows() {
            if cell.is_null(i) {
                return Err(ApiError::Schema(
                    "evaluations has hashes that models lacks (list them with: SELECT DISTINCT \
                     hash FROM evaluations ANTI JOIN models USING (hash))"
                        .into(),
                ));
            }
            let e = u32::try_from(epochs.value(i)).unwrap_or(u32::MAX);
            let Some(b) = w.budget(e) else {
                continue;
            };
            let r = repeat.value(i);
            if r < 1 {
                continue;
            }
            let vals: [Option<f64>; 4] =
                std::array::from_fn(|j| (!values[j].is_null(i)).then(|| values[j].value(i)));
            w.put(
                cell.value(i) as usize,
                b,
                r as usize - 1,
                point.value(i) == 2,
                vals,
            );
        }
    }
    Ok(w.finish())
}
