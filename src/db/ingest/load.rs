//! Loading: windows streamed into DuckDB, the checked cells into `models`, the summary, and the Parquet export.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use arrow::array::Int32Array;
use arrow::array::{RecordBatchIterator, RecordBatchReader};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use duckdb::Connection;
use memmap2::MmapOptions;
use rayon::prelude::*;

use crate::cell::generate::Progress;
use crate::cell::spec::Domain;
use crate::dataset::tfrecord::{Frame, FramingError, HEADER_LEN, resync, scan};
use crate::db::{DbError, DuckDbContext, Loader, NewDb, copy_to_parquet, create_keys};

use super::*;

/// Loads `evaluations` from the reader thread's batches, as they come.
pub(super) fn load_evaluations(db: Loader<'_>, rx: Receiver<Batches>) -> Result<(), IngestError> {
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
pub(super) struct ChannelReader {
    pub(super) schema: SchemaRef,
    pub(super) rx: Receiver<Batches>,
    pub(super) pending: std::vec::IntoIter<RecordBatch>,
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
pub(super) fn read_windows(
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
pub(super) const ROW_GROUP_ROWS: usize = 122_880;

/// Bytes of the file's first window: two batches of release records (about
/// 17 MB each), one per worker of this 2-core machine. DuckDB has nothing to
/// do until they are decoded, and a 64 MiB window (three batches) gave it
/// its first rows at 0.15-0.19 s instead of 0.12-0.13 s.
pub(super) const FIRST_WINDOW_BYTES: usize = 40 << 20;

/// Checks the cells, loads `models`, waits for `evaluations` to be loaded
/// (`wait_evaluations`), records the ingest, checkpoints and reports
/// anomalies (the views are created by [`ingest`], while the file is read).
#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
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
pub(super) fn record_ingest(
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
pub(super) fn drop_in_background<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("nasbench-free".into())
        .spawn(move || drop(value));
}

/// Loads `models`, one row per checked cell, with one insert.
pub(super) fn load_models(db: &NewDb, cells: &[CheckedCell]) -> Result<(), DbError> {
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
pub(super) fn delete_cells(conn: &Connection, hashes: &[String]) -> Result<(), DbError> {
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
    // `models` in the order it was stored (the cells' first appearance in
    // the release file: `hash_iterator`'s order over the export).
    copy_to_parquet(conn, "SELECT * FROM models", &dir.join("models.parquet"))?;
    copy_to_parquet(
        conn,
        "SELECT * FROM evaluations ORDER BY hash, epochs, repeat, point",
        &dir.join("evaluations.parquet"),
    )?;
    copy_to_parquet(conn, "SELECT * FROM ingests", &dir.join("ingests.parquet"))
}
