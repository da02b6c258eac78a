//! Automatic compaction: a background thread that compacts a directory once enough
//! files of dead writers have piled up.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cleanup::{CompactOptions, compact_with};
use crate::error::{Error, ErrorKind, Result};
use crate::file;

/// When to compact automatically: checked every `interval`, done when at least
/// `min_dead_files` files of dead writers can be folded or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AutoCompact {
    /// How often to look (default 60 s).
    pub interval: Duration,
    /// The threshold (default 64 files, i.e. some 8 to 16 dead workers).
    pub min_dead_files: usize,
}

impl AutoCompact {
    /// Checks every `interval`, with the default threshold.
    pub fn every(interval: Duration) -> AutoCompact {
        AutoCompact { interval, ..AutoCompact::default() }
    }

    /// Sets the threshold, [`AutoCompact::min_dead_files`].
    pub fn min_dead_files(mut self, n: usize) -> AutoCompact {
        self.min_dead_files = n;
        self
    }
}

impl Default for AutoCompact {
    fn default() -> Self {
        AutoCompact { interval: Duration::from_secs(60), min_dead_files: 64 }
    }
}

/// A running automatic compaction (see [`spawn_auto_compaction`]); stopped and
/// joined when dropped.
#[derive(Debug)]
pub struct AutoCompactor {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Starts a thread, `pmp-compact`, that compacts `dir` by `policy` until the returned
/// handle is dropped. A check costs one listing of the directory and a lock test per
/// writer; a compaction that finds another one running is skipped, and a failed one is
/// logged and tried again at the next check.
///
/// Start it in the process that serves or scrapes the metrics (the CLI's `serve
/// --compact-interval` does), never in a process that forks afterwards: a thread does
/// not survive `fork()`.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use std::time::Duration;
/// use prometheus_multiproc::cleanup::{AutoCompact, spawn_auto_compaction};
/// let policy = AutoCompact::every(Duration::from_secs(30)).min_dead_files(64);
/// let compactor = spawn_auto_compaction(dir.path(), policy)?;
/// // … serve /metrics …
/// drop(compactor); // stops the thread
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`ErrorKind::NotADirectory`] when `dir` is not a directory; [`ErrorKind::Io`] when
/// the thread cannot be started.
pub fn spawn_auto_compaction(dir: &Path, policy: AutoCompact) -> Result<AutoCompactor> {
    if !file::lstat(dir).is_ok_and(|m| m.is_dir()) {
        return Err(Error::new(ErrorKind::NotADirectory).at(dir).expected("an existing directory"));
    }
    let path = dir.to_path_buf();
    let dir: PathBuf = dir.to_path_buf();
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("pmp-compact".into())
        .spawn(move || {
            loop {
                match stopped.recv_timeout(policy.interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let options = CompactOptions { min_dead_files: policy.min_dead_files, ..Default::default() };
                match compact_with(&dir, options) {
                    Ok(done) if !done.dead_writers.is_empty() => log::info!(
                        "compacted {}: {} dead writers folded into {} archives, {} files removed",
                        dir.display(),
                        done.dead_writers.len(),
                        done.archives.len(),
                        done.removed.len()
                    ),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::CompactionInProgress => {}
                    Err(e) => log::warn!("automatic compaction of {} failed: {e}", dir.display()),
                }
            }
        })
        .map_err(|e| Error::new(ErrorKind::Io).at(&path).expected("a thread for automatic compaction").caused_by(e))?;
    Ok(AutoCompactor { stop: Some(stop), thread: Some(thread) })
}

impl Drop for AutoCompactor {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
