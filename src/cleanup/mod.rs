//! Dead writers: liveness, `mark_process_dead`, clearing a directory on boot, and
//! compaction.
//!
//! Every writer of this crate holds an exclusive lock (an open-file-description
//! record lock, `F_OFD_SETLK`) on `writer_ID.lock` in the metrics directory for as
//! long as it lives. The kernel drops the lock when the process exits or is killed
//! (SIGKILL and OOM included), and a fork child closes its inherited copy at once, so
//! "the lock is free" means "no live process writes under this ID", whatever happened
//! to its pid since. Probes and collectors *test* the lock (`F_OFD_GETLK`) without
//! taking it, so looking never delays a writer ([`liveness`]). A compactor holds a
//! dead writer's lock shared while it folds or removes that writer's files, so a
//! writer starting under the ID meanwhile waits.
//!
//! # Taking over a slot
//!
//! A writer that takes a worker ID's lock is the only live writer of that ID; whatever
//! its files hold was written by dead predecessors. Before it opens any file it
//! removes the temporary files a killed predecessor left, the predecessor's live-mode
//! gauge files (their values died with it: they leave the very next scrape, whether or
//! not the new writer ever creates a gauge of that mode), and, if a compactor was
//! killed after publishing an archive of the slot's files but before removing them,
//! finishes that compaction first (under the directory's compaction lock), so that it
//! never continues a file the archive has already counted.
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
//! series, which folding would lose. Its liveness file and its temporary files
//! (`.KIND_ID.db.PID.tmp`, left when it was killed while creating a file) are removed,
//! also when it owns no `.db` file at all (killed in its start-up), and so are the
//! temporary files of an ID without a liveness file once the pid in their name is gone
//! (see [`dead_writer_leftovers`]). Writers without a liveness file (Python's, or
//! ones whose state is unknown) are never touched, nor, for now, a dead writer whose ID
//! is a pid that a running process has again (it may be a Python worker, which takes
//! no lock, writing the same files; see [`Compaction::deferred`]).
//!
//! A dead writer's file that a collector would skip (corrupt, or not a regular file) is
//! left in place and reported ([`Compaction::unreadable`]); folding it would make the
//! archive unreadable in turn. Archives get the permission bits of the files they fold.
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
//!    ends, up to 60 s, and then starts from the archive's totals; probes still read
//!    it as dead);
//! 2. recover from an earlier crash: remove the sources of archives already
//!    published and then their manifests, manifests whose archive never appeared, and
//!    temporary files;
//! 3. write each archive and its source manifest under temporary dot-names;
//! 4. bump the sequence file `.compaction.seq` to odd;
//! 5. per archive, rename the manifest into place, then the archive;
//! 6. bump the sequence back to even;
//! 7. remove the sources, the superseded manifests, the dead writers' live gauge
//!    files, their temporary files, their liveness files, and last the new manifests
//!    (nothing is left for them to exclude). Steps 3 to 6 are skipped when there is
//!    nothing to fold.
//!
//! A collector of this crate counts an archive's sources only when the archive is not
//! there, leaves out live gauge files of dead writers, waits (up to 5 s) while a live
//! compactor is between steps 4 and 6, and scrapes again when the sequence number
//! changed under it. So it never sees a total twice or a dip, whatever step the
//! compactor is killed at. The next compaction finishes an interrupted one (step 2)
//! before starting, and so does a writer that takes over a slot whose files an
//! interrupted compaction folded (see [taking over a slot](#taking-over-a-slot)): the
//! archive has counted those files, so the writer must start afresh, and a later
//! recovery must never remove a file a live writer has opened. (Recovery removes the
//! listed sources whatever the liveness of their slot; that is safe because a writer
//! opens its files only after this check.) **Python's collector** knows neither manifests nor the sequence
//! file: from an archive's rename (step 5) until its sources are removed (step 7) it
//! counts those files twice: a few file-system operations, or until the next
//! compaction if the compactor was killed in between.

mod auto;
mod compact;

use std::fs;
use std::path::Path;

pub use auto::{AutoCompact, AutoCompactor, spawn_auto_compaction};
pub use compact::{
    CompactOptions, Compaction, Step, StepAction, StepHook, compact, compact_with, dead_writer_leftovers,
};
pub(crate) use compact::{superseded, superseded_checked};

use crate::error::{Error, Result};
use crate::file;
pub use crate::format::names::worker_id_of;
use crate::format::names::{self, COMPACT_LOCK, FileKind};
pub use crate::liveness::{Liveness, liveness, pid_in_use};

/// Python's `multiprocess.mark_process_dead(pid, path)`: removes the live-mode gauge
/// files (`gauge_live*_ID.db`) of a dead process, so its `liveall`, `livemin`,
/// `livemax`, `livesum` and `livemostrecent` gauges leave the next scrape. Counter,
/// histogram, summary and other gauge files stay: removing them would make totals go
/// backwards. The ID's liveness file stays too: [`compact`] uses it to know the writer
/// is dead, and removes it once the writer's files are folded.
///
/// Unlike Python's, it refuses a writer of this crate that is alive (it holds its
/// liveness lock): removing a live writer's gauge files would lose its live values
/// while it keeps writing to files nobody reads. A writer that has just been reaped may
/// release its lock a moment after its parent learns of its exit, so a live lock is
/// waited for up to one second before the call is refused.
/// [`force_mark_process_dead`] removes the files whatever the liveness (the CLI's
/// `mark-dead --force`). An ID without a liveness file (a Python writer) is taken to be
/// dead, as Python takes it.
///
/// Returns the number of files removed. Missing files are fine. Symlinks are never
/// followed or removed. (Writers of this crate need no call: the collector drops a dead
/// writer's live gauges by itself; this is for Python's writers and for parity.)
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{cleanup::mark_process_dead, ErrorKind, GaugeMode, Opts, Registry, WorkerId};
/// let r = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("w1")?).build()?;
/// r.gauge(Opts::new("in_flight", "In flight."), GaugeMode::LiveSum)?.inc();
/// r.counter(Opts::new("jobs_total", "Jobs."))?.inc();
/// assert_eq!(mark_process_dead(dir.path(), "w1").unwrap_err().kind(), ErrorKind::WorkerIdInUse);
/// drop(r); // the worker exits
/// assert_eq!(mark_process_dead(dir.path(), "w1")?, 1); // gauge_livesum_w1.db
/// assert!(dir.path().join("counter_w1.db").exists()); // totals stay
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`ErrorKind::WorkerIdInUse`](crate::ErrorKind::WorkerIdInUse) naming the liveness
/// file when the writer is alive; a file that cannot be removed, or a non-regular file
/// under one of the names, naming its path.
pub fn mark_process_dead(dir: &Path, id: &str) -> Result<usize> {
    let start = std::time::Instant::now();
    while liveness(dir, id) == Liveness::Alive {
        if start.elapsed() >= MARK_DEAD_WAIT {
            return Err(Error::new(crate::ErrorKind::WorkerIdInUse)
                .about(id)
                .at(&dir.join(names::lock_name(id)))
                .expected("a dead writer, its liveness lock free (force_mark_process_dead removes the files anyway)")
                .found("a live one"));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    force_mark_process_dead(dir, id)
}

/// How long [`mark_process_dead`] waits for a writer that has just exited to release
/// its liveness lock.
const MARK_DEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// [`mark_process_dead`] without the liveness check: removes the live-mode gauge files
/// of `id` even while its writer lives (its live gauges then leave the scrape, and the
/// values it writes from then on are lost until it re-creates them in a new process).
///
/// # Errors
/// A file that cannot be removed, or a non-regular file under one of the names, naming
/// its path.
pub fn force_mark_process_dead(dir: &Path, id: &str) -> Result<usize> {
    let mut removed = 0;
    for kind in FileKind::ALL.into_iter().filter(|k| k.is_live()) {
        removed += usize::from(file::remove_db(dir, &names::db_name(kind, id))?);
    }
    Ok(removed)
}

/// Prepares worker slot `id` for the writer that has just taken its exclusive lock
/// (see [taking over a slot](self#taking-over-a-slot)), before it opens any file.
///
/// # Errors
/// When an interrupted compaction that folded this slot's files cannot be finished:
/// continuing those files would hide every later write of the slot.
pub(crate) fn take_over_slot(dir: &Path, id: &str) -> Result<()> {
    let names = file::list_names(dir)?;
    crate::liveness::remove_dead_temps(dir, id, &names);
    for kind in FileKind::ALL.into_iter().filter(|k| k.is_live()) {
        let name = names::db_name(kind, id);
        match file::remove_db(dir, &name) {
            Ok(true) => log::debug!("removed {name}: live gauges of a dead writer in slot {id}"),
            Ok(false) => {}
            // A planted non-file under the name: creating that gauge will fail, naming it.
            Err(e) => log::warn!("cannot reset the live gauges of slot {id}: {e}"),
        }
    }
    if superseded(dir, &names).keys().any(|name| worker_id_of(name) == Some(id)) {
        compact::finish_interrupted(dir)?;
    }
    Ok(())
}

/// What [`clear_directory`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleared {
    /// Names of the files (and symlinks) removed.
    pub removed: Vec<String>,
    /// Names of ours that are neither files nor symlinks (a directory or FIFO planted
    /// under one): left in place, and logged.
    pub left: Vec<String>,
}

/// Startup hygiene for a supervisor: removes every file of ours or Python's from a
/// previous run (`counter_*.db`, `histogram_*.db`, `summary_*.db`, `gauge_MODE_*.db`,
/// compaction archives, `writer_*.lock`, our `.NAME.PID.tmp` leftovers, and the
/// compaction's manifests, staging files, lock and sequence files), and nothing else.
/// A symlink under one of those names is removed (never followed).
///
/// Call it once at boot, **before** forking workers and before any process of this run
/// writes. It refuses to touch a directory in which a writer of ours is still alive
/// (another instance sharing the directory) or a compaction runs, because wiping a live
/// writer's files would make its counters go backwards.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{cleanup::clear_directory, Opts, Registry, WorkerId};
/// std::fs::write(dir.path().join("notes.txt"), "not ours")?;
/// drop(Registry::builder().dir(dir.path()).worker_id(WorkerId::new("w1")?).build()?);
/// let cleared = clear_directory(dir.path())?; // at boot, before forking workers
/// assert_eq!(cleared.removed, ["writer_w1.lock"]);
/// assert!(dir.path().join("notes.txt").exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`ErrorKind::WorkerIdInUse`](crate::ErrorKind::WorkerIdInUse) naming a live writer;
/// [`ErrorKind::CompactionInProgress`](crate::ErrorKind::CompactionInProgress) while a
/// compaction runs; an I/O kind naming a file or the directory that could not be read
/// or removed.
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
        if let Some(id) = names::parse_lock_name(name)
            && liveness(dir, id) == Liveness::Alive
        {
            return Err(Error::new(crate::ErrorKind::WorkerIdInUse)
                .about(id)
                .at(&dir.join(name))
                .expected("no live writer in a directory being cleared"));
        }
    }
    if crate::liveness::compaction_running(dir) {
        return Err(Error::new(crate::ErrorKind::CompactionInProgress)
            .at(&dir.join(COMPACT_LOCK))
            .expected("no compaction running in a directory being cleared"));
    }
    let mut cleared = Cleared::default();
    for name in names.into_iter().filter(|n| names::is_ours(n)) {
        match file::remove_file_or_link(dir, &name) {
            Ok(true) => cleared.removed.push(name),
            Ok(false) => {}
            Err(e) if e.kind() == crate::ErrorKind::NotARegularFile => {
                log::warn!("clear_directory leaves {name} in place: {e}");
                cleared.left.push(name);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cleared)
}
