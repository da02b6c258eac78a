//! The scrape side: scan a metrics directory, read every `*.db` file, merge them by
//! Python's rules, and hand back a [`Scrape`] ready for [`crate::expose`].
//!
//! ```text
//! list *.db (sorted, no dotfiles) → runs of whole worker IDs, taken from a queue by up
//! to one thread per core → per file: map read-only (kept, up to a bound) or, past it, copy up to
//! `used` (dead writer) or map while read, parse new entries, snapshot values (or, for a
//! kept mapping, leave them there) → merge (in sorted name order: plan the output, then
//! fold the values on up to one thread per core) → Vec<MetricFamily>
//! ```
//!
//! # Same result as Python
//!
//! Files are merged in sorted file-name order (Python merges in directory order, which
//! depends on the file system; its result over a sorted list is what ours equals,
//! byte for byte once exposed). Float sums start from `0.0` and add in that order, so
//! they are bit-identical to Python's. See the merge rules in the `merge` module.
//!
//! # Never failing on one file
//!
//! [`Collector::collect`] fails only when the directory itself cannot be listed. Any
//! single file that cannot be used is **skipped whole** and reported in
//! [`Scrape::skipped`] (and with a `log` warning the first time its problem is seen):
//! zero-length, truncated or garbage bytes, `used` beyond the file, negative or
//! oversized key lengths, keys that are not UTF-8 or not Python's 4-element JSON
//! (including pre-0.16 3-element keys), an empty family name, a histogram bound that
//! is not a number, a name that is not `counter_*`, `gauge_MODE_*`, `histogram_*` or
//! `summary_*`, anything that is not a regular file (a directory, FIFO, socket or
//! symlink: symlinks are never followed and opening never blocks), a file that
//! vanished between listing and reading (logged at debug level only: live-gauge files
//! vanish when a worker is marked dead), a file that may not be read, and a file
//! truncated while it is read (by something else: no writer shrinks a file), which
//! would otherwise kill the scraping process with `SIGBUS` (see the guard in the
//! crate's one unsafe module).
//!
//! Skipping whole files, rather than single entries, makes the promise exact: the
//! output is the output of the directory without that file. Dotfiles are ignored, as
//! Python's `glob` ignores them.
//!
//! # Untorn, bounded, and no writer waits
//!
//! Files are read by worker ID, in one of three ways:
//!
//! * **By copy**, for a dead writer's files (its liveness lock is free), and for the
//!   files of an ID without a liveness file that is a pid no process has (a stock
//!   Python worker that exited), seen for the first time, and for those past the
//!   collector's bound on kept mappings. For a writer of ours, the scrape
//!   holds a shared lock on the writer's liveness file while it reads that writer's
//!   files (microseconds: as compaction does, so that no writer can take the ID
//!   meanwhile; a writer starting in that slot at that moment retries 5 ms later, as it
//!   does while any other holder goes away). Unless the ID is the pid of a running
//!   process (a stock Python worker given that pid takes no lock and would write the
//!   same files), they are copied with `pread`, up to `used`, into one buffer reused for
//!   every file, and parsed from those bytes: nothing writes them, so nothing is torn,
//!   and no mapping is made. A stock Python worker's files are copied twice and used
//!   only if both copies are equal (a new process given that pid may be writing them:
//!   a copy is not atomic per value, as loads from a mapping are); if they differ, the
//!   file is mapped while it is read. A dead writer's file with more than 64 KiB in use is
//!   mapped instead while it is read (mapping cached pages is cheaper than copying
//!   them), and unmapped at once. A repeat scrape reads a copied file again (as below), except the
//!   files of a writer whose ID is not its last holder's pid (a stable slot name): those
//!   are not opened while their liveness file and they keep the `stat` they had when
//!   last copied (both at least 2 s old then, so that no later change can leave the
//!   same stamp); a pid-named writer's files are always read again, since a stock
//!   Python worker given that pid may have written them, in place, since.
//! * **Through a kept mapping**, for any other file, and for a dead writer's file seen
//!   again, while the collector keeps fewer mappings than its bound (16,384 by default,
//!   [`Collector::with_max_kept_mappings`]): `used` is loaded with acquire semantics and
//!   nothing past it is read; each value is one 8-byte atomic load, so it is never torn,
//!   whoever writes the file meanwhile. A repeat scrape costs a load per value and no
//!   system call: the directory listing's inode number and type (`d_ino`, `d_type`)
//!   tell that the name is still the mapped regular file (a mapping holds its inode, so
//!   the number is not reused meanwhile); a file system that gives no type costs an
//!   `lstat`. A file grown past its mapping is mapped again.
//! * **Through a mapping unmapped at once**, past the bound, for a live writer's file or
//!   one of unknown liveness (no liveness file, as for a stock Python worker, which may
//!   be running).
//!
//! So a fresh collector (one scrape, as the command line's) maps no dead writer's file,
//! a long-lived one reads most files with a load per value, and
//! however many files the directory holds, a scraping process never runs into
//! Linux's `vm.max_map_count` (65,530 by default) or the `SIGBUS` guard's table.
//!
//! Neither this crate's writers nor Python's ever shrink a file. If something else
//! truncates one while a scrape reads it through a mapping, the pages past the new end
//! read as zeros instead of raising `SIGBUS` (the guard in the crate's one unsafe
//! module), and the file is skipped as [`SkipReason::Truncated`]; a file truncated
//! while it is copied reads short and is skipped as `truncated` too.
//!
//! # Compaction and dead writers
//!
//! A scrape leaves out the sources of a compaction archive while the archive's manifest
//! lists them, and the live-mode gauge files of writers whose liveness lock is free. It
//! waits (up to 5 s) while a compaction renames archives into place, and scrapes again
//! when the compaction sequence number changed under it (see [`crate::cleanup`]).
//!
//! # Both cores
//!
//! The files are read by up to one thread per core (at most 4, each with at least 32
//! files, a file read through a kept mapping counting as a sixteenth of one), each
//! taking runs of whole worker IDs. Keys are interned in tables the threads
//! share behind a reader-writer lock: an entry whose key is the one its predecessor's
//! key was followed by before (every worker declares the same series in the same order)
//! is recognised under the read lock, comparing bytes in place, so threads parse such
//! files at once; anything else, and every new entry of a gauge file (its samples are
//! interned per pid), takes the write lock. A counter, histogram or summary file read
//! whole for the first time that holds exactly the entries of another such file the
//! thread read earlier in the same scrape (the same keys' bytes at the same offsets)
//! takes that file's parsed entries after one comparison pass, under the read lock too.
//!
//! A thread that finds the tables held for writing by another (interning a file's new
//! keys: a fresh collector's first file of 10,000 series takes several milliseconds)
//! does not wait for them with a counter, histogram or summary file it reads through a
//! mapping dropped after the read. It reads that file *ahead* of the tables: its values,
//! at offsets found from the entries' length fields, and a copy of its bytes (for a
//! file of at most 16 MiB in use). Every further such file it meets while the tables
//! are still held, whose entry heads are the very same bytes at the same offsets, has
//! its values read the same way and is left pending; any other waits for the tables.
//! The thread parses the copy as any file at its next file that finds the tables not
//! held for writing, or when its reads end, and when the scrape's reads end the pending
//! files take its entries (equal heads are equal keys); should that parse not give
//! exactly the entries read ahead, they are read again, one by one, as any file is.
//!
//! The merge then adds up the values on up to one thread per core too (at most 4, for
//! merges of at least 100,000 entries, each file read through a mapping adding 16 to
//! its count), each taking a range of the series: it reads
//! every file, in sorted file order, for its own series only, so each series is folded
//! in exactly the order a single thread would fold it and the output is bit-identical
//! whichever thread read what. A file read through a kept mapping has its values
//! loaded there, by the merge's threads, rather than copied out first; one found
//! truncated meanwhile is skipped and the merge done again without it. The shape of
//! the output (families, label groups, which value goes where) is planned from the
//! entries alone and kept: while the same files are merged, in the same order, and none
//! gained an entry or was parsed afresh, a repeat scrape only adds up the values (not
//! so with `mostrecent` gauges, whose series show once set).
//!
//! Each value is one atomic load, never torn, but a scrape is no snapshot of a file:
//! its values are loaded one at a time, and a file's series may be loaded by different
//! threads a few milliseconds apart (Python's collector, which reads each file whole,
//! does not promise one either: a writer may update its file during the read).
//!
//! A thread that cannot be started leaves its share to the others, and a single core
//! does everything on the calling thread.
//!
//! # Repeat scrapes
//!
//! The collector keeps, per file (by name, trusted while the inode is the same), the
//! entries it has parsed and how far. A repeat scrape parses only entries appended
//! since and re-reads values, as above. Keys are decoded once per distinct key bytes
//! across all files, and everything is interned, so the merge works on integers.
//!
//! The directory itself is `stat`ed first: while its stamp (inode, size, modification
//! and change times) is the one it had at the last listing, and that last change was
//! then at least 2 s old (file times advance in clock ticks, so a change within the
//! same tick could leave the stamp as it was), no name was added, removed or renamed,
//! and the last listing (with its compaction exclusions) is used without reading the
//! directory again. Writers change the directory only when they create a file, so in a
//! steady state a repeat scrape makes a fixed handful of system calls (that `stat`, two
//! reads of the compaction sequence file, opening the directory for the scrape, and
//! starting its reading and merging threads), per dead slot-named writer an `lstat` of its liveness
//! file and of each of its files, per writer with `live*` gauges a liveness probe, and
//! none for a file kept mapped.

mod merge;
mod model;
mod name;
mod process;
mod read;
mod table;
mod threads;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use parking_lot::Mutex;

pub use model::{MetricFamily, MetricType, Sample};

use crate::error::{Error, ErrorKind, Result};
use crate::file;
use crate::format::FormatError;
use crate::format::key::KeyError;
use crate::format::names;
use crate::liveness;
use merge::{FileInput, Scratch};
use read::{Access, FileState, Stamp};
use table::Tables;

/// How long a scrape waits for a compaction to finish renaming archives into place.
const COMPACTION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How many times a scrape that overlapped a compaction is done again.
const MAX_ATTEMPTS: u32 = 16;

/// The most mappings a collector keeps between scrapes by default (see
/// [`Collector::with_max_kept_mappings`]): a quarter of Linux's default
/// `vm.max_map_count` (65,530, shared with everything else the process maps) and of the
/// SIGBUS guard's table (65,536, shared with this process's writers). Measured on
/// 10,000 pid-named dead workers' files, a kept mapping is the cheapest way to scrape a
/// file again (a load per value and, then, an `lstat` each: 32 ms for all of them,
/// against 96 ms copying them all again, which their pids oblige; since, the listing's
/// inode numbers replace the `lstat`), so the bound is set well above the directories
/// seen in practice.
pub(crate) const MAX_KEPT_MAPPINGS: usize = 16_384;

/// Why a file was left out of a scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// The name is not `counter_ID.db`, `gauge_MODE_ID.db` (one of the ten modes),
    /// `histogram_ID.db` or `summary_ID.db`, or is not UTF-8.
    UnknownName,
    /// Not a regular file: a directory, FIFO, socket, device, or a symlink (never
    /// followed).
    NotARegularFile,
    /// The file disappeared between listing and reading.
    Vanished,
    /// The file was truncated (by something other than a metrics writer, which only
    /// ever grows files) while it was being read; what was read from it is discarded.
    Truncated,
    /// The file could not be opened or mapped; the I/O error's kind.
    Unreadable(io::ErrorKind),
    /// Zero bytes long (a writer between creating and sizing the file, or killed there).
    Empty,
    /// The bytes do not follow the format.
    Corrupt(FormatError),
    /// The key of the entry at `offset` is not UTF-8 or not `[str, str, {str: str}, str]`.
    InvalidKey {
        /// File offset of the entry.
        offset: usize,
        /// What is wrong with the key.
        error: KeyError,
    },
    /// The key of the entry at `offset` has an empty family name.
    EmptyMetricName {
        /// File offset of the entry.
        offset: usize,
    },
    /// A histogram bucket's `le` is not a number (or is NaN), so its family cannot be
    /// merged.
    InvalidBucketBound {
        /// The histogram family.
        family: String,
        /// The `le` text found.
        le: String,
    },
}

impl SkipReason {
    /// Every value [`SkipReason::as_str`] returns.
    pub const NAMES: [&'static str; 10] = [
        "unknown_name",
        "not_regular_file",
        "vanished",
        "truncated",
        "unreadable",
        "empty",
        "corrupt",
        "invalid_key",
        "empty_metric_name",
        "invalid_bucket_bound",
    ];

    /// A short, stable name for the reason (`"corrupt"`, `"not_regular_file"`, …),
    /// fit for a metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::UnknownName => "unknown_name",
            SkipReason::NotARegularFile => "not_regular_file",
            SkipReason::Vanished => "vanished",
            SkipReason::Truncated => "truncated",
            SkipReason::Unreadable(_) => "unreadable",
            SkipReason::Empty => "empty",
            SkipReason::Corrupt(_) => "corrupt",
            SkipReason::InvalidKey { .. } => "invalid_key",
            SkipReason::EmptyMetricName { .. } => "empty_metric_name",
            SkipReason::InvalidBucketBound { .. } => "invalid_bucket_bound",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::UnknownName => {
                f.write_str("expected a name like counter_ID.db, gauge_MODE_ID.db, histogram_ID.db or summary_ID.db")
            }
            SkipReason::NotARegularFile => f.write_str("not a regular file (symlinks are never followed)"),
            SkipReason::Vanished => f.write_str("the file vanished before it could be read"),
            SkipReason::Truncated => {
                f.write_str("the file was truncated while it was read (never by a metrics writer)")
            }
            SkipReason::Unreadable(kind) => write!(f, "cannot read the file: {kind}"),
            SkipReason::Empty => f.write_str("the file is empty"),
            SkipReason::Corrupt(e) => write!(f, "corrupt: {e}"),
            SkipReason::InvalidKey { offset, error } => write!(f, "entry at offset {offset}: {error}"),
            SkipReason::EmptyMetricName { offset } => write!(f, "entry at offset {offset}: empty metric name"),
            SkipReason::InvalidBucketBound { family, le } => {
                write!(f, "histogram {family:?} has a bucket with le={le:?}, expected a number")
            }
        }
    }
}

/// A file left out of a scrape, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedFile {
    /// The file's path.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// The result of one scrape: merged families and the files left out.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct Scrape {
    /// Families in Python's order (first mention, in sorted file order).
    pub families: Vec<MetricFamily>,
    /// Files that were skipped, in file-name order.
    pub skipped: Vec<SkippedFile>,
    /// What the exposition keeps between the scrapes of the collector that made this
    /// one (none for a scrape made otherwise).
    pub(crate) memo: Option<Arc<Memo>>,
}

/// What the exposition keeps between the scrapes of one collector (up to four bodies
/// without their values, one per format and escaping: see
/// [`crate::expose::encode_scrape`]). The collector only holds it, whatever it is, so
/// that nothing here depends on the exposition.
#[derive(Default)]
pub(crate) struct Memo(Mutex<Option<Arc<dyn std::any::Any + Send + Sync>>>);

impl fmt::Debug for Memo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Memo")
    }
}

impl Memo {
    /// What was kept last, if anything.
    pub(crate) fn get(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        self.0.lock().clone()
    }

    /// Keeps `kept` in place of what was kept (dropped after the lock is released).
    pub(crate) fn set(&self, kept: Arc<dyn std::any::Any + Send + Sync>) {
        let old = self.0.lock().replace(kept);
        drop(old);
    }
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape").field("families", &self.families).field("skipped", &self.skipped).finish()
    }
}

/// Scrapes are equal when their families and skipped files are.
impl PartialEq for Scrape {
    fn eq(&self, other: &Scrape) -> bool {
        self.families == other.families && self.skipped == other.skipped
    }
}

/// Merges a metrics directory into families, keeping state between scrapes so that a
/// repeat scrape costs about one atomic load per entry.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{Collector, Opts, Registry};
///
/// let registry = Registry::builder().dir(dir.path()).build()?;
/// registry.counter(Opts::new("jobs_total", "Jobs done."))?.inc_by(2.0);
///
/// let collector = Collector::new(dir.path())?;
/// let scrape = collector.collect()?;
/// assert_eq!(&*scrape.families[0].name, "jobs");
/// assert_eq!(&*scrape.families[0].samples[0].name, "jobs_total");
/// assert_eq!(scrape.families[0].samples[0].value, 2.0);
/// assert!(scrape.skipped.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Collector {
    dir: PathBuf,
    self_metrics: bool,
    process_metrics: bool,
    max_kept_mappings: usize,
    state: Mutex<State>,
    /// Shared with the scrapes it hands out.
    memo: Arc<Memo>,
}

/// The family [`Collector::with_self_metrics`] adds.
pub const SKIPPED_FILES_METRIC: &str = "prometheus_multiproc_skipped_files";

#[derive(Debug, Default)]
struct State {
    tables: Tables,
    /// The last scrape's listing, sorted by name (what a new listing is compared with).
    listed: Vec<file::ListedDb>,
    /// The order files are read in: `order[k]` is the listing index of `slots[k]`
    /// (by worker ID, then name), so that each ID's files are contiguous.
    order: Vec<usize>,
    /// Every listed file's state, in reading order. While the listing is unchanged (the
    /// usual repeat scrape), it is used as it is: nothing is sorted, hashed or moved.
    slots: Vec<Slot>,
    scratch: Scratch,
    buffers: read::Buffers,
    /// The last reason logged for each skipped file, to warn once per problem.
    reported: HashMap<OsString, SkipReason>,
    /// The worker IDs with a liveness file in that listing.
    locks: HashSet<String>,
    /// The directory's stamp when `listed` was read, if it was settled then.
    dir_stamp: Option<Stamp>,
    /// Dead writers whose files were copied at the last scrape, with the stamp of their
    /// liveness file then (see [`Collector::still_sealed`]).
    dead_ids: HashMap<String, read::Stamp>,
    /// How many files the last scrape read in batches (see [`Collector::read_batch`]).
    batched: usize,
}

impl Collector {
    /// A collector over `dir`.
    ///
    /// # Errors
    /// [`ErrorKind::NotADirectory`] when `dir` does not exist or is not a directory.
    pub fn new(dir: impl AsRef<Path>) -> Result<Collector> {
        let dir = dir.as_ref();
        let meta = std::fs::metadata(dir)
            .map_err(|e| Error::new(ErrorKind::NotADirectory).at(dir).expected("an existing directory").caused_by(e))?;
        if !meta.is_dir() {
            return Err(Error::new(ErrorKind::NotADirectory)
                .at(dir)
                .expected("a directory")
                .found("another kind of file"));
        }
        crate::file::warn_if_world_writable(dir, &meta);
        Ok(Collector {
            dir: dir.to_path_buf(),
            self_metrics: false,
            process_metrics: false,
            max_kept_mappings: MAX_KEPT_MAPPINGS,
            state: Mutex::default(),
            memo: Arc::default(),
        })
    }

    /// A collector over `$PROMETHEUS_MULTIPROC_DIR` (or the deprecated
    /// `$prometheus_multiproc_dir`).
    ///
    /// # Errors
    /// [`ErrorKind::DirNotSet`] when neither is set; otherwise as [`Collector::new`].
    pub fn from_env() -> Result<Collector> {
        Collector::new(crate::dir_from_env()?)
    }

    /// Adds to every scrape a gauge family [`SKIPPED_FILES_METRIC`] counting the files
    /// that scrape skipped, one series per [`SkipReason::as_str`] (zeros included, so
    /// that an alert can watch a stable series). Off by default: the output is then
    /// exactly Python's.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// std::fs::write(dir.path().join("counter_1.db"), b"")?;
    /// let scrape = prometheus_multiproc::Collector::new(dir.path())?.with_self_metrics().collect()?;
    /// let family = scrape.families.last().unwrap();
    /// assert_eq!(&*family.name, "prometheus_multiproc_skipped_files");
    /// let empty = family.samples.iter().find(|s| s.label("reason") == Some("empty")).unwrap();
    /// assert_eq!(empty.value, 1.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_self_metrics(mut self) -> Collector {
        self.self_metrics = true;
        self
    }

    /// Adds to every scrape Python's `ProcessCollector` metrics for every live writer
    /// of ours, one series per worker (label `worker`): `process_cpu_seconds_total`,
    /// `process_virtual_memory_bytes`, `process_resident_memory_bytes`,
    /// `process_start_time_seconds`, `process_open_fds` and `process_max_fds`. They are
    /// read from `/proc` by the scraper at scrape time, with the pid each writer wrote
    /// into its liveness file; a worker that died has no series from the next scrape
    /// on. The scraper must share the workers' pid namespace, and needs their user for
    /// `process_open_fds`; stock Python workers get no series. Off by default.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use prometheus_multiproc::{Collector, Opts, Registry};
    /// let registry = Registry::builder().dir(dir.path()).build()?; // this process is a worker
    /// let scrape = Collector::new(dir.path())?.with_process_metrics(true).collect()?;
    /// let worker = registry.worker_id().to_string();
    /// let rss = scrape.value("process_resident_memory_bytes", &[("worker", &worker)]).unwrap();
    /// assert!(rss > 0.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_process_metrics(mut self, on: bool) -> Collector {
        self.process_metrics = on;
        self
    }

    /// Keeps at most `limit` file mappings between scrapes (16,384 by default). A file
    /// with a kept mapping costs a repeat scrape one atomic load per value (and an
    /// `lstat` on a file system whose listing gives no file type); past the limit, a dead
    /// writer's or an exited stock worker's file is copied with `pread` (and, if its
    /// worker ID is a stable slot name, not even opened while it is unchanged) and any
    /// other file is mapped while it is read and unmapped at once. (Such a file seen for
    /// the first time is always copied, and mapped from the next scrape on if there is
    /// room.) Each mapping also
    /// takes an entry of the process's `vm.max_map_count` (65,530 by default) and of the
    /// crate's `SIGBUS` guard table (65,536, shared with the process's writers): lower
    /// the limit in a process that maps much else or runs several collectors. `0`
    /// keeps none.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let collector = prometheus_multiproc::Collector::new(dir.path())?.with_max_kept_mappings(256);
    /// assert!(collector.collect()?.families.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_max_kept_mappings(mut self, limit: usize) -> Collector {
        self.max_kept_mappings = limit;
        self
    }

    /// The directory this collector reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads and merges every `*.db` file of the directory.
    ///
    /// Concurrent calls are serialised (the state kept between scrapes is behind a
    /// lock that only scrapes take; writers never wait for it).
    ///
    /// # Errors
    /// Only when the directory cannot be listed ([`ErrorKind::NotADirectory`] or
    /// [`ErrorKind::Io`]). A file that cannot be used is skipped and listed in
    /// [`Scrape::skipped`].
    pub fn collect(&self) -> Result<Scrape> {
        // A seqlock against compaction: the compactor makes the sequence number odd
        // while it renames archives into place. A scrape that saw it change, or started
        // while a compaction was publishing, is done again.
        let deadline = std::time::Instant::now() + COMPACTION_WAIT;
        let mut attempt = 0u32;
        loop {
            let before = liveness::read_compaction_seq(&self.dir);
            let publishing = before % 2 == 1 && liveness::compaction_running(&self.dir);
            if publishing && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_micros(200));
                continue;
            }
            let scrape = self.collect_once()?;
            attempt += 1;
            if liveness::read_compaction_seq(&self.dir) == before || attempt >= MAX_ATTEMPTS {
                return Ok(scrape);
            }
            log::debug!("scrape of {} overlapped a compaction; scraping again", self.dir.display());
        }
    }

    /// Names this scrape must leave out because an archive has taken them over (a
    /// compaction was interrupted before removing them, or is removing them now). The
    /// live-mode gauge files of dead writers are left out too, as their files are read
    /// (see [`Collector::read_all`]).
    /// Also says whether every manifest could be read (see
    /// `cleanup::superseded_checked`).
    fn superseded(&self, listed: &[file::ListedDb]) -> (HashSet<OsString>, bool) {
        let archives: Vec<String> = listed
            .iter()
            .filter_map(|l| l.name.to_str())
            .filter(|n| crate::format::archive::parse_archive_name(n).is_some())
            .map(str::to_owned)
            .collect();
        if archives.is_empty() {
            return (HashSet::new(), true);
        }
        let (superseded, complete) = crate::cleanup::superseded_checked(&self.dir, &archives);
        (superseded.into_keys().map(OsString::from).collect(), complete)
    }

    fn collect_once(&self) -> Result<Scrape> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        // The directory's stamp, taken before it is listed: while it stays the same (and
        // was settled when taken, see `Stamp::settled`), no name was added, removed or
        // renamed since, so the last listing stands and is not read again.
        // The clock is read first: the stamp is trusted only if its last change was
        // settled before the listing began.
        let now = std::time::SystemTime::now();
        let stamp = std::fs::metadata(&self.dir).ok().map(|meta| Stamp::of(&meta));
        if stamp.is_none() || stamp != state.dir_stamp {
            state.dir_stamp = None;
            let (mut listed, locks) = file::list_db_names(&self.dir).map_err(|e| {
                let kind = match e.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => ErrorKind::NotADirectory,
                    _ => ErrorKind::Io,
                };
                Error::new(kind).at(&self.dir).expected("a readable directory").caused_by(e)
            })?;
            let (excluded, manifests_read) = self.superseded(&listed);
            if !excluded.is_empty() {
                listed.retain(|l| !excluded.contains(&l.name));
            }
            if listed != state.listed {
                state.realign(listed);
            }
            state.locks = locks;
            // A manifest that could not be read may be readable next time, with no
            // change to the directory: list it again then.
            state.dir_stamp = stamp.filter(|stamp| manifests_read && stamp.is_settled_at(now));
        }
        #[cfg(test)]
        read::AFTER_LISTING.with(|hook| hook.borrow().as_ref().map(|f| f(&self.dir)));
        // A panic while reading (a bug) would leave the state half taken apart (the
        // tables out of it, the files' states pointing into them): start afresh then.
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.read_all(state)));
        let (mut usable, skipped) = read.unwrap_or_else(|panic| {
            *state = State::default();
            std::panic::resume_unwind(panic)
        });
        let listed = &state.listed;
        let mut skipped: Vec<(OsString, SkipReason)> =
            skipped.into_iter().map(|(i, reason)| (listed[i].name.clone(), reason)).collect();
        // The slot of each listing index.
        let mut slot_of = vec![0; listed.len()];
        for (k, &i) in state.order.iter().enumerate() {
            slot_of[i] = k;
        }

        let families = loop {
            let inputs: Vec<FileInput<'_>> = usable
                .iter()
                .map(|&i| {
                    let st = state.slots[slot_of[i]].state.as_ref().expect("a usable file has a state");
                    FileInput {
                        typ: st.kind.typ,
                        mode: st.kind.gauge.as_ref().map(|(mode, _)| *mode),
                        families: &st.families,
                        samples: &st.layout.samples,
                        values: st.values(),
                        epoch: st.epoch,
                    }
                })
                .collect();
            match merge::merge(&state.tables, &inputs, &mut state.scratch, merge_threads(&inputs)) {
                Ok(families) => {
                    // A file truncated under its kept mapping while the merge loaded its
                    // values gave zeros for some of them: skip it, and merge again.
                    drop(inputs);
                    let before = usable.len();
                    usable.retain(|&i| {
                        let slot = &mut state.slots[slot_of[i]];
                        if !slot.state.as_deref().is_some_and(FileState::map_truncated) {
                            return true;
                        }
                        slot.state = None;
                        skipped.push((listed[i].name.clone(), SkipReason::Truncated));
                        false
                    });
                    if usable.len() == before {
                        break families;
                    }
                }
                Err(bad) => {
                    drop(inputs);
                    let i = usable.remove(bad.file);
                    skipped.push((
                        listed[i].name.clone(),
                        SkipReason::InvalidBucketBound { family: bad.family, le: bad.le },
                    ));
                }
            }
        };

        skipped.sort_by(|a, b| cmp_names(&a.0, &b.0));
        let mut report = Vec::with_capacity(skipped.len());
        for (name, reason) in skipped {
            let path = self.dir.join(&name);
            let first_time = state.reported.get(&name) != Some(&reason);
            if reason == SkipReason::Vanished || !first_time {
                log::debug!("skipping {}: {reason}", path.display());
            } else {
                log::warn!("skipping {}: {reason}", path.display());
            }
            state.reported.insert(name, reason.clone());
            report.push(SkippedFile { path, reason });
        }
        if !state.reported.is_empty() {
            for &i in &usable {
                state.reported.remove(&listed[i].name);
            }
        }
        state.compact_if_bloated();
        state.buffers.shrink();
        let mut families = families;
        if self.self_metrics {
            families.push(skipped_files_family(&report));
        }
        if self.process_metrics {
            families.extend(process::families(&self.dir));
        }
        Ok(Scrape { families, skipped: report, memo: Some(Arc::clone(&self.memo)) })
    }

    /// Brings the state of every file of `names` (sorted) up to date: the usable ones,
    /// in the order of `names`, and the skipped ones with their reasons.
    ///
    /// Files are read by worker ID. A file seen for the first time is copied if its
    /// writer is dead, and mapped otherwise; a file seen again is read through a mapping
    /// kept for it, made then if fewer than [`Collector::with_max_kept_mappings`] are
    /// kept; past that bound it is copied again if its writer is dead and otherwise
    /// mapped while it is read. So a fresh collector (one scrape) maps no dead writer's
    /// file, and a long-lived one reads the files it keeps mapped with a load per value.
    /// The files are read by up to one thread per core, each taking runs of whole IDs.
    ///
    /// Whether a writer is dead is tested when first needed: its liveness file is held
    /// with a shared lock if its lock is free (as compaction holds a dead writer's), so
    /// that no writer can take that ID until its files are read; its files are copied
    /// unless the ID is the pid of a running process (which may be a stock Python worker
    /// writing the same files without a lock). A dead writer's live-mode gauge files are
    /// left out, as Python's `mark_process_dead` would have removed them.
    fn read_all(&self, state: &mut State) -> (Vec<usize>, Vec<(usize, SkipReason)>) {
        let State { listed, order, slots, tables, dead_ids, buffers, reported, locks, batched, .. } = state;
        let (listed, order) = (&listed[..], &order[..]);
        let ids: Vec<Option<&str>> = listed.iter().map(file::ListedDb::worker_id).collect();
        let is_mapped = |slot: &Slot| slot.state.as_deref().is_some_and(FileState::is_mapped);
        // A file with a kept mapping is, on a repeat scrape, a load of its `used` and
        // little more: it counts as a share of a file to read when deciding how many
        // threads to start (a start costs about 50 µs).
        let kept = slots.iter().filter(|s| is_mapped(s)).count();
        let threads = threads_for(listed.len() - kept + kept / KEPT_FILES_PER_FILE);
        // Runs of whole IDs, of about equal numbers of files: several per thread, so that
        // a thread held up (by the write lock, while another parses the first file of a
        // kind) takes fewer of them.
        let parts = if threads > 1 { threads * RUNS_PER_THREAD } else { 1 };
        let mut runs: Vec<std::ops::Range<usize>> = Vec::with_capacity(parts);
        let (mut start, mut end) = (0, 0);
        for group in order.chunk_by(|&a, &b| ids[a] == ids[b]) {
            end += group.len();
            if end * parts >= (runs.len() + 1) * listed.len() {
                runs.push(start..end);
                start = end;
            }
        }
        if start < end {
            runs.push(start..end);
        }
        let shared = parking_lot::RwLock::new(std::mem::take(tables));
        // The directory just listed, opened for this scrape;
        // without it, files are opened by their whole path.
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&self.dir)
            .ok();
        let dir = dir.as_ref().and_then(|d| Some((std::os::fd::AsFd::as_fd(d), d.metadata().ok()?.dev())));
        let ctx = ReadContext { ids: &ids, listed, locks, tables: &shared, dir, dead_ids };
        let mut outputs: Vec<ReadOutput> = Vec::with_capacity(runs.len());
        let mut rest: &mut [Slot] = slots;
        let mut parts = Vec::with_capacity(runs.len());
        // The bound on kept mappings holds for the collector as a whole: each run keeps
        // the mappings it has and may make a share of the room left, by its share of
        // the files (rounded so that the shares add up to the room).
        let room = self.max_kept_mappings.saturating_sub(kept);
        let share = |end: usize| (room as u128 * end as u128 / listed.len().max(1) as u128) as usize;
        for run in &runs {
            let (part, tail) = rest.split_at_mut(run.len());
            let kept = part.iter().filter(|s| is_mapped(s)).count();
            parts.push((&order[run.clone()], part, kept + share(run.end) - share(run.start)));
            rest = tail;
        }
        // Each thread takes runs until none is left; if no thread can be started, this
        // one reads them all.
        let queue = Mutex::new(parts);
        // Files left pending on a file read ahead of the tables (see `read::Ahead`).
        let pending = std::sync::atomic::AtomicUsize::new(0);
        let work = |buffers: &mut read::Buffers| {
            let mut outputs = Vec::new();
            loop {
                let next = queue.lock().pop();
                let Some((order, part, limit)) = next else { break };
                outputs.push(self.read_groups(&ctx, order, part, limit, buffers));
            }
            buffers.parse_ahead(&shared);
            pending.fetch_add(buffers.take_pending_count(), std::sync::atomic::Ordering::Relaxed);
            outputs
        };
        if runs.len() > 1 {
            std::thread::scope(|scope| {
                let helpers: Vec<_> = (1..threads)
                    .filter_map(|_| {
                        let work = &work;
                        threads::spawn_helper(scope, "prometheus-multiproc-scrape", move || {
                            work(&mut read::Buffers::default())
                        })
                        .ok()
                    })
                    .collect();
                outputs.extend(work(buffers));
                for helper in helpers {
                    // A panic in a reading thread is a bug; carry it to the caller.
                    outputs.extend(helper.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
                }
            });
        } else {
            outputs.extend(work(buffers));
        }
        // Files read ahead of the tables take the entries of the file they matched, now
        // parsed; should that parse not have given the entries read ahead, they are read
        // again as any file is.
        let mut again = Vec::new();
        if pending.into_inner() > 0 {
            // Read as if no file had been read ahead: none is, now.
            buffers.read_ahead(false);
            for (k, slot) in slots.iter_mut().enumerate() {
                let Some(st) = slot.state.as_deref_mut() else { continue };
                if let Err(access) = st.take_pending() {
                    slot.state = None;
                    let i = order[k];
                    if let Err(reason) = self.refresh(&mut slot.state, &listed[i], dir, access, &shared, buffers) {
                        again.push((i, reason));
                    }
                }
            }
            buffers.read_ahead(true);
        }
        *tables = shared.into_inner();
        // No ring outlives the reads (see `read::Buffers::batch`).
        #[cfg(target_os = "linux")]
        {
            buffers.batch = None;
        }
        let (mut usable, mut skipped) = (Vec::with_capacity(listed.len()), Vec::new());
        dead_ids.clear();
        *batched = outputs.iter().map(|out| out.batched).sum();
        if *batched > 0 {
            log::debug!("{} files read in batches through io_uring", *batched);
        }
        for out in outputs {
            usable.extend(out.usable);
            skipped.extend(out.skipped);
            dead_ids.extend(out.dead_ids);
            for i in out.forgotten {
                reported.remove(&listed[i].name);
            }
        }
        if !again.is_empty() {
            // `again` is in slot order: sorted by listing index for the lookups.
            again.sort_unstable_by_key(|&(i, _)| i);
            usable.retain(|i| again.binary_search_by_key(i, |&(j, _)| j).is_err());
            skipped.extend(again);
        }
        usable.sort_unstable();
        (usable, skipped)
    }

    /// Reads the files of a run of whole worker IDs (`order`, with their states in
    /// `slots`, keeping at most `limit` mappings), as [`Collector::read_all`] says.
    fn read_groups(
        &self,
        ctx: &ReadContext<'_>,
        order: &[usize],
        slots: &mut [Slot],
        limit: usize,
        buffers: &mut read::Buffers,
    ) -> ReadOutput {
        let (ids, listed) = (ctx.ids, ctx.listed);
        let mut out = ReadOutput::default();
        let mut mapped = slots.iter().filter(|s| s.state.as_deref().is_some_and(FileState::is_mapped)).count();
        let is_live_gauge = |i: usize| listed[i].name.to_str().is_some_and(|n| n.starts_with("gauge_live"));
        let mut at = 0;
        // Exited stock workers' files seen for the first time, read in batches (listing
        // index, slot index): see `Collector::read_batch`.
        let mut pending: Vec<(usize, usize)> = Vec::new();
        for group in order.chunk_by(|&a, &b| ids[a] == ids[b]) {
            while pending.len() >= BATCH_FILES {
                let batch: Vec<_> = pending.drain(..BATCH_FILES).collect();
                self.read_batch(ctx, &batch, slots, buffers, &mut out);
            }
            let here = at..at + group.len();
            let first_slot = at;
            at += group.len();
            let states = &mut slots[here];
            let id = ids[group[0]];
            if let Some(id) = id
                && let Some(stamp) = self.still_sealed(ctx.dead_ids, id, group.iter().zip(states.iter()))
            {
                out.usable.extend(group.iter().filter(|&&i| !is_live_gauge(i)));
                out.dead_ids.insert(id.to_owned(), stamp);
                continue;
            }
            // The liveness test, made when first needed and held until this ID's files
            // are read.
            let mut held: Option<liveness::Held> = None;
            let probe = |held: &mut Option<liveness::Held>| -> Writer {
                let held = held.get_or_insert_with(|| match id {
                    // Listed without a liveness file: a stock Python worker's ID (a writer
                    // of ours starting since is alive, and the rules for an ID of unknown
                    // liveness treat it so).
                    Some(id) if !ctx.locks.contains(id) => liveness::Held::NoLivenessFile,
                    // A liveness file that is not a regular file is no writer's (writers
                    // refuse it): the ID's liveness is unknown, as `probe_liveness` says.
                    Some(id) => match liveness::hold_if_dead(&self.dir, id) {
                        liveness::Held::Dead(f) if !f.metadata().is_ok_and(|m| m.is_file()) => liveness::Held::NotDead,
                        held => held,
                    },
                    None => liveness::Held::NotDead,
                });
                match held {
                    liveness::Held::Dead(_) => Writer::Dead,
                    liveness::Held::NotDead => Writer::NotDead,
                    liveness::Held::NoLivenessFile => Writer::Unknown,
                }
            };
            // Whether a dead writer's files are copied: not if its ID is the pid of a
            // running process. `pid_running` first: one `kill(pid, 0)`, and for most dead
            // IDs that is all.
            let pid_reused = |id: &str| liveness::pid_running(id) && liveness::pid_in_use(&self.dir, id);
            // An ID without a liveness file (a stock Python worker's) is copied too when
            // it is a pid no process has (that worker has exited), and checked by copying
            // twice (see `Access::verify`).
            let exited_pid = |id: &str| id.parse::<i32>().is_ok_and(|pid| pid > 0) && !liveness::pid_running(id);
            let mut sealed: Option<(bool, bool)> = None;
            let mut copied_all = true;
            for (k, (&i, slot)) in group.iter().zip(states.iter_mut()).enumerate() {
                if is_live_gauge(i) && probe(&mut held) == Writer::Dead {
                    if slot.state.take().is_some_and(|st| st.is_mapped()) {
                        mapped -= 1;
                    }
                    out.forgotten.push(i);
                    continue;
                }
                let known = slot.state.as_deref();
                let was_mapped = known.is_some_and(FileState::is_mapped);
                let room = mapped < limit;
                let access = if was_mapped || (known.is_some() && room) {
                    // Read through a mapping kept, or one to keep: a file seen again.
                    Access { sealed: false, verify: false, keep_map: true }
                } else {
                    // Seen for the first time, or past the bound: copied if its writer is
                    // dead, else mapped (and the mapping kept if there is room).
                    let (sealed, verify) = *sealed.get_or_insert_with(|| match (probe(&mut held), id) {
                        (Writer::Dead, Some(id)) => (!pid_reused(id), false),
                        (Writer::Unknown, Some(id)) if exited_pid(id) => (true, true),
                        _ => (false, false),
                    });
                    Access { sealed, verify, keep_map: !sealed && room }
                };
                // Copied twice, seen for the first time, listed as a regular file: read
                // with others in a batch (its writer holds no lock to keep meanwhile),
                // unless it is likely too large to copy (then it is mapped alone).
                if cfg!(target_os = "linux")
                    && access.verify
                    && slot.state.is_none()
                    && listed[i].regular_ino.is_some()
                    && ctx.dir.is_some()
                    // (The name is parsed here only once a file too large to copy was met:
                    // a directory of small files parses each name once, in `refresh`.)
                    && !(buffers.met_large()
                        && listed[i]
                            .name
                            .to_str()
                            .and_then(name::parse_file_name)
                            .is_some_and(|k| buffers.expects_large(k.typ)))
                {
                    pending.push((i, first_slot + k));
                    continue;
                }
                let result = self.refresh(&mut slot.state, &listed[i], ctx.dir, access, ctx.tables, buffers);
                let is_mapped = slot.state.as_deref().is_some_and(FileState::is_mapped);
                mapped = mapped + usize::from(is_mapped) - usize::from(was_mapped);
                copied_all &= access.sealed && !is_mapped;
                match result {
                    Ok(()) => out.usable.push(i),
                    Err(reason) => out.skipped.push((i, reason)),
                }
            }
            if let (true, Some(id), Some(liveness::Held::Dead(lock))) =
                (copied_all && sealed.is_some_and(|s| s.0), id, &held)
                && let Some(stamp) = lock.metadata().ok().and_then(|meta| Stamp::settled(&meta))
                && liveness::holder(&self.dir, id).is_none_or(|pid| pid.to_string() != id)
            {
                out.dead_ids.insert(id.to_owned(), stamp);
            }
            drop(held);
        }
        for batch in pending.chunks(BATCH_FILES) {
            self.read_batch(ctx, batch, slots, buffers, &mut out);
        }
        out
    }

    /// Reads the exited stock workers' files `files` (listing index, slot index), first
    /// seen, as [`Collector::refresh`] would copy each twice, but at least
    /// [`BATCH_AT_LEAST`] of them at a time through `io_uring` (see
    /// [`crate::region::Batch`]): one system call for the batch instead of four per
    /// file. A file the batch's copies do not settle, or every file when `io_uring`
    /// cannot be used, is read on its own.
    fn read_batch(
        &self,
        ctx: &ReadContext<'_>,
        files: &[(usize, usize)],
        slots: &mut [Slot],
        buffers: &mut read::Buffers,
        out: &mut ReadOutput,
    ) {
        let access = Access { sealed: true, verify: true, keep_map: false };
        let mut done = vec![false; files.len()];
        #[cfg(target_os = "linux")]
        if let (true, Some((dir_fd, _))) = (files.len() >= BATCH_AT_LEAST, ctx.dir)
            && let Some(mut batch) = buffers.batch.take().or_else(new_batch)
        {
            use std::os::unix::ffi::OsStrExt;
            // The files a batch can open: those with a metrics file name (any other is
            // read alone, and reported as `refresh` reports it).
            let (batched, names): (Vec<_>, Vec<_>) = files
                .iter()
                .enumerate()
                .filter_map(|(n, &(i, _))| {
                    let name = &ctx.listed[i].name;
                    let kind = name.to_str().and_then(name::parse_file_name)?;
                    let request = buffers.first_read(kind.typ);
                    Some(((n, kind, request), (std::ffi::CString::new(name.as_bytes()).ok()?, request)))
                })
                .unzip();
            if batch.read_twice(dir_fd, names).is_ok() {
                for (j, (n, kind, request)) in batched.into_iter().enumerate() {
                    let (i, k) = files[n];
                    let listed = &ctx.listed[i];
                    let path = read::FilePath::listed(&self.dir, ctx.dir, &listed.name, listed.regular_ino);
                    let copies = batch.get(j);
                    let state = &mut slots[k].state;
                    if let Some(result) = read::take_copies(state, &path, &kind, request, copies, ctx.tables, buffers) {
                        done[n] = true;
                        out.batched += 1;
                        match result {
                            Ok(()) => out.usable.push(i),
                            Err(reason) => out.skipped.push((i, reason)),
                        }
                    }
                }
            }
            buffers.batch = Some(batch);
        }
        for (&(i, k), _) in files.iter().zip(&done).filter(|(_, done)| !**done) {
            match self.refresh(&mut slots[k].state, &ctx.listed[i], ctx.dir, access, ctx.tables, buffers) {
                Ok(()) => out.usable.push(i),
                Err(reason) => out.skipped.push((i, reason)),
            }
        }
    }

    /// Whether the files `names` of the dead writer `id` are as the last scrape copied
    /// them, without opening any: `id`'s liveness file has the stamp it had then (a
    /// writer taking the ID rewrites it, so the writer is still dead and nothing of ours
    /// has written its files since), and each file (but live-mode gauges, left out for a
    /// dead writer) has the stamp it had when it was read whole. IDs that are their last
    /// holder's pid are never recorded: a stock Python worker given that pid again takes
    /// no lock and may have written the files, in place, since. Returns the stamp.
    fn still_sealed<'n>(
        &self,
        dead_ids: &HashMap<String, Stamp>,
        id: &str,
        mut files: impl Iterator<Item = (&'n usize, &'n Slot)>,
    ) -> Option<Stamp> {
        let stamp = *dead_ids.get(id)?;
        let lock = file::lstat(&self.dir.join(names::lock_name(id))).ok()?;
        let unchanged = |(_, slot): (&usize, &Slot)| {
            slot.key.to_str().is_some_and(|n| n.starts_with("gauge_live"))
                || slot.state.as_ref().is_some_and(|st| st.unchanged(&self.dir.join(&slot.key)))
        };
        (Stamp::of(&lock) == stamp && files.all(unchanged)).then_some(stamp)
    }

    fn refresh(
        &self,
        slot: &mut Option<Box<FileState>>,
        listed: &file::ListedDb,
        dir: Option<(std::os::fd::BorrowedFd<'_>, u64)>,
        access: Access,
        tables: &parking_lot::RwLock<Tables>,
        buffers: &mut read::Buffers,
    ) -> std::result::Result<(), SkipReason> {
        // A known file's kind is its name's, parsed when it was first seen.
        let kind = match slot {
            Some(st) => st.kind.clone(),
            None => listed.name.to_str().and_then(name::parse_file_name).ok_or(SkipReason::UnknownName)?,
        };
        let path = read::FilePath::listed(&self.dir, dir, &listed.name, listed.regular_ino);
        read::refresh(slot, &path, kind, access, tables, buffers)
    }
}

/// One file's state while a scrape reads it, under its key in the collector's map.
#[derive(Debug)]
struct Slot {
    key: OsString,
    state: Option<Box<FileState>>,
}

/// What every thread of a scrape's reads shares.
struct ReadContext<'a> {
    ids: &'a [Option<&'a str>],
    listed: &'a [file::ListedDb],
    /// The worker IDs that had a liveness file when the directory was listed.
    locks: &'a HashSet<String>,
    tables: &'a parking_lot::RwLock<Tables>,
    /// The directory, open (files are opened relative to it), and its device, if it
    /// could be opened.
    dir: Option<(std::os::fd::BorrowedFd<'a>, u64)>,
    /// The dead writers whose files the last scrape copied (see [`Collector::still_sealed`]).
    dead_ids: &'a HashMap<String, Stamp>,
}

/// What one thread's share of a scrape's reads found (indices into the listing).
#[derive(Debug, Default)]
struct ReadOutput {
    usable: Vec<usize>,
    skipped: Vec<(usize, SkipReason)>,
    dead_ids: HashMap<String, Stamp>,
    /// Files left out whose skip reports are forgotten (dead writers' live gauges).
    forgotten: Vec<usize>,
    /// How many files were read in batches.
    batched: usize,
}

/// How many files [`Collector::read_batch`] reads in one batch at most (no file waits
/// for a batch where there is no `io_uring`).
#[cfg(target_os = "linux")]
const BATCH_FILES: usize = crate::region::BATCH_FILES;
#[cfg(not(target_os = "linux"))]
const BATCH_FILES: usize = 1;

/// The fewest files [`Collector::read_batch`] reads through `io_uring`: below that,
/// setting up a ring (once per scrape and thread) costs about what it saves.
const BATCH_AT_LEAST: usize = 16;

/// A ring for batched reads, unless `io_uring` is known not to work in this process: a
/// kernel without it (or without what the batch needs, Linux 5.19), or a process not
/// allowed it, is not asked again; a passing shortage (of memory, of descriptors) is.
#[cfg(target_os = "linux")]
fn new_batch() -> Option<crate::region::Batch> {
    static UNAVAILABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if UNAVAILABLE.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    match crate::region::Batch::new() {
        Ok(batch) => Some(batch),
        Err(e) => {
            let lasting = matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS | libc::EPERM | libc::EACCES | libc::EINVAL | libc::EOPNOTSUPP)
            );
            log::debug!("io_uring unavailable ({e}): files are read one by one");
            if lasting {
                UNAVAILABLE.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            None
        }
    }
}

/// How many runs of files each reading thread gets, on average (see
/// [`Collector::read_all`]).
const RUNS_PER_THREAD: usize = 8;

/// How many files read through kept mappings count as one file to read, in
/// [`Collector::read_all`]'s choice of threads.
const KEPT_FILES_PER_FILE: usize = 16;

/// How many threads read a scrape's `files` files: one per core (at most 4), each with
/// at least 32 files to read; one on a single core.
fn threads_for(files: usize) -> usize {
    cores().min(4).min(files / 32).max(1)
}

/// How much work a merge must have to be shared between threads (below that, a thread
/// would cost more to start than it saves): its entries, plus [`MAPPED_FILE_WORK`] per
/// file whose values it loads from a mapping.
const PARALLEL_MERGE_WORK: usize = 100_000;

/// What loading a file's values from its mapping adds to a merge's work, in entries:
/// a cache and TLB miss or two, most of the work for a small file (10,000 small files
/// of 4.5 entries each scrape faster warm on two threads than on one).
const MAPPED_FILE_WORK: usize = 16;

/// How many threads add up the values of a merge of `files`: one per core (at most
/// 4) past [`PARALLEL_MERGE_WORK`], else one.
fn merge_threads(files: &[FileInput<'_>]) -> usize {
    #[cfg(test)]
    if let Some(threads) = MERGE_THREADS.get() {
        return threads;
    }
    let work: usize =
        files.iter().map(|f| f.samples.len() + if f.values.is_mapped() { MAPPED_FILE_WORK } else { 0 }).sum();
    if work < PARALLEL_MERGE_WORK { 1 } else { cores().min(4) }
}

#[cfg(test)]
thread_local! {
    /// Tests only: the number of threads every merge of this thread's scrapes uses.
    static MERGE_THREADS: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The number of cores this process may use, asked once per process: the answer costs
/// a few system calls (the affinity mask and the cgroup's CPU quota), a tenth of a
/// small directory's scrape.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// What a scrape knows of a worker ID's writer (see [`Collector::read_all`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Its liveness lock is free: it exited or was killed.
    Dead,
    /// Its lock is held, or its liveness file cannot be used.
    NotDead,
    /// No liveness file: a stock Python worker's ID.
    Unknown,
}

impl State {
    /// Takes a new listing: its reading order, and each listed file's state carried
    /// over by name (files no longer listed are forgotten, with their skip reports).
    fn realign(&mut self, listed: Vec<file::ListedDb>) {
        let ids: Vec<Option<&str>> = listed.iter().map(file::ListedDb::worker_id).collect();
        let mut order: Vec<usize> = (0..listed.len()).collect();
        order.sort_by_key(|&i| ids[i]); // stable: by name within an ID
        let mut old: HashMap<OsString, Box<FileState>> =
            self.slots.drain(..).filter_map(|slot| Some((slot.key, slot.state?))).collect();
        self.slots = order
            .iter()
            .map(|&i| match old.remove_entry(&listed[i].name) {
                Some((key, st)) => Slot { key, state: Some(st) },
                None => Slot { key: listed[i].name.clone(), state: None },
            })
            .collect();
        drop(ids);
        if !self.reported.is_empty() {
            let current: HashSet<&OsString> = listed.iter().map(|l| &l.name).collect();
            self.reported.retain(|name, _| current.contains(name));
        }
        self.order = order;
        self.listed = listed;
    }

    /// Interned data is never removed one item at a time; when files that went away
    /// have left the tables much larger than what the remaining files use, start
    /// afresh (the next scrape parses everything again).
    fn compact_if_bloated(&mut self) {
        let live: usize = self.slots.iter().filter_map(|slot| slot.state.as_deref()).map(FileState::entry_count).sum();
        if self.tables.sample_count() > 4 * live + 65_536 {
            self.tables = Tables::default();
            for slot in &mut self.slots {
                slot.state = None;
            }
            self.scratch = Scratch::default();
        }
    }
}

/// The self-metrics family: files skipped by this scrape, by reason.
fn skipped_files_family(skipped: &[SkippedFile]) -> MetricFamily {
    let reason: Arc<str> = Arc::from("reason");
    let samples = SkipReason::NAMES
        .iter()
        .map(|&name| Sample {
            name: Arc::from(SKIPPED_FILES_METRIC),
            labels: Arc::new([(reason.clone(), Arc::from(name))]),
            value: skipped.iter().filter(|s| s.reason.as_str() == name).count() as f64,
        })
        .collect();
    MetricFamily {
        name: Arc::from(SKIPPED_FILES_METRIC),
        help: Arc::from("Files of the metrics directory that the last scrape skipped, by reason."),
        kind: MetricType::Gauge,
        samples,
    }
}

fn cmp_names(a: &OsString, b: &OsString) -> std::cmp::Ordering {
    use std::os::unix::ffi::OsStrExt;
    a.as_bytes().cmp(b.as_bytes())
}

#[cfg(test)]
mod tests;
