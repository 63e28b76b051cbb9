//! Writing an index: the cells laid out in hash order with their canonical keys and file order, each run put in its line, and everything sealed with its checksums.

use rayon::prelude::*;

use super::{
    CELL_BYTES, CELL_CRC, CELL_KEY, Header, Layout, MAGIC, MAX_BUDGETS, PREAMBLE, SourceFile,
    VALUES, VERSION, cell_crc,
};
use crate::api::ApiError;
use crate::cell::generate::{LabeledGraph, MAX_VERTICES, canonical_key};
use crate::cell::graph::{Matrix, ModelHash};
use crate::cell::ops::{CANONICAL_OPS, INPUT, INPUT_LABEL, OUTPUT, OUTPUT_LABEL};

/// One cell of the dataset as the index stores it.
#[derive(Debug, Clone, Copy)]
pub struct CellIn {
    /// The dataset hash, as 16 big-endian bytes.
    pub hash: [u8; 16],
    /// The stored matrix and labels.
    pub graph: LabeledGraph,
    /// Trainable parameters (`i64::MIN`: unknown).
    pub params: i64,
}

/// An index under construction: [`Writer::new`] lays out the cells, then
/// [`Writer::put`] fills runs in any order and [`Writer::finish`] seals it.
pub struct Writer {
    out: Vec<u8>,
    layout: Layout,
    header: Header,
    json_len: usize,
}

impl Writer {
    /// Lays out `cells` (sorted by hash, no repeats) with `repeats` runs
    /// per budget; `budget_order` lists the budgets as they first appear in
    /// the data, `order` the cells (their numbers here) in the order they
    /// first appear (`None`: hash order).
    pub fn new(
        cells: &[CellIn],
        budget_order: Vec<u32>,
        repeats: usize,
        order: Option<&[u32]>,
        source: Vec<SourceFile>,
    ) -> Result<Writer, ApiError> {
        let mut budgets = budget_order.clone();
        budgets.sort_unstable();
        budgets.dedup();
        if budgets.len() > MAX_BUDGETS || budgets.len() != budget_order.len() {
            return Err(ApiError::Schema(format!(
                "{} budgets ({budget_order:?}); the query index holds at most {MAX_BUDGETS}, each once",
                budget_order.len()
            )));
        }
        if let Some(w) = cells.windows(2).find(|w| w[0].hash >= w[1].hash) {
            return Err(ApiError::Schema(format!(
                "models: hash {} repeated or not lower-case hex",
                ModelHash(w[1].hash)
            )));
        }
        let order_ok = |o: &[u32]| {
            let mut seen = vec![false; cells.len()];
            o.len() == cells.len()
                && o.iter().all(|&c| {
                    let fresh = seen.get(c as usize).is_some_and(|s| !s);
                    if fresh {
                        seen[c as usize] = true;
                    }
                    fresh
                })
        };
        if let Some(o) = order
            && !order_ok(o)
        {
            return Err(ApiError::Schema(
                "the file order of the cells is not a permutation of them".into(),
            ));
        }
        // Up to 120 vertex permutations per cell: on every core.
        let mut keyed: Vec<(u64, u32)> = cells
            .par_iter()
            .enumerate()
            .map(|(i, c)| (canonical_key(&c.graph), i as u32))
            .collect();
        keyed.par_sort_unstable();
        let keys_unique = keyed.windows(2).all(|w| w[0].0 != w[1].0);

        // About one cell per bucket.
        let bucket_bits = (usize::BITS - cells.len().leading_zeros()).clamp(8, 24);
        let header = Header {
            version: VERSION,
            cells: cells.len(),
            bucket_bits,
            budgets,
            budget_order,
            repeats: repeats.min(usize::from(u8::MAX)),
            keys_unique,
            // Runs are put as f64; `finish` narrows them when it can.
            value_bytes: 8,
            source,
        };
        let json = serde_json::to_vec(&header).map_err(|e| ApiError::Schema(e.to_string()))?;
        let layout = Layout::new(PREAMBLE + json.len(), &header).ok_or_else(|| {
            ApiError::Schema(format!("{} cells do not fit an index", header.cells))
        })?;
        let mut out = vec![0u8; layout.end];
        out[..8].copy_from_slice(MAGIC);
        out[8..16].copy_from_slice(&(json.len() as u64).to_le_bytes());
        out[PREAMBLE..PREAMBLE + json.len()].copy_from_slice(&json);
        let mut next_bucket = 0usize;
        let put_bucket = |out: &mut Vec<u8>, k: usize, cell: usize| {
            out[layout.buckets + k * 4..][..4].copy_from_slice(&(cell as u32).to_le_bytes());
        };
        for (i, c) in cells.iter().enumerate() {
            let prefix = (u128::from_be_bytes(c.hash) >> (128 - bucket_bits)) as usize;
            while next_bucket <= prefix {
                put_bucket(&mut out, next_bucket, i);
                next_bucket += 1;
            }
            let o = layout.cells + i * CELL_BYTES;
            out[o..o + 16].copy_from_slice(&c.hash);
            out[o + 16] = c.graph.n;
            out[o + 17..o + 24].copy_from_slice(&c.graph.rows);
            for (k, &l) in c.graph.labels.iter().enumerate() {
                out[o + 24 + k] = l as u8;
            }
            out[o + 32..o + 40].copy_from_slice(&c.params.to_le_bytes());
        }
        while next_bucket <= 1 << bucket_bits {
            put_bucket(&mut out, next_bucket, cells.len());
            next_bucket += 1;
        }
        for (k, &(key, cell)) in keyed.iter().enumerate() {
            out[layout.keys + k * 8..][..8].copy_from_slice(&key.to_le_bytes());
            out[layout.key_cells + k * 4..][..4].copy_from_slice(&cell.to_le_bytes());
            let o = layout.cells + cell as usize * CELL_BYTES + CELL_KEY;
            out[o..o + 8].copy_from_slice(&key.to_le_bytes());
        }
        for k in 0..cells.len() {
            let cell = order.map_or(k as u32, |o| o[k]);
            out[layout.order + k * 4..][..4].copy_from_slice(&cell.to_le_bytes());
        }
        let nan = f64::NAN.to_le_bytes();
        for chunk in out[layout.metrics..layout.keys].chunks_exact_mut(8) {
            chunk.copy_from_slice(&nan);
        }
        Ok(Writer {
            out,
            layout,
            json_len: json.len(),
            header,
        })
    }

    /// The budget index of `epochs`, if it is one of the index's budgets.
    pub fn budget(&self, epochs: u32) -> Option<usize> {
        self.header.budgets.iter().position(|&x| x == epochs)
    }

    /// Puts one evaluation point of repeat `r` (0-based) of `cell` at budget
    /// index `b`: `last` false for the halfway point, true for the final one;
    /// `values` are training time, train, validation and test accuracy.
    /// Points outside the layout are ignored.
    pub fn put(&mut self, cell: usize, b: usize, r: usize, last: bool, values: [Option<f64>; 4]) {
        if cell >= self.header.cells || b >= self.header.budgets.len() || r >= self.header.repeats {
            return;
        }
        let count = &mut self.out[self.layout.cells + cell * CELL_BYTES + 40 + b];
        *count = (*count).max(r as u8 + 1);
        let base = self.layout.run(cell, b, r);
        let k = if last { 4 } else { 0 };
        for (j, v) in values.iter().enumerate() {
            let x = v.unwrap_or(f64::NAN);
            self.out[base + (k + j) * 8..][..8].copy_from_slice(&x.to_le_bytes());
        }
    }

    /// Stores the runs as f32 when every value is an f32 exactly (NaN,
    /// the NULL, included), which the release's values are: the metrics
    /// section halves and nothing is lost. Otherwise leaves them f64.
    fn narrow_values(&mut self) {
        let old = self.layout;
        let runs = old.budgets * old.repeats;
        let exact = |x: f64| x.is_nan() || f64::from(x as f32) == x;
        let all_exact = self.out[old.metrics..old.keys]
            .par_chunks_exact(old.stride.max(1))
            .all(|cell| {
                cell[..runs * VALUES * 8]
                    .chunks_exact(8)
                    .all(|v| exact(f64::from_le_bytes(v.try_into().unwrap_or([0; 8]))))
            });
        if !all_exact || old.stride == 0 {
            return;
        }
        let mut header = self.header.clone();
        header.value_bytes = 4;
        // "value_bytes":4 is as long as "value_bytes":8, so the sections
        // before the metrics stay where they are.
        let Ok(json) = serde_json::to_vec(&header) else {
            return;
        };
        let Some(new) = Layout::new(PREAMBLE + json.len(), &header) else {
            return;
        };
        if json.len() != self.json_len || new.metrics != old.metrics {
            return;
        }
        let out = &mut self.out;
        out[PREAMBLE..PREAMBLE + json.len()].copy_from_slice(&json);
        // Cell by cell from the first: cell i's new place ends before cell
        // i + 1's old one begins, so nothing is overwritten before it is read.
        let mut cell = vec![0u8; new.stride];
        for i in 0..header.cells {
            let from = old.metrics + i * old.stride;
            cell.fill(0);
            for (k, v) in out[from..from + runs * VALUES * 8]
                .chunks_exact(8)
                .enumerate()
            {
                let x = f64::from_le_bytes(v.try_into().unwrap_or([0; 8]));
                cell[k * 4..k * 4 + 4].copy_from_slice(&(x as f32).to_le_bytes());
            }
            let to = new.metrics + i * new.stride;
            out[to..to + new.stride].copy_from_slice(&cell);
        }
        out.copy_within(old.keys..old.keys_end, new.keys);
        out.truncate(new.end);
        out[new.keys_end..].fill(0);
        self.layout = new;
        self.header = header;
    }

    /// Writes the checksums: each cell line's, each run's, each block's of
    /// the buckets and keys, the block table's, and last the preamble's and
    /// header's (after narrowing the values where that is lossless).
    pub fn finish(mut self) -> Vec<u8> {
        self.narrow_values();
        let layout = &self.layout;
        let out = &mut self.out;
        let runs = layout.budgets * layout.repeats;
        let run_bytes = layout.run_bytes();
        let (head, rest) = out.split_at_mut(layout.metrics);
        head[layout.cells..]
            .par_chunks_exact_mut(CELL_BYTES)
            .for_each(|line| {
                let crc = cell_crc(line);
                line[CELL_CRC..CELL_CRC + 4].copy_from_slice(&crc.to_le_bytes());
            });
        if layout.stride > 0 {
            rest[..layout.keys - layout.metrics]
                .par_chunks_exact_mut(layout.stride)
                .for_each(|cell| {
                    for j in 0..runs {
                        let crc = crc32c::crc32c(&cell[j * run_bytes..(j + 1) * run_bytes]);
                        let at = runs * run_bytes + j * 4;
                        cell[at..at + 4].copy_from_slice(&crc.to_le_bytes());
                    }
                });
        }
        for k in 0..layout.block_count() {
            let crc = crc32c::crc32c(&out[layout.block(k)]);
            out[layout.blocks + k * 4..][..4].copy_from_slice(&crc.to_le_bytes());
        }
        let table = crc32c::crc32c(&out[layout.blocks..layout.end]);
        out[16..20].copy_from_slice(&table.to_le_bytes());
        let header = crc32c::crc32c_append(
            crc32c::crc32c(&out[8..24]),
            &out[PREAMBLE..PREAMBLE + self.json_len],
        );
        out[24..28].copy_from_slice(&header.to_le_bytes());
        self.out
    }
}

/// Converts a stored cell (bit string, op names) to the index's form.
pub(crate) fn graph_of(
    hash: &str,
    adjacency: &str,
    ops: &[&str],
) -> Result<LabeledGraph, ApiError> {
    let bad = |why: &str| ApiError::Schema(format!("cell {hash}: {why}"));
    let n = ops.len();
    if n > MAX_VERTICES || adjacency.len() != n * n {
        return Err(bad(
            "more than 7 vertices or an adjacency string of the wrong length",
        ));
    }
    let mut m = Matrix::zeros(n);
    for (k, c) in adjacency.bytes().enumerate() {
        match c {
            b'0' => {}
            b'1' => m.set(k / n, k % n, true),
            _ => return Err(bad("adjacency is not a 0/1 string")),
        }
    }
    let labels: Vec<i64> = ops
        .iter()
        .map(|&op| match op {
            INPUT => Some(INPUT_LABEL),
            OUTPUT => Some(OUTPUT_LABEL),
            _ => CANONICAL_OPS
                .iter()
                .position(|c| *c == op)
                .map(|p| p as i64),
        })
        .collect::<Option<_>>()
        .ok_or_else(|| bad("an op outside the dataset's"))?;
    LabeledGraph::from_parts(&m, &labels).ok_or_else(|| bad("not a NAS-Bench-101 cell"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::index::{Bytes, Index};

    /// Two cells at budgets 4 and 108, three repeats, every run put with
    /// `value(cell, budget, repeat, k)`; the repeat 3 of cell 1 at 4 left out.
    fn build(value: impl Fn(usize, usize, usize, usize) -> Option<f64>) -> Index {
        let cells: Vec<CellIn> = [
            ("0100", vec!["input", "output"]),
            ("011001000", vec!["input", "conv3x3-bn-relu", "output"]),
        ]
        .iter()
        .enumerate()
        .map(|(i, (adj, ops))| CellIn {
            hash: [i as u8; 16],
            graph: graph_of("h", adj, ops).unwrap(),
            params: 1000 + i as i64,
        })
        .collect();
        let mut w = Writer::new(&cells, vec![108, 4], 3, None, vec![]).unwrap();
        for cell in 0..2 {
            for b in 0..2 {
                for r in 0..3 {
                    if (cell, b, r) == (1, 0, 2) {
                        continue;
                    }
                    for last in [false, true] {
                        let k0 = if last { 4 } else { 0 };
                        let v = [0, 1, 2, 3].map(|k| value(cell, b, r, k0 + k));
                        w.put(cell, b, r, last, v);
                    }
                }
            }
        }
        Index::from_bytes(Bytes::Owned(w.finish())).unwrap()
    }

    fn all_values(ix: &Index) -> Vec<Option<f64>> {
        let mut out = vec![];
        for cell in 0..2 {
            for b in 0..2 {
                for r in 0..3 {
                    match ix.run(cell, b, r).unwrap() {
                        Some(m) => {
                            for p in [m.halfway, m.last] {
                                out.extend([
                                    p.training_time,
                                    p.train_accuracy,
                                    p.validation_accuracy,
                                    p.test_accuracy,
                                ]);
                            }
                        }
                        None => out.push(None),
                    }
                }
            }
        }
        out
    }

    /// Values that are all f32 exactly are stored as f32 and read back
    /// equal; one value that is not keeps every value f64, also read back
    /// equal. NULLs (absent values) stay NULL either way.
    #[test]
    fn runs_are_narrowed_to_f32_only_when_that_is_lossless() {
        let f32_exact = |c: usize, b: usize, r: usize, k: usize| {
            (k != 5).then(|| f64::from(0.1f32 + (c * 100 + b * 10 + r) as f32 + k as f32 / 8.0))
        };
        let narrow = build(f32_exact);
        assert_eq!(narrow.layout.value_bytes, 4);
        let want: Vec<Option<f64>> = (0..2)
            .flat_map(|c| (0..2).flat_map(move |b| (0..3).map(move |r| (c, b, r))))
            .flat_map(|(c, b, r)| {
                if (c, b, r) == (1, 0, 2) {
                    vec![None]
                } else {
                    (0..8).map(|k| f32_exact(c, b, r, k)).collect()
                }
            })
            .collect();
        assert_eq!(all_values(&narrow), want);

        let one_wide = |c: usize, b: usize, r: usize, k: usize| {
            if (c, b, r, k) == (1, 1, 2, 7) {
                Some(0.1f64)
            } else {
                f32_exact(c, b, r, k)
            }
        };
        let wide = build(one_wide);
        assert_eq!(wide.layout.value_bytes, 8);
        let mut want_wide = want.clone();
        let last = want_wide.len() - 1;
        want_wide[last] = Some(0.1);
        assert_eq!(all_values(&wide), want_wide);
        // Half the metrics section (four lines per cell against seven).
        assert_eq!(narrow.layout.stride, 4 * 64);
        assert_eq!(wide.layout.stride, 7 * 64);
        assert_eq!(narrow.bytes.len(), wide.bytes.len() - 2 * 3 * 64);
        // The narrowed file reads back as a whole, checksums included.
        assert_eq!(narrow.file_order().unwrap(), vec![0, 1]);
        assert_eq!(narrow.fixed(1).trainable_parameters, Some(1001));
    }
}
