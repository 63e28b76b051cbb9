//! The in-memory query index: the dataset's cells and runs as flat columnar arrays in one file, memory-mapped.
//!
//! Reading 15 million evaluation rows out of DuckDB takes seconds, so
//! `nasbench ingest` (or else the first in-memory open) builds this file
//! beside the source (`<db>.qidx`, or `query.qidx` in a Parquet directory)
//! and later opens map it in milliseconds. It is rebuilt whenever the source's files change size or
//! modification time. Layout (little-endian, every section 8-aligned):
//!
//! ```text
//! "NBQIDX06" | u64 header length | u32 CRC32C of the block table | pad |
//!          u32 CRC32C of bytes 8..24 and the header | pad |
//!          JSON header (with "version": 6) | pad
//! buckets  [2^bits + 1]u32  buckets[k]..buckets[k+1]: the cells whose hash
//!                   starts with the bits-bit prefix k (about one per bucket)
//! cells    [n][64]  one cache line per cell, sorted by hash: the hash
//!                   (16 big-endian MD5 bytes, = hex order), vertices,
//!                   7 row masks, 7 labels (i8), pad, trainable parameters
//!                   (i64, i64::MIN = NULL), repeats present per budget
//!                   (8 x u8), u32 CRC32C of the rest of the line, pad,
//!                   the cell's canonical key (u64, at byte 56)
//! metrics  [n] per cell: [b][r][8]f32 or f64 (the header's value_bytes)
//!                   halfway then final (time, train, valid, test), NaN =
//!                   NULL; then [b][r]u32 the CRC32C of each run; the
//!                   stride padded to whole cache lines, so no run
//!                   straddles two. f32 when every value of the source is
//!                   an f32 exactly (the release's are: TensorFlow's float32
//!                   results stored as doubles), which halves the section
//!                   losslessly; f64 otherwise
//! keys     [n]u64   canonical keys (generate::canonical_key), sorted
//! key_cell [n]u32   the cell of each key
//! order    [n]u32   the cells in the order they first appear in the
//!                   source (`hash_iterator`'s order) (pad)
//! blocks   []u32    CRC32C of each 64 KiB block of the buckets, then of
//!                   keys, key_cell and order together (the last block of each
//!                   shorter)
//! ```
//!
//! Nothing is trusted before it is checked: the preamble and header by
//! their checksum and by bounds on every field (a file of another version,
//! a truncated or extended one, or one whose sections do not fit, does not
//! open), the block table by its checksum at open, each 64 KiB block of
//! buckets and keys by its checksum when a lookup first reads it (once per
//! open), each cell line by its checksum when a lookup first reads it (once
//! per open), and each run line by its own checksum whenever it is read. A
//! query reads a few blocks and three lines (cell, run, run checksums), not
//! the whole file, and a corrupt byte is an error naming the file, never a
//! wrong answer.
//!
//! No per-cell heap objects: a lookup by hash reads one bucket pair, then
//! the cell's line (which holds its hash) and the run's line, whose
//! addresses are both known from the bucket, so the two memory accesses
//! overlap; a spec goes through a hash table of the canonical keys.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(feature = "duckdb")]
use ::duckdb::Connection;
use serde::{Deserialize, Serialize};

use super::{ApiError, FixedStats, Point, RunMetrics};
use crate::cell::generate::{LabeledGraph, MAX_VERTICES};
use crate::cell::graph::ModelHash;
use crate::prefetch_line;

#[cfg(feature = "duckdb")]
mod duckdb;
mod release;
mod write;

#[cfg(feature = "duckdb")]
pub(crate) use write::graph_of;
pub use write::{CellIn, Writer};

const MAGIC: &[u8; 8] = b"NBQIDX06";
/// The format version, also in the header.
const VERSION: u32 = 6;
/// Bytes before the JSON header.
const PREAMBLE: usize = 32;
/// Offset of a cell line's checksum.
const CELL_CRC: usize = 48;
/// Offset of the canonical key in a cell line (so that a lookup by key
/// reads the line it needs anyway, not the key sections).
const CELL_KEY: usize = 56;
/// Bytes of the bucket and key sections under one checksum: a one-shot
/// lookup reads one bucket block, or the about 10 key blocks a binary
/// search touches.
const BLOCK: usize = 64 * 1024;
/// Values per run: halfway then final (training time, train, validation, test).
const VALUES: usize = 8;
/// Bytes of a cell record.
const CELL_BYTES: usize = 64;
/// Most budgets a cell record counts repeats for.
const MAX_BUDGETS: usize = 8;

/// One file the index was built from, as it was then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// File name: the index lies beside its sources, so the name
    /// identifies a source however its path was spelled (relative,
    /// absolute, through a link).
    pub path: String,
    /// Size in bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: u128,
}

impl SourceFile {
    /// The current state of `path`.
    pub fn of(path: &Path) -> Result<SourceFile, ApiError> {
        let meta = std::fs::metadata(path).map_err(|e| ApiError::io(path, e))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let name = path.file_name().unwrap_or(path.as_os_str());
        Ok(SourceFile {
            path: name.to_string_lossy().into_owned(),
            len: meta.len(),
            mtime_ns,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    /// [`VERSION`].
    version: u32,
    cells: usize,
    /// Bits of the hash prefix that numbers the buckets.
    bucket_bits: u32,
    budgets: Vec<u32>,
    /// The budgets in the order they first appear in the data.
    budget_order: Vec<u32>,
    repeats: usize,
    /// Whether every cell has its own canonical key (true for the
    /// NAS-Bench-101 space); when false, lookups by spec hash with MD5.
    keys_unique: bool,
    /// Bytes of each stored metric value: 4 (f32) when every value of the
    /// source is an f32 exactly, else 8 (f64).
    value_bytes: usize,
    source: Vec<SourceFile>,
}

/// Byte offsets of the sections.
#[derive(Debug, Clone, Copy)]
struct Layout {
    buckets: usize,
    cells: usize,
    metrics: usize,
    keys: usize,
    key_cells: usize,
    order: usize,
    /// End of the key sections (`key_cell` padded).
    keys_end: usize,
    /// The block table, and the number of bucket blocks at its start.
    blocks: usize,
    bucket_blocks: usize,
    key_blocks: usize,
    end: usize,
    /// Budgets and repeats per cell: the shape of the metrics section.
    budgets: usize,
    repeats: usize,
    /// Bytes of one cell's metrics: its runs, then their checksums.
    stride: usize,
    /// Bytes of one stored value (4 or 8).
    value_bytes: usize,
}

fn align8(x: usize) -> usize {
    x.div_ceil(8) * 8
}

impl Layout {
    /// The sections of an index whose header ends at `start`; `None` when
    /// they would not fit in memory (a header that lies).
    fn new(start: usize, h: &Header) -> Option<Layout> {
        let (n, b, r) = (h.cells, h.budgets.len(), h.repeats);
        if h.bucket_bits > 24 {
            return None;
        }
        let buckets = align8(start);
        let cells = buckets
            .checked_add(((1usize << h.bucket_bits) + 1) * 4)?
            .div_ceil(64)
            .checked_mul(64)?;
        let metrics = cells.checked_add(n.checked_mul(CELL_BYTES)?)?;
        let runs = b.checked_mul(r)?;
        let vb = h.value_bytes;
        let stride = runs
            .checked_mul(VALUES * vb + 4)?
            .div_ceil(64)
            .checked_mul(64)?;
        let keys = metrics.checked_add(n.checked_mul(stride)?)?;
        let key_cells = keys.checked_add(n.checked_mul(8)?)?;
        let order = key_cells.checked_add(n.checked_mul(4)?)?;
        let keys_end = align8(order.checked_add(n.checked_mul(4)?)?);
        let bucket_blocks = (cells - buckets).div_ceil(BLOCK);
        let key_blocks = (keys_end - keys).div_ceil(BLOCK);
        let count = bucket_blocks + key_blocks;
        let end = align8(keys_end.checked_add(count.checked_mul(4)?)?);
        Some(Layout {
            buckets,
            cells,
            metrics,
            keys,
            key_cells,
            order,
            keys_end,
            blocks: keys_end,
            bucket_blocks,
            key_blocks,
            end,
            budgets: b,
            repeats: r,
            stride,
            value_bytes: vb,
        })
    }

    /// Block `k` of the table: its byte range.
    fn block(&self, k: usize) -> std::ops::Range<usize> {
        let (start, end, j) = if k < self.bucket_blocks {
            (self.buckets, self.cells, k)
        } else {
            (self.keys, self.keys_end, k - self.bucket_blocks)
        };
        let from = start + j * BLOCK;
        from..(from + BLOCK).min(end)
    }

    /// The block holding byte `o` of the bucket or key sections.
    fn block_of(&self, o: usize) -> usize {
        if o < self.cells {
            (o - self.buckets) / BLOCK
        } else {
            self.bucket_blocks + (o - self.keys) / BLOCK
        }
    }

    /// Blocks in the table.
    fn block_count(&self) -> usize {
        self.bucket_blocks + self.key_blocks
    }

    /// Bytes of one run: [`VALUES`] values.
    fn run_bytes(&self) -> usize {
        VALUES * self.value_bytes
    }

    /// Offset of run `r` (0-based) of cell `i` at budget index `b`, within
    /// one cache line.
    fn run(&self, i: usize, b: usize, r: usize) -> usize {
        self.metrics + i * self.stride + (b * self.repeats + r) * self.run_bytes()
    }

    /// Offset of the checksum of that run.
    fn run_crc(&self, i: usize, b: usize, r: usize) -> usize {
        let runs = self.budgets * self.repeats;
        self.metrics + i * self.stride + runs * self.run_bytes() + (b * self.repeats + r) * 4
    }
}

/// The index's bytes: a mapped file or a buffer built in this process.
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// The dataset's cells and runs as flat arrays (see the module docs).
pub struct Index {
    bytes: Bytes,
    header: Header,
    layout: Layout,
    /// Where the index was read from or written to (`None`: memory only).
    pub path: Option<PathBuf>,
    /// Whether this open built it (rather than mapping a fresh file).
    pub built: bool,
    /// Why a built index could not be written to its file (it then works
    /// from memory only, and `path` is `None`).
    pub write_error: Option<String>,
    /// The cells that passed [`Index::verify_cell`]: the mapping never
    /// changes, so a cell is checked once per open.
    verified: Checked,
    /// The same for the blocks of the bucket and key sections.
    blocks_verified: Checked,
    /// The cells by canonical key, built (and the key sections checked)
    /// at the first key lookup.
    key_table: std::sync::OnceLock<KeyTable>,
}

/// An open-addressing hash table (linear probing, at most half full) of
/// the cells by canonical key, each plus one (0 is an empty slot): a
/// lookup by key reads a slot, then the cell's line (which holds its key),
/// where a search of the sorted keys would wait on a chain of cache
/// misses.
struct KeyTable {
    slots: Vec<u32>,
    shift: u32,
}

impl KeyTable {
    fn slot(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }
}

/// One bit per item (cell or block) that passed its check, set from any
/// thread.
struct Checked(Box<[AtomicU64]>);

impl Checked {
    fn new(items: usize) -> Checked {
        Checked((0..items.div_ceil(64)).map(|_| AtomicU64::new(0)).collect())
    }

    fn contains(&self, k: usize) -> bool {
        self.0[k / 64].load(Ordering::Relaxed) & (1 << (k % 64)) != 0
    }

    fn insert(&self, k: usize) {
        self.0[k / 64].fetch_or(1 << (k % 64), Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("cells", &self.header.cells)
            .field("budgets", &self.header.budgets)
            .field("path", &self.path)
            .finish()
    }
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[o..o + 4]);
    u32::from_le_bytes(a)
}

/// Bounds on every header field that a lookup relies on.
fn header_is_sane(h: &Header) -> bool {
    let budgets_ascending = h.budgets.windows(2).all(|w| w[0] < w[1]);
    let mut order = h.budget_order.clone();
    order.sort_unstable();
    h.version == VERSION
        && h.cells < u32::MAX as usize
        && (8..=24).contains(&h.bucket_bits)
        && h.budgets.len() <= MAX_BUDGETS
        && budgets_ascending
        && order == h.budgets
        && h.repeats <= usize::from(u8::MAX)
        && matches!(h.value_bytes, 4 | 8)
}

/// The checksum of cell line `line`, its checksum field left out.
fn cell_crc(line: &[u8]) -> u32 {
    let c = crc32c::crc32c(&line[..CELL_CRC]);
    crc32c::crc32c_append(c, &line[CELL_CRC + 4..])
}

/// Value `k` of a run stored with `width`-byte values; NaN is NULL.
fn value_at(run: &[u8], k: usize, width: usize) -> Option<f64> {
    let v = if width == 4 {
        f64::from(f32::from_bits(u32_at(run, k * 4)))
    } else {
        f64::from_bits(u64_at(run, k * 8))
    };
    (!v.is_nan()).then_some(v)
}

impl Index {
    /// Maps the index at `path` if it exists and was built from exactly
    /// `source` (same files, sizes and modification times); `Ok(None)`
    /// when it is missing, stale, or unreadable as an index. Mapping is
    /// instant; pages are read on first touch and shared through the page
    /// cache between processes.
    pub fn open_fresh(path: &Path, source: &[SourceFile]) -> Result<Option<Index>, ApiError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ApiError::io(path, e)),
        };
        // Something else in its place (a directory) is no index either.
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Ok(None);
        }
        // SAFETY: the index is only ever replaced by rename (never written
        // in place), so the mapped file does not change under us.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ApiError::io(path, e))?;
        // Lookups touch a few scattered pages: without this advice each
        // first touch reads ahead the device's whole read-ahead window
        // (8 MiB here), 23 MB for one cold query instead of a few pages.
        let _ = map.advise(memmap2::Advice::Random);
        let bytes = Bytes::Mapped(map);
        match Index::from_bytes(bytes) {
            Some(mut ix) if ix.header.source == source => {
                ix.path = Some(path.to_path_buf());
                Ok(Some(ix))
            }
            _ => Ok(None),
        }
    }

    /// Checks the preamble, the header, the layout against the file's size
    /// and the block table; `None` when anything is off (the caller
    /// rebuilds).
    fn from_bytes(bytes: Bytes) -> Option<Index> {
        if bytes.len() < PREAMBLE || &bytes[..8] != MAGIC {
            return None;
        }
        let hlen = usize::try_from(u64_at(&bytes, 8)).ok()?;
        let json = bytes.get(PREAMBLE..PREAMBLE.checked_add(hlen)?)?;
        let stored = u32_at(&bytes, 24);
        if crc32c::crc32c_append(crc32c::crc32c(&bytes[8..24]), json) != stored {
            return None;
        }
        let header: Header = serde_json::from_slice(json).ok()?;
        if !header_is_sane(&header) {
            return None;
        }
        let layout = Layout::new(PREAMBLE + hlen, &header)?;
        if bytes.len() != layout.end {
            return None;
        }
        if crc32c::crc32c(&bytes[layout.blocks..layout.end]) != u32_at(&bytes, 16) {
            return None;
        }
        let verified = Checked::new(header.cells);
        let blocks_verified = Checked::new(layout.block_count());
        Some(Index {
            bytes,
            header,
            layout,
            path: None,
            built: false,
            write_error: None,
            verified,
            blocks_verified,
            key_table: std::sync::OnceLock::new(),
        })
    }

    /// Builds the index from a connection whose `models` and `evaluations`
    /// hold a dataset, stamps it with `source`, and writes it to `path`
    /// (temporary name, then rename). If writing fails the index still
    /// works from memory: `path` is `None` and `write_error` says why.
    #[cfg(feature = "duckdb")]
    pub fn build(
        conn: &Connection,
        source: Vec<SourceFile>,
        path: Option<&Path>,
    ) -> Result<Index, ApiError> {
        Self::from_built(duckdb::build_bytes(conn, source)?, path)
    }

    /// Builds the index straight from a release TFRecord file (no DuckDB;
    /// see [`release`]'s rules), stamps it with `source`, and writes it to
    /// `path` as [`Index::build`] does.
    pub fn build_from_release(
        file: &Path,
        source: Vec<SourceFile>,
        path: Option<&Path>,
    ) -> Result<Index, ApiError> {
        Self::from_built(release::build_bytes(file, source)?, path)
    }

    /// Writes built bytes to `path` (temporary name, then rename) and opens
    /// them from memory.
    fn from_built(bytes: Vec<u8>, path: Option<&Path>) -> Result<Index, ApiError> {
        let mut ix = Index::from_bytes(Bytes::Owned(bytes)).ok_or_else(|| ApiError::Index {
            path: String::from("(memory)"),
            message: "built index does not read back".into(),
        })?;
        ix.built = true;
        if let Some(p) = path
            && let Err(e) = ix.save_as(p)
        {
            ix.write_error = Some(e);
        }
        Ok(ix)
    }

    /// Writes a built index to `p` (temporary name, then rename); on
    /// success `path` is `p` and `write_error` is cleared.
    pub fn save_as(&mut self, p: &Path) -> Result<(), String> {
        let bytes: &[u8] = &self.bytes;
        crate::output::write_atomically(p, |f| {
            f.write_all(bytes)
                .and_then(|()| f.sync_all())
                .map_err(|source| crate::output::ExportError::Io {
                    path: p.display().to_string(),
                    source,
                })
        })
        .map_err(|e| e.to_string())?;
        self.path = Some(p.to_path_buf());
        self.write_error = None;
        Ok(())
    }

    /// The cells in the order they first appear in the source (the
    /// original's `hash_iterator` order), every block checked.
    pub fn file_order(&self) -> Result<Vec<u32>, ApiError> {
        let n = self.header.cells;
        let mut out = Vec::with_capacity(n);
        for k in 0..n {
            let at = self.layout.order + k * 4;
            self.verify_block(at)?;
            let cell = u32_at(&self.bytes, at);
            if cell as usize >= n {
                return Err(self.corrupt("a cell number in the file order is out of range".into()));
            }
            out.push(cell);
        }
        Ok(out)
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.header.cells
    }

    /// Whether there are no cells.
    pub fn is_empty(&self) -> bool {
        self.header.cells == 0
    }

    /// Budgets present, ascending.
    pub fn budgets(&self) -> &[u32] {
        &self.header.budgets
    }

    /// Budgets in the order they first appear in the data.
    pub fn budget_order(&self) -> &[u32] {
        &self.header.budget_order
    }

    /// Most repeats of any (cell, budget).
    pub fn repeats(&self) -> usize {
        self.header.repeats
    }

    /// Position of `epochs` among the budgets.
    pub fn budget_index(&self, epochs: u32) -> Option<usize> {
        self.header.budgets.iter().position(|&e| e == epochs)
    }

    /// Whether lookups by canonical key are exact (see the index header).
    pub fn keys_unique(&self) -> bool {
        self.header.keys_unique
    }

    /// The hash of cell `i` (a cell that a find returned, or checked with
    /// [`Index::verify_cell`]).
    pub fn hash(&self, i: usize) -> ModelHash {
        let o = self.layout.cells + i * CELL_BYTES;
        let mut h = [0u8; 16];
        h.copy_from_slice(&self.bytes[o..o + 16]);
        ModelHash(h)
    }

    /// Bucket entry `k`, unchecked (for prefetch hints).
    fn bucket_hint(&self, k: usize) -> usize {
        u32_at(&self.bytes, self.layout.buckets + k * 4) as usize
    }

    /// Bucket entry `k`, its block verified.
    fn bucket(&self, k: usize) -> Result<usize, ApiError> {
        let o = self.layout.buckets + k * 4;
        self.verify_block(o)?;
        Ok(u32_at(&self.bytes, o) as usize)
    }

    /// Checks the block holding byte `o` of the bucket or key sections
    /// against its checksum, once per open.
    fn verify_block(&self, o: usize) -> Result<(), ApiError> {
        let k = self.layout.block_of(o);
        if self.blocks_verified.contains(k) {
            return Ok(());
        }
        let stored = u32_at(&self.bytes, self.layout.blocks + k * 4);
        if crc32c::crc32c(&self.bytes[self.layout.block(k)]) != stored {
            let what = if k < self.layout.bucket_blocks {
                "bucket"
            } else {
                "key"
            };
            return Err(self.corrupt(format!("{what} block {k} fails its checksum")));
        }
        self.blocks_verified.insert(k);
        Ok(())
    }

    fn bucket_of(&self, hash: &ModelHash) -> usize {
        (u128::from_be_bytes(hash.0) >> (128 - self.header.bucket_bits)) as usize
    }

    /// Checks cell `i`'s line against its checksum, and the fields a lookup
    /// reads against their bounds (once per open). Every lookup calls this
    /// before it uses a cell; a failure is an error naming the file.
    pub fn verify_cell(&self, i: usize) -> Result<(), ApiError> {
        if i >= self.header.cells {
            return Err(self.corrupt(format!(
                "cell {i} is out of range ({} cells)",
                self.header.cells
            )));
        }
        if self.verified.contains(i) {
            return Ok(());
        }
        let o = self.layout.cells + i * CELL_BYTES;
        let line = &self.bytes[o..o + CELL_BYTES];
        if cell_crc(line) != u32_at(line, CELL_CRC) {
            return Err(self.corrupt(format!("cell {i} fails its checksum")));
        }
        let counts_fit = line[40..40 + self.layout.budgets]
            .iter()
            .all(|&c| usize::from(c) <= self.layout.repeats);
        if !(2..=MAX_VERTICES as u8).contains(&line[16]) || !counts_fit {
            return Err(self.corrupt(format!("cell {i} holds out-of-range fields")));
        }
        self.verified.insert(i);
        Ok(())
    }

    /// Asks the kernel to read the whole file into the page cache in the
    /// background: for opens that will run many queries (a batch, a search
    /// loop), which then do not wait on the disk page by page.
    pub fn read_ahead_all(&self) {
        if let Bytes::Mapped(m) = &self.bytes {
            let _ = m.advise(memmap2::Advice::WillNeed);
        }
    }

    /// Checks every cell (what iterating over all of them reads).
    pub fn verify_all(&self) -> Result<(), ApiError> {
        // One pass over the cell lines: read them ahead in bulk.
        if let Bytes::Mapped(m) = &self.bytes {
            let _ = m.advise_range(
                memmap2::Advice::WillNeed,
                self.layout.cells,
                self.header.cells * CELL_BYTES,
            );
        }
        (0..self.header.cells).try_for_each(|i| self.verify_cell(i))
    }

    fn corrupt(&self, what: String) -> ApiError {
        ApiError::Index {
            path: self
                .path
                .as_ref()
                .map_or_else(|| "(memory)".into(), |p| p.display().to_string()),
            message: format!(
                "{what}: the file is corrupt; delete it and the next open rebuilds it"
            ),
        }
    }

    /// The cell with `hash`; every cell compared is verified first.
    pub fn find_hash(&self, hash: &ModelHash) -> Result<Option<usize>, ApiError> {
        let prefix = self.bucket_of(hash);
        let (lo, hi) = (self.bucket(prefix)?, self.bucket(prefix + 1)?);
        for i in lo..hi.min(self.header.cells) {
            self.verify_cell(i)?;
            let o = self.layout.cells + i * CELL_BYTES;
            if self.bytes[o..o + 16] == hash.0 {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Starts loading the bucket entry of `hash` (first step of
    /// [`Index::find_hash`]). Only a hint.
    #[inline]
    pub fn prefetch_bucket(&self, hash: &ModelHash) {
        prefetch_line(&self.bytes[self.layout.buckets + self.bucket_of(hash) * 4..]);
    }

    /// Starts loading what a query of `hash` at budget index `b` reads
    /// once its bucket is known: the first cell line of the bucket and its
    /// runs at `b` (the sampler has not drawn the repeat yet). Only a hint;
    /// out-of-range arguments do nothing.
    #[inline]
    pub fn prefetch_cell(&self, hash: &ModelHash, b: usize) {
        self.prefetch_runs(self.bucket_hint(self.bucket_of(hash)), b);
    }

    /// Starts loading cell `i`'s line and its runs at budget index `b`
    /// with their checksums, which a query reads once it has drawn the
    /// repeat: the loads overlap the draw instead of following it. Only a
    /// hint; out-of-range arguments do nothing.
    #[inline]
    pub fn prefetch_runs(&self, i: usize, b: usize) {
        if i >= self.header.cells || b >= self.header.budgets.len() {
            return;
        }
        prefetch_line(&self.bytes[self.layout.cells + i * CELL_BYTES..]);
        for r in 0..self.header.repeats {
            prefetch_line(&self.bytes[self.layout.run(i, b, r)..]);
        }
        if self.header.repeats > 0 {
            prefetch_line(&self.bytes[self.layout.run_crc(i, b, 0)..]);
        }
    }

    /// The cell whose canonical key is `key`; the key sections are
    /// verified (all of them, once per open, as the first lookup builds
    /// the key table), and so is every cell compared.
    pub fn find_key(&self, key: u64) -> Result<Option<usize>, ApiError> {
        self.find_key_prefetching(key, None)
    }

    /// [`Index::find_key`], which also asks for the runs at budget index
    /// `budget` of the first cell it compares (see
    /// [`Index::prefetch_runs`]): for a query, their loads then overlap
    /// the load of the cell itself.
    pub fn find_key_prefetching(
        &self,
        key: u64,
        budget: Option<usize>,
    ) -> Result<Option<usize>, ApiError> {
        let table = match self.key_table.get() {
            Some(t) => t,
            None => {
                let t = self.build_key_table()?;
                // Another thread may have set it first: the same table.
                self.key_table.get_or_init(|| t)
            }
        };
        let mut s = table.slot(key);
        if let (Some(b), Some(cell)) = (budget, table.slots[s].checked_sub(1)) {
            self.prefetch_runs(cell as usize, b);
        }
        loop {
            let Some(cell) = table.slots[s].checked_sub(1) else {
                return Ok(None);
            };
            let cell = cell as usize;
            self.verify_cell(cell)?;
            let o = self.layout.cells + cell * CELL_BYTES + CELL_KEY;
            if u64_at(&self.bytes, o) == key {
                return Ok(Some(cell));
            }
            s = (s + 1) & table.mask();
        }
    }

    /// Verifies every block of the key sections and hashes every key's
    /// cell into a [`KeyTable`].
    fn build_key_table(&self) -> Result<KeyTable, ApiError> {
        let (keys, end) = (self.layout.keys, self.layout.keys_end);
        for at in (keys..end).step_by(BLOCK) {
            self.verify_block(at)?;
        }
        let n = self.header.cells;
        let bits = (2 * n).next_power_of_two().trailing_zeros().max(4);
        let mut table = KeyTable {
            slots: vec![0; 1 << bits],
            shift: 64 - bits,
        };
        for at in 0..n {
            let mut s = table.slot(u64_at(&self.bytes, keys + at * 8));
            while table.slots[s] != 0 {
                s = (s + 1) & table.mask();
            }
            // The header bounds cells below u32::MAX; a cell out of range
            // is refused by `verify_cell` when a lookup reaches it.
            let cell = u32_at(&self.bytes, self.layout.key_cells + at * 4);
            table.slots[s] = cell.saturating_add(1);
        }
        Ok(table)
    }

    /// The stored form of cell `i` (a cell that a find returned, or
    /// checked with [`Index::verify_cell`]).
    pub fn fixed(&self, i: usize) -> FixedStats {
        let o = self.layout.cells + i * CELL_BYTES;
        let b = &self.bytes[o + 16..o + 32];
        let mut graph = LabeledGraph {
            n: b[0],
            rows: [0; MAX_VERTICES],
            labels: [0; MAX_VERTICES],
        };
        graph.rows.copy_from_slice(&b[1..8]);
        for (l, &x) in graph.labels.iter_mut().zip(&b[8..15]) {
            *l = x as i8;
        }
        let p = u64_at(&self.bytes, o + 32) as i64;
        FixedStats {
            hash: self.hash(i),
            graph,
            trainable_parameters: (p != i64::MIN).then_some(p),
        }
    }

    /// Repeats of cell `i` at budget index `b`.
    pub fn repeat_count(&self, i: usize, b: usize) -> usize {
        usize::from(self.bytes[self.layout.cells + i * CELL_BYTES + 40 + b])
    }

    /// Run `r` (0-based, file order) of cell `i` (a verified cell) at
    /// budget index `b`, its line checked against its checksum; `None`
    /// when the cell has fewer repeats.
    pub fn run(&self, i: usize, b: usize, r: usize) -> Result<Option<RunMetrics>, ApiError> {
        if r >= self.repeat_count(i, b) {
            return Ok(None);
        }
        let o = self.layout.run(i, b, r);
        let stored = u32_at(&self.bytes, self.layout.run_crc(i, b, r));
        let line = &self.bytes[o..o + self.layout.run_bytes()];
        if crc32c::crc32c(line) != stored {
            return Err(self.corrupt(format!(
                "cell {i}, budget {}, repeat {}: the run fails its checksum",
                self.header.budgets[b],
                r + 1
            )));
        }
        let w = self.layout.value_bytes;
        let point = |k: usize| Point {
            training_time: value_at(line, k * 4, w),
            train_accuracy: value_at(line, k * 4 + 1, w),
            validation_accuracy: value_at(line, k * 4 + 2, w),
            test_accuracy: value_at(line, k * 4 + 3, w),
        };
        Ok(Some(RunMetrics {
            halfway: point(0),
            last: point(1),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_sections_are_aligned_and_ordered() {
        let h = Header {
            version: VERSION,
            cells: 5,
            bucket_bits: 8,
            budgets: vec![4, 108],
            budget_order: vec![108, 4],
            repeats: 3,
            keys_unique: true,
            value_bytes: 8,
            source: vec![],
        };
        let l = Layout::new(37, &h).unwrap();
        let starts = [l.buckets, l.cells, l.metrics, l.keys, l.key_cells, l.end];
        assert!(starts.iter().all(|s| s % 8 == 0), "{l:?}");
        assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{l:?}");
        assert_eq!(l.metrics % 64, 0);
        assert_eq!(l.cells % 64, 0);
        assert!(l.buckets + 257 * 4 <= l.cells);
        // Six run lines and one line of their checksums per cell.
        assert_eq!(l.keys - l.metrics, 5 * (2 * 3 + 1) * 64);
        assert_eq!(l.run_crc(4, 1, 2), l.metrics + 4 * 7 * 64 + 6 * 64 + 5 * 4);
        assert!(l.cells + 5 * CELL_BYTES <= l.metrics);

        // f32 values: six 32-byte runs and their checksums in four lines.
        let narrow = Layout::new(
            37,
            &Header {
                value_bytes: 4,
                ..h
            },
        )
        .unwrap();
        assert_eq!(narrow.metrics, l.metrics);
        assert_eq!(narrow.keys - narrow.metrics, 5 * 4 * 64);
        assert_eq!(narrow.run(4, 1, 2), l.metrics + 4 * 256 + 5 * 32);
        assert_eq!(
            narrow.run_crc(4, 1, 2),
            l.metrics + 4 * 256 + 6 * 32 + 5 * 4
        );
        // No run straddles two cache lines, and the checksums follow the runs.
        for lay in [l, narrow] {
            for (i, b, r) in [(0, 0, 0), (3, 0, 2), (4, 1, 1)] {
                let o = lay.run(i, b, r);
                assert_eq!(o / 64, (o + lay.run_bytes() - 1) / 64, "{lay:?}");
                assert!(lay.run_crc(i, 1, 2) + 4 <= lay.metrics + (i + 1) * lay.stride);
            }
        }
    }

    /// The blocks tile the bucket and key sections exactly, for sizes
    /// whose tables end on and off an 8-byte boundary.
    #[test]
    fn blocks_tile_the_bucket_and_key_sections() {
        for cells in [0usize, 1, 40, 5_000, 423_624, 423_625, 1_000_003] {
            let h = Header {
                version: VERSION,
                cells,
                bucket_bits: (usize::BITS - cells.leading_zeros()).clamp(8, 24),
                budgets: vec![4, 12, 36, 108],
                budget_order: vec![108, 4, 12, 36],
                repeats: 3,
                keys_unique: true,
                value_bytes: 4,
                source: vec![],
            };
            let l = Layout::new(PREAMBLE + 123, &h).unwrap();
            let ranges: Vec<_> = (0..l.block_count()).map(|k| l.block(k)).collect();
            let covered: usize = ranges.iter().map(|r| r.len()).sum();
            assert_eq!(
                covered,
                (l.cells - l.buckets) + (l.keys_end - l.keys),
                "{cells}"
            );
            assert!(ranges.iter().all(|r| !r.is_empty() && r.len() <= BLOCK));
            assert!(
                l.blocks + l.block_count() * 4 <= l.end
                    && l.end - l.blocks < l.block_count() * 4 + 8
            );
            for (k, r) in ranges.iter().enumerate() {
                assert_eq!(l.block_of(r.start), k);
                assert_eq!(l.block_of(r.end - 1), k);
            }
        }
    }

    #[test]
    fn graph_of_rejects_what_the_index_cannot_hold() {
        use super::write::graph_of;
        let ok = graph_of("h", "0100", &["input", "output"]);
        assert!(ok.is_ok());
        assert!(graph_of("h", "010", &["input", "output"]).is_err());
        assert!(graph_of("h", "0200", &["input", "output"]).is_err());
        assert!(graph_of("h", "0100", &["input", "conv5x5"]).is_err());
    }
}
