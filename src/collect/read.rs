//! Reading one file: identity checks, a read-only mapping or a `pread` copy,
//! incremental parsing of new entries, and a snapshot of every entry's value (or, for a
//! file whose mapping is kept, where each value is, for the merge to load it there).
//!
//! State is kept per file name between scrapes and trusted only while the file is the
//! same inode: a repeat scrape parses only the entries appended since (bytes below
//! `used` never change) and re-reads the values.
//!
//! A file is read one of two ways, chosen by the caller each scrape (see the
//! collector's module docs for which):
//!
//! * **Mapped**: values are single 8-byte atomic loads, never torn. A repeat scrape
//!   reuses the mapping it kept while the directory listing gives the name the same
//!   device and inode as a regular file (else it stats the file), or, when the caller
//!   keeps none for it, maps it afresh and unmaps it after.
//! * **Copied**, for a file whose writer is dead (`sealed`): its bytes up to `used` are
//!   copied with `pread` into a buffer reused across files and parsed with the same
//!   code, and no mapping is kept. Nothing of ours writes such a file, so a copy cannot
//!   tear; an exited stock Python worker's file, whose pid a new process may be given,
//!   is copied twice and used only if both copies agree (`verify`), and when seen for
//!   the first time it is not `fstat`ed (identity from the listing, length from the
//!   reads). A file with more than [`READ_AT_MOST`] bytes in use is mapped instead,
//!   while it is read, and then remembered as a copied file is.
//!
//!   On Linux the collector reads such first-seen exited stock workers' files in
//!   batches (see [`crate::region::Batch`]): the kernel opens each, copies its first
//!   bytes twice and closes it, for many files per system call, and [`take_copies`]
//!   takes the two copies as [`refresh`] would take its own. A file the copies do not
//!   settle (more in use than was read, or copies that differ) is then read as above.

use std::cell::OnceCell;
use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashSet;

use super::SkipReason;
use super::name::FileKind;
use parking_lot::RwLock;

use super::merge::Values;
use super::model::MetricType;
use super::table::{BadKey, Epoch, Tables};
use crate::file;
use crate::format::{self, FormatError};
use crate::region::ReadMap;

mod ahead;

pub(crate) use ahead::Ahead;

/// What the collector remembers of one file between scrapes.
#[derive(Debug)]
pub(crate) struct FileState {
    dev: u64,
    ino: u64,
    pub(crate) kind: FileKind,
    /// The mapping kept between scrapes, if any (see the module docs).
    map: Option<ReadMap>,
    /// Length of the file (capped at [`MAX_MAP`]) when it was last mapped or read; for a
    /// file copied without `fstat`, the bytes read (at least `used`).
    len: usize,
    /// The stamp of a sealed file read whole (no skip) when its last change was already
    /// [`SETTLED`] old: while the file keeps it and its writer stays dead, what was read
    /// is still its content (see [`FileState::unchanged`]).
    sealed: Option<Stamp>,
    /// Offset just past the last entry parsed.
    parsed_to: usize,
    /// The key of the last entry parsed (what predicts the next one's).
    last_key: Option<u32>,
    /// Whether the parsed entries' keys were interned one after another (see [`KeyRun`]).
    run: KeyRun,
    /// The epoch of the parsed entries: a new one whenever they start afresh.
    pub(crate) epoch: Epoch,
    /// The parsed entries, shared with the other files that have the very same ones
    /// (see [`Layout`]).
    pub(crate) layout: Arc<Layout>,
    /// The entries while a parse adds to them (empty otherwise): `layout`'s, taken
    /// out of it (copied if it is shared).
    parsing: Layout,
    /// The families named by the file, in order of first mention, with that mention's key.
    pub(crate) families: Vec<(u32, u32)>,
    seen_families: HashSet<u32>,
    /// Whether the values are left in the kept mapping, for the merge to load (see
    /// [`FileState::values`]); else they are read into `values` and `timestamps`.
    deferred: bool,
    /// The value of each entry, as of the last refresh (empty while `deferred`).
    values: Vec<f64>,
    /// The timestamp of each entry of a gauge file, as of the last refresh (empty for
    /// other files; empty while `deferred`).
    timestamps: Vec<f64>,
    /// Read ahead while another thread held the tables: the entries are those of a file
    /// this thread parses later (see [`Ahead`]), taken by `Collector::read_all` once
    /// the reads end.
    pending: Option<ahead::Pending>,
}

/// The parsed entries of a file: the sample of each and where its value is.
///
/// Workers that declare the same series in the same order write byte-identical keys
/// at the same offsets, so their files have equal layouts: a reading thread gives a
/// file it parses the layout of an equal file it parsed before (see
/// [`Recent::share`]), so that 64 such files of 10,000 series hold one layout per
/// reading thread instead of 64, and a merge reads the same one for each, from the
/// cache. A file read for the first time whose bytes are those of such a file's keys
/// takes its layout without being parsed (see [`Recent::matching`]): one comparison
/// per entry, where parsing looks up each key and records each entry. A layout is
/// copied when one of its files gains an entry.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The sample of each parsed entry.
    pub(crate) samples: Vec<u32>,
    /// The value offset of each parsed entry.
    pub(crate) value_offsets: Vec<u32>,
}

/// Whether the keys of a file's entries, in order, are keys the tables interned one
/// after another: then their heads lie back to back in the tables, and a file whose
/// bytes hold those same heads at the same offsets, each followed by a value, has the
/// same entries (see [`Recent::matching`]). A file whose keys were all new when it was
/// read (such as the first file of each kind a fresh collector reads) is such a file,
/// and so is every file with the same entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyRun {
    /// No entry parsed yet.
    Empty,
    /// Entry `i` has key `first + i`.
    From(u32),
    /// Neither.
    Broken,
}

impl KeyRun {
    /// The run once the entry at `index` (after every earlier one) has `key`.
    fn then(self, index: usize, key: u32) -> KeyRun {
        match self {
            KeyRun::Empty if index == 0 => KeyRun::From(key),
            KeyRun::From(first) if u32::try_from(index).ok().and_then(|i| first.checked_add(i)) == Some(key) => self,
            _ => KeyRun::Broken,
        }
    }
}

/// How [`FileState::parse_shared`] left a file it did not skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parsed {
    /// Parsed up to `used`.
    Done,
    /// Not parsed at all: another thread held the tables for writing.
    Busy,
}

/// A file's path, joined only when a system call needs it (a warm scrape of a kept
/// mapping makes none, and joining 10,000 paths was a tenth of such a scrape).
#[derive(Debug)]
pub(crate) struct FilePath<'a> {
    dir: &'a Path,
    /// The directory, open, when it could be opened: files are opened relative to it.
    dir_fd: Option<std::os::fd::BorrowedFd<'a>>,
    /// The directory's device, with `dir_fd`.
    dir_dev: Option<u64>,
    name: &'a OsStr,
    /// The inode number the listing gave, if it said the entry is a regular file.
    listed_ino: Option<u64>,
    joined: OnceCell<PathBuf>,
}

impl<'a> FilePath<'a> {
    #[cfg(test)]
    pub(crate) fn new(dir: &'a Path, name: &'a OsStr) -> FilePath<'a> {
        FilePath { dir, dir_fd: None, dir_dev: None, name, listed_ino: None, joined: OnceCell::new() }
    }

    /// The file `name`, listed with inode `listed_ino` if regular, of the directory open
    /// as `dir_fd` (on device `dir_dev`).
    pub(crate) fn listed(
        dir: &'a Path,
        open: Option<(std::os::fd::BorrowedFd<'a>, u64)>,
        name: &'a OsStr,
        listed_ino: Option<u64>,
    ) -> FilePath<'a> {
        FilePath {
            dir,
            dir_fd: open.map(|(fd, _)| fd),
            dir_dev: open.map(|(_, dev)| dev),
            name,
            listed_ino,
            joined: OnceCell::new(),
        }
    }

    fn get(&self) -> &Path {
        self.joined.get_or_init(|| self.dir.join(self.name))
    }

    /// The file's device and inode as the listing gave them (the directory's device),
    /// if the listing said it is a regular file and the directory was opened.
    fn listed_identity(&self) -> Option<(u64, u64)> {
        Some((self.dir_dev?, self.listed_ino?))
    }

    /// Opens the file read-only without `fstat` (see [`file::open_read_only_at`]); only
    /// for a file the listing says is regular.
    fn open_unmeasured(&self) -> io::Result<std::fs::File> {
        match self.dir_fd {
            Some(dir) => file::open_at_unmeasured(dir, self.name),
            None => file::open_read_only(self.get()).map(|(f, _)| f),
        }
    }

    /// Opens the file read-only (see [`file::open_read_only`]).
    fn open(&self) -> io::Result<(std::fs::File, std::fs::Metadata)> {
        match self.dir_fd {
            Some(dir) => file::open_read_only_at(dir, self.name),
            None => file::open_read_only(self.get()),
        }
    }
}

/// A callback a test runs on a file's path.
#[cfg(test)]
pub(crate) type PathHook = Box<dyn Fn(&Path)>;

#[cfg(test)]
thread_local! {
    /// Runs (tests only) on the directory between a scrape's listing and its reads.
    pub(crate) static AFTER_LISTING: std::cell::RefCell<Option<PathHook>> = const { std::cell::RefCell::new(None) };
    /// Runs (tests only) on a file right after it is stat'ed (or, for a kept mapping, found
    /// unchanged in the listing), before it is mapped or read.
    pub(crate) static AFTER_STAT: std::cell::RefCell<Option<PathHook>> = const { std::cell::RefCell::new(None) };
    /// Whether this thread takes the tables for held for writing by another thread
    /// whenever it could read a file ahead of them (tests only; see [`Ahead`]).
    pub(crate) static TABLES_HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// How many files this thread read ahead of the tables (tests only).
    pub(crate) static READ_AHEAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// How many sealed files this thread mapped at once, expected too large to copy
    /// (tests only).
    pub(crate) static MAPPED_AT_ONCE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The index of `typ` in [`Buffers::first_reads`].
fn type_index(typ: MetricType) -> usize {
    match typ {
        MetricType::Counter => 0,
        MetricType::Gauge => 1,
        MetricType::Histogram => 2,
        MetricType::Summary => 3,
    }
}

/// Maps at most this much of a file: `used` is an `i32`, so nothing beyond is read.
const MAX_MAP: u64 = format::MAX_SIZE as u64;

/// A sealed file is read with one `pread` of this many bytes first (or fewer, if the
/// file is shorter or the files of its type read before had fewer in use, see
/// [`Buffers::first_read`]; or as many as were in use at the last scrape, if more): the
/// header and every entry of a small file, without copying the zeros of the space
/// writers reserve (a 64 KiB file of 1 KiB in use is common; copying all 64 KiB of
/// each of 10,000 such files made `pread` half of a scrape's time).
const FIRST_READ: usize = 4096;

/// A sealed file with more bytes than this in use is mapped while it is read rather
/// than copied. Measured on 64 dead writers' files of 10,000 series (1 MiB in use each),
/// copying them took 20 % more CPU than mapping them (a mapping takes the cached pages
/// without a copy), while for small files copying saves the `mmap`, page faults and
/// `munmap`.
pub(crate) const READ_AT_MOST: usize = 64 * 1024;

/// How a file is read this scrape (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access {
    /// Its writer is dead: copy its bytes (if it has at most [`READ_AT_MOST`] in use;
    /// else map it while it is read, whatever `keep_map` says).
    pub(crate) sealed: bool,
    /// With `sealed`: the writer's death is inferred, not known (a stock Python worker's
    /// pid that no process has now, which a new process may take): the bytes are copied
    /// twice and used only if both copies are equal, so that no value torn by a write
    /// during the copy is read; if they differ, the file is mapped while it is read.
    pub(crate) verify: bool,
    /// When it is mapped, keep the mapping for the next scrape (else unmap it after).
    pub(crate) keep_map: bool,
}

/// How old a file's last change (its `ctime`) must be before its stamp is trusted to
/// tell every later change: file times come from a clock that advances in steps (one
/// kernel tick; one second on some file systems), so a change within the same step as
/// the one recorded would leave the stamp as it was.
pub(crate) const SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

/// What `stat` says of a file that any change to it changes (given [`SETTLED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The stamp of `meta`, if its last change is at least [`SETTLED`] old now.
    pub(crate) fn settled(meta: &std::fs::Metadata) -> Option<Stamp> {
        Some(Stamp::of(meta)).filter(Stamp::is_settled)
    }

    /// Whether the last change this stamp records is at least [`SETTLED`] old now.
    pub(crate) fn is_settled(&self) -> bool {
        self.is_settled_at(std::time::SystemTime::now())
    }

    /// Whether the last change this stamp records was at least [`SETTLED`] old at `now`.
    pub(crate) fn is_settled_at(&self, now: std::time::SystemTime) -> bool {
        let now = now.duration_since(std::time::UNIX_EPOCH);
        let ctime = u64::try_from(self.ctime.0).ok().map(|s| std::time::Duration::new(s, self.ctime.1 as u32));
        match (now, ctime) {
            (Ok(now), Some(ctime)) => now.checked_sub(ctime).is_some_and(|age| age >= SETTLED),
            _ => false,
        }
    }
}

/// The `N` bytes at `offset` of a copy (the format is little-endian), if it holds them.
fn word<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes.get(offset..offset.checked_add(N)?)?.try_into().ok()
}

/// The bytes of a file being parsed: its mapping, or a copy of its first bytes.
#[derive(Debug, Clone, Copy)]
enum View<'a> {
    Map(&'a ReadMap),
    Bytes(&'a [u8]),
}

impl<'a> View<'a> {
    fn len(self) -> usize {
        match self {
            View::Map(map) => map.len(),
            View::Bytes(bytes) => bytes.len(),
        }
    }

    /// The header's `used` field (see [`ReadMap::load_used`]).
    fn load_used(self) -> Option<i32> {
        match self {
            View::Map(map) => map.load_used(),
            View::Bytes(bytes) => format::decode_used(bytes).ok(),
        }
    }

    fn load_u32(self, offset: usize) -> Option<u32> {
        match self {
            View::Map(map) => map.load_u32(offset),
            View::Bytes(bytes) => word(bytes, offset).map(u32::from_le_bytes),
        }
    }

    fn load_u64(self, offset: usize) -> Option<u64> {
        match self {
            View::Map(map) => map.load_u64(offset),
            View::Bytes(bytes) => word(bytes, offset).map(u64::from_le_bytes),
        }
    }

    /// Whether the entries from `start` have the heads `heads`, back to back there, each
    /// head ending where its value is (`value_offsets`, ascending, each value followed by
    /// the next head), and the last value ending at `end`. With `values`, each entry's
    /// value is read into it (emptied first) in the same pass, while its bytes are in
    /// the cache: all of them when the heads are equal.
    fn heads_equal(
        self,
        start: usize,
        heads: &[u8],
        value_offsets: &[u32],
        end: usize,
        mut values: Option<&mut Vec<f64>>,
    ) -> bool {
        if let Some(values) = values.as_deref_mut() {
            values.clear();
            values.reserve(value_offsets.len());
        }
        let (mut at, mut taken) = (start, 0);
        for &value in value_offsets {
            let value = value as usize;
            let Some(head) = value.checked_sub(at).and_then(|len| heads.get(taken..taken + len)) else { return false };
            if self.words_equal(at, head) != Some(true) {
                return false;
            }
            if let Some(values) = values.as_deref_mut() {
                // The offsets ascend to a last value ending at `end`, within the view:
                // the fallback is never taken when the heads are equal.
                values.push(self.load_u64(value).map_or(f64::NAN, f64::from_bits));
            }
            taken += head.len();
            at = value + format::VALUE_LEN;
        }
        taken == heads.len() && at == end
    }

    /// Whether the bytes at `start` are `expected` (`None` out of bounds, and as
    /// [`ReadMap::words_equal`] for a mapping).
    fn words_equal(self, start: usize, expected: &[u8]) -> Option<bool> {
        match self {
            View::Map(map) => map.words_equal(start, expected),
            View::Bytes(bytes) => Some(bytes.get(start..start.checked_add(expected.len())?)? == expected),
        }
    }

    /// The bytes `[start, end)`: copied into `buf` from a mapping (see
    /// [`ReadMap::copy_to`]), borrowed from a copy.
    fn bytes<'s>(self, start: usize, end: usize, buf: &'s mut Vec<u8>) -> Option<&'s [u8]>
    where
        'a: 's,
    {
        match self {
            View::Map(map) => map.copy_to(start, end, buf),
            View::Bytes(bytes) => bytes.get(start..end),
        }
    }
}

fn io_reason(err: &io::Error) -> SkipReason {
    match err.kind() {
        io::ErrorKind::NotFound => SkipReason::Vanished,
        io::ErrorKind::InvalidInput => SkipReason::NotARegularFile,
        // A symlink (O_NOFOLLOW), a socket (ENXIO) or a device without a driver.
        _ if matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENXIO | libc::ENODEV)) => {
            SkipReason::NotARegularFile
        }
        kind => SkipReason::Unreadable(kind),
    }
}

/// Brings the state of the file at `path` up to date, creating or replacing it in
/// `slot` as needed, and snapshots its values (unless its mapping is kept: then the
/// merge loads them from it).
///
/// # Errors
/// Why the file must be skipped this scrape. A state whose file was merely corrupt is
/// kept (with the entries before the fault), so the next scrape does not parse again
/// what it already knows.
pub(crate) fn refresh(
    slot: &mut Option<Box<FileState>>,
    path: &FilePath<'_>,
    kind: FileKind,
    access: Access,
    tables: &RwLock<Tables>,
    buffers: &mut Buffers,
) -> Result<(), SkipReason> {
    // Whether a kept mapping is about to be read on the listing's word (no `stat`).
    let unmeasured = path.listed_identity().is_some() && slot.as_deref().is_some_and(FileState::is_mapped);
    let mut result = refresh_once(slot, path, &kind, access, tables, buffers, false);
    // Something rewrote the file in place (no writer does): what is wrong with it is
    // reported as of its present size, measured afresh, as a fresh collector would.
    if unmeasured
        && matches!(
            result,
            Err(SkipReason::Corrupt(_) | SkipReason::InvalidKey { .. } | SkipReason::EmptyMetricName { .. })
        )
    {
        result = refresh_once(slot, path, &kind, access, tables, buffers, true);
    }
    // A writer grows its file (the blocks first, then the entries, then `used`), so a
    // `used` beyond what was mapped means the file grew after it was measured: map it
    // again at its new size. Twice at most: past that the file really is corrupt.
    for _ in 0..2 {
        match result {
            Err(SkipReason::Corrupt(FormatError::UsedBeyondEnd { .. })) => {
                result = refresh_once(slot, path, &kind, access, tables, buffers, true);
            }
            _ => break,
        }
    }
    result
}

/// Buffers reused across the files of a scrape and across scrapes.
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    /// One entry copied out of a mapping.
    entry: Vec<u8>,
    /// The bytes of a sealed file.
    file: Vec<u8>,
    /// A second copy of them, when they are checked (see [`Access::verify`]).
    check: Vec<u8>,
    /// The layouts of the files this thread parsed last (see [`Recent`]).
    layouts: Recent,
    /// The file this thread read ahead while another held the tables (see [`Ahead`]),
    /// until this thread parses it.
    ahead: Option<Ahead>,
    /// How many files this thread left pending on a file read ahead (see [`Ahead`]) since
    /// [`Buffers::take_pending_count`] last said.
    pending: usize,
    /// No file is read ahead (see [`Buffers::read_ahead`]).
    never_ahead: bool,
    /// By metric type, the most bytes in use this thread found in a sealed file of
    /// that type, rounded up, at most [`FIRST_READ`] (0 before any): what the first
    /// `pread` of the next such file asks for.
    first_reads: [usize; 4],
    /// By metric type, whether the last sealed file of that type this thread read had
    /// more than [`READ_AT_MOST`] bytes in use: then the next is mapped at once (the
    /// files of a server's workers are about the same size), without a first `pread`.
    large: [bool; 4],
    /// The ring this thread's batched reads go through this scrape (see
    /// [`crate::region::Batch`]), made at the first batch and dropped by
    /// `Collector::read_all` when the scrape's reads end; a ring is never used by a
    /// process `fork()`ed from the one that made it.
    #[cfg(target_os = "linux")]
    pub(crate) batch: Option<crate::region::Batch>,
}

/// The last few distinct layouts a thread parsed: a worker's files of each kind
/// (counter, histogram, gauges…) are read one after the other, so the file of a kind
/// is compared with the last one of that kind, a few files back.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    layouts: Vec<Known>,
    /// The entry to replace next once `layouts` is full.
    next: usize,
}

/// A layout a thread parsed, with what a file found to have the same entries takes
/// from the file it was parsed from (see [`Recent::matching`]).
#[derive(Debug)]
struct Known {
    layout: Arc<Layout>,
    /// The file's keys (see [`KeyRun`]).
    run: KeyRun,
    families: Vec<(u32, u32)>,
    last_key: Option<u32>,
    /// Where the last entry ends.
    end: usize,
}

/// How many layouts [`Recent`] remembers.
const RECENT_LAYOUTS: usize = 8;

impl Recent {
    /// Replaces the layout of `st` (just parsed) by an equal one parsed before (one kept
    /// for both), or else remembers it for the files parsed next.
    fn share(&mut self, st: &mut FileState) {
        // Unequal layouts mostly differ in length, or at their first entry.
        if let Some(same) = self.layouts.iter().find(|known| Layout::eq(&known.layout, &st.layout)) {
            st.layout = Arc::clone(&same.layout);
            return;
        }
        let known = Known {
            layout: Arc::clone(&st.layout),
            // A gauge file's samples are its writer's (with its `pid`): no file takes
            // them by matching (gauge files take none either, see `parse_shared`).
            run: if st.kind.gauge.is_some() { KeyRun::Broken } else { st.run },
            families: st.families.clone(),
            last_key: st.last_key,
            end: st.parsed_to,
        };
        if self.layouts.len() < RECENT_LAYOUTS {
            self.layouts.push(known);
        } else {
            self.layouts[self.next % RECENT_LAYOUTS] = known;
            self.next += 1;
        }
    }

    /// A remembered layout of a counter, histogram or summary file whose entries the
    /// whole of a file (`view`, its entries ending at `used`) has: its bytes hold the
    /// same keys' heads at the same offsets. That is one pass comparing the file with
    /// the tables' heads, without looking up a key, which with `values` also reads the
    /// file's values into it (left empty if no layout matches).
    fn matching(
        &self,
        view: View<'_>,
        used: usize,
        tables: &Tables,
        mut values: Option<&mut Vec<f64>>,
    ) -> Option<&Known> {
        let found = self.layouts.iter().find(|known| {
            let KeyRun::From(first) = known.run else { return false };
            known.end == used
                && tables.heads_of_run(first, known.layout.samples.len()).is_some_and(|heads| {
                    view.heads_equal(
                        format::HEADER_LEN,
                        heads,
                        &known.layout.value_offsets,
                        used,
                        values.as_deref_mut(),
                    )
                })
        });
        if found.is_none()
            && let Some(values) = values
        {
            values.clear();
        }
        found
    }
}

impl Buffers {
    /// How many bytes the first `pread` of a sealed file of type `typ` asks for: as many
    /// as files of that type had in use so far (all of them, usually, in one call,
    /// without copying the unused rest of [`FIRST_READ`]), or [`FIRST_READ`] at first.
    pub(crate) fn first_read(&self, typ: MetricType) -> usize {
        match self.first_reads[type_index(typ)] {
            0 => FIRST_READ,
            seen => seen,
        }
    }

    /// Whether the next sealed file of type `typ` is expected to be too large to copy
    /// (see [`Buffers::large`]).
    pub(crate) fn expects_large(&self, typ: MetricType) -> bool {
        self.large[type_index(typ)]
    }

    /// Whether the last sealed file of any type was too large to copy.
    pub(crate) fn met_large(&self) -> bool {
        self.large.contains(&true)
    }

    /// Records that a sealed file of type `typ` has `used` bytes in use.
    fn saw_used(&mut self, typ: MetricType, used: usize) {
        let seen = &mut self.first_reads[type_index(typ)];
        *seen = (*seen).max(used.next_multiple_of(512).min(FIRST_READ));
        self.large[type_index(typ)] = used > READ_AT_MOST;
    }

    /// Frees a file buffer grown far beyond what small files need, and forgets the
    /// layouts parsed last.
    pub(crate) fn shrink(&mut self) {
        self.layouts = Recent::default();
        if self.file.capacity() > 1 << 20 {
            self.file = Vec::new();
        }
        if self.check.capacity() > 1 << 20 {
            self.check = Vec::new();
        }
    }
}

/// One attempt of [`refresh`]; `remap` maps the file afresh even if its size seems
/// unchanged.
fn refresh_once(
    slot: &mut Option<Box<FileState>>,
    path: &FilePath<'_>,
    kind: &FileKind,
    access: Access,
    tables: &RwLock<Tables>,
    buffers: &mut Buffers,
    remap: bool,
) -> Result<(), SkipReason> {
    if access.sealed {
        match read_sealed(slot, path, kind, access.verify, tables, buffers) {
            Err(Sealed::Skip(reason)) => return Err(reason),
            Ok(()) => return Ok(()),
            // Too large to copy: mapped while read.
            Err(Sealed::Map) => {}
        }
    }
    let keep = access.keep_map && !access.sealed;
    // The stamp of a sealed file mapped here (too large to copy), once read whole.
    let mut stamp = None;
    // A file whose mapping was kept is the same file while the directory listing gives
    // it the same inode number as a regular file (no system call; a mapping keeps its
    // inode, so its number is not reused meanwhile); if the file grew past the mapping,
    // `parse` reports `used` beyond the end and the caller maps it again. Without that
    // hint it is stat'ed (no open). Any other file is opened at once.
    let mut reuse = false;
    let kept = slot.as_ref().filter(|st| !remap && st.map.is_some() && st.kind == *kind);
    if kept.is_some_and(|st| path.listed_identity() == Some((st.dev, st.ino))) {
        reuse = true;
        #[cfg(test)]
        AFTER_STAT.with(|hook| hook.borrow().as_ref().map(|f| f(path.get())));
    } else if let Some(st) = slot.as_ref().filter(|st| !remap && st.map.is_some()) {
        let meta = file::lstat(path.get()).map_err(|e| io_reason(&e))?;
        if !meta.file_type().is_file() {
            return Err(SkipReason::NotARegularFile);
        }
        #[cfg(test)]
        AFTER_STAT.with(|hook| hook.borrow().as_ref().map(|f| f(path.get())));
        if st.dev != meta.dev() || st.ino != meta.ino() || st.kind != *kind {
            *slot = None;
        } else {
            reuse = st.map.as_ref().is_some_and(|map| map.len() == meta.len().min(MAX_MAP) as usize);
        }
    }
    if !reuse {
        let (handle, meta) = path.open().map_err(|e| io_reason(&e))?;
        if meta.len() == 0 {
            *slot = None;
            return Err(SkipReason::Empty);
        }
        let len = meta.len().min(MAX_MAP) as usize;
        let map = ReadMap::map(&handle, len).map_err(|e| io_reason(&e))?;
        // The pages are not populated (`MADV_POPULATE_READ`) in one call: each read
        // fault maps up to 64 KiB of cached pages around it under the mapping's own
        // lock, while populating holds the address space's lock for reading, which the
        // other reading threads' `mmap` and `munmap` wait for (BENCHMARKS.md, "Eighth
        // round": a cold CLI scrape of 64 x 10,000 took 2 ms less without it).
        let used = map.load_used().and_then(|u| usize::try_from(u).ok());
        // A sealed file mapped here tells how the next of its type is read.
        if let (true, Some(used)) = (access.sealed, used) {
            buffers.saw_used(kind.typ, used);
        }
        let st = state_for(slot, (meta.dev(), meta.ino()), kind, len);
        st.map = Some(map);
        if access.sealed {
            stamp = Stamp::settled(&meta);
        }
    }
    let st = slot.as_mut().expect("state was just created");
    let map = st.map.take().expect("mapped above or kept");
    let view = View::Map(&map);
    // Values of the entries known already, then new entries with their values; the
    // values of a file whose mapping is kept are left for the merge to load.
    st.snapshot(view, keep);
    // A file unmapped after this read may be read ahead of the tables (see `Ahead`).
    let parsed = if keep {
        st.parse_shared(view, tables, &mut buffers.entry, &mut buffers.layouts, true).map(drop)
    } else {
        ahead::parse_or_read_ahead(st, view, access, tables, buffers)
    };
    if map.truncated() {
        // Something truncated the file under the mapping: some of what was just read
        // is zeros standing in for missing pages. Forget the file; the next scrape
        // maps it afresh at its new size.
        *slot = None;
        return Err(SkipReason::Truncated);
    }
    if keep {
        st.map = Some(map);
    }
    if parsed.is_ok() {
        st.sealed = stamp;
    }
    parsed
}

/// The state of a file just opened (`meta`, `len` bytes to read): the one in `slot` if
/// it is the same inode and has not shrunk (what was parsed stays valid), else a new one.
fn state_for<'s>(
    slot: &'s mut Option<Box<FileState>>,
    (dev, ino): (u64, u64),
    kind: &FileKind,
    len: usize,
) -> &'s mut FileState {
    let same = slot.as_ref().is_some_and(|st| st.dev == dev && st.ino == ino && st.kind == *kind && len >= st.len);
    if !same {
        *slot = Some(Box::new(FileState::new((dev, ino), kind, len)));
    }
    let st = slot.as_mut().expect("set above");
    st.len = len;
    st.sealed = None;
    st
}

/// Why a sealed file was not read by copy.
enum Sealed {
    /// It must be skipped this scrape.
    Skip(SkipReason),
    /// It has more than [`READ_AT_MOST`] bytes in use, or its two copies differ: map it.
    Map,
}

/// Reads a sealed file (its writer is dead) by copying its bytes up to `used` into
/// `buffers.file` with `pread`, then snapshots and parses them as a mapping would be;
/// the state keeps no mapping.
fn read_sealed(
    slot: &mut Option<Box<FileState>>,
    path: &FilePath<'_>,
    kind: &FileKind,
    verify: bool,
    tables: &RwLock<Tables>,
    buffers: &mut Buffers,
) -> Result<(), Sealed> {
    // A file copied twice (whose copies are compared) and listed as a regular file is
    // not `fstat`ed: its identity is the listing's inode on the directory's device, its
    // length what `pread` finds (a tenth of a cold scrape of 10,000 small stock files
    // went to `fstat`). Were it replaced by another kind of file since it was listed,
    // reading it fails (a FIFO or a directory) and it is skipped; opening never follows
    // a symlink and never blocks.
    // Only for a file seen for the first time: a state kept from an earlier read is
    // continued only for the very file it was read from, which `fstat` tells.
    let listed = path.listed_identity().filter(|_| verify && slot.is_none());
    // Too large to copy, most likely, as the file of this type read before was: mapped
    // at once, without opening and reading it here first.
    if buffers.expects_large(kind.typ) {
        #[cfg(test)]
        MAPPED_AT_ONCE.with(|n| n.set(n.get() + 1));
        return Err(Sealed::Map);
    }
    let (handle, meta) = match listed {
        Some(_) => (path.open_unmeasured().map_err(|e| Sealed::Skip(io_reason(&e)))?, None),
        None => path.open().map(|(h, m)| (h, Some(m))).map_err(|e| Sealed::Skip(io_reason(&e)))?,
    };
    #[cfg(test)]
    AFTER_STAT.with(|hook| hook.borrow().as_ref().map(|f| f(path.get())));
    // The length `fstat` gave, if it was asked.
    let measured = meta.as_ref().map(|m| m.len().min(MAX_MAP) as usize);
    if measured == Some(0) {
        *slot = None;
        return Err(Sealed::Skip(SkipReason::Empty));
    }
    let known = slot.as_ref().map_or(0, |st| st.parsed_to);
    let request = buffers.first_read(kind.typ).max(known);
    let bytes = &mut buffers.file;
    let first = measured.map_or(request, |len| len.min(request));
    // The file ends before the length measured a moment ago: it was truncated.
    let truncated = |slot: &mut Option<Box<FileState>>| {
        *slot = None;
        Sealed::Skip(SkipReason::Truncated)
    };
    let got = file::read_at_into(&handle, 0, first, bytes).map_err(|e| Sealed::Skip(io_reason(&e)))?;
    if measured.is_some() && got < first {
        return Err(truncated(slot));
    }
    if got == 0 {
        *slot = None;
        return Err(Sealed::Skip(SkipReason::Empty));
    }
    // The file's length: measured, or found where a read stopped short of its request.
    let len = measured.or((got < first).then_some(got));
    let mut end = got;
    let used = format::decode_used(&bytes[..got]).ok().and_then(|u| usize::try_from(u).ok());
    if let Some(used) = used {
        buffers.saw_used(kind.typ, used);
    }
    let bytes = &mut buffers.file;
    match used {
        // A `used` the length does not hold is left for `parse` to report.
        Some(used) if used > got && len.is_none_or(|len| used <= len) => {
            if used > READ_AT_MOST {
                return Err(Sealed::Map);
            }
            let more = file::read_at_into(&handle, got, used - got, bytes).map_err(|e| Sealed::Skip(io_reason(&e)))?;
            if more < used - got && measured.is_some() {
                return Err(truncated(slot));
            }
            end = got + more;
        }
        // Only the bytes in use are parsed, so only they are copied again to be compared
        // (a small stock file has a few hundred of the 4 KiB first read).
        Some(used) if (format::HEADER_LEN..=got).contains(&used) => end = used,
        _ => {}
    }
    if verify {
        // Copy again; a write between or during the copies makes them differ.
        let check = &mut buffers.check;
        let got = file::read_at_into(&handle, 0, end, check).map_err(|e| Sealed::Skip(io_reason(&e)))?;
        if got < end {
            return Err(truncated(slot));
        }
        if check[..end] != bytes[..end] {
            return Err(Sealed::Map);
        }
    }
    drop(handle);
    let identity = match (&meta, listed) {
        (Some(meta), _) => (meta.dev(), meta.ino()),
        (None, Some(identity)) => identity,
        (None, None) => unreachable!("a file is opened unmeasured only with its listed identity"),
    };
    let st = take_copy(
        slot,
        identity,
        kind,
        len.unwrap_or(end),
        &bytes[..end],
        tables,
        &mut buffers.entry,
        &mut buffers.layouts,
    )
    .map_err(Sealed::Skip)?;
    st.sealed = meta.as_ref().and_then(Stamp::settled);
    Ok(())
}

/// Snapshots and parses `bytes`, a copy of the entries of the file `identity` (of
/// length `len`), into its state in `slot`, which keeps no mapping: the last step of
/// both ways a file is copied ([`read_sealed`], [`take_copies`]).
#[allow(clippy::too_many_arguments)]
fn take_copy<'s>(
    slot: &'s mut Option<Box<FileState>>,
    identity: (u64, u64),
    kind: &FileKind,
    len: usize,
    bytes: &[u8],
    tables: &RwLock<Tables>,
    entry: &mut Vec<u8>,
    layouts: &mut Recent,
) -> Result<&'s mut FileState, SkipReason> {
    let st = state_for(slot, identity, kind, len);
    st.map = None;
    let view = View::Bytes(bytes);
    st.snapshot(view, false);
    st.parse_shared(view, tables, entry, layouts, true)?;
    Ok(st)
}

/// Takes the two copies of the first `request` bytes of an exited stock worker's file
/// seen for the first time that a batch read made (`copies`, see
/// [`crate::region::Batch`]), as [`read_sealed`] takes its own with `verify` (identity
/// from the listing, no `fstat`). `None` when the copies do not settle the file: more
/// bytes in use than were read, or copies that differ; the caller then reads it as
/// [`refresh`] does. So a file gets the result `refresh` would give it.
#[cfg(target_os = "linux")]
pub(crate) fn take_copies(
    slot: &mut Option<Box<FileState>>,
    path: &FilePath<'_>,
    kind: &FileKind,
    request: usize,
    copies: crate::region::Twice<'_>,
    tables: &RwLock<Tables>,
    buffers: &mut Buffers,
) -> Option<Result<(), SkipReason>> {
    let identity = path.listed_identity()?;
    let (first, second) = match copies {
        crate::region::Twice::Read(first, second) => (first, second),
        crate::region::Twice::NotOpened(e) => return Some(Err(io_reason(&e))),
        // A read that failed through the ring (where it may not block) is left to `pread`.
        crate::region::Twice::NotRead(e) => {
            log::debug!("{}: a batched read failed ({e}); reading it alone", path.get().display());
            return None;
        }
    };
    let got = first.len();
    if got == 0 {
        *slot = None;
        return Some(Err(SkipReason::Empty));
    }
    // The file's length, where the read stopped short of its request.
    let len = (got < request).then_some(got);
    let used = format::decode_used(first).ok().and_then(|u| usize::try_from(u).ok());
    if let Some(used) = used {
        buffers.saw_used(kind.typ, used);
    }
    let end = match used {
        // More in use than was read: read it as `refresh` does (which also measures a
        // file that seems cut short, in case it grew since).
        Some(used) if used > got => return None,
        Some(used) if used >= format::HEADER_LEN => used,
        _ => got,
    };
    // A second copy shorter than the first, or different: left to `refresh` too.
    if second.get(..end) != Some(&first[..end]) {
        return None;
    }
    let copied = take_copy(
        slot,
        identity,
        kind,
        len.unwrap_or(end),
        &first[..end],
        tables,
        &mut buffers.entry,
        &mut buffers.layouts,
    );
    Some(copied.map(|_| ()))
}

impl FileState {
    /// The state of the file `(dev, ino)` of `len` bytes, before anything of it is read.
    fn new((dev, ino): (u64, u64), kind: &FileKind, len: usize) -> FileState {
        FileState {
            dev,
            ino,
            kind: kind.clone(),
            map: None,
            len,
            sealed: None,
            parsed_to: format::HEADER_LEN,
            last_key: None,
            run: KeyRun::Empty,
            epoch: Epoch::default(),
            layout: Arc::default(),
            parsing: Layout::default(),
            families: Vec::new(),
            seen_families: HashSet::new(),
            deferred: false,
            values: Vec::new(),
            timestamps: Vec::new(),
            pending: None,
        }
    }

    /// [`FileState::parse`] with tables other threads share: first as far as every entry
    /// is the one its predecessor predicts, which only reads the tables (so threads do it
    /// at once), then the rest with the tables to itself. New entries' layout is then
    /// shared with an equal one parsed before (see [`Recent::share`]); a file with nothing
    /// new touches no layout (whose reference count the threads would pass between
    /// cores).
    ///
    /// Without `wait`, a file of which nothing is parsed yet is left as it is, and
    /// [`Parsed::Busy`] returned, where another thread holds the tables for writing
    /// (and they would have to be waited for).
    fn parse_shared(
        &mut self,
        view: View<'_>,
        tables: &RwLock<Tables>,
        buf: &mut Vec<u8>,
        layouts: &mut Recent,
        wait: bool,
    ) -> Result<Parsed, SkipReason> {
        // Nothing new (a repeat scrape of an unchanged file): no lock, whose word the
        // threads would pass between cores once per file.
        if view.load_used().is_some_and(|used| usize::try_from(used).is_ok_and(|used| used == self.parsed_to)) {
            return Ok(Parsed::Done);
        }
        let fresh = self.parsed_to == format::HEADER_LEN;
        #[cfg(test)]
        if !wait && fresh && TABLES_HELD.get() {
            return Ok(Parsed::Busy);
        }
        let read = match tables.try_read() {
            Some(read) => read,
            None if !wait && fresh && tables.is_locked_exclusive() => return Ok(Parsed::Busy),
            None => tables.read(),
        };
        // A file of a kind read before, in whole: if it has the very entries of one
        // read before, it takes that one's layout. (Every caller has just snapshot the
        // file, which set `deferred`; a file of which nothing is parsed has no values.)
        debug_assert!(!fresh || (self.values.is_empty() && self.timestamps.is_empty()), "a fresh file has no values");
        if fresh
            && self.kind.gauge.is_none()
            && let Some(used) = view.load_used().and_then(|u| format::check_used(u, view.len()).ok())
            && let Some(known) = layouts.matching(view, used, &read, (!self.deferred).then_some(&mut self.values))
        {
            // The values were read with the comparison, unless they are deferred.
            self.take_entries(known);
            return Ok(Parsed::Done);
        }
        // The entries are taken out of the layout (copied if another file shares it)
        // while new ones are added, and put back after.
        self.parsing = Arc::try_unwrap(std::mem::take(&mut self.layout)).unwrap_or_else(|shared| (*shared).clone());
        self.parse_predicted(view, &read);
        drop(read);
        let parsed =
            if view.load_used().is_some_and(|used| usize::try_from(used).is_ok_and(|used| used == self.parsed_to)) {
                Ok(Parsed::Done)
            } else {
                match tables.try_write() {
                    Some(mut write) => self.parse(view, &mut write, buf).map(|()| Parsed::Done),
                    // Nothing parsed: the state is as it was (an empty layout). (Other
                    // threads reading the tables are waited for: they soon let go.)
                    None if !wait && self.parsed_to == format::HEADER_LEN && tables.is_locked_exclusive() => {
                        self.layout = Arc::new(std::mem::take(&mut self.parsing));
                        return Ok(Parsed::Busy);
                    }
                    None => self.parse(view, &mut tables.write(), buf).map(|()| Parsed::Done),
                }
            };
        self.layout = Arc::new(std::mem::take(&mut self.parsing));
        layouts.share(self);
        parsed
    }

    /// Takes the entries of `known` as this file's (of which none was parsed), leaving
    /// the values as they are.
    fn take_entries(&mut self, known: &Known) {
        self.layout = Arc::clone(&known.layout);
        self.run = known.run;
        self.families.clone_from(&known.families);
        self.seen_families = self.families.iter().map(|&(family, _)| family).collect();
        self.last_key = known.last_key;
        self.parsed_to = known.end;
    }

    /// Parses new entries of a counter, histogram or summary file while each is the key
    /// its predecessor predicts (see [`Tables::predicted`]), and stops at the first that
    /// is not, at a gauge file (its samples are interned per pid) or at anything
    /// [`FileState::parse`] must look at (which it then does).
    fn parse_predicted(&mut self, view: View<'_>, tables: &Tables) {
        if self.kind.gauge.is_some() {
            return;
        }
        let Some(used) = view.load_used().and_then(|u| format::check_used(u, view.len()).ok()) else { return };
        if used <= self.parsed_to {
            return;
        }
        self.reserve_for(used, tables);
        let mut last_key = self.last_key;
        let mut offset = self.parsed_to;
        while offset < used {
            let Some(key) = tables.predicted(last_key).filter(|&key| {
                let head = tables.head(key);
                offset + head.len() + format::VALUE_LEN <= used && view.words_equal(offset, head) == Some(true)
            }) else {
                break;
            };
            let value_offset = offset + tables.head(key).len();
            let info = tables.key(key);
            self.push_entry(info.family, key, info.sample, value_offset, view, false);
            last_key = Some(key);
            offset = value_offset + format::VALUE_LEN;
        }
        self.parsed_to = offset;
        self.last_key = last_key;
    }

    /// Room for the entries up to `used`, sized by the keys seen so far (or, before any,
    /// by a typical entry of 64 bytes), so that the vectors are not copied as they grow;
    /// capped, as `used` may be a corrupt file's claim.
    fn reserve_for(&mut self, used: usize, tables: &Tables) {
        let expected = ((used - self.parsed_to) / tables.mean_entry_len().unwrap_or(64)).min(1 << 20);
        self.parsing.samples.reserve(expected);
        self.parsing.value_offsets.reserve(expected);
        if !self.deferred {
            self.values.reserve(expected);
        }
    }

    /// Records one parsed entry (below `used`, checked by the caller) and, unless the
    /// values are deferred to the merge, reads its value (and, with `timestamp`, its
    /// timestamp).
    fn push_entry(&mut self, family: u32, key: u32, sample: u32, value_offset: usize, view: View<'_>, timestamp: bool) {
        // Consecutive entries usually belong to one family: skip the set then.
        if self.families.last().is_none_or(|&(last, _)| last != family) && self.seen_families.insert(family) {
            self.families.push((family, key));
        }
        self.run = self.run.then(self.parsing.samples.len(), key);
        self.parsing.samples.push(sample);
        // `used` fits an i32, so every offset below it fits a u32.
        self.parsing.value_offsets.push(value_offset as u32);
        if self.deferred {
            return;
        }
        // The value and timestamp lie below `used`, checked by the caller; the fallbacks
        // are never taken.
        self.values.push(view.load_u64(value_offset).map_or(f64::NAN, f64::from_bits));
        if timestamp {
            self.timestamps.push(view.load_u64(value_offset + 8).map_or(0.0, f64::from_bits));
        }
    }

    /// Parses the entries between what was parsed before and `used`, reading the value
    /// (and, in gauge files, the timestamp) of each new entry as it goes unless the
    /// values are deferred to the merge.
    fn parse(&mut self, view: View<'_>, tables: &mut Tables, buf: &mut Vec<u8>) -> Result<(), SkipReason> {
        let len = view.len();
        let raw_used = view.load_used().ok_or(SkipReason::Corrupt(FormatError::ShortHeader { len }))?;
        let used = format::check_used(raw_used, len).map_err(SkipReason::Corrupt)?;
        if used < self.parsed_to {
            // `used` went down: the file was rewritten in place. Start over.
            self.parsed_to = format::HEADER_LEN;
            self.last_key = None;
            self.run = KeyRun::Empty;
            self.epoch = Epoch::default();
            self.parsing.samples.clear();
            self.parsing.value_offsets.clear();
            self.families.clear();
            self.seen_families.clear();
            self.values.clear();
            self.timestamps.clear();
        }
        if used == self.parsed_to {
            return Ok(());
        }
        self.reserve_for(used, tables);
        // The first file of a fresh collector: its keys are all new, about as many as
        // entries of the first one's length fit below `used` (a hint, capped: `used`
        // may be a corrupt file's claim).
        if let Some(first) = view.load_u32(self.parsed_to).and_then(|len| usize::try_from(len).ok()) {
            let entry = format::value_offset_in_entry(first.min(1 << 20)) + format::VALUE_LEN;
            let keys = ((used - self.parsed_to) / entry.max(16)).min(1 << 18);
            tables.reserve_first(keys, (used - self.parsed_to).min(16 << 20));
        }
        let pid = self.kind.gauge.as_ref().map(|(_, pid)| (tables.pid_id(pid), pid.clone()));
        let mut last_key = self.last_key;
        let mut offset = self.parsed_to;
        while offset < used {
            // Fast path: the entry is the key that followed the previous entry's key in
            // the file read before, compared in place (its head, word by word).
            let predicted = tables.predicted(last_key).filter(|&key| {
                let head = tables.head(key);
                offset + head.len() + format::VALUE_LEN <= used && view.words_equal(offset, head) == Some(true)
            });
            let (key, value_offset) = match predicted {
                Some(key) => (key, offset + tables.head(key).len()),
                None => {
                    // Keep what was parsed so far if this entry is corrupt.
                    self.parsed_to = offset;
                    self.last_key = last_key;
                    let (key, value_offset) = Self::parse_entry(view, offset, used, tables, buf)?;
                    tables.record_successor(last_key, key);
                    (key, value_offset)
                }
            };
            last_key = Some(key);
            let info = tables.key(key);
            let family = info.family;
            let sample = match &pid {
                Some((pid_id, pid)) => tables.gauge_sample_of(key, pid, *pid_id),
                None => info.sample,
            };
            self.push_entry(family, key, sample, value_offset, view, pid.is_some());
            offset = value_offset + format::VALUE_LEN;
        }
        self.parsed_to = offset;
        self.last_key = last_key;
        Ok(())
    }

    /// Reads and validates the entry at `offset` (below `used`) and returns its key id
    /// (decoding the key if it is new) and value offset.
    fn parse_entry(
        view: View<'_>,
        offset: usize,
        used: usize,
        tables: &mut Tables,
        buf: &mut Vec<u8>,
    ) -> Result<(u32, usize), SkipReason> {
        // Copy one entry at a time (its length field says how much), so memory stays
        // bounded by the largest entry, and let the format module validate it.
        let len = view.len();
        let key_len = view.load_u32(offset).map_or(-1, |n| n as i32);
        let end = match usize::try_from(key_len) {
            Ok(n) => offset.saturating_add(format::entry_len(n)).min(used),
            Err(_) => (offset + 4).min(used),
        };
        let bytes =
            view.bytes(offset, end, buf).ok_or(SkipReason::Corrupt(FormatError::UsedBeyondEnd { used, len }))?;
        let entry = match format::entries_at(bytes, offset).next() {
            Some(Ok(entry)) if bytes.len() == format::entry_len(entry.key.len()) => entry,
            Some(Err(e)) => return Err(SkipReason::Corrupt(e)),
            _ => {
                let end = offset.saturating_add(format::entry_len(key_len.max(0) as usize));
                return Err(SkipReason::Corrupt(FormatError::EntryBeyondUsed { offset, end, used }));
            }
        };
        let head = &bytes[..entry.value_offset - offset];
        let key = tables.entry_key_id(head, entry.key).map_err(|bad| match bad {
            BadKey::Invalid(error) => SkipReason::InvalidKey { offset, error },
            BadKey::EmptyMetricName => SkipReason::EmptyMetricName { offset },
        })?;
        Ok((key, entry.value_offset))
    }

    /// Reads the value (and, in gauge files, timestamp) of every entry parsed so far
    /// (from a mapping, with one atomic load each). Every offset lies below `used`
    /// (checked when its entry was parsed, and `used` never goes down without the
    /// state being reset), so within the view; the fallbacks are never taken. With
    /// `defer`, reads none: they are left for the merge (see [`FileState::values`]).
    fn snapshot(&mut self, view: View<'_>, defer: bool) {
        self.deferred = defer;
        self.values.clear();
        self.timestamps.clear();
        if defer {
            return;
        }
        self.values.extend(
            self.layout.value_offsets.iter().map(|&off| view.load_u64(off as usize).map_or(f64::NAN, f64::from_bits)),
        );
        if self.kind.gauge.is_some() {
            self.timestamps.extend(
                self.layout
                    .value_offsets
                    .iter()
                    .map(|&off| view.load_u64(off as usize + 8).map_or(0.0, f64::from_bits)),
            );
        }
    }

    /// Where the merge finds the values: in the kept mapping (loaded then, by the
    /// merge's threads), or read by the last refresh.
    pub(crate) fn values(&self) -> Values<'_> {
        // Values are deferred only when the mapping is kept (see `refresh_once`).
        debug_assert!(!self.deferred || self.map.is_some(), "deferred values without a kept mapping");
        match &self.map {
            Some(map) if self.deferred => Values::Mapped { map, offsets: &self.layout.value_offsets },
            _ => Values::Read { values: &self.values, timestamps: &self.timestamps },
        }
    }

    /// Whether a load from the kept mapping found the file truncated under it (see
    /// [`ReadMap::truncated`]): then nothing loaded from it can be trusted.
    pub(crate) fn map_truncated(&self) -> bool {
        self.map.as_ref().is_some_and(ReadMap::truncated)
    }

    /// Number of entries parsed.
    pub(crate) fn entry_count(&self) -> usize {
        self.layout.samples.len()
    }

    /// Whether the file at `path`, whose writer has stayed dead since this state was
    /// read (the caller's to know), still holds what was read: it was read whole from a
    /// settled file, and `lstat` gives the same stamp. Then its values stand as they are.
    pub(crate) fn unchanged(&self, path: &Path) -> bool {
        self.sealed.is_some_and(|stamp| file::lstat(path).is_ok_and(|meta| Stamp::of(&meta) == stamp))
    }

    /// Whether a mapping of the file is kept for the next scrape.
    pub(crate) fn is_mapped(&self) -> bool {
        self.map.is_some()
    }
}
