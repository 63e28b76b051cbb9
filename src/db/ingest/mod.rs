//! Ingest: a release TFRecord file into the DuckDB tables `models` and `evaluations`, decoded in parallel from memory-mapped windows, checked record by record, bulk-loaded through Arrow.
//!
//! The file is mapped a window at a time (so resident memory stays small
//! however large the file), its frames are found by [`scan`], and the
//! records of a window are decoded on every core, 40,960 records per task,
//! straight into the Arrow columns of one record batch (one reused
//! `ModelMetrics` per task, so a release record costs no allocation): one
//! DuckDB row group per batch. The records after a window's last whole
//! batch are read again with the next window. A short sequential pass then
//! numbers the repeats in file order (the only column that needs it) and
//! collects the unique cells, and the batches are streamed into one DuckDB
//! insert (an Arrow scan, see [`NewDb::insert_arrow`]) running on another
//! thread while the next window decodes. At the end every unique cell's
//! hash is recomputed from its stored matrix and ops.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use arrow::record_batch::RecordBatch;

use crate::cell::generate::Progress;
use crate::dataset::tfrecord::FramingError;
use crate::db::{DbError, DuckDbContext, NewDb, create_schema, create_views};

mod cells;
mod decode;
mod load;

use cells::*;
use decode::*;
pub use decode::{evaluations_schema, models_schema};
pub use load::export_parquet;
use load::*;

pub use crate::dataset::{RELEASE_SOURCE, SYNTHETIC_CHECKPOINT_PREFIX, SYNTHETIC_SOURCE};

/// The `checkpoint_path` stored for a record's path: the path, except that
/// the bare synthetic mark (which `source` carries) is NULL.
pub fn stored_checkpoint_path(path: Option<&str>) -> Option<&str> {
    path.filter(|&p| p != SYNTHETIC_CHECKPOINT_PREFIX)
}

/// How to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Skip (and count) records with bad framing or payload instead of
    /// stopping at the first one.
    pub skip_bad_records: bool,
    /// Repeats expected per (cell, budget); other counts are reported as
    /// anomalies.
    pub expected_repeats: u32,
    /// Bytes of the file mapped at once (the first window maps at most
    /// 40 MiB, so that DuckDB starts sooner).
    pub window_bytes: usize,
    /// Records per Arrow batch handed to DuckDB (the default makes a batch
    /// of three-point runs exactly one DuckDB row group).
    pub batch_records: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            skip_bad_records: false,
            expected_repeats: 3,
            window_bytes: 64 << 20,
            batch_records: RECORDS_PER_BATCH,
        }
    }
}

/// Why an ingest stopped. Every error about the data names the file, the
/// record number (0-based) and the byte offset of the record.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Bad TFRecord framing (CRC mismatch, truncation).
    #[error("{path}: {source}")]
    Framing {
        /// The file.
        path: String,
        /// What and where.
        source: FramingError,
    },
    /// A record whose payload cannot be decoded, or holds an impossible value.
    #[error("{path}: record {index} at byte {offset}: {reason}")]
    Record {
        /// The file.
        path: String,
        /// Record number, 0-based.
        index: u64,
        /// Byte offset of the record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The file holds no records.
    #[error("{path}: no records")]
    Empty {
        /// The file.
        path: String,
    },
    /// The database could not be written.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A record that was skipped (with `skip_bad_records`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Record number, 0-based.
    pub index: u64,
    /// Byte offset.
    pub offset: u64,
    /// Why.
    pub reason: String,
}

/// Irregularities that do not stop an ingest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Anomalies {
    /// (cell, budget) groups by their number of repeats, for counts other
    /// than the expected one.
    pub unexpected_repeats: BTreeMap<u32, u64>,
    /// Runs whose evaluation_data does not hold exactly three points.
    pub runs_without_three_points: u64,
    /// Cells that lack a budget present elsewhere in the file.
    pub cells_missing_budgets: u64,
    /// Records whose matrix, ops or parameter count differ from the first
    /// record of the same hash (the first is kept in `models`).
    pub inconsistent_records: u64,
    /// Cells dropped because their stored hash is not the hash of their
    /// matrix and ops (only with `skip_bad_records`).
    pub hash_mismatches: u64,
}

impl Anomalies {
    /// Whether nothing irregular was seen.
    pub fn is_empty(&self) -> bool {
        *self == Anomalies::default()
    }
}

/// What an ingest did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Records read (skipped ones included).
    pub records: u64,
    /// Unique cells (rows of `models`).
    pub cells: u64,
    /// Training runs loaded (one per record).
    pub runs: u64,
    /// Rows of `evaluations`.
    pub evaluations: u64,
    /// Budgets (epochs) present, ascending.
    pub budgets: Vec<i32>,
    /// Budgets in order of first appearance in the file.
    pub budget_order: Vec<i32>,
    /// Runs whose rows are marked synthetic.
    pub synthetic_runs: u64,
    /// Number of skipped records.
    pub skipped: u64,
    /// The first skipped records (at most 20), for the report.
    pub skipped_examples: Vec<Skipped>,
    /// Irregularities.
    pub anomalies: Anomalies,
    /// Bytes of the file.
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
}

/// With `NASBENCH_TRACE` set, prints the seconds since `start` at a stage's end.
pub fn trace(stage: &str, start: Instant) {
    if std::env::var_os("NASBENCH_TRACE").is_some() {
        // utime + stime of the process, in clock ticks (1/100 s on Linux).
        let cpu = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|st| {
                let f: Vec<u64> = st
                    .rsplit(')')
                    .next()?
                    .split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|x| x.parse().ok())
                    .collect();
                Some(f.iter().sum::<u64>() as f64 / 100.0)
            })
            .unwrap_or(f64::NAN);
        eprintln!(
            "[trace] {:>8.3} s wall {cpu:>8.2} s cpu  {stage}",
            start.elapsed().as_secs_f64()
        );
    }
}

/// Records decoded into one Arrow batch on one worker. The release's runs
/// have three evaluation points each, so such a batch is exactly one DuckDB
/// row group, which DuckDB's ordered insert writes as it comes: a batch of
/// fewer rows is kept apart and merged with its neighbours later, one of
/// more rows leaves a partial row group behind.
pub(super) const RECORDS_PER_BATCH: usize = ROW_GROUP_ROWS / 3;

/// The batches of one window, ready to append.
pub(super) type Batches = Vec<RecordBatch>;

/// Reads `path` and loads it into `conn`, whose tables must not exist yet:
/// creates the schema, appends every record, checks every cell, and creates
/// the views. `progress` advances by bytes.
pub fn ingest(
    conn: &NewDb,
    path: &Path,
    opts: &IngestOptions,
    progress: &(dyn Progress + Sync),
) -> Result<Summary, IngestError> {
    let start = Instant::now();
    let name = path.display().to_string();
    let io = |source| IngestError::Io {
        path: name.clone(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len();
    if bytes == 0 {
        return Err(IngestError::Empty { path: name });
    }
    create_schema(conn)?;
    progress.start_bytes("reading records", bytes);

    let (tx, rx) = sync_channel::<Batches>(2);
    let loader = conn.loader();
    // The views do not depend on the rows: they are created on a
    // connection of their own while the first window is read.
    let views_conn = conn
        .try_clone()
        .during("opening a connection for the views")?;
    std::thread::scope(|s| {
        let views = s.spawn(move || create_views(&views_conn));
        // `evaluations` loads on a thread of its own for the whole file.
        let evaluations = s.spawn(move || {
            let r = load_evaluations(loader, rx);
            trace("evaluations inserted", start);
            r
        });
        let reader = s.spawn(|| read_windows(&file, bytes, &name, opts, progress, tx));
        let collected = reader
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let viewed = views
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let load_done = evaluations.is_finished();
        let wait = move || {
            evaluations
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        };
        // A reader error explains a load stopped by a closed channel.
        let collector = match collected {
            Ok(c) => c,
            Err(e) => {
                let _ = wait();
                return Err(e);
            }
        };
        trace("records decoded", start);
        if let Err(e) = viewed {
            let _ = wait();
            return Err(e.into());
        }
        if load_done {
            // Ended before the reader: the load failed (or the file is
            // tiny); either way there is nothing left to overlap.
            wait()?;
            finish(
                conn,
                collector,
                || Ok(()),
                &name,
                opts,
                bytes,
                start,
                progress,
            )
        } else {
            // The cells are checked and `models` loads while `evaluations`
            // takes in the last windows.
            finish(conn, collector, wait, &name, opts, bytes, start, progress)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::graph::Matrix;
    use crate::cell::ops::{INPUT, OUTPUT};
    use crate::cell::spec::Domain;
    use crate::rng::SplitMix64;

    /// The key of every lowercase hash is what the standard library reads;
    /// anything else (uppercase, other characters, another length) has none.
    #[test]
    fn hash_keys_are_the_hex_value_of_lowercase_hashes_only() {
        let mut rng = SplitMix64::new(5);
        for _ in 0..10_000 {
            let v = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
            let hex = format!("{v:032x}");
            assert_eq!(hash_key(&hex), Some(v), "{hex}");
            assert_eq!(key_hex(v), hex);
            let upper = hex.to_uppercase();
            assert_eq!(hash_key(&upper), (upper == hex).then_some(v), "{upper}");
            let mut bytes = hex.clone().into_bytes();
            let at = (rng.next_u64() % 32) as usize;
            bytes[at] = [b'g', b'x', b' ', b'-', b'+', b'G', 0xc3][(rng.next_u64() % 7) as usize];
            let broken = String::from_utf8_lossy(&bytes).into_owned();
            assert_eq!(hash_key(&broken), None, "{broken:?}");
        }
        for h in ["", "0", &"0".repeat(31), &"0".repeat(33), &"f".repeat(64)] {
            assert_eq!(hash_key(h), None, "{h:?}");
        }
        assert_eq!(hash_key(&"f".repeat(32)), Some(u128::MAX));
        assert_eq!(hash_key(&"0".repeat(32)), Some(0));
    }

    /// Random cells, stored as the release stores them or not (pruning
    /// needed, ops outside the space, too many vertices or edges, lower
    /// triangle, ops of the wrong length): wherever the shortcut answers,
    /// `ModelSpec` accepts the cell unpruned with the same labels.
    #[test]
    fn stored_labels_agree_with_model_spec() {
        let mut rng = SplitMix64::new(11);
        let names = [
            INPUT,
            OUTPUT,
            "conv3x3-bn-relu",
            "conv1x1-bn-relu",
            "maxpool3x3",
            "conv5x5",
        ];
        let domain = Domain::default();
        let (mut taken, mut declined) = (0, 0);
        for _ in 0..20_000 {
            let n = 1 + (rng.next_u64() % 9) as usize;
            let density = rng.next_u64() % 4;
            let lower = rng.next_u64().is_multiple_of(50);
            let mut rows = vec![0u64; n];
            for (i, row) in rows.iter_mut().enumerate() {
                for j in 0..n {
                    if (j > i || (lower && j < i)) && rng.next_u64() % 4 <= density {
                        *row |= 1 << j;
                    }
                }
            }
            let matrix = Matrix::from_row_masks(&rows).unwrap();
            let len = match rng.next_u64() % 20 {
                0 => n + 1,
                1 => n.saturating_sub(1),
                _ => n,
            };
            let mut ops: Vec<&str> = (0..len)
                .map(|_| names[2 + (rng.next_u64() % 3) as usize])
                .collect();
            if len > 0 && !rng.next_u64().is_multiple_of(20) {
                ops[0] = INPUT;
                ops[len - 1] = OUTPUT;
            }
            if len > 2 && rng.next_u64().is_multiple_of(20) {
                ops[1] = names[(rng.next_u64() % 6) as usize];
            }
            let operations = ops.join(",");
            let slow = spec_labels(matrix.clone(), &operations, &domain)
                .map(|(_, pruned, labels)| (pruned, labels));
            match stored_labels(&matrix, &operations, &domain) {
                Some(labels) => {
                    taken += 1;
                    assert_eq!(slow, Ok((matrix, labels)), "{rows:?} {operations}");
                }
                None => {
                    declined += 1;
                    // Declined only where pruning or an error has a say.
                    if let Ok((pruned, _)) = slow {
                        assert_ne!(pruned, matrix, "{rows:?} {operations}");
                    }
                }
            }
        }
        assert!(taken > 1000 && declined > 1000, "{taken} {declined}");
    }
}
