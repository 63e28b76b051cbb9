//! Downloading the release files: resumable HTTP download to a `.part` file that survives stalls and dropped connections (retried with backoff, resumed by Range), SHA-256 verification, rename into place.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::cell::generate::Progress;

/// A release file: where it is published and its published SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// Download address.
    pub url: &'static str,
    /// Published SHA-256, lowercase hex.
    pub sha256: &'static str,
}

/// `nasbench_full.tfrecord` (4 budgets, ~1.95 GB), as the NAS-Bench-101 README publishes it.
pub const FULL: Release = Release {
    url: "https://storage.googleapis.com/nasbench/nasbench_full.tfrecord",
    sha256: "3d64db8180fb1b0207212f9032205064312b6907a3bbc81eabea10db2f5c7e9c",
};

/// `nasbench_only108.tfrecord` (108 epochs only, ~499 MB).
pub const ONLY108: Release = Release {
    url: "https://storage.googleapis.com/nasbench/nasbench_only108.tfrecord",
    sha256: "4c39c3936e36a85269881d659e44e61a245babcb72cb374eacacf75d0e5f4fd1",
};

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server answered with an unexpected status.
    #[error("{url}: server answered HTTP {status}")]
    Status {
        /// The address.
        url: String,
        /// The status code.
        status: u16,
    },
    /// A local file error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// No byte arrived for the stall window, or the connection broke, this
    /// many times in a row; the `.part` file is kept for the next run.
    #[error(
        "{url}: no progress after {attempts} attempts ({last}); rerun to resume from byte {have}"
    )]
    Stalled {
        /// The address.
        url: String,
        /// Attempts made without a byte of progress.
        attempts: u32,
        /// What the last attempt ended with.
        last: String,
        /// Bytes kept in the `.part` file.
        have: u64,
    },
    /// The file's SHA-256 is not the published one; the download was removed.
    #[error(
        "{path}: SHA-256 is {actual}, expected {expected}; removed the download, run again to fetch it afresh"
    )]
    Checksum {
        /// The file.
        path: String,
        /// The published hash.
        expected: String,
        /// The downloaded file's hash.
        actual: String,
    },
}

/// How a file came to be in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// It was already there with the right SHA-256.
    AlreadyPresent,
    /// Downloaded from scratch.
    Downloaded,
    /// A partial download was resumed at this byte.
    Resumed(u64),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let io_err = |source| FetchError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = File::open(path).map_err(io_err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// The `.part` file a download of `dest` goes to.
pub fn part_path(dest: &Path) -> PathBuf {
    crate::output::sidecar(dest, ".part")
}

/// How a download copes with a bad connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// A request that receives nothing for this long (connecting, waiting
    /// for the answer, or between body bytes: each request is given this
    /// window and resumed when it ends) is dropped and retried.
    pub stall: Duration,
    /// Retries in a row without a byte of progress before giving up.
    pub retries: u32,
    /// The first pause between retries; it doubles each time, up to 30 s.
    pub backoff: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            stall: Duration::from_secs(60),
            retries: 5,
            backoff: Duration::from_secs(1),
        }
    }
}

/// [`fetch_with`] with the default [`FetchOptions`].
pub fn fetch(
    url: &str,
    sha256: &str,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<Fetched, FetchError> {
    fetch_with(url, sha256, dest, progress, &FetchOptions::default())
}

/// How one request ended.
enum Attempt {
    /// The body arrived whole (or the `.part` already held it all).
    Complete,
    /// The request failed or broke off; what it said.
    Broken(String),
}

/// Downloads `url` to `dest` unless `dest` already has `sha256`. Bytes go
/// to `dest.part` first; an existing `.part` is resumed with an HTTP Range
/// request (from scratch if the server ignores it). A request that stalls
/// or breaks is resumed where it stopped, at once if it brought new bytes,
/// else after a pause that doubles; `opts.retries` attempts in a row
/// without progress end the download (the `.part` stays for the next run).
/// The result is verified against `sha256` and only then renamed to
/// `dest`; on a mismatch the download is removed.
pub fn fetch_with(
    url: &str,
    sha256: &str,
    dest: &Path,
    progress: &dyn Progress,
    opts: &FetchOptions,
) -> Result<Fetched, FetchError> {
    let expected = sha256.to_ascii_lowercase();
    if dest.exists() && sha256_file(dest)? == expected {
        return Ok(Fetched::AlreadyPresent);
    }
    let part = part_path(dest);
    let io_err = |source| FetchError::Io {
        path: part.display().to_string(),
        source,
    };
    let part_len = || std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let start = part_len();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(opts.stall))
        .timeout_recv_response(Some(opts.stall))
        .timeout_recv_body(Some(opts.stall))
        .build()
        .into();
    let mut best = start;
    let mut idle = 0u32;
    let mut pause = opts.backoff;
    let mut started_bar = false;
    loop {
        match attempt(&agent, url, &part, part_len(), progress, &mut started_bar)? {
            Attempt::Complete => break,
            Attempt::Broken(why) => {
                let now = part_len();
                if now > best {
                    best = now;
                    idle = 0;
                    pause = opts.backoff;
                    continue;
                }
                idle += 1;
                if idle > opts.retries {
                    return Err(FetchError::Stalled {
                        url: url.to_string(),
                        attempts: idle,
                        last: why,
                        have: now,
                    });
                }
                eprintln!(
                    "fetch: {why}; retrying from byte {now} in {:.0} s",
                    pause.as_secs_f64()
                );
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
    progress.start_bytes("verifying SHA-256", 0);
    let actual = sha256_file(&part)?;
    if actual != expected {
        std::fs::remove_file(&part).map_err(io_err)?;
        return Err(FetchError::Checksum {
            path: dest.display().to_string(),
            expected,
            actual,
        });
    }
    std::fs::rename(&part, dest).map_err(|source| FetchError::Io {
        path: dest.display().to_string(),
        source,
    })?;
    Ok(if start > 0 {
        Fetched::Resumed(start)
    } else {
        Fetched::Downloaded
    })
}

/// One request from byte `have`, where `part` ends; appends what arrives
/// (synced).
/// Errors of the network are an [`Attempt::Broken`]; a refusing server and
/// local file errors are errors.
fn attempt(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    have: u64,
    progress: &dyn Progress,
    started_bar: &mut bool,
) -> Result<Attempt, FetchError> {
    let io_err = |source| FetchError::Io {
        path: part.display().to_string(),
        source,
    };
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let mut resp = match req.call() {
        Ok(r) => r,
        Err(e) => return Ok(Attempt::Broken(e.to_string())),
    };
    let status = resp.status().as_u16();
    let content_length = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (mut file, from) = match status {
        206 => (
            OpenOptions::new().append(true).open(part).map_err(io_err)?,
            have,
        ),
        200 => (File::create(part).map_err(io_err)?, 0),
        // The partial file already holds everything.
        416 if have > 0 => return Ok(Attempt::Complete),
        _ => {
            return Err(FetchError::Status {
                url: url.to_string(),
                status,
            });
        }
    };
    if !*started_bar || from == 0 {
        progress.start_bytes("downloading", from + content_length.unwrap_or(0));
        progress.advance(from);
        *started_bar = true;
    }
    let mut body = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    let outcome = loop {
        match body.read(&mut buf) {
            Ok(0) => {
                break match content_length {
                    Some(n) if got < n => {
                        Attempt::Broken(format!("connection closed after {got} of {n} bytes"))
                    }
                    _ => Attempt::Complete,
                };
            }
            Ok(n) => {
                file.write_all(&buf[..n]).map_err(io_err)?;
                got += n as u64;
                progress.advance(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Attempt::Broken(format!("transfer broke off: {e}")),
        }
    };
    file.sync_all().map_err(io_err)?;
    Ok(outcome)
}
