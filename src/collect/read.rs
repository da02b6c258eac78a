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
use super::table::{BadKey, Tables};
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
    /// The key of the last entry parsed (what predicts the next one's).
    last_key: Option<u32>,
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

/// A callback a test runs on a file's path.
#[cfg(test)]
pub(crate) type PathHook = Box<dyn Fn(&Path)>;

#[cfg(test)]
thread_local! {
    /// Runs (tests only) on the directory between a scrape's listing and its reads.
    pub(crate) static AFTER_LISTING: std::cell::RefCell<Option<PathHook>> = const { std::cell::RefCell::new(None) };
    /// Runs (tests only) on a file right after it is stat'ed, before it is mapped or read.
    pub(crate) static AFTER_STAT: std::cell::RefCell<Option<PathHook>> = const { std::cell::RefCell::new(None) };
}

/// Files with more than this many bytes in use have their pages mapped in one call.
const POPULATE_ABOVE: usize = 64 * 1024;

/// Maps at most this much of a file: `used` is an `i32`, so nothing beyond is read.
const MAX_MAP: u64 = format::MAX_SIZE as u64;

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
    let mut result = refresh_once(slot, path, &kind, tables, buf, false);
    // A writer grows its file (the blocks first, then the entries, then `used`), so a
    // `used` beyond what was mapped means the file grew after it was measured: map it
    // again at its new size. Twice at most: past that the file really is corrupt.
    for _ in 0..2 {
        match result {
            Err(SkipReason::Corrupt(FormatError::UsedBeyondEnd { .. })) => {
                result = refresh_once(slot, path, &kind, tables, buf, true);
            }
            _ => break,
        }
    }
    result
}

/// One attempt of [`refresh`]; `remap` maps the file afresh even if its size seems
/// unchanged.
fn refresh_once(
    slot: &mut Option<FileState>,
    path: &Path,
    kind: &FileKind,
    tables: &mut Tables,
    buf: &mut Vec<u8>,
    remap: bool,
) -> Result<(), SkipReason> {
    // A file read before is stat'ed (no open) to see whether it is the same and the
    // same size; a new one is opened at once (its fstat says the same).
    let mut reuse = false;
    if let Some(st) = slot.as_ref().filter(|_| !remap) {
        let meta = file::lstat(path).map_err(|e| io_reason(&e))?;
        if !meta.file_type().is_file() {
            return Err(SkipReason::NotARegularFile);
        }
        #[cfg(test)]
        AFTER_STAT.with(|hook| hook.borrow().as_ref().map(|f| f(path)));
        if st.dev != meta.dev() || st.ino != meta.ino() || st.kind != *kind {
            *slot = None;
        } else {
            reuse = st.map.len() == meta.len().min(MAX_MAP) as usize;
        }
    }
    if !reuse {
        let (handle, meta) = file::open_read_only(path).map_err(|e| io_reason(&e))?;
        if meta.len() == 0 {
            *slot = None;
            return Err(SkipReason::Empty);
        }
        let len = meta.len().min(MAX_MAP) as usize;
        let map = ReadMap::map(&handle, len).map_err(|e| io_reason(&e))?;
        // Every page below `used` holds values that are about to be read: map them in
        // one call rather than fault them in a few at a time. For a small file one
        // fault maps it all (the kernel maps up to 64 KiB around a fault), so the call
        // would only add a system call per file.
        if let Some(used) = map.load_used().and_then(|u| usize::try_from(u).ok())
            && used > POPULATE_ABOVE
        {
            map.populate(used);
        }
        match slot {
            // Same inode, grown: keep what was parsed.
            Some(st) if st.dev == meta.dev() && st.ino == meta.ino() && len >= st.map.len() => st.map = map,
            _ => {
                *slot = Some(FileState {
                    dev: meta.dev(),
                    ino: meta.ino(),
                    kind: kind.clone(),
                    map,
                    parsed_to: format::HEADER_LEN,
                    last_key: None,
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
    // Values of the entries known already, then new entries with their values.
    st.snapshot();
    let parsed = st.parse(tables, buf);
    if st.map.truncated() {
        // Something truncated the file under the mapping: some of what was just read
        // is zeros standing in for missing pages. Forget the file; the next scrape
        // maps it afresh at its new size.
        *slot = None;
        return Err(SkipReason::Truncated);
    }
    parsed
}

impl FileState {
    /// Parses the entries between what was parsed before and `used`, reading the value
    /// (and, in gauge files, the timestamp) of each new entry as it goes.
    fn parse(&mut self, tables: &mut Tables, buf: &mut Vec<u8>) -> Result<(), SkipReason> {
        let len = self.map.len();
        let raw_used = self.map.load_used().ok_or(SkipReason::Corrupt(FormatError::ShortHeader { len }))?;
        let used = format::check_used(raw_used, len).map_err(SkipReason::Corrupt)?;
        if used < self.parsed_to {
            // `used` went down: the file was rewritten in place. Start over.
            self.parsed_to = format::HEADER_LEN;
            self.last_key = None;
            self.samples.clear();
            self.value_offsets.clear();
            self.families.clear();
            self.seen_families.clear();
            self.values.clear();
            self.timestamps.clear();
        }
        if used == self.parsed_to {
            return Ok(());
        }
        // Room for the new entries, sized by the keys seen so far (or, before any,
        // by a typical entry of 64 bytes), so that the vectors are not copied as they
        // grow; capped, as `used` may be a corrupt file's claim.
        let expected = ((used - self.parsed_to) / tables.mean_entry_len().unwrap_or(64)).min(1 << 20);
        self.samples.reserve(expected);
        self.value_offsets.reserve(expected);
        self.values.reserve(expected);
        let pid = self.kind.gauge.as_ref().map(|(_, pid)| (tables.pid_id(pid), pid.clone()));
        let mut last_key = self.last_key;
        let mut offset = self.parsed_to;
        while offset < used {
            // Fast path: the entry is the key that followed the previous entry's key in
            // the file read before, compared in place (its head, word by word).
            let predicted = tables.predicted(last_key).filter(|&key| {
                let head = tables.head(key);
                offset + head.len() + format::VALUE_LEN <= used && self.map.words_equal(offset, head) == Some(true)
            });
            let (key, value_offset) = match predicted {
                Some(key) => (key, offset + tables.head(key).len()),
                None => {
                    // Keep what was parsed so far if this entry is corrupt.
                    self.parsed_to = offset;
                    self.last_key = last_key;
                    let (key, value_offset) = self.parse_entry(offset, used, tables, buf)?;
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
            // Consecutive entries usually belong to one family: skip the set then.
            if self.families.last().is_none_or(|&(last, _)| last != family) && self.seen_families.insert(family) {
                self.families.push((family, key));
            }
            self.samples.push(sample);
            // `used` fits an i32, so every offset below it fits a u32.
            self.value_offsets.push(value_offset as u32);
            // The value and timestamp lie below `used`, checked above; the fallbacks
            // are never taken.
            self.values.push(self.map.load_u64(value_offset).map_or(f64::NAN, f64::from_bits));
            if pid.is_some() {
                self.timestamps.push(self.map.load_u64(value_offset + 8).map_or(0.0, f64::from_bits));
            }
            offset = value_offset + format::VALUE_LEN;
        }
        self.parsed_to = offset;
        self.last_key = last_key;
        Ok(())
    }

    /// Reads and validates the entry at `offset` (below `used`) and returns its key id
    /// (decoding the key if it is new) and value offset.
    fn parse_entry(
        &self,
        offset: usize,
        used: usize,
        tables: &mut Tables,
        buf: &mut Vec<u8>,
    ) -> Result<(u32, usize), SkipReason> {
        // Copy one entry at a time (its length field says how much), so memory stays
        // bounded by the largest entry, and let the format module validate it.
        let len = self.map.len();
        let key_len = self.map.load_u32(offset).map_or(-1, |n| n as i32);
        let end = match usize::try_from(key_len) {
            Ok(n) => offset.saturating_add(format::entry_len(n)).min(used),
            Err(_) => (offset + 4).min(used),
        };
        let bytes =
            self.map.copy_to(offset, end, buf).ok_or(SkipReason::Corrupt(FormatError::UsedBeyondEnd { used, len }))?;
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
    /// with one atomic load each. Every offset lies below `used` (checked when its
    /// entry was parsed), so within the mapping; the fallbacks are never taken.
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
