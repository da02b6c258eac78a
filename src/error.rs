//! The crate's error type: what went wrong, on which path or name, and what was
//! expected.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Neither `PROMETHEUS_MULTIPROC_DIR` nor `prometheus_multiproc_dir` is set and no
    /// directory was given in code.
    DirNotSet,
    /// The metrics directory is missing or not a directory (a symlink to a directory is
    /// accepted: the directory itself is the operator's choice; what is inside it is never
    /// followed).
    NotADirectory,
    /// The metrics directory cannot be written (it lacks write or search permission
    /// for this process).
    DirNotWritable,
    /// The operating system refused an operation on a file or directory (EACCES,
    /// EPERM, EROFS); [`Error::path`] names it and [`Error::operation`] says what was
    /// being done.
    PermissionDenied,
    /// A limit of this crate was reached (for example the number of registries one
    /// process may hold); [`Error::expectation`] says which.
    LimitReached,
    /// A metric name is empty or not a valid Prometheus name.
    InvalidMetricName,
    /// A label name is empty, invalid, reserved (`__` prefix, `le` on histograms,
    /// `quantile` on summaries, `pid` on gauges) or repeated.
    InvalidLabelName,
    /// Label values were given in a number different from the family's label names.
    LabelCount,
    /// The same metric name was registered before with another type, gauge mode,
    /// label names, buckets or help.
    Conflict,
    /// Histogram buckets are not sorted, contain NaN, or are too few.
    InvalidBuckets,
    /// A worker ID is empty, too long, or contains a character that breaks file-name
    /// parsing (`_`, `/`, …).
    InvalidWorkerId,
    /// A gauge mode name is not one of the ten modes.
    InvalidGaugeMode,
    /// Another live writer (another process, or another `Registry` on the same
    /// directory in this process) holds this worker ID.
    WorkerIdInUse,
    /// Another compaction holds the directory's compaction lock.
    CompactionInProgress,
    /// The operation is not allowed in this gauge mode (`inc`/`dec` in a
    /// `mostrecent` mode).
    ModeForbids,
    /// A counter was asked to go down (negative or NaN amount).
    NegativeIncrement,
    /// A `.db` file exists but is not a regular file (symlink, directory, FIFO…).
    NotARegularFile,
    /// A `.db` file's contents do not follow the format.
    CorruptFile,
    /// The file would exceed the 2 GiB the format can describe.
    FileTooLarge,
    /// The file system has no room for the file's blocks (ENOSPC, EDQUOT).
    NoSpace,
    /// Any other I/O failure; the source error says which.
    Io,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::DirNotSet => "metrics directory not set",
            ErrorKind::NotADirectory => "metrics directory is not a directory",
            ErrorKind::DirNotWritable => "metrics directory is not writable",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::LimitReached => "limit reached",
            ErrorKind::InvalidMetricName => "invalid metric name",
            ErrorKind::InvalidLabelName => "invalid label name",
            ErrorKind::LabelCount => "wrong number of label values",
            ErrorKind::Conflict => "metric already registered differently",
            ErrorKind::InvalidBuckets => "invalid histogram buckets",
            ErrorKind::InvalidWorkerId => "invalid worker ID",
            ErrorKind::InvalidGaugeMode => "invalid gauge mode",
            ErrorKind::WorkerIdInUse => "worker ID in use by a live writer",
            ErrorKind::CompactionInProgress => "a compaction is already running",
            ErrorKind::ModeForbids => "operation not allowed in this gauge mode",
            ErrorKind::NegativeIncrement => "counters can only be incremented by non-negative amounts",
            ErrorKind::NotARegularFile => "not a regular file",
            ErrorKind::CorruptFile => "corrupt metrics file",
            ErrorKind::FileTooLarge => "metrics file would exceed 2 GiB",
            ErrorKind::NoSpace => "no space left for metrics file",
            ErrorKind::Io => "I/O error",
        }
    }
}

/// An error from this crate: a kind, the path or name at fault, the operation, what
/// was expected and what was found, and the underlying I/O error if any.
///
/// Two words: the kind, and the details behind one allocation (made only when an
/// error is), so that `Result`s stay small on paths that succeed.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    detail: Box<Detail>,
}

#[derive(Debug, Default)]
struct Detail {
    path: Option<PathBuf>,
    subject: Option<String>,
    operation: Option<&'static str>,
    expected: Option<Cow<'static, str>>,
    found: Option<Cow<'static, str>>,
    source: Option<io::Error>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Error { kind, detail: Box::default() }
    }

    /// An I/O failure on `path`, classified: a full disk is [`ErrorKind::NoSpace`], a
    /// refusal [`ErrorKind::PermissionDenied`] (of that path, whatever it is: the
    /// directory's own permissions are checked, and named, when a registry is built),
    /// anything else [`ErrorKind::Io`].
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        let kind = match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ErrorKind::NoSpace,
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => ErrorKind::PermissionDenied,
            _ => ErrorKind::Io,
        };
        Error::new(kind).at(path).caused_by(source)
    }

    /// Says what was being done ("opening", "growing", ...), for the message.
    pub(crate) fn during(mut self, operation: &'static str) -> Self {
        self.detail.operation = Some(operation);
        self
    }

    /// Says what was found instead of what was expected.
    pub(crate) fn found(mut self, found: impl Into<Cow<'static, str>>) -> Self {
        self.detail.found = Some(found.into());
        self
    }

    pub(crate) fn at(mut self, path: &Path) -> Self {
        self.detail.path = Some(path.to_path_buf());
        self
    }

    pub(crate) fn about(mut self, subject: impl Into<String>) -> Self {
        self.detail.subject = Some(subject.into());
        self
    }

    pub(crate) fn expected(mut self, expected: impl Into<Cow<'static, str>>) -> Self {
        self.detail.expected = Some(expected.into());
        self
    }

    pub(crate) fn caused_by(mut self, source: io::Error) -> Self {
        self.detail.source = Some(source);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The file or directory involved, if any.
    pub fn path(&self) -> Option<&Path> {
        self.detail.path.as_deref()
    }

    /// The metric name, label name, label values or worker ID at fault, if any.
    pub fn subject(&self) -> Option<&str> {
        self.detail.subject.as_deref()
    }

    /// What was expected, if the error can say.
    pub fn expectation(&self) -> Option<&str> {
        self.detail.expected.as_deref()
    }

    /// What was found instead, if the error can say.
    pub fn found_instead(&self) -> Option<&str> {
        self.detail.found.as_deref()
    }

    /// What was being done when the error happened ("opening", "growing", ...), if
    /// the error can say.
    pub fn operation(&self) -> Option<&str> {
        self.detail.operation
    }

    /// The underlying I/O error, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.detail.source.as_ref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.describe())?;
        if let Some(subject) = &self.detail.subject {
            write!(f, " {subject:?}")?;
        }
        match (self.detail.operation, &self.detail.path) {
            (Some(operation), Some(path)) => write!(f, " {operation} {}", path.display())?,
            (Some(operation), None) => write!(f, " {operation}")?,
            (None, Some(path)) => write!(f, " at {}", path.display())?,
            (None, None) => {}
        }
        match (&self.detail.expected, &self.detail.found) {
            (Some(expected), Some(found)) => write!(f, ": expected {expected}, found {found}")?,
            (Some(expected), None) => write!(f, ": expected {expected}")?,
            (None, Some(found)) => write!(f, ": found {found}")?,
            (None, None) => {}
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.detail.source.as_ref().map(|e| e as _)
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match err.kind {
            ErrorKind::NoSpace => io::ErrorKind::StorageFull,
            ErrorKind::DirNotSet | ErrorKind::NotADirectory => io::ErrorKind::NotFound,
            ErrorKind::DirNotWritable | ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
            ErrorKind::Io => err.detail.source.as_ref().map_or(io::ErrorKind::Other, io::Error::kind),
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_subject_path_and_expectation() {
        let e = Error::new(ErrorKind::InvalidWorkerId).about("w_1").at(Path::new("/m")).expected("[A-Za-z0-9.-]");
        assert_eq!(e.to_string(), "invalid worker ID \"w_1\" at /m: expected [A-Za-z0-9.-]");
    }

    #[test]
    fn display_says_what_was_found_beside_what_was_expected() {
        let e = Error::new(ErrorKind::CorruptFile)
            .at(Path::new("/m/counter_1.db"))
            .expected("used <= 65536")
            .found("used 70000");
        assert_eq!(e.to_string(), "corrupt metrics file at /m/counter_1.db: expected used <= 65536, found used 70000");
        assert_eq!(e.found_instead(), Some("used 70000"));
    }

    #[test]
    fn a_refusal_names_the_file_and_the_operation_not_the_directory() {
        let e = Error::io(Path::new("/m/counter_1.db"), io::Error::from_raw_os_error(libc::EACCES)).during("opening");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(e.to_string(), "permission denied opening /m/counter_1.db");
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn enospc_maps_to_no_space() {
        let e = Error::io(Path::new("/m/counter_1.db"), io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::StorageFull);
    }
}
