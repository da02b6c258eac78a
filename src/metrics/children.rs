//! The children of a labeled family, by label values: a hash table built for what a
//! family does, which is to look children up on every request and add one rarely, and
//! never remove any.
//!
//! * **Lookups write nothing shared**: no lock, no reference count, no epoch pin. A
//!   lookup loads which table is current, hashes the values, and probes, so lookups from
//!   many threads never bounce a cache line between cores (a read lock or an epoch pin
//!   is one atomic read-modify-write per lookup, and the costliest part of it).
//! * **Tables only grow, and are never freed while the family lives.** Table `k` has
//!   `MIN_CAPACITY << k` slots; when the current one is half full the writer copies its
//!   entries (a clone of each handle and key) into the next one and makes that current.
//!   A reader still probing an older table sees a complete, smaller table whose entries
//!   stay valid, and a child handed out by reference stays where it is. The cost is
//!   memory: all tables together hold at most twice the slots of the current one.
//! * **Adding is serialised** by the caller (the family's creation lock), so the table is
//!   only ever written by one thread: every slot is set once, with release ordering, and
//!   a reader that misses an entry being added finds it on the slow path, which takes the
//!   lock and looks again.
//!
//! * **A hit follows two pointers**, besides the handle's own: the current table's
//!   slots, and the entry's key. The entry (hash, key, child) is in the slot itself and
//!   the key is one allocation for all values.
//!
//! All in safe Rust: slots and tables are [`OnceLock`]s, whose `get` is one acquire load.

use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::DefaultHashBuilder;

/// Slots of the first table.
const MIN_CAPACITY: usize = 8;

/// Enough tables for any number of children an address space can hold.
const LEVELS: usize = usize::BITS as usize - 3;

/// One child and the values it was created for, held in its table's slot itself (a
/// table that grows holds copies): a probe reads the hash and finds the key and the
/// child without following a pointer to the entry.
#[derive(Debug, Clone)]
struct Entry<T> {
    hash: u64,
    /// The values, one after another, each as its length (`usize`, native byte order)
    /// then its bytes: one allocation, read front to back by a comparison, instead of a
    /// pointer to follow per value.
    key: Box<[u8]>,
    child: T,
}

/// An open-addressed table (linear probing) at most half full.
#[derive(Debug)]
struct Table<T> {
    slots: Box<[OnceLock<Entry<T>>]>,
}

impl<T> Table<T> {
    fn with_capacity(capacity: usize) -> Table<T> {
        Table { slots: (0..capacity).map(|_| OnceLock::new()).collect() }
    }

    /// The entry for `values`, or the index of the empty slot where it would go.
    #[inline]
    fn find<S: AsRef<str>>(&self, hash: u64, values: &[S]) -> Result<&Entry<T>, usize> {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            match self.slots[i].get() {
                None => return Err(i),
                Some(entry) if entry.hash == hash && same_values(&entry.key, values) => return Ok(entry),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }
}

/// The children of one family.
#[derive(Debug)]
pub(crate) struct Children<T> {
    tables: [OnceLock<Table<T>>; LEVELS],
    /// The index of the current table (every table below it is complete but stale).
    current: AtomicUsize,
    /// Number of children (written under the caller's lock only).
    len: AtomicUsize,
    /// hashbrown's default hasher (foldhash) with a per-family random seed, for values
    /// longer than 16 bytes, and per-family random seeds for foldhash's mixing step on
    /// shorter ones (see [`Children::hash`]), so that colliding label values differ
    /// between families and processes. foldhash is fast, not a keyed cryptographic hash,
    /// and does not claim resistance to an attacker who chooses label values to collide;
    /// what bounds the cost of hostile label values is the cardinality guard
    /// (`Opts::max_series`), not the hash.
    hasher: DefaultHashBuilder,
    /// The first value's seed, the seed mixed into the second word, and the (odd) step
    /// from one value's seed to the next's.
    seeds: [u64; 3],
}

impl<T: Clone> Children<T> {
    pub(crate) fn new() -> Children<T> {
        let tables = std::array::from_fn(|_| OnceLock::new());
        let _ = tables[0].set(Table::with_capacity(MIN_CAPACITY));
        let hasher = DefaultHashBuilder::default();
        let seeds = [hasher.hash_one(0u8), hasher.hash_one(1u8), hasher.hash_one(2u8) | 1];
        Children { tables, current: AtomicUsize::new(0), len: AtomicUsize::new(0), hasher, seeds }
    }

    /// The hash of a list of values: each value hashed on its own, the way foldhash
    /// hashes up to 16 bytes (its first and last 2, 4 or 8 bytes, which with its length
    /// are the value itself, folded-multiplied with seeds), with a seed that depends on
    /// the value's position and its length (so `["ab", "c"]`, `["a", "bc"]` and
    /// `["c", "ab"]` hash apart), and the results xored. The values' hashes do not depend on one
    /// another, so the processor computes them side by side; chaining them through one
    /// hasher, as `Hasher::write` per value does, cost about 1 ns of a 16 ns lookup. A
    /// collision is only a longer probe, since `find` compares the values.
    #[inline]
    fn hash<S: AsRef<str>>(&self, values: &[S]) -> u64 {
        let [mut seed, fold, step] = self.seeds;
        let mut hash = 0;
        for value in values {
            let bytes = value.as_ref().as_bytes();
            let n = bytes.len();
            let (a, b) = if (8..=16).contains(&n) {
                (u64::from_ne_bytes(word(bytes, 0)), u64::from_ne_bytes(word(bytes, n - 8)))
            } else if (4..8).contains(&n) {
                (u64::from(u32::from_ne_bytes(word(bytes, 0))), u64::from(u32::from_ne_bytes(word(bytes, n - 4))))
            } else if (2..4).contains(&n) {
                (u64::from(u16::from_ne_bytes(word(bytes, 0))), u64::from(u16::from_ne_bytes(word(bytes, n - 2))))
            } else if n == 1 {
                (u64::from(bytes[0]), 0)
            } else if n == 0 {
                (0, 0)
            } else {
                (self.long_hash(bytes), 0)
            };
            hash ^= folded_multiply(a ^ seed.rotate_right(n as u32), b ^ fold);
            seed = seed.wrapping_add(step);
        }
        hash
    }

    /// foldhash's hash of a value longer than 16 bytes: out of line, so that the rare
    /// call does not make every lookup save registers around it.
    #[cold]
    #[inline(never)]
    fn long_hash(&self, bytes: &[u8]) -> u64 {
        self.hasher.hash_one(bytes)
    }

    #[inline]
    fn current(&self) -> &Table<T> {
        let level = self.current.load(Ordering::Acquire);
        self.tables[level].get().expect("the current table is set before it is made current")
    }

    /// The child for `values`, if it exists (or, while another thread adds it, perhaps
    /// not yet).
    #[inline]
    pub(crate) fn get<S: AsRef<str>>(&self, values: &[S]) -> Option<&T> {
        self.current().find(self.hash(values), values).ok().map(|entry| &entry.child)
    }

    /// Number of children.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Adds `child` for `values`, which must not be present, and returns it where it
    /// now lives. The caller holds the lock that serialises every `insert` of this table.
    pub(crate) fn insert(&self, values: &[&str], child: T) -> &T {
        let hash = self.hash(values);
        let entry = Entry { hash, key: key_of(values), child };
        let len = self.len.load(Ordering::Relaxed) + 1;
        let mut table = self.current();
        if 2 * len > table.slots.len() {
            table = self.grow();
        }
        let Err(slot) = table.find(hash, values) else { unreachable!("insert is only called for new values") };
        // Set once, by the only writer: the slot was empty.
        let entry = table.slots[slot].get_or_init(|| entry);
        self.len.store(len, Ordering::Relaxed);
        &entry.child
    }

    /// Copies every entry into the next, twice larger table and makes it current. The
    /// old table keeps its own copies, which readers still probing it may hold.
    fn grow(&self) -> &Table<T> {
        let level = self.current.load(Ordering::Relaxed);
        let old = self.current();
        let new = Table::with_capacity(old.slots.len() * 2);
        for entry in old.slots.iter().filter_map(OnceLock::get) {
            let mask = new.slots.len() - 1;
            let mut i = entry.hash as usize & mask;
            while new.slots[i].get().is_some() {
                i = (i + 1) & mask;
            }
            let _ = new.slots[i].set(entry.clone());
        }
        let _ = self.tables[level + 1].set(new);
        self.current.store(level + 1, Ordering::Release);
        self.current()
    }
}

/// The key an entry stores for `values` (see [`Entry::key`]).
fn key_of(values: &[&str]) -> Box<[u8]> {
    let mut key = Vec::with_capacity(values.iter().map(|v| LEN + v.len()).sum());
    for value in values {
        key.extend_from_slice(&value.len().to_ne_bytes());
        key.extend_from_slice(value.as_bytes());
    }
    key.into_boxed_slice()
}

/// The high and low halves of the 128-bit `x * y`, xored: foldhash's mixing step.
#[inline(always)]
fn folded_multiply(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Bytes of a value's length in a key.
const LEN: usize = size_of::<usize>();

/// Whether `key` is the key of `values`, compared in place: label values are short, and
/// a call to `memcmp` per value would cost more than the comparison.
#[inline]
fn same_values<S: AsRef<str>>(key: &[u8], values: &[S]) -> bool {
    let mut rest = key;
    for value in values {
        let value = value.as_ref().as_bytes();
        let Some((len, tail)) = rest.split_first_chunk::<LEN>() else { return false };
        if usize::from_ne_bytes(*len) != value.len() || tail.len() < value.len() {
            return false;
        }
        let (stored, tail) = tail.split_at(value.len());
        if !same_bytes(stored, value) {
            return false;
        }
        rest = tail;
    }
    rest.is_empty()
}

/// `a == b`, a word at a time: whole 8-byte words, then the last (overlapping) word;
/// below 8 bytes two overlapping 4- or 2-byte reads. A byte-at-a-time loop was 40 % of
/// a lookup.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            if word::<8>(a, i) != word::<8>(b, i) {
                return false;
            }
            i += 8;
        }
        i == n || word::<8>(a, n - 8) == word::<8>(b, n - 8)
    } else if n >= 4 {
        word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4)
    } else if n >= 2 {
        word::<2>(a, 0) == word::<2>(b, 0) && word::<2>(a, n - 2) == word::<2>(b, n - 2)
    } else {
        // One byte or none (`a == b` here is a call to `bcmp`).
        n == 0 || a[0] == b[0]
    }
}

/// The `N` bytes of `bytes` at `at` (the caller checked the bounds), as one value.
#[inline(always)]
fn word<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_of_every_length_and_only_them() {
        let children = Children::new();
        let base: String = ('a'..='z').chain('A'..='Z').collect();
        for n in 0..base.len() {
            assert_eq!(*children.insert(&[&base[..n], "x"], n), n);
        }
        for n in 0..base.len() {
            let value = &base[..n];
            assert_eq!(children.get(&[value, "x"]), Some(&n), "{n}");
            assert_eq!(children.get(&["x", value]), None, "{n}: other order");
            for i in 0..n {
                let mut other = value.as_bytes().to_vec();
                other[i] = b'-';
                let other = String::from_utf8(other).unwrap();
                assert_eq!(children.get(&[other.as_str(), "x"]), None, "{n}: byte {i} differs");
            }
        }
    }

    #[test]
    fn a_child_handed_out_stays_where_it_is_while_the_table_grows() {
        let children = Children::new();
        let first = children.insert(&["first"], 0);
        let keys: Vec<String> = (1..1000).map(|i| format!("k{i}")).collect();
        for (i, key) in keys.iter().enumerate() {
            children.insert(&[key], i + 1);
        }
        assert_eq!(*first, 0);
        assert_eq!(children.get(&["first"]), Some(&0));
    }

    #[test]
    fn finds_what_was_inserted_through_many_growths() {
        let children = Children::new();
        let keys: Vec<Vec<String>> = (0..5000).map(|i| vec![format!("a{i}"), format!("{}", i % 7)]).collect();
        for (i, key) in keys.iter().enumerate() {
            let values: Vec<&str> = key.iter().map(String::as_str).collect();
            assert_eq!(children.get(&values), None);
            children.insert(&values, i);
        }
        assert_eq!(children.len(), 5000);
        for (i, key) in keys.iter().enumerate() {
            let values: Vec<&str> = key.iter().map(String::as_str).collect();
            assert_eq!(children.get(&values), Some(&i));
        }
        assert_eq!(children.get(&["a1"]), None, "fewer values");
        assert_eq!(children.get(&["a1", "1", ""]), None, "more values");
    }

    #[test]
    fn values_are_told_apart_by_their_boundaries() {
        let children = Children::new();
        children.insert(&["ab", "c"], 1);
        children.insert(&["a", "bc"], 2);
        children.insert(&["", "abc"], 3);
        children.insert(&[], 4);
        assert_eq!(children.get(&["ab", "c"]), Some(&1));
        assert_eq!(children.get(&["a", "bc"]), Some(&2));
        assert_eq!(children.get(&["", "abc"]), Some(&3));
        assert_eq!(children.get::<&str>(&[]), Some(&4));
        assert_eq!(children.get(&["abc"]), None);
    }

    #[test]
    fn same_bytes_is_slice_equality_at_every_length() {
        let base: Vec<u8> = (0..40u8).collect();
        for n in 0..base.len() {
            let a = &base[..n];
            assert!(same_bytes(a, a), "{n}");
            assert!(!same_bytes(a, &base[..n + 1]), "{n}: lengths differ");
            for i in 0..n {
                let mut b = a.to_vec();
                b[i] ^= 0x80;
                assert!(!same_bytes(a, &b), "{n}: byte {i} differs");
            }
        }
    }

    #[test]
    fn readers_racing_a_writer_see_complete_tables() {
        let children = Children::new();
        let keys: Vec<String> = (0..20_000).map(|i| format!("k{i}")).collect();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    // Whatever a reader sees is right: a child it finds is the one for
                    // its values, and once found it stays found.
                    let mut found = 0;
                    while found < keys.len() {
                        match children.get(&[&keys[found]]) {
                            Some(&v) => {
                                assert_eq!(v, found);
                                found += 1;
                            }
                            None => std::hint::spin_loop(),
                        }
                    }
                });
            }
            for (i, key) in keys.iter().enumerate() {
                children.insert(&[key], i);
            }
        });
    }
}
