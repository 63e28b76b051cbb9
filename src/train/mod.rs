//! Training any cell with the NAS-Bench-101 protocol: the backend interface, the CPU reference backend, the network, data, the trainer and its results as rows.

pub mod backend;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod data;
pub mod net;
#[cfg(feature = "cuda")]
pub mod parity;
#[cfg(feature = "duckdb")]
pub mod rows;
pub mod trainer;

pub use backend::{Backend, BackendError};
pub use cpu::Cpu;
pub use net::{Graph, Mode, Net};

/// The files in `dir` whose names start with `prefix` and end with
/// `suffix`, sorted by name (checkpoints `step-*.safetensors`, unit files
/// `unit-*.parquet`: their names sort in the order they were written).
pub fn files_named(
    dir: &std::path::Path,
    prefix: &str,
    suffix: &str,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .collect();
    files.sort();
    Ok(files)
}
