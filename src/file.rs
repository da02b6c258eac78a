//! Files and directories: the place that opens, creates, reserves and checks things
//! on disk.
//!
//! Rules kept here:
//! * A path inside the metrics directory is never followed if it is a symlink
//!   (`O_NOFOLLOW`), and opening never blocks (`O_NONBLOCK`, so a FIFO named `*.db`
//!   cannot hang us).
//! * A new file is built under a dot-name (which collectors ignore), given its blocks,
//!   its header and its mode, and only then linked to its real name, so no collector
//!   ever sees a zero-length or half-initialised file (Python's issue #1199).
//! * Blocks are reserved with `fallocate` before a page is mapped, so a full disk is an
//!   error at series creation and never a SIGBUS.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::format;

/// Checks that `dir` is a writable directory, warning when it is world-writable
/// without the sticky bit. Returns the path as given.
pub(crate) fn check_dir(dir: &Path) -> Result<PathBuf> {
    let meta = fs::metadata(dir)
        .map_err(|e| Error::new(ErrorKind::NotADirectory).at(dir).expected("an existing directory").caused_by(e))?;
    if !meta.is_dir() {
        return Err(Error::new(ErrorKind::NotADirectory).at(dir).expected("a directory, found another kind of file"));
    }
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK).map_err(|e| {
        Error::new(ErrorKind::DirNotWritable)
            .at(dir)
            .expected("write and search permission")
            .caused_by(io::Error::from(e))
    })?;
    warn_if_world_writable(dir, &meta);
    Ok(dir.to_path_buf())
}

/// Warns when `dir` is world-writable without the sticky bit: any local user could
/// then replace or remove the files in it.
pub(crate) fn warn_if_world_writable(dir: &Path, meta: &fs::Metadata) {
    let mode = meta.mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        log::warn!(
            "metrics directory {} is world-writable without the sticky bit: any local user can replace its files",
            dir.display()
        );
    }
}

/// Removes `dir/name` if it is a regular file (never through a symlink); a missing
/// file is fine.
pub(crate) fn remove_db(dir: &Path, name: &str) -> Result<bool> {
    remove_if(dir, name, |t| t.is_file())
}

/// Removes `dir/name` if it is a regular file or a symlink (the link itself, never what
/// it points at); a missing name is fine. Anything else is refused.
pub(crate) fn remove_file_or_link(dir: &Path, name: &str) -> Result<bool> {
    remove_if(dir, name, |t| t.is_file() || t.is_symlink())
}

/// Unlinks `dir/name` if its own type (never a symlink's target's) passes `allowed`;
/// `Ok(false)` when there is nothing by that name.
fn remove_if(dir: &Path, name: &str, allowed: impl Fn(fs::FileType) -> bool) -> Result<bool> {
    let path = dir.join(name);
    match fs::symlink_metadata(&path) {
        Ok(meta) if allowed(meta.file_type()) => match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(&path, e)),
        },
        Ok(_) => Err(Error::new(ErrorKind::NotARegularFile).at(&path).expected("a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Opens `dir/name` for reading and writing without following symlinks or blocking,
/// creating it (with `mode`, a header and [`format::INITIAL_SIZE`] reserved bytes)
/// when it does not exist.
pub(crate) fn open_or_create_db(dir: &Path, name: &str, mode: u32) -> Result<File> {
    let path = dir.join(name);
    loop {
        if let Some(file) = open_existing(&path)? {
            return Ok(file);
        }
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        let init = (|| -> Result<()> {
            file.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| Error::io(&tmp, e))?;
            reserve(&file, &tmp, 0, format::INITIAL_SIZE)?;
            file.write_all_at(&format::encode_header(format::HEADER_LEN as u32), 0).map_err(|e| Error::io(&tmp, e))?;
            Ok(())
        })();
        if let Err(e) = init {
            let _ = fs::remove_file(&tmp);
            return Err(e.at(&path)); // name the file asked for, not the removed dot-name
        }
        // link(2) never replaces an existing name: if another process created the file
        // in the meantime, use theirs.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
}

/// Opens the existing regular file `path` for reading and writing; `None` when there is
/// nothing by that name.
fn open_existing(path: &Path) -> Result<Option<File>> {
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_error(path, e)),
    };
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    check_regular(path, &meta)?;
    // Our files have exactly one name. A second one means a hard link was planted,
    // possibly to a file outside the directory: never write through it.
    if meta.nlink() > 1 {
        return Err(Error::new(ErrorKind::NotARegularFile)
            .at(path)
            .expected(format!("a file with one name, found {} hard links (never written through)", meta.nlink())));
    }
    Ok(Some(file))
}

/// The error for a failed open of `path` with `O_NOFOLLOW`: `ELOOP` (and `EISDIR`)
/// mean the name is not a regular file.
fn open_error(path: &Path, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) => {
            Error::new(ErrorKind::NotARegularFile).at(path).expected("a regular file, found a symlink (never followed)")
        }
        Some(libc::EISDIR) => {
            Error::new(ErrorKind::NotARegularFile).at(path).expected("a regular file, found a directory")
        }
        _ => Error::io(path, e),
    }
}

/// Fails unless `meta` (of an open descriptor) is a regular file's: a FIFO, socket or
/// device planted under a file's name opens without blocking (`O_NONBLOCK`) but is
/// never used.
fn check_regular(path: &Path, meta: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    let found = if ft.is_file() {
        return Ok(());
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else {
        "another kind of file"
    };
    Err(Error::new(ErrorKind::NotARegularFile).at(path).expected(format!("a regular file, found {found}")))
}

/// Current size of `file`.
pub(crate) fn size(file: &File, path: &Path) -> Result<usize> {
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    usize::try_from(len).map_err(|_| Error::new(ErrorKind::FileTooLarge).at(path))
}

/// Reserves blocks for `[offset, offset + len)`, extending the file if needed. On a
/// file system without `fallocate`, zeros are written instead where the range lies
/// beyond the current end of the file.
pub(crate) fn reserve(file: &File, path: &Path, offset: usize, len: usize) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    let (off, n) = (offset as libc::off_t, len as libc::off_t);
    match nix::fcntl::fallocate(file, nix::fcntl::FallocateFlags::empty(), off, n) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EOPNOTSUPP) => {
            let current = size(file, path)?;
            let start = offset.max(current);
            let end = offset + len;
            let zeros = vec![0u8; 64 * 1024];
            let mut pos = start;
            while pos < end {
                let n = zeros.len().min(end - pos);
                file.write_all_at(&zeros[..n], pos as u64).map_err(|e| Error::io(path, e))?;
                pos += n;
            }
            Ok(())
        }
        Err(e) => Err(Error::io(path, io::Error::from(e))),
    }
}

/// Reads the whole file (the writer reads its own file once when it reopens it).
pub(crate) fn read_all(file: &File, path: &Path, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0).map_err(|e| Error::io(path, e))?;
    Ok(buf)
}

/// Writes `bytes` at `offset`.
pub(crate) fn write_at(file: &File, path: &Path, bytes: &[u8], offset: usize) -> Result<()> {
    file.write_all_at(bytes, offset as u64).map_err(|e| Error::io(path, e))
}

/// The name of a writer's liveness file.
pub(crate) fn liveness_name(id: &str) -> String {
    format!("writer_{id}.lock")
}

/// Creates (if needed) and exclusively locks the liveness file of worker `id`. The
/// kernel drops the lock when the holder dies, however it dies.
pub(crate) fn lock_liveness(dir: &Path, id: &str, mode: u32) -> Result<File> {
    let path = dir.join(liveness_name(id));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| open_error(&path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
    check_regular(&path, &meta)?;
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

/// Takes a shared lock on a dead writer's liveness file, so that no writer can take the
/// ID (writers need the exclusive lock) while probes still read it as dead (they test
/// with a shared lock). `None` when a writer holds it or it is gone.
pub(crate) fn hold_dead_liveness(dir: &Path, id: &str) -> Option<File> {
    let path = dir.join(liveness_name(id));
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .ok()?;
    (try_lock(&file, LockKind::Shared).ok()? && same_inode(&file, &path)).then_some(file)
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

/// Probes the liveness of worker `id` without blocking and without following links.
pub(crate) fn probe_liveness(dir: &Path, id: &str) -> Liveness {
    let path = dir.join(liveness_name(id));
    let Ok(file) =
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC).open(&path)
    else {
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
pub(crate) fn liveness_holder(dir: &Path, id: &str) -> Option<u32> {
    let text = read_text(dir, &liveness_name(id)).ok()?;
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

/// The names of the `*.db` entries of `dir` (any file type), sorted by bytes, without
/// dotfiles: the set Python's `glob('*.db')` sees, in a deterministic order.
pub(crate) fn list_db_names(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let bytes = name.as_bytes();
        if bytes.ends_with(b".db") && !bytes.starts_with(b".") {
            names.push(name);
        }
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// The type and identity of `path` itself, never following a symlink.
pub(crate) fn lstat(path: &Path) -> io::Result<fs::Metadata> {
    fs::symlink_metadata(path)
}

/// Opens `path` read-only for the collector: never through a symlink, never blocking
/// (a FIFO named `*.db` cannot hang a scrape), and only if it is a regular file (an
/// error of kind `InvalidInput` otherwise). Returns the file and its metadata.
pub(crate) fn open_read_only(path: &Path) -> io::Result<(File, fs::Metadata)> {
    let file =
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    Ok((file, meta))
}

/// Reads bytes `[offset, offset + len)` of `file` with `pread` into the same range of
/// `buf`, which only ever grows (a buffer reused across files is not zeroed again).
/// Returns how many bytes were read: fewer than `len` only when the file ends first.
pub(crate) fn read_at_into(file: &File, offset: usize, len: usize, buf: &mut Vec<u8>) -> io::Result<usize> {
    let end = offset + len;
    if buf.len() < end {
        buf.resize(end, 0);
    }
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[offset + done..end], (offset + done) as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
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

/// Name of the directory-wide compaction lock file.
pub(crate) const COMPACT_LOCK: &str = ".compact.lock";
/// Name of the compaction sequence file (a seqlock counter: odd while a compaction
/// publishes archives and removes their sources).
pub(crate) const COMPACT_SEQ: &str = ".compaction.seq";

/// Takes the directory's compaction lock without waiting.
pub(crate) fn lock_compaction(dir: &Path) -> Result<File> {
    let path = dir.join(COMPACT_LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
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
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.join(COMPACT_LOCK))
    else {
        return false;
    };
    matches!(lock_held(&file), Ok(Some(_)))
}

/// The compaction sequence number (0 when there has never been a compaction).
pub(crate) fn read_compaction_seq(dir: &Path) -> u64 {
    let mut buf = [0u8; 8];
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.join(COMPACT_SEQ))
    {
        Ok(file) if file.read_exact_at(&mut buf, 0).is_ok() => u64::from_le_bytes(buf),
        _ => 0,
    }
}

/// Adds one to the compaction sequence number and makes it durable (creating the file
/// with `mode` the first time).
pub(crate) fn bump_compaction_seq(dir: &Path, mode: u32) -> Result<u64> {
    let path = dir.join(COMPACT_SEQ);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    let mut buf = [0u8; 8];
    let current = if file.read_exact_at(&mut buf, 0).is_ok() { u64::from_le_bytes(buf) } else { 0 };
    let next = current + 1;
    file.write_all_at(&next.to_le_bytes(), 0).map_err(|e| Error::io(&path, e))?;
    file.sync_data().map_err(|e| Error::io(&path, e))?;
    Ok(next)
}

/// The permission bits of `dir/name` (never following a symlink), if it is a regular
/// file.
pub(crate) fn mode(dir: &Path, name: &str) -> Option<u32> {
    let meta = fs::symlink_metadata(dir.join(name)).ok()?;
    meta.file_type().is_file().then_some(meta.mode() & 0o777)
}

/// Reads a whole `.db` file without following symlinks or blocking.
pub(crate) fn read_db(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    let (file, meta) = open_read_only(&path).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput => Error::new(ErrorKind::NotARegularFile).at(&path).expected("a regular file"),
        _ if e.raw_os_error() == Some(libc::ELOOP) => {
            Error::new(ErrorKind::NotARegularFile).at(&path).expected("a regular file, found a symlink")
        }
        _ => Error::io(&path, e),
    })?;
    let mut buf = vec![0u8; usize::try_from(meta.len()).map_err(|_| Error::new(ErrorKind::FileTooLarge).at(&path))?];
    file.read_exact_at(&mut buf, 0).map_err(|e| Error::io(&path, e))?;
    Ok(buf)
}

/// Reads a small text file (a manifest) without following symlinks or blocking.
pub(crate) fn read_text(dir: &Path, name: &str) -> Result<String> {
    let bytes = read_db(dir, name)?;
    String::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::CorruptFile).at(&dir.join(name)).expected("UTF-8 text"))
}

/// Writes `bytes` to a new file `dir/name` (which must not exist) with `mode`, and
/// makes it durable.
pub(crate) fn write_new(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
    let path = dir.join(name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    file.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| Error::io(&path, e))?;
    file.write_all_at(bytes, 0).map_err(|e| Error::io(&path, e))?;
    file.sync_all().map_err(|e| Error::io(&path, e))
}

/// Renames `dir/from` to `dir/to` (replacing `to`).
pub(crate) fn rename(dir: &Path, from: &str, to: &str) -> Result<()> {
    fs::rename(dir.join(from), dir.join(to)).map_err(|e| Error::io(&dir.join(to), e))
}

/// Makes renames and removals in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

/// The names in `dir`, sorted (entries that are not UTF-8 are left out).
pub(crate) fn list_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Removes the temporary files (`.PREFIX_ID.db.PID.tmp`) among `names` (the directory's)
/// that a writer of worker `id` left when it was killed between creating a file and
/// linking it into place. Called by the writer that has just taken `id`'s exclusive
/// lock, so no live writer owns them.
pub(crate) fn remove_stale_temps(dir: &Path, id: &str, names: &[String]) {
    let suffix = format!("_{id}.db");
    for name in names {
        let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else { continue };
        let Some((db, pid)) = stem.rsplit_once('.') else { continue };
        if db.ends_with(&suffix) && !db.contains("0archive-") && pid.bytes().all(|b| b.is_ascii_digit()) {
            match remove_db(dir, name) {
                Ok(_) => log::debug!("removed {name}, left by a writer killed while creating it"),
                Err(e) => log::warn!("cannot remove a stale temporary file: {e}"),
            }
        }
    }
}
