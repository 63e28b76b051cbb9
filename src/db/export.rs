//! Arrow and Parquet forms of the tables nasbench-db writes, and the write-to-temporary-then-rename rule for every output file.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, ListBuilder, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::cell::generate::Cell;

/// Error while writing an output file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// File system error, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// Arrow or Parquet encoding error.
    #[error("{path}: {source}")]
    Parquet {
        /// The file.
        path: String,
        /// The cause.
        source: parquet::errors::ParquetError,
    },
    /// Arrow array construction error.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

/// The directory `path` lies in (`.` for a bare file name): where its
/// temporary goes, so that the final rename stays on one file system.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `path` with `suffix` appended to its file name: the files that go with
/// a file (`<db>.wal`, `<db>.lock`, `<db>.qidx`, `<file>.part`).
pub fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Temporary files are created private (0600); an output is an ordinary
/// readable file (0644). Nothing to do off Unix.
pub(crate) fn make_readable(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes `path` through a temporary file in the same directory, renamed
/// into place only when `write` succeeds: a failed or interrupted run leaves
/// any earlier file untouched.
pub fn write_atomically<T>(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<T, ExportError>,
) -> Result<T, ExportError> {
    let io_err = |source| ExportError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err)?;
    let _tracked = crate::output::cleanup::track(tmp.path());
    let value = write(tmp.as_file_mut())?;
    make_readable(tmp.path()).map_err(io_err)?;
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(value)
}

/// The element field of an Arrow list (named `item`, nullable, as DuckDB and
/// Arrow's builders name it).
pub fn list_item(t: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", t, true))
}

/// An Arrow list of `t`.
pub fn list_of(t: DataType) -> DataType {
    DataType::List(list_item(t))
}

/// Schema of the generated search space (`nasbench generate`).
pub fn cells_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("hash", DataType::Utf8, false),
        Field::new("num_vertices", DataType::Int32, false),
        Field::new("num_edges", DataType::Int32, false),
        Field::new("adjacency", DataType::Utf8, false),
        Field::new("ops", list_of(DataType::Utf8), false),
        Field::new("trainable_parameters", DataType::Int64, false),
    ]))
}

/// The cells as one Arrow record batch with [`cells_schema`].
pub fn cells_batch(cells: &[Cell]) -> Result<RecordBatch, ExportError> {
    let hash: StringArray = cells.iter().map(|c| Some(c.hash.to_hex())).collect();
    let nv: Int32Array = cells.iter().map(|c| Some(i32::from(c.graph.n))).collect();
    let ne: Int32Array = cells
        .iter()
        .map(|c| Some(c.graph.num_edges() as i32))
        .collect();
    let adj: StringArray = cells
        .iter()
        .map(|c| Some(c.graph.adjacency_bits()))
        .collect();
    let mut ops = ListBuilder::new(StringBuilder::new()).with_field(list_item(DataType::Utf8));
    for c in cells {
        for op in c.graph.ops() {
            ops.values().append_value(op);
        }
        ops.append(true);
    }
    let params: Int64Array = cells
        .iter()
        .map(|c| Some(c.trainable_parameters as i64))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(hash),
        Arc::new(nv),
        Arc::new(ne),
        Arc::new(adj),
        Arc::new(ops.finish()),
        Arc::new(params),
    ];
    Ok(RecordBatch::try_new(cells_schema(), columns)?)
}

/// Writes record batches as a zstd-compressed Parquet file, atomically.
pub fn write_parquet(
    path: &Path,
    schema: Arc<Schema>,
    batches: &[RecordBatch],
) -> Result<(), ExportError> {
    let pq_err = |source| ExportError::Parquet {
        path: path.display().to_string(),
        source,
    };
    write_atomically(path, |file| {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let mut w =
            ArrowWriter::try_new(BufWriter::new(file), schema, Some(props)).map_err(pq_err)?;
        for b in batches {
            w.write(b).map_err(pq_err)?;
        }
        w.close().map_err(pq_err)?;
        Ok(())
    })
}
