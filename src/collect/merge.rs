//! The merge: Python's `MultiProcessCollector.merge(files, accumulate=True)`, on
//! interned samples. Pure: files in, families out.
//!
//! Python's rules, which this reproduces bit for bit:
//!
//! 1. A family's type and help come from the first entry (in file order, then entry
//!    order) that names it; its gauge mode from the **last** gauge file that names it.
//! 2. Samples are accumulated in file order, then entry order:
//!    * counters, summaries, histogram `_sum` (and any sample of another type that
//!      lands in such a family): `0.0 + v1 + v2 + …`;
//!    * gauges by mode, with the fold rules of `format::fold` (which compaction's
//!      archives follow too). `all`/`liveall` keep one sample per writer (the `pid`
//!      label), the last value written winning. The other modes drop every `pid`
//!      label, then `min`/`max` keep the first value unless a later one is `<`/`>` it
//!      (so a NaN seen first sticks and one seen later is ignored), `sum` adds from
//!      `0.0`, and `mostrecent` takes the value whose timestamp is strictly greater
//!      than the best so far (starting from `0.0`: a series never `set()` is omitted);
//!    * histogram buckets (samples with `le`) add up per (labels without `le`, bound);
//!      bounds are compared as floats (`-0.0` and `0.0` are one bucket, printed as
//!      the first one seen).
//! 3. Output, per family: label groups in the order they were first *assigned*, each
//!    with its samples in insertion order. For histograms, each group of buckets (in
//!    order of first appearance) then appends, to its label group, the buckets in
//!    ascending bound, cumulative, named `FAMILY_bucket`, and `FAMILY_count` = the
//!    `+Inf` total (overwriting in place a stored sample of that name, if any).

use std::sync::Arc;

use hashbrown::HashMap;

use super::model::{MetricFamily, MetricType, Sample};
use super::table::{Le, Str, Tables};
use crate::format::fold::Fold;
use crate::format::names::GaugeMode;

/// One file's contribution, in merge order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileInput<'a> {
    /// The type its name gives.
    pub(crate) typ: MetricType,
    /// Its gauge mode, for gauge files.
    pub(crate) mode: Option<GaugeMode>,
    /// The families it names, in order of first mention, each with the key of that
    /// first mention (for the help text).
    pub(crate) families: &'a [(u32, u32)],
    /// The sample of each entry.
    pub(crate) samples: &'a [u32],
    /// The value of each entry.
    pub(crate) values: &'a [f64],
    /// The timestamp of each entry of a gauge file; empty for other files (whose
    /// timestamps Python ignores).
    pub(crate) timestamps: &'a [f64],
}

/// A file the merge cannot use (Python would fail the whole scrape on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unmergeable {
    /// Index of the file in the input.
    pub(crate) file: usize,
    /// The histogram family concerned.
    pub(crate) family: String,
    /// The `le` text that is not a number.
    pub(crate) le: String,
}

const NONE: u32 = u32::MAX;

/// A sample's shortcut (see `Scratch::shortcut`): what to do with its next value,
/// in the top two bits, and where, in the others. `NONE` has both bits set.
const ADD_TO_SLOT: u32 = 0;
const SET_SLOT: u32 = 1 << 30;
const ADD_TO_BUCKET: u32 = 2 << 30;
const OP_MASK: u32 = 3 << 30;

/// What an output slot holds.
#[derive(Debug, Clone, Copy)]
enum SlotKind {
    /// An interned sample.
    Sample(u32),
    /// A cumulative bucket: the sample whose bound was seen first.
    Bucket(u32),
    /// `FAMILY_count` for the label set.
    Count(u32),
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    kind: SlotKind,
    value: f64,
    ts: f64,
    next: u32,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first: u32,
    last: u32,
    next: u32,
}

/// A bucket being summed: the first sample that named it, the running total, and the
/// next bucket of the same label group.
#[derive(Debug, Clone, Copy)]
struct BucketSum {
    sample: u32,
    value: f64,
    next: u32,
}

#[derive(Debug)]
struct Family {
    name: u32,
    typ: MetricType,
    help: Str,
    mode: GaugeMode,
    first_group: u32,
    last_group: u32,
    /// Bucket groups (label set without `le` → first/last bucket), first appearance order.
    bucket_groups: Vec<(u32, u32, u32)>,
}

/// Buffers reused from one merge to the next, so that a repeat scrape allocates
/// little. Holds no state between merges.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    family_of: Vec<u32>,
    slot_of: Vec<u32>,
    /// Per sample, once its first value has placed it: the operation every later value
    /// of that sample does (an add to a slot or bucket, or a store into a slot), so
    /// that a repeated sample costs one lookup. Samples with other rules (min, max,
    /// mostrecent) have none.
    shortcut: Vec<u32>,
    /// The samples that have a shortcut, to clear them after the merge.
    with_shortcut: Vec<u32>,
    bucket_of: Vec<u32>,
    slots: Vec<Slot>,
    groups: Vec<Group>,
    group_of: HashMap<(u32, u32), u32>,
    buckets: Vec<BucketSum>,
    bucket_group_of: HashMap<(u32, u32), usize>,
    sorted: Vec<u32>,
}

/// Merges `files` (in order) into families.
///
/// # Errors
/// [`Unmergeable`] naming the first file holding a histogram bucket whose `le` is not a
/// number; the caller drops that file and merges again.
pub(crate) fn merge(
    tables: &Tables,
    files: &[FileInput<'_>],
    scratch: &mut Scratch,
) -> Result<Vec<MetricFamily>, Unmergeable> {
    let result = Merger { tables, s: scratch, families: Vec::new() }.run(files);
    scratch.reset();
    result
}

impl Scratch {
    fn reset(&mut self) {
        for &sample in &self.with_shortcut {
            self.shortcut[sample as usize] = NONE;
        }
        self.with_shortcut.clear();
        for slot in &self.slots {
            if let SlotKind::Sample(id) = slot.kind {
                self.slot_of[id as usize] = NONE;
            }
        }
        self.bucket_of.iter_mut().for_each(|b| *b = NONE);
        self.family_of.iter_mut().for_each(|f| *f = NONE);
        self.slots.clear();
        self.groups.clear();
        self.group_of.clear();
        self.buckets.clear();
        self.bucket_group_of.clear();
    }
}

struct Merger<'t, 's> {
    tables: &'t Tables,
    s: &'s mut Scratch,
    families: Vec<Family>,
}

impl Merger<'_, '_> {
    fn run(mut self, files: &[FileInput<'_>]) -> Result<Vec<MetricFamily>, Unmergeable> {
        let t = self.tables;
        self.s.slot_of.resize(t.sample_count(), NONE);
        self.s.shortcut.resize(t.sample_count(), NONE);
        self.s.bucket_of.resize(t.bucket_count(), NONE);
        self.s.family_of.resize(t.name_count(), NONE);

        // Pass 1: type and help from the first mention, mode from the last gauge file.
        for file in files {
            for &(family, key) in file.families {
                let idx = match self.s.family_of[family as usize] {
                    NONE => {
                        self.s.family_of[family as usize] = self.families.len() as u32;
                        self.families.push(Family {
                            name: family,
                            typ: file.typ,
                            help: t.key(key).help.clone(),
                            mode: GaugeMode::All,
                            first_group: NONE,
                            last_group: NONE,
                            bucket_groups: Vec::new(),
                        });
                        self.families.len() - 1
                    }
                    idx => idx as usize,
                };
                if let Some(mode) = file.mode {
                    self.families[idx].mode = mode;
                }
            }
        }

        // Pass 2: accumulate. A sample seen before (in most files, every sample) takes
        // its shortcut; the first value of each goes through `add`.
        for (index, file) in files.iter().enumerate() {
            let gauge = file.typ == MetricType::Gauge;
            for (i, (&sample, &value)) in file.samples.iter().zip(file.values).enumerate() {
                let shortcut = self.s.shortcut[sample as usize];
                let at = (shortcut & !OP_MASK) as usize;
                match shortcut & OP_MASK {
                    ADD_TO_SLOT => self.s.slots[at].value += value,
                    SET_SLOT => self.s.slots[at].value = value,
                    ADD_TO_BUCKET => self.s.buckets[at].value += value,
                    _ => {
                        let ts = if gauge { file.timestamps.get(i).copied().unwrap_or(0.0) } else { 0.0 };
                        self.add(index, sample, value, ts)?;
                    }
                }
            }
        }

        Ok(self.finish())
    }

    fn add(&mut self, file: usize, sample: u32, value: f64, ts: f64) -> Result<(), Unmergeable> {
        let t = self.tables;
        let info = t.sample(sample);
        let fam = self.s.family_of[info.family as usize] as usize;
        let (typ, mode) = (self.families[fam].typ, self.families[fam].mode);
        match typ {
            // The fold rules shared with compaction (`format::fold`): `all` gauges keep
            // one series per writer (the `pid` label), the other modes fold the series
            // of every writer into one without it.
            MetricType::Gauge => {
                let fold = Fold::of_gauge(mode);
                let target = if fold == Fold::Last { sample } else { info.without_pid };
                let slot = match self.s.slot_of[target as usize] {
                    NONE => {
                        let acc = fold.start(value, ts);
                        // A `mostrecent` series never set takes no slot (nor a label
                        // group's place in the output order).
                        if !fold.is_shown(acc) {
                            return Ok(());
                        }
                        let slot = self.slot(fam, target, acc.0);
                        self.s.slots[slot].ts = acc.1;
                        slot
                    }
                    slot => {
                        let slot = slot as usize;
                        let stored = &mut self.s.slots[slot];
                        let mut acc = (stored.value, stored.ts);
                        fold.fold(&mut acc, value, ts);
                        (stored.value, stored.ts) = acc;
                        slot
                    }
                };
                // Later values of this sample skip the lookup: an add or a store.
                match fold {
                    Fold::Sum => self.remember(sample, ADD_TO_SLOT, slot),
                    Fold::Last => self.remember(sample, SET_SLOT, slot),
                    Fold::Min | Fold::Max | Fold::MostRecent => {}
                }
            }
            MetricType::Histogram => match &info.le {
                Le::None => {
                    let slot = self.slot(fam, sample, 0.0);
                    self.s.slots[slot].value += value;
                    self.remember(sample, ADD_TO_SLOT, slot);
                }
                Le::Bucket { bucket, .. } => {
                    let idx = self.bucket(fam, *bucket, sample);
                    self.s.buckets[idx].value += value;
                    self.remember(sample, ADD_TO_BUCKET, idx);
                }
                Le::Invalid => {
                    let le = t.exposed_labels(info.labels).iter().find(|(n, _)| &**n == "le");
                    return Err(Unmergeable {
                        file,
                        family: t.name(info.family).to_string(),
                        le: le.map(|(_, v)| v.to_string()).unwrap_or_default(),
                    });
                }
            },
            MetricType::Counter | MetricType::Summary => {
                let slot = self.slot(fam, sample, 0.0);
                self.s.slots[slot].value += value;
                self.remember(sample, ADD_TO_SLOT, slot);
            }
        }
        Ok(())
    }

    /// Gives `sample` the shortcut `op` on slot or bucket `at`: the operation each of
    /// its later values does, exactly what `add` would do with them.
    fn remember(&mut self, sample: u32, op: u32, at: usize) {
        if let Ok(at) = u32::try_from(at)
            && at & OP_MASK == 0
        {
            self.s.shortcut[sample as usize] = op | at;
            self.s.with_shortcut.push(sample);
        }
    }

    /// The slot of `sample` in family `fam`, created with `initial` (and its label
    /// group created) if this is its first assignment.
    fn slot(&mut self, fam: usize, sample: u32, initial: f64) -> usize {
        match self.s.slot_of[sample as usize] {
            NONE => {
                let labels = self.tables.sample(sample).labels;
                let slot = self.push_slot(fam, labels, SlotKind::Sample(sample), initial);
                self.s.slot_of[sample as usize] = slot as u32;
                slot
            }
            slot => slot as usize,
        }
    }

    /// Appends a new slot to the label group `labels` of family `fam`, creating the
    /// group at the end of the family's groups if needed.
    fn push_slot(&mut self, fam: usize, labels: u32, kind: SlotKind, value: f64) -> usize {
        let slot = self.s.slots.len() as u32;
        self.s.slots.push(Slot { kind, value, ts: 0.0, next: NONE });
        let group = self.group(fam, labels);
        let g = &mut self.s.groups[group];
        if g.last == NONE {
            g.first = slot;
        } else {
            self.s.slots[g.last as usize].next = slot;
        }
        g.last = slot;
        slot as usize
    }

    fn group(&mut self, fam: usize, labels: u32) -> usize {
        let key = (self.families[fam].name, labels);
        if let Some(&g) = self.s.group_of.get(&key) {
            return g as usize;
        }
        let g = self.s.groups.len() as u32;
        self.s.groups.push(Group { first: NONE, last: NONE, next: NONE });
        let family = &mut self.families[fam];
        if family.last_group == NONE {
            family.first_group = g;
        } else {
            self.s.groups[family.last_group as usize].next = g;
        }
        family.last_group = g;
        self.s.group_of.insert(key, g);
        g as usize
    }

    /// The running sum of bucket `bucket`, created (recording `sample` as the one
    /// whose bound is printed) on first use.
    fn bucket(&mut self, fam: usize, bucket: u32, sample: u32) -> usize {
        let found = self.s.bucket_of[bucket as usize];
        if found != NONE {
            return found as usize;
        }
        let idx = self.s.buckets.len() as u32;
        self.s.buckets.push(BucketSum { sample, value: 0.0, next: NONE });
        self.s.bucket_of[bucket as usize] = idx;
        let labels = self.tables.bucket(bucket).labels;
        let family = &mut self.families[fam];
        match self.s.bucket_group_of.get(&(family.name, labels)) {
            Some(&bg) => {
                let last = family.bucket_groups[bg].2;
                self.s.buckets[last as usize].next = idx;
                family.bucket_groups[bg].2 = idx;
            }
            None => {
                self.s.bucket_group_of.insert((family.name, labels), family.bucket_groups.len());
                family.bucket_groups.push((labels, idx, idx));
            }
        }
        idx as usize
    }

    fn finish(mut self) -> Vec<MetricFamily> {
        let t = self.tables;
        for fam in 0..self.families.len() {
            if self.families[fam].typ == MetricType::Histogram {
                self.finish_histogram(fam);
            }
        }
        let mut out = Vec::with_capacity(self.families.len());
        for family in &self.families {
            let name = t.name(family.name).clone();
            let bucket_name: Str = Arc::from(format!("{name}_bucket"));
            let count_name: Str = Arc::from(format!("{name}_count"));
            let mut samples = Vec::new();
            let mut g = family.first_group;
            while g != NONE {
                let group = self.s.groups[g as usize];
                let mut slot = group.first;
                while slot != NONE {
                    let Slot { kind, value, next, .. } = self.s.slots[slot as usize];
                    samples.push(match kind {
                        SlotKind::Sample(id) => {
                            let info = t.sample(id);
                            Sample {
                                name: t.name(info.name).clone(),
                                labels: t.exposed_labels(info.labels).to_vec(),
                                value,
                            }
                        }
                        SlotKind::Bucket(id) => {
                            let info = t.sample(id);
                            let Le::Bucket { bucket, le_text, .. } = &info.le else {
                                unreachable!("bucket slots are made from bucket samples")
                            };
                            let base = t.exposed_labels(t.bucket(*bucket).labels);
                            let mut labels = Vec::with_capacity(base.len() + 1);
                            let at = base.partition_point(|(n, _)| &**n < "le");
                            labels.extend_from_slice(&base[..at]);
                            labels.push((Arc::from("le"), le_text.clone()));
                            labels.extend_from_slice(&base[at..]);
                            Sample { name: bucket_name.clone(), labels, value }
                        }
                        SlotKind::Count(labels) => {
                            Sample { name: count_name.clone(), labels: t.exposed_labels(labels).to_vec(), value }
                        }
                    });
                    slot = next;
                }
                g = group.next;
            }
            out.push(MetricFamily { name, help: family.help.clone(), kind: family.typ, samples });
        }
        out
    }

    /// Appends the cumulative buckets and `_count` of every bucket group of a
    /// histogram family to its label groups.
    fn finish_histogram(&mut self, fam: usize) {
        let t = self.tables;
        let family_name = t.name(self.families[fam].name);
        let count_id = t.find_name(&format!("{family_name}_count"));
        let bucket_groups = std::mem::take(&mut self.families[fam].bucket_groups);
        for &(labels, first, _) in &bucket_groups {
            let mut sorted = std::mem::take(&mut self.s.sorted);
            sorted.clear();
            let mut b = first;
            while b != NONE {
                sorted.push(b);
                b = self.s.buckets[b as usize].next;
            }
            let bound = |b: &u32| match t.sample(self.s.buckets[*b as usize].sample).le {
                Le::Bucket { le, .. } => le,
                _ => unreachable!("bucket sums are made from bucket samples"),
            };
            sorted.sort_by(|a, b| bound(a).total_cmp(&bound(b)));
            let mut acc = 0.0;
            for &b in &sorted {
                let BucketSum { sample, value, .. } = self.s.buckets[b as usize];
                acc += value;
                self.push_slot(fam, labels, SlotKind::Bucket(sample), acc);
            }
            self.s.sorted = sorted;
            let group = self.group(fam, labels);
            let mut slot = self.s.groups[group].first;
            let mut existing = None;
            while slot != NONE {
                let is_count = match self.s.slots[slot as usize].kind {
                    SlotKind::Sample(id) => Some(t.sample(id).name) == count_id,
                    _ => false,
                };
                if is_count {
                    existing = Some(slot as usize);
                }
                slot = self.s.slots[slot as usize].next;
            }
            match existing {
                Some(slot) => self.s.slots[slot].value = acc,
                None => {
                    self.push_slot(fam, labels, SlotKind::Count(labels), acc);
                }
            }
        }
        self.families[fam].bucket_groups = bucket_groups;
    }
}
