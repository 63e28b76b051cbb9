//! Temporary outputs of the running process, removed when it is interrupted (Ctrl-C) so that nothing half-written is left beside the real files.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps `path` on the list of temporaries until dropped.
#[must_use = "the path is untracked when the guard drops"]
pub struct Tracked(PathBuf);

/// Tracks a temporary file or directory until the returned guard drops
/// (by then it was renamed into place or removed by its owner).
pub fn track(path: &Path) -> Tracked {
    pending().push(path.to_path_buf());
    Tracked(path.to_path_buf())
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut p = pending();
        if let Some(i) = p.iter().rposition(|x| *x == self.0) {
            p.remove(i);
        }
    }
}

/// Removes every tracked temporary; for a signal handler, just before exit.
pub fn remove_all() {
    for p in pending().drain(..) {
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_paths_are_removed_until_their_guard_drops() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.tmp"), dir.path().join("b.tmp"));
        std::fs::write(&a, "x").unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join("inner"), "y").unwrap();
        let ga = track(&a);
        {
            let _gb = track(&b);
        }
        remove_all();
        assert!(!a.exists(), "tracked file removed");
        assert!(b.exists(), "untracked after its guard dropped");
        drop(ga);
    }
}
