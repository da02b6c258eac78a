//! The `.db` file format of prometheus_client 0.26 multiprocess mode.
//!
//! This module is pure: it turns bytes into entries and entries into bytes, and never
//! touches a file or a mapping. Everything here is what Python's `mmap_dict.py`
//! writes and reads, so that either side can read the other's files.
//!
//! # File names
//!
//! One file per (kind, process): `counter_ID.db`, `histogram_ID.db`, `summary_ID.db`
//! and `gauge_MODE_ID.db`, where `MODE` is one of the ten gauge modes and `ID` the
//! process identifier (the pid, or a worker ID). Python's collector splits the name on
//! `_`, so an `ID` must not contain `_`. The whole grammar of the directory's names
//! (liveness, temporary and compaction files too) is in [`names`].
//!
//! # Layout
//!
//! All integers and floats are little-endian. Python writes its host's native order,
//! and this crate's writers store values natively through atomics on the mapping, so
//! the files are little-endian only because every supported target is: the crate
//! refuses to compile for a big-endian target (a `compile_error!` in `lib.rs`).
//!
//! ```text
//! offset 0        4        8
//!        +--------+--------+---------------------------------------------+
//!        | used   | 0 0 0 0| entry | entry | ... |  zeros up to capacity  |
//!        +--------+--------+---------------------------------------------+
//!          i32      pad     ^ 8                   ^ used
//!
//! entry (starts 8-aligned):
//!        +--------+----------------+---------+-------------+-------------+
//!        | len    | key (len bytes)| pad     | value f64   | timestamp   |
//!        | i32    | UTF-8 JSON     | 1..=8 ' '| 8-aligned  | f64         |
//!        +--------+----------------+---------+-------------+-------------+
//! ```
//!
//! * `used` counts bytes from offset 0, header included: an empty file has `used = 8`.
//!   The four bytes after it are never written and stay zero.
//! * The padding is `8 - (len + 4) % 8` spaces: always one to eight, **eight when
//!   `len + 4` is already a multiple of eight**. It makes `4 + len + pad` a multiple of
//!   eight, so every value is 8-aligned and can be accessed as one atomic word.
//! * `timestamp` is Unix seconds, non-zero only for the `mostrecent` gauge modes.
//! * Entries are never removed or moved; entry order is creation order.
//! * Files start at 64 KiB ([`INITIAL_SIZE`]) and double when an entry does not fit.
//!   `used` is an `i32`, so a file never exceeds 2 GiB ([`MAX_SIZE`]).
//!
//! # Publish protocol
//!
//! A writer appends an entry by writing all of its bytes beyond `used`, and only then
//! storing the new `used` (with `Release` ordering). A reader loads `used` (with
//! `Acquire`) and never looks past it, so it sees only whole entries. A writer that
//! dies between the two steps leaves bytes beyond `used` that nobody reads and the
//! next writer overwrites. Values are updated in place, one aligned 8-byte word at a
//! time.
//!
//! # Keys
//!
//! See [`key`]: the JSON `[metric, sample, {labels}, help]` exactly as Python dumps it.

pub mod archive;
pub mod check;
pub mod float;
pub mod fold;
pub mod key;
pub mod names;

/// Size of the header: `used` (i32) and four bytes of zero padding.
pub const HEADER_LEN: usize = 8;
/// Size of a new file, as prometheus_client ≥ 0.16 creates it.
pub const INITIAL_SIZE: usize = 1 << 16;
/// Largest file the format can describe: `used` is an `i32`.
pub const MAX_SIZE: usize = i32::MAX as usize;
/// Bytes of value and timestamp at the end of every entry.
pub const VALUE_LEN: usize = 16;

/// Number of padding spaces after a key of `key_len` bytes (always 1..=8).
pub const fn padding_len(key_len: usize) -> usize {
    8 - (key_len + 4) % 8
}

/// Offset of the value within an entry whose key is `key_len` bytes long.
pub const fn value_offset_in_entry(key_len: usize) -> usize {
    4 + key_len + padding_len(key_len)
}

/// Total size of an entry whose key is `key_len` bytes long.
pub const fn entry_len(key_len: usize) -> usize {
    value_offset_in_entry(key_len) + VALUE_LEN
}

/// Capacity a file must grow to so that `needed` bytes fit, doubling from `capacity`
/// as Python does; `None` past [`MAX_SIZE`].
pub fn grown_capacity(capacity: usize, needed: usize) -> Option<usize> {
    let mut cap = capacity.max(INITIAL_SIZE);
    while cap < needed {
        cap = cap.checked_mul(2)?;
    }
    (needed <= MAX_SIZE).then_some(cap)
}

/// The bytes of a fresh header for a file whose `used` is `used`.
pub fn encode_header(used: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&used.to_le_bytes());
    h
}

/// Appends a whole entry (length, key, padding, value, timestamp) to `out`.
pub fn encode_entry(out: &mut Vec<u8>, key: &[u8], value: f64, timestamp: f64) {
    let len = i32::try_from(key.len()).expect("key longer than the format allows");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(key);
    out.extend(std::iter::repeat_n(b' ', padding_len(key.len())));
    out.extend_from_slice(&value.to_le_bytes());
    out.extend_from_slice(&timestamp.to_le_bytes());
}

/// Reads the `used` field from the first bytes of a file.
pub fn decode_used(header: &[u8]) -> Result<i32, FormatError> {
    let bytes: [u8; 4] =
        header.get(..4).and_then(|b| b.try_into().ok()).ok_or(FormatError::ShortHeader { len: header.len() })?;
    Ok(i32::from_le_bytes(bytes))
}

/// One entry found by [`entries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEntry<'a> {
    /// Offset of the entry (its length field) in the file.
    pub offset: usize,
    /// The key bytes, not yet decoded.
    pub key: &'a [u8],
    /// Offset of the 8-aligned value; the timestamp follows at `value_offset + 8`.
    pub value_offset: usize,
}

/// What is wrong with a file's bytes. Each variant says what was expected and found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// Fewer than four bytes: there is no `used` field.
    ShortHeader {
        /// Bytes available.
        len: usize,
    },
    /// `used` is below the header size (and not the 0 of a never-initialised file).
    UsedTooSmall {
        /// The value found.
        used: i32,
    },
    /// `used` points past the end of the data.
    UsedBeyondEnd {
        /// The value found.
        used: usize,
        /// Bytes actually available.
        len: usize,
    },
    /// An entry's key length is negative.
    NegativeKeyLength {
        /// Offset of the entry.
        offset: usize,
        /// The length found.
        len: i32,
    },
    /// An entry does not fit below `used`.
    EntryBeyondUsed {
        /// Offset of the entry.
        offset: usize,
        /// Where the entry would end.
        end: usize,
        /// The file's `used`.
        used: usize,
    },
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            FormatError::ShortHeader { len } => write!(f, "expected an 8-byte header, found {len} bytes"),
            FormatError::UsedTooSmall { used } => write!(f, "expected `used` >= 8, found {used}"),
            FormatError::UsedBeyondEnd { used, len } => {
                write!(f, "`used` is {used} but only {len} bytes are present")
            }
            FormatError::NegativeKeyLength { offset, len } => {
                write!(f, "entry at offset {offset}: expected a key length >= 0, found {len}")
            }
            FormatError::EntryBeyondUsed { offset, end, used } => {
                write!(f, "entry at offset {offset} ends at {end}, beyond `used` = {used}")
            }
        }
    }
}

impl std::error::Error for FormatError {}

/// Validates the header of `data` (the file's first bytes, at least `used` of them
/// when the file is well-formed) and returns `used` as a byte count.
///
/// A file whose `used` is 0 (created but never initialised) is treated as empty,
/// as Python treats it.
pub fn checked_used(data: &[u8]) -> Result<usize, FormatError> {
    check_used(decode_used(data)?, data.len())
}

/// Validates a `used` field read from a file of `len` bytes and returns it as a byte
/// count (0, a never-initialised file, counts as the empty [`HEADER_LEN`]).
pub fn check_used(used: i32, len: usize) -> Result<usize, FormatError> {
    if used == 0 {
        return Ok(HEADER_LEN);
    }
    if used < HEADER_LEN as i32 {
        return Err(FormatError::UsedTooSmall { used });
    }
    let used = used as usize;
    if used > len {
        return Err(FormatError::UsedBeyondEnd { used, len });
    }
    Ok(used)
}

/// Iterates over the entries of `data[..used]`.
///
/// Unlike Python's reader, every entry is checked to lie wholly below `used`
/// (length field, key, padding, value and timestamp), so a corrupt file yields an
/// error instead of reading garbage; iteration stops after the first error.
pub fn entries(data: &[u8], used: usize) -> Entries<'_> {
    Entries { data: &data[..used.min(data.len())], base: 0, pos: HEADER_LEN, failed: false }
}

/// Iterates over the entries of a slice of a file: `data` holds the file's bytes from
/// offset `base` (where an entry starts) up to `used`. Offsets in the entries are file
/// offsets. A reader that keeps state between reads parses only what was appended.
pub fn entries_at(data: &[u8], base: usize) -> Entries<'_> {
    Entries { data, base, pos: 0, failed: false }
}

/// Iterator returned by [`entries`] and [`entries_at`].
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    data: &'a [u8],
    base: usize,
    pos: usize,
    failed: bool,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<RawEntry<'a>, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let local = self.pos;
        let base = self.base;
        let offset = base + local;
        let used = base + self.data.len();
        let result = (|| {
            let len_bytes: [u8; 4] = self
                .data
                .get(local..local + 4)
                .and_then(|b| b.try_into().ok())
                .ok_or(FormatError::EntryBeyondUsed { offset, end: offset + 4, used })?;
            let len = i32::from_le_bytes(len_bytes);
            if len < 0 {
                return Err(FormatError::NegativeKeyLength { offset, len });
            }
            let len = len as usize;
            let end = offset + entry_len(len);
            if end > used {
                return Err(FormatError::EntryBeyondUsed { offset, end, used });
            }
            Ok(RawEntry {
                offset,
                key: &self.data[local + 4..local + 4 + len],
                value_offset: offset + value_offset_in_entry(len),
            })
        })();
        match &result {
            Ok(_) => self.pos = local + entry_len(result.as_ref().map(|e| e.key.len()).unwrap_or(0)),
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

/// Reads the (value, timestamp) pair of an entry from bytes (for tests and for
/// readers that copied the file); `None` when the 16 bytes at `value_offset` are not
/// all inside `data` (whatever the offset, even near `usize::MAX`).
pub fn decode_value(data: &[u8], value_offset: usize) -> Option<(f64, f64)> {
    let bytes = data.get(value_offset..value_offset.checked_add(VALUE_LEN)?)?;
    let (v, t) = bytes.split_at(8);
    Some((f64::from_le_bytes(v.try_into().ok()?), f64::from_le_bytes(t.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_one_to_eight_spaces() {
        assert_eq!(padding_len(67), 1);
        assert_eq!(padding_len(68), 8);
        assert_eq!(padding_len(25), 3);
        assert!((0..100).all(|n| (1..=8).contains(&padding_len(n))));
        assert!((0..100).all(|n| value_offset_in_entry(n).is_multiple_of(8)));
    }

    #[test]
    fn python_hexdump_example_round_trips() {
        // counter_4242.db from the reference hexdump: two entries, used = 192.
        let k1 = br#"["req", "req_total", {"code": "200", "method": "get"}, "Requests."]"#;
        let k2 = br#"["req", "req_total", {"code": "500", "method": "post"}, "Requests."]"#;
        let mut file = encode_header(0).to_vec();
        encode_entry(&mut file, k1, 1.0, 0.0);
        encode_entry(&mut file, k2, 2.5, 0.0);
        assert_eq!(file.len(), 192);
        file[..4].copy_from_slice(&192u32.to_le_bytes());
        assert_eq!(file[0x4f], b' ');
        assert_eq!(&file[0xa8..0xb0], b"        ");
        let used = checked_used(&file).unwrap();
        let found: Vec<_> = entries(&file, used).map(|e| e.unwrap()).collect();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].value_offset, 0x50);
        assert_eq!(found[1].value_offset, 0xb0);
        assert_eq!(decode_value(&file, 0xb0), Some((2.5, 0.0)));
    }

    #[test]
    fn zero_used_is_empty_and_bad_used_is_an_error() {
        assert_eq!(checked_used(&[0u8; 64]), Ok(8));
        assert_eq!(checked_used(&[1, 0, 0, 0, 0, 0, 0, 0]), Err(FormatError::UsedTooSmall { used: 1 }));
        assert_eq!(checked_used(&[0, 1, 0, 0]), Err(FormatError::UsedBeyondEnd { used: 256, len: 4 }));
        assert_eq!(checked_used(&[1]), Err(FormatError::ShortHeader { len: 1 }));
    }

    #[test]
    fn negative_and_oversized_key_lengths_are_errors() {
        let mut file = encode_header(24).to_vec();
        file.extend_from_slice(&(-28i32).to_le_bytes());
        file.resize(24, 0);
        assert!(matches!(entries(&file, 24).next(), Some(Err(FormatError::NegativeKeyLength { .. }))));
        file[8..12].copy_from_slice(&1000i32.to_le_bytes());
        let mut it = entries(&file, 24);
        assert!(matches!(it.next(), Some(Err(FormatError::EntryBeyondUsed { .. }))));
        assert!(it.next().is_none());
    }

    #[test]
    fn entries_at_reports_file_offsets_from_a_slice() {
        let k = br#"["a", "a", {}, "h"]"#;
        let mut file = encode_header(0).to_vec();
        encode_entry(&mut file, k, 1.0, 0.0);
        let second = file.len();
        encode_entry(&mut file, k, 2.0, 0.0);
        let found: Vec<_> = entries_at(&file[second..], second).map(|e| e.unwrap()).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].offset, second);
        assert_eq!(decode_value(&file, found[0].value_offset), Some((2.0, 0.0)));
        let mut bad = entries_at(&file[second..file.len() - 1], second);
        assert!(matches!(bad.next(), Some(Err(FormatError::EntryBeyondUsed { offset, .. })) if offset == second));
    }

    #[test]
    fn capacity_doubles_from_64k() {
        assert_eq!(grown_capacity(INITIAL_SIZE, 100), Some(INITIAL_SIZE));
        assert_eq!(grown_capacity(INITIAL_SIZE, INITIAL_SIZE + 1), Some(2 * INITIAL_SIZE));
        assert_eq!(grown_capacity(INITIAL_SIZE, 300_000), Some(512 * 1024));
        assert_eq!(grown_capacity(INITIAL_SIZE, MAX_SIZE + 1), None);
    }
}
