//! Checking the unique cells: matrix and ops parsed against the search space, hashes recomputed, and the `models` batch.

use std::sync::Arc;

use arrow::array::{Int32Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use rayon::prelude::*;

use crate::cell::graph::{Matrix, ModelHash, hex32};
use crate::cell::lanes::{BatchScratch, LANES, hash_batch};
use crate::cell::ops::{CANONICAL_OPS, INPUT, INPUT_LABEL, OUTPUT, OUTPUT_LABEL};
use crate::cell::spec::{Domain, ModelSpec, kept_vertices};
use crate::db::export::{list_item, list_of};

use super::*;

/// A unique cell, parsed and checked against the search space; its hash is
/// checked by [`check_hashes`]. (Its ops stay in `entry.operations`: kept
/// as `String`s, stored and pruned as a `ModelSpec` holds them, they raised
/// the full-size peak by about 250 MB.)
pub(super) struct CheckedCell {
    pub(super) entry: CellEntry,
    /// The matrix as stored.
    pub(super) matrix: Matrix,
    /// The pruned matrix, where pruning changes the stored one.
    pub(super) pruned: Option<Matrix>,
    /// The hash labels of the pruned ops.
    pub(super) labels: Vec<i64>,
}

impl CheckedCell {
    /// The pruned matrix, as the hash sees the cell.
    pub(super) fn pruned(&self) -> &Matrix {
        self.pruned.as_ref().unwrap_or(&self.matrix)
    }
}

/// The `models` rows of `cells`, with every buffer allocated once.
pub(super) fn models_batch(cells: &[CheckedCell]) -> Result<RecordBatch, ArrowError> {
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
pub(super) fn parse_adjacency(bits: &str) -> Result<Matrix, String> {
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
pub(super) fn parse_cell(
    entry: CellEntry,
    domain: &Domain,
) -> Result<CheckedCell, Box<(CellEntry, String)>> {
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
pub(super) fn spec_labels(
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
pub(super) fn stored_labels(
    matrix: &Matrix,
    operations: &str,
    domain: &Domain,
) -> Option<Vec<i64>> {
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
pub(super) fn check_hashes(cells: &[CheckedCell]) -> Vec<(usize, ModelHash)> {
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
