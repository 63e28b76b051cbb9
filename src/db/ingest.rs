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

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Instant;

use arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, Int32Array, Int32Builder, Int64Builder, ListBuilder,
    StringBuilder,
};
use arrow::array::{RecordBatchIterator, RecordBatchReader};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use duckdb::Connection;
use memmap2::MmapOptions;
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::cell::generate::Progress;
use crate::cell::graph::{Matrix, ModelHash, hex32};
use crate::cell::lanes::{BatchScratch, LANES, hash_batch};
use crate::cell::ops::{CANONICAL_OPS, INPUT, INPUT_LABEL, OUTPUT, OUTPUT_LABEL};
use crate::cell::spec::{Domain, ModelSpec, kept_vertices};
use crate::dataset::record::{ModelMetrics, RecordError, decode_into};
use crate::dataset::tfrecord::{Frame, FramingError, HEADER_LEN, resync, scan};
use crate::db::export::{list_item, list_of};
use crate::db::{
    DbError, DuckDbContext, Loader, NewDb, copy_to_parquet, create_keys, create_schema,
    create_views,
};

/// `source` of the rows of a release file.
pub const RELEASE_SOURCE: &str = "nasbench-101";
/// `source` of the rows of a file written by `nasbench synth`.
pub const SYNTHETIC_SOURCE: &str = "synthetic";
/// Checkpoint paths starting with this mark a synthetic record; ingest gives
/// its rows [`SYNTHETIC_SOURCE`]. The mark alone, as `nasbench synth` writes
/// it, names no checkpoint and is stored as NULL (the release's records
/// have no checkpoint paths either), see [`stored_checkpoint_path`].
pub const SYNTHETIC_CHECKPOINT_PREFIX: &str = "synthetic:";

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

/// One decoded record's run, borrowing its strings from the mapped file;
/// its evaluations are already in its chunk's columns.
struct Run<'a> {
    index: u64,
    offset: u64,
    key: u128,
    epochs: i32,
    adjacency: Cow<'a, str>,
    operations: Cow<'a, str>,
    params: Option<i32>,
    /// Rows of `evaluations` (evaluation points).
    points: u32,
    synthetic: bool,
}

/// A bad record, before the file name is attached.
struct Bad {
    index: u64,
    offset: u64,
    reason: String,
    framing: Option<FramingError>,
}

impl Bad {
    fn into_error(self, path: &str) -> IngestError {
        match self.framing {
            Some(source) => IngestError::Framing {
                path: path.to_string(),
                source,
            },
            None => IngestError::Record {
                path: path.to_string(),
                index: self.index,
                offset: self.offset,
                reason: self.reason,
            },
        }
    }

    fn skipped(&self) -> Skipped {
        Skipped {
            index: self.index,
            offset: self.offset,
            reason: self.reason.clone(),
        }
    }
}

fn framing_bad(e: FramingError) -> Bad {
    Bad {
        index: e.index(),
        offset: e.offset(),
        reason: e.to_string(),
        framing: Some(e),
    }
}

/// The first record seen for a hash: what `models` stores.
struct CellEntry {
    /// The stored hash, as [`hash_key`] reads it.
    key: u128,
    adjacency: String,
    operations: String,
    params: Option<i32>,
    index: u64,
    offset: u64,
    /// Runs of this cell so far, per budget.
    repeats: Repeats,
}

impl CellEntry {
    /// The stored hash as text.
    fn hash(&self) -> String {
        key_hex(self.key)
    }
}

/// Runs of one cell per budget, in order of first appearance: the release's
/// four budgets fit inline, so numbering a run costs no lookup beyond the
/// cell's own.
#[derive(Default)]
struct Repeats {
    inline: [(i32, u32); 4],
    more: Vec<(i32, u32)>,
}

impl Repeats {
    /// Counts one more run at `epochs` and returns its repeat number (1..).
    fn next(&mut self, epochs: i32) -> u32 {
        let slot = match self.inline.iter().position(|&(e, n)| n == 0 || e == epochs) {
            Some(i) => &mut self.inline[i],
            None => match self.more.iter().position(|&(e, _)| e == epochs) {
                Some(i) => &mut self.more[i],
                None => {
                    self.more.push((epochs, 0));
                    let last = self.more.len() - 1;
                    &mut self.more[last]
                }
            },
        };
        *slot = (epochs, slot.1 + 1);
        slot.1
    }

    /// The run count of each budget present.
    fn counts(&self) -> impl Iterator<Item = u32> + '_ {
        self.inline
            .iter()
            .chain(&self.more)
            .map(|&(_, n)| n)
            .filter(|&n| n > 0)
    }
}

/// Cells in the NAS-Bench-101 search space (and in both release files).
const SEARCH_SPACE_CELLS: u64 = 423_624;

/// State of the sequential pass, carried across windows.
#[derive(Default)]
struct Collector {
    /// Unique cells in order of first appearance (so in record order).
    cells: Vec<CellEntry>,
    /// Where each stored hash is in `cells`.
    positions: FxHashMap<u128, usize>,
    budgets: BTreeSet<i32>,
    budget_order: Vec<i32>,
    records: u64,
    runs: u64,
    evaluations: u64,
    synthetic_runs: u64,
    skipped: u64,
    skipped_examples: Vec<Skipped>,
    anomalies: Anomalies,
}

impl Collector {
    fn skip(&mut self, bad: &Bad) {
        self.skipped += 1;
        if self.skipped_examples.len() < 20 {
            self.skipped_examples.push(bad.skipped());
        }
    }

    /// Counts the run, records its cell and returns its repeat number.
    fn admit(&mut self, run: &Run<'_>) -> u32 {
        if self.budgets.insert(run.epochs) {
            self.budget_order.push(run.epochs);
        }
        self.runs += 1;
        self.evaluations += u64::from(run.points);
        self.synthetic_runs += u64::from(run.synthetic);
        if run.points != 3 {
            self.anomalies.runs_without_three_points += 1;
        }
        let cell = match self.positions.entry(run.key) {
            Entry::Occupied(o) => {
                let c = &mut self.cells[*o.get()];
                if c.adjacency != run.adjacency
                    || c.operations != run.operations
                    || c.params != run.params
                {
                    self.anomalies.inconsistent_records += 1;
                }
                c
            }
            Entry::Vacant(v) => {
                v.insert(self.cells.len());
                self.cells.push(CellEntry {
                    key: run.key,
                    adjacency: run.adjacency.to_string(),
                    operations: run.operations.to_string(),
                    params: run.params,
                    index: run.index,
                    offset: run.offset,
                    repeats: Repeats::default(),
                });
                let last = self.cells.len() - 1;
                &mut self.cells[last]
            }
        };
        cell.repeats.next(run.epochs)
    }
}

/// The stored hash a [`hash_key`] came from.
fn key_hex(key: u128) -> String {
    ModelHash(key.to_be_bytes()).to_hex()
}

/// Parses the 32 lowercase hex digits of a stored hash.
fn hash_key(h: &str) -> Option<u128> {
    if h.len() != 32
        || !h
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u128::from_str_radix(h, 16).ok()
}

/// Decodes and checks one record into `metrics`; returns its run and hash.
fn decode_run<'a>(
    buf: &'a [u8],
    frame: &Frame,
    index: u64,
    offset: u64,
    metrics: &mut ModelMetrics,
) -> Result<(Run<'a>, Cow<'a, str>), Bad> {
    let bad = |reason: String| Bad {
        index,
        offset,
        reason,
        framing: None,
    };
    let data = frame
        .check(buf)
        .map_err(|e| framing_bad(e.rebase(index - frame.index, offset - frame.offset)))?;
    let r = decode_into(data, metrics).map_err(|e: RecordError| bad(e.to_string()))?;
    let key = hash_key(&r.hash).ok_or_else(|| {
        bad(format!(
            "module hash {:?} is not 32 lowercase hex digits",
            r.hash
        ))
    })?;
    let epochs = i32::try_from(r.epochs)
        .ok()
        .filter(|&e| e > 0)
        .ok_or_else(|| {
            bad(format!(
                "epochs {} is not a positive 32-bit integer",
                r.epochs
            ))
        })?;
    let synthetic = metrics.evaluation_data.iter().any(|e| {
        e.checkpoint_path
            .as_deref()
            .is_some_and(|p| p.starts_with(SYNTHETIC_CHECKPOINT_PREFIX))
    });
    let run = Run {
        index,
        offset,
        key,
        epochs,
        adjacency: r.adjacency,
        operations: r.operations,
        params: metrics.trainable_parameters,
        points: metrics.evaluation_data.len() as u32,
        synthetic,
    };
    Ok((run, r.hash))
}

/// A chunk of a window's records, decoded on one worker: their
/// `evaluations` rows as Arrow columns, all but `repeat` (numbered later,
/// in file order), and each record's run or why it is bad.
struct Chunk<'a> {
    /// The columns of [`evaluations_schema`] without `repeat`.
    columns: Vec<ArrayRef>,
    rows: usize,
    records: Vec<Result<Run<'a>, Bad>>,
}

/// Index of `repeat` in [`evaluations_schema`].
const REPEAT_COLUMN: usize = 2;

/// Decodes `frames` (of the window `buf` at file offset `pos`, whose first
/// record is number `base_index`) straight into Arrow builders.
fn decode_chunk<'a>(buf: &'a [u8], frames: &[Frame], base_index: u64, pos: u64) -> Chunk<'a> {
    let rows = frames.len() * 3;
    let mut hash = StringBuilder::with_capacity(rows, rows * 32);
    let mut epochs = Int32Builder::with_capacity(rows);
    let mut point = Int32Builder::with_capacity(rows);
    let mut f: [Float64Builder; 5] = std::array::from_fn(|_| Float64Builder::with_capacity(rows));
    let mut ckpt = StringBuilder::with_capacity(rows, rows * 16);
    let mut total = Float64Builder::with_capacity(rows);
    let mut source = StringBuilder::with_capacity(rows, rows * 12);
    let mut metrics = ModelMetrics::default();
    let records = frames
        .iter()
        .map(|fr| {
            let (run, h) = decode_run(
                buf,
                fr,
                base_index + fr.index,
                pos + fr.offset,
                &mut metrics,
            )?;
            let src = if run.synthetic {
                SYNTHETIC_SOURCE
            } else {
                RELEASE_SOURCE
            };
            for (p, e) in metrics.evaluation_data.iter().enumerate() {
                hash.append_value(&h);
                epochs.append_value(run.epochs);
                point.append_value(p as i32);
                f[0].append_option(e.current_epoch);
                f[1].append_option(e.training_time);
                f[2].append_option(e.train_accuracy);
                f[3].append_option(e.validation_accuracy);
                f[4].append_option(e.test_accuracy);
                ckpt.append_option(stored_checkpoint_path(e.checkpoint_path.as_deref()));
                total.append_option(metrics.total_time);
                source.append_value(src);
            }
            Ok(run)
        })
        .collect();
    let [f0, f1, f2, f3, f4] = f.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    Chunk {
        rows: epochs.len(),
        columns: vec![
            Arc::new(hash.finish()),
            Arc::new(epochs.finish()),
            Arc::new(point.finish()),
            f0,
            f1,
            f2,
            f3,
            f4,
            Arc::new(ckpt.finish()),
            Arc::new(total.finish()),
            Arc::new(source.finish()),
        ],
        records,
    }
}

/// Schema of the `evaluations` table as Arrow.
pub fn evaluations_schema() -> Arc<Schema> {
    let f64_field = |name: &str| Field::new(name, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("hash", DataType::Utf8, false),
        Field::new("epochs", DataType::Int32, false),
        Field::new("repeat", DataType::Int32, false),
        Field::new("point", DataType::Int32, false),
        f64_field("current_epoch"),
        f64_field("training_time"),
        f64_field("train_accuracy"),
        f64_field("validation_accuracy"),
        f64_field("test_accuracy"),
        Field::new("checkpoint_path", DataType::Utf8, true),
        f64_field("total_time"),
        Field::new("source", DataType::Utf8, false),
    ]))
}

/// Schema of the `models` table as Arrow.
pub fn models_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("hash", DataType::Utf8, false),
        Field::new("num_vertices", DataType::Int32, false),
        Field::new("num_edges", DataType::Int32, false),
        Field::new("adjacency", DataType::Utf8, false),
        Field::new("matrix", list_of(list_of(DataType::Int32)), false),
        Field::new("ops", list_of(DataType::Utf8), false),
        Field::new("trainable_parameters", DataType::Int64, true),
    ]))
}

/// A unique cell, parsed and checked against the search space; its hash is
/// checked by [`check_hashes`]. (Its ops stay in `entry.operations`: kept
/// as `String`s, stored and pruned as a `ModelSpec` holds them, they raised
/// the full-size peak by about 250 MB.)
struct CheckedCell {
    entry: CellEntry,
    /// The matrix as stored.
    matrix: Matrix,
    /// The pruned matrix, where pruning changes the stored one.
    pruned: Option<Matrix>,
    /// The hash labels of the pruned ops.
    labels: Vec<i64>,
}

impl CheckedCell {
    /// The pruned matrix, as the hash sees the cell.
    fn pruned(&self) -> &Matrix {
        self.pruned.as_ref().unwrap_or(&self.matrix)
    }
}

/// The `models` rows of `cells`, with every buffer allocated once.
fn models_batch(cells: &[CheckedCell]) -> Result<RecordBatch, ArrowError> {
    let rows = cells.len();
    let vertices: usize = cells.iter().map(|c| c.matrix.n()).sum();
    let bits: usize = cells.iter().map(|c| c.entry.adjacency.len()).sum();
    let op_bytes: usize = cells.iter().map(|c| c.entry.operations.len()).sum();
    let mut hash = StringBuilder::with_capacity(rows, rows * 32);
    let mut nv = Int32Builder::with_capacity(rows);
    let mut ne = Int32Builder::with_capacity(rows);
    let mut adj = StringBuilder::with_capacity(rows, bits);
    let mut matrix = ListBuilder::with_capacity(
        ListBuilder::with_capacity(Int32Builder::with_capacity(bits), vertices)
            .with_field(list_item(DataType::Int32)),
        rows,
    )
    .with_field(list_item(list_of(DataType::Int32)));
    let mut ops =
        ListBuilder::with_capacity(StringBuilder::with_capacity(vertices, op_bytes), rows)
            .with_field(list_item(DataType::Utf8));
    let mut params = Int64Builder::with_capacity(rows);
    for c in cells {
        let hex = hex32(&c.entry.key.to_be_bytes());
        // Hex digits are ASCII.
        hash.append_value(std::str::from_utf8(&hex).unwrap_or_default());
        let m = &c.matrix;
        nv.append_value(m.n() as i32);
        ne.append_value(m.num_edges() as i32);
        adj.append_value(&c.entry.adjacency);
        for i in 0..m.n() {
            for j in 0..m.n() {
                matrix
                    .values()
                    .values()
                    .append_value(i32::from(m.get(i, j)));
            }
            matrix.values().append(true);
        }
        matrix.append(true);
        for op in c.entry.operations.split(',') {
            ops.values().append_value(op);
        }
        ops.append(true);
        params.append_option(c.entry.params.map(i64::from));
    }
    RecordBatch::try_new(
        models_schema(),
        vec![
            Arc::new(hash.finish()),
            Arc::new(nv.finish()),
            Arc::new(ne.finish()),
            Arc::new(adj.finish()),
            Arc::new(matrix.finish()),
            Arc::new(ops.finish()),
            Arc::new(params.finish()),
        ],
    )
}

/// Parses a stored row-major bit string into a matrix.
fn parse_adjacency(bits: &str) -> Result<Matrix, String> {
    let n = bits.len().isqrt();
    if n * n != bits.len() || n == 0 {
        return Err(format!(
            "adjacency has {} characters, not a square number",
            bits.len()
        ));
    }
    if n > 64 {
        return Err(format!(
            "adjacency has {n} vertices; at most 64 are supported"
        ));
    }
    let mut rows = vec![0u64; n];
    for (k, b) in bits.bytes().enumerate() {
        match b {
            b'0' => {}
            b'1' => rows[k / n] |= 1 << (k % n),
            _ => {
                return Err(format!(
                    "adjacency character {k} is {:?}, not 0 or 1",
                    char::from(b)
                ));
            }
        }
    }
    Matrix::from_row_masks(&rows).ok_or_else(|| "adjacency is not a matrix".to_string())
}

/// Parses a unique cell and checks it is a valid cell of the space; the
/// hash itself is checked in batches by [`check_hashes`].
fn parse_cell(entry: CellEntry, domain: &Domain) -> Result<CheckedCell, Box<(CellEntry, String)>> {
    let parsed = parse_adjacency(&entry.adjacency).and_then(|matrix| {
        match stored_labels(&matrix, &entry.operations, domain) {
            Some(labels) => Ok((matrix, None, labels)),
            None => spec_labels(matrix, &entry.operations, domain)
                .map(|(matrix, pruned, labels)| (matrix, Some(pruned), labels)),
        }
    });
    match parsed {
        Ok((matrix, pruned, labels)) => Ok(CheckedCell {
            entry,
            matrix,
            pruned,
            labels,
        }),
        Err(e) => Err(Box::new((entry, e))),
    }
}

/// Any cell through [`ModelSpec`]: the stored matrix, the pruned one and the
/// pruned ops' hash labels, or the original's error.
fn spec_labels(
    matrix: Matrix,
    operations: &str,
    domain: &Domain,
) -> Result<(Matrix, Matrix, Vec<i64>), String> {
    let ops: Vec<String> = operations.split(',').map(str::to_string).collect();
    let spec = ModelSpec::from_matrix(matrix, ops).map_err(|e| e.to_string())?;
    spec.check(domain).map_err(|e| e.to_string())?;
    let labels = spec.labels(&CANONICAL_OPS).map_err(|e| e.to_string())?;
    match spec.into_matrices() {
        (matrix, Some(pruned)) => Ok((matrix, pruned, labels)),
        (_, None) => Err("the input does not reach the output".to_string()),
    }
}

/// The hash labels of a cell as the release stores them (already pruned,
/// inside the domain), found without building a [`ModelSpec`]; `None` for
/// any other cell, which [`parse_cell`] then takes through `ModelSpec` for
/// its pruning and its exact error.
fn stored_labels(matrix: &Matrix, operations: &str, domain: &Domain) -> Option<Vec<i64>> {
    let n = matrix.n();
    let all = 1u64.checked_shl(n as u32)?.wrapping_sub(1);
    if n > domain.max_vertices
        || !matrix.is_upper_triangular()
        || kept_vertices(matrix)? != all
        || matrix.num_edges() > domain.max_edges
    {
        return None;
    }
    let mut ops = operations.split(',');
    let mut labels = Vec::with_capacity(n);
    (ops.next()? == INPUT).then_some(())?;
    labels.push(INPUT_LABEL);
    for _ in 1..n - 1 {
        let op = ops.next()?;
        domain.available_ops.iter().any(|a| a == op).then_some(())?;
        labels.push(CANONICAL_OPS.iter().position(|&c| c == op)? as i64);
    }
    (ops.next()? == OUTPUT && ops.next().is_none()).then_some(())?;
    labels.push(OUTPUT_LABEL);
    Some(labels)
}

/// Recomputes every cell's hash, [`LANES`] cells of one shape at a time, and
/// returns the cells whose stored hash differs, with the computed one.
fn check_hashes(cells: &[CheckedCell]) -> Vec<(usize, ModelHash)> {
    // Cells of one shape must end up side by side; any order of shapes
    // will do. A shape of up to 7 vertices packs into one `u64` (a byte
    // per row, the vertex count on top), so most comparisons never touch
    // the matrices.
    let packed = |m: &Matrix| {
        let rows = m.rows();
        // Rows of at most 7 vertices have no bit above the seventh.
        (rows.len() <= 7).then(|| {
            rows.iter()
                .fold(rows.len() as u64, |key, &r| (key << 8) | r)
        })
    };
    let mut keyed: Vec<(u64, usize)> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| (packed(c.pruned()).unwrap_or(u64::MAX), i))
        .collect();
    keyed.par_sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            if a.0 == u64::MAX {
                cells[a.1].pruned().rows().cmp(cells[b.1].pruned().rows())
            } else {
                std::cmp::Ordering::Equal
            }
        })
    });
    let order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    let mut groups: Vec<&[usize]> = Vec::new();
    let mut start = 0;
    for k in 1..=order.len() {
        let end_of_shape =
            k == order.len() || cells[order[k]].pruned() != cells[order[start]].pruned();
        if end_of_shape || k - start == LANES {
            groups.push(&order[start..k]);
            start = k;
        }
    }
    groups
        .par_iter()
        .map_init(BatchScratch::default, |scratch, group| {
            let rows = cells[group[0]].pruned().rows();
            let labels: Vec<&[i64]> = group.iter().map(|&i| cells[i].labels.as_slice()).collect();
            let hashes = hash_batch(rows, &labels, scratch);
            group
                .iter()
                .zip(hashes)
                .filter(|&(&i, h)| h.as_u128() != cells[i].entry.key)
                .map(|(&i, h)| (i, h))
                .collect::<Vec<_>>()
        })
        .flatten()
        .collect()
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
const RECORDS_PER_BATCH: usize = ROW_GROUP_ROWS / 3;

/// The batches of one window, ready to append.
type Batches = Vec<RecordBatch>;

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

/// Loads `evaluations` from the reader thread's batches, as they come.
fn load_evaluations(db: Loader<'_>, rx: Receiver<Batches>) -> Result<(), IngestError> {
    let reader = ChannelReader {
        schema: evaluations_schema(),
        rx,
        pending: Vec::new().into_iter(),
    };
    db.insert_arrow("evaluations", Box::new(reader))?;
    Ok(())
}

/// The batches a channel delivers, as an Arrow stream that ends when the
/// sender hangs up.
struct ChannelReader {
    schema: SchemaRef,
    rx: Receiver<Batches>,
    pending: std::vec::IntoIter<RecordBatch>,
}

impl Iterator for ChannelReader {
    type Item = Result<RecordBatch, ArrowError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(b) = self.pending.next() {
                return Some(Ok(b));
            }
            self.pending = self.rx.recv().ok()?.into_iter();
        }
    }
}

impl RecordBatchReader for ChannelReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// The reader thread: maps the file window by window, decodes, numbers the
/// repeats and sends the Arrow batches to the `evaluations` insert.
fn read_windows(
    file: &File,
    bytes: u64,
    name: &str,
    opts: &IngestOptions,
    progress: &(dyn Progress + Sync),
    tx: std::sync::mpsc::SyncSender<Batches>,
) -> Result<Collector, IngestError> {
    let mut c = Collector::default();
    let schema = evaluations_schema();
    let mut pos = 0u64;
    let mut window = opts.window_bytes.max(1 << 16) as u64;
    // DuckDB waits for the first window's batches: a smaller first window
    // starts it sooner (unless one record needs more, see below).
    let mut first = Some(FIRST_WINDOW_BYTES as u64);
    while pos < bytes {
        let len = window
            .min(first.take().unwrap_or(u64::MAX))
            .min(bytes - pos);
        let at_eof = pos + len == bytes;
        // SAFETY: the mapping is read-only and private to this function; if
        // another process truncates the file meanwhile, reads past its end
        // fault (as for any mmap reader); the release files are static.
        let map = unsafe {
            MmapOptions::new()
                .offset(pos)
                .len(len as usize)
                .populate()
                .map(file)
        }
        .map_err(|source| IngestError::Io {
            path: name.to_string(),
            source,
        })?;
        let (mut frames, err) = scan(&map);
        let base_index = c.records;
        let mut next = frames.last().map_or(0, Frame::end);
        if pos == 0 && next > 0 {
            // Room for the whole search space at once (or for one cell per
            // record, if the file looks smaller): growing the table moves
            // every entry again, and touches new memory each time.
            let records = (frames.len() as u64).saturating_mul(bytes) / next;
            let cells = records.min(SEARCH_SPACE_CELLS) as usize;
            c.cells.reserve(cells);
            c.positions.reserve(cells);
        }
        let mut bad_frame = None;
        match err {
            None => {}
            Some(FramingError::Truncated { .. }) if !at_eof && frames.is_empty() => {
                // One record larger than the window: map more.
                window = window.saturating_mul(2);
                continue;
            }
            // The window ends inside a record: the next window starts there.
            Some(FramingError::Truncated { .. }) if !at_eof => {}
            Some(e) => {
                next = match e {
                    FramingError::Truncated { .. } => len,
                    _ => match resync(&map, next as usize + 1) {
                        Some(p) => p as u64,
                        None if at_eof => len,
                        // No record start in the rest of this window; a
                        // header may straddle its end, so look again from
                        // just before it.
                        None => (len - HEADER_LEN as u64 + 1).max(next + 1),
                    },
                };
                bad_frame = Some(framing_bad(e.rebase(base_index, pos)));
            }
        }

        let per_batch = opts.batch_records.max(1);
        if bad_frame.is_none() && !at_eof && frames.len() > per_batch {
            // Whole batches only: the records after the last one are read
            // again with the next window, so that every batch but the
            // file's last holds `batch_records` records.
            let whole = frames.len() / per_batch * per_batch;
            frames.truncate(whole);
            next = frames.last().map_or(0, Frame::end);
        }
        let chunks: Vec<Chunk<'_>> = frames
            .par_chunks(per_batch)
            .map(|fs| decode_chunk(&map, fs, base_index, pos))
            .collect();
        let mut batches = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let mut repeat = Vec::with_capacity(chunk.rows);
            for r in chunk.records {
                c.records += 1;
                match r {
                    Ok(run) => {
                        let n = c.admit(&run) as i32;
                        repeat.extend(std::iter::repeat_n(n, run.points as usize));
                    }
                    Err(bad) if opts.skip_bad_records => c.skip(&bad),
                    Err(bad) => return Err(bad.into_error(name)),
                }
            }
            let mut columns = chunk.columns;
            columns.insert(REPEAT_COLUMN, Arc::new(Int32Array::from(repeat)));
            batches
                .push(RecordBatch::try_new(schema.clone(), columns).map_err(DbError::from_arrow)?);
        }
        if let Some(bad) = bad_frame {
            if !opts.skip_bad_records {
                return Err(bad.into_error(name));
            }
            c.records += 1;
            c.skip(&bad);
        }
        if tx.send(batches).is_err() {
            // The insert stopped; its error is reported.
            return Ok(c);
        }
        progress.advance(next);
        pos += next;
    }
    Ok(c)
}

/// Rows of a DuckDB row group.
const ROW_GROUP_ROWS: usize = 122_880;

/// Bytes of the file's first window: two batches of release records (about
/// 17 MB each), one per worker of this 2-core machine. DuckDB has nothing to
/// do until they are decoded, and a 64 MiB window (three batches) gave it
/// its first rows at 0.15-0.19 s instead of 0.12-0.13 s.
const FIRST_WINDOW_BYTES: usize = 40 << 20;

/// Checks the cells, loads `models`, waits for `evaluations` to be loaded
/// (`wait_evaluations`), records the ingest, checkpoints and reports
/// anomalies (the views are created by [`ingest`], while the file is read).
#[allow(clippy::too_many_arguments)]
fn finish(
    conn: &NewDb,
    c: Collector,
    wait_evaluations: impl FnOnce() -> Result<(), IngestError>,
    name: &str,
    opts: &IngestOptions,
    bytes: u64,
    start: Instant,
    progress: &(dyn Progress + Sync),
) -> Result<Summary, IngestError> {
    let Collector {
        cells,
        positions,
        budgets,
        budget_order,
        records,
        runs,
        evaluations,
        synthetic_runs,
        mut skipped,
        mut skipped_examples,
        mut anomalies,
    } = c;
    if runs == 0 {
        return Err(IngestError::Empty {
            path: name.to_string(),
        });
    }
    // Anomalies from the repeat counters.
    drop(positions);
    for cell in &cells {
        let mut budgets_present = 0;
        for n in cell.repeats.counts() {
            if n != opts.expected_repeats {
                *anomalies.unexpected_repeats.entry(n).or_insert(0) += 1;
            }
            budgets_present += 1;
        }
        if budgets_present != budgets.len() {
            anomalies.cells_missing_budgets += 1;
        }
    }
    progress.start("checking cell hashes", cells.len() as u64);
    let domain = Domain::default();
    let parsed: Vec<_> = cells
        .into_par_iter()
        .map(|e| parse_cell(e, &domain))
        .collect();
    let mut dropped: Vec<String> = Vec::new();
    let bad_cell = |e: &CellEntry, reason: String| IngestError::Record {
        path: name.to_string(),
        index: e.index,
        offset: e.offset,
        reason,
    };
    if !opts.skip_bad_records
        && let Some(Err(bad)) = parsed.iter().find(|p| p.is_err())
    {
        let (e, reason) = &**bad;
        return Err(bad_cell(e, format!("cell {}: {reason}", e.hash())));
    }
    // Collected in place, into the memory of `parsed`: a second vector of
    // 423,624 cells was 90 MB more to fault in.
    let checked: Vec<CheckedCell> = parsed
        .into_iter()
        .filter_map(|p| match p {
            Ok(c) => Some(c),
            Err(bad) => {
                let (e, reason) = *bad;
                skipped += 1;
                if skipped_examples.len() < 20 {
                    skipped_examples.push(Skipped {
                        index: e.index,
                        offset: e.offset,
                        reason: format!("cell {}: {reason}", e.hash()),
                    });
                }
                dropped.push(e.hash());
                None
            }
        })
        .collect();
    trace("cells parsed", start);
    // `models` is loaded first, on all of DuckDB's threads; the hashes are
    // then checked on the workers while this thread builds the key, records
    // the ingest and checkpoints, single-threaded work that would otherwise
    // leave a core idle. A cell whose hash is wrong is removed again below.
    let (mismatches, evaluated, appended) = std::thread::scope(|s| {
        let loaded = load_models(conn, &checked);
        trace("models loaded", start);
        let checker = s.spawn(|| {
            let mismatches = check_hashes(&checked);
            trace("hashes checked", start);
            mismatches
        });
        let appended = loaded.and_then(|()| create_keys(conn));
        trace("keys built", start);
        let evaluated = wait_evaluations();
        let appended = appended.and_then(|()| {
            if evaluated.is_ok() {
                record_ingest(conn, name, bytes, records, &budget_order)?;
                // The rows are final unless a hash is wrong: written out
                // now, the file's final checkpoint has nothing left to do.
                conn.execute_batch("CHECKPOINT")
                    .during("checkpointing the new database")?;
            }
            Ok(())
        });
        let mismatches = checker
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (mismatches, evaluated, appended)
    });
    evaluated?;
    appended?;
    progress.advance(checked.len() as u64);
    if let Some((i, computed)) = mismatches.first() {
        if !opts.skip_bad_records {
            let e = &checked[*i].entry;
            return Err(bad_cell(
                e,
                format!(
                    "stored hash {} is not the hash of its matrix and ops ({computed})",
                    e.hash()
                ),
            ));
        }
        anomalies.hash_mismatches = mismatches.len() as u64;
        dropped.extend(mismatches.iter().map(|(i, _)| checked[*i].entry.hash()));
    }
    if !dropped.is_empty() {
        delete_cells(conn, &dropped)?;
    }
    let cells = checked.len() as u64 - anomalies.hash_mismatches;
    drop_in_background(checked);
    trace("models appended", start);

    let (runs, evaluations) = if dropped.is_empty() {
        (runs, evaluations)
    } else {
        let n: (i64, i64) = conn
            .query_row(
                "SELECT count(DISTINCT (hash, epochs, repeat)), count(*) FROM evaluations",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .during("counting evaluations")?;
        (n.0 as u64, n.1 as u64)
    };
    Ok(Summary {
        records,
        cells,
        runs,
        evaluations,
        budgets: budgets.into_iter().collect(),
        budget_order,
        synthetic_runs,
        skipped,
        skipped_examples,
        anomalies,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Adds the file's row to `ingests`.
fn record_ingest(
    conn: &Connection,
    name: &str,
    bytes: u64,
    records: u64,
    budget_order: &[i32],
) -> Result<(), DbError> {
    let order: Vec<String> = budget_order.iter().map(i32::to_string).collect();
    conn.execute(
        &format!(
            "INSERT INTO ingests VALUES (?, ?, ?, [{}]::INTEGER[], now()::TIMESTAMP)",
            order.join(", ")
        ),
        duckdb::params![name, bytes as i64, records as i64],
    )
    .during("recording the ingest")?;
    Ok(())
}

/// Frees `value` on a thread of its own: the cells' 1.7 million heap
/// blocks took 20-40 ms to free, at the end, where nothing else runs
/// beside DuckDB's checkpoint. (If no thread can be started, this one
/// frees it.)
fn drop_in_background<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("nasbench-free".into())
        .spawn(move || drop(value));
}

/// Loads `models`, one row per checked cell, with one insert.
fn load_models(db: &NewDb, cells: &[CheckedCell]) -> Result<(), DbError> {
    // One batch per worker, each at least a DuckDB row group (see
    // `RECORDS_PER_BATCH`).
    let per_batch = cells
        .len()
        .div_ceil(rayon::current_num_threads())
        .max(ROW_GROUP_ROWS);
    let batches = cells
        .par_chunks(per_batch)
        .map(models_batch)
        .collect::<Result<Vec<_>, _>>()
        .map_err(DbError::from_arrow)?;
    let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), models_schema());
    db.insert_arrow("models", Box::new(reader))?;
    Ok(())
}

/// Removes cells (and their evaluations) that failed a check.
fn delete_cells(conn: &Connection, hashes: &[String]) -> Result<(), DbError> {
    for table in ["models", "evaluations"] {
        let mut stmt = conn
            .prepare(&format!("DELETE FROM {table} WHERE hash = ?"))
            .during("dropping bad cells")?;
        for h in hashes {
            stmt.execute([h]).during("dropping bad cells")?;
        }
    }
    Ok(())
}

/// Writes `models.parquet` and `evaluations.parquet` into `dir` (zstd, sorted
/// by hash so that row-group statistics prune point lookups), and
/// `ingests.parquet`.
pub fn export_parquet(conn: &Connection, dir: &Path) -> Result<(), DbError> {
    std::fs::create_dir_all(dir).map_err(|source| DbError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    copy_to_parquet(
        conn,
        "SELECT * FROM models ORDER BY hash",
        &dir.join("models.parquet"),
    )?;
    copy_to_parquet(
        conn,
        "SELECT * FROM evaluations ORDER BY hash, epochs, repeat, point",
        &dir.join("evaluations.parquet"),
    )?;
    copy_to_parquet(conn, "SELECT * FROM ingests", &dir.join("ingests.parquet"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SplitMix64;

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
