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
//!   entries (shared, not cloned) into the next one and makes that current. A reader
//!   still probing an older table sees a complete, smaller table whose entries stay
//!   valid. The cost is memory: all tables together hold at most twice the slots of the
//!   current one.
//! * **Adding is serialised** by the caller (the family's creation lock), so the table is
//!   only ever written by one thread: every slot is set once, with release ordering, and
//!   a reader that misses an entry being added finds it on the slow path, which takes the
//!   lock and looks again.
//!
//! All in safe Rust: slots and tables are [`OnceLock`]s, whose `get` is one acquire load.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use hashbrown::DefaultHashBuilder;

/// Slots of the first table.
const MIN_CAPACITY: usize = 8;

/// Enough tables for any number of children an address space can hold.
const LEVELS: usize = usize::BITS as usize - 3;

/// One child and the values it was created for.
#[derive(Debug)]
struct Entry<T> {
    hash: u64,
    values: Box<[Box<str>]>,
    child: T,
}

/// An open-addressed table (linear probing) at most half full.
#[derive(Debug)]
struct Table<T> {
    slots: Box<[OnceLock<Arc<Entry<T>>>]>,
}

impl<T> Table<T> {
    fn with_capacity(capacity: usize) -> Table<T> {
        Table { slots: (0..capacity).map(|_| OnceLock::new()).collect() }
    }

    /// The entry for `values`, or the index of the empty slot where it would go.
    fn find<S: AsRef<str>>(&self, hash: u64, values: &[S]) -> Result<&Entry<T>, usize> {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            match self.slots[i].get() {
                None => return Err(i),
                Some(entry) if entry.hash == hash && same_values(&entry.values, values) => return Ok(entry),
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
    /// hashbrown's default hasher (foldhash) with a per-family random seed, so that
    /// colliding label values differ between families and processes. foldhash is fast,
    /// not a keyed cryptographic hash, and does not claim resistance to an attacker who
    /// chooses label values to collide; what bounds the cost of hostile label values is
    /// the cardinality guard (`Opts::max_series`), not the hash.
    hasher: DefaultHashBuilder,
}

impl<T: Clone> Children<T> {
    pub(crate) fn new() -> Children<T> {
        let tables = std::array::from_fn(|_| OnceLock::new());
        let _ = tables[0].set(Table::with_capacity(MIN_CAPACITY));
        Children {
            tables,
            current: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// The hash of a list of values: one `write` of each value's bytes. foldhash's
    /// `write` mixes in the length of what it is given, so `["ab", "c"]` and
    /// `["a", "bc"]` hash apart without a terminator (a terminator byte went through
    /// foldhash's integer sponge and cost a quarter of a lookup); and a collision is
    /// only a longer probe, since `find` compares the values.
    #[inline]
    fn hash<S: AsRef<str>>(&self, values: &[S]) -> u64 {
        let mut state = self.hasher.build_hasher();
        for value in values {
            state.write(value.as_ref().as_bytes());
        }
        state.finish()
    }

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

    /// Adds `child` for `values`, which must not be present. The caller holds the lock
    /// that serialises every `insert` of this table.
    pub(crate) fn insert(&self, values: &[&str], child: T) {
        let hash = self.hash(values);
        let entry = Arc::new(Entry { hash, values: values.iter().map(|v| Box::from(*v)).collect(), child });
        let len = self.len.load(Ordering::Relaxed) + 1;
        let mut table = self.current();
        if 2 * len > table.slots.len() {
            table = self.grow();
        }
        let Err(slot) = table.find(hash, values) else { unreachable!("insert is only called for new values") };
        // Set once, by the only writer: cannot fail.
        let _ = table.slots[slot].set(entry);
        self.len.store(len, Ordering::Relaxed);
    }

    /// Copies every entry into the next, twice larger table and makes it current.
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
            let _ = new.slots[i].set(Arc::clone(entry));
        }
        let _ = self.tables[level + 1].set(new);
        self.current.store(level + 1, Ordering::Release);
        self.current()
    }
}

/// `stored == values`, compared in place: label values are short, and a call to
/// `memcmp` per value would cost more than the comparison.
#[inline]
fn same_values<S: AsRef<str>>(stored: &[Box<str>], values: &[S]) -> bool {
    stored.len() == values.len()
        && stored.iter().zip(values).all(|(a, b)| same_bytes(a.as_bytes(), b.as_ref().as_bytes()))
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
        a == b
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
