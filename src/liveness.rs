//! The lock protocol: who is alive, who holds a worker slot, who compacts.
//!
//! Every writer of this crate holds an exclusive lock (an open-file-description
//! record lock, `F_OFD_SETLK`) on `writer_ID.lock` in the metrics directory for as
//! long as it lives. The kernel drops the lock when the process exits or is killed
//! (SIGKILL and OOM included), and a fork child closes its inherited copy at once, so
//! "the lock is free" means "no live process writes under this ID", whatever happened
//! to its pid since. Probes and collectors *test* the lock (`F_OFD_GETLK`) without
//! taking it, so looking never delays a writer.
//!
//! * A writer creates its liveness file, locks it, and checks that the file it locked
//!   is still the one linked under the name (a compactor may have removed it in
//!   between); only then does it create or open any other file of its ID. So a
//!   temporary file `.KIND_ID.db.PID.tmp` is only ever created by the holder of `ID`'s
//!   lock, and a writer that is just starting either holds the lock or holds nothing.
//! * A compactor that folds or removes a dead writer's files takes a **shared** lock on
//!   its liveness file first and keeps it until the files and the liveness file are
//!   gone: a writer starting under that ID meanwhile cannot take the exclusive lock and
//!   waits, while probes (which ask for a conflicting exclusive lock) still read the
//!   writer as dead.
//! * The directory's compaction lock (`.compact.lock`, exclusive) lets one compactor
//!   run at a time; the sequence file `.compaction.seq` is a seqlock counter that
//!   scrapes read around a compaction's renames.
//!
//! A pid-named writer records its pid in its liveness file; compaction compares it to
//! running processes only to decide whether a dead writer's *files* may be folded (a
//! Python worker, which takes no lock, may have its pid again), never to decide
//! liveness.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};
use crate::file;
use crate::format::names::{self, COMPACT_LOCK, COMPACT_SEQ, WorkerId};

/// Creates (if needed) and exclusively locks the liveness file of worker `id`. The
/// kernel drops the lock when the holder dies, however it dies.
pub(crate) fn lock_writer(dir: &Path, id: &str, mode: u32) -> Result<File> {
    let path = dir.join(names::lock_name(id));
    let file = open_or_create(&path, mode).map_err(|e| file::open_error(&path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
    file::check_regular(&path, &meta)?;
    // The umask may have taken bits of `mode` away when the file was created (or an
    // earlier writer used another mode): a scraper of the writers' group probes this
    // file, so give it `mode`, as `.db` files get it.
    if meta.mode() & 0o777 != mode
        && let Err(e) = file.set_permissions(fs::Permissions::from_mode(mode))
    {
        log::warn!("cannot set mode {mode:o} on {}: {e}", path.display());
    }
    match try_lock(&file, LockKind::Exclusive) {
        Ok(true) if same_inode(&file, &path) => {
            // Record who holds the ID, so that compaction can tell an ID that is the
            // writer's pid (which a later process, maybe a Python worker, may get
            // again) from a stable slot name.
            let pid = format!("{}\n", std::process::id());
            if let Err(e) = file.set_len(0).and_then(|()| file.write_all_at(pid.as_bytes(), 0)) {
                log::warn!("cannot record the writer's pid in {}: {e}", path.display());
            }
            Ok(file)
        }
        // The compactor removed the file between our open and our lock: the lock we
        // hold is on a name nobody sees. Report it as in use; the caller retries.
        Ok(true) => {
            Err(Error::new(ErrorKind::WorkerIdInUse).about(id).at(&path).expected("a liveness file still linked"))
        }
        Ok(false) => Err(Error::new(ErrorKind::WorkerIdInUse).about(id).at(&path).expected(
            "a worker ID no live writer holds (another process, or another Registry on this directory in this process)",
        )),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// How long a writer waits for a worker ID held by someone else when no compaction
/// runs: the previous holder may be exiting (its descriptor closes a moment after the
/// exit is reported to its parent, and a child it is spawning holds a copy until it
/// execs).
const ID_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a writer waits for a worker ID while a compaction runs: the compactor holds
/// the IDs of the dead writers it folds until their files are folded and removed.
const ID_WAIT_COMPACTION: std::time::Duration = std::time::Duration::from_secs(60);

/// Takes worker `id`'s slot: its exclusive liveness lock ([`lock_writer`]), waiting up
/// to [`ID_WAIT`] while another holder may be going away, or up to
/// [`ID_WAIT_COMPACTION`] while a compaction runs (it holds the slots it folds).
///
/// # Errors
/// [`ErrorKind::WorkerIdInUse`] naming the liveness file when the ID stays held; an I/O
/// kind naming it when it cannot be opened or locked.
pub(crate) fn take_slot(dir: &Path, id: &str, mode: u32) -> Result<File> {
    let start = std::time::Instant::now();
    loop {
        match lock_writer(dir, id, mode) {
            Err(e) if e.kind() == ErrorKind::WorkerIdInUse => {
                let waited = start.elapsed();
                if waited >= ID_WAIT_COMPACTION || (waited >= ID_WAIT && !compaction_running(dir)) {
                    return Err(e);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Claims the lowest free slot of the automatic worker ID `auto` ([`WorkerId::auto`]):
/// tries `PREFIX-0`, `PREFIX-1`, ... in order and keeps the first whose exclusive
/// liveness lock it takes ([`lock_writer`]: the lock, not a name, is the claim, so two
/// processes claiming at once never get the same slot). A slot whose lock a live writer
/// holds is skipped; one held by a compactor (a shared lock: its writer is dead) is
/// waited for as [`take_slot`] waits, so that compaction does not make the directory
/// grow a slot. Returns the slot's ID and its locked liveness file.
///
/// # Errors
/// An I/O kind naming the liveness file of a slot that cannot be opened or locked.
pub(crate) fn claim_free_slot(dir: &Path, auto: &WorkerId, mode: u32) -> Result<(WorkerId, File)> {
    let mut n = 0u32;
    loop {
        let id = auto.auto_slot(n).expect("an automatic worker ID");
        match lock_writer(dir, id.as_str(), mode) {
            Ok(file) => return Ok((id, file)),
            Err(e) if e.kind() == ErrorKind::WorkerIdInUse => {
                if liveness(dir, id.as_str()) != Liveness::Alive {
                    match take_slot(dir, id.as_str(), mode) {
                        Ok(file) => return Ok((id, file)),
                        Err(e) if e.kind() == ErrorKind::WorkerIdInUse => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
        n = n.checked_add(1).ok_or_else(|| {
            Error::new(ErrorKind::WorkerIdInUse).about(auto.to_string()).expected("a free automatic slot")
        })?;
    }
}

/// Takes a shared lock on a dead writer's liveness file, so that no writer can take the
/// ID (writers need the exclusive lock) while probes still read it as dead (they test
/// with a shared lock). `None` when a writer holds it or it is gone.
pub(crate) fn hold_dead(dir: &Path, id: &str) -> Option<File> {
    match hold_if_dead(dir, id) {
        Held::Dead(file) => Some(file),
        Held::NotDead | Held::NoLivenessFile => None,
    }
}

/// What [`hold_if_dead`] found.
#[derive(Debug)]
pub(crate) enum Held {
    /// The writer is dead; its liveness file, held with a shared lock.
    Dead(File),
    /// A writer holds the lock (or the file could not be opened or locked).
    NotDead,
    /// The ID has no liveness file: a stock Python worker's, whose liveness is unknown.
    NoLivenessFile,
}

/// As [`hold_dead`], telling an ID without a liveness file from one whose writer lives.
pub(crate) fn hold_if_dead(dir: &Path, id: &str) -> Held {
    let path = dir.join(names::lock_name(id));
    match open_read(&path) {
        Ok(file) if try_lock(&file, LockKind::Shared).unwrap_or(false) && same_inode(&file, &path) => Held::Dead(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Held::NoLivenessFile,
        _ => Held::NotDead,
    }
}

/// Whether the writer with liveness file `dir/writer_ID.lock` is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// Its lock is held: the process is running.
    Alive,
    /// Its lock is free: the process has exited or was killed.
    Dead,
    /// It has no liveness file (a Python writer, or one that predates liveness): treated
    /// as alive until marked dead, as Python treats every writer.
    Unknown,
}

/// Whether the writer with worker ID `id` in `dir` is alive: probes its liveness file
/// without blocking, without taking a lock and without following links.
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
    let path = dir.join(names::lock_name(id));
    let Ok(file) = open_read(&path) else {
        return Liveness::Unknown;
    };
    if !file.metadata().is_ok_and(|m| m.file_type().is_file()) {
        return Liveness::Unknown;
    }
    // A writer holds the exclusive lock; a compactor folding a dead writer holds a
    // shared one (the writer is dead then). Testing takes no lock, so a probe never
    // gets in the way of a writer taking its slot.
    match lock_held(&file) {
        Ok(None | Some(LockKind::Shared)) => Liveness::Dead,
        Ok(Some(LockKind::Exclusive)) => Liveness::Alive,
        Err(_) => Liveness::Unknown,
    }
}

/// The pid recorded in worker `id`'s liveness file by the last writer that held it.
pub(crate) fn holder(dir: &Path, id: &str) -> Option<u32> {
    let text = file::read_text(dir, &names::lock_name(id)).ok()?;
    text.trim().parse().ok()
}

/// Whether a process with pid `pid` (decimal) exists now, ours or not.
pub(crate) fn pid_running(pid: &str) -> bool {
    let Ok(pid) = pid.parse::<i32>() else { return false };
    if pid <= 0 {
        return false;
    }
    // Signal 0 checks for existence only; EPERM means it exists under another user.
    matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Ok(()) | Err(nix::errno::Errno::EPERM))
}

/// Opens `path` for reading and writing, creating it with `mode`, never through a
/// symlink and never blocking.
fn open_or_create(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// Opens `path` read-only, never through a symlink and never blocking.
fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)
}

/// A whole-file lock: exclusive for a live writer or a compactor, shared for a
/// compactor holding a dead writer's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockKind {
    Shared,
    Exclusive,
}

/// The `struct flock` for a lock of `kind` over the whole file.
fn whole_file(kind: LockKind) -> libc::flock {
    let l_type = match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
    };
    // l_pid must be 0 for open-file-description locks.
    libc::flock {
        l_type: l_type as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// Tries to take an open-file-description lock (`F_OFD_SETLK`) of `kind` on the whole
/// of `file`, without waiting; `false` when another holder's lock conflicts.
///
/// Open-file-description locks, like `flock`, belong to the open file (not the
/// process), are released by the kernel when the last descriptor of it closes (exit,
/// SIGKILL, OOM) and conflict between two opens in one process. Unlike `flock` they
/// can be *tested* without being taken (`F_OFD_GETLK`), which is how probes and
/// collectors look at them.
fn try_lock(file: &File, kind: LockKind) -> io::Result<bool> {
    match nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_OFD_SETLK(&whole_file(kind))) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(false),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// The lock another open file holds on `file` that would conflict with an exclusive
/// one, found with `F_OFD_GETLK`: nothing is locked by asking.
fn lock_held(file: &File) -> io::Result<Option<LockKind>> {
    let mut query = whole_file(LockKind::Exclusive);
    nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_OFD_GETLK(&mut query)).map_err(io::Error::from)?;
    Ok(match i32::from(query.l_type) {
        libc::F_UNLCK => None,
        libc::F_RDLCK => Some(LockKind::Shared),
        _ => Some(LockKind::Exclusive),
    })
}

fn same_inode(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Takes the directory's compaction lock without waiting.
pub(crate) fn lock_compaction(dir: &Path) -> Result<File> {
    let path = dir.join(COMPACT_LOCK);
    let file = open_or_create(&path, 0o600).map_err(|e| Error::io(&path, e))?;
    match try_lock(&file, LockKind::Exclusive) {
        Ok(true) => Ok(file),
        Ok(false) => Err(Error::new(ErrorKind::CompactionInProgress)
            .at(&path)
            .expected("no other compaction running on this directory")),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Whether a compaction holds the directory's lock right now.
pub(crate) fn compaction_running(dir: &Path) -> bool {
    let Ok(file) = open_read(&dir.join(COMPACT_LOCK)) else {
        return false;
    };
    matches!(lock_held(&file), Ok(Some(_)))
}

/// The compaction sequence number (0 when there has never been a compaction).
pub(crate) fn read_compaction_seq(dir: &Path) -> u64 {
    let mut buf = [0u8; 8];
    match open_read(&dir.join(COMPACT_SEQ)) {
        Ok(file) if file.read_exact_at(&mut buf, 0).is_ok() => u64::from_le_bytes(buf),
        _ => 0,
    }
}

/// Adds one to the compaction sequence number and makes it durable (creating the file
/// with `mode` the first time).
pub(crate) fn bump_compaction_seq(dir: &Path, mode: u32) -> Result<u64> {
    let path = dir.join(COMPACT_SEQ);
    let file = open_or_create(&path, mode).map_err(|e| Error::io(&path, e))?;
    let mut buf = [0u8; 8];
    let current = if file.read_exact_at(&mut buf, 0).is_ok() { u64::from_le_bytes(buf) } else { 0 };
    let next = current + 1;
    file.write_all_at(&next.to_le_bytes(), 0).map_err(|e| Error::io(&path, e))?;
    file.sync_data().map_err(|e| Error::io(&path, e))?;
    Ok(next)
}

/// Removes the temporary files (`.KIND_ID.db.PID.tmp`) of worker `id` among `names`
/// (the directory's): left by a writer of `id` killed between creating a file and
/// linking it into place. The caller holds `id`'s lock (exclusive, as the writer that
/// has just taken the slot, or shared, as a compactor), so no live writer owns them.
/// Returns the names removed.
pub(crate) fn remove_dead_temps(dir: &Path, id: &str, names: &[String]) -> Vec<String> {
    let mut removed = Vec::new();
    for name in names {
        if names::parse_writer_temp(name).is_none_or(|t| t.db.id != id) {
            continue;
        }
        match file::remove_db(dir, name) {
            Ok(true) => {
                log::debug!("removed {name}, left by a writer killed while creating it");
                removed.push(name.clone());
            }
            Ok(false) => {}
            Err(e) => log::warn!("cannot remove a dead writer's temporary file: {e}"),
        }
    }
    removed
}

/// Whether compaction defers the dead writer `id` of `dir` for now: the ID was its
/// writer's pid (not a stable slot name; the liveness file records which), and a
/// running process has that pid again (it may be a Python worker, which takes no lock,
/// continuing the same files).
pub fn pid_in_use(dir: &Path, id: &str) -> bool {
    holder(dir, id).is_some_and(|pid| pid.to_string() == id) && pid_running(id)
}
