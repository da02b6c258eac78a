//! The one grammar of the names in a metrics directory: kinds, gauge modes, worker
//! IDs, archives, liveness files and temporary files. Writers build names with it;
//! the collector, compaction, cleanup and `inspect` parse them with it.
//!
//! ```text
//! counter_ID.db  histogram_ID.db  summary_ID.db  gauge_MODE_ID.db   a writer's files
//! KIND_0archive-GEN.db                                             compaction archives
//! writer_ID.lock                                                   a writer's liveness file
//! .KIND_ID.db.PID.tmp                                              a file being created by PID
//! .KIND_0archive-GEN.db.sources                                    an archive's manifest
//! .KIND_0archive-GEN.db.tmp  .KIND_0archive-GEN.db.sources.tmp     compaction's staging files
//! .compact.lock  .compaction.seq                                   compaction lock and sequence
//! ```
//!
//! `KIND` is `counter`, `histogram`, `summary` or `gauge_MODE`, `MODE` one of the ten
//! [`GaugeMode`]s. `ID` is a worker ID ([`is_worker_id`]): the writer's pid, or a
//! stable slot name of `[A-Za-z0-9.-]`. Python's collector splits names on `_` and
//! takes the `pid` label of `all`-mode gauges from the name, so an ID never holds `_`.
//! Dot-names are invisible to Python's `glob('*.db')` and to the collector.
//!
//! Three readings of a `.db` name, for three questions: [`parse_db_name`] (a writer of
//! this crate: `ID` is a worker ID), [`split_db_name`] (any writer's or archive's file,
//! Python's included) and [`python_view`] (what Python's collector makes of the name,
//! which the collector reproduces).

use std::str::FromStr;

use crate::error::{Error, ErrorKind, Result};
use crate::format::archive::{self, ARCHIVE_ID_PREFIX};

/// How the collector merges one gauge across processes (Python's
/// `multiprocess_mode`). The `live` modes count only processes that are alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GaugeMode {
    /// One series per process, with a `pid` label (Python's default).
    All,
    /// As `All`, live processes only.
    LiveAll,
    /// The minimum over processes.
    Min,
    /// The minimum over live processes.
    LiveMin,
    /// The maximum over processes.
    Max,
    /// The maximum over live processes.
    LiveMax,
    /// The sum over processes.
    Sum,
    /// The sum over live processes (in-flight requests, open connections).
    LiveSum,
    /// The most recently set value. `inc`/`dec` are refused.
    MostRecent,
    /// The most recently set value among live processes. `inc`/`dec` are refused.
    LiveMostRecent,
}

impl GaugeMode {
    /// Every mode, in Python's order.
    pub const ALL: [GaugeMode; 10] = [
        GaugeMode::All,
        GaugeMode::LiveAll,
        GaugeMode::Min,
        GaugeMode::LiveMin,
        GaugeMode::Max,
        GaugeMode::LiveMax,
        GaugeMode::Sum,
        GaugeMode::LiveSum,
        GaugeMode::MostRecent,
        GaugeMode::LiveMostRecent,
    ];

    /// The mode's name as Python spells it (`"livesum"`).
    pub fn as_str(self) -> &'static str {
        match self {
            GaugeMode::All => "all",
            GaugeMode::LiveAll => "liveall",
            GaugeMode::Min => "min",
            GaugeMode::LiveMin => "livemin",
            GaugeMode::Max => "max",
            GaugeMode::LiveMax => "livemax",
            GaugeMode::Sum => "sum",
            GaugeMode::LiveSum => "livesum",
            GaugeMode::MostRecent => "mostrecent",
            GaugeMode::LiveMostRecent => "livemostrecent",
        }
    }

    /// The file-name prefix of the mode's files (`"gauge_livesum"`).
    pub fn file_prefix(self) -> &'static str {
        match self {
            GaugeMode::All => "gauge_all",
            GaugeMode::LiveAll => "gauge_liveall",
            GaugeMode::Min => "gauge_min",
            GaugeMode::LiveMin => "gauge_livemin",
            GaugeMode::Max => "gauge_max",
            GaugeMode::LiveMax => "gauge_livemax",
            GaugeMode::Sum => "gauge_sum",
            GaugeMode::LiveSum => "gauge_livesum",
            GaugeMode::MostRecent => "gauge_mostrecent",
            GaugeMode::LiveMostRecent => "gauge_livemostrecent",
        }
    }

    /// Whether only live processes count.
    pub fn is_live(self) -> bool {
        self.as_str().starts_with("live")
    }

    /// Whether this is a `mostrecent` mode (timestamped `set`, no `inc`/`dec`).
    pub fn is_most_recent(self) -> bool {
        matches!(self, GaugeMode::MostRecent | GaugeMode::LiveMostRecent)
    }
}

impl FromStr for GaugeMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<GaugeMode> {
        GaugeMode::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            Error::new(ErrorKind::InvalidGaugeMode)
                .about(s)
                .expected("one of all, liveall, min, livemin, max, livemax, sum, livesum, mostrecent, livemostrecent")
        })
    }
}

/// The kind of a `.db` file: which metric type it holds and, for gauges, the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// `counter_ID.db`.
    Counter,
    /// `histogram_ID.db`.
    Histogram,
    /// `summary_ID.db`.
    Summary,
    /// `gauge_MODE_ID.db`.
    Gauge(GaugeMode),
}

impl FileKind {
    /// Every kind: counter, histogram, summary, then the gauges in [`GaugeMode::ALL`]
    /// order.
    pub const ALL: [FileKind; 13] = [
        FileKind::Counter,
        FileKind::Histogram,
        FileKind::Summary,
        FileKind::Gauge(GaugeMode::All),
        FileKind::Gauge(GaugeMode::LiveAll),
        FileKind::Gauge(GaugeMode::Min),
        FileKind::Gauge(GaugeMode::LiveMin),
        FileKind::Gauge(GaugeMode::Max),
        FileKind::Gauge(GaugeMode::LiveMax),
        FileKind::Gauge(GaugeMode::Sum),
        FileKind::Gauge(GaugeMode::LiveSum),
        FileKind::Gauge(GaugeMode::MostRecent),
        FileKind::Gauge(GaugeMode::LiveMostRecent),
    ];

    /// The part of the file name before `_ID.db` (`"counter"`, `"gauge_livesum"`).
    pub fn prefix(self) -> &'static str {
        match self {
            FileKind::Counter => "counter",
            FileKind::Histogram => "histogram",
            FileKind::Summary => "summary",
            FileKind::Gauge(mode) => mode.file_prefix(),
        }
    }

    /// The kind whose [`prefix`](FileKind::prefix) is `prefix`.
    pub fn from_prefix(prefix: &str) -> Option<FileKind> {
        FileKind::ALL.into_iter().find(|k| k.prefix() == prefix)
    }

    /// The gauge mode, for a gauge file.
    pub fn gauge_mode(self) -> Option<GaugeMode> {
        match self {
            FileKind::Gauge(mode) => Some(mode),
            _ => None,
        }
    }

    /// Whether the file's values count only while its writer lives (`gauge_live*`).
    pub fn is_live(self) -> bool {
        self.gauge_mode().is_some_and(GaugeMode::is_live)
    }
}

/// Whether `id` is a worker ID: 1 to 64 of `[A-Za-z0-9.-]`, not starting with `.`
/// (a dot-name) nor with `0archive-` (reserved for archives).
pub fn is_worker_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && !id.starts_with(ARCHIVE_ID_PREFIX)
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// What [`is_worker_id`] requires, for error messages.
pub const WORKER_ID_SYNTAX: &str =
    "1 to 64 of [A-Za-z0-9.-], not starting with '.' or '0archive-' ('_' and '/' break file-name parsing)";

/// A process identifier as it appears in file names: the pid by default, or a stable
/// worker ID (a slot number from the supervisor) so that a restarted worker reuses
/// its predecessor's files, or an automatic slot ([`WorkerId::auto`]).
///
/// Python's collector splits file names on `_` and takes the `pid` label of
/// `all`-mode gauges from the name, so an ID is limited to ASCII letters, digits, `-`
/// and `.` (not first), at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId {
    /// The ID, or for an automatic slot `auto:PREFIX`.
    text: String,
    /// For an automatic slot, the length of `auto:`; 0 for a concrete ID.
    auto_at: usize,
}

/// What [`WorkerId::parse`] reads as an automatic slot with the default prefix.
pub const AUTO: &str = "auto";

/// The prefix of automatic slots when none is given ([`WorkerId::parse`] of `auto`).
pub const AUTO_DEFAULT_PREFIX: &str = "worker";

/// The longest prefix of an automatic slot: the slot's name (`PREFIX-N`, N up to ten
/// digits) must stay a worker ID.
pub const AUTO_PREFIX_MAX: usize = 53;

impl WorkerId {
    /// Validates `id`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidWorkerId`] naming the ID when it is empty, longer than 64
    /// characters, starts with `.` or with `0archive-` (reserved for compaction archives),
    /// or holds anything but `[A-Za-z0-9.-]`.
    ///
    /// ```
    /// use prometheus_multiproc::WorkerId;
    /// assert_eq!(WorkerId::new("web-3")?.as_str(), "web-3");
    /// assert!(WorkerId::new("w_1").is_err());
    /// # Ok::<(), prometheus_multiproc::Error>(())
    /// ```
    pub fn new(id: &str) -> Result<WorkerId> {
        if is_worker_id(id) {
            Ok(WorkerId { text: id.to_owned(), auto_at: 0 })
        } else {
            Err(Error::new(ErrorKind::InvalidWorkerId).about(id).expected(WORKER_ID_SYNTAX))
        }
    }

    /// An automatic slot: "the lowest free slot named `PREFIX-N`" (`web-0`, `web-1`,
    /// ...). A process given this ID claims, when it first writes through a handle
    /// (reading one with `get` counts too; building a registry or declaring a metric
    /// does not), or at [`Registry::after_fork`](crate::Registry::after_fork), the slot
    /// with the lowest `N` whose liveness lock no live process holds, and writes under
    /// that name until it exits or forks. A
    /// fork child claims its own slot at its first write; a process that never writes
    /// never claims one. So a worker that replaces a dead one continues the dead one's
    /// counters in the same files, and a directory holds the files of at most as many
    /// slots as were ever alive at once.
    ///
    /// A slot name holds a `-`, so it never equals the pid of a stock Python worker
    /// sharing the directory.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidWorkerId`] when `prefix` is not a worker ID or is longer than
    /// [`AUTO_PREFIX_MAX`].
    ///
    /// ```
    /// use prometheus_multiproc::WorkerId;
    /// let id = WorkerId::auto("web")?;
    /// assert!(id.is_auto());
    /// assert_eq!(id.to_string(), "auto:web");
    /// assert_eq!(WorkerId::parse("auto:web")?, id);
    /// # Ok::<(), prometheus_multiproc::Error>(())
    /// ```
    pub fn auto(prefix: &str) -> Result<WorkerId> {
        if is_worker_id(prefix) && prefix.len() <= AUTO_PREFIX_MAX {
            Ok(WorkerId { text: format!("{AUTO}:{prefix}"), auto_at: AUTO.len() + 1 })
        } else {
            Err(Error::new(ErrorKind::InvalidWorkerId)
                .about(prefix)
                .expected(format!("a prefix of automatic slots: at most {AUTO_PREFIX_MAX} of {WORKER_ID_SYNTAX}")))
        }
    }

    /// Reads the text form used by `$PROMETHEUS_MULTIPROC_WORKER_ID` and the Python
    /// package: `auto` (automatic slots named `worker-N`), `auto:PREFIX` (automatic
    /// slots named `PREFIX-N`), or a worker ID.
    ///
    /// # Errors
    /// As [`WorkerId::new`] and [`WorkerId::auto`].
    pub fn parse(text: &str) -> Result<WorkerId> {
        if text == AUTO {
            WorkerId::auto(AUTO_DEFAULT_PREFIX)
        } else if let Some(prefix) = text.strip_prefix(AUTO).and_then(|rest| rest.strip_prefix(':')) {
            WorkerId::auto(prefix)
        } else {
            WorkerId::new(text)
        }
    }

    /// The current process's pid.
    pub fn pid() -> WorkerId {
        WorkerId { text: std::process::id().to_string(), auto_at: 0 }
    }

    /// Whether this is an automatic slot ([`WorkerId::auto`]) rather than a name.
    pub fn is_auto(&self) -> bool {
        self.auto_at > 0
    }

    /// The ID as text; for an automatic slot not yet claimed, `auto:PREFIX`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Slot `n` of an automatic ID (`PREFIX-n`); `None` for a concrete ID.
    pub(crate) fn auto_slot(&self, n: u32) -> Option<WorkerId> {
        self.is_auto().then(|| WorkerId { text: format!("{}-{n}", &self.text[self.auto_at..]), auto_at: 0 })
    }
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A writer's `.db` file name, parsed: `KIND_ID.db` with `ID` a worker ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbName<'a> {
    /// The file's kind.
    pub kind: FileKind,
    /// The writer's worker ID.
    pub id: &'a str,
}

/// The `.db` file name of `kind` for worker `id`.
pub fn db_name(kind: FileKind, id: &str) -> String {
    format!("{}_{id}.db", kind.prefix())
}

/// Parses a writer's file name `KIND_ID.db` whose `ID` is a worker ID (this crate's
/// writers); `None` for anything else (archives included: see
/// [`archive::parse_archive_name`]).
pub fn parse_db_name(name: &str) -> Option<DbName<'_>> {
    split_db_name(name).filter(|n| is_worker_id(n.id))
}

/// Splits `KIND_ID.db` with any non-empty `ID` without `/`: the names of this crate's
/// files, its archives, and the files Python's writers create (their `ID` is whatever
/// `process_identifier` returns, `_` included).
pub fn split_db_name(name: &str) -> Option<DbName<'_>> {
    let stem = name.strip_suffix(".db")?;
    FileKind::ALL.into_iter().find_map(|kind| {
        let id = stem.strip_prefix(kind.prefix())?.strip_prefix('_')?;
        (!id.is_empty() && !id.contains('/')).then_some(DbName { kind, id })
    })
}

/// A `.db` file name as Python's `MultiProcessCollector` reads it: its kind, and for a
/// gauge the `pid` label of its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PythonView<'a> {
    /// The kind: the metric type from the name's first `_`-part, the gauge mode from
    /// its second.
    pub kind: FileKind,
    /// For gauges, the third `_`-part minus its last three characters (`.db`).
    pub pid: Option<&'a str>,
}

/// Reads a file name as Python does: `parts = name.split('_')`; the type is
/// `parts[0]`; for gauges the mode is `parts[1]` and the `pid` label is `parts[2][:-3]`.
/// So an identifier that contains `_` is truncated (`gauge_all_w_1.db` has pid `""`),
/// as in Python, and `counter_x_y.db` is a counter file.
///
/// `None` when the type or gauge mode is unknown, or a gauge file name has fewer than
/// three parts: Python fails the whole scrape on such a file; the collector skips it.
pub fn python_view(name: &str) -> Option<PythonView<'_>> {
    let mut parts = name.split('_');
    let first = parts.next()?;
    let second = parts.next()?;
    let kind = match first {
        "counter" => FileKind::Counter,
        "histogram" => FileKind::Histogram,
        "summary" => FileKind::Summary,
        "gauge" => FileKind::Gauge(second.parse().ok()?),
        _ => return None,
    };
    if kind.gauge_mode().is_none() {
        return Some(PythonView { kind, pid: None });
    }
    let third = parts.next()?;
    let keep = third.chars().count().saturating_sub(3);
    let pid = match third.char_indices().nth(keep) {
        Some((end, _)) => &third[..end],
        None => third,
    };
    Some(PythonView { kind, pid: Some(pid) })
}

/// The worker ID of a writer's file name `KIND_ID.db`.
pub fn worker_id_of(name: &str) -> Option<&str> {
    parse_db_name(name).map(|n| n.id)
}

const LOCK_PREFIX: &str = "writer_";
const LOCK_SUFFIX: &str = ".lock";

/// The liveness file of worker `id`: `writer_ID.lock`.
pub fn lock_name(id: &str) -> String {
    format!("{LOCK_PREFIX}{id}{LOCK_SUFFIX}")
}

/// The worker ID of a liveness file name `writer_ID.lock`.
pub fn parse_lock_name(name: &str) -> Option<&str> {
    let id = name.strip_prefix(LOCK_PREFIX)?.strip_suffix(LOCK_SUFFIX)?;
    is_worker_id(id).then_some(id)
}

/// A writer's temporary file, parsed: `.KIND_ID.db.PID.tmp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterTemp<'a> {
    /// The name the file gets once complete.
    pub db: DbName<'a>,
    /// The pid of the process that creates it.
    pub pid: u32,
}

/// The temporary name under which process `pid` builds the file `db` (a `.db` name).
pub fn writer_temp_name(db: &str, pid: u32) -> String {
    format!(".{db}.{pid}.tmp")
}

/// Parses a writer's temporary file name `.KIND_ID.db.PID.tmp`.
pub fn parse_writer_temp(name: &str) -> Option<WriterTemp<'_>> {
    let stem = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (db, pid) = stem.rsplit_once('.')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(WriterTemp { db: parse_db_name(db)?, pid: pid.parse().ok()? })
}

/// Name of the directory-wide compaction lock file.
pub const COMPACT_LOCK: &str = ".compact.lock";
/// Name of the compaction sequence file (a seqlock counter: odd while a compaction
/// publishes archives and removes their sources).
pub const COMPACT_SEQ: &str = ".compaction.seq";

/// The staging name of an archive (`.ARCHIVE.tmp`) or of a manifest
/// (`.ARCHIVE.sources.tmp`).
pub fn compaction_temp_name(name: &str) -> String {
    match name.strip_prefix('.') {
        Some(dotted) => format!(".{dotted}.tmp"),
        None => format!(".{name}.tmp"),
    }
}

/// Whether `name` is a compaction's staging file: `.ARCHIVE.tmp` or
/// `.ARCHIVE.sources.tmp`.
pub fn is_compaction_temp(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .is_some_and(|staged| archive::parse_archive_name(staged.strip_suffix(".sources").unwrap_or(staged)).is_some())
}

/// The archive a manifest name `.ARCHIVE.sources` belongs to.
pub fn manifest_archive(name: &str) -> Option<&str> {
    let archive = name.strip_prefix('.')?.strip_suffix(".sources")?;
    archive::parse_archive_name(archive).map(|_| archive)
}

/// Whether `name` is one of the names this crate or Python's client writes (a `.db`
/// file of any writer or archive, a liveness file, a temporary or staging file, a
/// manifest, the compaction lock or sequence file).
pub fn is_ours(name: &str) -> bool {
    name == COMPACT_LOCK
        || name == COMPACT_SEQ
        || parse_lock_name(name).is_some()
        || parse_writer_temp(name).is_some()
        || is_compaction_temp(name)
        || manifest_archive(name).is_some()
        || split_db_name(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_names_round_trip() {
        for kind in FileKind::ALL {
            let name = db_name(kind, "w-3");
            assert_eq!(parse_db_name(&name), Some(DbName { kind, id: "w-3" }), "{name}");
        }
        assert_eq!(parse_db_name("gauge_livesum_123.db").map(|n| n.kind), Some(FileKind::Gauge(GaugeMode::LiveSum)));
        assert_eq!(parse_db_name("counter_0archive-3.db"), None);
        assert_eq!(parse_db_name("counter_.db"), None);
        assert_eq!(parse_db_name("gauge_bogus_1.db"), None);
        assert_eq!(parse_db_name("foo_1.db"), None);
        assert_eq!(parse_db_name("counter_w_1.db"), None);
    }

    #[test]
    fn python_reads_the_pid_as_the_third_part_minus_three_characters() {
        let pid = |name| python_view(name).and_then(|v| v.pid);
        assert_eq!(pid("gauge_all_1001.db"), Some("1001"));
        assert_eq!(pid("gauge_livesum_web-3.db"), Some("web-3"));
        // 'w'[:-3] == '' and 'abcd'[:-3] == 'a' in Python; characters, not bytes.
        assert_eq!(pid("gauge_all_w_1.db"), Some(""));
        assert_eq!(pid("gauge_all_abcd_1.db"), Some("a"));
        assert_eq!(pid("gauge_max_éé.db"), Some("éé"));
        assert_eq!(python_view("counter_a_b.db").map(|v| v.kind), Some(FileKind::Counter));
        assert_eq!(python_view("summary_.db").map(|v| v.kind), Some(FileKind::Summary));
        for rejected in ["counter.db", "foo_1.db", "Counter_1.db", "gauge_bogus_1.db", "gauge_all.db", "gauge.db"] {
            assert_eq!(python_view(rejected), None, "{rejected}");
        }
    }

    #[test]
    fn split_accepts_any_writers_id() {
        assert_eq!(split_db_name("counter_a_b.db"), Some(DbName { kind: FileKind::Counter, id: "a_b" }));
        assert_eq!(split_db_name("histogram_0archive-3.db").map(|n| n.id), Some("0archive-3"));
        assert_eq!(split_db_name("gauge_all_7.db").map(|n| n.kind), Some(FileKind::Gauge(GaugeMode::All)));
        assert_eq!(split_db_name("counter_.db"), None);
        assert_eq!(split_db_name("notes.db"), None);
    }

    #[test]
    fn lock_and_temp_names_round_trip() {
        assert_eq!(parse_lock_name(&lock_name("w1")), Some("w1"));
        assert_eq!(parse_lock_name("writer_.lock"), None);
        assert_eq!(parse_lock_name("writer_0archive-1.lock"), None);
        let temp = writer_temp_name("counter_123.db", 123);
        assert_eq!(temp, ".counter_123.db.123.tmp");
        let parsed = parse_writer_temp(&temp).unwrap();
        assert_eq!((parsed.db.kind, parsed.db.id, parsed.pid), (FileKind::Counter, "123", 123));
        assert_eq!(parse_writer_temp(".counter_0archive-1.db.tmp"), None);
        assert_eq!(parse_writer_temp(".counter_1.db..tmp"), None);
        assert!(is_compaction_temp(".counter_0archive-1.db.tmp"));
        assert_eq!(compaction_temp_name("counter_0archive-1.db"), ".counter_0archive-1.db.tmp");
        assert_eq!(compaction_temp_name(".counter_0archive-1.db.sources"), ".counter_0archive-1.db.sources.tmp");
        assert!(is_compaction_temp(".counter_0archive-1.db.sources.tmp"));
        assert!(!is_compaction_temp(".counter_1.db.5.tmp"));
    }

    #[test]
    fn only_our_file_patterns_are_recognised() {
        for ours in [
            "counter_1.db",
            "gauge_livesum_w-3.db",
            "histogram_9.db",
            "writer_7.lock",
            ".summary_3.db.123.tmp",
            "counter_0archive-4.db",
            ".counter_0archive-4.db.sources",
            ".counter_0archive-4.db.tmp",
            ".counter_0archive-4.db.sources.tmp",
            ".compact.lock",
            ".compaction.seq",
        ] {
            assert!(is_ours(ours), "{ours}");
        }
        for theirs in [
            "notes.txt",
            "counter_.db",
            "gauge_bogus_1.db",
            "foo.db",
            ".x.tmp",
            "writer_.lock",
            "counter_1.db.bak",
            ".foo.sources",
            ".notes.sources.tmp",
        ] {
            assert!(!is_ours(theirs), "{theirs}");
        }
    }
}
