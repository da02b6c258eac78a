//! Dead writers: liveness, `mark_process_dead`, clearing a directory on boot, and
//! compaction.
//!
//! Every writer of this crate holds an exclusive `flock` on `writer_ID.lock` in the
//! metrics directory for as long as it lives. The kernel drops the lock when the
//! process exits or is killed (SIGKILL and OOM included), and a fork child closes
//! its inherited copy at once, so "the lock is free" means "no live process writes
//! under this ID", whatever happened to its pid since.
//!
//! # Compaction
//!
//! ## What is folded
//!
//! For each writer whose liveness lock is free (it is dead, however it died), its
//! `counter`, `histogram`, `summary`, and `gauge_min`/`gauge_max`/`gauge_sum`/
//! `gauge_mostrecent` files are folded, per file prefix, into one archive
//! (`counter_0archive-GEN.db`, see [`crate::format::archive`]) together with the
//! previous archive of that prefix: sums for counters, histograms, summaries and `sum`
//! gauges; the first value unless a later one is smaller (larger) for `min` (`max`);
//! the value with the strictly newest timestamp for `mostrecent`, exactly the rules
//! the collector applies. Its live-mode gauge files are removed (they no longer
//! count). `all`-mode gauge files stay: each carries the dead process's own `pid`
//! series, which folding would lose. Writers without a liveness file (Python's, or
//! ones whose state is unknown) are never touched.
//!
//! Integer-valued counts (every counter incremented by whole numbers, every bucket
//! count) are preserved exactly. A float sum such as a histogram `_sum` is added in a
//! different order once folded, so its last bit can differ from the unfolded sum.
//!
//! ## Crash safety
//!
//! Steps, each durable before the next:
//!
//! 1. take the directory lock (`.compact.lock`; one compactor at a time) and a shared
//!    lock on the liveness file of every dead writer being folded (a replacement
//!    worker for that slot, which needs the exclusive lock, waits until the compaction
//!    ends and then starts from the archive's totals; probes still read it as dead);
//! 2. recover from an earlier crash: remove the sources of archives already
//!    published, manifests whose archive never appeared, and temporary files;
//! 3. write each archive and its source manifest under temporary dot-names;
//! 4. bump the sequence file `.compaction.seq` to odd;
//! 5. per archive, rename the manifest into place, then the archive;
//! 6. bump the sequence back to even;
//! 7. remove the sources, the superseded manifests, the dead writers' live gauge
//!    files, their liveness files, and last the new manifests (nothing is left for
//!    them to exclude).
//!
//! A collector of this crate counts an archive's sources only when the archive is not
//! there, leaves out live gauge files of dead writers, waits (up to 5 s) while a live
//! compactor is between steps 4 and 6, and scrapes again when the sequence number
//! changed under it. So it never sees a total twice or a dip, whatever step the
//! compactor is killed at. The next compaction finishes an interrupted one (step 2)
//! before starting. **Python's collector** knows neither manifests nor the sequence
//! file: from an archive's rename (step 5) until its sources are removed (step 7) it
//! counts those files twice: a few file-system operations, or until the next
//! compaction if the compactor was killed in between.

mod compact;

use std::fs;
use std::path::Path;

pub(crate) use compact::superseded;
pub use compact::{CompactOptions, Compaction, Step, StepAction, StepHook, compact, compact_with};

use crate::error::{Error, Result};
use crate::file;
pub use crate::file::Liveness;
use crate::metrics::GaugeMode;
use crate::writer::WorkerId;

/// Whether the writer with worker ID `id` in `dir` is alive.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{cleanup::{liveness, Liveness}, Registry, WorkerId};
/// let registry = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("3")?).build()?;
/// assert_eq!(liveness(dir.path(), "3"), Liveness::Alive);
/// assert_eq!(liveness(dir.path(), "4"), Liveness::Unknown);
/// drop(registry);
/// assert_eq!(liveness(dir.path(), "3"), Liveness::Dead);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn liveness(dir: &Path, id: &str) -> Liveness {
    file::probe_liveness(dir, id)
}

/// Python's `multiprocess.mark_process_dead(pid, path)`: removes the live-mode gauge
/// files (`gauge_live*_ID.db`) of a dead process, so its `liveall`, `livemin`,
/// `livemax`, `livesum` and `livemostrecent` gauges leave the next scrape. Counter,
/// histogram, summary and other gauge files stay: removing them would make totals go
/// backwards. The ID's liveness file stays too: [`compact`] uses it to know the writer
/// is dead, and removes it once the writer's files are folded.
///
/// Returns the number of files removed. Missing files are fine. Symlinks are never
/// followed or removed.
///
/// # Errors
/// A file that cannot be removed, or a non-regular file under one of the names,
/// naming its path.
pub fn mark_process_dead(dir: &Path, id: &str) -> Result<usize> {
    let mut removed = 0;
    for mode in GaugeMode::ALL.into_iter().filter(|m| m.is_live()) {
        removed += usize::from(file::remove_db(dir, &format!("{}_{id}.db", mode.file_prefix()))?);
    }
    Ok(removed)
}

/// What [`clear_directory`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleared {
    /// Names of the files removed.
    pub removed: Vec<String>,
}

/// Startup hygiene for a supervisor: removes every file of ours or Python's from a
/// previous run (`counter_*.db`, `histogram_*.db`, `summary_*.db`, `gauge_MODE_*.db`,
/// `writer_*.lock` and our `.NAME.PID.tmp` leftovers), and nothing else.
///
/// Call it once at boot, **before** forking workers and before any process of this run
/// writes. It refuses to touch a directory in which a writer of ours is still alive
/// (another instance sharing the directory), because wiping a live writer's files
/// would make its counters go backwards.
///
/// # Errors
/// [`ErrorKind::WorkerIdInUse`](crate::ErrorKind::WorkerIdInUse) naming a live writer;
/// an I/O kind naming a file or the directory that could not be read or removed.
pub fn clear_directory(dir: &Path) -> Result<Cleared> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    for name in &names {
        if let Some(id) = name.strip_prefix("writer_").and_then(|n| n.strip_suffix(".lock"))
            && file::probe_liveness(dir, id) == Liveness::Alive
        {
            return Err(Error::new(crate::ErrorKind::WorkerIdInUse)
                .about(id)
                .at(&dir.join(name))
                .expected("no live writer in a directory being cleared"));
        }
    }
    let mut cleared = Cleared::default();
    for name in names.into_iter().filter(|n| is_ours(n)) {
        if file::remove_db(dir, &name)? {
            cleared.removed.push(name);
        }
    }
    Ok(cleared)
}

/// Whether `name` is one of the file names this crate or Python's client writes.
fn is_ours(name: &str) -> bool {
    if let Some(id) = name.strip_prefix("writer_").and_then(|n| n.strip_suffix(".lock")) {
        return !id.is_empty();
    }
    if let Some(tmp) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) {
        // `.counter_ID.db.PID.tmp`
        return tmp.rsplit_once('.').is_some_and(|(db, pid)| is_ours(db) && pid.bytes().all(|b| b.is_ascii_digit()));
    }
    let Some(stem) = name.strip_suffix(".db") else { return false };
    let rest = ["counter_", "histogram_", "summary_"].iter().find_map(|p| stem.strip_prefix(p)).or_else(|| {
        GaugeMode::ALL.iter().find_map(|m| stem.strip_prefix(m.file_prefix()).and_then(|r| r.strip_prefix('_')))
    });
    rest.is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// The worker ID a file name of ours belongs to, if any.
pub fn worker_id_of(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".db")?;
    let (_, id) = stem.rsplit_once('_')?;
    WorkerId::new(id).ok().map(|_| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_file_patterns_are_recognised() {
        for ours in ["counter_1.db", "gauge_livesum_w-3.db", "histogram_9.db", "writer_7.lock", ".summary_3.db.123.tmp"]
        {
            assert!(is_ours(ours), "{ours}");
        }
        for theirs in
            ["notes.txt", "counter_.db", "gauge_bogus_1.db", "foo.db", ".x.tmp", "writer_.lock", "counter_1.db.bak"]
        {
            assert!(!is_ours(theirs), "{theirs}");
        }
    }
}
