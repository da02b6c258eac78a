//! Whether a collector uses a file: the one validity check that the collector,
//! compaction (which must never fold a file a collector would skip, or the archive
//! would be skipped in turn, with everything it holds) and `inspect` share.
//!
//! A file is used whole or skipped whole. It is skipped when its header or an entry
//! breaks the layout ([`FormatError`]), or when an entry is not one Python's collector
//! can merge ([`EntryProblem`]): a key that is not UTF-8 or not
//! `[str, str, {str: str}, str]`, an empty family name, or, in a histogram file, a
//! bucket bound (`le`) that is not a number.

use std::fmt;

use crate::format::float::parse_python_float;
use crate::format::key::{KeyError, KeyRef, decode_key_ref};
use crate::format::names::FileKind;
use crate::format::{self, FormatError};

/// What is wrong with one entry's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryProblem {
    /// Not UTF-8 or not `[str, str, {str: str}, str]`.
    Key(KeyError),
    /// The family name is empty (Python's `Metric()` refuses it).
    EmptyMetricName,
    /// A histogram bucket's `le` is not a number (or is NaN).
    BucketBound {
        /// The `le` text found.
        le: String,
    },
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryProblem::Key(e) => write!(f, "{e}"),
            EntryProblem::EmptyMetricName => f.write_str("expected a metric name, found an empty one"),
            EntryProblem::BucketBound { le } => write!(f, "expected a number as bucket bound, found le={le:?}"),
        }
    }
}

impl std::error::Error for EntryProblem {}

/// Decodes a key the collector accepts: valid JSON of Python's shape with a non-empty
/// family name.
pub fn check_key(raw: &[u8]) -> Result<KeyRef<'_>, EntryProblem> {
    let key = decode_key_ref(raw).map_err(EntryProblem::Key)?;
    if key.metric_name.is_empty() {
        return Err(EntryProblem::EmptyMetricName);
    }
    Ok(key)
}

/// A bucket bound's value: `le` parsed as Python's `float()` does, NaN refused.
pub fn bucket_bound(le: &str) -> Option<f64> {
    parse_python_float(le).filter(|v| !v.is_nan())
}

/// Checks one entry's key as the collector does for a file of `kind`.
pub fn check_entry(kind: FileKind, raw: &[u8]) -> Result<(), EntryProblem> {
    let key = check_key(raw)?;
    if kind == FileKind::Histogram
        && let Some((_, le)) = key.labels.iter().find(|(name, _)| name == "le")
        && bucket_bound(le).is_none()
    {
        return Err(EntryProblem::BucketBound { le: le.to_string() });
    }
    Ok(())
}

/// Why a whole file is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// The header or an entry breaks the layout.
    Format(FormatError),
    /// The entry at `offset` is not one the collector merges.
    Entry {
        /// File offset of the entry.
        offset: usize,
        /// What is wrong with it.
        problem: EntryProblem,
    },
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::Format(e) => write!(f, "{e}"),
            FileProblem::Entry { offset, problem } => write!(f, "entry at offset {offset}: {problem}"),
        }
    }
}

impl std::error::Error for FileProblem {}

/// Checks the bytes of a whole file of `kind` (its first `used` bytes at least) as the
/// collector does: the collector uses it if and only if this returns `Ok`.
pub fn check_file(kind: FileKind, bytes: &[u8]) -> Result<(), FileProblem> {
    let used = format::checked_used(bytes).map_err(FileProblem::Format)?;
    for entry in format::entries(bytes, used) {
        let entry = entry.map_err(FileProblem::Format)?;
        check_entry(kind, entry.key).map_err(|problem| FileProblem::Entry { offset: entry.offset, problem })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(keys: &[&str]) -> Vec<u8> {
        let mut out = format::encode_header(0).to_vec();
        for key in keys {
            format::encode_entry(&mut out, key.as_bytes(), 1.0, 0.0);
        }
        let used = out.len() as u32;
        out[..4].copy_from_slice(&used.to_le_bytes());
        out
    }

    #[test]
    fn histogram_bounds_must_be_numbers_in_histogram_files_only() {
        let bad = file(&[r#"["h", "h_bucket", {"le": "x"}, "H."]"#]);
        let err = check_file(FileKind::Histogram, &bad).unwrap_err();
        assert_eq!(err, FileProblem::Entry { offset: 8, problem: EntryProblem::BucketBound { le: "x".into() } });
        assert_eq!(check_file(FileKind::Counter, &bad), Ok(()));
        assert_eq!(check_file(FileKind::Histogram, &file(&[r#"["h", "h_bucket", {"le": "+Inf"}, "H."]"#])), Ok(()));
        assert_eq!(bucket_bound("nan"), None);
    }

    #[test]
    fn empty_names_and_bad_keys_are_refused() {
        let empty = file(&[r#"["", "x", {}, "H."]"#]);
        assert!(matches!(
            check_file(FileKind::Counter, &empty),
            Err(FileProblem::Entry { problem: EntryProblem::EmptyMetricName, .. })
        ));
        assert!(matches!(check_entry(FileKind::Counter, b"[1]"), Err(EntryProblem::Key(_))));
        assert!(matches!(check_file(FileKind::Counter, &[1, 0, 0, 0]), Err(FileProblem::Format(_))));
    }
}
