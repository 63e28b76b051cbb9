//! `nasbench package-extension`: turn the built extension library into a loadable `nasbench.duckdb_extension`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nasbench::db::extension::{Metadata, footer, host_platform};
use nasbench::output::{ExportError, write_atomically};

/// Append DuckDB's metadata footer to the built extension library.
///
/// Build the library with `cargo build --release --manifest-path
/// extension/Cargo.toml`, then package it; the result loads, unsigned, into
/// the DuckDB CLI (`duckdb -unsigned`, then `LOAD 'nasbench.duckdb_extension'`)
/// and into Python's duckdb (`config={'allow_unsigned_extensions': True}`).
#[derive(clap::Args, Debug)]
#[command(after_help = "Example (one line, from the repository root):
  cargo build --release --manifest-path extension/Cargo.toml && \\
    cargo run --release -- package-extension extension/target/release/libnasbench.so")]
pub struct Args {
    /// The built library (libnasbench.so).
    #[arg(value_name = "LIBRARY")]
    library: PathBuf,
    /// The extension file to write.
    #[arg(
        short,
        long,
        default_value = "nasbench.duckdb_extension",
        value_name = "FILE"
    )]
    output: PathBuf,
    /// DuckDB platform the library was built for.
    #[arg(long, default_value_t = host_platform())]
    platform: String,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let lib =
        std::fs::read(&a.library).with_context(|| format!("reading {}", a.library.display()))?;
    let meta = Metadata {
        extension_version: format!("v{}", env!("CARGO_PKG_VERSION")),
        min_capi_version: "v1.2.0".into(),
        platform: a.platform.clone(),
    };
    let tail = footer(&meta).map_err(anyhow::Error::msg)?;
    write_atomically(&a.output, |f| {
        let io = |source| ExportError::Io {
            path: a.output.display().to_string(),
            source,
        };
        f.write_all(&lib).map_err(io)?;
        f.write_all(&tail).map_err(io)
    })?;
    eprintln!(
        "wrote {} ({} bytes, {} {}, unsigned)",
        a.output.display(),
        lib.len() + tail.len(),
        meta.extension_version,
        meta.platform
    );
    Ok(ExitCode::SUCCESS)
}
