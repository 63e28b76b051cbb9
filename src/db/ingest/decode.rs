//! Decoding a window of release records on every core into Arrow columns, and numbering repeats and collecting cells in file order.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use arrow::array::{ArrayBuilder, ArrayRef, Float64Builder, Int32Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use rustc_hash::FxHashMap;

use crate::cell::graph::ModelHash;
use crate::dataset::record::{ModelMetrics, RecordError, decode_into};
use crate::dataset::tfrecord::{Frame, FramingError};
use crate::db::export::list_of;

use super::*;

/// One decoded record's run, borrowing its strings from the mapped file;
/// its evaluations are already in its chunk's columns.
pub(super) struct Run<'a> {
    pub(super) index: u64,
    pub(super) offset: u64,
    pub(super) key: u128,
    pub(super) epochs: i32,
    pub(super) adjacency: Cow<'a, str>,
    pub(super) operations: Cow<'a, str>,
    pub(super) params: Option<i32>,
    /// Rows of `evaluations` (evaluation points).
    pub(super) points: u32,
    pub(super) synthetic: bool,
}

/// A bad record, before the file name is attached.
pub(super) struct Bad {
    pub(super) index: u64,
    pub(super) offset: u64,
    pub(super) reason: String,
    pub(super) framing: Option<FramingError>,
}

impl Bad {
    pub(super) fn into_error(self, path: &str) -> IngestError {
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

    pub(super) fn skipped(&self) -> Skipped {
        Skipped {
            index: self.index,
            offset: self.offset,
            reason: self.reason.clone(),
        }
    }
}

pub(super) fn framing_bad(e: FramingError) -> Bad {
    Bad {
        index: e.index(),
        offset: e.offset(),
        reason: e.to_string(),
        framing: Some(e),
    }
}

/// The first record seen for a hash: what `models` stores.
pub(super) struct CellEntry {
    /// The stored hash, as [`hash_key`] reads it.
    pub(super) key: u128,
    pub(super) adjacency: String,
    pub(super) operations: String,
    pub(super) params: Option<i32>,
    pub(super) index: u64,
    pub(super) offset: u64,
    /// Runs of this cell so far, per budget.
    pub(super) repeats: Repeats,
}

impl CellEntry {
    /// The stored hash as text.
    pub(super) fn hash(&self) -> String {
        key_hex(self.key)
    }
}

/// Runs of one cell per budget, in order of first appearance: the release's
/// four budgets fit inline, so numbering a run costs no lookup beyond the
/// cell's own.
#[derive(Default)]
pub(super) struct Repeats {
    pub(super) inline: [(i32, u32); 4],
    pub(super) more: Vec<(i32, u32)>,
}

impl Repeats {
    /// Counts one more run at `epochs` and returns its repeat number (1..).
    pub(super) fn next(&mut self, epochs: i32) -> u32 {
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
    pub(super) fn counts(&self) -> impl Iterator<Item = u32> + '_ {
        self.inline
            .iter()
            .chain(&self.more)
            .map(|&(_, n)| n)
            .filter(|&n| n > 0)
    }
}

/// Cells in the NAS-Bench-101 search space (and in both release files).
pub(super) const SEARCH_SPACE_CELLS: u64 = 423_624;

/// State of the sequential pass, carried across windows.
#[derive(Default)]
pub(super) struct Collector {
    /// Unique cells in order of first appearance (so in record order).
    pub(super) cells: Vec<CellEntry>,
    /// Where each stored hash is in `cells`.
    pub(super) positions: FxHashMap<u128, usize>,
    pub(super) budgets: BTreeSet<i32>,
    pub(super) budget_order: Vec<i32>,
    pub(super) records: u64,
    pub(super) runs: u64,
    pub(super) evaluations: u64,
    pub(super) synthetic_runs: u64,
    pub(super) skipped: u64,
    pub(super) skipped_examples: Vec<Skipped>,
    pub(super) anomalies: Anomalies,
}

impl Collector {
    pub(super) fn skip(&mut self, bad: &Bad) {
        self.skipped += 1;
        if self.skipped_examples.len() < 20 {
            self.skipped_examples.push(bad.skipped());
        }
    }

    /// Counts the run, records its cell and returns its repeat number.
    pub(super) fn admit(&mut self, run: &Run<'_>) -> u32 {
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
pub(super) fn key_hex(key: u128) -> String {
    ModelHash(key.to_be_bytes()).to_hex()
}

/// Parses the 32 lowercase hex digits of a stored hash.
pub(super) fn hash_key(h: &str) -> Option<u128> {
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
pub(super) fn decode_run<'a>(
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
pub(super) struct Chunk<'a> {
    /// The columns of [`evaluations_schema`] without `repeat`.
    pub(super) columns: Vec<ArrayRef>,
    pub(super) rows: usize,
    pub(super) records: Vec<Result<Run<'a>, Bad>>,
}

/// Index of `repeat` in [`evaluations_schema`].
pub(super) const REPEAT_COLUMN: usize = 2;

/// Decodes `frames` (of the window `buf` at file offset `pos`, whose first
/// record is number `base_index`) straight into Arrow builders.
pub(super) fn decode_chunk<'a>(
    buf: &'a [u8],
    frames: &[Frame],
    base_index: u64,
    pos: u64,
) -> Chunk<'a> {
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
