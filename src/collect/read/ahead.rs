//! Reading ahead of the tables: what a reading thread does with files while another
//! thread holds the tables to intern a file's new keys.
//!
//! A fresh collector's first file of 10,000 series takes one thread several
//! milliseconds to intern, and every other thread needs the tables for its own first
//! file. Rather than wait, a thread turns that file into an [`Ahead`]: a copy of its
//! bytes and where each of its values lies, found from the entries' length fields
//! without decoding a key. Every further file the thread meets while the tables are
//! still held for writing is compared with that copy, entry head by entry head; one
//! that has the very same heads at the same offsets (the workers of one server declare
//! the same series in the same order) has its values read at those offsets and is left
//! *pending*: its entries will be the copy's. Any other file waits for the tables, as
//! before. The thread parses the copy as it parses any file at its next file that
//! finds the tables not held for writing, or when its reads end, and the pending files
//! take its entries when the scrape's reads end (`Collector::read_all`).
//!
//! Nothing is decided from the copy that the parse would not decide the same way:
//! equal heads are equal keys, so a pending file's parse would give the copy's
//! entries. Should the copy's parse not give exactly the entries that were read ahead
//! (a corrupt key, say), the pending files are read again, one by one, as if nothing
//! had been read ahead. Only counter, histogram and summary files whose mapping is
//! dropped after the read are read ahead; a gauge file's samples are its writer's.

use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use super::{Access, Buffers, FileState, Known, Parsed, SkipReason, View};
use crate::collect::name::FileKind;
use crate::collect::table::Tables;
use crate::format;

/// The most bytes in use of a file read ahead (each reading thread keeps a copy of
/// one): a larger one is parsed as usual, waiting for the tables.
const AHEAD_AT_MOST: usize = 16 << 20;

/// A file read ahead of the tables, whose entries other files are compared with.
#[derive(Debug)]
pub(crate) struct Ahead {
    kind: FileKind,
    /// The file's bytes up to `used`.
    bytes: Vec<u8>,
    /// Its entries' heads (the bytes but the values), back to back, as the tables keep
    /// theirs: what other files are compared with.
    heads: Vec<u8>,
    used: usize,
    /// Where each entry's value lies.
    value_offsets: Vec<u32>,
    /// The entries, once this thread has parsed `bytes`: `None` if that parse did not
    /// give the entries above (then the files left pending are read again).
    entries: Arc<OnceLock<Option<Known>>>,
}

/// A file whose values were read ahead of the tables, and how it was to be read.
#[derive(Debug)]
pub(crate) struct Pending {
    entries: Arc<OnceLock<Option<Known>>>,
    access: Access,
}

impl Ahead {
    /// The file `view` of `kind`, of which nothing is parsed, as a file to read others
    /// ahead by: `None` unless it has at most [`AHEAD_AT_MOST`] bytes in use and its
    /// entries, from its header to `used`, follow one another each with a key of at
    /// least one byte (anything else is left to the parse, which reports it).
    ///
    /// The bytes in use are copied first, in one sequential pass, and the length fields
    /// walked in the copy: each length gives the next one's offset, so walking them in
    /// a mapping waited for memory once per entry (0.3-0.9 ms for 10,000 entries,
    /// against a few hundredths in the copy, which is then in the cache).
    fn of(view: View<'_>, kind: &FileKind) -> Option<Ahead> {
        let used = view.load_used().and_then(|u| format::check_used(u, view.len()).ok())?;
        if used > AHEAD_AT_MOST {
            return None;
        }
        let bytes = match view {
            View::Map(map) => {
                let mut bytes = Vec::new();
                let copied = map.copy_to(0, used, &mut bytes)?.len();
                bytes.truncate(copied);
                bytes
            }
            View::Bytes(bytes) => bytes.get(..used)?.to_vec(),
        };
        let mut value_offsets = Vec::new();
        let mut at = format::HEADER_LEN;
        while at < used {
            let key_len = View::Bytes(&bytes).load_u32(at)? as usize;
            let value = at.checked_add(format::value_offset_in_entry(key_len))?;
            let end = value.checked_add(format::VALUE_LEN)?;
            if key_len == 0 || end > used {
                return None;
            }
            value_offsets.push(u32::try_from(value).ok()?);
            at = end;
        }
        if value_offsets.is_empty() {
            return None;
        }
        let mut heads = Vec::with_capacity(used);
        let mut at = format::HEADER_LEN;
        for &value in &value_offsets {
            heads.extend_from_slice(&bytes[at..value as usize]);
            at = value as usize + format::VALUE_LEN;
        }
        Some(Ahead { kind: kind.clone(), bytes, heads, used, value_offsets, entries: Arc::default() })
    }

    /// Whether the whole of `view`, a file of `kind` of which nothing is parsed, has
    /// this file's entry heads at the same offsets (its values may differ). Its values
    /// are read into `values` in the same pass (emptied first, and left empty if not).
    fn matches(&self, view: View<'_>, kind: &FileKind, values: &mut Vec<f64>) -> bool {
        let matched = *kind == self.kind
            && view.load_used().and_then(|u| format::check_used(u, view.len()).ok()) == Some(self.used)
            && view.heads_equal(format::HEADER_LEN, &self.heads, &self.value_offsets, self.used, Some(&mut *values));
        if !matched {
            values.clear();
        }
        matched
    }

    /// Reads the values of `view`, this very file, into `values`.
    fn read_values(&self, view: View<'_>, values: &mut Vec<f64>) {
        values.clear();
        // Each offset lies below `used` (checked in `Ahead::of`), so within the view:
        // the fallback is never taken.
        values
            .extend(self.value_offsets.iter().map(|&off| view.load_u64(off as usize).map_or(f64::NAN, f64::from_bits)));
    }

    /// Leaves `st` (nothing of it parsed, its heads this file's, its values read) pending
    /// on this file's entries.
    fn pend(&self, st: &mut FileState, access: Access) {
        st.deferred = false;
        st.timestamps.clear();
        st.pending = Some(Pending { entries: Arc::clone(&self.entries), access });
        #[cfg(test)]
        super::READ_AHEAD.with(|n| n.set(n.get() + 1));
    }
}

/// Parses `st` (a file read through a mapping dropped after the read, `view`), or,
/// while another thread holds the tables, reads it ahead of them (see the module
/// docs) when it can be.
pub(super) fn parse_or_read_ahead(
    st: &mut FileState,
    view: View<'_>,
    access: Access,
    tables: &RwLock<Tables>,
    buffers: &mut Buffers,
) -> Result<(), SkipReason> {
    let fresh =
        !buffers.never_ahead && st.kind.gauge.is_none() && st.parsed_to == format::HEADER_LEN && st.pending.is_none();
    if fresh && buffers.ahead.is_some() {
        if !held_for_writing(tables) {
            buffers.parse_ahead(tables);
        } else if let Some(ahead) = buffers.ahead.as_ref().filter(|ahead| ahead.matches(view, &st.kind, &mut st.values))
        {
            ahead.pend(st, access);
            buffers.pending += 1;
            return Ok(());
        }
    }
    match st.parse_shared(view, tables, &mut buffers.entry, &mut buffers.layouts, !fresh)? {
        Parsed::Done => return Ok(()),
        Parsed::Busy if buffers.ahead.is_none() => {
            if let Some(ahead) = Ahead::of(view, &st.kind) {
                ahead.read_values(view, &mut st.values);
                ahead.pend(st, access);
                buffers.ahead = Some(ahead);
                buffers.pending += 1;
                return Ok(());
            }
        }
        Parsed::Busy => {}
    }
    st.parse_shared(view, tables, &mut buffers.entry, &mut buffers.layouts, true).map(drop)
}

/// Whether another thread holds `tables` for writing (in tests, also whenever this
/// thread is told to take them for held: see `TABLES_HELD`).
fn held_for_writing(tables: &RwLock<Tables>) -> bool {
    #[cfg(test)]
    if super::TABLES_HELD.get() {
        return true;
    }
    tables.is_locked_exclusive()
}

impl Buffers {
    /// Parses the file this thread read ahead, if any (waiting for the tables), and
    /// records its entries for the files left pending on it, which take them when
    /// `Collector::read_all` calls [`FileState::take_pending`] (or records that they
    /// must be read again, if its parse did not give the entries read ahead). A thread
    /// does this before its reads end.
    pub(crate) fn parse_ahead(&mut self, tables: &RwLock<Tables>) {
        let Some(ahead) = self.ahead.take() else { return };
        let mut st = FileState::new((0, 0), &ahead.kind, ahead.bytes.len());
        let view = View::Bytes(&ahead.bytes);
        let parsed = st.parse_shared(view, tables, &mut self.entry, &mut self.layouts, true);
        let entries = (matches!(parsed, Ok(Parsed::Done))
            && st.parsed_to == ahead.used
            && st.layout.value_offsets == ahead.value_offsets)
            .then(|| Known {
                layout: Arc::clone(&st.layout),
                run: st.run,
                families: std::mem::take(&mut st.families),
                last_key: st.last_key,
                end: st.parsed_to,
            });
        // Only this thread sets it, once.
        let _ = ahead.entries.set(entries);
    }

    /// Has this thread's files read without reading any ahead (`never`), or as usual:
    /// `Collector::read_all` reads the files it must read again so.
    pub(crate) fn read_ahead(&mut self, ahead: bool) {
        self.never_ahead = !ahead;
    }

    /// How many files this thread left pending (see [`Ahead`]) since it was last asked:
    /// those that take their entries when `Collector::read_all` calls
    /// [`FileState::take_pending`].
    pub(crate) fn take_pending_count(&mut self) -> usize {
        std::mem::take(&mut self.pending)
    }
}

impl FileState {
    /// Whether the file waits for the entries of a file read ahead (tests only: none
    /// does once `Collector::read_all` is done).
    #[cfg(test)]
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Gives a file read ahead of the tables the entries of the file it matched, once
    /// that file was parsed (see [`Buffers::parse_ahead`]). `Err` with how the file was
    /// to be read when it must be read again: that parse did not give the entries read
    /// ahead.
    pub(crate) fn take_pending(&mut self) -> Result<(), Access> {
        let Some(pending) = self.pending.take() else { return Ok(()) };
        let Some(Some(entries)) = pending.entries.get() else { return Err(pending.access) };
        self.take_entries(entries);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::name::parse_file_name;
    use crate::format::key::encode_key;

    /// A counter file's bytes: one entry `c_total{i=LABEL}` per label, with `value`.
    fn counter_file(labels: &[&str], value: f64) -> Vec<u8> {
        let mut bytes = format::encode_header(0).to_vec();
        for label in labels {
            let key = encode_key("c", "c_total", &[("i", label)], "h");
            format::encode_entry(&mut bytes, key.as_bytes(), value, 0.0);
        }
        let used = bytes.len() as u32;
        bytes[..4].copy_from_slice(&used.to_le_bytes());
        bytes
    }

    fn counter() -> FileKind {
        parse_file_name("counter_1.db").unwrap()
    }

    #[test]
    fn a_file_read_ahead_knows_where_each_value_is_without_decoding_a_key() {
        let bytes = counter_file(&["a", "bb", "ccc"], 1.0);
        let ahead = Ahead::of(View::Bytes(&bytes), &counter()).unwrap();
        let parsed: Vec<u32> = format::entries(&bytes, bytes.len()).map(|e| e.unwrap().value_offset as u32).collect();
        assert_eq!(ahead.value_offsets, parsed);
        assert_eq!((ahead.used, &ahead.bytes[..]), (bytes.len(), &bytes[..]));
    }

    #[test]
    fn a_mapped_file_read_ahead_is_copied_up_to_used_and_walked_in_the_copy() {
        use std::io::Write;
        let bytes = counter_file(&["a", "bb", "ccc"], 2.5);
        // The file is longer than its bytes in use, as a writer's file is.
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        file.write_all(&[0xAB; 4096]).unwrap();
        let map = crate::region::ReadMap::map(&file, bytes.len() + 4096).unwrap();
        let ahead = Ahead::of(View::Map(&map), &counter()).unwrap();
        let from_bytes = Ahead::of(View::Bytes(&bytes), &counter()).unwrap();
        assert_eq!((ahead.used, &ahead.bytes[..]), (bytes.len(), &bytes[..]));
        assert_eq!(ahead.value_offsets, from_bytes.value_offsets);
        assert_eq!(ahead.heads, from_bytes.heads);
        let mut values = Vec::new();
        ahead.read_values(View::Map(&map), &mut values);
        assert_eq!(values, [2.5; 3]);
        // A mapped file whose entries do not follow one another is not read ahead.
        let mut bad = bytes.clone();
        bad[format::HEADER_LEN..format::HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bad).unwrap();
        let map = crate::region::ReadMap::map(&file, bad.len()).unwrap();
        assert!(Ahead::of(View::Map(&map), &counter()).is_none());
    }

    #[test]
    fn a_file_whose_entries_do_not_follow_one_another_is_not_read_ahead() {
        let good = counter_file(&["a", "b"], 1.0);
        // No entries at all.
        assert!(Ahead::of(View::Bytes(&counter_file(&[], 1.0)), &counter()).is_none());
        // An entry with an empty key.
        let mut empty_key = good.clone();
        empty_key[format::HEADER_LEN..format::HEADER_LEN + 4].copy_from_slice(&0u32.to_le_bytes());
        assert!(Ahead::of(View::Bytes(&empty_key), &counter()).is_none());
        // A key length that runs past `used`.
        let mut long_key = good.clone();
        long_key[format::HEADER_LEN..format::HEADER_LEN + 4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(Ahead::of(View::Bytes(&long_key), &counter()).is_none());
        // `used` inside the last entry.
        let mut short = good.clone();
        short[..4].copy_from_slice(&((good.len() - 8) as u32).to_le_bytes());
        assert!(Ahead::of(View::Bytes(&short), &counter()).is_none());
        // `used` beyond the end of the file.
        assert!(Ahead::of(View::Bytes(&good[..good.len() - 8]), &counter()).is_none());
    }

    #[test]
    fn a_file_with_more_in_use_than_a_thread_copies_is_not_read_ahead() {
        // Entries with a one-byte key (24 bytes each) up to just past the limit.
        let entry = &counter_file(&["a"], 1.0)[format::HEADER_LEN..];
        let mut bytes = format::encode_header(0).to_vec();
        while bytes.len() <= AHEAD_AT_MOST {
            bytes.extend_from_slice(entry);
        }
        let set_used = |bytes: &mut Vec<u8>, used: usize| bytes[..4].copy_from_slice(&(used as u32).to_le_bytes());
        let used = bytes.len();
        set_used(&mut bytes, used);
        assert!(Ahead::of(View::Bytes(&bytes), &counter()).is_none());
        // One entry fewer: within the limit.
        set_used(&mut bytes, used - entry.len());
        assert!(Ahead::of(View::Bytes(&bytes), &counter()).is_some());
    }

    #[test]
    fn only_a_file_with_every_head_the_same_matches_whatever_its_values() {
        let ahead = Ahead::of(View::Bytes(&counter_file(&["a", "b", "c"], 1.0)), &counter()).unwrap();
        // Whether it matches; its values are read in the same pass, or none.
        let matches = |bytes: &[u8]| {
            let mut values = vec![9.0];
            let matched = ahead.matches(View::Bytes(bytes), &counter(), &mut values);
            assert_eq!(values.len(), if matched { 3 } else { 0 });
            matched
        };
        let mut values = Vec::new();
        assert!(ahead.matches(View::Bytes(&counter_file(&["a", "b", "c"], 7.0)), &counter(), &mut values));
        assert_eq!(values, [7.0; 3]);
        // One key byte, in the last entry.
        assert!(!matches(&counter_file(&["a", "b", "d"], 1.0)));
        // One entry more, or less.
        assert!(!matches(&counter_file(&["a", "b", "c", "d"], 1.0)));
        assert!(!matches(&counter_file(&["a", "b"], 1.0)));
        // A padding byte.
        let mut padded = counter_file(&["a", "b", "c"], 1.0);
        let last_pad = ahead.value_offsets[0] as usize - 1;
        padded[last_pad] = b'\t';
        assert!(!matches(&padded));
        // The same bytes, cut short of `used`.
        let whole = counter_file(&["a", "b", "c"], 1.0);
        assert!(!matches(&whole[..whole.len() - 8]));
        // The same bytes in a file of another type.
        let histogram = parse_file_name("histogram_1.db").unwrap();
        assert!(!ahead.matches(View::Bytes(&whole), &histogram, &mut values));
    }
}
