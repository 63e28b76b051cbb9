//! Building the index straight from a release TFRecord file, without DuckDB: frames checked and records decoded on every core, cells kept in the order they first appear, repeats numbered in file order.
//!
//! Strict where ingest is tolerant: the original API fails on a bad
//! record, and so does this, with an error naming the file, the record and
//! its byte offset (a framing or CRC error, a record that does not decode,
//! a hash that is not 32 hex digits, a run without its halfway and final
//! evaluations, a cell outside the search space's shape).

use std::path::Path;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::write::{CellIn, Writer, graph_of};
use super::{MAX_BUDGETS, SourceFile};
use crate::api::ApiError;
use crate::cell::graph::ModelHash;
use crate::dataset::record::{ModelMetrics, Record, decode_into};
use crate::dataset::tfrecord::{Frame, scan};

/// Records decoded per task.
const CHUNK: usize = 8192;

/// One decoded record: what the index keeps of it (96 bytes; the full
/// release has 5 million). A cell's graph is read again from its first
/// record.
struct Rec {
    hash: [u8; 16],
    epochs: u32,
    params: i64,
    /// Halfway then final: training time, train, validation, test
    /// accuracy; NaN where absent (as the index stores them).
    points: [[f64; 4]; 2],
}

/// The index's bytes for the release file `path`.
pub(super) fn build_bytes(path: &Path, source: Vec<SourceFile>) -> Result<Vec<u8>, ApiError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| ApiError::io(path, e))?;
    let len = file.metadata().map_err(|e| ApiError::io(path, e))?.len();
    if len == 0 {
        return Err(ApiError::Source {
            path: name,
            message: "the file is empty; a NAS-Bench-101 release file holds TFRecord records"
                .into(),
        });
    }
    // SAFETY: the file is only read; a release file is not written while it
    // is opened (a changed file is caught by its size and modification
    // time, and every record by its CRCs).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ApiError::io(path, e))?;
    let _ = map.advise(memmap2::Advice::Sequential);
    let buf: &[u8] = &map;
    let (frames, framing) = scan(buf);
    if let Some(e) = framing {
        return Err(ApiError::Source {
            path: name,
            message: format!("not a readable TFRecord file: {e}"),
        });
    }
    let bad = |f: &Frame, why: String| ApiError::Source {
        path: name.clone(),
        message: format!("record {} at byte {}: {why}", f.index, f.offset),
    };
    let decoded: Vec<Result<Vec<Rec>, ApiError>> = frames
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut metrics = ModelMetrics::default();
            chunk
                .iter()
                .map(|f| decode(buf, f, &mut metrics).map_err(|why| bad(f, why)))
                .collect()
        })
        .collect();
    let mut recs = Vec::with_capacity(frames.len());
    for chunk in decoded {
        recs.extend(chunk?);
    }

    // File order: cells as they first appear, budgets as they first appear,
    // repeats numbered per (cell, budget).
    let mut ids: FxHashMap<[u8; 16], u32> = FxHashMap::default();
    let mut first: Vec<usize> = Vec::new();
    let mut budget_order: Vec<u32> = Vec::new();
    let mut cell_of = Vec::with_capacity(recs.len());
    let mut budget_of = Vec::with_capacity(recs.len());
    for (k, r) in recs.iter().enumerate() {
        let id = *ids.entry(r.hash).or_insert_with(|| {
            first.push(k);
            (first.len() - 1) as u32
        });
        let b = match budget_order.iter().position(|&e| e == r.epochs) {
            Some(b) => b,
            None if budget_order.len() < MAX_BUDGETS => {
                budget_order.push(r.epochs);
                budget_order.len() - 1
            }
            None => {
                return Err(bad(
                    &frames[k],
                    format!("more than {MAX_BUDGETS} different budgets in the file"),
                ));
            }
        };
        cell_of.push(id);
        budget_of.push(b as u8);
    }
    let mut repeat_of = Vec::with_capacity(recs.len());
    let mut counts = vec![[0u8; MAX_BUDGETS]; first.len()];
    let mut repeats = 0usize;
    for (&c, &b) in cell_of.iter().zip(&budget_of) {
        let n = &mut counts[c as usize][b as usize];
        repeat_of.push(*n);
        *n = n.saturating_add(1);
        repeats = repeats.max(usize::from(*n));
    }

    // The cells, from their first record, in hash order.
    let mut cells: Vec<(CellIn, u32)> = first
        .par_iter()
        .enumerate()
        .map_init(ModelMetrics::default, |metrics, (id, &k)| {
            let r = &recs[k];
            let hex = ModelHash(r.hash).to_string();
            // The record decoded when it was scanned: it decodes again.
            let row = read(buf, &frames[k], metrics).map_err(|why| bad(&frames[k], why))?;
            let ops: Vec<&str> = row.operations.split(',').collect();
            let graph =
                graph_of(&hex, &row.adjacency, &ops).map_err(|e| bad(&frames[k], e.to_string()))?;
            Ok((
                CellIn {
                    hash: r.hash,
                    graph,
                    params: r.params,
                },
                id as u32,
            ))
        })
        .collect::<Result<_, ApiError>>()?;
    cells.par_sort_unstable_by_key(|(c, _)| c.hash);
    let mut sorted_of = vec![0u32; cells.len()];
    for (pos, (_, id)) in cells.iter().enumerate() {
        sorted_of[*id as usize] = pos as u32;
    }
    let cells: Vec<CellIn> = cells.into_iter().map(|(c, _)| c).collect();
    let order: Vec<u32> = (0..cells.len()).map(|id| sorted_of[id]).collect();

    let present = |p: [f64; 4]| p.map(|v| (!v.is_nan()).then_some(v));
    let mut w = Writer::new(&cells, budget_order.clone(), repeats, Some(&order), source)?;
    // The writer's budget index of each budget in file order, once.
    let writer_budget: Vec<usize> = budget_order
        .iter()
        .map(|&e| w.budget(e).unwrap_or(usize::MAX))
        .collect();
    for (k, r) in recs.iter().enumerate() {
        let cell = sorted_of[cell_of[k] as usize] as usize;
        let b = writer_budget[budget_of[k] as usize];
        let rep = usize::from(repeat_of[k]);
        w.put(cell, b, rep, false, present(r.points[0]));
        w.put(cell, b, rep, true, present(r.points[1]));
    }
    Ok(w.finish())
}

/// Checks one record's frame and decodes its row (the metrics into
/// `metrics`).
fn read<'a>(
    buf: &'a [u8],
    f: &Frame,
    metrics: &mut ModelMetrics,
) -> Result<Record<'a, ()>, String> {
    let data = f.check(buf).map_err(|e| e.to_string())?;
    decode_into(data, metrics).map_err(|e| e.to_string())
}

/// Checks and decodes one record.
fn decode(buf: &[u8], f: &Frame, metrics: &mut ModelMetrics) -> Result<Rec, String> {
    let r = read(buf, f, metrics)?;
    let hash: ModelHash = r
        .hash
        .parse()
        .map_err(|_| format!("module hash {:?} is not 32 hex digits", r.hash))?;
    let epochs = u32::try_from(r.epochs)
        .ok()
        .filter(|&e| e > 0)
        .ok_or_else(|| format!("epochs {} is not a positive 32-bit integer", r.epochs))?;
    if metrics.evaluation_data.len() < 3 {
        return Err(format!(
            "{} evaluations; a run has three (start, halfway, end)",
            metrics.evaluation_data.len()
        ));
    }
    let point = |k: usize| {
        let e = &metrics.evaluation_data[k];
        [
            e.training_time,
            e.train_accuracy,
            e.validation_accuracy,
            e.test_accuracy,
        ]
        .map(|v| v.unwrap_or(f64::NAN))
    };
    Ok(Rec {
        hash: hash.0,
        epochs,
        params: metrics.trainable_parameters.map_or(i64::MIN, i64::from),
        points: [point(1), point(2)],
    })
}
