//! Enumeration of the whole search space (the original's `generate_graphs.py`), exact and parallel.
//!
//! The original hashes every labeled graph (1,293,208 of them) and keeps the
//! first graph seen for each hash. Hashing is the expensive part, so this
//! module first groups the labeled graphs into isomorphism classes with an
//! exact canonical form (input and output are fixed by their labels, so
//! trying every permutation of the at most five interior vertices is
//! exhaustive), and hashes only the first graph of each class. That gives
//! the original's result exactly: isomorphic graphs always share a hash, so
//! the first graph of a hash is the first graph of the earliest class with
//! that hash; should two classes ever share a hash, the later one is dropped
//! just as the original drops it (and counted in [`Space::merged_classes`]).
//! `verify_isomorphism` runs the original algorithm itself (hash all, bucket
//! by hash, check each graph against its bucket's first graph) and checks
//! that both agree.

use std::collections::HashMap;
use std::collections::HashSet;

use rayon::prelude::*;

use crate::cell::graph::{
    HashScratch, Matrix, ModelHash, hash_module_with, is_isomorphic, pack_bits,
};
use crate::cell::lanes::{BatchScratch, LANES, hash_batch};
use crate::cell::network::{NetworkConfig, network_parameters};
use crate::cell::ops::{CANONICAL_OPS, INPUT_LABEL, OUTPUT_LABEL, Op, label_name};
use crate::cell::spec::{Domain, ModelSpec, OutOfDomain, kept_of_rows};

/// Most vertices the enumeration supports (the dataset's limit; an
/// eighth vertex would mean 2^28 matrices times 729 labelings).
pub const MAX_VERTICES: usize = 7;

/// What to enumerate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Most vertices, input and output included (2..=7).
    pub max_vertices: usize,
    /// Most edges.
    pub max_edges: usize,
    /// Also run the original algorithm and prove that every pair of graphs
    /// sharing a hash is isomorphic (slower: hashes every labeled graph).
    pub verify_isomorphism: bool,
}

impl Default for GenerateOptions {
    /// The dataset's space: 7 vertices, 9 edges, no verification.
    fn default() -> Self {
        GenerateOptions {
            max_vertices: 7,
            max_edges: 9,
            verify_isomorphism: false,
        }
    }
}

/// Why the enumeration failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// `max_vertices` outside 2..=7.
    #[error("--max-vertices must be between 2 and {MAX_VERTICES}, got {0}")]
    MaxVertices(usize),
    /// Two graphs with one hash that are not isomorphic (the original's fatal error).
    #[error(
        "matrix {graph_matrix} labels {graph_labels:?} is not isomorphic to canonical matrix {canonical_matrix} labels {canonical_labels:?} (hash {hash})"
    )]
    NotIsomorphic {
        /// The shared hash.
        hash: ModelHash,
        /// The later graph, row-major bits.
        graph_matrix: String,
        /// Its labels.
        graph_labels: Vec<i64>,
        /// The bucket's first graph, row-major bits.
        canonical_matrix: String,
        /// Its labels.
        canonical_labels: Vec<i64>,
    },
    /// The canonical-form shortcut and the original algorithm disagree.
    #[error(
        "internal error: the isomorphism classes ({classes} cells) and the hash buckets ({buckets} cells) disagree"
    )]
    Disagreement {
        /// Cells found through isomorphism classes.
        classes: usize,
        /// Cells found through hash buckets.
        buckets: usize,
    },
}

/// A labeled graph of at most [`MAX_VERTICES`] vertices, stored inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LabeledGraph {
    /// Vertices, input and output included.
    pub n: u8,
    /// Row bitmasks: bit `j` of `rows[i]` is the edge i -> j.
    pub rows: [u8; MAX_VERTICES],
    /// Hash labels: -1 input, op index, -2 output (unused slots are 0).
    pub labels: [i8; MAX_VERTICES],
}

impl LabeledGraph {
    /// A cell given by its matrix and hash labels (-1 input, op index,
    /// -2 output); `None` when it has more than [`MAX_VERTICES`] vertices,
    /// an edge out of range, or a label outside the dataset's.
    pub fn from_parts(matrix: &Matrix, labels: &[i64]) -> Option<LabeledGraph> {
        let n = matrix.n();
        if n > MAX_VERTICES || labels.len() != n {
            return None;
        }
        let mut g = LabeledGraph {
            n: n as u8,
            rows: [0; MAX_VERTICES],
            labels: [0; MAX_VERTICES],
        };
        for (v, (&row, &label)) in matrix.rows().iter().zip(labels).enumerate() {
            g.rows[v] = u8::try_from(row).ok()?;
            g.labels[v] = i8::try_from(label).ok().filter(|l| (-2..=2).contains(l))?;
        }
        Some(g)
    }

    /// The original's pruning: the vertices on some input -> output path,
    /// in order; `None` when there is no such path (an invalid spec). The
    /// rows must be upper triangular.
    pub fn pruned(&self) -> Option<LabeledGraph> {
        let n = (self.n as usize).min(MAX_VERTICES);
        let rows: [u64; MAX_VERTICES] = self.rows.map(u64::from);
        let keep = kept_of_rows(&rows[..n])?;
        let mut out = LabeledGraph {
            n: keep.count_ones() as u8,
            rows: [0; MAX_VERTICES],
            labels: [0; MAX_VERTICES],
        };
        for (at, v) in (0..n).filter(|&v| (keep >> v) & 1 == 1).enumerate() {
            // At most 7 kept vertices: the packed row fits its byte.
            out.rows[at] = pack_bits(rows[v], keep) as u8;
            out.labels[at] = self.labels[v];
        }
        Some(out)
    }

    /// [`ModelSpec::check`] for this cell as the pruned spec: the
    /// original's domain checks in its order, with its messages.
    pub fn check(&self, domain: &Domain) -> Result<(), OutOfDomain> {
        let n = (self.n as usize).min(MAX_VERTICES);
        domain.check_pruned(n, self.num_edges(), |v| {
            label_name(i64::from(self.labels[v])).unwrap_or("?")
        })
    }

    /// Number of edges.
    pub fn num_edges(&self) -> usize {
        self.rows[..self.n as usize]
            .iter()
            .map(|r| r.count_ones() as usize)
            .sum()
    }

    /// The adjacency matrix.
    pub fn matrix(&self) -> Matrix {
        let rows: Vec<u64> = self.rows[..self.n as usize]
            .iter()
            .map(|&r| u64::from(r))
            .collect();
        // Rows only have bits below n by construction.
        Matrix::from_row_masks(&rows).unwrap_or_else(|| Matrix::zeros(0))
    }

    /// Labels as integers.
    pub fn labels(&self) -> Vec<i64> {
        self.labels[..self.n as usize]
            .iter()
            .map(|&l| i64::from(l))
            .collect()
    }

    /// Op names (`input`, ..., `output`).
    pub fn ops(&self) -> Vec<&'static str> {
        self.labels[..self.n as usize]
            .iter()
            .map(|&l| label_name(i64::from(l)).unwrap_or("?"))
            .collect()
    }

    /// Row-major `0`/`1` string, as the dataset stores `raw_adjacency`.
    pub fn adjacency_bits(&self) -> String {
        self.matrix().to_bit_string()
    }

    /// The cell as a [`ModelSpec`].
    pub fn spec(&self) -> ModelSpec {
        let ops = self.ops().into_iter().map(str::to_string).collect();
        // A full DAG is upper triangular and has one op per vertex.
        ModelSpec::from_matrix(self.matrix(), ops)
            .unwrap_or_else(|e| unreachable!("generated cell is a valid spec: {e}"))
    }

    /// The dataset hash.
    pub fn hash(&self, scratch: &mut HashScratch) -> ModelHash {
        let n = self.n as usize;
        let rows: [u64; MAX_VERTICES] = self.rows.map(u64::from);
        let labels: [i64; MAX_VERTICES] = self.labels.map(i64::from);
        hash_module_with(&rows[..n], &labels[..n], scratch)
    }

    /// Trainable parameters of the full network built from this cell.
    pub fn trainable_parameters(&self, config: &NetworkConfig) -> u64 {
        let ops: Vec<Op> = self.labels[1..self.n as usize - 1]
            .iter()
            .map(|&l| match l {
                0 => Op::Conv3x3BnRelu,
                1 => Op::Conv1x1BnRelu,
                _ => Op::MaxPool3x3,
            })
            .collect();
        // Every vertex of a full DAG feeds the output through some path, so
        // every vertex gets channels.
        network_parameters(&self.matrix(), &ops, config).unwrap_or(0)
    }
}

/// One unique cell of the space, in its canonical (first-found) form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    /// The canonical graph: the first labeled graph found with this hash.
    pub graph: LabeledGraph,
    /// The dataset hash.
    pub hash: ModelHash,
    /// Trainable parameters with the dataset's network config.
    pub trainable_parameters: u64,
}

/// Counts for one vertex count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VertexCount {
    /// Vertices, input and output included.
    pub vertices: usize,
    /// Matrices that passed the full-DAG and edge checks.
    pub matrices: u64,
    /// Labeled graphs with this many vertices.
    pub labeled_graphs: u64,
    /// Unique cells with at most this many vertices.
    pub cumulative_cells: usize,
}

/// The enumerated space.
#[derive(Clone, Debug)]
pub struct Space {
    /// Unique cells, in the order the original finds them.
    pub cells: Vec<Cell>,
    /// Labeled graphs seen before de-duplication.
    pub labeled_graphs: u64,
    /// Per vertex count.
    pub per_vertices: Vec<VertexCount>,
    /// Isomorphism classes dropped because an earlier class had the same hash
    /// (0 in the NAS-Bench-101 space; the original would drop them too).
    pub merged_classes: usize,
    /// Whether the original algorithm was also run and agreed.
    pub verified: bool,
}

/// Progress reporting for long stages; called from worker threads.
pub trait Progress: Sync {
    /// A stage begins with `total` units.
    fn start(&self, stage: &str, total: u64);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// A stage begins whose units are bytes (shown as a byte rate).
    fn start_bytes(&self, stage: &str, total: u64) {
        self.start(stage, total);
    }
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// An unlabeled shape that passed the filters, with what canonicalising its
/// labelings needs: the smallest adjacency code over all interior
/// permutations, and the permutations reaching it.
struct Shape {
    n: usize,
    rows: [u8; MAX_VERTICES],
    min_adj: u64,
    best_perms: Vec<[u8; MAX_VERTICES]>,
    /// Index of this shape's first labeled graph.
    offset: u64,
}

impl Shape {
    /// A shape with its minimal adjacency code over `perms` (the interior
    /// permutations) and the permutations reaching it.
    fn new(n: usize, rows: [u8; MAX_VERTICES], perms: &[[u8; MAX_VERTICES]], offset: u64) -> Shape {
        let codes: Vec<u64> = perms.iter().map(|p| adj_code(&rows, n, p)).collect();
        let min_adj = codes.iter().copied().min().unwrap_or(0);
        let best_perms = perms
            .iter()
            .zip(&codes)
            .filter(|&(_, &c)| c == min_adj)
            .map(|(p, _)| *p)
            .collect();
        Shape {
            n,
            rows,
            min_adj,
            best_perms,
            offset,
        }
    }
}

/// All permutations of the interior vertices 1..n-1 (input and output fixed).
fn interior_perms(n: usize) -> Vec<[u8; MAX_VERTICES]> {
    let mut out = Vec::new();
    let mut p: [u8; MAX_VERTICES] = [0, 1, 2, 3, 4, 5, 6];
    fn rec(p: &mut [u8; MAX_VERTICES], k: usize, end: usize, out: &mut Vec<[u8; MAX_VERTICES]>) {
        if k + 1 >= end {
            out.push(*p);
            return;
        }
        for i in k..end {
            p.swap(k, i);
            rec(p, k + 1, end, out);
            p.swap(k, i);
        }
    }
    if n >= 2 {
        rec(&mut p, 1, n - 1, &mut out);
    }
    out
}

/// The adjacency code of `rows` relabeled by `perm` (vertex `perm[v]` of the
/// result is `v`): bit `perm[i] * 7 + perm[j]` for each edge i -> j.
fn adj_code(rows: &[u8; MAX_VERTICES], n: usize, perm: &[u8; MAX_VERTICES]) -> u64 {
    let mut code = 0u64;
    for i in 0..n {
        let mut r = rows[i];
        while r != 0 {
            let j = r.trailing_zeros() as usize;
            r &= r - 1;
            code |= 1 << (perm[i] as usize * MAX_VERTICES + perm[j] as usize);
        }
    }
    code
}

/// Enumerates the matrices with `n` vertices that the original keeps, in
/// its order: bit `x + y(y-1)/2` is edge (x, y); full DAG; at most `max_edges`.
fn shapes_for(n: usize, max_edges: usize) -> Vec<[u8; MAX_VERTICES]> {
    // In this order, the position of (x, y) is its bit index x + y(y-1)/2.
    let edge_of_bit: Vec<(usize, usize)> =
        (1..n).flat_map(|y| (0..y).map(move |x| (x, y))).collect();
    let count = 1u64 << edge_of_bit.len();
    (0..count)
        .into_par_iter()
        .filter(|bits| bits.count_ones() as usize <= max_edges)
        .filter_map(|bits| {
            let mut rows = [0u8; MAX_VERTICES];
            for (b, &(x, y)) in edge_of_bit.iter().enumerate() {
                if (bits >> b) & 1 == 1 {
                    rows[x] |= 1 << y;
                }
            }
            let cols = rows[..n].iter().fold(0u8, |a, &r| a | r);
            let full =
                rows[..n - 1].iter().all(|&r| r != 0) && (1..n).all(|j| (cols >> j) & 1 == 1);
            full.then_some(rows)
        })
        .collect()
}

/// Number of op labels.
const NUM_OPS: u64 = CANONICAL_OPS.len() as u64;

/// The labeled graph number `index` of `shape` (labelings in the order of
/// `itertools.product`: the last interior vertex varies fastest).
fn labeled(shape: &Shape, mut index: u64) -> LabeledGraph {
    let n = shape.n;
    let mut labels = [0i8; MAX_VERTICES];
    labels[0] = INPUT_LABEL as i8;
    labels[n - 1] = OUTPUT_LABEL as i8;
    for v in (1..n - 1).rev() {
        labels[v] = (index % NUM_OPS) as i8;
        index /= NUM_OPS;
    }
    LabeledGraph {
        n: n as u8,
        rows: shape.rows,
        labels,
    }
}

/// The permutations of the interior vertices for each vertex count, built once.
fn cached_interior_perms(n: usize) -> &'static [[u8; MAX_VERTICES]] {
    static PERMS: std::sync::OnceLock<Vec<Vec<[u8; MAX_VERTICES]>>> = std::sync::OnceLock::new();
    let all = PERMS.get_or_init(|| (0..=MAX_VERTICES).map(interior_perms).collect());
    all.get(n).map_or(&[], Vec::as_slice)
}

/// Each interior permutation with its inverse (`inv[perm[v]] == v`), built
/// once, sorted by the vertex they place at the top interior position
/// `n - 2`: vertex `v`'s permutations are the `(n - 3)!` from
/// `(v - 1) * (n - 3)!`.
fn cached_perm_pairs(n: usize) -> &'static [PermPair] {
    static PAIRS: std::sync::OnceLock<Vec<Vec<PermPair>>> = std::sync::OnceLock::new();
    let all = PAIRS.get_or_init(|| {
        (0..=MAX_VERTICES)
            .map(|n| {
                let mut pairs: Vec<PermPair> = cached_interior_perms(n)
                    .iter()
                    .map(|&perm| {
                        let mut inv = [0u8; MAX_VERTICES];
                        for (v, &p) in perm.iter().enumerate() {
                            inv[p as usize] = v as u8;
                        }
                        // Relabeled row = lo[low nibble] | hi[high nibble].
                        let relabel = |nibble: usize, shift: usize| {
                            let mut bits = 0u8;
                            for t in 0..4 {
                                let v = t + shift;
                                if nibble >> t & 1 != 0 && v < MAX_VERTICES {
                                    bits |= 1 << perm[v];
                                }
                            }
                            bits
                        };
                        PermPair {
                            perm,
                            inv,
                            lo: std::array::from_fn(|x| relabel(x, 0)),
                            hi: std::array::from_fn(|x| relabel(x, 4)),
                        }
                    })
                    .collect();
                if n >= 3 {
                    pairs.sort_by_key(|p| p.inv[n - 2]);
                }
                pairs
            })
            .collect()
    });
    all.get(n).map_or(&[], Vec::as_slice)
}

/// A relabeling of the vertices and its inverse.
struct PermPair {
    perm: [u8; MAX_VERTICES],
    inv: [u8; MAX_VERTICES],
    /// A row's relabeled bits by nibble: `lo[r & 15] | hi[r >> 4]` has bit
    /// `perm[j]` for each bit `j < MAX_VERTICES` of `r` (bit 7, which no
    /// vertex has, is dropped).
    lo: [u8; 16],
    hi: [u8; 16],
}

/// Canonical key of one labeled graph, equal to the key the enumeration
/// gives it: two graphs of the space have the same key iff they are
/// isomorphic (input and output fixed). Interior labels must be op indices
/// (0..=2). The minimum of [`adj_code`] over the interior permutations,
/// compared row by row from the most significant (the highest position), so
/// that most permutations are rejected after one or two rows; the label
/// word breaks ties. Bit operations only, far cheaper than the MD5 hash.
pub fn canonical_key(g: &LabeledGraph) -> u64 {
    let n = (g.n as usize).min(MAX_VERTICES);
    // Row `pos` of the best relabeled matrix so far (bit `perm[j]` for an
    // edge from the vertex at `pos` to j); 0xFF is above any 7-bit row.
    let mut best = [0xFFu8; MAX_VERTICES];
    let mut best_lab = u64::MAX;
    let label_word = |perm: &[u8; MAX_VERTICES]| {
        let mut lab = 0u64;
        for (&label, &pv) in g.labels.iter().zip(perm).take(n.saturating_sub(1)).skip(1) {
            lab |= u64::from(label as u8 & 3) << (2 * (n - 2 - pv as usize));
        }
        lab
    };
    let pairs = cached_perm_pairs(n);
    // The top interior row (position n - 2, the most significant one that
    // can hold an edge) is smallest, over all permutations with vertex v
    // there, when v's targets other than the output take the lowest
    // positions: (edge to output, number of other targets) decides it. Only
    // the vertices minimizing that can be on top in the minimum.
    // For a graph with edges into the input or out of the output, which no
    // spec has, every permutation is tried.
    let mut tops = u8::MAX;
    let group = if n >= 4 {
        pairs.len() / (n - 2)
    } else {
        pairs.len()
    };
    if n >= 4 && g.rows[n - 1] == 0 && g.rows[..n].iter().all(|&r| r & 1 == 0 && r >> n == 0) {
        let out = 1u8 << (n - 1);
        let rank = |v: usize| {
            (
                (g.rows[v] & out != 0) as u32,
                (g.rows[v] & !out).count_ones(),
            )
        };
        let best_rank = (1..n - 1).map(rank).min().unwrap_or((0, 0));
        tops = (1..n - 1)
            .filter(|&v| rank(v) == best_rank)
            .fold(0, |m, v| m | 1 << v);
    }
    // Chunk k holds the permutations with vertex k + 1 on top.
    let candidates = pairs
        .chunks(group.max(1))
        .enumerate()
        .filter(|&(k, _)| tops & (1 << (k + 1)) != 0);
    for PermPair { perm, inv, lo, hi } in candidates.flat_map(|(_, c)| c) {
        let mut rows = [0u8; MAX_VERTICES];
        let mut order = std::cmp::Ordering::Equal;
        for pos in (0..n).rev() {
            let r = g.rows[inv[pos] as usize];
            let bits = lo[usize::from(r & 15)] | hi[usize::from(r >> 4)];
            if order.is_eq() {
                order = bits.cmp(&best[pos]);
                if order.is_gt() {
                    break;
                }
            }
            rows[pos] = bits;
        }
        match order {
            std::cmp::Ordering::Greater => {}
            std::cmp::Ordering::Less => {
                best = rows;
                best_lab = label_word(perm);
            }
            std::cmp::Ordering::Equal => best_lab = best_lab.min(label_word(perm)),
        }
    }
    let best_adj = best[..n]
        .iter()
        .enumerate()
        .fold(0u64, |code, (pos, &bits)| {
            code | u64::from(bits) << (pos * MAX_VERTICES)
        });
    ((n as u64) << 59) | (best_adj << 10) | best_lab
}

/// Canonical key of every labeling of `shape`, in order: equal keys iff the
/// labeled graphs are isomorphic (same n, same minimal adjacency code, same
/// smallest label word over the permutations reaching it).
fn canonical_keys(shape: &Shape) -> Vec<u64> {
    let n = shape.n;
    let interior = n - 2;
    let count = NUM_OPS.pow(interior as u32);
    let base = ((n as u64) << 59) | (shape.min_adj << 10);
    let mut keys = Vec::with_capacity(count as usize);
    let mut word = [0u8; MAX_VERTICES];
    for index in 0..count {
        let mut rest = index;
        for v in (1..n - 1).rev() {
            word[v] = (rest % NUM_OPS) as u8;
            rest /= NUM_OPS;
        }
        let lab = shape
            .best_perms
            .iter()
            .map(|p| {
                let mut code = 0u64;
                for v in 1..n - 1 {
                    // Vertex p[v] of the relabeled graph carries v's label;
                    // vertex 1 is the most significant digit.
                    code |= u64::from(word[v]) << (2 * (n - 2 - p[v] as usize));
                }
                code
            })
            .min()
            .unwrap_or(0);
        keys.push(base | lab);
    }
    keys
}

/// Enumerates the space as the original does and returns its unique cells.
pub fn generate(opts: &GenerateOptions, progress: &dyn Progress) -> Result<Space, GenerateError> {
    if !(2..=MAX_VERTICES).contains(&opts.max_vertices) {
        return Err(GenerateError::MaxVertices(opts.max_vertices));
    }
    let config = NetworkConfig::default();

    // 1. Shapes, in the original's order, with their automorphism data.
    let mut shapes: Vec<Shape> = Vec::new();
    let mut per_vertices = Vec::new();
    let mut offset = 0u64;
    for n in 2..=opts.max_vertices {
        let perms = interior_perms(n);
        let found = shapes_for(n, opts.max_edges);
        let per_shape = NUM_OPS.pow(n as u32 - 2);
        per_vertices.push(VertexCount {
            vertices: n,
            matrices: found.len() as u64,
            labeled_graphs: found.len() as u64 * per_shape,
            cumulative_cells: 0,
        });
        let built: Vec<Shape> = found
            .into_par_iter()
            .enumerate()
            .map(|(i, rows)| Shape::new(n, rows, &perms, offset + i as u64 * per_shape))
            .collect();
        offset += built.len() as u64 * per_shape;
        shapes.extend(built);
    }
    let labeled_graphs = offset;

    // 2. Canonical key of every labeled graph; keep the first of each class.
    progress.start("classifying labeled graphs", labeled_graphs);
    let mut keyed: Vec<(u64, u64)> = shapes
        .par_iter()
        .flat_map_iter(|s| {
            let keys = canonical_keys(s);
            progress.advance(keys.len() as u64);
            keys.into_iter()
                .enumerate()
                .map(move |(i, k)| (k, s.offset + i as u64))
        })
        .collect();
    keyed.par_sort_unstable();
    let mut firsts: Vec<u64> = keyed
        .chunk_by(|a, b| a.0 == b.0)
        .map(|run| run[0].1)
        .collect();
    drop(keyed);
    firsts.par_sort_unstable();

    let shape_of = |index: u64| shapes.partition_point(|s| s.offset <= index) - 1;
    let graph_at = |index: u64| -> LabeledGraph {
        let s = shape_of(index);
        labeled(&shapes[s], index - shapes[s].offset)
    };

    // 3. Hash the first graph of each class (the expensive part).
    progress.start("hashing cells", firsts.len() as u64);
    // Batches of up to LANES classes of one shape, hashed in SIMD lanes.
    let mut batches: Vec<(usize, Vec<u64>)> = Vec::new();
    for &i in &firsts {
        let s = shape_of(i);
        match batches.last_mut() {
            Some((bs, b)) if *bs == s && b.len() < LANES => b.push(i),
            _ => batches.push((s, vec![i])),
        }
    }
    let hashed: Vec<(LabeledGraph, ModelHash)> = batches
        .par_iter()
        .map_init(BatchScratch::default, |scratch, (s, batch)| {
            let shape = &shapes[*s];
            let graphs: Vec<LabeledGraph> = batch
                .iter()
                .map(|&i| labeled(shape, i - shape.offset))
                .collect();
            let rows: Vec<u64> = shape.rows[..shape.n]
                .iter()
                .map(|&r| u64::from(r))
                .collect();
            let labels: Vec<Vec<i64>> = graphs.iter().map(LabeledGraph::labels).collect();
            let refs: Vec<&[i64]> = labels.iter().map(Vec::as_slice).collect();
            let hashes = hash_batch(&rows, &refs, scratch);
            progress.advance(batch.len() as u64);
            graphs.into_iter().zip(hashes).collect::<Vec<_>>()
        })
        .flatten_iter()
        .collect();

    // 4. First class per hash, as the original's buckets keep it.
    let mut seen = HashSet::with_capacity(hashed.len());
    let mut kept: Vec<(LabeledGraph, ModelHash)> = Vec::with_capacity(hashed.len());
    for (g, h) in hashed {
        if seen.insert(h) {
            kept.push((g, h));
        }
    }
    let merged_classes = firsts.len() - kept.len();

    let verified = if opts.verify_isomorphism {
        verify(labeled_graphs, &graph_at, &kept, progress)?;
        true
    } else {
        false
    };

    let cells: Vec<Cell> = kept
        .into_par_iter()
        .map(|(graph, hash)| Cell {
            graph,
            hash,
            trainable_parameters: graph.trainable_parameters(&config),
        })
        .collect();
    for vc in per_vertices.iter_mut() {
        vc.cumulative_cells = cells
            .iter()
            .filter(|c| c.graph.n as usize <= vc.vertices)
            .count();
    }
    Ok(Space {
        cells,
        labeled_graphs,
        per_vertices,
        merged_classes,
        verified,
    })
}

/// The original algorithm: hash every labeled graph, keep the first per hash,
/// and check that every later graph is isomorphic to its bucket's first
/// (exhaustive search). Then the buckets must be exactly `kept`.
fn verify(
    labeled_graphs: u64,
    graph_at: &(dyn Fn(u64) -> LabeledGraph + Sync),
    kept: &[(LabeledGraph, ModelHash)],
    progress: &dyn Progress,
) -> Result<(), GenerateError> {
    progress.start("verify: hashing every labeled graph", labeled_graphs);
    let indices: Vec<u64> = (0..labeled_graphs).collect();
    let hashes: Vec<ModelHash> = indices
        .par_chunks(1024)
        .flat_map_iter(|chunk| {
            let mut scratch = HashScratch::default();
            let out: Vec<_> = chunk
                .iter()
                .map(|&i| graph_at(i).hash(&mut scratch))
                .collect();
            progress.advance(chunk.len() as u64);
            out
        })
        .collect();
    let mut first: HashMap<ModelHash, u64> = HashMap::with_capacity(kept.len());
    let mut buckets: Vec<u64> = Vec::new();
    let mut pairs: Vec<(u64, u64)> = Vec::new();
    for (i, h) in hashes.iter().enumerate() {
        match first.get(h) {
            Some(&r) => pairs.push((i as u64, r)),
            None => {
                first.insert(*h, i as u64);
                buckets.push(i as u64);
            }
        }
    }
    progress.start("verify: isomorphism of each bucket", pairs.len() as u64);
    let bad = pairs.par_chunks(4096).find_map_any(|chunk| {
        let found = chunk.iter().find_map(|&(i, r)| {
            let (g, c) = (graph_at(i), graph_at(r));
            (!is_isomorphic(&g.matrix(), &g.labels(), &c.matrix(), &c.labels())).then_some((g, c))
        });
        progress.advance(chunk.len() as u64);
        found
    });
    if let Some((g, c)) = bad {
        return Err(GenerateError::NotIsomorphic {
            hash: g.hash(&mut HashScratch::default()),
            graph_matrix: g.adjacency_bits(),
            graph_labels: g.labels(),
            canonical_matrix: c.adjacency_bits(),
            canonical_labels: c.labels(),
        });
    }
    let agree = buckets.len() == kept.len()
        && buckets
            .iter()
            .zip(kept)
            .all(|(&b, (g, h))| graph_at(b) == *g && hashes[b as usize] == *h);
    if !agree {
        return Err(GenerateError::Disagreement {
            classes: kept.len(),
            buckets: buckets.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pruned` and `check` on a labeled graph give what `ModelSpec` gives
    /// for the same matrix and ops (its pruning through a `Matrix`), over
    /// random upper-triangular graphs of 0 to 7 vertices with every label
    /// (input and output in the interior included) and a domain that
    /// refuses maxpool.
    #[test]
    fn pruned_and_check_agree_with_model_spec() {
        let mut rng = crate::rng::SplitMix64::new(42);
        let narrow = Domain {
            max_vertices: 6,
            max_edges: 7,
            available_ops: vec![CANONICAL_OPS[0].to_string(), CANONICAL_OPS[1].to_string()],
        };
        let mut pruned_some = 0;
        for _ in 0..20_000 {
            let n = (rng.next_u64() % 8) as usize;
            let mut g = LabeledGraph {
                n: n as u8,
                rows: [0; MAX_VERTICES],
                labels: [0; MAX_VERTICES],
            };
            for i in 0..n {
                let above = ((1u16 << n) - 1) & !((2u16 << i) - 1);
                g.rows[i] = (rng.next_u64() as u16 & above) as u8;
                g.labels[i] = (rng.next_u64() % 5) as i8 - 2;
            }
            if n > 0 && rng.next_u64().is_multiple_of(2) {
                g.labels[0] = -1;
                g.labels[n - 1] = -2;
            }
            let spec =
                ModelSpec::from_matrix(g.matrix(), g.ops().iter().map(|o| o.to_string()).collect())
                    .expect("upper triangular");
            let p = g.pruned();
            assert_eq!(p.is_some(), spec.valid_spec(), "{g:?}");
            if let Some(p) = p {
                pruned_some += 1;
                assert_eq!(Some(&p.matrix()), spec.matrix(), "{g:?}");
                assert_eq!(p.ops(), spec.ops().unwrap_or_default(), "{g:?}");
                for domain in [Domain::default(), narrow.clone()] {
                    assert_eq!(p.check(&domain), spec.check(&domain), "{g:?}");
                }
            }
        }
        assert!(pruned_some > 5_000, "{pruned_some}");
    }

    /// The nibble tables relabel every row as the permutation says: bit
    /// `perm[j]` for each bit `j` of the row.
    #[test]
    fn perm_pair_tables_relabel_every_row() {
        for n in 0..=MAX_VERTICES {
            for p in cached_perm_pairs(n) {
                for r in 0u8..1 << MAX_VERTICES {
                    let want = (0..MAX_VERTICES)
                        .filter(|&j| r >> j & 1 != 0)
                        .fold(0u8, |b, j| b | 1 << p.perm[j]);
                    let got = p.lo[usize::from(r & 15)] | p.hi[usize::from(r >> 4)];
                    assert_eq!(got, want, "n {n}, perm {:?}, row {r:#b}", p.perm);
                }
            }
        }
    }

    /// `canonical_key` of each labeled graph equals the key the enumeration
    /// computes for it, for every labeling of every shape with up to 5
    /// vertices and a sample of the larger shapes.
    #[test]
    fn canonical_key_matches_enumeration_keys() {
        for n in 2..=MAX_VERTICES {
            let perms = interior_perms(n);
            let found = shapes_for(n, 9);
            let step = if n <= 5 { 1 } else { 97 };
            for rows in found.into_iter().step_by(step) {
                let shape = Shape::new(n, rows, &perms, 0);
                for (i, key) in canonical_keys(&shape).into_iter().enumerate() {
                    let g = labeled(&shape, i as u64);
                    assert_eq!(canonical_key(&g), key, "{g:?}");
                }
            }
        }
    }
}
