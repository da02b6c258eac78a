//! Reading one file: identity checks, a read-only mapping, incremental parsing of new
//! entries, and a snapshot of every entry's value.
//!
//! State is kept per file name between scrapes and trusted only while the file is the
//! same inode: a repeat scrape stats the file, parses only the entries appended since
//! (bytes below `used` never change), and re-reads the values with one atomic load
//! each.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use hashbrown::HashSet;

use super::SkipReason;
use super::name::FileKind;
use super::table::{BadKey, Str, Tables};
use crate::file;
use crate::format::{self, FormatError};
use crate::region::ReadMap;

/// What the collector remembers of one file between scrapes.
#[derive(Debug)]
pub(crate) struct FileState {
    dev: u64,
    ino: u64,
    pub(crate) kind: FileKind,
    map: ReadMap,
    /// Offset just past the last entry parsed.
    parsed_to: usize,
    /// The sample of each parsed entry.
    pub(crate) samples: Vec<u32>,
    /// The value offset of each parsed entry.
    value_offsets: Vec<u32>,
    /// The families named by the file, in order of first mention, with that mention's key.
    pub(crate) families: Vec<(u32, u32)>,
    seen_families: HashSet<u32>,
    /// The value of each entry, as of the last refresh.
    pub(crate) values: Vec<f64>,
    /// The timestamp of each entry of a gauge file, as of the last refresh (empty for
    /// other files).
    pub(crate) timestamps: Vec<f64>,
}

/// Maps at most this much of a file: `used` is an `i32`, so nothing beyond is read.
const MAX_MAP: u64 = format::MAX_SIZE as u64;

fn io_reason(err: &io::Error) -> SkipReason {
    match err.kind() {
        io::ErrorKind::NotFound => SkipReason::Vanished,
        io::ErrorKind::InvalidInput => SkipReason::NotARegularFile,
        _ if err.raw_os_error() == Some(libc::ELOOP) => SkipReason::NotARegularFile,
        kind => SkipReason::Unreadable(kind),
    }
}

/// Brings the state of the file at `path` up to date, creating or replacing it in
/// `slot` as needed, and snapshots its values.
///
/// # Errors
/// Why the file must be skipped this scrape. A state whose file was merely corrupt is
/// kept (with the entries before the fault), so the next scrape does not parse again
/// what it already knows.
pub(crate) fn refresh(
    slot: &mut Option<FileState>,
    path: &Path,
    kind: FileKind,
    tables: &mut Tables,
    buf: &mut Vec<u8>,
) -> Result<(), SkipReason> {
    let meta = file::lstat(path).map_err(|e| io_reason(&e))?;
    if !meta.file_type().is_file() {
        return Err(SkipReason::NotARegularFile);
    }
    if slot.as_ref().is_some_and(|st| st.dev != meta.dev() || st.ino != meta.ino() || st.kind != kind) {
        *slot = None;
    }
    let wanted = meta.len().min(MAX_MAP) as usize;
    if slot.as_ref().is_none_or(|st| st.map.len() != wanted) {
        let (handle, meta) = file::open_read_only(path).map_err(|e| io_reason(&e))?;
        if meta.len() == 0 {
            *slot = None;
            return Err(SkipReason::Empty);
        }
        let len = meta.len().min(MAX_MAP) as usize;
        let map = ReadMap::map(&handle, len).map_err(|e| io_reason(&e))?;
        match slot {
            // Same inode, grown: keep what was parsed.
            Some(st) if st.dev == meta.dev() && st.ino == meta.ino() && len >= st.map.len() => st.map = map,
            _ => {
                *slot = Some(FileState {
                    dev: meta.dev(),
                    ino: meta.ino(),
                    kind,
                    map,
                    parsed_to: format::HEADER_LEN,
                    samples: Vec::new(),
                    value_offsets: Vec::new(),
                    families: Vec::new(),
                    seen_families: HashSet::new(),
                    values: Vec::new(),
                    timestamps: Vec::new(),
                })
            }
        }
    }
    let st = slot.as_mut().expect("state was just created");
    st.parse(tables, buf)?;
    st.snapshot();
    Ok(())
}

impl FileState {
    /// Parses the entries between what was parsed before and `used`.
    fn parse(&mut self, tables: &mut Tables, buf: &mut Vec<u8>) -> Result<(), SkipReason> {
        let len = self.map.len();
        let raw_used = self.map.load_used().ok_or(SkipReason::Corrupt(FormatError::ShortHeader { len }))?;
        let used = format::check_used(raw_used, len).map_err(SkipReason::Corrupt)?;
        if used < self.parsed_to {
            // `used` went down: the file was rewritten in place. Start over.
            self.parsed_to = format::HEADER_LEN;
            self.samples.clear();
            self.value_offsets.clear();
            self.families.clear();
            self.seen_families.clear();
        }
        if used == self.parsed_to {
            return Ok(());
        }
        let pid: Option<Str> = self.kind.gauge.as_ref().map(|(_, pid)| pid.clone());
        while self.parsed_to < used {
            // Copy one entry at a time (its length field says how much), so memory stays
            // bounded by the largest entry, and let the format module validate it.
            let offset = self.parsed_to;
            let key_len = self.map.load_u32(offset).map_or(-1, |n| n as i32);
            let end = match usize::try_from(key_len) {
                Ok(n) => offset.saturating_add(format::entry_len(n)).min(used),
                Err(_) => (offset + 4).min(used),
            };
            let bytes = self
                .map
                .copy_to(offset, end, buf)
                .ok_or(SkipReason::Corrupt(FormatError::UsedBeyondEnd { used, len }))?;
            let entry = match format::entries_at(bytes, offset).next() {
                Some(Ok(entry)) if bytes.len() == format::entry_len(entry.key.len()) => entry,
                Some(Err(e)) => return Err(SkipReason::Corrupt(e)),
                _ => {
                    let end = offset.saturating_add(format::entry_len(key_len.max(0) as usize));
                    return Err(SkipReason::Corrupt(FormatError::EntryBeyondUsed { offset, end, used }));
                }
            };
            let key = tables.key_id(entry.key).map_err(|bad| match bad {
                BadKey::Invalid(error) => SkipReason::InvalidKey { offset, error },
                BadKey::EmptyMetricName => SkipReason::EmptyMetricName { offset },
            })?;
            let sample = match &pid {
                Some(pid) => tables.gauge_sample(key, pid),
                None => tables.key(key).sample,
            };
            let family = tables.key(key).family;
            // Consecutive entries usually belong to one family: skip the set then.
            if self.families.last().is_none_or(|&(last, _)| last != family) && self.seen_families.insert(family) {
                self.families.push((family, key));
            }
            self.samples.push(sample);
            // `used` fits an i32, so every offset below it fits a u32.
            self.value_offsets.push(entry.value_offset as u32);
            self.parsed_to = offset + format::entry_len(entry.key.len());
        }
        Ok(())
    }

    /// Reads every entry's value (and, in gauge files, timestamp) with one atomic load
    /// each. Every offset lies below `used` (checked when its entry was parsed), so
    /// within the mapping; the fallbacks are never taken.
    fn snapshot(&mut self) {
        let map = &self.map;
        self.values.clear();
        self.values
            .extend(self.value_offsets.iter().map(|&off| map.load_u64(off as usize).map_or(f64::NAN, f64::from_bits)));
        self.timestamps.clear();
        if self.kind.gauge.is_some() {
            self.timestamps.extend(
                self.value_offsets.iter().map(|&off| map.load_u64(off as usize + 8).map_or(0.0, f64::from_bits)),
            );
        }
    }

    /// Number of entries parsed.
    pub(crate) fn entry_count(&self) -> usize {
        self.samples.len()
    }
}
