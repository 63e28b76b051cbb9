//! The original `api.py` (`NASBench`): query with a sampled repeat, budget counters, validity, metrics by hash or spec, over a database or its Parquet export.
//!
//! Two stores answer the same calls:
//! - **in memory** ([`NasBench::in_memory`]): a flat columnar index of every
//!   cell and run, memory-mapped (see [`index`]); built once beside the
//!   source, then opened in milliseconds. A spec is found by its exact
//!   canonical form (the enumeration's isomorphism key) instead of its MD5
//!   hash, which gives the same cell in a fraction of the time;
//! - **lazy** ([`NasBench::lazy`]): one point query against DuckDB per call,
//!   nothing loaded up front; for one-shot use.
//!
//! Behaviour follows the original: `query` checks the budget first, then
//! the spec (same messages), samples one of the 3 repeats uniformly with a
//! seedable generator ([`SplitMix64`]), and adds the returned training time
//! and the epochs (half of them when stopping halfway) to the budget
//! counters. Where the original raises (a `KeyError` for an unknown hash,
//! an `IndexError` for a missing repeat) this returns a typed error.

pub mod index;
#[cfg(feature = "duckdb")]
pub mod lazy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::rng::SplitMix64;
pub use index::{Index, SourceFile};
#[cfg(feature = "duckdb")]
pub use lazy::Lazy;

use crate::cell::generate::{LabeledGraph, canonical_key};
use crate::cell::graph::{Matrix, ModelHash};
use crate::cell::ops::label_name;
use crate::cell::spec::{Domain, ModelSpec, OutOfDomain, SpecError};
#[cfg(feature = "duckdb")]
use crate::db::DbError;

/// Repeats per (cell, budget) that `query` samples from (the original's
/// `config['num_repeats']`).
pub const NUM_REPEATS: usize = 3;

/// The `source` values of dataset rows, as an SQL list. Rows of trained
/// runs (other sources) are not part of the benchmark's answers.
pub const DATASET_SOURCES_SQL: &str = "('nasbench-101', 'synthetic')";

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The spec is outside the dataset (the original's `OutOfDomainError`,
    /// same messages).
    #[error("{0}")]
    OutOfDomain(#[from] OutOfDomain),
    /// The budget is not in the loaded data (an `OutOfDomainError` in the
    /// original, same message; the set is printed in ascending order).
    #[error("invalid number of epochs, must be one of {}", python_set(valid))]
    InvalidEpochs {
        /// The budget asked for.
        epochs: u32,
        /// Budgets present, in the order the original prints its set of
        /// them (see [`python_set_order`]).
        valid: Vec<u32>,
    },
    /// A valid spec or a hash that the data does not hold (a `KeyError` in
    /// the original).
    #[error("hash {0} is not in the dataset")]
    UnknownHash(ModelHash),
    /// The sampled repeat is missing for this cell and budget (an
    /// `IndexError` in the original).
    #[error(
        "cell {hash} has {found} of {NUM_REPEATS} repeats at {epochs} epochs; repeat {sampled} was sampled"
    )]
    MissingRepeat {
        /// The cell.
        hash: ModelHash,
        /// The budget.
        epochs: u32,
        /// Repeats present.
        found: usize,
        /// The sampled repeat (1-based).
        sampled: usize,
    },
    /// The matrix and ops do not make a spec.
    #[error("{0}")]
    Spec(#[from] SpecError),
    /// The database or Parquet directory cannot be used.
    #[error("{path}: {message}")]
    Source {
        /// The path given.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The data does not have the dataset's schema.
    #[error("unexpected data: {0}")]
    Schema(String),
    /// An index file cannot be used.
    #[error("index {path}: {message}")]
    Index {
        /// The index file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// DuckDB error.
    #[cfg(feature = "duckdb")]
    #[error(transparent)]
    Db(#[from] DbError),
}

impl ApiError {
    fn io(path: &Path, source: std::io::Error) -> ApiError {
        ApiError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Python's repr of a set of ints whose iteration order is `items`.
fn python_set(items: &[u32]) -> String {
    let inner: Vec<String> = items.iter().map(u32::to_string).collect();
    format!("{{{}}}", inner.join(", "))
}

/// The iteration order of a CPython set of small non-negative ints added
/// in `insertion` order (the original's `valid_epochs`, filled in file
/// order, printed in its error message). Follows `setobject.c`: the hash
/// of a small int is itself, 8 slots to start, linear probes only where 9
/// slots fit after the start, then `i = 5i + 1 + perturb` with `perturb`
/// shifted right by 5, and a resize to the next power of two above 4x the
/// entries once the table is 60% full.
pub fn python_set_order(insertion: &[u32]) -> Vec<u32> {
    fn place(table: &mut [Option<u32>], key: u32) {
        let mask = table.len() - 1;
        let mut perturb = key as usize;
        let mut i = key as usize & mask;
        loop {
            let probes = if i + 9 <= mask { 9 } else { 0 };
            for slot in &mut table[i..=i + probes] {
                if slot.is_none() {
                    *slot = Some(key);
                    return;
                }
            }
            perturb >>= 5;
            i = (i * 5 + 1 + perturb) & mask;
        }
    }
    let mut table: Vec<Option<u32>> = vec![None; 8];
    let mut used = 0usize;
    for &key in insertion {
        if table.contains(&Some(key)) {
            continue;
        }
        place(&mut table, key);
        used += 1;
        let mask = table.len() - 1;
        if used * 5 >= mask * 3 {
            let mut size = 8;
            while size <= used * 4 {
                size <<= 1;
            }
            let old = std::mem::replace(&mut table, vec![None; size]);
            for key in old.into_iter().flatten() {
                place(&mut table, key);
            }
        }
    }
    table.into_iter().flatten().collect()
}

/// Training time and accuracies at one evaluation point; `None` where the
/// record has no value (the original would read the proto2 default 0.0).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    /// Seconds of training up to this point.
    pub training_time: Option<f64>,
    /// Accuracy on the training split.
    pub train_accuracy: Option<f64>,
    /// Accuracy on the validation split.
    pub validation_accuracy: Option<f64>,
    /// Accuracy on the test split.
    pub test_accuracy: Option<f64>,
}

/// One training run: its halfway and final evaluations (the original's
/// `halfway_*` and `final_*` keys).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RunMetrics {
    /// Evaluation at half the epochs.
    pub halfway: Point,
    /// Evaluation at the end of training.
    pub last: Point,
}

impl RunMetrics {
    /// The original's per-repeat dict.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "halfway_training_time": self.halfway.training_time,
            "halfway_train_accuracy": self.halfway.train_accuracy,
            "halfway_validation_accuracy": self.halfway.validation_accuracy,
            "halfway_test_accuracy": self.halfway.test_accuracy,
            "final_training_time": self.last.training_time,
            "final_train_accuracy": self.last.train_accuracy,
            "final_validation_accuracy": self.last.validation_accuracy,
            "final_test_accuracy": self.last.test_accuracy,
        })
    }
}

/// What does not depend on training (the original's `fixed_stats`), with
/// the cell as the dataset stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedStats {
    /// The dataset key.
    pub hash: ModelHash,
    /// The stored (canonical) matrix and labels.
    pub graph: LabeledGraph,
    /// Trainable parameters of the whole network.
    pub trainable_parameters: Option<i64>,
}

impl FixedStats {
    /// The stored adjacency matrix (`module_adjacency`).
    pub fn module_adjacency(&self) -> Matrix {
        self.graph.matrix()
    }

    /// The stored op names (`module_operations`).
    pub fn module_operations(&self) -> Vec<&'static str> {
        self.graph.ops()
    }

    /// The original's `fixed_stats` dict.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "module_adjacency": self.module_adjacency().to_nested(),
            "module_operations": self.module_operations(),
            "trainable_parameters": self.trainable_parameters,
        })
    }
}

/// Everything stored for a cell: `get_metrics_from_hash`'s pair.
#[derive(Debug, Clone, PartialEq)]
pub struct CellMetrics {
    /// The original's `fixed_stats`.
    pub fixed: FixedStats,
    /// The original's `computed_stats`: per budget, the runs in file order.
    pub computed: BTreeMap<u32, Vec<RunMetrics>>,
}

/// One answer of [`NasBench::query`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryResult {
    /// The cell as stored.
    pub fixed: FixedStats,
    /// The budget asked for.
    pub epochs: u32,
    /// The sampled repeat, 0-based in file order (the `evaluations.repeat`
    /// column minus one).
    pub repeat: usize,
    /// Whether the halfway point was returned.
    pub stop_halfway: bool,
    /// The returned evaluation.
    pub point: Point,
}

impl QueryResult {
    /// The original's dict (`module_adjacency`, `module_operations`,
    /// `trainable_parameters`, `training_time`, `train_accuracy`,
    /// `validation_accuracy`, `test_accuracy`), followed by `module_hash`,
    /// `epochs`, `repeat` (1-based) and `stop_halfway`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = self.fixed.to_json();
        v["training_time"] = self.point.training_time.into();
        v["train_accuracy"] = self.point.train_accuracy.into();
        v["validation_accuracy"] = self.point.validation_accuracy.into();
        v["test_accuracy"] = self.point.test_accuracy.into();
        v["module_hash"] = self.fixed.hash.to_hex().into();
        v["epochs"] = self.epochs.into();
        v["repeat"] = (self.repeat + 1).into();
        v["stop_halfway"] = self.stop_halfway.into();
        v
    }
}

/// Where the answers come from. The index is not boxed: it is what the
/// hot path reads on every query.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Store {
    Memory(Index),
    #[cfg(feature = "duckdb")]
    Lazy(Box<Lazy>),
}

/// The dataset opened for queries: the original `NASBench` object.
#[derive(Debug)]
pub struct NasBench {
    store: Store,
    domain: Domain,
    sampler: Sampler,
}

/// The repeat sampler and the budget counters.
#[derive(Debug)]
struct Sampler {
    rng: SplitMix64,
    training_time_spent: f64,
    total_epochs_spent: u64,
}

impl Sampler {
    /// [`Sampler::take`] for cell `cell` at budget index `b` of the index.
    fn take_indexed(
        &mut self,
        ix: &Index,
        cell: usize,
        b: usize,
        epochs: u32,
        stop_halfway: bool,
    ) -> Result<QueryResult, ApiError> {
        self.take(epochs, stop_halfway, |r| {
            Ok((
                ix.fixed(cell),
                ix.repeat_count(cell, b),
                ix.run(cell, b, r)?,
            ))
        })
    }

    /// Draws the repeat, picks the point, advances the counters. `run`
    /// gives the cell, its repeat count and the drawn run.
    fn take(
        &mut self,
        epochs: u32,
        stop_halfway: bool,
        run: impl FnOnce(usize) -> Result<(FixedStats, usize, Option<RunMetrics>), ApiError>,
    ) -> Result<QueryResult, ApiError> {
        let r = self.rng.below(NUM_REPEATS as u64) as usize;
        let (fixed, found, metrics) = run(r)?;
        let metrics = metrics.ok_or_else(|| ApiError::MissingRepeat {
            hash: fixed.hash,
            epochs,
            found,
            sampled: r + 1,
        })?;
        let point = if stop_halfway {
            metrics.halfway
        } else {
            metrics.last
        };
        self.training_time_spent += point.training_time.unwrap_or(0.0);
        self.total_epochs_spent += u64::from(if stop_halfway { epochs / 2 } else { epochs });
        Ok(QueryResult {
            fixed,
            epochs,
            repeat: r,
            stop_halfway,
            point,
        })
    }
}

/// Whether `path` is a DuckDB database file (its header's magic at byte
/// 8); anything else that is a file is read as a release TFRecord file.
pub fn is_duckdb_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 12];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head[8..12] == b"DUCK")
}

/// Where the index of release file `path` is cached when the file's own
/// folder is not writable: `$XDG_CACHE_HOME/nasbench` (else
/// `~/.cache/nasbench`), named by the file's name and a checksum of its
/// absolute path. The index header records the file's size and
/// modification time, so a changed file is never served from it.
pub fn release_cache_path(path: &Path) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let abs = std::fs::canonicalize(path).ok()?;
    let name = abs.file_name()?.to_string_lossy().into_owned();
    let key = crc32c::crc32c(abs.as_os_str().as_encoded_bytes());
    Some(base.join("nasbench").join(format!("{name}-{key:08x}.qidx")))
}

/// Opens the index of release TFRecord file `path`: a fresh one beside the
/// file (`<file>.qidx`) or in [`release_cache_path`], else builds it from
/// the file (calling `building` with where it goes first) and writes it
/// beside the file when that folder is writable, else to the cache.
pub fn open_release(path: &Path, building: impl FnOnce(&Path)) -> Result<Index, ApiError> {
    let source = vec![SourceFile::of(path)?];
    let beside = crate::output::sidecar(path, ".qidx");
    let cached = release_cache_path(path);
    for p in std::iter::once(&beside).chain(cached.as_ref()) {
        if let Some(ix) = Index::open_fresh(p, &source)? {
            return Ok(ix);
        }
    }
    let dir = crate::output::parent_dir(path);
    let writable = tempfile::tempfile_in(dir).is_ok();
    building(if writable {
        &beside
    } else {
        cached.as_ref().unwrap_or(&beside)
    });
    let mut ix = Index::build_from_release(path, source, writable.then_some(beside.as_path()))?;
    // Not written beside the file (read-only folder, or something else in
    // the index's place): the user's cache.
    if ix.path.is_none()
        && let Some(c) = &cached
    {
        let _ = c.parent().map(std::fs::create_dir_all);
        if let Err(e) = ix.save_as(c) {
            ix.write_error = Some(e);
        }
    }
    Ok(ix)
}

/// The query index of a database, a Parquet directory or a release
/// TFRecord file: mapped when a fresh one exists (and read ahead), else
/// built (calling `building` with where it goes first) and written beside
/// the source (a release file's in [`release_cache_path`] when its folder
/// is not writable).
pub fn open_index(path: &Path, building: impl FnOnce(&Path)) -> Result<Index, ApiError> {
    if path.is_file() && !is_duckdb_file(path) {
        // No read-ahead: lookups fault in the few pages they touch.
        return open_release(path, building);
    }
    let (source, index_path) = index_location(path)?;
    match Index::open_fresh(&index_path, &source)? {
        Some(ix) => {
            ix.read_ahead_all();
            Ok(ix)
        }
        None => {
            building(&index_path);
            build_index(path, source, &index_path)
        }
    }
}

/// Builds the index of a database, Parquet directory or release file.
fn build_index(path: &Path, source: Vec<SourceFile>, index_path: &Path) -> Result<Index, ApiError> {
    if path.is_file() && !is_duckdb_file(path) {
        return Index::build_from_release(path, source, Some(index_path));
    }
    #[cfg(feature = "duckdb")]
    {
        let lazy = Lazy::open(path)?;
        Index::build(lazy.connection(), source, Some(index_path))
    }
    #[cfg(not(feature = "duckdb"))]
    Err(ApiError::Source {
        path: path.display().to_string(),
        message: format!(
            "its query index {} is missing or out of date, and rebuilding it from a database \
             needs DuckDB: run `nasbench ingest` again, or any `nasbench query --db` on it",
            index_path.display()
        ),
    })
}

/// The files whose state an index of `path` depends on, and where its
/// index lives: `<db>.qidx` beside a database, `query.qidx` in a Parquet
/// directory.
pub fn index_location(path: &Path) -> Result<(Vec<SourceFile>, PathBuf), ApiError> {
    if path.is_dir() {
        let files = ["models.parquet", "evaluations.parquet"]
            .iter()
            .map(|f| SourceFile::of(&path.join(f)))
            .collect::<Result<_, _>>()?;
        Ok((files, path.join("query.qidx")))
    } else {
        let mut files = vec![SourceFile::of(path)?];
        if let Ok(f) = SourceFile::of(&crate::output::sidecar(path, ".wal")) {
            files.push(f);
        }
        Ok((files, crate::output::sidecar(path, ".qidx")))
    }
}

impl NasBench {
    fn with_store(store: Store, seed: Option<u64>) -> NasBench {
        NasBench {
            store,
            domain: Domain::default(),
            sampler: Sampler {
                rng: seed.map_or_else(SplitMix64::from_entropy, SplitMix64::new),
                training_time_spent: 0.0,
                total_epochs_spent: 0,
            },
        }
    }

    /// Opens `path` (a database from `nasbench ingest`, or its Parquet
    /// directory) fully in memory: maps its index if one is fresh, else
    /// builds it from the data (seconds for the full dataset) and writes it
    /// beside the source for next time. `seed` fixes the sampled repeats
    /// (`None`: seeded from the clock, like the original's default).
    pub fn in_memory(path: &Path, seed: Option<u64>) -> Result<NasBench, ApiError> {
        Self::in_memory_notify(path, seed, |_| {})
    }

    /// [`NasBench::in_memory`], calling `building` with the index path
    /// before a build starts (so that a CLI can say why it waits).
    pub fn in_memory_notify(
        path: &Path,
        seed: Option<u64>,
        building: impl FnOnce(&Path),
    ) -> Result<NasBench, ApiError> {
        Ok(Self::with_store(
            Store::Memory(open_index(path, building)?),
            seed,
        ))
    }

    /// Answers from an index already opened (for example with
    /// [`Index::open_fresh`]).
    pub fn from_index(index: Index, seed: Option<u64>) -> NasBench {
        Self::with_store(Store::Memory(index), seed)
    }

    /// Opens `path` lazily: every call is a point query against DuckDB.
    #[cfg(feature = "duckdb")]
    pub fn lazy(path: &Path, seed: Option<u64>) -> Result<NasBench, ApiError> {
        Ok(Self::with_store(
            Store::Lazy(Box::new(Lazy::open(path)?)),
            seed,
        ))
    }

    /// Opens `path` in memory if a fresh index exists (no build), else
    /// lazily: the fastest start for a few queries.
    pub fn open_fast(path: &Path, seed: Option<u64>) -> Result<NasBench, ApiError> {
        let (source, index_path) = index_location(path)?;
        match Index::open_fresh(&index_path, &source)? {
            Some(ix) => Ok(Self::with_store(Store::Memory(ix), seed)),
            #[cfg(feature = "duckdb")]
            None => Self::lazy(path, seed),
            #[cfg(not(feature = "duckdb"))]
            None => Ok(Self::with_store(
                Store::Memory(build_index(path, source, &index_path)?),
                seed,
            )),
        }
    }

    /// The in-memory index, when open in memory.
    pub fn index(&self) -> Option<&Index> {
        match &self.store {
            Store::Memory(ix) => Some(ix),
            #[cfg(feature = "duckdb")]
            Store::Lazy(_) => None,
        }
    }

    /// The limits specs are checked against (NAS-Bench-101's).
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// Budgets present in the data (the original's `valid_epochs`), ascending.
    pub fn valid_epochs(&mut self) -> Result<Vec<u32>, ApiError> {
        match &mut self.store {
            Store::Memory(ix) => Ok(ix.budgets().to_vec()),
            #[cfg(feature = "duckdb")]
            Store::Lazy(lz) => Ok(lz.budgets()?.to_vec()),
        }
    }

    fn invalid_epochs(&mut self, epochs: u32) -> ApiError {
        let order = match &mut self.store {
            Store::Memory(ix) => Ok(ix.budget_order().to_vec()),
            #[cfg(feature = "duckdb")]
            Store::Lazy(lz) => lz.budget_order().map(<[u32]>::to_vec),
        };
        match order {
            Ok(order) => ApiError::InvalidEpochs {
                epochs,
                valid: python_set_order(&order),
            },
            Err(e) => e,
        }
    }

    /// `Ok` when `epochs` is a budget of the data, else the original's
    /// `invalid number of epochs` error.
    pub fn check_epochs(&mut self, epochs: u32) -> Result<(), ApiError> {
        self.require_epochs(epochs)
    }

    fn require_epochs(&mut self, epochs: u32) -> Result<(), ApiError> {
        if self.valid_epochs()?.contains(&epochs) {
            Ok(())
        } else {
            Err(self.invalid_epochs(epochs))
        }
    }

    /// The original's `query(model_spec, epochs, stop_halfway)`: one
    /// uniformly sampled repeat of the cell at `epochs`, its final (or
    /// halfway) evaluation, and the budget counters advanced.
    pub fn query(
        &mut self,
        spec: &ModelSpec,
        epochs: u32,
        stop_halfway: bool,
    ) -> Result<QueryResult, ApiError> {
        match &self.store {
            Store::Memory(ix) => {
                let b = memory_budget(ix, epochs)?;
                spec.check(&self.domain)?;
                let cell = find_spec(ix, spec)?;
                self.sampler.take_indexed(ix, cell, b, epochs, stop_halfway)
            }
            #[cfg(feature = "duckdb")]
            Store::Lazy(_) => {
                if let Err(e) = spec.check(&self.domain) {
                    self.require_epochs(epochs)?;
                    return Err(e.into());
                }
                let hash = spec.hash()?;
                self.query_lazy(hash, epochs, stop_halfway)
            }
        }
    }

    /// [`NasBench::query`] for a cell given by its hash (no spec checks).
    pub fn query_hash(
        &mut self,
        hash: &ModelHash,
        epochs: u32,
        stop_halfway: bool,
    ) -> Result<QueryResult, ApiError> {
        match &self.store {
            Store::Memory(ix) => {
                let b = memory_budget(ix, epochs)?;
                // The cell's and its runs' lines load while the bucket is
                // searched.
                ix.prefetch_cell(hash, b);
                let cell = ix.find_hash(hash)?.ok_or(ApiError::UnknownHash(*hash))?;
                self.sampler.take_indexed(ix, cell, b, epochs, stop_halfway)
            }
            #[cfg(feature = "duckdb")]
            Store::Lazy(_) => self.query_lazy(*hash, epochs, stop_halfway),
        }
    }

    /// [`NasBench::query_hash`] for each of `hashes` in turn: the same
    /// answers, errors, draws and counters as that many calls, in order.
    /// In memory, the lookups are software-pipelined (the bucket of a query
    /// a few places ahead, then its cell and run lines, are prefetched), so
    /// their cache misses overlap instead of following one another: for
    /// search loops that score a population at a time.
    #[cfg_attr(not(feature = "duckdb"), allow(irrefutable_let_patterns))]
    pub fn query_hashes(
        &mut self,
        hashes: &[ModelHash],
        epochs: u32,
        stop_halfway: bool,
    ) -> Vec<Result<QueryResult, ApiError>> {
        /// How far ahead the bucket and the cell are fetched.
        const BUCKET_AHEAD: usize = 32;
        const CELL_AHEAD: usize = 16;
        let Store::Memory(ix) = &self.store else {
            return hashes
                .iter()
                .map(|h| self.query_hash(h, epochs, stop_halfway))
                .collect();
        };
        let Some(b) = ix.budget_index(epochs) else {
            return hashes
                .iter()
                .map(|_| Err(invalid_epochs(ix, epochs)))
                .collect();
        };
        for h in hashes.iter().take(BUCKET_AHEAD) {
            ix.prefetch_bucket(h);
        }
        for h in hashes.iter().take(CELL_AHEAD) {
            ix.prefetch_cell(h, b);
        }
        let mut out = Vec::with_capacity(hashes.len());
        for (k, hash) in hashes.iter().enumerate() {
            if let Some(h) = hashes.get(k + BUCKET_AHEAD) {
                ix.prefetch_bucket(h);
            }
            if let Some(h) = hashes.get(k + CELL_AHEAD) {
                ix.prefetch_cell(h, b);
            }
            out.push(match ix.find_hash(hash) {
                Ok(Some(cell)) => self.sampler.take_indexed(ix, cell, b, epochs, stop_halfway),
                Ok(None) => Err(ApiError::UnknownHash(*hash)),
                Err(e) => Err(e),
            });
        }
        out
    }

    #[cfg(feature = "duckdb")]
    fn query_lazy(
        &mut self,
        hash: ModelHash,
        epochs: u32,
        stop_halfway: bool,
    ) -> Result<QueryResult, ApiError> {
        let Store::Lazy(lz) = &mut self.store else {
            unreachable!()
        };
        let Some(cell) = lz.cell(&hash)? else {
            self.require_epochs(epochs)?;
            return Err(ApiError::UnknownHash(hash));
        };
        if !cell.computed.contains_key(&epochs) {
            // A budget of the file that this cell lacks: the original draws
            // the repeat, then fails to index it (so does the sampler).
            self.require_epochs(epochs)?;
        }
        let runs = cell.computed.get(&epochs).map_or(&[][..], Vec::as_slice);
        self.sampler.take(epochs, stop_halfway, |r| {
            Ok((cell.fixed, runs.len(), runs.get(r).copied()))
        })
    }

    /// The original's `is_valid`: the pruned spec is inside the dataset's
    /// space (the counters are not touched).
    pub fn is_valid(&self, spec: &ModelSpec) -> bool {
        spec.is_valid(&self.domain)
    }

    /// The original's `get_budget_counters()`: (training seconds, epochs).
    pub fn get_budget_counters(&self) -> (f64, u64) {
        (
            self.sampler.training_time_spent,
            self.sampler.total_epochs_spent,
        )
    }

    /// The original's `reset_budget_counters()`.
    pub fn reset_budget_counters(&mut self) {
        self.sampler.training_time_spent = 0.0;
        self.sampler.total_epochs_spent = 0;
    }

    /// The original's `get_metrics_from_hash`: fixed and computed stats,
    /// counters untouched.
    pub fn get_metrics_from_hash(&mut self, hash: &ModelHash) -> Result<CellMetrics, ApiError> {
        match &mut self.store {
            Store::Memory(ix) => {
                let cell = ix.find_hash(hash)?.ok_or(ApiError::UnknownHash(*hash))?;
                cell_metrics(ix, cell)
            }
            #[cfg(feature = "duckdb")]
            Store::Lazy(lz) => lz.cell(hash)?.ok_or(ApiError::UnknownHash(*hash)),
        }
    }

    /// The original's `get_metrics_from_spec`: checks and hashes the spec,
    /// then [`NasBench::get_metrics_from_hash`].
    #[cfg_attr(not(feature = "duckdb"), allow(irrefutable_let_patterns))]
    pub fn get_metrics_from_spec(&mut self, spec: &ModelSpec) -> Result<CellMetrics, ApiError> {
        spec.check(&self.domain)?;
        if let Store::Memory(ix) = &self.store {
            let cell = find_spec(ix, spec)?;
            return cell_metrics(ix, cell);
        }
        let hash = spec.hash()?;
        self.get_metrics_from_hash(&hash)
    }

    /// The original's `hash_iterator()`: every cell's hash, in hash order.
    pub fn hash_iterator(&self) -> Result<Box<dyn Iterator<Item = ModelHash> + '_>, ApiError> {
        match &self.store {
            Store::Memory(ix) => {
                ix.verify_all()?;
                Ok(Box::new((0..ix.len()).map(|i| ix.hash(i))))
            }
            #[cfg(feature = "duckdb")]
            Store::Lazy(lz) => Ok(Box::new(lz.hashes()?.into_iter())),
        }
    }
}

/// The position of `epochs` among the index's budgets.
fn memory_budget(ix: &Index, epochs: u32) -> Result<usize, ApiError> {
    ix.budget_index(epochs)
        .ok_or_else(|| invalid_epochs(ix, epochs))
}

fn invalid_epochs(ix: &Index, epochs: u32) -> ApiError {
    ApiError::InvalidEpochs {
        epochs,
        valid: python_set_order(ix.budget_order()),
    }
}

/// The cell of a checked spec: by its canonical key when that is exact
/// (always, for the NAS-Bench-101 space), else by its MD5 hash.
pub fn find_spec(ix: &Index, spec: &ModelSpec) -> Result<usize, ApiError> {
    let (Some(matrix), Ok(labels)) = (spec.matrix(), spec.labels(&ix_ops())) else {
        return Err(OutOfDomain::Disconnected.into());
    };
    if ix.keys_unique()
        && let Some(g) = LabeledGraph::from_parts(matrix, &labels)
    {
        return ix.find_key(canonical_key(&g))?.ok_or_else(|| {
            spec.hash()
                .map_or_else(ApiError::from, ApiError::UnknownHash)
        });
    }
    let hash = spec.hash()?;
    ix.find_hash(&hash)?.ok_or(ApiError::UnknownHash(hash))
}

/// The dataset's interior ops in label order.
fn ix_ops() -> [&'static str; 3] {
    [0, 1, 2].map(|l| label_name(l).unwrap_or("?"))
}

/// Every run of a verified cell, each checked as it is read.
pub fn cell_metrics(ix: &Index, cell: usize) -> Result<CellMetrics, ApiError> {
    let mut computed = BTreeMap::new();
    for (b, &e) in ix.budgets().iter().enumerate() {
        let n = ix.repeat_count(cell, b);
        if n == 0 {
            continue;
        }
        let mut runs = Vec::with_capacity(n);
        for r in 0..n {
            runs.extend(ix.run(cell, b, r)?);
        }
        computed.insert(e, runs);
    }
    Ok(CellMetrics {
        fixed: ix.fixed(cell),
        computed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_set_repr() {
        assert_eq!(python_set(&[108]), "{108}");
        assert_eq!(python_set(&[108, 4, 12, 36]), "{108, 4, 12, 36}");
    }

    /// Orders printed by CPython 3.11 for these insertion orders
    /// (`s = set(); [s.add(e) for e in order]; print(s)`).
    #[test]
    fn python_set_order_matches_cpython() {
        let cases: [(&[u32], &[u32]); 7] = [
            (&[4, 12, 36, 108], &[108, 4, 12, 36]),
            (&[12, 4, 36, 108], &[108, 12, 4, 36]),
            (&[36, 12, 4, 108], &[108, 4, 36, 12]),
            (&[108, 4, 12, 36], &[12, 108, 4, 36]),
            (&[108, 12, 4, 36], &[4, 108, 12, 36]),
            (&[108], &[108]),
            (&[1, 9, 17, 25, 33, 2, 3], &[1, 33, 2, 3, 9, 17, 25]),
        ];
        for (insertion, printed) in cases {
            assert_eq!(python_set_order(insertion), printed, "{insertion:?}");
        }
    }
}
