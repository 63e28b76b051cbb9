//! Advisory write locks of a database (`<db>.lock`, taken by every nasbench writer), DuckDB opens that wait out another process's lock, and test failpoints.
//!
//! DuckDB lets one process write a file or many read it, and fails an open
//! that conflicts at once. nasbench's own writers (an ingest replacing the
//! file, a trainer adding its rows, `ingest-runs`) first take an exclusive
//! `flock` on `<db>.lock`, so that a replace never races a write, and open
//! DuckDB for as short a time as the write takes; a conflicting open is
//! retried with backoff instead of failing.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An exclusive advisory lock on `<db>.lock`; released on drop (or when
/// the process dies, however it dies).
#[derive(Debug)]
pub struct WriteLock {
    _file: File,
    path: PathBuf,
}

impl WriteLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lock file of database `db`: `<db>.lock` beside it.
pub fn lock_path(db: &Path) -> PathBuf {
    crate::output::sidecar(db, ".lock")
}

/// Takes the write lock of `db`, waiting for another writer to finish
/// (`waiting` is called once, with the lock's path, if it has to wait).
pub fn lock_for_write(db: &Path, waiting: impl FnOnce(&Path)) -> std::io::Result<WriteLock> {
    let path = lock_path(db);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `file`.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(std::io::Error::new(
                err.kind(),
                format!("locking {}: {err}", path.display()),
            ));
        }
        waiting(&path);
        loop {
            // SAFETY: as above; a blocking lock, retried on a signal.
            if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(std::io::Error::new(
                    err.kind(),
                    format!("locking {}: {err}", path.display()),
                ));
            }
        }
    }
    Ok(WriteLock { _file: file, path })
}

/// Whether a DuckDB error is another process holding the file's lock.
pub fn is_lock_conflict(message: &str) -> bool {
    message.contains("Could not set lock on file") || message.contains("Conflicting lock")
}

/// Runs `open` until it succeeds, fails for another reason than a lock held
/// by another process, or `patience` has passed; waits with backoff from
/// 20 ms to 1 s in between, and calls `waiting` once on the first conflict.
pub fn retry_locked<T, E: std::fmt::Display>(
    patience: Duration,
    mut waiting: impl FnMut(&str),
    mut open: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    let mut told = false;
    loop {
        match open() {
            Err(e) if is_lock_conflict(&e.to_string()) && start.elapsed() < patience => {
                if !told {
                    waiting(&e.to_string());
                    told = true;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// [`retry_locked`] on a file: says once on stderr that it waits for
/// another process to close `path`.
pub fn wait_while_locked<T, E: std::fmt::Display>(
    path: &Path,
    patience: Duration,
    open: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    retry_locked(
        patience,
        |_| eprintln!("waiting for another process to close {}", path.display()),
        open,
    )
}

/// The environment variable that names a failpoint (tests only).
pub const FAILPOINT_ENV: &str = "NASBENCH_FAILPOINT";

/// Kills the process with SIGKILL, as `kill -9` would, when
/// `$NASBENCH_FAILPOINT` names this point: tests use it to stop a command
/// at each step of a replace or a run and check what is left on disk.
pub fn failpoint(name: &str) {
    if std::env::var_os(FAILPOINT_ENV).is_some_and(|v| v == name) {
        // SAFETY: getpid and kill have no preconditions; SIGKILL ends the
        // process at once, with no handlers and no destructors.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.duckdb");
        let first = lock_for_write(&db, |_| panic!("the first lock must not wait")).unwrap();
        assert_eq!(first.path(), dir.path().join("x.duckdb.lock"));
        let (tx, rx) = std::sync::mpsc::channel();
        let db2 = db.clone();
        let t = std::thread::spawn(move || {
            let mut waited = false;
            // flock locks belong to the open file description: a second
            // open in the same process conflicts like another process.
            let l = lock_for_write(&db2, |_| waited = true).unwrap();
            tx.send(()).unwrap();
            drop(l);
            waited
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "took the lock while the first was held"
        );
        drop(first);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(t.join().unwrap(), "the second lock said it was waiting");
    }

    #[test]
    fn retry_gives_up_on_other_errors_and_after_its_patience() {
        let mut calls = 0;
        let r: Result<(), String> = retry_locked(
            Duration::from_secs(5),
            |_| {},
            || {
                calls += 1;
                Err("no such table".into())
            },
        );
        assert!(r.is_err());
        assert_eq!(calls, 1, "an error that is not a lock is not retried");
        let mut calls = 0;
        let r: Result<u8, String> = retry_locked(
            Duration::from_secs(5),
            |_| {},
            || {
                calls += 1;
                if calls < 3 {
                    Err("IO Error: Could not set lock on file \"x\"".into())
                } else {
                    Ok(7)
                }
            },
        );
        assert_eq!(r, Ok(7));
        assert_eq!(calls, 3);
        let start = Instant::now();
        let r: Result<(), String> = retry_locked(
            Duration::from_millis(100),
            |_| {},
            || Err("Could not set lock on file".into()),
        );
        assert!(r.is_err());
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
