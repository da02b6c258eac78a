//! Archive files written by compaction, and their source manifests.
//!
//! An archive is an ordinary `.db` file (so Python's collector reads it) under the
//! reserved worker ID `0archive-GEN`, e.g. `counter_0archive-7.db`: pid 0 never
//! belongs to a worker and `0` sorts before every pid and slot name, so families keep
//! their order. Beside it, a dot-file (ignored by Python's glob) lists the files the
//! archive replaces:
//!
//! ```text
//! .counter_0archive-7.db.sources
//! prometheus-multiproc archive sources v1
//! counter_0archive-6.db
//! counter_1234.db
//! counter_1240.db
//! ```
//!
//! The manifest is renamed into place before the archive, and removed only after every
//! source it lists, so whenever an archive and one of its sources are both visible (the
//! compactor died before deleting them, or is deleting them now) the manifest is too,
//! and a reader counts only the archive.
//!
//! An archive **without** a manifest is the normal state of a finished compaction: its
//! sources are gone, so nothing is left to exclude and the manifest was removed last.
//! Readers treat a missing manifest as "no sources left" and say nothing; only a
//! manifest that is present but cannot be read or decoded is worth a warning (its
//! sources, if any remain, are then counted twice).

/// Worker-ID prefix reserved for archives.
pub const ARCHIVE_ID_PREFIX: &str = "0archive-";

/// The first line of every manifest.
pub const MANIFEST_HEADER: &str = "prometheus-multiproc archive sources v1";

/// The archive file name for a file prefix (`counter`, `gauge_max`, …) and generation.
pub fn archive_name(prefix: &str, generation: u64) -> String {
    format!("{prefix}_{ARCHIVE_ID_PREFIX}{generation}.db")
}

/// Splits an archive file name into its prefix and generation.
pub fn parse_archive_name(name: &str) -> Option<(&str, u64)> {
    let stem = name.strip_suffix(".db")?;
    // The first `_` followed by the prefix (no pattern is built: every name of a
    // directory listing is asked).
    let (prefix, generation) = stem
        .match_indices('_')
        .find_map(|(at, _)| Some((&stem[..at], stem[at + 1..].strip_prefix(ARCHIVE_ID_PREFIX)?)))?;
    let generation = generation.parse().ok()?;
    (!prefix.is_empty()).then_some((prefix, generation))
}

/// The manifest file name of an archive.
pub fn manifest_name(archive: &str) -> String {
    format!(".{archive}.sources")
}

/// Encodes the list of file names an archive replaces.
pub fn encode_manifest(sources: &[String]) -> String {
    let mut out = String::from(MANIFEST_HEADER);
    out.push('\n');
    for source in sources {
        out.push_str(source);
        out.push('\n');
    }
    out
}

/// Decodes a manifest; `None` when it lacks the header (not ours, or cut short before
/// the header was written) or names something that is not a plain `.db` file name.
pub fn decode_manifest(text: &str) -> Option<Vec<String>> {
    let mut lines = text.lines();
    if lines.next()? != MANIFEST_HEADER {
        return None;
    }
    let names: Vec<String> = lines.map(str::to_owned).collect();
    names.iter().all(|n| n.ends_with(".db") && !n.contains('/') && !n.starts_with('.')).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_round_trip_and_sort_first() {
        let name = archive_name("gauge_max", 12);
        assert_eq!(name, "gauge_max_0archive-12.db");
        assert_eq!(parse_archive_name(&name), Some(("gauge_max", 12)));
        assert_eq!(parse_archive_name("counter_1234.db"), None);
        assert_eq!(parse_archive_name("gauge_live_sum_0archive-3.db"), Some(("gauge_live_sum", 3)));
        assert_eq!(parse_archive_name("_0archive-3.db"), None);
        assert_eq!(parse_archive_name("counter_0archive-x.db"), None);
        assert_eq!(parse_archive_name("counter_0archive-3"), None);
        // The first occurrence decides, as a split at it would.
        assert_eq!(parse_archive_name("a_0archive-x_0archive-3.db"), None);
        assert!(archive_name("counter", 1).as_str() < "counter_1.db");
        assert!(archive_name("counter", 1).as_str() < "counter_w1.db");
    }

    #[test]
    fn manifest_round_trips_and_rejects_paths() {
        let sources = vec!["counter_1.db".to_owned(), "counter_0archive-1.db".into()];
        assert_eq!(decode_manifest(&encode_manifest(&sources)), Some(sources));
        assert_eq!(decode_manifest("garbage\ncounter_1.db\n"), None);
        assert_eq!(decode_manifest(&encode_manifest(&["../etc/passwd.db".into()])), None);
    }
}
