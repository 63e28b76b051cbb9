//! `nasbench fetch`: download a release file (resumable, SHA-256 verified) and ingest it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use nasbench::dataset::fetch::{FULL, FetchOptions, Fetched, ONLY108, fetch_with};

use super::ingest::{OutArgs, ingest_file};
use super::progress::Bar;

/// Download a NAS-Bench-101 release file and ingest it.
///
/// Fetches nasbench_only108.tfrecord (~499 MB, the default) or, with --full,
/// nasbench_full.tfrecord (~1.95 GB) from the official location
/// (storage.googleapis.com/nasbench), into `--dir`. An interrupted download
/// resumes from its `.part` file when run again. The file is verified against
/// the SHA-256 published in the NAS-Bench-101 README before it is renamed into
/// place, then ingested into `--db` as `nasbench ingest` does. A file already
/// present with the right SHA-256 is not downloaded again. A transfer that
/// stalls (nothing for --stall-timeout seconds) or breaks off is resumed
/// where it stopped, with pauses of 1, 2, 4, ... seconds while no byte
/// arrives.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  nasbench fetch                      # only108 into ., then nasbench.duckdb
  nasbench fetch --full --dir data --db full.duckdb --parquet parquet/
  nasbench fetch --url http://mirror/nasbench_only108.tfrecord --sha256 4c39c393...")]
pub struct Args {
    /// nasbench_full.tfrecord (4, 12, 36 and 108 epochs).
    #[arg(long, conflicts_with = "only108")]
    full: bool,
    /// nasbench_only108.tfrecord (the default).
    #[arg(long)]
    only108: bool,
    /// Directory for the downloaded file.
    #[arg(long, default_value = ".", value_name = "DIR")]
    dir: PathBuf,
    /// Download from this address (a mirror) instead; needs --sha256.
    #[arg(long, requires = "sha256", value_name = "URL")]
    url: Option<String>,
    /// Expected SHA-256 (hex) for --url.
    #[arg(long, requires = "url", value_name = "HEX")]
    sha256: Option<String>,
    /// Only download and verify; do not ingest.
    #[arg(long)]
    no_ingest: bool,
    /// Seconds without a byte (connecting, waiting, or mid-transfer) after
    /// which a request is dropped and resumed.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    stall_timeout: f64,
    /// Retries in a row without progress before giving up (the `.part`
    /// file stays; run again to resume).
    #[arg(long, default_value_t = 5, value_name = "N")]
    retries: u32,
    #[command(flatten)]
    out: OutArgs,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let release = if a.full { FULL } else { ONLY108 };
    let url = a.url.as_deref().unwrap_or(release.url);
    let sha = a.sha256.as_deref().unwrap_or(release.sha256);
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--sha256: {sha:?} is not 64 hex digits");
    }
    let name = url
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .with_context(|| format!("--url: {url:?} does not end in a file name"))?;
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let dest = a.dir.join(name);
    let bar = Bar::new(a.out.quiet);
    if !(a.stall_timeout.is_finite() && a.stall_timeout > 0.0) {
        bail!(
            "--stall-timeout {}: must be a positive number of seconds",
            a.stall_timeout
        );
    }
    let opts = FetchOptions {
        stall: std::time::Duration::from_secs_f64(a.stall_timeout),
        retries: a.retries,
        ..FetchOptions::default()
    };
    let fetched = fetch_with(url, sha, &dest, &bar, &opts);
    bar.finish();
    match fetched.with_context(|| format!("fetching {url}"))? {
        Fetched::AlreadyPresent => eprintln!("{} is present and verified", dest.display()),
        Fetched::Downloaded => eprintln!("downloaded and verified {}", dest.display()),
        Fetched::Resumed(at) => eprintln!(
            "resumed at byte {at}, downloaded and verified {}",
            dest.display()
        ),
    }
    if a.no_ingest {
        return Ok(ExitCode::SUCCESS);
    }
    ingest_file(&dest, &a.out)
}
