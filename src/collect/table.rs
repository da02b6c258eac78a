//! Interning: every distinct key, name, label set and series gets a small integer id
//! once, when its first entry is parsed. A repeat scrape, and the merge, then work on
//! integers only.
//!
//! * A **key** is the raw key bytes of an entry. Writers of one series in many
//!   processes write byte-identical keys, so the collector decodes each JSON key once
//!   however many files hold it (Python's collector does the same with its
//!   `key_cache`).
//!
//!   Finding a key's id must not cost a hash of its bytes per entry either: workers of
//!   one server create their series in much the same order, so the entry that follows
//!   key `k` in one file is very likely the one that followed it in the file read
//!   before. Each key remembers its last successor and its *head* (the entry's length
//!   field, key and padding, as first read); the reader compares the next entry's head
//!   with the predicted key's, word by word, and falls back to hashing only when they
//!   differ. Equal heads are equal keys, so a prediction can only save work, never
//!   change a result.
//! * A **label set** is a sequence of `(name, value)` pairs, compared as Python
//!   compares the tuples it groups by: a key's labels sorted by name, then for gauge
//!   files the writer's `("pid", ID)` appended (so a user label `pid` can appear twice).
//! * A **sample** is `(family, sample name, label set)`: what Python's merge adds up.
//!   Each sample knows its twin without `pid` labels (gauge modes other than `all`)
//!   and, when it has an `le` label, its histogram bucket.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::{DefaultHashBuilder, HashMap, HashSet, HashTable};

use crate::format::check::{self, EntryProblem};
use crate::format::float::go_float;
use crate::format::key::{KeyError, KeyRef};

/// A number no other [`Epoch`] of this process has: given to interning tables and to a
/// file's parsed entries when they start afresh, so that a plan made for them is known
/// to still fit them (the merge keeps its plan while they are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Epoch(u64);

impl Default for Epoch {
    fn default() -> Epoch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Epoch(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// An interned string.
pub(crate) type Str = Arc<str>;

/// A decoded key.
#[derive(Debug)]
pub(crate) struct KeyInfo {
    /// Name id of the family (first element).
    pub(crate) family: u32,
    /// The help text (fourth element).
    pub(crate) help: Str,
    /// The sample this key denotes in a non-gauge file.
    pub(crate) sample: u32,
    /// Name id of the sample (second element).
    name: u32,
    /// Label set id of the key's labels, sorted by name.
    labels: u32,
    /// Where the key's entry head (length field, key, padding) starts in `Tables::heads`.
    head_start: usize,
    /// Length of the head: a multiple of eight, the value's offset in the entry.
    head_len: u32,
    /// The key that followed this one in the file read last (`NO_KEY` if none yet).
    successor: u32,
}

/// No key: the end of a chain of successors.
const NO_KEY: u32 = u32::MAX;

/// How a sample takes part in a histogram family.
#[derive(Debug, Clone)]
pub(crate) enum Le {
    /// No `le` label: a `_sum` (or any other non-bucket sample).
    None,
    /// A bucket: its bucket id, and its bound as parsed and as Python prints it.
    Bucket { bucket: u32, le: f64, le_text: Str },
    /// An `le` label that Python's `float()` rejects, or NaN.
    Invalid,
}

/// An interned sample.
#[derive(Debug)]
pub(crate) struct SampleInfo {
    /// Name id of the family.
    pub(crate) family: u32,
    /// Name id of the sample name.
    pub(crate) name: u32,
    /// Label set id.
    pub(crate) labels: u32,
    /// The same sample without any `pid` label (itself when it has none).
    pub(crate) without_pid: u32,
    /// Its role in a histogram family.
    pub(crate) le: Le,
}

/// An interned label set.
#[derive(Debug)]
struct LabelSet {
    /// The pairs in Python's tuple order (the identity of the set).
    sequence: Arc<[(Str, Str)]>,
    /// The labels as exposed: sorted by name, a repeated name keeping its last value
    /// (as Python's `dict(labels)`). Shares `sequence` when they are equal.
    exposed: Arc<[(Str, Str)]>,
}

/// A histogram bucket: (family, labels without `le`, bound), `-0.0` and `0.0` being
/// one bound as they are one key of a Python dict.
#[derive(Debug)]
pub(crate) struct BucketInfo {
    /// Label set id without `le`.
    pub(crate) labels: u32,
}

/// Every interned thing, and the cache from raw key bytes to decoded keys.
#[derive(Debug, Default)]
pub(crate) struct Tables {
    /// Ids are only ever added: while the epoch is the same, an id means the same thing.
    epoch: Epoch,
    strings: HashSet<Str>,
    name_ids: HashMap<Str, u32>,
    names: Vec<Str>,
    /// `(hash, key id)`, found by the hash of the key bytes (compared in `heads`); the
    /// hash is kept so that growing the table hashes no key again.
    raw_keys: HashTable<(u64, u32)>,
    hasher: DefaultHashBuilder,
    /// The entry head of every key, back to back.
    heads: Vec<u8>,
    keys: Vec<KeyInfo>,
    /// The key that opened the file read last (`None` before any).
    first_key: Option<u32>,
    pid_ids: HashMap<Str, u32>,
    /// (key, pid id) → the sample of that key in a gauge file of that pid.
    gauge_samples: HashMap<(u32, u32), u32>,
    /// Label set ids, found by the hash of their sequence (compared in `labels`).
    label_ids: HashTable<u32>,
    labels: Vec<LabelSet>,
    with_pid: HashMap<(u32, Str), u32>,
    sample_ids: HashMap<(u32, u32, u32), u32>,
    samples: Vec<SampleInfo>,
    bucket_ids: HashMap<(u32, u32, u64), u32>,
    buckets: Vec<BucketInfo>,
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadKey {
    /// Not UTF-8 or not `[str, str, {str: str}, str]`.
    Invalid(KeyError),
    /// The family name is empty (Python's `Metric()` refuses it).
    EmptyMetricName,
}

impl Tables {
    /// The tables' epoch (a new one for new tables).
    pub(crate) fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Number of interned samples (the measure of the tables' size).
    pub(crate) fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// Number of interned buckets.
    pub(crate) fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Number of interned names.
    pub(crate) fn name_count(&self) -> usize {
        self.names.len()
    }

    /// Decoded key `id`.
    pub(crate) fn key(&self, id: u32) -> &KeyInfo {
        &self.keys[id as usize]
    }

    /// Interned sample `id`.
    pub(crate) fn sample(&self, id: u32) -> &SampleInfo {
        &self.samples[id as usize]
    }

    /// Interned bucket `id`.
    pub(crate) fn bucket(&self, id: u32) -> &BucketInfo {
        &self.buckets[id as usize]
    }

    /// Interned name `id`.
    pub(crate) fn name(&self, id: u32) -> &Str {
        &self.names[id as usize]
    }

    /// The id of `name`, if it was ever interned.
    pub(crate) fn find_name(&self, name: &str) -> Option<u32> {
        self.name_ids.get(name).copied()
    }

    /// The exposed labels of label set `id`.
    pub(crate) fn exposed_labels(&self, id: u32) -> &Arc<[(Str, Str)]> {
        &self.labels[id as usize].exposed
    }

    /// The key id of raw key bytes, decoding and interning them the first time (with
    /// the head a writer of this crate or Python would write for them).
    #[cfg(test)]
    pub(crate) fn key_id(&mut self, raw: &[u8]) -> Result<u32, BadKey> {
        let mut head = Vec::with_capacity(crate::format::value_offset_in_entry(raw.len()));
        head.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        head.extend_from_slice(raw);
        head.resize(crate::format::value_offset_in_entry(raw.len()), b' ');
        self.entry_key_id(&head, raw)
    }

    /// The key id of an entry whose head (length field, key, padding: the bytes before
    /// its value) is `head` and whose key bytes are `raw`, decoding and interning the
    /// key the first time.
    pub(crate) fn entry_key_id(&mut self, head: &[u8], raw: &[u8]) -> Result<u32, BadKey> {
        let hash = self.hasher.hash_one(raw);
        let (keys, heads) = (&self.keys, &self.heads);
        if let Some(&(_, id)) = self.raw_keys.find(hash, |&(h, id)| h == hash && key_bytes(keys, heads, id) == raw) {
            return Ok(id);
        }
        let key = check::check_key(raw).map_err(|problem| match problem {
            EntryProblem::Key(e) => BadKey::Invalid(e),
            _ => BadKey::EmptyMetricName,
        })?;
        let id = self.intern_key(key, head);
        self.raw_keys.insert_unique(hash, (hash, id), |&(h, _)| h);
        Ok(id)
    }

    /// The key most likely to come after `prev` in a file (after the start of a file
    /// when `prev` is `None`): the one that came after it in the file read last.
    #[inline]
    pub(crate) fn predicted(&self, prev: Option<u32>) -> Option<u32> {
        match prev {
            None => self.first_key,
            Some(prev) => Some(self.keys[prev as usize].successor).filter(|&k| k != NO_KEY),
        }
    }

    /// Records that `key` came after `prev` (at the start of a file when `None`).
    #[inline]
    pub(crate) fn record_successor(&mut self, prev: Option<u32>, key: u32) {
        match prev {
            None => self.first_key = Some(key),
            Some(prev) => self.keys[prev as usize].successor = key,
        }
    }

    /// The entry head of key `id` as first read: length field, key bytes and padding.
    /// An entry whose bytes before its value equal these has key `id`.
    #[inline]
    pub(crate) fn head(&self, id: u32) -> &[u8] {
        let info = &self.keys[id as usize];
        &self.heads[info.head_start..info.head_start + info.head_len as usize]
    }

    /// The heads of the `count` keys interned one after another from `first`, back to
    /// back (each key's head is appended to `heads` as it is interned), or `None` if
    /// there are no such keys.
    pub(crate) fn heads_of_run(&self, first: u32, count: usize) -> Option<&[u8]> {
        let last = first.checked_add(u32::try_from(count.checked_sub(1)?).ok()?)?;
        let (first, last) = (self.keys.get(first as usize)?, self.keys.get(last as usize)?);
        self.heads.get(first.head_start..last.head_start + last.head_len as usize)
    }

    /// The id of a gauge file's `pid` label value.
    pub(crate) fn pid_id(&mut self, pid: &Str) -> u32 {
        if let Some(&id) = self.pid_ids.get(pid) {
            return id;
        }
        let id = self.pid_ids.len() as u32;
        self.pid_ids.insert(pid.clone(), id);
        id
    }

    /// [`Tables::gauge_sample_of`] for tests, which have no pid ids at hand.
    #[cfg(test)]
    pub(crate) fn gauge_sample(&mut self, key: u32, pid: &Str) -> u32 {
        let pid_id = self.pid_id(pid);
        self.gauge_sample_of(key, pid, pid_id)
    }

    /// The sample an entry with key `key` denotes in a gauge file of writer `pid`, whose
    /// id `pid_id` comes from [`Tables::pid_id`]: the key's labels with `("pid", pid)`
    /// appended. Once known, one lookup on two integers.
    pub(crate) fn gauge_sample_of(&mut self, key: u32, pid: &Str, pid_id: u32) -> u32 {
        if let Some(&sample) = self.gauge_samples.get(&(key, pid_id)) {
            return sample;
        }
        let KeyInfo { family, name, labels, .. } = self.keys[key as usize];
        let labels = match self.with_pid.get(&(labels, pid.clone())) {
            Some(&id) => id,
            None => {
                let mut pairs = self.labels[labels as usize].sequence.to_vec();
                pairs.push((self.string("pid"), self.string(pid)));
                let id = self.label_set(pairs);
                self.with_pid.insert((labels, pid.clone()), id);
                id
            }
        };
        let sample = self.intern_sample(family, name, labels);
        self.gauge_samples.insert((key, pid_id), sample);
        sample
    }

    /// Room for about `keys` new keys (and their strings, label sets and samples)
    /// before the first are interned, so that the tables are not rehashed as they grow.
    pub(crate) fn reserve_first(&mut self, keys: usize, head_bytes: usize) {
        if !self.keys.is_empty() {
            return;
        }
        self.raw_keys.reserve(keys, |&(h, _)| h);
        self.keys.reserve(keys);
        self.heads.reserve(head_bytes);
        self.strings.reserve(keys);
        let (hasher, labels) = (&self.hasher, &self.labels);
        self.label_ids.reserve(keys, |&id| hasher.hash_one(ByAddress(&labels[id as usize].sequence)));
        self.labels.reserve(keys);
        self.sample_ids.reserve(keys);
        self.samples.reserve(keys);
    }

    /// Mean length of an entry of the keys seen so far (for sizing buffers).
    pub(crate) fn mean_entry_len(&self) -> Option<usize> {
        (!self.keys.is_empty()).then(|| self.heads.len() / self.keys.len() + crate::format::VALUE_LEN)
    }

    fn intern_key(&mut self, key: KeyRef<'_>, head: &[u8]) -> u32 {
        let family = self.name_id(&key.metric_name);
        let name = self.name_id(&key.sample_name);
        let pairs = key.labels.iter().map(|(n, v)| (self.string(n), self.string(v))).collect();
        let labels = self.label_set(pairs);
        let help = self.string(&key.help);
        let sample = self.intern_sample(family, name, labels);
        let id = self.keys.len() as u32;
        let head_start = self.heads.len();
        self.heads.extend_from_slice(head);
        let head_len = head.len() as u32;
        self.keys.push(KeyInfo { family, help, sample, name, labels, head_start, head_len, successor: NO_KEY });
        id
    }

    fn string(&mut self, s: &str) -> Str {
        self.strings.get_or_insert_with(s, |s: &str| Arc::from(s)).clone()
    }

    fn name_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let name = self.string(name);
        let id = self.names.len() as u32;
        self.names.push(name.clone());
        self.name_ids.insert(name, id);
        id
    }

    /// The id of the label set `pairs`, whose strings must all be interned (see
    /// `ByAddress`).
    fn label_set(&mut self, pairs: Vec<(Str, Str)>) -> u32 {
        let hash = self.hasher.hash_one(ByAddress(&pairs));
        let labels = &self.labels;
        if let Some(&id) = self.label_ids.find(hash, |&id| same_strings(&labels[id as usize].sequence, &pairs)) {
            return id;
        }
        let sequence: Arc<[(Str, Str)]> = pairs.into();
        // Sorted by name without repeats already (every key's own labels): share.
        let exposed = if sequence.windows(2).all(|w| w[0].0 < w[1].0) {
            sequence.clone()
        } else {
            let mut exposed: Vec<(Str, Str)> = Vec::with_capacity(sequence.len());
            for (name, value) in sequence.iter() {
                match exposed.iter_mut().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = value.clone(),
                    None => exposed.push((name.clone(), value.clone())),
                }
            }
            exposed.sort_by(|a, b| a.0.cmp(&b.0));
            exposed.into()
        };
        let id = self.labels.len() as u32;
        self.labels.push(LabelSet { sequence, exposed });
        let (hasher, labels) = (&self.hasher, &self.labels);
        self.label_ids.insert_unique(hash, id, |&id| hasher.hash_one(ByAddress(&labels[id as usize].sequence)));
        id
    }

    fn intern_sample(&mut self, family: u32, name: u32, labels: u32) -> u32 {
        if let Some(&id) = self.sample_ids.get(&(family, name, labels)) {
            return id;
        }
        let pairs = self.labels[labels as usize].sequence.clone();
        let without_pid = if pairs.iter().any(|(n, _)| &**n == "pid") {
            let stripped = pairs.iter().filter(|(n, _)| &**n != "pid").cloned().collect();
            let stripped = self.label_set(stripped);
            Some(self.intern_sample(family, name, stripped))
        } else {
            None
        };
        let le = match pairs.iter().find(|(n, _)| &**n == "le") {
            None => Le::None,
            Some((_, text)) => match check::bucket_bound(text) {
                Some(le) => {
                    let rest = pairs.iter().filter(|(n, _)| &**n != "le").cloned().collect();
                    let rest = self.label_set(rest);
                    let bits = if le == 0.0 { 0 } else { le.to_bits() };
                    let bucket = match self.bucket_ids.get(&(family, rest, bits)) {
                        Some(&id) => id,
                        None => {
                            let id = self.buckets.len() as u32;
                            self.buckets.push(BucketInfo { labels: rest });
                            self.bucket_ids.insert((family, rest, bits), id);
                            id
                        }
                    };
                    Le::Bucket { bucket, le, le_text: self.string(&go_float(le)) }
                }
                _ => Le::Invalid,
            },
        };
        let id = self.samples.len() as u32;
        self.samples.push(SampleInfo { family, name, labels, without_pid: without_pid.unwrap_or(id), le });
        self.sample_ids.insert((family, name, labels), id);
        id
    }
}

/// A label set hashed by the addresses of its strings rather than their text: every
/// string in a label set is interned (made by `Tables::string`, or cloned from one
/// that was), so equal text means the same allocation.
struct ByAddress<'a>(&'a [(Str, Str)]);

impl std::hash::Hash for ByAddress<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.len());
        for (name, value) in self.0 {
            state.write_usize(Arc::as_ptr(name).cast::<u8>() as usize);
            state.write_usize(Arc::as_ptr(value).cast::<u8>() as usize);
        }
    }
}

/// Whether two label sequences of interned strings are the same (by address).
fn same_strings(a: &[(Str, Str)], b: &[(Str, Str)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((an, av), (bn, bv))| Arc::ptr_eq(an, bn) && Arc::ptr_eq(av, bv))
}

/// The key bytes of key `id`: its head without the length field and the padding.
fn key_bytes<'a>(keys: &[KeyInfo], heads: &'a [u8], id: u32) -> &'a [u8] {
    let info = &keys[id as usize];
    let head = &heads[info.head_start..info.head_start + info.head_len as usize];
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    &head[4..4 + len]
}
