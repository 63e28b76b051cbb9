//! Downloading the release files: resumable HTTP download to a `.part` file, SHA-256 verification, rename into place.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::generate::Progress;

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
    /// The server could not be reached or the transfer broke off; rerunning
    /// resumes from what was received.
    #[error("{url}: {source}")]
    Http {
        /// The address.
        url: String,
        /// The cause.
        source: Box<ureq::Error>,
    },
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
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Downloads `url` to `dest` unless `dest` already has `sha256`. Bytes go
/// to `dest.part` first; an existing `.part` is resumed with an HTTP Range
/// request (from scratch if the server ignores it). The result is verified
/// against `sha256` and only then renamed to `dest`; on a mismatch the
/// download is removed.
pub fn fetch(
    url: &str,
    sha256: &str,
    dest: &Path,
    progress: &dyn Progress,
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
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .build()
        .into();
    let http_err = |e| FetchError::Http {
        url: url.to_string(),
        source: Box::new(e),
    };
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let mut resp = req.call().map_err(http_err)?;
    let status = resp.status().as_u16();
    let content_length = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (mut file, start) = match status {
        206 => (
            OpenOptions::new()
                .append(true)
                .open(&part)
                .map_err(io_err)?,
            have,
        ),
        200 => (File::create(&part).map_err(io_err)?, 0),
        // The partial file already holds everything.
        416 if have > 0 => (
            OpenOptions::new()
                .append(true)
                .open(&part)
                .map_err(io_err)?,
            have,
        ),
        _ => {
            return Err(FetchError::Status {
                url: url.to_string(),
                status,
            });
        }
    };
    if status != 416 {
        progress.start_bytes("downloading", start + content_length.unwrap_or(0));
        progress.advance(start);
        let mut body = resp.body_mut().as_reader();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = body.read(&mut buf).map_err(|e| FetchError::Http {
                url: url.to_string(),
                source: Box::new(ureq::Error::Io(e)),
            })?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).map_err(io_err)?;
            progress.advance(n as u64);
        }
        file.sync_all().map_err(io_err)?;
    }
    drop(file);
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
