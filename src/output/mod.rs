//! Files this process writes: every output written to a temporary name and renamed into place, the paths that go with a file, and temporaries removed on Ctrl-C.

pub mod cleanup;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

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
    #[cfg(feature = "duckdb")]
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
