//! Interning: every distinct key, name, label set and series gets a small integer id
//! once, when its first entry is parsed. A repeat scrape, and the merge, then work on
//! integers only.
//!
//! * A **key** is the raw key bytes of an entry. Writers of one series in many
//!   processes write byte-identical keys, so the collector decodes each JSON key once
//!   however many files hold it (Python's collector does the same with its
//!   `key_cache`).
//! * A **label set** is a sequence of `(name, value)` pairs, compared as Python
//!   compares the tuples it groups by: a key's labels sorted by name, then for gauge
//!   files the writer's `("pid", ID)` appended (so a user label `pid` can appear twice).
//! * A **sample** is `(family, sample name, label set)`: what Python's merge adds up.
//!   Each sample knows its twin without `pid` labels (gauge modes other than `all`)
//!   and, when it has an `le` label, its histogram bucket.

use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

use crate::format::float::go_float;
use crate::format::key::{Key, KeyError, decode_key};

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
}

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
    strings: HashSet<Str>,
    name_ids: HashMap<Str, u32>,
    names: Vec<Str>,
    raw_keys: HashMap<Box<[u8]>, u32>,
    keys: Vec<KeyInfo>,
    label_ids: HashMap<Arc<[(Str, Str)]>, u32>,
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
    pub(crate) fn exposed_labels(&self, id: u32) -> &[(Str, Str)] {
        &self.labels[id as usize].exposed
    }

    /// The key id of raw key bytes, decoding and interning them the first time.
    pub(crate) fn key_id(&mut self, raw: &[u8]) -> Result<u32, BadKey> {
        if let Some(&id) = self.raw_keys.get(raw) {
            return Ok(id);
        }
        let key = decode_key(raw).map_err(BadKey::Invalid)?;
        if key.metric_name.is_empty() {
            return Err(BadKey::EmptyMetricName);
        }
        let id = self.intern_key(key);
        self.raw_keys.insert(raw.into(), id);
        Ok(id)
    }

    /// The sample an entry with key `key` denotes in a gauge file of writer `pid`: the
    /// key's labels with `("pid", pid)` appended.
    pub(crate) fn gauge_sample(&mut self, key: u32, pid: &Str) -> u32 {
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
        self.intern_sample(family, name, labels)
    }

    fn intern_key(&mut self, key: Key) -> u32 {
        let family = self.name_id(&key.metric_name);
        let name = self.name_id(&key.sample_name);
        let pairs = key.labels.iter().map(|(n, v)| (self.string(n), self.string(v))).collect();
        let labels = self.label_set(pairs);
        let help = self.string(&key.help);
        let sample = self.intern_sample(family, name, labels);
        let id = self.keys.len() as u32;
        self.keys.push(KeyInfo { family, help, sample, name, labels });
        id
    }

    fn string(&mut self, s: &str) -> Str {
        if let Some(found) = self.strings.get(s) {
            return found.clone();
        }
        let new: Str = Arc::from(s);
        self.strings.insert(new.clone());
        new
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

    fn label_set(&mut self, pairs: Vec<(Str, Str)>) -> u32 {
        if let Some(&id) = self.label_ids.get(pairs.as_slice()) {
            return id;
        }
        let mut exposed: Vec<(Str, Str)> = Vec::with_capacity(pairs.len());
        for (name, value) in &pairs {
            match exposed.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value.clone(),
                None => exposed.push((name.clone(), value.clone())),
            }
        }
        exposed.sort_by(|a, b| a.0.cmp(&b.0));
        let sequence: Arc<[(Str, Str)]> = pairs.into();
        let exposed = if *exposed == *sequence { sequence.clone() } else { exposed.into() };
        let id = self.labels.len() as u32;
        self.labels.push(LabelSet { sequence: sequence.clone(), exposed });
        self.label_ids.insert(sequence, id);
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
            Some((_, text)) => match parse_python_float(text) {
                Some(le) if !le.is_nan() => {
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

/// Python's `float(text)` for the strings a `le` label can hold: surrounding
/// whitespace ignored, `inf`/`infinity`/`nan` in any case with an optional sign, and
/// `_` allowed between digits.
pub(crate) fn parse_python_float(text: &str) -> Option<f64> {
    let text = text.trim();
    if !text.contains('_') {
        return text.parse().ok();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut cleaned = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            let digit = |j: Option<usize>| j.and_then(|j| chars.get(j)).is_some_and(char::is_ascii_digit);
            if !(digit(i.checked_sub(1)) && digit(Some(i + 1))) {
                return None;
            }
        } else {
            cleaned.push(c);
        }
    }
    cleaned.parse().ok()
}
