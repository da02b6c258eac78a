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
    /// The metrics directory cannot be written.
    DirNotWritable,
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

/// An error from this crate: a kind, the path or name at fault, what was expected,
/// and the underlying I/O error if any.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    path: Option<PathBuf>,
    subject: Option<String>,
    expected: Option<Cow<'static, str>>,
    source: Option<io::Error>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Error { kind, path: None, subject: None, expected: None, source: None }
    }

    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        let kind = match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ErrorKind::NoSpace,
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => ErrorKind::DirNotWritable,
            _ => ErrorKind::Io,
        };
        Error::new(kind).at(path).caused_by(source)
    }

    pub(crate) fn at(mut self, path: &Path) -> Self {
        self.path = Some(path.to_path_buf());
        self
    }

    pub(crate) fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    pub(crate) fn expected(mut self, expected: impl Into<Cow<'static, str>>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    pub(crate) fn caused_by(mut self, source: io::Error) -> Self {
        self.source = Some(source);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The file or directory involved, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The metric name, label name, label values or worker ID at fault, if any.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// What was expected instead, if the error can say.
    pub fn expectation(&self) -> Option<&str> {
        self.expected.as_deref()
    }

    /// The underlying I/O error, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_ref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.describe())?;
        if let Some(subject) = &self.subject {
            write!(f, " {subject:?}")?;
        }
        if let Some(path) = &self.path {
            write!(f, " at {}", path.display())?;
        }
        if let Some(expected) = &self.expected {
            write!(f, ": expected {expected}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match err.kind {
            ErrorKind::NoSpace => io::ErrorKind::StorageFull,
            ErrorKind::DirNotSet | ErrorKind::NotADirectory => io::ErrorKind::NotFound,
            ErrorKind::DirNotWritable => io::ErrorKind::PermissionDenied,
            ErrorKind::Io => err.source.as_ref().map_or(io::ErrorKind::Other, io::Error::kind),
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
    fn enospc_maps_to_no_space() {
        let e = Error::io(Path::new("/m/counter_1.db"), io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::StorageFull);
    }
}
