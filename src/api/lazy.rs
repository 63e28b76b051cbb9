//! The lazy store: answers each lookup with a point query against DuckDB (a database file or a Parquet export), loading nothing up front.

use std::collections::BTreeMap;
use std::path::Path;

use duckdb::{Config, Connection, params};

use super::index::graph_of;
use super::{ApiError, CellMetrics, DATASET_SOURCES_SQL, FixedStats, Point, RunMetrics};
use crate::cell::graph::ModelHash;
use crate::db::{DuckDbContext, sql_literal};

/// A read-only connection to the dataset, and what it has learned so far.
pub struct Lazy {
    conn: Connection,
    /// Budgets ascending, and in order of first appearance.
    budgets: Option<(Vec<u32>, Vec<u32>)>,
}

impl std::fmt::Debug for Lazy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lazy")
            .field("budgets", &self.budgets)
            .finish()
    }
}

/// The budgets of `budgets` in the order the ingested file first showed
/// them (table `ingests`); ascending where that is not recorded.
pub fn budget_order(conn: &Connection, budgets: &[u32]) -> Result<Vec<u32>, ApiError> {
    let recorded: Option<Vec<u32>> = conn
        .query_row(
            "SELECT budget_order FROM ingests ORDER BY ingested_at LIMIT 1",
            [],
            |r| r.get::<_, duckdb::types::Value>(0),
        )
        .ok()
        .and_then(|v| match v {
            duckdb::types::Value::List(items) => items
                .into_iter()
                .map(|x| match x {
                    duckdb::types::Value::Int(i) => u32::try_from(i).ok(),
                    _ => None,
                })
                .collect(),
            _ => None,
        });
    let mut order: Vec<u32> = recorded
        .unwrap_or_default()
        .into_iter()
        .filter(|e| budgets.contains(e))
        .collect();
    // Budgets the record lacks (trained rows, an older database) go last.
    for &e in budgets {
        if !order.contains(&e) {
            order.push(e);
        }
    }
    Ok(order)
}

/// Opens `path` for lookups: a DuckDB file (read-only), or a directory
/// holding `models.parquet` and `evaluations.parquet` (`nasbench ingest
/// --parquet` or `nasbench export`).
pub fn connect(path: &Path) -> Result<Connection, ApiError> {
    // Two threads: the lookup scans the hash column of `evaluations`;
    // more threads cost memory for little gain on a point query.
    let config = || {
        Config::default()
            .access_mode(duckdb::AccessMode::ReadOnly)
            .and_then(|c| c.threads(2))
    };
    if path.is_dir() {
        let conn = Connection::open_in_memory_with_flags(
            Config::default().threads(1).during("configuring DuckDB")?,
        )
        .during("opening DuckDB")?;
        for table in ["models", "evaluations"] {
            let file = path.join(format!("{table}.parquet"));
            if !file.is_file() {
                return Err(ApiError::Source {
                    path: path.display().to_string(),
                    message: format!(
                        "no {table}.parquet here; expected the output of `nasbench ingest --parquet DIR`"
                    ),
                });
            }
            conn.execute_batch(&format!(
                "CREATE VIEW {table} AS SELECT * FROM read_parquet({})",
                sql_literal(&file.display().to_string())
            ))
            .during(format!("reading {}", file.display()))?;
        }
        let ingests = path.join("ingests.parquet");
        if ingests.is_file() {
            conn.execute_batch(&format!(
                "CREATE VIEW ingests AS SELECT * FROM read_parquet({})",
                sql_literal(&ingests.display().to_string())
            ))
            .during(format!("reading {}", ingests.display()))?;
        }
        Ok(conn)
    } else if path.is_file() {
        // A writer (a trainer storing a run) holds the file for moments.
        let conn = crate::db::lock::retry_locked(
            crate::db::OPEN_PATIENCE,
            |_| {},
            || Connection::open_with_flags(path, config()?),
        )
        .during(format!("opening {}", path.display()))?;
        Ok(conn)
    } else {
        Err(ApiError::Source {
            path: path.display().to_string(),
            message: "no such database file or Parquet directory".into(),
        })
    }
}

fn point(row: &duckdb::Row<'_>, first: usize) -> duckdb::Result<Point> {
    Ok(Point {
        training_time: row.get(first)?,
        train_accuracy: row.get(first + 1)?,
        validation_accuracy: row.get(first + 2)?,
        test_accuracy: row.get(first + 3)?,
    })
}

impl Lazy {
    /// Opens `path` (see [`connect`]).
    pub fn open(path: &Path) -> Result<Lazy, ApiError> {
        Ok(Lazy {
            conn: connect(path)?,
            budgets: None,
        })
    }

    fn load_budgets(&mut self) -> Result<&(Vec<u32>, Vec<u32>), ApiError> {
        if self.budgets.is_none() {
            let what = "reading the budgets";
            let mut stmt = self
                .conn
                .prepare(&format!(
                    "SELECT DISTINCT epochs FROM evaluations \
                     WHERE source IN {DATASET_SOURCES_SQL} ORDER BY epochs"
                ))
                .during(what)?;
            let ascending: Vec<u32> = stmt
                .query_map([], |r| r.get::<_, u32>(0))
                .during(what)?
                .collect::<Result<_, _>>()
                .during(what)?;
            let order = budget_order(&self.conn, &ascending)?;
            self.budgets = Some((ascending, order));
        }
        Ok(self.budgets.get_or_insert_default())
    }

    /// Budgets present, ascending (one scan, then remembered).
    pub fn budgets(&mut self) -> Result<&[u32], ApiError> {
        Ok(&self.load_budgets()?.0)
    }

    /// Budgets in the order they first appear in the data.
    pub fn budget_order(&mut self) -> Result<&[u32], ApiError> {
        Ok(&self.load_budgets()?.1)
    }

    /// Everything stored for `hash`, or `None` when the dataset lacks it.
    pub fn cell(&mut self, hash: &ModelHash) -> Result<Option<CellMetrics>, ApiError> {
        let hex = hash.to_hex();
        let what = || format!("looking up {hex}");
        // Both statements are parsed and planned once per store (the
        // connection's statement cache): a lookup only binds the hash.
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT adjacency, ops, trainable_parameters FROM models WHERE hash = ?",
            )
            .during(what())?;
        let mut rows = stmt.query(params![hex]).during(what())?;
        let Some(row) = rows.next().during(what())? else {
            return Ok(None);
        };
        let adjacency: String = row.get(0).during(what())?;
        let ops: duckdb::types::Value = row.get(1).during(what())?;
        let ops: Vec<String> = match ops {
            duckdb::types::Value::List(items) => items
                .into_iter()
                .map(|v| match v {
                    duckdb::types::Value::Text(s) => Ok(s),
                    other => Err(ApiError::Schema(format!("cell {hex}: op {other:?}"))),
                })
                .collect::<Result<_, _>>()?,
            other => return Err(ApiError::Schema(format!("cell {hex}: ops {other:?}"))),
        };
        let trainable_parameters: Option<i64> = row.get(2).during(what())?;
        drop(rows);

        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT epochs, repeat, \
                 max(training_time) FILTER (point = 1), max(train_accuracy) FILTER (point = 1), \
                 max(validation_accuracy) FILTER (point = 1), max(test_accuracy) FILTER (point = 1), \
                 max(training_time) FILTER (point = 2), max(train_accuracy) FILTER (point = 2), \
                 max(validation_accuracy) FILTER (point = 2), max(test_accuracy) FILTER (point = 2) \
                 FROM evaluations WHERE hash = ? AND source IN {DATASET_SOURCES_SQL} \
                 GROUP BY epochs, repeat ORDER BY epochs, repeat"
            ))
            .during(what())?;
        let runs = stmt
            .query_map(params![hex], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    RunMetrics {
                        halfway: point(r, 2)?,
                        last: point(r, 6)?,
                    },
                ))
            })
            .during(what())?;
        let mut computed: BTreeMap<u32, Vec<RunMetrics>> = BTreeMap::new();
        for run in runs {
            let (epochs, m) = run.during(what())?;
            computed.entry(epochs).or_default().push(m);
        }
        if computed.is_empty() {
            // A cell that only trained runs have (any ops, any size): not
            // part of the dataset's answers (SQL and `query --trained`
            // show it).
            return Ok(None);
        }
        let names: Vec<&str> = ops.iter().map(String::as_str).collect();
        let graph = graph_of(&hex, &adjacency, &names)?;
        Ok(Some(CellMetrics {
            fixed: FixedStats {
                hash: *hash,
                graph,
                trainable_parameters,
            },
            computed,
        }))
    }

    /// Every hash of the dataset (cells with dataset runs), sorted.
    pub fn hashes(&self) -> Result<Vec<ModelHash>, ApiError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT DISTINCT hash FROM evaluations WHERE source IN {DATASET_SOURCES_SQL} \
                 ORDER BY hash"
            ))
            .during("listing hashes")?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .during("listing hashes")?;
        let mut out = Vec::new();
        for h in rows {
            let h = h.during("listing hashes")?;
            out.push(
                h.parse()
                    .map_err(|_| ApiError::Schema(format!("models: bad hash {h:?}")))?,
            );
        }
        Ok(out)
    }

    /// The connection, for building an in-memory index from it.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}
