//! The cell specification (`model_spec.ModelSpec`): construction checks, pruning, the dataset's domain check and hashing.

use crate::cell::graph::{MAX_MATRIX_VERTICES, Matrix, ModelHash, hash_module};
use crate::cell::ops::{CANONICAL_OPS, INPUT, INPUT_LABEL, OUTPUT, OUTPUT_LABEL, python_list_repr};

/// Why a matrix and op list do not make a spec. The first three messages
/// are the original's, checked in the original's order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Not a square 2-D matrix (ragged rows included).
    #[error("matrix must be square")]
    NotSquare,
    /// `ops` has a different length than the matrix.
    #[error("length of ops must match matrix dimensions")]
    OpsLength,
    /// A non-zero entry on or below the diagonal.
    #[error("matrix must be upper triangular")]
    NotUpperTriangular,
    /// An entry other than 0 or 1 above the diagonal (the original silently
    /// miscounts such edges; we refuse them).
    #[error("matrix entries must be 0 or 1, got {value} at row {row}, column {col}")]
    NotBinary {
        /// Row of the entry.
        row: usize,
        /// Column of the entry.
        col: usize,
        /// The entry.
        value: i64,
    },
    /// More vertices than a [`Matrix`] holds.
    #[error("matrix has {0} vertices; at most 64 are supported")]
    TooLarge(usize),
}

/// The original's `OutOfDomainError`: a spec outside the dataset. Messages
/// are the original's, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutOfDomain {
    /// Input does not reach output.
    #[error("invalid spec, provided graph is disconnected.")]
    Disconnected,
    /// More vertices than the dataset allows (after pruning).
    #[error("too many vertices, got {got} (max vertices = {max})")]
    TooManyVertices {
        /// Vertices of the pruned spec.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// More edges than the dataset allows (after pruning).
    #[error("too many edges, got {got} (max edges = {max})")]
    TooManyEdges {
        /// Edges of the pruned spec.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// First op is not `input`.
    #[error("first operation should be 'input'")]
    FirstNotInput,
    /// Last op is not `output`.
    #[error("last operation should be 'output'")]
    LastNotOutput,
    /// An interior op the dataset does not have.
    #[error(
        "unsupported op {op} (available ops = {})",
        python_list_repr(available)
    )]
    UnsupportedOp {
        /// The op as given.
        op: String,
        /// The domain's ops.
        available: Vec<String>,
    },
}

/// The limits of a dataset (the original's `module_vertices`, `max_edges`,
/// `available_ops`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// Most vertices, input and output included.
    pub max_vertices: usize,
    /// Most edges.
    pub max_edges: usize,
    /// Interior ops allowed, in canonical (hash label) order.
    pub available_ops: Vec<String>,
}

impl Default for Domain {
    /// NAS-Bench-101: 7 vertices, 9 edges, the three canonical ops.
    fn default() -> Self {
        Domain {
            max_vertices: 7,
            max_edges: 9,
            available_ops: CANONICAL_OPS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl Domain {
    /// The original's `_check_spec` on a pruned cell of `vertices`
    /// vertices and `edges` edges whose vertex `v` has op `op(v)`: the
    /// checks in the original's order, failing with its messages.
    pub fn check_pruned<'a>(
        &self,
        vertices: usize,
        edges: usize,
        op: impl Fn(usize) -> &'a str,
    ) -> Result<(), OutOfDomain> {
        if vertices > self.max_vertices {
            return Err(OutOfDomain::TooManyVertices {
                got: vertices,
                max: self.max_vertices,
            });
        }
        if edges > self.max_edges {
            return Err(OutOfDomain::TooManyEdges {
                got: edges,
                max: self.max_edges,
            });
        }
        if vertices == 0 || op(0) != INPUT {
            return Err(OutOfDomain::FirstNotInput);
        }
        if op(vertices - 1) != OUTPUT {
            return Err(OutOfDomain::LastNotOutput);
        }
        if let Some(bad) = (1..vertices - 1)
            .map(&op)
            .find(|o| !self.available_ops.iter().any(|a| a == o))
        {
            return Err(OutOfDomain::UnsupportedOp {
                op: bad.to_string(),
                available: self.available_ops.clone(),
            });
        }
        Ok(())
    }
}

/// A cell: the matrix and ops as given, and their pruned form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    original_matrix: Matrix,
    original_ops: Vec<String>,
    /// `None` when input does not reach output (`valid_spec = False`).
    pruned: Option<(Matrix, Vec<String>)>,
}

impl ModelSpec {
    /// Builds and prunes a spec from nested integer rows and op names, with
    /// the original's construction checks in its order.
    pub fn new<T: Copy + Into<i64>>(
        matrix: &[Vec<T>],
        ops: Vec<String>,
    ) -> Result<Self, SpecError> {
        let n = matrix.len();
        if matrix.iter().any(|r| r.len() != n) {
            return Err(SpecError::NotSquare);
        }
        if ops.len() != n {
            return Err(SpecError::OpsLength);
        }
        for (i, row) in matrix.iter().enumerate() {
            if row[..=i].iter().any(|&v| v.into() != 0) {
                return Err(SpecError::NotUpperTriangular);
            }
        }
        for (i, row) in matrix.iter().enumerate() {
            if let Some((j, v)) = row
                .iter()
                .map(|&v| v.into())
                .enumerate()
                .find(|&(_, v)| v != 0 && v != 1)
            {
                return Err(SpecError::NotBinary {
                    row: i,
                    col: j,
                    value: v,
                });
            }
        }
        if n > MAX_MATRIX_VERTICES {
            return Err(SpecError::TooLarge(n));
        }
        let m = Matrix::from_nested(matrix).ok_or(SpecError::NotSquare)?;
        Self::from_matrix(m, ops)
    }

    /// Builds and prunes a spec from a [`Matrix`] and op names.
    pub fn from_matrix(matrix: Matrix, ops: Vec<String>) -> Result<Self, SpecError> {
        if ops.len() != matrix.n() {
            return Err(SpecError::OpsLength);
        }
        if !matrix.is_upper_triangular() {
            return Err(SpecError::NotUpperTriangular);
        }
        let pruned = prune(&matrix, &ops);
        Ok(ModelSpec {
            original_matrix: matrix,
            original_ops: ops,
            pruned,
        })
    }

    /// The matrix as given and the pruned matrix (`None` for an invalid
    /// spec), dropping the ops.
    pub fn into_matrices(self) -> (Matrix, Option<Matrix>) {
        (self.original_matrix, self.pruned.map(|(m, _)| m))
    }

    /// The matrix as given.
    pub fn original_matrix(&self) -> &Matrix {
        &self.original_matrix
    }

    /// The ops as given.
    pub fn original_ops(&self) -> &[String] {
        &self.original_ops
    }

    /// Whether input reaches output (the original's `valid_spec`).
    pub fn valid_spec(&self) -> bool {
        self.pruned.is_some()
    }

    /// The pruned matrix; `None` for an invalid spec.
    pub fn matrix(&self) -> Option<&Matrix> {
        self.pruned.as_ref().map(|(m, _)| m)
    }

    /// The pruned ops; `None` for an invalid spec.
    pub fn ops(&self) -> Option<&[String]> {
        self.pruned.as_ref().map(|(_, o)| o.as_slice())
    }

    /// The original's `_check_spec`: the pruned spec lies inside `domain`.
    /// Checks run in the original's order and fail with its messages.
    pub fn check(&self, domain: &Domain) -> Result<(), OutOfDomain> {
        let (matrix, ops) = self.pruned.as_ref().ok_or(OutOfDomain::Disconnected)?;
        domain.check_pruned(ops.len(), matrix.num_edges(), |v| ops[v].as_str())
    }

    /// The original's `is_valid`: [`ModelSpec::check`] passes.
    pub fn is_valid(&self, domain: &Domain) -> bool {
        self.check(domain).is_ok()
    }

    /// Hash labels of the pruned spec: -1, the index of each interior op in
    /// `canonical_ops`, -2 (the original's `hash_spec` labeling).
    pub fn labels(&self, canonical_ops: &[impl AsRef<str>]) -> Result<Vec<i64>, OutOfDomain> {
        let (_, ops) = self.pruned.as_ref().ok_or(OutOfDomain::Disconnected)?;
        let mut labels = Vec::with_capacity(ops.len());
        labels.push(INPUT_LABEL);
        for op in &ops[1..ops.len() - 1] {
            match canonical_ops.iter().position(|c| c.as_ref() == op) {
                Some(i) => labels.push(i as i64),
                None => {
                    return Err(OutOfDomain::UnsupportedOp {
                        op: op.clone(),
                        available: canonical_ops
                            .iter()
                            .map(|c| c.as_ref().to_string())
                            .collect(),
                    });
                }
            }
        }
        labels.push(OUTPUT_LABEL);
        Ok(labels)
    }

    /// The original's `hash_spec(canonical_ops)`: the isomorphism-invariant
    /// hash of the pruned spec. Fails for an invalid spec or an interior op
    /// missing from `canonical_ops`; the vertex limits are not checked.
    pub fn hash_spec(&self, canonical_ops: &[impl AsRef<str>]) -> Result<ModelHash, OutOfDomain> {
        let labels = self.labels(canonical_ops)?;
        let (matrix, _) = self.pruned.as_ref().ok_or(OutOfDomain::Disconnected)?;
        Ok(hash_module(matrix, &labels))
    }

    /// [`ModelSpec::hash_spec`] with the dataset's canonical ops: the key
    /// under which NAS-Bench-101 stores this cell.
    pub fn hash(&self) -> Result<ModelHash, OutOfDomain> {
        self.hash_spec(&CANONICAL_OPS)
    }
}

/// The original's `_prune`: keeps the vertices reachable from the input and
/// reaching the output, in order; `None` when fewer than two remain (the
/// input does not reach the output).
pub fn prune(matrix: &Matrix, ops: &[String]) -> Option<(Matrix, Vec<String>)> {
    let keep = kept_vertices(matrix)?;
    let ops = ops
        .iter()
        .enumerate()
        .filter(|&(v, _)| (keep >> v) & 1 == 1)
        .map(|(_, o)| o.clone())
        .collect();
    Some((matrix.select_vertices(keep), ops))
}

/// Bitmask of the vertices on some input -> output path; `None` when fewer
/// than two (the spec is invalid).
pub fn kept_vertices(matrix: &Matrix) -> Option<u64> {
    kept_of_rows(matrix.rows())
}

/// [`kept_vertices`] of an upper-triangular matrix given as row bitmasks
/// (bit `j` of `rows[i]` is the edge i -> j).
pub fn kept_of_rows(rows: &[u64]) -> Option<u64> {
    let n = rows.len();
    if n < 2 {
        return None;
    }
    // Upper triangular: one forward sweep finds everything reachable from 0.
    let mut from_input = 1u64;
    for (v, &row) in rows.iter().enumerate() {
        if (from_input >> v) & 1 == 1 {
            from_input |= row;
        }
    }
    let mut to_output = 1u64 << (n - 1);
    for v in (0..n).rev() {
        if rows[v] & to_output != 0 {
            to_output |= 1 << v;
        }
    }
    let keep = from_input & to_output;
    (keep.count_ones() >= 2).then_some(keep)
}
