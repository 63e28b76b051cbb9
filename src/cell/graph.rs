//! Adjacency matrices and the graph algorithms of the original `graph_util.py`: the dataset hash, edge bits, full-DAG test, permutation, isomorphism.

use std::fmt;
use std::io::Write as _;
use std::str::FromStr;

use md5::{Digest, Md5};

/// Largest vertex count a [`Matrix`] holds: each row is one `u64` bitmask.
pub const MAX_MATRIX_VERTICES: usize = 64;

/// A square 0/1 adjacency matrix; `get(i, j)` is the edge i -> j.
///
/// Rows are bitmasks (bit `j` of row `i`), so pruning, degrees and hashing
/// never allocate per vertex.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Matrix {
    rows: Vec<u64>,
}

impl Matrix {
    /// An `n` x `n` matrix without edges. Panics if `n` exceeds
    /// [`MAX_MATRIX_VERTICES`]; user input goes through [`Matrix::from_nested`].
    pub fn zeros(n: usize) -> Self {
        assert!(n <= MAX_MATRIX_VERTICES, "matrix too large: {n} vertices");
        Matrix { rows: vec![0; n] }
    }

    /// Builds a matrix from row bitmasks (bit `j` of `rows[i]` is the edge i -> j).
    /// Returns `None` when a row has a bit at or past `rows.len()` or when
    /// there are more than [`MAX_MATRIX_VERTICES`] rows.
    pub fn from_row_masks(rows: &[u64]) -> Option<Self> {
        let n = rows.len();
        if n > MAX_MATRIX_VERTICES {
            return None;
        }
        let limit = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        rows.iter().all(|r| r & !limit == 0).then(|| Matrix {
            rows: rows.to_vec(),
        })
    }

    /// Builds a matrix from 0/1 rows; `None` if it is not square, holds a value
    /// other than 0 or 1, or is larger than [`MAX_MATRIX_VERTICES`].
    pub fn from_nested<T: Copy + Into<i64>>(rows: &[Vec<T>]) -> Option<Self> {
        let n = rows.len();
        if n > MAX_MATRIX_VERTICES || rows.iter().any(|r| r.len() != n) {
            return None;
        }
        let mut m = Matrix::zeros(n);
        for (i, row) in rows.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                match v.into() {
                    0 => {}
                    1 => m.set(i, j, true),
                    _ => return None,
                }
            }
        }
        Some(m)
    }

    /// The original's `gen_is_edge_fn(bits)` applied to an `n` x `n` matrix:
    /// edge (x, y), x < y, exists iff bit `x + y(y-1)/2` of `bits` is set.
    pub fn from_edge_bits(n: usize, bits: u64) -> Self {
        let mut m = Matrix::zeros(n);
        for y in 1..n {
            for x in 0..y {
                let index = x + y * (y - 1) / 2;
                if index < 64 && (bits >> index) & 1 == 1 {
                    m.set(x, y, true);
                }
            }
        }
        m
    }

    /// Number of vertices.
    pub fn n(&self) -> usize {
        self.rows.len()
    }

    /// Row bitmasks: bit `j` of `rows()[i]` is the edge i -> j.
    pub fn rows(&self) -> &[u64] {
        &self.rows
    }

    /// Whether the edge i -> j exists.
    pub fn get(&self, i: usize, j: usize) -> bool {
        (self.rows[i] >> j) & 1 == 1
    }

    /// Adds or removes the edge i -> j.
    pub fn set(&mut self, i: usize, j: usize, edge: bool) {
        if edge {
            self.rows[i] |= 1 << j;
        } else {
            self.rows[i] &= !(1 << j);
        }
    }

    /// Number of edges (the original's `np.sum(matrix)`).
    pub fn num_edges(&self) -> usize {
        self.rows.iter().map(|r| r.count_ones() as usize).sum()
    }

    /// Out-degree of `v`.
    pub fn out_degree(&self, v: usize) -> usize {
        self.rows[v].count_ones() as usize
    }

    /// In-degree of `v`.
    pub fn in_degree(&self, v: usize) -> usize {
        self.rows.iter().filter(|r| (*r >> v) & 1 == 1).count()
    }

    /// Bitmask of the in-neighbours of every vertex (the transposed rows).
    pub fn columns(&self) -> Vec<u64> {
        let mut cols = vec![0u64; self.n()];
        for (i, &row) in self.rows.iter().enumerate() {
            for_each_bit(row, |j| cols[j] |= 1 << i);
        }
        cols
    }

    /// True if the matrix is 0 on the diagonal and below.
    pub fn is_upper_triangular(&self) -> bool {
        // Bits 0..=i of row i must be clear.
        self.rows
            .iter()
            .enumerate()
            .all(|(i, &r)| r & low_mask(i + 1) == 0)
    }

    /// The original's `is_full_dag`: no row of zeros but the last, no column of
    /// zeros but the first (no dangling vertex).
    pub fn is_full_dag(&self) -> bool {
        let n = self.n();
        if n == 0 {
            return true;
        }
        let rows_ok = self.rows[..n - 1].iter().all(|&r| r != 0);
        let all_cols = self.rows.iter().fold(0u64, |acc, &r| acc | r);
        let cols_ok = (1..n).all(|j| (all_cols >> j) & 1 == 1);
        rows_ok && cols_ok
    }

    /// Keeps the vertices whose bit is set in `keep`, in order.
    pub fn select_vertices(&self, keep: u64) -> Matrix {
        let keep = keep & low_mask(self.n());
        let mut rows = Vec::with_capacity(keep.count_ones() as usize);
        for_each_bit(keep, |v| rows.push(pack_bits(self.rows[v], keep)));
        Matrix { rows }
    }

    /// The original's `permute_graph`: vertex `perm[v]` of the result is
    /// vertex `v` of `self`. `perm` must be a permutation of `0..n`.
    pub fn permute(&self, perm: &[usize]) -> Matrix {
        let mut m = Matrix::zeros(self.n());
        for (i, &row) in self.rows.iter().enumerate() {
            for_each_bit(row, |j| m.set(perm[i], perm[j], true));
        }
        m
    }

    /// Nested 0/1 rows, as JSON and numpy show a matrix.
    pub fn to_nested(&self) -> Vec<Vec<u8>> {
        (0..self.n())
            .map(|i| (0..self.n()).map(|j| u8::from(self.get(i, j))).collect())
            .collect()
    }

    /// Row-major `0`/`1` string of length n*n, the dataset's `raw_adjacency`.
    pub fn to_bit_string(&self) -> String {
        let mut s = String::with_capacity(self.n() * self.n());
        for i in 0..self.n() {
            for j in 0..self.n() {
                s.push(if self.get(i, j) { '1' } else { '0' });
            }
        }
        s
    }
}

impl fmt::Debug for Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Matrix({:?})", self.to_nested())
    }
}

/// Bits `0..k` set.
fn low_mask(k: usize) -> u64 {
    if k >= 64 { u64::MAX } else { (1u64 << k) - 1 }
}

/// Calls `f` with the index of every set bit of `mask`, lowest first.
#[inline]
pub(crate) fn for_each_bit(mut mask: u64, mut f: impl FnMut(usize)) {
    while mask != 0 {
        f(mask.trailing_zeros() as usize);
        mask &= mask - 1;
    }
}

/// The bits of `word` at the positions set in `keep`, packed from bit 0
/// up in order (BMI2's `pext`): a row of a matrix with only the kept
/// vertices' columns.
#[inline]
pub fn pack_bits(word: u64, keep: u64) -> u64 {
    let mut out = 0u64;
    let mut at = 0;
    for_each_bit(keep, |j| {
        out |= ((word >> j) & 1) << at;
        at += 1;
    });
    out
}

/// A NAS-Bench-101 model hash: the MD5 fingerprint that keys the dataset.
///
/// Shown as 32 lower-case hex digits, as the dataset stores it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ModelHash(pub [u8; 16]);

impl ModelHash {
    /// The hash as a big-endian 128-bit integer (same order as the hex text).
    pub fn as_u128(&self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    /// Lower-case hex digits.
    pub fn to_hex(&self) -> String {
        // The bytes are ASCII hex digits.
        String::from_utf8_lossy(&hex32(&self.0)).into_owned()
    }
}

impl fmt::Display for ModelHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ModelHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelHash({self})")
    }
}

/// A string that is not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid model hash {0:?}: expected 32 hex digits")]
pub struct ParseHashError(pub String);

impl FromStr for ModelHash {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 32 {
            return Err(ParseHashError(s.to_string()));
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            match (nibble(b[2 * i]), nibble(b[2 * i + 1])) {
                (Some(h), Some(l)) => *o = (h << 4) | l,
                _ => return Err(ParseHashError(s.to_string())),
            }
        }
        Ok(ModelHash(out))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of a 16-byte digest (md-5 0.11 digests do not format as hex).
#[inline]
pub(crate) fn hex32(d: &[u8; 16]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, &b) in d.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

/// MD5 digest of `data`.
#[inline]
pub(crate) fn md5_digest(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// Reusable buffers for [`hash_module_with`], so that hashing many graphs
/// allocates nothing after the first.
#[derive(Default)]
pub struct HashScratch {
    cur: Vec<[u8; 32]>,
    next: Vec<[u8; 32]>,
    cols: Vec<u64>,
    buf: Vec<u8>,
    idx: Vec<usize>,
}

/// The dataset's graph hash of `rows` (row bitmasks, bit `w` of `rows[v]` is
/// the edge v -> w) and integer `labels` (-1 input, op index, -2 output).
///
/// Byte-exact port of `graph_util.hash_module`: per-vertex MD5 of the Python
/// tuple repr `(out_degree, in_degree, label)`, `n` rounds of
/// `md5(sorted in-neighbour hashes | sorted out-neighbour hashes | own hash)`,
/// then the MD5 of the Python list repr of the sorted vertex hashes.
/// Works for any directed graph, cycles and self-loops included.
pub fn hash_module_with(rows: &[u64], labels: &[i64], s: &mut HashScratch) -> ModelHash {
    let n = rows.len();
    assert_eq!(n, labels.len(), "one label per vertex");
    s.cols.clear();
    s.cols.resize(n, 0);
    for (v, &row) in rows.iter().enumerate() {
        for_each_bit(row, |w| s.cols[w] |= 1 << v);
    }
    s.cur.clear();
    for v in 0..n {
        s.buf.clear();
        push_initial_message(&mut s.buf, rows[v], s.cols[v], labels[v]);
        s.cur.push(hex32(&md5_digest(&s.buf)));
    }
    s.next.clear();
    s.next.resize(n, [0; 32]);
    for _ in 0..n {
        for (v, &row) in rows.iter().enumerate() {
            s.buf.clear();
            push_sorted(&mut s.buf, &mut s.idx, &s.cur, s.cols[v]);
            s.buf.push(b'|');
            push_sorted(&mut s.buf, &mut s.idx, &s.cur, row);
            s.buf.push(b'|');
            s.buf.extend_from_slice(&s.cur[v]);
            s.next[v] = hex32(&md5_digest(&s.buf));
        }
        std::mem::swap(&mut s.cur, &mut s.next);
    }
    s.cur.sort_unstable();
    s.buf.clear();
    push_fingerprint_message(&mut s.buf, &s.cur);
    ModelHash(md5_digest(&s.buf))
}

/// Appends a vertex's first message, Python's `str((out_degree, in_degree,
/// label))`, from its out-neighbour and in-neighbour bitmasks.
pub(crate) fn push_initial_message(buf: &mut Vec<u8>, out_mask: u64, in_mask: u64, label: i64) {
    // Writing to a Vec cannot fail.
    let _ = write!(
        buf,
        "({}, {}, {})",
        out_mask.count_ones(),
        in_mask.count_ones(),
        label
    );
}

/// Appends the final message, Python's `str(sorted(hashes))`:
/// `['h0', 'h1', ...]`. `sorted` must be sorted.
pub(crate) fn push_fingerprint_message(buf: &mut Vec<u8>, sorted: &[[u8; 32]]) {
    buf.push(b'[');
    for (i, h) in sorted.iter().enumerate() {
        if i > 0 {
            buf.extend_from_slice(b", ");
        }
        buf.push(b'\'');
        buf.extend_from_slice(h);
        buf.push(b'\'');
    }
    buf.push(b']');
}

/// Appends the hashes of the vertices in `mask`, sorted, to `buf`.
#[inline]
fn push_sorted(buf: &mut Vec<u8>, idx: &mut Vec<usize>, hashes: &[[u8; 32]], mask: u64) {
    idx.clear();
    for_each_bit(mask, |w| idx.push(w));
    idx.sort_unstable_by(|&a, &b| hashes[a].cmp(&hashes[b]));
    for &w in idx.iter() {
        buf.extend_from_slice(&hashes[w]);
    }
}

/// [`hash_module_with`] with fresh buffers: the original's `hash_module(matrix, labeling)`.
pub fn hash_module(matrix: &Matrix, labels: &[i64]) -> ModelHash {
    hash_module_with(matrix.rows(), labels, &mut HashScratch::default())
}

/// The original's `permute_graph` for labels: label `perm[v]` of the result
/// is label `v` of the input.
pub fn permute_labels<T: Clone>(labels: &[T], perm: &[usize]) -> Vec<T> {
    let mut out = labels.to_vec();
    for (v, l) in labels.iter().enumerate() {
        out[perm[v]] = l.clone();
    }
    out
}

/// Exhaustive isomorphism test of two labeled directed graphs (the original's
/// `is_isomorphic`): is there a permutation `p` with `g1.permute(p) == g2`
/// and permuted labels equal?
///
/// A complete backtracking search over all permutations that pruning by
/// label, degree and the edges among already-placed vertices cannot rule
/// out; it decides exactly, like the original's loop over all `n!`.
pub fn is_isomorphic<T: PartialEq>(m1: &Matrix, l1: &[T], m2: &Matrix, l2: &[T]) -> bool {
    let n = m1.n();
    if m2.n() != n || l1.len() != n || l2.len() != n {
        return false;
    }
    if m1.num_edges() != m2.num_edges() {
        return false;
    }
    let (c1, c2) = (m1.columns(), m2.columns());
    let sig = |m: &Matrix, c: &[u64], v: usize| (m.rows()[v].count_ones(), c[v].count_ones());
    let mut perm = vec![usize::MAX; n];
    let mut used = 0u64;
    fn place(
        v: usize,
        (m1, m2): (&Matrix, &Matrix),
        ok: &dyn Fn(usize, usize) -> bool,
        perm: &mut [usize],
        used: &mut u64,
    ) -> bool {
        let n = m1.n();
        if v == n {
            return true;
        }
        for t in 0..n {
            if (*used >> t) & 1 == 1 || !ok(v, t) {
                continue;
            }
            // Edges between v and every placed vertex (and v's self-loop) must map.
            let consistent = m1.get(v, v) == m2.get(t, t)
                && (0..v).all(|u| {
                    m1.get(u, v) == m2.get(perm[u], t) && m1.get(v, u) == m2.get(t, perm[u])
                });
            if !consistent {
                continue;
            }
            perm[v] = t;
            *used |= 1 << t;
            if place(v + 1, (m1, m2), ok, perm, used) {
                return true;
            }
            *used &= !(1 << t);
        }
        false
    }
    let ok = |v: usize, t: usize| l1[v] == l2[t] && sig(m1, &c1, v) == sig(m2, &c2, t);
    place(0, (m1, m2), &ok, &mut perm, &mut used)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pack_bits` against its definition, bit by bit, on random words and
    /// masks.
    #[test]
    fn pack_bits_keeps_the_masked_bits_in_order() {
        let mut rng = crate::rng::SplitMix64::new(7);
        for _ in 0..10_000 {
            let (word, keep) = (rng.next_u64(), rng.next_u64() & rng.next_u64());
            let mut want = 0u64;
            let mut at = 0;
            for j in 0..64 {
                if (keep >> j) & 1 == 1 {
                    want |= ((word >> j) & 1) << at;
                    at += 1;
                }
            }
            assert_eq!(pack_bits(word, keep), want, "{word:#x} {keep:#x}");
        }
    }

    #[test]
    fn hash_hex_round_trip() {
        let h: ModelHash = "28cfc7874f6d200472e1a9dcd8650aa0".parse().unwrap();
        assert_eq!(h.to_string(), "28cfc7874f6d200472e1a9dcd8650aa0");
        assert!(
            "28cfc7874f6d200472e1a9dcd8650aa"
                .parse::<ModelHash>()
                .is_err()
        );
        assert!(
            "28cfc7874f6d200472e1a9dcd8650aag"
                .parse::<ModelHash>()
                .is_err()
        );
    }

    #[test]
    fn md5_matches_known_digest() {
        // RFC 1321 test suite: MD5("abc").
        assert_eq!(
            &hex32(&md5_digest(b"abc")),
            b"900150983cd24fb0d6963f7d28e17f72"
        );
    }
}
