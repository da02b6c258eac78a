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
        return Err(Error::new(ErrorKind::NotADirectory).at(dir).expected("a directory").found("another kind of file"));
    }
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK).map_err(|e| {
        Error::new(ErrorKind::DirNotWritable)
            .at(dir)
            .expected("write and search permission")
            .caused_by(io::Error::from(e))
    })?;
    warn_if_world_writable(dir, &meta);
    warn_if_copy_on_write(dir);
    Ok(dir.to_path_buf())
}

/// The name of the copy-on-write file system with magic number `magic` (`statfs`'s
/// `f_type`): one where `fallocate` does not reserve the blocks that a later overwrite
/// of an existing page needs, since every overwrite allocates anew.
pub(crate) fn copy_on_write_fs(magic: u64) -> Option<&'static str> {
    match magic & 0xffff_ffff {
        0x9123_683e => Some("btrfs"),
        0x2fc1_2fc1 => Some("ZFS"),
        0xca45_1a4e => Some("bcachefs"),
        0x3434 => Some("NILFS2"),
        _ => None,
    }
}

/// Warns when `dir` is on a copy-on-write file system, where the full-disk promise
/// (space is reserved when a series is created, so a write never fails) does not hold.
pub(crate) fn warn_if_copy_on_write(dir: &Path) {
    let Ok(stat) = nix::sys::statfs::statfs(dir) else { return };
    if let Some(fs) = copy_on_write_fs(stat.filesystem_type().0 as u64) {
        log::warn!(
            "metrics directory {} is on {fs}, a copy-on-write file system: blocks reserved with fallocate do not \
             cover overwrites, so on a full disk a write into an existing page can fail (the SIGBUS guard then \
             drops that page's writes and the file reads as truncated; without the guard the process dies); \
             prefer tmpfs, ext4 or XFS",
            dir.display()
        );
    }
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
        let tmp = dir.join(format::names::writer_temp_name(name, std::process::id()));
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
            .expected("a file with one name (never written through)")
            .found(format!("{} hard links", meta.nlink())));
    }
    Ok(Some(file))
}

/// The error for a failed open of `path` with `O_NOFOLLOW`: `ELOOP` (and `EISDIR`)
/// mean the name is not a regular file.
pub(crate) fn open_error(path: &Path, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) => Error::new(ErrorKind::NotARegularFile)
            .at(path)
            .expected("a regular file (a symlink is never followed)")
            .found("a symlink"),
        Some(libc::EISDIR) => {
            Error::new(ErrorKind::NotARegularFile).at(path).expected("a regular file").found("a directory")
        }
        _ => Error::io(path, e),
    }
}

/// Fails unless `meta` (of an open descriptor) is a regular file's: a FIFO, socket or
/// device planted under a file's name opens without blocking (`O_NONBLOCK`) but is
/// never used.
pub(crate) fn check_regular(path: &Path, meta: &fs::Metadata) -> Result<()> {
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
    Err(Error::new(ErrorKind::NotARegularFile).at(path).expected("a regular file").found(found))
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

/// The names of the `*.db` entries of `dir` (any file type), sorted by bytes, without
/// dotfiles: the set Python's `glob('*.db')` sees, in a deterministic order; and the
/// worker IDs that have a liveness file (`writer_ID.lock`, any file type).
pub(crate) fn list_db_names(dir: &Path) -> io::Result<(Vec<ListedDb>, hashbrown::HashSet<String>)> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::DirEntryExt;
    let mut names = Vec::new();
    let mut locks = hashbrown::HashSet::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.as_bytes();
        if bytes.ends_with(b".db") && !bytes.starts_with(b".") {
            // `file_type` is the listing's own type field where the file system fills
            // it in (no system call); where it does not, the hint is left out.
            let regular_ino = entry.file_type().ok().filter(fs::FileType::is_file).map(|_| entry.ino());
            let id = name.to_str().and_then(crate::format::names::worker_id_of).map(|id| {
                let start = bytes.len() - ".db".len() - id.len();
                start..start + id.len()
            });
            names.push(ListedDb { name, regular_ino, id });
        } else if let Some(id) = name.to_str().and_then(crate::format::names::parse_lock_name) {
            locks.insert(id.to_owned());
        }
    }
    names.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok((names, locks))
}

/// A `*.db` name of a directory listing, with what the listing itself says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedDb {
    pub(crate) name: std::ffi::OsString,
    /// The inode number, when the listing says the entry is a regular file (`d_type`):
    /// a file still mapped under that name is the same file while this is its inode
    /// (an inode number is not reused while a mapping holds the inode).
    pub(crate) regular_ino: Option<u64>,
    /// Where the name's worker ID is in it, if it has one (see
    /// [`crate::format::names::worker_id_of`]): found once per listing, asked by every
    /// scrape.
    id: Option<std::ops::Range<usize>>,
}

impl ListedDb {
    /// The worker ID of the name, if it has one.
    pub(crate) fn worker_id(&self) -> Option<&str> {
        self.name.to_str()?.get(self.id.clone()?)
    }
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
    regular(file)
}

/// As [`open_read_only`], for the entry `name` of the directory open as `dir`: one path
/// component to resolve instead of every component of the directory's path (a tenth of
/// a cold scrape of 10,000 small files went to walking the same path again).
pub(crate) fn open_read_only_at(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::OsStr,
) -> io::Result<(File, fs::Metadata)> {
    regular(open_at_unmeasured(dir, name)?)
}

/// As [`open_read_only_at`], without the `fstat` that checks the file is regular: for
/// callers that know it otherwise and fail safely if it is not (never through a
/// symlink, never blocking).
pub(crate) fn open_at_unmeasured(dir: std::os::fd::BorrowedFd<'_>, name: &std::ffi::OsStr) -> io::Result<File> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(dir, name, flags, nix::sys::stat::Mode::empty()).map_err(io::Error::from)?;
    Ok(File::from(fd))
}

/// `file` and its metadata if it is a regular file; an error of kind `InvalidInput`
/// otherwise.
fn regular(file: File) -> io::Result<(File, fs::Metadata)> {
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
            Error::new(ErrorKind::NotARegularFile).at(&path).expected("a regular file").found("a symlink")
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
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_on_write_file_systems_are_told_by_their_magic_number() {
        assert_eq!(copy_on_write_fs(0x9123_683e), Some("btrfs"));
        assert_eq!(copy_on_write_fs(0xffff_ffff_9123_683e), Some("btrfs"), "sign-extended f_type");
        assert_eq!(copy_on_write_fs(0x2fc1_2fc1), Some("ZFS"));
        assert_eq!(copy_on_write_fs(0xca45_1a4e), Some("bcachefs"));
        assert_eq!(copy_on_write_fs(0x0102_1994), None, "tmpfs");
        assert_eq!(copy_on_write_fs(0xef53), None, "ext4");
        assert_eq!(copy_on_write_fs(0x5846_5342), None, "XFS");
    }

    #[test]
    fn a_listing_gives_each_db_name_its_worker_id_and_the_liveness_files_ids() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "counter_1234.db",
            "gauge_livesum_w-3.db",
            "histogram_0archive-2.db",
            "counter_.db",
            "notakind_7.db",
            "summary_a.b.db",
            "writer_w-3.lock",
        ];
        for name in names {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let (listed, locks) = list_db_names(dir.path()).unwrap();
        let got: Vec<(String, Option<&str>)> =
            listed.iter().map(|l| (l.name.to_string_lossy().into_owned(), l.worker_id())).collect();
        for (name, id) in &got {
            assert_eq!(*id, crate::format::names::worker_id_of(name), "{name}");
        }
        assert_eq!(got.iter().find(|(n, _)| n == "gauge_livesum_w-3.db").unwrap().1, Some("w-3"));
        assert_eq!(got.iter().find(|(n, _)| n == "summary_a.b.db").unwrap().1, Some("a.b"));
        assert_eq!(got.len(), 6);
        assert!(locks.contains("w-3") && locks.len() == 1);
    }
}
